"""Secrets (spec 2.14): repository secrets under {R}/secrets, agent secrets under
/organizations/{org}/agents/{agent}/secrets. Values are only ever in the GET of one secret
(with Cache-Control: no-store); list answers carry names and timestamps only."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tilde_server.routes.common import json_body, principal, run, store_of
from tilde_server.routes.orgs import ORG, REPO
from tilde_server.store import BadRequest

MAX_BODY = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def _scope(request: Request) -> tuple[str, str]:
    store = store_of(request)
    org = request.path_params["org"]
    if "agent" in request.path_params:
        return await run(store.secrets.agent_scope, org, request.path_params["agent"])
    return await run(store.secrets.repo_scope, org, request.path_params["repo"])


async def secrets_list(request: Request) -> Response:
    scope = await _scope(request)
    return JSONResponse({"results": await run(store_of(request).secrets.list_meta, scope)})


async def secret(request: Request) -> Response:
    store = store_of(request)
    name = request.path_params["name"]
    scope = await _scope(request)
    if request.method == "DELETE":
        await run(store.secrets.delete, scope, name)
        return Response(status_code=204)
    if request.method == "PUT":
        if len(await request.body()) > MAX_BODY:
            raise BadRequest(f"request body is larger than {MAX_BODY} bytes", "too_large")
        body = await json_body(request)
        value = body.get("value")
        if not isinstance(value, str):
            raise BadRequest("field 'value' (a string) is required", "invalid_input")
        if "\x00" in value:  # secrets become sandbox environment variables: no NUL there
            raise BadRequest("field 'value' must not contain NUL characters", "invalid_input")
        meta = await run(store.secrets.put, scope, name, value, principal(request))
        return JSONResponse(meta)
    return JSONResponse(await run(store.secrets.get, scope, name), headers=NO_STORE)


REPO_SECRETS = REPO + "/secrets"
AGENT_SECRETS = ORG + "/agents/{agent}/secrets"

routes = [
    Route(REPO_SECRETS, secrets_list, methods=["GET"]),
    Route(REPO_SECRETS + "/{name}", secret, methods=["GET", "PUT", "DELETE"]),
    Route(AGENT_SECRETS, secrets_list, methods=["GET"]),
    Route(AGENT_SECRETS + "/{name}", secret, methods=["GET", "PUT", "DELETE"]),
]
