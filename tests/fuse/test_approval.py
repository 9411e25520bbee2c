"""A commit that waits for approval, through a real mount: an agent's mount of a repository
with ``require_approval_for_agents``; ``tilde-mount commit`` exits 3 with the review URL;
a person approves over the API; the commit then holds exactly the bytes written."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from fusehelpers import Api, Tool

ALLOW_ALL = "package tilde.authz\ndefault allow = true\n"


def _admin(api: Api) -> httpx.Client:
    return httpx.Client(base_url=api.server.endpoint + "/api/v1", headers=api.headers,
                        timeout=30)


def make_agent(api: Api, name: str) -> str:
    """An agent of the repository's organization allowed everything its creator is; its key."""
    o = f"/organizations/{api.ref.org}"
    with _admin(api) as http:
        r = http.post(f"{o}/agents", json={"name": name, "description": "mount test",
                                            "inline_policy": ALLOW_ALL})
        assert r.status_code == 201, r.text
        r = http.post(f"{o}/agents/{name}/auth/keys", json={"name": "k"})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])


def test_commit_waiting_for_approval(tool: Tool, api: Api, tmp_path: Path) -> None:
    base = api.seed({"keep.txt": b"kept\n", "old.txt": b"old\n"})
    r_path = f"/organizations/{api.ref.org}/repositories/{api.ref.repo}"
    with _admin(api) as http:
        r = http.put(r_path, json={"require_approval_for_agents": True})
        assert r.status_code == 200 and r.json()["require_approval_for_agents"] is True, r.text
    key = make_agent(api, "mount-bot")

    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt, "--api-key", key)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    tool.sh(f"echo hello > hello.txt && mkdir -p d/e && printf 'x%.0s' $(seq 1 1000) > d/e/x.txt"
            f" && cp -r {src}/sub copied && rm old.txt", cwd=mnt)
    expected = {"keep.txt": b"kept\n", "hello.txt": b"hello\n", "d/e/x.txt": b"x" * 1000,
                "copied/b.bin": (src / "sub" / "b.bin").read_bytes()}
    before = tool.status(mnt)
    r = tool.tm("commit", str(mnt), "-m", "agent work", check=False)
    assert r.returncode == 3, (r.stdout, r.stderr)
    url = r.stdout.strip()
    assert url.startswith("http") and url in r.stderr, (r.stdout, r.stderr)
    # nothing landed yet; the commit waits on the committed session
    assert api.head_commit() == base
    sid = before["session_id"]
    with _admin(api) as http:
        assert http.head(f"{r_path}/sessions/{sid}/approve").status_code == 200
        pending = http.get(f"{r_path}/sessions/{sid}/approve").json()["results"]
        assert {p["path"] for p in pending} == {"hello.txt", "d/e/x.txt", "copied/b.bin",
                                                "old.txt"}

    # the mount goes on over a fresh session, which does not hold the waiting changes
    after = tool.status(mnt)
    assert after["session_id"] != sid
    assert not (after.get("added") or after.get("modified") or after.get("deleted")), after
    assert sorted(os.listdir(mnt)) == ["keep.txt", "old.txt"]
    assert (mnt / "old.txt").read_bytes() == b"old\n"
    assert not (mnt / "hello.txt").exists()

    # a person approves: the commit lands with exactly the bytes written through the mount
    with _admin(api) as http:
        r2 = http.post(f"{r_path}/sessions/{sid}/approve")
        assert r2.status_code == 200, r2.text
        cid = r2.json()["commit_id"]
    assert api.head_commit() == cid
    assert api.log()[0]["message"] == "agent work"
    assert api.tree(cid) == expected

    # the mount still works: a later commit by the agent waits for approval as well
    (mnt / "later.txt").write_text("later\n")
    r = tool.tm("commit", str(mnt), "-m", "later", check=False)
    assert r.returncode == 3, (r.stdout, r.stderr)
    r = tool.tm("unmount", str(mnt), check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
