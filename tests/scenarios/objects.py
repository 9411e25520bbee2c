# ruff: noqa: SIM117  (the README nests its with-blocks; its lines stay as written)
"""README "Objects": put, streamed get, byte range, uncached iter_bytes, list, head, delete.

Official releases up to 0.7.6 also read with `presign=False` (a streamed read, never a
redirect); 0.7.7 removed the argument.

From 0.7.7 (NEW_README) the section is rewritten: writing from bytes, an open file and a Path,
a server-side copy, delete and delete_many; reading from a commit and in a session, head;
listing a commit's objects, and (README "Pagination") `page_size`. Its streaming and byte-range
examples are in large_objects.py and byte_ranges.py.
"""

import pathlib
import random

from _common import (
    CLIENT,
    NEW_README,
    REPO,
    check_client,
    commit_files,
    done,
    exists_at_head,
    log,
    official_since,
    printed,
    read_head,
)

import tilde

check_client()
repo = tilde.repository(REPO)

rng = random.Random(7)
parquet = rng.randbytes(49152)
large = rng.randbytes(3 * 1024 * 1024 + 5)
fixtures = {
    "data/file.csv": b"old content",
    "data/file.parquet": parquet,
    "data/large.bin": large,
    "data/sub/nested.txt": b"nested",
    "outside.txt": b"not under data/",
}
if NEW_README:  # what the 0.7.7 README deletes
    fixtures.update({"data/old.csv": b"old", "data/a.csv": b"a", "data/b.csv": b"b"})
commit_files(repo, fixtures, "fixtures")

if NEW_README:
    dataset = rng.randbytes(70_000)
    model = rng.randbytes(12_345)
    pathlib.Path("dataset.parquet").write_bytes(dataset)  # the harness's scratch directory
    pathlib.Path("model.bin").write_bytes(model)
    processed: list[str] = []

    def process(entry) -> None:  # the README's placeholder for the caller's own code
        processed.append(entry.path)

    # --- README (0.7.7+): Writing -------------------------------------------------------
    import pathlib

    with repo.session() as session:
        # From bytes
        session.objects.put("data/hello.txt", b"Hello, Tilde!")

        # From a file
        with open("dataset.parquet", "rb") as f:
            session.objects.put("data/dataset.parquet", f)

        # From a Path (opened/closed automatically)
        session.objects.put("data/model.bin", pathlib.Path("model.bin"))

        # Server-side copy (no download/upload)
        session.objects.copy("data/hello.txt", "data/hello-backup.txt")

        # Delete
        session.objects.delete("data/old.csv")
        session.objects.delete_many(["data/a.csv", "data/b.csv"])

        session.commit("upload files")
    # --- end of README --------------------------------------------------------------

    commit_id, message = log(repo)[0]
    assert message == "upload files", message
    diff = {c.path: c.status for c in repo.commits.get(commit_id).diff()}
    assert diff == {
        "data/hello.txt": "added", "data/dataset.parquet": "added", "data/model.bin": "added",
        "data/hello-backup.txt": "added", "data/old.csv": "removed", "data/a.csv": "removed",
        "data/b.csv": "removed",
    }, diff
    assert read_head(repo, "data/dataset.parquet") == dataset
    assert read_head(repo, "data/model.bin") == model
    assert read_head(repo, "data/hello-backup.txt") == b"Hello, Tilde!"

    with printed() as out:
        # --- README (0.7.7+): Reading ---------------------------------------------------
        # From a commit
        commit = next(iter(repo.commits.list()))
        with commit.objects.get("data/hello.txt") as f:
            print(f.read().decode())

        # Within a session
        with repo.session() as session:
            with session.objects.get("data/file.csv") as f:
                data = f.read()

            # Metadata only
            meta = session.objects.head("data/file.csv")
            print(meta.etag, meta.content_type, meta.content_length)
        # --- end of README --------------------------------------------------------------

        # --- README (0.7.7+): Listing ---------------------------------------------------
        for entry in commit.objects.list(prefix="data/", delimiter="/"):
            print(entry.path, entry.type)  # "object" or "prefix"
        # --- end of README --------------------------------------------------------------

        # --- README (0.7.7+): Pagination ------------------------------------------------
        for entry in commit.objects.list(prefix="data/", page_size=500):
            process(entry)
        # --- end of README --------------------------------------------------------------

    assert commit.id == commit_id, (commit.id, commit_id)
    assert data == b"old content", data
    assert meta.content_length == len(b"old content") and meta.etag, meta
    assert out[:2] == ["Hello, Tilde!", f"{meta.etag} {meta.content_type} 11"], out
    assert out[2:] == [
        "data/dataset.parquet object",
        "data/file.csv object",
        "data/file.parquet object",
        "data/hello-backup.txt object",
        "data/hello.txt object",
        "data/large.bin object",
        "data/model.bin object",
        "data/sub/ prefix",
    ], out
    every = ["data/dataset.parquet", "data/file.csv", "data/file.parquet",
             "data/hello-backup.txt", "data/hello.txt", "data/large.bin", "data/model.bin",
             "data/sub/nested.txt"]
    assert processed == every, processed
    # The README's table: `page_size` is the page, `amount` the cap on the total.
    assert [e.path for e in commit.objects.list(prefix="data/", page_size=3)] == every
    assert [e.path for e in commit.objects.list(prefix="data/", amount=3)] == every[:3]
else:
    chunks: list[bytes] = []

    def process(chunk: bytes) -> None:
        chunks.append(chunk)

    with printed() as out:
        # --- README ---------------------------------------------------------------------
        with repo.session() as session:
            # Upload
            session.objects.put("data/file.csv", b"content")

            # Download (streaming)
            with session.objects.get("data/file.csv") as f:
                data = f.read()

            # Read a specific byte range (e.g., first 1 KB)
            with session.objects.get("data/file.parquet", byte_range=(0, 1023)) as f:
                header = f.read()

            # Stream large objects without caching
            with session.objects.get("data/large.bin", cache=False) as f:
                for chunk in f.iter_bytes(chunk_size=8192):
                    process(chunk)

            # List (auto-paginating, with directory grouping)
            for entry in session.objects.list(prefix="data/", delimiter="/"):
                print(entry.path, entry.type)  # type is "object" or "prefix"

            # Check metadata
            meta = session.objects.head("data/file.csv")
            print(meta.etag, meta.content_type, meta.content_length)

            # Delete
            session.objects.delete("data/file.csv")

            session.commit("object operations")
        # --- end of README --------------------------------------------------------------

    assert data == b"content", data
    assert header == parquet[:1024], (len(header), header[:16])
    assert b"".join(chunks) == large, (len(b"".join(chunks)), len(large))
    assert chunks and max(map(len, chunks)) <= 8192, max(map(len, chunks))

    assert out[:4] == [
        "data/file.csv object",
        "data/file.parquet object",
        "data/large.bin object",
        "data/sub/ prefix",
    ], out
    assert meta.content_length == len(b"content"), meta
    assert meta.etag, meta
    assert out[4] == f"{meta.etag} {meta.content_type} 7", out[4]
    assert len(out) == 5, out

    commit_id, message = log(repo)[0]
    assert message == "object operations", message
    assert not exists_at_head(repo, "data/file.csv")
    assert read_head(repo, "data/file.parquet") == parquet
    assert read_head(repo, "data/sub/nested.txt") == b"nested"
    diff = {c.path: c.status for c in repo.commits.get(commit_id).diff()}
    assert diff == {"data/file.csv": "removed"}, diff

    if CLIENT == "official":
        # 0.7.2-0.7.6: presign=False streams the bytes (no redirect to follow); the same
        # listing paged by `amount` (0.7.2: the page size; 0.7.3+: a cap on the total).
        with repo.session() as session:
            with session.objects.get("data/file.parquet", presign=False) as f:
                assert f.read() == parquet
            listed = [e.path for e in session.objects.list(prefix="data/", amount=2)]
        if official_since("0.7.3"):
            assert listed == ["data/file.parquet", "data/large.bin"], listed
        else:
            assert listed == ["data/file.parquet", "data/large.bin", "data/sub/nested.txt"]

done("objects")
