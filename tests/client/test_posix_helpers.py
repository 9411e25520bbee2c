"""`tilde.posix`: POSIX attributes as a mount stores them, read and written with the client.

Objects with metadata are written over plain HTTP (today's upload flow, or the 0.7.2 one a
``--wire legacy`` server has): what the helpers must read is what a mount (or any other
writer) stored, not what the client wrote (``put(metadata=)`` has tests of its own,
test_put_metadata.py).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from typing import Any

import pytest

import tilde
import tilde.posix as posix
from bypath import load
from tilde._wire import posix as wire_posix
from tilde.exceptions import NotFoundError
from tilde.models import Entry, ListingEntry, Repository


@pytest.fixture
def client(client_env: Any) -> Iterator[tilde.Client]:
    with tilde.Client() as c:
        yield c


@pytest.fixture
def repo(client: tilde.Client, repo_ref: Any) -> Repository:
    return client.repository(repo_ref.path)


class RawRepo:
    """Plain-HTTP writes of objects with user metadata, committed in one session (the
    mount tests' `Http`, no client code involved)."""

    def __init__(self, server: Any, ref: Any) -> None:
        self.raw = load("mount_core/harness.py", "tilde_tests_mount_core_harness").Http(
            server, ref)

    def commit(self, objects: dict[str, tuple[bytes, dict[str, str]]]) -> str:
        sid = self.raw.client.post(f"{self.raw.base}/sessions").json()["session_id"]
        for path, (data, meta) in objects.items():
            self.raw.put_in(sid, path, data, meta)
        r = self.raw.commit(sid, "raw")
        r.raise_for_status()
        return str(r.json()["commit_id"])


MTIME_NS = 1_577_934_245_123_456_789  # 2020-01-02T03:04:05.123456789Z


@pytest.fixture
def stored(server: Any, repo_ref: Any) -> str:
    """A commit holding what a mount writes: a script, a symlink, a marker, a plain file."""
    return RawRepo(server, repo_ref).commit({
        "bin/run.sh": (b"#!/bin/sh\necho hi\n", posix.posix_metadata(
            mode=0o755, uid=1234, gid=2345, mtime_ns=MTIME_NS)),
        "bin/link": (b"run.sh", posix.symlink_metadata(uid=1234, gid=2345)),
        "bin/abs": (b"/etc/hostname", posix.symlink_metadata()),
        "empty/": (b"", posix.posix_metadata(mode=stat.S_IFDIR | 0o700)),
        "plain.txt": (b"no attributes", {"owner-team": "data"}),
    })


def test_the_module_reexports_the_wire_encoding() -> None:
    """One encoding: the names are the very objects of tilde._wire.posix."""
    for name in ("PosixAttrs", "MODE", "UID", "GID", "MTIME", "CTIME", "KEYS", "parse",
                 "encode", "split", "marker_key", "is_marker_key"):
        assert getattr(posix, name) is getattr(wire_posix, name), name
    assert all(getattr(posix, n) is not None for n in posix.__all__)
    assert (posix.MODE, posix.UID, posix.GID, posix.MTIME, posix.CTIME) == (
        "posix-mode", "posix-uid", "posix-gid", "posix-mtime", "posix-ctime")


def test_posix_metadata_encodes_what_the_mount_reads() -> None:
    meta = posix.posix_metadata(mode=0o755, uid=1234, gid=2345, mtime_ns=MTIME_NS,
                                ctime_ns=-1)
    assert meta == {"posix-mode": "100755", "posix-uid": "1234", "posix-gid": "2345",
                    "posix-mtime": "1577934245.123456789", "posix-ctime": "-0.000000001"}
    assert all(v.isascii() for v in meta.values())  # headers carry them verbatim
    attrs = posix.attributes(meta)
    assert attrs == posix.PosixAttrs(mode=0o100755, uid=1234, gid=2345, mtime_ns=MTIME_NS,
                                     ctime_ns=-1)
    assert attrs.permissions == 0o755 and not attrs.is_symlink and not attrs.is_dir
    # only what is given; a type given is kept
    assert posix.posix_metadata() == {}
    assert posix.posix_metadata(uid=0) == {"posix-uid": "0"}
    assert posix.posix_metadata(mode=stat.S_IFDIR | 0o700) == {"posix-mode": "40700"}
    assert posix.symlink_metadata() == {"posix-mode": "120777"}
    assert posix.attributes(posix.symlink_metadata()).is_symlink


@pytest.mark.parametrize("kw", [{"mode": -1}, {"mode": 0o1000000}, {"mode": stat.S_IFIFO | 0o644},
                                {"mode": stat.S_IFSOCK | 0o644}, {"uid": -1},
                                {"gid": 2**32}])
def test_posix_metadata_refuses_what_no_mount_could_show(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        posix.posix_metadata(**kw)


def test_attributes_of_foreign_metadata_are_lenient() -> None:
    """Metadata written by another tool never raises: bad values read as absent."""
    attrs = posix.attributes({"posix-mode": "rwxr-xr-x", "posix-uid": "-5",
                              "posix-gid": "99999999999", "posix-mtime": "yesterday",
                              "other": "x"})
    assert attrs == posix.PosixAttrs()
    assert posix.attributes({}) == posix.PosixAttrs()
    assert posix.attributes({"posix-mode": "70644"}).mode is None   # no such file type
    attrs, user = posix.split({"posix-mode": "100600", "team": "data"})
    assert attrs.permissions == 0o600 and user == {"team": "data"}


def test_attributes_accepts_every_shape_the_client_hands_out() -> None:
    meta = {"posix-mode": "100700"}
    entry = Entry(metadata=meta)
    for item in (meta, entry, ListingEntry(path="f", type="object", entry=entry)):
        assert posix.attributes(item).mode == 0o100700
    # a common prefix and a staged deletion have no entry, hence no attributes
    assert posix.attributes(ListingEntry(path="d/", type="prefix")) == posix.PosixAttrs()
    with pytest.raises(TypeError):
        posix.attributes(42)


def test_directory_markers_by_path_and_row() -> None:
    assert posix.is_directory_marker("a/b/") and not posix.is_directory_marker("a/b")
    assert posix.marker_key("a/b") == "a/b/" and posix.is_marker_key(posix.marker_key("x"))
    assert posix.is_directory_marker(ListingEntry(path="a/", type="object", entry=Entry()))
    # a listing's common prefix ends with "/" but is not an object, let alone a marker
    assert not posix.is_directory_marker(ListingEntry(path="a/", type="prefix"))
    with pytest.raises(TypeError):
        posix.is_directory_marker(object())


def test_listing_shows_the_stored_attributes(repo: Repository, stored: str) -> None:
    rows = {item.path: item for item in repo.objects.list()}
    assert set(rows) == {"bin/run.sh", "bin/link", "bin/abs", "empty/", "plain.txt"}
    run = posix.attributes(rows["bin/run.sh"])
    assert (run.mode, run.uid, run.gid, run.mtime_ns) == (0o100755, 1234, 2345, MTIME_NS)
    assert posix.is_symlink(rows["bin/link"]) and posix.is_symlink(rows["bin/abs"])
    assert not posix.is_symlink(rows["bin/run.sh"]) and not posix.is_symlink(rows["plain.txt"])
    assert posix.is_directory_marker(rows["empty/"])
    marker = posix.attributes(rows["empty/"])
    assert marker.is_dir and marker.permissions == 0o700
    assert posix.attributes(rows["plain.txt"]) == posix.PosixAttrs()
    plain = rows["plain.txt"].entry
    assert plain is not None and posix.split(plain.metadata)[1] == {"owner-team": "data"}
    # the same through a pinned commit and a delimiter listing
    at = {item.path: item for item in repo.commits.get(stored).objects.list(prefix="bin/")}
    assert set(at) == {"bin/run.sh", "bin/link", "bin/abs"}
    assert posix.attributes(at["bin/run.sh"]).uid == 1234
    top = {item.path: item.type for item in repo.objects.list(delimiter="/")}
    assert top == {"bin/": "prefix", "empty/": "prefix", "plain.txt": "object"}


def test_symlink_target_reads_the_content(repo: Repository, stored: str) -> None:
    assert posix.symlink_target(repo.objects, "bin/link") == "run.sh"
    assert posix.symlink_target(repo.objects, "bin/abs") == "/etc/hostname"
    assert posix.symlink_target(repo.objects, "bin/run.sh") is None
    assert posix.symlink_target(repo.objects, "plain.txt") is None
    # "bin" is a directory, not an object; a prefix of a name is not that name
    for missing in ("bin", "bin/li", "nothing"):
        with pytest.raises(NotFoundError):
            posix.symlink_target(repo.objects, missing)
    with repo.session() as s:  # a session sees the committed objects too
        assert posix.symlink_target(s.objects, "bin/link") == "run.sh"
        s.rollback()


def test_non_utf8_target_round_trips(server: Any, repo_ref: Any, repo: Repository) -> None:
    raw = b"caf\xe9/\xff"
    RawRepo(server, repo_ref).commit({"l": (raw, posix.symlink_metadata())})
    target = posix.symlink_target(repo.objects, "l")
    assert target is not None and target.encode("utf-8", "surrogateescape") == raw
