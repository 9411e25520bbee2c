# ruff: noqa: SIM117  (the README nests its with-blocks; its lines stay as written)
"""README "Large Object Handling": a > 64 MiB object streamed with iter_bytes, uncached.

64 MiB is where the client switches from a single upload to a multipart upload, so the
object below also goes up in two parts.

From 0.7.7 (NEW_README, "Streaming and byte ranges") the README streams data/large.bin from
a commit (`commit.objects`) instead of a session.
"""

import hashlib
import random

from _common import NEW_README, REPO, check_client, done

import tilde

check_client()
repo = tilde.repository(REPO)

SIZE = 64 * 1024 * 1024 + 1024 * 1024 + 123
content = random.Random(64).randbytes(SIZE)
expected = hashlib.sha256(content).hexdigest()
PATH = "data/large.bin" if NEW_README else "large-file.bin"
with repo.session() as session:
    session.objects.put(PATH, content)
    assert session.commit("a large object")
del content


class Output:
    """Where the README writes the chunks: a running hash instead of a file."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0
        self.chunks = 0
        self.largest = 0

    def write(self, chunk: bytes) -> int:
        self.sha.update(chunk)
        self.size += len(chunk)
        self.chunks += 1
        self.largest = max(self.largest, len(chunk))
        return len(chunk)


output = Output()

if not NEW_README:
    # --- README -------------------------------------------------------------------------
    with repo.session() as session:
        with session.objects.get("large-file.bin", cache=False) as f:
            for chunk in f.iter_bytes(chunk_size=1024 * 1024):
                output.write(chunk)
    # --- end of README ------------------------------------------------------------------
else:
    commit = next(iter(repo.commits.list()))
    # --- README (0.7.7+): Streaming and byte ranges -------------------------------------
    with commit.objects.get("data/large.bin", cache=False) as f:
        for chunk in f.iter_bytes(chunk_size=1024 * 1024):
            output.write(chunk)
    # --- end of README ------------------------------------------------------------------

assert output.size == SIZE, (output.size, SIZE)
assert output.sha.hexdigest() == expected, "streamed bytes differ from what was uploaded"
assert output.largest <= 1024 * 1024, output.largest
assert output.chunks >= SIZE // (1024 * 1024), output.chunks
assert f.content_length == SIZE, f.content_length

with repo.session() as session:
    meta = session.objects.head(PATH)
assert meta.content_length == SIZE, meta

done("large_objects")
