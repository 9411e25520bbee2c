"""Range GETs over plain HTTP/1.1, each body read straight into one buffer of its size.

    pool = RangeGetPool("http://127.0.0.1:8080", headers={"Authorization": ...}, timeout=30)
    status, headers, body = await pool.get("/api/v1/...?path=big.bin", start, end)
    await pool.aclose()

Why: reading object ranges is the daemon's hot path, and through httpx every byte is
copied by h11's receive buffer, again by ``Response.aread``'s join, and travels in at most
``READ_NUM_BYTES`` per trip through trio, httpcore and h11. Here a 206 body of known
length is received with ``recv_into`` into a ``bytearray`` of exactly that length: about
half the daemon's CPU per byte fetched (docs/performance.md, workload A).

Subtleties:
1. Only what this path can do exactly is done here; anything else raises `Unsupported`
   and the caller goes back to httpx for good: https (TLS), a response without
   Content-Length (chunked), a 200 to a Range request (the server ignores ranges), a
   head larger than 64 KiB. The request target comes encoded from the caller (which builds
   it with httpx's URL rules from ``tilde._wire``); one holding CR, LF or a space is
   refused before anything is sent.
2. A response other than 206 is returned with its headers and body (at most 1 MiB read),
   so the caller can follow a redirect or use its status -> exception table; a 206 whose
   Content-Range does not start at ``start`` is a `TransportFailure`.
5. One pool serves one origin (scheme, host, port); its fixed headers (Authorization or
   not) are the caller's choice per origin.
3. Connections are kept alive and reused (``Connection: close`` honoured). A connection is
   returned to the pool only after its response was read completely; any failure closes
   it. A reused connection that breaks before the first byte of the response (the server
   closed it while idle) is retried once on a new one, which is safe for a GET.
4. Every request runs under one deadline (``timeout``); failures raise
   `TransportFailure`, which the caller retries with its own backoff.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

import trio

MAX_HEAD = 64 * 1024
MAX_ERROR_BODY = 1024 * 1024


_BROKEN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class Unsupported(Exception):
    """This endpoint or response needs the general HTTP client."""


class TransportFailure(Exception):
    """The request failed on the way (connection, timeout, malformed response)."""


class _Conn:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()  # received bytes not consumed yet
        #: a byte of the current response arrived (a failure before it is a stale socket)
        self.answered = False

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.stream.aclose()


class RangeGetPool:
    def __init__(self, base_url: str, *, headers: dict[str, str], timeout: float,
                 max_idle: int = 16) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname:
            raise Unsupported(f"{url.scheme or 'no'} scheme")
        self.host = url.hostname
        self.port = url.port or 80
        host_header = url.netloc.rpartition("@")[2]
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in
                              {"Host": host_header, "Accept-Encoding": "identity",
                               **headers}.items())
        self.timeout = timeout
        self._idle: list[_Conn] = []
        self._max_idle = max_idle
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()

    async def get(self, target: str, start: int,
                  end: int) -> tuple[int, dict[str, str], bytearray]:
        """GET bytes [start, end) of ``target`` (the request target as sent: path and query,
        already percent-encoded): (206, headers, body), or another status with its headers
        and (error) body, so the caller can follow a redirect or raise."""
        if any(c in target for c in "\r\n ") or not target.startswith("/"):
            raise TransportFailure(f"unsafe request target {target[:80]!r}")
        request = (f"GET {target} HTTP/1.1\r\n{self._fixed}"
                   f"Range: bytes={start}-{end - 1}\r\n\r\n").encode()
        for _ in range(2):
            conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            try:
                with trio.fail_after(self.timeout):
                    if conn is None:
                        conn = _Conn(await trio.open_tcp_stream(self.host, self.port))
                    result, keep = await self._exchange(conn, request, start, end)
            except BaseException as e:
                if conn is not None:
                    await conn.aclose()
                if isinstance(e, trio.TooSlowError):
                    raise TransportFailure(f"no answer within {self.timeout} s") from None
                if isinstance(e, _BROKEN):
                    if reused and conn is not None and not conn.answered:
                        continue  # closed by the server while idle: once more, afresh
                    raise TransportFailure(repr(e)) from e
                raise
            if keep and not self._closed and len(self._idle) < self._max_idle:
                conn.answered = False
                self._idle.append(conn)
            else:
                await conn.aclose()
            return result
        raise TransportFailure("connection closed before the response")

    async def _exchange(self, conn: _Conn, request: bytes, start: int,
                        end: int) -> tuple[tuple[int, dict[str, str], bytearray], bool]:
        await conn.stream.send_all(request)
        status, headers = await self._read_head(conn)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise Unsupported("chunked response")
        try:
            length = int(headers["content-length"])
        except (KeyError, ValueError):
            raise Unsupported("response without Content-Length") from None
        if length < 0:
            raise TransportFailure(f"Content-Length {length}")
        keep = "close" not in headers.get("connection", "").lower()
        if status != 206:
            if 200 <= status < 300:
                raise Unsupported(f"{status} to a Range request")
            if length > MAX_ERROR_BODY:
                raise TransportFailure(f"{status} with a {length}-byte body")
            return (status, headers, await self._read_body(conn, length)), keep
        first = headers.get("content-range", "").removeprefix("bytes ").partition("-")[0]
        if first != str(start) or length > end - start:
            raise TransportFailure(f"Content-Range {headers.get('content-range')!r} "
                                   f"for bytes {start}-{end - 1}")
        return (206, headers, await self._read_body(conn, length)), keep

    async def _read_head(self, conn: _Conn) -> tuple[int, dict[str, str]]:
        buf = conn.buffer
        while True:
            cut = buf.find(b"\r\n\r\n")
            if cut >= 0:
                break
            if len(buf) > MAX_HEAD:
                raise Unsupported("response head larger than 64 KiB")
            chunk = await conn.stream.receive_some(65536)
            if not chunk:
                raise trio.BrokenResourceError("connection closed before a complete head")
            conn.answered = True
            buf += chunk
        head = bytes(buf[:cut]).decode("latin-1")
        del buf[:cut + 4]
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise TransportFailure(f"malformed status line {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def _read_body(self, conn: _Conn, length: int) -> bytearray:
        body = bytearray(length)
        view = memoryview(body)
        got = min(len(conn.buffer), length)
        view[:got] = conn.buffer[:got]
        del conn.buffer[:got]
        sock = conn.stream.socket
        while got < length:
            n = await sock.recv_into(view[got:])
            if n == 0:
                raise TransportFailure(f"connection closed after {got} of {length} bytes")
            got += n
        return body

