"""The model checker shared by test_model.py (kernel-free and real-mount runs).

Every operation runs twice, on a local directory (the model: the kernel's own filesystem
says what POSIX answers) and on the filesystem under test, and the two outcomes (a result
or an errno) must be equal. Session operations (commit, rollback, remount) have no local
counterpart: the model applies what docs/semantics.md promises for them (see `Checker`).

A `Side` is anything with the operations below, synchronous, raising ``OSError``:
`LocalSide` is plain ``os`` on a directory (the model, and a real mount);
test_model.py adds one over the kernel-free `Filesystem`.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import stat
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


def _root_conftest() -> Any:
    """tests/conftest.py by its path (every conftest is module "conftest")."""
    name = "tilde_tests_root_conftest"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def new_repo(server: Any) -> Any:
    """A fresh repository on the session server (one per example)."""
    return _root_conftest().new_repo(server)


Tree = dict[str, bytes | None]  # path -> content (None: a directory)


class Side(Protocol):
    def create(self, path: str, data: bytes) -> None: ...
    def pwrite(self, path: str, off: int, data: bytes) -> None: ...
    def truncate(self, path: str, size: int) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def unlink(self, path: str) -> None: ...
    def mkdir(self, path: str) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def read(self, path: str) -> bytes: ...
    def read_range(self, path: str, off: int, size: int) -> bytes: ...
    def listdir(self, path: str) -> list[str]: ...
    def stat(self, path: str) -> tuple[str, int]: ...
    def fsync(self, path: str) -> None: ...
    def open(self, path: str, flags: int) -> int: ...
    def hwrite(self, h: int, off: int, data: bytes) -> None: ...
    def hread(self, h: int, off: int, size: int) -> bytes: ...
    def htruncate(self, h: int, size: int) -> None: ...
    def hfsync(self, h: int) -> None: ...
    def close(self, h: int) -> None: ...


class Session(Protocol):
    """The session operations of the filesystem under test."""

    def commit(self) -> dict[str, bytes]:
        """Commit; returns the repository's latest committed tree (files only)."""
        ...

    def rollback(self) -> None: ...

    def sync(self) -> None: ...

    def remount(self, keep_session: bool) -> None:
        """Stop serving and serve again: on the same session (after uploading
        everything) or on a fresh one at the latest commit."""
        ...


class LocalSide:
    """Plain ``os`` calls under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def p(self, path: str) -> str:
        return os.path.join(self.root, path) if path else str(self.root)

    def create(self, path: str, data: bytes) -> None:
        fd = os.open(self.p(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, 0, data)
        finally:
            os.close(fd)

    def pwrite(self, path: str, off: int, data: bytes) -> None:
        fd = os.open(self.p(path), os.O_WRONLY)
        try:
            _write_all(fd, off, data)
        finally:
            os.close(fd)

    def truncate(self, path: str, size: int) -> None:
        os.truncate(self.p(path), size)

    def rename(self, src: str, dst: str) -> None:
        os.rename(self.p(src), self.p(dst))

    def unlink(self, path: str) -> None:
        os.unlink(self.p(path))

    def mkdir(self, path: str) -> None:
        os.mkdir(self.p(path), 0o755)

    def rmdir(self, path: str) -> None:
        os.rmdir(self.p(path))

    def read(self, path: str) -> bytes:
        fd = os.open(self.p(path), os.O_RDONLY)
        try:
            return _read_all(fd, 0, 1 << 40)
        finally:
            os.close(fd)

    def read_range(self, path: str, off: int, size: int) -> bytes:
        fd = os.open(self.p(path), os.O_RDONLY)
        try:
            return _read_all(fd, off, size)
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self.p(path)))

    def stat(self, path: str) -> tuple[str, int]:
        st = os.stat(self.p(path))
        # a directory's size means nothing portable (ext4: 4096, the mount: 0)
        return ("dir", 0) if stat.S_ISDIR(st.st_mode) else ("file", st.st_size)

    def fsync(self, path: str) -> None:
        fd = os.open(self.p(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def open(self, path: str, flags: int) -> int:
        return os.open(self.p(path), flags, 0o644)

    def hwrite(self, h: int, off: int, data: bytes) -> None:
        _write_all(h, off, data)

    def hread(self, h: int, off: int, size: int) -> bytes:
        return _read_all(h, off, size)

    def htruncate(self, h: int, size: int) -> None:
        os.ftruncate(h, size)

    def hfsync(self, h: int) -> None:
        os.fsync(h)

    def close(self, h: int) -> None:
        os.close(h)


def _write_all(fd: int, off: int, data: bytes) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], off + done)


def _read_all(fd: int, off: int, size: int) -> bytes:
    out = bytearray()
    while True:  # at least one call: a 0-byte read still checks the descriptor
        piece = os.pread(fd, min(1 << 20, size - len(out)), off + len(out))
        out += piece
        if not piece or len(out) >= size:
            return bytes(out)


def walk(side: Side, directory: str = "") -> Tree:
    """Every path under ``directory`` with its content, through ``side``'s own calls."""
    out: Tree = {}
    for name in side.listdir(directory):
        path = f"{directory}/{name}" if directory else name
        kind, _ = side.stat(path)
        if kind == "dir":
            out[path] = None
            out.update(walk(side, path))
        else:
            out[path] = side.read(path)
    return out


def files_of(tree: Tree) -> dict[str, bytes]:
    return {p: b for p, b in tree.items() if b is not None}


def persisted(tree: Tree) -> dict[str, bytes]:
    """What a commit of ``tree`` holds: its files, and ``DIR/`` -> b"" for each empty
    directory (its marker object, docs/semantics.md Namespace)."""
    out = files_of(tree)
    for path, data in tree.items():
        if data is None and not any(p.startswith(path + "/") for p in tree):
            out[path + "/"] = b""
    return out


def content_of(committed: dict[str, bytes]) -> dict[str, bytes]:
    """A committed tree without the markers of directories that have content (a marker
    written while a directory was empty stays when it gets content: harmless)."""
    return {k: v for k, v in committed.items()
            if not (k.endswith("/") and any(o != k and o.startswith(k) for o in committed))}


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes {value[:12]!r}{'...' if len(value) > 12 else ''}>"
    return repr(value)


def attempt(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result) or ("err", errno name)."""
    try:
        return "ok", fn()
    except OSError as e:
        assert e.errno is not None, f"an OSError without errno: {e!r}"
        return "err", errno.errorcode.get(e.errno, e.errno)


class Mismatch(AssertionError):
    pass


@dataclass
class Handle:
    path: str
    flags: int
    local: int
    target: int


@dataclass
class Checker:
    """Runs each operation on the model and the target and compares the outcomes.

    Session operations follow docs/semantics.md:

    - commit: the committed tree is exactly the model's files plus a marker ``DIR/`` per
      empty directory ("An empty directory persists", Namespace); markers of directories
      that have content are ignored. Open files stay open ("open file handles ... stay
      valid").
    - rollback: back to the last commit, empty directories included (Lifetimes: "discards
      the session ... goes on over a fresh session at the latest commit"). Files are
      closed first: a file open across a rollback shows the committed content through its
      descriptor (Limits: "Files open across a rollback"), which no local filesystem does.
    - remount on a fresh session: the last commit, as rollback. Remount on the same session
      (after a sync, which writes the markers): the model's tree, empty directories
      included.
    """

    local: LocalSide
    target: Side
    session: Session
    stats: Counter[str]
    committed: dict[str, bytes] = field(default_factory=dict)
    handles: list[Handle] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    #: set while a step runs (`step`): still set in teardown means the step raised
    in_step: bool = False

    @contextmanager
    def step(self) -> Iterator[None]:
        self.in_step = True
        yield
        self.in_step = False

    # -------------------------------------------------------------- comparisons
    def _note(self, line: str) -> None:
        self.history.append(line)
        del self.history[:-400]

    def fail(self, why: str) -> None:
        self.stats["mismatches"] += 1
        tail = "\n".join(f"  {line}" for line in self.history[-120:])
        raise Mismatch(f"{why}\nlast operations (model | target):\n{tail}")

    def compare(self, what: str, a: tuple[str, Any], b: tuple[str, Any]) -> tuple[str, Any]:
        self.stats["steps"] += 1
        self._note(f"{what} -> {a[0]} {_show(a[1])} | {b[0]} {_show(b[1])}")
        if a != b:
            self.fail(f"{what}: the model answered {a[0]} {_show(a[1])}, "
                      f"the target {b[0]} {_show(b[1])}")
        if a[0] == "err":
            self.stats["errno_compared"] += 1
        return a

    def op(self, name: str, *args: Any) -> tuple[str, Any]:
        what = f"{name}({', '.join(_show(a) for a in args)})"
        a = attempt(lambda: getattr(self.local, name)(*args))
        b = attempt(lambda: getattr(self.target, name)(*args))
        return self.compare(what, a, b)

    # -------------------------------------------------------------- handles
    def open(self, path: str, flags: int) -> None:
        what = f"open({path!r}, {_flags(flags)})"
        a = attempt(lambda: self.local.open(path, flags))
        b = attempt(lambda: self.target.open(path, flags))
        if a[0] == "ok" and b[0] == "ok":
            self.handles.append(Handle(path, flags, a[1], b[1]))
            self.compare(what, ("ok", len(self.handles) - 1), ("ok", len(self.handles) - 1))
            return
        if a[0] == "ok":
            self.local.close(a[1])
        if b[0] == "ok":
            self.target.close(b[1])
        self.compare(what, a, b)

    def hop(self, name: str, i: int, *args: Any) -> tuple[str, Any]:
        h = self.handles[i]
        what = f"{name}(#{i} {h.path!r} {_flags(h.flags)}, {', '.join(_show(a) for a in args)})"
        a = attempt(lambda: getattr(self.local, name)(h.local, *args))
        b = attempt(lambda: getattr(self.target, name)(h.target, *args))
        return self.compare(what, a, b)

    def close(self, i: int) -> None:
        self.hop("close", i)
        del self.handles[i]

    def close_all(self) -> None:
        while self.handles:
            self.close(len(self.handles) - 1)

    # -------------------------------------------------------------- whole trees
    def check_tree(self, why: str) -> None:
        """The whole tree, walked through each side's own calls, is the same."""
        a = attempt(lambda: walk(self.local))
        b = attempt(lambda: walk(self.target))
        self.stats["steps"] += 1
        self._note(f"tree after {why}: {len(a[1]) if a[0] == 'ok' else a} entries")
        if a != b:
            self.fail(f"the tree differs after {why}:\n{_tree_diff(a, b)}")

    def commit(self) -> None:
        tree = content_of(self.session.commit())
        expected = persisted(walk(self.local))
        self.stats["steps"] += 1
        self._note(f"commit -> {len(tree)} files")
        if tree != expected:
            self.fail(f"the commit holds other files than the model:\n"
                      f"{_tree_diff(('ok', expected), ('ok', tree))}")
        self.committed = expected

    def begin(self, committed: dict[str, bytes]) -> None:
        """Start from ``committed`` (what the target shows at first)."""
        self.committed = dict(committed)
        self._reset_local(self.committed)
        self.check_tree("the start")

    def rollback(self) -> None:
        self.close_all()
        self.session.rollback()
        self._note("rollback")
        self._reset_local(self.committed)
        self.check_tree("rollback")

    def sync(self) -> None:
        self.session.sync()
        self._note("sync")

    def remount(self, keep_session: bool) -> None:
        self.close_all()
        self.session.remount(keep_session)
        self._note(f"remount (keep_session={keep_session})")
        if keep_session:
            self._reset_local(persisted(walk(self.local)))
        else:
            self._reset_local(self.committed)
        self.check_tree(f"remount (keep_session={keep_session})")

    def _reset_local(self, files: dict[str, bytes]) -> None:
        root = self.local.root
        shutil.rmtree(root)
        root.mkdir()
        for path, data in files.items():
            if path.endswith("/"):  # an empty directory's marker
                (root / path).mkdir(parents=True, exist_ok=True)
                continue
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)


def _tree_diff(a: tuple[str, Any], b: tuple[str, Any]) -> str:
    if a[0] != "ok" or b[0] != "ok":
        return f"model: {a if a[0] != 'ok' else 'ok'}, target: {b if b[0] != 'ok' else 'ok'}"
    lines = []
    for path in sorted(set(a[1]) | set(b[1])):
        x, y = a[1].get(path, "absent"), b[1].get(path, "absent")
        if x != y:
            lines.append(f"  {path}: model {_show(x)}, target {_show(y)}")
    return "\n".join(lines)


def _flags(flags: int) -> str:
    names = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}
    out = [names[flags & os.O_ACCMODE]]
    for bit, name in ((os.O_CREAT, "O_CREAT"), (os.O_EXCL, "O_EXCL"), (os.O_TRUNC, "O_TRUNC")):
        if flags & bit:
            out.append(name)
    return "|".join(out)
