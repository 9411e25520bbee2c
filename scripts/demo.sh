#!/usr/bin/env bash
# A first look at the project on this machine: set up, start an embedded tilde-server on a
# throw-away data directory with a freshly generated admin key, create an organization and
# a repository, write and commit with the bundled Python client, read back, show the log,
# and stop the server again. Set KEEP=1 to keep the data directory and the server log.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
PY=.venv/bin/python

work=$(mktemp -d "${TMPDIR:-/tmp}/tilde-demo.XXXXXX")
key="tk-demo-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"

echo "demo: starting tilde-server on $endpoint (data in $work/data)"
.venv/bin/tilde-server run --data "$work/data" --host 127.0.0.1 --port "$port" \
    --admin-key "$key" >"$work/server.log" 2>&1 &
server_pid=$!

stop_server() {
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        local rc=0
        wait "$server_pid" || rc=$?
        echo "demo: tilde-server stopped (exit status $rc)"
        return "$rc"
    fi
}
cleanup() {
    stop_server || true
    if [ "${KEEP:-0}" = 1 ]; then
        echo "demo: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

"$PY" - "$endpoint" "$key" "$server_pid" "$work/server.log" <<'PYEOF'
import os, sys, time
import httpx
endpoint, key, pid, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
deadline = time.monotonic() + 30
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("demo: tilde-server exited early:\n" + open(log).read())
    try:
        r = httpx.get(f"{endpoint}/api/v1/organizations",
                      headers={"Authorization": f"Bearer {key}"}, timeout=2)
        if r.status_code == 200:
            break
    except httpx.TransportError:
        pass
    if time.monotonic() > deadline:
        sys.exit("demo: tilde-server did not come up:\n" + open(log).read())
    time.sleep(0.1)
PYEOF

env -u TILDE_API_URL TILDE_API_KEY="$key" TILDE_ENDPOINT_URL="$endpoint" "$PY" scripts/demo.py
stop_server
