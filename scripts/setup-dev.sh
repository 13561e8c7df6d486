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
# The JupyterLab front end is built with node and npm; its browser tests drive Debian's Chromium.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
# The JupyterLab front end (labextension/), prebuilt into nb2container/labextension when its source changed.
front=$(cd "$root/labextension" && cat package.json package-lock.json tsconfig.json install.json src/* style/* \
    | sha256sum | cut -d' ' -f1)
built="$root/nb2container/labextension/.nb2c-source"
if [ "$(cat "$built" 2>/dev/null)" != "$front" ]; then
    (cd "$root/labextension" && npm ci --no-audit --no-fund --loglevel=error >&2 && npm run --silent build >&2)
    echo "$front" > "$built"
fi
stamp="$venv/.nb2c-installed"
# pip copies the built front end into the venv, so a new build is a new install too.
inputs=$(cat "$root/pyproject.toml" "$root/notebooks/requirements.txt" \
    "$root/notebooks/packages/pricing_rules/pyproject.toml" "$built" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$inputs" ]; then
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e "$root[test]" -r "$root/notebooks/requirements.txt"
    # A team's own package, installed editable like a data scientist's (notebooks/local_package.ipynb).
    "$venv/bin/python" -m pip install -q -e "$root/notebooks/packages/pricing_rules"
    echo "$inputs" > "$stamp"
fi
# The browser tests run against the oldest JupyterLab the front end supports as well as the newest
# (in .venv): JupyterLab 4.4 in a venv of its own, which takes everything else (nb2container, the
# notebooks' packages) from .venv.
lab44="$root/.venv-lab44"
if [ ! -x "$lab44/bin/jupyter-lab" ]; then
    "$python" -m venv "$lab44"
    "$lab44/bin/python" -m pip install -q "jupyterlab==4.4.*"
fi
purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
echo "import site; site.addsitedir('$("$venv/bin/python" -c "$purelib")')" > "$("$lab44/bin/python" -c "$purelib")/nb2container-dev.pth"
echo "dev environment ready: $venv ($("$venv/bin/python" -V)), JupyterLab 4.4 in $lab44" >&2
