"""Sandboxes: commands run in bubblewrap against a tilde-mount of their own session.

`setup(app, store, endpoint)` wires the subsystem into a built application (the `run` command
calls it): the manager (app.state.sandboxes), recovery of sandboxes a previous process left,
repository-scoped sandbox tokens, and sandbox triggers on commits. See docs/sandboxes.md.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from tilde_server.sandbox import records, triggers
from tilde_server.sandbox.bwrap import Limits
from tilde_server.sandbox.egress_rules import EgressRules
from tilde_server.sandbox.manager import SandboxManager
from tilde_server.sandbox.spec import ResourcePolicy
from tilde_server.store import Principal, Store, Unauthorized

__all__ = ["Limits", "SandboxManager", "setup"]

API_PREFIX = "/api/v1"


def setup(app: Starlette, store: Store, endpoint: str, *, network: str = "proxy",
          limits: Limits | None = None, egress_rules: EgressRules | None = None,
          sandbox_env: dict[str, str] | None = None,
          log_retention: float | None = None,
          resources: ResourcePolicy | None = None,
          advertise_url: str | None = None) -> SandboxManager:
    authorizer = getattr(app.state, "authorizer", None)
    mgr = SandboxManager(store, endpoint, network=network, limits=limits,
                         identity=getattr(app.state, "identity", None),
                         egress_rules=egress_rules,
                         network_policies=authorizer.network_verdict if authorizer else None,
                         sandbox_env=sandbox_env, log_retention=log_retention,
                         resources=resources, advertise_url=advertise_url)
    lease = os.environ.get("TILDE_SERVER_SANDBOX_LEASE")  # seconds (tests shorten it)
    if lease:
        mgr.owner_lease = float(lease)
    mgr.recover()
    mgr.start_sweeper()
    mgr.keep_leases()
    app.state.sandboxes = mgr
    from tilde_server.routes.sandboxes import ws_routes

    # Before the /api/v1 Mount, which would otherwise take (and refuse) the WebSocket scopes.
    app.router.routes[0:0] = ws_routes
    _install_tokens(app, store)
    triggers.install(store, mgr)
    return mgr


def _install_tokens(app: Starlette, store: Store) -> None:
    """Sandbox tokens (`tst-...`) authenticate as the sandbox's creator, but only for paths of
    the one repository they were issued for (checked by ScopeMiddleware before any route)."""

    def authenticate(key: str) -> Principal:
        found = records.lookup_token(store.db, key)
        if found is None:
            raise Unauthorized("invalid or expired sandbox token", "invalid_api_key")
        return found[2]

    app.state.authenticators.add(records.TOKEN_PREFIX, authenticate)
    app.add_middleware(ScopeMiddleware, store=store)


class ScopeMiddleware:
    """403 for a sandbox token used outside its repository."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        token = ""
        for k, val in scope.get("headers", []):
            if k == b"authorization":
                scheme, _, rest = val.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    token = rest.strip()
        if path.startswith(API_PREFIX + "/") and token.startswith(records.TOKEN_PREFIX):
            found = await anyio.to_thread.run_sync(records.lookup_token, self.store.db, token)
            if found is not None:
                org, repo = found[0], found[1]
                base = f"{API_PREFIX}/organizations/{org}/repositories/{repo}"
                if not (path == base or path.startswith(base + "/")):
                    await _deny(scope, receive, send,
                                f"this sandbox token is valid only for {org}/{repo}")
                    return
        await self.app(scope, receive, send)


async def _deny(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"message": message, "code": "forbidden", "request_id": ""}).encode()
    headers: list[Any] = [(b"content-type", b"application/json"),
                          (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})
