"""README "Quick Start", without the sandbox parts (shell / execute).

The harness exports TILDE_API_KEY (the README's `export TILDE_API_KEY=...`) and
TILDE_ENDPOINT_URL; the client must pick both up from the environment alone.
"""

import httpx
from _common import API_KEY, ENDPOINT, ORG_NAME, REPO, REPO_NAME, check_client, done

# --- README -----------------------------------------------------------------------------
import tilde

repo = tilde.repository(REPO)
# --- end of README ----------------------------------------------------------------------

check_client()
assert repo.name == REPO_NAME, repo.name
assert repo.org == ORG_NAME, repo.org

# The handle is lazy; its first property read fetches the repository. Compare with what the
# server answers over plain HTTP.
r = httpx.get(
    f"{ENDPOINT}/api/v1/organizations/{ORG_NAME}/repositories/{REPO_NAME}",
    headers={"Authorization": f"Bearer {API_KEY}"},
)
assert r.status_code == 200, r.text
assert repo.id and repo.id == r.json()["id"], (repo.id, r.json())

done("quickstart")
