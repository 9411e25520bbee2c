"""README "Byte Range Requests", including content_range and content_length.

`repo.objects` (read-only objects at the repository's latest commit) is a README name no
official release has (spec 5.14). With CLIENT=official the same reads go through the
release's read-only objects, `Commit.objects` (which also read the latest commit); from 0.7.7
(NEW_README, "Streaming and byte ranges") that is the README's own form.
"""

import random

from _common import CLIENT, NEW_README, REPO, check_client, commit_files, done, printed

import tilde

check_client()
repo = tilde.repository(REPO)

parquet = b"PAR1" + random.Random(3).randbytes(49152 - 8) + b"PAR1"
commit_files(repo, {"data/file.parquet": parquet}, "a parquet-sized object")

if NEW_README:
    commit = next(iter(repo.commits.list()))
    with printed() as out:
        # --- README (0.7.7+) ------------------------------------------------------------
        # First 4 bytes
        with commit.objects.get("data/file.parquet", byte_range=(0, 3)) as f:
            magic = f.read()

        # From offset 1024 to end
        with commit.objects.get("data/file.parquet", byte_range=(1024, None)) as f:
            tail = f.read()
            print(f.content_range)   # "bytes 1024-49151/49152"
            print(f.content_length)  # bytes returned
        # --- end of README --------------------------------------------------------------
    tail_range, tail_length = f.content_range, f.content_length
    with commit.objects.get("data/file.parquet", byte_range=(0, 1023)) as f:
        data = f.read()
elif CLIENT == "bundled":
    with printed() as out:
        # --- README ---------------------------------------------------------------------
        # Read the first 4 bytes (e.g., a magic number)
        with repo.objects.get("data/file.parquet", byte_range=(0, 3)) as f:
            magic = f.read()

        # Read from offset 1024 to end of file
        with repo.objects.get("data/file.parquet", byte_range=(1024, None)) as f:
            tail = f.read()
        tail_range, tail_length = f.content_range, f.content_length  # (not in the README)

        with repo.objects.get("data/file.parquet", byte_range=(0, 1023)) as f:
            data = f.read()
            print(f.content_range)   # "bytes 0-1023/49152"
            print(f.content_length)  # 1024
        # --- end of README --------------------------------------------------------------
else:
    objects = next(iter(repo.commits.list())).objects
    with printed() as out:
        with objects.get("data/file.parquet", byte_range=(0, 3)) as f:
            magic = f.read()

        with objects.get("data/file.parquet", byte_range=(1024, None)) as f:
            tail = f.read()
        tail_range, tail_length = f.content_range, f.content_length

        with objects.get("data/file.parquet", byte_range=(0, 1023)) as f:
            data = f.read()
            print(f.content_range)   # "bytes 0-1023/49152"
            print(f.content_length)  # 1024

assert magic == b"PAR1", magic
assert tail == parquet[1024:], (len(tail), len(parquet) - 1024)
assert tail_range == "bytes 1024-49151/49152", tail_range
assert tail_length == 49152 - 1024, tail_length
assert data == parquet[:1024], len(data)
if NEW_README:
    assert out == ["bytes 1024-49151/49152", str(49152 - 1024)], out
    assert (f.content_range, f.content_length) == ("bytes 0-1023/49152", 1024)
else:
    assert out == ["bytes 0-1023/49152", "1024"], out

done("byte_ranges")
