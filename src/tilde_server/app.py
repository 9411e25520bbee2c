"""The Starlette application: routing, bearer auth, request ids, and the one table from domain
errors to HTTP statuses.

Subtleties:
1. Every route under /api/v1 needs `Authorization: Bearer <live key>`; the check runs in the
   middleware (in a worker thread), so even unknown /api/v1 routes answer 401 first.
   The signed upload and download routes live under /_tilde/ and are authorized by their
   signature alone (an Authorization header there is ignored).
   The key becomes `scope["state"]["principal"]`; every API route is wrapped by
   `authz.enforce.protect_routes`, which decides the route's declared actions (authz.actions)
   with the principal's Rego policies before the handler runs (403 when denied).
2. Every error response has the JSON body {message, code, request_id}; the request id is
   also sent as X-Request-Id on every response.
3. An unexpected exception is logged with its traceback and becomes a 500 with the error body,
   if the response has not started yet. Bad input must never get here.
4. The wire dialect (tilde_server.wire) decides which routes exist: routes a dialect refuses
   are plain 405 routes beside the protected ones, so they answer 405 after the bearer check
   and before any policy is consulted.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tilde_server.authn import Authenticators
from tilde_server.routes import api_routes_for, upload_routes
from tilde_server.store import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Locked,
    NotFound,
    PreconditionFailed,
    RangeNotSatisfiable,
    Store,
    StoreError,
    Unauthorized,
    Unavailable,
)
from tilde_server.store.identity import Identity
from tilde_server.wire import WireOptions

log = logging.getLogger("tilde_server")

API_PREFIX = "/api/v1"

# The one table from domain errors to status codes (most specific class first).
STATUS_FOR_ERROR: list[tuple[type[StoreError], int]] = [
    (RangeNotSatisfiable, 416),
    (BadRequest, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Gone, 410),
    (PreconditionFailed, 412),
    (Locked, 423),
    (Unavailable, 503),
]

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request",
               413: "too_large"}


def status_for(exc: StoreError) -> int:
    for cls, status in STATUS_FOR_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(status: int, message: str, code: str, request_id: str,
               headers: dict[str, str] | None = None,
               details: dict[str, Any] | None = None) -> Response:
    """The error JSON; `details` come first, so a client that keeps only the start of the
    text (tilde.exceptions keeps 500 characters) still has as much of them as fits."""
    h = {"X-Request-Id": request_id, **(headers or {})}
    return JSONResponse({**(details or {}), "message": message, "code": code,
                         "request_id": request_id}, status_code=status, headers=h)


def _request_id(scope: Scope) -> str:
    rid: str = scope.setdefault("state", {}).get("request_id", "")
    return rid


async def store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    status = status_for(exc)
    headers = {}
    if isinstance(exc, RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    return error_body(status, exc.message, exc.code, _request_id(request.scope), headers,
                      exc.details)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_body(exc.status_code, str(exc.detail),
                      _HTTP_CODES.get(exc.status_code, "error"), _request_id(request.scope),
                      dict(exc.headers or {}))


class TildeMiddleware:
    """Request id, bearer auth for /api/v1, and the catch-all for unexpected exceptions."""

    def __init__(self, app: ASGIApp, store: Store, authenticators: Authenticators) -> None:
        self.app = app
        self.store = store
        self.authenticators = authenticators

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            path: str = scope["path"]
            if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                denied = await self._authenticate(scope)
                if denied is not None:
                    await denied(scope, receive, send_with_id)
                    return
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:  # the client went away mid-body: nobody to answer, no bug
            log.info("client disconnected during %s %s (request %s)", scope.get("method"),
                     scope.get("path"), request_id)
            if not started:
                resp = error_body(400, "client disconnected during the request",
                                  "incomplete_body", request_id)
                await resp(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error handling %s %s (request %s)",
                          scope.get("method"), scope.get("path"), request_id)
            if not started:
                resp = error_body(500, "internal server error", "internal_error", request_id)
                await resp(scope, receive, send_with_id)

    async def _authenticate(self, scope: Scope) -> Response | None:
        rid = scope["state"]["request_id"]
        auth = ""
        for k, val in scope.get("headers", []):
            if k == b"authorization":
                auth = val.decode("latin-1")
        scheme, _, key = auth.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return error_body(401, "missing bearer token", "unauthorized", rid,
                              {"WWW-Authenticate": "Bearer"})
        try:
            scope["state"]["principal"] = await anyio.to_thread.run_sync(
                self.authenticators.authenticate, key)
        except Unauthorized as exc:
            return error_body(401, exc.message, exc.code, rid, {"WWW-Authenticate": "Bearer"})
        return None


def build_app(store: Store, identity: Identity | None = None,
              wire: WireOptions | None = None) -> Starlette:
    from tilde_server.authz.enforce import Authorizer, protect_routes

    identity = identity or Identity(store)
    wire = wire or WireOptions()
    served, refused = api_routes_for(wire.wire)
    handlers: dict[Any, Any] = {StoreError: store_error, HTTPException: http_error}
    app = Starlette(
        routes=[Mount(API_PREFIX, routes=[*protect_routes(served), *refused]), *upload_routes],
        exception_handlers=handlers,
    )
    authenticators = Authenticators(identity.authenticate)
    app.add_middleware(TildeMiddleware, store=store, authenticators=authenticators)
    app.state.authenticators = authenticators  # subsystems add their key kinds (authn.py)
    app.state.wire = wire
    app.state.store = store
    app.state.identity = identity
    app.state.authorizer = Authorizer(identity)
    return app
