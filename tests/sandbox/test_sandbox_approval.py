"""Commit approval for sandboxes, against a real tilde-server with bubblewrap: an agent's
successful sandbox in a repository that requires approval for agents ends `awaiting_approval`
with `web_url` (the bundled client's execute() warns with it); approving commits it as the
agent, rejecting discards it. A person's sandbox in the same repository commits directly."""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sbhelpers import require_bwrap, unique

import tilde

pytestmark = pytest.mark.timeout(180)

ALLOW_ALL = "package tilde.authz\ndefault allow = true\n"
V079 = {"User-Agent": "tilde-python-sdk/0.7.9"}


@pytest.fixture
def admin(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.endpoint}/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {server.api_key}"}) as c:
        yield c


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, (r.status_code, r.text)
    return r.json() if r.content else None


def _agent_key(admin: httpx.Client, org: str) -> tuple[str, str, str]:
    """(name, id, API key) of a new agent allowed everything."""
    name = unique("sandbox-bot")
    agent = _ok(admin.post(f"/organizations/{org}/agents",
                           json={"name": name, "description": "", "inline_policy": ALLOW_ALL}),
                201)
    key = _ok(admin.post(f"/organizations/{org}/agents/{name}/auth/keys", json={"name": "k"}),
              201)
    return name, agent["id"], key["token"]


def _execute_as(key: str, repo_path: str, command: str) -> tuple[Any, str]:
    """repo.execute() with the bundled client under `key`; (result, web_url of its warning)."""
    with tilde.Client(api_key=key) as client, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = client.repository(repo_path).execute(command)
    urls = [m.group(1) for w in caught if (m := re.fullmatch(
        r"Approval required - review and approve at: (\S+)", str(w.message)))]
    return result, urls[0] if urls else ""


def _latest_sandbox(admin: httpx.Client, R: str) -> dict[str, Any]:
    results = _ok(admin.get(f"{R}/sandboxes", params={"amount": 1000}))["results"]
    return dict(results[-1])


def test_agent_sandbox_awaits_approval_then_commits(server: Any, repo_ref: Any,
                                                    client_env: Any,
                                                    admin: httpx.Client) -> None:
    require_bwrap()
    R = f"/organizations/{repo_ref.org}/repositories/{repo_ref.repo}"
    _ok(admin.put(R, json={"require_approval_for_agents": True}))
    name, agent_id, key = _agent_key(admin, repo_ref.org)

    result, web_url = _execute_as(key, repo_ref.path,
                                  "echo from-agent > /sandbox/agent.txt; echo ran")
    assert result.exit_code == 0 and result.stdout.text() == "ran\n"
    assert web_url.startswith(server.endpoint) and web_url.endswith("/approve"), web_url
    sb = _latest_sandbox(admin, R)
    assert (sb["status"], sb["status_reason"], sb["commit_id"], sb["web_url"]) == (
        "awaiting_approval", "awaiting_approval", "", web_url)
    st = _ok(admin.get(f"{R}/sandboxes/{sb['id']}/status"))
    assert (st["status"], st["web_url"], st["exit_code"]) == ("awaiting_approval", web_url, 0)
    st = _ok(admin.get(f"{R}/sandboxes/{sb['id']}/status", headers=V079))
    assert (st["status"], st["status_reason"]) == ("done", "awaiting_approval")
    # Nothing committed yet; the approval is pending (spec 2.4 HEAD: 200 while pending).
    assert _ok(admin.get(f"{R}/log"))["results"] == []
    assert admin.head(web_url).status_code == 200
    assert admin.get(f"{R}/object", params={"path": "agent.txt"}).status_code == 404
    # Approving commits it, as the agent.
    cid = _ok(admin.post(web_url))["commit_id"]
    assert admin.head(web_url).status_code == 404
    log = _ok(admin.get(f"{R}/log"))["results"]
    assert [c["id"] for c in log] == [cid]
    assert (log[0]["committer_type"], log[0]["committer_id"], log[0]["committer"]) == (
        "agent", agent_id, name)
    assert log[0]["metadata"]["sandbox_id"] == sb["id"]
    assert admin.get(f"{R}/object", params={"path": "agent.txt"}).content == b"from-agent\n"
    st = _ok(admin.get(f"{R}/sandboxes/{sb['id']}/status"))
    assert (st["status"], st["status_reason"], st["commit_id"], st["web_url"]) == (
        "committed", "committed", cid, "")

    # Rejected: nothing lands, the sandbox says so.
    _, web_url2 = _execute_as(key, repo_ref.path, "echo no > /sandbox/rejected.txt")
    assert web_url2 and web_url2 != web_url
    sid = web_url2.rsplit("/sessions/", 1)[1].split("/")[0]
    _ok(admin.post(f"{R}/sessions/{sid}/reject"), 204)
    sb2 = _latest_sandbox(admin, R)
    assert (sb2["status"], sb2["status_reason"]) == ("cancelled", "approval_rejected")
    assert [c["id"] for c in _ok(admin.get(f"{R}/log"))["results"]] == [cid]
    assert admin.get(f"{R}/object", params={"path": "rejected.txt"}).status_code == 404

    # An agent sandbox without changes needs no approval.
    result, web_url3 = _execute_as(key, repo_ref.path, "echo quiet")
    assert web_url3 == "" and result.exit_code == 0
    sb3 = _latest_sandbox(admin, R)
    assert (sb3["status"], sb3["status_reason"]) == ("committed", "no_changes")

    # A person's sandbox in the same repository commits directly.
    result, web_url4 = _execute_as(server.api_key, repo_ref.path,
                                   "echo by-admin > /sandbox/admin.txt")
    assert web_url4 == ""
    sb4 = _latest_sandbox(admin, R)
    assert sb4["status"] == "committed" and sb4["commit_id"], sb4
    log = _ok(admin.get(f"{R}/log"))["results"]
    assert (log[0]["id"], log[0]["committer_type"]) == (sb4["commit_id"], "user")


def test_agent_sandbox_without_approval_commits_as_the_agent(
        server: Any, repo_ref: Any, client_env: Any, admin: httpx.Client) -> None:
    require_bwrap()
    R = f"/organizations/{repo_ref.org}/repositories/{repo_ref.repo}"
    name, agent_id, key = _agent_key(admin, repo_ref.org)
    result, web_url = _execute_as(key, repo_ref.path, "echo x > /sandbox/x.txt")
    assert web_url == "" and result.exit_code == 0
    deadline = time.monotonic() + 10
    while not (log := _ok(admin.get(f"{R}/log"))["results"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert (log[0]["committer_type"], log[0]["committer_id"], log[0]["committer"]) == (
        "agent", agent_id, name)


def test_an_agent_key_opens_the_shell_websocket(
        server: Any, repo_ref: Any, client_env: Any, admin: httpx.Client) -> None:
    """The WebSocket handshake goes through the same authenticator chain as every request,
    so an agent's key drives `repo.shell()` over /exec (it used to know user keys and
    sandbox tokens only: the handshake was refused)."""
    require_bwrap()
    _, agent_id, key = _agent_key(admin, repo_ref.org)
    with tilde.Client(api_key=key) as client, client.repository(repo_ref.path).shell() as sh:
        assert sh.run("echo from-the-agent > a.txt && cat a.txt").stdout.text() == \
                "from-the-agent"
    R = f"/organizations/{repo_ref.org}/repositories/{repo_ref.repo}"
    log = _ok(admin.get(f"{R}/log"))["results"]
    assert log and (log[0]["committer_type"], log[0]["committer_id"]) == ("agent", agent_id)
