"""Sequential-read detection and the read-ahead window, one `Prefetcher` per open handle.

    p = Prefetcher(initial=1 MiB, maximum=64 MiB)
    rng = p.on_read(offset, size, file_size)   # None, or (start, end) to fetch ahead

Subtleties:
1. A read is sequential when it starts where the previous one ended. Any other read
   resets the window: random readers never trigger read-ahead, so they fetch only the
   blocks they touch. The first read of a handle never starts a window either: a program
   that opens a file to read its first bytes (file(1), a header, a thumbnail) waits for
   one block, not for a window competing with it for the server and the CPU (D: time to
   first byte); a reader that goes on sequentially gets its window one read later.
2. The window starts at ``initial`` and doubles each time the reader gets into the second
   half of what was already requested, up to ``maximum``; so a reader that stops early has
   wasted at most one window.
3. The returned range only schedules fetches into the shared block cache, through the
   shared fetch limiter; memory is bounded by the cache's LRU and that limiter, not by the
   number of readers (see config.py for the budget).
4. Pure bookkeeping, no I/O and no ``await``: the caller starts the fetch in the
   background and never waits for it.
"""

from __future__ import annotations


class Prefetcher:
    def __init__(self, *, initial: int, maximum: int) -> None:
        self.initial = initial
        self.maximum = maximum
        self.window = initial
        self._last_end: int | None = None
        self._ahead_until = 0
        #: the last read continued the one before it (the caller drops what it consumed)
        self.sequential = False

    def on_read(self, offset: int, size: int, file_size: int) -> tuple[int, int] | None:
        sequential = self.sequential = self._last_end is not None and offset == self._last_end
        end = offset + size
        self._last_end = end
        if not sequential:
            self.window = self.initial
            self._ahead_until = 0
            return None
        if end >= file_size:
            return None
        if self._ahead_until - end > self.window // 2:
            return None  # still well inside what was requested
        start = max(self._ahead_until, end)
        if self._ahead_until > end:  # reader reached the second half: grow
            self.window = min(self.window * 2, self.maximum)
        stop = min(start + self.window, file_size)
        self._ahead_until = stop
        return (start, stop) if start < stop else None
