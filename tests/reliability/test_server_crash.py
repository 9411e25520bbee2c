"""tilde-server durability: one server per data directory, and crashes at every named phase
of uploads, finalize, multipart, batch, commit and rollback (tilde_server.crashpoints).

The crash test runs one round per crash point on ONE data directory, so the state the
earlier rounds acknowledged is re-checked after every later crash. A round starts the server
with TILDE_SERVER_CRASH_AT=<point>, acknowledges a few operations, then starts the one that
passes the point: the server SIGKILLs itself there. The server is restarted on the same port
(signed URLs issued before the crash stay valid) without the variable, and the check asserts:
every acknowledged operation is intact (committed and staged bytes read back equal); the
interrupted one is absent or whole, exactly as the phase implies; `PRAGMA integrity_check`
is "ok"; every blob a committed or staged row names exists with the row's size; after the
startup sweep no blob is unreferenced and no spool file is left that no pending upload
needs. Then the round finishes what was interrupted and commits it. A point no round hit
fails the test. TILDE_RELIABILITY=full repeats every point with larger bodies.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bypath import root_conftest
from figures import full_run, record, scale
from tilde_server import crashpoints as cp

_c = root_conftest()
ADMIN_KEY: str = _c.ADMIN_KEY
RepoRef = _c.RepoRef
ServerHandle = _c.ServerHandle
free_port = _c.free_port
new_repo = _c.new_repo
server_command = _c.server_command
start_server = _c.start_server
stop_server = _c.stop_server

# ============================================================================ the data dir lock


def _run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """Run `tilde-server ARGS`; one still running after 20 s (a second server that did
    start) is killed, and the test fails."""
    env = dict(os.environ, HOME=str(home), TILDE_SERVER_ADMIN_KEY=ADMIN_KEY)  # not on argv
    env.pop(cp.ENV, None)
    proc = subprocess.Popen([*server_command(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"`tilde-server {' '.join(args[:1])}` kept running:\n{err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_second_server_on_one_data_dir_refuses(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    try:
        second = _run_cli(["run", "--data", str(first.data_dir), "--host", "127.0.0.1",
                           "--port", str(free_port())], first.home)
        assert second.returncode != 0, second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert lines == [f"tilde-server: error: {first.data_dir} is in use by another "
                         f"tilde-server (pid {first.proc.pid}); stop it first or choose "
                         "another --data directory"], second.stderr
        assert second.stdout == ""
        gc = _run_cli(["gc", "--data", str(first.data_dir)], first.home)
        assert gc.returncode == 2 and "is in use by another tilde-server" in gc.stderr, gc
        # the first one still serves, and maintenance commands still work beside it
        r = httpx.get(f"{first.endpoint}/api/v1/organizations",
                      headers={"Authorization": f"Bearer {first.api_key}"})
        assert r.status_code == 200, r.text
        users = _run_cli(["user", "list", "--data", str(first.data_dir)], first.home)
        assert users.returncode == 0 and "admin" in users.stdout, users
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        # a crashed server leaves no stale lock: a new one starts at once
        again = start_server(tmp_path)
        try:
            r = httpx.get(f"{again.endpoint}/api/v1/organizations",
                          headers={"Authorization": f"Bearer {again.api_key}"})
            assert r.status_code == 200, r.text
        finally:
            stop_server(again)
        assert "Traceback" not in again.log(), again.log()
    finally:
        if first.proc.poll() is None:
            stop_server(first)


def test_maintenance_command_leaves_running_imports_alone(tmp_path: Path) -> None:
    """`tilde-server user list` beside a running server used to recover the directory as if
    the server had crashed: the server's running import ended `failed`, its spools gone."""
    from tilde_server.store import Principal, Store

    data = tmp_path / "d"
    store, _ = Store.open(data, "tk-x")
    try:
        store.create_org("o1", "")
        store.create_repo("o1", "r1", {}, Principal("u", "admin"))
        with store.db.write() as c:
            repo_id = c.execute("SELECT id FROM repos").fetchone()[0]
            c.execute("INSERT INTO sessions(uid, repo_id, base_seq, state, created_by, "
                      "created_at) VALUES ('s-imp', ?, 0, 'import', 'u', 'now')", (repo_id,))
            c.execute("INSERT INTO import_jobs(id, repo_id, connector_id, source_organization, "
                      "source_repository, source_prefix, destination_path, commit_message, "
                      "status, objects_imported, commit_id, error, session_uid, "
                      "created_by_type, created_by, created_at, updated_at) VALUES ('job-1', ?, "
                      "NULL, '', '', '', '', 'm', 'running', 0, '', '', 's-imp', 'user', 'u', "
                      "'x', 'x')", (repo_id,))
        spool = store.blobs.open_spool("s-imp", "i-0001")
        spool.write(b"half an import")
        spool.finish()
        users = _run_cli(["user", "list", "--data", str(data)], tmp_path)
        assert users.returncode == 0, users
        with store.db.read() as c:
            status = c.execute("SELECT status FROM import_jobs WHERE id = 'job-1'").fetchone()[0]
            state = c.execute("SELECT state FROM sessions WHERE uid = 's-imp'").fetchone()[0]
        assert (status, state) == ("running", "import")
        assert spool.path.exists()
    finally:
        store.db.close()


def test_crash_point_from_the_environment(tmp_path: Path) -> None:
    """TILDE_SERVER_CRASH_AT=<name>[:<n>] as is (the crash test arms through a file); a
    name that is no crash point is refused at startup."""
    env = dict(os.environ, HOME=str(tmp_path), TILDE_SERVER_ADMIN_KEY=ADMIN_KEY,
               **{cp.ENV: "commit.nope"})
    r = subprocess.run([*server_command(), "run", "--data", str(tmp_path / "bad"), "--port",
                        str(free_port())], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 2 and "unknown crash point 'commit.nope'" in r.stderr, r.stderr
    h = start_server(tmp_path, extra_env={cp.ENV: f"{cp.ROLLBACK_BEFORE_DB_COMMIT}:2"})
    repo = new_repo(h)
    base = f"{h.endpoint}/api/v1/organizations/{repo.org}/repositories/{repo.repo}"
    auth = {"Authorization": f"Bearer {h.api_key}"}
    for n in (1, 2):
        sid = httpx.post(f"{base}/sessions", headers=auth).json()["session_id"]
        if n == 1:  # the first pass survives
            assert httpx.delete(f"{base}/sessions/{sid}", headers=auth).status_code == 204
    with pytest.raises(httpx.TransportError):
        httpx.delete(f"{base}/sessions/{sid}", headers=auth)
    assert h.proc.wait(timeout=20) == -signal.SIGKILL
    assert f"crash point {cp.ROLLBACK_BEFORE_DB_COMMIT} hit (2)" in h.log(), h.log()


# ============================================================================ the sweep

OLD = 7200.0  # seconds: older than the default grace


def _age(path: Path, seconds: float = OLD) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _receive(store: Any, sid: str, address: str, path: str, part: int | None,
             data: bytes) -> Path:
    spool = store.begin_receive(sid, address, part)
    spool.write(data)
    store.end_receive(sid, address, path, part, spool)
    return Path(spool.path)


def test_sweep_removes_only_what_nothing_needs(tmp_path: Path) -> None:
    """A sweep while the server runs (grace 3600 s): unreferenced old blobs, spools no
    pending upload needs and expired uploads go; staged, committed and pending ones stay,
    and so does anything modified within the grace period."""
    from tilde_server.store import Principal, Store

    store, _ = Store.open(tmp_path / "d", "tk-x")
    try:
        who = Principal("u", "admin")
        store.create_org("oo", "")
        store.create_repo("oo", "rr", {}, who)
        committed = store.create_session("oo", "rr", who)
        up = store.stage_upload("oo", "rr", committed, "c.bin")
        _receive(store, committed, up.address, "c.bin", None, b"committed")
        c_obj = store.finalize_token_upload("oo", "rr", committed, "c.bin", up.token, "", {})
        store.commit_session("oo", "rr", committed, "m", {}, who)
        sid = store.create_session("oo", "rr", who)
        up = store.stage_upload("oo", "rr", sid, "s.bin")
        _receive(store, sid, up.address, "s.bin", None, b"staged")
        s_obj = store.finalize_token_upload("oo", "rr", sid, "s.bin", up.token, "", {})
        pending = store.stage_upload("oo", "rr", sid, "p.bin")
        p_spool = _receive(store, sid, pending.address, "p.bin", None, b"pending")
        p_sha = hashlib.sha256(b"pending").hexdigest()
        store.blobs.write_bytes(b"pending")  # a blob only the pending upload names
        mp = store.initiate_multipart("oo", "rr", sid, "m.bin")
        part1 = _receive(store, sid, mp.address, "m.bin", 1, b"part one")
        part2 = store.blobs.spool_path(sid, mp.address, 2)  # bytes never recorded
        part2.write_bytes(b"torn")
        part3 = store.blobs.spool_path(sid, mp.address, 3)  # being received right now
        part3.write_bytes(b"fresh")
        assembled = store.blobs.spool_path(sid, mp.address + ".assembled")
        assembled.write_bytes(b"half assembled")
        gone_session = store.blobs.spool_path("no-such-session", "u-1")
        gone_session.parent.mkdir(parents=True)
        gone_session.write_bytes(b"x")
        expired = store.stage_upload("oo", "rr", sid, "e.bin")
        e_spool = _receive(store, sid, expired.address, "e.bin", None, b"expired")
        with store.db.write() as c:
            c.execute("UPDATE uploads SET created_at = '2000-01-01T00:00:00.000000Z' "
                      "WHERE address = ?", (expired.address,))
        old_orphan = store.blobs.write_bytes(b"old orphan")
        new_orphan = store.blobs.write_bytes(b"new orphan")
        for f in (store.blobs.path(c_obj.blob), store.blobs.path(s_obj.blob), p_spool,
                  store.blobs.path(p_sha), part1, part2, assembled, gone_session, e_spool,
                  store.blobs.path(old_orphan), gone_session.parent):
            _age(f)

        r = store.sweep(3600)

        assert (r.blobs, r.expired_uploads) == (1, 1), r
        assert r.spool_files == 4, r  # part 2, assembled, the closed session's, expired
        for kept in (store.blobs.path(c_obj.blob), store.blobs.path(s_obj.blob), p_spool,
                     store.blobs.path(p_sha), part1, part3, store.blobs.path(new_orphan)):
            assert kept.exists(), kept
        for gone in (part2, assembled, gone_session, e_spool, store.blobs.path(old_orphan)):
            assert not gone.exists(), gone
        # and what stayed still works
        o = store.finalize_token_upload("oo", "rr", sid, "p.bin", pending.token, "", {})
        assert o.blob == p_sha
        store.end_receive(sid, mp.address, "m.bin", 2,
                          _respool(store, sid, mp.address, 2, b"part two"))
        etags = [hashlib.md5(b"part one").hexdigest(), hashlib.md5(b"part two").hexdigest()]
        store.complete_multipart("oo", "rr", sid, "m.bin", mp.token, mp.upload_id, None,
                                 [(1, etags[0]), (2, etags[1])], None, "", {})
        _, f = store.open_object("oo", "rr", "m.bin", session=sid)
        with f:
            assert f.read() == b"part onepart two"
    finally:
        store.close()


def _respool(store: Any, sid: str, address: str, part: int, data: bytes) -> Any:
    spool = store.begin_receive(sid, address, part)
    spool.write(data)
    return spool


def test_running_server_sweeps_and_gc_sweeps_a_stopped_one(tmp_path: Path) -> None:
    h = start_server(tmp_path, args=["--gc-interval", "1"])
    try:
        repo = new_repo(h)
        base = (f"{h.endpoint}/api/v1/organizations/{repo.org}/repositories/{repo.repo}")
        auth = {"Authorization": f"Bearer {h.api_key}"}
        sid = httpx.post(f"{base}/sessions", headers=auth).json()["session_id"]
        q = {"session_id": sid, "path": "kept.bin"}
        st = httpx.put(f"{base}/object", params=q, headers=auth).json()
        assert httpx.put(st["upload_url"], content=b"kept").status_code == 200
        r = httpx.post(f"{base}/object/finalize", params=q, headers=auth,
                       json={"upload_token": st["upload_token"]})
        assert r.status_code == 201, r.text
        kept = h.data_dir / "blobs" / hashlib.sha256(b"kept").hexdigest()[:2] / \
            hashlib.sha256(b"kept").hexdigest()[2:]
        _age(kept)
        orphan = h.data_dir / "blobs" / "ff" / ("f" * 62)
        orphan.parent.mkdir(exist_ok=True)
        orphan.write_bytes(b"nobody's")
        _age(orphan)
        for _ in range(100):  # bounded: the sweeper runs every second
            if not orphan.exists():
                break
            time.sleep(0.1)
        assert not orphan.exists(), h.log()[-2000:]
        assert kept.exists()
        got = httpx.get(f"{base}/object", params=q, headers=auth)
        assert got.status_code == 200 and got.content == b"kept"
    finally:
        stop_server(h)
    assert "sweep: removed 1 unreferenced blob(s)" in h.log(), h.log()[-2000:]
    orphan.write_bytes(b"again")  # no grace for gc: nothing runs
    gc = _run_cli(["gc", "--data", str(h.data_dir)], h.home)
    assert gc.returncode == 0, gc
    assert gc.stdout.startswith("removed 1 unreferenced blob(s)"), gc.stdout
    assert not orphan.exists() and kept.exists()


# ============================================================================ crash rounds

Data = bytes


@dataclass
class World:
    """The server under test and what it acknowledged (the model the checks compare to)."""

    tmp: Path
    port: int
    rng: random.Random
    size: int
    repo: RepoRef | None = None
    h: ServerHandle | None = None
    committed: dict[str, Data] = field(default_factory=dict)
    sessions: dict[str, dict[str, Data | None]] = field(default_factory=dict)  # None: deleted
    restarts: int = 0
    checked: int = 0
    acked: int = 0
    integrity_ok: int = 0
    blobs_swept: int = 0  # garbage the startup sweeps removed (crash leftovers)
    spools_swept: int = 0
    hits: list[str] = field(default_factory=list)
    n: int = 0
    client: httpx.Client | None = None

    # ---------------------------------------------------------------- server
    @property
    def arm_file(self) -> Path:
        return self.tmp / "crash-at"

    def start(self) -> None:
        """(Re)start on the same data directory and port, armed through `arm_file`."""
        if self.h is not None:
            assert "Traceback" not in self.h.log(), self.h.log()[-3000:]
        self.h = start_server(self.tmp, extra_env={cp.ENV: f"@{self.arm_file}"},
                              port=self.port)
        m = re.search(r"startup sweep: removed (\d+) unreferenced blob\(s\), (\d+) spool "
                      r"file\(s\)", self.h.log())
        if m:
            self.blobs_swept += int(m[1])
            self.spools_swept += int(m[2])
        if self.client is not None:
            self.client.close()
        self.client = httpx.Client(timeout=30)  # one per server: a client costs ~10 ms CPU
        if self.repo is None:
            self.repo = new_repo(self.h)

    def arm(self, point: str = "", nth: int = 1) -> None:
        self.arm_file.write_text(f"{point}:{nth}" if point else "")

    @property
    def server(self) -> ServerHandle:
        assert self.h is not None
        return self.h

    @property
    def base(self) -> str:
        assert self.repo is not None
        return (f"{self.server.endpoint}/api/v1/organizations/{self.repo.org}/repositories/"
                f"{self.repo.repo}")

    def http(self, method: str, url: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.server.api_key}"} if url.startswith(
            self.base) else {}
        assert self.client is not None
        return self.client.request(method, url, headers=headers, **kw)

    def ok(self, r: httpx.Response) -> httpx.Response:
        assert 200 <= r.status_code < 300, (r.status_code, r.text)
        self.acked += 1
        return r

    def crash(self, point: str, op: Callable[[], Any]) -> None:
        """Run `op`, which must pass `point`: the server dies and nothing is answered."""
        with pytest.raises(httpx.TransportError):
            op()
        rc = self.server.proc.wait(timeout=20)
        log = self.server.log()
        assert rc == -signal.SIGKILL, f"exit {rc}, not a SIGKILL at {point}:\n{log[-3000:]}"
        assert f"crash point {point} hit" in log, log[-3000:]
        self.hits.append(point)

    # ---------------------------------------------------------------- operations
    def data(self) -> Data:
        return self.rng.randbytes(self.rng.randint(1, self.size))

    def path(self, stem: str) -> str:
        self.n += 1
        return f"r{self.n:03d}/{stem}.bin"

    def session(self) -> str:
        sid = str(self.ok(self.http("POST", f"{self.base}/sessions")).json()["session_id"])
        self.sessions[sid] = {}
        return sid

    def stage(self, sid: str, path: str, flow: str) -> dict[str, Any]:
        q = {"session_id": sid, "path": path}
        if flow == "legacy":
            r = self.ok(self.http("POST", f"{self.base}/object/stage", params=q))
        else:
            r = self.ok(self.http("PUT", f"{self.base}/object", params=q))
        return dict(r.json(), flow=flow, sid=sid, path=path)

    def put(self, st: dict[str, Any], data: Data) -> httpx.Response:
        return self.http("PUT", st["upload_url"], content=data)

    def finalize(self, st: dict[str, Any]) -> httpx.Response:
        q = {"session_id": st["sid"], "path": st["path"]}
        if st["flow"] == "legacy":
            return self.http("PUT", f"{self.base}/object/finalize",
                             params={**q, "expires_at": st["expires_at"]},
                             json={"physical_address": st["physical_address"],
                                   "signature": st["signature"], "content_type": "x/y"})
        return self.http("POST", f"{self.base}/object/finalize", params=q,
                         json={"upload_token": st["upload_token"], "content_type": "x/y"})

    def upload(self, sid: str, path: str, data: Data, flow: str = "current") -> None:
        st = self.stage(sid, path, flow)
        self.ok(self.put(st, data))
        self.ok(self.finalize(st))
        self.sessions[sid][path] = data

    def initiate(self, sid: str, path: str) -> dict[str, Any]:
        r = self.ok(self.http("POST", f"{self.base}/object/multipart",
                              params={"session_id": sid, "path": path}))
        return dict(r.json(), sid=sid, path=path)

    def part(self, mp: dict[str, Any], n: int, data: Data) -> httpx.Response:
        r = self.ok(self.http("GET", f"{self.base}/object/multipart/part", params={
            "session_id": mp["sid"], "path": mp["path"], "upload_id": mp["upload_id"],
            "part_number": n, "upload_token": mp["upload_token"]}))
        return self.http("PUT", r.json()["upload_url"], content=data)

    def complete(self, mp: dict[str, Any], etags: list[str], legacy: bool = False
                 ) -> httpx.Response:
        parts = [{"part_number": i + 1, "etag": e} for i, e in enumerate(etags)]
        body: dict[str, Any] = {"upload_id": mp["upload_id"], "parts": parts}
        if legacy:
            body.update(token=mp["token"], physical_address=mp["physical_address"])
        else:
            body["upload_token"] = mp["upload_token"]
        return self.http("POST", f"{self.base}/object/multipart/complete",
                         params={"session_id": mp["sid"], "path": mp["path"]}, json=body)

    def batch(self, sid: str, items: list[tuple[str, Data]]) -> httpx.Response:
        manifest = json.dumps({"objects": [{"path": p, "size": len(d)} for p, d in items]})
        body = manifest.encode() + b"\n" + b"".join(d for _, d in items)
        return self.http("POST", f"{self.base}/objects/upload", params={"session_id": sid},
                         content=body)

    def commit(self, sid: str) -> httpx.Response:
        return self.http("POST", f"{self.base}/sessions/{sid}", json={"message": "m"})

    def committed_now(self, sid: str) -> None:
        """The model after session `sid` was committed."""
        for p, d in self.sessions.pop(sid).items():
            if d is None:
                self.committed.pop(p, None)
            else:
                self.committed[p] = d

    def get(self, path: str, sid: str | None = None) -> httpx.Response:
        q = {"path": path, **({"session_id": sid} if sid else {})}
        return self.http("GET", f"{self.base}/object", params=q)

    # ---------------------------------------------------------------- checks
    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.server.data_dir / "tilde.db")

    def check(self, strict: bool) -> None:
        """Every acknowledged state intact; the store consistent. `strict`: nothing pending
        remains, so no spool file may be left at all and every blob is referenced."""
        c = self.db()
        try:
            assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            self.integrity_ok += 1
            assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert self.repo is not None
            rid = c.execute("SELECT r.id FROM repos r JOIN orgs o ON o.id = r.org_id "
                            "WHERE o.name = ? AND r.name = ?",
                            (self.repo.org, self.repo.repo)).fetchone()[0]
            head = {p for (p,) in c.execute(
                "SELECT path FROM entries WHERE repo_id = ? AND to_seq IS NULL", (rid,))}
            assert head == set(self.committed), (head ^ set(self.committed))
            for sid, staged in self.sessions.items():
                rows = {p for (p,) in c.execute(
                    "SELECT st.path FROM staged st JOIN sessions s ON s.id = st.session_id "
                    "WHERE s.uid = ? AND s.state = 'open'", (sid,))}
                assert rows == set(staged), (sid, rows ^ set(staged))
            refs = dict(c.execute("SELECT blob, size FROM entries UNION "
                                  "SELECT blob, size FROM staged WHERE blob IS NOT NULL"))
            pending = {s for (s,) in c.execute(
                "SELECT sha256 FROM uploads WHERE sha256 IS NOT NULL UNION "
                "SELECT sha256 FROM upload_parts")}
            spools_needed = {a for (a,) in c.execute("SELECT address FROM uploads")}
        finally:
            c.close()
        blobs_dir = self.server.data_dir / "blobs"
        files = {f.parent.name + f.name: f.stat().st_size
                 for f in blobs_dir.glob("*/*") if f.is_file()}
        for key, size in refs.items():
            assert files.get(key) == size, f"blob {key} missing or torn ({files.get(key)})"
        orphans = set(files) - set(refs) - (set() if strict else pending)
        assert not orphans, f"unreferenced blobs after the sweep: {sorted(orphans)}"
        tmp = self.server.data_dir / "tmp"
        left = [f for f in tmp.rglob("*") if f.is_file()]
        stray = [f for f in left if not any(a in f.relative_to(tmp).as_posix()
                                            for a in spools_needed)]
        assert not stray, f"spool files no pending upload needs: {stray}"
        if strict:
            assert not left, f"spool files left with nothing pending: {left}"
        for p, d in self.committed.items():
            r = self.get(p)
            assert r.status_code == 200 and r.content == d, (p, r.status_code)
            self.checked += 1
        for sid, staged in self.sessions.items():
            for p, d in staged.items():
                r = self.get(p, sid)
                if d is None:
                    assert r.status_code == 404, (sid, p, r.status_code)
                else:
                    assert r.status_code == 200 and r.content == d, (sid, p, r.status_code)
                self.checked += 1


# Each scenario: act(world) on the armed server returns a `settle` to run after the restart.
Settle = Callable[[World], None]
Scenario = Callable[[World, str], Settle]


def single_upload(w: World, point: str) -> Settle:
    flow = "legacy" if point == cp.UPLOAD_SYNCED else "current"
    sid = w.session()
    w.upload(sid, w.path("acked"), w.data(), flow)
    path, data = w.path("cut"), w.data()
    st = w.stage(sid, path, flow)
    w.crash(point, lambda: w.put(st, data))

    def settle(w: World) -> None:
        assert w.get(path, sid).status_code == 404
        w.check(strict=False)
        r = w.finalize(st)
        if point == cp.UPLOAD_RECORDED:  # recorded before the crash: finalize finds it
            w.ok(r)
        else:
            assert r.status_code == 400 and "upload_missing" in r.text, r.text
            w.ok(w.put(st, data))
            w.ok(w.finalize(st))
        w.sessions[sid][path] = data
        w.ok(w.commit(sid))
        w.committed_now(sid)
    return settle


def finalize(w: World, point: str) -> Settle:
    flow = point.split(".")[1]
    sid = w.session()
    w.upload(sid, w.path("acked"), w.data(), flow)
    path, data = w.path("cut"), w.data()
    st = w.stage(sid, path, flow)
    w.ok(w.put(st, data))
    w.crash(point, lambda: w.finalize(st))

    def settle(w: World) -> None:
        r = w.get(path, sid)
        if point.endswith(".committed"):  # the transaction committed: staged and whole
            assert r.status_code == 200 and r.content == data
            w.sessions[sid][path] = data
            w.check(strict=True)
            assert w.finalize(st).status_code == 400  # the upload was consumed
        else:  # rolled back: absent, and the acknowledged PUT can still be finalized
            assert r.status_code == 404
            w.check(strict=False)
            w.ok(w.finalize(st))
            w.sessions[sid][path] = data
        w.ok(w.commit(sid))
        w.committed_now(sid)
    return settle


def part_upload(w: World, point: str) -> Settle:
    sid = w.session()
    path, one, two = w.path("multi"), w.data(), w.data()
    mp = w.initiate(sid, path)
    e1 = w.ok(w.part(mp, 1, one)).json()["etag"]
    w.crash(point, lambda: w.part(mp, 2, two))

    def settle(w: World) -> None:
        assert w.get(path, sid).status_code == 404
        w.check(strict=False)
        etag2 = hashlib.md5(two).hexdigest()
        r = w.complete(mp, [e1, etag2])
        if point == cp.PART_RECORDED:
            w.ok(r)
        else:
            assert r.status_code == 400 and "part 2" in r.text, r.text
            w.ok(w.part(mp, 2, two))
            w.ok(w.complete(mp, [e1, etag2]))
        w.sessions[sid][path] = one + two
        w.ok(w.commit(sid))
        w.committed_now(sid)
    return settle


def complete(w: World, point: str) -> Settle:
    legacy = point == cp.COMPLETE_ASSEMBLED
    sid = w.session()
    path, one, two = w.path("multi"), w.data(), w.data()
    mp = w.initiate(sid, path)
    etags = [w.ok(w.part(mp, i + 1, d)).json()["etag"] for i, d in enumerate((one, two))]
    w.crash(point, lambda: w.complete(mp, etags, legacy))

    def settle(w: World) -> None:
        r = w.get(path, sid)
        if point == cp.COMPLETE_COMMITTED:
            assert r.status_code == 200 and r.content == one + two
            w.sessions[sid][path] = one + two
            w.check(strict=True)  # the parts went in the startup sweep
            assert w.complete(mp, etags, legacy).status_code == 404
        else:
            assert r.status_code == 404
            w.check(strict=False)
            w.ok(w.complete(mp, etags, legacy))
        w.sessions[sid][path] = one + two
        w.ok(w.commit(sid))
        w.committed_now(sid)
    return settle


def batch(w: World, point: str) -> Settle:
    sid = w.session()
    w.upload(sid, w.path("acked"), w.data())
    items = [(w.path(f"b{i}"), w.data()) for i in range(3)]
    w.crash(point, lambda: w.batch(sid, items))

    def settle(w: World) -> None:
        for p, _ in items:  # all or nothing: nothing
            assert w.get(p, sid).status_code == 404
        w.check(strict=True)  # the batch's blobs were swept at startup
        w.ok(w.batch(sid, items))
        w.sessions[sid].update(items)
        w.ok(w.commit(sid))
        w.committed_now(sid)
    return settle


def commit(w: World, point: str) -> Settle:
    sid = w.session()
    w.upload(sid, w.path("acked"), w.data())
    gone = sorted(w.committed)[0]
    w.ok(w.http("POST", f"{w.base}/objects/delete", params={"session_id": sid},
                json={"paths": [gone]}))
    w.sessions[sid][gone] = None
    w.crash(point, lambda: w.commit(sid))

    def settle(w: World) -> None:
        if point == cp.COMMIT_AFTER_DB_COMMIT:  # landed, whole
            w.committed_now(sid)
            w.check(strict=True)
            assert w.commit(sid).status_code == 404
        else:  # did not land at all; the session is intact and commits now
            w.check(strict=True)
            w.ok(w.commit(sid))
            w.committed_now(sid)
    return settle


def rollback(w: World, point: str) -> Settle:
    sid = w.session()
    w.upload(sid, w.path("doomed"), w.data())
    w.crash(point, lambda: w.http("DELETE", f"{w.base}/sessions/{sid}"))

    def settle(w: World) -> None:
        if point == cp.ROLLBACK_AFTER_DB_COMMIT:
            del w.sessions[sid]
            w.check(strict=True)  # its blob went in the startup sweep
            assert w.http("DELETE", f"{w.base}/sessions/{sid}").status_code == 404
        else:
            w.check(strict=True)
            w.ok(w.http("DELETE", f"{w.base}/sessions/{sid}"))
            del w.sessions[sid]
    return settle


# point -> (scenario, on which pass of the point the server dies: the acknowledged steps
# before the interrupted one pass it too)
SCENARIOS: dict[str, tuple[Scenario, int]] = {
    **{p: (single_upload, 2) for p in (cp.UPLOAD_RECEIVED, cp.UPLOAD_SYNCED,
                                       cp.UPLOAD_RECORDED)},
    **{p: (part_upload, 2) for p in (cp.PART_RECEIVED, cp.PART_SYNCED, cp.PART_RECORDED)},
    **{p: (finalize, 2) for p in (*cp.FINALIZE["legacy"], *cp.FINALIZE["current"])},
    **{p: (complete, 1) for p in (cp.COMPLETE_ASSEMBLED, cp.COMPLETE_ADOPTED,
                                  cp.COMPLETE_COMMITTED)},
    cp.BATCH_ADOPTED: (batch, 1),
    **{p: (commit, 1) for p in (cp.COMMIT_BEFORE_DB_COMMIT, cp.COMMIT_AFTER_DB_COMMIT)},
    **{p: (rollback, 1) for p in (cp.ROLLBACK_BEFORE_DB_COMMIT,
                                  cp.ROLLBACK_AFTER_DB_COMMIT)},
}


def test_every_crash_point_keeps_what_was_acknowledged(tmp_path: Path) -> None:
    assert set(SCENARIOS) == set(cp.ALL), "a crash point without a scenario"
    repeats = scale(1, 3)
    w = World(tmp_path, free_port(), random.Random(11), scale(256 * 1024, 8 * 1024 * 1024))
    w.arm()
    w.start()
    sid = w.session()  # something committed for the commit rounds to delete
    w.upload(sid, w.path("base"), w.data())
    w.ok(w.commit(sid))
    w.committed_now(sid)
    for _ in range(repeats):
        for point in cp.ALL:
            scenario, nth = SCENARIOS[point]
            w.arm(point, nth)
            settle = scenario(w, point)
            w.arm()
            w.start()
            w.restarts += 1
            settle(w)
            w.check(strict=True)
    stop_server(w.server)
    assert w.client is not None
    w.client.close()
    assert "Traceback" not in w.server.log(), w.server.log()[-3000:]
    # crash leftovers the startup sweeps had to remove (check() asserted none stayed): at
    # least the batch's three blobs, the rolled-back session's, the torn spools
    assert w.blobs_swept >= 4 and w.spools_swept >= 2, (w.blobs_swept, w.spools_swept)
    missed = set(cp.ALL) - set(w.hits)
    assert not missed, f"crash points never hit: {sorted(missed)}"
    record("server_crash", points=len(cp.ALL), points_hit=len(set(w.hits)),
           crashes=len(w.hits), restarts=w.restarts, operations_acknowledged=w.acked,
           operations_checked=w.checked, integrity_ok=w.integrity_ok, bytes_lost=0,
           orphans_after_cleanup=0, blobs_swept=w.blobs_swept, spool_files_swept=w.spools_swept,
           runs=1, full=int(full_run()))
