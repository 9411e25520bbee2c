"""Uploads (spec 2.5.4-2.5.6): single (stage / PUT / finalize), multipart, and
tilde-server's batch extension."""

from __future__ import annotations

import json as _json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._values import (
    MultipartUpload,
    PutObjectResult,
    StagedUpload,
)
from .common import WireRequest, _header, _params, _r, _s

SINGLE_UPLOAD_LIMIT = 64 * 1024 * 1024
MULTIPART_PART_SIZE = 64 * 1024 * 1024
UPLOAD_CONTENT_TYPE = "application/octet-stream"
PART_REDIRECT_STATUSES = frozenset({301, 302, 307, 308})
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


def parse_staged_upload(body: Mapping[str, Any]) -> StagedUpload:
    return StagedUpload(upload_url=body["upload_url"], physical_address=body["physical_address"],
                        signature=body["signature"], expires_at=str(body["expires_at"]))


def parse_multipart_upload(body: Mapping[str, Any]) -> MultipartUpload:
    return MultipartUpload(upload_id=body["upload_id"], physical_address=body["physical_address"],
                           token=body["token"])


def parse_put_result(body: Any) -> PutObjectResult:
    body = body or {}
    return PutObjectResult(path=_s(body, "path"), etag=_s(body, "etag"))


def part_location(status: int, headers: Mapping[str, str]) -> str | None:
    """Location of a multipart part lookup, or None when the answer is not a usable redirect."""
    if status not in PART_REDIRECT_STATUSES:
        return None
    return _header(headers, "Location")


