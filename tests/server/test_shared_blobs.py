"""A blob directory on another filesystem than the spools (`--blobs DIR`, blobs.py 6.).

Real filesystems: spools under pytest's temporary directory (the root disk), blobs on
/dev/shm (tmpfs), so the rename into place fails with EXDEV and adopt() copies instead."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tilde_server.store.blobs import INCOMING, BlobStore


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    shm = Path("/dev/shm")
    assert shm.is_dir(), "/dev/shm is missing"
    assert os.stat(shm).st_dev != os.stat(tmp_path).st_dev, "need two filesystems"
    d = Path(tempfile.mkdtemp(prefix="tilde-blobs-", dir=shm))
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def test_adopt_across_filesystems_copies_whole_and_leaves_nothing(tmp_path: Path,
                                                                  other_fs: Path) -> None:
    store = BlobStore(tmp_path / "data", other_fs)
    data = os.urandom(3 * 1024 * 1024 + 7)
    spool = store.open_spool("s-1", "u-1")
    spool.write(data)
    sha, _, size = spool.finish()
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    store.adopt(spool.path, sha)
    assert store.path(sha).read_bytes() == data
    assert store.path(sha).is_relative_to(other_fs)
    assert not spool.path.exists()
    assert list((other_fs / INCOMING).iterdir()) == []
    # the copy area is never a shard: a sweep walks blobs only
    assert list(store.shards()) == [(sha[:2], [sha])]
    # adopting the same content again (another process had it first) drops the spool
    again = store.open_spool("s-2", "u-2")
    again.write(data)
    again.finish()
    store.adopt(again.path, sha)
    assert not again.path.exists() and store.path(sha).read_bytes() == data
    assert not (tmp_path / "data" / "blobs").exists()
