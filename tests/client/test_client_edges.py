"""Client edges checked with httpx.MockTransport: headers, 501 fallback, multipart part
lookup, abort on failure, approval polling, transport and JSON errors.

Behaviour against a real server lives in test_behaviour.py; these cover what a
correct server never does (501, refused uploads, broken JSON) or needs a sleep (202).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from mockhttp import (  # tests/client is on sys.path
    Recording,
    mock_client,
    session_objects,
    small_parts,  # noqa: F401  (a fixture, used by name)
)

import tilde
from tilde import _wire
from tilde.exceptions import (
    APIError,
    ConfigurationError,
    NotFoundError,
    SerializationError,
    ServerError,
    TransportError,
)

BASE = "http://tilde.test/api/v1"
R = "/api/v1/organizations/o/repositories/r"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder(Recording):
    """Records requests and answers a scripted multipart/single upload flow in the legacy
    dialect (0.7.2-0.7.6 servers: ``PUT {R}/object`` is not a route there)."""

    def __init__(self, *, initiate: int = 200, complete: int = 200, part_put: int = 200):
        super().__init__()
        self.initiate, self.complete, self.part_put = initiate, complete, part_put

    def answer(self, req: httpx.Request) -> httpx.Response:
        p = req.url.path
        if p == f"{R}/object" and req.method == "PUT":
            return httpx.Response(405, json={"message": "method not allowed"})
        if p == f"{R}/object/multipart":
            if self.initiate != 200:
                return httpx.Response(self.initiate, json={"message": "no multipart"})
            return httpx.Response(201, json={"upload_id": "u", "physical_address": "pa",
                                             "token": "t"})
        if p == f"{R}/object/multipart/part":
            n = req.url.params["part_number"]
            return httpx.Response(307, headers={"Location": f"/parts/{n}"})
        if p.startswith("/api/v1/parts/"):
            return httpx.Response(self.part_put, headers={"ETag": f'"etag-{p[-1]}"'})
        if p == f"{R}/object/multipart/complete":
            if self.complete != 200:
                return httpx.Response(self.complete, json={"message": "nope"})
            return httpx.Response(200, json={"path": req.url.params["path"], "etag": "m"})
        if p == f"{R}/object/multipart/abort":
            return httpx.Response(204)
        if p == f"{R}/object/stage":
            return httpx.Response(200, json={"upload_url": "http://blobs.test/up/1",
                                             "physical_address": "pa", "signature": "sig",
                                             "expires_at": "2030-01-01T00:00:00Z"})
        if p == "/up/1":
            return httpx.Response(200, headers={"ETag": '"s"'})
        if p == f"{R}/object/finalize":
            return httpx.Response(200, json={"path": req.url.params["path"], "etag": "s"})
        return httpx.Response(404, json={"message": f"unexpected {req.method} {p}"})


def test_headers_auth_and_user_agent() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"results": [{"id": "1", "name": "o"}]})

    c = mock_client(handler, extra_user_agent="my-app/1")
    orgs = list(c.organizations.list())
    assert [o.name for o in orgs] == ["o"] and orgs[0].id == "1"
    assert seen[0].headers["Authorization"] == "Bearer k"
    assert seen[0].headers["User-Agent"] == f"{_wire.USER_AGENT} my-app/1"
    assert str(seen[0].url) == f"{BASE}/organizations"


def test_missing_key_fails_at_first_request(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TILDE_API_KEY", raising=False)
    c = tilde.Client(endpoint_url="http://tilde.test")
    repo = c.repository("o/r")  # building handles never fails
    with pytest.raises(ConfigurationError):
        _ = repo.description


def test_credentials_provider_token_per_request() -> None:
    tokens = iter(["t1", "t2"])

    class Provider:
        def get_token(self) -> str:
            return next(tokens)

    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.headers["Authorization"])
        return httpx.Response(200, json={"name": "r"})

    c = mock_client(handler, credentials_provider=Provider())
    c.repository("o/r").refresh().refresh()
    assert seen == ["Bearer t1", "Bearer t2"]


def test_transport_error_is_wrapped() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    c = mock_client(handler)
    with pytest.raises(TransportError) as info:
        c.organizations.get("o")
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_redirect_on_api_call_is_api_error_and_bad_json() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/organizations/o"):
            return httpx.Response(302, headers={"Location": "/elsewhere"})
        return httpx.Response(200, content=b"not json")

    c = mock_client(handler)
    with pytest.raises(APIError) as info:
        c.organizations.get("o")
    assert type(info.value) is APIError and info.value.status_code == 302
    with pytest.raises(SerializationError):
        c.organizations.get("p")


def test_single_upload_flow() -> None:
    rec = Recorder()
    c = mock_client(rec)
    result = session_objects(c).put("a.txt", b"hello")
    assert (result.path, result.etag) == ("a.txt", "s")
    # the current route first (405 here), then the legacy flow, remembered
    assert rec.paths() == [f"PUT {R}/object", f"POST {R}/object/stage", "PUT /up/1",
                           f"PUT {R}/object/finalize"]
    put = rec.requests[2]
    assert "Authorization" not in put.headers
    assert put.headers["Content-Type"] == "application/octet-stream"
    assert put.headers["User-Agent"].startswith(_wire.USER_AGENT)
    assert rec.bodies[2] == b"hello"
    fin = json.loads(rec.bodies[3])
    assert fin == {"physical_address": "pa", "signature": "sig",
                   "content_type": "application/octet-stream"}
    assert rec.requests[3].url.params["expires_at"] == "2030-01-01T00:00:00Z"
    rec.requests.clear()
    session_objects(c).put("b.txt", b"again")
    assert rec.paths()[0] == f"POST {R}/object/stage"


@pytest.mark.usefixtures("small_parts")
def test_multipart_parts_and_location() -> None:
    rec = Recorder()
    c = mock_client(rec)
    result = session_objects(c).put("big", b"0123456789" * 2 + b"xyz")
    assert result.etag == "m"
    lookups = [r for r in rec.requests if r.url.path.endswith("/multipart/part")]
    assert [r.url.params["part_number"] for r in lookups] == ["1", "2", "3"]
    assert all(r.headers["Authorization"] == "Bearer k" for r in lookups)
    part_puts = [(r, b) for r, b in zip(rec.requests, rec.bodies, strict=True)
                 if r.url.path.startswith("/api/v1/parts/")]
    assert [b for _, b in part_puts] == [b"0123456789", b"0123456789", b"xyz"]
    assert all("Authorization" not in r.headers for r, _ in part_puts)
    complete = json.loads(rec.bodies[rec.paths().index(f"POST {R}/object/multipart/complete")])
    assert complete["parts"] == [{"part_number": i, "etag": f'"etag-{i}"'} for i in (1, 2, 3)]
    assert complete["total_size"] == 23


@pytest.mark.usefixtures("small_parts")
def test_iterator_upload_unknown_size_goes_multipart() -> None:
    rec = Recorder()
    c = mock_client(rec)
    session_objects(c).put("it", iter([b"0123", b"456789ab", b"cdef"]))
    part_bodies = [b for r, b in zip(rec.requests, rec.bodies, strict=True)
                   if r.url.path.startswith("/api/v1/parts/")]
    assert part_bodies == [b"0123456789", b"abcdef"]
    rec2 = Recorder()
    c2 = mock_client(rec2)
    session_objects(c2).put("empty", iter([]))
    complete = json.loads(rec2.bodies[-1])
    assert complete["parts"] == [] and complete["total_size"] == 0


@pytest.mark.usefixtures("small_parts")
def test_501_on_initiate_falls_back_and_is_remembered(tmp_path: Path) -> None:
    rec = Recorder(initiate=501)
    c = mock_client(rec)
    f = tmp_path / "big.bin"
    f.write_bytes(b"z" * 25)
    assert session_objects(c).put("big", f).etag == "s"
    assert rec.paths() == [f"POST {R}/object/multipart", f"PUT {R}/object",
                           f"POST {R}/object/stage", "PUT /up/1", f"PUT {R}/object/finalize"]
    assert rec.bodies[3] == b"z" * 25 and rec.requests[3].headers["Content-Length"] == "25"
    rec.requests.clear()
    session_objects(c).put("big2", b"y" * 40)  # later puts go straight to single upload
    assert rec.paths()[0] == f"POST {R}/object/stage"


@pytest.mark.usefixtures("small_parts")
def test_501_on_complete_aborts_then_rewinds(tmp_path: Path) -> None:
    rec = Recorder(complete=501)
    c = mock_client(rec)
    f = tmp_path / "big.bin"
    f.write_bytes(b"q" * 25)
    with f.open("rb") as fh:
        session_objects(c).put("big", fh)
    paths = rec.paths()
    i = paths.index(f"POST {R}/object/multipart/complete")
    assert paths[i + 1:] == [f"POST {R}/object/multipart/abort", f"PUT {R}/object",
                             f"POST {R}/object/stage", "PUT /up/1", f"PUT {R}/object/finalize"]
    assert json.loads(rec.bodies[i + 1]) == {"token": "t", "upload_id": "u",
                                             "physical_address": "pa"}
    assert rec.bodies[i + 4] == b"q" * 25
    assert not c._upload_state.multipart


@pytest.mark.usefixtures("small_parts")
def test_failure_after_initiate_aborts_and_reraises() -> None:
    rec = Recorder(part_put=403)
    c = mock_client(rec)
    with pytest.raises(TransportError):
        session_objects(c).put("big", b"a" * 30)
    assert rec.paths()[-1] == f"POST {R}/object/multipart/abort"
    rec = Recorder(complete=500)
    c = mock_client(rec)
    with pytest.raises(ServerError):
        session_objects(c).put("big", b"a" * 30)
    assert rec.paths()[-1] == f"POST {R}/object/multipart/abort"
    assert c._upload_state.multipart


def test_commit_202_warns_and_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "APPROVAL_POLL_INTERVAL", 0)
    polls = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "POST":
            return httpx.Response(202, json={"web_url": "http://review/1"})
        if req.method == "HEAD":
            polls.append(req.url.path)
            return httpx.Response(200 if len(polls) < 3 else 404)
        return httpx.Response(500)

    c = mock_client(handler)
    s = c.repository("o/r").attach("s1")
    with pytest.warns(UserWarning, match="http://review/1"):
        assert s.commit("m") == ""
    assert polls == [f"{R}/sessions/s1/approve"] * 3
    with pytest.warns(UserWarning):
        assert s.commit("m", block_for_approval=False) is None
    result = s.commit_result("m")
    assert (result.status, result.web_url, result.commit_id) == (
        "approval_required", "http://review/1", None)


def test_pagination_is_lazy_and_stops() -> None:
    calls: list[httpx.URL] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url)
        after = req.url.params.get("after")
        if after is None:
            return httpx.Response(200, json={"results": [{"path": "a", "type": "object"}],
                                             "pagination": {"has_more": True,
                                                            "next_offset": "a"}})
        return httpx.Response(200, json={"results": [{"path": "b", "type": "object"}],
                                         "pagination": {"has_more": False}})

    c = mock_client(handler)
    it = c.repository("o/r").objects.list(amount=1)
    assert calls == [] and iter(it) is it
    assert [e.path for e in it] == ["a", "b"]
    assert [u.params.get("after") for u in calls] == [None, "a"]
    assert all(u.params["amount"] == "1" for u in calls)


def test_not_found_message_and_request_id() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"message": "object not found", "code": "not_found",
                                         "request_id": "req-9"})

    c = mock_client(handler)
    reader = c.repository("o/r").objects.get("nope")
    with pytest.raises(NotFoundError) as info:
        reader.read()
    err = info.value
    assert (err.message, err.request_id, err.method) == ("object not found", "req-9", "GET")
    assert str(err).startswith(f"GET {BASE}/organizations/o/repositories/r/object?path=nope")
