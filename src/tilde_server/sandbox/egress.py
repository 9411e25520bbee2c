"""The egress proxy of one sandbox: the only way from its network namespace to the outside.

The sandbox has only a loopback interface. forward.py (inside) listens on 127.0.0.1:3128 and
relays each connection to a unix socket bind-mounted from the host; this module listens on
that socket. HTTP_PROXY/HTTPS_PROXY point the sandbox's programs at it. It speaks HTTP/1.1
proxying (h11 does the framing):

- `CONNECT host:port` opens a tunnel (HTTPS, or anything else over TCP), not intercepted: the
  proxy sees the host and port, never the bytes' meaning.
- `GET http://host/path` (any method, absolute URL) is forwarded: one upstream connection
  per request, so every request is decided and logged on its own, keep-alive with the
  sandbox included. An `https://` absolute URL is refused (use CONNECT).

Every request or tunnel is decided by `decide(Target) -> Decision` (egress_rules.py: the
baseline, then policies, then the one address to connect to), answered 403 with a plain-text
reason when denied, and written as one JSON line to the sandbox's network log when it ends.

Subtleties:
1. The proxy connects to `Decision.address` and nothing else: the name was resolved once by
   the decision, so a second lookup cannot turn an allowed name into a private address.
2. Nothing secret reaches the log: no header is logged, the query string is cut from the path
   (signed URLs carry their signature there) and so is any `user:password@`.
   Proxy-Authorization and other hop-by-hop headers are not forwarded either.
3. A denied or malformed request ends its connection (`Connection: close`), so a body the
   client already sent cannot be taken for a next request.
4. Threads: one per connection and a second one per tunnel (blocking sockets, like
   proxy.py); at most MAX_CONNECTIONS at once per sandbox, more get 503. `stop()` closes the
   listener and every open connection, so tunnels end with the sandbox.
5. Any unexpected error ends that one connection (logged with its traceback), never the
   proxy or the server.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import h11

from tilde_server.sandbox.egress_rules import Decision, Target
from tilde_server.sandbox.logs import LogWriter

log = logging.getLogger("tilde_server.sandbox.egress")

PORT = 3128  # where forward.py listens inside the sandbox
MAX_CONNECTIONS = 128
CONNECT_TIMEOUT = 10.0
IDLE_TIMEOUT = 300.0
MAX_LOG_BYTES = 64 * 1024 * 1024
CHUNK = 65536
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
               b"proxy-connection", b"te", b"trailer", b"upgrade", b"expect"}


class NetworkLog:
    """The sandbox's NDJSON network log (`GET {S}/logs/network`), appended line by line to
    `out` (a sandbox/logs.py writer: its file, and the database beside other processes)."""

    def __init__(self, out: LogWriter, max_bytes: int = MAX_LOG_BYTES) -> None:
        self.out = out
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self.count += 1
            if self.out.size + len(line) > self.max_bytes:
                return
            self.out.write(line)


class _Counted:
    """A socket that counts the bytes it moves (bytes each way for the log)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = 0
        self.received = 0

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def recv(self) -> bytes:
        data = self.sock.recv(CHUNK)
        self.received += len(data)
        return data


class _Refused(Exception):
    """The request cannot be served: answered with `status` and `message`, then closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _next(conn: h11.Connection, sock: socket.socket | _Counted) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = sock.recv() if isinstance(sock, _Counted) else sock.recv(CHUNK)
        conn.receive_data(data)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _host_of(netloc_host: str) -> str:
    host = netloc_host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _Refused(400, f"{netloc_host!r} is not a valid host name") from None
    return host


def parse_target(method: str, target: str) -> Target:
    """The Target of a proxy request line (CONNECT authority or absolute http URL)."""
    if method == "CONNECT":
        host, sep, port = target.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise _Refused(400, f"CONNECT needs host:port, not {target!r}")
        return Target("https", _host_of(host), int(port), method)
    if target.startswith("/"):
        raise _Refused(400, "this is the sandbox's egress proxy: send absolute URLs "
                            "(HTTP_PROXY) or use CONNECT")
    try:
        parts = urlsplit(target)
        url_port = parts.port
    except ValueError:
        raise _Refused(400, f"not a valid URL: {target[:200]!r}") from None
    if parts.scheme == "https":
        raise _Refused(400, "https:// URLs go through CONNECT (the proxy does not open TLS "
                            "for you)")
    if parts.scheme != "http" or not parts.hostname:
        raise _Refused(400, f"only http:// URLs and CONNECT are proxied, not {target[:200]!r}")
    return Target("http", _host_of(parts.hostname), url_port or 80, method, parts.path or "/")


class EgressProxy:
    """Listens on the sandbox's egress socket (see the module docstring)."""

    def __init__(self, path: str, decide: Callable[[Target], Decision], netlog: NetworkLog,
                 *, connect_timeout: float = CONNECT_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.path = path
        self.decide = decide
        self.netlog = netlog
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._listener: socket.socket | None = None
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        os.chmod(self.path, 0o666)  # nosec B103: the sandbox uid connects; the dir is 0711
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, daemon=True, name="sandbox-egress").start()

    def stop(self) -> None:
        self._stopped = True
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            open_now = list(self._open)
        for s in open_now:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    # ------------------------------------------------------------------ connections
    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                                 b"Content-Length: 0\r\n\r\n")
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="sandbox-egress-conn").start()

    def _track(self, s: socket.socket, on: bool) -> None:
        with self._lock:
            if on:
                self._open.add(s)
            else:
                self._open.discard(s)
        if on and self._stopped:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(self.idle_timeout)
        self._track(conn, True)
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            while True:
                event = _next(h, conn)
                if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    break
                if not isinstance(event, h11.Request):
                    break
                if not self._one(h, conn, event):
                    break
                if h.our_state is h11.DONE and h.their_state is h11.DONE:
                    h.start_next_cycle()
                else:
                    break
        except h11.RemoteProtocolError as exc:
            self._refuse(h, conn, exc.error_status_hint,
                         f"tilde sandbox egress: malformed request: {exc}")
        except OSError:
            pass
        except Exception:
            log.exception("egress proxy: unexpected error; closing the connection")
        finally:
            self._track(conn, False)
            with contextlib.suppress(OSError):
                conn.close()
            self._slots.release()

    def _one(self, h: h11.Connection, conn: socket.socket, req: h11.Request) -> bool:
        """Serve one request; False when the connection must end."""
        start, t0 = _now(), time.monotonic()
        method = req.method.decode("latin-1")
        record: dict[str, Any] = {"timestamp": start, "method": method, "scheme": None,
                                  "host": None, "port": None, "path": None, "address": None,
                                  "decision": "deny", "allowed": False, "rule": "invalid",
                                  "status": None, "bytes_sent": 0, "bytes_received": 0,
                                  "duration_ms": 0.0, "error": None}
        keep = False
        try:
            target = parse_target(method, req.target.decode("latin-1"))
            record.update(scheme=target.scheme, host=target.host, port=target.port,
                          path=target.path)
            decision = self.decide(target)
            record.update(rule=decision.rule, address=decision.address)
            if not decision.allowed:
                raise _Refused(403, f"tilde sandbox egress: {method} {target.scheme}://"
                                    f"{target.host}:{target.port} denied ({decision.rule}): "
                                    f"{decision.message}")
            record.update(decision="allow", allowed=True)
            assert decision.address is not None
            if method == "CONNECT":
                self._tunnel(h, conn, decision.address, target, record)
            else:
                keep = self._forward(h, conn, req, decision.address, target, record)
        except _Refused as exc:
            record["status"] = exc.status
            if exc.status != 403:
                record["error"] = exc.message
            self._refuse(h, conn, exc.status, exc.message)
        except (OSError, h11.ProtocolError) as exc:
            record["error"] = record["error"] or f"{type(exc).__name__}: {exc}"
        finally:
            record["duration_ms"] = round((time.monotonic() - t0) * 1000, 3)
            self.netlog.write(record)
        return keep

    def _refuse(self, h: h11.Connection, conn: socket.socket, status: int,
                message: str) -> None:
        body = (message + "\n").encode()
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        with contextlib.suppress(OSError, h11.ProtocolError):
            conn.sendall(h.send(h11.Response(status_code=status, headers=[
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
                (b"x-tilde-egress", b"denied" if status == 403 else b"error")])) or b"")
            conn.sendall(h.send(h11.Data(data=body)) or b"")
            conn.sendall(h.send(h11.EndOfMessage()) or b"")

    def _connect(self, address: str, port: int) -> socket.socket:
        try:
            up = socket.create_connection((address, port), timeout=self.connect_timeout)
        except OSError as exc:
            raise _Refused(502, f"tilde sandbox egress: cannot connect to {address} port "
                                f"{port}: {exc.strerror or exc}") from None
        up.settimeout(self.idle_timeout)
        return up

    # ------------------------------------------------------------------ CONNECT
    def _tunnel(self, h: h11.Connection, conn: socket.socket, address: str, target: Target,
                record: dict[str, Any]) -> None:
        event = _next(h, conn)  # the CONNECT's EndOfMessage
        if not isinstance(event, h11.EndOfMessage):
            raise _Refused(400, "CONNECT must not have a body")
        up = _Counted(self._connect(address, target.port))
        self._track(up.sock, True)
        try:
            conn.sendall(h.send(h11.Response(status_code=200, headers=[],
                                             reason=b"Connection established")) or b"")
            record["status"] = 200
            leftover, _ = h.trailing_data
            if leftover:
                up.sendall(leftover)
            back = threading.Thread(target=self._pump_back, args=(up, conn), daemon=True,
                                    name="sandbox-egress-tunnel")
            back.start()
            with contextlib.suppress(OSError):
                while True:
                    data = conn.recv(CHUNK)
                    if not data:
                        break
                    up.sendall(data)
            with contextlib.suppress(OSError):
                up.sock.shutdown(socket.SHUT_WR)
            back.join()
        finally:
            record.update(bytes_sent=up.sent, bytes_received=up.received)
            self._track(up.sock, False)
            up.sock.close()

    @staticmethod
    def _pump_back(up: _Counted, conn: socket.socket) -> None:
        try:
            while True:
                data = up.recv()
                if not data:
                    break
                conn.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)

    # ------------------------------------------------------------------ plain HTTP
    def _forward(self, h: h11.Connection, conn: socket.socket, req: h11.Request, address: str,
                 target: Target, record: dict[str, Any]) -> bool:
        parts = urlsplit(req.target.decode("latin-1"))
        origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = _end_to_end(req.headers)
        if not any(k == b"host" for k, _ in headers):
            default = 80
            netloc = target.host if target.port == default else f"{target.host}:{target.port}"
            headers.insert(0, (b"host", netloc.encode()))
        if h.client_is_waiting_for_100_continue:
            conn.sendall(h.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        up = _Counted(self._connect(address, target.port))
        self._track(up.sock, True)
        try:
            uh = h11.Connection(h11.CLIENT)
            up.sendall(uh.send(h11.Request(method=req.method, target=origin.encode(),
                                           headers=headers)) or b"")
            while True:  # the request body, as the sandbox sends it
                event = _next(h, conn)
                if isinstance(event, h11.Data):
                    up.sendall(uh.send(h11.Data(data=event.data)) or b"")
                elif isinstance(event, h11.EndOfMessage):
                    up.sendall(uh.send(h11.EndOfMessage()) or b"")
                    break
                else:
                    raise _Refused(400, "the request ended before its body")
            while True:
                event = _next(uh, up)
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    break
                raise h11.RemoteProtocolError("upstream closed before its response")
            record["status"] = event.status_code
            conn.sendall(h.send(h11.Response(status_code=event.status_code,
                                             headers=_end_to_end(event.headers),
                                             reason=event.reason)) or b"")
            while True:
                event = _next(uh, up)
                if isinstance(event, h11.Data):
                    conn.sendall(h.send(h11.Data(data=event.data)) or b"")
                elif isinstance(event, h11.EndOfMessage):
                    conn.sendall(h.send(h11.EndOfMessage()) or b"")
                    break
                else:
                    break
            return True
        except h11.RemoteProtocolError as exc:
            if h.our_state is h11.SEND_RESPONSE:
                raise _Refused(502, f"tilde sandbox egress: bad answer from {target.host}: "
                                    f"{exc}") from None
            record["error"] = f"upstream: {exc}"
            return False
        finally:
            record.update(bytes_sent=up.sent, bytes_received=up.received)
            self._track(up.sock, False)
            up.sock.close()


def _end_to_end(headers: Any) -> list[tuple[bytes, bytes]]:
    """Headers minus hop-by-hop ones and those the Connection header names."""
    pairs = [(bytes(k).lower(), bytes(v)) for k, v in headers]
    named = {t.strip().lower() for k, v in pairs if k == b"connection" for t in v.split(b",")}
    return [(k, v) for k, v in pairs if k not in _HOP_BY_HOP and k not in named]
