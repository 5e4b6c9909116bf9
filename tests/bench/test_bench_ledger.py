"""Ledger throughput: bulk upsert of 100,000 records (first sight, unchanged re-pull, all changed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.core.types import RecordRow
from syncd.ledger import Ledger

N = 100_000
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def leads(version: int) -> Iterator[RecordRow]:
    """Streamed like a connector's pages: realistic Lead payloads, never all in memory."""
    for i in range(N):
        id_ = f"00Q8d0{i:012d}"
        email = f"person{i}@company{i % 5000}.example"
        yield RecordRow(
            "salesforce",
            "Lead",
            id_,
            {
                "Id": id_,
                "FirstName": "Ana",
                "LastName": f"Lindqvist{i}",
                "Email": email,
                "Company": f"Company {i % 5000}",
                "Country": "SE",
                "Status": "Open - Not Contacted",
                "OwnerId": "0058d0000000000001AAA",
                "LeadSource": "Web",
                "IsConverted": False,
                "SystemModstamp": "2024-03-01T09:00:00.000+0000",
                "Syncd_HubSpot_Id__c": str(100000 + i),
                "version": version,
            },
            modified_at=T0,
            email=email,
            domain=email.split("@")[1],
        )


@pytest.mark.bench
def test_bench_bulk_upsert_of_100k_records(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        run = ledger.runs.start()
        figures = []
        for label, version, expected in [
            ("first sight (insert)", 1, (N, 0, 0)),
            ("re-pull, unchanged", 1, (0, 0, N)),
            ("re-pull, all changed", 2, (0, N, 0)),
        ]:
            started = time.perf_counter()
            result = ledger.records.upsert(leads(version), run_id=run)
            elapsed = time.perf_counter() - started
            assert (result.inserted, result.updated, result.unchanged) == expected
            figures.append((label, elapsed))
        assert ledger.integrity_check() == "ok"
    size_mb = path.stat().st_size / 1e6
    print()
    for label, elapsed in figures:
        print(f"ledger upsert {N:,} records, {label}: {elapsed:.2f} s = {N / elapsed:,.0f} records/s")
    print(f"ledger file after {N:,} records: {size_mb:.1f} MB")
    # "Thousands per second" is the requirement; far below that means something regressed.
    assert all(N / elapsed > 5_000 for _, elapsed in figures)
