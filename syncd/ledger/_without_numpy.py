"""sqlite-utils, imported with numpy hidden from it (this module is the ledger package's first import).

sqlite-utils imports numpy whenever it is installed (matplotlib, for the backtest's charts, brings it), only
to map numpy values to column types; the ledger never stores one. That import alone is 14 MB of every
process that opens a ledger (``import syncd.cycle``: 85 MB of peak RSS with it, 71 MB without). A process
that needs numpy later (the backtest's charts) imports it as usual: only this import is made without it.
"""

from __future__ import annotations

import importlib
import sys


def import_sqlite_utils() -> None:
    if "sqlite_utils" in sys.modules or "numpy" in sys.modules:
        return
    sys.modules["numpy"] = None  # type: ignore[assignment]  # importing it now raises ImportError
    try:
        importlib.import_module("sqlite_utils")
    finally:
        del sys.modules["numpy"]


import_sqlite_utils()
