"""``objects.get()``: today's GET (no presign, redirects followed), the reader's file protocol,
and reads at a commit.

The protocol edges (redirect hops, Range handling, changed ETags, servers that ignore Range)
run on httpx.MockTransport; reads at a commit and pyarrow on a real parquet file run against
the real tilde-server.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import httpx
import pytest
from mockhttp import mock_client  # tests/client is on sys.path

import tilde
from conftest import RepoRef, ServerHandle
from tilde.exceptions import APIError, NotFoundError, PreconditionFailedError
from tilde.models import Repository

DATA = bytes(range(256)) * 4096  # 1 MiB: well beyond the reader's 64 KiB skip window
N = len(DATA)
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class Blob:
    """One object behind a mock API: honours single ranges (unless told not to), records
    every request and how many body bytes it sent."""

    def __init__(self, data: bytes = DATA, *, honour_range: bool = True) -> None:
        self.data, self.honour_range = data, honour_range
        self.etag = '"e1"'
        self.requests: list[httpx.Request] = []
        self.sent = 0

    def ranges(self) -> list[str | None]:
        return [r.headers.get("Range") for r in self.requests if r.method == "GET"]

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        n = len(self.data)
        base = {"ETag": self.etag, "Content-Type": "application/octet-stream",
                "X-Tilde-Reproducible": "true"}
        if req.method == "HEAD":
            return httpx.Response(200, headers={**base, "Content-Length": str(n)})
        rng = req.headers.get("Range")
        if rng is None or not self.honour_range:
            self.sent += n
            return httpx.Response(200, content=self.data, headers=base)
        m = _RANGE.fullmatch(rng)
        assert m, rng
        first = int(m.group(1))
        last = min(int(m.group(2)) if m.group(2) else n - 1, n - 1)
        if first >= n:
            return httpx.Response(416, headers={"Content-Range": f"bytes */{n}"},
                                  json={"message": "range not satisfiable"})
        body = self.data[first:last + 1]
        self.sent += len(body)
        return httpx.Response(206, content=body,
                              headers={**base, "Content-Range": f"bytes {first}-{last}/{n}"})


# --- today's GET ----------------------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("presign", [True, False])
def test_get_follows_redirects_and_keeps_auth_on_its_origin(status: int, presign: bool) -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.url.host == "tilde.test" and req.url.path.startswith("/api/"):
            return httpx.Response(status, headers={"Location": "/hop"})
        if req.url.host == "tilde.test":
            return httpx.Response(status, headers={"Location": "http://store.test/blob?sig=s"})
        return httpx.Response(206, content=b"abc", headers={
            "Content-Range": "bytes 0-2/10", "ETag": '"store"', "Content-Type": "text/csv",
            "X-Tilde-Reproducible": "false"})

    c = mock_client(handler)
    with c.repository("o/r").objects.get("k", byte_range=(0, 2), presign=presign) as f:
        assert f.read() == b"abc"
        # the final answer's headers, not the redirects'
        assert (f.content_range, f.etag, f.content_type, f.reproducible, f.content_length) \
            == ("bytes 0-2/10", '"store"', "text/csv", False, 3)
    api, hop, store = seen
    assert "presign" not in api.url.params and api.url.params["path"] == "k"
    assert api.headers["Authorization"] == "Bearer k"
    assert hop.headers["Authorization"] == "Bearer k"  # same origin: kept
    assert "Authorization" not in store.headers  # another origin: dropped
    assert [r.headers["Range"] for r in seen] == ["bytes=0-2"] * 3  # re-sent on every hop


def test_get_error_and_missing_object() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"message": "no such object"})

    c = mock_client(handler)
    reader = c.repository("o/r").objects.get("k")
    with pytest.raises(NotFoundError):
        reader.read()
    with pytest.raises(ValueError):
        c.repository("o/r").objects.get("k", byte_range=(5, 2))


# --- the file protocol ----------------------------------------------------------------------

def test_sequential_reads_are_one_get_and_read_n_returns_at_most_n() -> None:
    blob = Blob()
    reader = mock_client(blob).repository("o/r").objects.get("k")
    assert (reader.readable(), reader.seekable(), reader.closed) == (True, True, False)
    assert blob.requests == []  # lazy
    parts = []
    while piece := reader.read(1000):
        assert len(piece) <= 1000
        parts.append(piece)
    assert b"".join(parts) == DATA and reader.tell() == len(DATA)
    assert blob.ranges() == [None]
    buf = bytearray(10)
    reader.seek(5)
    assert reader.readinto(buf) == 10 and bytes(buf) == DATA[5:15]
    reader.close()
    assert reader.closed
    with pytest.raises(ValueError):
        reader.read(1)


def test_seek_then_read_fetches_only_that_range() -> None:
    blob = Blob()
    with mock_client(blob).repository("o/r").objects.get("k", cache=False) as f:
        assert blob.ranges() == [None]  # entering opens the GET, as in 0.7.2
        assert f.seek(-8, io.SEEK_END) == N - 8  # the size came with that GET
        assert f.read(8) == DATA[-8:]
        assert f.seek(400_000) == 400_000 and f.read(100) == DATA[400_000:400_100]
        assert f.read(50) == DATA[400_100:400_150]  # continues: an open-ended range
        # a small forward gap is read through on the open answer
        assert f.seek(10, io.SEEK_CUR) == 400_160 and f.read(10) == DATA[400_160:400_170]
        f.seek(N + 5)
        assert f.read(10) == b""
    assert blob.ranges() == [None, f"bytes={N - 8}-{N - 1}", "bytes=400000-400099",
                             "bytes=400100-"]


def test_seek_from_the_end_without_a_get_asks_head() -> None:
    blob = Blob()
    reader = mock_client(blob).repository("o/r").objects.get("k")
    assert reader.seek(0, io.SEEK_END) == N
    assert [r.method for r in blob.requests] == ["HEAD"]
    assert reader.etag == '"e1"' and reader.content_length == N
    reader.seek(-3, io.SEEK_END)
    assert reader.read() == DATA[-3:]  # read() from a position: the rest
    assert blob.ranges() == [f"bytes={N - 3}-{N - 1}"]


def test_read_keeps_0_7_2_semantics_and_cache() -> None:
    blob = Blob()
    with mock_client(blob).repository("o/r").objects.get("k") as f:
        assert f.read() == DATA
        assert f.read() == DATA  # 0.7.2: the whole object again, here from the cache
        assert b"".join(f.iter_bytes(1000)) == DATA
        f.seek(100)
        assert f.read(5) == DATA[100:105]
    assert len(blob.requests) == 1
    blob = Blob()
    with mock_client(blob).repository("o/r").objects.get("k", cache=False) as f:
        assert f.read() == DATA and f.read() == DATA  # without the cache: a second GET
        chunks = list(f.iter_bytes(chunk_size=300_000))
    assert [len(c) for c in chunks] == [300_000] * 3 + [N - 900_000]
    assert blob.ranges() == [None, None, None]


def test_byte_range_is_the_file() -> None:
    blob = Blob()
    objects = mock_client(blob).repository("o/r").objects
    with objects.get("k", byte_range=(100_000, 299_999)) as f:
        assert f.content_range == f"bytes 100000-299999/{N}" and f.content_length == 200_000
        assert f.seek(0, io.SEEK_END) == 200_000
        f.seek(199_990)
        assert f.read(100) == DATA[299_990:300_000]  # stops at the end of the range
        f.seek(0)
        assert f.read() == DATA[100_000:300_000]
    assert blob.ranges() == ["bytes=100000-299999", "bytes=299990-299999",
                             "bytes=100000-299999"]
    with pytest.raises(APIError) as info, objects.get("k", byte_range=(N, None)):
        pass
    assert info.value.status_code == 416  # the view as asked lies past the end: 0.7.2 raises


def test_lines_and_text_through_io() -> None:
    text = b"alpha\nbeta\n" * 3000
    reader = mock_client(Blob(text)).repository("o/r").objects.get("k", cache=False)
    wrapped = io.TextIOWrapper(reader, encoding="utf-8")
    assert wrapped.readline() == "alpha\n"
    assert sum(1 for _ in wrapped) == 5999


def test_server_that_ignores_range_is_tolerated() -> None:
    blob = Blob(honour_range=False)
    with mock_client(blob).repository("o/r").objects.get("k", byte_range=(100, 199)) as f:
        assert f.read() == DATA[100:200]
        f.seek(50)
        assert f.read(10) == DATA[150:160]


def test_changed_object_between_range_gets_is_refused() -> None:
    blob = Blob()
    reader = mock_client(blob).repository("o/r").objects.get("k")
    assert reader.read(10) == DATA[:10]
    blob.etag = '"e2"'
    reader.seek(2)  # backwards: a new GET
    with pytest.raises(PreconditionFailedError, match="changed"):
        reader.read(10)


def test_pyarrow_reads_only_the_ranges_it_needs() -> None:
    import pyarrow as pa  # a test dependency (pyproject.toml): missing, the test fails
    import pyarrow.parquet as pq
    table = pa.table({"a": list(range(50_000)), "b": [f"row-{i}" * 4 for i in range(50_000)]})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="none")
    blob = Blob(sink.getvalue())
    objects = mock_client(blob).repository("o/r").objects
    assert pq.read_table(objects.get("t.parquet")).equals(table)
    blob.sent = 0
    got = pq.read_table(objects.get("t.parquet"), columns=["a"])
    assert got.column("a").to_pylist() == table.column("a").to_pylist()
    assert blob.sent < len(blob.data) / 2, (blob.sent, len(blob.data), blob.ranges())


# --- against the real server ----------------------------------------------------------------

@pytest.fixture
def repo(client_env: ServerHandle, repo_ref: RepoRef) -> Iterator[Repository]:
    with tilde.Client() as c:
        yield c.repository(repo_ref.path)


def _commit(repo: Repository, files: dict[str, bytes], message: str) -> str:
    with repo.session() as s:
        for path, data in files.items():
            s.objects.put(path, data)
        commit_id = s.commit(message)
    assert commit_id
    return commit_id


def test_commit_objects_read_at_that_commit(repo: Repository) -> None:
    first = _commit(repo, {"data/v.txt": b"v1", "data/only-v1.txt": b"old"}, "v1")
    with repo.session() as s:
        s.objects.put("data/v.txt", b"version two")
        s.objects.delete("data/only-v1.txt")
        assert s.commit("v2")
    old = repo.commits.get(first)
    assert old.objects.get("data/v.txt").read() == b"v1"
    assert old.objects.head("data/v.txt").content_length == 2
    assert [e.path for e in old.objects.list(prefix="data/")] == ["data/only-v1.txt",
                                                                  "data/v.txt"]
    with old.objects.get("data/v.txt", byte_range=(1, 1)) as f:
        assert f.read() == b"1"
    # the head and the newest commit see the new state
    assert repo.objects.get("data/v.txt").read() == b"version two"
    newest = next(iter(repo.timeline()))
    assert newest.objects.get("data/v.txt").read() == b"version two"
    with pytest.raises(NotFoundError):
        newest.objects.get("data/only-v1.txt").read()
    assert "@" + first in repr(old.objects)


def test_pyarrow_read_table_on_a_real_object(repo: Repository) -> None:
    import pyarrow as pa  # a test dependency (pyproject.toml): missing, the test fails
    import pyarrow.parquet as pq
    table = pa.table({"id": list(range(1000)), "name": [f"n{i}" for i in range(1000)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    _commit(repo, {"t.parquet": sink.getvalue()}, "parquet")
    assert pq.read_table(repo.objects.get("t.parquet")).equals(table)
    assert pq.read_table(repo.objects.get("t.parquet"), columns=["name"]).column(
        "name").to_pylist() == table.column("name").to_pylist()


def test_reading_everything_after_a_seek_is_one_get() -> None:
    """read(), iter_bytes() and peek() after a seek ask for the rest at once; only read(n)
    asks for n bytes (a seek+read of a footer fetches just that)."""
    blob = Blob()
    reader = mock_client(blob).repository("o/r").objects.get("k")
    reader.seek(100)
    assert reader.read() == DATA[100:]
    assert blob.ranges() == ["bytes=100-"]
    blob = Blob()
    reader = mock_client(blob).repository("o/r").objects.get("k")
    reader.seek(200)
    assert b"".join(reader.iter_bytes(1000)) == DATA[200:]
    assert blob.ranges() == ["bytes=200-"]
    blob = Blob()
    reader = mock_client(blob).repository("o/r").objects.get("k")
    reader.seek(300)
    assert reader.peek(1)[:1] == DATA[300:301]
    assert reader.read(4) == DATA[300:304]
    assert blob.ranges() == ["bytes=300-"]
