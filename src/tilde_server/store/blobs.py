"""Content-addressed blob files and upload spool files. All methods block: call them from
worker threads, never on the event loop.

Subtleties:
1. A blob file is named by a key derived from its content (sha256 of the bytes for single
   uploads; for multipart, sha256 over the parts' sha256s), so identical content is stored once
   and a copy never moves bytes. Blob files are immutable once in place.
2. Incoming bytes go to a spool file under tmp/<session>/ and are fsynced before they are
   renamed into blobs/ (rename is atomic), so a blob file is always complete.
3. Whether a blob is still referenced is decided by the engine under its blob lock; this module
   only deletes what it is told to.
4. Spool directories are per session, so rollback/commit can drop every leftover upload of a
   session at once, and startup removes spools of sessions that no longer exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A file being received: written chunk by chunk while its sha256 and md5 are computed."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by finish()/abort()
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5()
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
        return self._sha.hexdigest(), self._md5.hexdigest(), self.size

    def abort(self) -> None:
        self._f.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

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

    # -- blobs -------------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        return self.blobs / key[:2] / key[2:]

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def adopt(self, spool_file: Path, key: str) -> None:
        """Move a finished spool file into place as blob `key` (or drop it if already there)."""
        dest = self.path(key)
        if dest.exists():
            spool_file.unlink()
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(spool_file, dest)
        _fsync_dir(dest.parent)

    def assemble(self, parts: list[Path], out: Path) -> None:
        """Concatenate part spool files into `out` (kernel-side copy where possible), fsynced.

        Runs outside any lock; `adopt` then moves the result into place."""
        out.parent.mkdir(parents=True, exist_ok=True)
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
            spool = Spool(self.tmp / f"direct-{key}")
            spool.write(data)
            spool.finish()
            self.adopt(spool.path, key)
        return key

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()


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
