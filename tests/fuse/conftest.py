"""Fixtures for real-mount tests (helpers in fusehelpers.py).

Every test gets a fresh repository and an empty mountpoint; mounts are made with the
``tilde-mount`` command exactly as a user runs it, and are always removed afterwards
(``fusermount3 -u -z`` plus killing the daemon), whatever the test did. A daemon log
holding a traceback fails the test.

A missing /dev/fuse is a failure here, never a skip: these tests are the product's proof.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fusehelpers import Api, Tool


@pytest.fixture(autouse=True)
def _require_fuse() -> None:
    assert os.path.exists("/dev/fuse"), "/dev/fuse is missing: FUSE tests must run here"
    assert shutil.which("fusermount3"), "fusermount3 is missing (apt-get install fuse3)"


@pytest.fixture
def tool(server: Any, tmp_path: Path) -> Iterator[Tool]:
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), TILDE_API_KEY=server.api_key,
               TILDE_ENDPOINT_URL=server.endpoint, XDG_CACHE_HOME=str(tmp_path / "cache"),
               XDG_STATE_HOME=str(tmp_path / "state"), GIT_CONFIG_NOSYSTEM="1",
               LC_ALL="C")
    env.pop("TILDE_API_URL", None)
    t = Tool(server, env)
    try:
        yield t
    finally:
        t.cleanup()
        logs = list((tmp_path / "state").rglob("*.log")) if (tmp_path / "state").exists() else []
        for log_path in logs:
            text = log_path.read_text(errors="replace")
            # An unexpected exception in the daemon is a bug even if the test passed.
            assert "Traceback" not in text, f"{log_path}:\n{text[-6000:]}"


@pytest.fixture
def api(server: Any, repo_ref: Any) -> Api:
    return Api(server, repo_ref)



def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fuse)
