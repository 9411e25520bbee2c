"""What the sandbox scenarios put in the repository before running README code.

The README runs `python train.py` and then reads `/sandbox/results.csv`; the script itself is
the user's, so the scenarios supply one. It uses pandas when it can import it and the csv
module otherwise, and says which: the sandbox has no network unless the operator turns it on
(`tilde-server run --sandbox-network`), so the README's `pip install pandas` cannot download
anything there, and the scenarios check that honestly instead of pretending it worked.
"""

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
