"""README "Timeline (Commit History)": commits newest first, each with its diff.

The official 0.7.2 client has no Repository.timeline() (spec 5.14); with CLIENT=official the
same loop runs over its log, repo.commits.list(). The bundled client must run the README form.
"""

from _common import CLIENT, REPO, check_client, commit_files, done, printed

import tilde

check_client()
repo = tilde.repository(REPO)

first = commit_files(repo, {"a.txt": b"alpha", "b.txt": b"beta"}, "first")
with repo.session() as session:
    session.objects.put("a.txt", b"alpha, changed")
    session.objects.delete("b.txt")
    session.objects.put("c.txt", b"gamma")
    second = session.commit("second")
assert second and second != first, (first, second)

if CLIENT == "bundled":
    with printed() as out:
        # --- README ---------------------------------------------------------------------
        for commit in repo.timeline():
            print(commit.id, commit.message)

            # View changes introduced by this commit
            for change in commit.diff():
                print(f"object {change.path} was {change.status} in this commit!")
        # --- end of README --------------------------------------------------------------
else:
    with printed() as out:
        for commit in repo.commits.list():
            print(commit.id, commit.message)

            # View changes introduced by this commit
            for change in commit.diff():
                print(f"object {change.path} was {change.status} in this commit!")

# Parse what was printed back into [(commit line, {path: status})].
history: list[tuple[str, dict[str, str]]] = []
for line in out:
    if line.startswith("object ") and line.endswith(" in this commit!"):
        path, _, status = line[len("object "):-len(" in this commit!")].rpartition(" was ")
        history[-1][1][path] = status
    else:
        history.append((line, {}))

assert len(history) >= 2, out
assert history[0] == (
    f"{second} second", {"a.txt": "changed", "b.txt": "removed", "c.txt": "added"}
), history[0]
assert history[1] == (f"{first} first", {"a.txt": "added", "b.txt": "added"}), history[1]
# Anything older belongs to the repository's creation, not to this scenario.
assert all(not changes for _, changes in history[2:]), history[2:]

done("timeline")
