"""Agents and API keys (spec 2.10, 3.7); ``APIKeys`` also serves roles (2.11).

``Agents.update(name, ...)`` is the README's collection-level form (5.14); 0.7.2 has only
``Agent.update``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._values import AgentData, APIKeyData

if TYPE_CHECKING:
    from .._client import Client
    from .secrets import Secrets


class APIKey:
    """An API key of an agent or role; ``token`` is filled only in the create answer."""

    def __init__(self, client: Client, org: str, kind: str, owner: str,
                 data: APIKeyData) -> None:
        self._client = client
        self._where = (org, kind, owner)
        self.id = data.id
        self.name = data.name
        self.description = data.description
        self.token_hint = data.token_hint
        self.token = data.token
        self.created_at: datetime | None = data.created_at
        self.last_used_at: datetime | None = data.last_used_at
        self.revoked_at: datetime | None = data.revoked_at

    def revoke(self) -> None:
        self._client._send(_wire.revoke_api_key(*self._where, self.id)).close()

    delete = revoke

    def __repr__(self) -> str:
        return f"APIKey(id={self.id!r}, name={self.name!r}, token_hint={self.token_hint!r})"


class APIKeys:
    """The keys of one agent (``kind="agents"``) or role (``kind="roles"``)."""

    def __init__(self, client: Client, org: str, kind: str, owner: str) -> None:
        self._client = client
        self._org, self._kind, self._owner = org, kind, owner

    def _handle(self, d: dict[str, Any]) -> APIKey:
        return APIKey(self._client, self._org, self._kind, self._owner, _wire.parse_api_key(d))

    def list(self, *, after: str | None = None) -> Iterator[APIKey]:
        return self._client._paginate(
            lambda cursor: _wire.list_api_keys(self._org, self._kind, self._owner, after=cursor),
            self._handle, after)

    def get(self, key_id: str) -> APIKey:
        return self._handle(self._client._call(
            _wire.get_api_key(self._org, self._kind, self._owner, key_id)))

    def create(self, name: str) -> APIKey:
        return self._handle(self._client._call(
            _wire.create_api_key(self._org, self._kind, self._owner, name)))

    def delete(self, key_id: str) -> None:
        self._client._send(_wire.revoke_api_key(self._org, self._kind, self._owner,
                                                key_id)).close()


class Agent:
    """A non-human identity of an organization, addressed by ``name``."""

    def __init__(self, client: Client, org: str, data: AgentData) -> None:
        self._client = client
        self._org = org
        self.id = data.id
        self.name = data.name
        self.description = data.description
        self.metadata: dict[str, str] = dict(data.metadata)
        self.inline_policy = data.inline_policy
        self.inline_policy_updated_at: datetime | None = data.inline_policy_updated_at
        self.organization_id = data.organization_id
        self.created_by_type = data.created_by_type
        self.created_by = data.created_by
        self.created_by_name = data.created_by_name
        self.created_at: datetime | None = data.created_at
        self.last_used_at: datetime | None = data.last_used_at

    @property
    def api_keys(self) -> APIKeys:
        return APIKeys(self._client, self._org, "agents", self.name)

    @property
    def secrets(self) -> Secrets:
        """The agent's secrets (spec 2.14); sandboxes run as the agent get them."""
        from .secrets import Secrets

        return Secrets(self._client, _wire.agent_secrets_path(self._org, self.name))

    def update(self, *, description: str | None = None,
               metadata: Mapping[str, str] | None = None,
               inline_policy: str | None = None) -> Agent:
        """A new Agent from the server's answer (``inline_policy=""`` clears it)."""
        return Agents(self._client, self._org).update(
            self.name, description=description, metadata=metadata, inline_policy=inline_policy)

    def delete(self) -> None:
        self._client._send(_wire.delete_principal(self._org, "agents", self.name)).close()

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, id={self.id!r})"


class Agents:
    """The agents of one organization."""

    def __init__(self, client: Client, org: str) -> None:
        self._client = client
        self._org = org

    def _handle(self, d: dict[str, Any]) -> Agent:
        return Agent(self._client, self._org, _wire.parse_agent(d))

    def list(self, *, after: str | None = None) -> Iterator[Agent]:
        return self._client._paginate(
            lambda cursor: _wire.list_principals(self._org, "agents", after=cursor),
            self._handle, after)

    def get(self, name: str) -> Agent:
        return self._handle(self._client._call(_wire.get_principal(self._org, "agents", name)))

    def create(self, name: str, *, description: str = "",
               metadata: Mapping[str, str] | None = None) -> Agent:
        return self._handle(self._client._call(
            _wire.create_agent(self._org, name, description=description, metadata=metadata)))

    def update(self, name: str, *, description: str | None = None,
               metadata: Mapping[str, str] | None = None,
               inline_policy: str | None = None) -> Agent:
        return self._handle(self._client._call(_wire.update_agent(
            self._org, name, description=description, metadata=metadata,
            inline_policy=inline_policy)))

    def delete(self, name: str) -> None:
        self._client._send(_wire.delete_principal(self._org, "agents", name)).close()
