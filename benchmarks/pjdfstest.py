"""POSIX conformance of a tilde-mount, measured with pjdfstest, directory by directory.

    sudo .venv/bin/python benchmarks/pjdfstest.py --pjdfstest /tmp/pjdfstest-src \\
        [--dirs open,mkdir,...] [--json OUT] [--logs DIR] [--project TREE] [--timeout 120]

pjdfstest (https://github.com/pjd/pjdfstest) is in no package registry: build it outside
this repository (``autoreconf -ifs && ./configure && make pjdfstest``) and pass the built
tree; its ``tests/misc.sh`` finds the ``pjdfstest`` binary and ``tests/conf`` by walking up
from the ``.t`` file, so the tree is used as built, never copied.

What it does: starts ``tilde-server`` on 127.0.0.1 (a temporary data directory), creates an
organization and a repository over the HTTP API, mounts it with ``tilde-mount ... -o
allow_other`` (pjdfstest switches uids, so other users must reach the mount: run as root),
and for every test directory runs each ``tests/<dir>/*.t`` with ``/bin/sh`` from inside a
fresh subdirectory of the mount, each file with its own timeout (a hang cannot stall the
run). It parses the TAP output, counts assertions ok / not ok per file and per directory
and prints a table plus two group totals. The mount and the server are removed at the end
whatever happened; the session is rolled back, nothing is committed.

Counting: an assertion is passed when its line is ``ok N`` (a ``# TODO`` directive is
counted as what the line says, and reported apart); the total is the file's plan
``1..N`` (assertions a crashed or timed-out file never printed count as failed). A file
that pjdfstest itself skips (``require``/``quick_exit``: a feature it does not test on
this OS or file system) counts in no total and is listed as skipped.

``--project TREE`` runs another checkout's ``TREE/.venv/bin/tilde-server`` and
``tilde-mount`` (e.g. a clean checkout of an older commit, for a "before" figure); the
default is the checkout this script is in. Never a timed test, not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mountbench import env as E

DEFAULT_DIRS = ["open", "mkdir", "rmdir", "rename", "truncate", "ftruncate", "unlink",
                "chmod", "chown", "symlink", "link"]
GROUPS = {
    "open mkdir rmdir rename truncate unlink": ["open", "mkdir", "rmdir", "rename",
                                                 "truncate", "unlink"],
    "chmod chown ftruncate": ["chmod", "chown", "ftruncate"],
}
ORG, REPO = "pjdfs", "posix"

TAP_LINE = re.compile(r"^(not )?ok (\d+)\b ?(.*)$")
TAP_PLAN = re.compile(r"^1\.\.(\d+)")


def say(*a: Any) -> None:
    print(*a, flush=True)


# --------------------------------------------------------------------------- processes


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def api(endpoint: str, key: str, route: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        endpoint + route, data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


class Stack:
    """The server and the mount of one run, each removed by ``close`` whatever happened."""

    def __init__(self, project: Path, root: Path) -> None:
        self.bin = project / ".venv" / "bin"
        for exe in ("tilde-server", "tilde-mount"):
            if not (self.bin / exe).exists():
                raise SystemExit(f"{self.bin / exe} missing: run scripts/setup.sh in {project}")
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        self.key = "tk-pjdfs-" + secrets.token_hex(16)
        self.server: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.mnt = root / "mnt"
        self.mount_pid = 0
        self.generation = 0
        self.env: dict[str, str] = {}

    # -- server
    def start_server(self) -> None:
        port = E.free_port()
        home = self.root / "server-home"
        home.mkdir()
        env = dict(os.environ, HOME=str(home), TILDE_SERVER_ADMIN_KEY=self.key)
        for k in ("TILDE_API_KEY", "TILDE_ENDPOINT_URL", "TILDE_API_URL"):
            env.pop(k, None)
        log = open(self.logs / "tilde-server.log", "wb")  # noqa: SIM115 - the process's
        self.server = subprocess.Popen(
            [str(self.bin / "tilde-server"), "run", "--data", str(self.root / "data"),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if self.server.poll() is not None:
                raise RuntimeError("tilde-server exited early:\n" + self.server_log())
            try:
                api(self.endpoint, self.key, "/api/v1/organizations")
                break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("tilde-server did not come up:\n" + self.server_log())
            time.sleep(0.1)
        api(self.endpoint, self.key, "/api/v1/organizations",
            {"name": ORG, "display_name": ORG})
        api(self.endpoint, self.key, f"/api/v1/organizations/{ORG}/repositories",
            {"name": REPO, "visibility": "private"})
        home = self.root / "mount-home"
        home.mkdir()
        self.env = dict(os.environ, HOME=str(home), TILDE_API_KEY=self.key,
                        TILDE_ENDPOINT_URL=self.endpoint,
                        XDG_CACHE_HOME=str(self.root / "cache"),
                        XDG_STATE_HOME=str(self.root / "state"), LC_ALL="C")
        self.env.pop("TILDE_API_URL", None)

    def server_log(self) -> str:
        return (self.logs / "tilde-server.log").read_text(errors="replace")[-4000:]

    def stop_server(self) -> None:
        p, self.server = self.server, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    # -- mount
    def tm(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "tilde-mount"), *args], capture_output=True,
                              text=True, env=self.env, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def mount(self) -> None:
        self.generation += 1
        self.mnt.mkdir(exist_ok=True)
        cache = self.root / "cache" / f"mount-{self.generation}"
        cache.mkdir(parents=True)
        pid_file = self.root / f"mount-{self.generation}.pid"
        r = self.tm(f"{ORG}/{REPO}", str(self.mnt), "-o", "allow_other",
                    "--cache-dir", str(cache), "--on-unmount", "rollback",
                    "--log-file", str(self.logs / f"tilde-mount-{self.generation}.log"),
                    "--pid-file", str(pid_file))
        if r.returncode != 0 or not E.is_mounted(self.mnt):
            raise RuntimeError(f"tilde-mount failed ({r.returncode}): {r.stdout}{r.stderr}")
        with contextlib.suppress(OSError, ValueError):
            self.mount_pid = int(pid_file.read_text().strip())
        # other users must reach the mount's root (pjdfstest runs some steps as nobody)
        os.chmod(self.mnt, 0o755)

    def healthy(self) -> bool:
        return bool(self.mount_pid) and alive(self.mount_pid) and E.is_mounted(self.mnt)

    def unmount(self) -> None:
        if E.is_mounted(self.mnt):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.tm("unmount", str(self.mnt), timeout=120)
        deadline = time.monotonic() + 20
        while self.mount_pid and alive(self.mount_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.mount_pid and alive(self.mount_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.mount_pid, signal.SIGKILL)
        for cmd in (["fusermount3", "-u", "-z"], ["umount", "-l"]):
            if E.is_mounted(self.mnt):
                subprocess.run([*cmd, str(self.mnt)], capture_output=True, check=False)
        self.mount_pid = 0

    def close(self) -> None:
        try:
            self.unmount()
        finally:
            self.stop_server()


# --------------------------------------------------------------------------- one .t file


def parse_tap(out: str) -> dict[str, Any]:
    plan = 0
    ok = not_ok = todo_ok = todo_not_ok = 0
    seen: set[int] = set()
    failures: list[dict[str, Any]] = []
    for line in out.splitlines():
        m = TAP_PLAN.match(line)
        if m and not plan:
            plan = int(m.group(1))
            continue
        m = TAP_LINE.match(line)
        if not m:
            continue
        n, rest = int(m.group(2)), m.group(3)
        seen.add(n)
        todo = "# TODO" in rest
        if m.group(1):
            not_ok += 1
            todo_not_ok += todo
            failures.append({"n": n, "text": rest.removeprefix("- ").strip()})
        else:
            ok += 1
            todo_ok += todo
    total = max(plan, ok + not_ok)
    return {"plan": plan, "ok": ok, "not_ok": not_ok, "missing": total - ok - not_ok,
            "total": total, "todo_ok": todo_ok, "todo_not_ok": todo_not_ok,
            "failures": failures}


def is_quick_exit(out: str, source: str) -> bool:
    """pjdfstest's own skip: ``1..1`` / ``ok 1`` from ``require``, not the file's plan."""
    plans = re.findall(r'^\s*echo "1\.\.(\d+)"', source, re.M)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return lines == ["1..1", "ok 1"] and bool(plans) and "1" not in plans


def run_file(t: Path, cwd: Path, timeout: float, logdir: Path | None) -> dict[str, Any]:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LC_ALL": "C", "TERM": "dumb"}
    t0 = time.monotonic()
    p = subprocess.Popen(["/bin/sh", str(t)], cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                         start_new_session=True)
    timed_out = False
    try:
        out_b, err_b = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        try:
            out_b, err_b = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # stuck in the kernel (a FUSE request)
            out_b, err_b = b"", b"(unkillable after timeout)\n"
    out, err = out_b.decode(errors="replace"), err_b.decode(errors="replace")
    if logdir is not None:
        logdir.mkdir(parents=True, exist_ok=True)
        (logdir / f"{t.stem}.tap").write_text(out)
        if err.strip() or timed_out:
            (logdir / f"{t.stem}.err").write_text(
                err + (f"\n# TIMEOUT after {timeout:.0f} s\n" if timed_out else ""))
    res = parse_tap(out)
    res.update(file=t.name, rc=p.returncode, timed_out=timed_out,
               seconds=round(time.monotonic() - t0, 2),
               skipped=is_quick_exit(out, t.read_text(errors="replace")))
    if not out.strip():
        res["error"] = err.strip()[-500:] or "no output"
    return res


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    pjd = Path(args.pjdfstest).resolve()
    if not (pjd / "pjdfstest").is_file() or not (pjd / "tests" / "misc.sh").is_file():
        raise SystemExit(f"{pjd}: not a built pjdfstest tree (pjdfstest, tests/misc.sh)")
    if os.geteuid() != 0:
        raise SystemExit("pjdfstest switches uids: run as root")
    for tool in ("openssl", "dd", "fusermount3"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt-get install {tool})")
    project = Path(args.project).resolve()
    dirs = [d for d in args.dirs.split(",") if d]
    for d in dirs:
        if not (pjd / "tests" / d).is_dir():
            raise SystemExit(f"{pjd}/tests/{d}: no such test directory")
    logroot = Path(args.logs).resolve() if args.logs else None
    os.umask(0o022)
    root = Path(tempfile.mkdtemp(prefix="pjdfs-"))
    os.chmod(root, 0o755)
    result: dict[str, Any] = {"pjdfstest": str(pjd), "pjdfstest_tests_sha256": tree_hash(pjd),
                              "project": str(project), "project_commit": git_rev(project),
                              "timeout_s": args.timeout, "dirs": {}, "remounts": 0}
    stack = Stack(project, root)
    try:
        stack.start_server()
        stack.mount()
        fstype = subprocess.run(["df", "-PT", str(stack.mnt)], capture_output=True,
                                text=True).stdout.splitlines()[-1:]
        result["df"] = fstype[0] if fstype else "?"
        say(f"mounted {ORG}/{REPO} at {stack.mnt} ({result['df'].split()[1:2]})")
        for d in dirs:
            work = stack.mnt / f"pjd-{d}"
            work.mkdir()
            os.chmod(work, 0o755)
            files = []
            for t in sorted((pjd / "tests" / d).glob("*.t")):
                r = run_file(t, work, args.timeout,
                             logroot / d if logroot is not None else None)
                files.append(r)
                flag = (" TIMEOUT" if r["timed_out"] else "") + (" skip" if r["skipped"]
                                                                 else "")
                say(f"  {d}/{t.name}: {r['ok']}/{r['total']}{flag}")
                if not stack.healthy():
                    say(f"  the mount died after {d}/{t.name}: remounting")
                    r["mount_died"] = True
                    result["remounts"] += 1
                    stack.unmount()
                    stack.mount()
                    work = stack.mnt / f"pjd-{d}-{result['remounts']}"
                    work.mkdir()
                    os.chmod(work, 0o755)
            counted = [f for f in files if not f["skipped"]]
            result["dirs"][d] = {
                "passed": sum(f["ok"] for f in counted),
                "total": sum(f["total"] for f in counted),
                "todo_ok": sum(f["todo_ok"] for f in counted),
                "todo_not_ok": sum(f["todo_not_ok"] for f in counted),
                "timeouts": [f["file"] for f in files if f["timed_out"]],
                "skipped_files": [f["file"] for f in files if f["skipped"]],
                "files": {f["file"]: f for f in files},
            }
    finally:
        stack.close()
        if logroot is not None:
            logroot.mkdir(parents=True, exist_ok=True)
            for log in (root / "logs").glob("*.log"):
                shutil.copy(log, logroot / log.name)
        shutil.rmtree(root, ignore_errors=True)
    result["groups"] = {}
    for name, members in GROUPS.items():
        have = [m for m in members if m in result["dirs"]]
        if have:
            result["groups"][name] = {
                "dirs": have,
                "passed": sum(result["dirs"][m]["passed"] for m in have),
                "total": sum(result["dirs"][m]["total"] for m in have)}
    return result


def tree_hash(pjd: Path) -> str:
    h = hashlib.sha256()
    for f in sorted((pjd / "tests").rglob("*")):
        if f.is_file():
            h.update(f.relative_to(pjd).as_posix().encode() + b"\0" + f.read_bytes())
    h.update((pjd / "pjdfstest.c").read_bytes() if (pjd / "pjdfstest.c").exists() else b"")
    return h.hexdigest()[:16]


def git_rev(project: Path) -> str:
    r = subprocess.run(["git", "-C", str(project), "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:5.1f}" if b else "    -"


def print_table(res: dict[str, Any]) -> None:
    say("")
    say(f"{'directory':<12} {'passed':>7} {'total':>7} {'%':>6}   notes")
    for d, r in res["dirs"].items():
        notes = []
        if r["timeouts"]:
            notes.append("timeout: " + " ".join(r["timeouts"]))
        if r["skipped_files"]:
            notes.append("skipped by pjdfstest: " + " ".join(r["skipped_files"]))
        if r["todo_ok"] or r["todo_not_ok"]:
            notes.append(f"TODO lines: {r['todo_ok']} ok, {r['todo_not_ok']} not ok")
        say(f"{d:<12} {r['passed']:>7} {r['total']:>7} {pct(r['passed'], r['total']):>6}   "
            + "; ".join(notes))
    say("")
    for name, g in res["groups"].items():
        say(f"group [{name}]: {g['passed']}/{g['total']} ({pct(g['passed'], g['total']).strip()}"
            f" %)")
    if res["remounts"]:
        say(f"the mount died and was remounted {res['remounts']} time(s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pjdfstest", required=True, help="a built pjdfstest tree")
    ap.add_argument("--dirs", default=",".join(DEFAULT_DIRS),
                    help="comma-separated test directories (default: %(default)s)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--logs", help="keep the raw TAP of every .t file (and daemon logs) here")
    ap.add_argument("--project", default=str(Path(__file__).resolve().parent.parent),
                    help="the checkout whose .venv/bin/tilde-server and tilde-mount run "
                         "(default: this one)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per .t file")
    args = ap.parse_args()
    res = run(args)
    print_table(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
