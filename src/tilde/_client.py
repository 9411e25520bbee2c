"""``Client``: owns the HTTP connection pool and turns ``_wire`` requests into responses.

This is the only module of the sync client that touches the network. Its rules:

1. Every API request carries ``Authorization: Bearer <token>``, obtained again per request
   (a credentials provider may rotate it). No token -> ``ConfigurationError`` at the first
   request, never at construction.
2. Requests use absolute URLs built from the base URL, so a caller-supplied ``httpx_client``
   works as is (no base URL or User-Agent is added to it, and it is not closed).
3. Redirects are followed only where the protocol says so (object GET, always: see
   ``resources/reader.py``); any other 3xx is an ``APIError``. httpx drops
   ``Authorization`` on cross-origin redirects.
4. httpx transport failures become ``TransportError`` with the original chained.
5. Presigned PUTs carry no Authorization and ``Content-Type: application/octet-stream``;
   any non-2xx there is a ``TransportError`` (1.5).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx

from . import _config, _wire
from ._pagination import PageIterator
from .exceptions import ConfigurationError, SerializationError, TransportError

if TYPE_CHECKING:
    from .resources.organizations import Organization, Organizations
    from .resources.repositories import Repository

T = TypeVar("T")

Content = bytes | Iterable[bytes] | Any


class CredentialsProvider(Protocol):
    def get_token(self) -> str: ...


class Client:
    """Connection to one Tilde endpoint (spec 3.2).

    ``Client(*, endpoint_url=None, api_key=None, default_sandbox_image=None,
    credentials_provider=None, extra_user_agent=None, httpx_client=None)``; settings not
    given come from the environment or ``~/.tilde/config.yaml`` (see ``tilde._config``).
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        api_key: str | None = None,
        default_sandbox_image: str | None = None,
        credentials_provider: CredentialsProvider | None = None,
        extra_user_agent: str | None = None,
        httpx_client: httpx.Client | None = None,
    ) -> None:
        settings = _config.resolve(endpoint_url=endpoint_url, api_key=api_key,
                                   default_sandbox_image=default_sandbox_image)
        self._endpoint_url = settings.endpoint_url
        self._base_url = _wire.base_url(settings.endpoint_url)
        self._api_key = settings.api_key
        self._default_sandbox_image = settings.default_sandbox_image
        self._credentials_provider = credentials_provider
        if credentials_provider is None and settings.credentials_uri:
            # Inside a sandbox (1.2 step 3): short-lived tokens from the metadata endpoint.
            from ._credentials import SandboxCredentialsProvider

            self._credentials_provider = SandboxCredentialsProvider(settings.credentials_uri)
        self._user_agent = _wire.USER_AGENT + (f" {extra_user_agent}" if extra_user_agent else "")
        if httpx_client is None:
            self._http = httpx.Client(headers={"User-Agent": self._user_agent})
            self._owns_http = True
        else:
            self._http = httpx_client
            self._owns_http = False
        # 2.5.6: a 501 from multipart initiate/complete switches this client to single uploads.
        self._upload_state = _wire.UploadState()
        # tilde-api-changes.md 5.5: set once a server showed it has no /exec shell transport.
        self._shell_over_terminal = False
        self._closed = False

    # --- public surface --------------------------------------------------------------

    def repository(self, repo_path: str) -> Repository:
        """Handle for ``org/repo``; sends no request."""
        from .resources.repositories import Repository

        org, repo = _wire.split_repo_path(repo_path)
        return Repository(self, org, repo)

    def organization(self, name: str) -> Organization:
        """Handle for one organization; sends no request until a field is read."""
        from .resources.organizations import Organization

        if not name:
            raise ValueError("organization name must not be empty")
        return Organization(self, name)

    @property
    def organizations(self) -> Organizations:
        from .resources.organizations import Organizations

        return Organizations(self)

    @property
    def endpoint_url(self) -> str:
        return self._endpoint_url

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def default_sandbox_image(self) -> str:
        return self._default_sandbox_image

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            self._http.close()
        closer = getattr(self._credentials_provider, "close", None)
        if callable(closer):
            closer()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(endpoint_url={self._endpoint_url!r})"

    # --- plumbing for the resources ---------------------------------------------------

    def _token(self) -> str:
        if self._credentials_provider is not None:
            return self._credentials_provider.get_token()
        if self._api_key:
            return self._api_key
        raise ConfigurationError(
            "no Tilde API key: pass api_key=..., set TILDE_API_KEY, or put api_key in "
            "~/.tilde/config.yaml")

    def _url(self, wire: _wire.WireRequest) -> str:
        return self._base_url + wire.path

    def _build(self, wire: _wire.WireRequest) -> httpx.Request:
        headers = {"Authorization": f"Bearer {self._token()}", **dict(wire.headers)}
        return self._http.build_request(
            wire.method, self._url(wire), params=list(wire.params) or None,
            json=wire.json, headers=headers)

    def _send(self, wire: _wire.WireRequest, *, stream: bool = False,
              follow_redirects: bool = False, check: bool = True) -> httpx.Response:
        request = self._build(wire)
        try:
            response = self._http.send(request, stream=stream, follow_redirects=follow_redirects)
        except httpx.TransportError as exc:
            raise TransportError(f"{wire.method} {request.url} failed: {exc}", exc) from exc
        if check and not response.is_success:
            raise self._error(response)
        return response

    def _error(self, response: httpx.Response) -> Exception:
        try:
            body = response.read()
        except httpx.HTTPError:
            body = b""
        finally:
            response.close()
        return _wire.error_for_response(response.status_code, method=response.request.method,
                                        url=str(response.request.url), body=body)

    def _call(self, wire: _wire.WireRequest) -> Any:
        """Send and decode the JSON answer (None for an empty body, e.g. 204)."""
        response = self._send(wire)
        return self._decode(response)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if not response.content:
            return None
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise SerializationError(
                f"{response.request.method} {response.request.url}: response is not JSON"
            ) from exc

    def _paginate(self, make: Callable[[str | None], _wire.WireRequest],
                  parse_item: Callable[[dict[str, Any]], T],
                  after: str | None = None) -> PageIterator[T]:
        return PageIterator(lambda cursor: self._call(make(cursor)), parse_item, after)

    def _put_presigned(self, url: str, content: Content,
                       content_length: int | None = None) -> httpx.Response:
        """PUT bytes to a presigned URL: no Authorization, non-2xx -> TransportError.

        A streamed body of known length goes out with Content-Length, otherwise chunked.
        """
        headers = {"Content-Type": _wire.UPLOAD_CONTENT_TYPE}
        if content_length is not None:
            headers["Content-Length"] = str(content_length)
        try:
            response = self._http.put(url, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise TransportError(f"PUT {url} failed: {exc}", exc) from exc
        if not response.is_success:
            raise TransportError(
                f"PUT {url} -> {response.status_code}: {response.text[:200]}")
        return response

    def _ws_connect(self, path: str) -> Any:
        """Open a WebSocket to ``{ws-base}{path}`` with the bearer token (2.8.4, 1.4).

        The websockets library's own User-Agent is sent (as 0.7.2 does), inbound messages
        are capped at 1 MiB, compression is offered. Handshake failures are the library's
        exceptions; the shell turns them into ``SandboxError``.
        """
        from websockets.sync.client import connect

        from . import _ws_wire

        return connect(
            _wire.websocket_url(self._base_url, path),
            additional_headers={"Authorization": f"Bearer {self._token()}"},
            open_timeout=_ws_wire.OPEN_TIMEOUT, close_timeout=_ws_wire.CLOSE_TIMEOUT,
            max_size=_ws_wire.MAX_MESSAGE_SIZE)
