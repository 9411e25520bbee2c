"""Sandboxes against a real tilde-server: bubblewrap really runs, the repository is a real
tilde-mount of the sandbox's session. Plain httpx and websockets (no bundled client)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from typing import Any

import httpx
import pytest
from sbhelpers import SandboxApi, require_bwrap, start_server, stop_server, unique
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def api(server: Any, repo_ref: Any) -> SandboxApi:
    require_bwrap()
    return SandboxApi(server, repo_ref)


PY_WRITE = ("import os; os.makedirs('/sandbox/out', exist_ok=True); "
            "open('/sandbox/out/a.txt', 'w').write('alpha'); "
            "open('/sandbox/out/b.txt', 'w').write('beta'); print('wrote', os.getcwd())")


def test_one_shot_writes_land_in_one_commit(api: SandboxApi) -> None:
    before = api.log()
    st, out = api.run({"image": "ubuntu", "command": ["python3", "-c", PY_WRITE]})
    assert st["status"] == "committed", st
    assert st["status_reason"] == "committed"
    assert st["exit_code"] == 0
    assert st["commit_id"]
    assert out == b"wrote /sandbox\n"
    after = api.log()
    assert len(after) == len(before) + 1
    assert after[0]["id"] == st["commit_id"]
    assert after[0]["metadata"].get("sandbox_id")
    assert api.objects() == {"out/a.txt": b"alpha", "out/b.txt": b"beta"}


def test_failing_command_commits_nothing(api: SandboxApi) -> None:
    before = api.log()
    st, out = api.run({"image": "ubuntu", "command": [
        "sh", "-c", "echo partial > /sandbox/junk.txt; echo oops >&2; exit 3"]})
    assert st["status"] == "error", st
    assert st["status_reason"] == "exit_non_zero"
    assert st["exit_code"] == 3
    assert st["commit_id"] == ""
    assert out == b"oops\n"
    assert api.log() == before
    assert "junk.txt" not in api.objects()


def test_success_without_changes(api: SandboxApi) -> None:
    st, out = api.run({"image": "ubuntu", "command": ["sh", "-c", "echo quiet"]})
    assert (st["status"], st["status_reason"], st["commit_id"], st["exit_code"]) == (
        "committed", "no_changes", "", 0)
    assert out == b"quiet\n"


def test_reads_committed_data_lazily_and_path_prefix(api: SandboxApi) -> None:
    api.put("data/in.txt", b"12345")
    api.put("other/secret.txt", b"not visible")
    st, out = api.run({"image": "python-312", "mountpoint": "/work/data",
                       "path_prefix": "data", "command": [
                           "sh", "-c", "ls /work/data; cat in.txt > copy.txt; pwd"]})
    assert st["status"] == "committed", (st, out)
    assert out.split() == [b"in.txt", b"/work/data"]
    objs = api.objects()
    assert objs["data/copy.txt"] == b"12345"
    assert "copy.txt" not in objs


def test_env_vars_environment_and_limits(api: SandboxApi, server: Any) -> None:
    limits = ("import resource as r; print(r.getrlimit(r.RLIMIT_FSIZE)[0], "
              "r.getrlimit(r.RLIMIT_AS)[0], r.getrlimit(r.RLIMIT_CORE)[0])")
    st, out = api.run({"image": "ubuntu", "env_vars": {"GREETING": "hi there"},
                       "command": ["sh", "-c", "echo \"$GREETING\"; id -u; echo $HOME; "
                                               f"python3 -c '{limits}'; env"]})
    assert st["status"] == "committed"
    lines = out.decode().splitlines()
    assert lines[0] == "hi there"
    if os.geteuid() == 0:
        assert lines[1] == "65534"  # never root on the host
    assert lines[2] == "/tmp"
    assert lines[3] == f"{16 * 1024**3} {16 * 1024**3} 0"
    assert server.api_key not in out.decode()
    env = dict(line.split("=", 1) for line in lines[4:] if "=" in line)
    assert env["TILDE_API_URL"] == "http://127.0.0.1:8080"
    assert env["TILDE_SANDBOX_CREDENTIALS_URI"].startswith("http://127.0.0.1:8080/_tilde/")


def test_timeout_fails_and_rolls_back(api: SandboxApi) -> None:
    before = api.log()
    t0 = time.monotonic()
    st, _ = api.run({"image": "ubuntu", "timeout_seconds": 2, "command": [
        "sh", "-c", "echo x > /sandbox/t.txt; sleep 60"]})
    assert time.monotonic() - t0 < 30
    assert (st["status"], st["status_reason"]) == ("failed", "timeout"), st
    assert "timeout" in st["error_message"]
    assert api.log() == before


def test_cancel_kills_the_process_tree(api: SandboxApi) -> None:
    marker = f"tilde-cancel-{secrets.token_hex(4)}"
    sid = api.start({"image": "ubuntu", "command": [
        "sh", "-c", f"echo y > /sandbox/c.txt; (sleep 300; echo {marker}) & sleep 300"]})
    api.wait(sid, {"running"})
    time.sleep(0.5)
    r = api.http.delete(f"{api.base}/sandboxes/{sid}")
    assert r.status_code == 202, r.text
    st = api.wait(sid)
    assert (st["status"], st["status_reason"]) == ("cancelled", "cancelled_by_user")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert marker not in ps
    assert "c.txt" not in api.objects()
    # cancelling again: already cancelled is fine, another terminal state is a conflict
    assert api.http.delete(f"{api.base}/sandboxes/{sid}").status_code == 202


def test_unknown_image_fails(api: SandboxApi) -> None:
    st, _ = api.run({"image": "no-such-image:1", "command": ["true"]})
    assert (st["status"], st["status_reason"]) == ("failed", "image_not_found")
    assert "no-such-image" in st["error_message"]


def test_no_network_and_no_server_files(api: SandboxApi, server: Any) -> None:
    port = server.endpoint.rsplit(":", 1)[1]
    probe = (
        "import socket, os\n"
        "def tcp(h, p):\n"
        "    s = socket.socket(); s.settimeout(3)\n"
        "    try:\n"
        "        s.connect((h, p)); return 'open'\n"
        "    except OSError as e:\n"
        "        return 'closed'\n"
        f"print('server', tcp('127.0.0.1', {port}))\n"
        # no route off the namespace (the main table lists none; lo's are in the local one)
        "print('routes', len(open('/proc/net/route').read().splitlines()) - 1)\n"
        "print('ifaces', sorted(n for _, n in socket.if_nameindex()))\n"
        f"print('datadir', os.path.exists({str(server.data_dir)!r}))\n"
        f"print('home', os.path.exists({str(server.home)!r}))\n"
        "print('root', os.path.exists('/root'), os.path.exists('/home'))\n"
        "print('shadow', os.access('/etc/shadow', os.R_OK))\n"
    )
    st, out = api.run({"image": "ubuntu", "command": ["python3", "-c", probe]})
    assert st["status"] == "committed", (st, out)
    lines = dict(line.split(" ", 1) for line in out.decode().splitlines())
    assert lines["server"] == "closed"
    assert lines["routes"] == "0"
    assert lines["ifaces"] == "['lo']"
    assert lines["datadir"] == "False"
    assert lines["home"] == "False"
    assert lines["root"] == "False False"
    assert lines["shadow"] == "False"
    sid = api.start({"image": "ubuntu", "command": ["true"]})
    r = api.http.get(f"{api.base}/sandboxes/{sid}/logs/network")
    assert r.status_code == 200 and r.content == b""
    api.wait(sid)  # not left preparing when the server stops after this test


def test_read_only_system(api: SandboxApi) -> None:
    st, out = api.run({"image": "ubuntu", "command": [
        "sh", "-c", "touch /usr/x 2>/dev/null && echo usr-writable; "
                    "touch /etc/x 2>/dev/null && echo etc-writable; "
                    "touch /tmp/x && echo tmp-ok; ls /proc/1/cmdline >/dev/null && echo proc-ok"]})
    assert st["status"] == "committed"
    assert out.split() == [b"tmp-ok", b"proc-ok"]


def _drain_until(ws: Any, marker: str, timeout: float = 30) -> str:
    buf = ""
    deadline = time.monotonic() + timeout
    while marker not in buf:
        msg = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(msg, bytes) and msg[:1] == b"\x01":
            buf += msg[1:].decode()
        elif isinstance(msg, str):
            buf += msg
    return buf


def test_interactive_shell_over_terminal_websocket(api: SandboxApi) -> None:
    sid = api.start({"image": "ubuntu", "interactive": True, "timeout_seconds": 120})
    assert api.wait(sid, {"running"} | {"failed", "error", "cancelled"})["status"] == "running"
    headers = {"Authorization": f"Bearer {api.server.api_key}"}
    with connect(api.ws_url(sid), additional_headers=headers, max_size=2**20) as ws:
        h = secrets.token_hex(16)
        ws.send(b"\x00" + f"export TERM=dumb; stty -echo cols 32767; "
                          f"echo '__TILDE_READY_{h}__'\n".encode())
        _drain_until(ws, f"__TILDE_READY_{h}__")
        results = []
        for cmd in ["echo one > /sandbox/s1.txt", "cat /sandbox/s1.txt",
                    "cd /tmp && pwd", "ls /sandbox", "false"]:
            h = secrets.token_hex(16)
            ws.send(b"\x00" + (f"{cmd}; __ec=$?; echo; echo '__TILDE_BEGIN_{h}__'; "
                               f"echo $__ec; echo '__TILDE_END_{h}__'\n").encode())
            text = _drain_until(ws, f"__TILDE_END_{h}__")
            before, _, rest = text.partition(f"__TILDE_BEGIN_{h}__")
            results.append((before.strip(), int(rest.split()[0])))
        assert results == [("", 0), ("one", 0), ("/tmp", 0), ("s1.txt", 0), ("", 1)]
        ws.send(b"\x00exit\n")
        exit_frame = None
        try:
            while True:
                msg = ws.recv(timeout=30)
                if isinstance(msg, bytes) and msg[:1] == b"\x03":
                    exit_frame = json.loads(msg[1:])
        except Exception:
            pass
        assert exit_frame == {"exited": True, "exit_code": 0}
    st = api.wait(sid)
    assert st["status"] == "committed", st
    assert api.objects()["s1.txt"] == b"one\n"


def test_terminal_handshake_needs_a_valid_key(api: SandboxApi) -> None:
    sid = api.start({"image": "ubuntu", "interactive": True, "timeout_seconds": 60})
    api.wait(sid, {"running"})
    with pytest.raises(InvalidStatus), connect(
            api.ws_url(sid), additional_headers={"Authorization": "Bearer nope"}):
        pass
    assert api.http.delete(f"{api.base}/sandboxes/{sid}").status_code == 202
    assert api.wait(sid)["status"] == "cancelled"


def test_service_mode_exec_websocket_and_finish(api: SandboxApi) -> None:
    ua = {"User-Agent": "tilde-python-sdk/0.7.9"}
    r = api.create({"image": "ubuntu:22.04", "mode": "service"}, headers=ua)
    assert r.status_code == 201, r.text
    sid = r.json()["sandbox_id"]
    assert api.wait(sid, {"running"})["status"] == "running"
    headers = {"Authorization": f"Bearer {api.server.api_key}"}

    def exec_(cmd: list[str], stdin: bytes | None = None) -> tuple[bytes, bytes, int]:
        out, err, code = b"", b"", None
        with connect(api.ws_url(sid, "exec"), additional_headers=headers) as ws:
            ws.send(b"\x00" + json.dumps({"cmd": cmd}).encode())
            if stdin is not None:
                if stdin:
                    ws.send(b"\x01" + stdin)
                ws.send(b"\x02")
            while code is None:
                msg = ws.recv(timeout=30)
                assert isinstance(msg, bytes)
                if msg[:1] == b"\x03":
                    out += msg[1:]
                elif msg[:1] == b"\x04":
                    err += msg[1:]
                elif msg[:1] == b"\x05":
                    code = json.loads(msg[1:])["exit_code"]
        return out, err, code

    assert exec_(["sh", "-c", "echo out; echo err >&2; exit 4"]) == (b"out\n", b"err\n", 4)
    assert exec_(["sh", "-c", "cat > /sandbox/in.txt"], stdin=b"piped") == (b"", b"", 0)
    assert exec_(["cat", "/sandbox/in.txt"]) == (b"piped", b"", 0)
    assert exec_(["sh", "-c", "cat; echo end"]) == (b"end\n", b"", 0)  # closed stdin
    r = api.http.post(f"{api.base}/sandboxes/{sid}/finish", headers=ua)
    assert r.status_code in (200, 202)
    deadline = time.monotonic() + 60
    while (st := api.status(sid, headers=ua))["status"] not in ("done", "failed", "errored"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert (st["status"], st["status_reason"]) == ("done", "committed"), st
    assert api.status(sid)["status"] == "committed"  # 0.7.2 vocabulary by default
    assert api.objects()["in.txt"] == b"piped"


def test_credentials_inside_the_sandbox(api: SandboxApi, server: Any, repo_ref: Any) -> None:
    other = unique("repo")
    r = api.http.post(f"{server.endpoint}/api/v1/organizations/{repo_ref.org}/repositories",
                      json={"name": other})
    assert r.status_code == 201
    script = (
        "import json, os, urllib.request, urllib.error\n"
        "uri = os.environ['TILDE_SANDBOX_CREDENTIALS_URI']\n"
        "api = os.environ['TILDE_API_URL']\n"
        "with urllib.request.urlopen(uri, timeout=5) as r:\n"
        "    assert r.status == 200\n"
        "    cred = json.load(r)\n"
        "print('expires', bool(cred['expires_at']))\n"
        "def get(path):\n"
        "    req = urllib.request.Request(api + '/api/v1' + path,\n"
        "        headers={'Authorization': 'Bearer ' + cred['access_token']})\n"
        "    try:\n"
        "        with urllib.request.urlopen(req, timeout=5) as r:\n"
        "            return r.status\n"
        "    except urllib.error.HTTPError as e:\n"
        "        return e.code\n"
        f"print('own', get('/organizations/{repo_ref.org}/repositories/{repo_ref.repo}/log'))\n"
        f"print('other', get('/organizations/{repo_ref.org}/repositories/{other}/log'))\n"
        "print('orgs', get('/organizations'))\n"
        "import tilde\n"
        f"repo = tilde.repository('{repo_ref.org}/{repo_ref.repo}')\n"
        "with repo.session() as s:\n"
        "    s.objects.put('via-client.txt', b'from inside')\n"
        "    s.commit('inside')\n"
        "print('client ok')\n"
    )
    st, out = api.run({"image": "ubuntu", "command": ["python3", "-c", script]})
    assert st["status"] == "committed", (st, out)
    assert out.decode().split("\n")[:5] == ["expires True", "own 200", "other 403", "orgs 403",
                                             "client ok"]
    assert api.objects()["via-client.txt"] == b"from inside"


@pytest.mark.parametrize("body,fragment", [
    ({"image": "ubuntu", "command": []}, "command"),
    ({"image": "ubuntu", "command": [""]}, "command"),
    ({"image": "ubuntu", "command": "echo hi"}, "command"),
    ({"image": "ubuntu"}, "command"),
    ({"image": 5, "command": ["true"]}, "image"),
    ({"image": "ubuntu", "command": ["true"], "timeout_seconds": 0}, "timeout_seconds"),
    ({"image": "ubuntu", "command": ["true"], "timeout_seconds": -5}, "timeout_seconds"),
    ({"image": "ubuntu", "command": ["true"], "timeout_seconds": "10"}, "timeout_seconds"),
    ({"image": "ubuntu", "command": ["true"], "env_vars": {"A": 1}}, "env_vars"),
    ({"image": "ubuntu", "command": ["true"], "env_vars": ["A"]}, "env_vars"),
    ({"image": "ubuntu", "command": ["true"], "env_vars": {"BIG": "x" * 70000}}, "env_vars"),
    ({"image": "ubuntu", "command": ["true"],
      "env_vars": {f"V{i}": "x" for i in range(300)}}, "env_vars"),
    ({"image": "ubuntu", "command": ["true"], "env_vars": {"BAD NAME": "x"}}, "env_vars"),
    ({"image": "ubuntu", "command": ["true"], "mountpoint": "sandbox"}, "mountpoint"),
    ({"image": "ubuntu", "command": ["true"], "mountpoint": "/../etc"}, "mountpoint"),
    ({"image": "ubuntu", "command": ["true"], "mountpoint": "/sandbox/../../x"}, "mountpoint"),
    ({"image": "ubuntu", "command": ["true"], "mountpoint": "/"}, "mountpoint"),
    ({"image": "ubuntu", "command": ["true"], "mountpoint": "/usr/local/x"}, "mountpoint"),
    ({"image": "ubuntu", "command": ["true"], "mountpoint": 7}, "mountpoint"),
    ({"image": "ubuntu", "command": ["true"], "path_prefix": "../up"}, "path_prefix"),
    ({"image": "ubuntu", "command": ["true"], "interactive": "yes"}, "interactive"),
    ({"image": "ubuntu", "command": ["true"], "mode": "batch"}, "mode"),
])
def test_bad_input_is_400_and_starts_nothing(api: SandboxApi, body: dict[str, Any],
                                             fragment: str) -> None:
    before = api.http.get(f"{api.base}/sandboxes").json()["results"]
    r = api.create(body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["message"]
    assert api.http.get(f"{api.base}/sandboxes").json()["results"] == before


def test_not_json_and_unknown_sandbox(api: SandboxApi) -> None:
    r = api.http.post(f"{api.base}/sandboxes", content=b"{nope",
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    for path in ("", "/status", "/logs/stdout", "/logs/network"):
        assert api.http.get(f"{api.base}/sandboxes/nope{path}").status_code == 404
    assert api.http.delete(f"{api.base}/sandboxes/nope").status_code == 404


def test_list_and_get(api: SandboxApi) -> None:
    sids = [api.start({"image": "ubuntu", "command": ["true"]}) for _ in range(3)]
    for sid in sids:
        api.wait(sid)
    r = api.http.get(f"{api.base}/sandboxes", params={"amount": 2})
    page = r.json()
    assert [x["id"] for x in page["results"]] == sids[:2]
    assert page["pagination"]["has_more"] is True
    r = api.http.get(f"{api.base}/sandboxes",
                     params={"amount": 2, "after": page["pagination"]["next_offset"]})
    assert [x["id"] for x in r.json()["results"]] == sids[2:]
    one = api.http.get(f"{api.base}/sandboxes/{sids[0]}").json()
    assert one["id"] == sids[0] and one["command"] == ["true"] and one["status"] == "committed"
    assert one["mountpoint"] == "/sandbox" and one["interactive"] is False


def test_triggers_start_sandboxes_on_matching_commits(api: SandboxApi) -> None:
    body = {"name": "copy-inputs", "description": "copies in/ to out/",
            "conditions": [{"type": "prefix", "prefix": "in/", "diff_type": "added"}],
            "sandbox_config": {"image": "ubuntu", "command": [
                "sh", "-c", "mkdir -p /sandbox/out && cp /sandbox/in/* /sandbox/out/"]}}
    r = api.http.post(f"{api.base}/sandbox-triggers", json=body)
    assert r.status_code == 201, r.text
    trig = r.json()
    assert trig["enabled"] is True and trig["conditions"][0]["prefix"] == "in/"
    tid = trig["id"]
    assert api.http.get(f"{api.base}/sandbox-triggers").json()["results"][0]["id"] == tid
    api.put("elsewhere.txt", b"no match")
    commit = api.put("in/x.txt", b"payload")
    deadline = time.monotonic() + 60
    while True:
        runs = api.http.get(f"{api.base}/sandbox-triggers/{tid}/runs").json()["results"]
        if runs and runs[0]["status"] not in ("pending", "running"):
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.3)
    assert len(runs) == 1
    run = runs[0]
    assert (run["status"], run["commit_id"], run["matched_paths"]) == (
        "succeeded", commit, ["in/x.txt"])
    assert api.status(run["sandbox_id"])["status"] == "committed"
    assert api.objects()["out/x.txt"] == b"payload"
    # disable, update, delete
    r = api.http.patch(f"{api.base}/sandbox-triggers/{tid}", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    api.put("in/y.txt", b"ignored")
    time.sleep(1)
    assert len(api.http.get(f"{api.base}/sandbox-triggers/{tid}/runs").json()["results"]) == 1
    r = api.http.put(f"{api.base}/sandbox-triggers/{tid}", json={"name": "renamed"})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert r.json()["description"] == "copies in/ to out/"
    assert api.http.delete(f"{api.base}/sandbox-triggers/{tid}").status_code == 204
    assert api.http.get(f"{api.base}/sandbox-triggers/{tid}").status_code == 404


def _trigger_runs(api: SandboxApi, tid: str, commits: set[str],
                  timeout: float = 60) -> dict[str, dict[str, Any]]:
    """{commit id: run} once every commit in `commits` has a finished run of trigger `tid`."""
    deadline = time.monotonic() + timeout
    while True:
        runs = api.http.get(f"{api.base}/sandbox-triggers/{tid}/runs").json()["results"]
        done = {r["commit_id"]: r for r in runs if r["status"] not in ("pending", "running")}
        if commits <= set(done):
            return done
        assert time.monotonic() < deadline, runs
        time.sleep(0.3)


def test_triggers_fire_for_approved_and_reverted_commits(api: SandboxApi) -> None:
    """Every commit path fires triggers (one on-commit hook in the store): a commit that
    waited for approval fires when it is approved, and so does a revert."""
    tid = api.http.post(f"{api.base}/sandbox-triggers", json={
        "name": "watch-in", "conditions": [{"type": "prefix", "prefix": "in/"}],
        "sandbox_config": {"image": "ubuntu", "command": ["true"]}}).json()["id"]
    org = api.repo.org
    # an agent's commit in a repository that requires approval for agents: 202, then approve
    name = unique("bot")
    assert api.http.post(f"{api.server.endpoint}/api/v1/organizations/{org}/agents", json={
        "name": name, "description": "",
        "inline_policy": "package tilde.authz\ndefault allow = true\n"}).status_code == 201
    key = api.http.post(f"{api.server.endpoint}/api/v1/organizations/{org}/agents/{name}"
                        "/auth/keys", json={"name": "k"}).json()["token"]
    assert api.http.put(api.base, json={"require_approval_for_agents": True}).status_code == 200
    agent = SandboxApi(api.server, api.repo)
    agent.http.headers["Authorization"] = f"Bearer {key}"
    sid = agent.http.post(f"{agent.base}/sessions").json()["session_id"]
    st = agent.http.post(f"{agent.base}/object/stage",
                         params={"session_id": sid, "path": "in/a.txt"}).json()
    assert httpx.put(st["upload_url"], content=b"a").status_code == 200
    assert agent.http.put(f"{agent.base}/object/finalize", params={
        "session_id": sid, "path": "in/a.txt", "expires_at": st["expires_at"]}, json={
        "physical_address": st["physical_address"],
        "signature": st["signature"]}).status_code == 200
    r = agent.http.post(f"{agent.base}/sessions/{sid}", json={"message": "needs approval"})
    assert r.status_code == 202, r.text
    time.sleep(1)  # nothing committed yet, so nothing may have fired
    assert api.http.get(f"{api.base}/sandbox-triggers/{tid}/runs").json()["results"] == []
    r = api.http.post(f"{api.base}/sessions/{sid}/approve")
    assert r.status_code == 200, r.text
    approved = r.json()["commit_id"]
    assert api.http.put(api.base, json={"require_approval_for_agents": False}).status_code == 200
    # a revert of that commit removes in/a.txt: a commit like any other
    r = api.http.post(f"{api.base}/commits/{approved}/revert", json={"message": "undo"})
    assert r.status_code in (200, 201), r.text
    reverted = r.json()["commit_id"]
    runs = _trigger_runs(api, tid, {approved, reverted})
    assert runs[approved]["matched_paths"] == ["in/a.txt"]
    assert runs[reverted]["matched_paths"] == ["in/a.txt"]
    agent.http.close()


def test_trigger_bad_input(api: SandboxApi) -> None:
    good = {"name": "t", "conditions": [{"type": "prefix", "prefix": "a/"}],
            "sandbox_config": {"image": "ubuntu", "command": ["true"]}}
    for bad in ({**good, "conditions": []}, {**good, "conditions": [{"type": "regex"}]},
                {**good, "sandbox_config": {"image": "ubuntu", "command": []}},
                {**good, "sandbox_config": {"command": ["true"]}}, {**good, "name": ""},
                {**good, "sandbox_config": {"image": "u", "command": ["true"],
                                            "timeout_seconds": 0}}):
        r = api.http.post(f"{api.base}/sandbox-triggers", json=bad)
        assert r.status_code == 400, (bad, r.text)


def test_restart_marks_running_sandboxes_lost(tmp_path: Any) -> None:
    require_bwrap()
    h = start_server(tmp_path / "s1")
    try:
        org, repo = unique("org"), unique("repo")
        c = httpx.Client(headers={"Authorization": f"Bearer {h.api_key}"}, timeout=30)
        c.post(f"{h.endpoint}/api/v1/organizations", json={"name": org, "display_name": org})
        c.post(f"{h.endpoint}/api/v1/organizations/{org}/repositories", json={"name": repo})
        ref = type("R", (), {"org": org, "repo": repo})()
        api = SandboxApi(h, ref)
        sid = api.start({"image": "ubuntu", "command": ["sh", "-c", "echo a > /sandbox/a; "
                                                                    "sleep 300"]})
        api.wait(sid, {"running"})
        h.proc.kill()
        h.proc.wait()
    finally:
        if h.proc.poll() is None:
            stop_server(h)
    h2 = start_server(tmp_path / "s1")
    try:
        api2 = SandboxApi(h2, ref)
        st = api2.status(sid)
        assert (st["status"], st["status_reason"]) == ("failed", "sandbox_lost")
        assert api2.objects() == {}
        with open("/proc/self/mountinfo") as f:
            assert sid not in f.read()
    finally:
        stop_server(h2)


def _tiny_rootfs(root: Any) -> None:
    """A root file system holding only dash and the libraries it needs (copied from the host)."""
    import re
    import shutil as sh

    out = subprocess.run(["ldd", "/bin/dash"], capture_output=True, text=True).stdout
    libs = re.findall(r"(/\S+\.so[.\d]*)", out)
    for src in ["/bin/dash", *libs]:
        real = os.path.realpath(src)
        dst = root / src.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        sh.copy2(real, dst)
    (root / "bin" / "sh").symlink_to("dash")
    (root / "etc").mkdir()
    (root / "etc" / "marker").write_text("tiny image\n")
    os.chmod(root, 0o755)


def test_operator_image(api: SandboxApi, server: Any, tmp_path: Any) -> None:
    import tempfile

    from sbhelpers import _root

    base = tempfile.mkdtemp(prefix="tilde-image-")  # under /tmp: searchable by uid 65534
    os.chmod(base, 0o755)
    root = tmp_path.__class__(base) / "rootfs"
    root.mkdir()
    _tiny_rootfs(root)
    name = unique("tiny")
    d = server.data_dir
    r = _root.server_cli(d, "image", "add", "--data", str(d), name, str(root))
    assert r.returncode == 0, r.stderr
    listed = _root.server_cli(d, "image", "list", "--data", str(d)).stdout
    assert f"{name}\t{root}" in listed and "python-312\t-> host (alias)" in listed
    st, out = api.run({"image": name, "command": [
        "/bin/sh", "-c", "read m < /etc/marker; echo $m; echo /*; "
                         "echo ${TILDE_SANDBOX_CREDENTIALS_URI:-none}; echo img > /sandbox/i"]})
    assert st["status"] == "committed", (st, out)
    lines = out.decode().splitlines()
    assert lines[0] == "tiny image"
    assert set(lines[1].split()) == {"/bin", "/dev", "/etc", "/lib", "/lib64", "/proc",
                                     "/run", "/sandbox", "/tmp"}
    assert lines[2] == "none"  # no python3 in the image: no forwarder, no credentials
    assert api.objects()["i"] == b"img\n"
    r = _root.server_cli(d, "image", "remove", "--data", str(d), name)
    assert r.returncode == 0, r.stderr
    st, _ = api.run({"image": name, "command": ["true"]})
    assert st["status_reason"] == "image_not_found"
    bad = _root.server_cli(d, "image", "add", "--data", str(d), "x", str(tmp_path))
    assert bad.returncode == 2 and "bin/sh" in bad.stderr
    if os.geteuid() == 0:  # pytest's tmp_path is private (0700): refused with a reason
        _tiny_rootfs(tmp_path / "private")
        bad = _root.server_cli(d, "image", "add", "--data", str(d), "x",
                               str(tmp_path / "private"))
        assert bad.returncode == 2 and "not searchable" in bad.stderr
    import shutil

    shutil.rmtree(base)


def test_repository_secrets_become_environment(api: SandboxApi) -> None:
    r = api.http.put(f"{api.base}/secrets/DB_PASSWORD", json={"value": "s3cret"})
    assert r.status_code == 200, r.text
    api.http.put(f"{api.base}/secrets/OVERRIDDEN", json={"value": "from-secret"})
    st, out = api.run({"image": "ubuntu", "env_vars": {"OVERRIDDEN": "from-env"},
                       "command": ["sh", "-c", "echo $DB_PASSWORD $OVERRIDDEN"]})
    assert st["status"] == "committed"
    assert out == b"s3cret from-env\n"
