"""Crash recovery: what a daemon that died in this cache directory left (journal.py).

    recovery = Recovery(remote, staging, uploader, local, cache_dir / "unrecovered")
    sid = resume_id or await recovery.crashed_session(dead) or await remote.create_session()
    await recovery.replay(dead, sid, changed)     # before the mount serves
    recovery.report   # {"resumed_session", "replayed", "set_aside", "error"?}

Subtleties (see journal.py subtlety 3 for the rules):
1. A plain mount resumes the newest dead mount's session of the same repository that is
   still open and holds changes or journaled files.
2. Replayed files become dirty staged files of ``local`` and are uploaded (waited for)
   before the mount serves; a failed re-upload leaves them staged, journaled and dirty.
3. A journal that cannot be replayed is set aside and reported, never dropped.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from tilde import exceptions as exc

from . import crashpoints, journal
from .local_state import LocalState
from .upload import StagedFile, Staging, Uploader

if TYPE_CHECKING:
    from .remote import Remote

log = logging.getLogger("tilde_mount.fs")


class Recovery:
    def __init__(self, remote: Remote, staging: Staging, uploader: Uploader,
                 local: LocalState, unrecovered: Path) -> None:
        self._remote = remote
        self._staging = staging
        self._uploader = uploader
        self._local = local
        self._unrecovered = unrecovered
        self.report: dict[str, Any] = {"resumed_session": None, "replayed": [],
                                       "set_aside": []}

    async def _session_changes(self, sid: str) -> int | None:
        """None if ``sid`` is not open any more; else whether it holds changes (0/1)."""
        try:
            records, _ = await self._remote.list_changes(sid, amount=1)
        except exc.APIError as e:
            if e.status_code in (400, 404, 409, 410):
                return None
            raise
        return len(records)

    async def crashed_session(self, dead: list[journal.DeadMount]) -> str | None:
        """The session a plain mount resumes (subtlety 1), or None."""
        mine = [d for d in dead if d.repository == self._remote.repository and d.session_id]
        for d in sorted(mine, key=lambda d: d.directory.stat().st_mtime, reverse=True):
            assert d.session_id is not None
            changes = await self._session_changes(d.session_id)
            if changes is not None and (changes or d.files):
                log.warning("resuming session %s of a mount that died in this cache "
                            "directory, with %d file(s) it had not uploaded",
                            d.session_id, len(d.files))
                self.report["resumed_session"] = d.session_id
                return d.session_id
        return None

    async def replay(self, dead: list[journal.DeadMount], sid: str | None,
                     changed: Callable[[str], None]) -> None:
        """Replay journals of this repository and session ``sid`` (``changed`` is told of
        every path that appears); set the others aside."""
        replayed: list[StagedFile] = []
        for d in dead:
            if not d.files:  # nothing unsent: its session was resumed or is not ours
                await trio.to_thread.run_sync(shutil.rmtree, d.directory, True,
                                              limiter=self._staging.limiter)
                continue
            if d.repository != self._remote.repository or d.session_id != sid or sid is None:
                where = await trio.to_thread.run_sync(journal.set_aside, d, self._unrecovered,
                                                      limiter=self._staging.limiter)
                log.warning("a mount that died here left %d file(s) for session %s of %s "
                            "that this mount cannot replay (another repository or "
                            "session, or the session is gone): kept under %s",
                            len(d.files), d.session_id, d.repository, where)
                self.report["set_aside"].append(
                    {"directory": str(where), "session_id": d.session_id,
                     "repository": d.repository, "files": [f.path for f in d.files]})
                continue
            for jf in d.files:
                sf = await self._staging.adopt(jf)
                old = self._local.files.pop(sf.path, None)
                if old is not None:  # two dead daemons journaled one path: the newer wins
                    await self._staging.discard(old)
                self._local.files[sf.path] = sf
                changed(sf.path)
                replayed.append(sf)
                crashpoints.reached(crashpoints.RECOVERY_ADOPTED)
            await trio.to_thread.run_sync(shutil.rmtree, d.directory, True,
                                          limiter=self._staging.limiter)
        if not replayed:
            return
        self.report["replayed"] = sorted(sf.path for sf in replayed)
        damaged = [sf.path for sf in replayed if sf.damaged]
        try:
            await self._uploader.sync([sf for sf in replayed if not sf.damaged])
            log.warning("re-uploaded %d file(s) a mount that died here had not uploaded "
                        "into session %s%s", len(replayed) - len(damaged), sid,
                        f"; {len(damaged)} damaged file(s) kept: {damaged}" if damaged else "")
        except Exception as e:
            log.warning("re-uploading %d journaled file(s) failed (%s): they stay staged "
                        "and journaled, and are retried", len(replayed), e)
            self.report["error"] = str(e)
