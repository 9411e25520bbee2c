"""`LocalState`: what this mount holds that the session on the server does not show (yet).

The Filesystem consults it before its caches and the remote (fs.py subtlety 1), keyed by
path and moved by rename. It does no I/O and never awaits: every method is atomic with
respect to the trio loop, so a handler can change several tables in one step.

Subtleties:
1. ``files``: staged copies of dirty (or open, or not yet dropped) files (upload.py).
2. ``dirs``: directories made or kept here (mkdir, or a directory that lost its last
   entry, which would otherwise vanish from the server's listing: POSIX keeps it).
3. ``local_only``: mkdir'ed directories with nothing on the server yet: a lookup inside
   that local state cannot answer is ENOENT without a request (git and sqlite probe a lot).
4. ``made_here``: directories mkdir'ed here while absent on the server -> the names created
   in them since: another name there cannot exist in the session (stays true after
   uploads, unlike ``local_only``); cleared by rename, commit and rollback.
5. ``pending_markers``: directories whose ``DIR/`` marker (tilde._wire.posix) may be
   needed at the next sync: made or emptied here (False: written only if the directory is
   empty then, so a tree copied in gets no markers), or given attributes to keep (True:
   chmod/chown/utimens, mkdir with another mode than the default; always written). A
   marker of a directory that gets content later is harmless and stays.
6. ``dir_gen``: bumped by every change in a directory, so a listing page fetched while a
   change landed is used once and not cached.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TypeVar

from .inodes import basename, is_under, parent_of
from .meta_cache import Stat
from .upload import StagedFile

_T = TypeVar("_T")


def move_tree(table: dict[str, _T], src: str, dst: str) -> None:
    """Re-key every entry at or under ``src`` to the same place under ``dst``."""
    moved = {p: v for p, v in table.items() if is_under(p, src)}
    for p in moved:
        del table[p]
    for p, v in moved.items():
        table[dst + p[len(src):]] = v


@dataclass
class LocalState:
    files: dict[str, StagedFile] = field(default_factory=dict)
    dirs: dict[str, Stat] = field(default_factory=dict)
    pending_markers: dict[str, bool] = field(default_factory=dict)
    #: access times set by utimens (not stored: the mount keeps no atime on the server)
    atimes: dict[str, int] = field(default_factory=dict)
    local_only: set[str] = field(default_factory=set)
    made_here: dict[str, set[str]] = field(default_factory=dict)
    dir_gen: dict[str, int] = field(default_factory=dict)

    def stat(self, path: str) -> Stat | None:
        """What local state says ``path`` is (None: ask the caches and the remote)."""
        sf = self.files.get(path)
        if sf is not None:
            return staged_stat(sf)
        return self.dirs.get(path)

    def children(self, directory: str) -> dict[str, Stat]:
        out: dict[str, Stat] = {}
        for path in itertools.chain(self.files, self.dirs):
            if path and parent_of(path) == directory:
                st = self.stat(path)
                if st is not None:
                    out[basename(path)] = st
        return out

    def has_under(self, path: str) -> bool:
        prefix = path + "/"
        return any(p.startswith(prefix) for p in itertools.chain(self.files, self.dirs))

    def on_server(self, path: str) -> None:
        """An object now exists at ``path``: its directories are no longer local-only."""
        while path:
            path = parent_of(path)
            self.local_only.discard(path)

    def note_made(self, path: str) -> None:
        made = self.made_here.get(parent_of(path))
        if made is not None:
            made.add(basename(path))

    def keep_parent(self, path: str, known: Stat | None = None) -> None:
        """``path`` went: its directory stays visible (subtlety 2), with the attributes
        ``known`` for it, and persists (its marker is written at the next sync)."""
        parent = parent_of(path)
        if parent and parent not in self.dirs:
            self.dirs[parent] = known if known is not None and known.is_dir else \
                Stat(True, mtime_ns=time.time_ns())
            self.pending_markers.setdefault(parent, False)

    def bump(self, directory: str) -> None:
        self.dir_gen[directory] = self.dir_gen.get(directory, 0) + 1

    def generation(self, directory: str) -> int:
        return self.dir_gen.get(directory, 0)

    def move_times(self, src: str, dst: str) -> None:
        atime = self.atimes.pop(src, None)
        self.atimes.pop(dst, None)
        if atime is not None:
            self.atimes[dst] = atime


def staged_stat(sf: StagedFile) -> Stat:
    """What a staged file is, attributes included (the upload stores the same)."""
    return Stat(False, sf.size if sf.ready else (sf.base.size if sf.base else 0), "",
                sf.mtime_ns, mode=sf.mode, uid=sf.uid, gid=sf.gid, ctime_ns=sf.ctime_ns,
                user_meta=sf.user_meta, rdev=sf.rdev)
