"""Objects (spec 2.5): list, get (Range), head, both single-upload flows, multipart in both
dialects, copy, delete; the signed upload URLs that the client PUTs bytes to without a bearer
header, and the signed download URLs of `--downloads redirect`.

Subtleties:
1. Object bytes are streamed from the blob file in chunks read in worker threads; nothing
   loads a whole object. Upload bodies (chunked or not) are written the same way.
2. The signed upload routes live outside /api/v1 (under /_tilde/) and are authorized by their
   signature alone; the stage signature covers (physical_address, expires_at, session, path).
3. Range: one `bytes=S-E`, `bytes=S-` or `bytes=-N` range. A range that starts beyond the end
   (or any range on an empty object), a malformed header or several ranges get 416 with
   `Content-Range: bytes */size`; an end beyond the object is clamped (RFC 9110).
4. Header values must be latin-1: user metadata that is not printable ASCII is sent
   percent-encoded in X-Tilde-Meta-* headers; content types are validated at upload.
5. The batch upload extension (POST .../objects/upload, docs/api.md) reads its body as a
   stream: the manifest line first (at most MAX_MANIFEST_BYTES held), then the objects'
   bytes in WRITE_BATCH slices straight to spool files. Every refusal (bad manifest, denied
   path, closed session, a body shorter or longer than the sizes) comes before anything is
   staged, and a refused batch leaves no spool or blob behind.
6. One server, every official release (tilde-api-changes.md section 4): the single-upload
   flows differ by route (`POST stage` + `PUT finalize` against `PUT /object` + `POST
   finalize`), the multipart part lookup by query keys (`token` or not), complete by body
   keys (`token`/`physical_address` or `upload_token`). `--wire current|legacy` takes one
   dialect away: its routes answer 405 (REFUSED) or, for the batch extension the hosted
   service never had, 404 (ABSENT); the shared routes answer only their own dialect.
7. Downloads in redirect mode (`--downloads redirect`): a GET answers 307 to
   `/_tilde/download?token=...`, a signed grant for the version current at that moment
   (engine subtlety 9); the target authorizes by signature alone and answers exactly what
   the streaming GET answers (Range, 416, every header). Which GETs redirect: `_redirects`.
   HEAD never redirects (no client follows a redirect on HEAD). With blobs in a bucket the
   307 goes to a presigned GET of the bucket itself, whenever the bucket's ETag is the
   object's (engine `bucket_download_url`); uploads go there too (`upload_url` and part
   URLs are presigned PUTs), so object bytes never pass through this server.
8. Extensions of tilde-server alone (docs/api.md), absent with `--wire current` as the batch
   upload is: `PUT .../object/metadata` (a metadata-only update, no bytes) and
   `markers=true` on a delimiter listing (a prefix row carries its `P` marker object's
   entry; found while collapsing the prefix, listing subtlety 7, so it costs no query).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import formatdate
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from tilde_server.authz.enforce import authorize_paths
from tilde_server.routes.common import (
    amount,
    client_version,
    entry_json,
    field_int,
    field_req,
    field_str,
    json_body,
    json_object,
    org_repo,
    page_json,
    query,
    query_required,
    run,
    store_of,
    wire_options,
)
from tilde_server.routes.orgs import REPO
from tilde_server.store import BadRequest, Obj, RangeNotSatisfiable
from tilde_server.store import validation as v
from tilde_server.store.blobs import SpoolSequence
from tilde_server.store.engine import BatchItem, multipart_address

CHUNK = 4 * 1024 * 1024  # GET chunk: 1.2-1.4x the rate of 256 KiB chunks (docs/performance.md, I)
WRITE_BATCH = 1024 * 1024
# Batch upload limits: the mount sends a directory's small files in batches well below these.
MAX_BATCH_OBJECTS = 1000
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_BATCH_BYTES = 64 * 1024 * 1024
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def parse_range(header: str, size: int) -> tuple[int, int]:
    """Inclusive (start, end) of a single byte range; RangeNotSatisfiable otherwise."""
    m = _RANGE_RE.match(header.strip().replace(" ", ""))
    if not m or (m.group(1) == "" and m.group(2) == ""):
        raise RangeNotSatisfiable("malformed or multiple Range", size)
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable("range not satisfiable", size)
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable("range not satisfiable", size)
    return start, min(end, size - 1)


def object_headers(o: Obj) -> dict[str, str]:
    when = datetime.strptime(o.last_modified, "%Y-%m-%dT%H:%M:%S.%fZ")
    headers = {
        "ETag": f'"{o.etag}"',
        "Content-Type": o.content_type,
        "Accept-Ranges": "bytes",
        "Last-Modified": formatdate(when.timestamp(), usegmt=True),
        "X-Tilde-Reproducible": "false" if o.staged else "true",
    }
    for k, val in o.metadata.items():
        if _TOKEN_RE.match(k):
            printable = all(0x20 <= ord(ch) < 0x7F for ch in val)
            headers[f"X-Tilde-Meta-{k}"] = val if printable else quote(val, safe="")
    return headers


def _view_args(request: Request) -> dict[str, Any]:
    return {"session": query(request, "session_id"), "ref": query(request, "ref")}


async def list_objects(request: Request) -> Response:
    """`markers=true` (an extension, subtlety 8) puts a prefix's marker object in its row."""
    org, repo = org_repo(request)
    markers = False
    if wire_options(request).wire != "current":  # the service ignores what it lacks
        markers = _flag(query(request, "markers") or "", "markers")
    page = await run(store_of(request).list_objects, org, repo, **_view_args(request),
                     prefix=query(request, "prefix") or "",
                     delimiter=query(request, "delimiter"),
                     after=query(request, "after"), amount=amount(request), markers=markers)
    results = []
    for item in page.items:
        if item.kind == "prefix":
            results.append({"path": item.path, "type": "prefix",
                            "entry": entry_json(item.payload) if item.payload else None})
        else:
            results.append({"path": item.path, "type": "object",
                            "entry": entry_json(item.payload)})
    if not (markers and query(request, "delimiter")):
        return page_json(results, page)
    # says every marker is attached: a prefix row without one has none (no HEAD needed)
    return page_json(results, page, extra={"markers": True})


async def _stream(f: BinaryIO, start: int, length: int) -> AsyncIterator[bytes]:
    try:
        await run(f.seek, start)
        remaining = length
        while remaining > 0:
            chunk = await run(f.read, min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        f.close()


async def object_(request: Request) -> Response:
    """GET (content), HEAD (metadata), DELETE (stage tombstone) of one object."""
    store = store_of(request)
    org, repo = org_repo(request)
    path = query_required(request, "path")
    if request.method == "DELETE":
        session = query_required(request, "session_id")
        await run(store.delete_objects, org, repo, session, [path], must_exist=True)
        return Response(status_code=204)
    if request.method == "HEAD":
        o = await run(store.stat_object, org, repo, path, **_view_args(request))
        headers = object_headers(o)
        headers["Content-Length"] = str(o.size)
        return Response(status_code=200, headers=headers)
    if _redirects(request):
        o = await run(store.stat_object, org, repo, path, **_view_args(request))
        ttl = wire_options(request).download_url_ttl
        direct = await run(store.bucket_download_url, o, ttl)
        if direct is not None:  # straight to the bucket (s3blobs.py)
            return RedirectResponse(direct, status_code=307,
                                    headers={"Cache-Control": "no-store"})
        token = store.sign_download(o, ttl)
        if token is not None:  # None: metadata too long for a URL, stream instead
            return RedirectResponse(_signed_url(request, "/_tilde/download", {"token": token}),
                                    status_code=307, headers={"Cache-Control": "no-store"})
    o, f = await run(store.open_object, org, repo, path, **_view_args(request))
    return _content(request, o, f)


def _content(request: Request, o: Obj, f: BinaryIO) -> Response:
    """The bytes of `o` from its open blob file `f` (200, or 206 for a Range); closes `f`."""
    try:
        headers = object_headers(o)
        if request.method == "HEAD":
            headers["Content-Length"] = str(o.size)
            f.close()
            return Response(status_code=200, headers=headers)
        status = 200
        start, end = 0, o.size - 1
        rng = request.headers.get("range")
        if rng is not None:
            start, end = parse_range(rng, o.size)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{o.size}"
        length = end - start + 1
        headers["Content-Length"] = str(length)
    except BaseException:
        f.close()
        raise
    return StreamingResponse(_stream(f, start, length), status_code=status, headers=headers,
                             media_type=o.content_type)


def _flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise BadRequest(f"{name} must be true or false", "invalid_parameter")


def _redirects(request: Request) -> bool:
    """Whether a GET of an object answers 307 to a signed download URL (subtlety 7).

    `--downloads stream`: never (`presign` is accepted and ignored). `--downloads redirect`
    with `--wire current`: always, as the hosted service does. Otherwise `presign=true`
    redirects and `presign=false` streams; without `presign`, every caller is redirected but
    tilde-python-sdk 0.7.2-0.7.6, whose presign=False reads cannot follow a redirect."""
    opts = wire_options(request)
    if opts.downloads != "redirect" or request.method != "GET":
        return False
    if opts.wire == "current":
        return True
    presign = request.query_params.get("presign")
    if presign is not None:
        return _flag(presign, "presign")
    version = client_version(request)
    return version is None or version >= (0, 7, 7)


async def download(request: Request) -> Response:
    """GET/HEAD `/_tilde/download?token=`: the version a download grant names (no bearer;
    an Authorization header is ignored). 403 when tampered or expired."""
    o, f = await run(store_of(request).open_download, query_required(request, "token"))
    return _content(request, o, f)


def _signed_url(request: Request, route: str, params: dict[str, Any]) -> str:
    """An absolute URL on `--signed-url-base`, else on the request's own base URL."""
    base = wire_options(request).signed_url_base or str(request.base_url).rstrip("/")
    return f"{base}{route}?{urlencode(params)}"


def _single_url(request: Request, session: str, path: str, address: str, expires_at: str,
                signature: str) -> str:
    return _signed_url(request, "/_tilde/upload", {
        "session_id": session, "path": path, "address": address, "expires_at": expires_at,
        "signature": signature})


async def stage(request: Request) -> Response:
    org, repo = org_repo(request)
    session = query_required(request, "session_id")
    path = query_required(request, "path")
    st = await run(store_of(request).stage_upload, org, repo, session, path)
    url = st.url or _single_url(request, session, path, st.address, st.expires_at, st.signature)
    return JSONResponse({"upload_url": url, "physical_address": st.address,
                         "signature": st.signature, "expires_at": st.expires_at})


async def upload_url(request: Request) -> Response:
    """0.7.7 `PUT {R}/object` (no body): an upload URL and the token that finalizes it. The key
    and session are checked here, where a refusal is an API error the client can see."""
    org, repo = org_repo(request)
    session = query_required(request, "session_id")
    path = query_required(request, "path")
    async for chunk in request.stream():
        if chunk:
            raise BadRequest("PUT .../object takes no body: it answers {upload_url, "
                             "upload_token}; PUT the bytes to upload_url", "invalid_input")
    st = await run(store_of(request).stage_upload, org, repo, session, path)
    url = st.url or _single_url(request, session, path, st.address, st.expires_at, st.signature)
    return JSONResponse({"upload_url": url, "upload_token": st.token})


async def finalize(request: Request) -> Response:
    org, repo = org_repo(request)
    session = query_required(request, "session_id")
    path = query_required(request, "path")
    expires_at = query_required(request, "expires_at")
    body = await json_body(request)
    o = await run(store_of(request).finalize_upload, org, repo, session, path,
                  field_req(body, "physical_address"), field_req(body, "signature"),
                  expires_at, field_str(body, "content_type", default="") or "",
                  v.metadata(body.get("metadata")))
    return JSONResponse({"path": o.path, "etag": o.etag})


async def finalize_token(request: Request) -> Response:
    """0.7.7 `POST {R}/object/finalize` `{upload_token, content_type, checksum?, size_bytes?}`;
    201 `{path, etag}` (a 204 would crash the client)."""
    org, repo = org_repo(request)
    session = query_required(request, "session_id")
    path = query_required(request, "path")
    body = await json_body(request)
    o = await run(store_of(request).finalize_token_upload, org, repo, session, path,
                  field_req(body, "upload_token"),
                  field_str(body, "content_type", default="") or "",
                  v.metadata(body.get("metadata")), field_str(body, "checksum"),
                  field_int(body, "size_bytes", minimum=0))
    return JSONResponse({"path": o.path, "etag": o.etag}, status_code=201)


async def _receive(request: Request, session: str, address: str, path: str,
                   part: int | None) -> Response:
    """Stream a request body to a spool file in worker threads; answer with its ETag."""
    store = store_of(request)
    spool = await run(store.begin_receive, session, address, part)
    try:
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) >= WRITE_BATCH:
                await run(spool.write, bytes(buf))
                buf.clear()
        if buf:
            await run(spool.write, bytes(buf))
    except ClientDisconnect:
        await run(spool.abort)
        raise BadRequest("client disconnected during upload", "incomplete_body") from None
    except BaseException:
        spool.abort()
        raise
    md5 = await run(store.end_receive, session, address, path, part, spool)
    return JSONResponse({"etag": md5}, headers={"ETag": f'"{md5}"'})


async def upload_put(request: Request) -> Response:
    """PUT bytes of a single upload to the URL from stage (signature-authorized)."""
    session = query_required(request, "session_id")
    path = query_required(request, "path")
    address = query_required(request, "address")
    expires_at = query_required(request, "expires_at")
    signature = query_required(request, "signature")
    store_of(request).verify_single_upload(signature, address, expires_at, session, path)
    return await _receive(request, session, address, path, None)


def _part_number(raw: str | None) -> int:
    try:
        n = int(raw or "")
    except ValueError:
        raise BadRequest("part_number must be an integer", "invalid_parameter") from None
    if not 1 <= n <= 10000:
        raise BadRequest("part_number must be in 1..10000", "invalid_parameter")
    return n


async def part_put(request: Request) -> Response:
    """PUT bytes of one multipart part (authorized by the part URL's token)."""
    t = store_of(request).read_part_url_token(query_required(request, "token"))
    n = _part_number(query(request, "part_number"))
    return await _receive(request, t["s"], t["a"], t["p"], n)


async def multipart_initiate(request: Request) -> Response:
    """Both dialects send the same request, so `--wire all` answers the union (0.7.2-0.7.6
    need `token` + `physical_address`, 0.7.7+ `upload_token`; one secret serves as both)."""
    org, repo = org_repo(request)
    mp = await run(store_of(request).initiate_multipart, org, repo,
                   query_required(request, "session_id"), query_required(request, "path"))
    opts = wire_options(request)
    body: dict[str, Any] = {"upload_id": mp.upload_id}
    if opts.serves_legacy:  # the union where both are served (spec 4, item 5)
        body.update(physical_address=mp.address, token=mp.token, expires_at=mp.expires_at)
    if opts.serves_current:
        body["upload_token"] = mp.token
    return JSONResponse(body, status_code=201 if opts.serves_legacy else 200)


async def multipart_part(request: Request) -> Response:
    """Part URL, routed by query keys: with `token` (0.7.2-0.7.6) a 307 to the signed part
    URL; without (0.7.7+) 200 `{upload_url}`, found by the (session, path, upload_id) binding,
    `upload_token` checked when sent (0.7.8+ send it, 0.7.7 does not)."""
    opts = wire_options(request)
    n = _part_number(query(request, "part_number"))
    token = query(request, "token")
    if token is not None and opts.serves_legacy:
        upload_id = query_required(request, "upload_id")
        t = store_of(request).read_multipart_token(token, upload_id)
        await authorize_paths(request, [str(t["p"])])
        direct = await run(store_of(request).bucket_part_url, str(t["a"]), n)
        url = direct or _signed_url(request, "/_tilde/part", {"token": token, "part_number": n})
        return RedirectResponse(url, status_code=307)
    if not opts.serves_current:
        raise BadRequest("query parameter 'token' is required", "missing_parameter")
    org, repo = org_repo(request)
    path = query_required(request, "path")
    await authorize_paths(request, [path])
    upload_id = query_required(request, "upload_id")
    part_token = await run(store_of(request).part_token, org, repo,
                           query_required(request, "session_id"), path,
                           upload_id, query(request, "upload_token"))
    direct = await run(store_of(request).bucket_part_url, multipart_address(upload_id), n)
    url = direct or _signed_url(request, "/_tilde/part", {"token": part_token, "part_number": n})
    return JSONResponse({"upload_url": url})


def _parts(body: dict[str, Any]) -> list[tuple[int, str]]:
    raw = body.get("parts")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise BadRequest("parts must be an array", "invalid_input")
    out = []
    for p in raw:
        if not isinstance(p, dict):
            raise BadRequest("each part must be an object", "invalid_input")
        n = field_int(p, "part_number", minimum=1)
        etag = field_str(p, "etag", default="")
        if n is None:
            raise BadRequest("part_number is required", "invalid_input")
        out.append((n, etag or ""))
    return out


async def multipart_complete(request: Request) -> Response:
    """Complete, routed by body keys: `{token, upload_id, physical_address, parts,
    total_size?}` (0.7.2-0.7.6, 200) or `{upload_id, upload_token, parts, size_bytes?,
    checksum?}` (0.7.7+, 201). Neither size is required; `parts: []` is an empty object."""
    org, repo = org_repo(request)
    opts = wire_options(request)
    body = await json_body(request)
    new_body = "upload_token" in body or not ("token" in body or "physical_address" in body)
    if new_body and not opts.serves_current:
        raise BadRequest("fields 'token', 'upload_id' and 'physical_address' are required",
                         "invalid_input")
    if not new_body and not opts.serves_legacy:
        raise BadRequest("field 'upload_token' is required", "invalid_input")
    session, path = query_required(request, "session_id"), query_required(request, "path")
    content_type = field_str(body, "content_type", default="") or ""
    metadata = v.metadata(body.get("metadata"))
    if new_body:
        o = await run(store_of(request).complete_multipart, org, repo, session, path,
                      field_req(body, "upload_token"), field_req(body, "upload_id"), None,
                      _parts(body), field_int(body, "size_bytes", minimum=0), content_type,
                      metadata, field_str(body, "checksum"))
        return JSONResponse({"path": o.path, "etag": o.etag}, status_code=201)
    o = await run(store_of(request).complete_multipart, org, repo, session, path,
                  field_req(body, "token"), field_req(body, "upload_id"),
                  field_req(body, "physical_address"), _parts(body),
                  field_int(body, "total_size", minimum=0), content_type, metadata)
    return JSONResponse({"path": o.path, "etag": o.etag})


async def multipart_abort(request: Request) -> Response:
    org, repo = org_repo(request)
    body = await json_body(request, required=False)
    token = field_str(body, "token") or query_required(request, "token")
    upload_id = field_str(body, "upload_id") or query_required(request, "upload_id")
    address = field_str(body, "physical_address") or query_required(request, "physical_address")
    await run(store_of(request).abort_multipart, org, repo,
              query_required(request, "session_id"), query_required(request, "path"),
              token, upload_id, address)
    return Response(status_code=204)


async def multipart_delete(request: Request) -> Response:
    """0.7.7 abort `DELETE {R}/object/multipart?session_id&path&upload_id[&upload_token]`."""
    org, repo = org_repo(request)
    await run(store_of(request).abort_multipart_by_id, org, repo,
              query_required(request, "session_id"), query_required(request, "path"),
              query_required(request, "upload_id"), query(request, "upload_token"))
    return Response(status_code=204)


async def copy(request: Request) -> Response:
    org, repo = org_repo(request)
    src = query_required(request, "source_path")
    dst = query_required(request, "destination_path")
    await run(store_of(request).copy_object, org, repo, query_required(request, "session_id"),
              src, dst)
    return JSONResponse({"source_path": src, "destination_path": dst}, status_code=201)


async def update_metadata(request: Request) -> Response:
    """Metadata-only update (an extension): `{"metadata": {...}}` replaces the object's user
    metadata in the session, bytes untouched; answers the object's entry with its path."""
    org, repo = org_repo(request)
    session, path = query_required(request, "session_id"), query_required(request, "path")
    body = await json_body(request)
    if "metadata" not in body:
        raise BadRequest("field 'metadata' is required", "invalid_input")
    if not isinstance(body["metadata"], dict):
        raise BadRequest("field 'metadata' must be an object of strings", "invalid_input")
    metadata = v.metadata(body["metadata"])
    o = await run(store_of(request).update_metadata, org, repo, session, path, metadata)
    return JSONResponse({"path": o.path, **entry_json(o)})


async def delete_many(request: Request) -> Response:
    org, repo = org_repo(request)
    session = query_required(request, "session_id")
    body = await json_body(request)
    paths = body.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BadRequest("paths must be an array of strings", "invalid_input")
    if len(paths) > 1000:
        raise BadRequest("at most 1000 paths per request", "invalid_input")
    n = await run(store_of(request).delete_objects, org, repo, session, paths)
    return JSONResponse({"deleted": n})


async def _manifest_line(chunks: AsyncIterator[bytes]) -> tuple[bytes, bytes]:
    """The manifest line (without its newline) and the bytes that came after it."""
    buf = bytearray()
    async for chunk in chunks:
        start = len(buf)
        buf += chunk
        nl = buf.find(b"\n", start)
        if nl > MAX_MANIFEST_BYTES or (nl < 0 and len(buf) > MAX_MANIFEST_BYTES):
            raise BadRequest(f"the manifest line is longer than {MAX_MANIFEST_BYTES} bytes",
                             "invalid_input")
        if nl >= 0:
            return bytes(buf[:nl]), bytes(buf[nl + 1:])
    raise BadRequest("the body ends before the newline that ends the manifest",
                     "incomplete_body")


def _batch_item(raw: object) -> BatchItem:
    if not isinstance(raw, dict):
        raise BadRequest("must be an object", "invalid_input")
    path = v.object_key(field_req(raw, "path"))
    size = field_int(raw, "size", minimum=0, maximum=MAX_BATCH_BYTES)
    if size is None:
        raise BadRequest("field 'size' is required", "invalid_input")
    content_type = v.content_type(field_str(raw, "content_type", default="") or "")
    return BatchItem(path, size, content_type, v.metadata(raw.get("metadata")))


def _manifest(line: bytes) -> list[BatchItem]:
    """Parse and validate the manifest completely (400s) before any byte is written."""
    if not line.strip():
        raise BadRequest("the manifest line is empty", "invalid_json")
    raw = json_object(line, what="manifest")
    objects = raw.get("objects")
    if not isinstance(objects, list):
        raise BadRequest("manifest field 'objects' must be an array", "invalid_input")
    if len(objects) > MAX_BATCH_OBJECTS:
        raise BadRequest(f"at most {MAX_BATCH_OBJECTS} objects per batch", "invalid_input")
    items: list[BatchItem] = []
    seen: set[str] = set()
    for i, o in enumerate(objects):
        try:
            item = _batch_item(o)
        except BadRequest as exc:
            raise BadRequest(f"manifest objects[{i}]: {exc.message}", exc.code) from None
        if item.path in seen:
            raise BadRequest(f"manifest objects[{i}]: path {item.path!r} appears twice",
                             "invalid_input")
        seen.add(item.path)
        items.append(item)
    if sum(it.size for it in items) > MAX_BATCH_BYTES:
        raise BadRequest(f"the objects add up to more than {MAX_BATCH_BYTES} bytes",
                         "invalid_input")
    return items


async def _spool_body(chunks: AsyncIterator[bytes], head: bytes, spools: SpoolSequence,
                      expected: int) -> None:
    """Write the rest of the body to the batch's spools in WRITE_BATCH slices; the body must
    hold exactly `expected` bytes."""
    received = len(head)
    buf = bytearray(head)
    async for chunk in chunks:
        received += len(chunk)
        if received > expected:
            break
        buf += chunk
        if len(buf) >= WRITE_BATCH:
            await run(spools.write, bytes(buf))
            buf.clear()
    if received > expected:
        raise BadRequest(f"the body holds more than the {expected} bytes the manifest's sizes "
                         "add up to", "invalid_input")
    if received < expected:
        raise BadRequest(f"the body ends after {received} of the {expected} bytes the "
                         "manifest's sizes add up to", "incomplete_body")
    if buf:
        await run(spools.write, bytes(buf))


async def upload_many(request: Request) -> Response:
    """Batch upload extension: many small objects in one request and one transaction, where
    stage + PUT + finalize cost three requests per object (docs/api.md)."""
    org, repo = org_repo(request)
    session = query_required(request, "session_id")
    store = store_of(request)
    chunks = request.stream()
    try:
        line, head = await _manifest_line(chunks)
        items = _manifest(line)
        await authorize_paths(request, [it.path for it in items])
        spools = await run(store.begin_batch, org, repo, session, [it.size for it in items])
        try:
            await _spool_body(chunks, head, spools, sum(it.size for it in items))
        except OSError:  # its spool directory went: the session was rolled back meanwhile
            await run(spools.abort)
            await run(store.require_open_session, org, repo, session)
            raise
        except Exception:
            await run(spools.abort)
            raise
        except BaseException:  # cancelled: no more awaiting
            spools.abort()
            raise
    except ClientDisconnect:
        raise BadRequest("client disconnected during upload", "incomplete_body") from None
    try:
        objs = await run(store.stage_batch, org, repo, session, spools, items)
    except OSError:  # as above: a rollback removed the spools; 404 says so
        await run(store.require_open_session, org, repo, session)
        raise
    return JSONResponse({"objects": [{"path": o.path, "etag": o.etag, "size": o.size}
                                     for o in objs]})


routes = [
    Route(REPO + "/objects", list_objects, methods=["GET"]),
    Route(REPO + "/objects/delete", delete_many, methods=["POST"]),
    Route(REPO + "/objects/upload", upload_many, methods=["POST"]),
    Route(REPO + "/object", object_, methods=["GET", "HEAD", "DELETE"]),
    Route(REPO + "/object", upload_url, methods=["PUT"]),
    Route(REPO + "/object/stage", stage, methods=["POST"]),
    Route(REPO + "/object/finalize", finalize, methods=["PUT"]),
    Route(REPO + "/object/finalize", finalize_token, methods=["POST"]),
    Route(REPO + "/object/copy", copy, methods=["POST"]),
    Route(REPO + "/object/metadata", update_metadata, methods=["PUT"]),
    Route(REPO + "/object/multipart", multipart_initiate, methods=["POST"]),
    Route(REPO + "/object/multipart", multipart_delete, methods=["DELETE"]),
    Route(REPO + "/object/multipart/part", multipart_part, methods=["GET"]),
    Route(REPO + "/object/multipart/complete", multipart_complete, methods=["POST"]),
    Route(REPO + "/object/multipart/abort", multipart_abort, methods=["POST"]),
]

# What a single-dialect server does not serve (subtlety 6): 405 with the error body for a
# route the dialect removed or never had, 404 for the batch extension (no such route at all).
REFUSED: dict[str, frozenset[tuple[str, str]]] = {
    "current": frozenset({("POST", REPO + "/object/stage"), ("PUT", REPO + "/object/finalize"),
                          ("POST", REPO + "/object/multipart/abort")}),
    "legacy": frozenset({("PUT", REPO + "/object"), ("POST", REPO + "/object/finalize"),
                         ("DELETE", REPO + "/object/multipart")}),
}
ABSENT: dict[str, frozenset[tuple[str, str]]] = {
    "current": frozenset({("POST", REPO + "/objects/upload"),
                          ("PUT", REPO + "/object/metadata")}),
}


def _methods(r: Route) -> set[str]:
    return set(r.methods or ()) - {"HEAD"}


def routes_for(wire: str) -> tuple[list[Route], list[BaseRoute]]:
    """(the routes dialect `wire` serves, the 405 routes standing in for what it refuses)."""
    refused = REFUSED.get(wire, frozenset())
    gone = refused | ABSENT.get(wire, frozenset())
    served = [r for r in routes if not any((m, r.path) in gone for m in _methods(r))]
    standing_in: list[BaseRoute] = []
    for method, path in sorted(refused):
        allow = sorted({m for r in served if r.path == path for m in _methods(r)})
        standing_in.append(Route(path, _not_allowed(method, allow), methods=[method]))
    return served, standing_in


def _not_allowed(method: str, allow: list[str]) -> Any:
    async def refuse(request: Request) -> Response:
        raise HTTPException(405, f"{method} is not served by this server's wire dialect "
                                 f"(--wire {wire_options(request).wire})",
                            headers={"Allow": ", ".join(allow)} if allow else None)
    return refuse


upload_routes = [
    Route("/_tilde/upload", upload_put, methods=["PUT"]),
    Route("/_tilde/part", part_put, methods=["PUT"]),
    Route("/_tilde/download", download, methods=["GET"]),
]
