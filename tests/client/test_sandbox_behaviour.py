"""The bundled client's sandboxes against a real tilde-server (bubblewrap sandboxes).

Transactional behaviour is what matters here: a sandbox's writes under /sandbox land in one
commit only when it ends well; a failure, timeout or cancel commits nothing. The server
answers the status vocabulary the User-Agent asks for (0.7.2 or 0.7.9 names); the client must
work with both, so the tests that read states run once with each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

import tilde
from conftest import RepoRef, ServerHandle
from tilde.exceptions import CommandError, SandboxError
from tilde.models import Repository, RunResult, Sandbox, SandboxStatus

#: User-Agents that make tilde-server answer each status vocabulary
VOCABULARIES = {"0.7.2": "tilde-python-sdk/0.7.2", "0.7.9": "tilde-python-sdk/0.7.9"}


@pytest.fixture
def client(client_env: ServerHandle) -> Iterator[tilde.Client]:
    with tilde.Client() as c:
        yield c


@pytest.fixture(params=sorted(VOCABULARIES))
def vocabulary(request: pytest.FixtureRequest, client: tilde.Client) -> str:
    """Run the test once per status vocabulary, by the User-Agent the server reads."""
    client._http.headers["User-Agent"] = VOCABULARIES[request.param]
    return str(request.param)


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


def wait_for(sandbox: Sandbox, done: Callable[[SandboxStatus], bool],
             timeout: float = 60) -> SandboxStatus:
    deadline = time.monotonic() + timeout
    while not done(status := sandbox.status()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return status


@pytest.mark.usefixtures("vocabulary")
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


@pytest.mark.usefixtures("vocabulary")
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


@pytest.mark.usefixtures("vocabulary")
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


def test_cancel_during_setup_ends_every_process(repo: Repository) -> None:
    """A cancel that lands while bwrap is still setting up (the state turns running as soon
    as bwrap is started) must still end the sandbox: seen once in CI under load, when the
    inner processes outlived bwrap and held its pipes open for the whole `sleep`."""
    boxes = [repo.sandboxes.create(image="ubuntu", command=["sh", "-c", "sleep 120"])
             for _ in range(4)]
    for sandbox in boxes:
        wait_state(sandbox, {"running"})
        sandbox.cancel()
    assert [wait_state(sandbox, {"cancelled"}, timeout=30) for sandbox in boxes] == \
        ["cancelled"] * 4
    assert history(repo) == []


def test_status_and_logs(repo: Repository, vocabulary: str) -> None:
    sandbox = repo.sandboxes.create(image="ubuntu", command=["sh", "-c", "echo one; echo two >&2"],
                                    env={"GREETING": "hi"})
    status = wait_for(sandbox, lambda st: st.is_terminal)
    assert status.state == {"0.7.2": "committed", "0.7.9": "done"}[vocabulary], status
    assert status.status_reason == "no_changes" and status.has_no_changes
    assert not (status.is_committed or status.is_awaiting_approval or status.is_active)
    assert status.exit_code == 0 and status.error_message == ""
    bad = repo.sandboxes.create(image="ubuntu", command=["sh", "-c", "exit 3"])
    failed = wait_for(bad, lambda st: st.is_terminal)
    assert failed.state == {"0.7.2": "error", "0.7.9": "errored"}[vocabulary], failed
    assert failed.exit_code == 3 and not failed.is_committed
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


@pytest.mark.usefixtures("vocabulary")
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
        assert bad.exit_code != 0 and "missing" in bad.stdout.text()  # stderr merged (0.7.2)
        with pytest.raises(CommandError):
            sh.run("false", check=True)
    assert not repo._client._shell_over_terminal  # the server has /exec
    assert head_files(repo) == {"counter": b"4\n"}
    assert len(history(repo)) == 1


def test_shell_over_exec_runs_each_command_on_its_own(repo: Repository) -> None:
    """0.7.9's run() arguments; one process per run, so no shell state carries over."""
    with repo.shell(env={"BASE": "container"}) as sh:
        r = sh.run("printf 'a\\n'; printf 'b\\n' >&2; printf 'c\\n'; exit 2")
        assert (r.stdout.read(), r.stderr.read(), r.exit_code) == (b"a\nb\nc", b"", 2)
        sh.run("cd /tmp && X=1")
        assert sh.run("pwd; echo \"[$X]\" $BASE").stdout.text() == "/sandbox\n[] container"
        assert sh.run(["sh", "-c", 'echo "$1"', "sh", "an arg"]).stdout.text() == "an arg"
        r = sh.run("pwd; echo $ONLY", env={"ONLY": "this run"}, cwd="/tmp")
        assert r.stdout.text() == "/tmp\nthis run"
        assert sh.run("cat > in.txt; wc -c < in.txt", stdin=b"12345").stdout.text() == "5"
        assert sh.run("cat; echo end", stdin=b"").stdout.text() == "end"
        assert sh.run("cat; echo closed").stdout.text() == "closed"  # stdin=None: closed
    assert head_files(repo) == {"in.txt": b"12345"}


@pytest.mark.usefixtures("vocabulary")
def test_shell_over_the_terminal_keeps_state(repo: Repository) -> None:
    """The 0.7.2 transport, as after a fallback (and whenever cmd= names the shell)."""
    repo._client._shell_over_terminal = True
    with repo.shell() as sh:
        sh.run("cd /tmp && X=42")
        assert sh.run("pwd; echo $X").stdout.text() == "/tmp\n42"
        r = sh.run(["sh", "-c", "echo $0 $ONLY; pwd"], env={"ONLY": "once"}, cwd="/sandbox")
        assert r.stdout.text() == "sh once\n/sandbox"
        assert sh.run("pwd; echo \"[$ONLY]\"").stdout.text() == "/tmp\n[]"
        assert sh.run("echo t > /sandbox/t.txt; echo err >&2").stdout.text() == "err"
        with pytest.raises(SandboxError, match="stdin"):
            sh.run("cat", stdin=b"x")
    assert head_files(repo) == {"t.txt": b"t\n"}
    repo._client._shell_over_terminal = False
    with repo.shell(cmd=["/bin/sh"]) as sh:  # cmd= asks for the terminal
        sh.run("Y=7")
        assert sh.run("echo $Y").stdout.text() == "7"


@pytest.mark.usefixtures("vocabulary")
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
