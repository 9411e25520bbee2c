"""`Operations`: the thin pyfuse3 adapter over `Filesystem`.

    ops = Operations(fs)            # fs: tilde_mount.fs.Filesystem
    pyfuse3.init(ops, mountpoint, options)

Each handler converts arguments, awaits one `Filesystem` method and converts the result.
Subtleties:
1. `FsError` becomes `FUSEError(errno)`. A `tilde` client error that escaped the
   filesystem is mapped by the one errno table and logged as a warning. Any other
   exception is a bug: logged with its traceback and answered with EIO, so it never
   reaches pyfuse3's trio loop (whose default is to crash the mount).
2. Entry and attribute timeouts are the metadata TTL: the kernel may answer ``stat`` from
   its own cache for that long, as our cache would.
3. Hard links answer EPERM; xattrs answer ENOTSUP (documented). FIFOs, sockets and
   device files are objects whose metadata gives their type; the mount is ``nodev``.
4. What a request creates is owned by the caller the kernel names (``ctx.uid``/``gid``);
   with ``default_permissions`` the kernel checks every access against the stored owner
   and mode (docs/semantics.md).
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from tilde.exceptions import TildeError

from .errors import FsError, errno_for
from .fs import Attr, Filesystem

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def guarded(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Subtlety 1: every error leaves as FUSEError; surprises are logged, never raised."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except FsError as e:
            raise pyfuse3.FUSEError(e.errno) from None
        except TildeError as e:
            log.warning("%s: %s", fn.__name__, e)
            raise pyfuse3.FUSEError(errno_for(e)) from None
        except Exception:
            log.exception("unexpected error in %s", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


class Operations(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, fs: Filesystem) -> None:
        super().__init__()
        self.fs = fs
        self.timeout = fs.config.attr_ttl

    def _entry(self, a: Attr) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = a.ino
        e.generation = a.generation
        e.entry_timeout = self.timeout
        e.attr_timeout = self.timeout
        e.st_mode = a.mode
        e.st_nlink = a.nlink
        e.st_uid = a.uid
        e.st_gid = a.gid
        e.st_rdev = a.rdev
        e.st_size = a.size
        e.st_blksize = 128 * 1024
        e.st_blocks = a.blocks
        e.st_atime_ns = a.atime_ns
        e.st_mtime_ns = a.mtime_ns
        e.st_ctime_ns = a.ctime_ns
        return e

    @guarded
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
        return self._entry(await self.fs.lookup(parent_inode, name))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        try:
            self.fs.forget(list(inode_list))
        except Exception:  # forget has no reply; never let it kill the loop
            log.exception("unexpected error in forget")

    @guarded
    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        return self._entry(await self.fs.getattr(inode))

    @guarded
    async def setattr(self, inode: int, attr: Any, fields: Any, fh: int | None,
                      ctx: Any) -> Any:
        return self._entry(await self.fs.setattr(
            inode,
            size=attr.st_size if fields.update_size else None,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            fh=fh))

    @guarded
    async def opendir(self, inode: int, ctx: Any) -> int:
        return await self.fs.opendir(inode)

    @guarded
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        def reply(name: bytes, attr: Attr, next_id: int) -> bool:
            return bool(pyfuse3.readdir_reply(token, name, self._entry(attr), next_id))

        await self.fs.readdir(fh, start_id, reply)

    @guarded
    async def releasedir(self, fh: int) -> None:
        await self.fs.releasedir(fh)

    @guarded
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None

    @guarded
    async def open(self, inode: int, flags: int, ctx: Any) -> Any:
        r = await self.fs.open(inode, flags)
        return pyfuse3.FileInfo(fh=r.fh, keep_cache=r.keep_cache, direct_io=r.direct_io)

    @guarded
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: Any) -> Any:
        r, attr = await self.fs.create(parent_inode, name, mode, flags,
                                       uid=ctx.uid, gid=ctx.gid)
        info = pyfuse3.FileInfo(fh=r.fh, keep_cache=r.keep_cache, direct_io=r.direct_io)
        return info, self._entry(attr)

    @guarded
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self.fs.read(fh, off, size)

    @guarded
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.fs.write(fh, off, bytes(buf))

    @guarded
    async def flush(self, fh: int) -> None:
        await self.fs.flush(fh)

    @guarded
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.fs.fsync(fh, datasync)

    @guarded
    async def release(self, fh: int) -> None:
        await self.fs.release(fh)

    @guarded
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> Any:
        return self._entry(await self.fs.mkdir(parent_inode, name, mode, uid=ctx.uid,
                                               gid=ctx.gid))

    @guarded
    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.fs.unlink(parent_inode, name)

    @guarded
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.fs.rmdir(parent_inode, name)

    @guarded
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: Any) -> None:
        await self.fs.rename(parent_inode_old, name_old, parent_inode_new, name_new, flags)

    @guarded
    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: Any) -> Any:
        return self._entry(await self.fs.symlink(parent_inode, name, target, uid=ctx.uid,
                                                 gid=ctx.gid))

    @guarded
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: Any) -> Any:
        return self._entry(await self.fs.mknod(parent_inode, name, mode, rdev, uid=ctx.uid,
                                               gid=ctx.gid))

    @guarded
    async def readlink(self, inode: int, ctx: Any) -> bytes:
        return await self.fs.readlink(inode)

    @guarded
    async def statfs(self, ctx: Any) -> Any:
        s = await self.fs.statfs()
        v = pyfuse3.StatvfsData()
        v.f_bsize, v.f_frsize = s.block_size, s.fragment_size
        v.f_blocks, v.f_bfree, v.f_bavail = s.blocks, s.blocks_free, s.blocks_available
        v.f_files, v.f_ffree, v.f_favail = s.files, s.files_free, s.files_available
        v.f_namemax = s.name_max
        return v

    @guarded
    async def access(self, inode: int, mode: int, ctx: Any) -> bool:
        await self.fs.getattr(inode)
        return True

    # -- not supported (subtlety 3) --------------------------------------------------
    @guarded
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any) -> Any:
        raise FsError(errno.EPERM)




    @guarded
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        raise FsError(errno.ENOTSUP)

    @guarded
    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        raise FsError(errno.ENOTSUP)

    @guarded
    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        return []

    @guarded
    async def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        raise FsError(errno.ENOTSUP)
