"""Model test: random operation sequences, each result and errno compared with a local
directory (docs/reliability.md, "model").

Hypothesis' stateful testing drives create / write at an offset / truncate / rename (of
files and directories, over existing targets) / unlink / mkdir / rmdir / fsync / read /
listdir / stat, file descriptors kept open across other operations (writes, reads and
ftruncate through them, also after their file was renamed or unlinked), and the session
operations commit / rollback / remount, against:

- the kernel-free `Filesystem` (fast: a few hundred sequences in CI);
- a real mount made by ``tilde-mount`` (shorter: every mount and commit is a process).

The model is the machine's own filesystem, in a temporary directory, with what
docs/semantics.md promises for the session operations (modelcheck.Checker). The examples
are derandomized, so CI runs the same sequences every time; ``TILDE_RELIABILITY=full``
runs many more. ``MODEL_EXAMPLES=N`` sets the kernel-free run's number of sequences;
``MODEL_SHRINK=1`` lets Hypothesis shrink a failing sequence (slow; by default a failure
reports the whole sequence as it ran).
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio
import trio.from_thread
import trio.lowlevel
import trio.to_thread
from fusehelpers import Api, Tool
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from modelcheck import Checker, LocalSide, new_repo

from figures import record, scale
from mount_core.harness import CoreFs, open_fs
from tilde import exceptions as exc
from tilde_mount.errors import FsError
from tilde_mount.fs import Filesystem

# ------------------------------------------------------------------ strategies
NAMES = ("a", "b", "c")
PATTERN = bytes(range(251)) * 1200  # ~300 KB of a pattern whose slices differ by offset

paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
dirs = st.one_of(st.just(""), paths)
data = st.one_of(
    st.binary(max_size=48),
    st.builds(lambda n, k: PATTERN[k:k + n], st.integers(1, 200_000), st.integers(0, 250)))
offsets = st.one_of(st.integers(0, 64), st.integers(0, 200_000))
OPEN_FLAGS = (os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDWR | os.O_CREAT,
              os.O_WRONLY | os.O_CREAT | os.O_TRUNC, os.O_RDWR | os.O_CREAT | os.O_EXCL,
              os.O_RDWR | os.O_TRUNC)
MAX_HANDLES = 3
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
SHRINK = (*NO_SHRINK, Phase.shrink)
EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "0"))


class FsMachine(RuleBasedStateMachine):
    """The operations; ``target`` (set by each test) makes a fresh filesystem under test."""

    make: Callable[[], tuple[Checker, Callable[[], None]]]
    #: in how many of 10 draws the remount rule remounts (else it syncs): a real mount's
    #: remount is two processes and a FUSE handshake, so that run remounts less often
    remount_share = 10

    def __init__(self) -> None:
        super().__init__()
        self.c, self._teardown = type(self).make()
        self.c.stats["examples"] += 1

    # -- namespace and data
    @rule(path=paths, data=data)
    def create(self, path: str, data: bytes) -> None:
        with self.c.step():
            self.c.op("create", path, data)

    @rule(path=paths, off=offsets, data=data)
    def pwrite(self, path: str, off: int, data: bytes) -> None:
        with self.c.step():
            self.c.op("pwrite", path, off, data)

    @rule(path=paths, size=offsets)
    def truncate(self, path: str, size: int) -> None:
        with self.c.step():
            self.c.op("truncate", path, size)

    @rule(src=paths, dst=paths)
    def rename(self, src: str, dst: str) -> None:
        with self.c.step():
            self.c.op("rename", src, dst)

    @rule(path=paths)
    def unlink(self, path: str) -> None:
        with self.c.step():
            self.c.op("unlink", path)

    @rule(path=paths)
    def mkdir(self, path: str) -> None:
        with self.c.step():
            self.c.op("mkdir", path)

    @rule(path=paths)
    def rmdir(self, path: str) -> None:
        with self.c.step():
            self.c.op("rmdir", path)

    @rule(path=paths)
    def read(self, path: str) -> None:
        with self.c.step():
            self.c.op("read", path)

    @rule(path=paths, off=offsets, size=st.integers(0, 70_000))
    def read_range(self, path: str, off: int, size: int) -> None:
        with self.c.step():
            self.c.op("read_range", path, off, size)

    @rule(path=dirs)
    def listdir(self, path: str) -> None:
        with self.c.step():
            self.c.op("listdir", path)

    @rule(path=dirs)
    def stat(self, path: str) -> None:
        with self.c.step():
            self.c.op("stat", path)

    @rule(path=paths)
    def fsync(self, path: str) -> None:
        with self.c.step():
            self.c.op("fsync", path)

    # -- open descriptors
    @precondition(lambda self: len(self.c.handles) < MAX_HANDLES)
    @rule(path=paths, flags=st.sampled_from(OPEN_FLAGS))
    def open(self, path: str, flags: int) -> None:
        with self.c.step():
            self.c.open(path, flags)

    @precondition(lambda self: self.c.handles)
    @rule(i=st.integers(0, MAX_HANDLES - 1), off=offsets, data=data)
    def hwrite(self, i: int, off: int, data: bytes) -> None:
        with self.c.step():
            self.c.hop("hwrite", i % len(self.c.handles), off, data)

    @precondition(lambda self: self.c.handles)
    @rule(i=st.integers(0, MAX_HANDLES - 1), off=offsets, size=st.integers(0, 70_000))
    def hread(self, i: int, off: int, size: int) -> None:
        with self.c.step():
            self.c.hop("hread", i % len(self.c.handles), off, size)

    @precondition(lambda self: self.c.handles)
    @rule(i=st.integers(0, MAX_HANDLES - 1), size=offsets)
    def htruncate(self, i: int, size: int) -> None:
        with self.c.step():
            self.c.hop("htruncate", i % len(self.c.handles), size)

    @precondition(lambda self: self.c.handles)
    @rule(i=st.integers(0, MAX_HANDLES - 1))
    def hfsync(self, i: int) -> None:
        with self.c.step():
            self.c.hop("hfsync", i % len(self.c.handles))

    @precondition(lambda self: self.c.handles)
    @rule(i=st.integers(0, MAX_HANDLES - 1))
    def close(self, i: int) -> None:
        with self.c.step():
            self.c.close(i % len(self.c.handles))

    # -- the session
    @rule()
    def sync(self) -> None:
        with self.c.step():
            self.c.sync()

    @rule()
    def commit(self) -> None:
        with self.c.step():
            self.c.commit()

    @rule()
    def rollback(self) -> None:
        with self.c.step():
            self.c.rollback()

    @rule(keep_session=st.booleans(), roll=st.integers(0, 9))
    def remount(self, keep_session: bool, roll: int) -> None:
        with self.c.step():
            if roll < self.remount_share:
                self.c.remount(keep_session)
            else:
                self.c.sync()

    @invariant()
    def counted(self) -> None:
        self.c.stats["invariant_checks"] += 1

    def teardown(self) -> None:
        try:
            # after a failed step, its own error is the report (not this one)
            if hasattr(self, "c") and not self.c.in_step:
                self.c.check_tree("the last step")
                self.c.close_all()
                self.c.commit()
        finally:
            if hasattr(self, "_teardown"):
                self._teardown()


def run_machine(make: Callable[[], tuple[Checker, Callable[[], None]]], *, examples: int,
                steps: int, remount_share: int = 10) -> None:
    machine = type("Machine", (FsMachine,), {"make": staticmethod(make),
                                             "remount_share": remount_share})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=True,
        database=None, print_blob=True,
        # no shrinking by default: a failure reports the whole sequence (modelcheck's
        # history); shrinking a real-mount sequence takes many minutes
        phases=SHRINK if os.environ.get("MODEL_SHRINK") else NO_SHRINK,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large]))


# ------------------------------------------------------------------ kernel-free target
class Portal:
    """Calls into the trio loop from the thread Hypothesis runs in."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.token = trio.lowlevel.current_trio_token()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return trio.from_thread.run(fn, *args, trio_token=self.token)


class CoreSide:
    """The `Side` operations on a `Filesystem`, called as the kernel calls it.

    Where the kernel answers before the filesystem is asked, this does the same (each
    case says so): a descriptor not open for reading, O_EXCL on a name it looked up,
    the order of rename's checks, directories opened read-only.
    """

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.cfs: CoreFs | None = None
        self._ids = itertools.count(1)
        self._open: dict[int, tuple[int | None, int, int, bool]] = {}  # id -> fh, ino, flags, dir

    @property
    def fs(self) -> Filesystem:
        assert self.cfs is not None
        return self.cfs.fs

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def call() -> Any:
            try:
                return await fn(*args)
            except FsError as e:
                raise OSError(e.errno, os.strerror(e.errno)) from None
        return self.portal.run(call)

    @property
    def c(self) -> CoreFs:
        assert self.cfs is not None
        return self.cfs

    def create(self, path: str, data: bytes) -> None:
        self._run(self.c.write_file, path, data)

    def pwrite(self, path: str, off: int, data: bytes) -> None:
        self._run(self.c.pwrite, path, off, data)

    def truncate(self, path: str, size: int) -> None:
        self._run(self.c.truncate, path, size)

    def rename(self, src: str, dst: str) -> None:
        async def go() -> None:
            # the kernel's order (do_renameat2): both parents, the source, then
            # "source is an ancestor of the target" (EINVAL) and the reverse (ENOTEMPTY),
            # and a rename onto itself succeeds without asking the filesystem
            for path in (src, dst):  # each parent must be a directory (path walk)
                parent = await self.c._walk(path.rpartition("/")[0])
                if not stat.S_ISDIR(parent.mode):
                    raise OSError(errno.ENOTDIR, "a parent is not a directory")
            await self.c._walk(src)
            if dst.startswith(src + "/"):
                raise OSError(errno.EINVAL, "source is an ancestor of the target")
            if src.startswith(dst + "/"):
                raise OSError(errno.ENOTEMPTY, "target is an ancestor of the source")
            if src != dst:
                await self.c.rename(src, dst)
        self._run(go)

    def unlink(self, path: str) -> None:
        self._run(self.c.unlink, path)

    def mkdir(self, path: str) -> None:
        self._run(self.c.mkdir, path)

    def rmdir(self, path: str) -> None:
        self._run(self.c.rmdir, path)

    def read(self, path: str) -> bytes:
        return self.read_range(path, 0, 1 << 40)

    def read_range(self, path: str, off: int, size: int) -> bytes:
        async def go() -> bytes:
            if stat.S_ISDIR((await self.c.stat(path)).mode):
                # open(O_RDONLY) of a directory succeeds, read() is EISDIR (the VFS)
                raise OSError(errno.EISDIR, "a directory")
            result: bytes = await self.c.read_range(path, off, size)
            return result
        result: bytes = self._run(go)
        return result

    def listdir(self, path: str) -> list[str]:
        return sorted(self._run(self.c.listdir, path))

    def stat(self, path: str) -> tuple[str, int]:
        attr = self._run(self.c.stat, path)
        return ("dir", 0) if stat.S_ISDIR(attr.mode) else ("file", attr.size)

    def fsync(self, path: str) -> None:
        h = self.open(path, os.O_RDONLY)
        try:
            self.hfsync(h)
        finally:
            self.close(h)

    def open(self, path: str, flags: int) -> int:
        async def go() -> tuple[int | None, int, bool]:
            pino, name = await self.c._parent(path)
            try:
                attr = await self.fs.lookup(pino, name)
            except FsError as e:
                if e.errno != errno.ENOENT or not flags & os.O_CREAT:
                    raise
                res, attr = await self.fs.create(pino, name, stat.S_IFREG | 0o644, flags)
                return res.fh, attr.ino, False
            if flags & os.O_CREAT and flags & os.O_EXCL:
                raise FsError(errno.EEXIST)  # the kernel: a positive dentry with O_EXCL
            if stat.S_ISDIR(attr.mode):
                if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_CREAT:
                    raise FsError(errno.EISDIR)  # the kernel's may_open / do_open
                return await self.fs.opendir(attr.ino), attr.ino, True
            return (await self.fs.open(attr.ino, flags)).fh, attr.ino, False
        fh, ino, is_dir = self._run(go)
        h = next(self._ids)
        self._open[h] = (fh, ino, flags, is_dir)
        return h

    def _h(self, h: int) -> tuple[int, int, int, bool]:
        fh, ino, flags, is_dir = self._open[h]
        assert fh is not None
        return fh, ino, flags, is_dir

    def hwrite(self, h: int, off: int, data: bytes) -> None:
        fh, _, flags, is_dir = self._h(h)
        if is_dir or flags & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "not open for writing")  # the kernel (FMODE_WRITE)

        async def go() -> None:
            for i in range(0, max(len(data), 1), 128 * 1024):  # the kernel's write size
                if data:
                    await self.fs.write(fh, off + i, data[i:i + 128 * 1024])
        self._run(go)

    def hread(self, h: int, off: int, size: int) -> bytes:
        fh, _, flags, is_dir = self._h(h)
        if is_dir:
            raise OSError(errno.EISDIR, "a directory")  # the VFS's generic_read_dir
        if flags & os.O_ACCMODE == os.O_WRONLY:
            raise OSError(errno.EBADF, "not open for reading")  # the kernel (FMODE_READ)

        async def go() -> bytes:
            out = bytearray()
            while len(out) < size:
                piece = await self.fs.read(fh, off + len(out), min(128 * 1024, size - len(out)))
                if not piece:
                    break
                out += piece
            return bytes(out)
        result: bytes = self._run(go)
        return result

    def htruncate(self, h: int, size: int) -> None:
        fh, ino, flags, is_dir = self._h(h)
        if is_dir or flags & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EINVAL, "not open for writing")  # the kernel's ftruncate
        self._run(functools.partial(self.fs.setattr, ino, size=size, fh=fh))

    def hfsync(self, h: int) -> None:
        fh, _, _, is_dir = self._h(h)
        if not is_dir:
            self._run(self.fs.fsync, fh, False)

    def close(self, h: int) -> None:
        fh, _, _, is_dir = self._h(h)
        del self._open[h]

        async def go() -> None:
            if is_dir:
                await self.fs.releasedir(fh)
            else:
                await self.fs.flush(fh)
                await self.fs.release(fh)
        self._run(go)


class CoreSession:
    """Commit / rollback / remount of a `Filesystem` served in the test's trio loop."""

    def __init__(self, portal: Portal, side: CoreSide, server: Any, repo: Any,
                 tmp: Path) -> None:
        self.portal, self.side, self.server, self.repo, self.tmp = (
            portal, side, server, repo, tmp)
        self.api = Api(server, repo)
        self._stop: trio.Event | None = None
        self._stopped: trio.Event | None = None
        self._dirs = 0

    def start(self, session_id: str | None = None) -> None:
        """Serve ``session_id`` from the same cache directory, or a fresh session from a
        new one: a plain mount on the cache directory of a mount that stopped without
        ending its session resumes that session (semantics.md, Durability: "a plain
        mount of the same repository ... resumes the dead mount's session"), which the
        fresh-remount rule does not mean to test."""
        if session_id is None:
            self._dirs += 1
        base = self.tmp / f"mount{self._dirs}"

        async def host(task_status: trio.TaskStatus[Filesystem]) -> None:
            stop, stopped = trio.Event(), trio.Event()
            self._stop, self._stopped = stop, stopped
            try:
                async with open_fs(self.server, self.repo, base,
                                   session_id=session_id) as fs:
                    task_status.started(fs)
                    await stop.wait()
            finally:
                stopped.set()

        async def go() -> Filesystem:
            fs: Filesystem = await self.portal.nursery.start(host)
            return fs
        self.side.cfs = CoreFs(self.portal.run(go))

    def stop(self) -> None:
        async def go() -> None:
            assert self._stop is not None and self._stopped is not None
            self._stop.set()
            await self._stopped.wait()
        self.portal.run(go)
        self.side.cfs = None

    def commit(self) -> dict[str, bytes]:
        async def go() -> None:
            try:
                outcome = await self.side.fs.commit("model", None)
                assert outcome.status == "committed", outcome
            except exc.BadRequestError as e:  # an empty session: nothing to commit
                assert e.code == "no_changes", e
        self.portal.run(go)
        return committed_tree(self.api)

    def rollback(self) -> None:
        self.portal.run(self.side.fs.rollback)

    def sync(self) -> None:
        self.portal.run(self.side.fs.sync)

    def remount(self, keep_session: bool) -> None:
        sid = self.side.fs.session_id
        if keep_session:
            self.sync()  # what is uploaded survives the daemon (semantics.md, Lifetimes)
        self.stop()
        self.start(sid if keep_session else None)


def committed_tree(api: Api) -> dict[str, bytes]:
    return api.tree() if api.log() else {}


def test_model_kernel_free(server: Any, tmp_path: Path) -> None:
    """The state machine against `Filesystem` (no kernel), a fresh repository per example."""
    stats: Counter[str] = Counter()
    n = itertools.count()
    examples = EXAMPLES or scale(36, 1000)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            portal = Portal(nursery)

            def make() -> tuple[Checker, Callable[[], None]]:
                base = tmp_path / f"ex{next(n)}"
                (base / "local").mkdir(parents=True)
                side = CoreSide(portal)
                session = CoreSession(portal, side, server, new_repo(server), base / "core")
                session.start()
                checker = Checker(LocalSide(base / "local"), side, session, stats)

                def teardown() -> None:
                    if side.cfs is not None:
                        session.stop()
                return checker, teardown

            await trio.to_thread.run_sync(lambda: run_machine(
                make, examples=examples, steps=scale(40, 80)))

    old = os.umask(0o022)
    try:
        trio.run(main)
    finally:
        os.umask(old)
    assert stats["examples"] >= examples // 2 and stats["mismatches"] == 0, stats
    record("model", examples=stats["examples"], steps=stats["steps"],
           errno_compared=stats["errno_compared"], mismatches=stats["mismatches"])


# ------------------------------------------------------------------ a real mount
class MountSession:
    """Commit / rollback / remount of a real mount, with the ``tilde-mount`` command."""

    def __init__(self, tool: Tool, repo: Any, mnt: Path, api: Api) -> None:
        self.tool, self.repo, self.mnt, self.api = tool, repo, mnt, api

    def start(self, session_id: str | None = None) -> None:
        # keep: unmount leaves the session open; the model decides what comes back
        self.tool.mount(self.repo.path, self.mnt, "--on-unmount", "keep",
                        *(["--session", session_id] if session_id else []))

    def stop(self) -> str:
        r = self.tool.tm("unmount", str(self.mnt))
        assert not os.path.ismount(self.mnt), r.stderr
        return r.stdout.strip()

    def commit(self) -> dict[str, bytes]:
        self.tool.tm("commit", str(self.mnt), "-m", "model")
        return committed_tree(self.api)

    def rollback(self) -> None:
        self.tool.tm("rollback", str(self.mnt))

    def sync(self) -> None:
        os.sync()

    def remount(self, keep_session: bool) -> None:
        sid = self.stop()  # unmount uploads everything first (semantics.md, Lifetimes)
        assert sid, "unmount with --on-unmount keep prints the session id"
        self.start(sid if keep_session else None)


@contextmanager
def _umask() -> Iterator[None]:
    old = os.umask(0o022)  # the kernel applies the caller's umask to create/mkdir
    try:
        yield
    finally:
        os.umask(old)


def test_model_real_mount(server: Any, tool: Tool, tmp_path: Path) -> None:
    """The same machine through the kernel and a ``tilde-mount`` daemon: fewer, shorter
    sequences (a mount, a commit and a remount are processes). One repository and mount
    serve every example: each starts with a rollback, from the previous one's commit."""
    stats: Counter[str] = Counter()
    n = itertools.count()
    repo = new_repo(server)
    session = MountSession(tool, repo, tmp_path / "mnt", Api(server, repo))

    def make() -> tuple[Checker, Callable[[], None]]:
        local = tmp_path / f"ex{next(n)}"
        local.mkdir()
        if os.path.ismount(session.mnt):
            session.rollback()  # the last example's empty directories go
        else:
            session.start()
        checker = Checker(LocalSide(local), LocalSide(session.mnt), session, stats)
        checker.begin(committed_tree(session.api))
        return checker, lambda: None

    with _umask():
        run_machine(make, examples=scale(5, 100), steps=scale(40, 60), remount_share=3)
    session.stop()
    assert stats["examples"] >= 5 and stats["mismatches"] == 0, stats
    record("model", examples=stats["examples"], steps=stats["steps"],
           errno_compared=stats["errno_compared"], mismatches=stats["mismatches"],
           real_mount_steps=stats["steps"])
