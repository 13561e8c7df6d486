#!/usr/bin/env bash
# Creates .venv with nb2container (editable), its test tools, and the packages the
# example notebooks import. Idempotent: a second run only checks.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
python=${NB2C_PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
# The push test runs a registry of its own (Debian's docker-registry); wrk drives bench/serve.py;
# the remote-engine test runs an sshd of its own on loopback (openssh-server, and the client).
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
stamp="$venv/.nb2c-installed"
inputs=$(cat "$root/pyproject.toml" "$root/notebooks/requirements.txt" \
    "$root/notebooks/packages/pricing_rules/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$inputs" ]; then
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e "$root[test]" -r "$root/notebooks/requirements.txt"
    # A team's own package, installed editable like a data scientist's (notebooks/local_package.ipynb).
    "$venv/bin/python" -m pip install -q -e "$root/notebooks/packages/pricing_rules"
    echo "$inputs" > "$stamp"
fi
echo "dev environment ready: $venv ($("$venv/bin/python" -V))" >&2
