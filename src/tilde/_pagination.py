"""Lazy, single-pass listing iterators (spec 1.6)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from . import _wire

T = TypeVar("T")


class PageIterator(Generic[T]):
    """Fetches one page at a time, only when the caller asks for the next item.

    ``fetch(after)`` performs the request for one page and returns its decoded JSON;
    ``parse_item`` turns one result into what is yielded. Iteration ends when a page says
    ``has_more`` false, is empty, or has no cursor (see ``_wire.Page.next_after``).
    """

    def __init__(self, fetch: Callable[[str | None], Any],
                 parse_item: Callable[[dict[str, Any]], T], after: str | None = None) -> None:
        self._fetch = fetch
        self._parse = parse_item
        self._after = after
        self._buffer: Iterator[T] = iter(())
        self._done = False

    def __iter__(self) -> PageIterator[T]:
        return self

    def __next__(self) -> T:
        while True:
            try:
                return next(self._buffer)
            except StopIteration:
                if self._done:
                    raise
            page = _wire.parse_page(self._fetch(self._after), self._parse)
            cursor = page.next_after
            if cursor is None:
                self._done = True
            self._after = cursor
            self._buffer = iter(page.items)

