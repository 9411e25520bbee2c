"""Permissions as the kernel sees them (``default_permissions``): the stored owner and mode
decide what *other* users of an ``allow_other`` mount may do, across a commit and a
remount; ``-o uid=,gid=`` maps every owner. Another user is uid/gid 65534 via setpriv(1).

The mountpoints live in a 0755 directory under /tmp (pytest's own are 0700, which the
other user could not even traverse).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fusehelpers import Api, Tool

NOBODY = 65534


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", *argv], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        if os.environ.get("CI"):
            pytest.fail("these tests need root and setpriv (util-linux)")
        pytest.skip("needs root and setpriv")
    d = Path(tempfile.mkdtemp(prefix="tilde-perm-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_stored_modes_hold_for_other_users(tool: Tool, api: Api, shared_dir: Path) -> None:
    mnt = shared_dir / "mnt"
    tool.mount(api.ref.path, mnt, "-o", "allow_other")
    (mnt / "secret.txt").write_bytes(b"secret\n")
    (mnt / "secret.txt").chmod(0o600)
    (mnt / "public.txt").write_bytes(b"public\n")
    (mnt / "private").mkdir(mode=0o700)
    (mnt / "private" / "inside.txt").write_bytes(b"inside\n")
    (mnt / "run.sh").write_text("#!/bin/sh\necho ran as $(id -u)\n")
    (mnt / "run.sh").chmod(0o755)
    tool.tm("unmount", str(mnt), "-m", "modes")

    again = shared_dir / "again"
    tool.mount(api.ref.path, again, "-o", "allow_other")
    st = os.stat(again / "secret.txt")
    assert (st.st_mode & 0o7777, st.st_uid) == (0o600, 0)
    denied = _as_nobody("cat", str(again / "secret.txt"))
    assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied
    assert _as_nobody("cat", str(again / "public.txt")).stdout == "public\n"
    inside = _as_nobody("cat", str(again / "private" / "inside.txt"))
    assert inside.returncode != 0 and "Permission denied" in inside.stderr, inside
    wrote = _as_nobody("sh", "-c", f"echo x > {again}/public.txt")
    assert wrote.returncode != 0, "0644 owned by root: no write for others"
    ran = _as_nobody(str(again / "run.sh"))
    assert ran.returncode == 0 and ran.stdout == f"ran as {NOBODY}\n", ran
    assert (again / "public.txt").read_bytes() == b"public\n"


def test_uid_gid_options_map_every_owner(tool: Tool, api: Api, shared_dir: Path) -> None:
    mnt = shared_dir / "mnt"
    tool.mount(api.ref.path, mnt)
    (mnt / "secret.txt").write_bytes(b"secret\n")
    (mnt / "secret.txt").chmod(0o600)
    tool.tm("unmount", str(mnt), "-m", "root's secret")

    mapped = shared_dir / "mapped"
    tool.mount(api.ref.path, mapped, "-o", f"allow_other,uid={NOBODY},gid={NOBODY}")
    st = os.stat(mapped / "secret.txt")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (NOBODY, NOBODY, 0o600)
    assert _as_nobody("cat", str(mapped / "secret.txt")).stdout == "secret\n"
    wrote = _as_nobody("sh", "-c", f"echo theirs > {mapped}/new.txt")
    assert wrote.returncode == 0, wrote
    assert os.stat(mapped / "new.txt").st_uid == NOBODY
    tool.tm("unmount", str(mapped), "-m", "written as nobody")
    listed = api.get("/objects", amount=100).json()["results"]
    meta = {x["path"]: x["entry"]["metadata"] for x in listed}
    # the stored owner is who wrote it, whatever the mapping showed
    assert meta["secret.txt"]["posix-uid"] == "0"
    assert meta["new.txt"]["posix-uid"] == str(NOBODY)
