"""--secret-key-file: what the processes of one PostgreSQL deployment share (store/keys.py).

Two real tilde-server processes on one real PostgreSQL database, each with its own --data:
what one process keyed, signed or sealed, the other checks, verifies and opens; a process
with another key file, a key file others may read, or no key file is refused at start."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverapi import (
    Api,
    RepoRef,
    ServerHandle,
    free_port,
    server_command,
    start_server,
    stop_server,
    unique,
)

from postgres import PostgresHandle, start_postgres

ADMIN = "tk-deployment-admin-0123456789abcdef"


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresHandle]:
    with start_postgres(tmp_path_factory.mktemp("pg")) as handle:
        yield handle


def _env(url: str, key_file: Path) -> dict[str, str]:
    """One deployment: its database, key file and one blob directory beside the key file
    (whatever --backend the run has: the servers of a pair must share their blobs)."""
    return {"TILDE_SERVER_DATABASE": url, "TILDE_SERVER_SECRET_KEY_FILE": str(key_file),
            "TILDE_SERVER_BLOBS": str(key_file.parent / "blobs")}


def _refused(tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`tilde-server run` that must not come up: its exit, within the timeout."""
    full = dict(os.environ, HOME=str(tmp), TILDE_SERVER_ADMIN_KEY=ADMIN, **env)
    for k in ("TILDE_SERVER_DATABASE", "TILDE_SERVER_SECRET_KEY_FILE"):
        if not env.get(k):
            full.pop(k, None)
    return subprocess.run([*server_command(), "run", "--data", str(tmp / "data"), "--port",
                           str(free_port())], capture_output=True, text=True, env=full,
                          timeout=60)


@pytest.fixture(scope="module")
def pair(pg: PostgresHandle,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, ServerHandle,
                                                                     Path, str]]:
    url = pg.create_database(f"keys_{os.getpid()}")
    keys = tmp_path_factory.mktemp("keys") / "deployment-keys.json"
    a = start_server(tmp_path_factory.mktemp("a"), ADMIN, extra_env=_env(url, keys))
    b = start_server(tmp_path_factory.mktemp("b"), ADMIN, extra_env=_env(url, keys))
    yield a, b, keys, url
    for h in (a, b):
        stop_server(h)
        assert "Traceback" not in h.log(), h.log()


def test_key_file_is_made_once_0600_with_three_keys(pair: tuple[ServerHandle, ServerHandle,
                                                                Path, str]) -> None:
    _, _, keys, _ = pair
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    body = json.loads(keys.read_text())
    assert body["format"] == 1
    values = [bytes.fromhex(body[n]) for n in ("identity", "signing", "vault")]
    assert all(len(v) == 32 for v in values) and len(set(values)) == 3


def test_what_one_process_keys_signs_and_seals_the_other_accepts(
        pair: tuple[ServerHandle, ServerHandle, Path, str]) -> None:
    a, b, _, _ = pair
    ref = RepoRef(unique("org"), unique("repo"))
    on_a, on_b = Api(a, ref), Api(b, ref)
    try:
        assert on_a.http.post(f"{on_a.base}/organizations", json={
            "name": ref.org, "display_name": ref.org}).status_code == 201
        assert on_a.http.post(f"{on_a.base}/organizations/{ref.org}/repositories",
                              json={"name": ref.repo}).status_code == 201
        # An agent key HMAC-ed by A authenticates on B.
        o = f"{on_a.base}/organizations/{ref.org}"
        assert on_a.http.post(f"{o}/agents", json={"name": "bot", "description": ""}
                              ).status_code == 201
        token = on_a.http.post(f"{o}/agents/bot/auth/keys", json={"name": "k"}).json()["token"]
        me = httpx.get(f"{b.endpoint}/api/v1/auth/me",
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert me.status_code == 200, me.text
        assert me.json()["user"]["source"] == "agent"
        # A secret sealed by A opens on B.
        assert on_a.http.put(f"{on_a.R}/secrets/TOKEN", json={"value": "v-123"}
                             ).status_code == 200
        assert on_b.http.get(f"{on_b.R}/secrets/TOKEN").json()["value"] == "v-123"
        # An upload URL signed by A is honoured by B (the bytes land in B's scratch, and B
        # finalizes and commits them).
        sid = on_a.session()
        st = on_a.stage(sid, "signed-by-a.txt")
        url = st["upload_url"].replace(a.endpoint, b.endpoint)
        assert url.startswith(b.endpoint)
        assert httpx.put(url, content=b"moved", timeout=10).status_code == 200
        assert on_b.finalize(sid, "signed-by-a.txt", st).status_code == 200
        on_b.commit_ok(sid)
        assert on_b.read("signed-by-a.txt") == b"moved"
        # A signature under another key is refused.
        bad = url.replace(st["signature"], st["signature"][:-4] + "AAAA")
        assert bad != url
        assert httpx.put(bad, content=b"x", timeout=10).status_code == 403
    finally:
        on_a.close()
        on_b.close()


def test_another_key_file_is_refused_and_left_behind_nowhere(
        pair: tuple[ServerHandle, ServerHandle, Path, str], tmp_path: Path) -> None:
    _, _, _, url = pair
    other = tmp_path / "other-keys.json"
    r = _refused(tmp_path, _env(url, other))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not the key file this database was initialized with" \
        in lines[0], r.stderr
    assert not other.exists()  # it made one for nothing: removed again


def test_key_file_others_may_read_is_refused(
        pair: tuple[ServerHandle, ServerHandle, Path, str], tmp_path: Path) -> None:
    _, _, keys, url = pair
    loose = tmp_path / "loose.json"
    loose.write_text(keys.read_text())
    loose.chmod(0o644)
    r = _refused(tmp_path, _env(url, loose))
    assert r.returncode == 2 and "readable by others (mode 0644); chmod 600" in r.stderr, \
        r.stderr
    assert loose.read_text() == keys.read_text()


def test_damaged_key_file_is_refused(pair: tuple[ServerHandle, ServerHandle, Path, str],
                                     tmp_path: Path) -> None:
    _, _, _, url = pair
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1, "identity": "00"}')
    bad.chmod(0o600)
    r = _refused(tmp_path, _env(url, bad))
    assert r.returncode == 2 and "is not a tilde-server key file" in r.stderr, r.stderr


def test_database_without_key_file_and_key_file_without_database(
        pair: tuple[ServerHandle, ServerHandle, Path, str], tmp_path: Path) -> None:
    _, _, keys, url = pair
    r = _refused(tmp_path / "one", {"TILDE_SERVER_DATABASE": url})
    assert r.returncode == 2 and "--database needs --secret-key-file" in r.stderr, r.stderr
    r = _refused(tmp_path / "two", {"TILDE_SERVER_SECRET_KEY_FILE": str(keys)})
    assert r.returncode == 2 and "are for --database" in r.stderr, r.stderr
    assert not (tmp_path / "two" / "data" / "tilde.db").exists()
