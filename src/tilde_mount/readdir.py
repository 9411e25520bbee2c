"""Lazy, paged directory listings with stable cookies, merged with local-only state.

    page = to_dir_page(directory, remote_list_page, warn_once)   # validate names
    h = DirHandle(directory, local={name: Stat})                  # at opendir
    h.add_page(page)                                              # as the reader advances

Subtleties:
1. A handle's entries form an append-only list; the cookie (``next_id`` given to the
   kernel) is a position in it. Entries are never removed or reordered, so an offset the
   kernel hands back always means the same place, whatever changed on the server since.
2. Pages are fetched one at a time, only when the reader gets past the end of what is
   already known (``ls | head`` on a million-entry directory costs one page). Each page
   continues *by name* (``after`` = last key), so concurrent changes never duplicate or
   skip an existing name.
3. Local-only state (mkdir'ed directories, files being written and not uploaded yet)
   is snapshotted at opendir and merged in name order: a local name is emitted once the
   remote listing has gone past it, or at the end. A name both local and remote is
   emitted once, with the local attributes.
4. Order is the server's: keys sort by code point, and a directory sorts as its name plus
   "/", which is what the merge uses.
5. Keys that cannot be paths (empty components as in ``a//b``, ``.`` or ``..``, NUL) are
   skipped and logged once per key. A name that is both an object and a prefix shows as
   the file (the same choice ``lookup`` makes); the directory is logged once.
6. Every listing starts with ``.`` and ``..`` (fs.py emits them, they are not entries of
   the handle). Cookies: ``.`` is followed by cookie 1, ``..`` by 2, and ``entries[k]``
   by ``k + 1 + DOT_ENTRIES``; so a cookie still names one fixed place. The kernel takes
   no lookup reference for these two names, and neither does the inode table.
7. A directory's own marker (the key ``DIR/``, tilde._wire.posix) is not an entry of it;
   a subdirectory's marker, when the server attaches it to the prefix row, gives that
   subdirectory's attributes. Without it they are unknown (``marker is None``) and fs.py
   asks for them before it answers (one HEAD per such subdirectory, in parallel).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from .attrs import dir_stat, file_stat
from .meta_cache import DirEntry, DirPage, Stat
from .remote import ListPage

#: ``.`` and ``..``, emitted before the entries (subtlety 6)
DOT_ENTRIES = 2


def valid_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\0" not in name


def sort_key(name: str, is_dir: bool) -> str:
    return name + "/" if is_dir else name


def to_dir_page(directory: str, page: ListPage, warn_once: Callable[[str, str], None]) -> DirPage:
    prefix = f"{directory}/" if directory else ""
    entries: dict[str, DirEntry] = {}
    for obj in page.objects:
        if obj.path == prefix:  # the directory's own marker (subtlety 7)
            continue
        name = obj.path[len(prefix):] if obj.path.startswith(prefix) else ""
        if not valid_name(name):
            warn_once(obj.path, "key cannot be shown as a path")
            continue
        entries[name] = DirEntry(name, file_stat(obj))
    for p in page.prefixes:
        name = p[len(prefix):-1] if p.startswith(prefix) and p.endswith("/") else ""
        if not valid_name(name):
            warn_once(p, "prefix cannot be shown as a directory")
            continue
        if name in entries:
            warn_once(p, "a file of the same name hides this directory")
            continue
        marker = page.markers.get(p)
        entries[name] = DirEntry(name, dir_stat(marker) if marker is not None
                                 else Stat(True, marker=False if page.markers_complete
                                           else None))
    ordered = sorted(entries.values(), key=lambda e: sort_key(e.name, e.stat.is_dir))
    return DirPage(tuple(ordered), page.next_after is not None, page.next_after)


class DirHandle:
    def __init__(self, directory: str, local: dict[str, Stat]) -> None:
        self.directory = directory
        self.entries: list[DirEntry] = []
        self.after: str | None = None
        self.done = False
        self.generation = 0  # the directory's change counter at opendir (fs.py)
        self.ino = 0         # the directory's inode and its parent's at opendir (fs.py)
        self.parent_ino = 0
        self._seen: set[str] = set()
        self._remote_names: set[str] = set()
        self._local = local
        self._pending = sorted((sort_key(n, s.is_dir), n) for n, s in local.items())

    @property
    def remote_names(self) -> frozenset[str]:
        return frozenset(self._remote_names)

    def add_page(self, page: DirPage) -> None:
        """Append one remote page plus the local names it has gone past (subtlety 3)."""
        remote = []
        for e in page.entries:
            self._remote_names.add(e.name)
            if e.name not in self._local:
                remote.append((sort_key(e.name, e.stat.is_dir), e))
        bound: str | None = None  # None: last page, every pending local name goes now
        if page.has_more:
            last = page.entries[-1] if page.entries else None
            bound = sort_key(last.name, last.stat.is_dir) if last else ""
        local = []
        while self._pending and (bound is None or self._pending[0][0] <= bound):
            key, name = self._pending.pop(0)
            local.append((key, DirEntry(name, self._local[name])))
        for _, entry in heapq.merge(remote, local, key=lambda t: t[0]):
            if entry.name not in self._seen:
                self._seen.add(entry.name)
                self.entries.append(entry)
        self.after = page.next_after
        self.done = not page.has_more
