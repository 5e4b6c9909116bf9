"""The mapping layer: raw records to logical values and back, precedence, write policies, transforms."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from engine_helpers import RULES

from syncd.core.mapping import Mapping, encode_wire, parse_datetime, parse_value
from syncd.core.types import Queue, Rep, RepDirectory, queue_owner

MAPPING = RULES.mapping
DIRECTORY = RepDirectory(
    [
        Rep("jack.miller@northwind.example", salesforce_id="005JACK", hubspot_owner_id="101"),
        Rep("nora.lindqvist@northwind.example", salesforce_id="005NORA", hubspot_owner_id="102"),
    ],
    [Queue("Unassigned Leads", salesforce_id="00GQUEUE")],
)


def hs_contact(**props: Any) -> dict[str, Any]:
    return {"id": "501", "properties": {k: v for k, v in props.items()}, "archived": False}


# ------------------------------------------------------------------------------------------------- reading

READS = [
    pytest.param(
        "hubspot",
        "contacts",
        hs_contact(email="  Ann@Acme.COM "),
        "email",
        "ann@acme.com",
        id="email-normalised",
    ),
    pytest.param(
        "hubspot", "contacts", hs_contact(email="Ann@Acme.COM"), "domain", "acme.com", id="domain-from-email"
    ),
    pytest.param(
        "salesforce",
        "Account",
        {"Website": "https://www.Acme.com/about"},
        "domain",
        "acme.com",
        id="domain-from-url",
    ),
    pytest.param(
        "salesforce", "Account", {"Website": "acme.io"}, "domain", "acme.io", id="domain-from-bare-host"
    ),
    pytest.param("hubspot", "contacts", hs_contact(country=" de "), "country", "DE", id="country-upper"),
    pytest.param(
        "hubspot", "contacts", hs_contact(numemployees="250"), "employees", 250, id="integer-from-string"
    ),
    pytest.param(
        "salesforce", "Lead", {"NumberOfEmployees": 250}, "employees", 250, id="integer-from-number"
    ),
    pytest.param(
        "hubspot",
        "contacts",
        hs_contact(annualrevenue="1500000.50"),
        "annual_revenue",
        1500000.5,
        id="number",
    ),
    pytest.param("hubspot", "contacts", hs_contact(numemployees=""), "employees", None, id="blank-is-none"),
    pytest.param(
        "hubspot",
        "contacts",
        hs_contact(notes_last_updated="2024-05-01T10:00:00Z"),
        "last_activity",
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        id="hubspot-datetime",
    ),
    pytest.param(
        "hubspot",
        "contacts",
        hs_contact(lifecyclestage="marketingqualifiedlead"),
        "stage",
        "marketing_qualified",
        id="hubspot-stage-value-map",
    ),
    pytest.param(
        "hubspot",
        "contacts",
        hs_contact(lifecyclestage="subscriber"),
        "stage",
        "lead",
        id="hubspot-stage-read-only-value",
    ),
    pytest.param(
        "hubspot", "contacts", hs_contact(lifecyclestage="other"), "stage", None, id="ignored-stage-value"
    ),
    pytest.param(
        "salesforce",
        "Lead",
        {"Syncd_Stage__c": "lead", "Status": "Working - Contacted"},
        "stage",
        "sales_qualified",
        id="furthest-of-two-lead-fields",
    ),
    pytest.param(
        "salesforce",
        "Lead",
        {"Syncd_Stage__c": "opportunity", "Status": "Open - Not Contacted"},
        "stage",
        "opportunity",
        id="furthest-keeps-syncd-stage",
    ),
    pytest.param(
        "salesforce",
        "Lead",
        {"Status": "Closed - Not Converted"},
        "stage",
        None,
        id="disqualified-status-has-no-stage",
    ),
    pytest.param(
        "salesforce",
        "Lead",
        {"Status": "Closed - Not Converted"},
        "lead_status",
        "Closed - Not Converted",
        id="raw-lead-status",
    ),
    pytest.param(
        "salesforce",
        "Lead",
        {"OwnerId": "005JACK"},
        "owner",
        "jack.miller@northwind.example",
        id="salesforce-user-owner",
    ),
    pytest.param(
        "salesforce",
        "Lead",
        {"OwnerId": "00GQUEUE"},
        "owner",
        queue_owner("Unassigned Leads"),
        id="salesforce-queue-owner",
    ),
    pytest.param(
        "hubspot",
        "contacts",
        hs_contact(hubspot_owner_id="102"),
        "owner",
        "nora.lindqvist@northwind.example",
        id="hubspot-owner",
    ),
    pytest.param(
        "hubspot", "contacts", hs_contact(hubspot_owner_id="999"), "owner", None, id="unknown-owner"
    ),
]


@pytest.mark.parametrize(("system", "obj", "raw", "name", "expected"), READS)
def test_to_logical(system: Any, obj: str, raw: dict[str, Any], name: str, expected: Any) -> None:
    assert MAPPING.to_logical(system, obj, raw, directory=DIRECTORY)[name] == expected


def test_to_logical_leaves_owner_out_without_a_directory() -> None:
    values = MAPPING.to_logical("salesforce", "Lead", {"OwnerId": "005JACK", "Email": "a@b.com"})
    assert "owner" not in values
    assert values["email"] == "a@b.com"


def test_to_logical_reads_only_fields_bound_to_the_object() -> None:
    values = MAPPING.to_logical("salesforce", "Account", {"Name": "Acme", "BillingCountry": "us"})
    assert values["name"] == "Acme"
    assert values["country"] == "US"
    assert "email" not in values


def test_bad_value_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"contacts\.numemployees: 'lots' is not a valid integer"):
        MAPPING.to_logical("hubspot", "contacts", hs_contact(numemployees="lots"))


# ------------------------------------------------------------------------------------------------- precedence

MERGES = [
    pytest.param("country", "DE", "FR", "FR", id="salesforce-wins"),
    pytest.param("country", "DE", None, "DE", id="hubspot-fills-the-gap"),
    pytest.param("domain", "a.com", "b.com", "a.com", id="hubspot-wins-for-domain"),
    pytest.param("stage", "sales_qualified", "lead", "sales_qualified", id="furthest-stage-from-hubspot"),
    pytest.param("stage", "lead", "opportunity", "opportunity", id="furthest-stage-from-salesforce"),
    pytest.param("unmapped_extra", 1, 2, 2, id="unknown-field-salesforce-by-default"),
]


@pytest.mark.parametrize(("name", "hs", "sf", "expected"), MERGES)
def test_merge_precedence(name: str, hs: Any, sf: Any, expected: Any) -> None:
    merged = MAPPING.merge({"hubspot": {name: hs}, "salesforce": {name: sf}})
    assert merged[name] == expected
    if name in MAPPING.fields and hs is not None and sf is not None:
        assert MAPPING.winner(name, {"hubspot": hs, "salesforce": sf}) == (
            "hubspot" if expected == hs else "salesforce"
        )


# ------------------------------------------------------------------------------------------------- writing

ENCODES = [
    pytest.param("score", "hubspot", "contacts", 42, {"syncd_score": "42"}, id="hubspot-wants-strings"),
    pytest.param("score", "salesforce", "Lead", 42, {"Syncd_Score__c": 42}, id="salesforce-wants-numbers"),
    pytest.param(
        "stage",
        "hubspot",
        "contacts",
        "marketing_qualified",
        {"lifecyclestage": "marketingqualifiedlead"},
        id="stage-through-value-map",
    ),
    pytest.param(
        "stage",
        "salesforce",
        "Lead",
        "sales_qualified",
        {"Syncd_Stage__c": "sales_qualified", "Status": "Working - Contacted"},
        id="stage-to-both-lead-fields",
    ),
    pytest.param(
        "owner",
        "salesforce",
        "Lead",
        "jack.miller@northwind.example",
        {"OwnerId": "005JACK"},
        id="owner-user",
    ),
    pytest.param(
        "owner",
        "salesforce",
        "Lead",
        queue_owner("Unassigned Leads"),
        {"OwnerId": "00GQUEUE"},
        id="lead-may-sit-in-a-queue",
    ),
    pytest.param(
        "owner",
        "salesforce",
        "Contact",
        queue_owner("Unassigned Leads"),
        {},
        id="contact-cannot-sit-in-a-queue",
    ),
    pytest.param(
        "owner", "hubspot", "contacts", queue_owner("Unassigned Leads"), {}, id="hubspot-has-no-queues"
    ),
    pytest.param(
        "owner",
        "hubspot",
        "contacts",
        "nora.lindqvist@northwind.example",
        {"hubspot_owner_id": "102"},
        id="owner-hubspot-id",
    ),
    pytest.param(
        "owner", "hubspot", "contacts", "stranger@northwind.example", {}, id="unknown-rep-not-written"
    ),
    pytest.param("hubspot_score", "hubspot", "contacts", 10, {}, id="never-field-not-encoded"),
    pytest.param("domain", "salesforce", "Account", "acme.com", {}, id="lossy-field-never-written"),
]


@pytest.mark.parametrize(("name", "system", "obj", "value", "expected"), ENCODES)
def test_encode(name: str, system: Any, obj: str, value: Any, expected: dict[str, Any]) -> None:
    assert MAPPING.encode(name, system, obj, value, directory=DIRECTORY) == expected


WRITES = [
    pytest.param(
        "score", "hubspot", "contacts", 42, hs_contact(syncd_score="42"), {}, id="same-value-no-write"
    ),
    pytest.param(
        "score", "hubspot", "contacts", 42, hs_contact(syncd_score="42.0"), {}, id="same-number-other-text"
    ),
    pytest.param(
        "score", "hubspot", "contacts", 43, hs_contact(syncd_score="42"), {"syncd_score": "43"}, id="changed"
    ),
    pytest.param("country", "salesforce", "Lead", "DE", {"Country": "FR"}, {}, id="if-blank-keeps-existing"),
    pytest.param(
        "country", "salesforce", "Lead", "DE", {"Country": ""}, {"Country": "DE"}, id="if-blank-fills"
    ),
    pytest.param("country", "hubspot", "contacts", "DE", hs_contact(country=None), {}, id="never-writes"),
    pytest.param(
        "owner",
        "salesforce",
        "Lead",
        "jack.miller@northwind.example",
        {"OwnerId": "005NORA"},
        {"OwnerId": "005JACK"},
        id="owner-change",
    ),
    pytest.param(
        "stage",
        "salesforce",
        "Lead",
        "lead",
        {"Syncd_Stage__c": "lead", "Status": "Closed - Not Converted"},
        {"Status": "Nurturing"},
        id="only-differing-binding",
    ),
    pytest.param("score", "salesforce", "Lead", None, {"Syncd_Score__c": None}, {}, id="blank-stays-blank"),
    pytest.param(
        "stage",
        "hubspot",
        "companies",
        None,
        hs_contact(lifecyclestage="customer"),
        {},
        id="no-opinion-never-clears",
    ),
]


@pytest.mark.parametrize(("name", "system", "obj", "value", "current", "expected"), WRITES)
def test_writes(
    name: str, system: Any, obj: str, value: Any, current: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert MAPPING.writes(name, system, obj, value, current, directory=DIRECTORY) == expected


def test_write_policy_per_binding() -> None:
    assert MAPPING.write_policy("country", "salesforce", "Lead", "Country") == "if_blank"
    assert MAPPING.write_policy("country", "hubspot", "contacts", "country") == "never"
    assert MAPPING.write_policy("owner", "salesforce", "Lead", "OwnerId") == "always"
    assert MAPPING.write_policy("owner", "salesforce", "Lead", "Email") == "never"


def test_identity_keys() -> None:
    person = MAPPING.identity["person"]
    assert (person.hubspot_link, person.salesforce_link, person.match) == (
        "syncd_salesforce_id",
        "Syncd_HubSpot_Id__c",
        ("email",),
    )
    assert MAPPING.identity["account"].match == ("domain",)


def test_round_trip_of_engine_fields() -> None:
    for system, obj in (("hubspot", "contacts"), ("salesforce", "Lead"), ("salesforce", "Contact")):
        for name, value in (
            ("stage", "sales_qualified"),
            ("score", 73),
            ("owner", "jack.miller@northwind.example"),
        ):
            wire = MAPPING.encode(name, system, obj, value, directory=DIRECTORY)  # type: ignore[arg-type]
            back = MAPPING.to_logical(system, obj, wire, directory=DIRECTORY)  # type: ignore[arg-type]
            assert back[name] == value, (system, obj, name)


# ------------------------------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2024-01-01T00:00:00.000+0000", datetime(2024, 1, 1, tzinfo=UTC), id="salesforce"),
        pytest.param("2024-01-01T01:00:00+01:00", datetime(2024, 1, 1, tzinfo=UTC), id="offset"),
        pytest.param("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC), id="hubspot"),
        pytest.param("1704067200000", datetime(2024, 1, 1, tzinfo=UTC), id="epoch-ms"),
        pytest.param("2024-01-01", datetime(2024, 1, 1, tzinfo=UTC), id="date"),
    ],
)
def test_parse_datetime(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected


@pytest.mark.parametrize(
    ("system", "kind", "value", "expected"),
    [
        pytest.param(
            "hubspot", "datetime", datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01T00:00:00.000Z", id="hs-dt"
        ),
        pytest.param(
            "salesforce",
            "datetime",
            datetime(2024, 1, 1, tzinfo=UTC),
            "2024-01-01T00:00:00.000+0000",
            id="sf-dt",
        ),
        pytest.param("salesforce", "date", datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01", id="sf-date"),
        pytest.param("hubspot", "boolean", True, "true", id="hs-bool"),
        pytest.param("salesforce", "boolean", True, True, id="sf-bool"),
        pytest.param("hubspot", "number", 2.5, "2.5", id="hs-float"),
        pytest.param("salesforce", "number", 3.0, 3, id="sf-whole-number"),
    ],
)
def test_encode_wire(system: Any, kind: str, value: Any, expected: Any) -> None:
    assert encode_wire(system, kind, value) == expected


@pytest.mark.parametrize("bad", ["nan", "inf", True])
def test_parse_value_refuses_non_numbers(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_value("number", bad)


# ------------------------------------------------------------------------------------------------- queues in HubSpot

GONE = RepDirectory(
    [
        Rep("jack.miller@northwind.example", salesforce_id="005JACK", hubspot_owner_id="101"),
        Rep("grace.kim@northwind.example", salesforce_id="005GRACE", hubspot_owner_id="103", active=False),
    ],
    [Queue("Unassigned Leads", salesforce_id="00GQUEUE")],
)
QUEUED = queue_owner("Unassigned Leads")

# (queue_in_hubspot, the contact's hubspot_owner_id, the writes expected when the decided owner is a queue)
QUEUE_IN_HUBSPOT = [
    pytest.param("clear_inactive", "103", {"hubspot_owner_id": ""}, id="archived-owner-cleared"),
    pytest.param("clear_inactive", "999", {"hubspot_owner_id": ""}, id="unknown-owner-cleared"),
    pytest.param("clear_inactive", "101", {}, id="active-owner-kept"),
    pytest.param("clear_inactive", "", {}, id="blank-stays-blank"),
    pytest.param("clear_inactive", None, {}, id="no-owner-stays-blank"),
    pytest.param("keep", "103", {}, id="keep-leaves-an-archived-owner"),
]


def with_queue_policy(policy: str) -> Mapping:
    owner = dataclasses.replace(MAPPING.fields["owner"], queue_in_hubspot=policy)
    return Mapping(
        {**MAPPING.fields, "owner": owner}, MAPPING.value_maps, MAPPING.identity, MAPPING.stage_order
    )


@pytest.mark.parametrize(("policy", "current", "expected"), QUEUE_IN_HUBSPOT)
def test_queue_owner_in_hubspot(policy: str, current: str | None, expected: dict[str, Any]) -> None:
    mapping = with_queue_policy(policy)
    record = hs_contact(hubspot_owner_id=current)
    assert mapping.writes("owner", "hubspot", "contacts", QUEUED, record, directory=GONE) == expected


def test_queue_owner_clears_nothing_in_salesforce_or_without_a_directory() -> None:
    assert (
        MAPPING.writes("owner", "salesforce", "Contact", QUEUED, {"OwnerId": "005GRACE"}, directory=GONE)
        == {}
    )
    assert MAPPING.writes("owner", "hubspot", "contacts", QUEUED, hs_contact(hubspot_owner_id="103")) == {}


def test_shipped_owner_field_clears_departed_hubspot_owners() -> None:
    assert MAPPING.fields["owner"].queue_in_hubspot == "clear_inactive"
