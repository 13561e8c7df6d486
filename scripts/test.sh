#!/usr/bin/env bash
# The test command (README, .ci/run): sets up everything on a fresh machine, then runs
# lint, types, and the test suite (unit, real kernels, real private engine, nbval).
#
#   scripts/test.sh          the full suite, the CI gate
#   scripts/test.sh --fast   what needs no Docker engine (pytest -m "not engine", on every core):
#                            pure logic, in-process serving, real kernels; under a minute, after each edit
# Any other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
if [ "${1:-}" = "--fast" ]; then
    fast=1
    shift
fi
scripts/setup-dev.sh
.venv/bin/ruff check nb2container tests bench
.venv/bin/mypy
if [ "$fast" = 1 ]; then
    # No engine in this tier: with Podman installed, `--engine auto` would find the user's own store.
    export NB2CONTAINER_ENGINE=docker
    exec .venv/bin/python -m pytest -m "not engine" -n auto tests "$@"
fi
eval "$(scripts/engine.sh)"
eval "$(scripts/podman.sh)"
export NB2C_REQUIRE_ENGINE=1
exec .venv/bin/python -m pytest --nbval tests notebooks "$@"
