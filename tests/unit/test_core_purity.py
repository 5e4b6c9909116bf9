"""The core is pure: importing all of it loads no database, HTTP stack, client library or sandbox."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import syncd.core

FORBIDDEN = (
    "sqlite3",
    "requests",
    "urllib3",
    "simple_salesforce",
    "hubspot",
    "syncd.sandbox",
    "syncd.ledger",
)

CORE_MODULES = sorted(m.name for m in pkgutil.walk_packages(syncd.core.__path__, "syncd.core."))

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def test_the_core_has_the_modules_the_design_names() -> None:
    for name in ("types", "systems", "mapping", "link", "engine", "plan", "rules.ruleset"):
        assert f"syncd.core.{name}" in CORE_MODULES


def test_importing_every_core_module_loads_nothing_impure() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *CORE_MODULES], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    impure = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert impure == []


def test_the_probe_would_see_an_impure_import() -> None:
    # The same probe, given a module that does load sqlite3, reports it: the check above can fail.
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "syncd.ledger"], check=True, capture_output=True, text=True
    ).stdout
    assert "sqlite3" in json.loads(out)
