"""Sandbox logs (`GET {S}/logs/stdout`, `.../network`) that any process of a deployment can
serve. All methods block: call them from worker threads.

Subtleties:
1. The process running a sandbox appends its output to files in its --data
   (`sandboxes/<id>/<name>`), as the embedded server always has. Beside other processes
   (a --database deployment) every byte also goes to rows of `sandbox_logs` (sandbox, name,
   seq, data), and every process reads a log from there: a sandbox runs on one process,
   its log is read through any.
2. Rows are written in batches: a writer flushes when LOG_BATCH bytes are pending, and a
   flusher thread flushes every writer every FLUSH_INTERVAL seconds, so a chatty command
   costs a few inserts a second and a quiet one's last line shows within a second. A
   reader of a running sandbox's log sees what was flushed (the log route never long-polls).
3. Expiry (`--sandbox-log-retention`): files and rows go, and the sandbox row's
   `logs_expired` says so to every process (embedded: a marker file, as before).
4. One writer per log: the main process's pump and an exec run's two readers append to the
   same stdout log from three threads, so `LogStore.writer` hands out the open writer of a
   log again (counted; the last close closes it). Its lock orders the bytes the same in the
   file and in the rows, and one writer numbers the rows (`seq`) without collisions.
5. A database that fails a flush never stops the output: the error is logged, the bytes
   stay pending for the next flush (up to MAX_PENDING; beyond it the rows lose them, the
   file keeps them), and the command's output goes on to its file and its subscribers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

from tilde_server.store.db import Database

log = logging.getLogger("tilde_server.sandbox")

LOGS_EXPIRED = "logs-expired"  # the embedded marker, left in a sandbox's private dir (3.)
LOG_BATCH = 256 * 1024
FLUSH_INTERVAL = 0.5
MAX_PENDING = 8 * 1024 * 1024


class LogWriter:
    """Appends to one log of one sandbox: its file, and (shared) its rows (2.)."""

    def __init__(self, store: LogStore, sandbox_id: str, name: str) -> None:
        self._store = store
        self.sandbox_id, self.name = sandbox_id, name
        self.path = store.data_root / sandbox_id / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        self.size = self._f.tell()
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._seq: int | None = None
        self.users = 1  # LogStore.writer hands it out again (4.)

    def write(self, data: bytes) -> None:
        with self._lock:
            self._f.write(data)
            self._f.flush()
            self.size += len(data)
            if self._store.shared:
                if len(self._pending) + len(data) > MAX_PENDING:
                    log.error("sandbox %s: %d byte(s) of its log %s could not be written to "
                              "the database (kept in its file)", self.sandbox_id, len(data),
                              self.name)
                else:
                    self._pending += data
                if len(self._pending) >= LOG_BATCH:
                    self._try_flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._try_flush_locked()

    def _try_flush_locked(self) -> None:
        """A flush whose failure is logged, the bytes kept pending (5.)."""
        try:
            self._flush_locked()
        except Exception:
            log.exception("sandbox %s: could not write its log %s to the database (will "
                          "try again)", self.sandbox_id, self.name)

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        data = bytes(self._pending)
        with self._store.db.write() as c:
            if self._seq is None:  # after a restart of the same sandbox's log: go on
                row = c.execute("SELECT max(seq) FROM sandbox_logs WHERE sandbox_id = ? "
                                "AND name = ?", (self.sandbox_id, self.name)).fetchone()
                self._seq = (row[0] if row and row[0] is not None else -1) + 1
            c.execute("INSERT INTO sandbox_logs(sandbox_id, name, seq, data) "
                      "VALUES (?,?,?,?)", (self.sandbox_id, self.name, self._seq, data))
        self._seq += 1
        del self._pending[:len(data)]

    def close(self, fsync: bool = False) -> None:
        """Let go of the writer; the last user's close flushes and closes it (4.), before
        the log can get a new writer (which numbers its rows after these)."""
        with self._store._lock:
            self.users -= 1
            last = self.users == 0
            if last and self._store._open.get((self.sandbox_id, self.name)) is self:
                del self._store._open[(self.sandbox_id, self.name)]
            with self._lock:
                if last:
                    self._try_flush_locked()
                if fsync:
                    with contextlib.suppress(OSError):
                        os.fsync(self._f.fileno())
                if last:
                    self._f.close()


class LogStore:
    """The logs of a process's sandboxes, and (shared) of every sandbox of the deployment."""

    def __init__(self, db: Database, data_root: Path, shared: bool) -> None:
        self.db, self.data_root, self.shared = db, data_root, shared
        self._open: dict[tuple[str, str], LogWriter] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        if shared:
            threading.Thread(target=self._flusher, daemon=True,
                             name="sandbox-log-flusher").start()

    def writer(self, sandbox_id: str, name: str) -> LogWriter:
        """The log's open writer (4.), or a new one; every call is matched by a close()."""
        with self._lock:
            w = self._open.get((sandbox_id, name))
            if w is not None:
                w.users += 1
                return w
            w = LogWriter(self, sandbox_id, name)
            self._open[(sandbox_id, name)] = w
            return w

    def append(self, sandbox_id: str, name: str, data: bytes) -> None:
        w = self.writer(sandbox_id, name)
        try:
            w.write(data)
        finally:
            w.close()

    def _flusher(self) -> None:
        while not self._wake.wait(FLUSH_INTERVAL):
            with self._lock:
                writers = list(self._open.values())
            for w in writers:
                w.flush()  # failures are logged and retried (5.)

    def read(self, sandbox_id: str, name: str) -> bytes:
        """The log so far (b"" when there is none yet)."""
        if self.shared:
            with self.db.read() as c:
                rows = c.execute("SELECT data FROM sandbox_logs WHERE sandbox_id = ? AND "
                                 "name = ? ORDER BY seq", (sandbox_id, name)).fetchall()
            return b"".join(bytes(r[0]) for r in rows)
        try:
            return (self.data_root / sandbox_id / name).read_bytes()
        except FileNotFoundError:
            return b""

    def expired(self, sandbox_id: str) -> bool:
        if self.shared:
            with self.db.read() as c:
                row = c.execute("SELECT logs_expired FROM sandboxes WHERE id = ?",
                                (sandbox_id,)).fetchone()
            return bool(row and row[0])
        return (self.data_root / sandbox_id / LOGS_EXPIRED).exists()

    def expire(self, sandbox_id: str, names: tuple[str, ...]) -> bool:
        """Delete a finished sandbox's logs (3.); False when they were gone already."""
        if self.expired(sandbox_id):
            return False
        private = self.data_root / sandbox_id
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                (private / name).unlink()
        if self.shared:
            with self.db.write() as c:
                c.execute("DELETE FROM sandbox_logs WHERE sandbox_id = ?", (sandbox_id,))
                c.execute("UPDATE sandboxes SET logs_expired = 1 WHERE id = ?", (sandbox_id,))
        elif private.is_dir():
            (private / LOGS_EXPIRED).touch()
        else:
            return False
        return True

    def close(self) -> None:
        self._wake.set()
        with self._lock:
            writers = list(self._open.values())
        for w in writers:
            w.users = 1
            w.close()
