"""Members (spec 2.2), agents and keys (2.10), roles (2.11), groups (2.12), policies (2.13),
and the commit approval endpoints (2.4). Thin adapters over store.identity.

Policy texts are validated by the real Rego engine (authz.rego) before anything is stored, so
an invalid policy gets 400 with `line:column: message` and changes nothing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tilde_server.authz import rego
from tilde_server.routes.common import (
    amount,
    field_req,
    field_str,
    json_body,
    org_repo,
    page_json,
    principal,
    query,
    query_required,
    run,
)
from tilde_server.routes.orgs import ORG, REPO
from tilde_server.store import BadRequest
from tilde_server.store import validation as v
from tilde_server.store.identity import Identity


def identity_of(request: Request) -> Identity:
    ident: Identity = request.app.state.identity
    return ident


def _org(request: Request) -> str:
    org: str = request.path_params["org"]
    return org


# --- members ------------------------------------------------------------------------------
async def members(request: Request) -> Response:
    ident = identity_of(request)
    if request.method == "GET":
        return JSONResponse({"results": await run(ident.list_members, _org(request))})
    body = await json_body(request)
    username = field_str(body, "username")
    user_id = field_str(body, "user_id")
    if not username and not user_id:
        raise BadRequest("field 'username' is required", "invalid_input")
    role = field_str(body, "role", default="member") or "member"
    member = await run(ident.add_member, _org(request), username=username, user_id=user_id,
                       role=role)
    return JSONResponse(member, status_code=201)


async def member(request: Request) -> Response:
    await run(identity_of(request).remove_member, _org(request), request.path_params["user_id"])
    return Response(status_code=204)


# --- agents and roles -----------------------------------------------------------------------
def _kind(request: Request) -> str:
    """`agent` or `role`: the path segment after the organization (names are slugs)."""
    parts = request.url.path.split("/")
    i = parts.index("organizations")
    return "agent" if parts[i + 2] == "agents" else "role"


def _pname(request: Request) -> str:
    name: str = request.path_params.get("agent") or request.path_params["role"]
    return name


async def _validated(text: str) -> str:
    issues = await run(rego.validate, text)
    if issues:
        i = issues[0]
        raise BadRequest(f"invalid policy: {i.line}:{i.column}: {i.message}", "invalid_policy")
    return text


async def principals(request: Request) -> Response:
    ident, kind, org = identity_of(request), _kind(request), _org(request)
    if request.method == "GET":
        page = await run(ident.list_principals, kind, org, query(request, "after"),
                         amount(request))
        return page_json(page.items, page)
    body = await json_body(request)
    name = field_req(body, "name")
    description = field_str(body, "description", default="") or ""
    if kind == "role":
        return JSONResponse(await run(ident.create_role, org, name, description,
                                      principal(request)), status_code=201)
    metadata = v.metadata(body.get("metadata"))
    inline = field_str(body, "inline_policy", default="") or ""
    if inline.strip():
        await _validated(inline)
    return JSONResponse(await run(ident.create_agent, org, name, description, metadata, inline,
                                  principal(request)), status_code=201)


async def principal_item(request: Request) -> Response:
    ident, kind, org, name = identity_of(request), _kind(request), _org(request), _pname(request)
    if request.method == "DELETE":
        await run(ident.delete_principal, kind, org, name)
        return Response(status_code=204)
    if request.method == "PUT":
        body = await json_body(request)
        fields: dict[str, Any] = {}
        if "description" in body:
            fields["description"] = field_str(body, "description", default="") or ""
        if "metadata" in body:
            fields["metadata"] = v.metadata(body.get("metadata"))
        if "inline_policy" in body:
            text = field_str(body, "inline_policy", default="") or ""
            fields["inline_policy"] = await _validated(text) if text.strip() else ""
        return JSONResponse(await run(ident.update_agent, org, name, fields))
    return JSONResponse(await run(ident.get_principal, kind, org, name))


async def keys(request: Request) -> Response:
    ident, kind, org, name = identity_of(request), _kind(request), _org(request), _pname(request)
    if request.method == "GET":
        page = await run(ident.list_keys, kind, org, name, query(request, "after"),
                         amount(request))
        return page_json(page.items, page)
    body = await json_body(request)
    created = await run(ident.create_key, kind, org, name, field_req(body, "name"),
                        field_str(body, "description", default="") or "")
    return JSONResponse(created, status_code=201)


async def key(request: Request) -> Response:
    ident, kind, org, name = identity_of(request), _kind(request), _org(request), _pname(request)
    kid = request.path_params["key_id"]
    if request.method == "DELETE":
        await run(ident.revoke_key, kind, org, name, kid)
        return Response(status_code=204)
    return JSONResponse(await run(ident.get_key, kind, org, name, kid))


# --- groups ---------------------------------------------------------------------------------
async def groups(request: Request) -> Response:
    ident, org = identity_of(request), _org(request)
    if request.method == "GET":
        page = await run(ident.list_groups, org, query(request, "after"), amount(request))
        return page_json(page.items, page)
    body = await json_body(request)
    created = await run(ident.create_group, org, field_req(body, "name"),
                        field_str(body, "description", default="") or "", principal(request))
    return JSONResponse(created, status_code=201)


async def group(request: Request) -> Response:
    ident, org, gid = identity_of(request), _org(request), request.path_params["group_id"]
    if request.method == "DELETE":
        await run(ident.delete_group, org, gid)
        return Response(status_code=204)
    if request.method == "PUT":
        body = await json_body(request)
        fields = {k: field_str(body, k, default="") or "" for k in ("name", "description")
                  if k in body}
        await run(ident.update_group, org, gid, fields)
    return JSONResponse(await run(ident.group_detail, org, gid))


async def group_members(request: Request) -> Response:
    ident, org, gid = identity_of(request), _org(request), request.path_params["group_id"]
    if request.method == "DELETE":
        await run(ident.remove_group_member, org, gid, query_required(request, "subject_type"),
                  query_required(request, "subject_id"))
        return Response(status_code=204)
    body = await json_body(request)
    await run(ident.add_group_member, org, gid, field_req(body, "subject_type"),
              field_req(body, "subject_id"))
    return Response(status_code=204)


async def effective_groups(request: Request) -> Response:
    results = await run(identity_of(request).effective_groups, _org(request),
                        query_required(request, "principal_type"),
                        query_required(request, "principal_id"))
    return JSONResponse({"results": results})


# --- policies -------------------------------------------------------------------------------
async def policies(request: Request) -> Response:
    ident, org = identity_of(request), _org(request)
    if request.method == "GET":
        page = await run(ident.list_policies, org, query(request, "after"), amount(request))
        return page_json(page.items, page)
    body = await json_body(request)
    name = field_req(body, "name")
    text = field_str(body, "policy_text") or field_str(body, "rego") or ""
    await _validated(text)
    created = await run(ident.create_policy, org, name,
                        field_str(body, "description", default="") or "", text,
                        principal(request))
    return JSONResponse(created, status_code=201)


async def policy(request: Request) -> Response:
    ident, org, pid = identity_of(request), _org(request), request.path_params["policy_id"]
    if request.method == "DELETE":
        await run(ident.delete_policy, org, pid)
        return Response(status_code=204)
    if request.method == "PUT":
        body = await json_body(request)
        fields = {k: field_str(body, k, default="") or "" for k in
                  ("name", "description", "policy_text") if k in body}
        if "policy_text" in fields:
            if await run(ident.policy_is_builtin, org, pid):
                raise BadRequest("built-in policies cannot be changed", "builtin_policy")
            await _validated(fields["policy_text"])
        return JSONResponse(await run(ident.update_policy, org, pid, fields))
    return JSONResponse(await run(ident.get_policy, org, pid))


async def validate(request: Request) -> Response:
    body = await json_body(request)
    text = field_str(body, "policy_text", default="") or ""
    issues = await run(rego.validate, text)
    return JSONResponse({"valid": not issues, "errors": [
        {"line": i.line, "column": i.column, "message": i.message} for i in issues]})


async def generate(request: Request) -> Response:
    """No language model runs here, so there is nothing to generate from a prompt."""
    return JSONResponse({"message": "policy generation needs a language model, which this "
                                    "server does not have; write the Rego policy yourself "
                                    "(see docs/authorization.md for examples)",
                         "code": "not_implemented",
                         "request_id": request.scope["state"]["request_id"]}, status_code=501)


async def attachments(request: Request) -> Response:
    ident, org, pid = identity_of(request), _org(request), request.path_params["policy_id"]
    if request.method == "DELETE":
        await run(ident.detach, org, pid, query_required(request, "principal_type"),
                  query_required(request, "principal_id"))
        return Response(status_code=204)
    body = await json_body(request)
    await run(ident.attach, org, pid, field_req(body, "principal_type"),
              field_req(body, "principal_id"), principal(request))
    return Response(status_code=204)


async def all_attachments(request: Request) -> Response:
    return JSONResponse({"results": await run(identity_of(request).all_attachments,
                                              _org(request))})


async def effective_policies(request: Request) -> Response:
    kind = query(request, "principal_type")
    pid = query(request, "principal_id")
    user_id = query(request, "user_id")
    if user_id and not pid:
        kind, pid = kind or "user", user_id
    if not pid:
        who = principal(request)
        kind, pid = who.type, who.user_id
    results = await run(identity_of(request).effective_for_api, _org(request), kind or "user",
                        pid)
    return JSONResponse({"results": results})


# --- approvals (2.4) ------------------------------------------------------------------------
def approval_url(request: Request, org: str, repo: str, sid: str) -> str:
    base = str(request.base_url).rstrip("/")
    return f"{base}/api/v1/organizations/{org}/repositories/{repo}/sessions/{sid}/approve"


async def approve(request: Request) -> Response:
    """HEAD: 200 while pending, 404 after. GET: the pending changes. POST: approve."""
    ident = identity_of(request)
    org, repo = org_repo(request)
    sid = request.path_params["session_id"]
    if request.method == "POST":
        commit_id = await run(ident.approve, org, repo, sid, principal(request))
        return JSONResponse({"commit_id": commit_id})
    changes = await run(lambda: list(ident.pending_changes(org, repo, sid)))
    if request.method == "HEAD":
        return Response(status_code=200)
    return JSONResponse({"results": changes,
                         "pagination": {"has_more": False, "next_offset": None,
                                        "max_per_page": 1000}})


async def reject(request: Request) -> Response:
    org, repo = org_repo(request)
    await run(identity_of(request).reject, org, repo, request.path_params["session_id"],
              principal(request))
    return Response(status_code=204)


async def me(request: Request) -> Response:
    """`GET /auth/me` (today's service): the key's principal and its organizations."""
    return JSONResponse(await run(identity_of(request).me, principal(request)))


_A = ORG + "/agents/{agent}"
_RO = ORG + "/roles/{role}"
_G = ORG + "/groups/{group_id}"
_P = ORG + "/policies/{policy_id}"

routes = [
    Route("/auth/me", me, methods=["GET"]),
    Route(ORG + "/members", members, methods=["GET", "POST"]),
    Route(ORG + "/members/{user_id}", member, methods=["DELETE"]),
    Route(ORG + "/agents", principals, methods=["GET", "POST"]),
    Route(_A, principal_item, methods=["GET", "PUT", "DELETE"]),
    Route(_A + "/auth/keys", keys, methods=["GET", "POST"]),
    Route(_A + "/auth/keys/{key_id}", key, methods=["GET", "DELETE"]),
    Route(ORG + "/roles", principals, methods=["GET", "POST"]),
    Route(_RO, principal_item, methods=["GET", "DELETE"]),
    Route(_RO + "/auth/keys", keys, methods=["GET", "POST"]),
    Route(_RO + "/auth/keys/{key_id}", key, methods=["GET", "DELETE"]),
    Route(ORG + "/groups", groups, methods=["GET", "POST"]),
    Route(_G, group, methods=["GET", "PUT", "DELETE"]),
    Route(_G + "/members", group_members, methods=["POST", "DELETE"]),
    Route(ORG + "/effective-groups", effective_groups, methods=["GET"]),
    Route(ORG + "/policies", policies, methods=["GET", "POST"]),
    Route(ORG + "/policies:validate", validate, methods=["POST"]),
    Route(ORG + "/policies:generate", generate, methods=["POST"]),
    Route(_P, policy, methods=["GET", "PUT", "DELETE"]),
    Route(_P + "/attachments", attachments, methods=["POST", "DELETE"]),
    Route(ORG + "/attachments", all_attachments, methods=["GET"]),
    Route(ORG + "/effective-policies", effective_policies, methods=["GET"]),
    Route(REPO + "/sessions/{session_id}/approve", approve, methods=["GET", "HEAD", "POST"]),
    Route(REPO + "/sessions/{session_id}/reject", reject, methods=["POST"]),
]
