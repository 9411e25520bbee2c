"""tests/outside.py itself: the stand-in servers answer, check TLS names and record what
reached them (the egress tests rest on those records)."""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import ssl
from pathlib import Path

import pytest

from outside import TestCA, http_server, normalize, package_index, tls_server


def _get(conn: http.client.HTTPConnection, method: str, path: str,
         body: bytes | None = None) -> tuple[int, bytes]:
    conn.request(method, path, body=body)
    r = conn.getresponse()
    return r.status, r.read()


def test_plain_server_answers_and_records() -> None:
    with http_server("plain") as web:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
        assert _get(conn, "GET", "/hello") == (200, b"hello from plain")
        assert _get(conn, "POST", "/echo", b"x" * 1000) == (200, b"received 1000 bytes")
        assert _get(conn, "GET", "/status/418") == (418, b"status 418")
        assert _get(conn, "GET", "/status/204") == (204, b"")
        assert _get(conn, "GET", "/nothing")[0] == 404
        conn.close()
        assert len(web.connections) == 1  # keep-alive: one connection, five requests
        assert [(r.method, r.path, r.body_length) for r in web.requests] == [
            ("GET", "/hello", 0), ("POST", "/echo", 1000), ("GET", "/status/418", 0),
            ("GET", "/status/204", 0), ("GET", "/nothing", 0)]
        assert web.requests[0].headers["host"] == f"127.0.0.1:{web.port}"
        port = web.port
    with pytest.raises(OSError):  # stopped: nothing listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_tls_server_checks_names_and_records_failed_handshakes() -> None:
    ca = TestCA()
    with tls_server(ca, ["web.test"]) as tls:
        ctx = ca.client_context()
        raw = socket.create_connection(("127.0.0.1", tls.port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="web.test") as s:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello from web.test")
        with pytest.raises(ssl.SSLCertVerificationError):  # a name it has no certificate for
            ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls.port), timeout=10),
                            server_hostname="other.test")
        with pytest.raises(ssl.SSLCertVerificationError):  # another CA's client
            TestCA().client_context().wrap_socket(
                socket.create_connection(("127.0.0.1", tls.port), timeout=10),
                server_hostname="web.test")
        assert len(tls.connections) == 3  # counted at accept, handshake or not
        assert [r.path for r in tls.requests] == ["/hello"]
    assert len(tls.tls_errors) == 2, tls.tls_errors


def test_package_index_serves_a_wheelhouse(tmp_path: Path) -> None:
    wheels = {"Some_Project-1.0-py3-none-any.whl": b"one", "some.project-2.0-py3-none-any.whl":
              b"two", "other-0.1-py3-none-any.whl": b"three"}
    for name, data in wheels.items():
        (tmp_path / name).write_bytes(data)
    ca = TestCA()
    with package_index(ca, tmp_path) as index:
        conn = http.client.HTTPSConnection("127.0.0.1", index.port, timeout=10,
                                           context=ca.client_context())
        status, root = _get(conn, "GET", "/simple/")
        assert status == 200 and re.findall(rb'href="([^"]+)"', root) == [
            b"other/", b"some-project/"]
        status, page = _get(conn, "GET", "/simple/Some.Project/")
        links = re.findall(rb'href="([^"]+)"', page)
        assert status == 200 and len(links) == 2
        for link in links:
            href, digest = link.decode().split("#sha256=")
            assert href.startswith("../../files/")
            status, data = _get(conn, "GET", "/files/" + href.rsplit("/", 1)[1])
            assert status == 200 and hashlib.sha256(data).hexdigest() == digest
        assert _get(conn, "GET", "/simple/missing/")[0] == 404
        assert _get(conn, "GET", "/files/../outside.py")[0] == 404
        assert _get(conn, "GET", "/hello") == (200, b"hello from pypi.test")
        assert normalize("Some_Project") == normalize("some.project") == "some-project"
        assert len(index.connections) == 1
        assert [r.path for r in index.requests][:2] == ["/simple/", "/simple/Some.Project/"]
