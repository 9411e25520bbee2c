"""The bundled client over httpx.MockTransport, for the unit tests of single wire edges
(tests/client/test_client_edges.py, test_upload_dialects.py, test_object_reader.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

import tilde
from tilde import _wire

Handler = Callable[[httpx.Request], httpx.Response]


def mock_client(handler: Handler, **kw: Any) -> tilde.Client:
    """A client whose every request goes to ``handler``, with the client's own headers."""
    c = tilde.Client(endpoint_url="http://tilde.test", api_key="k", **kw)
    c._http.close()  # swap the pool for a mock transport, keeping the client's own headers
    c._http = httpx.Client(transport=httpx.MockTransport(handler),
                           headers={"User-Agent": c._user_agent})
    return c


def session_objects(client: tilde.Client) -> Any:
    """The objects of session ``s1`` of ``o/r`` (no request: attach sends nothing)."""
    return client.repository("o/r").attach("s1").objects


class Recording:
    """A handler that keeps every request and its body; subclasses answer in ``answer``."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        self.bodies.append(req.read())
        return self.answer(req)

    def answer(self, req: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uploads of 10 bytes or more go multipart, in parts of 10 bytes. The client reads both
    limits from the ``_wire`` package when it plans an upload."""
    monkeypatch.setattr(_wire, "SINGLE_UPLOAD_LIMIT", 10)
    monkeypatch.setattr(_wire, "MULTIPART_PART_SIZE", 10)
