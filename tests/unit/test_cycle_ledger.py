"""The ledger reads the cycle added (bulk record reads, due keys) and keys minted from seeds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.core.types import DecisionRow, LinkRow, RecordRow
from syncd.ledger import Ledger
from syncd.ledger.decisions import Decisions

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def test_seeded_keys_are_the_same_for_the_same_records(tmp_path: Path) -> None:
    with Ledger(tmp_path / "a.db", clock=lambda: T0) as a:
        first = a.identity.new_keys("person", 2, seeds=["salesforce:Lead:00Q1", "hubspot:contacts:7"])
    with Ledger(tmp_path / "b.db", clock=lambda: T0) as b:
        again = b.identity.new_keys("person", 2, seeds=["salesforce:Lead:00Q1", "hubspot:contacts:7"])
        other = b.identity.new_keys("account", 1, seeds=["salesforce:Lead:00Q1"])
    assert first == again and len(set(first)) == 2
    assert all(k.startswith("p:") for k in first) and other[0].startswith("a:")
    assert other[0][2:] != first[0][2:], "the kind is part of the seed"


def test_bulk_reads_of_records(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db", clock=lambda: T0) as ledger:
        ledger.records.upsert(
            RecordRow("salesforce", "Lead", f"00Q{n}", {"Id": f"00Q{n}", "n": n}) for n in range(3)
        )
        key = ledger.identity.new_key("person")
        ledger.identity.add_links(
            [
                LinkRow(key, "salesforce", "Lead", "00Q1", "new"),
                LinkRow(key, "salesforce", "Lead", "00Q2", "email"),
            ]
        )

        found = ledger.records.by_ids("salesforce", "Lead", ["00Q0", "00Q2", "00Q9"])
        assert sorted(found) == ["00Q0", "00Q2"] and found["00Q2"].data["n"] == 2
        by_key = ledger.records.of_keys([key, "p:unknown"])
        assert list(by_key) == [key] and [r.id for r in by_key[key]] == ["00Q1", "00Q2"]


def test_due_keys_are_those_whose_due_time_has_come(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db", clock=lambda: T0) as ledger:
        keys = sorted(ledger.identity.new_keys("person", 3)) + ledger.identity.new_keys("account", 1)
        rows = [
            DecisionRow(
                k, "d", [], T0, data={"due_at": (T0 + timedelta(hours=h)).isoformat(timespec="microseconds")}
            )
            for k, h in zip(keys, (1, 5, 30, 2), strict=True)
        ]
        ledger.decisions.record(rows)

        assert ledger.decisions.due_keys(T0) == []
        assert ledger.decisions.due_keys(T0 + timedelta(hours=5)) == sorted([keys[0], keys[1], keys[3]])
        assert ledger.decisions.due_keys(T0 + timedelta(hours=5), kind="person") == keys[:2]
        assert ledger.decisions.due_keys(T0 + timedelta(days=2), kind="person", after=keys[0], limit=1) == [
            keys[1]
        ]


def test_many_due_keys_page_by_kind_in_key_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``FEW`` matches the decisions are walked in key order: a kind's pages hold its keys only, each
    once, in order, whichever kind sorts first."""
    monkeypatch.setattr(Decisions, "FEW", 2)
    with Ledger(tmp_path / "l.db", clock=lambda: T0) as ledger:
        persons = sorted(ledger.identity.new_keys("person", 5))
        accounts = sorted(ledger.identity.new_keys("account", 3))
        due = {"due_at": T0.isoformat(timespec="microseconds")}
        ledger.decisions.record(DecisionRow(k, "d", [], T0, data=due) for k in persons + accounts)
        for kind, keys in (("person", persons), ("account", accounts)):
            paged: list[str] = []
            while page := ledger.decisions.due_keys(T0, kind=kind, after=paged[-1] if paged else "", limit=2):
                paged.extend(page)
            assert paged == keys
        assert ledger.decisions.stale_keys("other", kind="person", limit=10) == persons
