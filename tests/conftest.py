"""Shared fixtures: a real tilde-server on a loopback port, fresh repositories.

The server runs as a subprocess (`tilde-server run`) exactly as a user starts it, with
its own data directory and HOME, so tests never touch the developer's ~/.tilde.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ADMIN_KEY = "tk-test-" + secrets.token_hex(16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command() -> list[str]:
    exe = shutil.which("tilde-server", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "tilde_server"]


@dataclass
class ServerHandle:
    endpoint: str
    api_key: str
    data_dir: Path
    home: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(tmp: Path, api_key: str = ADMIN_KEY) -> ServerHandle:
    data = tmp / "data"
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ, HOME=str(home))
    for k in ("TILDE_API_KEY", "TILDE_ENDPOINT_URL", "TILDE_API_URL"):
        env.pop(k, None)
    log_path = tmp / "server.log"
    logf = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [*server_command(), "run", "--data", str(data), "--host", "127.0.0.1",
         "--port", str(port), "--admin-key", api_key],
        stdout=logf, stderr=subprocess.STDOUT, env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"tilde-server exited early:\n{log_path.read_text()}")
        try:
            r = httpx.get(f"{endpoint}/api/v1/organizations",
                          headers={"Authorization": f"Bearer {api_key}"}, timeout=2)
            if r.status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"tilde-server did not come up:\n{log_path.read_text()}")
        time.sleep(0.1)
    return ServerHandle(endpoint, api_key, data, home, proc, log_path)


def stop_server(h: ServerHandle) -> None:
    h.proc.terminate()
    try:
        h.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        h.proc.kill()
        h.proc.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One real tilde-server for the whole test session."""
    h = start_server(tmp_path_factory.mktemp("server"))
    yield h
    stop_server(h)
    assert "Traceback" not in h.log(), h.log()


@pytest.fixture
def client_env(server: ServerHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ServerHandle:
    """Point the bundled client at the test server through the environment, with an empty HOME."""
    monkeypatch.setenv("TILDE_API_KEY", server.api_key)
    monkeypatch.setenv("TILDE_ENDPOINT_URL", server.endpoint)
    monkeypatch.delenv("TILDE_API_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class RepoRef:
    org: str
    repo: str

    @property
    def path(self) -> str:
        return f"{self.org}/{self.repo}"


@pytest.fixture
def repo_ref(server: ServerHandle) -> RepoRef:
    """A fresh organization and repository, created over plain HTTP (no client code involved)."""
    org, repo = unique("org"), unique("repo")
    h = {"Authorization": f"Bearer {server.api_key}"}
    base = f"{server.endpoint}/api/v1"
    r = httpx.post(f"{base}/organizations", json={"name": org, "display_name": org}, headers=h)
    assert r.status_code in (200, 201), r.text
    r = httpx.post(f"{base}/organizations/{org}/repositories",
                   json={"name": repo, "visibility": "private"}, headers=h)
    assert r.status_code in (200, 201), r.text
    return RepoRef(org, repo)
