"""Shared set-up for the README scenarios; none of the README's own code lives here.

Every scenario is a standalone script that runs one section of the official tilde-sdk
README against a live server and then checks what came back. The environment names the target:

    TILDE_API_KEY, TILDE_ENDPOINT_URL   read by the client itself, as the README says
    TILDE_TEST_REPO                     "org/repo", used where the README writes "my-org/my-repo"
    TILDE_TEST_USER_ID, _USERNAME       a fresh user, where the README writes "user-uuid"
    CLIENT                              "bundled" (default) or "official"
    TILDE_SDK_VERSION                   with CLIENT=official: the release installed, e.g. 0.7.5

The bundled client always runs the 0.7.2 README's form. The official releases run the form
their own README and API give:
- up to 0.7.6 the README is the 0.7.2 one; where it uses a name the release lacks (spec
  5.14) the scenario uses the release's own name (`repo.commits.list()` for `repo.timeline()`);
- from 0.7.7 on the README is rewritten (`NEW_README`): other examples, other names;
- API changes that show whatever the README says (tilde-api-changes.md, section 1): `amount`
  a total limit and `page_size` the page size from 0.7.3, `shell()` over `/exec` with raw
  stdout and a separate stderr from 0.7.6, no `presign` from 0.7.7, the sandbox states
  `done/errored/failed/cancelled` from 0.7.9 (`official_since`).
These choices come from the variables alone, never from probing the installed package, and
`check_client()` fails the scenario when the interpreter imports another client or release.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

if not __debug__:
    raise SystemExit("the scenarios check with assert statements: do not run them with -O")

CLIENT = os.environ.get("CLIENT", "bundled")
if CLIENT not in ("bundled", "official"):
    raise SystemExit(f"CLIENT must be 'bundled' or 'official', not {CLIENT!r}")
SDK_VERSION = os.environ.get("TILDE_SDK_VERSION", "")
if CLIENT == "official" and not re.fullmatch(r"\d+\.\d+\.\d+", SDK_VERSION):
    raise SystemExit(f"CLIENT=official needs TILDE_SDK_VERSION=X.Y.Z, not {SDK_VERSION!r}")
if CLIENT == "bundled" and SDK_VERSION:
    raise SystemExit("TILDE_SDK_VERSION names an official release; it makes no sense with "
                     "CLIENT=bundled")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def official_since(version: str) -> bool:
    """True for an official release `version` or later; never for the bundled client, which
    keeps the 0.7.2 behaviour (spec section 3)."""
    return CLIENT == "official" and _version(SDK_VERSION) >= _version(version)


# The official README was rewritten in 0.7.7 (0.7.3-0.7.6 ship the 0.7.2 text, bar image names).
NEW_README = official_since("0.7.7")
# The README's sandbox image: an allow-list id up to 0.7.4, a Docker reference from 0.7.5.
# The server maps both (and the default images) to one root file system (docs/sandboxes.md).
PYTHON_IMAGE = "python:3.12" if official_since("0.7.5") else "python-312"
# What the harness expects in the last line (see done()).
CLIENT_LABEL = f"official {SDK_VERSION}" if CLIENT == "official" else CLIENT

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
        dist = importlib.metadata.version("tilde-sdk")
        assert dist == SDK_VERSION, f"TILDE_SDK_VERSION={SDK_VERSION} but tilde-sdk {dist}"
        assert tilde.__version__ == SDK_VERSION, tilde.__version__


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
    print(f"SCENARIO OK: {name} ({CLIENT_LABEL} client)")
