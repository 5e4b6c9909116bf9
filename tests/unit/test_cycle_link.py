"""Linking helpers of the cycle (``syncd.core.link``): identity values, changes, echoes and manual owner changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncd.core.link import (
    changed_fields,
    cross_id,
    entity_of,
    identity,
    is_echo,
    owner_change,
    record_hash,
    salesforce_object_of,
    same_value,
)
from syncd.core.rules import load_ruleset

MAPPING = load_ruleset(Path(__file__).resolve().parents[2] / "mappings").mapping
REPS = {"005S": "sam.patel@northwind.example", "7100004": "sam.patel@northwind.example"}


@pytest.mark.parametrize(
    ("system", "obj", "data", "expected"),
    [
        pytest.param(
            "salesforce", "Lead", {"Email": " Ada@ACME.com "}, ("ada@acme.com", "acme.com"), id="lead"
        ),
        pytest.param("hubspot", "contacts", {"email": "b@x.de"}, ("b@x.de", "x.de"), id="contact"),
        pytest.param(
            "salesforce",
            "Account",
            {"Website": "https://www.Acme.com/about"},
            (None, "acme.com"),
            id="account",
        ),
        pytest.param("hubspot", "companies", {"domain": " ACME.com"}, (None, "acme.com"), id="company"),
        pytest.param("salesforce", "Lead", {"Email": None}, (None, None), id="blank"),
        pytest.param(
            "salesforce",
            "Lead",
            {"Email": "a@b.com", "NumberOfEmployees": "lots"},
            ("a@b.com", "b.com"),
            id="bad-value-elsewhere-does-not-matter",
        ),
    ],
)
def test_identity(
    system: str, obj: str, data: dict[str, Any], expected: tuple[str | None, str | None]
) -> None:
    assert identity(MAPPING, system, obj, data) == expected


def test_cross_ids_and_objects() -> None:
    assert cross_id(MAPPING, "hubspot", "contacts", {"syncd_salesforce_id": " 00Q1 "}) == "00Q1"
    assert cross_id(MAPPING, "salesforce", "Lead", {"Syncd_HubSpot_Id__c": ""}) is None
    assert cross_id(MAPPING, "salesforce", "Opportunity", {"Syncd_HubSpot_Id__c": "5"}) is None
    assert [salesforce_object_of(i) for i in ("00Q1", "0031", "0011", "0061", "005X")] == [
        "Lead",
        "Contact",
        "Account",
        "Opportunity",
        None,
    ]
    assert entity_of("hubspot", "companies") == "account" and entity_of("salesforce", "Lead") == "person"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("42", 42.0, True),
        (None, "", True),
        ("x", None, False),
        ("Nurturing", "Nurturing", True),
        (True, "true", True),
        ("00Q1", "00Q2", False),
    ],
)
def test_same_value(a: Any, b: Any, same: bool) -> None:
    assert same_value(a, b) is same


def test_hash_and_changes_ignore_bookkeeping() -> None:
    old = {"Id": "1", "OwnerId": "005J", "SystemModstamp": "t1", "LastModifiedById": "005X", "Name": "A B"}
    new = {**old, "SystemModstamp": "t2", "LastModifiedById": "005Y", "Name": "A C"}
    assert record_hash("salesforce", old) == record_hash("salesforce", new)
    assert changed_fields("salesforce", old, new) == {}
    assert changed_fields("salesforce", old, {**new, "OwnerId": "005S"}) == {"OwnerId": "005S"}
    assert changed_fields("hubspot", None, {"a": "1", "b": None, "lastmodifieddate": "x"}) == {"a": "1"}


@pytest.mark.parametrize(
    ("old", "new", "written", "echo"),
    [
        pytest.param({"OwnerId": "005J"}, {"OwnerId": "005S"}, {"OwnerId": "005S"}, True, id="own-write"),
        pytest.param({"OwnerId": "005J"}, {"OwnerId": "005S"}, {}, False, id="never-wrote"),
        pytest.param({"OwnerId": "005J"}, {"OwnerId": "005X"}, {"OwnerId": "005S"}, False, id="someone-else"),
        pytest.param(
            {"OwnerId": "005J", "Title": "CEO"},
            {"OwnerId": "005S", "Title": "CTO"},
            {"OwnerId": "005S"},
            False,
            id="own-write-plus-a-human-edit",
        ),
        pytest.param(
            None,
            {"OwnerId": "005S", "Name": "x", "Status": "New"},
            {"OwnerId": "005S"},
            True,
            id="created-by-syncd",
        ),
        pytest.param(None, {"OwnerId": "005S"}, {}, False, id="new-record"),
        pytest.param(
            {"Syncd_Score__c": 1.0}, {"Syncd_Score__c": 42.0}, {"Syncd_Score__c": 42}, True, id="number"
        ),
    ],
)
def test_is_echo(
    old: dict[str, Any] | None, new: dict[str, Any], written: dict[str, Any], echo: bool
) -> None:
    assert is_echo("salesforce", old, new, written) is echo


@pytest.mark.parametrize(
    ("system", "old", "new", "last", "expected"),
    [
        pytest.param(
            "salesforce",
            {"OwnerId": "005J"},
            {"OwnerId": "005S", "LastModifiedById": "005S"},
            "005J",
            ("005J", "005S", "sam.patel@northwind.example"),
            id="rep-changed-it",
        ),
        pytest.param(
            "hubspot",
            {"hubspot_owner_id": "41J"},
            {"hubspot_owner_id": "41S", "hs_updated_by_user_id": "7100004"},
            None,
            ("41J", "41S", "sam.patel@northwind.example"),
            id="rep-in-hubspot",
        ),
        pytest.param(
            "salesforce",
            {"OwnerId": "005J"},
            {"OwnerId": "005S", "LastModifiedById": "005INTEGRATION"},
            None,
            None,
            id="not-a-rep",
        ),
        pytest.param(
            "salesforce",
            {"OwnerId": "005J"},
            {"OwnerId": "005S", "LastModifiedById": "005S"},
            "005S",
            None,
            id="equal-to-syncd-write",
        ),
        pytest.param(
            "salesforce", None, {"OwnerId": "005S", "LastModifiedById": "005S"}, None, None, id="first-sight"
        ),
        pytest.param(
            "salesforce",
            {"OwnerId": "005J", "Title": "a"},
            {"OwnerId": "005J", "Title": "b", "LastModifiedById": "005S"},
            None,
            None,
            id="owner-unchanged",
        ),
    ],
)
def test_owner_change(
    system: str,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    last: Any,
    expected: tuple[str, str, str] | None,
) -> None:
    change = owner_change(system, old, new, last_written=last, reps_by_change_id=REPS)
    got = None if change is None else (change.previous, change.current, change.changed_by)
    assert got == expected
