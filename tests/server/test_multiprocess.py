"""Several tilde-server processes serving one deployment (docs/deploy.md).

Two real processes, each with its own --data, on one real PostgreSQL database, one
--secret-key-file and shared blobs: every test runs twice, with a blob directory (`--blobs
DIR`) and with a real SeaweedFS bucket (`--blobs s3://...`). Commit correctness across them
comes from the database (the repository row locked FOR UPDATE in the commit's transaction),
so: what one writes the other serves, concurrent disjoint commits through both all land,
concurrent commits of one path give exactly one winner and 409s, and a process killed in
the middle of an upload, a commit or an import loses nothing it acknowledged."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serverapi import Api, RepoRef, ServerHandle, one_repo_on, start_server, stop_server, unique

from postgres import PostgresHandle, start_postgres
from seaweed import SeaweedHandle, start_seaweed
from tilde_server import crashpoints as cp

ADMIN = "tk-multiprocess-admin-0123456789abcdef"
KINDS = ("directory", "bucket")  # where the deployment's blobs are
BUCKET = "multi"
# A request through one process SIGKILLed at each phase of an upload and of a commit: the
# bytes still in flight (received, fsynced, not recorded), finalize inside its transaction
# and after it (not answered), the commit inside its transaction and after it. With a bucket
# the bytes never reach a process, so the first phase has no such moment there.
KILL_POINTS = (cp.UPLOAD_SYNCED, cp.FINALIZE_CURRENT_ADOPTED, cp.FINALIZE_CURRENT_COMMITTED,
               cp.COMMIT_BEFORE_DB_COMMIT, cp.COMMIT_AFTER_DB_COMMIT)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test once per KIND (module-scoped: one deployment each); the kill test with
    the phases that exist for that kind."""
    if "kind" not in metafunc.fixturenames:
        return
    if "point" in metafunc.fixturenames and metafunc.function.__name__ == \
            "test_a_process_killed_mid_upload_or_mid_commit_loses_nothing_acknowledged":
        pairs = [(k, p) for k in KINDS for p in KILL_POINTS
                 if not (k == "bucket" and p == cp.UPLOAD_SYNCED)]
        metafunc.parametrize(("kind", "point"), pairs, indirect=["kind"], scope="module")
    else:
        metafunc.parametrize("kind", KINDS, indirect=True, scope="module")


@pytest.fixture(scope="module")
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresHandle]:
    with start_postgres(tmp_path_factory.mktemp("pg")) as handle:
        yield handle


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedHandle]:
    with start_seaweed(tmp_path_factory.mktemp("weed"), buckets=[BUCKET]) as sw:
        yield sw


@pytest.fixture(scope="module")
def deployment_env(kind: str, pg: PostgresHandle, weed: SeaweedHandle,
                   tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What every process of the deployment is started with: its database, key file and
    blobs (TILDE_SERVER_BLOBS: a directory, or a bucket with its endpoint and profile)."""
    shared = tmp_path_factory.mktemp(f"shared-{kind}")
    env = {"TILDE_SERVER_DATABASE": pg.create_database(unique(f"multi_{kind}").replace("-", "_")),
           "TILDE_SERVER_SECRET_KEY_FILE": str(shared / "keys.json")}
    if kind == "bucket":
        env.update(weed.env(), TILDE_SERVER_BLOBS=f"s3://{BUCKET}/{unique('dep')}")
    else:
        env["TILDE_SERVER_BLOBS"] = str(shared / "blobs")
    return env


@pytest.fixture(scope="module")
def deployment(deployment_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[list[ServerHandle], str]]:
    """Two processes of one deployment, and where its blobs are (--blobs)."""
    servers = [start_server(tmp_path_factory.mktemp(name), ADMIN, extra_env=deployment_env)
               for name in ("a", "b")]
    yield servers, deployment_env["TILDE_SERVER_BLOBS"]
    for h in servers:
        stop_server(h)
        assert "Traceback" not in h.log(), h.log()


@pytest.fixture
def apis(deployment: tuple[list[ServerHandle], str]) -> Iterator[list[Api]]:
    with one_repo_on(deployment[0]) as out:
        yield out


def _log(api: Api) -> list[dict[str, Any]]:
    r = api.http.get(f"{api.R}/log", params={"amount": 1000})
    assert r.status_code == 200, r.text
    return list(r.json()["results"])


def test_what_one_process_writes_the_other_serves(apis: list[Api]) -> None:
    a, b = apis
    sid = a.session()
    a.put(sid, "data/from-a.bin", os.urandom(300_000))
    staged = a.read("data/from-a.bin", session_id=sid)
    assert b.read("data/from-a.bin", session_id=sid) == staged  # a staged read, on B
    cid = a.commit_ok(sid)
    assert _log(b)[0]["id"] == cid
    assert b.paths(prefix="data/") == ["data/from-a.bin"]
    assert b.read("data/from-a.bin") == staged
    # and back: B writes over it, A serves B's bytes
    sid = b.session()
    b.put(sid, "data/from-a.bin", b"rewritten by b")
    b.commit_ok(sid)
    assert a.read("data/from-a.bin") == b"rewritten by b"
    assert a.read("data/from-a.bin", ref=cid) == staged  # the older commit still reads


def test_concurrent_disjoint_commits_through_both_all_land(apis: list[Api]) -> None:
    n = 40
    before = len(_log(apis[0]))
    results: dict[int, httpx.Response] = {}

    def one(i: int) -> None:
        api = apis[i % 2]
        with httpx.Client(headers=api.http.headers, timeout=60) as http:
            sid = http.post(f"{api.R}/sessions").json()["session_id"]
            st = http.post(f"{api.R}/object/stage",
                           params={"session_id": sid, "path": f"d/{i:02d}"}).json()
            assert httpx.put(st["upload_url"], content=b"%d" % i, timeout=60).is_success
            body = {"physical_address": st["physical_address"], "signature": st["signature"],
                    "content_type": "application/octet-stream"}
            assert http.put(f"{api.R}/object/finalize", json=body, params={
                "session_id": sid, "path": f"d/{i:02d}",
                "expires_at": st["expires_at"]}).is_success
            results[i] = http.post(f"{api.R}/sessions/{sid}", json={"message": f"c{i}"})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(n))
    assert all(r.status_code == 200 for r in results.values()), \
        [r.text for r in results.values() if r.status_code != 200]
    log = _log(apis[1])
    assert len(log) == before + n
    assert len({c["id"] for c in log}) == len(log)
    for api in apis:
        assert api.paths(prefix="d/") == [f"d/{i:02d}" for i in range(n)]
    assert {apis[i % 2].read(f"d/{i:02d}") for i in range(n)} == {b"%d" % i for i in range(n)}
    assert {c["message"] for c in log[:n]} == {f"c{i}" for i in range(n)}


def test_same_path_from_both_gives_one_winner_and_409s(apis: list[Api]) -> None:
    sessions = []
    for i in range(8):  # every session based on the same head, four through each process
        api = apis[i % 2]
        sid = api.session()
        api.put(sid, "contested", b"writer %d" % i)
        sessions.append((api, sid, i))
    answers: dict[int, httpx.Response] = {}
    go = threading.Barrier(len(sessions))

    def commit(api: Api, sid: str, i: int) -> None:
        with httpx.Client(headers=api.http.headers, timeout=60) as http:
            go.wait()
            answers[i] = http.post(f"{api.R}/sessions/{sid}", json={"message": f"w{i}"})

    threads = [threading.Thread(target=commit, args=s) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in answers.items() if r.status_code == 200]
    assert len(winners) == 1, {i: r.status_code for i, r in answers.items()}
    assert all(r.status_code == 409 and r.json()["code"] == "conflict"
               for i, r in answers.items() if i not in winners)
    for api in apis:
        assert api.read("contested") == b"writer %d" % winners[0]
    assert [c["message"] for c in _log(apis[0])].count(f"w{winners[0]}") == 1


def test_the_shared_blobs_hold_the_bytes_and_no_process_does(
        deployment: tuple[list[ServerHandle], str], apis: list[Api], weed: SeaweedHandle
        ) -> None:
    """The same bytes through each process: one blob file in a shared directory (content
    keyed); in a bucket one object per upload (upload keys: s3blobs.py 3.). Never a blob in
    a process's own --data."""
    servers, blobs = deployment
    a, b = apis
    payload = os.urandom(50_000)
    in_bucket = blobs.startswith("s3://")
    s3 = weed.client()
    prefix = blobs.split("/", 3)[3] + "/" if in_bucket else ""

    def bucket_keys() -> set[str]:
        return {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=prefix) for o in page.get("Contents", [])}

    before = bucket_keys() if in_bucket else set()
    for api in (a, b):
        sid = api.session()
        api.put(sid, f"same-{api.server.endpoint[-5:]}", payload)
        api.commit_ok(sid)
    if in_bucket:
        added = bucket_keys() - before
        assert len(added) == 2 and all("/u-" in k for k in added), added
        for k in added:
            assert s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() == payload
    else:
        key = hashlib.sha256(payload).hexdigest()
        assert (Path(blobs) / key[:2] / key[2:]).read_bytes() == payload
    assert not any(list((h.data_dir / "blobs").glob("??/*")) for h in servers)


@pytest.mark.parametrize("point", cp.BACKGROUND)
def test_import_of_a_killed_process_is_taken_over_and_commits_once(
        deployment_env: dict[str, str], deployment: tuple[list[ServerHandle], str],
        tmp_path: Path, point: str) -> None:
    """A process SIGKILLed in the middle of an import (all staged; inside the commit's
    transaction): another process takes the job over when its lease runs out and commits
    it, once."""
    env = {**deployment_env, "TILDE_SERVER_IMPORT_LEASE": "2"}
    dying = start_server(tmp_path / "dying", ADMIN,
                         extra_env={**env, "TILDE_SERVER_CRASH_AT": point})
    heir = start_server(tmp_path / "heir", ADMIN, extra_env=env)
    source, dest = RepoRef(unique("org"), "source"), None
    on_heir = Api(heir, source)
    on_dying = None
    try:
        assert on_heir.http.post(f"{on_heir.base}/organizations", json={
            "name": source.org, "display_name": source.org}).status_code == 201
        for name in ("source", "dest"):
            assert on_heir.http.post(f"{on_heir.base}/organizations/{source.org}/repositories",
                                     json={"name": name}).status_code == 201
        sid = on_heir.session()
        files = {f"d/{i:02d}.txt": b"file %d" % i for i in range(20)}
        for p, data in files.items():
            on_heir.put(sid, p, data)
        on_heir.commit_ok(sid)
        dest = RepoRef(source.org, "dest")
        on_dying = Api(dying, dest)
        r = on_dying.http.post(f"{on_dying.R}/import", json={
            "source_organization": source.org, "source_repository": "source",
            "destination_path": "copy/", "commit_message": "the one import"})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert dying.proc.wait(timeout=60) == -9  # SIGKILL at the crash point
        assert f"crash point {point} hit" in dying.log()
        heir_dest = Api(heir, dest)
        deadline = time.monotonic() + 60
        while (job := heir_dest.http.get(f"{heir_dest.R}/import/{job_id}").json())[
                "status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["status"] == "completed" and job["objects_imported"] == 20, job
        messages = [c["message"] for c in _log(heir_dest)]
        assert messages.count("the one import") == 1, messages
        assert heir_dest.paths(prefix="copy/") == sorted("copy/" + p for p in files)
        assert heir_dest.read("copy/d/07.txt") == b"file 7"
        # taken over by exactly one survivor: the heir, or one of the deployment's others
        takers = [h for h in (heir, *deployment[0]) if f"import {job_id}: lease expired" in
                  h.log()]
        assert len(takers) == 1, [h.endpoint for h in takers]
        heir_dest.close()
    finally:
        on_heir.close()
        if on_dying is not None:
            on_dying.close()
        stop_server(heir)
        if dying.proc.poll() is None:
            stop_server(dying)
    assert "Traceback" not in heir.log(), heir.log()


def test_a_process_killed_mid_upload_or_mid_commit_loses_nothing_acknowledged(
        deployment_env: dict[str, str], deployment: tuple[list[ServerHandle], str],
        tmp_path: Path, point: str) -> None:
    """What the dying process acknowledged is served by the survivor; what it did not is
    either all there or not at all, and a client that retries through the survivor (and
    looks before it repeats a commit: a lost answer is not a failure) ends with exactly one
    commit holding every byte."""
    arm = tmp_path / "crash-at"
    arm.write_text("")  # disarmed until the request that is to die
    dying = start_server(tmp_path / "dying", ADMIN,
                         extra_env={**deployment_env, "TILDE_SERVER_CRASH_AT": f"@{arm}"})
    survivor = deployment[0][1]
    ref = RepoRef(unique("org"), unique("repo"))
    d, s = Api(dying, ref), Api(survivor, ref)
    try:
        assert s.http.post(f"{s.base}/organizations",
                           json={"name": ref.org, "display_name": ref.org}).status_code == 201
        assert s.http.post(f"{s.base}/organizations/{ref.org}/repositories",
                           json={"name": ref.repo}).status_code == 201
        sid = d.session()
        acked, inflight = os.urandom(100_000), os.urandom(150_000)
        d.put(sid, "acked.bin", acked)  # answered: must never be lost
        q = {"session_id": sid, "path": "inflight.bin"}
        up = d.http.put(f"{d.R}/object", params=q).json()
        commit_phase = point.startswith("commit.")
        if commit_phase:
            assert d.http.put(up["upload_url"], content=inflight).status_code == 200
            assert d.http.post(f"{d.R}/object/finalize", params=q,
                               json={"upload_token": up["upload_token"]}).status_code == 201
        arm.write_text(point)
        with pytest.raises(httpx.TransportError):
            if point == cp.UPLOAD_SYNCED:
                d.http.put(up["upload_url"], content=inflight)
            elif commit_phase:
                d.commit(sid, "the one commit")
            else:
                assert d.http.put(up["upload_url"], content=inflight).status_code == 200
                d.http.post(f"{d.R}/object/finalize", params=q,
                            json={"upload_token": up["upload_token"]})
        assert dying.proc.wait(timeout=30) == -9
        assert f"crash point {point} hit" in dying.log()

        # the survivor: acknowledged bytes are there, the session as the crash left it
        log = [c["message"] for c in _log(s)]
        if point == cp.COMMIT_AFTER_DB_COMMIT:
            assert log.count("the one commit") == 1  # it landed; the answer was lost
        else:
            assert "the one commit" not in log
            assert s.read("acked.bin", session_id=sid) == acked
            staged = [c["path"] for c in s.http.get(
                f"{s.R}/changes", params={"session_id": sid}).json()["results"]]
            if point == cp.FINALIZE_CURRENT_ADOPTED:  # inside the transaction: not staged
                assert staged == ["acked.bin"]
            elif point == cp.FINALIZE_CURRENT_COMMITTED or commit_phase:
                assert staged == ["acked.bin", "inflight.bin"]
                assert s.read("inflight.bin", session_id=sid) == inflight
            # the client's retry through the survivor: the bytes again if they never got
            # recorded, finalize unless the object is staged, then the commit
            if "inflight.bin" not in staged:
                url = up["upload_url"].replace(dying.endpoint, survivor.endpoint)
                if point == cp.UPLOAD_SYNCED:
                    assert httpx.put(url, content=inflight, timeout=10).status_code == 200
                r = s.http.post(f"{s.R}/object/finalize", params=q,
                                json={"upload_token": up["upload_token"]})
                assert r.status_code == 201, r.text
            s.commit_ok(sid, "the one commit")
        assert [c["message"] for c in _log(s)].count("the one commit") == 1
        assert s.read("acked.bin") == acked and s.read("inflight.bin") == inflight
        assert deployment[0][0].endpoint != survivor.endpoint
        assert Api(deployment[0][0], ref).read("inflight.bin") == inflight  # and the other
    finally:
        d.close()
        s.close()
        if dying.proc.poll() is None:
            stop_server(dying)


def test_an_upload_may_be_finalized_and_completed_on_another_process(apis: list[Api]) -> None:
    """Behind a load balancer every request of an upload may reach another process: bytes
    PUT through one, finalized through the other; multipart parts through both, completed
    through either. (Each process's spools are its own: the bytes become shared blobs as
    they are recorded, engine subtlety 14.)"""
    a, b = apis
    sid = a.session()
    data = os.urandom(70_000)
    q = {"session_id": sid, "path": "single.bin"}
    up = a.http.put(f"{a.R}/object", params=q).json()
    url = up["upload_url"].replace(a.server.endpoint, b.server.endpoint)
    assert httpx.put(url, content=data, timeout=10).status_code == 200  # bytes to B
    r = a.http.post(f"{a.R}/object/finalize", params=q,  # finalized on A
                    json={"upload_token": up["upload_token"]})
    assert r.status_code == 201, r.text
    mq = {"session_id": sid, "path": "multi.bin"}
    mp = a.http.post(f"{a.R}/object/multipart", params=mq).json()
    parts, done = [os.urandom(5 << 20), os.urandom(1000)], []
    for n, (api, part) in enumerate(zip((a, b), parts, strict=True), start=1):
        r = api.http.get(f"{api.R}/object/multipart/part",
                         params={**mq, "upload_id": mp["upload_id"], "part_number": n})
        put = httpx.put(r.json()["upload_url"], content=part, timeout=30)
        assert put.status_code == 200, put.text
        done.append({"part_number": n, "etag": put.headers["ETag"]})
    r = b.http.post(f"{b.R}/object/multipart/complete", params=mq, json={
        "upload_id": mp["upload_id"], "upload_token": mp["upload_token"], "parts": done})
    assert r.status_code == 201, r.text
    cid = b.commit_ok(sid)
    assert _log(a)[0]["id"] == cid
    assert a.read("single.bin") == data and a.read("multi.bin") == b"".join(parts)


def test_a_paused_import_owner_that_comes_back_does_not_commit_twice(
        deployment_env: dict[str, str], deployment: tuple[list[ServerHandle], str],
        tmp_path: Path) -> None:
    """The import's owner hangs (SIGSTOP at import.staged, every object staged) for longer
    than its lease: another process takes the job over and commits it. When the owner comes
    back (SIGCONT) it finds its lease gone at its own commit and drops its work: one commit,
    one completed job (imports.py 6.)."""
    env = {**deployment_env, "TILDE_SERVER_IMPORT_LEASE": "2"}
    slow = start_server(tmp_path / "slow", ADMIN,
                        extra_env={**env, "TILDE_SERVER_PAUSE_AT": cp.IMPORT_STAGED})
    other = start_server(tmp_path / "other", ADMIN, extra_env=env)
    ref = RepoRef(unique("org"), "source")
    o = Api(other, ref)
    try:
        assert o.http.post(f"{o.base}/organizations", json={"name": ref.org}).status_code == 201
        for name in ("source", "dest"):
            assert o.http.post(f"{o.base}/organizations/{ref.org}/repositories",
                               json={"name": name}).status_code == 201
        sid = o.session()
        for i in range(10):
            o.put(sid, f"f{i}.txt", b"file %d" % i)
        o.commit_ok(sid)
        dest = Api(slow, RepoRef(ref.org, "dest"))
        r = dest.http.post(f"{dest.R}/import", json={
            "source_organization": ref.org, "source_repository": "source",
            "destination_path": "copy/", "commit_message": "the import"})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        deadline = time.monotonic() + 30
        while "pause point import.staged hit" not in slow.log():
            assert time.monotonic() < deadline, slow.log()
            time.sleep(0.1)
        on_other = Api(other, RepoRef(ref.org, "dest"))
        deadline = time.monotonic() + 60
        while on_other.http.get(f"{on_other.R}/import/{job_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        slow.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 30
        while "this run's work is dropped" not in slow.log():
            assert time.monotonic() < deadline, slow.log()
            time.sleep(0.1)
        assert [c["message"] for c in _log(on_other)].count("the import") == 1
        job = on_other.http.get(f"{on_other.R}/import/{job_id}").json()
        assert job["status"] == "completed" and job["objects_imported"] == 10, job
        assert on_other.paths(prefix="copy/") == sorted(f"copy/f{i}.txt" for i in range(10))
        on_other.close()
        dest.close()
    finally:
        o.close()
        if slow.proc.poll() is None:
            slow.proc.send_signal(signal.SIGCONT)
        stop_server(slow)
        stop_server(other)
    for h in (slow, other):
        assert "Traceback" not in h.log(), h.log()
