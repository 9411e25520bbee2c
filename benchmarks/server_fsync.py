"""What the server's fsyncs cost (not a test; prints numbers).

The same workload against two `tilde-server run` processes on the same disk: one as shipped
(spool and blob fsyncs, directory fsyncs, SQLite WAL with synchronous=FULL), one started
under `eatmydata` (LD_PRELOAD: fsync/fdatasync/sync become no-ops), which is what a server
without them would cost. Per operation the median of --repeat runs, in milliseconds:

- upload: a single upload in the 0.7.7 flow (PUT .../object, PUT the bytes, POST finalize)
  of --size bytes, into an open session;
- commit: the commit of a session holding one staged object;
- rollback: the rollback of such a session.

The data directories live under --tmp (default: a fresh directory under the system temp
dir; give one on the disk you care about: fsyncs cost nothing on tmpfs).
Usage: .venv/bin/python benchmarks/server_fsync.py [--repeat 50] [--size 65536]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import start

KEY = "tk-bench-" + os.urandom(8).hex()


def _server(data: Path, wrap: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    return start(data, KEY, wrap=wrap)


class Target:
    """One server and a repository on it; each method is one timed operation."""

    def __init__(self, url: str, size: int) -> None:
        self.c = httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        self.size, self.n = size, 0
        api = f"{url}/api/v1"
        assert self.c.post(f"{api}/organizations", json={"name": "bench", "display_name": "b"}
                           ).status_code in (200, 201)
        assert self.c.post(f"{api}/organizations/bench/repositories",
                           json={"name": "fsync", "visibility": "private"}
                           ).status_code in (200, 201)
        self.repo = f"{api}/organizations/bench/repositories/fsync"
        self.sid = self.session()

    def session(self) -> str:
        return str(self.c.post(f"{self.repo}/sessions").json()["session_id"])

    def upload(self, sid: str | None = None) -> None:
        self.n += 1
        q = {"session_id": sid or self.sid, "path": f"f{self.n:05d}.bin"}
        st = self.c.put(f"{self.repo}/object", params=q).json()
        assert httpx.put(st["upload_url"], content=os.urandom(self.size)).status_code == 200
        r = self.c.post(f"{self.repo}/object/finalize", params=q,
                        json={"upload_token": st["upload_token"]})
        assert r.status_code == 201, r.text

    def staged_session(self) -> str:
        sid = self.session()
        self.upload(sid)
        return sid

    def commit(self, sid: str) -> None:
        assert self.c.post(f"{self.repo}/sessions/{sid}", json={"message": "m"}
                           ).status_code == 200

    def rollback(self, sid: str) -> None:
        assert self.c.delete(f"{self.repo}/sessions/{sid}").status_code == 204


def _ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def run(targets: dict[str, Target], repeat: int) -> dict[str, dict[str, float]]:
    """Samples interleaved (A, B, B, A, ...) so that load on the machine hits both alike."""
    samples: dict[str, dict[str, list[float]]] = {
        name: {"upload": [], "commit": [], "rollback": []} for name in targets}
    for i in range(repeat):
        order = list(targets.items())
        if i % 2:
            order.reverse()
        for name, t in order:
            samples[name]["upload"].append(_ms(t.upload))
            sid = t.staged_session()
            samples[name]["commit"].append(_ms(lambda: t.commit(sid)))  # noqa: B023
            sid = t.staged_session()
            samples[name]["rollback"].append(_ms(lambda: t.rollback(sid)))  # noqa: B023
    return {name: {op: statistics.median(v) for op, v in ops.items()}
            for name, ops in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--size", type=int, default=64 * 1024)
    ap.add_argument("--tmp", type=Path, default=None)
    a = ap.parse_args()
    eatmydata = shutil.which("eatmydata")
    if not eatmydata:
        raise SystemExit("eatmydata is missing (apt-get install eatmydata)")
    tmp = Path(tempfile.mkdtemp(prefix="tilde-fsync-", dir=a.tmp))
    procs = []
    try:
        targets = {}
        for name, wrap in (("fsync", []), ("no fsync", [eatmydata])):
            proc, url = _server(tmp / name.replace(" ", "-") / "data", wrap)
            procs.append(proc)
            targets[name] = Target(url, a.size)
        results = run(targets, a.repeat)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"median of {a.repeat}, ms (upload: {a.size} bytes; data under {a.tmp or 'temp'})")
    print(f"{'operation':<10} {'fsync':>8} {'no fsync':>9} {'ratio':>6}")
    for op in results["fsync"]:
        on, off = results["fsync"][op], results["no fsync"][op]
        print(f"{op:<10} {on:>8.2f} {off:>9.2f} {on / off:>6.2f}")


if __name__ == "__main__":
    main()
