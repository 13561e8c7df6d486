#!/usr/bin/env bash
# The demo (README): on a fresh machine, set up, start the private engine, then build
# notebooks/house_prices.ipynb into an image and smoke-test it against the notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-dev.sh
eval "$(scripts/engine.sh)"
exec .venv/bin/nb2container build notebooks/house_prices.ipynb --report build/house_prices-report.json "$@"
