"""Block cache for object content: an LRU in memory and an LRU on local disk.

    BlockCache(block_size=, memory_bytes=, max_request_bytes=, disk_dir=None|Path,
               disk_bytes=, fetch_limiter=trio.CapacityLimiter)
    await cache.start()                                  # index the disk cache (thread)
    await cache.read(ref, offset, size, fetch) -> bytes
    await cache.prefetch(ref, start, end, fetch)         # fill, return nothing

Subtleties:
1. Blocks are keyed by (path, ETag, block size, index): content with a new ETag is a new
   key, so a changed object can never be served from old bytes, and no invalidation is
   ever needed; old keys just age out of the LRUs.
2. Concurrent misses on one block wait on that block's in-flight ``trio.Event`` (one
   fetch, many waiters), never on a global lock. Claiming a block (registering its event)
   happens without an ``await`` between the check and the claim. A waiter re-checks after
   the event: if the fetch failed or the block was evicted meanwhile, it fetches itself.
3. Contiguous missing blocks are fetched in one range GET of at most
   ``max_request_bytes``; separate runs go in parallel, bounded by ``fetch_limiter``
   (shared with prefetch, so the bytes in flight stay bounded).
4. Granularity is the block (128 KiB by default): a random 4 KiB read of a huge object
   fetches one block, never more.
5. Disk I/O (read, write, unlink, the start-up scan) runs in threads through the
   CapacityLimiter named "tilde-mount disk cache"; the event loop never blocks on it.
6. ``fetch(start, end)`` returns exactly ``end - start`` bytes or raises; a short answer
   (object changed under us) is an error, never a short block in the cache.
7. Admission to the disk cache on the *second* fetch (a 2Q-style "seen" list of block-key
   hashes, bounded): a block fetched for the first time goes to memory only; fetched again
   (the memory LRU and the kernel's page cache both dropped it), it is written to disk
   too. Data read once (the common case for streams: `cp`, a training epoch, a checksum)
   then costs no disk writes and evicts nothing useful from the disk cache; data read
   again and again reaches the disk on its second fetch. Measured: writing every fetched
   block cost the daemon about 1.7 CPU-seconds per GiB on the dev VM, a third of a cold
   sequential read (docs/performance.md). The seen list is in memory: after a remount a
   block needs two fetches again unless it is already on disk.
8. Drop-behind: a sequential reader's blocks leave the memory cache once a read has
   consumed them, so the memory holds what read-ahead fetched and nobody read yet (four
   streams' windows), not what the kernel's page cache already has. Without it four
   readers evicted each other's read-ahead and fetched 10-20 % twice (A, four readers).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trio
from cachetools import LRUCache

from .errors import FsError

log = logging.getLogger(__name__)

Fetch = Callable[[int, int], Awaitable[bytes]]


@dataclass(frozen=True)
class ObjectRef:
    """Immutable content: one ETag of one path."""

    path: str
    etag: str
    size: int


BlockKey = tuple[str, str, int, int]


class DiskLRU:
    """Blocks as files under ``root`` (two-level fan-out), least recently used evicted first.

    All methods that touch the disk are async and run the syscalls in a thread.
    """

    def __init__(self, root: Path, max_bytes: int, limiter: trio.CapacityLimiter) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._limiter = limiter
        self._index: OrderedDict[str, int] = OrderedDict()
        self.used = 0

    def _file(self, name: str) -> Path:
        return self.root / name[:2] / name

    async def start(self) -> None:
        def scan() -> list[tuple[float, str, int]]:
            self.root.mkdir(parents=True, exist_ok=True)
            found = []
            for sub in self.root.iterdir():
                if not sub.is_dir():
                    continue
                for f in sub.iterdir():
                    if f.name.endswith(".tmp"):
                        f.unlink(missing_ok=True)
                        continue
                    st = f.stat()
                    found.append((st.st_mtime, f.name, st.st_size))
            return sorted(found)

        for _, name, size in await trio.to_thread.run_sync(scan, limiter=self._limiter):
            self._index[name] = size
            self.used += size
        await self._evict()

    async def get(self, name: str) -> bytes | None:
        if name not in self._index:
            return None
        self._index.move_to_end(name)
        path = self._file(name)
        try:
            return await trio.to_thread.run_sync(path.read_bytes, limiter=self._limiter)
        except OSError:
            self.used -= self._index.pop(name, 0)
            return None

    async def put(self, name: str, data: bytes) -> None:
        if name in self._index or len(data) > self.max_bytes:
            return
        path = self._file(name)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)

        try:
            await trio.to_thread.run_sync(write, limiter=self._limiter)
        except OSError as e:  # a full or broken cache disk only costs hit rate
            log.warning("disk cache write failed: %s", e)
            return
        self._index[name] = len(data)
        self.used += len(data)
        await self._evict()

    async def _evict(self) -> None:
        victims = []
        while self.used > self.max_bytes and self._index:
            name, size = self._index.popitem(last=False)
            self.used -= size
            victims.append(self._file(name))
        if victims:
            def unlink() -> None:
                for v in victims:
                    v.unlink(missing_ok=True)
            await trio.to_thread.run_sync(unlink, limiter=self._limiter)


class BlockCache:
    def __init__(
        self,
        *,
        block_size: int,
        memory_bytes: int,
        max_request_bytes: int,
        fetch_limiter: trio.CapacityLimiter,
        disk_dir: Path | None = None,
        disk_bytes: int = 0,
    ) -> None:
        self.block_size = block_size
        self._max_blocks = max(1, max_request_bytes // block_size)
        self._mem: LRUCache[BlockKey, bytes] = LRUCache(maxsize=max(memory_bytes, 1),
                                                        getsizeof=len)
        self._fetch_limiter = fetch_limiter
        #: the "tilde-mount disk cache" limiter: threads doing block-cache file I/O
        self.disk_limiter = trio.CapacityLimiter(4)
        self._disk = (DiskLRU(disk_dir, disk_bytes, self.disk_limiter)
                      if disk_dir is not None and disk_bytes > 0 else None)
        self._inflight: dict[BlockKey, trio.Event] = {}
        #: hashes of block keys fetched once (subtlety 7), oldest first
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._max_seen = max(1024, min(disk_bytes // block_size, 1 << 16))
        #: fetched runs still being written to the disk cache, and the bound on them
        self._disk_backlog = 0
        self._max_disk_backlog = 2
        self.stats = {"memory_hits": 0, "disk_hits": 0, "blocks_fetched": 0,
                      "bytes_fetched": 0, "requests": 0, "disk_skipped": 0,
                      "disk_first_fetch": 0}

    async def start(self) -> None:
        if self._disk is not None:
            await self._disk.start()

    def key(self, ref: ObjectRef, index: int) -> BlockKey:
        return (ref.path, ref.etag, self.block_size, index)

    def _disk_name(self, key: BlockKey) -> str:
        return hashlib.sha256("\0".join(map(str, key)).encode()).hexdigest()

    def _block_range(self, ref: ObjectRef, index: int) -> tuple[int, int]:
        start = index * self.block_size
        return start, min(start + self.block_size, ref.size)

    async def read(self, ref: ObjectRef, offset: int, size: int, fetch: Fetch, *,
                   drop_behind: bool = False) -> bytes:
        """Bytes [offset, offset + size) of ``ref``; ``drop_behind`` (subtlety 8) for a
        sequential reader: the blocks this read finishes leave the memory cache."""
        end = min(offset + size, ref.size)
        if offset >= end:
            return b""
        first, last = offset // self.block_size, (end - 1) // self.block_size
        blocks: dict[int, bytes] = {}
        await self._ensure(ref, first, last, fetch, blocks)
        if drop_behind:
            done = last if end == ref.size or end % self.block_size == 0 else last - 1
            for i in range(first, done + 1):
                self._mem.pop(self.key(ref, i), None)
        data = b"".join(blocks[i] for i in range(first, last + 1))
        skip = offset - first * self.block_size
        return data[skip:skip + (end - offset)]

    async def prefetch(self, ref: ObjectRef, start: int, end: int, fetch: Fetch) -> None:
        end = min(end, ref.size)
        if start >= end:
            return
        await self._ensure(ref, start // self.block_size, (end - 1) // self.block_size,
                           fetch, None)

    def cached(self, ref: ObjectRef, index: int) -> bool:
        return self.key(ref, index) in self._mem

    async def _ensure(self, ref: ObjectRef, first: int, last: int, fetch: Fetch,
                      out: dict[int, bytes] | None) -> None:
        done: set[int] = set()
        while True:
            # -- atomic: classify every block and claim the missing ones (no await) --
            claimed: list[int] = []
            mine: dict[BlockKey, trio.Event] = {}
            waits: list[trio.Event] = []
            for i in range(first, last + 1):
                if i in done:
                    continue
                key = self.key(ref, i)
                data = self._mem.get(key)
                if data is not None:
                    self.stats["memory_hits"] += 1
                    done.add(i)
                    if out is not None:
                        out[i] = data
                    continue
                event = self._inflight.get(key)
                if event is not None:
                    waits.append(event)
                    continue
                self._inflight[key] = mine[key] = trio.Event()
                claimed.append(i)
            # -- end of atomic section --
            if not claimed and not waits:
                return
            if claimed:
                try:
                    async with trio.open_nursery() as nursery:
                        for run in self._runs(claimed):
                            nursery.start_soon(self._load_run, ref, run, fetch, out, done,
                                               mine)
                finally:
                    for key, event in mine.items():  # blocks whose load failed
                        if self._inflight.get(key) is event:
                            del self._inflight[key]
                        event.set()
            for event in waits:
                await event.wait()

    def _runs(self, indexes: list[int]) -> list[list[int]]:
        runs: list[list[int]] = []
        for i in indexes:
            if runs and runs[-1][-1] == i - 1 and len(runs[-1]) < self._max_blocks:
                runs[-1].append(i)
            else:
                runs.append([i])
        return runs

    def _fetched_before(self, key: BlockKey) -> bool:
        """Record a fetch of ``key``; whether it had been fetched before (subtlety 7)."""
        h = hash(key)
        if h in self._seen:
            del self._seen[h]
            return True
        self._seen[h] = None
        if len(self._seen) > self._max_seen:
            self._seen.popitem(last=False)
        return False

    def _store_mem(self, key: BlockKey, data: bytes) -> None:
        if len(data) <= self._mem.maxsize:
            self._mem[key] = data

    def _release(self, key: BlockKey, mine: dict[BlockKey, trio.Event]) -> None:
        """The block is in memory: wake its waiters now, not when the whole window is."""
        event = mine.pop(key, None)
        if event is not None:
            if self._inflight.get(key) is event:
                del self._inflight[key]
            event.set()

    async def _load_run(self, ref: ObjectRef, run: list[int], fetch: Fetch,
                        out: dict[int, bytes] | None, done: set[int],
                        mine: dict[BlockKey, trio.Event]) -> None:
        remote: list[int] = []
        for i in run:
            key = self.key(ref, i)
            data = await self._disk.get(self._disk_name(key)) if self._disk else None
            if data is None:
                remote.append(i)
                continue
            self.stats["disk_hits"] += 1
            self._store_mem(key, data)
            done.add(i)
            if out is not None:
                out[i] = data
            self._release(key, mine)
        for sub in self._runs(remote):
            start, _ = self._block_range(ref, sub[0])
            _, end = self._block_range(ref, sub[-1])
            async with self._fetch_limiter:
                data = await fetch(start, end)
            if len(data) != end - start:
                raise FsError(5, f"{ref.path}: expected {end - start} bytes, got {len(data)}")
            self.stats["requests"] += 1
            self.stats["bytes_fetched"] += len(data)
            blocks = []
            body = memoryview(data)
            for i in sub:
                b_start, b_end = self._block_range(ref, i)
                block = bytes(body[b_start - start:b_end - start])
                key = self.key(ref, i)
                self.stats["blocks_fetched"] += 1
                self._store_mem(key, block)
                done.add(i)
                if out is not None:
                    out[i] = block
                self._release(key, mine)
                if self._disk is not None:
                    if self._fetched_before(key):
                        blocks.append((key, block))
                    else:
                        self.stats["disk_first_fetch"] += 1
            del data, body
            # After the waiters were woken. Blocks waiting for the disk are outside the
            # memory LRU's bound, so the backlog is bounded too: past it they are not
            # written (a later read fetches them again).
            disk = self._disk
            if blocks and disk is not None:
                if self._disk_backlog >= self._max_disk_backlog:
                    self.stats["disk_skipped"] += len(blocks)
                    continue
                self._disk_backlog += 1
                try:
                    for key, block in blocks:
                        await disk.put(self._disk_name(key), block)
                finally:
                    self._disk_backlog -= 1

    def usage(self) -> dict[str, int]:
        return {
            "memory_bytes": int(self._mem.currsize),
            "memory_limit": int(self._mem.maxsize),
            "disk_bytes": self._disk.used if self._disk else 0,
            "disk_limit": self._disk.max_bytes if self._disk else 0,
            **self.stats,
        }
