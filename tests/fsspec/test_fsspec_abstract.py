"""fsspec's own abstract test suite (``fsspec.tests.abstract``) on ``tilde://``, against a
real tilde-server. Every test gets a fresh repository as its ``fs_path``."""

from __future__ import annotations

from typing import Any

import fsspec.tests.abstract as abstract
import pytest

import fsspec
from conftest import ServerHandle, new_repo, unique
from tilde.fsspec import TildeFileSystem


class TildeFixtures(abstract.AbstractFixtures):
    @pytest.fixture
    def fs(self, server: ServerHandle) -> TildeFileSystem:
        f = fsspec.filesystem("tilde", api_key=server.api_key, endpoint_url=server.endpoint)
        assert isinstance(f, TildeFileSystem)
        return f

    @pytest.fixture(scope="class")
    @classmethod
    def repo_root(cls, server: ServerHandle) -> str:
        r = new_repo(server)
        return f"{r.org}/{r.repo}"

    @pytest.fixture
    def fs_path(self, repo_root: str) -> str:
        return f"{repo_root}/{unique('t')}"

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False

    # The scenarios touch files one by one; on tilde:// that would be a commit per file,
    # so each scenario is built in one transaction (one commit). The tests themselves run
    # without one.
    def _bulk_operations_scenario_0(self, some_fs: Any, some_join: Any, some_path: Any) -> Any:
        return _in_tx(some_fs, super()._bulk_operations_scenario_0, some_join, some_path)

    def _glob_edge_cases_files(self, some_fs: Any, some_join: Any, some_path: Any) -> Any:
        return _in_tx(some_fs, super()._glob_edge_cases_files, some_join, some_path)

    def _dir_and_file_with_same_name_prefix(self, some_fs: Any, some_join: Any,
                                            some_path: Any) -> Any:
        return _in_tx(some_fs, super()._dir_and_file_with_same_name_prefix, some_join,
                      some_path)

    def _10_files_with_hashed_names(self, some_fs: Any, some_join: Any,
                                    some_path: Any) -> Any:
        return _in_tx(some_fs, super()._10_files_with_hashed_names, some_join, some_path)


def _in_tx(some_fs: Any, build: Any, some_join: Any, some_path: Any) -> Any:
    if not isinstance(some_fs, TildeFileSystem):
        return build(some_fs, some_join, some_path)
    with some_fs.transaction:
        return build(some_fs, some_join, some_path)


class TestTildeCopy(abstract.AbstractCopyTests, TildeFixtures):
    pass


class TestTildeGet(abstract.AbstractGetTests, TildeFixtures):
    pass


class TestTildePut(abstract.AbstractPutTests, TildeFixtures):
    pass


class TestTildeOpen(abstract.AbstractOpenTests, TildeFixtures):
    pass


class TestTildePipe(abstract.AbstractPipeTests, TildeFixtures):
    pass
