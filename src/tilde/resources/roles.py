"""Roles (spec 2.11, 3.7): non-human identities for CI and services, with API keys."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._values import RoleData
from .agents import APIKeys

if TYPE_CHECKING:
    from .._client import Client


class Role:
    def __init__(self, client: Client, org: str, data: RoleData) -> None:
        self._client = client
        self._org = org
        self.id = data.id
        self.name = data.name
        self.description = data.description
        self.organization_id = data.organization_id
        self.created_by_type = data.created_by_type
        self.created_by = data.created_by
        self.created_by_name = data.created_by_name
        self.created_at: datetime | None = data.created_at
        self.last_used_at: datetime | None = data.last_used_at

    @property
    def api_keys(self) -> APIKeys:
        return APIKeys(self._client, self._org, "roles", self.name)

    def delete(self) -> None:
        self._client._send(_wire.delete_principal(self._org, "roles", self.name)).close()

    def __repr__(self) -> str:
        return f"Role(name={self.name!r}, id={self.id!r})"


class Roles:
    def __init__(self, client: Client, org: str) -> None:
        self._client = client
        self._org = org

    def _handle(self, d: dict[str, Any]) -> Role:
        return Role(self._client, self._org, _wire.parse_role(d))

    def list(self, *, after: str | None = None) -> Iterator[Role]:
        return self._client._paginate(
            lambda cursor: _wire.list_principals(self._org, "roles", after=cursor),
            self._handle, after)

    def get(self, name: str) -> Role:
        return self._handle(self._client._call(_wire.get_principal(self._org, "roles", name)))

    def create(self, name: str, *, description: str = "") -> Role:
        return self._handle(self._client._call(
            _wire.create_role(self._org, name, description=description)))

    def delete(self, name: str) -> None:
        self._client._send(_wire.delete_principal(self._org, "roles", name)).close()
