"""Objects: listing, streamed reads, uploads, copy and delete (spec 2.5, 3.4).

Upload subtleties (2.5.4-2.5.6):

1. Size is known for bytes-like values and seekable files (a ``Path`` is opened as one);
   byte iterators have no known size.
2. Known size < 64 MiB, or multipart marked unsupported on this client: single upload
   (stage -> PUT bytes -> finalize). Otherwise multipart with 64 MiB parts (the last one
   shorter); a file part is whatever one ``read(64 MiB)`` returns.
3. A 501 from multipart initiate or complete marks multipart unsupported for the life of
   the client; after a 501 from complete the upload is aborted first. Then seekable input
   is rewound to 0 and sent as a single upload. A byte iterator cannot be replayed, so it
   sends only what it still holds.
4. Any failure after initiate aborts the multipart upload (its own errors ignored) and
   re-raises the original error.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from .. import _wire
from .._values import CopyObjectResult, ListingEntry, ObjectMetadata, PutObjectResult
from ..exceptions import ServerError
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

    def put(self, path: str, data: PutData) -> PutObjectResult:
        """Upload ``data`` to ``path`` in this session (content type octet-stream)."""
        if isinstance(data, str):
            raise TypeError("put() takes bytes, a binary file, a Path or an iterable of bytes")
        if isinstance(data, os.PathLike):
            with open(os.fspath(data), "rb") as f:
                return self._put_source(path, f)
        return self._put_source(path, data)

    def _put_source(self, path: str, data: Any) -> PutObjectResult:
        size = _known_size(data)
        if self._client._multipart_unsupported or (
                size is not None and size < _wire.SINGLE_UPLOAD_LIMIT):
            return self._single_upload(path, data)
        return self._multipart_upload(path, data)

    def _single_upload(self, path: str, data: Any) -> PutObjectResult:
        staged = _wire.parse_staged_upload(self._client._call(
            _wire.stage_object(self._org, self._repo, path, session_id=self._sid)))
        url = _wire.resolve_upload_url(self._client.base_url, staged.upload_url)
        self._client._put_presigned(url, _body(data), content_length=_known_size(data)).close()
        return _wire.parse_put_result(self._client._call(_wire.finalize_object(
            self._org, self._repo, path, session_id=self._sid,
            physical_address=staged.physical_address, signature=staged.signature,
            expires_at=staged.expires_at)))

    def _multipart_upload(self, path: str, data: Any) -> PutObjectResult:
        try:
            init = _wire.parse_multipart_upload(self._client._call(
                _wire.initiate_multipart(self._org, self._repo, path, session_id=self._sid)))
        except ServerError as err:
            if err.status_code != 501:
                raise
            return self._fall_back(path, data)
        try:
            parts: list[tuple[int, str]] = []
            total = 0
            for number, chunk in enumerate(_parts(data), start=1):
                url = self._client._part_url(_wire.multipart_part_url(
                    self._org, self._repo, token=init.token, part_number=number,
                    upload_id=init.upload_id))
                response = self._client._put_presigned(url, chunk)
                response.close()
                parts.append((number, response.headers.get("ETag", "")))
                total += len(chunk)
            body = self._client._call(_wire.complete_multipart(
                self._org, self._repo, path, session_id=self._sid, token=init.token,
                upload_id=init.upload_id, physical_address=init.physical_address,
                parts=parts, total_size=total))
        except BaseException as err:
            self._abort(path, init)
            if isinstance(err, ServerError) and err.status_code == 501:
                return self._fall_back(path, data)
            raise
        return _wire.parse_put_result(body)

    def _abort(self, path: str, init: Any) -> None:
        try:
            self._client._send(_wire.abort_multipart(
                self._org, self._repo, path, session_id=self._sid, token=init.token,
                upload_id=init.upload_id, physical_address=init.physical_address)).close()
        except Exception:
            pass  # the original failure is what the caller needs to see

    def _fall_back(self, path: str, data: Any) -> PutObjectResult:
        """2.5.6: the server has no multipart; remember that and send one single upload."""
        self._client._multipart_unsupported = True
        if hasattr(data, "seek"):
            data.seek(0)
        return self._single_upload(path, data)


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
