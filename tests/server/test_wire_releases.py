"""Every official client release's request flow, replayed over plain httpx against real
tilde-server subprocesses (tilde-api-changes.md sections 2.5-2.8 and the checklist of
section 4), and the single-dialect servers of `--wire current` and `--wire legacy`.

The flows are written out request by request as the releases send them: the 0.7.2-0.7.6
stage flow and legacy multipart (307 part URL, POST abort), the 0.7.7 flow (PUT /object,
POST finalize, JSON part URL and DELETE abort without any token) and 0.7.8/0.7.9 (the same
with `upload_token` on the part lookup and the abort).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from serverapi import (
    Api,
    RepoRef,
    ServerHandle,
    assert_error,
    start_server,
    stop_server,
    unique,
)

from postgres import RUN

OCTET = {"Content-Type": "application/octet-stream"}
# S3's least part size (but the last): the parts of these tests are taken by a bucket too
MIN_PART = 5 << 20


def ua(version: str) -> dict[str, str]:
    return {"User-Agent": f"tilde-python-sdk/{version}"}


def _server(tmp: Path, *args: str) -> Iterator[ServerHandle]:
    h = start_server(tmp, args=list(args))
    yield h
    stop_server(h)
    assert "Traceback" not in h.log(), h.log()


@pytest.fixture(scope="module")
def all_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    yield from _server(tmp_path_factory.mktemp("wire-all"), "--wire", "all")


@pytest.fixture(scope="module")
def current_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    yield from _server(tmp_path_factory.mktemp("wire-current"), "--wire", "current")


@pytest.fixture(scope="module")
def legacy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    yield from _server(tmp_path_factory.mktemp("wire-legacy"), "--wire", "legacy")


class Client(Api):
    """Api on a fresh repository, speaking as one release (its User-Agent on every request,
    upload-URL PUTs included, as the official client sends it)."""

    def __init__(self, server: ServerHandle, version: str = "0.7.9") -> None:
        org, repo = unique("org"), unique("repo")
        hd = {"Authorization": f"Bearer {server.api_key}"}
        base = f"{server.endpoint}/api/v1"
        assert httpx.post(f"{base}/organizations", json={"name": org, "display_name": org},
                          headers=hd).status_code == 201
        assert httpx.post(f"{base}/organizations/{org}/repositories",
                          json={"name": repo, "visibility": "private"},
                          headers=hd).status_code == 201
        super().__init__(server, RepoRef(org, repo))
        self.version = version
        self.http.headers.update(ua(version))
        self.bare = httpx.Client(headers=ua(version), timeout=10)  # upload URLs: no bearer

    def q(self, sid: str, path: str, **extra: Any) -> dict[str, Any]:
        return {"session_id": sid, "path": path, **extra}

    def changes(self, sid: str) -> list[str]:
        r = self.http.get(f"{self.R}/changes", params={"session_id": sid})
        assert r.status_code == 200, r.text
        return [x["path"] for x in r.json()["results"]]

    # -- 0.7.2-0.7.6 -------------------------------------------------------------------
    def legacy_put(self, sid: str, path: str, data: bytes | Iterator[bytes]) -> dict[str, Any]:
        r = self.http.post(f"{self.R}/object/stage", params=self.q(sid, path))
        assert r.status_code == 200, r.text
        st = r.json()
        assert {"upload_url", "physical_address", "signature", "expires_at"} <= set(st)
        r = self.bare.put(st["upload_url"], content=data, headers=OCTET)
        assert r.is_success, r.text
        r = self.http.put(f"{self.R}/object/finalize",
                          params=self.q(sid, path, expires_at=st["expires_at"]),
                          json={"physical_address": st["physical_address"],
                                "signature": st["signature"],
                                "content_type": "application/octet-stream"})
        assert r.is_success and r.status_code != 204, r.text
        body: dict[str, Any] = r.json()
        return body

    def legacy_initiate(self, sid: str, path: str) -> dict[str, Any]:
        r = self.http.post(f"{self.R}/object/multipart", params=self.q(sid, path))
        assert r.is_success and r.status_code != 204, r.text
        mp: dict[str, Any] = r.json()
        assert {"upload_id", "physical_address", "token"} <= set(mp)
        return mp

    def legacy_part(self, mp: dict[str, Any], n: int, data: bytes) -> dict[str, Any]:
        r = self.http.get(f"{self.R}/object/multipart/part",
                          params={"token": mp["token"], "part_number": n,
                                  "upload_id": mp["upload_id"]})
        assert r.status_code in (301, 302, 307, 308), r.text
        r = self.bare.put(r.headers["location"], content=data, headers=OCTET)
        assert r.is_success, r.text
        return {"part_number": n, "etag": r.headers["etag"]}  # verbatim, quotes included

    def legacy_complete(self, sid: str, path: str, mp: dict[str, Any],
                        parts: list[dict[str, Any]], total: int) -> httpx.Response:
        return self.http.post(f"{self.R}/object/multipart/complete", params=self.q(sid, path),
                              json={"token": mp["token"], "upload_id": mp["upload_id"],
                                    "physical_address": mp["physical_address"],
                                    "parts": parts, "total_size": total,
                                    "content_type": "application/octet-stream"})

    def legacy_abort(self, sid: str, path: str, mp: dict[str, Any]) -> httpx.Response:
        return self.http.post(f"{self.R}/object/multipart/abort", params=self.q(sid, path),
                              json={"token": mp["token"], "upload_id": mp["upload_id"],
                                    "physical_address": mp["physical_address"]})

    # -- 0.7.7-0.7.9 -------------------------------------------------------------------
    def upload_url(self, sid: str, path: str) -> dict[str, Any]:
        r = self.http.put(f"{self.R}/object", params=self.q(sid, path))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert isinstance(body["upload_url"], str) and isinstance(body["upload_token"], str)
        return body

    def new_put(self, sid: str, path: str, data: bytes | Iterator[bytes],
                size: int | None = None) -> dict[str, Any]:
        up = self.upload_url(sid, path)
        r = self.bare.put(up["upload_url"], content=data, headers=OCTET)
        assert r.is_success, r.text
        body: dict[str, Any] = {"upload_token": up["upload_token"],
                                "content_type": "application/octet-stream"}
        if r.headers.get("etag"):
            body["checksum"] = r.headers["etag"].strip('"')
        if size is not None:
            body["size_bytes"] = size
        r = self.http.post(f"{self.R}/object/finalize", params=self.q(sid, path), json=body)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def new_initiate(self, sid: str, path: str) -> dict[str, Any]:
        r = self.http.post(f"{self.R}/object/multipart", params=self.q(sid, path))
        assert r.is_success and r.status_code != 204, r.text
        mp: dict[str, Any] = r.json()
        assert {"upload_id", "upload_token"} <= set(mp)
        return mp

    def _token(self, mp: dict[str, Any]) -> dict[str, Any]:
        """0.7.8+ send upload_token on the part lookup and the abort, 0.7.7 does not."""
        return {} if self.version == "0.7.7" else {"upload_token": mp["upload_token"]}

    def part_lookup(self, sid: str, path: str, mp: dict[str, Any], n: int) -> httpx.Response:
        params = {"session_id": sid, "path": path, "upload_id": mp["upload_id"],
                  **self._token(mp), "part_number": n}
        return self.http.get(f"{self.R}/object/multipart/part", params=params)

    def new_part(self, sid: str, path: str, mp: dict[str, Any], n: int,
                 data: bytes) -> dict[str, Any]:
        r = self.part_lookup(sid, path, mp, n)
        assert r.status_code == 200, r.text
        r = self.bare.put(r.json()["upload_url"], content=data, headers=OCTET)
        assert r.is_success, r.text
        return {"part_number": n, "etag": r.headers["etag"]}

    def new_complete(self, sid: str, path: str, mp: dict[str, Any],
                     parts: list[dict[str, Any]], size: int | None) -> httpx.Response:
        body: dict[str, Any] = {"upload_id": mp["upload_id"], "upload_token": mp["upload_token"],
                                "parts": parts, "content_type": "application/octet-stream"}
        if size is not None:
            body["size_bytes"] = size
        return self.http.post(f"{self.R}/object/multipart/complete", params=self.q(sid, path),
                              json=body)

    def new_abort(self, sid: str, path: str, mp: dict[str, Any]) -> httpx.Response:
        return self.http.delete(f"{self.R}/object/multipart",
                                params={"session_id": sid, "path": path,
                                        "upload_id": mp["upload_id"], **self._token(mp)})


def chunked(*pieces: bytes) -> Iterator[bytes]:
    """An iterator body: httpx sends it with Transfer-Encoding: chunked."""
    yield from pieces


# ---------------------------------------------------------------- --wire all: 0.7.2-0.7.6


@pytest.mark.parametrize("version", ["0.7.2", "0.7.4", "0.7.6"])
def test_legacy_stage_flow(all_server: ServerHandle, version: str) -> None:
    c = Client(all_server, version)
    sid = c.session()
    out = c.legacy_put(sid, "a b+c", b"hello")
    assert out == {"path": "a b+c", "etag": hashlib.md5(b"hello").hexdigest()}
    c.legacy_put(sid, "chunked.bin", chunked(b"hel", b"", b"lo ", b"world"))
    c.commit_ok(sid)
    assert c.read("a b+c") == b"hello"
    assert c.read("chunked.bin") == b"hello world"


@pytest.mark.parametrize("version", ["0.7.2", "0.7.6"])
def test_legacy_multipart_redirect_part_url_and_post_abort(all_server: ServerHandle,
                                                           version: str) -> None:
    c = Client(all_server, version)
    sid = c.session()
    parts = [os.urandom(MIN_PART), b"tail"]
    mp = c.legacy_initiate(sid, "big.bin")
    done = [c.legacy_part(mp, n, p) for n, p in enumerate(parts, start=1)]
    r = c.legacy_complete(sid, "big.bin", mp, done, sum(map(len, parts)))
    assert r.is_success, r.text
    assert r.json()["path"] == "big.bin" and r.json()["etag"].endswith("-2")

    mp = c.legacy_initiate(sid, "aborted.bin")
    c.legacy_part(mp, 1, b"never completed")
    assert c.legacy_abort(sid, "aborted.bin", mp).status_code == 204
    assert c.changes(sid) == ["big.bin"]
    c.commit_ok(sid)
    assert c.read("big.bin") == b"".join(parts)


def test_legacy_multipart_empty_and_sizeless(all_server: ServerHandle) -> None:
    """An iterator that yields nothing: `parts: []`, size 0; and a complete without
    total_size (the size is not required)."""
    c = Client(all_server, "0.7.2")
    sid = c.session()
    mp = c.legacy_initiate(sid, "empty.bin")
    assert c.legacy_complete(sid, "empty.bin", mp, [], 0).is_success
    mp = c.legacy_initiate(sid, "nosize.bin")
    part = c.legacy_part(mp, 1, b"abc")
    r = c.http.post(f"{c.R}/object/multipart/complete", params=c.q(sid, "nosize.bin"),
                    json={"token": mp["token"], "upload_id": mp["upload_id"],
                          "physical_address": mp["physical_address"], "parts": [part]})
    assert r.is_success, r.text
    c.commit_ok(sid)
    assert c.read("empty.bin") == b"" and c.read("nosize.bin") == b"abc"


# ---------------------------------------------------------------- --wire all: 0.7.7-0.7.9


@pytest.mark.parametrize("version", ["0.7.7", "0.7.8", "0.7.9"])
def test_new_single_upload_flow(all_server: ServerHandle, version: str) -> None:
    c = Client(all_server, version)
    sid = c.session()
    out = c.new_put(sid, "a b+c", b"hello", size=5)
    assert out == {"path": "a b+c", "etag": hashlib.md5(b"hello").hexdigest()}
    # an iterator body: chunked, and no size_bytes (the size is unknown to the client)
    c.new_put(sid, "stream.bin", chunked(b"chunk ", b"by ", b"chunk"))
    # after a 501 fallback the iterator may be empty
    c.new_put(sid, "empty.bin", chunked())
    c.commit_ok(sid)
    assert c.read("a b+c") == b"hello"
    assert c.read("stream.bin") == b"chunk by chunk"
    assert c.read("empty.bin") == b""


def test_upload_target_answers_quoted_md5_etag(all_server: ServerHandle) -> None:
    c = Client(all_server, "0.7.9")
    up = c.upload_url(c.session(), "x")
    r = c.bare.put(up["upload_url"], content=b"payload", headers=OCTET)
    assert r.is_success
    assert r.headers["etag"] == f'"{hashlib.md5(b"payload").hexdigest()}"'


@pytest.mark.parametrize("version", ["0.7.7", "0.7.8", "0.7.9"])
def test_new_multipart_flow(all_server: ServerHandle, version: str) -> None:
    c = Client(all_server, version)
    sid = c.session()
    parts = [os.urandom(MIN_PART), os.urandom(MIN_PART), b"end"]
    mp = c.new_initiate(sid, "big.bin")
    done = [c.new_part(sid, "big.bin", mp, n, p) for n, p in enumerate(parts, start=1)]
    r = c.new_complete(sid, "big.bin", mp, done, sum(map(len, parts)))
    assert r.status_code == 201, r.text
    assert r.json()["path"] == "big.bin" and r.json()["etag"].endswith("-3")

    # an empty iterator: parts [] and size 0
    mp = c.new_initiate(sid, "empty.bin")
    assert c.new_complete(sid, "empty.bin", mp, [], 0).status_code == 201

    # abort after a failed part loop: DELETE, with upload_token from 0.7.8 on only
    mp = c.new_initiate(sid, "aborted.bin")
    c.new_part(sid, "aborted.bin", mp, 1, b"partial")
    pending = RUN.pending_parts(all_server.data_dir, sid)
    assert pending >= 1
    assert c.new_abort(sid, "aborted.bin", mp).status_code == 204
    assert RUN.pending_parts(all_server.data_dir, sid) == pending - 1
    assert_error(c.part_lookup(sid, "aborted.bin", mp, 2), 404, "upload_not_found")
    assert sorted(c.changes(sid)) == ["big.bin", "empty.bin"]
    c.commit_ok(sid)
    assert c.read("big.bin") == b"".join(parts)
    assert c.read("empty.bin") == b""


@pytest.mark.local_blobs
def test_a_part_urls_token_is_no_upload_token(all_server: ServerHandle) -> None:
    """The bearer-less part URL carries a grant for that part's bytes only: it cannot stand
    in for the upload_token at complete or abort."""
    c = Client(all_server, "0.7.7")
    sid = c.session()
    mp = c.new_initiate(sid, "p.bin")
    r = c.part_lookup(sid, "p.bin", mp, 1)
    assert r.status_code == 200, r.text
    part_grant = dict(parse_qsl(urlsplit(r.json()["upload_url"]).query))["token"]
    assert c.bare.put(r.json()["upload_url"], content=b"x", headers=OCTET).is_success
    forged = {**mp, "upload_token": part_grant}
    assert_error(c.new_complete(sid, "p.bin", forged, [], None), 403, "invalid_signature")
    assert c.changes(sid) == []
    assert c.new_complete(sid, "p.bin", mp, [], 0).status_code == 201


def test_initiate_answers_the_union(all_server: ServerHandle) -> None:
    c = Client(all_server)
    r = c.http.post(f"{c.R}/object/multipart", params=c.q(c.session(), "m"))
    assert r.is_success and r.status_code != 204
    mp = r.json()
    assert set(mp) == {"upload_id", "upload_token", "token", "physical_address", "expires_at"}
    assert mp["token"] == mp["upload_token"]


def test_the_two_multipart_dialects_mix(all_server: ServerHandle) -> None:
    """One initiate reply serves both dialects: parts found either way complete either way."""
    c = Client(all_server, "0.7.8")
    sid = c.session()
    mp = c.legacy_initiate(sid, "mixed.bin")
    one = b"one-" * (MIN_PART // 4)
    p1 = c.legacy_part(mp, 1, one)
    p2 = c.new_part(sid, "mixed.bin", mp, 2, b"two")
    assert c.new_complete(sid, "mixed.bin", mp, [p1, p2], len(one) + 3).status_code == 201
    assert c.get("mixed.bin", session_id=sid).content == one + b"two"


def test_finalize_checks_checksum_and_size(all_server: ServerHandle) -> None:
    c = Client(all_server, "0.7.9")
    sid = c.session()
    up = c.upload_url(sid, "f.txt")
    r = c.bare.put(up["upload_url"], content=b"12345", headers=OCTET)
    md5 = r.headers["etag"].strip('"')
    url, q = f"{c.R}/object/finalize", c.q(sid, "f.txt")
    body = {"upload_token": up["upload_token"], "content_type": "application/octet-stream"}
    assert_error(c.http.post(url, params=q, json={**body, "checksum": "0" * 32}), 400,
                 "checksum_mismatch")
    assert_error(c.http.post(url, params=q, json={**body, "size_bytes": 6}), 400,
                 "size_mismatch")
    assert_error(c.http.post(url, params=q, json={**body, "size_bytes": -1}), 400)
    assert_error(c.http.post(url, params=q, json={**body, "size_bytes": "5"}), 400)
    assert_error(c.http.post(url, params=q, json={**body, "checksum": 5}), 400)
    assert c.changes(sid) == []  # nothing staged by a refused finalize
    # the quoted form of the ETag is accepted too
    r = c.http.post(url, params=q, json={**body, "checksum": f'"{md5}"', "size_bytes": 5})
    assert r.status_code == 201, r.text
    assert r.json() == {"path": "f.txt", "etag": md5}
    assert c.changes(sid) == ["f.txt"]


def test_complete_checks_size_and_checksum(all_server: ServerHandle) -> None:
    c = Client(all_server, "0.7.9")
    sid = c.session()
    mp = c.new_initiate(sid, "m.bin")
    parts = [c.new_part(sid, "m.bin", mp, 1, b"abc")]
    assert_error(c.new_complete(sid, "m.bin", mp, parts, 4), 400, "invalid_parts")
    r = c.http.post(f"{c.R}/object/multipart/complete", params=c.q(sid, "m.bin"),
                    json={"upload_id": mp["upload_id"], "upload_token": mp["upload_token"],
                          "parts": parts, "checksum": "nope"})
    assert_error(r, 400, "checksum_mismatch")
    assert_error(c.new_complete(sid, "m.bin", mp, [{"part_number": 1, "etag": '"00"'}], 3),
                 400, "invalid_parts")
    assert c.changes(sid) == []
    r = c.new_complete(sid, "m.bin", mp, parts, None)  # size_bytes is not required
    assert r.status_code == 201, r.text
    assert c.changes(sid) == ["m.bin"]


def test_new_flow_refuses_bad_input_with_4xx(all_server: ServerHandle) -> None:
    """Key and session are checked on the API routes (the upload target's errors would be
    TransportErrors); tokens are bound to their upload; nothing is staged by a refusal."""
    c = Client(all_server, "0.7.9")
    sid = c.session()
    put = f"{c.R}/object"
    for bad in ["../escape", "/abs", "", "a/./b", "x\x00y"]:
        assert_error(c.http.put(put, params=c.q(sid, bad)), 400)
        assert_error(c.http.post(f"{c.R}/object/multipart", params=c.q(sid, bad)), 400)
    assert_error(c.http.put(put, params={"path": "a"}), 400, "missing_parameter")
    assert_error(c.http.put(put, params=c.q("no-such-session", "a")), 404)
    assert_error(c.http.put(put, params=c.q(sid, "a"), content=b"direct body"), 400)

    up = c.upload_url(sid, "a")
    c.bare.put(up["upload_url"], content=b"x")
    fin = f"{c.R}/object/finalize"
    body = {"upload_token": up["upload_token"]}
    assert_error(c.http.post(fin, params=c.q(sid, "b"), json=body), 403)  # other path
    assert_error(c.http.post(fin, params=c.q(sid, "a"), json={"upload_token": "x.y"}), 403)
    assert_error(c.http.post(fin, params=c.q(sid, "a"), json={}), 400)
    assert_error(c.http.post(fin, params=c.q(sid, "a"), content=b"not json"), 400)
    up2 = c.upload_url(sid, "never-uploaded")
    assert_error(c.http.post(fin, params=c.q(sid, "never-uploaded"),
                             json={"upload_token": up2["upload_token"]}), 400, "upload_missing")
    # a single-upload token is no multipart token, and the other way round
    mp = c.new_initiate(sid, "m")
    assert_error(c.http.post(fin, params=c.q(sid, "m"),
                             json={"upload_token": mp["upload_token"]}), 403)
    assert_error(c.new_complete(sid, "a", {**mp, "upload_token": up["upload_token"]}, [], 0),
                 403)
    # part lookups: the binding of (session, path, upload_id) and the token when sent
    part = f"{c.R}/object/multipart/part"
    base = {"session_id": sid, "path": "m", "upload_id": mp["upload_id"], "part_number": 1}
    assert c.http.get(part, params=base).status_code == 200
    assert_error(c.http.get(part, params={**base, "path": "other"}), 404, "upload_not_found")
    assert_error(c.http.get(part, params={**base, "upload_id": "../../etc"}), 404)
    assert_error(c.http.get(part, params={**base, "upload_id": "0" * 32}), 404)
    assert_error(c.http.get(part, params={**base, "upload_token": "bogus"}), 403)
    assert_error(c.http.get(part, params={**base, "part_number": 0}), 400)
    assert_error(c.http.get(part, params={**base, "part_number": "x"}), 400)
    assert_error(c.http.get(part, params={k: v for k, v in base.items() if k != "path"}), 400)
    other = c.session()
    assert_error(c.http.get(part, params={**base, "session_id": other}), 404)
    # aborts: unknown uploads are 404, a wrong token 403, and the upload survives both
    delete = f"{c.R}/object/multipart"
    q = {"session_id": sid, "path": "m", "upload_id": mp["upload_id"]}
    assert_error(c.http.delete(delete, params={**q, "upload_token": "bogus"}), 403)
    assert_error(c.http.delete(delete, params={**q, "path": "other"}), 404)
    assert_error(c.http.delete(delete, params={**q, "upload_id": "zz"}), 404)
    assert c.http.get(part, params=base).status_code == 200
    # complete: malformed bodies
    comp = f"{c.R}/object/multipart/complete"
    for junk in [{"upload_token": mp["upload_token"]},
                 {"upload_token": mp["upload_token"], "upload_id": mp["upload_id"],
                  "parts": "x"},
                 {"upload_token": mp["upload_token"], "upload_id": mp["upload_id"],
                  "parts": [{"part_number": 0, "etag": "x"}]},
                 {"upload_token": mp["upload_token"], "upload_id": mp["upload_id"],
                  "parts": [], "size_bytes": True},
                 {"upload_token": 1, "upload_id": []}]:
        r = c.http.post(comp, params=c.q(sid, "m"), json=junk)
        assert 400 <= r.status_code < 500, (junk, r.text)
        assert_error(r, r.status_code)
    assert c.changes(sid) == []


def test_root_commit_diff_without_left(all_server: ServerHandle) -> None:
    """0.7.7+ leave `left` out for a root commit; 0.7.2-0.7.6 send `left=`: both mean the
    empty tree."""
    c = Client(all_server)
    sid = c.session()
    c.new_put(sid, "a", b"1")
    c.new_put(sid, "d/b", b"2")
    commit = c.commit_ok(sid)

    def diff(**params: str) -> list[tuple[str, str]]:
        r = c.http.get(f"{c.R}/diff", params={**params, "amount": 100})
        assert r.status_code == 200, r.text
        return [(x["path"], x["status"]) for x in r.json()["results"]]

    assert diff(right=commit) == [("a", "added"), ("d/b", "added")]
    assert diff(left="", right=commit) == diff(right=commit)


# ---------------------------------------------------------------- --wire current


def test_current_refuses_legacy_routes_with_405_and_batch_with_404(
        current_server: ServerHandle) -> None:
    c = Client(current_server, "0.7.2")
    sid = c.session()
    q = c.q(sid, "a")
    for method, route, kw in [
            ("POST", "/object/stage", {}),
            ("PUT", "/object/finalize", {"json": {"physical_address": "u", "signature": "s"}}),
            ("POST", "/object/multipart/abort", {"json": {"token": "t"}})]:
        r = c.http.request(method, f"{c.R}{route}", params=q, **kw)
        assert_error(r, 405, "method_not_allowed")
    assert "POST" in c.http.put(f"{c.R}/object/finalize", params=q).headers["allow"]
    manifest = json.dumps({"objects": [{"path": "x", "size": 1}]}).encode() + b"\nx"
    assert_error(c.http.post(f"{c.R}/objects/upload", params={"session_id": sid},
                             content=manifest), 404)
    # 405 comes after the bearer check, as everywhere under /api/v1
    assert httpx.post(f"{c.R}/object/stage", params=q).status_code == 401
    assert c.changes(sid) == []


def test_current_speaks_only_the_new_dialect(current_server: ServerHandle) -> None:
    c = Client(current_server, "0.7.9")
    sid = c.session()
    c.new_put(sid, "s.txt", b"single", size=6)
    r = c.http.post(f"{c.R}/object/multipart", params=c.q(sid, "m.bin"))
    assert r.status_code == 200 and set(r.json()) == {"upload_id", "upload_token"}
    mp = r.json()
    # the part URL comes as JSON only, even when a `token` is sent
    r = c.http.get(f"{c.R}/object/multipart/part",
                   params={"token": mp["upload_token"], "session_id": sid, "path": "m.bin",
                           "upload_id": mp["upload_id"], "part_number": 1})
    assert r.status_code == 200 and set(r.json()) == {"upload_url"}
    assert_error(c.http.get(f"{c.R}/object/multipart/part",
                            params={"token": mp["upload_token"], "part_number": 1,
                                    "upload_id": mp["upload_id"]}), 400)
    done = [c.new_part(sid, "m.bin", mp, 1, b"multi")]
    legacy_body = {"token": mp["upload_token"], "upload_id": mp["upload_id"],
                   "physical_address": "m-" + mp["upload_id"], "parts": done, "total_size": 5}
    assert_error(c.http.post(f"{c.R}/object/multipart/complete", params=c.q(sid, "m.bin"),
                             json=legacy_body), 400)
    assert c.new_complete(sid, "m.bin", mp, done, 5).status_code == 201
    mp = c.new_initiate(sid, "gone.bin")
    assert c.new_abort(sid, "gone.bin", mp).status_code == 204
    c.commit_ok(sid)
    assert c.read("s.txt") == b"single" and c.read("m.bin") == b"multi"


# ---------------------------------------------------------------- --wire legacy


def test_legacy_refuses_new_routes_with_405(legacy_server: ServerHandle) -> None:
    c = Client(legacy_server, "0.7.9")
    sid = c.session()
    q = c.q(sid, "a")
    assert_error(c.http.put(f"{c.R}/object", params=q), 405, "method_not_allowed")
    assert_error(c.http.post(f"{c.R}/object/finalize", params=q, json={"upload_token": "t"}),
                 405, "method_not_allowed")
    assert_error(c.http.delete(f"{c.R}/object/multipart",
                               params={**q, "upload_id": "0" * 32}), 405)
    mp = c.legacy_initiate(sid, "m.bin")
    assert set(mp) == {"upload_id", "physical_address", "token", "expires_at"}
    # part lookup without `token`: 400; a new-style complete body: 400
    assert_error(c.http.get(f"{c.R}/object/multipart/part",
                            params={"session_id": sid, "path": "m.bin",
                                    "upload_id": mp["upload_id"], "part_number": 1}), 400)
    part = c.legacy_part(mp, 1, b"legacy")
    assert_error(c.http.post(f"{c.R}/object/multipart/complete", params=c.q(sid, "m.bin"),
                             json={"upload_id": mp["upload_id"], "upload_token": mp["token"],
                                   "parts": [part], "size_bytes": 6}), 400)
    assert c.changes(sid) == []


def test_legacy_serves_the_old_flows_and_the_batch_extension(
        legacy_server: ServerHandle) -> None:
    c = Client(legacy_server, "0.7.2")
    sid = c.session()
    c.legacy_put(sid, "s.txt", b"single")
    mp = c.legacy_initiate(sid, "m.bin")
    part = c.legacy_part(mp, 1, b"multi")
    assert c.legacy_complete(sid, "m.bin", mp, [part], 5).is_success
    mp = c.legacy_initiate(sid, "gone.bin")
    assert c.legacy_abort(sid, "gone.bin", mp).status_code == 204
    manifest = json.dumps({"objects": [{"path": "b.txt", "size": 5}]}).encode()
    r = c.http.post(f"{c.R}/objects/upload", params={"session_id": sid},
                    content=manifest + b"\nbatch")
    assert r.status_code == 200, r.text
    c.commit_ok(sid)
    assert [c.read(p) for p in ("s.txt", "m.bin", "b.txt")] == [b"single", b"multi", b"batch"]


@pytest.mark.parametrize("which", ["all_server", "current_server", "legacy_server"])
def test_garbage_on_upload_routes_is_never_5xx(request: pytest.FixtureRequest,
                                               which: str) -> None:
    server: ServerHandle = request.getfixturevalue(which)
    c = Client(server)
    sid = c.session()
    queries: list[dict[str, Any]] = [
        {}, {"session_id": sid, "path": "a"}, {"session_id": "\x00", "path": "%ff"},
        {"session_id": sid, "path": "a", "upload_id": "\x00", "upload_token": "a.b",
         "part_number": "1"},
        {"session_id": sid, "path": "a", "token": "a.b", "upload_id": "", "part_number": "-1"}]
    bodies = [b"", b"null", b"[]", b'{"upload_token": {}}', b'{"parts": [], "token": 1}',
              b'{"upload_token": "x", "parts": [{"part_number": 1, "etag": 7}]}', b"\xff"]
    routes = [("PUT", "/object"), ("POST", "/object/finalize"), ("PUT", "/object/finalize"),
              ("POST", "/object/multipart"), ("DELETE", "/object/multipart"),
              ("GET", "/object/multipart/part"), ("POST", "/object/multipart/complete"),
              ("POST", "/object/multipart/abort"), ("POST", "/object/stage")]
    for method, route in routes:
        for q in queries:
            for body in bodies if method in ("POST", "PUT") else [b""]:
                r = c.http.request(method, f"{c.R}{route}", params=q, content=body,
                                   headers={"content-type": "application/json"})
                assert r.status_code < 500, (method, route, q, body, r.text)
                if r.status_code >= 400:
                    assert_error(r, r.status_code)
    assert c.changes(sid) == []
