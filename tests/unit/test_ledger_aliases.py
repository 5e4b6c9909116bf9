"""The identity store's aliases (records merged away in their systems) and relinking, on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.core.types import LinkRow
from syncd.ledger import Ledger

T0 = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.db", clock=lambda: T0) as opened:
        yield opened


def test_an_alias_is_kept_once_with_its_first_survivor(ledger: Ledger) -> None:
    assert (
        ledger.identity.add_aliases([("hubspot", "contacts", "3", "9"), ("hubspot", "contacts", "4", "4")])
        == 1
    )
    assert ledger.identity.add_aliases([("hubspot", "contacts", "3", "7")]) == 0, "a merge is final"

    pending = ledger.identity.pending_aliases()
    assert [(a.id, a.survivor, a.applied) for a in pending] == [("3", "9", False)]
    ledger.identity.mark_aliases_applied([("hubspot", "contacts", "3")])
    assert ledger.identity.pending_aliases() == []
    assert ledger.identity.aliases_of("hubspot", ["3", "9"])["3"].merged_at == T0
    assert [a.id for a in ledger.identity.merged_into("hubspot", "9")] == ["3"]


def test_survivor_of_follows_a_chain_of_merges(ledger: Ledger) -> None:
    ledger.identity.add_aliases(
        [("salesforce", "Lead", "00Q1", "00Q2"), ("salesforce", "Lead", "00Q2", "00Q3")]
    )

    found = ledger.identity.survivor_of("00Q1")

    assert found is not None and found.survivor == "00Q3"
    assert ledger.identity.survivor_of("00Q3") is None


def test_relink_moves_records_to_other_keys_and_links_those_without_one(ledger: Ledger) -> None:
    a, b, c = ledger.identity.new_keys("account", 3)
    ledger.identity.add_links(
        [LinkRow(a, "hubspot", "deals", "5", "stored_id"), LinkRow(a, "hubspot", "deals", "6", "stored_id")]
    )

    ledger.identity.relink(
        [LinkRow(b, "hubspot", "deals", "5", "stored_id"), LinkRow(c, "hubspot", "deals", "7", "stored_id")]
    )

    assert ledger.identity.keys_of("hubspot", "deals", ["5", "6", "7"]) == {"5": b, "6": a, "7": c}


def test_relink_refuses_an_unknown_link_method_and_changes_nothing(ledger: Ledger) -> None:
    a, b = ledger.identity.new_keys("account", 2)
    ledger.identity.add_links([LinkRow(a, "hubspot", "deals", "5", "stored_id")])

    with pytest.raises(ValueError, match="unknown link method 'guess'"):
        ledger.identity.relink(
            [LinkRow(b, "hubspot", "deals", "5", "stored_id"), LinkRow(b, "hubspot", "deals", "6", "guess")]
        )

    assert ledger.identity.keys_of("hubspot", "deals", ["5", "6"]) == {"5": a}
