"""``tilde sandbox run|logs|info|cancel|list`` and ``tilde shell``.

1. Streaming: the service's log route answers with what has been logged so far and ends
   (no long poll), so following a sandbox is a loop: read the status, read the log, write
   what is new, sleep. The request asks for ``Range: bytes=N-``; a server that honours it
   (206) sends only the new part, one that does not (200) sends all of it and the part
   already written is skipped. The last read comes after the status turned terminal, so
   nothing the command wrote is lost.
2. Exit status: the command's own; 125 when the sandbox ended without one (cancelled,
   failed, over a limit, lost), with the reason on stderr; 130 after Ctrl-C, which cancels
   the sandbox first so nothing gets committed.
3. ``shell`` is line-oriented (no pseudo-terminal): each line is one process in the same
   service sandbox (``Repository.shell``); ``cd`` and ``export`` are remembered here and
   passed as ``cwd``/``env`` to the lines after them, since every line is a new process.
"""

from __future__ import annotations

import shlex
import sys
import time
from typing import Any

import click

from .. import _wire
from .._values import SandboxStatusData
from ..exceptions import GoneError
from ..resources.sandboxes import Sandbox, describe_end
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_NO_EXIT_CODE,
    CLIError,
    emit_json,
    emit_table,
    run_command,
    split_repo,
    state,
    usage_error,
)

POLL = 0.5

REPO = click.option("-r", "--repository", "repo_path", required=True, metavar="ORG/REPO",
                    help="The repository the sandbox works on.")


def _env(pairs: tuple[str, ...]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise usage_error(f"-e {item!r}: expected KEY=VALUE")
        out[name] = value
    return out or None


def _sandbox(repo_path: str, sandbox_id: str) -> Sandbox:
    org, name = split_repo(repo_path)
    return state().client().repository(f"{org}/{name}").sandboxes.get(sandbox_id)


class _LogFollower:
    """Writes the new part of a sandbox's log to stdout on each ``pump`` (point 1)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox
        self.offset = 0
        self.gone = False

    def pump(self) -> None:
        if self.gone:
            return
        wire = _wire.sandbox_stdout_log(self._sb._org, self._sb._repo, self._sb.id)
        wire = _wire.WireRequest(wire.method, wire.path, wire.params, wire.json,
                                 (*wire.headers, ("Range", f"bytes={self.offset}-")))
        try:
            response = self._sb._client._send(wire, check=False)
        except Exception:  # a missed read is caught up by the next one
            return
        if response.status_code == 410:
            self.gone = True
            return
        if response.status_code == 416:  # nothing new
            return
        if not response.is_success:
            return
        data = response.content
        if response.status_code == 200:
            data = data[self.offset:]
        if data:
            out = sys.stdout.buffer
            out.write(data)
            out.flush()
            self.offset += len(data)


def follow(sandbox: Sandbox, *, logs: bool = True) -> SandboxStatusData:
    """Stream the log until the sandbox ends; returns its final status."""
    follower = _LogFollower(sandbox)
    while True:
        data = sandbox._status_data()
        ended = _wire.sandbox_ended(data)
        if logs and data.state not in ("starting", "pending", "created", "initializing"):
            follower.pump()
        if ended:
            if logs:
                follower.pump()
            return data
        time.sleep(POLL)


def _end_status(sandbox_id: str, data: SandboxStatusData) -> int:
    """Point 2, with the reason on stderr when there is no command exit status."""
    if _wire.sandbox_awaits_approval(data):
        click.echo(f"tilde: the sandbox's changes await approval: {data.web_url}", err=True)
    if _wire.sandbox_without_exit_code(data) or data.exit_code is None:
        click.echo(f"tilde: {describe_end(sandbox_id, data)}", err=True)
        return EXIT_NO_EXIT_CODE
    return int(data.exit_code)


@click.group()
def sandbox() -> None:
    """Run commands against a repository in sandboxes, and follow them."""


_RUN_OPTIONS = [
    click.option("--image", default=None, help="Container image (default: as the client's)."),
    click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE",
                 help="Environment variable for the command (repeatable)."),
    click.option("--timeout", type=click.IntRange(min=1), default=None, metavar="SECONDS",
                 help="Stop the sandbox after this long."),
    click.option("--mountpoint", default=None,
                 help="Where the repository appears (absolute; default /sandbox)."),
    click.option("--path-prefix", default=None,
                 help="Expose only the objects under this prefix."),
    click.option("-d", "--detach", is_flag=True, help="Print the sandbox id and return."),
    click.argument("command", nargs=-1, required=True, metavar="-- CMD..."),
]


def _run_options(f: Any) -> Any:
    for option in reversed(_RUN_OPTIONS):
        f = option(f)
    return f


def run_sandbox(repo_path: str, image: str | None, env: tuple[str, ...], timeout: int | None,
                mountpoint: str | None, path_prefix: str | None, detach: bool,
                command: tuple[str, ...]) -> None:
    """``sandbox run`` and ``exec``: create, then follow to the end (points 1 and 2)."""
    st = state()

    def create() -> Sandbox:
        org, name = split_repo(repo_path)
        client = st.client()
        return client.repository(f"{org}/{name}").sandboxes._create(
            image=image or client.default_sandbox_image, command=list(command),
            env=_env(env), mountpoint=mountpoint, path_prefix=path_prefix,
            timeout_seconds=timeout)

    sb = run_command(create)
    if detach:
        click.echo(sb.id)
        return

    def watch() -> SandboxStatusData:
        try:
            return follow(sb)
        except KeyboardInterrupt:
            _cancel_quietly(sb)
            raise CLIError(f"interrupted; sandbox {sb.id} cancelled, nothing committed",
                           EXIT_INTERRUPTED) from None
    sys.exit(_end_status(sb.id, run_command(watch)))


@sandbox.command("run")
@REPO
@_run_options
def run_cmd(repo_path: str, image: str | None, env: tuple[str, ...], timeout: int | None,
            mountpoint: str | None, path_prefix: str | None, detach: bool,
            command: tuple[str, ...]) -> None:
    """Run CMD in a new sandbox over a session of the repository; stream its output.

    Exits with CMD's exit status (125 when the sandbox ended without one).
    """
    run_sandbox(repo_path, image, env, timeout, mountpoint, path_prefix, detach, command)


@click.command("exec")
@click.argument("repo_path", metavar="ORG/REPO")
@_run_options
def exec_cmd(repo_path: str, image: str | None, env: tuple[str, ...], timeout: int | None,
             mountpoint: str | None, path_prefix: str | None, detach: bool,
             command: tuple[str, ...]) -> None:
    """`tilde exec ORG/REPO -- CMD`: the service CLI's spelling of `sandbox run -r`."""
    run_sandbox(repo_path, image, env, timeout, mountpoint, path_prefix, detach, command)


def _cancel_quietly(sb: Sandbox) -> None:
    try:
        sb.cancel()
    except Exception:  # we are leaving anyway; the server's timeout remains
        pass


@sandbox.command()
@REPO
@click.argument("sandbox_id", metavar="ID")
@click.option("-f", "--follow", "follow_", is_flag=True, help="Follow until the sandbox ends.")
def logs(repo_path: str, sandbox_id: str, follow_: bool) -> None:
    """The sandbox's output (stdout and stderr merged)."""
    def body() -> None:
        sb = _sandbox(repo_path, sandbox_id)
        if follow_:
            follow(sb)
            return
        try:
            response = sb._client._send(_wire.sandbox_stdout_log(sb._org, sb._repo, sb.id))
        except GoneError as err:
            raise CLIError(err.message or "the logs are no longer available") from None
        sys.stdout.buffer.write(response.content)
        sys.stdout.buffer.flush()
    run_command(body)


def _status_json(sandbox_id: str, d: SandboxStatusData) -> dict[str, Any]:
    return {"id": sandbox_id, "state": d.state, "status_reason": d.status_reason or None,
            "exit_code": d.exit_code, "commit_id": d.commit_id or None,
            "web_url": d.web_url or None, "error_message": d.error_message or None}


@sandbox.command()
@REPO
@click.argument("sandbox_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(repo_path: str, sandbox_id: str, as_json: bool) -> None:
    """State, reason, exit status and commit of a sandbox."""
    def body() -> None:
        d = _status_json(sandbox_id, _sandbox(repo_path, sandbox_id)._status_data())
        if as_json:
            emit_json(d)
        else:
            emit_table([(k, "-" if v is None else str(v)) for k, v in d.items()])
    run_command(body)


@sandbox.command()
@REPO
@click.argument("sandbox_id", metavar="ID")
def cancel(repo_path: str, sandbox_id: str) -> None:
    """Stop a sandbox; its session is rolled back."""
    def body() -> None:
        _sandbox(repo_path, sandbox_id).cancel()
        click.echo(f"tilde: cancelled {sandbox_id}", err=True)
    run_command(body)


@sandbox.command("list")
@REPO
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def list_cmd(repo_path: str, as_json: bool) -> None:
    """The repository's sandboxes with their states."""
    def body() -> None:
        org, name = split_repo(repo_path)
        for sb in state().client().repository(f"{org}/{name}").sandboxes.list():
            d = _status_json(sb.id, sb._status_data())
            if as_json:
                emit_json(d)
            else:
                reason = f" ({d['status_reason']})" if d["status_reason"] else ""
                click.echo(f"{sb.id}  {d['state']}{reason}")
    run_command(body)


# --- shell ---------------------------------------------------------------------------------

class _LineShell:
    """Point 3: lines in, output out, ``cd``/``export``/``exit`` handled here."""

    def __init__(self, sh: Any) -> None:
        self.sh = sh
        self.cwd: str | None = None
        self.env: dict[str, str] = {}
        self.status = 0

    def line(self, text: str) -> bool:
        """Run one line; False once the input asked to leave."""
        text = text.strip()
        if not text or text.startswith("#"):
            return True
        try:
            words = shlex.split(text)
        except ValueError:
            words = []
        if words and words[0] == "exit" and len(words) <= 2:
            if len(words) == 2 and words[1].isdigit():
                self.status = int(words[1])
            return False
        if words and words[0] == "cd" and len(words) <= 2:
            target = words[1] if len(words) == 2 else "~"
            self._run(f"cd {shlex.quote(target) if target != '~' else ''} && pwd",
                      keep_cwd=True)
            return True
        if words and words[0] == "export" and len(words) > 1 and all(
                "=" in w for w in words[1:]):
            for w in words[1:]:
                k, _, v = w.partition("=")
                self.env[k] = v
            self.status = 0
            return True
        self._run(text)
        return True

    def _run(self, cmd: str, keep_cwd: bool = False) -> None:
        result = self.sh.run(cmd, env=self.env or None, cwd=self.cwd)
        self.status = result.exit_code
        out = result.stdout.text()
        if keep_cwd:
            if result.exit_code == 0 and out.strip():
                self.cwd = out.strip().splitlines()[-1]
            elif out:
                click.echo(out, err=True)
        elif out:
            click.echo(out)
        err = result.stderr.text() if result.stderr is not None else ""
        if err:
            click.echo(err, err=True)


@click.command()
@click.argument("repo_arg", metavar="[ORG/REPO]", required=False)
@click.option("-r", "--repository", "repo_path", metavar="ORG/REPO",
              help="The repository (or give it as the argument).")
@click.option("--image", default=None, help="Container image (default: as the client's).")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE",
              help="Environment variable for every command (repeatable).")
@click.option("--timeout", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="Stop the sandbox after this long.")
@click.option("--mountpoint", default=None, help="Where the repository appears (absolute).")
def shell(repo_arg: str | None, repo_path: str | None, image: str | None,
          env: tuple[str, ...], timeout: int | None, mountpoint: str | None) -> None:
    """Run command lines in one sandbox, from a prompt or a pipe.

    End of input or `exit` ends the sandbox cleanly (its changes are committed);
    Ctrl-C cancels it. Exits with the last line's status.
    """
    if bool(repo_arg) == bool(repo_path):
        raise click.UsageError("name the repository once: `tilde shell ORG/REPO` or "
                               "`tilde shell -r ORG/REPO`")
    st = state()
    tty = sys.stdin.isatty()
    org_name, name = run_command(lambda: split_repo(repo_arg or repo_path or ""))

    def body() -> int:
        repo = st.client().repository(f"{org_name}/{name}")
        handle = repo.shell(image=image, env=_env(env), timeout=timeout, mountpoint=mountpoint)
        with handle as sh:
            ls = _LineShell(sh)
            if tty:
                click.echo(f"tilde: sandbox {sh.sandbox_id} on {org_name}/{name}; end with "
                           "exit or Ctrl-D (commits), Ctrl-C cancels", err=True)
            while True:
                if tty:
                    sys.stderr.write(f"tilde:{org_name}/{name}$ ")
                    sys.stderr.flush()
                text = sys.stdin.readline()
                if not text:
                    if tty:
                        sys.stderr.write("\n")
                    break
                if not ls.line(text):
                    break
        return ls.status

    sys.exit(run_command(body))
