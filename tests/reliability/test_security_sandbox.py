"""What a sandboxed process can do to the host: nothing of what an escape needs.

The server under test is started the way an operator starts it from a shell: with a
terminal (a pty) as its controlling terminal and stdin, so a sandbox that kept that terminal
could type commands into the operator's shell with TIOCSTI. A probe written in Python (ctypes,
no compiler) runs as an ordinary one-shot sandbox command and reports, from inside:

- CapEff (and CapPrm, CapBnd, CapAmb) of /proc/self/status: all zero;
- TIOCSTI on /dev/tty (no controlling terminal: it cannot even be opened), on fds 0-2 and on
  a terminal it opens itself but that is not its controlling one: refused;
- mount(2) of a tmpfs: EPERM;
- ptrace(PTRACE_ATTACH) of pid 1 (bwrap's init in the sandbox, same uid) and of another
  process of its own: EPERM (the launcher's seccomp filter);
- unshare(CLONE_NEWUSER) (it would give back every capability inside the new namespace) and
  unshare(CLONE_NEWNS): refused.

Afterwards the operator's terminal must have received no injected byte.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from secutil import root

from figures import record

pytestmark = pytest.mark.timeout(180)

PROBE = r"""
import ctypes, errno, fcntl, json, os, signal, termios, time
libc = ctypes.CDLL(None, use_errno=True)
res = {}
def err():
    e = ctypes.get_errno()
    return errno.errorcode.get(e, str(e))
for line in open('/proc/self/status'):
    k, _, v = line.partition(':')
    if k in ('CapEff', 'CapPrm', 'CapBnd', 'CapAmb', 'NoNewPrivs'):
        res[k] = v.strip()
tio = {}
fds = [0, 1, 2]
try:
    fds.append(os.open('/dev/tty', os.O_RDWR | os.O_NOCTTY))
    tio['open /dev/tty'] = 'ok'
except OSError as e:
    tio['open /dev/tty'] = errno.errorcode[e.errno]
try:
    master, slave = os.openpty()
    fds.append(slave)
except OSError as e:
    tio['openpty'] = errno.errorcode[e.errno]
for fd in fds:
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b'#')
        tio['fd%d' % fd] = 'ok'
    except OSError as e:
        tio['fd%d' % fd] = errno.errorcode[e.errno]
res['tiocsti'] = tio
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
res['mount'] = 'ok' if libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0 else err()
other = os.fork()
if other == 0:
    time.sleep(60)
    os._exit(0)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
pt = {}
for name, pid in (('pid1', 1), ('other', other)):
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) == 0:
        pt[name] = 'ok'
        os.waitpid(pid, 0x40000000)  # __WALL: wait until it stopped, then let it go
        libc.ptrace(PTRACE_DETACH, pid, None, None)
    else:
        pt[name] = err()
res['ptrace'] = pt
os.kill(other, signal.SIGKILL)
os.waitpid(other, 0)
for name, flag in (('newuser', 0x10000000), ('newns', 0x00020000)):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(flag) == 0 else 100 + ctypes.get_errno())
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    res['unshare_' + name] = 'ok' if code == 0 else errno.errorcode.get(code - 100, str(code))
print('PROBE ' + json.dumps(res, sort_keys=True))
"""


class TtyServer:
    """tilde-server run with a pty as its controlling terminal (``master`` is the operator's
    side of it)."""

    def __init__(self, tmp: Path) -> None:
        self.master, slave = pty.openpty()
        self.port = root.free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.key = root.ADMIN_KEY
        home = tmp / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, HOME=str(home))
        for k in ("TILDE_API_KEY", "TILDE_ENDPOINT_URL", "TILDE_API_URL"):
            env.pop(k, None)
        self.log_path = tmp / "server.log"
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(
                [*root.server_command(), "run", "--data", str(tmp / "data"),
                 "--host", "127.0.0.1", "--port", str(self.port), "--admin-key", self.key],
                stdin=slave, stdout=logf, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, preexec_fn=_take_controlling_terminal)
        os.close(slave)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                r = httpx.get(f"{self.endpoint}/api/v1/organizations", timeout=2,
                              headers={"Authorization": f"Bearer {self.key}"})
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def _take_controlling_terminal() -> None:
    """In the child after setsid(): make stdin (the pty) the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture
def tty_server(tmp_path: Path) -> Iterator[TtyServer]:
    assert shutil.which("bwrap"), "bubblewrap (bwrap) is not installed: run scripts/setup.sh"
    s = TtyServer(tmp_path)
    try:
        yield s
    finally:
        s.stop()
    log = s.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log


def _run_probe(s: TtyServer) -> tuple[dict[str, Any], str]:
    h = {"Authorization": f"Bearer {s.key}"}
    org, repo = root.unique("org"), root.unique("repo")
    base = f"{s.endpoint}/api/v1/organizations"
    assert httpx.post(base, json={"name": org, "display_name": org},
                      headers=h).status_code == 201
    assert httpx.post(f"{base}/{org}/repositories", json={"name": repo},
                      headers=h).status_code == 201
    rbase = f"{base}/{org}/repositories/{repo}"
    r = httpx.post(f"{rbase}/sandboxes", headers=h, timeout=30,
                   json={"image": "ubuntu", "command": ["python3", "-c", PROBE],
                         "timeout_seconds": 120})
    assert r.status_code == 201, r.text
    sid = r.json()["sandbox_id"]
    deadline = time.monotonic() + 120
    while True:
        st = httpx.get(f"{rbase}/sandboxes/{sid}/status", headers=h, timeout=30).json()
        if st["status"] not in ("starting", "running"):
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.2)
    out = httpx.get(f"{rbase}/sandboxes/{sid}/logs/stdout", headers=h, timeout=30).text
    lines = [ln for ln in out.splitlines() if ln.startswith("PROBE ")]
    assert lines, (st, out)
    return json.loads(lines[-1][len("PROBE "):]), out


def _terminal_input(master: int) -> bytes:
    """What is waiting on the operator's terminal (injected input would echo here)."""
    os.set_blocking(master, False)
    got = b""
    for _ in range(100):
        try:
            chunk = os.read(master, 4096)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        got += chunk
    return got


def test_sandbox_cannot_escalate_or_reach_the_host_terminal(tty_server: TtyServer) -> None:
    res, out = _run_probe(tty_server)
    checks = {
        "CapEff": res.get("CapEff") == "0000000000000000",
        "CapPrm": res.get("CapPrm") == "0000000000000000",
        "CapBnd": res.get("CapBnd") == "0000000000000000",
        "CapAmb": res.get("CapAmb") == "0000000000000000",
        "no controlling terminal": res["tiocsti"].get("open /dev/tty") == "ENXIO",
        "TIOCSTI refused everywhere": all(
            v != "ok" for k, v in res["tiocsti"].items() if k.startswith("fd")),
        "TIOCSTI tried on a real terminal": "openpty" not in res["tiocsti"],
        "mount": res["mount"] == "EPERM",
        "ptrace pid 1": res["ptrace"]["pid1"] == "EPERM",
        "ptrace another process": res["ptrace"]["other"] == "EPERM",
        "unshare user namespace": res["unshare_newuser"] != "ok",
        "unshare mount namespace": res["unshare_newns"] != "ok",
    }
    failed = [name for name, ok in checks.items() if not ok]
    injected = _terminal_input(tty_server.master)
    assert b"#" not in injected, injected
    assert not failed, (failed, res, out)
    record("security", sandbox_checks=len(checks) + 1)
