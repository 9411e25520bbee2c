"""Blobs in an S3 bucket (`--blobs s3://BUCKET/PREFIX`, store/s3blobs.py), on a real
SeaweedFS and a real PostgreSQL, with two server processes of one deployment.

What it shows: the upload URL a client gets is a presigned PUT of the bucket (both
single-upload flows), part URLs are presigned part PUTs completed by the bucket itself (both
multipart dialects), `--downloads redirect` sends GETs to a presigned GET of the bucket
with the headers clients read, bytes uploaded through one process are served by the other,
no object byte lands in either process's --data, and garbage (uploads never finalized,
rolled-back sessions, abandoned multipart uploads) is collected without touching what is
referenced."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from serverapi import (
    Api,
    ServerHandle,
    assert_error,
    one_repo_on,
    start_server,
    stop_server,
)

from postgres import start_postgres
from seaweed import PROFILE, SeaweedHandle, start_seaweed
from tilde_server.store import Store
from tilde_server.store.s3blobs import S3Options

ADMIN = "tk-s3-blobs-admin-0123456789abcdef01"
BUCKET = "tilde-blobs"
PREFIX = "deploy"
UA_072 = {"User-Agent": "tilde-python-sdk/0.7.2"}


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedHandle]:
    with start_seaweed(tmp_path_factory.mktemp("weed"), buckets=[BUCKET]) as sw:
        yield sw


@pytest.fixture(scope="module")
def deployment_env(seaweed: SeaweedHandle, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[dict[str, str]]:
    with start_postgres(tmp_path_factory.mktemp("pg")) as pg:
        shared = tmp_path_factory.mktemp("shared")
        yield {"TILDE_SERVER_DATABASE": pg.create_database(f"s3_{os.getpid()}"),
               "TILDE_SERVER_SECRET_KEY_FILE": str(shared / "keys.json"),
               "TILDE_SERVER_BLOBS": f"s3://{BUCKET}/{PREFIX}", **seaweed.env()}


@pytest.fixture(scope="module")
def servers(deployment_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[list[ServerHandle]]:
    out = [start_server(tmp_path_factory.mktemp(name), ADMIN, extra_env=deployment_env,
                        args=["--downloads", "redirect"]) for name in ("a", "b")]
    yield out
    for h in out:
        stop_server(h)
        assert "Traceback" not in h.log(), h.log()


@pytest.fixture
def apis(servers: list[ServerHandle]) -> Iterator[list[Api]]:
    with one_repo_on(servers) as out:
        yield out


def _bucket_keys(seaweed: SeaweedHandle) -> dict[str, int]:
    s3 = seaweed.client()
    out: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out


def _files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file() and p.stat().st_size > 0]


def _read(api: Api, path: str, **params: Any) -> bytes:
    """A GET as 0.7.7+ clients make it: redirects followed (the bearer stays behind)."""
    r = api.http.get(f"{api.R}/object", params={"path": path, **params}, follow_redirects=True)
    assert r.status_code == 200, r.text
    return r.content


def _origin(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}"


def test_single_uploads_go_to_the_bucket_and_the_other_process_serves_them(
        apis: list[Api], seaweed: SeaweedHandle, servers: list[ServerHandle]) -> None:
    a, b = apis
    sid = a.session()
    data = os.urandom(200_000)
    # 0.7.2: stage -> PUT -> finalize
    st = a.stage(sid, "legacy.bin")
    assert _origin(st["upload_url"]) == seaweed.endpoint
    assert a.put(sid, "legacy.bin", data) == hashlib.md5(data).hexdigest()
    # 0.7.7+: PUT {R}/object -> PUT -> POST finalize (checksum and size checked)
    up = a.http.put(f"{a.R}/object", params={"session_id": sid, "path": "current.bin"}).json()
    assert _origin(up["upload_url"]) == seaweed.endpoint
    put = httpx.put(up["upload_url"], content=data[::-1])
    assert put.status_code == 200
    fin = f"{a.R}/object/finalize"
    q = {"session_id": sid, "path": "current.bin"}
    assert_error(a.http.post(fin, params=q, json={"upload_token": up["upload_token"],
                                                  "checksum": '"' + "0" * 32 + '"'}),
                 400, "checksum_mismatch")
    assert_error(a.http.post(fin, params=q, json={"upload_token": up["upload_token"],
                                                  "size_bytes": 5}), 400, "size_mismatch")
    r = a.http.post(fin, params=q, json={"upload_token": up["upload_token"],
                                         "checksum": put.headers["ETag"],
                                         "size_bytes": len(data)})
    assert r.status_code == 201, r.text
    assert r.json()["etag"] == hashlib.md5(data[::-1]).hexdigest()
    # finalize without bytes: refused, nothing staged
    up2 = a.http.put(f"{a.R}/object", params={"session_id": sid, "path": "none.bin"}).json()
    assert_error(a.http.post(fin, params={"session_id": sid, "path": "none.bin"},
                             json={"upload_token": up2["upload_token"]}), 400, "upload_missing")
    # the other process serves them, staged and committed
    assert _read(b, "legacy.bin", session_id=sid) == data
    a.commit_ok(sid)
    assert b.paths() == ["current.bin", "legacy.bin"]
    assert _read(b, "current.bin") == data[::-1]
    # no object byte in either process's own directory
    for h in servers:
        assert not [p for p in _files_under(h.data_dir) if "blobs" in p.parts], h.data_dir
    assert sum(1 for k in _bucket_keys(seaweed) if "/u-" in k) >= 2


def test_redirected_reads_go_to_the_bucket_with_the_headers_clients_read(
        apis: list[Api], seaweed: SeaweedHandle) -> None:
    a, b = apis
    sid = a.session()
    data = os.urandom(100_000)
    a.put(sid, "r.bin", data)
    a.commit_ok(sid)
    r = b.get("r.bin")  # plain httpx: redirected (docs/deploy.md)
    assert r.status_code == 307
    loc = r.headers["location"]
    assert _origin(loc) == seaweed.endpoint
    got = httpx.get(loc, headers={"Range": "bytes=10-19"})  # no bearer: the URL is signed
    assert got.status_code == 206
    assert got.content == data[10:20]
    assert got.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert got.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert got.headers["Content-Type"] == "application/octet-stream"
    head = b.http.head(f"{b.R}/object", params={"path": "r.bin"})  # HEAD never redirects
    assert head.status_code == 200 and head.headers["X-Tilde-Reproducible"] == "true"
    # a 0.7.2 caller with presign=False streams, through the server, from the bucket
    s = b.http.get(f"{b.R}/object", params={"path": "r.bin"}, headers=UA_072)
    assert s.status_code == 200 and s.content == data
    s = b.http.get(f"{b.R}/object", params={"path": "r.bin"},
                   headers={**UA_072, "Range": "bytes=99990-"})
    assert s.status_code == 206 and s.content == data[99990:]


def _initiate(api: Api, sid: str, path: str) -> dict[str, Any]:
    r = api.http.post(f"{api.R}/object/multipart", params={"session_id": sid, "path": path})
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def test_multipart_parts_go_to_the_bucket_and_it_assembles_them(
        apis: list[Api], seaweed: SeaweedHandle) -> None:
    a, b = apis
    sid = a.session()
    p1, p2 = os.urandom(5 << 20), os.urandom(123_457)
    # 0.7.7+: part URLs by binding, JSON {upload_url}
    mp = _initiate(a, sid, "big.bin")
    etags = []
    for n, part in ((1, p1), (2, p2)):
        r = a.http.get(f"{a.R}/object/multipart/part",
                       params={"session_id": sid, "path": "big.bin",
                               "upload_id": mp["upload_id"], "part_number": n})
        assert r.status_code == 200, r.text
        assert _origin(r.json()["upload_url"]) == seaweed.endpoint
        put = httpx.put(r.json()["upload_url"], content=part)
        assert put.status_code == 200
        etags.append(put.headers["ETag"])
    expected = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for e in etags)).hexdigest()
    complete = f"{a.R}/object/multipart/complete"
    q = {"session_id": sid, "path": "big.bin"}
    bad = {"upload_token": mp["upload_token"], "upload_id": mp["upload_id"],
           "parts": [{"part_number": 1, "etag": etags[1]}, {"part_number": 2, "etag": etags[1]}]}
    assert_error(a.http.post(complete, params=q, json=bad), 400, "invalid_parts")
    body = {"upload_token": mp["upload_token"], "upload_id": mp["upload_id"],
            "parts": [{"part_number": i + 1, "etag": e} for i, e in enumerate(etags)],
            "size_bytes": len(p1) + len(p2)}
    r = a.http.post(complete, params=q, json=body)
    assert r.status_code in (200, 201), r.text
    assert r.json()["etag"] == f"{expected}-2"
    # 0.7.2-0.7.6: the part lookup with the token answers 307 to the bucket's part URL
    mp2 = _initiate(a, sid, "legacy-big.bin")
    r = a.http.get(f"{a.R}/object/multipart/part",
                   params={"token": mp2["token"], "part_number": 1,
                           "upload_id": mp2["upload_id"]})
    assert r.status_code == 307 and _origin(r.headers["location"]) == seaweed.endpoint
    put = httpx.put(r.headers["location"], content=p2)
    r = a.http.post(complete, params={"session_id": sid, "path": "legacy-big.bin"},
                    json={"token": mp2["token"], "upload_id": mp2["upload_id"],
                          "physical_address": mp2["physical_address"],
                          "parts": [{"part_number": 1, "etag": put.headers["ETag"]}],
                          "total_size": len(p2)})
    assert r.status_code in (200, 201), r.text
    # an empty multipart upload (no part at all) is the empty object
    mp3 = _initiate(a, sid, "empty.bin")
    r = a.http.post(complete, params={"session_id": sid, "path": "empty.bin"},
                    json={"upload_token": mp3["upload_token"], "upload_id": mp3["upload_id"],
                          "parts": [], "size_bytes": 0})
    assert r.status_code in (200, 201), r.text
    a.commit_ok(sid)
    assert httpx.get(b.get("big.bin").headers["location"]).content == p1 + p2
    assert b.http.get(f"{b.R}/object", params={"path": "legacy-big.bin"},
                      headers=UA_072).content == p2
    assert b.http.get(f"{b.R}/object", params={"path": "empty.bin"},
                      headers=UA_072).content == b""
    s3 = seaweed.client()
    assert not s3.list_multipart_uploads(Bucket=BUCKET, Prefix=PREFIX).get("Uploads")


def test_garbage_in_the_bucket_is_collected_and_nothing_referenced_is(
        apis: list[Api], seaweed: SeaweedHandle, deployment_env: dict[str, str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = apis
    keep = a.session()
    a.put(keep, "kept.bin", b"committed bytes")
    a.commit_ok(keep)
    doomed = a.session()
    a.put(doomed, "rolled-back.bin", os.urandom(1000))  # finalized, then rolled back
    up = a.http.put(f"{a.R}/object", params={"session_id": doomed, "path": "never.bin"}).json()
    assert httpx.put(up["upload_url"], content=b"never finalized").status_code == 200
    mp = _initiate(a, doomed, "abandoned.bin")
    r = a.http.get(f"{a.R}/object/multipart/part",
                   params={"session_id": doomed, "path": "abandoned.bin",
                           "upload_id": mp["upload_id"], "part_number": 1})
    assert httpx.put(r.json()["upload_url"], content=b"part").status_code == 200
    staged_keys = set(_bucket_keys(seaweed))
    assert a.http.delete(f"{a.R}/sessions/{doomed}").status_code in (200, 204)
    # the rolled-back session's finalized upload went with the rollback
    after_rollback = set(_bucket_keys(seaweed))
    assert len(staged_keys - after_rollback) == 1
    # a sweep (here: a maintenance process of the same deployment) takes the rest: the
    # upload never finalized once its URL can no longer be finalized, the abandoned
    # multipart upload; the committed object stays
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE",
                       deployment_env["AWS_SHARED_CREDENTIALS_FILE"])
    store, _ = Store.open(tmp_path / "gc", None, recover=False,
                          database=deployment_env["TILDE_SERVER_DATABASE"],
                          key_file=Path(deployment_env["TILDE_SERVER_SECRET_KEY_FILE"]),
                          blobs=deployment_env["TILDE_SERVER_BLOBS"],
                          s3=S3Options(seaweed.endpoint, seaweed.region, PROFILE))
    try:
        first = store.sweep()  # the upload URL is still valid: the bytes stay
        assert first.blobs == 0
        store.upload_ttl = 0
        store.bucket_upload_grace = 0
        r2 = store.sweep()
        assert r2.blobs == 1 and r2.expired_uploads >= 1
    finally:
        store.close()
    left = set(_bucket_keys(seaweed))
    assert len(after_rollback - left) == 1
    assert b.http.get(f"{b.R}/object", params={"path": "kept.bin"},
                      headers=UA_072).content == b"committed bytes"
    s3 = seaweed.client()
    assert not s3.list_multipart_uploads(Bucket=BUCKET, Prefix=PREFIX).get("Uploads")


def test_refused_completes_change_nothing_and_aborts_reach_the_bucket(
        apis: list[Api], seaweed: SeaweedHandle) -> None:
    a, _ = apis
    s3 = seaweed.client()

    def pending() -> int:
        return len(s3.list_multipart_uploads(Bucket=BUCKET, Prefix=PREFIX).get("Uploads", []))

    sid = a.session()
    complete = f"{a.R}/object/multipart/complete"
    q = {"session_id": sid, "path": "m.bin"}
    mp = _initiate(a, sid, "m.bin")
    parts, etags = [b"s" * 1000, os.urandom(5 << 20)], []
    for n, part in enumerate(parts, start=1):
        r = a.http.get(f"{a.R}/object/multipart/part",
                       params={**q, "upload_id": mp["upload_id"], "part_number": n})
        etags.append(httpx.put(r.json()["upload_url"], content=part).headers["ETag"])
    body = {"upload_token": mp["upload_token"], "upload_id": mp["upload_id"],
            "parts": [{"part_number": i + 1, "etag": e} for i, e in enumerate(etags)]}
    # a part too small for S3 but the last, a wrong size, a wrong checksum, a missing part:
    # 400, and the upload is as it was
    assert_error(a.http.post(complete, params=q, json=body), 400, "invalid_parts")
    assert_error(a.http.post(complete, params=q, json={**body, "parts": body["parts"][1:],
                                                       "size_bytes": 1}), 400, "invalid_parts")
    assert_error(a.http.post(complete, params=q, json={**body, "parts": body["parts"][1:],
                                                       "checksum": "0" * 32 + "-1"}),
                 400, "checksum_mismatch")
    assert_error(a.http.post(complete, params=q, json={
        **body, "parts": [{"part_number": 3, "etag": etags[0]}]}), 400, "invalid_parts")
    before = pending()
    r = a.http.post(complete, params=q, json={**body, "parts": body["parts"][1:],
                                              "size_bytes": len(parts[1])})
    assert r.status_code in (200, 201), r.text
    assert pending() == before - 1
    # a retried complete (a lost answer) finds the upload done: 404, the object staged once
    assert_error(a.http.post(complete, params=q, json={**body, "parts": body["parts"][1:]}),
                 404, "upload_not_found")
    # aborts in both dialects abort the bucket's upload
    legacy = _initiate(a, sid, "l.bin")
    new = _initiate(a, sid, "n.bin")
    before = pending()
    r = a.http.post(f"{a.R}/object/multipart/abort", params={**q, "path": "l.bin"},
                    json={"token": legacy["token"], "upload_id": legacy["upload_id"],
                          "physical_address": legacy["physical_address"]})
    assert r.status_code == 204, r.text
    r = a.http.request("DELETE", f"{a.R}/object/multipart",
                       params={**q, "path": "n.bin", "upload_id": new["upload_id"],
                               "upload_token": new["upload_token"]})
    assert r.status_code == 204, r.text
    assert pending() == before - 2
    a.commit_ok(sid)
    assert _read(a, "m.bin") == parts[1]
