"""What every ``tilde`` command shares: settings, the client, output, errors and exit codes.

1. Settings resolve once per invocation, in the client's order (``--endpoint-url`` /
   ``--api-key`` > environment > ``~/.tilde/config.yaml``); the ``Client`` and the
   ``tilde://`` filesystem are built lazily from them, so ``--help`` and ``auth login``
   never touch the network or need a key.
2. Every failure is one line on stderr starting with ``tilde:`` and a documented exit
   status (docs/cli.md). ``run_command`` is the one place that turns exceptions into that
   line, so commands raise and never print errors themselves. An exception nobody
   expected still gets one line (its type and message) rather than a traceback.
3. Secrets: the key is never printed; ``mask`` shows its ends only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from .. import _config, _wire
from ..exceptions import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    SandboxError,
    TildeError,
    TransportError,
)

if TYPE_CHECKING:
    from .._client import Client
    from ..fsspec import TildeFileSystem

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_APPROVAL = 3
EXIT_AUTH = 4
EXIT_NO_EXIT_CODE = 125
EXIT_INTERRUPTED = 130

T = TypeVar("T")


class CLIError(Exception):
    """A failure with its message and exit status, raised by commands."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def usage_error(message: str) -> CLIError:
    return CLIError(message, EXIT_USAGE)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"tilde: {message}", err=True)
    sys.exit(code)


def mask(key: str) -> str:
    """``tk-…Qx2A``: enough to tell keys apart, never enough to use one."""
    if len(key) <= 12:
        return "…"
    head = key[:key.index("-") + 1] if "-" in key[:5] else key[:4]
    return f"{head}…{key[-4:]}"


@dataclass
class State:
    """Per-invocation settings and the lazily made client and filesystem (point 1)."""

    endpoint_flag: str | None = None
    key_flag: str | None = None
    _client: Client | None = None
    _fs: dict[str | None, TildeFileSystem] = field(default_factory=dict)

    def settings(self) -> _config.Settings:
        return _config.resolve(endpoint_url=self.endpoint_flag, api_key=self.key_flag)

    def require_key(self) -> _config.Settings:
        s = self.settings()
        if not s.api_key and not s.credentials_uri:
            raise CLIError(f"{s.endpoint_url} needs an API key: run `tilde auth login`, set "
                           "TILDE_API_KEY or pass --api-key", EXIT_AUTH)
        return s

    def client(self) -> Client:
        if self._client is None:
            from .._client import Client

            s = self.require_key()
            self._client = Client(endpoint_url=s.endpoint_url,
                                  api_key=s.api_key if s.api_key else None,
                                  extra_user_agent="tilde-cli")
        return self._client

    def fs(self, session_id: str | None = None) -> TildeFileSystem:
        """The ``tilde://`` filesystem; with ``session_id`` its writes stage in that session
        and are committed by the caller."""
        if session_id not in self._fs:
            from ..fsspec import TildeFileSystem

            s = self.require_key()
            self._fs[session_id] = TildeFileSystem(
                api_key=s.api_key, endpoint_url=s.endpoint_url, session_id=session_id,
                skip_instance_cache=True)
        return self._fs[session_id]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def state() -> State:
    ctx = click.get_current_context()
    st = ctx.find_object(State)
    if st is None:  # pragma: no cover - the group always sets it
        raise RuntimeError("no CLI state")
    return st


def split_repo(text: str) -> tuple[str, str]:
    """``ORG/REPO`` (a ``tilde://`` prefix is allowed) or a usage error."""
    bare = _wire.strip_scheme(text).strip("/")
    if bare.count("/") != 1:
        raise usage_error(f"{text!r} is not a repository path (expected ORG/REPO)")
    try:
        return _wire.split_repo_path(bare)
    except ValueError:
        raise usage_error(f"{text!r} is not a repository path (expected ORG/REPO)") from None


# --- output --------------------------------------------------------------------------------

def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, ensure_ascii=False))


def emit_table(rows: list[tuple[str, str]]) -> None:
    width = max((len(k) for k, _ in rows), default=0) + 2
    for k, v in rows:
        click.echo(f"{k + ':':<{width}}{v}")


# --- errors --------------------------------------------------------------------------------

def _api_line(err: APIError) -> str:
    text = err.message or f"HTTP {err.status_code}"
    where = f"{err.method} {err.url}" if getattr(err, "url", None) else ""
    return f"{text} ({err.status_code}{', ' + where if where else ''})"


def _root_cause(exc: BaseException) -> BaseException:
    """An fsspec OSError raised from an APIError: the APIError decides the exit status."""
    seen = exc
    while not isinstance(seen, TildeError):
        nxt = seen.__cause__ or seen.__context__
        if nxt is None:
            break
        seen = nxt
    return seen if isinstance(seen, TildeError) else exc


def describe(exc: BaseException) -> tuple[str, int]:
    """(one line, exit status) for an exception that reached the command line."""
    if isinstance(exc, CLIError):
        return exc.message, exc.code
    cause = _root_cause(exc)
    if isinstance(cause, AuthenticationError):
        return f"the API key was refused: {_api_line(cause)}", EXIT_AUTH
    if isinstance(exc, OSError) and not isinstance(exc, TildeError):
        name = exc.filename if exc.filename is not None else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        return (f"{name}: {reason}" if name else reason), EXIT_ERROR
    if isinstance(cause, APIError):
        return _api_line(cause), EXIT_ERROR
    if isinstance(cause, ConfigurationError):
        return str(cause), EXIT_AUTH if "key" in str(cause).lower() else EXIT_ERROR
    if isinstance(cause, TransportError):
        return f"cannot reach the endpoint: {cause.message}", EXIT_ERROR
    if isinstance(cause, SandboxError):  # the sandbox, not the command, failed
        return str(cause) or type(cause).__name__, EXIT_NO_EXIT_CODE
    if isinstance(cause, TildeError):
        return str(cause) or type(cause).__name__, EXIT_ERROR
    if isinstance(exc, ValueError):
        return str(exc), EXIT_USAGE
    return f"unexpected {type(exc).__name__}: {exc}", EXIT_ERROR


def run_command(body: Callable[[], T]) -> T:
    """Run a command's body; any failure becomes one line and an exit status (point 2)."""
    try:
        return body()
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
        raise
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # `tilde cat … | head`: the reader left, not an error
        sys.stderr.close()
        sys.exit(EXIT_OK)
    except Exception as exc:  # point 2: one line, never a traceback
        message, code = describe(exc)
        fail(message, code)

