"""The engine's core (engine.py has the subtleties): the constants and value types, and
`StoreCore`, what every part of the engine builds on and what its neighbours (identity,
imports, connectors, vault) may call: the row lookups (`org_row`, `repo_row`,
`session_row`), the one commit path (`check_conflicts`, `apply_session`, with the
on-commit hooks), blob references (`adopt_blob`, `stage_put`, `collect_blobs`), point reads
and the sweep. The parts by noun are mixins over it: repositories.py (organizations,
repositories, sessions), objects.py (reads, listings, copies, deletes), uploads.py (single,
batch and multipart uploads, download grants), history.py (log, diff, revert).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilde_server.store import dialect
from tilde_server.store.blobs import (
    BlobStore,
    is_upload_key,
    shard_of,
)
from tilde_server.store.db import Conn, Database, Row
from tilde_server.store.errors import (
    BadRequest,
    Conflict,
    DataDirError,
    NotFound,
)
from tilde_server.store.keys import Keys
from tilde_server.store.listing import (
    key_successor,
)
from tilde_server.store.lock import LOCK_FILE
from tilde_server.store.s3blobs import S3BlobStore, S3Url
from tilde_server.store.signing import Signer

if TYPE_CHECKING:
    from tilde_server.store.connectors import ConnectorStore
    from tilde_server.store.imports import ImportRunner
    from tilde_server.store.vault import SecretStore, Vault

log = logging.getLogger("tilde_server.store")


def _md5(data: bytes) -> Any:
    """MD5 for S3-style ETags (an identifier, not a security check)."""
    return hashlib.md5(data, usedforsecurity=False)

MAX_PER_PAGE = 1000
DB_FILE = "tilde.db"
# Marks a --data directory used beside a --database as this server's scratch.
SCRATCH_MARK = "scratch-for-database"
# A startup sweep beside other processes spares what is younger (their uploads in flight).
SHARED_STARTUP_GRACE = 3600.0
# The advisory lock name of a blob shard (4.): "blob:" + its two hex digits (blobs.shard_of).
BLOB_LOCK = "blob:"
# Blob ids per reference query of a sweep (5 IN lists of this many parameters each).
REFERENCE_BATCH = 200
# A bucket's multipart upload younger than this is never aborted by a sweep: the row that
# names it is written just after the bucket made it.
BUCKET_UPLOAD_GRACE = 300.0
ADMIN_USERNAME = "admin"
DEFAULT_BRANCH = "main"
SINGLE_UPLOAD_TTL = 3600
MULTIPART_TTL = 86400
MAX_PARTS = 10000
# Longest download token put in a URL; uvicorn accepts request heads up to 16 KiB (h11).
MAX_DOWNLOAD_TOKEN = 8192
_UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
# Commit ids are sha256 hex; a shorter hex string is a prefix of one (subtlety 12).
COMMIT_ID_LENGTH = 64
MIN_COMMIT_PREFIX = 4
# Paths per statement where a commit closes the versions it replaces (_apply).
PATH_BATCH = 500
# The most conflicting paths a refused rebase lists (its message names the first five).
MAX_REBASE_CONFLICTS = 1000

_ENTRY_COLS = "path, blob, size, etag, content_type, metadata, last_modified, source"
# Staging a path replaces whatever the session had staged there (a put or a tombstone).
STAGE_REPLACE = dialect.replace_on(
    "session_id, path", "op, blob, size, etag, content_type, metadata, last_modified, source")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hash_key(key: str) -> str:
    """API keys are stored only as this hash."""
    return hashlib.sha256(b"tilde-server-api-key\x00" + key.encode("utf-8")).hexdigest()


def generate_api_key() -> str:
    return "tk-" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Obj:
    """An object as seen by a read: committed (staged=False) or staged in a session."""

    path: str
    blob: str
    size: int
    etag: str
    content_type: str
    metadata: dict[str, str]
    last_modified: str
    staged: bool = False
    # Provenance of an imported object (spec 2.5.1 SourceMetadata), None for anything else.
    source: dict[str, Any] | None = None

    def same_bytes(self, other: Obj) -> bool:
        """Whether two versions hold the same bytes: the same content key (sha256), or,
        when either has an upload key (bytes PUT to a bucket, hash unknown: blobs.py 7.),
        the same size and ETag (MD5, or for multipart the MD5 of the parts' MD5s)."""
        if self.blob == other.blob:
            return True
        if is_upload_key(self.blob) or is_upload_key(other.blob):
            return self.size == other.size and self.etag == other.etag
        return False

    def same_version(self, other: Obj) -> bool:
        """What makes two versions 'the same' for conflicts and diffs: bytes, type and
        metadata."""
        return (self.same_bytes(other) and self.content_type == other.content_type
                and self.metadata == other.metadata)


def _obj(row: Row | tuple[Any, ...], staged: bool = False) -> Obj:
    return Obj(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], staged,
               json.loads(row[7]) if row[7] else None)


def _same_content(a: Obj | None, b: Obj | None) -> bool:
    """The same content (bytes and type, not metadata), or both absent: "the same change"."""
    if a is None or b is None:
        return a is b
    return a.same_bytes(b) and a.content_type == b.content_type


def _same_version(a: Obj | None, b: Obj | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.same_version(b)


@dataclass(frozen=True)
class Page:
    items: list[Any]
    has_more: bool
    next_offset: str | None


@dataclass(frozen=True)
class StagedUpload:
    address: str
    signature: str
    expires_at: str
    # The 0.7.7 flow's `upload_token`: names the upload for POST {R}/object/finalize.
    token: str = ""
    # Where the client PUTs the bytes when that is the bucket itself (s3blobs.py); None:
    # this server's own signed upload route.
    url: str | None = None


@dataclass(frozen=True)
class BatchItem:
    """One object of a batch upload as its manifest announces it (bytes arrive separately)."""

    path: str
    size: int
    content_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MultipartUpload:
    upload_id: str
    address: str
    token: str
    expires_at: int


@dataclass(frozen=True)
class ChangeRecord:
    path: str
    obj: Obj | None  # None: staged deletion


@dataclass(frozen=True)
class DiffItem:
    path: str
    kind: str  # "object" | "prefix"
    status: str  # "added" | "removed" | "changed"
    obj: Obj | None


@dataclass(frozen=True)
class SweepResult:
    """What one `sweep` removed."""

    blobs: int
    spool_files: int
    expired_uploads: int


@dataclass(frozen=True)
class CommitEvent:
    """What an on-commit hook is told, after the commit is durable (`Store.on_commit`)."""

    org: str
    repo: str
    commit_id: str
    metadata: dict[str, str]
    committer: Principal


@dataclass(frozen=True)
class Principal:
    """Who sends a request. `user_id`/`username` are the id and name of the principal of any
    `type` (user, agent, role); agents and roles belong to one organization (`org_id`)."""

    user_id: str
    username: str
    type: str = "user"
    org_id: int | None = None
    is_admin: bool = False



class StoreCore:
    """What the parts of the engine share. Built by engine.Store, never alone."""

    root: Path
    owner: bool
    startup_sweep: SweepResult | None
    db: Database
    _commit_hooks: list[Callable[[CommitEvent], None]]
    blobs: BlobStore
    upload_ttl: int
    multipart_ttl: int
    bucket_upload_grace: float
    keys: Keys
    signer: Signer
    vault: Vault
    secrets: SecretStore
    connectors: ConnectorStore
    shared: bool
    imports: ImportRunner

    def _startup_sweep(self, grace: float) -> None:
        swept = self.startup_sweep = self.sweep(grace)
        if swept.blobs or swept.spool_files or swept.expired_uploads:
            log.info("startup sweep: removed %d unreferenced blob(s), %d spool file(s), "
                     "%d expired upload(s)", swept.blobs, swept.spool_files,
                     swept.expired_uploads)

    @staticmethod
    def check_root(root: Path, database: str | None = None) -> None:
        """Refuse what is not a data directory (a file; a non-empty directory without a
        database), before anything (the lock file) is created in it. With a `database`,
        the directory is scratch: it may not hold an embedded database (that one would be
        silently ignored: `tilde-server migrate` moves it)."""
        root = root.expanduser()
        if root.exists() and not root.is_dir():
            raise DataDirError(f"{root} is not a directory")
        if database:
            if (root / DB_FILE).exists():
                raise DataDirError(f"{root} holds an embedded database ({DB_FILE}); give "
                                   "--database a directory of its own")
            if root.is_dir() and not (root / SCRATCH_MARK).exists() and any(
                    p.name != LOCK_FILE for p in root.iterdir()):
                raise DataDirError(f"{root} is not empty and is not a tilde-server scratch "
                                   "directory; choose an empty or new directory")
            return
        if (root.is_dir() and not (root / DB_FILE).exists()
                and any(p.name != LOCK_FILE for p in root.iterdir())):
            raise DataDirError(
                f"{root} is not empty and is not a tilde-server data directory "
                f"(no {DB_FILE}); choose an empty or new directory"
            )

    def close(self) -> None:
        if self.owner:
            self.imports.shutdown()
        self.db.close()

    def _create_admin(self, key: str) -> None:
        """The admin user with `key`, on a new deployment."""
        self._ensure_admin_key(key, quiet=True)

    def _ensure_admin_key(self, key: str, quiet: bool = False) -> None:
        """A later start with --admin-key: a key not yet known becomes another admin key.
        Under a lock, and making the admin user when there is none yet: processes starting
        together on a new database race the one that created the schema to its admin."""
        h = hash_key(key)
        with self.db.write() as c:
            c.lock_key("tilde-server:admin")
            if c.execute("SELECT 1 FROM api_keys WHERE key_hash = ?", (h,)).fetchone():
                return
            user = c.execute("SELECT id FROM users WHERE username = ?",
                             (ADMIN_USERNAME,)).fetchone()
            if user is None:
                uid = str(uuid.uuid4())
                c.execute("INSERT INTO users(id, username, created_at) VALUES (?, ?, ?)",
                          (uid, ADMIN_USERNAME, now_rfc3339()))
            else:
                uid = user["id"]
            c.execute("INSERT INTO api_keys(id, user_id, key_hash, created_at) VALUES (?,?,?,?)",
                      (str(uuid.uuid4()), uid, h, now_rfc3339()))
        if user is not None and not quiet:
            log.info("added the given --admin-key as an additional key of the admin user")

    def sweep(self, grace: float = 0.0) -> SweepResult:
        """Remove unreferenced blobs, expired pending uploads and spool files no pending
        upload needs, leaving alone anything modified in the last `grace` seconds (10.)."""
        now = time.time()
        cutoff = now - grace

        def stamp(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

        with self.db.write() as c:
            expired = [r[0] for r in c.execute(
                "SELECT address FROM uploads WHERE (kind = 'single' AND created_at < ?) "
                "OR (kind = 'multipart' AND created_at < ?)",
                (stamp(cutoff - self.upload_ttl), stamp(cutoff - self.multipart_ttl)))]
            for address in expired:
                c.execute("DELETE FROM upload_parts WHERE address = ?", (address,))
                c.execute("DELETE FROM uploads WHERE address = ?", (address,))
            states = dict(c.execute("SELECT uid, state FROM sessions "
                                    "WHERE state IN ('open', 'import')").fetchall())
            keep = {r[0] for r in c.execute("SELECT address FROM uploads")}
            keep_parts = {(r[0], r[1]) for r in c.execute(
                "SELECT address, part_number FROM upload_parts")}
        spool_files = self.blobs.sweep_spools(
            live={u for u, st in states.items() if st == "open"},
            skip={u for u, st in states.items() if st == "import"},  # the import runner's
            keep=keep, keep_parts=keep_parts, cutoff=cutoff)
        removed = 0
        for shard, listed in self.blobs.listing():
            # A client may finalize an upload key's bytes until its upload URL expires.
            keys = [k for k, mtime in listed
                    if mtime < (cutoff - self.upload_ttl if is_upload_key(k) else cutoff)]
            if not keys:
                continue
            # Decided shard by shard under the lock every new reference is made under (4.).
            with self.db.write() as c:
                c.lock_key(BLOB_LOCK + shard)
                used = self._referenced(c, keys)
                for key in keys:
                    if key not in used:
                        self.blobs.delete(key)
                        removed += 1
        aborted = self._sweep_bucket_uploads(min(cutoff, now - self.bucket_upload_grace))
        return SweepResult(removed, spool_files, len(expired) + aborted)

    @staticmethod
    def _referenced(c: Conn, keys: list[str]) -> set[str]:
        """Which of `keys` a row still names: committed or staged versions, bytes received
        for a pending upload, a pending multipart upload's assembled object (s3blobs 3.)."""
        used: set[str] = set()
        for i in range(0, len(keys), REFERENCE_BATCH):
            batch = keys[i:i + REFERENCE_BATCH]
            marks = ",".join("?" * len(batch))
            used.update(r[0] for r in c.execute(
                f"SELECT blob FROM entries WHERE blob IN ({marks}) UNION "
                f"SELECT blob FROM staged WHERE blob IN ({marks}) UNION "
                f"SELECT sha256 FROM uploads WHERE sha256 IN ({marks}) UNION "
                f"SELECT address FROM uploads WHERE address IN ({marks}) UNION "
                f"SELECT sha256 FROM upload_parts WHERE sha256 IN ({marks})", batch * 5))
        return used

    def _sweep_bucket_uploads(self, cutoff: float) -> int:
        """Abort the bucket's multipart uploads no pending upload row names (rolled back,
        aborted or expired ones; started before `cutoff`). Returns how many."""
        if not isinstance(self.blobs, S3BlobStore):
            return 0
        with self.db.read() as c:
            live = {r[0] for r in c.execute(
                "SELECT remote_id FROM uploads WHERE remote_id IS NOT NULL")}
        aborted = 0
        for blob, upload_id, initiated in self.blobs.multipart_uploads():
            if upload_id not in live and initiated < cutoff:
                self.blobs.abort_multipart(blob, upload_id)
                aborted += 1
        return aborted

    @staticmethod
    def org_row(c: Conn, name: str) -> Row:
        row = c.execute("SELECT * FROM orgs WHERE name = ? AND deleted_at IS NULL",
                        (name,)).fetchone()
        if row is None:
            raise NotFound(f"organization {name!r} not found")
        return row

    # ======================================================================== repositories
    _REPO_SELECT = ("SELECT r.*, o.uid AS org_uid FROM repos r JOIN orgs o ON o.id = r.org_id ")

    def repo_row(self, c: Conn, org: str, name: str, lock: bool = False) -> Row:
        """`lock`: in a write, hold the repository row until it ends; whatever moves or
        decides on the head (commit, rebase, revert) or changes the row takes it, so two
        processes' commits to one repository go one after the other (dialect.py 5.)."""
        row = c.execute(
            self._REPO_SELECT + "WHERE o.name = ? AND o.deleted_at IS NULL AND r.name = ? "
            "AND r.deleted_at IS NULL" + (c.for_update("r") if lock else ""),
            (org, name)).fetchone()
        if row is None:
            self.org_row(c, org)
            raise NotFound(f"repository {org}/{name} not found")
        return row

    def session_row(self, c: Conn, repo: Row, sid: str) -> Row:
        """An open session; in a write its row stays locked until the write ends, so a
        change staged and the commit that closes the session never interleave."""
        row = c.execute("SELECT * FROM sessions WHERE uid = ? AND repo_id = ? AND state = 'open'"
                        + c.for_update(), (sid, repo["id"])).fetchone()
        if row is None:
            raise NotFound(f"session {sid!r} not found or no longer open", "session_not_found")
        days = repo["session_max_duration_days"]
        if days:
            created = datetime.strptime(row["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
            if created.replace(tzinfo=UTC) + timedelta(days=days) < datetime.now(UTC):
                raise NotFound(f"session {sid!r} has expired", "session_expired")
        return row

    def _changed_since_base(self, c: Conn, r: Row,
                            s: Row) -> list[str]:
        """The session's staged paths with a version boundary between its base and head."""
        base, head = s["base_seq"], r["head_seq"]
        if head == base:
            return []
        return [row[0] for row in c.execute(
            "SELECT DISTINCT st.path FROM staged st JOIN entries e "
            "ON e.repo_id = ? AND e.path = st.path "
            "WHERE st.session_id = ? AND (e.from_seq > ? OR e.to_seq > ?)",
            (r["id"], s["id"], base, base))]

    def _conflicts(self, c: Conn, r: Row, s: Row,
                   candidates: list[str]) -> list[str]:
        """The candidates that conflict under the rule of subtlety 3, sorted."""
        base, head = s["base_seq"], r["head_seq"]
        conflicts = []
        for path in candidates:
            at_head = self._at(c, r["id"], path, head)
            if _same_version(at_head, self._at(c, r["id"], path, base)):
                continue
            staged = self._staged(c, s["id"], path)
            if not _same_content(at_head, staged[1] if staged else None):
                conflicts.append(path)
        return sorted(conflicts)

    def check_conflicts(self, c: Conn, r: Row, s: Row) -> None:
        conflicts = self._conflicts(c, r, s, self._changed_since_base(c, r, s))
        if conflicts:
            shown = ", ".join(repr(p) for p in sorted(conflicts)[:5])
            more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
            raise Conflict(
                f"conflict: {len(conflicts)} path(s) changed by another commit since this "
                f"session started: {shown}{more}", "conflict")

    def apply_session(self, c: Conn, r: Row, s: Row, message: str,
               metadata: dict[str, str], who: Principal) -> str:
        """Turn the session's staged rows into a new commit on top of head (inside a write tx)."""
        rid, sess = r["id"], s["id"]
        seq = r["head_seq"] + 1
        # The live versions the session replaces, closed by explicit path lists: each one an
        # entries_live lookup, O(changed paths) whatever the planner thinks of the tables
        # (PostgreSQL, its statistics stale after a bulk import, drove a join from the
        # repository's millions of entries instead: 5 s for 10 paths among 2,000,000).
        staged_paths = [row[0] for row in c.execute(
            "SELECT path FROM staged WHERE session_id = ?", (sess,))]
        removed_n = removed_size = 0
        for i in range(0, len(staged_paths), PATH_BATCH):
            chunk = staged_paths[i:i + PATH_BATCH]
            sizes = c.execute(
                f"UPDATE entries SET to_seq = ? WHERE repo_id = ? AND to_seq IS NULL "
                f"AND path IN ({', '.join('?' * len(chunk))}) RETURNING size",
                (seq, rid, *chunk)).fetchall()
            removed_n += len(sizes)
            removed_size += sum(row[0] for row in sizes)
        added_n, added_size = c.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM staged WHERE session_id = ? "
            "AND op = 'put'", (sess,)).fetchone()
        c.execute(
            "INSERT INTO entries(repo_id, path, from_seq, to_seq, blob, size, etag, content_type, "
            "metadata, last_modified, source) SELECT ?, path, ?, NULL, blob, size, etag, "
            "content_type, metadata, last_modified, source FROM staged "
            "WHERE session_id = ? AND op = 'put'",
            (rid, seq, sess))
        count = r["object_count"] - removed_n + added_n
        size = r["total_size"] - removed_size + added_size
        parent = c.execute("SELECT id FROM commits WHERE repo_id = ? AND seq = ?",
                           (rid, r["head_seq"])).fetchone()
        commit_id = hashlib.sha256(
            f"{r['uid']}:{seq}:{secrets.token_hex(16)}".encode()).hexdigest()
        c.execute(
            "INSERT INTO commits(repo_id, seq, id, parent_id, message, metadata, committer_id, "
            "committer, committer_type, created_at, object_count, total_size) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (rid, seq, commit_id, parent[0] if parent else None, message,
             json.dumps(metadata), who.user_id, who.username, who.type or "user",
             now_rfc3339(), count, size))
        c.execute("UPDATE repos SET head_seq = ?, object_count = ?, total_size = ? WHERE id = ?",
                  (seq, count, size, rid))
        c.execute("DELETE FROM staged WHERE session_id = ?", (sess,))
        c.execute("DELETE FROM upload_parts WHERE address IN "
                  "(SELECT address FROM uploads WHERE session_id = ?)", (sess,))
        c.execute("DELETE FROM uploads WHERE session_id = ?", (sess,))
        c.execute("UPDATE sessions SET state = 'committed', closed_at = ? WHERE id = ?",
                  (now_rfc3339(), sess))
        org = c.execute("SELECT name FROM orgs WHERE id = ?", (r["org_id"],)).fetchone()[0]
        event = CommitEvent(org, r["name"], commit_id, dict(metadata), who)
        self.db.after_commit(lambda: self._committed(event))
        return commit_id

    def on_commit(self, hook: Callable[[CommitEvent], None]) -> None:
        """Call `hook` after every commit, whichever path made it (session commit, approval,
        import, revert), once it is durable; hooks must not block (start a thread)."""
        self._commit_hooks.append(hook)

    def _committed(self, event: CommitEvent) -> None:
        for hook in list(self._commit_hooks):
            try:
                hook(event)
            except Exception:
                log.exception("on-commit hook %r failed for %s", hook, event.commit_id)

    def collect_blobs(self, blobs: list[str]) -> None:
        """Delete blob files nothing references any more (under the write lock, see 4.)."""
        shards: dict[str, list[str]] = {}
        for b in blobs:
            shards.setdefault(shard_of(b), []).append(b)
        # One shard per transaction: a collector holds one exclusive lock at a time, so it
        # cannot close a cycle with writers that hold shared ones.
        for prefix, keys in sorted(shards.items()):
            with self.db.write() as c:
                c.lock_key(BLOB_LOCK + prefix)
                for b in keys:
                    if c.execute("SELECT 1 FROM entries WHERE blob = ? LIMIT 1",
                                 (b,)).fetchone():
                        continue
                    if c.execute("SELECT 1 FROM staged WHERE blob = ? LIMIT 1",
                                 (b,)).fetchone():
                        continue
                    self.blobs.delete(b)

    # ======================================================================== point reads
    @staticmethod
    def _at(c: Conn, rid: int, path: str, seq: int) -> Obj | None:
        """The committed object at `path` as of commit seq `seq`."""
        row = c.execute(
            f"SELECT {_ENTRY_COLS}, to_seq FROM entries WHERE repo_id = ? AND path = ? "
            "AND from_seq <= ? ORDER BY from_seq DESC LIMIT 1", (rid, path, seq)).fetchone()
        if row is None or (row["to_seq"] is not None and row["to_seq"] <= seq):
            return None
        return _obj(row)

    @staticmethod
    def _staged(c: Conn, sess: int, path: str) -> tuple[str, Obj | None] | None:
        """(op, obj) of a staged row, or None when the session did not touch `path`."""
        row = c.execute(f"SELECT {_ENTRY_COLS}, op FROM staged WHERE session_id = ? AND path = ?",
                        (sess, path)).fetchone()
        if row is None:
            return None
        return row["op"], (_obj(row, staged=True) if row["op"] == "put" else None)

    def _view_obj(self, c: Conn, r: Row, s: Row | None,
                  seq: int, path: str) -> Obj | None:
        if s is not None:
            st = self._staged(c, s["id"], path)
            if st is not None:
                return st[1]
        return self._at(c, r["id"], path, seq)

    def _resolve_view(self, c: Conn, r: Row, session: str | None,
                      ref: str | None) -> tuple[Row | None, int]:
        if session is not None and ref is not None:
            raise BadRequest("session_id and ref cannot be combined", "invalid_input")
        if session is not None:
            s = self.session_row(c, r, session)
            return s, s["base_seq"]
        if ref is not None:
            return None, self._resolve_ref(c, r, ref)
        return None, r["head_seq"]

    @classmethod
    def _resolve_ref(cls, c: Conn, r: Row, ref: str) -> int:
        if ref in (DEFAULT_BRANCH, "HEAD"):
            return int(r["head_seq"])
        return int(cls._commit_row(c, r, ref)["seq"])

    @staticmethod
    def _commit_row(c: Conn, r: Row, ref: str) -> Row:
        """The commit that `ref` names: a full id or a unique prefix of one (12.)."""
        if not _HEX_RE.fullmatch(ref) or len(ref) >= COMMIT_ID_LENGTH:
            row = c.execute("SELECT * FROM commits WHERE repo_id = ? AND id = ?",
                            (r["id"], ref)).fetchone()
            if row is None:
                raise NotFound(f"commit {ref!r} not found", "commit_not_found")
            return row
        if len(ref) < MIN_COMMIT_PREFIX:
            raise BadRequest(f"commit id prefix {ref!r} is too short: give at least "
                             f"{MIN_COMMIT_PREFIX} hex digits", "invalid_commit_id")
        prefix = ref.lower()
        upper = key_successor(prefix)
        assert upper is not None  # a non-empty hex string always has a successor
        rows = c.execute("SELECT * FROM commits INDEXED BY commits_id WHERE repo_id = ? "
                         "AND id >= ? AND id < ? ORDER BY id LIMIT 2",
                         (r["id"], prefix, upper)).fetchall()
        if not rows:
            raise NotFound(f"commit {ref!r} not found", "commit_not_found")
        if len(rows) > 1:
            n = c.execute("SELECT count(*) FROM commits INDEXED BY commits_id "
                          "WHERE repo_id = ? AND id >= ? AND id < ?",
                          (r["id"], prefix, upper)).fetchone()[0]
            raise Conflict(f"commit id prefix {ref!r} is ambiguous: it matches {n} commits",
                           "ambiguous_commit_id")
        return rows[0]

    # ======================================================================== writes
    @staticmethod
    def _reference(c: Conn, blob: str) -> None:
        """Before a transaction makes a new reference to `blob`: a lock the collector's
        exclusive one waits for (4.), so it never deletes a blob whose reference is about to
        commit. On SQLite the one writer already excludes the collector."""
        c.lock_key(BLOB_LOCK + shard_of(blob), shared=True)

    def adopt_blob(self, c: Conn, spool: Path, blob: str) -> None:
        """Move a finished spool into place as `blob`, to be referenced by this transaction."""
        self._reference(c, blob)
        self.blobs.adopt(spool, blob)

    def stage_put(self, c: Conn, sess: int, o: Obj) -> str | None:
        """Stage a put; returns the blob of a staged row it replaced (a GC candidate)."""
        self._reference(c, o.blob)
        old = c.execute("SELECT blob FROM staged WHERE session_id = ? AND path = ?",
                        (sess, o.path)).fetchone()
        c.execute("INSERT INTO staged(session_id, path, op, blob, size, etag, "
                  "content_type, metadata, last_modified, source) VALUES (?,?,?,?,?,?,?,?,?,?)"
                  + STAGE_REPLACE,
                  (sess, o.path, "put", o.blob, o.size, o.etag, o.content_type,
                   json.dumps(o.metadata), o.last_modified,
                   json.dumps(o.source) if o.source else None))
        return old[0] if old and old[0] != o.blob else None

    def _open_session_by_uid(self, c: Conn, session: str) -> Row:
        row = c.execute("SELECT s.*, r.uid AS repo_uid FROM sessions s JOIN repos r "
                        "ON r.id = s.repo_id WHERE s.uid = ? AND s.state = 'open' "
                        "AND r.deleted_at IS NULL", (session,)).fetchone()
        if row is None:
            raise NotFound("session not found or no longer open", "session_not_found")
        return row

    def _stage_delete(self, c: Conn, r: Row, s: Row,
                      path: str) -> tuple[bool, str | None]:
        """Stage a tombstone; returns (existed in the session view, replaced staged blob)."""
        staged = self._staged(c, s["id"], path)
        if staged is not None and staged[0] == "delete":
            return False, None
        in_base = self._at(c, r["id"], path, s["base_seq"]) is not None
        if staged is None and not in_base:
            return False, None
        old_blob = staged[1].blob if staged is not None and staged[1] is not None else None
        if in_base:
            c.execute("INSERT INTO staged(session_id, path, op) VALUES (?,?,'delete')"
                      + STAGE_REPLACE, (s["id"], path))
        else:  # only ever existed in this session: forget it entirely
            c.execute("DELETE FROM staged WHERE session_id = ? AND path = ?", (s["id"], path))
        return True, old_blob




def multipart_address(upload_id: str) -> str:
    """The address (and, in a bucket, the blob id: blobs.py 7.) of a multipart upload."""
    return "m-" + upload_id


def blobs_location(blobs: str | None) -> Path | S3Url | None:
    """--blobs: a directory (absolute; shared by the deployment's processes), an
    s3://BUCKET[/PREFIX], or nothing."""
    if not blobs:
        return None
    if blobs.startswith("s3://"):
        return S3Url.parse(blobs)
    if "://" in blobs:
        raise DataDirError(f"--blobs takes a directory or s3://BUCKET[/PREFIX], not "
                           f"{blobs.split('://', 1)[0]}://")
    path = Path(blobs).expanduser()
    if not path.is_absolute():
        raise DataDirError(f"--blobs takes an absolute directory, not {blobs!r}")
    if path.exists() and not path.is_dir():
        raise DataDirError(f"--blobs {path} is not a directory")
    return path


def _unquote(etag: str) -> str:
    """An ETag as clients send it back (quoted or not) -> the bare value."""
    return etag.strip().strip('"')


def os_chmod(path: Path, mode: int) -> None:
    with contextlib.suppress(OSError):
        path.chmod(mode)
