"""README "Repositories": lazy properties, update, delete.

From 0.7.7 (NEW_README) the section also creates a repository through its organization, with
`session_max_duration_days` and `retention_days`, and lists the organization's repositories.
"""

from _common import NEW_README, ORG_NAME, REPO, REPO_NAME, check_client, done, printed

import tilde
from tilde.exceptions import NotFoundError

check_client()

with printed() as out:
    # --- README -------------------------------------------------------------------------
    repo = tilde.repository(REPO)

    # Lazy-loaded properties
    print(repo.id, repo.description, repo.visibility)
    # --- end of README ------------------------------------------------------------------

# The test fixture created the repository private, without a description.
assert repo.id, "repository id is empty"
assert repo.description == "", repo.description
assert repo.visibility == "private", repo.visibility
assert out == [f"{repo.id}  private"], out

# --- README -----------------------------------------------------------------------------
# Update
repo.update(description="New description", visibility="public")
# --- end of README ----------------------------------------------------------------------

assert repo.description == "New description", repo.description
assert repo.visibility == "public", repo.visibility
again = tilde.repository(REPO)  # a fresh handle loads what the server stored
assert (again.id, again.description, again.visibility) == (
    repo.id, "New description", "public"
), (again.id, again.description, again.visibility)

# --- README -----------------------------------------------------------------------------
# Delete
repo.delete()
# --- end of README ----------------------------------------------------------------------

try:
    tilde.repository(REPO).refresh()
except NotFoundError as e:
    assert e.status_code == 404
else:
    raise AssertionError("the deleted repository can still be fetched")
names = [r.name for r in tilde.organizations.get(ORG_NAME).repositories.list()]
assert REPO_NAME not in names, names

if NEW_README:
    MY_REPO = f"{REPO_NAME}-created"  # where the README writes "my-repo"
    with printed() as out:
        # --- README (0.7.7+): Create a repository through its organization --------------
        org = tilde.organizations.get(ORG_NAME)
        repo = org.repositories.create(
            MY_REPO,
            description="My dataset",
            session_max_duration_days=7,
            retention_days=90,
        )

        for r in org.repositories.list():
            print(r.name, r.description)
        # --- end of README --------------------------------------------------------------
    assert out == [f"{MY_REPO} My dataset"], out
    again = tilde.repository(f"{ORG_NAME}/{MY_REPO}")
    assert (again.id, again.description, again.visibility) == (repo.id, "My dataset", "private")
    assert (again.session_max_duration_days, again.retention_days) == (7, 90), again

done("repositories")
