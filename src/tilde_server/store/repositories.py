"""Organizations, repositories and sessions (create, commit, rebase, roll back): a part
of the engine (engine.py, core.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from tilde_server import crashpoints as cp
from tilde_server.store import validation as v
from tilde_server.store.core import (
    MAX_REBASE_CONFLICTS,
    Page,
    Principal,
    StoreCore,
    hash_key,
    now_rfc3339,
)
from tilde_server.store.errors import (
    BadRequest,
    Conflict,
    Unauthorized,
)


class RepositoriesMixin(StoreCore):

    # ======================================================================== auth
    def authenticate(self, key: str) -> Principal:
        with self.db.read() as c:
            row = c.execute(
                "SELECT u.id, u.username FROM api_keys k JOIN users u ON u.id = k.user_id "
                "WHERE k.key_hash = ? AND k.revoked_at IS NULL", (hash_key(key),)).fetchone()
        if row is None:
            raise Unauthorized("invalid API key", "invalid_api_key")
        return Principal(row[0], row[1])

    # ======================================================================== organizations
    def list_orgs(self) -> list[dict[str, Any]]:
        with self.db.read() as c:
            rows = c.execute("SELECT * FROM orgs WHERE deleted_at IS NULL ORDER BY name").fetchall()
        return [dict(r) for r in rows]

    def get_org(self, name: str) -> dict[str, Any]:
        with self.db.read() as c:
            return dict(self.org_row(c, name))

    def create_org(self, name: str, display_name: str) -> dict[str, Any]:
        v.org_name(name)
        v.text(display_name, "display_name")
        with self.db.write() as c:
            if c.execute("SELECT 1 FROM orgs WHERE name = ? AND deleted_at IS NULL",
                         (name,)).fetchone():
                raise Conflict(f"organization {name!r} already exists", "already_exists")
            c.execute("INSERT INTO orgs(uid, name, display_name, created_at) VALUES (?,?,?,?)",
                      (str(uuid.uuid4()), name, display_name or name, now_rfc3339()))
            return dict(self.org_row(c, name))

    def delete_org(self, name: str) -> None:
        """Soft delete; its repositories go with it."""
        with self.db.write() as c:
            org = self.org_row(c, name)
            t = now_rfc3339()
            c.execute("UPDATE repos SET deleted_at = ? WHERE org_id = ? AND deleted_at IS NULL",
                      (t, org["id"]))
            c.execute("UPDATE orgs SET deleted_at = ? WHERE id = ?", (t, org["id"]))

    def list_repos(self, org: str, after: str | None, amount: int) -> Page:
        with self.db.read() as c:
            o = self.org_row(c, org)
            rows = c.execute(
                self._REPO_SELECT + "WHERE r.org_id = ? AND r.deleted_at IS NULL AND r.name > ? "
                "ORDER BY r.name LIMIT ?", (o["id"], after or "", amount + 1)).fetchall()
        items = [dict(r) for r in rows[:amount]]
        has_more = len(rows) > amount
        return Page(items, has_more, items[-1]["name"] if has_more else None)

    def get_repo(self, org: str, name: str) -> dict[str, Any]:
        with self.db.read() as c:
            return dict(self.repo_row(c, org, name))

    def create_repo(self, org: str, name: str, fields: dict[str, Any],
                    who: Principal) -> dict[str, Any]:
        v.repo_name(name)
        with self.db.write() as c:
            o = self.org_row(c, org)
            if c.execute("SELECT 1 FROM repos WHERE org_id = ? AND name = ? AND deleted_at IS NULL",
                         (o["id"], name)).fetchone():
                raise Conflict(f"repository {org}/{name} already exists", "already_exists")
            c.execute(
                "INSERT INTO repos(uid, org_id, name, description, visibility, "
                "session_max_duration_days, retention_days, created_by, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (str(uuid.uuid4()), o["id"], name, fields.get("description", ""),
                 fields.get("visibility", "private"), fields.get("session_max_duration_days"),
                 fields.get("retention_days"), who.user_id, now_rfc3339()))
            if "require_approval_for_agents" in fields:  # column added by store/identity.py
                c.execute("UPDATE repos SET require_approval_for_agents = ? "
                          "WHERE org_id = ? AND name = ? AND deleted_at IS NULL",
                          (int(fields["require_approval_for_agents"]), o["id"], name))
            return dict(self.repo_row(c, org, name))

    def update_repo(self, org: str, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Partial merge: only the given keys change."""
        allowed = ("description", "visibility", "session_max_duration_days", "retention_days",
                   "require_approval_for_agents")
        with self.db.write() as c:
            r = self.repo_row(c, org, name, lock=True)
            for k in allowed:
                if k in fields:
                    c.execute(f"UPDATE repos SET {k} = ? WHERE id = ?", (fields[k], r["id"]))
            return dict(self.repo_row(c, org, name))

    def delete_repo(self, org: str, name: str) -> None:
        with self.db.write() as c:
            r = self.repo_row(c, org, name, lock=True)
            c.execute("UPDATE repos SET deleted_at = ? WHERE id = ?", (now_rfc3339(), r["id"]))

    # ======================================================================== sessions
    def create_session(self, org: str, repo: str, who: Principal) -> str:
        uid = str(uuid.uuid4())
        with self.db.write() as c:
            r = self.repo_row(c, org, repo)
            c.execute("INSERT INTO sessions(uid, repo_id, base_seq, state, created_by, created_at) "
                      "VALUES (?,?,?,?,?,?)",
                      (uid, r["id"], r["head_seq"], "open", who.user_id, now_rfc3339()))
        return uid

    def commit_session(self, org: str, repo: str, sid: str, message: str,
                       metadata: dict[str, str], who: Principal) -> str:
        with self.db.write() as c:
            r = self.repo_row(c, org, repo, lock=True)
            s = self.session_row(c, r, sid)
            if not c.execute("SELECT 1 FROM staged WHERE session_id = ? LIMIT 1",
                             (s["id"],)).fetchone():
                raise BadRequest("nothing to commit: the session has no staged changes",
                                 "no_changes")
            self.check_conflicts(c, r, s)
            commit_id = self.apply_session(c, r, s, message, metadata, who)
            cp.reached(cp.COMMIT_BEFORE_DB_COMMIT)
        cp.reached(cp.COMMIT_AFTER_DB_COMMIT)
        self.blobs.drop_spools(sid)
        return commit_id

    def rebase_session(self, org: str, repo: str, sid: str) -> str:
        """Move an open session's base to head, keeping its staged changes (13.); returns
        the new base commit id ("" for an empty repository). Conflict (with `conflicts`,
        at most MAX_REBASE_CONFLICTS paths) changes nothing."""
        with self.db.write() as c:
            r = self.repo_row(c, org, repo, lock=True)
            s = self.session_row(c, r, sid)
            head = r["head_seq"]
            candidates = self._changed_since_base(c, r, s)
            conflicts = self._conflicts(c, r, s, candidates)
            if conflicts:
                shown = ", ".join(repr(p) for p in conflicts[:5])
                more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
                raise Conflict(
                    f"cannot rebase: {len(conflicts)} staged path(s) changed by another "
                    f"commit since this session started: {shown}{more}", "conflict",
                    details={"conflicts": conflicts[:MAX_REBASE_CONFLICTS]})
            for path in candidates:  # a tombstone must name a path of the base (13.)
                if self._at(c, r["id"], path, head) is None:
                    c.execute("DELETE FROM staged WHERE session_id = ? AND path = ? "
                              "AND op = 'delete'", (s["id"], path))
            c.execute("UPDATE sessions SET base_seq = ? WHERE id = ?", (head, s["id"]))
            row = c.execute("SELECT id FROM commits WHERE repo_id = ? AND seq = ?",
                            (r["id"], head)).fetchone()
        return str(row[0]) if row else ""

    def rollback_session(self, org: str, repo: str, sid: str) -> None:
        with self.db.write() as c:
            r = self.repo_row(c, org, repo)
            s = self.session_row(c, r, sid)
            blobs = [row[0] for row in c.execute(
                "SELECT DISTINCT blob FROM staged WHERE session_id = ? AND blob IS NOT NULL",
                (s["id"],))]
            c.execute("DELETE FROM staged WHERE session_id = ?", (s["id"],))
            c.execute("DELETE FROM upload_parts WHERE address IN "
                      "(SELECT address FROM uploads WHERE session_id = ?)", (s["id"],))
            c.execute("DELETE FROM uploads WHERE session_id = ?", (s["id"],))
            c.execute("UPDATE sessions SET state = 'rolled_back', closed_at = ? WHERE id = ?",
                      (now_rfc3339(), s["id"]))
            cp.reached(cp.ROLLBACK_BEFORE_DB_COMMIT)
        cp.reached(cp.ROLLBACK_AFTER_DB_COMMIT)
        self.blobs.drop_spools(sid)
        self.collect_blobs(blobs)
