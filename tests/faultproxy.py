"""A loopback HTTP/1.1 proxy that injects faults between the mount and a tilde-server.

    with FaultProxy(server.endpoint, seed=7, rate=0.1) as proxy:
        ... point the client at proxy.url ...
        proxy.script("reset_after", method="POST", path=r"/sessions/[^/]+$")
        proxy.counts["reset_after"], proxy.by_route, proxy.requests

Why a proxy and not an injected transport: the daemon runs in its own process, with two
HTTP stacks (httpx and the plain range-GET pool); a proxy on the wire fails both the way
a real network or load balancer does, and leaves the daemon's code as it ships.

Fault kinds (``KINDS``), each decided per request:

- ``reset_before``: the connection is reset (RST) before anything is forwarded.
- ``reset_after``: forwarded, the server's answer read, then the connection reset instead
  of answering: the ambiguous case, the server applied the request.
- ``status_503`` / ``status_429``: answered without forwarding, 429 with ``Retry-After``.
- ``stall``: forwarded, then the answer delayed by ``stall`` seconds (shorter than the
  client's read timeout); ``long_stall`` by ``long_stall`` seconds (set it longer than the
  client's timeout to make it time out after the server applied the request).
- ``truncate``: headers with the full Content-Length, half the body, then close (an
  answer without a body is reset instead, and counted as ``reset_after``).

Random faults hit a request with probability ``rate`` (0 disables them), the kind drawn
from ``mix`` (weights). The draw is seeded by ``seed`` and the request's identity (method,
route, ``path`` query parameter and how many times that identity was seen), not by the
arrival order across connections, so a seed picks the same faults for the same sequence of
requests whatever the threads' interleaving. Scripted rules (`script`) come first and fire
even when ``rate`` is 0. Keep-alive works both ways: one upstream connection per client
connection, bodies re-sent with Content-Length (chunked answers are de-chunked).

Loopback only: it listens on 127.0.0.1 and forwards to the upstream given.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

KINDS = ("reset_before", "reset_after", "status_503", "status_429", "stall", "long_stall",
         "truncate")
DEFAULT_MIX = {"reset_before": 2, "reset_after": 2, "status_503": 2, "status_429": 1,
               "stall": 1, "truncate": 2}
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length",
        "proxy-connection", "te", "trailer", "upgrade"}
_REPO = re.compile(r"/organizations/[^/]+/repositories/[^/]+")
_TOKEN = re.compile(r"/[A-Za-z0-9_.~%-]{24,}")


@dataclass
class Rule:
    """A scripted fault: ``kind`` for requests matching ``method`` and the ``path`` regex
    (searched in the URL path), after ``skip`` matches, ``times`` times."""

    kind: str
    method: str | None = None
    path: str | None = None
    times: int = 1
    skip: int = 0
    seen: int = 0
    fired: int = 0

    def take(self, method: str, path: str) -> bool:
        if self.method is not None and method != self.method:
            return False
        if self.path is not None and not re.search(self.path, path):
            return False
        self.seen += 1
        if self.seen <= self.skip or self.fired >= self.times:
            return False
        self.fired += 1
        return True


def route_of(method: str, path: str) -> str:
    """The request's route for counters: repository prefix and tokens folded."""
    p = _REPO.sub("{R}", path)
    p = re.sub(r"(/sessions/)[^/]+", r"\1{id}", p)
    p = re.sub(r"(/commits/)[^/]+", r"\1{id}", p)
    return f"{method} {_TOKEN.sub('/*', p)}"


def _reset(sock: socket.socket) -> None:
    """Close with RST, not FIN: the peer sees ECONNRESET."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Closed(Exception):
    pass


class FaultProxy:
    def __init__(self, upstream: str, *, seed: int = 0, rate: float = 0.0,
                 mix: dict[str, float] | None = None, stall: float = 0.5,
                 long_stall: float = 35.0, retry_after: str = "1",
                 upstream_timeout: float = 120.0) -> None:
        self.point_at(upstream)
        self.seed, self.rate = seed, rate
        self.mix = dict(mix or DEFAULT_MIX)
        assert set(self.mix) <= set(KINDS), self.mix
        self.stall, self.long_stall, self.retry_after = stall, long_stall, retry_after
        self.upstream_timeout = upstream_timeout
        self.rules: list[Rule] = []
        self.counts: Counter[str] = Counter()  # fault kind -> injected
        self.by_route: Counter[tuple[str, str]] = Counter()  # (route, kind or "ok")
        self.requests = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.port = 0

    def point_at(self, upstream: str) -> None:
        """Forward to ``upstream`` from now on (a server started after the proxy, e.g.
        with ``--signed-url-base`` set to the proxy's URL)."""
        u = urlsplit(upstream)
        assert u.scheme == "http" and u.hostname in ("127.0.0.1", "localhost"), upstream
        self.upstream_host, self.upstream_port = u.hostname, u.port or 80

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        self._listener, self.port = s, s.getsockname()[1]
        t = threading.Thread(target=self._accept, name="faultproxy-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- configuration and figures -------------------------------------------------------
    def script(self, kind: str, *, method: str | None = None, path: str | None = None,
               times: int = 1, skip: int = 0) -> Rule:
        assert kind in KINDS, kind
        rule = Rule(kind, method, path, times, skip)
        with self._lock:
            self.rules.append(rule)
        return rule

    def faults(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "faults_injected": self.faults(),
                    **{k: self.counts[k] for k in KINDS}}

    def _decide(self, method: str, target: str) -> str | None:
        u = urlsplit(target)
        route = route_of(method, u.path)
        q = parse_qs(u.query)
        ident = "|".join([route, *q.get("path", []), *q.get("part_number", [])])
        with self._lock:
            self.requests += 1
            n = self._seen[ident]
            self._seen[ident] += 1
            kind: str | None = None
            for rule in self.rules:
                if rule.take(method, u.path):
                    kind = rule.kind
                    break
            if kind is None and self.rate > 0:
                digest = hashlib.sha256(f"{self.seed}|{ident}|{n}".encode()).digest()
                rng = random.Random(digest)
                if rng.random() < self.rate:
                    kinds = list(self.mix)
                    kind = rng.choices(kinds, weights=[self.mix[k] for k in kinds])[0]
            self.by_route[(route, kind or "ok")] += 1
            return kind

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    # -- serving ------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="faultproxy-conn",
                                 daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        upstream: http.client.HTTPConnection | None = None
        try:
            while not self._stopping:
                request = self._read_request(reader)
                if request is None:
                    return
                method, target, headers, body, client_close = request
                kind = self._decide(method, target)
                if kind == "reset_before":
                    self._count(kind)
                    _reset(conn)
                    return
                if kind in ("status_503", "status_429"):
                    self._count(kind)
                    status = 503 if kind == "status_503" else 429
                    extra = [("Retry-After", self.retry_after)] if status == 429 else []
                    payload = (b'{"message": "injected by faultproxy", "code": "'
                               + kind.encode() + b'", "request_id": ""}')
                    conn.sendall(self._head(status, "Injected", [
                        ("Content-Type", "application/json"), *extra], len(payload))
                        + (payload if method != "HEAD" else b""))
                    continue
                if upstream is None:
                    upstream = http.client.HTTPConnection(
                        self.upstream_host, self.upstream_port, timeout=self.upstream_timeout)
                try:
                    status, reason, rheaders, rbody, close = self._forward(
                        upstream, method, target, headers, body)
                except (OSError, http.client.HTTPException):
                    upstream.close()
                    upstream = None
                    _reset(conn)  # the upstream failed: the client sees a reset
                    return
                if close:
                    upstream.close()
                    upstream = None
                if kind == "truncate" and len(rbody) < 2:
                    kind = "reset_after"
                if kind == "reset_after":
                    self._count(kind)
                    _reset(conn)
                    return
                if kind in ("stall", "long_stall"):
                    self._count(kind)
                    time.sleep(self.stall if kind == "stall" else self.long_stall)
                length = rheaders.pop("__length__", None)
                fwd = [(k, v) for k, v in rheaders.items()]
                if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                    head = self._head(status, reason, fwd, None if length is None
                                      else int(length))
                    conn.sendall(head)
                    continue
                if kind == "truncate":
                    self._count(kind)
                    conn.sendall(self._head(status, reason, fwd, len(rbody))
                                 + rbody[:len(rbody) // 2])
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)
                    return
                conn.sendall(self._head(status, reason, fwd, len(rbody)) + rbody)
                if client_close:
                    return
        except (OSError, _Closed, ValueError):
            return
        finally:
            if upstream is not None:
                upstream.close()
            with contextlib.suppress(OSError):
                reader.close()
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock:
                self._conns.discard(conn)

    @staticmethod
    def _head(status: int, reason: str, headers: list[tuple[str, str]],
              length: int | None) -> bytes:
        lines = [f"HTTP/1.1 {status} {reason or 'Status'}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    @staticmethod
    def _read_request(reader: Any) -> tuple[str, str, dict[str, str], bytes, bool] | None:
        line = reader.readline(65537)
        while line in (b"\r\n", b"\n"):
            line = reader.readline(65537)
        if not line:
            return None
        method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        headers: dict[str, str] = {}
        order: list[tuple[str, str]] = []
        while True:
            h = reader.readline(65537)
            if not h:
                raise _Closed
            if h in (b"\r\n", b"\n"):
                break
            k, _, v = h.decode("latin-1").partition(":")
            order.append((k.strip(), v.strip()))
            headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(reader.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while reader.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(reader.read(size))
                reader.readline(65537)
            body = b"".join(parts)
        else:
            n = int(headers.get("content-length", "0") or 0)
            body = reader.read(n) if n else b""
            if len(body) != n:
                raise _Closed
        kept = {k: v for k, v in order if k.lower() not in _HOP}
        return method, target, kept, body, headers.get("connection", "").lower() == "close"

    @staticmethod
    def _forward(upstream: http.client.HTTPConnection, method: str, target: str,
                 headers: dict[str, str], body: bytes
                 ) -> tuple[int, str, dict[str, str], bytes, bool]:
        """Send one request upstream (a stale kept-alive connection is retried once, before
        any byte of an answer); returns status, reason, headers, body, must-close."""
        for attempt in (0, 1):
            try:
                upstream.putrequest(method, target, skip_host=True,
                                    skip_accept_encoding=True)
                for k, v in headers.items():
                    upstream.putheader(k, v)
                if body or method in ("POST", "PUT", "PATCH"):
                    upstream.putheader("Content-Length", str(len(body)))
                upstream.endheaders(body or None)
                r = upstream.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                upstream.close()
                if attempt:
                    raise
        data = r.read()
        out: dict[str, str] = {}
        for k, v in r.getheaders():
            if k.lower() == "content-length":
                out["__length__"] = v
            elif k.lower() not in _HOP:
                out[k] = out[k] + ", " + v if k in out and k.lower() != "set-cookie" else v
        return r.status, r.reason, out, data, bool(r.will_close)
