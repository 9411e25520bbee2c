"""Repositories (spec 2.3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._values import (
    RepositoryData,
)
from .common import DEFAULT_PAGE_SIZE, WireRequest, _amount, _params, _r, _s, parse_timestamp

# --- repositories (2.3) --------------------------------------------------------------

def list_repositories(org: str, *, after: str | None = None,
                      amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"/organizations/{org}/repositories",
                       _params(("amount", _amount(amount)), ("after", after)))


def get_repository(org: str, repo: str) -> WireRequest:
    return WireRequest("GET", _r(org, repo))


def create_repository(org: str, name: str, *, description: str = "", visibility: str = "private",
                      session_max_duration_days: int | None = None,
                      retention_days: int | None = None) -> WireRequest:
    body: dict[str, Any] = {"name": name, "visibility": visibility}
    if description:
        body["description"] = description
    if session_max_duration_days is not None:
        body["session_max_duration_days"] = session_max_duration_days
    if retention_days is not None:
        body["retention_days"] = retention_days
    return WireRequest("POST", f"/organizations/{org}/repositories", json=body)


UPDATABLE_REPOSITORY_FIELDS = ("description", "visibility", "session_max_duration_days",
                               "retention_days")


def update_repository(org: str, repo: str, **fields: Any) -> WireRequest:
    """PUT with partial-merge semantics: only the fields given (not None) are sent."""
    unknown = set(fields) - set(UPDATABLE_REPOSITORY_FIELDS)
    if unknown:
        raise TypeError(f"unknown repository field(s): {', '.join(sorted(unknown))}")
    body = {k: v for k, v in fields.items() if v is not None}
    return WireRequest("PUT", _r(org, repo), json=body)


def delete_repository(org: str, repo: str) -> WireRequest:
    return WireRequest("DELETE", _r(org, repo))


def parse_repository(d: Mapping[str, Any]) -> RepositoryData:
    return RepositoryData(
        name=_s(d, "name"), id=_s(d, "id"), organization_id=_s(d, "organization_id"),
        description=_s(d, "description"), visibility=_s(d, "visibility"),
        session_max_duration_days=d.get("session_max_duration_days"),
        retention_days=d.get("retention_days"), created_by_type=_s(d, "created_by_type"),
        created_by=_s(d, "created_by"), created_at=parse_timestamp(d.get("created_at")))


