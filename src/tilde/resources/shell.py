"""``Repository.shell``: several commands in one sandbox, over either of two transports.

Today's protocol (0.7.6+, tilde-api-changes.md 2.9-2.11, 5.5) is a service sandbox: created
with ``mode: "service"``, each ``run()`` opens its own ``/exec`` WebSocket and launches one
process, and a clean ``with`` exit sends ``POST {S}/finish``. The 0.7.2 protocol is one
interactive shell behind ``/terminal``: the client types each command followed by marker
echoes and reads until the end marker comes back (frames and markers: ``tilde._ws_wire``).

Behaviour worth knowing:

1. Choosing the transport: ``/exec`` first. The terminal is used when the create refuses
   ``mode`` (400 or 422), when the first ``/exec`` handshake gets a 404 (the service sandbox
   is deleted and an interactive one created in its place), or when ``cmd=`` names the
   shell to run (a service sandbox has no shell). Either fallback is remembered for the
   client's life (``Client._shell_over_terminal``).
2. Entering waits for ``running`` (polling every second, 300 s at most) and gives up on a
   terminal state of either vocabulary; over the terminal it also connects and waits up to
   30 s for the readiness marker, then drains the start-up chatter until 0.5 s of silence.
3. ``run`` output: ``stdout`` is 0.7.2's, the command's stdout and stderr merged in the
   order written and without the trailing newline; over ``/exec`` the merge is made at the
   source (``tilde._ws_wire`` /exec point 2), over the terminal it is what the terminal
   showed, cleaned of ``\\r`` and CSI escapes. ``stderr`` holds only what the sandbox sent
   on the stderr channel itself. ``check`` defaults to False (unlike ``execute``).
4. State between runs: over ``/exec`` every run is a new process (``cd`` and variables do
   not carry over; ``env=``/``cwd=`` set them for one run); over the terminal they carry
   over, and ``env=``/``cwd=`` apply to one run through a subshell. ``stdin=`` needs
   ``/exec``.
5. Leaving: an exception in the block cancels the sandbox (``DELETE {S}``), so nothing is
   committed. A clean exit ends it (``POST {S}/finish``, or ``exit`` typed into the
   terminal) and then waits for its end as 0.7.2 does, so the commit is visible after the
   block: approval warns (``Sandbox <id> requires approval: <url>``, 0.7.2's text), a
   failure raises ``SandboxError``.
6. Deliberate differences from 0.7.2: a failure while entering cancels the sandbox instead
   of leaving it running until its timeout; a socket that closes mid-run, a shell that exits
   mid-run and refused handshakes raise ``SandboxError`` instead of websockets exceptions.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .. import _wire, _ws_wire
from .._values import OutputStream, RunResult, SandboxStatusData
from ..exceptions import APIError, CommandError, SandboxError, TildeError
from .sandboxes import Sandbox, Sandboxes, describe_end

if TYPE_CHECKING:
    from .._client import Client


def _ws_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of the WebSocket layer that mean "the socket is gone"."""
    from websockets.exceptions import WebSocketException

    return (WebSocketException, OSError, EOFError)


def _handshake_status(exc: BaseException) -> int | None:
    """The HTTP status of a refused WebSocket handshake (websockets 12-14 spell it two ways)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


class _ExecMissing(Exception):
    """The server has no ``/exec`` route (its handshake answered 404)."""


@dataclass(frozen=True)
class _ShellSpec:
    """What ``shell()`` was asked for, so the sandbox can be created again on a fallback."""

    org: str
    repo: str
    image: str
    env: dict[str, str] | None
    cmd: list[str] | None
    mountpoint: str | None
    path_prefix: str | None
    timeout: int | None

    def create(self, client: Client, *, over_terminal: bool) -> Sandbox:
        sandboxes = Sandboxes(client, self.org, self.repo)
        if over_terminal:
            return sandboxes._create(image=self.image, command=self.cmd, interactive=True,
                                     env=self.env, mountpoint=self.mountpoint,
                                     path_prefix=self.path_prefix,
                                     timeout_seconds=self.timeout)
        return sandboxes._create(image=self.image, mode="service", env=self.env,
                                 mountpoint=self.mountpoint, path_prefix=self.path_prefix,
                                 timeout_seconds=self.timeout)


def open_shell(client: Client, spec: _ShellSpec) -> Shell:
    """``Repository.shell``: create the sandbox now, on the transport point 1 picks."""
    if spec.cmd is not None or client._shell_over_terminal:
        return Shell(client, spec, spec.create(client, over_terminal=True), over_terminal=True)
    try:
        sandbox = spec.create(client, over_terminal=False)
    except APIError as err:
        if err.status_code not in (400, 422):
            raise
        sandbox = spec.create(client, over_terminal=True)  # the same refusal raises again
        client._shell_over_terminal = True
        return Shell(client, spec, sandbox, over_terminal=True)
    return Shell(client, spec, sandbox, over_terminal=False)


class Shell:
    """Commands in one sandbox: ``with repo.shell() as sh: sh.run("...")``."""

    def __init__(self, client: Client, spec: _ShellSpec, sandbox: Sandbox, *,
                 over_terminal: bool) -> None:
        self._client = client
        self._spec = spec
        self._sandbox = sandbox
        self._over_terminal = over_terminal
        self._ws: Any = None  # the terminal socket
        self._active = False
        self._exec_runs = 0

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox (a new one after a fallback to the terminal, point 1)."""
        return self._sandbox

    @property
    def sandbox_id(self) -> str:
        return self._sandbox.id

    # --- entering ------------------------------------------------------------------------

    def __enter__(self) -> Shell:
        try:
            self._wait_running()
            if self._over_terminal:
                self._connect_terminal()
        except BaseException:
            self._abandon()
            raise
        self._active = True
        return self

    def _wait_running(self) -> None:
        data = self._sandbox._wait(lambda d: d.state == "running" or _wire.sandbox_ended(d),
                                   _wire.SANDBOX_POLL_TIMEOUT)
        if data.state != "running":
            raise SandboxError(describe_end(self._sandbox.id, data))

    def _connect_terminal(self) -> None:
        sb = self._sandbox
        path = _wire.sandbox_terminal_path(sb._org, sb._repo, sb.id)
        try:
            self._ws = self._client._ws_connect(path)
        except _ws_errors() as exc:
            raise SandboxError(f"cannot open the terminal of sandbox {sb.id}: {exc}") from exc
        self._wait_ready()

    def _fall_back_to_terminal(self) -> None:
        """Point 1: the server has no ``/exec``; an interactive sandbox replaces this one."""
        with contextlib.suppress(TildeError, OSError):
            self._sandbox.cancel()
        self._over_terminal = True
        self._sandbox = self._spec.create(self._client, over_terminal=True)
        try:
            self._wait_running()
            self._connect_terminal()
        except BaseException:
            self._active = False
            self._abandon()
            raise
        self._client._shell_over_terminal = True  # remembered once the terminal works

    # --- running -------------------------------------------------------------------------

    def run(self, cmd: str | list[str], *, env: dict[str, str] | None = None,
            cwd: str | None = None, stdin: bytes | None = None,
            check: bool = False) -> RunResult:
        """Run one command (a string goes through ``sh -c``, a list is the argv).

        ``stdout`` is stdout and stderr merged (point 3); ``env`` and ``cwd`` apply to this
        run only; ``stdin`` is fed to the command and then closed (``/exec`` only).
        """
        if not self._active:
            raise SandboxError("the shell is not connected (use it inside 'with')")
        if not self._over_terminal:
            try:
                result = self._exec_run(cmd, env, cwd, stdin)
            except _ExecMissing:
                # a 404 means "no /exec route" only from a sandbox that is still running
                if self._exec_runs or self._sandbox.status().state != "running":
                    raise SandboxError(
                        f"the /exec route of sandbox {self._sandbox.id} went away") from None
                self._fall_back_to_terminal()
                result = self._terminal_run(cmd, env, cwd, stdin)
            else:
                self._exec_runs += 1
        else:
            result = self._terminal_run(cmd, env, cwd, stdin)
        if check and result.exit_code != 0:
            text = cmd if isinstance(cmd, str) else " ".join(cmd)
            raise CommandError(f"command exited {result.exit_code}: {text}", result=result,
                               command=cmd)
        return result

    def _exec_run(self, cmd: str | list[str], env: dict[str, str] | None, cwd: str | None,
                  stdin: bytes | None) -> RunResult:
        """One ``/exec`` WebSocket: launch, stdin, then frames until the exit frame."""
        sb = self._sandbox
        try:
            ws = self._client._ws_connect(_wire.sandbox_exec_path(sb._org, sb._repo, sb.id))
        except _ws_errors() as exc:
            if _handshake_status(exc) == 404:
                raise _ExecMissing from exc
            raise SandboxError(f"cannot open /exec of sandbox {sb.id}: {exc}") from exc
        out, err = bytearray(), bytearray()
        code = -1
        try:
            ws.send(_ws_wire.encode_launch(_ws_wire.merged_argv(cmd), env, cwd))
            if stdin is not None:
                for message in _ws_wire.encode_exec_stdin(stdin):
                    ws.send(message)
            deadline = time.monotonic() + _ws_wire.EXEC_RUN_TIMEOUT
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SandboxError(
                        f"command did not finish within {_ws_wire.EXEC_RUN_TIMEOUT:.0f} s: "
                        f"{cmd}")
                try:
                    received = ws.recv(timeout=min(remaining, _ws_wire.EXEC_RECV_SLICE))
                except TimeoutError:
                    continue
                frame = _ws_wire.decode_exec_frame(received)
                if frame is None:
                    continue
                if frame.kind == _ws_wire.EXEC_STDOUT:
                    out += frame.payload
                elif frame.kind == _ws_wire.EXEC_STDERR:
                    err += frame.payload
                elif frame.kind == _ws_wire.EXEC_EXIT:
                    code = _ws_wire.exec_exit_code(frame.payload)
                    break
        except _ws_errors() as exc:
            raise SandboxError(
                f"/exec of sandbox {sb.id} closed before the command ended: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                ws.close()
        return RunResult(stdout=OutputStream(_ws_wire.exec_output(bytes(out))), exit_code=code,
                         stderr=OutputStream(bytes(err)))

    def _recv(self, timeout: float) -> _ws_wire.Frame | None:
        """One terminal frame, or None after ``timeout`` seconds of silence."""
        try:
            message = self._ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        except _ws_errors() as exc:
            self._ws = None
            raise SandboxError(
                f"terminal of sandbox {self._sandbox.id} closed: {exc}") from exc
        frame = _ws_wire.decode_frame(message)
        return frame if frame is not None else _ws_wire.Frame(-1, b"")

    def _send(self, text: str) -> None:
        try:
            self._ws.send(_ws_wire.encode_stdin(text))
        except _ws_errors() as exc:
            self._ws = None
            raise SandboxError(
                f"terminal of sandbox {self._sandbox.id} closed: {exc}") from exc

    def _wait_ready(self) -> None:
        token = _ws_wire.new_token()
        self._send(_ws_wire.readiness_probe(token))
        marker = _ws_wire.ready_marker(token)
        transcript = _ws_wire.Transcript(watch=(marker,))
        deadline = time.monotonic() + _ws_wire.READY_TIMEOUT
        while not transcript.has_line_ending_with(marker):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError(
                    f"the shell of sandbox {self._sandbox.id} did not answer within "
                    f"{_ws_wire.READY_TIMEOUT:.0f} s")
            frame = self._recv(min(_ws_wire.READY_SLICE, remaining))
            self._check_exit(frame)
            transcript.feed(frame)
        # Drain the rest of the start-up output (prompts, the echo of the probe).
        while True:
            frame = self._recv(_ws_wire.DRAIN_SILENCE)
            if frame is None or frame.kind != _ws_wire.OUTPUT:
                break

    def _check_exit(self, frame: _ws_wire.Frame | None) -> None:
        if frame is not None and frame.kind == _ws_wire.EXIT:
            code = frame.exit_code()
            self._ws = None
            raise SandboxError(f"the shell of sandbox {self._sandbox.id} exited "
                               f"(exit code {code}) before the command finished")

    def _terminal_run(self, cmd: str | list[str], env: dict[str, str] | None,
                      cwd: str | None, stdin: bytes | None) -> RunResult:
        if stdin is not None:
            raise SandboxError("stdin= needs the /exec transport, which this server lacks")
        if self._ws is None:
            raise SandboxError("the shell is not connected (use it inside 'with')")
        line = _ws_wire.terminal_command(cmd, env, cwd)
        token = _ws_wire.new_token()
        self._send(_ws_wire.wrap_command(line, token))
        transcript = _ws_wire.Transcript(watch=(_ws_wire.end_marker(token),))
        deadline = time.monotonic() + _ws_wire.RUN_TIMEOUT
        while not _ws_wire.run_finished(transcript, token):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError(
                    f"command did not finish within {_ws_wire.RUN_TIMEOUT:.0f} s: {line}")
            frame = self._recv(min(_ws_wire.RUN_SLICE, remaining))
            self._check_exit(frame)
            transcript.feed(frame)
        outcome = _ws_wire.parse_run(transcript, line, token)
        return RunResult(stdout=OutputStream(outcome.output.encode("utf-8")),
                         exit_code=outcome.exit_code)

    # --- leaving -------------------------------------------------------------------------

    def _close_socket(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()

    def _abandon(self) -> None:
        """Close the terminal and cancel the sandbox, keeping the caller's exception."""
        self._close_socket()
        with contextlib.suppress(TildeError, OSError):
            self._sandbox.cancel()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._active:
            return  # a failed fallback already cancelled the sandbox
        self._active = False
        if exc_type is not None:
            self._abandon()
            return
        if self._over_terminal:
            if self._ws is not None:
                with contextlib.suppress(Exception):
                    self._ws.send(_ws_wire.encode_stdin(_ws_wire.EXIT_LINE))
            self._close_socket()
        else:
            self._sandbox.finish()
        data = self._sandbox._wait(_wire.sandbox_ended, _wire.SANDBOX_POLL_TIMEOUT)
        self._outcome(data)

    def _outcome(self, data: SandboxStatusData) -> None:
        if _wire.sandbox_awaits_approval(data):
            warnings.warn(f"Sandbox {self._sandbox.id} requires approval: {data.web_url}",
                          UserWarning, stacklevel=3)
            return
        if _wire.sandbox_ended_well(data):
            return
        raise SandboxError(describe_end(self._sandbox.id, data))

    def __repr__(self) -> str:
        return f"Shell(sandbox_id={self._sandbox.id!r})"
