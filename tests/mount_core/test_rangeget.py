"""The plain range-GET path (`rangeget.py`) against tilde-server and a server without ranges."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tilde import exceptions as exc
from tilde_mount.rangeget import RangeGetPool, Unsupported
from tilde_mount.remote import HttpRemote, View

from .harness import Http


def test_ranges_errors_and_reused_connections(server: Any, repo_ref: Any) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    Http(server, repo_ref).put("dir/obj ü+1.bin", data)

    async def main() -> None:
        remote = HttpRemote(server.endpoint, repo_ref.path, server.api_key)
        try:
            pools = remote._pools
            assert pools is not None  # http endpoint: the plain path is on
            for start, end in [(0, 1), (0, len(data)), (4095, 4097), (len(data) - 17, len(data)),
                               (1 << 20, 3 << 20)]:
                got = await remote.read_range("dir/obj ü+1.bin", start, end, View())
                assert bytes(got) == data[start:end], (start, end)
            stats = remote.stats()
            kinds, redirects = stats["by_kind"], stats["redirects"]
            # a redirecting server (--downloads redirect) costs one redirect, then every
            # range goes to the signed URL it gave
            assert redirects <= 1
            assert kinds.get("read", 0) + kinds.get("read_url", 0) - redirects == 5, stats
            # connections are reused; one closed while idle is replaced transparently
            pool = next(p for p in pools.values() if p._idle)
            for conn in pool._idle:  # as when the server closes an idle keep-alive
                conn.stream.socket.shutdown(socket.SHUT_RDWR)
            remote.retries = 0  # not saved by the remote's retries: by the pool itself
            assert bytes(await remote.read_range("dir/obj ü+1.bin", 10, 20, View())) \
                == data[10:20]
            assert remote.stats()["retries"] == 0
            # statuses go through the same table as every other call
            with pytest.raises(exc.NotFoundError):
                await remote.read_range("missing.bin", 0, 10, View())
            with pytest.raises(exc.NotFoundError):
                await remote.read_range("dir/obj ü+1.bin", 0, 10,
                                        View(session_id="00000000-0000-0000-0000-000000000000"))
            assert remote._pools is pools, "an error status does not switch paths"
        finally:
            await remote.aclose()
        # names are percent-encoded: a space or CR/LF cannot break the request line
        odd = HttpRemote(server.endpoint, "no such\r\norg/repo", server.api_key, retries=0)
        try:
            with pytest.raises(exc.NotFoundError):
                await odd.read_range("x", 0, 1, View())
            assert odd._pools is not None
        finally:
            await odd.aclose()

    trio.run(main)


def test_https_and_injected_transports_use_httpx() -> None:
    with pytest.raises(Unsupported):
        RangeGetPool("https://tilde.example", headers={}, timeout=5)
    assert HttpRemote("http://127.0.0.1:1", "o/r", "k",
                      transport=httpx.AsyncHTTPTransport())._pools is None


def test_a_server_ignoring_range_switches_to_httpx(tmp_path: Path) -> None:
    """python's http.server answers 200 with the whole file to a Range request."""
    data = os.urandom(300_000)
    target = tmp_path / "api/v1/organizations/o/repositories/r/object"
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    with socket_port() as port:
        proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port),
                                 "--bind", "127.0.0.1", "--directory", str(tmp_path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)

        async def main() -> None:
            remote = HttpRemote(f"http://127.0.0.1:{port}", "o/r", "k", retries=0)
            try:
                assert remote._pools is not None
                got = await remote.read_range("f", 1000, 5000, View())
                assert bytes(got) == data[1000:5000]
                assert remote._pools is None, "switched to httpx for good"
                assert bytes(await remote.read_range("f", 0, 10, View())) == data[:10]
            finally:
                await remote.aclose()

        trio.run(main)
    finally:
        proc.terminate()
        proc.wait(10)


class socket_port:
    """A free loopback port number (the socket is closed on exit)."""

    def __enter__(self) -> int:
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return int(self.s.getsockname()[1])

    def __exit__(self, *exc_info: Any) -> None:
        self.s.close()


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
