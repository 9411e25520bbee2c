"""The seams between the kernel-free core and the daemon: what the kernel must forget
after a rollback, cheap upload progress, and no private access across the boundary."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import trio

import tilde_mount
from tilde_mount.fs import ROOT_INO, KernelForget

from .harness import CoreFs, Http, open_fs


def test_rollback_reports_what_the_kernel_must_forget(server: Any, repo_ref: Any,
                                                      tmp_path: Path) -> None:
    Http(server, repo_ref).put("keep.txt", b"keep")
    told: list[KernelForget] = []

    async def hook(forget: KernelForget) -> None:
        told.append(forget)

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            fs.on_forget = hook
            cfs = CoreFs(fs)
            await cfs.mkdir("d")
            await cfs.mkdir("d/e")
            await cfs.write_file("d/e/deep.txt", b"deep")
            await cfs.write_file("keep.txt", b"changed")
            d = (await cfs.stat("d")).ino
            e = (await cfs.stat("d/e")).ino
            keep = (await cfs.stat("keep.txt")).ino
            await fs.sync()  # uploaded: the handle reads the session's object by ETag
            h = await cfs.open("keep.txt", os.O_RDONLY)   # stays open across the rollback
            assert await cfs.hread(h, 0, 100) == b"changed"
            forget = await fs.rollback()
            assert told == [forget]
            entries = list(forget.entries)
            for entry in [(e, b"deep.txt"), (d, b"e"), (ROOT_INO, b"d"),
                          (ROOT_INO, b"keep.txt")]:
                assert entry in entries, (entry, entries)
            # deepest first: a child's dentry goes before its parent's
            assert entries.index((e, b"deep.txt")) < entries.index((d, b"e")) \
                < entries.index((ROOT_INO, b"d"))
            # the open file keeps its inode, but what the kernel cached of it is stale
            assert forget.inodes == (keep,)
            assert await cfs.hread(h, 0, 100) == b"keep"
            await cfs.close(h)
            assert not await cfs.exists("d")
            # nothing known any more: a second rollback has nothing to report
            told.clear()
            again = await fs.rollback()
            assert told == [] or told == [again]
            assert (ROOT_INO, b"d") not in again.entries

    trio.run(main)


def test_progress_is_cheap_and_counts_uploads(server: Any, repo_ref: Any,
                                              tmp_path: Path) -> None:
    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            p = fs.progress()
            assert (p.dirty_files, p.bytes_pending, p.bytes_uploaded,
                    p.uploads_in_flight) == (0, 0, 0, 0)
            h = await cfs.open("open.bin", os.O_CREAT | os.O_WRONLY)
            await cfs.hwrite(h, 0, b"x" * 70_000)
            before = fs.remote.stats()["total"]
            p = fs.progress()
            assert fs.remote.stats()["total"] == before, "progress() sent a request"
            assert (p.dirty_files, p.bytes_pending) == (1, 70_000)
            await fs.sync()  # uploads the open file as it stands
            p = fs.progress()
            assert (p.dirty_files, p.bytes_pending, p.uploads_in_flight) == (0, 0, 0)
            assert p.bytes_uploaded == 70_000 and p.bytes_sent >= 70_000
            await cfs.close(h)

    trio.run(main)


def _private_uses(source: str) -> list[str]:
    """``x.fs._name`` / ``fs._name`` / ``x.remote._name`` attribute uses in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else \
                owner.id if isinstance(owner, ast.Name) else ""
            if name in ("fs", "remote", "_inodes"):
                found.append(f"{name}.{node.attr} (line {node.lineno})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "getattr" and len(node.args) >= 2 \
                and isinstance(node.args[1], ast.Constant) \
                and str(node.args[1].value).startswith("_"):
            found.append(f"getattr(..., {node.args[1].value!r}) (line {node.lineno})")
    return found


def test_daemon_and_cli_use_only_the_public_face_of_the_core() -> None:
    src = Path(tilde_mount.__file__).parent
    for name in ("daemon.py", "cli.py", "control.py", "fuse_ops.py"):
        assert _private_uses((src / name).read_text()) == [], name
