"""Sessions as transactions (2.4), commits, log, revert and diff (2.7), ref= reads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from serverapi import Api, RepoRef, ServerHandle, assert_error, blob_ids, make_api


@pytest.fixture
def api(server: ServerHandle, repo_ref: RepoRef) -> Iterator[Api]:
    yield from make_api(server, repo_ref)



def test_commit_and_log(api: Api) -> None:
    sid = api.session()
    assert_error(api.commit(sid), 400, "no_changes")
    api.put(sid, "a", b"1")
    r = api.commit(sid, "first", metadata={"k": "v"})
    assert r.status_code == 200
    c1 = r.json()["commit_id"]
    assert_error(api.commit(sid), 404)  # closed
    assert_error(api.http.delete(f"{api.R}/sessions/{sid}"), 404)
    ids = [c1]
    for i in range(3):
        s = api.session()
        api.put(s, f"f{i}", b"x" * (i + 1))
        ids.append(api.commit_ok(s, f"c{i}"))
    log = api.http.get(f"{api.R}/log").json()
    assert [c["id"] for c in log["results"]] == ids[::-1]
    head = log["results"][0]
    assert head["parents"] == [ids[-2]] and head["message"] == "c2"
    assert head["object_count"] == 4 and head["total_size"] == 1 + 1 + 2 + 3
    assert head["metadata"] == {} and head["is_stale"] is False
    assert head["creation_date"].endswith("Z") and head["committer_type"] == "user"
    first = api.http.get(f"{api.R}/commits/{c1}").json()
    assert first["parents"] == [] and first["metadata"] == {"k": "v"}
    # paging newest first, by commit id
    seen, params = [], {"amount": 1}
    while True:
        body = api.http.get(f"{api.R}/log", params=params).json()
        seen += [c["id"] for c in body["results"]]
        if not body["pagination"]["has_more"]:
            break
        params["after"] = body["pagination"]["next_offset"]
    assert seen == ids[::-1]
    # ref= starts the log at that commit
    body = api.http.get(f"{api.R}/log", params={"ref": ids[1]}).json()
    assert [c["id"] for c in body["results"]] == [ids[1], c1]
    assert_error(api.http.get(f"{api.R}/log", params={"ref": "f" * 64}), 404)
    assert_error(api.http.get(f"{api.R}/commits/{'0' * 64}"), 404)
    # approval polling ends at once; unknown sessions are 404
    r = api.http.head(f"{api.R}/sessions/{sid}/approve")
    assert r.status_code == 404
    assert_error(api.commit("no-such-session"), 404)
    assert_error(api.http.get(f"{api.R}/changes", params={"session_id": "nope"}), 404)
    assert_error(api.http.post(f"{api.R}/sessions/{api.session()}", content=b"{",
                               headers={"content-type": "application/json"}), 400)


def test_rollback_reclaims_blobs(api: Api, server: ServerHandle) -> None:
    unique_bytes = hashlib.sha256(api.R.encode()).digest() * 100
    sid = api.session()
    before = blob_ids(server)
    api.put(sid, "tmp/one", unique_bytes)
    api.put(sid, "tmp/two", unique_bytes + b"2")
    # overwriting a staged object frees the bytes it replaced
    api.put(sid, "tmp/two", unique_bytes + b"3")
    added = blob_ids(server) - before
    assert len(added) == 2
    r = api.http.delete(f"{api.R}/sessions/{sid}")
    assert r.status_code == 204
    assert not (blob_ids(server) - before)
    assert not (server.data_dir / "tmp" / sid).exists()
    assert_error(api.get("tmp/one", session_id=sid), 404)
    # committed bytes stay, even when a rolled-back session shared them
    s1 = api.session()
    api.put(s1, "keep", unique_bytes)
    api.commit_ok(s1)
    s2 = api.session()
    api.put(s2, "dup", unique_bytes)
    api.http.delete(f"{api.R}/sessions/{s2}")
    assert api.read("keep") == unique_bytes


def test_conflict_keeps_session_and_resolves(api: Api) -> None:
    s0 = api.session()
    api.put(s0, "shared", b"base")
    api.commit_ok(s0)
    a, b = api.session(), api.session()
    api.put(a, "shared", b"from a")
    api.put(a, "only-a", b"a")
    api.put(b, "shared", b"from b")
    cb = api.commit_ok(b)
    r = api.commit(a)
    assert_error(r, 409, "conflict")
    assert "shared" in r.json()["message"]
    # the session is intact: still open, its changes still there, reads still work
    changes = api.http.get(f"{api.R}/changes", params={"session_id": a}).json()["results"]
    assert [c["path"] for c in changes] == ["only-a", "shared"]
    assert api.read("shared", session_id=a) == b"from a"
    assert api.read("shared") == b"from b"
    # resolve: take the other side's version into the session, then commit works
    r = api.http.post(f"{api.R}/object/copy", params={
        "session_id": a, "source_path": "shared", "destination_path": "shared"})
    assert r.status_code == 201
    assert api.read("shared", session_id=a) == b"from a"  # session view keeps its own copy
    api.put(a, "shared", b"from b")  # same content as head: no longer a conflict
    ca = api.commit_ok(a)
    assert api.read("only-a") == b"a" and api.read("shared") == b"from b"
    assert ca != cb


def test_conflict_resolved_by_revert(api: Api) -> None:
    s0 = api.session()
    api.put(s0, "p", b"v0")
    api.commit_ok(s0)
    a, b = api.session(), api.session()
    api.put(a, "p", b"va")
    api.put(b, "p", b"vb")
    cb = api.commit_ok(b)
    assert_error(api.commit(a), 409)
    r = api.http.post(f"{api.R}/commits/{cb}/revert", json={})
    assert r.status_code == 201
    assert api.read("p") == b"v0"
    api.commit_ok(a)
    assert api.read("p") == b"va"


def test_disjoint_sessions_both_commit(api: Api) -> None:
    s0 = api.session()
    api.put(s0, "x", b"x0")
    api.put(s0, "gone", b"g")
    api.commit_ok(s0)
    a, b = api.session(), api.session()
    api.put(a, "a-file", b"a")
    assert api.delete(a, "gone").status_code == 204
    api.put(b, "b-file", b"b")
    api.put(b, "x", b"x1")
    api.commit_ok(a)
    api.commit_ok(b)
    assert api.paths() == ["a-file", "b-file", "x"]
    assert api.read("x") == b"x1"
    head = api.http.get(f"{api.R}/log").json()["results"][0]
    assert head["object_count"] == 3 and head["total_size"] == 1 + 1 + 2
    # a session sees its base, not commits that landed later
    c = api.session()
    d = api.session()
    api.put(d, "later", b"l")
    api.commit_ok(d)
    assert_error(api.get("later", session_id=c), 404)
    assert "later" not in api.paths(session_id=c)


def test_ref_reads_old_commits(api: Api) -> None:
    s = api.session()
    api.put(s, "f", b"v1")
    api.put(s, "d/old", b"o")
    c1 = api.commit_ok(s)
    s = api.session()
    api.put(s, "f", b"version-2")
    api.delete(s, "d/old")
    api.put(s, "d/new", b"n")
    c2 = api.commit_ok(s)
    assert api.read("f", ref=c1) == b"v1"
    assert api.read("f", ref=c2) == b"version-2"
    assert api.read("f") == b"version-2"
    assert api.paths(ref=c1) == ["d/old", "f"]
    assert api.paths(ref=c2) == ["d/new", "f"]
    assert api.paths(ref=c1, delimiter="/", prefix="d/") == ["d/old"]
    h = api.http.head(f"{api.R}/object", params={"path": "f", "ref": c1})
    assert h.status_code == 200 and h.headers["content-length"] == "2"
    assert h.headers["x-tilde-reproducible"] == "true"
    assert_error(api.get("d/new", ref=c1), 404)
    s = api.session()
    assert_error(api.get("f", ref=c1, session_id=s), 400)
    r = api.http.get(f"{api.R}/object", params={"path": "f", "ref": c1},
                     headers={"Range": "bytes=1-"})
    assert r.status_code == 206 and r.content == b"1"


def test_diff_and_revert(api: Api) -> None:
    s = api.session()
    for k in ("keep", "mod", "del", "dir/a", "dir/b"):
        api.put(s, k, k.encode())
    c1 = api.commit_ok(s)
    s = api.session()
    api.put(s, "mod", b"changed")
    api.delete(s, "del")
    api.put(s, "new", b"n")
    api.put(s, "dir/c", b"c")
    api.delete(s, "dir/a")
    c2 = api.commit_ok(s)

    def diff(**params: object) -> list[tuple[str, str, str]]:
        out, params = [], {"amount": 1000, **params}
        while True:
            body = api.http.get(f"{api.R}/diff", params=params).json()
            out += [(x["path"], x["type"], x["status"]) for x in body["results"]]
            if not body["pagination"]["has_more"]:
                return out
            params["after"] = body["pagination"]["next_offset"]

    assert diff(left=c1, right=c2) == [
        ("del", "object", "removed"), ("dir/a", "object", "removed"),
        ("dir/c", "object", "added"), ("mod", "object", "changed"), ("new", "object", "added")]
    assert diff(left=c1, right=c2, amount=1) == diff(left=c1, right=c2)
    assert diff(left=c1, right=c2, delimiter="/") == [
        ("del", "object", "removed"), ("dir/", "prefix", "changed"),
        ("mod", "object", "changed"), ("new", "object", "added")]
    assert diff(left=c1, right=c2, prefix="dir/") == [
        ("dir/a", "object", "removed"), ("dir/c", "object", "added")]
    assert [p for p, _, st in diff(left="", right=c1)] == ["del", "dir/a", "dir/b", "keep", "mod"]
    assert {st for _, _, st in diff(left="", right=c1)} == {"added"}
    body = api.http.get(f"{api.R}/diff", params={"left": c1, "right": c2}).json()
    by_path = {x["path"]: x for x in body["results"]}
    assert by_path["del"]["entry"]["size"] == 3  # removed entries carry the old entry
    assert by_path["mod"]["entry"]["size"] == 7
    assert_error(api.http.get(f"{api.R}/diff", params={"left": c1, "right": "nope"}), 404)
    assert_error(api.http.get(f"{api.R}/diff", params={"left": c1}), 400)

    # revert c2: the tree is c1's again, as a new commit on top
    r = api.http.post(f"{api.R}/commits/{c2}/revert", json={"metadata": {"why": "test"}})
    assert r.status_code == 201
    c3 = r.json()["commit_id"]
    commit = api.http.get(f"{api.R}/commits/{c3}").json()
    assert commit["parents"] == [c2] and commit["message"].startswith("Revert")
    assert commit["metadata"] == {"why": "test"}
    assert api.paths() == ["del", "dir/a", "dir/b", "keep", "mod"]
    assert api.read("mod") == b"mod"
    assert diff(left=c1, right=c3) == []
    # revert that conflicts with a later change: 409, nothing changes
    s = api.session()
    api.put(s, "mod", b"again")
    api.commit_ok(s)
    head_before = api.http.get(f"{api.R}/log").json()["results"][0]["id"]
    assert_error(api.http.post(f"{api.R}/commits/{c3}/revert", json={}), 409)
    assert api.http.get(f"{api.R}/log").json()["results"][0]["id"] == head_before
    assert_error(api.http.post(f"{api.R}/commits/{'0' * 64}/revert"), 404)
    assert_error(api.http.post(f"{api.R}/commits/{c3}/revert", json={"message": 1}), 400)


def test_concurrent_sessions(api: Api) -> None:
    """Parallel uploads and commits of disjoint sessions all succeed; none is lost."""
    from concurrent.futures import ThreadPoolExecutor

    def worker(i: int) -> str:
        sid = api.session()
        for j in range(4):
            api.put(sid, f"w{i}/f{j}", f"{i}-{j}".encode())
        return api.commit_ok(sid, f"worker {i}")

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(worker, range(8)))
    assert len(set(ids)) == 8
    assert len(api.paths()) == 32
    assert api.read("w5/f3") == b"5-3"
    head = api.http.get(f"{api.R}/log").json()["results"][0]
    assert head["object_count"] == 32
