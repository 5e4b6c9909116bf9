"""syncd's HubSpot connector against the sandbox's harsher, documented behaviours (issue 12), over HTTPS with
the unmodified hubspot-api-client: refused batches isolated, a lagging search index, watermarks anchored to
HubSpot's clock (issue 9), the archived listing on an interval, merges, deals with their companies.

Each test runs its own seeded sandbox on an injected clock (nothing sleeps) and counts calls with the
sandbox's own request counters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    PublicMergeInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)

from syncd.connectors import Change, Page, RawRecord, Watermark
from syncd.connectors.hubspot import DEAL_COMPANY_FIELD, HubSpotConnector
from syncd.sandbox.runtime import Sandbox

PERSONS = 300
# Isolating one bad input among 100: at most 1 + 2*ceil(log2 100) calls beyond the batch's own.
PER_BAD_INPUT = 1 + 2 * math.ceil(math.log2(100))


@dataclass
class Clock:
    """The sandbox's clock: moves only when told."""

    now: float

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Org:
    box: Sandbox
    clock: Clock

    def connector(self, **options: Any) -> HubSpotConnector:
        settings: dict[str, Any] = {
            "requests_per_10s": 100_000,
            "search_per_second": 1_000,
            "max_backoff": 1.0,
            "sleep": lambda seconds: None,
            **options,
        }
        return HubSpotConnector.connect(
            self.box.hs_app.tokens["integration"], host=self.box.hs_url, ca_file=self.box.ca_file, **settings
        )

    def calls(self) -> dict[str, int]:
        return dict(self.box.hs_app.counters.snapshot()["by_kind"])

    def reset_calls(self) -> None:
        self.box.hs_app.counters.reset()

    def props(self, otype: str, id_: str) -> dict[str, Any]:
        return dict(self.box.hs_store.get(otype, id_)["properties"])

    def owners(self) -> tuple[str, str]:
        """(an active owner id, an archived owner id)."""
        owners = list(self.box.hs_store.all("owners"))
        return (
            next(str(o["id"]) for o in owners if not o.get("archived")),
            next(str(o["id"]) for o in owners if o.get("archived")),
        )


def start(search_lag_ms: int = 0) -> Iterator[Org]:
    clock = Clock(time.time())
    with Sandbox(seed=1, persons=PERSONS, rate_limits=False, clock=clock, search_lag_ms=search_lag_ms) as box:
        yield Org(box, clock)


@pytest.fixture
def org() -> Iterator[Org]:
    yield from start()


@pytest.fixture
def lagging() -> Iterator[Org]:
    """A sandbox whose search index lags writes by 3 s, as `syncd sandbox serve` does by default."""
    yield from start(search_lag_ms=3000)


def records(pages: list[Page]) -> list[RawRecord]:
    return [r for page in pages for r in page.records]


def pull(connector: HubSpotConnector, obj: str, since: str | None = None) -> tuple[list[RawRecord], str]:
    pages = list(connector.pull(obj, since=since))
    return records(pages), pages[-1].watermark


def live_ids(org: Org, otype: str) -> list[str]:
    rows = org.box.hs_store.table(otype).values()
    return sorted((str(r["id"]) for r in rows if not r.get("archived") and not r.get("mergedInto")), key=int)


# ------------------------------------------------------------------------------------- refused batches


def test_a_refused_update_batch_writes_the_good_inputs_and_fails_the_bad_one_with_its_reason(
    org: Org,
) -> None:
    connector = org.connector()
    active, archived = org.owners()
    ids = live_ids(org, "contacts")[:100]
    bad = 37
    changes = [
        Change.update(i, {"hubspot_owner_id": archived if n == bad else active}) for n, i in enumerate(ids)
    ]
    org.reset_calls()
    results = connector.push("contacts", changes)
    assert [n for n, r in enumerate(results) if not r.ok] == [bad]
    assert results[bad].code == "INVALID_OWNER_ID" and results[bad].id == ids[bad]
    assert "not a valid owner id" in results[bad].message
    assert all(org.props("contacts", i)["hubspot_owner_id"] == active for n, i in enumerate(ids) if n != bad)
    assert org.props("contacts", ids[bad]).get("hubspot_owner_id") != archived
    calls = org.calls()["POST batch_update"]
    assert 1 < calls <= 1 + PER_BAD_INPUT


def test_a_refused_create_batch_isolates_a_conflict_and_an_invalid_value(org: Org) -> None:
    connector = org.connector()
    taken = org.props("contacts", live_ids(org, "contacts")[0])["email"]
    changes = [
        Change.create(f"key-{n}", {"email": f"new{n}@example.com", "firstname": f"N{n}"}) for n in range(100)
    ]
    changes[10] = Change.create("key-10", {"email": taken})
    changes[80] = Change.create("key-80", {"email": "x80@example.com", "lifecyclestage": "prospect"})
    before = org.box.hs_store.count("contacts")
    org.reset_calls()
    results = connector.push("contacts", changes)
    failed = {n: r for n, r in enumerate(results) if not r.ok}
    assert sorted(failed) == [10, 80]
    assert failed[10].code == "CONFLICT" and "Existing ID" in failed[10].message
    assert failed[80].code == "INVALID_OPTION" and failed[80].key == "key-80"
    assert all(r.created and r.id for n, r in enumerate(results) if n not in failed)
    assert org.box.hs_store.count("contacts") == before + 98
    calls = org.calls()["POST batch_create"]
    assert calls <= 1 + 2 * PER_BAD_INPUT


def test_an_update_of_a_record_archived_meanwhile_is_isolated(org: Org) -> None:
    connector = org.connector()
    ids = live_ids(org, "contacts")[:20]
    org.box.hubspot_client().crm.contacts.basic_api.archive(ids[5])
    results = connector.push("contacts", [Change.update(i, {"jobtitle": "VP"}) for i in ids])
    assert [n for n, r in enumerate(results) if not r.ok] == [5]
    assert results[5].code == "OBJECT_NOT_FOUND"
    assert all(org.props("contacts", i)["jobtitle"] == "VP" for n, i in enumerate(ids) if n != 5)


# ---------------------------------------------------------------------------------------- search lag


def write_during_pull(org: Org, connector: HubSpotConnector) -> tuple[str, str, str]:
    """Full pull of contacts; after its first page a rep creates one contact and edits one already pulled,
    and 2 s pass (less than the 3 s lag) before the pull goes on. Returns (created, edited, watermark)."""
    client = org.box.hubspot_client("sam.patel@northwind.example").crm.contacts.basic_api
    pages = connector.pull("contacts")
    first = next(pages)
    edited = first.records[5].id
    client.update(edited, SimplePublicObjectInput(properties={"jobtitle": "Edited mid-pull"}))
    created = client.create(
        SimplePublicObjectInputForCreate(properties={"email": "mid-pull@example.com", "firstname": "Mid"})
    ).id
    org.clock.advance(2.0)
    rest = list(pages)
    seen = {r.id for r in first.records} | {r.id for r in records(rest)}
    assert created not in seen  # the index had not caught up during the pull
    return created, edited, rest[-1].watermark if rest else first.watermark


def test_a_write_during_a_lagging_pull_is_read_by_the_next_pull(lagging: Org) -> None:
    connector = lagging.connector()  # the default look-back (60 s) covers the 3 s lag
    created, edited, mark = write_during_pull(lagging, connector)
    lagging.clock.advance(1.5)  # the index catches up
    again = {r.id: r for r in records(list(connector.pull("contacts", since=mark)))}
    assert created in again and again[created].fields["email"] == "mid-pull@example.com"
    assert again[edited].fields["jobtitle"] == "Edited mid-pull"


def test_without_a_look_back_covering_the_lag_the_write_would_be_lost(lagging: Org) -> None:
    """The negative control: the same scenario with no look-back loses the writes."""
    connector = lagging.connector(lookback_seconds=0)
    created, edited, mark = write_during_pull(lagging, connector)
    lagging.clock.advance(1.5)
    again = {r.id for r in records(list(connector.pull("contacts", since=mark)))}
    assert created not in again and edited not in again


def lost_response_push(org: Org, **options: Any) -> list[str]:
    """Creates whose first attempt 'wrote' one record and lost the response; the connector's waits pass on
    the sandbox's clock. Returns the ids holding key-0 afterwards."""
    # No emails: HubSpot's unique email would refuse a duplicate on its own, hiding the connector's part.
    changes = [Change.create(f"key-{n}", {"firstname": f"Idem{n}"}) for n in range(3)]
    org.box.hs_app.faults.update({"reset": 1.0})
    wrote: list[bool] = []

    def first_attempt_wrote(seconds: float) -> None:
        org.clock.advance(seconds)
        if not wrote:
            wrote.append(True)
            org.box.hs_app.faults.update({"reset": 0.0})
            org.connector().push("contacts", changes[:1])

    connector = org.connector(sleep=first_attempt_wrote, **options)
    results = connector.push("contacts", changes)
    assert all(r.ok for r in results)
    rows = org.box.hs_store.table("contacts").values()
    return [str(r["id"]) for r in rows if r["properties"].get("syncd_salesforce_id") == "key-0"]


def test_a_create_retried_after_a_lost_response_waits_for_the_index_and_makes_no_duplicate(
    lagging: Org,
) -> None:
    assert len(lost_response_push(lagging)) == 1


def test_without_waiting_for_the_index_the_retried_create_would_duplicate(lagging: Org) -> None:
    """The negative control: looking the keys up at once misses the lagging write."""
    assert len(lost_response_push(lagging, search_lag_seconds=0)) == 2


# ------------------------------------------------------------------------- watermarks on HubSpot's clock


def test_an_incremental_pull_with_nothing_new_moves_the_watermark_to_hubspots_time(org: Org) -> None:
    connector = org.connector()
    _, mark = pull(connector, "companies")
    org.clock.advance(120)
    pages = list(connector.pull("companies", since=mark))
    assert records(pages) == []
    moved = Watermark.decode(pages[-1].watermark)
    assert moved.at == datetime.fromtimestamp(int(org.clock.now), UTC)
    assert moved > Watermark.decode(mark)


def test_after_a_burst_and_a_quiet_look_back_an_idle_pull_is_one_call_per_object_and_reads_nothing(
    lagging: Org,
) -> None:
    org = lagging
    connector = org.connector()  # look-back 60 s, archived listing every 900 s
    marks = {obj: pull(connector, obj)[1] for obj in ("contacts", "companies", "deals")}
    batch = org.box.hubspot_client().crm.contacts.batch_api
    for start_at in range(0, 300, 100):
        batch.create(
            BatchInputSimplePublicObjectBatchInputForCreate(
                inputs=[
                    SimplePublicObjectBatchInputForCreate(properties={"email": f"burst{n}@example.com"})
                    for n in range(start_at, start_at + 100)
                ]
            )
        )
    org.clock.advance(61 + 3)  # quiet for longer than the look-back (and the lag)
    burst, marks["contacts"] = pull(connector, "contacts", marks["contacts"])
    assert len(burst) >= 300
    for obj in ("companies", "deals"):
        marks[obj] = pull(connector, obj, marks[obj])[1]
    for _ in range(3):  # idle cycles, a minute apart
        org.clock.advance(60)
        org.reset_calls()
        for obj in ("contacts", "companies", "deals"):
            pages = list(connector.pull(obj, since=marks[obj]))
            assert records(pages) == []
            marks[obj] = pages[-1].watermark
        assert sum(org.calls().values()) <= 3


def test_the_archived_listing_is_read_once_per_interval_and_catches_every_archive(org: Org) -> None:
    connector = org.connector(archived_every_seconds=900)
    _, mark = pull(connector, "contacts")
    gone = live_ids(org, "contacts")[7]
    org.box.hubspot_client().crm.contacts.basic_api.archive(gone)
    org.clock.advance(300)
    org.reset_calls()
    first = list(connector.pull("contacts", since=mark))
    assert org.calls().get("GET list", 0) == 0 and not any(r.deleted for r in records(first))
    org.clock.advance(601)
    org.reset_calls()
    second = list(connector.pull("contacts", since=first[-1].watermark))
    assert [r.id for r in records(second) if r.deleted] == [gone]
    assert org.calls()["GET list"] == 1
    org.reset_calls()
    list(connector.pull("contacts", since=second[-1].watermark))
    assert org.calls().get("GET list", 0) == 0


def test_a_recycle_bin_of_n_pages_is_listed_every_n_intervals(org: Org) -> None:
    connector = org.connector(archived_every_seconds=900)
    _, mark = pull(connector, "contacts")
    api = org.box.hubspot_client().crm.contacts.basic_api
    for gone in live_ids(org, "contacts")[:150]:  # 150 archived: a listing of two pages of 100
        api.archive(gone)
    lists: list[int] = []
    for _ in range(8):  # every 901 s: a listing is due at most every other time
        org.clock.advance(901)
        org.reset_calls()
        pages = list(connector.pull("contacts", since=mark))
        mark = pages[-1].watermark
        lists.append(org.calls().get("GET list", 0))
    # The first listing takes 2 pages, so the next waits 2 intervals: at most 1 call per interval on average.
    assert lists == [2, 0, 2, 0, 2, 0, 2, 0]


# ---------------------------------------------------------------------------------------------- merges


def test_a_pulled_survivor_carries_the_ids_merged_into_it(org: Org) -> None:
    connector = org.connector()
    _, mark = pull(connector, "contacts")
    keep, lose = live_ids(org, "contacts")[:2]
    org.clock.advance(1)
    org.box.hubspot_client().crm.contacts.basic_api.merge(
        PublicMergeInput(primary_object_id=keep, object_id_to_merge=lose)
    )
    again = {r.id: r for r in records(list(connector.pull("contacts", since=mark)))}
    assert again[keep].fields["hs_merged_object_ids"] == lose
    assert lose not in again  # neither live nor archived: the survivor names it


# ----------------------------------------------------------------------------------------------- deals


def test_deals_are_pulled_with_their_company_one_associations_call_per_page(org: Org) -> None:
    connector = org.connector()
    org.reset_calls()
    pages = list(connector.pull("deals"))
    deals = records(pages)
    assert {r.id for r in deals} == set(live_ids(org, "deals")) and deals
    companies = {
        str(a["from_id"]): str(a["to_id"])
        for a in org.box.hs_store.table("associations").values()
        if a["from_type"] == "deals"
    }
    assert all(r.fields[DEAL_COMPANY_FIELD] == companies.get(r.id) for r in deals)
    assert all(r.fields["dealstage"] and r.fields["hs_is_closed"] in ("true", "false") for r in deals)
    calls = org.calls()
    assert calls["POST assoc_batch_read"] == calls["POST search"] == sum(1 for p in pages if p.records)


def test_an_edited_deal_is_pulled_incrementally_with_its_company(org: Org) -> None:
    connector = org.connector()
    _, mark = pull(connector, "deals")
    deal = next(i for i in live_ids(org, "deals") if org.props("deals", i)["dealstage"] != "closedwon")
    org.clock.advance(1)
    from hubspot.crm.deals import SimplePublicObjectInput as DealInput

    org.box.hubspot_client().crm.deals.basic_api.update(
        deal, DealInput(properties={"dealstage": "closedwon"})
    )
    again = {r.id: r for r in records(list(connector.pull("deals", since=mark)))}
    assert again[deal].fields["hs_is_closed_won"] == "true"
    assert again[deal].fields[DEAL_COMPANY_FIELD] is not None


# ------------------------------------------------------------------------------------------------ field limits


@pytest.mark.parametrize(
    ("prop", "value", "predicted", "answered"),
    [
        pytest.param(
            "firstname", "x" * 70_000, "STRING_TOO_LONG", "INVALID_STRING_LENGTH", id="text-too-long"
        ),
        pytest.param(
            "lifecyclestage",
            "hotlead",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "INVALID_OPTION",
            id="option",
        ),
        pytest.param("email", "not an address", "INVALID_EMAIL", "INVALID_EMAIL", id="email"),
        pytest.param("firstname", "Ada", None, None, id="fits"),
    ],
)
def test_property_limits_predict_what_hubspot_refuses(
    org: Org, prop: str, value: str, predicted: str | None, answered: str | None
) -> None:
    connector = org.connector()
    org.reset_calls()
    limits = connector.field_limits(["contacts"])["contacts"]
    assert sum(org.calls().values()) == 1  # one properties listing for the object
    assert limits[prop].violation(value) == predicted

    contact = live_ids(org, "contacts")[0]
    (result,) = connector.push("contacts", [Change.update(contact, {prop: value})])
    if answered is None:
        assert result.ok
    else:
        assert not result.ok and answered in f"{result.code} {result.message}"


def test_a_value_cut_to_the_limit_is_accepted(org: Org) -> None:
    connector = org.connector()
    limit = connector.field_limits(["contacts"])["contacts"]["firstname"]
    fitted = limit.fit("y" * 70_000)
    assert limit.violation(fitted) is None and len(fitted) == 65_536
    (result,) = connector.push(
        "contacts", [Change.update(live_ids(org, "contacts")[0], {"firstname": fitted})]
    )
    assert result.ok
