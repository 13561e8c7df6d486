#!/usr/bin/env bash
# seed-base-image.sh PYTHON IMAGE
#
# Builds a stand-in for the official image IMAGE (python:X.Y.Z-slim-bookworm) and
# imports it into the engine at DOCKER_HOST. No registry is reachable here, so the
# official image cannot be pulled; this one is made the way the official one is:
# Debian bookworm (minbase) with the runtime libraries CPython needs, the interpreter
# installed under /usr/local, tests and static libraries removed, pip from ensurepip.
# The interpreter is PYTHON's own (its sys.base_prefix): the exact X.Y.Z the kernel runs.
set -euo pipefail
python=$1
image=$2
mirror=${NB2C_DEBIAN_MIRROR:-http://deb.debian.org/debian}
prefix=$("$python" -c 'import sys; print(sys.base_prefix)')
version=$("$python" -c 'import platform; print(platform.python_version())')
short=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')

work=$(mktemp -d /var/tmp/nb2c-seed.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

if ! command -v debootstrap >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
fi
libs=libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8,libncursesw6,libuuid1,zlib1g,libexpat1,libgdbm6,libgdbm-compat4,ca-certificates,tzdata,netbase
debootstrap --variant=minbase --include="$libs" bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }

# The interpreter's prefix, without its site-packages, tests, caches and static library.
tar -C "$prefix" \
    --exclude="./lib/python$short/site-packages/*" \
    --exclude='./bin/pip*' --exclude='./bin/idle*' --exclude='./bin/pydoc*' --exclude='./bin/2to3*' \
    --exclude='test' --exclude='tests' --exclude='idle_test' --exclude='__pycache__' \
    --exclude='libpython*.a' -cf - . | tar -C "$rootfs/usr/local" -xf -
ln -sf "python$short" "$rootfs/usr/local/bin/python3"
ln -sf python3 "$rootfs/usr/local/bin/python"
chroot "$rootfs" /sbin/ldconfig
PIP_ROOT_USER_ACTION=ignore chroot "$rootfs" /usr/local/bin/python3 -m ensurepip --default-pip >/dev/null
chroot "$rootfs" /usr/local/bin/python3 -c 'import ssl, sqlite3, ctypes, bz2, lzma, readline, uuid, zlib, pyexpat, decimal'
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/local/lib/python$short/site-packages/*/__pycache__

tar -C "$rootfs" -cf - . | docker import \
    -c 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c "ENV PYTHON_VERSION=$version" \
    -c 'CMD ["python3"]' \
    - "$image" >/dev/null
echo "seeded $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
