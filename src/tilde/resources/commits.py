"""Commits: history, one commit, its diff, revert (spec 2.7, 3.5).

Commits from ``list``/``get`` are loaded; the handle returned by ``revert`` holds only the
new id and sends ``GET {R}/commits/{id}`` once, on its first property read or ``diff``.

Ids are passed through as given: tilde-server also takes a unique prefix of at least 4 hex
digits (docs/api.md, "Short commit ids"; 409 when ambiguous), and ``get`` answers the full
id, so a ``Commit`` from ``get`` always carries it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._values import CommitData, ListingEntry
from .objects import ReadOnlyObjects

if TYPE_CHECKING:
    from .._client import Client


class Commit:
    def __init__(self, client: Client, org: str, repo: str, commit_id: str,
                 data: CommitData | None = None) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self.id = commit_id
        self._data = data

    def _loaded(self) -> CommitData:
        if self._data is None:
            self._data = _wire.parse_commit(self._client._call(
                _wire.get_commit(self._org, self._repo, self.id)))
        return self._data

    @property
    def committer(self) -> str:
        return self._loaded().committer

    @property
    def committer_type(self) -> str:
        return self._loaded().committer_type

    @property
    def committer_id(self) -> str:
        return self._loaded().committer_id

    @property
    def message(self) -> str:
        return self._loaded().message

    @property
    def meta_range_id(self) -> str:
        return self._loaded().meta_range_id

    @property
    def creation_date(self) -> datetime | None:
        return self._loaded().creation_date

    @property
    def parents(self) -> list[str]:
        return list(self._loaded().parents)

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._loaded().metadata)

    @property
    def object_count(self) -> int | None:
        return self._loaded().object_count

    @property
    def total_size(self) -> int | None:
        return self._loaded().total_size

    @property
    def is_stale(self) -> bool:
        return self._loaded().is_stale

    @property
    def objects(self) -> ReadOnlyObjects:
        """The objects as this commit left them: list, get and head send ``ref=<id>``.

        0.7.2 sent no ``ref`` here, so its reads showed the latest state whatever the commit.
        """
        return ReadOnlyObjects(self._client, self._org, self._repo, ref=self.id)

    def revert(self, *, message: str | None = None,
               metadata: dict[str, str] | None = None) -> Commit:
        """Commit the inverse of this commit; returns an unloaded handle of the new one."""
        body = self._client._call(_wire.revert_commit(
            self._org, self._repo, self.id, message=message, metadata=metadata))
        if not isinstance(body, dict) or "commit_id" not in body:
            raise KeyError("commit_id")
        return Commit(self._client, self._org, self._repo, _wire.parse_commit_id(body))

    def diff(self, *, prefix: str | None = None, after: str | None = None,
             amount: int | None = None, delimiter: str | None = None
             ) -> Iterator[ListingEntry]:
        """Changes this commit introduced, against its first parent (the empty tree for a
        root commit); each entry's ``status`` says what happened to the path."""
        parents = self._loaded().parents
        left = parents[0] if parents else ""
        return self._client._paginate(
            lambda cursor: _wire.diff(self._org, self._repo, left=left, right=self.id,
                                      prefix=prefix, delimiter=delimiter, after=cursor,
                                      amount=amount),
            _wire.parse_listing_entry, after)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Commit):
            return NotImplemented
        return (self._org, self._repo, self.id) == (other._org, other._repo, other.id)

    def __hash__(self) -> int:
        return hash((self._org, self._repo, self.id))

    def __repr__(self) -> str:
        return f"Commit(id={self.id!r})"


class Commits:
    """History of one repository."""

    def __init__(self, client: Client, org: str, repo: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo

    def _handle(self, d: dict[str, Any]) -> Commit:
        data = _wire.parse_commit(d)
        return Commit(self._client, self._org, self._repo, data.id, data)

    def list(self, *, ref: str | None = None, after: str | None = None,
             amount: int | None = None) -> Iterator[Commit]:
        """Commits newest first (``amount`` is the page size)."""
        return self._client._paginate(
            lambda cursor: _wire.log(self._org, self._repo, ref=ref, after=cursor,
                                     amount=amount),
            self._handle, after)

    def get(self, commit_id: str) -> Commit:
        """The commit ``commit_id`` names, with its full id (a prefix works on tilde-server)."""
        return self._handle(self._client._call(
            _wire.get_commit(self._org, self._repo, commit_id)))
