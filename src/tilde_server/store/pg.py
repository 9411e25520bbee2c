"""The PostgreSQL engine under the store (`tilde-server run --database postgresql://...`):
a psycopg 3 connection pool behind the same `Database` interface as SQLite's (store/db.py,
subtleties 6.-8.). Imported only when a PostgreSQL URL is given, so the embedded server
needs no psycopg.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg
import psycopg.errors
from psycopg.adapt import Loader
from psycopg_pool import ConnectionPool, PoolTimeout

from tilde_server.store import dialect
from tilde_server.store.db import Conn, Database
from tilde_server.store.errors import DataDirError, Unavailable

log = logging.getLogger("tilde_server.store")

DEFAULT_POOL_SIZE = 20  # connections per process; anyio's worker threads wait for one


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


class PgRow(tuple):
    """A row by position and by column name (the first of a repeated name), as sqlite3.Row."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> PgRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    index: dict[str, int] = {}
    for i, column in enumerate(cursor.description or ()):
        index.setdefault(column.name, i)
    return lambda values: PgRow(values, index)


class _IntegralNumeric(Loader):
    """NUMERIC (what sum() of BIGINT gives) as int when integral, as SQLite answers (8.)."""

    def load(self, data: Any) -> Any:
        d = Decimal(bytes(data).decode())
        return int(d) if d == d.to_integral_value() else float(d)


def _configure(raw: psycopg.Connection[Any]) -> None:
    raw.adapters.register_loader("numeric", _IntegralNumeric)
    raw.row_factory = _row_factory


class PgConn:
    """One pooled connection inside one transaction, with the store's `Conn` methods."""

    dialect = dialect.POSTGRES

    def __init__(self, raw: psycopg.Connection[Any], writing: bool) -> None:
        self._raw = raw
        self._writing = writing

    @property
    def in_transaction(self) -> bool:
        return self._raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        if params:
            return self._raw.execute(dialect.postgres_query(sql), tuple(params))
        return self._raw.execute(dialect.postgres_query(sql, False))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any:
        cur = self._raw.cursor()
        cur.executemany(dialect.postgres_query(sql), [tuple(p) for p in params])
        return cur

    def for_update(self, *tables: str) -> str:
        if not self._writing:
            return ""
        return " FOR UPDATE" + (f" OF {', '.join(tables)}" if tables else "")

    def columns(self, table: str) -> set[str]:
        return {r[0] for r in self.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?", (table,))}

    def has_table(self, table: str) -> bool:
        return self.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name = ?", (table,)).fetchone() is not None

    def lock_key(self, key: str, shared: bool = False) -> None:
        """A lock on `key` (e.g. a blob's) until this transaction ends, across processes:
        shared by those adding a reference, exclusive for the collector that checks there
        is none before it deletes."""
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        self.execute(f"SELECT {fn}(hashtextextended(?, 0))", (key,))

    def ddl(self, statement: str) -> None:
        self._raw.execute(dialect.postgres_ddl(statement))


class PostgresDatabase(Database):
    """A pool of connections to one PostgreSQL database (db.py 6.-8.)."""

    dialect = dialect.POSTGRES

    def __init__(self, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__()
        self.description = redact(url)
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, timeout=60,
                                   kwargs={"autocommit": True}, configure=_configure,
                                   open=False, name="tilde-server")
        try:
            self.pool.open(wait=True, timeout=30)
        except PoolTimeout:
            self.pool.close()
            raise DataDirError(f"cannot connect to {self.description}") from None
        self._reading = threading.local()

    @contextlib.contextmanager
    def _transaction(self, begin: str, writing: bool) -> Iterator[PgConn]:
        try:
            with self.pool.connection() as raw:
                raw.execute(begin)
                c = PgConn(raw, writing)
                try:
                    yield c
                except BaseException:
                    if not raw.closed:
                        with contextlib.suppress(psycopg.Error):
                            raw.execute("ROLLBACK")
                    raise
                raw.execute("COMMIT")
        except (psycopg.OperationalError, PoolTimeout) as exc:
            if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
                raise
            log.warning("database unavailable: %s", type(exc).__name__)
            raise Unavailable("the database is unavailable; retry", "database_unavailable") \
                from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[Conn]:
        current = getattr(self._local, "writing", None) or getattr(self._reading, "c", None)
        if current is not None:  # nested: one snapshot, one connection
            yield current
            return
        with self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", False) as c:
            self._reading.c = c
            try:
                yield c
            finally:
                self._reading.c = None

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[Conn]:
        if getattr(self._reading, "c", None) is not None:
            raise RuntimeError("write() inside read(): start the write first")
        with self._transaction("BEGIN ISOLATION LEVEL READ COMMITTED", True) as c:
            yield c

    def try_write(self, fn: Callable[[Conn], None]) -> bool:
        try:
            with self.write() as c:
                c.execute("SET LOCAL lock_timeout = '100ms'")
                fn(c)
            return True
        except (psycopg.errors.LockNotAvailable, Unavailable):
            return False

    def exists(self) -> bool:
        with self.read() as c:
            return c.has_table("meta")

    def close(self) -> None:
        self.pool.close()
