"""The POSIX behaviour suite (behaviour.py) against `Filesystem`, over a real tilde-server."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from .behaviour import POSIX_CHECKS, FsUnderTest, OsFs
from .harness import CoreFs, Http, open_fs


@pytest.mark.parametrize("check", POSIX_CHECKS, ids=lambda c: c.__name__)
def test_posix_behaviour(check: Callable[[FsUnderTest], Awaitable[None]], server: Any,
                         repo_ref: Any, tmp_path: Path) -> None:
    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            await check(CoreFs(fs))
            await fs.sync()
            # after the uploads the same answers come from the server, not staging
            await check_again_after_sync(fs)

    trio.run(main)
    assert_no_leftover_staging(tmp_path)


async def check_again_after_sync(fs: Any) -> None:
    st = await fs.status()
    assert st["uploads_pending"] == 0


def assert_no_leftover_staging(tmp: Path) -> None:
    staging = tmp / "cache" / "staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_posix_suite_then_commit(server: Any, repo_ref: Any, tmp_path: Path) -> None:
    """The whole suite in one session, committed: the commit holds exactly the result."""
    http = Http(server, repo_ref)

    async def main() -> str:
        async with open_fs(server, repo_ref, tmp_path) as fs:
            cfs = CoreFs(fs)
            for check in POSIX_CHECKS:
                await check(cfs)
            outcome = await fs.commit("suite", {"by": "test"})
            assert outcome.status == "committed" and outcome.commit_id
            return outcome.commit_id

    commit_id = trio.run(main)
    objects = http.objects()
    assert http.log()[0]["id"] == commit_id
    assert objects["hello.txt"] == b"hello world\n"
    assert objects["o.txt"] == b"short"
    assert objects["log.txt"] == b"one\ntwo\nthree\n"
    assert objects["c.txt"] == b"content of a"
    assert objects["dst/inner/two.txt"] == b"2"
    assert objects["t.txt"] == b""
    for gone in ("gone.txt", "a.txt", "b.txt", "src/one.txt", "d/sub/f.txt"):
        assert gone not in objects
    assert len(objects["big.bin"]) == 3 * 1024 * 1024 + 12345
    assert objects["open.txt"] == b"first second"
    assert objects["conf.ini"] == b"new=2\n"
    assert objects["bulk2/n039"] == b"n039"
    assert set(objects) == {"hello.txt", "o.txt", "log.txt", "r.bin", "t.txt", "c.txt",
                            "dst/one.txt", "dst/inner/two.txt", "m.sh", "big.bin", "open.txt",
                            "conf.ini", "shared.bin", "dst/empty/",
                            *(f"bulk2/n{i:03d}" for i in range(20, 40))}


@pytest.mark.parametrize("check", POSIX_CHECKS, ids=lambda c: c.__name__)
def test_suite_holds_on_a_local_disk(check: Callable[[FsUnderTest], Awaitable[None]],
                                     tmp_path: Path) -> None:
    """The checks themselves are right: a local filesystem passes them too."""
    root = tmp_path / "local"
    root.mkdir()
    old = os.umask(0o022)
    try:
        trio.run(check, OsFs(root))
    finally:
        os.umask(old)
