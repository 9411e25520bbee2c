"""`POST {S}/finish` commits before it answers (0.7.6-0.7.9 shells never poll after finish,
and 0.7.6/0.7.7 give up after 5 s), and the status vocabulary chosen by User-Agent on
`GET {S}/status`, `GET {S}` and list items (tilde-api-changes.md 2.11, 2.12, item 16)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sbhelpers import SandboxApi, require_bwrap
from websockets.sync.client import connect

pytestmark = pytest.mark.timeout(180)


def sdk(version: str) -> dict[str, str]:
    return {"User-Agent": f"tilde-python-sdk/{version}"}


@pytest.fixture
def api(server: Any, repo_ref: Any) -> SandboxApi:
    require_bwrap()
    return SandboxApi(server, repo_ref)


def service(api: SandboxApi, version: str) -> str:
    r = api.create({"image": "ubuntu:22.04", "mode": "service"}, headers=sdk(version))
    assert r.status_code == 201, r.text
    sid = str(r.json()["sandbox_id"])
    assert api.wait(sid, {"running"})["status"] == "running"
    return sid


def exec_(api: SandboxApi, sid: str, cmd: str) -> int:
    headers = {"Authorization": f"Bearer {api.server.api_key}"}
    with connect(api.ws_url(sid, "exec"), additional_headers=headers) as ws:
        ws.send(b"\x00" + json.dumps({"cmd": ["sh", "-c", cmd]}).encode())
        while True:
            msg = ws.recv(timeout=30)
            assert isinstance(msg, bytes)
            if msg[:1] == b"\x05":
                return int(json.loads(msg[1:])["exit_code"])


def finish(api: SandboxApi, sid: str, version: str) -> httpx.Response:
    """As the 0.7.6 client sends it: no body, and httpx's default 5 s timeout."""
    return httpx.post(f"{api.base}/sandboxes/{sid}/finish",
                      headers={**api.headers, **sdk(version)}, timeout=5)


def test_finish_commits_before_it_answers(api: SandboxApi) -> None:
    sid = service(api, "0.7.6")
    assert exec_(api, sid, "echo finished > /sandbox/out.txt") == 0
    r = finish(api, sid, "0.7.6")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["status_reason"]) == ("committed", "committed")
    # the caller looks right after its `with` block: the commit is there already
    log = api.log()
    assert log[0]["id"] == body["commit_id"]
    assert log[0]["metadata"]["sandbox_id"] == sid
    assert api.objects()["out.txt"] == b"finished\n"
    # finishing a sandbox that already committed is fine too (0.7.9 names)
    again = finish(api, sid, "0.7.9")
    assert again.status_code == 200, again.text
    assert (again.json()["status"], again.json()["status_reason"]) == ("done", "committed")


def test_finish_without_changes(api: SandboxApi) -> None:
    sid = service(api, "0.7.9")
    r = finish(api, sid, "0.7.9")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["status_reason"]) == ("done", "no_changes")
    assert api.status(sid)["status"] == "committed"


def test_finish_of_a_cancelled_sandbox_is_409(api: SandboxApi) -> None:
    sid = service(api, "0.7.9")
    assert api.http.delete(f"{api.base}/sandboxes/{sid}").status_code == 202
    assert api.wait(sid)["status"] == "cancelled"
    r = finish(api, sid, "0.7.9")
    assert r.status_code == 409
    assert r.json()["code"] == "sandbox_finished" and r.json()["request_id"]
    assert httpx.post(f"{api.base}/sandboxes/nope/finish", headers=api.headers).status_code \
        == 404


@pytest.mark.parametrize(("agent", "new_names"), [
    (sdk("0.7.2"), False), (sdk("0.7.8"), False), (sdk("0.7.9"), True),
    (sdk("0.7.10"), True), (sdk("0.7.9 extra/1"), True), (sdk("0.8.0"), True),
    ({"User-Agent": "python-httpx/0.28"}, False),
    ({"User-Agent": "curl/8 tilde-python-sdk/0.7.9"}, False),  # must be at the start
])
def test_status_vocabulary_by_user_agent(api: SandboxApi, agent: dict[str, str],
                                         new_names: bool) -> None:
    ok = api.start({"image": "ubuntu", "command": ["sh", "-c", "echo x > /sandbox/x"]})
    bad = api.start({"image": "ubuntu", "command": ["sh", "-c", "exit 3"]})
    api.wait(ok)
    api.wait(bad)
    expect = {ok: ("done" if new_names else "committed", "committed"),
              bad: ("errored" if new_names else "error", "exit_non_zero")}
    listed = {x["id"]: x for x in api.http.get(f"{api.base}/sandboxes", headers=agent,
                                               params={"amount": 1000}).json()["results"]}
    for sid, (status, reason) in expect.items():
        st = api.status(sid, headers=agent)
        got = api.http.get(f"{api.base}/sandboxes/{sid}", headers=agent).json()
        for view in (st, got, listed[sid]):
            assert (view["status"], view["status_reason"]) == (status, reason), view
    assert api.status(bad, headers=agent)["exit_code"] == 3
