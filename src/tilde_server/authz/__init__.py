"""Authorization: every /api/v1 request is checked against the caller's Rego policies.

How a request is authorized (docs/authorization.md has the user-facing version):

    bearer key -> Principal (app.py middleware) -> route's Checks (actions.ROUTE_ACTIONS)
    -> effective policies of the principal in the addressed organization
       (direct attachments, through groups, the built-in policy of its organization role,
        an agent's inline policy) -> one Rego decision per check -> 403 when any is denied.

Plugging a new route in (the stable mechanism other route modules rely on):

    from tilde_server.authz import declare
    declare("/organizations/{org}/secrets", GET="secret:read", PUT="secret:write")

`declare` takes the route's path template exactly as written in its `Route(...)` (relative to
/api/v1) and, per HTTP method, an action name or a tuple of `Check`s (a check can name an
object path taken from the query or the JSON body, see `actions.Check`). Call it at import
time of the route module. A route that nobody declared makes the application refuse to start
(`enforce.protect_routes` raises), so no route is ever served unchecked by accident.

Built-in role policies grant by action *suffix*: readers get every `*:read` action, members
also `*:write` ones (see builtin.py), so a new noun's actions should end in `:read` (safe to
show any organization reader), `:write` (members) or `:admin` (owners and admins only).
"""

from tilde_server.authz.actions import ACTIONS, ROUTE_ACTIONS, Check, declare

__all__ = ["ACTIONS", "ROUTE_ACTIONS", "Check", "declare"]
