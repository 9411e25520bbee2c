"""fsx-style random I/O through a real mount, against a shadow copy in memory.

Like fsx (the file system exerciser of BSD and xfstests), each seed drives one file with
a random sequence of read, write (also past the end: holes), truncate (grow and shrink),
mmap read and mmap write (a shared mapping, msync'ed one time in four), close + reopen
and fsync; every read is compared with the shadow byte for byte, and so is the size. At
the end the files are committed with ``tilde-mount commit``, and the committed objects,
then a fresh mount's reads, are compared with the shadows too. On a mismatch the test
prints the tail of the operation log, as fsx does. Each seed runs in a child process (a
fault on a mapped page is a SIGBUS), which writes its log line before each operation.

CI runs two seeds of 5,000 operations (10,000 in all); ``TILDE_RELIABILITY=full`` runs 8
seeds of 15,000.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import random
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fusehelpers import Api, Tool

from figures import full_run, record, scale

MAX_SIZE = 1 << 20  # files stay within 1 MiB
PAGE = mmap.PAGESIZE


@dataclass
class Fsx:
    """One file, its shadow and the log; ``step`` does one random operation."""

    path: Path
    rng: random.Random
    shadow: bytearray = field(default_factory=bytearray)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=60))
    fd: int = -1
    ops: int = 0
    bytes_compared: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    logfile: TextIO | None = None

    def open(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def close(self) -> None:
        os.close(self.fd)
        self.fd = -1

    # ---------------------------------------------------------------- checks
    def fail(self, why: str) -> None:
        tail = "\n".join(f"  {n}" for n in self.log)
        raise AssertionError(f"{self.path.name}: {why}\nlast operations (oldest first):\n{tail}")

    def compare(self, what: str, got: bytes, off: int) -> None:
        want = bytes(self.shadow[off:off + len(got)]) if off < len(self.shadow) else b""
        self.bytes_compared += max(len(got), len(want))
        if got != want:
            bad = [i for i in range(min(len(got), len(want))) if got[i] != want[i]]
            mismatched = len(bad) + abs(len(got) - len(want))
            first = bad[0] if bad else min(len(got), len(want))
            self.fail(f"{what}: {mismatched} mismatched bytes, the first at offset "
                      f"{off + first} (got {got[first:first + 8]!r}, expected "
                      f"{want[first:first + 8]!r}); read {len(got)}, expected {len(want)}")

    def check_size(self, what: str) -> None:
        size = os.fstat(self.fd).st_size
        if size != len(self.shadow):
            self.fail(f"{what}: size {size}, expected {len(self.shadow)}")

    # ---------------------------------------------------------------- operations
    def _span(self, limit: int) -> int:
        """Mostly small, sometimes up to 64 KiB (fsx's -o)."""
        r = self.rng.random()
        top = 512 if r < 0.5 else 8192 if r < 0.9 else 65536
        return self.rng.randint(1, min(top, max(1, limit)))

    def _data(self, n: int) -> bytes:
        # the operation number in every byte's pattern, so a stale page shows whose it is
        seed = self.ops & 0xFF
        return bytes((seed + i) & 0xFF or 1 for i in range(n)) if n < 4096 else \
            self.rng.randbytes(n)

    def step(self) -> None:
        self.ops += 1
        size = len(self.shadow)
        r = self.rng.random()
        if r < 0.26:
            self.op_read(size)
        elif r < 0.52:
            self.op_write(size)
        elif r < 0.64:
            self.op_mapread(size) if size else self.op_read(size)
        elif r < 0.76:
            self.op_mapwrite(size) if size else self.op_write(size)
        elif r < 0.90:
            self.op_truncate(size)
        elif r < 0.97:
            self.op_reopen()
        else:
            self.op_fsync()

    def _did(self, name: str, text: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        line = f"{self.ops:6d} {name:9s} {text}"
        self.log.append(line)
        if self.logfile is not None:  # written before the operation: a SIGBUS kills us
            self.logfile.write(line + "\n")
            self.logfile.flush()

    def op_read(self, size: int) -> None:
        off = self.rng.randint(0, size + 1024) if size else 0
        n = self._span(max(size - off, 1) + 2048)
        self._did("read", f"{off:#x} +{n:#x} (size {size:#x})")
        self.compare("read", os.pread(self.fd, n, off), off)
        self.check_size("read")

    def op_write(self, size: int) -> None:
        off = self.rng.randint(0, min(size + 65536, MAX_SIZE - 1))
        n = min(self._span(MAX_SIZE), MAX_SIZE - off)
        data = self._data(n)
        self._did("write", f"{off:#x} +{n:#x} (size {size:#x})")
        done = 0
        while done < n:
            done += os.pwrite(self.fd, data[done:], off + done)
        if off > len(self.shadow):
            self.shadow.extend(bytes(off - len(self.shadow)))
        self.shadow[off:off + n] = data
        self.check_size("write")

    def op_truncate(self, size: int) -> None:
        r = self.rng.random()
        new = self.rng.randint(0, size) if r < 0.5 else \
            self.rng.randint(size, min(MAX_SIZE, size + 131072))
        self._did("truncate", f"{size:#x} -> {new:#x}")
        os.ftruncate(self.fd, new)
        if new < len(self.shadow):
            del self.shadow[new:]
        else:
            self.shadow.extend(bytes(new - len(self.shadow)))
        self.check_size("truncate")

    def op_mapread(self, size: int) -> None:
        off = self.rng.randint(0, size - 1)
        n = min(self._span(size - off), size - off)
        start = off - off % PAGE  # fsx maps from a page boundary, as mmap requires
        self._did("mapread", f"{off:#x} +{n:#x} (size {size:#x})")
        with mmap.mmap(self.fd, off + n - start, access=mmap.ACCESS_READ, offset=start) as m:
            got = m[off - start:off - start + n]
        self.compare("mapread", got, off)

    def op_mapwrite(self, size: int) -> None:
        off = self.rng.randint(0, size - 1)
        n = min(self._span(size - off), size - off)
        start = off - off % PAGE
        data = self._data(n)
        # msync (MS_SYNC) is an fsync on a FUSE file, an upload here: one time in four;
        # else the dirty pages go back at the kernel's writeback, or at close
        sync = self.rng.random() < 0.25
        self._did("mapwrite", f"{off:#x} +{n:#x} (size {size:#x}){' msync' if sync else ''}")
        with mmap.mmap(self.fd, off + n - start, offset=start) as m:
            m[off - start:off - start + n] = data
            if sync:
                m.flush()
        self.shadow[off:off + n] = data
        self.check_size("mapwrite")

    def op_reopen(self) -> None:
        self._did("reopen", "close + open")
        self.close()
        self.open()
        self.check_size("reopen")

    def op_fsync(self) -> None:
        self._did("fsync", "")
        os.fsync(self.fd)


def read_back(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def run_seed(path: Path, seed: int, ops: int, logpath: Path) -> dict[str, object]:
    """One seed's run (in a child process: a fault on a mapped page is a SIGBUS)."""
    with open(logpath, "w") as logfile:
        fx = Fsx(path, random.Random(seed), logfile=logfile)
        fx.open()
        for _ in range(ops):
            fx.step()
        fx.close()  # then the whole file, through a new descriptor
        fx.compare("final read", read_back(fx.path), 0)
    digest = hashlib.sha256(fx.shadow).hexdigest()
    return {"ops": fx.ops, "bytes_compared": fx.bytes_compared, "counts": fx.counts,
            "size": len(fx.shadow), "sha256": digest}


def fsx_child(path: Path, seed: int, ops: int, logpath: Path) -> dict[str, Any]:
    tests = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tests), str(tests / "fuse"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, __file__, str(path), str(seed), str(ops),
                        str(logpath)], capture_output=True, text=True, timeout=600, env=env)
    if r.returncode != 0:
        tail = logpath.read_text().splitlines()[-40:] if logpath.exists() else []
        died = f"killed by signal {-r.returncode}" if r.returncode < 0 else \
            f"exit status {r.returncode}"
        raise AssertionError(f"fsx seed {seed} on {path.name}: {died}\n{r.stderr[-6000:]}\n"
                             "last operations (oldest first):\n" + "\n".join(tail))
    result: dict[str, Any] = json.loads(r.stdout.splitlines()[-1])
    return result


def test_fsx_through_a_real_mount(tool: Tool, api: Api, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    seeds = list(range(1, 9)) if full_run() else [1, 2]
    per_seed = scale(5000, 15000)
    runs = {seed: fsx_child(mnt / f"fsx-{seed}.bin", seed, per_seed,
                            tmp_path / f"fsx-{seed}.log") for seed in seeds}
    for res in runs.values():
        assert all(res["counts"].get(k, 0) > 0 for k in (
            "read", "write", "mapread", "mapwrite", "truncate", "reopen", "fsync")), res

    def check(what: str, seed: int, data: bytes) -> None:
        want = runs[seed]
        if len(data) != want["size"] or hashlib.sha256(data).hexdigest() != want["sha256"]:
            raise AssertionError(f"{what} of fsx-{seed}.bin: {len(data)} bytes, not the "
                                 f"{want['size']} the run left (or other bytes); its log: "
                                 f"{tmp_path / f'fsx-{seed}.log'}")

    tool.tm("commit", str(mnt), "-m", "fsx")
    tree = api.tree()
    assert set(tree) == {f"fsx-{seed}.bin" for seed in seeds}
    for seed in seeds:
        check("the committed object", seed, tree[f"fsx-{seed}.bin"])
    tool.tm("unmount", str(mnt))
    tool.mount(api.ref.path, mnt)
    for seed in seeds:
        check("a read after a remount", seed, read_back(mnt / f"fsx-{seed}.bin"))
    tool.tm("unmount", str(mnt))

    operations = sum(int(r["ops"]) for r in runs.values())
    assert operations >= scale(10_000, 100_000)
    compared = sum(int(r["bytes_compared"]) for r in runs.values()) + \
        2 * sum(int(r["size"]) for r in runs.values())
    record("fsx", operations=operations, bytes_compared=compared, mismatched_bytes=0,
           seeds=len(seeds))


if __name__ == "__main__":
    # the child: python test_fsx.py FILE SEED OPS LOGFILE; prints its result as JSON
    print(json.dumps(run_seed(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                              Path(sys.argv[4]))))
