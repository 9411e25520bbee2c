#!/usr/bin/env bash
# The README's main command: a repository mounted as a local directory, end to end.
#
# Sets up (scripts/setup.sh), starts an embedded tilde-server on a throw-away data directory
# with a freshly generated admin key, creates a demo organization and repository with the
# `tilde` command line,
# mounts it with `tilde-mount ORG/REPO MNT`, writes with ordinary tools (echo, mkdir, cp,
# tar, mv, rm), shows `tilde-mount status`, commits with `tilde-mount commit` (twice),
# unmounts, shows the repository's log and the committed files through the bundled client
# and the `tilde` command line (log, ls, cat at the first commit), and stops the server. Any failing step stops the demo with a non-zero exit status; the
# mount, the daemon and the server are removed whatever happened. KEEP=1 keeps the data
# directory and the logs.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
PY=.venv/bin/python
TM=.venv/bin/tilde-mount

work=$(mktemp -d "${TMPDIR:-/tmp}/tilde-demo.XXXXXX")
mnt="$work/mnt"
pid_file="$work/mount.pid"
repo=demo/hello
key="tk-demo-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
server_pid=""

say() { printf '\ndemo: %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        local rc=0
        wait "$server_pid" || rc=$?
        server_pid=""
        echo "demo: tilde-server stopped (exit status $rc)"
        return "$rc"
    fi
}
cleanup() {
    local rc=$?
    trap - ERR
    # Never leave a mount or a daemon behind, whatever failed.
    if mountpoint -q "$mnt" 2>/dev/null; then
        echo "demo: removing the mount at $mnt" >&2
        fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    fi
    if [ -f "$pid_file" ]; then
        local pid
        pid=$(cat "$pid_file" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    stop_server || true
    if [ "$rc" != 0 ]; then
        for log in "$work/server.log" "$work/mount.log"; do
            [ -s "$log" ] && { echo "--- last lines of $log:" >&2; tail -n 20 "$log" >&2; }
        done
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "demo: kept $work"
    else
        rm -rf "$work"
    fi
    if [ "$rc" != 0 ]; then
        echo "demo: FAILED (exit status $rc)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "demo: step failed (line $LINENO): $BASH_COMMAND" >&2' ERR

say "starting tilde-server on $endpoint (data in $work/data)"
.venv/bin/tilde-server run --data "$work/data" --host 127.0.0.1 --port "$port" \
    --admin-key "$key" >"$work/server.log" 2>&1 &
server_pid=$!
echo "demo: tilde-server pid $server_pid"

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

# Every command below finds the server and the key the way a user's would.
unset TILDE_API_URL
export TILDE_ENDPOINT_URL="$endpoint" TILDE_API_KEY="$key"

say "creating the organization and the repository with the tilde command line"
run .venv/bin/tilde org create "${repo%%/*}" --display-name "Demo organization"
run .venv/bin/tilde repo create "$repo" --description "made by scripts/demo.sh"

say "mounting $repo at $mnt"
mkdir "$mnt"
run "$TM" "$repo" "$mnt" --cache-dir "$work/cache" --log-file "$work/mount.log" \
    --pid-file "$pid_file"

say "writing with ordinary tools (in $mnt)"
here=$PWD
run_in_mnt() { printf 'mnt$ %s\n' "$1"; (cd "$mnt" && eval "$1"); }
run_in_mnt "echo 'Hello from tilde-mount!' > README.txt"
run_in_mnt "mkdir -p data docs"
run_in_mnt "printf 'n,square\\n1,1\\n2,4\\n3,9\\n' > data/numbers.csv"
run_in_mnt "cp \"\$here/README.md\" docs/README.md"
run_in_mnt "tar -cf - -C \"\$here\" docs/usage.md docs/semantics.md | tar -xf -"
run_in_mnt "ls -la . docs"

say "what the session holds before the commit"
run "$TM" status "$mnt"

say "committing with tilde-mount commit"
printf '$ %s\n' "$TM commit $mnt -m 'Add a greeting, numbers and the docs'"
first=$("$TM" commit "$mnt" -m "Add a greeting, numbers and the docs")
echo "demo: committed $first"

say "more changes: append, rename, remove; a second commit"
run_in_mnt "echo '4,16' >> data/numbers.csv"
run_in_mnt "mv docs/README.md docs/project-readme.md"
run_in_mnt "rm docs/semantics.md"
printf '$ %s\n' "$TM commit $mnt -m 'One more number; rename and drop a doc'"
second=$("$TM" commit "$mnt" -m "One more number; rename and drop a doc")
echo "demo: committed $second"

say "unmounting"
run "$TM" unmount "$mnt"
if mountpoint -q "$mnt"; then
    echo "demo: $mnt is still mounted after tilde-mount unmount" >&2
    exit 1
fi

say "the repository through the bundled client"
"$PY" scripts/demo.py show "$repo" "$first" "$second"

say "the same through the tilde command line"
run .venv/bin/tilde log "$repo" -n 1
run .venv/bin/tilde ls -R "tilde://$repo"
run .venv/bin/tilde cat "tilde://$repo@${first:0:12}/data/numbers.csv"

say "stopping the server"
stop_server
echo
echo "demo: done"
