"""Object operations (spec 2.5, 2.6): uploads, reads with Range, listings, copy, delete."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from serverapi import (
    Api,
    RepoRef,
    ServerHandle,
    assert_error,
    make_api,
    start_server,
    stop_server,
    unique,
)


@pytest.fixture
def api(server: ServerHandle, repo_ref: RepoRef) -> Iterator[Api]:
    yield from make_api(server, repo_ref)


def test_single_upload_roundtrip(api: Api) -> None:
    sid = api.session()
    st = api.stage(sid, "dir/hello.txt")
    assert st["upload_url"].startswith("http://127.0.0.1:")
    assert st["expires_at"].endswith("Z")

    def chunks() -> Iterator[bytes]:  # chunked transfer encoding
        yield b"hello "
        yield b"world"
    r = httpx.put(st["upload_url"], content=chunks(),
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    md5 = hashlib.md5(b"hello world").hexdigest()
    assert r.headers["etag"] == f'"{md5}"'
    r = api.finalize(sid, "dir/hello.txt", st)
    assert r.status_code == 200
    assert r.json() == {"path": "dir/hello.txt", "etag": md5}

    # visible in the session (not reproducible), not at head
    r = api.get("dir/hello.txt", session_id=sid)
    assert r.content == b"hello world" and r.headers["x-tilde-reproducible"] == "false"
    assert r.headers["etag"] == f'"{md5}"' and r.headers["content-length"] == "11"
    assert_error(api.get("dir/hello.txt"), 404)
    h = api.http.head(f"{api.R}/object", params={"path": "dir/hello.txt"})
    assert h.status_code == 404 and h.content == b""

    api.commit_ok(sid)
    r = api.get("dir/hello.txt", presign="true")
    assert r.status_code == 200 and r.content == b"hello world"
    assert r.headers["x-tilde-reproducible"] == "true"
    assert r.headers["content-type"] == "application/octet-stream"
    h = api.http.head(f"{api.R}/object", params={"path": "dir/hello.txt"})
    assert h.status_code == 200 and h.headers["content-length"] == "11"
    assert h.headers["etag"] == f'"{md5}"' and h.headers["x-tilde-reproducible"] == "true"


def test_range_reads(api: Api) -> None:
    data = bytes(range(256)) * 40
    sid = api.session()
    api.put(sid, "r.bin", data)
    api.put(sid, "empty", b"")
    api.commit_ok(sid)

    def rng(spec: str) -> httpx.Response:
        return api.http.get(f"{api.R}/object", params={"path": "r.bin"},
                            headers={"Range": spec})
    r = rng("bytes=10-19")
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    r = rng("bytes=10000-")
    assert r.status_code == 206 and r.content == data[10000:]
    r = rng("bytes=-5")
    assert r.status_code == 206 and r.content == data[-5:]
    r = rng("bytes=10200-999999")
    assert r.status_code == 206 and r.content == data[10200:]
    for bad in ("bytes=20000-", "bytes=5-1", "bytes=0-1,3-4", "items=0-1", "bytes=-0"):
        r = rng(bad)
        assert_error(r, 416)
        assert r.headers["content-range"] == f"bytes */{len(data)}"
    assert api.read("empty") == b""
    r = api.http.get(f"{api.R}/object", params={"path": "empty"}, headers={"Range": "bytes=0-"})
    assert_error(r, 416)


@pytest.mark.local_blobs
def test_upload_signature_tamper_and_expiry(api: Api) -> None:
    sid = api.session()
    st = api.stage(sid, "a.txt")
    url = urlsplit(st["upload_url"])
    q = dict(parse_qsl(url.query))

    def put_with(**over: str) -> httpx.Response:
        return httpx.put(f"{url.scheme}://{url.netloc}{url.path}?{urlencode({**q, **over})}",
                         content=b"x")
    assert_error(put_with(path="b.txt"), 403)
    assert_error(put_with(signature="A" * 43), 403)
    assert_error(put_with(expires_at="2999-01-01T00:00:00Z"), 403)
    assert_error(put_with(session_id="nope"), 403)
    assert httpx.put(st["upload_url"], content=b"x").status_code == 200
    # finalize with a wrong signature, path or address: 403, nothing staged
    assert_error(api.finalize(sid, "a.txt", st, signature="bogus"), 403)
    assert_error(api.finalize(sid, "other.txt", st), 403)
    assert_error(api.finalize(sid, "a.txt", st, physical_address="u-0"), 403)
    assert api.http.get(f"{api.R}/changes", params={"session_id": sid}).json()["results"] == []
    # finalize before any bytes were PUT
    st2 = api.stage(sid, "c.txt")
    assert_error(api.finalize(sid, "c.txt", st2), 400, "upload_missing")
    # signature-authorized routes need no bearer; bearer alone does not authorize them
    assert_error(httpx.put(f"{url.scheme}://{url.netloc}{url.path}", content=b"x"), 400)
    assert api.finalize(sid, "a.txt", st).status_code == 200


@pytest.mark.local_blobs
def test_upload_expiry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a 1 s upload TTL, a URL used after expiry is refused (403) and nothing is staged."""
    monkeypatch.setenv("TILDE_SERVER_UPLOAD_TTL", "1")
    h = start_server(tmp_path)
    try:
        a = Api(h, _make_repo(h))
        sid = a.session()
        st = a.stage(sid, "late.txt")
        time.sleep(2.1)
        assert_error(httpx.put(st["upload_url"], content=b"late"), 403, "expired")
        assert_error(a.finalize(sid, "late.txt", st), 403, "expired")
        assert a.http.get(f"{a.R}/changes", params={"session_id": sid}).json()["results"] == []
        a.close()
    finally:
        stop_server(h)
    assert "Traceback" not in h.log()


def _make_repo(h: ServerHandle) -> RepoRef:
    org, repo = unique("org"), unique("repo")
    hd = {"Authorization": f"Bearer {h.api_key}"}
    base = f"{h.endpoint}/api/v1"
    assert httpx.post(f"{base}/organizations", json={"name": org, "display_name": org},
                      headers=hd).status_code == 201
    assert httpx.post(f"{base}/organizations/{org}/repositories", json={"name": repo},
                      headers=hd).status_code == 201
    return RepoRef(org, repo)


def _multipart(api: Api, sid: str, path: str, parts: list[bytes]) -> tuple[dict, list]:
    r = api.http.post(f"{api.R}/object/multipart", params={"session_id": sid, "path": path})
    assert r.status_code == 201, r.text
    mp = r.json()
    done = []
    for n, chunk in enumerate(parts, start=1):
        r = api.http.get(f"{api.R}/object/multipart/part",
                         params={"token": mp["token"], "part_number": n,
                                 "upload_id": mp["upload_id"]})
        assert r.status_code == 307, r.text
        loc = r.headers["location"]
        assert loc.startswith("http://127.0.0.1:")
        r = httpx.put(loc, content=chunk, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200
        assert r.headers["etag"] == f'"{hashlib.md5(chunk).hexdigest()}"'
        done.append({"part_number": n, "etag": r.headers["etag"]})
    return mp, done


def test_multipart_upload(api: Api, server: ServerHandle) -> None:
    sid = api.session()
    # every part but the last of S3's least size, so a bucket deployment takes them too
    parts = [os.urandom(5 << 20), os.urandom(5 << 20), b"tail"]
    mp, done = _multipart(api, sid, "big.bin", parts)
    total = sum(map(len, parts))
    body = {"token": mp["token"], "upload_id": mp["upload_id"],
            "physical_address": mp["physical_address"], "parts": done,
            "content_type": "application/octet-stream"}
    url = f"{api.R}/object/multipart/complete"
    q = {"session_id": sid, "path": "big.bin"}
    assert_error(api.http.post(url, params=q, json={**body, "total_size": total + 1}), 400)
    assert_error(api.http.post(url, params=q, json={
        **body, "total_size": total, "parts": [{"part_number": 1, "etag": '"00"'}]}), 400)
    assert_error(api.http.post(url, params={**q, "path": "other"},
                               json={**body, "total_size": total}), 403)
    r = api.http.post(url, params=q, json={**body, "total_size": total})
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "big.bin" and r.json()["etag"].endswith("-3")
    got = api.get("big.bin", session_id=sid)
    assert got.content == b"".join(parts)
    assert got.headers["etag"] == f'"{r.json()["etag"]}"'
    # a second complete of the same upload: gone
    assert_error(api.http.post(url, params=q, json={**body, "total_size": total}), 404)
    api.commit_ok(sid)
    assert api.read("big.bin") == b"".join(parts)


@pytest.mark.local_blobs
def test_multipart_empty_and_abort(api: Api, server: ServerHandle) -> None:
    sid = api.session()
    mp, _ = _multipart(api, sid, "empty.bin", [])
    r = api.http.post(f"{api.R}/object/multipart/complete",
                      params={"session_id": sid, "path": "empty.bin"},
                      json={"token": mp["token"], "upload_id": mp["upload_id"],
                            "physical_address": mp["physical_address"], "parts": [],
                            "total_size": 0, "content_type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert api.get("empty.bin", session_id=sid).content == b""

    mp, _ = _multipart(api, sid, "aborted.bin", [b"abc" * 1000])
    spool = server.data_dir / "tmp" / sid
    assert any(spool.rglob("*"))
    r = api.http.post(f"{api.R}/object/multipart/abort",
                      params={"session_id": sid, "path": "aborted.bin"},
                      json={"token": mp["token"], "upload_id": mp["upload_id"],
                            "physical_address": mp["physical_address"]})
    assert r.status_code == 204
    assert not any(p.is_file() for p in spool.rglob("*"))
    assert_error(api.get("aborted.bin", session_id=sid), 404)
    # the part URL of an aborted upload no longer accepts bytes
    r = api.http.get(f"{api.R}/object/multipart/part",
                     params={"token": mp["token"], "part_number": 2,
                             "upload_id": mp["upload_id"]})
    assert_error(httpx.put(r.headers["location"], content=b"x"), 404)
    assert_error(api.http.get(f"{api.R}/object/multipart/part",
                              params={"token": mp["token"] + "x", "part_number": 1,
                                      "upload_id": mp["upload_id"]}), 403)


def test_listing_prefix_delimiter_paging(api: Api) -> None:
    sid = api.session()
    keys = ["a/1", "a/2", "a/b/1", "b", "c/x/y", "c/z", "d"]
    for k in keys:
        api.put(sid, k, k.encode())
    api.commit_ok(sid)
    assert api.paths() == keys
    assert api.paths(prefix="a/") == ["a/1", "a/2", "a/b/1"]
    assert api.paths(delimiter="/") == ["a/", "b", "c/", "d"]
    assert api.paths(prefix="a/", delimiter="/") == ["a/1", "a/2", "a/b/"]
    assert api.paths(prefix="c/", delimiter="/") == ["c/x/", "c/z"]
    body = api.ls(delimiter="/")
    kinds = {x["path"]: (x["type"], x["entry"]) for x in body["results"]}
    assert kinds["a/"] == ("prefix", None)
    assert kinds["b"][0] == "object" and kinds["b"][1]["size"] == 1
    assert "status" not in body["results"][0]
    # page size 1, with and without delimiter; cursors follow the last item
    assert api.paths(amount=1) == keys
    assert api.paths(amount=1, delimiter="/") == ["a/", "b", "c/", "d"]
    page = api.ls(amount=2)
    assert page["pagination"] == {"has_more": True, "next_offset": "a/2", "max_per_page": 1000}
    last = api.ls(after="c/z")
    assert [x["path"] for x in last["results"]] == ["d"]
    assert last["pagination"]["has_more"] is False and last["pagination"]["next_offset"] is None
    # a plain key as the first cursor, inside a common prefix
    assert api.paths(after="a/1", delimiter="/") == ["b", "c/", "d"]
    assert api.paths(after="a/", delimiter="/") == ["b", "c/", "d"]

    # session view merges staged puts and tombstones
    sid = api.session()
    api.put(sid, "a/0", b"new")
    assert api.delete(sid, "b").status_code == 204
    assert api.delete(sid, "c/z").status_code == 204
    assert api.delete(sid, "c/x/y").status_code == 204
    assert api.paths(session_id=sid, delimiter="/") == ["a/", "d"]
    assert api.paths(session_id=sid) == ["a/0", "a/1", "a/2", "a/b/1", "d"]
    assert api.paths(session_id=sid, amount=1) == ["a/0", "a/1", "a/2", "a/b/1", "d"]
    assert api.paths() == keys  # head untouched


def test_copy_delete_changes(api: Api) -> None:
    sid = api.session()
    api.put(sid, "src", b"payload")
    api.commit_ok(sid)
    sid = api.session()
    r = api.http.post(f"{api.R}/object/copy", params={
        "session_id": sid, "source_path": "src", "destination_path": "dst/copy"})
    assert r.status_code == 201
    assert r.json() == {"source_path": "src", "destination_path": "dst/copy"}
    assert api.read("dst/copy", session_id=sid) == b"payload"
    assert_error(api.http.post(f"{api.R}/object/copy", params={
        "session_id": sid, "source_path": "missing", "destination_path": "x"}), 404)
    assert api.delete(sid, "src").status_code == 204
    assert_error(api.delete(sid, "src"), 404)
    assert_error(api.get("src", session_id=sid), 404)
    api.put(sid, "n1", b"1")
    api.put(sid, "n2", b"2")
    r = api.http.post(f"{api.R}/objects/delete", params={"session_id": sid},
                      json={"paths": ["n1", "n2", "never"]})
    assert r.status_code == 200 and r.json() == {"deleted": 2}
    ch = api.http.get(f"{api.R}/changes", params={"session_id": sid}).json()
    assert ch["results"][0]["path"] == "dst/copy" and ch["results"][0]["entry"]["size"] == 7
    assert ch["results"][1] == {"path": "src", "entry": None}
    assert len(ch["results"]) == 2
    page = api.http.get(f"{api.R}/changes", params={"session_id": sid, "amount": 1}).json()
    assert page["pagination"]["has_more"] and page["pagination"]["next_offset"] == "dst/copy"
    cid = api.commit_ok(sid)
    assert api.paths() == ["dst/copy"]
    assert api.read("dst/copy") == b"payload"
    assert cid


@pytest.mark.parametrize("path", ["", "/abs", "a/../b", "./a", "a/.", "nul\x00byte", "..",
                                  "x" * 1025])
def test_bad_object_keys(api: Api, path: str) -> None:
    sid = api.session()
    r = api.http.post(f"{api.R}/object/stage", params={"session_id": sid, "path": path})
    assert_error(r, 400)
    assert_error(api.get(path), 400)
    assert_error(api.delete(sid, path), 400)
    r = api.http.post(f"{api.R}/objects/delete", params={"session_id": sid},
                      json={"paths": ["ok", path]})
    assert_error(r, 400)
    r = api.http.post(f"{api.R}/object/copy", params={
        "session_id": sid, "source_path": "x", "destination_path": path})
    assert_error(r, 400)
    assert api.http.get(f"{api.R}/changes", params={"session_id": sid}).json()["results"] == []


def test_odd_but_valid_keys(api: Api) -> None:
    sid = api.session()
    keys = ["a//b", "dir/", "sp ace+plus%25", "ünï/cødé", "q?x#y&z=1"]
    for k in keys:
        api.put(sid, k, k.encode())
    for k in keys:
        assert api.read(k, session_id=sid) == k.encode()
    assert api.paths(session_id=sid) == sorted(keys)


def test_bad_inputs_objects(api: Api) -> None:
    sid = api.session()
    assert_error(api.http.get(f"{api.R}/object"), 400)  # no path
    assert_error(api.http.post(f"{api.R}/object/stage", params={"path": "x"}), 400)
    assert_error(api.http.post(f"{api.R}/object/stage",
                               params={"session_id": "nope", "path": "x"}), 404)
    assert_error(api.http.post(f"{api.R}/objects/delete", params={"session_id": sid},
                               json={"paths": "x"}), 400)
    assert_error(api.http.post(f"{api.R}/objects/delete", params={"session_id": sid},
                               content=b"[", headers={"content-type": "application/json"}), 400)
    assert_error(api.http.get(f"{api.R}/objects", params={"session_id": sid, "ref": "x"}), 400)
    assert_error(api.http.get(f"{api.R}/objects", params={"ref": "0" * 64}), 404)
    assert_error(api.get("x", ref="nope"), 404)
    st = api.stage(sid, "ct")
    httpx.put(st["upload_url"], content=b"1")
    assert_error(api.finalize(sid, "ct", st, content_type="text/plain\r\nX: y"), 400)
    assert_error(api.finalize(sid, "ct", st, metadata={"k": 1}), 400)
    assert_error(api.finalize(sid, "ct", st, signature=5), 400)
    r = api.finalize(sid, "ct", st, content_type="text/plain", metadata={"k": "v", "u": "é"})
    assert r.status_code == 200
    h = api.http.head(f"{api.R}/object", params={"path": "ct", "session_id": sid})
    assert h.headers["content-type"] == "text/plain"
    assert h.headers["x-tilde-meta-k"] == "v" and h.headers["x-tilde-meta-u"] == "%C3%A9"
    ls = api.ls(session_id=sid)["results"][0]["entry"]
    assert ls["metadata"] == {"k": "v", "u": "é"} and ls["content_type"] == "text/plain"


def test_garbage_never_500(api: Api) -> None:
    """Garbage query values and bodies on every route: never a 5xx; errors have the body."""
    sid = api.session()
    junk_q = [{"session_id": "\x00"}, {"path": "%ff"}, {"amount": "1e9"}, {"after": "é" * 2000},
              {"session_id": sid, "path": "a", "prefix": "\x00", "delimiter": "\x00"},
              {"token": "a.b", "part_number": "0", "upload_id": "x"},
              {"left": "x", "right": "y"}, {"ref": "", "session_id": ""}]
    junk_bodies: list[object] = [b"", b"null", b"[]", b'{"paths": [1]}', b'{"message": []}',
                                 b'{"parts": "x", "total_size": -1}', b"\x00\xff",
                                 b'{"token": 1, "upload_id": {}, "physical_address": []}']
    routes = [("GET", "/objects"), ("GET", "/object"), ("HEAD", "/object"),
              ("DELETE", "/object"), ("POST", "/object/stage"), ("PUT", "/object/finalize"),
              ("POST", "/object/multipart"), ("GET", "/object/multipart/part"),
              ("POST", "/object/multipart/complete"), ("POST", "/object/multipart/abort"),
              ("POST", "/object/copy"), ("POST", "/objects/delete"), ("GET", "/changes"),
              ("GET", "/log"), ("GET", "/diff"), ("POST", f"/sessions/{sid}x"),
              ("POST", "/commits/x/revert"), ("PUT", "")]
    for method, route in routes:
        for q in junk_q:
            for body in junk_bodies[:3] if method in ("GET", "HEAD", "DELETE") else junk_bodies:
                r = api.http.request(method, f"{api.R}{route}", params=q, content=body,
                                     headers={"content-type": "application/json"})
                assert r.status_code < 500, (method, route, q, body, r.text)
                if method != "HEAD" and r.status_code >= 400:
                    assert_error(r, r.status_code)
    for q in junk_q:
        for route in ("/_tilde/upload", "/_tilde/part"):
            r = httpx.put(f"{api.server.endpoint}{route}", params=q, content=b"x")
            assert 400 <= r.status_code < 500, (route, q, r.text)
    assert api.http.get(f"{api.R}/changes", params={"session_id": sid}).json()["results"] == []
    for raw in ("after=%ED%A0%80", "prefix=%ff%fe", "path=%ED%A0%80"):
        r = api.http.get(f"{api.R}/objects?{raw}")
        assert r.status_code < 500, r.text
        r = api.http.get(f"{api.R}/object?{raw}")
        assert r.status_code < 500, r.text


def test_a_client_that_disconnects_mid_body_is_no_server_error(api: Api) -> None:
    """A client that goes away while sending a body (a mount cancelling an upload at
    unmount) is logged as such: no traceback, no 500, and the server goes on answering."""
    import socket
    from urllib.parse import quote

    sid = api.session()
    host, port = urlsplit(api.server.endpoint).netloc.split(":")
    target = (f"{urlsplit(api.R).path}/object?session_id={sid}&path={quote('cut.txt')}")
    for method in ("PUT", "POST"):
        route = target if method == "PUT" else target.replace("/object?", "/objects/upload?")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(f"{method} {route} HTTP/1.1\r\nHost: {host}\r\n"
                      f"Authorization: Bearer {api.server.api_key}\r\n"
                      "Content-Length: 100000\r\n\r\n".encode() + b"x" * 10)
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while "client disconnected during PUT" not in api.server.log() and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    log = api.server.log()
    assert "client disconnected during PUT" in log
    assert "Traceback" not in log
    assert api.http.get(f"{api.R}/changes", params={"session_id": sid}).json()["results"] == []
