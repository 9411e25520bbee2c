"""Deciding and enforcing: the Rego decision per check, and the wrapper every route gets.

Subtleties:
1. The decision over a principal's effective policies: denied if any policy's `deny` holds,
   else allowed if any policy's `allow` holds, else denied (no policy: nothing allowed).
2. Server admins (the bootstrap `admin`, users added with `--admin`) skip evaluation.
3. `session:admin` (approving commits) is for users only, whatever the policies say.
   An agent is allowed an action only if its own policies allow it *and* its creator's would
   (product rule: an agent never exceeds its creator).
4. All checks of one request are decided in one worker-thread hop with one database snapshot;
   a request naming many paths (delete many) costs one evaluation per path and policy.
5. The input document (docs/authorization.md):
   {principal: {type, id, name, roles, groups}, action, organization, repository, path}.
6. `handler:` checks (paths inside a streamed, non-JSON body) are left to the endpoint, which
   must call `authorize_paths` before it writes anything; one that answers without having
   done so is a bug and ends in a logged 500, never in an unchecked success.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tilde_server.authz.actions import GLOBAL_ACTIONS, Check, checks_for
from tilde_server.authz.rego import PolicyCache
from tilde_server.store.engine import Principal
from tilde_server.store.errors import Forbidden, NotFound
from tilde_server.store.identity import EffectivePolicy, Identity

Endpoint = Callable[[Request], Awaitable[Response]]

# Whatever their policies say, agents and roles never approve commits (the approval exists
# to put a person between an agent and the repository).
HUMAN_ONLY = frozenset({"session:admin"})
# The action of a sandbox's outbound request (sandbox/egress_rules.py, docs/sandboxes.md).
NETWORK_ACTION = "network:request"
# Where the guard leaves a route's `handler:` checks for `authorize_paths` (request scope).
_DEFERRED = "tilde.authz.deferred"


class Authorizer:
    """Decides (principal, action, organization, repository, path) questions."""

    def __init__(self, identity: Identity, cache: PolicyCache | None = None) -> None:
        self.identity = identity
        self.cache = cache or PolicyCache()

    def _allowed(self, policies: Sequence[EffectivePolicy], doc: dict[str, Any]) -> bool:
        decisions = self.cache.evaluate_all([p.policy_text for p in policies], doc)
        if any(d.deny for d in decisions):
            return False
        return any(d.allow for d in decisions)

    def require(self, who: Principal, org: str | None, repo: str | None,
                items: Sequence[tuple[str, str | None]]) -> None:
        """Raise Forbidden unless every (action, path) of `items` is allowed."""
        for action, _ in items:
            if action in HUMAN_ONLY and who.type != "user":
                raise Forbidden(f"only a person may {action}; a {who.type} never can",
                                "forbidden")
        if who.is_admin:
            return
        if org is None:
            for action, _ in items:
                if action not in GLOBAL_ACTIONS:
                    raise Forbidden(f"action {action} needs an organization")
                if action == "org:create" and who.type != "user":
                    raise Forbidden(f"a {who.type} cannot create organizations")
            return
        self._require_in_org(who, org, repo, items, depth=0)

    def _require_in_org(self, who: Principal, org: str, repo: str | None,
                        items: Sequence[tuple[str, str | None]], depth: int) -> None:
        ctx = self.identity.authz_context(org, who)
        if ctx is None:
            raise NotFound(f"organization {org!r} not found")
        _, principal_doc, policies, creator = ctx
        for action, path in items:
            doc = {"principal": principal_doc, "action": action, "organization": org,
                   "repository": repo, "path": path}
            if not self._allowed(policies, doc):
                where = f" on {path!r}" if path is not None else ""
                raise Forbidden(f"{who.type} {who.username!r} is not allowed {action}{where} "
                                f"in organization {org!r}", "forbidden")
        if creator is not None and not creator.is_admin:
            if depth > 8:
                raise Forbidden("agent creator chain too deep")
            try:
                self._require_in_org(creator, org, repo, items, depth + 1)
            except Forbidden:
                raise Forbidden(f"agent {who.username!r} may not exceed its creator "
                                f"{creator.username!r}", "forbidden") from None


    def network_verdict(self, who: Principal, org: str, repo: str | None,
                        extra: dict[str, Any], depth: int = 0) -> tuple[bool | None, str]:
        """The organization's network policies on one sandbox request (action
        `network:request`, input extended by `extra`): (True, policy) allowed, (False, policy)
        denied, (None, "") when no policy says anything.

        The built-in role policies are left out (they grant by action suffix and would give
        every owner an open network), and so are server admins' exemptions: egress is
        granted only by policies someone wrote for it. An agent never exceeds its creator."""
        ctx = self.identity.authz_context(org, who)
        if ctx is None:
            return None, ""
        _, principal_doc, policies, creator = ctx
        chosen = [p for p in policies if p.source != "role" and not p.is_builtin]
        doc = {"principal": principal_doc, "action": NETWORK_ACTION, "organization": org,
               "repository": repo, "path": None, **extra}
        decisions = self.cache.evaluate_all([p.policy_text for p in chosen], doc)
        denied = next((p for p, d in zip(chosen, decisions, strict=True) if d.deny), None)
        if denied is not None:
            return False, denied.policy_name
        allowed = next((p for p, d in zip(chosen, decisions, strict=True) if d.allow), None)
        if allowed is None:
            return None, ""
        if creator is not None and not creator.is_admin and depth <= 8:
            verdict, name = self.network_verdict(creator, org, repo, extra, depth + 1)
            if verdict is not True:
                return verdict, name
        return True, allowed.policy_name


async def _paths(request: Request, source: str) -> list[str | None]:
    where, _, name = source.partition(":")
    if where == "query":
        return [request.query_params.get(name)]
    raw = await request.body()  # cached by Starlette: the endpoint reads the same bytes
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        return [None]  # the endpoint answers 400 for this body
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        return [None]
    return list(value) or [None]


def _guard(template: str, endpoint: Endpoint) -> Endpoint:
    from tilde_server.routes.common import principal, run

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        checks = checks_for(template, request.method)
        if checks is None:
            raise Forbidden(f"{request.method} {template} has no declared action")
        items: list[tuple[str, str | None]] = []
        deferred = [c for c in checks if (c.path_from or "").startswith("handler:")]
        for check in checks:
            if check in deferred:
                continue
            paths = await _paths(request, check.path_from) if check.path_from else [None]
            items.extend((check.action, p) for p in paths)
        if items:
            authorizer: Authorizer = request.app.state.authorizer
            await run(authorizer.require, principal(request), request.path_params.get("org"),
                      request.path_params.get("repo"), items)
        if not deferred:
            return await endpoint(request)
        request.scope[_DEFERRED] = deferred
        response = await endpoint(request)
        if request.scope.get(_DEFERRED):
            raise RuntimeError(f"{request.method} {template} answered without deciding its "
                               f"checks {deferred} (enforce.authorize_paths)")
        return response

    return guarded


async def authorize_paths(request: Request, paths: Sequence[str]) -> None:
    """Decide the route's `handler:` checks once per path (an empty list: once without a
    path, as delete-many does); Forbidden unless all are allowed."""
    from tilde_server.routes.common import principal, run

    checks: list[Check] = request.scope.pop(_DEFERRED, [])
    decided: list[str | None] = [*paths] or [None]
    items = [(c.action, p) for c in checks for p in decided]
    authorizer: Authorizer = request.app.state.authorizer
    await run(authorizer.require, principal(request), request.path_params.get("org"),
              request.path_params.get("repo"), items)


def protect_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """Wrap every route's endpoint with its authorization; refuse undeclared routes."""
    out: list[BaseRoute] = []
    missing = []
    for r in routes:
        if not isinstance(r, Route):
            raise TypeError(f"cannot protect route {r!r}: only plain Routes are supported")
        methods = sorted((r.methods or set()) - {"HEAD"})
        for m in methods:
            if checks_for(r.path, m) is None:
                missing.append(f"{m} {r.path}")
        out.append(Route(r.path, _guard(r.path, r.endpoint), methods=methods, name=r.name))
    if missing:
        raise RuntimeError("routes without a declared action (tilde_server.authz.declare): "
                           + ", ".join(missing))
    return out


__all__ = ["Authorizer", "Check", "authorize_paths", "protect_routes"]
