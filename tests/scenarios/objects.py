# ruff: noqa: SIM117  (the README nests its with-blocks; its lines stay as written)
"""README "Objects": put, streamed get, byte range, uncached iter_bytes, list, head, delete."""

import random

from _common import REPO, check_client, commit_files, done, exists_at_head, log, printed, read_head

import tilde

check_client()
repo = tilde.repository(REPO)

rng = random.Random(7)
parquet = rng.randbytes(49152)
large = rng.randbytes(3 * 1024 * 1024 + 5)
commit_files(
    repo,
    {
        "data/file.csv": b"old content",
        "data/file.parquet": parquet,
        "data/large.bin": large,
        "data/sub/nested.txt": b"nested",
        "outside.txt": b"not under data/",
    },
    "fixtures",
)

chunks: list[bytes] = []


def process(chunk: bytes) -> None:
    chunks.append(chunk)


with printed() as out:
    # --- README -------------------------------------------------------------------------
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
    # --- end of README ------------------------------------------------------------------

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

done("objects")
