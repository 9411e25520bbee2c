"""The bubblewrap command line of one sandbox process, and the limits around it.

Subtleties:
1. Not `/`: only the image's system directories are bound, read-only, so the server's data
   directory, its keys, HOME, /root and /home are not in the sandbox's mount namespace at all.
2. When the server runs as root, the process is started as an unprivileged uid (65534,
   `nobody`) before bwrap runs, so bwrap builds an unprivileged user namespace: the sandbox has
   no capabilities outside it and cannot read root-only host files even through a leak.
3. The environment is passed through the process environment (not `--setenv`), so values
   never appear in a command line that `ps` shows on the host.
4. Resource limits are set by `prlimit` in front of bwrap and inherited by everything inside.
   RLIMIT_NPROC counts processes per real uid, so it is only set when sandboxes run under
   their own uid (root server); it is then shared by all sandboxes.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from tilde_server.sandbox.images import Image, bind_args

SANDBOX_UID = 65534
SANDBOX_GID = 65534
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Limits:
    nproc: int = 1024
    fsize: int = 16 * 1024**3
    address_space: int = 16 * 1024**3
    nofile: int = 4096

    def prlimit_args(self, with_nproc: bool) -> list[str]:
        args = [f"--fsize={self.fsize}", f"--as={self.address_space}",
                f"--nofile={self.nofile}", "--core=0"]
        if with_nproc:
            args.insert(0, f"--nproc={self.nproc}")
        return args


class BwrapMissing(Exception):
    pass


def bwrap_path() -> str:
    exe = shutil.which("bwrap")
    if exe is None:
        raise BwrapMissing("bubblewrap (bwrap) is not installed; install the Debian package "
                           "'bubblewrap' (scripts/setup.sh does)")
    return exe


def drop_privileges() -> bool:
    """Whether sandbox processes are started under SANDBOX_UID (the server runs as root)."""
    return os.geteuid() == 0


def command(*, image: Image, repo_dir: str, mountpoint: str, argv: list[str],
            network: bool, limits: Limits, cwd: str | None = None,
            extra_binds: list[tuple[str, str]] | None = None,
            info_fd: int | None = None) -> list[str]:
    """The full argv: prlimit ... -- bwrap ... -- argv."""
    top = mountpoint.strip("/").split("/")[0]
    bw = [bwrap_path(), "--unshare-all"]
    if network:
        bw.append("--share-net")
    bw += ["--die-with-parent", "--new-session", "--cap-drop", "ALL",
           "--hostname", "sandbox"]
    bw += bind_args(image, top)
    bw += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run"]
    bw += ["--bind", repo_dir, mountpoint]
    for src, dst in extra_binds or []:
        bw += ["--ro-bind", src, dst]
    if info_fd is not None:  # written once the sandbox is set up: its absence = setup failed
        bw += ["--info-fd", str(info_fd)]
    bw += ["--chdir", cwd or mountpoint, "--"]
    pl = [shutil.which("prlimit") or "prlimit", *limits.prlimit_args(drop_privileges()), "--"]
    return [*pl, *bw, *argv]


def environment(mountpoint: str, user_env: dict[str, str],
                extra: dict[str, str]) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "TERM": "dumb",
           "USER": "sandbox", "PWD": mountpoint, "TILDE_SANDBOX_MOUNTPOINT": mountpoint}
    env.update(extra)
    env.update(user_env)
    return env
