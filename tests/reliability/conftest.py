"""Fixtures for the reliability suite (fault injection, crashes, model and fsx runs,
security checks): the real-mount helpers of tests/fuse, collected once by the main
pytest run (not re-run per wire dialect, to keep CI inside its budget).

Long runs (many seeds, soak) are behind ``TILDE_RELIABILITY=full`` (see figures.py and
scripts/reliability.sh); CI runs a seeded, bounded slice of each.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuse"))

from fusehelpers import Api, Tool, check_daemon_logs, tool_env


@pytest.fixture
def fuse_ready() -> None:
    """FUSE prerequisites: missing ones are a failure, never a skip."""
    assert os.path.exists("/dev/fuse"), "/dev/fuse is missing: FUSE tests must run here"
    assert shutil.which("fusermount3"), "fusermount3 is missing (apt-get install fuse3)"


@pytest.fixture
def tool(server: Any, tmp_path: Path, fuse_ready: None) -> Iterator[Tool]:
    """``tilde-mount`` and ordinary programs with the test's environment; mounts are
    always removed afterwards and a daemon log holding a traceback fails the test."""
    t = Tool(server, tool_env(server, tmp_path))
    try:
        yield t
    finally:
        t.cleanup()
        check_daemon_logs(tmp_path)


@pytest.fixture
def api(server: Any, repo_ref: Any) -> Api:
    return Api(server, repo_ref)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite's admin keys in no log file the run wrote (the canary check of
    test_security_canary.py, over the whole suite): a hit fails the run."""
    keys = {m.ADMIN_KEY for m in [*session.config.pluginmanager.get_plugins(),
                                  sys.modules.get("tilde_tests_root_conftest")]
            if isinstance(getattr(m, "ADMIN_KEY", None), str)}
    factory = getattr(session.config, "_tmp_path_factory", None)
    if not keys or factory is None:
        return
    hits = []
    for log in Path(factory.getbasetemp()).rglob("*.log"):
        try:
            data = log.read_bytes()[: 64 * 1024 * 1024]
        except OSError:
            continue
        hits += [str(log) for k in keys if k.encode() in data]
    if hits:
        print("\nsecurity: an API key of the suite is in these logs:\n" + "\n".join(hits))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
