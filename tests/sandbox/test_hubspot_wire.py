"""The HubSpot sandbox's harsher, documented behaviours, through hubspot-api-client 12.0.0 over HTTPS.

Batch writes refused whole (nothing written), batch read's 207, property validation by type, the search
index's lag, the ``Date`` header from the server's clock, merges, ``propertiesWithHistory`` and
``associations`` on list/get/batch read, ``/crm/v3/schemas``, deals' computed closed flags.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests
from hubspot.crm import companies as hs_companies
from hubspot.crm import contacts as hs_contacts
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    PublicMergeInput,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)

from syncd.sandbox.base import CONTROL_HEADER
from tests.sandbox.conftest import HS_EPOCH, HsSandbox


def body_of(exc: Exception) -> dict[str, Any]:
    return json.loads(getattr(exc, "body", "") or "{}")


def create(sb: HsSandbox, user: str = "integration", **props: str) -> Any:
    return sb.client(user).crm.contacts.basic_api.create(SimplePublicObjectInputForCreate(properties=props))


def batch_create(sb: HsSandbox, rows: list[dict[str, str]]) -> Any:
    return sb.client().crm.contacts.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[SimplePublicObjectBatchInputForCreate(properties=r) for r in rows]
        )
    )


def contact_count(sb: HsSandbox) -> int:
    return sb.store.count("contacts")


def search_emails(sb: HsSandbox, email: str) -> list[str]:
    found = sb.client().crm.contacts.search_api.do_search(
        PublicObjectSearchRequest(
            filter_groups=[{"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]}],
            properties=["email", "firstname"],
        )
    )
    return [f"{r.id}:{r.properties.get('firstname')}" for r in found.results]


# ---------------------------------------------------------------------------------------- batch writes


def test_a_batch_create_with_existing_emails_is_a_409_naming_only_the_first_and_writes_nothing(
    hs_sandbox: HsSandbox,
) -> None:
    first, second = batch_create(hs_sandbox, [{"email": "a@example.com"}, {"email": "b@example.com"}]).results
    before = contact_count(hs_sandbox)
    with pytest.raises(hs_contacts.ApiException) as caught:
        batch_create(
            hs_sandbox,
            [{"email": "new1@example.com"}, {"email": "A@example.com"}, {"email": "b@example.com"}],
        )
    body = body_of(caught.value)
    assert caught.value.status == 409
    # The documented body (hubspot-api-python#51): four keys, the first conflict only.
    assert set(body) == {"status", "message", "correlationId", "category"}
    assert body["status"] == "error" and body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {first.id}"
    assert second.id not in body["message"]
    assert contact_count(hs_sandbox) == before


def test_two_inputs_of_one_batch_create_with_one_email_conflict(hs_sandbox: HsSandbox) -> None:
    with pytest.raises(hs_contacts.ApiException) as caught:
        batch_create(hs_sandbox, [{"email": "twin@example.com"}, {"email": "TWIN@example.com"}])
    assert caught.value.status == 409 and body_of(caught.value)["category"] == "CONFLICT"
    assert contact_count(hs_sandbox) == 0


BAD_VALUES = [
    pytest.param("colour", "red", "PROPERTY_DOESNT_EXIST", id="unknown-property"),
    pytest.param("email", "not an email", "INVALID_EMAIL", id="email-with-spaces"),
    pytest.param("email", "ctrl\x07@example.com", "INVALID_EMAIL", id="email-with-control-character"),
    pytest.param("numemployees", "many", "INVALID_INTEGER", id="number"),
    pytest.param("numemployees", "12.5", "INVALID_INTEGER", id="integer-with-fraction"),
    pytest.param("lifecyclestage", "prospect", "INVALID_OPTION", id="enumeration-option"),
    pytest.param("notes_last_updated", "yesterday", "INVALID_DATE", id="datetime-format"),
    pytest.param("hubspot_owner_id", "999", "INVALID_OWNER_ID", id="unknown-owner"),
    pytest.param("hubspot_owner_id", "104", "INVALID_OWNER_ID", id="archived-owner"),
    pytest.param("firstname", "x" * 65_537, "INVALID_STRING_LENGTH", id="string-over-65536"),
    pytest.param("hubspotscore", "50", "READ_ONLY_VALUE", id="read-only"),
]


@pytest.mark.parametrize(("prop", "value", "code"), BAD_VALUES)
def test_one_invalid_value_refuses_the_whole_batch_create_with_a_400(
    hs_sandbox: HsSandbox, prop: str, value: str, code: str
) -> None:
    with pytest.raises(hs_contacts.ApiException) as caught:
        batch_create(
            hs_sandbox,
            [{"email": "good1@example.com"}, {"email": "good2@example.com", prop: value}],
        )
    body = body_of(caught.value)
    assert caught.value.status == 400 and body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid")
    assert [e["code"] for e in body["errors"]] == [code]
    assert body["errors"][0]["context"]["propertyName"] == [prop]
    assert contact_count(hs_sandbox) == 0


def test_every_invalid_input_of_a_refused_batch_is_listed_in_errors(hs_sandbox: HsSandbox) -> None:
    with pytest.raises(hs_contacts.ApiException) as caught:
        batch_create(
            hs_sandbox,
            [{"email": "ok@example.com"}, {"numemployees": "x"}, {"lifecyclestage": "nope"}],
        )
    assert [e["code"] for e in body_of(caught.value)["errors"]] == ["INVALID_INTEGER", "INVALID_OPTION"]


def test_a_valid_value_of_each_type_is_written(hs_sandbox: HsSandbox) -> None:
    made = batch_create(
        hs_sandbox,
        [
            {
                "email": "Typed@Example.com",
                "numemployees": "250",
                "lifecyclestage": "lead",
                "notes_last_updated": "2026-01-02T03:04:05Z",
                "firstname": "y" * 65_536,
            }
        ],
    ).results[0]
    stored = hs_sandbox.store.get("contacts", made.id)["properties"]
    assert stored["email"] == "typed@example.com" and stored["numemployees"] == "250"
    assert stored["notes_last_updated"] == "2026-01-02T03:04:05.000Z" and len(stored["firstname"]) == 65_536


def test_a_date_property_takes_midnight_utc_only(hs_start: Callable[..., HsSandbox]) -> None:
    from syncd.core.systems import FieldSpec, OrgSchema

    schema = OrgSchema().with_custom("hubspot", "contacts", FieldSpec("renewal_day", "date"))
    sandbox = hs_start(schema=schema)
    with pytest.raises(hs_contacts.ApiException) as caught:
        create(sandbox, email="d@example.com", renewal_day="2026-03-01T12:00:00Z")
    assert caught.value.status == 400 and body_of(caught.value)["errors"][0]["code"] == "INVALID_DATE"
    made = create(sandbox, email="d@example.com", renewal_day="2026-03-01")
    assert made.properties["renewal_day"] == "2026-03-01"


def test_a_batch_upsert_with_one_bad_input_neither_creates_nor_updates(hs_sandbox: HsSandbox) -> None:
    existing = create(hs_sandbox, email="up@example.com", firstname="Old")
    batch = hs_sandbox.client().crm.contacts.batch_api
    inputs = [
        SimplePublicObjectBatchInputUpsert(
            id_property="email", id="up@example.com", properties={"firstname": "New"}
        ),
        SimplePublicObjectBatchInputUpsert(id_property="email", id="fresh@example.com", properties={}),
        SimplePublicObjectBatchInputUpsert(
            id_property="email", id="bad@example.com", properties={"hubspot_owner_id": "999"}
        ),
    ]
    with pytest.raises(hs_contacts.ApiException) as caught:
        batch.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=inputs))
    assert caught.value.status == 400
    assert hs_sandbox.store.get("contacts", existing.id)["properties"]["firstname"] == "Old"
    assert contact_count(hs_sandbox) == 1
    done = batch.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=inputs[:2]))
    assert sorted(r.new for r in done.results) == [False, True]


def test_batch_read_answers_207_with_the_missing_ids(hs_sandbox: HsSandbox) -> None:
    made = batch_create(hs_sandbox, [{"email": "r@example.com"}]).results[0]
    _, status, _ = hs_sandbox.client().crm.contacts.batch_api.read_with_http_info(
        BatchReadInputSimplePublicObjectId(
            properties=["email"],
            properties_with_history=[],
            inputs=[SimplePublicObjectId(id=made.id), SimplePublicObjectId(id="424242")],
        )
    )
    assert status == 207


# ------------------------------------------------------------------------------------------ search lag


def test_search_sees_a_write_only_after_the_lag_while_get_and_list_see_it_at_once(
    hs_start: Callable[..., HsSandbox],
) -> None:
    sandbox = hs_start(search_lag_ms=2000)
    made = create(sandbox, email="lag@example.com", firstname="First")
    basic = sandbox.client().crm.contacts.basic_api
    assert basic.get_by_id(made.id).properties["email"] == "lag@example.com"
    assert [r.id for r in basic.get_page().results] == [made.id]
    assert search_emails(sandbox, "lag@example.com") == []
    sandbox.clock.advance(1.999)
    assert search_emails(sandbox, "lag@example.com") == []
    sandbox.clock.advance(0.001)
    assert search_emails(sandbox, "lag@example.com") == [f"{made.id}:First"]
    # An update is searched in its old form until the index catches up.
    basic.update(made.id, SimplePublicObjectInput(properties={"firstname": "Second"}))
    assert search_emails(sandbox, "lag@example.com") == [f"{made.id}:First"]
    sandbox.clock.advance(2.0)
    assert search_emails(sandbox, "lag@example.com") == [f"{made.id}:Second"]


def test_the_search_lag_is_read_and_changed_through_the_control_endpoint(
    hs_start: Callable[..., HsSandbox],
) -> None:
    sandbox = hs_start()
    url = f"{sandbox.server.url}/__sandbox/limits"
    verify = str(sandbox.tls.ca_file)
    headers = {CONTROL_HEADER: sandbox.app.control_token}
    assert requests.get(url, headers=headers, verify=verify, timeout=10).json()["search_lag_ms"] == 0
    requests.post(
        url, json={"search_lag_ms": 500}, headers=headers, verify=verify, timeout=10
    ).raise_for_status()
    made = create(sandbox, email="ctl@example.com")
    assert search_emails(sandbox, "ctl@example.com") == []
    sandbox.clock.advance(0.5)
    assert search_emails(sandbox, "ctl@example.com") == [f"{made.id}:None"]


def test_responses_carry_the_servers_time_in_the_date_header(hs_sandbox: HsSandbox) -> None:
    hs_sandbox.clock.advance(3600.4)
    _, _, headers = hs_sandbox.client().crm.contacts.basic_api.get_page_with_http_info()
    last = [part.strip() for part in headers["Date"].split("GMT") if part.strip()][-1].lstrip(", ") + " GMT"
    assert parsedate_to_datetime(last).timestamp() == int(HS_EPOCH + 3600)


# ---------------------------------------------------------------------------------------------- merges


def merge(sb: HsSandbox, primary: str, other: str, otype: str = "contacts") -> Any:
    api = getattr(sb.client().crm, otype).basic_api
    module = hs_contacts if otype == "contacts" else hs_companies
    return api.merge(module.PublicMergeInput(primary_object_id=primary, object_id_to_merge=other))


def test_a_contact_merge_keeps_the_primary_id_and_lists_the_merged_ids(hs_sandbox: HsSandbox) -> None:
    a = create(hs_sandbox, email="keep@example.com", firstname="Keep")
    b = create(hs_sandbox, email="gone@example.com", firstname="Gone", jobtitle="CTO")
    c = create(hs_sandbox, email="third@example.com")
    merged = merge(hs_sandbox, a.id, b.id)
    assert merged.id == a.id
    basic = hs_sandbox.client().crm.contacts.basic_api
    survivor = basic.get_by_id(a.id, properties=["firstname", "jobtitle", "email", "hs_merged_object_ids"])
    # The primary's values win; a property it leaves blank takes the merged record's value.
    assert survivor.properties["firstname"] == "Keep" and survivor.properties["jobtitle"] == "CTO"
    assert survivor.properties["hs_merged_object_ids"] == b.id
    # The merged-away id answers with the survivor; it is listed neither live nor archived.
    assert basic.get_by_id(b.id).id == a.id
    assert {r.id for r in basic.get_page().results} == {a.id, c.id}
    assert basic.get_page(archived=True).results == []
    # A second merge appends: "id1;id2".
    merge(hs_sandbox, a.id, c.id)
    again = basic.get_by_id(a.id, properties=["hs_merged_object_ids"])
    assert again.properties["hs_merged_object_ids"] == f"{b.id};{c.id}"
    # The merged-away email no longer blocks a new contact.
    assert create(hs_sandbox, email="gone@example.com").id not in (a.id, b.id)


def test_a_merge_moves_associations_and_bumps_the_survivors_last_modified(hs_sandbox: HsSandbox) -> None:
    crm = hs_sandbox.client().crm
    company = crm.companies.basic_api.create(
        hs_companies.SimplePublicObjectInputForCreate(properties={"name": "Co"})
    )
    a = create(hs_sandbox, email="m1@example.com")
    b = create(hs_sandbox, email="m2@example.com")
    crm.associations.v4.basic_api.create_default("contacts", b.id, "companies", company.id)
    before = hs_sandbox.store.get("contacts", a.id)["updatedAt"]
    hs_sandbox.clock.advance(5)
    merge(hs_sandbox, a.id, b.id)
    linked = crm.associations.v4.basic_api.get_page("contacts", a.id, "companies")
    assert [r.to_object_id for r in linked.results] == [company.id]
    assert hs_sandbox.store.get("contacts", a.id)["updatedAt"] > before


@pytest.mark.parametrize(
    ("which", "status"),
    [pytest.param("primary", 404, id="unknown-primary"), pytest.param("same", 400, id="itself")],
)
def test_bad_merges_are_refused(hs_sandbox: HsSandbox, which: str, status: int) -> None:
    a = create(hs_sandbox, email="x@example.com")
    primary = "99999" if which == "primary" else a.id
    with pytest.raises(hs_contacts.ApiException) as caught:
        hs_sandbox.client().crm.contacts.basic_api.merge(
            PublicMergeInput(primary_object_id=primary, object_id_to_merge=a.id)
        )
    assert caught.value.status == status


def test_companies_merge_too(hs_sandbox: HsSandbox) -> None:
    api = hs_sandbox.client().crm.companies.basic_api
    a = api.create(
        hs_companies.SimplePublicObjectInputForCreate(properties={"name": "A", "domain": "a.example"})
    )
    b = api.create(
        hs_companies.SimplePublicObjectInputForCreate(properties={"name": "B", "domain": "b.example"})
    )
    assert merge(hs_sandbox, a.id, b.id, "companies").id == a.id
    assert api.get_by_id(b.id, properties=["hs_merged_object_ids"]).properties["hs_merged_object_ids"] == b.id


# ------------------------------------------------------------------------- history, associations, schemas


def test_properties_with_history_on_get_list_and_batch_read(hs_sandbox: HsSandbox) -> None:
    made = create(hs_sandbox, email="h@example.com", jobtitle="Rep")
    hs_sandbox.clock.advance(1)
    hs_sandbox.client("sam.patel@northwind.example").crm.contacts.basic_api.update(
        made.id, SimplePublicObjectInput(properties={"jobtitle": "Manager"})
    )
    crm = hs_sandbox.client().crm.contacts
    got = crm.basic_api.get_by_id(made.id, properties_with_history=["jobtitle", "firstname"])
    versions = got.properties_with_history["jobtitle"]
    assert [v.value for v in versions] == ["Manager", "Rep"]
    assert versions[0].source_type == "CRM_UI" and versions[0].updated_by_user_id == 9001
    assert versions[1].source_type == "INTEGRATION" and versions[1].updated_by_user_id is None
    assert versions[0].timestamp > versions[1].timestamp
    assert got.properties_with_history["firstname"] == []
    listed = crm.basic_api.get_page(properties_with_history=["jobtitle"]).results[0]
    assert [v.value for v in listed.properties_with_history["jobtitle"]] == ["Manager", "Rep"]
    read = crm.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            properties=[], properties_with_history=["jobtitle"], inputs=[SimplePublicObjectId(id=made.id)]
        )
    )
    assert [v.value for v in read.results[0].properties_with_history["jobtitle"]] == ["Manager", "Rep"]


def test_associations_on_get_and_list(hs_sandbox: HsSandbox) -> None:
    crm = hs_sandbox.client().crm
    company = crm.companies.basic_api.create(
        hs_companies.SimplePublicObjectInputForCreate(properties={"name": "Co"})
    )
    made = create(hs_sandbox, email="as@example.com")
    crm.associations.v4.basic_api.create_default("contacts", made.id, "companies", company.id)
    got = crm.contacts.basic_api.get_by_id(made.id, associations=["companies", "no_such_type"])
    assert {(r.id, r.type) for r in got.associations["companies"].results} == {
        (company.id, "contact_to_company_unlabeled")
    }
    listed = crm.companies.basic_api.get_page(associations=["contacts"]).results[0]
    assert [r.id for r in listed.associations["contacts"].results] == [made.id]
    assert crm.contacts.basic_api.get_by_id(made.id).associations is None


def test_schemas_list_the_portals_custom_objects_none_here(hs_sandbox: HsSandbox) -> None:
    assert hs_sandbox.client().crm.schemas.core_api.get_all().results == []
    url = f"{hs_sandbox.server.url}/crm/v3/schemas"
    token = hs_sandbox.app.add_token("integration")
    answer = requests.get(
        url, headers={"Authorization": f"Bearer {token}"}, verify=str(hs_sandbox.tls.ca_file), timeout=10
    )
    assert answer.status_code == 200 and answer.json() == {"results": []}


# ----------------------------------------------------------------------------------------------- deals


@pytest.mark.parametrize(
    ("stage", "closed", "won"),
    [
        pytest.param("appointmentscheduled", "false", "false", id="open"),
        pytest.param("closedwon", "true", "true", id="won"),
        pytest.param("closedlost", "true", "false", id="lost"),
    ],
)
def test_deals_compute_hs_is_closed_and_hs_is_closed_won(
    hs_sandbox: HsSandbox, stage: str, closed: str, won: str
) -> None:
    from hubspot.crm.deals import SimplePublicObjectInputForCreate as DealInput

    api = hs_sandbox.client().crm.deals.basic_api
    deal = api.create(DealInput(properties={"dealname": "D", "dealstage": stage, "pipeline": "default"}))
    got = api.get_by_id(deal.id, properties=["hs_is_closed", "hs_is_closed_won"])
    assert (got.properties["hs_is_closed"], got.properties["hs_is_closed_won"]) == (closed, won)
