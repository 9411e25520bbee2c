"""tests/seaweed.py starts a real SeaweedFS S3 server that keeps to loopback and checks keys.

One server for the module: starting weed takes about a second, stopping it about two.
"""

from __future__ import annotations

import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
import pytest

from seaweed import SeaweedHandle, start_seaweed


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedHandle]:
    with start_seaweed(tmp_path_factory.mktemp("seaweed"), buckets=["harness"]) as sw:
        yield sw


def listening(pid: int) -> list[str]:
    """Local addresses of every TCP and UDP socket ``pid`` listens on (from ``ss``)."""
    out = subprocess.run(["ss", "-H", "-ltunp"], capture_output=True, text=True,
                         check=True).stdout
    addrs = []
    for line in out.splitlines():
        if re.search(rf"pid={pid},", line):
            addrs.append(line.split()[4])
    return addrs


def test_put_get_list_roundtrip_over_s3(weed: SeaweedHandle) -> None:
    s3 = weed.client()
    body = bytes(range(256)) * 4096  # 1 MiB, not one repeated byte
    s3.put_object(Bucket="harness", Key="dir/blob.bin", Body=body)
    got = s3.get_object(Bucket="harness", Key="dir/blob.bin")
    assert got["Body"].read() == body
    part = s3.get_object(Bucket="harness", Key="dir/blob.bin", Range="bytes=256-511")
    assert part["Body"].read() == body[256:512]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="harness", Prefix="dir/")["Contents"]]
    assert keys == ["dir/blob.bin"]


def test_wrong_secret_is_refused(weed: SeaweedHandle) -> None:
    bad = SeaweedHandle(endpoint=weed.endpoint, access_key=weed.access_key,
                        secret_key=weed.secret_key + "x", proc=weed.proc, log=weed.log,
                        ports=weed.ports).client()
    with pytest.raises(botocore.exceptions.ClientError) as err:
        bad.list_objects_v2(Bucket="harness")
    assert err.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "AccessDenied"}


def test_listens_on_loopback_only(weed: SeaweedHandle) -> None:
    addrs = listening(weed.proc.pid)
    assert f"127.0.0.1:{weed.ports['s3']}" in addrs, addrs
    assert len(addrs) >= 4, addrs  # master, volume, filer, s3 at least: ss saw the process
    assert all(a.startswith("127.0.0.1:") for a in addrs), addrs


def test_identities_file_is_private(weed: SeaweedHandle) -> None:
    path = Path(weed.log).parent / "weed-s3.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert weed.secret_key not in weed.log.read_text(errors="replace")
