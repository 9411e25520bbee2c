"""Shared pieces of the wire protocol: base URL, `WireRequest`, query building, page
envelopes, timestamps and the error body (spec 1.1-1.7)."""

from __future__ import annotations

import json as _json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..exceptions import APIError, api_error_for_status

T = TypeVar("T")

API_PREFIX = "/api/v1"
DEFAULT_ENDPOINT = "https://tilde.run"
#: The official release whose wire protocol this client speaks (uploads, downloads through
#: redirects, both sandbox status vocabularies). Servers tell releases apart by the
#: User-Agent alone (tilde-api-changes.md 2.1), so it names this one, not the 0.7.2
#: Python API the client offers (``tilde.__version__``).
SDK_VERSION = "0.7.9"
USER_AGENT = f"tilde-python-sdk/{SDK_VERSION}"
DEFAULT_PAGE_SIZE = 100
#: the longest object key the service stores, in UTF-8 bytes (longer ones are a 400)
MAX_KEY_BYTES = 1024

def base_url(endpoint: str) -> str:
    """Endpoint with trailing '/' removed, then ``/api/v1`` appended (1.1)."""
    return endpoint.rstrip("/") + API_PREFIX


def split_repo_path(repo_path: str) -> tuple[str, str]:
    """Split ``org/repo`` at the first '/' (so ``a/b/c`` is org ``a``, repo ``b/c``)."""
    org, sep, repo = repo_path.partition("/")
    if not sep or not org or not repo:
        raise ValueError(f"repository path must look like 'org/repo', got {repo_path!r}")
    return org, repo


def resolve_upload_url(base: str, url: str) -> str:
    """Absolute URLs stay; relative ones are appended to the base URL (1.1)."""
    if "://" in url:
        return url
    return base.rstrip("/") + "/" + url.lstrip("/")


@dataclass(frozen=True)
class WireRequest:
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json: Any = None
    headers: tuple[tuple[str, str], ...] = ()


def _params(*pairs: tuple[str, Any]) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in pairs:
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append((key, str(value)))
    return tuple(out)


def _r(org: str, repo: str) -> str:
    return f"/organizations/{org}/repositories/{repo}"


def _amount(amount: int | None) -> int:
    return DEFAULT_PAGE_SIZE if amount is None else amount

# --- parsing -------------------------------------------------------------------------

@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool
    next_offset: str | None

    @property
    def next_after(self) -> str | None:
        """Cursor for the next page, or None when iteration must stop (1.6).

        Stops on ``has_more`` false or an empty page. Unlike the official client, a
        ``has_more`` page without ``next_offset`` also stops instead of looping forever.
        """
        if not self.has_more or not self.items or self.next_offset is None:
            return None
        return self.next_offset


def parse_page(body: Any, parse_item: Callable[[dict[str, Any]], T]) -> Page[T]:
    body = body or {}
    results = body.get("results") or []
    pagination = body.get("pagination") or {}
    next_offset = pagination.get("next_offset")
    return Page(
        items=[parse_item(item) for item in results],
        has_more=bool(pagination.get("has_more", False)),
        next_offset=None if next_offset is None else str(next_offset),
    )


def parse_results(body: Any, parse_item: Callable[[dict[str, Any]], T]) -> list[T]:
    """Single-shot lists: only ``results`` is read, ``pagination`` ignored."""
    return [parse_item(item) for item in (body or {}).get("results") or []]


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 string -> datetime; None stays None. Non-strings and "" are errors (1.7)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"timestamp must be a string, got {type(value).__name__}")
    return datetime.fromisoformat(value)


def _s(d: Mapping[str, Any], key: str) -> Any:
    """String field: "" only when the key is absent (a JSON null stays None, 1.7)."""
    return d.get(key, "")
def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not hasattr(headers, "multi_items"):
        lname = name.lower()  # plain dicts are case-sensitive; httpx.Headers are not
        for k, v in headers.items():
            if k.lower() == lname:
                return v
    return value

def error_for_response(status: int, *, method: str, url: str, body: bytes) -> APIError:
    """Build the exception for a non-2xx answer (1.5); the class comes from the one table."""
    text = body.decode("utf-8", errors="replace")
    message = code = request_id = ""
    try:
        parsed = _json.loads(text) if text else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        message = _str_field(parsed, "message")
        code = _str_field(parsed, "code")
        request_id = _str_field(parsed, "request_id")
    else:
        message = text[:200]
    return api_error_for_status(status, message=message, code=code, request_id=request_id,
                                method=method, url=url, response_text=text)


def _str_field(d: Mapping[str, Any], key: str) -> str:
    value = d.get(key)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def error_body(message: str, code: str = "", request_id: str = "") -> dict[str, str]:
    """The error JSON the server sends (1.5); here so both sides agree on field names."""
    return {"message": message, "code": code, "request_id": request_id}


