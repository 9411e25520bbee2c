"""Sessions: transactions over a repository (spec 2.4, 3.4).

1. ``commit`` answers 202 when a person must approve: a ``UserWarning`` holding ``web_url``
   is emitted, the session counts as finished, and (by default) the client polls
   ``HEAD .../approve`` every 2 s until it answers 404, then returns "".
2. The context manager rolls back on exit unless a commit or rollback succeeded, on clean
   and exceptional exit alike (also after a commit that raised). On exceptional exit a
   failing rollback does not hide the original error.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from .. import _wire
from .._values import CommitResult, EntryRecord
from ..exceptions import NotFoundError, TildeError
from .objects import SessionObjects

if TYPE_CHECKING:
    from types import TracebackType

    from .._client import Client


class Session:
    def __init__(self, client: Client, org: str, repo: str, session_id: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self._session_id = session_id
        self._finished = False

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def objects(self) -> SessionObjects:
        return SessionObjects(self._client, self._org, self._repo, self._session_id)

    def uncommitted(self, *, prefix: str | None = None, after: str | None = None,
                    amount: int | None = None) -> Iterator[EntryRecord]:
        """Staged changes of this session (``amount`` is the page size)."""
        return self._client._paginate(
            lambda cursor: _wire.list_changes(self._org, self._repo,
                                              session_id=self._session_id, prefix=prefix,
                                              after=cursor, amount=amount),
            _wire.parse_entry_record, after)

    def _post_commit(self, message: str, metadata: Mapping[str, str] | None
                     ) -> tuple[int, object]:
        response = self._client._send(_wire.commit_session(
            self._org, self._repo, self._session_id, message, metadata))
        # The commit answer is read as JSON directly (1.5): a bad body raises a decode error.
        return response.status_code, json.loads(response.content)

    def commit(self, message: str, *, metadata: dict[str, str] | None = None,
               block_for_approval: bool = True) -> str | None:
        """Commit the staged changes; returns the new commit id.

        When approval is required: returns "" after waiting it out, or None right away
        with ``block_for_approval=False``.
        """
        status, body = self._post_commit(message, metadata)
        self._finished = True
        if status != 202:
            return _wire.parse_commit_id(body)
        web_url = _wire.parse_web_url(body)
        # 0.7.2's wording, word for word: scripts filter warnings on it
        warnings.warn(f"Approval required - review and approve at: {web_url}", UserWarning,
                      stacklevel=2)
        if not block_for_approval:
            return None
        poll = _wire.approval_poll(self._org, self._repo, self._session_id)
        while True:
            time.sleep(_wire.APPROVAL_POLL_INTERVAL)
            try:
                self._client._send(poll).close()
            except NotFoundError:
                return ""

    def commit_result(self, message: str, *,
                      metadata: dict[str, str] | None = None) -> CommitResult:
        """Commit without polling or warning; says whether approval is pending."""
        status, body = self._post_commit(message, metadata)
        self._finished = True
        if status == 202:
            return CommitResult(status="approval_required", web_url=_wire.parse_web_url(body))
        return CommitResult(status="committed", commit_id=_wire.parse_commit_id(body))

    def rollback(self) -> None:
        """Discard the staged changes and close the session."""
        self._client._send(_wire.rollback_session(self._org, self._repo,
                                                  self._session_id)).close()
        self._finished = True

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._finished:
            return
        if exc_type is None:
            self.rollback()
            return
        try:
            self.rollback()
        except TildeError:
            pass  # the error that ended the block matters more

    def __repr__(self) -> str:
        return f"Session({self._org}/{self._repo}, session_id={self._session_id!r})"
