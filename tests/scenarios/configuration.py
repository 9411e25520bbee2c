"""README "Configuration": resolution order, a missing key, tilde.configure, explicit Client.

Resolution order: explicit parameter > environment variable > default. A missing API key is
not an error at construction time; ConfigurationError comes with the first request.
HOME is an empty directory (the harness sees to it), so no ~/.tilde/config.yaml interferes.
"""

import os
import socket

from _common import API_KEY, ENDPOINT, REPO, check_client, done

import tilde
from tilde.exceptions import AuthenticationError, ConfigurationError, TransportError

check_client()


def closed_port_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# 1. The environment alone (TILDE_API_KEY, TILDE_ENDPOINT_URL) configures the default client.
assert tilde.repository(REPO).id

# 2. An explicit parameter beats the environment, for the key and for the endpoint.
with tilde.Client(api_key="tk-not-a-valid-key") as client:
    try:
        client.repository(REPO).refresh()
    except AuthenticationError as e:
        assert e.status_code == 401, e.status_code
    else:
        raise AssertionError("a wrong explicit api_key must win over TILDE_API_KEY")
with tilde.Client(endpoint_url=closed_port_endpoint()) as client:
    try:
        client.repository(REPO).refresh()
    except TransportError:
        pass
    else:
        raise AssertionError("an explicit endpoint_url must win over TILDE_ENDPOINT_URL")

# 3. No key anywhere: building a client works; the first request raises ConfigurationError.
del os.environ["TILDE_API_KEY"]
client = tilde.Client()
try:
    client.repository(REPO).refresh()
except ConfigurationError:
    pass
else:
    raise AssertionError("a request without any API key must raise ConfigurationError")
client.close()

# 4. README "Explicit configuration", with the environment pointing elsewhere so that only
#    tilde.configure() can make it work.
os.environ["TILDE_API_KEY"] = "tk-not-a-valid-key"
os.environ["TILDE_ENDPOINT_URL"] = closed_port_endpoint()
# --- README -----------------------------------------------------------------------------
import tilde  # noqa: E402

tilde.configure(api_key=API_KEY, endpoint_url=ENDPOINT)
repo = tilde.repository(REPO)
# --- end of README ----------------------------------------------------------------------
assert repo.id, "tilde.configure() did not take effect"
assert repo.visibility in ("private", "public"), repo.visibility

# 5. README "Explicit client": only api_key is given, the endpoint comes from the environment.
os.environ["TILDE_ENDPOINT_URL"] = ENDPOINT
os.environ["TILDE_API_KEY"] = "tk-not-a-valid-key"
# --- README -----------------------------------------------------------------------------
from tilde import Client  # noqa: E402

with Client(api_key=API_KEY) as client:
    repo = client.repository(REPO)
    # --- end of README ------------------------------------------------------------------
    assert repo.id, "the explicit client did not reach the repository"
    with repo.session() as session:
        session.objects.put("configured.txt", b"explicit client")
        assert session.commit("explicit client commit")

done("configuration")
