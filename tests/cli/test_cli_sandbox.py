"""`tilde sandbox run|logs|info|cancel|list` and `tilde shell` against real sandboxes
(bubblewrap on the session's server). Few runs: each costs a second or more.

The tests of this module share one repository and run in order; each writes its own paths.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from clihelpers import TILDE, cli_env, commit_ids, failed, head_files, ok, out, tilde

from conftest import RepoRef, ServerHandle, new_repo

ENDED = {"done", "errored", "error", "cancelled", "failed", "timeout", "lost"}


@pytest.fixture(scope="module")
def repo(server: ServerHandle) -> RepoRef:
    return new_repo(server)


@pytest.fixture(scope="module")
def env(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return cli_env(server, tmp_path_factory.mktemp("cli-sandbox") / "home")


def sandbox_record(server: ServerHandle, repo: RepoRef, sandbox_id: str) -> dict[str, Any]:
    """The server's own record of a sandbox (plain HTTP, not the CLI)."""
    r = httpx.get(f"{server.endpoint}/api/v1/organizations/{repo.org}/repositories/"
                  f"{repo.repo}/sandboxes/{sandbox_id}",
                  headers={"Authorization": f"Bearer {server.api_key}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def listed(repo: RepoRef, env: dict[str, str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in
            ok(tilde("sandbox", "list", "-r", repo.path, "--json", env=env)).splitlines()]


def test_run_streams_output_and_exits_with_the_commands_status(
        server: ServerHandle, repo: RepoRef, env: dict[str, str]) -> None:
    before = commit_ids(server, repo.path)
    r = tilde("sandbox", "run", "-r", repo.path, "--",
              "sh", "-c", "echo out; echo err >&2; exit 3", env=env)
    assert r.returncode == 3, r
    assert out(r).splitlines() == ["out", "err"]  # merged, as the service logs them
    assert "Traceback" not in r.stderr.decode()
    assert commit_ids(server, repo.path) == before  # a failed command commits nothing
    (sb,) = listed(repo, env)
    assert sb["state"] in ENDED and sb["exit_code"] == 3
    assert sandbox_record(server, repo, sb["id"])["image"] == "ubuntu"  # the default


def test_run_commits_what_it_writes_with_env_and_image(
        server: ServerHandle, repo: RepoRef, env: dict[str, str]) -> None:
    before = commit_ids(server, repo.path)
    image_env = {**env, "TILDE_DEFAULT_SANDBOX_IMAGE": "debian"}
    r = tilde("sandbox", "run", "-r", repo.path, "-e", "GREETING=hello there", "-e", "N=7",
              "--", "sh", "-c",
              'pwd; mkdir -p run && printf "%s/%s" "$GREETING" "$N" > run/made.txt',
              env=image_env)
    assert r.returncode == 0, r
    assert out(r) == "/sandbox\n"
    after = commit_ids(server, repo.path)
    assert len(after) == len(before) + 1
    assert head_files(server, repo.path, "run/") == {"run/made.txt": b"hello there/7"}
    newest = [s for s in listed(repo, env) if s["commit_id"]]
    assert [s["commit_id"] for s in newest] == [after[0]]
    assert sandbox_record(server, repo, newest[0]["id"])["image"] == "debian"


def test_detach_info_and_logs(server: ServerHandle, repo: RepoRef,
                              env: dict[str, str]) -> None:
    r = tilde("sandbox", "run", "-r", repo.path, "-d", "--",
              "sh", "-c", "echo detached output; sleep 1; echo second line", env=env)
    sandbox_id = ok(r).strip()
    assert sandbox_id and "\n" not in sandbox_id
    first = json.loads(ok(tilde("sandbox", "info", "-r", repo.path, sandbox_id, "--json",
                                env=env)))
    assert first["id"] == sandbox_id
    assert first["state"] not in ENDED  # `-d` returned at once
    deadline = time.monotonic() + 60  # wait through the server, then ask the CLI again
    while (sandbox_record(server, repo, sandbox_id)["finished_at"] is None
           and time.monotonic() < deadline):
        time.sleep(0.2)
    info = json.loads(ok(tilde("sandbox", "info", "-r", repo.path, sandbox_id, "--json",
                               env=env)))
    assert info["state"] == "done" and info["exit_code"] == 0
    text = ok(tilde("sandbox", "info", "-r", repo.path, sandbox_id, env=env))
    assert "state:" in text and "done" in text
    logs = tilde("sandbox", "logs", "-r", repo.path, sandbox_id, env=env)
    assert ok(logs) == "detached output\nsecond line\n"


def test_cancel_while_run_follows_exits_125(server: ServerHandle, repo: RepoRef,
                                            env: dict[str, str], tmp_path: Path) -> None:
    before = commit_ids(server, repo.path)
    known = {s["id"] for s in listed(repo, env)}
    proc = subprocess.Popen(
        [str(TILDE), "sandbox", "run", "-r", repo.path, "--",
         "sh", "-c", "echo never-committed > cancelled.txt; sleep 30"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        running: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while not running and time.monotonic() < deadline and proc.poll() is None:
            running = [s for s in listed(repo, env)
                       if s["id"] not in known and s["state"] == "running"]
            if not running:
                time.sleep(0.2)
        assert running, "the sandbox never showed as running"
        sandbox_id = running[0]["id"]
        cancel = tilde("sandbox", "cancel", "-r", repo.path, sandbox_id, env=env)
        assert ok(cancel) == ""
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 125, (stdout, stderr)
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tilde: ") and "cancelled" in lines[0]
    info = json.loads(ok(tilde("sandbox", "info", "-r", repo.path, sandbox_id, "--json",
                               env=env)))
    assert info["state"] == "cancelled" and not info["commit_id"]
    assert commit_ids(server, repo.path) == before
    assert "cancelled.txt" not in head_files(server, repo.path)


def test_shell_lines_cd_export_and_commit(server: ServerHandle, repo: RepoRef,
                                          env: dict[str, str]) -> None:
    before = commit_ids(server, repo.path)
    lines = ["pwd", "mkdir -p sub", "cd sub", "pwd", "export X=5", "echo $X",
             "echo written > w.txt", "# a comment", "", "sh -c 'exit 6'"]
    r = tilde("shell", "-r", repo.path, env=env, input="\n".join(lines) + "\n")
    assert r.returncode == 6, r
    assert [line for line in out(r).splitlines() if line] == ["/sandbox", "/sandbox/sub", "5"]
    assert "Traceback" not in r.stderr.decode()
    assert len(commit_ids(server, repo.path)) == len(before) + 1
    assert head_files(server, repo.path, "sub/") == {"sub/w.txt": b"written\n"}


def test_shell_exit_status_and_what_follows_exit(server: ServerHandle, repo: RepoRef,
                                                 env: dict[str, str]) -> None:
    r = tilde("shell", "-r", repo.path, env=env,
              input="echo before\necho kept > exit.txt\nexit 7\necho after > after.txt\n")
    assert r.returncode == 7, r
    assert out(r).split() == ["before"]
    files = head_files(server, repo.path)
    assert files.get("exit.txt") == b"kept\n"  # `exit` ends the sandbox cleanly: committed
    assert "after.txt" not in files


def test_sandbox_usage_errors(repo: RepoRef, env: dict[str, str]) -> None:
    failed(tilde("sandbox", "run", "-r", repo.path, "-e", "NOEQUALS", "--", "true", env=env),
           2)


def test_exec_and_positional_shell_are_the_service_spellings(
        server: ServerHandle, repo: RepoRef, env: dict[str, str]) -> None:
    """`tilde exec ORG/REPO -- CMD` is `sandbox run -r`; `tilde shell ORG/REPO` is `shell -r`;
    naming the repository twice or not at all is a usage error."""
    r = tilde("exec", repo.path, "--", "sh", "-c", "echo via-exec > exec.txt; echo done; exit 5",
              env=env)
    assert r.returncode == 5 and out(r).splitlines() == ["done"], r
    assert "exec.txt" not in head_files(server, repo.path)  # exit 5: nothing committed
    r = tilde("shell", repo.path, input="echo positional > shell-pos.txt\ncat shell-pos.txt\n",
              env=env)
    assert r.returncode == 0 and out(r).splitlines() == ["positional"], r
    assert head_files(server, repo.path)["shell-pos.txt"] == b"positional\n"
    failed(tilde("shell", repo.path, "-r", repo.path, env=env), 2)
    failed(tilde("shell", env=env), 2)
