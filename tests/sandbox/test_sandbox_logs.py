"""sandbox/logs.py on its own, with the database rows on (as beside other processes): three
threads appending to one log (the pump and an exec run's two readers) give one log whose
rows and file hold the same bytes in the same order, a reader sees a quiet writer's last
bytes within the flush interval, and a failing database never stops the writing."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tilde_server.sandbox import logs as sblogs
from tilde_server.sandbox import records
from tilde_server.store.db import SqliteDatabase


def _store(tmp_path: Path) -> tuple[sblogs.LogStore, SqliteDatabase]:
    db = SqliteDatabase(tmp_path / "t.db")
    db.initialize({"secret": "x" * 64, "created_at": "2026-12-04T00:00:00.000000Z"})
    records.ensure_schema(db)
    return sblogs.LogStore(db, tmp_path / "sandboxes", shared=True), db


def test_three_writers_of_one_log_keep_rows_and_file_alike(tmp_path: Path) -> None:
    store, db = _store(tmp_path)
    main = store.writer("sb1", "stdout.log")

    def exec_reader(tag: bytes) -> None:
        for i in range(300):
            store.append("sb1", "stdout.log", tag + b"%03d\n" % i)

    threads = [threading.Thread(target=exec_reader, args=(t,)) for t in (b"out", b"err")]
    for t in threads:
        t.start()
    for i in range(300):
        main.write(b"main%03d\n" % i)
    for t in threads:
        t.join()
    main.close(fsync=True)
    on_disk = (tmp_path / "sandboxes" / "sb1" / "stdout.log").read_bytes()
    assert store.read("sb1", "stdout.log") == on_disk
    assert sorted(on_disk.splitlines()) == sorted(
        [b"main%03d" % i for i in range(300)] + [b"out%03d" % i for i in range(300)]
        + [b"err%03d" % i for i in range(300)])
    store.close()
    db.close()


def test_a_quiet_writers_last_bytes_show_within_the_flush_interval(tmp_path: Path) -> None:
    store, db = _store(tmp_path)
    w = store.writer("sb2", "stdout.log")
    w.write(b"started\n")  # far below LOG_BATCH: only the flusher writes it
    deadline = time.monotonic() + 10
    while store.read("sb2", "stdout.log") != b"started\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    w.close()
    store.close()
    db.close()


def test_a_failing_database_does_not_stop_the_log(tmp_path: Path) -> None:
    store, db = _store(tmp_path)
    real_write = db.write
    failing = {"on": True}

    def write() -> Any:
        if failing["on"]:
            raise OSError("database unavailable")
        return real_write()

    db.write = write  # type: ignore[method-assign]
    w = store.writer("sb3", "stdout.log")
    w.write(b"x" * (sblogs.LOG_BATCH + 1))  # a flush that fails: logged, kept pending
    w.write(b"more\n")
    failing["on"] = False
    w.close()
    expected = b"x" * (sblogs.LOG_BATCH + 1) + b"more\n"
    assert (tmp_path / "sandboxes" / "sb3" / "stdout.log").read_bytes() == expected
    assert store.read("sb3", "stdout.log") == expected  # written once the database came back
    store.close()
    db.close()
