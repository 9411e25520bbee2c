"""Shared fixtures: a real tilde-server on a loopback port, fresh repositories.

The server runs as a subprocess (`tilde-server run`) exactly as a user starts it, with
its own data directory and HOME, so tests never touch the developer's ~/.tilde.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

    def new_repo(self) -> RepoRef:
        """A fresh organization and repository on this server (`new_repo`)."""
        return new_repo(self)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--server-args", default="",
        help="extra `tilde-server run` arguments for the session's shared server, e.g. "
             "'--wire current --downloads redirect'; {port} stands for the server's port "
             "(scripts/test.sh runs the client and mount suites once per wire dialect this "
             "way)")
    parser.addoption(
        "--backend", default="sqlite", choices=("sqlite", "postgresql", "postgresql-s3"),
        help="the engines of every server the tests start: sqlite (in the data directory, "
             "the default), postgresql (a real PostgreSQL 15 the run starts on loopback, "
             "tests/postgres.py; one database per data directory) or postgresql-s3 (that, "
             "and the blobs in a real SeaweedFS bucket, tests/seaweed.py; one prefix per "
             "data directory)")


def pytest_configure(config: pytest.Config) -> None:
    from postgres import RUN

    RUN.name = config.getoption("--backend")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--backend postgresql-s3` deselects the `local_blobs` tests (pyproject.toml): they
    test routes a bucket deployment's clients never reach. pytest reports the count."""
    if config.getoption("--backend") != "postgresql-s3":
        return
    dropped = [it for it in items if it.get_closest_marker("local_blobs")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [it for it in items if not it.get_closest_marker("local_blobs")]


def pytest_unconfigure(config: pytest.Config) -> None:
    from postgres import RUN

    RUN.stop()


def backend_env(data: Path) -> dict[str, str]:
    """The environment that puts a server on `data` on this run's --backend."""
    from postgres import RUN

    return RUN.env(data)


def server_cli(data: Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A maintenance command (`tilde-server user add --data DATA ...`) on the deployment
    whose data directory is `data`: on this run's --backend, as its server is."""
    full_env = dict(os.environ if env is None else env)
    full_env.update(backend_env(data))
    return subprocess.run([*server_command(), *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def start_server(tmp: Path, api_key: str = ADMIN_KEY,
                 extra_env: dict[str, str] | None = None,
                 args: Sequence[str] = (), port: int | None = None) -> ServerHandle:
    """`port`: listen there (a restart on the same data directory and port keeps signed URLs
    valid); default a free one."""
    data = tmp / "data"
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [a.replace("{port}", str(port)) for a in args]
    env = dict(os.environ, HOME=str(home))
    for k in ("TILDE_API_KEY", "TILDE_ENDPOINT_URL", "TILDE_API_URL"):
        env.pop(k, None)
    # The admin key by environment, not --admin-key: a command line is readable by every
    # local user (ps, /proc/PID/cmdline); test_security_canary.py checks it is not there.
    env["TILDE_SERVER_ADMIN_KEY"] = api_key
    env.update(backend_env(data))
    env.update(extra_env or {})
    log_path = tmp / "server.log"
    logf = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [*server_command(), "run", "--data", str(data), "--host", "127.0.0.1",
         "--port", str(port), *args],
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


@dataclass
class S3Handle:
    """A local S3-compatible server (moto) for connector and import tests."""

    endpoint: str
    proc: subprocess.Popen[bytes]
    access_key: str = "tilde-test-key"
    secret_key: str = "tilde-test-secret"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key)


# The bucket the README's "Connectors and Imports" example reads (tests/scenarios/connectors.py).
README_BUCKET = "my-bucket"
README_OBJECTS = {"data/train.csv": b"a,b\n1,2\n", "data/test.csv": b"a,b\n3,4\n",
                  "data/nested/more.csv": b"a,b\n5,6\n", "other/ignored.txt": b"not imported"}


def start_s3(tmp: Path) -> S3Handle:
    """`moto_server` on a loopback port, as a subprocess; ready once it answers."""
    port = free_port()
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    logf = open(tmp / "moto.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=logf,
                            stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited early:\n{(tmp / 'moto.log').read_text()}")
        try:
            if httpx.get(endpoint + "/", timeout=2).status_code < 500:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("moto_server did not come up")
        time.sleep(0.1)
    return S3Handle(endpoint, proc)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Handle]:
    """One local S3 server for the session, holding the README example's bucket."""
    h = start_s3(tmp_path_factory.mktemp("s3"))
    c = h.client()
    c.create_bucket(Bucket=README_BUCKET)
    for key, data in README_OBJECTS.items():
        c.put_object(Bucket=README_BUCKET, Key=key, Body=data)
    yield h
    h.proc.terminate()
    h.proc.wait(timeout=15)


def s3_server_env(s3: S3Handle, connector_root: Path) -> dict[str, str]:
    """How the test server is told about S3 and local connectors (docs/connectors.md)."""
    return {
        "TILDE_SERVER_S3_ENDPOINT": s3.endpoint,
        "TILDE_SERVER_S3_AMBIENT_CREDENTIALS": "1",
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_EC2_METADATA_DISABLED": "true",
        "TILDE_SERVER_CONNECTOR_ROOTS": str(connector_root),
    }


@pytest.fixture(scope="session")
def connector_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the session server allows `local` connectors under."""
    return tmp_path_factory.mktemp("connector-root")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, s3: S3Handle, connector_root: Path,
           pytestconfig: pytest.Config) -> Iterator[ServerHandle]:
    """One real tilde-server for the whole test session (with S3 and local connectors),
    started with the `--server-args` pytest option appended."""
    h = start_server(tmp_path_factory.mktemp("server"),
                     extra_env=s3_server_env(s3, connector_root),
                     args=shlex.split(pytestconfig.getoption("--server-args")))
    yield h
    stop_server(h)
    assert "Traceback" not in h.log(), h.log()


@pytest.fixture
def client_env(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> ServerHandle:
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
    return new_repo(server)


@pytest.fixture(scope="session")
def redirecting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A server that answers as the hosted service does whatever --server-args say: today's
    routes only, every download a 307 to a signed URL on another origin (localhost), URLs
    that expire after 2 s. Started only for the tests that ask for it."""
    h = start_server(tmp_path_factory.mktemp("redirecting"),
                     args=["--wire", "current", "--downloads", "redirect",
                           "--download-url-ttl", "2",
                           "--signed-url-base", "http://localhost:{port}"])
    yield h
    stop_server(h)
    assert "Traceback" not in h.log(), h.log()


def new_repo(server: ServerHandle) -> RepoRef:
    """Create a fresh organization and repository on ``server`` over plain HTTP."""
    org, repo = unique("org"), unique("repo")
    h = {"Authorization": f"Bearer {server.api_key}"}
    base = f"{server.endpoint}/api/v1"
    r = httpx.post(f"{base}/organizations", json={"name": org, "display_name": org}, headers=h)
    assert r.status_code in (200, 201), r.text
    r = httpx.post(f"{base}/organizations/{org}/repositories",
                   json={"name": repo, "visibility": "private"}, headers=h)
    assert r.status_code in (200, 201), r.text
    return RepoRef(org, repo)


# A package index "outside" for the sandboxes' `pip install` (README quick start).
WHEELHOUSE = Path(__file__).resolve().parents[1] / "build" / "wheelhouse"  # scripts/setup.sh
PIP_INDEX_HOST = "pypi.test"
PIP_CA_IN_REPO = ".test-ca.pem"  # where a scenario commits the test CA (PIP_CERT points there)


@dataclass
class PipIndexServer:
    """A tilde-server whose sandboxes reach a local PEP 503 index (tests/outside.py) over TLS
    through the egress proxy, the way an operator allows a package index: pip finds it by
    PIP_INDEX_URL=https://pypi.test:<port>/simple/ (--sandbox-env) and trusts the test CA
    at /sandbox/.test-ca.pem (PIP_CERT), which the test commits there first."""

    server: ServerHandle
    index: Any  # outside.OutsideServer: what pip asked for is in index.requests
    ca_file: Path  # the test CA's PEM on the host


def pip_index_args(index_port: int) -> list[str]:
    """`tilde-server run` options that let sandboxes reach the index on 127.0.0.1:index_port
    as https://pypi.test:<port>/ (the test-only options resolve the name and exempt that
    loopback port from the egress baseline; the allow-list entry is what an operator
    writes for a real index). PIP_CONFIG_FILE=/dev/null: the host's pip configuration
    (/etc is the sandbox's) must not add indexes or constraints of its own."""
    host = f"{PIP_INDEX_HOST}:{index_port}"
    return ["--sandbox-network", "proxy", "--sandbox-allow-host", host,
            "--unsafe-egress-test-resolve", f"{PIP_INDEX_HOST}=127.0.0.1",
            "--unsafe-egress-test-exempt", f"127.0.0.1:{index_port}",
            "--sandbox-env", f"PIP_INDEX_URL=https://{host}/simple/",
            "--sandbox-env", f"PIP_CERT=/sandbox/{PIP_CA_IN_REPO}",
            "--sandbox-env", "PIP_CONFIG_FILE=/dev/null"]


@pytest.fixture(scope="session")
def pip_index_server(tmp_path_factory: pytest.TempPathFactory,
                     pytestconfig: pytest.Config) -> Iterator[PipIndexServer]:
    """One index (serving build/wheelhouse) and one server allowed to reach it, for the
    session; started only for the tests that ask for it, with `--server-args` appended."""
    from outside import TestCA, package_index

    if not list(WHEELHOUSE.glob("pandas-*.whl")):
        pytest.fail(f"no pandas wheel in {WHEELHOUSE}: run scripts/setup.sh")
    tmp = tmp_path_factory.mktemp("pip-index")
    ca = TestCA()
    with package_index(ca, WHEELHOUSE, [PIP_INDEX_HOST]) as index:
        h = start_server(tmp, args=[*pip_index_args(index.port),
                                    *shlex.split(pytestconfig.getoption("--server-args"))])
        try:
            yield PipIndexServer(h, index, ca.write(tmp / "test-ca.pem"))
        finally:
            stop_server(h)
    assert "Traceback" not in h.log(), h.log()
