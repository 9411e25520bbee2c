"""The deployment recipe of docs/deploy.md, run for real: the systemd template unit
(deploy/tilde-server@.service) as `systemd-analyze verify` reads it and as its ExecStart
starts two processes, Debian's nginx with deploy/nginx-tilde.conf in front of them, one
PostgreSQL and one SeaweedFS bucket behind. Everything on 127.0.0.1; the test only replaces
the paths and ports of the recipe (the binary, the state directory, the environment file).

Through nginx: both processes answer, the batch upload and streamed, ranged downloads pass
through unbuffered, presigned uploads go to the bucket, and when one process is SIGKILLed
the other carries on (nginx passes a request that never reached a process on)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverapi import free_port, server_command

from postgres import start_postgres
from seaweed import start_seaweed

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "tilde-server@.service"
NGINX_CONF = ROOT / "deploy" / "nginx-tilde.conf"
ADMIN = "tk-recipe-admin-0123456789abcdef0123"
UA_072 = {"User-Agent": "tilde-python-sdk/0.7.2"}  # a caller that streams


def _unit(env_file: Path) -> str:
    """The unit with this machine's tilde-server and the test's environment file."""
    text = UNIT.read_text()
    exe = server_command()
    assert len(exe) == 1, "the venv's tilde-server script (scripts/setup.sh installs it)"
    return (text.replace("/opt/tilde/.venv/bin/tilde-server", exe[0])
            .replace("/etc/tilde/tilde-server.env", str(env_file)))


def _exec_start(unit: str, port: int, state: Path) -> list[str]:
    [line] = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart=").replace("%i", str(port))
                       .replace("/var/lib/tilde", str(state)))


def _env_file(path: Path, env: dict[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds secrets
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in env.items())


def test_the_unit_is_what_systemd_accepts(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: scripts/setup.sh installs systemd"
    env_file = tmp_path / "tilde-server.env"
    _env_file(env_file, {})
    unit = tmp_path / "tilde-server@8081.service"
    unit.write_text(_unit(env_file))
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    broken = tmp_path / "broken@8081.service"
    broken.write_text(_unit(env_file).replace("ExecStart=/", "ExecStart=relative/"))
    assert subprocess.run([analyze, "verify", str(broken)], capture_output=True,
                          timeout=60).returncode != 0


def _nginx_conf(tmp: Path, listen: int, upstreams: list[int]) -> Path:
    server = NGINX_CONF.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{listen}")
    server = re.sub(r"    server 127\.0\.0\.1:808[12] max_fails=0;\n", "", server)
    lines = "".join(f"    server 127.0.0.1:{p} max_fails=0;\n" for p in upstreams)
    server = server.replace("upstream tilde_servers {\n",
                            "upstream tilde_servers {\n" + lines, 1)
    (tmp / "tilde.conf").write_text(server)
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
error_log {tmp}/error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/tilde.conf;
}}
""")
    return conf


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if httpx.get(url, headers={"Authorization": f"Bearer {ADMIN}"},
                         timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def recipe(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]], list[Path]]]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx missing: scripts/setup.sh installs Debian's nginx"
    procs: list[subprocess.Popen[bytes]] = []
    with start_postgres(tmp_path / "pg") as pg, \
            start_seaweed(tmp_path / "weed", buckets=["tilde-data"]) as sw:
        front = free_port()
        ports = [free_port(), free_port()]
        env_file = tmp_path / "tilde-server.env"
        _env_file(env_file, {
            "TILDE_SERVER_DATABASE": pg.create_database("recipe"),
            "TILDE_SERVER_SECRET_KEY_FILE": str(tmp_path / "keys.json"),
            "TILDE_SERVER_BLOBS": "s3://tilde-data/prod",
            "TILDE_SERVER_SIGNED_URL_BASE": f"http://127.0.0.1:{front}",
            "TILDE_SERVER_ADMIN_KEY": ADMIN, **sw.env()})
        # systemd's EnvironmentFile=, read the way systemd reads this one (KEY=VALUE lines)
        unit_env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        unit = _unit(env_file)
        logs = []
        try:
            for port in ports:
                state = tmp_path / f"state-{port}"
                state.mkdir()
                log = tmp_path / f"server-{port}.log"
                logs.append(log)
                with open(log, "wb") as out:
                    procs.append(subprocess.Popen(
                        _exec_start(unit, port, state), stdout=out, stderr=subprocess.STDOUT,
                        env={**os.environ, "HOME": str(state), **unit_env}))
            for port, p, log in zip(ports, procs, logs, strict=True):
                _wait(f"http://127.0.0.1:{port}/api/v1/organizations", p, log)
            conf = _nginx_conf(tmp_path, front, ports)
            t = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
                               capture_output=True, text=True, timeout=30)
            assert t.returncode == 0, t.stderr
            ngx_log = tmp_path / "nginx.out"
            with open(ngx_log, "wb") as out:
                ngx = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf),
                                        "-g", "daemon off;"], stdout=out,
                                       stderr=subprocess.STDOUT)
            procs.append(ngx)
            _wait(f"http://127.0.0.1:{front}/api/v1/organizations", ngx, ngx_log)
            yield f"http://127.0.0.1:{front}", procs, logs
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()


def _batch(objects: dict[str, bytes]) -> bytes:
    head = json.dumps({"objects": [{"path": p, "size": len(d)} for p, d in objects.items()]})
    return head.encode() + b"\n" + b"".join(objects.values())


def test_two_processes_behind_nginx_serve_one_deployment(
        recipe: tuple[str, list[subprocess.Popen[bytes]], list[Path]]) -> None:
    front, procs, logs = recipe
    api = f"{front}/api/v1"
    http = httpx.Client(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
    assert http.post(f"{api}/organizations", json={"name": "acme"}).status_code == 201
    assert http.post(f"{api}/organizations/acme/repositories",
                     json={"name": "lake"}).status_code == 201
    R = f"{api}/organizations/acme/repositories/lake"
    files: dict[str, bytes] = {}
    for i in range(6):
        sid = http.post(f"{R}/sessions").json()["session_id"]
        # through nginx, unbuffered: a batch of objects in one streamed body
        batch = {f"b/{i}/{j}.bin": os.urandom(300_000 + j) for j in range(3)}
        r = http.post(f"{R}/objects/upload", params={"session_id": sid},
                      content=_batch(batch), headers={"Content-Type": "application/x-tilde-batch"})
        assert r.status_code == 200, r.text
        # and a presigned upload: the bytes go to the bucket, not through nginx
        q = {"session_id": sid, "path": f"p/{i}.bin"}
        up = http.put(f"{R}/object", params=q).json()
        assert not up["upload_url"].startswith(front)
        data = os.urandom(200_000)
        assert httpx.put(up["upload_url"], content=data).status_code == 200
        assert http.post(f"{R}/object/finalize", params=q,
                         json={"upload_token": up["upload_token"]}).status_code == 201
        assert http.post(f"{R}/sessions/{sid}", json={"message": f"c{i}"}).status_code == 200
        files.update(batch)
        files[f"p/{i}.bin"] = data
    # streamed and ranged reads through nginx
    for path, data in list(files.items())[:6]:
        r = http.get(f"{R}/object", params={"path": path}, headers=UA_072)
        assert r.status_code == 200 and r.content == data
        r = http.get(f"{R}/object", params={"path": path},
                     headers={**UA_072, "Range": "bytes=1000-1999"})
        assert r.status_code == 206 and r.content == data[1000:2000]
    # both processes answered (nginx round robin)
    for log in logs:
        assert log.read_text().count('"POST /api/v1/organizations/acme/repositories/lake/'
                                     'objects/upload') >= 1, log
    # one process dies: the other carries the deployment on
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(10)
    for i in range(6):
        sid = http.post(f"{R}/sessions").json()["session_id"]
        r = http.post(f"{R}/objects/upload", params={"session_id": sid},
                      content=_batch({f"after/{i}": b"still here"}),
                      headers={"Content-Type": "application/x-tilde-batch"})
        assert r.status_code == 200, r.text
        assert http.post(f"{R}/sessions/{sid}", json={"message": f"a{i}"}).status_code == 200
    log = http.get(f"{R}/log", params={"amount": 100}).json()["results"]
    assert len([c for c in log if c["message"][0] in "ca"]) == 12
    listed = http.get(f"{R}/objects", params={"amount": 1000}).json()["results"]
    assert len(listed) == len(files) + 6
    http.close()
