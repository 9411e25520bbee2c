"""``SandboxCredentialsProvider``: short-lived tokens from ``TILDE_SANDBOX_CREDENTIALS_URI``.

Code running inside a sandbox has no API key; the sandbox runtime hands it a metadata
endpoint instead (spec 1.2, 2.17). The client asks the provider for a token before every
request and every WebSocket handshake, so the provider must be cheap when the cached token
is fresh and safe to call from many threads:

1. One lock guards the cache and the fetch, so concurrent callers wait for one refresh
   instead of each fetching (a thundering herd against the metadata endpoint).
2. A token is refreshed when fewer than 2 minutes of validity remain, so a request never
   goes out with a token that expires on the way.
3. The fetch sends no Authorization header (the endpoint authenticates by where the call
   comes from), follows no redirects, and accepts exactly 200: anything else is a
   ``ConfigurationError`` carrying the status and the start of the body. Bad JSON or
   ill-typed fields are a ``SerializationError``; network failures a ``TransportError``.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import httpx

from . import _wire
from ._values import SandboxCredentials
from .exceptions import ConfigurationError, SerializationError, TransportError

__all__ = ["SandboxCredentials", "SandboxCredentialsProvider"]


class SandboxCredentialsProvider:
    """Fetches and caches the sandbox's short-lived bearer token (thread-safe)."""

    def __init__(self, credentials_uri: str, *, http_client: httpx.Client | None = None,
                 timeout: float = 5.0) -> None:
        if not credentials_uri:
            raise ValueError("credentials_uri must not be empty")
        self._uri = credentials_uri
        self._timeout = timeout
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)
        self._lock = threading.Lock()
        self._cached: SandboxCredentials | None = None
        self._closed = False

    @property
    def credentials_uri(self) -> str:
        return self._uri

    def get_credentials(self, *, force_refresh: bool = False) -> SandboxCredentials:
        """The cached credentials, fetched anew when forced or close to expiry."""
        with self._lock:
            cached = self._cached
            if force_refresh or cached is None or self._expiring(cached):
                cached = self._cached = self._fetch()
            return cached

    def get_token(self) -> str:
        return self.get_credentials().access_token

    def invalidate(self) -> None:
        """Forget the cached token; the next call fetches a new one."""
        with self._lock:
            self._cached = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> SandboxCredentialsProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SandboxCredentialsProvider({self._uri!r})"

    @staticmethod
    def _expiring(credentials: SandboxCredentials) -> bool:
        margin = timedelta(seconds=_wire.CREDENTIALS_REFRESH_MARGIN_SECONDS)
        return datetime.now(UTC) + margin >= credentials.expires_at

    def _fetch(self) -> SandboxCredentials:
        try:
            response = self._http.get(self._uri, timeout=self._timeout,
                                      follow_redirects=False)
        except httpx.TransportError as exc:
            raise TransportError(f"GET {self._uri} failed: {exc}", exc) from exc
        if response.status_code != 200:
            raise ConfigurationError(
                f"sandbox credentials endpoint {self._uri} answered {response.status_code}: "
                f"{response.text[:200]}")
        try:
            body = json.loads(response.content)
            return _wire.parse_sandbox_credentials(body)
        except ValueError as exc:
            raise SerializationError(
                f"sandbox credentials from {self._uri} are unusable: {exc}") from exc
