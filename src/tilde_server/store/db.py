"""The database under the store: schema, format version, migrations, transactions, on two
engines: SQLite (the embedded default, one file in the data directory) and PostgreSQL
(`tilde-server run --database postgresql://...`, several processes on one database). The
store's code is the same on both; what differs is in store/dialect.py and here.

SQLite subtleties:
1. WAL mode: readers never block the writer and see a consistent snapshot inside BEGIN..COMMIT.
2. Writers are serialized by a process-wide lock *and* BEGIN IMMEDIATE, so no transaction ever
   has to be retried on SQLITE_BUSY halfway through; busy_timeout covers other processes.
3. Connections use autocommit mode (isolation_level=None); transactions are explicit through
   `read()` / `write()` context managers so a multi-query read sees one snapshot.
4. Connections are made per thread (Starlette/anyio worker threads are reused) and all are
   remembered so `close()` can close them at shutdown from the main thread.
5. synchronous=FULL, not NORMAL: in WAL mode NORMAL skips the fsync of the WAL at each
   COMMIT (only checkpoints sync), so after a power loss the last acknowledged commits could
   be gone (never corrupt). A 2xx is a durability promise here; one WAL fsync per write
   transaction is the price (benchmarks/server_fsync.py: ~5 ms on a commit).

PostgreSQL subtleties:
6. A pool of connections (psycopg_pool), each used by one thread for one transaction at a
   time. Write transactions run at READ COMMITTED, never SERIALIZABLE (no retry storms):
   what must not interleave is serialized by row locks the store takes where it checks
   before it writes (`Conn.for_update`: the repository row on commit, the session row on
   staging and closing), so correctness across processes comes from the database.
   Read transactions are REPEATABLE READ READ ONLY: one snapshot, as SQLite's reads see,
   and a read-only transaction never fails to serialize.
7. A unique index that a concurrent transaction beat us to (two processes creating the same
   name) is a Conflict (409), on both engines, not a 500.
8. `sum()` of BIGINT is NUMERIC in PostgreSQL: integral values come back as int, as in
   SQLite (the store sums sizes and counts).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from tilde_server.store import dialect
from tilde_server.store.errors import Conflict, DataDirError

log = logging.getLogger("tilde_server.store")

FORMAT_NAME = "tilde-server"
FORMAT_VERSION = 5
# Held by every transaction that changes the schema (creation, migrations, the tables other
# parts add): processes of one deployment starting together would otherwise race, and
# PostgreSQL refuses two concurrent CREATE TABLE IF NOT EXISTS of one name.
SCHEMA_LOCK = "tilde-server:initialize"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
    id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
    key_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE orgs (
    id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    display_name TEXT NOT NULL, created_at TEXT NOT NULL, deleted_at TEXT);
CREATE UNIQUE INDEX orgs_live_name ON orgs(name) WHERE deleted_at IS NULL;
CREATE TABLE repos (
    id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, org_id INTEGER NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL, description TEXT NOT NULL, visibility TEXT NOT NULL,
    session_max_duration_days INTEGER, retention_days INTEGER,
    created_by TEXT NOT NULL, created_at TEXT NOT NULL, deleted_at TEXT,
    head_seq INTEGER NOT NULL DEFAULT 0,
    object_count INTEGER NOT NULL DEFAULT 0, total_size INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX repos_live_name ON repos(org_id, name) WHERE deleted_at IS NULL;
CREATE TABLE commits (
    repo_id INTEGER NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,
    parent_id TEXT, message TEXT NOT NULL, metadata TEXT NOT NULL,
    committer_id TEXT NOT NULL, committer TEXT NOT NULL, created_at TEXT NOT NULL,
    object_count INTEGER NOT NULL, total_size INTEGER NOT NULL,
    PRIMARY KEY (repo_id, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX commits_id ON commits(repo_id, id);
-- Versioned tree: a row is visible at commit seq S when from_seq <= S < coalesce(to_seq, inf).
CREATE TABLE entries (
    repo_id INTEGER NOT NULL, path TEXT NOT NULL,
    from_seq INTEGER NOT NULL, to_seq INTEGER,
    blob TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    content_type TEXT NOT NULL, metadata TEXT NOT NULL, last_modified TEXT NOT NULL);
CREATE UNIQUE INDEX entries_live ON entries(repo_id, path) WHERE to_seq IS NULL;
CREATE UNIQUE INDEX entries_path ON entries(repo_id, path, from_seq);
CREATE INDEX entries_from ON entries(repo_id, from_seq);
CREATE INDEX entries_to ON entries(repo_id, to_seq) WHERE to_seq IS NOT NULL;
CREATE INDEX entries_blob ON entries(blob);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, repo_id INTEGER NOT NULL,
    base_seq INTEGER NOT NULL, state TEXT NOT NULL, created_by TEXT NOT NULL,
    created_at TEXT NOT NULL, closed_at TEXT);
-- Staged changes of open sessions: op is 'put' or 'delete' (a tombstone).
CREATE TABLE staged (
    session_id INTEGER NOT NULL, path TEXT NOT NULL, op TEXT NOT NULL,
    blob TEXT, size INTEGER, etag TEXT, content_type TEXT, metadata TEXT, last_modified TEXT,
    PRIMARY KEY (session_id, path)) WITHOUT ROWID;
CREATE INDEX staged_blob ON staged(blob) WHERE blob IS NOT NULL;
-- Bytes received on a signed upload URL, waiting for finalize / complete.
CREATE TABLE uploads (
    address TEXT PRIMARY KEY, session_id INTEGER NOT NULL, path TEXT NOT NULL,
    kind TEXT NOT NULL, sha256 TEXT, md5 TEXT, size INTEGER, created_at TEXT NOT NULL);
CREATE TABLE upload_parts (
    address TEXT NOT NULL, part_number INTEGER NOT NULL,
    sha256 TEXT NOT NULL, md5 TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (address, part_number)) WITHOUT ROWID;
"""


class Row(Protocol):
    """A result row: by position and by column name, as sqlite3.Row is."""

    def __getitem__(self, key: int | str) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """What the store's code uses of a connection, on either engine."""

    dialect: str

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any: ...

    def for_update(self, *tables: str) -> str: ...

    def columns(self, table: str) -> set[str]: ...

    def has_table(self, table: str) -> bool: ...

    def lock_key(self, key: str, shared: bool = False) -> None: ...

    def ddl(self, statement: str) -> None: ...


class SqliteConn(sqlite3.Connection):
    """sqlite3's connection with the few methods the store's code needs on both engines."""

    dialect = dialect.SQLITE

    def for_update(self, *tables: str) -> str:
        return ""  # one writer at a time: nothing to lock (dialect.py 5.)

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self.execute(f"PRAGMA table_info({table})")}

    def has_table(self, table: str) -> bool:
        return self.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (table,)).fetchone() is not None

    def lock_key(self, key: str, shared: bool = False) -> None:
        """Nothing to do: the one writer holds the database (see PgConn.lock_key)."""

    def ddl(self, statement: str) -> None:
        self.execute(statement)


def add_column(table: str, column: str, decl: str) -> Callable[[Conn], None]:
    """A migration step adding a nullable column unless it is already there (idempotent)."""

    def step(c: Conn) -> None:
        if column not in c.columns(table):
            c.ddl(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    return step


# Schema added after format 1. MIGRATIONS[N] brings a version N-1 database to version N; all
# steps also run on a fresh file right after SCHEMA, so SCHEMA itself stays at format 1.
# Every step must be idempotent (CREATE ... IF NOT EXISTS, add_column), so that several
# features can append to the same step without ordering trouble. Format 2: secrets,
# connectors, imports (docs/connectors.md). Format 3: commits.committer_type. Format 4:
# import job leases. Format 5: the bucket's id of a multipart upload (s3blobs.py).
MIGRATIONS: dict[int, list[str | Callable[[Conn], None]]] = {
    2: [
        # Secrets (spec 2.14): scope 'repo' (scope_id = repos.uid) or 'agent'. The value is
        # AES-GCM ciphertext (store/vault.py); names and timestamps are plain.
        """CREATE TABLE IF NOT EXISTS secrets (
            scope TEXT NOT NULL, scope_id TEXT NOT NULL, name TEXT NOT NULL,
            value BLOB NOT NULL, created_by_type TEXT NOT NULL, created_by TEXT NOT NULL,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            PRIMARY KEY (scope, scope_id, name)) WITHOUT ROWID""",
        # Connectors (2.15): `config` is AES-GCM ciphertext of the JSON config (credentials).
        """CREATE TABLE IF NOT EXISTS connectors (
            id TEXT PRIMARY KEY, org_id INTEGER NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
            source_uri TEXT NOT NULL, config BLOB NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
            created_by TEXT NOT NULL, created_at TEXT NOT NULL, deleted_at TEXT)""",
        """CREATE UNIQUE INDEX IF NOT EXISTS connectors_live_name ON connectors(org_id, name)
            WHERE deleted_at IS NULL""",
        """CREATE TABLE IF NOT EXISTS repo_connectors (
            repo_id INTEGER NOT NULL, connector_id TEXT NOT NULL, attached_by TEXT NOT NULL,
            attached_at TEXT NOT NULL, PRIMARY KEY (repo_id, connector_id)) WITHOUT ROWID""",
        # Import jobs (2.16).
        """CREATE TABLE IF NOT EXISTS import_jobs (
            id TEXT PRIMARY KEY, repo_id INTEGER NOT NULL, connector_id TEXT,
            source_repo_id INTEGER, source_organization TEXT NOT NULL,
            source_repository TEXT NOT NULL, source_prefix TEXT NOT NULL,
            destination_path TEXT NOT NULL, commit_message TEXT NOT NULL, status TEXT NOT NULL,
            objects_imported INTEGER, commit_id TEXT NOT NULL, error TEXT NOT NULL,
            session_uid TEXT, created_by_type TEXT NOT NULL, created_by TEXT NOT NULL,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS import_jobs_repo ON import_jobs(repo_id, created_at)",
        # Provenance of imported objects (2.5.1 source_metadata) as JSON text, NULL otherwise:
        # a column (not a joined table) so listings cost what they cost before.
        add_column("entries", "source", "TEXT"),
        add_column("staged", "source", "TEXT"),
    ],
    # Format 3: who committed, by kind (spec 2.7 `committer_type`, 5.20: user, agent, role).
    # NULL in commits made before it means "user" (the only kind there was).
    3: [
        add_column("commits", "committer_type", "TEXT"),
    ],
    # Format 4: import jobs held by a lease (imports.py 6.): the process running a job and
    # until when (epoch seconds) it has it.
    4: [
        add_column("import_jobs", "lease_owner", "TEXT"),
        add_column("import_jobs", "lease_until", "REAL"),
    ],
    # Format 5: blobs in a bucket (s3blobs.py): a multipart upload's id in the bucket, whose
    # parts the client PUTs there itself (NULL: the parts come to this server).
    5: [
        add_column("uploads", "remote_id", "TEXT"),
    ],
}


class Database:
    """Hands out transactions on one database; `SqliteDatabase` and `PostgresDatabase` say
    how. `read()` sees one snapshot; `write()` commits on success and rolls back on any
    exception; both nest inside an enclosing `write()` of the same thread."""

    dialect: str = ""
    description: str = ""  # for messages: a path, or a URL without its password

    def __init__(self) -> None:
        self._local = threading.local()

    # -- engine-specific -----------------------------------------------------------------
    @contextlib.contextmanager
    def read(self) -> Iterator[Conn]:
        raise NotImplementedError
        yield

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[Conn]:
        raise NotImplementedError
        yield

    def try_write(self, fn: Callable[[Conn], None]) -> bool:
        """Run `fn` in a write transaction if one can start without waiting for another
        writer; whether it ran (for bookkeeping that may skip a turn: a key's last use)."""
        raise NotImplementedError

    def exists(self) -> bool:
        """Whether the database holds a tilde-server schema (its meta table) already."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------
    @contextlib.contextmanager
    def write(self) -> Iterator[Conn]:
        """A write transaction. Callbacks given to `after_commit` inside it run once it has
        committed; a unique index a concurrent transaction beat this one to is a Conflict."""
        current: Conn | None = getattr(self._local, "writing", None)
        if current is not None:
            yield current
            return
        self._local.after = []
        try:
            with self._write_transaction() as c:
                self._local.writing = c
                try:
                    yield c
                finally:
                    self._local.writing = None
        except BaseException as exc:
            self._local.after = []
            if _is_unique_violation(exc):
                raise Conflict("a concurrent change made the same name or key; retry",
                               "conflict") from exc
            raise
        callbacks, self._local.after = self._local.after, []
        for fn in callbacks:
            try:
                fn()
            except Exception:  # the transaction is durable; a hook's failure is its own
                log.exception("after-commit callback %r failed", fn)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the enclosing `write()` transaction commits; never if it rolls back
        (the way commit hooks see only commits that happened)."""
        pending: list[Callable[[], None]] | None = getattr(self._local, "after", None)
        if pending is None or getattr(self._local, "writing", None) is None:
            raise RuntimeError("after_commit() needs an open write() transaction")
        pending.append(fn)

    def ensure(self, schema: str) -> None:
        """Run idempotent schema statements (CREATE ... IF NOT EXISTS) separated by `;`."""
        with self.write() as c:
            c.lock_key(SCHEMA_LOCK)
            for stmt in schema.split(";"):
                if stmt.strip():
                    c.ddl(stmt)

    def initialize_once(self, meta: dict[str, str]) -> bool:
        """Create the schema unless the database has it; whether this call did. Several
        processes starting on one new database: one creates, the others wait and see it."""
        with self.write() as c:
            c.lock_key(SCHEMA_LOCK)
            if c.has_table("meta"):
                return False
            self.initialize(meta)
            return True

    def initialize(self, meta: dict[str, str]) -> None:
        """Create the schema in a fresh database."""
        with self.write() as c:
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    c.ddl(stmt)
            self._run_migrations(c, 1)
            c.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [("format", FORMAT_NAME), ("format_version", str(FORMAT_VERSION)), *meta.items()],
            )

    @staticmethod
    def _run_migrations(c: Conn, from_version: int) -> None:
        for version in range(from_version + 1, FORMAT_VERSION + 1):
            for step in MIGRATIONS.get(version, []):
                if callable(step):
                    step(c)
                else:
                    c.ddl(step)

    def migrate(self, from_version: int) -> None:
        """Bring an older database up to FORMAT_VERSION in one transaction (idempotent).
        Processes of a deployment starting together: one migrates under the lock, the
        others wait for it and find the work done (docs/deploy.md, upgrades)."""
        if from_version >= FORMAT_VERSION:
            return
        with self.write() as c:
            c.lock_key(SCHEMA_LOCK)
            row = c.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
            from_version = int(row[0]) if row else from_version
            if from_version >= FORMAT_VERSION:
                return
            self._run_migrations(c, from_version)
            c.execute("UPDATE meta SET value = ? WHERE key = 'format_version'",
                      (str(FORMAT_VERSION),))

    def check_format(self) -> dict[str, str]:
        """Read the meta table of an existing database; refuse foreign or newer formats,
        migrate older ones (MIGRATIONS)."""
        try:
            with self.read() as c:
                rows = c.execute("SELECT key, value FROM meta").fetchall()
        except Exception as exc:
            if not _is_database_error(exc):
                raise
            raise DataDirError(f"{self.description} is not a tilde-server database "
                               f"({exc})") from None
        meta = {r["key"]: r["value"] for r in rows}
        if meta.get("format") != FORMAT_NAME:
            raise DataDirError(f"{self.description} is not a tilde-server database")
        try:
            version = int(meta.get("format_version", ""))
        except ValueError:
            raise DataDirError(f"{self.description} has an unreadable format version") from None
        if version > FORMAT_VERSION:
            raise DataDirError(
                f"{self.description} has format version {version}; this tilde-server reads "
                f"up to {FORMAT_VERSION} (upgrade tilde-server)"
            )
        self.migrate(version)
        return meta


def _is_unique_violation(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc)
    return type(exc).__name__ == "UniqueViolation"  # psycopg.errors, not imported for SQLite


def _is_database_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.DatabaseError):
        return True
    return type(exc).__module__.startswith("psycopg")


class SqliteDatabase(Database):
    """Owns the SQLite file; per-thread connections; one writer at a time (1.-5.)."""

    dialect = dialect.SQLITE

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.description = str(path)
        # every connection handed out, with the thread it belongs to (see conn())
        self._all: list[tuple[threading.Thread, SqliteConn]] = []
        self._all_lock = threading.Lock()
        self.write_lock = threading.RLock()

    def _connect(self) -> SqliteConn:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=10.0, factory=SqliteConn)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def conn(self) -> SqliteConn:
        """This thread's connection. Worker threads come and go (anyio's pool retires idle
        ones), so making a connection also closes those of threads that have ended: kept,
        they held two descriptors each until the server ran out (a busy test server
        passed 1,000)."""
        c: SqliteConn | None = getattr(self._local, "conn", None)
        if c is None:
            c = self._connect()
            self._local.conn = c
            with self._all_lock:
                dead = [pair for pair in self._all if not pair[0].is_alive()]
                self._all = [pair for pair in self._all if pair[0].is_alive()]
                self._all.append((threading.current_thread(), c))
            for _, old in dead:  # only its own thread ever used it, and that one has ended
                with contextlib.suppress(sqlite3.Error):
                    old.close()
        return c

    @contextlib.contextmanager
    def read(self) -> Iterator[Conn]:
        c = self.conn()
        if c.in_transaction:  # nested inside write(): reuse it
            yield c
            return
        c.execute("BEGIN")
        try:
            yield c
        finally:
            c.execute("COMMIT")

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[Conn]:
        with self.write_lock:
            c = self.conn()
            if c.in_transaction:  # inside this thread's read(): SQLite upgrades it
                yield c
                return
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def try_write(self, fn: Callable[[Conn], None]) -> bool:
        if not self.write_lock.acquire(blocking=False):
            return False
        try:
            with self.write() as c:
                fn(c)
            return True
        except sqlite3.OperationalError:  # busy: another process writes
            return False
        finally:
            self.write_lock.release()

    def exists(self) -> bool:
        return self.path.exists()

    def close(self) -> None:
        with self._all_lock:
            for _, c in self._all:
                with contextlib.suppress(sqlite3.Error):
                    c.close()
            self._all.clear()
