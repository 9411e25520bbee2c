"""Secrets (spec 2.14), connectors (2.15) and imports (2.16) against the real server, with a
real local S3 server (moto, started by tests/conftest.py) and a real directory."""

from __future__ import annotations

import hashlib
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serverapi import Api, RepoRef, ServerHandle, _root, assert_error, make_api, unique

S3Handle = _root.S3Handle


@pytest.fixture
def api(server: ServerHandle, repo_ref: RepoRef) -> Iterator[Api]:
    yield from make_api(server, repo_ref)


def data_dir_bytes(server: ServerHandle) -> bytes:
    """Every byte of every file of the server's data directory (db, WAL, keys, blobs), and
    of its PostgreSQL database when the run has one."""
    from postgres import RUN

    files = b"".join(p.read_bytes() for p in sorted(server.data_dir.rglob("*")) if p.is_file())
    return files + RUN.dump(server.data_dir)


# ============================================================================ secrets
def test_secret_lifecycle_and_upsert(api: Api) -> None:
    S = f"{api.R}/secrets"
    assert api.http.get(S).json() == {"results": []}
    r = api.http.put(f"{S}/DB_PASSWORD", json={"value": "first-value"})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["key"] == "DB_PASSWORD" and "value" not in first
    assert first["created_by_type"] == "user" and first["created_by"]
    time.sleep(0.01)
    r = api.http.put(f"{S}/DB_PASSWORD", json={"value": "second-value"})
    assert r.status_code == 200
    second = r.json()
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] > first["updated_at"]
    r = api.http.get(f"{S}/DB_PASSWORD")
    assert r.status_code == 200 and r.json()["value"] == "second-value"
    assert r.headers["cache-control"] == "no-store"
    api.http.put(f"{S}/A_TOKEN", json={"value": "tok"})
    listed = api.http.get(S).json()["results"]
    assert [x["key"] for x in listed] == ["A_TOKEN", "DB_PASSWORD"]
    assert all("value" not in x for x in listed), listed
    assert api.http.delete(f"{S}/A_TOKEN").status_code == 204
    assert_error(api.http.get(f"{S}/A_TOKEN"), 404)
    assert_error(api.http.delete(f"{S}/A_TOKEN"), 404)
    assert [x["key"] for x in api.http.get(S).json()["results"]] == ["DB_PASSWORD"]


def test_secret_values_are_not_stored_or_logged_in_plaintext(api: Api,
                                                             server: ServerHandle) -> None:
    value = "plaintext-canary-" + uuid.uuid4().hex
    name = "CANARY_" + uuid.uuid4().hex[:8]
    assert api.http.put(f"{api.R}/secrets/{name}", json={"value": value}).status_code == 200
    assert api.http.get(f"{api.R}/secrets/{name}").json()["value"] == value
    listing = api.http.get(f"{api.R}/secrets").text
    assert value not in listing and name in listing
    raw = data_dir_bytes(server)
    assert name.encode() in raw  # names are plain: the grep does see the database
    assert value.encode() not in raw
    assert value not in server.log()
    from postgres import RUN

    key_file = RUN.env(server.data_dir).get("TILDE_SERVER_SECRET_KEY_FILE")
    key = Path(key_file) if key_file else server.data_dir / "secret.key"
    assert key.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("name", "body"), [
    ("1BAD", {"value": "x"}),
    ("has.dot", {"value": "x"}),
    ("OK", {}),
    ("OK", {"value": ""}),
    ("OK", {"value": 5}),
    ("OK", {"value": None}),
    ("OK", ["value"]),
    ("OK", {"value": "x" * (64 * 1024 + 1)}),
])
def test_bad_secret_input_is_400_and_changes_nothing(api: Api, name: str, body: Any) -> None:
    r = api.http.put(f"{api.R}/secrets/{name}", json=body)
    assert_error(r, 400)
    assert api.http.get(f"{api.R}/secrets").json() == {"results": []}


def test_secrets_of_unknown_repo_or_agent_are_404(api: Api) -> None:
    base = f"{api.base}/organizations/{api.org}"
    assert_error(api.http.get(f"{base}/repositories/nope/secrets"), 404)
    assert_error(api.http.put(f"{base}/repositories/nope/secrets/X", json={"value": "v"}), 404)
    assert_error(api.http.get(f"{base}/agents/no-such-agent/secrets"), 404)


def test_agent_secrets(api: Api) -> None:
    org_url = f"{api.base}/organizations/{api.org}"
    r = api.http.post(f"{org_url}/agents", json={"name": "bot-1", "description": ""})
    assert r.status_code == 201, r.text
    S = f"{org_url}/agents/bot-1/secrets"
    assert api.http.get(S).json() == {"results": []}
    assert api.http.put(f"{S}/TOKEN", json={"value": "agent-value"}).status_code == 200
    assert api.http.put(f"{api.R}/secrets/TOKEN", json={"value": "repo-value"}).status_code \
        == 200
    assert [x["key"] for x in api.http.get(S).json()["results"]] == ["TOKEN"]
    assert api.http.get(f"{S}/TOKEN").json()["value"] == "agent-value"
    assert api.http.get(f"{api.R}/secrets/TOKEN").json()["value"] == "repo-value"
    assert_error(api.http.put(f"{S}/bad.name", json={"value": "v"}), 400)
    assert api.http.delete(f"{S}/TOKEN").status_code == 204
    assert api.http.get(S).json() == {"results": []}
    assert api.http.get(f"{api.R}/secrets/TOKEN").json()["value"] == "repo-value"


def test_secret_environment_for_sandboxes(server: ServerHandle, tmp_path: Path) -> None:
    """The store function sandboxes use: decrypted repository secrets as env variables."""
    from tilde_server.store import Principal, Store

    store, _ = Store.open(tmp_path / "d", "tk-x")
    try:
        store.create_org("o1", "")
        who = Principal("u", "admin")
        store.create_repo("o1", "r1", {}, who)
        store.secrets.put(store.secrets.repo_scope("o1", "r1"), "API_TOKEN", "v1", who)
        store.secrets.put(store.secrets.repo_scope("o1", "r1"), "OTHER", "v2", who)
        assert store.secrets.environment_for("o1", "r1") == {"API_TOKEN": "v1", "OTHER": "v2"}
    finally:
        store.close()
    # Sealed values need the key: a data directory without it refuses to start.
    (tmp_path / "d" / "secret.key").unlink()
    from tilde_server.store import DataDirError

    with pytest.raises(DataDirError, match=r"secret\.key"):
        Store.open(tmp_path / "d")


# ============================================================================ connectors
def s3_conn_body(s3: Any, bucket: str, name: str | None = None, **config: Any) -> dict[str, Any]:
    cfg = {"bucket": bucket, "region": "us-east-1", "endpoint": s3.endpoint,
           "access_key_id": s3.access_key, "secret_access_key": s3.secret_key, **config}
    return {"name": name or unique("conn"), "type": "s3", "source_uri": "", "config": cfg}


def make_bucket(s3: Any, objects: dict[str, bytes]) -> str:
    bucket = unique("bkt")
    c = s3.client()
    c.create_bucket(Bucket=bucket)
    for key, data in objects.items():
        c.put_object(Bucket=bucket, Key=key, Body=data)
    return bucket


def create_connector(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    r = api.http.post(f"{api.base}/organizations/{api.org}/connectors", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def attach(api: Api, cid: str) -> None:
    r = api.http.post(f"{api.R}/connectors", json={"connector_id": cid})
    assert r.status_code in (200, 201, 204), r.text


def start(api: Api, **body: Any) -> str:
    r = api.http.post(f"{api.R}/import", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert isinstance(job_id, str) and job_id
    return job_id


def wait_job(api: Api, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = api.http.get(f"{api.R}/import/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if job["status"] in ("completed", "failed"):
            return job
        assert job["status"] in ("pending", "running"), job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def log_ids(api: Api) -> list[str]:
    return [c["id"] for c in api.http.get(f"{api.R}/log").json()["results"]]


def listing(api: Api, **params: Any) -> list[dict[str, Any]]:
    return [x for x in api.ls(amount=1000, **params)["results"] if x["type"] == "object"]


def test_connector_crud_never_returns_config(api: Api, s3: Any, server: ServerHandle) -> None:
    C = f"{api.base}/organizations/{api.org}/connectors"
    body = s3_conn_body(s3, "some-bucket", name="my-s3", prefix="datasets/")
    body["config"]["secret_access_key"] = "sk-canary-" + uuid.uuid4().hex
    conn = create_connector(api, body)
    assert set(conn) == {"id", "name", "type", "source_uri", "disabled", "public_key",
                         "created_at"}
    assert conn["name"] == "my-s3" and conn["type"] == "s3"
    assert conn["source_uri"] == "s3://some-bucket/datasets/"
    assert conn["disabled"] is False and conn["public_key"] is None
    uuid.UUID(conn["id"])
    assert api.http.get(f"{C}/{conn['id']}").json() == conn
    assert api.http.get(C).json() == {"results": [conn]}
    assert_error(api.http.post(C, json=body), 409)  # same name
    secret = body["config"]["secret_access_key"]
    assert secret.encode() not in data_dir_bytes(server)
    assert secret not in server.log()
    assert api.http.get(f"{api.R}/connectors").json() == {"results": []}
    attach(api, conn["id"])
    assert api.http.get(f"{api.R}/connectors").json() == {"results": [conn]}
    assert_error(api.http.post(f"{api.R}/connectors", json={"connector_id": conn["id"]}), 409)
    assert api.http.delete(f"{api.R}/connectors/{conn['id']}").status_code == 204
    assert_error(api.http.delete(f"{api.R}/connectors/{conn['id']}"), 404)
    assert api.http.get(f"{api.R}/connectors").json() == {"results": []}


@pytest.mark.parametrize("body", [
    {"name": "x", "type": "ftp", "source_uri": "", "config": {}},
    {"name": "x", "type": "gcs", "source_uri": "gs://b/", "config": {}},
    {"name": "x", "type": "s3", "source_uri": "", "config": {}},
    {"name": "x", "type": "s3", "source_uri": "", "config": {"bucket": "b", "access_key_id": "a"}},
    {"name": "x", "type": "s3", "source_uri": "", "config": "bucket=b"},
    {"name": "x", "type": "s3", "source_uri": "", "config": {"bucket": 5}},
    {"name": "x", "type": "s3", "source_uri": "s3://a/", "config": {"bucket": "b"}},
    {"name": "x", "type": "s3", "source_uri": "http://a/", "config": {"bucket": "b"}},
    {"name": "x", "type": "s3", "source_uri": "", "config": {"bucket": "b", "typo": "1"}},
    {"name": "x", "type": "s3", "source_uri": "", "config": {"bucket": "b", "endpoint": "x"}},
    {"name": "", "type": "s3", "source_uri": "s3://b/", "config": {}},
    {"type": "s3", "source_uri": "s3://b/", "config": {}},
    {"name": "x", "source_uri": "s3://b/", "config": {}},
    {"name": "x", "type": "local", "source_uri": "", "config": {}},
    {"name": "x", "type": "local", "source_uri": "", "config": {"path": "relative/dir"}},
    {"name": "x", "type": "local", "source_uri": "", "config": {"path": "/etc"}},
    {"name": "x", "type": "local", "source_uri": "file:///etc/", "config": {}},
])
def test_bad_connector_input_is_400_and_changes_nothing(api: Api, body: Any) -> None:
    C = f"{api.base}/organizations/{api.org}/connectors"
    assert_error(api.http.post(C, json=body), 400)
    assert api.http.get(C).json() == {"results": []}


def test_malformed_and_unknown_connector_ids(api: Api) -> None:
    C = f"{api.base}/organizations/{api.org}/connectors"
    assert_error(api.http.get(f"{C}/not-a-uuid"), 400, "invalid_id")
    assert_error(api.http.get(f"{C}/{uuid.uuid4()}"), 404)
    assert_error(api.http.delete(f"{C}/{uuid.uuid4()}"), 404)
    assert_error(api.http.post(f"{api.R}/connectors", json={"connector_id": "zzz"}), 400)
    assert_error(api.http.post(f"{api.R}/connectors", json={"connector_id": str(uuid.uuid4())}),
                 404)
    assert_error(api.http.post(f"{api.R}/connectors", json={}), 400)
    assert_error(api.http.post(f"{api.R}/import", json={"connector_id": "zzz",
                                                         "destination_path": ""}), 400)
    assert_error(api.http.get(f"{api.R}/import/not-a-uuid"), 400)
    assert_error(api.http.get(f"{api.R}/import/{uuid.uuid4()}"), 404)
    assert api.http.get(f"{api.R}/connectors").json() == {"results": []}


def test_disabled_is_423_and_deleted_is_410(api: Api, s3: Any) -> None:
    C = f"{api.base}/organizations/{api.org}/connectors"
    bucket = make_bucket(s3, {"a.txt": b"a"})
    conn = create_connector(api, s3_conn_body(s3, bucket))
    attach(api, conn["id"])
    r = api.http.patch(f"{C}/{conn['id']}", json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert api.http.get(f"{C}/{conn['id']}").json()["disabled"] is True
    assert_error(api.http.post(f"{api.R}/import", json={"connector_id": conn["id"],
                                                         "destination_path": "x/"}),
                 423, "connector_disabled")
    other = _other_repo(api)
    assert_error(api.http.post(f"{other}/connectors", json={"connector_id": conn["id"]}), 423)
    assert_error(api.http.patch(f"{C}/{conn['id']}", json={"disabled": "no"}), 400)
    assert api.http.patch(f"{C}/{conn['id']}", json={"disabled": False}).json()["disabled"] is False
    assert api.http.delete(f"{C}/{conn['id']}").status_code == 204
    assert_error(api.http.get(f"{C}/{conn['id']}"), 410, "connector_deleted")
    assert_error(api.http.delete(f"{C}/{conn['id']}"), 410)
    assert_error(api.http.post(f"{api.R}/import", json={"connector_id": conn["id"],
                                                         "destination_path": "x/"}), 410)
    assert_error(api.http.post(f"{api.R}/connectors", json={"connector_id": conn["id"]}), 410)
    assert api.http.get(C).json() == {"results": []}
    assert api.http.get(f"{api.R}/connectors").json() == {"results": []}
    # The name is free again.
    create_connector(api, {**s3_conn_body(s3, bucket), "name": conn["name"]})
    assert log_ids(api) == []


def _other_repo(api: Api) -> str:
    name = unique("repo")
    r = api.http.post(f"{api.base}/organizations/{api.org}/repositories", json={"name": name})
    assert r.status_code == 201
    return f"{api.base}/organizations/{api.org}/repositories/{name}"


def test_s3_credentials_required_unless_the_operator_lends_the_servers() -> None:
    from tilde_server.store import BadRequest
    from tilde_server.store.sources import SourceSettings, normalize_config

    with pytest.raises(BadRequest, match="access_key_id"):
        normalize_config("s3", "", {"bucket": "b"}, SourceSettings())
    uri, cfg = normalize_config("s3", "", {"bucket": "b", "region": "eu-west-1"},
                                SourceSettings(s3_ambient_credentials=True))
    assert uri == "s3://b/" and cfg == {"bucket": "b", "prefix": "", "region": "eu-west-1"}
    with pytest.raises(BadRequest, match="disabled"):
        normalize_config("local", "", {"path": "/tmp"}, SourceSettings())


# ============================================================================ imports
def test_s3_import_is_one_commit_with_source_metadata(api: Api, s3: Any) -> None:
    big = bytes(range(256)) * (12 * 1024)  # 3 MiB: several chunks
    objects = {"data/a.csv": b"x,y\n1,2\n", "data/sub/b.json": b'{"k": 1}', "data/big.bin": big,
               "data/empty.txt": b"", "data/dir/": b"", "elsewhere/c.txt": b"no"}
    bucket = make_bucket(s3, objects)
    conn = create_connector(api, s3_conn_body(s3, bucket))
    attach(api, conn["id"])
    sid = api.session()
    api.put(sid, "keep.txt", b"untouched")
    api.commit_ok(sid)
    before = log_ids(api)
    job_id = start(api, connector_id=conn["id"], destination_path="imported",
                   source_prefix="data/", commit_message="bring data in")
    job = wait_job(api, job_id)
    assert job["status"] == "completed", job
    assert job["objects_imported"] == 4 and job["error"] == ""
    assert job["id"] == job_id and job["connector_id"] == conn["id"]
    assert job["source_prefix"] == "data/" and job["destination_path"] == "imported/"
    assert job["commit_message"] == "bring data in" and job["repository_id"]
    after = log_ids(api)
    assert after[1:] == before and after[0] == job["commit_id"]  # exactly one new commit
    commit = api.http.get(f"{api.R}/commits/{job['commit_id']}").json()
    assert commit["message"] == "bring data in"
    entries = {x["path"]: x["entry"] for x in listing(api)}
    assert sorted(entries) == ["imported/a.csv", "imported/big.bin", "imported/empty.txt",
                               "imported/sub/b.json", "keep.txt"]
    assert "source_metadata" not in entries["keep.txt"]
    for path, e in entries.items():
        if path == "keep.txt":
            continue
        key = "data/" + path.removeprefix("imported/")
        sm = e["source_metadata"]
        assert sm["connector_id"] == conn["id"] and sm["connector_type"] == "s3"
        assert sm["source_path"] == f"s3://{bucket}/{key}"
        assert sm["source_etag"] == hashlib.md5(objects[key]).hexdigest()
        assert sm["import_job_id"] == job_id and sm["import_time"].endswith("Z")
        assert isinstance(sm["version_id"], str)
        assert e["size"] == len(objects[key]) and e["e_tag"] == sm["source_etag"]
        assert api.read(path) == objects[key]
    assert entries["imported/a.csv"]["content_type"] == "text/csv"
    # Source metadata also shows in a session's view and in a delimiter listing.
    sid = api.session()
    seen = api.http.get(f"{api.R}/objects", params={"session_id": sid, "prefix": "imported/",
                                                    "delimiter": "/"}).json()["results"]
    assert {x["path"] for x in seen} == {"imported/a.csv", "imported/big.bin",
                                         "imported/empty.txt", "imported/sub/"}
    assert all(x["entry"]["source_metadata"]["import_job_id"] == job_id
               for x in seen if x["type"] == "object")


def test_s3_import_source_uri_prefix_and_errors(api: Api, s3: Any) -> None:
    bucket = make_bucket(s3, {"p/one.txt": b"1", "p/two/three.txt": b"3", "q.txt": b"q"})
    conn = create_connector(api, s3_conn_body(s3, bucket))
    # Not attached yet: 409, no job.
    assert_error(api.http.post(f"{api.R}/import", json={"connector_id": conn["id"],
                                                         "destination_path": ""}),
                 409, "connector_not_attached")
    attach(api, conn["id"])
    # A full URI outside the connector's bucket is 400.
    assert_error(api.http.post(f"{api.R}/import", json={
        "connector_id": conn["id"], "destination_path": "", "source_prefix": "s3://other/p/"}),
        400, "invalid_source")
    assert_error(api.http.post(f"{api.R}/import", json={
        "connector_id": conn["id"], "destination_path": "../x"}), 400)
    assert_error(api.http.post(f"{api.R}/import", json={"destination_path": ""}), 400)
    assert log_ids(api) == []
    job = wait_job(api, start(api, connector_id=conn["id"], destination_path="",
                              source_prefix=f"s3://{bucket}/p/"))
    assert job["status"] == "completed" and job["objects_imported"] == 2, job
    assert sorted(x["path"] for x in listing(api)) == ["one.txt", "two/three.txt"]
    # A prefix that matches nothing completes with no commit.
    job = wait_job(api, start(api, connector_id=conn["id"], destination_path="x/",
                              source_prefix="nothing-here/"))
    assert job["status"] == "completed" and job["objects_imported"] == 0
    assert job["commit_id"] == ""
    assert len(log_ids(api)) == 1


def test_import_from_missing_bucket_fails_with_reason(api: Api, s3: Any) -> None:
    conn = create_connector(api, s3_conn_body(s3, unique("missing")))
    attach(api, conn["id"])
    job = wait_job(api, start(api, connector_id=conn["id"], destination_path="x/"))
    assert job["status"] == "failed" and "NoSuchBucket" in job["error"], job
    assert job["commit_id"] == ""
    assert log_ids(api) == []


def test_local_directory_import(api: Api, connector_root: Path) -> None:
    src = connector_root / unique("src")
    (src / "sub" / "deeper").mkdir(parents=True)
    files = {"top.txt": b"top", "sub/mid.csv": b"m,n\n", "sub/deeper/low.bin": b"\x00" * 70000}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    (src / "link-out").symlink_to("/etc/hostname")  # leads outside the allowed root
    conn = create_connector(api, {"name": unique("local"), "type": "local",
                                  "source_uri": "", "config": {"path": str(src)}})
    assert conn["type"] == "local" and conn["source_uri"] == f"file://{src.resolve()}/"
    attach(api, conn["id"])
    job = wait_job(api, start(api, connector_id=conn["id"], destination_path="local/",
                              source_prefix="sub/"))
    assert job["status"] == "completed" and job["objects_imported"] == 2, job
    entries = {x["path"]: x["entry"] for x in listing(api)}
    assert sorted(entries) == ["local/deeper/low.bin", "local/mid.csv"]
    for path, e in entries.items():
        rel = "sub/" + path.removeprefix("local/")
        assert api.read(path) == files[rel]
        sm = e["source_metadata"]
        assert sm["connector_type"] == "local" and sm["connector_id"] == conn["id"]
        assert sm["source_path"] == f"file://{src.resolve()}/{rel}"
        assert sm["source_etag"] and sm["import_job_id"] == job["id"]
    # The whole directory: the symlink out of the root makes the import fail, nothing lands.
    job = wait_job(api, start(api, connector_id=conn["id"], destination_path="all/"))
    assert job["status"] == "failed" and "outside" in job["error"], job
    assert len(log_ids(api)) == 1
    (src / "link-out").unlink()
    job = wait_job(api, start(api, connector_id=conn["id"], destination_path="all/"))
    assert job["status"] == "completed" and job["objects_imported"] == 3, job
    assert len(log_ids(api)) == 2


def test_import_from_another_repository(api: Api) -> None:
    sid = api.session()
    for p, d in {"d/x.txt": b"x", "d/y/z.txt": b"z", "top.txt": b"t"}.items():
        api.put(sid, p, d)
    source_commit = api.commit_ok(sid)
    other = _other_repo(api)
    name = other.rsplit("/", 1)[1]
    r = api.http.post(f"{other}/import", json={
        "source_organization": api.org, "source_repository": api.repo,
        "destination_path": "copy/", "source_prefix": "d/"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 30
    while (job := api.http.get(f"{other}/import/{job_id}").json())["status"] not in (
            "completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["status"] == "completed" and job["objects_imported"] == 2, job
    assert job["source_organization"] == api.org and job["source_repository"] == api.repo
    assert job["source_repository_id"]
    res = api.http.get(f"{other}/objects", params={"amount": 100}).json()["results"]
    assert [x["path"] for x in res] == ["copy/x.txt", "copy/y/z.txt"]
    sm = res[0]["entry"]["source_metadata"]
    assert sm["connector_type"] == "repository" and sm["version_id"] == source_commit
    assert sm["source_path"] == f"{api.org}/{api.repo}/d/x.txt"
    got = api.http.get(f"{other}/object", params={"path": "copy/y/z.txt"})
    assert got.content == b"z"
    assert_error(api.http.post(f"{other}/import", json={
        "source_organization": api.org, "source_repository": "nope",
        "destination_path": ""}), 404)
    assert_error(api.http.post(f"{other}/import", json={
        "source_organization": api.org, "source_repository": name,
        "connector_id": str(uuid.uuid4()), "destination_path": ""}), 400)


def test_job_interrupted_by_restart_ends_failed(tmp_path: Path) -> None:
    from tilde_server.store import Principal, Store

    store, _ = Store.open(tmp_path / "d", "tk-x")
    who = Principal("u", "admin")
    store.create_org("o1", "")
    store.create_repo("o1", "r1", {}, who)
    # A job that a crashed server left running, with a half-filled internal session.
    with store.db.write() as c:
        repo_id = c.execute("SELECT id FROM repos").fetchone()[0]
        sess = c.execute("INSERT INTO sessions(uid, repo_id, base_seq, state, created_by, "
                         "created_at) VALUES ('s-1', ?, 0, 'import', 'u', 'now') RETURNING id",
                         (repo_id,)).fetchone()[0]
        c.execute("INSERT INTO staged(session_id, path, op, blob, size, etag, content_type, "
                  "metadata, last_modified) VALUES (?, 'a', 'put', 'b', 1, 'e', 't', '{}', 'x')",
                  (sess,))
        job = str(uuid.uuid4())
        c.execute("INSERT INTO import_jobs(id, repo_id, connector_id, source_organization, "
                  "source_repository, source_prefix, destination_path, commit_message, status, "
                  "objects_imported, commit_id, error, session_uid, created_by_type, created_by, "
                  "created_at, updated_at) VALUES (?, ?, NULL, '', '', '', '', 'm', 'running', "
                  "3, '', '', 's-1', 'user', 'u', 'x', 'x')", (job, repo_id))
    store.db.close()  # a crash: no orderly shutdown of the import workers
    store, _ = Store.open(tmp_path / "d")
    try:
        got = store.imports.get("o1", "r1", job)
        assert got["status"] == "failed" and "restart" in got["error"], got
        with store.db.read() as c:
            assert c.execute("SELECT count(*) FROM staged").fetchone()[0] == 0
            assert c.execute("SELECT state FROM sessions WHERE uid = 's-1'").fetchone()[0] \
                == "rolled_back"
    finally:
        store.close()


def test_format_1_data_directory_is_migrated(tmp_path: Path) -> None:
    """A data directory written before secrets/connectors existed opens and gains them."""
    from tilde_server.store import Principal, Store

    store, _ = Store.open(tmp_path / "d", "tk-x")
    store.close()
    db = sqlite3.connect(tmp_path / "d" / "tilde.db")
    for t in ("secrets", "connectors", "repo_connectors", "import_jobs"):
        db.execute(f"DROP TABLE {t}")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    db.commit()
    db.close()
    (tmp_path / "d" / "secret.key").unlink()
    store, _ = Store.open(tmp_path / "d")
    try:
        store.create_org("o1", "")
        store.create_repo("o1", "r1", {}, Principal("u", "admin"))
        scope = store.secrets.repo_scope("o1", "r1")
        store.secrets.put(scope, "K", "v", Principal("u", "admin"))
        assert store.secrets.get(scope, "K")["value"] == "v"
    finally:
        store.close()
