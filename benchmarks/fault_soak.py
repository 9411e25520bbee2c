"""The fault-injection soak: the ordinary-tool workload through a faulty network, many seeds.

    .venv/bin/python benchmarks/fault_soak.py [SEEDS]     # default 40

Runs tests/reliability/test_faults.py's workload tests (tests/faultproxy.py between a real
mount and real tilde-servers, 5-15 % of requests reset before or after forwarding,
answered 503/429, stalled or cut short) over SEEDS seeds against the session server and
SEEDS // 4 + 1 against a hosted-like one, then prints the figures: requests, faults of
each kind injected and survived, bytes checked against the same workload run locally,
bytes lost and duplicate commits (both must be 0). Exits non-zero if any run failed.
Needs FUSE, like the suite. Figures go to build/fault-soak-figures.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    figures = ROOT / "build" / "fault-soak-figures.json"
    figures.parent.mkdir(exist_ok=True)
    figures.unlink(missing_ok=True)
    env = dict(os.environ, TILDE_FAULT_SEEDS=str(seeds), TILDE_FIGURES=str(figures))
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/reliability/test_faults.py", "-k", "tools_under_faults"],
        cwd=ROOT, env=env, check=False)
    took = time.monotonic() - started
    data = json.loads(figures.read_text()).get("faults", {}) if figures.exists() else {}
    print(f"\nfault soak: {seeds} + {seeds // 4 + 1} seeds in {took:.0f} s, "
          f"pytest exit {r.returncode}")
    for key in ("seeds", "requests", "faults_injected", "resets_before", "resets_after",
                "status_503", "status_429", "stalls", "truncations", "lost_answers_found_landed",
                "commit_retries",
                "tool_errors", "bytes_checked", "bytes_lost", "extra_files",
                "duplicate_commits"):
        print(f"  {key:18} {data.get(key, 0)}")
    bad = data.get("bytes_lost", 0) or data.get("duplicate_commits", 0) or \
        data.get("tool_errors", 0) or data.get("extra_files", 0)
    return 1 if r.returncode or bad or not data else 0


if __name__ == "__main__":
    sys.exit(main())
