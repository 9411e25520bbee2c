"""The sandbox lifecycle: session -> scoped token -> tilde-mount -> bwrap -> unmount -> commit.

Each sandbox has one lifecycle thread (everything here blocks; the HTTP layer only calls the
quick methods from worker threads and talks to live sandboxes through thread-safe objects).

Subtleties:
1. States (spec 5.1, 0.7.2 vocabulary, stored as such): `starting` (reason `created`, then
   `initializing` while the mount comes up), `running`, then exactly one terminal write:
   `committed` (`committed` + commit_id, or `no_changes` + ""), `error` (`exit_non_zero`),
   `failed` (`timeout`, `image_not_found`, `internal_error`, `commit_failed`,
   `sandbox_lost`, `memory_limit`, `pids_limit`, `cpu_limit`), `cancelled`
   (`cancelled_by_user`), `awaiting_approval` (subtlety 6).
   The 0.7.9 names are a view (routes).
2. The terminal decision is taken under `LiveSandbox.lock`: a cancel that arrives after the
   lifecycle decided to commit is refused (409) and a commit never starts after a cancel.
3. The process tree dies with the bwrap process: bwrap runs the command in a new pid
   namespace (its pid 1 is bwrap's reaper) and --die-with-parent ends that namespace when
   the outer bwrap dies, so SIGKILL to bwrap's process group ends every process in the
   sandbox. Not quite always: a kill that lands while bwrap is still setting up can beat the
   child's parent-death signal, and the inner processes (another session, --new-session)
   then live on, holding the output and --info-fd pipes open. So a kill also empties the
   sandbox's cgroup when it has one (every process of the sandbox is in it, forks
   included), and the --info-fd read is bounded.
4. Output of the main process (stdout and stderr merged, one pipe) is appended to
   `<data>/sandboxes/<id>/stdout.log` (and, beside other processes, to the database:
   logs.py) by a reader thread and fanned out to terminal
   subscribers; UTF-8 sequences are never split across the chunks handed to subscribers.
5. The repository is a tilde-mount of the sandbox's own session with `--on-unmount keep`:
   after the command ends the mount is unmounted (which uploads what is pending) and the
   server commits or rolls back the session itself.
6. Commit approval: when the repository requires approval for agents and the sandbox's
   principal is an agent (a key of its own, or a sandbox token standing for it), a successful
   sandbox does not commit: `Identity.request_approval` freezes its session and the sandbox
   ends `awaiting_approval` (0.7.9: `done` / `awaiting_approval`), with `web_url` pointing at
   `POST {R}/sessions/{session}/approve`. The session is not rolled back. The status turns
   `committed` (approved) or `cancelled` / `approval_rejected` once a person decided
   (records.resolve_approval, read lazily).
7. Resource limits (cgroups.py): every process of a sandbox (the main one and each exec run)
   is in the sandbox's cgroup before it can fork: spawn starts it behind GATE, a shell that
   waits for one line on its stdin, moves it into the cgroup and only then writes the line
   (a one-shot's stdin is then an empty pipe instead of /dev/null). preexec_fn would run
   after the switch to the sandbox uid, which may not move itself. The wait loops poll the
   cgroup's counters with the process, and once more after it ended (an OOM-killed hog
   exits with signal 9): a hit limit ends the sandbox `failed` with `memory_limit`,
   `pids_limit` or `cpu_limit`. Without a backend, sandboxes run with the rlimits only.
8. Several processes on one database (docs/deploy.md): a sandbox runs on the process that
   started it, whose id (`process_id`, kept in its --data) is the row's `owner`. At start a
   process recovers only its own leftovers (and, embedded, rows without an owner): another
   process's running sandbox is not its business. Beside other processes it renews its
   rows' `owner_until` every third of OWNER_LEASE seconds and ends others' rows whose
   lease ran out `failed`/`sandbox_lost` (their process died on another host; the session is
   rolled back, the tokens revoked; the mount and bwrap died with that process). A cancel
   sent to another process sets `cancel_requested`; the owner polls for it every second.
   Logs go to the database as well (logs.py), so any process serves them. The exec and
   terminal WebSockets need the owner: another process relays them to the URL the owner
   announces (`server_processes`, `--advertise-url`; routes/sandboxes.py `_relay`).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tilde_server.sandbox import bwrap, cgroups, egress, images, records
from tilde_server.sandbox.egress_rules import Decision, EgressRules, PolicyVerdict, Target
from tilde_server.sandbox.logs import LogStore, LogWriter
from tilde_server.sandbox.proxy import ApiSocketProxy
from tilde_server.sandbox.spec import ResourcePolicy, SandboxSpec
from tilde_server.store import BadRequest, Conflict, NotFound, Principal, Store
from tilde_server.store.engine import now_rfc3339
from tilde_server.store.identity import Identity

log = logging.getLogger("tilde_server.sandbox")

MOUNT_TIMEOUT = 60.0
UNMOUNT_TIMEOUT = 300.0
MAX_LOG_BYTES = 256 * 1024 * 1024
MOUNT_TOKEN_SLACK = 3600.0
CREDENTIAL_TTL = 1800.0
CHUNK = 64 * 1024
TERMINAL = ("committed", "awaiting_approval", "failed", "error", "cancelled")
LIMIT_POLL = 0.5  # seconds between two looks at a sandbox's cgroup counters
INFO_WAIT = 10.0  # seconds to wait for bwrap's --info-fd pipe to close after the main process
# Subtlety 7: holds the process until the parent wrote a line to its stdin (dash's `read`
# takes its input byte by byte, so nothing after the line is consumed).
GATE = ["/bin/sh", "-c", 'read _ || exit 111; exec "$@"', "sh"]


class OutputHub:
    """Fan-out of one output stream to subscribers (callables taking bytes; b"" = end)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Callable[[bytes], None]] = []
        self._backlog = bytearray()  # kept until the first subscriber arrives
        self._had_subscriber = False
        self.closed = False

    def publish(self, data: bytes) -> None:
        with self._lock:
            if not self._had_subscriber and len(self._backlog) < 1024 * 1024:
                self._backlog += data
            subs = list(self._subs)
        for s in subs:
            s(data)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            subs = list(self._subs)
        for s in subs:
            s(b"")

    def subscribe(self, fn: Callable[[bytes], None]) -> Callable[[], None]:
        with self._lock:
            backlog = bytes(self._backlog) if not self._had_subscriber else b""
            self._had_subscriber = True
            self._backlog.clear()
            self._subs.append(fn)
            closed = self.closed
        if backlog:
            fn(backlog)
        if closed:
            fn(b"")

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subs.remove(fn)
        return unsubscribe


def utf8_cut(buf: bytes) -> int:
    """Length of the longest prefix of `buf` that does not end inside a UTF-8 sequence."""
    n = len(buf)
    for back in range(1, min(4, n) + 1):
        b = buf[n - back]
        if b < 0x80:
            return n
        if b >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return n if back >= need else n - back
    return n


@dataclass
class LiveSandbox:
    row: records.SandboxRow
    spec: SandboxSpec
    who: Principal
    private_dir: Path
    runtime_dir: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    output: OutputHub = field(default_factory=OutputHub)
    done: threading.Event = field(default_factory=threading.Event)
    finish_requested: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    deciding: bool = False  # the terminal decision has been taken (see subtlety 2)
    proc: subprocess.Popen[bytes] | None = None
    stdin_lock: threading.Lock = field(default_factory=threading.Lock)
    exec_procs: set[subprocess.Popen[bytes]] = field(default_factory=set)
    mount_pid: int | None = None
    image: images.Image | None = None
    repo_dir: str = ""
    exit_code: int | None = None
    proxy: ApiSocketProxy | None = None
    egress: egress.EgressProxy | None = None
    credentials_secret: str = ""
    secret_env: dict[str, str] = field(default_factory=dict)
    logs: list[LogWriter] = field(default_factory=list)  # open ones, closed at the end

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def mnt(self) -> Path:
        return self.runtime_dir / "mnt"

    @property
    def scratch(self) -> Path:
        """The sandbox's /tmp, shared by all its processes (bwrap.py, subtlety 6)."""
        return self.runtime_dir / "tmp"

    @property
    def log_path(self) -> Path:
        return self.private_dir / "stdout.log"

    @property
    def network_log_path(self) -> Path:
        return self.private_dir / NETWORK_LOG


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of `proc` (bwrap and, through its pid namespace, all inside)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def read_info(fd: int, wait: float) -> bool:
    """Whether bwrap wrote its --info-fd record (it did once the sandbox was set up); closes
    fd. Waits at most `wait` seconds for the pipe to close (subtlety 3)."""
    data = b""
    deadline = time.monotonic() + wait
    poller = select.poll()  # not select(): a busy server's descriptors pass FD_SETSIZE
    poller.register(fd, select.POLLIN)
    with os.fdopen(fd, "rb", buffering=0) as f:
        while (left := deadline - time.monotonic()) > 0:
            if not poller.poll(left * 1000):
                break
            chunk = f.read(4096)
            if not chunk:
                break
            data += chunk
    return bool(data)


def default_runtime_root(data_dir: Path) -> Path:
    """Where mountpoints live: traversable (0711) by the sandbox uid, outside the data dir."""
    env = os.environ.get("TILDE_SERVER_SANDBOX_RUNTIME")
    if env:
        return Path(env)
    tag = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tilde-sandboxes-{os.geteuid()}-{tag}"


NETWORK_MODES = ("proxy", "off", "unsafe-host")
NETWORK_LOG = "network.ndjson"
SWEEP_INTERVAL = 3600.0


OWNER_LEASE = 30.0  # seconds a process vouches for its running sandboxes (8.)
PROCESS_ID_FILE = "process-id"


def process_id(root: Path) -> str:
    """This --data directory's process id (8.), made on first need and kept: a restart on
    the same directory recognises its own leftovers."""
    path = root / PROCESS_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pid = secrets.token_hex(8)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(pid + "\n")
        return pid


class SandboxManager:
    """Owns the live sandboxes of one server process.

    `network`: "proxy" (the egress proxy is the only way out, egress.py), "off" (no egress
    at all) or "unsafe-host" (the host's network, unfiltered and unlogged: an operator's
    explicit choice). `egress_rules` holds the allow-list; `network_policies(who, org, repo,
    extra)` answers for the organization's policies (authz.enforce.Authorizer.network_verdict).
    `sandbox_env` is given to every sandbox, below the request's own env_vars."""

    def __init__(self, store: Store, endpoint: str, *, network: str = "proxy",
                 limits: bwrap.Limits | None = None, runtime_root: Path | None = None,
                 on_finished: Callable[[records.SandboxRow], None] | None = None,
                 identity: Identity | None = None, egress_rules: EgressRules | None = None,
                 network_policies: Callable[..., tuple[bool | None, str]] | None = None,
                 sandbox_env: dict[str, str] | None = None,
                 log_retention: float | None = None,
                 resources: ResourcePolicy | None = None,
                 advertise_url: str | None = None) -> None:
        if network not in NETWORK_MODES:
            raise ValueError(f"network must be one of {NETWORK_MODES}, not {network!r}")
        self.store = store
        self.identity = identity  # commit approval (store/identity.py); None: never required
        self.db = store.db
        self.endpoint = endpoint.rstrip("/")
        # where the deployment's other processes reach this one (8.: WebSocket relay)
        self.advertise_url = (advertise_url or endpoint).rstrip("/")
        self.network = network
        self.host_network = network == "unsafe-host"
        self.egress_rules = egress_rules or EgressRules()
        self.network_policies = network_policies
        self.extra_env = dict(sandbox_env or {})
        self.log_retention = log_retention
        self._sweep_wake = threading.Event()
        self.limits = limits or bwrap.Limits()
        self.data_root = store.root / "sandboxes"
        self.runtime_root = runtime_root or default_runtime_root(store.root)
        self.on_finished = on_finished
        self._live: dict[str, LiveSandbox] = {}
        self._lock = threading.Lock()
        self._closing = False
        records.ensure_schema(self.db)
        self.owner = process_id(store.root)
        self.shared = store.shared
        self.logs = LogStore(self.db, self.data_root, self.shared)
        self.owner_lease = OWNER_LEASE
        self.resources = resources or ResourcePolicy()
        self.cgroups, found = cgroups.detect(cgroups.tag_for(store.root), move_self=True)
        if self.cgroups is None:
            log.warning("sandbox CPU, memory and process limits are NOT enforced: no usable "
                        "cgroup backend (%s); sandboxes run with rlimits only", found)
        else:
            log.info("sandbox resource limits: %s", found)
        self._cgroups: dict[str, cgroups.SandboxCgroup] = {}

    # ------------------------------------------------------------------ startup / shutdown
    def recover(self) -> None:
        """Sandboxes survive nothing across a restart: mark leftovers failed (sandbox_lost),
        unmount their mounts, roll back their sessions."""
        self.data_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.runtime_root.mkdir(mode=0o711, parents=True, exist_ok=True)
        os.chmod(self.runtime_root, 0o711)
        for row in records.active_sandboxes(self.db):
            if row.owner != self.owner and (self.shared or row.owner is not None):
                continue  # another process's (8.)
            log.warning("sandbox %s was %s when the server stopped: marking it failed",
                        row.id, row.status)
            if row.runtime_dir:
                _force_unmount(os.path.join(row.runtime_dir, "mnt"))
                shutil.rmtree(row.runtime_dir, ignore_errors=True)
            with contextlib.suppress(NotFound):
                self.store.rollback_session(row.org, row.repo, row.session_id)
            records.revoke_tokens(self.db, row.id)
            records.update_sandbox(
                self.db, row.id, status="failed", status_reason="sandbox_lost",
                error_message="the server stopped while the sandbox was active",
                finished_at=now_rfc3339())
        # Mountpoints of sandboxes this process never knew (crash before the row was written).
        for child in self.runtime_root.iterdir() if self.runtime_root.exists() else []:
            if child.is_dir():
                _force_unmount(str(child / "mnt"))
                shutil.rmtree(child, ignore_errors=True)
        for cg in self.cgroups.leftovers() if self.cgroups is not None else []:
            log.warning("removing the cgroup %s that an earlier server process left",
                        cg.paths[0])
            if not cg.destroy():
                log.warning("could not remove the cgroup %s", cg.paths[0])

    def sweep_logs(self) -> int:
        """Delete the logs of sandboxes that finished more than `log_retention` seconds ago
        (their status stays); `GET {S}/logs/...` answers 410 for them from then on. Returns
        how many sandboxes' logs went."""
        if self.log_retention is None:
            return 0
        cutoff = datetime.datetime.fromtimestamp(time.time() - self.log_retention,
                                                 datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        swept = 0
        for sid in records.finished_before(self.db, cutoff):
            if self.logs.expire(sid, ("stdout.log", NETWORK_LOG, "mount.log")):
                swept += 1
        return swept

    def logs_expired(self, sandbox_id: str) -> bool:
        return self.logs.expired(sandbox_id)

    def keep_leases(self) -> None:
        """Beside other processes (8.): renew this process's sandboxes, end the orphans of
        dead ones, every third of owner_lease seconds (a daemon thread)."""
        if not self.shared:
            return

        def loop() -> None:
            while not self._closing:
                try:
                    now = time.time()
                    records.announce(self.db, self.owner, self.advertise_url, now)
                    records.renew_owned(self.db, self.owner, now + self.owner_lease)
                    for row in records.orphaned(self.db, self.owner, now):
                        self._end_orphan(row, now)
                    for sid in records.cancel_requests(self.db, self.owner):
                        sb = self.live(sid)
                        if sb is not None:
                            self._request_cancel(sb, reason="cancelled_by_user")
                except Exception:
                    if self._closing:  # shutdown() came meanwhile: the store is closing
                        return
                    log.exception("sandbox leases: renewal or cleanup failed")
                # a cancel asked of another process waits for this tick: at most a second
                time.sleep(min(1.0, self.owner_lease / 3))

        threading.Thread(target=loop, daemon=True, name="sandbox-leases").start()

    def _end_orphan(self, row: records.SandboxRow, now: float) -> None:
        if not records.mark_lost(self.db, row.id, now, "the server process running the "
                                 "sandbox stopped vouching for it (it died or hung)"):
            return  # renewed meanwhile, or another process was first
        log.warning("sandbox %s of process %s: lease expired, marked sandbox_lost", row.id,
                    row.owner)
        with contextlib.suppress(NotFound):
            self.store.rollback_session(row.org, row.repo, row.session_id)
        records.revoke_tokens(self.db, row.id)

    def start_sweeper(self) -> None:
        """Sweep the logs now and then every SWEEP_INTERVAL seconds (a daemon thread)."""
        if self.log_retention is None:
            return
        interval = min(SWEEP_INTERVAL, max(1.0, self.log_retention / 4))

        def loop() -> None:
            while not self._closing:
                try:
                    self.sweep_logs()
                except Exception:
                    log.exception("sandbox log sweep failed")
                self._sweep_wake.wait(interval)
                self._sweep_wake.clear()

        threading.Thread(target=loop, daemon=True, name="sandbox-log-sweeper").start()

    def shutdown(self) -> None:
        """Cancel every live sandbox and wait for their teardown (server stop)."""
        self._closing = True
        self._sweep_wake.set()
        with self._lock:
            live = list(self._live.values())
        for sb in live:
            self._request_cancel(sb, reason="cancelled_by_user")
        for sb in live:
            sb.done.wait(UNMOUNT_TIMEOUT)
        self.logs.close()  # the last rows, before the store closes its database
        with contextlib.suppress(OSError):
            self.runtime_root.rmdir()  # only when empty: nothing of a live sandbox is removed

    # ------------------------------------------------------------------ public operations
    def live(self, sandbox_id: str) -> LiveSandbox | None:
        with self._lock:
            return self._live.get(sandbox_id)

    def create(self, org: str, repo: str, spec: SandboxSpec, who: Principal,
               trigger_id: str | None = None) -> str:
        """Open the session, record the sandbox, start its lifecycle thread. Quick."""
        if self._closing:
            raise Conflict("the server is stopping", "server_stopping")
        bwrap.bwrap_path()  # fail loudly (500) if bubblewrap is missing
        repo_row = self.store.get_repo(org, repo)
        session_id = self.store.create_session(org, repo, who)
        sid = records.time_ordered_id()
        t = now_rfc3339()
        private = self.data_root / sid
        runtime = self.runtime_root / sid
        row = records.SandboxRow(
            id=sid, org=org, repo=repo, repo_uid=repo_row["uid"], session_id=session_id,
            spec=spec.to_json(), status="starting", status_reason="created", exit_code=None,
            commit_id="", error_message="", created_by=records.principal_json(who),
            created_at=t, updated_at=t, finished_at=None, runtime_dir=str(runtime),
            trigger_id=trigger_id, owner=self.owner, owner_until=time.time() + self.owner_lease)
        records.insert_sandbox(self.db, row)
        sb = LiveSandbox(row=row, spec=spec, who=who, private_dir=private, runtime_dir=runtime)
        with self._lock:
            self._live[sid] = sb
        threading.Thread(target=self._lifecycle, args=(sb,), name=f"sandbox-{sid[:8]}",
                         daemon=True).start()
        return sid

    def cancel(self, org: str, repo: str, sandbox_id: str, wait: float = 3.0) -> str:
        """Cancel; returns the resulting status. 409 when the sandbox already finished. Waits
        at most `wait` seconds for the teardown (0.7.2 clients give up after 5 s)."""
        row = records.get_sandbox(self.db, org, repo, sandbox_id)
        sb = self.live(sandbox_id)
        if (sb is None and self.shared and row.owner != self.owner
                and row.status not in TERMINAL):
            return self._cancel_elsewhere(row, wait)
        if sb is None or row.status in TERMINAL:
            if row.status == "cancelled":
                return row.status
            raise Conflict(f"sandbox {sandbox_id} has already finished ({row.status})",
                           "sandbox_finished")
        if not self._request_cancel(sb, reason="cancelled_by_user"):
            raise Conflict(f"sandbox {sandbox_id} is already finishing", "sandbox_finishing")
        sb.done.wait(wait)
        return records.get_sandbox(self.db, org, repo, sandbox_id).status

    def _cancel_elsewhere(self, row: records.SandboxRow, wait: float) -> str:
        """Another process runs it (8.): ask through the database, wait for the outcome."""
        if not records.request_cancel(self.db, row.id):
            return records.get_sandbox(self.db, row.org, row.repo, row.id).status
        deadline = time.monotonic() + wait
        while True:
            status = records.get_sandbox(self.db, row.org, row.repo, row.id).status
            if status in TERMINAL or time.monotonic() > deadline:
                return status
            time.sleep(0.1)

    def finish(self, org: str, repo: str, sandbox_id: str,
               wait: float = 4.0) -> records.SandboxRow:
        """0.7.6 `POST {S}/finish`: end an interactive or service sandbox and commit. Waits at
        most `wait` seconds for the commit (0.7.6/0.7.7 clients give up after 5 s and do not
        poll afterwards); returns the sandbox as it is then. A sandbox that already ended is
        returned as it is."""
        row = records.get_sandbox(self.db, org, repo, sandbox_id)
        sb = self.live(sandbox_id)
        if sb is None or row.status in TERMINAL:
            return row
        sb.finish_requested.set()
        sb.wake.set()
        sb.done.wait(wait)
        return records.get_sandbox(self.db, org, repo, sandbox_id)

    def _request_cancel(self, sb: LiveSandbox, reason: str) -> bool:
        with sb.lock:
            if sb.deciding:
                return False
            sb.cancelled = True
        sb.wake.set()
        self._kill_all(sb)
        return True

    def _kill_all(self, sb: LiveSandbox) -> None:
        """SIGKILL every process of the sandbox: bwrap's process groups, then whatever is
        left in its cgroup (subtlety 3)."""
        if sb.proc is not None:
            kill_tree(sb.proc)
        for p in list(sb.exec_procs):
            kill_tree(p)
        cg = self._cgroups.get(sb.id)
        if cg is not None and not cg.kill_all():
            log.warning("sandbox %s: processes survived SIGKILL in %s", sb.id, cg.paths[0])

    # ------------------------------------------------------------------ stdin of the shell
    def write_stdin(self, sb: LiveSandbox, data: bytes) -> None:
        """Blocking write to the interactive shell's stdin (call from a worker thread)."""
        with sb.stdin_lock:
            proc = sb.proc
            if proc is None or proc.stdin is None or proc.poll() is not None:
                return
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

    # ------------------------------------------------------------------ lifecycle
    def _set(self, sb: LiveSandbox, **changes: Any) -> None:
        records.update_sandbox(self.db, sb.id, **changes)

    def _lifecycle(self, sb: LiveSandbox) -> None:
        outcome: tuple[str, str, str] | None = None  # (status, reason, message) when not ok
        try:
            try:
                sb.image = images.resolve(self.db, sb.spec.image)
            except images.ImageNotFound as exc:
                outcome = ("failed", "image_not_found", str(exc))
            if outcome is None and not sb.cancelled:
                self._set(sb, status_reason="initializing")
                try:
                    self._prepare(sb)
                except Exception as exc:
                    log.exception("sandbox %s: could not prepare the repository mount", sb.id)
                    outcome = ("failed", "internal_error",
                               f"could not mount the repository: {exc}")
            if outcome is None and not sb.cancelled:
                outcome = self._run_main(sb)
        except Exception as exc:  # a bug: never leave a sandbox without a terminal state
            log.exception("sandbox %s: unexpected error", sb.id)
            outcome = ("failed", "internal_error", f"internal error: {exc}")
        finally:
            self._finish(sb, outcome)

    def _prepare(self, sb: LiveSandbox) -> None:
        """Directories, the scoped token, the mount, the API socket."""
        sb.private_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        sb.log_path.touch()
        sb.runtime_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        os.chmod(sb.runtime_dir, 0o711)
        sb.mnt.mkdir(mode=0o755, exist_ok=True)
        sb.scratch.mkdir(mode=0o700, exist_ok=True)
        if bwrap.drop_privileges():
            os.chown(sb.scratch, bwrap.SANDBOX_UID, bwrap.SANDBOX_GID)
        ttl = sb.spec.effective_timeout + MOUNT_TOKEN_SLACK
        token, _ = records.issue_token(self.db, sb.id, sb.row.org, sb.row.repo, sb.who, ttl)
        self._mount(sb, token)
        repo_dir = str(sb.mnt)
        if sb.spec.path_prefix:
            repo_dir = os.path.join(repo_dir, sb.spec.path_prefix)
            os.makedirs(repo_dir, exist_ok=True)
        sb.repo_dir = repo_dir
        sb.secret_env = self._secrets(sb)
        if not self.host_network:
            shutil.copyfile(FORWARDER_FILE, sb.runtime_dir / "forward.py")
            os.chmod(sb.runtime_dir / "forward.py", 0o644)
            sb.proxy = ApiSocketProxy(str(sb.runtime_dir / "api.sock"), self.endpoint)
            sb.proxy.start()
        if self.network == "proxy":
            netlog = egress.NetworkLog(self.logs.writer(sb.id, NETWORK_LOG))
            sb.logs.append(netlog.out)
            sb.egress = egress.EgressProxy(str(sb.runtime_dir / "egress.sock"),
                                           functools.partial(self.decide_egress, sb), netlog)
            sb.egress.start()

    def _mount(self, sb: LiveSandbox, token: str) -> None:
        env = dict(os.environ, TILDE_API_KEY=token)
        for name in ("TILDE_ENDPOINT_URL", "TILDE_API_URL", "TILDE_SERVER_ADMIN_KEY"):
            env.pop(name, None)
        opts = "allow_other,uid=65534,gid=65534" if bwrap.drop_privileges() else ""
        argv = [sys.executable, "-m", "tilde_mount", f"{sb.row.org}/{sb.row.repo}",
                str(sb.mnt), "--session", sb.row.session_id, "--on-unmount", "keep",
                "--endpoint", self.endpoint, "--cache-dir", str(sb.private_dir / "cache"),
                "--log-file", str(sb.private_dir / "mount.log"),
                "--pid-file", str(sb.private_dir / "mount.pid")]
        if opts:
            argv += ["-o", opts]
        r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=MOUNT_TIMEOUT, check=False)
        err = r.stderr.decode(errors="replace").strip()
        with contextlib.suppress(OSError, ValueError):  # written once the mount is live
            sb.mount_pid = int((sb.private_dir / "mount.pid").read_text())
        if r.returncode != 0 or not os.path.ismount(sb.mnt):
            raise RuntimeError(err.splitlines()[-1] if err else f"exit status {r.returncode}")

    def _secrets(self, sb: LiveSandbox) -> dict[str, str]:
        """Repository secrets (and the agent's, for an agent creator) as environment
        variables, when the store has a secrets store (store.secrets.environment_for)."""
        secrets = getattr(self.store, "secrets", None)
        fn = getattr(secrets, "environment_for", None)
        if fn is None:
            return {}
        agent = sb.who.username if getattr(sb.who, "type", "user") == "agent" else None
        try:
            return dict(fn(sb.row.org, sb.row.repo, agent))
        except NotFound:
            return dict(fn(sb.row.org, sb.row.repo))

    def decide_egress(self, sb: LiveSandbox, target: Target) -> Decision:
        """One outbound request of `sb` (egress_rules.py has the order of the rules)."""
        def ask(t: Target) -> PolicyVerdict:
            if self.network_policies is None:
                return PolicyVerdict(None)
            extra = {"request": t.policy_input(),
                     "sandbox": {"id": sb.id, "image": sb.spec.image}}
            try:
                return PolicyVerdict(*self.network_policies(sb.who, sb.row.org, sb.row.repo,
                                                            extra))
            except Exception:
                log.exception("sandbox %s: network policy evaluation failed", sb.id)
                return PolicyVerdict(False, "(evaluation failed)")
        return self.egress_rules.decide(target, ask)

    def sandbox_env(self, sb: LiveSandbox) -> dict[str, str]:
        extra = {"TILDE_SANDBOX_ID": sb.id, "TILDE_REPOSITORY": f"{sb.row.org}/{sb.row.repo}"}
        api_url = self.endpoint if self.host_network else f"http://127.0.0.1:{PROXY_PORT}"
        forwarder = sb.image is not None and _forwarder_for(sb.image) is not None
        if self.host_network or forwarder:
            extra["TILDE_API_URL"] = api_url
            extra["TILDE_SANDBOX_CREDENTIALS_URI"] = (
                f"{api_url}/_tilde/sandbox-credentials/{sb.id}/{self._cred_secret(sb)}")
        if self.network == "proxy" and forwarder:
            proxy_url = f"http://127.0.0.1:{egress.PORT}"
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                extra[name] = proxy_url
            extra["NO_PROXY"] = extra["no_proxy"] = "127.0.0.1,localhost"
        if sb.image is not None and sb.image.name == images.HOST and _client_binds():
            extra["PYTHONPATH"] = CLIENT_PYTHONPATH
        return bwrap.environment(sb.spec.mountpoint,
                                 {**self.extra_env, **sb.secret_env, **sb.spec.env_vars}, extra)

    def _cred_secret(self, sb: LiveSandbox) -> str:
        if not sb.credentials_secret:
            sb.credentials_secret = self.credentials_secret(sb.id)
        return sb.credentials_secret

    def credentials_secret(self, sandbox_id: str) -> str:
        """The unguessable last path segment of a sandbox's credentials URI."""
        return self.store.signer.sign("sandbox-credentials", sandbox_id)

    def build_argv(self, sb: LiveSandbox, argv: list[str], cwd: str | None = None,
                   info_fd: int | None = None, seccomp_fd: int | None = None,
                   setenv: dict[str, str] | None = None) -> list[str]:
        assert sb.image is not None
        binds: list[tuple[str, str]] = []
        wrapped = argv
        if sb.proxy is not None:
            helper = _forwarder_for(sb.image)
            if helper is not None:
                binds.append((str(sb.runtime_dir / "api.sock"), "/run/tilde/api.sock"))
                binds.append((str(sb.runtime_dir / "forward.py"), "/run/tilde/forward.py"))
                pairs = [str(PROXY_PORT), "/run/tilde/api.sock"]
                if sb.egress is not None:
                    binds.append((str(sb.runtime_dir / "egress.sock"),
                                  "/run/tilde/egress.sock"))
                    pairs += [str(egress.PORT), "/run/tilde/egress.sock"]
                wrapped = [helper, "-S", "/run/tilde/forward.py", *pairs, "--", *argv]
        if sb.image.name == images.HOST:
            binds += _client_binds()
        return bwrap.command(image=sb.image, repo_dir=sb.repo_dir,
                             mountpoint=sb.spec.mountpoint, argv=wrapped,
                             network=self.host_network, limits=self.limits, cwd=cwd,
                             extra_binds=binds, info_fd=info_fd, seccomp=seccomp_fd,
                             scratch=str(sb.scratch), setenv=setenv)

    def spawn(self, sb: LiveSandbox, argv: list[str], *, stdin: int | IO[bytes] | None,
              stderr_separate: bool = False, env: dict[str, str] | None = None,
              cwd: str | None = None, info: list[int] | None = None
              ) -> subprocess.Popen[bytes]:
        """Start argv in the sandbox. With `info` (a list), the read end of bwrap's --info-fd
        pipe is appended to it: it stays empty when bwrap could not set the sandbox up. With
        a cgroup, the process waits at GATE until it is in it (subtlety 7); `stdin` must then
        be PIPE or DEVNULL."""
        cg = self._cgroups.get(sb.id)
        info_r = info_w = gate_r = gate_w = -1
        if info is not None:
            info_r, info_w = os.pipe()
        filter_fd = bwrap.seccomp_fd()
        host_env, loader_env = bwrap.split_host_env(env or self.sandbox_env(sb))
        full = self.build_argv(sb, argv, cwd, info_fd=info_w if info is not None else None,
                               seccomp_fd=filter_fd, setenv=loader_env)
        kwargs: dict[str, Any] = {}
        if bwrap.drop_privileges():
            kwargs.update(user=bwrap.SANDBOX_UID, group=bwrap.SANDBOX_GID, extra_groups=[])
        passed = (filter_fd, info_w) if info is not None else (filter_fd,)
        child_stdin = stdin
        if cg is not None:
            full = [*GATE, *full]
            if stdin in (None, subprocess.DEVNULL):
                gate_r, gate_w = os.pipe()
                child_stdin = gate_r
            elif stdin != subprocess.PIPE:
                raise ValueError("a sandbox with a cgroup takes stdin PIPE or DEVNULL")
        try:
            proc = subprocess.Popen(
                full, stdin=child_stdin, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if stderr_separate else subprocess.STDOUT,
                env=host_env, start_new_session=True, cwd="/",
                close_fds=True, pass_fds=passed, **kwargs)
        except BaseException:
            if info is not None:
                os.close(info_r)
            if gate_w >= 0:
                os.close(gate_w)
            raise
        finally:
            os.close(filter_fd)
            if info is not None:
                os.close(info_w)
            if gate_r >= 0:
                os.close(gate_r)
        if cg is not None:
            self._admit(cg, proc, gate_w, info_r)
        if info is not None:
            info.append(info_r)
        return proc

    def _admit(self, cg: cgroups.SandboxCgroup, proc: subprocess.Popen[bytes], gate_w: int,
               info_r: int) -> None:
        """Move the gated process into the cgroup, then open the gate (subtlety 7). When it
        cannot be moved, it is killed without having run anything."""
        try:
            cg.add(proc.pid)
        except OSError as exc:
            kill_tree(proc)
            proc.wait()
            for fd in (gate_w, info_r):
                if fd >= 0:
                    os.close(fd)
            raise RuntimeError(f"could not put the process into the sandbox's cgroup: "
                               f"{exc}") from exc
        with contextlib.suppress(OSError, ValueError):  # a child that died: seen by the waiter
            if gate_w >= 0:
                os.write(gate_w, b"\n")
            else:
                assert proc.stdin is not None
                proc.stdin.write(b"\n")
                proc.stdin.flush()
        if gate_w >= 0:
            os.close(gate_w)

    def _limit(self, sb: LiveSandbox) -> tuple[str, str, str] | None:
        """Record the sandbox's effective limits and make its cgroup (cgroups.py); the failure
        outcome when the cgroup cannot be made (nothing runs unlimited by accident)."""
        res = self.resources.resolve(sb.spec.resources, strict=False)
        if res != sb.spec.resources:  # a trigger's (shape-checked only) or an old spec
            sb.spec.resources = res
            self._set(sb, spec=json.dumps(sb.spec.to_json()))
        if self.cgroups is None:
            return None
        try:
            self._cgroups[sb.id] = self.cgroups.create(sb.id, cgroups.Resources(**res))
        except OSError as exc:
            log.exception("sandbox %s: could not create its cgroup", sb.id)
            return ("failed", "internal_error", f"could not create the sandbox's cgroup: {exc}")
        return None

    def _over_limit(self, sb: LiveSandbox) -> tuple[str, str, str] | None:
        """The failure outcome of a limit the sandbox hit (cgroup counters), else None."""
        cg = self._cgroups.get(sb.id)
        hit = cg.violation() if cg is not None else None
        return ("failed", *hit) if hit is not None else None

    def _drop_cgroup(self, sb: LiveSandbox) -> None:
        """Remove the sandbox's cgroup once its processes are gone (killing stragglers), and
        the server's cgroup directories when no other sandbox is live."""
        cg = self._cgroups.pop(sb.id, None)
        if cg is None or self.cgroups is None:
            return
        if not cg.destroy():
            log.warning("sandbox %s: could not remove its cgroup %s", sb.id, cg.paths[0])
        if not self._cgroups:
            self.cgroups.prune()

    def _run_main(self, sb: LiveSandbox) -> tuple[str, str, str] | None:
        """Run the main process (or, for a service sandbox, wait for finish). Returns None when
        the sandbox should commit, else the failure outcome."""
        spec = sb.spec
        deadline = time.monotonic() + spec.effective_timeout
        limit_failed = self._limit(sb)
        if limit_failed is not None:
            return limit_failed
        if spec.mode == "service":
            self._set(sb, status="running", status_reason="")
            poll = LIMIT_POLL if sb.id in self._cgroups else 5.0
            while not (sb.finish_requested.is_set() or sb.cancelled):
                left = deadline - time.monotonic()
                if left <= 0:
                    return ("failed", "timeout",
                            f"the sandbox exceeded its timeout of {spec.effective_timeout}s")
                hit = self._over_limit(sb)
                if hit is not None:
                    self._kill_all(sb)
                    return hit
                sb.wake.wait(min(left, poll))
                sb.wake.clear()
            return None
        argv = spec.command or ["/bin/sh"]
        info: list[int] = []
        with sb.lock:
            if sb.cancelled:
                return None
            sb.proc = self.spawn(sb, argv, stdin=subprocess.PIPE if spec.interactive
                                 else subprocess.DEVNULL, info=info)
        reader = threading.Thread(target=self._pump, args=(sb, sb.proc), daemon=True,
                                  name=f"sandbox-out-{sb.id[:8]}")
        reader.start()
        self._set(sb, status="running", status_reason="")
        timed_out = False
        over: tuple[str, str, str] | None = None
        while True:
            try:
                code = sb.proc.wait(timeout=LIMIT_POLL)
                break
            except subprocess.TimeoutExpired:
                pass
            over = over or self._over_limit(sb)
            if over is not None:
                self._kill_all(sb)
            elif time.monotonic() > deadline:
                timed_out = True
                self._kill_all(sb)
            elif sb.finish_requested.is_set():
                kill_tree(sb.proc)
        over = over or self._over_limit(sb)  # subtlety 7: counters outlive the process
        reader.join(10)
        sb.output.close()
        set_up = read_info(info[0], INFO_WAIT)
        if over is not None and not sb.cancelled:
            sb.exit_code = code
            return over
        if not set_up and not sb.cancelled:
            log_tail = sb.log_path.read_bytes()[-500:].decode(errors="replace").strip()
            return ("failed", "internal_error", f"could not set the sandbox up: {log_tail}")
        sb.exit_code = code
        if timed_out:
            return ("failed", "timeout",
                    f"the sandbox exceeded its timeout of {spec.effective_timeout}s")
        if sb.cancelled:
            return None
        if spec.interactive or sb.finish_requested.is_set():
            if code < 0 and not sb.finish_requested.is_set():
                return ("failed", "internal_error", f"the shell was killed by signal {-code}")
            return None
        if code != 0:
            return ("error", "exit_non_zero", f"the command exited with status {code}")
        return None

    def _pump(self, sb: LiveSandbox, proc: subprocess.Popen[bytes]) -> None:
        """Copy the merged output to the durable log and the subscribers (subtlety 4)."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        written = 0
        pending = b""
        out = self.logs.writer(sb.id, "stdout.log")
        try:
            while True:
                try:
                    chunk = os.read(fd, CHUNK)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                if written < MAX_LOG_BYTES:
                    out.write(chunk[:MAX_LOG_BYTES - written])
                    written += len(chunk)
                data = pending + chunk
                cut = utf8_cut(data)
                pending = data[cut:]
                if cut:
                    sb.output.publish(data[:cut])
            if pending:
                sb.output.publish(pending)
        finally:
            out.close(fsync=True)

    # ------------------------------------------------------------------ exec runs (0.7.9)
    def start_exec(self, sb: LiveSandbox, argv: list[str], env: dict[str, str],
                   cwd: str | None, with_stdin: bool) -> subprocess.Popen[bytes]:
        """A new bwrap process over the same mount (no state shared but the files)."""
        with sb.lock:
            if sb.cancelled or sb.deciding:
                raise RuntimeError("the sandbox is finishing")
            proc = self.spawn(sb, argv, stdin=subprocess.PIPE if with_stdin
                              else subprocess.DEVNULL, stderr_separate=True, env=env, cwd=cwd)
            sb.exec_procs.add(proc)
        return proc

    def end_exec(self, sb: LiveSandbox, proc: subprocess.Popen[bytes]) -> None:
        kill_tree(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        sb.exec_procs.discard(proc)

    # ------------------------------------------------------------------ credentials
    def issue_credentials(self, sb: LiveSandbox) -> tuple[str, float]:
        """A token for code inside the sandbox: CREDENTIAL_TTL seconds, this repository only,
        revoked when the sandbox ends."""
        return records.issue_token(self.db, sb.id, sb.row.org, sb.row.repo, sb.who,
                                   CREDENTIAL_TTL)

    def ws_allowed(self, key: str, org: str, repo: str, who: Principal) -> bool:
        """A sandbox token opens WebSockets only of its own repository."""
        if not key.startswith(records.TOKEN_PREFIX):
            return True
        found = records.lookup_token(self.db, key)
        return found is not None and found[:2] == (org, repo)

    def append_log(self, sb: LiveSandbox, data: bytes) -> None:
        self.logs.append(sb.id, "stdout.log", data)

    # ------------------------------------------------------------------ teardown
    def _finish(self, sb: LiveSandbox, outcome: tuple[str, str, str] | None) -> None:
        self._kill_all(sb)
        for p in list(sb.exec_procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        if sb.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                sb.proc.wait(10)
        sb.output.close()
        with sb.lock:
            sb.deciding = True
            cancelled = sb.cancelled
        self._drop_cgroup(sb)  # after `deciding`: no exec run starts any more; kills stragglers
        unmount_error = self._unmount(sb)
        if sb.proxy is not None:
            sb.proxy.stop()
        if sb.egress is not None:
            sb.egress.stop()
        for w in sb.logs:  # the network log's last lines, before the status says "ended"
            w.close()
        changes: dict[str, Any] = {"exit_code": sb.exit_code, "finished_at": now_rfc3339()}
        if cancelled:
            changes.update(status="cancelled", status_reason="cancelled_by_user",
                           error_message="cancelled")
        elif outcome is not None:
            changes.update(status=outcome[0], status_reason=outcome[1],
                           error_message=outcome[2] if outcome[0] == "failed" else "")
        elif unmount_error:
            changes.update(status="failed", status_reason="internal_error",
                           error_message=f"could not upload the sandbox's changes: "
                                         f"{unmount_error}")
        commit = not cancelled and outcome is None and not unmount_error
        if commit:
            try:
                cmd = " ".join(sb.spec.command or ["/bin/sh"])
                metadata = {"sandbox_id": sb.id}
                if sb.row.trigger_id:
                    metadata["sandbox_trigger_id"] = sb.row.trigger_id
                message = f"sandbox {sb.id}: {cmd[:200]}"
                org, repo, session = sb.row.org, sb.row.repo, sb.row.session_id
                if self.identity is not None and self.identity.requires_approval(
                        org, repo, sb.who):
                    # Subtlety 6: a person approves (or rejects) it later.
                    self.identity.request_approval(org, repo, session, message, metadata,
                                                   sb.who)
                    changes.update(status="awaiting_approval",
                                   status_reason="awaiting_approval")
                else:
                    commit_id = self.store.commit_session(org, repo, session, message,
                                                          metadata, sb.who)
                    changes.update(status="committed", status_reason="committed",
                                   commit_id=commit_id)
            except BadRequest as exc:
                if exc.code != "no_changes":
                    changes.update(status="failed", status_reason="commit_failed",
                                   error_message=exc.message)
                else:
                    changes.update(status="committed", status_reason="no_changes",
                                   commit_id="")
            except (Conflict, NotFound) as exc:
                changes.update(status="failed", status_reason="commit_failed",
                               error_message=exc.message)
            except Exception as exc:
                log.exception("sandbox %s: commit failed", sb.id)
                changes.update(status="failed", status_reason="commit_failed",
                               error_message=str(exc))
        if changes.get("status") not in ("committed", "awaiting_approval"):
            try:
                self.store.rollback_session(sb.row.org, sb.row.repo, sb.row.session_id)
            except NotFound:
                pass
            except Exception:
                log.exception("sandbox %s: rollback failed", sb.id)
        records.revoke_tokens(self.db, sb.id)
        self._set(sb, **changes)
        shutil.rmtree(sb.runtime_dir, ignore_errors=True)
        shutil.rmtree(sb.private_dir / "cache", ignore_errors=True)
        with self._lock:
            self._live.pop(sb.id, None)
        sb.done.set()
        log.info("sandbox %s: %s (%s)", sb.id, changes.get("status"), changes.get("status_reason"))
        if self.on_finished is not None:
            with contextlib.suppress(Exception):
                self.on_finished(records.get_sandbox_by_id(self.db, sb.id) or sb.row)

    def _unmount(self, sb: LiveSandbox) -> str:
        """Unmount (uploading what is pending, keeping the session); '' or the error."""
        mnt = str(sb.mnt)
        if not os.path.ismount(mnt):
            return ""
        try:
            r = subprocess.run([sys.executable, "-m", "tilde_mount", "unmount", mnt],
                               stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=UNMOUNT_TIMEOUT, check=False)
            err = "" if r.returncode == 0 else (
                r.stderr.decode(errors="replace").strip().splitlines() or ["unmount failed"])[-1]
        except subprocess.TimeoutExpired:
            err = "unmount timed out"
        if os.path.ismount(mnt):
            _force_unmount(mnt)
        if sb.mount_pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(sb.mount_pid, 0)
                if err:
                    os.kill(sb.mount_pid, signal.SIGTERM)
        return err


def _force_unmount(mnt: str) -> None:
    if os.path.ismount(mnt):
        subprocess.run(["fusermount3", "-u", "-z", mnt], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", mnt], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)


# ---------------------------------------------------------------- in-sandbox API forwarder
PROXY_PORT = 8080
FORWARDER_FILE = str(Path(__file__).with_name("forward.py"))


def _forwarder_for(image: images.Image) -> str | None:
    """The image's python3, which runs forward.py inside the sandbox (None: no forwarder)."""
    for cand in ("usr/bin/python3", "bin/python3", "usr/local/bin/python3"):
        path = os.path.join(image.root, cand)
        if os.path.exists(path):
            return "/" + cand
    return None


# ---------------------------------------------------------------- the bundled client inside
CLIENT_PYTHONPATH = "/opt/tilde/lib:/opt/tilde/site-packages"


@functools.cache
def _client_binds() -> list[tuple[str, str]]:
    """Read-only binds that make `import tilde` work in the host image: the bundled client
    package and the site-packages directory holding its dependencies (httpx, PyYAML, ...).
    Empty when they are not reachable by the sandbox uid (then `tilde` is not offered)."""
    try:
        import httpx

        import tilde
    except ImportError:
        return []
    pkg = os.path.dirname(os.path.realpath(tilde.__file__))
    site = os.path.dirname(os.path.dirname(os.path.realpath(httpx.__file__)))
    for path in (pkg, site):
        if bwrap.drop_privileges() and not _world_searchable(path):
            return []
    return [(pkg, "/opt/tilde/lib/tilde"), (site, "/opt/tilde/site-packages")]


def _world_searchable(path: str) -> bool:
    p = path
    while True:
        try:
            if not os.stat(p).st_mode & 0o001:
                return False
        except OSError:
            return False
        if p == "/":
            return True
        p = os.path.dirname(p)
