"""Sessions, commit and the approval poll (spec 2.4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .common import WireRequest, _r

APPROVAL_POLL_INTERVAL = 2.0
# --- sessions (2.4) ------------------------------------------------------------------

def create_session(org: str, repo: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/sessions")


def commit_session(org: str, repo: str, session_id: str, message: str,
                   metadata: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {"message": message}
    if metadata:
        body["metadata"] = dict(metadata)
    return WireRequest("POST", f"{_r(org, repo)}/sessions/{session_id}", json=body)


def rollback_session(org: str, repo: str, session_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_r(org, repo)}/sessions/{session_id}")


def approval_poll(org: str, repo: str, session_id: str) -> WireRequest:
    return WireRequest("HEAD", f"{_r(org, repo)}/sessions/{session_id}/approve")


def parse_session_id(body: Mapping[str, Any]) -> str:
    return str(body["session_id"])


def parse_commit_id(body: Any) -> str:
    """Commit / revert answer -> commit id ("" when absent, as the 0.7.2 client does)."""
    return str((body or {}).get("commit_id", ""))


def parse_web_url(body: Any) -> str:
    return str((body or {}).get("web_url", ""))


