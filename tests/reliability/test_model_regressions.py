"""Minimal reproductions of the bugs the model test (test_model.py) and the fsx run
(test_fsx.py) found, one test each, so a fix is checked without a random sequence."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio

from mount_core.harness import CoreFs, open_fs


def test_ftruncate_through_a_descriptor_counts_it_as_open(server: Any, repo_ref: Any,
                                                           tmp_path: Path) -> None:
    """ftruncate on a descriptor that has not written yet stages the file for that
    descriptor: the staged copy must count it as open. It did not (``setattr`` set
    ``handle.sf`` without ``open_handles += 1``), so the count went to 0 with the file
    open and to -1 at its close; the first upload to finish then dropped the staged copy
    of an open file, and the kernel got reads of the older object (short: it shrank the
    file, a mapped page past that got SIGBUS) and sizes from before the truncate. Found
    by test_fsx.py (mmap + close/reopen + truncate)."""

    def downloads(fs: Any) -> int:
        kinds = fs.remote.stats()["by_kind"]
        return int(kinds.get("read", 0) + kinds.get("read_url", 0))

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            await cfs.write_file("f", b"0123456789" * 10)
            await fs.sync()  # uploaded, the staged copy dropped
            ino = (await cfs.stat("f")).ino
            fh = (await fs.open(ino, os.O_RDWR)).fh
            await fs.setattr(ino, size=50, fh=fh)  # ftruncate(fd, 50): one copy-on-write
            copied = downloads(fs)
            await fs.fsync(fh, False)  # uploads; the copy of an open file must stay
            await fs.setattr(ino, size=200, fh=fh)  # grow: the bytes after 50 are zeros
            assert downloads(fs) == copied, \
                "the staged copy of the open file was dropped and fetched again"
            assert (await fs.getattr(ino)).size == 200
            assert await fs.read(fh, 0, 300) == b"0123456789" * 5 + bytes(150)
            await fs.release(fh)
            assert await cfs.read_file("f") == b"0123456789" * 5 + bytes(150)
            await fs.sync()
            st = await fs.status()
            assert st["uploads_pending"] == 0 and st["open_handles"] == 0, st

    trio.run(main)


def test_rollback_right_after_writes_keeps_nothing(server: Any, repo_ref: Any,
                                                   tmp_path: Path) -> None:
    """A rollback right after a file was created and written (its uploads scheduled at
    each close, not done yet) discards it: no upload may land afterwards in the fresh
    session (the uploader asks for the session at upload time). The model test found the
    file back after the rollback."""

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            for attempt in range(20):
                name = f"b{attempt}"
                await cfs.write_file(name, b"D\xad\xdao\t\xc3Z\x14")
                await cfs.pwrite(name, 4880, b"M")
                await fs.rollback()
                assert not await cfs.exists(name), (attempt, "visible after the rollback")
                await fs.sync()
                assert not await cfs.exists(name), (attempt, "back after a sync")
                changes = await fs.status()
                assert name not in changes["added"], (attempt, changes["added"])
            assert await cfs.listdir("") == []

    trio.run(main)
