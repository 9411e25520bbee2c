"""Organization members (spec 2.2, 3.3) plus the README's ``add(user_id=, role=)`` and
``member.role`` (5.14)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._values import MemberData
from ..exceptions import NotFoundError

if TYPE_CHECKING:
    from .._client import Client


class Member:
    """One member of an organization. ``role`` is this server's extra field (5.15)."""

    def __init__(self, client: Client, org: str, data: MemberData) -> None:
        self._client = client
        self._org = org
        self.user_id = data.user_id
        self.username = data.username
        self.full_name = data.full_name
        self.email = data.email
        self.organization_id = data.organization_id
        self.joined_at: datetime | None = data.joined_at
        self.role = data.role

    def delete(self) -> None:
        self._client._send(_wire.remove_member(self._org, self.user_id)).close()

    def __repr__(self) -> str:
        return f"Member(user_id={self.user_id!r}, username={self.username!r}, role={self.role!r})"


class Members:
    """The members of one organization (a single-shot list; no per-member GET exists)."""

    def __init__(self, client: Client, org: str) -> None:
        self._client = client
        self._org = org

    def _handle(self, d: dict[str, Any]) -> Member:
        return Member(self._client, self._org, _wire.parse_member(d))

    def list(self) -> Iterator[Member]:
        def gen() -> Iterator[Member]:
            body = self._client._call(_wire.list_members(self._org))
            yield from _wire.parse_results(body, self._handle)

        return gen()

    def get(self, user_id: str) -> Member:
        """The member whose ``user_id`` or ``username`` is ``user_id`` (client-side lookup)."""
        for m in self.list():
            if user_id in (m.user_id, m.username):
                return m
        raise NotFoundError(404, message=f"member {user_id!r} not found")

    def create(self, username: str) -> Member:
        self._client._send(_wire.add_member(self._org, username)).close()
        return self.get(username)

    def add(self, *, user_id: str | None = None, username: str | None = None,
            role: str | None = None) -> Member:
        """README form: add a user (by id or name) with an organization role."""
        if not user_id and not username:
            raise ValueError("give user_id or username")
        self._client._send(_wire.add_member(self._org, username, user_id=user_id,
                                            role=role)).close()
        return self.get(user_id or username or "")

    def delete(self, user_id: str) -> None:
        self._client._send(_wire.remove_member(self._org, user_id)).close()

    def remove(self, user_id: str) -> None:
        """Alias of ``delete``."""
        self.delete(user_id)
