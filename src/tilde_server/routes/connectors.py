"""Connectors (spec 2.15) and imports (2.16).

`config` is accepted on create and never sent back. Import start answers 202 `{job_id}` after
the job row exists, so the client's immediate status GET finds it. A repository import also
needs read permission on the source repository. Extension: `PATCH {C}`
with `{"disabled": bool}` disables or re-enables a connector (docs/api.md).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tilde_server.routes.common import (
    field_req,
    field_str,
    json_body,
    org_repo,
    principal,
    run,
    store_of,
)
from tilde_server.routes.orgs import ORG, REPO
from tilde_server.sandbox.records import TOKEN_PREFIX as SANDBOX_TOKEN_PREFIX
from tilde_server.store import BadRequest, Forbidden


async def connectors(request: Request) -> Response:
    store = store_of(request)
    org = request.path_params["org"]
    if request.method == "GET":
        return JSONResponse({"results": await run(store.connectors.list_org, org)})
    body = await json_body(request)
    name = field_req(body, "name")
    kind = field_req(body, "type")
    source_uri = field_str(body, "source_uri", default="") or ""
    config: Any = body.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise BadRequest("field 'config' must be an object", "invalid_input")
    created = await run(store.connectors.create, org, name, kind, source_uri, config,
                        principal(request))
    return JSONResponse(created, status_code=201)


async def connector(request: Request) -> Response:
    store = store_of(request)
    org, cid = request.path_params["org"], request.path_params["connector_id"]
    if request.method == "DELETE":
        await run(store.connectors.delete, org, cid)
        return Response(status_code=204)
    if request.method == "PATCH":
        body = await json_body(request)
        disabled = body.get("disabled")
        if not isinstance(disabled, bool):
            raise BadRequest("field 'disabled' (a boolean) is required", "invalid_input")
        return JSONResponse(await run(store.connectors.set_disabled, org, cid, disabled))
    return JSONResponse(await run(store.connectors.get, org, cid))


async def repo_connectors(request: Request) -> Response:
    store = store_of(request)
    org, repo = org_repo(request)
    if request.method == "GET":
        return JSONResponse({"results": await run(store.connectors.list_attached, org, repo)})
    body = await json_body(request)
    cid = field_req(body, "connector_id")
    await run(store.connectors.attach, org, repo, cid, principal(request))
    return Response(status_code=204)


async def repo_connector(request: Request) -> Response:
    org, repo = org_repo(request)
    await run(store_of(request).connectors.detach, org, repo,
              request.path_params["connector_id"])
    return Response(status_code=204)


async def start_import(request: Request) -> Response:
    store = store_of(request)
    org, repo = org_repo(request)
    body = await json_body(request)
    destination = field_str(body, "destination_path", default="") or ""
    source_prefix = field_str(body, "source_prefix")
    message = field_str(body, "commit_message")
    connector_id = field_str(body, "connector_id")
    src_org = field_str(body, "source_organization")
    src_repo = field_str(body, "source_repository")
    if connector_id and (src_org or src_repo):
        raise BadRequest("give either connector_id or source_organization + "
                         "source_repository, not both", "invalid_input")
    if connector_id:
        job_id = await run(store.imports.start_from_connector, org, repo, connector_id,
                           destination, source_prefix, message, principal(request))
    elif src_org and src_repo:
        # The route's own check covers the destination (import:write); the caller must also
        # be allowed to read the source (403 otherwise, 404 for an unknown organization).
        reads: list[tuple[str, str | None]] = [("repo:read", None),
                                               ("object:read", source_prefix or None)]
        await run(request.app.state.authorizer.require, principal(request), src_org,
                  src_repo, reads)
        bearer = request.headers.get("authorization", "").partition(" ")[2].strip()
        if bearer.startswith(SANDBOX_TOKEN_PREFIX) and (src_org, src_repo) != (org, repo):
            raise Forbidden("a sandbox token is valid only for its own repository", "forbidden")
        job_id = await run(store.imports.start_from_repository, org, repo, src_org, src_repo,
                           destination, source_prefix, message, principal(request))
    else:
        raise BadRequest("connector_id, or source_organization and source_repository, is "
                         "required", "invalid_input")
    return JSONResponse({"job_id": job_id}, status_code=202)


async def import_job(request: Request) -> Response:
    org, repo = org_repo(request)
    return JSONResponse(await run(store_of(request).imports.get, org, repo,
                                  request.path_params["job_id"]))


CONNECTORS = ORG + "/connectors"
REPO_CONNECTORS = REPO + "/connectors"

routes = [
    Route(CONNECTORS, connectors, methods=["GET", "POST"]),
    Route(CONNECTORS + "/{connector_id}", connector, methods=["GET", "DELETE", "PATCH"]),
    Route(REPO_CONNECTORS, repo_connectors, methods=["GET", "POST"]),
    Route(REPO_CONNECTORS + "/{connector_id}", repo_connector, methods=["DELETE"]),
    Route(REPO + "/import", start_import, methods=["POST"]),
    Route(REPO + "/import/{job_id}", import_job, methods=["GET"]),
]
