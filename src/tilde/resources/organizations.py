"""Organizations (spec 2.1, 3.3)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._values import OrganizationData

if TYPE_CHECKING:
    from .._client import Client
    from .agents import Agents
    from .connectors import Connectors
    from .groups import Groups
    from .members import Members
    from .policies import Policies
    from .repositories import Repositories
    from .roles import Roles


class Organization:
    """An organization, addressed by its ``name`` (slug).

    Handles from ``Organizations.get/create/list`` are loaded; one from
    ``tilde.organization(name)`` sends ``GET /organizations/{name}`` on the first read of
    ``id``, ``display_name`` or ``created_at``.
    """

    def __init__(self, client: Client, name: str, data: OrganizationData | None = None) -> None:
        self._client = client
        self.name = data.name if data is not None and data.name else name
        self._data = data

    def _loaded(self) -> OrganizationData:
        if self._data is None:
            self._data = _wire.parse_organization(
                self._client._call(_wire.get_organization(self.name)))
        return self._data

    @property
    def id(self) -> str:
        return self._loaded().id

    @property
    def display_name(self) -> str:
        return self._loaded().display_name

    @property
    def created_at(self) -> datetime | None:
        return self._loaded().created_at

    @property
    def repositories(self) -> Repositories:
        from .repositories import Repositories

        return Repositories(self._client, self.name)

    @property
    def connectors(self) -> Connectors:
        from .connectors import Connectors

        return Connectors(self._client, self.name)

    @property
    def members(self) -> Members:
        from .members import Members

        return Members(self._client, self.name)

    @property
    def agents(self) -> Agents:
        from .agents import Agents

        return Agents(self._client, self.name)

    @property
    def roles(self) -> Roles:
        from .roles import Roles

        return Roles(self._client, self.name)

    @property
    def groups(self) -> Groups:
        from .groups import Groups

        return Groups(self._client, self.name)

    @property
    def policies(self) -> Policies:
        from .policies import Policies

        return Policies(self._client, self.name)

    def delete(self) -> None:
        self._client._send(_wire.delete_organization(self.name)).close()

    def __repr__(self) -> str:
        return f"Organization(name={self.name!r})"


class Organizations:
    """The organizations the caller can see."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _handle(self, d: dict[str, Any]) -> Organization:
        data = _wire.parse_organization(d)
        return Organization(self._client, data.name, data)

    def list(self) -> Iterator[Organization]:
        """All organizations (one request, sent on the first ``next``)."""

        def gen() -> Iterator[Organization]:
            body = self._client._call(_wire.list_organizations())
            yield from _wire.parse_results(body, self._handle)

        return gen()

    def get(self, name: str) -> Organization:
        return self._handle(self._client._call(_wire.get_organization(name)))

    def create(self, name: str, display_name: str) -> Organization:
        return self._handle(self._client._call(_wire.create_organization(name, display_name)))

    def delete(self, name: str) -> None:
        self._client._send(_wire.delete_organization(name)).close()

    def connectors(self, org: str) -> Connectors:
        """README name (5.14): the connectors of organization ``org``; sends no request."""
        from .connectors import Connectors

        return Connectors(self._client, org)

    # README names (5.14): sub-collections of organization ``org``; they send no request.
    def members(self, org: str) -> Members:
        from .members import Members

        return Members(self._client, org)

    def agents(self, org: str) -> Agents:
        from .agents import Agents

        return Agents(self._client, org)

    def roles(self, org: str) -> Roles:
        from .roles import Roles

        return Roles(self._client, org)

    def groups(self, org: str) -> Groups:
        from .groups import Groups

        return Groups(self._client, org)

    def policies(self, org: str) -> Policies:
        from .policies import Policies

        return Policies(self._client, org)
