"""A plan from the ledger sees the records as syncd's confirmed writes left them (``decide._as_written``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.core.types import RecordRow, WriteRow
from syncd.cycle.context import WriteCache
from syncd.cycle.decide import _as_written
from syncd.ledger import Ledger

T0 = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.db", clock=lambda: T0) as opened:
        yield opened


def _lead(id_: str, score: float, seen_at: datetime) -> RecordRow:
    return RecordRow("salesforce", "Lead", id_, {"Id": id_, "Syncd_Score__c": score}, seen_at=seen_at)


def test_a_write_after_the_pull_shows_with_its_own_value_and_an_older_one_does_not(ledger: Ledger) -> None:
    ledger.outbox.record_writes(
        [
            WriteRow("salesforce", "Lead", "00Q1", "Syncd_Score__c", 77, T0 + timedelta(minutes=1)),
            WriteRow("salesforce", "Lead", "00Q2", "Syncd_Score__c", 77, T0 - timedelta(minutes=1)),
            # The record already holds it, as a float: the plan shows what syncd wrote.
            WriteRow("salesforce", "Lead", "00Q3", "Syncd_Score__c", 78, T0 + timedelta(minutes=1)),
            # The record holds exactly this: nothing to lay over it.
            WriteRow("salesforce", "Lead", "00Q4", "Syncd_Score__c", 79.0, T0 + timedelta(minutes=1)),
        ]
    )
    rows = {
        "p:1": [_lead("00Q1", 80.0, T0)],
        "p:2": [_lead("00Q2", 80.0, T0)],
        "p:3": [_lead("00Q3", 78.0, T0)],
        "p:4": [_lead("00Q4", 79.0, T0)],
    }
    out = _as_written(ledger, list(rows), rows, WriteCache(ledger))
    assert out["p:1"][0].data["Syncd_Score__c"] == 77
    assert out["p:2"][0].data["Syncd_Score__c"] == 80.0
    third = out["p:3"][0].data["Syncd_Score__c"]
    assert (third, type(third)) == (78, int)
    assert out["p:4"][0] is rows["p:4"][0]


def test_a_record_syncd_created_and_has_not_pulled_is_there_with_its_writes(ledger: Ledger) -> None:
    key = ledger.identity.new_keys("person", 1)[0]
    ledger.identity.link(key, "salesforce", "Lead", "00Q9", "created")
    ledger.outbox.record_writes([WriteRow("salesforce", "Lead", "00Q9", "OwnerId", "005A", T0)])
    out = _as_written(ledger, [key], {}, WriteCache(ledger))
    assert [(r.id, r.data) for r in out[key]] == [("00Q9", {"Id": "00Q9", "OwnerId": "005A"})]
