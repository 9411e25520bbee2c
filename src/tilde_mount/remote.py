"""The async API client the filesystem needs: `Remote` (a Protocol) and `HttpRemote`.

    HttpRemote(endpoint: str, repository: "org/repo", api_key: str | None, *,
               single_upload_limit=_wire.SINGLE_UPLOAD_LIMIT,
               part_size=_wire.MULTIPART_PART_SIZE, part_concurrency=4,
               max_connections=64, retries=5, backoff_base=0.2, backoff_cap=8.0,
               timeout=30.0, transport: httpx.AsyncBaseTransport | None = None,
               plain_range_gets=True)   # False: every read through httpx (also with transport)
    await remote.aclose()

Every route, query and status->exception mapping comes from ``tilde._wire``; this module
only does the I/O, the retries and the counting.

Subtleties:
1. A `View` says what to read: a session (``session_id``), a commit (``ref``, this
   project's extension, for ``--read-only``/``--commit``), or neither (latest commit).
2. Transient failures (connection errors, timeouts, 5xx except 501, 429) are retried with
   capped exponential backoff and jitter (at least ``Retry-After`` when the answer has
   one) before the exception propagates; non-idempotent requests as subtlety 10 says.
3. Upload bodies are streamed from an `UploadSource` (a staged file) and re-opened on
   every attempt, so a retry never resends a half-consumed stream. Sizes are known, so
   bodies carry Content-Length (no chunked encoding).
4. ETags are normalised to the bare checksum (HEAD/GET send it quoted, listings do not),
   so one object has one cache key whichever way it was seen.
5. Presigned PUTs never carry the Authorization header; API calls always do.
6. Counters (requests by kind, bytes in/out, retries) are plain ints mutated between
   awaits; ``stats()`` is a snapshot.
7. Range reads over plain http go through `rangeget.RangeGetPool` (the hot path, at half
   the CPU per byte of httpx) with the same retries and error table; https, an injected
   transport, or a response it cannot handle keep them on httpx. One pool per origin.
8. Downloads through redirects (the hosted service answers ``GET {R}/object`` with 307 to
   an expiring signed URL, maybe on another origin): the Location is cached per (path,
   view, ETag), so an object costs one redirect per URL lifetime and every later range
   goes straight to the URL. Once the server has redirected, concurrent misses of one key
   wait for the first one's resolution (a `trio.Event` per key); before that, reads do not
   wait on each other (a streaming server needs no resolution). A cached URL that answers
   401/403/404/410, a redirect, or another ETag than the one asked for is dropped and the
   API asked again. The bearer is never sent to another origin than the API's.
9. Uploads are the plan of ``tilde._wire.uploads`` (today's routes first, the legacy ones
   when the server has only those, multipart with its 501 fallback), driven here with
   retries and parallel parts; what was learned of the server is kept for the daemon's life.
10. Ambiguous failures: a reset, a timeout or a cut body after the request may have been
   sent, or a 500/502/504, leave it unknown whether the server applied the request. Safe
   to repeat are reads, uploads of the same bytes, copies and batch deletes. The others
   find out before they report or repeat (`_ambiguous`, docs/reliability.md):
   - commit: the log head is read before the first attempt; after an ambiguous failure
     (or a 404/409 on a session an earlier commit call failed on) the session is probed:
     pending approval (HEAD .../approve 2xx) means it landed as approval_required; open
     (its changes list answers) means it did not land, so it is sent again; closed means
     it landed if the log holds a commit newer than that head with its message and
     metadata (a server may add keys; the spec has no GET of a session), and is an
     error otherwise.
   - rollback, delete of one object: a 404 after an ambiguous attempt means it landed.
   - finalize, multipart complete: a refusal after an ambiguous attempt (the upload was
     consumed) is checked by HEAD of the object in the session (the ETag the upload must
     have, and its size); when that cannot confirm it, the whole upload starts over.
   - session create: repeated; an extra, empty session may be left open (logged).
11. POSIX attributes travel as user metadata (tilde._wire.posix): with the upload's last
   step, in listings and HEAD answers; listings ask for directory markers
   (``markers=true``, tilde-server's extension: a prefix row carries its ``DIR/`` marker
   object); a server without it sends none and markers are asked for by HEAD.
"""


from __future__ import annotations

import email.utils
import hashlib
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote, unquote, urljoin

import cachetools
import httpx
import trio

from tilde import _wire
from tilde import exceptions as exc
from tilde._values import EntryRecord

from . import rangeget
from .errors import is_transient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class View:
    """What reads see: a session, a commit (``ref``), or the latest commit (neither)."""

    session_id: str | None = None
    ref: str | None = None


@dataclass(frozen=True)
class RemoteObject:
    path: str
    size: int
    etag: str
    mtime_ns: int = 0
    #: the object's user metadata (POSIX attributes among it: tilde._wire.posix)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ListPage:
    objects: list[RemoteObject]
    prefixes: list[str]          # common prefixes, delimiter included ("a/b/")
    next_after: str | None       # None: this was the last page
    #: directory markers of those prefixes, where the server says (subtlety 11)
    markers: Mapping[str, RemoteObject] = field(default_factory=dict)
    #: the server attaches every marker: a prefix without one has none
    markers_complete: bool = False


@dataclass(frozen=True)
class CommitOutcome:
    """``committed`` (with ``commit_id``) or ``approval_required`` (with ``web_url``)."""

    status: str
    commit_id: str | None = None
    web_url: str | None = None


class UploadSource(Protocol):
    size: int

    def chunks(self, start: int, end: int) -> AsyncIterator[bytes]: ...


class BytesSource:
    """An in-memory upload body (tests, small objects)."""

    def __init__(self, data: bytes, chunk: int = 1024 * 1024) -> None:
        self.data, self.size, self.chunk = data, len(data), chunk

    async def chunks(self, start: int, end: int) -> AsyncIterator[bytes]:
        for pos in range(start, end, self.chunk):
            yield self.data[pos:min(pos + self.chunk, end)]


class Remote(Protocol):
    repository: str
    endpoint: str

    async def head(self, path: str, view: View) -> RemoteObject: ...
    async def list_page(self, prefix: str, view: View, *, after: str | None = None,
                        amount: int = 1000, delimiter: str | None = "/") -> ListPage: ...
    async def read_range(self, path: str, start: int, end: int, view: View,
                         etag: str | None = None) -> bytes: ...
    async def upload(self, path: str, source: UploadSource, *, session_id: str,
                     metadata: Mapping[str, str] | None = None) -> str: ...
    async def batch_upload_supported(self, session_id: str) -> bool: ...
    async def upload_batch(self, items: Sequence[tuple[str, bytes]], *, session_id: str,
                           metadata: Sequence[Mapping[str, str] | None] = ()) -> list[str]: ...
    async def set_metadata(self, path: str, metadata: Mapping[str, str], *,
                           session_id: str) -> bool: ...
    async def rebase(self, session_id: str) -> str | None: ...
    async def copy(self, source: str, destination: str, *, session_id: str) -> None: ...
    async def delete(self, path: str, *, session_id: str) -> None: ...
    async def delete_many(self, paths: list[str], *, session_id: str) -> int: ...
    async def create_session(self) -> str: ...
    async def commit(self, session_id: str, message: str,
                     metadata: Mapping[str, str] | None = None) -> CommitOutcome: ...
    async def rollback(self, session_id: str) -> None: ...
    async def list_changes(self, session_id: str, *, after: str | None = None,
                           amount: int = 1000) -> tuple[list[EntryRecord], str | None]: ...
    async def changed_between(self, left: str | None,
                              right: str) -> dict[str, str | None]: ...
    async def get_repository(self) -> dict[str, Any]: ...
    async def latest_commit_id(self) -> str | None: ...
    def stats(self) -> dict[str, Any]: ...
    async def aclose(self) -> None: ...


def normalize_etag(etag: str | None) -> str:
    if not etag:
        return ""
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def _ns(value: datetime | None) -> int:
    """Whole seconds, as nanoseconds.

    A listing carries microseconds but HEAD's Last-Modified only seconds; both must give
    the same mtime, or a stat refreshed through HEAD looks like a change and the kernel
    drops the file's page cache (and rsync/make see the file as modified)."""
    return int(value.timestamp()) * 1_000_000_000 if value is not None else 0


def _user_metadata(headers: httpx.Headers) -> dict[str, str]:
    """``X-Tilde-Meta-<key>`` headers as metadata (keys arrive lowercased; a value the
    server had to percent-encode is decoded)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower().startswith(_META_HEADER):
            out[name[len(_META_HEADER):].lower()] = unquote(value) if "%" in value else value
    return out


_META_HEADER = "x-tilde-meta-"


def _http_date_ns(value: str | None) -> int:
    if not value:
        return 0
    try:
        return _ns(email.utils.parsedate_to_datetime(value))
    except (TypeError, ValueError):
        return 0


#: signed download URLs kept (one per object version read) and for how long at most; one
#: that stops working sooner is resolved again on its first refusal
LOCATION_CACHE_SIZE = 4096
LOCATION_TTL = 600.0
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


@dataclass(frozen=True)
class _Target:
    """An absolute URL parsed once: what a range GET of it needs on every read."""

    url: str
    origin: str  # scheme://host:port, the key of its connection pool
    request_target: str  # path and query as sent, percent-encoded

    @classmethod
    def of(cls, url: str | httpx.URL) -> _Target:
        u = httpx.URL(url)
        port = u.port or (443 if u.scheme == "https" else 80)
        return cls(str(u), f"{u.scheme}://{u.host}:{port}", u.raw_path.decode("ascii"))


def _slice(status: int, headers: Mapping[str, str], body: bytes, start: int, end: int,
           url: str) -> bytes:
    """The bytes [start, end) of a range answer (a 200 that ignored Range is cut); any
    other status raises from the one status -> exception table."""
    if status == 206:
        return body[:end - start]
    if status == 200:
        return body[start:end] if "content-range" not in headers else body[:end - start]
    raise _wire.error_for_response(status, method="GET", url=url, body=bytes(body))


def _json_body(r: httpx.Response) -> Any:
    if not r.content:
        return None
    try:
        return r.json()
    except ValueError:
        raise exc.SerializationError(
            f"{r.request.method} {r.request.url}: the answer is not JSON") from None


def _first_failure(group: BaseExceptionGroup) -> BaseException:
    """The exception a failed part ended the nursery with (not its siblings' Cancelled)."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(group)
    real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    return (real or leaves)[0]


def _ambiguous(error: exc.TildeError) -> bool:
    """Whether the server may have applied a request that failed this way (subtlety 10):
    not when no connection was made, nor when the server said 429 or 503."""
    if isinstance(error, exc.TransportError):
        return not isinstance(error.cause, (httpx.ConnectError, httpx.ConnectTimeout,
                                            httpx.PoolTimeout))
    return isinstance(error, exc.APIError) and error.status_code in (500, 502, 504)


def _retry_after(value: str | None) -> float:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date); 0 if none."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - datetime.now(when.tzinfo).timestamp())


def _multipart_etag(parts: Sequence[tuple[int, str]]) -> str:
    """The ETag a multipart object of these parts gets (MD5 of the parts' MD5s, "-N")."""
    if not parts:
        return hashlib.md5(b"", usedforsecurity=False).hexdigest()
    try:
        digests = b"".join(bytes.fromhex(normalize_etag(e)) for _, e in parts)
    except ValueError:
        return ""
    return f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"


class _StartOver(Exception):
    """An upload whose last step may or may not have landed: upload it again."""


#: bytes per socket read for HTTP/1.1 responses in this process (httpcore reads 64 KiB)
HTTP_READ_BYTES = 1024 * 1024


def raise_http_read_size(size: int = HTTP_READ_BYTES) -> None:
    """Let httpcore read response bodies ``size`` bytes per socket read (daemon only).

    Range GET bodies are the daemon's hot path: at httpcore's 64 KiB a 2 MiB body costs
    32 socket reads, each a trip through trio, httpcore and h11; 1 MiB reads cut the
    daemon's CPU per GiB read by about a quarter (A +30 %, docs/performance.md). It is a
    class attribute of httpcore's HTTP/1.1 connection, so this is process-wide: the daemon
    calls it once at start; the bundled client library never does.
    """
    import httpcore._async.http11 as http11

    if getattr(http11.AsyncHTTP11Connection, "READ_NUM_BYTES", 0) < size:
        http11.AsyncHTTP11Connection.READ_NUM_BYTES = size


class HttpRemote:
    def __init__(
        self,
        endpoint: str,
        repository: str,
        api_key: str | None,
        *,
        single_upload_limit: int = _wire.SINGLE_UPLOAD_LIMIT,
        part_size: int = _wire.MULTIPART_PART_SIZE,
        part_concurrency: int = 4,
        max_connections: int = 64,
        retries: int = 5,
        backoff_base: float = 0.2,
        backoff_cap: float = 8.0,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        plain_range_gets: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.repository = repository
        self.org, self.repo = _wire.split_repo_path(repository)
        self.base = _wire.base_url(endpoint)
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.single_upload_limit = single_upload_limit
        self.part_size = part_size
        self.part_concurrency = part_concurrency
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._upload_state = _wire.UploadState()
        #: signed download URLs a redirect gave, by (path, view, etag) (subtlety 8)
        self._locations: cachetools.TTLCache[tuple[str, View, str], _Target] = \
            cachetools.TTLCache(maxsize=LOCATION_CACHE_SIZE, ttl=LOCATION_TTL)
        #: once the server has redirected, concurrent first reads of one object version
        #: wait for one resolution (architecture.md 4) instead of each asking the API
        self._redirecting = False
        self._resolving: dict[tuple[str, View, str], trio.Event] = {}
        self._client = httpx.AsyncClient(
            base_url=self.base,
            headers={"User-Agent": f"{_wire.USER_AGENT} tilde-mount"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            http1=True, http2=False, follow_redirects=False, transport=transport,
        )
        self._timeout = timeout
        self._origin = _Target.of(self.base).origin
        #: plain-HTTP range GET pools by origin; None once httpx must do every read
        self._pools: dict[str, rangeget.RangeGetPool] | None = (
            {} if transport is None and plain_range_gets else None)
        self.requests: Counter[str] = Counter()
        self.bytes_in = 0
        self.bytes_out = 0
        self.retried = 0
        #: download redirects followed (each a "read" request answered 307)
        self.redirects = 0
        #: per session being committed: the head before its first commit attempt, and the
        #: ambiguous failures so far (subtlety 10; kept across calls until an outcome)
        self._commit_heads: dict[str, str | None] = {}
        #: whether the server has the metadata-only update route (None: not known yet)
        self._metadata_route: bool | None = None
        self._commit_lost: dict[str, list[exc.TildeError]] = {}

    # -- plumbing ---------------------------------------------------------------------
    async def _send(
        self,
        kind: str,
        req: _wire.WireRequest,
        *,
        url: str | None = None,
        content: Callable[[], AsyncIterator[bytes]] | None = None,
        content_length: int | None = None,
        redirect_ok: bool = False,
        idempotent: bool = True,
        lost: list[exc.TildeError] | None = None,
    ) -> httpx.Response:
        """One API call with retries; returns a 2xx (or 3xx if ``redirect_ok``) response.

        ``idempotent=False``: an ambiguous failure (subtlety 10) is raised at once, for the
        caller to find out whether it landed. ``lost`` collects the ambiguous failures of
        a call that is retried anyway, so that the caller can read a later refusal right.
        """
        headers = dict(req.headers)
        if url is None:
            headers.update(self._auth)
        else:
            headers["Content-Type"] = _wire.UPLOAD_CONTENT_TYPE
        if content_length is not None:
            headers["Content-Length"] = str(content_length)
        attempt = 0
        while True:
            error: exc.TildeError
            wait = 0.0
            try:
                self.requests[kind] += 1
                response = await self._client.request(
                    req.method, url if url is not None else req.path,
                    params=list(req.params) if url is None else None, json=req.json,
                    headers=headers, content=content() if content is not None else None)
            except httpx.TransportError as e:
                error = exc.TransportError(f"{req.method} {url or req.path}: {e!r}", e)
            else:
                self.bytes_in += len(response.content)
                if content_length:
                    self.bytes_out += content_length
                status = response.status_code
                if 200 <= status < 300 or (redirect_ok and 300 <= status < 400):
                    return response
                wait = _retry_after(response.headers.get("Retry-After"))
                if url is not None:  # presigned PUT: any non-2xx is a transport error
                    error = exc.TransportError(f"PUT {url} -> {status}")
                    if not (status >= 500 or status == 429):
                        raise error
                else:
                    error = _wire.error_for_response(status, method=req.method,
                                                     url=str(response.request.url),
                                                     body=response.content)
            if _ambiguous(error):
                if not idempotent:
                    raise error
                if lost is not None:
                    lost.append(error)
            attempt = await self._retry_or_raise(kind, error, attempt, True, wait)

    async def _retry_or_raise(self, kind: str, error: exc.TildeError, attempt: int,
                              safe_to_retry: bool, at_least: float = 0.0) -> int:
        """Sleep before the next attempt (capped exponential backoff with jitter, at least
        ``at_least``, a Retry-After, within the cap) and return its number, or raise
        ``error`` when it is not worth another attempt."""
        if not (safe_to_retry and is_transient(error)) or attempt >= self.retries:
            raise error
        delay = min(self.backoff_cap, self.backoff_base * 2 ** attempt)
        delay = max(delay * random.uniform(0.5, 1.0), min(at_least, self.backoff_cap))
        attempt += 1
        self.retried += 1
        log.info("%s failed (%s); retry %d in %.2fs", kind, error, attempt, delay)
        await trio.sleep(delay)
        return attempt

    # -- reads ------------------------------------------------------------------------
    async def head(self, path: str, view: View) -> RemoteObject:
        r = await self._send("head", _wire.head_object(self.org, self.repo, path,
                                                        session_id=view.session_id, ref=view.ref))
        meta = _wire.parse_object_metadata(r.headers)
        return RemoteObject(path, meta.content_length or 0, normalize_etag(meta.etag),
                            _http_date_ns(r.headers.get("Last-Modified")),
                            _user_metadata(r.headers))

    async def list_page(self, prefix: str, view: View, *, after: str | None = None,
                        amount: int = 1000, delimiter: str | None = "/") -> ListPage:
        r = await self._send("list", _wire.list_objects(
            self.org, self.repo, prefix=prefix or None, delimiter=delimiter, after=after,
            amount=amount, session_id=view.session_id, ref=view.ref,
            markers=delimiter is not None))
        body = r.json()
        page = _wire.parse_page(body, _wire.parse_listing_entry)
        objects: list[RemoteObject] = []
        prefixes: list[str] = []
        markers: dict[str, RemoteObject] = {}
        for item in page.items:
            e = item.entry
            obj = RemoteObject(item.path, (e.size or 0) if e else 0,
                               normalize_etag(e.e_tag if e else ""),
                               _ns(e.last_modified) if e else 0,
                               dict(e.metadata or {}) if e else {})
            if item.type == "prefix":
                prefixes.append(item.path)
                if e is not None:
                    markers[item.path] = obj
            else:
                objects.append(obj)
        return ListPage(objects, prefixes, page.next_after, markers,
                        markers_complete=isinstance(body, dict) and body.get("markers") is True)

    async def read_range(self, path: str, start: int, end: int, view: View,
                         etag: str | None = None) -> bytes:
        """Bytes [start, end) of ``path``, the version ``etag`` if the caller knows it.

        A server that streams answers the API GET itself; one that redirects (the hosted
        service, ``tilde-server --downloads redirect``) answers 307 to a signed URL, which
        is cached and read directly until it stops working (subtlety 8).
        """
        key = (path, view, etag or "")
        signed = self._locations.get(key)
        if signed is None and key in self._resolving:  # another read is resolving it
            await self._resolving[key].wait()
            signed = self._locations.get(key)
        if signed is not None:
            got = await self._read_url(signed, start, end, etag, cached=True)
            if got is not None:
                return got
            self._locations.pop(key, None)
        resolving = None
        if self._redirecting and key not in self._resolving:
            resolving = self._resolving[key] = trio.Event()
        try:
            return await self._read_api(key, path, start, end, view, etag)
        finally:
            if resolving is not None:
                del self._resolving[key]
                resolving.set()

    async def _read_api(self, key: tuple[str, View, str], path: str, start: int, end: int,
                        view: View, etag: str | None) -> bytes:
        """A range through ``GET {R}/object``: its own answer, or the signed URL it
        redirects to (then kept under ``key``)."""
        req = _wire.get_object(self.org, self.repo, path, byte_range=(start, end - 1),
                               session_id=view.session_id, ref=view.ref)
        # percent-encoded here: no byte of an org or repo name can break the request line
        api = _Target.of(httpx.URL(self.base + quote(req.path, safe=_PATH_SAFE),
                                   params=list(req.params)))
        status, headers, body = await self._ranged_get("read", api, start, end)
        if 300 <= status < 400:
            location = headers.get("location")
            if not location:
                raise exc.TransportError(f"GET {api.url} answered {status} without Location")
            signed = _Target.of(urljoin(api.url, location))
            self.redirects += 1
            self._redirecting = True
            got = await self._read_url(signed, start, end, etag, cached=False)
            assert got is not None
            self._locations[key] = signed
            return got
        return _slice(status, headers, body, start, end, api.url)

    async def _read_url(self, url: _Target, start: int, end: int, etag: str | None, *,
                        cached: bool) -> bytes | None:
        """A range of a signed download URL; None when a cached URL no longer serves the
        version asked for (expired or revoked: 401/403/404/410, a redirect, another ETag)."""
        status, headers, body = await self._ranged_get("read_url", url, start, end)
        stale = status in (401, 403, 404, 410) or 300 <= status < 400 or (
            etag is not None and 200 <= status < 300
            and normalize_etag(headers.get("etag")) not in ("", etag))
        if stale and cached:
            log.debug("a signed URL no longer serves it (%d); resolving again", status)
            return None
        if 300 <= status < 400:
            raise exc.TransportError(f"GET of a download URL answered {status}")
        return _slice(status, headers, body, start, end, url.url)

    async def _ranged_get(self, kind: str, url: _Target, start: int,
                          end: int) -> tuple[int, Mapping[str, str], bytes]:
        """One range GET of an absolute URL, transient failures retried (subtlety 2); the
        answer that ended it, whatever its status. The bearer goes only to the API's
        origin (subtlety 8)."""
        attempt = 0
        while True:
            error: exc.TildeError
            self.requests[kind] += 1
            try:
                status, headers, body = await self._get_once(url, start, end)
            except (rangeget.TransportFailure, httpx.TransportError) as e:
                error = exc.TransportError(f"GET {url.url}: {e!r}", e)
            else:
                self.bytes_in += len(body)
                if status < 400:
                    return status, headers, body
                error = _wire.error_for_response(status, method="GET", url=url.url,
                                                 body=bytes(body))
                if not is_transient(error):
                    return status, headers, body
            attempt = await self._retry_or_raise(kind, error, attempt, True)

    async def _get_once(self, url: _Target, start: int,
                        end: int) -> tuple[int, Mapping[str, str], bytes]:
        auth = self._auth if url.origin == self._origin else {}
        if self._pools is not None:
            try:
                pool = self._pools.get(url.origin)
                if pool is None:
                    pool = self._pools[url.origin] = rangeget.RangeGetPool(
                        url.origin, timeout=self._timeout,
                        headers={"User-Agent": f"{_wire.USER_AGENT} tilde-mount", **auth})
                status, headers, body = await pool.get(url.request_target, start, end)
                # a bytearray: the block cache copies it into blocks once
                return status, headers, body  # type: ignore[return-value]
            except rangeget.Unsupported as e:
                log.info("plain range GETs unavailable (%s); using httpx", e)
                pools, self._pools = self._pools, None
                for p in pools.values():
                    await p.aclose()
        r = await self._client.get(url.url,
                                   headers={"Range": f"bytes={start}-{end - 1}", **auth})
        return r.status_code, r.headers, r.content

    # -- writes -----------------------------------------------------------------------
    async def upload(self, path: str, source: UploadSource, *, session_id: str,
                     metadata: Mapping[str, str] | None = None) -> str:
        """Upload ``source`` as ``path``; returns the new ETag (normalised). The requests,
        dialects and fallbacks are the plan of ``tilde._wire.uploads``, as in the client;
        an upload whose last step may or may not have landed starts over (subtlety 10)."""
        for again in range(3):
            try:
                return await self._upload_once(path, source, session_id=session_id,
                                               metadata=metadata)
            except _StartOver as e:
                if again == 2:
                    raise exc.TransportError(f"upload of {path!r}: {e}") from None
                log.warning("upload of %r: %s; uploading it again", path, e)
        raise AssertionError("unreachable")

    async def _upload_once(self, path: str, source: UploadSource, *, session_id: str,
                           metadata: Mapping[str, str] | None) -> str:
        plan = _wire.put_plan(self.org, self.repo, path, session_id=session_id, base=self.base,
                              state=self._upload_state, size=source.size,
                              single_limit=self.single_upload_limit, metadata=metadata)
        reply: _wire.Reply | None = None
        error: BaseException | None = None
        #: the ETag the object gets if the last step lands (checked after a lost answer)
        expect = ""
        while True:
            try:
                step = plan.throw(error) if error is not None else plan.send(reply)  # type: ignore[arg-type]
            except StopIteration as stop:
                return normalize_etag(stop.value.etag)
            reply, error = None, None
            try:
                # an abort runs to its end even when the upload was cancelled
                aborting = isinstance(step, _wire.Call) and step.kind == "multipart_abort"
                with trio.CancelScope(shield=aborting):
                    if isinstance(step, _wire.Call) and step.kind in ("finalize",
                                                                      "multipart_complete"):
                        got = await self._settle_upload(step, path, session_id, expect,
                                                        source.size)
                    else:
                        got = await self._perform(step, source)
                if isinstance(step, _wire.PutBody):
                    expect = normalize_etag(got.headers.get("ETag"))
                elif isinstance(step, _wire.PutParts):
                    expect = _multipart_etag(got.body[0])
                reply = got
            except _StartOver:
                plan.close()
                raise
            except BaseException as e:  # the plan decides; it re-raises what it does not handle
                error = e

    async def _settle_upload(self, step: _wire.Call, path: str, session_id: str,
                             expect: str, size: int) -> _wire.Reply:
        """The step that makes an upload an object (finalize, multipart complete), sent
        again after an ambiguous failure; a refusal then (the upload was consumed by the
        attempt whose answer was lost) is checked against the object in the session."""
        lost: list[exc.TildeError] = []
        try:
            r = await self._send(step.kind, step.request, lost=lost)
        except exc.APIError as e:
            if not lost or e.status_code not in (400, 403, 404, 409):
                raise
            try:
                now: RemoteObject | None = await self.head(path, View(session_id=session_id))
            except exc.NotFoundError:
                now = None
            if now is not None and expect and now.etag == expect and now.size == size:
                log.warning("%s of %r: the answer was lost (%s) but it landed", step.kind,
                            path, lost[0])
                return _wire.Reply(200, {}, {"path": path, "etag": expect})
            raise _StartOver(f"{step.kind} answered {e.status_code} after {lost[0]}") from None
        return _wire.Reply(r.status_code, r.headers,
                           _json_body(r) if 200 <= r.status_code < 300 else None)

    async def _perform(self, step: _wire.Step, source: UploadSource) -> _wire.Reply:
        if isinstance(step, _wire.Call):
            r = await self._send(step.kind, step.request, redirect_ok=step.redirect_ok)
            return _wire.Reply(r.status_code, r.headers,
                               _json_body(r) if 200 <= r.status_code < 300 else None)
        if isinstance(step, _wire.PutBody):
            r = await self._send("put", _wire.WireRequest("PUT", step.url), url=step.url,
                                 content=lambda: source.chunks(0, source.size),
                                 content_length=source.size)
            return _wire.Reply(r.status_code, r.headers)
        lookup = step.lookup
        ranges = [(n + 1, start, min(start + self.part_size, source.size))
                  for n, start in enumerate(range(0, source.size, self.part_size))]
        etags: dict[int, str] = {}
        limiter = trio.CapacityLimiter(self.part_concurrency)

        async def part(number: int, start: int, end: int) -> None:
            async with limiter:
                answer = await self._perform(
                    _wire.Call("part_url", lookup(number), redirect_ok=True), source)
                url = _wire.part_upload_url(self.base, answer.status, answer.headers,
                                            answer.body)
                put = await self._send("put_part", _wire.WireRequest("PUT", url), url=url,
                                       content=lambda: source.chunks(start, end),
                                       content_length=end - start)
                etags[number] = put.headers.get("ETag", "")

        try:
            async with trio.open_nursery() as nursery:
                for number, start, end in ranges:
                    nursery.start_soon(part, number, start, end)
        except BaseExceptionGroup as group:
            raise _first_failure(group) from None
        return _wire.Reply(200, {}, (sorted(etags.items()), source.size))

    async def batch_upload_supported(self, session_id: str) -> bool:
        """Whether the server has the batch upload extension: one empty batch, once.

        tilde-server answers 200; a server without the route (a hosted endpoint) 404, 405
        or 501. Any other failure also means "use single uploads", which then report it.
        """
        try:
            await self.upload_batch([], session_id=session_id)
        except exc.TildeError as e:
            log.info("no batch uploads (%s); small files use stage/PUT/finalize", e)
            return False
        return True

    async def upload_batch(self, items: Sequence[tuple[str, bytes]], *, session_id: str,
                           metadata: Sequence[Mapping[str, str] | None] = ()) -> list[str]:
        """Upload small objects in one request (tilde-server's extension, docs/api.md);
        returns their ETags (normalised) in order. Safe to retry: the same bytes again."""
        body = _wire.encode_batch(items, metadata)

        async def once() -> AsyncIterator[bytes]:
            yield body

        r = await self._send("batch", _wire.upload_batch(self.org, self.repo,
                                                         session_id=session_id),
                             content=once, content_length=len(body))
        try:
            return [normalize_etag(e) for e in
                    _wire.parse_batch_etags(r.json(), [p for p, _ in items])]
        except ValueError as e:
            raise exc.APIError(r.status_code, message=f"batch upload: {e}") from None

    async def set_metadata(self, path: str, metadata: Mapping[str, str], *,
                           session_id: str) -> bool:
        """Replace ``path``'s user metadata in the session without sending its bytes
        (tilde-server's extension, docs/api.md). False when the server has no such route
        (remembered): the caller uploads the content again instead. Idempotent."""
        if self._metadata_route is False:
            return False
        try:
            await self._send("set_metadata", _wire.update_object_metadata(
                self.org, self.repo, path, session_id=session_id, metadata=dict(metadata)))
        except exc.APIError as e:
            if e.status_code not in _wire.ROUTE_MISSING or self._metadata_route:
                raise
            log.info("no metadata-only updates (%s); attribute changes re-upload", e)
            self._metadata_route = False
            return False
        self._metadata_route = True
        return True

    async def rebase(self, session_id: str) -> str | None:
        """Move the session onto the latest commit (tilde-server's extension); its base
        commit after that. A `tilde.exceptions.ConflictError` names the paths in the way;
        a server without the route answers 404/405/501."""
        r = await self._send("rebase", _wire.rebase_session(self.org, self.repo, session_id))
        return _wire.parse_rebase(_json_body(r)) or None

    async def copy(self, source: str, destination: str, *, session_id: str) -> None:
        await self._send("copy", _wire.copy_object(self.org, self.repo, source, destination,
                                                   session_id=session_id))

    async def delete(self, path: str, *, session_id: str) -> None:
        lost: list[exc.TildeError] = []
        try:
            await self._send("delete", _wire.delete_object(self.org, self.repo, path,
                                                           session_id=session_id), lost=lost)
        except exc.NotFoundError:
            if not lost:
                raise
            log.warning("delete of %r: the answer was lost (%s) but it landed", path, lost[0])

    async def delete_many(self, paths: list[str], *, session_id: str) -> int:
        total = 0
        for i in range(0, len(paths), 1000):
            r = await self._send("delete_many", _wire.delete_objects(
                self.org, self.repo, paths[i:i + 1000], session_id=session_id))
            total += _wire.parse_deleted_count(r.json() if r.content else None)
        return total

    # -- sessions and commits -----------------------------------------------------------
    async def create_session(self) -> str:
        lost: list[exc.TildeError] = []
        r = await self._send("create_session", _wire.create_session(self.org, self.repo),
                             lost=lost)
        sid = _wire.parse_session_id(r.json())
        if lost:
            log.warning("creating a session: %d answer(s) lost (%s); an extra empty session "
                        "may be left open on the server (using %s)", len(lost), lost[0], sid)
        return sid

    async def commit(self, session_id: str, message: str,
                     metadata: Mapping[str, str] | None = None) -> CommitOutcome:
        """Commit the session, exactly once whatever the network did (subtlety 10)."""
        if session_id not in self._commit_heads:
            self._commit_heads[session_id] = await self.latest_commit_id()
        req = _wire.commit_session(self.org, self.repo, session_id, message, metadata)
        attempt = 0
        lost = self._commit_lost.setdefault(session_id, [])
        while True:
            try:
                r = await self._send("commit", req, idempotent=False)
            except exc.TildeError as e:
                refused = isinstance(e, exc.APIError) and e.status_code in (404, 409)
                if not (_ambiguous(e) or (lost and refused)):
                    raise
                if _ambiguous(e):
                    lost.append(e)
                state, outcome = await self._commit_landed(session_id, message, metadata)
                if outcome is not None:
                    log.warning("commit of session %s: the answer was lost (%s) but it "
                                "landed: %s", session_id, lost[0], outcome)
                    self._commit_done(session_id)
                    return outcome
                if state == "closed":
                    self._commit_done(session_id)
                    raise exc.NotFoundError(
                        404, code="session_closed", method="POST", url=req.path,
                        message=f"session {session_id} was closed without a commit of it "
                                f"in the log (after {lost[0]})") from None
                if refused:
                    raise
                attempt = await self._retry_or_raise("commit", e, attempt, True)
                continue
            self._commit_done(session_id)
            if r.status_code == 202:
                return CommitOutcome("approval_required", web_url=_wire.parse_web_url(r.json()))
            return CommitOutcome("committed", commit_id=_wire.parse_commit_id(r.json()))

    def _commit_done(self, session_id: str) -> None:
        self._commit_heads.pop(session_id, None)
        self._commit_lost.pop(session_id, None)

    async def _commit_landed(self, session_id: str, message: str,
                             metadata: Mapping[str, str] | None
                             ) -> tuple[str, CommitOutcome | None]:
        """Where a commit whose answer was lost stands: ("landed", outcome), ("open",
        None) (it did not land: send it again) or ("closed", None) (it never will)."""
        approval = _wire.approval_poll(self.org, self.repo, session_id)
        try:
            await self._send("probe", approval)
        except exc.APIError:
            pass
        else:  # pending approval: the commit was taken; the review URL was in the answer
            return "landed", CommitOutcome("approval_required",
                                           web_url=self.base + approval.path)
        try:
            await self._send("probe", _wire.list_changes(self.org, self.repo,
                                                         session_id=session_id, amount=1))
        except exc.NotFoundError:
            pass
        else:
            return "open", None
        head = self._commit_heads.get(session_id)
        want = dict(metadata or {})
        after: str | None = None
        for _page in range(20):
            r = await self._send("log", _wire.log(self.org, self.repo, after=after, amount=50))
            page = _wire.parse_page(r.json(), _wire.parse_commit)
            for c in page.items:
                if head is not None and c.id == head:
                    return "closed", None
                if c.message == message and want.items() <= dict(c.metadata or {}).items():
                    return "landed", CommitOutcome("committed", commit_id=c.id)
            if page.next_after is None:
                break
            after = page.next_after
        return "closed", None

    async def rollback(self, session_id: str) -> None:
        lost: list[exc.TildeError] = []
        try:
            await self._send("rollback", _wire.rollback_session(self.org, self.repo,
                                                                session_id), lost=lost)
        except exc.NotFoundError:
            if not lost:
                raise
            log.warning("rollback of session %s: the answer was lost (%s) but it landed",
                        session_id, lost[0])

    async def list_changes(self, session_id: str, *, after: str | None = None,
                           amount: int = 1000) -> tuple[list[EntryRecord], str | None]:
        r = await self._send("changes", _wire.list_changes(
            self.org, self.repo, session_id=session_id, after=after, amount=amount))
        page = _wire.parse_page(r.json(), _wire.parse_entry_record)
        return page.items, page.next_after

    async def changed_between(self, left: str | None, right: str) -> dict[str, str | None]:
        """Paths whose content differs between two commits (``left`` None: the empty
        tree): path -> its ETag at ``right``, None where ``right`` has none."""
        out: dict[str, str | None] = {}
        after: str | None = None
        while True:
            r = await self._send("diff", _wire.diff(self.org, self.repo, left=left or "",
                                                    right=right, after=after, amount=1000))
            page = _wire.parse_page(r.json(), _wire.parse_listing_entry)
            for item in page.items:
                gone = item.status == "removed" or item.entry is None
                out[item.path] = None if gone else normalize_etag(item.entry.e_tag
                                                                  if item.entry else "")
            after = page.next_after
            if after is None:
                return out

    async def get_repository(self) -> dict[str, Any]:
        r = await self._send("repository", _wire.get_repository(self.org, self.repo))
        body = r.json()
        return body if isinstance(body, dict) else {}

    async def latest_commit_id(self) -> str | None:
        r = await self._send("log", _wire.log(self.org, self.repo, amount=1))
        page = _wire.parse_page(r.json(), _wire.parse_commit)
        return page.items[0].id if page.items else None

    def stats(self) -> dict[str, Any]:
        return {"by_kind": dict(self.requests), "total": sum(self.requests.values()),
                "retries": self.retried, "redirects": self.redirects,
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out}

    async def aclose(self) -> None:
        for pool in (self._pools or {}).values():
            await pool.aclose()
        await self._client.aclose()
