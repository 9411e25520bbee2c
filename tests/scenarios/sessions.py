"""README "Sessions": the context manager (rolls back on error) and explicit control.

From 0.7.7 (NEW_README) the context-manager example deletes data/old.csv instead of listing
data/, and the explicit commit's message is "modifying data".
"""

from _common import (
    NEW_README,
    REPO,
    check_client,
    commit_files,
    done,
    exists_at_head,
    log,
    printed,
    read_head,
)

import tilde
from tilde.exceptions import APIError

check_client()
repo = tilde.repository(REPO)

if not NEW_README:
    # --- README: context manager (recommended) ---------------------------------------------
    with repo.session() as session:
        objects = session.objects.list(prefix="data/", delimiter="/")
        session.objects.put("data/report.csv", b"content")
        session.commit("update CSV files")
    # --- end of README ------------------------------------------------------------------
else:
    commit_files(repo, {"data/old.csv": b"old"}, "the README's old.csv")
    # --- README (0.7.7+): Context manager — rolls back on error -------------------------
    with repo.session() as session:
        session.objects.put("data/report.csv", b"content")
        session.objects.delete("data/old.csv")
        session.commit("update CSV files")
    # --- end of README ------------------------------------------------------------------
    assert not exists_at_head(repo, "data/old.csv")

assert read_head(repo, "data/report.csv") == b"content"
head_id, head_message = log(repo)[0]
assert head_message == "update CSV files", head_message
# `objects` is a lazy listing of the session's view; the session is gone now.

# "rolls back on error": an exception inside the block discards the staged changes.
failed_session_id = None
try:
    with repo.session() as session:
        failed_session_id = session.session_id
        session.objects.put("data/doomed.csv", b"never committed")
        raise RuntimeError("boom")
except RuntimeError:
    pass
assert not exists_at_head(repo, "data/doomed.csv")
assert log(repo)[0][0] == head_id, "a failed session produced a commit"
try:
    repo.attach(failed_session_id).commit("commit after rollback")
except APIError:
    pass
else:
    raise AssertionError("a rolled-back session could still be committed")

with printed() as out:
    if not NEW_README:
        # --- README: explicit control ---------------------------------------------------
        session = repo.session()
        print(session.session_id)
        session.objects.put("data/file.csv", b"content")
        session.commit("modifying data in parallel")
        # or: session.rollback()
        # --- end of README --------------------------------------------------------------
    else:
        # --- README (0.7.7+): Explicit control ------------------------------------------
        session = repo.session()
        print(session.session_id)
        session.objects.put("data/file.csv", b"content")
        session.commit("modifying data")
        # or: session.rollback()
        # --- end of README --------------------------------------------------------------

assert out == [session.session_id] and session.session_id, out
assert session.session_id != failed_session_id
assert read_head(repo, "data/file.csv") == b"content"
explicit_id, explicit_message = log(repo)[0]
assert explicit_message == ("modifying data" if NEW_README else "modifying data in parallel")
assert explicit_id != head_id

# ... and the other branch of the README's comment: session.rollback()
session = repo.session()
session.objects.put("data/rolled-back.csv", b"content")
session.rollback()
assert not exists_at_head(repo, "data/rolled-back.csv")
assert log(repo)[0][0] == explicit_id, "a rolled-back session produced a commit"

done("sessions")
