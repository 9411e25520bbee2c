"""Render the reliability suite's figures (tests/figures.py) as the table of
docs/reliability.md.

    python scripts/reliability_report.py                 # print the table
    python scripts/reliability_report.py --update-docs   # rewrite it in docs/reliability.md

The figures file is ``$TILDE_FIGURES`` or build/reliability-figures.json, written by the
pytest run that just ended; the table goes between the ``figures:begin``/``figures:end``
markers of the doc, with the run's kind (CI slice or full run) and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"


def table(figures: dict[str, dict[str, object]]) -> str:
    kind = "full run (TILDE_RELIABILITY=full)" if os.environ.get("TILDE_RELIABILITY") == "full" \
        else "bounded CI slice"
    day = datetime.date.today().isoformat()
    lines = [f"Figures of the last {kind}, {day} (scripts/reliability_report.py):", "",
             "| suite | figure | value |", "|---|---|---|"]
    for suite in sorted(figures):
        for key in sorted(figures[suite]):
            lines.append(f"| {suite} | {key} | {figures[suite][key]} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    path = Path(os.environ.get("TILDE_FIGURES") or ROOT / "build" / "reliability-figures.json")
    if not path.exists():
        print(f"no figures at {path}: run the reliability suite first", file=sys.stderr)
        return 1
    text = table(json.loads(path.read_text()))
    print(text)
    if args.update_docs:
        doc = DOC.read_text()
        head, _, rest = doc.partition(BEGIN)
        _, _, tail = rest.partition(END)
        DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
