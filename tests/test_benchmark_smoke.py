"""The mount benchmark still runs: `benchmarks/mount_bench.py --preset smoke`, every workload
(A-I) against every target (tilde-mount, the direct client, rclone full/off, s3fs, bindfs,
nginx). Peers it cannot find it installs itself; a failed install fails this test.

Never a timing assertion: only that it completes, prints the table with a verdict for
every target, and writes its JSON.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.fuse
@pytest.mark.timeout(900)
def test_mount_benchmark_smoke_preset_runs(tmp_path: Path) -> None:
    results = tmp_path / "results"
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "mount_bench.py"), "--preset", "smoke",
         "--results", str(results), "--tmp", str(tmp_path)],
        capture_output=True, text=True, timeout=850)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-5000:]}\nstderr:\n{r.stderr[-5000:]}"
    out = r.stdout
    for needle in ("A  cold seq read, 1 reader", "G  dd write until durable",
                   "H  daemon peak RSS", "I  server alone", "tilde-mount requests",
                   "targets (ratios from this run):"):
        assert needle in out, out
    header = next(line for line in out.splitlines() if line.startswith("mounts"))
    for target in ("tilde-mount", "rclone-full", "rclone-off", "s3fs", "bindfs"):
        assert target in header
    files = list(results.glob("smoke-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    names = {t["target"] for t in data["targets"]}
    assert {"A", "B", "C", "E1", "E2", "E3", "F", "G", "H", "I"} <= names
    assert all(isinstance(t["pass"], bool) for t in data["targets"])
    assert data["versions"]["rclone"].startswith("rclone v")
    assert not list(tmp_path.glob("tilde-mount-bench-*")), "temporary directory left behind"


@pytest.mark.fuse
@pytest.mark.timeout(600)
def test_download_modes_benchmark_runs(tmp_path: Path) -> None:
    """benchmarks/download_modes.py: both modes measured, and the redirect mode really went
    through redirects (one per object read) while the stream mode had none."""
    results = tmp_path / "results"
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "download_modes.py"), "--size-mib", "8",
         "--random", "10", "--repeat", "1", "--results", str(results), "--tmp", str(tmp_path)],
        capture_output=True, text=True, timeout=550)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-5000:]}\nstderr:\n{r.stderr[-5000:]}"
    assert "cold seq read (MiB/s)" in r.stdout and "requests per MiB, seq" in r.stdout
    files = list(results.glob("download-modes-*.json"))
    assert len(files) == 1
    med = json.loads(files[0].read_text())["medians"]
    assert med["stream"]["seq_redirects"] == 0 and med["redirect"]["seq_redirects"] == 1
    assert med["redirect"]["random_redirects"] == 1
    assert med["stream"]["seq_mib_s"] > 0 and med["redirect"]["seq_mib_s"] > 0
    assert not list(tmp_path.glob("tilde-download-modes-*")), "temporary directory left behind"


@pytest.mark.timeout(300)
def test_s3_transfer_benchmark_runs(tmp_path: Path) -> None:
    """benchmarks/s3_transfer.py end to end at its smallest (PostgreSQL, SeaweedFS, two
    servers): every row printed, with a figure (never a timing assertion)."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "s3_transfer.py"), "--size", "1",
         "--count", "2", "--repeat", "1", "--parallel", "1"],
        capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    rows = {line.split()[0] + " " + line.split()[1]: line for line in r.stdout.splitlines()
            if line.startswith("  PUT") or line.startswith("  GET")}
    assert set(rows) == {"PUT presigned", "PUT via", "PUT streamed", "GET presigned",
                         "GET streamed", "GET local"}, r.stdout
    for line in rows.values():
        assert re.search(r"\d+\.\d+ +\d+\.\d+x +\d+\.\d+", line), line
