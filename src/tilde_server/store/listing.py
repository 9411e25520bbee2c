"""Sorted, seekable iteration over object listings, with merge of a session's staged changes.

Subtleties:
1. Every source is a window over an index: it fetches a small batch of rows `>= lower` (or
   `> lower`) in path order and can `seek` forward. A listing page therefore costs
   O(page size) index steps, whatever the directory holds.
2. With a delimiter, a common prefix `P` is emitted once and the sources then seek to
   `key_successor(P)`, the smallest string above every key starting with `P`, instead of
   walking P's members.
3. Batches start small and double, and drop back after a seek discards buffered rows, so a
   delimiter listing of many sub-directories does not read many rows per sub-directory.
4. Merge rule: a staged row wins over a base row of the same path; a staged tombstone hides it.
5. Comparison is by Python code point order, which equals SQLite's BINARY order on UTF-8.
6. Cursor (`after`) semantics: items are strictly greater than `after`; a common prefix that is
   `<= after` was already returned (or skipped over) and is not repeated.
7. Directory markers: the key equal to a common prefix `P` (the marker `a/b/` of `a/b`) is
   the smallest key starting with `P`, so when it exists it is the very row that makes the
   prefix appear; `paginate(markers=True)` hands its payload to the prefix item, at no cost.
   A cursor `after >= P` never emits `P` again, so no marker is lost to pagination.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# fetch(lower, inclusive, limit) -> rows as (path, payload), path-ordered, within the window
Fetch = Callable[[str, bool, int], list[tuple[str, Any]]]

_MAX_CP = 0x10FFFF


def key_successor(prefix: str) -> str | None:
    """Smallest string greater than every string that starts with `prefix` (None: no bound)."""
    chars = list(prefix)
    while chars:
        cp = ord(chars[-1]) + 1
        if cp == 0xD800:  # surrogates cannot be stored; jump over them
            cp = 0xE000
        if cp <= _MAX_CP:
            chars[-1] = chr(cp)
            return "".join(chars)
        chars.pop()
    return None


class Source:
    """A batched, seekable cursor over one path-ordered row source."""

    def __init__(self, fetch: Fetch, lower: str, inclusive: bool, batch: int, max_batch: int):
        self._fetch = fetch
        self._lower = lower
        self._inclusive = inclusive
        self._initial = batch
        self._batch = batch
        self._max = max_batch
        self._buf: list[tuple[str, Any]] = []
        self._i = 0
        self._exhausted = False

    def peek(self) -> tuple[str, Any] | None:
        if self._i >= len(self._buf):
            if self._exhausted:
                return None
            rows = self._fetch(self._lower, self._inclusive, self._batch)
            self._exhausted = len(rows) < self._batch
            self._batch = min(self._batch * 2, self._max)
            self._buf, self._i = rows, 0
            if not rows:
                return None
        return self._buf[self._i]

    def pop(self) -> None:
        path, _ = self._buf[self._i]
        self._i += 1
        self._lower, self._inclusive = path, False

    def seek(self, lower: str | None) -> None:
        """Skip every row below `lower` (None: skip everything)."""
        if lower is None:
            self._buf, self._i, self._exhausted = [], 0, True
            return
        if lower <= self._lower:
            return
        while self._i < len(self._buf) and self._buf[self._i][0] < lower:
            self._i += 1
        if self._i >= len(self._buf):  # window ran out: re-fetch from the new bound, small again
            self._buf, self._i = [], 0
            self._batch = self._initial
        self._lower, self._inclusive = lower, True


class MergedView:
    """Base rows overlaid with staged rows; payload None in a staged row is a tombstone."""

    def __init__(self, base: Source, staged: Source | None) -> None:
        self.base = base
        self.staged = staged

    def next(self) -> tuple[str, Any, bool] | None:
        """Next visible (path, payload, from_staged)."""
        while True:
            b = self.base.peek()
            s = self.staged.peek() if self.staged is not None else None
            if b is None and s is None:
                return None
            if s is None or (b is not None and b[0] < s[0]):
                assert b is not None
                self.base.pop()
                return b[0], b[1], False
            assert self.staged is not None
            if b is not None and b[0] == s[0]:
                self.base.pop()
            self.staged.pop()
            if s[1] is not None:
                return s[0], s[1], True

    def seek(self, lower: str | None) -> None:
        self.base.seek(lower)
        if self.staged is not None:
            self.staged.seek(lower)


@dataclass
class Item:
    path: str
    kind: str  # "object" or "prefix"
    payload: Any = None
    staged: bool = False


def start_bound(prefix: str, after: str | None) -> tuple[str, bool]:
    """Where a listing starts: just after `after`, but never before `prefix`."""
    if after is not None and after >= prefix:
        return after, False
    return prefix, True


def paginate(
    next_item: Callable[[], tuple[str, Any, bool] | None],
    seek: Callable[[str | None], None],
    *,
    prefix: str,
    delimiter: str | None,
    after: str | None,
    amount: int,
    markers: bool = False,
) -> tuple[list[Item], bool]:
    """Collect up to `amount` items (+1 to learn has_more), grouping by delimiter; with
    `markers` a prefix item carries the payload of the key equal to it (7.)."""
    items: list[Item] = []
    while len(items) <= amount:
        nxt = next_item()
        if nxt is None:
            break
        path, payload, staged = nxt
        if delimiter:
            i = path.find(delimiter, len(prefix))
            if i >= 0:
                common = path[: i + len(delimiter)]
                seek(key_successor(common))
                if after is None or common > after:
                    marker = payload if markers and path == common else None
                    items.append(Item(common, "prefix", marker, staged and marker is not None))
                continue
        items.append(Item(path, "object", payload, staged))
    has_more = len(items) > amount
    return items[:amount], has_more


def iterate(view: MergedView) -> Iterator[tuple[str, Any, bool]]:
    while (n := view.next()) is not None:
        yield n
