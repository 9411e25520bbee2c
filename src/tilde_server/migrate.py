"""`tilde-server migrate`: copy an embedded deployment (SQLite + blob files in one data
directory) to PostgreSQL and a shared blob directory, then verify the copy.

Subtleties:
1. The source is locked like a running server would lock it (a server on it is refused),
   and opened as the server would (its format upgraded in place first, so that both sides
   have one schema). Its keys move into the new --secret-key-file unchanged (keys.py 2.):
   agent keys keep working, sealed secrets stay readable, signed URLs stay valid.
2. The target database must be new (no tilde-server schema in it). Its schema is made by
   opening it as a server would; the rows that makes (a generated admin) are dropped and
   every table is copied in ONE transaction, so a failed migration leaves the fresh schema
   behind, never half a deployment (drop and recreate the database to try again). Identity
   sequences are moved past the copied ids.
3. Blob files are copied (fsynced, renamed into place) before that transaction commits;
   a blob already in the target with the same bytes is kept. Verification compares every
   table's row count and every blob's sha256 on both sides; any difference fails the
   command (exit 1) and says what differs.
4. Sandbox logs (`sandboxes/<id>/`) are copied into the target's --data, the scratch of the
   first process, which serves them (a sandbox's log is its process's, docs/deploy.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tilde_server.sandbox import records
from tilde_server.store.blobs import copy_into_place, fsync_dir, mkdirs
from tilde_server.store.engine import DB_FILE, Store, blobs_location
from tilde_server.store.errors import DataDirError
from tilde_server.store.keys import read_key_file, write_key_file
from tilde_server.store.s3blobs import S3Options

# meta is the target's own (format, key fingerprint); tables others reference go first.
_SKIP = {"meta"}
_PARENTS = ("users", "orgs")
BATCH = 5000


@dataclass
class Report:
    tables: dict[str, int] = field(default_factory=dict)
    blobs: int = 0
    blob_bytes: int = 0
    logs: int = 0
    problems: list[str] = field(default_factory=list)


def _tables(c: Any) -> list[str]:
    rows = c.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                     "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
    names = [r[0] for r in rows if r[0] not in _SKIP]
    return [t for t in _PARENTS if t in names] + [t for t in names if t not in _PARENTS]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _copy_file(src: Path, dest: Path, tmp_dir: Path | None = None) -> None:
    """A whole, fsynced copy renamed into place (a reader never sees half a blob);
    `tmp_dir`: where it is written first (default beside `dest`)."""
    mkdirs(dest.parent)
    if tmp_dir is not None:
        mkdirs(tmp_dir)
    copy_into_place(src, dest, tmp_dir or dest.parent)
    fsync_dir(dest.parent)


def migrate(source: Path, scratch: Path, database: str, key_file: Path,
            blobs: str, s3: S3Options | None = None) -> Report:
    """Copy `source` into `database` + `blobs` (scratch: the target's --data); verified."""
    from tilde_server.store.lock import DataDirLock
    from tilde_server.store.pg import PostgresDatabase

    source = source.expanduser()
    if not (source / DB_FILE).exists():
        raise DataDirError(f"{source} is not an embedded tilde-server data directory "
                           f"(no {DB_FILE})")
    blobs_dir = blobs_location(blobs)
    if blobs_dir is None:
        raise DataDirError("--blobs is required: the shared blob directory or bucket to "
                           "copy into")
    probe = PostgresDatabase(database)
    try:
        with probe.read() as c:
            if c.has_table("meta"):
                raise DataDirError(f"{probe.description} already holds a tilde-server "
                                   "deployment; migrate into a new, empty database (after "
                                   "a failed migration: drop it and create it again)")
    finally:
        probe.close()
    lock = DataDirLock.acquire(source)  # 1.: refused while a server runs on it
    try:
        src, _ = Store.open(source, None, recover=False)
        try:
            _ensure_schemas(src)
            _write_keys(key_file, src)
            dst, _ = Store.open(scratch, None, recover=False, database=database,
                                key_file=key_file, blobs=blobs, s3=s3)
            try:
                _ensure_schemas(dst)
                return _copy(src, dst, source, scratch)
            finally:
                dst.close()
        finally:
            src.close()
    finally:
        lock.release()


def _ensure_schemas(store: Store) -> None:
    """Every table a running server has: the store's, identity's and the sandboxes'."""
    from tilde_server.store.identity import Identity

    Identity(store)
    records.ensure_schema(store.db)


def _write_keys(key_file: Path, src: Store) -> None:
    key_file = key_file.expanduser()
    if key_file.exists():
        if read_key_file(key_file) != src.keys:
            raise DataDirError(f"{key_file} exists and holds other keys than {src.root}'s; "
                               "give a new path (migrate writes the source's keys there)")
        return
    write_key_file(key_file, src.keys)


def _copy(src: Store, dst: Store, source: Path, scratch: Path) -> Report:
    report = Report()
    # 3.: the bytes first, so no committed row ever names a blob the target lacks.
    for _, keys in src.blobs.shards():
        for key in keys:
            s_path = src.blobs.path(key)  # the source is an embedded directory: files
            if dst.blobs.digest(key) != _sha256(s_path):
                dst.blobs.put_file(s_path, key)
            report.blobs += 1
            report.blob_bytes += s_path.stat().st_size
    with src.db.read() as sc:
        tables = _tables(sc)
        with dst.db.write() as dc:
            for t in reversed(tables):  # 2.: drop what opening made (a generated admin)
                dc.execute(f"DELETE FROM {t}")
            for t in tables:
                cols = sorted(sc.columns(t) & dc.columns(t))
                missing = sc.columns(t) - dc.columns(t)
                if missing:
                    raise DataDirError(f"table {t}: columns {sorted(missing)} have no place "
                                       "in the target schema")
                col_list = ", ".join(cols)
                marks = ", ".join("?" for _ in cols)
                cur = sc.execute(f"SELECT {col_list} FROM {t}")
                copied = 0
                while batch := cur.fetchmany(BATCH):  # a million entries never all in memory
                    dc.executemany(f"INSERT INTO {t} ({col_list}) VALUES ({marks})",
                                   [tuple(r) for r in batch])
                    copied += len(batch)
                report.tables[t] = copied
                if "id" in cols and _is_identity(dc, t):
                    dc.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), "
                               f"(SELECT coalesce(max(id), 0) + 1 FROM {t}), false)")
    _verify(src, dst, report)
    logs = source / "sandboxes"
    if logs.is_dir():
        for d in sorted(p for p in logs.iterdir() if p.is_dir()):
            for f in d.rglob("*"):
                if f.is_file():
                    _copy_file(f, scratch.expanduser() / "sandboxes" / f.relative_to(logs))
            report.logs += 1
    return report


def _is_identity(dc: Any, table: str) -> bool:
    return dc.execute("SELECT pg_get_serial_sequence(?, 'id')", (table,)).fetchone()[0] \
        is not None


def _verify(src: Store, dst: Store, report: Report) -> None:
    with dst.db.read() as dc:
        for t, n in report.tables.items():
            got = dc.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            if got != n:
                report.problems.append(f"table {t}: {n} rows in the source, {got} copied")
    for _, keys in src.blobs.shards():
        for key in keys:
            got = dst.blobs.digest(key)
            if got is None:
                report.problems.append(f"blob {key}: missing in the target")
            elif got != _sha256(src.blobs.path(key)):
                report.problems.append(f"blob {key}: different bytes in the target")
