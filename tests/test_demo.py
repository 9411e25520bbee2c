"""The README's main command, ``./scripts/demo.sh``, end to end: it must mount, write with
ordinary tools, commit with ``tilde-mount commit``, show the log and the committed files (with
the client and the ``tilde`` command line, which also created the repository),
and leave nothing behind (no mount, no daemon, no server, no temporary directory), also when
a step fails."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo.sh"

pytestmark = pytest.mark.timeout(240)


def run_demo(tmp_path: Path, path_prefix: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILDE_")}
    env.update(TMPDIR=str(tmp_path), HOME=str(tmp_path / "home"), LC_ALL="C")
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}:{env.get('PATH', '')}"
    (tmp_path / "home").mkdir(exist_ok=True)
    return subprocess.run([str(DEMO)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=200, stdin=subprocess.DEVNULL)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def mounted_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(root))]


def assert_nothing_left(out: str, tmp_path: Path) -> None:
    pids = [int(p) for p in re.findall(r"tilde-server pid (\d+)", out)]
    pids += [int(p) for p in re.findall(r"\(pid (\d+), log", out)]
    assert pids, out
    assert not [p for p in pids if alive(p)], f"processes left behind: {pids}\n{out}"
    assert mounted_under(tmp_path) == []
    assert not list(tmp_path.glob("tilde-demo.*")), "the temporary directory was left"


def test_demo_mounts_writes_commits_and_shows_the_log(tmp_path: Path) -> None:
    r = run_demo(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    commits = re.findall(r"^demo: committed ([0-9a-f]{16,})$", r.stdout, re.M)
    assert len(commits) == 2, out
    # the mount, the ordinary tools, status and commit, as the README says
    assert re.search(r"tilde-mount: demo/hello mounted at \S+/mnt; session \S+ \(pid", out)
    for step in ("mnt$ echo 'Hello from tilde-mount!' > README.txt", "mnt$ mkdir -p data docs",
                 "mnt$ cp ", "| tar -xf -", "tilde-mount status ", "tilde-mount commit ",
                 "tilde-mount unmount "):
        assert step in out, step
    assert re.search(r"^added: +5$", r.stdout, re.M), out
    # the log, newest first, through the bundled client, with each commit's changes
    log = r.stdout[r.stdout.index("log of demo/hello"):]
    assert log.index(commits[1]) < log.index(commits[0])
    assert f"{commits[1]}  One more number; rename and drop a doc" in log
    assert f"{commits[0]}  Add a greeting, numbers and the docs" in log
    assert re.search(r"added +docs/project-readme\.md", log)
    # the files at the head, and what the shell tools wrote
    head = r.stdout[r.stdout.index("files at the head"):].splitlines()
    listed = [line.strip() for line in head[1:] if line.startswith("  ")
              and not line.startswith("    ")]
    assert listed == ["README.txt", "data/numbers.csv", "docs/project-readme.md",
                      "docs/usage.md"], out
    assert "    n,square\n    1,1\n    2,4\n    3,9\n    4,16\n" in r.stdout
    # org and repository made with the tilde command line; its log, ls and cat at a commit
    assert "$ .venv/bin/tilde org create demo --display-name Demo organization" in out
    assert "$ .venv/bin/tilde repo create demo/hello --description" in out
    cli = r.stdout[r.stdout.index("the same through the tilde command line"):]
    assert f"commit {commits[1]}" in cli and f"commit {commits[0]}" not in cli, out
    assert "    ~ data/numbers.csv" in cli and "    + docs/project-readme.md" in cli, out
    assert "    - docs/semantics.md" in cli, out
    listing = cli[cli.index("tilde ls -R"):cli.index("tilde cat")].splitlines()[1:-1]
    assert listing == ["README.txt", "data/numbers.csv", "docs/project-readme.md",
                       "docs/usage.md"], out
    shown = cli[cli.index("tilde cat"):].split("\n", 1)[1]
    assert shown.startswith("n,square\n1,1\n2,4\n3,9\n\n"), out  # as of the first commit
    assert "tilde-server stopped (exit status 0)" in r.stdout
    assert r.stdout.rstrip().endswith("demo: done")
    assert_nothing_left(out, tmp_path)


def test_demo_fails_loudly_and_cleans_up(tmp_path: Path) -> None:
    """A step that fails while mounted (here: tar) stops the demo with a non-zero status
    and the step named, and the mount, the daemon and the server are all gone."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tar").write_text("#!/bin/sh\necho 'tar: simulated failure' >&2\nexit 2\n")
    (bin_dir / "tar").chmod(0o755)
    r = run_demo(tmp_path, path_prefix=bin_dir)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "demo: step failed" in r.stderr and "tar" in r.stderr, out
    assert "demo: FAILED" in r.stderr, out
    assert "mounted at" in out  # it did fail while the mount was live
    assert "demo: done" not in out
    assert_nothing_left(out, tmp_path)
