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

import secrets
from collections.abc import Callable
from pathlib import Path

from tilde_server.store.blobs import (
    BlobStore,
    fsync_dir,
    mkdirs,
)
from tilde_server.store.core import (
    ADMIN_USERNAME,
    BLOB_LOCK,
    BUCKET_UPLOAD_GRACE,
    COMMIT_ID_LENGTH,
    DB_FILE,
    DEFAULT_BRANCH,
    MAX_DOWNLOAD_TOKEN,
    MAX_PARTS,
    MAX_PER_PAGE,
    MAX_REBASE_CONFLICTS,
    MIN_COMMIT_PREFIX,
    MULTIPART_TTL,
    PATH_BATCH,
    REFERENCE_BATCH,
    SCRATCH_MARK,
    SHARED_STARTUP_GRACE,
    SINGLE_UPLOAD_TTL,
    STAGE_REPLACE,
    BatchItem,
    ChangeRecord,
    CommitEvent,
    DiffItem,
    MultipartUpload,
    Obj,
    Page,
    Principal,
    StagedUpload,
    StoreCore,
    SweepResult,
    blobs_location,
    generate_api_key,
    hash_key,
    multipart_address,
    now_rfc3339,
    os_chmod,
)
from tilde_server.store.db import Database, SqliteDatabase
from tilde_server.store.errors import (
    DataDirError,
)
from tilde_server.store.history import HistoryMixin
from tilde_server.store.keys import Keys, embedded_keys, open_key_file
from tilde_server.store.objects import ObjectsMixin
from tilde_server.store.repositories import RepositoriesMixin
from tilde_server.store.s3blobs import S3BlobStore, S3Options, S3Url
from tilde_server.store.signing import Signer
from tilde_server.store.uploads import UploadsMixin

__all__ = [
    "ADMIN_USERNAME",
    "BLOB_LOCK",
    "BUCKET_UPLOAD_GRACE",
    "COMMIT_ID_LENGTH",
    "DB_FILE",
    "DEFAULT_BRANCH",
    "MAX_DOWNLOAD_TOKEN",
    "MAX_PARTS",
    "MAX_PER_PAGE",
    "MAX_REBASE_CONFLICTS",
    "MIN_COMMIT_PREFIX",
    "MULTIPART_TTL",
    "PATH_BATCH",
    "REFERENCE_BATCH",
    "SCRATCH_MARK",
    "SHARED_STARTUP_GRACE",
    "SINGLE_UPLOAD_TTL",
    "STAGE_REPLACE",
    "BatchItem",
    "ChangeRecord",
    "CommitEvent",
    "DiffItem",
    "MultipartUpload",
    "Obj",
    "Page",
    "Principal",
    "StagedUpload",
    "Store",
    "SweepResult",
    "blobs_location",
    "generate_api_key",
    "hash_key",
    "multipart_address",
    "now_rfc3339",
    "os_chmod",
]


class Store(RepositoriesMixin, ObjectsMixin, UploadsMixin, HistoryMixin, StoreCore):
    """The engine. Create with `Store.open(data_dir)`. Its parts by noun are mixins over
    core.StoreCore (repositories.py, objects.py, uploads.py, history.py)."""

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
