"""What POSIX attributes cost a mount, side by side in one run: tilde-server with its
extensions against one that answers as the hosted service does (``--wire current``).

    .venv/bin/python benchmarks/posix_costs.py [--repeat 3] [--tmp DIR]

Starts both servers on 127.0.0.1, mounts each with a real tilde-mount, seeds the data
through the mount (so it carries the attributes a mount stores) and measures, per server:

(a) ``ls -l`` of a directory of 200 files and 50 subdirectories on a fresh mount (cold
    caches): wall time and requests;
(b) chmod of 100 committed, unchanged 64 KiB files, then commit: requests by kind and
    bytes sent (with the metadata-only update the bytes stay on the server; without it
    every file is uploaded again);
(c) ``mkdir -p`` of 100 empty directories and 100 directories holding a file, then
    commit: requests by kind (an empty directory is a marker object);
(d) ``tar -x`` of 300 small files, 20 symlinks and 10 empty directories, then commit:
    wall time and requests.

Requests are the daemon's own counters (``tilde-mount status --json``), taken before and
after each step. Prints medians of ``--repeat`` runs and the ratio current/default.
Never a timed test and not part of the test suite.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mountbench import env as E

KiB = 1024
SERVERS = {"default": [], "current": ["--wire", "current"]}
#: counters that are not request kinds
VOLUME = ("total", "bytes_in", "bytes_out")


def say(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def start_server(root: Path, name: str, key: str) -> tuple[E.Proc, str]:
    """tilde-server on a free loopback port, with bench/data created."""
    p, endpoint = E.start_tilde_server(root, name, key, SERVERS[name], root / "logs")
    auth = {"Authorization": f"Bearer {key}"}
    base = f"{endpoint}/api/v1/organizations"
    httpx.post(base, json={"name": E.ORG, "display_name": E.ORG},
               headers=auth).raise_for_status()
    httpx.post(f"{base}/{E.ORG}/repositories", json={"name": E.REPO, "visibility": "private"},
               headers=auth).raise_for_status()
    return p, endpoint


def build_tarball(path: Path) -> None:
    """300 files of 512 bytes in 10 directories, 20 relative symlinks, 10 empty dirs."""
    now = int(time.time())
    with tarfile.open(path, "w") as tar:
        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            info.mtime, info.uid, info.gid = now, os.getuid(), os.getgid()
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        for d in range(10):
            add(_dir(f"tree/d{d:02d}"))
            for i in range(30):
                info = tarfile.TarInfo(f"tree/d{d:02d}/f{i:03d}.txt")
                info.size, info.mode = 512, 0o755 if i % 10 == 0 else 0o644
                add(info, os.urandom(512))
        for i in range(20):
            info = tarfile.TarInfo(f"tree/links/l{i:02d}")
            info.type, info.linkname = tarfile.SYMTYPE, f"../d{i % 10:02d}/f{i:03d}.txt"
            add(info)
        for i in range(10):
            add(_dir(f"tree/empty/e{i:02d}"))


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


class Bench:
    """One server, its mount and the measurements taken through it."""

    def __init__(self, root: Path, name: str, key: str, tarball: Path) -> None:
        self.root, self.name, self.tarball = root, name, tarball
        (root / "logs").mkdir(parents=True, exist_ok=True)
        self.proc, endpoint = start_server(root, name, key)
        servers = E.Servers(root, key)
        servers.tilde = endpoint
        env = dict(os.environ, HOME=str(root / "home"), TILDE_API_KEY=key,
                   TILDE_ENDPOINT_URL=endpoint)
        self.mount = E.Mount(f"mount-{name}", "tilde", root / "mnt", servers, root, env=env)
        self.mnt = self.mount.mnt

    def close(self) -> None:
        self.mount.stop()
        self.proc.stop()

    def measure(self, step: Callable[[], None], commit: bool) -> dict[str, float]:
        """Request counter deltas (by kind, ``total``, bytes) and wall time of ``step``
        (and of the commit after it, when asked)."""
        before = self.mount.requests()
        t0 = time.perf_counter()
        step()
        if commit:
            self.mount.commit(f"posix_costs {self.name}")
        seconds = time.perf_counter() - t0
        after = self.mount.requests()
        out: dict[str, float] = {"time_ms": seconds * 1000}
        for k in set(before) | set(after):
            if d := after.get(k, 0) - before.get(k, 0):
                out[k] = d
        return out

    def seed(self) -> None:
        """The data of (a) and (b), written through the mount and committed."""
        self.mount.start()
        ls = self.mnt / "ls"
        for d in range(50):
            (ls / f"sub{d:02d}").mkdir(parents=True)
            (ls / f"sub{d:02d}" / "inner.txt").write_bytes(b"inner\n")
        for i in range(200):
            (ls / f"file{i:03d}.txt").write_bytes(os.urandom(1 * KiB))
        chm = self.mnt / "chmod"
        chm.mkdir()
        for i in range(100):
            (chm / f"blob{i:03d}.bin").write_bytes(os.urandom(64 * KiB))
        self.mount.commit("posix_costs seed")
        self.mount.stop()

    def ls_cold(self) -> dict[str, float]:
        """(a) on a fresh mount; the mount is left running for the next steps."""
        self.mount.stop()
        self.mount.start()
        lines: list[str] = []

        def ls() -> None:
            r = subprocess.run(["ls", "-l", str(self.mnt / "ls")], capture_output=True,
                               text=True, check=True)
            lines[:] = r.stdout.splitlines()

        out = self.measure(ls, commit=False)
        if len(lines) != 251:  # "total N" + 250 entries
            raise RuntimeError(f"ls -l listed {len(lines) - 1} entries, not 250")
        return out

    def chmod_commit(self, run: int) -> dict[str, float]:
        mode = (0o755, 0o700, 0o750, 0o711, 0o775)[run % 5]
        files = sorted((self.mnt / "chmod").iterdir())
        if len(files) != 100:
            raise RuntimeError(f"{len(files)} files to chmod, not 100")
        for f in files:  # stat before the clock: (b) is the chmod, not the lookups
            f.stat()

        def chmod() -> None:
            for f in files:
                f.chmod(mode)

        return self.measure(chmod, commit=True)

    def mkdirs_commit(self, run: int) -> dict[str, float]:
        base = self.mnt / f"mk{run}"

        def mk() -> None:
            subprocess.run(["mkdir", "-p", *(str(base / "empty" / f"e{i:03d}")
                                             for i in range(100))], check=True)
            full = [base / "full" / f"f{i:03d}" for i in range(100)]
            subprocess.run(["mkdir", "-p", *map(str, full)], check=True)
            for d in full:
                (d / "file.txt").write_bytes(b"x\n")

        return self.measure(mk, commit=True)

    def untar_commit(self, run: int) -> dict[str, float]:
        dest = self.mnt / f"tar{run}"
        dest.mkdir()

        def untar() -> None:
            subprocess.run(["tar", "-x", "-f", str(self.tarball), "-C", str(dest)],
                           check=True)

        return self.measure(untar, commit=True)


WORKLOADS = [
    ("a", "ls -l of 200 files + 50 dirs, cold mount"),
    ("b", "chmod 100 x 64 KiB committed files + commit"),
    ("c", "mkdir -p 100 empty + 100 with a file + commit"),
    ("d", "tar -x 300 files, 20 symlinks, 10 empty dirs + commit"),
]


def run_server(work: Path, name: str, key: str, tarball: Path,
               repeat: int) -> dict[str, list[dict[str, float]]]:
    bench = Bench(work / name, name, key, tarball)
    out: dict[str, list[dict[str, float]]] = {w: [] for w, _ in WORKLOADS}
    try:
        say(f"{name}: seeding")
        bench.seed()
        for run in range(repeat):
            say(f"{name}: run {run + 1}/{repeat}")
            out["a"].append(bench.ls_cold())
            out["b"].append(bench.chmod_commit(run))
            out["c"].append(bench.mkdirs_commit(run))
            out["d"].append(bench.untar_commit(run))
    finally:
        bench.close()
    return out


def fmt(key: str, value: float) -> str:
    if key == "time_ms":
        return f"{value:.0f}"
    if key.startswith("bytes"):
        return f"{value / KiB:.1f}"
    return f"{value:.0f}"


def label(key: str) -> str:
    if key == "time_ms":
        return "wall time (ms)"
    if key.startswith("bytes"):
        return f"{key.replace('_', ' ')} (KiB)"
    if key == "total":
        return "requests, total"
    return f"  {key}"


def report(results: dict[str, dict[str, list[dict[str, float]]]], repeat: int) -> None:
    names = list(SERVERS)
    print(f"POSIX attribute costs, tilde-mount against tilde-server default vs --wire "
          f"current; medians of {repeat} run(s); requests by kind from the daemon")
    width = 34
    print(f"{'':{width}}" + "".join(f"{n:>12}" for n in names) + f"{'current/default':>18}")
    for w, title in WORKLOADS:
        print(f"({w}) {title}")
        keys = sorted({k for n in names for r in results[n][w] for k in r},
                      key=lambda k: (k not in ("time_ms", "total"), k in VOLUME, k))
        for k in keys:
            med = {n: E.median([r.get(k, 0) for r in results[n][w]]) for n in names}
            base, cur = med["default"], med["current"]
            ratio = f"{cur / base:.2f}x" if base else ("=" if cur == base else "new")
            print(f"{label(k):{width}}" + "".join(f"{fmt(k, med[n]):>12}" for n in names)
                  + f"{ratio:>18}")
    print("bytes out: what the daemon counts, upload bodies (single, part, batch); JSON "
          "bodies\n(finalize, the metadata-only update) are not counted. bytes in: every "
          "answer's body.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tmp", type=Path, default=None)
    a = ap.parse_args()
    for exe in ("fusermount3", "tar", "ls"):
        if shutil.which(exe) is None:
            raise SystemExit(f"{exe} is not installed")
    work = Path(tempfile.mkdtemp(prefix="tilde-posix-costs-", dir=a.tmp))
    try:
        tarball = work / "tree.tar"
        build_tarball(tarball)
        key = "tk-bench-" + secrets.token_hex(16)
        results = {name: run_server(work, name, key, tarball, a.repeat) for name in SERVERS}
        report(results, a.repeat)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
