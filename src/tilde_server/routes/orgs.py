"""Organizations (spec 2.1) and repositories (2.3)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tilde_server.routes.common import (
    amount,
    field_int,
    field_req,
    field_str,
    json_body,
    org_repo,
    page_json,
    principal,
    query,
    run,
    store_of,
)
from tilde_server.store import BadRequest

VISIBILITIES = ("private", "public")


def org_json(o: dict[str, Any]) -> dict[str, Any]:
    return {"id": o["uid"], "name": o["name"], "display_name": o["display_name"],
            "created_at": o["created_at"]}


def repo_json(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["uid"], "name": r["name"], "organization_id": r["org_uid"],
        "description": r["description"], "visibility": r["visibility"],
        "session_max_duration_days": r["session_max_duration_days"],
        "retention_days": r["retention_days"], "created_by_type": "user",
        "created_by": r["created_by"], "created_at": r["created_at"],
        "require_approval_for_agents": bool(r.get("require_approval_for_agents", 0)),
    }


async def organizations(request: Request) -> Response:
    store = store_of(request)
    if request.method == "GET":
        orgs = await run(store.list_orgs)
        visible = await run(request.app.state.identity.visible_org_ids, principal(request))
        return JSONResponse({"results": [org_json(o) for o in orgs
                                         if visible is None or o["id"] in visible]})
    body = await json_body(request)
    name = field_req(body, "name")
    display = field_str(body, "display_name", default="") or ""
    org = await run(store.create_org, name, display)
    # The creator becomes the owner; the organization gets its built-in role policies.
    await run(request.app.state.identity.org_created, name, principal(request))
    return JSONResponse(org_json(org), status_code=201)


async def organization(request: Request) -> Response:
    store = store_of(request)
    name = request.path_params["org"]
    if request.method == "DELETE":
        await run(store.delete_org, name)
        return Response(status_code=204)
    return JSONResponse(org_json(await run(store.get_org, name)))


def _repo_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The settable repository fields present in `body`, type-checked."""
    fields: dict[str, Any] = {}
    if "description" in body:
        fields["description"] = field_str(body, "description", default="") or ""
    if "visibility" in body:
        vis = field_str(body, "visibility", default="private")
        if vis not in VISIBILITIES:
            raise BadRequest("visibility must be 'private' or 'public'", "invalid_input")
        fields["visibility"] = vis
    for k in ("session_max_duration_days", "retention_days"):
        if k in body:
            fields[k] = field_int(body, k, minimum=1, maximum=100_000)
    if "require_approval_for_agents" in body:  # this server's setting (docs/api.md)
        flag = body["require_approval_for_agents"]
        if not isinstance(flag, bool):
            raise BadRequest("require_approval_for_agents must be a boolean", "invalid_input")
        fields["require_approval_for_agents"] = int(flag)
    return fields


async def repositories(request: Request) -> Response:
    store = store_of(request)
    org = request.path_params["org"]
    if request.method == "GET":
        page = await run(store.list_repos, org, query(request, "after"), amount(request))
        return page_json([repo_json(r) for r in page.items], page)
    body = await json_body(request)
    name = field_req(body, "name")
    fields = _repo_fields(body)
    repo = await run(store.create_repo, org, name, fields, principal(request))
    return JSONResponse(repo_json(repo), status_code=201)


async def repository(request: Request) -> Response:
    store = store_of(request)
    org, name = org_repo(request)
    if request.method == "DELETE":
        await run(store.delete_repo, org, name)
        return Response(status_code=204)
    if request.method == "PUT":
        fields = _repo_fields(await json_body(request))
        return JSONResponse(repo_json(await run(store.update_repo, org, name, fields)))
    return JSONResponse(repo_json(await run(store.get_repo, org, name)))


ORG = "/organizations/{org}"
REPO = ORG + "/repositories/{repo}"

routes = [
    Route("/organizations", organizations, methods=["GET", "POST"]),
    Route(ORG, organization, methods=["GET", "DELETE"]),
    Route(ORG + "/repositories", repositories, methods=["GET", "POST"]),
    Route(REPO, repository, methods=["GET", "PUT", "DELETE"]),
]
