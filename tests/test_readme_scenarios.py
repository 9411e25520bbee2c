"""The official README's examples, run as standalone scripts by the bundled client.

Each scenario under tests/scenarios/ gets a fresh organization and repository on the real
test server and runs in its own interpreter with a clean environment (only TILDE_API_KEY,
TILDE_ENDPOINT_URL, TILDE_TEST_REPO and CLIENT set, HOME empty). tests/test_official_sdk.py
runs the very same scripts with several official tilde-sdk releases (CLIENT=official and
TILDE_SDK_VERSION).

The scenarios of PIP_SCENARIOS (the README's `pip install pandas`) run against the
`pip_index_server` fixture instead of the session server: its sandboxes reach a local
package index through the egress proxy, and TILDE_TEST_PIP_CA (the test CA's PEM, which
the scenario commits for pip to trust) tells the scenario that the install must succeed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bypath import root_conftest

if TYPE_CHECKING:  # not at run time: tests/*/conftest.py modules share the name "conftest"
    from conftest import PipIndexServer, RepoRef, ServerHandle

SCENARIO_DIR = Path(__file__).parent / "scenarios"

# Listed explicitly (a test below keeps the list and the directory in step).
SCENARIOS = [
    "quickstart",
    "configuration",
    "repositories",
    "timeline",
    "sessions",
    "attaching",
    "objects",
    "uncommitted",
    "error_handling",
    "large_objects",
    "byte_ranges",
    "connectors",
    "shell",
    "execute",
    "output_streams",
    "organizations",
    "agents",
    "org_subresources",
    "groups",
    "policies",
]

# Scenarios whose README code runs `pip install`: against the pip_index_server fixture.
PIP_SCENARIOS = {"shell"}

# Variables that would change what the scripts test if they leaked in from the caller.
_DROP = {"PYTHONPATH", "PYTHONHOME", "PYTHONOPTIMIZE", "PYTHONSTARTUP", "PYTHONSAFEPATH"}


_USERS: dict[str, tuple[str, str]] = {}


def scenario_user(server: ServerHandle) -> tuple[str, str]:
    """(id, name) of a fresh user on this server, made once with `tilde-server user add`
    against its data directory while it runs; scenarios use it where the README writes
    "user-uuid" (each scenario adds it to its own fresh organization)."""
    key = str(server.data_dir)
    if key not in _USERS:
        name = f"readme-user-{uuid.uuid4().hex[:8]}"
        proc = root_conftest().server_cli(server.data_dir, "user", "add", "--data", key, name)
        assert proc.returncode == 0, proc.stderr
        _USERS[key] = (proc.stdout.split("(id ", 1)[1].split(")", 1)[0], name)
    return _USERS[key]


def run_scenario(
    python: str, name: str, server: ServerHandle, repo: RepoRef, client: str, workdir: Path,
    sdk_version: str = "", pip_ca: Path | None = None,
) -> None:
    """Run one scenario script; fail with its output unless it ran to its end.

    `sdk_version` (official client only) becomes TILDE_SDK_VERSION: the release the
    interpreter holds, which picks the form the scenario runs (tests/scenarios/_common.py).
    `pip_ca` becomes TILDE_TEST_PIP_CA: `server` is a pip_index_server's."""
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILDE_") and k not in _DROP}
    user_id, username = scenario_user(server)
    env.update(
        TILDE_TEST_USER_ID=user_id,
        TILDE_TEST_USERNAME=username,
        TILDE_API_KEY=server.api_key,
        TILDE_ENDPOINT_URL=server.endpoint,
        TILDE_TEST_REPO=repo.path,
        CLIENT=client,
        HOME=str(home),
    )
    if sdk_version:
        env["TILDE_SDK_VERSION"] = sdk_version
    if pip_ca is not None:
        env["TILDE_TEST_PIP_CA"] = str(pip_ca)
    label = f"{client} {sdk_version}" if sdk_version else client
    proc = subprocess.run(
        [python, str(SCENARIO_DIR / f"{name}.py")],
        env=env, cwd=workdir, capture_output=True, text=True,
        timeout=240,  # below pytest-timeout's 300 s, so a hang is reported as this scenario's
    )
    report = (
        f"scenario {name} with the {label} client ({python}) exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
    )
    assert proc.returncode == 0, report
    assert f"SCENARIO OK: {name} ({label} client)" in proc.stdout.splitlines(), report


def test_every_scenario_is_listed() -> None:
    on_disk = sorted(p.stem for p in SCENARIO_DIR.glob("*.py") if not p.name.startswith("_"))
    assert on_disk == sorted(SCENARIOS)


def scenario_target(request: pytest.FixtureRequest, name: str, with_pip: bool = True
                    ) -> tuple[ServerHandle, RepoRef, Path | None]:
    """(server, fresh repository, pip_ca) a scenario runs against: the pip_index_server
    for PIP_SCENARIOS (unless `with_pip` is False), else the session server."""
    if with_pip and name in PIP_SCENARIOS:
        pip: PipIndexServer = request.getfixturevalue("pip_index_server")
        return pip.server, pip.server.new_repo(), pip.ca_file
    server: ServerHandle = request.getfixturevalue("server")
    return server, server.new_repo(), None


@pytest.mark.parametrize("name", SCENARIOS)
def test_readme_scenario_bundled_client(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server, repo, pip_ca = scenario_target(request, name)
    run_scenario(sys.executable, name, server, repo, "bundled", tmp_path, pip_ca=pip_ca)
