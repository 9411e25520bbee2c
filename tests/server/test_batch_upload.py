"""The batch upload extension, POST {R}/objects/upload (docs/api.md): a manifest line, then the
objects' bytes; all staged in one transaction or nothing, never a blob or spool left behind."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from serverapi import (
    Api,
    RepoRef,
    ServerHandle,
    assert_error,
    blob_ids,
    make_api,
    server_cli,
    unique,
)

MiB = 1024 * 1024


@pytest.fixture
def api(server: ServerHandle, repo_ref: RepoRef) -> Iterator[Api]:
    yield from make_api(server, repo_ref)


def manifest(objects: list[Any]) -> bytes:
    return json.dumps({"objects": objects}, separators=(",", ":")).encode() + b"\n"


def batch(objects: list[tuple[str, bytes]], **extra: Any) -> bytes:
    """A well-formed body; `extra` adds the same fields to every manifest entry."""
    return manifest([{"path": p, "size": len(d), **extra} for p, d in objects]) + b"".join(
        d for _, d in objects)


def upload(api: Api, sid: str, body: bytes | Iterator[bytes],
           http: httpx.Client | None = None, R: str | None = None) -> httpx.Response:
    return (http or api.http).post(f"{R or api.R}/objects/upload", params={"session_id": sid},
                                   content=body,
                                   headers={"Content-Type": "application/x-tilde-batch"})


def changes(api: Api, sid: str) -> list[dict[str, Any]]:
    r = api.http.get(f"{api.R}/changes", params={"session_id": sid})
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results



def spool_files(server: ServerHandle, sid: str) -> list[str]:
    return [p.name for p in (server.data_dir / "tmp" / sid).rglob("*") if p.is_file()]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_batch_roundtrip_and_one_commit(api: Api, server: ServerHandle) -> None:
    big = os.urandom(3 * MiB + 17)  # spans several 1 MiB write slices
    objects = [("a.txt", b"alpha " + os.urandom(4090)), ("empty", b""),
               ("sub/dir/c.bin", big)]
    sid = api.session()

    def chunks(body: bytes) -> Iterator[bytes]:  # chunked, cut at odd places
        for i in range(0, len(body), 65_537):
            yield body[i:i + 65_537]
    r = upload(api, sid, chunks(batch(objects)))
    assert r.status_code == 200, r.text
    assert r.json() == {"objects": [{"path": p, "etag": md5(d), "size": len(d)}
                                    for p, d in objects]}
    assert api.paths(session_id=sid) == ["a.txt", "empty", "sub/dir/c.bin"]
    assert api.paths(session_id=sid, delimiter="/") == ["a.txt", "empty", "sub/"]
    for path, data in objects:
        got = api.get(path, session_id=sid)
        assert got.status_code == 200 and got.content == data
        assert got.headers["etag"] == f'"{md5(data)}"'
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.headers["x-tilde-reproducible"] == "false"
        assert_error(api.get(path), 404)  # staged only
    entries = {c["path"]: c["entry"] for c in changes(api, sid)}
    assert {p: (e["size"], e["e_tag"]) for p, e in entries.items()} == {
        p: (len(d), md5(d)) for p, d in objects}
    assert not spool_files(server, sid)

    cid = api.commit_ok(sid, "batch")
    log = api.http.get(f"{api.R}/log").json()["results"]
    assert [c["id"] for c in log] == [cid]
    assert log[0]["object_count"] == 3 and log[0]["total_size"] == sum(len(d) for _, d in objects)
    for path, data in objects:
        got = api.get(path)
        assert got.content == data and got.headers["x-tilde-reproducible"] == "true"
    diff = api.http.get(f"{api.R}/diff", params={"left": "", "right": cid}).json()["results"]
    assert sorted(d["path"] for d in diff) == ["a.txt", "empty", "sub/dir/c.bin"]


def test_content_type_metadata_utf8_and_no_content_type_header(api: Api) -> None:
    sid = api.session()
    body = manifest([{"path": "t.txt", "size": 2, "content_type": "text/plain",
                      "metadata": {"k": "v", "u": "é"}},
                     {"path": "plain", "size": 1}]) + b"hi" + b"x"
    r = api.http.post(f"{api.R}/objects/upload", params={"session_id": sid}, content=body)
    assert r.status_code == 200, r.text
    # raw UTF-8 in the manifest (json.dumps(ensure_ascii=False)), and a key with a newline
    raw = json.dumps({"objects": [{"path": "ünï/cødé", "size": 3},
                                  {"path": "line\nbreak", "size": 1}]},
                     separators=(",", ":"), ensure_ascii=False).encode() + b"\nabcd"
    r = upload(api, sid, raw)
    assert r.status_code == 200, r.text
    assert [o["path"] for o in r.json()["objects"]] == ["ünï/cødé", "line\nbreak"]
    assert api.read("ünï/cødé", session_id=sid) == b"abc"
    assert api.read("line\nbreak", session_id=sid) == b"d"
    h = api.http.head(f"{api.R}/object", params={"path": "t.txt", "session_id": sid})
    assert h.headers["content-type"] == "text/plain" and h.headers["x-tilde-meta-k"] == "v"
    assert h.headers["x-tilde-meta-u"] == "%C3%A9"
    entries = {c["path"]: c["entry"] for c in changes(api, sid)}
    assert entries["t.txt"]["metadata"] == {"k": "v", "u": "é"}
    assert entries["plain"]["metadata"] == {}
    assert entries["plain"]["content_type"] == "application/octet-stream"


def test_empty_batch(api: Api) -> None:
    sid = api.session()
    r = upload(api, sid, b'{"objects":[]}\n')
    assert r.status_code == 200 and r.json() == {"objects": []}
    assert changes(api, sid) == []
    assert_error(upload(api, sid, b'{"objects":[]}\nextra'), 400)


def test_overwrite_committed_and_staged(api: Api, server: ServerHandle) -> None:
    seed = api.session()
    api.put(seed, "x", b"old x")
    api.commit_ok(seed)
    sid = api.session()
    staged_old = hashlib.sha256(api.R.encode()).digest() * 50  # bytes no one else has
    api.put(sid, "y", staged_old)
    # its blob id: the content key, or (blobs in a bucket) the upload's own key
    [y] = [c["entry"]["address"] for c in changes(api, sid) if c["path"] == "y"]
    y_blob = y.removeprefix("sha256:")
    before = blob_ids(server)
    r = upload(api, sid, batch([("x", b"new x"), ("y", b"new y")]))
    assert r.status_code == 200, r.text
    assert api.read("x", session_id=sid) == b"new x"
    assert api.read("y", session_id=sid) == b"new y"
    assert api.read("x") == b"old x"
    # the staged bytes the batch replaced are collected, as for a single upload
    assert y_blob in before - blob_ids(server)
    api.commit_ok(sid)
    assert (api.read("x"), api.read("y")) == (b"new x", b"new y")


def _bad_bodies() -> list[tuple[str, bytes, str | None]]:
    ok = [{"path": "ok", "size": 3}]
    one = manifest(ok)
    return [
        ("not json", b"this is not json\nabc", "invalid_json"),
        ("not an object", b"[1, 2]\n", "invalid_json"),
        ("empty line", b"\n", "invalid_json"),
        ("no newline", json.dumps({"objects": ok}).encode(), "incomplete_body"),
        ("no newline within 1 MiB", b'{"objects": [' + b" " * (MiB + 10), "invalid_input"),
        ("objects missing", b'{"files": []}\n', "invalid_input"),
        ("objects not an array", b'{"objects": {"path": "a"}}\n', "invalid_input"),
        ("entry not an object", manifest(["ok"]), "invalid_input"),
        ("path missing", manifest([{"size": 0}]), "invalid_input"),
        ("size missing", manifest([{"path": "a"}]), "invalid_input"),
        ("size negative", manifest([{"path": "a", "size": -1}]), "invalid_input"),
        ("size a string", manifest([{"path": "a", "size": "3"}]) + b"abc", "invalid_input"),
        ("size a float", manifest([{"path": "a", "size": 3.0}]) + b"abc", "invalid_input"),
        ("size a bool", manifest([{"path": "a", "size": True}]) + b"a", "invalid_input"),
        ("short body", one + b"ab", "incomplete_body"),
        ("short body, second object", manifest([*ok, {"path": "b", "size": 2}]) + b"abc",
         "incomplete_body"),
        ("long body", one + b"abcd", "invalid_input"),
        ("duplicate path", manifest([*ok, {"path": "ok", "size": 0}]) + b"abc",
         "invalid_input"),
        ("invalid path ..", manifest([*ok, {"path": "a/../b", "size": 0}]) + b"abc",
         "invalid_path"),
        ("invalid path /", manifest([{"path": "/abs", "size": 0}]), "invalid_path"),
        ("invalid path empty", manifest([{"path": "", "size": 0}]), "invalid_path"),
        ("too many objects", manifest([{"path": f"f{i}", "size": 0} for i in range(1001)]),
         "invalid_input"),
        ("over 64 MiB", manifest([{"path": "a", "size": 40 * MiB},
                                  {"path": "b", "size": 40 * MiB}]), "invalid_input"),
        ("bad metadata", manifest([{"path": "a", "size": 0, "metadata": {"k": 1}}]),
         "invalid_input"),
        ("metadata not an object", manifest([{"path": "a", "size": 0, "metadata": ["k"]}]),
         "invalid_input"),
        ("bad content type", manifest([{"path": "a", "size": 0,
                                        "content_type": "text/plain\r\nX: y"}]),
         "invalid_input"),
        ("NaN", b'{"objects": [{"path": "a", "size": NaN}]}\n', "invalid_json"),
    ]


@pytest.mark.parametrize(("body", "code"), [(b, c) for _, b, c in _bad_bodies()],
                         ids=[name for name, _, _ in _bad_bodies()])
def test_bad_batches_change_nothing(api: Api, server: ServerHandle, body: bytes,
                                    code: str | None) -> None:
    sid = api.session()
    api.put(sid, "ok", b"staged before")
    before_blobs, before_changes = blob_ids(server), changes(api, sid)
    assert_error(upload(api, sid, body), 400, code)
    assert changes(api, sid) == before_changes
    assert api.read("ok", session_id=sid) == b"staged before"
    assert blob_ids(server) == before_blobs
    assert not spool_files(server, sid)


def test_exactly_at_the_object_limit(api: Api) -> None:
    sid = api.session()
    r = upload(api, sid, manifest([{"path": f"f/{i:04d}", "size": 1} for i in range(1000)])
               + b"z" * 1000)
    assert r.status_code == 200, r.text
    assert len(r.json()["objects"]) == 1000
    assert len(api.paths(session_id=sid)) == 1000


def test_unknown_or_closed_session_and_repo(api: Api, server: ServerHandle) -> None:
    before = blob_ids(server)
    body = batch([("a", os.urandom(64))])
    assert_error(upload(api, "no-such-session", body), 404, "session_not_found")
    assert_error(api.http.post(f"{api.R}/objects/upload", content=body), 400,
                 "missing_parameter")
    sid = api.session()
    accepted = os.urandom(64)
    assert upload(api, sid, batch([("a", accepted)])).status_code == 200
    api.commit_ok(sid)
    assert_error(upload(api, sid, body), 404, "session_not_found")  # committed
    rolled = api.session()
    assert api.http.delete(f"{api.R}/sessions/{rolled}").status_code == 204
    assert_error(upload(api, rolled, body), 404, "session_not_found")
    assert_error(upload(api, sid, body, R=f"{api.R}-missing"), 404)
    assert blob_ids(server) - before == {hashlib.sha256(accepted).hexdigest()}
    # other methods on the route: 405 (what a client falls back on, with 404 and 501)
    assert api.http.get(f"{api.R}/objects/upload").status_code == 405


# -- authorization ------------------------------------------------------------------------------
DENY_SECRET = """package tilde.authz
import rego.v1

deny if {
    input.action == "object:write"
    startswith(input.path, "secret/")
}
"""


def _member(server: ServerHandle, api: Api, role: str) -> tuple[str, httpx.Client]:
    """A new user (made with `tilde-server user add`) in the repo's organization."""
    name = unique("user")
    proc = server_cli(server.data_dir, "user", "add", "--data", str(server.data_dir), name)
    assert proc.returncode == 0, proc.stderr
    uid = proc.stdout.split("(id ", 1)[1].split(")", 1)[0]
    key = proc.stdout.rsplit("API key (shown once): ", 1)[1].strip()
    r = api.http.post(f"{api.base}/organizations/{api.org}/members",
                      json={"username": name, "role": role})
    assert r.status_code == 201, r.text
    return uid, httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=20)


def test_reader_is_refused_and_nothing_is_written(api: Api, server: ServerHandle) -> None:
    _, reader = _member(server, api, "reader")
    with reader:
        r = reader.post(f"{api.R}/sessions")
        assert r.status_code == 201, r.text
        sid = r.json()["session_id"]
        before = blob_ids(server)
        assert_error(upload(api, sid, batch([("a", os.urandom(100))]), http=reader), 403,
                     "forbidden")
        assert_error(upload(api, sid, b'{"objects":[]}\n', http=reader), 403)
        assert changes(api, sid) == []
        assert blob_ids(server) == before and not spool_files(server, sid)
        # bad input is still 400 first, as for every route
        assert_error(upload(api, sid, b"not json\n", http=reader), 400)


def test_policy_is_decided_per_path(api: Api, server: ServerHandle) -> None:
    o = f"{api.base}/organizations/{api.org}"
    uid, alice = _member(server, api, "member")
    r = api.http.post(f"{o}/policies", json={"name": unique("deny"), "policy_text": DENY_SECRET})
    assert r.status_code == 201, r.text
    r = api.http.post(f"{o}/policies/{r.json()['policy']['id']}/attachments",
                      json={"principal_type": "user", "principal_id": uid})
    assert r.status_code == 204, r.text
    with alice:
        sid = alice.post(f"{api.R}/sessions").json()["session_id"]
        before = blob_ids(server)
        mixed = batch([("public/a", os.urandom(100)), ("secret/b", os.urandom(100))])
        body = assert_error(upload(api, sid, mixed, http=alice), 403, "forbidden")
        assert "secret/b" in body["message"]
        assert changes(api, sid) == []
        assert blob_ids(server) == before and not spool_files(server, sid)
        r = upload(api, sid, batch([("public/a", b"a"), ("public/b", b"b")]), http=alice)
        assert r.status_code == 200, r.text
        assert [c["path"] for c in changes(api, sid)] == ["public/a", "public/b"]
