"""HTTP routes: thin adapters from requests to store calls (one module per noun group)."""

from starlette.routing import BaseRoute

from tilde_server.routes import (
    commits,
    connectors,
    identity,
    objects,
    orgs,
    sandbox_triggers,
    sandboxes,
    secrets,
)


def api_routes_for(wire: str) -> tuple[list[BaseRoute], list[BaseRoute]]:
    """(the /api/v1 routes of wire dialect `wire`, the 405 routes for what it refuses)."""
    served, refused = objects.routes_for(wire)
    plain: list[BaseRoute] = [*orgs.routes, *commits.routes_for(wire), *served, *identity.routes,
                              *secrets.routes, *connectors.routes, *sandboxes.routes,
                              *sandbox_triggers.routes]
    return plain, refused


upload_routes: list[BaseRoute] = [*objects.upload_routes, *sandboxes.credential_routes]

__all__ = ["api_routes_for", "upload_routes"]
