"""Identity: users, organization members, agents, roles, API keys, groups, policies,
attachments, effective policies, and commit approvals. No HTTP here; every method blocks.

Subtleties:
1. The tables are added to an existing data directory by `ensure_schema` (CREATE ... IF NOT
   EXISTS, one guarded ALTER TABLE), so directories made before identity existed keep working
   and nothing of the original schema changes. The bootstrap `admin` user is a server admin.
2. Agent and role API keys (`cak-...`) are stored only as HMAC-SHA256 with a server secret kept
   (keys.py: `<data>/identity.key`, 0600, or the --secret-key-file); a stolen database alone
   cannot check guesses. Lookups go
   to the database on every request, so a revoked key is refused on the very next request.
3. Group membership nests (a group can be a member of a group); cycles are refused when a
   member is added, and resolution is one recursive CTE.
4. Every organization holds one read-only copy of each built-in role policy; a member's role
   attaches its copy implicitly (EffectivePolicy source `role`).
5. Commit approval: an agent's commit in a repository with `require_approval_for_agents`
   moves the session to state `pending_approval` (so it takes no more writes) and records the
   message; approving applies it through the engine's normal commit path (conflicts: 409,
   the approval stays pending), rejecting rolls the session back.
6. `last_used_at` of agent and role keys (and of their agent or role) is written at most once
   per LAST_USED_EVERY seconds per key, and only when the write lock is free at that moment:
   authenticating never waits for a writer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tilde_server.authz.builtin import BUILTIN_POLICIES, DESCRIPTIONS, ROLES
from tilde_server.store import dialect
from tilde_server.store import validation as v
from tilde_server.store.db import SCHEMA_LOCK, Conn, Row
from tilde_server.store.engine import (
    ADMIN_USERNAME,
    Page,
    Principal,
    Store,
    generate_api_key,
    now_rfc3339,
)
from tilde_server.store.engine import hash_key as hash_user_key
from tilde_server.store.errors import BadRequest, Conflict, NotFound, Unauthorized

LAST_USED_EVERY = 60.0  # seconds: last_used_at is written at most this often per key
AGENT_KEY_PREFIX = "cak-"
PRINCIPAL_TYPES = ("user", "group", "role", "agent")
SUBJECT_TYPES = ("user", "group", "role", "agent")
NAME_RE_DOC = "1-100 of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit"

SCHEMA = """
CREATE TABLE IF NOT EXISTS server_admins (user_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS org_members (
    org_id INTEGER NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL, joined_at TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id));
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY, org_id INTEGER NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
    metadata TEXT NOT NULL, inline_policy TEXT NOT NULL, inline_policy_updated_at TEXT,
    created_by_type TEXT NOT NULL, created_by TEXT NOT NULL, created_by_name TEXT NOT NULL,
    created_at TEXT NOT NULL, last_used_at TEXT, UNIQUE (org_id, name));
CREATE TABLE IF NOT EXISTS roles (
    id TEXT PRIMARY KEY, org_id INTEGER NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
    created_by_type TEXT NOT NULL, created_by TEXT NOT NULL, created_by_name TEXT NOT NULL,
    created_at TEXT NOT NULL, last_used_at TEXT, UNIQUE (org_id, name));
CREATE TABLE IF NOT EXISTS principal_keys (
    id TEXT PRIMARY KEY, org_id INTEGER NOT NULL, principal_type TEXT NOT NULL,
    principal_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE, token_hint TEXT NOT NULL, created_at TEXT NOT NULL,
    last_used_at TEXT, revoked_at TEXT);
CREATE INDEX IF NOT EXISTS principal_keys_owner ON principal_keys(principal_type, principal_id);
CREATE TABLE IF NOT EXISTS org_groups (
    id TEXT PRIMARY KEY, org_id INTEGER NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
    created_by_type TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL,
    UNIQUE (org_id, name));
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL, subject_type TEXT NOT NULL, subject_id TEXT NOT NULL,
    added_at TEXT NOT NULL, PRIMARY KEY (group_id, subject_type, subject_id));
CREATE INDEX IF NOT EXISTS group_members_subject ON group_members(subject_type, subject_id);
CREATE TABLE IF NOT EXISTS policies (
    id TEXT PRIMARY KEY, org_id INTEGER NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
    policy_text TEXT NOT NULL, builtin_role TEXT, created_by_type TEXT NOT NULL,
    created_by TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    UNIQUE (org_id, name));
CREATE TABLE IF NOT EXISTS policy_attachments (
    policy_id TEXT NOT NULL, principal_type TEXT NOT NULL, principal_id TEXT NOT NULL,
    attached_by_type TEXT NOT NULL, attached_by TEXT NOT NULL, attached_at TEXT NOT NULL,
    PRIMARY KEY (policy_id, principal_type, principal_id));
CREATE INDEX IF NOT EXISTS policy_attachments_principal
    ON policy_attachments(principal_type, principal_id);
CREATE TABLE IF NOT EXISTS approvals (
    session_id INTEGER PRIMARY KEY, repo_id INTEGER NOT NULL, message TEXT NOT NULL,
    metadata TEXT NOT NULL, requested_by_type TEXT NOT NULL, requested_by TEXT NOT NULL,
    requested_by_name TEXT NOT NULL, requested_at TEXT NOT NULL, state TEXT NOT NULL,
    decided_by TEXT, decided_at TEXT, commit_id TEXT)
"""


def _name(name: str, what: str) -> str:
    """Names of agents, roles, groups and policies: path-safe, bounded."""
    v.text(name, what)
    ok = 1 <= len(name) <= 100 and name[0].isalnum() and name.isascii() and all(
        ch.isalnum() or ch in "._-" for ch in name)
    if not ok:
        raise BadRequest(f"invalid {what}: use {NAME_RE_DOC}", "invalid_name")
    return name


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise NotFound(f"{what} {value!r} not found") from None


@dataclass(frozen=True)
class EffectivePolicy:
    policy_id: str
    policy_name: str
    policy_text: str
    is_builtin: bool
    source: str  # role | direct | group | inline
    source_name: str


class Identity:
    """Identity tables on top of an open `Store` (same database, same write lock)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db
        self._secret = store.keys.identity
        self._last_touch: dict[str, float] = {}  # key id -> when last_used_at was written
        self.ensure_schema()

    # ======================================================================== set-up
    def ensure_schema(self) -> None:
        with self.db.write() as c:
            c.lock_key(SCHEMA_LOCK)  # processes starting together (db.py)
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    c.ddl(stmt)
            if "require_approval_for_agents" not in c.columns("repos"):
                c.ddl("ALTER TABLE repos ADD COLUMN require_approval_for_agents "
                      "INTEGER NOT NULL DEFAULT 0")
            if "committer_type" in c.columns("commits"):
                # Commits made before format 3 by agents and roles: attribute them by kind.
                for kind, table in (("agent", "agents"), ("role", "roles")):
                    c.execute(f"UPDATE commits SET committer_type = ? WHERE committer_type "
                              f"IS NULL AND committer_id IN (SELECT id FROM {table})", (kind,))
                c.execute("UPDATE commits SET committer_type = 'user' "
                          "WHERE committer_type IS NULL")
            c.execute("INSERT INTO server_admins(user_id) SELECT id FROM users "
                      "WHERE username = ? ON CONFLICT DO NOTHING", (ADMIN_USERNAME,))
            for org in c.execute("SELECT id FROM orgs WHERE deleted_at IS NULL").fetchall():
                self._ensure_builtins(c, org[0])

    def _ensure_builtins(self, c: Conn, org_id: int) -> None:
        have = {r[0] for r in c.execute(
            "SELECT builtin_role FROM policies WHERE org_id = ? AND builtin_role IS NOT NULL",
            (org_id,))}
        t = now_rfc3339()
        for role in ROLES:
            if role in have:
                continue
            name, text = BUILTIN_POLICIES[role]
            c.execute("INSERT INTO policies(id, org_id, name, description, policy_text, "
                      "builtin_role, created_by_type, created_by, created_at, updated_at) "
                      "VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (str(uuid.uuid4()), org_id, name, DESCRIPTIONS[role], text, role,
                       "user", "system", t, t))

    # ======================================================================== users (CLI)
    def add_user(self, username: str, *, admin: bool = False) -> tuple[dict[str, Any], str]:
        """A new user and its first API key (returned once, stored only hashed)."""
        _name(username, "username")
        key = generate_api_key()
        with self.db.write() as c:
            if c.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise Conflict(f"user {username!r} already exists", "already_exists")
            uid = str(uuid.uuid4())
            t = now_rfc3339()
            c.execute("INSERT INTO users(id, username, created_at) VALUES (?,?,?)",
                      (uid, username, t))
            c.execute("INSERT INTO api_keys(id, user_id, key_hash, created_at) VALUES (?,?,?,?)",
                      (str(uuid.uuid4()), uid, hash_user_key(key), t))
            if admin:
                c.execute("INSERT INTO server_admins(user_id) VALUES (?)", (uid,))
        return {"id": uid, "username": username, "admin": admin, "created_at": t}, key

    def list_users(self) -> list[dict[str, Any]]:
        with self.db.read() as c:
            rows = c.execute(
                "SELECT u.id, u.username, u.created_at, a.user_id IS NOT NULL AS admin, "
                "(SELECT count(*) FROM api_keys k WHERE k.user_id = u.id "
                " AND k.revoked_at IS NULL) AS keys FROM users u "
                "LEFT JOIN server_admins a ON a.user_id = u.id ORDER BY u.username").fetchall()
        return [dict(r) for r in rows]

    def remove_user(self, username: str) -> None:
        """Delete a user, its keys, memberships and attachments (commits keep its name)."""
        with self.db.write() as c:
            row = c.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                raise NotFound(f"user {username!r} not found")
            uid = row[0]
            admins = [r[0] for r in c.execute("SELECT user_id FROM server_admins")]
            if admins == [uid]:
                raise Conflict("cannot remove the last server admin", "last_admin")
            c.execute("DELETE FROM api_keys WHERE user_id = ?", (uid,))
            c.execute("DELETE FROM server_admins WHERE user_id = ?", (uid,))
            c.execute("DELETE FROM org_members WHERE user_id = ?", (uid,))
            c.execute("DELETE FROM group_members WHERE subject_type = 'user' AND subject_id = ?",
                      (uid,))
            c.execute("DELETE FROM policy_attachments WHERE principal_type = 'user' "
                      "AND principal_id = ?", (uid,))
            c.execute("DELETE FROM users WHERE id = ?", (uid,))

    # ======================================================================== authentication
    def _hmac(self, token: str) -> str:
        return hmac.new(self._secret, token.encode("utf-8"), hashlib.sha256).hexdigest()

    def authenticate(self, key: str) -> Principal:
        """Any bearer key -> Principal; Unauthorized for unknown or revoked keys."""
        if not key.startswith(AGENT_KEY_PREFIX):
            p = self.store.authenticate(key)
            if p.type != "user":  # e.g. a sandbox token standing for an agent: keep it
                return p
            with self.db.read() as c:
                admin = c.execute("SELECT 1 FROM server_admins WHERE user_id = ?",
                                  (p.user_id,)).fetchone() is not None
            return Principal(p.user_id, p.username, "user", None, admin)
        with self.db.read() as c:
            row = c.execute(
                "SELECT id, org_id, principal_type, principal_id, last_used_at "
                "FROM principal_keys WHERE key_hash = ? AND revoked_at IS NULL",
                (self._hmac(key),)).fetchone()
            if row is None:
                raise Unauthorized("invalid API key", "invalid_api_key")
            table = "agents" if row["principal_type"] == "agent" else "roles"
            owner = c.execute(f"SELECT id, name, org_id FROM {table} WHERE id = ?",
                              (row["principal_id"],)).fetchone()
            alive = c.execute("SELECT 1 FROM orgs WHERE id = ? AND deleted_at IS NULL",
                              (row["org_id"],)).fetchone()
        if owner is None or alive is None:
            raise Unauthorized("invalid API key", "invalid_api_key")
        self._touch(row["id"], table, owner["id"], row["last_used_at"])
        return Principal(owner["id"], owner["name"], row["principal_type"], owner["org_id"])

    def _touch(self, key_id: str, table: str, owner_id: str, last: str | None) -> None:
        """Record `last_used_at` of a key and its agent or role, at most once per
        LAST_USED_EVERY seconds per key, and never waiting for the write lock: when another
        write holds it, this use is simply not recorded (the next one after it will be)."""
        now = time.time()
        if last is not None and self._last_touch.get(key_id, 0.0) > now - LAST_USED_EVERY:
            return
        if last is not None:
            try:
                seen = datetime.strptime(last, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
                if seen.timestamp() > now - LAST_USED_EVERY:
                    self._last_touch[key_id] = seen.timestamp()
                    return
            except ValueError:
                pass
        t = now_rfc3339()

        def touch(c: Conn) -> None:
            c.execute("UPDATE principal_keys SET last_used_at = ? WHERE id = ?", (t, key_id))
            c.execute(f"UPDATE {table} SET last_used_at = ? WHERE id = ?", (t, owner_id))

        if self.db.try_write(touch):  # never waits for a writer: next time otherwise
            self._last_touch[key_id] = now

    # ======================================================================== organizations
    def org_created(self, org_name: str, creator: Principal) -> None:
        """Built-in policies for a new organization; a user creator becomes its owner."""
        with self.db.write() as c:
            org = self.store.org_row(c, org_name)
            self._ensure_builtins(c, org["id"])
            if creator.type == "user":
                c.execute("INSERT INTO org_members(org_id, user_id, role, joined_at) "
                          "VALUES (?,?,?,?)" + dialect.replace_on("org_id, user_id",
                                                                  "role, joined_at"),
                          (org["id"], creator.user_id, "owner", now_rfc3339()))

    def visible_org_ids(self, who: Principal) -> set[int] | None:
        """Organizations `who` belongs to (None: all, for server admins)."""
        if who.is_admin:
            return None
        if who.org_id is not None:
            return {who.org_id}
        with self.db.read() as c:
            return {r[0] for r in c.execute("SELECT org_id FROM org_members WHERE user_id = ?",
                                            (who.user_id,))}

    def me(self, who: Principal) -> dict[str, Any]:
        """`GET /auth/me`: who the key belongs to and the organizations it can see. Agents
        and roles answer too (`source` says which), so `tilde auth status` works for any key."""
        visible = self.visible_org_ids(who)
        with self.db.read() as c:
            created = ""
            if who.type == "user":
                row = c.execute("SELECT created_at FROM users WHERE id = ?",
                                (who.user_id,)).fetchone()
                created = row[0] if row else ""
            else:
                table = "agents" if who.type == "agent" else "roles"
                row = c.execute(f"SELECT created_at FROM {table} WHERE id = ?",
                                (who.user_id,)).fetchone()
                created = row[0] if row else ""
            orgs = c.execute("SELECT id, uid, name, display_name FROM orgs "
                             "WHERE deleted_at IS NULL ORDER BY name").fetchall()
            if who.type == "user" and visible is None:  # a server admin: its memberships
                visible = {r[0] for r in c.execute(
                    "SELECT org_id FROM org_members WHERE user_id = ?", (who.user_id,))}
        return {
            "user": {"id": who.user_id, "username": who.username, "email": "", "full_name": "",
                     "source": who.type, "status": "active", "created_at": created},
            "organizations": [{"id": o["uid"], "name": o["name"],
                               "display_name": o["display_name"]}
                              for o in orgs if visible is None or o["id"] in visible],
            "has_password": False,
        }

    def _org(self, c: Conn, name: str) -> Row:
        return self.store.org_row(c, name)

    # ======================================================================== members
    def _member_row(self, r: Row, org_uid: str) -> dict[str, Any]:
        return {"user_id": r["user_id"], "username": r["username"], "full_name": "",
                "email": "", "organization_id": org_uid, "joined_at": r["joined_at"],
                "role": r["role"]}

    def list_members(self, org: str) -> list[dict[str, Any]]:
        with self.db.read() as c:
            o = self._org(c, org)
            rows = c.execute(
                "SELECT m.user_id, u.username, m.role, m.joined_at FROM org_members m "
                "JOIN users u ON u.id = m.user_id WHERE m.org_id = ? ORDER BY u.username",
                (o["id"],)).fetchall()
        return [self._member_row(r, o["uid"]) for r in rows]

    def add_member(self, org: str, *, username: str | None, user_id: str | None,
                   role: str) -> dict[str, Any]:
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}", "invalid_role")
        with self.db.write() as c:
            o = self._org(c, org)
            u = None
            if user_id:
                u = c.execute("SELECT id, username FROM users WHERE id = ?", (user_id,)).fetchone()
            if u is None and username:
                u = c.execute("SELECT id, username FROM users WHERE username = ? OR id = ?",
                              (username, username)).fetchone()
            if u is None:
                raise NotFound(f"user {username or user_id!r} not found", "user_not_found")
            if c.execute("SELECT 1 FROM org_members WHERE org_id = ? AND user_id = ?",
                         (o["id"], u["id"])).fetchone():
                c.execute("UPDATE org_members SET role = ? WHERE org_id = ? AND user_id = ?",
                          (role, o["id"], u["id"]))
            else:
                c.execute("INSERT INTO org_members(org_id, user_id, role, joined_at) "
                          "VALUES (?,?,?,?)", (o["id"], u["id"], role, now_rfc3339()))
            row = c.execute(
                "SELECT m.user_id, u.username, m.role, m.joined_at FROM org_members m "
                "JOIN users u ON u.id = m.user_id WHERE m.org_id = ? AND m.user_id = ?",
                (o["id"], u["id"])).fetchone()
            return self._member_row(row, o["uid"])

    def remove_member(self, org: str, user_id: str) -> None:
        with self.db.write() as c:
            o = self._org(c, org)
            row = c.execute("SELECT role FROM org_members WHERE org_id = ? AND user_id = ?",
                            (o["id"], user_id)).fetchone()
            if row is None:
                raise NotFound(f"member {user_id!r} not found", "member_not_found")
            if row["role"] == "owner" and c.execute(
                    "SELECT count(*) FROM org_members WHERE org_id = ? AND role = 'owner'",
                    (o["id"],)).fetchone()[0] == 1:
                raise Conflict("cannot remove the last owner of the organization", "last_owner")
            c.execute("DELETE FROM org_members WHERE org_id = ? AND user_id = ?",
                      (o["id"], user_id))

    # ======================================================================== agents, roles
    @staticmethod
    def _creator(who: Principal) -> tuple[str, str, str]:
        return who.type, who.user_id, who.username

    def _agent_json(self, r: Row, org_uid: str) -> dict[str, Any]:
        return {"id": r["id"], "name": r["name"], "description": r["description"],
                "metadata": json.loads(r["metadata"]), "inline_policy": r["inline_policy"],
                "inline_policy_updated_at": r["inline_policy_updated_at"],
                "organization_id": org_uid, "created_by_type": r["created_by_type"],
                "created_by": r["created_by"], "created_by_name": r["created_by_name"],
                "created_at": r["created_at"], "last_used_at": r["last_used_at"]}

    def _role_json(self, r: Row, org_uid: str) -> dict[str, Any]:
        return {"id": r["id"], "name": r["name"], "description": r["description"],
                "organization_id": org_uid, "created_by_type": r["created_by_type"],
                "created_by": r["created_by"], "created_by_name": r["created_by_name"],
                "created_at": r["created_at"], "last_used_at": r["last_used_at"]}

    def _named(self, c: Conn, table: str, org_id: int, name: str,
               what: str) -> Row:
        row = c.execute(f"SELECT * FROM {table} WHERE org_id = ? AND name = ?",
                        (org_id, name)).fetchone()
        if row is None:
            raise NotFound(f"{what} {name!r} not found", f"{what}_not_found")
        return row

    def _page(self, c: Conn, sql: str, args: tuple[Any, ...], after: str | None,
              amount: int, key: str) -> tuple[list[Row], bool, str | None]:
        rows = c.execute(sql + f" AND {key} > ? ORDER BY {key} LIMIT ?",
                         (*args, after or "", amount + 1)).fetchall()
        has_more = len(rows) > amount
        rows = rows[:amount]
        return rows, has_more, (rows[-1][key] if has_more else None)

    def list_principals(self, kind: str, org: str, after: str | None, amount: int) -> Page:
        table = "agents" if kind == "agent" else "roles"
        with self.db.read() as c:
            o = self._org(c, org)
            rows, more, nxt = self._page(c, f"SELECT * FROM {table} WHERE org_id = ?",
                                         (o["id"],), after, amount, "name")
            to_json = self._agent_json if kind == "agent" else self._role_json
            return Page([to_json(r, o["uid"]) for r in rows], more, nxt)

    def get_principal(self, kind: str, org: str, name: str) -> dict[str, Any]:
        with self.db.read() as c:
            o = self._org(c, org)
            if kind == "agent":
                return self._agent_json(self._named(c, "agents", o["id"], name, "agent"),
                                        o["uid"])
            return self._role_json(self._named(c, "roles", o["id"], name, "role"), o["uid"])

    def create_agent(self, org: str, name: str, description: str, metadata: dict[str, str],
                     inline_policy: str, who: Principal) -> dict[str, Any]:
        _name(name, "agent name")
        with self.db.write() as c:
            o = self._org(c, org)
            if c.execute("SELECT 1 FROM agents WHERE org_id = ? AND name = ?",
                         (o["id"], name)).fetchone():
                raise Conflict(f"agent {name!r} already exists", "already_exists")
            t = now_rfc3339()
            c.execute("INSERT INTO agents(id, org_id, name, description, metadata, inline_policy,"
                      " inline_policy_updated_at, created_by_type, created_by, created_by_name,"
                      " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                      (str(uuid.uuid4()), o["id"], name, description, json.dumps(metadata),
                       inline_policy, t if inline_policy else None, *self._creator(who), t))
            return self._agent_json(self._named(c, "agents", o["id"], name, "agent"), o["uid"])

    def update_agent(self, org: str, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        with self.db.write() as c:
            o = self._org(c, org)
            a = self._named(c, "agents", o["id"], name, "agent")
            if "description" in fields:
                c.execute("UPDATE agents SET description = ? WHERE id = ?",
                          (fields["description"], a["id"]))
            if "metadata" in fields:
                c.execute("UPDATE agents SET metadata = ? WHERE id = ?",
                          (json.dumps(fields["metadata"]), a["id"]))
            if "inline_policy" in fields:
                c.execute("UPDATE agents SET inline_policy = ?, inline_policy_updated_at = ? "
                          "WHERE id = ?", (fields["inline_policy"], now_rfc3339(), a["id"]))
            return self._agent_json(self._named(c, "agents", o["id"], name, "agent"), o["uid"])

    def create_role(self, org: str, name: str, description: str,
                    who: Principal) -> dict[str, Any]:
        _name(name, "role name")
        with self.db.write() as c:
            o = self._org(c, org)
            if c.execute("SELECT 1 FROM roles WHERE org_id = ? AND name = ?",
                         (o["id"], name)).fetchone():
                raise Conflict(f"role {name!r} already exists", "already_exists")
            c.execute("INSERT INTO roles(id, org_id, name, description, created_by_type, "
                      "created_by, created_by_name, created_at) VALUES (?,?,?,?,?,?,?,?)",
                      (str(uuid.uuid4()), o["id"], name, description, *self._creator(who),
                       now_rfc3339()))
            return self._role_json(self._named(c, "roles", o["id"], name, "role"), o["uid"])

    def delete_principal(self, kind: str, org: str, name: str) -> None:
        """Delete an agent or role with everything it owns, in one transaction: its API keys,
        group memberships and policy attachments; an agent also its secrets, the sandbox
        tokens issued for it (code running for it loses API access at once) and its sandbox
        triggers (disabled: they would run as nobody)."""
        table = "agents" if kind == "agent" else "roles"
        with self.db.write() as c:
            o = self._org(c, org)
            p = self._named(c, table, o["id"], name, kind)
            c.execute("DELETE FROM principal_keys WHERE principal_type = ? AND principal_id = ?",
                      (kind, p["id"]))
            if kind == "agent" and c.has_table("secrets"):
                c.execute("DELETE FROM secrets WHERE scope = 'agent' AND scope_id = ?", (p["id"],))
            # sandbox/records.py: `principal` is a JSON Principal
            by_principal = (f"{dialect.json_text(c.dialect, 'principal', 'type')} = ? AND "
                            f"{dialect.json_text(c.dialect, 'principal', 'user_id')} = ?")
            if c.has_table("sandbox_tokens"):
                c.execute(f"DELETE FROM sandbox_tokens WHERE {by_principal}", (kind, p["id"]))
            if c.has_table("sandbox_triggers"):
                c.execute(f"UPDATE sandbox_triggers SET enabled = 0, updated_at = ? "
                          f"WHERE {by_principal}", (now_rfc3339(), kind, p["id"]))
            c.execute("DELETE FROM group_members WHERE subject_type = ? AND subject_id = ?",
                      (kind, p["id"]))
            c.execute("DELETE FROM policy_attachments WHERE principal_type = ? "
                      "AND principal_id = ?", (kind, p["id"]))
            c.execute(f"DELETE FROM {table} WHERE id = ?", (p["id"],))

    # ======================================================================== API keys
    @staticmethod
    def _key_json(r: Row, token: str = "") -> dict[str, Any]:
        out = {"id": r["id"], "name": r["name"], "description": r["description"],
               "token_hint": r["token_hint"], "created_at": r["created_at"],
               "last_used_at": r["last_used_at"], "revoked_at": r["revoked_at"]}
        if token:
            out["token"] = token
        return out

    def _owner(self, c: Conn, kind: str, org: str, name: str) -> Row:
        o = self._org(c, org)
        return self._named(c, "agents" if kind == "agent" else "roles", o["id"], name, kind)

    def list_keys(self, kind: str, org: str, name: str, after: str | None,
                  amount: int) -> Page:
        with self.db.read() as c:
            p = self._owner(c, kind, org, name)
            rows, more, nxt = self._page(
                c, "SELECT * FROM principal_keys WHERE principal_type = ? AND principal_id = ?",
                (kind, p["id"]), after, amount, "id")
        return Page([self._key_json(r) for r in rows], more, nxt)

    def get_key(self, kind: str, org: str, name: str, key_id: str) -> dict[str, Any]:
        with self.db.read() as c:
            p = self._owner(c, kind, org, name)
            r = c.execute("SELECT * FROM principal_keys WHERE id = ? AND principal_type = ? "
                          "AND principal_id = ?", (key_id, kind, p["id"])).fetchone()
        if r is None:
            raise NotFound(f"API key {key_id!r} not found", "key_not_found")
        return self._key_json(r)

    def create_key(self, kind: str, org: str, name: str, key_name: str,
                   description: str) -> dict[str, Any]:
        v.text(key_name, "name")
        if not key_name or len(key_name) > 200:
            raise BadRequest("key name must be 1-200 characters", "invalid_name")
        token = AGENT_KEY_PREFIX + secrets.token_urlsafe(32)
        with self.db.write() as c:
            p = self._owner(c, kind, org, name)
            kid = str(uuid.uuid4())
            c.execute("INSERT INTO principal_keys(id, org_id, principal_type, principal_id, name,"
                      " description, key_hash, token_hint, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                      (kid, p["org_id"], kind, p["id"], key_name, description,
                       self._hmac(token), f"{AGENT_KEY_PREFIX}…{token[-4:]}", now_rfc3339()))
            row = c.execute("SELECT * FROM principal_keys WHERE id = ?", (kid,)).fetchone()
        return self._key_json(row, token)

    def revoke_key(self, kind: str, org: str, name: str, key_id: str) -> None:
        with self.db.write() as c:
            p = self._owner(c, kind, org, name)
            r = c.execute("SELECT revoked_at FROM principal_keys WHERE id = ? AND "
                          "principal_type = ? AND principal_id = ?",
                          (key_id, kind, p["id"])).fetchone()
            if r is None:
                raise NotFound(f"API key {key_id!r} not found", "key_not_found")
            if r["revoked_at"] is None:
                c.execute("UPDATE principal_keys SET revoked_at = ? WHERE id = ?",
                          (now_rfc3339(), key_id))

    # ======================================================================== groups
    @staticmethod
    def _group_json(r: Row, org_uid: str) -> dict[str, Any]:
        return {"id": r["id"], "name": r["name"], "description": r["description"],
                "organization_id": org_uid, "created_by_type": r["created_by_type"],
                "created_by": r["created_by"], "created_at": r["created_at"]}

    def _group(self, c: Conn, org_id: int, gid: str) -> Row:
        row = c.execute("SELECT * FROM org_groups WHERE id = ? AND org_id = ?",
                        (_uuid(gid, "group"), org_id)).fetchone()
        if row is None:
            raise NotFound(f"group {gid!r} not found", "group_not_found")
        return row

    def list_groups(self, org: str, after: str | None, amount: int) -> Page:
        with self.db.read() as c:
            o = self._org(c, org)
            rows, more, nxt = self._page(c, "SELECT * FROM org_groups WHERE org_id = ?",
                                         (o["id"],), after, amount, "id")
        return Page([self._group_json(r, o["uid"]) for r in rows], more, nxt)

    def create_group(self, org: str, name: str, description: str,
                     who: Principal) -> dict[str, Any]:
        _name(name, "group name")
        with self.db.write() as c:
            o = self._org(c, org)
            if c.execute("SELECT 1 FROM org_groups WHERE org_id = ? AND name = ?",
                         (o["id"], name)).fetchone():
                raise Conflict(f"group {name!r} already exists", "already_exists")
            gid = str(uuid.uuid4())
            c.execute("INSERT INTO org_groups(id, org_id, name, description, created_by_type, "
                      "created_by, created_at) VALUES (?,?,?,?,?,?,?)",
                      (gid, o["id"], name, description, who.type, who.user_id, now_rfc3339()))
            return self._group_json(self._group(c, o["id"], gid), o["uid"])

    def update_group(self, org: str, gid: str, fields: dict[str, str]) -> dict[str, Any]:
        with self.db.write() as c:
            o = self._org(c, org)
            g = self._group(c, o["id"], gid)
            if "name" in fields:
                _name(fields["name"], "group name")
                if c.execute("SELECT 1 FROM org_groups WHERE org_id = ? AND name = ? AND id != ?",
                             (o["id"], fields["name"], g["id"])).fetchone():
                    raise Conflict(f"group {fields['name']!r} already exists", "already_exists")
                c.execute("UPDATE org_groups SET name = ? WHERE id = ?", (fields["name"], g["id"]))
            if "description" in fields:
                c.execute("UPDATE org_groups SET description = ? WHERE id = ?",
                          (fields["description"], g["id"]))
            return self._group_json(self._group(c, o["id"], g["id"]), o["uid"])

    def delete_group(self, org: str, gid: str) -> None:
        with self.db.write() as c:
            o = self._org(c, org)
            g = self._group(c, o["id"], gid)
            c.execute("DELETE FROM group_members WHERE group_id = ?", (g["id"],))
            c.execute("DELETE FROM group_members WHERE subject_type = 'group' AND subject_id = ?",
                      (g["id"],))
            c.execute("DELETE FROM policy_attachments WHERE principal_type = 'group' "
                      "AND principal_id = ?", (g["id"],))
            c.execute("DELETE FROM org_groups WHERE id = ?", (g["id"],))

    def _subject_name(self, c: Conn, org_id: int, kind: str,
                      sid: str) -> tuple[str, str] | None:
        """(display name, username) of a principal of `kind` in the organization, or None."""
        if kind == "user":
            r = c.execute("SELECT u.username FROM users u JOIN org_members m ON m.user_id = u.id "
                          "AND m.org_id = ? WHERE u.id = ?", (org_id, sid)).fetchone()
            return (r[0], r[0]) if r else None
        table = {"group": "org_groups", "role": "roles", "agent": "agents"}[kind]
        r = c.execute(f"SELECT name FROM {table} WHERE id = ? AND org_id = ?",
                      (sid, org_id)).fetchone()
        return (r[0], "") if r else None

    def _check_principal(self, c: Conn, org_id: int, kind: str, pid: str,
                         allowed: tuple[str, ...], field: str) -> str:
        if kind not in allowed:
            raise BadRequest(f"{field} must be one of {', '.join(allowed)}",
                             "invalid_principal_type")
        if self._subject_name(c, org_id, kind, pid) is None:
            raise NotFound(f"{kind} {pid!r} not found in this organization",
                           "principal_not_found")
        return pid

    def group_detail(self, org: str, gid: str) -> dict[str, Any]:
        with self.db.read() as c:
            o = self._org(c, org)
            g = self._group(c, o["id"], gid)
            members = []
            for m in c.execute("SELECT * FROM group_members WHERE group_id = ? "
                               "ORDER BY added_at, subject_id", (g["id"],)):
                names = self._subject_name(c, o["id"], m["subject_type"], m["subject_id"])
                members.append({"subject_type": m["subject_type"],
                                "subject_id": m["subject_id"],
                                "display_name": names[0] if names else "",
                                "username": names[1] if names else "",
                                "added_at": m["added_at"]})
            attachments = self._attachments(c, o["id"], "group", g["id"])
            return {"group": self._group_json(g, o["uid"]), "members": members,
                    "attachments": attachments}

    def add_group_member(self, org: str, gid: str, kind: str, sid: str) -> None:
        with self.db.write() as c:
            o = self._org(c, org)
            g = self._group(c, o["id"], gid)
            self._check_principal(c, o["id"], kind, sid, SUBJECT_TYPES, "subject_type")
            # `sid` becomes a child of `g`: a cycle if `sid` is `g` or one of g's ancestors.
            if kind == "group" and sid in {g["id"], *self._groups_of(c, "group", g["id"])}:
                raise Conflict("adding this group would make a membership cycle", "cycle")
            c.execute("INSERT INTO group_members(group_id, subject_type, subject_id, "
                      "added_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                      (g["id"], kind, sid, now_rfc3339()))

    def remove_group_member(self, org: str, gid: str, kind: str, sid: str) -> None:
        with self.db.write() as c:
            o = self._org(c, org)
            g = self._group(c, o["id"], gid)
            if kind not in SUBJECT_TYPES:
                raise BadRequest(f"subject_type must be one of {', '.join(SUBJECT_TYPES)}",
                                 "invalid_principal_type")
            if not c.execute("DELETE FROM group_members WHERE group_id = ? AND subject_type = ? "
                             "AND subject_id = ? RETURNING 1", (g["id"], kind, sid)).fetchone():
                raise NotFound("no such group member", "member_not_found")

    @staticmethod
    def _groups_of(c: Conn, kind: str, pid: str) -> list[str]:
        """Ids of every group `pid` belongs to, directly or through nested groups."""
        rows = c.execute(
            "WITH RECURSIVE g(id) AS ("
            " SELECT group_id FROM group_members WHERE subject_type = ? AND subject_id = ?"
            " UNION SELECT gm.group_id FROM group_members gm JOIN g ON gm.subject_type = 'group'"
            " AND gm.subject_id = g.id) SELECT id FROM g", (kind, pid)).fetchall()
        return [r[0] for r in rows]

    def effective_groups(self, org: str, kind: str, pid: str) -> list[dict[str, Any]]:
        with self.db.read() as c:
            o = self._org(c, org)
            if kind not in SUBJECT_TYPES:
                raise BadRequest(f"principal_type must be one of {', '.join(SUBJECT_TYPES)}",
                                 "invalid_principal_type")
            direct = {r[0] for r in c.execute(
                "SELECT group_id FROM group_members WHERE subject_type = ? AND subject_id = ?",
                (kind, pid))}
            out = []
            for gid in self._groups_of(c, kind, pid):
                g = c.execute("SELECT * FROM org_groups WHERE id = ? AND org_id = ?",
                              (gid, o["id"])).fetchone()
                if g is None:
                    continue
                out.append({"group_id": g["id"], "group_name": g["name"],
                            "description": g["description"],
                            "source": "direct" if gid in direct else "nested",
                            "source_name": g["name"]})
            return out

    # ======================================================================== policies
    def _policy_json(self, c: Conn, r: Row,
                     org_uid: str) -> dict[str, Any]:
        n = c.execute("SELECT count(*) FROM policy_attachments WHERE policy_id = ?",
                      (r["id"],)).fetchone()[0]
        return {"id": r["id"], "name": r["name"], "description": r["description"],
                "policy_text": r["policy_text"], "organization_id": org_uid,
                "created_by_type": r["created_by_type"], "created_by": r["created_by"],
                "is_builtin": r["builtin_role"] is not None, "attachment_count": n,
                "created_at": r["created_at"], "updated_at": r["updated_at"]}

    def _policy(self, c: Conn, org_id: int, pid: str) -> Row:
        row = c.execute("SELECT * FROM policies WHERE id = ? AND org_id = ?",
                        (_uuid(pid, "policy"), org_id)).fetchone()
        if row is None:
            raise NotFound(f"policy {pid!r} not found", "policy_not_found")
        return row

    def list_policies(self, org: str, after: str | None, amount: int) -> Page:
        with self.db.read() as c:
            o = self._org(c, org)
            rows, more, nxt = self._page(c, "SELECT * FROM policies WHERE org_id = ?",
                                         (o["id"],), after, amount, "id")
            return Page([self._policy_json(c, r, o["uid"]) for r in rows], more, nxt)

    def get_policy(self, org: str, pid: str) -> dict[str, Any]:
        with self.db.read() as c:
            o = self._org(c, org)
            p = self._policy(c, o["id"], pid)
            return {"policy": self._policy_json(c, p, o["uid"]),
                    "attachments": self._attachments(c, o["id"], policy_id=p["id"])}

    def create_policy(self, org: str, name: str, description: str, text: str,
                      who: Principal) -> dict[str, Any]:
        """`text` must have been validated (authz.rego.validate) by the caller."""
        _name(name, "policy name")
        with self.db.write() as c:
            o = self._org(c, org)
            if c.execute("SELECT 1 FROM policies WHERE org_id = ? AND name = ?",
                         (o["id"], name)).fetchone():
                raise Conflict(f"policy {name!r} already exists", "already_exists")
            pid, t = str(uuid.uuid4()), now_rfc3339()
            c.execute("INSERT INTO policies(id, org_id, name, description, policy_text, "
                      "builtin_role, created_by_type, created_by, created_at, updated_at) "
                      "VALUES (?,?,?,?,?,NULL,?,?,?,?)",
                      (pid, o["id"], name, description, text, who.type, who.user_id, t, t))
            return {"policy": self._policy_json(c, self._policy(c, o["id"], pid), o["uid"]),
                    "attachments": []}

    def policy_is_builtin(self, org: str, pid: str) -> bool:
        with self.db.read() as c:
            return self._policy(c, self._org(c, org)["id"], pid)["builtin_role"] is not None

    def update_policy(self, org: str, pid: str, fields: dict[str, str]) -> dict[str, Any]:
        with self.db.write() as c:
            o = self._org(c, org)
            p = self._policy(c, o["id"], pid)
            if p["builtin_role"] is not None:
                raise BadRequest("built-in policies cannot be changed", "builtin_policy")
            if "name" in fields:
                _name(fields["name"], "policy name")
                if c.execute("SELECT 1 FROM policies WHERE org_id = ? AND name = ? AND id != ?",
                             (o["id"], fields["name"], p["id"])).fetchone():
                    raise Conflict(f"policy {fields['name']!r} already exists", "already_exists")
            for k in ("name", "description", "policy_text"):
                if k in fields:
                    c.execute(f"UPDATE policies SET {k} = ? WHERE id = ?", (fields[k], p["id"]))
            c.execute("UPDATE policies SET updated_at = ? WHERE id = ?", (now_rfc3339(), p["id"]))
            return {"policy": self._policy_json(c, self._policy(c, o["id"], p["id"]), o["uid"]),
                    "attachments": self._attachments(c, o["id"], policy_id=p["id"])}

    def delete_policy(self, org: str, pid: str) -> None:
        with self.db.write() as c:
            o = self._org(c, org)
            p = self._policy(c, o["id"], pid)
            if p["builtin_role"] is not None:
                raise BadRequest("built-in policies cannot be deleted", "builtin_policy")
            c.execute("DELETE FROM policy_attachments WHERE policy_id = ?", (p["id"],))
            c.execute("DELETE FROM policies WHERE id = ?", (p["id"],))

    def attach(self, org: str, pid: str, kind: str, principal_id: str, who: Principal) -> None:
        with self.db.write() as c:
            o = self._org(c, org)
            p = self._policy(c, o["id"], pid)
            self._check_principal(c, o["id"], kind, principal_id, PRINCIPAL_TYPES,
                                  "principal_type")
            c.execute("INSERT INTO policy_attachments(policy_id, principal_type, "
                      "principal_id, attached_by_type, attached_by, attached_at) "
                      "VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                      (p["id"], kind, principal_id, who.type, who.user_id, now_rfc3339()))

    def detach(self, org: str, pid: str, kind: str, principal_id: str) -> None:
        with self.db.write() as c:
            o = self._org(c, org)
            p = self._policy(c, o["id"], pid)
            if kind not in PRINCIPAL_TYPES:
                raise BadRequest(f"principal_type must be one of {', '.join(PRINCIPAL_TYPES)}",
                                 "invalid_principal_type")
            if not c.execute("DELETE FROM policy_attachments WHERE policy_id = ? AND "
                             "principal_type = ? AND principal_id = ? RETURNING 1",
                             (p["id"], kind, principal_id)).fetchone():
                raise NotFound("the policy is not attached to that principal",
                               "attachment_not_found")

    def _attachments(self, c: Conn, org_id: int, kind: str | None = None,
                     principal_id: str | None = None,
                     policy_id: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT a.*, p.name AS policy_name, p.builtin_role FROM policy_attachments a "
               "JOIN policies p ON p.id = a.policy_id WHERE p.org_id = ?")
        args: list[Any] = [org_id]
        if kind is not None:
            sql += " AND a.principal_type = ? AND a.principal_id = ?"
            args += [kind, principal_id]
        if policy_id is not None:
            sql += " AND a.policy_id = ?"
            args.append(policy_id)
        out = []
        for r in c.execute(sql + " ORDER BY a.attached_at, a.policy_id", args):
            names = self._subject_name(c, org_id, r["principal_type"], r["principal_id"])
            out.append({"policy_id": r["policy_id"], "policy_name": r["policy_name"],
                        "principal_type": r["principal_type"],
                        "principal_id": r["principal_id"],
                        "principal_name": names[0] if names else "",
                        "attached_by_type": r["attached_by_type"],
                        "attached_by": r["attached_by"],
                        "is_builtin": r["builtin_role"] is not None,
                        "attached_at": r["attached_at"]})
        return out

    def all_attachments(self, org: str) -> list[dict[str, Any]]:
        with self.db.read() as c:
            return self._attachments(c, self._org(c, org)["id"])

    # ======================================================================== effective
    def effective_policies(self, org_id: int, kind: str, pid: str,
                           c: Conn | None = None) -> list[EffectivePolicy]:
        """Every policy that applies to a principal in one organization, with its source."""
        if c is None:
            with self.db.read() as conn:
                return self.effective_policies(org_id, kind, pid, conn)
        out: list[EffectivePolicy] = []
        if kind == "user":
            m = c.execute("SELECT role FROM org_members WHERE org_id = ? AND user_id = ?",
                          (org_id, pid)).fetchone()
            if m is not None:
                p = c.execute("SELECT id, name, policy_text FROM policies WHERE org_id = ? "
                              "AND builtin_role = ?", (org_id, m["role"])).fetchone()
                if p is not None:
                    out.append(EffectivePolicy(p["id"], p["name"], p["policy_text"], True,
                                               "role", m["role"]))
        if kind == "agent":
            a = c.execute("SELECT name, inline_policy FROM agents WHERE id = ? AND org_id = ?",
                          (pid, org_id)).fetchone()
            if a is not None and a["inline_policy"].strip():
                out.append(EffectivePolicy("", f"{a['name']} (inline)", a["inline_policy"],
                                           False, "inline", a["name"]))
        for r in c.execute(
                "SELECT p.id, p.name, p.policy_text, p.builtin_role FROM policy_attachments a "
                "JOIN policies p ON p.id = a.policy_id WHERE p.org_id = ? "
                "AND a.principal_type = ? AND a.principal_id = ?", (org_id, kind, pid)):
            out.append(EffectivePolicy(r["id"], r["name"], r["policy_text"],
                                       r["builtin_role"] is not None, "direct", ""))
        for gid in self._groups_of(c, kind, pid):
            g = c.execute("SELECT name FROM org_groups WHERE id = ? AND org_id = ?",
                          (gid, org_id)).fetchone()
            if g is None:
                continue
            for r in c.execute(
                    "SELECT p.id, p.name, p.policy_text, p.builtin_role FROM policy_attachments a"
                    " JOIN policies p ON p.id = a.policy_id WHERE a.principal_type = 'group' "
                    "AND a.principal_id = ?", (gid,)):
                out.append(EffectivePolicy(r["id"], r["name"], r["policy_text"],
                                           r["builtin_role"] is not None, "group", g["name"]))
        return out

    def effective_for_api(self, org: str, kind: str, pid: str) -> list[dict[str, Any]]:
        if kind not in ("user", "agent", "role", "group"):
            raise BadRequest("principal_type must be one of user, agent, role, group",
                             "invalid_principal_type")
        with self.db.read() as c:
            o = self._org(c, org)
            return [{"policy_id": e.policy_id, "policy_name": e.policy_name,
                     "is_builtin": e.is_builtin, "source": e.source,
                     "source_name": e.source_name}
                    for e in self.effective_policies(o["id"], kind, pid, c)]

    def authz_context(self, org: str, who: Principal) -> tuple[int, dict[str, Any],
                                                              list[EffectivePolicy],
                                                              Principal | None] | None:
        """What a decision needs: org id, the input's principal part, the policies, and an
        agent's creator (decided too: an agent never exceeds its creator). None if the
        organization does not exist."""
        with self.db.read() as c:
            o = c.execute("SELECT id FROM orgs WHERE name = ? AND deleted_at IS NULL",
                          (org,)).fetchone()
            if o is None:
                return None
            oid = o[0]
            roles: list[str] = []
            if who.type == "user":
                m = c.execute("SELECT role FROM org_members WHERE org_id = ? AND user_id = ?",
                              (oid, who.user_id)).fetchone()
                roles = [m[0]] if m else []
            groups = []
            for gid in self._groups_of(c, who.type, who.user_id):
                g = c.execute("SELECT name FROM org_groups WHERE id = ? AND org_id = ?",
                              (gid, oid)).fetchone()
                if g is not None:
                    groups.append(g[0])
            policies = ([] if who.org_id is not None and who.org_id != oid
                        else self.effective_policies(oid, who.type, who.user_id, c))
            creator = None
            if who.type == "agent":
                a = c.execute("SELECT created_by_type, created_by, created_by_name FROM agents "
                              "WHERE id = ?", (who.user_id,)).fetchone()
                if a is not None:
                    admin = a["created_by_type"] == "user" and c.execute(
                        "SELECT 1 FROM server_admins WHERE user_id = ?",
                        (a["created_by"],)).fetchone() is not None
                    creator = Principal(a["created_by"], a["created_by_name"],
                                        a["created_by_type"], None, admin)
        doc = {"type": who.type, "id": who.user_id, "name": who.username, "roles": roles,
               "groups": sorted(groups)}
        return oid, doc, policies, creator

    # ======================================================================== approvals
    def requires_approval(self, org: str, repo: str, who: Principal) -> bool:
        if who.type != "agent":
            return False
        with self.db.read() as c:
            r = self.store.repo_row(c, org, repo)
            return bool(r["require_approval_for_agents"])

    def request_approval(self, org: str, repo: str, sid: str, message: str,
                         metadata: dict[str, str], who: Principal) -> None:
        """Freeze the session (no more writes) and record the pending commit."""
        with self.db.write() as c:
            r = self.store.repo_row(c, org, repo)
            s = self.store.session_row(c, r, sid)
            if not c.execute("SELECT 1 FROM staged WHERE session_id = ? LIMIT 1",
                             (s["id"],)).fetchone():
                raise BadRequest("nothing to commit: the session has no staged changes",
                                 "no_changes")
            c.execute("UPDATE sessions SET state = 'pending_approval' WHERE id = ?", (s["id"],))
            c.execute("INSERT INTO approvals(session_id, repo_id, message, metadata, "
                      "requested_by_type, requested_by, requested_by_name, requested_at, state) "
                      "VALUES (?,?,?,?,?,?,?,?, 'pending')" + dialect.replace_on(
                          "session_id", "repo_id, message, metadata, requested_by_type, "
                          "requested_by, requested_by_name, requested_at, state, decided_by, "
                          "decided_at, commit_id"),
                      (s["id"], r["id"], message, json.dumps(metadata), who.type, who.user_id,
                       who.username, now_rfc3339()))

    def _pending(self, c: Conn, org: str, repo: str,
                 sid: str) -> tuple[Row, Row, Row]:
        """In a write, the repository and session rows stay locked (approving commits)."""
        r = self.store.repo_row(c, org, repo, lock=True)
        s = c.execute("SELECT * FROM sessions WHERE uid = ? AND repo_id = ? "
                      "AND state = 'pending_approval'" + c.for_update(),
                      (sid, r["id"])).fetchone()
        a = c.execute("SELECT * FROM approvals WHERE session_id = ? AND state = 'pending'",
                      (s["id"],)).fetchone() if s is not None else None
        if s is None or a is None:
            raise NotFound("no approval is pending for this session", "not_pending")
        return r, s, a

    def is_pending(self, org: str, repo: str, sid: str) -> bool:
        with self.db.read() as c:
            try:
                self._pending(c, org, repo, sid)
            except NotFound:
                return False
        return True

    def pending_changes(self, org: str, repo: str, sid: str) -> Iterator[dict[str, Any]]:
        with self.db.read() as c:
            _, s, _ = self._pending(c, org, repo, sid)
            rows = c.execute("SELECT path, op FROM staged WHERE session_id = ? ORDER BY path",
                             (s["id"],)).fetchall()
        for row in rows:
            yield {"path": row["path"], "op": row["op"]}

    def approve(self, org: str, repo: str, sid: str, approver: Principal) -> str:
        """Apply the pending commit as its requester; Conflict leaves it pending."""
        with self.db.write() as c:
            r, s, a = self._pending(c, org, repo, sid)
            self.store.check_conflicts(c, r, s)
            committer = Principal(a["requested_by"], a["requested_by_name"],
                                  a["requested_by_type"])
            meta = json.loads(a["metadata"])
            commit_id = self.store.apply_session(c, r, s, a["message"], meta, committer)
            c.execute("UPDATE approvals SET state = 'approved', decided_by = ?, decided_at = ?, "
                      "commit_id = ? WHERE session_id = ?",
                      (approver.username, now_rfc3339(), commit_id, s["id"]))
        self.store.blobs.drop_spools(sid)
        return commit_id

    def reject(self, org: str, repo: str, sid: str, approver: Principal) -> None:
        with self.db.write() as c:
            _, s, _ = self._pending(c, org, repo, sid)
            c.execute("UPDATE sessions SET state = 'open' WHERE id = ?", (s["id"],))
            c.execute("UPDATE approvals SET state = 'rejected', decided_by = ?, decided_at = ? "
                      "WHERE session_id = ?", (approver.username, now_rfc3339(), s["id"]))
        self.store.rollback_session(org, repo, sid)
