"""Helpers shared by the route modules: running store calls in threads, reading query and JSON
input strictly (wrong types are 400, never 500), and shaping JSON output."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from tilde_server.store import BadRequest, Obj, Page, Principal, Store
from tilde_server.store import validation as v

T = TypeVar("T")
MAX_PER_PAGE = 1000
DEFAULT_AMOUNT = 100


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking store call in a worker thread (never block the event loop)."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def principal(request: Request) -> Principal:
    p: Principal = request.scope["state"]["principal"]
    return p


def org_repo(request: Request) -> tuple[str, str]:
    return request.path_params["org"], request.path_params["repo"]


def query(request: Request, name: str, *, required: bool = False) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        if required:
            raise BadRequest(f"query parameter {name!r} is required", "missing_parameter")
        return None
    return v.text(value, name)


def query_required(request: Request, name: str) -> str:
    value = query(request, name, required=True)
    assert value is not None
    return value


def amount(request: Request) -> int:
    raw = request.query_params.get("amount")
    if raw is None or raw == "":
        return DEFAULT_AMOUNT
    try:
        n = int(raw)
    except ValueError:
        raise BadRequest("amount must be an integer", "invalid_parameter") from None
    if n < 1:
        raise BadRequest("amount must be at least 1", "invalid_parameter")
    return min(n, MAX_PER_PAGE)


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise BadRequest("a JSON object body is required", "invalid_json")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", "invalid_json")
    return body


def field_str(body: dict[str, Any], name: str, *, required: bool = False,
              default: str | None = None) -> str | None:
    if name not in body or body[name] is None:
        if required:
            raise BadRequest(f"field {name!r} is required", "invalid_input")
        return default
    value = body[name]
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string", "invalid_input")
    return v.text(value, name)


def field_req(body: dict[str, Any], name: str) -> str:
    value = field_str(body, name, required=True)
    assert value is not None
    return value


def field_int(body: dict[str, Any], name: str, *, minimum: int = 0,
              maximum: int = 2**53) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"field {name!r} must be an integer", "invalid_input")
    if not minimum <= value <= maximum:
        raise BadRequest(f"field {name!r} must be in {minimum}..{maximum}", "invalid_input")
    return value


def page_json(results: list[Any], page: Page) -> JSONResponse:
    return JSONResponse({
        "results": results,
        "pagination": {"has_more": page.has_more, "next_offset": page.next_offset,
                       "max_per_page": MAX_PER_PAGE},
    })


def entry_json(o: Obj) -> dict[str, Any]:
    d = {
        "address": f"sha256:{o.blob}" if len(o.blob) == 64 else o.blob,
        "address_type": 1,
        "last_modified": o.last_modified,
        "size": o.size,
        "e_tag": o.etag,
        "metadata": o.metadata,
        "content_type": o.content_type,
    }
    if o.source:  # only imported objects carry it (5.5)
        d["source_metadata"] = o.source
    return d
