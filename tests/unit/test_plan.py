"""The planner, as data in and data out: decisions + records as they are -> the writes that make them agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.core.link import Group, group
from syncd.core.plan import Action, FieldChange, Tally, followup, plan_key
from syncd.core.rules import load_ruleset
from syncd.core.types import Decision, Intent, Queue, RecordRow, Rep, RepDirectory, WriteRow

RULES = load_ruleset(Path(__file__).resolve().parents[2] / "mappings")
MAPPING = RULES.mapping
T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
JACK, SAM = "jack.miller@northwind.example", "sam.patel@northwind.example"
GRACE = "grace.kim@northwind.example"  # left the company: her HubSpot owner is archived
DIRECTORY = RepDirectory(
    [
        Rep(JACK, "Jack", salesforce_id="005J", hubspot_owner_id="41J"),
        Rep(SAM, "Sam", salesforce_id="005S", hubspot_owner_id="41S"),
        Rep(GRACE, "Grace", salesforce_id="005G", hubspot_owner_id="41G", active=False),
    ],
    [Queue("Unassigned Leads", "00GU", "Unassigned_Leads")],
)


def decision(**kw: Any) -> Decision:
    values: dict[str, Any] = {
        "key": "p:1",
        "kind": "person",
        "stage": "sales_qualified",
        "team": "sales",
        "owner": JACK,
        "rule": "AE North America",
        "trace": (),
        "score": 42,
    }
    values.update(kw)
    return Decision(**values)


def lead(id_: str = "00Q1", **fields: Any) -> RecordRow:
    data = {
        "Id": id_,
        "OwnerId": "005J",
        "Syncd_Stage__c": "sales_qualified",
        "Status": "Working - Contacted",
        "Syncd_Score__c": 42.0,
        "Syncd_HubSpot_Id__c": "7",
        "Email": "ada@acme.com",
        "Country": "US",
        "LastName": "Lovelace",
        "Company": "Acme",
        "IsConverted": False,
        "CreatedDate": "2024-01-01T00:00:00.000+0000",
    }
    data.update(fields)
    return RecordRow("salesforce", "Lead", id_, data, seen_at=T0)


def contact(id_: str = "7", **props: Any) -> RecordRow:
    data = {
        "email": "ada@acme.com",
        "hubspot_owner_id": "41J",
        "lifecyclestage": "salesqualifiedlead",
        "syncd_score": "42",
        "syncd_salesforce_id": "00Q1",
        "country": "US",
        "createdate": "2023-12-01T00:00:00Z",
    }
    data.update(props)
    return RecordRow("hubspot", "contacts", id_, data, seen_at=T0)


def plan(d: Decision, *records: RecordRow, merged: dict[str, Any] | None = None, **kw: Any) -> list[Action]:
    g = group(d.key, d.kind, records)
    return plan_key(d, g, MAPPING, DIRECTORY, merged=merged or {}, **kw)


def fields_of(actions: list[Action]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(a.object, a.record_id or "new"): a.fields for a in actions}


def test_records_that_already_show_the_decision_need_nothing() -> None:
    assert plan(decision(), lead(), contact()) == []


@pytest.mark.parametrize(
    ("d", "lead_fields", "contact_props", "expected"),
    [
        pytest.param(
            decision(owner=SAM),
            {},
            {},
            {("Lead", "00Q1"): {"OwnerId": "005S"}, ("contacts", "7"): {"hubspot_owner_id": "41S"}},
            id="new-owner-both-systems",
        ),
        pytest.param(
            decision(stage="marketing_qualified"),
            {},
            {"lifecyclestage": "lead"},
            {
                ("Lead", "00Q1"): {"Syncd_Stage__c": "marketing_qualified", "Status": "Open - Not Contacted"},
                ("contacts", "7"): {"lifecyclestage": "marketingqualifiedlead"},
            },
            id="stage-with-lead-status",
        ),
        pytest.param(
            decision(score=50),
            {"Syncd_Score__c": None},
            {},
            {("Lead", "00Q1"): {"Syncd_Score__c": 50}, ("contacts", "7"): {"syncd_score": "50"}},
            id="score",
        ),
        pytest.param(
            decision(owner="queue:Unassigned Leads"),
            {},
            {},
            {("Lead", "00Q1"): {"OwnerId": "00GU"}},
            id="queue-owner-only-where-it-exists",
        ),
        pytest.param(
            decision(owner=None, stage=None, score=None),
            {"OwnerId": "005S"},
            {"lifecyclestage": "lead"},
            {},
            id="nothing-decided-nothing-written",
        ),
        pytest.param(
            decision(stage="customer"),
            {"Syncd_Stage__c": "customer"},
            {"lifecyclestage": "evangelist"},
            {},
            id="evangelist-already-is-a-customer",
        ),
        pytest.param(
            decision(),
            {"Syncd_HubSpot_Id__c": None},
            {"syncd_salesforce_id": None},
            {
                ("Lead", "00Q1"): {"Syncd_HubSpot_Id__c": "7"},
                ("contacts", "7"): {"syncd_salesforce_id": "00Q1"},
            },
            id="each-stores-the-other-id",
        ),
    ],
)
def test_writes_per_record(
    d: Decision, lead_fields: dict[str, Any], contact_props: dict[str, Any], expected: dict[Any, Any]
) -> None:
    assert fields_of(plan(d, lead(**lead_fields), contact(**contact_props))) == expected


def test_kinds_and_rep_labels_say_what_each_write_is_for() -> None:
    (sf,) = [a for a in plan(decision(owner=SAM, score=10), lead()) if a.system == "salesforce"]
    kinds = {c.field: c.kind for c in sf.changes}
    assert kinds == {"OwnerId": "owner", "Syncd_Score__c": "score"}
    owner = next(c for c in sf.changes if c.kind == "owner")
    assert (owner.old_label, owner.new_label) == (JACK, SAM)
    assert sf.kinds == ("owner", "score")
    assert "owner sam.patel@northwind.example" in sf.reason


def test_blank_fields_are_filled_per_the_mapping_and_never_overwritten() -> None:
    merged = {"country": "DE", "employees": 250, "email": "ada@acme.com"}
    filled = fields_of(plan(decision(), lead(Country=None), contact(), merged=merged))
    assert filled == {("Lead", "00Q1"): {"Country": "DE", "NumberOfEmployees": 250}}
    kept = fields_of(plan(decision(), lead(Country="US", NumberOfEmployees=10), contact(), merged=merged))
    assert kept == {}


def test_own_write_newer_than_the_pulled_copy_is_not_sent_again() -> None:
    d = decision(owner=SAM)
    key = ("salesforce", "Lead", "00Q1", "OwnerId")
    fresh = {key: WriteRow(*key, "005S", T0 + timedelta(seconds=5))}
    stale = {key: WriteRow(*key, "005S", T0 - timedelta(days=1))}
    assert ("Lead", "00Q1") not in fields_of(plan(d, lead(), last_writes=fresh))
    assert fields_of(plan(d, lead(), last_writes=stale))[("Lead", "00Q1")] == {"OwnerId": "005S"}


def test_held_deleted_and_converted_records_are_left_alone() -> None:
    d = decision(owner=SAM)
    assert plan(d, lead(), held={("salesforce", "Lead", "00Q1")}) == []
    assert plan(d, RecordRow("salesforce", "Lead", "00Q1", lead().data, deleted=True)) == []
    assert plan(d, lead(IsConverted=True)) == []


def test_duplicate_lead_gets_the_decision_but_not_the_cross_id() -> None:
    dup = lead("00Q2", Syncd_HubSpot_Id__c=None, OwnerId="005S", CreatedDate="2024-06-01T00:00:00.000+0000")
    out = fields_of(plan(decision(), lead(), dup, contact()))
    assert out == {("Lead", "00Q2"): {"OwnerId": "005J"}}


def test_hubspot_stage_moved_back_is_cleared_first() -> None:
    actions = plan(decision(stage="lead", team="marketing"), contact(lifecyclestage="salesqualifiedlead"))
    clear, move = actions
    assert clear.prerequisite and clear.fields == {"lifecyclestage": ""}
    assert not move.prerequisite and move.fields["lifecyclestage"] == "lead"
    tally = Tally()
    for a in actions:
        tally.add(a)
    assert tally.count("hubspot", "stage") == 1


def test_hubspot_only_person_handed_to_sales_gets_one_lead_create() -> None:
    d = decision(create_salesforce_lead=True, owner=SAM, stage="marketing_qualified", score=61)
    merged = {"email": "ada@acme.com", "first_name": "Ada", "country": "GB"}
    (update, create) = plan(d, contact(syncd_salesforce_id=None, lifecyclestage="lead"), merged=merged)
    assert update.system == "hubspot"
    assert create.is_create and create.create_key == "7" and create.record_id is None
    assert create.fields == {
        "OwnerId": "005S",
        "Syncd_Stage__c": "marketing_qualified",
        "Status": "Open - Not Contacted",
        "Syncd_Score__c": 61,
        "Email": "ada@acme.com",
        "FirstName": "Ada",
        "Country": "GB",
        "Company": "[not provided]",
        "LastName": "[not provided]",
        "Syncd_HubSpot_Id__c": "7",
    }
    assert create.kinds == ("create",)
    intent = create.intent("i1")
    assert (intent.id, intent.create_key, intent.key) == ("i1", "7", "p:1")


@pytest.mark.parametrize(
    ("records", "held"),
    [
        pytest.param((lead(), contact()), set(), id="already-in-salesforce"),
        pytest.param((lead(IsConverted=True), contact()), set(), id="converted-lead-counts"),
        pytest.param((contact(),), {("hubspot", "contacts", "7")}, id="contact-held"),
    ],
)
def test_no_create_when_salesforce_knows_the_person_or_the_contact_is_held(
    records: tuple[RecordRow, ...], held: set[tuple[str, str, str]]
) -> None:
    d = decision(create_salesforce_lead=True)
    assert not [a for a in plan(d, *records, held=held) if a.is_create]


def test_followup_stores_the_new_lead_id_on_the_contact() -> None:
    intent = Intent("salesforce", "Lead", {"LastName": "x"}, "create", create_key="7", key="p:1")
    action = followup(intent, "00QNEW", MAPPING)
    assert action is not None
    assert (action.system, action.object, action.record_id) == ("hubspot", "contacts", "7")
    assert action.fields == {"syncd_salesforce_id": "00QNEW"} and action.kinds == ("link",)
    update = Intent("salesforce", "Lead", {"OwnerId": "005S"}, "update", record_id="00Q1", key="p:1")
    assert followup(update, "00Q1", MAPPING) is None


def test_account_owner_and_customer_stage() -> None:
    account = RecordRow(
        "salesforce",
        "Account",
        "001A",
        {"Id": "001A", "OwnerId": "005S", "Syncd_Stage__c": None, "Syncd_HubSpot_Id__c": "9"},
        seen_at=T0,
    )
    company = RecordRow(
        "hubspot",
        "companies",
        "9",
        {"hubspot_owner_id": "41S", "lifecyclestage": "opportunity", "syncd_salesforce_id": "001A"},
        seen_at=T0,
    )
    d = decision(key="a:1", kind="account", stage="customer", team="account_management", score=None)
    assert fields_of(plan(d, account, company)) == {
        ("Account", "001A"): {"OwnerId": "005J", "Syncd_Stage__c": "customer"},
        ("companies", "9"): {"hubspot_owner_id": "41J", "lifecyclestage": "customer"},
    }
    prospect = decision(key="a:1", kind="account", stage=None, team="sales", owner=SAM, score=None)
    assert plan(prospect, account, company) == []


def test_tally_counts_records_per_kind_groups_by_rep_and_keeps_samples() -> None:
    tally = Tally(samples_per_group=1)
    for owner in (JACK, JACK, SAM):
        tally.add(
            Action(
                "salesforce",
                "Lead",
                "p:1",
                (FieldChange("OwnerId", "owner", "005X", "005Y", "x@n", owner),),
                "r",
                owner,
                record_id="00Q1",
                label="ada@acme.com",
            )
        )
    assert tally.count("salesforce", "owner") == 3
    data = tally.to_json()
    (g,) = data["groups"]
    assert g["by_rep"] == {JACK: 2, SAM: 1}
    assert g["samples"] == [f"Lead 00Q1 (ada@acme.com): OwnerId x@n -> {JACK}"]
    other = Tally()
    other.merge(tally)
    assert other.counts() == tally.counts() and other.total == 3


def test_group_prefers_a_contact_and_the_record_carrying_the_hubspot_id() -> None:
    older_dup = lead("00Q0", Syncd_HubSpot_Id__c=None, CreatedDate="2020-01-01T00:00:00.000+0000")
    g = group("p:1", "person", [older_dup, lead(), contact()])
    assert isinstance(g, Group)
    assert g.salesforce is not None and g.salesforce.id == "00Q1"
    assert [r.id for r in g.others] == ["00Q0"]
    c = RecordRow("salesforce", "Contact", "0031", {"Id": "0031"})
    g2 = group("p:1", "person", [lead(IsConverted=True), c, contact()])
    assert g2.salesforce is c and [r.id for r in g2.readonly] == ["00Q1"]


QUEUED = decision(owner="queue:Unassigned Leads", rule="fallback", stage="marketing_qualified")


@pytest.mark.parametrize(
    ("hubspot_owner", "expected", "reason"),
    [
        pytest.param(
            "41G",
            {"hubspot_owner_id": ""},
            f"clear owner {GRACE} (archived or unknown): queue:Unassigned Leads (fallback) is a Salesforce queue",
            id="owner-who-left-is-cleared",
        ),
        pytest.param(
            "41X",
            {"hubspot_owner_id": ""},
            "clear owner 41X (archived or unknown)",
            id="unknown-owner-is-cleared",
        ),
        pytest.param("41J", None, None, id="active-owner-is-kept"),
    ],
)
def test_person_routed_to_a_queue_loses_a_hubspot_owner_who_left(
    hubspot_owner: str, expected: dict[str, Any] | None, reason: str | None
) -> None:
    """Regression: the demo left 66 HubSpot contacts with archived owners when their Lead went to a queue."""
    actions = plan(
        QUEUED,
        lead(OwnerId="005G", Status="Open - Not Contacted", Syncd_Stage__c="marketing_qualified"),
        contact(hubspot_owner_id=hubspot_owner, lifecyclestage="marketingqualifiedlead"),
    )
    assert fields_of(actions).get(("Lead", "00Q1")) == {"OwnerId": "00GU"}
    hubspot = [a for a in actions if a.system == "hubspot"]
    if expected is None:
        assert hubspot == []
        return
    (action,) = hubspot
    assert action.fields == expected
    (change,) = action.changes
    assert (change.kind, change.new_label) == ("owner", None)
    assert reason is not None and reason in action.reason


def test_cleared_hubspot_owner_needs_nothing_more() -> None:
    cleared = contact(hubspot_owner_id="", lifecyclestage="marketingqualifiedlead")
    actions = plan(
        QUEUED,
        lead(OwnerId="00GU", Status="Open - Not Contacted", Syncd_Stage__c="marketing_qualified"),
        cleared,
    )
    assert actions == []
