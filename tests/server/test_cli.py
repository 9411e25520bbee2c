"""The `tilde-server run` command: first start, restart on the same DIR, refusing foreign DIRs."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from serverapi import (
    Api,
    RepoRef,
    assert_error,
    free_port,
    server_command,
    start_server,
    stop_server,
    unique,
)

from postgres import RUN


def _run(args: list[str], home: Path, timeout: float = 20,
         data: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`data`: a deployment the run's --backend made (its database comes along)."""
    env = dict(os.environ, HOME=str(home))
    env.pop("TILDE_SERVER_ADMIN_KEY", None)
    if data is not None:
        env.update(RUN.env(data))
    return subprocess.run([*server_command(), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_restart_keeps_data_and_adds_admin_key(tmp_path: Path) -> None:
    h = start_server(tmp_path, api_key="key-one")
    org, repo = unique("org"), unique("repo")
    a = Api(h, RepoRef(org, repo))
    assert a.http.post(f"{a.base}/organizations",
                       json={"name": org, "display_name": org}).status_code == 201
    assert a.http.post(f"{a.base}/organizations/{org}/repositories",
                       json={"name": repo}).status_code == 201
    sid = a.session()
    a.put(sid, "kept", b"data")
    cid = a.commit_ok(sid)
    open_sid = a.session()
    a.put(open_sid, "pending", b"staged")
    a.close()
    stop_server(h)
    assert "Traceback" not in h.log()

    # restart on the same DIR with another key: both keys work, data and open sessions survive
    h2 = start_server(tmp_path, api_key="key-two")
    try:
        for key in ("key-one", "key-two"):
            h2.api_key = key
            b = Api(h2, RepoRef(org, repo))
            assert b.read("kept") == b"data"
            assert b.read("pending", session_id=open_sid) == b"staged"
            assert b.http.get(f"{b.R}/log").json()["results"][0]["id"] == cid
            b.close()
        assert_error(httpx.get(f"{h2.endpoint}/api/v1/organizations",
                               headers={"Authorization": "Bearer key-three"}), 401)
        # keys are stored only as hashes
        hashes = [r[0] for r in RUN.rows(h2.data_dir, "SELECT key_hash FROM api_keys")]
        assert len(hashes) == 2 and all("key-" not in x for x in hashes)
    finally:
        stop_server(h2)
    assert "key-one" not in h2.log() and "key-two" not in h2.log()
    assert "Traceback" not in h2.log()


def test_first_start_generates_key_and_config(tmp_path: Path) -> None:
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    port = free_port()
    env = dict(os.environ, HOME=str(home))
    env.pop("TILDE_SERVER_ADMIN_KEY", None)
    proc = subprocess.Popen([*server_command(), "run", "--data", str(data), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        cfg = home / ".tilde" / "config.yaml"
        deadline = time.monotonic() + 20
        while not cfg.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        conf = yaml.safe_load(cfg.read_text())
        assert conf["endpoint_url"] == f"http://127.0.0.1:{port}"
        assert conf["api_key"]
        assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
        assert stat.S_IMODE(cfg.parent.stat().st_mode) == 0o700
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{conf['endpoint_url']}/api/v1/organizations",
                              headers={"Authorization": f"Bearer {conf['api_key']}"})
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out.count(conf["api_key"]) == 1  # printed once, on stdout
    assert conf["api_key"] not in err
    assert "Traceback" not in err


def test_existing_config_is_not_overwritten(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".tilde").mkdir(parents=True)
    cfg = home / ".tilde" / "config.yaml"
    cfg.write_text("api_key: mine\n")
    port = free_port()
    env = dict(os.environ, HOME=str(home))
    env.pop("TILDE_SERVER_ADMIN_KEY", None)
    proc = subprocess.Popen([*server_command(), "run", "--data", str(tmp_path / "d"),
                             "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/organizations")
                break
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "tk-" in out  # the generated key is still shown once
    assert cfg.read_text() == "api_key: mine\n"


def test_foreign_dir_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    r = _run(["run", "--data", str(foreign), "--port", str(free_port()), "--admin-key", "k"],
             tmp_path)
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "not a tilde-server data directory" in lines[0], r.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / "tilde.db").write_bytes(b"this is not sqlite" * 100)
    r = _run(["run", "--data", str(bogus), "--port", str(free_port())], tmp_path)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr

    afile = tmp_path / "afile"
    afile.write_text("x")
    r = _run(["run", "--data", str(afile), "--port", str(free_port())], tmp_path)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_newer_format_refused(tmp_path: Path) -> None:
    h = start_server(tmp_path, api_key="k")
    stop_server(h)
    RUN.rows(h.data_dir, "UPDATE meta SET value = '99' WHERE key = 'format_version'")
    r = _run(["run", "--data", str(h.data_dir), "--port", str(free_port())], tmp_path,
             data=h.data_dir)
    assert r.returncode != 0
    assert "format version 99" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_module_entry_point(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "tilde_server", "run", "--help"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "--data" in r.stdout and "--admin-key" in r.stdout
