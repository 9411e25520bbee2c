"""A canary API key must never leak: not into logs, tracebacks, files on disk, command lines
or other processes' environments.

One dedicated agent key (allowed everything in a fresh organization) is used by the bundled
client (a subprocess that also provokes an error, so a traceback is printed), by a real
`tilde-mount` (TILDE_API_KEY in its environment, as a user gives it) and to start a sandbox.
While the mount and the sandbox run, /proc/<pid>/cmdline and /proc/<pid>/environ of every
process on the machine are searched. The only legitimate holder is the mount daemon's own
environment (the user put the key there); its descendants must not have it, in argv or
environment. Afterwards the server log, the daemon's logs, the cache and state directories,
the data directory (keys are stored as HMACs) and the client's output are searched: zero hits.

tests/reliability/conftest.py adds a cheap session-finish check: the suite's admin key in no
log file the whole run wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fusehelpers import Tool
from secutil import root

from figures import record

pytestmark = pytest.mark.timeout(240)

ALLOW_ALL = "package tilde.authz\n\ndefault allow := false\nallow := true\n"


def _canary(server: Any, org: str) -> str:
    h = {"Authorization": f"Bearer {server.api_key}"}
    base = f"{server.endpoint}/api/v1/organizations/{org}"
    r = httpx.post(f"{base}/agents", headers=h,
                   json={"name": "canary", "description": "", "inline_policy": ALLOW_ALL})
    assert r.status_code == 201, r.text
    r = httpx.post(f"{base}/agents/canary/auth/keys", headers=h, json={"name": "canary"})
    assert r.status_code == 201, r.text
    token = str(r.json()["token"])
    assert len(token) >= 20
    return token


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _proc_hits(canary: bytes) -> dict[int, list[str]]:
    """pid -> where the canary is (cmdline, environ), over every readable process."""
    hits: dict[int, list[str]] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        for what in ("cmdline", "environ"):
            try:
                data = (entry / what).read_bytes()
            except OSError:
                continue
            if canary in data:
                hits.setdefault(int(entry.name), []).append(what)
    return hits


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def _file_hits(canary: bytes, *roots: Path) -> list[str]:
    out = []
    for r in roots:
        for p in r.rglob("*") if r.exists() else []:
            try:
                if p.is_file() and not p.is_symlink() and canary in p.read_bytes():
                    out.append(str(p))
            except OSError:
                continue
    return out


def test_a_canary_key_leaks_nowhere(server: Any, tool: Tool, tmp_path: Path) -> None:
    ref = root.new_repo(server)
    canary = _canary(server, ref.org)
    needle = canary.encode()
    env = dict(tool.env, TILDE_API_KEY=canary)
    tool.env = env
    # 1. The bundled client, with a traceback of its own making.
    script = (
        "import tilde\n"
        f"repo = tilde.repository('{ref.org}/{ref.repo}')\n"
        "with repo.session() as s:\n"
        "    s.objects.put('client.txt', b'from the client')\n"
        "    s.commit('client')\n"
        f"tilde.repository('{ref.org}/no-such-repo').session()\n")
    client = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env,
                            timeout=60)
    assert client.returncode != 0 and b"Traceback" in client.stderr, client.stderr[-2000:]
    # 2. A real mount, and a sandbox started with the same key, both running at once.
    mnt = tmp_path / "mnt"
    tool.mount(ref.path, mnt)
    tool.sh("echo mounted > a.txt && mkdir -p d && cp a.txt d/b.txt && sync", mnt)
    daemon = int(tool.status(mnt)["pid"])
    base = f"{server.endpoint}/api/v1/organizations/{ref.org}/repositories/{ref.repo}"
    h = {"Authorization": f"Bearer {canary}"}
    r = httpx.post(f"{base}/sandboxes", headers=h, timeout=30,
                   json={"image": "ubuntu", "timeout_seconds": 60,
                         "command": ["sh", "-c", "echo in > /sandbox/sb.txt; sleep 3"]})
    assert r.status_code == 201, r.text
    sid = r.json()["sandbox_id"]
    deadline = time.monotonic() + 30
    while httpx.get(f"{base}/sandboxes/{sid}/status", headers=h).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1)  # bwrap and the sandbox's own mount are up
    server_argv = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
    assert server.api_key.encode() not in server_argv  # the admin key came by environment
    sandbox_procs = _descendants(server.proc.pid)
    assert sandbox_procs, "the server runs no process for its sandbox"
    live = _proc_hits(needle)
    # The daemon holds the key in its environment because the user put it there; nothing
    # else may, and the daemon passes it on to no child.
    assert live.get(daemon) == ["environ"], live  # the scan sees the key where it is
    assert set(live) == {daemon}, live
    assert not set(live) & _descendants(daemon), live
    # The operator's admin key: in the server's environment only, none of its children's.
    # (Other servers of the suite hold the same key: only the server's descendants count.)
    admin = {p: v for p, v in _proc_hits(server.api_key.encode()).items()
             if p in sandbox_procs}
    assert not admin, {p: (v, _cmd(p)) for p, v in admin.items()}
    deadline = time.monotonic() + 60
    while httpx.get(f"{base}/sandboxes/{sid}/status", headers=h).json()["status"] in (
            "starting", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    tool.tm("commit", str(mnt), "-m", "mounted")
    tool.tm("unmount", str(mnt))
    # 3. Everything written to disk, and the client's output.
    home = Path(tool.env["HOME"])
    disk = _file_hits(needle, server.log_path.parent, tmp_path / "state", tmp_path / "cache",
                      home / ".tilde", server.data_dir)
    disk = [p for p in disk if not p.startswith(str(home / ".tilde"))]  # the user's own config
    out = [name for name, data in (("client stdout", client.stdout),
                                   ("client stderr", client.stderr)) if needle in data]
    assert not disk and not out, (disk, out)
    record("security", canary_hits=len(disk) + len(out) + len(set(live) - {daemon}),
           canary_processes_checked=len(sandbox_procs) + 1)
