"""Helpers for real-mount tests: the daemon in a subprocess against the real tilde-server.

Every test gets a fresh repository and an empty mountpoint; mounts are made with the
``tilde-mount`` command exactly as a user runs it, and are always removed afterwards
(``fusermount3 -u -z`` plus killing the daemon), whatever the test did.

A missing /dev/fuse is a failure here, never a skip: these tests are the product's proof.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

FUSE_TIMEOUT = 60


def tilde_mount_command() -> list[str]:
    exe = shutil.which("tilde-mount", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "tilde_mount"]


def is_mounted(path: Path | str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" - ")[0].split()
            mnt = fields[4].decode("unicode_escape").encode("latin-1").decode()
            if mnt == real:
                return True
    return False


@dataclass
class Tool:
    """Runs ``tilde-mount`` and ordinary programs with the test's environment."""

    server: Any
    env: dict[str, str]
    mounts: list[Path] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    def tm(self, *args: str, check: bool = True, timeout: float = FUSE_TIMEOUT,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([*tilde_mount_command(), *args], capture_output=True, text=True,
                           env=env or self.env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"tilde-mount {' '.join(args)} -> {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def mount(self, repo: str, mnt: Path, *args: str) -> subprocess.CompletedProcess[str]:
        mnt.mkdir(parents=True, exist_ok=True)
        self.mounts.append(mnt)
        r = self.tm(repo, str(mnt), *args)
        assert os.path.ismount(mnt), r.stderr
        with contextlib.suppress(AssertionError):
            self.pids.add(int(self.status(mnt)["pid"]))
        return r

    def status(self, mnt: Path) -> dict[str, Any]:
        return dict(json.loads(self.tm("status", str(mnt), "--json").stdout))

    def sh(self, script: str, cwd: Path, check: bool = True,
           timeout: float = FUSE_TIMEOUT) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd,
                           capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"script failed ({r.returncode}) in {cwd}:\n{script}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def cleanup(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for mnt in self.mounts:
            if is_mounted(mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False,
                               capture_output=True)


@dataclass
class Api:
    """Plain-HTTP access to one repository, to check what a commit really holds."""

    server: Any
    ref: Any

    @property
    def base(self) -> str:
        return f"{self.server.endpoint}/api/v1/organizations/{self.ref.org}/repositories/" \
               f"{self.ref.repo}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.api_key}"}

    def get(self, route: str, **params: Any) -> httpx.Response:
        """A GET of the API; object GETs follow a redirecting server's 307 to a signed URL
        (httpx drops the bearer when that URL is on another origin)."""
        return httpx.get(self.base + route, params=params, headers=self.headers, timeout=30,
                         follow_redirects=True)

    def log(self) -> list[dict[str, Any]]:
        r = self.get("/log", amount=100)
        r.raise_for_status()
        return list(r.json().get("results", []))

    def head_commit(self) -> str:
        commits = self.log()
        assert commits, "repository has no commit"
        return str(commits[0]["id"])

    def tree(self, commit_id: str | None = None) -> dict[str, bytes]:
        """Every object (path -> bytes) at a commit (default: the latest)."""
        ref = commit_id or self.head_commit()
        out: dict[str, bytes] = {}
        after: str | None = None
        while True:
            params: dict[str, Any] = {"amount": 1000, "ref": ref}
            if after:
                params["after"] = after
            r = self.get("/objects", **params)
            r.raise_for_status()
            body = r.json()
            for item in body.get("results", []):
                if item.get("type", "object") == "object":
                    c = self.get("/object", path=item["path"], ref=ref)
                    c.raise_for_status()
                    out[item["path"]] = c.content
            pag = body.get("pagination") or {}
            if not pag.get("has_more"):
                return out
            after = pag["next_offset"]

    def session(self) -> Any:
        """A session through the bundled client (for seeding and concurrent writers)."""
        import tilde

        client = tilde.Client(endpoint_url=self.server.endpoint, api_key=self.server.api_key)
        return client.repository(self.ref.path).session()

    def seed(self, files: dict[str, bytes], message: str = "seed") -> str:
        s = self.session()
        for path, data in files.items():
            s.objects.put(path, data)
        return str(s.commit(message))


def tool_env(server: Any, tmp: Path) -> dict[str, str]:
    """The environment a test's ``tilde-mount`` and programs run in: its own HOME, cache
    and state directories under ``tmp``, the server's key and endpoint."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home), TILDE_API_KEY=server.api_key,
               TILDE_ENDPOINT_URL=server.endpoint, XDG_CACHE_HOME=str(tmp / "cache"),
               XDG_STATE_HOME=str(tmp / "state"), GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    env.pop("TILDE_API_URL", None)
    return env


def check_daemon_logs(tmp: Path) -> None:
    """An unexpected exception in a daemon is a bug even if the test passed."""
    state = tmp / "state"
    for log_path in state.rglob("*.log") if state.exists() else []:
        text = log_path.read_text(errors="replace")
        assert "Traceback" not in text, f"{log_path}:\n{text[-6000:]}"


def local_tree(root: Path) -> dict[str, bytes]:
    """What a commit of ``root`` should hold: path -> bytes of every regular file, a
    symlink's target as its content, and ``DIR/`` -> b"" for every empty directory (its
    marker object)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        here = Path(dirpath)
        if here != root and not dirs and not files:
            out[here.relative_to(root).as_posix() + "/"] = b""
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            p = here / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = os.readlink(p).encode()
            elif p.is_file():
                out[rel] = p.read_bytes()
    return out


def content_tree(tree: dict[str, bytes]) -> dict[str, bytes]:
    """``tree`` without the markers of directories that have content (a directory whose
    attributes were set gets one; `local_tree` only has those of empty directories)."""
    return {k: v for k, v in tree.items()
            if not (k.endswith("/") and any(o != k and o.startswith(k) for o in tree))}


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
