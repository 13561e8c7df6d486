#!/usr/bin/env bash
# A private Docker engine for nb2container's development, tests, CI and demo.
#
#   eval "$(scripts/engine.sh)"        # prints: export DOCKER_HOST=unix://...
#
# - installs Debian's docker.io when dockerd is missing;
# - starts a dockerd of its own (own --data-root, --exec-root, socket, bridge) unless
#   that one already answers: it never touches an engine the user owns;
# - seeds the base image nb2container renders for the dev kernel's Python
#   (python:X.Y.Z-slim-bookworm) when the engine lacks it, because no registry can be
#   reached here (scripts/seed-base-image.sh builds a faithful stand-in).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=${NB2C_ENGINE_DIR:-/var/lib/nb2c-engine}
run=${NB2C_ENGINE_RUN:-/run/nb2c-engine}
sock="$run/docker.sock"
export DOCKER_HOST="unix://$sock"
log() { echo "engine: $*" >&2; }

if ! command -v dockerd >/dev/null 2>&1; then
    log "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q docker.io >&2
fi

if ! docker version >/dev/null 2>&1; then
    mkdir -p "$state" "$run"
    # Its own bridge, so it never fights another engine for docker0.
    if ! ip link show nb2c0 >/dev/null 2>&1; then
        ip link add nb2c0 type bridge
        ip addr add 172.29.0.1/24 dev nb2c0
        ip link set nb2c0 up
    fi
    log "starting a private dockerd (data root $state, socket $sock)"
    nohup dockerd --data-root "$state/data" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
        --host "$DOCKER_HOST" --bridge nb2c0 \
        >"$run/dockerd.log" 2>&1 &
    for _ in $(seq 60); do
        docker version >/dev/null 2>&1 && break
        sleep 1
    done
    docker version >/dev/null 2>&1 || { tail -20 "$run/dockerd.log" >&2; log "dockerd did not start"; exit 1; }
fi

# Every build adds layers to a data root that outlives clones; warn before a full disk
# turns into build errors that hide the cause.
free_kib=$(df -Pk "$state" | awk 'NR == 2 {print $4}')
if [ "${free_kib:-0}" -lt $((8 * 1024 * 1024)) ]; then
    log "warning: only $((free_kib / 1024 / 1024)) GiB free under $state; reclaim with: docker image prune (untagged images) or docker image prune -a (all unused)"
fi

python=${NB2C_KERNEL_PYTHON:-"$root/.venv/bin/python"}
[ -x "$python" ] || python=python3
version=$("$python" -c 'import platform; print(platform.python_version())')
image="python:$version-slim-bookworm"
if ! docker image inspect "$image" >/dev/null 2>&1; then
    log "seeding $image (no registry is reachable)"
    "$root/scripts/seed-base-image.sh" "$python" "$image" >&2
fi
echo "export DOCKER_HOST=$DOCKER_HOST"
