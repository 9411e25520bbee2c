"""The shell's terminal transport against a real POSIX shell behind a local WebSocket.

Not a stand-in for tilde-server (the behaviour tests in tests/sandbox run against the real
one): this pins the 0.7.2 frame and marker protocol of 2.8.4-2.8.6 on its own, with a pipe
shell (no PTY, like the spec allows) and with a shell that echoes its input and prints a
prompt, the two ways a server may wire the terminal. Status and create calls go to an
httpx.MockTransport that plays the sandbox lifecycle.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.sync.server import ServerConnection, serve

from tilde import Client, _ws_wire
from tilde.exceptions import CommandError, SandboxError

ORG, REPO, SB = "o", "r", "sb-1"


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


@dataclass
class Lifecycle:
    """Sandbox status as the server would report it: starting, running, then an end."""

    end_state: str = "committed"
    polls_before_running: int = 1
    polls: int = 0
    cancelled: bool = False
    created: list[Any] = field(default_factory=list)
    terminal: Terminal | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        base = f"/api/v1/organizations/{ORG}/repositories/{REPO}/sandboxes"
        if request.method == "POST" and path == base:
            import json

            self.created.append(json.loads(request.content))
            return httpx.Response(201, json={"sandbox_id": SB})
        if request.method == "DELETE" and path == f"{base}/{SB}":
            self.cancelled = True
            return httpx.Response(204)
        if path == f"{base}/{SB}/status":
            self.polls += 1
            if self.cancelled:
                state = "cancelled"
            elif self.terminal is not None and self.terminal.exit_codes:
                state = self.end_state
            elif self.polls > self.polls_before_running:
                state = "running"
            else:
                state = "starting"
            return httpx.Response(200, json={"status": state, "exit_code": None,
                                             "web_url": "http://review/1"})
        return httpx.Response(404, json={"message": f"unexpected {request.method} {path}"})


@pytest.fixture
def terminal_server() -> Iterator[tuple[str, Terminal]]:
    terminal = Terminal()
    with serve(terminal, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}", terminal
        server.shutdown()


def _client(endpoint: str, life: Lifecycle) -> Client:
    return Client(endpoint_url=endpoint, api_key="k",
                  httpx_client=httpx.Client(transport=httpx.MockTransport(life)))


@pytest.mark.parametrize("echo", [False, True])
def test_runs_keep_shell_state_and_report_exit_codes(
        terminal_server: tuple[str, Terminal], echo: bool) -> None:
    endpoint, terminal = terminal_server
    terminal.echo = echo
    life = Lifecycle(terminal=terminal)
    repo = _client(endpoint, life).repository(f"{ORG}/{REPO}")
    with repo.shell(image="python-312", env={"A": "1"}, timeout=60) as sh:
        r = sh.run("echo hello; echo oops >&2")
        assert r.exit_code == 0 and r.stdout.text() == "hello\noops", r.stdout.text()
        sh.run("cd /tmp && X=42")
        r = sh.run("pwd; echo $X")
        assert list(r.stdout.iter_lines()) == ["/tmp", "42"]
        r = sh.run("printf 'no newline'")
        assert r.stdout.read() == b"no newline"
        r = sh.run("sh -c 'exit 3'")
        assert r.exit_code == 3 and r.stdout.text() == ""
        with pytest.raises(CommandError) as info:
            sh.run("false", check=True)
        assert info.value.result.exit_code == 1 and info.value.command == "false"
    assert life.created == [{"image": "python-312", "interactive": True, "env_vars": {"A": "1"},
                             "timeout_seconds": 60}]
    # stdin exactly as 0.7.2 types it: probe first, the wrapped commands, then exit.
    typed = b"".join(terminal.received).decode()
    assert typed.startswith("export TERM=dumb; stty -echo cols 32767; echo '__TILDE_READY_")
    assert typed.endswith("exit\n")
    assert terminal.exit_codes == [0] and not life.cancelled


def test_exception_in_block_cancels(terminal_server: tuple[str, Terminal]) -> None:
    endpoint, terminal = terminal_server
    life = Lifecycle(terminal=terminal)
    repo = _client(endpoint, life).repository(f"{ORG}/{REPO}")
    with pytest.raises(RuntimeError, match="boom"), repo.shell() as sh:
        sh.run("true")
        raise RuntimeError("boom")
    assert life.cancelled
    assert life.created[0]["image"] == "ubuntu"


def test_failed_end_raises_and_approval_warns(terminal_server: tuple[str, Terminal]) -> None:
    endpoint, terminal = terminal_server
    life = Lifecycle(terminal=terminal, end_state="failed")
    repo = _client(endpoint, life).repository(f"{ORG}/{REPO}")
    with pytest.raises(SandboxError, match="failed"), repo.shell() as sh:
        sh.run("true")
    terminal.exit_codes.clear()
    life = Lifecycle(terminal=terminal, end_state="awaiting_approval")
    repo = _client(endpoint, life).repository(f"{ORG}/{REPO}")
    with pytest.warns(UserWarning, match="http://review/1"), repo.shell() as sh:
        sh.run("true")


def test_shell_that_exits_mid_run_is_a_sandbox_error(
        terminal_server: tuple[str, Terminal]) -> None:
    endpoint, terminal = terminal_server
    life = Lifecycle(terminal=terminal, end_state="committed")
    repo = _client(endpoint, life).repository(f"{ORG}/{REPO}")
    shell = repo.shell()
    with pytest.raises(SandboxError, match="exit"), shell as sh:
        sh.run("exit 4")
    with pytest.raises(SandboxError, match="not connected"):
        shell.run("true")
    assert life.cancelled


def test_sandbox_that_never_runs_is_cancelled_and_raises(
        terminal_server: tuple[str, Terminal]) -> None:
    endpoint, _ = terminal_server
    life = Lifecycle(polls_before_running=0)
    life.cancelled = True  # status says cancelled from the start
    repo = _client(endpoint, life).repository(f"{ORG}/{REPO}")
    with pytest.raises(SandboxError, match="cancelled"), repo.shell():
        pass
