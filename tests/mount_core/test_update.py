"""`Filesystem.update` (``tilde-mount update``) without a kernel, over real servers: the
default one (the session rebase extension: one request) and a hosted-service-like one
(``--wire current``: no extension, the mount copies the changes into a fresh session).

Each test lets another writer commit over plain HTTP, then updates the mount and checks
what it shows, what its session holds, and what a commit of it puts in the repository.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from tilde_mount.errors import FsError
from tilde_mount.fs import ROOT_INO, Filesystem, UpdateConflict

from .harness import CoreFs, Http, open_fs


@pytest.fixture(params=["extension", "copy"])
def target(request: pytest.FixtureRequest) -> tuple[Any, Any, str]:
    """(server, repository, how the server rebases): ``copy`` is a --wire current server."""
    name = "server" if request.param == "extension" else "redirecting_server"
    srv = request.getfixturevalue(name)
    return srv, srv.new_repo(), request.param


async def _read(fs: Filesystem, path: str) -> bytes:
    return await CoreFs(fs).read_file(path)


async def _exists(fs: Filesystem, path: str) -> bool:
    try:
        await CoreFs(fs)._walk(path)
        return True
    except FsError:
        return False


def test_update_without_changes_shows_the_latest_commit(target: Any, tmp_path: Path) -> None:
    srv, ref, _ = target
    http = Http(srv, ref)
    http.put("base.txt", b"base\n")

    async def main() -> None:
        async with open_fs(srv, ref, tmp_path) as fs:
            assert not await _exists(fs, "theirs.txt")
            theirs = http.put("theirs.txt", b"theirs\n", "another writer")
            old_sid = fs.session_id
            outcome = await fs.update()
            assert (outcome.status, outcome.commit_id) == ("updated", theirs)
            assert fs.session_id != old_sid and fs.base_commit == theirs
            assert await _read(fs, "theirs.txt") == b"theirs\n"
            again = await fs.update()
            assert again.status == "up_to_date"

    trio.run(main)


def test_update_keeps_changes_and_commits_them_on_top(target: Any, tmp_path: Path) -> None:
    srv, ref, how = target
    http = Http(srv, ref)
    http.put("base.txt", b"base\n")
    http.put("gone.txt", b"to delete\n")
    big = os.urandom(3 * 1024 * 1024 + 7)

    async def main() -> None:
        async with open_fs(srv, ref, tmp_path) as fs:
            core = CoreFs(fs)
            await core.write_file("mine.txt", b"mine\n")
            await core.write_file("big.bin", big)
            await core.mkdir("empty")
            await core.unlink("gone.txt")
            pino = (await fs.getattr(ROOT_INO)).ino
            await fs.symlink(pino, b"link", b"mine.txt")
            attr = await core._walk("mine.txt")
            await fs.setattr(attr.ino, mode=stat.S_IFREG | 0o750)
            theirs = http.put("theirs.txt", b"theirs\n", "another writer")
            outcome = await fs.update()
            assert (outcome.status, outcome.commit_id) == ("rebased", theirs)
            assert await _read(fs, "theirs.txt") == b"theirs\n"
            assert await _read(fs, "mine.txt") == b"mine\n"
            assert await _read(fs, "big.bin") == big
            assert not await _exists(fs, "gone.txt")
            assert await fs.readlink((await core._walk("link")).ino) == b"mine.txt"
            assert (await core._walk("mine.txt")).mode & 0o7777 == 0o750
            sid = fs.session_id
            assert sid is not None
            staged = http.objects(session_id=sid)
            assert staged["mine.txt"] == b"mine\n" and "theirs.txt" in staged
            done = await fs.commit("mine on top")
            assert done.status == "committed"
            return done.commit_id

    commit_id = trio.run(main)
    tree = Http(srv, ref).objects(ref=commit_id)
    assert set(tree) == {"base.txt", "theirs.txt", "mine.txt", "big.bin", "empty/", "link"}, how
    assert tree["big.bin"] == big and tree["link"] == b"mine.txt"


def test_update_refuses_a_conflict_and_changes_nothing(target: Any, tmp_path: Path) -> None:
    srv, ref, _ = target
    http = Http(srv, ref)
    base = http.put("shared.txt", b"base\n")

    async def main() -> None:
        async with open_fs(srv, ref, tmp_path) as fs:
            core = CoreFs(fs)
            await core.write_file("shared.txt", b"mine\n")
            await core.write_file("other.txt", b"other\n")
            theirs = http.put("shared.txt", b"theirs\n", "another writer")
            sid = fs.session_id
            with pytest.raises(UpdateConflict) as info:
                await fs.update()
            assert info.value.paths == ["shared.txt"]
            assert "shared.txt" in str(info.value)
            # nothing moved: same session, same base, the mount shows its own changes
            assert fs.session_id == sid and fs.base_commit == base
            assert await _read(fs, "shared.txt") == b"mine\n"
            assert sid is not None
            assert Http(srv, ref).objects(session_id=sid)["other.txt"] == b"other\n"
            # the same bytes on both sides is the same change: no conflict then
            await core.write_file("shared.txt", b"theirs\n")
            outcome = await fs.update()
            assert (outcome.status, outcome.commit_id) == ("rebased", theirs)
            assert await _read(fs, "other.txt") == b"other\n"

    trio.run(main)


def test_update_of_a_read_only_mount_reads_the_latest_commit(server: Any, repo_ref: Any,
                                                            tmp_path: Path) -> None:
    http = Http(server, repo_ref)
    first = http.put("v.txt", b"one\n")

    async def main() -> None:
        async with open_fs(server, repo_ref, tmp_path / "latest", read_only=True) as fs:
            second = http.put("v.txt", b"two\n")
            assert await _read(fs, "v.txt") == b"one\n"
            outcome = await fs.update()
            assert (outcome.status, outcome.commit_id) == ("updated", second)
            assert await _read(fs, "v.txt") == b"two\n"
        async with open_fs(server, repo_ref, tmp_path / "pinned", ref=first) as fs:
            with pytest.raises(Exception, match="fixed commit"):
                await fs.update()

    trio.run(main)
