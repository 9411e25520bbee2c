"""tests/postgres.py starts a real PostgreSQL 15 that keeps to loopback and checks passwords."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from postgres import PostgresHandle, start_postgres
from test_seaweed_harness import listening


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresHandle]:
    with start_postgres(tmp_path_factory.mktemp("pg")) as h:
        yield h


def test_queries_and_durability_settings(pg: PostgresHandle) -> None:
    with psycopg.connect(pg.dsn) as c:
        assert c.execute("SELECT 6 * 7").fetchone() == (42,)
        assert c.execute("SHOW fsync").fetchone() == ("on",)
        assert c.execute("SHOW server_version_num").fetchone()[0].startswith("15")


def test_a_database_per_server(pg: PostgresHandle) -> None:
    url = pg.create_database("harness_one")
    with psycopg.connect(url) as c:
        c.execute("CREATE TABLE t (x int)")
    # another database: no such table there
    with psycopg.connect(pg.dsn) as c, pytest.raises(psycopg.errors.UndefinedTable):
        c.execute("SELECT * FROM t")


def test_wrong_password_is_refused(pg: PostgresHandle) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.dsn.replace(pg.password, pg.password + "x"), connect_timeout=10)


def test_listens_on_loopback_only_with_no_trust(pg: PostgresHandle) -> None:
    pid = int((pg.root / "data" / "postmaster.pid").read_text().split()[0])
    assert listening(pid) == [f"127.0.0.1:{pg.port}"]
    hba = (pg.root / "data" / "pg_hba.conf").read_text()
    rules = [line for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(line.split()[-1] == "scram-sha-256" for line in rules), rules
    assert not (pg.root / "pwfile").exists()
