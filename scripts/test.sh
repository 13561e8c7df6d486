#!/usr/bin/env bash
# The test command (README, .ci/run): sets up everything on a fresh machine, then runs
# lint, types, and the test suite (unit, real kernels, real private engine, nbval).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-dev.sh
eval "$(scripts/engine.sh)"
export NB2C_REQUIRE_ENGINE=1
.venv/bin/ruff check nb2container tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest --nbval tests notebooks "$@"
