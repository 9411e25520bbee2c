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

# The bundled client's and the mount's suites once more per wire dialect (docs/testing.md):
# against a server that has only today's routes and redirects every download to signed URLs
# on another origin (localhost instead of 127.0.0.1), as the hosted service does (and, as
# it, no batch upload route: the batch tests, which test that extension, are left out
# there), and against one that has only the 0.7.2-0.7.6 routes and streams. Both runs are
# left out when arguments select a subset of the suite. They run in the background, one
# after the other, while the main run goes: the suites wait on servers, mounts and sandboxes
# most of the time, so two cores hold both (each has its own servers, mounts and pytest
# temporary directory); their output is printed when the main run is done. The server suite,
# the official clients and the mount core on PostgreSQL + S3 run in that background lane too,
# before them, which leaves the two lanes about equally long (the reliability suite, once
# there too, is back in the main run for that balance).
mkdir -p build
dialect_log=build/dialect-runs.log
rm -f "$dialect_log" build/dialect-runs.failed
dialect_pid=
main_args=("$@")
# the reliability suite's figures (tests/figures.py) of this run only; printed at the end
export TILDE_FIGURES="$PWD/build/reliability-figures.json"
rm -f "$TILDE_FIGURES"
if [ $# -eq 0 ]; then
    (
        failed=()  # this lane reports only its own failures (the main one's are counted there)
        # the server suite, the official clients and the mount core once more with every
        # server on PostgreSQL and its blobs in a SeaweedFS bucket (docs/deploy.md); not the
        # deployment tests, which start their own PostgreSQL and buckets whatever --backend
        # says and so ran in the main run already
        step "pytest server+official clients+mount core (--backend postgresql-s3)" \
            .venv/bin/python -m pytest -q tests/server tests/test_official_sdk.py \
            tests/mount_core --backend postgresql-s3 \
            --ignore=tests/server/test_multiprocess.py --ignore=tests/server/test_s3_blobs.py \
            --ignore=tests/server/test_deploy_recipe.py \
            --ignore=tests/server/test_deployment_keys.py \
            --ignore=tests/server/test_deployment_upgrade.py \
            --ignore=tests/server/test_migrate.py
        # tests/fuse in a pytest of its own: its conftest.py would shadow tests/conftest.py
        # for the modules that import from `conftest` if both were collected in one run
        for dialect in "--wire current --downloads redirect --signed-url-base http://localhost:{port}" \
                       "--wire legacy --downloads stream"; do
            ignore=()
            case $dialect in *current*) ignore=(--ignore=tests/mount_core/test_batch_upload.py);; esac
            step "pytest client+mount_core+scenarios ($dialect)" .venv/bin/python -m pytest -q \
                tests/client tests/mount_core tests/test_readme_scenarios.py "${ignore[@]}" \
                --server-args "$dialect"
            step "pytest fuse ($dialect)" .venv/bin/python -m pytest -q tests/fuse \
                --server-args "$dialect"
        done
        if [ ${#failed[@]} -gt 0 ]; then printf '%s\n' "${failed[@]}" > build/dialect-runs.failed; fi
    ) > "$dialect_log" 2>&1 &
    dialect_pid=$!
fi

step pytest .venv/bin/python -m pytest --durations=10 --continue-on-collection-errors \
    "${main_args[@]}"

if [ -n "$dialect_pid" ]; then
    wait "$dialect_pid"
    echo "=== the background lane (PostgreSQL + S3, then the dialect runs, meanwhile):"
    cat "$dialect_log"
    if [ -f build/dialect-runs.failed ]; then
        while IFS= read -r name; do failed+=("$name"); done < build/dialect-runs.failed
    fi
fi

if [ -f "$TILDE_FIGURES" ]; then
    echo "=== reliability figures (docs/reliability.md; the long run: ./scripts/reliability.sh)"
    .venv/bin/python scripts/reliability_report.py || true
fi
echo "=== test.sh finished in $(( $(date +%s) - started ))s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "=== FAILED: ${failed[*]}"
    exit 1
fi
echo "=== all checks passed"
