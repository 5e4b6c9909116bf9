"""Opening a ledger does not load numpy (sqlite-utils would import it, 14 MB of memory, for nothing the
ledger stores), and a process that needs numpy afterwards still gets it."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import syncd.cycle
from sqlite_utils import db
before = "numpy" in sys.modules
import numpy
print(json.dumps({"before": before, "after": "numpy" in sys.modules, "sqlite_utils_np": db.np is not None,
                  "array": int(numpy.arange(3).sum())}))
"""


def test_the_cycle_and_ledger_load_without_numpy_and_numpy_still_imports_after() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == {"before": False, "after": True, "sqlite_utils_np": False, "array": 3}
