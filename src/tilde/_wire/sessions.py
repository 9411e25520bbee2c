"""Sessions, commit and the approval poll (spec 2.4); tilde-server's rebase extension."""

from __future__ import annotations

import json as _json
from collections.abc import Mapping
from typing import Any

from ..exceptions import APIError
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


def rebase_session(org: str, repo: str, session_id: str) -> WireRequest:
    """Move the session's base to the head commit, keeping its changes (tilde-server's
    extension, docs/api.md; the service answers 404/405). 409 names the paths in the way."""
    return WireRequest("POST", f"{_r(org, repo)}/sessions/{session_id}/rebase")


def parse_rebase(body: Any) -> str:
    """Rebase answer -> the session's new base commit id ("" for an empty repository)."""
    return str((body or {}).get("base_commit") or "")


def rebase_conflicts(error: APIError | bytes | str | Mapping[str, Any]) -> list[str]:
    """The paths a refused rebase (409) lists in ``conflicts``.

    Give the raw body for the whole list: an exception keeps only the first 500 characters
    of it (``response_text``), from which the paths that arrived whole are recovered (the
    server sends ``conflicts`` first for that reason). Anything unreadable gives [].
    """
    if isinstance(error, Mapping):
        return _string_list(error.get("conflicts"))
    text = error.response_text if isinstance(error, APIError) else error
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        parsed = _json.loads(text)
    except ValueError:
        return _leading_strings(text)
    return _string_list(parsed.get("conflicts")) if isinstance(parsed, dict) else []


def _string_list(value: Any) -> list[str]:
    return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []


def _leading_strings(text: str) -> list[str]:
    """The whole strings at the start of a cut ``"conflicts": [...`` array."""
    key = text.find('"conflicts"')
    start = text.find("[", key) if key >= 0 else -1
    if start < 0:
        return []
    decoder, i = _json.JSONDecoder(), start + 1
    out: list[str] = []
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        try:
            value, i = decoder.raw_decode(text, i)
        except ValueError:
            return out
        if not isinstance(value, str):
            return out
        out.append(value)
