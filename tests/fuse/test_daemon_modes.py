"""The daemon as systemd runs it (foreground, Type=notify) and the -o owner options;
a commit of a file that is still open."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from fusehelpers import Api, Tool, is_mounted, tilde_mount_command, wait_for


def test_foreground_notify_and_sigterm(tool: Tool, api: Api, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    notify_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.settimeout(30)
    env = dict(tool.env, NOTIFY_SOCKET=notify_path)
    proc = subprocess.Popen(
        [*tilde_mount_command(), api.ref.path, str(mnt), "-f", "-o", "uid=1234,gid=2345",
         "--message", "stopped by systemd", "--log-file", str(tmp_path / "state" / "fg.log")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tool.mounts.append(mnt)
    tool.pids.add(proc.pid)
    try:
        assert sock.recv(256) == b"READY=1"
        assert is_mounted(mnt)             # READY only once the mount answers
        (mnt / "f.txt").write_text("from the foreground\n")
        st = os.stat(mnt / "f.txt")
        assert (st.st_uid, st.st_gid) == (1234, 2345)
        assert (st.st_mode & 0o777) == 0o644
        assert (os.stat(mnt).st_mode & 0o777) == 0o755
        proc.send_signal(signal.SIGTERM)
        assert sock.recv(256) == b"STOPPING=1"
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not is_mounted(mnt)
    assert api.log()[0]["message"] == "stopped by systemd"
    assert api.tree() == {"f.txt": b"from the foreground\n"}


def test_commit_includes_files_still_open(tool: Tool, api: Api, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    with open(mnt / "open.log", "wb") as f:
        f.write(b"first part\n")
        f.flush()
        c1 = tool.tm("commit", str(mnt), "-m", "while open").stdout.strip()
        f.write(b"second part\n")
        f.flush()
    assert api.tree(c1) == {"open.log": b"first part\n"}
    assert wait_for(lambda: tool.status(mnt).get("uploads_pending", 1) == 0)
    c2 = tool.tm("commit", str(mnt), "-m", "after close").stdout.strip()
    assert api.tree(c2) == {"open.log": b"first part\nsecond part\n"}


def test_pid_file(tool: Tool, api: Api, tmp_path: Path) -> None:
    """--pid-file holds the daemon's pid as soon as the mount command returns and is gone
    once the daemon exits; a supervisor can stop the mount with it (SIGTERM commits)."""
    run = tmp_path / "run"
    run.mkdir()
    pid_file = run / "mount.pid"
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt, "--pid-file", str(pid_file),
               "--message", "stopped by pid")
    text = pid_file.read_text()
    assert text.endswith("\n") and int(text) == int(tool.status(mnt)["pid"])
    pid = int(text)
    (mnt / "p.txt").write_text("pid\n")
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not pid_file.exists() and not is_mounted(mnt), timeout=30)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30)
    assert api.log()[0]["message"] == "stopped by pid"
    assert api.tree() == {"p.txt": b"pid\n"}
    assert sorted(os.listdir(run)) == []
    # unmount removes it too; a missing directory is refused before anything is mounted
    tool.mount(api.ref.path, mnt, "-o", f"pid_file={pid_file}")
    assert pid_file.exists()
    tool.tm("unmount", str(mnt))
    assert wait_for(lambda: not pid_file.exists())
    r = tool.tm(api.ref.path, str(mnt), "--pid-file", str(tmp_path / "nope" / "x.pid"),
                check=False)
    assert r.returncode == 2 and "--pid-file" in r.stderr and not is_mounted(mnt)
