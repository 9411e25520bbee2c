"""`SessionObjects.put(..., metadata=...)` against real servers in every upload dialect.

The same writes go to three tilde-servers: the default (every dialect), ``--wire current``
(the hosted service's routes only) and ``--wire legacy`` (the 0.7.4-era routes), single and
multipart, and the metadata is read back the way everyone reads it: a listing's
``entry.metadata`` and ``tilde.posix.attributes``. Without ``metadata`` (or with an empty one)
nothing changes on the wire: the same requests, and the same bodies but for their tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tilde
import tilde.posix as posix
from bypath import root_conftest
from tilde import _wire

_root = root_conftest()

WIRES = {"default": [], "current": ["--wire", "current"], "legacy": ["--wire", "legacy"]}
SCRIPT = b"#!/bin/sh\necho hello from run.sh\n"


class _Tap:
    """Every request the client sends, through a real server (an httpx event hook)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []

    def __call__(self, request: httpx.Request) -> None:
        try:
            body = request.content
        except httpx.RequestNotRead:  # a streamed file body: not ours to consume
            body = b"<stream>"
        self.seen.append((request.method, request.url.path, body))


@pytest.fixture(scope="module", params=list(WIRES))
def wire_server(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    h = _root.start_server(tmp_path_factory.mktemp(f"server-{request.param}"),
                           args=WIRES[request.param])
    yield h
    _root.stop_server(h)
    assert "Traceback" not in h.log(), h.log()


@pytest.fixture
def tap() -> _Tap:
    return _Tap()


@pytest.fixture
def repo(wire_server: Any, tap: _Tap) -> Iterator[Any]:
    ref = _root.new_repo(wire_server)
    with tilde.Client(endpoint_url=wire_server.endpoint, api_key=wire_server.api_key) as c:
        c._http.event_hooks["request"].append(tap)
        yield c.repository(ref.path)


def listed(objects: Any, prefix: str = "") -> dict[str, dict[str, str]]:
    return {item.path: item.entry.metadata for item in objects.list(prefix=prefix)
            if item.entry is not None}


def test_metadata_of_a_single_upload_is_listed_and_committed(repo: Any,
                                                              tmp_path: Path) -> None:
    exe = posix.posix_metadata(mode=0o755, uid=1000, gid=1000,
                               mtime_ns=1_700_000_000_123_456_789)
    local = tmp_path / "data.txt"
    local.write_bytes(b"plain data\n")
    with repo.session() as s:
        s.objects.put("bin/run.sh", SCRIPT, metadata=exe)
        s.objects.put("data.txt", local, metadata=posix.posix_metadata(mode=0o644))
        s.objects.put("link", b"bin/run.sh", metadata=posix.symlink_metadata())
        s.objects.put("plain", b"no metadata")
        s.objects.put("mine", b"x", metadata={"owner-team": "data", **exe})
        staged = listed(s.objects)  # the session's view, before the commit
        s.commit("with metadata")
    assert staged == listed(repo.objects)
    meta = listed(repo.objects)
    assert meta["bin/run.sh"] == {"posix-mode": "100755", "posix-uid": "1000",
                                  "posix-gid": "1000", "posix-mtime": "1700000000.123456789"}
    assert meta["data.txt"] == {"posix-mode": "100644"}
    assert meta["plain"] == {}
    assert meta["mine"]["owner-team"] == "data"
    rows = {item.path: item for item in repo.objects.list()}
    attrs = posix.attributes(rows["bin/run.sh"])
    assert (attrs.permissions, attrs.uid, attrs.mtime_ns) == (0o755, 1000,
                                                              1_700_000_000_123_456_789)
    assert posix.attributes(rows["data.txt"]).permissions == 0o644
    assert posix.attributes(rows["plain"]) == posix.PosixAttrs()
    assert posix.split(rows["mine"].entry.metadata)[1] == {"owner-team": "data"}
    assert posix.symlink_target(repo.objects, "link") == "bin/run.sh"
    with repo.objects.get("bin/run.sh") as r:
        assert r.read() == SCRIPT


def test_metadata_of_a_multipart_upload(repo: Any, tap: _Tap,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Uploads of 10 bytes or more go multipart: complete carries the metadata. Parts of 10
    bytes; with blobs in a bucket (--backend postgresql-s3) of S3's least part size, so the
    34 bytes are one (last) part there."""
    from postgres import RUN

    monkeypatch.setattr(_wire, "SINGLE_UPLOAD_LIMIT", 10)
    monkeypatch.setattr(_wire, "MULTIPART_PART_SIZE",
                        5 << 20 if RUN.name == "postgresql-s3" else 10)
    data = b"0123456789" * 3 + b"tail"
    with repo.session() as s:
        s.objects.put("big.bin", data, metadata=posix.posix_metadata(mode=0o750, gid=7))
        completes = [json.loads(b) for _, p, b in tap.seen if p.endswith("/complete")]
        assert len(completes) == 1  # really multipart, in this server's dialect
        assert completes[0]["metadata"] == {"posix-mode": "100750", "posix-gid": "7"}
        s.objects.put("big-plain.bin", data)
        s.commit("multipart")
    rows = {item.path: item for item in repo.objects.list()}
    assert rows["big.bin"].entry.size == len(data)
    assert rows["big.bin"].entry.metadata == {"posix-mode": "100750", "posix-gid": "7"}
    assert posix.attributes(rows["big.bin"]).permissions == 0o750
    assert rows["big-plain.bin"].entry.metadata == {}
    with repo.objects.get("big.bin") as r:
        assert r.read() == data


def test_metadata_replaces_on_a_new_put(repo: Any) -> None:
    """An object's metadata is that of its last upload, not a merge."""
    with repo.session() as s:
        s.objects.put("f", b"1", metadata=posix.posix_metadata(mode=0o755, uid=5))
        s.commit("first")
    with repo.session() as s:
        s.objects.put("f", b"2", metadata=posix.posix_metadata(mode=0o600))
        s.commit("second")
    assert listed(repo.objects) == {"f": {"posix-mode": "100600"}}


def test_bad_metadata_fails_before_any_request(repo: Any) -> None:
    with repo.session() as s:
        with pytest.raises(TypeError):
            s.objects.put("f", b"x", metadata={"posix-mode": 0o755})
        with pytest.raises(TypeError):
            s.objects.put("f", b"x", metadata="posix-mode=100755")
        with pytest.raises(TypeError):
            s.objects.put("f", b"x", {"k": "v"})  # metadata is keyword-only
        assert listed(s.objects) == {}


# --- nothing changes on the wire without metadata ------------------------------------------


def _tapped_puts(server: Any, ref: Any, **kw: Any) -> list[tuple[str, str, Any]]:
    tap = _Tap()
    with tilde.Client(endpoint_url=server.endpoint, api_key=server.api_key) as c:
        c._http.event_hooks["request"].append(tap)
        with c.repository(ref.path).session() as s:
            tap.seen.clear()
            s.objects.put("f", b"same bytes", **kw)
            calls = list(tap.seen)
            s.rollback()
    out: list[tuple[str, str, Any]] = []
    for method, path, body in calls:
        decoded: Any = body
        if body.startswith(b"{"):
            decoded = json.loads(body)
            for volatile in ("upload_token", "signature", "physical_address", "checksum"):
                decoded.pop(volatile, None)
        # an API route by its path in the repository; the upload URL (the server's, or a
        # bucket key that differs per upload) as such
        route = (path.rsplit("/repositories/", 1)[-1].split("/", 1)[-1]
                 if "/repositories/" in path else "<upload url>")
        out.append((method, route, decoded))
    return out


def test_none_or_empty_metadata_sends_what_a_plain_put_sends(wire_server: Any) -> None:
    ref = _root.new_repo(wire_server)
    plain = _tapped_puts(wire_server, ref)
    assert _tapped_puts(wire_server, ref, metadata=None) == plain
    assert _tapped_puts(wire_server, ref, metadata={}) == plain
    assert not any(isinstance(b, dict) and "metadata" in b for _, _, b in plain)
    with_meta = _tapped_puts(wire_server, ref, metadata={"posix-mode": "100755"})
    assert [(m, p) for m, p, _ in with_meta] == [(m, p) for m, p, _ in plain]
    finals = [b for _, p, b in with_meta if p.endswith("finalize")]
    assert finals and finals[-1]["metadata"] == {"posix-mode": "100755"}

