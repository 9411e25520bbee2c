"""Tilde client: versioned data repositories with transactional sessions.

The public surface of the official tilde-sdk 0.7.2 (``tilde.repository``,
``tilde.configure``, ``tilde.organizations``, ``Client``, the exception tree), plus the
README names ``tilde.organization``, ``Repository.timeline`` and ``Repository.objects``.
Module-level helpers go through one lazily created default client.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ._client import Client
from .exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CommandError,
    ConfigurationError,
    ConflictError,
    ForbiddenError,
    GoneError,
    LockedError,
    NotFoundError,
    PreconditionFailedError,
    SandboxError,
    SerializationError,
    ServerError,
    TildeError,
    TransportError,
)

if TYPE_CHECKING:
    from .models import Organization, Organizations, Repository

__version__ = "0.7.2"

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "CommandError",
    "ConfigurationError",
    "ConflictError",
    "ForbiddenError",
    "GoneError",
    "LockedError",
    "NotFoundError",
    "PreconditionFailedError",
    "SandboxError",
    "SerializationError",
    "ServerError",
    "TildeError",
    "TransportError",
    "__version__",
    "configure",
    "organization",
    "organizations",
    "repository",
]

_default_client: Client | None = None
_default_lock = threading.Lock()


def _get_default_client() -> Client:
    global _default_client
    with _default_lock:
        if _default_client is None:
            _default_client = Client()
        return _default_client


def configure(*, api_key: str | None = None, endpoint_url: str | None = None,
              default_sandbox_image: str | None = None,
              credentials_provider: Any = None) -> None:
    """Close the default client and replace it with one built from these settings."""
    global _default_client
    new = Client(api_key=api_key, endpoint_url=endpoint_url,
                 default_sandbox_image=default_sandbox_image,
                 credentials_provider=credentials_provider)
    with _default_lock:
        old, _default_client = _default_client, new
    if old is not None:
        old.close()


def repository(repo_path: str) -> Repository:
    """Handle for ``org/repo`` through the default client; sends no request."""
    return _get_default_client().repository(repo_path)


def organization(name: str) -> Organization:
    """Handle for one organization through the default client; sends no request."""
    return _get_default_client().organization(name)


def __getattr__(name: str) -> Any:
    # ``tilde.organizations`` is evaluated on each access, so it follows configure().
    if name == "organizations":
        return _get_default_client().organizations
    raise AttributeError(f"module 'tilde' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"organizations"})


if TYPE_CHECKING:
    organizations: Organizations
