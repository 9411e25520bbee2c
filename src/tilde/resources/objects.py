"""Objects: listing, streamed reads, uploads, copy and delete (spec 2.5, 3.4).

Upload subtleties (2.5.4-2.5.6; which requests, dialects and fallbacks is the plan in
``tilde._wire.uploads``, shared with the mount daemon; this module only does the I/O):

1. Size is known for bytes-like values and seekable files (a ``Path`` is opened as one);
   byte iterators have no known size.
2. Known size < 64 MiB, or multipart marked unsupported on this client: single upload.
   Otherwise multipart with 64 MiB parts (the last one shorter), sent one after another;
   a file part is whatever one ``read(64 MiB)`` returns.
3. After a multipart fallback, seekable input is rewound to where it stood at ``put`` and
   sent as a single upload. A byte iterator cannot be replayed, so it sends only what it
   still holds (as the official client does).
4. What the client learned of the server's upload routes (current or legacy, multipart or
   not) lives in ``Client._upload_state`` for the client's life.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from .. import _wire
from .._values import CopyObjectResult, ListingEntry, ObjectMetadata, PutObjectResult
from .reader import ObjectReader

if TYPE_CHECKING:

    from .._client import Client

PutData = bytes | bytearray | memoryview | BinaryIO | Path | Iterable[bytes]


class _ObjectsBase:
    """Reads shared by session and read-only views. ``_session_id`` None and ``_ref`` None
    mean the repository's head; ``_ref`` pins a commit (never both)."""

    _session_id: str | None
    _ref: str | None = None

    def __init__(self, client: Client, org: str, repo: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo

    def list(self, *, prefix: str | None = None, delimiter: str | None = None,
             after: str | None = None, amount: int | None = None) -> Iterator[ListingEntry]:
        """Objects and (with ``delimiter``) common prefixes; ``amount`` is the page size."""
        return self._client._paginate(
            lambda cursor: _wire.list_objects(
                self._org, self._repo, session_id=self._session_id, ref=self._ref,
                prefix=prefix, delimiter=delimiter, after=cursor, amount=amount),
            _wire.parse_listing_entry, after)

    def get(self, path: str, *, cache: bool = True, presign: bool = True,
            byte_range: tuple[int, int | None] | None = None) -> ObjectReader:
        """A lazy reader of the object's bytes (optionally one inclusive byte range).

        ``presign`` is accepted for 0.7.2 compatibility and ignored: the GET never asks for
        a presigned URL and always follows redirects (tilde-api-changes.md 2.4).
        """
        del presign
        return ObjectReader(self._client, self._org, self._repo, path,
                            session_id=self._session_id, ref=self._ref, cache=cache,
                            byte_range=byte_range)

    def head(self, path: str) -> ObjectMetadata:
        response = self._client._send(_wire.head_object(
            self._org, self._repo, path, session_id=self._session_id, ref=self._ref))
        response.close()
        return _wire.parse_object_metadata(response.headers)


class ReadOnlyObjects(_ObjectsBase):
    """Committed objects, no session: the latest state, or the commit ``ref`` names."""

    _session_id = None

    def __init__(self, client: Client, org: str, repo: str, *, ref: str | None = None) -> None:
        super().__init__(client, org, repo)
        self._ref = ref

    def __repr__(self) -> str:
        at = f"@{self._ref}" if self._ref is not None else ""
        return f"ReadOnlyObjects({self._org}/{self._repo}{at})"


class SessionObjects(_ObjectsBase):
    """Objects as seen by one session (staged plus committed); writes are staged."""

    def __init__(self, client: Client, org: str, repo: str, session_id: str) -> None:
        super().__init__(client, org, repo)
        self._session_id = session_id

    @property
    def _sid(self) -> str:
        assert self._session_id is not None
        return self._session_id

    def __repr__(self) -> str:
        return f"SessionObjects({self._org}/{self._repo}, session_id={self._session_id!r})"

    def copy(self, source_path: str, destination_path: str) -> CopyObjectResult:
        return _wire.parse_copy_result(self._client._call(_wire.copy_object(
            self._org, self._repo, source_path, destination_path, session_id=self._sid)))

    def delete(self, path: str) -> None:
        """Stage the deletion of one object."""
        self._client._send(_wire.delete_object(self._org, self._repo, path,
                                               session_id=self._sid)).close()

    def delete_many(self, paths: list[str]) -> int:
        """Stage the deletion of several objects; returns how many the server deleted."""
        if isinstance(paths, str):
            raise TypeError("delete_many takes a list of paths, not a string")
        return _wire.parse_deleted_count(self._client._call(
            _wire.delete_objects(self._org, self._repo, paths, session_id=self._sid)))

    # --- uploads -----------------------------------------------------------------------

    def put(self, path: str, data: PutData, *,
            metadata: Mapping[str, str] | None = None) -> PutObjectResult:
        """Upload ``data`` to ``path`` in this session (content type octet-stream).

        ``metadata`` (keyword-only, not in 0.7.2) is the object's user metadata, for
        example ``tilde.posix.posix_metadata(mode=0o755)`` so that a mount shows the file
        executable. It travels in the request that makes the object (finalize or
        multipart complete), so it costs no extra request; None or empty sends exactly
        what 0.7.2 sends.
        """
        if isinstance(data, str):
            raise TypeError("put() takes bytes, a binary file, a Path or an iterable of bytes")
        meta = _check_metadata(metadata)
        if isinstance(data, os.PathLike):
            with open(os.fspath(data), "rb") as f:
                return self._put_source(path, f, meta)
        return self._put_source(path, data, meta)

    def _put_source(self, path: str, data: Any,
                    metadata: dict[str, str] | None) -> PutObjectResult:
        size = _known_size(data)
        plan = _wire.put_plan(self._org, self._repo, path, session_id=self._sid,
                              base=self._client.base_url, state=self._client._upload_state,
                              size=size, single_limit=_wire.SINGLE_UPLOAD_LIMIT,
                              metadata=metadata)
        return _drive(self._client, plan, _Source(data, size))


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str] | None:
    """A copy of ``metadata`` (None when empty), checked before any request is sent: a
    bad entry fails here, not as a 400 after the bytes went up."""
    if not metadata:
        return None
    if not isinstance(metadata, Mapping):
        raise TypeError("metadata is a mapping of str to str")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata {key!r}: keys and values are str")
    return dict(metadata)


class _Source:
    """The bytes of one ``put``: the whole body from its start (again after a fallback,
    when the input can seek) or its parts in order."""

    def __init__(self, data: Any, size: int | None) -> None:
        self.data, self.size = data, size
        self.origin = data.tell() if size is not None and hasattr(data, "seek") else None

    def body(self) -> Any:
        if self.origin is not None:
            self.data.seek(self.origin)
        return _body(self.data)

    def parts(self) -> Iterator[bytes]:
        return _parts(self.data)


def _drive(client: Client, plan: _wire.Plan, source: _Source) -> PutObjectResult:
    """Run an upload plan (``tilde._wire.uploads``) with this client's blocking I/O."""
    reply: _wire.Reply | None = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.throw(error) if error is not None else plan.send(reply)  # type: ignore[arg-type]
        except StopIteration as stop:
            result: PutObjectResult = stop.value
            return result
        reply, error = None, None
        try:
            reply = _perform(client, step, source)
        except Exception as exc:  # thrown into the plan, which decides
            error = exc


def _perform(client: Client, step: _wire.Step, source: _Source) -> _wire.Reply:
    if isinstance(step, _wire.Call):
        response = client._send(step.request, check=False)
        if not (response.is_success or (step.redirect_ok and response.is_redirect)):
            raise client._error(response)
        try:
            body = client._decode(response) if response.is_success else None
        finally:
            response.close()
        return _wire.Reply(response.status_code, response.headers, body)
    if isinstance(step, _wire.PutBody):
        response = client._put_presigned(step.url, source.body(), content_length=source.size)
        response.close()
        return _wire.Reply(response.status_code, response.headers)
    parts: list[tuple[int, str]] = []
    total = 0
    for number, chunk in enumerate(source.parts(), start=1):
        lookup = _perform(client, _wire.Call("part_url", step.lookup(number), redirect_ok=True),
                          source)
        url = _wire.part_upload_url(client.base_url, lookup.status, lookup.headers, lookup.body)
        response = client._put_presigned(url, chunk)
        response.close()
        parts.append((number, response.headers.get("ETag", "")))
        total += len(chunk)
    return _wire.Reply(200, {}, (parts, total))


def _known_size(data: Any) -> int | None:
    if isinstance(data, (bytes, bytearray)):
        return len(data)
    if isinstance(data, memoryview):
        return data.nbytes
    if hasattr(data, "read"):
        try:
            if not data.seekable():
                return None
            pos = data.tell()
            end = data.seek(0, io.SEEK_END)
            data.seek(pos)
            return int(end - pos)
        except (AttributeError, OSError, ValueError):
            return None
    return None


def _body(data: Any) -> Any:
    """What httpx sends as the body: bytes as is, files and iterators streamed."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, memoryview):
        return data.tobytes()
    if hasattr(data, "read"):
        return _file_chunks(data)
    return _iter_bytes(data)


def _file_chunks(f: IO[bytes], size: int = 1024 * 1024) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


def _iter_bytes(it: Iterable[Any]) -> Iterator[bytes]:
    for chunk in it:
        if chunk:
            yield bytes(chunk)


def _parts(data: Any) -> Iterator[bytes]:
    """Split the input into multipart parts of MULTIPART_PART_SIZE (2.5.4)."""
    size = _wire.MULTIPART_PART_SIZE
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        for i in range(0, view.nbytes, size):
            yield view[i:i + size].tobytes()
        return
    if hasattr(data, "read"):
        while chunk := data.read(size):
            yield bytes(chunk)
        return
    buf = bytearray()
    for chunk in data:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)
