"""Objects: point reads, listings of a view (merged with a session's staged rows),
copies, metadata updates, deletes and the bulk load: a part of the engine (engine.py,
core.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

from tilde_server.store import validation as v
from tilde_server.store.core import (
    _ENTRY_COLS,
    STAGE_REPLACE,
    ChangeRecord,
    Obj,
    Page,
    Principal,
    StoreCore,
    _md5,
    _obj,
    now_rfc3339,
)
from tilde_server.store.db import Conn
from tilde_server.store.errors import (
    NotFound,
)
from tilde_server.store.listing import (
    MergedView,
    Source,
    key_successor,
    paginate,
    start_bound,
)


class ObjectsMixin(StoreCore):

    def stat_object(self, org: str, repo: str, path: str, session: str | None = None,
                    ref: str | None = None) -> Obj:
        v.object_key(path)
        with self.db.read() as c:
            r = self.repo_row(c, org, repo)
            s, seq = self._resolve_view(c, r, session, ref)
            o = self._view_obj(c, r, s, seq, path)
        if o is None:
            raise NotFound(f"object {path!r} not found", "object_not_found")
        return o

    def open_object(self, org: str, repo: str, path: str, session: str | None = None,
                    ref: str | None = None) -> tuple[Obj, BinaryIO]:
        o = self.stat_object(org, repo, path, session, ref)
        try:
            return o, self.blobs.open(o.blob)
        except FileNotFoundError:  # rolled back under our feet
            raise NotFound(f"object {path!r} not found", "object_not_found") from None

    # ======================================================================== listings
    def _base_fetch(self, c: Conn, rid: int, seq: int, head: int,
                    upper: str | None) -> Any:
        up = " AND path < ?" if upper is not None else ""
        if seq == head:
            sql = (f"SELECT {_ENTRY_COLS} FROM entries INDEXED BY entries_live "
                   f"WHERE repo_id = ? AND to_seq IS NULL AND path {{op}} ?{up} "
                   "ORDER BY path LIMIT ?")

            def args(lower: str, limit: int) -> tuple[Any, ...]:
                return (rid, lower, upper, limit) if upper is not None else (rid, lower, limit)
        else:
            sql = (f"SELECT {_ENTRY_COLS} FROM entries INDEXED BY entries_path "
                   f"WHERE repo_id = ? AND path {{op}} ?{up} AND from_seq <= ? "
                   "AND (to_seq IS NULL OR to_seq > ?) ORDER BY path LIMIT ?")

            def args(lower: str, limit: int) -> tuple[Any, ...]:
                if upper is not None:
                    return (rid, lower, upper, seq, seq, limit)
                return (rid, lower, seq, seq, limit)
        sql_incl, sql_excl = sql.format(op=">="), sql.format(op=">")

        def fetch(lower: str, inclusive: bool, limit: int) -> list[tuple[str, Any]]:
            rows = c.execute(sql_incl if inclusive else sql_excl, args(lower, limit)).fetchall()
            return [(row[0], _obj(row)) for row in rows]
        return fetch

    @staticmethod
    def _staged_fetch(c: Conn, sess: int, upper: str | None) -> Any:
        up = " AND path < ?" if upper is not None else ""
        sql = (f"SELECT {_ENTRY_COLS}, op FROM staged WHERE session_id = ? AND path {{op}} ?{up} "
               "ORDER BY path LIMIT ?")
        sql_incl, sql_excl = sql.format(op=">="), sql.format(op=">")

        def fetch(lower: str, inclusive: bool, limit: int) -> list[tuple[str, Any]]:
            a = (sess, lower, upper, limit) if upper is not None else (sess, lower, limit)
            rows = c.execute(sql_incl if inclusive else sql_excl, a).fetchall()
            return [(row[0], _obj(row, staged=True) if row["op"] == "put" else None)
                    for row in rows]
        return fetch

    def list_objects(self, org: str, repo: str, *, session: str | None = None,
                     ref: str | None = None, prefix: str = "", delimiter: str | None = None,
                     after: str | None = None, amount: int = 100,
                     markers: bool = False) -> Page:
        """`markers`: a prefix item's payload is the object whose key is the prefix itself
        (its directory marker), None when there is none (listing subtlety 7)."""
        delimiter = v.listing_args(prefix, after, delimiter)
        with self.db.read() as c:
            r = self.repo_row(c, org, repo)
            s, seq = self._resolve_view(c, r, session, ref)
            upper = key_successor(prefix) if prefix else None
            lower, incl = start_bound(prefix, after)
            small, big = (16, amount + 1) if delimiter else (amount + 1, amount + 1)
            base = Source(self._base_fetch(c, r["id"], seq, r["head_seq"], upper),
                          lower, incl, small, max(big, small))
            staged = None
            if s is not None:
                staged = Source(self._staged_fetch(c, s["id"], upper), lower, incl, small,
                                max(big, small))
            view = MergedView(base, staged)
            items, has_more = paginate(view.next, view.seek, prefix=prefix, delimiter=delimiter,
                                       after=after, amount=amount, markers=markers)
        return Page(items, has_more, items[-1].path if has_more else None)

    def list_changes(self, org: str, repo: str, session: str, *, prefix: str = "",
                     after: str | None = None, amount: int = 100) -> Page:
        v.listing_args(prefix, after)
        with self.db.read() as c:
            r = self.repo_row(c, org, repo)
            s = self.session_row(c, r, session)
            upper = key_successor(prefix) if prefix else None
            lower, incl = start_bound(prefix, after)
            rows = self._staged_fetch(c, s["id"], upper)(lower, incl, amount + 1)
        items = [ChangeRecord(p, o) for p, o in rows[:amount]]
        has_more = len(rows) > amount
        return Page(items, has_more, items[-1].path if has_more else None)

    def copy_object(self, org: str, repo: str, session: str, source: str,
                    destination: str) -> None:
        v.object_key(source, "source_path")
        v.object_key(destination, "destination_path")
        self._restage(org, repo, session, source, destination)

    def update_metadata(self, org: str, repo: str, session: str, path: str,
                        metadata: dict[str, str]) -> Obj:
        """Replace the user metadata of `path` in the session's view without touching its
        bytes: a staged row on the same blob (as copy makes), returned as staged."""
        v.object_key(path)
        return self._restage(org, repo, session, path, path, metadata)

    def _restage(self, org: str, repo: str, session: str, source: str, destination: str,
                 metadata: dict[str, str] | None = None) -> Obj:
        """Stage ``destination`` as the version of ``source`` the session sees: the same
        blob, no bytes moved (copy; with new ``metadata``, the metadata-only update, which
        keeps an import's provenance as the object is the same one)."""
        with self.db.write() as c:
            r = self.repo_row(c, org, repo)
            s = self.session_row(c, r, session)
            src = self._view_obj(c, r, s, s["base_seq"], source)
            if src is None:
                raise NotFound(f"object {source!r} not found", "object_not_found")
            o = Obj(destination, src.blob, src.size, src.etag, src.content_type,
                    src.metadata if metadata is None else metadata, now_rfc3339(), True,
                    src.source if metadata is not None else None)
            replaced = self.stage_put(c, s["id"], o)
        if replaced:
            self.collect_blobs([replaced])
        return o

    def delete_objects(self, org: str, repo: str, session: str, paths: list[str],
                       *, must_exist: bool = False) -> int:
        for p in paths:
            v.object_key(p)
        freed: list[str] = []
        deleted = 0
        with self.db.write() as c:
            r = self.repo_row(c, org, repo)
            s = self.session_row(c, r, session)
            for p in dict.fromkeys(paths):
                existed, old = self._stage_delete(c, r, s, p)
                if must_exist and not existed:
                    raise NotFound(f"object {p!r} not found", "object_not_found")
                deleted += existed
                if old:
                    freed.append(old)
        self.collect_blobs(freed)
        return deleted

    # ======================================================================== bulk loading
    def bulk_load(self, org: str, repo: str, rows: Iterator[tuple[str, bytes]],
                  message: str, who: Principal) -> str:
        """Commit many small objects directly (benchmarks, imports); no HTTP, one commit."""
        with self.db.write() as c:
            r = self.repo_row(c, org, repo, lock=True)
            uid = str(uuid.uuid4())
            sess = c.execute(
                "INSERT INTO sessions(uid, repo_id, base_seq, state, created_by, created_at) "
                "VALUES (?,?,?,'internal',?,?) RETURNING *",
                (uid, r["id"], r["head_seq"], who.user_id, now_rfc3339())).fetchone()
            t = now_rfc3339()
            cache: dict[bytes, tuple[str, str]] = {}

            def gen() -> Iterator[tuple[Any, ...]]:
                for path, data in rows:
                    if data not in cache:
                        blob = self.blobs.write_bytes(data)
                        self._reference(c, blob)
                        cache[data] = (blob, _md5(data).hexdigest())
                    key, md5 = cache[data]
                    yield (sess["id"], path, "put", key, len(data), md5,
                           "application/octet-stream", "{}", t)
            c.executemany("INSERT INTO staged(session_id, path, op, blob, size, etag, "
                          "content_type, metadata, last_modified) VALUES (?,?,?,?,?,?,?,?,?)"
                          + STAGE_REPLACE,
                          gen())
            return self.apply_session(c, r, sess, message, {}, who)
