"""History: the log, one commit, diffs between commits and revert: a part of the engine
(engine.py, core.py).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tilde_server.store import validation as v
from tilde_server.store.core import (
    DiffItem,
    Page,
    Principal,
    StoreCore,
    _same_version,
    now_rfc3339,
)
from tilde_server.store.db import Conn, Row
from tilde_server.store.errors import (
    BadRequest,
    Conflict,
    NotFound,
)
from tilde_server.store.listing import (
    Source,
    key_successor,
    paginate,
    start_bound,
)


class HistoryMixin(StoreCore):

    # ======================================================================== commits
    def _commit_dict(self, row: Row) -> dict[str, Any]:
        return {
            "id": row["id"], "committer": row["committer"],
            "committer_type": row["committer_type"] or "user",
            "committer_id": row["committer_id"], "message": row["message"],
            "meta_range_id": "", "creation_date": row["created_at"],
            "parents": [row["parent_id"]] if row["parent_id"] else [],
            "metadata": json.loads(row["metadata"]), "object_count": row["object_count"],
            "total_size": row["total_size"], "is_stale": False,
        }

    def log(self, org: str, repo: str, *, ref: str | None = None, after: str | None = None,
            amount: int = 100) -> Page:
        with self.db.read() as c:
            r = self.repo_row(c, org, repo)
            top = self._resolve_ref(c, r, ref) if ref else r["head_seq"]
            if after:
                try:
                    cursor = self._commit_row(c, r, after)
                except NotFound:
                    raise BadRequest(f"unknown cursor {after!r}", "invalid_cursor") from None
                top = min(top, cursor["seq"] - 1)
            rows = c.execute("SELECT * FROM commits WHERE repo_id = ? AND seq <= ? "
                             "ORDER BY seq DESC LIMIT ?", (r["id"], top, amount + 1)).fetchall()
        items = [self._commit_dict(x) for x in rows[:amount]]
        has_more = len(rows) > amount
        return Page(items, has_more, items[-1]["id"] if has_more else None)

    def get_commit(self, org: str, repo: str, commit_id: str) -> dict[str, Any]:
        """The commit `commit_id` names (full or a unique prefix): always the full id back."""
        with self.db.read() as c:
            row = self._commit_row(c, self.repo_row(c, org, repo), commit_id)
        return self._commit_dict(row)

    def _changed_paths(self, c: Conn, rid: int, lo: int, hi: int,
                       upper: str | None) -> Any:
        """fetch() over the distinct paths with a version boundary in (lo, hi]."""
        up = " AND path < ?" if upper is not None else ""
        sql = ("SELECT path FROM ("
               "SELECT path FROM entries INDEXED BY entries_from WHERE repo_id = ? "
               f"AND from_seq > ? AND from_seq <= ? AND path {{op}} ?{up} UNION "
               "SELECT path FROM entries INDEXED BY entries_to WHERE repo_id = ? "
               f"AND to_seq > ? AND to_seq <= ? AND path {{op}} ?{up}) AS changed "
               "ORDER BY path LIMIT ?")
        sql_incl, sql_excl = sql.format(op=">="), sql.format(op=">")

        def fetch(lower: str, inclusive: bool, limit: int) -> list[tuple[str, Any]]:
            one = (rid, lo, hi, lower, upper) if upper is not None else (rid, lo, hi, lower)
            rows = c.execute(sql_incl if inclusive else sql_excl, (*one, *one, limit)).fetchall()
            return [(row[0], None) for row in rows]
        return fetch

    def diff(self, org: str, repo: str, *, left: str, right: str, prefix: str = "",
             delimiter: str | None = None, after: str | None = None, amount: int = 100) -> Page:
        delimiter = v.listing_args(prefix, after, delimiter)
        with self.db.read() as c:
            r = self.repo_row(c, org, repo)
            lseq = self._resolve_ref(c, r, left) if left else 0
            rseq = self._resolve_ref(c, r, right)
            lo, hi = min(lseq, rseq), max(lseq, rseq)
            upper = key_successor(prefix) if prefix else None
            lower, incl = start_bound(prefix, after)
            src = Source(self._changed_paths(c, r["id"], lo, hi, upper), lower, incl,
                         16 if delimiter else amount + 1, amount + 1)
            rid = r["id"]

            def next_item() -> tuple[str, Any, bool] | None:
                while (row := src.peek()) is not None:
                    src.pop()
                    path = row[0]
                    lo_obj, hi_obj = self._at(c, rid, path, lseq), self._at(c, rid, path, rseq)
                    if _same_version(lo_obj, hi_obj):
                        continue
                    if lo_obj is None:
                        return path, ("added", hi_obj), False
                    if hi_obj is None:
                        return path, ("removed", lo_obj), False
                    return path, ("changed", hi_obj), False
                return None

            items, has_more = paginate(next_item, src.seek, prefix=prefix, delimiter=delimiter,
                                       after=after, amount=amount)
        out = [DiffItem(i.path, i.kind, i.payload[0] if i.payload else "changed",
                        i.payload[1] if i.payload else None) for i in items]
        return Page(out, has_more, out[-1].path if has_more else None)

    def revert(self, org: str, repo: str, commit_id: str, message: str | None,
               metadata: dict[str, str], who: Principal) -> str:
        with self.db.write() as c:
            r = self.repo_row(c, org, repo, lock=True)
            target = self._commit_row(c, r, commit_id)
            seq, head, rid = target["seq"], r["head_seq"], r["id"]
            paths = [row[0] for row in c.execute(
                "SELECT path FROM entries WHERE repo_id = ? AND from_seq = ? UNION "
                "SELECT path FROM entries WHERE repo_id = ? AND to_seq = ?",
                (rid, seq, rid, seq))]
            uid = str(uuid.uuid4())
            sess = c.execute(
                "INSERT INTO sessions(uid, repo_id, base_seq, state, created_by, created_at) "
                "VALUES (?,?,?,'internal',?,?) RETURNING *",
                (uid, rid, head, who.user_id, now_rfc3339())).fetchone()
            conflicts = []
            for path in paths:
                before, after_ = self._at(c, rid, path, seq - 1), self._at(c, rid, path, seq)
                if not _same_version(self._at(c, rid, path, head), after_):
                    conflicts.append(path)
                    continue
                if before is None:
                    c.execute("INSERT INTO staged(session_id, path, op) VALUES (?,?,'delete')",
                              (sess["id"], path))
                else:
                    self.stage_put(c, sess["id"], before)
            if conflicts:
                raise Conflict(
                    f"cannot revert: {len(conflicts)} path(s) changed since the commit: "
                    + ", ".join(repr(p) for p in sorted(conflicts)[:5]), "conflict")
            msg = message if message is not None else f'Revert "{target["message"]}"'
            return self.apply_session(c, r, sess, msg, metadata, who)
