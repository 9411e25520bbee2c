"""Test modules loaded by file path, once, under a name of their own.

Several ``tests/*/conftest.py`` share the module name "conftest", so ``from conftest import
...`` is ambiguous at run time; and tests/fuse reuses tests/mount_core/behaviour.py without
making tests/ a package. Every suite that needs one of these modules gets it here::

    from bypath import root_conftest
    root = root_conftest()            # tests/conftest.py: start_server, new_repo, ...
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parent


def load(relative: str, name: str) -> ModuleType:
    """``tests/<relative>`` as module ``name`` (the same object for every caller)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def root_conftest() -> ModuleType:
    return load("conftest.py", "tilde_tests_root_conftest")
