"""Sandbox triggers: start a sandbox when a commit touches matching paths (spec 2.9, 3.6).

The client passes ``conditions`` and ``sandbox_config`` through as the JSON the caller
builds (lists of dicts and a dict) and parses answers into ``SandboxTriggerCondition`` /
``SandboxTriggerConfig``. ``update`` and ``toggle`` return a new object (as 0.7.2 does);
``refresh`` updates this one in place.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._values import (
    SandboxTriggerCondition,
    SandboxTriggerConfig,
    SandboxTriggerData,
    SandboxTriggerRunData,
)

if TYPE_CHECKING:
    from .._client import Client


class SandboxTriggerRun:
    """One firing of a trigger: which commit matched, and the sandbox it started."""

    def __init__(self, data: SandboxTriggerRunData) -> None:
        self.id: str = data.id
        self.repository_id: str = data.repository_id
        self.trigger_id: str = data.trigger_id
        self.commit_id: str = data.commit_id
        self.status: str = data.status
        self.reason: str = data.reason
        self.sandbox_id: str | None = data.sandbox_id
        self.matched_paths: list[str] = list(data.matched_paths)
        self.created_at: datetime | None = data.created_at
        self.updated_at: datetime | None = data.updated_at

    def __repr__(self) -> str:
        return (f"SandboxTriggerRun(id={self.id!r}, status={self.status!r}, "
                f"sandbox_id={self.sandbox_id!r})")


class SandboxTriggerRuns:
    """The runs of one trigger, newest first as the server orders them."""

    def __init__(self, client: Client, org: str, repo: str, trigger_id: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self._trigger_id = trigger_id

    def list(self, *, after: str | None = None) -> Iterator[SandboxTriggerRun]:
        return self._client._paginate(
            lambda cursor: _wire.list_trigger_runs(self._org, self._repo, self._trigger_id,
                                                   after=cursor),
            lambda d: SandboxTriggerRun(_wire.parse_trigger_run(d)), after)


class SandboxTrigger:
    def __init__(self, client: Client, org: str, repo: str, data: SandboxTriggerData) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self._apply(data)

    def _apply(self, data: SandboxTriggerData) -> None:
        self.id: str = data.id
        self.name: str = data.name
        self.description: str = data.description
        self.enabled: bool = data.enabled
        self.conditions: list[SandboxTriggerCondition] = list(data.conditions)
        self.sandbox_config: SandboxTriggerConfig | None = data.sandbox_config
        self.run_as: dict[str, str] | None = data.run_as
        self.repository_id: str = data.repository_id
        self.created_by: str = data.created_by
        self.created_at: datetime | None = data.created_at
        self.updated_at: datetime | None = data.updated_at

    def _new(self, body: Any) -> SandboxTrigger:
        return SandboxTrigger(self._client, self._org, self._repo, _wire.parse_trigger(body))

    @property
    def runs(self) -> SandboxTriggerRuns:
        return SandboxTriggerRuns(self._client, self._org, self._repo, self.id)

    def refresh(self) -> SandboxTrigger:
        self._apply(_wire.parse_trigger(self._client._call(
            _wire.get_trigger(self._org, self._repo, self.id))))
        return self

    def update(self, *, name: str | None = None, description: str | None = None,
               conditions: list[dict[str, Any]] | None = None,
               sandbox_config: dict[str, Any] | None = None,
               run_as: dict[str, str] | None = None) -> SandboxTrigger:
        """Change the fields given; returns a new object from the server's answer."""
        return self._new(self._client._call(_wire.update_trigger(
            self._org, self._repo, self.id, name=name, description=description,
            conditions=conditions, sandbox_config=sandbox_config, run_as=run_as)))

    def toggle(self, *, enabled: bool) -> SandboxTrigger:
        return self._new(self._client._call(
            _wire.toggle_trigger(self._org, self._repo, self.id, enabled=enabled)))

    def delete(self) -> None:
        self._client._send(_wire.delete_trigger(self._org, self._repo, self.id)).close()

    def __repr__(self) -> str:
        return f"SandboxTrigger(id={self.id!r}, name={self.name!r}, enabled={self.enabled!r})"


class SandboxTriggers:
    """The sandbox triggers of one repository."""

    def __init__(self, client: Client, org: str, repo: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo

    def _handle(self, body: Any) -> SandboxTrigger:
        return SandboxTrigger(self._client, self._org, self._repo, _wire.parse_trigger(body))

    def list(self, *, after: str | None = None) -> Iterator[SandboxTrigger]:
        return self._client._paginate(
            lambda cursor: _wire.list_triggers(self._org, self._repo, after=cursor),
            self._handle, after)

    def get(self, trigger_id: str) -> SandboxTrigger:
        return self._handle(self._client._call(
            _wire.get_trigger(self._org, self._repo, trigger_id)))

    def create(self, *, name: str, conditions: builtins.list[dict[str, Any]],
               sandbox_config: dict[str, Any], description: str = "",
               run_as: dict[str, str] | None = None) -> SandboxTrigger:
        return self._handle(self._client._call(_wire.create_trigger(
            self._org, self._repo, name=name, conditions=conditions,
            sandbox_config=sandbox_config, description=description, run_as=run_as)))

    def delete(self, trigger_id: str) -> None:
        self._client._send(_wire.delete_trigger(self._org, self._repo, trigger_id)).close()
