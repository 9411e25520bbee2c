"""One server per data directory: an exclusive flock on DIR/tilde-server.lock.

Two servers on one directory would be two writers on one SQLite database and one blob store,
each sweeping what it thinks is the other's garbage. The lock is an OS lock (flock) held
through an open file descriptor for the life of the process: the kernel drops it when the
process ends however it ends, so a crashed server never leaves a stale lock behind. The file
holds the owner's pid, for the refusal message only (the lock, not the file, decides).
Maintenance commands that are safe beside a running server (`user add`, `approve`) do not
take it; `tilde-server gc` does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from tilde_server.store.blobs import mkdirs
from tilde_server.store.errors import DataDirError

LOCK_FILE = "tilde-server.lock"


class DataDirLocked(DataDirError):
    """Another process holds the directory's lock."""


class DataDirLock:
    """The held lock; `release()` (or process exit) gives it up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, root: Path) -> DataDirLock:
        """Lock `root` (created 0700 if missing) or raise DataDirLocked naming the holder."""
        if not root.exists():
            mkdirs(root)
            root.chmod(0o700)
        path = root / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 64, 0).decode().strip()
            os.close(fd)
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise DataDirLocked(
                f"{root} is in use by another tilde-server ({who}); stop it first or "
                "choose another --data directory") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
