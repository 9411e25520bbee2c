"""`tilde log`: newest first, +/~/- per commit, -n, --json, --no-changes (docs/cli.md)."""

from __future__ import annotations

import json
import re

import pytest
from clihelpers import cli_env, commit_ids, failed, ok, tilde

from conftest import RepoRef, ServerHandle, new_repo


@pytest.fixture(scope="module")
def history(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[RepoRef, dict[str, str], list[str]]:
    """Three commits made through the CLI: add two files, change one and add one, remove
    one. Returns the repository, the env and the three commit ids, newest first."""
    tmp = tmp_path_factory.mktemp("cli-log")
    env = cli_env(server, tmp / "home")
    ref = new_repo(server)
    base = f"tilde://{ref.path}"
    src = tmp / "v1"
    src.mkdir()
    (src / "keep.txt").write_text("one\n")
    (src / "gone.txt").write_text("soon gone\n")
    ok(tilde("cp", "-r", "-m", "first load", str(src), f"{base}/data", env=env))
    (src / "keep.txt").write_text("two\n")
    (src / "new.txt").write_text("new\n")
    ok(tilde("cp", "-m", "second", str(src / "keep.txt"), str(src / "new.txt"),
             f"{base}/data/", env=env))
    ok(tilde("rm", "-m", "cleanup", f"{base}/data/gone.txt", env=env))
    ids = commit_ids(server, ref.path)
    return ref, env, ids[:3]


def test_log_lists_newest_first_with_marks(
        history: tuple[RepoRef, dict[str, str], list[str]]) -> None:
    ref, env, ids = history
    text = ok(tilde("log", ref.path, env=env))
    shown = re.findall(r"^commit ([0-9a-f]+)$", text, re.M)
    assert shown[:3] == ids
    blocks = text.split("\ncommit ")
    cleanup, second, first = blocks[0], blocks[1], blocks[2]
    assert "    cleanup" in cleanup and "    - data/gone.txt" in cleanup
    assert "+" not in cleanup.split("cleanup", 1)[1]
    assert "    ~ data/keep.txt" in second and "    + data/new.txt" in second
    assert "    + data/keep.txt" in first and "    + data/gone.txt" in first
    assert "    first load" in first
    assert re.search(r"^Author: admin$", cleanup, re.M)
    assert re.search(r"^Date:   \d{4}-\d\d-\d\dT", cleanup, re.M)


def test_log_limit_json_and_no_changes(
        history: tuple[RepoRef, dict[str, str], list[str]]) -> None:
    ref, env, ids = history
    one = ok(tilde("log", ref.path, "-n", "1", env=env))
    assert re.findall(r"^commit ([0-9a-f]+)$", one, re.M) == [ids[0]]

    lines = ok(tilde("log", f"tilde://{ref.path}", "--json", env=env)).splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d["id"] for d in docs[:3]] == ids
    assert docs[0]["message"] == "cleanup" and docs[0]["parents"] == [ids[1]]
    assert docs[0]["committer"] == "admin"
    assert docs[0]["changes"] == [{"path": "data/gone.txt", "status": "removed"}]
    assert sorted((c["path"], c["status"]) for c in docs[1]["changes"]) == [
        ("data/keep.txt", "changed"), ("data/new.txt", "added")]
    assert sorted((c["path"], c["status"]) for c in docs[2]["changes"]) == [
        ("data/gone.txt", "added"), ("data/keep.txt", "added")]

    bare = ok(tilde("log", ref.path, "-n", "2", "--no-changes", "--json", env=env))
    docs = [json.loads(line) for line in bare.splitlines()]
    assert [d["id"] for d in docs] == ids[:2]
    assert all("changes" not in d for d in docs)
    text = ok(tilde("log", ref.path, "--no-changes", "--ref", ids[1], env=env))
    assert re.findall(r"^commit ([0-9a-f]+)$", text, re.M)[:2] == ids[1:3]
    assert "data/" not in text


def test_log_of_a_missing_repository_fails(
        history: tuple[RepoRef, dict[str, str], list[str]]) -> None:
    ref, env, _ = history
    failed(tilde("log", f"{ref.org}/no-such-repo", env=env), 1)
    failed(tilde("log", "not-a-repo-path", env=env), 2)
