# ruff: noqa: SIM117  (the README nests its with-blocks; its lines stay as written)
"""README "Error Handling": the exception tree, and NotFoundError with its fields.

Every official release exports its exceptions from tilde.exceptions only, so
`from tilde import NotFoundError, TildeError` (the README's line, in the 0.7.7 README too) is
the bundled client's form; CLIENT=official imports the same names from tilde.exceptions.
From 0.7.7 (NEW_README) the tree also draws SandboxError and CommandError; from 0.7.8 the
message ends with `[code=... request_id=...]`.
"""

import socket

from _common import CLIENT, NEW_README, REPO, REPO_NAME, check_client, done, official_since, printed

import tilde
import tilde.exceptions as exc

check_client()
repo = tilde.repository(REPO)

# The tree as the README draws it.
TREE = {
    "TildeError": "Exception",
    "ConfigurationError": "TildeError",
    "TransportError": "TildeError",
    "SerializationError": "TildeError",
    "APIError": "TildeError",
    "BadRequestError": "APIError",
    "AuthenticationError": "APIError",
    "ForbiddenError": "APIError",
    "NotFoundError": "APIError",
    "ConflictError": "APIError",
    "GoneError": "APIError",
    "PreconditionFailedError": "APIError",
    "LockedError": "APIError",
    "ServerError": "APIError",
}
if NEW_README:
    TREE.update(SandboxError="TildeError", CommandError="TildeError")
for name, parent in TREE.items():
    cls = getattr(exc, name)
    base = Exception if parent == "Exception" else getattr(exc, parent)
    assert issubclass(cls, base) and issubclass(cls, Exception), (name, parent)
    if CLIENT == "bundled":  # the README imports them from `tilde`
        assert getattr(tilde, name) is cls, name

if CLIENT == "bundled":
    # --- README -------------------------------------------------------------------------
    from tilde import NotFoundError, TildeError
    # --- end of README ------------------------------------------------------------------
else:
    from tilde.exceptions import NotFoundError, TildeError

caught = None
with printed() as out:
    # --- README -------------------------------------------------------------------------
    try:
        with repo.session() as session:
            with session.objects.get("nonexistent") as f:
                f.read()
    except NotFoundError as e:
        print(f"Not found: {e.message} (request_id={e.request_id})")
        caught = e  # (not in the README: keep it for the checks below)
    except TildeError as e:
        print(f"SDK error: {e}")
    # --- end of README ------------------------------------------------------------------

assert isinstance(caught, exc.NotFoundError), (caught, out)
assert isinstance(caught, exc.APIError) and isinstance(caught, exc.TildeError)
assert caught.status_code == 404, caught.status_code
assert caught.method == "GET", caught.method
assert "/object" in caught.url and "nonexistent" in caught.url, caught.url
for field in ("message", "code", "request_id", "response_text"):
    assert isinstance(getattr(caught, field), str), field
assert out == [f"Not found: {caught.message} (request_id={caught.request_id})"], out
assert "404" in str(caught), str(caught)
if official_since("0.7.8"):
    assert str(caught).endswith(f" [code={caught.code} request_id={caught.request_id}]"), (
        str(caught), caught.code, caught.request_id)

# TransportError: "network failures, DNS, timeouts".
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{s.getsockname()[1]}"
with tilde.Client(endpoint_url=closed) as client:
    try:
        client.repository(REPO).refresh()
    except exc.TransportError as e:
        assert isinstance(e, TildeError)
    else:
        raise AssertionError("no TransportError from a closed port")

# APIError on another status: an unknown repository is a 404 with the request's details.
try:
    tilde.repository(REPO + "-missing").refresh()
except NotFoundError as e:
    assert e.status_code == 404 and e.method == "GET" and f"{REPO_NAME}-missing" in e.url, e
else:
    raise AssertionError("an unknown repository did not raise NotFoundError")

done("error_handling")
