"""Regression tests for issue 11's list: what a program was told is written is never lost.

Each test runs its own tilde-server (so it can be stopped, killed and restarted on the
same port and data directory) and real mounts through the `tilde-mount` command:

- closed files survive a SIGKILL of the daemon (journal), resumed with ``--session`` or by
  a plain mount of the same repository; a journal whose session is gone is kept, reported;
- a full staging disk gives ENOSPC, marks the file damaged, and commit refuses it by name;
- keys the server cannot store fail at create with ENAMETOOLONG;
- status and commit while the server is unreachable say so; creates in listed directories
  still work; after the restart the commit holds everything;
- unmount refuses while a file is open for writing;
- a commit whose fresh session cannot be opened is reported as the success it is.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from fusehelpers import Api, Tool, is_mounted, tool_env, wait_for

from bypath import root_conftest
from figures import record

_root = root_conftest()
ServerHandle = _root.ServerHandle
new_repo = _root.new_repo
start_server = _root.start_server
stop_server = _root.stop_server


@dataclass
class Rig:
    server: ServerHandle
    tmp: Path
    tool: Tool
    api: Api
    repo: str
    mnt: Path
    port: int

    def restart(self) -> None:
        """Start the server again on the same data directory and port."""
        self.server = start_server(self.tmp / "srv", port=self.port)
        self.tool.server = self.server
        self.api.server = self.server

    def daemon_pid(self) -> int:
        return int(self.tool.status(self.mnt)["pid"])

    def kill_daemon(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 10)
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False,
                       capture_output=True)

    def cache_root(self) -> Path:
        return Path(self.tool.env["XDG_CACHE_HOME"]) / "tilde-mount"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"
    return True


@pytest.fixture
def rig(tmp_path: Path, fuse_ready: None) -> Iterator[Rig]:
    server = start_server(tmp_path / "srv")
    port = int(server.endpoint.rsplit(":", 1)[1])
    ref = new_repo(server)
    tool = Tool(server, tool_env(server, tmp_path))
    r = Rig(server, tmp_path, tool, Api(server, ref), ref.path, tmp_path / "mnt", port)
    try:
        yield r
    finally:
        tool.cleanup()
        with contextlib.suppress(ProcessLookupError):
            os.kill(r.server.proc.pid, signal.SIGCONT)
        if r.server.proc.poll() is None:
            stop_server(r.server)
        for log_path in (tmp_path / "state").rglob("*.log"):
            text = log_path.read_text(errors="replace")
            assert "Traceback" not in text, f"{log_path}:\n{text[-6000:]}"
            assert "unexpected error" not in text, f"{log_path}:\n{text[-6000:]}"


def _payloads(tmp: Path) -> dict[str, bytes]:
    files = {"d/a.txt": b"hello, journal\n", "d/b.bin": os.urandom(300_000),
             "d/empty": b""}
    src = tmp / "src"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    (src / "d/a.txt").chmod(0o750)  # cp gives the copy this mode: journaled with it
    return files


def _write_while_server_stalls(rig: Rig) -> tuple[str, dict[str, bytes]]:
    """Write and close files while the server is stopped, then SIGKILL the daemon."""
    rig.tool.mount(rig.repo, rig.mnt)
    status = rig.tool.status(rig.mnt)
    sid, pid = status["session_id"], int(status["pid"])
    rig.tool.sh("mkdir d", cwd=rig.mnt)  # lookups inside it need no request
    files = _payloads(rig.tmp)
    os.kill(rig.server.proc.pid, signal.SIGSTOP)
    rig.tool.sh(f"cp {rig.tmp}/src/d/* d/", cwd=rig.mnt)  # close() returned: acknowledged
    rig.kill_daemon(pid)
    os.kill(rig.server.proc.pid, signal.SIGCONT)
    return sid, files


def _read_tree(root: Path, names: list[str]) -> dict[str, bytes]:
    return {n: (root / n).read_bytes() for n in names}


def test_closed_files_survive_a_daemon_kill_resumed_with_session(rig: Rig) -> None:
    sid, files = _write_while_server_stalls(rig)
    r = rig.tool.mount(rig.repo, rig.mnt, "--session", sid)
    assert "re-uploaded 3 file(s)" in r.stderr, r.stderr
    assert _read_tree(rig.mnt, list(files)) == files
    assert rig.tool.status(rig.mnt)["uploads_pending"] == 0
    assert os.stat(rig.mnt / "d/a.txt").st_mode & 0o7777 == 0o750
    rig.tool.tm("commit", str(rig.mnt), "-m", "after the crash")
    assert rig.api.tree() == files
    listed = rig.api.get("/objects", prefix="d/", amount=100).json()["results"]
    modes = {x["path"]: x["entry"]["metadata"].get("posix-mode") for x in listed}
    assert modes == {"d/a.txt": "100750", "d/b.bin": "100644", "d/empty": "100644"}, modes
    record("mount_regressions", daemon_kills=1, files_recovered=len(files),
           bytes_recovered=sum(map(len, files.values())), bytes_lost=0)


def test_a_plain_mount_finding_a_journal_resumes_its_session(rig: Rig) -> None:
    sid, files = _write_while_server_stalls(rig)
    r = rig.tool.mount(rig.repo, rig.mnt)
    assert f"resumed session {sid}" in r.stderr, r.stderr
    assert rig.tool.status(rig.mnt)["session_id"] == sid
    rig.tool.tm("unmount", str(rig.mnt))
    assert rig.api.tree() == files
    record("mount_regressions", daemon_kills=1, files_recovered=len(files), bytes_lost=0)


def test_a_journal_whose_session_is_gone_is_kept_and_reported(rig: Rig) -> None:
    sid, files = _write_while_server_stalls(rig)
    # someone else rolls the session back meanwhile
    d = httpx.delete(f"{rig.api.base}/sessions/{sid}", headers=rig.api.headers)
    assert d.status_code in (200, 204), d.text
    r2 = rig.tool.mount(rig.repo, rig.mnt)
    assert f"session {sid}" in r2.stderr and "under" in r2.stderr, r2.stderr
    kept = rig.cache_root().glob(f"*/unrecovered/{sid}")
    where = next(kept)
    assert _read_tree(where, list(files)) == files
    manifest = json.loads((where / "MANIFEST.json").read_text())
    assert sorted(f["path"] for f in manifest["files"]) == sorted(files)
    status = rig.tool.status(rig.mnt)
    assert status["recovery"]["set_aside"][0]["session_id"] == sid
    assert not (rig.mnt / "d").exists()  # nothing replayed into another session
    record("mount_regressions", journals_kept=1, bytes_lost=0)


def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_staging_disk_is_enospc_and_commit_refuses_the_damaged_files(rig: Rig) -> None:
    assert os.geteuid() == 0, "this test mounts a small tmpfs: it must run as root"
    for cache in _tmpfs(rig.tmp / "small", "3m"):
        rig.tool.mount(rig.repo, rig.mnt, "--cache-dir", str(cache), "--cache-size", "0")
        rig.tool.sh("echo fine > ok.txt", cwd=rig.mnt)
        # uploaded and its staged copy dropped: nothing frees room behind the test's back
        assert wait_for(lambda: rig.tool.status(rig.mnt)["staging_bytes"] == 0, 30)
        r = rig.tool.sh("dd if=/dev/zero of=big bs=1M count=8", cwd=rig.mnt, check=False)
        assert r.returncode != 0 and "No space left on device" in r.stderr, r.stderr
        # whatever the last partial write left free goes too: the next write has no room
        subprocess.run(["sh", "-c", f"cat /dev/zero > {cache}/filler"], check=False,
                       capture_output=True)
        r = rig.tool.sh("echo more > small.txt", cwd=rig.mnt, check=False)
        assert r.returncode != 0 and "No space left on device" in r.stderr, r.stderr
        status = rig.tool.status(rig.mnt)
        assert status["damaged"] == ["big", "small.txt"], status
        c = rig.tool.tm("commit", str(rig.mnt), "-m", "full", check=False)
        assert c.returncode == 1, c
        assert "damaged" in c.stderr and "'big'" in c.stderr and "'small.txt'" in c.stderr
        u = rig.tool.tm("unmount", str(rig.mnt), check=False)
        assert u.returncode == 1 and "not unmounted" in u.stderr and is_mounted(rig.mnt)
        (cache / "filler").unlink()
        rig.tool.sh("rm big", cwd=rig.mnt)
        # big's staged bytes go when the kernel forgets its inode (FORGET comes
        # asynchronously after the unlink): wait for the room before writing again
        assert wait_for(lambda c=cache: os.statvfs(c).f_bavail * os.statvfs(c).f_frsize
                        >= 2 * 1024 * 1024, 30)
        rig.tool.sh("echo rewritten > small.txt", cwd=rig.mnt)
        rig.tool.tm("unmount", str(rig.mnt))
        assert rig.api.tree() == {"ok.txt": b"fine\n", "small.txt": b"rewritten\n"}
    record("mount_regressions", enospc_writes=2, damaged_refused=2, bytes_lost=0)


def test_keys_the_server_cannot_store_fail_at_create(rig: Rig) -> None:
    rig.tool.mount(rig.repo, rig.mnt)
    long = "n" * 1100
    for script in (f"touch {long}", f"mkdir {long}", f"mkdir -p d && echo x > d/{long}",
                   f"echo x > short && mv short {long}"):
        r = rig.tool.sh(script, cwd=rig.mnt, check=False)
        assert r.returncode != 0 and "File name too long" in r.stderr, (script, r.stderr)
    deep = "/".join(["a" * 200] * 6)  # each name fine, the key over 1024 bytes
    with pytest.raises(OSError) as e:
        os.makedirs(rig.mnt / deep)
    assert e.value.errno == errno.ENAMETOOLONG
    rig.tool.tm("commit", str(rig.mnt), "-m", "the rest commits")
    tree = rig.api.tree()
    # the directories that could be made stay, empty: their markers (none too long)
    assert {k: v for k, v in tree.items() if not k.endswith("/")} == {"short": b"x\n"}
    markers = sorted(k for k in tree if k.endswith("/"))
    assert markers and "d/" in markers and all(tree[k] == b"" for k in markers)
    assert all(len(k.encode()) <= 1024 for k in markers)
    record("mount_regressions", long_keys_refused=5)


def test_status_commit_and_creates_while_the_server_is_down(rig: Rig) -> None:
    rig.api.seed({"seen.txt": b"old\n"})
    rig.tool.mount(rig.repo, rig.mnt)
    rig.tool.sh("ls -la > /dev/null; mkdir d", cwd=rig.mnt)  # the root is listed
    rig.server.proc.kill()
    rig.server.proc.wait()
    # creates are local: in a listed or mkdir'ed directory they need no request
    rig.tool.sh("echo one > new1.txt; echo two > new2.txt; echo three > d/n3.txt",
                cwd=rig.mnt)
    assert (rig.mnt / "new2.txt").read_text() == "two\n"
    assert wait_for(lambda: rig.tool.tm("status", str(rig.mnt), check=False).returncode == 1,
                    60)
    st = rig.tool.tm("status", str(rig.mnt), check=False)
    assert "uploads pending: 3" in st.stdout and "server:" in st.stdout, st.stdout
    c = rig.tool.tm("commit", str(rig.mnt), "-m", "while down", check=False, timeout=180)
    assert c.returncode == 1, c
    assert "commit failed: cannot reach" in c.stderr and "Nothing was lost" in c.stderr, \
        c.stderr
    assert "internal error" not in c.stderr
    rig.restart()
    rig.tool.tm("commit", str(rig.mnt), "-m", "after the outage", timeout=120)
    assert rig.api.tree() == {"seen.txt": b"old\n", "new1.txt": b"one\n",
                              "new2.txt": b"two\n", "d/n3.txt": b"three\n"}
    record("mount_regressions", outage_commits_refused=1, bytes_lost=0)


def test_unmount_refuses_while_a_file_is_open_for_writing(rig: Rig) -> None:
    rig.tool.mount(rig.repo, rig.mnt)
    code = ("import sys; f = open(sys.argv[1], 'w'); f.write('x'); f.flush(); "
            "print('ready', flush=True); sys.stdin.readline(); f.write('y'); f.close()")
    writer = subprocess.Popen([sys.executable, "-c", code, str(rig.mnt / "open.txt")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        u = rig.tool.tm("unmount", str(rig.mnt), check=False)
        assert u.returncode == 1 and "target is busy" in u.stderr and "open.txt" in u.stderr
        assert is_mounted(rig.mnt)
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.wait(timeout=30) == 0  # its write and close still worked
    finally:
        if writer.poll() is None:
            writer.kill()
    rig.tool.tm("unmount", str(rig.mnt))
    assert rig.api.tree() == {"open.txt": b"xy"}
    record("mount_regressions", busy_unmounts_refused=1, bytes_lost=0)


class _NoFreshSession:
    """Wraps the real remote: after the first commit, opening a session fails once."""

    def __init__(self, remote: Any) -> None:
        self._remote = remote
        self.committed = False
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._remote, name)

    async def commit(self, *args: Any, **kw: Any) -> Any:
        out = await self._remote.commit(*args, **kw)
        self.committed = True
        return out

    async def create_session(self) -> str:
        if self.committed and not self.refused:
            from tilde import exceptions as texc

            self.refused += 1
            raise texc.TransportError("connection refused (injected)")
        return str(await self._remote.create_session())


def test_a_commit_whose_fresh_session_fails_is_reported_committed(
        server: ServerHandle, tmp_path: Path) -> None:
    """The known bug: a commit that landed was reported as "Nothing was lost: the changes
    are in session X" (X already committed) and the mount stayed on X."""
    from mount_core.harness import small_config
    from tilde_mount.controller import Controller
    from tilde_mount.fs import Filesystem
    from tilde_mount.options import MountConfig
    from tilde_mount.remote import HttpRemote

    ref = new_repo(server)

    async def main() -> None:
        http = HttpRemote(server.endpoint, ref.path, server.api_key)
        remote = _NoFreshSession(http)
        fs = Filesystem(remote, small_config(tmp_path))  # type: ignore[arg-type]
        config = MountConfig(ref.path, ref.org, ref.repo, str(tmp_path / "m"),
                             server.endpoint)
        ctl = Controller(fs, remote, config, str(tmp_path), request_stop=lambda: None,
                         mounted=lambda: True)
        try:
            async with fs.serving():
                root = await fs.getattr(1)
                opened, _ = await fs.create(root.ino, b"a.txt", 0o644, os.O_WRONLY)
                await fs.write(opened.fh, 0, b"first")
                await fs.release(opened.fh)
                first = fs.session_id
                result = await ctl.commit("one", None)
                assert result.status == "committed" and result.commit_id, result
                assert result.committed_session == first and result.session_id is None
                assert result.warning and "no fresh session" in result.warning
                # the next write is staged; the next commit opens the session it needs
                opened, _ = await fs.create(root.ino, b"b.txt", 0o644, os.O_WRONLY)
                await fs.write(opened.fh, 0, b"second")
                await fs.release(opened.fh)
                again = await ctl.commit("two", None)
                assert again.status == "committed", again
                assert again.committed_session not in (None, first)
        finally:
            await http.aclose()

    trio.run(main)
    api = Api(server, ref)
    assert api.tree() == {"a.txt": b"first", "b.txt": b"second"}
    assert len(api.log()) == 2


def test_durable_close_returns_once_the_session_holds_the_file(rig: Rig) -> None:
    """--durable-close: after close() returned, the session on the server has the bytes
    (checked with the daemon already killed); an upload that cannot be made is EIO from
    close, not a silent success."""
    rig.tool.mount(rig.repo, rig.mnt, "--durable-close")
    status = rig.tool.status(rig.mnt)
    sid, pid = status["session_id"], int(status["pid"])
    data = os.urandom(200_000)
    (rig.tmp / "src.bin").write_bytes(data)
    rig.tool.sh(f"cp {rig.tmp}/src.bin durable.bin", cwd=rig.mnt)
    rig.kill_daemon(pid)  # no journal replay: the server must have it already
    r = httpx.get(f"{rig.api.base}/object", params={"path": "durable.bin", "session_id": sid},
                  headers=rig.api.headers, follow_redirects=True)
    assert r.status_code == 200 and r.content == data
    rig.tool.mount(rig.repo, rig.mnt, "--durable-close", "--session", sid)
    rig.tool.sh("mkdir d", cwd=rig.mnt)
    rig.server.proc.kill()
    rig.server.proc.wait()
    # python, not `echo >`: bash ignores the close error of a redirection
    with pytest.raises(OSError) as e, open(rig.mnt / "d" / "late.txt", "w") as f:
        f.write("lost?\n")
    assert e.value.errno == errno.EIO
    rig.restart()
    rig.tool.tm("unmount", str(rig.mnt), timeout=120)  # staged, so committed after all
    assert rig.api.tree() == {"durable.bin": data, "d/late.txt": b"lost?\n"}
    record("mount_regressions", durable_closes=2, bytes_lost=0)


def test_a_file_truncated_through_its_descriptor_stays_staged_while_open(
        server: ServerHandle, tmp_path: Path) -> None:
    """fsx found it: ftruncate through an open descriptor left the staged copy uncounted,
    so it was uploaded and dropped as if closed; a write in flight meanwhile was lost.
    Now nothing is uploaded or downloaded again until the descriptor is closed."""
    from mount_core.harness import open_fs

    ref = new_repo(server)
    data = os.urandom(300_000)
    Api(server, ref).seed({"f.bin": data})

    async def main() -> None:
        async with open_fs(server, ref, tmp_path) as fs:
            root = await fs.getattr(1)
            attr = await fs.lookup(root.ino, b"f.bin")
            opened = await fs.open(attr.ino, os.O_RDWR)
            await fs.setattr(attr.ino, size=100_000, fh=opened.fh)  # one download
            before = dict(fs.remote.stats()["by_kind"])
            for _ in range(50):  # an upload, if one started, has time to land
                await trio.sleep(0.02)
            assert fs.progress().uploads_in_flight == 0
            await fs.write(opened.fh, 50_000, b"kept")
            assert await fs.read(opened.fh, 50_000, 4) == b"kept"
            assert dict(fs.remote.stats()["by_kind"]) == before  # no upload, no re-download
            await fs.release(opened.fh)
            await fs.commit("truncated through its descriptor")

    trio.run(main)
    want = bytearray(data[:100_000])
    want[50_000:50_004] = b"kept"
    assert Api(server, ref).tree() == {"f.bin": bytes(want)}
