"""Every way a mount can be refused: one clear line on stderr, non-zero exit, no mount."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fusehelpers import Api, Tool, is_mounted


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _refused(tool: Tool, args: list[str], mnt: Path, needle: str,
             env: dict[str, str] | None = None) -> None:
    r = tool.tm(*args, check=False, env=env)
    assert r.returncode != 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("tilde-mount: ")
    assert needle in lines[0].lower(), lines[0]
    assert not is_mounted(mnt)


@pytest.mark.parametrize("case", ["bad-path", "unknown-repo", "unreachable", "bad-key",
                                  "no-key", "unknown-commit", "unknown-session"])
def test_refused_mounts(tool: Tool, api: Api, tmp_path: Path, case: str) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env: dict[str, Any] = dict(tool.env)
    args = [api.ref.path, str(mnt)]
    needle = {"bad-path": "repository path", "unknown-repo": "not found",
              "unreachable": "cannot reach", "bad-key": "rejected", "no-key": "api key",
              "unknown-commit": "not found", "unknown-session": "not found"}[case]
    if case == "bad-path":
        args[0] = "no-slash-here"
    elif case == "unknown-repo":
        args[0] = f"{api.ref.org}/does-not-exist"
    elif case == "unreachable":
        args += ["--endpoint", f"http://127.0.0.1:{_closed_port()}"]
    elif case == "bad-key":
        args += ["--api-key", "tk-wrong"]
    elif case == "no-key":
        env.pop("TILDE_API_KEY")
    elif case == "unknown-commit":
        args += ["--commit", "0" * 40]
    elif case == "unknown-session":
        args += ["--session", "no-such-session"]
    _refused(tool, args, mnt, needle, env)


def test_refused_mountpoints(tool: Tool, api: Api, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    _refused(tool, [api.ref.path, str(full)], full, "not empty")
    missing = tmp_path / "missing"
    _refused(tool, [api.ref.path, str(missing)], missing, "does not exist")
    afile = tmp_path / "afile"
    afile.write_text("")
    _refused(tool, [api.ref.path, str(afile)], afile, "not a directory")
    # Already a tilde mount.
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    r = tool.tm(api.ref.path, str(mnt), check=False)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1


def test_control_commands_on_a_plain_directory(tool: Tool, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for args in (["commit", str(plain), "-m", "x"], ["status", str(plain)],
                 ["rollback", str(plain)], ["unmount", str(plain)]):
        _refused(tool, args, plain, "not a tilde mount")


def test_control_commands_on_anything_but_a_tilde_mount(tool: Tool, api: Api,
                                                       tmp_path: Path) -> None:
    """A missing path, a plain file, another filesystem's mount, a directory inside a
    tilde mount: every subcommand answers with one clear line and a non-zero exit."""
    afile = tmp_path / "afile"
    afile.write_text("")
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    (mnt / "sub").mkdir()
    cases = [(tmp_path / "missing", "no such directory"), (afile, "not a tilde mount"),
             (Path("/proc"), "not a tilde mount"),
             (mnt / "sub", f"inside the one at {mnt}".lower())]
    for path, needle in cases:
        for args in (["commit", str(path), "-m", "x"], ["status", str(path)],
                     ["status", "--json", str(path)], ["rollback", str(path)],
                     ["unmount", str(path)]):
            r = tool.tm(*args, check=False)
            lines = r.stderr.strip().splitlines()
            assert r.returncode != 0 and len(lines) == 1, (args, r.stderr)
            assert lines[0].startswith("tilde-mount: ") and needle in lines[0].lower(), lines
    assert is_mounted(mnt)


def test_help_is_available(tool: Tool) -> None:
    for args in (["--help"], ["mount", "--help"], ["commit", "--help"], ["status", "--help"],
                 ["rollback", "--help"], ["unmount", "--help"]):
        r = tool.tm(*args)
        assert "Usage" in r.stdout


def test_help_imports_nothing_heavy() -> None:
    """``--help`` and the control commands are instant: the daemon, the filesystem,
    pyfuse3, trio and httpx are imported only when a mount starts."""
    code = ("import sys\n"
            "from tilde_mount import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = {'pyfuse3', 'trio', 'httpx', 'tilde', 'tilde_mount.daemon',\n"
            "         'tilde_mount.fs', 'cachetools'}\n"
            "print(sorted(heavy & set(sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True)
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout
