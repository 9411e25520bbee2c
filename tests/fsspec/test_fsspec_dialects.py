"""``tilde://`` against the other wire dialects: the hosted service's (current routes only,
downloads redirected to signed URLs on another origin) and a legacy-only server; multipart
uploads in both."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ServerHandle, new_repo, start_server, stop_server
from tilde.fsspec import TildeFileSystem

PART = 256 * 1024
DATA = os.urandom(3 * PART + 1000)  # four parts


def small_parts_fs(server: ServerHandle) -> TildeFileSystem:
    return TildeFileSystem(api_key=server.api_key, endpoint_url=server.endpoint,
                           multipart_threshold=PART, part_size=PART, skip_instance_cache=True)


@pytest.fixture(scope="module")
def legacy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    h = start_server(tmp_path_factory.mktemp("legacy"), args=["--wire", "legacy"])
    yield h
    stop_server(h)
    assert "Traceback" not in h.log(), h.log()


def test_redirected_downloads_never_carry_the_key(redirecting_server: ServerHandle) -> None:
    r = new_repo(redirecting_server)
    root = f"{r.org}/{r.repo}"
    fs = small_parts_fs(redirecting_server)
    seen: list[tuple[str, str, bool]] = []

    async def hook(request: httpx.Request) -> None:
        seen.append((request.method, request.url.host, "authorization" in request.headers))

    fs.api.event_hooks["request"].append(hook)
    fs.pipe(f"{root}/small", b"0123456789")
    fs.pipe(f"{root}/large", DATA)
    assert fs.cat(f"{root}/small") == b"0123456789"
    assert fs.cat_file(f"{root}/small", 2, 5) == b"234"
    assert fs.cat(f"{root}/large") == DATA
    with fs.open(f"{root}/large", block_size=1024) as f:
        f.seek(PART + 10)
        assert f.read(20) == DATA[PART + 10:PART + 30]
    other = [(m, auth) for m, host, auth in seen if host == "localhost"]
    assert ("GET", False) in other  # downloads went to the signed-URL origin ...
    assert all(not auth for _, auth in other)  # ... without the API key
    assert sum(1 for m, host, _ in seen if m == "PUT" and host == "localhost") >= 5


def test_legacy_server_single_and_multipart(legacy_server: ServerHandle,
                                            tmp_path: Path) -> None:
    r = new_repo(legacy_server)
    root = f"{r.org}/{r.repo}"
    fs = small_parts_fs(legacy_server)
    lookups: list[str] = []

    async def hook(request: httpx.Request) -> None:
        if request.url.path.endswith("/object/multipart/part"):
            lookups.append(request.url.params.get("part_number", ""))

    fs.api.event_hooks["request"].append(hook)
    fs.pipe(f"{root}/small", b"legacy")
    local = tmp_path / "large.bin"
    local.write_bytes(DATA)
    fs.put_file(str(local), f"{root}/large")
    assert sorted(lookups) == ["1", "2", "3", "4"]
    assert fs.cat(f"{root}/small") == b"legacy"
    assert fs.cat(f"{root}/large") == DATA
    assert fs.info(f"{root}/large")["size"] == len(DATA)
    with fs.open(f"{root}/written", "wb") as f:
        f.write(DATA)
    assert fs.cat(f"{root}/written") == DATA
