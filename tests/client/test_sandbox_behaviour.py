"""The bundled client's sandboxes against a real tilde-server (bubblewrap sandboxes).

Transactional behaviour is what matters here: a sandbox's writes under /sandbox land in one
commit only when it ends well; a failure, timeout or cancel commits nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

import tilde
from conftest import RepoRef, ServerHandle
from tilde.exceptions import CommandError, SandboxError
from tilde.models import Repository, RunResult, Sandbox


@pytest.fixture
def client(client_env: ServerHandle) -> Iterator[tilde.Client]:
    with tilde.Client() as c:
        yield c


@pytest.fixture
def repo(client: tilde.Client, repo_ref: RepoRef) -> Repository:
    return client.repository(repo_ref.path)


def head_files(repo: Repository) -> dict[str, bytes]:
    out = {}
    for entry in repo.objects.list():
        with repo.objects.get(entry.path) as f:
            out[entry.path] = f.read()
    return out


def history(repo: Repository) -> list[str]:
    return [c.id for c in repo.commits.list()]


def wait_state(sandbox: Sandbox, states: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = sandbox.status().state
        if state in states or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def test_python_one_liner_writes_files_in_one_commit(repo: Repository) -> None:
    code = ("import pathlib; p = pathlib.Path('/sandbox/out'); p.mkdir(); "
            "[(p / f'{i}.txt').write_text(str(i * i)) for i in range(3)]; print('wrote 3')")
    result = repo.execute(["python3", "-c", code])
    assert isinstance(result, RunResult) and result.exit_code == 0
    assert result.stdout.text() == "wrote 3\n"
    assert head_files(repo) == {"out/0.txt": b"0", "out/1.txt": b"1", "out/2.txt": b"4"}
    commits = list(repo.commits.list())
    assert len(commits) == 1
    changed = sorted(e.path for e in commits[0].diff())
    assert changed == ["out/0.txt", "out/1.txt", "out/2.txt"]


def test_failing_command_commits_nothing(repo: Repository) -> None:
    repo.execute("echo keep > /sandbox/keep.txt")
    before = history(repo)
    with pytest.raises(CommandError) as info:
        repo.execute("echo junk > /sandbox/junk.txt; rm /sandbox/keep.txt; echo bye >&2; exit 7")
    err = info.value
    assert isinstance(err, SandboxError)
    assert err.result.exit_code == 7 and err.result.stdout.text() == "bye\n"
    assert err.command.startswith("echo junk")
    assert history(repo) == before
    assert head_files(repo) == {"keep.txt": b"keep\n"}
    result = repo.execute("exit 5", check=False)
    assert result.exit_code == 5 and history(repo) == before


def test_command_without_changes_makes_no_commit(repo: Repository) -> None:
    assert repo.execute("ls /sandbox").exit_code == 0
    assert history(repo) == []


def test_timeout_is_a_failed_sandbox(repo: Repository) -> None:
    with pytest.raises(SandboxError) as info:
        repo.execute("echo x > /sandbox/late.txt; sleep 30", timeout=2)
    assert "failed" in str(info.value) and "timeout" in str(info.value)
    with pytest.raises(SandboxError) as info2:
        repo.execute("sleep 30", timeout=1, check=False)
    assert not isinstance(info2.value, CommandError)
    assert history(repo) == []


def test_cancel_rolls_back(repo: Repository) -> None:
    sandbox = repo.sandboxes.create(
        image="ubuntu", command=["sh", "-c", "echo x > /sandbox/c.txt; echo started; sleep 60"])
    assert wait_state(sandbox, {"running"}) == "running"
    assert sandbox in list(repo.sandboxes.list())
    sandbox.cancel()
    assert wait_state(sandbox, {"cancelled"}) == "cancelled"
    status = sandbox.status()
    assert status.state == "cancelled" and status.commit_id == ""
    assert history(repo) == []


def test_status_and_logs(repo: Repository) -> None:
    sandbox = repo.sandboxes.create(image="ubuntu", command=["sh", "-c", "echo one; echo two >&2"],
                                    env={"GREETING": "hi"})
    assert wait_state(sandbox, {"committed", "error", "failed"}) == "committed"
    status = sandbox.status()
    assert status.exit_code == 0 and status.error_message == ""
    with status.stdout() as log:
        assert list(log) == ["one", "two"]
    with status.network() as net:
        assert [json.loads(line) for line in net if line] == []
    with pytest.raises(RuntimeError):
        list(status.stdout())
    assert repo.sandboxes.get(sandbox.id) == sandbox


def test_env_mountpoint_and_path_prefix(repo: Repository) -> None:
    repo.execute("mkdir -p /sandbox/sub && echo base > /sandbox/sub/a.txt")
    r = repo.execute('cat /data/a.txt; echo "$GREETING" > /data/b.txt', env={"GREETING": "hi"},
                     mountpoint="/data", path_prefix="sub/")
    assert r.stdout.text() == "base\n"
    assert head_files(repo) == {"sub/a.txt": b"base\n", "sub/b.txt": b"hi\n"}


def test_shell_session_with_several_runs(repo: Repository) -> None:
    with repo.shell(image="python-312") as sh:
        assert sh.run("echo 1 > /sandbox/counter").exit_code == 0
        for _ in range(3):
            r = sh.run("n=$(cat /sandbox/counter); echo $((n + 1)) > /sandbox/counter; "
                       "cat /sandbox/counter")
            assert r.exit_code == 0
        assert r.stdout.text() == "4"
        assert sh.run("pwd").stdout.text() == "/sandbox"
        bad = sh.run("cat /sandbox/missing")
        assert bad.exit_code != 0 and "missing" in bad.stdout.text()
        with pytest.raises(CommandError):
            sh.run("false", check=True)
    assert head_files(repo) == {"counter": b"4\n"}
    assert len(history(repo)) == 1


def test_shell_exception_cancels_and_commits_nothing(repo: Repository) -> None:
    shell = repo.shell()
    with pytest.raises(RuntimeError), shell as sh:
        sh.run("echo x > /sandbox/x.txt")
        raise RuntimeError("abandon")
    assert wait_state(shell.sandbox, {"cancelled"}) == "cancelled"
    assert history(repo) == []


def test_code_inside_uses_the_sandbox_credentials(repo: Repository) -> None:
    """TILDE_SANDBOX_CREDENTIALS_URI: the client inside the sandbox needs no API key."""
    code = ("import os, tilde; assert 'TILDE_API_KEY' not in os.environ; "
            "r = tilde.repository(os.environ['TILDE_REPOSITORY']); "
            "print(r.name, sorted(e.path for e in r.objects.list()))")
    repo.execute("echo a > /sandbox/a.txt")
    result = repo.execute(["python3", "-c", code])
    assert result.stdout.text() == f"{repo.name} ['a.txt']\n"


def test_triggers_crud_and_run(repo: Repository) -> None:
    triggers = repo.sandbox_triggers
    t = triggers.create(
        name="on-data", description="copy incoming",
        conditions=[{"type": "prefix", "prefix": "incoming/"}],
        sandbox_config={"image": "ubuntu",
                        "command": ["sh", "-c", "cp /sandbox/incoming/* /sandbox/seen/ 2>/dev/null"
                                    " || (mkdir -p /sandbox/seen && cp /sandbox/incoming/* "
                                    "/sandbox/seen/)"]})
    assert t.enabled and t.name == "on-data" and t.description == "copy incoming"
    assert t.conditions[0].prefix == "incoming/" and t.sandbox_config is not None
    assert t.sandbox_config.image == "ubuntu"
    assert [x.id for x in triggers.list()] == [t.id]
    assert triggers.get(t.id).name == "on-data"
    t2 = t.update(description="copies")
    assert t2.description == "copies" and t.refresh().description == "copies"
    assert not t.toggle(enabled=False).enabled
    assert t.toggle(enabled=True).enabled

    with repo.session() as s:
        s.objects.put("incoming/x.csv", b"1,2\n")
        s.commit("data arrives")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = list(t.runs.list())
        if runs and runs[0].status in ("succeeded", "failed", "skipped"):
            break
        time.sleep(0.5)
    assert runs and runs[0].status == "succeeded", [vars(r) for r in runs]
    assert runs[0].matched_paths == ["incoming/x.csv"] and runs[0].sandbox_id
    assert head_files(repo)["seen/x.csv"] == b"1,2\n"
    t.delete()
    assert list(triggers.list()) == []
