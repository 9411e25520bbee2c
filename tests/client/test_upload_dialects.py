"""The upload plan (tilde._wire.uploads) in today's dialect, driven by the bundled client over
httpx.MockTransport: exact request shapes of the service's current routes, the multipart
fallbacks, and the probe that must not remember a "legacy" server it never saw work.

Against real servers (tilde-server --wire current / legacy / all) the same code runs in
the behaviour suites (scripts/test.sh runs tests/client once per dialect).
"""

from __future__ import annotations

import json

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
from tilde.exceptions import NotFoundError, TransportError

R = "/api/v1/organizations/o/repositories/r"


class Current(Recording):
    """Answers like openapi-current.yaml: legacy routes 405, part URLs as JSON."""

    def __init__(self, *, part_lookup: int = 200, complete: int = 201,
                 session_missing: bool = False) -> None:
        super().__init__()
        self.part_lookup, self.complete = part_lookup, complete
        self.session_missing = session_missing

    def answer(self, req: httpx.Request) -> httpx.Response:
        p, m = req.url.path, req.method
        if self.session_missing and p.startswith(R + "/object"):
            return httpx.Response(404, json={"message": "session not found",
                                             "code": "session_not_found"})
        if p == f"{R}/object" and m == "PUT":
            return httpx.Response(200, json={"upload_url": "https://store.test/put?sig=1",
                                             "upload_token": "UT"})
        if p == "/put" or p.startswith("/part/"):
            return httpx.Response(200, headers={"ETag": f'"md5-{p[-1]}"'})
        if p == f"{R}/object/finalize" and m == "POST":
            return httpx.Response(201, json={"path": req.url.params["path"]})
        if p == f"{R}/object/multipart" and m == "POST":
            return httpx.Response(200, json={"upload_id": "U", "upload_token": "MT"})
        if p == f"{R}/object/multipart/part":
            if self.part_lookup != 200:
                return httpx.Response(self.part_lookup, json={"message": "no"})
            return httpx.Response(200, json={
                "upload_url": f"https://store.test/part/{req.url.params['part_number']}"})
        if p == f"{R}/object/multipart/complete":
            if self.complete != 201:
                return httpx.Response(self.complete, json={"message": "no"})
            return httpx.Response(201, json={"path": req.url.params["path"]})
        if p == f"{R}/object/multipart" and m == "DELETE":
            return httpx.Response(204)
        return httpx.Response(405, json={"message": f"{m} {p} is not a route"})


def test_single_upload_in_the_current_dialect() -> None:
    srv = Current()
    c = mock_client(srv)
    result = session_objects(c).put("a b+c", b"hello")
    assert srv.paths() == [f"PUT {R}/object", "PUT /put", f"POST {R}/object/finalize"]
    probe, put, _ = srv.requests
    assert probe.url.params["path"] == "a b+c" and srv.bodies[0] == b""
    assert "Authorization" not in put.headers and srv.bodies[1] == b"hello"
    assert json.loads(srv.bodies[2]) == {"upload_token": "UT",
                                         "content_type": "application/octet-stream",
                                         "checksum": "md5-t", "size_bytes": 5}
    # the service's finalize names no etag: the body PUT's checksum stands in
    assert (result.path, result.etag) == ("a b+c", "md5-t")
    assert c._upload_state.single == "current"


@pytest.mark.usefixtures("small_parts")
def test_multipart_in_the_current_dialect() -> None:
    srv = Current()
    c = mock_client(srv)
    session_objects(c).put("big", b"0123456789" * 2 + b"xyz")
    lookups = [r for r in srv.requests if r.url.path.endswith("/multipart/part")]
    assert [list(r.url.params.keys()) for r in lookups] == [
        ["session_id", "path", "upload_id", "upload_token", "part_number"]] * 3
    assert [r.url.params["part_number"] for r in lookups] == ["1", "2", "3"]
    complete = json.loads(srv.bodies[srv.paths().index(f"POST {R}/object/multipart/complete")])
    assert complete == {"upload_id": "U", "upload_token": "MT",
                        "parts": [{"part_number": n, "etag": f'"md5-{n}"'} for n in (1, 2, 3)],
                        "content_type": "application/octet-stream", "size_bytes": 23}


@pytest.mark.usefixtures("small_parts")
def test_501_from_the_part_lookup_aborts_by_delete_and_falls_back() -> None:
    srv = Current(part_lookup=501)
    c = mock_client(srv)
    session_objects(c).put("big", b"z" * 25)
    assert srv.paths() == [f"POST {R}/object/multipart", f"GET {R}/object/multipart/part",
                           f"DELETE {R}/object/multipart", f"PUT {R}/object", "PUT /put",
                           f"POST {R}/object/finalize"]
    abort = srv.requests[2]
    assert dict(abort.url.params) == {"session_id": "s1", "path": "big", "upload_id": "U",
                                      "upload_token": "MT"}
    assert srv.bodies[4] == b"z" * 25
    assert not c._upload_state.multipart


@pytest.mark.usefixtures("small_parts")
def test_a_failed_part_aborts_and_reraises() -> None:
    srv = Current(complete=500)
    c = mock_client(srv)
    with pytest.raises(tilde.exceptions.ServerError):
        session_objects(c).put("big", b"a" * 30)
    assert srv.paths()[-1] == f"DELETE {R}/object/multipart"
    assert c._upload_state.multipart


def test_a_404_for_a_missing_session_is_not_taken_for_a_legacy_server() -> None:
    srv = Current(session_missing=True)
    c = mock_client(srv)
    with pytest.raises(NotFoundError) as info:
        session_objects(c).put("a", b"x")
    assert info.value.code == "session_not_found"
    # the stage probe answered too, but nothing was learned from two refusals
    assert srv.paths() == [f"PUT {R}/object", f"POST {R}/object/stage"]
    assert c._upload_state.single == "unknown"


def test_an_ede_era_direct_upload_answer_means_legacy() -> None:
    seen: list[str] = []

    def ede(req: httpx.Request) -> httpx.Response:
        seen.append(f"{req.method} {req.url.path}")
        p = req.url.path
        if p == f"{R}/object" and req.method == "PUT":  # a zero-byte direct upload
            return httpx.Response(201, json={"path": "a", "etag": "d41d8cd9"})
        if p == f"{R}/object/stage":
            return httpx.Response(200, json={"upload_url": "/blob/1", "physical_address": "pa",
                                             "signature": "s",
                                             "expires_at": "2030-01-01T00:00:00Z"})
        if p == "/api/v1/blob/1":
            return httpx.Response(200, headers={"ETag": '"e"'})
        return httpx.Response(200, json={"path": "a", "etag": "e"})

    c = mock_client(ede)
    assert session_objects(c).put("a", b"data").etag == "e"
    assert seen == [f"PUT {R}/object", f"POST {R}/object/stage", "PUT /api/v1/blob/1",
                    f"PUT {R}/object/finalize"]
    assert c._upload_state.single == "legacy"


def test_a_part_lookup_without_any_url_is_a_transport_error() -> None:
    with pytest.raises(TransportError):
        _wire.part_upload_url("http://x/api/v1", 200, {}, {"nothing": 1})
    assert _wire.part_upload_url("http://x/api/v1", 307, {"Location": "/p?1"}, None) == \
        "http://x/api/v1/p?1"
    assert _wire.part_upload_url("http://x/api/v1", 200, {}, {"upload_url": "https://s/p"}) == \
        "https://s/p"
