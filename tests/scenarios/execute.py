"""README "One-shot execution": `repo.execute`, with check=True (default) and check=False.

train.py is committed first (see _sandbox_fixtures). `might-fail` is, as in the README, a
command that fails: no such program exists in the sandbox, so the shell answers 127.
"""

import time

from _common import (
    REPO,
    check_client,
    commit_files,
    done,
    exists_at_head,
    log,
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
    # --- README -------------------------------------------------------------------------
    result = repo.execute("python train.py", image="python-312")
    print(result.stdout.text())

    # check=False to handle errors yourself
    result = repo.execute("might-fail", check=False)
    if result.exit_code != 0:
        print(result.stdout.text())
    # --- end of README ------------------------------------------------------------------

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

done("execute")
