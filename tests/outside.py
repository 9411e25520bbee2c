"""The "outside" for egress tests: servers on 127.0.0.1 that stand in for the internet.

Sandboxes reach the network only through tilde-server's egress proxy; tests check what the
proxy lets through against these servers, so no test depends on anything off this machine::

    ca = TestCA()                                   # a CA of its own, cert_pem to trust it
    with http_server("plain") as web, tls_server(ca, ["web.test"]) as tls:
        ... web.url, tls.port; GET /hello -> 200 "hello from plain" ...
        assert tls.connections == []               # "the proxy never connected here"
    with package_index(ca, Path("build/wheelhouse")) as index:
        ... PIP_INDEX_URL=https://pypi.test:<index.port>/simple/ ...

Every server runs in threads of its own on an ephemeral port, and `stop()` (or leaving the
`with`) closes its socket and every connection still open. The handlers answer:

- ``GET /hello`` -> 200 ``hello from <name>``;
- ``POST /echo`` (or any path under it) -> 200 ``received <n> bytes``;
- ``GET /status/<n>`` -> status ``n`` with body ``status <n>``;
- anything else -> 404 (the package index answers its own paths first, see below).

Each server records, in order, every accepted TCP connection (`connections`: the peer
address, before any TLS handshake, so a refused or failed handshake still counts) and every
request it parsed (`requests`: method, path, headers, body length).

`package_index` is a PEP 503 "simple" index over TLS for a directory of wheels:
``/simple/`` lists the projects, ``/simple/<normalized-name>/`` links each file as
``../../files/<file>#sha256=<hex>`` (relative, so the host pip used stays the host it asked),
and ``/files/<file>`` serves it.

Subtleties:
1. HTTP/1.1 with keep-alive (pip and proxies reuse connections): every answer carries a
   Content-Length, and a request body is always read in full before answering.
2. The TLS handshake happens in the connection's own thread, not in accept(): a client that
   connects and never speaks (or speaks plain HTTP) cannot stall the server for others. A
   failed handshake is recorded in `tls_errors`.
3. Only wheels are indexed: a wheel's file name gives its project (PEP 427, "-" escaped as
   "_"), which PEP 503 normalizes (runs of "-", "_", "." become "-", lower case).
"""

from __future__ import annotations

import datetime
import hashlib
import html
import http.server
import ipaddress
import re
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class TestCA:
    """A certificate authority for one test run: `cert_pem` is what a client trusts, `issue`
    signs server certificates for DNS names (and IP addresses given as text)."""

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, common_name: str = "tilde test CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()),
                           critical=False)
            .sign(self._key, hashes.SHA256()))
        self.cert_pem: bytes = self._cert.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        """The CA certificate as a PEM file (for PIP_CERT, curl --cacert, ...)."""
        path.write_bytes(self.cert_pem)
        return path

    def issue(self, names: Sequence[str]) -> tuple[bytes, bytes]:
        """(certificate PEM, private key PEM) of a server certificate for `names`."""
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for n in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0])).issuer_name(self._cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def server_context(self, names: Sequence[str]) -> ssl.SSLContext:
        """A server-side context presenting a certificate for `names`."""
        cert, key = self.issue(names)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as d:  # load_cert_chain reads files only
            (Path(d) / "cert.pem").write_bytes(cert + self.cert_pem)
            (Path(d) / "key.pem").write_bytes(key)
            ctx.load_cert_chain(Path(d) / "cert.pem", Path(d) / "key.pem")
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts this CA only."""
        ctx = ssl.create_default_context(cadata=self.cert_pem.decode())
        return ctx


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body_length: int


# A route answers (status, content type, body) or None to let the next one try.
Route = Callable[["_Handler", str], "tuple[int, str, bytes | Path] | None"]


def _basic_routes(handler: _Handler, method: str) -> tuple[int, str, bytes | Path] | None:
    path = handler.path.split("?", 1)[0]
    name = handler.server.outside.name
    if method in ("GET", "HEAD") and path == "/hello":
        return 200, "text/plain", f"hello from {name}".encode()
    if method == "POST" and (path == "/echo" or path.startswith("/echo/")):
        return 200, "text/plain", f"received {handler.body_length} bytes".encode()
    m = re.fullmatch(r"/status/(\d{3})", path)
    if m and method in ("GET", "HEAD", "POST"):
        return int(m[1]), "text/plain", f"status {m[1]}".encode()
    return None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    body_length = 0

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self, method: str) -> None:
        self.body_length = self._read_body()
        outside = self.server.outside
        outside.requests.append(Request(method, self.path,
                                        {k.lower(): v for k, v in self.headers.items()},
                                        self.body_length))
        answer = None
        for route in outside.routes:
            answer = route(self, method)
            if answer is not None:
                break
        status, ctype, body = answer or (404, "text/plain", b"not found")
        if status < 200 or status in (204, 304):
            body = b""  # no body allowed
        size = body.stat().st_size if isinstance(body, Path) else len(body)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if method == "HEAD":
            return
        if isinstance(body, Path):
            with open(body, "rb") as f:
                while chunk := f.read(1 << 20):
                    self.wfile.write(chunk)
        else:
            self.wfile.write(body)

    def _read_body(self) -> int:
        """Read the request body in full (subtlety 1); returns its length."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return total
                total += len(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return len(self.rfile.read(length)) if length else 0

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, outside: OutsideServer) -> None:
        self.outside = outside
        super().__init__((HOST, 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.outside.connections.append(tuple(client_address[:2]))
        with self.outside.lock:
            self.outside.open_sockets.add(request)
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        ctx = self.outside.tls
        if ctx is not None:  # subtlety 2: the handshake in this connection's thread
            try:
                request.settimeout(30)
                tls = ctx.wrap_socket(request, server_side=True)
                tls.settimeout(None)
            except (OSError, ssl.SSLError) as exc:
                self.outside.tls_errors.append(f"{client_address[0]}: {exc}")
                return
            with self.outside.lock:
                self.outside.open_sockets.add(tls)
            try:
                super().finish_request(tls, client_address)
            finally:  # the raw socket was detached by wrap_socket: close the TLS one
                self.shutdown_request(tls)
            return
        super().finish_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.outside.lock:
            self.outside.open_sockets.discard(request)
        super().shutdown_request(request)


@dataclass
class OutsideServer:
    """One running server; see the module docstring for what it answers and records."""

    name: str
    tls: ssl.SSLContext | None = None
    routes: list[Route] = field(default_factory=list)
    connections: list[tuple[str, int]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    tls_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    open_sockets: set[socket.socket] = field(default_factory=set, repr=False)
    _server: _Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:<port>`` (a client checking TLS names uses a name it issued
        the certificate for, resolved to 127.0.0.1, instead)."""
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    def start(self) -> OutsideServer:
        self.routes.append(_basic_routes)
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"outside-{self.name}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, then close every connection still open."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            for s in list(self.open_sockets):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.open_sockets.clear()
        if self._thread is not None:
            self._thread.join(10)
        self._server = None

    def __enter__(self) -> OutsideServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def http_server(name: str = "outside") -> OutsideServer:
    """A started plain-HTTP server on 127.0.0.1 (answers "hello from <name>")."""
    return OutsideServer(name).start()


def tls_server(ca: TestCA, names: Sequence[str] = ("outside.test",),
               name: str | None = None) -> OutsideServer:
    """A started HTTPS server on 127.0.0.1 with a certificate from `ca` for `names`
    (127.0.0.1 is always in it too); `name` (default names[0]) is what /hello answers."""
    ctx = ca.server_context([*names, HOST])
    return OutsideServer(name or names[0], tls=ctx).start()


def normalize(project: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", project).lower()


def _index_route(wheelhouse: Path) -> Route:
    files: dict[str, list[tuple[str, str]]] = {}  # project -> [(file name, sha256)]
    for wheel in sorted(wheelhouse.glob("*.whl")):
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        files.setdefault(normalize(wheel.name.split("-", 1)[0]), []).append((wheel.name,
                                                                               digest))

    def page(title: str, links: Iterable[tuple[str, str]]) -> bytes:
        body = "".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a><br/>\n'
                       for href, text in links)
        return (f"<!DOCTYPE html>\n<html><head><title>{html.escape(title)}</title></head>"
                f"<body>\n{body}</body></html>\n").encode()

    def route(handler: _Handler, method: str) -> tuple[int, str, bytes | Path] | None:
        if method not in ("GET", "HEAD"):
            return None
        path = handler.path.split("?", 1)[0]
        if path == "/simple/":
            return 200, "text/html", page("Simple index",
                                          ((f"{p}/", p) for p in sorted(files)))
        m = re.fullmatch(r"/simple/([^/]+)/?", path)
        if m:
            project = normalize(m[1])
            if project not in files:
                return 404, "text/plain", b"no such project"
            return 200, "text/html", page(f"Links for {project}", (
                (f"../../files/{f}#sha256={d}", f) for f, d in files[project]))
        m = re.fullmatch(r"/files/([^/]+)", path)
        if m and any(m[1] == f for entries in files.values() for f, _ in entries):
            return 200, "application/octet-stream", wheelhouse / m[1]
        return None

    return route


def package_index(ca: TestCA, wheelhouse: Path, names: Sequence[str] = ("pypi.test",)
                  ) -> OutsideServer:
    """A started PEP 503 index over HTTPS serving the wheels of `wheelhouse`."""
    server = OutsideServer(names[0], tls=ca.server_context([*names, HOST]),
                           routes=[_index_route(wheelhouse)])
    return server.start()
