"""How ``tilde-mount commit/status/rollback/unmount`` reach a running daemon.

One unix socket per mount, in a 0700 runtime directory, named by a hash of the
mountpoint's real path. The protocol is JSON lines: the client sends one request
``{"op": ..., ...}``; the daemon answers with any number of
``{"type": "progress", "message": ...}`` lines and then exactly one
``{"type": "result", ...}`` or ``{"type": "error", "message": ..., "code": ...}`` line.

Subtleties:

1. Peer credentials are checked with SO_PEERCRED: only the daemon's own uid or root may
   talk to it (the directory mode alone would not stop root-owned daemons' sockets from
   being reached by a user who guessed the path in /tmp).
2. The server side is trio and runs in the daemon's nursery; the client side is plain
   blocking sockets, because the CLI is a short synchronous program (trio is imported
   only by the server side, so ``tilde-mount --help`` and ``status`` start fast).
3. A request handler that raises is answered with an error line; it never takes the
   control server (or the mount) down.
4. A socket file whose daemon is gone is stale: connecting gives ECONNREFUSED, and the
   daemon that binds next removes it first.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import socket
import struct
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # trio is imported where the daemon needs it: the CLI stays fast
    import trio

log = logging.getLogger(__name__)

MAX_LINE = 1024 * 1024


class ControlError(Exception):
    """A control request failed; ``code`` is machine-readable (conflict, not_mounted, ...)."""

    def __init__(self, message: str, code: str = "error", data: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data or {}


def runtime_dir() -> str:
    """The 0700 directory that holds the control sockets (created on demand)."""
    if os.geteuid() == 0:
        base = "/run/tilde-mount"
    elif os.environ.get("XDG_RUNTIME_DIR"):
        base = os.path.join(os.environ["XDG_RUNTIME_DIR"], "tilde-mount")
    else:
        base = os.path.join(tempfile.gettempdir(), f"tilde-mount-{os.geteuid()}")
    return base


def ensure_runtime_dir() -> str:
    path = runtime_dir()
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if st.st_uid != os.geteuid():
        raise ControlError(f"{path} is not owned by uid {os.geteuid()}", "runtime_dir")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def mount_key(mountpoint: str) -> str:
    """Stable name for a mountpoint: hash of its real path."""
    real = os.path.realpath(mountpoint)
    return hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def socket_path(mountpoint: str) -> str:
    return os.path.join(runtime_dir(), mount_key(mountpoint) + ".sock")


def _peer_uid(sock: Any) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


# --------------------------------------------------------------------------- server side

Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[dict[str, Any], Send], Awaitable[dict[str, Any]]]


class ControlServer:
    """Serves control requests for one mount; ``run`` lives in the daemon's nursery.

    ``handler(request, send_progress)`` returns the result dict or raises ``ControlError``.
    """

    def __init__(self, mountpoint: str, handler: Handler) -> None:
        import trio

        self.path = socket_path(mountpoint)
        self._handler = handler
        self._sock: trio.socket.SocketType | None = None
        self._active = 0
        self._idle = trio.Event()
        self._idle.set()
        self._accepting: trio.CancelScope | None = None

    def bind(self) -> None:
        """Bind synchronously so the socket exists before the mount is reported live."""
        ensure_runtime_dir()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)
        try:
            raw.bind(self.path)
        finally:
            os.umask(old)
        raw.listen(16)
        import trio

        self._sock = trio.socket.from_stdlib_socket(raw)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def run(self, *, task_status: Any = None) -> None:
        import trio

        if self._sock is None:
            self.bind()
        assert self._sock is not None
        if task_status is not None:
            task_status.started()
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as self._accepting:
                while True:
                    conn, _ = await self._sock.accept()
                    self._active += 1
                    self._idle = trio.Event()
                    nursery.start_soon(self._serve_one, conn)

    async def drain(self) -> None:
        """Stop accepting and wait until every open request has been answered."""
        if self._accepting is not None:
            self._accepting.cancel()
        await self._idle.wait()

    async def _serve_one(self, conn: trio.socket.SocketType) -> None:
        try:
            await self._serve_one_inner(conn)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _serve_one_inner(self, conn: trio.socket.SocketType) -> None:
        import trio

        stream = trio.SocketStream(conn)
        try:
            uid = _peer_uid(conn)
            if uid not in (0, os.geteuid()):
                log.warning("control: refused a connection from uid %d", uid)
                await _send_line(stream, {"type": "error", "code": "permission",
                                          "message": "permission denied"})
                return
            line = await _receive_line(stream)
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ControlError("malformed request", "protocol")

            async def send_progress(message: dict[str, Any]) -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await _send_line(stream, {"type": "progress", **message})

            try:
                result = await self._handler(request, send_progress)
                reply = {"type": "result", **result}
            except ControlError as exc:
                reply = {"type": "error", "message": exc.message, "code": exc.code, **exc.data}
            await _send_line(stream, reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            log.debug("control: client went away")
        except Exception:
            log.exception("control: request failed")
            with contextlib.suppress(Exception):
                await _send_line(stream, {"type": "error", "code": "internal",
                                          "message": "internal error in the daemon (see its log)"})
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()


async def _send_line(stream: trio.SocketStream, obj: dict[str, Any]) -> None:
    await stream.send_all(json.dumps(obj).encode() + b"\n")


async def _receive_line(stream: trio.SocketStream) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_LINE:
            raise ControlError("request too large", "protocol")
    return buf.split(b"\n", 1)[0]


# --------------------------------------------------------------------------- client side


def _connect(mountpoint: str, timeout: float | None) -> socket.socket:
    path = socket_path(mountpoint)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise ControlError(
                f"{mountpoint}: not a tilde mount (no running tilde-mount daemon for it)",
                "not_mounted") from None
        if exc.errno == errno.EACCES:
            raise ControlError(f"{mountpoint}: permission denied on the daemon's socket",
                               "permission") from None
        raise ControlError(f"{mountpoint}: cannot reach the daemon: {exc.strerror}",
                           "unreachable") from None
    return sock


def request_stream(mountpoint: str, request: dict[str, Any],
                   timeout: float | None = None) -> Iterator[dict[str, Any]]:
    """Send one request; yield every reply line (progress, then the result or error)."""
    sock = _connect(mountpoint, timeout=10)
    sock.settimeout(timeout)
    try:
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while True:
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
            chunk = sock.recv(65536)
            if not chunk:
                if buf.strip():
                    yield json.loads(buf)
                return
            buf += chunk
    finally:
        sock.close()


def request(mountpoint: str, req: dict[str, Any],
            on_progress: Callable[[dict[str, Any]], None] | None = None,
            timeout: float | None = None) -> dict[str, Any]:
    """Send one request and return its result; raise ``ControlError`` on an error reply."""
    for msg in request_stream(mountpoint, req, timeout=timeout):
        kind = msg.get("type")
        if kind == "progress":
            if on_progress is not None:
                on_progress(msg)
        elif kind == "result":
            return msg
        elif kind == "error":
            data = {k: v for k, v in msg.items() if k not in ("type", "message", "code")}
            raise ControlError(str(msg.get("message", "error")), str(msg.get("code", "error")),
                               data)
    raise ControlError(f"{mountpoint}: the daemon closed the connection without an answer "
                       "(did it exit? see its log)", "no_answer")
