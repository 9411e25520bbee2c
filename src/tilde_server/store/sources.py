"""Where imports read from: the connector types `local` and `s3` (spec 2.15, docs/connectors.md).

Every method blocks (files, network): call from worker threads only.

Subtleties:
1. A connector's config is checked and normalized once, at create (`normalize_config`), so
   an import only has to open what was accepted; unknown keys and wrong types are 400.
2. `local` reads a directory of the server host, and only inside a directory the operator
   allowed with `tilde-server run --connector-root DIR` (or TILDE_SERVER_CONNECTOR_ROOTS).
   With no root configured every local connector is refused. Paths are compared after
   resolving symlinks, at create *and* again for every file at import, so a symlink placed
   later cannot lead outside a root.
3. `s3` speaks to any S3-compatible endpoint through botocore. Credentials come from the
   config (`access_key_id` + `secret_access_key`); without them, only when the operator
   allowed it (`--s3-ambient-credentials`), the server's own AWS credential chain (its
   environment, ~/.aws) is used. A custom endpoint is addressed path-style (MinIO, moto,
   rclone and most self-hosted stores expect that).
4. An object is read with the ETag the listing reported (`If-Match` for S3, size+mtime for
   files): if the source changed between listing and reading, the import fails with a
   precondition error instead of mixing two versions of the source.
5. No server-side request forgery: an `endpoint` in a connector's config must lead to a
   global address. At create its name is resolved and every address checked (400
   `endpoint_not_allowed` for loopback, link-local with 169.254.169.254 and fd00:ec2::254,
   private, shared, reserved and unspecified addresses, or a name that does not resolve);
   at import every connection's peer address is checked again (a name that resolves
   differently since: the import fails). Allowed anyway: the operator's own `--s3-endpoint`
   (same scheme, host and port), and networks the operator lists in
   TILDE_SERVER_CONNECTOR_ALLOW_NETWORKS (comma-separated CIDRs, e.g. `10.0.0.0/8`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlparse

from tilde_server.store.errors import BadRequest, PreconditionFailed, StoreError

CHUNK = 1024 * 1024
CONNECTOR_TYPES = ("local", "s3")
KNOWN_UNSUPPORTED = ("gcs", "git", "google_drive")
_S3_KEYS = {"bucket", "prefix", "region", "endpoint", "endpoint_url", "access_key_id",
            "secret_access_key", "session_token"}
_LOCAL_KEYS = {"path"}


@dataclass(frozen=True)
class SourceObject:
    key: str          # key in the source: relative path (local) or object key (s3)
    size: int
    etag: str
    version_id: str = ""


@dataclass(frozen=True)
class Opened:
    """An object being read: its bytes in chunks, plus what the read learnt about it."""

    chunks: Iterator[bytes]
    version_id: str = ""
    content_type: str = ""


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_NETWORKS_ENV = "TILDE_SERVER_CONNECTOR_ALLOW_NETWORKS"


def networks_from_env() -> tuple[IpNetwork, ...]:
    """The operator's TILDE_SERVER_CONNECTOR_ALLOW_NETWORKS (subtlety 5)."""
    raw = os.environ.get(ALLOW_NETWORKS_ENV, "")
    try:
        return tuple(ipaddress.ip_network(n.strip(), strict=False)
                     for n in raw.split(",") if n.strip())
    except ValueError as exc:
        raise ValueError(f"{ALLOW_NETWORKS_ENV}: {exc}") from None


@dataclass
class SourceSettings:
    """Operator settings (tilde-server run options) that connectors are checked against."""

    connector_roots: tuple[Path, ...] = ()
    s3_endpoint: str | None = None
    s3_ambient_credentials: bool = False
    #: parsed from the environment by `tilde-server run` (a bad value: one line, exit 2)
    allow_networks: tuple[IpNetwork, ...] = ()


def _origin(url: str) -> tuple[str, str, int | None]:
    u = urlparse(url)
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return u.scheme, (u.hostname or "").lower(), port


def address_refused(ip: IpAddress, settings: SourceSettings) -> str | None:
    """Why a connector may not connect to `ip` (None: it may)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in n for n in settings.allow_networks):
        return None
    if ip.is_global and not ip.is_multicast:
        return None
    kind = ("loopback" if ip.is_loopback else "link-local (cloud metadata)" if
            ip.is_link_local else "private" if ip.is_private else "not a global")
    return f"{ip} is a {kind} address"


def check_endpoint(url: str, settings: SourceSettings) -> None:
    """400 unless every address `url`'s host resolves to may be connected to."""
    if settings.s3_endpoint and _origin(url) == _origin(settings.s3_endpoint):
        return  # the operator's own endpoint
    _, host, port = _origin(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise BadRequest(f"config endpoint host {host!r} does not resolve",
                         "endpoint_not_allowed") from None
    for info in infos:
        why = address_refused(ipaddress.ip_address(str(info[4][0]).split("%")[0]), settings)
        if why is not None:
            raise BadRequest(f"config endpoint {url} is not allowed: {why} (an operator can "
                             f"allow networks with {ALLOW_NETWORKS_ENV})",
                             "endpoint_not_allowed")


class Source(Protocol):
    def list(self, prefix: str) -> Iterator[SourceObject]: ...
    def read(self, obj: SourceObject) -> Opened: ...
    def uri_of(self, key: str) -> str: ...


def _str(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"config field {key!r} must be a string", "invalid_config")
    return value


# ============================================================================ normalization
def normalize_config(kind: str, source_uri: str, config: dict[str, Any],
                     settings: SourceSettings) -> tuple[str, dict[str, Any]]:
    """Check a connector's type, source URI and config; returns (source_uri, config)."""
    if kind in KNOWN_UNSUPPORTED:
        raise BadRequest(f"connector type {kind!r} is not supported by this server "
                         f"(supported: {', '.join(CONNECTOR_TYPES)})", "unsupported_type")
    if kind not in CONNECTOR_TYPES:
        raise BadRequest(f"unknown connector type {kind!r} (supported: "
                         f"{', '.join(CONNECTOR_TYPES)})", "invalid_type")
    allowed = _S3_KEYS if kind == "s3" else _LOCAL_KEYS
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise BadRequest(f"unknown {kind} config field(s): {', '.join(unknown)}",
                         "invalid_config")
    if kind == "local":
        return _normalize_local(source_uri, config, settings)
    return _normalize_s3(source_uri, config, settings)


def _allowed_root(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def _normalize_local(source_uri: str, config: dict[str, Any],
                     settings: SourceSettings) -> tuple[str, dict[str, Any]]:
    raw = _str(config, "path")
    if source_uri:
        u = urlparse(source_uri)
        if u.scheme != "file" or u.netloc not in ("", "localhost"):
            raise BadRequest("a local connector's source_uri must be file:///absolute/dir",
                             "invalid_config")
        from_uri = unquote(u.path)
        if raw is not None and os.path.normpath(raw) != os.path.normpath(from_uri):
            raise BadRequest("config path and source_uri name different directories",
                             "invalid_config")
        raw = from_uri
    if not raw:
        raise BadRequest("a local connector needs config {\"path\": \"/dir\"} or a "
                         "file:///dir source_uri", "invalid_config")
    if not os.path.isabs(raw):
        raise BadRequest("local connector path must be absolute", "invalid_config")
    if not settings.connector_roots:
        raise BadRequest("local connectors are disabled on this server (start it with "
                         "--connector-root DIR to allow directories under DIR)",
                         "local_connectors_disabled")
    path = Path(raw).resolve()
    if not _allowed_root(path, settings.connector_roots):
        raise BadRequest(f"{raw} is not inside a directory allowed by --connector-root",
                         "path_not_allowed")
    if not path.is_dir():
        raise BadRequest(f"{raw} is not a directory on the server", "invalid_config")
    uri = "file://" + quote(str(path).rstrip("/") + "/")
    return uri, {"path": str(path)}


def _normalize_s3(source_uri: str, config: dict[str, Any],
                  settings: SourceSettings) -> tuple[str, dict[str, Any]]:
    out: dict[str, Any] = {}
    for k in _S3_KEYS:
        value = _str(config, k)
        if value is not None and value != "":
            out[k] = value
    if "endpoint_url" in out:
        endpoint = out.pop("endpoint_url")
        if out.get("endpoint", endpoint) != endpoint:
            raise BadRequest("config endpoint and endpoint_url differ", "invalid_config")
        out["endpoint"] = endpoint
    bucket, prefix = out.get("bucket"), out.get("prefix", "")
    if source_uri:
        u = urlparse(source_uri)
        if u.scheme != "s3" or not u.netloc:
            raise BadRequest("an s3 connector's source_uri must look like s3://bucket/prefix/",
                             "invalid_config")
        if bucket is not None and bucket != u.netloc:
            raise BadRequest("config bucket and source_uri name different buckets",
                             "invalid_config")
        uri_prefix = u.path.lstrip("/")
        if prefix and uri_prefix and prefix != uri_prefix:
            raise BadRequest("config prefix and source_uri name different prefixes",
                             "invalid_config")
        bucket, prefix = u.netloc, prefix or uri_prefix
    if not bucket:
        raise BadRequest("an s3 connector needs a bucket (config \"bucket\" or source_uri "
                         "s3://bucket/)", "invalid_config")
    out["bucket"], out["prefix"] = bucket, prefix
    if "endpoint" in out:
        e = urlparse(out["endpoint"])
        if e.scheme not in ("http", "https") or not e.hostname:
            raise BadRequest("config endpoint must be an http(s) URL", "invalid_config")
        try:
            e.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            raise BadRequest("config endpoint has an invalid port", "invalid_config") from None
        check_endpoint(out["endpoint"], settings)
    has_id, has_key = "access_key_id" in out, "secret_access_key" in out
    if has_id != has_key:
        raise BadRequest("config needs both access_key_id and secret_access_key",
                         "invalid_config")
    if not has_id and not settings.s3_ambient_credentials:
        raise BadRequest("config needs access_key_id and secret_access_key (this server does "
                         "not lend its own credentials: --s3-ambient-credentials is off)",
                         "invalid_config")
    out.setdefault("region", "us-east-1")
    return f"s3://{bucket}/{prefix}", out


# ============================================================================ sources
def open_source(kind: str, config: dict[str, Any], settings: SourceSettings) -> Source:
    if kind == "local":
        return LocalSource(Path(config["path"]), settings.connector_roots)
    if kind == "s3":
        return S3Source(config, settings)
    raise BadRequest(f"unknown connector type {kind!r}", "invalid_type")


class LocalSource:
    def __init__(self, root: Path, allowed: tuple[Path, ...]) -> None:
        self.root = root
        self.allowed = allowed

    def _check_root(self) -> None:
        if not self.allowed or not _allowed_root(self.root.resolve(), self.allowed):
            raise PreconditionFailed(f"{self.root} is no longer inside a directory allowed by "
                                     "--connector-root", "path_not_allowed")
        if not self.root.is_dir():
            raise PreconditionFailed(f"{self.root} is not a directory any more",
                                     "source_missing")

    def _file(self, key: str) -> Path:
        p = self.root / key
        if not _allowed_root(p.resolve(), self.allowed):
            raise PreconditionFailed(f"{key} leads outside the allowed directories",
                                     "path_not_allowed")
        return p

    @staticmethod
    def _etag(st: os.stat_result) -> str:
        return f"{st.st_size:x}-{st.st_mtime_ns:x}"

    def list(self, prefix: str) -> Iterator[SourceObject]:
        """Regular files under the root whose relative path starts with `prefix`, sorted."""
        self._check_root()
        start = self.root
        dir_part = prefix[: prefix.rfind("/") + 1]
        if dir_part:
            start = self.root / dir_part
            if not start.is_dir():
                return
        yield from self._walk(start, prefix)

    def _walk(self, d: Path, prefix: str) -> Iterator[SourceObject]:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            raise StoreError(f"cannot read {d}: {exc.strerror}", "source_error") from None
        for e in entries:
            rel = os.path.relpath(e.path, self.root).replace(os.sep, "/")
            if e.is_dir(follow_symlinks=False):
                if rel.startswith(prefix) or prefix.startswith(rel + "/"):
                    yield from self._walk(Path(e.path), prefix)
                continue
            if not rel.startswith(prefix):
                continue
            try:
                st = os.stat(e.path)  # follows a symlink; _file() checks where it leads
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            yield SourceObject(rel, st.st_size, self._etag(st))

    def read(self, obj: SourceObject) -> Opened:
        path = self._file(obj.key)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except OSError as exc:
            raise PreconditionFailed(f"{obj.key} changed since the import listed it "
                                     f"({exc.strerror})", "source_changed") from None
        if self._etag(os.fstat(f.fileno())) != obj.etag:
            f.close()
            raise PreconditionFailed(f"{obj.key} changed since the import listed it",
                                     "source_changed")

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(CHUNK):
                    yield chunk
                if self._etag(os.fstat(f.fileno())) != obj.etag:
                    raise PreconditionFailed(f"{obj.key} changed while it was imported",
                                             "source_changed")
        return Opened(chunks())

    def uri_of(self, key: str) -> str:
        return "file://" + quote(str(self.root / key))


class S3Source:
    def __init__(self, config: dict[str, Any], settings: SourceSettings) -> None:
        import boto3
        from botocore.config import Config

        self.bucket: str = config["bucket"]
        endpoint = config.get("endpoint") or settings.s3_endpoint
        session = boto3.session.Session(
            aws_access_key_id=config.get("access_key_id"),
            aws_secret_access_key=config.get("secret_access_key"),
            aws_session_token=config.get("session_token"),
            region_name=config.get("region", "us-east-1"))
        cfg = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 5},
                     s3={"addressing_style": "path"} if endpoint else {})
        self.client = session.client("s3", endpoint_url=endpoint, config=cfg)
        if config.get("endpoint") and not (
                settings.s3_endpoint and _origin(config["endpoint"]) ==
                _origin(settings.s3_endpoint)):
            _guard_connections(self.client, settings)

    def _error(self, exc: Exception, what: str) -> StoreError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "NoSuchKey") or status == 412:
                return PreconditionFailed(f"{what} changed since the import listed it",
                                          "source_changed")
            return StoreError(f"{what}: S3 error {code or status}: {err.get('Message', '')}",
                              "source_error")
        return StoreError(f"{what}: {exc}", "source_error")

    def list(self, prefix: str) -> Iterator[SourceObject]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for o in page.get("Contents", []):
                    yield SourceObject(o["Key"], int(o["Size"]), str(o["ETag"]).strip('"'))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"listing s3://{self.bucket}/{prefix}") from None

    def read(self, obj: SourceObject) -> Opened:
        from botocore.exceptions import BotoCoreError, ClientError

        what = f"s3://{self.bucket}/{obj.key}"
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=obj.key, IfMatch=obj.etag)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, what) from None
        body = resp["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(CHUNK)
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, what) from None
            finally:
                body.close()
        return Opened(chunks(), str(resp.get("VersionId") or ""),
                      str(resp.get("ContentType") or ""))

    def uri_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


class EndpointRefused(StoreError):
    """A connection of a connector went to an address it may not reach (subtlety 5)."""


def _guard_connections(client: Any, settings: SourceSettings) -> None:
    """Check the peer of every connection `client` opens, after connecting and before any
    byte is sent: what counts is the address actually connected to, not what a name
    resolved to when the connector was created."""
    from botocore.awsrequest import (
        AWSHTTPConnection,
        AWSHTTPConnectionPool,
        AWSHTTPSConnection,
        AWSHTTPSConnectionPool,
    )

    def checked(sock: socket.socket) -> socket.socket:
        peer = sock.getpeername()[0]
        why = address_refused(ipaddress.ip_address(peer.split("%")[0]), settings)
        if why is not None:
            sock.close()
            raise EndpointRefused(f"connector endpoint refused at connect: {why}",
                                  "endpoint_not_allowed")
        return sock

    class Http(AWSHTTPConnection):
        def _new_conn(self) -> socket.socket:
            return checked(super()._new_conn())

    class Https(AWSHTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return checked(super()._new_conn())

    class HttpPool(AWSHTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(AWSHTTPSConnectionPool):
        ConnectionCls = Https

    http_session = client._endpoint.http_session
    pools = {"http": HttpPool, "https": HttpsPool}
    http_session._pool_classes_by_scheme = pools
    http_session._manager.pool_classes_by_scheme = pools
