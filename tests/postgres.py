"""A real PostgreSQL 15 (Debian's) on loopback, for tests and benchmarks.

    from postgres import start_postgres
    with start_postgres(tmp_path) as pg:
        psycopg.connect(pg.dsn)

Subtleties:

1. PostgreSQL refuses to run as root, and the tests run as root here: the cluster belongs to
   ``nobody`` (initdb, pg_ctl and the server run through ``runuser -u nobody``), in a
   directory of its own made with mkdtemp directly in the system temp directory (pytest's
   are 0700 all the way up, so nobody could not reach one inside), chowned to it and
   removed at stop. As a normal user the cluster is that user's, under ``tmp``.
2. ``listen_addresses = '127.0.0.1'`` on a free port, the unix socket in the cluster
   directory (never /var/run/postgresql), ``fsync`` on (the tests check durability).
   tests/test_postgres_harness.py checks the listening sockets.
3. Authentication: ``scram-sha-256`` for TCP with a random password per start, written to a
   0600 file for initdb (``--pwfile``) and kept only in the handle; no ``trust`` lines.
4. ``stop()`` is ``pg_ctl stop -m fast``; the handle is a context manager.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DATABASE = "tilde"
USER = "tilde"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresHandle:
    root: Path
    port: int
    password: str
    owner: str | None  # the account the cluster runs as (None: this process's)

    @property
    def dsn(self) -> str:
        return self.url()

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.owner, "--", *argv] if self.owner else argv

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database (one per test server, so servers share nothing); its URL."""
        import psycopg

        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a plain database name: {name!r}")
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(self._as_owner([str(PG_BIN / "pg_ctl"), "stop", "-m", "fast", "-w",
                                       "-D", str(self.root / "data")]),
                       capture_output=True, timeout=60)
        if self.owner:  # a directory of its own (1.)
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> PostgresHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_postgres(tmp: Path, timeout: float = 60) -> PostgresHandle:
    """initdb + pg_ctl start in ``tmp/postgres``; ready once ``pg_isready`` says so."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"{PG_BIN}/initdb is missing: run scripts/setup.sh "
                           "(it installs Debian's postgresql-15)")
    owner = "nobody" if os.getuid() == 0 else None
    if owner:
        root = Path(tempfile.mkdtemp(prefix="tilde-pg-"))
    else:
        root = tmp / "postgres"
        root.mkdir(parents=True)
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    if owner:
        entry = pwd.getpwnam(owner)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    h = PostgresHandle(root, port, password, owner)

    def run(argv: list[str]) -> None:
        r = subprocess.run(h._as_owner(argv), capture_output=True, text=True, timeout=120,
                           cwd=root)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({r.returncode}):\n{r.stdout}{r.stderr}")

    run([str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", USER, "--pwfile",
         str(pwfile), "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
         "-E", "UTF8", "--locale=C.UTF-8"])
    pwfile.unlink()
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} "
               f"-c unix_socket_directories={root} -c fsync=on -c max_connections=200")
    run([str(PG_BIN / "pg_ctl"), "start", "-w", "-t", str(int(timeout)), "-D",
         str(root / "data"), "-l", str(root / "postgres.log"), "-o", options])
    deadline = time.monotonic() + timeout
    while subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            h.stop()
            raise RuntimeError(f"PostgreSQL did not come up:\n{h.log()[-2000:]}")
        time.sleep(0.1)
    env = dict(os.environ, PGPASSWORD=password)
    r = subprocess.run([shutil.which("psql") or str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p",
                        str(port), "-U", USER, "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                        "-c", f"CREATE DATABASE {DATABASE}"],
                       capture_output=True, text=True, env=env, timeout=60)
    if r.returncode != 0:
        h.stop()
        raise RuntimeError(f"CREATE DATABASE failed:\n{r.stdout}{r.stderr}")
    return h


class RunBackend:
    """The metadata engine of every server one pytest run starts (``--backend``).

    Lives here, not in tests/conftest.py: that file is loaded twice (by pytest, and by path
    through tests/bypath.py), and both copies must see one PostgreSQL and one database per
    data directory (a restart on the same directory finds its database again)."""

    #: the bucket of postgresql-s3 runs; every data directory gets a prefix of its own
    BUCKET = "tilde-run"

    def __init__(self) -> None:
        self.name = "sqlite"
        self.pg: PostgresHandle | None = None
        self.seaweed: Any = None
        self.databases: dict[Path, str] = {}
        self.prefixes: dict[Path, str] = {}
        self._tmp: Path | None = None

    @property
    def on_postgres(self) -> bool:
        return self.name in ("postgresql", "postgresql-s3")

    def env(self, data: Path) -> dict[str, str]:
        """The environment that puts a server (or a maintenance command) on `data` on this
        backend: nothing for sqlite; for postgresql its database and its key file; for
        postgresql-s3 also its blobs, under a prefix of one SeaweedFS bucket."""
        if not self.on_postgres:
            return {}
        if data not in self.databases:
            if self.pg is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="tilde-pg-run-"))
                self.pg = start_postgres(self._tmp)
            self.databases[data] = self.pg.create_database(
                f"t_{secrets.token_hex(6)}")
            self.prefixes[data] = secrets.token_hex(6)
        # The deployment's key file beside its data directory (keys.py; made on first start).
        env = {"TILDE_SERVER_DATABASE": self.databases[data],
               "TILDE_SERVER_SECRET_KEY_FILE": str(data.parent / f"{data.name}-keys.json")}
        if self.name == "postgresql-s3":
            if self.seaweed is None:
                from seaweed import start_seaweed

                assert self._tmp is not None
                self.seaweed = start_seaweed(self._tmp / "weed", buckets=[self.BUCKET])
            env.update(self.seaweed.env())
            env["TILDE_SERVER_BLOBS"] = f"s3://{self.BUCKET}/{self.prefixes[data]}"
        return env

    def rows(self, data: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """`sql` (``?`` placeholders) against the database behind `data`, committed: a test's
        look under the server (its tilde.db, or its PostgreSQL database)."""
        if self.on_postgres:
            import psycopg

            with psycopg.connect(self.env(data)["TILDE_SERVER_DATABASE"]) as c:
                cur = c.execute(sql.replace("?", "%s"), args)  # type: ignore[arg-type]
                return list(cur.fetchall()) if cur.description else []
        import sqlite3

        db = sqlite3.connect(data / "tilde.db", timeout=10)
        try:
            out = list(db.execute(sql, args).fetchall())
            db.commit()
            return out
        finally:
            db.close()

    def blob_ids(self, data: Path) -> set[str]:
        """Every blob id (store/blobs.py 7.) the deployment behind `data` holds: its blob
        files, or its objects in the bucket."""
        if self.name == "postgresql-s3":
            base = f"{self.prefixes[data]}/"
            pages = self.seaweed.client().get_paginator("list_objects_v2")
            return {str(o["Key"]).rsplit("/", 1)[1]
                    for page in pages.paginate(Bucket=self.BUCKET, Prefix=base)
                    for o in page.get("Contents", [])}
        return {f.parent.name + f.name for f in (data / "blobs").glob("??/*") if f.is_file()}

    def pending_parts(self, data: Path, session: str) -> int:
        """How many unfinished uploads hold bytes: spool files of `session` in `data`, or
        (blobs in a bucket) the bucket's multipart uploads under the deployment's prefix."""
        if self.name == "postgresql-s3":
            got = self.seaweed.client().list_multipart_uploads(
                Bucket=self.BUCKET, Prefix=f"{self.prefixes[data]}/")
            return len(got.get("Uploads", []))
        return sum(1 for p in (data / "tmp" / session).rglob("*") if p.is_file())

    def dump(self, data: Path) -> bytes:
        """Every byte the database behind `data` holds, as pg_dump writes it (b"" for
        sqlite: its database is a file in `data`)."""
        if not self.on_postgres or data not in self.databases:
            return b""
        r = subprocess.run([str(PG_BIN / "pg_dump"), "--dbname", self.databases[data]],
                           capture_output=True, timeout=120, check=True)
        return r.stdout

    def stop(self) -> None:
        if self.seaweed is not None:
            self.seaweed.stop()
            self.seaweed = None
        if self.pg is not None:
            self.pg.stop()
            self.pg = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


RUN = RunBackend()
