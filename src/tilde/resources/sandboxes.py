"""Sandboxes: create, list, status, cancel, logs, and one-shot ``execute`` (spec 2.8, 3.6).

A sandbox runs against its own new session on the server: a clean end commits it, a
failure or cancel rolls it back. The client only starts sandboxes and watches them; it
never commits anything itself.

Behaviour worth knowing:

1. Status is polled (at once, then every second) until a terminal state of either
   vocabulary: 0.7.2's ``committed``, ``awaiting_approval``, ``error``, ``failed``,
   ``cancelled`` or 0.7.9's ``done``, ``errored``, ``failed``, ``cancelled`` (the server
   chooses by User-Agent; ``tilde._wire.sandboxes`` point 3). Anything else means "not yet".
2. ``execute`` gives up polling after 300 s as 0.7.2 does, or after the sandbox's own
   ``timeout`` plus a minute when that is longer (0.7.2 would give up on a sandbox it was
   told may run longer; the server enforces the timeout anyway).
3. ``execute``'s output is the merged ``logs/stdout`` read once the sandbox is over; a
   failure to read it gives empty output (the exit code still tells the story).
4. ``check=True`` raises ``CommandError`` (result and command attached) on a non-zero
   exit. A sandbox that ended ``failed`` or ``cancelled`` never produced an exit code of
   its command: with ``check=True`` that is a ``CommandError`` too (exit code -1, the
   message naming the state and reason), with ``check=False`` a plain ``SandboxError``,
   because there is no command result to hand back. 0.7.2 returns exit code -1 there.
5. An end that waits for approval (``awaiting_approval``, or ``done`` with that reason)
   warns with 0.7.9's text, ``Approval required - review and approve at: <url>``, and
   returns the result.
"""

from __future__ import annotations

import builtins
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx

from .. import _wire
from .._values import OutputStream, RunResult, SandboxStatusData
from ..exceptions import CommandError, SandboxError, TildeError, TransportError

if TYPE_CHECKING:
    from .._client import Client


class LogStream:
    """A sandbox log, streamed line by line: ``with status.stdout() as log: for line in log``.

    Entering sends the GET; iterating yields text lines without endings. The server returns
    what has been logged so far and ends the response (it does not follow the log).
    """

    def __init__(self, client: Client, wire: _wire.WireRequest) -> None:
        self._client = client
        self._wire = wire
        self._response: httpx.Response | None = None

    def __enter__(self) -> LogStream:
        self._response = self._client._send(self._wire, stream=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def __iter__(self) -> Iterator[str]:
        if self._response is None:
            raise RuntimeError("LogStream must be used inside a 'with' block")
        try:
            yield from self._response.iter_lines()
        except httpx.TransportError as exc:
            raise TransportError(f"reading {self._wire.path} failed: {exc}", exc) from exc


class SandboxStatus:
    """One reading of ``GET {S}/status``; ``state`` is the wire's ``status`` field."""

    def __init__(self, client: Client, org: str, repo: str, sandbox_id: str,
                 data: SandboxStatusData) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self._sandbox_id = sandbox_id
        self.state = data.state
        self.status_reason = data.status_reason
        self.exit_code = data.exit_code
        self.commit_id = data.commit_id
        self.web_url = data.web_url
        self.error_message = data.error_message

    def _data(self) -> SandboxStatusData:
        return SandboxStatusData(state=self.state, status_reason=self.status_reason,
                                 exit_code=self.exit_code)

    # 0.7.9's helpers, true in either vocabulary (module docstring, point 1)

    @property
    def is_terminal(self) -> bool:
        return _wire.sandbox_ended(self._data())

    @property
    def is_active(self) -> bool:
        return self.state in _wire.SANDBOX_ACTIVE_STATES

    @property
    def is_committed(self) -> bool:
        return _wire.sandbox_committed(self._data())

    @property
    def is_awaiting_approval(self) -> bool:
        return _wire.sandbox_awaits_approval(self._data())

    @property
    def has_no_changes(self) -> bool:
        return _wire.sandbox_without_changes(self._data())

    def stdout(self) -> LogStream:
        """The merged stdout+stderr log so far."""
        return LogStream(self._client,
                         _wire.sandbox_stdout_log(self._org, self._repo, self._sandbox_id))

    def network(self) -> LogStream:
        """The outbound network log so far, one JSON object per line."""
        return LogStream(self._client,
                         _wire.sandbox_network_log(self._org, self._repo, self._sandbox_id))

    def __repr__(self) -> str:
        extra = f", status_reason={self.status_reason!r}" if self.status_reason else ""
        return f"SandboxStatus(state={self.state!r}{extra}, exit_code={self.exit_code!r})"


class Sandbox:
    """A handle on one sandbox; sends nothing until a method is called."""

    def __init__(self, client: Client, org: str, repo: str, sandbox_id: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self.id = sandbox_id

    def _status_data(self) -> SandboxStatusData:
        return _wire.parse_sandbox_status(self._client._call(
            _wire.sandbox_status(self._org, self._repo, self.id)))

    def status(self) -> SandboxStatus:
        return SandboxStatus(self._client, self._org, self._repo, self.id, self._status_data())

    def cancel(self) -> None:
        """Stop the sandbox and discard its changes (``DELETE {S}``)."""
        self._client._send(_wire.cancel_sandbox(self._org, self._repo, self.id)).close()

    def delete(self) -> None:
        """Same as ``cancel``."""
        self.cancel()

    def finish(self) -> None:
        """End a service sandbox well (``POST {S}/finish``): its changes get committed.

        The server may commit after answering; ``status()`` tells when it has.
        """
        self._client._send(_wire.finish_sandbox(self._org, self._repo, self.id)).close()

    def _wait(self, done: Callable[[SandboxStatusData], bool],
              timeout: float) -> SandboxStatusData:
        """Poll at once and then every second until ``done``; ``SandboxError`` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            data = self._status_data()
            if done(data):
                return data
            if time.monotonic() + _wire.SANDBOX_POLL_INTERVAL > deadline:
                raise SandboxError(
                    f"sandbox {self.id} still {data.state or 'unknown'!s} after {timeout:.0f} s")
            time.sleep(_wire.SANDBOX_POLL_INTERVAL)

    def _read_stdout(self) -> bytes:
        """The whole merged log, or b"" if it cannot be read (2.8.5 step 3)."""
        try:
            response = self._client._send(
                _wire.sandbox_stdout_log(self._org, self._repo, self.id))
            return response.content
        except (TildeError, httpx.HTTPError):
            return b""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sandbox):
            return NotImplemented
        return (self._org, self._repo, self.id) == (other._org, other._repo, other.id)

    def __hash__(self) -> int:
        return hash((self._org, self._repo, self.id))

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r})"


def describe_end(sandbox_id: str, data: SandboxStatusData) -> str:
    """A one-line account of how a sandbox ended, for exception messages."""
    text = f"sandbox {sandbox_id} ended {data.state}"
    if data.status_reason:
        text += f" ({data.status_reason})"
    if data.exit_code is not None:
        text += f", exit code {data.exit_code}"
    if data.error_message:
        text += f": {data.error_message}"
    return text


class Sandboxes:
    """The sandboxes of one repository."""

    def __init__(self, client: Client, org: str, repo: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo

    def _handle(self, sandbox_id: str) -> Sandbox:
        return Sandbox(self._client, self._org, self._repo, sandbox_id)

    def list(self, *, after: str | None = None) -> Iterator[Sandbox]:
        return self._client._paginate(
            lambda cursor: _wire.list_sandboxes(self._org, self._repo, after=cursor),
            lambda d: self._handle(_wire.parse_sandbox_list_item(d)), after)

    def get(self, sandbox_id: str) -> Sandbox:
        """Handle by id; sends no request."""
        if not sandbox_id:
            raise ValueError("sandbox_id must not be empty")
        return self._handle(sandbox_id)

    def create(self, *, image: str, command: builtins.list[str] | None = None,
               env: dict[str, str] | None = None, mountpoint: str | None = None,
               path_prefix: str | None = None, timeout_seconds: int | None = None,
               run_as: dict[str, str] | None = None) -> Sandbox:
        """Start a one-shot sandbox and return at once (poll ``status()`` to follow it)."""
        return self._create(image=image, command=command, env=env, mountpoint=mountpoint,
                            path_prefix=path_prefix, timeout_seconds=timeout_seconds,
                            run_as=run_as)

    def _create(self, *, image: str, command: builtins.list[str] | None = None,
                interactive: bool = False, mode: str | None = None,
                env: dict[str, str] | None = None,
                mountpoint: str | None = None, path_prefix: str | None = None,
                timeout_seconds: int | None = None,
                run_as: dict[str, str] | None = None) -> Sandbox:
        body = self._client._call(_wire.create_sandbox(
            self._org, self._repo, image=image, command=command, interactive=interactive,
            mode=mode, env_vars=env, mountpoint=mountpoint, path_prefix=path_prefix,
            timeout_seconds=timeout_seconds, run_as=run_as))
        if not isinstance(body, dict) or "sandbox_id" not in body:
            raise KeyError("sandbox_id")
        return self._handle(_wire.parse_sandbox_id(body))


def poll_timeout(timeout: int | None) -> float:
    """How long to wait for a sandbox to end (see the module docstring, point 2)."""
    if timeout is None:
        return _wire.SANDBOX_POLL_TIMEOUT
    return max(_wire.SANDBOX_POLL_TIMEOUT, float(timeout) + 60.0)


def execute(client: Client, org: str, repo: str, command: str | list[str], *,
            image: str | None = None, env: dict[str, str] | None = None,
            timeout: int | None = None, check: bool = True, mountpoint: str | None = None,
            path_prefix: str | None = None) -> RunResult:
    """``Repository.execute``: run one command in a new sandbox and wait for its end."""
    argv = _wire.command_argv(command)
    if not argv:
        raise ValueError("command must not be empty")
    sandbox = Sandboxes(client, org, repo)._create(
        image=client.default_sandbox_image if image is None else image, command=argv,
        env=env, mountpoint=mountpoint, path_prefix=path_prefix, timeout_seconds=timeout)
    data = sandbox._wait(_wire.sandbox_ended, poll_timeout(timeout))
    result = RunResult(stdout=OutputStream(sandbox._read_stdout()),
                       exit_code=-1 if data.exit_code is None else data.exit_code)
    if _wire.sandbox_awaits_approval(data):
        warnings.warn(f"Approval required - review and approve at: {data.web_url}",
                      UserWarning, stacklevel=3)
    no_exit = _wire.sandbox_without_exit_code(data)
    if no_exit and not check:
        raise SandboxError(describe_end(sandbox.id, data))
    if check and (result.exit_code != 0 or no_exit):
        raise CommandError(describe_end(sandbox.id, data), result=result, command=command)
    return result

