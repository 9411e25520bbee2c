"""Staging of dirty data on local disk and background uploads into the session.

    staging = Staging(root: Path, chunk: int)            # root = cache_dir/staging
    await staging.start(); ... ; await staging.close()
    sf = staging.new(path, base=None|ObjectRef)           # empty, ready unless base
    await staging.populate(sf, fetch, chunk, parallel)   # copy the remote object in
    uploader = Uploader(remote, staging, session=lambda: sid, concurrency=4,
                        on_uploaded=callback(sf, etag, size, version))
    nursery.start_soon(uploader.run)                     # owns the upload tasks
    uploader.schedule(sf); await uploader.wait(sf); await uploader.sync()

Subtleties:
1. Dirty data lives only in files under ``root`` (one per dirty path), never only in
   memory; a write returns once ``pwrite`` did (no fsync of the local disk: the durable
   copy is the upload into the session).
2. Writing into an existing object first copies the whole object into staging (range
   GETs, ``max_request_bytes`` at a time, a few in parallel): the cost of a random write
   into a large object is one download of it. ``ready`` is False until the copy is done;
   readers keep reading the remote object meanwhile, writers wait for ``ready_event``.
3. Every change bumps ``version``; an upload remembers the version it read and the file
   stays dirty if a write came in meanwhile. A closed file is then uploaded again at
   once; an open one waits for its next trigger (release, fsync, sync), so a file being
   written is not re-uploaded after every write. The last upload after the last close
   therefore always carries the last write, whatever raced with it.
4. ``paused()`` (used by commit) lets running uploads finish and holds new ones at their
   start, so the session does not change while it is being committed.
5. One upload per file at a time (``StagedFile.idle``); uploads of different files run in
   parallel up to ``concurrency``; large files go multipart inside the remote.
6. A failed upload (after the remote's retries) leaves the file dirty and records the
   error; ``wait``/``sync`` raise it, a later ``schedule`` retries.
7. All blocking file I/O runs in threads through the CapacityLimiter named
   "tilde-mount staging".
8. Small files (up to ``batch_file_max``) travel in batches when the server has the batch
   upload extension (asked once, with an empty batch): one request for many files instead
   of stage + PUT + finalize each. A batch is open until one of ``batch_concurrency``
   senders is free, so batches grow while earlier ones are in flight (no timer, no added
   latency when idle). At most ``batch_concurrency`` + 1 batches hold bytes at a time
   (one open, the others waiting or in flight): a file finds room, reserves its place,
   then reads its bytes, so memory stays bounded however fast files are written (the
   sender waits for the reserved files' bytes). A file's version snapshot is taken before
   its bytes are read, so a later write leaves it dirty, as with single uploads. A failed
   batch sends each of its files on its own, so every file gets its own error.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import shutil
import stat as S
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from tilde import _wire
from tilde._wire import posix

from . import crashpoints, journal
from .data_cache import ObjectRef

if TYPE_CHECKING:
    from .remote import Remote

log = logging.getLogger(__name__)

_ids = itertools.count(1)


@dataclass(eq=False)
class StagedFile:
    path: str
    local: Path
    size: int = 0
    mtime_ns: int = 0
    version: int = 0
    uploaded_version: int = 0
    base: ObjectRef | None = None
    ready: bool = True
    ready_event: trio.Event = field(default_factory=trio.Event)
    unlinked: bool = False
    open_handles: int = 0
    idle: trio.Event = field(default_factory=trio.Event)
    uploading: bool = False
    error: BaseException | None = None
    #: the path has (or had, at staging time) an object in the session
    on_remote: bool = False
    #: why a write into it failed (ENOSPC, EIO): never uploaded, commit refuses, until
    #: it is rewritten (truncated to 0) or removed
    damaged: str | None = None
    #: the path its journal record names (None: no record); see journal.py
    journaled: str | None = None
    journal_lock: trio.Lock = field(default_factory=trio.Lock)
    #: POSIX attributes the upload stores with the content (tilde._wire.posix); ``mode``
    #: includes the file type (a symlink's content is its target)
    mode: int = S.S_IFREG | 0o644
    uid: int | None = None
    gid: int | None = None
    ctime_ns: int = 0
    rdev: int = 0
    #: the object's other user metadata, carried over when the mount rewrites it
    user_meta: tuple[tuple[str, str], ...] = ()
    #: the metadata its journal record holds (journal.py)
    journaled_meta: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.idle.set()
        if self.ready:
            self.ready_event.set()

    @property
    def dirty(self) -> bool:
        return self.version != self.uploaded_version and not self.unlinked

    def touch(self, mtime_ns: int) -> None:
        self.version += 1
        self.mtime_ns = mtime_ns
        self.ctime_ns = mtime_ns

    def changed_attrs(self, now_ns: int) -> None:
        """chmod/chown/utimens: the next upload must carry them (the content may not
        have changed; the version still moves so an upload in flight is superseded)."""
        self.version += 1
        self.ctime_ns = now_ns

    def lasting_metadata(self) -> dict[str, str]:
        """The metadata a journal record keeps: mode, owner and the user's own keys (not
        the times, which would make every close rewrite the record)."""
        attrs = posix.PosixAttrs(mode=self.mode, uid=self.uid, gid=self.gid,
                                 rdev=self.rdev or None)
        return {**dict(self.user_meta), **posix.encode(attrs)}

    def metadata(self) -> dict[str, str]:
        """What an upload of this file stores as its user metadata."""
        attrs = posix.PosixAttrs(mode=self.mode, uid=self.uid, gid=self.gid,
                                 mtime_ns=self.mtime_ns, ctime_ns=self.ctime_ns or None,
                                 rdev=self.rdev or None)
        return {**dict(self.user_meta), **posix.encode(attrs)}


class FileSource:
    """An upload body read from a staged file, ``chunk`` bytes at a time in a thread."""

    def __init__(self, local: Path, size: int, chunk: int, limiter: trio.CapacityLimiter):
        self.local, self.size, self.chunk, self._limiter = local, size, chunk, limiter

    async def chunks(self, start: int, end: int) -> AsyncIterator[bytes]:
        if start >= end:
            return
        fd = await trio.to_thread.run_sync(os.open, self.local, os.O_RDONLY | os.O_CREAT,
                                           0o600, limiter=self._limiter)
        try:
            pos = start
            while pos < end:
                n = min(self.chunk, end - pos)
                data = await trio.to_thread.run_sync(os.pread, fd, n, pos, limiter=self._limiter)
                if len(data) < n:  # truncated meanwhile: the next upload will fix it
                    data += b"\0" * (n - len(data))
                pos += n
                yield data
        finally:
            await trio.to_thread.run_sync(os.close, fd, limiter=self._limiter)


class Staging:
    """Local files holding dirty content. Blocking helpers run in threads."""

    def __init__(self, root: Path, *, chunk: int = 1024 * 1024) -> None:
        self.root = root / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.chunk = chunk
        #: the "tilde-mount staging" limiter: threads doing staging file I/O
        self.limiter = trio.CapacityLimiter(8)
        self.bytes_used = 0
        self._lock_fd: int | None = None  # journal.hold: this daemon's directory

    async def start(self) -> list[journal.DeadMount]:
        """Make our directory; return the journals of daemons that died (journal.py)."""
        def prepare() -> list[journal.DeadMount]:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock_fd = journal.hold(self.root)
            return journal.scan_dead(self.root.parent, self.root)

        return await trio.to_thread.run_sync(prepare, limiter=self.limiter)

    async def close(self, *, keep_journal: bool = False) -> None:
        """Remove our directory, unless it still journals files nobody uploaded (then
        the next daemon on this cache directory finds them)."""
        def remove() -> None:
            try:
                if keep_journal and any(p.suffix == journal.RECORD_SUFFIX
                                        for p in self.root.glob("*.json")
                                        if p.name != journal.MOUNT_INFO):
                    log.warning("unsent files stay journaled in %s", self.root)
                    return
                shutil.rmtree(self.root, ignore_errors=True)
            finally:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)  # the next daemon may take the directory
                    self._lock_fd = None

        await trio.to_thread.run_sync(remove, limiter=self.limiter)

    async def set_info(self, info: dict[str, str | None]) -> None:
        """Which repository and session this daemon's files belong to (``mount.json``)."""
        await trio.to_thread.run_sync(journal.write_json_atomic, self.root / journal.MOUNT_INFO,
                                      info, limiter=self.limiter)

    async def record(self, sf: StagedFile) -> None:
        """Make sure ``sf``'s record says what it holds now (journal.py subtlety 1)."""
        async with sf.journal_lock:
            want = sf.path if (sf.dirty or sf.damaged) and not sf.unlinked else None
            if want is None:
                if sf.journaled is not None:
                    await trio.to_thread.run_sync(journal.remove_record, sf.local,
                                                  limiter=self.limiter)
                    sf.journaled = None
                return
            meta = sf.lasting_metadata()
            if sf.journaled == want and not sf.damaged and sf.journaled_meta == meta:
                return
            await trio.to_thread.run_sync(journal.write_record, sf.local, want, sf.damaged,
                                          meta, limiter=self.limiter)
            sf.journaled = want
            sf.journaled_meta = meta

    async def adopt(self, jf: journal.JournaledFile) -> StagedFile:
        """Take over a file journaled by a dead daemon: dirty, ready, journaled here."""
        local = self.root / f"{next(_ids)}"
        await trio.to_thread.run_sync(journal.adopt, jf, self.root, local.name,
                                      limiter=self.limiter)
        sf = StagedFile(jf.path, local, size=jf.size, mtime_ns=time.time_ns(), version=1,
                        damaged=jf.damaged)
        attrs, user = posix.split(jf.metadata)
        if attrs.mode is not None:
            sf.mode = attrs.mode
        sf.uid, sf.gid, sf.user_meta = attrs.uid, attrs.gid, tuple(sorted(user.items()))
        sf.rdev = attrs.rdev or 0
        sf.on_remote = True  # unknown: deletes then tolerate the 404
        self.bytes_used += jf.size
        await self.record(sf)
        return sf

    def new(self, path: str, *, base: ObjectRef | None = None, mtime_ns: int = 0) -> StagedFile:
        """A new, empty staged file; synchronous (its local file appears on first write)."""
        local = self.root / f"{next(_ids)}"
        return StagedFile(path, local, mtime_ns=mtime_ns, base=base, ready=base is None)

    async def populate(self, sf: StagedFile, fetch: Callable[[int, int], Awaitable[bytes]],
                       *, chunk: int, parallel: int = 4) -> None:
        """Copy ``sf.base`` into the staging file (see subtlety 2); sets ``ready``."""
        assert sf.base is not None
        size = sf.base.size
        limit = trio.CapacityLimiter(parallel)

        async def one(start: int) -> None:
            async with limit:
                data = await fetch(start, min(start + chunk, size))
                await self.write(sf, start, data, grow=False)

        try:
            async with trio.open_nursery() as nursery:
                for start in range(0, size, chunk):
                    nursery.start_soon(one, start)
            await trio.to_thread.run_sync(self._truncate, sf.local, size, limiter=self.limiter)
            sf.size = size
            self.bytes_used += size
            sf.ready = True
        finally:
            sf.ready_event.set()

    async def write(self, sf: StagedFile, offset: int, data: bytes, *, grow: bool = True) -> int:
        def pwrite() -> int:
            fd = os.open(sf.local, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                return os.pwrite(fd, data, offset)
            finally:
                os.close(fd)

        n = await trio.to_thread.run_sync(pwrite, limiter=self.limiter)
        if grow and offset + n > sf.size:
            self.bytes_used += offset + n - sf.size
            sf.size = offset + n
        return n

    async def read(self, sf: StagedFile, offset: int, size: int) -> bytes:
        def pread() -> bytes:
            try:
                fd = os.open(sf.local, os.O_RDONLY)
            except FileNotFoundError:
                return b""
            try:
                return os.pread(fd, size, offset)
            finally:
                os.close(fd)

        size = max(0, min(size, sf.size - offset))
        if size == 0:
            return b""
        data = await trio.to_thread.run_sync(pread, limiter=self.limiter)
        return data + b"\0" * (size - len(data))

    async def truncate(self, sf: StagedFile, size: int) -> None:
        await trio.to_thread.run_sync(self._truncate, sf.local, size, limiter=self.limiter)
        self.bytes_used += size - sf.size
        sf.size = size

    @staticmethod
    def _truncate(local: Path, size: int) -> None:
        """Blocking: set the staged file's length (creating it if needed)."""
        fd = os.open(local, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    async def discard(self, sf: StagedFile) -> None:
        self.bytes_used -= sf.size
        sf.size = 0

        def remove() -> None:
            sf.local.unlink(missing_ok=True)
            journal.remove_record(sf.local)

        async with sf.journal_lock:
            await trio.to_thread.run_sync(remove, limiter=self.limiter)
            sf.journaled = None

    def source(self, sf: StagedFile, size: int) -> FileSource:
        return FileSource(sf.local, size, self.chunk, self.limiter)


class DamagedFile(OSError):
    """A staged file a write failed on: it is not uploaded and not committed."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(5, f"{path} is damaged: a write into it failed ({why}); "
                            "rewrite or remove it")
        self.path = path
        self.why = why


class DamagedFiles(Exception):
    """Commit refused: these files hold what a failed write left (see `DamagedFile`)."""

    def __init__(self, files: list[StagedFile]) -> None:
        self.paths = sorted(sf.path for sf in files)
        why = sorted({sf.damaged or "" for sf in files})
        names = ", ".join(repr(p) for p in self.paths[:10])
        more = f" and {len(self.paths) - 10} more" if len(self.paths) > 10 else ""
        super().__init__(f"{len(self.paths)} file(s) damaged by a failed write "
                         f"({'; '.join(why)}): {names}{more}; rewrite or remove them")


OnUploaded = Callable[[StagedFile, str, int, int], Awaitable[None]]


@dataclass(eq=False)
class _Batch:
    """Small files travelling in one batch-upload request; filled until it is sent."""

    items: list[tuple[str, bytes]] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    size: int = 0
    sealed: bool = False
    #: files that reserved a place and whose bytes are still being read
    reading: int = 0
    filled: trio.Event = field(default_factory=trio.Event)
    unreadable: bool = False
    done: trio.Event = field(default_factory=trio.Event)
    etags: list[str] | None = None
    error: BaseException | None = None
    #: the session its files were written for: sent into no other (a rollback or commit
    #: switched sessions meanwhile: its files go on their own, each rechecking itself)
    session: str | None = None


class Uploader:
    """Background uploads of staged files; ``run`` is its task (the daemon's nursery)."""

    def __init__(self, remote: Remote, staging: Staging, *, session: Callable[[], str | None],
                 concurrency: int, on_uploaded: OnUploaded, batch_file_max: int = 1 << 20,
                 batch_max_files: int = 256, batch_max_bytes: int = 8 << 20,
                 batch_concurrency: int = 2) -> None:
        self._remote = remote
        self._staging = staging
        self._session = session
        self._limiter = trio.CapacityLimiter(concurrency)
        #: files up to this size go in batches when the server has batch uploads
        self.batch_file_max = batch_file_max
        self._batch_max_files = min(batch_max_files, _wire.BATCH_UPLOAD_MAX_OBJECTS)
        self._batch_max_bytes = min(batch_max_bytes, _wire.BATCH_UPLOAD_MAX_BYTES)
        self._batch_limiter = trio.CapacityLimiter(batch_concurrency)
        self._batch: _Batch | None = None
        #: batches holding bytes (open, waiting or in flight): at most concurrency + 1
        self._batches_alive = 0
        self._batch_finished = trio.Event()
        self._batch_ok: bool | None = None  # unknown until the first small file
        self._probe_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._on_uploaded = on_uploaded
        self._send, self._receive = trio.open_memory_channel[StagedFile](float("inf"))
        self.pending: set[StagedFile] = set()
        self.uploaded_files = 0
        self.uploaded_bytes = 0
        self._active = 0
        self._quiet = trio.Event()
        self._resume: trio.Event | None = None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            async for sf in self._receive:
                nursery.start_soon(self._upload, sf)

    def schedule(self, sf: StagedFile) -> None:
        """Upload ``sf`` in the background unless an upload of it is already running."""
        if not sf.dirty or sf.uploading or not sf.ready or sf.damaged:
            return
        # -- atomic: mark busy before the task starts, so nobody schedules twice --
        sf.uploading = True
        sf.idle = trio.Event()
        self.pending.add(sf)
        self._send.send_nowait(sf)

    async def _upload(self, sf: StagedFile) -> None:
        try:
            while sf.dirty:
                done = None
                if sf.size <= self.batch_file_max and await self.batching():
                    done = await self._upload_batched(sf)
                if done is None:
                    done = await self._upload_single(sf)
                if done is None:
                    break
                etag, version, path, size = done
                sf.error = None
                self.uploaded_files += 1
                self.uploaded_bytes += size
                if sf.path == path and not sf.unlinked:
                    sf.uploaded_version = version
                    await self._on_uploaded(sf, etag, size, version)
                if sf.open_handles > 0:
                    break  # still being written: the next release/fsync/sync uploads again
        except Exception as e:  # kept on the file; wait()/sync() report it
            log.warning("upload of %s failed: %s", sf.path, e)
            sf.error = e
        finally:
            sf.uploading = False
            self.pending.discard(sf)
            sf.idle.set()

    async def _upload_single(self, sf: StagedFile) -> tuple[str, int, str, int] | None:
        """One file through `Remote.upload`; None when it is no longer dirty."""
        async with self._limiter:
            while self._resume is not None:
                await self._resume.wait()
            if not sf.dirty:
                return None
            # -- atomic: snapshot what this upload carries, count it as active --
            sid = self._session()
            if sid is None:  # after a commit whose fresh session failed: sync opens one
                log.debug("upload of %s waits for a session", sf.path)
                return None
            version, path, size, meta = sf.version, sf.path, sf.size, sf.metadata()
            log.debug("upload %s: %d bytes, version %d", path, size, version)
            self._active += 1
            try:
                crashpoints.reached(crashpoints.UPLOAD_STARTED)
                etag = await self._remote.upload(path, self._staging.source(sf, size),
                                                 session_id=sid, metadata=meta)
                crashpoints.reached(crashpoints.UPLOAD_LANDED)
            finally:
                self._active -= 1
                if not self._active:
                    self._quiet.set()
        return etag, version, path, size

    async def batching(self) -> bool:
        """Whether small files go in batches (asks the server once)."""
        if self._batch_ok is None:
            async with self._probe_lock:
                sid = self._session()
                if self._batch_ok is None and sid is not None:
                    self._batch_ok = await self._remote.batch_upload_supported(sid)
        return bool(self._batch_ok)

    async def _upload_batched(self, sf: StagedFile) -> tuple[str, int, str, int] | None:
        """Carry ``sf`` in the open batch (subtlety 8); None: upload it on its own."""
        while self._resume is not None:
            await self._resume.wait()
        if not sf.dirty:
            return None
        version, path, size, meta = sf.version, sf.path, sf.size, sf.metadata()
        while True:
            # -- atomic: room in the open batch, or a new one if fewer than the bound exist --
            batch = self._batch
            if not (batch is None or batch.sealed or len(batch.items) >= self._batch_max_files
                    or batch.size + size > self._batch_max_bytes
                    or batch.session != self._session()):
                break
            if self._batches_alive <= self._batch_limiter.total_tokens:
                batch = self._batch = _Batch(session=self._session())
                self._batches_alive += 1
                assert self._nursery is not None
                self._nursery.start_soon(self._send_batch, batch)
                break
            # -- end of atomic section --
            await self._batch_finished.wait()
        # -- atomic: reserve the place (the sender waits for every reserved file's bytes) --
        index = len(batch.items)
        batch.items.append((path, b""))
        batch.metadata.append(meta)
        batch.size += size
        batch.reading += 1
        # -- end of atomic section --
        try:
            data = await self._staging.read(sf, 0, size)  # exactly ``size`` bytes
        except BaseException:
            batch.unreadable = True  # the sender fails the batch: its files go on their own
            raise
        else:
            batch.items[index] = (path, data)
        finally:
            batch.reading -= 1
            if not batch.reading:
                batch.filled.set()
                batch.filled = trio.Event()
        await batch.done.wait()
        if batch.etags is None:  # the batch failed: this file alone says why
            log.info("batch upload failed (%s); uploading %s on its own", batch.error, path)
            return None
        return batch.etags[index], version, path, size

    async def _send_batch(self, batch: _Batch) -> None:
        """Send ``batch`` once a batch slot is free; files keep joining it until then."""
        try:
            async with self._batch_limiter:
                # -- atomic: seal the batch (no file joins it any more) --
                batch.sealed = True
                if self._batch is batch:
                    self._batch = None
                # -- end of atomic section --
                while batch.reading:  # bytes of files that joined are still being read
                    await batch.filled.wait()
                if batch.unreadable:
                    raise OSError("a file of this batch could not be read from staging")
                while self._resume is not None:
                    await self._resume.wait()
                # -- atomic: count it as active --
                sid = self._session()
                self._active += 1
                try:
                    if sid is None or sid != batch.session:
                        raise RuntimeError("the session changed while the batch was filled")
                    log.debug("batch upload: %d files, %d bytes", len(batch.items), batch.size)
                    crashpoints.reached(crashpoints.UPLOAD_STARTED)
                    batch.etags = await self._remote.upload_batch(
                        batch.items, session_id=sid, metadata=batch.metadata)
                    crashpoints.reached(crashpoints.UPLOAD_LANDED)
                finally:
                    self._active -= 1
                    if not self._active:
                        self._quiet.set()
        except Exception as e:
            batch.error = e
        finally:
            batch.done.set()
            self._batches_alive -= 1
            self._batch_finished.set()
            self._batch_finished = trio.Event()

    async def wait(self, sf: StagedFile) -> None:
        """Until ``sf`` is uploaded as it stands now; raises the upload's error.

        An error left by an earlier background upload gets one fresh attempt first (it
        may have been aimed at a session that was committed meanwhile).
        """
        retried = False
        target = sf.version  # later writes are not waited for: "as it stands now"
        while True:
            await sf.idle.wait()
            if sf.damaged:
                raise DamagedFile(sf.path, sf.damaged)
            if not sf.dirty or sf.uploaded_version >= target:
                sf.error = None
                return
            if sf.error is not None:
                if retried:
                    error, sf.error = sf.error, None
                    raise error
                sf.error = None
            retried = True
            if not sf.ready:  # wait for the copy-in first
                await sf.ready_event.wait()
                if not sf.ready:
                    raise OSError(5, f"could not copy {sf.path} into staging")
            self.schedule(sf)

    @asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No upload runs inside this block (commit: the session must not move under it).

        Uploads already running finish first; new ones wait at their start.
        """
        self._resume = trio.Event()
        try:
            while self._active:
                self._quiet = trio.Event()
                await self._quiet.wait()
            yield
        finally:
            self._resume.set()
            self._resume = None

    async def sync(self, files: list[StagedFile]) -> None:
        for sf in files:
            self.schedule(sf)
        errors: list[BaseException] = []
        for sf in files:
            try:
                await self.wait(sf)
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]
