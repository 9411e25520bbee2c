"""README "One-shot execution": `repo.execute`, with check=True (default) and check=False.

train.py is committed first (see _sandbox_fixtures). `might-fail` is, as in the README, a
command that fails: no such program exists in the sandbox, so the shell answers 127.

Official releases: the README's image is `python-312` up to 0.7.4 and `python:3.12` from
0.7.5 (PYTHON_IMAGE), and from 0.7.7 (NEW_README) `might-fail` runs in it too; otherwise it
runs in the release's default image (`ubuntu`, from 0.7.5 `ubuntu:22.04`). All of these are
one root file system on this server (docs/sandboxes.md). At the end, beyond the README, the
sandbox states: up to 0.7.8 `committed` and `error`, from 0.7.9 `done` and `errored` (the
server answers by User-Agent), and an agent's sandbox in a repository that requires approval:
execute() returns quietly up to 0.7.8 and warns with the review URL from 0.7.9.
"""

import time
import warnings

import httpx
from _common import (
    API_KEY,
    CLIENT,
    ENDPOINT,
    NEW_README,
    ORG_NAME,
    PYTHON_IMAGE,
    REPO,
    REPO_NAME,
    check_client,
    commit_files,
    done,
    exists_at_head,
    log,
    official_since,
    printed,
    read_head,
)
from _sandbox_fixtures import RESULTS_CSV_LINES, TRAIN_PY

import tilde
from tilde.exceptions import CommandError, SandboxError

check_client()
repo = tilde.repository(REPO)
commit_files(repo, {"train.py": TRAIN_PY}, "add train.py")
before = log(repo)

with printed() as out:
    if not NEW_README:
        # --- README ---------------------------------------------------------------------
        result = repo.execute("python train.py", image=PYTHON_IMAGE)
        print(result.stdout.text())

        # check=False to handle errors yourself
        result = repo.execute("might-fail", check=False)
        if result.exit_code != 0:
            print(result.stdout.text())
        # --- end of README --------------------------------------------------------------
    else:
        # --- README (0.7.7+) ------------------------------------------------------------
        result = repo.execute("python train.py", image="python:3.12")
        print(result.stdout.text())

        # check=False to handle errors yourself
        result = repo.execute("might-fail", image="python:3.12", check=False)
        if result.exit_code != 0:
            print(result.stdout.text())
        # --- end of README --------------------------------------------------------------

assert out[0].startswith("trained 3 epochs with python 3."), out
assert result.exit_code == 127, result
assert any("might-fail" in line for line in out[1:]), out

# The successful command's changes landed as one commit; the failing one committed nothing.
after = log(repo)
assert len(after) == len(before) + 1 and after[1:] == before, (before, after)
assert read_head(repo, "results.csv").decode().splitlines() == RESULTS_CSV_LINES

# check=True (the default) raises CommandError with the result and the command.
try:
    repo.execute("echo partial > /sandbox/partial.txt; exit 3")
except CommandError as e:
    assert isinstance(e, SandboxError)
    assert e.result.exit_code == 3 and e.command == "echo partial > /sandbox/partial.txt; exit 3"
else:
    raise AssertionError("a failing command did not raise CommandError")
assert log(repo) == after and not exists_at_head(repo, "partial.txt")

# A list command is the argv as is (no shell).
r = repo.execute(["python3", "-c", "import sys; print(sys.argv[1:])", "a b", "c"])
assert r.exit_code == 0 and r.stdout.text().strip() == "['a b', 'c']", r

# Beyond the README, the same for both clients: a timeout ends the sandbox as failed (0.7.2
# raises CommandError with exit code -1; the bundled client too, with the reason in the
# message), and a cancelled sandbox commits nothing.
try:
    repo.execute("echo late > /sandbox/late.txt; sleep 30", timeout=2)
except SandboxError:
    pass
else:
    raise AssertionError("a timed-out sandbox did not raise")
sandbox = repo.sandboxes.create(image="ubuntu", command=["sh", "-c", "touch /sandbox/c; sleep 60"])
state = ""
for _ in range(100):
    state = sandbox.status().state
    if state == "running":
        break
    time.sleep(0.2)
assert state == "running", state
sandbox.cancel()
for _ in range(100):
    status = sandbox.status()
    if status.state == "cancelled":
        break
    time.sleep(0.2)
assert status.state == "cancelled", status.state
assert log(repo) == after and not exists_at_head(repo, "late.txt")


def finished(sandbox):
    """Poll a sandbox until it ends, as the release's execute() does, by its own states."""
    terminal = ({"done", "errored", "failed", "cancelled"} if official_since("0.7.9")
                else {"committed", "awaiting_approval", "failed", "error", "cancelled"})
    deadline = time.monotonic() + 60
    while (status := sandbox.status()).state not in terminal:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    return status


if CLIENT == "official":
    # The state names a release knows (tilde-api-changes.md 2.12).
    ok = finished(repo.sandboxes.create(image="ubuntu", command=["sh", "-c", "echo > /sandbox/ok"]))
    bad = finished(repo.sandboxes.create(image="ubuntu", command=["sh", "-c", "exit 4"]))
    assert (ok.status_reason, ok.exit_code, bad.status_reason, bad.exit_code) == (
        "committed", 0, "exit_non_zero", 4), (ok, bad)
    assert ok.commit_id and ok.commit_id == log(repo)[0][0], (ok, log(repo)[0])
    if official_since("0.7.9"):
        assert (ok.state, bad.state) == ("done", "errored"), (ok, bad)
        assert ok.is_committed and ok.is_terminal and bad.is_terminal and not bad.is_active
    else:
        assert (ok.state, bad.state) == ("committed", "error"), (ok, bad)
    after = log(repo)

    # Approval: an agent (allowed everything its creator is) in a repository whose agent
    # commits wait for a person. Its sandbox ends awaiting approval and commits nothing.
    r = httpx.put(f"{ENDPOINT}/api/v1/organizations/{ORG_NAME}/repositories/{REPO_NAME}",
                  json={"require_approval_for_agents": True},
                  headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    agent = tilde.organizations.get(ORG_NAME).agents.create("sandbox-agent")
    agent = agent.update(inline_policy="package tilde.authz\ndefault allow = true\n")
    token = agent.api_keys.create("sandbox-key").token
    with (tilde.Client(api_key=token, endpoint_url=ENDPOINT) as as_agent,
          warnings.catch_warnings(record=True) as caught):
        warnings.simplefilter("always")
        pending = as_agent.repository(REPO).execute("echo hi > /sandbox/approval.txt")
    assert pending.exit_code == 0, pending
    assert log(repo) == after and not exists_at_head(repo, "approval.txt")
    waiting = [st for st in (sb.status() for sb in repo.sandboxes.list())
               if st.status_reason == "awaiting_approval"]
    assert len(waiting) == 1 and waiting[0].web_url, waiting
    assert waiting[0].state == ("done" if official_since("0.7.9") else "awaiting_approval")
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if official_since("0.7.9"):
        url = waiting[0].web_url
        assert messages == [f"Approval required - review and approve at: {url}"], messages
        assert url.endswith("/approve") and f"/repositories/{REPO_NAME}/sessions/" in url, url
    else:
        assert messages == [], messages

done("execute")
