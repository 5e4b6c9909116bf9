"""Every module of the package imports on its own in a fresh interpreter (no import-order accidents)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import syncd

MODULES = sorted(m.name for m in pkgutil.walk_packages(syncd.__path__, "syncd."))


def test_the_package_has_its_modules() -> None:
    assert {"syncd.core.mapping", "syncd.core.engine", "syncd.cycle", "syncd.ledger"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first_in_a_fresh_process(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1:]
