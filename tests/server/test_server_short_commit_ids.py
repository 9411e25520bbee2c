"""Short commit ids (docs/api.md): a unique prefix of at least 4 hex digits names a commit
wherever the server takes a commit id; ambiguous is 409, too short 400, unknown 404."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serverapi import Api, RepoRef, ServerHandle, assert_error, make_api, start_server, stop_server

from postgres import RUN
from tilde_server.store.engine import Store


@pytest.fixture
def api(server: ServerHandle, repo_ref: RepoRef) -> Iterator[Api]:
    yield from make_api(server, repo_ref)


def commit_file(api: Api, path: str, data: bytes) -> str:
    sid = api.session()
    api.put(sid, path, data)
    return api.commit_ok(sid, path)


def test_prefix_names_the_commit_everywhere(api: Api) -> None:
    c1 = commit_file(api, "a", b"1")
    c2 = commit_file(api, "b", b"2")
    assert len(c1) == 64 and c1[:8] != c2[:8]
    for n in (4, 7, 12, 63):
        got = api.http.get(f"{api.R}/commits/{c1[:n]}")
        assert got.status_code == 200, got.text
        assert got.json()["id"] == c1  # the full id comes back: clients canonicalise so
    assert api.http.get(f"{api.R}/commits/{c1[:10].upper()}").json()["id"] == c1
    short = c1[:7]
    # ref= on list, get and head
    assert api.paths(ref=short) == ["a"]
    assert api.read("a", ref=short) == b"1"
    assert_error(api.get("b", ref=short), 404, "object_not_found")
    head = api.http.head(f"{api.R}/object", params={"path": "a", "ref": short})
    assert head.status_code == 200 and head.headers["x-tilde-reproducible"] == "true"
    # log ref= and after=
    log = api.http.get(f"{api.R}/log", params={"ref": short}).json()["results"]
    assert [c["id"] for c in log] == [c1]
    after = api.http.get(f"{api.R}/log", params={"after": c2[:6]}).json()["results"]
    assert [c["id"] for c in after] == [c1]
    # diff left / right
    d = api.http.get(f"{api.R}/diff", params={"left": c1[:5], "right": c2[:5]})
    assert d.status_code == 200
    assert [(x["path"], x["status"]) for x in d.json()["results"]] == [("b", "added")]
    # revert
    r = api.http.post(f"{api.R}/commits/{c2[:9]}/revert", json={})
    assert r.status_code == 201, r.text
    assert api.paths() == ["a"]
    assert api.http.get(f"{api.R}/commits/{r.json()['commit_id']}").json()["message"] == (
        'Revert "b"')


def test_short_unknown_and_odd_ids(api: Api) -> None:
    c1 = commit_file(api, "a", b"1")
    missing = ("0" if c1[0] != "0" else "1") * 6
    for too_short in (c1[:3], c1[:1]):
        body = assert_error(api.http.get(f"{api.R}/commits/{too_short}"), 400,
                            "invalid_commit_id")
        assert "at least 4" in body["message"]
        assert_error(api.http.get(f"{api.R}/objects", params={"ref": too_short}), 400)
        assert_error(api.http.get(f"{api.R}/log", params={"ref": too_short}), 400)
        assert_error(api.http.post(f"{api.R}/commits/{too_short}/revert", json={}), 400)
        assert_error(api.http.get(f"{api.R}/diff", params={"left": "", "right": too_short}),
                     400)
    assert_error(api.http.get(f"{api.R}/commits/{missing}"), 404, "commit_not_found")
    assert_error(api.http.get(f"{api.R}/objects", params={"ref": missing}), 404)
    assert_error(api.http.get(f"{api.R}/log", params={"after": missing}), 400,
                 "invalid_cursor")
    # Not hex, or longer than an id: looked up exactly, as before (404).
    for odd in ("not-a-commit", "zzzz", c1 + "0", c1[:10] + "%", "é" * 5):
        assert_error(api.http.get(f"{api.R}/commits/{odd}"), 404, "commit_not_found")
    # main / HEAD still mean the head; a prefix of another repository's commit is unknown.
    assert api.paths(ref="main") == ["a"] and api.paths(ref="HEAD") == ["a"]
    other = Api(api.server, api.server.new_repo())
    try:
        assert_error(other.http.get(f"{other.R}/commits/{c1[:8]}"), 404, "commit_not_found")
    finally:
        other.close()


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, str]]:
    """A server whose repository holds two commits sharing a 4-digit prefix: made in-process
    before the server starts (hundreds of commits by HTTP would be slow), then served."""
    tmp = tmp_path_factory.mktemp("crowded")
    key = "tk-test-crowded-0123456789abcdef"
    env = RUN.env(tmp / "data")
    key_file = env.get("TILDE_SERVER_SECRET_KEY_FILE")
    store, _ = Store.open(Path(tmp / "data"), key, database=env.get("TILDE_SERVER_DATABASE"),
                          key_file=Path(key_file) if key_file else None)
    try:
        who = store.authenticate(key)
        store.create_org("crowded", "crowded")
        store.create_repo("crowded", "r", {}, who)
        seen: dict[str, str] = {}
        for i in range(5000):  # ~320 expected; 5000 without a pair has odds of e^-190
            cid = store.bulk_load("crowded", "r", iter([(f"f{i}", b"%d" % i)]), f"c{i}", who)
            if cid[:4] in seen:
                break
            seen[cid[:4]] = cid
        else:
            raise AssertionError("no two commits share a 4-digit prefix")
    finally:
        store.close()
    h = start_server(tmp, api_key=key)
    yield h, cid[:4]
    stop_server(h)
    assert "Traceback" not in h.log(), h.log()


def test_ambiguous_prefix_is_409(crowded: tuple[ServerHandle, str]) -> None:
    server, prefix = crowded
    api = Api(server, RepoRef("crowded", "r"))
    try:
        log = api.http.get(f"{api.R}/log", params={"amount": 1000}).json()["results"]
        ids = [c["id"] for c in log]
        matches = [i for i in ids if i.startswith(prefix)]
        assert len(matches) >= 2
        body = assert_error(api.http.get(f"{api.R}/commits/{prefix}"), 409,
                            "ambiguous_commit_id")
        assert body["message"] == (f"commit id prefix {prefix!r} is ambiguous: it matches "
                                   f"{len(matches)} commits")
        assert_error(api.http.get(f"{api.R}/objects", params={"ref": prefix}), 409)
        assert_error(api.http.post(f"{api.R}/commits/{prefix}/revert", json={}), 409)
        assert_error(api.http.get(f"{api.R}/diff", params={"left": "", "right": prefix}), 409)
        # A longer prefix that tells them apart works.
        full = matches[0]
        n = next(n for n in range(5, 65)
                 if sum(i.startswith(full[:n]) for i in ids) == 1)
        assert api.http.get(f"{api.R}/commits/{full[:n]}").json()["id"] == full
        assert len(api.paths(ref=full[:n])) == ids[::-1].index(full) + 1
    finally:
        api.close()
