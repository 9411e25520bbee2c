"""POSIX attributes survive a commit on a real mount: modes, times, owners, symlinks, empty
directories; then git, venv, rsync, cp -a and tar round trips, and `tilde-mount update`.

"After remount" means: ``tilde-mount commit``, ``tilde-mount unmount``, then two fresh
mounts of the latest commit, one read-write and one ``--read-only``, both checked (the
``view`` parameter). Nothing may come from the first mount's memory: the new daemons only
have what the repository holds (docs/semantics.md "What is stored").

To keep the run short the writes are shared: one module-scoped mount makes every change the
attribute tests look at, in two commits (the second changes what the first committed), and
one more does the tool round trips. A write that fails is recorded under its aspect and
fails exactly the tests of that aspect, so one missing feature does not hide the others.

Programs are prerequisites: a missing one fails the test under CI (env ``CI``) and skips
it elsewhere, never silently passes (scripts/setup.sh installs them).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import subprocess
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fusehelpers import Api, Tool, check_daemon_logs, tool_env

from bypath import root_conftest

root = root_conftest()

MTIME_NS = 1_577_934_245_123_456_789  # 2020-01-02T03:04:05.123456789Z
TOUCH_STAMP = "2020-01-02T03:04:05.123456789"
VIEWS = ("read-write", "read-only")


def require(*programs: str) -> None:
    """A program the test drives must exist: a failure under CI, a skip elsewhere."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        message = f"missing program(s) {', '.join(missing)} (scripts/setup.sh installs them)"
        (pytest.fail if os.environ.get("CI") else pytest.skip)(message)


def require_root() -> None:
    if os.geteuid() != 0:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("chown needs root")


@dataclass
class Shared:
    """One repository written through one mount, then remounted (``views``)."""

    tool: Tool
    api: Api
    tmp: Path
    views: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    #: what os.link on the mount failed with (0: it did not fail)
    hardlink_errno: int | None = None

    @contextlib.contextmanager
    def step(self, aspect: str) -> Iterator[None]:
        """Run one write; an exception is kept for ``aspect``'s tests, not raised."""
        try:
            yield
        except Exception:
            self.errors.setdefault(aspect, []).append(traceback.format_exc())

    def assert_written(self, *aspects: str) -> None:
        failed = {a: self.errors[a] for a in ("commit", *aspects) if a in self.errors}
        assert not failed, "writing on the mount failed:\n" + "\n".join(
            f"[{a}]\n" + "\n".join(e) for a, e in failed.items())

    def commit(self, mnt: Path, message: str) -> None:
        with self.step("commit"):
            self.commits.append(self.tool.tm("commit", str(mnt), "-m", message).stdout.strip())

    def remount(self, repo: str, mnt: Path) -> None:
        """Unmount ``mnt``; mount the latest commit read-write there and read-only beside."""
        with self.step("commit"):
            self.tool.tm("unmount", str(mnt))
            assert not os.path.ismount(mnt)
            self.tool.mount(repo, mnt)
            self.views["read-write"] = mnt
            ro = mnt.with_name(mnt.name + "-ro")
            self.tool.mount(repo, ro, "--read-only")
            self.views["read-only"] = ro


@contextlib.contextmanager
def shared_mount(server: Any, tmp: Path) -> Iterator[Shared]:
    tool = Tool(server, tool_env(server, tmp))
    api = Api(server, root.new_repo(server))
    try:
        yield Shared(tool, api, tmp)
    finally:
        tool.cleanup()
        check_daemon_logs(tmp)


# --- the attribute mount --------------------------------------------------------------

def write_attributes(s: Shared) -> None:
    """Everything the attribute tests look at, in two commits."""
    s.api.seed({"committed.sh": b"#!/bin/sh\necho committed\n", "target.txt": b"TARGET\n"})
    mnt = s.tmp / "mnt"
    s.tool.mount(s.api.ref.path, mnt)
    sh = s.tool.sh
    with s.step("modes"):
        sh("umask 022\nprintf '#!/bin/sh\\necho ran\\n' > run.sh\nchmod 755 run.sh\n"
           "printf secret > secret\nchmod 600 secret\n", cwd=mnt)
    with s.step("mtime"):
        sh(f"printf t > touched\nTZ=UTC touch -d {TOUCH_STAMP} touched", cwd=mnt)
        (mnt / "utimed").write_bytes(b"u")
        os.utime(mnt / "utimed", ns=(MTIME_NS, MTIME_NS))
        assert os.stat(mnt / "touched").st_mtime_ns == MTIME_NS   # before any commit
    with s.step("owner"):
        (mnt / "owned").write_bytes(b"o")
        os.chown(mnt / "owned", 1234, 2345)
    with s.step("symlinks"):
        sh("""
            ln -s target.txt rel
            ln -s /etc/hostname abs
            ln -s no/such/file dangling
            mkdir -p linkdir/sub && ln -s ../target.txt linkdir/in
            ln -s ../../target.txt linkdir/sub/deep
            mkdir -p rmtree/x && ln -s ../target.txt rmtree/l && ln -s nowhere rmtree/x/l2
            ln -s target.txt mv-me
            ln -s target.txt gone-link
            test "$(cat rel)" = TARGET
        """, cwd=mnt)
    with s.step("empty-dirs"):
        sh("umask 022\nmkdir to-remove", cwd=mnt)
    with s.step("hardlink"):
        try:
            os.link(mnt / "target.txt", mnt / "hard")
        except OSError as e:
            s.hardlink_errno = e.errno
        else:
            s.hardlink_errno = 0
    s.commit(mnt, "phase 1")
    # -- changes of what phase 1 committed --
    with s.step("modes"):
        os.chmod(mnt / "committed.sh", 0o755)
    with s.step("symlinks"):
        sh("mv mv-me moved-link\nrm gone-link\nrm -r rmtree\nmv linkdir renamed-linkdir\n"
           "test \"$(cat renamed-linkdir/in)\" = TARGET", cwd=mnt)
    with s.step("empty-dirs"):
        sh("umask 022\nrmdir to-remove\nmkdir -p a/b/c\nmkdir -m 700 private", cwd=mnt)
    s.commit(mnt, "phase 2")
    s.remount(s.api.ref.path, mnt)


@pytest.fixture(scope="module")
def attrs(server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    with shared_mount(server, tmp_path_factory.mktemp("attrs")) as s:
        write_attributes(s)
        yield s


@pytest.mark.parametrize("view", VIEWS)
def test_modes_and_exec_bits(attrs: Shared, view: str) -> None:
    attrs.assert_written("modes")
    m = attrs.views[view]
    assert stat.S_IMODE(os.stat(m / "run.sh").st_mode) == 0o755
    r = subprocess.run(["./run.sh"], cwd=m, capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, "ran\n"), r.stderr
    assert stat.S_IMODE(os.stat(m / "secret").st_mode) == 0o600
    assert (m / "secret").read_bytes() == b"secret"
    # chmod of a file committed before, bytes unchanged: the new mode is in the commit
    assert stat.S_IMODE(os.stat(m / "committed.sh").st_mode) == 0o755
    r = subprocess.run(["./committed.sh"], cwd=m, capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, "committed\n"), r.stderr
    assert stat.S_IMODE(os.stat(m / "target.txt").st_mode) == 0o644


@pytest.mark.parametrize("view", VIEWS)
def test_mtime_to_the_nanosecond(attrs: Shared, view: str) -> None:
    attrs.assert_written("mtime")
    m = attrs.views[view]
    assert os.stat(m / "touched").st_mtime_ns == MTIME_NS
    assert os.stat(m / "utimed").st_mtime_ns == MTIME_NS


@pytest.mark.parametrize("view", VIEWS)
def test_owner_and_group(attrs: Shared, view: str) -> None:
    require_root()
    attrs.assert_written("owner")
    st = os.stat(attrs.views[view] / "owned")
    assert (st.st_uid, st.st_gid) == (1234, 2345)


@pytest.mark.parametrize("view", VIEWS)
def test_symlinks(attrs: Shared, view: str) -> None:
    attrs.assert_written("symlinks")
    m = attrs.views[view]
    for name, target in (("rel", "target.txt"), ("abs", "/etc/hostname"),
                         ("dangling", "no/such/file"), ("moved-link", "target.txt"),
                         ("renamed-linkdir/in", "../target.txt"),
                         ("renamed-linkdir/sub/deep", "../../target.txt")):
        assert stat.S_ISLNK(os.lstat(m / name).st_mode), name
        assert os.readlink(m / name) == target, name
    assert (m / "rel").read_bytes() == b"TARGET\n"                  # through the link
    assert (m / "renamed-linkdir" / "sub" / "deep").read_bytes() == b"TARGET\n"
    assert not (m / "dangling").exists() and (m / "dangling").is_symlink()
    assert (m / "abs").read_bytes() == Path("/etc/hostname").read_bytes()
    for gone in ("mv-me", "gone-link", "rmtree", "linkdir"):
        assert not os.path.lexists(m / gone), gone
    assert sorted(os.listdir(m / "renamed-linkdir")) == ["in", "sub"]
    # a symlink is stored as an object whose content is its target
    tree = attrs.api.tree()
    assert tree["rel"] == b"target.txt" and tree["renamed-linkdir/in"] == b"../target.txt"


@pytest.mark.parametrize("view", VIEWS)
def test_empty_directories(attrs: Shared, view: str) -> None:
    attrs.assert_written("empty-dirs")
    m = attrs.views[view]
    for path, mode in (("a", 0o755), ("a/b", 0o755), ("a/b/c", 0o755), ("private", 0o700)):
        st = os.stat(m / path)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == mode, path
    assert os.listdir(m / "a" / "b" / "c") == [] and os.listdir(m / "private") == []
    assert not os.path.lexists(m / "to-remove")
    # the empty directory was in phase 1's commit (as its marker) and is gone from phase 2's
    assert "to-remove/" in attrs.api.tree(attrs.commits[0])
    assert "to-remove/" not in attrs.api.tree(attrs.commits[1])


def test_hard_links_are_refused(attrs: Shared) -> None:
    attrs.assert_written("hardlink")
    assert attrs.hardlink_errno == errno.EPERM
    m = attrs.views["read-write"]
    with pytest.raises(OSError) as e:
        os.link(m / "target.txt", m / "hard-after")
    assert e.value.errno == errno.EPERM
    assert not os.path.lexists(m / "hard") and not os.path.lexists(m / "hard-after")


# --- the tools mount ------------------------------------------------------------------

def make_tree(root_dir: Path) -> None:
    """A local tree with files of several modes and exact mtimes, symlinks, an empty dir."""
    (root_dir / "bin").mkdir(parents=True)
    (root_dir / "sub" / "deep").mkdir(parents=True)
    (root_dir / "empty").mkdir(mode=0o750)
    os.chmod(root_dir / "empty", 0o750)
    files = {"a.txt": (b"alpha\n", 0o644), "bin/run": (b"#!/bin/sh\necho run\n", 0o755),
             "private": (b"p", 0o600), "sub/deep/f.bin": (os.urandom(100_000), 0o640),
             "sub/empty-file": (b"", 0o644)}
    for i, (rel, (data, mode)) in enumerate(files.items()):
        p = root_dir / rel
        p.write_bytes(data)
        os.chmod(p, mode)
        os.utime(p, ns=(MTIME_NS + i, MTIME_NS + i * 1_000_000_007))
    os.symlink("a.txt", root_dir / "link")
    os.symlink("/etc/hostname", root_dir / "sub" / "abs")
    os.symlink("nowhere", root_dir / "sub" / "dangling")
    os.symlink("../a.txt", root_dir / "sub" / "up")


def walk(root_dir: Path) -> dict[str, tuple[Any, ...]]:
    """relpath -> (kind, mode, size, mtime_ns, link target, sha256) of everything under
    root_dir. Directory times and sizes are left out: they change with every entry
    written into the directory, on any filesystem."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirs, files in os.walk(root_dir):
        for name in [*dirs, *files]:
            p = Path(dirpath) / name
            rel = p.relative_to(root_dir).as_posix()
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns,
                            hashlib.sha256(p.read_bytes()).hexdigest())
    return out


GIT_ENV = dict(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com", GIT_OPTIONAL_LOCKS="0",
               GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*")


def write_tools(s: Shared) -> None:
    src = s.tmp / "src"
    make_tree(src)
    s.api.seed({"README": b"tools\n"})
    mnt = s.tmp / "mnt"
    s.tool.mount(s.api.ref.path, mnt)
    s.tool.env.update(GIT_ENV, SRC=str(src))
    with s.step("rsync"):
        s.tool.sh('rsync -a "$SRC/" rsync-dst/', cwd=mnt)
    with s.step("cp"):
        s.tool.sh('cp -a "$SRC" cp-dst', cwd=mnt)
    with s.step("tar"):
        s.tool.sh('tar --format=posix -cf tree.tar -C "$SRC" .\n'
                  'mkdir tar-dst && tar -xpf tree.tar -C tar-dst', cwd=mnt)
        assert walk(mnt / "tar-dst") == walk(src)
    with s.step("git"):
        (mnt / "proj").mkdir()
        s.tool.sh("""
            git init -q .
            test "$(git config --get core.symlinks || echo unset)" != false
            printf '#!/bin/sh\\necho tool\\n' > tool.sh && chmod 755 tool.sh
            ln -s tool.sh tool-link
            echo data > data.txt
            git add .
            git commit -q -m first
            test "$(git ls-files -s tool.sh | cut -c1-6)" = 100755
            test "$(git ls-files -s tool-link | cut -c1-6)" = 120000
            test -z "$(git status --porcelain)"
        """, cwd=mnt / "proj")
    with s.step("venv"):
        python3 = shutil.which("python3") or "python3"
        # --without-pip: pip's ~1000 files cost ~40 s on the mount and test nothing more
        # than the interpreter's symlinks, exec bits and pyvenv.cfg do
        s.tool.sh(f'"{python3}" -m venv --without-pip venv\n'
                  'test "$(venv/bin/python -c "print(1)")" = 1', cwd=mnt, timeout=120)
    s.commit(mnt, "tools")
    s.remount(s.api.ref.path, mnt)


@pytest.fixture(scope="module")
def tools(server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    require("rsync", "cp", "tar", "git", "python3")
    with shared_mount(server, tmp_path_factory.mktemp("tools")) as s:
        write_tools(s)
        yield s


@pytest.mark.parametrize("view", VIEWS)
def test_rsync_again_transfers_nothing(tools: Shared, view: str) -> None:
    tools.assert_written("rsync")
    m = tools.views[view]
    dry = ["-n"] if view == "read-only" else []   # nothing to write there anyway
    r = subprocess.run(["rsync", "-a", *dry, "--itemize-changes", "--stats",
                        f"{tools.tmp / 'src'}/", f"{m / 'rsync-dst'}/"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Number of regular files transferred: 0" in r.stdout, r.stdout
    # itemized lines are "YXcstpoguax name"; X is f (file), L (symlink), d (directory)...
    changed = [line for line in r.stdout.splitlines()
               if len(line) > 12 and line[11] == " " and line[0] in "<>ch.*"
               and line[1] in "fLDS"]
    assert not changed, r.stdout
    assert walk(m / "rsync-dst") == walk(tools.tmp / "src")


@pytest.mark.parametrize("view", VIEWS)
def test_cp_a_round_trip(tools: Shared, view: str) -> None:
    tools.assert_written("cp")
    m, src = tools.views[view], tools.tmp / "src"
    assert walk(m / "cp-dst") == walk(src)
    out = tools.tmp / f"cp-out-{view}"
    subprocess.run(["cp", "-a", str(m / "cp-dst"), str(out)], check=True, timeout=60)
    assert walk(out) == walk(src)


@pytest.mark.parametrize("view", VIEWS)
def test_tar_round_trip(tools: Shared, view: str) -> None:
    tools.assert_written("tar")
    m, src = tools.views[view], tools.tmp / "src"
    out = tools.tmp / f"tar-out-{view}"
    out.mkdir()
    archive = tools.tmp / f"back-{view}.tar"
    subprocess.run(["tar", "--format=posix", "-cf", str(archive), "-C", str(m / "tar-dst"), "."],
                   check=True, timeout=60)
    subprocess.run(["tar", "-xpf", str(archive), "-C", str(out)], check=True, timeout=60)
    assert walk(out) == walk(src)


@pytest.mark.parametrize("view", VIEWS)
def test_git_repository_survives(tools: Shared, view: str) -> None:
    tools.assert_written("git")
    proj = tools.views[view] / "proj"
    r = tools.tool.sh("""
        test "$(git config --get core.symlinks || echo unset)" != false
        git status --porcelain
        test "$(git log --oneline | wc -l)" = 1
        git fsck --no-progress
        ./tool-link
    """, cwd=proj)
    assert r.stdout == "tool\n", r.stdout   # status printed nothing; the link ran the script
    assert os.readlink(proj / "tool-link") == "tool.sh"
    assert stat.S_IMODE(os.stat(proj / "tool.sh").st_mode) == 0o755


@pytest.mark.parametrize("view", VIEWS)
def test_venv_runs_after_remount(tools: Shared, view: str) -> None:
    tools.assert_written("venv")
    venv = tools.views[view] / "venv"
    assert os.path.islink(venv / "bin" / "python")
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "print(1)"], capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "1\n"), r.stderr


# --- tilde-mount update, short commit ids ---------------------------------------------

def test_update_moves_a_mount_to_the_latest_commit(tool: Tool, api: Api,
                                                   tmp_path: Path) -> None:
    api.seed({"base.txt": b"base\n"})
    a, b = tmp_path / "a", tmp_path / "b"
    tool.mount(api.ref.path, a)
    tool.mount(api.ref.path, b)

    # 1. no changes in A: update shows B's commit
    (b / "from-b.txt").write_bytes(b"B1\n")
    tool.tm("commit", str(b), "-m", "b1")
    assert not (a / "from-b.txt").exists()
    tool.tm("update", str(a))
    assert (a / "from-b.txt").read_bytes() == b"B1\n"

    # 2. an uncommitted change to another path in A: kept, and B's file shown
    (a / "a-only.txt").write_bytes(b"A\n")
    (b / "from-b2.txt").write_bytes(b"B2\n")
    tool.tm("commit", str(b), "-m", "b2")
    tool.tm("update", str(a))
    assert (a / "from-b2.txt").read_bytes() == b"B2\n"
    assert (a / "a-only.txt").read_bytes() == b"A\n"
    st = tool.status(a)
    assert "a-only.txt" in str(st.get("added") or st), st

    # 3. A changes the path B commits: refused, naming the path; nothing in A changed
    (a / "base.txt").write_bytes(b"changed in A\n")
    (b / "base.txt").write_bytes(b"changed in B\n")
    (b / "from-b3.txt").write_bytes(b"B3\n")
    tool.tm("commit", str(b), "-m", "b3")
    before = {p.name: p.read_bytes() for p in a.iterdir() if p.is_file()}
    r = tool.tm("update", str(a), check=False)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "base.txt" in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert {p.name: p.read_bytes() for p in a.iterdir() if p.is_file()} == before
    assert not (a / "from-b3.txt").exists()

    # the repository holds B's version; A's stays A's own, uncommitted
    assert (a / "base.txt").read_bytes() == b"changed in A\n"
    assert api.tree()["base.txt"] == b"changed in B\n"


def test_mount_by_short_commit_id(tool: Tool, api: Api, tmp_path: Path) -> None:
    first = api.seed({"v.txt": b"one\n"}, "first")
    api.seed({"v.txt": b"two\n"}, "second")
    mnt = tmp_path / "short"
    tool.mount(api.ref.path, mnt, "--commit", first[:8])
    assert (mnt / "v.txt").read_bytes() == b"one\n"
    st = tool.status(mnt)
    assert st.get("commit_id") == first, st
