"""The ``tilde://`` fsspec filesystem against a real tilde-server: reads, writes, listings,
commits per write and transactions, errors, versions at a commit, request counts."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import fsspec
import tilde
from conftest import ServerHandle, new_repo
from tilde.exceptions import ConflictError
from tilde.fsspec import TildeFileSystem


@pytest.fixture(scope="module")
def fs(server: ServerHandle) -> TildeFileSystem:
    """Found through the ``fsspec.specs`` entry point, not by importing tilde.fsspec."""
    f = fsspec.filesystem("tilde", api_key=server.api_key, endpoint_url=server.endpoint)
    assert isinstance(f, TildeFileSystem)
    return f


@pytest.fixture
def root(server: ServerHandle) -> str:
    r = new_repo(server)
    return f"{r.org}/{r.repo}"


@pytest.fixture
def client(server: ServerHandle) -> Iterator[tilde.Client]:
    with tilde.Client(api_key=server.api_key, endpoint_url=server.endpoint) as c:
        yield c


def commits(client: tilde.Client, root: str) -> list[Any]:
    return list(client.repository(root).timeline())


def test_pipe_cat_info_ls(fs: TildeFileSystem, root: str) -> None:
    fs.pipe(f"tilde://{root}/a/b.txt", b"hello")
    fs.pipe({f"{root}/a/c/d.txt": b"deep", f"{root}/top": b"t"})
    assert fs.cat(f"tilde://{root}/a/b.txt") == b"hello"
    assert fs.cat_file(f"{root}/a/b.txt", start=1, end=3) == b"el"
    assert fs.cat_file(f"{root}/a/b.txt", start=-2) == b"lo"
    info = fs.info(f"{root}/a/b.txt")
    assert (info["type"], info["size"], info["name"]) == ("file", 5, f"{root}/a/b.txt")
    assert info["etag"] == "5d41402abc4b2a76b9719d911017c592"  # md5 of b"hello"
    assert fs.info(f"{root}/a") == {"name": f"{root}/a", "size": 0, "type": "directory"}
    listing = fs.ls(root, detail=True)
    assert [(e["name"], e["type"]) for e in listing] == [
        (f"{root}/a", "directory"), (f"{root}/top", "file")]
    assert fs.ls(f"{root}/a", detail=False) == [f"{root}/a/b.txt", f"{root}/a/c"]
    assert fs.find(root) == [f"{root}/a/b.txt", f"{root}/a/c/d.txt", f"{root}/top"]
    assert fs.find(root, withdirs=True, maxdepth=2) == [
        f"{root}/a", f"{root}/a/b.txt", f"{root}/a/c", f"{root}/top"]
    assert sorted(fs.glob(f"{root}/**/*.txt")) == [f"{root}/a/b.txt", f"{root}/a/c/d.txt"]
    assert fs.isdir(f"{root}/a") and fs.isfile(f"{root}/top") and not fs.exists(f"{root}/x")
    assert fs.cat_ranges([f"{root}/a/b.txt", f"{root}/top"], [0, 0], [2, 1]) == [b"he", b"t"]
    assert fs.ukey(f"{root}/a/b.txt") == info["etag"]
    assert fs.checksum(f"{root}/a/b.txt") == int(info["etag"], 16)
    assert fs.modified(f"{root}/a/b.txt").year >= 2026


def test_open_refuses_to_splice_two_versions(fs: TildeFileSystem, root: str) -> None:
    fs.pipe(f"{root}/moving", b"a" * 10_000)
    with fs.open(f"{root}/moving", block_size=1024) as f:
        assert f.read(10) == b"a" * 10
        fs.pipe(f"{root}/moving", b"b" * 10_000)
        f.seek(5000)
        with pytest.raises(OSError, match="changed"):
            f.read(10)


def test_each_write_is_one_commit(fs: TildeFileSystem, root: str,
                                  client: tilde.Client, tmp_path: Path) -> None:
    fs.pipe_file(f"{root}/one", b"1")
    local = tmp_path / "f.bin"
    local.write_bytes(b"local bytes")
    fs.put_file(str(local), f"{root}/two")
    with fs.open(f"{root}/three", "wb") as f:
        f.write(b"3")
    fs.cp(f"{root}/one", f"{root}/four")
    fs.rm([f"{root}/one", f"{root}/two"])
    log = commits(client, root)
    assert len(log) == 5, [c.message for c in log]
    assert fs.find(root) == [f"{root}/four", f"{root}/three"]
    assert fs.cat(f"{root}/four") == b"1"


def test_put_skips_unchanged_file(fs: TildeFileSystem, root: str, client: tilde.Client,
                                  tmp_path: Path) -> None:
    local = tmp_path / "same.bin"
    local.write_bytes(b"same bytes")
    fs.put_file(str(local), f"{root}/same")
    fs.put_file(str(local), f"{root}/same")
    assert len(commits(client, root)) == 1
    local.write_bytes(b"other bytes")
    fs.put_file(str(local), f"{root}/same")
    assert len(commits(client, root)) == 2
    out = tmp_path / "back.bin"
    fs.get_file(f"{root}/same", str(out))
    assert out.read_bytes() == b"other bytes"


def test_read_at_commit_sees_old_bytes(fs: TildeFileSystem, root: str,
                                       client: tilde.Client) -> None:
    fs.pipe(f"{root}/v.txt", b"old")
    first = commits(client, root)[0].id
    fs.pipe(f"{root}/v.txt", b"new!")
    assert fs.cat(f"tilde://{root}/v.txt") == b"new!"
    at = f"tilde://{root}@{first[:10]}/v.txt"
    assert fs.cat(at) == b"old"
    assert fs.info(at)["size"] == 3
    assert fs.ls(f"{root}@{first[:10]}", detail=False) == [f"{root}@{first[:10]}/v.txt"]
    with fs.open(at) as f:
        assert f.read() == b"old"
    with pytest.raises(PermissionError):
        fs.pipe(at, b"no")
    with pytest.raises(PermissionError):
        fs.open(at, "wb")


def test_transaction_is_one_commit(fs: TildeFileSystem, root: str,
                                   client: tilde.Client) -> None:
    before = len(commits(client, root))
    with fs.start_transaction(message="batch of ten", metadata={"k": "v"}) as tx:
        for i in range(10):
            fs.pipe(f"{root}/t/{i}", str(i).encode())
        with fs.open(f"{root}/t/file", "wb") as f:
            f.write(b"in a file")
        # reads inside the transaction see its staged writes
        assert fs.cat(f"{root}/t/3") == b"3"
        assert fs.cat(f"{root}/t/file") == b"in a file"
        assert len(fs.ls(f"{root}/t")) == 11
    log = commits(client, root)
    assert len(log) == before + 1
    assert log[0].message == "batch of ten" and log[0].metadata.get("k") == "v"
    assert tx.commit_ids == {root: log[0].id}
    assert not fs._intrans
    assert len(fs.find(f"{root}/t")) == 11


def test_aborted_transaction_commits_nothing(fs: TildeFileSystem, root: str,
                                             client: tilde.Client) -> None:
    fs.pipe(f"{root}/keep", b"k")
    with pytest.raises(RuntimeError), fs.transaction:
        fs.pipe(f"{root}/gone", b"g")
        fs.rm(f"{root}/keep")
        raise RuntimeError("abort")
    assert len(commits(client, root)) == 1
    assert fs.find(root) == [f"{root}/keep"]
    assert not fs._intrans


def test_named_session_is_never_committed(server: ServerHandle, root: str,
                                          client: tilde.Client) -> None:
    s = client.repository(root).session()
    sfs = TildeFileSystem(api_key=server.api_key, endpoint_url=server.endpoint,
                          session_id=s.session_id)
    sfs.pipe(f"{root}/staged", b"s")
    assert sfs.cat(f"{root}/staged") == b"s"
    assert commits(client, root) == []
    s.commit("by the caller")
    assert [c.message for c in commits(client, root)] == ["by the caller"]


def test_errors_map_to_os_errors(fs: TildeFileSystem, root: str, server: ServerHandle) -> None:
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{root}/missing")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{root}/missing")
    with pytest.raises(FileNotFoundError):
        fs.ls(f"{root}/missing")
    with pytest.raises(FileNotFoundError):
        fs.ls("no-such-org/no-such-repo")
    with pytest.raises(FileNotFoundError):
        fs.rm(f"{root}/missing")
    fs.pipe(f"{root}/exists", b"e")
    with pytest.raises(FileExistsError):
        fs.open(f"{root}/exists", "xb")
    with pytest.raises(IsADirectoryError):
        fs.open(root, "rb")
    bad = TildeFileSystem(api_key="tk-wrong", endpoint_url=server.endpoint,
                          skip_instance_cache=True)
    with pytest.raises(PermissionError):
        bad.cat(f"{root}/exists")


def test_parquet_footer_read_is_small(server: ServerHandle, root: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs = TildeFileSystem(api_key=server.api_key, endpoint_url=server.endpoint,
                         skip_instance_cache=True)
    table = pa.table({"x": list(range(400_000)), "y": [float(i) for i in range(400_000)]})
    with fs.open(f"{root}/big.parquet", "wb") as f:
        pq.write_table(table, f, row_group_size=100_000)
    size = fs.size(f"{root}/big.parquet")
    assert size > 2 * 1024 * 1024
    got: list[int] = []

    async def count(response: httpx.Response) -> None:
        if response.request.method == "GET" and "/object" in response.url.path:
            got.append(int(response.headers.get("Content-Length") or 0))

    fs.api.event_hooks["response"].append(count)
    with fs.open(f"{root}/big.parquet") as f:  # the defaults: readahead, 1 MiB blocks
        meta = pq.ParquetFile(f).metadata
    assert meta.num_rows == 400_000 and meta.num_row_groups == 4
    assert 1 <= len(got) <= 3, got
    assert sum(got) < 256 * 1024, got


def test_pickle_roundtrip_reads(fs: TildeFileSystem, root: str) -> None:
    fs.pipe(f"{root}/p", b"pickled")
    fs.cat(f"{root}/p")  # an open AsyncClient exists now; it must not travel
    blob = pickle.dumps(fs)
    assert b"httpx" not in blob
    assert pickle.loads(blob).cat(f"{root}/p") == b"pickled"
    # in a fresh process (as a dask worker): a new instance, its own client
    code = ("import pickle, sys; fs = pickle.loads(sys.stdin.buffer.read()); "
            f"sys.stdout.buffer.write(fs.cat({root + '/p'!r}))")
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         check=True, timeout=60)
    assert out.stdout == b"pickled"


def test_listing_cache_ttl_refresh_and_commits(server: ServerHandle, root: str,
                                               client: tilde.Client) -> None:
    fs = TildeFileSystem(api_key=server.api_key, endpoint_url=server.endpoint,
                         listings_ttl=600, skip_instance_cache=True)
    fs.pipe(f"{root}/c/one", b"1")
    first = commits(client, root)[0].id
    at = f"{root}@{first}/c"
    assert fs.ls(f"{root}/c", detail=False) == [f"{root}/c/one"]
    assert fs.ls(at, detail=False) == [f"{at}/one"]
    with client.repository(root).session() as s:  # another writer
        s.objects.put("c/two", b"2")
        s.commit("other writer")
    assert fs.ls(f"{root}/c", detail=False) == [f"{root}/c/one"]  # cached
    assert fs.ls(f"{root}/c", detail=False, refresh=True) == [f"{root}/c/one", f"{root}/c/two"]
    assert fs.ls(at, detail=False) == [f"{at}/one"]  # a commit never changes
    fs.invalidate_cache()
    assert fs.ls(at, detail=False, refresh=True) == [f"{at}/one"]
    fs.pipe(f"{root}/c/three", b"3")  # our own writes drop the repository's listings
    assert len(fs.ls(f"{root}/c")) == 3


def test_asynchronous_use_on_the_callers_loop(server: ServerHandle, root: str) -> None:
    async def main() -> tuple[bytes, list[str]]:
        afs = TildeFileSystem(api_key=server.api_key, endpoint_url=server.endpoint,
                              asynchronous=True, skip_instance_cache=True)
        await afs._pipe_file(f"{root}/async/a", b"A")
        await afs._pipe({f"{root}/async/b": b"B", f"{root}/async/c": b"C"})
        data = await afs._cat_file(f"{root}/async/a")
        names = await afs._find(f"{root}/async")
        await afs.api.aclose()
        return data, names

    data, names = asyncio.run(main())
    assert data == b"A"
    assert names == [f"{root}/async/{n}" for n in "abc"]


def test_non_context_transaction(fs: TildeFileSystem, root: str, client: tilde.Client) -> None:
    tx = fs.start_transaction(message="started by hand")
    fs.pipe(f"{root}/h1", b"1")
    fs.pipe(f"{root}/h2", b"2")
    assert commits(client, root) == []
    fs.end_transaction()
    assert [c.message for c in commits(client, root)] == ["started by hand"]
    assert list(tx.commit_ids) == [root] and not fs._intrans


def test_conflicting_transaction_raises_and_ends(fs: TildeFileSystem, root: str,
                                                 client: tilde.Client) -> None:
    fs.pipe(f"{root}/shared", b"base")
    with pytest.raises(ConflictError), fs.transaction:
        fs.pipe(f"{root}/shared", b"ours")
        with client.repository(root).session() as s:  # another writer, committed first
            s.objects.put("shared", b"theirs")
            s.commit("theirs")
    assert not fs._intrans and fs._transaction is None
    assert fs.cat(f"{root}/shared") == b"theirs"
    assert [c.message for c in commits(client, root)] == ["theirs", "fsspec: pipe shared"]


def test_a_tree_is_one_commit_per_call(fs: TildeFileSystem, root: str,
                                       client: tilde.Client, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for name in ("a", "b", "sub/c"):
        (tree / name).write_bytes(name.encode())
    fs.put(str(tree) + "/", f"{root}/tree", recursive=True)
    assert fs.find(f"{root}/tree") == [f"{root}/tree/{n}" for n in ("a", "b", "sub/c")]
    fs.copy(f"{root}/tree", f"{root}/copy", recursive=True)
    fs.rm(f"{root}/tree", recursive=True)
    log = commits(client, root)
    assert [c.message for c in log] == ["fsspec: rm tree", "fsspec: copy copy",
                                        "fsspec: put tree"]
    assert fs.find(root) == [f"{root}/copy/{n}" for n in ("a", "b", "sub/c")]
    assert fs.cat(f"{root}/copy/sub/c") == b"sub/c"


def test_sandbox_credentials_endpoint(server: ServerHandle, root: str,
                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key anywhere but TILDE_SANDBOX_CREDENTIALS_URI: tokens come from that endpoint
    (a real loopback HTTP server here), as they do for the client inside a sandbox."""
    calls: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            calls.append(self.path)
            body = json.dumps({"access_token": server.api_key,
                               "expires_at": "2999-01-01T00:00:00Z"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    endpoint = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=endpoint.serve_forever, daemon=True)
    thread.start()
    try:
        for name in ("TILDE_API_KEY", "TILDE_API_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("TILDE_ENDPOINT_URL", server.endpoint)
        monkeypatch.setenv("TILDE_SANDBOX_CREDENTIALS_URI",
                           f"http://127.0.0.1:{endpoint.server_port}/v1/credentials")
        sfs = TildeFileSystem(skip_instance_cache=True)
        sfs.pipe(f"{root}/from-sandbox", b"s")
        assert sfs.cat(f"{root}/from-sandbox") == b"s"
        assert calls == ["/v1/credentials"]  # fetched once, then cached
    finally:
        endpoint.shutdown()
        endpoint.server_close()


def test_ls_above_repositories(fs: TildeFileSystem, server: ServerHandle) -> None:
    """``tilde://`` lists organizations, ``tilde://ORG`` repositories, both as directories;
    an unknown organization is FileNotFoundError."""
    r = new_repo(server)
    h = {"Authorization": f"Bearer {server.api_key}"}
    second = httpx.post(f"{server.endpoint}/api/v1/organizations/{r.org}/repositories",
                        json={"name": "second"}, headers=h)
    assert second.status_code == 201, second.text
    assert fs.ls(f"tilde://{r.org}", detail=False) == sorted(
        [f"{r.org}/{r.repo}", f"{r.org}/second"])
    assert fs.ls(r.org)[0]["type"] == "directory"
    orgs = fs.ls("tilde://", detail=True)
    assert {"name": r.org, "size": 0, "type": "directory"} in orgs
    assert fs.info(r.org) == {"name": r.org, "size": 0, "type": "directory"}
    assert fs.isdir(f"tilde://{r.org}") and not fs.isfile(r.org)
    with pytest.raises(FileNotFoundError):
        fs.ls("no-such-org-x1")
    with pytest.raises(FileNotFoundError):
        fs.info("no-such-org-x1")


def test_large_reads_go_as_concurrent_parts(server: ServerHandle, root: str) -> None:
    """With ``read_parts_at_once=4`` a 40 MiB read of an open file is five 8 MiB range GETs,
    up to four in flight at once, joined in order; by default it is one GET."""
    data = os.urandom(40 * 1024 * 1024)
    fs = TildeFileSystem(api_key=server.api_key, endpoint_url=server.endpoint,
                         skip_instance_cache=True, read_parts_at_once=4)
    fs.pipe(f"{root}/big.bin", data)
    sizes: list[int] = []
    in_flight = [0, 0]  # now, most

    async def on_request(request: httpx.Request) -> None:
        if request.method == "GET" and "/object" in request.url.path:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])

    async def on_response(response: httpx.Response) -> None:
        if response.request.method == "GET" and "/object" in response.url.path:
            await response.aread()
            in_flight[0] -= 1
            sizes.append(int(response.headers.get("Content-Length") or 0))

    fs.api.event_hooks["request"].append(on_request)
    fs.api.event_hooks["response"].append(on_response)
    with fs.open(f"{root}/big.bin", cache_type="none") as f:
        f.seek(1000)
        assert f.read(len(data) - 2000) == data[1000:-1000]
    assert sorted(sizes) == sorted([8 * 1024 * 1024] * 4 + [8 * 1024 * 1024 - 2000]), sizes
    assert in_flight[1] > 1  # concurrent, not one after another
    assert in_flight[1] <= 4
    sizes.clear()
    single = TildeFileSystem(api_key=server.api_key, endpoint_url=server.endpoint,
                             skip_instance_cache=True)
    single.api.event_hooks["response"].append(on_response)
    single.api.event_hooks["request"].append(on_request)
    with single.open(f"{root}/big.bin", cache_type="none") as f:
        assert f.read() == data
    assert sizes == [len(data)]
