"""A first read of HubSpot (issue 9): contacts searched while companies and deals are listed, all at once, and
both systems pulled at once (``syncd.prefetch.interleaved``), over HTTPS with the unmodified clients.

The sandbox runs on an injected clock (its ``Date`` headers and write timestamps move only when a test says
so); syncd's look-back is 0 here, so a watermark alone must account for every change.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hubspot.crm.companies import SimplePublicObjectInput as CompanyInput
from hubspot.crm.deals import SimplePublicObjectInput as DealInput

from syncd.config import parse_config
from syncd.connectors import HubSpotConnector, Page, RawRecord, SalesforceConnector, connectors_from_config
from syncd.connectors import hubspot as hubspot_connector
from syncd.connectors.hubspot import DEAL_COMPANY_FIELD, FROM_START
from syncd.errors import FatalConnectorError
from syncd.prefetch import interleaved
from syncd.sandbox.runtime import Sandbox, write_info

PERSONS = 300
START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
FIRST = {"companies": None, "contacts": None, "deals": None}
SF_FIRST = {"Account": None, "Contact": None, "Lead": None, "Opportunity": None}


@dataclass
class Clock:
    """The sandbox's clock: moves only when told."""

    now: float = START.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Org:
    box: Sandbox
    clock: Clock
    info: Path

    def connectors(self, **hubspot: Any) -> tuple[SalesforceConnector, HubSpotConnector]:
        config = parse_config({"sandbox": {"info_file": str(self.info)}}, path=self.info.parent / "c.toml")
        fast = {"requests_per_10s": 100_000, "lookback_seconds": 0, "max_backoff": 1.0}
        return connectors_from_config(
            config,
            sleep=lambda seconds: None,
            salesforce=fast,
            hubspot={**fast, "search_per_second": 1_000, **hubspot},
        )

    def hubspot(self, **options: Any) -> HubSpotConnector:
        sf, hs = self.connectors(**options)
        sf.close()
        return hs

    def calls(self) -> dict[str, int]:
        return dict(self.box.hs_app.counters.snapshot()["by_kind"])

    def live(self, otype: str) -> set[str]:
        rows = self.box.hs_store.table(otype).values()
        return {str(r["id"]) for r in rows if not r.get("archived") and not r.get("mergedInto")}


@pytest.fixture
def org(tmp_path: Path) -> Iterator[Org]:
    clock = Clock()
    with Sandbox(seed=1, persons=PERSONS, rate_limits=False, clock=clock, now=START) as box:
        info = tmp_path / "info.json"
        write_info(info, box.info())
        yield Org(box, clock, info)


@pytest.fixture
def small_list_pages(monkeypatch: pytest.MonkeyPatch) -> int:
    """List pages of 10 records (HubSpot takes any ``limit`` up to 100), so a 300-person org lists its
    companies in several pages."""
    monkeypatch.setattr(hubspot_connector, "LIST_PAGE", 10)
    return 10


def by_object(pairs: Iterator[tuple[str, Page]]) -> dict[str, list[Page]]:
    out: dict[str, list[Page]] = {}
    for obj, page in pairs:
        out.setdefault(obj, []).append(page)
    return out


def records(pages: list[Page]) -> list[RawRecord]:
    return [r for page in pages for r in page.records]


def prefetch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("prefetch-")]


# ------------------------------------------------------------------------------------ (a) every record once


def test_a_first_read_lists_companies_and_deals_while_it_searches_contacts_every_record_once(
    org: Org,
) -> None:
    connector = org.hubspot()
    org.box.hs_app.counters.reset()
    pulled = by_object(connector.pull_many(FIRST))
    calls = org.calls()

    assert set(pulled) == set(FIRST)
    for obj, pages in pulled.items():
        ids = Counter(r.id for r in records(pages))
        assert set(ids) == org.live(obj), obj
        assert max(ids.values()) == 1, f"{obj}: {[i for i, n in ids.items() if n > 1]} read twice"
    # Companies and deals came by the list endpoint, contacts by search (one page of 200 at most per call).
    contacts = len(org.live("contacts"))
    assert calls["POST search"] == -(-contacts // 200)
    assert calls["GET list"] == -(-len(org.live("companies")) // 100) + -(-len(org.live("deals")) // 100)
    # Deals' companies: one associations read per 1,000 deals, not one per page.
    assert calls["POST assoc_batch_read"] == 1


def test_listed_records_carry_the_same_fields_as_searched_ones_deals_with_their_company(org: Org) -> None:
    """The list path against the search path (``pull``) over the same org state: every field equal,
    ``associatedcompanyid`` included."""
    connector = org.hubspot()
    listed = by_object(connector.pull_many(FIRST))
    for obj in ("companies", "deals"):
        searched = {r.id: r for r in records(list(connector.pull(obj)))}
        got = {r.id: r for r in records(listed[obj])}
        assert got.keys() == searched.keys()
        assert {i: r.fields for i, r in got.items()} == {i: r.fields for i, r in searched.items()}, obj
        assert {i: r.modified_at for i, r in got.items()} == {i: r.modified_at for i, r in searched.items()}
    companies = {
        str(a["from_id"]): str(a["to_id"])
        for a in org.box.hs_store.table("associations").values()
        if a["from_type"] == "deals"
    }
    deals = records(listed["deals"])
    assert any(r.fields[DEAL_COMPANY_FIELD] for r in deals)
    assert all(r.fields[DEAL_COMPANY_FIELD] == companies.get(r.id) for r in deals)


# ------------------------------------------------------------------------- (b) a change during or after it


def test_a_record_changed_during_or_after_the_first_read_is_found_by_the_next_delta_pull(
    org: Org, small_list_pages: int
) -> None:
    connector = org.hubspot()
    client = org.box.hubspot_client()
    marks: dict[str, str | None] = dict(FIRST)
    changed: dict[str, str] = {}
    for obj, page in connector.pull_many(FIRST):
        marks[obj] = page.watermark
        if obj == "companies" and "companies" not in changed:
            # Read already by this listing, now changed while the listing goes on (later pages answer later).
            org.clock.advance(5)
            company = page.records[0].id
            client.crm.companies.basic_api.update(company, CompanyInput(properties={"name": "Renamed Ltd"}))
            changed["companies"] = company
            org.clock.advance(5)
    # And one after the read.
    org.clock.advance(5)
    deal = sorted(org.live("deals"))[0]
    client.crm.deals.basic_api.update(deal, DealInput(properties={"dealname": "Renewal 2027"}))
    org.clock.advance(5)

    again = {
        obj: {r.id: r for r in records(pages)} for obj, pages in by_object(connector.pull_many(marks)).items()
    }

    assert again["companies"][changed["companies"]].fields["name"] == "Renamed Ltd"
    assert again["deals"][deal].fields["dealname"] == "Renewal 2027"
    assert again["deals"][deal].fields[DEAL_COMPANY_FIELD] is not None
    # A delta pull: searched, not listed again.
    assert len(again["companies"]) < len(org.live("companies"))


# ------------------------------------------------------------------------------ (c) killed during a listing


def test_a_run_killed_during_a_listing_lists_again_from_the_start(org: Org, small_list_pages: int) -> None:
    connector = org.hubspot()
    pairs = connector.pull_many({"companies": None, "deals": None})
    seen: list[str] = []
    mark: str | None = None
    for obj, page in pairs:
        if obj != "companies":
            continue
        seen += [r.id for r in page.records]
        mark = page.watermark
        if len(seen) >= 2 * small_list_pages:
            break
    pairs.close()  # the run dies here: what the ledger keeps is the last staged page's watermark
    assert mark == FROM_START, "a list page before the last says nothing is done"
    assert prefetch_threads() == [], "leaving the pull stops its workers"

    org.box.hs_app.counters.reset()
    again = records(by_object(connector.pull_many({"companies": mark}))["companies"])

    ids = Counter(r.id for r in again)
    assert set(ids) == org.live("companies") and max(ids.values()) == 1
    assert set(seen) < set(ids), "the records read before the kill are read again"
    assert org.calls().get("POST search", 0) == 0, "listed again, not searched from 1970"


# --------------------------------------------------------------------------- (d) both systems at once


def test_both_systems_pages_arrive_when_pulled_at_once(org: Org) -> None:
    sf, hs = org.connectors()
    sources = {"salesforce": sf.pull_many(SF_FIRST), "hubspot": hs.pull_many(FIRST)}
    got: dict[str, Counter[str]] = {"salesforce": Counter(), "hubspot": Counter()}
    with interleaved(sources) as pages:
        for system, (obj, page) in pages:
            got[system][obj] += len(page.records)
    sf_store = org.box.sf_store
    assert got["salesforce"] == {
        obj: sum(1 for r in sf_store.table(obj).values() if not r.get("IsDeleted")) for obj in SF_FIRST
    }
    assert got["hubspot"] == {obj: len(org.live(obj)) for obj in FIRST}
    assert prefetch_threads() == []


def test_an_error_of_one_system_is_raised_by_the_pull_and_stops_the_other(org: Org) -> None:
    sf, hs = org.connectors()
    # An object HubSpot does not have, searched after contacts while companies are listed: the HubSpot
    # connector's search worker fails, inside the HubSpot worker of the pull.
    first = {"contacts": None, "companies": None, "tickets": None}
    sources = {"salesforce": sf.pull_many(SF_FIRST), "hubspot": hs.pull_many(first)}
    staged = 0
    with pytest.raises(FatalConnectorError, match="tickets"), interleaved(sources) as pages:
        for _system, (_obj, page) in pages:
            staged += len(page.records)
    assert prefetch_threads() == [], "the Salesforce worker stopped too"
