"""Named crash points for the crash tests (tests/reliability/test_server_crash.py).

`TILDE_SERVER_CRASH_AT=<name>[:<n>]` makes the server SIGKILL itself the n-th time (default
1) it passes point <name>: a real crash, no cleanup, no flush, nothing answered. Just before,
it writes one line `tilde-server: crash point <name> hit` to stderr (and appends it to the file
`TILDE_SERVER_CRASH_REPORT` names, if set), so a test can tell a point that was never reached
from one that was. Unset, `reached` returns at once: the variable is read once, at import.

`TILDE_SERVER_CRASH_AT=@FILE` arms from FILE instead, re-read at every point passed: it holds
`<name>[:<n>]` or nothing (disarmed), and passes count from its last change. A test can then
restart one server and arm it for the next point without another restart (each costs ~1 s).

`TILDE_SERVER_PAUSE_AT=<name>` stops the whole process (SIGSTOP) the first time it passes
<name> instead, after the line `tilde-server: pause point <name> hit`: a process that hangs
(a long GC pause, a frozen VM) and comes back when the test sends SIGCONT. The lease tests
of several processes use it (a slow former owner must not commit twice).

Every point is defined here and only here; `ALL` lists the request points for the crash walk
of tests/reliability/test_server_crash.py, `BACKGROUND` those of background work.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "TILDE_SERVER_CRASH_AT"
PAUSE_ENV = "TILDE_SERVER_PAUSE_AT"
REPORT_ENV = "TILDE_SERVER_CRASH_REPORT"

# Single upload: bytes PUT to the signed URL (spool written, not yet fsynced), fsynced but not
# recorded, recorded (uploads row committed) but the PUT not yet answered.
UPLOAD_RECEIVED = "upload.received"
UPLOAD_SYNCED = "upload.synced"
UPLOAD_RECORDED = "upload.recorded"
# Multipart part: the same phases for a part URL.
PART_RECEIVED = "part.received"
PART_SYNCED = "part.synced"
PART_RECORDED = "part.recorded"
# Finalize (0.7.2 PUT .../finalize = legacy, 0.7.7 POST .../finalize = current): inside the
# write transaction before the spool is renamed into blobs/, after (blob in place, staged row
# not committed), and after the transaction committed but before the answer.
FINALIZE_LEGACY_BEFORE_ADOPT = "finalize.legacy.before_adopt"
FINALIZE_LEGACY_ADOPTED = "finalize.legacy.adopted"
FINALIZE_LEGACY_COMMITTED = "finalize.legacy.committed"
FINALIZE_CURRENT_BEFORE_ADOPT = "finalize.current.before_adopt"
FINALIZE_CURRENT_ADOPTED = "finalize.current.adopted"
FINALIZE_CURRENT_COMMITTED = "finalize.current.committed"
# Multipart complete: parts assembled into one fsynced file (nothing in the database yet),
# blob in place inside the transaction, transaction committed but not answered.
COMPLETE_ASSEMBLED = "complete.assembled"
COMPLETE_ADOPTED = "complete.adopted"
COMPLETE_COMMITTED = "complete.committed"
# Batch upload extension: every blob in place, the staging transaction not committed.
BATCH_ADOPTED = "batch.adopted"
# Commit and rollback of a session: inside the transaction just before COMMIT, and after it
# (session closed; spools and unreferenced blobs not yet removed, nothing answered).
COMMIT_BEFORE_DB_COMMIT = "commit.before_db_commit"
COMMIT_AFTER_DB_COMMIT = "commit.after_db_commit"
ROLLBACK_BEFORE_DB_COMMIT = "rollback.before_db_commit"
ROLLBACK_AFTER_DB_COMMIT = "rollback.after_db_commit"

# Import job (store/imports.py): every object staged in its internal session, not yet
# committed; inside the commit's transaction just before COMMIT.
IMPORT_STAGED = "import.staged"
IMPORT_BEFORE_DB_COMMIT = "import.before_db_commit"

FINALIZE = {
    "legacy": (FINALIZE_LEGACY_BEFORE_ADOPT, FINALIZE_LEGACY_ADOPTED, FINALIZE_LEGACY_COMMITTED),
    "current": (FINALIZE_CURRENT_BEFORE_ADOPT, FINALIZE_CURRENT_ADOPTED,
                FINALIZE_CURRENT_COMMITTED),
}

ALL: tuple[str, ...] = (
    UPLOAD_RECEIVED, UPLOAD_SYNCED, UPLOAD_RECORDED,
    PART_RECEIVED, PART_SYNCED, PART_RECORDED,
    *FINALIZE["legacy"], *FINALIZE["current"],
    COMPLETE_ASSEMBLED, COMPLETE_ADOPTED, COMPLETE_COMMITTED,
    BATCH_ADOPTED,
    COMMIT_BEFORE_DB_COMMIT, COMMIT_AFTER_DB_COMMIT,
    ROLLBACK_BEFORE_DB_COMMIT, ROLLBACK_AFTER_DB_COMMIT,
)
# Points of background work, walked by their own tests (an import taken over by another
# process: tests/server/test_multiprocess.py), not by the request walk over ALL.
BACKGROUND: tuple[str, ...] = (IMPORT_STAGED, IMPORT_BEFORE_DB_COMMIT)


def parse(value: str | None) -> tuple[str, int] | None:
    """`name[:n]` -> (name, n); None for unset/empty. ValueError for an unknown name or bad n."""
    if not value:
        return None
    name, _, count = value.partition(":")
    if name not in ALL + BACKGROUND:
        raise ValueError(f"{ENV}: unknown crash point {name!r} (known: "
                         f"{', '.join(ALL + BACKGROUND)})")
    n = int(count) if count else 1
    if n < 1:
        raise ValueError(f"{ENV}: the count must be at least 1")
    return name, n


def _from_env() -> tuple[tuple[str, int] | None, str | None]:
    value = os.environ.get(ENV) or ""
    if value.startswith("@"):
        return None, value[1:]
    try:
        return parse(value), None
    except ValueError:
        return None, None  # check() reports it at startup


_armed, _file = _from_env()
_pause = os.environ.get(PAUSE_ENV) or None
_active = _armed is not None or _file is not None or _pause is not None
_file_text: str | None = None
_hits = 0
_lock = threading.Lock()


def check() -> None:
    """Raise ValueError for a malformed TILDE_SERVER_CRASH_AT (called once at startup)."""
    value = os.environ.get(ENV) or ""
    if not value.startswith("@"):
        parse(value)
    pause = os.environ.get(PAUSE_ENV) or ""
    if pause and pause not in ALL + BACKGROUND:
        raise ValueError(f"{PAUSE_ENV}: unknown point {pause!r}")


def _rearm() -> None:
    """File mode: pick up a changed FILE (under _lock)."""
    global _armed, _file_text, _hits
    assert _file is not None
    try:
        with open(_file, encoding="utf-8") as f:
            text = f.read().strip()
    except FileNotFoundError:
        text = ""
    if text == _file_text:
        return
    _file_text, _hits = text, 0
    try:
        _armed = parse(text)
    except ValueError as exc:
        _armed = None
        os.write(2, f"tilde-server: ignoring {_file}: {exc}\n".encode())


def reached(name: str) -> None:
    """Pass point `name`: a no-op unless it is the armed point (then maybe die here)."""
    if not _active:
        return
    global _hits, _pause
    if _pause == name:
        _pause = None  # once
        os.write(2, f"tilde-server: pause point {name} hit, stopping the process\n".encode())
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    with _lock:
        if _file is not None:
            _rearm()
        if _armed is None or _armed[0] != name:
            return
        _hits += 1
        if _hits < _armed[1]:
            return
        line = f"tilde-server: crash point {name} hit ({_hits}), killing the process\n"
        os.write(2, line.encode())
        report = os.environ.get(REPORT_ENV)
        if report:
            fd = os.open(report, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
