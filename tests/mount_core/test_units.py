"""Unit tests of the pieces with subtleties: block cache, prefetch window, inodes, readdir merge."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import trio

from tilde_mount.data_cache import BlockCache, ObjectRef
from tilde_mount.inodes import ROOT_INO, InodeTable
from tilde_mount.meta_cache import DirEntry, DirPage, MetaCache, Stat
from tilde_mount.prefetch import Prefetcher
from tilde_mount.readdir import DirHandle

from .harness import CoreFs, Http, open_fs

KiB = 1024


def make_cache(tmp: Path | None = None, **kw: Any) -> BlockCache:
    args: dict[str, Any] = dict(block_size=4 * KiB, memory_bytes=64 * KiB,
                                max_request_bytes=16 * KiB, fetch_limiter=trio.CapacityLimiter(4))
    if tmp is not None:
        args.update(disk_dir=tmp, disk_bytes=40 * KiB)
    args.update(kw)
    return BlockCache(**args)


def test_concurrent_misses_share_one_fetch() -> None:
    data = os.urandom(100 * KiB)
    ref = ObjectRef("p", "etag1", len(data))
    calls: list[tuple[int, int]] = []

    async def fetch(start: int, end: int) -> bytes:
        calls.append((start, end))
        await trio.sleep(0.05)
        return data[start:end]

    async def main() -> None:
        cache = make_cache()
        results: list[bytes] = []

        async def reader() -> None:
            results.append(await cache.read(ref, 5000, 3000, fetch))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(reader)
        assert results == [data[5000:8000]] * 10
        assert len(calls) == 1 and calls[0] == (4096, 8192)
        # a changed ETag is another key: never the old bytes
        new = os.urandom(100 * KiB)

        async def fetch_new(start: int, end: int) -> bytes:
            return new[start:end]

        assert await cache.read(ObjectRef("p", "etag2", len(new)), 5000, 10, fetch_new) \
            == new[5000:5010]

    trio.run(main)


def test_contiguous_misses_coalesce_and_memory_is_bounded() -> None:
    data = os.urandom(200 * KiB)
    ref = ObjectRef("p", "e", len(data))
    calls: list[tuple[int, int]] = []

    async def fetch(start: int, end: int) -> bytes:
        calls.append((start, end))
        return data[start:end]

    async def main() -> None:
        cache = make_cache()
        assert await cache.read(ref, 0, len(data), fetch) == data
        assert all(e - s <= 16 * KiB for s, e in calls)
        assert len(calls) == 200 // 16 + 1
        assert cache.usage()["memory_bytes"] <= 64 * KiB

    trio.run(main)


def test_drop_behind_keeps_only_what_is_not_read_yet() -> None:
    data = os.urandom(64 * KiB)
    ref = ObjectRef("p", "e", len(data))

    async def fetch(start: int, end: int) -> bytes:
        return data[start:end]

    async def main() -> None:
        cache = make_cache()
        await cache.prefetch(ref, 0, 32 * KiB, fetch)  # read-ahead: blocks 0-7
        assert cache.usage()["memory_bytes"] == 32 * KiB
        assert await cache.read(ref, 0, 6 * KiB, fetch, drop_behind=True) == data[:6 * KiB]
        # block 0 was consumed and dropped; block 1 is half read and stays
        assert not cache.cached(ref, 0) and cache.cached(ref, 1)
        assert await cache.read(ref, 6 * KiB, 10 * KiB, fetch, drop_behind=True) \
            == data[6 * KiB:16 * KiB]
        assert [cache.cached(ref, i) for i in range(8)] == [False] * 4 + [True] * 4
        # a random reader (no drop-behind) keeps what it read
        assert await cache.read(ref, 20 * KiB, 100, fetch) == data[20 * KiB:20 * KiB + 100]
        assert cache.cached(ref, 5)

    trio.run(main)


def test_disk_cache_survives_and_is_bounded(tmp_path: Path) -> None:
    data = os.urandom(30 * KiB)
    ref = ObjectRef("p", "e", len(data))
    calls: list[int] = []

    async def fetch(start: int, end: int) -> bytes:
        calls.append(start)
        return data[start:end]

    async def main() -> None:
        first = make_cache(tmp_path, memory_bytes=1)  # no block fits: every read fetches
        await first.start()
        assert await first.read(ref, 0, len(data), fetch) == data
        # fetched once: memory only (read once, as streams are, costs no disk writes)
        assert first.usage()["disk_bytes"] == 0 and first.usage()["disk_first_fetch"] == 8
        assert await first.read(ref, 0, len(data), fetch) == data
        assert first.usage()["disk_bytes"] == len(data), "admitted on the second fetch"
        n = len(calls)
        second = make_cache(tmp_path, memory_bytes=4 * KiB)
        await second.start()
        assert await second.read(ref, 0, len(data), fetch) == data
        assert len(calls) == n, "served from the disk cache"
        assert second.usage()["disk_hits"] == 8
        other = ObjectRef("q", "e2", len(data))
        await second.read(other, 0, len(data), fetch)
        assert second.usage()["disk_bytes"] <= 40 * KiB

    trio.run(main)
    total = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert total <= 40 * KiB


def test_prefetch_window_grows_and_random_reads_do_not_prefetch() -> None:
    p = Prefetcher(initial=1024, maximum=8192)
    size = 1 << 20
    ranges = []
    off = 0
    for _ in range(40):
        r = p.on_read(off, 256, size)
        if r:
            ranges.append(r)
        off += 256
    assert ranges[0] == (512, 1536)  # not on the first read: on the second, sequential one
    widths = [e - s for s, e in ranges]
    assert widths == sorted(widths) and max(widths) == 8192
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    q = Prefetcher(initial=1024, maximum=8192)
    assert [q.on_read(o, 4096, size) for o in (50_000, 9_000, 700_000, 123)] == [None] * 4
    first = Prefetcher(initial=1024, maximum=8192)
    assert first.on_read(0, 4096, size) is None  # opening a file to read its header
    assert first.on_read(4096, 4096, size) == (8192, 9216)


def test_inode_table_lookups_forget_rename() -> None:
    t = InodeTable()
    a = t.remember("a", True)
    f = t.remember("a/f", False)
    t.remember("a/f", False)
    assert f.lookups == 2 and t.by_path("a/f") is f
    t.rename("a", "b")
    assert t.by_path("b/f") is f and f.path == "b/f" and t.by_path("a/f") is None
    t.forget(f.ino, 1)
    assert t.get(f.ino) is f
    t.opened(f)
    t.forget(f.ino, 1)
    assert t.get(f.ino) is f, "an open handle keeps the inode"
    t.closed(f)
    assert t.get(f.ino) is None
    g = t.remember("b/f", False)
    assert g.ino != f.ino, "numbers are never reused"
    t.forget(ROOT_INO, 100)
    assert t.get(ROOT_INO) is not None
    assert a.ino != g.ino


def test_dirhandle_merges_local_names_in_order() -> None:
    h = DirHandle("d", {"b": Stat(False), "zz": Stat(True), "c": Stat(False, 5)})
    h.add_page(DirPage((DirEntry("a", Stat(False)), DirEntry("c", Stat(False, 1))), True, "d/c"))
    assert [e.name for e in h.entries] == ["a", "b", "c"]
    assert h.entries[2].stat.size == 5, "local attributes win"
    h.add_page(DirPage((DirEntry("y", Stat(True)),), False, None))
    assert [e.name for e in h.entries] == ["a", "b", "c", "y", "zz"]


def test_meta_cache_ttl_expiry() -> None:
    now = [0.0]
    m = MetaCache(10, 5, timer=lambda: now[0])
    m.put("x", Stat(False, 1))
    m.put_negative("y")
    assert m.get("x") is not None and m.is_negative("y")
    now[0] = 6
    assert not m.is_negative("y") and m.get("x") is not None
    now[0] = 11
    assert m.get("x") is None


def test_kernel_cache_kept_while_etag_unchanged(server: Any, repo_ref: Any,
                                               tmp_path: Path) -> None:
    http = Http(server, repo_ref)
    http.put("k.txt", b"v1")

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            ino = (await cfs.stat("k.txt")).ino
            first = await fs.open(ino, os.O_RDONLY)
            await fs.release(first.fh)
            second = await fs.open(ino, os.O_RDONLY)
            await fs.release(second.fh)
            assert second.keep_cache
            await cfs.write_file("k.txt", b"v2 changed")  # a new ETag once uploaded
            await fs.sync()
            third = await fs.open(ino, os.O_RDONLY)
            assert not third.keep_cache
            assert await fs.read(third.fh, 0, 100) == b"v2 changed"
            await fs.release(third.fh)

    trio.run(main)


def test_staging_of_dead_daemons_is_removed_unless_it_journals(tmp_path: Path) -> None:
    """journal.py subtlety 3: a dead daemon's directory with nothing acknowledged goes; one
    with a record (or a session to resume) is handed to the new daemon; a directory whose
    lock is held (a live daemon, whatever its pid says) is left alone."""
    from tilde_mount import journal
    from tilde_mount.upload import Staging

    root = tmp_path / "staging"
    dead = root / "4194999-abcd"  # above any pid_max: no such process
    dead.mkdir(parents=True)
    (dead / "1").write_bytes(b"x")
    journaled = root / "4194998-abcd"
    journaled.mkdir()
    (journaled / "lock").touch()  # a lock nobody holds: its daemon is gone
    (journaled / "1").write_bytes(b"closed")
    (journaled / "1.json").write_text('{"path": "a/b.txt", "damaged": null}')
    (journaled / "mount.json").write_text('{"repository": "o/r", "session_id": "s1"}')
    alive = root / "4194997-beef"  # a dead pid, but its lock is held: alive
    alive.mkdir()
    fd = journal.hold(alive)
    try:
        async def main() -> None:
            staging = Staging(root)
            found = await staging.start()
            assert staging.root.is_dir()
            assert not dead.exists() and alive.exists() and journaled.exists()
            assert [(d.session_id, [(f.path, f.size) for f in d.files]) for d in found] == \
                [("s1", [("a/b.txt", 6)])]
            await staging.close()
            assert not staging.root.exists()

        trio.run(main)
    finally:
        os.close(fd)
