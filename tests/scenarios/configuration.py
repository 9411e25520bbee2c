"""README "Configuration": resolution order, a missing key, tilde.configure, explicit Client.

Resolution order: explicit parameter > environment variable > default. A missing API key is
not an error at construction time; ConfigurationError comes with the first request.
HOME is an empty directory (the harness sees to it), so no ~/.tilde/config.yaml interferes.

From 0.7.7 the section is "Authentication" (NEW_README): `tilde.configure(api_key=...)` without
an endpoint, and two more sources in the order: the CLI's ~/.tilde/config.yaml after the
environment, and the sandbox metadata endpoint, which a static key always beats.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

from _common import API_KEY, ENDPOINT, NEW_README, REPO, check_client, done

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
if not NEW_README:
    os.environ["TILDE_ENDPOINT_URL"] = closed_port_endpoint()
    # --- README -------------------------------------------------------------------------
    import tilde

    tilde.configure(api_key=API_KEY, endpoint_url=ENDPOINT)
    repo = tilde.repository(REPO)
    # --- end of README ------------------------------------------------------------------
else:
    # --- README (0.7.7+): Module-level configuration; the endpoint is the environment's -
    import tilde

    tilde.configure(api_key=API_KEY)
    repo = tilde.repository(REPO)
    # --- end of README ------------------------------------------------------------------
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

if NEW_README:
    # 6. README (0.7.7+) "Using the CLI's saved credentials": no key in the environment,
    #    ~/.tilde/config.yaml holds it; the README's two lines run in a fresh interpreter.
    config = Path.home() / ".tilde" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"api_key: {API_KEY}\nendpoint_url: {ENDPOINT}\n")
    readme = f"import tilde\n\nrepo = tilde.repository({REPO!r})\nprint(repo.id)\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILDE_")}
    cli = subprocess.run([sys.executable, "-c", readme], env=env, capture_output=True,
                         text=True, timeout=60)
    assert cli.returncode == 0 and cli.stdout.strip() == repo.id, cli
    # ... and the environment still wins over the file.
    env["TILDE_API_KEY"] = "tk-not-a-valid-key"
    cli = subprocess.run([sys.executable, "-c", readme], env=env, capture_output=True,
                         text=True, timeout=60)
    assert cli.returncode != 0 and "AuthenticationError" in cli.stderr, cli
    config.unlink()

    # 7. "A static key always wins over sandbox auto-detection": a credentials URI that
    #    nothing answers changes nothing while TILDE_API_KEY is set.
    env = dict(os.environ, TILDE_API_KEY=API_KEY, TILDE_ENDPOINT_URL=ENDPOINT,
               TILDE_SANDBOX_CREDENTIALS_URI=closed_port_endpoint() + "/credentials")
    cli = subprocess.run([sys.executable, "-c", readme], env=env, capture_output=True,
                         text=True, timeout=60)
    assert cli.returncode == 0 and cli.stdout.strip() == repo.id, cli

done("configuration")
