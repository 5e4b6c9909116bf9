"""Staging a pulled page (``syncd.cycle.pull.stage``) over a real ledger: syncd's own write coming back (an
echo) makes nothing dirty, and never clears a change of the record that is not decided yet.

Regression (the 20k crash benchmark): a run decided an account, wrote its team's properties to the
contacts of the account, and was killed before deciding those persons. The next run pulled the writes back;
the echo cleared the contacts' dirty flag, and the persons were never decided.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.connectors.base import Page, RawRecord
from syncd.core.rules import load_ruleset
from syncd.core.schedule import Backoff
from syncd.core.types import WriteRow
from syncd.cycle.context import RunContext, quiet
from syncd.cycle.pull import stage
from syncd.cycle.report import CycleReport
from syncd.cycle.roster import Roster
from syncd.ledger import Ledger
from syncd.progress import NULL

RULES = load_ruleset(Path(__file__).resolve().parents[2] / "mappings")
NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
REF = ("hubspot", "contacts", "101")
CONTACT: dict[str, Any] = {
    "hs_object_id": "101",
    "email": "ana.lima@example.com",
    "firstname": "Ana",
    "lastname": "Lima",
    "lastmodifieddate": "2025-03-03T14:00:00.000Z",
    "syncd_account_manager": None,
}
MANAGER = "41000234"


def _run(ledger: Ledger) -> RunContext:
    return RunContext(
        ledger=ledger,
        connectors={},
        rules=RULES,
        roster=Roster.from_reps([]),
        report=CycleReport(),
        run_id=ledger.runs.start("cycle"),
        stop=threading.Event(),
        now=NOW,
        chunk=100,
        backoff=Backoff(),
        progress=NULL,
        log_decision=quiet,
    )


def _page(fields: dict[str, Any], modified: datetime) -> Page:
    return Page([RawRecord("hubspot", "contacts", "101", modified, False, fields)], modified.isoformat())


def _dirty(ledger: Ledger) -> bool:
    row = ledger.records.get(*REF)
    assert row is not None
    return row.dirty


@pytest.mark.parametrize(
    ("decided_before", "dirty_after"),
    [
        pytest.param(True, False, id="decided-record-stays-clean"),
        pytest.param(False, True, id="undecided-change-stays-dirty"),
    ],
)
def test_an_echo_leaves_the_dirty_flag_as_it_was(
    tmp_path: Path, decided_before: bool, dirty_after: bool
) -> None:
    with Ledger(tmp_path / "syncd.db", clock=lambda: NOW) as ledger:
        run = _run(ledger)
        stage(run, "hubspot", "contacts", _page(CONTACT, NOW - timedelta(hours=1)), {})
        assert _dirty(ledger), "a record seen for the first time waits for its decision"
        if decided_before:
            ledger.records.mark_records_clean([REF])
        # syncd writes the account manager to the contact (an account's team), and the write comes back.
        ledger.outbox.record_writes(
            [WriteRow(*REF, "syncd_account_manager", MANAGER, NOW, run_id=run.run_id)]
        )
        echo = {**CONTACT, "syncd_account_manager": MANAGER, "lastmodifieddate": "2025-03-03T15:00:01.000Z"}
        stage(run, "hubspot", "contacts", _page(echo, NOW + timedelta(seconds=1)), {})

        assert run.report.echoes["hubspot"] == 1, "the write is recognised as syncd's own"
        assert _dirty(ledger) is dirty_after
