"""The sans-I/O core of the Tilde wire protocol (spec sections 1 and 2).

Shared by the synchronous client (``tilde._client``) and the async FUSE daemon, so nothing
here performs or assumes I/O: builders return a :class:`WireRequest`, parsers take JSON that
was already decoded, or plain header mappings.

Subtleties worth knowing before editing:

1. Path parameters (org, repo, ids) go into ``WireRequest.path`` as given; the HTTP library
   escapes what a path cannot hold (1.1). Object keys never go into paths: they travel as
   the ``path`` / ``source_path`` / ``destination_path`` query parameters.
2. ``None`` means "not sent" everywhere; ``amount`` is always sent on paginated endpoints.
3. ``WireRequest.json is None`` means no body at all (bodiless POSTs go out with
   ``Content-Length: 0``). Revert is the one place that sends ``{}``.
4. URLs the client PUTs to (stage ``upload_url``, multipart part ``Location``) are joined to
   the base URL by appending when relative (:func:`resolve_upload_url`); object GET
   redirects follow normal URL rules instead, which the HTTP library does by itself.
5. ``ref`` on list/get/head is this project's extension (read at a commit). The bundled
   0.7.2 client never sends it; only the daemon does. It is never combined with
   ``session_id``.
6. Error bodies: JSON object -> fields (missing ones ""); anything else -> message is the
   first 200 characters of the text. ``response_text`` keeps 500 characters.
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from ._values import (
    AgentData,
    APIKeyData,
    Attachment,
    CommitData,
    ConnectorData,
    CopyObjectResult,
    EffectiveGroup,
    EffectivePolicy,
    Entry,
    EntryRecord,
    GroupData,
    GroupMember,
    ImportJobData,
    ListingEntry,
    MemberData,
    MultipartUpload,
    ObjectMetadata,
    OrganizationData,
    PolicyData,
    PutObjectResult,
    RepositoryData,
    RoleData,
    SandboxCredentials,
    SandboxStatusData,
    SandboxTriggerCondition,
    SandboxTriggerConfig,
    SandboxTriggerData,
    SandboxTriggerRunData,
    SecretData,
    SourceMetadata,
    StagedUpload,
    ValidationError,
    ValidationResult,
)
from .exceptions import APIError, exception_class_for_status

T = TypeVar("T")

API_PREFIX = "/api/v1"
DEFAULT_ENDPOINT = "https://tilde.run"
SDK_VERSION = "0.7.2"
USER_AGENT = f"tilde-python-sdk/{SDK_VERSION}"
SINGLE_UPLOAD_LIMIT = 64 * 1024 * 1024
MULTIPART_PART_SIZE = 64 * 1024 * 1024
DEFAULT_PAGE_SIZE = 100
UPLOAD_CONTENT_TYPE = "application/octet-stream"
PART_REDIRECT_STATUSES = frozenset({301, 302, 307, 308})
APPROVAL_POLL_INTERVAL = 2.0


def base_url(endpoint: str) -> str:
    """Endpoint with trailing '/' removed, then ``/api/v1`` appended (1.1)."""
    return endpoint.rstrip("/") + API_PREFIX


def split_repo_path(repo_path: str) -> tuple[str, str]:
    """Split ``org/repo`` at the first '/' (so ``a/b/c`` is org ``a``, repo ``b/c``)."""
    org, sep, repo = repo_path.partition("/")
    if not sep or not org or not repo:
        raise ValueError(f"repository path must look like 'org/repo', got {repo_path!r}")
    return org, repo


def resolve_upload_url(base: str, url: str) -> str:
    """Absolute URLs stay; relative ones are appended to the base URL (1.1)."""
    if "://" in url:
        return url
    return base.rstrip("/") + "/" + url.lstrip("/")


@dataclass(frozen=True)
class WireRequest:
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json: Any = None
    headers: tuple[tuple[str, str], ...] = ()


def _params(*pairs: tuple[str, Any]) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in pairs:
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append((key, str(value)))
    return tuple(out)


def _r(org: str, repo: str) -> str:
    return f"/organizations/{org}/repositories/{repo}"


def _amount(amount: int | None) -> int:
    return DEFAULT_PAGE_SIZE if amount is None else amount


# --- organizations (2.1) -------------------------------------------------------------

def list_organizations() -> WireRequest:
    return WireRequest("GET", "/organizations")


def get_organization(name: str) -> WireRequest:
    return WireRequest("GET", f"/organizations/{name}")


def create_organization(name: str, display_name: str) -> WireRequest:
    return WireRequest("POST", "/organizations", json={"name": name, "display_name": display_name})


def delete_organization(name: str) -> WireRequest:
    return WireRequest("DELETE", f"/organizations/{name}")


# --- repositories (2.3) --------------------------------------------------------------

def list_repositories(org: str, *, after: str | None = None,
                      amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"/organizations/{org}/repositories",
                       _params(("amount", _amount(amount)), ("after", after)))


def get_repository(org: str, repo: str) -> WireRequest:
    return WireRequest("GET", _r(org, repo))


def create_repository(org: str, name: str, *, description: str = "", visibility: str = "private",
                      session_max_duration_days: int | None = None,
                      retention_days: int | None = None) -> WireRequest:
    body: dict[str, Any] = {"name": name, "visibility": visibility}
    if description:
        body["description"] = description
    if session_max_duration_days is not None:
        body["session_max_duration_days"] = session_max_duration_days
    if retention_days is not None:
        body["retention_days"] = retention_days
    return WireRequest("POST", f"/organizations/{org}/repositories", json=body)


UPDATABLE_REPOSITORY_FIELDS = ("description", "visibility", "session_max_duration_days",
                               "retention_days")


def update_repository(org: str, repo: str, **fields: Any) -> WireRequest:
    """PUT with partial-merge semantics: only the fields given (not None) are sent."""
    unknown = set(fields) - set(UPDATABLE_REPOSITORY_FIELDS)
    if unknown:
        raise TypeError(f"unknown repository field(s): {', '.join(sorted(unknown))}")
    body = {k: v for k, v in fields.items() if v is not None}
    return WireRequest("PUT", _r(org, repo), json=body)


def delete_repository(org: str, repo: str) -> WireRequest:
    return WireRequest("DELETE", _r(org, repo))


# --- sessions (2.4) ------------------------------------------------------------------

def create_session(org: str, repo: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/sessions")


def commit_session(org: str, repo: str, session_id: str, message: str,
                   metadata: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {"message": message}
    if metadata:
        body["metadata"] = dict(metadata)
    return WireRequest("POST", f"{_r(org, repo)}/sessions/{session_id}", json=body)


def rollback_session(org: str, repo: str, session_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_r(org, repo)}/sessions/{session_id}")


def approval_poll(org: str, repo: str, session_id: str) -> WireRequest:
    return WireRequest("HEAD", f"{_r(org, repo)}/sessions/{session_id}/approve")


# --- objects (2.5, 2.6) --------------------------------------------------------------

def _check_ref(session_id: str | None, ref: str | None) -> None:
    if session_id is not None and ref is not None:
        raise ValueError("session_id and ref cannot be combined")


def list_objects(org: str, repo: str, *, session_id: str | None = None, prefix: str | None = None,
                 delimiter: str | None = None, after: str | None = None,
                 amount: int | None = DEFAULT_PAGE_SIZE, ref: str | None = None) -> WireRequest:
    _check_ref(session_id, ref)
    return WireRequest("GET", f"{_r(org, repo)}/objects", _params(
        ("session_id", session_id), ("ref", ref), ("prefix", prefix), ("delimiter", delimiter),
        ("after", after), ("amount", _amount(amount))))


def range_header(byte_range: tuple[int, int | None]) -> str:
    """``bytes=S-E`` (inclusive) or ``bytes=S-`` for an open end."""
    start, end = byte_range
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte_range {byte_range!r}")
    return f"bytes={start}-" if end is None else f"bytes={start}-{end}"


def get_object(org: str, repo: str, path: str, *, session_id: str | None = None,
               presign: bool = False, byte_range: tuple[int, int | None] | None = None,
               ref: str | None = None) -> WireRequest:
    _check_ref(session_id, ref)
    headers = () if byte_range is None else (("Range", range_header(byte_range)),)
    return WireRequest("GET", f"{_r(org, repo)}/object", _params(
        ("path", path), ("session_id", session_id), ("ref", ref),
        ("presign", True if presign else None)), headers=headers)


def head_object(org: str, repo: str, path: str, *, session_id: str | None = None,
                ref: str | None = None) -> WireRequest:
    _check_ref(session_id, ref)
    return WireRequest("HEAD", f"{_r(org, repo)}/object",
                       _params(("path", path), ("session_id", session_id), ("ref", ref)))


def stage_object(org: str, repo: str, path: str, *, session_id: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/object/stage",
                       _params(("session_id", session_id), ("path", path)))


def finalize_object(org: str, repo: str, path: str, *, session_id: str, physical_address: str,
                    signature: str, expires_at: str) -> WireRequest:
    return WireRequest(
        "PUT", f"{_r(org, repo)}/object/finalize",
        _params(("session_id", session_id), ("path", path), ("expires_at", expires_at)),
        json={"physical_address": physical_address, "signature": signature,
              "content_type": UPLOAD_CONTENT_TYPE})


def initiate_multipart(org: str, repo: str, path: str, *, session_id: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/object/multipart",
                       _params(("session_id", session_id), ("path", path)))


def multipart_part_url(org: str, repo: str, *, token: str, part_number: int,
                       upload_id: str) -> WireRequest:
    """Part URL lookup: the answer is a 301/302/307/308 whose Location is the part URL."""
    return WireRequest("GET", f"{_r(org, repo)}/object/multipart/part", _params(
        ("token", token), ("part_number", part_number), ("upload_id", upload_id)))


def complete_multipart(org: str, repo: str, path: str, *, session_id: str, token: str,
                       upload_id: str, physical_address: str, parts: Iterable[tuple[int, str]],
                       total_size: int) -> WireRequest:
    return WireRequest(
        "POST", f"{_r(org, repo)}/object/multipart/complete",
        _params(("session_id", session_id), ("path", path)),
        json={"token": token, "upload_id": upload_id, "physical_address": physical_address,
              "parts": [{"part_number": n, "etag": etag} for n, etag in parts],
              "total_size": total_size, "content_type": UPLOAD_CONTENT_TYPE})


def abort_multipart(org: str, repo: str, path: str, *, session_id: str, token: str,
                    upload_id: str, physical_address: str) -> WireRequest:
    return WireRequest(
        "POST", f"{_r(org, repo)}/object/multipart/abort",
        _params(("session_id", session_id), ("path", path)),
        json={"token": token, "upload_id": upload_id, "physical_address": physical_address})


def copy_object(org: str, repo: str, source_path: str, destination_path: str, *,
                session_id: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/object/copy", _params(
        ("session_id", session_id), ("source_path", source_path),
        ("destination_path", destination_path)))


def delete_object(org: str, repo: str, path: str, *, session_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_r(org, repo)}/object",
                       _params(("session_id", session_id), ("path", path)))


def delete_objects(org: str, repo: str, paths: Iterable[str], *, session_id: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/objects/delete",
                       _params(("session_id", session_id)), json={"paths": list(paths)})


#: tilde-server's batch upload extension (docs/api.md "Batch upload"): at most this many
#: objects, and this many bytes of object content, per request
BATCH_UPLOAD_MAX_OBJECTS = 1000
BATCH_UPLOAD_MAX_BYTES = 64 * 1024 * 1024
BATCH_UPLOAD_CONTENT_TYPE = "application/x-tilde-batch"


def upload_batch(org: str, repo: str, *, session_id: str) -> WireRequest:
    """The request line of a batch upload; its body is `encode_batch`'s."""
    return WireRequest("POST", f"{_r(org, repo)}/objects/upload",
                       _params(("session_id", session_id)),
                       headers=(("Content-Type", BATCH_UPLOAD_CONTENT_TYPE),))


def encode_batch(items: Sequence[tuple[str, bytes]]) -> bytes:
    """Manifest (compact JSON, one line) + newline + every object's bytes in order."""
    manifest = {"objects": [{"path": path, "size": len(data)} for path, data in items]}
    head = _json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode()
    return b"".join([head, b"\n", *(data for _, data in items)])


def parse_batch_etags(body: Any, paths: Sequence[str]) -> list[str]:
    """The ETags of a batch upload's answer, in the order of ``paths`` (checked)."""
    objects = body.get("objects") if isinstance(body, dict) else None
    if not isinstance(objects, list) or len(objects) != len(paths):
        raise ValueError("batch upload answer does not list every object")
    etags = []
    for path, item in zip(paths, objects, strict=True):
        if not isinstance(item, dict) or item.get("path") != path:
            raise ValueError(f"batch upload answer out of order at {path!r}")
        etags.append(str(item.get("etag") or "").strip('"'))
    return etags


def list_changes(org: str, repo: str, *, session_id: str, prefix: str | None = None,
                 after: str | None = None, amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/changes", _params(
        ("session_id", session_id), ("prefix", prefix), ("after", after),
        ("amount", _amount(amount))))


# --- commits (2.7) -------------------------------------------------------------------

def log(org: str, repo: str, *, ref: str | None = None, after: str | None = None,
        amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/log",
                       _params(("ref", ref), ("after", after), ("amount", _amount(amount))))


def get_commit(org: str, repo: str, commit_id: str) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/commits/{commit_id}")


def revert_commit(org: str, repo: str, commit_id: str, *, message: str | None = None,
                  metadata: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {}
    if message is not None:
        body["message"] = message
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return WireRequest("POST", f"{_r(org, repo)}/commits/{commit_id}/revert", json=body)


def diff(org: str, repo: str, *, left: str, right: str, prefix: str | None = None,
         delimiter: str | None = None, after: str | None = None,
         amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    """``left`` is always sent, as ``left=`` for a root commit (diff against the empty tree)."""
    return WireRequest("GET", f"{_r(org, repo)}/diff", _params(
        ("left", left), ("right", right), ("prefix", prefix), ("delimiter", delimiter),
        ("after", after), ("amount", _amount(amount))))


# --- parsing -------------------------------------------------------------------------

@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool
    next_offset: str | None

    @property
    def next_after(self) -> str | None:
        """Cursor for the next page, or None when iteration must stop (1.6).

        Stops on ``has_more`` false or an empty page. Unlike the official client, a
        ``has_more`` page without ``next_offset`` also stops instead of looping forever.
        """
        if not self.has_more or not self.items or self.next_offset is None:
            return None
        return self.next_offset


def parse_page(body: Any, parse_item: Callable[[dict[str, Any]], T]) -> Page[T]:
    body = body or {}
    results = body.get("results") or []
    pagination = body.get("pagination") or {}
    next_offset = pagination.get("next_offset")
    return Page(
        items=[parse_item(item) for item in results],
        has_more=bool(pagination.get("has_more", False)),
        next_offset=None if next_offset is None else str(next_offset),
    )


def parse_results(body: Any, parse_item: Callable[[dict[str, Any]], T]) -> list[T]:
    """Single-shot lists: only ``results`` is read, ``pagination`` ignored."""
    return [parse_item(item) for item in (body or {}).get("results") or []]


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 string -> datetime; None stays None. Non-strings and "" are errors (1.7)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"timestamp must be a string, got {type(value).__name__}")
    return datetime.fromisoformat(value)


def _s(d: Mapping[str, Any], key: str) -> Any:
    """String field: "" only when the key is absent (a JSON null stays None, 1.7)."""
    return d.get(key, "")


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


def parse_organization(d: Mapping[str, Any]) -> OrganizationData:
    return OrganizationData(id=_s(d, "id"), name=_s(d, "name"),
                            display_name=_s(d, "display_name"),
                            created_at=parse_timestamp(d.get("created_at")))


def parse_repository(d: Mapping[str, Any]) -> RepositoryData:
    return RepositoryData(
        name=_s(d, "name"), id=_s(d, "id"), organization_id=_s(d, "organization_id"),
        description=_s(d, "description"), visibility=_s(d, "visibility"),
        session_max_duration_days=d.get("session_max_duration_days"),
        retention_days=d.get("retention_days"), created_by_type=_s(d, "created_by_type"),
        created_by=_s(d, "created_by"), created_at=parse_timestamp(d.get("created_at")))


def parse_commit(d: Mapping[str, Any]) -> CommitData:
    return CommitData(
        id=_s(d, "id"), committer=_s(d, "committer"), committer_type=_s(d, "committer_type"),
        committer_id=_s(d, "committer_id"), message=_s(d, "message"),
        meta_range_id=_s(d, "meta_range_id"),
        creation_date=parse_timestamp(d.get("creation_date")),
        parents=tuple(d.get("parents") or ()), metadata=dict(d.get("metadata") or {}),
        object_count=d.get("object_count"), total_size=d.get("total_size"),
        is_stale=bool(d.get("is_stale", False)))


def parse_session_id(body: Mapping[str, Any]) -> str:
    return str(body["session_id"])


def parse_commit_id(body: Any) -> str:
    """Commit / revert answer -> commit id ("" when absent, as the 0.7.2 client does)."""
    return str((body or {}).get("commit_id", ""))


def parse_web_url(body: Any) -> str:
    return str((body or {}).get("web_url", ""))


def parse_staged_upload(body: Mapping[str, Any]) -> StagedUpload:
    return StagedUpload(upload_url=body["upload_url"], physical_address=body["physical_address"],
                        signature=body["signature"], expires_at=str(body["expires_at"]))


def parse_multipart_upload(body: Mapping[str, Any]) -> MultipartUpload:
    return MultipartUpload(upload_id=body["upload_id"], physical_address=body["physical_address"],
                           token=body["token"])


def parse_put_result(body: Any) -> PutObjectResult:
    body = body or {}
    return PutObjectResult(path=_s(body, "path"), etag=_s(body, "etag"))


def parse_copy_result(body: Any) -> CopyObjectResult:
    body = body or {}
    return CopyObjectResult(source_path=_s(body, "source_path"),
                            destination_path=_s(body, "destination_path"))


def parse_deleted_count(body: Any) -> int:
    return int((body or {}).get("deleted", 0))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not hasattr(headers, "multi_items"):
        lname = name.lower()  # plain dicts are case-sensitive; httpx.Headers are not
        for k, v in headers.items():
            if k.lower() == lname:
                return v
    return value


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


def part_location(status: int, headers: Mapping[str, str]) -> str | None:
    """Location of a multipart part lookup, or None when the answer is not a usable redirect."""
    if status not in PART_REDIRECT_STATUSES:
        return None
    return _header(headers, "Location")


def error_for_response(status: int, *, method: str, url: str, body: bytes) -> APIError:
    """Build the exception for a non-2xx answer (1.5); the class comes from the one table."""
    text = body.decode("utf-8", errors="replace")
    message = code = request_id = ""
    try:
        parsed = _json.loads(text) if text else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        message = _str_field(parsed, "message")
        code = _str_field(parsed, "code")
        request_id = _str_field(parsed, "request_id")
    else:
        message = text[:200]
    cls = exception_class_for_status(status)
    return cls(status, message=message, code=code, request_id=request_id, method=method,
               url=url, response_text=text[:500])


def _str_field(d: Mapping[str, Any], key: str) -> str:
    value = d.get(key)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def error_body(message: str, code: str = "", request_id: str = "") -> dict[str, str]:
    """The error JSON the server sends (1.5); here so both sides agree on field names."""
    return {"message": message, "code": code, "request_id": request_id}


# --- sandboxes (2.8), triggers (2.9), sandbox credentials (2.17) ---------------------------
#
# 1. Create answers ``sandbox_id`` while list items carry ``id`` (2.8).
# 2. The status field ``status`` becomes ``state`` on the client side (2.8.2). 0.7.2 knows
#    ``running`` and five terminal values; anything else means "keep polling".
# 3. Optional create fields are sent only when given (None); ``interactive`` only for shells.

SANDBOX_TERMINAL_STATES = frozenset(
    {"committed", "awaiting_approval", "failed", "error", "cancelled"})
SANDBOX_FAILED_STATES = frozenset({"failed", "error", "cancelled"})
SANDBOX_POLL_INTERVAL = 1.0
SANDBOX_POLL_TIMEOUT = 300.0
CREDENTIALS_REFRESH_MARGIN_SECONDS = 120.0


def _s_(org: str, repo: str, sandbox_id: str) -> str:
    return f"{_r(org, repo)}/sandboxes/{sandbox_id}"


def create_sandbox(org: str, repo: str, *, image: str, command: Iterable[str] | None = None,
                   interactive: bool = False, env_vars: Mapping[str, str] | None = None,
                   mountpoint: str | None = None, path_prefix: str | None = None,
                   timeout_seconds: int | None = None,
                   run_as: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {"image": image}
    if interactive:
        body["interactive"] = True
    if command is not None:
        body["command"] = list(command)
    if env_vars is not None:
        body["env_vars"] = dict(env_vars)
    if mountpoint is not None:
        body["mountpoint"] = mountpoint
    if path_prefix is not None:
        body["path_prefix"] = path_prefix
    if timeout_seconds is not None:
        body["timeout_seconds"] = timeout_seconds
    if run_as is not None:
        body["run_as"] = dict(run_as)
    return WireRequest("POST", f"{_r(org, repo)}/sandboxes", json=body)


def command_argv(command: str | Iterable[str]) -> list[str]:
    """``execute``'s command: a string runs through ``sh -c``, a list is the argv as is."""
    if isinstance(command, str):
        return ["sh", "-c", command]
    return list(command)


def list_sandboxes(org: str, repo: str, *, after: str | None = None,
                   amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/sandboxes",
                       _params(("amount", _amount(amount)), ("after", after)))


def sandbox_status(org: str, repo: str, sandbox_id: str) -> WireRequest:
    return WireRequest("GET", f"{_s_(org, repo, sandbox_id)}/status")


def cancel_sandbox(org: str, repo: str, sandbox_id: str) -> WireRequest:
    return WireRequest("DELETE", _s_(org, repo, sandbox_id))


def sandbox_stdout_log(org: str, repo: str, sandbox_id: str) -> WireRequest:
    return WireRequest("GET", f"{_s_(org, repo, sandbox_id)}/logs/stdout")


def sandbox_network_log(org: str, repo: str, sandbox_id: str) -> WireRequest:
    return WireRequest("GET", f"{_s_(org, repo, sandbox_id)}/logs/network")


def sandbox_terminal_path(org: str, repo: str, sandbox_id: str) -> str:
    """Path of the terminal WebSocket, relative to the (ws) base URL (2.8.4)."""
    return f"{_s_(org, repo, sandbox_id)}/terminal"


def websocket_url(base: str, path: str) -> str:
    """``https://`` -> ``wss://``, ``http://`` -> ``ws://`` on the base URL, then the path."""
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return base + path


def parse_sandbox_id(body: Mapping[str, Any]) -> str:
    return str(body["sandbox_id"])


def parse_sandbox_list_item(d: Mapping[str, Any]) -> str:
    return str(d.get("id", ""))


def parse_sandbox_status(d: Any) -> SandboxStatusData:
    d = d or {}
    exit_code = d.get("exit_code")
    return SandboxStatusData(
        state=str(d.get("status") or ""), status_reason=str(d.get("status_reason") or ""),
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool)
        else None,
        commit_id=str(d.get("commit_id") or ""), web_url=str(d.get("web_url") or ""),
        error_message=str(d.get("error_message") or ""))


def list_triggers(org: str, repo: str, *, after: str | None = None,
                  amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/sandbox-triggers",
                       _params(("amount", _amount(amount)), ("after", after)))


def _t(org: str, repo: str, trigger_id: str) -> str:
    return f"{_r(org, repo)}/sandbox-triggers/{trigger_id}"


def get_trigger(org: str, repo: str, trigger_id: str) -> WireRequest:
    return WireRequest("GET", _t(org, repo, trigger_id))


def create_trigger(org: str, repo: str, *, name: str, conditions: list[dict[str, Any]],
                   sandbox_config: Mapping[str, Any], description: str = "",
                   run_as: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {"name": name, "conditions": list(conditions),
                            "sandbox_config": dict(sandbox_config)}
    if description:
        body["description"] = description
    if run_as is not None:
        body["run_as"] = dict(run_as)
    return WireRequest("POST", f"{_r(org, repo)}/sandbox-triggers", json=body)


def update_trigger(org: str, repo: str, trigger_id: str, *, name: str | None = None,
                   description: str | None = None,
                   conditions: list[dict[str, Any]] | None = None,
                   sandbox_config: Mapping[str, Any] | None = None,
                   run_as: Mapping[str, str] | None = None) -> WireRequest:
    """PUT with only the fields given (partial update)."""
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if description is not None:
        body["description"] = description
    if conditions is not None:
        body["conditions"] = list(conditions)
    if sandbox_config is not None:
        body["sandbox_config"] = dict(sandbox_config)
    if run_as is not None:
        body["run_as"] = dict(run_as)
    return WireRequest("PUT", _t(org, repo, trigger_id), json=body)


def toggle_trigger(org: str, repo: str, trigger_id: str, *, enabled: bool) -> WireRequest:
    return WireRequest("PATCH", _t(org, repo, trigger_id), json={"enabled": bool(enabled)})


def delete_trigger(org: str, repo: str, trigger_id: str) -> WireRequest:
    return WireRequest("DELETE", _t(org, repo, trigger_id))


def list_trigger_runs(org: str, repo: str, trigger_id: str, *, after: str | None = None,
                      amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_t(org, repo, trigger_id)}/runs",
                       _params(("amount", _amount(amount)), ("after", after)))


def parse_trigger_condition(d: Mapping[str, Any]) -> SandboxTriggerCondition:
    return SandboxTriggerCondition(type=_s(d, "type"), prefix=_s(d, "prefix"),
                                   path=_s(d, "path"), diff_type=_s(d, "diff_type"))


def parse_trigger_config(d: Mapping[str, Any]) -> SandboxTriggerConfig:
    return SandboxTriggerConfig(
        image=_s(d, "image"), command=list(d.get("command") or []),
        mountpoint=_s(d, "mountpoint"), path_prefix=_s(d, "path_prefix"),
        timeout_seconds=d.get("timeout_seconds"), env_vars=dict(d.get("env_vars") or {}))


def parse_trigger(d: Mapping[str, Any]) -> SandboxTriggerData:
    config = d.get("sandbox_config")
    run_as = d.get("run_as")
    return SandboxTriggerData(
        id=_s(d, "id"), name=_s(d, "name"), description=_s(d, "description"),
        enabled=bool(d.get("enabled", False)),
        conditions=tuple(parse_trigger_condition(c) for c in d.get("conditions") or ()),
        sandbox_config=parse_trigger_config(config) if config else None,
        run_as=dict(run_as) if run_as is not None else None,
        repository_id=_s(d, "repository_id"), created_by=_s(d, "created_by"),
        created_at=parse_timestamp(d.get("created_at")),
        updated_at=parse_timestamp(d.get("updated_at")))


def parse_trigger_run(d: Mapping[str, Any]) -> SandboxTriggerRunData:
    return SandboxTriggerRunData(
        id=_s(d, "id"), repository_id=_s(d, "repository_id"), trigger_id=_s(d, "trigger_id"),
        commit_id=_s(d, "commit_id"), status=_s(d, "status"), reason=_s(d, "reason"),
        sandbox_id=d.get("sandbox_id"), matched_paths=tuple(d.get("matched_paths") or ()),
        created_at=parse_timestamp(d.get("created_at")),
        updated_at=parse_timestamp(d.get("updated_at")))


def parse_sandbox_credentials(body: Any) -> SandboxCredentials:
    """The credentials endpoint's JSON (2.17); ``ValueError`` on missing or ill-typed fields.

    ``expires_at`` without an offset is UTC.
    """
    if not isinstance(body, dict):
        raise ValueError("credentials response is not a JSON object")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("credentials response lacks a non-empty access_token")
    raw_expiry = body.get("expires_at")
    if not isinstance(raw_expiry, str):
        raise ValueError("credentials response lacks expires_at")
    try:
        expires_at = datetime.fromisoformat(raw_expiry.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"credentials expires_at is not ISO 8601: {raw_expiry!r}") from exc
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    optional: dict[str, str | None] = {}
    for key in ("principal_type", "principal_id", "principal_name", "organization_id",
                "api_url"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"credentials field {key} must be a string")
        optional[key] = value
    return SandboxCredentials(access_token=token, expires_at=expires_at, **optional)


# --- secrets (2.14) ------------------------------------------------------------------------
# Two mount points with one behaviour: ``{R}/secrets`` and ``/organizations/{org}/agents/
# {agent}/secrets``; the builders take that base path.

def repository_secrets_path(org: str, repo: str) -> str:
    return f"{_r(org, repo)}/secrets"


def agent_secrets_path(org: str, agent_name: str) -> str:
    return f"/organizations/{org}/agents/{agent_name}/secrets"


def list_secrets(base: str) -> WireRequest:
    return WireRequest("GET", base)


def get_secret(base: str, name: str) -> WireRequest:
    return WireRequest("GET", f"{base}/{name}")


def put_secret(base: str, name: str, value: str) -> WireRequest:
    """Create or replace (upsert)."""
    return WireRequest("PUT", f"{base}/{name}", json={"value": value})


def delete_secret(base: str, name: str) -> WireRequest:
    return WireRequest("DELETE", f"{base}/{name}")


def parse_secret(d: Mapping[str, Any]) -> SecretData:
    """SecretMeta: the name is read from ``key``, falling back to ``name`` (2.14)."""
    value = d.get("value")
    return SecretData(
        name=d.get("key") or d.get("name") or "", created_by_type=_s(d, "created_by_type"),
        created_by=_s(d, "created_by"), created_at=parse_timestamp(d.get("created_at")),
        updated_at=parse_timestamp(d.get("updated_at")),
        value=None if value is None else str(value))


def parse_secret_value(body: Any) -> str:
    """``GET {Sec}/{name}`` -> the value (passed through str(), as 0.7.2 does)."""
    return str((body or {}).get("value"))


# --- connectors (2.15) ---------------------------------------------------------------------

def list_connectors(org: str) -> WireRequest:
    return WireRequest("GET", f"/organizations/{org}/connectors")


def get_connector(org: str, connector_id: str) -> WireRequest:
    return WireRequest("GET", f"/organizations/{org}/connectors/{connector_id}")


def create_connector(org: str, name: str, type: str, source_uri: str,
                     config: Mapping[str, Any]) -> WireRequest:
    return WireRequest("POST", f"/organizations/{org}/connectors", json={
        "name": name, "type": type, "source_uri": source_uri, "config": dict(config)})


def delete_connector(org: str, connector_id: str) -> WireRequest:
    return WireRequest("DELETE", f"/organizations/{org}/connectors/{connector_id}")


def list_repository_connectors(org: str, repo: str) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/connectors")


def attach_connector(org: str, repo: str, connector_id: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/connectors",
                       json={"connector_id": connector_id})


def detach_connector(org: str, repo: str, connector_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_r(org, repo)}/connectors/{connector_id}")


def parse_connector(d: Mapping[str, Any]) -> ConnectorData:
    return ConnectorData(
        id=_s(d, "id"), name=_s(d, "name"), type=_s(d, "type"), source_uri=_s(d, "source_uri"),
        disabled=bool(d.get("disabled", False)), public_key=d.get("public_key"),
        created_at=parse_timestamp(d.get("created_at")))


# --- imports (2.16) ------------------------------------------------------------------------

def _import_options(body: dict[str, Any], source_prefix: str | None,
                    commit_message: str | None) -> dict[str, Any]:
    """Optional fields are sent only when given (2.16)."""
    if source_prefix is not None:
        body["source_prefix"] = source_prefix
    if commit_message is not None:
        body["commit_message"] = commit_message
    return body


def start_import_from_connector(org: str, repo: str, connector_id: str, destination_path: str,
                                *, source_prefix: str | None = None,
                                commit_message: str | None = None) -> WireRequest:
    body = {"connector_id": connector_id, "destination_path": destination_path}
    return WireRequest("POST", f"{_r(org, repo)}/import",
                       json=_import_options(body, source_prefix, commit_message))


def start_import_from_repository(org: str, repo: str, source_organization: str,
                                 source_repository: str, destination_path: str, *,
                                 source_prefix: str | None = None,
                                 commit_message: str | None = None) -> WireRequest:
    body = {"source_organization": source_organization,
            "source_repository": source_repository, "destination_path": destination_path}
    return WireRequest("POST", f"{_r(org, repo)}/import",
                       json=_import_options(body, source_prefix, commit_message))


def get_import(org: str, repo: str, job_id: str) -> WireRequest:
    return WireRequest("GET", f"{_r(org, repo)}/import/{job_id}")


def parse_job_id(body: Any) -> str:
    """Import start -> job id, passed through str() as 0.7.2 does (so it must not be null)."""
    return str((body or {}).get("job_id"))


def parse_import_job(d: Mapping[str, Any]) -> ImportJobData:
    return ImportJobData(
        id=_s(d, "id"), status=_s(d, "status"), repository_id=_s(d, "repository_id"),
        connector_id=_s(d, "connector_id"), source_prefix=_s(d, "source_prefix"),
        destination_path=_s(d, "destination_path"), commit_message=_s(d, "commit_message"),
        objects_imported=d.get("objects_imported"), commit_id=_s(d, "commit_id"),
        error=_s(d, "error"), source_repository_id=_s(d, "source_repository_id"),
        source_organization=_s(d, "source_organization"),
        source_repository=_s(d, "source_repository"),
        created_by_type=_s(d, "created_by_type"), created_by=_s(d, "created_by"),
        created_at=parse_timestamp(d.get("created_at")),
        updated_at=parse_timestamp(d.get("updated_at")))


# --- identity: members (2.2), agents and keys (2.10), roles (2.11), groups (2.12),
#     policies (2.13) ------------------------------------------------------------------------

def _o(org: str) -> str:
    return f"/organizations/{org}"


def list_members(org: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/members")


def add_member(org: str, username: str | None = None, *, user_id: str | None = None,
               role: str | None = None) -> WireRequest:
    """0.7.2 sends ``{username}``; the README's ``add(user_id=, role=)`` sends those keys."""
    body = {k: v for k, v in (("username", username), ("user_id", user_id), ("role", role))
            if v is not None}
    return WireRequest("POST", f"{_o(org)}/members", json=body)


def remove_member(org: str, user_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/members/{user_id}")


def _principals(kind: str) -> str:
    if kind not in ("agents", "roles"):
        raise ValueError(f"kind must be 'agents' or 'roles', not {kind!r}")
    return kind


def list_principals(org: str, kind: str, *, after: str | None = None,
                    amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/{_principals(kind)}",
                       _params(("amount", _amount(amount)), ("after", after)))


def get_principal(org: str, kind: str, name: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/{_principals(kind)}/{name}")


def delete_principal(org: str, kind: str, name: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/{_principals(kind)}/{name}")


def create_agent(org: str, name: str, *, description: str = "",
                 metadata: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {"name": name, "description": description}
    if metadata:
        body["metadata"] = dict(metadata)
    return WireRequest("POST", f"{_o(org)}/agents", json=body)


def update_agent(org: str, name: str, *, description: str | None = None,
                 metadata: Mapping[str, str] | None = None,
                 inline_policy: str | None = None) -> WireRequest:
    body: dict[str, Any] = {}
    if description is not None:
        body["description"] = description
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if inline_policy is not None:
        body["inline_policy"] = inline_policy
    return WireRequest("PUT", f"{_o(org)}/agents/{name}", json=body)


def create_role(org: str, name: str, *, description: str = "") -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/roles", json={"name": name,
                                                         "description": description})


def list_api_keys(org: str, kind: str, name: str, *, after: str | None = None,
                  amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/{_principals(kind)}/{name}/auth/keys",
                       _params(("amount", _amount(amount)), ("after", after)))


def get_api_key(org: str, kind: str, name: str, key_id: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/{_principals(kind)}/{name}/auth/keys/{key_id}")


def create_api_key(org: str, kind: str, name: str, key_name: str) -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/{_principals(kind)}/{name}/auth/keys",
                       json={"name": key_name})


def revoke_api_key(org: str, kind: str, name: str, key_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/{_principals(kind)}/{name}/auth/keys/{key_id}")


def list_groups(org: str, *, after: str | None = None,
                amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/groups",
                       _params(("amount", _amount(amount)), ("after", after)))


def get_group(org: str, group_id: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/groups/{group_id}")


def create_group(org: str, name: str, *, description: str = "") -> WireRequest:
    body = {"name": name}
    if description:
        body["description"] = description
    return WireRequest("POST", f"{_o(org)}/groups", json=body)


def update_group(org: str, group_id: str, *, name: str | None = None,
                 description: str | None = None) -> WireRequest:
    body = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
    return WireRequest("PUT", f"{_o(org)}/groups/{group_id}", json=body)


def delete_group(org: str, group_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/groups/{group_id}")


def add_group_member(org: str, group_id: str, subject_type: str,
                     subject_id: str) -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/groups/{group_id}/members",
                       json={"subject_type": subject_type, "subject_id": subject_id})


def remove_group_member(org: str, group_id: str, subject_type: str,
                        subject_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/groups/{group_id}/members",
                       _params(("subject_type", subject_type), ("subject_id", subject_id)))


def effective_groups(org: str, principal_type: str, principal_id: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/effective-groups",
                       _params(("principal_type", principal_type),
                               ("principal_id", principal_id)))


def list_policies(org: str, *, after: str | None = None,
                  amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/policies",
                       _params(("amount", _amount(amount)), ("after", after)))


def get_policy(org: str, policy_id: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/policies/{policy_id}")


def create_policy(org: str, name: str, policy_text: str, *, description: str = "") -> WireRequest:
    body = {"name": name, "policy_text": policy_text}
    if description:
        body["description"] = description
    return WireRequest("POST", f"{_o(org)}/policies", json=body)


def update_policy(org: str, policy_id: str, *, name: str | None = None,
                  description: str | None = None,
                  policy_text: str | None = None) -> WireRequest:
    body = {k: v for k, v in (("name", name), ("description", description),
                              ("policy_text", policy_text)) if v is not None}
    return WireRequest("PUT", f"{_o(org)}/policies/{policy_id}", json=body)


def delete_policy(org: str, policy_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/policies/{policy_id}")


def validate_policy(org: str, policy_text: str) -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/policies:validate", json={"policy_text": policy_text})


def generate_policy(org: str, prompt: str) -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/policies:generate", json={"prompt": prompt})


def attach_policy(org: str, policy_id: str, principal_type: str,
                  principal_id: str) -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/policies/{policy_id}/attachments",
                       json={"principal_type": principal_type, "principal_id": principal_id})


def detach_policy(org: str, policy_id: str, principal_type: str,
                  principal_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/policies/{policy_id}/attachments",
                       _params(("principal_type", principal_type),
                               ("principal_id", principal_id)))


def list_attachments(org: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/attachments")


def effective_policies(org: str, *, principal_type: str | None = None,
                       principal_id: str | None = None,
                       user_id: str | None = None) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/effective-policies",
                       _params(("user_id", user_id), ("principal_type", principal_type),
                               ("principal_id", principal_id)))


def parse_member(d: Mapping[str, Any]) -> MemberData:
    return MemberData(
        user_id=_s(d, "user_id"), username=d.get("username") or "",
        full_name=d.get("full_name") or "", email=d.get("email") or "",
        organization_id=_s(d, "organization_id"), joined_at=parse_timestamp(d.get("joined_at")),
        role=d.get("role") or "")


def parse_agent(d: Mapping[str, Any]) -> AgentData:
    return AgentData(
        id=_s(d, "id"), name=_s(d, "name"), description=_s(d, "description"),
        metadata=tuple((d.get("metadata") or {}).items()),
        inline_policy=_s(d, "inline_policy"),
        inline_policy_updated_at=parse_timestamp(d.get("inline_policy_updated_at")),
        organization_id=_s(d, "organization_id"), created_by_type=_s(d, "created_by_type"),
        created_by=_s(d, "created_by"), created_by_name=_s(d, "created_by_name"),
        created_at=parse_timestamp(d.get("created_at")),
        last_used_at=parse_timestamp(d.get("last_used_at")))


def parse_api_key(d: Mapping[str, Any]) -> APIKeyData:
    return APIKeyData(
        id=_s(d, "id"), name=_s(d, "name"), description=_s(d, "description"),
        token_hint=_s(d, "token_hint"), token=d.get("token") or "",
        created_at=parse_timestamp(d.get("created_at")),
        last_used_at=parse_timestamp(d.get("last_used_at")),
        revoked_at=parse_timestamp(d.get("revoked_at")))


def parse_role(d: Mapping[str, Any]) -> RoleData:
    return RoleData(
        id=_s(d, "id"), name=_s(d, "name"), description=_s(d, "description"),
        organization_id=_s(d, "organization_id"), created_by_type=_s(d, "created_by_type"),
        created_by=_s(d, "created_by"), created_by_name=_s(d, "created_by_name"),
        created_at=parse_timestamp(d.get("created_at")),
        last_used_at=parse_timestamp(d.get("last_used_at")))


def parse_group_member(d: Mapping[str, Any]) -> GroupMember:
    return GroupMember(subject_type=_s(d, "subject_type"), subject_id=_s(d, "subject_id"),
                       display_name=_s(d, "display_name"), username=_s(d, "username"),
                       added_at=parse_timestamp(d.get("added_at")))


def parse_attachment(d: Mapping[str, Any]) -> Attachment:
    return Attachment(
        policy_id=_s(d, "policy_id"), policy_name=_s(d, "policy_name"),
        is_builtin=bool(d.get("is_builtin", False)), principal_type=_s(d, "principal_type"),
        principal_id=_s(d, "principal_id"), principal_name=_s(d, "principal_name"),
        attached_by_type=_s(d, "attached_by_type"), attached_by=_s(d, "attached_by"),
        attached_at=parse_timestamp(d.get("attached_at")))


def parse_group(body: Mapping[str, Any]) -> GroupData:
    """Flat, wrapped or detail form (2.12): group fields from ``group`` when present,
    ``members`` and ``attachments`` always from the top level."""
    g = body.get("group") if isinstance(body.get("group"), Mapping) else body
    assert isinstance(g, Mapping)
    return GroupData(
        id=_s(g, "id"), name=_s(g, "name"), description=_s(g, "description"),
        organization_id=_s(g, "organization_id"), created_by_type=_s(g, "created_by_type"),
        created_by=_s(g, "created_by"), created_at=parse_timestamp(g.get("created_at")),
        members=tuple(parse_group_member(m) for m in body.get("members") or []),
        attachments=tuple(parse_attachment(a) for a in body.get("attachments") or []))


def parse_effective_group(d: Mapping[str, Any]) -> EffectiveGroup:
    return EffectiveGroup(group_id=_s(d, "group_id"), group_name=_s(d, "group_name"),
                          description=_s(d, "description"), source=_s(d, "source"),
                          source_name=_s(d, "source_name"))


def parse_policy(body: Mapping[str, Any]) -> PolicyData:
    """Flat or wrapped form (2.13); ``attachments`` from the top level."""
    p = body.get("policy") if isinstance(body.get("policy"), Mapping) else body
    assert isinstance(p, Mapping)
    return PolicyData(
        id=_s(p, "id"), name=_s(p, "name"), description=_s(p, "description"),
        policy_text=_s(p, "policy_text"), is_builtin=bool(p.get("is_builtin", False)),
        organization_id=_s(p, "organization_id"), created_by_type=_s(p, "created_by_type"),
        created_by=_s(p, "created_by"), created_at=parse_timestamp(p.get("created_at")),
        updated_at=parse_timestamp(p.get("updated_at")),
        attachment_count=int(p.get("attachment_count") or 0),
        attachments=tuple(parse_attachment(a) for a in body.get("attachments") or []))


def parse_effective_policy(d: Mapping[str, Any]) -> EffectivePolicy:
    return EffectivePolicy(policy_id=_s(d, "policy_id"), policy_name=_s(d, "policy_name"),
                           is_builtin=bool(d.get("is_builtin", False)), source=_s(d, "source"),
                           source_name=_s(d, "source_name"))


def parse_validation_result(body: Any) -> ValidationResult:
    body = body or {}
    return ValidationResult(valid=bool(body.get("valid", False)), errors=[
        ValidationError(line=int(e.get("line") or 0), column=int(e.get("column") or 0),
                        message=e.get("message") or "") for e in body.get("errors") or []])


def parse_policy_text(body: Any) -> str:
    """``policies:generate`` -> its text, through str() as 0.7.2 does."""
    return str((body or {}).get("policy_text"))
