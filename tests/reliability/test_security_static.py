"""Static security checks in every CI run: bandit over src/ finds no high-severity issue.

Findings that are not issues carry `# nosec <ID>` with the reason on the line above (MD5 is
used for S3-style ETags only, with usedforsecurity=False). The same check by hand:
``.venv/bin/bandit -q -r src -lll``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from figures import record

ROOT = Path(__file__).resolve().parents[2]


def test_bandit_finds_no_high_severity_issue() -> None:
    bandit = Path(sys.executable).parent / "bandit"
    assert bandit.exists(), "bandit is missing: it is a dev dependency (pip install -e .[dev])"
    r = subprocess.run([str(bandit), "-q", "-r", str(ROOT / "src"), "-lll", "-f", "json"],
                       capture_output=True, text=True, timeout=240)
    report = json.loads(r.stdout)
    high = [f"{x['filename']}:{x['line_number']}: {x['test_id']} {x['issue_text']}"
            for x in report["results"] if x["issue_severity"] == "HIGH"]
    assert report["metrics"]["_totals"]["loc"] > 10_000  # it really scanned the sources
    assert not high, "\n".join(high)
    assert r.returncode == 0, r.stderr
    record("security", bandit_high=len(high))
