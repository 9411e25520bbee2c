"""Official tilde-sdk releases, each in a virtualenv of its own, against the real tilde-server.

Every release in RELEASES gets `.venv-official-<release>/` at the project root (gitignored by
`.venv-*/`), built with `pip install tilde-sdk==<release>` from the package index. The
virtualenvs that are missing or hold anything but exactly that release are (re)built in
parallel, once per test session; valid ones are reused. A release whose virtualenv cannot be
built fails its tests: nothing here is ever skipped.

The scenarios are the ones tests/test_readme_scenarios.py runs with the bundled client,
started with CLIENT=official and TILDE_SDK_VERSION=<release>, which picks the form that
release's README and API give (tests/scenarios/_common.py). `test_release_api` pins the
API facts those choices rest on, read from each wheel's source. The oldest and the newest
release (PIP_RELEASES) run the scenarios that `pip install` against the pip_index_server,
where the install succeeds; the others run them against the session server (no index, so
the install fails and the scenario checks that), which keeps the run short.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from test_readme_scenarios import SCENARIOS, run_scenario, scenario_target

pytestmark = pytest.mark.official

PROJECT = Path(__file__).resolve().parents[1]

# 0.7.2: the baseline; 0.7.5: paging limit, Docker image names; 0.7.7: README rewrite, /exec
# shell, new upload routes; 0.7.9: the new sandbox states (tilde-api-changes.md, section 1).
RELEASES = ("0.7.2", "0.7.5", "0.7.7", "0.7.9")
PIP_RELEASES = {RELEASES[0], RELEASES[-1]}  # the long shell process and /exec per run

_PROBE = """
import importlib.metadata, json, tilde
print(json.dumps({"dist": importlib.metadata.version("tilde-sdk"),
                  "version": tilde.__version__, "file": tilde.__file__}))
"""


def venv_dir(release: str) -> Path:
    return PROJECT / f".venv-official-{release}"


def venv_python(release: str) -> Path:
    return venv_dir(release) / "bin" / "python"


def _probe(release: str) -> dict[str, str] | None:
    """What `import tilde` gives in the release's venv, or None if it does not work."""
    python = venv_python(release)
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-I", "-c", _PROBE], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        return None
    info: dict[str, str] = json.loads(proc.stdout)
    return info


def _valid(release: str, info: dict[str, str] | None) -> bool:
    return (
        info is not None
        and info["dist"] == release
        and info["version"] == release
        and Path(info["file"]).resolve().is_relative_to(venv_dir(release).resolve())
    )


def _build(release: str) -> str:
    """Build the release's venv afresh; returns "" or why it failed."""
    venv = venv_dir(release)
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv_python(release)), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", f"tilde-sdk=={release}"],
    ]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as e:
            return f"{' '.join(cmd)} timed out after {e.timeout} s"
        if proc.returncode != 0:
            return (f"{' '.join(cmd)} exited {proc.returncode}\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    info = _probe(release)
    if not _valid(release, info):
        return f"{venv} does not hold tilde-sdk=={release} on its own: {info}"
    return ""


def ensure(release: str) -> str:
    """The release's venv, built unless it is valid: "" or why it could not be built. A
    lock file serialises it across pytest processes (scripts/test.sh runs the dialect
    suites beside the main run, and both may want the 0.7.2 venv)."""
    lock = PROJECT / "build" / f"venv-official-{release}.lock"
    lock.parent.mkdir(exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        return "" if _valid(release, _probe(release)) else _build(release)


@pytest.fixture(scope="session")
def official_venvs() -> dict[str, str]:
    """release -> "" when its venv holds exactly that release, else why it could not be
    built. Invalid venvs are rebuilt in parallel, once per session."""
    problems = {release: "" for release in RELEASES}
    stale = [release for release in RELEASES if not _valid(release, _probe(release))]
    if stale:
        with ThreadPoolExecutor(max_workers=len(stale)) as pool:
            problems.update(zip(stale, pool.map(ensure, stale), strict=True))
    return problems


@pytest.fixture
def official_python(release: str, official_venvs: dict[str, str]) -> str:
    """The interpreter of the release's venv (the test fails if it could not be built)."""
    if official_venvs[release]:
        pytest.fail(f"could not build the virtualenv of tilde-sdk=={release}: "
                    f"{official_venvs[release]}")
    return str(venv_python(release))


def _run(python: str, code: str) -> str:
    proc = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _at_least(release: str, version: str) -> bool:
    return tuple(map(int, release.split("."))) >= tuple(map(int, version.split(".")))


@pytest.mark.parametrize("release", RELEASES)
def test_release_api(release: str, official_python: str) -> None:
    """The API facts the scenarios' forms rest on, per release (read from the wheels):
    why an official form exists at all (no release has these README names, spec 5.14), and
    the version thresholds of tests/scenarios/_common.py."""
    facts = json.loads(_run(official_python, """
import dataclasses, inspect, json, tilde, tilde.models as m, tilde._config as c
print(json.dumps({
    "readme_only_names": [hasattr(m.Repository, "timeline"), hasattr(m.Repository, "objects"),
                          hasattr(tilde, "NotFoundError"), hasattr(tilde, "TildeError")],
    "names": [hasattr(m.Repository, "commits"), hasattr(m.Commit, "objects")],
    "page_size": "page_size" in inspect.signature(m.SessionObjects.list).parameters,
    "presign": "presign" in inspect.signature(m.SessionObjects.get).parameters,
    "stderr": "stderr" in {f.name for f in dataclasses.fields(m.RunResult)},
    "shell_cmd": "cmd" in inspect.signature(m.Repository.shell).parameters,
    "is_terminal": hasattr(m.SandboxStatus, "is_terminal"),
    "image": c.DEFAULT_SANDBOX_IMAGE,
}))
"""))
    assert facts == {
        "readme_only_names": [False] * 4,
        "names": [True, True],
        "page_size": _at_least(release, "0.7.3"),
        "presign": not _at_least(release, "0.7.7"),
        "stderr": _at_least(release, "0.7.6"),
        "shell_cmd": not _at_least(release, "0.7.6"),
        "is_terminal": _at_least(release, "0.7.9"),
        "image": ("ubuntu:22.04" if _at_least(release, "0.7.5")
                  else "busybox" if _at_least(release, "0.7.4") else "ubuntu"),
    }, facts


@pytest.mark.parametrize(
    ("release", "name"),
    [(release, name) for release in RELEASES for name in SCENARIOS],
    ids=[f"{release}-{name}" for release in RELEASES for name in SCENARIOS],
)
def test_readme_scenario_official_client(
    release: str, name: str, official_python: str, request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    server, repo, pip_ca = scenario_target(request, name, with_pip=release in PIP_RELEASES)
    run_scenario(official_python, name, server, repo, "official", tmp_path, release,
                 pip_ca=pip_ca)
