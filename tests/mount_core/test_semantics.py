"""mount-semantics.md promises not covered elsewhere, checked without a kernel: the errno
table ("Failure"), a rejected key at run time, RENAME_EXCHANGE, and what --read-only pins."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tilde import exceptions as exc
from tilde_mount.errors import FsError, errno_for
from tilde_mount.fs import ROOT_INO, Filesystem
from tilde_mount.remote import HttpRemote

from .behaviour import expect_errno
from .harness import CoreFs, Http, open_fs, small_config


@pytest.mark.parametrize(("error", "creating", "expected"), [
    (exc.NotFoundError(404), False, errno.ENOENT),
    (exc.AuthenticationError(401), False, errno.EACCES),
    (exc.ForbiddenError(403), False, errno.EACCES),
    (exc.ConflictError(409), True, errno.EEXIST),
    (exc.ConflictError(409), False, errno.EBUSY),
    (exc.ServerError(503), False, errno.EIO),       # after the remote's retries
    (exc.APIError(429), False, errno.EIO),
    (exc.ServerError(501), False, errno.ENOTSUP),
    (exc.TransportError("reset"), False, errno.EIO),
    (RuntimeError("bug"), False, errno.EIO),
])
def test_errno_table(error: BaseException, creating: bool, expected: int) -> None:
    assert errno_for(error, creating=creating) == expected


def test_a_rejected_key_is_eacces(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    commit = Http(server, repo_ref).put("f.txt", b"f")

    async def main() -> None:
        remote = HttpRemote(server.endpoint, repo_ref.path, "tk-not-a-key", retries=0)
        fs = Filesystem(remote, small_config(tmp_path), ref=commit)
        try:
            async with fs.serving():
                with pytest.raises(FsError) as info:
                    await fs.lookup(ROOT_INO, b"f.txt")
                assert info.value.errno == errno.EACCES
        finally:
            await remote.aclose()

    trio.run(main)


def test_rename_exchange_is_enotsup_noreplace_is_eexist(server: Any, repo_ref: Any,
                                                        tmp_path: Path) -> None:
    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            await cfs.write_file("a", b"a")
            await cfs.write_file("b", b"b")
            for flags, code in ((2, errno.ENOTSUP), (1, errno.EEXIST)):
                with pytest.raises(FsError) as info:
                    await fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", flags)
                assert info.value.errno == code
            await fs.rename(ROOT_INO, b"a", ROOT_INO, b"c", 1)
            assert await cfs.listdir("") == ["b", "c"]

    trio.run(main)


def test_read_only_shows_the_commit_of_mount_time(server: Any, repo_ref: Any,
                                                  tmp_path: Path) -> None:
    """--read-only pins the latest commit *at mount time*; later commits need a remount."""
    http = Http(server, repo_ref)
    http.put("v.txt", b"one")

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path, read_only=True, attr_ttl=0.0,
                           negative_ttl=0.0) as fs:
            cfs = CoreFs(fs)
            assert await cfs.read_file("v.txt") == b"one"
            await trio.to_thread.run_sync(lambda: http.put("later.txt", b"later"))
            await trio.to_thread.run_sync(lambda: http.put("v.txt", b"two"))
            assert await cfs.listdir("") == ["v.txt"]
            assert await cfs.read_file("v.txt") == b"one"
            await expect_errno(errno.EROFS, cfs.write_file("x", b"x"))

    trio.run(main)


class _Down(httpx.AsyncBaseTransport):
    """The server is unreachable while ``down`` is set."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_commit_with_the_server_down_loses_nothing(server: Any, repo_ref: Any,
                                                     tmp_path: Path) -> None:
    http = Http(server, repo_ref)
    transport = _Down()

    async def main() -> None:
        kw = {"transport": transport, "retries": 1, "backoff_base": 0.001}
        async with open_fs(server, repo_ref, tmp_path, remote_kw=kw) as fs:
            cfs = CoreFs(fs)
            await cfs.write_file("uploaded.txt", b"up")
            await fs.sync()
            h = await cfs.open("pending.txt", os.O_CREAT | os.O_WRONLY)
            await cfs.hwrite(h, 0, b"pending")
            sid = fs.session_id
            transport.down = True
            with pytest.raises(exc.TransportError):
                await fs.commit("while down", None)
            assert fs.session_id == sid
            assert fs.progress().dirty_files == 1   # still staged, still dirty
            assert await cfs.hread(h, 0, 100) == b"pending"
            transport.down = False
            await cfs.close(h)
            outcome = await fs.commit("server back", None)
            assert outcome.status == "committed"

    trio.run(main)
    assert http.objects() == {"uploaded.txt": b"up", "pending.txt": b"pending"}


def test_an_uploaded_file_unlinked_while_open_stays_readable(server: Any, repo_ref: Any,
                                                             tmp_path: Path) -> None:
    """Once a file is uploaded its staged copy is gone; unlinking it while a reader has it
    open must still leave that reader the bytes (the server forgets them at once)."""
    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            await cfs.write_file("doomed.txt", b"still readable")
            await fs.commit("uploaded", None)  # uploaded, nothing staged any more
            h = await cfs.open("doomed.txt", os.O_RDONLY)
            await cfs.unlink("doomed.txt")
            assert not await cfs.exists("doomed.txt")
            assert await cfs.hread(h, 0, 100) == b"still readable"
            await cfs.close(h)
            assert await cfs.listdir("") == []

    trio.run(main)


class HeldListing(httpx.AsyncBaseTransport):
    """Holds the answer of one armed directory listing until ``release`` is set: a listing
    that was in flight while an upload into that directory landed."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.armed = False
        self.sent = trio.Event()
        self.release = trio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.armed and request.url.path.endswith("/objects"):
            self.armed = False
            await response.aread()
            self.sent.set()
            await self.release.wait()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_listing_older_than_an_upload_is_not_cached(server: Any, repo_ref: Any,
                                                      tmp_path: Path) -> None:
    transport = HeldListing()

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path,
                           remote_kw={"transport": transport}) as fs:
            cfs = CoreFs(fs)
            await cfs.mkdir("d")
            await cfs.write_file("d/old", b"old")
            await fs.commit("d", None)
            transport.armed = True
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cfs.listdir, "d")  # its page lacks d/new
                await transport.sent.wait()
                h = await cfs.open("d/new", os.O_CREAT | os.O_WRONLY)
                await cfs.hwrite(h, 0, b"new")
                await fs.fsync(h, False)  # uploaded: the staged copy goes at close
                await cfs.close(h)
                transport.release.set()
            assert await cfs.listdir("d") == ["new", "old"]
            assert await cfs.read_file("d/new") == b"new"

    trio.run(main)
