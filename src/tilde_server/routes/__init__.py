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

api_routes: list[BaseRoute] = [*orgs.routes, *commits.routes, *objects.routes,
                               *identity.routes, *secrets.routes, *connectors.routes,
                               *sandboxes.routes, *sandbox_triggers.routes]
upload_routes: list[BaseRoute] = [*objects.upload_routes, *sandboxes.credential_routes]

__all__ = ["api_routes", "upload_routes"]
