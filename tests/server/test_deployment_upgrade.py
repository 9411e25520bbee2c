"""An upgrade of a deployment on PostgreSQL (docs/deploy.md, "Backups and upgrades"): a
database of the previous format, two processes of this release starting at the same
moment. One migrates under the lock, the other waits and finds it done; both serve, and
what the new format added works."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg
from serverapi import Api, RepoRef, ServerHandle, start_server, stop_server, unique

from postgres import start_postgres
from tilde_server.store.db import FORMAT_VERSION

ADMIN = "tk-upgrade-admin-0123456789abcdef012"


def test_two_processes_upgrading_one_database_at_once(tmp_path: Path) -> None:
    with start_postgres(tmp_path / "pg") as pg:
        env = {"TILDE_SERVER_DATABASE": pg.create_database(f"up_{os.getpid()}"),
               "TILDE_SERVER_SECRET_KEY_FILE": str(tmp_path / "keys.json"),
               "TILDE_SERVER_BLOBS": str(tmp_path / "blobs")}
        first = start_server(tmp_path / "first", ADMIN, extra_env=env)
        stop_server(first)
        # the database as the previous release left it: format 4, without what 5 added
        with psycopg.connect(env["TILDE_SERVER_DATABASE"], autocommit=True) as c:
            c.execute("ALTER TABLE uploads DROP COLUMN remote_id")
            c.execute("UPDATE meta SET value = %s WHERE key = 'format_version'",
                      (str(FORMAT_VERSION - 1),))
        started: dict[str, ServerHandle] = {}
        errors: list[BaseException] = []

        def start(name: str) -> None:
            try:
                started[name] = start_server(tmp_path / name, ADMIN, extra_env=env)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        try:
            assert not errors, errors
            with psycopg.connect(env["TILDE_SERVER_DATABASE"]) as c:
                version = c.execute("SELECT value FROM meta WHERE key = 'format_version'"
                                    ).fetchone()
                cols = {r[0] for r in c.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'uploads'")}
            assert version == (str(FORMAT_VERSION),) and "remote_id" in cols
            ref = RepoRef(unique("org"), unique("repo"))
            a, b = Api(started["a"], ref), Api(started["b"], ref)
            assert a.http.post(f"{a.base}/organizations", json={"name": ref.org}
                               ).status_code == 201
            assert a.http.post(f"{a.base}/organizations/{ref.org}/repositories",
                               json={"name": ref.repo}).status_code == 201
            sid = b.session()
            r = b.http.post(f"{b.R}/object/multipart", params={"session_id": sid, "path": "m"})
            assert r.status_code in (200, 201), r.text  # writes the new column
            b.put(sid, "f.txt", b"after the upgrade")
            a.commit_ok(sid)
            assert a.read("f.txt") == b"after the upgrade"
            a.close()
            b.close()
        finally:
            for h in started.values():
                stop_server(h)
        for h in started.values():
            assert "Traceback" not in h.log(), h.log()
