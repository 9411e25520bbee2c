"""Shared set-up for the README scenarios; none of the README's own code lives here.

Every scenario is a standalone script that runs one section of the official tilde-sdk 0.7.2
README against a live server and then checks what came back. The environment names the target:

    TILDE_API_KEY, TILDE_ENDPOINT_URL   read by the client itself, as the README says
    TILDE_TEST_REPO                     "org/repo", used where the README writes "my-org/my-repo"
    TILDE_TEST_USER_ID, _USERNAME       a fresh user, where the README writes "user-uuid"
    CLIENT                              "bundled" (default) or "official"

CLIENT chooses between the README's form and the 0.7.2 form only where the official 0.7.2
client lacks a README name (spec 5.14). It is never inferred from the installed package: the
bundled client must always run the README form, and `check_client()` fails the scenario when
the interpreter imports a different client than CLIENT says.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

if not __debug__:
    raise SystemExit("the scenarios check with assert statements: do not run them with -O")

CLIENT = os.environ.get("CLIENT", "bundled")
if CLIENT not in ("bundled", "official"):
    raise SystemExit(f"CLIENT must be 'bundled' or 'official', not {CLIENT!r}")

REPO = os.environ["TILDE_TEST_REPO"]
API_KEY = os.environ["TILDE_API_KEY"]
ENDPOINT = os.environ["TILDE_ENDPOINT_URL"]
ORG_NAME, REPO_NAME = REPO.split("/", 1)
# A second user (made with `tilde-server user add` by the harness), where the README writes
# "user-uuid"; it is not a member of any organization until a scenario adds it.
USER_ID = os.environ.get("TILDE_TEST_USER_ID", "")
USERNAME = os.environ.get("TILDE_TEST_USERNAME", "")

PROJECT_SRC = Path(__file__).resolve().parents[2] / "src"


def check_client() -> None:
    """Fail unless `import tilde` gives the client that CLIENT names."""
    import tilde

    origin = Path(tilde.__file__).resolve()
    if CLIENT == "bundled":
        assert origin.is_relative_to(PROJECT_SRC), f"bundled run imported tilde from {origin}"
    else:
        assert not origin.is_relative_to(PROJECT_SRC), f"official run imported {origin}"
        assert importlib.metadata.version("tilde-sdk") == "0.7.2"
        assert tilde.__version__ == "0.7.2", tilde.__version__


@contextlib.contextmanager
def printed() -> Iterator[list[str]]:
    """Collect what the README code prints (also echoed), as a list of lines."""
    lines: list[str] = []
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield lines
    finally:  # echoed even when the README code raised, for the failure report
        text = buf.getvalue()
        sys.stdout.write(text)
        lines.extend(text.splitlines())


def commit_files(repo, files: dict[str, bytes], message: str) -> str:
    """Commit some objects through the 0.7.2 surface (both clients have it); returns the id."""
    with repo.session() as session:
        for path, data in files.items():
            session.objects.put(path, data)
        commit_id = session.commit(message)
    assert isinstance(commit_id, str) and commit_id, commit_id
    return commit_id


def read_head(repo, path: str) -> bytes:
    """Read an object as committed at the head, in a fresh session that is rolled back."""
    with repo.session() as session, session.objects.get(path) as f:
        return bytes(f.read())


def exists_at_head(repo, path: str) -> bool:
    from tilde.exceptions import NotFoundError

    with repo.session() as session:
        try:
            session.objects.head(path)
        except NotFoundError:
            return False
        return True


def log(repo) -> list[tuple[str, str]]:
    """(id, message) of every commit, newest first, through the 0.7.2 `repo.commits.list()`."""
    return [(c.id, c.message) for c in repo.commits.list()]


def done(name: str) -> None:
    """The last line of a scenario that ran to its end; the test harness looks for it."""
    print(f"SCENARIO OK: {name} ({CLIENT} client)")
