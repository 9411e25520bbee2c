"""Value types of spec 3.9 (re-exported by ``tilde.models``).

Plain mutable dataclasses with slots. They live apart from the resource classes so that
``tilde._wire`` (sans-I/O, shared with the async daemon) can build them without importing
anything that talks to the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime


class _ShortRepr:
    """repr() that leaves out fields still holding their default, as the official types do."""

    __slots__ = ()

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
                continue
            parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(slots=True, repr=False)
class SourceMetadata(_ShortRepr):
    """Where an imported object came from."""

    connector_id: str = ""
    connector_type: str = ""
    source_path: str = ""
    version_id: str = ""
    source_etag: str = ""
    import_time: datetime | None = None
    import_job_id: str = ""


@dataclass(slots=True, repr=False)
class Entry(_ShortRepr):
    """An object's stored metadata (listing, changes, diff)."""

    address: str = ""
    last_modified: datetime | None = None
    size: int | None = None
    e_tag: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    address_type: int | None = None
    content_type: str = ""
    source_metadata: SourceMetadata | None = None


@dataclass(slots=True, repr=False)
class ListingEntry(_ShortRepr):
    """One row of an object listing or diff: an object, or a common prefix."""

    path: str
    type: str
    entry: Entry | None = None
    status: str | None = None


@dataclass(slots=True, repr=False)
class EntryRecord(_ShortRepr):
    """One uncommitted change of a session; ``entry`` is None for a staged deletion."""

    path: str = ""
    entry: Entry | None = None


@dataclass(slots=True, repr=False)
class ObjectMetadata(_ShortRepr):
    """Object headers from HEAD (or GET)."""

    etag: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    reproducible: bool | None = None


@dataclass(slots=True, repr=False)
class PutObjectResult(_ShortRepr):
    """Answer of a finished upload."""

    path: str = ""
    etag: str = ""


@dataclass(slots=True, repr=False)
class CopyObjectResult(_ShortRepr):
    """Answer of a copy."""

    source_path: str = ""
    destination_path: str = ""


@dataclass(slots=True, repr=False)
class CommitResult(_ShortRepr):
    """Outcome of ``Session.commit_result``: ``committed`` or ``approval_required``."""

    status: str
    commit_id: str | None = None
    web_url: str | None = None


# Records below are not part of the 0.7.2 value types: they carry parsed entity JSON from
# ``_wire`` to the resource handles (and to the daemon) without any I/O attached.


@dataclass(slots=True, frozen=True)
class OrganizationData:
    id: str = ""
    name: str = ""
    display_name: str = ""
    created_at: datetime | None = None


@dataclass(slots=True, frozen=True)
class RepositoryData:
    name: str = ""
    id: str = ""
    organization_id: str = ""
    description: str = ""
    visibility: str = ""
    session_max_duration_days: int | None = None
    retention_days: int | None = None
    created_by_type: str = ""
    created_by: str = ""
    created_at: datetime | None = None


@dataclass(slots=True, frozen=True)
class CommitData:
    id: str = ""
    committer: str = ""
    committer_type: str = ""
    committer_id: str = ""
    message: str = ""
    meta_range_id: str = ""
    creation_date: datetime | None = None
    parents: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    object_count: int | None = None
    total_size: int | None = None
    is_stale: bool = False


@dataclass(slots=True, frozen=True)
class StagedUpload:
    """Answer of ``POST {R}/object/stage`` (2.5.5a)."""

    upload_url: str
    physical_address: str
    signature: str
    expires_at: str


@dataclass(slots=True, frozen=True)
class MultipartUpload:
    """Answer of ``POST {R}/object/multipart`` (2.5.5b)."""

    upload_id: str
    physical_address: str
    token: str

