#!/usr/bin/env bash
# The project's whole check, as CI runs it: set up (scripts/setup.sh), then ruff, mypy and
# the complete pytest suite. Every step runs; the exit status is non-zero if any failed.
# Extra arguments go to pytest (e.g. ./scripts/test.sh -k scenario -x).
set -uo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
./scripts/setup.sh || { echo "test.sh: setup failed" >&2; exit 1; }

failed=()
step() {
    local name=$1; shift
    local t0; t0=$(date +%s)
    echo "=== $name: $*"
    if "$@"; then
        echo "=== $name: ok ($(( $(date +%s) - t0 ))s)"
    else
        echo "=== $name: FAILED ($(( $(date +%s) - t0 ))s)"
        failed+=("$name")
    fi
}

step ruff .venv/bin/ruff check .
step mypy .venv/bin/mypy
step pytest .venv/bin/python -m pytest --durations=10 --continue-on-collection-errors "$@"

echo "=== test.sh finished in $(( $(date +%s) - started ))s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "=== FAILED: ${failed[*]}"
    exit 1
fi
echo "=== all checks passed"
