"""POSIX behaviour checks written against an abstract "filesystem under test".

The same checks can run against `Filesystem` directly (``CoreFs`` in harness.py, no
kernel) and through a real mount (`OsFs`, plain ``os`` calls). Every operation is
async; failures are ``OSError`` with ``errno`` set, whatever the harness.

Both harnesses run every check: test_posix.py (`CoreFs`, and `OsFs` on a local disk to
prove the checks themselves) and tests/fuse/test_posix_mount.py (`OsFs` on a real mount,
loading this file by its path). A new check goes into ``POSIX_CHECKS``; a test there fails
if a ``check_*`` function is left out.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any, Protocol

import pytest
import trio


class FsUnderTest(Protocol):
    async def write_file(self, path: str, data: bytes) -> None: ...
    async def read_file(self, path: str) -> bytes: ...
    async def read_range(self, path: str, offset: int, size: int) -> bytes: ...
    async def pwrite(self, path: str, offset: int, data: bytes) -> None: ...
    async def append(self, path: str, data: bytes) -> None: ...
    async def truncate(self, path: str, size: int) -> None: ...
    async def unlink(self, path: str) -> None: ...
    async def mkdir(self, path: str) -> None: ...
    async def rmdir(self, path: str) -> None: ...
    async def rename(self, src: str, dst: str) -> None: ...
    async def listdir(self, path: str) -> list[str]: ...
    async def size(self, path: str) -> int: ...
    async def is_dir(self, path: str) -> bool: ...
    async def exists(self, path: str) -> bool: ...
    async def chmod(self, path: str, mode: int) -> None: ...
    async def mode(self, path: str) -> int: ...
    # handles (file descriptors in the FUSE harness)
    async def open(self, path: str, flags: int) -> int: ...
    async def hwrite(self, handle: int, offset: int, data: bytes) -> None: ...
    async def hread(self, handle: int, offset: int, size: int) -> bytes: ...
    async def close(self, handle: int) -> None: ...


async def expect_errno(code: int, coro: object) -> None:
    with pytest.raises(OSError) as info:
        await coro  # type: ignore[misc]
    assert info.value.errno == code, f"expected {errno.errorcode[code]}, got {info.value!r}"


async def check_create_read(fs: FsUnderTest) -> None:
    await fs.write_file("hello.txt", b"hello world\n")
    assert await fs.read_file("hello.txt") == b"hello world\n"
    assert await fs.size("hello.txt") == 12
    assert not await fs.is_dir("hello.txt")
    assert "hello.txt" in await fs.listdir("")


async def check_overwrite(fs: FsUnderTest) -> None:
    await fs.write_file("o.txt", b"a much longer first version")
    await fs.write_file("o.txt", b"short")
    assert await fs.read_file("o.txt") == b"short"
    assert await fs.size("o.txt") == 5


async def check_append(fs: FsUnderTest) -> None:
    await fs.write_file("log.txt", b"one\n")
    await fs.append("log.txt", b"two\n")
    await fs.append("log.txt", b"three\n")
    assert await fs.read_file("log.txt") == b"one\ntwo\nthree\n"


async def check_random_write(fs: FsUnderTest) -> None:
    data = bytes(range(256)) * 1024  # 256 KiB
    await fs.write_file("r.bin", data)
    await fs.pwrite("r.bin", 1000, b"XXXX")
    await fs.pwrite("r.bin", len(data) + 10, b"tail")  # past the end: a hole of zeros
    expected = bytearray(data)
    expected[1000:1004] = b"XXXX"
    expected += b"\0" * 10 + b"tail"
    assert await fs.read_file("r.bin") == bytes(expected)
    assert await fs.read_range("r.bin", 998, 8) == bytes(expected[998:1006])


async def check_truncate(fs: FsUnderTest) -> None:
    await fs.write_file("t.txt", b"0123456789")
    await fs.truncate("t.txt", 4)
    assert await fs.read_file("t.txt") == b"0123"
    await fs.truncate("t.txt", 8)
    assert await fs.read_file("t.txt") == b"0123\0\0\0\0"
    await fs.truncate("t.txt", 0)
    assert await fs.read_file("t.txt") == b""


async def check_unlink(fs: FsUnderTest) -> None:
    await fs.write_file("gone.txt", b"x")
    await fs.unlink("gone.txt")
    assert not await fs.exists("gone.txt")
    assert "gone.txt" not in await fs.listdir("")
    await expect_errno(errno.ENOENT, fs.unlink("gone.txt"))
    await expect_errno(errno.ENOENT, fs.read_file("never-existed"))


async def check_mkdir_rmdir(fs: FsUnderTest) -> None:
    await fs.mkdir("d")
    assert await fs.is_dir("d")
    assert await fs.listdir("d") == []
    await expect_errno(errno.EEXIST, fs.mkdir("d"))
    await fs.mkdir("d/sub")
    await fs.write_file("d/sub/f.txt", b"f")
    await expect_errno(errno.ENOTEMPTY, fs.rmdir("d"))
    await expect_errno(errno.ENOTEMPTY, fs.rmdir("d/sub"))
    await fs.unlink("d/sub/f.txt")
    assert await fs.is_dir("d/sub"), "a directory stays after its last file is removed"
    await fs.rmdir("d/sub")
    await fs.rmdir("d")
    assert not await fs.exists("d")
    await expect_errno(errno.ENOENT, fs.rmdir("d"))


async def check_rename_file(fs: FsUnderTest) -> None:
    await fs.write_file("a.txt", b"content of a")
    await fs.rename("a.txt", "b.txt")
    assert not await fs.exists("a.txt")
    assert await fs.read_file("b.txt") == b"content of a"
    await fs.write_file("c.txt", b"c")
    await fs.rename("b.txt", "c.txt")  # replaces
    assert await fs.read_file("c.txt") == b"content of a"
    names = await fs.listdir("")
    assert "a.txt" not in names and "b.txt" not in names and "c.txt" in names


async def check_rename_dir(fs: FsUnderTest) -> None:
    await fs.mkdir("src")
    await fs.mkdir("src/inner")
    await fs.write_file("src/one.txt", b"1")
    await fs.write_file("src/inner/two.txt", b"2")
    await fs.mkdir("src/empty")
    await fs.rename("src", "dst")
    assert not await fs.exists("src")
    assert sorted(await fs.listdir("dst")) == ["empty", "inner", "one.txt"]
    assert await fs.read_file("dst/inner/two.txt") == b"2"
    assert await fs.read_file("dst/one.txt") == b"1"
    assert await fs.is_dir("dst/empty")


async def check_chmod_kept(fs: FsUnderTest) -> None:
    await fs.write_file("m.sh", b"#!/bin/sh\n")
    assert await fs.mode("m.sh") == 0o644
    await fs.chmod("m.sh", 0o755)
    assert await fs.mode("m.sh") == 0o755


async def check_large_file(fs: FsUnderTest) -> None:
    data = os.urandom(3 * 1024 * 1024 + 12345)
    await fs.write_file("big.bin", data)
    assert await fs.size("big.bin") == len(data)
    assert await fs.read_file("big.bin") == data
    assert await fs.read_range("big.bin", 2 * 1024 * 1024 + 7, 4096) == \
        data[2 * 1024 * 1024 + 7:2 * 1024 * 1024 + 7 + 4096]


async def check_rename_open_file(fs: FsUnderTest) -> None:
    """Write, rename while open, keep writing: the data lands under the new name."""
    h = await fs.open("open.tmp", os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
    await fs.hwrite(h, 0, b"first ")
    await fs.rename("open.tmp", "open.txt")
    await fs.hwrite(h, 6, b"second")
    await fs.close(h)
    assert not await fs.exists("open.tmp")
    assert await fs.read_file("open.txt") == b"first second"


async def check_replace_by_rename(fs: FsUnderTest) -> None:
    """The sed -i / rsync / editors pattern: write a temp file, rename it over the target."""
    await fs.write_file("conf.ini", b"old=1\n")
    for i in range(3):
        await fs.write_file(".conf.ini.tmp", f"new={i}\n".encode())
        await fs.rename(".conf.ini.tmp", "conf.ini")
        assert await fs.read_file("conf.ini") == f"new={i}\n".encode()
    assert ".conf.ini.tmp" not in await fs.listdir("")


async def check_two_handles_see_each_other(fs: FsUnderTest) -> None:
    await fs.write_file("shared.bin", b"0123456789")
    w = await fs.open("shared.bin", os.O_RDWR)
    r = await fs.open("shared.bin", os.O_RDONLY)
    await fs.hwrite(w, 2, b"ab")
    assert await fs.hread(r, 0, 10) == b"01ab456789"
    await fs.close(w)
    await fs.close(r)


async def check_unlink_open_file(fs: FsUnderTest) -> None:
    await fs.write_file("doomed.txt", b"still readable")
    h = await fs.open("doomed.txt", os.O_RDONLY)
    await fs.unlink("doomed.txt")
    assert not await fs.exists("doomed.txt")
    assert await fs.hread(h, 0, 100) == b"still readable"
    await fs.close(h)


async def check_many_files_in_a_directory(fs: FsUnderTest) -> None:
    await fs.mkdir("bulk")
    names = [f"n{i:03d}" for i in range(40)]
    for n in names:
        await fs.write_file(f"bulk/{n}", n.encode())
    assert await fs.listdir("bulk") == names
    await fs.rename("bulk", "bulk2")
    assert await fs.listdir("bulk2") == names
    assert await fs.read_file("bulk2/n017") == b"n017"
    for n in names[:20]:
        await fs.unlink(f"bulk2/{n}")
    assert await fs.listdir("bulk2") == names[20:]


POSIX_CHECKS = [
    check_create_read, check_overwrite, check_append, check_random_write, check_truncate,
    check_unlink, check_mkdir_rmdir, check_rename_file, check_rename_dir, check_chmod_kept,
    check_large_file, check_rename_open_file, check_replace_by_rename,
    check_two_handles_see_each_other, check_unlink_open_file, check_many_files_in_a_directory,
]


class OsFs:
    """`FsUnderTest` on plain ``os`` calls under ``root``: a real mount, or a local directory.

    Running the suite on a local directory proves the checks encode real POSIX behaviour;
    running it on a mount (tests/fuse) proves the mount has it. Every call runs in a
    thread, so a test's trio loop never blocks on the filesystem under test.
    """

    def __init__(self, root: os.PathLike[str] | str) -> None:
        self.root = os.fspath(root)

    def _p(self, path: str) -> str:
        return os.path.join(self.root, path) if path else self.root

    async def _t(self, fn: Any, *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args)

    async def write_file(self, path: str, data: bytes) -> None:
        await self._t(_write, self._p(path), data, "wb")

    async def read_file(self, path: str) -> bytes:
        result: bytes = await self._t(_read, self._p(path))
        return result

    async def read_range(self, path: str, offset: int, size: int) -> bytes:
        result: bytes = await self._t(_pread_path, self._p(path), offset, size)
        return result

    async def pwrite(self, path: str, offset: int, data: bytes) -> None:
        await self._t(_pwrite_path, self._p(path), offset, data)

    async def append(self, path: str, data: bytes) -> None:
        await self._t(_write, self._p(path), data, "ab")

    async def truncate(self, path: str, size: int) -> None:
        await self._t(os.truncate, self._p(path), size)

    async def unlink(self, path: str) -> None:
        await self._t(os.unlink, self._p(path))

    async def mkdir(self, path: str) -> None:
        await self._t(os.mkdir, self._p(path))

    async def rmdir(self, path: str) -> None:
        await self._t(os.rmdir, self._p(path))

    async def rename(self, src: str, dst: str) -> None:
        await self._t(os.rename, self._p(src), self._p(dst))

    async def listdir(self, path: str) -> list[str]:
        result: list[str] = await self._t(_listdir_server_order, self._p(path))
        return result

    async def size(self, path: str) -> int:
        return int((await self._t(os.stat, self._p(path))).st_size)

    async def is_dir(self, path: str) -> bool:
        return stat.S_ISDIR((await self._t(os.stat, self._p(path))).st_mode)

    async def exists(self, path: str) -> bool:
        return bool(await self._t(os.path.lexists, self._p(path)))

    async def chmod(self, path: str, mode: int) -> None:
        await self._t(os.chmod, self._p(path), mode)

    async def mode(self, path: str) -> int:
        return stat.S_IMODE((await self._t(os.stat, self._p(path))).st_mode)

    async def open(self, path: str, flags: int) -> int:
        return int(await self._t(os.open, self._p(path), flags, 0o644))

    async def hwrite(self, handle: int, offset: int, data: bytes) -> None:
        await self._t(os.pwrite, handle, data, offset)

    async def hread(self, handle: int, offset: int, size: int) -> bytes:
        result: bytes = await self._t(os.pread, handle, size, offset)
        return result

    async def close(self, handle: int) -> None:
        await self._t(os.close, handle)


def _write(path: str, data: bytes, mode: str) -> None:
    with open(path, mode) as f:
        f.write(data)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _pread_path(path: str, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def _pwrite_path(path: str, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def _listdir_server_order(path: str) -> list[str]:
    """By name, a directory sorting as its name plus "/" (the server's order)."""
    names = os.listdir(path)
    return sorted(names, key=lambda n: n + "/" if os.path.isdir(os.path.join(path, n)) else n)
