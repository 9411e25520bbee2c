"""Sessions (spec 2.4), uncommitted changes (2.6), log / commits / revert / diff (2.7)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tilde_server.routes.common import (
    amount,
    entry_json,
    field_str,
    json_body,
    org_repo,
    page_json,
    principal,
    query,
    query_required,
    run,
    store_of,
)
from tilde_server.routes.identity import approval_url
from tilde_server.routes.orgs import REPO
from tilde_server.store import validation as v


async def create_session(request: Request) -> Response:
    org, repo = org_repo(request)
    sid = await run(store_of(request).create_session, org, repo, principal(request))
    return JSONResponse({"session_id": sid}, status_code=201)


async def session(request: Request) -> Response:
    """POST commits, DELETE rolls back."""
    store = store_of(request)
    org, repo = org_repo(request)
    sid = request.path_params["session_id"]
    if request.method == "DELETE":
        await run(store.rollback_session, org, repo, sid)
        return Response(status_code=204)
    body = await json_body(request, required=False)
    message = field_str(body, "message", default="") or ""
    metadata = v.metadata(body.get("metadata"))
    who = principal(request)
    identity = request.app.state.identity
    if await run(identity.requires_approval, org, repo, who):
        # 2.4: an agent's commit in a repository that requires approval waits for a human.
        await run(identity.request_approval, org, repo, sid, message, metadata, who)
        web_url = approval_url(request, org, repo, sid)
        return JSONResponse({"approval_required": True, "session_id": sid, "message": message,
                             "api_url": web_url, "web_url": web_url}, status_code=202)
    commit_id = await run(store.commit_session, org, repo, sid, message, metadata, who)
    return JSONResponse({"commit_id": commit_id})


async def rebase(request: Request) -> Response:
    """Session rebase (an extension): the session's base moves to head, its changes stay;
    409 with `conflicts` when a staged path changed since its base (the commit's rule)."""
    org, repo = org_repo(request)
    base = await run(store_of(request).rebase_session, org, repo,
                     request.path_params["session_id"])
    return JSONResponse({"base_commit": base, "rebased": True})


async def changes(request: Request) -> Response:
    org, repo = org_repo(request)
    session = query_required(request, "session_id")
    page = await run(store_of(request).list_changes, org, repo, session,
                     prefix=query(request, "prefix") or "", after=query(request, "after"),
                     amount=amount(request))
    return page_json([{"path": c.path, "entry": entry_json(c.obj) if c.obj else None}
                      for c in page.items], page)


async def log(request: Request) -> Response:
    org, repo = org_repo(request)
    page = await run(store_of(request).log, org, repo, ref=query(request, "ref") or None,
                     after=query(request, "after") or None, amount=amount(request))
    return page_json(page.items, page)


async def commit(request: Request) -> Response:
    org, repo = org_repo(request)
    return JSONResponse(await run(store_of(request).get_commit, org, repo,
                                  request.path_params["commit_id"]))


async def revert(request: Request) -> Response:
    org, repo = org_repo(request)
    body = await json_body(request, required=False)
    message = field_str(body, "message")
    metadata = v.metadata(body.get("metadata"))
    cid = await run(store_of(request).revert, org, repo, request.path_params["commit_id"],
                    message, metadata, principal(request))
    return JSONResponse({"commit_id": cid}, status_code=201)


async def diff(request: Request) -> Response:
    org, repo = org_repo(request)
    page = await run(store_of(request).diff, org, repo,
                     left=query(request, "left") or "", right=query_required(request, "right"),
                     prefix=query(request, "prefix") or "", delimiter=query(request, "delimiter"),
                     after=query(request, "after"), amount=amount(request))
    return page_json([
        {"path": d.path, "type": d.kind, "status": d.status,
         "entry": entry_json(d.obj) if d.obj is not None and d.kind == "object" else None}
        for d in page.items], page)


routes = [
    Route(REPO + "/sessions", create_session, methods=["POST"]),
    Route(REPO + "/sessions/{session_id}", session, methods=["POST", "DELETE"]),
    Route(REPO + "/sessions/{session_id}/rebase", rebase, methods=["POST"]),
    Route(REPO + "/changes", changes, methods=["GET"]),
    Route(REPO + "/log", log, methods=["GET"]),
    Route(REPO + "/commits/{commit_id}", commit, methods=["GET"]),
    Route(REPO + "/commits/{commit_id}/revert", revert, methods=["POST"]),
    Route(REPO + "/diff", diff, methods=["GET"]),
]

# tilde-server's own extensions: `--wire current` answers them 404, as the service would.
EXTENSIONS = frozenset({REPO + "/sessions/{session_id}/rebase"})


def routes_for(wire: str) -> list[Route]:
    """The routes of wire dialect `wire`."""
    return [r for r in routes if wire != "current" or r.path not in EXTENSIONS]
