"""tilde-server's extensions for the mount (docs/api.md): metadata-only updates, directory
markers in delimiter listings, and session rebase. Against a real server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from serverapi import Api, RepoRef, ServerHandle, assert_error, blob_ids, make_api
from test_authz import Caller, member

from tilde import _wire
from tilde.exceptions import ConflictError


@pytest.fixture
def api(server: ServerHandle, repo_ref: RepoRef) -> Iterator[Api]:
    yield from make_api(server, repo_ref)



def set_meta(api: Api, sid: str, path: str, body: Any) -> httpx.Response:
    """`body` as JSON, or bytes sent as they are."""
    params = {"session_id": sid, "path": path}
    if isinstance(body, bytes):
        return api.http.put(f"{api.R}/object/metadata", params=params, content=body)
    return api.http.put(f"{api.R}/object/metadata", params=params, json=body)


def listing(api: Api, **params: Any) -> dict[str, dict[str, Any]]:
    """path -> row of one listing page (at most 1000 rows)."""
    return {row["path"]: row for row in api.ls(amount=1000, **params)["results"]}


def seed(api: Api, files: dict[str, bytes], message: str = "seed") -> str:
    sid = api.session()
    for path, data in files.items():
        api.put(sid, path, data)
    return api.commit_ok(sid, message)


def conflict_body(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 409, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == "conflict" and body["request_id"] == r.headers["x-request-id"]
    assert isinstance(body["message"], str) and "rebase" in body["message"]
    return body


# --- metadata-only update --------------------------------------------------------------

def test_metadata_update_stages_new_metadata_on_the_same_bytes(api: Api) -> None:
    seed(api, {"a.txt": b"hello", "other": b"x"})
    before = listing(api)["a.txt"]["entry"]
    blobs = blob_ids(api.server)
    sid = api.session()
    r = set_meta(api, sid, "a.txt", {"metadata": {"posix-mode": "100600", "k": "v"}})
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["path"] == "a.txt" and e["e_tag"] == before["e_tag"] and e["size"] == 5
    assert e["address"] == before["address"] and e["content_type"] == before["content_type"]
    assert e["metadata"] == {"posix-mode": "100600", "k": "v"}
    assert _wire.parse_entry(e).metadata == e["metadata"]
    assert blob_ids(api.server) == blobs  # no bytes were copied or uploaded
    # The session sees it everywhere; the head does not, until the commit.
    assert listing(api, session_id=sid)["a.txt"]["entry"]["metadata"] == e["metadata"]
    head = api.http.head(f"{api.R}/object", params={"path": "a.txt", "session_id": sid})
    assert head.headers["x-tilde-meta-posix-mode"] == "100600"
    assert head.headers["x-tilde-reproducible"] == "false"
    assert api.read("a.txt", session_id=sid) == b"hello"
    changes = api.http.get(f"{api.R}/changes", params={"session_id": sid}).json()["results"]
    assert [c["path"] for c in changes] == ["a.txt"]
    assert listing(api)["a.txt"]["entry"]["metadata"] == {}
    # Replacing again replaces (not merges); {} clears; then it commits.
    r = set_meta(api, sid, "a.txt", {"metadata": {"only": "this"}})
    assert r.status_code == 200 and r.json()["metadata"] == {"only": "this"}
    api.commit_ok(sid, "chmod")
    assert listing(api)["a.txt"]["entry"]["metadata"] == {"only": "this"}
    assert api.read("a.txt") == b"hello"
    sid = api.session()
    assert set_meta(api, sid, "a.txt", {"metadata": {}}).json()["metadata"] == {}
    api.commit_ok(sid, "clear")
    assert listing(api)["a.txt"]["entry"]["metadata"] == {}
    assert blob_ids(api.server) == blobs


def test_metadata_update_of_a_staged_object_and_a_marker(api: Api) -> None:
    sid = api.session()
    api.put(sid, "dir/", b"")
    api.put(sid, "new.bin", b"12345")
    r = set_meta(api, sid, "dir/", {"metadata": {"posix-mode": "40700"}})
    assert r.status_code == 200 and r.json()["size"] == 0
    r = set_meta(api, sid, "new.bin", {"metadata": {"m": "1"}})
    assert r.status_code == 200 and r.json()["e_tag"] == listing(
        api, session_id=sid)["new.bin"]["entry"]["e_tag"]
    api.commit_ok(sid)
    rows = listing(api)
    assert rows["dir/"]["entry"]["metadata"] == {"posix-mode": "40700"}
    assert rows["new.bin"]["entry"]["metadata"] == {"m": "1"}
    assert api.read("new.bin") == b"12345"


def test_metadata_update_refusals(api: Api) -> None:
    seed(api, {"a": b"1", "gone": b"2"})
    sid = api.session()
    assert api.delete(sid, "gone").status_code == 204
    ok = {"metadata": {"k": "v"}}
    assert_error(set_meta(api, sid, "missing", ok), 404, "object_not_found")
    assert_error(set_meta(api, sid, "gone", ok), 404, "object_not_found")  # deleted here
    assert_error(set_meta(api, "no-such-session", "a", ok), 404, "session_not_found")
    for bad in ({"metadata": {"k": 1}}, {"metadata": ["k"]}, {"metadata": "k=v"},
                {"metadata": None}, {}, b'{"metadata": {"k": "v\\ud800"}}', [ok],
                {"metadata": {"k": "\x00"}}):
        assert_error(set_meta(api, sid, "a", bad), 400)
    assert_error(api.http.put(f"{api.R}/object/metadata", params={"session_id": sid,
                                                                  "path": "a"},
                              content=b"{not json"), 400, "invalid_json")
    assert_error(api.http.put(f"{api.R}/object/metadata", params={"session_id": sid},
                              json=ok), 400, "missing_parameter")
    assert_error(api.http.put(f"{api.R}/object/metadata", params={"path": "a"}, json=ok),
                 400, "missing_parameter")
    assert_error(set_meta(api, sid, "/abs", ok), 400, "invalid_path")
    assert_error(set_meta(api, sid, "a/../b", ok), 400, "invalid_path")
    # Refusals changed nothing: only the deletion is staged.
    changes = api.http.get(f"{api.R}/changes", params={"session_id": sid}).json()["results"]
    assert [(c["path"], c["entry"]) for c in changes] == [("gone", None)]
    api.commit_ok(sid)
    assert_error(set_meta(api, sid, "a", ok), 404, "session_not_found")  # committed
    assert listing(api)["a"]["entry"]["metadata"] == {}


def test_metadata_update_needs_object_write(server: ServerHandle, api: Api,
                                            repo_ref: RepoRef) -> None:
    seed(api, {"a": b"1"})
    admin = Caller(server, server.api_key)
    _, reader = member(server, admin, repo_ref.org, "reader")
    R = f"/organizations/{repo_ref.org}/repositories/{repo_ref.repo}"
    sid = reader.ok("POST", f"{R}/sessions", 201)["session_id"]
    r = reader.req("PUT", f"{R}/object/metadata", params={"session_id": sid, "path": "a"},
                   json={"metadata": {"k": "v"}})
    assert_error(r, 403, "forbidden")
    assert_error(reader.req("POST", f"{R}/sessions/{sid}/rebase"), 403, "forbidden")
    admin.http.close()
    reader.http.close()


def test_wire_builder_for_metadata_update() -> None:
    req = _wire.update_object_metadata("o", "r", "a b/c", session_id="s",
                                       metadata={"k": "v"})
    assert (req.method, req.path) == ("PUT", "/organizations/o/repositories/r/object/metadata")
    assert dict(req.params) == {"session_id": "s", "path": "a b/c"}
    assert req.json == {"metadata": {"k": "v"}}


# --- directory markers in listings ------------------------------------------------------

def test_listing_markers(api: Api) -> None:
    sid = api.session()
    for path in ("a/", "a/x", "b/c", "d/", "e/f/", "e/f/g", "top"):
        api.put(sid, path, b"")
    assert set_meta(api, sid, "a/", {"metadata": {"posix-mode": "40750"}}).status_code == 200
    c1 = api.commit_ok(sid)
    plain = api.ls(delimiter="/")
    assert [(x["path"], x["type"], x["entry"]) for x in plain["results"][:4]] == [
        ("a/", "prefix", None), ("b/", "prefix", None), ("d/", "prefix", None),
        ("e/", "prefix", None)]
    assert api.ls(delimiter="/", markers="false") == plain
    marked = api.ls(delimiter="/", markers="true")
    assert marked["markers"] is True and "markers" not in plain  # every marker is attached
    rows = {x["path"]: x for x in marked["results"]}
    assert list(rows) == ["a/", "b/", "d/", "e/", "top"]
    assert rows["a/"]["type"] == "prefix"
    assert rows["a/"]["entry"]["metadata"] == {"posix-mode": "40750"}
    assert rows["a/"]["entry"]["size"] == 0 and rows["a/"]["entry"]["e_tag"]
    assert rows["b/"]["entry"] is None  # no marker object b/
    assert rows["d/"]["entry"] is not None  # an empty directory: only its marker
    assert rows["e/"]["entry"] is None  # e/f/ is deeper, not e/'s marker
    assert rows["top"]["entry"] == plain["results"][4]["entry"]
    assert _wire.parse_listing_entry(rows["a/"]).entry is not None
    # One level down: the marker e/f/ of e/f; the key e/f/ is not listed as an object.
    sub = api.ls(prefix="e/", delimiter="/", markers="true")["results"]
    assert [(x["path"], x["type"], x["entry"] is not None) for x in sub] == [
        ("e/f/", "prefix", True)]
    # With prefix a/ the marker is an object row of its own, as without markers.
    inner = api.ls(prefix="a/", delimiter="/", markers="true")["results"]
    assert inner == api.ls(prefix="a/", delimiter="/")["results"]
    assert [x["path"] for x in inner] == ["a/", "a/x"]
    # Pages of one: every prefix keeps its marker across cursors.
    seen, after = [], None
    while True:
        params: dict[str, Any] = {"delimiter": "/", "markers": "true", "amount": 1}
        if after:
            params["after"] = after
        page = api.ls(**params)
        seen += [(x["path"], x["entry"] is not None) for x in page["results"]]
        if not page["pagination"]["has_more"]:
            break
        after = page["pagination"]["next_offset"]
    assert seen == [("a/", True), ("b/", False), ("d/", True), ("e/", False), ("top", True)]
    # The session's view: a staged tombstone hides a marker, a staged marker shows.
    sid = api.session()
    assert api.delete(sid, "a/").status_code == 204
    api.put(sid, "b/", b"")
    view = {x["path"]: x for x in api.ls(delimiter="/", markers="true", session_id=sid)[
        "results"]}
    assert view["a/"]["entry"] is None and view["b/"]["entry"] is not None
    assert list(view) == ["a/", "b/", "d/", "e/", "top"]
    api.commit_ok(sid)
    # ref= reads the markers as the commit left them.
    old = {x["path"]: x for x in api.ls(delimiter="/", markers="true", ref=c1)["results"]}
    assert old["a/"]["entry"] is not None and old["b/"]["entry"] is None
    now = {x["path"]: x for x in api.ls(delimiter="/", markers="true")["results"]}
    assert now["a/"]["entry"] is None and now["b/"]["entry"] is not None


def test_listing_markers_refusals_and_other_delimiters(api: Api) -> None:
    seed(api, {"x|": b"m", "x|y": b"1"})
    assert_error(api.http.get(f"{api.R}/objects", params={"markers": "maybe",
                                                          "delimiter": "/"}), 400)
    rows = api.ls(delimiter="|", markers="true")["results"]
    assert [(x["path"], x["type"], x["entry"]["size"]) for x in rows] == [("x|", "prefix", 1)]
    # Without a delimiter markers change nothing: every key is an object row.
    assert api.ls(markers="true") == api.ls()


def test_wire_builder_sends_markers_only_when_asked() -> None:
    assert "markers" not in dict(_wire.list_objects("o", "r", delimiter="/").params)
    assert dict(_wire.list_objects("o", "r", delimiter="/", markers=True).params)[
        "markers"] == "true"


# --- session rebase ---------------------------------------------------------------------

def rebase(api: Api, sid: str) -> httpx.Response:
    return api.http.post(f"{api.R}/sessions/{sid}/rebase")


def test_rebase_moves_the_base_and_keeps_the_changes(api: Api) -> None:
    c1 = seed(api, {"shared": b"1", "mine": b"old"})
    sid = api.session()
    api.put(sid, "mine", b"new")
    api.put(sid, "added", b"+")
    other = api.session()
    api.put(other, "theirs", b"T")
    api.put(other, "shared", b"2")
    c2 = api.commit_ok(other, "theirs")
    assert "theirs" not in api.paths(session_id=sid)
    r = rebase(api, sid)
    assert r.status_code == 200, r.text
    assert r.json() == {"base_commit": c2, "rebased": True}
    assert _wire.parse_rebase(r.json()) == c2
    assert api.paths(session_id=sid) == ["added", "mine", "shared", "theirs"]
    assert api.read("shared", session_id=sid) == b"2"
    assert api.read("mine", session_id=sid) == b"new"
    changes = api.http.get(f"{api.R}/changes", params={"session_id": sid}).json()["results"]
    assert [c["path"] for c in changes] == ["added", "mine"]
    # Rebasing again is a no-op with the same answer; then the commit lands on c2.
    assert rebase(api, sid).json() == {"base_commit": c2, "rebased": True}
    c3 = api.commit_ok(sid, "mine")
    commit = api.http.get(f"{api.R}/commits/{c3}").json()
    assert commit["parents"] == [c2] and commit["object_count"] == 4
    assert c1 != c2


def test_rebase_conflict_changes_nothing(api: Api) -> None:
    c1 = seed(api, {f"p{i}": b"0" for i in range(8)} | {"q": b"0"})
    sid = api.session()
    for i in range(8):
        api.put(sid, f"p{i}", b"mine")
    api.put(sid, "q", b"same")
    other = api.session()
    for i in range(7):
        api.put(other, f"p{i}", b"theirs")
    api.put(other, "q", b"same")  # the same change on both sides is no conflict
    api.put(other, "elsewhere", b"E")
    api.commit_ok(other)
    body = conflict_body(rebase(api, sid))
    assert body["conflicts"] == [f"p{i}" for i in range(7)]
    assert "7 staged path(s)" in body["message"] and "and 2 more" in body["message"]
    # Nothing changed: the base is still c1 and every change is still staged.
    assert "elsewhere" not in api.paths(session_id=sid)
    assert api.read("p0", session_id=sid) == b"mine"
    changes = api.http.get(f"{api.R}/changes", params={"session_id": sid}).json()["results"]
    assert [c["path"] for c in changes] == [f"p{i}" for i in range(8)] + ["q"]
    assert_error(api.commit(sid), 409, "conflict")  # the commit's rule is the same rule
    # Resolve one path by taking the head's content: it drops out of the list.
    api.put(sid, "p0", b"theirs")
    assert conflict_body(rebase(api, sid))["conflicts"] == [f"p{i}" for i in range(1, 7)]
    assert api.http.get(f"{api.R}/log").json()["results"][-1]["id"] == c1


def test_rebase_conflict_list_survives_the_client(api: Api) -> None:
    """The wire parser reads `conflicts` from the body, and what fits from an exception."""
    names = [f"a-fairly-long-directory-name/file-number-{i:03d}" for i in range(40)]
    seed(api, {n: b"0" for n in names})
    sid = api.session()
    other = api.session()
    for n in names:
        api.put(sid, n, b"mine")
        api.put(other, n, b"theirs")
    api.commit_ok(other)
    r = rebase(api, sid)
    assert conflict_body(r)["conflicts"] == names
    assert _wire.rebase_conflicts(r.content) == names
    assert _wire.rebase_conflicts(r.json()) == names
    err = _wire.error_for_response(409, method="POST", url=str(r.url), body=r.content)
    assert isinstance(err, ConflictError) and err.code == "conflict"
    partial = _wire.rebase_conflicts(err)
    assert 0 < len(partial) < len(names) and partial == names[:len(partial)]
    assert _wire.rebase_conflicts(b"not json") == [] and _wire.rebase_conflicts({}) == []


def test_rebase_drops_a_deletion_that_became_moot(api: Api) -> None:
    seed(api, {"x": b"1", "y": b"1"})
    sid = api.session()
    assert api.delete(sid, "x").status_code == 204
    other = api.session()
    assert api.delete(other, "x").status_code == 204
    api.commit_ok(other)
    assert rebase(api, sid).status_code == 200
    assert api.http.get(f"{api.R}/changes", params={"session_id": sid}).json()[
        "results"] == []
    assert api.paths(session_id=sid) == ["y"]
    assert_error(api.commit(sid), 400, "no_changes")


def test_rebase_of_an_empty_repository_and_refusals(api: Api) -> None:
    sid = api.session()
    assert rebase(api, sid).json() == {"base_commit": "", "rebased": True}
    api.put(sid, "f", b"1")
    assert rebase(api, sid).json() == {"base_commit": "", "rebased": True}
    assert_error(rebase(api, "no-such-session"), 404, "session_not_found")
    api.commit_ok(sid)
    assert_error(rebase(api, sid), 404, "session_not_found")  # committed
    gone = api.session()
    assert api.http.delete(f"{api.R}/sessions/{gone}").status_code == 204
    assert_error(rebase(api, gone), 404, "session_not_found")  # rolled back
    assert_error(api.http.post(f"{api.base}/organizations/{api.org}/repositories/nope/"
                               f"sessions/{sid}/rebase"), 404)


def test_wire_builders_for_rebase() -> None:
    req = _wire.rebase_session("o", "r", "s1")
    assert (req.method, req.path, req.json) == (
        "POST", "/organizations/o/repositories/r/sessions/s1/rebase", None)
    assert _wire.parse_rebase({"base_commit": "", "rebased": True}) == ""
    assert _wire.parse_rebase({"base_commit": "abc", "rebased": True}) == "abc"


# --- what a server without the extensions says (the mount falls back) ----------------------

def test_wire_current_has_no_extensions(redirecting_server: ServerHandle) -> None:
    a = Api(redirecting_server, redirecting_server.new_repo())
    try:
        sid = a.session()
        assert_error(set_meta(a, sid, "a", {"metadata": {}}), 404)
        assert_error(rebase(a, sid), 404)
        r = a.http.get(f"{a.R}/objects", params={"delimiter": "/", "markers": "true"})
        assert r.status_code == 200 and r.json()["results"] == []
        assert "markers" not in r.json()  # not honoured: the mount asks by HEAD
        assert a.http.get(f"{a.R}/objects", params={"markers": "maybe"}).status_code == 200
    finally:
        a.close()
