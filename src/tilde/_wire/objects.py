"""Object reads, copy and delete (spec 2.5): listing, GET with Range, HEAD, the
listing entry and header parsers; tilde-server's metadata-only update and listing markers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._values import (
    CopyObjectResult,
    Entry,
    EntryRecord,
    ListingEntry,
    ObjectMetadata,
    SourceMetadata,
)
from .common import (
    DEFAULT_PAGE_SIZE,
    WireRequest,
    _amount,
    _header,
    _params,
    _r,
    _s,
    parse_timestamp,
)

# --- objects (2.5, 2.6) --------------------------------------------------------------

def _check_ref(session_id: str | None, ref: str | None) -> None:
    if session_id is not None and ref is not None:
        raise ValueError("session_id and ref cannot be combined")


def list_objects(org: str, repo: str, *, session_id: str | None = None, prefix: str | None = None,
                 delimiter: str | None = None, after: str | None = None,
                 amount: int | None = DEFAULT_PAGE_SIZE, ref: str | None = None,
                 markers: bool = False) -> WireRequest:
    """``markers``: ask tilde-server to put a prefix's ``P`` marker object in its row (an
    extension; other servers ignore it and send ``entry: null``). Sent only when True."""
    _check_ref(session_id, ref)
    return WireRequest("GET", f"{_r(org, repo)}/objects", _params(
        ("session_id", session_id), ("ref", ref), ("prefix", prefix), ("delimiter", delimiter),
        ("after", after), ("amount", _amount(amount)), ("markers", True if markers else None)))


def range_header(byte_range: tuple[int, int | None]) -> str:
    """``bytes=S-E`` (inclusive) or ``bytes=S-`` for an open end."""
    start, end = byte_range
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte_range {byte_range!r}")
    return f"bytes={start}-" if end is None else f"bytes={start}-{end}"


def get_object(org: str, repo: str, path: str, *, session_id: str | None = None,
               byte_range: tuple[int, int | None] | None = None,
               ref: str | None = None) -> WireRequest:
    """Today's object GET (0.7.7+): no ``presign``; the caller follows a redirect."""
    _check_ref(session_id, ref)
    headers = () if byte_range is None else (("Range", range_header(byte_range)),)
    return WireRequest("GET", f"{_r(org, repo)}/object", _params(
        ("path", path), ("session_id", session_id), ("ref", ref)), headers=headers)


def head_object(org: str, repo: str, path: str, *, session_id: str | None = None,
                ref: str | None = None) -> WireRequest:
    _check_ref(session_id, ref)
    return WireRequest("HEAD", f"{_r(org, repo)}/object",
                       _params(("path", path), ("session_id", session_id), ("ref", ref)))


def copy_object(org: str, repo: str, source_path: str, destination_path: str, *,
                session_id: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/object/copy", _params(
        ("session_id", session_id), ("source_path", source_path),
        ("destination_path", destination_path)))


def update_object_metadata(org: str, repo: str, path: str, *, session_id: str,
                           metadata: Mapping[str, str]) -> WireRequest:
    """Replace ``path``'s user metadata in the session without sending its bytes
    (tilde-server's extension; the service answers 404/405, then upload again). The answer
    is the object's entry with its ``path``: :func:`parse_entry` reads it."""
    return WireRequest("PUT", f"{_r(org, repo)}/object/metadata",
                       _params(("session_id", session_id), ("path", path)),
                       json={"metadata": dict(metadata)})


def delete_object(org: str, repo: str, path: str, *, session_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_r(org, repo)}/object",
                       _params(("session_id", session_id), ("path", path)))


def delete_objects(org: str, repo: str, paths: Iterable[str], *, session_id: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/objects/delete",
                       _params(("session_id", session_id)), json={"paths": list(paths)})


def list_changes(org: str, repo: str, *, session_id: str, prefix: str | None = None,
                 after: str | None = None, amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/changes", _params(
        ("session_id", session_id), ("prefix", prefix), ("after", after),
        ("amount", _amount(amount))))


def parse_source_metadata(d: Mapping[str, Any]) -> SourceMetadata:
    return SourceMetadata(
        connector_id=_s(d, "connector_id"), connector_type=_s(d, "connector_type"),
        source_path=_s(d, "source_path"), version_id=_s(d, "version_id"),
        source_etag=_s(d, "source_etag"), import_time=parse_timestamp(d.get("import_time")),
        import_job_id=_s(d, "import_job_id"))


def parse_entry(d: Mapping[str, Any]) -> Entry:
    sm = d.get("source_metadata")
    return Entry(
        address=_s(d, "address"), last_modified=parse_timestamp(d.get("last_modified")),
        size=d.get("size"), e_tag=_s(d, "e_tag"), metadata=dict(d.get("metadata") or {}),
        address_type=d.get("address_type"), content_type=_s(d, "content_type"),
        source_metadata=parse_source_metadata(sm) if sm else None)


def parse_listing_entry(d: Mapping[str, Any]) -> ListingEntry:
    e = d.get("entry")
    return ListingEntry(path=d.get("path", ""), type=d.get("type", ""),
                        entry=parse_entry(e) if e else None, status=d.get("status"))


def parse_entry_record(d: Mapping[str, Any]) -> EntryRecord:
    e = d.get("entry")
    return EntryRecord(path=d.get("path", ""), entry=parse_entry(e) if e else None)


def parse_copy_result(body: Any) -> CopyObjectResult:
    body = body or {}
    return CopyObjectResult(source_path=_s(body, "source_path"),
                            destination_path=_s(body, "destination_path"))


def parse_deleted_count(body: Any) -> int:
    return int((body or {}).get("deleted", 0))


def parse_reproducible(value: str | None) -> bool | None:
    return {"true": True, "false": False}.get(value) if value is not None else None


def parse_object_metadata(headers: Mapping[str, str]) -> ObjectMetadata:
    length = _header(headers, "Content-Length")
    return ObjectMetadata(
        etag=_header(headers, "ETag"), content_type=_header(headers, "Content-Type"),
        content_length=int(length) if length is not None else None,
        reproducible=parse_reproducible(_header(headers, "X-Tilde-Reproducible")))


def content_range(headers: Mapping[str, str]) -> str | None:
    return _header(headers, "Content-Range")



def object_size_from(status: int, headers: Mapping[str, str]) -> int | None:
    """The whole object's size as a GET (or HEAD) answer tells it, None when it does not.

    206 and 416 carry it after the slash of ``Content-Range`` (``bytes 0-9/42``,
    ``bytes */42``); a 200 carries it as ``Content-Length``, also when it ignored a Range
    that was sent, since its body is then the whole object.
    """
    if status in (206, 416):
        value = content_range(headers)
        if value is None or "/" not in value:
            return None
        total = value.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    if 200 <= status < 300:
        length = _header(headers, "Content-Length")
        return int(length) if length is not None and length.isdigit() else None
    return None
