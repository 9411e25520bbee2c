"""The daemon killed (SIGKILL) during writes, uploads, commits and its own recovery:
every acknowledged write survives, nothing is torn.

Two ways to crash it:
- every crash point of ``tilde_mount/crashpoints.py`` in turn (``TILDE_MOUNT_CRASH_AT``;
  the daemon reports the point before it kills itself, and the test fails if a point was
  never reached);
- SIGKILL at a seeded random moment of a workload that writes files and commits meanwhile.

A writer process writes files of known content and, after each ``close`` returned, logs
the name (fsynced, outside the mount): those are *acknowledged*. After the crash the mount
is remounted as a user would (plain mount of the same repository and cache directory: it
resumes the session and replays the journal) and unmounted (commit). Then every
acknowledged file is in the last commit, or kept under ``unrecovered/``, byte for byte; and
every file in the commit holds exactly what was written (no torn or empty stand-in).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fusehelpers import Api, Tool, is_mounted, tilde_mount_command, wait_for

from figures import record, scale
from tilde_mount import crashpoints as cp

COUNT = 24

WRITER = r"""
import os, random, sys, time
mnt, ack, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
os.makedirs(os.path.join(mnt, "w"), exist_ok=True)
log = open(ack, "a")
for i in range(count):
    rnd = random.Random(seed * 1000 + i)
    data = rnd.randbytes(rnd.choice([0, 10, 3000, 70000, 300000]))
    with open(os.path.join(mnt, "w", str(i)), "wb") as f:
        f.write(data)
    log.write(f"w/{i}\n"); log.flush(); os.fsync(log.fileno())
    time.sleep(0.01)
"""


def expected(seed: int, count: int = COUNT) -> dict[str, bytes]:
    out = {}
    for i in range(count):
        rnd = random.Random(seed * 1000 + i)
        out[f"w/{i}"] = rnd.randbytes(rnd.choice([0, 10, 3000, 70000, 300000]))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _mount(tool: Tool, repo: str, mnt: Path, env: dict[str, str] | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    mnt.mkdir(parents=True, exist_ok=True)
    if mnt not in tool.mounts:
        tool.mounts.append(mnt)
    r = tool.tm(repo, str(mnt), env=dict(tool.env, **(env or {})), check=check)
    if r.returncode == 0:
        tool.pids.add(int(tool.status(mnt)["pid"]))
    return r


def _gone(mnt: Path, pid: int) -> None:
    assert wait_for(lambda: not _alive(pid), 60), "the daemon did not die"
    subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False, capture_output=True)


def _set_aside(tool: Tool) -> dict[str, bytes]:
    root = Path(tool.env["XDG_CACHE_HOME"]) / "tilde-mount"
    out: dict[str, bytes] = {}
    for session_dir in root.glob("*/unrecovered/*"):
        for p in session_dir.rglob("*"):
            if p.is_file() and p.name != "MANIFEST.json":
                out[p.relative_to(session_dir).as_posix()] = p.read_bytes()
    return out


def _check(tool: Tool, api: Api, seed: int, acked: list[str]) -> int:
    """Every acknowledged file intact somewhere; nothing torn; returns files checked."""
    want = expected(seed)
    commits = api.log()
    tree = api.tree() if commits else {}
    aside = _set_aside(tool)
    for name, data in tree.items():
        assert data == want[name], f"{name}: the commit holds {len(data)} bytes, " \
                                   f"not the {len(want[name])} written"
    for name in acked:
        assert tree.get(name) == want[name] or aside.get(name) == want[name], \
            f"acknowledged {name} is lost (in commit: {name in tree}, kept: {name in aside})"
    return len(acked)


def _run_writer(mnt: Path, ack: Path, seed: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(mnt), str(ack), str(seed),
                             str(COUNT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _acked(ack: Path) -> list[str]:
    return ack.read_text().split() if ack.exists() else []


def _recover_and_commit(tool: Tool, repo: str, mnt: Path) -> None:
    r = _mount(tool, repo, mnt)
    assert is_mounted(mnt), r.stderr
    tool.tm("unmount", str(mnt), timeout=120)


@pytest.mark.parametrize("point", cp.ALL)
def test_every_crash_point_of_the_daemon(tool: Tool, api: Api, tmp_path: Path,
                                         point: str) -> None:
    seed = cp.ALL.index(point) + 1
    mnt, ack, report = tmp_path / "mnt", tmp_path / "ack", tmp_path / "hits"
    armed = {cp.ENV: point, cp.REPORT_ENV: str(report)}
    first = None if point == cp.RECOVERY_ADOPTED else armed
    if point == cp.RECOVERY_ADOPTED:  # a first crash leaves a journal to recover from
        first = {cp.ENV: cp.UPLOAD_STARTED, cp.REPORT_ENV: str(tmp_path / "first")}
    _mount(tool, api.ref.path, mnt, first)
    pid = int(tool.status(mnt)["pid"])
    writer = _run_writer(mnt, ack, seed)
    writer.wait(timeout=120)
    if point in (cp.COMMIT_STARTED, cp.COMMIT_LANDED):
        tool.tm("commit", str(mnt), "-m", "crash", check=False, timeout=120)
    _gone(mnt, pid)
    if point == cp.RECOVERY_ADOPTED:
        r = _mount(tool, api.ref.path, mnt, armed, check=False)
        assert r.returncode != 0, "the daemon should have died while recovering"
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False,
                       capture_output=True)
    assert report.exists() and report.read_text().split() == [point], \
        f"crash point {point} was never reached"
    _recover_and_commit(tool, api.ref.path, mnt)
    acked = _acked(ack)
    checked = _check(tool, api, seed, acked)
    record("daemon_crash", points=1, points_hit=1, crashes=1 if first is armed else 2,
           acknowledged_checked=checked, bytes_lost=0)


@pytest.mark.parametrize("seed", range(100, 100 + scale(2, 12)))
def test_sigkill_at_a_random_moment(tool: Tool, api: Api, tmp_path: Path, seed: int) -> None:
    mnt, ack = tmp_path / "mnt", tmp_path / "ack"
    rnd = random.Random(seed)
    _mount(tool, api.ref.path, mnt)
    pid = int(tool.status(mnt)["pid"])
    writer = _run_writer(mnt, ack, seed)
    committer: Any = None
    time.sleep(rnd.uniform(0.05, 0.6))
    if rnd.random() < 0.5:
        committer = subprocess.Popen([*tilde_mount_command(), "commit", str(mnt), "-m", "mid"],
                                     env=tool.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.0, 0.3))
    os.kill(pid, 9)
    writer.wait(timeout=60)
    if committer is not None:
        committer.wait(timeout=60)
    _gone(mnt, pid)
    _recover_and_commit(tool, api.ref.path, mnt)
    checked = _check(tool, api, seed, _acked(ack))
    record("daemon_crash", random_kills=1, acknowledged_checked=checked, bytes_lost=0)
