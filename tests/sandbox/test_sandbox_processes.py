"""Sandboxes beside several processes of one deployment (manager.py 8.).

Two real servers on one real PostgreSQL, real bwrap: a process that starts leaves another
process's running sandbox alone, serves its log, relays an exec to it, and a cancel sent to
it reaches the sandbox; when that
process is SIGKILLed, the survivor ends its sandbox `sandbox_lost` once the lease runs out
and rolls its session back."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sbhelpers import RepoRef, SandboxApi, require_bwrap, start_server, stop_server, unique
from websockets.sync.client import connect

from postgres import start_postgres

ADMIN = "tk-sandbox-processes-0123456789abcdef"


def _exec(api: SandboxApi, sid: str, cmd: str) -> tuple[bytes, int]:
    """One 0.7.9 exec run over the WebSocket: its stdout and exit code."""
    headers = {"Authorization": f"Bearer {api.server.api_key}"}
    out = b""
    with connect(api.ws_url(sid, "exec"), additional_headers=headers) as ws:
        ws.send(b"\x00" + json.dumps({"cmd": ["sh", "-c", cmd]}).encode())
        while True:
            msg = ws.recv(timeout=30)
            assert isinstance(msg, bytes)
            if msg[:1] == b"\x03":
                out += msg[1:]
            if msg[:1] == b"\x05":
                return out, int(json.loads(msg[1:])["exit_code"])


def test_a_dead_processs_sandbox_ends_lost_and_a_live_ones_is_left_alone(
        tmp_path: Path) -> None:
    require_bwrap()
    with start_postgres(tmp_path / "pg") as pg:
        env = {"TILDE_SERVER_DATABASE": pg.create_database(f"sb_{os.getpid()}"),
               "TILDE_SERVER_SECRET_KEY_FILE": str(tmp_path / "keys.json"),
               "TILDE_SERVER_BLOBS": str(tmp_path / "blobs"),
               "TILDE_SERVER_SANDBOX_LEASE": "2"}
        a = start_server(tmp_path / "a", ADMIN, extra_env=env)
        b = None
        try:
            ref = RepoRef(unique("org"), unique("repo"))
            on_a = SandboxApi(a, ref)
            base = f"{a.endpoint}/api/v1/organizations"
            assert on_a.http.post(base, json={"name": ref.org, "display_name": ref.org}
                                  ).status_code == 201
            assert on_a.http.post(f"{base}/{ref.org}/repositories", json={"name": ref.repo}
                                  ).status_code == 201
            sid = on_a.start({"image": "ubuntu", "command": [
                "/bin/sh", "-c", "echo partial > /sandbox/p; echo started; sleep 600"]})
            on_a.wait(sid, {"running"})
            session = on_a.status(sid)
            b = start_server(tmp_path / "b", ADMIN, extra_env=env)
            on_b = SandboxApi(b, ref)
            time.sleep(3)  # longer than the lease: A renews, so B must leave it alone
            assert on_b.status(sid)["status"] == "running"
            assert on_a.status(sid)["status"] == "running"
            # B serves the log of the sandbox running on A (sandbox/logs.py), as it grows
            assert on_b.stdout(sid) == on_a.stdout(sid) == b"started\n"
            done = on_a.start({"image": "ubuntu", "command": [
                "/bin/sh", "-c", "for i in 1 2 3; do echo line $i; done; echo err >&2"]})
            assert on_a.wait(done, timeout=60)["status"] in ("committed", "done")
            assert on_b.stdout(done) == b"line 1\nline 2\nline 3\nerr\n"
            # an exec sent to B runs in A's sandbox: B relays the WebSocket to A
            service = on_a.start({"image": "ubuntu", "mode": "service"})
            on_a.wait(service, {"running"})
            out, code = _exec(on_b, service, "echo err >&2; echo out; exit 3")
            assert (out, code) == (b"out\n", 3)
            assert "sandbox WebSocket relay" not in b.log()
            r = on_b.http.delete(f"{on_b.base}/sandboxes/{service}")
            assert r.status_code == 202, r.text
            # A cancel sent to B reaches the sandbox on A.
            other = on_a.start({"image": "ubuntu", "command": ["/bin/sleep", "600"]})
            on_a.wait(other, {"running"})
            r = on_b.http.delete(f"{on_b.base}/sandboxes/{other}")
            assert r.status_code == 202, r.text
            st = on_a.wait(other, timeout=30)
            assert (st["status"], st["status_reason"]) == ("cancelled", "cancelled_by_user"), st
            a.proc.kill()
            a.proc.wait(timeout=30)
            st = on_b.wait(sid, timeout=30)
            assert (st["status"], st["status_reason"]) == ("failed", "sandbox_lost"), st
            assert "lease expired, marked sandbox_lost" in b.log()
            # nothing of it was committed
            assert on_b.objects() == {}, session
            on_b.http.close()
            on_a.http.close()
        finally:
            if b is not None:
                stop_server(b)
            # A again on its own directory: it unmounts what its killed run left behind
            if a.proc.poll() is not None:
                a = start_server(tmp_path / "a", ADMIN, extra_env=env)
            stop_server(a)
        assert b is not None and "Traceback" not in b.log(), b.log()
