"""Sandbox triggers (spec 2.9): CRUD, enable/disable, runs. Logic in tilde_server.sandbox."""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde_server.routes.common import amount, json_body, org_repo, principal, query, run, store_of
from tilde_server.sandbox import triggers
from tilde_server.store import BadRequest

R = "/organizations/{org}/repositories/{repo}"
T = R + "/sandbox-triggers/{trigger_id}"

with contextlib.suppress(ImportError):
    from tilde_server.authz import declare

    declare(R + "/sandbox-triggers", GET="sandbox:read", POST="sandbox:write")
    declare(T, GET="sandbox:read", PUT="sandbox:write", PATCH="sandbox:write",
            DELETE="sandbox:write")
    declare(T + "/runs", GET="sandbox:read")


def _page(items: list[dict[str, Any]], has_more: bool) -> JSONResponse:
    return JSONResponse({"results": items, "pagination": {
        "has_more": has_more, "next_offset": items[-1]["id"] if has_more else None,
        "max_per_page": 1000}})


async def collection(request: Request) -> Response:
    org, repo = org_repo(request)
    store = store_of(request)
    if request.method == "POST":
        body = await json_body(request)
        trig = await run(triggers.create, store, org, repo, body, principal(request))
        return JSONResponse(trig, status_code=201)
    items, more = await run(triggers.list_, store, org, repo, query(request, "after"),
                            amount(request))
    return _page(items, more)


async def item(request: Request) -> Response:
    org, repo = org_repo(request)
    store = store_of(request)
    tid = request.path_params["trigger_id"]
    if request.method == "GET":
        return JSONResponse(await run(triggers.get, store, org, repo, tid))
    if request.method == "DELETE":
        await run(triggers.delete, store, org, repo, tid)
        return Response(status_code=204)
    body = await json_body(request)
    if request.method == "PATCH" and (set(body) != {"enabled"}
                                      or not isinstance(body["enabled"], bool)):
        raise BadRequest("PATCH takes exactly {\"enabled\": true|false}", "invalid_input")
    return JSONResponse(await run(triggers.update, store, org, repo, tid, body))


async def runs(request: Request) -> Response:
    org, repo = org_repo(request)
    items, more = await run(triggers.list_runs, store_of(request), org, repo,
                            request.path_params["trigger_id"], query(request, "after"),
                            amount(request))
    return _page(items, more)


routes: list[BaseRoute] = [
    Route(R + "/sandbox-triggers", collection, methods=["GET", "POST"]),
    Route(T, item, methods=["GET", "PUT", "PATCH", "DELETE"]),
    Route(T + "/runs", runs, methods=["GET"]),
]
