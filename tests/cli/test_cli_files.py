"""`tilde cp|ls|cat|rm` over the tilde:// filesystem (docs/cli.md, "Files").

One repository serves the whole module; each test works under its own prefix, and the
tests that count commits make all of theirs themselves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from clihelpers import (
    cli_env,
    client,
    commit_ids,
    err,
    failed,
    head_files,
    ok,
    tilde,
    tilde_many,
    tilde_pty_stderr,
)

from conftest import RepoRef, ServerHandle, new_repo

BIG = os.urandom(300_000)
TREE = {"a.txt": b"alpha\n", "sub/b.bin": BIG, "sub/deeper/c.txt": b"\x00\x01 gamma",
        "empty": b""}


@pytest.fixture(scope="module")
def repo(server: ServerHandle) -> RepoRef:
    return new_repo(server)


@pytest.fixture(scope="module")
def env(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return cli_env(server, tmp_path_factory.mktemp("cli-files") / "home")


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def under(files: dict[str, bytes], prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{k}": v for k, v in files.items()}


def committed_line(r: subprocess.CompletedProcess[bytes], repo: RepoRef) -> str:
    """The one stderr line of a copy that committed (no progress output off a terminal)."""
    text = err(r)
    lines = text.splitlines()
    assert len(lines) == 1, text
    m = re.fullmatch(rf"tilde: committed ([0-9a-f]+) to {re.escape(repo.path)}", lines[0])
    assert m, text
    return m.group(1)


# --- cp: uploads ---------------------------------------------------------------------------

def test_cp_directory_is_one_commit_and_a_repeat_commits_nothing(
        server: ServerHandle, repo: RepoRef, env: dict[str, str], tmp_path: Path) -> None:
    src = make_tree(tmp_path / "results", TREE)
    before = commit_ids(server, repo.path)
    r = tilde("cp", "-r", "-m", "run 42", str(src), f"tilde://{repo.path}/up/", env=env)
    assert ok(r) == ""
    new_id = committed_line(r, repo)
    after = commit_ids(server, repo.path)
    assert after == [new_id, *before]
    assert head_files(server, repo.path, "up/") == under(TREE, "up/results")

    again = tilde("cp", "-r", str(src), f"tilde://{repo.path}/up/", env=env)
    ok(again)
    assert "nothing changed" in err(again)
    assert commit_ids(server, repo.path) == after


def test_cp_into_an_existing_directory_nests_by_base_name(
        server: ServerHandle, repo: RepoRef, env: dict[str, str], tmp_path: Path) -> None:
    src = make_tree(tmp_path / "run", {"x.txt": b"x", "y/z.txt": b"z"})
    dst = f"tilde://{repo.path}/named"
    ok(tilde("cp", "-r", str(src), dst, env=env))  # `named` is new: it becomes the copy
    assert head_files(server, repo.path, "named/") == {"named/x.txt": b"x",
                                                       "named/y/z.txt": b"z"}
    ok(tilde("cp", "-r", str(src), dst, env=env))  # now it exists: run/ goes inside
    assert head_files(server, repo.path, "named/") == {
        "named/x.txt": b"x", "named/y/z.txt": b"z",
        "named/run/x.txt": b"x", "named/run/y/z.txt": b"z"}


def test_cp_from_stdin(server: ServerHandle, repo: RepoRef, env: dict[str, str]) -> None:
    data = b"line 1\n\x00\xff binary tail"
    before = commit_ids(server, repo.path)
    r = tilde("cp", "-", f"tilde://{repo.path}/stdin/in.bin", env=env, input=data)
    ok(r)
    assert commit_ids(server, repo.path) == [committed_line(r, repo), *before]
    assert head_files(server, repo.path, "stdin/") == {"stdin/in.bin": data}


def test_cp_refusals_commit_nothing(server: ServerHandle, repo: RepoRef,
                                    env: dict[str, str], tmp_path: Path) -> None:
    src = make_tree(tmp_path / "dir", {"f.txt": b"f"})
    before = commit_ids(server, repo.path)
    base = f"tilde://{repo.path}"
    no_r, missing, at_ref, mixed, one_arg = tilde_many([
        ("cp", str(src), f"{base}/refused/dir"),
        ("cp", str(tmp_path / "no-such-file"), f"{base}/refused/x"),
        ("cp", str(src / "f.txt"), f"tilde://{repo.path}@{before[0][:10]}/refused/f.txt"),
        ("cp", str(src / "f.txt"), f"{base}/up/results/a.txt", f"{base}/refused/"),
        ("cp", f"{base}/up/results/a.txt"),
    ], env=env)
    assert "-r" in failed(no_r, 2)
    assert "no-such-file" in failed(missing, 1)
    assert "cannot be written" in failed(at_ref, 1)
    failed(mixed, 2)
    failed(one_arg, 2)
    assert commit_ids(server, repo.path) == before
    assert head_files(server, repo.path, "refused/") == {}


def test_cp_failing_mid_way_commits_nothing(server: ServerHandle, repo: RepoRef,
                                            env: dict[str, str], tmp_path: Path) -> None:
    """Root reads every file, so the failing one is refused by the server instead: its
    key (nested directories of 200-character names) is longer than an object key may be.
    The other files of the copy, one of them larger, go up first in the same session."""
    src = make_tree(tmp_path / "batch", {"a.txt": b"a", "big.bin": BIG})
    deep = src.joinpath(*["z" * 200] * 6)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"too deep")
    before = commit_ids(server, repo.path)
    line = failed(tilde("cp", "-r", str(src), f"tilde://{repo.path}/mid/", env=env), 1)
    assert "400" in line
    assert commit_ids(server, repo.path) == before
    assert head_files(server, repo.path, "mid/") == {}


def test_progress_only_on_a_terminal(server: ServerHandle, repo: RepoRef,
                                     env: dict[str, str], tmp_path: Path) -> None:
    src = make_tree(tmp_path / "prog", {"p.bin": BIG, "q.txt": b"q"})
    # stderr a pipe: only the commit line (test_cp_directory_... checks the same by default)
    r = tilde("cp", "-r", "--no-progress", str(src), f"tilde://{repo.path}/prog1", env=env)
    ok(r)
    committed_line(r, repo)
    # stderr a terminal, nothing forced: the bar is drawn there
    status, stdout, terminal = tilde_pty_stderr(
        "cp", "-r", str(src), f"tilde://{repo.path}/prog2", env=env)
    assert status == 0, terminal
    assert stdout == b""
    text = terminal.decode(errors="replace")
    assert "upload 2 file(s)" in text
    assert "100%" in text
    assert "tilde: committed" in text
    assert head_files(server, repo.path, "prog2/") == {"prog2/p.bin": BIG, "prog2/q.txt": b"q"}


# --- cp: downloads and server-side copies --------------------------------------------------

@pytest.fixture(scope="module")
def uploaded(repo: RepoRef, env: dict[str, str],
             tmp_path_factory: pytest.TempPathFactory) -> str:
    """TREE at tilde://REPO/dl/tree; returns that URL."""
    src = make_tree(tmp_path_factory.mktemp("dl-src") / "tree", TREE)
    ok(tilde("cp", "-r", str(src), f"tilde://{repo.path}/dl/tree", env=env))
    return f"tilde://{repo.path}/dl/tree"


def test_cp_downloads_files_and_directories(uploaded: str, env: dict[str, str],
                                            tmp_path: Path) -> None:
    tree_copy, file_copy, into_dir = tmp_path / "copy", tmp_path / "one" / "b.bin", tmp_path
    dir_r, file_r, into_r, stdout_r, no_r = tilde_many([
        ("cp", "-r", uploaded, str(tree_copy)),
        ("cp", f"{uploaded}/sub/b.bin", str(file_copy)),
        ("cp", f"{uploaded}/a.txt", str(into_dir)),
        ("cp", f"{uploaded}/sub/deeper/c.txt", f"{uploaded}/a.txt", "-"),
        ("cp", f"{uploaded}/sub", str(tmp_path / "nope")),
    ], env=env)
    assert ok(dir_r) == ""
    assert read_tree(tree_copy) == TREE
    ok(file_r)
    assert file_copy.read_bytes() == BIG
    ok(into_r)
    assert (into_dir / "a.txt").read_bytes() == TREE["a.txt"]
    assert stdout_r.returncode == 0 and stdout_r.stderr == b""
    assert stdout_r.stdout == TREE["sub/deeper/c.txt"] + TREE["a.txt"]
    assert "-r" in failed(no_r, 2)
    assert not (tmp_path / "nope").exists()


def test_cp_download_to_a_bare_file_name(uploaded: str, env: dict[str, str],
                                         tmp_path: Path) -> None:
    """`tilde cp tilde://…/a.txt copy.txt`: a new local name without a directory part, the
    most ordinary download there is."""
    r = tilde("cp", f"{uploaded}/a.txt", "copy.txt", env=env, cwd=tmp_path)
    ok(r)
    assert (tmp_path / "copy.txt").read_bytes() == TREE["a.txt"]


def test_cp_server_side_copy_is_one_commit(server: ServerHandle, repo: RepoRef, uploaded: str,
                                           env: dict[str, str]) -> None:
    before = commit_ids(server, repo.path)
    r = tilde("cp", "-r", "-m", "archive", f"{uploaded}/sub", f"tilde://{repo.path}/archive",
              env=env)
    ok(r)
    assert commit_ids(server, repo.path) == [committed_line(r, repo), *before]
    assert head_files(server, repo.path, "archive/") == {
        "archive/b.bin": BIG, "archive/deeper/c.txt": TREE["sub/deeper/c.txt"]}
    r = tilde("cp", f"{uploaded}/a.txt", f"tilde://{repo.path}/archive/a-copy.txt", env=env)
    ok(r)
    assert head_files(server, repo.path, "archive/a-copy")["archive/a-copy.txt"] == b"alpha\n"
    assert len(commit_ids(server, repo.path)) == len(before) + 2


# --- ls, cat -------------------------------------------------------------------------------

def test_ls_cat_and_an_older_commit(server: ServerHandle, repo: RepoRef, uploaded: str,
                                    env: dict[str, str], tmp_path: Path) -> None:
    bare = uploaded.removeprefix("tilde://")
    plain, long, rec, as_json, cat = tilde_many([
        ("ls", uploaded),
        ("ls", "-l", bare),
        ("ls", "-R", uploaded),
        ("ls", "--json", uploaded),
        ("cat", f"{uploaded}/a.txt", f"{bare}/sub/deeper/c.txt", f"{uploaded}/empty"),
    ], env=env)
    assert ok(plain).splitlines() == ["dl/tree/a.txt", "dl/tree/empty", "dl/tree/sub/"]
    rows = [line.split() for line in ok(long).splitlines()]
    assert [(r[0], r[-1]) for r in rows] == [("6", "dl/tree/a.txt"), ("0", "dl/tree/empty"),
                                             ("0", "dl/tree/sub/")]
    assert re.match(r"\d{4}-\d\d-\d\dT", rows[0][1])
    assert sorted(ok(rec).splitlines()) == sorted(f"dl/tree/{k}" for k in TREE)
    entries = {e["name"]: e for e in json.loads(ok(as_json))}
    assert {n: (e["type"], e["size"]) for n, e in entries.items()} == {
        f"{bare}/a.txt": ("file", 6), f"{bare}/empty": ("file", 0),
        f"{bare}/sub": ("directory", 0)}
    assert cat.returncode == 0 and cat.stderr == b""
    assert cat.stdout == TREE["a.txt"] + TREE["sub/deeper/c.txt"]

    # change the directory, then look at it as it was
    old = commit_ids(server, repo.path)[0]
    with client(server) as c:  # the change is made by the Python client, in one commit
        session = c.repository(repo.path).session()
        session.objects.put("dl/tree/late.txt", b"late")
        session.objects.delete("dl/tree/a.txt")
        session.commit("change dl/tree")
    at_old = f"tilde://{repo.path}@{old[:8]}/dl/tree"
    now, then, cat_then = tilde_many([
        ("ls", uploaded), ("ls", at_old), ("cat", f"{at_old}/a.txt")], env=env)
    assert ok(now).splitlines() == ["dl/tree/empty", "dl/tree/late.txt", "dl/tree/sub/"]
    assert ok(then).splitlines() == ["dl/tree/a.txt", "dl/tree/empty", "dl/tree/sub/"]
    assert cat_then.stdout == b"alpha\n" and cat_then.returncode == 0


# --- rm ------------------------------------------------------------------------------------

def test_rm_one_commit_recursive_and_refusals(server: ServerHandle, repo: RepoRef,
                                              env: dict[str, str], tmp_path: Path) -> None:
    files = {"one.txt": b"1", "two.txt": b"2", "keep.txt": b"k", "d/x": b"x", "d/e/y": b"y"}
    src = make_tree(tmp_path / "rmme", files)
    ok(tilde("cp", "-r", str(src), f"tilde://{repo.path}/rmme", env=env))
    base = f"tilde://{repo.path}/rmme"
    before = commit_ids(server, repo.path)

    dir_no_r, missing = tilde_many([("rm", f"{base}/d"), ("rm", f"{base}/one.txt",
                                                          f"{base}/absent.txt")], env=env)
    assert "-r" in failed(dir_no_r, 2)
    assert "absent.txt" in failed(missing, 1)
    assert commit_ids(server, repo.path) == before
    assert head_files(server, repo.path, "rmme/") == under(files, "rmme")

    r = tilde("rm", "-m", "drop two", f"{base}/one.txt", f"{repo.path}/rmme/two.txt", env=env)
    ok(r)
    assert commit_ids(server, repo.path) == [committed_line(r, repo), *before]
    r = tilde("rm", "-r", f"{base}/d", env=env)
    ok(r)
    assert len(commit_ids(server, repo.path)) == len(before) + 2
    assert head_files(server, repo.path, "rmme/") == {"rmme/keep.txt": b"k"}


def test_ls_above_the_repositories(server: ServerHandle, repo: RepoRef,
                                   env: dict[str, str]) -> None:
    """`tilde ls tilde://` lists organizations, `tilde ls tilde://ORG` its repositories."""
    assert f"{repo.org}/" in ok(tilde("ls", "tilde://", env=env)).splitlines()
    assert f"{repo.path}/" in ok(tilde("ls", f"tilde://{repo.org}", env=env)).splitlines()
    failed(tilde("ls", "-R", f"tilde://{repo.org}", env=env), 2)
    failed(tilde("ls", "tilde://no-such-org-zz", env=env), 1)
