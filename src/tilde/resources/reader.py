"""``ObjectReader``: what ``objects.get()`` returns, a lazy read-only binary file over GETs.

Subtleties worth knowing before editing:

1. Lazy: nothing is sent until the context is entered or a read needs bytes (or a
   ``seek`` from the end needs the size). The header properties are None until then and
   afterwards describe the first answer: the first GET, or the HEAD that a ``seek(0, 2)``
   sends when no GET has told the size yet.
2. Today's protocol (tilde-api-changes.md 5.1): ``presign`` is never sent and redirects are
   always followed. httpx follows 301/302/303/307/308, sends ``Range`` again on every hop
   and drops ``Authorization`` when the origin changes; the headers are the final answer's.
3. The file is the object, or the ``byte_range`` asked for: positions count from the start
   of that view, and reads stop at its end.
4. One response streams at a time. A read at the position the stream has reached goes on
   reading it, so reading from the start is one GET, whatever the read sizes. After a
   ``seek`` elsewhere the next read fetches exactly the bytes it asks for
   (``Range: bytes=a-b``), which is what a columnar reader wants; a read that continues where
   the previous one ended opens an open-ended range there. A forward gap of at most
   ``SKIP_LIMIT`` bytes is read and dropped on the open stream instead of a new request.
5. 0.7.2's ``read()``: without a size it returns the rest of the view, and called again
   right after such a read from the start it returns the whole view again (0.7.2 hands back
   the whole object every time): from memory with ``cache=True``, with a new GET without.
   Only that whole read fills the cache; from then on nothing is sent.
6. Every GET after the first must carry the first one's ``ETag``. A head read that races a
   commit between two range GETs raises ``PreconditionFailedError`` instead of splicing two
   versions of the object.
7. A server that ignores ``Range`` (200, not 206) is tolerated: the bytes before the offset
   are dropped. A 416 past the end of the view is an empty read; for the view as asked
   (``byte_range`` starting beyond the object) it is raised, as 0.7.2 does.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx

from .. import _wire
from .._values import ObjectMetadata
from ..exceptions import PreconditionFailedError, TransportError

if TYPE_CHECKING:
    from types import TracebackType

    from .._client import Client

#: A forward seek of at most this many bytes reads on instead of sending a new GET.
SKIP_LIMIT = 64 * 1024
_WHOLE_READ_STEP = 1024 * 1024


class _Stream:
    """One open GET answer: where in the view its next byte belongs, and its unread chunk."""

    def __init__(self, response: httpx.Response, pos: int, end: int | None) -> None:
        self.response = response
        self.pos = pos  # view offset of the next byte (negative while a 200 skips its head)
        self.end = end  # view offset this answer stops at (exclusive); None: the view's end
        self._chunks = response.iter_bytes()
        self._chunk = b""
        self._off = 0
        self.exhausted = False

    def _fill(self) -> bool:
        """Make the current chunk non-empty; False at the end of the answer."""
        while self._off >= len(self._chunk):
            if self.exhausted:
                return False
            try:
                self._chunk, self._off = next(self._chunks), 0
            except StopIteration:
                self.exhausted = True
            except httpx.TransportError as exc:
                self.exhausted = True
                raise TransportError(
                    f"reading {self.response.request.url} failed: {exc}", exc) from exc
            except httpx.StreamError:
                self.exhausted = True
        return True

    def peek(self) -> bytes:
        return self._chunk[self._off:] if self._fill() else b""

    def take(self, limit: int) -> bytes:
        """Up to ``limit`` bytes; b"" once the answer has no more."""
        if not self._fill():
            return b""
        piece = self._chunk[self._off:self._off + limit]
        self._off += len(piece)
        self.pos += len(piece)
        return piece

    def skip(self, n: int) -> bool:
        """Drop ``n`` bytes; False if the answer ended first."""
        while n > 0:
            piece = self.take(n)
            if not piece:
                return False
            n -= len(piece)
        return True

    def close(self) -> None:
        self.response.close()


class ObjectReader(io.BufferedIOBase):
    """A lazily opened, streamed object download that is also a seekable binary file.

    ``read()``, ``iter_bytes()`` and ``cache`` behave as in 0.7.2; ``read(n)`` returns at most
    ``n`` bytes, and ``seek``/``tell``/``readinto``/``readable``/``seekable``/``closed`` are
    there so libraries that take a file (``pyarrow.parquet.read_table``, ``pandas``) can read
    it directly, fetching only the ranges they seek to.
    """

    def __init__(self, client: Client, org: str, repo: str, path: str, *,
                 session_id: str | None = None, ref: str | None = None, cache: bool = True,
                 byte_range: tuple[int, int | None] | None = None) -> None:
        super().__init__()
        self._stream: _Stream | None = None
        if byte_range is not None:
            _wire.range_header(byte_range)  # a bad range is a ValueError now, not at the GET
        self._client = client
        self._org, self._repo, self._path = org, repo, path
        self._session_id, self._ref = session_id, ref
        self._cache_enabled = cache
        self._byte_range = byte_range
        self._start = byte_range[0] if byte_range is not None else 0
        self._stop = (byte_range[1] + 1 if byte_range is not None
                      and byte_range[1] is not None else None)  # absolute, exclusive
        self._size: int | None = None  # of the view, once an answer has told it
        self._pos = 0
        self._cached: bytes | None = None
        self._repeat = False  # the last call was a whole read() from the start (point 5)
        self._jumped = False  # a seek moved away from where reading stood (point 4)
        self._answered = False
        self._etag: str | None = None
        self._meta = ObjectMetadata()
        self._content_range: str | None = None

    # --- 0.7.2 header properties -------------------------------------------------------

    @property
    def etag(self) -> str | None:
        return self._meta.etag

    @property
    def content_type(self) -> str | None:
        return self._meta.content_type

    @property
    def content_length(self) -> int | None:
        return self._meta.content_length

    @property
    def content_range(self) -> str | None:
        return self._content_range

    @property
    def reproducible(self) -> bool | None:
        return self._meta.reproducible

    # --- requests ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed ObjectReader")

    def _note(self, response: httpx.Response, *, is_get: bool) -> None:
        """Take what an answer says: first-answer properties, ETag check, the view's size."""
        if not self._answered:
            self._answered = True
            self._meta = _wire.parse_object_metadata(response.headers)
            if is_get:
                self._content_range = _wire.content_range(response.headers)
        etag = response.headers.get("ETag")
        if self._etag is None:  # a HEAD's too: the size it gave belongs to that version
            self._etag = etag
        elif is_get and etag is not None and etag != self._etag:
                response.close()
                raise PreconditionFailedError(
                    412, message=f"object {self._path!r} changed while it was being read "
                    f"(ETag {self._etag} became {etag})", method="GET",
                    url=str(response.request.url))
        total = _wire.object_size_from(response.status_code, response.headers)
        if total is not None and self._size is None:
            end = total if self._stop is None else min(total, self._stop)
            self._size = max(0, end - self._start)

    def _get(self, pos: int, end: int | None) -> _Stream | None:
        """GET view bytes [pos, end) (to the view's end if None); None when past the end."""
        first = self._start + pos
        last = self._start + end - 1 if end is not None else (
            self._stop - 1 if self._stop is not None else None)
        as_asked = pos == 0 and end is None
        byte_range = None if as_asked and self._byte_range is None else (first, last)
        wire = _wire.get_object(self._org, self._repo, self._path, session_id=self._session_id,
                                ref=self._ref, byte_range=byte_range)
        response = self._client._send(wire, stream=True, follow_redirects=True, check=False)
        if response.status_code == 416 and not as_asked:
            response.close()
            total = _wire.object_size_from(416, response.headers)
            if self._size is None:
                self._size = pos if total is None else max(0, min(
                    total, self._stop if self._stop is not None else total) - self._start)
            return None
        if not response.is_success:
            raise self._client._error(response)
        self._note(response, is_get=True)
        if response.status_code == 200 and first > 0:
            # The Range was ignored: this body starts at the object's first byte (point 7).
            stream = _Stream(response, pos - first, None)
            if not stream.skip(first):
                stream.close()
                return None
            return stream
        return _Stream(response, pos, end)

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _view_end(self) -> int | None:
        if self._size is not None:
            return self._size
        return self._stop - self._start if self._stop is not None else None

    def _stream_at(self, limit: int, bounded: bool = True) -> _Stream | None:
        """An open answer whose next byte is the one at the position (point 4). After a
        seek a ``bounded`` caller (``read(n)``) gets an answer of ``limit`` bytes; readers
        of everything that follows (``read()``, ``iter_bytes``, ``peek``) an open one."""
        stream = self._stream
        if stream is not None and not stream.exhausted:
            gap = self._pos - stream.pos
            if gap == 0 or (0 < gap <= SKIP_LIMIT and (stream.end is None or
                                                        self._pos < stream.end)
                            and stream.skip(gap)):
                self._jumped = False
                return stream
        self._drop_stream()
        end = None
        if self._jumped:  # after a seek: a range that says where it ends when known
            end = self._view_end()
            if bounded:
                end = self._pos + limit if end is None else min(end, self._pos + limit)
        self._jumped = False
        self._stream = self._get(self._pos, end)
        return self._stream

    def _open(self) -> None:
        if self._cached is None and self._stream is None:
            self._stream_at(_WHOLE_READ_STEP)

    def _take(self, limit: int, bounded: bool = True) -> bytes:
        """Up to ``limit`` bytes at the position, advancing it; b"" at the end of the view."""
        if self._cached is not None:
            piece = self._cached[self._pos:self._pos + limit]
            self._pos += len(piece)
            return piece
        view_end = self._view_end()
        if view_end is not None:
            limit = min(limit, view_end - self._pos)
        if limit <= 0:
            return b""
        while True:
            stream = self._stream_at(limit, bounded)
            if stream is None:
                return b""
            piece = stream.take(limit)
            if piece:
                self._pos += len(piece)
                return piece
            bounded_done = stream.end is not None and stream.pos >= stream.end
            self._drop_stream()
            if not bounded_done:  # an answer that ended before the view did: the end
                if self._size is None:
                    self._size = self._pos
                return b""
            # a bounded answer delivered all it was asked for: read on with a new one

    # --- the file protocol -------------------------------------------------------------

    def readable(self) -> bool:
        self._check_open()
        return True

    def seekable(self) -> bool:
        self._check_open()
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position; sends nothing (a HEAD for ``SEEK_END`` if the size is unknown)."""
        self._check_open()
        if whence == io.SEEK_SET:
            new = offset
        elif whence == io.SEEK_CUR:
            new = self._pos + offset
        elif whence == io.SEEK_END:
            new = self._length() + offset
        else:
            raise ValueError(f"invalid whence ({whence!r}, should be 0, 1 or 2)")
        if new < 0:
            raise ValueError(f"negative seek position {new}")
        if new != self._pos:
            self._jumped = True
        self._repeat = False
        self._pos = new
        return new

    def _length(self) -> int:
        if self._cached is not None:
            return len(self._cached)
        if self._size is None:
            response = self._client._send(_wire.head_object(
                self._org, self._repo, self._path, session_id=self._session_id, ref=self._ref))
            response.close()
            self._note(response, is_get=False)
        if self._size is None:
            raise OSError(f"the size of {self._path!r} is unknown (no Content-Length)")
        return self._size

    def read(self, n: int | None = -1) -> bytes:
        """At most ``n`` bytes from the position; without ``n``, see the module's point 5."""
        self._check_open()
        if n is None or n < 0:
            return self._read_whole()
        self._repeat = False
        return self._read(n, bounded=True)

    def _read(self, n: int, bounded: bool) -> bytes:
        parts: list[bytes] = []
        remaining = n
        while remaining > 0:
            piece = self._take(remaining, bounded)
            if not piece:
                break
            parts.append(piece)
            remaining -= len(piece)
        return b"".join(parts)

    def _read_whole(self) -> bytes:
        if self._repeat:
            self._pos = 0
            self._jumped = False
        start = self._pos
        if self._cached is not None:
            data = self._cached[start:]
            self._pos = len(self._cached)
        else:
            data = b"".join(iter(lambda: self._take(_WHOLE_READ_STEP, False), b""))
            if self._cache_enabled and start == 0:
                self._cached = data
                self._drop_stream()
        self._repeat = start == 0
        return data

    def read1(self, n: int = -1) -> bytes:
        return self.read(n)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def peek(self, size: int = 0) -> bytes:
        """Bytes at the position without consuming them (at least one unless at the end)."""
        self._check_open()
        if self._cached is not None:
            return self._cached[self._pos:self._pos + max(size, _WHOLE_READ_STEP)]
        view_end = self._view_end()
        if view_end is not None and self._pos >= view_end:
            return b""
        stream = self._stream_at(max(size, 1), bounded=False)
        if stream is None:
            return b""
        data = stream.peek()
        if view_end is not None:
            data = data[:view_end - self._pos]
        return data

    def iter_bytes(self, chunk_size: int = 8192) -> Iterator[bytes]:
        """The rest of the object (after a whole ``read()``: all of it) in chunks of
        ``chunk_size`` bytes, the last one shorter."""
        self._check_open()
        if self._repeat:
            self._pos = 0
            self._jumped = False
        self._repeat = False
        while piece := self._read(chunk_size, bounded=False):
            yield piece

    def close(self) -> None:
        """Release the connection; safe to call more than once."""
        if not self.closed:
            self._drop_stream()
        super().close()

    def __enter__(self) -> ObjectReader:
        self._check_open()
        self._open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
