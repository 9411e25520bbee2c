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
from fusehelpers import Api, Tool, check_daemon_logs, tool_env


@pytest.fixture(autouse=True)
def _require_fuse() -> None:
    assert os.path.exists("/dev/fuse"), "/dev/fuse is missing: FUSE tests must run here"
    assert shutil.which("fusermount3"), "fusermount3 is missing (apt-get install fuse3)"


@pytest.fixture
def tool(server: Any, tmp_path: Path) -> Iterator[Tool]:
    t = Tool(server, tool_env(server, tmp_path))
    try:
        yield t
    finally:
        t.cleanup()
        check_daemon_logs(tmp_path)


@pytest.fixture
def api(server: Any, repo_ref: Any) -> Api:
    return Api(server, repo_ref)



def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fuse)
