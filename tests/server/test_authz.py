"""Identity and authorization against the real server: users from the CLI, organization roles,
agents and their keys, Rego policies (validation, enforcement by path), groups, approvals.

Plain httpx, the session server of tests/conftest.py, and `tilde-server user add` run against
its data directory while it serves (SQLite WAL makes that safe).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from serverapi import RepoRef, ServerHandle, assert_error, server_cli, unique

DENY_SECRET = """package tilde.authz
import rego.v1

deny if {
    input.action == "object:write"
    startswith(input.path, "secret/")
}
"""
ALLOW_ALL = "package tilde.authz\ndefault allow = true\n"


def cli(server: ServerHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return server_cli(server.data_dir, *args)


class Caller:
    """One API key's view of the server."""

    def __init__(self, server: ServerHandle, key: str) -> None:
        self.base = f"{server.endpoint}/api/v1"
        self.key = key
        self.http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=20)

    def req(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, self.base + path, **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.req(method, path, **kw)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json() if r.content else None

    def put_object(self, R: str, sid: str, path: str, data: bytes) -> httpx.Response:
        """Stage, upload and finalize; returns the first response that was not 2xx."""
        r = self.req("POST", f"{R}/object/stage", params={"session_id": sid, "path": path})
        if not r.is_success:
            return r
        st = r.json()
        up = httpx.put(st["upload_url"], content=data)
        assert up.is_success, up.text
        return self.req("PUT", f"{R}/object/finalize",
                        params={"session_id": sid, "path": path, "expires_at": st["expires_at"]},
                        json={"physical_address": st["physical_address"],
                              "signature": st["signature"]})


def add_user(server: ServerHandle, name: str | None = None, admin: bool = False) -> tuple[str, str]:
    """(user id, API key) of a new user made by `tilde-server user add`."""
    name = name or unique("user")
    proc = cli(server, "user", "add", "--data", str(server.data_dir), name,
               *(["--admin"] if admin else []))
    assert proc.returncode == 0, proc.stderr
    uid = proc.stdout.split("(id ", 1)[1].split(")", 1)[0]
    key = proc.stdout.rsplit("API key (shown once): ", 1)[1].strip()
    return uid, key


@pytest.fixture
def admin(server: ServerHandle) -> Iterator[Caller]:
    c = Caller(server, server.api_key)
    yield c
    c.http.close()


@pytest.fixture
def org(admin: Caller, repo_ref: RepoRef) -> str:
    return repo_ref.org


def R(repo_ref: RepoRef) -> str:
    return f"/organizations/{repo_ref.org}/repositories/{repo_ref.repo}"


def member(server: ServerHandle, admin: Caller, org: str, role: str) -> tuple[str, Caller]:
    uid, key = add_user(server)
    admin.ok("POST", f"/organizations/{org}/members", 201,
             json={"username": uid and admin_username(server, uid), "role": role})
    return uid, Caller(server, key)


def admin_username(server: ServerHandle, uid: str) -> str:
    proc = cli(server, "user", "list", "--data", str(server.data_dir))
    for line in proc.stdout.splitlines():
        if line.startswith(uid):
            return line.split()[1]
    raise AssertionError(uid)


def test_cli_users_and_org_isolation(server: ServerHandle, admin: Caller,
                                     repo_ref: RepoRef) -> None:
    uid, key = add_user(server)
    alice = Caller(server, key)
    # Not a member of anything: sees no organizations, and is refused the test org.
    assert alice.ok("GET", "/organizations")["results"] == []
    assert_error(alice.req("GET", R(repo_ref)), 403, "forbidden")
    assert_error(alice.req("GET", f"/organizations/{repo_ref.org}/repositories"), 403)
    # Her own organization: she becomes its owner and sees only it.
    mine = unique("org")
    alice.ok("POST", "/organizations", 201, json={"name": mine, "display_name": mine})
    assert [o["name"] for o in alice.ok("GET", "/organizations")["results"]] == [mine]
    members = alice.ok("GET", f"/organizations/{mine}/members")["results"]
    assert [(m["user_id"], m["role"]) for m in members] == [(uid, "owner")]
    alice.ok("POST", f"/organizations/{mine}/repositories", 201, json={"name": "r"})
    # ... which the test org's admin-created members cannot see either.
    _, bob = member(server, admin, repo_ref.org, "member")
    assert_error(bob.req("GET", f"/organizations/{mine}/repositories"), 403)
    assert_error(bob.req("GET", f"/organizations/{mine}/repositories/r"), 403)
    # user list / remove: the removed user's key fails at once.
    listing = cli(server, "user", "list", "--data", str(server.data_dir)).stdout
    assert uid in listing
    name = admin_username(server, uid)
    assert cli(server, "user", "remove", "--data", str(server.data_dir), name).returncode == 0
    assert_error(alice.req("GET", "/organizations"), 401)
    dup = cli(server, "user", "add", "--data", str(server.data_dir), "admin")
    assert dup.returncode == 1 and "already exists" in dup.stderr


def test_reader_cannot_write(server: ServerHandle, admin: Caller, repo_ref: RepoRef) -> None:
    s = admin.ok("POST", f"{R(repo_ref)}/sessions", 201)["session_id"]
    assert admin.put_object(R(repo_ref), s, "a.txt", b"A").is_success
    admin.ok("POST", f"{R(repo_ref)}/sessions/{s}", json={"message": "seed"})
    _, reader = member(server, admin, repo_ref.org, "reader")
    assert reader.req("GET", f"{R(repo_ref)}/object", params={"path": "a.txt"}).content == b"A"
    sid = reader.ok("POST", f"{R(repo_ref)}/sessions", 201)["session_id"]
    assert_error(reader.put_object(R(repo_ref), sid, "b.txt", b"B"), 403, "forbidden")
    assert_error(reader.req("DELETE", f"{R(repo_ref)}/object",
                            params={"session_id": sid, "path": "a.txt"}), 403)
    assert_error(reader.req("PUT", R(repo_ref), json={"description": "x"}), 403)
    assert_error(reader.req("POST", f"/organizations/{repo_ref.org}/repositories",
                            json={"name": "nope"}), 403)
    assert_error(reader.req("POST", f"/organizations/{repo_ref.org}/agents",
                            json={"name": "a", "description": ""}), 403)
    assert_error(reader.req("DELETE", f"/organizations/{repo_ref.org}"), 403)


def test_agent_keys_policy_and_revocation(server: ServerHandle, admin: Caller,
                                          repo_ref: RepoRef) -> None:
    o = f"/organizations/{repo_ref.org}"
    agent = admin.ok("POST", f"{o}/agents", 201,
                     json={"name": "bot", "description": "", "metadata": {"env": "ci"}})
    assert agent["metadata"] == {"env": "ci"} and agent["inline_policy"] == ""
    created = admin.ok("POST", f"{o}/agents/bot/auth/keys", 201, json={"name": "k1"})
    token = created["token"]
    assert token.startswith("cak-") and created["token_hint"] == "cak-…" + token[-4:]
    listed = admin.ok("GET", f"{o}/agents/bot/auth/keys")["results"]
    assert [k["id"] for k in listed] == [created["id"]] and "token" not in listed[0]
    bot = Caller(server, token)
    # No permissions until a policy says so.
    assert_error(bot.req("GET", R(repo_ref)), 403)
    admin.ok("PUT", f"{o}/agents/bot", json={"inline_policy": ALLOW_ALL})
    assert bot.ok("GET", R(repo_ref))["name"] == repo_ref.repo
    # Organization-scoped: another organization stays closed.
    other = unique("org")
    admin.ok("POST", "/organizations", 201, json={"name": other, "display_name": other})
    assert_error(bot.req("GET", f"/organizations/{other}/repositories"), 403)
    assert_error(bot.req("POST", "/organizations", json={"name": unique("o"),
                                                         "display_name": ""}), 403)
    # Revocation takes effect on the very next request.
    admin.ok("DELETE", f"{o}/agents/bot/auth/keys/{created['id']}", 204)
    assert_error(bot.req("GET", R(repo_ref)), 401)
    assert admin.ok("GET", f"{o}/agents/bot/auth/keys/{created['id']}")["revoked_at"]


def test_policy_denying_secret_writes_blocks_exactly_those(
        server: ServerHandle, admin: Caller, repo_ref: RepoRef) -> None:
    o, r = f"/organizations/{repo_ref.org}", R(repo_ref)
    seed = admin.ok("POST", f"{r}/sessions", 201)["session_id"]
    for p in ("secret/old", "public/old"):
        assert admin.put_object(r, seed, p, b"x").is_success
    admin.ok("POST", f"{r}/sessions/{seed}", json={"message": "seed"})
    uid, alice = member(server, admin, repo_ref.org, "member")
    pol = admin.ok("POST", f"{o}/policies", 201,
                   json={"name": "no-secret-writes", "policy_text": DENY_SECRET})["policy"]
    admin.ok("POST", f"{o}/policies/{pol['id']}/attachments", 204,
             json={"principal_type": "user", "principal_id": uid})
    sid = alice.ok("POST", f"{r}/sessions", 201)["session_id"]
    q = {"session_id": sid}
    assert_error(alice.put_object(r, sid, "secret/a", b"s"), 403)
    assert alice.put_object(r, sid, "public/a", b"p").is_success
    assert_error(alice.req("POST", f"{r}/object/multipart", params={**q, "path": "secret/m"}),
                 403)
    assert alice.req("POST", f"{r}/object/multipart", params={**q, "path": "pub/m"}).is_success
    # a part URL is a write grant: refused for a path she may not write, in both dialects
    mp = admin.ok("POST", f"{r}/object/multipart", 201, params={**q, "path": "secret/m2"})
    lookup = {**q, "path": "secret/m2", "upload_id": mp["upload_id"], "part_number": 1}
    assert_error(alice.req("GET", f"{r}/object/multipart/part", params=lookup), 403)
    assert admin.ok("GET", f"{r}/object/multipart/part", params=lookup)["upload_url"]
    legacy = {"token": mp["token"], "upload_id": mp["upload_id"], "part_number": 1}
    assert_error(alice.req("GET", f"{r}/object/multipart/part", params=legacy), 403)
    assert admin.req("GET", f"{r}/object/multipart/part", params=legacy).status_code == 307
    assert_error(alice.req("POST", f"{r}/object/copy", params={
        **q, "source_path": "public/old", "destination_path": "secret/c"}), 403)
    assert alice.req("POST", f"{r}/object/copy", params={
        **q, "source_path": "secret/old", "destination_path": "public/c"}).is_success
    assert_error(alice.req("DELETE", f"{r}/object", params={**q, "path": "secret/old"}), 403)
    assert_error(alice.req("POST", f"{r}/objects/delete", params=q,
                           json={"paths": ["public/old", "secret/old"]}), 403)
    assert alice.req("DELETE", f"{r}/object", params={**q, "path": "public/old"}).is_success
    assert alice.req("GET", f"{r}/object", params={"path": "secret/old"}).content == b"x"
    changes = {c["path"] for c in alice.ok("GET", f"{r}/changes", params=q)["results"]}
    assert changes == {"public/a", "public/c", "public/old"}, changes
    # Changing the policy takes effect at once: now only `secret/a` itself is refused.
    admin.ok("PUT", f"{o}/policies/{pol['id']}",
             json={"policy_text": DENY_SECRET.replace('"secret/"', '"secret/a"')})
    assert alice.put_object(r, sid, "secret/b", b"s").is_success
    assert_error(alice.put_object(r, sid, "secret/a", b"s"), 403)
    eff = admin.ok("GET", f"{o}/effective-policies", params={"user_id": uid})["results"]
    assert {(e["policy_name"], e["source"]) for e in eff} == {
        ("builtin-org-member", "role"), ("no-secret-writes", "direct")}


def test_groups_grant_through_membership(server: ServerHandle, admin: Caller,
                                         repo_ref: RepoRef) -> None:
    o = f"/organizations/{repo_ref.org}"
    uid, reader = member(server, admin, repo_ref.org, "reader")
    sid = reader.ok("POST", f"{R(repo_ref)}/sessions", 201)["session_id"]
    assert_error(reader.put_object(R(repo_ref), sid, "g.txt", b"g"), 403)
    outer = admin.ok("POST", f"{o}/groups", 201, json={"name": "outer"})
    inner = admin.ok("POST", f"{o}/groups", 201, json={"name": "inner"})
    admin.ok("POST", f"{o}/groups/{outer['id']}/members", 204,
             json={"subject_type": "group", "subject_id": inner["id"]})
    admin.ok("POST", f"{o}/groups/{inner['id']}/members", 204,
             json={"subject_type": "user", "subject_id": uid})
    assert_error(admin.req("POST", f"{o}/groups/{inner['id']}/members",
                           json={"subject_type": "group", "subject_id": outer["id"]}), 409)
    writers = admin.ok("POST", f"{o}/policies", 201, json={
        "name": "writers", "policy_text": "package tilde.authz\nallow if input.action == "
                                          "\"object:write\"\n"})["policy"]
    admin.ok("POST", f"{o}/policies/{writers['id']}/attachments", 204,
             json={"principal_type": "group", "principal_id": outer["id"]})
    assert reader.put_object(R(repo_ref), sid, "g.txt", b"g").is_success
    detail = admin.ok("GET", f"{o}/groups/{inner['id']}")
    assert [m["subject_id"] for m in detail["members"]] == [uid]
    eff = admin.ok("GET", f"{o}/effective-groups",
                   params={"principal_type": "user", "principal_id": uid})["results"]
    assert {(g["group_name"], g["source"]) for g in eff} == {("inner", "direct"),
                                                            ("outer", "nested")}
    attachments = admin.ok("GET", f"{o}/attachments")["results"]
    assert any(a["policy_id"] == writers["id"] and a["principal_name"] == "outer"
               for a in attachments)


def test_bad_input_changes_nothing(admin: Caller, repo_ref: RepoRef) -> None:
    o = f"/organizations/{repo_ref.org}"
    before = admin.ok("GET", f"{o}/policies")["results"]
    bad = "package tilde.authz\nallow if {\n  input.a ==\n}\n"
    res = admin.ok("POST", f"{o}/policies:validate", json={"policy_text": bad})
    assert res == {"valid": False, "errors": [
        {"line": 3, "column": 11, "message": "Invalid boolean operator"}]}
    assert admin.ok("POST", f"{o}/policies:validate", json={"policy_text": ALLOW_ALL}) == {
        "valid": True, "errors": []}
    assert_error(admin.req("POST", f"{o}/policies", json={"name": "bad", "policy_text": bad}),
                 400, "invalid_policy")
    assert_error(admin.req("POST", f"{o}/policies", json={"name": "bad", "policy_text":
                                                          "package other\nallow := true"}), 400)
    p = admin.ok("POST", f"{o}/policies", 201, json={"name": "ok", "policy_text": ALLOW_ALL})
    pid = p["policy"]["id"]
    assert_error(admin.req("POST", f"{o}/policies", json={"name": "ok",
                                                          "policy_text": ALLOW_ALL}), 409)
    assert_error(admin.req("PUT", f"{o}/policies/{pid}", json={"policy_text": bad}), 400)
    assert admin.ok("GET", f"{o}/policies/{pid}")["policy"]["policy_text"] == ALLOW_ALL
    assert_error(admin.req("POST", f"{o}/policies/{pid}/attachments",
                           json={"principal_type": "robot", "principal_id": "x"}), 400)
    assert_error(admin.req("POST", f"{o}/policies/{pid}/attachments",
                           json={"principal_type": "user", "principal_id": "nobody"}), 404)
    assert_error(admin.req("GET", f"{o}/policies/not-a-uuid"), 404)
    assert_error(admin.req("GET", f"{o}/groups/not-a-uuid"), 404)
    assert_error(admin.req("POST", f"{o}/agents", json={"name": "bad name!",
                                                        "description": ""}), 400)
    assert_error(admin.req("POST", f"{o}/members", json={"username": "nobody-x",
                                                         "role": "member"}), 404)
    assert_error(admin.req("POST", f"{o}/members", json={"username": "admin",
                                                         "role": "emperor"}), 400)
    assert_error(admin.req("POST", f"{o}/agents/nobody/auth/keys", json={"name": "k"}), 404)
    after = admin.ok("GET", f"{o}/policies")["results"]
    assert [x["id"] for x in after] == sorted([x["id"] for x in before] + [pid])
    builtin = next(x for x in before if x["is_builtin"])
    assert_error(admin.req("DELETE", f"{o}/policies/{builtin['id']}"), 400, "builtin_policy")
    gen = admin.req("POST", f"{o}/policies:generate", json={"prompt": "read only"})
    assert gen.status_code == 501 and "language model" in gen.json()["message"]


def _agent(admin: Caller, server: ServerHandle, org: str, name: str) -> Caller:
    o = f"/organizations/{org}"
    admin.ok("POST", f"{o}/agents", 201, json={"name": name, "description": "",
                                               "inline_policy": ALLOW_ALL})
    return Caller(server, admin.ok("POST", f"{o}/agents/{name}/auth/keys", 201,
                                   json={"name": "k"})["token"])


def test_approval_flow(server: ServerHandle, admin: Caller, repo_ref: RepoRef) -> None:
    r = R(repo_ref)
    got = admin.ok("PUT", r, json={"require_approval_for_agents": True})
    assert got["require_approval_for_agents"] is True
    bot = _agent(admin, server, repo_ref.org, "approver-bot")
    # Approved: 202 with web_url, HEAD 200 while pending, POST approve commits, HEAD 404.
    sid = bot.ok("POST", f"{r}/sessions", 201)["session_id"]
    assert bot.put_object(r, sid, "pending.txt", b"wait").is_success
    res = bot.req("POST", f"{r}/sessions/{sid}", json={"message": "agent work"})
    assert res.status_code == 202 and res.json()["web_url"].startswith("http"), res.text
    assert bot.req("HEAD", f"{r}/sessions/{sid}/approve").status_code == 200
    assert_error(bot.req("GET", f"{r}/object", params={"path": "pending.txt"}), 404)
    assert_error(bot.req("POST", f"{r}/sessions/{sid}/approve"), 403)  # not an owner
    assert_error(bot.put_object(r, sid, "more.txt", b"no"), 404)  # the session is frozen
    cid = admin.ok("POST", f"{r}/sessions/{sid}/approve")["commit_id"]
    assert bot.req("HEAD", f"{r}/sessions/{sid}/approve").status_code == 404
    log = admin.ok("GET", f"{r}/log")["results"]
    assert log[0]["id"] == cid and log[0]["message"] == "agent work"
    assert log[0]["committer"] == "approver-bot"
    assert bot.req("GET", f"{r}/object", params={"path": "pending.txt"}).content == b"wait"
    # Rejected through the CLI: rolled back, HEAD 404, nothing committed.
    sid2 = bot.ok("POST", f"{r}/sessions", 201)["session_id"]
    assert bot.put_object(r, sid2, "rejected.txt", b"no").is_success
    assert bot.req("POST", f"{r}/sessions/{sid2}", json={"message": "nope"}).status_code == 202
    proc = cli(server, "reject", "--data", str(server.data_dir),
               f"{repo_ref.org}/{repo_ref.repo}", sid2)
    assert proc.returncode == 0, proc.stderr
    assert bot.req("HEAD", f"{r}/sessions/{sid2}/approve").status_code == 404
    assert_error(bot.req("GET", f"{r}/object", params={"path": "rejected.txt"}), 404)
    assert admin.ok("GET", f"{r}/log")["results"][0]["id"] == cid
    # Approved through the CLI.
    sid3 = bot.ok("POST", f"{r}/sessions", 201)["session_id"]
    assert bot.put_object(r, sid3, "cli.txt", b"ok").is_success
    assert bot.req("POST", f"{r}/sessions/{sid3}", json={"message": "cli"}).status_code == 202
    proc = cli(server, "approve", "--data", str(server.data_dir),
               f"{repo_ref.org}/{repo_ref.repo}", sid3)
    assert proc.returncode == 0 and "approved: commit" in proc.stdout, proc.stderr
    assert bot.req("GET", f"{r}/object", params={"path": "cli.txt"}).content == b"ok"
    # Users' commits never wait.
    sid4 = admin.ok("POST", f"{r}/sessions", 201)["session_id"]
    assert admin.put_object(r, sid4, "human.txt", b"h").is_success
    assert "commit_id" in admin.ok("POST", f"{r}/sessions/{sid4}", json={"message": "h"})


def test_authz_cost_is_small(server: ServerHandle, admin: Caller, repo_ref: RepoRef) -> None:
    """Not a timing assertion: exercises the evaluated path many times (see benchmarks)."""
    _, alice = member(server, admin, repo_ref.org, "member")
    t = time.perf_counter()
    for _ in range(20):
        alice.ok("GET", R(repo_ref))
    assert time.perf_counter() - t < 60


def test_role_keys_and_unknown_org(server: ServerHandle, admin: Caller,
                                   repo_ref: RepoRef) -> None:
    o = f"/organizations/{repo_ref.org}"
    role = admin.ok("POST", f"{o}/roles", 201, json={"name": "ci", "description": "CI"})
    assert role["name"] == "ci" and role["created_by_type"] == "user"
    assert_error(admin.req("POST", f"{o}/roles", json={"name": "ci", "description": ""}), 409)
    token = admin.ok("POST", f"{o}/roles/ci/auth/keys", 201, json={"name": "k"})["token"]
    ci = Caller(server, token)
    assert_error(ci.req("GET", R(repo_ref)), 403)
    reader = next(p for p in admin.ok("GET", f"{o}/policies")["results"]
                  if p["name"] == "builtin-org-reader")
    admin.ok("POST", f"{o}/policies/{reader['id']}/attachments", 204,
             json={"principal_type": "role", "principal_id": role["id"]})
    assert ci.ok("GET", R(repo_ref))["name"] == repo_ref.repo
    assert_error(ci.req("PUT", R(repo_ref), json={"description": "no"}), 403)
    # Deleting the role kills its keys at once.
    admin.ok("DELETE", f"{o}/roles/ci", 204)
    assert_error(ci.req("GET", R(repo_ref)), 401)
    # A user outside every organization: an unknown organization is 404, a known one 403.
    _, key = add_user(server)
    nobody = Caller(server, key)
    assert_error(nobody.req("GET", "/organizations/no-such-org-here/repositories"), 404)
    assert_error(nobody.req("GET", f"{o}/members"), 403)


def test_agent_never_exceeds_its_creator(server: ServerHandle, admin: Caller,
                                         repo_ref: RepoRef) -> None:
    o = f"/organizations/{repo_ref.org}"
    _, org_admin = member(server, admin, repo_ref.org, "admin")
    org_admin.ok("POST", f"{o}/agents", 201, json={"name": "helper", "description": "",
                                                   "inline_policy": ALLOW_ALL})
    token = org_admin.ok("POST", f"{o}/agents/helper/auth/keys", 201, json={"name": "k"})
    helper = Caller(server, token["token"])
    assert helper.ok("GET", R(repo_ref))["name"] == repo_ref.repo  # both allow it
    # Its own policy allows deleting the organization; its creator (an org admin) may not.
    r = assert_error(helper.req("DELETE", o), 403)
    assert "creator" in r["message"]
    assert admin.ok("GET", o)["name"] == repo_ref.org
