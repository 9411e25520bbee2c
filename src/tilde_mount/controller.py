"""The control plane: what ``tilde-mount commit/status/rollback/unmount`` and the
on-unmount action do to a running mount, with one typed result each.

    controller = Controller(fs, remote, config, cache_dir, request_stop=...)
    ControlServer(mountpoint, controller.handle)      # control.py carries the JSON
    ... on the way out: await controller.finish(ready=...)

Subtleties:
1. One lock, one sync: `Filesystem.commit`/`rollback` hold the filesystem's control lock
   and sync inside it; this module adds no lock of its own. Progress lines are read from
   `Filesystem.progress()` by a reporter task running beside the commit.
2. Every outcome of a commit is a `CommitResult`, built in exactly one place
   (`_commit`) from the filesystem's return or exception; the CLI prints its ``message``
   as it is (no prefix stripped or added on the way).
3. A failure changes nothing (the filesystem guarantees it): the result says how to go on.
   A commit that landed but whose fresh session could not be opened is a success with a
   warning: the mount has no session until the next commit, rollback or sync opens one.
4. ``unmount`` refuses while files are open for writing (as umount says "target is
   busy"), unless forced: their writers would get ENOTCONN on every later write.
5. ``status`` always answers with what the mount knows locally (pending and damaged
   files, what a crashed mount left); the server's part may be missing, with ``error``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import trio

from tilde import exceptions as texc

from . import control
from .errors import root_cause
from .fs import Filesystem, FreshSessionError, UpdateConflict, UpdateRefused
from .options import MountConfig, format_size
from .upload import DamagedFiles

log = logging.getLogger("tilde_mount")


@dataclass(frozen=True)
class CommitResult:
    """What a commit did. ``status``: committed | approval_required | nothing_to_commit |
    failed; ``code`` (failed): conflict | refused | damaged | unreachable | error |
    internal; ``session_id`` is the session the mount is on afterwards."""

    status: str
    session_id: str | None
    committed_session: str | None = None
    commit_id: str | None = None
    web_url: str | None = None
    code: str | None = None
    error: str | None = None
    recover: str | None = None
    warning: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def message(self) -> str:
        """The one line a person reads for a failed commit."""
        what = f"conflict: {self.error}" if self.code == "conflict" else self.error
        return f"commit failed: {what}. {self.recover or ''}".strip()

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _cause(error: BaseException) -> BaseException:
    cause = root_cause(error)
    if isinstance(error, BaseExceptionGroup) and not isinstance(cause, texc.TildeError):
        for leaf in error.exceptions:
            if isinstance(leaf, DamagedFiles):
                return leaf
    return cause


class Controller:
    """Commit, rollback, status and the unmount protocol of one mount."""

    def __init__(self, fs: Filesystem, remote: Any, config: MountConfig, cache_dir: str, *,
                 request_stop: Callable[[], None], mounted: Callable[[], bool]) -> None:
        self.fs = fs
        self.remote = remote
        self.config = config
        self.cache_dir = cache_dir
        self._request_stop = request_stop
        self._mounted = mounted
        self.stopping = False
        self.ready = False
        #: the unmount action's result, once applied (by `unmount` or by `finish`)
        self.final: dict[str, Any] | None = None
        self._final_ready = trio.Event()

    # ------------------------------------------------------------------ requests
    async def handle(self, req: dict[str, Any], send: control.Send) -> dict[str, Any]:
        """control.py's handler: one request in, one JSON result (or ControlError) out."""
        op = req.get("op")
        if op == "ping":
            return {"pid": os.getpid()}
        if op == "status":
            return await self.status()
        if op in ("commit", "rollback") and not self.config.writable:
            raise control.ControlError(
                f"{self.config.mountpoint} is a read-only mount; there is no session to "
                f"{op}", "read_only")
        if self.stopping and op in ("commit", "rollback"):
            raise control.ControlError(f"{self.config.mountpoint} is being unmounted",
                                       "stopping")
        if op == "commit":
            message = req.get("message")
            if not isinstance(message, str) or not message:
                raise control.ControlError("a commit message is required (-m)", "usage")
            result = await self.commit(message, req.get("metadata") or None, send)
            if result.failed:
                raise control.ControlError(result.message, result.code or "error",
                                           {"session_id": result.session_id})
            return result.to_json()
        if op == "rollback":
            return await self.rollback()
        if op == "update":
            if self.stopping:
                raise control.ControlError(f"{self.config.mountpoint} is being unmounted",
                                           "stopping")
            return await self.update()
        if op == "unmount":
            return await self.unmount(req, send)
        raise control.ControlError(f"unknown request {op!r}", "protocol")

    async def commit(self, message: str, metadata: dict[str, str] | None,
                     progress: control.Send | None = None) -> CommitResult:
        """Commit, reporting upload progress meanwhile; never raises (subtlety 2)."""
        async with trio.open_nursery() as nursery:
            if progress is not None:
                nursery.start_soon(self._report, progress)
            try:
                return await self._commit(message, metadata)
            finally:
                nursery.cancel_scope.cancel()

    async def _commit(self, message: str, metadata: dict[str, str] | None) -> CommitResult:
        sid = self.fs.session_id
        recover = (f"Nothing was lost: the changes are in session {sid} and in the mount" +
                   ("" if self._mounted() else
                    f"; resume with `tilde-mount {self.config.repo_path} MOUNTPOINT "
                    f"--session {sid}`"))

        def failed(code: str, error: str, how: str = recover) -> CommitResult:
            return CommitResult("failed", self.fs.session_id, code=code, error=error,
                                recover=how)

        try:
            outcome = await self.fs.commit(message, metadata)
        except FreshSessionError as fresh:
            log.warning("session %s committed (%s), but no fresh session: %s", sid,
                        fresh.outcome.commit_id or fresh.outcome.web_url, fresh.cause)
            return self._landed(fresh.outcome, self.fs.last_committed_session, warning=(
                f"no fresh session could be opened ({fresh.cause}): writes stay staged in "
                "the mount until the next commit, rollback or sync opens one"))
        except BaseException as raw:
            e = _cause(raw)
            if not isinstance(e, Exception):
                raise
            if isinstance(e, texc.ConflictError):
                log.warning("commit of session %s: conflict: %s", sid, e.message)
                return failed("conflict", e.message or str(e),
                              f"Nothing was lost: the changes stay in the mount (session "
                              f"{sid}); see docs/troubleshooting.md (conflicts), then run "
                              "`tilde-mount commit` again, or `tilde-mount rollback` to "
                              "discard them")
            if isinstance(e, texc.NotFoundError) and sid is not None:
                log.warning("commit of session %s: the session is gone: %s", sid, e)
                return failed("session_gone", f"session {sid} is gone ({e.message or e}): "
                              "it was rolled back, expired or committed elsewhere",
                              "Nothing was committed; what had been uploaded went with the "
                              "session, files not yet uploaded are still staged under "
                              f"{self.cache_dir}; `tilde-mount rollback` starts afresh")
            if isinstance(e, texc.BadRequestError) and e.code == "no_changes":
                return CommitResult("nothing_to_commit", self.fs.session_id)
            if isinstance(e, DamagedFiles):
                log.warning("commit of session %s refused: %s", sid, e)
                return failed("damaged", str(e), "Nothing was committed; the other changes "
                                                 f"stay in session {sid}")
            if isinstance(e, texc.BadRequestError):
                log.warning("commit of session %s refused: %s", sid, e)
                return failed("refused", e.message or str(e))
            if isinstance(e, texc.TransportError | texc.ServerError):
                log.warning("commit of session %s failed: %s", sid, e)
                return failed("unreachable", f"cannot reach {self.config.endpoint}: {e}",
                              recover + "; retry once the server answers")
            if isinstance(e, texc.TildeError):
                log.warning("commit of session %s failed: %s", sid, e)
                return failed("error", str(e))
            log.error("commit of session %s failed", sid, exc_info=e)
            return failed("internal", f"{type(e).__name__}: {e}")
        return self._landed(outcome, self.fs.last_committed_session)

    def _landed(self, outcome: Any, sid: str | None, warning: str | None = None
                ) -> CommitResult:
        log.info("committed session %s: %s", sid, outcome)
        if outcome.status == "approval_required":
            return CommitResult("approval_required", self.fs.session_id, committed_session=sid,
                                web_url=outcome.web_url, warning=warning)
        return CommitResult("committed", self.fs.session_id, committed_session=sid,
                            commit_id=outcome.commit_id, warning=warning)

    async def _report(self, progress: control.Send) -> None:
        """Pending files and bytes sent, twice a second, while a commit runs."""
        sent_at_start = self.fs.progress().bytes_sent
        started = trio.current_time()
        while True:
            await trio.sleep(0.5)
            p = self.fs.progress()
            done = max(0, p.bytes_sent - sent_at_start)
            rate = done / max(trio.current_time() - started, 1e-3)
            if p.dirty_files:
                text = (f"uploading: {p.dirty_files} file(s) pending "
                        f"({format_size(p.bytes_pending)}), {format_size(done)} sent "
                        f"({format_size(rate)}/s)")
            else:
                text = "committing"
            await progress({"message": text, "pending": p.dirty_files,
                            "bytes_pending": p.bytes_pending, "bytes_sent": done})

    async def rollback(self) -> dict[str, Any]:
        try:
            # fs.rollback awaits the kernel invalidation (on_forget) before returning
            await self.fs.rollback()
        except Exception as raw:
            e = _cause(raw)
            log.warning("rollback failed: %s", e)
            raise control.ControlError(f"rollback failed: {e}; nothing was discarded",
                                       "rollback") from e
        return {"status": "rolled_back", "session_id": self.fs.session_id}

    async def update(self) -> dict[str, Any]:
        """`tilde-mount update`: onto the latest commit, or a clear refusal (nothing lost)."""
        try:
            outcome = await self.fs.update()
        except UpdateConflict as e:
            raise control.ControlError(
                f"not updated: {e}; nothing changed (commit or roll back those paths "
                "first)", "conflict", {"conflicts": e.paths}) from e
        except UpdateRefused as e:
            raise control.ControlError(f"not updated: {e}", "refused") from e
        except Exception as raw:
            e2 = _cause(raw)
            log.warning("update failed: %s", e2)
            raise control.ControlError(f"update failed: {e2}; nothing was lost",
                                       "update") from e2
        return {"status": outcome.status, "commit_id": outcome.commit_id,
                "session_id": self.fs.session_id}

    async def status(self) -> dict[str, Any]:
        st = dict(await self.fs.status())
        c = self.config
        st.setdefault("repo", st.get("repository") or c.repo_path)
        st.setdefault("endpoint", c.endpoint)
        st.update(mountpoint=c.mountpoint, read_only=c.read_only, commit_id=c.commit_id,
                  on_unmount=c.on_unmount, pid=os.getpid(), log_file=c.log_file,
                  cache_dir=self.cache_dir, recovery=self.fs.recovery)
        st.setdefault("session_id", self.fs.session_id)
        return st

    # ------------------------------------------------------------------ unmount
    async def unmount(self, req: dict[str, Any], send: control.Send) -> dict[str, Any]:
        """`tilde-mount unmount`: act while still mounted, then unmount and report."""
        if not self.stopping and self.final is None:
            writers = self.fs.open_writers()
            if writers and not req.get("force"):
                shown = ", ".join(repr(p) for p in writers[:5])
                raise control.ControlError(
                    f"not unmounted: {len(writers)} file(s) open for writing ({shown}"
                    f"{' ...' if len(writers) > 5 else ''}): target is busy; close them and "
                    "try again (--force unmounts anyway: their writers then fail)", "busy",
                    {"open_for_writing": writers})
            message = req.get("message") or self.config.unmount_message
            result = await self.apply_action(self.config.on_unmount, message, send)
            outcome = result.get("outcome", {})
            if outcome.get("status") == "failed":
                raise control.ControlError(
                    f"not unmounted: {result['action']} failed: "
                    f"{outcome.get('message') or outcome.get('error')}; "
                    f"{self.config.mountpoint} is still mounted and nothing was lost",
                    "unmount_failed", {"session_id": self.fs.session_id,
                                       "cause": outcome.get("code", "error")})
            self.final = result
            await send({"message": "unmounting"})
            self._request_stop()
        await self._final_ready.wait()
        assert self.final is not None
        return dict(self.final)

    async def apply_action(self, action: str, message: str,
                           progress: control.Send | None) -> dict[str, Any]:
        """Flush, then commit / roll back / keep; never raises (the result says what
        happened and how to recover)."""
        if not self.config.writable:
            return {"action": "none", "outcome": {}}
        if action == "commit":
            result = await self.commit(message, None, progress)
            outcome = result.to_json()
            if result.failed:
                outcome["message"] = result.message
            return {"action": "commit", "outcome": outcome}
        try:
            await self.fs.sync()
        except Exception as raw:
            e = _cause(raw)
            log.warning("flushing before %s failed: %s", action, e)
            return {"action": action, "outcome": {
                "status": "failed", "error": f"upload failed: {e}",
                "recover": f"Staged data stays journaled under {self.cache_dir}; whatever "
                           f"was uploaded is in session {self.fs.session_id}."}}
        if action == "keep":
            log.info("unmount: session %s kept open", self.fs.session_id)
            return {"action": "keep", "outcome": {"session_id": self.fs.session_id}}
        try:
            await self.fs.rollback()
        except Exception as raw:
            log.warning("rollback failed: %s", _cause(raw))
            return {"action": "rollback", "outcome": {"status": "failed",
                                                      "error": str(_cause(raw))}}
        return {"action": "rollback", "outcome": {"status": "rolled_back"}}

    async def finish(self) -> None:
        """After the FUSE loop ended: run the on-unmount action unless `unmount` did,
        settle the fresh session, close the filesystem."""
        self.stopping = True
        if not self.ready:
            self.final = {"action": "none", "outcome": {}}
        if self.final is None:
            self.final = await self.apply_action(self.config.on_unmount,
                                                 self.config.unmount_message, None)
            outcome = self.final.get("outcome") or {}
            if outcome.get("status") == "failed":
                log.error("on unmount: %s failed: %s. %s", self.final.get("action"),
                          outcome.get("error"), outcome.get("recover", ""))
        try:
            await self._settle_fresh_session()
        except Exception as raw:
            e = _cause(raw)
            if not isinstance(e, texc.TildeError):  # a bug: with its traceback
                log.exception("settling the session after unmount failed")
            else:  # the server went away after the action: the fresh session stays open
                log.warning("settling the session after unmount failed: %s", e)
        try:
            with trio.move_on_after(30):
                await self.fs.close()
        except Exception:
            log.exception("closing the filesystem failed")
        self._final_ready.set()

    async def discard_created_session(self) -> None:
        """Startup failed after we created a session: do not leave it open."""
        sid = self.fs.session_id
        if self.fs.created_session and sid:
            try:
                with trio.move_on_after(10):
                    await self.remote.rollback(sid)
            except Exception as e:
                log.warning("could not discard session %s: %s", sid, e)

    async def _settle_fresh_session(self) -> None:
        """After commit/rollback on unmount, the fs sits on a fresh session: write-backs
        that raced with the unmount are committed too, an empty session is discarded."""
        if not self.ready:
            await self.discard_created_session()
            return
        final = self.final or {}
        action, outcome = final.get("action"), final.get("outcome") or {}
        if action not in ("commit", "rollback") or outcome.get("status") not in (
                "committed", "approval_required", "nothing_to_commit", "rolled_back"):
            return
        if action == "commit" and outcome.get("status") == "committed":
            await self.fs.sync()
            if self.fs.has_changes_pending() or await self.fs.session_has_changes():
                log.info("changes arrived during unmount; committing them too")
                more = await self.commit(self.config.unmount_message, None)
                outcome["late_commit"] = more.to_json()
                if more.status != "committed":
                    return
        sid = self.fs.session_id
        if sid:
            try:
                await self.remote.rollback(sid)
                log.info("discarded the empty session %s", sid)
            except Exception as e:
                log.warning("could not discard the empty session %s: %s", sid, e)
