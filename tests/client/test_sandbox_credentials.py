"""SandboxCredentialsProvider and the TILDE_SANDBOX_CREDENTIALS_URI resolution (spec 1.2, 2.17).

The metadata endpoint is an httpx.MockTransport: these are unit tests of caching, refresh
and error mapping, which a real endpoint could not make misbehave on demand.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tilde import Client
from tilde._credentials import SandboxCredentialsProvider
from tilde.exceptions import ConfigurationError, SerializationError, TransportError

# a loopback port nobody listens on: every request here goes to a MockTransport anyway
URI = "http://127.0.0.1:9/v1/credentials"


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


class Endpoint:
    def __init__(self, lifetime: timedelta = timedelta(minutes=30), status: int = 200,
                 body: object = None, delay: float = 0.0) -> None:
        self.calls: list[httpx.Request] = []
        self.lifetime = lifetime
        self.status = status
        self.body = body
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.calls.append(request)
            n = len(self.calls)
        time.sleep(self.delay)
        body = self.body if self.body is not None else {
            "access_token": f"tok-{n}", "expires_at": _iso(self.lifetime),
            "principal_type": "user", "principal_id": "u1"}
        return httpx.Response(self.status, json=body)

    def provider(self) -> SandboxCredentialsProvider:
        return SandboxCredentialsProvider(
            URI, http_client=httpx.Client(transport=httpx.MockTransport(self)))


def test_token_is_cached_while_fresh() -> None:
    ep = Endpoint()
    p = ep.provider()
    assert p.get_token() == "tok-1" and p.get_token() == "tok-1"
    assert len(ep.calls) == 1
    assert "authorization" not in ep.calls[0].headers
    assert str(ep.calls[0].url) == URI and p.credentials_uri == URI
    creds = p.get_credentials()
    assert creds.principal_type == "user" and creds.principal_id == "u1"
    assert p.get_credentials(force_refresh=True).access_token == "tok-2"
    p.invalidate()
    assert p.get_token() == "tok-3"


def test_refresh_when_less_than_two_minutes_remain() -> None:
    ep = Endpoint(lifetime=timedelta(seconds=119))
    p = ep.provider()
    assert p.get_token() == "tok-1" and p.get_token() == "tok-2"
    ep2 = Endpoint(lifetime=timedelta(seconds=150))
    p2 = ep2.provider()
    assert p2.get_token() == p2.get_token() == "tok-1"


def test_concurrent_callers_share_one_fetch() -> None:
    ep = Endpoint(delay=0.2)
    p = ep.provider()
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda: tokens.append(p.get_token())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tokens == ["tok-1"] * 8 and len(ep.calls) == 1


@pytest.mark.parametrize("status", [201, 302, 403, 500])
def test_anything_but_200_is_a_configuration_error(status: int) -> None:
    p = Endpoint(status=status, body={"message": "nope"}).provider()
    with pytest.raises(ConfigurationError, match=str(status)):
        p.get_token()


def test_bad_body_is_a_serialization_error() -> None:
    p = Endpoint(body={"access_token": "", "expires_at": _iso(timedelta(hours=1))}).provider()
    with pytest.raises(SerializationError):
        p.get_token()


def test_network_failure_is_a_transport_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    p = SandboxCredentialsProvider(URI, http_client=httpx.Client(
        transport=httpx.MockTransport(refuse)))
    with pytest.raises(TransportError):
        p.get_token()


def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in ("TILDE_API_KEY", "TILDE_ENDPOINT_URL", "TILDE_API_URL",
              "TILDE_DEFAULT_SANDBOX_IMAGE"):
        monkeypatch.delenv(k, raising=False)


def test_client_uses_the_credentials_uri_only_without_a_static_key(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _isolated(monkeypatch, tmp_path)
    monkeypatch.setenv("TILDE_SANDBOX_CREDENTIALS_URI", URI)
    with Client() as c:
        assert isinstance(c._credentials_provider, SandboxCredentialsProvider)
        assert c._credentials_provider.credentials_uri == URI
    with Client(api_key="k") as c:
        assert c._credentials_provider is None and c._token() == "k"
    with Client(api_key="") as c:  # an explicit empty key turns auto-detection off (1.2)
        assert c._credentials_provider is None
        with pytest.raises(ConfigurationError):
            c._token()
    monkeypatch.setenv("TILDE_API_KEY", "envkey")
    with Client() as c:
        assert c._credentials_provider is None and c._token() == "envkey"
    monkeypatch.delenv("TILDE_API_KEY")
    monkeypatch.setenv("TILDE_SANDBOX_CREDENTIALS_URI", "")
    with Client() as c:
        assert c._credentials_provider is None


def test_default_sandbox_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _isolated(monkeypatch, tmp_path)
    assert Client().default_sandbox_image == "ubuntu"
    monkeypatch.setenv("TILDE_DEFAULT_SANDBOX_IMAGE", "python-312")
    assert Client().default_sandbox_image == "python-312"
    assert Client(default_sandbox_image="host").default_sandbox_image == "host"
    monkeypatch.setenv("TILDE_DEFAULT_SANDBOX_IMAGE", "")
    assert Client().default_sandbox_image == ""
