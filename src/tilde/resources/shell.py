"""``Repository.shell``: several commands in one interactive sandbox (spec 2.8.4-2.8.6).

The 0.7.2 transport is one long-lived shell behind the terminal WebSocket. The client types
each command followed by marker echoes and reads until the end marker comes back (the frame
and marker logic is in ``tilde._ws_wire``). The sandbox ends when the shell exits: a clean
``with`` exit types ``exit`` and then waits for the sandbox to commit, an exception inside
the block cancels it so nothing is committed.

Behaviour worth knowing:

1. The sandbox is created when ``shell()`` is called; entering the block waits for
   ``running`` (``awaiting_approval`` keeps waiting, a terminal state is a
   ``SandboxError``), connects, and waits up to 30 s for the readiness marker, then drains
   the shell's start-up chatter until 0.5 s of silence.
2. State shared between runs lives in the shell: ``cd`` and variables carry over (unlike
   0.7.9's per-run processes); files under the mountpoint carry over in any case.
3. ``run`` output is stdout and stderr merged, as a terminal shows them, cleaned of ``\\r``
   and CSI escapes, without a final newline. ``check`` defaults to False here (unlike
   ``execute``).
4. Deliberate differences from 0.7.2: a failure while entering (status, handshake,
   readiness) closes the socket and cancels the sandbox instead of leaving it running
   until its timeout; a socket that closes or a shell that exits in the middle of a run
   raises ``SandboxError`` instead of a websockets exception; handshake errors are
   ``SandboxError`` too.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .. import _wire, _ws_wire
from .._values import OutputStream, RunResult
from ..exceptions import CommandError, SandboxError, TildeError
from .sandboxes import Sandbox, describe_end

if TYPE_CHECKING:
    from .._client import Client

_ENTER_STOP_STATES = frozenset({"failed", "cancelled", "committed", "error"})


def _ws_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of the WebSocket layer that mean "the terminal is gone"."""
    from websockets.exceptions import WebSocketException

    return (WebSocketException, OSError, EOFError)


class Shell:
    """An interactive sandbox driven command by command: ``with repo.shell() as sh:``."""

    def __init__(self, client: Client, sandbox: Sandbox) -> None:
        self._client = client
        self._sandbox = sandbox
        self._ws: Any = None

    @property
    def sandbox(self) -> Sandbox:
        return self._sandbox

    @property
    def sandbox_id(self) -> str:
        return self._sandbox.id

    # --- entering ------------------------------------------------------------------------

    def __enter__(self) -> Shell:
        try:
            data = self._sandbox._wait(
                lambda d: d.state == "running" or d.state in _ENTER_STOP_STATES,
                _wire.SANDBOX_POLL_TIMEOUT)
            if data.state != "running":
                raise SandboxError(describe_end(self._sandbox.id, data))
            self._connect()
            self._wait_ready()
        except BaseException:
            self._abandon()
            raise
        return self

    def _connect(self) -> None:
        sb = self._sandbox
        path = _wire.sandbox_terminal_path(sb._org, sb._repo, sb.id)
        try:
            self._ws = self._client._ws_connect(path)
        except _ws_errors() as exc:
            raise SandboxError(f"cannot open the terminal of sandbox {sb.id}: {exc}") from exc

    def _recv(self, timeout: float) -> _ws_wire.Frame | None:
        """One frame, or None after ``timeout`` seconds of silence."""
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

    # --- running -------------------------------------------------------------------------

    def run(self, cmd: str, *, check: bool = False) -> RunResult:
        """Run one command line in the shell; output is stdout+stderr merged."""
        if self._ws is None:
            raise SandboxError("the shell is not connected (use it inside 'with')")
        token = _ws_wire.new_token()
        self._send(_ws_wire.wrap_command(cmd, token))
        transcript = _ws_wire.Transcript(watch=(_ws_wire.end_marker(token),))
        deadline = time.monotonic() + _ws_wire.RUN_TIMEOUT
        while not _ws_wire.run_finished(transcript, token):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError(
                    f"command did not finish within {_ws_wire.RUN_TIMEOUT:.0f} s: {cmd}")
            frame = self._recv(min(_ws_wire.RUN_SLICE, remaining))
            self._check_exit(frame)
            transcript.feed(frame)
        outcome = _ws_wire.parse_run(transcript, cmd, token)
        result = RunResult(stdout=OutputStream(outcome.output.encode("utf-8")),
                           exit_code=outcome.exit_code)
        if check and result.exit_code != 0:
            raise CommandError(f"command exited {result.exit_code}: {cmd}", result=result,
                               command=cmd)
        return result

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
        if exc_type is not None:
            self._abandon()
            return
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.send(_ws_wire.encode_stdin(_ws_wire.EXIT_LINE))
        self._close_socket()
        data = self._sandbox._wait(lambda d: d.state in _wire.SANDBOX_TERMINAL_STATES,
                                   _wire.SANDBOX_POLL_TIMEOUT)
        if data.state == "committed":
            return
        if data.state == "awaiting_approval":
            warnings.warn(f"sandbox {self._sandbox.id} awaits approval: {data.web_url}",
                          UserWarning, stacklevel=2)
            return
        raise SandboxError(describe_end(self._sandbox.id, data))

    def __repr__(self) -> str:
        return f"Shell(sandbox_id={self._sandbox.id!r})"
