"""The official tilde-sdk 0.7.2, in a virtualenv of its own, against the real tilde-server.

The virtualenv lives in .venv-official/ at the project root (gitignored). It is built once
with `pip install tilde-sdk==0.7.2` from the package index and reused while it still holds
exactly that client. Failing to build it fails these tests: nothing here is ever skipped.
The scenarios are the ones tests/test_readme_scenarios.py runs with the bundled client,
started with CLIENT=official (see tests/scenarios/_common.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from test_readme_scenarios import SCENARIOS, run_scenario

if TYPE_CHECKING:  # not at run time: tests/*/conftest.py modules share the name "conftest"
    from conftest import RepoRef, ServerHandle

pytestmark = pytest.mark.official

PROJECT = Path(__file__).resolve().parents[1]
VENV = PROJECT / ".venv-official"
PYTHON = VENV / "bin" / "python"
REQUIREMENT = "tilde-sdk==0.7.2"

_PROBE = """
import importlib.metadata, json, tilde
print(json.dumps({"dist": importlib.metadata.version("tilde-sdk"),
                  "version": tilde.__version__, "file": tilde.__file__}))
"""


def _probe() -> dict[str, str] | None:
    """What `import tilde` gives in the official venv, or None if it does not work."""
    if not PYTHON.exists():
        return None
    proc = subprocess.run(
        [str(PYTHON), "-I", "-c", _PROBE], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        return None
    info: dict[str, str] = json.loads(proc.stdout)
    return info


def _valid(info: dict[str, str] | None) -> bool:
    return (
        info is not None
        and info["dist"] == "0.7.2"
        and info["version"] == "0.7.2"
        and Path(info["file"]).resolve().is_relative_to(VENV.resolve())
    )


@pytest.fixture(scope="session")
def official_python() -> str:
    """The interpreter of .venv-official, with tilde-sdk 0.7.2 and nothing of this project."""
    if not _valid(_probe()):
        shutil.rmtree(VENV, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(VENV)],
            [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             REQUIREMENT],
        ]
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                pytest.fail(
                    f"could not build the official client's virtualenv: {' '.join(cmd)} "
                    f"exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
                )
    info = _probe()
    assert _valid(info), f"{VENV} does not hold {REQUIREMENT} on its own: {info}"
    return str(PYTHON)


def test_official_client_lacks_the_readme_only_names(official_python: str) -> None:
    """Why the scenarios have an official form at all: 0.7.2 really lacks these (spec 5.14)."""
    code = (
        "import tilde, tilde.models as m;"
        "print(hasattr(m.Repository, 'timeline'), hasattr(m.Repository, 'objects'),"
        " hasattr(tilde, 'NotFoundError'), hasattr(tilde, 'TildeError'),"
        " hasattr(m.Repository, 'commits'), hasattr(m.Commit, 'objects'))"
    )
    proc = subprocess.run([official_python, "-I", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"] * 4 + ["True"] * 2, proc.stdout


@pytest.mark.parametrize("name", SCENARIOS)
def test_readme_scenario_official_client(
    name: str, official_python: str, server: ServerHandle, repo_ref: RepoRef, tmp_path: Path
) -> None:
    run_scenario(official_python, name, server, repo_ref, "official", tmp_path)
