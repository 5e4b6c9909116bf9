"""The history a backtest replays: record versions kept by the ledger, and the days built from them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_ledger_open import build_ledger_at

from syncd.core.rules import load_ruleset
from syncd.core.types import LinkRow, RecordRow
from syncd.ledger import Ledger
from syncd.reports.history import build_history, window

ROOT = Path(__file__).resolve().parents[2]
RULES = load_ruleset(ROOT / "mappings")
UNTIL = datetime(2026, 3, 31, 15, 0, tzinfo=UTC)
SINCE, _ = window(UNTIL, 10)  # 2026-03-22 00:00 UTC


def at(day: int, hour: int = 12) -> datetime:
    """A moment on the window's ``day`` (0 = its first day; negative: before the window)."""
    return SINCE + timedelta(days=day, hours=hour)


def contact(id_: str, when: datetime, email: str, **props: Any) -> RecordRow:
    data = {"id": id_, "properties": {"email": email, "lifecyclestage": "lead", **props}}
    return RecordRow(
        "hubspot", "contacts", id_, data, modified_at=when, email=email, domain=email.split("@")[1]
    )


def company(id_: str, when: datetime, domain: str) -> RecordRow:
    data = {"id": id_, "properties": {"domain": domain, "name": domain}}
    return RecordRow("hubspot", "companies", id_, data, modified_at=when, domain=domain)


def sf_account(id_: str, when: datetime, domain: str) -> RecordRow:
    data = {"Id": id_, "Name": domain, "Website": domain}
    return RecordRow("salesforce", "Account", id_, data, modified_at=when, domain=domain)


def opportunity(id_: str, when: datetime, account: str, *, closed: bool, won: bool) -> RecordRow:
    data = {"Id": id_, "AccountId": account, "IsClosed": closed, "IsWon": won}
    return RecordRow("salesforce", "Opportunity", id_, data, modified_at=when)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.db", clock=lambda: UNTIL) as opened:
        yield opened


def keep(ledger: Ledger, key: str | None, *rows: RecordRow) -> None:
    """Keep versions of records, as a pull does, and link them to ``key``."""
    ledger.records.keep_versions(rows)
    if key is not None:
        ledger.identity.add_links(LinkRow(key, r.system, r.object, r.id, "new") for r in rows)


def test_versions_come_back_oldest_first_up_to_a_time_with_the_key_they_are_linked_to(ledger: Ledger) -> None:
    ann = ledger.identity.new_key("person")
    keep(ledger, ann, contact("1", at(3), "ann@acme.example"))
    keep(ledger, ann, contact("1", at(1), "ann@acme.example", firstname="Ann"))
    keep(ledger, None, opportunity("0061", at(2), "0011", closed=False, won=False))

    found = list(ledger.records.versions(until=at(2), page=1))

    assert [(v.record.id, v.record.modified_at) for v in found] == [("1", at(1)), ("0061", at(2))]
    assert (found[0].key, found[0].kind) == (ann, "person")
    assert (found[1].key, found[1].kind) == (None, None)
    assert found[0].record.data["properties"]["firstname"] == "Ann"
    assert ledger.records.count_versions(until=at(2)) == 2
    assert ledger.records.count_versions() == 3


def test_staging_with_versions_keeps_what_keep_versions_keeps_for_the_changed_records_only(
    tmp_path: Path,
) -> None:
    # The pull stages each page with its versions in one pass; the versions must be those keep_versions
    # keeps for the records whose content changed (new or changed; not those seen again unchanged).
    first = [contact("1", at(1), "ann@acme.example"), sf_account("0011", at(1), "acme.example")]
    second = [
        contact("1", at(1), "ann@acme.example"),  # unchanged
        contact("2", at(2), "bob@acme.example"),  # new
        sf_account("0011", at(3), "acme.org"),  # changed
    ]
    found = []
    for staged in (True, False):
        with Ledger(tmp_path / f"{staged}.db", clock=lambda: UNTIL) as ledger:
            for page in (first, second):
                if staged:
                    ledger.records.stage(page, run_id=None, versions=True)
                else:
                    result, _ = ledger.records.stage(page, run_id=None)
                    ledger.records.keep_versions([r for r in page if r.ref in set(result.changed)])
            found.append(
                sorted(
                    (v.record.ref, v.record.modified_at, v.record.domain, v.record.hash, dict(v.record.data))
                    for v in ledger.records.versions()
                )
            )
    assert found[0] == found[1]
    assert [(ref, when) for ref, when, *_ in found[0]] == [
        (("hubspot", "contacts", "1"), at(1)),
        (("hubspot", "contacts", "2"), at(2)),
        (("salesforce", "Account", "0011"), at(1)),
        (("salesforce", "Account", "0011"), at(3)),
    ]


def test_a_ledger_upgraded_to_record_versions_starts_with_one_version_per_record(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    build_ledger_at(path, 3)  # holds one HubSpot contact, linked to p:old
    with Ledger(path) as ledger:
        found = list(ledger.records.versions())
    assert [(v.record.system, v.record.id, v.key) for v in found] == [("hubspot", "7", "p:old")]


def test_the_days_hold_what_changed_as_it_stood_at_the_days_end_after_a_starting_population(
    ledger: Ledger,
) -> None:
    ann, bob, acme = (ledger.identity.new_key(k) for k in ("person", "person", "account"))
    keep(ledger, acme, company("c1", at(-30), "acme.example"), sf_account("0011", at(-30), "acme.example"))
    keep(ledger, ann, contact("1", at(-5), "ann@acme.example", firstname="Ann"))
    # Day 3: Bob appears, then Ann changes twice; she stands as of the day's end.
    keep(ledger, bob, contact("2", at(3, 9), "bob@acme.example", firstname="Bob"))
    keep(ledger, ann, contact("1", at(3, 10), "ann@acme.example", firstname="Anna"))
    keep(ledger, ann, contact("1", at(3, 23), "ann@acme.example", firstname="Annie"))
    # Day 4: an opportunity of Acme is opened; day 6 it is won.
    keep(ledger, None, opportunity("0061", at(4), "0011", closed=False, won=False))
    keep(ledger, None, opportunity("0061", at(6), "0011", closed=True, won=True))
    # After the window's end: not part of it.
    keep(ledger, bob, contact("2", UNTIL + timedelta(hours=1), "bob@acme.example", firstname="Robert"))

    history = build_history(ledger, RULES.mapping, None, until=UNTIL, days=10)

    assert history.since == SINCE and len(history.days) == 10
    assert [p.key for p in history.start_persons] == [ann]
    assert history.start_persons[0].fields["first_name"] == "Ann"
    assert history.start_persons[0].account_key == acme
    assert [a.key for a in history.start_accounts] == [acme]
    day3 = history.days[3]
    assert [p.key for p in day3.persons] == [bob, ann]  # in the order they were last modified
    assert [p.fields["first_name"] for p in day3.persons] == ["Bob", "Annie"]
    assert [a.key for a in day3.accounts] == [acme]  # the persons' account comes along
    assert day3.end == at(4, 0)
    counts = {
        d: (a.open_opportunities, a.won_opportunities) for d in (4, 6) for a in history.days[d].accounts
    }
    assert counts == {4: (1, 0), 6: (0, 1)}
    assert [d for d, day in enumerate(history.days) if day.persons or day.accounts] == [3, 4, 6]
    assert history.days[-1].end == UNTIL
    assert history.versions == 8 and history.changes == 5


def test_pruning_keeps_each_records_state_at_the_cut_and_everything_after_it(ledger: Ledger) -> None:
    ann = ledger.identity.new_key("person")
    for day, name in ((-9, "A"), (-5, "An"), (-2, "Ann"), (3, "Anna")):
        keep(ledger, ann, contact("1", at(day), "ann@acme.example", firstname=name))
    keep(ledger, None, opportunity("0061", at(-7), "0011", closed=False, won=False))
    before = build_history(ledger, RULES.mapping, None, until=UNTIL, days=10)

    assert ledger.records.prune_versions(SINCE) == 2  # "A" and "An"

    kept = [(v.record.id, v.record.modified_at) for v in ledger.records.versions()]
    assert kept == [("0061", at(-7)), ("1", at(-2)), ("1", at(3))]
    after = build_history(ledger, RULES.mapping, None, until=UNTIL, days=10)
    assert after.start_persons == before.start_persons and after.days == before.days
