"""Ordinary programs on a real mount, then `tilde-mount commit`, then a check over plain
HTTP that the new commit holds exactly the expected paths and bytes.

The expected tree comes from running the very same script in a local directory: whatever
the tools do there is what the repository must hold after the commit (empty directories
as their DIR/ marker objects, symlinks as objects holding their targets).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import tarfile
from pathlib import Path

from fusehelpers import Api, Tool, content_tree, local_tree

SHELL_SCRIPT = r"""
mkdir -p a/b/c
printf 'hello\n' > a/hello.txt
printf 'one\ntwo\nthree\n' > a/b/lines.txt
seq 1 20000 > a/b/c/numbers.txt
echo appended >> a/hello.txt
echo again >> a/hello.txt
ls -la a a/b > /dev/null
stat a/hello.txt > /dev/null
test "$(stat -c %s a/hello.txt)" = 21
cat a/hello.txt a/b/lines.txt > a/cat.txt
cp -r a copy
mv copy/hello.txt copy/hello-moved.txt
mv copy/b copy/b-moved
test ! -e copy/b && test -f copy/b-moved/c/numbers.txt
mkdir -p gone/x/y && echo x > gone/x/y/f && rm -r gone
test ! -e gone
find a copy -name '*.txt' | sort > found.txt
grep -r two a copy | sort > grep.txt
du -s a > /dev/null
du -sh . > /dev/null
tar -cf "$OUT/a.tar" a
mkdir untarred && tar -xf "$SRC/src.tar" -C untarred
tar -cf backup.tar -C untarred . && mkdir restored && tar -xf backup.tar -C restored
rm backup.tar
rsync -a "$SRC/rsync-src/" synced/
rsync -a "$SRC/rsync-src/" synced/
printf '0123456789' > dd.bin
dd if=/dev/zero of=dd.bin bs=1 count=3 seek=4 conv=notrunc status=none
dd if="$SRC/blob" of=dd2.bin bs=4096 count=2 status=none
dd if="$SRC/blob" of=dd2.bin bs=4096 seek=5 count=1 conv=notrunc status=none
sed -i 's/two/TWO/' a/b/lines.txt
mv a/cat.txt a/b/c/cat-moved.txt
"""


def make_sources(src: Path) -> None:
    """Inputs that live outside the mount: a tarball, an rsync tree, a binary blob."""
    src.mkdir()
    stage = src / "tar-stage"
    (stage / "t" / "u").mkdir(parents=True)
    (stage / "t" / "one.txt").write_text("tar one\n")
    (stage / "t" / "u" / "two.bin").write_bytes(bytes(range(256)) * 40)
    with tarfile.open(src / "src.tar", "w") as tf:
        tf.add(stage / "t", arcname="t")
    rs = src / "rsync-src"
    (rs / "deep" / "er").mkdir(parents=True)
    (rs / "r1.txt").write_text("rsync 1\n")
    (rs / "deep" / "er" / "r2.txt").write_text("rsync 2\n" * 100)
    os.utime(rs / "r1.txt", (1_600_000_000, 1_600_000_000))
    (src / "blob").write_bytes(os.urandom(64 * 1024))


def test_shell_tools_then_commit(tool: Tool, api: Api, tmp_path: Path) -> None:
    api.seed({"seeded/keep.txt": b"kept\n", "seeded/change.txt": b"old\n"})
    src = tmp_path / "src"
    make_sources(src)
    ref, mnt = tmp_path / "ref", tmp_path / "mnt"
    ref.mkdir()
    (ref / "seeded").mkdir()
    (ref / "seeded" / "keep.txt").write_bytes(b"kept\n")
    (ref / "seeded" / "change.txt").write_bytes(b"old\n")
    tool.mount(api.ref.path, mnt)

    script = SHELL_SCRIPT + "echo more >> seeded/change.txt\n"
    for root, out in ((ref, tmp_path / "out-ref"), (mnt, tmp_path / "out-mnt")):
        out.mkdir()
        tool.env.update(SRC=str(src), OUT=str(out))
        tool.sh(script, cwd=root)

    # tar c read the same members from both trees.
    names = {}
    for r in ("out-ref", "out-mnt"):
        with tarfile.open(tmp_path / r / "a.tar") as tf:
            names[r] = sorted(tf.getnames())
    assert names["out-ref"] == names["out-mnt"]
    # rsync -a kept the mtime (utimens is kept for the life of the mount).
    assert os.stat(mnt / "synced" / "r1.txt").st_mtime == 1_600_000_000

    expected = local_tree(ref)
    assert local_tree(mnt) == expected

    r = tool.tm("commit", str(mnt), "-m", "shell tools")
    commit_id = r.stdout.strip()
    assert commit_id and "\n" not in commit_id
    assert api.head_commit() == commit_id
    assert content_tree(api.tree(commit_id)) == expected

    # The mount goes on over a fresh session with nothing pending.
    st = tool.status(mnt)
    assert not (st.get("added") or st.get("modified") or st.get("deleted")), st
    (mnt / "after.txt").write_text("after commit\n")
    commit2 = tool.tm("commit", str(mnt), "-m", "second").stdout.strip()
    assert commit2 != commit_id
    assert content_tree(api.tree(commit2)) == {**expected, "after.txt": b"after commit\n"}


def python_io(root: Path) -> None:
    """Seeks, overwrites, truncates, appends and pwrites; run locally and on the mount."""
    p = root / "py" / "data.bin"
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:
        f.write(b"A" * 100_000)
        f.seek(10)
        f.write(b"0123456789")
        f.seek(200_000)          # a hole, filled with zeros
        f.write(b"END")
    with open(p, "r+b") as f:
        f.truncate(150_000)
        f.seek(99_995)
        assert f.read(10) == b"AAAAA" + b"\0" * 5
        f.seek(0, os.SEEK_END)
        f.write(b"tail")
        os.pwrite(f.fileno(), b"PW", 50)
        os.ftruncate(f.fileno(), 150_002)
    with open(p, "ab") as f:
        f.write(b"!append")
    with open(root / "seeded" / "big.bin", "r+b") as f:   # random write into an existing object
        f.seek(300_000)
        f.write(b"patched")
    with open(root / "py" / "shrink.txt", "w") as f:
        f.write("x" * 5000)
    os.truncate(root / "py" / "shrink.txt", 7)
    fd = os.open(root / "py" / "rw.txt", os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"hello world")
    os.lseek(fd, 0, os.SEEK_SET)
    assert os.read(fd, 5) == b"hello"
    os.fsync(fd)
    os.close(fd)
    os.rename(root / "py" / "rw.txt", root / "py" / "renamed.txt")
    os.unlink(root / "seeded" / "gone.txt")


def test_python_seek_write_truncate(tool: Tool, api: Api, tmp_path: Path) -> None:
    big = os.urandom(1_000_000)
    api.seed({"seeded/big.bin": big, "seeded/gone.txt": b"bye\n"})
    ref, mnt = tmp_path / "ref", tmp_path / "mnt"
    (ref / "seeded").mkdir(parents=True)
    (ref / "seeded" / "big.bin").write_bytes(big)
    (ref / "seeded" / "gone.txt").write_bytes(b"bye\n")
    tool.mount(api.ref.path, mnt)
    python_io(ref)
    python_io(mnt)
    expected = local_tree(ref)
    assert local_tree(mnt) == expected
    commit_id = tool.tm("commit", str(mnt), "-m", "python io").stdout.strip()
    assert content_tree(api.tree(commit_id)) == expected


def test_sqlite_database_on_the_mount(tool: Tool, api: Api, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    db = mnt / "db" / "app.sqlite"
    db.parent.mkdir()
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)")
    with con:
        con.executemany("INSERT INTO t (name, n) VALUES (?, ?)",
                        [(f"row{i}", i) for i in range(2000)])
    con.close()
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE t SET n = n * 2 WHERE id % 2 = 0")
        con.execute("DELETE FROM t WHERE id > 1500")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    # The sqlite3 program too.
    subprocess.run(["sqlite3", str(db), "INSERT INTO t (name, n) VALUES ('cli', -1);"],
                   check=True)
    commit_id = tool.tm("commit", str(mnt), "-m", "sqlite").stdout.strip()

    tree = api.tree(commit_id)
    assert set(tree) == {"db/app.sqlite"}   # the journal came and went
    local = tmp_path / "copy.sqlite"
    local.write_bytes(tree["db/app.sqlite"])
    con = sqlite3.connect(local)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT count(*), sum(n) FROM t").fetchone() == (
        1501, sum(i * 2 if (i + 1) % 2 == 0 else i for i in range(1500)) - 1)
    con.close()


def test_git_repository_inside_the_mount(tool: Tool, api: Api, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    tool.env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
                    GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    work = mnt / "proj"
    work.mkdir()
    tool.sh("""
        git init -q .
        printf 'print(1)\\n' > main.py
        mkdir -p pkg && echo 'x = 1' > pkg/mod.py
        git add .
        git commit -q -m 'first'
        echo 'y = 2' >> pkg/mod.py
        git commit -q -am 'second'
        test "$(git log --oneline | wc -l)" = 2
        git status --porcelain > ../git-status.txt
        git fsck --no-progress
    """, cwd=work)
    assert (mnt / "git-status.txt").read_text() == ""
    expected = local_tree(mnt)
    commit_id = tool.tm("commit", str(mnt), "-m", "a git repository").stdout.strip()
    tree = api.tree(commit_id)
    assert content_tree(tree) == expected
    assert "proj/.git/HEAD" in tree and "proj/pkg/mod.py" in tree

    # The committed repository is a working git repository: clone it from a read-only
    # mount of that commit.
    ro = tmp_path / "ro"
    tool.mount(api.ref.path, ro, "--commit", commit_id)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ro / "proj"), str(clone)], check=True,
                   env=tool.env)
    assert (clone / "pkg" / "mod.py").read_text() == "x = 1\ny = 2\n"
