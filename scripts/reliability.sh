#!/usr/bin/env bash
# The reliability suite in full (docs/reliability.md): many seeds, long fsx and model runs,
# every crash point, then the figures table rewritten into docs/reliability.md.
# CI runs a bounded slice of the same tests as part of ./scripts/test.sh.
# Extra arguments go to pytest (e.g. -k faults).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export TILDE_RELIABILITY=full
export TILDE_FIGURES="$PWD/build/reliability-figures.json"
rm -f "$TILDE_FIGURES"
.venv/bin/python -m pytest -q tests/reliability -p no:cacheprovider "$@"
.venv/bin/python scripts/reliability_report.py --update-docs
