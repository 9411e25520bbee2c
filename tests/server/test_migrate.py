"""`tilde-server migrate`: an embedded deployment copied to PostgreSQL and a shared blob
directory, verified, then served by a process on the copy. Real servers, real PostgreSQL."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverapi import Api, RepoRef, server_command, start_server, stop_server, unique

from postgres import PostgresHandle, start_postgres
from seaweed import SeaweedHandle, start_seaweed

ADMIN = "tk-migrate-admin-0123456789abcdef"


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresHandle]:
    with start_postgres(tmp_path_factory.mktemp("pg")) as handle:
        yield handle


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedHandle]:
    with start_seaweed(tmp_path_factory.mktemp("weed"), buckets=["migrated"]) as sw:
        yield sw


def _migrate(src: Path, target: Path, url: str, *extra: str, blobs: str | None = None,
             blob_env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("TILDE_SERVER_")}
    env["TILDE_SERVER_DATABASE"] = url
    env.update(blob_env or {})
    r = subprocess.run([*server_command(), "migrate", "--from", str(src), "--data",
                        str(target / "data"), "--secret-key-file", str(target / "keys.json"),
                        "--blobs", blobs or str(target / "blobs"), *extra],
                       capture_output=True, text=True, env=env, timeout=120)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("into", ["directory", "bucket"])
def test_embedded_deployment_moves_with_its_keys_and_history(
        pg: PostgresHandle, tmp_path: Path, into: str, request: pytest.FixtureRequest) -> None:
    """Into a shared blob directory, or into an S3 bucket (the bytes put whole, content
    keyed: every blob's sha256 read back from the bucket)."""
    blobs: str | None = None
    blob_env: dict[str, str] = {}
    if into == "bucket":
        sw: SeaweedHandle = request.getfixturevalue("bucket")
        blobs, blob_env = f"s3://migrated/{unique('p')}", sw.env()
    # An embedded deployment with history, an agent key, a secret and a staged session.
    # (extra_env forces SQLite whatever --backend the run has.)
    sqlite_only = {"TILDE_SERVER_DATABASE": "", "TILDE_SERVER_SECRET_KEY_FILE": "",
                   "TILDE_SERVER_BLOBS": ""}
    old = start_server(tmp_path / "old", ADMIN, extra_env=sqlite_only)
    ref = RepoRef(unique("org"), unique("repo"))
    a = Api(old, ref)
    assert a.http.post(f"{a.base}/organizations",
                       json={"name": ref.org, "display_name": ref.org}).status_code == 201
    assert a.http.post(f"{a.base}/organizations/{ref.org}/repositories",
                       json={"name": ref.repo}).status_code == 201
    files = {f"d/{i}.bin": os.urandom(1000 + i) for i in range(12)}
    commits = []
    for i in range(3):
        sid = a.session()
        for p in list(files)[i * 4:(i + 1) * 4]:
            a.put(sid, p, files[p])
        commits.append(a.commit_ok(sid, f"part {i}"))
    open_sid = a.session()
    a.put(open_sid, "pending.txt", b"staged, not committed")
    o = f"{a.base}/organizations/{ref.org}"
    assert a.http.post(f"{o}/agents", json={"name": "bot", "description": ""}).status_code == 201
    token = a.http.post(f"{o}/agents/bot/auth/keys", json={"name": "k"}).json()["token"]
    assert a.http.put(f"{a.R}/secrets/TOKEN", json={"value": "sealed"}).status_code == 200
    log_before = a.http.get(f"{a.R}/log").json()["results"]
    a.close()

    # Refused while its server runs: nothing written anywhere.
    url = pg.create_database(f"migrated_{into}")
    target = tmp_path / "target"
    rc, _, err = _migrate(old.data_dir, target, url, blobs=blobs, blob_env=blob_env)
    assert rc == 2 and "is in use by another tilde-server" in err, err
    assert not (target / "keys.json").exists()
    stop_server(old)

    rc, out, err = _migrate(old.data_dir, target, url, blobs=blobs, blob_env=blob_env)
    assert rc == 0, err
    assert "verified: every table's row count and every blob's sha256 match" in out, out
    assert f"{len(files) + 1} blob(s)" in out, out  # 12 objects and the staged one
    keys = target / "keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600 and json.loads(keys.read_text())
    # A second migration into the same database is refused.
    rc, _, err = _migrate(old.data_dir, target, url, blobs=blobs, blob_env=blob_env)
    assert rc == 2 and "already holds a tilde-server deployment" in err, err
    if into == "bucket":
        assert blobs is not None
        listed = sw.client().list_objects_v2(Bucket="migrated",
                                             Prefix=blobs.split("/", 3)[3] + "/")
        assert listed.get("KeyCount") == len(files) + 1

    env = {"TILDE_SERVER_DATABASE": url, "TILDE_SERVER_SECRET_KEY_FILE": str(keys),
           "TILDE_SERVER_BLOBS": blobs or str(target / "blobs"), **blob_env}
    new = start_server(target, ADMIN, extra_env=env)
    b = Api(new, ref)
    try:
        assert b.http.get(f"{b.R}/log").json()["results"] == log_before
        for p, data in files.items():
            assert b.read(p) == data
        assert b.read("d/0.bin", ref=commits[0]) == files["d/0.bin"]
        assert b.read("pending.txt", session_id=open_sid) == b"staged, not committed"
        assert b.http.get(f"{b.R}/secrets/TOKEN").json()["value"] == "sealed"
        me = httpx.get(f"{new.endpoint}/api/v1/auth/me",
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert me.status_code == 200 and me.json()["user"]["source"] == "agent", me.text
        # New rows get new ids past the copied ones, and the open session still commits.
        sid = b.session()
        b.put(sid, "after.txt", b"after the move")
        b.commit_ok(sid)
        assert b.commit(open_sid).status_code == 200
        assert b.read("pending.txt") == b"staged, not committed"
    finally:
        b.close()
        stop_server(new)
    assert "Traceback" not in new.log(), new.log()


def test_migrate_needs_a_target_and_an_embedded_source(pg: PostgresHandle,
                                                       tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    rc, _, err = _migrate(tmp_path / "empty", tmp_path / "t", pg.create_database("never"))
    assert rc == 2 and "is not an embedded tilde-server data directory" in err, err
    assert not (tmp_path / "t" / "keys.json").exists()
