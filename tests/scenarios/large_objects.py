# ruff: noqa: SIM117  (the README nests its with-blocks; its lines stay as written)
"""README "Large Object Handling": a > 64 MiB object streamed with iter_bytes, uncached.

64 MiB is where the client switches from a single upload to a multipart upload, so the
object below also goes up in two parts.
"""

import hashlib
import random

from _common import REPO, check_client, done

import tilde

check_client()
repo = tilde.repository(REPO)

SIZE = 64 * 1024 * 1024 + 1024 * 1024 + 123
content = random.Random(64).randbytes(SIZE)
expected = hashlib.sha256(content).hexdigest()
with repo.session() as session:
    session.objects.put("large-file.bin", content)
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

# --- README -----------------------------------------------------------------------------
with repo.session() as session:
    with session.objects.get("large-file.bin", cache=False) as f:
        for chunk in f.iter_bytes(chunk_size=1024 * 1024):
            output.write(chunk)
# --- end of README ----------------------------------------------------------------------

assert output.size == SIZE, (output.size, SIZE)
assert output.sha.hexdigest() == expected, "streamed bytes differ from what was uploaded"
assert output.largest <= 1024 * 1024, output.largest
assert output.chunks >= SIZE // (1024 * 1024), output.chunks
assert f.content_length == SIZE, f.content_length

with repo.session() as session:
    meta = session.objects.head("large-file.bin")
assert meta.content_length == SIZE, meta

done("large_objects")
