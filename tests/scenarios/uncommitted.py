"""README "Uncommitted Changes": what a session has staged and not yet committed."""

from _common import REPO, check_client, commit_files, done, exists_at_head, log, printed, read_head

import tilde

check_client()
repo = tilde.repository(REPO)
base = commit_files(repo, {"data/old.csv": b"old", "data/kept.csv": b"kept"}, "base")

with printed() as out:
    # --- README -------------------------------------------------------------------------
    session = repo.session()
    session.objects.put("data/new.csv", b"content")

    for entry in session.uncommitted():
        print(entry.path)
    # --- end of README ------------------------------------------------------------------

assert out == ["data/new.csv"], out
(record,) = list(session.uncommitted())
assert record.entry is not None and record.entry.size == len(b"content"), record

# A staged deletion of a committed object is an uncommitted change too; listing by prefix.
session.objects.delete("data/old.csv")
assert sorted(e.path for e in session.uncommitted()) == ["data/new.csv", "data/old.csv"]
assert [e.path for e in session.uncommitted(prefix="data/n")] == ["data/new.csv"]

# Nothing reached the repository: roll back and look.
session.rollback()
assert not exists_at_head(repo, "data/new.csv")
assert read_head(repo, "data/old.csv") == b"old"
assert log(repo)[0][0] == base

done("uncommitted")
