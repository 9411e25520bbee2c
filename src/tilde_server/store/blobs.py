"""Content-addressed blob files and upload spool files. All methods block: call them from
worker threads, never on the event loop.

Subtleties:
1. A blob file is named by a key derived from its content (sha256 of the bytes for single
   uploads; for multipart, sha256 over the parts' sha256s), so identical content is stored once
   and a copy never moves bytes. Blob files are immutable once in place.
2. Incoming bytes go to a spool file under tmp/<session>/ and are fsynced before they are
   renamed into blobs/ (rename is atomic), so a blob file is always complete. The rename is
   made durable by an fsync of the blob's directory (and of blobs/ when that directory is
   new) before the caller commits the row that references it: after a power loss a row never
   names a missing blob. A finished single-upload or part spool also has its directory
   fsynced, because the PUT is answered (and the uploads row committed) before finalize
   moves it: an acknowledged PUT survives a power loss too.
3. Whether a blob is still referenced is decided by the engine under its blob lock; this module
   only deletes what it is told to.
4. Spool directories are per session, so rollback/commit can drop every leftover upload of a
   session at once, and startup removes spools of sessions that no longer exist.
5. A batch upload's objects arrive concatenated in one body; `SpoolSequence` cuts it into one
   spool file per object by the sizes the manifest announced, with one file open at a time.
6. Beside a database, the blob directory may be shared by every process (`--blobs DIR`, e.g.
   one filesystem mounted on each host); spools stay under each process's --data. A rename
   across filesystems fails (EXDEV): the spool is then copied to `.incoming/` in the blob
   directory, fsynced and renamed into place. Content addressing makes two processes adopting
   the same key harmless (the same bytes); deletions are decided under the database's blob
   locks (engine 4.), not by this module.
7. Blob ids: a content key (64 hex digits, sha256) for bytes that passed through this
   process, or an upload key (`u-`/`m-` + 32 hex digits, the upload's address) for bytes a
   client PUT straight into an S3 bucket (s3blobs.py), whose hash nobody computed. Both
   shard by two hex digits (`shard_of`): the lock a new reference takes and the unit a sweep
   lists are the same shard.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Where adopt() assembles a copy from another filesystem (6.); never a shard.
INCOMING = ".incoming"
_SHARD = re.compile(r"^[0-9a-f]{2}$")
#: every blob id (7.): a content key or an upload key
BLOB_ID = re.compile(r"^(?:[0-9a-f]{64}|[um]-[0-9a-f]{32})$")


def shard_of(blob: str) -> str:
    """The two hex digits a blob id is sharded by (7.)."""
    return blob[2:4] if blob[1:2] == "-" else blob[:2]


def is_upload_key(blob: str) -> bool:
    """Bytes a client PUT to the bucket itself: the bucket's ETag is the object's (7.)."""
    return blob[1:2] == "-"


def fsync_dir(path: Path) -> None:
    """Make the names in a directory (new files, renames) survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mkdirs(path: Path) -> None:
    """mkdir -p whose new directories survive a power loss (each new one's parent fsynced)."""
    if path.is_dir():
        return
    mkdirs(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    fsync_dir(path.parent)


class Spool:
    """A file being received: written chunk by chunk while its sha256 and md5 are computed.
    `sync_dir`: finish() also fsyncs the directory (the file outlives the request)."""

    def __init__(self, path: Path, sync_dir: bool = True) -> None:
        mkdirs(path.parent)
        self.path = path
        self._sync_dir = sync_dir
        self._f: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by finish()/abort()
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)  # ETag, not security
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._f.write(chunk)
        self._sha.update(chunk)
        self._md5.update(chunk)
        self.size += len(chunk)

    def finish(self) -> tuple[str, str, int]:
        """Flush and fsync; returns (sha256 hex, md5 hex, size)."""
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        if self._sync_dir:
            fsync_dir(self.path.parent)
        return self._sha.hexdigest(), self._md5.hexdigest(), self.size

    def abort(self) -> None:
        self._f.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class SpoolSequence:
    """The spools of a batch upload: bytes written in order fill object 0, then 1, ... by the
    announced sizes. Spool files live under the batch's address like multipart parts."""

    def __init__(self, blobs: BlobStore, session_uid: str, address: str,
                 sizes: list[int]) -> None:
        self._blobs = blobs
        self.session_uid = session_uid
        self.address = address
        self.sizes = sizes
        self._done: list[tuple[str, str, int]] = []
        self._cur: Spool | None = None

    def path(self, index: int) -> Path:
        return self._blobs.spool_path(self.session_uid, self.address, index + 1)

    def _advance(self) -> None:
        """Finish every full spool (an empty object is full at once) and open the next one."""
        while len(self._done) < len(self.sizes):
            if self._cur is None:
                # adopted (and its rename made durable) before the batch is answered
                self._cur = Spool(self.path(len(self._done)), sync_dir=False)
            if self._cur.size < self.sizes[len(self._done)]:
                return
            self._done.append(self._cur.finish())
            self._cur = None

    def write(self, data: bytes) -> None:
        """Append bytes; the caller never writes more than the sizes add up to."""
        pos = 0
        while True:
            self._advance()
            if pos == len(data):
                return
            if self._cur is None:
                raise ValueError("more bytes than the announced sizes add up to")
            n = min(len(data) - pos, self.sizes[len(self._done)] - self._cur.size)
            self._cur.write(data[pos:pos + n])
            pos += n

    def finish(self) -> list[tuple[str, str, int]]:
        """(sha256 hex, md5 hex, size) of every object, in order; all files fsynced."""
        self._advance()
        if len(self._done) < len(self.sizes):
            raise ValueError("fewer bytes than the announced sizes add up to")
        return self._done

    def abort(self) -> None:
        """Close and remove every spool file of the batch (idempotent)."""
        if self._cur is not None:
            self._cur.abort()
            self._cur = None
        self._blobs.drop_spools(self.session_uid, self.address)


class BlobStore:
    """Blob files under `blobs_dir` (default `root`/blobs), spools under `root`/tmp.

    `blobs_dir` may be a directory every process of a --database deployment shares (6.):
    spools stay each process's own, and a spool on another filesystem is copied in.
    s3blobs.S3BlobStore keeps the spools and puts the blobs in a bucket instead."""

    #: clients PUT bytes to the storage itself (presigned URLs): S3BlobStore only
    direct = False

    def __init__(self, root: Path, blobs_dir: Path | None = None) -> None:
        self.blobs = blobs_dir or root / "blobs"
        self.tmp = root / "tmp"
        mkdirs(self.blobs)
        mkdirs(self.tmp)

    def describe(self) -> str:
        return str(self.blobs)

    # -- spool files -------------------------------------------------------------------------
    def spool_path(self, session_uid: str, address: str, part: int | None = None) -> Path:
        base = self.tmp / session_uid
        if part is None:
            return base / address
        return base / f"{address}.parts" / f"{part:05d}"

    def open_spool(self, session_uid: str, address: str, part: int | None = None) -> Spool:
        return Spool(self.spool_path(session_uid, address, part))

    def drop_spools(self, session_uid: str, address: str | None = None) -> None:
        """Remove a session's leftover spool files (all, or one upload's)."""
        base = self.tmp / session_uid
        if address is None:
            shutil.rmtree(base, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            (base / address).unlink()
        shutil.rmtree(base / f"{address}.parts", ignore_errors=True)

    def spool_sessions(self) -> list[str]:
        return [p.name for p in self.tmp.iterdir() if p.is_dir()]

    def sweep_spools(self, live: set[str], skip: set[str], keep: set[str],
                     keep_parts: set[tuple[str, int]], cutoff: float) -> int:
        """Remove spool files no pending upload needs; returns how many files went.

        `live`: sessions whose spool directory is looked into, `skip`: sessions whose
        directory is left alone (others go whole); `keep`:
        addresses of pending uploads (a single upload's file, a multipart upload's parts
        directory); `keep_parts`: (address, part number) of recorded parts. Anything else
        (unrecorded parts, half-assembled files, batch and direct spools) goes once nothing
        in it was modified after `cutoff` (a request may still be writing it)."""
        removed = 0
        for entry in list(self.tmp.iterdir()):
            if entry.name in skip:
                continue
            if entry.is_dir() and entry.name in live:
                for child in list(entry.iterdir()):
                    name = child.name
                    if name.endswith(".parts") and name[:-6] in keep and child.is_dir():
                        for part in list(child.iterdir()):
                            if ((name[:-6], _part_number(part.name)) not in keep_parts
                                    and _newest_mtime(part) < cutoff):
                                removed += _remove(part)
                    elif name not in keep and _newest_mtime(child) < cutoff:
                        removed += _remove(child)
            elif _newest_mtime(entry) < cutoff:
                removed += _remove(entry)
        return removed

    # -- blobs -------------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        return self.blobs / key[:2] / key[2:]

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def adopt(self, spool_file: Path, key: str) -> None:
        """Move a finished spool file into place as blob `key` (or drop it if already there:
        also when the spool is gone because a crash came after this rename but before the
        transaction that references the blob committed, and the call is retried).
        FileNotFoundError when neither exists."""
        dest = self.path(key)
        if dest.exists():
            spool_file.unlink(missing_ok=True)
            return
        mkdirs(dest.parent)
        try:
            os.replace(spool_file, dest)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            self._copy_in(spool_file, dest)
        fsync_dir(dest.parent)

    def _copy_in(self, spool_file: Path, dest: Path) -> None:
        """adopt() across filesystems: a complete, fsynced copy renamed into place (a blob
        file is never seen half written), then the spool goes."""
        incoming = self.blobs / INCOMING
        mkdirs(incoming)
        copy_into_place(spool_file, dest, incoming)
        spool_file.unlink()

    def assemble(self, parts: list[Path], out: Path) -> None:
        """Concatenate part spool files into `out` (kernel-side copy where possible), fsynced.

        Runs outside any lock; `adopt` then moves the result into place."""
        mkdirs(out.parent)
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
        if len(parts) == 1:
            os.link(parts[0], out)  # no copy at all; the part file is dropped later
            return
        with open(out, "wb") as dst:
            for part in parts:
                with open(part, "rb") as src:
                    _copy_fd(src.fileno(), dst.fileno(), os.fstat(src.fileno()).st_size)
            dst.flush()
            os.fsync(dst.fileno())

    def write_bytes(self, data: bytes) -> str:
        """Store small content directly (used for the empty object); returns its key."""
        key = hashlib.sha256(data).hexdigest()
        if not self.exists(key):
            spool = Spool(self.tmp / f"direct-{key}", sync_dir=False)
            spool.write(data)
            spool.finish()
            self.adopt(spool.path, key)
        return key

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()

    def shards(self) -> Iterator[tuple[str, list[str]]]:
        """(shard, blob ids in it), shard by shard in order (7.)."""
        for sub in sorted(os.listdir(self.blobs)):
            if not _SHARD.match(sub):  # INCOMING, or anything not ours
                continue
            with contextlib.suppress(NotADirectoryError, FileNotFoundError):
                yield sub, [sub + name for name in os.listdir(self.blobs / sub)]

    def listing(self) -> Iterator[tuple[str, list[tuple[str, float]]]]:
        """(shard, [(blob id, mtime)]) for every shard that holds any (a sweep's input)."""
        for shard, keys in self.shards():
            listed = [(k, self.mtime(k)) for k in keys]
            if listed:
                yield shard, listed

    def mtime(self, key: str) -> float:
        """A blob file's mtime (+inf when it vanished: never a sweep candidate)."""
        try:
            return self.path(key).stat().st_mtime
        except FileNotFoundError:
            return float("inf")

    def put_file(self, src: Path, key: str) -> None:
        """Store a copy of `src` as blob `key` (migrate; `src` stays)."""
        dest = self.path(key)
        mkdirs(dest.parent)
        incoming = self.blobs / INCOMING
        mkdirs(incoming)
        copy_into_place(src, dest, incoming)
        fsync_dir(dest.parent)

    def digest(self, key: str) -> str | None:
        """sha256 hex of blob `key`'s bytes as stored (None when there is no such blob)."""
        try:
            with self.open(key) as f:
                return sha256_of(f)
        except FileNotFoundError:
            return None


def sha256_of(f: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def copy_into_place(src: Path, dest: Path, tmp_dir: Path) -> None:
    """Copy `src` to `dest` so that `dest` is never seen half written: a fsynced copy in
    `tmp_dir` (same filesystem as `dest`) renamed over it. The caller fsyncs dest's
    directory when the name must survive a power loss."""
    tmp = tmp_dir / f"{dest.name}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as out:
            shutil.copyfileobj(fin, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _part_number(name: str) -> int:
    return int(name) if name.isdigit() else -1


def _newest_mtime(path: Path) -> float:
    """The latest mtime in a file or tree (0 when it vanished meanwhile)."""
    try:
        newest = path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for n in dirs + files:
                with contextlib.suppress(FileNotFoundError):
                    newest = max(newest, os.lstat(os.path.join(root, n)).st_mtime)
    return newest


def _remove(path: Path) -> int:
    """Remove a file or a tree; returns the number of files removed."""
    if path.is_dir() and not path.is_symlink():
        n = sum(len(files) for _, _, files in os.walk(path))
        shutil.rmtree(path, ignore_errors=True)
        return n
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        return 1
    return 0


def _copy_fd(src: int, dst: int, size: int) -> None:
    copied = 0
    while copied < size:
        try:
            n = os.copy_file_range(src, dst, size - copied)
        except OSError:
            n = 0
        if n == 0:
            break
        copied += n
    if copied < size:  # fall back to read/write for whatever copy_file_range did not do
        os.lseek(src, copied, os.SEEK_SET)
        while True:
            buf = os.read(src, 1 << 20)
            if not buf:
                break
            os.write(dst, buf)
