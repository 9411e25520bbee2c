"""README "Quick Start": the interactive sandbox (`repo.shell` and `sh.run`).

The README code runs unchanged. What it relies on and how this project meets it:
- `image="python-312"` resolves through the server's alias table (default: the host image).
- `python train.py`: train.py is committed first (see _sandbox_fixtures); the shell starts in
  the mountpoint /sandbox, so the relative path works.
- `pip install pandas` cannot succeed in the default set-up, for two reasons: the host
  image's Python is Debian's, which refuses pip installs into the system (PEP 668,
  "externally-managed-environment", exit 1), and sandboxes have no network unless the
  operator starts the server with --sandbox-network. The run has check=False (the default
  of sh.run), so the README goes on, as it would with the official service when an install
  fails. pandas is there only if the image has it (an operator image, or python3-pandas on
  the host); train.py uses it when it can and says so. Checked after the README block.
- The shell's clean exit commits the sandbox's session: results.csv lands in one commit.
"""

from _common import REPO, check_client, commit_files, done, log, printed, read_head
from _sandbox_fixtures import RESULTS_CSV_LINES, TRAIN_PY

import tilde

check_client()
commit_files(tilde.repository(REPO), {"train.py": TRAIN_PY}, "add train.py")

with printed() as out:
    # --- README -------------------------------------------------------------------------
    repo = tilde.repository(REPO)

    # Run commands in an interactive sandbox
    with repo.shell(image="python-312") as sh:
        sh.run("pip install pandas")
        result = sh.run("python train.py")
        print(result.stdout.text())

        # Stream output line by line
        result = sh.run("cat /sandbox/results.csv")
        for line in result.stdout.iter_lines():
            print(line)
    # --- end of README ------------------------------------------------------------------

assert len(out) == 1 + len(RESULTS_CSV_LINES), out
assert out[0].startswith("trained 3 epochs with python 3."), out
assert out[1:] == RESULTS_CSV_LINES, out
assert result.exit_code == 0, result

# The shell's clean exit committed what train.py wrote, as one new commit on top.
history = log(repo)
assert len(history) == 2, history
assert read_head(repo, "results.csv").decode().splitlines() == RESULTS_CSV_LINES

# pip: no network in the sandbox, so no pandas (see the module docstring).
pandas_line = out[0].rsplit("pandas: ", 1)[1]
with repo.shell(image="python-312") as sh:
    pip = sh.run("pip install pandas")
    probe = sh.run("python -c 'import pandas'")
print(f"pip install pandas -> exit {pip.exit_code}: {pip.stdout.text()[-300:]!r}")
# train.py reported exactly what the image offers; a failed pip says why.
assert (probe.exit_code == 0) == (pandas_line == "yes"), (probe, out)
assert pip.exit_code == 0 or pip.stdout.text().strip(), pip
assert len(log(repo)) == 2, log(repo)  # that shell wrote nothing: no commit

done("shell")
