"""The mount's lifetimes: commit on unmount (three ways), rollback, read-only and
time-travel mounts, a conflicting commit, and resuming after SIGKILL."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from pathlib import Path

import pytest
from fusehelpers import Api, Tool, is_mounted, wait_for


def test_unmount_command_commits(tool: Tool, api: Api, tmp_path: Path) -> None:
    api.seed({"a.txt": b"a\n"})
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    (mnt / "b.txt").write_bytes(b"b\n")
    (mnt / "a.txt").unlink()
    (mnt / "empty-dir").mkdir()           # persisted as its marker object "empty-dir/"
    r = tool.tm("unmount", str(mnt), "-m", "from unmount")
    assert not is_mounted(mnt)
    commit_id = r.stdout.strip()
    assert api.head_commit() == commit_id
    assert api.log()[0]["message"] == "from unmount"
    assert api.tree(commit_id) == {"b.txt": b"b\n", "empty-dir/": b""}


@pytest.mark.parametrize("how", ["fusermount", "umount", "sigterm"])
def test_external_unmount_commits(tool: Tool, api: Api, tmp_path: Path, how: str) -> None:
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt, "--message", f"by {how}")
    (mnt / "dir").mkdir()
    (mnt / "dir" / "f.bin").write_bytes(b"x" * 300_000)
    pid = int(tool.status(mnt)["pid"])
    if how == "fusermount":
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
    elif how == "umount":  # umount(8) of a FUSE mount needs root (users: fusermount3)
        if os.geteuid() != 0:
            # CI runs as root: there a missing privilege is a failure, never a silent skip
            (pytest.fail if os.environ.get("CI") else pytest.skip)("umount(8) needs root")
        subprocess.run(["umount", str(mnt)], check=True)
    else:
        os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not _alive(pid), timeout=30), "daemon did not exit"
    assert not is_mounted(mnt)
    assert api.log()[0]["message"] == f"by {how}"
    assert api.tree() == {"dir/f.bin": b"x" * 300_000}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive (the daemon is not our child, so this is rare).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_rollback_and_keep(tool: Tool, api: Api, tmp_path: Path) -> None:
    first = api.seed({"k.txt": b"keep\n"})
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt, "-o", "on_unmount=keep")
    (mnt / "k.txt").write_bytes(b"changed\n")
    (mnt / "new.txt").write_bytes(b"new\n")
    old_session = tool.status(mnt)["session_id"]
    tool.tm("rollback", str(mnt))
    assert (mnt / "k.txt").read_bytes() == b"keep\n"
    assert not (mnt / "new.txt").exists()
    st = tool.status(mnt)
    assert st["session_id"] != old_session
    assert not (st.get("added") or st.get("modified") or st.get("deleted"))
    # on_unmount=keep: the session stays open on the server and its id is printed.
    (mnt / "kept.txt").write_bytes(b"for later\n")
    r = tool.tm("unmount", str(mnt))
    kept = r.stdout.strip()
    assert kept == st["session_id"]
    assert api.head_commit() == first
    # ... and it can be resumed.
    tool.mount(api.ref.path, mnt, "--session", kept)
    assert (mnt / "kept.txt").read_bytes() == b"for later\n"
    commit_id = tool.tm("commit", str(mnt), "-m", "resumed").stdout.strip()
    assert api.tree(commit_id) == {"k.txt": b"keep\n", "kept.txt": b"for later\n"}


def test_read_only_and_commit_mounts(tool: Tool, api: Api, tmp_path: Path) -> None:
    c1 = api.seed({"v.txt": b"one\n", "d/x.txt": b"x\n"})
    c2 = api.seed({"v.txt": b"two\n"})
    ro, old = tmp_path / "ro", tmp_path / "old"
    tool.mount(api.ref.path, ro, "--read-only")
    tool.mount(api.ref.path, old, "--commit", c1)
    assert (ro / "v.txt").read_bytes() == b"two\n"
    assert (old / "v.txt").read_bytes() == b"one\n"
    assert sorted(os.listdir(old / "d")) == ["x.txt"]
    for root in (ro, old):
        for attempt in (lambda r=root: (r / "new.txt").write_bytes(b"no"),
                        lambda r=root: (r / "v.txt").unlink(),
                        lambda r=root: (r / "newdir").mkdir()):
            with pytest.raises(OSError) as info:
                attempt()
            assert info.value.errno == errno.EROFS
    st = tool.status(old)
    assert st["commit_id"] == c1
    r = tool.tm("commit", str(ro), "-m", "nope", check=False)
    assert r.returncode != 0 and "read-only" in r.stderr
    tool.tm("unmount", str(ro))
    tool.tm("unmount", str(old))
    assert api.head_commit() == c2
    assert not is_mounted(ro) and not is_mounted(old)


def test_conflicting_commit_loses_nothing(tool: Tool, api: Api, tmp_path: Path) -> None:
    api.seed({"shared.txt": b"base\n", "other.txt": b"other\n"})
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    (mnt / "shared.txt").write_bytes(b"mine\n")
    (mnt / "mine-only.txt").write_bytes(b"only mine\n")
    theirs = api.session()
    theirs.objects.put("shared.txt", b"theirs\n")
    their_commit = str(theirs.commit("theirs first"))

    r = tool.tm("commit", str(mnt), "-m", "mine", check=False)
    assert r.returncode == 1
    assert "conflict" in r.stderr.lower() and "shared.txt" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # Nothing lost: the mount still shows my version, the repository theirs.
    assert (mnt / "shared.txt").read_bytes() == b"mine\n"
    assert (mnt / "mine-only.txt").read_bytes() == b"only mine\n"
    assert api.head_commit() == their_commit
    st = tool.status(mnt)
    assert "shared.txt" in (st.get("modified") or []) + (st.get("added") or [])

    # Unmounting with on_unmount=commit fails the same way and leaves the mount serving.
    r = tool.tm("unmount", str(mnt), check=False)
    assert r.returncode == 1 and "conflict" in r.stderr and "still mounted" in r.stderr
    assert is_mounted(mnt) and (mnt / "shared.txt").read_bytes() == b"mine\n"

    # Resolve: keep my version aside, take theirs, commit; then put mine back and commit.
    mine = (mnt / "shared.txt").read_bytes()
    (mnt / "shared.txt").write_bytes(b"theirs\n")
    c1 = tool.tm("commit", str(mnt), "-m", "take theirs").stdout.strip()
    assert api.tree(c1) == {"shared.txt": b"theirs\n", "other.txt": b"other\n",
                            "mine-only.txt": b"only mine\n"}
    (mnt / "shared.txt").write_bytes(mine)
    c2 = tool.tm("commit", str(mnt), "-m", "mine again").stdout.strip()
    assert api.tree(c2)["shared.txt"] == b"mine\n"


def test_sigkill_then_resume(tool: Tool, api: Api, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    st = tool.status(mnt)
    session, pid = st["session_id"], int(st["pid"])
    (mnt / "saved.bin").write_bytes(os.urandom(200_000))
    saved = (mnt / "saved.bin").read_bytes()
    fd = os.open(mnt / "fsynced.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"durable\n")
    os.fsync(fd)                          # uploaded before fsync returns
    os.close(fd)
    assert wait_for(lambda: tool.status(mnt).get("uploads_pending", 0) == 0)

    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not _alive(pid))
    # The dead mount is cleaned up by the next mount of the same mountpoint.
    r = tool.tm(api.ref.path, str(mnt), "--session", session)
    assert "stale" in r.stderr
    tool.pids.add(int(tool.status(mnt)["pid"]))
    assert tool.status(mnt)["session_id"] == session
    assert (mnt / "saved.bin").read_bytes() == saved
    assert (mnt / "fsynced.txt").read_bytes() == b"durable\n"
    commit_id = tool.tm("commit", str(mnt), "-m", "after crash").stdout.strip()
    assert api.tree(commit_id) == {"saved.bin": saved, "fsynced.txt": b"durable\n"}


def test_status_reports_the_session(tool: Tool, api: Api, tmp_path: Path) -> None:
    api.seed({"m.txt": b"m\n", "d.txt": b"d\n"})
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt, "-o", "cache_size=64M")
    (mnt / "m.txt").write_bytes(b"modified\n")
    (mnt / "d.txt").unlink()
    (mnt / "n.txt").write_bytes(b"new\n")
    st = tool.status(mnt)
    assert st["repo"] == api.ref.path
    assert st["endpoint"].rstrip("/") == tool.server.endpoint
    assert st["added"] == ["n.txt"]
    assert st["modified"] == ["m.txt"]
    assert st["deleted"] == ["d.txt"]
    human = tool.tm("status", str(mnt)).stdout
    assert st["session_id"] in human and "n.txt" in human


def test_rollback_makes_the_kernel_forget(tool: Tool, api: Api, tmp_path: Path) -> None:
    """Entries the kernel cached (TTL 30 s) are gone at once after a rollback."""
    api.seed({"base.txt": b"base\n"})
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    (mnt / "a" / "b").mkdir(parents=True)
    (mnt / "a" / "b" / "c.txt").write_bytes(b"c\n")
    (mnt / "base.txt").write_bytes(b"changed\n")
    for p in ("a", "a/b", "a/b/c.txt", "base.txt"):
        os.stat(mnt / p)  # now in the kernel's dentry and attribute caches
    with open(mnt / "base.txt", "rb") as f:
        assert f.read() == b"changed\n"
    tool.tm("rollback", str(mnt))
    assert not (mnt / "a").exists()
    assert not os.path.exists(mnt / "a" / "b" / "c.txt")
    assert os.listdir(mnt) == ["base.txt"]
    assert os.stat(mnt / "base.txt").st_size == 5
    assert (mnt / "base.txt").read_bytes() == b"base\n"
    tool.tm("unmount", str(mnt))
