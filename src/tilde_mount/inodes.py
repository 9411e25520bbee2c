"""The inode table: path <-> inode number, generations, lookup counts, forget.

Paths are object-key prefixes as ``str`` without leading or trailing ``/``; the root is
``""`` and always inode 1.

Subtleties:
1. Inode numbers are never reused within one mount (a counter from 2), so a stale kernel
   handle can never reach another file. ``generation`` is fixed per table (taken from the
   clock at mount time), which keeps (ino, generation) unique across remounts too.
2. The kernel's lookup count rises on every lookup/create/mkdir reply and on every
   readdirplus entry it *accepted*; ``forget`` lowers it. An inode leaves the table when
   its count reaches 0 and no handle holds it (``open_count``), never earlier: the kernel
   may still send operations for it.
3. A rename moves a node and, for directories, every known descendant, in one synchronous
   step (no ``await`` inside), so no handler sees a half-renamed subtree.
4. A node that was unlinked while known to the kernel is detached: it keeps its number
   (open handles stay usable) but no path maps to it any more.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

ROOT_INO = 1


@dataclass(eq=False)
class Inode:
    ino: int
    path: str
    is_dir: bool
    lookups: int = 0
    open_count: int = 0
    detached: bool = False


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def basename(path: str) -> str:
    return path.rpartition("/")[2]


def is_under(path: str, directory: str) -> bool:
    """``path`` is ``directory`` itself or inside it."""
    return directory == "" or path == directory or path.startswith(directory + "/")


class InodeTable:
    def __init__(self) -> None:
        self.generation = int(time.time())
        self._next = ROOT_INO + 1
        self._by_ino: dict[int, Inode] = {ROOT_INO: Inode(ROOT_INO, "", True, lookups=1)}
        self._by_path: dict[str, Inode] = {"": self._by_ino[ROOT_INO]}

    def __len__(self) -> int:
        return len(self._by_ino)

    def get(self, ino: int) -> Inode | None:
        return self._by_ino.get(ino)

    def by_path(self, path: str) -> Inode | None:
        return self._by_path.get(path)

    def ensure(self, path: str, is_dir: bool) -> Inode:
        """The node for ``path``, created if unknown (a kind change makes a new node)."""
        node = self._by_path.get(path)
        if node is not None and node.is_dir == is_dir:
            return node
        if node is not None:
            self.detach(node)
        node = Inode(self._next, path, is_dir)
        self._next += 1
        self._by_ino[node.ino] = node
        self._by_path[path] = node
        return node

    def remember(self, path: str, is_dir: bool) -> Inode:
        """``ensure`` and count one kernel lookup (the reply is about to be sent)."""
        node = self.ensure(path, is_dir)
        node.lookups += 1
        return node

    def forget(self, ino: int, nlookup: int) -> None:
        node = self._by_ino.get(ino)
        if node is None or ino == ROOT_INO:
            return
        node.lookups = max(0, node.lookups - nlookup)
        self._maybe_drop(node)

    def opened(self, node: Inode) -> None:
        node.open_count += 1

    def closed(self, node: Inode) -> None:
        node.open_count = max(0, node.open_count - 1)
        self._maybe_drop(node)

    def _maybe_drop(self, node: Inode) -> None:
        if node.lookups == 0 and node.open_count == 0 and node.ino != ROOT_INO:
            self._by_ino.pop(node.ino, None)
            if self._by_path.get(node.path) is node:
                del self._by_path[node.path]

    def detach(self, node: Inode) -> None:
        """The path is gone (unlink/rmdir/replaced by rename); the number lives on."""
        if self._by_path.get(node.path) is node:
            del self._by_path[node.path]
        node.detached = True
        self._maybe_drop(node)

    def detach_path(self, path: str) -> None:
        node = self._by_path.get(path)
        if node is not None:
            self.detach(node)

    def attached(self) -> list[Inode]:
        """Every node that still has a path (the root included), deepest paths first."""
        return sorted(self._by_path.values(), key=lambda n: (-n.path.count("/"), n.path))

    def rename(self, old: str, new: str) -> None:
        """Move ``old`` (and everything known below it) to ``new``; synchronous on purpose."""
        self.detach_path(new)
        prefix = old + "/"
        moved = [n for p, n in self._by_path.items() if p == old or p.startswith(prefix)]
        for node in moved:
            del self._by_path[node.path]
        for node in moved:
            node.path = new + node.path[len(old):]
            existing = self._by_path.get(node.path)
            if existing is not None and existing is not node:
                self.detach(existing)
            self._by_path[node.path] = node
