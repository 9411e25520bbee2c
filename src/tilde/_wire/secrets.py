"""Secrets (spec 2.14)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._values import (
    SecretData,
)
from .common import WireRequest, _r, _s, parse_timestamp

# --- secrets (2.14) ------------------------------------------------------------------------
# Two mount points with one behaviour: ``{R}/secrets`` and ``/organizations/{org}/agents/
# {agent}/secrets``; the builders take that base path.

def repository_secrets_path(org: str, repo: str) -> str:
    return f"{_r(org, repo)}/secrets"


def agent_secrets_path(org: str, agent_name: str) -> str:
    return f"/organizations/{org}/agents/{agent_name}/secrets"


def list_secrets(base: str) -> WireRequest:
    return WireRequest("GET", base)


def get_secret(base: str, name: str) -> WireRequest:
    return WireRequest("GET", f"{base}/{name}")


def put_secret(base: str, name: str, value: str) -> WireRequest:
    """Create or replace (upsert)."""
    return WireRequest("PUT", f"{base}/{name}", json={"value": value})


def delete_secret(base: str, name: str) -> WireRequest:
    return WireRequest("DELETE", f"{base}/{name}")


def parse_secret(d: Mapping[str, Any]) -> SecretData:
    """SecretMeta: the name is read from ``key``, falling back to ``name`` (2.14)."""
    value = d.get("value")
    return SecretData(
        name=d.get("key") or d.get("name") or "", created_by_type=_s(d, "created_by_type"),
        created_by=_s(d, "created_by"), created_at=parse_timestamp(d.get("created_at")),
        updated_at=parse_timestamp(d.get("updated_at")),
        value=None if value is None else str(value))


def parse_secret_value(body: Any) -> str:
    """``GET {Sec}/{name}`` -> the value (passed through str(), as 0.7.2 does)."""
    return str((body or {}).get("value"))


