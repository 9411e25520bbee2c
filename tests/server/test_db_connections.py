"""The store's per-thread SQLite connections end with their threads.

Worker threads come and go (anyio's pool retires idle ones); each used to leave its
connection open (two descriptors: the database and its WAL) until the server passed the
1,024-descriptor line and sandboxes failed in select(). Real SQLite, real threads."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tilde_server.store.db import SqliteDatabase


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def use_in_a_thread(db: SqliteDatabase) -> None:
    t = threading.Thread(target=lambda: db.conn().execute("SELECT 1").fetchone())
    t.start()
    t.join()


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "t.db")
    db.conn().execute("CREATE TABLE t (x INTEGER)")
    try:
        use_in_a_thread(db)
        baseline = open_fds()
        for _ in range(200):
            use_in_a_thread(db)
        # at most this thread's, the last worker's and the one made by the next call
        assert open_fds() - baseline <= 4, open_fds() - baseline
        assert len(db._all) <= 2
        # this thread's connection is untouched by the sweeps and still works
        db.conn().execute("INSERT INTO t VALUES (1)")
        assert db.conn().execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        db.close()


def test_live_threads_keep_their_connections(tmp_path: Path) -> None:
    """A sweep never closes the connection of a thread that is still running."""
    db = SqliteDatabase(tmp_path / "t.db")
    ready, done = threading.Event(), threading.Event()
    seen: list[int] = []

    def holder() -> None:
        c = db.conn()
        ready.set()
        done.wait(10)
        seen.append(c.execute("SELECT 41 + 1").fetchone()[0])

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert ready.wait(10)
        for _ in range(20):
            use_in_a_thread(db)
    finally:
        done.set()
        t.join()
        db.close()
    assert seen == [42]
