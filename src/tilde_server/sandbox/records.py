"""Persistence of sandboxes, images, scoped tokens and triggers, in the store's SQLite file.

The tables are created with `CREATE TABLE IF NOT EXISTS` when the sandbox subsystem starts (or
when `tilde-server image ...` opens the data directory), so they are additive to the store's
own schema and need no format bump. Every function blocks: call it from a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, fields
from typing import Any

from tilde_server.store import NotFound, Principal, dialect
from tilde_server.store.db import SCHEMA_LOCK, Database, add_column
from tilde_server.store.engine import now_rfc3339

SCHEMA = """
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY, org TEXT NOT NULL, repo TEXT NOT NULL, repo_uid TEXT NOT NULL,
    session_id TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL,
    status_reason TEXT NOT NULL, exit_code INTEGER, commit_id TEXT NOT NULL DEFAULT '',
    error_message TEXT NOT NULL DEFAULT '', created_by TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, finished_at TEXT,
    runtime_dir TEXT NOT NULL DEFAULT '', trigger_id TEXT);
CREATE INDEX IF NOT EXISTS sandboxes_repo ON sandboxes(org, repo, id);
CREATE INDEX IF NOT EXISTS sandboxes_active ON sandboxes(status)
    WHERE status IN ('starting', 'running');
CREATE TABLE IF NOT EXISTS sandbox_images (
    name TEXT PRIMARY KEY, root TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_tokens (
    hash TEXT PRIMARY KEY, sandbox_id TEXT NOT NULL, org TEXT NOT NULL, repo TEXT NOT NULL,
    principal TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sandbox_tokens_sb ON sandbox_tokens(sandbox_id);
CREATE TABLE IF NOT EXISTS sandbox_triggers (
    id TEXT PRIMARY KEY, org TEXT NOT NULL, repo TEXT NOT NULL, repo_uid TEXT NOT NULL,
    name TEXT NOT NULL, description TEXT NOT NULL, enabled INTEGER NOT NULL,
    conditions TEXT NOT NULL, sandbox_config TEXT NOT NULL, run_as TEXT,
    created_by TEXT NOT NULL, principal TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sandbox_triggers_repo ON sandbox_triggers(org, repo, id);
CREATE TABLE IF NOT EXISTS sandbox_trigger_runs (
    id TEXT PRIMARY KEY, trigger_id TEXT NOT NULL, repo_uid TEXT NOT NULL,
    commit_id TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
    sandbox_id TEXT, matched_paths TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sandbox_trigger_runs_t ON sandbox_trigger_runs(trigger_id, id);
CREATE TABLE IF NOT EXISTS server_processes (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, seen_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_logs (
    sandbox_id TEXT NOT NULL, name TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (sandbox_id, name, seq)) WITHOUT ROWID;
"""

TOKEN_PREFIX = "tst-"
ACTIVE = ("starting", "running")


def ensure_schema(db: Database) -> None:
    db.ensure(SCHEMA)
    with db.write() as c:  # added after the table: directories made before have not got them
        c.lock_key(SCHEMA_LOCK)
        for column, decl in (("owner", "TEXT"), ("owner_until", "REAL"),
                             ("cancel_requested", "INTEGER"), ("logs_expired", "INTEGER")):
            add_column("sandboxes", column, decl)(c)


def announce(db: Database, process: str, url: str, now: float) -> None:
    """Where process `process` is reached by the others (manager.py 8.)."""
    with db.write() as c:
        c.execute("INSERT INTO server_processes(id, url, seen_at) VALUES (?,?,?)"
                  + dialect.replace_on("id", "url, seen_at"), (process, url, now))


def process_url(db: Database, process: str) -> str | None:
    with db.read() as c:
        row = c.execute("SELECT url FROM server_processes WHERE id = ?", (process,)).fetchone()
    return str(row[0]) if row else None


def renew_owned(db: Database, owner: str, until: float) -> None:
    with db.write() as c:
        c.execute("UPDATE sandboxes SET owner_until = ? WHERE owner = ? "
                  "AND status IN ('starting', 'running')", (until, owner))


def orphaned(db: Database, owner: str, now: float) -> list[SandboxRow]:
    """Active sandboxes of other processes that stopped vouching for them."""
    with db.read() as c:
        rows = c.execute(
            "SELECT * FROM sandboxes WHERE status IN ('starting', 'running') "
            "AND (owner IS NULL OR owner <> ?) AND (owner_until IS NULL OR owner_until < ?)",
            (owner, now)).fetchall()
    return [_sb(r) for r in rows]


def request_cancel(db: Database, sid: str) -> bool:
    """Ask the owning process to cancel (it polls); whether the sandbox was still active."""
    with db.write() as c:
        return c.execute("UPDATE sandboxes SET cancel_requested = 1 WHERE id = ? "
                         "AND status IN ('starting', 'running') RETURNING id",
                         (sid,)).fetchone() is not None


def cancel_requests(db: Database, owner: str) -> list[str]:
    with db.read() as c:
        return [r[0] for r in c.execute(
            "SELECT id FROM sandboxes WHERE owner = ? AND cancel_requested = 1 "
            "AND status IN ('starting', 'running')", (owner,))]


def mark_lost(db: Database, sid: str, now: float, message: str) -> bool:
    """Fail an orphaned sandbox (`sandbox_lost`) unless its owner renewed meanwhile or
    another process was first; whether this call did it."""
    with db.write() as c:
        return c.execute(
            "UPDATE sandboxes SET status = 'failed', status_reason = 'sandbox_lost', "
            "error_message = ?, finished_at = ?, updated_at = ? WHERE id = ? "
            "AND status IN ('starting', 'running') AND (owner_until IS NULL OR "
            "owner_until < ?) RETURNING id", (message, now_rfc3339(), now_rfc3339(), sid,
                                             now)).fetchone() is not None


def principal_json(p: Principal) -> str:
    return json.dumps({f.name: getattr(p, f.name) for f in fields(p)})


def principal_from_json(text: str) -> Principal:
    data = json.loads(text)
    known = {f.name for f in fields(Principal)}
    return Principal(**{k: val for k, val in data.items() if k in known})


def time_ordered_id() -> str:
    """A UUID-shaped id whose first 48 bits are the creation time in ms: lists sort by age."""
    raw = (int(time.time() * 1000).to_bytes(6, "big") + secrets.token_bytes(10)).hex()
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:32]}"


# ---------------------------------------------------------------- sandboxes


@dataclass
class SandboxRow:
    id: str
    org: str
    repo: str
    repo_uid: str
    session_id: str
    spec: dict[str, Any]
    status: str
    status_reason: str
    exit_code: int | None
    commit_id: str
    error_message: str
    created_by: str
    created_at: str
    updated_at: str
    finished_at: str | None
    runtime_dir: str
    trigger_id: str | None
    # The process running it (its --data's process id) and until when (epoch seconds) that
    # process vouches for it; see SandboxManager.keep_leases.
    owner: str | None = None
    owner_until: float | None = None
    cancel_requested: int | None = None  # set by a process that is not the owner


_ROW_FIELDS = frozenset(f.name for f in fields(SandboxRow))


def _sb(row: Any) -> SandboxRow:
    # Only the columns this version knows: a newer process sharing the database may have
    # added some (a rolling upgrade must not break the older ones' reads).
    d = {k: v for k, v in dict(row).items() if k in _ROW_FIELDS}
    d["spec"] = json.loads(d["spec"])
    return SandboxRow(**d)


def insert_sandbox(db: Database, row: SandboxRow) -> None:
    with db.write() as c:
        c.execute(
            "INSERT INTO sandboxes(id, org, repo, repo_uid, session_id, spec, status, "
            "status_reason, exit_code, commit_id, error_message, created_by, created_at, "
            "updated_at, finished_at, runtime_dir, trigger_id, owner, owner_until) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (row.id, row.org, row.repo, row.repo_uid, row.session_id, json.dumps(row.spec),
             row.status, row.status_reason, row.exit_code, row.commit_id, row.error_message,
             row.created_by, row.created_at, row.updated_at, row.finished_at, row.runtime_dir,
             row.trigger_id, row.owner, row.owner_until))


def update_sandbox(db: Database, sid: str, **changes: Any) -> None:
    changes["updated_at"] = now_rfc3339()
    cols = ", ".join(f"{k} = ?" for k in changes)
    with db.write() as c:
        c.execute(f"UPDATE sandboxes SET {cols} WHERE id = ?", (*changes.values(), sid))


def get_sandbox(db: Database, org: str, repo: str, sid: str) -> SandboxRow:
    with db.read() as c:
        row = c.execute("SELECT * FROM sandboxes WHERE id = ? AND org = ? AND repo = ?",
                        (sid, org, repo)).fetchone()
    if row is None:
        raise NotFound(f"sandbox {sid!r} not found", "sandbox_not_found")
    return _sb(row)


def resolve_approval(db: Database, row: SandboxRow) -> SandboxRow:
    """A sandbox `awaiting_approval` whose commit a person has decided since: record the
    outcome (approved: `committed` with the commit id; rejected: `cancelled` /
    `approval_rejected`) and return the updated row; any other row unchanged."""
    if row.status != "awaiting_approval":
        return row
    with db.read() as c:
        if not c.has_table("approvals"):  # no identity tables in this database
            return row
        a = c.execute("SELECT a.state, a.commit_id FROM approvals a JOIN sessions s "
                      "ON s.id = a.session_id WHERE s.uid = ?", (row.session_id,)).fetchone()
    if a is None or a["state"] == "pending":
        return row
    if a["state"] == "approved":
        changes = {"status": "committed", "status_reason": "committed",
                   "commit_id": a["commit_id"] or ""}
    else:
        changes = {"status": "cancelled", "status_reason": "approval_rejected",
                   "error_message": "the commit was rejected"}
    update_sandbox(db, row.id, **changes)
    for k, val in changes.items():
        setattr(row, k, val)
    return row


def get_sandbox_by_id(db: Database, sid: str) -> SandboxRow | None:
    with db.read() as c:
        row = c.execute("SELECT * FROM sandboxes WHERE id = ?", (sid,)).fetchone()
    return _sb(row) if row is not None else None


def list_sandboxes(db: Database, org: str, repo: str, after: str | None,
                   amount: int) -> tuple[list[SandboxRow], bool]:
    with db.read() as c:
        rows = c.execute(
            "SELECT * FROM sandboxes WHERE org = ? AND repo = ? AND id > ? ORDER BY id LIMIT ?",
            (org, repo, after or "", amount + 1)).fetchall()
    return [_sb(r) for r in rows[:amount]], len(rows) > amount


def active_sandboxes(db: Database) -> list[SandboxRow]:
    with db.read() as c:
        rows = c.execute("SELECT * FROM sandboxes WHERE status IN ('starting', 'running')")
        return [_sb(r) for r in rows.fetchall()]


def finished_before(db: Database, cutoff: str) -> list[str]:
    """Ids of sandboxes that finished before `cutoff` (an RFC 3339 time as now_rfc3339)."""
    with db.read() as c:
        rows = c.execute("SELECT id FROM sandboxes WHERE finished_at IS NOT NULL "
                         "AND finished_at < ?", (cutoff,))
        return [r[0] for r in rows.fetchall()]


# ---------------------------------------------------------------- images


def list_images(db: Database) -> list[tuple[str, str]]:
    with db.read() as c:
        return [(r[0], r[1]) for r in c.execute("SELECT name, root FROM sandbox_images "
                                                "ORDER BY name")]


def get_image(db: Database, name: str) -> str | None:
    with db.read() as c:
        row = c.execute("SELECT root FROM sandbox_images WHERE name = ?", (name,)).fetchone()
    return str(row[0]) if row else None


def put_image(db: Database, name: str, root: str) -> None:
    with db.write() as c:
        c.execute("INSERT INTO sandbox_images(name, root, created_at) VALUES (?,?,?)"
                  + dialect.replace_on("name", "root, created_at"), (name, root, now_rfc3339()))


def remove_image(db: Database, name: str) -> bool:
    with db.write() as c:
        return c.execute("DELETE FROM sandbox_images WHERE name = ?", (name,)).rowcount > 0


# ---------------------------------------------------------------- scoped tokens


def _token_hash(token: str) -> str:
    return hashlib.sha256(b"tilde-sandbox-token\x00" + token.encode()).hexdigest()


def issue_token(db: Database, sandbox_id: str, org: str, repo: str, who: Principal,
                ttl: float) -> tuple[str, float]:
    """A new bearer token valid for `ttl` seconds, only for `org/repo`. Returns (token, expiry)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = time.time() + ttl
    with db.write() as c:
        c.execute("DELETE FROM sandbox_tokens WHERE expires_at < ?", (time.time(),))
        c.execute("INSERT INTO sandbox_tokens(hash, sandbox_id, org, repo, principal, "
                  "expires_at) VALUES (?,?,?,?,?,?)",
                  (_token_hash(token), sandbox_id, org, repo, principal_json(who), expires))
    return token, expires


def lookup_token(db: Database, token: str) -> tuple[str, str, Principal] | None:
    """(org, repo, principal) of a live token, or None."""
    with db.read() as c:
        row = c.execute("SELECT org, repo, principal, expires_at FROM sandbox_tokens "
                        "WHERE hash = ?", (_token_hash(token),)).fetchone()
    if row is None or row["expires_at"] < time.time():
        return None
    return row["org"], row["repo"], principal_from_json(row["principal"])


def revoke_tokens(db: Database, sandbox_id: str) -> None:
    with db.write() as c:
        c.execute("DELETE FROM sandbox_tokens WHERE sandbox_id = ?", (sandbox_id,))
