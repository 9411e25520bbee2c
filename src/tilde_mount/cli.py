"""The ``tilde-mount`` command line.

``tilde-mount ORG/REPO MOUNTPOINT [options]`` mounts; ``commit``, ``status``, ``rollback``
and ``unmount`` talk to a running daemon over its control socket (control.py).

Subtleties:

1. The mount form has no subcommand word, so ``MountGroup`` routes any first word that is
   not a subcommand to the hidden ``mount`` command (``tilde-mount my-org/repo /mnt``
   and ``tilde-mount commit /mnt -m x`` both work; a repository path always has a ``/``,
   a subcommand never does).
2. The daemon module (pyfuse3, httpx, the filesystem) is imported lazily, so ``--help`` and
   the control commands start fast.
3. In the background mode the CLI re-executes itself (``python -m tilde_mount _daemon``) in
   a new session, detached from the terminal, and waits on a readiness pipe: the daemon
   writes one JSON line once the mount is live (or says why it is not) and the CLI exits
   0 only on success. If the daemon dies before that, any mount it left is removed.
4. Every user-facing failure is one line on stderr prefixed ``tilde-mount:``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import subprocess
import sys
import time
from typing import Any, NoReturn

import click

from . import control
from .options import (
    DEFAULT_CACHE_SIZE,
    ON_UNMOUNT_CHOICES,
    MountConfig,
    OptionError,
    default_log_dir,
    format_size,
    parse_o_options,
    parse_size,
)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_APPROVAL = 3
READY_TIMEOUT = 120.0


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """One clear line on stderr, then exit non-zero."""
    click.echo(f"tilde-mount: {message}", err=True)
    sys.exit(code)


class MountGroup(click.Group):
    """A group whose unknown first word means "mount this repository"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["mount", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("tilde-mount", "ORG/REPO MOUNTPOINT [OPTIONS]")
        formatter.write_usage("tilde-mount", "COMMAND MOUNTPOINT [ARGS]...")


@click.group(cls=MountGroup, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=False)
def main() -> None:
    """Mount a Tilde repository session as a local directory.

    \b
    tilde-mount ORG/REPO MOUNTPOINT [OPTIONS]   mount (see `tilde-mount mount --help`)
    tilde-mount commit MOUNTPOINT -m MSG       commit everything written so far
    tilde-mount status MOUNTPOINT              show the session and pending changes
    tilde-mount rollback MOUNTPOINT            discard the session's changes
    tilde-mount update MOUNTPOINT              move onto the latest commit (keeps changes)
    tilde-mount unmount MOUNTPOINT [-m MSG]    flush, apply --on-unmount, unmount
    """


# --------------------------------------------------------------------------- mount


def _validate_mountpoint(path: str) -> str:
    """Real path of an existing, empty directory that is not mounted on already."""
    real = os.path.realpath(path)
    _clean_stale_mount(real)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        fail(f"{path}: mountpoint does not exist")
    except OSError as exc:
        fail(f"{path}: cannot use as mountpoint: {exc.strerror}")
    import stat as stat_mod

    if not stat_mod.S_ISDIR(st.st_mode):
        fail(f"{path}: mountpoint is not a directory")
    if os.path.ismount(real):
        fail(f"{path}: something is already mounted there")
    try:
        entries = os.listdir(real)
    except OSError as exc:
        fail(f"{path}: cannot read mountpoint: {exc.strerror}")
    if entries:
        fail(f"{path}: mountpoint is not empty")
    return real


def _mount_table() -> list[tuple[str, str]]:
    """(mountpoint, fstype) pairs from /proc/self/mountinfo, octal escapes decoded."""
    out = []
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                left, _, right = line.partition(b" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                mnt = fields[4].decode("unicode_escape").encode("latin-1").decode(
                    "utf-8", "surrogateescape")
                out.append((mnt, right.split()[0].decode()))
    except OSError:
        pass
    return out


def is_tilde_mount(real: str) -> bool:
    return any(m == real and t.startswith("fuse.tilde") for m, t in _mount_table())


def _clean_stale_mount(real: str) -> None:
    """Remove a tilde mount whose daemon is gone ("Transport endpoint is not connected").

    Only mounts of our own fstype are touched, and only when nothing listens on their
    control socket any more (a hung daemon still accepts connections, so it is left alone).
    (A stat is no test: the kernel may answer it from its attribute cache.)
    """
    if not is_tilde_mount(real):
        return
    try:
        control.request(real, {"op": "ping"}, timeout=5)
        return
    except control.ControlError as exc:
        if exc.code != "not_mounted":
            return
    click.echo(f"tilde-mount: {real}: removing a stale mount left by a dead daemon", err=True)
    _force_unmount(real)


def _force_unmount(real: str) -> None:
    subprocess.run(["fusermount3", "-u", "-z", real], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


def _check_dev_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        fail("/dev/fuse is missing: load the fuse kernel module (modprobe fuse) "
             "or run the container with --device /dev/fuse")
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
        os.close(fd)
    except OSError as exc:
        if os.geteuid() != 0 and exc.errno == errno.EACCES:
            return  # unprivileged mounts go through the setuid fusermount3 helper
        fail(f"/dev/fuse: {exc.strerror}")


def _parse_metadata(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--metadata {item!r}: expected KEY=VALUE", EXIT_USAGE)
        out[key] = value
    return out


@main.command("mount", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("repo_path", metavar="ORG/REPO")
@click.argument("mountpoint", type=click.Path())
@click.option("--endpoint", metavar="URL",
              help="API endpoint (default: $TILDE_ENDPOINT_URL, ~/.tilde/config.yaml, "
                   "https://tilde.run).")
@click.option("--api-key", metavar="KEY",
              help="API key (default: $TILDE_API_KEY, then ~/.tilde/config.yaml).")
@click.option("--session", "session", metavar="ID", help="Attach to an existing session.")
@click.option("--read-only", is_flag=True, default=None,
              help="Mount the latest commit read-only, without a session.")
@click.option("--commit", "commit", metavar="ID", help="Mount one commit read-only.")
@click.option("-f", "--foreground", is_flag=True, default=None,
              help="Stay in the foreground (logs to stderr).")
@click.option("--cache-dir", metavar="DIR",
              help="Local cache and staging directory (default ~/.cache/tilde-mount).")
@click.option("--cache-size", metavar="SIZE",
              help=f"Disk block cache bound, e.g. 512M, 10G (default "
                   f"{format_size(DEFAULT_CACHE_SIZE)}).")
@click.option("--on-unmount", type=click.Choice(ON_UNMOUNT_CHOICES),
              help="What unmount does with the session (default: commit).")
@click.option("--message", metavar="MSG", help="Message of the commit made on unmount.")
@click.option("-o", "o_options", metavar="OPTIONS", multiple=True,
              help="Comma-separated mount options: allow_other, uid=N, gid=N, ro, and the "
                   "long options above (cache_size=1G, on_unmount=keep, ...).")
@click.option("--log-file", metavar="FILE", help="Log here (default: stderr with -f, "
                                                   "else ~/.local/state/tilde-mount/).")
@click.option("--pid-file", metavar="FILE",
              help="Write the daemon's pid here once the mount is live; removed at exit.")
@click.option("--durable-close", is_flag=True, default=None,
              help="close() returns only once the file is uploaded into the session (and "
                   "reports an upload failure), instead of once it is journaled locally.")
@click.option("--debug", is_flag=True, default=None, help="Verbose logging.")
def mount_cmd(repo_path: str, mountpoint: str, **opts: Any) -> None:
    """Mount ORG/REPO at MOUNTPOINT; return once the mount is live."""
    try:
        o_values = parse_o_options(opts.pop("o_options"))
    except OptionError as exc:
        fail(str(exc), EXIT_USAGE)
    merged = {**o_values, **{k: v for k, v in opts.items() if v is not None}}
    config = build_config(repo_path, mountpoint, merged)
    foreground = bool(merged.get("foreground"))
    if foreground:
        _run_foreground(config)
    else:
        _run_background(config)


def build_config(repo_path: str, mountpoint: str, o: dict[str, Any]) -> MountConfig:
    """Validate everything that can be checked without the server; exit on a problem."""
    from tilde import _config
    from tilde._wire import split_repo_path

    try:
        org, repo = split_repo_path(repo_path)
    except ValueError:
        fail(f"{repo_path!r} is not a repository path (expected ORG/REPO)", EXIT_USAGE)
    if o.get("read_only") and o.get("session"):
        fail("--read-only and --session exclude each other", EXIT_USAGE)
    if o.get("commit") and o.get("session"):
        fail("--commit and --session exclude each other", EXIT_USAGE)
    try:
        cache_size = parse_size(o["cache_size"]) if o.get("cache_size") else DEFAULT_CACHE_SIZE
    except OptionError as exc:
        fail(str(exc), EXIT_USAGE)
    on_unmount = o.get("on_unmount") or "commit"
    if on_unmount not in ON_UNMOUNT_CHOICES:
        fail(f"--on-unmount {on_unmount}: expected one of {', '.join(ON_UNMOUNT_CHOICES)}",
             EXIT_USAGE)
    try:
        settings = _config.resolve(endpoint_url=o.get("endpoint"), api_key=o.get("api_key"))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read ~/.tilde/config.yaml: {exc}")
    _check_dev_fuse()
    real = _validate_mountpoint(mountpoint)
    cache_dir = o.get("cache_dir")
    log_file = o.get("log_file")
    pid_file = o.get("pid_file")
    if pid_file and not os.path.isdir(os.path.dirname(os.path.abspath(pid_file))):
        fail(f"--pid-file {pid_file}: no such directory", EXIT_USAGE)
    return MountConfig(
        repo_path=f"{org}/{repo}", org=org, repo=repo, mountpoint=real,
        endpoint=settings.endpoint_url, api_key=settings.api_key,
        session_id=o.get("session"), read_only=bool(o.get("read_only")) or bool(o.get("commit")),
        commit_id=o.get("commit"),
        cache_dir=os.path.abspath(cache_dir) if cache_dir else None,
        cache_size=cache_size, on_unmount=on_unmount, message=o.get("message"),
        allow_other=bool(o.get("allow_other")), uid=o.get("uid"), gid=o.get("gid"),
        log_file=os.path.abspath(log_file) if log_file else None, debug=bool(o.get("debug")),
        pid_file=os.path.abspath(pid_file) if pid_file else None,
        durable_close=bool(o.get("durable_close")),
    )


def _run_foreground(config: MountConfig) -> None:
    from . import daemon

    try:
        code = daemon.run(config)
    except daemon.StartupError as exc:
        fail(str(exc))
    sys.exit(code)


def _run_background(config: MountConfig) -> None:
    """Start the daemon detached and wait until it says the mount is live (or not)."""
    log_file = config.log_file
    if log_file is None:
        os.makedirs(default_log_dir(), exist_ok=True)
        log_file = os.path.join(default_log_dir(), control.mount_key(config.mountpoint) + ".log")
        config = config.with_(log_file=log_file)
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, TILDE_MOUNT_CONFIG=config.to_json())
    # few malloc arenas: the worker threads (disk cache, staging) otherwise each grow one,
    # which costs tens of MiB of RSS under read load (docs/performance.md, workload H)
    env.setdefault("MALLOC_ARENA_MAX", "2")
    # fixed malloc thresholds: range-GET bodies (up to 2 MiB) and cache blocks are then
    # reused from the heap instead of being mmapped and page-faulted afresh every time
    # (A: +10 %, docs/performance.md); the trim threshold bounds what the heap keeps
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(16 * 1024 * 1024))
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(32 * 1024 * 1024))
    env.pop("TILDE_API_KEY", None)
    if config.api_key:
        env["TILDE_API_KEY"] = config.api_key
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tilde_mount", "_daemon", "--ready-fd", str(write_fd)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,), start_new_session=True, env=env, cwd="/",
        )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        message = _wait_ready(pipe, proc)
    if message is None:
        code = proc.poll()
        _cleanup_failed_start(config, proc)
        why = f"exited with status {code}" if code is not None else "did not become ready"
        fail(f"the daemon {why} before the mount was live; see {log_file}")
    if not message.get("ok"):
        _cleanup_failed_start(config, proc)
        fail(str(message.get("error", "mount failed")))
    parts = [f"{config.repo_path} mounted at {config.mountpoint}"]
    if message.get("session_id"):
        parts.append(f"session {message['session_id']}")
    elif config.commit_id:
        parts.append(f"commit {config.commit_id}, read-only")
    elif config.read_only:
        parts.append("read-only")
    click.echo(f"tilde-mount: {'; '.join(parts)} (pid {proc.pid}, log {log_file})", err=True)
    for line in _recovery_lines(message.get("recovery") or {}):
        click.echo(f"tilde-mount: {line}", err=True)


def _wait_ready(pipe: Any, proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    deadline = time.monotonic() + READY_TIMEOUT
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([pipe], [], [], 0.5)
        if ready:
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                try:
                    return dict(json.loads(buf.split(b"\n", 1)[0]))
                except ValueError:
                    return None
        elif proc.poll() is not None:
            break
    return None


def _cleanup_failed_start(config: MountConfig, proc: subprocess.Popen[bytes]) -> None:
    """Leave nothing behind: no daemon, no mount."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if is_tilde_mount(config.mountpoint):
        _force_unmount(config.mountpoint)


@main.command("_daemon", hidden=True)
@click.option("--ready-fd", type=int, default=None)
def daemon_cmd(ready_fd: int | None) -> None:
    """Internal: the detached daemon started by the background mount."""
    from . import daemon

    text = os.environ.pop("TILDE_MOUNT_CONFIG", None)
    if not text:
        fail("_daemon is internal; use `tilde-mount ORG/REPO MOUNTPOINT`", EXIT_USAGE)
    config = MountConfig.from_json(text, api_key=os.environ.get("TILDE_API_KEY") or None)
    try:
        code = daemon.run(config, ready_fd=ready_fd)
    except daemon.StartupError as exc:
        fail(str(exc))
    sys.exit(code)


# --------------------------------------------------------------------------- control commands


def _progress_printer() -> Any:
    """Print progress lines only when stderr is a terminal (scripts get clean output)."""
    tty = sys.stderr.isatty()
    state = {"width": 0}

    def show(msg: dict[str, Any]) -> None:
        if not tty:
            return
        text = str(msg.get("message", ""))
        pad = max(0, state["width"] - len(text))
        sys.stderr.write("\r" + text + " " * pad)
        sys.stderr.flush()
        state["width"] = len(text)

    def done() -> None:
        if tty and state["width"]:
            sys.stderr.write("\r" + " " * state["width"] + "\r")
            sys.stderr.flush()

    show.done = done  # type: ignore[attr-defined]
    return show


def _control(mountpoint: str, req: dict[str, Any]) -> dict[str, Any]:
    real = _require_tilde_mount(mountpoint)
    show = _progress_printer()
    try:
        return control.request(real, req, on_progress=show)
    except control.ControlError as exc:
        show.done()
        _control_failure(exc)
    finally:
        show.done()


def _require_tilde_mount(mountpoint: str) -> str:
    real = os.path.realpath(mountpoint)
    if not os.path.lexists(real):
        fail(f"{mountpoint}: no such directory")
    if not os.path.exists(control.socket_path(real)):
        if is_tilde_mount(real):
            fail(f"{mountpoint}: the tilde-mount daemon for this mount is gone; "
                 f"run `fusermount3 -u {real}` (the session is safe on the server)")
        above = _enclosing_tilde_mount(real)
        if above is not None:
            fail(f"{mountpoint}: not a tilde mount, but inside the one at {above}; "
                 f"pass {above}")
        fail(f"{mountpoint}: not a tilde mount")
    return real


def _enclosing_tilde_mount(real: str) -> str | None:
    """The tilde mount ``real`` lies inside of, if any (the deepest one)."""
    found = [m for m, t in _mount_table()
             if t.startswith("fuse.tilde") and real.startswith(m.rstrip("/") + "/")]
    return max(found, key=len) if found else None


def _control_failure(exc: control.ControlError) -> NoReturn:
    """The daemon's message is the whole story (controller.py composes it once)."""
    fail(exc.message)


@main.command("commit", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("mountpoint", type=click.Path())
@click.option("-m", "--message", required=True, help="Commit message.")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Commit metadata.")
def commit_cmd(mountpoint: str, message: str, metadata: tuple[str, ...]) -> None:
    """Upload pending writes, commit the session atomically, print the commit id.

    The mount goes on over a fresh session. Exit status 3 means the commit waits for
    approval (the review URL is printed).
    """
    meta = _parse_metadata(metadata)
    result = _control(mountpoint, {"op": "commit", "message": message, "metadata": meta})
    _print_commit_result(result)


def _print_commit_result(result: dict[str, Any]) -> None:
    status = result.get("status")
    if status == "approval_required":
        click.echo(result.get("web_url", ""))
        fail(f"the commit needs approval: review it at {result.get('web_url', '')}",
             EXIT_APPROVAL)
    if status == "committed":
        click.echo(result.get("commit_id", ""))
        if result.get("warning"):
            click.echo(f"tilde-mount: committed, but {result['warning']}", err=True)
    elif status == "nothing_to_commit":
        click.echo("tilde-mount: nothing to commit", err=True)


@main.command("status", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("mountpoint", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(mountpoint: str, as_json: bool) -> None:
    """Show the repository, session, uncommitted changes, uploads and cache use."""
    result = _control(mountpoint, {"op": "status"})
    result.pop("type", None)
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        click.echo(format_status(result))
    if result.get("error"):  # the server's part is missing: not a clean status
        sys.exit(EXIT_ERROR)


def _flat(d: dict[str, Any], prefix: str = "") -> str:
    """``a.b=1, a.c=2 KiB`` from nested dicts; byte counts in human units."""
    parts = []
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            inner = _flat(v, name + ".")
            if inner:
                parts.append(inner)
        elif isinstance(v, int) and not isinstance(v, bool) and (
                "bytes" in k or k.endswith("_limit")):
            parts.append(f"{name}={format_size(v)}")
        else:
            parts.append(f"{name}={v}")
    return ", ".join(parts)


def format_status(s: dict[str, Any]) -> str:
    """Human rendering of the daemon's status dict (tolerant of missing keys)."""
    lines = [
        f"repository:  {s.get('repo') or s.get('repository', '?')}",
        f"endpoint:    {s.get('endpoint', '?')}",
        f"mountpoint:  {s.get('mountpoint', '?')}",
    ]
    if s.get("commit_id"):
        lines.append(f"commit:      {s['commit_id']} (read-only)")
    elif s.get("read_only"):
        lines.append("mode:        read-only (latest commit)")
    else:
        lines.append(f"session:     {s.get('session_id', '?')}")
    lines.append(f"on unmount:  {s.get('on_unmount', '?')}")
    if s.get("error"):
        lines.append(f"server:      {s['error']}")
    for kind in ("added", "modified", "deleted"):
        if kind not in s and s.get("error"):
            continue
        paths = s.get(kind) or []
        lines.append(f"{kind + ':':<12} {len(paths)}")
        lines.extend(f"  {p}" for p in paths[:50])
        if len(paths) > 50:
            lines.append(f"  ... and {len(paths) - 50} more")
    lines.append(f"uploads pending: {s.get('uploads_pending', 0)}")
    for p in (s.get("pending_paths") or [])[:20]:
        lines.append(f"  {p}")
    for key, title in (("damaged", "damaged (a write failed; commit refuses them)"),
                       ("open_for_writing", "open for writing")):
        if s.get(key):
            lines.append(f"{title}: {len(s[key])}")
            lines.extend(f"  {p}" for p in s[key][:20])
    lines.extend(_recovery_lines(s.get("recovery") or {}))
    if isinstance(s.get("uploaded"), dict):
        up = s["uploaded"]
        lines.append(f"uploaded:    {up.get('files', 0)} files, "
                     f"{format_size(int(up.get('bytes', 0)))}")
    if isinstance(s.get("staging_bytes"), int):
        lines.append(f"staging:     {format_size(s['staging_bytes'])}")
    if isinstance(s.get("cache"), dict):
        lines.append("cache:       " + _flat(s["cache"]))
    if isinstance(s.get("requests"), dict):
        lines.append("requests:    " + _flat(s["requests"]))
    if isinstance(s.get("io"), dict):
        lines.append("served:      " + _flat(s["io"]))
    if s.get("log_file"):
        lines.append(f"log:         {s['log_file']}")
    return "\n".join(lines)


def _recovery_lines(rec: dict[str, Any]) -> list[str]:
    """What this mount found in its cache directory from a mount that died there."""
    lines = []
    if rec.get("resumed_session"):
        lines.append(f"resumed session {rec['resumed_session']} of a mount that died here")
    if rec.get("replayed"):
        lines.append(f"re-uploaded {len(rec['replayed'])} file(s) a mount that died here had "
                     f"not uploaded" + (f" (failed: {rec['error']}; retried)"
                                        if rec.get("error") else ""))
    for kept in rec.get("set_aside") or []:
        lines.append(f"kept {len(kept.get('files', []))} file(s) of session "
                     f"{kept.get('session_id')} ({kept.get('repository')}) that a mount which "
                     f"died here had not uploaded, under {kept.get('directory')}")
    return lines


@main.command("rollback", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("mountpoint", type=click.Path())
def rollback_cmd(mountpoint: str) -> None:
    """Discard the session's changes; the mount goes on over a fresh session."""
    result = _control(mountpoint, {"op": "rollback"})
    click.echo(f"tilde-mount: rolled back; now on session {result.get('session_id', '?')}",
               err=True)


@main.command("update", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("mountpoint", type=click.Path())
def update_cmd(mountpoint: str) -> None:
    """Move the mount onto the repository's latest commit.

    Uncommitted changes are kept (rebased) when none of their paths changed in the
    commits since; otherwise nothing changes and the conflicting paths are named (exit 1).
    """
    result = _control(mountpoint, {"op": "update"})
    status = result.get("status")
    commit = result.get("commit_id") or "(empty repository)"
    if status == "up_to_date":
        click.echo(f"tilde-mount: already at the latest commit {commit}", err=True)
    elif status == "rebased":
        click.echo(f"tilde-mount: changes kept, now on top of {commit}", err=True)
    else:
        click.echo(f"tilde-mount: now at {commit}", err=True)


@main.command("unmount", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("mountpoint", type=click.Path())
@click.option("-m", "--message", help="Message of the commit made on unmount.")
@click.option("--force", is_flag=True,
              help="Unmount even while files are open for writing (their writers then "
                   "fail with ENOTCONN).")
def unmount_cmd(mountpoint: str, message: str | None, force: bool) -> None:
    """Flush, apply the mount's --on-unmount action, wait, report, unmount.

    Refused while files are open for writing ("target is busy"), unless --force.
    """
    real = _require_tilde_mount(mountpoint)
    show = _progress_printer()
    req: dict[str, Any] = {"op": "unmount", "force": force}
    if message:
        req["message"] = message
    try:
        result = control.request(real, req, on_progress=show)
    except control.ControlError as exc:
        show.done()
        if exc.code == "no_answer" and not os.path.ismount(real):
            fail(f"{mountpoint}: the daemon exited without reporting; see its log")
        _control_failure(exc)
    show.done()
    # The daemon answers after the kernel mount is gone; wait for its exit to be visible.
    deadline = time.monotonic() + 10
    while os.path.ismount(real) and time.monotonic() < deadline:
        time.sleep(0.05)
    report_unmount(result)


def report_unmount(result: dict[str, Any]) -> None:
    action = result.get("action")
    outcome = result.get("outcome") or {}
    if action == "commit":
        status = outcome.get("status")
        if status == "committed":
            click.echo(outcome.get("commit_id", ""))
            click.echo("tilde-mount: committed and unmounted", err=True)
        elif status == "approval_required":
            click.echo(outcome.get("web_url", ""))
            fail(f"unmounted; the commit needs approval: review it at "
                 f"{outcome.get('web_url', '')}", EXIT_APPROVAL)
        elif status == "nothing_to_commit":
            click.echo("tilde-mount: nothing to commit; unmounted", err=True)
        else:
            fail(f"unmounted, but the {outcome.get('message') or outcome.get('error', '?')}")
    elif action == "rollback":
        click.echo("tilde-mount: session rolled back; unmounted", err=True)
    elif action == "keep":
        sid = outcome.get("session_id", "")
        click.echo(sid)
        click.echo(f"tilde-mount: unmounted; session {sid} left open "
                   f"(resume with --session {sid})", err=True)
    else:
        click.echo("tilde-mount: unmounted", err=True)


def run() -> None:  # pragma: no cover - console entry point alias
    main()


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        main()
