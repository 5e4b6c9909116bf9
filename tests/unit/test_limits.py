"""Field limits applied to planned writes (syncd.core.limits), deleted records and deals in the planner, and
the merges a pulled record reveals: data in, data out."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.connectors.base import FieldLimit
from syncd.core.limits import apply_limits, limit_rules
from syncd.core.link import deal_counts, group, merges_of
from syncd.core.plan import Action, FieldChange, plan_key, recreate_allowed
from syncd.core.rules import load_ruleset
from syncd.core.rules.policy import parse_recreate
from syncd.core.systems import SALESFORCE_EMAIL
from syncd.core.types import Decision, Handoff, RecordRow, Rep, RepDirectory

RULES = load_ruleset(Path(__file__).resolve().parents[2] / "mappings")
MAPPING = RULES.mapping
RULES_OF = limit_rules(MAPPING)
T0 = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
JACK = "jack.miller@northwind.example"
DIRECTORY = RepDirectory([Rep(JACK, "Jack", salesforce_id="005J", hubspot_owner_id="41J")], [])
LEAD_LIMITS = {
    ("salesforce", "Lead"): {
        "LastName": FieldLimit("LastName", "string", length=80),
        "Company": FieldLimit("Company", "string", length=255),
        "NumberOfEmployees": FieldLimit("NumberOfEmployees", "int", digits=8),
        "Email": FieldLimit(
            "Email",
            "email",
            length=80,
            pattern=SALESFORCE_EMAIL.pattern,
            pattern_error="INVALID_EMAIL_ADDRESS",
        ),
        "Title": FieldLimit("Title", "string", length=128),
        "Syncd_HubSpot_Id__c": FieldLimit("Syncd_HubSpot_Id__c", "string", length=255),
    }
}


def create(**fields: Any) -> Action:
    changes = tuple(FieldChange(k, "create", None, v) for k, v in fields.items())
    return Action("salesforce", "Lead", "p:1", changes, "create", create_key="7")


@pytest.mark.parametrize(
    ("fields", "sent", "reason"),
    [
        pytest.param({"LastName": "x" * 10_000}, {"LastName": "x" * 80}, None, id="text-truncated"),
        pytest.param(
            {"NumberOfEmployees": 1e20}, {"NumberOfEmployees": 99_999_999}, None, id="number-clamped"
        ),
        pytest.param(
            {"NumberOfEmployees": "100000000000000000000"},
            {"NumberOfEmployees": 99_999_999},
            None,
            id="number-as-text-clamped",
        ),
        pytest.param(
            {"LastName": "Lovelace", "NumberOfEmployees": 12},
            {"LastName": "Lovelace", "NumberOfEmployees": 12},
            None,
            id="fits",
        ),
        pytest.param(
            {"Email": "bro\x07ken@acme.com", "LastName": "Lovelace"},
            None,
            "Lead.Email: 'bro\\x07ken@acme.com' is not an e-mail address the field accepts (INVALID_EMAIL_ADDRESS)",
            id="email-control-char-quarantined",
        ),
        pytest.param(
            {"Email": ("a" * 90) + "@acme.com"},
            None,
            "Lead.Email: 99 characters, the field takes 80",
            id="identity-too-long-quarantined",
        ),
        pytest.param({"Title": "t" * 200}, {"Title": "t" * 128}, None, id="undeclared-text-truncated"),
    ],
)
def test_limits_fit_or_refuse_per_the_mapping(
    fields: dict[str, Any], sent: dict[str, Any] | None, reason: str | None
) -> None:
    limited = apply_limits([create(**fields)], LEAD_LIMITS, RULES_OF)

    if sent is None:
        assert limited.actions == [] and [r.reason for r in limited.refused] == [reason]
    else:
        assert limited.refused == [] and [a.fields for a in limited.actions] == [sent]


def test_a_quarantine_reason_reads_like_the_issue() -> None:
    limited = apply_limits(
        [create(LastName="x" * 10_000)], LEAD_LIMITS, {("salesforce", "Lead", "LastName"): "quarantine"}
    )
    assert [r.reason for r in limited.refused] == ["Lead.LastName: 10,000 characters, the field takes 80"]


def test_drop_leaves_the_field_out_and_sends_the_rest() -> None:
    limited = apply_limits(
        [create(LastName="x" * 100, Company="Acme")],
        LEAD_LIMITS,
        {("salesforce", "Lead", "LastName"): "drop"},
    )
    assert [a.fields for a in limited.actions] == [{"Company": "Acme"}] and limited.fitted == 1


def test_without_limits_for_an_object_actions_pass_unchanged() -> None:
    action = create(LastName="x" * 10_000)
    assert apply_limits([action], {}, RULES_OF).actions == [action]


def test_the_shipped_mapping_declares_its_choices() -> None:
    assert RULES_OF[("salesforce", "Lead", "LastName")] == "truncate"
    assert RULES_OF[("salesforce", "Lead", "NumberOfEmployees")] == "clamp"
    assert RULES_OF[("salesforce", "Lead", "Email")] == "quarantine"
    assert RULES_OF[("salesforce", "Lead", "Syncd_HubSpot_Id__c")] == "quarantine", "identity by default"


# ---------------------------------------------------------------------------------------- deletes, merges


def rec(
    system: str, obj: str, id_: str, *, deleted: bool = False, at: datetime = T0, **data: Any
) -> RecordRow:
    return RecordRow(system, obj, id_, {"Id": id_, **data}, modified_at=at, deleted=deleted)


def person_decision(**kw: Any) -> Decision:
    values: dict[str, Any] = dict(
        key="p:1",
        kind="person",
        stage="sales_qualified",
        team="sales",
        owner=JACK,
        rule="r",
        trace=(),
        score=1,
        create_salesforce_lead=True,
    )
    values.update(kw)
    return Decision(**values)


CONTACT = rec("hubspot", "contacts", "7", email="ada@acme.com", lastname="Lovelace")
DELETED_LEAD = rec(
    "salesforce", "Lead", "00Q1", deleted=True, at=T0 - timedelta(days=3), LastModifiedById="005S"
)
MERGED_LEAD = rec("salesforce", "Lead", "00Q2", deleted=True, MasterRecordId="00Q9")


@pytest.mark.parametrize(
    ("records", "policy", "handoff", "creates"),
    [
        pytest.param([CONTACT], ("never", 0.0), False, 1, id="never-deleted"),
        pytest.param([CONTACT, DELETED_LEAD], ("never", 0.0), False, 0, id="deleted-never"),
        pytest.param(
            [CONTACT, DELETED_LEAD], ("after_days", 2.0), False, 1, id="deleted-after-2-days-passed"
        ),
        pytest.param(
            [CONTACT, DELETED_LEAD], ("after_days", 5.0), False, 0, id="deleted-after-5-days-not-yet"
        ),
        pytest.param([CONTACT, DELETED_LEAD], ("on_handoff", 0.0), True, 1, id="deleted-on-handoff"),
        pytest.param([CONTACT, DELETED_LEAD], ("on_handoff", 0.0), False, 0, id="deleted-no-handoff"),
        pytest.param([CONTACT, MERGED_LEAD], ("never", 0.0), False, 1, id="merged-away-is-not-a-deletion"),
    ],
)
def test_a_lead_a_person_deleted_comes_back_only_per_the_policy(
    records: list[RecordRow], policy: tuple[str, float], handoff: bool, creates: int
) -> None:
    d = person_decision(handoff=Handoff("marketing", "sales") if handoff else None)
    rules_policy = dataclasses.replace(RULES.policy, recreate_deleted=policy)
    actions = plan_key(
        d,
        group("p:1", "person", records),
        MAPPING,
        DIRECTORY,
        merged={"email": "ada@acme.com"},
        policy=rules_policy,
        now=T0,
    )
    assert sum(1 for a in actions if a.is_create) == creates


def test_without_a_policy_a_deleted_lead_is_never_created_again() -> None:
    assert not recreate_allowed(person_decision(), [DELETED_LEAD], None, T0)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("never", ("never", 0.0)),
        ("on_handoff", ("on_handoff", 0.0)),
        ("after_days 30", ("after_days", 30.0)),
        ("after_days", None),
        ("after_days -1", None),
        ("sometimes", None),
    ],
)
def test_recreate_deleted_is_validated(text: str, parsed: tuple[str, float] | None) -> None:
    assert parse_recreate(text) == parsed


@pytest.mark.parametrize(
    ("system", "obj", "data", "deleted", "pairs"),
    [
        pytest.param(
            "hubspot",
            "contacts",
            {"hs_merged_object_ids": "3;5"},
            False,
            [("3", "9"), ("5", "9")],
            id="hubspot-survivor",
        ),
        pytest.param("hubspot", "contacts", {"hs_merged_object_ids": ""}, False, [], id="hubspot-unmerged"),
        pytest.param(
            "salesforce", "Lead", {"MasterRecordId": "00Q8"}, True, [("9", "00Q8")], id="salesforce-loser"
        ),
        pytest.param(
            "salesforce", "Lead", {"MasterRecordId": None}, True, [], id="salesforce-deleted-by-a-person"
        ),
        pytest.param("salesforce", "Opportunity", {"MasterRecordId": "006"}, True, [], id="not-mergeable"),
    ],
)
def test_merges_a_pulled_record_reveals(
    system: str, obj: str, data: dict[str, Any], deleted: bool, pairs: list[tuple[str, str]]
) -> None:
    assert merges_of(system, obj, "9", data, deleted) == pairs


# -------------------------------------------------------------------------------------------------- deals


def deal(id_: str, stage: str, **data: Any) -> RecordRow:
    closed, won = stage in ("closedwon", "closedlost"), stage == "closedwon"
    return rec(
        "hubspot", "deals", id_, hs_is_closed=str(closed).lower(), hs_is_closed_won=str(won).lower(), **data
    )


def test_deals_count_like_opportunities() -> None:
    deals = [
        deal("1", "qualifiedtobuy"),
        deal("2", "closedwon"),
        deal("3", "closedlost"),
        deal("4", "qualifiedtobuy"),
    ]
    assert deal_counts(deals) == (2, 1)


def test_a_deals_owner_follows_its_accounts_decided_owner() -> None:
    company = rec("hubspot", "companies", "50", domain="acme.com", hubspot_owner_id="41J")
    g = group(
        "a:1",
        "account",
        [
            company,
            deal("1", "qualifiedtobuy", hubspot_owner_id="41X"),
            deal("2", "closedwon", hubspot_owner_id="41J"),
        ],
    )
    d = Decision(
        key="a:1", kind="account", stage=None, team="sales", owner=JACK, rule="AE", trace=(), score=None
    )

    actions = plan_key(d, g, MAPPING, DIRECTORY, merged={}, policy=RULES.policy, now=T0)
    kept = plan_key(
        d,
        g,
        MAPPING,
        DIRECTORY,
        merged={},
        policy=dataclasses.replace(RULES.policy, deal_owner="keep"),
        now=T0,
    )

    assert [(a.object, a.record_id, a.fields) for a in actions if a.object == "deals"] == [
        ("deals", "1", {"hubspot_owner_id": "41J"})
    ]
    assert not [a for a in kept if a.object == "deals"]
