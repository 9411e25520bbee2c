"""The bundled client against a real tilde-server (fixtures in tests/conftest.py)."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import tilde
from conftest import RepoRef, ServerHandle, unique
from tilde.exceptions import (
    APIError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    TildeError,
)
from tilde.models import CommitResult, Repository


@pytest.fixture
def client(client_env: ServerHandle) -> Iterator[tilde.Client]:
    with tilde.Client() as c:
        yield c


@pytest.fixture
def repo(client: tilde.Client, repo_ref: RepoRef) -> Repository:
    return client.repository(repo_ref.path)


def seed(repo: Repository, files: dict[str, bytes], message: str = "seed") -> str:
    with repo.session() as s:
        for k, v in files.items():
            s.objects.put(k, v)
        commit_id = s.commit(message)
    assert commit_id
    return commit_id


# --- configuration and module-level helpers ----------------------------------------

def test_module_level_helpers_follow_environment(client_env: ServerHandle,
                                                 repo_ref: RepoRef) -> None:
    tilde.configure()
    repo = tilde.repository(repo_ref.path)
    assert repo.id and repo.visibility == "private"
    names = [o.name for o in tilde.organizations.list()]
    assert repo_ref.org in names
    org = tilde.organization(repo_ref.org)
    assert org.id and org.display_name == repo_ref.org
    assert [r.name for r in org.repositories.list()] == [repo_ref.repo]


def test_config_file_is_used(client_env: ServerHandle, repo_ref: RepoRef,
                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TILDE_API_KEY")
    monkeypatch.delenv("TILDE_ENDPOINT_URL")
    home = Path(os.environ["HOME"])
    (home / ".tilde").mkdir(parents=True)
    (home / ".tilde" / "config.yaml").write_text(
        f"api_key: {client_env.api_key}\nendpoint_url: {client_env.endpoint}/\n")
    with tilde.Client() as c:
        assert c.repository(repo_ref.path).id


def test_wrong_key_is_authentication_error(client_env: ServerHandle, repo_ref: RepoRef) -> None:
    with tilde.Client(api_key="tk-wrong") as c, \
            pytest.raises(tilde.AuthenticationError) as info:
        c.repository(repo_ref.path).refresh()
    assert info.value.status_code == 401


# --- organizations and repositories ------------------------------------------------

def test_organizations_crud(client: tilde.Client) -> None:
    name = unique("org")
    org = client.organizations.create(name, "Display Name")
    assert (org.name, org.display_name) == (name, "Display Name") and org.id
    assert org.created_at is not None
    got = client.organizations.get(name)
    assert got.id == org.id
    assert name in [o.name for o in client.organizations.list()]
    with pytest.raises(ConflictError):
        client.organizations.create(name, "again")
    client.organizations.delete(name)
    with pytest.raises(NotFoundError):
        client.organizations.get(name)


def test_repositories_create_list_update_delete(client: tilde.Client,
                                                repo_ref: RepoRef) -> None:
    repos = client.organization(repo_ref.org).repositories
    created = repos.create("second", description="two", retention_days=7)
    assert (created.name, created.description, created.retention_days) == ("second", "two", 7)
    assert created.visibility == "private" and created.created_at is not None
    assert sorted(r.name for r in repos.list()) == sorted([repo_ref.repo, "second"])
    assert [r.name for r in repos.list(after=sorted([repo_ref.repo, "second"])[0])] == [
        sorted([repo_ref.repo, "second"])[1]]

    repo = repos.get("second")
    assert repo.update(description="New description", visibility="public") is repo
    assert (repo.description, repo.visibility, repo.retention_days) == (
        "New description", "public", 7)  # partial merge: retention kept
    assert client.repository(f"{repo_ref.org}/second").refresh().visibility == "public"
    repo.delete()
    with pytest.raises(NotFoundError):
        client.repository(f"{repo_ref.org}/second").refresh()


def test_repository_handle_is_lazy(client: tilde.Client) -> None:
    repo = client.repository("no-such-org/no-such-repo")  # no request yet
    with pytest.raises(NotFoundError) as info:
        _ = repo.id
    err = info.value
    assert err.status_code == 404 and err.method == "GET"
    assert err.url.endswith("/api/v1/organizations/no-such-org/repositories/no-such-repo")
    assert str(err).startswith(f"GET {err.url} -> 404: ")
    with pytest.raises(ValueError):
        client.repository("just-a-name")


# --- sessions ----------------------------------------------------------------------

def test_session_commit_and_rollback(repo: Repository) -> None:
    with repo.session() as s:
        objects = list(s.objects.list(prefix="data/", delimiter="/"))
        assert objects == []
        s.objects.put("data/report.csv", b"content")
        commit_id = s.commit("update CSV files", metadata={"k": "v"})
    assert commit_id
    commit = repo.commits.get(commit_id)
    assert (commit.message, commit.metadata) == ("update CSV files", {"k": "v"})
    with repo.objects.get("data/report.csv") as f:
        assert f.read() == b"content"

    s = repo.session()
    s.objects.put("data/other.csv", b"x")
    s.rollback()
    with pytest.raises(NotFoundError):
        repo.objects.head("data/other.csv")


def test_context_manager_rolls_back_on_error_and_on_clean_exit(repo: Repository) -> None:
    with pytest.raises(RuntimeError), repo.session() as s:
        s.objects.put("a", b"1")
        raise RuntimeError("boom")
    with pytest.raises(NotFoundError):
        s.objects.head("a")  # the session is gone
    with repo.session() as s2:
        s2.objects.put("b", b"2")
    with pytest.raises(NotFoundError):
        repo.attach(s2.session_id).objects.head("b")
    assert list(repo.objects.list()) == []


def test_commit_without_changes_raises_and_rolls_back(repo: Repository) -> None:
    with pytest.raises(BadRequestError), repo.session() as s:
        s.commit("nothing")
    with pytest.raises(NotFoundError):
        list(s.uncommitted())


def test_commit_result(repo: Repository) -> None:
    s = repo.session()
    s.objects.put("x", b"1")
    result = s.commit_result("via result")
    assert isinstance(result, CommitResult)
    assert result.status == "committed" and result.commit_id and result.web_url is None


def test_attach_and_uncommitted(repo: Repository) -> None:
    seed(repo, {"keep": b"k", "old": b"o"})
    session = repo.session()
    session.objects.put("data/new.csv", b"content")
    other = repo.attach(session.session_id)
    other.objects.put("data/file2.csv", b"more content")
    other.objects.delete("old")
    changes = {e.path: e for e in session.uncommitted()}
    assert set(changes) == {"data/new.csv", "data/file2.csv", "old"}
    assert changes["old"].entry is None
    assert changes["data/new.csv"].entry is not None
    assert changes["data/new.csv"].entry.size == 7
    assert [e.path for e in session.uncommitted(prefix="data/", amount=1)] == [
        "data/file2.csv", "data/new.csv"]
    commit_id = other.commit("finishing work")
    assert commit_id
    assert sorted(e.path for e in repo.objects.list()) == [
        "data/file2.csv", "data/new.csv", "keep"]


def test_warnings_not_emitted_on_plain_commit(repo: Repository) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seed(repo, {"w": b"1"})


# --- objects -----------------------------------------------------------------------

def test_put_variants_and_get(client: tilde.Client, repo: Repository, tmp_path: Path) -> None:
    p = tmp_path / "file.bin"
    p.write_bytes(b"from path")
    with repo.session() as s:
        o = s.objects
        assert o.put("bytes", b"b").path == "bytes"
        o.put("bytearray", bytearray(b"ba"))
        o.put("memoryview", memoryview(b"mv"))
        o.put("fileobj", io.BytesIO(b"file object"))
        o.put("path", p)
        o.put("iter", iter([b"it", b"er"]))  # unknown size: multipart
        o.put("empty-iter", iter([]))  # multipart with no part at all
        o.put("empty", b"")
        with pytest.raises(TypeError):
            o.put("str", "text")  # type: ignore[arg-type]
        expected = {"bytes": b"b", "bytearray": b"ba", "memoryview": b"mv",
                    "fileobj": b"file object", "path": b"from path", "iter": b"iter",
                    "empty-iter": b"", "empty": b""}
        for key, data in expected.items():
            with o.get(key) as f:
                assert f.read() == data, key
        s.commit("variants")
    assert client._upload_state.multipart  # the server took the multipart uploads
    assert sorted(e.path for e in repo.objects.list()) == sorted(expected)


def test_object_reader_properties_cache_and_streaming(repo: Repository) -> None:
    data = bytes(range(256)) * 100
    seed(repo, {"data/file.bin": data})
    reader = repo.objects.get("data/file.bin")
    assert reader.etag is None  # lazy: nothing sent yet
    with reader as f:
        assert f.content_length == len(data)
        assert f.etag and f.etag.startswith('"')
        assert f.content_type == "application/octet-stream"
        assert f.reproducible is True
        assert f.read() == data
        assert f.read() == data  # cached
    reader.close()  # idempotent
    with repo.objects.get("data/file.bin", cache=False) as f:
        chunks = list(f.iter_bytes(chunk_size=1000))
    assert b"".join(chunks) == data and max(len(c) for c in chunks) <= 1000
    with repo.objects.get("data/file.bin", presign=False) as f:
        assert f.read() == data


def test_byte_ranges(repo: Repository) -> None:
    data = bytes(range(256)) * 192  # 49152 bytes
    seed(repo, {"data/file.parquet": data})
    with repo.objects.get("data/file.parquet", byte_range=(0, 3)) as f:
        assert f.read() == data[:4]
    with repo.objects.get("data/file.parquet", byte_range=(1024, None)) as f:
        assert f.read() == data[1024:]
    with repo.objects.get("data/file.parquet", byte_range=(0, 1023)) as f:
        assert f.read() == data[:1024]
        assert f.content_range == "bytes 0-1023/49152"
        assert f.content_length == 1024
    with repo.session() as s, s.objects.get("data/file.parquet", byte_range=(10, 19)) as f:
        assert f.read() == data[10:20]
        assert f.reproducible is True


def test_head_list_delete_copy(repo: Repository) -> None:
    seed(repo, {"data/a.csv": b"a", "data/b.csv": b"bb", "data/sub/c.csv": b"ccc",
                "top.txt": b"t"})
    with repo.session() as s:
        meta = s.objects.head("data/b.csv")
        assert (meta.content_length, meta.content_type) == (2, "application/octet-stream")
        assert meta.etag and meta.reproducible is True
        s.objects.put("data/new.csv", b"new")
        assert s.objects.head("data/new.csv").reproducible is False

        entries = list(s.objects.list(prefix="data/", delimiter="/"))
        assert [(e.path, e.type) for e in entries] == [
            ("data/a.csv", "object"), ("data/b.csv", "object"), ("data/new.csv", "object"),
            ("data/sub/", "prefix")]
        assert entries[1].entry is not None and entries[1].entry.size == 2
        assert entries[3].entry is None
        paged = list(s.objects.list(amount=2))
        assert [e.path for e in paged] == ["data/a.csv", "data/b.csv", "data/new.csv",
                                           "data/sub/c.csv", "top.txt"]
        assert [e.path for e in s.objects.list(after="data/new.csv")] == [
            "data/sub/c.csv", "top.txt"]

        copied = s.objects.copy("data/a.csv", "copy/a.csv")
        assert (copied.source_path, copied.destination_path) == ("data/a.csv", "copy/a.csv")
        s.objects.delete("top.txt")
        assert s.objects.delete_many(["data/b.csv", "data/sub/c.csv"]) == 2
        with pytest.raises(NotFoundError) as info:
            s.objects.head("top.txt")
        assert info.value.message == ""
        # The head view is unchanged until the commit.
        assert repo.objects.head("top.txt").content_length == 1
        s.commit("object operations")
    assert [e.path for e in repo.objects.list()] == [
        "copy/a.csv", "data/a.csv", "data/new.csv"]
    with repo.objects.get("copy/a.csv") as f:
        assert f.read() == b"a"


def test_readme_error_handling(repo: Repository) -> None:
    caught = None
    try:
        with repo.session() as session, session.objects.get("nonexistent") as f:
            f.read()
    except NotFoundError as e:
        caught = e
    except TildeError:  # pragma: no cover - would be a failure below
        pass
    assert caught is not None
    assert isinstance(caught, APIError) and caught.status_code == 404
    assert caught.method == "GET" and "path=nonexistent" in caught.url
    assert isinstance(caught.message, str) and caught.message
    assert isinstance(caught.request_id, str)


def test_large_multipart_put(client: tilde.Client, repo: Repository) -> None:
    size = 70 * 1024 * 1024
    chunk = os.urandom(1024 * 1024)
    data = chunk * 70
    assert len(data) == size
    with repo.session() as s:
        result = s.objects.put("large-file.bin", data)
        assert result.path == "large-file.bin"
        assert s.objects.head("large-file.bin").content_length == size
        s.commit("large")
    assert client._upload_state.multipart
    with repo.objects.get("large-file.bin", cache=False) as f:
        total = 0
        out = bytearray()
        for part in f.iter_bytes(chunk_size=1024 * 1024):
            total += len(part)
            out += part
    assert total == size and bytes(out) == data
    with repo.objects.get("large-file.bin", byte_range=(size - 10, None)) as f:
        assert f.read() == data[-10:]


# --- commits -----------------------------------------------------------------------

def test_timeline_diff_revert(repo: Repository) -> None:
    c1 = seed(repo, {"a": b"1", "b": b"2"}, "first")
    with repo.session() as s:
        s.objects.put("a", b"changed")
        s.objects.delete("b")
        s.objects.put("c", b"3")
        c2 = s.commit("second")
    history = list(repo.timeline())
    assert [c.id for c in history][:2] == [c2, c1]
    assert [c.message for c in history][:2] == ["second", "first"]
    newest = history[0]
    assert newest.parents[0] == c1 and newest.creation_date is not None
    assert {(d.path, d.status) for d in newest.diff()} == {
        ("a", "changed"), ("b", "removed"), ("c", "added")}
    oldest = history[-1]
    assert oldest.parents == [] or all(p for p in oldest.parents)
    first = repo.commits.get(c1)
    first_diff = {(d.path, d.status) for d in first.diff()}
    assert ("a", "added") in first_diff and ("b", "added") in first_diff
    assert [c.id for c in repo.commits.list(amount=1)][:2] == [c2, c1]
    assert next(c.id for c in repo.commits.list(ref=c1)) == c1

    reverted = newest.revert(message="undo second")
    assert reverted.id and reverted.message == "undo second"
    assert reverted.parents == [c2]
    assert sorted(e.path for e in reverted.objects.list()) == ["a", "b"]
    with repo.objects.get("a") as f:
        assert f.read() == b"1"
    with pytest.raises(NotFoundError):
        repo.commits.get("0" * 40)
