"""README "Quick Start": the interactive sandbox (`repo.shell` and `sh.run`).

The README code runs unchanged. What it relies on and how this project meets it:
- `image="python-312"` resolves through the server's alias table (default: the host image).
- `python train.py`: train.py is committed first (see _sandbox_fixtures); the shell starts in
  the mountpoint /sandbox, so the relative path works.
- `pip install pandas` installs into the sandbox's user site (/tmp/.local, docs/sandboxes.md
  "Installing packages"), which every run of the sandbox sees and which goes with it. It
  needs a package index the server's egress rules allow. With TILDE_TEST_PIP_CA the harness
  runs this against such a server (a local index, tests/conftest.py `pip_index_server`):
  the install must work and train.py must use pandas ("pandas: yes"); the next sandbox starts
  without it. Without it (the session server: no index allowed) the install fails; the run
  has check=False (the default of sh.run), so the README goes on, as it would with the
  official service when an install fails, and pandas is there only if the image has it;
  train.py uses it when it can and says so. Both checked after the README block.
- The shell's clean exit commits the sandbox's session: results.csv lands in one commit.

Official releases: the image is `python-312` up to 0.7.4 and `python:3.12` from 0.7.5
(PYTHON_IMAGE; the server maps both to the same root file system). From 0.7.6 `shell()` is a
service sandbox driven over `/exec`: `sh.run(...).stdout` is the raw output (with its final
newline, so `print` adds an empty line), stderr comes apart in `RunResult.stderr`, no shell
state carries over between runs, `run()` takes `cwd=` and `env=`, and a clean exit is
`POST /finish` (which must have committed by the time it answers). From 0.7.7 (NEW_README) the
"Interactive shell" section also prints `result.stderr.text()`.
"""

from _common import (
    CLIENT,
    NEW_README,
    PYTHON_IMAGE,
    REPO,
    check_client,
    commit_files,
    done,
    log,
    official_since,
    printed,
    read_head,
)
from _sandbox_fixtures import PIP_CA, RESULTS_CSV_LINES, repository_files

import tilde
from tilde.exceptions import CommandError

check_client()
commit_files(tilde.repository(REPO), repository_files(), "add train.py")
RAW = official_since("0.7.6")  # raw /exec output: a final newline, stderr on its own

with printed() as out:
    # --- README -------------------------------------------------------------------------
    repo = tilde.repository(REPO)

    # Run commands in an interactive sandbox
    with repo.shell(image=PYTHON_IMAGE) as sh:
        sh.run("pip install pandas")
        result = sh.run("python train.py")
        print(result.stdout.text())

        # Stream output line by line
        result = sh.run("cat /sandbox/results.csv")
        for line in result.stdout.iter_lines():
            print(line)
    # --- end of README ------------------------------------------------------------------

train_lines = 2 if RAW else 1  # the printed text's own final newline, then print's
assert len(out) == train_lines + len(RESULTS_CSV_LINES), out
assert out[0].startswith("trained 3 epochs with python 3."), out
if PIP_CA:  # the index is reachable: pip installed pandas and the next run imported it
    assert out[0].endswith("; pandas: yes"), out
assert out[1:train_lines] == [""] * (train_lines - 1), out
assert out[train_lines:] == RESULTS_CSV_LINES, out
assert result.exit_code == 0, result
if RAW:
    assert result.stdout.text() == "\n".join(RESULTS_CSV_LINES) + "\n", result.stdout.text()
    assert result.stderr.read() == b"", result.stderr.read()

# The shell's clean exit committed what train.py wrote, as one new commit on top.
history = log(repo)
assert len(history) == 2, history
assert read_head(repo, "results.csv").decode().splitlines() == RESULTS_CSV_LINES

if NEW_README:
    with printed() as out:  # noqa: SIM117 (the README's own with-block stays as written)
        # --- README (0.7.7+): Interactive shell ----------------------------------------
        with repo.shell(image="python:3.12") as sh:
            sh.run("pip install pandas")
            result = sh.run("python train.py")
            print(result.stdout.text())
            print(result.stderr.text())
        # --- end of README --------------------------------------------------------------
    assert len(out) == 3 and out[0].startswith("trained 3 epochs"), out
    assert out[1:] == ["", ""], out  # print after stdout's final newline; empty stderr
    assert read_head(repo, "results.csv").decode().splitlines() == RESULTS_CSV_LINES
commits = len(log(repo))

# pip (see the module docstring): with the index, what the README installed went with its
# sandbox; without it, no pandas unless the image has it.
pandas_line = out[0].rsplit("pandas: ", 1)[1]
with repo.shell(image=PYTHON_IMAGE) as sh:
    if PIP_CA:
        leftover = sh.run("ls -A /tmp/.local 2>&1 || echo none")
    else:
        pip = sh.run("pip install pandas")
        probe = sh.run("python -c 'import pandas'")
    if CLIENT == "official":
        sh.run("cd /tmp && export X=1")
        state = sh.run("pwd; echo ${X:-unset}")
        if RAW:
            with_args = sh.run("pwd; echo $X", cwd="/tmp", env={"X": "2"})
            try:
                sh.run("echo out; echo err >&2; exit 3", check=True)
            except CommandError as e:
                failed = e
            else:
                raise AssertionError("check=True did not raise on exit 3")
if PIP_CA:
    assert leftover.stdout.text().strip().endswith("none"), leftover.stdout.text()
else:
    pip_output = pip.stdout.text() + (pip.stderr.text() if RAW else "")
    print(f"pip install pandas -> exit {pip.exit_code}: {pip_output[-300:]!r}")
    # train.py reported exactly what the image offers; a failed pip says why.
    assert (probe.exit_code == 0) == (pandas_line == "yes"), (probe, out)
    assert pip.exit_code == 0 or pip_output.strip(), pip
assert len(log(repo)) == commits, log(repo)  # that shell wrote nothing: no commit
if CLIENT == "official" and RAW:
    # Each run is a child process of its own: cd and export are gone by the next run.
    assert state.stdout.text() == "/sandbox\nunset\n", state.stdout.text()
    assert with_args.stdout.text() == "/tmp\n2\n", with_args.stdout.text()
    assert failed.result.exit_code == 3, failed.result
    assert (failed.result.stdout.text(), failed.result.stderr.text()) == ("out\n", "err\n")
elif CLIENT == "official":
    # Up to 0.7.5 one shell runs the whole block: cd and export carry over.
    assert state.stdout.text() == "/tmp\n1", state.stdout.text()

done("shell")
