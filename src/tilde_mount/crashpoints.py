"""Named crash points of the daemon, for the crash tests (tests/reliability/test_daemon_crash.py).

``TILDE_MOUNT_CRASH_AT=<name>[:<n>]`` makes the daemon SIGKILL itself the n-th time
(default 1) it passes point <name>: a real crash, nothing flushed or answered. Just
before, it appends ``<name>`` to the file ``TILDE_MOUNT_CRASH_REPORT`` names (if set), so a
test tells a point never reached from one that was. Unset, `reached` costs one comparison:
the variable is read once, at import. Every point is defined here; `ALL` lists them.
"""

from __future__ import annotations

import os
import signal

ENV = "TILDE_MOUNT_CRASH_AT"
REPORT_ENV = "TILDE_MOUNT_CRASH_REPORT"

#: flush wrote the journal record; close(2) has not been answered yet
FLUSH_JOURNALED = "flush.journaled"
#: an upload is about to be sent (the file is journaled, nothing of it in the session)
UPLOAD_STARTED = "upload.started"
#: the session holds the upload; the mount has not yet marked the file clean
UPLOAD_LANDED = "upload.landed"
#: everything is uploaded; the commit request is about to be sent
COMMIT_STARTED = "commit.started"
#: the commit landed; no fresh session yet
COMMIT_LANDED = "commit.landed"
#: startup adopted a crashed mount's journal; its files are not re-uploaded yet
RECOVERY_ADOPTED = "recovery.adopted"

ALL: tuple[str, ...] = (FLUSH_JOURNALED, UPLOAD_STARTED, UPLOAD_LANDED, COMMIT_STARTED,
                        COMMIT_LANDED, RECOVERY_ADOPTED)


def _parse(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    name, _, count = value.partition(":")
    if name not in ALL:
        raise ValueError(f"{ENV}: unknown crash point {name!r} (known: {', '.join(ALL)})")
    return name, int(count or 1)


_armed = _parse(os.environ.get(ENV))
_passes = 0


def reached(name: str) -> None:
    """Crash here if armed for ``name`` and this is its n-th pass."""
    global _passes
    if _armed is None or _armed[0] != name:
        return
    _passes += 1
    if _passes < _armed[1]:
        return
    report = os.environ.get(REPORT_ENV)
    if report:
        with open(report, "a") as f:
            f.write(name + "\n")
    os.kill(os.getpid(), signal.SIGKILL)
