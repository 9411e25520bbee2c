"""Secrets of a repository or an agent (spec 2.14, 3.8).

The same class serves both mount points; it is built with the base path
(``_wire.repository_secrets_path`` or ``_wire.agent_secrets_path``). Lists never carry
values: ``Secret.value`` sends ``GET {Sec}/{name}`` on first read and keeps the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from .. import _wire
from .._values import SecretData

if TYPE_CHECKING:
    from .._client import Client


class Secret:
    """One secret: its name and metadata; the value is fetched only when read."""

    def __init__(self, client: Client, base: str, data: SecretData) -> None:
        self._client = client
        self._base = base
        self.name = data.name
        self.created_by_type = data.created_by_type
        self.created_by = data.created_by
        self.created_at: datetime | None = data.created_at
        self.updated_at: datetime | None = data.updated_at
        self._value = data.value

    @property
    def value(self) -> str:
        if self._value is None:
            body = self._client._call(_wire.get_secret(self._base, self.name))
            self._value = _wire.parse_secret_value(body)
        return self._value

    def delete(self) -> None:
        self._client._send(_wire.delete_secret(self._base, self.name)).close()

    def __repr__(self) -> str:  # never the value
        return f"Secret(name={self.name!r})"


class Secrets:
    """The secrets under one base path (a repository's or an agent's)."""

    def __init__(self, client: Client, base: str) -> None:
        self._client = client
        self._base = base

    def list(self) -> Iterator[Secret]:
        """All secrets, without values (one request, sent on the first ``next``)."""

        def gen() -> Iterator[Secret]:
            body = self._client._call(_wire.list_secrets(self._base))
            for data in _wire.parse_results(body, _wire.parse_secret):
                yield Secret(self._client, self._base, data)

        return gen()

    def get(self, name: str) -> Secret:
        """Fetch one secret, value included."""
        body = self._client._call(_wire.get_secret(self._base, name)) or {}
        data = _wire.parse_secret({"key": name, **body})
        return Secret(self._client, self._base, data)

    def create(self, name: str, value: str) -> Secret:
        """Create or replace the secret ``name`` (upsert)."""
        body = self._client._call(_wire.put_secret(self._base, name, value)) or {}
        data = _wire.parse_secret({"key": name, **body, "value": value})
        return Secret(self._client, self._base, data)

    def delete(self, name: str) -> None:
        self._client._send(_wire.delete_secret(self._base, name)).close()
