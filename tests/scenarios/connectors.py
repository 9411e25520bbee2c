"""README "Connectors and Imports": an S3 connector, attached to the repository, one import.

The bucket `my-bucket` lives on the local S3 server the test session starts (moto), seeded by
tests/conftest.py with data/train.csv, data/test.csv, data/nested/more.csv and
other/ignored.txt. The test server lends its own S3 endpoint and credentials to connectors
whose config names none (--s3-endpoint, --s3-ambient-credentials), which is what lets the
README's config of just bucket and region work.

No official release has Organizations.connectors(org), a 3-argument Connectors.create, nor
Imports.start/status (spec 5.14); with CLIENT=official up to 0.7.6 the same steps run through
its own names: Organization.connectors, create(name, type, source_uri, config),
Imports.create_from_connector and Imports.get. The bundled client must run the README form.

From 0.7.7 (NEW_README) those are the README's own names, with keyword arguments, keys in the
config, a commit message, a polling loop with `job.refresh()`, and a cross-repository import.
Placeholders: the bucket's data lives under data/, not datasets/ (so source_uri
s3://my-bucket/ and source_prefix data/); the README's keys are accepted by the local S3 server
as any keys are; "other-org/source-data" is a second repository of the test organization.
"""

import time

from _common import (
    CLIENT,
    NEW_README,
    ORG_NAME,
    REPO,
    REPO_NAME,
    check_client,
    commit_files,
    done,
    log,
    printed,
)

import tilde

check_client()
repo = tilde.repository(REPO)
client = tilde.Client()
before = log(repo)

if NEW_README:
    org = tilde.organizations.get(ORG_NAME)
    with printed() as out:
        # --- README (0.7.7+) ------------------------------------------------------------
        connectors = org.connectors

        # S3
        conn = connectors.create(
            name="production-s3",
            type="s3",
            source_uri="s3://my-bucket/",
            config={
                "access_key_id": "AKIA...",
                "secret_access_key": "...",
                "region": "us-west-2",
            },
        )

        # Attach to a repo
        repo.connectors.attach(conn.id)
        for c in repo.connectors.list():
            print(c.name, c.type)
        # --- end of README --------------------------------------------------------------

        # --- README (0.7.7+): Import from a connector -----------------------------------
        import time

        job = repo.imports.create_from_connector(
            connector_id=conn.id,
            destination_path="imported/",
            source_prefix="data/",
            commit_message="Import production datasets",
        )

        while job.status not in ("completed", "failed"):
            time.sleep(2)
            job.refresh()
            print(job.status, job.objects_imported)

        if job.status == "completed":
            print(f"Import done! Commit: {job.commit_id}")
        # --- end of README --------------------------------------------------------------
    job_id = job.id
    assert out[0] == "production-s3 s3", out
    assert out[-1] == f"Import done! Commit: {job.commit_id}", (out, job.error)
    assert all(line.split()[0] in ("pending", "running", "completed") for line in out[1:-1])
    assert out[-2] == "completed 3", out
    assert (conn.name, conn.source_uri) == ("production-s3", "s3://my-bucket/"), conn
    assert repo.commits.get(job.commit_id).message == "Import production datasets"

    SOURCE = f"{REPO_NAME}-source"  # where the README writes "other-org/source-data"
    org.repositories.create(SOURCE)
    commit_files(tilde.repository(f"{ORG_NAME}/{SOURCE}"),
                 {"datasets/train/x.csv": b"x\n1\n", "datasets/test/y.csv": b"y\n"}, "data")
    # --- README (0.7.7+): Cross-repository imports ------------------------------------------
    job = repo.imports.create_from_repository(
        repo_path=f"{ORG_NAME}/{SOURCE}",
        destination_path="external/",
        source_prefix="datasets/train/",
        commit_message="Import training data",
    )
    # --- end of README ----------------------------------------------------------------------
    deadline = time.monotonic() + 60
    while job.status not in ("completed", "failed"):
        assert time.monotonic() < deadline, job.status
        time.sleep(0.1)
        job.refresh()
    assert (job.status, job.objects_imported, job.error) == ("completed", 1, ""), job
    head = log(repo)[0]
    assert head == (job.commit_id, "Import training data"), head
    with repo.session() as session:
        assert [e.path for e in session.objects.list(prefix="external/")] == ["external/x.csv"]
        with session.objects.get("external/x.csv") as f:
            assert f.read() == b"x\n1\n"
    import_commits = 2
elif CLIENT == "bundled":
    with printed() as out:
        # --- README ---------------------------------------------------------------------
        # Org-level connectors
        connectors = client.organizations.connectors(ORG_NAME)
        conn = connectors.create("my-s3", "s3", {"bucket": "my-bucket", "region": "us-east-1"})

        # Attach to repo
        repo.connectors.attach(conn.id)

        # Import
        job_id = repo.imports.start(
            connector_id=conn.id,
            source_path="s3://my-bucket/data/",
            destination_path="imported/",
        )
        status = repo.imports.status(job_id)
        print(status.status, status.objects_imported)
        # --- end of README --------------------------------------------------------------
else:
    with printed() as out:
        connectors = client.organizations.get(ORG_NAME).connectors
        conn = connectors.create("my-s3", "s3", "s3://my-bucket/",
                                 {"bucket": "my-bucket", "region": "us-east-1"})
        repo.connectors.attach(conn.id)
        job = repo.imports.create_from_connector(
            conn.id, "imported/", source_prefix="s3://my-bucket/data/")
        job_id = job.id
        status = repo.imports.get(job_id)
        print(status.status, status.objects_imported)

if not NEW_README:
    # What the README printed: the job as it stood right after the start.
    assert len(out) == 1, out
    first_status, _, first_count = out[0].partition(" ")
    assert first_status in ("pending", "running", "completed"), out
    assert first_count == "None" or first_count.isdigit(), out
    assert conn.name == "my-s3", conn.name
    import_commits = 1

# The connector: what the server keeps, never the config.
assert conn.type == "s3" and conn.source_uri == "s3://my-bucket/", (conn.type, conn.source_uri)
assert conn.disabled is False and conn.public_key is None
assert [c.id for c in connectors.list()] == [conn.id]
assert [c.id for c in repo.connectors.list()] == [conn.id]
assert not hasattr(conn, "config")

# Wait for the job (0.7.2 surface on both clients).
job = repo.imports.get(job_id)
deadline = time.monotonic() + 60
while job.status not in ("completed", "failed"):
    assert time.monotonic() < deadline, job.status
    time.sleep(0.1)
    job = job.refresh()
assert job.status == "completed", (job.status, job.error)
assert job.objects_imported == 3, job.objects_imported
assert job.connector_id == conn.id and job.destination_path == "imported/"
assert job.commit_id and job.error == "", (job.commit_id, job.error)

# One commit per import, the connector's holding every imported object with its provenance.
after = log(repo)
assert [c for c, _ in after[import_commits:]] == [c for c, _ in before], (before, after)
assert after[import_commits - 1][0] == job.commit_id, (after, job.commit_id)
expected = {"imported/train.csv": b"a,b\n1,2\n", "imported/test.csv": b"a,b\n3,4\n",
            "imported/nested/more.csv": b"a,b\n5,6\n"}
with repo.session() as session:
    entries = {e.path: e.entry for e in session.objects.list(prefix="imported/")}
    assert sorted(entries) == sorted(expected), sorted(entries)
    for path, entry in entries.items():
        sm = entry.source_metadata
        assert sm is not None, path
        key = "data/" + path.removeprefix("imported/")
        assert sm.connector_id == conn.id and sm.connector_type == "s3", sm
        assert sm.source_path == f"s3://my-bucket/{key}", sm
        assert sm.import_job_id == job_id and sm.import_time is not None, sm
        assert sm.source_etag == entry.e_tag, (sm, entry)
        with session.objects.get(path) as f:
            assert f.read() == expected[path], path

done("connectors")
