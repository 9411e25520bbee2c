"""A request's loader variables (`LD_PRELOAD` ...) reach the sandbox only, never the host-side
processes that build it (bwrap.py, subtlety 8): otherwise a library of the request's choosing
would run on the host, outside bubblewrap, before the sandbox exists."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sbhelpers import SandboxApi, require_bwrap


@pytest.fixture
def api(server: object, repo_ref: object) -> SandboxApi:
    return SandboxApi(server, repo_ref)

EVIDENCE_SO = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    char exe[256] = {0}, line[300];
    readlink("/proc/self/exe", exe, sizeof exe - 1);
    int fd = open(EVIDENCE, O_WRONLY | O_APPEND | O_CREAT, 0666);
    if (fd < 0) return;
    snprintf(line, sizeof line, "%s\n", exe);
    write(fd, line, strlen(line));
    close(fd);
}
"""


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory the sandbox uid can reach on the host (tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="tilde-loader-", dir="/tmp"))
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_ld_preload_reaches_the_sandbox_not_the_host(api: SandboxApi, world_dir: Path) -> None:
    require_bwrap()
    assert shutil.which("gcc"), "gcc is missing: run scripts/setup.sh"
    evidence = world_dir / "evidence"
    src = world_dir / "mark.c"
    src.write_text(EVIDENCE_SO)
    lib = world_dir / "mark.so"
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DEVIDENCE="{evidence}"', "-o", str(lib),
                    str(src)], check=True)
    os.chmod(lib, 0o755)
    # The library works: a host process that preloads it leaves its mark.
    subprocess.run(["/bin/true"], env={"LD_PRELOAD": str(lib)}, check=True)
    assert evidence.read_text().strip() == "/usr/bin/true"
    evidence.unlink()
    st, out = api.run({"image": "python-312", "command": [
        "/bin/sh", "-c", 'echo "preload=$LD_PRELOAD lib=$LD_LIBRARY_PATH"'],
        "env_vars": {"LD_PRELOAD": str(lib), "LD_LIBRARY_PATH": "/nowhere"}})
    assert st["status"] == "committed", (st, out)
    # Inside, the variables are there (the library itself is not in the sandbox: ignored).
    assert f"preload={lib} lib=/nowhere" in out.decode(), out
    # No host-side process (gate shell, prlimit, bwrap) loaded it.
    assert not evidence.exists(), evidence.read_text()
