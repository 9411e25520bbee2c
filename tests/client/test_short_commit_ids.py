"""The bundled client with short commit ids against a real tilde-server: ids pass through
untouched, and what ``commits.get`` returns carries the full id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tilde
from conftest import RepoRef, ServerHandle
from tilde.exceptions import BadRequestError, NotFoundError
from tilde.models import Repository


@pytest.fixture
def client(client_env: ServerHandle) -> Iterator[tilde.Client]:
    with tilde.Client() as c:
        yield c


@pytest.fixture
def repo(client: tilde.Client, repo_ref: RepoRef) -> Repository:
    return client.repository(repo_ref.path)


def commit(repo: Repository, files: dict[str, bytes], message: str) -> str:
    with repo.session() as s:
        for k, v in files.items():
            s.objects.put(k, v)
        cid = s.commit(message)
    assert cid
    return cid


def test_get_by_prefix_returns_the_full_commit(repo: Repository) -> None:
    c1 = commit(repo, {"a.txt": b"one"}, "first")
    c2 = commit(repo, {"b.txt": b"two"}, "second")
    for n in (4, 8, 40):
        got = repo.commits.get(c1[:n])
        assert got.id == c1 and got.message == "first"
        assert got == repo.commits.get(c1)
    second = repo.commits.get(c2[:6])
    assert second.id == c2 and second.parents == [c1]
    # The handle's reads pin the full id: ref= of the first commit.
    assert [o.path for o in repo.commits.get(c1[:5]).objects.list()] == ["a.txt"]
    assert repo.commits.get(c1[:5]).objects.get("a.txt").read() == b"one"
    assert [e.path for e in second.diff()] == ["b.txt"]
    # History and revert take prefixes as well.
    assert [c.id for c in repo.commits.list(ref=c1[:7])] == [c1]
    reverted = repo.commits.get(c2[:7]).revert()
    assert len(reverted.id) == 64 and reverted.parents == [c2]
    assert [o.path for o in repo.objects.list()] == ["a.txt"]


def test_short_and_unknown_ids_are_the_servers_answers(repo: Repository) -> None:
    c1 = commit(repo, {"a": b"1"}, "only")
    with pytest.raises(BadRequestError) as bad:
        repo.commits.get(c1[:3])
    assert bad.value.status_code == 400 and "at least 4" in bad.value.message
    missing = ("f" if c1[0] != "f" else "e") * 8
    with pytest.raises(NotFoundError):
        repo.commits.get(missing)
    with pytest.raises(NotFoundError):
        list(repo.commits.list(ref=missing))
