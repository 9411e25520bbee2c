"""`tilde-server run --downloads redirect`: GET {R}/object answers 307 to a signed, expiring
`/_tilde/download` URL that serves the version current at redirect time by itself (no
bearer), with Range and every header the streaming GET sends; which requests redirect
(presign, User-Agent, --wire current); `--signed-url-base`; and `--downloads stream`.

The redirect servers put signed URLs on http://localhost:PORT while the API is at
http://127.0.0.1:PORT: another origin, so httpx drops the Authorization header on the hop,
as it does for the hosted service's storage URLs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from serverapi import Api, RepoRef, ServerHandle, assert_error, start_server, stop_server, unique

HEADERS = ("etag", "content-type", "content-length", "accept-ranges", "last-modified",
           "x-tilde-reproducible")


def _start(tmp: Path, *args: str, base_host: str | None = "localhost") -> ServerHandle:
    """A server whose signed URLs live on http://{base_host}:PORT (its own port). Its blobs
    are files whatever --backend the run has: with blobs in a bucket, downloads redirect to
    the bucket itself (tests/server/test_s3_blobs.py) and this route is only a fallback."""
    extra = ["--signed-url-base", f"http://{base_host}:{{port}}"] if base_host else []
    return start_server(tmp, args=[*args, *extra], extra_env={"TILDE_SERVER_BLOBS": ""})


def _serve(tmp: Path, *args: str, base_host: str | None = "localhost") -> Iterator[ServerHandle]:
    h = _start(tmp, *args, base_host=base_host)
    yield h
    stop_server(h)
    assert "Traceback" not in h.log(), h.log()


@pytest.fixture(scope="module")
def redirect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    yield from _serve(tmp_path_factory.mktemp("dl-redirect"), "--downloads", "redirect")


@pytest.fixture(scope="module")
def redirect_current(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    yield from _serve(tmp_path_factory.mktemp("dl-current"), "--downloads", "redirect",
                      "--wire", "current")


class Client(Api):
    def __init__(self, server: ServerHandle) -> None:
        org, repo = unique("org"), unique("repo")
        hd = {"Authorization": f"Bearer {server.api_key}"}
        base = f"{server.endpoint}/api/v1"
        assert httpx.post(f"{base}/organizations", json={"name": org, "display_name": org},
                          headers=hd).status_code == 201
        assert httpx.post(f"{base}/organizations/{org}/repositories", json={"name": repo},
                          headers=hd).status_code == 201
        super().__init__(server, RepoRef(org, repo))

    def upload(self, sid: str, path: str, data: bytes, **meta: str) -> None:
        """0.7.7 single upload (works on every dialect served here)."""
        r = self.http.put(f"{self.R}/object", params={"session_id": sid, "path": path})
        assert r.status_code == 200, r.text
        up = r.json()
        assert httpx.put(up["upload_url"], content=data).is_success
        r = self.http.post(f"{self.R}/object/finalize", params={"session_id": sid, "path": path},
                           json={"upload_token": up["upload_token"],
                                 "content_type": "text/plain", "metadata": meta})
        assert r.status_code == 201, r.text

    def commit_one(self, path: str, data: bytes, **meta: str) -> str:
        sid = self.session()
        self.upload(sid, path, data, **meta)
        return self.commit_ok(sid)

    def location(self, path: str, headers: dict[str, str] | None = None,
                 **params: Any) -> str:
        r = self.get_raw(path, headers, **params)
        assert r.status_code == 307, (r.status_code, r.text)
        assert r.headers["cache-control"] == "no-store"
        return r.headers["location"]

    def get_raw(self, path: str, headers: dict[str, str] | None = None,
                **params: Any) -> httpx.Response:
        return self.http.get(f"{self.R}/object", params={"path": path, **params},
                             headers=headers or {})


def sdk(version: str) -> dict[str, str]:
    return {"User-Agent": f"tilde-python-sdk/{version}"}


def test_redirect_target_serves_what_the_streaming_get_serves(redirect: ServerHandle) -> None:
    c = Client(redirect)
    data = b"0123456789abcdef"
    c.commit_one("dir/f.txt", data, color="blue", note="é ü")
    loc = c.location("dir/f.txt")
    assert loc.startswith(f"http://localhost:{urlsplit(redirect.endpoint).port}/_tilde/download?")
    # no bearer at all on the target
    r = httpx.get(loc)
    assert r.status_code == 200 and r.content == data
    head = c.http.head(f"{c.R}/object", params={"path": "dir/f.txt"})  # HEAD never redirects
    assert head.status_code == 200
    for k in HEADERS:
        assert r.headers[k] == head.headers[k], k
    assert r.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert r.headers["x-tilde-reproducible"] == "true"
    assert r.headers["x-tilde-meta-color"] == "blue"
    assert r.headers["x-tilde-meta-note"] == head.headers["x-tilde-meta-note"] == "%C3%A9%20%C3%BC"
    # HEAD on the target: the same headers, no body
    h = httpx.head(loc)
    assert h.status_code == 200 and h.content == b""
    assert {k: h.headers[k] for k in HEADERS} == {k: head.headers[k] for k in HEADERS}
    # an Authorization header on the target is ignored, even a bogus one
    assert httpx.get(loc, headers={"Authorization": "Bearer bogus"}).content == data
    # followed by httpx as the clients do: the bearer is dropped (other origin), Range kept
    r = c.http.get(f"{c.R}/object", params={"path": "dir/f.txt"}, headers={"Range": "bytes=2-5"},
                   follow_redirects=True)
    assert r.status_code == 206 and r.content == b"2345"
    assert r.headers["content-range"] == "bytes 2-5/16"
    assert "authorization" not in r.request.headers
    # the grant never reaches the server's log (its access lines are redacted)
    token = dict(parse_qsl(urlsplit(loc).query))["token"]
    time.sleep(0.2)
    log = redirect.log()
    assert "/_tilde/download?token=REDACTED" in log
    assert token not in log and token[:40] not in log


def test_range_and_416_at_the_target(redirect: ServerHandle) -> None:
    c = Client(redirect)
    c.commit_one("r.bin", b"abcdefghij")
    loc = c.location("r.bin")
    for rng, status, body, crange in [
            ("bytes=0-0", 206, b"a", "bytes 0-0/10"),
            ("bytes=7-", 206, b"hij", "bytes 7-9/10"),
            ("bytes=-3", 206, b"hij", "bytes 7-9/10"),
            ("bytes=5-100", 206, b"fghij", "bytes 5-9/10")]:
        r = httpx.get(loc, headers={"Range": rng})
        assert (r.status_code, r.content, r.headers["content-range"]) == (status, body, crange)
        assert r.headers["content-length"] == str(len(body))
    for bad in ("bytes=10-", "bytes=5-2", "bytes=0-1,3-4", "items=1-2", "bytes=-0"):
        r = httpx.get(loc, headers={"Range": bad})
        assert_error(r, 416)
        assert r.headers["content-range"] == "bytes */10"


def test_target_keeps_serving_the_version_of_redirect_time(redirect: ServerHandle) -> None:
    c = Client(redirect)
    c.commit_one("v.txt", b"first version")
    old = c.location("v.txt")
    c.commit_one("v.txt", b"second")
    sid = c.session()
    assert c.delete(sid, "v.txt").status_code == 204
    c.commit_ok(sid)
    r = httpx.get(old)
    assert r.status_code == 200 and r.content == b"first version"
    assert r.headers["etag"] == f'"{hashlib.md5(b"first version").hexdigest()}"'
    assert_error(c.get_raw("v.txt"), 404)  # no redirect for an object that is not there


def test_staged_reads_redirect_too(redirect: ServerHandle) -> None:
    c = Client(redirect)
    sid = c.session()
    c.upload(sid, "s.txt", b"staged bytes")
    r = httpx.get(c.location("s.txt", session_id=sid))
    assert r.content == b"staged bytes" and r.headers["x-tilde-reproducible"] == "false"
    ref = c.commit_ok(sid)
    c.commit_one("s.txt", b"later")
    r = httpx.get(c.location("s.txt", ref=ref))
    assert r.content == b"staged bytes" and r.headers["x-tilde-reproducible"] == "true"


def test_tampered_or_missing_tokens_are_refused(redirect: ServerHandle) -> None:
    c = Client(redirect)
    c.commit_one("t.txt", b"secret")
    loc = c.location("t.txt")
    parts = urlsplit(loc)
    token = dict(parse_qsl(parts.query))["token"]
    body, _, sig = token.partition(".")
    target = f"{redirect.endpoint}/_tilde/download"
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    for bad in (f"{flipped}.{sig}", f"{body}.{sig[:-2]}", f"{body}.", "x", "", "..",
                f"{body}.{sig}x", "é.é"):
        assert_error(httpx.get(f"{target}?{urlencode({'token': bad})}"), 403)
    assert_error(httpx.get(target), 400, "missing_parameter")
    # a token of another purpose (an upload token) is no download grant
    sid = c.session()
    up = c.http.put(f"{c.R}/object", params={"session_id": sid, "path": "x"}).json()
    assert_error(httpx.get(target, params={"token": up["upload_token"]}), 403)
    assert httpx.get(f"{target}?{parts.query}").content == b"secret"


def test_expired_download_url_is_403(tmp_path: Path) -> None:
    # a grant is valid for at least its TTL (rounded up), so 3 s leaves a loaded machine room
    # between signing and the first fetch; past ttl + 1 s it is expired whatever the rounding
    h = _start(tmp_path, "--downloads", "redirect", "--download-url-ttl", "3")
    try:
        c = Client(h)
        c.commit_one("e.txt", b"soon gone")
        loc = c.location("e.txt")
        assert httpx.get(loc).content == b"soon gone"
        time.sleep(4.2)
        assert_error(httpx.get(loc), 403, "expired")
        assert httpx.head(loc).status_code == 403
        # a new GET gets a new URL
        assert httpx.get(c.location("e.txt")).content == b"soon gone"
    finally:
        stop_server(h)
    assert "Traceback" not in h.log()


@pytest.mark.parametrize(("headers", "params", "redirects"), [
    (sdk("0.7.2"), {}, False),              # presign=False callers cannot follow a redirect
    (sdk("0.7.6"), {}, False),
    (sdk("0.7.6 my-tool/1"), {}, False),
    (sdk("0.7.2"), {"presign": "true"}, True),  # the 0.7.2-0.7.6 default: followed
    (sdk("0.7.6"), {"presign": "true"}, True),
    (sdk("0.7.7"), {}, True),               # 0.7.7+ always follow
    (sdk("0.7.9"), {}, True),
    (sdk("0.10.0"), {}, True),
    ({"User-Agent": "python-httpx/0.28"}, {}, True),   # any other caller
    ({"User-Agent": "curl/8 tilde-python-sdk/0.7.2"}, {}, True),  # not at the start
    (sdk("0.7.9"), {"presign": "false"}, False),
    ({}, {"presign": "0"}, False),
    ({}, {"presign": "1"}, True),
])
def test_which_gets_redirect(redirect: ServerHandle, headers: dict[str, str],
                             params: dict[str, str], redirects: bool) -> None:
    c = Client(redirect)
    c.commit_one("w.txt", b"which")
    r = c.get_raw("w.txt", headers, **params)
    assert r.status_code == (307 if redirects else 200), r.text
    if not redirects:
        assert r.content == b"which" and r.headers["etag"]


def test_bad_presign_and_head(redirect: ServerHandle) -> None:
    c = Client(redirect)
    c.commit_one("p.txt", b"p")
    assert_error(c.get_raw("p.txt", presign="maybe"), 400, "invalid_parameter")
    r = c.http.head(f"{c.R}/object", params={"path": "p.txt", "presign": "true"})
    assert r.status_code == 200 and r.headers["content-length"] == "1"


def test_huge_metadata_streams_instead(redirect: ServerHandle) -> None:
    """A grant that would not fit in a URL is not issued: that GET streams."""
    c = Client(redirect)
    c.commit_one("m.txt", b"meta", big="x" * 9000)
    r = c.get_raw("m.txt")
    assert r.status_code == 200 and r.content == b"meta"
    assert r.headers["x-tilde-meta-big"] == "x" * 9000


def test_wire_current_redirects_every_get(redirect_current: ServerHandle) -> None:
    c = Client(redirect_current)
    c.commit_one("c.txt", b"current")
    for headers, params in [(sdk("0.7.2"), {}), (sdk("0.7.2"), {"presign": "false"}),
                            (sdk("0.7.9"), {}), ({}, {"presign": "junk"})]:
        loc = c.location("c.txt", headers, **params)
        assert httpx.get(loc).content == b"current"
    r = c.http.head(f"{c.R}/object", params={"path": "c.txt"})
    assert r.status_code == 200


def test_signed_url_base_applies_to_every_signed_url(redirect: ServerHandle) -> None:
    c = Client(redirect)
    base = f"http://localhost:{urlsplit(redirect.endpoint).port}/_tilde/"
    sid = c.session()
    st = c.http.post(f"{c.R}/object/stage", params={"session_id": sid, "path": "a"}).json()
    assert st["upload_url"].startswith(base + "upload?")
    up = c.http.put(f"{c.R}/object", params={"session_id": sid, "path": "b"}).json()
    assert up["upload_url"].startswith(base + "upload?")
    mp = c.http.post(f"{c.R}/object/multipart", params={"session_id": sid, "path": "m"}).json()
    r = c.http.get(f"{c.R}/object/multipart/part",
                   params={"token": mp["token"], "upload_id": mp["upload_id"],
                           "part_number": 1})
    assert r.status_code == 307 and r.headers["location"].startswith(base + "part?")
    r = c.http.get(f"{c.R}/object/multipart/part",
                   params={"session_id": sid, "path": "m", "upload_id": mp["upload_id"],
                           "part_number": 2})
    assert r.json()["upload_url"].startswith(base + "part?")
    # and they work there
    assert httpx.put(st["upload_url"], content=b"staged").is_success
    assert httpx.put(r.json()["upload_url"], content=b"part").is_success


def test_stream_mode_ignores_presign(tmp_path: Path) -> None:
    h = _start(tmp_path, base_host=None)  # the default: --downloads stream, no base
    try:
        c = Client(h)
        c.commit_one("s.txt", b"streamed")
        for params in ({}, {"presign": "true"}, {"presign": "whatever"}):
            r = c.get_raw("s.txt", sdk("0.7.9"), **params)
            assert r.status_code == 200 and r.content == b"streamed"
        sid = c.session()
        st = c.http.post(f"{c.R}/object/stage", params={"session_id": sid, "path": "a"}).json()
        assert st["upload_url"].startswith(f"{h.endpoint}/_tilde/upload?")
        assert_error(httpx.get(f"{h.endpoint}/_tilde/download", params={"token": "a.b"}), 403)
    finally:
        stop_server(h)
    assert "Traceback" not in h.log()


def test_bad_option_values_are_refused(tmp_path: Path) -> None:
    for args in (["--wire", "newest"], ["--downloads", "s3"], ["--download-url-ttl", "0"],
                 ["--signed-url-base", "ftp://x"], ["--signed-url-base", "http://h/?q=1"]):
        with pytest.raises(RuntimeError, match="exited early"):
            start_server(tmp_path / args[0].strip("-") / str(len(args[1])), args=args)
