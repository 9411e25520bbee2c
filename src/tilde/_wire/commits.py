"""Commits: log, get, revert, diff (spec 2.7)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._values import (
    CommitData,
)
from .common import DEFAULT_PAGE_SIZE, WireRequest, _amount, _params, _r, _s, parse_timestamp

# --- commits (2.7) -------------------------------------------------------------------

def log(org: str, repo: str, *, ref: str | None = None, after: str | None = None,
        amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/log",
                       _params(("ref", ref), ("after", after), ("amount", _amount(amount))))


def get_commit(org: str, repo: str, commit_id: str) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/commits/{commit_id}")


def revert_commit(org: str, repo: str, commit_id: str, *, message: str | None = None,
                  metadata: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {}
    if message is not None:
        body["message"] = message
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return WireRequest("POST", f"{_r(org, repo)}/commits/{commit_id}/revert", json=body)


def diff(org: str, repo: str, *, left: str, right: str, prefix: str | None = None,
         delimiter: str | None = None, after: str | None = None,
         amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    """``left`` is always sent, as ``left=`` for a root commit (diff against the empty tree)."""
    return WireRequest("GET", f"{_r(org, repo)}/diff", _params(
        ("left", left), ("right", right), ("prefix", prefix), ("delimiter", delimiter),
        ("after", after), ("amount", _amount(amount))))


def parse_commit(d: Mapping[str, Any]) -> CommitData:
    return CommitData(
        id=_s(d, "id"), committer=_s(d, "committer"), committer_type=_s(d, "committer_type"),
        committer_id=_s(d, "committer_id"), message=_s(d, "message"),
        meta_range_id=_s(d, "meta_range_id"),
        creation_date=parse_timestamp(d.get("creation_date")),
        parents=tuple(d.get("parents") or ()), metadata=dict(d.get("metadata") or {}),
        object_count=d.get("object_count"), total_size=d.get("total_size"),
        is_stale=bool(d.get("is_stale", False)))


