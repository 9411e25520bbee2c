"""`Filesystem`: POSIX behaviour over one session of a repository, without a kernel.

Composition (daemon.py does this; tests do the same without FUSE)::

    remote = HttpRemote(endpoint, "org/repo", api_key)
    config = FsConfig(cache_dir=..., read_only=False, cache_size=..., uid=..., gid=...)
    fs = Filesystem(remote, config,
                    session_id=None | "resume-id",   # read-write: None creates a session
                    ref=None | "commit-id",          # read-only: --commit (None: latest)
                    parts=Parts.build(config))       # caches + staging (default: built)
    await nursery.start(fs.run)   # creates/attaches the session, starts background work
    ... Operations(fs) serves the kernel ...
    await fs.close()              # stops background work (no commit, no upload)
    await remote.aclose()

Inode numbers are ints (root 1), names ``bytes``, errors `FsError`. See
docs/dev/contracts.md for the method list; this module adds ``run``, ``session_id``
and ``serving`` (an async context manager for tests), ``progress()`` (cheap upload
counters) and ``on_forget`` (awaited with a `KernelForget` after a rollback or a commit
awaiting approval: what the kernel must drop; the daemon invalidates, tests record).

Beside it: local_state.py (what the mount holds that the server does not show),
recovery.py (replaying a crashed mount's journal at start), controller.py (commit,
rollback, status and unmount as the control plane sees them).

Subtleties:
1. State has three layers, consulted in order: local state (`LocalState`: staged files,
   mkdir'ed directories with their attributes), then the metadata cache (TTL), then the
   remote. Local state is keyed by path and moved by rename.
2. Every remote mutation (delete, copy, directory moves) is done synchronously inside the
   handler that causes it, so the session on the server is the truth as soon as the
   handler returns; only file *content* is written back later (staging + uploads).
3. Between two ``await``s a handler's bookkeeping is atomic: e.g. a staged file is
   registered in ``_files`` in the same step that creates it, so two writers of one path
   share one staged copy.
4. A directory that loses its last entry would vanish from the server's listing; it is
   kept in ``_dirs`` (session lifetime), as POSIX expects after ``rm dir/*``.
5. After a commit the mount continues on a fresh session on top of the new commit:
   content is identical, so open handles, inodes and ETag-keyed caches all stay valid.
   A failed commit changes nothing (the exception propagates, session and staging stay).
6. Uploads start when the last descriptor of a file is released, on fsync (which waits)
   and on sync/commit; never on flush (see ``flush``).
7. Files uploaded and no longer open drop their staged copy; reads then go to the block
   cache, keyed by the ETag the upload returned.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat as S
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from tilde import _wire
from tilde import exceptions as exc
from tilde._wire import posix

from . import attrs, catchup, crashpoints
from .config import FsConfig
from .data_cache import BlockCache, ObjectRef
from .errors import FsError, is_transient, root_cause, to_fs_error
from .inodes import ROOT_INO, Inode, InodeTable, basename, is_under, join, parent_of
from .local_state import LocalState, move_tree, staged_stat
from .meta_cache import DirEntry, DirPage, MetaCache, Stat
from .prefetch import Prefetcher
from .readdir import DOT_ENTRIES, DirHandle, to_dir_page, valid_name
from .recovery import Recovery
from .remote import BytesSource, CommitOutcome, Remote, View
from .upload import DamagedFile, DamagedFiles, StagedFile, Staging, Uploader

__all__ = ["ROOT_INO", "Attr", "CommitOutcome", "Filesystem", "FreshSessionError",
           "KernelForget", "OpenResult", "Parts",
           "Progress", "StatFs", "UpdateConflict", "UpdateOutcome", "UpdateRefused"]

log = logging.getLogger(__name__)

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


@dataclass
class Attr:
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    generation: int
    rdev: int = 0


@dataclass
class OpenResult:
    fh: int
    keep_cache: bool
    direct_io: bool = False


@dataclass
class StatFs:
    block_size: int = 4096
    fragment_size: int = 4096
    blocks: int = 1 << 40
    blocks_free: int = 1 << 40
    blocks_available: int = 1 << 40
    files: int = 1 << 32
    files_free: int = 1 << 32
    files_available: int = 1 << 32
    name_max: int = 255


@dataclass(frozen=True)
class KernelForget:
    """What the kernel must drop after a change it did not ask for (rollback, a commit
    awaiting approval): the filesystem has no kernel, so it reports, the daemon tells.

    ``entries`` are (parent inode, name) pairs the kernel may hold as cached dentries,
    deepest first (``pyfuse3.invalidate_entry``); ``inodes`` stay known under the same
    number but their cached attributes and pages are stale (``invalidate_inode``).
    """

    entries: tuple[tuple[int, bytes], ...] = ()
    inodes: tuple[int, ...] = ()


#: ``Filesystem.on_forget``: awaited with what the kernel must forget, never on a FUSE
#: request (rollback/commit run on the control plane), so it may block in a thread.
ForgetHook = Callable[[KernelForget], Awaitable[None]]


class FreshSessionError(Exception):
    """The commit landed (``outcome``) but no fresh session could be opened after it:
    the mount has no session until `Filesystem.open_fresh_session` succeeds."""

    def __init__(self, outcome: CommitOutcome, cause: BaseException) -> None:
        super().__init__(f"committed, but opening a fresh session failed: {cause}")
        self.outcome = outcome
        self.cause = cause


@dataclass(frozen=True)
class UpdateOutcome:
    """``up_to_date``, ``updated`` (a fresh session, or a read-only mount's view) or
    ``rebased`` (the session's changes now sit on ``commit_id``)."""

    status: str
    commit_id: str | None


class UpdateRefused(Exception):
    """``update`` cannot move this mount; nothing changed."""


class UpdateConflict(UpdateRefused):
    """Paths the session changed were also changed by the commits it would move onto."""

    def __init__(self, paths: list[str], message: str = "") -> None:
        shown = ", ".join(paths[:10]) + (" ..." if len(paths) > 10 else "")
        super().__init__(f"{len(paths)} path(s) changed both here and in the latest commit: "
                         f"{shown}" if paths else (message or "conflicting changes"))
        self.paths = paths


@dataclass(frozen=True)
class Progress:
    """Cheap upload counters (no request, no scan of the session): ``progress()``."""

    dirty_files: int        # staged files not yet uploaded as they stand (open ones too)
    bytes_pending: int      # their sizes added up
    bytes_uploaded: int     # content of the uploads finished by this mount so far
    bytes_sent: int         # request bodies sent so far (grows during a large upload)
    uploads_in_flight: int  # files with an upload scheduled or running


@dataclass(eq=False)
class FileHandle:
    node: Inode
    writable: bool
    ref: ObjectRef | None
    prefetcher: Prefetcher
    sf: StagedFile | None = None   # the staged copy this handle wrote or saw at open


@dataclass
class _Readers:
    reads: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def _now_ns() -> int:
    return time.time_ns()


def _decode(name: bytes) -> str:
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise FsError(errno.EINVAL, "names must be UTF-8") from None
    if not valid_name(text):
        raise FsError(errno.EINVAL, f"invalid name {text!r}")
    return text


#: longest name a create may give (statfs says so, as ext4 does); a whole key is bounded
#: by ``_wire.MAX_KEY_BYTES``. Longer names written by other clients can still be looked up.
NAME_MAX = 255


def _new_name(name: bytes) -> str:
    """A name a create, mkdir, symlink, mknod or rename may give: ENAMETOOLONG past
    ``NAME_MAX`` bytes, else as `_decode`."""
    if len(name) > NAME_MAX:
        raise FsError(errno.ENAMETOOLONG, f"names are at most {NAME_MAX} bytes")
    return _decode(name)


def _fits(path: str, *, room: int = 0) -> str:
    """``path`` if the server can store it as a key (with ``room`` more bytes: a
    directory must hold at least ``/x``); else ENAMETOOLONG, before anything is staged."""
    if len(path.encode("utf-8")) + room > _wire.MAX_KEY_BYTES:
        raise FsError(errno.ENAMETOOLONG,
                      f"object keys are at most {_wire.MAX_KEY_BYTES} bytes")
    return path


@dataclass(frozen=True)
class Parts:
    """The caches and the staging a Filesystem works with, built from its config by
    `Parts.build` (the daemon's composition root does so and passes them in; tests may
    pass their own). The uploader is built by the Filesystem: it calls back into it."""

    meta: MetaCache
    blocks: BlockCache
    staging: Staging
    fetch_limiter: trio.CapacityLimiter

    @classmethod
    def build(cls, config: FsConfig) -> Parts:
        fetch_limiter = trio.CapacityLimiter(config.fetch_concurrency)
        return cls(
            meta=MetaCache(config.attr_ttl, config.negative_ttl),
            blocks=BlockCache(
                block_size=config.block_size, memory_bytes=config.memory_cache_bytes,
                max_request_bytes=config.max_request_bytes, fetch_limiter=fetch_limiter,
                disk_dir=config.blocks_dir if config.cache_size > 0 else None,
                disk_bytes=config.cache_size),
            staging=Staging(config.staging_dir, chunk=config.upload_chunk),
            fetch_limiter=fetch_limiter)


class Filesystem:
    def __init__(self, remote: Remote, config: FsConfig, *, session_id: str | None = None,
                 ref: str | None = None, parts: Parts | None = None) -> None:
        self.remote = remote
        self.config = config
        self.read_only = config.read_only or ref is not None
        self._resume_session = session_id
        self._pinned_ref = ref
        self.view = View(session_id=session_id) if not self.read_only else View(ref=ref)
        self.base_commit: str | None = None
        self._inodes = InodeTable()
        parts = parts or Parts.build(config)
        self._meta = parts.meta
        self._fetch_limiter = parts.fetch_limiter
        self._blocks = parts.blocks
        self._staging = parts.staging
        self._uploader = Uploader(remote, self._staging, session=lambda: self.view.session_id,
                                  concurrency=config.upload_concurrency,
                                  on_uploaded=self._on_uploaded)
        self.local = LocalState()
        self._handles: dict[int, FileHandle] = {}
        self._dir_handles: dict[int, DirHandle] = {}
        self._fh = itertools.count(1)
        self._kernel_cache_key: dict[int, object] = {}
        self._detached_stat: dict[int, Stat] = {}
        self._warned: set[str] = set()
        self._mount_ns = _now_ns()
        self._nursery: trio.Nursery | None = None
        self._started = False
        self._closing = trio.Event()
        self._stopped = trio.Event()
        self._control_lock = trio.Lock()
        self.counters = _Readers()
        self._recovery = Recovery(remote, self._staging, self._uploader, self.local,
                                  config.cache_dir / "unrecovered")
        #: what startup found in the journal (recovery.py)
        self.recovery = self._recovery.report
        self.created_session = False
        #: the session the last successful commit committed
        self.last_committed_session: str | None = None
        #: told what the kernel must forget after rollback (see `KernelForget`)
        self.on_forget: ForgetHook | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def session_id(self) -> str | None:
        return self.view.session_id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Start (session, caches, uploads), report started, serve until ``close()``."""
        self._started = True
        try:
            dead = await self._staging.start()
            await self._blocks.start()
            if self.read_only:
                if self._pinned_ref is None:
                    self.view = View(ref=await self.remote.latest_commit_id())
                self.base_commit = self.view.ref
            else:
                self.base_commit = await self.remote.latest_commit_id()
                sid = self._resume_session or await self._recovery.crashed_session(dead)
                if sid is None:
                    sid = await self.remote.create_session()
                    self.created_session = True
                self.view = View(session_id=sid)
                await self._note_session()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self._uploader.run)
                if dead:
                    await self._recovery.replay(dead, self.view.session_id, self._changed)
                task_status.started()
                await self._closing.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._staging.close(keep_journal=True)
            self._stopped.set()

    # ------------------------------------------------------------------ the journal
    async def _note_session(self) -> None:
        """Tell the journal which session this daemon's files go to (journal.py)."""
        await self._note_session_id(self.view.session_id)

    async def _note_session_id(self, sid: str | None) -> None:
        await self._staging.set_info({"repository": self.remote.repository,
                                      "endpoint": self.remote.endpoint, "session_id": sid})

    def _refuse_damaged(self) -> None:
        damaged = [sf for sf in self.local.files.values() if sf.damaged and not sf.unlinked]
        if damaged:
            raise DamagedFiles(damaged)

    async def _ensure_session(self) -> str:
        """After a commit whose fresh session could not be opened (`FreshSessionError`),
        the next commit, rollback or sync opens it (writes meanwhile stay staged)."""
        sid = self.view.session_id
        if sid is None:
            sid = await self.remote.create_session()
            self.view = View(session_id=sid)
            await self._note_session()
            log.info("opened session %s", sid)
        return sid

    async def close(self) -> None:
        """Stop background work (uploads in flight are cancelled; no commit)."""
        self._closing.set()
        if self._started:
            with trio.move_on_after(30):
                await self._stopped.wait()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Filesystem]:
        """``async with fs.serving():`` runs the filesystem in a nursery of its own."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.run)
            try:
                yield self
            finally:
                await self.close()

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    # ------------------------------------------------------------------ helpers
    def _warn_once(self, key: str, why: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("skipping %r: %s", key, why)

    def _node(self, ino: int) -> Inode:
        node = self._inodes.get(ino)
        if node is None:
            raise FsError(errno.ENOENT)
        return node

    def _dir_node(self, ino: int) -> Inode:
        node = self._node(ino)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR)
        return node

    def _check_writable(self) -> None:
        if self.read_only:
            raise FsError(errno.EROFS)

    async def _resolve(self, path: str) -> Stat:
        """What ``path`` is, from local state, the cache or the remote (subtlety 1)."""
        if path == "":
            return Stat(True, mtime_ns=self._mount_ns)
        local = self.local.stat(path)
        if local is not None:
            return local
        cached = self._meta.get(path)
        if cached is not None:
            return cached
        parent, name = parent_of(path), basename(path)
        made = self.local.made_here.get(parent)
        if self._meta.is_negative(path) or self._meta.known_absent(parent, name) \
                or parent in self.local.local_only or (made is not None and name not in made):
            raise FsError(errno.ENOENT)
        try:
            try:
                found = attrs.file_stat(await self.remote.head(path, self.view))
            except exc.NotFoundError:
                page = await self.remote.list_page(path + "/", self.view, amount=1)
                if not (page.objects or page.prefixes):
                    self._meta.put_negative(path)
                    raise FsError(errno.ENOENT) from None
                # the marker ``path/`` is the first key under the directory, if it exists
                first = page.objects[0] if page.objects else None
                found = attrs.dir_stat(first if first is not None
                                       and first.path == posix.marker_key(path) else None)
        except exc.TildeError as e:
            if is_transient(e) and self._meta.stale_absent(parent, name):
                log.info("%s: the server did not answer (%s); absent in the last listing",
                         path, e)
                raise FsError(errno.ENOENT) from None
            raise to_fs_error(e) from e
        # -- the answer may be older than a local mutation made meanwhile; local wins --
        local = self.local.stat(path)
        if local is not None:
            return local
        self._meta.put(path, found)
        return found

    async def _with_marker(self, path: str, st: Stat) -> Stat:
        """A directory seen as a prefix without its marker (a server that does not attach
        markers to listings): its attributes, by one HEAD of ``path/``."""
        if not st.is_dir or st.marker is not None or path == "":
            return st
        try:
            found = attrs.dir_stat(await self.remote.head(posix.marker_key(path), self.view))
        except exc.NotFoundError:
            found = attrs.dir_stat(None)
        except exc.TildeError as e:
            log.info("attributes of directory %s unknown (%s): defaults shown", path, e)
            return st
        if self.local.stat(path) is None and self._meta.get(path) == st:
            self._meta.put(path, found)
        elif self.local.dirs.get(path) == st:  # kept here (emptied) without its attributes
            self.local.dirs[path] = found
        return found

    def _attr(self, node: Inode, st: Stat) -> Attr:
        """What the kernel is told: the stored POSIX attributes, the defaults where none
        are stored (attrs.py), the mount's owner for everything with ``-o uid=/gid=``."""
        if st.is_dir:
            kind, perm = S.S_IFDIR, self.config.dir_mode
        elif st.is_symlink:
            kind, perm = S.S_IFLNK, 0o777
        else:  # a file, or a FIFO, socket or device file (their type is stored)
            kind, perm = S.S_IFMT(st.mode) or S.S_IFREG, self.config.file_mode
        if st.mode:
            perm = S.S_IMODE(st.mode)
        size = 0 if st.is_dir else st.size
        mtime = st.mtime_ns if attrs.has_times(st) else self._mount_ns
        mapped = self.config.map_owner
        return Attr(
            ino=node.ino, mode=kind | perm,
            nlink=0 if node.detached else 2 if st.is_dir else 1,
            uid=self.config.uid if mapped or st.uid is None else st.uid,
            gid=self.config.gid if mapped or st.gid is None else st.gid,
            size=size, blocks=(size + 511) // 512,
            atime_ns=self.local.atimes.get(node.path, mtime),
            mtime_ns=mtime, ctime_ns=st.ctime_ns or mtime,
            generation=self._inodes.generation, rdev=st.rdev)

    def _changed(self, path: str) -> None:
        """Invalidate what a mutation of ``path`` touched (meta_cache subtlety 3)."""
        self._meta.invalidate(path)
        self._dir_changed(parent_of(path))

    def _dir_changed(self, directory: str, *, created: str | None = None) -> None:
        """``directory`` changed; ``created``: by this name appearing (meta_cache 5)."""
        self._meta.invalidate_dir(directory, keep_complete=created is not None)
        if created is not None:
            self._meta.add_name(directory, created)
        self.local.bump(directory)

    def _created(self, path: str) -> None:
        """``path`` was made here (create, mkdir): invalidate, keep the parent complete."""
        self._meta.invalidate(path)
        self._dir_changed(parent_of(path), created=basename(path))

    # ------------------------------------------------------------------ lookups
    async def lookup(self, parent: int, name: bytes) -> Attr:
        pnode = self._dir_node(parent)
        try:
            text = _decode(name)
        except FsError:
            raise FsError(errno.ENOENT) from None
        path = _fits(join(pnode.path, text))
        try:
            st = await self._with_marker(path, await self._resolve(path))
        except FsError as e:
            # a name no create could give: say so (another client's long name is found)
            if e.errno == errno.ENOENT and len(name) > NAME_MAX:
                raise FsError(errno.ENAMETOOLONG) from None
            raise
        node = self._inodes.remember(path, st.is_dir)
        return self._attr(node, st)

    def forget(self, items: list[tuple[int, int]]) -> None:
        for ino, n in items:
            self._inodes.forget(ino, n)
            if self._inodes.get(ino) is None:
                self._kernel_cache_key.pop(ino, None)
                self._detached_stat.pop(ino, None)

    async def _node_stat(self, node: Inode) -> Stat:
        if node.detached:
            for h in self._handles.values():
                if h.node is node and h.sf is not None:
                    return staged_stat(h.sf)
            st = self._detached_stat.get(node.ino)
            if st is None:
                raise FsError(errno.ENOENT)
            return st
        return await self._with_marker(node.path, await self._resolve(node.path))

    async def getattr(self, ino: int) -> Attr:
        node = self._node(ino)
        return self._attr(node, await self._node_stat(node))

    async def setattr(self, ino: int, *, size: int | None = None, mode: int | None = None,
                      uid: int | None = None, gid: int | None = None,
                      atime_ns: int | None = None, mtime_ns: int | None = None,
                      fh: int | None = None) -> Attr:
        node = self._node(ino)
        self._check_writable()
        st = await self._node_stat(node)
        if size is not None:
            if st.is_dir:
                raise FsError(errno.EISDIR)
            handle = self._handles.get(fh) if fh is not None else None
            sf = handle.sf if handle is not None and node.detached else None
            if sf is None:
                sf = await self._stage_for_write(node.path, keep=size > 0)
                if handle is not None:
                    # counted as the handle's copy at once, so no upload finishing during
                    # the truncate drops it as closed (the count is what keeps it)
                    self._current_sf(handle)
            await self._truncate(sf, size)
            sf.touch(_now_ns())
            if sf.open_handles == 0:  # truncate(1) by path: acknowledged now
                await self._journal(sf)
                self._uploader.schedule(sf)
            st = staged_stat(sf)
        if atime_ns is not None and not node.detached:
            self.local.atimes[node.path] = atime_ns
        if any(v is not None for v in (mode, uid, gid, mtime_ns)):
            st = await self._change_attrs(node, st, mode=mode, uid=uid, gid=gid,
                                          mtime_ns=mtime_ns, fh=fh)
        return self._attr(node, st)

    async def _change_attrs(self, node: Inode, st: Stat, *, mode: int | None,
                            uid: int | None, gid: int | None, mtime_ns: int | None,
                            fh: int | None) -> Stat:
        """chmod/chown/utimens, stored with the object (attrs.py). A directory's go into
        its marker at the next sync; a staged file's into its next upload; an unchanged
        file's by a metadata-only update (tilde-server's extension), or, on a server
        without one, by uploading its bytes again (one download and one upload)."""
        new = attrs.with_changes(
            st, mode=mode, uid=uid, gid=gid, mtime_ns=mtime_ns, now_ns=_now_ns(),
            default_mode=self.config.dir_mode if st.is_dir else self.config.file_mode)
        path = node.path
        if st.is_dir:
            if not node.detached:
                self.local.dirs[path] = new
                self.local.pending_markers[path] = True
                self._meta.invalidate(path)
            return new
        handle = self._handles.get(fh) if fh is not None else None
        sf = handle.sf if handle is not None and node.detached else (
            None if node.detached else self.local.files.get(path))
        if node.detached and sf is None:
            self._detached_stat[node.ino] = new
            return new
        if sf is None:
            if await self._set_metadata(path, new):
                return new
            sf = await self._stage_for_write(path, keep=True)
        # -- atomic: the staged copy holds them before any await (an upload that starts
        # now carries them) --
        sf.mode = new.mode or sf.mode
        sf.uid, sf.gid, sf.mtime_ns, sf.ctime_ns = new.uid, new.gid, new.mtime_ns, \
            new.ctime_ns
        if sf.unlinked:
            return staged_stat(sf)
        clean = sf.ready and not sf.dirty and not sf.uploading and sf.uploaded_version > 0
        if not (clean and await self._set_metadata(path, staged_stat(sf))):
            sf.changed_attrs(_now_ns())
            if sf.open_handles <= 0:
                await self._journal(sf)
                self._uploader.schedule(sf)
        return staged_stat(sf)

    async def _set_metadata(self, path: str, st: Stat) -> bool:
        """Store ``st``'s attributes for the object at ``path`` without its bytes; False
        when the server cannot (the caller uploads the content again)."""
        md = attrs.metadata(st, default_mode=self.config.file_mode)
        try:
            done = await self.remote.set_metadata(path, md, session_id=self._sid())
        except exc.TildeError as e:
            raise to_fs_error(e) from e
        if done:
            self._changed(path)
            if self.local.files.get(path) is None:
                self._meta.put(path, st)
        return done

    # ------------------------------------------------------------------ directories
    async def _dir_page(self, directory: str, after: str | None) -> DirPage:
        page = self._meta.get_page(directory, after)
        if page is None:
            gen = self.local.generation(directory)
            try:
                listed = await self.remote.list_page(
                    f"{directory}/" if directory else "", self.view, after=after,
                    amount=self.config.list_page_size)
            except exc.TildeError as e:
                raise to_fs_error(e) from e
            page = await self._page_markers(directory,
                                            to_dir_page(directory, listed, self._warn_once))
            # a page asked for before a change of the directory landed (an upload that
            # finished meanwhile) may lack it: use it once, never cache it
            if self.local.generation(directory) == gen:
                self._meta.put_page(directory, after, page)
        return page

    async def _page_markers(self, directory: str, page: DirPage) -> DirPage:
        """Subdirectories whose attributes the listing did not carry get them by HEAD of
        their markers, in parallel (readdir.py subtlety 7): ``ls -l`` shows them right."""
        unknown = [e for e in page.entries if e.stat.is_dir and e.stat.marker is None]
        if not unknown:
            return page
        found: dict[str, Stat] = {}
        limiter = trio.CapacityLimiter(16)

        async def one(entry: DirEntry) -> None:
            async with limiter:
                found[entry.name] = await self._with_marker(join(directory, entry.name),
                                                            entry.stat)

        async with trio.open_nursery() as nursery:
            for entry in unknown:
                nursery.start_soon(one, entry)
        return replace(page, entries=tuple(DirEntry(e.name, found.get(e.name, e.stat))
                                           for e in page.entries))

    async def opendir(self, ino: int) -> int:
        node = self._dir_node(ino)
        fh = next(self._fh)
        h = DirHandle(node.path, self.local.children(node.path))
        h.generation = self.local.generation(node.path)
        h.ino = node.ino
        h.parent_ino = self._parent_ino(node) or ROOT_INO
        self._dir_handles[fh] = h
        self._inodes.opened(node)
        return fh

    async def readdir(self, fh: int, start_id: int,
                      reply: Callable[[bytes, Attr, int], bool]) -> None:
        h = self._dir_handles.get(fh)
        if h is None:
            raise FsError(errno.EBADF)
        # "." and ".." first (readdir.py subtlety 6); the kernel counts no lookup for them
        if start_id < DOT_ENTRIES:
            root = self._inodes.get(ROOT_INO)
            assert root is not None
            me = self._inodes.get(h.ino) or root
            up = self._inodes.get(self._parent_ino(me) or h.parent_ino) or root
            for cookie, name, node in ((1, b".", me), (2, b"..", up)):
                if start_id < cookie:
                    st = None if node.detached else self.local.stat(node.path)
                    if not reply(name, self._attr(node, st or Stat(True)), cookie):
                        return
        i = max(0, start_id - DOT_ENTRIES)
        while True:
            while i >= len(h.entries) and not h.done:
                first = h.after is None and not h.entries
                h.add_page(await self._dir_page(h.directory, h.after))
                if ((h.done and first) or (h.done and start_id <= DOT_ENTRIES)) \
                        and self.local.generation(h.directory) == h.generation:
                    self._meta.mark_complete(h.directory, h.remote_names)
            if i >= len(h.entries):
                return
            entry: DirEntry = h.entries[i]
            path = join(h.directory, entry.name)
            st = self.local.stat(path) or entry.stat
            node = self._inodes.ensure(path, st.is_dir)
            if not reply(entry.name.encode("utf-8"), self._attr(node, st),
                         i + 1 + DOT_ENTRIES):
                self._inodes.forget(node.ino, 0)  # drop it again if nobody holds it
                return
            node.lookups += 1
            i += 1

    def _parent_ino(self, node: Inode | None) -> int | None:
        """The inode of ``node``'s parent directory (the root is its own parent)."""
        if node is None or node.detached:
            return None
        if node.ino == ROOT_INO:
            return ROOT_INO
        parent = self._inodes.by_path(parent_of(node.path))
        return parent.ino if parent is not None else None

    async def releasedir(self, fh: int) -> None:
        h = self._dir_handles.pop(fh, None)
        if h is not None:
            node = self._inodes.by_path(h.directory)
            if node is not None:
                self._inodes.closed(node)

    def _owner(self, uid: int | None, gid: int | None) -> tuple[int, int]:
        """Who owns what a request creates: the caller the kernel names, else the mount's
        owner (kernel-free callers)."""
        return (self.config.uid if uid is None else uid,
                self.config.gid if gid is None else gid)

    async def mkdir(self, parent: int, name: bytes, mode: int, *, uid: int | None = None,
                    gid: int | None = None) -> Attr:
        self._check_writable()
        pnode = self._dir_node(parent)
        path = join(pnode.path, _new_name(name))
        if await self._exists(path):
            raise FsError(errno.EEXIST)
        _fits(path, room=2)
        now = _now_ns()
        owner, group = self._owner(uid, gid)
        st = Stat(True, mtime_ns=now, mode=S.S_IFDIR | (mode & 0o7777), uid=owner, gid=group,
                  ctime_ns=now, marker=False)
        # -- atomic: known here at once; its marker is written at the next sync --
        self.local.dirs[path] = st
        self.local.pending_markers[path] = mode & 0o7777 != self.config.dir_mode or \
            (owner, group) != (self.config.uid, self.config.gid)
        self.local.local_only.add(path)
        self.local.note_made(path)
        self.local.made_here[path] = set()
        self._created(path)
        self._touch_dir(pnode.path)
        node = self._inodes.remember(path, True)
        return self._attr(node, st)

    def _touch_dir(self, directory: str) -> None:
        """An entry of ``directory`` appeared or went: its mtime and ctime move, as on a
        local filesystem (kept in memory; stored only by a marker written later)."""
        st = self.local.dirs.get(directory)
        if st is not None:
            now = _now_ns()
            self.local.dirs[directory] = replace(st, mtime_ns=now, ctime_ns=now)

    async def _exists(self, path: str) -> bool:
        try:
            await self._resolve(path)
            return True
        except FsError as e:
            if e.errno == errno.ENOENT:
                return False
            raise

    async def _is_empty_dir(self, path: str) -> bool:
        if self.local.has_under(path):
            return False
        page = await self._dir_page(path, None)
        return not page.entries

    async def rmdir(self, parent: int, name: bytes) -> None:
        self._check_writable()
        pnode = self._dir_node(parent)
        path = join(pnode.path, _decode(name))
        st = await self._resolve(path)
        if not st.is_dir:
            raise FsError(errno.ENOTDIR)
        if not await self._is_empty_dir(path):
            raise FsError(errno.ENOTEMPTY)
        if st.marker is not False:  # its marker, if the server holds one, goes with it
            try:
                await self.remote.delete(posix.marker_key(path), session_id=self._sid())
            except exc.NotFoundError:
                pass
            except exc.TildeError as e:
                raise to_fs_error(e) from e
        # -- atomic: forget the directory everywhere --
        self.local.dirs.pop(path, None)
        self.local.pending_markers.pop(path, None)
        self.local.atimes.pop(path, None)
        self.local.local_only.discard(path)
        self.local.made_here.pop(path, None)
        self._meta.invalidate_tree(path)
        self._changed(path)
        self._meta.put_negative(path)
        self._inodes.detach_path(path)
        self._keep_parent(path)

    # ------------------------------------------------------------------ files
    async def _stage_for_write(self, path: str, *, keep: bool) -> StagedFile:
        """The staged copy of ``path``, made now if needed (upload.py subtlety 2).

        ``keep=False`` (O_TRUNC, truncate to 0) skips copying the old content.
        """
        sf = self.local.files.get(path)
        if sf is None:
            st = await self._resolve(path)
            if st.is_dir:
                raise FsError(errno.EISDIR)
            sf = self.local.files.get(path)  # another writer may have won the race
            if sf is None:
                base = ObjectRef(path, st.etag, st.size) if keep and st.size > 0 else None
                # -- atomic: create and register in one step (subtlety 3) --
                sf = self._staging.new(path, base=base, mtime_ns=st.mtime_ns
                                       if attrs.has_times(st) else _now_ns())
                self._inherit(sf, st)
                sf.on_remote = True
                self.local.files[path] = sf
                if base is not None:
                    await self._populate(sf)
        if not sf.ready:
            await sf.ready_event.wait()
            if not sf.ready:
                raise FsError(errno.EIO, f"could not copy {path} into staging")
        return sf

    def _inherit(self, sf: StagedFile, st: Stat) -> None:
        """A rewrite keeps the object's mode, owner and other metadata (attrs.py)."""
        sf.mode = st.mode or (S.S_IFREG | self.config.file_mode)
        sf.uid, sf.gid = self._owner(st.uid, st.gid)
        sf.ctime_ns = st.ctime_ns
        sf.user_meta = st.user_meta

    async def _populate(self, sf: StagedFile) -> None:
        base = sf.base
        assert base is not None
        view = self.view

        async def fetch(start: int, end: int) -> bytes:
            async with self._fetch_limiter:
                return await self.remote.read_range(sf.path, start, end, view,
                                                    etag=base.etag or None)

        try:
            await self._staging.populate(sf, fetch, chunk=self.config.max_request_bytes)
        except BaseException:
            if self.local.files.get(sf.path) is sf:
                del self.local.files[sf.path]
            raise

    async def open(self, ino: int, flags: int) -> OpenResult:
        node = self._node(ino)
        if node.is_dir:
            raise FsError(errno.EISDIR)
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        if writable:
            self._check_writable()
        sf: StagedFile | None = None
        if writable and flags & os.O_TRUNC:
            sf = await self._stage_for_write(node.path, keep=False)
            if sf.size or sf.damaged:
                await self._truncate(sf, 0)
            sf.touch(_now_ns())
        st = await self._node_stat(node)
        sf = sf or (self.local.files.get(node.path) if not node.detached else None)
        ref = ObjectRef(node.path, st.etag, st.size) if sf is None and st.etag else None
        key: object = ("etag", st.etag) if ref is not None else ("staged", id(sf))
        keep = self._kernel_cache_key.get(node.ino) == key
        self._kernel_cache_key[node.ino] = key
        fh = next(self._fh)
        self._handles[fh] = FileHandle(node, writable, ref, Prefetcher(
            initial=self.config.prefetch_initial, maximum=self.config.prefetch_max), sf)
        self._inodes.opened(node)
        if sf is not None:
            sf.open_handles += 1
        return OpenResult(fh, keep_cache=keep)

    async def create(self, parent: int, name: bytes, mode: int, flags: int, *,
                     uid: int | None = None, gid: int | None = None
                     ) -> tuple[OpenResult, Attr]:
        self._check_writable()
        pnode = self._dir_node(parent)
        path = _fits(join(pnode.path, _new_name(name)))
        existing: Stat | None = None
        try:
            existing = await self._resolve(path)
        except FsError as e:
            if e.errno != errno.ENOENT:
                raise
        if existing is not None:
            if flags & os.O_EXCL:
                raise FsError(errno.EEXIST)
            if existing.is_dir:
                raise FsError(errno.EISDIR)
        self.local.note_made(path)
        sf = self.local.files.get(path)
        if sf is None:
            # -- atomic: create and register (subtlety 3) --
            sf = self._staging.new(path, mtime_ns=_now_ns())
            if existing is not None:  # O_CREAT of an existing file keeps its attributes
                self._inherit(sf, existing)
            else:
                sf.mode = S.S_IFREG | (mode & 0o7777)
                sf.uid, sf.gid = self._owner(uid, gid)
            sf.on_remote = existing is not None
            self.local.files[path] = sf
        elif sf.size or sf.damaged:
            await self._truncate(sf, 0)
        sf.touch(_now_ns())
        self._created(path)
        if existing is None:
            self._touch_dir(pnode.path)
        node = self._inodes.remember(path, False)
        fh = next(self._fh)
        self._handles[fh] = FileHandle(node, True, None, Prefetcher(
            initial=self.config.prefetch_initial, maximum=self.config.prefetch_max), sf)
        self._inodes.opened(node)
        sf.open_handles += 1
        self._kernel_cache_key[node.ino] = ("staged", id(sf))
        return OpenResult(fh, keep_cache=False), self._attr(node, staged_stat(sf))

    async def symlink(self, parent: int, name: bytes, target: bytes, *,
                      uid: int | None = None, gid: int | None = None) -> Attr:
        """A symlink is an object whose metadata marks it and whose content is the target
        (tilde._wire.posix); staged and uploaded like a file written and closed."""
        if not target or b"\0" in target or len(target) > 4095:
            raise FsError(errno.ENAMETOOLONG if len(target) > 4095 else errno.ENOENT)
        return await self._make_node(parent, name, S.S_IFLNK | 0o777, target, uid=uid,
                                     gid=gid)

    async def mknod(self, parent: int, name: bytes, mode: int, rdev: int = 0, *,
                    uid: int | None = None, gid: int | None = None) -> Attr:
        """A FIFO, socket, device or regular file made by mknod(2): an empty object whose
        metadata gives its type (and a device's number); the kernel does the rest."""
        kind = S.S_IFMT(mode) or S.S_IFREG
        if kind not in (S.S_IFREG, S.S_IFIFO, S.S_IFSOCK, S.S_IFCHR, S.S_IFBLK):
            raise FsError(errno.EINVAL)
        return await self._make_node(parent, name, kind | (mode & 0o7777), b"", uid=uid,
                                     gid=gid, rdev=rdev if kind in (S.S_IFCHR, S.S_IFBLK)
                                     else 0)

    async def _make_node(self, parent: int, name: bytes, mode: int, content: bytes, *,
                         uid: int | None, gid: int | None, rdev: int = 0) -> Attr:
        """A new object written whole and closed at once (symlink, mknod)."""
        self._check_writable()
        pnode = self._dir_node(parent)
        path = _fits(join(pnode.path, _new_name(name)))
        if await self._exists(path):
            raise FsError(errno.EEXIST)
        self.local.note_made(path)
        # -- atomic: create and register (subtlety 3) --
        sf = self._staging.new(path, mtime_ns=_now_ns())
        sf.mode, sf.rdev = mode, rdev
        sf.uid, sf.gid = self._owner(uid, gid)
        self.local.files[path] = sf
        self._created(path)
        self._touch_dir(pnode.path)
        if content:
            try:
                await self._staging.write(sf, 0, content)
            except OSError as e:
                await self._damage(sf, e)
                raise to_fs_error(e) from e
        sf.touch(_now_ns())
        await self._journal(sf)
        self._uploader.schedule(sf)
        node = self._inodes.remember(path, False)
        return self._attr(node, staged_stat(sf))

    async def readlink(self, ino: int) -> bytes:
        node = self._node(ino)
        st = await self._node_stat(node)
        if not st.is_symlink:
            raise FsError(errno.EINVAL)
        sf = None if node.detached else self.local.files.get(node.path)
        if sf is not None and sf.ready:
            # pinned like an open file: an upload finishing meanwhile must not drop the
            # staged copy under the read (the link would read as empty: ENOENT)
            sf.open_handles += 1
            try:
                return await self._staging.read(sf, 0, sf.size)
            finally:
                sf.open_handles -= 1
                if sf.open_handles <= 0 and not sf.uploading:
                    await self._drop_clean(sf)
        ref = ObjectRef(node.path, st.etag, st.size)
        view = self.view

        async def fetch(start: int, end: int) -> bytes:
            return await self.remote.read_range(node.path, start, end, view,
                                                etag=ref.etag or None)

        try:
            return await self._blocks.read(ref, 0, st.size, fetch)
        except exc.TildeError as e:
            raise to_fs_error(e) from e

    def _handle(self, fh: int) -> FileHandle:
        h = self._handles.get(fh)
        if h is None:
            raise FsError(errno.EBADF)
        return h

    def _current_sf(self, h: FileHandle) -> StagedFile | None:
        if h.node.detached:
            return h.sf
        sf = self.local.files.get(h.node.path)
        if sf is not None and sf is not h.sf:
            if h.sf is not None:
                h.sf.open_handles -= 1
            sf.open_handles += 1
            h.sf = sf
        return sf

    async def read(self, fh: int, off: int, size: int) -> bytes:
        h = self._handle(fh)
        self.counters.reads += 1
        sf = self._current_sf(h)
        if sf is not None and sf.ready:
            data = await self._staging.read(sf, off, size)
        else:
            ref = sf.base if sf is not None else self._read_ref(h)
            if ref is None:
                st = await self._node_stat(h.node)
                if self._current_sf(h) is not None:
                    return await self.read(fh, off, size)
                ref = ObjectRef(h.node.path, st.etag, st.size)
            data = await self._read_remote(h, ref, off, size)
        self.counters.bytes_read += len(data)
        return data

    def _read_ref(self, h: FileHandle) -> ObjectRef | None:
        """The content a clean handle reads: the newest ETag known without a request."""
        if not h.node.detached:
            st = self._meta.get(h.node.path)
            if st is not None and not st.is_dir and st.etag and \
                    (h.ref is None or h.ref.etag != st.etag):
                h.ref = ObjectRef(h.node.path, st.etag, st.size)
        return h.ref

    async def _read_remote(self, h: FileHandle, ref: ObjectRef, off: int, size: int) -> bytes:
        node, view = h.node, self.view

        async def fetch(start: int, end: int) -> bytes:
            return await self.remote.read_range(node.path, start, end, view,
                                                etag=ref.etag or None)

        ahead = h.prefetcher.on_read(off, size, ref.size)
        if ahead is not None:
            self._spawn(self._prefetch, ref, ahead, fetch)
        try:
            return await self._blocks.read(ref, off, size, fetch,
                                           drop_behind=h.prefetcher.sequential)
        except exc.TildeError as e:
            raise to_fs_error(e) from e

    async def _prefetch(self, ref: ObjectRef, rng: tuple[int, int],
                        fetch: Callable[[int, int], Any]) -> None:
        try:
            await self._blocks.prefetch(ref, rng[0], rng[1], fetch)
        except Exception as e:  # read-ahead is an optimisation; the read path reports
            log.debug("prefetch of %s %s failed: %s", ref.path, rng, e)

    async def write(self, fh: int, off: int, data: bytes) -> int:
        h = self._handle(fh)
        if not h.writable:
            raise FsError(errno.EBADF)
        sf = self._current_sf(h)
        if sf is None:
            sf = await self._stage_for_write(h.node.path, keep=True)
            self._current_sf(h)
        elif not sf.ready:
            await sf.ready_event.wait()
        sf.touch(_now_ns())  # dirty across the await too (as _truncate)
        try:
            n = await self._staging.write(sf, off, data)
        except OSError as e:
            await self._damage(sf, e)
            raise to_fs_error(e) from e
        sf.touch(_now_ns())
        self.counters.writes += 1
        self.counters.bytes_written += n
        return n

    async def flush(self, fh: int) -> None:
        """``close(2)`` waits for this: a dirty file is journaled (journal.py), so it
        survives a daemon crash; with ``durable_close`` it is also uploaded. Uploads
        otherwise start at release (flush comes on *every* close(), also of a dup'ed
        descriptor whose file handle lives on, e.g. ``dd of=``)."""
        h = self._handle(fh)
        sf = self._current_sf(h) if h.writable else None
        if sf is None or not (sf.dirty or sf.damaged):
            return
        try:
            await self._staging.record(sf)
        except OSError as e:
            raise to_fs_error(e) from e
        crashpoints.reached(crashpoints.FLUSH_JOURNALED)
        if self.config.durable_close:
            await self._wait_uploaded(sf)

    async def _wait_uploaded(self, sf: StagedFile) -> None:
        """Until ``sf`` as it stands is in the session; EIO (or the damage) if not."""
        try:
            await self._uploader.wait(sf)
        except DamagedFile as e:
            raise FsError(errno.EIO, str(e)) from e
        except Exception as e:
            raise FsError(errno.EIO, f"upload of {sf.path} failed: {e}") from e

    async def _journal(self, sf: StagedFile) -> None:
        """Bring ``sf``'s journal record up to date where no errno can be answered (the
        acknowledging ``flush`` reports its own failure): a failure is logged."""
        try:
            await self._staging.record(sf)
        except OSError as e:
            log.warning("could not journal %s: %s", sf.path, e)

    async def _damage(self, sf: StagedFile, error: OSError) -> None:
        """A write into ``sf`` failed half way: its content is not what the program
        wrote, so it must never be uploaded or committed as if whole."""
        sf.damaged = error.strerror or str(error)
        sf.touch(_now_ns())
        log.warning("%s is damaged: a write failed (%s); commit refuses it until it is "
                    "rewritten or removed", sf.path, sf.damaged)
        try:
            await self._staging.record(sf)
        except OSError as e2:  # the disk is full: the in-memory mark still holds
            log.warning("could not journal the damage of %s: %s", sf.path, e2)

    async def _truncate(self, sf: StagedFile, size: int) -> None:
        """Truncate the staged copy; to 0 it is rewritten, so no longer damaged.

        The version is bumped before the I/O as well as after it (by the caller): the file
        is dirty across the await, so an upload finishing meanwhile cannot drop it as
        clean (a truncate by path has no open handle to keep it), and one that read the
        old bytes is superseded.
        """
        sf.touch(_now_ns())
        try:
            await self._staging.truncate(sf, size)
        except OSError as e:
            await self._damage(sf, e)
            raise to_fs_error(e) from e
        if size == 0 and sf.damaged:
            log.info("%s rewritten: no longer damaged", sf.path)
            sf.damaged = None

    async def fsync(self, fh: int, datasync: bool) -> None:
        h = self._handle(fh)
        sf = self._current_sf(h)
        if sf is not None and (sf.dirty or sf.damaged):
            await self._journal(sf)
            await self._wait_uploaded(sf)

    async def release(self, fh: int) -> None:
        h = self._handles.pop(fh, None)
        if h is None:
            return
        self._inodes.closed(h.node)
        sf = h.sf
        if sf is None:
            return
        sf.open_handles -= 1
        if sf.unlinked:
            if sf.open_handles <= 0:
                await self._staging.discard(sf)
        elif sf.dirty:
            if h.writable:
                await self._journal(sf)
            self._uploader.schedule(sf)
        elif sf.open_handles <= 0 and not sf.uploading:
            await self._drop_clean(sf)

    async def _drop_clean(self, sf: StagedFile) -> None:
        """A staged copy that is uploaded and closed is no longer needed (subtlety 7)."""
        if self.local.files.get(sf.path) is sf and not sf.dirty and sf.open_handles <= 0 \
                and sf.ready and sf.uploaded_version == sf.version and sf.version > 0:
            del self.local.files[sf.path]
            await self._staging.discard(sf)

    async def _on_uploaded(self, sf: StagedFile, etag: str, size: int, version: int) -> None:
        self.local.on_server(sf.path)
        self._meta.put(sf.path, replace(staged_stat(sf), size=size, etag=etag))
        self._dir_changed(parent_of(sf.path), created=basename(sf.path))
        sf.on_remote = True
        if not sf.dirty:
            await self._journal(sf)  # clean: its journal record goes
            if sf.open_handles <= 0:
                await self._drop_clean(sf)

    async def unlink(self, parent: int, name: bytes) -> None:
        self._check_writable()
        pnode = self._dir_node(parent)
        path = join(pnode.path, _decode(name))
        st = await self._resolve(path)
        if st.is_dir:
            raise FsError(errno.EISDIR)
        await self._remove_file(path, st)

    async def _remove_file(self, path: str, st: Stat) -> None:
        sf = self.local.files.get(path)
        on_remote = True
        if sf is not None:
            await sf.idle.wait()  # a running upload lands first, then the delete
            on_remote = sf.on_remote or sf.uploaded_version > 0
        node = self._inodes.by_path(path)
        if node is not None and node.open_count:
            self._detached_stat[node.ino] = st
            if sf is None and st.size > 0:
                # an open file stays readable after unlink (POSIX), but the server forgets
                # it now: its readers get a local copy first (one download of the file)
                sf = await self._stage_for_write(path, keep=True)
                for h in self._handles.values():
                    if h.node is node and h.sf is None:
                        h.sf = sf
                        sf.open_handles += 1
        if on_remote:
            try:
                await self.remote.delete(path, session_id=self._sid())
            except exc.NotFoundError:
                pass
            except exc.TildeError as e:
                raise to_fs_error(e) from e
        # -- atomic: local state follows the server --
        sf = self.local.files.pop(path, None)
        if sf is not None:
            sf.unlinked = True
            if sf.open_handles <= 0:
                self._spawn(self._staging.discard, sf)
        self.local.atimes.pop(path, None)
        self._changed(path)
        self._meta.put_negative(path)
        self._inodes.detach_path(path)
        self._keep_parent(path)

    def _keep_parent(self, path: str) -> None:
        """``path`` went: its directory stays (local_state.py subtlety 2) and changed."""
        parent = parent_of(path)
        self.local.keep_parent(path, self._meta.get(parent) if parent else None)
        self._touch_dir(parent)

    def _sid(self) -> str:
        if self.view.session_id is None:
            raise FsError(errno.EROFS)
        return self.view.session_id

    # ------------------------------------------------------------------ rename
    async def rename(self, parent_old: int, name_old: bytes, parent_new: int, name_new: bytes,
                     flags: int) -> None:
        self._check_writable()
        if flags & RENAME_EXCHANGE:
            raise FsError(errno.ENOTSUP)
        src = join(self._dir_node(parent_old).path, _decode(name_old))
        dst = join(self._dir_node(parent_new).path, _new_name(name_new))
        self.local.made_here.clear()
        if src == dst:
            return
        st = await self._resolve(src)
        dst_st: Stat | None = None
        try:
            dst_st = await self._resolve(dst)
        except FsError as e:
            if e.errno != errno.ENOENT:
                raise
        if st.is_dir and is_under(dst, src):
            raise FsError(errno.EINVAL)
        _fits(dst, room=2 if st.is_dir else 0)
        if dst_st is not None:
            if flags & RENAME_NOREPLACE:
                raise FsError(errno.EEXIST)
            if st.is_dir and not dst_st.is_dir:
                raise FsError(errno.ENOTDIR)
            if not st.is_dir and dst_st.is_dir:
                raise FsError(errno.EISDIR)
            if dst_st.is_dir and not await self._is_empty_dir(dst):
                raise FsError(errno.ENOTEMPTY)
        try:
            if st.is_dir:
                await self._rename_dir(src, dst, st, dst_st)
            else:
                await self._rename_file(src, dst, st, dst_st)
        except exc.TildeError as e:
            raise to_fs_error(e) from e

    async def _rename_file(self, src: str, dst: str, st: Stat, dst_st: Stat | None) -> None:
        sf = self.local.files.get(src)
        if sf is not None:
            await sf.ready_event.wait()
            await sf.idle.wait()
        old = self.local.files.get(dst)
        if old is not None:
            await old.idle.wait()
        sid = self._sid()
        sf = self.local.files.get(src)
        if sf is not None and sf.dirty:
            # content not on the server yet: it will be uploaded under the new name
            if sf.on_remote or sf.uploaded_version > 0:
                try:
                    await self.remote.delete(src, session_id=sid)
                except exc.NotFoundError:
                    pass
            moved_on_remote = False
        else:
            self.local.on_server(dst)
            await self.remote.copy(src, dst, session_id=sid)
            await self.remote.delete(src, session_id=sid)
            moved_on_remote = True
        # -- atomic: local state follows (no await until the end) --
        old = self.local.files.pop(dst, None)
        if old is not None:
            old.unlinked = True
        sf = self.local.files.pop(src, None)
        if sf is not None:
            sf.path = dst
            sf.on_remote = moved_on_remote
            if not moved_on_remote:
                sf.on_remote = dst_st is not None
            self.local.files[dst] = sf
        self.local.move_times(src, dst)
        self._inodes.rename(src, dst)
        self._changed(src)
        self._changed(dst)
        self._meta.put_negative(src)
        if moved_on_remote and st.etag:
            self._meta.put(dst, st)
        self._keep_parent(src)
        if parent_of(src) != parent_of(dst):
            self._touch_dir(parent_of(dst))
        if old is not None and old.open_handles <= 0:
            await self._staging.discard(old)
        if sf is not None and sf.journaled is not None:
            await self._journal(sf)
        if sf is not None and sf.dirty and sf.open_handles <= 0:
            self._uploader.schedule(sf)

    async def _rename_dir(self, src: str, dst: str, src_st: Stat, dst_st: Stat | None) -> None:
        prefix = src + "/"
        for sf in [f for p, f in self.local.files.items() if p.startswith(prefix)]:
            await sf.ready_event.wait()
            await sf.idle.wait()
        sid = self._sid()
        keys: list[str] = []
        after: str | None = None
        while True:
            page = await self.remote.list_page(prefix, self.view, after=after, amount=1000,
                                               delimiter=None)
            keys.extend(o.path for o in page.objects)
            after = page.next_after
            if after is None:
                break
        limiter = trio.CapacityLimiter(8)

        async def copy_one(key: str) -> None:
            async with limiter:
                await self.remote.copy(key, dst + key[len(src):], session_id=sid)

        grow = len(dst.encode("utf-8")) - len(src.encode("utf-8"))
        under = itertools.chain(keys, self.local.files, self.local.dirs)
        longest = max((len(p.encode("utf-8")) for p in under if is_under(p, src)), default=0)
        if grow > 0 and longest + grow > _wire.MAX_KEY_BYTES:
            raise FsError(errno.ENAMETOOLONG, "a key under the directory would exceed "
                                              f"{_wire.MAX_KEY_BYTES} bytes")
        if keys:
            self.local.on_server(dst + "/x")
        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(copy_one, key)
        if keys:
            await self.remote.delete_many(keys, session_id=sid)
        # -- atomic: move every piece of local state under src --
        move_tree(self.local.files, src, dst)
        move_tree(self.local.dirs, src, dst)
        move_tree(self.local.atimes, src, dst)
        move_tree(self.local.pending_markers, src, dst)
        moved_local = {p for p in self.local.local_only if is_under(p, src)}
        self.local.local_only -= moved_local
        if not keys:
            self.local.local_only |= {dst + p[len(src):] for p in moved_local}
        for p, sf in self.local.files.items():
            if is_under(p, dst):
                sf.path = p
        # the copies above moved the markers (``src/`` is under the listed prefix)
        self.local.dirs.setdefault(dst, src_st)
        self._inodes.rename(src, dst)
        self._meta.invalidate_tree(src)
        self._meta.invalidate_tree(dst)
        self._changed(src)
        self._changed(dst)
        self._meta.put_negative(src)
        self._keep_parent(src)
        if parent_of(src) != parent_of(dst):
            self._touch_dir(parent_of(dst))
        for sf in list(self.local.files.values()):
            if is_under(sf.path, dst) and sf.journaled is not None:
                await self._journal(sf)
            if is_under(sf.path, dst) and sf.dirty and sf.open_handles <= 0:
                self._uploader.schedule(sf)

    # ------------------------------------------------------------------ misc
    async def statfs(self) -> StatFs:
        return StatFs()

    # ------------------------------------------------------------------ control plane
    def _dirty_files(self) -> list[StagedFile]:
        return [sf for sf in self.local.files.values() if sf.dirty or not sf.ready]

    def progress(self) -> Progress:
        """Upload counters, cheap enough to poll (no request, one pass over dirty files)."""
        dirty = self._dirty_files()
        return Progress(
            dirty_files=len(dirty),
            bytes_pending=sum(sf.size if sf.ready else (sf.base.size if sf.base else 0)
                              for sf in dirty),
            bytes_uploaded=self._uploader.uploaded_bytes,
            bytes_sent=int(self.remote.stats().get("bytes_out", 0)),
            uploads_in_flight=len(self._uploader.pending))

    async def sync(self) -> None:
        """Upload everything dirty (open files as they stand now) and the markers of the
        directories made or changed here, and wait for it."""
        if self.read_only:
            return
        await self._ensure_session()
        await self._write_markers()
        await self._uploader.sync(self._dirty_files())

    async def _write_markers(self) -> None:
        """Store each pending directory's attributes in its ``DIR/`` marker (so an empty
        directory persists): in batches where the server has them, else one by one."""
        pending = sorted(self.local.pending_markers.items())
        if not pending:
            return
        sid = self._sid()
        needed: dict[str, bool] = {}
        limiter = trio.CapacityLimiter(16)

        async def check(d: str, keep: bool) -> None:
            """A marker is needed for attributes to keep, or for an empty directory (one
            made here with nothing on the server under it is known empty without asking);
            a directory kept here whose marker is not known may have one already."""
            st = self.local.dirs.get(d)
            if not keep and st is not None and st.marker is None:
                async with limiter:
                    st = await self._with_marker(d, st)
                if st.marker:
                    needed[d] = False
                    return
            if keep or self.local.has_under(d):
                needed[d] = keep
                return
            if d in self.local.local_only:
                needed[d] = True
                return
            made = self.local.made_here.get(d) or ()
            if any(self._meta.get(join(d, n)) is not None for n in made):
                needed[d] = False  # a name made here is known to exist in it
                return
            async with limiter:
                needed[d] = await self._is_empty_dir(d)

        async with trio.open_nursery() as nursery:
            for d, keep in pending:
                if d in self.local.dirs:
                    nursery.start_soon(check, d, keep)
        items: list[tuple[str, Stat]] = []
        for d, keep in pending:
            st = self.local.dirs.get(d)
            if st is not None and needed.get(d):
                items.append((d, st))
            elif st is None or self.local.pending_markers.get(d) is keep:
                self.local.pending_markers.pop(d, None)  # gone, or has content: none needed
        if not items:
            return
        metas = [attrs.metadata(st, default_mode=self.config.dir_mode) for _, st in items]
        keys = [posix.marker_key(d) for d, _ in items]
        if await self._uploader.batching():
            for i in range(0, len(items), _wire.BATCH_UPLOAD_MAX_OBJECTS):
                await self.remote.upload_batch(
                    [(k, b"") for k in keys[i:i + _wire.BATCH_UPLOAD_MAX_OBJECTS]],
                    session_id=sid, metadata=metas[i:i + _wire.BATCH_UPLOAD_MAX_OBJECTS])
        else:
            limiter = trio.CapacityLimiter(8)

            async def one(key: str, md: dict[str, str]) -> None:
                async with limiter:
                    await self.remote.upload(key, BytesSource(b""), session_id=sid,
                                             metadata=md)

            async with trio.open_nursery() as nursery:
                for key, md in zip(keys, metas, strict=True):
                    nursery.start_soon(one, key, md)
        # -- atomic: what was written is no longer pending (unless changed meanwhile) --
        for d, st in items:
            now = self.local.dirs.get(d)
            if now == st:
                self.local.pending_markers.pop(d, None)
                self.local.dirs[d] = replace(st, marker=True)
            self._meta.invalidate(d)
            self.local.on_server(d)
        log.debug("wrote %d directory markers", len(items))

    async def commit(self, message: str, metadata: dict[str, str] | None = None
                     ) -> CommitOutcome:
        """Sync, then commit the session; on success go on over a fresh session.

        A conflict (``tilde.exceptions.ConflictError``), a server failure or an upload
        failure propagates and changes nothing: the session and staging stay as they are.
        """
        self._check_writable()
        async with self._control_lock:
            await self._ensure_session()
            self._refuse_damaged()
            await self.sync()
            async with self._uploader.paused():
                self._refuse_damaged()
                sid = self._sid()
                crashpoints.reached(crashpoints.COMMIT_STARTED)
                outcome = await self.remote.commit(sid, message, metadata)
                crashpoints.reached(crashpoints.COMMIT_LANDED)
                self.last_committed_session = sid
                self.view = View(session_id=None)  # committed: nothing may go into it
                self.local.made_here.clear()
                try:
                    new_sid = await self.remote.create_session()
                except BaseException as e:
                    raise FreshSessionError(outcome, e) from e
                self.view = View(session_id=new_sid)
            await self._note_session()
            # -- switched sessions (content is identical: caches stay valid) --
            if outcome.status == "committed":
                self.base_commit = outcome.commit_id or self.base_commit
            else:  # awaiting approval: the new session does not see those changes yet
                forget = self._kernel_forget()
                dropped = self._forget_waiting_changes()
                await self._view_moved(forget)
                for sf in dropped:
                    await sf.idle.wait()
                    await self._staging.discard(sf)
            for sf in self.local.files.values():
                if not sf.dirty:
                    sf.on_remote = True
            log.info("session %s: %s %s; now on session %s", sid, outcome.status,
                     outcome.commit_id or outcome.web_url, new_sid)
            return outcome

    async def rollback(self) -> KernelForget:
        """Discard the session's changes and local staging; go on over a fresh session.

        Returns what the kernel must forget (also passed to ``on_forget`` before this
        returns): every entry it may have cached, and the open files that keep their inode
        but no longer show what was written to them.
        """
        self._check_writable()
        async with self._control_lock:
            async with self._uploader.paused():
                # paused: no upload races the DELETE (held ones find their file unlinked)
                sid = await self._ensure_session()
                try:
                    await self.remote.rollback(sid)
                except exc.NotFoundError:
                    pass
                new_sid = await self.remote.create_session()
                await self._note_session_id(new_sid)
                # -- atomic: forget every local change --
                dropped = list(self.local.files.values())
                self.local.files.clear()
                self.local.dirs.clear()
                self.local.pending_markers.clear()
                self.local.atimes.clear()
                self.local.local_only.clear()
                self.local.made_here.clear()
                self._meta.clear()
                self.view = View(session_id=new_sid)
                for sf in dropped:
                    sf.unlinked = True
                forget = self._kernel_forget()
                for node in self._inodes.attached():
                    if node.path and not node.open_count:
                        self._inodes.detach(node)
                for ino in forget.inodes:  # the page cache must not be kept at next open
                    self._kernel_cache_key.pop(ino, None)
                self._reread_open_files()
            await self._tell_kernel(forget)
            for sf in dropped:  # after the pause: held uploads end (their file is unlinked)
                if sf.open_handles <= 0:
                    await sf.idle.wait()
                    await self._staging.discard(sf)
                else:  # kept for its readers until release; not journaled any more
                    await self._staging.record(sf)
            return forget

    async def update(self) -> UpdateOutcome:
        """Move the mount onto the repository's latest commit (``tilde-mount update``).

        A ``--read-only`` mount just reads the latest commit from then on. A session
        without changes is replaced by a fresh one on top of the latest commit. One with
        changes (local ones are uploaded first) is rebased when none of its paths changed
        since its base: by the server (tilde-server's extension), or else by the mount,
        which copies the changes into a fresh session (catchup.py). `UpdateConflict` names
        the paths in the way; then nothing changes. Open handles stay valid; the kernel
        forgets what it cached, as after a rollback.
        """
        if self._pinned_ref is not None:
            raise UpdateRefused(f"mounted at commit {self._pinned_ref}: a fixed commit "
                                "cannot move (mount again with another --commit)")
        async with self._control_lock:
            latest = await self.remote.latest_commit_id()
            if self.read_only:
                if latest == self.view.ref:
                    return UpdateOutcome("up_to_date", latest)
                self.view = View(ref=latest)
                self.base_commit = latest
                await self._view_moved()
                return UpdateOutcome("updated", latest)
            await self._ensure_session()
            self._refuse_damaged()
            await self.sync()
            async with self._uploader.paused():
                sid = self._sid()
                if latest == self.base_commit:
                    return UpdateOutcome("up_to_date", latest)
                if not await self.session_has_changes():
                    new_sid = await self.remote.create_session()
                    self.view = View(session_id=new_sid)
                    await self._note_session()
                    await self._drop_session(sid)  # empty: nothing is lost if it stays open
                    status = "updated"
                else:
                    try:
                        latest = await self.remote.rebase(sid) or latest
                    except exc.ConflictError as e:
                        raise UpdateConflict(_wire.rebase_conflicts(e), e.message) from e
                    except exc.APIError as e:
                        if e.status_code not in _wire.ROUTE_MISSING:
                            raise
                        log.info("no session rebase on the server (%s): moving the changes "
                                 "into a fresh session", e)
                        latest = await self._rebase_by_copy(sid)
                    status = "rebased"
                self.base_commit = latest
                self.local.made_here.clear()
            await self._view_moved()
            return UpdateOutcome(status, latest)

    async def _rebase_by_copy(self, sid: str) -> str | None:
        """The rebase of ``sid``'s changes done by the mount (catchup.py): conflicts are
        checked against the commit the fresh session is known to sit on, so a commit that
        lands meanwhile is never overwritten unseen. Returns that commit."""
        changes = await catchup.session_changes(self.remote, sid)
        for _ in range(5):
            latest = await self.remote.latest_commit_id()
            new_sid = await self.remote.create_session()
            if await self.remote.latest_commit_id() != latest:  # its base is unknown
                await self._drop_session(new_sid)
                continue
            try:
                moved = await self.remote.changed_between(self.base_commit, latest) \
                    if latest else {}
                bad = catchup.conflicts(changes, moved)
                if bad:
                    raise UpdateConflict(bad)
                await catchup.move_changes(self.remote, changes, moved, sid, new_sid)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self._drop_session(new_sid)
                raise
            self.view = View(session_id=new_sid)
            await self._note_session()
            await self._drop_session(sid)
            return latest
        raise UpdateRefused("the repository keeps moving; try again")

    async def _drop_session(self, sid: str) -> None:
        """Roll ``sid`` back, best effort (what it holds is elsewhere, or nothing)."""
        try:
            await self.remote.rollback(sid)
        except exc.TildeError as e:
            log.info("rolling back session %s failed (left open): %s", sid, e)

    async def _view_moved(self, forget: KernelForget | None = None) -> None:
        """The view shows other content now (update, a commit awaiting approval): the
        metadata cache and what the kernel cached (``forget``, taken before local state
        changed; else now) go, and open handles read what the view holds."""
        forget = forget or self._kernel_forget()
        self._meta.clear()
        self._reread_open_files()
        for ino in forget.inodes:
            self._kernel_cache_key.pop(ino, None)
        await self._tell_kernel(forget)

    def _forget_waiting_changes(self) -> list[StagedFile]:
        """After a commit that waits for approval: the fresh session shows the base commit,
        so local state that only the waiting session holds goes (synchronously): staged
        files that are uploaded and closed (returned, for their copies to be discarded) and
        local directories. Files written since the sync, or still open, stay; so do the
        directories above them. An open file leaves at its release, unless written again
        (then it goes into the fresh session)."""
        dropped = [sf for sf in self.local.files.values()
                   if sf.ready and not sf.dirty and sf.open_handles <= 0 and not sf.uploading]
        for sf in dropped:
            del self.local.files[sf.path]
        keep: set[str] = set()
        for path in self.local.files:
            while path:
                path = parent_of(path)
                keep.add(path)
        for d in [d for d in self.local.dirs if d not in keep]:
            del self.local.dirs[d]
        self.local.local_only &= set(self.local.dirs)
        return dropped

    def _reread_open_files(self) -> None:
        """The session changed under open handles: their next read asks what it holds now
        (not the ETag they opened, whose blocks may still be cached)."""
        for h in self._handles.values():
            if not h.node.detached:
                h.ref = None

    def _kernel_forget(self) -> KernelForget:
        """Every (parent inode, name) the kernel may have cached, and the open files."""
        nodes = self._inodes.attached()
        by_path = {n.path: n for n in nodes}
        entries: list[tuple[int, bytes]] = []
        for node in nodes:
            parent = by_path.get(parent_of(node.path)) if node.path else None
            if parent is not None:
                entries.append((parent.ino, basename(node.path).encode("utf-8")))
        stale = sorted({h.node.ino for h in self._handles.values() if not h.node.detached})
        return KernelForget(tuple(entries), tuple(stale))

    async def _tell_kernel(self, forget: KernelForget) -> None:
        if self.on_forget is None or not (forget.entries or forget.inodes):
            return
        try:
            await self.on_forget(forget)
        except Exception:  # the kernel's TTLs end staleness anyway; never fail the caller
            log.exception("invalidating the kernel's caches failed")

    async def _changes(self) -> list[tuple[str, bool]]:
        """(path, deleted) for every change in the session, from the server."""
        sid = self.view.session_id
        if sid is None:
            return []
        out: list[tuple[str, bool]] = []
        after: str | None = None
        while True:
            records, after = await self.remote.list_changes(sid, after=after, amount=1000)
            out.extend((r.path, r.entry is None) for r in records)
            if after is None:
                return out

    async def _existed_before(self, paths: list[str]) -> set[str]:
        if self.base_commit is None:
            return set()
        found: set[str] = set()
        limiter = trio.CapacityLimiter(16)
        base = View(ref=self.base_commit)

        async def check(path: str) -> None:
            async with limiter:
                try:
                    await self.remote.head(path, base)
                    found.add(path)
                except exc.NotFoundError:
                    pass

        async with trio.open_nursery() as nursery:
            for p in paths[:2000]:
                nursery.start_soon(check, p)
        return found

    def open_writers(self) -> list[str]:
        """Paths open for writing now (unmount refuses while there are any)."""
        return sorted({h.node.path for h in self._handles.values()
                       if h.writable and not h.node.detached})

    def has_changes_pending(self) -> bool:
        return bool(self._dirty_files())

    async def session_has_changes(self) -> bool:
        sid = self.view.session_id
        if sid is None:
            return False
        records, _ = await self.remote.list_changes(sid, amount=1)
        return bool(records)

    async def status(self) -> dict[str, Any]:
        """What the mount holds; the local part always, the server's when it answers
        (else ``error`` says why and the session's changes are missing)."""
        pending = sorted(sf.path for sf in self._dirty_files())
        out: dict[str, Any] = {
            "repository": self.remote.repository,
            "endpoint": self.remote.endpoint,
            "session_id": self.view.session_id,
            "ref": self.view.ref,
            "read_only": self.read_only,
            "base_commit": self.base_commit,
            "uploads_pending": len(pending),
            "pending_paths": pending,
            "damaged": sorted(sf.path for sf in self.local.files.values() if sf.damaged),
            "open_for_writing": self.open_writers(),
            "uploads_in_flight": len(self._uploader.pending),
            "uploaded": {"files": self._uploader.uploaded_files,
                         "bytes": self._uploader.uploaded_bytes},
            "staging_bytes": self._staging.bytes_used,
            "cache": {"blocks": self._blocks.usage(), "metadata": self._meta.usage()},
            "inodes": len(self._inodes),
            "open_handles": len(self._handles),
            "requests": self.remote.stats(),
            # read/write calls that reached the filesystem (the kernel's page cache
            # answers the rest): how keep_cache is seen from outside
            "io": {"reads": self.counters.reads, "bytes_read": self.counters.bytes_read,
                   "writes": self.counters.writes, "bytes_written": self.counters.bytes_written},
        }
        try:
            changes = await self._changes()
            deleted = sorted(p for p, gone in changes if gone)
            written = {p for p, gone in changes if not gone} | set(pending)
            existed = await self._existed_before(sorted(written))
        except Exception as raw:
            e = root_cause(raw)
            if not isinstance(e, exc.TildeError):
                raise
            out["error"] = f"the server did not answer ({e}); what the mount holds " \
                           "locally is shown"
            return out
        out.update(added=sorted(written - existed), modified=sorted(written & existed),
                   deleted=[p for p in deleted if p not in written])
        return out
