#!/usr/bin/env bash
# A private Podman/Buildah set-up for nb2container's tests (--engine podman|buildah).
#
#   eval "$(scripts/podman.sh)"   # prints: export CONTAINERS_CONF=... CONTAINERS_STORAGE_CONF=...
#
# - installs Debian's podman and buildah when they are missing;
# - writes a containers.conf and a storage.conf of its own (never the user's): this machine
#   refuses to set resource limits in a container, so `default_ulimits = []`; and a store of
#   its own under /var/lib/nb2c-podman, so the tests never touch the user's images;
# - loads the base image the private Docker engine holds (scripts/engine.sh seeds it) into
#   that store, since no registry can be reached here. Needs DOCKER_HOST from engine.sh;
# - creates the user nb2c-pod (no login, subordinate uid/gid ranges) that stands for a
#   JupyterHub pod's user in tests/test_engines.py: rootless Buildah needs those ranges.
set -euo pipefail
state=${NB2C_PODMAN_DIR:-/var/lib/nb2c-podman}
run=${NB2C_PODMAN_RUN:-/run/nb2c-podman}
log() { echo "podman: $*" >&2; }

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian's ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$state/storage" "$run/storage"
cat >"$state/containers.conf" <<EOF
[containers]
default_ulimits = []
EOF
cat >"$state/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$state/storage"
runroot = "$run/storage"
EOF
export CONTAINERS_CONF="$state/containers.conf" CONTAINERS_STORAGE_CONF="$state/storage.conf"

python=${NB2C_KERNEL_PYTHON:-"$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"}
[ -x "$python" ] || python=python3
version=$("$python" -c 'import platform; print(platform.python_version())')
image="python:$version-slim-bookworm"
if ! podman image exists "$image"; then
    log "loading $image from the private Docker engine into the private Podman store"
    docker save "$image" | podman load >&2
fi
pod_user=nb2c-pod
if ! id "$pod_user" >/dev/null 2>&1; then
    log "creating the user $pod_user (rootless Buildah in tests)"
    useradd --system --create-home --home-dir "/var/lib/$pod_user" --shell /usr/sbin/nologin "$pod_user"
fi
if ! grep -q "^$pod_user:" /etc/subuid || ! grep -q "^$pod_user:" /etc/subgid; then
    usermod --add-subuids 300000-365535 --add-subgids 300000-365535 "$pod_user"
fi
echo "export CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
