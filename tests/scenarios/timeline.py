"""README "Timeline (Commit History)": commits newest first, each with its diff.

No official release has Repository.timeline() (spec 5.14); with CLIENT=official up to 0.7.6
the same loop runs over its log, repo.commits.list(). The bundled client must run the README
form. From 0.7.7 (NEW_README) the section is "Commits": list, a capped list, get by id, the
diff (of the root commit too, which 0.7.7+ asks for without `left`) and revert.

Paging, official releases only: `list(amount=N)` is the page size in 0.7.2 (every commit comes
back) and a cap on the total from 0.7.3 on, where `page_size=N` is the page size.
"""

from _common import (
    CLIENT,
    NEW_README,
    REPO,
    check_client,
    commit_files,
    done,
    official_since,
    printed,
)

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

if NEW_README:
    with printed() as out:
        # --- README (0.7.7+): Commits -----------------------------------------------------
        # Newest first, auto-paginating
        for commit in repo.commits.list():
            print(commit.id, commit.committer, commit.message)

        # Cap results
        for commit in repo.commits.list(amount=10):
            print(commit.id)

        # Look up by ID
        commit = repo.commits.get(second)

        # Diff introduced by a commit
        for change in commit.diff():
            print(change.status, change.path)

        # Revert
        revert = commit.revert(message="undo")
        # --- end of README --------------------------------------------------------------
elif CLIENT == "bundled":
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

if NEW_README:
    ids = [c.id for c in repo.commits.list()]
    committer = repo.commits.get(second).committer
    assert ids[1:] == [second, first] and committer, (ids, first, second, committer)
    n = len(ids) - 1
    assert out[:n] == [f"{second} {committer} second", f"{first} {committer} first"], out
    assert out[n:2 * n] == ids[1:], out  # amount=10 caps nothing here
    assert sorted(out[2 * n:]) == ["added c.txt", "changed a.txt", "removed b.txt"], out
    assert len(out) == 2 * n + 3, out
    # The revert is the new head and undoes `second`.
    assert ids[0] == revert.id and repo.commits.get(revert.id).message == "undo", ids
    diff = {c.path: c.status for c in repo.commits.get(revert.id).diff()}
    assert diff == {"a.txt": "changed", "b.txt": "added", "c.txt": "removed"}, diff
    # `first` is the root commit (a repository starts without any): no parent, and its
    # diff, asked for without `left` from 0.7.7 on, is everything it holds.
    root = repo.commits.get(first)
    assert ids[-1] == first and not root.parents, (ids, root.parents)
    diff = {c.path: c.status for c in root.diff()}
    assert diff == {"a.txt": "added", "b.txt": "added"}, diff
else:
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

if CLIENT == "official":
    everything = [c.id for c in repo.commits.list()]
    assert len(everything) >= 2, everything
    capped = [c.id for c in repo.commits.list(amount=1)]
    if official_since("0.7.3"):
        assert capped == everything[:1], capped
        assert [c.id for c in repo.commits.list(page_size=1)] == everything
        assert [c.id for c in repo.commits.list(amount=2, page_size=1)] == everything[:2]
    else:  # 0.7.2: the page size; the iterator walks every page
        assert capped == everything, capped

done("timeline")
