"""Uploads in both dialects (single, batch, multipart; to this server's signed routes or
to a bucket) and download grants: a part of the engine (engine.py, core.py; subtleties 6,
7, 8, 9 and 14 of engine.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any, BinaryIO

from tilde_server import crashpoints as cp
from tilde_server.store import dialect
from tilde_server.store import validation as v
from tilde_server.store.blobs import (
    BLOB_ID,
    Spool,
    SpoolSequence,
    is_upload_key,
)
from tilde_server.store.core import (
    _UPLOAD_ID_RE,
    MAX_DOWNLOAD_TOKEN,
    MAX_PARTS,
    BatchItem,
    MultipartUpload,
    Obj,
    StagedUpload,
    StoreCore,
    _md5,
    _unquote,
    multipart_address,
    now_rfc3339,
)
from tilde_server.store.db import Conn, Row
from tilde_server.store.errors import (
    BadRequest,
    Forbidden,
    NotFound,
)
from tilde_server.store.s3blobs import MIN_PART, S3BlobStore
from tilde_server.store.signing import check_expiry_text, expiry_in, format_expiry


class UploadsMixin(StoreCore):

    def stage_upload(self, org: str, repo: str, session: str, path: str) -> StagedUpload:
        v.object_key(path)
        with self.db.read() as c:
            self.session_row(c, self.repo_row(c, org, repo), session)
        address = "u-" + secrets.token_hex(16)
        expires = expiry_in(self.upload_ttl)
        expires_at = format_expiry(expires)
        sig = self.signer.sign("single", address, expires_at, session, path)
        token = self.signer.make_token({"a": address, "s": session, "p": path, "e": expires},
                                       "single-token")
        url = None
        if isinstance(self.blobs, S3BlobStore):  # the bytes go to the bucket (s3blobs 3.)
            url = self.blobs.presign_put(address, self.upload_ttl)
        return StagedUpload(address, sig, expires_at, token, url)

    def verify_single_upload(self, signature: str, address: str, expires_at: str,
                             session: str, path: str) -> None:
        self.signer.verify(signature, "single", address, expires_at, session, path)
        check_expiry_text(expires_at)

    def begin_receive(self, session: str, address: str, part: int | None) -> Spool:
        """Open the spool file for bytes PUT to a signed URL (caller verified the signature)."""
        with self.db.read() as c:
            s = self._open_session_by_uid(c, session)
            if part is not None and not c.execute(
                    "SELECT 1 FROM uploads WHERE address = ? AND session_id = ?",
                    (address, s["id"])).fetchone():
                raise NotFound("multipart upload not found", "upload_not_found")
        return self.blobs.open_spool(session, address, part)

    def end_receive(self, session: str, address: str, path: str, part: int | None,
                    spool: Spool) -> str:
        """Record the received bytes; returns their md5 hex (the ETag). Beside other
        processes the bytes become a blob at once (referenced by their uploads row): the
        finalize or complete may come to another process, which cannot see this one's
        spools (engine 14.)."""
        cp.reached(cp.UPLOAD_RECEIVED if part is None else cp.PART_RECEIVED)
        sha, md5, size = spool.finish()
        cp.reached(cp.UPLOAD_SYNCED if part is None else cp.PART_SYNCED)
        try:
            with self.db.write() as c:
                s = self._open_session_by_uid(c, session)
                if self.shared:
                    self.adopt_blob(c, spool.path, sha)
                if part is None:
                    c.execute("INSERT INTO uploads(address, session_id, path, kind, "
                              "sha256, md5, size, created_at) VALUES (?,?,?,?,?,?,?,?)"
                              + dialect.replace_on("address", "session_id, path, kind, "
                                                   "sha256, md5, size, created_at"),
                              (address, s["id"], path, "single", sha, md5, size, now_rfc3339()))
                else:
                    c.execute("INSERT INTO upload_parts(address, part_number, sha256, "
                              "md5, size) VALUES (?,?,?,?,?)"
                              + dialect.replace_on("address, part_number", "sha256, md5, size"),
                              (address, part, sha, md5, size))
        except NotFound:
            spool.abort()
            raise
        cp.reached(cp.UPLOAD_RECORDED if part is None else cp.PART_RECORDED)
        return md5

    def finalize_upload(self, org: str, repo: str, session: str, path: str, address: str,
                        signature: str, expires_at: str, content_type: str,
                        metadata: dict[str, str]) -> Obj:
        """0.7.2 finalize: the stage response's address and signature."""
        v.object_key(path)
        v.content_type(content_type)
        self.verify_single_upload(signature, address, expires_at, session, path)
        return self._finalize(org, repo, session, path, address, content_type, metadata,
                              flow="legacy")

    def finalize_token_upload(self, org: str, repo: str, session: str, path: str,
                              upload_token: str, content_type: str, metadata: dict[str, str],
                              checksum: str | None = None, size: int | None = None) -> Obj:
        """0.7.7 finalize: the `upload_token` of PUT {R}/object; `checksum` (the upload's
        ETag, quotes optional) and `size` are checked when given (7., 8.)."""
        v.object_key(path)
        v.content_type(content_type)
        t = self.signer.read_token(upload_token, "single-token")
        if t.get("s") != session or t.get("p") != path or not isinstance(t.get("a"), str):
            raise Forbidden("upload token does not match this upload", "invalid_signature")
        return self._finalize(org, repo, session, path, t["a"], content_type, metadata,
                              checksum, size, flow="current")

    def _finalize(self, org: str, repo: str, session: str, path: str, address: str,
                  content_type: str, metadata: dict[str, str], checksum: str | None = None,
                  size: int | None = None, *, flow: str) -> Obj:
        before_adopt, adopted, committed = cp.FINALIZE[flow]
        with self.db.write() as c:
            r = self.repo_row(c, org, repo)
            s = self.session_row(c, r, session)
            up = c.execute("SELECT * FROM uploads WHERE address = ? AND session_id = ? "
                           "AND kind = 'single'", (address, s["id"])).fetchone()
            if up is not None and up["path"] != path:
                up = None
            if up is not None:  # the bytes came to this server: a spool, content keyed
                blob, md5, got = up["sha256"], up["md5"], up["size"]
            elif isinstance(self.blobs, S3BlobStore):  # or to the bucket (s3blobs 3.)
                self._reference(c, address)  # before looking: a sweep may be deciding
                found = self.blobs.head(address)
                if found is None:
                    raise BadRequest("no bytes were uploaded to this upload URL",
                                     "upload_missing")
                blob, (got, md5) = address, found
            else:
                raise BadRequest("no bytes were uploaded to this upload URL", "upload_missing")
            if checksum is not None and _unquote(checksum).lower() != md5:
                raise BadRequest(f"checksum {checksum!r} does not match the uploaded bytes "
                                 f"(MD5 {md5})", "checksum_mismatch")
            if size is not None and size != got:
                raise BadRequest(f"size_bytes {size} does not match the uploaded bytes "
                                 f"({got} bytes)", "size_mismatch")
            cp.reached(before_adopt)
            if up is not None:
                self.adopt_blob(c, self.blobs.spool_path(session, address), blob)
            o = Obj(path, blob, got, md5,
                    content_type or "application/octet-stream", metadata, now_rfc3339(), True)
            replaced = self.stage_put(c, s["id"], o)
            c.execute("DELETE FROM uploads WHERE address = ?", (address,))
            cp.reached(adopted)
        cp.reached(committed)
        if replaced:
            self.collect_blobs([replaced])
        return o

    def require_open_session(self, org: str, repo: str, session: str) -> None:
        """404 unless `session` is open (a rollback racing an upload removes its spools)."""
        with self.db.read() as c:
            self.session_row(c, self.repo_row(c, org, repo), session)

    def begin_batch(self, org: str, repo: str, session: str, sizes: list[int]) -> SpoolSequence:
        """Check the session is open (404 before any object byte is written); returns the
        spools that receive the batch's bytes in order."""
        with self.db.read() as c:
            self.session_row(c, self.repo_row(c, org, repo), session)
        return SpoolSequence(self.blobs, session, "b-" + secrets.token_hex(16), sizes)

    def stage_batch(self, org: str, repo: str, session: str, spools: SpoolSequence,
                    items: list[BatchItem]) -> list[Obj]:
        """Stage every object of a batch upload in one transaction, as finalize would one by
        one (6.). Consumes `spools` whatever happens: nothing is staged on any error."""
        adopted: list[str] = []
        try:
            for it in items:
                v.object_key(it.path)
                v.content_type(it.content_type)
            if len({it.path for it in items}) != len(items):
                raise BadRequest("a path appears twice in the batch", "invalid_input")
            if [it.size for it in items] != spools.sizes:
                raise BadRequest("sizes do not match the received spools", "invalid_input")
            received = spools.finish()
            out, replaced = [], []
            with self.db.write() as c:
                s = self.session_row(c, self.repo_row(c, org, repo), session)
                t = now_rfc3339()
                for i, (it, (sha, md5, size)) in enumerate(zip(items, received, strict=True)):
                    self.adopt_blob(c, spools.path(i), sha)
                    adopted.append(sha)
                    o = Obj(it.path, sha, size, md5, it.content_type or "application/octet-stream",
                            it.metadata, t, True)
                    old = self.stage_put(c, s["id"], o)
                    if old:
                        replaced.append(old)
                    out.append(o)
                cp.reached(cp.BATCH_ADOPTED)
        except BaseException:
            self.collect_blobs(adopted)
            raise
        finally:
            spools.abort()
        self.collect_blobs(replaced)
        return out

    def initiate_multipart(self, org: str, repo: str, session: str,
                           path: str) -> MultipartUpload:
        v.object_key(path)
        upload_id = secrets.token_hex(16)
        address = multipart_address(upload_id)  # found again by (session, path, upload_id): 7.
        expires = expiry_in(self.multipart_ttl)
        with self.db.read() as c:
            self.session_row(c, self.repo_row(c, org, repo), session)
        remote = None
        if isinstance(self.blobs, S3BlobStore):  # parts go to the bucket (s3blobs 3.)
            remote = self.blobs.create_multipart(address)
        try:
            with self.db.write() as c:
                s = self.session_row(c, self.repo_row(c, org, repo), session)
                c.execute("INSERT INTO uploads(address, session_id, path, kind, created_at, "
                          "remote_id) VALUES (?,?,?,?,?,?)",
                          (address, s["id"], path, "multipart", now_rfc3339(), remote))
        except BaseException:
            if remote is not None and isinstance(self.blobs, S3BlobStore):
                self.blobs.abort_multipart(address, remote)
            raise
        token = self.signer.make_token(
            {"u": upload_id, "a": address, "s": session, "p": path, "e": expires})
        return MultipartUpload(upload_id, address, token, expires)

    def read_multipart_token(self, token: str, upload_id: str | None = None,
                             session: str | None = None, path: str | None = None,
                             address: str | None = None) -> dict[str, Any]:
        """Verify a token and that the given context matches it (403 otherwise)."""
        t = self.signer.read_token(token)
        for key, given in (("u", upload_id), ("s", session), ("p", path), ("a", address)):
            if given is not None and t.get(key) != given:
                raise Forbidden("upload token does not match this upload", "invalid_signature")
        return t

    def _bound_upload(self, c: Conn, s: Row, path: str,
                      upload_id: str) -> str:
        """The address of the multipart upload `upload_id` of this session and path (7.)."""
        if not _UPLOAD_ID_RE.match(upload_id):
            raise NotFound("multipart upload not found", "upload_not_found")
        address = multipart_address(upload_id)
        if not c.execute("SELECT 1 FROM uploads WHERE address = ? AND session_id = ? "
                         "AND path = ? AND kind = 'multipart'",
                         (address, s["id"], path)).fetchone():
            raise NotFound("multipart upload not found", "upload_not_found")
        return address

    def part_token(self, org: str, repo: str, session: str, path: str, upload_id: str,
                   upload_token: str | None = None) -> str:
        """0.7.7 part lookup: a token for the part URL of an upload bound to (session, path,
        upload_id); `upload_token` is checked when given (0.7.8 sends it, 0.7.7 does not)."""
        v.object_key(path)
        if upload_token is not None:
            self.read_multipart_token(upload_token, upload_id, session, path)
        with self.db.read() as c:
            r = self.repo_row(c, org, repo)
            address = self._bound_upload(c, self.session_row(c, r, session), path, upload_id)
        # a purpose of its own: the bearer-less part URL must not pass for the upload_token
        return self.signer.make_token({"u": upload_id, "a": address, "s": session, "p": path,
                                       "e": expiry_in(self.multipart_ttl)}, "part")

    def bucket_part_url(self, address: str, part: int) -> str | None:
        """The presigned URL of part `part` in the bucket when the upload's parts go there
        (s3blobs 3.); None when they come to this server's signed part route."""
        if not isinstance(self.blobs, S3BlobStore):
            return None
        with self.db.read() as c:
            row = c.execute("SELECT remote_id FROM uploads WHERE address = ?",
                            (address,)).fetchone()
        if row is None:
            raise NotFound("multipart upload not found", "upload_not_found")
        if row[0] is None:
            return None
        return self.blobs.presign_part(address, row[0], part, self.multipart_ttl)

    def read_part_url_token(self, token: str) -> dict[str, Any]:
        """The token of a part URL: a 0.7.7 part grant, or (0.7.2-0.7.6 URLs carry it) the
        upload's own multipart token."""
        try:
            return self.signer.read_token(token, "part")
        except Forbidden:
            return self.read_multipart_token(token)

    def complete_multipart(self, org: str, repo: str, session: str, path: str, token: str,
                           upload_id: str, address: str | None, parts: list[tuple[int, str]],
                           total_size: int | None, content_type: str,
                           metadata: dict[str, str], checksum: str | None = None) -> Obj:
        """Both dialects: the legacy body names the address, the new one leaves it to the
        token. `total_size` and `checksum` (the object's ETag) are checked when given."""
        v.object_key(path)
        v.content_type(content_type)
        t = self.read_multipart_token(token, upload_id, session, path, address)
        address = t.get("a")
        if not isinstance(address, str):
            raise Forbidden("upload token does not match this upload", "invalid_signature")
        numbers = [n for n, _ in parts]
        if numbers != sorted(set(numbers)) or any(n < 1 or n > MAX_PARTS for n in numbers):
            raise BadRequest("parts must have ascending, unique part numbers in 1..10000",
                             "invalid_parts")
        with self.db.read() as c:
            s = self.session_row(c, self.repo_row(c, org, repo), session)
            up = c.execute("SELECT remote_id FROM uploads WHERE address = ? AND session_id = ?",
                           (address, s["id"])).fetchone()
            if up is None:
                raise NotFound("multipart upload not found", "upload_not_found")
            have = {row["part_number"]: row for row in c.execute(
                "SELECT * FROM upload_parts WHERE address = ?", (address,))}
        if up["remote_id"] is not None:
            return self._complete_in_bucket(org, repo, session, path, address, up["remote_id"],
                                            parts, total_size, content_type, metadata,
                                            checksum)
        md5s, shas, size = [], [], 0
        for n, etag in parts:
            row = have.get(n)
            if row is None:
                raise BadRequest(f"part {n} was not uploaded", "invalid_parts")
            if _unquote(etag) != row["md5"]:
                raise BadRequest(f"part {n}: ETag does not match the uploaded part",
                                 "invalid_parts")
            md5s.append(bytes.fromhex(row["md5"]))
            shas.append(row["sha256"])
            size += row["size"]
        if total_size is not None and size != total_size:
            raise BadRequest(f"the size {total_size} does not match the parts ({size} bytes)",
                             "invalid_parts")
        if not parts:
            key, etag = hashlib.sha256(b"").hexdigest(), _md5(b"").hexdigest()
        else:
            key = shas[0] if len(shas) == 1 else hashlib.sha256(
                ("parts:" + ",".join(shas)).encode()).hexdigest()
            etag = _md5(b"".join(md5s)).hexdigest() + f"-{len(parts)}"
        if checksum is not None and _unquote(checksum).lower() != etag:
            raise BadRequest(f"checksum {checksum!r} does not match the object's ETag {etag}",
                             "checksum_mismatch")
        if not parts:
            spool = self.blobs.open_spool(session, address + ".assembled")
            spool.finish()
        else:
            part_files = ([self.blobs.path(sha) for sha in shas] if self.shared  # 14.
                          else [self.blobs.spool_path(session, address, n) for n in numbers])
            self.blobs.assemble(part_files, self.blobs.spool_path(session, address + ".assembled"))
        cp.reached(cp.COMPLETE_ASSEMBLED)
        with self.db.write() as c:
            r = self.repo_row(c, org, repo)
            s = self.session_row(c, r, session)
            if not c.execute("DELETE FROM uploads WHERE address = ? RETURNING address",
                             (address,)).fetchone():
                raise NotFound("multipart upload not found", "upload_not_found")
            c.execute("DELETE FROM upload_parts WHERE address = ?", (address,))
            self.adopt_blob(c, self.blobs.spool_path(session, address + ".assembled"), key)
            o = Obj(path, key, size, etag, content_type or "application/octet-stream", metadata,
                    now_rfc3339(), True)
            replaced = self.stage_put(c, s["id"], o)
            cp.reached(cp.COMPLETE_ADOPTED)
        cp.reached(cp.COMPLETE_COMMITTED)
        self.blobs.drop_spools(session, address)
        # the parts' own blobs (14.), unless the object is one of them; then what it replaced
        self.collect_blobs([sha for sha in shas if sha != key] if self.shared else [])
        if replaced:
            self.collect_blobs([replaced])
        return o

    def _complete_in_bucket(self, org: str, repo: str, session: str, path: str, address: str,
                            remote: str, parts: list[tuple[int, str]], total_size: int | None,
                            content_type: str, metadata: dict[str, str],
                            checksum: str | None) -> Obj:
        """complete_multipart for parts the client PUT to the bucket, which assembles the
        object itself (s3blobs 3.); its ETag is the object's. Everything is checked against
        the bucket's list of parts first, so a refusal leaves the upload as it was (the
        client may complete it again); a complete whose upload the bucket already finished
        (a retry after a lost answer or a crash) stages the object it finds."""
        assert isinstance(self.blobs, S3BlobStore)
        from botocore.exceptions import ClientError

        held = self.blobs.list_parts(address, remote)
        md5s, size = [], 0
        for i, (n, etag) in enumerate(parts):
            bare = _unquote(etag).lower()
            if not re.fullmatch(r"[0-9a-f]{32}", bare) or (
                    held is not None and held.get(n, ("", 0))[0] != bare):
                raise BadRequest(f"part {n} was not uploaded, or its ETag does not match "
                                 "the uploaded part", "invalid_parts")
            md5s.append(bytes.fromhex(bare))
            if held is not None:
                part_size = held[n][1]
                if part_size < MIN_PART and i < len(parts) - 1:
                    raise BadRequest(f"part {n} has {part_size} bytes: every part but the "
                                     f"last needs {MIN_PART} at least", "invalid_parts")
                size += part_size
        if held is not None and total_size is not None and size != total_size:
            raise BadRequest(f"the size {total_size} does not match the parts ({size} bytes)",
                             "invalid_parts")
        expected = (_md5(b"".join(md5s)).hexdigest() + f"-{len(parts)}" if parts
                    else _md5(b"").hexdigest())
        if checksum is not None and _unquote(checksum).lower() != expected:
            raise BadRequest(f"checksum {checksum!r} does not match the object's ETag "
                             f"{expected}", "checksum_mismatch")
        if not parts:  # S3 wants one part at least: the empty object, content keyed
            self.blobs.abort_multipart(address, remote)
            blob, size, etag = self.blobs.write_bytes(b""), 0, expected
        else:
            if held is not None:
                try:
                    self.blobs.complete_multipart(address, remote, parts)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
                        raise BadRequest(f"the parts were refused by the bucket ({code})",
                                         "invalid_parts") from None
                    if code != "NoSuchUpload":
                        raise
            found = self.blobs.head(address)  # gone, or finished before: what is there
            if found is None or found[1] != expected:
                raise NotFound("multipart upload not found", "upload_not_found")
            blob, (size, etag) = address, found
            if total_size is not None and size != total_size:
                raise BadRequest(f"the size {total_size} does not match the parts ({size} "
                                 "bytes)", "invalid_parts")
        cp.reached(cp.COMPLETE_ASSEMBLED)
        with self.db.write() as c:
            s = self.session_row(c, self.repo_row(c, org, repo), session)
            if not c.execute("DELETE FROM uploads WHERE address = ? RETURNING address",
                             (address,)).fetchone():
                raise NotFound("multipart upload not found", "upload_not_found")
            self._reference(c, blob)
            o = Obj(path, blob, size, etag, content_type or "application/octet-stream",
                    metadata, now_rfc3339(), True)
            replaced = self.stage_put(c, s["id"], o)
            cp.reached(cp.COMPLETE_ADOPTED)
        cp.reached(cp.COMPLETE_COMMITTED)
        if replaced:
            self.collect_blobs([replaced])
        return o

    def abort_multipart(self, org: str, repo: str, session: str, path: str, token: str,
                        upload_id: str, address: str) -> None:
        self.read_multipart_token(token, upload_id, session, path, address)
        with self.db.write() as c:
            s = self.session_row(c, self.repo_row(c, org, repo), session)
            c.execute("DELETE FROM upload_parts WHERE address = ?", (address,))
            row = c.execute("DELETE FROM uploads WHERE address = ? AND session_id = ? "
                            "RETURNING remote_id", (address, s["id"])).fetchone()
        self._abort_in_bucket(address, row)
        self.blobs.drop_spools(session, address)

    def abort_multipart_by_id(self, org: str, repo: str, session: str, path: str,
                              upload_id: str, upload_token: str | None = None) -> None:
        """0.7.7 abort `DELETE {R}/object/multipart`: found by its binding (7.); the token,
        which 0.7.7 does not send, is checked when given. 404 when there is no such upload."""
        v.object_key(path)
        if upload_token is not None:
            self.read_multipart_token(upload_token, upload_id, session, path)
        with self.db.write() as c:
            r = self.repo_row(c, org, repo)
            address = self._bound_upload(c, self.session_row(c, r, session), path, upload_id)
            c.execute("DELETE FROM upload_parts WHERE address = ?", (address,))
            row = c.execute("DELETE FROM uploads WHERE address = ? RETURNING remote_id",
                            (address,)).fetchone()
        self._abort_in_bucket(address, row)
        self.blobs.drop_spools(session, address)

    def _abort_in_bucket(self, address: str, row: Row | None) -> None:
        """After an upload row with its `remote_id` was deleted: abort the bucket's upload."""
        if row is not None and row[0] is not None and isinstance(self.blobs, S3BlobStore):
            self.blobs.abort_multipart(address, row[0])

    # ======================================================================== download grants
    def sign_download(self, o: Obj, ttl: int) -> str | None:
        """A signed, expiring grant for the bytes of version `o` (9.); None when too long."""
        token = self.signer.make_token({
            "b": o.blob, "z": o.size, "t": o.etag, "c": o.content_type, "m": o.metadata,
            "l": o.last_modified, "r": not o.staged, "p": o.path,
            "e": expiry_in(ttl)}, "download")
        return token if len(token) <= MAX_DOWNLOAD_TOKEN else None

    def bucket_download_url(self, o: Obj, ttl: int) -> str | None:
        """A presigned GET of `o`'s blob in the bucket, when the bucket answers with `o`'s
        own ETag (s3blobs 3., 4.): an upload key's ETag is the bucket's; a content key's is
        its MD5 as long as it was put whole. None otherwise (the caller streams or signs a
        grant of its own). The bucket cannot send X-Tilde-Reproducible (docs/deploy.md)."""
        if not isinstance(self.blobs, S3BlobStore):
            return None
        if not (is_upload_key(o.blob) or re.fullmatch(r"[0-9a-f]{32}", o.etag)):
            return None
        return self.blobs.presign_get(o.blob, ttl, o.content_type)

    def open_download(self, token: str) -> tuple[Obj, BinaryIO]:
        """The version a grant names and its open blob file; 403 when tampered or expired,
        404 when the blob is gone (a staged upload rolled back since)."""
        t = self.signer.read_token(token, "download")
        try:
            o = Obj(str(t["p"]), str(t["b"]), int(t["z"]), str(t["t"]), str(t["c"]),
                    dict(t["m"]), str(t["l"]), not t["r"])
        except (KeyError, TypeError, ValueError):
            raise Forbidden("malformed token", "invalid_signature") from None
        if not BLOB_ID.match(o.blob):
            raise Forbidden("malformed token", "invalid_signature")
        try:
            return o, self.blobs.open(o.blob)
        except FileNotFoundError:
            raise NotFound(f"object {o.path!r} not found", "object_not_found") from None
