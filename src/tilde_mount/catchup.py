"""``tilde-mount update`` on a server without the session rebase extension: the mount
moves its session's changes into a fresh session on top of the latest commit itself.

    changes = await session_changes(remote, sid)              # path -> entry (None: deleted)
    moved = await remote.changed_between(base, latest)        # path -> ETag at latest (None: gone)
    conflicts(changes, moved)                                 # [] or the paths in the way
    await move_changes(remote, changes, moved, sid, new_sid)

Subtleties:
1. Conflicts follow the server's commit rule (engine.py subtlety 3): a path the session
   changed conflicts when the commits since its base changed it too and the latest
   content differs from the session's (the same bytes, or both deleted, is the same
   change).
2. The old session is not touched until the new one holds every change; the caller then
   rolls it back. A failure half way leaves the old session as it was.
3. Cost: one diff listing of the commits in between, then per changed path one download
   from the old session and one upload into the new one, streamed in ``CHUNK`` pieces
   (metadata carried over); a deletion is one request. tilde-server's rebase does all of
   it in one request (docs/api.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import trio

from tilde._values import Entry

from .remote import Remote, View

CHUNK = 8 * 1024 * 1024
CONCURRENCY = 4


async def session_changes(remote: Remote, sid: str) -> dict[str, Entry | None]:
    """Every change staged in ``sid``: path -> its entry, None for a deletion."""
    out: dict[str, Entry | None] = {}
    after: str | None = None
    while True:
        records, after = await remote.list_changes(sid, after=after, amount=1000)
        for r in records:
            out[r.path] = r.entry
        if after is None:
            return out


def conflicts(changes: Mapping[str, Entry | None],
              moved: Mapping[str, str | None]) -> list[str]:
    """The changed paths that the commits since the base changed differently (subtlety 1)."""
    bad = []
    for path, entry in changes.items():
        if path not in moved:
            continue
        theirs = moved[path]
        mine = entry.e_tag.strip('"') if entry is not None else None
        if theirs != mine:
            bad.append(path)
    return sorted(bad)


class _SessionSource:
    """An upload body read from another session, ``CHUNK`` bytes per range request."""

    def __init__(self, remote: Remote, path: str, view: View, size: int, etag: str) -> None:
        self.remote, self.path, self.view, self.size, self.etag = remote, path, view, size, etag

    async def chunks(self, start: int, end: int) -> AsyncIterator[bytes]:
        for pos in range(start, end, CHUNK):
            yield await self.remote.read_range(self.path, pos, min(pos + CHUNK, end),
                                               self.view, etag=self.etag or None)


async def move_changes(remote: Remote, changes: Mapping[str, Entry | None],
                       moved: Mapping[str, str | None], src: str, dst: str) -> None:
    """Stage every change of session ``src`` in session ``dst`` (subtleties 2, 3); a
    deletion the latest commit already made is not repeated."""
    view = View(session_id=src)
    deleted = sorted(p for p, e in changes.items()
                     if e is None and not (p in moved and moved[p] is None))
    limiter = trio.CapacityLimiter(CONCURRENCY)

    async def copy(path: str, entry: Entry) -> None:
        async with limiter:
            source = _SessionSource(remote, path, view, entry.size or 0,
                                    entry.e_tag.strip('"'))
            await remote.upload(path, source, session_id=dst, metadata=dict(entry.metadata))

    async with trio.open_nursery() as nursery:
        for path, entry in sorted(changes.items()):
            if entry is not None:
                nursery.start_soon(copy, path, entry)
    if deleted:
        await remote.delete_many(deleted, session_id=dst)
