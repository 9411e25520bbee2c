"""What the sandbox scenarios put in the repository before running README code.

The README runs `python train.py` and then reads `/sandbox/results.csv`; the script itself is
the user's, so the scenarios supply one. It uses pandas when it can import it and the csv
module otherwise, and says which: the README's `pip install pandas` works only where the
server's egress policy lets sandboxes reach a package index, and the scenarios check what
happened honestly instead of pretending it worked.

TILDE_TEST_PIP_CA (set by the harness, tests/test_readme_scenarios.py): the server is one
whose sandboxes reach a local package index (tests/conftest.py, `pip_index_server`), whose
certificate is signed by the test CA in that PEM file. `repository_files()` then adds the CA
at PIP_CA_PATH, where the server's PIP_CERT points pip, and `pip install pandas` must work.
"""

import os
from pathlib import Path

PIP_CA = os.environ.get("TILDE_TEST_PIP_CA", "")
PIP_CA_PATH = ".test-ca.pem"  # conftest.PIP_CA_IN_REPO

TRAIN_PY = b'''\
import csv
import sys

rows = [("epoch", "loss"), (1, 0.9), (2, 0.5), (3, 0.25)]
try:
    import pandas as pd
except ImportError:
    pd = None
if pd is not None:
    pd.DataFrame(rows[1:], columns=rows[0]).to_csv("/sandbox/results.csv", index=False)
else:
    with open("/sandbox/results.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\\n").writerows(rows)
print(f"trained 3 epochs with python {sys.version_info[0]}.{sys.version_info[1]}; "
      f"pandas: {'yes' if pd is not None else 'no'}")
'''

RESULTS_CSV_LINES = ["epoch,loss", "1,0.9", "2,0.5", "3,0.25"]


def repository_files() -> dict[str, bytes]:
    """What a sandbox scenario commits first: train.py, and the test CA with an index."""
    files = {"train.py": TRAIN_PY}
    if PIP_CA:
        files[PIP_CA_PATH] = Path(PIP_CA).read_bytes()
    return files
