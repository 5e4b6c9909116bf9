"""Benchmark: generating the seeded org for 100,000 persons (issue #2: under a minute)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.sandbox.seed import generate
from syncd.sandbox.store import Store

PERSONS = 100_000
BUDGET_SECONDS = 60.0


@pytest.mark.bench
@pytest.mark.parametrize("on_disk", [pytest.param(False, id="memory"), pytest.param(True, id="sqlite-files")])
def test_bench_seed_100k_persons(on_disk: bool, tmp_path: Path) -> None:
    sf = Store(tmp_path / "salesforce.sqlite" if on_disk else None)
    hs = Store(tmp_path / "hubspot.sqlite" if on_disk else None)
    began = time.perf_counter()
    summary = generate(sf, hs, seed=1, persons=PERSONS, now=datetime(2025, 6, 1, tzinfo=UTC))
    seconds = time.perf_counter() - began
    records = sum(summary["salesforce"].values()) + sum(summary["hubspot"].values())
    where = "SQLite files" if on_disk else "memory"
    print(
        f"\nseed {PERSONS:,} persons into {where}: {seconds:.1f} s, {records:,} records, "
        f"{records / seconds:,.0f} records/s, {PERSONS / seconds:,.0f} persons/s"
    )
    sf.close()
    hs.close()
    assert sum(summary["persons"].values()) == PERSONS
    assert seconds < BUDGET_SECONDS
