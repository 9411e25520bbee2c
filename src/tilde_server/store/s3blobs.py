"""Blobs in an S3 bucket (`--blobs s3://BUCKET[/PREFIX]`), shared by every process of a
deployment. Spools stay local (BlobStore's); blob files become objects. All methods block:
call them from worker threads.

Subtleties:
1. One boto3 client per process (boto3 clients are thread-safe; a session is not, so the
   client is made once at start). Credentials come from the standard AWS chain (environment,
   ~/.aws, instance roles), or from the named profile `--blobs-s3-profile` (which then
   wins over the environment: the environment may hold the connectors' ambient
   credentials); `--blobs-s3-endpoint` names a non-AWS server (path-style addressing, as
   S3-compatible servers on one host need) and `--blobs-s3-region` the signing region.
2. Object key of a blob: PREFIX/<shard>/<blob id> (blobs.py 7.), so a sweep lists one shard
   at a time under the same lock the references take.
3. Two kinds of blob ids (blobs.py 7.). Bytes that pass through the server (batch uploads,
   imports, uploads to the server's own signed routes) are content keyed as on disk. Bytes
   a client PUTs to a presigned URL are not: their hash is not known before they arrive, and
   reading them back to hash them would cost a second transfer. They keep the upload's own
   key (`u-`/`m-` + 32 random hex digits, lakeFS's choice too) and the bucket's ETag (MD5,
   or the multipart MD5-of-MD5s) is recorded as the object's. No deduplication for those.
4. Single puts only up to SINGLE_PUT_MAX: a content-keyed blob's ETag is then its MD5, which
   is what a download redirected to the bucket must answer (engine `download_url`).
5. A blob read is one streaming GET from the read position on (`S3Reader`); a seek starts
   another. A blob that vanished surfaces at the first read, not at open (no HEAD per
   download): only staged content rolled back mid-read can vanish (collection respects
   references), and then the response breaks off, as a rolled-back staged read may.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from tilde_server.store.blobs import BlobStore, mkdirs, sha256_of, shard_of
from tilde_server.store.errors import DataDirError

#: 4.: S3's limit for one PUT is 5 GiB
SINGLE_PUT_MAX = 5 * 1024**3
#: S3's smallest part but the last
MIN_PART = 5 * 1024**2
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Options:
    """`--blobs-s3-endpoint`, `--blobs-s3-region`, `--blobs-s3-profile` (None: boto3's
    defaults)."""

    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None


@dataclass(frozen=True)
class S3Url:
    """A parsed `s3://BUCKET[/PREFIX]`; `prefix` is '' or ends with '/'."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Url:
        rest = url[len("s3://"):]
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.match(bucket):
            raise DataDirError(f"--blobs {url}: {bucket!r} is not an S3 bucket name")
        prefix = prefix.strip("/")
        return cls(bucket, prefix + "/" if prefix else "")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def make_client(opts: S3Options) -> Any:
    import boto3
    from botocore.config import Config

    cfg = Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"},
                 max_pool_connections=64, connect_timeout=10, read_timeout=60,
                 s3={"addressing_style": "path" if opts.endpoint else "auto"})
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.session.Session(profile_name=opts.profile)
    except BotoCoreError as exc:  # ProfileNotFound
        raise DataDirError(f"--blobs-s3-profile {opts.profile}: {exc}") from None
    return session.client("s3", endpoint_url=opts.endpoint, region_name=opts.region,
                          config=cfg)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _missing(exc: Exception) -> bool:
    return _code(exc) in ("404", "NoSuchKey", "NotFound")


class S3BlobStore(BlobStore):
    """Local spools (BlobStore's) and blobs as objects of one bucket (see the module)."""

    direct = True

    def __init__(self, root: Path, url: S3Url, opts: S3Options,
                 client: Any | None = None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self.tmp = root / "tmp"
        mkdirs(self.tmp)
        self.url = url
        self.bucket = url.bucket
        self.s3 = client or make_client(opts)
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise DataDirError(f"--blobs {url}: the bucket cannot be reached: {exc}") from None

    def describe(self) -> str:
        return str(self.url)

    def key(self, blob: str) -> str:
        return f"{self.url.prefix}{shard_of(blob)}/{blob}"

    # -- BlobStore's blob operations -----------------------------------------------------------
    def path(self, key: str) -> Path:
        raise NotImplementedError("blobs in a bucket have no path")

    def head(self, blob: str) -> tuple[int, str] | None:
        """(size, bare ETag) of a stored blob, None when there is none."""
        from botocore.exceptions import ClientError

        try:
            r = self.s3.head_object(Bucket=self.bucket, Key=self.key(blob))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(r["ContentLength"]), str(r["ETag"]).strip('"')

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def adopt(self, spool_file: Path, key: str) -> None:
        """Upload a finished spool as content-keyed blob `key` unless it is there already
        (the same bytes: content addressing), then drop the spool. FileNotFoundError when
        neither exists (as BlobStore.adopt)."""
        if not self.exists(key):
            self.put_file(spool_file, key)
        spool_file.unlink(missing_ok=True)

    def put_file(self, src: Path, key: str) -> None:
        from boto3.s3.transfer import TransferConfig

        cfg = TransferConfig(multipart_threshold=SINGLE_PUT_MAX, multipart_chunksize=256 << 20)
        with open(src, "rb") as f:  # FileNotFoundError before anything is sent
            self.s3.upload_fileobj(f, self.bucket, self.key(key), Config=cfg)

    def open(self, key: str) -> BinaryIO:
        return S3Reader(self.s3, self.bucket, self.key(key))  # type: ignore[return-value]

    def digest(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.key(key))["Body"]
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        with contextlib.closing(body):
            return sha256_of(body)

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.key(key))

    def shards(self) -> Iterator[tuple[str, list[str]]]:
        for shard, listed in self.listing():
            yield shard, [blob for blob, _ in listed]

    def listing(self) -> Iterator[tuple[str, list[tuple[str, float]]]]:
        """(shard, [(blob id, last modified epoch)]) for every shard that holds any."""
        pages = self.s3.get_paginator("list_objects_v2")
        for i in range(256):
            shard = f"{i:02x}"
            base = f"{self.url.prefix}{shard}/"
            found: list[tuple[str, float]] = []
            for page in pages.paginate(Bucket=self.bucket, Prefix=base):
                for o in page.get("Contents", []):
                    blob = str(o["Key"])[len(base):]
                    if "/" not in blob:
                        found.append((blob, _epoch(o["LastModified"])))
            if found:
                yield shard, found

    # -- what clients reach directly (presigned URLs) -----------------------------------------
    def presign_put(self, blob: str, ttl: int) -> str:
        return str(self.s3.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": self.key(blob)},
            ExpiresIn=ttl))

    def presign_get(self, blob: str, ttl: int, content_type: str) -> str:
        return str(self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key(blob),
                                  "ResponseContentType": content_type},
            ExpiresIn=ttl))

    def create_multipart(self, blob: str) -> str:
        """Start a multipart upload of blob `blob`; returns the bucket's upload id."""
        r = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key(blob))
        return str(r["UploadId"])

    def presign_part(self, blob: str, upload_id: str, part: int, ttl: int) -> str:
        return str(self.s3.generate_presigned_url(
            "upload_part", Params={"Bucket": self.bucket, "Key": self.key(blob),
                                   "UploadId": upload_id, "PartNumber": part},
            ExpiresIn=ttl))

    def list_parts(self, blob: str, upload_id: str) -> dict[int, tuple[str, int]] | None:
        """{part number: (bare ETag, size)} the bucket holds for an unfinished upload; None
        when the upload is gone (completed or aborted)."""
        from botocore.exceptions import ClientError

        out: dict[int, tuple[str, int]] = {}
        try:
            for page in self.s3.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=self.key(blob), UploadId=upload_id):
                for p in page.get("Parts", []):
                    out[int(p["PartNumber"])] = (str(p["ETag"]).strip('"'), int(p["Size"]))
        except ClientError as exc:
            if _code(exc) in ("NoSuchUpload", "404"):
                return None
            raise
        return out

    def complete_multipart(self, blob: str, upload_id: str,
                           parts: list[tuple[int, str]]) -> None:
        """The bucket assembles the parts itself (no copy through this process). Raises
        botocore's ClientError: InvalidPart / InvalidPartOrder / EntityTooSmall for parts
        the client got wrong, NoSuchUpload when it is gone (completed or aborted)."""
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key(blob), UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": f'"{e.strip().strip(chr(34))}"'}
                                       for n, e in parts]})

    def abort_multipart(self, blob: str, upload_id: str) -> None:
        """Best effort: the sweep aborts what this leaves (an upload already gone is fine)."""
        from botocore.exceptions import BotoCoreError, ClientError

        with contextlib.suppress(BotoCoreError, ClientError):
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key(blob),
                                           UploadId=upload_id)

    def multipart_uploads(self) -> Iterator[tuple[str, str, float]]:
        """(blob id, upload id, initiated epoch) of every unfinished multipart upload."""
        pages = self.s3.get_paginator("list_multipart_uploads")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.url.prefix):
            for u in page.get("Uploads", []):
                blob = str(u["Key"]).rsplit("/", 1)[-1]
                yield blob, str(u["UploadId"]), _epoch(u["Initiated"])


def _epoch(when: datetime) -> float:
    return when.timestamp()


class S3Reader(io.RawIOBase):
    """A read-only, seekable file over one S3 object (5.): sequential reads are one GET."""

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        self._s3, self._bucket, self._key = s3, bucket, key
        self._pos = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET:
            raise io.UnsupportedOperation("only absolute seeks")
        if offset != self._pos:
            self._drop()
            self._pos = offset
        return self._pos

    def read(self, size: int = -1) -> bytes:
        from botocore.exceptions import ClientError

        if self._body is None:
            try:
                r = self._s3.get_object(Bucket=self._bucket, Key=self._key,
                                        Range=f"bytes={self._pos}-")
            except ClientError as exc:
                if _missing(exc):
                    raise FileNotFoundError(self._key) from None
                if _code(exc) == "InvalidRange":  # at or past the end
                    return b""
                raise
            self._body = r["Body"]
        data = bytes(self._body.read(size if size >= 0 else None))
        self._pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def _drop(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop()
        super().close()
