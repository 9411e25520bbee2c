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
   their own uid (root server); it is then shared by all sandboxes. These are per-process
   backstops: the per-sandbox CPU, memory and process-count limits are cgroups (cgroups.py).
5. No way back out: `--new-session` (no controlling terminal, so TIOCSTI cannot type into
   the server's terminal), `--cap-drop ALL` (mount, unshare(CLONE_NEWNS) are EPERM),
   `--disable-userns` (a nested user namespace would give back every capability inside it)
   and a seccomp filter (seccomp_filter()) that answers EPERM to ptrace and
   process_vm_readv/writev: without it a sandboxed process could attach to bwrap's init
   (pid 1 of the sandbox, same uid) or any sibling. tests/reliability/test_security_sandbox.py
   probes each of these from inside.
6. /tmp (HOME) is one host directory per sandbox (manager.py makes it in the sandbox's
   runtime directory, owned by the sandbox uid, mode 0700, removed at teardown), bound into
   every process of the sandbox: the runs of a service sandbox (`/exec`, one bwrap process
   each) see what the ones before wrote there, e.g. a `pip install`. It is on the host's
   disk, not a tmpfs: only RLIMIT_FSIZE bounds a file.
7. pip: the system's site-packages are read-only in the sandbox, so pip installs into the
   user site (PYTHONUSERBASE=/tmp/.local, its bin first on PATH) by itself ("Defaulting to
   user installation because normal site-packages is not writeable"). PEP 668's
   EXTERNALLY-MANAGED marker (Debian's python3) would refuse even that:
   PIP_BREAK_SYSTEM_PACKAGES=1 lifts it, safely, since the system cannot change here. Not
   PIP_USER=1: it would make pip fail in a virtualenv made inside the sandbox ("Can not
   perform a '--user' install"), where an ordinary install is right. PIP_COMPILE=0 (not
   PIP_NO_COMPILE=1, which pip reads as "compile"): a sandbox is short-lived and imports a
   fraction of what it installs; Python compiles what is imported into the writable user
   site (pandas: the install 7 s instead of 20 s, its first import 2.9 s instead of 0.6 s).
8. The sandbox's environment is the environment of the host-side processes that build it
   (the gate shell, prlimit, bwrap) too. The variables the dynamic loader and libc act on
   (`LD_PRELOAD`, `LD_LIBRARY_PATH`, `GCONV_PATH`, ... see split_host_env) would run code of
   the request's choosing there, outside the sandbox: they are left out of that environment
   and set by `bwrap --setenv` inside instead (their values then show in `ps`, which is why
   nothing else goes that way).
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass

from tilde_server.sandbox.images import Image, bind_args

SANDBOX_UID = 65534
SANDBOX_GID = 65534
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Python's user base in the sandbox's scratch /tmp (subtlety 7): `pip install` lands there.
USER_BASE = "/tmp/.local"
PIP_ENV = {"PYTHONUSERBASE": USER_BASE, "PIP_BREAK_SYSTEM_PACKAGES": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_COMPILE": "0"}


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


# Syscalls answered EPERM inside a sandbox (subtlety 5), by seccomp audit architecture:
# (whether x32 numbers exist and are refused, [ptrace, process_vm_readv, process_vm_writev]).
_DENIED_SYSCALLS: dict[int, tuple[bool, tuple[int, ...]]] = {
    0xC000003E: (True, (101, 310, 311)),   # x86_64
    0xC00000B7: (False, (117, 270, 271)),  # aarch64
}
_RET_ALLOW = 0x7FFF0000
_RET_EPERM = 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM


def seccomp_filter() -> bytes:
    """The classic-BPF program bwrap loads with `--seccomp FD` (struct sock_filter array).

    Other architectures than those of _DENIED_SYSCALLS are let through unfiltered (the rest of
    the isolation still holds there)."""
    prog: list[tuple[str, int, str]] = [("ld", 4, "")]  # seccomp_data.arch
    prog += [("jeq", arch, f"arch{arch:x}") for arch in _DENIED_SYSCALLS]
    prog.append(("ret", _RET_ALLOW, ""))
    for arch, (x32, numbers) in _DENIED_SYSCALLS.items():
        prog.append(("label", 0, f"arch{arch:x}"))
        prog.append(("ld", 0, ""))  # seccomp_data.nr
        if x32:
            prog.append(("jge", 0x40000000, "deny"))
        prog += [("jeq", nr, "deny") for nr in numbers]
        prog.append(("ret", _RET_ALLOW, ""))
    prog += [("label", 0, "deny"), ("ret", _RET_EPERM, "")]
    labels: dict[str, int] = {}
    pos = 0
    for op, _, name in prog:
        if op == "label":
            labels[name] = pos
        else:
            pos += 1
    out = bytearray()
    pos = 0
    codes = {"ld": 0x20, "jeq": 0x15, "jge": 0x35, "ret": 0x06}
    for op, k, name in prog:
        if op == "label":
            continue
        jt = labels[name] - pos - 1 if op in ("jeq", "jge") else 0
        out += struct.pack("=HBBI", codes[op], jt, 0, k)
        pos += 1
    return bytes(out)


def seccomp_fd() -> int:
    """A readable fd at offset 0 holding seccomp_filter(), for `--seccomp FD`; the caller
    passes it to bwrap (pass_fds) and closes it afterwards."""
    fd = os.memfd_create("tilde-sandbox-seccomp", 0)
    os.write(fd, seccomp_filter())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


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
            info_fd: int | None = None, seccomp: int | None = None,
            scratch: str | None = None,
            setenv: dict[str, str] | None = None) -> list[str]:
    """The full argv: prlimit ... -- bwrap ... -- argv (`seccomp`: an fd from seccomp_fd();
    `scratch`: the sandbox's host directory bound read-write at /tmp, subtlety 6; without it
    /tmp is a tmpfs of this process alone)."""
    top = mountpoint.strip("/").split("/")[0]
    bw = [bwrap_path(), "--unshare-all", "--unshare-user", "--disable-userns"]
    if network:
        bw.append("--share-net")
    bw += ["--die-with-parent", "--new-session", "--cap-drop", "ALL",
           "--hostname", "sandbox"]
    if seccomp is not None:
        bw += ["--seccomp", str(seccomp)]
    for name, value in (setenv or {}).items():  # subtlety 8
        bw += ["--setenv", name, value]
    bw += bind_args(image, top)
    bw += ["--proc", "/proc", "--dev", "/dev"]
    bw += ["--bind", scratch, "/tmp"] if scratch else ["--tmpfs", "/tmp"]
    bw += ["--tmpfs", "/run"]
    bw += ["--bind", repo_dir, mountpoint]
    for src, dst in extra_binds or []:
        bw += ["--ro-bind", src, dst]
    if info_fd is not None:  # written once the sandbox is set up: its absence = setup failed
        bw += ["--info-fd", str(info_fd)]
    bw += ["--chdir", cwd or mountpoint, "--"]
    pl = [shutil.which("prlimit") or "prlimit", *limits.prlimit_args(drop_privileges()), "--"]
    return [*pl, *bw, *argv]


# Variables the dynamic loader and libc act on in every program they start (glibc's list of
# "unsecure" variables): kept out of the host-side processes (subtlety 8).
_LOADER_NAMES = frozenset({"GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES",
                           "LOCALDOMAIN", "LOCPATH", "MALLOC_TRACE", "NIS_PATH", "NLSPATH",
                           "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR", "TZDIR"})


def split_host_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(what the host-side processes may get, what only the sandbox gets via --setenv)."""
    loader = {k: v for k, v in env.items() if k.startswith("LD_") or k in _LOADER_NAMES}
    return {k: v for k, v in env.items() if k not in loader}, loader


def environment(mountpoint: str, user_env: dict[str, str],
                extra: dict[str, str]) -> dict[str, str]:
    """The sandbox's environment: these defaults, then `extra` (the server's), then
    `user_env` (the operator's --sandbox-env and the request's own), which win. The python
    defaults make `pip install` work without touching the read-only system (subtlety 7)."""
    env = {"PATH": f"{USER_BASE}/bin:{DEFAULT_PATH}", "HOME": "/tmp", "LANG": "C.UTF-8",
           "TERM": "dumb", "USER": "sandbox", "PWD": mountpoint,
           "TILDE_SANDBOX_MOUNTPOINT": mountpoint, **PIP_ENV}
    env.update(extra)
    env.update(user_env)
    return env
