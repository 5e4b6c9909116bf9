"""The sandbox's SOQL: parsing, binding to the schema, evaluation, ordering and projection, as data in/out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from syncd.core.systems import SALESFORCE_OBJECTS
from syncd.sandbox.ids import sf_id
from syncd.sandbox.salesforce import stored_record
from syncd.sandbox.soql import (
    SoqlError,
    canonical_sf_id,
    compile_soql,
    evaluate,
    format_sf_datetime,
    normalize_sf_datetime,
    parse,
    parse_sf_datetime,
)

OBJECTS = SALESFORCE_OBJECTS
ADMIN = sf_id("005", 1)
SAM = sf_id("005", 2)
OLIVIA = sf_id("005", 3)
QUEUE = sf_id("00G", 1)
ACME = sf_id("001", 1)
LEADS = [sf_id("00Q", n) for n in range(1, 7)]
CONTACT = sf_id("003", 1)
ORPHAN = sf_id("003", 2)


def _lead(n: int, stamp: str, **values: Any) -> dict[str, Any]:
    return stored_record(OBJECTS["Lead"], LEADS[n], stamp, ADMIN, **values)


TABLES: dict[str, list[dict[str, Any]]] = {
    "User": [
        stored_record(
            OBJECTS["User"],
            ADMIN,
            "2025-01-01T00:00:00.000+0000",
            ADMIN,
            Username="admin@x.example",
            Email="admin@x.example",
            LastName="Admin",
            IsActive=True,
        ),
        stored_record(
            OBJECTS["User"],
            SAM,
            "2025-01-01T00:00:00.000+0000",
            ADMIN,
            Username="sam@x.example",
            Email="sam@x.example",
            FirstName="Sam",
            LastName="Patel",
            IsActive=True,
            Title="SDR",
        ),
        stored_record(
            OBJECTS["User"],
            OLIVIA,
            "2025-01-01T00:00:00.000+0000",
            ADMIN,
            Username="olivia@x.example",
            Email="olivia@x.example",
            FirstName="Olivia",
            LastName="Davis",
            IsActive=False,
        ),
    ],
    "Group": [
        stored_record(
            OBJECTS["Group"],
            QUEUE,
            "2025-01-01T00:00:00.000+0000",
            ADMIN,
            Name="EMEA Lead Queue",
            DeveloperName="EMEA_Lead_Queue",
            Type="Queue",
        ),
    ],
    "Account": [
        stored_record(
            OBJECTS["Account"],
            ACME,
            "2025-01-01T00:00:00.000+0000",
            ADMIN,
            Name="Acme GmbH",
            OwnerId=SAM,
            BillingCountry="DE",
            NumberOfEmployees=250,
        ),
    ],
    "Contact": [
        stored_record(
            OBJECTS["Contact"],
            CONTACT,
            "2025-01-01T00:00:00.000+0000",
            ADMIN,
            LastName="Weber",
            AccountId=ACME,
            OwnerId=SAM,
        ),
        stored_record(OBJECTS["Contact"], ORPHAN, "2025-01-01T00:00:00.000+0000", ADMIN, LastName="Alone"),
    ],
    "Lead": [
        _lead(
            0,
            "2025-03-01T10:00:00.000+0000",
            FirstName="Ada",
            LastName="Lovelace",
            Company="Analytical",
            Email="ada@analytical.example",
            Country="GB",
            NumberOfEmployees=50,
            OwnerId=SAM,
            Status="Working - Contacted",
            Syncd_Score__c=72.5,
        ),
        _lead(
            1,
            "2025-03-01T10:00:00.001+0000",
            FirstName="alan",
            LastName="Turing",
            Company="Bletchley",
            Email="ALAN@bletchley.example",
            Country="GB",
            NumberOfEmployees=5000,
            OwnerId=QUEUE,
            Status="Open - Not Contacted",
        ),
        _lead(
            2,
            "2025-03-02T00:00:00.000+0000",
            FirstName="Grace",
            LastName="Hopper",
            Company="Navy",
            Email="grace@navy.example",
            Country="US",
            NumberOfEmployees=None,
            OwnerId=OLIVIA,
            Status="Nurturing",
            Syncd_Score__c=40.0,
        ),
        _lead(
            3,
            "2025-03-03T00:00:00.000+0000",
            LastName="O'Brien",
            Company="100% Cotton_Ltd",
            Email=None,
            Country=None,
            NumberOfEmployees=10,
            OwnerId=None,
            Status="Open - Not Contacted",
        ),
        _lead(
            4,
            "2025-03-04T00:00:00.000+0000",
            FirstName="Edsger",
            LastName="dijkstra",
            Company="TU/e",
            Email="edsger@tue.example",
            Country="NL",
            NumberOfEmployees=900,
            OwnerId=SAM,
            Status="Closed - Converted",
            IsConverted=True,
            ConvertedDate="2025-03-04",
        ),
        _lead(
            5,
            "2025-03-05T00:00:00.000+0000",
            FirstName="Barbara",
            LastName="Liskov",
            Company="MIT",
            Email="barbara@mit.example",
            Country="US",
            NumberOfEmployees=20000,
            OwnerId=SAM,
            Status="Working - Contacted",
            IsDeleted=True,
        ),
    ],
}


def ids(query: str) -> list[str]:
    return [r["Id"] for r in evaluate(query, OBJECTS, TABLES)]


def lead_numbers(query: str) -> list[int]:
    return [LEADS.index(i) for i in ids(query)]


# --------------------------------------------------------------------------------------------- WHERE


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        pytest.param("Country = 'GB'", [0, 1], id="equals"),
        pytest.param("country = 'gb'", [0, 1], id="field-name-and-value-case-insensitive"),
        pytest.param("Email = 'alan@BLETCHLEY.example'", [1], id="string-equality-ignores-case"),
        pytest.param("Country != 'GB'", [2, 3, 4, 5], id="not-equals-includes-null"),
        pytest.param("Country <> 'GB'", [2, 3, 4, 5], id="diamond-not-equals"),
        pytest.param("Country = null", [3], id="is-null"),
        pytest.param("Country != null", [0, 1, 2, 4, 5], id="is-not-null"),
        pytest.param("NumberOfEmployees > 50", [1, 4, 5], id="greater-than-skips-null"),
        pytest.param("NumberOfEmployees >= 50", [0, 1, 4, 5], id="greater-or-equal"),
        pytest.param("NumberOfEmployees < 50", [3], id="less-than"),
        pytest.param("NumberOfEmployees <= 50", [0, 3], id="less-or-equal"),
        pytest.param("Syncd_Score__c > 40.5", [0], id="decimal-literal-on-custom-field"),
        pytest.param("Country IN ('US', 'nl')", [2, 4, 5], id="in"),
        pytest.param("Country NOT IN ('US', 'NL')", [0, 1, 3], id="not-in-includes-null"),
        pytest.param("Country IN ('US', null)", [2, 3, 5], id="in-with-null"),
        pytest.param("Email LIKE '%.example'", [0, 1, 2, 4, 5], id="like-percent"),
        pytest.param("Email LIKE 'a_a@%'", [0], id="like-underscore"),
        pytest.param("Email LIKE 'ALAN%'", [1], id="like-ignores-case"),
        pytest.param("Company LIKE '100\\% Cotton\\_%'", [3], id="like-escaped-wildcards"),
        pytest.param("Company LIKE '100_ Cotton%'", [3], id="like-underscore-matches-percent-char"),
        pytest.param("LastName = 'O\\'Brien'", [3], id="escaped-quote"),
        pytest.param("IsConverted = TRUE", [4], id="boolean-true"),
        pytest.param("IsConverted = false", [0, 1, 2, 3, 5], id="boolean-false-lowercase"),
        pytest.param("ConvertedDate = 2025-03-04", [4], id="date-literal"),
        pytest.param(
            "SystemModstamp > 2025-03-01T10:00:00Z", [1, 2, 3, 4, 5], id="datetime-z-milliseconds-count"
        ),
        pytest.param("SystemModstamp > 2025-03-01T10:00:00.001Z", [2, 3, 4, 5], id="datetime-with-fraction"),
        pytest.param(
            "SystemModstamp >= 2025-03-02T01:00:00+01:00", [2, 3, 4, 5], id="datetime-positive-offset"
        ),
        pytest.param("SystemModstamp < 2025-03-01T23:00:00-01:00", [0, 1], id="datetime-negative-offset"),
        pytest.param("Country = 'GB' AND NumberOfEmployees > 100", [1], id="and"),
        pytest.param("Country = 'NL' OR NumberOfEmployees < 20", [3, 4], id="or"),
        pytest.param("NOT Country = 'GB'", [2, 3, 4, 5], id="not"),
        pytest.param("NOT (Country = 'GB' OR Country = 'US')", [3, 4], id="not-parenthesised-or"),
        pytest.param(
            "(Country = 'GB' OR Country = 'US') AND (NumberOfEmployees > 100 OR NumberOfEmployees = null)",
            [1, 2, 5],
            id="nested-parentheses",
        ),
        pytest.param("Country = 'GB' AND NOT Email LIKE 'ada%'", [1], id="and-not"),
        pytest.param(f"Id = '{LEADS[2][:15]}'", [2], id="fifteen-char-id"),
        pytest.param(f"Id = '{LEADS[2].lower()}'", [2], id="lowercased-eighteen-char-id"),
        pytest.param(f"OwnerId IN ('{SAM}', '{QUEUE}')", [0, 1, 4, 5], id="reference-in"),
        pytest.param("Owner.IsActive = false", [2], id="parent-boolean-through-polymorphic-owner"),
        pytest.param("Owner.Type = 'Queue'", [1], id="polymorphic-owner-type"),
        pytest.param("Owner.Email = 'sam@x.example'", [0, 4, 5], id="parent-field"),
        pytest.param("Owner.Email = null", [1, 3], id="parent-null-when-no-parent-or-queue-email"),
    ],
)
def test_where_selects_the_matching_rows(where: str, expected: list[int]) -> None:
    assert sorted(lead_numbers(f"SELECT Id FROM Lead WHERE {where}")) == expected


def test_two_level_parent_filter_follows_account_then_owner() -> None:
    assert ids("SELECT Id FROM Contact WHERE Account.Owner.Email = 'sam@x.example'") == [CONTACT]


# --------------------------------------------------------------------------------------------- ORDER BY, LIMIT, OFFSET


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        pytest.param("ORDER BY SystemModstamp", [0, 1, 2, 3, 4, 5], id="ascending-default"),
        pytest.param("ORDER BY SystemModstamp DESC", [5, 4, 3, 2, 1, 0], id="descending"),
        pytest.param(
            "ORDER BY Country, SystemModstamp DESC", [3, 1, 0, 4, 5, 2], id="nulls-first-by-default"
        ),
        pytest.param("ORDER BY Country NULLS LAST, Id", [0, 1, 4, 2, 5, 3], id="nulls-last"),
        pytest.param("ORDER BY Country DESC NULLS FIRST, Id", [3, 2, 5, 4, 0, 1], id="desc-nulls-first"),
        pytest.param("ORDER BY LastName", [4, 2, 5, 0, 3, 1], id="text-sort-ignores-case"),
        pytest.param("ORDER BY NumberOfEmployees DESC NULLS LAST", [5, 1, 4, 0, 3, 2], id="numbers-not-text"),
        pytest.param("ORDER BY Owner.Email NULLS LAST, Id", [2, 0, 4, 5, 1, 3], id="by-parent-field"),
        pytest.param("ORDER BY Id LIMIT 2", [0, 1], id="limit"),
        pytest.param("ORDER BY Id LIMIT 2 OFFSET 3", [3, 4], id="limit-offset"),
        pytest.param("ORDER BY Id OFFSET 4", [4, 5], id="offset"),
        pytest.param("WHERE Country = 'US' ORDER BY Id DESC LIMIT 1", [5], id="where-order-limit"),
    ],
)
def test_order_limit_offset(tail: str, expected: list[int]) -> None:
    assert lead_numbers(f"SELECT Id FROM Lead {tail}") == expected


# --------------------------------------------------------------------------------------------- projection


def test_records_carry_attributes_and_canonical_field_names_in_select_order() -> None:
    (record,) = evaluate(f"select email, ID, lastname from LEAD where id = '{LEADS[0]}'", OBJECTS, TABLES)
    assert list(record) == ["attributes", "Email", "Id", "LastName"]
    assert record["attributes"] == {"type": "Lead", "url": f"/services/data/v59.0/sobjects/Lead/{LEADS[0]}"}


def test_parent_fields_nest_under_the_relationship_with_their_own_attributes() -> None:
    (record,) = evaluate(
        f"SELECT Id, Account.Name, Owner.Email, Account.Owner.Name, Account.BillingCountry FROM Contact "
        f"WHERE Id = '{CONTACT}'",
        OBJECTS,
        TABLES,
    )
    assert record["Account"] == {
        "attributes": {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{ACME}"},
        "Name": "Acme GmbH",
        "Owner": {
            "attributes": {"type": "User", "url": f"/services/data/v59.0/sobjects/User/{SAM}"},
            "Name": "Sam Patel",
        },
        "BillingCountry": "DE",
    }
    assert record["Owner"]["Email"] == "sam@x.example"
    assert list(record) == ["attributes", "Id", "Account", "Owner"]


def test_polymorphic_owner_is_the_name_object_pointing_at_user_or_queue() -> None:
    rows = evaluate(
        f"SELECT Id, Owner.Name, Owner.Type, Owner.IsActive FROM Lead WHERE Id IN ('{LEADS[1]}', '{LEADS[2]}') "
        "ORDER BY Id",
        OBJECTS,
        TABLES,
    )
    assert rows[0]["Owner"] == {
        "attributes": {"type": "Name", "url": f"/services/data/v59.0/sobjects/Group/{QUEUE}"},
        "Name": "EMEA Lead Queue",
        "Type": "Queue",
        "IsActive": None,
    }
    assert rows[1]["Owner"]["Type"] == "User"
    assert rows[1]["Owner"]["IsActive"] is False
    assert rows[1]["Owner"]["attributes"]["url"].endswith(f"/User/{OLIVIA}")


def test_missing_parent_is_null() -> None:
    (record,) = evaluate(f"SELECT Account.Name FROM Contact WHERE Id = '{ORPHAN}'", OBJECTS, TABLES)
    assert record["Account"] is None


def test_group_is_an_object_after_from_although_a_keyword() -> None:
    assert ids("SELECT Id FROM Group WHERE Type = 'Queue' AND DeveloperName = 'EMEA_Lead_Queue'") == [QUEUE]


def test_object_name_prefix_on_own_fields_is_accepted() -> None:
    assert ids(f"SELECT Lead.Id FROM Lead WHERE Lead.Id = '{LEADS[0]}'") == [LEADS[0]]


def test_count_and_count_field() -> None:
    compiled = compile_soql("SELECT COUNT() FROM Lead WHERE Country = 'GB'", OBJECTS, lambda _: None, "/x")
    assert compiled.count_only
    assert len(compiled.run(TABLES["Lead"])) == 2
    aggregate = compile_soql("SELECT COUNT(Email) total FROM Lead", OBJECTS, lambda _: None, "/x")
    assert aggregate.aggregate is not None and aggregate.aggregate.alias == "total"
    assert aggregate.aggregate_getter is not None
    assert sum(1 for r in aggregate.run(TABLES["Lead"]) if aggregate.aggregate_getter(r) is not None) == 5


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("query", "code", "detail"),
    [
        pytest.param("SELECT Id Lead", "MALFORMED_QUERY", "unexpected token: 'Lead'", id="missing-from"),
        pytest.param("SELECT FROM Lead", "MALFORMED_QUERY", "unexpected token: 'FROM'", id="no-fields"),
        pytest.param(
            "SELECT Id FROM Lead WHERE", "MALFORMED_QUERY", "unexpected token: '<EOF>'", id="dangling-where"
        ),
        pytest.param(
            "SELECT Id FROM Lead LIMIT 5 garbage",
            "MALFORMED_QUERY",
            "unexpected token: 'garbage'",
            id="trailing-token",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE Country = 'GB' AND Country = 'US' OR Country = 'NL'",
            "MALFORMED_QUERY",
            "unexpected token: 'OR'",
            id="and-or-without-parentheses",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE Email = 'x",
            "MALFORMED_QUERY",
            "unterminated string literal",
            id="unterminated-string",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE Email = 'a\\qb'",
            "MALFORMED_QUERY",
            "Illegal character sequence",
            id="bad-escape",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE Email IN ()", "MALFORMED_QUERY", "unexpected token: ')'", id="empty-in"
        ),
        pytest.param(
            "SELECT Id FROM Lead OFFSET 2001",
            "NUMBER_OUTSIDE_VALID_RANGE",
            "Maximum SOQL offset",
            id="offset-cap",
        ),
        pytest.param(
            "SELECT Id, id FROM Lead", "MALFORMED_QUERY", "duplicate field selected: Id", id="duplicate-field"
        ),
        pytest.param(
            "SELECT COUNT(), Id FROM Lead",
            "MALFORMED_QUERY",
            "Field must be grouped or aggregated",
            id="count-with-field",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE CreatedDate > 2025-13-01T00:00:00Z",
            "MALFORMED_QUERY",
            "invalid datetime",
            id="impossible-datetime",
        ),
        pytest.param(
            "SELECT Id FROM Leads",
            "INVALID_TYPE",
            "sObject type 'Leads' is not supported",
            id="unknown-object",
        ),
        pytest.param(
            "SELECT Id, Emial FROM Lead",
            "INVALID_FIELD",
            "No such column 'Emial' on entity 'Lead'",
            id="unknown-field",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE Owner.Foo = 'x'",
            "INVALID_FIELD",
            "No such column 'Foo' on entity 'Name'",
            id="unknown-field-on-polymorphic-parent",
        ),
        pytest.param(
            "SELECT Boss.Name FROM Lead",
            "INVALID_FIELD",
            "Didn't understand relationship 'Boss'",
            id="unknown-relationship",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE CreatedDate > '2025-01-01'",
            "INVALID_FIELD",
            "must be of type dateTime and should not be enclosed in quotes",
            id="quoted-datetime",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE Email = 42",
            "INVALID_FIELD",
            "must be of type string and should be enclosed in quotes",
            id="number-for-string",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE NumberOfEmployees = '5'",
            "INVALID_FIELD",
            "must be of type double",
            id="string-for-number",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE IsConverted = 'true'",
            "INVALID_FIELD",
            "must be of type boolean",
            id="string-for-boolean",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE ConvertedDate = 2025-01-01T00:00:00Z",
            "INVALID_FIELD",
            "must be of type date",
            id="datetime-for-date",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE IsConverted > false",
            "INVALID_FIELD",
            "invalid operator on boolean field",
            id="ordering-boolean",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE NumberOfEmployees LIKE '5%'",
            "INVALID_FIELD",
            "invalid operator on field",
            id="like-on-number",
        ),
        pytest.param(
            "SELECT Id FROM Lead WHERE Id = 'not-an-id'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid ID field: not-an-id",
            id="malformed-id-literal",
        ),
        pytest.param(
            f"SELECT Id FROM Lead WHERE Id = '{LEADS[0][:15]}XYZ'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid ID field",
            id="bad-checksum-id-literal",
        ),
        pytest.param(
            "SELECT COUNT() FROM Lead ORDER BY Id",
            "MALFORMED_QUERY",
            "Ordered field must be grouped",
            id="count-with-order",
        ),
    ],
)
def test_bad_queries_are_refused_with_salesforce_codes(query: str, code: str, detail: str) -> None:
    with pytest.raises(SoqlError) as caught:
        evaluate(query, OBJECTS, TABLES)
    assert caught.value.code == code
    assert detail in caught.value.message


def test_error_message_points_at_the_problem_like_salesforce() -> None:
    with pytest.raises(SoqlError) as caught:
        parse("SELECT Id FROM Lead WHERE Email = ")
    assert caught.value.message == (
        "\nSELECT Id FROM Lead WHERE Email = \n                                  ^\n"
        "ERROR at Row:1:Column:35\nunexpected token: '<EOF>'"
    )


def test_error_row_and_column_on_later_lines() -> None:
    with pytest.raises(SoqlError) as caught:
        evaluate("SELECT Id\nFROM Lead\nWHERE Nope = 'x'", OBJECTS, TABLES)
    assert "ERROR at Row:3:Column:7" in caught.value.message


def test_empty_query_is_malformed() -> None:
    with pytest.raises(SoqlError) as caught:
        parse("   ")
    assert caught.value.code == "MALFORMED_QUERY"


# --------------------------------------------------------------------------------------------- parser details


def test_string_escapes_decode() -> None:
    query = parse("SELECT Id FROM Lead WHERE LastName = 'a\\nb\\tc\\\\d\\u00e9\\\"'")
    assert query.where is not None
    assert query.where.literal.value == 'a\nb\tc\\d\u00e9"'  # type: ignore[union-attr]


def test_keywords_are_case_insensitive() -> None:
    assert lead_numbers(
        "select id from lead where country = 'GB' and not isconverted = TRUE order by id desc "
        "nulls last limit 1"
    ) == [1]


# --------------------------------------------------------------------------------------------- datetimes and ids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000+0000", id="z"),
        pytest.param("2024-01-01T02:30:00+02:30", "2024-01-01T00:00:00.000+0000", id="positive-offset"),
        pytest.param("2023-12-31T19:00:00-05:00", "2024-01-01T00:00:00.000+0000", id="negative-offset"),
        pytest.param("2024-01-01T00:00:00.123+0000", "2024-01-01T00:00:00.123+0000", id="salesforce-form"),
        pytest.param(
            "2024-01-01T00:00:00.123456+00:00", "2024-01-01T00:00:00.123+0000", id="python-isoformat"
        ),
        pytest.param("2024-01-01T00:00:00", "2024-01-01T00:00:00.000+0000", id="naive-is-utc"),
    ],
)
def test_datetimes_normalise_to_salesforce_form(text: str, expected: str) -> None:
    assert normalize_sf_datetime(text) == expected


def test_format_and_parse_round_trip() -> None:
    moment = datetime(2025, 5, 6, 7, 8, 9, 10_000, tzinfo=UTC)
    assert parse_sf_datetime(format_sf_datetime(moment)) == moment


def test_parse_rejects_non_datetimes() -> None:
    with pytest.raises(ValueError, match="not a datetime"):
        parse_sf_datetime("yesterday")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(LEADS[0], LEADS[0], id="eighteen"),
        pytest.param(LEADS[0][:15], LEADS[0], id="fifteen"),
        pytest.param(LEADS[0].lower(), LEADS[0], id="case-restored-from-suffix"),
        pytest.param(LEADS[0].upper(), LEADS[0], id="upper-case-restored"),
        pytest.param(LEADS[0][:15] + "ZZZ", None, id="wrong-checksum"),
        pytest.param("00Q-bad", None, id="bad-characters"),
        pytest.param("00Q8d00000", None, id="wrong-length"),
        pytest.param(None, None, id="not-a-string"),
    ],
)
def test_canonical_ids(value: object, expected: str | None) -> None:
    assert canonical_sf_id(value) == expected
