"""POSIX attributes survive a commit: `Filesystem` without a kernel, over a real tilde-server.

What is stored is docs/semantics.md "What is stored" (encoding: ``tilde._wire.posix``): per
object ``posix-mode`` (file type included), ``posix-uid``, ``posix-gid``, ``posix-mtime``,
``posix-ctime`` in its user metadata; a symlink is an object of type S_IFLNK whose content
is the target; an empty directory is a marker object ``DIR/`` holding its attributes.

Each test writes through one `Filesystem`, commits, then opens a *new* one (its own cache
directory, so nothing can come from the first one's memory or disk) at the latest commit,
read-write and read-only (``ref=``), and checks what it shows. The stored metadata is also
checked over plain HTTP, so a mount that only kept attributes in its own state would fail.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tilde._wire import posix as wire_posix
from tilde_mount.errors import FsError
from tilde_mount.fs import ROOT_INO, Attr, Filesystem

from .harness import CoreFs, Http, open_fs

MTIME_NS = 1_577_934_245_123_456_789  # 2020-01-02T03:04:05.123456789Z
W = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


# --- helpers --------------------------------------------------------------------------

async def walk(fs: Filesystem, path: str) -> Attr:
    attr = await fs.getattr(ROOT_INO)
    for part in [p for p in path.split("/") if p]:
        attr = await fs.lookup(attr.ino, part.encode())
    return attr


async def parent_of(fs: Filesystem, path: str) -> tuple[int, bytes]:
    head, _, name = path.rpartition("/")
    return (await walk(fs, head)).ino, name.encode()


async def create(fs: Filesystem, path: str, data: bytes, mode: int = 0o644,
                 **ids: int) -> Attr:
    """open(O_CREAT) + write + close, as the kernel sends them; ``ids``: uid=, gid=."""
    pino, name = await parent_of(fs, path)
    opened, attr = await fs.create(pino, name, stat.S_IFREG | mode, W, **ids)
    if data:
        await fs.write(opened.fh, 0, data)
    await fs.flush(opened.fh)
    await fs.release(opened.fh)
    return attr


async def mkdir(fs: Filesystem, path: str, mode: int = 0o755, **ids: int) -> Attr:
    pino, name = await parent_of(fs, path)
    return await fs.mkdir(pino, name, stat.S_IFDIR | mode, **ids)


async def symlink(fs: Filesystem, path: str, target: bytes, **ids: int) -> Attr:
    pino, name = await parent_of(fs, path)
    return await fs.symlink(pino, name, target, **ids)


async def readlink(fs: Filesystem, path: str) -> bytes:
    return await fs.readlink((await walk(fs, path)).ino)


async def committed(fs: Filesystem, message: str) -> str:
    outcome = await fs.commit(message, None)
    assert outcome.status == "committed" and outcome.commit_id, outcome
    return str(outcome.commit_id)


def errno_of(excinfo: pytest.ExceptionInfo[FsError]) -> int:
    return excinfo.value.errno


Check = Callable[[Filesystem], Awaitable[None]]


def write_then_check(server: Any, repo: Any, tmp: Path,
                     write: Callable[[Filesystem], Awaitable[None]], check: Check) -> str:
    """``write`` through one Filesystem, commit; ``check`` a fresh one at the new commit,
    read-write (a fresh session) and read-only (``ref=``). Returns the commit id."""
    async def main() -> str:
        async with open_fs(server, repo, tmp / "writer") as fs:
            await write(fs)
            commit_id = await committed(fs, "posix attributes")
        async with open_fs(server, repo, tmp / "reader-rw") as fs:
            await check(fs)
        async with open_fs(server, repo, tmp / "reader-ro", ref=commit_id) as fs:
            assert fs.read_only
            await check(fs)
        return commit_id

    return trio.run(main)


class Stored:
    """The objects of a commit with their user metadata, over plain HTTP."""

    def __init__(self, server: Any, repo: Any) -> None:
        self.http = Http(server, repo)

    def metadata(self, ref: str | None = None) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        after = None
        while True:
            params: dict[str, Any] = {"amount": 1000, "ref": ref or self.http.log()[0]["id"]}
            if after:
                params["after"] = after
            r = self.http.client.get(f"{self.http.base}/objects", params=params)
            r.raise_for_status()
            body = r.json()
            for item in body["results"]:
                if item.get("type", "object") == "object":
                    out[item["path"]] = dict((item.get("entry") or {}).get("metadata") or {})
            if not (body.get("pagination") or {}).get("has_more"):
                return out
            after = body["pagination"]["next_offset"]

    def attrs(self, ref: str | None = None) -> dict[str, wire_posix.PosixAttrs]:
        return {p: wire_posix.parse(m) for p, m in self.metadata(ref).items()}


# --- modes ----------------------------------------------------------------------------

def test_modes_survive_commit(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    async def write(fs: Filesystem) -> None:
        await create(fs, "run.sh", b"#!/bin/sh\necho ran\n", 0o644)
        await fs.setattr((await walk(fs, "run.sh")).ino, mode=0o755)   # chmod 755
        await create(fs, "secret", b"s3cr3t", 0o600)                  # created 0600
        await create(fs, "plain.txt", b"plain")                      # the default
        await create(fs, "sticky", b"x", 0o4750)                      # setuid bit kept

    async def check(fs: Filesystem) -> None:
        assert (await walk(fs, "run.sh")).mode == stat.S_IFREG | 0o755
        assert (await walk(fs, "secret")).mode == stat.S_IFREG | 0o600
        assert (await walk(fs, "plain.txt")).mode == stat.S_IFREG | 0o644
        assert stat.S_IMODE((await walk(fs, "sticky")).mode) == 0o4750
        assert await CoreFs(fs).read_file("run.sh") == b"#!/bin/sh\necho ran\n"

    commit_id = write_then_check(server, repo_ref, tmp_path, write, check)
    stored = Stored(server, repo_ref).attrs(commit_id)
    assert stored["run.sh"].mode == stat.S_IFREG | 0o755
    assert stored["secret"].mode == stat.S_IFREG | 0o600
    assert stored["sticky"].permissions == 0o4750
    # what every reader sees: the mode in octal with the type, as posix.py encodes it
    assert Stored(server, repo_ref).metadata(commit_id)["run.sh"]["posix-mode"] == "100755"


def test_chmod_of_a_committed_file_sends_no_bytes(server: Any, repo_ref: Any,
                                                  tmp_path: Path,
                                                  pytestconfig: pytest.Config) -> None:
    """chmod of a file whose bytes are already in the repository changes its metadata
    only: after the commit its mode is the new one, its bytes the same, and no upload of
    its content (single, multipart or batch) was sent. A server without the metadata-only
    update (``--wire current``, as the hosted service) gets the bytes again instead: then
    only the outcome is checked."""
    extension = "--wire current" not in pytestconfig.getoption("--server-args")
    data = os.urandom(1024 * 1024)
    Http(server, repo_ref).put("tool.bin", data)
    uploads = ("put", "put_part", "upload_url", "stage", "multipart_init")

    async def main() -> str:
        async with open_fs(server, repo_ref, tmp_path / "writer") as fs:
            ino = (await walk(fs, "tool.bin")).ino
            await fs.setattr(ino, mode=0o700)
            assert (await fs.getattr(ino)).mode == stat.S_IFREG | 0o700
            before = fs.remote.stats()
            commit_id = await committed(fs, "chmod only")
            after = fs.remote.stats()
            for kind in uploads if extension else ():
                assert after["by_kind"].get(kind, 0) == before["by_kind"].get(kind, 0), (
                    kind, before, after)
            if extension:
                assert after["bytes_out"] - before["bytes_out"] < len(data) // 4, (before,
                                                                                 after)
        async with open_fs(server, repo_ref, tmp_path / "reader", ref=commit_id) as fs:
            assert (await walk(fs, "tool.bin")).mode == stat.S_IFREG | 0o700
            assert await CoreFs(fs).read_file("tool.bin") == data
        return commit_id

    commit_id = trio.run(main)
    assert Stored(server, repo_ref).attrs(commit_id)["tool.bin"].permissions == 0o700
    assert Http(server, repo_ref).objects()["tool.bin"] == data


# --- times and owners -----------------------------------------------------------------

def test_mtime_is_kept_to_the_nanosecond(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    async def write(fs: Filesystem) -> None:
        await create(fs, "t.txt", b"time")
        await fs.setattr((await walk(fs, "t.txt")).ino, mtime_ns=MTIME_NS)
        await mkdir(fs, "d")
        await create(fs, "d/old", b"")
        await fs.setattr((await walk(fs, "d/old")).ino, mtime_ns=0)           # the epoch

    async def check(fs: Filesystem) -> None:
        assert (await walk(fs, "t.txt")).mtime_ns == MTIME_NS
        assert (await walk(fs, "d/old")).mtime_ns == 0

    commit_id = write_then_check(server, repo_ref, tmp_path, write, check)
    meta = Stored(server, repo_ref).metadata(commit_id)
    assert meta["t.txt"]["posix-mtime"] == "1577934245.123456789"


def test_owner_and_group_survive_commit(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    async def write(fs: Filesystem) -> None:
        await create(fs, "chowned", b"c")
        await fs.setattr((await walk(fs, "chowned")).ino, uid=1234, gid=2345)   # chown
        await create(fs, "made-by", b"m", uid=1234, gid=2345)   # the caller's ids at create
        await mkdir(fs, "dir-by", 0o750, uid=1234, gid=2345)
        await create(fs, "dir-by/inner", b"i")

    async def check(fs: Filesystem) -> None:
        for path in ("chowned", "made-by", "dir-by"):
            a = await walk(fs, path)
            assert (a.uid, a.gid) == (1234, 2345), path
        assert (await walk(fs, "dir-by")).mode == stat.S_IFDIR | 0o750

    commit_id = write_then_check(server, repo_ref, tmp_path, write, check)
    stored = Stored(server, repo_ref).attrs(commit_id)
    assert (stored["chowned"].uid, stored["chowned"].gid) == (1234, 2345)
    assert (stored["made-by"].uid, stored["made-by"].gid) == (1234, 2345)


def test_objects_without_attributes_get_the_defaults(server: Any, repo_ref: Any,
                                                     tmp_path: Path) -> None:
    """An object another tool wrote (no metadata, or metadata that does not parse) shows
    the mount's defaults, never an error."""
    http = Http(server, repo_ref)
    sid = http.client.post(f"{http.base}/sessions").json()["session_id"]
    http.put_in(sid, "foreign.txt", b"from elsewhere")
    http.commit(sid, "foreign").raise_for_status()

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path / "r", ref=http.log()[0]["id"]) as fs:
            a = await walk(fs, "foreign.txt")
            assert a.mode == stat.S_IFREG | fs.config.file_mode
            assert (a.uid, a.gid) == (fs.config.uid, fs.config.gid)
            assert await CoreFs(fs).read_file("foreign.txt") == b"from elsewhere"

    trio.run(main)


# --- symlinks -------------------------------------------------------------------------

def test_symlinks_survive_commit(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    async def write(fs: Filesystem) -> None:
        await create(fs, "target.txt", b"through the link")
        a = await symlink(fs, "rel", b"target.txt")
        assert stat.S_ISLNK(a.mode) and a.size == len(b"target.txt")
        await symlink(fs, "abs", b"/etc/hostname")
        await symlink(fs, "dangling", b"no/such/file")
        await mkdir(fs, "d")
        await symlink(fs, "d/up", b"../target.txt", uid=1234, gid=2345)
        assert await readlink(fs, "rel") == b"target.txt"   # before the commit too
        with pytest.raises(FsError) as e:
            await symlink(fs, "rel", b"again")
        assert errno_of(e) == errno.EEXIST

    async def check(fs: Filesystem) -> None:
        for path, target in (("rel", b"target.txt"), ("abs", b"/etc/hostname"),
                             ("dangling", b"no/such/file"), ("d/up", b"../target.txt")):
            a = await walk(fs, path)
            assert stat.S_ISLNK(a.mode), path
            assert a.size == len(target), path
            assert await readlink(fs, path) == target
        up = await walk(fs, "d/up")
        assert (up.uid, up.gid) == (1234, 2345)
        with pytest.raises(FsError) as e:
            await readlink(fs, "target.txt")
        assert errno_of(e) == errno.EINVAL

    commit_id = write_then_check(server, repo_ref, tmp_path, write, check)
    objects = Http(server, repo_ref).objects(ref=commit_id)
    assert objects["rel"] == b"target.txt" and objects["abs"] == b"/etc/hostname"
    stored = Stored(server, repo_ref).attrs(commit_id)
    assert stored["rel"].is_symlink and stored["dangling"].is_symlink
    assert not stored["target.txt"].is_symlink


def test_symlinks_rename_unlink_and_directory_rename(server: Any, repo_ref: Any,
                                                     tmp_path: Path) -> None:
    async def setup(fs: Filesystem) -> None:
        await mkdir(fs, "tree")
        await create(fs, "tree/f", b"f")
        await symlink(fs, "tree/to-f", b"f")
        await symlink(fs, "moved-me", b"tree/f")
        await symlink(fs, "remove-me", b"tree/f")

    async def change(fs: Filesystem) -> None:
        root = ROOT_INO
        await fs.rename(root, b"moved-me", root, b"moved", 0)
        await fs.unlink(root, b"remove-me")
        await fs.rename(root, b"tree", root, b"renamed-tree", 0)
        assert await readlink(fs, "renamed-tree/to-f") == b"f"

    async def check(fs: Filesystem) -> None:
        assert await readlink(fs, "moved") == b"tree/f"
        assert await readlink(fs, "renamed-tree/to-f") == b"f"
        assert stat.S_ISLNK((await walk(fs, "renamed-tree/to-f")).mode)
        for gone in ("moved-me", "remove-me", "tree"):
            with pytest.raises(FsError) as e:
                await walk(fs, gone)
            assert errno_of(e) == errno.ENOENT

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path / "a") as fs:
            await setup(fs)
            await committed(fs, "links")
        async with open_fs(server, repo_ref, tmp_path / "b") as fs:
            await change(fs)   # renames of committed links and of their directory
            await committed(fs, "moved links")

    trio.run(main)

    # nothing new to write: check the latest commit through fresh filesystems
    async def reopen() -> None:
        async with open_fs(server, repo_ref, tmp_path / "c") as fs:
            await check(fs)
        async with open_fs(server, repo_ref, tmp_path / "d",
                           ref=Http(server, repo_ref).log()[0]["id"]) as fs:
            await check(fs)

    trio.run(reopen)
    assert set(Http(server, repo_ref).objects()) == {"moved", "renamed-tree/f",
                                                     "renamed-tree/to-f"}


# --- empty directories ----------------------------------------------------------------

def test_empty_directories_persist_as_markers(server: Any, repo_ref: Any,
                                              tmp_path: Path) -> None:
    async def write(fs: Filesystem) -> None:
        await mkdir(fs, "a")
        await mkdir(fs, "a/b")
        await mkdir(fs, "a/b/c")
        await mkdir(fs, "private", 0o700)
        await mkdir(fs, "full")
        await create(fs, "full/f", b"f")

    async def check(fs: Filesystem) -> None:
        for path, mode in (("a", 0o755), ("a/b", 0o755), ("a/b/c", 0o755),
                           ("private", 0o700), ("full", 0o755)):
            assert (await walk(fs, path)).mode == stat.S_IFDIR | mode, path
        cfs = CoreFs(fs)
        assert await cfs.listdir("a/b/c") == []
        assert sorted(await cfs.listdir("")) == ["a", "full", "private"]
        assert await cfs.listdir("a") == ["b"]   # a marker is no entry of its own

    commit_id = write_then_check(server, repo_ref, tmp_path, write, check)
    stored = Stored(server, repo_ref).attrs(commit_id)
    assert stored["a/b/c/"].is_dir and stored["a/b/c/"].permissions == 0o755
    assert stored["private/"].is_dir and stored["private/"].permissions == 0o700
    assert Http(server, repo_ref).objects(ref=commit_id)["private/"] == b""
    assert "full/f" in stored


def test_rmdir_of_a_committed_empty_directory(server: Any, repo_ref: Any,
                                              tmp_path: Path) -> None:
    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path / "a") as fs:
            await mkdir(fs, "keep")
            await mkdir(fs, "drop")
            await committed(fs, "two empty dirs")
        async with open_fs(server, repo_ref, tmp_path / "b") as fs:
            await fs.rmdir(ROOT_INO, b"drop")
            await committed(fs, "rmdir")
        async with open_fs(server, repo_ref, tmp_path / "c") as fs:
            assert stat.S_ISDIR((await walk(fs, "keep")).mode)
            with pytest.raises(FsError) as e:
                await walk(fs, "drop")
            assert errno_of(e) == errno.ENOENT
            assert await CoreFs(fs).listdir("") == ["keep"]

    trio.run(main)
    assert set(Http(server, repo_ref).objects()) == {"keep/"}


def test_a_directory_keeps_its_mode_once_it_holds_files(server: Any, repo_ref: Any,
                                                        tmp_path: Path) -> None:
    """A file added later to a committed empty directory does not lose the directory's
    attributes (whether the marker stays is the mount's business), and the marker never
    shows as an entry."""
    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path / "a") as fs:
            await mkdir(fs, "d", 0o700)
            await committed(fs, "empty d")
        async with open_fs(server, repo_ref, tmp_path / "b") as fs:
            await create(fs, "d/f", b"f")
            await committed(fs, "d/f")
        async with open_fs(server, repo_ref, tmp_path / "c") as fs:
            assert (await walk(fs, "d")).mode == stat.S_IFDIR | 0o700
            assert await CoreFs(fs).listdir("d") == ["f"]

    trio.run(main)
    assert "d/f" in Http(server, repo_ref).objects()


def test_emptying_a_directory_keeps_its_stored_attributes(server: Any, repo_ref: Any,
                                                         tmp_path: Path) -> None:
    """A directory emptied here after its cached attributes expired stays, with the mode
    its marker holds (shown, and stored again at commit), not the defaults."""
    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path / "a") as fs:
            await mkdir(fs, "private", 0o700)
            await create(fs, "private/f", b"f")
            await committed(fs, "private with f")
        async with open_fs(server, repo_ref, tmp_path / "b", attr_ttl=0.05,
                           negative_ttl=0.05) as fs:
            pino = (await walk(fs, "private")).ino
            await fs.lookup(pino, b"f")
            await trio.sleep(0.2)  # every cached attribute is gone
            await fs.unlink(pino, b"f")
            assert (await fs.getattr(pino)).mode == stat.S_IFDIR | 0o700
            await committed(fs, "emptied")
        async with open_fs(server, repo_ref, tmp_path / "c") as fs:
            assert (await walk(fs, "private")).mode == stat.S_IFDIR | 0o700
            assert await CoreFs(fs).listdir("private") == []

    trio.run(main)
    stored = Stored(server, repo_ref).attrs()
    assert "private/f" not in stored
    assert stored["private/"].mode == stat.S_IFDIR | 0o700


# --- reading what another writer stored -----------------------------------------------

@asynccontextmanager
async def at_head(server: Any, repo: Any, tmp: Path) -> AsyncIterator[Filesystem]:
    async with open_fs(server, repo, tmp, ref=Http(server, repo).log()[0]["id"]) as fs:
        yield fs


def test_attributes_written_by_another_client_are_shown(server: Any, repo_ref: Any,
                                                        tmp_path: Path) -> None:
    """The mount reads what ``tilde.posix.posix_metadata`` writes (the same encoding)."""
    import tilde.posix

    http = Http(server, repo_ref)
    sid = http.client.post(f"{http.base}/sessions").json()["session_id"]
    http.put_in(sid, "x.sh", b"#!/bin/sh\n", tilde.posix.posix_metadata(
        mode=0o750, uid=7, gid=8, mtime_ns=MTIME_NS))
    http.put_in(sid, "ln", b"x.sh", tilde.posix.symlink_metadata())
    http.put_in(sid, "e/", b"",
                      tilde.posix.posix_metadata(mode=stat.S_IFDIR | 0o711))
    http.put_in(sid, "bad", b"b", {"posix-mode": "garbage", "posix-uid": "-1"})
    http.commit(sid, "written by another client").raise_for_status()

    async def main() -> None:
        async with at_head(server, repo_ref, tmp_path / "r") as fs:
            a = await walk(fs, "x.sh")
            assert (a.mode, a.uid, a.gid, a.mtime_ns) == (stat.S_IFREG | 0o750, 7, 8,
                                                          MTIME_NS)
            assert stat.S_ISLNK((await walk(fs, "ln")).mode)
            assert await readlink(fs, "ln") == b"x.sh"
            assert (await walk(fs, "e")).mode == stat.S_IFDIR | 0o711
            assert await CoreFs(fs).listdir("e") == []
            assert sorted(await CoreFs(fs).listdir("")) == ["bad", "e", "ln", "x.sh"]
            bad = await walk(fs, "bad")   # values that do not parse: the defaults
            assert bad.mode == stat.S_IFREG | fs.config.file_mode
            assert bad.uid == fs.config.uid

    trio.run(main)
