"""Figures the reliability suite measures, for docs/reliability.md.

A test calls ``record("faults", runs=3, faults_injected=412, ...)``; figures of one
pytest run go to ``$TILDE_FIGURES`` (default ``build/reliability-figures.json``), one
entry per (suite, key), numbers added up across calls. ``scripts/reliability.py`` renders
them into the table of docs/reliability.md.

``full_run()`` says whether this is the long run (``TILDE_RELIABILITY=full``: many seeds,
more operations) or CI's bounded slice; tests size themselves with ``scale(bounded, full)``.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def full_run() -> bool:
    return os.environ.get("TILDE_RELIABILITY", "") == "full"


def scale(bounded: int, full: int) -> int:
    """``bounded`` in CI's slice, ``full`` in the long run."""
    return full if full_run() else bounded


def figures_path() -> Path:
    return Path(os.environ.get("TILDE_FIGURES") or ROOT / "build" / "reliability-figures.json")


def record(suite: str, **figures: int | float | str) -> None:
    """Add ``figures`` (numbers add up, strings replace) to ``suite``'s entry."""
    path = figures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read()
        data: dict[str, dict[str, int | float | str]] = json.loads(text) if text else {}
        entry = data.setdefault(suite, {})
        for key, value in figures.items():
            old = entry.get(key)
            if isinstance(value, (int, float)) and isinstance(old, (int, float)):
                entry[key] = old + value
            else:
                entry[key] = value
        f.seek(0)
        f.truncate()
        json.dump(data, f, indent=1, sort_keys=True)
