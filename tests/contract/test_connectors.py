"""The connector contract, run against both connectors, each against its own sandbox server over HTTPS.

Every scenario checks the final state in the sandbox's store, not only what the connector returned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from connector_harness import PERSONS, Harness, wait_a_tick

from syncd.connectors import Change, Connector, Page, RawRecord, Watermark
from syncd.errors import AuthError, BudgetExhausted
from syncd.sandbox.runtime import Sandbox, write_info


def records(pages: Iterable[Page]) -> list[RawRecord]:
    return [r for page in pages for r in page.records]


def full_pull(connector: Connector, obj: str) -> tuple[list[RawRecord], str]:
    pages = list(connector.pull(obj))
    return records(pages), pages[-1].watermark


# ------------------------------------------------------------------------------------------------- pulls


def test_full_pull_streams_every_live_record_in_order(harness: Harness) -> None:
    connector = harness.connector()
    pages = list(connector.pull(harness.object))
    pulled = records(pages)
    assert {r.id for r in pulled} == harness.live_ids()
    assert len(pulled) == len({r.id for r in pulled})
    assert all(r.system == harness.system and r.object == harness.object and not r.deleted for r in pulled)
    assert all(r.modified_at.tzinfo is not None for r in pulled)
    assert [r.modified_at for r in pulled] == sorted(r.modified_at for r in pulled)
    marks = [Watermark.decode(p.watermark) for p in pages]
    assert marks == sorted(marks)
    # Values are the system's own, field for field.
    sample = pulled[len(pulled) // 2]
    assert sample.fields[harness.text_field] == harness.value(sample.id, harness.text_field)


def test_incremental_pull_returns_exactly_what_changed(harness: Harness) -> None:
    connector = harness.connector()
    pulled, mark = full_pull(connector, harness.object)
    wait_a_tick()
    editable = set(harness.editable_ids())
    candidates = [r.id for r in pulled if r.id in editable]
    changed = [candidates[3], candidates[10], candidates[-1]]
    for id_ in changed:
        harness.human_update(id_, "Chief Revenue Officer")
    created = harness.human_create(1)
    again = records(connector.pull(harness.object, since=mark))
    assert {r.id for r in again} == {*changed, created}
    for record in again:
        assert record.fields[harness.text_field] == harness.value(record.id, harness.text_field)
    # Nothing new since: an incremental pull from the last page's watermark is empty.
    last = list(connector.pull(harness.object, since=mark))[-1].watermark
    assert records(connector.pull(harness.object, since=last)) == []


def test_a_pull_resumed_from_any_page_misses_nothing(harness: Harness) -> None:
    connector = harness.connector(**({"page_size": 200} if harness.system == "salesforce" else {}))
    pages = list(connector.pull(harness.object))
    assert len(pages) >= 2
    seen = {r.id for r in pages[0].records}
    rest = records(connector.pull(harness.object, since=pages[0].watermark))
    assert seen | {r.id for r in rest} == harness.live_ids()


def test_look_back_overlap_delivers_recent_records_again(harness: Harness) -> None:
    connector = harness.connector(lookback_seconds=3600 * 24 * 3650)
    pulled, mark = full_pull(connector, harness.object)
    again = records(connector.pull(harness.object, since=mark))
    assert {r.id for r in again} >= {pulled[-1].id}


def test_same_timestamp_storm_is_pulled_whole(harness: Harness) -> None:
    """A bulk import gives thousands of records one timestamp: past HubSpot's 10,000-result search cap."""
    count = 10_300 if harness.system == "hubspot" else 2_500
    at = datetime.now(UTC).replace(microsecond=123_000) - timedelta(seconds=5)
    storm = set(harness.insert_storm(count, at))
    connector = harness.connector(**({"page_size": 500} if harness.system == "salesforce" else {}))
    pages = list(connector.pull(harness.object))
    pulled = {r.id for r in records(pages)}
    assert storm <= pulled
    assert pulled == harness.live_ids()
    # Resuming from a watermark in the middle of the storm still yields all of the rest.
    middle = next(p for p in pages if any(r.id in storm for r in p.records))
    assert Watermark.decode(middle.watermark).at == at
    rest = {r.id for r in records(connector.pull(harness.object, since=middle.watermark))}
    assert storm - {r.id for r in middle.records} <= rest | {
        r.id for p in pages[: pages.index(middle)] for r in p.records
    }


def test_deletes_and_archives_come_as_deleted_records(harness: Harness) -> None:
    connector = harness.connector()
    pulled, mark = full_pull(connector, harness.object)
    wait_a_tick()
    gone = [pulled[0].id, pulled[5].id]
    for id_ in gone:
        harness.human_delete(id_)
    again = records(connector.pull(harness.object, since=mark))
    deleted = {r.id for r in again if r.deleted}
    assert deleted == set(gone)
    assert not set(gone) & harness.live_ids()


def test_read_by_ids_in_batches(harness: Harness) -> None:
    connector = harness.connector()
    ids = sorted(harness.live_ids())[:250]
    batches = list(
        connector.read(
            harness.object, [*ids, "00Q8d0000009zzzAAA" if harness.system == "salesforce" else "999999999"]
        )
    )
    assert len(batches) == 2 if harness.system == "salesforce" else len(batches) == 3
    got = {r.id: r for batch in batches for r in batch}
    assert set(got) == set(ids)
    assert got[ids[0]].fields[harness.text_field] == harness.value(ids[0], harness.text_field)


def test_list_reps_flags_inactive_and_archived(harness: Harness) -> None:
    reps = harness.connector().list_reps()
    by_email = {r.email: r for r in reps if r.email}
    assert by_email["jack.miller@northwind.example"].active
    assert not by_email["olivia.davis@northwind.example"].active
    assert not by_email["grace.kim@northwind.example"].active
    if harness.system == "salesforce":
        queues = {r.name for r in reps if r.kind == "queue"}
        assert queues == {"Unassigned Leads", "EMEA Lead Queue"}
    else:
        assert all(r.kind == "owner" and r.user_id for r in reps)


# ------------------------------------------------------------------------------------------------ pushes


def test_batched_push_with_partial_failures(harness: Harness) -> None:
    harness.insert_storm(300, datetime.now(UTC) - timedelta(seconds=5))
    connector = harness.connector()
    ids = harness.editable_ids()[:450]
    active, inactive, code = harness.owners()
    # Records already owned by the inactive rep would not change, so no refusal: pick others.
    movable = [n for n, id_ in enumerate(ids) if harness.value(id_, harness.owner_field) != inactive]
    bad = {movable[3], movable[len(movable) // 2], movable[-1]}
    changes = [
        Change.update(id_, {harness.owner_field: inactive if n in bad else active})
        for n, id_ in enumerate(ids)
    ]
    before = {id_: harness.value(id_, harness.owner_field) for id_ in ids}
    harness.reset_counts()
    results = connector.push(harness.object, changes)
    assert len(results) == len(changes)
    assert [n for n, r in enumerate(results) if not r.ok] == sorted(bad)
    assert all(results[n].code == code and results[n].id == ids[n] for n in bad)
    for n, id_ in enumerate(ids):
        expected = before[id_] if n in bad else active
        assert harness.value(id_, harness.owner_field) == expected
    limit = 200 if harness.system == "salesforce" else 100
    calls = sum(connector.call_counts().values())
    if harness.system == "salesforce":
        assert calls == -(-450 // limit)
    else:
        # HubSpot refuses a batch whole: each bad input is isolated by halving, 1 + 2*ceil(log2 100) calls at most.
        assert -(-450 // limit) < calls <= -(-450 // limit) + len(bad) * (1 + 2 * math.ceil(math.log2(limit)))


def test_creates_are_idempotent_when_a_response_is_lost(harness: Harness) -> None:
    """The first attempt fails on the wire after 'writing'; the retry must not make a duplicate."""
    connector = harness.connector()
    key_field = "Syncd_HubSpot_Id__c" if harness.system == "salesforce" else "syncd_salesforce_id"
    fields = (
        [{"LastName": f"Key{n}", "Company": "Idem"} for n in range(3)]
        if harness.system == "salesforce"
        else [{"email": f"idem{n}@idem.example"} for n in range(3)]
    )
    changes = [Change.create(f"key-{n}", f) for n, f in enumerate(fields)]
    harness.faults(reset=1.0)

    def first_attempt_wrote(_: float) -> None:
        # What a lost response hides: the first record was written before the connection dropped.
        harness.faults(reset=0.0)
        harness.sleep.hooks.clear()
        Connector.push(harness.connector(), harness.object, changes[:1])

    harness.sleep.hooks.append(first_attempt_wrote)
    results = connector.push(harness.object, changes)
    assert all(r.ok for r in results)
    for n, result in enumerate(results):
        assert harness.records_with(key_field, f"key-{n}") == [result.id]
    # Pushing the same creates again never adds records either (Salesforce upserts on the key).
    if harness.system == "salesforce":
        again = connector.push(harness.object, changes)
        assert [r.id for r in again] == [r.id for r in results] and not any(r.created for r in again)
        assert all(len(harness.records_with(key_field, f"key-{n}")) == 1 for n in range(3))


# ------------------------------------------------------------------------------------------ faults, limits


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"status_429": 0.3, "retry_after": 2}, id="429-storm"),
        pytest.param({"status_503": 0.25}, id="5xx"),
        pytest.param({"reset": 0.15, "timeout": 0.1, "hang_seconds": 0.05}, id="timeouts-and-resets"),
    ],
)
def test_faults_are_retried_until_the_work_is_done(harness: Harness, faults: dict[str, float]) -> None:
    connector = harness.connector(max_attempts=12)
    harness.faults(**faults)
    pulled = records(connector.pull(harness.object))
    assert {r.id for r in pulled} == harness.live_ids()
    ids = harness.editable_ids()[:300]
    results = connector.push(
        harness.object, [Change.update(i, {harness.text_field: "Head of Ops"}) for i in ids]
    )
    assert all(r.ok for r in results)
    assert all(harness.value(i, harness.text_field) == "Head of Ops" for i in ids)
    statuses = harness.statuses()
    failed = sum(n for s, n in statuses.items() if s != "200")
    assert harness.sleep.delays, "faults were injected, so some call must have been retried"
    if "retry_after" in faults:
        # Retry-After is honoured exactly (Salesforce answers an injected 429 as a 503 with the header too).
        assert set(harness.sleep.delays) == {2.0}
        assert failed == len(harness.sleep.delays)
    else:
        assert all(0 < d <= 5.0 for d in harness.sleep.delays)


def test_auth_errors_stop_at_once_with_a_clear_message(harness: Harness) -> None:
    info = harness.info_file.read_text().replace(
        harness.sandbox.sf_app.tokens["integration"]
        if harness.system == "salesforce"
        else harness.sandbox.hs_app.tokens["integration"],
        "revoked-token",
    )
    harness.info_file.write_text(info)
    connector = harness.connector()
    with pytest.raises(AuthError) as error:
        list(connector.pull(harness.object))
    assert "revoked-token" not in str(error.value)
    assert ("access_token_env" if harness.system == "salesforce" else "token_env") in str(error.value)
    assert sum(connector.call_counts().values()) == 1
    assert harness.sleep.delays == []


def test_budget_reached_stops_cleanly_and_the_pull_resumes_later(harness: Harness) -> None:
    harness.insert_storm(600, datetime.now(UTC) - timedelta(seconds=5))
    today = [datetime(2026, 3, 2, 12, 0, tzinfo=UTC)]
    small = {"page_size": 200} if harness.system == "salesforce" else {}
    # A share that allows a few calls a day (of the configured allowance, or of the one the server reports).
    connector = harness.connector(daily_allowance=10_000, daily_share=0.0003, now=lambda: today[0], **small)
    seen: set[str] = set()
    mark: str | None = None  # what the cycle stores after each processed page
    days = 0
    while True:
        try:
            for page in connector.pull(harness.object, since=mark):
                seen.update(r.id for r in page.records)
                mark = page.watermark
            break
        except BudgetExhausted as stop:
            assert "budget reached" in str(stop)
            state = connector.budget_state()
            assert state.exhausted and state.spent == state.cap
            assert stop.retry_after is not None and 0 < stop.retry_after <= 86400
            today[0] += timedelta(days=1)
            days += 1
            assert days < 10, "the pull makes no progress from day to day"
    assert days >= 1
    assert seen == harness.live_ids()


def test_the_orgs_whole_allowance_is_never_spent(harness: Harness) -> None:
    """Stop at org_ceiling of the allowance the system reports, before the system itself refuses calls."""
    if harness.system == "salesforce":
        # The org (all apps) has used 995 of 1,000 calls: one answer tells syncd, and it stops.
        harness.control("PUT", "limits", {"rate_limits": True, "daily_limit": 1000, "usage": 995})
        expected_calls = 1
    else:
        harness.control("PUT", "limits", {"rate_limits": True, "daily_limit": 3, "usage": 0})
        expected_calls = 3
    connector = harness.connector(org_ceiling=0.9, daily_share=1.0)
    with pytest.raises(BudgetExhausted, match="budget reached: the org has used"):
        for _ in range(3):
            list(connector.pull(harness.object))
    assert sum(connector.call_counts().values()) == expected_calls
    assert not any(status in harness.statuses() for status in ("403", "429"))


# ---------------------------------------------------------------------------------------- HubSpot pacing


class FakeTime:
    """One clock for the sandbox and the connector; sleeping moves it forward."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.0
        self.slept = 0.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_hubspot_pacing_follows_the_rate_limit_headers(tmp_path: Path) -> None:
    """Configured for 100 per 10 s but the portal allows 10: the connector slows down and never gets a 429."""
    fake = FakeTime()
    with Sandbox(
        seed=1, persons=PERSONS, rate_limits=True, clock=fake.time, hubspot_options={"ten_second_limit": 10}
    ) as sandbox:
        info = tmp_path / "info.json"
        write_info(info, sandbox.info())
        harness = Harness("hubspot", sandbox, info, None, "contacts", "jobtitle", "hubspot_owner_id")  # type: ignore[arg-type]
        connector = harness.connector(requests_per_10s=100, clock=fake.time, sleep=fake.sleep)
        ids = harness.editable_ids()[:250]
        harness.reset_counts()
        for _ in range(4):
            results = connector.push("contacts", [Change.update(i, {"jobtitle": f"VP {_}"}) for i in ids])
            assert all(r.ok for r in results)
        statuses = harness.statuses()
        assert "429" not in statuses
        assert statuses == {"200": 12}
        # 12 calls at 10 per 10 s: the last two had to wait for the first window to pass.
        assert 10.0 <= fake.slept < 11.0
        assert connector.budget_state().requests_per_10s == 10
        assert all(harness.value(i, "jobtitle") == "VP 3" for i in ids)
