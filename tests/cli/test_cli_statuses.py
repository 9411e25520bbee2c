"""Failures: one `tilde:` line on stderr, the documented exit status, never a traceback
(docs/cli.md, "Output and errors")."""

from __future__ import annotations

from pathlib import Path

import pytest
from clihelpers import cli_env, commit_ids, failed, tilde, tilde_many

from conftest import RepoRef, ServerHandle, free_port, new_repo

WRONG_KEY = "tk-wrong-" + "q" * 32


@pytest.fixture(scope="module")
def repo(server: ServerHandle) -> RepoRef:
    return new_repo(server)


@pytest.fixture(scope="module")
def env(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return cli_env(server, tmp_path_factory.mktemp("cli-errors") / "home")


def test_malformed_paths_are_usage_errors(repo: RepoRef, env: dict[str, str]) -> None:
    results = tilde_many([
        ("ls", "-R", f"tilde://{repo.org}"),
        ("cat", "only-an-org"),
        ("repo", "show", "noslash"),
        ("sandbox", "info", "-r", "noslash", "some-id"),
        ("log", f"{repo.path}@abc"),
    ], env=env)
    for r in results:
        failed(r, 2)


def test_a_repository_path_with_too_many_parts_is_a_usage_error(env: dict[str, str]) -> None:
    """ORG/REPO commands given ORG/REPO/MORE: a malformed path (exit 2), not a request for
    a repository named 'REPO/MORE'."""
    for r in tilde_many([("repo", "show", "acme/lake/extra"), ("log", "acme/lake/extra")],
                        env=env):
        failed(r, 2)


def test_unknown_options_and_missing_arguments_are_one_line(env: dict[str, str]) -> None:
    """Usage errors are failures too: exit 2 and one `tilde:` line, like every other."""
    for r in tilde_many([("--no-such-option", "org", "list"), ("ls", "--bogus", "a/b"),
                         ("sandbox", "run", "--", "true")], env=env):
        failed(r, 2)


def test_a_refused_key_exits_4(server: ServerHandle, repo: RepoRef, env: dict[str, str],
                               tmp_path: Path) -> None:
    """--api-key overrides the (valid) key of the environment; the server refuses it."""
    local = tmp_path / "f.txt"
    local.write_bytes(b"f")
    base = f"tilde://{repo.path}"
    before = commit_ids(server, repo.path)
    results = tilde_many([
        ("--api-key", WRONG_KEY, "org", "list"),
        ("--api-key", WRONG_KEY, "ls", base),
        ("--api-key", WRONG_KEY, "cp", str(local), f"{base}/f.txt"),
    ], env=env)
    for r in results:
        line = failed(r, 4)
        assert WRONG_KEY not in line and WRONG_KEY[9:-4] not in line
    assert commit_ids(server, repo.path) == before


def test_a_refused_key_exits_4_for_cat_too(repo: RepoRef, env: dict[str, str]) -> None:
    """`cat` reads through the filesystem's HEAD, whose 401 has no body to name it."""
    failed(tilde("--api-key", WRONG_KEY, "cat", f"tilde://{repo.path}/x.txt", env=env), 4)


def test_an_unreachable_endpoint(server: ServerHandle, repo: RepoRef,
                                 tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # bound once, then released: nobody listens
    env = cli_env(server, tmp_path / "home", extra={"TILDE_ENDPOINT_URL": closed})
    local = tmp_path / "f.txt"
    local.write_bytes(b"f")
    results = tilde_many([
        ("org", "list"),
        ("ls", f"tilde://{repo.path}"),
        ("cp", str(local), f"tilde://{repo.path}/f.txt"),
    ], env=env)
    for r in results:
        assert "cannot reach" in failed(r, 1)


def test_missing_objects_and_repositories_exit_1(repo: RepoRef, env: dict[str, str]) -> None:
    results = tilde_many([
        ("cat", f"tilde://{repo.path}/no/such/file"),
        ("ls", f"tilde://{repo.org}/no-such-repo/"),
        ("sandbox", "info", "-r", repo.path, "00000000-0000-0000-0000-000000000000"),
    ], env=env)
    for r in results:
        failed(r, 1)
