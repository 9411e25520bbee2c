"""Uploads, written once for the client and the daemon: the wire requests of every upload
dialect and the upload *plan* (which requests, in which order, with which fallbacks).

Dialects (../shared/spec/tilde-api-changes.md 2.5-2.7, 5):
- current (0.7.7+, the hosted service): ``PUT {R}/object`` (no body) -> ``{upload_url,
  upload_token}``, PUT the bytes, ``POST {R}/object/finalize`` with the token; multipart
  initiate -> ``{upload_id, upload_token}``, part URL as JSON, ``DELETE`` abort;
- legacy (0.7.2-0.7.6 servers): ``POST {R}/object/stage``, PUT, ``PUT {R}/object/finalize``;
  multipart part URL as a redirect, ``POST .../abort``;
- tilde-server's batch extension (many small objects per request), where offered.

The plan is a generator (`put_plan`) that yields `Call` / `PutBody` / `PutParts` steps and
receives `Reply` values, so the synchronous client and the async daemon drive the same
logic with their own I/O (the h11 / wsproto pattern). Subtleties:

1. Current first. A 404/405/501 on ``PUT {R}/object`` tries the legacy stage route; only a
   stage that then succeeds makes ``UploadState.single`` "legacy" for the driver's life. A
   404 is also what a current server says for an unknown session, so if stage fails as
   well the *first* error is raised and nothing is remembered.
2. An ede-era server (openapi.yaml) takes the empty ``PUT {R}/object`` as a direct zero-byte
   upload and answers without ``upload_url``: that too means legacy (its finalize then
   overwrites the empty staged object).
3. Multipart: the initiate answer decides the dialect (``upload_token`` -> current, else
   ``token`` + ``physical_address`` -> legacy); a union answer (tilde-server) is current.
   Complete and finalize bodies are never a union: ede-era schemas forbid extra keys.
4. A 501 from initiate, a part lookup or complete means "no multipart": remembered
   (``UploadState.multipart``), the upload is aborted if it was initiated, and the source
   is sent again as one single upload (the driver rewinds it for the `PutBody` step).
5. Any other failure after initiate aborts (the abort's own errors are swallowed: the first
   failure is what the caller needs) and re-raises.
6. The part lookup's answer may be a 3xx with ``Location`` (legacy) or JSON
   ``{upload_url}`` (current); either is accepted whatever the dialect (`part_upload_url`).
7. The ETag of a current-dialect body PUT (quotes stripped) is sent as ``checksum``; since
   the service's finalize may answer ``{path}`` only, that checksum is the result's etag
   when finalize names none.
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._values import PutObjectResult, StagedUpload
from ..exceptions import APIError, TransportError
from .common import WireRequest, _header, _params, _r, _s, resolve_upload_url

SINGLE_UPLOAD_LIMIT = 64 * 1024 * 1024
MULTIPART_PART_SIZE = 64 * 1024 * 1024
UPLOAD_CONTENT_TYPE = "application/octet-stream"
PART_REDIRECT_STATUSES = frozenset({301, 302, 307, 308})
#: answers on a route that mean "this server does not have it" (spec 5.2)
ROUTE_MISSING = frozenset({404, 405, 501})


def _with_metadata(body: dict[str, Any], metadata: Mapping[str, str] | None) -> dict[str, Any]:
    """``body`` with the object's user metadata, sent only when there is some: the step
    that makes an upload an object carries it, in every dialect."""
    return {**body, "metadata": dict(metadata)} if metadata else body


# --- requests: current dialect (0.7.7+) ----------------------------------------------

def request_upload_url(org: str, repo: str, path: str, *, session_id: str) -> WireRequest:
    """``PUT {R}/object`` with no body: asks for an upload URL and token."""
    return WireRequest("PUT", f"{_r(org, repo)}/object",
                       _params(("session_id", session_id), ("path", path)))


def finalize_upload(org: str, repo: str, path: str, *, session_id: str, upload_token: str,
                    checksum: str | None = None, size_bytes: int | None = None,
                    metadata: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {"upload_token": upload_token, "content_type": UPLOAD_CONTENT_TYPE}
    if checksum:
        body["checksum"] = checksum
    if size_bytes is not None:
        body["size_bytes"] = size_bytes
    return WireRequest("POST", f"{_r(org, repo)}/object/finalize",
                       _params(("session_id", session_id), ("path", path)),
                       json=_with_metadata(body, metadata))


# --- requests: legacy dialect (0.7.2-0.7.6) ----------------------------------------------

def stage_object(org: str, repo: str, path: str, *, session_id: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/object/stage",
                       _params(("session_id", session_id), ("path", path)))


def finalize_object(org: str, repo: str, path: str, *, session_id: str, physical_address: str,
                    signature: str, expires_at: str,
                    metadata: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {"physical_address": physical_address, "signature": signature,
                            "content_type": UPLOAD_CONTENT_TYPE}
    return WireRequest(
        "PUT", f"{_r(org, repo)}/object/finalize",
        _params(("session_id", session_id), ("path", path), ("expires_at", expires_at)),
        json=_with_metadata(body, metadata))


# --- requests: multipart, both dialects -----------------------------------------------

@dataclass(frozen=True)
class MultipartInit:
    """The initiate answer; ``upload_token`` set means the current dialect (subtlety 3)."""

    upload_id: str
    upload_token: str = ""
    token: str = ""
    physical_address: str = ""

    @property
    def current(self) -> bool:
        return bool(self.upload_token)


def initiate_multipart(org: str, repo: str, path: str, *, session_id: str) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/object/multipart",
                       _params(("session_id", session_id), ("path", path)))


def parse_multipart_init(body: Any) -> MultipartInit:
    if not isinstance(body, dict) or not isinstance(body.get("upload_id"), str):
        raise APIError(0, message="multipart initiate answer lacks upload_id")
    init = MultipartInit(body["upload_id"], str(body.get("upload_token") or ""),
                         str(body.get("token") or ""), str(body.get("physical_address") or ""))
    if not init.current and not (init.token and init.physical_address):
        raise APIError(0, message="multipart initiate answer has neither upload_token nor "
                                  "token and physical_address")
    return init


def multipart_part_url(org: str, repo: str, *, token: str, part_number: int,
                       upload_id: str) -> WireRequest:
    """Legacy part URL lookup: the answer is a 301/302/307/308 whose Location is the URL."""
    return WireRequest("GET", f"{_r(org, repo)}/object/multipart/part", _params(
        ("token", token), ("part_number", part_number), ("upload_id", upload_id)))


def part_url_request(org: str, repo: str, path: str, init: MultipartInit, *, session_id: str,
                     part_number: int) -> WireRequest:
    """The part lookup in the initiate answer's dialect (0.7.8's query order when current)."""
    if not init.current:
        return multipart_part_url(org, repo, token=init.token, part_number=part_number,
                                  upload_id=init.upload_id)
    return WireRequest("GET", f"{_r(org, repo)}/object/multipart/part", _params(
        ("session_id", session_id), ("path", path), ("upload_id", init.upload_id),
        ("upload_token", init.upload_token), ("part_number", part_number)))


def part_upload_url(base: str, status: int, headers: Mapping[str, str], body: Any) -> str:
    """The part's upload URL from a lookup answer: a redirect's Location or JSON
    ``upload_url`` (subtlety 6); relative URLs are appended to ``base``."""
    location = part_location(status, headers)
    if location is None and 200 <= status < 300 and isinstance(body, dict):
        url = body.get("upload_url")
        location = url if isinstance(url, str) and url else None
    if location is None:
        raise TransportError(f"part URL lookup answered {status} without a URL")
    return resolve_upload_url(base, location)


def complete_multipart(org: str, repo: str, path: str, *, session_id: str, token: str,
                       upload_id: str, physical_address: str, parts: Iterable[tuple[int, str]],
                       total_size: int, metadata: Mapping[str, str] | None = None
                       ) -> WireRequest:
    """Legacy complete body."""
    return _complete(org, repo, path, session_id, metadata, {
        "token": token, "upload_id": upload_id, "physical_address": physical_address,
        "parts": [{"part_number": n, "etag": etag} for n, etag in parts],
        "total_size": total_size, "content_type": UPLOAD_CONTENT_TYPE})


def complete_request(org: str, repo: str, path: str, init: MultipartInit, *, session_id: str,
                     parts: Iterable[tuple[int, str]], total_size: int,
                     metadata: Mapping[str, str] | None = None) -> WireRequest:
    """Complete in the initiate answer's dialect; part ETags are passed back verbatim."""
    if not init.current:
        return complete_multipart(org, repo, path, session_id=session_id, token=init.token,
                                  upload_id=init.upload_id,
                                  physical_address=init.physical_address, parts=parts,
                                  total_size=total_size, metadata=metadata)
    return _complete(org, repo, path, session_id, metadata, {
        "upload_id": init.upload_id, "upload_token": init.upload_token,
        "parts": [{"part_number": n, "etag": etag} for n, etag in parts],
        "content_type": UPLOAD_CONTENT_TYPE, "size_bytes": total_size})


def _complete(org: str, repo: str, path: str, session_id: str,
              metadata: Mapping[str, str] | None, body: dict[str, Any]) -> WireRequest:
    return WireRequest("POST", f"{_r(org, repo)}/object/multipart/complete",
                       _params(("session_id", session_id), ("path", path)),
                       json=_with_metadata(body, metadata))


def abort_multipart(org: str, repo: str, path: str, *, session_id: str, token: str,
                    upload_id: str, physical_address: str) -> WireRequest:
    """Legacy abort."""
    return WireRequest(
        "POST", f"{_r(org, repo)}/object/multipart/abort",
        _params(("session_id", session_id), ("path", path)),
        json={"token": token, "upload_id": upload_id, "physical_address": physical_address})


def abort_request(org: str, repo: str, path: str, init: MultipartInit, *,
                  session_id: str) -> WireRequest:
    if not init.current:
        return abort_multipart(org, repo, path, session_id=session_id, token=init.token,
                               upload_id=init.upload_id, physical_address=init.physical_address)
    return WireRequest("DELETE", f"{_r(org, repo)}/object/multipart", _params(
        ("session_id", session_id), ("path", path), ("upload_id", init.upload_id),
        ("upload_token", init.upload_token)))


# --- the plan ----------------------------------------------------------------------------

@dataclass
class UploadState:
    """What a driver (one client, one daemon) has learned of the server's upload routes."""

    single: str = "unknown"  # "current" | "legacy" | "unknown"
    multipart: bool = True


@dataclass(frozen=True)
class Reply:
    """A 2xx answer (or 3xx where the step allows it), as the driver saw it."""

    status: int
    headers: Mapping[str, str]
    body: Any = None  # decoded JSON, or None


@dataclass(frozen=True)
class Call:
    """An API request with the bearer. A non-2xx answer is thrown into the plan as the
    exception of the one status table; ``redirect_ok`` makes a 3xx an answer instead."""

    kind: str
    request: WireRequest
    redirect_ok: bool = False


@dataclass(frozen=True)
class PutBody:
    """PUT the whole source, from its start, to a signed URL (no Authorization; any
    non-2xx is a `TransportError`). The reply's headers carry the ETag."""

    kind: str
    url: str


@dataclass(frozen=True)
class PutParts:
    """Upload every part of the source: for part n (from 1), send ``lookup(n)`` as a
    `Call` with ``redirect_ok``, take the URL with `part_upload_url`, PUT the part there.
    The driver answers with a `Reply` whose body is ``(parts, total_size)``, parts being
    ``[(n, etag as received)]`` in ascending order. Drivers may run parts concurrently."""

    lookup: Callable[[int], WireRequest]


Step = Call | PutBody | PutParts
Plan = Generator[Step, Reply, PutObjectResult]


def _etag(headers: Mapping[str, str]) -> str:
    return (_header(headers, "ETag") or "").strip('"')


def single_plan(org: str, repo: str, path: str, *, session_id: str, base: str,
                state: UploadState, size: int | None,
                metadata: Mapping[str, str] | None = None) -> Plan:
    """One single upload (subtleties 1, 2, 7)."""
    first: APIError | None = None
    if state.single != "legacy":
        try:
            r = yield Call("upload_url", request_upload_url(org, repo, path,
                                                            session_id=session_id))
        except APIError as err:
            if err.status_code not in ROUTE_MISSING or state.single == "current":
                raise
            first = err
        else:
            body = r.body if isinstance(r.body, dict) else {}
            url, token = body.get("upload_url"), body.get("upload_token")
            if isinstance(url, str) and isinstance(token, str) and url and token:
                state.single = "current"
                put = yield PutBody("put", resolve_upload_url(base, url))
                checksum = _etag(put.headers)
                fin = yield Call("finalize", finalize_upload(
                    org, repo, path, session_id=session_id, upload_token=token,
                    checksum=checksum or None, size_bytes=size, metadata=metadata))
                result = parse_put_result(fin.body)
                return PutObjectResult(result.path or path, result.etag or checksum)
    try:
        r = yield Call("stage", stage_object(org, repo, path, session_id=session_id))
    except APIError as err:
        if first is not None and err.status_code in ROUTE_MISSING:
            raise first from None
        raise
    state.single = "legacy"
    staged = parse_staged_upload(r.body)
    yield PutBody("put", resolve_upload_url(base, staged.upload_url))
    fin = yield Call("finalize", finalize_object(
        org, repo, path, session_id=session_id, physical_address=staged.physical_address,
        signature=staged.signature, expires_at=staged.expires_at, metadata=metadata))
    return parse_put_result(fin.body)


def multipart_plan(org: str, repo: str, path: str, *, session_id: str, base: str,
                   state: UploadState, size: int | None,
                   metadata: Mapping[str, str] | None = None) -> Plan:
    """A multipart upload, falling back to one single upload on a 501 (subtleties 3-5)."""
    try:
        r = yield Call("multipart_init", initiate_multipart(org, repo, path,
                                                            session_id=session_id))
    except APIError as err:
        if err.status_code != 501:
            raise
        state.multipart = False
        return (yield from single_plan(org, repo, path, session_id=session_id, base=base,
                                       state=state, size=size, metadata=metadata))
    init = parse_multipart_init(r.body)
    try:
        done = yield PutParts(lambda n: part_url_request(org, repo, path, init,
                                                         session_id=session_id,
                                                         part_number=n))
        parts, total = done.body
        fin = yield Call("multipart_complete", complete_request(
            org, repo, path, init, session_id=session_id, parts=parts, total_size=total,
            metadata=metadata))
    except GeneratorExit:
        raise
    except BaseException as err:
        try:
            yield Call("multipart_abort", abort_request(org, repo, path, init,
                                                        session_id=session_id))
        except Exception:  # the first failure is the one to report
            pass
        if isinstance(err, APIError) and err.status_code == 501:
            state.multipart = False
            return (yield from single_plan(org, repo, path, session_id=session_id, base=base,
                                           state=state, size=size, metadata=metadata))
        raise
    return parse_put_result(fin.body)


def put_plan(org: str, repo: str, path: str, *, session_id: str, base: str,
             state: UploadState, size: int | None,
             single_limit: int = SINGLE_UPLOAD_LIMIT,
             metadata: Mapping[str, str] | None = None) -> Plan:
    """The upload of one object: single below ``single_limit`` (known size) or when the
    server has no multipart, multipart otherwise (2.5.4). ``metadata``: the object's user
    metadata, sent with the step that makes it an object (finalize or complete)."""
    if not state.multipart or (size is not None and size < single_limit):
        return single_plan(org, repo, path, session_id=session_id, base=base, state=state,
                           size=size, metadata=metadata)
    return multipart_plan(org, repo, path, session_id=session_id, base=base, state=state,
                          size=size, metadata=metadata)


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


def encode_batch(items: Sequence[tuple[str, bytes]],
                 metadata: Sequence[Mapping[str, str] | None] = ()) -> bytes:
    """Manifest (compact JSON, one line) + newline + every object's bytes in order;
    ``metadata[i]``, when given and not empty, is the i-th object's user metadata."""
    objects: list[dict[str, Any]] = []
    for i, (path, data) in enumerate(items):
        obj: dict[str, Any] = {"path": path, "size": len(data)}
        meta = metadata[i] if i < len(metadata) else None
        if meta:
            obj["metadata"] = dict(meta)
        objects.append(obj)
    head = _json.dumps({"objects": objects}, separators=(",", ":"),
                       ensure_ascii=False).encode()
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


def parse_staged_upload(body: Mapping[str, Any]) -> StagedUpload:
    return StagedUpload(upload_url=body["upload_url"], physical_address=body["physical_address"],
                        signature=body["signature"], expires_at=str(body["expires_at"]))


def parse_put_result(body: Any) -> PutObjectResult:
    body = body or {}
    return PutObjectResult(path=_s(body, "path"), etag=_s(body, "etag"))


def part_location(status: int, headers: Mapping[str, str]) -> str | None:
    """Location of a multipart part lookup, or None when the answer is not a usable redirect."""
    if status not in PART_REDIRECT_STATUSES:
        return None
    return _header(headers, "Location")


