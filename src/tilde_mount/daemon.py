"""The daemon's composition root: remote -> Filesystem -> Operations, the FUSE loop,
the control socket, signals and the unmount action.

Lifecycle (``run``):

1. Logging is set up first (``--log-file`` or stderr); the API key is never logged.
2. Preflight, synchronous and before anything is mounted: the endpoint answers, the key is
   accepted, the repository (and ``--commit`` / ``--session``) exist. A failure here is a
   ``StartupError`` with one clear line, reported to the waiting CLI through the
   readiness pipe; nothing was mounted.
3. Inside one trio nursery and one exit stack: the remote, the session (created unless
   ``--session`` or read-only), the Filesystem, the Operations adapter, ``pyfuse3.init``,
   the control server, the signal watcher. Teardown runs in reverse.
4. Readiness: only after the kernel answered a ``stat`` of the mountpoint through our own
   loop is READY reported (readiness pipe and systemd's ``$NOTIFY_SOCKET``), and the
   ``--pid-file`` written (removed again when the daemon exits).
5. Ways out, all ending in the on-unmount action:
   - ``tilde-mount unmount``: flush and apply the action *while still mounted*; a commit
     that fails leaves the mount serving (nothing lost) and reports why; a commit that
     succeeds is followed by the unmount;
   - ``umount``/``fusermount3 -u``: the kernel ends the session, ``pyfuse3.main``
     returns, then the action runs;
   - SIGTERM/SIGINT: the loop is terminated, the mount removed, then the action runs.
6. An unexpected exception escaping ``pyfuse3.main`` (a handler bug that got past
   fuse_ops' own guard) is logged and the loop restarted, so the mount survives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import stat
import sys
import time
from typing import Any

import httpx
import trio

from . import control
from .options import MountConfig, default_cache_dir
from .remote import raise_http_read_size

log = logging.getLogger("tilde_mount")

STARTUP_TIMEOUT = 15.0
PREFLIGHT_ATTEMPTS = 4


class StartupError(Exception):
    """The mount could not start; the message is the one line the user sees."""


# --------------------------------------------------------------------------- small helpers


class _RedactKey(logging.Filter):
    """Belt and braces: scrub the API key from any log record that carries it."""

    def __init__(self, key: str | None) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        if self.key and len(self.key) >= 6:
            msg = record.getMessage()
            if self.key in msg:
                record.msg = msg.replace(self.key, "***")
                record.args = None
        return True


def setup_logging(config: MountConfig) -> None:
    """Log to --log-file or stderr; httpx request lines only with --debug."""
    handler: logging.Handler
    if config.log_file:
        os.makedirs(os.path.dirname(config.log_file) or ".", exist_ok=True)
        handler = logging.FileHandler(config.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"))
    handler.addFilter(_RedactKey(config.api_key))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if config.debug else logging.INFO)
    for noisy in ("httpx", "httpcore", "pyfuse3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if config.debug else logging.WARNING)
    if not config.debug:
        logging.getLogger("httpcore").setLevel(logging.WARNING)


def sd_notify(state: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify(%s) failed: %s", state, exc)


class Readiness:
    """Reports the outcome of startup once: to the CLI's pipe, to systemd, to the log."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.done = False

    def report(self, ok: bool, **data: Any) -> None:
        if self.done:
            return
        self.done = True
        if ok:
            sd_notify("READY=1")
        if self.fd is not None:
            try:
                os.write(self.fd, json.dumps({"ok": ok, **data}).encode() + b"\n")
            except OSError:
                pass
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


# --------------------------------------------------------------------------- preflight


def _describe_transport(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        reason = text.split("] ", 1)[-1] if "] " in text else text
        return reason
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return text


def preflight(config: MountConfig) -> MountConfig:
    """Check endpoint, key, repository, and --commit/--session before mounting anything;
    returns ``config`` with ``--commit`` as the full id (a unique prefix may be given)."""
    from tilde import _wire

    base = _wire.base_url(config.endpoint)
    headers = {"User-Agent": f"tilde-mount/{_version()}"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=STARTUP_TIMEOUT) as http:
            def send(req: Any) -> httpx.Response:
                """The preflight's GETs are idempotent: a reset, a timeout, 429 or a 5xx
                (but 501) is retried a few times with backoff before it counts."""
                for attempt in range(PREFLIGHT_ATTEMPTS):
                    last = attempt == PREFLIGHT_ATTEMPTS - 1
                    try:
                        r = http.request(req.method, req.path, params=list(req.params),
                                         headers=list(req.headers), json=req.json)
                    except httpx.TransportError as exc:
                        if last or isinstance(exc, httpx.UnsupportedProtocol):
                            raise
                        time.sleep(0.25 * 2 ** attempt)
                        continue
                    if last or not (r.status_code == 429 or
                                    (r.status_code >= 500 and r.status_code != 501)):
                        return r
                    time.sleep(0.25 * 2 ** attempt)
                raise AssertionError("unreachable")  # pragma: no cover

            r = send(_wire.get_repository(config.org, config.repo))
            _check(r, config, what=f"repository {config.repo_path}")
            if config.commit_id:
                r = send(_wire.get_commit(config.org, config.repo, config.commit_id))
                _check(r, config, what=f"commit {config.commit_id} in {config.repo_path}")
                full = _wire.parse_commit(r.json()).id
                if full and full != config.commit_id:
                    config = dataclasses.replace(config, commit_id=full)
            if config.session_id:
                r = send(_wire.list_changes(config.org, config.repo,
                                            session_id=config.session_id, amount=1))
                _check(r, config, what=f"session {config.session_id} of {config.repo_path}",
                       hint=" (expired, committed or rolled back?)")
    except httpx.InvalidURL as exc:
        raise StartupError(f"invalid endpoint URL {config.endpoint!r}: {exc}") from None
    except httpx.UnsupportedProtocol:
        raise StartupError(f"invalid endpoint URL {config.endpoint!r} "
                           "(expected http:// or https://)") from None
    except httpx.TransportError as exc:
        raise StartupError(
            f"cannot reach {config.endpoint}: {_describe_transport(exc)}") from None
    return config


def _check(r: httpx.Response, config: MountConfig, *, what: str, hint: str = "") -> None:
    if r.is_success:
        return
    try:
        message = str(r.json().get("message", ""))
    except (ValueError, AttributeError):
        message = r.text[:200]
    detail = f": {message}" if message else ""
    if r.status_code == 401:
        if not config.api_key:
            raise StartupError(
                f"{config.endpoint} needs an API key: pass --api-key, set TILDE_API_KEY or "
                "put api_key in ~/.tilde/config.yaml")
        raise StartupError(f"the API key was rejected by {config.endpoint} (401{detail})")
    if r.status_code == 403:
        raise StartupError(f"access to {what} denied (403{detail})")
    if r.status_code == 404:
        raise StartupError(f"{what} not found at {config.endpoint}{hint}")
    raise StartupError(f"{config.endpoint} answered {r.status_code} for {what}{detail}")


def _version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------------- the daemon


def run(config: MountConfig, ready_fd: int | None = None) -> int:
    """Run the daemon until unmounted; returns the process exit status.

    Raises ``StartupError`` (after reporting it on the readiness pipe) when nothing could
    be mounted.
    """
    setup_logging(config)
    readiness = Readiness(ready_fd)
    # On stderr (foreground, no --log-file) a refused start must stay one line: the CLI's.
    quiet = config.log_file is None
    log.log(logging.DEBUG if quiet else logging.INFO,
            "starting: %s at %s (endpoint %s, %s)", config.repo_path, config.mountpoint,
             config.endpoint,
             f"commit {config.commit_id}" if config.commit_id else
             "read-only" if config.read_only else
             f"session {config.session_id}" if config.session_id else "new session")
    try:
        config = preflight(config)
        raise_http_read_size()
        return trio.run(Daemon(config, readiness).main)
    except BaseException as exc:
        startup = _find_startup_error(exc)
        if startup is not None:
            if not quiet:
                log.error("startup failed: %s", startup)
            readiness.report(False, error=str(startup))
            raise startup from None
        log.exception("daemon failed")
        readiness.report(False, error=f"daemon failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        readiness.report(False, error="daemon exited before the mount was live")
        if config.pid_file:
            remove_pid_file(config.pid_file)


def write_pid_file(path: str) -> None:
    """``--pid-file``: our pid and a newline, written atomically once the mount is live."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_pid_file(path: str) -> None:
    """Remove the pid file at exit, unless it now names another process."""
    try:
        with open(path) as f:
            if f.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except OSError:
        pass


class Daemon:
    """One mount: owns the nursery, the FUSE loop and the unmount protocol."""

    def __init__(self, config: MountConfig, readiness: Readiness) -> None:
        self.config = config
        self.readiness = readiness
        self.fs: Any = None
        self.remote: Any = None
        self.session_id: str | None = config.session_id
        self.cache_dir = os.path.join(config.cache_dir or default_cache_dir(),
                                      control.mount_key(config.mountpoint))
        self.controller: Any = None
        self._mounted = False
        self._stopping = False
        self.exit_code = 0

    # ---- composition

    async def main(self) -> int:
        import pyfuse3

        from .controller import Controller
        from .fuse_ops import Operations

        async with contextlib.AsyncExitStack() as stack:
            self.remote, self.fs = self._build(stack)
            async with trio.open_nursery() as nursery:
                try:
                    await nursery.start(self.fs.run)
                except Exception as exc:
                    raise StartupError(_startup_message(self.config, exc)) from exc
                self.session_id = self.fs.session_id
                self.controller = Controller(
                    self.fs, self.remote, self.config, self.cache_dir,
                    request_stop=self._request_stop, mounted=lambda: self._mounted)
                try:
                    ops = Operations(self.fs)
                    server = control.ControlServer(self.config.mountpoint,
                                                   self.controller.handle)
                    server.bind()
                    stack.callback(server.close)
                    options = self._fuse_options()
                    log.debug("pyfuse3.init(%s, %s)", self.config.mountpoint, sorted(options))
                    try:
                        pyfuse3.init(ops, self.config.mountpoint, options)
                    except RuntimeError as exc:
                        raise StartupError(f"{self.config.mountpoint}: mount failed ({exc}); "
                                           "see the log for the kernel's reason") from None
                except BaseException:
                    with trio.CancelScope(shield=True):
                        await self.controller.discard_created_session()
                        await self.fs.close()
                    raise
                self._mounted = True
                stack.callback(self._close_fuse)
                nursery.start_soon(server.run)
                nursery.start_soon(self._watch_signals)
                nursery.start_soon(self._announce_ready)
                await self._serve()
                self._close_fuse()
                with trio.CancelScope(shield=True):
                    self._stopping = True
                    await self.controller.finish()
                    # Let `tilde-mount unmount` clients read their answer before the
                    # control server is cancelled.
                    with trio.move_on_after(5):
                        await server.drain()
                nursery.cancel_scope.cancel()
        return self.exit_code

    def _build(self, stack: contextlib.AsyncExitStack) -> tuple[Any, Any]:
        """HttpRemote -> caches and staging -> Filesystem (started by ``main`` inside its
        nursery); the remote's client is closed last, through the exit stack."""
        from pathlib import Path

        from .config import FsConfig
        from .fs import Filesystem, Parts
        from .remote import HttpRemote

        c = self.config
        remote = HttpRemote(c.endpoint, c.repo_path, c.api_key)
        stack.push_async_callback(remote.aclose)
        fs_kwargs: dict[str, Any] = {"cache_dir": Path(self.cache_dir),
                                     "read_only": c.read_only, "cache_size": c.cache_size,
                                     "durable_close": c.durable_close}
        if c.uid is not None:
            fs_kwargs["uid"] = c.uid
        if c.gid is not None:
            fs_kwargs["gid"] = c.gid
        # a private mount (no allow_other) of a user: only they can reach it, so stored
        # owners would only lock them out of files written by other uids (sandboxes,
        # other machines); they own everything shown, as with -o uid=,gid=
        fs_kwargs["map_owner"] = c.uid is not None or c.gid is not None or (
            os.geteuid() != 0 and not c.allow_other)
        fs_config = FsConfig(**fs_kwargs)
        parts = Parts.build(fs_config)  # caches and staging, built here and passed in
        fs = Filesystem(remote, fs_config, session_id=c.session_id, ref=c.commit_id,
                        parts=parts)
        fs.on_forget = self._invalidate_kernel
        return remote, fs

    def _fuse_options(self) -> set[str]:
        c = self.config
        # stored modes are honoured (default_permissions), but never a stored device number
        # or setuid bit: a repository must not hand out /dev/mem or root shells
        opts = {"fsname=tilde:" + c.repo_path, "subtype=tilde", "default_permissions",
                "nodev", "nosuid"}
        if c.allow_other:
            opts.add("allow_other")
        if c.read_only:
            opts.add("ro")
        if c.debug:
            opts.add("debug")
        return opts

    def _close_fuse(self) -> None:
        """Unmount (lazily, if still mounted) and release the FUSE session; idempotent."""
        if not self._mounted:
            return
        import pyfuse3

        self._mounted = False
        try:
            pyfuse3.close(unmount=True)
        except Exception:
            log.exception("pyfuse3.close failed")
        log.info("unmounted %s", self.config.mountpoint)

    async def _serve(self) -> None:
        """Run pyfuse3.main until the session ends; restart it after an unexpected crash."""
        import pyfuse3

        crashes = 0
        while True:
            try:
                await pyfuse3.main()
                return
            except Exception:
                if self._stopping:
                    log.exception("FUSE loop failed while stopping")
                    return
                crashes += 1
                log.exception("FUSE loop crashed (%d); restarting it", crashes)
                if crashes > 100:
                    log.error("too many FUSE loop crashes; giving up")
                    self.exit_code = 1
                    return
                await trio.sleep(0.05)

    async def _announce_ready(self) -> None:
        """Prove the mount answers (a stat through the kernel), then report READY."""
        deadline = trio.current_time() + STARTUP_TIMEOUT
        last: Exception | None = None
        while trio.current_time() < deadline:
            try:
                # Both calls go through the kernel to our own loop: never on the loop.
                if await trio.to_thread.run_sync(_mount_answers, self.config.mountpoint):
                    break
            except OSError as exc:
                last = exc
            await trio.sleep(0.02)
        else:
            self.readiness.report(False, error=f"{self.config.mountpoint}: the mount did not "
                                                f"answer ({last})")
            self._request_stop()
            return
        if self.config.pid_file:
            try:
                write_pid_file(self.config.pid_file)
            except OSError as exc:
                self.readiness.report(False, error=f"cannot write the pid file "
                                                    f"{self.config.pid_file}: {exc.strerror}")
                self._request_stop()
                return
        self.controller.ready = True
        log.info("mounted %s at %s%s", self.config.repo_path, self.config.mountpoint,
                 f" (session {self.session_id})" if self.session_id else "")
        self.readiness.report(True, session_id=self.session_id, pid=os.getpid(),
                              log_file=self.config.log_file, recovery=self.fs.recovery)

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
            async for signum in sigs:
                if signum == signal.SIGHUP:
                    log.info("SIGHUP ignored (use `tilde-mount unmount` to stop)")
                    continue
                log.info("%s received: unmounting", signal.Signals(signum).name)
                self._request_stop()

    def _request_stop(self) -> None:
        """End the FUSE loop; the unmount action runs after it returns."""
        import pyfuse3

        if self._stopping:
            return
        self._stopping = True
        sd_notify("STOPPING=1")
        if self._mounted:
            try:
                pyfuse3.terminate()
            except Exception:
                log.exception("pyfuse3.terminate failed")

    # ---- the kernel side of the control plane

    async def _invalidate_kernel(self, forget: Any) -> None:
        """``Filesystem.on_forget``: make the kernel drop the entries and pages it cached.

        ``invalidate_entry`` blocks until related requests (lookups in that directory...)
        are answered, and those are answered by this very trio loop: so the calls run in a
        worker thread while the loop keeps serving. The hook is only awaited from the
        control plane (rollback, commit), never inside a FUSE request handler.
        """
        if not self._mounted:
            return
        import pyfuse3

        def invalidate() -> None:
            for parent, name in forget.entries:
                with contextlib.suppress(OSError):  # ENOENT: the kernel did not have it
                    pyfuse3.invalidate_entry(parent, name)
            for ino in forget.inodes:
                with contextlib.suppress(OSError):
                    pyfuse3.invalidate_inode(ino)

        await trio.to_thread.run_sync(invalidate)


def _startup_message(config: MountConfig, exc: BaseException) -> str:
    """One line for a failure while opening the session (after a good preflight)."""
    from tilde import exceptions as texc

    if isinstance(exc, texc.TransportError):
        return f"cannot reach {config.endpoint}: {exc}"
    if isinstance(exc, texc.AuthenticationError):
        return f"the API key was rejected by {config.endpoint} ({exc.status_code})"
    if isinstance(exc, texc.ForbiddenError):
        return f"access to {config.repo_path} denied ({exc.message or exc.status_code})"
    if isinstance(exc, texc.NotFoundError):
        return f"{config.repo_path}: not found at {config.endpoint} ({exc.message})"
    if isinstance(exc, texc.APIError):
        return f"{config.endpoint} refused to open the mount: {exc}"
    if isinstance(exc, OSError):
        return f"cannot prepare the cache directory: {exc}"
    return f"startup failed: {type(exc).__name__}: {exc}"


def _find_startup_error(exc: BaseException) -> StartupError | None:
    """trio wraps errors raised inside nurseries in ExceptionGroups: dig ours out."""
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _find_startup_error(sub)
            if found is not None:
                return found
    return None


def _mount_answers(path: str) -> bool:
    """Blocking: the mountpoint is a mount and its root stats as a directory."""
    return os.path.ismount(path) and stat.S_ISDIR(os.stat(path).st_mode)
