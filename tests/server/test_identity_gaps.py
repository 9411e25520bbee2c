"""Identity seams against the real server: commit attribution by principal kind, the
approval flag at repository creation, what deleting an agent takes with it, read permission on
an import's source repository, and `last_used_at` of agents, roles and their keys.

Plain httpx and the session server of tests/conftest.py (helpers from test_authz.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from serverapi import RepoRef, ServerHandle, assert_error, unique
from test_authz import Caller, R, _agent, add_user, member

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def admin(server: ServerHandle) -> Iterator[Caller]:
    c = Caller(server, server.api_key)
    yield c
    c.http.close()


def _commit_one(c: Caller, r: str, path: str, data: bytes, status: int = 200) -> Any:
    sid = c.ok("POST", f"{r}/sessions", 201)["session_id"]
    assert c.put_object(r, sid, path, data).is_success
    return c.ok("POST", f"{r}/sessions/{sid}", status, json={"message": f"put {path}"})


def _db_rows(server: ServerHandle, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    from postgres import RUN

    return RUN.rows(server.data_dir, sql, *args)


def test_commits_record_the_committer_kind(server: ServerHandle, admin: Caller,
                                           repo_ref: RepoRef) -> None:
    r, o = R(repo_ref), f"/organizations/{repo_ref.org}"
    cid = _commit_one(admin, r, "by-user.txt", b"u")["commit_id"]
    got = admin.ok("GET", f"{r}/commits/{cid}")
    assert (got["committer_type"], got["committer"]) == ("user", "admin")
    # An agent's commit.
    bot = _agent(admin, server, repo_ref.org, "attrib-bot")
    bot_id = admin.ok("GET", f"{o}/agents/attrib-bot")["id"]
    cid = _commit_one(bot, r, "by-agent.txt", b"a")["commit_id"]
    got = admin.ok("GET", f"{r}/commits/{cid}")
    assert (got["committer_type"], got["committer_id"], got["committer"]) == (
        "agent", bot_id, "attrib-bot")
    # A role key's commit.
    role = admin.ok("POST", f"{o}/roles", 201, json={"name": "writer", "description": ""})
    writer = next(p for p in admin.ok("GET", f"{o}/policies")["results"]
                  if p["name"] == "builtin-org-member")
    admin.ok("POST", f"{o}/policies/{writer['id']}/attachments", 204,
             json={"principal_type": "role", "principal_id": role["id"]})
    ci = Caller(server, admin.ok("POST", f"{o}/roles/writer/auth/keys", 201,
                                 json={"name": "k"})["token"])
    cid = _commit_one(ci, r, "by-role.txt", b"r")["commit_id"]
    log = admin.ok("GET", f"{r}/log")["results"]
    assert log[0]["id"] == cid
    assert (log[0]["committer_type"], log[0]["committer_id"], log[0]["committer"]) == (
        "role", role["id"], "writer")
    assert [c["committer_type"] for c in log[:3]] == ["role", "agent", "user"]


def test_approved_agent_commit_is_attributed_to_the_agent(server: ServerHandle, admin: Caller,
                                                          repo_ref: RepoRef) -> None:
    r = R(repo_ref)
    admin.ok("PUT", r, json={"require_approval_for_agents": True})
    bot = _agent(admin, server, repo_ref.org, "waiting-bot")
    body = _commit_one(bot, r, "w.txt", b"w", status=202)
    sid = body["session_id"]
    cid = admin.ok("POST", f"{r}/sessions/{sid}/approve")["commit_id"]
    got = admin.ok("GET", f"{r}/commits/{cid}")
    assert (got["committer_type"], got["committer"]) == ("agent", "waiting-bot")


def test_require_approval_for_agents_at_creation(server: ServerHandle, admin: Caller,
                                                 repo_ref: RepoRef) -> None:
    o = f"/organizations/{repo_ref.org}"
    name = unique("gated")
    created = admin.ok("POST", f"{o}/repositories", 201,
                       json={"name": name, "visibility": "private",
                             "require_approval_for_agents": True})
    assert created["require_approval_for_agents"] is True
    assert admin.ok("GET", f"{o}/repositories/{name}")["require_approval_for_agents"] is True
    listed = {x["name"]: x for x in admin.ok("GET", f"{o}/repositories")["results"]}
    assert listed[name]["require_approval_for_agents"] is True
    plain = admin.ok("POST", f"{o}/repositories", 201, json={"name": unique("plain")})
    assert plain["require_approval_for_agents"] is False
    # It is enforced: an agent's commit waits.
    bot = _agent(admin, server, repo_ref.org, "gated-bot")
    body = _commit_one(bot, f"{o}/repositories/{name}", "x.txt", b"x", status=202)
    assert body["web_url"].startswith("http")
    # Bad type: 400, nothing created.
    bad = unique("bad")
    assert_error(admin.req("POST", f"{o}/repositories",
                           json={"name": bad, "require_approval_for_agents": "yes"}), 400)
    assert_error(admin.req("GET", f"{o}/repositories/{bad}"), 404)


def test_deleting_an_agent_deletes_what_it_owns(server: ServerHandle, admin: Caller,
                                                repo_ref: RepoRef) -> None:
    o = f"/organizations/{repo_ref.org}"
    bot = _agent(admin, server, repo_ref.org, "doomed")
    agent_id = admin.ok("GET", f"{o}/agents/doomed")["id"]
    admin.ok("PUT", f"{o}/agents/doomed/secrets/TOKEN", json={"value": "s3cr3t"})
    group = admin.ok("POST", f"{o}/groups", 201, json={"name": unique("g"), "description": ""})
    admin.ok("POST", f"{o}/groups/{group['id']}/members", 204,
             json={"subject_type": "agent", "subject_id": agent_id})
    assert bot.ok("GET", R(repo_ref))["name"] == repo_ref.repo
    assert _db_rows(server, "SELECT count(*) FROM secrets WHERE scope = 'agent' "
                            "AND scope_id = ?", agent_id) == [(1,)]
    admin.ok("DELETE", f"{o}/agents/doomed", 204)
    assert_error(bot.req("GET", R(repo_ref)), 401)
    for sql in ("SELECT count(*) FROM secrets WHERE scope = 'agent' AND scope_id = ?",
                "SELECT count(*) FROM principal_keys WHERE principal_id = ?",
                "SELECT count(*) FROM group_members WHERE subject_id = ?",
                "SELECT count(*) FROM policy_attachments WHERE principal_id = ?"):
        assert _db_rows(server, sql, agent_id) == [(0,)], sql
    # A new agent of the same name starts with nothing.
    admin.ok("POST", f"{o}/agents", 201, json={"name": "doomed", "description": ""})
    assert admin.ok("GET", f"{o}/agents/doomed/secrets")["results"] == []


def test_repository_import_needs_read_on_the_source(server: ServerHandle, admin: Caller,
                                                    repo_ref: RepoRef) -> None:
    # The source: another organization, which the importing member cannot read.
    src_org, src_repo = unique("org"), unique("src")
    admin.ok("POST", "/organizations", 201, json={"name": src_org, "display_name": src_org})
    admin.ok("POST", f"/organizations/{src_org}/repositories", 201, json={"name": src_repo})
    src = f"/organizations/{src_org}/repositories/{src_repo}"
    _commit_one(admin, src, "private/data.txt", b"not yours")
    uid, writer = member(server, admin, repo_ref.org, "member")
    body = {"source_organization": src_org, "source_repository": src_repo,
            "destination_path": "copied/"}
    r = R(repo_ref)
    assert_error(writer.req("POST", f"{r}/import", json=body), 403, "forbidden")
    assert admin.ok("GET", f"{r}/log")["results"] == []
    # As a reader of the source organization it may import.
    username = next(m["username"] for m in admin.ok("GET", f"/organizations/{repo_ref.org}"
                                                           "/members")["results"]
                    if m["user_id"] == uid)
    admin.ok("POST", f"/organizations/{src_org}/members", 201,
             json={"username": username, "role": "reader"})
    job = writer.ok("POST", f"{r}/import", 202, json=body)["job_id"]
    deadline = time.monotonic() + 30
    while (st := writer.ok("GET", f"{r}/import/{job}"))["status"] not in ("completed",
                                                                          "failed"):
        assert time.monotonic() < deadline, st
        time.sleep(0.2)
    assert st["status"] == "completed" and st["objects_imported"] == 1, st
    # A reader of the destination still cannot import into it (the destination check holds).
    _, reader = member(server, admin, repo_ref.org, "reader")
    assert_error(reader.req("POST", f"{r}/import", json=body), 403)
    # An unknown source organization: 404.
    missing = {**body, "source_organization": unique("nowhere")}
    assert_error(writer.req("POST", f"{r}/import", json=missing), 404)


def test_last_used_at_is_recorded(server: ServerHandle, admin: Caller,
                                  repo_ref: RepoRef) -> None:
    o = f"/organizations/{repo_ref.org}"
    bot = _agent(admin, server, repo_ref.org, "busy-bot")
    key = admin.ok("GET", f"{o}/agents/busy-bot/auth/keys")["results"][0]
    assert key["last_used_at"] is None
    assert admin.ok("GET", f"{o}/agents/busy-bot")["last_used_at"] is None
    t0 = time.time()
    bot.ok("GET", R(repo_ref))
    agent = admin.ok("GET", f"{o}/agents/busy-bot")
    key = admin.ok("GET", f"{o}/agents/busy-bot/auth/keys/{key['id']}")
    assert agent["last_used_at"] and key["last_used_at"], (agent, key)
    assert key["last_used_at"] == agent["last_used_at"]
    listed = admin.ok("GET", f"{o}/agents")["results"]
    assert next(a for a in listed if a["name"] == "busy-bot")["last_used_at"]
    # Written at most once a minute per key: more requests do not move it.
    first = key["last_used_at"]
    for _ in range(5):
        bot.ok("GET", R(repo_ref))
    if time.time() - t0 < 50:
        assert admin.ok("GET", f"{o}/agents/busy-bot/auth/keys/{key['id']}")[
            "last_used_at"] == first
    # Roles and their keys too.
    admin.ok("POST", f"{o}/roles", 201, json={"name": "used-role", "description": ""})
    rkey = admin.ok("POST", f"{o}/roles/used-role/auth/keys", 201, json={"name": "k"})
    assert rkey["last_used_at"] is None
    Caller(server, rkey["token"]).req("GET", R(repo_ref))  # 403 (no policy), but used
    assert admin.ok("GET", f"{o}/roles/used-role")["last_used_at"]
    assert admin.ok("GET", f"{o}/roles/used-role/auth/keys")["results"][0]["last_used_at"]
    # A user key's requests do not touch them.
    _, ukey = add_user(server)
    Caller(server, ukey).req("GET", R(repo_ref))
    assert admin.ok("GET", f"{o}/agents/busy-bot")["last_used_at"] == first


def test_auth_me_names_the_principal_and_its_organizations(
        server: ServerHandle, admin: Caller, repo_ref: RepoRef) -> None:
    """`GET /auth/me` (today's service): a member sees its user and only its organizations,
    an agent its own name with `source: agent`, no key at all is 401."""
    uid, caller = member(server, admin, repo_ref.org, "reader")
    me = caller.ok("GET", "/auth/me")
    assert set(me) == {"user", "organizations", "has_password"}
    assert (me["user"]["id"], me["user"]["source"], me["user"]["status"]) == (
        uid, "user", "active")
    assert me["user"]["created_at"]
    assert [o["name"] for o in me["organizations"]] == [repo_ref.org]
    assert set(me["organizations"][0]) == {"id", "name", "display_name"}
    bot = _agent(admin, server, repo_ref.org, unique("me-bot"))
    got = bot.ok("GET", "/auth/me")
    assert got["user"]["source"] == "agent"
    assert [o["name"] for o in got["organizations"]] == [repo_ref.org]
    assert httpx.get(f"{server.endpoint}/api/v1/auth/me").status_code == 401
    assert httpx.get(f"{server.endpoint}/api/v1/auth/me",
                     headers={"Authorization": "Bearer tk-not-a-key"}).status_code == 401
