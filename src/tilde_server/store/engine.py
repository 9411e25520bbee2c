"""The versioned store: organizations, repositories, sessions, objects, commits. No HTTP here.

Every public method blocks (SQLite, files): call it from a worker thread.

Subtleties:
1. History is kept as versioned rows: an entry row is visible at commit seq S when
   `from_seq <= S < coalesce(to_seq, inf)`. Seq 0 is the empty tree; each commit gets the next
   per-repository seq. Reads at head use the partial index over live rows (`to_seq IS NULL`).
2. A commit touches only the rows of the paths it changes: close the live rows (set `to_seq`),
   insert new rows, adjust the repository's object_count/total_size by the difference. Its cost
   is proportional to the session's changes, not to the repository.
3. A session sees its base commit plus its staged rows. At commit, paths that changed since the
   base are found with one indexed lookup per staged path. Such a path conflicts unless the
   head's state equals the base's state (an intermediate change was undone) or holds the same
   content as the session's staged state (both made the same change: the same bytes, or both
   deleted it; the session's metadata, e.g. a mount's POSIX attributes, then wins). A conflict
   raises before anything is written, so the session stays open and intact.
4. Blob files are referenced from `entries` and `staged`. Unreferenced blobs (rolled-back or
   overwritten staged uploads) are deleted while holding the database write lock, the same lock
   under which every new reference is created, so a blob cannot vanish under a new reference.
   On PostgreSQL, where writers run side by side, that lock is an advisory lock per blob
   shard (the first two hex digits): shared by every transaction that adopts or stages a
   reference, taken before the blob file is touched, exclusive for the collector.
5. Revert and the commit of a session share one code path: revert stages the inverse changes in
   a hidden internal session based on head and commits it.
6. A batch upload spools all its objects first, outside any lock, then adopts their blobs and
   stages them in one write transaction: all or nothing. If that transaction fails, the blobs
   it adopted go through the same collection as rolled-back uploads (4.).
7. Uploads speak two dialects (docs/api.md, "Releases served"). A single upload is one
   pending `uploads` row either way; the 0.7.7 flow only adds a signed `upload_token` naming
   its address. A multipart upload's address is `m-<upload_id>`, so the 0.7.7 part lookup and
   abort, which carry no token, find it by (session, path, upload_id): that binding, made at
   initiate, and the bearer authorize them. The upload id is checked to be 32 hex digits
   before it becomes part of a file name.
8. Finalize and complete check everything they were told (checksum, size, part ETags) before
   they adopt a blob or stage a row, so a refused call stages nothing.
9. A download grant is a signed token that describes one immutable version (blob key, size,
   ETag, content type, metadata, time, reproducible); reading it needs no database lookup,
   and it keeps serving those bytes after later commits until it expires. A grant whose
   token would be too long for a URL is not issued (None); the caller streams instead.
10. Garbage: a crash can leave a blob nothing references (killed after the rename into
   blobs/ but before its transaction committed, or after a transaction dropped the last
   reference but before `_collect`) and spool files no upload will finish. `sweep` removes
   them: blobs no entry, staged row or pending upload names, checked under the write lock
   under which every reference is created (4.), and spool files no pending upload row
   protects. Only files older than `grace` seconds go, so that a sweep while the server
   runs never races a request still writing; at startup (the data directory locked, nothing
   in flight) the grace is 0. Pending uploads whose URL expired go with their files.
11. Crash points (tilde_server.crashpoints) mark the phases of uploads, finalize, complete,
   commit and rollback for the crash tests; unarmed they cost one comparison.
12. Wherever a commit id is taken (`ref`, log, get, revert, diff), a hex string shorter than
   a full id is a prefix of one: at least MIN_COMMIT_PREFIX digits (else 400), found with one
   range scan of the `commits_id` index (`id >= p AND id < successor(p)`, LIMIT 2). Two hits
   are a 409 (ambiguous), none a 404. Anything else is looked up exactly, as before.
13. Rebase (an extension) moves an open session's base to head with the commit's own
   conflict rule (3.), so a session that rebases cleanly would also have committed cleanly;
   on a conflict nothing changes. Its staged rows stay as they are: a tombstone of a path
   the new base lacks hides nothing and commits as a no-op.
14. Beside other processes (a --database deployment) any request may reach any process: the
   bytes PUT to one process's signed upload or part URL become a blob in the shared store
   as they are recorded (an uploads / upload_parts row references it), so the finalize or
   complete that follows may run on another; complete then assembles from the parts' blobs
   and collects them. With blobs in a bucket (s3blobs.py) clients PUT to the bucket
   itself: finalize reads size and ETag from it, complete is the bucket's own, checked
   against its list of parts first, and "the same bytes" of two versions with an upload
   key is the same size and ETag (`Obj.same_bytes`).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from tilde_server import crashpoints as cp
from tilde_server.store import dialect
from tilde_server.store import validation as v
from tilde_server.store.blobs import (
    BLOB_ID,
    BlobStore,
    Spool,
    SpoolSequence,
    fsync_dir,
    is_upload_key,
    mkdirs,
    shard_of,
)
from tilde_server.store.db import Conn, Database, Row, SqliteDatabase
from tilde_server.store.errors import (
    BadRequest,
    Conflict,
    DataDirError,
    Forbidden,
    NotFound,
    Unauthorized,
)
from tilde_server.store.keys import Keys, embedded_keys, open_key_file
from tilde_server.store.listing import (
    MergedView,
    Source,
    key_successor,
    paginate,
    start_bound,
)
from tilde_server.store.lock import LOCK_FILE
from tilde_server.store.s3blobs import MIN_PART, S3BlobStore, S3Options, S3Url
from tilde_server.store.signing import Signer, check_expiry_text, expiry_in, format_expiry

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


class Store:
    """The engine. Create with `Store.open(data_dir)`."""

    def __init__(self, root: Path, db: Database, meta: dict[str, str],
                 owner: bool = True, keys: Keys | None = None,
                 blob_store: BlobStore | None = None, shared: bool = False) -> None:
        """`keys`: the deployment's (keys.py); default an embedded directory's own.
        `blob_store`: where the blobs are (default `root`/blobs): a directory or a bucket
        shared by a deployment's processes (blobs.py 6., s3blobs.py).
        `shared`: other processes serve the same database (imports.py 6.)."""
        self.root = root
        # The process that serves the directory (recovers it at open, stops its imports at
        # close), not a maintenance command opened beside a running server.
        self.owner = owner
        self.startup_sweep: SweepResult | None = None
        self.db = db
        self._commit_hooks: list[Callable[[CommitEvent], None]] = []
        self.blobs = blob_store or BlobStore(root)
        self.upload_ttl = SINGLE_UPLOAD_TTL
        self.multipart_ttl = MULTIPART_TTL
        self.bucket_upload_grace = BUCKET_UPLOAD_GRACE
        # Secrets, connectors and imports (docs/connectors.md). Imported here because those
        # modules build on this one.
        from tilde_server.store.connectors import ConnectorStore
        from tilde_server.store.imports import ImportRunner
        from tilde_server.store.vault import SecretStore, Vault, has_sealed_values

        if keys is None:
            with db.read() as c:
                keys = embedded_keys(root, meta["secret"], has_sealed_values(c))
        self.keys = keys
        self.signer = Signer(keys.signing)
        self.vault = Vault(keys.vault)
        self.secrets = SecretStore(self)
        self.connectors = ConnectorStore(self)
        self.shared = shared
        self.imports = ImportRunner(self, shared)

    # ======================================================================== lifecycle
    @classmethod
    def open(cls, root: Path, admin_key: str | None = None, *, recover: bool = True,
             database: str | None = None, key_file: Path | None = None,
             blobs: str | None = None,
             s3: S3Options | None = None) -> tuple[Store, str | None]:
        """Open or initialize `root`. Returns the store and a newly generated admin key (if one
        was generated on first start). Raises DataDirError for a foreign or newer directory.

        `recover`: clean up after a previous run (unfinished imports fail, a `sweep` with no
        grace). Only the directory's one owner may: a maintenance command opened while a
        server runs passes False, or it would fail the server's imports and remove its
        uploads in flight.

        `database`: a postgresql:// URL to keep the metadata in (store/pg.py) instead of
        `root`/tilde.db; `root` then holds this process's blobs and scratch. Several
        processes may open one database: the first creates the schema (under a lock), and
        a process that recovers leaves the others' work alone. `key_file`: the
        deployment's --secret-key-file (keys.py 2.), required with a `database`; `blobs`:
        its blob directory or s3://BUCKET[/PREFIX], shared by all its processes (default:
        in `root`, this process's alone); `s3`: the bucket's endpoint and region."""
        root = root.expanduser()
        cls.check_root(root, database)
        if database:
            if key_file is None:
                raise DataDirError("--database needs --secret-key-file: the keys every "
                                   "process of the deployment shares (docs/deploy.md)")
            return cls._open_database(root, admin_key, recover, database, key_file,
                                      blobs_location(blobs), s3 or S3Options())
        if key_file is not None or blobs:
            raise DataDirError("--secret-key-file and --blobs are for --database "
                               "deployments; an embedded one keeps its keys and blobs in "
                               "its data directory")
        db_path = root / DB_FILE
        generated: str | None = None
        if db_path.exists():
            db = SqliteDatabase(db_path)
            meta = db.check_format()
            store = cls(root, db, meta, recover)
            if admin_key:
                store._ensure_admin_key(admin_key)
        else:
            mkdirs(root)
            os_chmod(root, 0o700)
            db = SqliteDatabase(db_path)
            meta = {"secret": secrets.token_hex(32), "created_at": now_rfc3339()}
            db.initialize(meta)
            fsync_dir(root)  # the new tilde.db's name
            store = cls(root, db, meta, recover)
            if not admin_key:
                admin_key = generated = generate_api_key()
            store._create_admin(admin_key)
        if recover:
            store.imports.recover()
            store._startup_sweep(0.0)
        return store, generated

    @classmethod
    def _open_database(cls, root: Path, admin_key: str | None, recover: bool,
                       url: str, key_file: Path, blobs: Path | S3Url | None,
                       s3: S3Options) -> tuple[Store, str | None]:
        from tilde_server.store.pg import PostgresDatabase

        if not url.startswith(("postgresql://", "postgres://")):
            raise DataDirError("--database takes a postgresql://USER:PASSWORD@HOST:PORT/DB "
                               "URL")
        mkdirs(root)
        os_chmod(root, 0o700)
        (root / SCRATCH_MARK).touch()
        keys, created = open_key_file(key_file)
        db = PostgresDatabase(url)
        fingerprint = keys.fingerprint()
        fresh_meta = {"key_fingerprint": fingerprint, "created_at": now_rfc3339()}
        try:
            fresh = db.initialize_once(fresh_meta)
            meta = fresh_meta if fresh else db.check_format()
            if meta.get("key_fingerprint") != fingerprint:  # keys.py 3.
                if created:
                    key_file.expanduser().unlink()
                raise DataDirError(
                    f"{key_file} is not the key file this database was initialized with; "
                    "give every process of the deployment the same --secret-key-file")
        except BaseException:
            db.close()
            raise
        try:
            if isinstance(blobs, S3Url):
                blob_store: BlobStore = S3BlobStore(root, blobs, s3)
            else:
                blob_store = BlobStore(root, blobs)
            store = cls(root, db, meta, recover, keys, blob_store, shared=True)
        except BaseException:
            db.close()
            raise
        generated: str | None = None
        if fresh:
            if not admin_key:
                admin_key = generated = generate_api_key()
            store._create_admin(admin_key)
        elif admin_key:
            store._ensure_admin_key(admin_key)
        if recover:
            # Other processes may be mid-upload: only what is older than a grace goes. Their
            # imports are theirs; a dead one's are taken over when its lease runs out.
            store._startup_sweep(SHARED_STARTUP_GRACE)
        return store, generated

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
        with self.db.write() as c:
            uid = str(uuid.uuid4())
            c.execute("INSERT INTO users(id, username, created_at) VALUES (?, ?, ?)",
                      (uid, ADMIN_USERNAME, now_rfc3339()))
            c.execute("INSERT INTO api_keys(id, user_id, key_hash, created_at) VALUES (?,?,?,?)",
                      (str(uuid.uuid4()), uid, hash_key(key), now_rfc3339()))

    def _ensure_admin_key(self, key: str) -> None:
        """A later start with --admin-key: a key not yet known becomes another admin key."""
        h = hash_key(key)
        with self.db.write() as c:
            if c.execute("SELECT 1 FROM api_keys WHERE key_hash = ?", (h,)).fetchone():
                return
            user = c.execute("SELECT id FROM users WHERE username = ?",
                             (ADMIN_USERNAME,)).fetchone()
            c.execute("INSERT INTO api_keys(id, user_id, key_hash, created_at) VALUES (?,?,?,?)",
                      (str(uuid.uuid4()), user["id"], h, now_rfc3339()))
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
            return dict(self._org(c, name))

    def create_org(self, name: str, display_name: str) -> dict[str, Any]:
        v.org_name(name)
        v.text(display_name, "display_name")
        with self.db.write() as c:
            if c.execute("SELECT 1 FROM orgs WHERE name = ? AND deleted_at IS NULL",
                         (name,)).fetchone():
                raise Conflict(f"organization {name!r} already exists", "already_exists")
            c.execute("INSERT INTO orgs(uid, name, display_name, created_at) VALUES (?,?,?,?)",
                      (str(uuid.uuid4()), name, display_name or name, now_rfc3339()))
            return dict(self._org(c, name))

    def delete_org(self, name: str) -> None:
        """Soft delete; its repositories go with it."""
        with self.db.write() as c:
            org = self._org(c, name)
            t = now_rfc3339()
            c.execute("UPDATE repos SET deleted_at = ? WHERE org_id = ? AND deleted_at IS NULL",
                      (t, org["id"]))
            c.execute("UPDATE orgs SET deleted_at = ? WHERE id = ?", (t, org["id"]))

    @staticmethod
    def _org(c: Conn, name: str) -> Row:
        row = c.execute("SELECT * FROM orgs WHERE name = ? AND deleted_at IS NULL",
                        (name,)).fetchone()
        if row is None:
            raise NotFound(f"organization {name!r} not found")
        return row

    # ======================================================================== repositories
    _REPO_SELECT = ("SELECT r.*, o.uid AS org_uid FROM repos r JOIN orgs o ON o.id = r.org_id ")

    def _repo(self, c: Conn, org: str, name: str, lock: bool = False) -> Row:
        """`lock`: in a write, hold the repository row until it ends; whatever moves or
        decides on the head (commit, rebase, revert) or changes the row takes it, so two
        processes' commits to one repository go one after the other (dialect.py 5.)."""
        row = c.execute(
            self._REPO_SELECT + "WHERE o.name = ? AND o.deleted_at IS NULL AND r.name = ? "
            "AND r.deleted_at IS NULL" + (c.for_update("r") if lock else ""),
            (org, name)).fetchone()
        if row is None:
            self._org(c, org)
            raise NotFound(f"repository {org}/{name} not found")
        return row

    def list_repos(self, org: str, after: str | None, amount: int) -> Page:
        with self.db.read() as c:
            o = self._org(c, org)
            rows = c.execute(
                self._REPO_SELECT + "WHERE r.org_id = ? AND r.deleted_at IS NULL AND r.name > ? "
                "ORDER BY r.name LIMIT ?", (o["id"], after or "", amount + 1)).fetchall()
        items = [dict(r) for r in rows[:amount]]
        has_more = len(rows) > amount
        return Page(items, has_more, items[-1]["name"] if has_more else None)

    def get_repo(self, org: str, name: str) -> dict[str, Any]:
        with self.db.read() as c:
            return dict(self._repo(c, org, name))

    def create_repo(self, org: str, name: str, fields: dict[str, Any],
                    who: Principal) -> dict[str, Any]:
        v.repo_name(name)
        with self.db.write() as c:
            o = self._org(c, org)
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
            return dict(self._repo(c, org, name))

    def update_repo(self, org: str, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Partial merge: only the given keys change."""
        allowed = ("description", "visibility", "session_max_duration_days", "retention_days",
                   "require_approval_for_agents")
        with self.db.write() as c:
            r = self._repo(c, org, name, lock=True)
            for k in allowed:
                if k in fields:
                    c.execute(f"UPDATE repos SET {k} = ? WHERE id = ?", (fields[k], r["id"]))
            return dict(self._repo(c, org, name))

    def delete_repo(self, org: str, name: str) -> None:
        with self.db.write() as c:
            r = self._repo(c, org, name, lock=True)
            c.execute("UPDATE repos SET deleted_at = ? WHERE id = ?", (now_rfc3339(), r["id"]))

    # ======================================================================== sessions
    def create_session(self, org: str, repo: str, who: Principal) -> str:
        uid = str(uuid.uuid4())
        with self.db.write() as c:
            r = self._repo(c, org, repo)
            c.execute("INSERT INTO sessions(uid, repo_id, base_seq, state, created_by, created_at) "
                      "VALUES (?,?,?,?,?,?)",
                      (uid, r["id"], r["head_seq"], "open", who.user_id, now_rfc3339()))
        return uid

    def _session(self, c: Conn, repo: Row, sid: str) -> Row:
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

    def commit_session(self, org: str, repo: str, sid: str, message: str,
                       metadata: dict[str, str], who: Principal) -> str:
        with self.db.write() as c:
            r = self._repo(c, org, repo, lock=True)
            s = self._session(c, r, sid)
            if not c.execute("SELECT 1 FROM staged WHERE session_id = ? LIMIT 1",
                             (s["id"],)).fetchone():
                raise BadRequest("nothing to commit: the session has no staged changes",
                                 "no_changes")
            self._check_conflicts(c, r, s)
            commit_id = self._apply(c, r, s, message, metadata, who)
            cp.reached(cp.COMMIT_BEFORE_DB_COMMIT)
        cp.reached(cp.COMMIT_AFTER_DB_COMMIT)
        self.blobs.drop_spools(sid)
        return commit_id

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

    def _check_conflicts(self, c: Conn, r: Row, s: Row) -> None:
        conflicts = self._conflicts(c, r, s, self._changed_since_base(c, r, s))
        if conflicts:
            shown = ", ".join(repr(p) for p in sorted(conflicts)[:5])
            more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
            raise Conflict(
                f"conflict: {len(conflicts)} path(s) changed by another commit since this "
                f"session started: {shown}{more}", "conflict")

    def _apply(self, c: Conn, r: Row, s: Row, message: str,
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

    def rebase_session(self, org: str, repo: str, sid: str) -> str:
        """Move an open session's base to head, keeping its staged changes (13.); returns
        the new base commit id ("" for an empty repository). Conflict (with `conflicts`,
        at most MAX_REBASE_CONFLICTS paths) changes nothing."""
        with self.db.write() as c:
            r = self._repo(c, org, repo, lock=True)
            s = self._session(c, r, sid)
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
            r = self._repo(c, org, repo)
            s = self._session(c, r, sid)
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
        self._collect(blobs)

    def _collect(self, blobs: list[str]) -> None:
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
            s = self._session(c, r, session)
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

    def stat_object(self, org: str, repo: str, path: str, session: str | None = None,
                    ref: str | None = None) -> Obj:
        v.object_key(path)
        with self.db.read() as c:
            r = self._repo(c, org, repo)
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
        v.text(prefix, "prefix")
        if after is not None:
            v.text(after, "after")
        if delimiter is not None:
            v.text(delimiter, "delimiter")
        delimiter = delimiter or None
        with self.db.read() as c:
            r = self._repo(c, org, repo)
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
        v.text(prefix, "prefix")
        if after is not None:
            v.text(after, "after")
        with self.db.read() as c:
            r = self._repo(c, org, repo)
            s = self._session(c, r, session)
            upper = key_successor(prefix) if prefix else None
            lower, incl = start_bound(prefix, after)
            rows = self._staged_fetch(c, s["id"], upper)(lower, incl, amount + 1)
        items = [ChangeRecord(p, o) for p, o in rows[:amount]]
        has_more = len(rows) > amount
        return Page(items, has_more, items[-1].path if has_more else None)

    # ======================================================================== writes
    @staticmethod
    def _reference(c: Conn, blob: str) -> None:
        """Before a transaction makes a new reference to `blob`: a lock the collector's
        exclusive one waits for (4.), so it never deletes a blob whose reference is about to
        commit. On SQLite the one writer already excludes the collector."""
        c.lock_key(BLOB_LOCK + shard_of(blob), shared=True)

    def _adopt(self, c: Conn, spool: Path, blob: str) -> None:
        """Move a finished spool into place as `blob`, to be referenced by this transaction."""
        self._reference(c, blob)
        self.blobs.adopt(spool, blob)

    def _stage_put(self, c: Conn, sess: int, o: Obj) -> str | None:
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

    def stage_upload(self, org: str, repo: str, session: str, path: str) -> StagedUpload:
        v.object_key(path)
        with self.db.read() as c:
            self._session(c, self._repo(c, org, repo), session)
        address = "u-" + secrets.token_hex(16)
        expires = expiry_in(self.upload_ttl)
        expires_at = format_expiry(expires)
        sig = self.signer.sign("single", address, expires_at, session, path)
        token = self.signer.make_token({"a": address, "s": session, "p": path, "e": expires},
                                       "single-token")
        url = None
        if isinstance(self.blobs, S3BlobStore):  # the bytes go to the bucket (s3blobs 3.)
            url = self.blobs.presign_put(address, self.upload_ttl)
        return StagedUpload(address, sig, expires_at, token, url)

    def verify_single_upload(self, signature: str, address: str, expires_at: str,
                             session: str, path: str) -> None:
        self.signer.verify(signature, "single", address, expires_at, session, path)
        check_expiry_text(expires_at)

    def _open_session_by_uid(self, c: Conn, session: str) -> Row:
        row = c.execute("SELECT s.*, r.uid AS repo_uid FROM sessions s JOIN repos r "
                        "ON r.id = s.repo_id WHERE s.uid = ? AND s.state = 'open' "
                        "AND r.deleted_at IS NULL", (session,)).fetchone()
        if row is None:
            raise NotFound("session not found or no longer open", "session_not_found")
        return row

    def begin_receive(self, session: str, address: str, part: int | None) -> Spool:
        """Open the spool file for bytes PUT to a signed URL (caller verified the signature)."""
        with self.db.read() as c:
            s = self._open_session_by_uid(c, session)
            if part is not None and not c.execute(
                    "SELECT 1 FROM uploads WHERE address = ? AND session_id = ?",
                    (address, s["id"])).fetchone():
                raise NotFound("multipart upload not found", "upload_not_found")
        return self.blobs.open_spool(session, address, part)

    def end_receive(self, session: str, address: str, path: str, part: int | None,
                    spool: Spool) -> str:
        """Record the received bytes; returns their md5 hex (the ETag). Beside other
        processes the bytes become a blob at once (referenced by their uploads row): the
        finalize or complete may come to another process, which cannot see this one's
        spools (engine 14.)."""
        cp.reached(cp.UPLOAD_RECEIVED if part is None else cp.PART_RECEIVED)
        sha, md5, size = spool.finish()
        cp.reached(cp.UPLOAD_SYNCED if part is None else cp.PART_SYNCED)
        try:
            with self.db.write() as c:
                s = self._open_session_by_uid(c, session)
                if self.shared:
                    self._adopt(c, spool.path, sha)
                if part is None:
                    c.execute("INSERT INTO uploads(address, session_id, path, kind, "
                              "sha256, md5, size, created_at) VALUES (?,?,?,?,?,?,?,?)"
                              + dialect.replace_on("address", "session_id, path, kind, "
                                                   "sha256, md5, size, created_at"),
                              (address, s["id"], path, "single", sha, md5, size, now_rfc3339()))
                else:
                    c.execute("INSERT INTO upload_parts(address, part_number, sha256, "
                              "md5, size) VALUES (?,?,?,?,?)"
                              + dialect.replace_on("address, part_number", "sha256, md5, size"),
                              (address, part, sha, md5, size))
        except NotFound:
            spool.abort()
            raise
        cp.reached(cp.UPLOAD_RECORDED if part is None else cp.PART_RECORDED)
        return md5

    def finalize_upload(self, org: str, repo: str, session: str, path: str, address: str,
                        signature: str, expires_at: str, content_type: str,
                        metadata: dict[str, str]) -> Obj:
        """0.7.2 finalize: the stage response's address and signature."""
        v.object_key(path)
        v.content_type(content_type)
        self.verify_single_upload(signature, address, expires_at, session, path)
        return self._finalize(org, repo, session, path, address, content_type, metadata,
                              flow="legacy")

    def finalize_token_upload(self, org: str, repo: str, session: str, path: str,
                              upload_token: str, content_type: str, metadata: dict[str, str],
                              checksum: str | None = None, size: int | None = None) -> Obj:
        """0.7.7 finalize: the `upload_token` of PUT {R}/object; `checksum` (the upload's
        ETag, quotes optional) and `size` are checked when given (7., 8.)."""
        v.object_key(path)
        v.content_type(content_type)
        t = self.signer.read_token(upload_token, "single-token")
        if t.get("s") != session or t.get("p") != path or not isinstance(t.get("a"), str):
            raise Forbidden("upload token does not match this upload", "invalid_signature")
        return self._finalize(org, repo, session, path, t["a"], content_type, metadata,
                              checksum, size, flow="current")

    def _finalize(self, org: str, repo: str, session: str, path: str, address: str,
                  content_type: str, metadata: dict[str, str], checksum: str | None = None,
                  size: int | None = None, *, flow: str) -> Obj:
        before_adopt, adopted, committed = cp.FINALIZE[flow]
        with self.db.write() as c:
            r = self._repo(c, org, repo)
            s = self._session(c, r, session)
            up = c.execute("SELECT * FROM uploads WHERE address = ? AND session_id = ? "
                           "AND kind = 'single'", (address, s["id"])).fetchone()
            if up is not None and up["path"] != path:
                up = None
            if up is not None:  # the bytes came to this server: a spool, content keyed
                blob, md5, got = up["sha256"], up["md5"], up["size"]
            elif isinstance(self.blobs, S3BlobStore):  # or to the bucket (s3blobs 3.)
                self._reference(c, address)  # before looking: a sweep may be deciding
                found = self.blobs.head(address)
                if found is None:
                    raise BadRequest("no bytes were uploaded to this upload URL",
                                     "upload_missing")
                blob, (got, md5) = address, found
            else:
                raise BadRequest("no bytes were uploaded to this upload URL", "upload_missing")
            if checksum is not None and _unquote(checksum).lower() != md5:
                raise BadRequest(f"checksum {checksum!r} does not match the uploaded bytes "
                                 f"(MD5 {md5})", "checksum_mismatch")
            if size is not None and size != got:
                raise BadRequest(f"size_bytes {size} does not match the uploaded bytes "
                                 f"({got} bytes)", "size_mismatch")
            cp.reached(before_adopt)
            if up is not None:
                self._adopt(c, self.blobs.spool_path(session, address), blob)
            o = Obj(path, blob, got, md5,
                    content_type or "application/octet-stream", metadata, now_rfc3339(), True)
            replaced = self._stage_put(c, s["id"], o)
            c.execute("DELETE FROM uploads WHERE address = ?", (address,))
            cp.reached(adopted)
        cp.reached(committed)
        if replaced:
            self._collect([replaced])
        return o

    def require_open_session(self, org: str, repo: str, session: str) -> None:
        """404 unless `session` is open (a rollback racing an upload removes its spools)."""
        with self.db.read() as c:
            self._session(c, self._repo(c, org, repo), session)

    def begin_batch(self, org: str, repo: str, session: str, sizes: list[int]) -> SpoolSequence:
        """Check the session is open (404 before any object byte is written); returns the
        spools that receive the batch's bytes in order."""
        with self.db.read() as c:
            self._session(c, self._repo(c, org, repo), session)
        return SpoolSequence(self.blobs, session, "b-" + secrets.token_hex(16), sizes)

    def stage_batch(self, org: str, repo: str, session: str, spools: SpoolSequence,
                    items: list[BatchItem]) -> list[Obj]:
        """Stage every object of a batch upload in one transaction, as finalize would one by
        one (6.). Consumes `spools` whatever happens: nothing is staged on any error."""
        adopted: list[str] = []
        try:
            for it in items:
                v.object_key(it.path)
                v.content_type(it.content_type)
            if len({it.path for it in items}) != len(items):
                raise BadRequest("a path appears twice in the batch", "invalid_input")
            if [it.size for it in items] != spools.sizes:
                raise BadRequest("sizes do not match the received spools", "invalid_input")
            received = spools.finish()
            out, replaced = [], []
            with self.db.write() as c:
                s = self._session(c, self._repo(c, org, repo), session)
                t = now_rfc3339()
                for i, (it, (sha, md5, size)) in enumerate(zip(items, received, strict=True)):
                    self._adopt(c, spools.path(i), sha)
                    adopted.append(sha)
                    o = Obj(it.path, sha, size, md5, it.content_type or "application/octet-stream",
                            it.metadata, t, True)
                    old = self._stage_put(c, s["id"], o)
                    if old:
                        replaced.append(old)
                    out.append(o)
                cp.reached(cp.BATCH_ADOPTED)
        except BaseException:
            self._collect(adopted)
            raise
        finally:
            spools.abort()
        self._collect(replaced)
        return out

    def initiate_multipart(self, org: str, repo: str, session: str,
                           path: str) -> MultipartUpload:
        v.object_key(path)
        upload_id = secrets.token_hex(16)
        address = multipart_address(upload_id)  # found again by (session, path, upload_id): 7.
        expires = expiry_in(self.multipart_ttl)
        with self.db.read() as c:
            self._session(c, self._repo(c, org, repo), session)
        remote = None
        if isinstance(self.blobs, S3BlobStore):  # parts go to the bucket (s3blobs 3.)
            remote = self.blobs.create_multipart(address)
        try:
            with self.db.write() as c:
                s = self._session(c, self._repo(c, org, repo), session)
                c.execute("INSERT INTO uploads(address, session_id, path, kind, created_at, "
                          "remote_id) VALUES (?,?,?,?,?,?)",
                          (address, s["id"], path, "multipart", now_rfc3339(), remote))
        except BaseException:
            if remote is not None and isinstance(self.blobs, S3BlobStore):
                self.blobs.abort_multipart(address, remote)
            raise
        token = self.signer.make_token(
            {"u": upload_id, "a": address, "s": session, "p": path, "e": expires})
        return MultipartUpload(upload_id, address, token, expires)

    def read_multipart_token(self, token: str, upload_id: str | None = None,
                             session: str | None = None, path: str | None = None,
                             address: str | None = None) -> dict[str, Any]:
        """Verify a token and that the given context matches it (403 otherwise)."""
        t = self.signer.read_token(token)
        for key, given in (("u", upload_id), ("s", session), ("p", path), ("a", address)):
            if given is not None and t.get(key) != given:
                raise Forbidden("upload token does not match this upload", "invalid_signature")
        return t

    def _bound_upload(self, c: Conn, s: Row, path: str,
                      upload_id: str) -> str:
        """The address of the multipart upload `upload_id` of this session and path (7.)."""
        if not _UPLOAD_ID_RE.match(upload_id):
            raise NotFound("multipart upload not found", "upload_not_found")
        address = multipart_address(upload_id)
        if not c.execute("SELECT 1 FROM uploads WHERE address = ? AND session_id = ? "
                         "AND path = ? AND kind = 'multipart'",
                         (address, s["id"], path)).fetchone():
            raise NotFound("multipart upload not found", "upload_not_found")
        return address

    def part_token(self, org: str, repo: str, session: str, path: str, upload_id: str,
                   upload_token: str | None = None) -> str:
        """0.7.7 part lookup: a token for the part URL of an upload bound to (session, path,
        upload_id); `upload_token` is checked when given (0.7.8 sends it, 0.7.7 does not)."""
        v.object_key(path)
        if upload_token is not None:
            self.read_multipart_token(upload_token, upload_id, session, path)
        with self.db.read() as c:
            r = self._repo(c, org, repo)
            address = self._bound_upload(c, self._session(c, r, session), path, upload_id)
        # a purpose of its own: the bearer-less part URL must not pass for the upload_token
        return self.signer.make_token({"u": upload_id, "a": address, "s": session, "p": path,
                                       "e": expiry_in(self.multipart_ttl)}, "part")

    def bucket_part_url(self, address: str, part: int) -> str | None:
        """The presigned URL of part `part` in the bucket when the upload's parts go there
        (s3blobs 3.); None when they come to this server's signed part route."""
        if not isinstance(self.blobs, S3BlobStore):
            return None
        with self.db.read() as c:
            row = c.execute("SELECT remote_id FROM uploads WHERE address = ?",
                            (address,)).fetchone()
        if row is None:
            raise NotFound("multipart upload not found", "upload_not_found")
        if row[0] is None:
            return None
        return self.blobs.presign_part(address, row[0], part, self.multipart_ttl)

    def read_part_url_token(self, token: str) -> dict[str, Any]:
        """The token of a part URL: a 0.7.7 part grant, or (0.7.2-0.7.6 URLs carry it) the
        upload's own multipart token."""
        try:
            return self.signer.read_token(token, "part")
        except Forbidden:
            return self.read_multipart_token(token)

    def complete_multipart(self, org: str, repo: str, session: str, path: str, token: str,
                           upload_id: str, address: str | None, parts: list[tuple[int, str]],
                           total_size: int | None, content_type: str,
                           metadata: dict[str, str], checksum: str | None = None) -> Obj:
        """Both dialects: the legacy body names the address, the new one leaves it to the
        token. `total_size` and `checksum` (the object's ETag) are checked when given."""
        v.object_key(path)
        v.content_type(content_type)
        t = self.read_multipart_token(token, upload_id, session, path, address)
        address = t.get("a")
        if not isinstance(address, str):
            raise Forbidden("upload token does not match this upload", "invalid_signature")
        numbers = [n for n, _ in parts]
        if numbers != sorted(set(numbers)) or any(n < 1 or n > MAX_PARTS for n in numbers):
            raise BadRequest("parts must have ascending, unique part numbers in 1..10000",
                             "invalid_parts")
        with self.db.read() as c:
            s = self._session(c, self._repo(c, org, repo), session)
            up = c.execute("SELECT remote_id FROM uploads WHERE address = ? AND session_id = ?",
                           (address, s["id"])).fetchone()
            if up is None:
                raise NotFound("multipart upload not found", "upload_not_found")
            have = {row["part_number"]: row for row in c.execute(
                "SELECT * FROM upload_parts WHERE address = ?", (address,))}
        if up["remote_id"] is not None:
            return self._complete_in_bucket(org, repo, session, path, address, up["remote_id"],
                                            parts, total_size, content_type, metadata,
                                            checksum)
        md5s, shas, size = [], [], 0
        for n, etag in parts:
            row = have.get(n)
            if row is None:
                raise BadRequest(f"part {n} was not uploaded", "invalid_parts")
            if _unquote(etag) != row["md5"]:
                raise BadRequest(f"part {n}: ETag does not match the uploaded part",
                                 "invalid_parts")
            md5s.append(bytes.fromhex(row["md5"]))
            shas.append(row["sha256"])
            size += row["size"]
        if total_size is not None and size != total_size:
            raise BadRequest(f"the size {total_size} does not match the parts ({size} bytes)",
                             "invalid_parts")
        if not parts:
            key, etag = hashlib.sha256(b"").hexdigest(), _md5(b"").hexdigest()
        else:
            key = shas[0] if len(shas) == 1 else hashlib.sha256(
                ("parts:" + ",".join(shas)).encode()).hexdigest()
            etag = _md5(b"".join(md5s)).hexdigest() + f"-{len(parts)}"
        if checksum is not None and _unquote(checksum).lower() != etag:
            raise BadRequest(f"checksum {checksum!r} does not match the object's ETag {etag}",
                             "checksum_mismatch")
        if not parts:
            spool = self.blobs.open_spool(session, address + ".assembled")
            spool.finish()
        else:
            part_files = ([self.blobs.path(sha) for sha in shas] if self.shared  # 14.
                          else [self.blobs.spool_path(session, address, n) for n in numbers])
            self.blobs.assemble(part_files, self.blobs.spool_path(session, address + ".assembled"))
        cp.reached(cp.COMPLETE_ASSEMBLED)
        with self.db.write() as c:
            r = self._repo(c, org, repo)
            s = self._session(c, r, session)
            if not c.execute("DELETE FROM uploads WHERE address = ? RETURNING address",
                             (address,)).fetchone():
                raise NotFound("multipart upload not found", "upload_not_found")
            c.execute("DELETE FROM upload_parts WHERE address = ?", (address,))
            self._adopt(c, self.blobs.spool_path(session, address + ".assembled"), key)
            o = Obj(path, key, size, etag, content_type or "application/octet-stream", metadata,
                    now_rfc3339(), True)
            replaced = self._stage_put(c, s["id"], o)
            cp.reached(cp.COMPLETE_ADOPTED)
        cp.reached(cp.COMPLETE_COMMITTED)
        self.blobs.drop_spools(session, address)
        # the parts' own blobs (14.), unless the object is one of them; then what it replaced
        self._collect([sha for sha in shas if sha != key] if self.shared else [])
        if replaced:
            self._collect([replaced])
        return o

    def _complete_in_bucket(self, org: str, repo: str, session: str, path: str, address: str,
                            remote: str, parts: list[tuple[int, str]], total_size: int | None,
                            content_type: str, metadata: dict[str, str],
                            checksum: str | None) -> Obj:
        """complete_multipart for parts the client PUT to the bucket, which assembles the
        object itself (s3blobs 3.); its ETag is the object's. Everything is checked against
        the bucket's list of parts first, so a refusal leaves the upload as it was (the
        client may complete it again); a complete whose upload the bucket already finished
        (a retry after a lost answer or a crash) stages the object it finds."""
        assert isinstance(self.blobs, S3BlobStore)
        from botocore.exceptions import ClientError

        held = self.blobs.list_parts(address, remote)
        md5s, size = [], 0
        for i, (n, etag) in enumerate(parts):
            bare = _unquote(etag).lower()
            if not re.fullmatch(r"[0-9a-f]{32}", bare) or (
                    held is not None and held.get(n, ("", 0))[0] != bare):
                raise BadRequest(f"part {n} was not uploaded, or its ETag does not match "
                                 "the uploaded part", "invalid_parts")
            md5s.append(bytes.fromhex(bare))
            if held is not None:
                part_size = held[n][1]
                if part_size < MIN_PART and i < len(parts) - 1:
                    raise BadRequest(f"part {n} has {part_size} bytes: every part but the "
                                     f"last needs {MIN_PART} at least", "invalid_parts")
                size += part_size
        if held is not None and total_size is not None and size != total_size:
            raise BadRequest(f"the size {total_size} does not match the parts ({size} bytes)",
                             "invalid_parts")
        expected = (_md5(b"".join(md5s)).hexdigest() + f"-{len(parts)}" if parts
                    else _md5(b"").hexdigest())
        if checksum is not None and _unquote(checksum).lower() != expected:
            raise BadRequest(f"checksum {checksum!r} does not match the object's ETag "
                             f"{expected}", "checksum_mismatch")
        if not parts:  # S3 wants one part at least: the empty object, content keyed
            self.blobs.abort_multipart(address, remote)
            blob, size, etag = self.blobs.write_bytes(b""), 0, expected
        else:
            if held is not None:
                try:
                    self.blobs.complete_multipart(address, remote, parts)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
                        raise BadRequest(f"the parts were refused by the bucket ({code})",
                                         "invalid_parts") from None
                    if code != "NoSuchUpload":
                        raise
            found = self.blobs.head(address)  # gone, or finished before: what is there
            if found is None or found[1] != expected:
                raise NotFound("multipart upload not found", "upload_not_found")
            blob, (size, etag) = address, found
            if total_size is not None and size != total_size:
                raise BadRequest(f"the size {total_size} does not match the parts ({size} "
                                 "bytes)", "invalid_parts")
        cp.reached(cp.COMPLETE_ASSEMBLED)
        with self.db.write() as c:
            s = self._session(c, self._repo(c, org, repo), session)
            if not c.execute("DELETE FROM uploads WHERE address = ? RETURNING address",
                             (address,)).fetchone():
                raise NotFound("multipart upload not found", "upload_not_found")
            self._reference(c, blob)
            o = Obj(path, blob, size, etag, content_type or "application/octet-stream",
                    metadata, now_rfc3339(), True)
            replaced = self._stage_put(c, s["id"], o)
            cp.reached(cp.COMPLETE_ADOPTED)
        cp.reached(cp.COMPLETE_COMMITTED)
        if replaced:
            self._collect([replaced])
        return o

    def abort_multipart(self, org: str, repo: str, session: str, path: str, token: str,
                        upload_id: str, address: str) -> None:
        self.read_multipart_token(token, upload_id, session, path, address)
        with self.db.write() as c:
            s = self._session(c, self._repo(c, org, repo), session)
            c.execute("DELETE FROM upload_parts WHERE address = ?", (address,))
            row = c.execute("DELETE FROM uploads WHERE address = ? AND session_id = ? "
                            "RETURNING remote_id", (address, s["id"])).fetchone()
        self._abort_in_bucket(address, row)
        self.blobs.drop_spools(session, address)

    def abort_multipart_by_id(self, org: str, repo: str, session: str, path: str,
                              upload_id: str, upload_token: str | None = None) -> None:
        """0.7.7 abort `DELETE {R}/object/multipart`: found by its binding (7.); the token,
        which 0.7.7 does not send, is checked when given. 404 when there is no such upload."""
        v.object_key(path)
        if upload_token is not None:
            self.read_multipart_token(upload_token, upload_id, session, path)
        with self.db.write() as c:
            r = self._repo(c, org, repo)
            address = self._bound_upload(c, self._session(c, r, session), path, upload_id)
            c.execute("DELETE FROM upload_parts WHERE address = ?", (address,))
            row = c.execute("DELETE FROM uploads WHERE address = ? RETURNING remote_id",
                            (address,)).fetchone()
        self._abort_in_bucket(address, row)
        self.blobs.drop_spools(session, address)

    def _abort_in_bucket(self, address: str, row: Row | None) -> None:
        """After an upload row with its `remote_id` was deleted: abort the bucket's upload."""
        if row is not None and row[0] is not None and isinstance(self.blobs, S3BlobStore):
            self.blobs.abort_multipart(address, row[0])

    # ======================================================================== download grants
    def sign_download(self, o: Obj, ttl: int) -> str | None:
        """A signed, expiring grant for the bytes of version `o` (9.); None when too long."""
        token = self.signer.make_token({
            "b": o.blob, "z": o.size, "t": o.etag, "c": o.content_type, "m": o.metadata,
            "l": o.last_modified, "r": not o.staged, "p": o.path,
            "e": expiry_in(ttl)}, "download")
        return token if len(token) <= MAX_DOWNLOAD_TOKEN else None

    def bucket_download_url(self, o: Obj, ttl: int) -> str | None:
        """A presigned GET of `o`'s blob in the bucket, when the bucket answers with `o`'s
        own ETag (s3blobs 3., 4.): an upload key's ETag is the bucket's; a content key's is
        its MD5 as long as it was put whole. None otherwise (the caller streams or signs a
        grant of its own). The bucket cannot send X-Tilde-Reproducible (docs/deploy.md)."""
        if not isinstance(self.blobs, S3BlobStore):
            return None
        if not (is_upload_key(o.blob) or re.fullmatch(r"[0-9a-f]{32}", o.etag)):
            return None
        return self.blobs.presign_get(o.blob, ttl, o.content_type)

    def open_download(self, token: str) -> tuple[Obj, BinaryIO]:
        """The version a grant names and its open blob file; 403 when tampered or expired,
        404 when the blob is gone (a staged upload rolled back since)."""
        t = self.signer.read_token(token, "download")
        try:
            o = Obj(str(t["p"]), str(t["b"]), int(t["z"]), str(t["t"]), str(t["c"]),
                    dict(t["m"]), str(t["l"]), not t["r"])
        except (KeyError, TypeError, ValueError):
            raise Forbidden("malformed token", "invalid_signature") from None
        if not BLOB_ID.match(o.blob):
            raise Forbidden("malformed token", "invalid_signature")
        try:
            return o, self.blobs.open(o.blob)
        except FileNotFoundError:
            raise NotFound(f"object {o.path!r} not found", "object_not_found") from None

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
            r = self._repo(c, org, repo)
            s = self._session(c, r, session)
            src = self._view_obj(c, r, s, s["base_seq"], source)
            if src is None:
                raise NotFound(f"object {source!r} not found", "object_not_found")
            o = Obj(destination, src.blob, src.size, src.etag, src.content_type,
                    src.metadata if metadata is None else metadata, now_rfc3339(), True,
                    src.source if metadata is not None else None)
            replaced = self._stage_put(c, s["id"], o)
        if replaced:
            self._collect([replaced])
        return o

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

    def delete_objects(self, org: str, repo: str, session: str, paths: list[str],
                       *, must_exist: bool = False) -> int:
        for p in paths:
            v.object_key(p)
        freed: list[str] = []
        deleted = 0
        with self.db.write() as c:
            r = self._repo(c, org, repo)
            s = self._session(c, r, session)
            for p in dict.fromkeys(paths):
                existed, old = self._stage_delete(c, r, s, p)
                if must_exist and not existed:
                    raise NotFound(f"object {p!r} not found", "object_not_found")
                deleted += existed
                if old:
                    freed.append(old)
        self._collect(freed)
        return deleted

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
            r = self._repo(c, org, repo)
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
            row = self._commit_row(c, self._repo(c, org, repo), commit_id)
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
        v.text(prefix, "prefix")
        if after is not None:
            v.text(after, "after")
        if delimiter is not None:
            v.text(delimiter, "delimiter")
        delimiter = delimiter or None
        with self.db.read() as c:
            r = self._repo(c, org, repo)
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
            r = self._repo(c, org, repo, lock=True)
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
                    self._stage_put(c, sess["id"], before)
            if conflicts:
                raise Conflict(
                    f"cannot revert: {len(conflicts)} path(s) changed since the commit: "
                    + ", ".join(repr(p) for p in sorted(conflicts)[:5]), "conflict")
            msg = message if message is not None else f'Revert "{target["message"]}"'
            return self._apply(c, r, sess, msg, metadata, who)

    # ======================================================================== bulk loading
    def bulk_load(self, org: str, repo: str, rows: Iterator[tuple[str, bytes]],
                  message: str, who: Principal) -> str:
        """Commit many small objects directly (benchmarks, imports); no HTTP, one commit."""
        with self.db.write() as c:
            r = self._repo(c, org, repo, lock=True)
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
            return self._apply(c, r, sess, message, {}, who)


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
