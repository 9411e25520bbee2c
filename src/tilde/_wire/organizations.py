"""Organizations (spec 2.1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._values import (
    OrganizationData,
)
from .common import WireRequest, _s, parse_timestamp

# --- organizations (2.1) -------------------------------------------------------------

def list_organizations() -> WireRequest:
    return WireRequest("GET", "/organizations")


def get_organization(name: str) -> WireRequest:
    return WireRequest("GET", f"/organizations/{name}")


def create_organization(name: str, display_name: str) -> WireRequest:
    return WireRequest("POST", "/organizations", json={"name": name, "display_name": display_name})


def delete_organization(name: str) -> WireRequest:
    return WireRequest("DELETE", f"/organizations/{name}")


def parse_organization(d: Mapping[str, Any]) -> OrganizationData:
    return OrganizationData(id=_s(d, "id"), name=_s(d, "name"),
                            display_name=_s(d, "display_name"),
                            created_at=parse_timestamp(d.get("created_at")))


