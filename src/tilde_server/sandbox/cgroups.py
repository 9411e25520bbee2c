"""Per-sandbox CPU, memory and process-count limits with cgroups (v2 or v1).

`detect(tag)` finds a backend once per server; `Backend.create(sandbox_id, limits)` makes the
sandbox's cgroup, which every process of the sandbox joins before it can fork (the gate in
manager.spawn). The manager polls `SandboxCgroup.violation()` and ends the sandbox when a limit
was hit.

Subtleties:
1. Two backends. cgroup v2: the unified hierarchy with the memory, cpu and pids controllers
   (most systemd machines); the sub-tree goes under $TILDE_SERVER_SANDBOX_CGROUP (a delegated
   cgroup the operator prepared), else under the server's own cgroup (the server moves itself
   into a leaf `tilde-server` first, as systemd's Delegate=yes expects: a v2 cgroup with
   processes in it cannot hand controllers to children), else under the root cgroup.
   cgroup v1: one directory per hierarchy (memory, cpu, cpuacct, pids; co-mounted ones share
   it) under the hierarchy's root, so a leftover never blocks the removal of someone else's
   cgroup. No backend: `detect` returns None and says why; sandboxes keep their rlimits only.
2. Layout `<parent>/tilde-sandboxes/<tag>/<sandbox id>`, `tag` derived from the data
   directory: servers sharing a machine (tests run many) never touch each other's cgroups, and
   a server's recovery removes only the leftovers of its own earlier process (and, at
   start, the empty directories other servers left: rmdir cannot remove one in use).
3. Violations are read from the kernel's counters, never guessed from exit codes: an OOM kill
   (v2 memory.events, v1 memory.oom_control `oom_kill`), a fork refused at the pids limit
   (pids.events `max`), the CPU time of the whole cgroup (v2 cpu.stat usage_usec, v1
   cpuacct.usage) against the sandbox's CPU-seconds budget. The counters cover processes that
   already ended, so a memory hog that the OOM killer ended is still reported as such.
4. The memory limit includes swap where the kernel accounts it (v2 memory.swap.max = 0, v1
   memory.memsw.limit_in_bytes = the limit), so a sandbox cannot page its way past it. v1
   wants memory.limit_in_bytes written before memsw (memsw must never be below it).
5. `destroy` can only remove a cgroup without processes: it kills what is left (v2
   cgroup.kill, else SIGKILL to each listed pid until the list is empty; the pids limit
   bounds a fork bomb racing the loop) and retries rmdir briefly, since exiting tasks leave
   the cgroup asynchronously.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("tilde_server.sandbox")

SUBTREE = "tilde-sandboxes"
CPU_PERIOD_US = 100_000
V2_CONTROLLERS = ("cpu", "memory", "pids")
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
DESTROY_WAIT = 3.0
ENV_PARENT = "TILDE_SERVER_SANDBOX_CGROUP"


@dataclass(frozen=True)
class Resources:
    """The effective limits of one sandbox (spec.ResourcePolicy.resolve makes them)."""

    cpus: float
    memory_mb: int
    pids: int
    cpu_seconds: float | None = None


def tag_for(data_dir: Path) -> str:
    """The per-server directory under tilde-sandboxes (subtlety 2)."""
    return "srv-" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _keyed(path: Path, key: str) -> int:
    """The value of `key` in a flat-keyed cgroup file ("key value" lines); 0 when absent."""
    try:
        text = _read(path)
    except OSError:
        return 0
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            with contextlib.suppress(ValueError):
                return int(v)
    return 0


def _rmdir_retry(path: Path, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                return False
        time.sleep(0.05)


class SandboxCgroup:
    """The cgroup (v2: one directory; v1: one per hierarchy) of one sandbox."""

    def __init__(self, version: int, dirs: dict[str, Path], limits: Resources) -> None:
        self.version = version
        self.dirs = dirs  # controller -> directory (v2: the same one for all)
        self.limits = limits

    @property
    def paths(self) -> list[Path]:
        return list(dict.fromkeys(self.dirs.values()))

    def apply(self) -> None:
        """Write the limits (subtlety 4)."""
        lim = self.limits
        mem = lim.memory_mb * 1024 * 1024
        quota = max(1000, round(lim.cpus * CPU_PERIOD_US))
        if self.version == 2:
            d = self.dirs["memory"]
            _write(d / "memory.max", str(mem))
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "0")
            _write(d / "pids.max", str(lim.pids))
            _write(d / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        m = self.dirs["memory"]
        _write(m / "memory.limit_in_bytes", str(mem))
        if (m / "memory.memsw.limit_in_bytes").exists():
            _write(m / "memory.memsw.limit_in_bytes", str(mem))
        _write(self.dirs["pids"] / "pids.max", str(lim.pids))
        _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(quota))

    def add(self, pid: int) -> None:
        """Move `pid` into the sandbox's cgroup (in every v1 hierarchy). Raises OSError."""
        for d in self.paths:
            _write(d / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        try:
            text = _read(self.dirs["pids"] / "cgroup.procs")
        except OSError:
            return []
        return [int(x) for x in text.split()]

    def cpu_seconds(self) -> float:
        """CPU time used by every process the sandbox ever had."""
        if self.version == 2:
            return _keyed(self.dirs["cpu"] / "cpu.stat", "usage_usec") / 1e6
        try:
            return int(_read(self.dirs["cpuacct"] / "cpuacct.usage")) / 1e9
        except (OSError, ValueError):
            return 0.0

    def oom_kills(self) -> int:
        if self.version == 2:
            return _keyed(self.dirs["memory"] / "memory.events", "oom_kill")
        return _keyed(self.dirs["memory"] / "memory.oom_control", "oom_kill")

    def forks_refused(self) -> int:
        return _keyed(self.dirs["pids"] / "pids.events", "max")

    def violation(self) -> tuple[str, str] | None:
        """(status_reason, error_message) of the first limit the sandbox hit, else None."""
        lim = self.limits
        if self.oom_kills():
            return ("memory_limit", f"the sandbox exceeded its memory limit of "
                                    f"{lim.memory_mb} MiB (a process was killed by the OOM "
                                    f"killer)")
        refused = self.forks_refused()
        if refused:
            return ("pids_limit", f"the sandbox reached its limit of {lim.pids} processes "
                                  f"({refused} fork{'s' if refused != 1 else ''} refused)")
        if lim.cpu_seconds is not None:
            used = self.cpu_seconds()
            if used >= lim.cpu_seconds:
                return ("cpu_limit", f"the sandbox used up its CPU time budget of "
                                     f"{lim.cpu_seconds:g} s ({used:.1f} s of CPU time used)")
        return None

    def kill_all(self, wait: float = DESTROY_WAIT) -> bool:
        """SIGKILL every process in the cgroup; True once none is left (subtlety 5)."""
        kill_file = self.dirs["pids"] / "cgroup.kill"
        if self.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
        deadline = time.monotonic() + wait
        while True:
            left = self.pids()
            if not left:
                return True
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def destroy(self) -> bool:
        """Kill what is left and remove the directories; False if one stayed."""
        self.kill_all()
        ok = True
        for d in self.paths:
            ok = _rmdir_retry(d, DESTROY_WAIT) and ok
        return ok


class Backend:
    """Where the sandbox cgroups of one server live: `bases` maps each controller to the
    directory `<parent>/tilde-sandboxes/<tag>` (v2: one directory for all)."""

    def __init__(self, version: int, bases: dict[str, Path]) -> None:
        self.version = version
        self.bases = bases
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"cgroup v{self.version}"

    def describe(self) -> str:
        return f"{self.name} ({', '.join(str(p) for p in dict.fromkeys(self.bases.values()))})"

    def _ensure_bases(self) -> None:
        for base in dict.fromkeys(self.bases.values()):
            if self.version == 2:
                for d in (base.parent, base):
                    if not d.is_dir():
                        with contextlib.suppress(FileExistsError):
                            d.mkdir()
                    _enable(d)
            else:
                base.mkdir(parents=True, exist_ok=True)

    def create(self, sandbox_id: str, limits: Resources) -> SandboxCgroup:
        """The sandbox's cgroup with its limits written. Raises OSError."""
        with self._lock:
            for attempt in range(3):
                made: list[Path] = []
                try:
                    self._ensure_bases()
                    for base in dict.fromkeys(self.bases.values()):
                        (base / sandbox_id).mkdir()
                        made.append(base / sandbox_id)
                    break
                except FileNotFoundError:  # another server removed an empty parent just now
                    for d in made:
                        with contextlib.suppress(OSError):
                            d.rmdir()
                    if attempt == 2:
                        raise
        cg = SandboxCgroup(self.version, {c: b / sandbox_id for c, b in self.bases.items()},
                           limits)
        try:
            cg.apply()
        except OSError:
            cg.destroy()
            raise
        return cg

    def leftovers(self) -> list[SandboxCgroup]:
        """The sandbox cgroups a previous process of this server left (recovery)."""
        names: set[str] = set()
        for base in dict.fromkeys(self.bases.values()):
            with contextlib.suppress(OSError):
                names.update(p.name for p in base.iterdir() if p.is_dir())
        unlimited = Resources(cpus=1.0, memory_mb=1, pids=1)  # never applied
        return [SandboxCgroup(self.version, {c: b / n for c, b in self.bases.items()},
                              unlimited) for n in sorted(names)]

    def prune(self, others: bool = False) -> None:
        """Remove the server's directory and tilde-sandboxes when empty; with `others`, also
        the empty directories of other servers (a killed one leaves its own behind). rmdir
        removes only a cgroup without processes and children, and a live server makes its
        directory again when it needs it (`create` retries), so this never harms one."""
        with self._lock:
            for base in dict.fromkeys(self.bases.values()):
                dirs = [base]
                if others:
                    with contextlib.suppress(OSError):
                        dirs += [p for p in base.parent.iterdir() if p.is_dir() and p != base]
                for d in dirs:
                    with contextlib.suppress(OSError):
                        d.rmdir()
                with contextlib.suppress(OSError):
                    base.parent.rmdir()


def _enable(d: Path) -> None:
    """Hand the memory, cpu and pids controllers to the children of v2 cgroup `d`."""
    have = set(_read(d / "cgroup.subtree_control").split())
    missing = [c for c in V2_CONTROLLERS if c not in have]
    if missing:
        _write(d / "cgroup.subtree_control", " ".join("+" + c for c in missing))


# ---------------------------------------------------------------- detection


@dataclass(frozen=True)
class _Mount:
    root: str  # the cgroup path the mount shows (mountinfo field 4)
    point: Path
    fstype: str
    options: frozenset[str]


def _mounts(mountinfo: str) -> list[_Mount]:
    out = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        f = left.split()
        r = right.split()
        if len(f) < 5 or len(r) < 3 or r[0] not in ("cgroup", "cgroup2"):
            continue
        point = f[4].replace("\\040", " ")
        out.append(_Mount(f[3], Path(point), r[0], frozenset(r[2].split(","))))
    return out


def _own_cgroups(proc_cgroup: str) -> dict[str, str]:
    """/proc/self/cgroup as {controller or "" (v2): path}."""
    out: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for c in parts[1].split(",") if parts[1] else [""]:
            out[c] = parts[2]
    return out


def _probe(backend: Backend) -> None:
    """Create, limit, fill and remove a probe cgroup: raises OSError if something fails."""
    probe = f"probe-{os.getpid()}-{threading.get_ident()}"
    cg = backend.create(probe, Resources(cpus=1.0, memory_mb=64, pids=16))
    try:
        cg.oom_kills()
        cg.forks_refused()
        cg.cpu_seconds()
    finally:
        if not cg.destroy():
            raise OSError(errno.EBUSY, f"could not remove the probe cgroup {cg.paths[0]}")
        backend.prune(others=True)  # made again by the first sandbox when it is needed


def _v2_parents(mount: _Mount, own: str, move_self: bool) -> list[tuple[Path, bool]]:
    """Candidate parents of tilde-sandboxes, each with whether the server may move itself into
    a leaf of it first (subtlety 1)."""
    out: list[tuple[Path, bool]] = []
    env = os.environ.get(ENV_PARENT, "").strip()
    if env:
        p = Path(env)
        if not str(p).startswith(str(mount.point) + "/"):
            p = mount.point / env.lstrip("/")
        return [(p, False)]
    rel = own.lstrip("/")
    if rel:
        out.append((mount.point / rel, move_self))
    out.append((mount.point, False))
    return out


def _prepare_v2_parent(parent: Path, may_move: bool) -> None:
    have = set(_read(parent / "cgroup.controllers").split())
    if not set(V2_CONTROLLERS) <= have:
        raise OSError(errno.ENOTSUP, f"{parent} lacks controllers "
                      f"{sorted(set(V2_CONTROLLERS) - have)}")
    try:
        _enable(parent)
    except OSError as exc:
        # EBUSY: processes live in `parent` itself (no internal processes in v2).
        if exc.errno != errno.EBUSY or not may_move:
            raise
        procs = _read(parent / "cgroup.procs").split()
        if procs != [str(os.getpid())]:
            raise OSError(errno.EBUSY, f"{parent} holds other processes than this "
                          "server; set " + ENV_PARENT + " to a delegated cgroup") from None
        leaf = parent / "tilde-server"
        with contextlib.suppress(FileExistsError):
            leaf.mkdir()
        _write(leaf / "cgroup.procs", str(os.getpid()))
        _enable(parent)


def detect(tag: str, *, move_self: bool = False, mountinfo: str | None = None,
           proc_cgroup: str | None = None) -> tuple[Backend | None, str]:
    """The first backend that works, and a sentence saying which (or why none does)."""
    try:
        mountinfo = mountinfo if mountinfo is not None else _read(Path("/proc/self/mountinfo"))
        proc_cgroup = (proc_cgroup if proc_cgroup is not None
                       else _read(Path("/proc/self/cgroup")))
    except OSError as exc:
        return None, f"cannot read the process's cgroups: {exc}"
    mounts = _mounts(mountinfo)
    own = _own_cgroups(proc_cgroup)
    reasons: list[str] = []
    for m in (m for m in mounts if m.fstype == "cgroup2"):
        try:
            have = set(_read(m.point / "cgroup.controllers").split())
        except OSError:
            continue
        if not set(V2_CONTROLLERS) <= have:
            reasons.append(f"cgroup v2 at {m.point} has no {'/'.join(V2_CONTROLLERS)} "
                           f"controllers (only: {' '.join(sorted(have)) or 'none'})")
            continue
        for parent, may_move in _v2_parents(m, own.get("", "/"), move_self):
            backend = Backend(2, {c: parent / SUBTREE / tag for c in V2_CONTROLLERS})
            try:
                _prepare_v2_parent(parent, may_move)
                _probe(backend)
                return backend, f"{backend.name} under {parent / SUBTREE}"
            except OSError as exc:
                reasons.append(f"cgroup v2 under {parent}: {exc}")
    v1: dict[str, Path] = {}
    for m in (m for m in mounts if m.fstype == "cgroup"):
        for c in V1_CONTROLLERS:
            if c in m.options and c not in v1:
                v1[c] = m.point / SUBTREE / tag
    if set(V1_CONTROLLERS) <= set(v1):
        backend = Backend(1, v1)
        try:
            _probe(backend)
            return backend, f"{backend.name} ({', '.join(V1_CONTROLLERS)} hierarchies)"
        except OSError as exc:
            reasons.append(f"cgroup v1: {exc}")
    elif v1:
        reasons.append(f"cgroup v1 lacks {sorted(set(V1_CONTROLLERS) - set(v1))}")
    return None, "; ".join(reasons) or "no cgroup file system is mounted"
