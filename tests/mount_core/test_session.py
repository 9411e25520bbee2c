"""Sessions, caches and the remote: behaviour beyond plain POSIX, over a real tilde-server."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel

from tilde import exceptions as exc
from tilde_mount.errors import FsError
from tilde_mount.fs import ROOT_INO
from tilde_mount.remote import HttpRemote

from .behaviour import expect_errno
from .harness import CoreFs, Http, open_fs


def requests(fs: Any) -> int:
    return int(fs.remote.stats()["total"])


def test_readdir_dot_entries(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    """Every listing starts with "." (the directory) and ".." (its parent; the root's is
    the root), without a lookup reference, and with cookies that resume at the right place."""
    http = Http(server, repo_ref)
    sid = http.client.post(f"{http.base}/sessions").json()["session_id"]
    http.put_in(sid, "a/b/f.txt", b"f")
    http.put_in(sid, "a/g.txt", b"g")
    assert http.commit(sid, "seed").status_code == 200

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            a, b = (await cfs.stat("a")).ino, (await cfs.stat("a/b")).ino

            async def listing(ino: int, start: int = 0, limit: int = 100
                              ) -> list[tuple[str, int, int]]:
                fh = await fs.opendir(ino)
                out: list[tuple[str, int, int]] = []

                def reply(name: bytes, attr: Any, next_id: int) -> bool:
                    if len(out) >= limit:
                        return False
                    out.append((name.decode(), attr.ino, next_id))
                    return True

                await fs.readdir(fh, start, reply)
                await fs.releasedir(fh)
                return out

            assert [(n, i) for n, i, _ in (await listing(ROOT_INO))[:2]] == [
                (".", ROOT_INO), ("..", ROOT_INO)]
            top = await listing(a)
            assert [(n, i) for n, i, _ in top] == [(".", a), ("..", ROOT_INO), ("b", b),
                                                   ("g.txt", top[3][1])]
            lookups = {ino: fs._inodes.get(ino).lookups for ino in (a, b)}
            assert [(n, i) for n, i, _ in (await listing(b))[:2]] == [(".", b), ("..", a)]
            # "." and ".." took no lookup reference (the kernel counts none for them)
            assert {ino: fs._inodes.get(ino).lookups for ino in lookups} == lookups
            # cookies: resume after ".", after "..", after "b"; a full buffer stops early
            assert [n for n, _, _ in await listing(a, top[0][2])] == ["..", "b", "g.txt"]
            assert [n for n, _, _ in await listing(a, top[1][2])] == ["b", "g.txt"]
            assert [n for n, _, _ in await listing(a, top[2][2])] == ["g.txt"]
            assert await listing(a, top[3][2]) == []
            assert [n for n, _, _ in await listing(a, 0, limit=1)] == ["."]
            # a directory made here: ".." is its parent too
            await cfs.mkdir("a/new")
            new = (await cfs.stat("a/new")).ino
            assert [(n, i) for n, i, _ in await listing(new)] == [(".", new), ("..", a)]

    trio.run(main)


def test_readdir_pages_and_stable_cookies(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    http = Http(server, repo_ref)
    sid = http.client.post(f"{http.base}/sessions").json()["session_id"]
    names = [f"f{i:03d}.txt" for i in range(23)]
    for n in names:
        http.put_in(sid, f"many/{n}", n.encode())
    http.put_in(sid, "many/sub/x", b"x")
    assert http.commit(sid, "many").status_code == 200

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path, list_page_size=4) as fs:
            cfs = CoreFs(fs)
            await cfs.mkdir("many/newdir")
            await cfs.write_file("many/f010b.txt", b"local")  # sorts inside the listing
            listed = await cfs.listdir("many")
            expected = sorted([*names, "sub", "newdir", "f010b.txt"],
                              key=lambda n: n + "/" if n in ("sub", "newdir") else n)
            assert listed == expected
            assert fs.remote.stats()["by_kind"]["list"] >= 7  # 24 entries / 4 per page

            # cookies survive a change made between two readdir calls
            ino = (await cfs.stat("many")).ino
            fh = await fs.opendir(ino)
            got: list[tuple[str, int]] = []

            def first5(name: bytes, attr: Any, next_id: int) -> bool:
                if len(got) >= 5:
                    return False
                got.append((name.decode(), next_id))
                return True

            await fs.readdir(fh, 0, first5)
            await cfs.unlink("many/f001.txt")  # already emitted
            await cfs.write_file("many/f000a.txt", b"new, sorts before the cookie")
            rest: list[str] = []
            await fs.readdir(fh, got[-1][1], lambda n, a, i: rest.append(n.decode()) is None)
            await fs.releasedir(fh)
            seen = [n for n, _ in got] + rest
            assert len(seen) == len(set(seen)), "no name twice"
            assert set(expected) - {"f000a.txt"} <= set(seen), "nothing skipped"

            # repeated ls within the TTL: no request at all
            await fs.sync()
            assert len(await cfs.listdir("many")) == len(expected)  # one less, one more
            before = requests(fs)
            assert len(await cfs.listdir("many")) == len(expected)
            for n in names[2:6]:
                await cfs.stat(f"many/{n}")
            assert requests(fs) == before

    trio.run(main)


def test_meta_and_negative_cache_send_no_request(server: Any, repo_ref: Any,
                                                 tmp_path: Path) -> None:
    http = Http(server, repo_ref)
    http.put("a/b.txt", b"bee")

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            assert await cfs.size("a/b.txt") == 3
            before = requests(fs)
            for _ in range(5):
                assert await cfs.size("a/b.txt") == 3
                assert await cfs.is_dir("a")
            assert requests(fs) == before
            assert not await cfs.exists("a/missing")
            after_miss = requests(fs)
            for _ in range(5):
                assert not await cfs.exists("a/missing")
            assert requests(fs) == after_miss, "negative lookups are cached"
            # reading twice: the second read is served by the block cache
            assert await cfs.read_file("a/b.txt") == b"bee"
            n = requests(fs)
            assert await cfs.read_file("a/b.txt") == b"bee"
            assert requests(fs) == n
            # a complete listing answers lookups of absent names without a request
            await cfs.listdir("a")
            n = requests(fs)
            assert not await cfs.exists("a/other")
            assert requests(fs) == n
            # inside a directory made on this mount, probes of absent names are free
            await cfs.mkdir("fresh")
            await cfs.mkdir("fresh/sub")
            n = requests(fs)
            for probe in ("fresh/HEAD", "fresh/sub/x", "fresh/config.lock"):
                assert not await cfs.exists(probe)
            assert requests(fs) == n
            await cfs.write_file("fresh/sub/x", b"x")
            await fs.sync()
            await cfs.rename("fresh/sub", "fresh/moved")
            assert await cfs.read_file("fresh/moved/x") == b"x"
            assert await cfs.listdir("fresh") == ["moved"]

    trio.run(main)


def test_random_read_fetches_kilobytes_and_sequential_prefetches(
        server: Any, repo_ref: Any, tmp_path: Path) -> None:
    http = Http(server, repo_ref)
    data = os.urandom(6 * 1024 * 1024)
    http.put("big.bin", data)

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path, cache_size=0) as fs:
            cfs = CoreFs(fs)
            ino = (await cfs.stat("big.bin")).ino
            fh = (await fs.open(ino, os.O_RDONLY)).fh
            before = fs.remote.stats()["bytes_in"]
            assert await fs.read(fh, 3_000_000, 4096) == data[3_000_000:3_004_096]
            fetched = fs.remote.stats()["bytes_in"] - before
            assert fetched <= 2 * 64 * 1024, f"a 4 KiB random read moved {fetched} bytes"
            await fs.release(fh)

            fh = (await fs.open(ino, os.O_RDONLY)).fh
            reads_before = fs.remote.stats()["by_kind"].get("read", 0)
            out = bytearray()
            for off in range(0, len(data), 128 * 1024):
                out += await fs.read(fh, off, 128 * 1024)
                await trio.lowlevel.checkpoint()
            await fs.release(fh)
            assert bytes(out) == data
            reads = fs.remote.stats()["by_kind"]["read"] - reads_before
            # 6 MiB in 128 KiB reads = 48 reads; prefetch in up-to-512 KiB requests
            assert reads < 30, reads
            usage = (await fs.status())["cache"]["blocks"]
            assert usage["memory_bytes"] <= usage["memory_limit"]

    trio.run(main)


def test_write_into_existing_object_and_visibility(server: Any, repo_ref: Any,
                                                   tmp_path: Path) -> None:
    http = Http(server, repo_ref)
    original = os.urandom(300_000)
    http.put("doc.bin", original)

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            ino = (await cfs.stat("doc.bin")).ino
            reader = (await fs.open(ino, os.O_RDONLY)).fh
            assert await fs.read(reader, 0, 10) == original[:10]
            writer = (await fs.open(ino, os.O_RDWR)).fh
            assert await fs.write(writer, 5, b"HELLO") == 5
            # another handle (another process) sees the write at once, before any upload
            assert await fs.read(reader, 0, 12) == original[:5] + b"HELLO" + original[10:12]
            assert await fs.read(writer, 299_990, 100) == original[299_990:]
            await fs.fsync(writer, False)  # waits for the upload
            assert (await fs.status())["uploads_pending"] == 0
            await fs.release(writer)
            await fs.release(reader)
            expected = original[:5] + b"HELLO" + original[10:]
            sid = fs.session_id
            assert sid is not None
            objects = await trio.to_thread.run_sync(lambda: http.objects(session_id=sid))
            assert objects["doc.bin"] == expected
            st = await fs.status()
            assert st["modified"] == ["doc.bin"] and st["added"] == [] and st["deleted"] == []

            # unlink while open: the open handle still reads its data
            await cfs.write_file("tmp.txt", b"still here")
            t_ino = (await cfs.stat("tmp.txt")).ino
            h = (await fs.open(t_ino, os.O_RDONLY)).fh
            await cfs.unlink("tmp.txt")
            assert await fs.read(h, 0, 100) == b"still here"
            assert (await fs.getattr(t_ino)).size == 10
            await fs.release(h)

    trio.run(main)


def test_multipart_upload_parallel_parts(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    http = Http(server, repo_ref)
    part = 5 * 1024 * 1024  # S3's least part size (but the last): any deployment takes it
    data = os.urandom(2 * part + 3)

    async def main() -> None:
        kw = {"single_upload_limit": 1024 * 1024, "part_size": part}
        async with open_fs(server, repo_ref, tmp_path, remote_kw=kw) as fs:
            await CoreFs(fs).write_file("mp.bin", data)
            await fs.sync()
            kinds = fs.remote.stats()["by_kind"]
            assert kinds.get("multipart_init") == 1 and kinds.get("put_part") == 3, kinds
            await fs.commit("multipart", None)

    trio.run(main)
    assert http.objects()["mp.bin"] == data


def test_commit_continues_on_fresh_session(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    http = Http(server, repo_ref)

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            await cfs.write_file("one.txt", b"1")
            ino = (await cfs.stat("one.txt")).ino
            fh = (await fs.open(ino, os.O_RDWR)).fh
            await fs.write(fh, 1, b"+open")  # still open at commit: uploaded as it stands
            first_sid = fs.session_id
            o1 = await fs.commit("first", {"k": "v"})
            assert o1.status == "committed" and fs.session_id != first_sid
            assert (await trio.to_thread.run_sync(http.objects))["one.txt"] == b"1+open"
            await fs.write(fh, 6, b"!")  # the open handle stays valid
            await fs.release(fh)
            assert await cfs.read_file("one.txt") == b"1+open!"
            await cfs.write_file("two.txt", b"2")
            o2 = await fs.commit("second", None)
            assert o2.commit_id != o1.commit_id
            st = await fs.status()
            assert st["added"] == [] and st["modified"] == [] and st["uploads_pending"] == 0

    trio.run(main)
    log = http.log()
    assert [c["message"] for c in log[:2]] == ["second", "first"]
    assert log[1]["metadata"] == {"k": "v"}
    assert http.objects() == {"one.txt": b"1+open!", "two.txt": b"2"}


def test_rollback_discards_and_continues(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    http = Http(server, repo_ref)
    http.put("keep.txt", b"keep")

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            await cfs.write_file("new.txt", b"new")
            await fs.sync()
            await cfs.unlink("keep.txt")
            await cfs.mkdir("emptydir")
            await cfs.write_file("pending.txt", b"not uploaded yet")
            sid = fs.session_id
            await fs.rollback()
            assert fs.session_id != sid
            assert sorted(await cfs.listdir("")) == ["keep.txt"]
            assert await cfs.read_file("keep.txt") == b"keep"
            st = await fs.status()
            assert (st["added"], st["modified"], st["deleted"]) == ([], [], [])

    trio.run(main)
    assert http.objects() == {"keep.txt": b"keep"}


def test_conflict_keeps_everything_then_commit_succeeds(server: Any, repo_ref: Any,
                                                        tmp_path: Path) -> None:
    http = Http(server, repo_ref)
    http.put("shared.txt", b"base")

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            await cfs.write_file("shared.txt", b"mine")
            await cfs.write_file("mine-only.txt", b"only mine")
            await fs.sync()
            await trio.to_thread.run_sync(lambda: http.put("shared.txt", b"theirs", "other"))
            sid = fs.session_id
            with pytest.raises(exc.ConflictError):
                await fs.commit("conflicting", None)
            # nothing lost: same session, same content, mount still serving
            assert fs.session_id == sid
            assert await cfs.read_file("shared.txt") == b"mine"
            assert await cfs.read_file("mine-only.txt") == b"only mine"
            st = await fs.status()
            assert "mine-only.txt" in st["added"]
            # resolve: start over on a fresh session, keep "mine"
            await fs.rollback()
            await cfs.write_file("shared.txt", b"mine")
            await cfs.write_file("mine-only.txt", b"only mine")
            assert (await fs.commit("resolved", None)).status == "committed"

    trio.run(main)
    assert http.objects() == {"shared.txt": b"mine", "mine-only.txt": b"only mine"}


def test_resume_by_session_id(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    http = Http(server, repo_ref)

    async def first() -> str:
        async with open_fs(server, repo_ref, tmp_path / "a") as fs:
            await CoreFs(fs).mkdir("dir")
            await CoreFs(fs).write_file("dir/resumed.txt", b"uploaded before the crash")
            await fs.sync()
            assert fs.session_id is not None
            return fs.session_id  # close without commit: the "crash"

    sid = trio.run(first)

    async def second() -> None:
        async with open_fs(server, repo_ref, tmp_path / "b", session_id=sid) as fs:
            cfs = CoreFs(fs)
            assert fs.session_id == sid
            assert await cfs.read_file("dir/resumed.txt") == b"uploaded before the crash"
            assert (await fs.status())["added"] == ["dir/resumed.txt"]
            await fs.commit("resumed", None)

    trio.run(second)
    assert http.objects() == {"dir/resumed.txt": b"uploaded before the crash"}


def test_read_only_and_ref_reads(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    http = Http(server, repo_ref)
    old = http.put("v.txt", b"version one")
    http.put("v.txt", b"version two, longer")
    http.put("later.txt", b"later")

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path / "ro", read_only=True) as fs:
            cfs = CoreFs(fs)
            assert await cfs.read_file("v.txt") == b"version two, longer"
            await expect_errno(errno.EROFS, cfs.write_file("x.txt", b"x"))
            await expect_errno(errno.EROFS, cfs.mkdir("d"))
            await expect_errno(errno.EROFS, cfs.unlink("v.txt"))
            ino = (await cfs.stat("v.txt")).ino
            with pytest.raises(FsError) as info:
                await fs.open(ino, os.O_WRONLY)
            assert info.value.errno == errno.EROFS
        async with open_fs(server, repo_ref, tmp_path / "old", ref=old) as fs:
            cfs = CoreFs(fs)
            assert fs.read_only
            assert await cfs.read_file("v.txt") == b"version one"
            assert await cfs.listdir("") == ["v.txt"]
            assert not await cfs.exists("later.txt")
            await expect_errno(errno.EROFS, cfs.truncate("v.txt", 0))

    trio.run(main)


def test_invalid_keys_are_skipped(server: Any, repo_ref: Any, tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    http = Http(server, repo_ref)
    sid = http.client.post(f"{http.base}/sessions").json()["session_id"]
    for key in ("ok.txt", "bad//double.txt", "w//x", "w/fine.txt"):
        http.put_in(sid, key, b"x")
    assert http.commit(sid, "odd keys").status_code == 200

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            root = await cfs.listdir("")
            assert "ok.txt" in root and "w" in root
            assert await cfs.listdir("bad") == []
            assert await cfs.listdir("w") == ["fine.txt"]
            await cfs.listdir("w")

    trio.run(main)
    skipped = [r for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 2, [r.getMessage() for r in skipped]


def test_unsupported_names_and_errors(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            with pytest.raises(FsError) as info:
                await fs.mkdir(ROOT_INO, b"bad\xff", stat.S_IFDIR | 0o755)
            assert info.value.errno == errno.EINVAL
            await CoreFs(fs).write_file("f", b"")
            with pytest.raises(FsError) as info:
                await fs.create(ROOT_INO, b"f", 0o644, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            assert info.value.errno == errno.EEXIST

    trio.run(main)


class FlakyTransport(httpx.AsyncBaseTransport):
    """Fails the first ``failures`` requests like a dropped connection, then forwards."""

    def __init__(self, failures: int, status: int | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.failures = failures
        self.status = status

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failures > 0:
            self.failures -= 1
            if self.status is not None:
                return httpx.Response(self.status, json={"message": "try later"})
            raise httpx.ConnectError("connection reset", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("status", [None, 503])
def test_transient_failures_are_retried(server: Any, repo_ref: Any, tmp_path: Path,
                                        status: int | None) -> None:
    Http(server, repo_ref).put("r.txt", b"retried")

    async def main() -> None:
        remote = HttpRemote(server.endpoint, repo_ref.path, server.api_key,
                            transport=FlakyTransport(3, status), backoff_base=0.01)
        try:
            obj = await remote.head("r.txt", _latest())
            assert obj.size == 7
            assert remote.stats()["retries"] == 3
            remote.retries = 1
            remote._client._transport = FlakyTransport(5, status)  # type: ignore[attr-defined]
            with pytest.raises(exc.TildeError):
                await remote.head("r.txt", _latest())
        finally:
            await remote.aclose()

    trio.run(main)


def _latest() -> Any:
    from tilde_mount.remote import View

    return View()


def test_unexpected_exception_becomes_eio(server: Any, repo_ref: Any, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    import pyfuse3

    from tilde_mount.fuse_ops import Operations

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            ops = Operations(fs)
            with pytest.raises(pyfuse3.FUSEError) as info:
                await ops.lookup(ROOT_INO, b"nothing-here", None)
            assert info.value.errno == errno.ENOENT

            async def boom(*a: Any, **k: Any) -> Any:
                raise RuntimeError("bug")

            fs.getattr = boom  # type: ignore[method-assign]
            with pytest.raises(pyfuse3.FUSEError) as info:
                await ops.getattr(ROOT_INO, None)
            assert info.value.errno == errno.EIO

    trio.run(main)
    assert any("unexpected error in getattr" in r.getMessage() and r.exc_info
               for r in caplog.records)


def test_listing_and_head_give_the_same_mtime(server: Any, repo_ref: Any) -> None:
    """A stat refreshed through HEAD must equal the one a listing gave: a differing mtime
    makes the kernel drop the page cache of an unchanged file."""
    Http(server, repo_ref).put("m.txt", b"mtime")

    async def main() -> None:
        remote = HttpRemote(server.endpoint, repo_ref.path, server.api_key)
        try:
            listed = (await remote.list_page("", _latest())).objects
            headed = await remote.head("m.txt", _latest())
        finally:
            await remote.aclose()
        assert [o.path for o in listed] == ["m.txt"]
        assert listed[0].mtime_ns == headed.mtime_ns > 0

    trio.run(main)
