"""The POSIX behaviour suite of tests/mount_core/behaviour.py, through a real mount.

One suite, two harnesses (architecture.md item 10): tests/mount_core/test_posix.py runs
every check against `Filesystem` directly; here each one runs with plain ``os`` calls on a
mount made by ``tilde-mount`` (the daemon in a subprocess against the real server), and
the result is then committed with ``tilde-mount commit`` and compared, path by path and
byte by byte, with what the mount showed.

behaviour.py is loaded by its file path: ``tests/conftest.py`` and ``tests/fuse/conftest.py``
both live under the module name "conftest", and ``tests`` is not a package, so an import
by module name would depend on which test directories a run happens to collect.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from fusehelpers import Api, Tool, local_tree

from bypath import load

behaviour = load("mount_core/behaviour.py", "tilde_tests_mount_core_behaviour")
Check = Callable[[Any], Awaitable[None]]


def test_the_suite_is_the_whole_suite() -> None:
    """Every ``check_*`` of behaviour.py is in POSIX_CHECKS, so both harnesses run it."""
    defined = {n for n in vars(behaviour) if n.startswith("check_")}
    assert defined == {c.__name__ for c in behaviour.POSIX_CHECKS}


@pytest.mark.parametrize("check", behaviour.POSIX_CHECKS, ids=lambda c: c.__name__)
def test_posix_behaviour_on_a_real_mount(check: Check, tool: Tool, api: Api,
                                         tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    old = os.umask(0o022)  # the kernel applies the caller's umask to create/mkdir
    try:
        trio.run(check, behaviour.OsFs(mnt))
    finally:
        os.umask(old)
    shown = local_tree(mnt)
    r = tool.tm("commit", str(mnt), "-m", check.__name__)
    if shown:
        assert api.tree(r.stdout.strip()) == shown
    else:
        assert "nothing to commit" in r.stderr
    tool.tm("unmount", str(mnt))
