"""The shell's two transports against real processes behind a local WebSocket server.

Not a stand-in for tilde-server (the behaviour tests run against the real one): this pins
the protocols on their own. ``/exec`` (tilde-api-changes.md 2.10): one process per run,
launch/stdin/EOF frames in, stdout/stderr/exit frames out, ``/finish`` on a clean exit. The
0.7.2 terminal (spec 2.8.4-2.8.6): one pipe shell (no PTY, as the spec allows), optionally
echoing its input and printing a prompt as a PTY shell would. The fallbacks of 5.5 are played
by a server without ``/exec`` (404 at the handshake) or one whose create refuses ``mode``.
Status, create, finish and cancel go to an httpx.MockTransport that plays the lifecycle, in
either status vocabulary.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from tilde import Client, _ws_wire
from tilde.exceptions import BadRequestError, CommandError, SandboxError

ORG, REPO = "o", "r"
BASE = f"/api/v1/organizations/{ORG}/repositories/{REPO}/sandboxes"


@dataclass
class Terminal:
    """One shell per WebSocket connection; frames as 2.8.4 says."""

    echo: bool = False  # echo stdin back and print a prompt, as a PTY shell would
    exit_codes: list[int] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)

    def __call__(self, ws: ServerConnection) -> None:
        proc = subprocess.Popen(["sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, bufsize=0)
        assert proc.stdin is not None and proc.stdout is not None

        def pump() -> None:
            # Output until the shell exits, then the exit frame and a normal close (5.21).
            assert proc.stdout is not None
            try:
                while chunk := proc.stdout.read(4096):
                    ws.send(_ws_wire.encode_output(chunk.replace(b"\n", b"\r\n")))
                code = proc.wait(timeout=10)
                self.exit_codes.append(code)
                ws.send(_ws_wire.encode_exit(code))
                ws.close()
            except Exception:
                return

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            for message in ws:
                frame = _ws_wire.decode_frame(message)
                if frame is None or frame.kind != _ws_wire.STDIN:
                    continue
                self.received.append(frame.payload)
                if self.echo:
                    ws.send(_ws_wire.encode_output(b"$ " + frame.payload))
                proc.stdin.write(frame.payload)
        except Exception:
            pass
        finally:
            # A closed socket is end of stdin, not a cancel: the shell finishes what it read.
            try:
                proc.stdin.close()
            except OSError:
                pass
            reader.join(timeout=10)
            proc.stdout.close()


@dataclass
class Exec:
    """One process per ``/exec`` connection; frames as tilde-api-changes.md 2.10 says."""

    launches: list[dict[str, Any]] = field(default_factory=list)
    stdin_frames: list[bytes] = field(default_factory=list)
    close_early: bool = False  # close the socket without an exit frame

    def __call__(self, ws: ServerConnection) -> None:
        first = ws.recv(timeout=10)
        assert isinstance(first, bytes) and first[0] == _ws_wire.EXEC_LAUNCH
        launch = json.loads(first[1:])
        self.launches.append(launch)
        data: bytes | None = None
        try:  # stdin comes right after the launch frame, or not at all
            while True:
                message = ws.recv(timeout=0.3)
                assert isinstance(message, bytes)
                self.stdin_frames.append(message)
                if message[0] == _ws_wire.EXEC_STDIN:
                    data = (data or b"") + message[1:]
                elif message[0] == _ws_wire.EXEC_STDIN_EOF:
                    data = data or b""
                    break
        except TimeoutError:
            pass
        if self.close_early:
            ws.close()
            return
        proc = subprocess.run(launch["cmd"], input=data or b"", capture_output=True,
                              env={**os.environ, **launch.get("env", {})},
                              cwd=launch.get("cwd"), timeout=30)
        ws.send(bytes([_ws_wire.EXEC_STDOUT]) + proc.stdout)
        ws.send("a text frame is ignored")
        ws.send(bytes([_ws_wire.EXEC_STDERR]) + proc.stderr)
        ws.send(bytes([_ws_wire.EXEC_EXIT]) + json.dumps({"exit_code": proc.returncode,
                                                          "reason": "exited"}).encode())
        ws.close()


@dataclass
class WsServer:
    endpoint: str
    terminal: Terminal
    exec: Exec
    exec_missing: bool = False  # a server from before 0.7.6: /exec is no route (404)


@pytest.fixture
def ws_server() -> Iterator[WsServer]:
    state = WsServer("", Terminal(), Exec())

    def route(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.endswith("/exec") and state.exec_missing:
            return connection.respond(404, "no such route\n")
        return None

    def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path.endswith("/exec"):
            state.exec(ws)
        else:
            state.terminal(ws)

    with serve(handler, "127.0.0.1", 0, process_request=route) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        state.endpoint = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        yield state
        server.shutdown()


@dataclass
class Lifecycle:
    """Sandbox status as a server would report it: starting, running, then an end."""

    ws: WsServer
    end_state: str = "committed"
    end_reason: str = "committed"
    polls_before_running: int = 0
    reject_mode: int | None = None  # the status a create with "mode" gets (older server)
    never_runs: bool = False
    created: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == BASE:
            body = json.loads(request.content)
            if "mode" in body and self.reject_mode:
                return httpx.Response(self.reject_mode, json={"message": "unknown field mode"})
            self.created.append(body)
            return httpx.Response(201, json={"sandbox_id": f"sb-{len(self.created)}"})
        m = re.fullmatch(BASE + r"/(sb-(\d+))(/status|/finish)?", path)
        if m is None:
            return httpx.Response(404, json={"message": f"unexpected {request.method} {path}"})
        sid, body = m.group(1), self.created[int(m.group(2)) - 1]
        if request.method == "DELETE" and m.group(3) is None:
            self.cancelled.append(sid)
            return httpx.Response(202, json={"message": "cancelling"})
        if request.method == "POST" and m.group(3) == "/finish":
            self.finished.append(sid)
            return httpx.Response(202, json={"message": "finishing"})
        self.polls[sid] = self.polls.get(sid, 0) + 1
        ended = sid in self.finished or (body.get("interactive") is True
                                         and bool(self.ws.terminal.exit_codes))
        if sid in self.cancelled or self.never_runs:
            state, reason = "cancelled", "cancelled_by_user"
        elif ended:
            state, reason = self.end_state, self.end_reason
        elif self.polls[sid] > self.polls_before_running:
            state, reason = "running", ""
        else:
            state, reason = "starting", "initializing"
        return httpx.Response(200, json={"status": state, "status_reason": reason,
                                         "exit_code": None, "web_url": "http://review/1"})


def _client(life: Lifecycle) -> Client:
    return Client(endpoint_url=life.ws.endpoint, api_key="k",
                  httpx_client=httpx.Client(transport=httpx.MockTransport(life)))


# --- /exec -----------------------------------------------------------------------------------

def test_exec_runs_one_process_each_and_finishes(ws_server: WsServer) -> None:
    life = Lifecycle(ws_server, end_state="done", end_reason="committed",
                     polls_before_running=1)
    client = _client(life)
    repo = client.repository(f"{ORG}/{REPO}")
    with repo.shell(image="python-312", env={"A": "1"}, timeout=60) as sh:
        assert life.created == [{"image": "python-312", "mode": "service",
                                 "env_vars": {"A": "1"}, "timeout_seconds": 60}]
        r = sh.run("echo hello; echo oops >&2; echo bye")
        # 0.7.2's stdout: both streams in the order written, no final newline
        assert (r.stdout.text(), r.stderr.read(), r.exit_code) == ("hello\noops\nbye", b"", 0)
        r = sh.run(["sh", "-c", "echo $1 $B; pwd; exit 3", "sh", "x"], env={"B": "2"},
                   cwd="/tmp")
        assert (r.stdout.text(), r.exit_code) == ("x 2\n/tmp", 3)
        assert sh.run("cat", stdin=b"fed").stdout.read() == b"fed"
        assert sh.run("cat; echo none", stdin=b"").stdout.text() == "none"
        sh.run("true")
        with pytest.raises(CommandError) as info:
            sh.run("exit 1", check=True)
        assert info.value.result.exit_code == 1 and info.value.command == "exit 1"
    first, second = ws_server.exec.launches[:2]
    assert first == {"cmd": ["sh", "-c", "exec 2>&1\necho hello; echo oops >&2; echo bye"]}
    assert second == {"cmd": ["sh", "-c", 'exec 2>&1; exec "$@"', "sh", "sh", "-c",
                              "echo $1 $B; pwd; exit 3", "sh", "x"],
                      "env": {"B": "2"}, "cwd": "/tmp"}
    assert ws_server.exec.stdin_frames == [b"\x01fed", b"\x02", b"\x02"]  # none for stdin=None
    assert life.finished == ["sb-1"] and life.cancelled == []
    assert not client._shell_over_terminal and ws_server.terminal.received == []


def test_exec_exception_in_block_cancels(ws_server: WsServer) -> None:
    life = Lifecycle(ws_server)
    repo = _client(life).repository(f"{ORG}/{REPO}")
    with pytest.raises(RuntimeError, match="boom"), repo.shell() as sh:
        sh.run("true")
        raise RuntimeError("boom")
    assert life.cancelled == ["sb-1"] and life.finished == []
    assert life.created[0]["image"] == "ubuntu"


def test_exec_socket_closed_before_the_exit_frame(ws_server: WsServer) -> None:
    ws_server.exec.close_early = True
    life = Lifecycle(ws_server)
    repo = _client(life).repository(f"{ORG}/{REPO}")
    with pytest.raises(SandboxError, match="closed before the command ended"), \
            repo.shell() as sh:
        sh.run("true")
    assert life.cancelled == ["sb-1"]


@pytest.mark.parametrize(("state", "reason"), [
    ("committed", "committed"), ("committed", "no_changes"), ("done", "committed"),
    ("done", "no_changes")])
def test_clean_ends_in_both_vocabularies(ws_server: WsServer, state: str, reason: str) -> None:
    life = Lifecycle(ws_server, end_state=state, end_reason=reason)
    repo = _client(life).repository(f"{ORG}/{REPO}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with repo.shell() as sh:
            sh.run("true")
    assert life.finished == ["sb-1"]


@pytest.mark.parametrize("exec_missing", [False, True])
@pytest.mark.parametrize(("state", "reason"), [
    ("awaiting_approval", "awaiting_approval"), ("done", "awaiting_approval")])
def test_approval_warns_with_the_0_7_2_text(ws_server: WsServer, exec_missing: bool,
                                             state: str, reason: str) -> None:
    ws_server.exec_missing = exec_missing
    life = Lifecycle(ws_server, end_state=state, end_reason=reason)
    repo = _client(life).repository(f"{ORG}/{REPO}")
    with pytest.warns(UserWarning) as caught, repo.shell() as sh:
        sh.run("true")
    sid = "sb-2" if exec_missing else "sb-1"
    assert [str(w.message) for w in caught if w.category is UserWarning] == [
        f"Sandbox {sid} requires approval: http://review/1"]


@pytest.mark.parametrize("exec_missing", [False, True])
@pytest.mark.parametrize("state", ["failed", "error", "errored", "cancelled"])
def test_failed_ends_raise(ws_server: WsServer, exec_missing: bool, state: str) -> None:
    ws_server.exec_missing = exec_missing
    life = Lifecycle(ws_server, end_state=state, end_reason="exit_non_zero")
    repo = _client(life).repository(f"{ORG}/{REPO}")
    with pytest.raises(SandboxError, match=state), repo.shell() as sh:
        sh.run("true")


@pytest.mark.parametrize("state", ["cancelled", "failed", "done", "errored", "committed"])
def test_sandbox_that_never_runs_is_cancelled_and_raises(ws_server: WsServer,
                                                         state: str) -> None:
    life = Lifecycle(ws_server, end_state=state, polls_before_running=100)
    life.finished.append("sb-1")  # ended before it ever ran
    repo = _client(life).repository(f"{ORG}/{REPO}")
    with pytest.raises(SandboxError, match=state), repo.shell():
        pass
    assert life.cancelled == ["sb-1"]


# --- the terminal, and falling back to it ----------------------------------------------------

@pytest.mark.parametrize("echo", [False, True])
def test_no_exec_route_falls_back_to_the_terminal_and_remembers(
        ws_server: WsServer, echo: bool) -> None:
    ws_server.exec_missing = True
    ws_server.terminal.echo = echo
    life = Lifecycle(ws_server)
    client = _client(life)
    repo = client.repository(f"{ORG}/{REPO}")
    shell = repo.shell(image="python-312", env={"A": "1"}, timeout=60)
    with shell as sh:
        assert sh.sandbox_id == "sb-1"
        r = sh.run("echo hello; echo oops >&2")  # the first run finds no /exec
        assert sh.sandbox_id == "sb-2"
        assert r.exit_code == 0 and r.stdout.text() == "hello\noops", r.stdout.text()
        sh.run("cd /tmp && X=42")
        r = sh.run("pwd; echo $X")
        assert list(r.stdout.iter_lines()) == ["/tmp", "42"]
        r = sh.run(["printf", "%s|", "a b", "c"], env={"E": "e"}, cwd="/")
        assert r.stdout.read() == b"a b|c|"
        assert sh.run("pwd; echo $E").stdout.text() == "/tmp"  # env/cwd were for one run
        r = sh.run("printf 'no newline'")
        assert r.stdout.read() == b"no newline"
        r = sh.run("sh -c 'exit 3'")
        assert r.exit_code == 3 and r.stdout.text() == ""
        with pytest.raises(CommandError) as info:
            sh.run("false", check=True)
        assert info.value.result.exit_code == 1 and info.value.command == "false"
        with pytest.raises(SandboxError, match="stdin"):
            sh.run("cat", stdin=b"x")
    service = {"image": "python-312", "mode": "service", "env_vars": {"A": "1"},
               "timeout_seconds": 60}
    interactive = {"image": "python-312", "interactive": True, "env_vars": {"A": "1"},
                   "timeout_seconds": 60}
    assert life.created == [service, interactive]
    assert life.cancelled == ["sb-1"] and life.finished == []
    # stdin exactly as 0.7.2 types it: probe first, the wrapped commands, then exit.
    typed = b"".join(ws_server.terminal.received).decode()
    assert typed.startswith("export TERM=dumb; stty -echo cols 32767; echo '__TILDE_READY_")
    assert typed.endswith("exit\n")
    assert ws_server.terminal.exit_codes == [0]
    # remembered for the client's life: the next shell goes straight to the terminal
    assert client._shell_over_terminal
    ws_server.terminal.exit_codes.clear()
    with repo.shell() as sh:
        assert sh.run("echo again").stdout.text() == "again"
    assert life.created[2] == {"image": "ubuntu", "interactive": True}
    assert len(ws_server.exec.launches) == 0


@pytest.mark.parametrize("status", [400, 422])
def test_create_refusing_mode_falls_back(ws_server: WsServer, status: int) -> None:
    life = Lifecycle(ws_server, reject_mode=status)
    client = _client(life)
    repo = client.repository(f"{ORG}/{REPO}")
    with repo.shell(cmd=None) as sh:
        assert sh.run("X=1; echo $X").stdout.text() == "1"
    assert life.created == [{"image": "ubuntu", "interactive": True}]
    assert client._shell_over_terminal


def test_create_refusal_that_is_not_about_mode_is_raised(ws_server: WsServer) -> None:
    life = Lifecycle(ws_server, reject_mode=400)

    def refuse_all(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(400, json={"message": "bad env"})
        return life(request)

    client = Client(endpoint_url=ws_server.endpoint, api_key="k",
                    httpx_client=httpx.Client(transport=httpx.MockTransport(refuse_all)))
    with pytest.raises(BadRequestError, match="bad env"):
        client.repository(f"{ORG}/{REPO}").shell()
    assert not client._shell_over_terminal


def test_cmd_asks_for_the_terminal(ws_server: WsServer) -> None:
    life = Lifecycle(ws_server)
    repo = _client(life).repository(f"{ORG}/{REPO}")
    with repo.shell(cmd=["sh"]) as sh:
        sh.run("true")
    assert life.created == [{"image": "ubuntu", "interactive": True, "command": ["sh"]}]


def test_shell_that_exits_mid_run_is_a_sandbox_error(ws_server: WsServer) -> None:
    ws_server.exec_missing = True
    life = Lifecycle(ws_server)
    repo = _client(life).repository(f"{ORG}/{REPO}")
    shell = repo.shell()
    with pytest.raises(SandboxError, match="exit"), shell as sh:
        sh.run("exit 4")
    with pytest.raises(SandboxError, match="not connected"):
        shell.run("true")
    assert life.cancelled == ["sb-1", "sb-2"]
