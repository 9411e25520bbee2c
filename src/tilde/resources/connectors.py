"""Connectors: organization-level sources of imports, attached to repositories (2.15, 3.8).

``Connectors.create`` takes the 0.7.2 form ``(name, type, source_uri, config)`` and the
README form ``(name, type, config)`` (spec 5.14): a mapping in third place is the config,
and the server derives the source URI from it. ``config`` is write-only: it is never read
back, so a ``Connector`` carries no credentials.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._values import ConnectorData

if TYPE_CHECKING:
    from .._client import Client


class Connector:
    def __init__(self, client: Client, org: str, data: ConnectorData) -> None:
        self._client = client
        self._org = org
        self.id = data.id
        self.name = data.name
        self.type = data.type
        self.source_uri = data.source_uri
        self.disabled = data.disabled
        self.public_key: str | None = data.public_key
        self.created_at: datetime | None = data.created_at

    def delete(self) -> None:
        self._client._send(_wire.delete_connector(self._org, self.id)).close()

    def __repr__(self) -> str:
        return f"Connector(id={self.id!r}, name={self.name!r}, type={self.type!r})"


class Connectors:
    """The connectors of one organization."""

    def __init__(self, client: Client, org: str) -> None:
        self._client = client
        self._org = org

    def _handle(self, d: dict[str, Any]) -> Connector:
        return Connector(self._client, self._org, _wire.parse_connector(d))

    def list(self) -> Iterator[Connector]:
        def gen() -> Iterator[Connector]:
            body = self._client._call(_wire.list_connectors(self._org))
            yield from _wire.parse_results(body, self._handle)

        return gen()

    def get(self, connector_id: str) -> Connector:
        return self._handle(self._client._call(_wire.get_connector(self._org, connector_id)))

    def create(self, name: str, type: str, source_uri: str | Mapping[str, Any] = "",
               config: Mapping[str, Any] | None = None) -> Connector:
        """``create(name, type, source_uri, config)``, or ``create(name, type, config)``."""
        if isinstance(source_uri, Mapping):
            if config is not None:
                raise TypeError("give the config once: create(name, type, source_uri, config) "
                                "or create(name, type, config)")
            uri, cfg = "", source_uri
        else:
            uri, cfg = source_uri, config or {}
        return self._handle(self._client._call(_wire.create_connector(
            self._org, name, type, uri, cfg)))

    def delete(self, connector_id: str) -> None:
        self._client._send(_wire.delete_connector(self._org, connector_id)).close()


class RepositoryConnectors:
    """The connectors attached to one repository."""

    def __init__(self, client: Client, org: str, repo: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo

    def list(self) -> Iterator[Connector]:
        def gen() -> Iterator[Connector]:
            body = self._client._call(_wire.list_repository_connectors(self._org, self._repo))
            for data in _wire.parse_results(body, _wire.parse_connector):
                yield Connector(self._client, self._org, data)

        return gen()

    def attach(self, connector_id: str) -> None:
        self._client._send(_wire.attach_connector(self._org, self._repo, connector_id)).close()

    def detach(self, connector_id: str) -> None:
        self._client._send(_wire.detach_connector(self._org, self._repo, connector_id)).close()
