"""The Salesforce sandbox, driven only through simple-salesforce over HTTPS (raw requests only for the
sandbox's control endpoint and for headers the client does not expose)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.bulk2 import Operation
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from syncd.core.systems import SALESFORCE_OBJECTS, FieldSpec, OrgSchema
from syncd.sandbox.ids import is_valid_sf_id, sf_id
from syncd.sandbox.salesforce import INTEGRATION_USERNAME, client_session, stored_record
from syncd.sandbox.store import Store

if TYPE_CHECKING:
    from tests.sandbox.conftest import SfSandbox

SAM = "sam.patel@northwind.example"
SF_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


def new_lead(sf: Salesforce, **values: Any) -> str:
    body = {"LastName": "Lovelace", "Company": "Analytical Engines", **values}
    return str(sf.Lead.create(body)["id"])


def load_leads(sandbox: SfSandbox, n: int, **values: Any) -> list[str]:
    """n Leads straight into the store, one millisecond apart (SystemModstamp order = Id order)."""
    spec = SALESFORCE_OBJECTS["Lead"]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        stamp = (start + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.") + f"{i % 1000:03d}+0000"
        rows.append(
            stored_record(
                spec,
                sf_id("00Q", 10_000 + i),
                stamp,
                sandbox.app.integration_user_id,
                LastName=f"Lead {i:05d}",
                Company="Bulk Co",
                Status="Open - Not Contacted",
                **values,
            )
        )
    sandbox.store.put_many("Lead", rows)
    return [r["Id"] for r in rows]


def error_body(exc: pytest.ExceptionInfo[SalesforceError]) -> list[dict[str, Any]]:
    content = exc.value.content
    assert isinstance(content, list), content
    return content


# --------------------------------------------------------------------------------------------- connection


def test_client_session_trusts_the_sandbox_ca_even_when_requests_ca_bundle_points_elsewhere(
    sf_sandbox: SfSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    token = sf_sandbox.app.tokens["integration"]
    naive = requests.Session()
    naive.verify = str(sf_sandbox.tls.ca_file)
    with pytest.raises(requests.exceptions.SSLError):
        Salesforce(instance_url=sf_sandbox.server.url, session_id=token, session=naive).limits()
    pinned = client_session(sf_sandbox.tls.ca_file)
    sf = Salesforce(instance_url=sf_sandbox.server.url, session_id=token, session=pinned)
    assert sf.limits()["DailyApiRequests"]["Max"] == 15000


def test_bad_token_is_401_invalid_session_id(sf_sandbox: SfSandbox) -> None:
    sf = Salesforce(
        instance_url=sf_sandbox.server.url,
        session_id="not-a-token",
        session=client_session(sf_sandbox.tls.ca_file),
    )
    with pytest.raises(SalesforceExpiredSession) as caught:
        sf.query("SELECT Id FROM Lead")
    assert caught.value.status == 401
    assert error_body(caught) == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


def test_unknown_resource_is_404(sf_sandbox: SfSandbox) -> None:
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf_sandbox.client().restful("no/such/thing")
    assert error_body(caught)[0]["errorCode"] == "NOT_FOUND"


def test_integration_user_is_created_once_and_survives_a_restart(
    sf_start: Callable[..., SfSandbox], tmp_path: Path
) -> None:
    store = Store(tmp_path / "sf.db")
    first = sf_start(store)
    users = first.client().query(f"SELECT Id, IsActive FROM User WHERE Username = '{INTEGRATION_USERNAME}'")
    assert users["totalSize"] == 1 and users["records"][0]["IsActive"] is True
    lead = new_lead(first.client())
    first.server.stop()
    store.close()
    again = sf_start(Store(tmp_path / "sf.db"))
    assert again.app.integration_user_id == first.app.integration_user_id
    sf = again.client()
    assert sf.Lead.get(lead)["LastName"] == "Lovelace"
    assert new_lead(sf) != lead
    assert sf.query(f"SELECT COUNT() FROM User WHERE Username = '{INTEGRATION_USERNAME}'")["totalSize"] == 1
    assert again.app.usage() > 2, "the daily API usage is kept across restarts"


# --------------------------------------------------------------------------------------------- sObject rows


def test_create_sets_ids_system_fields_and_defaults(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    result = sf.Lead.create({"FirstName": "Ada", "LastName": "Lovelace", "Company": "Analytical Engines"})
    assert set(result) == {"id", "success", "errors"} and result["success"] is True and result["errors"] == []
    lead = sf.Lead.get(result["id"])
    assert len(lead["Id"]) == 18 and lead["Id"].startswith("00Q") and is_valid_sf_id(lead["Id"])
    assert lead["attributes"] == {"type": "Lead", "url": f"/services/data/v59.0/sobjects/Lead/{lead['Id']}"}
    assert lead["Name"] == "Ada Lovelace"
    assert lead["Status"] == "Open - Not Contacted"
    assert (
        lead["OwnerId"]
        == lead["CreatedById"]
        == lead["LastModifiedById"]
        == sf_sandbox.app.integration_user_id
    )
    assert lead["IsDeleted"] is False and lead["IsConverted"] is False
    for name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        assert SF_DATETIME.match(lead[name]), lead[name]
    # the clock is frozen at 2026-01-01: the integration User, created at start, took the first millisecond
    assert lead["CreatedDate"] == "2026-01-01T00:00:00.001+0000"
    assert set(SALESFORCE_OBJECTS["Lead"].names) <= set(lead)


def test_get_with_fields_parameter_returns_only_those(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    lead = new_lead(sf, Email="ada@analytical.example")
    assert sf.Lead.get(lead, params={"fields": "email,Id"}) == {
        "attributes": {"type": "Lead", "url": f"/services/data/v59.0/sobjects/Lead/{lead}"},
        "Email": "ada@analytical.example",
        "Id": lead,
    }
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.get(lead, params={"fields": "Emial"})
    assert error_body(caught)[0]["errorCode"] == "INVALID_FIELD"


def test_ids_are_case_insensitive_and_15_characters_work(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    lead = new_lead(sf)
    assert sf.Lead.get(lead.lower())["Id"] == lead
    assert sf.Lead.get(lead[:15])["Id"] == lead


def test_last_modified_by_is_the_user_of_the_calling_token(sf_sandbox: SfSandbox) -> None:
    lead = new_lead(sf_sandbox.client())
    assert sf_sandbox.client(SAM).Lead.update(lead, {"Title": "Countess"}) == 204
    record = sf_sandbox.client().Lead.get(lead)
    assert record["LastModifiedById"] == sf_sandbox.user_id("sam.patel")
    assert record["CreatedById"] == sf_sandbox.app.integration_user_id
    created_by_sam = new_lead(sf_sandbox.client(SAM))
    assert sf_sandbox.client().Lead.get(created_by_sam)["OwnerId"] == sf_sandbox.user_id("sam.patel")


def test_system_modstamp_strictly_increases_within_one_millisecond(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    first = new_lead(sf)
    second = new_lead(sf)
    sf.Lead.update(first, {"Title": "again"})
    stamps = [sf.Lead.get(first)["SystemModstamp"], sf.Lead.get(second)["SystemModstamp"]]
    pulled = sf.query("SELECT Id, SystemModstamp FROM Lead ORDER BY SystemModstamp")["records"]
    assert [r["Id"] for r in pulled] == [second, first]
    assert stamps == ["2026-01-01T00:00:00.003+0000", "2026-01-01T00:00:00.002+0000"]
    after_second = sf.query(f"SELECT Id FROM Lead WHERE SystemModstamp > {pulled[0]['SystemModstamp'][:23]}Z")
    assert [r["Id"] for r in after_second["records"]] == [first]


def test_update_is_204_and_changes_only_given_fields(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    lead = new_lead(sf, Email="ada@analytical.example")
    sf_sandbox.clock.advance(60)
    assert sf.Lead.update(lead, {"Title": "Countess", "Status": "Working - Contacted"}) == 204
    record = sf.Lead.get(lead)
    assert (record["Title"], record["Status"], record["Email"]) == (
        "Countess",
        "Working - Contacted",
        "ada@analytical.example",
    )
    assert record["LastModifiedDate"] == record["SystemModstamp"] > record["CreatedDate"]


@pytest.mark.parametrize(
    ("field", "sent", "stored"),
    [
        pytest.param("NumberOfEmployees", "250", 250, id="numeric-string-to-int"),
        pytest.param("AnnualRevenue", 1000, 1000.0, id="int-to-currency"),
        pytest.param("Syncd_Score__c", "72.5", 72.5, id="numeric-string-to-double"),
        pytest.param("Title", "", None, id="empty-string-is-null"),
        pytest.param("Status", "working - contacted", "Working - Contacted", id="picklist-canonical-case"),
    ],
)
def test_values_are_coerced_as_salesforce_does(
    sf_sandbox: SfSandbox, field: str, sent: Any, stored: Any
) -> None:
    sf = sf_sandbox.client()
    lead = new_lead(sf, **{field: sent})
    assert sf.Lead.get(lead)[field] == stored


def test_datetime_and_boolean_values_are_normalised(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    opp = sf.Opportunity.create(
        {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-03-31T12:00:00Z"}
    )
    assert sf.Opportunity.get(opp["id"])["CloseDate"] == "2026-03-31"
    user = sf.User.create(
        {
            "Username": "new@northwind.example",
            "Email": "new@northwind.example",
            "LastName": "New",
            "IsActive": "false",
        }
    )
    assert sf.User.get(user["id"])["IsActive"] is False


@pytest.mark.parametrize(
    ("stage", "closed", "won"),
    [
        pytest.param("Prospecting", False, False, id="open"),
        pytest.param("Closed Won", True, True, id="won"),
        pytest.param("Closed Lost", True, False, id="lost"),
    ],
)
def test_opportunity_closed_and_won_follow_the_stage(
    sf_sandbox: SfSandbox, stage: str, closed: bool, won: bool
) -> None:
    sf = sf_sandbox.client()
    opp = sf.Opportunity.create({"Name": "Deal", "StageName": "Qualification", "CloseDate": "2026-03-31"})[
        "id"
    ]
    sf.Opportunity.update(opp, {"StageName": stage})
    record = sf.Opportunity.get(opp)
    assert (record["IsClosed"], record["IsWon"]) == (closed, won)


def test_delete_is_soft_visible_to_query_all_only(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    kept, gone = new_lead(sf), new_lead(sf)
    assert sf.Lead.delete(gone) == 204
    assert [r["Id"] for r in sf.query("SELECT Id FROM Lead")["records"]] == [kept]
    every = sf.query_all("SELECT Id, IsDeleted FROM Lead ORDER BY Id", include_deleted=True)["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in every] == [(kept, False), (gone, True)]
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Lead.get(gone)
    assert error_body(caught)[0]["errorCode"] == "ENTITY_IS_DELETED"
    window = sf.Lead.deleted(datetime(2025, 12, 31, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    assert [d["id"] for d in window["deletedRecords"]] == [gone]
    assert sf.Lead.updated(datetime(2025, 12, 31, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))["ids"] == [
        kept
    ]


# --------------------------------------------------------------------------------------------- rejections


def _convert(sandbox: SfSandbox, lead: str) -> None:
    response = sandbox.control("POST", "convert-lead", {"lead_id": lead})
    assert response.status_code == 200, response.text


def _assign_inactive(sandbox: SfSandbox, lead: str) -> Any:
    return sandbox.client().Lead.update(lead, {"OwnerId": sandbox.user_id("olivia.davis")})


def _create_inactive_owned(sandbox: SfSandbox, lead: str) -> Any:
    return sandbox.client().Contact.create({"LastName": "X", "OwnerId": sandbox.user_id("grace.kim")})


def _update_converted(sandbox: SfSandbox, lead: str) -> Any:
    _convert(sandbox, lead)
    return sandbox.client().Lead.update(lead, {"Title": "too late"})


def _duplicate_external_id(sandbox: SfSandbox, lead: str) -> Any:
    sandbox.client().Lead.update(lead, {"Syncd_HubSpot_Id__c": "hs-42"})
    return new_lead(sandbox.client(), Syncd_HubSpot_Id__c="HS-42")


REJECTIONS = [
    pytest.param(
        lambda s, lead: s.client().Lead.create({"FirstName": "Ada"}),
        SalesforceMalformedRequest,
        {
            "message": "Required fields are missing: [LastName, Company]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["LastName", "Company"],
        },
        id="required-field-missing-on-create",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.update(lead, {"Company": None}),
        SalesforceMalformedRequest,
        {
            "message": "Required fields are missing: [Company]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["Company"],
        },
        id="required-field-blanked-on-update",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.update(lead, {"Favourite_Colour__c": "blue"}),
        SalesforceMalformedRequest,
        {
            "message": "No such column 'Favourite_Colour__c' on sobject of type Lead",
            "errorCode": "INVALID_FIELD",
            "fields": [],
        },
        id="unknown-field",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.update(lead, {"Name": "X", "IsConverted": True}),
        SalesforceMalformedRequest,
        {
            "message": "Unable to create/update fields: Name, IsConverted. Please check the security settings of "
            "this field and verify that it is read/write for your profile or permission set.",
            "errorCode": "INVALID_FIELD_FOR_INSERT_UPDATE",
            "fields": ["Name", "IsConverted"],
        },
        id="read-only-field",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.get(lead[:15] + "ZZZ"),
        SalesforceMalformedRequest,
        "MALFORMED_ID",
        id="bad-checksum-in-url",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.update("00Qnot-an-id", {"Title": "x"}),
        SalesforceMalformedRequest,
        "MALFORMED_ID",
        id="bad-id-in-url",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.get(sf_id("001", 1)),
        SalesforceMalformedRequest,
        "MALFORMED_ID",
        id="id-of-another-object",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.update(lead, {"OwnerId": "005xyz"}),
        SalesforceMalformedRequest,
        {
            "message": "Owner ID: id value of incorrect type: 005xyz",
            "errorCode": "MALFORMED_ID",
            "fields": ["OwnerId"],
        },
        id="malformed-reference",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.update(lead, {"OwnerId": sf_id("001", 5)}),
        SalesforceMalformedRequest,
        "FIELD_INTEGRITY_EXCEPTION",
        id="reference-to-wrong-object",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.update(lead, {"OwnerId": sf_id("005", 9999)}),
        SalesforceMalformedRequest,
        "INVALID_CROSS_REFERENCE_KEY",
        id="reference-to-nothing",
    ),
    pytest.param(
        _assign_inactive, SalesforceMalformedRequest, "INACTIVE_OWNER_OR_USER", id="inactive-owner-update"
    ),
    pytest.param(
        _create_inactive_owned,
        SalesforceMalformedRequest,
        "INACTIVE_OWNER_OR_USER",
        id="inactive-owner-create",
    ),
    pytest.param(
        _update_converted,
        SalesforceMalformedRequest,
        {
            "message": "cannot reference converted lead",
            "errorCode": "CANNOT_UPDATE_CONVERTED_LEAD",
            "fields": [],
        },
        id="converted-lead",
    ),
    pytest.param(
        _duplicate_external_id,
        SalesforceMalformedRequest,
        "DUPLICATE_VALUE",
        id="duplicate-external-id-ignores-case",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.update(lead, {"Email": "not an email"}),
        SalesforceMalformedRequest,
        "INVALID_EMAIL_ADDRESS",
        id="bad-email",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.update(lead, {"Status": "Hot"}),
        SalesforceMalformedRequest,
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        id="restricted-picklist",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.update(lead, {"NumberOfEmployees": "many"}),
        SalesforceMalformedRequest,
        "JSON_PARSER_ERROR",
        id="wrong-value-type",
    ),
    pytest.param(
        lambda s, lead: s.client().Lead.get(sf_id("00Q", 99_999)),
        SalesforceResourceNotFound,
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"},
        id="not-found",
    ),
    pytest.param(
        lambda s, lead: s.client().Gadget__c.create({"Name": "x"}),
        SalesforceResourceNotFound,
        "NOT_FOUND",
        id="unknown-object",
    ),
]


@pytest.mark.parametrize(("action", "exception", "expected"), REJECTIONS)
def test_rejections_use_salesforce_error_bodies(
    sf_sandbox: SfSandbox,
    action: Callable[[SfSandbox, str], Any],
    exception: type[SalesforceError],
    expected: Any,
) -> None:
    lead = new_lead(sf_sandbox.client())
    with pytest.raises(exception) as caught:
        action(sf_sandbox, lead)
    (body,) = error_body(caught)  # type: ignore[arg-type]
    if isinstance(expected, dict):
        assert body == expected
    else:
        assert body["errorCode"] == expected and body["message"]


def test_failed_write_changes_nothing(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    lead = new_lead(sf)
    before = sf.Lead.get(lead)
    with pytest.raises(SalesforceMalformedRequest):
        sf.Lead.update(lead, {"Title": "x", "OwnerId": sf_sandbox.user_id("olivia.davis")})
    assert sf.Lead.get(lead) == before


def test_queue_can_own_a_lead_but_not_a_contact(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    queue = sf_sandbox.queue_id("EMEA_Lead_Queue")
    lead = new_lead(sf, OwnerId=queue)
    assert sf.Lead.get(lead)["OwnerId"] == queue
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Contact.create({"LastName": "X", "OwnerId": queue})
    assert error_body(caught)[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"


def test_inactive_owner_may_stay_when_other_fields_change(sf_sandbox: SfSandbox) -> None:
    olivia = sf_sandbox.user_id("olivia.davis")
    (lead,) = load_leads(sf_sandbox, 1, OwnerId=olivia)
    sf = sf_sandbox.client()
    assert sf.Lead.update(lead, {"OwnerId": olivia, "Title": "still hers"}) == 204


# --------------------------------------------------------------------------------------------- upsert


def test_upsert_creates_with_201_then_updates_with_200_created_false(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    created = sf.Lead.upsert(
        "Syncd_HubSpot_Id__c/hs-7", {"LastName": "Hopper", "Company": "Navy"}, raw_response=True
    )
    assert created.status_code == 201
    body = created.json()
    assert body["success"] is True and body["created"] is True and body["errors"] == []
    assert sf.Lead.get(body["id"])["Syncd_HubSpot_Id__c"] == "hs-7"
    updated = sf.Lead.upsert("Syncd_HubSpot_Id__c/HS-7", {"Title": "Rear Admiral"}, raw_response=True)
    assert updated.status_code == 200
    assert updated.json() == {"id": body["id"], "success": True, "errors": [], "created": False}
    assert sf.Lead.get_by_custom_id("Syncd_HubSpot_Id__c", "hs-7")["Title"] == "Rear Admiral"
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 1


def test_upsert_by_id_updates(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    lead = new_lead(sf)
    assert sf.Lead.upsert(f"Id/{lead}", {"Title": "by id"}) == 200
    assert sf.Lead.get(lead)["Title"] == "by id"


def test_upsert_with_several_matches_is_300_with_their_urls(sf_sandbox: SfSandbox) -> None:
    first, second = load_leads(sf_sandbox, 2, Syncd_HubSpot_Id__c="hs-dup")
    sf = sf_sandbox.client()
    with pytest.raises(SalesforceMoreThanOneRecord) as caught:
        sf.Lead.upsert("Syncd_HubSpot_Id__c/hs-dup", {"Title": "which one?"})
    assert caught.value.status == 300
    assert caught.value.content == [
        f"/services/data/v59.0/sobjects/Lead/{first}",
        f"/services/data/v59.0/sobjects/Lead/{second}",
    ]
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Lead.get_by_custom_id("Syncd_HubSpot_Id__c", "hs-dup")


def test_upsert_on_a_field_that_is_not_an_external_id_is_refused(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.upsert("Email/ada@example.com", {"LastName": "X", "Company": "Y"})
    assert error_body(caught)[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.upsert("Nope__c/1", {"LastName": "X", "Company": "Y"})


# --------------------------------------------------------------------------------------------- query


def test_query_pages_at_2000_with_next_records_url(sf_sandbox: SfSandbox) -> None:
    ids = load_leads(sf_sandbox, 4500)
    sf = sf_sandbox.client()
    first = sf.query("SELECT Id FROM Lead ORDER BY Id")
    assert (first["totalSize"], first["done"], len(first["records"])) == (4500, False, 2000)
    assert re.fullmatch(r"/services/data/v59\.0/query/01g\w{12}-2000", first["nextRecordsUrl"])
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert (second["done"], len(second["records"])) == (False, 2000)
    assert second["nextRecordsUrl"].endswith("-4000")
    third = sf.query_more(second["nextRecordsUrl"].rsplit("/", 1)[1])
    assert third["done"] is True and "nextRecordsUrl" not in third and len(third["records"]) == 500
    pulled = [r["Id"] for page in (first, second, third) for r in page["records"]]
    assert pulled == ids


def test_query_all_iter_streams_every_page_in_order(sf_sandbox: SfSandbox) -> None:
    ids = load_leads(sf_sandbox, 4100)
    sf = sf_sandbox.client()
    pulled = [
        r["Id"]
        for r in sf.query_all_iter(
            "SELECT Id FROM Lead WHERE SystemModstamp > 2024-12-31T00:00:00Z ORDER BY SystemModstamp, Id"
        )
    ]
    assert pulled == ids


@pytest.mark.parametrize(
    ("header", "page"),
    [
        pytest.param("batchSize=500", 500, id="in-range"),
        pytest.param("batchSize=50", 200, id="below-minimum"),
        pytest.param("batchSize=9000", 2000, id="above-maximum"),
    ],
)
def test_batch_size_header(sf_sandbox: SfSandbox, header: str, page: int) -> None:
    load_leads(sf_sandbox, 2500)
    sf = sf_sandbox.client()
    result = sf.query("SELECT Id FROM Lead", headers={"Sforce-Query-Options": header})
    assert len(result["records"]) == page
    more = sf.query_more(result["nextRecordsUrl"], identifier_is_url=True)
    assert len(more["records"]) == min(page, 2500 - page)


def test_query_all_includes_deleted_rows_across_pages(sf_sandbox: SfSandbox) -> None:
    ids = load_leads(sf_sandbox, 2300)
    sf = sf_sandbox.client()
    for lead in ids[-3:]:
        sf.Lead.delete(lead)
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 2297
    every = list(sf.query_all_iter("SELECT Id, IsDeleted FROM Lead ORDER BY Id", include_deleted=True))
    assert len(every) == 2300
    assert [r["Id"] for r in every if r["IsDeleted"]] == ids[-3:]


def test_query_counts_and_aggregates(sf_sandbox: SfSandbox) -> None:
    load_leads(sf_sandbox, 30)
    sf = sf_sandbox.client()
    assert sf.query("SELECT COUNT() FROM Lead WHERE LastName LIKE 'Lead 0001%'") == {
        "totalSize": 10,
        "done": True,
        "records": [],
    }
    aggregate = sf.query("SELECT COUNT(Id) FROM Lead")
    assert aggregate["records"] == [{"attributes": {"type": "AggregateResult"}, "expr0": 30}]


def test_query_returns_parent_fields_as_nested_objects(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    account = sf.Account.create({"Name": "Acme", "OwnerId": sf_sandbox.user_id("jack.miller")})["id"]
    sf.Contact.create({"LastName": "Weber", "AccountId": account})
    queued = new_lead(sf, OwnerId=sf_sandbox.queue_id("Unassigned_Leads"))
    (contact,) = sf.query("SELECT LastName, Account.Name, Account.Owner.Email FROM Contact")["records"]
    assert contact["Account"]["Name"] == "Acme"
    assert contact["Account"]["Owner"]["Email"] == "jack.miller@northwind.example"
    assert contact["Account"]["attributes"]["type"] == "Account"
    (lead,) = sf.query(f"SELECT Owner.Name, Owner.Type, Owner.IsActive FROM Lead WHERE Id = '{queued}'")[
        "records"
    ]
    assert lead["Owner"]["attributes"]["type"] == "Name"
    assert (lead["Owner"]["Name"], lead["Owner"]["Type"], lead["Owner"]["IsActive"]) == (
        "Unassigned Leads",
        "Queue",
        None,
    )


def test_queues_are_queried_from_group(sf_sandbox: SfSandbox) -> None:
    queues = sf_sandbox.client().query(
        "SELECT Id, Name, DeveloperName FROM Group WHERE Type = 'Queue' ORDER BY Name"
    )
    assert [(q["Name"], q["DeveloperName"]) for q in queues["records"]] == [
        ("EMEA Lead Queue", "EMEA_Lead_Queue"),
        ("Unassigned Leads", "Unassigned_Leads"),
    ]
    assert all(q["Id"].startswith("00G") for q in queues["records"])


def test_inactive_owners_are_found_by_owner_is_active(sf_sandbox: SfSandbox) -> None:
    stale = load_leads(sf_sandbox, 3, OwnerId=sf_sandbox.user_id("grace.kim"))
    sf = sf_sandbox.client()
    new_lead(sf, OwnerId=sf_sandbox.user_id("sam.patel"))
    found = sf.query("SELECT Id FROM Lead WHERE Owner.IsActive = false AND Owner.Type = 'User' ORDER BY Id")
    assert [r["Id"] for r in found["records"]] == stale


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        pytest.param("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY", id="malformed"),
        pytest.param("SELECT Emial FROM Lead", "INVALID_FIELD", id="unknown-field"),
        pytest.param("SELECT Id FROM Leed", "INVALID_TYPE", id="unknown-object"),
        pytest.param(
            "SELECT Id FROM Lead WHERE CreatedDate > '2020-01-01'", "INVALID_FIELD", id="type-mismatch"
        ),
    ],
)
def test_bad_soql_is_400_with_salesforce_code(sf_sandbox: SfSandbox, soql: str, code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf_sandbox.client().query(soql)
    (body,) = error_body(caught)
    assert body["errorCode"] == code and "ERROR at Row:1:Column:" in body["message"]


def test_query_locator_expires_after_15_idle_minutes(sf_sandbox: SfSandbox) -> None:
    load_leads(sf_sandbox, 2100)
    sf = sf_sandbox.client()
    first = sf.query("SELECT Id FROM Lead")
    sf_sandbox.clock.advance(14 * 60)
    assert sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)["done"] is True
    sf_sandbox.clock.advance(15 * 60 + 1)
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert error_body(caught)[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_unknown_query_locator_is_refused(sf_sandbox: SfSandbox) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf_sandbox.client().query_more("01g8d00000000zz-2000")
    assert error_body(caught)[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


# --------------------------------------------------------------------------------------------- collections


def collection(sf: Salesforce, method: str, body: Any = None, **params: Any) -> Any:
    return sf.restful("composite/sobjects", method=method, json=body, params=params or None)


def test_collection_create_reports_each_record_in_order(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    results = collection(
        sf,
        "POST",
        {
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Lead"}, "LastName": "One", "Company": "A"},
                {"attributes": {"type": "Lead"}, "LastName": "Two"},
                {"attributes": {"type": "Account"}, "Name": "Acme"},
            ],
        },
    )
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Company]",
                "fields": ["Company"],
            }
        ],
    }
    assert results[0]["id"].startswith("00Q") and results[2]["id"].startswith("001")
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 1


def test_collection_all_or_none_rolls_everything_back(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    lead = new_lead(sf)
    results = collection(
        sf,
        "PATCH",
        {
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "Lead"}, "id": lead, "Title": "changed"},
                {"attributes": {"type": "Lead"}, "id": lead[:15] + "ZZZ", "Title": "bad id"},
            ],
        },
    )
    assert results[0] == {
        "id": lead,
        "success": False,
        "errors": [
            {
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": "Record rolled back because not all records were valid and the request was using AllOrNone "
                "header",
                "fields": [],
            }
        ],
    }
    assert results[1]["errors"][0]["statusCode"] == "MALFORMED_ID"
    assert sf.Lead.get(lead)["Title"] is None


def test_collection_update_partial_success(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    good, converted = new_lead(sf), new_lead(sf)
    _convert(sf_sandbox, converted)
    results = collection(
        sf,
        "PATCH",
        {
            "records": [
                {"attributes": {"type": "Lead"}, "id": good, "OwnerId": sf_sandbox.user_id("sam.patel")},
                {"attributes": {"type": "Lead"}, "id": converted, "OwnerId": sf_sandbox.user_id("sam.patel")},
            ]
        },
    )
    assert results[0] == {"id": good, "success": True, "errors": []}
    assert results[1]["id"] == converted
    assert results[1]["errors"][0]["statusCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert sf.Lead.get(good)["OwnerId"] == sf_sandbox.user_id("sam.patel")


def test_collection_upsert_by_external_id(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    existing = new_lead(sf, Syncd_HubSpot_Id__c="hs-1")
    results = sf.restful(
        "composite/sobjects/Lead/Syncd_HubSpot_Id__c",
        method="PATCH",
        json={
            "records": [
                {"attributes": {"type": "Lead"}, "Syncd_HubSpot_Id__c": "hs-1", "Title": "updated"},
                {
                    "attributes": {"type": "Lead"},
                    "Syncd_HubSpot_Id__c": "hs-2",
                    "LastName": "New",
                    "Company": "Co",
                },
            ]
        },
    )
    assert results[0] == {"id": existing, "success": True, "errors": [], "created": False}
    assert results[1]["created"] is True and results[1]["success"] is True
    assert sf.Lead.get_by_custom_id("Syncd_HubSpot_Id__c", "hs-2")["Id"] == results[1]["id"]


def test_collection_delete_and_retrieve(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    a, b = new_lead(sf, Email="a@x.example"), new_lead(sf, Email="b@x.example")
    got = sf.restful("composite/sobjects/Lead", params={"ids": f"{a},{b}", "fields": "Id,Email"})
    assert [r["Email"] for r in got] == ["a@x.example", "b@x.example"]
    results = collection(sf, "DELETE", ids=f"{a},{sf_id('00Q', 77_777)}")
    assert results[0] == {"id": a, "success": True, "errors": []}
    assert results[1]["success"] is False and results[1]["errors"][0]["statusCode"] == "NOT_FOUND"
    assert sf.restful("composite/sobjects/Lead", params={"ids": f"{a},{b}", "fields": "Id"})[0] is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(
            {"records": [{"attributes": {"type": "Lead"}, "LastName": "x", "Company": "y"}] * 201},
            "EXCEEDED_ID_LIMIT",
            id="more-than-200",
        ),
        pytest.param({"records": "not a list"}, "JSON_PARSER_ERROR", id="records-not-a-list"),
        pytest.param({"records": [{"LastName": "x"}]}, "INVALID_TYPE", id="missing-type"),
    ],
)
def test_collection_refuses_malformed_requests_whole(sf_sandbox: SfSandbox, body: Any, code: str) -> None:
    sf = sf_sandbox.client()
    with pytest.raises(SalesforceMalformedRequest) as caught:
        collection(sf, "POST", body)
    assert error_body(caught)[0]["errorCode"] == code
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0


# --------------------------------------------------------------------------------------------- composite


def test_composite_chains_references_and_counts_as_one_call(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    before = sf_sandbox.app.usage()
    result = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Account",
                    "referenceId": "acct",
                    "body": {"Name": "Acme"},
                },
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Contact",
                    "referenceId": "person",
                    "body": {"LastName": "Weber", "AccountId": "@{acct.id}"},
                },
                {
                    "method": "GET",
                    "url": "/services/data/v59.0/query/?q=SELECT+Id,Account.Name+FROM+Contact",
                    "referenceId": "check",
                },
                {
                    "method": "GET",
                    "url": "/services/data/v59.0/sobjects/Contact/@{check.records[0].Id}",
                    "referenceId": "again",
                },
            ],
        },
    )
    responses = {r["referenceId"]: r for r in result["compositeResponse"]}
    assert responses["acct"]["httpStatusCode"] == 201
    assert responses["acct"]["httpHeaders"]["Location"].endswith(responses["acct"]["body"]["id"])
    assert responses["check"]["body"]["records"][0]["Account"]["Name"] == "Acme"
    assert responses["again"]["body"]["AccountId"] == responses["acct"]["body"]["id"]
    assert sf_sandbox.app.usage() == before + 1


def test_composite_all_or_none_rolls_back_on_failure(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    result = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Account",
                    "referenceId": "acct",
                    "body": {"Name": "Acme"},
                },
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Lead",
                    "referenceId": "bad",
                    "body": {"LastName": "No Company"},
                },
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Account",
                    "referenceId": "later",
                    "body": {"Name": "Never"},
                },
            ],
        },
    )
    codes = [
        (r["referenceId"], r["httpStatusCode"], r["body"][0]["errorCode"])
        for r in result["compositeResponse"]
    ]
    assert codes == [
        ("acct", 400, "PROCESSING_HALTED"),
        ("bad", 400, "REQUIRED_FIELD_MISSING"),
        ("later", 400, "PROCESSING_HALTED"),
    ]
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_composite_without_all_or_none_keeps_what_succeeded(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    result = sf.restful(
        "composite",
        method="POST",
        json={
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Lead",
                    "referenceId": "bad",
                    "body": {"LastName": "No Company"},
                },
                {
                    "method": "PATCH",
                    "url": "/services/data/v59.0/sobjects/Lead/@{bad.id}",
                    "referenceId": "dependent",
                    "body": {"Title": "x"},
                },
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Account",
                    "referenceId": "fine",
                    "body": {"Name": "Kept"},
                },
            ]
        },
    )
    statuses = [(r["referenceId"], r["httpStatusCode"]) for r in result["compositeResponse"]]
    assert statuses == [("bad", 400), ("dependent", 400), ("fine", 201)]
    assert result["compositeResponse"][1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 1


def test_composite_refuses_more_than_25_subrequests(sf_sandbox: SfSandbox) -> None:
    subs = [
        {"method": "GET", "url": "/services/data/v59.0/limits", "referenceId": f"r{i}"} for i in range(26)
    ]
    result = sf_sandbox.client().restful("composite", method="POST", json={"compositeRequest": subs})
    (only,) = result["compositeResponse"]
    assert only["httpStatusCode"] == 400 and only["referenceId"] is None
    assert only["body"][0]["errorCode"] == "LIMIT_EXCEEDED"


# --------------------------------------------------------------------------------------------- describe


def test_describe_global_and_object(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    names = {o["name"]: o["keyPrefix"] for o in sf.describe()["sobjects"]}
    assert names == {
        "User": "005",
        "Group": "00G",
        "Account": "001",
        "Lead": "00Q",
        "Contact": "003",
        "Opportunity": "006",
        "AccountTeamMember": "01M",
    }
    fields = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    assert (
        fields["Syncd_HubSpot_Id__c"]["externalId"] is True
        and fields["Syncd_HubSpot_Id__c"]["custom"] is True
    )
    assert (
        fields["OwnerId"]["referenceTo"] == ["User", "Group"]
        and fields["OwnerId"]["relationshipName"] == "Owner"
    )
    assert fields["Name"]["updateable"] is False
    assert "Closed - Converted" in [p["value"] for p in fields["Status"]["picklistValues"]]
    assert sf.Lead.metadata()["objectDescribe"]["keyPrefix"] == "00Q"


def test_custom_fields_from_the_schema_are_writable_and_queryable(sf_start: Callable[..., SfSandbox]) -> None:
    schema = OrgSchema().with_custom("salesforce", "Lead", FieldSpec("Partner_Score__c", "double"))
    sandbox = sf_start(schema=schema)
    sf = sandbox.client()
    lead = new_lead(sf, Partner_Score__c=12.5)
    assert sf.query("SELECT Id FROM Lead WHERE Partner_Score__c > 10")["records"][0]["Id"] == lead
    assert "Partner_Score__c" in {f["name"] for f in sf.Lead.describe()["fields"]}


# --------------------------------------------------------------------------------------------- limits and faults


def test_usage_header_and_limits_resource(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    sf.query("SELECT Id FROM Lead")
    assert sf.api_usage["api-usage"].used == 1 and sf.api_usage["api-usage"].total == 15000
    assert sf.limits()["DailyApiRequests"] == {"Max": 15000, "Remaining": 14998}
    token = sf_sandbox.app.tokens["integration"]
    failed = client_session(sf_sandbox.tls.ca_file).get(
        f"{sf_sandbox.server.url}/services/data/v59.0/query/?q=SELECT",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert failed.status_code == 400
    assert failed.headers["Sforce-Limit-Info"] == "api-usage=3/15000"


def test_daily_allowance_spent_is_403_until_the_window_rolls(sf_start: Callable[..., SfSandbox]) -> None:
    sandbox = sf_start(daily_limit=100)
    sf = sandbox.client()
    assert sandbox.control("PUT", "limits", {"usage": 100}).json()["usage"] == 100
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT Id FROM Lead")
    assert error_body(caught) == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert sandbox.control("GET", "limits").json() == {"rate_limits": True, "daily_limit": 100, "usage": 100}
    sandbox.control("PUT", "limits", {"rate_limits": False})
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0
    sandbox.control("PUT", "limits", {"rate_limits": True})
    with pytest.raises(SalesforceRefusedRequest):
        sf.query("SELECT Id FROM Lead")
    sandbox.clock.advance(24 * 3600 + 60)
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0
    assert sf.api_usage["api-usage"].used == 1


def test_injected_429_is_sent_as_503(sf_sandbox: SfSandbox) -> None:
    sf_sandbox.control("PUT", "faults", {"status_429": 1.0, "retry_after": 2})
    with pytest.raises(SalesforceGeneralError) as caught:
        sf_sandbox.client().query("SELECT Id FROM Lead")
    assert caught.value.status == 503
    assert error_body(caught)[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert "429" not in sf_sandbox.control("GET", "counts").json()["by_status"]


# --------------------------------------------------------------------------------------------- Bulk API 2.0


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_bulk_query_pages_csv_by_locator(sf_sandbox: SfSandbox) -> None:
    ids = load_leads(sf_sandbox, 5)
    sf_sandbox.store.put("Lead", {**sf_sandbox.store.get("Lead", ids[4]), "IsDeleted": True})  # type: ignore[dict-item]
    sf = sf_sandbox.client()
    pages = list(
        sf.bulk2.Lead.query(
            "SELECT Id, LastName, Owner.Email, IsDeleted FROM Lead ORDER BY Id", max_records=3, wait=0
        )
    )
    assert len(pages) == 2
    rows = [row for page in pages for row in parse_csv(page)]  # type: ignore[arg-type]
    assert [r["Id"] for r in rows] == ids[:4]
    assert rows[0] == {"Id": ids[0], "LastName": "Lead 00000", "Owner.Email": "", "IsDeleted": "false"}
    assert pages[0].startswith('"Id","LastName","Owner.Email","IsDeleted"\n')  # type: ignore[union-attr]
    every = list(sf.bulk2.Lead.query_all("SELECT Id FROM Lead", wait=0))
    assert len(parse_csv(every[0])) == 5


def test_bulk_query_job_moves_through_poll_states(sf_sandbox: SfSandbox) -> None:
    load_leads(sf_sandbox, 3)
    client = sf_sandbox.client().bulk2.Lead._client
    job = client.create_job(Operation.query, "SELECT Id FROM Lead")
    assert job["state"] == "UploadComplete" and job["id"].startswith("750")
    assert client.get_job(job["id"], True)["state"] == "InProgress"
    done = client.get_job(job["id"], True)
    assert done["state"] == "JobComplete" and done["numberRecordsProcessed"] == 3
    first = client.get_query_results(job["id"], "", 2)
    assert (first["number_of_records"], bool(first["locator"])) == (2, True)
    last = client.get_query_results(job["id"], first["locator"], 2)
    assert (last["number_of_records"], last["locator"]) == (1, "")


def test_bulk_query_with_bad_soql_is_refused(sf_sandbox: SfSandbox) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        list(sf_sandbox.client().bulk2.Lead.query("SELECT Nope FROM Lead", wait=0))
    assert error_body(caught)[0]["errorCode"] == "INVALID_FIELD"


def test_bulk_insert_reports_successful_and_failed_rows(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    (result,) = sf.bulk2.Lead.insert(
        records=[
            {"LastName": "Ok", "Company": "Co", "Email": "ok@x.example"},
            {"LastName": "Broken", "Company": "", "Email": "broken@x.example"},
        ],
        wait=0,
    )
    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"]) == (2, 1)
    ok = parse_csv(sf.bulk2.Lead.get_successful_records(result["job_id"]))
    assert len(ok) == 1 and ok[0]["sf__Created"] == "true" and ok[0]["Email"] == "ok@x.example"
    assert sf.Lead.get(ok[0]["sf__Id"])["LastName"] == "Ok"
    failed = parse_csv(sf.bulk2.Lead.get_failed_records(result["job_id"]))
    assert failed[0]["sf__Id"] == "" and failed[0]["Email"] == "broken@x.example"
    assert failed[0]["sf__Error"].startswith("REQUIRED_FIELD_MISSING:Required fields are missing: [Company]")
    assert parse_csv(sf.bulk2.Lead.get_unprocessed_records(result["job_id"])) == []


def test_bulk_update_upsert_and_delete(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    a, b = new_lead(sf), new_lead(sf, Syncd_HubSpot_Id__c="hs-9")
    sam = sf_sandbox.user_id("sam.patel")
    (updated,) = sf.bulk2.Lead.update(records=[{"Id": a, "OwnerId": sam}], wait=0)
    assert updated["numberRecordsFailed"] == 0 and sf.Lead.get(a)["OwnerId"] == sam
    (upserted,) = sf.bulk2.Lead.upsert(
        records=[
            {"Syncd_HubSpot_Id__c": "hs-9", "Title": "upserted"},
            {"Syncd_HubSpot_Id__c": "hs-10", "LastName": "Fresh", "Company": "Co"},
        ],
        external_id_field="Syncd_HubSpot_Id__c",
        wait=0,
    )
    assert upserted["numberRecordsFailed"] == 0
    assert sf.Lead.get(b)["Title"] == "upserted"
    assert sf.Lead.get_by_custom_id("Syncd_HubSpot_Id__c", "hs-10")["LastName"] == "Fresh"
    (deleted,) = sf.bulk2.Lead.delete(records=[{"Id": a}], wait=0)
    assert deleted["numberRecordsFailed"] == 0
    assert sf.query(f"SELECT COUNT() FROM Lead WHERE Id = '{a}'")["totalSize"] == 0


# --------------------------------------------------------------------------------------------- lead conversion


def test_convert_lead_creates_account_and_contact_like_salesforce(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    sam = sf_sandbox.user_id("sam.patel")
    lead = new_lead(
        sf,
        FirstName="Ada",
        Email="ada@analytical.example",
        Country="GB",
        OwnerId=sam,
        Syncd_HubSpot_Id__c="hs-1",
    )
    converted = sf_sandbox.control("POST", "convert-lead", {"lead_id": lead}).json()
    record = sf.Lead.get(lead)
    assert record["IsConverted"] is True and record["Status"] == "Closed - Converted"
    assert record["ConvertedDate"] == "2026-01-01"
    assert (record["ConvertedContactId"], record["ConvertedAccountId"]) == (
        converted["contact_id"],
        converted["account_id"],
    )
    contact = sf.Contact.get(converted["contact_id"])
    assert (
        contact["Name"],
        contact["Email"],
        contact["AccountId"],
        contact["OwnerId"],
        contact["MailingCountry"],
    ) == ("Ada Lovelace", "ada@analytical.example", converted["account_id"], sam, "GB")
    assert contact["Syncd_HubSpot_Id__c"] == "hs-1"
    assert sf.Account.get(converted["account_id"])["Name"] == "Analytical Engines"
    again = sf_sandbox.control("POST", "convert-lead", {"lead_id": lead})
    assert again.status_code == 400 and again.json()["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"


def test_convert_lead_into_an_existing_account(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    account = sf.Account.create({"Name": "Existing"})["id"]
    lead = new_lead(sf)
    converted = sf_sandbox.control("POST", "convert-lead", {"lead_id": lead, "account_id": account}).json()
    assert converted["account_id"] == account
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 1
