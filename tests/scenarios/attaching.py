"""README "Attaching to an Existing Session": resume a session from another process.

This process opens a session and stages one object; a second Python process (this script,
started with `--attach SESSION_ID`) attaches, stages another object and commits both.
"""

import subprocess
import sys

from _common import REPO, check_client, done, log, read_head

import tilde

check_client()
repo = tilde.repository(REPO)

if len(sys.argv) == 3 and sys.argv[1] == "--attach":
    session_id = sys.argv[2]
    # --- README -------------------------------------------------------------------------
    # In another thread/process/machine:
    session = repo.attach(session_id)
    session.objects.put("data/file2.csv", b"more content")
    session.commit("finishing work")
    # --- end of README ------------------------------------------------------------------
    sys.exit(0)

session = repo.session()
session.objects.put("data/file1.csv", b"first part")
child = subprocess.run(
    [sys.executable, __file__, "--attach", session.session_id], capture_output=True, text=True
)
assert child.returncode == 0, child.stdout + child.stderr

assert read_head(repo, "data/file1.csv") == b"first part"
assert read_head(repo, "data/file2.csv") == b"more content"
commits = log(repo)
assert commits[0][1] == "finishing work", commits
# Both objects arrived in that one commit.
diff = {c.path: c.status for c in repo.commits.get(commits[0][0]).diff()}
assert set(diff) == {"data/file1.csv", "data/file2.csv"}, diff

done("attaching")
