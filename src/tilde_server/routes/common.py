"""Helpers shared by the route modules: running store calls in threads, reading query and JSON
input strictly (wrong types are 400, never 500), and shaping JSON output."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from tilde_server.store import BadRequest, Obj, Page, Principal, Store
from tilde_server.store import validation as v
from tilde_server.wire import WireOptions, sdk_version

T = TypeVar("T")
MAX_PER_PAGE = 1000
DEFAULT_AMOUNT = 100
MAX_JSON_DEPTH = 100


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking store call in a worker thread (never block the event loop)."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def wire_options(request: Request) -> WireOptions:
    """The dialect and download settings the app was built with (tilde_server.wire)."""
    opts = getattr(request.app.state, "wire", None)
    return opts if isinstance(opts, WireOptions) else WireOptions()


def client_version(request: Request) -> tuple[int, int, int] | None:
    """The official client's version from the User-Agent; None for any other agent."""
    return sdk_version(request.headers.get("user-agent", ""))


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
    if "\ufffd" in value:
        value = _strict_query(request, name)
    return v.text(value, name)


def _strict_query(request: Request, name: str) -> str:
    """The value as sent: Starlette decodes percent-escapes that are not UTF-8 (`%FF`,
    overlong `%C0%AF`, surrogates `%ED%A0%80`) to U+FFFD, so a hostile key would be stored as
    another key; undecodable bytes come back as lone surrogates here, which v.text refuses."""
    raw = request.scope.get("query_string", b"").decode("latin-1")
    values = [val for k, val in parse_qsl(raw, keep_blank_values=True,
                                         errors="surrogateescape") if k == name]
    return values[-1] if values else ""  # the last one, as query_params.get


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
    return json_object(await request.body(), required=required)


def json_object(raw: bytes, *, required: bool = True, what: str = "request body"
                ) -> dict[str, Any]:
    """Strict JSON object from bytes (also a batch upload's manifest line); 400 otherwise."""
    if not raw.strip():
        if required:
            raise BadRequest("a JSON object body is required", "invalid_json")
        return {}
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(f"{what} is not valid JSON", "invalid_json") from None
    except RecursionError:  # nested deeper than the parser's stack allows
        raise BadRequest(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels",
                         "invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object", "invalid_json")
    _check_json_value(body)
    return body


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); echoed back they would make our answers
    invalid JSON too."""
    raise ValueError(f"{name} is not a JSON value")


def _check_json_value(body: Any) -> None:
    """Reject what json.loads lets through but nothing downstream can store or encode: nesting
    deeper than MAX_JSON_DEPTH (later encoders recurse) and strings with lone surrogates from
    \\uD800-style escapes (not UTF-8). Iterative, so a deep body cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"request body is nested deeper than {MAX_JSON_DEPTH} levels",
                             "invalid_json")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_json_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_json_text(value)


def _check_json_text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("request body has a string that is not valid Unicode (a lone "
                         "surrogate escape such as \\ud800)", "invalid_json") from None


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


def page_json(results: list[Any], page: Page, extra: dict[str, Any] | None = None
              ) -> JSONResponse:
    return JSONResponse({
        "results": results,
        "pagination": {"has_more": page.has_more, "next_offset": page.next_offset,
                       "max_per_page": MAX_PER_PAGE},
        **(extra or {}),
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
