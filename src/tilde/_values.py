"""Value types of spec 3.9 (re-exported by ``tilde.models``).

Plain mutable dataclasses with slots. They live apart from the resource classes so that
``tilde._wire`` (sans-I/O, shared with the async daemon) can build them without importing
anything that talks to the network.
"""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceMetadata:
        from ._wire.objects import parse_source_metadata

        return parse_source_metadata(d)



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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Entry:
        from ._wire.objects import parse_entry

        return parse_entry(d)



@dataclass(slots=True, repr=False)
class ListingEntry(_ShortRepr):
    """One row of an object listing or diff: an object, or a common prefix."""

    path: str
    type: str
    entry: Entry | None = None
    status: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ListingEntry:
        from ._wire.objects import parse_listing_entry

        return parse_listing_entry(d)



@dataclass(slots=True, repr=False)
class EntryRecord(_ShortRepr):
    """One uncommitted change of a session; ``entry`` is None for a staged deletion."""

    path: str = ""
    entry: Entry | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EntryRecord:
        from ._wire.objects import parse_entry_record

        return parse_entry_record(d)



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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PutObjectResult:
        return cls(path=d.get("path", ""), etag=d.get("etag", ""))



@dataclass(slots=True, repr=False)
class CopyObjectResult(_ShortRepr):
    """Answer of a copy."""

    source_path: str = ""
    destination_path: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CopyObjectResult:
        from ._wire.objects import parse_copy_result

        return parse_copy_result(d)



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



# --- sandboxes (spec 2.8, 2.9, 2.17, 3.6, 3.9) -------------------------------------------


class OutputStream:
    """Captured output of a sandboxed command (merged stdout and stderr in 0.7.2).

    The bytes are held in memory: ``execute`` reads the whole log and ``Shell.run`` collects
    a run's output before returning, so there is nothing left to stream lazily. The
    iterators exist so code written for large outputs reads the same either way. ``None``
    means empty; equality compares bytes (with another stream, or with bytes).
    """

    __slots__ = ("_data",)

    def __init__(self, data: bytes | None = None) -> None:
        self._data = bytes(data) if data is not None else b""

    def read(self) -> bytes:
        return self._data

    def text(self, encoding: str = "utf-8") -> str:
        return self._data.decode(encoding, errors="replace")

    def iter_bytes(self, chunk_size: int = 8192) -> Iterator[bytes]:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        for i in range(0, len(self._data), chunk_size):
            yield self._data[i:i + chunk_size]

    def iter_text(self, chunk_size: int = 8192) -> Iterator[str]:
        """Text chunks of about ``chunk_size`` bytes; a character is never split."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for chunk in self.iter_bytes(chunk_size):
            text = decoder.decode(chunk)
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def iter_lines(self) -> Iterator[str]:
        """Lines without their endings (``str.splitlines`` rules)."""
        yield from self.text().splitlines()

    def __str__(self) -> str:
        return self.text()

    def __bytes__(self) -> bytes:
        return self._data

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OutputStream):
            return self._data == other._data
        if isinstance(other, bytes | bytearray | memoryview):
            return self._data == bytes(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._data)

    def __repr__(self) -> str:
        return f"OutputStream({len(self._data)} bytes)"  # 0.7.2's form


@dataclass(slots=True, repr=False)
class RunResult(_ShortRepr):
    """Outcome of ``Repository.execute`` or ``Shell.run``.

    ``stdout`` is 0.7.2's: what the command wrote to stdout and stderr, merged in the order
    it wrote them. ``stderr`` is 0.7.9's field, a keyword with an empty default so that
    0.7.2's ``RunResult(stdout, exit_code)`` still builds one; it holds what arrived on a
    separate stderr channel (see ``Shell.run``), empty for ``execute``, as in 0.7.9.
    """

    stdout: OutputStream
    exit_code: int
    stderr: OutputStream = field(default_factory=OutputStream)


@dataclass(slots=True, repr=False)
class SandboxTriggerCondition(_ShortRepr):
    """When a trigger fires: ``type`` ``prefix``/``path``, ``diff_type`` ("" = any)."""

    type: str = ""
    prefix: str = ""
    path: str = ""
    diff_type: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SandboxTriggerCondition:
        from ._wire.sandboxes import parse_trigger_condition

        return parse_trigger_condition(d)



@dataclass(slots=True, repr=False)
class SandboxTriggerConfig(_ShortRepr):
    """The sandbox a trigger starts (the create body of 2.8.1, minus ``interactive``)."""

    image: str
    command: list[str] = field(default_factory=list)
    mountpoint: str = ""
    path_prefix: str = ""
    timeout_seconds: int | None = None
    env_vars: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SandboxTriggerConfig:
        from ._wire.sandboxes import parse_trigger_config

        return parse_trigger_config(d)



@dataclass(frozen=True)
class SandboxCredentials:
    """A short-lived token from ``TILDE_SANDBOX_CREDENTIALS_URI`` (2.17)."""

    access_token: str
    expires_at: datetime
    principal_type: str | None = None
    principal_id: str | None = None
    principal_name: str | None = None
    organization_id: str | None = None
    api_url: str | None = None


@dataclass(slots=True, frozen=True)
class SandboxStatusData:
    """``GET {S}/status``; ``state`` is the wire field ``status`` (2.8.2)."""

    state: str = ""
    status_reason: str = ""
    exit_code: int | None = None
    commit_id: str = ""
    web_url: str = ""
    error_message: str = ""


@dataclass(slots=True, frozen=True)
class SandboxTriggerData:
    id: str = ""
    name: str = ""
    description: str = ""
    enabled: bool = False
    conditions: tuple[SandboxTriggerCondition, ...] = ()
    sandbox_config: SandboxTriggerConfig | None = None
    run_as: dict[str, str] | None = None
    repository_id: str = ""
    created_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(slots=True, frozen=True)
class SandboxTriggerRunData:
    id: str = ""
    repository_id: str = ""
    trigger_id: str = ""
    commit_id: str = ""
    status: str = ""
    reason: str = ""
    sandbox_id: str | None = None
    matched_paths: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None


# --- secrets, connectors, imports (2.14-2.16) ---------------------------------------------


@dataclass(slots=True, frozen=True)
class SecretData:
    """A secret's metadata; ``value`` is None when the answer did not carry it (lists)."""

    name: str = ""
    created_by_type: str = ""
    created_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    value: str | None = None


@dataclass(slots=True, frozen=True)
class ConnectorData:
    id: str = ""
    name: str = ""
    type: str = ""
    source_uri: str = ""
    disabled: bool = False
    public_key: str | None = None
    created_at: datetime | None = None


@dataclass(slots=True, frozen=True)
class ImportJobData:
    id: str = ""
    status: str = ""
    repository_id: str = ""
    connector_id: str = ""
    source_prefix: str = ""
    destination_path: str = ""
    commit_message: str = ""
    objects_imported: int | None = None
    commit_id: str = ""
    error: str = ""
    source_repository_id: str = ""
    source_organization: str = ""
    source_repository: str = ""
    created_by_type: str = ""
    created_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


# --- identity: members, agents, keys, roles, groups, policies (2.2, 2.10-2.13) -------------


@dataclass(slots=True, repr=False)
class GroupMember(_ShortRepr):
    """A member of a group: a user, group, role or agent."""

    subject_type: str = ""
    subject_id: str = ""
    display_name: str = ""
    username: str = ""
    added_at: datetime | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GroupMember:
        from ._wire.identity import parse_group_member

        return parse_group_member(d)



@dataclass(slots=True, repr=False)
class EffectiveGroup(_ShortRepr):
    """A group a principal belongs to, directly or through nested groups."""

    group_id: str = ""
    group_name: str = ""
    description: str = ""
    source: str = ""
    source_name: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EffectiveGroup:
        from ._wire.identity import parse_effective_group

        return parse_effective_group(d)



@dataclass(slots=True, repr=False)
class Attachment(_ShortRepr):
    """A policy attached to a principal."""

    policy_id: str = ""
    policy_name: str = ""
    is_builtin: bool = False
    principal_type: str = ""
    principal_id: str = ""
    principal_name: str = ""
    attached_by_type: str = ""
    attached_by: str = ""
    attached_at: datetime | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attachment:
        from ._wire.identity import parse_attachment

        return parse_attachment(d)



@dataclass(slots=True, repr=False)
class EffectivePolicy(_ShortRepr):
    """A policy that applies to a principal, and where it comes from (``source``)."""

    policy_id: str = ""
    policy_name: str = ""
    is_builtin: bool = False
    source: str = ""
    source_name: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EffectivePolicy:
        from ._wire.identity import parse_effective_policy

        return parse_effective_policy(d)



@dataclass(slots=True, repr=False)
class ValidationError(_ShortRepr):
    """One problem the Rego engine found in a policy (1-based line and column)."""

    line: int = 0
    column: int = 0
    message: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidationError:
        return cls(line=d.get("line", 0), column=d.get("column", 0),
                   message=d.get("message", ""))



@dataclass(slots=True, repr=False)
class ValidationResult(_ShortRepr):
    """Answer of ``Policies.validate``."""

    valid: bool = False
    errors: list[ValidationError] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidationResult:
        from ._wire.identity import parse_validation_result

        return parse_validation_result(d)



@dataclass(slots=True, frozen=True)
class MemberData:
    user_id: str = ""
    username: str = ""
    full_name: str = ""
    email: str = ""
    organization_id: str = ""
    joined_at: datetime | None = None
    role: str = ""


@dataclass(slots=True, frozen=True)
class AgentData:
    id: str = ""
    name: str = ""
    description: str = ""
    metadata: tuple[tuple[str, str], ...] = ()
    inline_policy: str = ""
    inline_policy_updated_at: datetime | None = None
    organization_id: str = ""
    created_by_type: str = ""
    created_by: str = ""
    created_by_name: str = ""
    created_at: datetime | None = None
    last_used_at: datetime | None = None


@dataclass(slots=True, frozen=True)
class APIKeyData:
    id: str = ""
    name: str = ""
    description: str = ""
    token_hint: str = ""
    token: str = ""
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(slots=True, frozen=True)
class RoleData:
    id: str = ""
    name: str = ""
    description: str = ""
    organization_id: str = ""
    created_by_type: str = ""
    created_by: str = ""
    created_by_name: str = ""
    created_at: datetime | None = None
    last_used_at: datetime | None = None


@dataclass(slots=True, frozen=True)
class GroupData:
    id: str = ""
    name: str = ""
    description: str = ""
    organization_id: str = ""
    created_by_type: str = ""
    created_by: str = ""
    created_at: datetime | None = None
    members: tuple[GroupMember, ...] = ()
    attachments: tuple[Attachment, ...] = ()


@dataclass(slots=True, frozen=True)
class PolicyData:
    id: str = ""
    name: str = ""
    description: str = ""
    policy_text: str = ""
    is_builtin: bool = False
    organization_id: str = ""
    created_by_type: str = ""
    created_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    attachment_count: int = 0
    attachments: tuple[Attachment, ...] = ()
