"""The ledger's API against a real SQLite file in tmp_path: records, links, watermarks, decisions,
assignments, outbox, writes, overrides, quarantine, runs, and the read views for status and explain."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from syncd.core.schedule import Backoff
from syncd.core.types import (
    AssignmentRow,
    DecisionRow,
    Intent,
    LinkRow,
    OverrideRow,
    RecordRow,
    WriteRow,
    content_hash,
)
from syncd.errors import LedgerError
from syncd.ledger import Ledger

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    """A settable clock: the ledger stamps rows with whatever time the test says it is."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.db", clock=clock) as opened:
        yield opened


def lead(id_: str, **data: Any) -> RecordRow:
    email = data.get("Email")
    return RecordRow("salesforce", "Lead", id_, {"Id": id_, **data}, modified_at=T0, email=email)


def contact(id_: str, email: str | None = None, **props: Any) -> RecordRow:
    return RecordRow(
        "hubspot", "contacts", id_, {"id": id_, "properties": {"email": email, **props}}, email=email
    )


# -- records ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        pytest.param(lead("00Q1", Email="a@x.com", Status="Open"), (0, 0, 1), id="same-content-unchanged"),
        pytest.param(lead("00Q1", Status="Open", Email="a@x.com"), (0, 0, 1), id="key-order-irrelevant"),
        pytest.param(lead("00Q1", Email="a@x.com", Status="Working"), (0, 1, 0), id="field-changed"),
        pytest.param(
            RecordRow(
                "salesforce",
                "Lead",
                "00Q1",
                {"Id": "00Q1", "Email": "a@x.com", "Status": "Open"},
                deleted=True,
            ),
            (0, 1, 0),
            id="deleted-flag-flipped",
        ),
        pytest.param(lead("00Q2", Email="b@x.com"), (1, 0, 0), id="another-record-inserted"),
        pytest.param(
            RecordRow("salesforce", "Contact", "00Q1", {"Id": "00Q1"}), (1, 0, 0), id="same-id-other-object"
        ),
    ],
)
def test_upsert_counts_new_changed_and_unchanged_records(
    ledger: Ledger, second: RecordRow, expected: tuple[int, int, int]
) -> None:
    ledger.records.upsert([lead("00Q1", Email="a@x.com", Status="Open")])
    result = ledger.records.upsert([second])
    assert (result.inserted, result.updated, result.unchanged) == expected
    assert result.changed == ([second.ref] if expected[2] == 0 else [])


def test_a_caller_hash_decides_what_counts_as_a_change_and_keeps_the_stored_data(ledger: Ledger) -> None:
    first = RecordRow("salesforce", "Lead", "00Q1", {"Status": "Open", "SystemModstamp": "1"}, hash="h-open")
    volatile_only = RecordRow(
        "salesforce", "Lead", "00Q1", {"Status": "Open", "SystemModstamp": "2"}, hash="h-open"
    )
    ledger.records.upsert([first])
    result = ledger.records.upsert([volatile_only])
    stored = ledger.records.get("salesforce", "Lead", "00Q1")
    assert result.unchanged == 1
    assert stored is not None and stored.data["SystemModstamp"] == "1"


def test_the_same_record_twice_in_one_batch_is_stored_once_with_the_last_value(ledger: Ledger) -> None:
    result = ledger.records.upsert([lead("00Q1", Status="Open"), lead("00Q1", Status="Working")])
    stored = ledger.records.get("salesforce", "Lead", "00Q1")
    assert (result.inserted, result.updated, result.unchanged) == (1, 0, 0)
    assert stored is not None and stored.data["Status"] == "Working"


def test_stored_record_round_trips_with_aware_utc_times(ledger: Ledger, clock: Clock) -> None:
    paris = timezone(timedelta(hours=2))
    row = RecordRow(
        "hubspot",
        "contacts",
        "501",
        {"id": "501", "properties": {"email": "Ana@Example.COM ", "n": 1.5, "ok": True, "none": None}},
        modified_at=datetime(2024, 3, 1, 12, 0, tzinfo=paris),
        email="Ana@Example.COM ",
        domain="Example.com",
    )
    run = ledger.runs.start()
    ledger.records.upsert([row], run_id=run)
    stored = ledger.records.get("hubspot", "contacts", "501")
    assert stored is not None
    assert stored.data == row.data
    assert stored.modified_at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    assert stored.modified_at.tzinfo == UTC
    assert (stored.email, stored.domain) == ("ana@example.com", "example.com")
    assert stored.hash == content_hash(row.data)
    assert (stored.seen_run, stored.seen_at, stored.dirty, stored.deleted) == (run, clock.now, True, False)


def test_a_naive_datetime_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        ledger.records.upsert([RecordRow("salesforce", "Lead", "00Q1", {}, modified_at=datetime(2024, 1, 1))])


def test_an_unknown_system_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="unknown system 'zoho'"):
        ledger.records.upsert([RecordRow("zoho", "Lead", "1", {})])


def test_unchanged_records_only_move_their_last_seen_run(ledger: Ledger, clock: Clock) -> None:
    first_run = ledger.runs.start()
    ledger.records.upsert([lead("00Q1")], run_id=first_run)
    ledger.runs.finish(first_run, "ok")
    clock.advance(hours=1)
    second_run = ledger.runs.start()
    ledger.records.upsert([lead("00Q1")], run_id=second_run)
    stored = ledger.records.get("salesforce", "Lead", "00Q1")
    assert stored is not None and (stored.seen_run, stored.seen_at) == (second_run, clock.now)


def test_dirty_flag_survives_a_repull_until_the_key_is_marked_clean(ledger: Ledger) -> None:
    ledger.records.upsert([lead("00Q1", Status="Open")])
    key = ledger.identity.new_key("person")
    ledger.identity.link(key, "salesforce", "Lead", "00Q1", "new")
    # A crashed cycle re-pulls the same content: the change must still be waiting to be decided.
    ledger.records.upsert([lead("00Q1", Status="Open")])
    assert ledger.records.dirty_keys() == [key]
    assert ledger.records.mark_clean([key]) == 1
    ledger.records.upsert([lead("00Q1", Status="Open")])
    assert ledger.records.dirty_keys() == []
    ledger.records.upsert([lead("00Q1", Status="Working")])
    assert ledger.records.dirty_keys() == [key]


@pytest.mark.parametrize("dirty_first_max", [5000, 0], ids=["few-dirty-plan", "many-dirty-plan"])
def test_dirty_keys_filters_by_kind_and_pages_in_key_order(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, dirty_first_max: int
) -> None:
    monkeypatch.setattr(ledger.records, "DIRTY_FIRST_MAX", dirty_first_max)
    people = ledger.identity.new_keys("person", 5)
    account = ledger.identity.new_key("account")
    ledger.records.upsert([lead(f"00Q{i}") for i in range(5)])
    ledger.records.upsert([RecordRow("salesforce", "Account", "001A", {})])
    ledger.identity.add_links(
        [LinkRow(k, "salesforce", "Lead", f"00Q{i}", "new") for i, k in enumerate(people)]
    )
    ledger.identity.link(account, "salesforce", "Account", "001A", "new")
    first = ledger.records.dirty_keys(kind="person", limit=3)
    rest = ledger.records.dirty_keys(kind="person", after=first[-1], limit=3)
    assert first + rest == sorted(people)
    assert ledger.records.dirty_keys(kind="account") == [account]
    assert ledger.records.dirty_keys() == sorted([*people, account])
    ledger.records.mark_clean(people[:4])
    assert ledger.records.dirty_keys(kind="person") == [people[4]]


def test_mark_records_clean_handles_records_without_a_key(ledger: Ledger) -> None:
    ledger.records.upsert(
        [RecordRow("salesforce", "User", "005A", {}), RecordRow("salesforce", "User", "005B", {})]
    )
    assert ledger.records.mark_records_clean([("salesforce", "User", "005A")]) == 1
    dirty = [r.id for r in ledger.records.iterate("salesforce", "User", dirty_only=True)]
    assert dirty == ["005B"]


def test_iter_records_streams_every_record_across_page_boundaries(ledger: Ledger) -> None:
    ledger.records.upsert([lead(f"00Q{i:02d}") for i in range(10)])
    ledger.records.upsert([RecordRow("salesforce", "Contact", "003A", {})])
    ids = [r.id for r in ledger.records.iterate("salesforce", "Lead", page=3)]
    assert ids == [f"00Q{i:02d}" for i in range(10)]


def test_unlinked_records_are_the_linking_to_do_list(ledger: Ledger) -> None:
    ledger.records.upsert([contact("1"), contact("2"), contact("3")])
    ledger.identity.link(ledger.identity.new_key("person"), "hubspot", "contacts", "2", "new")
    assert [r.id for r in ledger.records.unlinked("hubspot", "contacts")] == ["1", "3"]
    assert [r.id for r in ledger.records.unlinked("hubspot", "contacts", after="1")] == ["3"]
    assert [r.id for r in ledger.records.unlinked("hubspot", "contacts", limit=1)] == ["1"]


def test_paging_through_unlinked_records_does_not_walk_the_pages_linked_before(tmp_path: Path) -> None:
    # Linking pages through the to-do list: each page starts after the last id of the one before, so the
    # records earlier pages linked are not walked again (a first cycle links every record, page by page).
    work = []
    for linked in (0, 5000):
        with Ledger(tmp_path / f"ledger{linked}.db") as ledger:
            ledger.records.upsert([contact(f"1{i:05}") for i in range(linked)] + [contact("2"), contact("3")])
            keys = ledger.identity.new_keys("person", linked) if linked else []
            ledger.identity.add_links(
                LinkRow(key, "hubspot", "contacts", f"1{i:05}", "new") for i, key in enumerate(keys)
            )
            after = f"1{linked - 1:05}" if linked else ""
            page = ledger.records.unlinked("hubspot", "contacts", after=after)
            assert [r.id for r in page] == ["2", "3"]
            work.append(
                _steps(
                    ledger,
                    lambda ledger=ledger, a=after: ledger.records.unlinked("hubspot", "contacts", after=a),
                )
            )
    assert work[1] <= work[0] + 2, work


def test_an_idle_lookup_of_unlinked_records_does_not_walk_the_linked_and_clean_ones(tmp_path: Path) -> None:
    # An idle cycle asks for the unlinked records of every object: with every record linked and decided
    # (clean), the answer must not cost a walk over all of them (0.2 s per idle cycle at 100,000 persons).
    work = []
    for linked in (0, 5000):
        with Ledger(tmp_path / f"ledger{linked}.db") as ledger:
            ledger.records.upsert([contact(f"1{i:05}") for i in range(linked)])
            keys = ledger.identity.new_keys("person", linked) if linked else []
            ledger.identity.add_links(
                LinkRow(key, "hubspot", "contacts", f"1{i:05}", "new") for i, key in enumerate(keys)
            )
            ledger.records.mark_clean(keys)
            assert ledger.records.unlinked("hubspot", "contacts") == []
            work.append(_steps(ledger, lambda ledger=ledger: ledger.records.unlinked("hubspot", "contacts")))
            # A record staged later is found again (it is dirty until the key it is linked to is decided).
            ledger.records.upsert([contact("2")])
            assert [r.id for r in ledger.records.unlinked("hubspot", "contacts")] == ["2"]
    assert work[1] <= work[0] + 2, work


def test_records_by_email_finds_both_systems_case_insensitively(ledger: Ledger) -> None:
    ledger.records.upsert(
        [lead("00Q1", Email="Ana@X.com"), contact("7", "ana@x.com"), contact("8", "bo@x.com")]
    )
    found = ledger.records.by_email(" ANA@x.COM")
    assert [(r.system, r.id) for r in found] == [("hubspot", "7"), ("salesforce", "00Q1")]


# -- keys and links ---------------------------------------------------------------------------------------


def test_new_keys_are_unique_and_prefixed_by_kind(ledger: Ledger) -> None:
    people = ledger.identity.new_keys("person", 3)
    account = ledger.identity.new_key("account")
    assert len(set(people)) == 3 and all(k.startswith("p:") for k in people)
    assert account.startswith("a:") and ledger.identity.key_kind(account) == "account"
    with pytest.raises(ValueError, match="unknown key kind"):
        ledger.identity.new_key("rep")


def test_a_record_keeps_its_first_key_and_conflicts_are_reported(ledger: Ledger) -> None:
    first, second = ledger.identity.new_keys("person", 2)
    assert ledger.identity.link(first, "hubspot", "contacts", "7", "stored_id") == first
    assert ledger.identity.link(first, "hubspot", "contacts", "7", "email") == first
    assert ledger.identity.link(second, "hubspot", "contacts", "7", "email") == first
    conflicts = ledger.identity.add_links(
        [
            LinkRow(second, "hubspot", "contacts", "7", "email"),
            LinkRow(second, "salesforce", "Lead", "00Q1", "email"),
        ]
    )
    assert conflicts == {("hubspot", "contacts", "7"): first}
    assert ledger.identity.key_of("salesforce", "Lead", "00Q1") == second
    assert [link.how for link in ledger.identity.links_of(first)] == ["stored_id"]


def test_links_are_found_by_system_and_id_and_by_key(ledger: Ledger, clock: Clock) -> None:
    key = ledger.identity.new_key("person")
    ledger.identity.add_links(
        [
            LinkRow(key, "hubspot", "contacts", "7", "new"),
            LinkRow(key, "salesforce", "Lead", "00Q1", "stored_id"),
        ]
    )
    assert ledger.identity.keys_of("hubspot", "contacts", ["7", "8"]) == {"7": key}
    (by_id,) = ledger.identity.links_by_id("salesforce", "00Q1")
    assert (by_id.key, by_id.object, by_id.how, by_id.linked_at) == (key, "Lead", "stored_id", clock.now)
    assert {link.ref for link in ledger.identity.links_of(key)} == {
        ("hubspot", "contacts", "7"),
        ("salesforce", "Lead", "00Q1"),
    }


def test_a_link_to_an_unknown_key_is_refused_by_the_foreign_key(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="FOREIGN KEY"):
        ledger.identity.link("p:missing", "hubspot", "contacts", "7", "new")


def test_an_unknown_link_method_is_refused(ledger: Ledger) -> None:
    key = ledger.identity.new_key("person")
    with pytest.raises(ValueError, match="unknown link method"):
        ledger.identity.link(key, "hubspot", "contacts", "7", "guess")


def test_keys_by_email_and_domain_see_only_linked_records_of_the_kind(ledger: Ledger) -> None:
    person = ledger.identity.new_key("person")
    account = ledger.identity.new_key("account")
    ledger.records.upsert(
        [
            contact("7", "Ana@Acme.com"),
            contact("8", "unlinked@acme.com"),
            RecordRow("hubspot", "companies", "900", {}, domain="acme.com"),
            RecordRow("salesforce", "Lead", "00Q1", {}, email="ana@acme.com", domain="acme.com"),
        ]
    )
    ledger.identity.link(person, "hubspot", "contacts", "7", "new")
    ledger.identity.link(person, "salesforce", "Lead", "00Q1", "email")
    ledger.identity.link(account, "hubspot", "companies", "900", "new")
    assert ledger.identity.keys_by_email(["ANA@acme.com", "unlinked@acme.com", ""]) == {
        "ana@acme.com": [person]
    }
    assert ledger.identity.keys_by_domain(["acme.com"]) == {"acme.com": [account]}
    assert ledger.identity.keys_by_domain(["acme.com"], kind="person") == {"acme.com": [person]}
    assert ledger.identity.keys_with_domains(["ACME.com", "other.com"], kind="person") == {person}
    assert ledger.identity.keys_with_domains(["acme.com"], kind="account") == {account}
    assert ledger.records.domains_of_keys([person, account, "p:unknown"]) == {"acme.com"}
    assert ledger.records.domains_of_keys(["p:unknown"]) == set()


def _company_people(ledger: Ledger, others: int) -> tuple[str, str]:
    """A person of acme.com (a Lead and a HubSpot contact) and ``others`` persons of other domains."""
    person = ledger.identity.new_key("person")
    rows = [
        RecordRow("salesforce", "Lead", "00Q1", {}, email="ana@acme.com", domain="acme.com"),
        RecordRow("hubspot", "contacts", "7", {}, email="ana@acme.com", domain="acme.com"),
    ]
    keys = ledger.identity.new_keys("person", others) if others else []
    rows += [
        RecordRow("hubspot", "contacts", str(100 + i), {}, email=f"p{i}@o{i}.com", domain=f"o{i}.com")
        for i in range(others)
    ]
    ledger.records.upsert(rows)
    ledger.identity.link(person, "salesforce", "Lead", "00Q1", "new")
    ledger.identity.link(person, "hubspot", "contacts", "7", "email")
    for i, key in enumerate(keys):
        ledger.identity.link(key, "hubspot", "contacts", str(100 + i), "new")
    return person, "7"


def test_a_domains_contacts_can_be_read_with_some_fields_only(ledger: Ledger) -> None:
    person = ledger.identity.new_key("person")
    data = {"email": "ana@acme.com", "syncd_csm": "41", "notes": "x" * 500, "score": 7}
    ledger.records.upsert(
        [RecordRow("hubspot", "contacts", "7", data, email="ana@acme.com", domain="acme.com")]
    )
    ledger.identity.link(person, "hubspot", "contacts", "7", "new")

    (whole,) = ledger.records.live_contacts_by_domain(["acme.com"])["acme.com"]
    (some,) = ledger.records.live_contacts_by_domain(
        ["acme.com"], fields=["syncd_csm", "email", "score", "absent"]
    )["acme.com"]
    assert whole == (person, ledger.records.by_ids("hubspot", "contacts", ["7"])["7"])
    assert some[0] == person
    assert some[1].data == {"syncd_csm": "41", "email": "ana@acme.com", "score": 7, "absent": None}
    assert (some[1].ref, some[1].seen_at, some[1].deleted) == (whole[1].ref, whole[1].seen_at, False)


def _steps(ledger: Ledger, call: Callable[[], object]) -> int:
    """SQLite virtual machine steps (in thousands) a call takes."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    ledger.db.conn.set_progress_handler(count, 1000)
    try:
        call()
    finally:
        ledger.db.conn.set_progress_handler(None, 0)
    return steps


def test_a_domains_people_are_found_by_key_without_walking_unrelated_contacts(tmp_path: Path) -> None:
    # A ledger in its first cycle has no statistics (ANALYZE has not run): the lookup must still go by key,
    # not through every HubSpot contact's link for each person record of the domain.
    found, work = [], []
    for others in (0, 3000):
        with Ledger(tmp_path / f"ledger{others}.db") as ledger:
            person, contact_id = _company_people(ledger, others)
            found.append(
                {
                    d: [(k, r.id) for k, r in rows]
                    for d, rows in ledger.records.live_contacts_by_domain(["acme.com"]).items()
                }
            )
            assert found[-1] == {"acme.com": [(person, contact_id)]}
            work.append(
                _steps(ledger, lambda ledger=ledger: ledger.records.live_contacts_by_domain(["acme.com"]))
            )
    assert work[1] <= work[0] + 2, work


@pytest.mark.parametrize(
    ("lead_linked", "contact_linked", "winner"),
    [
        pytest.param(True, False, "lead", id="contact-joins-the-lead"),
        pytest.param(False, True, "contact", id="lead-joins-the-contact"),
        pytest.param(False, False, "new", id="both-new"),
        pytest.param(True, True, "lead", id="contact-key-merged-into-lead-key"),
    ],
)
def test_a_converted_lead_and_its_contact_stay_one_person(
    ledger: Ledger, lead_linked: bool, contact_linked: bool, winner: str
) -> None:
    lead_key, contact_key = ledger.identity.new_keys("person", 2)
    if lead_linked:
        ledger.identity.link(lead_key, "salesforce", "Lead", "00Q1", "new")
        ledger.identity.link(lead_key, "hubspot", "contacts", "7", "stored_id")
    if contact_linked:
        ledger.identity.link(contact_key, "salesforce", "Contact", "003A", "new")
    key = ledger.identity.link_converted("00Q1", "003A")
    expected = {"lead": lead_key, "contact": contact_key}.get(winner)
    if expected is not None:
        assert key == expected
    else:
        assert key not in (lead_key, contact_key) and ledger.identity.key_kind(key) == "person"
    assert ledger.identity.key_of("salesforce", "Lead", "00Q1") == key
    assert ledger.identity.key_of("salesforce", "Contact", "003A") == key
    if lead_linked:
        assert ledger.identity.key_of("hubspot", "contacts", "7") == key
    if lead_linked and contact_linked:
        assert ledger.identity.key_kind(contact_key) is None


def test_merge_keeps_the_surviving_decision_and_moves_the_rest(ledger: Ledger) -> None:
    into, other = ledger.identity.new_keys("person", 2)
    ledger.identity.link(into, "hubspot", "contacts", "7", "new")
    ledger.identity.link(other, "salesforce", "Lead", "00Q1", "new")
    ledger.decisions.record([decision(into, owner="jack.miller@northwind.example")])
    ledger.decisions.record([decision(other, owner="emma.johnson@northwind.example")])
    ledger.decisions.set_assignments([assignment(other, "emma.johnson@northwind.example")])
    ledger.identity.merge_keys(into, other)
    assert ledger.identity.key_of("salesforce", "Lead", "00Q1") == into
    current = ledger.decisions.get(into)
    assert current is not None and current.owner == "jack.miller@northwind.example"
    assert [c.owner for c in ledger.decisions.history(into)] == [
        "jack.miller@northwind.example",
        "emma.johnson@northwind.example",
    ]
    moved = ledger.decisions.assignment(into)
    assert moved is not None and moved.rep == "emma.johnson@northwind.example"
    assert ledger.identity.key_kind(other) is None
    with pytest.raises(LedgerError, match="unknown key"):
        ledger.identity.merge_keys(into, other)


# -- watermarks -------------------------------------------------------------------------------------------


def test_watermarks_move_only_when_set(ledger: Ledger, clock: Clock) -> None:
    assert ledger.records.watermark("hubspot", "contacts") is None
    run = ledger.runs.start()
    ledger.records.upsert([contact("7")], run_id=run)
    ledger.runs.finish(run, "ok")
    assert ledger.records.watermark("hubspot", "contacts") is None
    ledger.records.set_watermark("hubspot", "contacts", "1709283600000", run_id=run)
    clock.advance(minutes=5)
    ledger.records.set_watermark("hubspot", "contacts", "1709283900000", run_id=run)
    ledger.records.set_watermark("salesforce", "Lead", "2024-03-01T09:00:00.000+0000")
    assert ledger.records.watermark("hubspot", "contacts") == "1709283900000"
    listed = [(w.system, w.object, w.value, w.updated_at) for w in ledger.records.watermarks()]
    assert listed == [
        ("hubspot", "contacts", "1709283900000", clock.now),
        ("salesforce", "Lead", "2024-03-01T09:00:00.000+0000", clock.now),
    ]
    ledger.records.clear_watermark("hubspot", "contacts")
    assert ledger.records.watermark("hubspot", "contacts") is None


# -- decisions --------------------------------------------------------------------------------------------


def decision(
    key: str, *, owner: str | None = None, stage: str = "lead", score: float = 10.0, **kw: Any
) -> DecisionRow:
    return DecisionRow(
        key=key,
        digest=kw.pop("digest", "rules-1"),
        trace=kw.pop("trace", [{"rule": "default"}]),
        decided_at=kw.pop("decided_at", T0),
        stage=stage,
        score=score,
        owner=owner,
        team=kw.pop("team", "marketing"),
        **kw,
    )


def test_decisions_keep_the_latest_and_a_history_of_outcome_changes(ledger: Ledger) -> None:
    key = ledger.identity.new_key("person")
    assert ledger.decisions.record([decision(key, owner="nora.lindqvist@northwind.example")]) == [key]
    # Same outcome, new trace and rules: refreshed, but not a change.
    assert (
        ledger.decisions.record([decision(key, owner="nora.lindqvist@northwind.example", digest="rules-2")])
        == []
    )
    later = T0 + timedelta(hours=1)
    changed = decision(
        key,
        owner="sam.patel@northwind.example",
        stage="salesqualifiedlead",
        score=72.5,
        team="sales",
        trace=[{"rule": "score >= 70"}],
        decided_at=later,
        data={"handoff": True},
    )
    assert ledger.decisions.record([changed]) == [key]
    current = ledger.decisions.get(key)
    assert current == changed
    history = ledger.decisions.history(key)
    assert [(h.prev_owner, h.owner) for h in history] == [
        (None, "nora.lindqvist@northwind.example"),
        ("nora.lindqvist@northwind.example", "sam.patel@northwind.example"),
    ]
    assert (history[1].prev_stage, history[1].prev_score, history[1].prev_team) == ("lead", 10.0, "marketing")
    # The trace is stored once, with the current decision; the history keeps the outcomes.
    assert (history[1].at, history[1].trace) == (later, [])
    assert current is not None and current.trace == [{"rule": "score >= 70"}]
    assert [h.owner for h in ledger.decisions.history(key, limit=1)] == ["sam.patel@northwind.example"]


def test_decisions_are_read_in_bulk(ledger: Ledger) -> None:
    keys = ledger.identity.new_keys("person", 3)
    ledger.decisions.record([decision(k, score=float(i)) for i, k in enumerate(keys[:2])])
    found = ledger.decisions.get_many(keys)
    assert {k: d.score for k, d in found.items()} == {keys[0]: 0.0, keys[1]: 1.0}


def test_owner_counts_count_current_decisions_per_owner(ledger: Ledger) -> None:
    a, b, c = ledger.identity.new_keys("person", 3)
    ledger.decisions.record(
        [decision(a, owner="sam@x.example"), decision(b, owner="sam@x.example"), decision(c, owner=None)]
    )
    ledger.decisions.record([decision(b, owner="queue:Unassigned")])
    assert ledger.decisions.owner_counts() == {"sam@x.example": 1, "queue:Unassigned": 1}


# -- assignments, round robin, daily counts ---------------------------------------------------------------


def assignment(key: str, rep: str, team: str = "sales") -> AssignmentRow:
    return AssignmentRow(key, rep, team, T0, "round robin: pool NA")


def test_sticky_assignments_are_stored_replaced_counted_and_cleared(ledger: Ledger) -> None:
    a, b = ledger.identity.new_keys("person", 2)
    ledger.decisions.set_assignments(
        [assignment(a, "jack.miller@northwind.example"), assignment(b, "jack.miller@northwind.example")]
    )
    ledger.decisions.set_assignments([assignment(b, "emma.johnson@northwind.example")])
    assert ledger.decisions.assignment(a) == assignment(a, "jack.miller@northwind.example")
    assert ledger.decisions.assignment_counts() == {
        "jack.miller@northwind.example": 1,
        "emma.johnson@northwind.example": 1,
    }
    ledger.decisions.clear_assignment(a)
    assert ledger.decisions.assignment(a) is None
    assert set(ledger.decisions.assignments([a, b])) == {b}


def test_round_robin_state_round_trips_per_pool(ledger: Ledger) -> None:
    assert ledger.decisions.round_robin_state("NA") is None
    ledger.decisions.set_round_robin_state("NA", {"next": 2, "credits": {"jack": 1.5}})
    ledger.decisions.set_round_robin_state("EMEA", {"next": 0})
    assert ledger.decisions.round_robin_state("NA") == {"next": 2, "credits": {"jack": 1.5}}


def test_daily_counts_add_up_per_rep_and_day(ledger: Ledger) -> None:
    day, next_day = date(2024, 3, 1), date(2024, 3, 2)
    assert ledger.decisions.add_daily_count("sam", day) == 1
    assert ledger.decisions.add_daily_count("sam", day, 2) == 3
    ledger.decisions.add_daily_count("lena", day)
    ledger.decisions.add_daily_count("sam", next_day)
    assert ledger.decisions.daily_counts(day) == {"sam": 3, "lena": 1}
    assert ledger.decisions.daily_counts(next_day) == {"sam": 1}


# -- outbox and writes ------------------------------------------------------------------------------------


def owner_intent(record_id: str = "00Q1", **kw: Any) -> Intent:
    return Intent(
        "salesforce", "Lead", {"OwnerId": "005JACK"}, kw.pop("reason", "route: NA"), record_id=record_id, **kw
    )


def create_intent(key: str) -> Intent:
    return Intent(
        "salesforce",
        "Lead",
        {"LastName": "Ng", "Company": "Acme", "Syncd_HubSpot_Id__c": "7"},
        "hand-off to sales",
        create_key="hs-7",
        key=key,
    )


@pytest.mark.parametrize(
    ("record_id", "create_key"),
    [pytest.param(None, None, id="neither"), pytest.param("00Q1", "hs-7", id="both")],
)
def test_an_intent_names_exactly_one_target(
    ledger: Ledger, record_id: str | None, create_key: str | None
) -> None:
    run = ledger.runs.start()
    bad = Intent("salesforce", "Lead", {}, "x", record_id=record_id, create_key=create_key)
    with pytest.raises(ValueError, match="exactly one of record_id and create_key"):
        ledger.outbox.add_intents([bad], run_id=run)
    assert ledger.outbox.counts()["pending"] == 0


def test_intent_lifecycle_pending_sent_confirmed_records_the_write(ledger: Ledger, clock: Clock) -> None:
    run = ledger.runs.start()
    ledger.outbox.add_intents([owner_intent()], run_id=run)
    (stored,) = ledger.outbox.intents(run_id=run)
    assert (stored.state, stored.run_id, stored.created_at) == ("pending", run, clock.now)
    assert ledger.outbox.mark_sent([stored.id]) == 1
    assert ledger.outbox.mark_sent([stored.id]) == 1  # a retry of an in-doubt push
    clock.advance(seconds=3)
    assert ledger.outbox.confirm({stored.id: None}) == 1
    assert ledger.outbox.confirm({stored.id: None}) == 0
    (done,) = ledger.outbox.intents(run_id=run)
    assert (done.state, done.attempts, done.result_id, done.updated_at) == ("confirmed", 2, "00Q1", clock.now)
    write = ledger.outbox.last_write("salesforce", "Lead", "00Q1", "OwnerId")
    assert write == WriteRow("salesforce", "Lead", "00Q1", "OwnerId", "005JACK", clock.now, run, stored.id)


def test_confirming_a_batch_goes_by_id_without_walking_other_open_intents(tmp_path: Path) -> None:
    # A ledger in its first cycle has no statistics: confirming a full batch of intents must look them up
    # by id, not walk every intent still open (thousands, while a first cycle decides and pushes).
    work = []
    for others in (0, 5000):
        with Ledger(tmp_path / f"ledger{others}.db") as ledger:
            run = ledger.runs.start()
            ledger.outbox.add_intents([owner_intent(f"00Q{i:05}") for i in range(others)], run_id=run)
            batch = [owner_intent(f"00Q9{i:04}") for i in range(500)]
            ledger.outbox.add_intents(batch, run_id=run)
            ids = {intent.id: None for intent in batch}
            work.append(_steps(ledger, lambda ledger=ledger, ids=ids: ledger.outbox.confirm(ids)))
            counts = ledger.outbox.counts()
            assert (counts["pending"], counts["confirmed"]) == (others, 500)
    assert work[1] <= work[0] + 2, work


def test_confirming_a_create_links_the_new_record_to_the_person(ledger: Ledger) -> None:
    key = ledger.identity.new_key("person")
    run = ledger.runs.start()
    stored = create_intent(key)
    ledger.outbox.add_intents([stored], run_id=run)
    with pytest.raises(LedgerError, match="confirm it with the new id"):
        ledger.outbox.confirm({stored.id: None})
    ledger.outbox.confirm({stored.id: "00Q9"})
    (link,) = ledger.identity.links_by_id("salesforce", "00Q9")
    assert (link.key, link.how) == (key, "created")
    assert (
        ledger.outbox.last_writes("salesforce", "Lead", ["00Q9"])[("00Q9", "Syncd_HubSpot_Id__c")].value
        == "7"
    )


@pytest.mark.parametrize(
    ("steps", "state"),
    [
        pytest.param([], "pending", id="written-only"),
        pytest.param(["sent"], "sent", id="sent-in-doubt"),
        pytest.param(["sent", "failed"], "failed", id="rejected"),
        pytest.param(["failed", "sent"], "failed", id="failed-is-final-for-send"),
        pytest.param(["failed", "confirmed"], "failed", id="failed-is-final-for-confirm"),
        pytest.param(["confirmed", "failed"], "confirmed", id="confirmed-is-final"),
    ],
)
def test_intent_state_transitions(ledger: Ledger, steps: list[str], state: str) -> None:
    run = ledger.runs.start()
    stored = owner_intent()
    ledger.outbox.add_intents([stored], run_id=run)
    for step in steps:
        if step == "sent":
            ledger.outbox.mark_sent([stored.id])
        elif step == "failed":
            ledger.outbox.fail({stored.id: "INACTIVE_OWNER_OR_USER: owner is inactive"})
        else:
            ledger.outbox.confirm({stored.id: None})
    (now,) = ledger.outbox.intents(run_id=run)
    assert now.state == state
    assert ledger.outbox.counts()[state] == 1


def test_unfinished_intents_of_a_killed_run_are_found_in_order_after_reopening(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path, clock=clock) as first:
        run = first.runs.start()
        a, b, c, d = (
            owner_intent("00Q1"),
            owner_intent("00Q2"),
            create_intent(first.identity.new_key("person")),
            owner_intent("00Q3"),
        )
        first.outbox.add_intents([a, b, c, d], run_id=run)
        first.outbox.mark_sent([b.id, c.id, d.id])
        first.outbox.confirm({d.id: None})
    with Ledger(path, clock=clock) as second:
        assert second.interrupted_runs == [run]
        unfinished = second.outbox.unfinished()
        assert [(i.id, i.state) for i in unfinished] == [(a.id, "pending"), (b.id, "sent"), (c.id, "sent")]
        assert unfinished[2].create_key == "hs-7" and unfinished[2].fields["LastName"] == "Ng"
        assert second.outbox.unfinished(system="hubspot") == []


def test_record_writes_keeps_the_latest_value_per_field(ledger: Ledger) -> None:
    ledger.outbox.record_writes([WriteRow("hubspot", "contacts", "7", "hubspot_owner_id", "101", T0)])
    ledger.outbox.record_writes(
        [WriteRow("hubspot", "contacts", "7", "hubspot_owner_id", "102", T0 + timedelta(1))]
    )
    latest = ledger.outbox.last_write("hubspot", "contacts", "7", "hubspot_owner_id")
    assert latest is not None and (latest.value, latest.at) == ("102", T0 + timedelta(1))
    assert ledger.outbox.last_write("hubspot", "companies", "7", "hubspot_owner_id") is None


# -- manual overrides -------------------------------------------------------------------------------------


def override(key: str, rep: str, seen_at: datetime = T0, days: int = 30) -> OverrideRow:
    return OverrideRow(
        key, "salesforce", "Lead", "00Q1", rep, seen_at, seen_at + timedelta(days=days), changed_by="005EMMA"
    )


def test_an_override_is_honoured_until_it_expires_and_not_recorded_twice(
    ledger: Ledger, clock: Clock
) -> None:
    key = ledger.identity.new_key("person")
    first = ledger.overrides.record(override(key, "emma.johnson@northwind.example"))
    again = ledger.overrides.record(
        override(key, "emma.johnson@northwind.example", seen_at=T0 + timedelta(hours=1))
    )
    assert first.seq is not None and again.seq == first.seq
    assert ledger.overrides.active_one(key) == first
    clock.advance(days=31)
    assert ledger.overrides.active_one(key) is None
    assert ledger.overrides.active_one(key, now=T0 + timedelta(days=29)) == first
    assert len(ledger.overrides.of_key(key)) == 1


def test_the_latest_active_override_wins(ledger: Ledger) -> None:
    key = ledger.identity.new_key("person")
    ledger.overrides.record(override(key, "emma.johnson@northwind.example"))
    latest = ledger.overrides.record(
        override(key, "noah.brown@northwind.example", seen_at=T0 + timedelta(hours=2))
    )
    assert ledger.overrides.active([key], now=T0 + timedelta(hours=3)) == {key: latest}
    assert ledger.overrides.active([key], field="stage", now=T0) == {}


# -- quarantine -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "delay", "reported"),
    [
        pytest.param(1, timedelta(minutes=15), False, id="first-failure"),
        pytest.param(2, timedelta(minutes=30), False, id="second-doubles"),
        pytest.param(4, timedelta(hours=2), False, id="fourth"),
        pytest.param(5, timedelta(hours=4), True, id="reported-after-five"),
        pytest.param(12, timedelta(hours=24), True, id="capped-at-a-day"),
    ],
)
def test_quarantine_backs_off_exponentially_and_reports_after_n_tries(
    ledger: Ledger, clock: Clock, attempts: int, delay: timedelta, reported: bool
) -> None:
    for _ in range(attempts):
        entry = ledger.quarantine.hold("salesforce", "Lead", "00Q1", "REQUIRED_FIELD_MISSING: LastName")
    assert entry.attempts == attempts
    assert entry.next_attempt_at - clock.now == delay
    assert entry.reported is reported
    assert ledger.quarantine.entry("salesforce", "Lead", "00Q1") == entry


def test_quarantine_keeps_first_seen_and_is_only_released_explicitly(ledger: Ledger, clock: Clock) -> None:
    policy = Backoff(base=timedelta(minutes=1), report_after=2)
    ledger.quarantine.hold("hubspot", "contacts", "7", "bad email", key=None, backoff=policy)
    clock.advance(minutes=1)
    assert [q.record_id for q in ledger.quarantine.held(due_only=True)] == ["7"]
    second = ledger.quarantine.hold("hubspot", "contacts", "7", "bad email again", backoff=policy)
    assert (second.first_seen_at, second.last_attempt_at, second.reason) == (T0, clock.now, "bad email again")
    assert ledger.quarantine.held(due_only=True) == []
    summary = ledger.quarantine.summary()
    assert (summary.total, summary.reported, summary.due, summary.by_object) == (
        1,
        1,
        0,
        {("hubspot", "contacts"): 1},
    )
    assert ledger.quarantine.release("hubspot", "contacts", "7") is True
    assert ledger.quarantine.release("hubspot", "contacts", "7") is False
    assert ledger.quarantine.held() == []


# -- runs -------------------------------------------------------------------------------------------------


def test_runs_start_finish_and_list_newest_first(ledger: Ledger, clock: Clock) -> None:
    first = ledger.runs.start()
    ledger.runs.update(first, {"pulled": 10})
    clock.advance(seconds=30)
    ledger.runs.finish(first, "ok", counters={"pulled": 12, "pushed": 3})
    clock.advance(minutes=5)
    second = ledger.runs.start("plan")
    ledger.runs.finish(second, "failed", error="hubspot: 401 token expired")
    runs = ledger.runs.recent()
    assert [r.id for r in runs] == [second, first]
    assert (runs[1].status, runs[1].counters, runs[1].finished_at) == (
        "ok",
        {"pulled": 12, "pushed": 3},
        T0 + timedelta(seconds=30),
    )
    assert (runs[0].kind, runs[0].status, runs[0].error) == ("plan", "failed", "hubspot: 401 token expired")
    assert ledger.runs.recent(limit=1) == [runs[0]]


@pytest.mark.parametrize(
    ("action", "error"),
    [
        pytest.param(lambda lg, run: lg.runs.finish(run, "ok"), LedgerError, id="finish-twice"),
        pytest.param(lambda lg, run: lg.runs.update(run, {}), LedgerError, id="update-finished"),
        pytest.param(lambda lg, run: lg.runs.finish("nope", "ok"), LedgerError, id="finish-unknown"),
        pytest.param(lambda lg, run: lg.runs.finish(run, "interrupted"), ValueError, id="bad-status"),
    ],
)
def test_run_misuse_is_refused(ledger: Ledger, action: Any, error: type[Exception]) -> None:
    run = ledger.runs.start()
    ledger.runs.finish(run, "ok")
    with pytest.raises(error):
        action(ledger, run)


# -- transactions -----------------------------------------------------------------------------------------


def test_a_failing_transaction_leaves_nothing_behind(ledger: Ledger) -> None:
    run = ledger.runs.start()
    with pytest.raises(RuntimeError), ledger.transaction():
        ledger.records.upsert([lead("00Q1")], run_id=run)
        ledger.outbox.add_intents([owner_intent()], run_id=run)
        ledger.records.set_watermark("salesforce", "Lead", "x")
        raise RuntimeError("push failed half-way")
    assert ledger.records.get("salesforce", "Lead", "00Q1") is None
    assert ledger.outbox.unfinished() == []
    assert ledger.records.watermark("salesforce", "Lead") is None


def test_a_nested_block_rolls_back_alone(ledger: Ledger) -> None:
    with ledger.transaction():
        ledger.records.set_watermark("salesforce", "Lead", "outer")
        with pytest.raises(RuntimeError), ledger.transaction():
            ledger.records.set_watermark("salesforce", "Contact", "inner")
            raise RuntimeError
    assert ledger.records.watermark("salesforce", "Lead") == "outer"
    assert ledger.records.watermark("salesforce", "Contact") is None


def test_a_nested_block_without_a_savepoint_is_part_of_the_open_transaction(ledger: Ledger) -> None:
    with ledger.transaction(), pytest.raises(RuntimeError), ledger.transaction(savepoint=False):
        ledger.records.set_watermark("salesforce", "Contact", "inner")
        raise RuntimeError
    # Not rolled back alone: it commits with the transaction it joined...
    assert ledger.records.watermark("salesforce", "Contact") == "inner"
    with pytest.raises(RuntimeError), ledger.transaction():
        with ledger.transaction(savepoint=False):
            ledger.records.set_watermark("salesforce", "Lead", "joined")
        raise RuntimeError
    # ...and goes with it when it fails.
    assert ledger.records.watermark("salesforce", "Lead") is None
    # Outside any transaction it is a transaction of its own.
    with pytest.raises(RuntimeError), ledger.transaction(savepoint=False):
        ledger.records.set_watermark("salesforce", "Lead", "alone")
        raise RuntimeError
    assert ledger.records.watermark("salesforce", "Lead") is None


# -- status and explain -----------------------------------------------------------------------------------


def test_status_summarises_runs_watermarks_quarantine_outbox_and_counts(ledger: Ledger) -> None:
    run = ledger.runs.start()
    ledger.records.upsert([lead("00Q1"), lead("00Q2"), contact("7")], run_id=run)
    ledger.identity.new_keys("person", 2)
    ledger.records.set_watermark("salesforce", "Lead", "w1", run_id=run)
    ledger.outbox.add_intents([owner_intent()], run_id=run)
    ledger.quarantine.hold("hubspot", "contacts", "7", "bad")
    view = ledger.views.status(runs=5)
    assert [r.id for r in view.runs] == [run]
    assert [w.value for w in view.watermarks] == ["w1"]
    assert (view.quarantine.total, view.outbox["pending"]) == (1, 1)
    assert view.records == {("hubspot", "contacts"): 1, ("salesforce", "Lead"): 2}
    assert view.keys == {"person": 2, "account": 0}
    assert view.schema_version == ledger.schema_version


def test_explain_finds_a_person_by_email_id_or_key_and_gathers_its_history(ledger: Ledger) -> None:
    key = ledger.identity.new_key("person")
    run = ledger.runs.start()
    ledger.records.upsert([contact("7", "ana@acme.com"), lead("00Q1", Email="ana@acme.com")], run_id=run)
    ledger.identity.link(key, "hubspot", "contacts", "7", "new")
    ledger.identity.link(key, "salesforce", "Lead", "00Q1", "email")
    ledger.decisions.record([decision(key, owner="sam.patel@northwind.example")])
    ledger.decisions.set_assignments([assignment(key, "sam.patel@northwind.example")])
    ledger.overrides.record(override(key, "lena.novak@northwind.example"))
    ledger.outbox.add_intents([owner_intent("00Q1", key=key)], run_id=run)
    ledger.quarantine.hold("hubspot", "contacts", "7", "bad phone", key=key)
    assert ledger.views.find_keys("Ana@Acme.com") == [key]
    assert ledger.views.find_keys("00Q1") == [key]
    assert ledger.views.find_keys(key) == [key]
    assert ledger.views.find_keys("nobody@acme.com") == []
    story = ledger.views.key_history(key)
    assert story.kind == "person"
    assert {r.id for r in story.records} == {"7", "00Q1"}
    assert story.decision is not None and story.decision.owner == "sam.patel@northwind.example"
    assert len(story.history) == 1 and story.assignment is not None
    assert [o.rep for o in story.overrides] == ["lena.novak@northwind.example"]
    assert [i.record_id for i in story.intents] == ["00Q1"]
    assert [q.reason for q in story.quarantine] == ["bad phone"]
    with pytest.raises(LedgerError, match="no person or account"):
        ledger.views.key_history("p:unknown")


def test_writes_by_record_groups_each_records_latest_writes(ledger: Ledger) -> None:
    ledger.outbox.record_writes(
        [
            WriteRow("salesforce", "Lead", "00Q1", "OwnerId", "005A", T0),
            WriteRow("salesforce", "Lead", "00Q1", "Syncd_Score__c", 78, T0),
            WriteRow("salesforce", "Lead", "00Q2", "OwnerId", "005B", T0),
            WriteRow("salesforce", "Contact", "00Q1", "OwnerId", "005C", T0),
        ]
    )
    ledger.outbox.record_writes(
        [WriteRow("salesforce", "Lead", "00Q1", "OwnerId", "005D", T0 + timedelta(1))]
    )
    found = ledger.outbox.writes_by_record("salesforce", "Lead", ["00Q1", "00Q2", "00Q3"])
    assert {rid: {f: w.value for f, w in fields.items()} for rid, fields in found.items()} == {
        "00Q1": {"OwnerId": "005D", "Syncd_Score__c": 78},
        "00Q2": {"OwnerId": "005B"},
    }
    assert found["00Q1"]["OwnerId"].at == T0 + timedelta(1)


def test_every_key_dirty_says_whether_each_key_of_a_kind_has_a_dirty_record(ledger: Ledger) -> None:
    first, second = ledger.identity.new_keys("person", 2)
    account = ledger.identity.new_key("account")
    ledger.records.upsert([lead("00Q1"), lead("00Q2"), RecordRow("hubspot", "companies", "900", {})])
    ledger.identity.link(first, "salesforce", "Lead", "00Q1", "new")
    ledger.identity.link(second, "salesforce", "Lead", "00Q2", "new")
    ledger.identity.link(account, "hubspot", "companies", "900", "new")
    assert ledger.records.every_key_dirty("person") and ledger.records.every_key_dirty("account")
    ledger.records.mark_clean([second])
    assert not ledger.records.every_key_dirty("person")
    assert ledger.records.every_key_dirty("account")
