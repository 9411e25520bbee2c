"""Connectors (2.15) and imports (2.16)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._values import (
    ConnectorData,
    ImportJobData,
)
from .common import WireRequest, _r, _s, parse_timestamp

# --- connectors (2.15) ---------------------------------------------------------------------

def list_connectors(org: str) -> WireRequest:
    return WireRequest("GET", f"/organizations/{org}/connectors")


def get_connector(org: str, connector_id: str) -> WireRequest:
    return WireRequest("GET", f"/organizations/{org}/connectors/{connector_id}")


def create_connector(org: str, name: str, type: str, source_uri: str,
                     config: Mapping[str, Any]) -> WireRequest:
    return WireRequest("POST", f"/organizations/{org}/connectors", json={
        "name": name, "type": type, "source_uri": source_uri, "config": dict(config)})


def delete_connector(org: str, connector_id: str) -> WireRequest:
    return WireRequest("DELETE", f"/organizations/{org}/connectors/{connector_id}")


def list_repository_connectors(org: str, repo: str) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/connectors")


def attach_connector(org: str, repo: str, connector_id: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/connectors",
                       json={"connector_id": connector_id})


def detach_connector(org: str, repo: str, connector_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_r(org, repo)}/connectors/{connector_id}")


def parse_connector(d: Mapping[str, Any]) -> ConnectorData:
    return ConnectorData(
        id=_s(d, "id"), name=_s(d, "name"), type=_s(d, "type"), source_uri=_s(d, "source_uri"),
        disabled=bool(d.get("disabled", False)), public_key=d.get("public_key"),
        created_at=parse_timestamp(d.get("created_at")))


# --- imports (2.16) ------------------------------------------------------------------------

def _import_options(body: dict[str, Any], source_prefix: str | None,
                    commit_message: str | None) -> dict[str, Any]:
    """Optional fields are sent only when given (2.16)."""
    if source_prefix is not None:
        body["source_prefix"] = source_prefix
    if commit_message is not None:
        body["commit_message"] = commit_message
    return body


def start_import_from_connector(org: str, repo: str, connector_id: str, destination_path: str,
                                *, source_prefix: str | None = None,
                                commit_message: str | None = None) -> WireRequest:
    body = {"connector_id": connector_id, "destination_path": destination_path}
    return WireRequest("POST", f"{_r(org, repo)}/import",
                       json=_import_options(body, source_prefix, commit_message))


def start_import_from_repository(org: str, repo: str, source_organization: str,
                                 source_repository: str, destination_path: str, *,
                                 source_prefix: str | None = None,
                                 commit_message: str | None = None) -> WireRequest:
    body = {"source_organization": source_organization,
            "source_repository": source_repository, "destination_path": destination_path}
    return WireRequest("POST", f"{_r(org, repo)}/import",
                       json=_import_options(body, source_prefix, commit_message))


def get_import(org: str, repo: str, job_id: str) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/import/{job_id}")


def parse_job_id(body: Any) -> str:
    """Import start -> job id, passed through str() as 0.7.2 does (so it must not be null)."""
    return str((body or {}).get("job_id"))


def parse_import_job(d: Mapping[str, Any]) -> ImportJobData:
    return ImportJobData(
        id=_s(d, "id"), status=_s(d, "status"), repository_id=_s(d, "repository_id"),
        connector_id=_s(d, "connector_id"), source_prefix=_s(d, "source_prefix"),
        destination_path=_s(d, "destination_path"), commit_message=_s(d, "commit_message"),
        objects_imported=d.get("objects_imported"), commit_id=_s(d, "commit_id"),
        error=_s(d, "error"), source_repository_id=_s(d, "source_repository_id"),
        source_organization=_s(d, "source_organization"),
        source_repository=_s(d, "source_repository"),
        created_by_type=_s(d, "created_by_type"), created_by=_s(d, "created_by"),
        created_at=parse_timestamp(d.get("created_at")),
        updated_at=parse_timestamp(d.get("updated_at")))


