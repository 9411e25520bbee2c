"""Attribute and listing cache with a TTL, plus a negative-lookup cache.

Subtleties:
1. A listing page fills the attributes of its children, so ``ls -l`` costs one request
   per page, not one per file; a page stays valid for the same TTL as the attributes.
2. A directory whose every page is cached is *complete*: a lookup of a name it does not
   hold answers ENOENT without a request (until the TTL runs out).
3. Every local mutation invalidates exactly what it touched (the path, its negative entry
   and its parent's pages) synchronously before the mutating handler returns, so this
   mount never serves its own stale state; changes made by *other* writers show up within
   the TTL, as with every network filesystem.
4. Sizes are bounded by entry counts (``cachetools.TTLCache``), never by time alone.
5. A create by this mount adds its name to the directory's complete listing instead of
   dropping it, so creating many files in a listed directory asks nothing.
6. Stale-if-error: complete listings are also kept past their TTL (an LRU of names);
   when the server cannot be reached, ``stale_absent`` lets a lookup answer ENOENT from
   the last listing seen, so creates in known directories work during an outage. Only
   names this mount saw or made are in it: a name it deleted stays in (never "absent"
   wrongly for its own changes); one another writer created meanwhile is not seen.
"""

from __future__ import annotations

import stat as S
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache, TTLCache


@dataclass(frozen=True)
class Stat:
    """What the remote (or local state) says about one path. The POSIX fields come from
    the object's metadata (tilde._wire.posix, attrs.py); unset ones take the defaults."""

    is_dir: bool
    size: int = 0
    etag: str = ""
    mtime_ns: int = 0
    #: ``st_mode`` with its file type; 0: none stored (a file or directory by ``is_dir``)
    mode: int = 0
    uid: int | None = None
    gid: int | None = None
    ctime_ns: int = 0
    #: the object's other user metadata, kept when the mount rewrites it
    user_meta: tuple[tuple[str, str], ...] = ()
    #: a directory: whether its ``DIR/`` marker object exists (None: not known yet)
    marker: bool | None = None
    #: a device file's number
    rdev: int = 0

    @property
    def is_symlink(self) -> bool:
        return not self.is_dir and S.S_ISLNK(self.mode)


@dataclass(frozen=True)
class DirEntry:
    name: str
    stat: Stat


@dataclass(frozen=True)
class DirPage:
    """One listing page of a directory, names already validated, in server order."""

    entries: tuple[DirEntry, ...]
    has_more: bool
    next_after: str | None


class MetaCache:
    def __init__(
        self,
        ttl: float,
        negative_ttl: float,
        *,
        max_entries: int = 200_000,
        max_pages: int = 2_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._attrs: TTLCache[str, Stat] = TTLCache(max_entries, ttl, timer=timer)
        self._negative: TTLCache[str, bool] = TTLCache(max_entries // 4 or 1, negative_ttl,
                                                       timer=timer)
        self._pages: TTLCache[tuple[str, str], DirPage] = TTLCache(max_pages, ttl, timer=timer)
        self._complete: TTLCache[str, frozenset[str]] = TTLCache(max_pages, ttl, timer=timer)
        self._stale: LRUCache[str, frozenset[str]] = LRUCache(max_pages)
        self.hits = 0
        self.misses = 0

    # -- attributes -------------------------------------------------------------------
    def get(self, path: str) -> Stat | None:
        stat = self._attrs.get(path)
        if stat is None:
            self.misses += 1
        else:
            self.hits += 1
        return stat

    def put(self, path: str, stat: Stat) -> None:
        self._attrs[path] = stat
        self._negative.pop(path, None)

    def is_negative(self, path: str) -> bool:
        if path in self._negative:
            self.hits += 1
            return True
        return False

    def put_negative(self, path: str) -> None:
        self._attrs.pop(path, None)
        self._negative[path] = True

    def known_absent(self, parent: str, name: str) -> bool:
        """True when ``parent``'s complete cached listing has no ``name``."""
        names = self._complete.get(parent)
        if names is not None and name not in names:
            self.hits += 1
            return True
        return False

    # -- listings ---------------------------------------------------------------------
    def get_page(self, directory: str, after: str | None) -> DirPage | None:
        page = self._pages.get((directory, after or ""))
        if page is None:
            self.misses += 1
        else:
            self.hits += 1
        return page

    def put_page(self, directory: str, after: str | None, page: DirPage) -> None:
        self._pages[(directory, after or "")] = page
        prefix = f"{directory}/" if directory else ""
        for entry in page.entries:
            self.put(prefix + entry.name, entry.stat)

    def mark_complete(self, directory: str, names: frozenset[str]) -> None:
        self._complete[directory] = names
        self._stale[directory] = names

    def add_name(self, directory: str, name: str) -> None:
        """This mount created ``name`` in ``directory`` (subtlety 5)."""
        for cache in (self._complete, self._stale):
            names = cache.get(directory)
            if names is not None:
                cache[directory] = names | {name}

    def stale_absent(self, parent: str, name: str) -> bool:
        """``parent``'s last complete listing, however old, lacks ``name`` (subtlety 6)."""
        names = self._stale.get(parent)
        return names is not None and name not in names

    # -- invalidation -----------------------------------------------------------------
    def invalidate(self, path: str) -> None:
        self._attrs.pop(path, None)
        self._negative.pop(path, None)

    def invalidate_dir(self, directory: str, *, keep_complete: bool = False) -> None:
        """Drop the cached pages of ``directory`` (its children's own attrs stay)."""
        for key in [k for k in self._pages if k[0] == directory]:
            self._pages.pop(key, None)
        if not keep_complete:
            self._complete.pop(directory, None)

    def invalidate_tree(self, directory: str) -> None:
        """Forget everything at or below ``directory`` (directory renames)."""
        prefix = directory + "/"
        for cache in (self._attrs, self._negative, self._complete, self._stale):
            for key in [k for k in cache if k == directory or k.startswith(prefix)]:
                cache.pop(key, None)
        for pkey in [k for k in self._pages if k[0] == directory or k[0].startswith(prefix)]:
            self._pages.pop(pkey, None)

    def clear(self) -> None:
        for cache in (self._attrs, self._negative, self._pages, self._complete, self._stale):
            cache.clear()

    def usage(self) -> dict[str, int]:
        return {"attrs": len(self._attrs), "negative": len(self._negative),
                "pages": len(self._pages), "hits": self.hits, "misses": self.misses}
