"""Sandboxes (2.8), triggers (2.9) and sandbox credentials (2.17)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .._values import (
    SandboxCredentials,
    SandboxStatusData,
    SandboxTriggerCondition,
    SandboxTriggerConfig,
    SandboxTriggerData,
    SandboxTriggerRunData,
)
from .common import DEFAULT_PAGE_SIZE, WireRequest, _amount, _params, _r, _s, parse_timestamp

# --- sandboxes (2.8), triggers (2.9), sandbox credentials (2.17) ---------------------------
#
# 1. Create answers ``sandbox_id`` while list items carry ``id`` (2.8).
# 2. The status field ``status`` becomes ``state`` on the client side (2.8.2).
# 3. Two status vocabularies (tilde-api-changes.md 2.12, 4 item 16, 5.5): 0.7.2's
#    ``committed``/``awaiting_approval``/``error``/``failed``/``cancelled`` and 0.7.9's
#    ``done``/``errored``/``failed``/``cancelled``, where ``status_reason`` says how ``done``
#    went (``committed``, ``no_changes``, ``awaiting_approval``). A server picks one by the
#    User-Agent, so the client accepts both: the terminal set is the union, and approval is
#    ``awaiting_approval`` or ``done`` with reason ``awaiting_approval``. Anything else
#    (``starting``, ``running`` ...) means "keep polling".
# 4. Optional create fields are sent only when given (None). ``interactive`` and ``mode``
#    only for shells: ``mode: "service"`` today, ``interactive: true`` for the terminal.

SANDBOX_TERMINAL_STATES = frozenset(
    {"committed", "awaiting_approval", "error", "done", "errored", "failed", "cancelled"})
SANDBOX_ACTIVE_STATES = frozenset({"starting", "running"})
SANDBOX_POLL_INTERVAL = 1.0
SANDBOX_POLL_TIMEOUT = 300.0
CREDENTIALS_REFRESH_MARGIN_SECONDS = 120.0


def _s_(org: str, repo: str, sandbox_id: str) -> str:
    return f"{_r(org, repo)}/sandboxes/{sandbox_id}"


def create_sandbox(org: str, repo: str, *, image: str, command: Iterable[str] | None = None,
                   interactive: bool = False, mode: str | None = None,
                   env_vars: Mapping[str, str] | None = None,
                   mountpoint: str | None = None, path_prefix: str | None = None,
                   timeout_seconds: int | None = None,
                   run_as: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {"image": image}
    if mode is not None:
        body["mode"] = mode
    if interactive:
        body["interactive"] = True
    if command is not None:
        body["command"] = list(command)
    if env_vars is not None:
        body["env_vars"] = dict(env_vars)
    if mountpoint is not None:
        body["mountpoint"] = mountpoint
    if path_prefix is not None:
        body["path_prefix"] = path_prefix
    if timeout_seconds is not None:
        body["timeout_seconds"] = timeout_seconds
    if run_as is not None:
        body["run_as"] = dict(run_as)
    return WireRequest("POST", f"{_r(org, repo)}/sandboxes", json=body)


def command_argv(command: str | Iterable[str]) -> list[str]:
    """``execute``'s command: a string runs through ``sh -c``, a list is the argv as is."""
    if isinstance(command, str):
        return ["sh", "-c", command]
    return list(command)


def list_sandboxes(org: str, repo: str, *, after: str | None = None,
                   amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/sandboxes",
                       _params(("amount", _amount(amount)), ("after", after)))


def sandbox_status(org: str, repo: str, sandbox_id: str) -> WireRequest:
    return WireRequest("GET", f"{_s_(org, repo, sandbox_id)}/status")


def cancel_sandbox(org: str, repo: str, sandbox_id: str) -> WireRequest:
    return WireRequest("DELETE", _s_(org, repo, sandbox_id))


def sandbox_stdout_log(org: str, repo: str, sandbox_id: str) -> WireRequest:
    return WireRequest("GET", f"{_s_(org, repo, sandbox_id)}/logs/stdout")


def sandbox_network_log(org: str, repo: str, sandbox_id: str) -> WireRequest:
    return WireRequest("GET", f"{_s_(org, repo, sandbox_id)}/logs/network")


def sandbox_terminal_path(org: str, repo: str, sandbox_id: str) -> str:
    """Path of the terminal WebSocket, relative to the (ws) base URL (2.8.4)."""
    return f"{_s_(org, repo, sandbox_id)}/terminal"


def sandbox_exec_path(org: str, repo: str, sandbox_id: str) -> str:
    """Path of the per-run ``/exec`` WebSocket (tilde-api-changes.md 2.10)."""
    return f"{_s_(org, repo, sandbox_id)}/exec"


def finish_sandbox(org: str, repo: str, sandbox_id: str) -> WireRequest:
    """``POST {S}/finish``: a service sandbox ends well and commits (2.11)."""
    return WireRequest("POST", f"{_s_(org, repo, sandbox_id)}/finish")


def websocket_url(base: str, path: str) -> str:
    """``https://`` -> ``wss://``, ``http://`` -> ``ws://`` on the base URL, then the path."""
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return base + path


def parse_sandbox_id(body: Mapping[str, Any]) -> str:
    return str(body["sandbox_id"])


def parse_sandbox_list_item(d: Mapping[str, Any]) -> str:
    return str(d.get("id", ""))


def sandbox_ended(d: SandboxStatusData) -> bool:
    """Terminal in either vocabulary (point 3)."""
    return d.state in SANDBOX_TERMINAL_STATES


def sandbox_awaits_approval(d: SandboxStatusData) -> bool:
    return d.state == "awaiting_approval" or (
        d.state == "done" and d.status_reason == "awaiting_approval")


def sandbox_ended_well(d: SandboxStatusData) -> bool:
    """Committed, nothing to commit, or waiting for approval: the command succeeded."""
    return d.state in ("committed", "awaiting_approval", "done")


def sandbox_committed(d: SandboxStatusData) -> bool:
    """A commit was made (not "no changes", not waiting for approval)."""
    if d.state == "done":
        return d.status_reason == "committed"
    return d.state == "committed" and d.status_reason != "no_changes"


def sandbox_without_changes(d: SandboxStatusData) -> bool:
    return d.state in ("done", "committed") and d.status_reason == "no_changes"


def sandbox_without_exit_code(d: SandboxStatusData) -> bool:
    """Ended without its command's exit code: failed, cancelled, or an error that has none."""
    return d.state in ("failed", "cancelled") or (
        d.state in ("error", "errored") and d.exit_code is None)


def parse_sandbox_status(d: Any) -> SandboxStatusData:
    d = d or {}
    exit_code = d.get("exit_code")
    return SandboxStatusData(
        state=str(d.get("status") or ""), status_reason=str(d.get("status_reason") or ""),
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool)
        else None,
        commit_id=str(d.get("commit_id") or ""), web_url=str(d.get("web_url") or ""),
        error_message=str(d.get("error_message") or ""))


def list_triggers(org: str, repo: str, *, after: str | None = None,
                  amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/sandbox-triggers",
                       _params(("amount", _amount(amount)), ("after", after)))


def _t(org: str, repo: str, trigger_id: str) -> str:
    return f"{_r(org, repo)}/sandbox-triggers/{trigger_id}"


def get_trigger(org: str, repo: str, trigger_id: str) -> WireRequest:
    return WireRequest("GET", _t(org, repo, trigger_id))


def create_trigger(org: str, repo: str, *, name: str, conditions: list[dict[str, Any]],
                   sandbox_config: Mapping[str, Any], description: str = "",
                   run_as: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {"name": name, "conditions": list(conditions),
                            "sandbox_config": dict(sandbox_config)}
    if description:
        body["description"] = description
    if run_as is not None:
        body["run_as"] = dict(run_as)
    return WireRequest("POST", f"{_r(org, repo)}/sandbox-triggers", json=body)


def update_trigger(org: str, repo: str, trigger_id: str, *, name: str | None = None,
                   description: str | None = None,
                   conditions: list[dict[str, Any]] | None = None,
                   sandbox_config: Mapping[str, Any] | None = None,
                   run_as: Mapping[str, str] | None = None) -> WireRequest:
    """PUT with only the fields given (partial update)."""
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if description is not None:
        body["description"] = description
    if conditions is not None:
        body["conditions"] = list(conditions)
    if sandbox_config is not None:
        body["sandbox_config"] = dict(sandbox_config)
    if run_as is not None:
        body["run_as"] = dict(run_as)
    return WireRequest("PUT", _t(org, repo, trigger_id), json=body)


def toggle_trigger(org: str, repo: str, trigger_id: str, *, enabled: bool) -> WireRequest:
    return WireRequest("PATCH", _t(org, repo, trigger_id), json={"enabled": bool(enabled)})


def delete_trigger(org: str, repo: str, trigger_id: str) -> WireRequest:
    return WireRequest("DELETE", _t(org, repo, trigger_id))


def list_trigger_runs(org: str, repo: str, trigger_id: str, *, after: str | None = None,
                      amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_t(org, repo, trigger_id)}/runs",
                       _params(("amount", _amount(amount)), ("after", after)))


def parse_trigger_condition(d: Mapping[str, Any]) -> SandboxTriggerCondition:
    return SandboxTriggerCondition(type=_s(d, "type"), prefix=_s(d, "prefix"),
                                   path=_s(d, "path"), diff_type=_s(d, "diff_type"))


def parse_trigger_config(d: Mapping[str, Any]) -> SandboxTriggerConfig:
    return SandboxTriggerConfig(
        image=_s(d, "image"), command=list(d.get("command") or []),
        mountpoint=_s(d, "mountpoint"), path_prefix=_s(d, "path_prefix"),
        timeout_seconds=d.get("timeout_seconds"), env_vars=dict(d.get("env_vars") or {}))


def parse_trigger(d: Mapping[str, Any]) -> SandboxTriggerData:
    config = d.get("sandbox_config")
    run_as = d.get("run_as")
    return SandboxTriggerData(
        id=_s(d, "id"), name=_s(d, "name"), description=_s(d, "description"),
        enabled=bool(d.get("enabled", False)),
        conditions=tuple(parse_trigger_condition(c) for c in d.get("conditions") or ()),
        sandbox_config=parse_trigger_config(config) if config else None,
        run_as=dict(run_as) if run_as is not None else None,
        repository_id=_s(d, "repository_id"), created_by=_s(d, "created_by"),
        created_at=parse_timestamp(d.get("created_at")),
        updated_at=parse_timestamp(d.get("updated_at")))


def parse_trigger_run(d: Mapping[str, Any]) -> SandboxTriggerRunData:
    return SandboxTriggerRunData(
        id=_s(d, "id"), repository_id=_s(d, "repository_id"), trigger_id=_s(d, "trigger_id"),
        commit_id=_s(d, "commit_id"), status=_s(d, "status"), reason=_s(d, "reason"),
        sandbox_id=d.get("sandbox_id"), matched_paths=tuple(d.get("matched_paths") or ()),
        created_at=parse_timestamp(d.get("created_at")),
        updated_at=parse_timestamp(d.get("updated_at")))


def parse_sandbox_credentials(body: Any) -> SandboxCredentials:
    """The credentials endpoint's JSON (2.17); ``ValueError`` on missing or ill-typed fields.

    ``expires_at`` without an offset is UTC.
    """
    if not isinstance(body, dict):
        raise ValueError("credentials response is not a JSON object")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("credentials response lacks a non-empty access_token")
    raw_expiry = body.get("expires_at")
    if not isinstance(raw_expiry, str):
        raise ValueError("credentials response lacks expires_at")
    try:
        expires_at = datetime.fromisoformat(raw_expiry.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"credentials expires_at is not ISO 8601: {raw_expiry!r}") from exc
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    optional: dict[str, str | None] = {}
    for key in ("principal_type", "principal_id", "principal_name", "organization_id",
                "api_url"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"credentials field {key} must be a string")
        optional[key] = value
    return SandboxCredentials(access_token=token, expires_at=expires_at, **optional)


