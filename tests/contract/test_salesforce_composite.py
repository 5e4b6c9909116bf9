"""The Salesforce connector's wire behaviour against the sandbox: composite pulls, watermarks anchored to the
org's clock, field limits from describe, and one connection for many calls.

The sandbox runs on an injected clock here, so "a quiet period longer than the look-back" passes without
waiting and the org's time differs from this machine's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from connector_harness import SYSTEMS, Harness, Recorder

from syncd.connectors import Page, Watermark
from syncd.connectors import salesforce as salesforce_connector
from syncd.connectors.salesforce import SalesforceConnector
from syncd.sandbox.runtime import Sandbox, write_info

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
LOOKBACK = 60.0
OBJECTS = ("Lead", "Contact", "Account", "Opportunity")


@dataclass
class OrgClock:
    """The org's clock: moves only when a test says so."""

    now: float = START.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> OrgClock:
    return OrgClock()


@pytest.fixture
def org(tmp_path: Path, clock: OrgClock) -> Iterator[Harness]:
    with Sandbox(seed=1, persons=60, rate_limits=False, clock=clock, now=START) as sandbox:
        info = tmp_path / "info.json"
        write_info(info, sandbox.info())
        yield Harness("salesforce", sandbox, info, Recorder(), **SYSTEMS["salesforce"])


def sf_connector(org: Harness, **options: object) -> SalesforceConnector:
    connector = org.connector(**options)
    assert isinstance(connector, SalesforceConnector)
    return connector


def watermarks(connector: SalesforceConnector, objects: tuple[str, ...]) -> dict[str, str | None]:
    """Each object pulled in full once: its watermark afterwards."""
    out: dict[str, str | None] = {}
    for obj in objects:
        pages = list(connector.pull(obj))
        out[obj] = pages[-1].watermark if pages else None
    return out


def settled(
    connector: SalesforceConnector, objects: tuple[str, ...], clock: OrgClock
) -> dict[str, str | None]:
    """Watermarks of a connector that has pulled everything and then idled past the look-back once (that
    first idle pull re-reads what was stamped within the look-back of the last record seen)."""
    marks = watermarks(connector, objects)
    clock.advance(LOOKBACK + 1)
    for obj, page in connector.pull_many(marks):
        marks[obj] = page.watermark
    return marks


def by_object(pulled: Iterator[tuple[str, Page]]) -> dict[str, list[Page]]:
    out: dict[str, list[Page]] = {}
    for obj, page in pulled:
        out.setdefault(obj, []).append(page)
    return out


def ids(pages: list[Page]) -> set[str]:
    return {r.id for page in pages for r in page.records}


def org_update(org: Harness, obj: str, values: dict[str, object]) -> str:
    """A human edits one live record of ``obj`` through the client; its id."""
    table = org.sandbox.sf_store.table(obj).values()
    target = next(
        r["Id"] for r in table if not r.get("IsDeleted") and not r.get("IsConverted") and r.get("Name")
    )
    getattr(org.sandbox.salesforce_client("sam.patel@northwind.example"), obj).update(target, values)
    return str(target)


# ------------------------------------------------------------------------------------------ composite pulls


def test_first_pages_of_four_objects_take_one_composite_call(org: Harness, clock: OrgClock) -> None:
    connector = sf_connector(org)
    marks = watermarks(connector, OBJECTS)
    clock.advance(5)
    changed = {
        "Lead": org_update(org, "Lead", {"Title": "VP Sales"}),
        "Contact": org_update(org, "Contact", {"Title": "CFO"}),
        "Account": org_update(org, "Account", {"BillingCity": "Lyon"}),
        "Opportunity": org_update(org, "Opportunity", {"Amount": 1234.0}),
    }
    usage_before = org.sandbox.sf_app.usage()
    org.reset_counts()
    before = dict(connector.call_counts())
    pulled = by_object(connector.pull_many(marks))
    assert {obj: ids(pages) for obj, pages in pulled.items()} == {obj: {id_} for obj, id_ in changed.items()}
    assert org.kinds() == {"POST composite": 1}
    calls = {k: v - before.get(k, 0) for k, v in connector.call_counts().items() if v != before.get(k, 0)}
    assert calls == {"POST composite": 1}
    # The org counts the whole request as one API call (REST API Developer Guide, "Composite").
    assert org.sandbox.sf_app.usage() == usage_before + 1


def test_later_pages_follow_next_records_url_with_query_more(org: Harness, clock: OrgClock) -> None:
    connector = sf_connector(org, page_size=200)
    marks = watermarks(connector, ("Lead", "Account"))
    clock.advance(5)
    storm = set(org.insert_storm(450, datetime.fromtimestamp(clock.now, UTC)))
    org.reset_counts()
    pulled = by_object(connector.pull_many(marks))
    assert ids(pulled["Lead"]) == storm
    assert len(pulled["Lead"]) == 3  # pages of at most 200: one from /composite, two by query-more
    # Nothing changed on Account: one empty page whose watermark is the org's time of the query.
    assert [(p.records, p.watermark) for p in pulled["Account"]] == [
        ([], Watermark(datetime.fromtimestamp(int(clock.now), UTC), "").encode())
    ]
    assert org.kinds() == {"POST composite": 1, "GET query_more": 2}
    marks_after = [Watermark.decode(p.watermark) for p in pulled["Lead"]]
    assert marks_after == sorted(marks_after)


def test_more_than_five_objects_take_one_composite_call_per_five(org: Harness, clock: OrgClock) -> None:
    six = (*OBJECTS, "User", "Group")
    connector = sf_connector(org)
    marks = watermarks(connector, six)
    org.reset_counts()
    list(connector.pull_many(marks))
    assert org.kinds() == {"POST composite": 2}


# The pull stage's six objects: the four synced ones, the roster's Users and the account teams' members.
SIX = (*OBJECTS, "User", "AccountTeamMember")
HUMAN = "jack.miller@northwind.example"


def org_connector(org: Harness, clock: OrgClock) -> SalesforceConnector:
    """A connector whose own clock is the org's (as syncd's clock and the org's agree in production)."""
    return sf_connector(org, lookback_seconds=LOOKBACK, now=lambda: datetime.fromtimestamp(clock.now, UTC))


def add_member(org: Harness) -> str:
    """A human puts a rep on an account's team; the member's id."""
    sf = org.sandbox.salesforce_client(HUMAN)
    users = {
        str(r["Email"]).lower(): r["Id"]
        for r in sf.query_all("SELECT Id, Email FROM User WHERE IsActive = true")["records"]
    }
    account = sf.query("SELECT Id FROM Account ORDER BY Id LIMIT 1")["records"][0]["Id"]
    made = sf.AccountTeamMember.create(
        {
            "AccountId": account,
            "UserId": users["hannah.weber@northwind.example"],
            "TeamMemberRole": "Executive Sponsor",
        }
    )
    return str(made["id"])


def test_a_sixth_object_get_updated_reports_in_full_rides_the_same_composite_call(
    org: Harness, clock: OrgClock
) -> None:
    connector = org_connector(org, clock)
    marks = settled(connector, SIX, clock)
    clock.advance(5)
    member = add_member(org)
    lead = org_update(org, "Lead", {"Title": "COO"})
    # Get Updated covers whole minutes only (the API ignores seconds): a change is seen once its minute
    # has ended, at the latest by the next cycle, and the watermark never passes what was covered.
    clock.advance(60)
    org.reset_counts()
    pulled = by_object(connector.pull_many(marks))
    assert {obj: ids(pages) for obj, pages in pulled.items() if ids(pages)} == {
        "Lead": {lead},
        "AccountTeamMember": {member},
    }
    # One request for all six (Get Updated is an sObject resource, not one of the five queries), and one
    # query for the changed member's fields.
    assert org.kinds() == {"POST composite": 1, "GET query": 1}
    marks.update({obj: pages[-1].watermark for obj, pages in pulled.items()})
    # The next pull reads what is within the look-back once more (see the test of a burst below); then,
    # idle past the look-back and Get Updated's whole minutes: one request, nothing read.
    clock.advance(LOOKBACK + 150)
    marks.update({obj: page.watermark for obj, page in connector.pull_many(marks)})
    for _ in range(3):
        clock.advance(LOOKBACK + 150)
        org.reset_counts()
        pulled = by_object(connector.pull_many(marks))
        assert sum(len(p.records) for pages in pulled.values() for p in pages) == 0
        assert org.kinds() == {"POST composite": 1}
        moved = {obj: pages[-1].watermark for obj, pages in pulled.items()}
        assert set(moved) == set(SIX)  # every watermark follows the org's time, the riders' too
        assert all(Watermark.decode(moved[o]) > Watermark.decode(str(marks[o])) for o in SIX)
        marks.update(moved)


def test_a_riders_watermark_moves_only_with_its_last_page(
    org: Harness, clock: OrgClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(salesforce_connector, "READ_BATCH", 100)  # ids per read query: 2 pages of 141
    connector = org_connector(org, clock)
    marks = settled(connector, SIX, clock)
    clock.advance(5)
    members = {add_member(org)}
    members |= set(_more_members(org, 140))
    clock.advance(60)
    pulled = by_object(connector.pull_many(marks))["AccountTeamMember"]
    assert ids(pulled) == members
    assert [len(p.records) for p in pulled] == [100, len(members) - 100]
    # A crash after the first page is staged re-reads the whole window: the first page keeps the old mark.
    assert pulled[0].watermark == marks["AccountTeamMember"]
    assert Watermark.decode(pulled[-1].watermark) > Watermark.decode(str(marks["AccountTeamMember"]))


def _more_members(org: Harness, n: int) -> list[str]:
    """n new team members (distinct account and user pairs), written through sObject Collections."""
    sf = org.sandbox.salesforce_client()
    users = [r["Id"] for r in sf.query_all("SELECT Id FROM User WHERE IsActive = true")["records"]]
    taken = {
        (r["AccountId"], r["UserId"])
        for r in sf.query_all("SELECT AccountId, UserId FROM AccountTeamMember")["records"]
    }
    accounts = [r["Id"] for r in sf.query_all("SELECT Id FROM Account")["records"]]
    pairs = [(a, u) for a in accounts for u in users if (a, u) not in taken][:n]
    assert len(pairs) == n
    made: list[str] = []
    for i in range(0, n, 200):
        records = [
            {
                "attributes": {"type": "AccountTeamMember"},
                "AccountId": a,
                "UserId": u,
                "TeamMemberRole": "Executive Sponsor",
                "AccountAccessLevel": "Read",
            }
            for a, u in pairs[i : i + 200]
        ]
        result = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
        made += [str(r["id"]) for r in result]
    return made


def test_a_rider_whose_watermark_is_older_than_get_updated_answers_for_goes_as_a_query(
    org: Harness, clock: OrgClock
) -> None:
    connector = org_connector(org, clock)
    marks = settled(connector, SIX, clock)
    marks["AccountTeamMember"] = Watermark(START, "").encode()
    clock.advance(40 * 86_400)
    org.reset_counts()
    list(connector.pull_many(marks))
    assert org.kinds() == {"POST composite": 2}


def test_objects_without_a_watermark_are_pulled_in_full_on_their_own(org: Harness) -> None:
    connector = sf_connector(org)
    marks: dict[str, str | None] = {"Account": watermarks(connector, ("Account",))["Account"], "Lead": None}
    org.reset_counts()
    pulled = by_object(connector.pull_many(marks))
    live_leads = {r["Id"] for r in org.sandbox.sf_store.table("Lead").values() if not r.get("IsDeleted")}
    assert ids(pulled["Lead"]) == live_leads
    assert org.kinds()["POST composite"] == 1


def test_a_refused_query_fails_the_pull_after_the_other_objects(org: Harness, clock: OrgClock) -> None:
    connector = sf_connector(org, fields={"Account": ["Name", "No_Such_Field__c"]})
    marks = watermarks(connector, ("Lead",))
    marks["Account"] = Watermark(START, "").encode()
    clock.advance(5)
    lead = org_update(org, "Lead", {"Title": "Head of Ops"})
    seen: list[tuple[str, Page]] = []
    with pytest.raises(Exception, match="INVALID_FIELD"):
        for item in connector.pull_many(marks):
            seen.append(item)
    assert [(obj, {r.id for r in page.records}) for obj, page in seen] == [("Lead", {lead})]


# ------------------------------------------------------------------------------ watermarks on the org's clock


def test_an_idle_pull_after_a_bulk_write_and_a_quiet_period_reads_nothing(
    org: Harness, clock: OrgClock
) -> None:
    connector = sf_connector(org, lookback_seconds=LOOKBACK)
    mark = settled(connector, ("Lead",), clock)["Lead"]
    clock.advance(5)
    burst = {org_update(org, "Lead", {"Title": "Burst"})}
    burst |= set(org.insert_storm(40, datetime.fromtimestamp(clock.now, UTC)))
    clock.advance(LOOKBACK + 30)  # the quiet period, longer than the look-back
    first = list(connector.pull(org.object, since=mark))
    assert ids(first) == burst
    mark = first[-1].watermark
    for _ in range(3):  # every later idle cycle: one query, nothing re-read
        clock.advance(60)
        org.reset_counts()
        again = list(connector.pull(org.object, since=mark))
        assert ids(again) == set()
        assert org.kinds() == {"GET query_all": 1}
        mark = again[-1].watermark if again else mark


def test_a_burst_read_at_once_is_re_read_once_within_the_look_back_then_never(
    org: Harness, clock: OrgClock
) -> None:
    # Records stamped within the look-back of the last pull may still be committing (that is what the
    # look-back is for), so the first cycle after the burst's own reads them once more; none after that.
    connector = sf_connector(org, lookback_seconds=LOOKBACK)
    marks = settled(connector, OBJECTS, clock)
    clock.advance(5)
    burst = set(org.insert_storm(40, datetime.fromtimestamp(clock.now, UTC)))
    pulled = by_object(connector.pull_many(marks))
    assert {obj: ids(pages) for obj, pages in pulled.items() if ids(pages)} == {"Lead": burst}
    reads: list[int] = []
    for _ in range(4):
        marks.update({obj: pages[-1].watermark for obj, pages in pulled.items()})
        clock.advance(LOOKBACK + 30)
        org.reset_counts()
        pulled = by_object(connector.pull_many(marks))
        reads.append(sum(len(p.records) for pages in pulled.values() for p in pages))
        assert org.kinds() == {"POST composite": 1}
    assert reads == [len(burst), 0, 0, 0]


def test_an_idle_watermark_is_the_orgs_time_not_this_machines(org: Harness, clock: OrgClock) -> None:
    connector = sf_connector(org, lookback_seconds=LOOKBACK)
    mark = settled(connector, ("Account",), clock)["Account"]
    before = clock.now
    clock.advance(3600.75)  # the org's clock moves an hour; this machine's does not
    (page,) = list(connector.pull("Account", since=mark))
    assert page.records == []
    org_second = datetime.fromtimestamp(int(clock.now), UTC)
    assert Watermark.decode(page.watermark) == Watermark(org_second, "")
    assert org_second.timestamp() - before >= 3600  # the org's hour, read from its Date header


def test_a_pull_with_nothing_new_keeps_a_watermark_already_ahead(org: Harness, clock: OrgClock) -> None:
    connector = sf_connector(org, lookback_seconds=LOOKBACK)
    ahead = Watermark(datetime.fromtimestamp(clock.now + 7200, UTC), "").encode()
    assert list(connector.pull("Account", since=ahead)) == []


# ---------------------------------------------------------------------------------- field limits (describe)


def test_field_limits_come_from_describe_one_call_per_object(org: Harness) -> None:
    connector = sf_connector(org)
    org.reset_counts()
    limits = connector.field_limits(["Lead", "Account"])
    assert org.kinds() == {"GET describe": 2}
    lead = limits["Lead"]
    assert lead["LastName"].length == 80 and lead["Email"].length == 80 and lead["Company"].length == 255
    assert lead["NumberOfEmployees"].digits == 8
    assert (lead["AnnualRevenue"].precision, lead["AnnualRevenue"].scale) == (18, 0)
    assert lead["Status"].restricted and "Working - Contacted" in lead["Status"].picklist
    assert lead["Name"].updateable is False
    assert limits["Account"]["BillingCity"].length == 40


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        pytest.param("LastName", "x" * 81, "STRING_TOO_LONG", id="string-too-long"),
        pytest.param("LastName", "x" * 80, None, id="string-at-the-limit"),
        pytest.param("NumberOfEmployees", 10**8, "NUMBER_OUTSIDE_VALID_RANGE", id="int-too-large"),
        pytest.param("NumberOfEmployees", 99_999_999, None, id="int-at-the-limit"),
        pytest.param("AnnualRevenue", 1e20, "NUMBER_OUTSIDE_VALID_RANGE", id="currency-too-large"),
        pytest.param("Status", "Maybe", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", id="restricted-picklist"),
        pytest.param("Status", "nurturing", None, id="picklist-case-insensitive"),
        pytest.param("Email", "ada\x07@example.com", "INVALID_EMAIL_ADDRESS", id="email-control-char"),
        pytest.param("Email", "ada@example.com", None, id="email-fine"),
    ],
)
def test_a_limit_predicts_what_the_org_answers(
    org: Harness, field: str, value: object, code: str | None
) -> None:
    connector = sf_connector(org)
    limit = connector.field_limits(["Lead"])["Lead"][field]
    assert limit.violation(value) == code
    sf = org.sandbox.salesforce_client("sam.patel@northwind.example")
    result = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Lead"}, "LastName": "Limit", "Company": "Acme", field: value}
            ],
        },
    )
    answered = None if result[0]["success"] else result[0]["errors"][0]["statusCode"]
    assert answered == code


# ------------------------------------------------------------------------------------------- connections


def test_many_calls_through_one_connector_use_one_connection(org: Harness) -> None:
    connector = sf_connector(org)
    accepted_before = org.sandbox.sf_server.connections.accepted
    for _ in range(3):
        list(connector.pull("Account"))
    connector.field_limits(["Lead"])
    assert org.sandbox.sf_server.connections.accepted - accepted_before == 1


@pytest.mark.parametrize(
    ("field", "value", "fitted"),
    [
        pytest.param("LastName", "y" * 300, "y" * 80, id="text-cut"),
        pytest.param("NumberOfEmployees", 10**12, 99_999_999, id="int-clamped"),
        pytest.param("NumberOfEmployees", -(10**12), -99_999_999, id="negative-int-clamped"),
        pytest.param("AnnualRevenue", 1e20, math.nextafter(1e18, 0), id="currency-clamped"),
        pytest.param("Title", "Engineer", "Engineer", id="fits-already"),
    ],
)
def test_a_fitted_value_is_one_the_org_accepts(
    org: Harness, field: str, value: object, fitted: object
) -> None:
    limit = sf_connector(org).field_limits(["Lead"])["Lead"][field]
    assert limit.fit(value) == fitted and limit.violation(fitted) is None
    sf = org.sandbox.salesforce_client("sam.patel@northwind.example")
    created = sf.Lead.create({"LastName": "Fit", "Company": "Acme", field: fitted})
    assert sf.Lead.get(created["id"])[field] == fitted
