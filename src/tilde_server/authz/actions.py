"""The action vocabulary and the one table from route to action(s).

Action names are `<noun>:<level>` with the level one of `read`, `write`, `admin`, `owner`
(ordered: the built-in role policies grant by level, see builtin.py). Keep new names to that
form so the organization roles cover them without editing the built-in policies.

A route's entry is, per HTTP method, a tuple of `Check`s. Every check is decided on its own and
all must be allowed. A check may name where an object path comes from (`query:<name>` or
`body:<name>`, the latter a JSON array of strings: one decision per path), so a policy can
decide on `input.path`. `handler:<name>` means the paths are in a body the guard cannot read
(the batch upload's streamed manifest): the endpoint decides them itself, one per path, with
`enforce.authorize_paths` before it changes anything. HEAD uses the GET entry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One authorization question of a route: `action`, optionally on object path(s)."""

    action: str
    # "query:path", "query:destination_path", "body:paths", "handler:manifest"
    path_from: str | None = None


# Every action the server knows, with what it allows (docs/authorization.md shows this table).
ACTIONS: dict[str, str] = {
    "org:list": "list organizations (answer filtered to those the caller may org:read)",
    "org:create": "create an organization (users only; the creator becomes its owner)",
    "org:read": "read the organization, its members, agents, roles, groups, policies",
    "org:owner": "delete the organization",
    "member:admin": "add and remove organization members",
    "identity:admin": "manage agents, API keys, roles, groups, policies and attachments",
    "repo:read": "list repositories, read repository metadata, log, commits and diffs",
    "repo:write": "create repositories",
    "repo:admin": "change repository settings, delete repositories",
    "object:read": "list, get and head objects; list a session's changes",
    "object:write": "stage, upload, copy (destination) and delete objects",
    "session:read": "open and roll back sessions; poll a pending approval",
    "session:write": "commit sessions, revert commits",
    "session:admin": "approve or reject commits waiting for approval",
    "network:request": "an outbound HTTP(S) request from a sandbox (decided by the egress "
                       "proxy; built-in role policies never grant it)",
}

# Actions that are not about one organization (the route has no {org}).
GLOBAL_ACTIONS = frozenset({"org:list", "org:create"})

_ORG = "/organizations/{org}"
_R = _ORG + "/repositories/{repo}"
_W = (Check("object:write", "query:path"),)

RouteTable = dict[str, dict[str, tuple[Check, ...]]]

ROUTE_ACTIONS: RouteTable = {}


def declare(template: str, **methods: str | tuple[Check, ...]) -> None:
    """Name the action(s) of a route: `declare(path_template, GET="x:read", POST=(...))`.

    The template is the route's path as given to Starlette, relative to /api/v1. Declaring the
    same (template, method) twice with a different answer is a programming error.
    """
    entry = ROUTE_ACTIONS.setdefault(template, {})
    for method, spec in methods.items():
        checks = (Check(spec),) if isinstance(spec, str) else tuple(spec)
        for c in checks:
            if c.action not in ACTIONS:
                ACTIONS[c.action] = "(declared by a route module)"
        old = entry.get(method.upper())
        if old is not None and old != checks:
            raise ValueError(f"{method} {template} already declared as {old}")
        entry[method.upper()] = checks


def checks_for(template: str, method: str) -> tuple[Check, ...] | None:
    entry = ROUTE_ACTIONS.get(template)
    if entry is None:
        return None
    if method == "HEAD" and "HEAD" not in entry:
        method = "GET"
    return entry.get(method)


# --- organizations and repositories (2.1, 2.3) ---------------------------------------
declare("/organizations", GET="org:list", POST="org:create")
declare("/auth/me", GET="org:list")  # about the caller only
declare(_ORG, GET="org:read", DELETE="org:owner")
declare(_ORG + "/repositories", GET="repo:read", POST="repo:write")
declare(_R, GET="repo:read", PUT="repo:admin", DELETE="repo:admin")
# --- sessions, changes, commits (2.4, 2.6, 2.7) --------------------------------------
declare(_R + "/sessions", POST="session:read")
declare(_R + "/sessions/{session_id}", POST="session:write", DELETE="session:read")
declare(_R + "/sessions/{session_id}/approve", GET="session:read", POST="session:admin")
declare(_R + "/sessions/{session_id}/reject", POST="session:admin")
# Rebase (extension) changes what a later commit applies to, so it needs what commit needs.
declare(_R + "/sessions/{session_id}/rebase", POST="session:write")
declare(_R + "/changes", GET="object:read")
declare(_R + "/log", GET="repo:read")
declare(_R + "/commits/{commit_id}", GET="repo:read")
declare(_R + "/commits/{commit_id}/revert", POST="session:write")
declare(_R + "/diff", GET="repo:read")
# --- objects (2.5) --------------------------------------------------------------------
declare(_R + "/objects", GET="object:read")
declare(_R + "/objects/delete", POST=(Check("object:write", "body:paths"),))
declare(_R + "/objects/upload", POST=(Check("object:write", "handler:manifest"),))
declare(_R + "/object", GET=(Check("object:read", "query:path"),), DELETE=_W, PUT=_W)
declare(_R + "/object/stage", POST=_W)
declare(_R + "/object/finalize", PUT=_W, POST=_W)
declare(_R + "/object/copy", POST=(Check("object:read", "query:source_path"),
                                   Check("object:write", "query:destination_path")))
declare(_R + "/object/multipart", POST=_W, DELETE=_W)
declare(_R + "/object/metadata", PUT=_W)  # metadata-only update (extension)
# The path was decided at initiate; the token (0.7.2) or the upload binding (0.7.7) names it.
# the path is the 0.7.7 query's or the legacy token's: checked by the handler
declare(_R + "/object/multipart/part", GET=(Check("object:write", "handler:path"),))
declare(_R + "/object/multipart/complete", POST=_W)
declare(_R + "/object/multipart/abort", POST=_W)
# --- members (2.2) ----------------------------------------------------------------------
declare(_ORG + "/members", GET="org:read", POST="member:admin")
declare(_ORG + "/members/{user_id}", DELETE="member:admin")
# --- agents, keys, roles (2.10, 2.11) ---------------------------------------------------
_A = _ORG + "/agents/{agent}"
_RO = _ORG + "/roles/{role}"
declare(_ORG + "/agents", GET="org:read", POST="identity:admin")
declare(_A, GET="org:read", PUT="identity:admin", DELETE="identity:admin")
declare(_A + "/auth/keys", GET="org:read", POST="identity:admin")
declare(_A + "/auth/keys/{key_id}", GET="org:read", DELETE="identity:admin")
declare(_ORG + "/roles", GET="org:read", POST="identity:admin")
declare(_RO, GET="org:read", DELETE="identity:admin")
declare(_RO + "/auth/keys", GET="org:read", POST="identity:admin")
declare(_RO + "/auth/keys/{key_id}", GET="org:read", DELETE="identity:admin")
# --- groups (2.12) ----------------------------------------------------------------------
_G = _ORG + "/groups/{group_id}"
declare(_ORG + "/groups", GET="org:read", POST="identity:admin")
declare(_G, GET="org:read", PUT="identity:admin", DELETE="identity:admin")
declare(_G + "/members", POST="identity:admin", DELETE="identity:admin")
declare(_ORG + "/effective-groups", GET="org:read")
# --- policies (2.13) --------------------------------------------------------------------
_P = _ORG + "/policies/{policy_id}"
declare(_ORG + "/policies", GET="org:read", POST="identity:admin")
declare(_ORG + "/policies:validate", POST="org:read")
declare(_ORG + "/policies:generate", POST="org:read")
declare(_P, GET="org:read", PUT="identity:admin", DELETE="identity:admin")
declare(_P + "/attachments", POST="identity:admin", DELETE="identity:admin")
declare(_ORG + "/attachments", GET="org:read")
declare(_ORG + "/effective-policies", GET="org:read")
# --- secrets, connectors, imports (2.14-2.16; routes/secrets.py, routes/connectors.py) ---
ACTIONS.update({
    "secret:read": "list secret names and timestamps (values are never listed)",
    "secret:write": "read a secret's value; create, replace and delete secrets",
    "connector:read": "list and get organization connectors and a repository's connectors",
    "connector:write": "attach and detach connectors to and from a repository",
    "connector:admin": "create, disable and delete organization connectors (config and "
                       "credentials)",
    "import:read": "read import job status",
    "import:write": "start imports into a repository (from a connector or a repository)",
})
declare(_R + "/secrets", GET="secret:read")
declare(_R + "/secrets/{name}", GET="secret:write", PUT="secret:write", DELETE="secret:write")
declare(_A + "/secrets", GET="secret:read")
declare(_A + "/secrets/{name}", GET="secret:write", PUT="secret:write", DELETE="secret:write")
declare(_ORG + "/connectors", GET="connector:read", POST="connector:admin")
declare(_ORG + "/connectors/{connector_id}", GET="connector:read", DELETE="connector:admin",
        PATCH="connector:admin")
declare(_R + "/connectors", GET="connector:read", POST="connector:write")
declare(_R + "/connectors/{connector_id}", DELETE="connector:write")
declare(_R + "/import", POST="import:write")
declare(_R + "/import/{job_id}", GET="import:read")
