"""The Salesforce sandbox where a real org is harsher than a kind fake: composite limits, upsert answers,
replication windows, the full /limits, API versions, keep-alive connections, merges and field limits.

Each behaviour is documented by Salesforce; the source is cited next to the code in syncd/sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from syncd.core.systems import SALESFORCE_OBJECTS
from syncd.sandbox.ids import sf_id
from syncd.sandbox.salesforce import client_session, stored_record

if TYPE_CHECKING:
    from tests.sandbox.conftest import HsSandbox, SfSandbox

SF_EPOCH = 1_767_225_600.0  # the sandbox fixtures' clock: 2026-01-01T00:00:00Z
SAM = "sam.patel@northwind.example"
V = "/services/data/v59.0"
NOW = datetime.fromtimestamp(SF_EPOCH, UTC)


def new_lead(sf: Salesforce, **values: Any) -> str:
    body = {"LastName": "Lovelace", "Company": "Analytical Engines", **values}
    return str(sf.Lead.create(body)["id"])


def error_of(exc: pytest.ExceptionInfo[SalesforceError]) -> dict[str, Any]:
    content = exc.value.content
    assert isinstance(content, list) and len(content) == 1, content
    return dict(content[0])


def composite(sf: Salesforce, subrequests: list[dict[str, Any]], **options: Any) -> list[dict[str, Any]]:
    result = sf.restful("composite", method="POST", json={**options, "compositeRequest": subrequests})
    return list(result["compositeResponse"])


def query_sub(ref: str, soql: str = "SELECT Id FROM Lead", **extra: Any) -> dict[str, Any]:
    return {"method": "GET", "url": f"{V}/query/?q={soql.replace(' ', '+')}", "referenceId": ref, **extra}


# ------------------------------------------------------------------------------------------------ composite


def test_composite_counts_as_one_api_call_and_honours_subrequest_headers(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    for n in range(450):
        sf_sandbox.store.put(
            "Lead",
            stored_record(
                SALESFORCE_OBJECTS["Lead"],
                sf_id("00Q", 20_000 + n),
                "2025-12-01T00:00:00.000+0000",
                sf_sandbox.app.integration_user_id,
                LastName=f"L{n}",
                Company="C",
            ),
        )
    before = sf_sandbox.app.usage()
    sf_sandbox.app.counters.reset()
    answers = composite(
        sf,
        [
            query_sub("leads", httpHeaders={"Sforce-Query-Options": "batchSize=200"}),
            query_sub("accounts", "SELECT Id FROM Account"),
        ],
        allOrNone=False,
        collateSubrequests=False,
    )
    assert [(a["referenceId"], a["httpStatusCode"]) for a in answers] == [("leads", 200), ("accounts", 200)]
    leads = answers[0]["body"]
    assert len(leads["records"]) == 200 and leads["totalSize"] == 450 and not leads["done"]
    assert sf_sandbox.app.usage() == before + 1
    assert sf_sandbox.app.counters.snapshot()["by_kind"] == {"POST composite": 1}
    # The query's next pages come by ordinary query-more calls.
    more = sf.query_more(leads["nextRecordsUrl"], identifier_is_url=True)
    assert len(more["records"]) == 200


@pytest.mark.parametrize(
    ("subrequests", "allowed"),
    [
        pytest.param([query_sub(f"q{i}") for i in range(5)], True, id="five-queries"),
        pytest.param([query_sub(f"q{i}") for i in range(6)], False, id="six-queries"),
        pytest.param(
            [
                *[query_sub(f"q{i}") for i in range(3)],
                *[
                    {
                        "method": "GET",
                        "url": f"{V}/queryAll/?q=SELECT+Id+FROM+Lead",
                        "referenceId": f"all{i}",
                    }
                    for i in range(3)
                ],
            ],
            False,
            id="queries-and-query-alls",
        ),
        pytest.param(
            [
                {
                    "method": "POST",
                    "url": f"{V}/composite/sobjects",
                    "referenceId": f"c{i}",
                    "body": {"records": [{"attributes": {"type": "Account"}, "Name": f"A{i}"}]},
                }
                for i in range(6)
            ],
            False,
            id="six-collections",
        ),
        pytest.param(
            [{"method": "GET", "url": f"{V}/limits", "referenceId": f"l{i}"} for i in range(25)],
            True,
            id="twenty-five-other-subrequests",
        ),
    ],
)
def test_composite_allows_at_most_five_query_or_collection_subrequests(
    sf_sandbox: SfSandbox, subrequests: list[dict[str, Any]], allowed: bool
) -> None:
    answers = composite(sf_sandbox.client(), subrequests)
    if allowed:
        assert [a["httpStatusCode"] for a in answers] == [200] * len(subrequests)
        return
    (only,) = answers
    assert (only["httpStatusCode"], only["referenceId"]) == (400, None)
    assert only["body"][0]["errorCode"] == "LIMIT_EXCEEDED"
    assert sf_sandbox.store.count("Account") == 0


def test_composite_subrequest_cannot_set_authorization(sf_sandbox: SfSandbox) -> None:
    with pytest.raises(SalesforceMalformedRequest):
        composite(sf_sandbox.client(), [query_sub("q", httpHeaders={"Authorization": "Bearer x"})])


def test_composite_subrequest_of_an_unknown_version_is_404_there(sf_sandbox: SfSandbox) -> None:
    answers = composite(
        sf_sandbox.client(),
        [query_sub("ok"), {"method": "GET", "url": "/services/data/v99.0/limits", "referenceId": "future"}],
    )
    assert [(a["referenceId"], a["httpStatusCode"]) for a in answers] == [("ok", 200), ("future", 404)]
    assert answers[1]["body"][0]["errorCode"] == "NOT_FOUND"


# ------------------------------------------------------------------------------------------------- upsert


def test_upsert_that_updates_is_200_with_created_false(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    created = sf.Lead.upsert("Syncd_HubSpot_Id__c/hs-1", {"LastName": "A", "Company": "B"}, raw_response=True)
    assert created.status_code == 201 and created.json()["created"] is True
    updated = sf.Lead.upsert("Syncd_HubSpot_Id__c/hs-1", {"Title": "CTO"}, raw_response=True)
    assert updated.status_code == 200
    assert updated.json() == {"id": created.json()["id"], "success": True, "errors": [], "created": False}


def test_upsert_that_updates_before_api_46_is_204_without_a_body(sf_sandbox: SfSandbox) -> None:
    old = Salesforce(
        instance_url=sf_sandbox.server.url,
        session_id=sf_sandbox.app.add_token("integration"),
        session=client_session(sf_sandbox.tls.ca_file),
        version="45.0",
    )
    created = old.Lead.upsert(
        "Syncd_HubSpot_Id__c/hs-2", {"LastName": "A", "Company": "B"}, raw_response=True
    )
    assert created.status_code == 201 and "created" not in created.json()
    updated = old.Lead.upsert("Syncd_HubSpot_Id__c/hs-2", {"Title": "CTO"}, raw_response=True)
    assert (updated.status_code, updated.content) == (204, b"")


def test_upsert_by_an_external_id_several_records_hold_is_300_with_their_urls(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    first = new_lead(sf)
    second = new_lead(sf)
    # Two records holding one external id value: a real org gets here when the field was not unique yet.
    for id_ in (first, second):
        record = dict(sf_sandbox.store.get("Lead", id_) or {})
        sf_sandbox.store.put("Lead", {**record, "Syncd_HubSpot_Id__c": "hs-twice"})
    with pytest.raises(SalesforceMoreThanOneRecord) as caught:
        sf.Lead.upsert("Syncd_HubSpot_Id__c/hs-twice", {"Title": "which?"})
    assert caught.value.status == 300
    assert caught.value.content == [f"{V}/sobjects/Lead/{first}", f"{V}/sobjects/Lead/{second}"]
    assert {sf.Lead.get(i)["Title"] for i in (first, second)} == {None}


# ------------------------------------------------------------------------------------ replication windows


@pytest.mark.parametrize(
    ("resource", "days_back", "ok"),
    [
        pytest.param("updated", 30, True, id="updated-30-days"),
        pytest.param("updated", 31, False, id="updated-31-days"),
        pytest.param("deleted", 15, True, id="deleted-15-days"),
        pytest.param("deleted", 16, False, id="deleted-16-days"),
    ],
)
def test_get_updated_and_deleted_cover_30_and_15_days(
    sf_sandbox: SfSandbox, resource: str, days_back: int, ok: bool
) -> None:
    lead = SALESFORCE_OBJECTS["Lead"].name
    sf = sf_sandbox.client()
    start = NOW - timedelta(days=days_back)
    call = getattr(getattr(sf, lead), resource)
    if ok:
        assert isinstance(call(start, NOW), dict)
        return
    with pytest.raises(SalesforceMalformedRequest) as caught:
        call(start, NOW)
    assert error_of(caught)["errorCode"] == "INVALID_REPLICATION_DATE"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(NOW, NOW - timedelta(hours=1), id="reversed"),
        pytest.param(NOW, NOW + timedelta(seconds=30), id="under-a-minute"),
        # 70 s, but the API ignores the seconds of both ends: 12:00:10-12:01:20 is 12:00-12:01, one minute.
        pytest.param(
            NOW.replace(second=10, microsecond=0),
            NOW.replace(second=10, microsecond=0) + timedelta(seconds=70),
            id="over-a-minute-only-with-its-seconds",
        ),
    ],
)
def test_a_replication_window_must_span_more_than_a_minute(
    sf_sandbox: SfSandbox, start: datetime, end: datetime
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf_sandbox.client().Lead.updated(start, end)
    assert error_of(caught)["errorCode"] == "INVALID_REPLICATION_DATE"


# ------------------------------------------------------------------------------------------------ limits


DOCUMENTED_LIMITS = {
    "DailyApiRequests",
    "DailyAsyncApexExecutions",
    "DailyBulkApiBatches",
    "DailyBulkV2QueryFileStorageMB",
    "DailyBulkV2QueryJobs",
    "DailyStreamingApiEvents",
    "DailyWorkflowEmails",
    "DataStorageMB",
    "FileStorageMB",
    "HourlyTimeBasedWorkflow",
    "MassEmail",
    "SingleEmail",
    "StreamingApiConcurrentClients",
}


def test_limits_lists_the_documented_keys_each_with_max_and_remaining(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    new_lead(sf)
    limits = sf.limits()
    assert set(limits) >= DOCUMENTED_LIMITS
    assert len(limits) >= 40
    assert all(set(v) == {"Max", "Remaining"} and 0 <= v["Remaining"] <= v["Max"] for v in limits.values())
    assert limits["DailyApiRequests"] == {"Max": 15000, "Remaining": 15000 - sf_sandbox.app.usage()}
    assert limits["DataStorageMB"]["Remaining"] < limits["DataStorageMB"]["Max"]


# ------------------------------------------------------------------------------------------- API versions


def test_versions_are_listed_without_a_token(sf_sandbox: SfSandbox) -> None:
    response = requests.get(
        f"{sf_sandbox.server.url}/services/data/", verify=str(sf_sandbox.tls.ca_file), timeout=10
    )
    assert response.status_code == 200
    versions = {v["version"]: v for v in response.json()}
    assert min(versions, key=float) == "31.0" and max(versions, key=float) == "59.0"
    assert versions["59.0"] == {"label": "Winter '24", "url": f"{V}", "version": "59.0"}
    assert versions["31.0"]["label"] == "Summer '14"


@pytest.mark.parametrize(
    ("version", "status", "error"),
    [
        pytest.param("99.0", 404, SalesforceResourceNotFound, id="not-yet-released"),
        pytest.param("60.0", 404, SalesforceResourceNotFound, id="newer-than-the-org"),
        pytest.param("29.0", 410, SalesforceGeneralError, id="retired"),
    ],
)
def test_unknown_api_versions_are_refused(
    sf_sandbox: SfSandbox, version: str, status: int, error: type[SalesforceError]
) -> None:
    sf = Salesforce(
        instance_url=sf_sandbox.server.url,
        session_id=sf_sandbox.app.add_token("integration"),
        session=client_session(sf_sandbox.tls.ca_file),
        version=version,
    )
    with pytest.raises(error) as caught:
        sf.query("SELECT Id FROM Lead")
    assert caught.value.status == status
    assert error_of(caught)["errorCode"] == ("NOT_FOUND" if status == 404 else "GONE")


# --------------------------------------------------------------------------------------------- keep-alive


def test_one_salesforce_client_reuses_one_tls_connection(sf_sandbox: SfSandbox) -> None:
    accepted = sf_sandbox.server.connections.accepted
    sf = sf_sandbox.client()
    lead = new_lead(sf)
    for n in range(20):
        sf.Lead.update(lead, {"Title": f"T{n}"})  # 204: no body, still kept alive
        sf.query("SELECT Id FROM Lead")
    assert sf_sandbox.server.connections.accepted - accepted == 1


def test_one_hubspot_client_reuses_one_tls_connection(hs_sandbox: HsSandbox) -> None:
    accepted = hs_sandbox.server.connections.accepted
    api = hs_sandbox.client().crm.contacts.basic_api
    for n in range(20):
        api.create(simple_public_object_input_for_create={"properties": {"email": f"p{n}@example.com"}})
        api.get_page(limit=10)
    assert hs_sandbox.server.connections.accepted - accepted == 1


def test_responses_carry_content_length_and_keep_the_connection(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    response = sf.session.get(
        f"{sf_sandbox.server.url}{V}/limits/",
        headers={"Authorization": f"Bearer {sf_sandbox.app.add_token('integration')}"},
    )
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert response.headers.get("Connection", "").lower() != "close"
    assert response.headers["Date"] == "Thu, 01 Jan 2026 00:00:00 GMT"  # the org's clock


def test_a_handler_bug_is_a_500_and_the_client_goes_on(
    sf_sandbox: SfSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the sandbox")

    sf = sf_sandbox.client()
    monkeypatch.setattr(sf_sandbox.app, "on_limits", broken)
    with pytest.raises(SalesforceGeneralError) as caught:
        sf.limits()
    assert caught.value.status == 500
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0


def test_a_stopped_server_closes_its_kept_alive_connections(sf_start: Callable[..., SfSandbox]) -> None:
    sandbox = sf_start()
    sf = sandbox.client()
    new_lead(sf)
    sandbox.server.stop()
    with pytest.raises(requests.ConnectionError):
        sf.query("SELECT Id FROM Lead")


# ------------------------------------------------------------------------------------------------- merges


def merge(sandbox: SfSandbox, sobject: str, master: str, *losers: str, **extra: Any) -> requests.Response:
    return sandbox.control(
        "POST", "merge", {"sobject": sobject, "master_id": master, "merge_ids": list(losers), **extra}
    )


def test_account_merge_deletes_the_loser_with_master_record_id_and_reparents(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    keep = sf.Account.create({"Name": "Acme"})["id"]
    lose = sf.Account.create({"Name": "ACME Inc"})["id"]
    contact = sf.Contact.create({"LastName": "Weber", "AccountId": lose})["id"]
    deal = sf.Opportunity.create(
        {"Name": "Renewal", "StageName": "Prospecting", "CloseDate": "2026-06-30", "AccountId": lose}
    )["id"]
    stamp_before = sf.Account.get(keep)["SystemModstamp"]
    contact_stamp = sf.Contact.get(contact)["SystemModstamp"]
    sf_sandbox.clock.advance(10)
    response = merge(sf_sandbox, "Account", keep, lose, fields={"Phone": "+33 1 23 45 67 89"}, user=SAM)
    assert response.status_code == 200, response.text
    assert response.json()["mergedRecordIds"] == [lose]
    assert [r["Id"] for r in sf.query("SELECT Id FROM Account")["records"]] == [keep]
    gone = sf.query_all(
        f"SELECT Id, IsDeleted, MasterRecordId FROM Account WHERE Id = '{lose}'", include_deleted=True
    )["records"]
    assert [(r["IsDeleted"], r["MasterRecordId"]) for r in gone] == [(True, keep)]
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Account.get(lose)
    assert error_of(caught)["errorCode"] == "ENTITY_IS_DELETED"
    assert sf.Contact.get(contact)["AccountId"] == keep
    assert sf.Opportunity.get(deal)["AccountId"] == keep
    assert sf.Contact.get(contact)["SystemModstamp"] > contact_stamp
    survivor = sf.Account.get(keep)
    assert survivor["SystemModstamp"] > stamp_before and survivor["Phone"] == "+33 1 23 45 67 89"
    assert survivor["LastModifiedById"] == sf_sandbox.user_id("sam.patel")
    window = sf.Account.deleted(NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert [d["id"] for d in window["deletedRecords"]] == [lose]


def test_lead_merge_takes_two_losers_at_most(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    keep, a, b, c = (new_lead(sf, LastName=f"L{n}") for n in range(4))
    assert merge(sf_sandbox, "Lead", keep, a, b, c).status_code == 400
    assert merge(sf_sandbox, "Lead", keep, a, b).status_code == 200
    rows = sf.query_all("SELECT Id, MasterRecordId FROM Lead WHERE IsDeleted = true", include_deleted=True)
    assert {r["Id"]: r["MasterRecordId"] for r in rows["records"]} == {a: keep, b: keep}


@pytest.mark.parametrize(
    ("sobject", "body", "code"),
    [
        pytest.param(
            "Opportunity",
            {"Name": "X", "StageName": "Prospecting", "CloseDate": "2026-06-30"},
            "INVALID_TYPE",
            id="not-mergeable",
        ),
        pytest.param("Lead", None, "INVALID_ARGUMENT", id="into-itself"),
    ],
)
def test_merges_the_org_refuses(
    sf_sandbox: SfSandbox, sobject: str, body: dict[str, Any] | None, code: str
) -> None:
    sf = sf_sandbox.client()
    if body is None:
        record = new_lead(sf)
        response = merge(sf_sandbox, sobject, record, record)
    else:
        one, two = (getattr(sf, sobject).create(body)["id"] for _ in range(2))
        response = merge(sf_sandbox, sobject, one, two)
    assert response.status_code == 400 and response.json()["errorCode"] == code


# ------------------------------------------------------------------------------------------- field limits


def test_describe_serves_the_field_limits(sf_sandbox: SfSandbox) -> None:
    fields = {f["name"]: f for f in sf_sandbox.client().Lead.describe()["fields"]}
    assert (fields["LastName"]["type"], fields["LastName"]["length"]) == ("string", 80)
    assert fields["Email"]["length"] == 80 and fields["City"]["length"] == 40
    assert (fields["NumberOfEmployees"]["type"], fields["NumberOfEmployees"]["digits"]) == ("int", 8)
    revenue = fields["AnnualRevenue"]
    assert (revenue["type"], revenue["precision"], revenue["scale"]) == ("currency", 18, 0)
    assert fields["Status"]["restrictedPicklist"] is True
    assert "Nurturing" in [p["value"] for p in fields["Status"]["picklistValues"]]
    assert (
        fields["MasterRecordId"]["referenceTo"] == ["Lead"]
        and fields["MasterRecordId"]["updateable"] is False
    )


BAD_VALUES = [
    pytest.param(
        {"LastName": "x" * 81},
        "STRING_TOO_LONG",
        f"Last Name: data value too large: {'x' * 80}... (max length=80)",
        id="name-too-long",
    ),
    pytest.param(
        {"NumberOfEmployees": 1e20},
        "NUMBER_OUTSIDE_VALID_RANGE",
        "Number Of Employees: value outside of valid range on numeric field: 1.0E20",
        id="employees-out-of-range",
    ),
    pytest.param(
        {"AnnualRevenue": 10**18},
        "NUMBER_OUTSIDE_VALID_RANGE",
        "Annual Revenue: value outside of valid range on numeric field: 1.0E18",
        id="revenue-out-of-range",
    ),
    pytest.param(
        {"Email": "ada\x01@example.com"},
        "INVALID_EMAIL_ADDRESS",
        "Email: invalid email address: ada\x01@example.com",
        id="email-control-character",
    ),
    pytest.param(
        {"Email": "ada lovelace@example.com"},
        "INVALID_EMAIL_ADDRESS",
        "Email: invalid email address: ada lovelace@example.com",
        id="email-with-a-space",
    ),
    pytest.param(
        {"Status": "Maybe Later"},
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "Status: bad value for restricted picklist field: Maybe Later",
        id="restricted-picklist",
    ),
]


def _create(sf: Salesforce, values: dict[str, Any]) -> Any:
    return sf.Lead.create({"LastName": "Ok", "Company": "Acme", **values})


def _update(sf: Salesforce, values: dict[str, Any]) -> Any:
    return sf.Lead.update(new_lead(sf), values)


def _upsert(sf: Salesforce, values: dict[str, Any]) -> Any:
    return sf.Lead.upsert("Syncd_HubSpot_Id__c/hs-limit", {"LastName": "Ok", "Company": "Acme", **values})


@pytest.mark.parametrize("write", [_create, _update, _upsert], ids=["create", "update", "upsert"])
@pytest.mark.parametrize(("values", "code", "message"), BAD_VALUES)
def test_writes_beyond_a_field_limit_are_refused(
    sf_sandbox: SfSandbox,
    write: Callable[[Salesforce, dict[str, Any]], Any],
    values: dict[str, Any],
    code: str,
    message: str,
) -> None:
    sf = sf_sandbox.client()
    with pytest.raises(SalesforceMalformedRequest) as caught:
        write(sf, values)
    assert error_of(caught) == {"errorCode": code, "message": message, "fields": list(values)}


@pytest.mark.parametrize(("values", "code", "message"), BAD_VALUES)
def test_collections_refuse_the_bad_record_alone(
    sf_sandbox: SfSandbox, values: dict[str, Any], code: str, message: str
) -> None:
    sf = sf_sandbox.client()
    records = [
        {"attributes": {"type": "Lead"}, "LastName": "Good", "Company": "Acme"},
        {"attributes": {"type": "Lead"}, "LastName": "Ok", "Company": "Acme", **values},
    ]
    good, bad = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert good["success"] is True
    assert bad == {
        "success": False,
        "errors": [{"statusCode": code, "message": message, "fields": list(values)}],
    }


@pytest.mark.parametrize(
    ("values", "stored"),
    [
        pytest.param({"LastName": "x" * 80}, {"LastName": "x" * 80}, id="name-at-the-limit"),
        pytest.param(
            {"NumberOfEmployees": 99_999_999}, {"NumberOfEmployees": 99_999_999}, id="employees-max"
        ),
        pytest.param({"Email": "o'brien+sync@mail.example.co.uk"}, {}, id="email-with-plus-and-quote"),
    ],
)
def test_values_within_the_limits_are_accepted(
    sf_sandbox: SfSandbox, values: dict[str, Any], stored: dict[str, Any]
) -> None:
    sf = sf_sandbox.client()
    lead = sf.Lead.get(new_lead(sf, **values))
    assert {k: lead[k] for k in values} == {**values, **stored}


def test_decimals_are_kept_to_the_fields_scale(sf_sandbox: SfSandbox) -> None:
    sf = sf_sandbox.client()
    deal = sf.Opportunity.create(
        {"Name": "D", "StageName": "Prospecting", "CloseDate": "2026-06-30", "Amount": 10.126}
    )["id"]
    assert sf.Opportunity.get(deal)["Amount"] == 10.13
