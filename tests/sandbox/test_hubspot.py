"""The HubSpot sandbox, driven through the unmodified hubspot-api-client 12.0.0 over HTTPS on 127.0.0.1.

Raw ``requests`` is used only for the sandbox's own ``/__sandbox/`` control endpoint, which has no client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import requests
import urllib3
from hubspot.crm import companies as hs_companies
from hubspot.crm import contacts as hs_contacts
from hubspot.crm import owners as hs_owners
from hubspot.crm.associations import v4 as hs_assoc
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.properties import ApiException as PropertiesApiException

from syncd.core.systems import FieldSpec, OrgSchema
from syncd.sandbox.base import CONTROL_HEADER, Faults
from syncd.sandbox.hubspot import SEARCH_RESULT_CAP, iso_ms, parse_ms
from syncd.sandbox.store import Store

if TYPE_CHECKING:
    from tests.sandbox.conftest import HsClock, HsSandbox

Start = Callable[..., "HsSandbox"]
SAM = "sam.patel@northwind.example"


def error_body(exc: Exception) -> dict[str, Any]:
    return json.loads(exc.body)  # type: ignore[attr-defined,no-any-return]


def create(sb: HsSandbox, user: str = "integration", **props: str) -> Any:
    return sb.client(user).crm.contacts.basic_api.create(SimplePublicObjectInputForCreate(properties=props))


def update(sb: HsSandbox, contact_id: str, user: str = "integration", **props: str) -> Any:
    return sb.client(user).crm.contacts.basic_api.update(
        contact_id, SimplePublicObjectInput(properties=props)
    )


def batch_create(sb: HsSandbox, rows: list[dict[str, str]]) -> Any:
    inputs = [SimplePublicObjectBatchInputForCreate(properties=r) for r in rows]
    return sb.client().crm.contacts.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
    )


def search(sb: HsSandbox, *groups: list[dict[str, Any]], otype: str = "contacts", **kwargs: Any) -> Any:
    wire_to_model = {"propertyName": "property_name", "highValue": "high_value"}
    request = PublicObjectSearchRequest(
        filter_groups=[
            FilterGroup(filters=[Filter(**{wire_to_model.get(k, k): v for k, v in f.items()}) for f in g])
            for g in groups
        ],
        **kwargs,
    )
    return getattr(sb.client().crm, otype).search_api.do_search(public_object_search_request=request)


def control(sb: HsSandbox, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(
        method,
        f"{sb.server.url}/__sandbox/{path}",
        json=body,
        headers={CONTROL_HEADER: sb.app.control_token},
        verify=str(sb.tls.ca_file),
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def import_contacts(
    store: Store, count: int, *, stamp_ms: Callable[[int], int], first_id: int = 5001
) -> list[str]:
    """Bulk-imported contacts written straight into the store, as the seed data is (the storage contract)."""
    ids = []
    for n in range(count):
        rid, ms = str(first_id + n), stamp_ms(n)
        store.put(
            "contacts",
            {
                "id": rid,
                "properties": {
                    "email": f"c{rid}@example.com",
                    "hs_object_id": rid,
                    "createdate": iso_ms(ms),
                    "lastmodifieddate": iso_ms(ms),
                },
                "createdAt": iso_ms(ms),
                "updatedAt": iso_ms(ms),
                "archived": False,
                "archivedAt": None,
            },
        )
        ids.append(rid)
    store.flush()
    store.set_meta("hs_seq", first_id + count)
    return ids


# ------------------------------------------------------------------------------------------- TLS and auth


def test_client_helper_trusts_the_sandbox_ca_even_when_the_environment_names_another_bundle(
    hs_sandbox: HsSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    bogus = tmp_path / "empty.pem"
    bogus.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("SSL_CERT_FILE", str(bogus))
    assert hs_sandbox.client().crm.owners.owners_api.get_page().results


def test_a_client_without_the_ca_cannot_connect(hs_sandbox: HsSandbox) -> None:
    from hubspot import HubSpot

    untrusting = HubSpot(
        access_token=hs_sandbox.app.add_token("integration"),
        host=hs_sandbox.server.url,
        retry=urllib3.Retry(0),
    )
    with pytest.raises(urllib3.exceptions.MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.crm.owners.owners_api.get_page()


@pytest.mark.parametrize(
    "token", [pytest.param("hs-nobody-123", id="unknown-token"), pytest.param("", id="no-token")]
)
def test_a_bad_token_is_a_401_with_hubspots_body(hs_sandbox: HsSandbox, token: str) -> None:
    from hubspot import HubSpot

    bad = HubSpot(
        access_token=token or None, host=hs_sandbox.server.url, ssl_ca_cert=str(hs_sandbox.tls.ca_file)
    )
    with pytest.raises(hs_contacts.exceptions.UnauthorizedException) as caught:
        bad.crm.contacts.basic_api.get_page()
    body = error_body(caught.value)
    assert caught.value.status == 401
    assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
    assert body["message"].startswith("Authentication credentials not found") and body["correlationId"]


# --------------------------------------------------------------------------------------- basic objects


def test_create_answers_201_with_string_properties_and_system_fields(hs_sandbox: HsSandbox) -> None:
    created = create(hs_sandbox, email="Ana.Lopez@Example.com", firstname="Ana", numemployees="42")
    props = created.properties
    assert props["email"] == "ana.lopez@example.com"  # HubSpot stores emails lower-cased
    assert props["numemployees"] == "42" and props["hs_object_id"] == created.id
    assert props["createdate"] == props["lastmodifieddate"] == iso_ms(int(hs_sandbox.clock.now * 1000))
    assert all(isinstance(v, str) for v in props.values())
    assert created.created_at == created.updated_at and created.archived is False


def test_get_returns_the_default_properties_or_the_requested_ones_plus_the_defaults(
    hs_sandbox: HsSandbox,
) -> None:
    created = create(hs_sandbox, email="a@example.com", firstname="A", country="DE")
    basic = hs_sandbox.client().crm.contacts.basic_api
    plain = basic.get_by_id(created.id)
    assert set(plain.properties) == {
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    }
    assert plain.properties["lastname"] is None
    chosen = basic.get_by_id(created.id, properties=["country", "jobtitle", "no_such_property"])
    assert chosen.properties == {
        "country": "DE",
        "jobtitle": None,
        "createdate": plain.properties["createdate"],
        "lastmodifieddate": plain.properties["lastmodifieddate"],
        "hs_object_id": created.id,
    }


def test_get_by_email_is_case_insensitive_and_unknown_ids_are_404(hs_sandbox: HsSandbox) -> None:
    created = create(hs_sandbox, email="b@example.com")
    basic = hs_sandbox.client().crm.contacts.basic_api
    assert basic.get_by_id("B@Example.COM", id_property="email").id == created.id
    with pytest.raises(hs_contacts.exceptions.NotFoundException) as caught:
        basic.get_by_id("999999")
    assert error_body(caught.value)["category"] == "OBJECT_NOT_FOUND"
    with pytest.raises(hs_contacts.exceptions.NotFoundException):
        basic.update("999999", SimplePublicObjectInput(properties={"firstname": "x"}))


def test_list_pages_by_after_in_id_order_and_caps_limit_at_100(hs_sandbox: HsSandbox) -> None:
    for chunk in range(0, 150, 50):
        batch_create(hs_sandbox, [{"email": f"p{n}@example.com"} for n in range(chunk, chunk + 50)])
    basic = hs_sandbox.client().crm.contacts.basic_api
    seen, after, pages = [], None, 0
    while True:
        page = basic.get_page(limit=40, after=after, properties=["email"])
        seen += [r.id for r in page.results]
        pages += 1
        if page.paging is None:
            break
        after = page.paging.next.after
    assert pages == 4 and len(seen) == 150 and seen == sorted(seen, key=int)
    assert len(basic.get_page(limit=500).results) == 100


def test_archive_answers_204_hides_the_record_and_lists_it_under_archived(hs_sandbox: HsSandbox) -> None:
    keep, gone = create(hs_sandbox, email="keep@example.com"), create(hs_sandbox, email="gone@example.com")
    basic = hs_sandbox.client().crm.contacts.basic_api
    _, status, _ = basic.archive_with_http_info(gone.id)
    assert status == 204
    with pytest.raises(hs_contacts.exceptions.NotFoundException):
        basic.get_by_id(gone.id)
    assert basic.get_by_id(gone.id, archived=True).archived is True
    assert [r.id for r in basic.get_page().results] == [keep.id]
    assert [r.id for r in basic.get_page(archived=True).results] == [gone.id]


def test_unknown_object_type_is_a_400(hs_sandbox: HsSandbox) -> None:
    response = requests.get(
        f"{hs_sandbox.server.url}/crm/v3/objects/tickets",
        verify=str(hs_sandbox.tls.ca_file),
        headers={"Authorization": f"Bearer {hs_sandbox.app.add_token('integration')}"},
        timeout=10,
    )
    assert response.status_code == 400 and "tickets" in response.json()["message"]


# --------------------------------------------------------------------------------- last modified, who


def test_last_modified_strictly_increases_even_when_the_clock_stands_still(hs_sandbox: HsSandbox) -> None:
    contact = create(hs_sandbox, email="t@example.com")
    stamps = [contact.properties["lastmodifieddate"]]
    for n in range(3):
        stamps.append(update(hs_sandbox, contact.id, firstname=f"v{n}").properties["lastmodifieddate"])
    millis = [parse_ms(s) for s in stamps]
    assert millis == [millis[0] + n for n in range(4)]
    hs_sandbox.clock.advance(60)
    later = update(hs_sandbox, contact.id, firstname="later")
    assert later.properties["lastmodifieddate"] == iso_ms(int(hs_sandbox.clock.now * 1000))
    assert later.updated_at.timestamp() == pytest.approx(hs_sandbox.clock.now)


def test_a_write_that_changes_nothing_leaves_the_record_untouched(hs_sandbox: HsSandbox) -> None:
    contact = create(hs_sandbox, email="same@example.com", firstname="Same")
    again = update(hs_sandbox, contact.id, firstname="Same")
    assert again.properties["lastmodifieddate"] == contact.properties["lastmodifieddate"]


def test_companies_and_deals_maintain_hs_lastmodifieddate(hs_sandbox: HsSandbox) -> None:
    crm = hs_sandbox.client().crm
    company = crm.companies.basic_api.create(
        hs_companies.SimplePublicObjectInputForCreate(
            properties={"name": "Northwind Software", "domain": "northwind.example"}
        )
    )
    assert set(company.properties) >= {"hs_lastmodifieddate", "createdate", "hs_object_id"}
    before = parse_ms(company.properties["hs_lastmodifieddate"])
    changed = crm.companies.basic_api.update(
        company.id, hs_companies.SimplePublicObjectInput(properties={"country": "DE"})
    )
    assert parse_ms(changed.properties["hs_lastmodifieddate"]) == before + 1  # type: ignore[operator]


@pytest.mark.parametrize(
    ("user", "expected"),
    [pytest.param(SAM, "9001", id="rep-token"), pytest.param("integration", None, id="integration-token")],
)
def test_hs_updated_by_user_id_names_the_calling_reps_user(
    hs_sandbox: HsSandbox, user: str, expected: str | None
) -> None:
    contact = create(hs_sandbox, email="who@example.com")
    update(hs_sandbox, contact.id, user=user, firstname="Changed")
    got = hs_sandbox.client().crm.contacts.basic_api.get_by_id(
        contact.id, properties=["hs_updated_by_user_id"]
    )
    assert got.properties["hs_updated_by_user_id"] == expected


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("props", "code"),
    [
        pytest.param({"favourite_colour": "blue"}, "PROPERTY_DOESNT_EXIST", id="unknown-property"),
        pytest.param({"hubspotscore": "80"}, "READ_ONLY_VALUE", id="read-only-score"),
        pytest.param({"lastmodifieddate": "0"}, "READ_ONLY_VALUE", id="read-only-lastmodified"),
        pytest.param({"lifecyclestage": "hot"}, "INVALID_OPTION", id="not-an-option"),
        pytest.param({"hubspot_owner_id": "999"}, "INVALID_OWNER_ID", id="unknown-owner"),
        pytest.param({"hubspot_owner_id": "104"}, "INVALID_OWNER_ID", id="archived-owner"),
        pytest.param({"hubspot_owner_id": "9001"}, "INVALID_OWNER_ID", id="user-id-is-not-owner-id"),
        pytest.param({"email": "not-an-email"}, "INVALID_EMAIL", id="bad-email"),
        pytest.param({"numemployees": "many"}, "INVALID_INTEGER", id="not-a-number"),
        pytest.param({"notes_last_updated": "yesterday"}, "INVALID_DATE", id="not-a-date"),
    ],
)
def test_invalid_property_values_are_a_400_naming_the_property(
    hs_sandbox: HsSandbox, props: dict[str, str], code: str
) -> None:
    contact = create(hs_sandbox, email="v@example.com", firstname="Before")
    with pytest.raises(hs_contacts.ApiException) as caught:
        update(hs_sandbox, contact.id, firstname="After", **props)
    body = error_body(caught.value)
    name = next(iter(props))
    assert caught.value.status == 400 and body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid: ")
    assert json.loads(body["message"].split(": ", 1)[1])[0]["error"] == code
    assert body["errors"][0]["code"] == code and body["errors"][0]["context"] == {"propertyName": [name]}
    # the whole write is refused, not just the bad property
    got = hs_sandbox.client().crm.contacts.basic_api.get_by_id(contact.id, properties=["firstname"])
    assert got.properties["firstname"] == "Before"


def test_valid_owner_and_date_values_are_stored_in_hubspots_forms(hs_sandbox: HsSandbox) -> None:
    contact = create(
        hs_sandbox, email="d@example.com", hubspot_owner_id="101", notes_last_updated="1704067200000"
    )
    assert contact.properties["hubspot_owner_id"] == "101"
    assert contact.properties["notes_last_updated"] == "2024-01-01T00:00:00.000Z"
    assert update(hs_sandbox, contact.id, hubspot_owner_id="").properties["hubspot_owner_id"] == ""


def test_a_duplicate_email_is_a_409_conflict_naming_the_existing_contact(hs_sandbox: HsSandbox) -> None:
    first = create(hs_sandbox, email="dup@example.com")
    with pytest.raises(hs_contacts.ApiException) as caught:
        create(hs_sandbox, email="DUP@example.com")
    body = error_body(caught.value)
    assert caught.value.status == 409 and body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {first.id}"
    other = create(hs_sandbox, email="other@example.com")
    with pytest.raises(hs_contacts.ApiException) as caught:
        update(hs_sandbox, other.id, email="dup@example.com")
    assert caught.value.status == 409


def test_an_archived_contacts_email_can_be_used_again(hs_sandbox: HsSandbox) -> None:
    first = create(hs_sandbox, email="again@example.com")
    hs_sandbox.client().crm.contacts.basic_api.archive(first.id)
    assert create(hs_sandbox, email="again@example.com").id != first.id


@pytest.mark.parametrize("otype", ["contacts", "companies"])
def test_lifecyclestage_moves_backward_only_after_being_cleared(hs_sandbox: HsSandbox, otype: str) -> None:
    package = hs_contacts if otype == "contacts" else hs_companies
    basic = getattr(hs_sandbox.client().crm, otype).basic_api

    def set_stage(object_id: str, stage: str) -> Any:
        return basic.update(object_id, package.SimplePublicObjectInput(properties={"lifecyclestage": stage}))

    record = basic.create(package.SimplePublicObjectInputForCreate(properties={"lifecyclestage": "lead"}))
    assert set_stage(record.id, "customer").properties["lifecyclestage"] == "customer"
    with pytest.raises(package.ApiException) as caught:
        set_stage(record.id, "lead")
    assert caught.value.status == 400 and "backward" in error_body(caught.value)["message"]
    set_stage(record.id, "")
    assert set_stage(record.id, "lead").properties["lifecyclestage"] == "lead"


# ----------------------------------------------------------------------------------------------- batch


def test_batch_create_answers_201_and_a_bad_input_refuses_the_whole_batch(hs_sandbox: HsSandbox) -> None:
    batch = hs_sandbox.client().crm.contacts.batch_api
    ok = batch_create(hs_sandbox, [{"email": "b1@example.com"}, {"email": "b2@example.com"}])
    assert type(ok).__name__ == "BatchResponseSimplePublicObject" and ok.status == "COMPLETE"
    assert [r.properties["email"] for r in ok.results] == ["b1@example.com", "b2@example.com"]
    inputs = [
        SimplePublicObjectBatchInputForCreate(
            properties={"email": "b3@example.com"}, object_write_trace_id="t0"
        ),
        SimplePublicObjectBatchInputForCreate(
            properties={"email": "B1@example.com"}, object_write_trace_id="t1"
        ),
        SimplePublicObjectBatchInputForCreate(properties={"colour": "red"}, object_write_trace_id="t2"),
    ]
    with pytest.raises(hs_contacts.ApiException) as caught:
        batch.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs))
    assert caught.value.status == 400
    assert error_body(caught.value)["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    with pytest.raises(hs_contacts.ApiException) as conflict:
        batch.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs[:2]))
    assert conflict.value.status == 409
    assert error_body(conflict.value)["message"] == f"Contact already exists. Existing ID: {ok.results[0].id}"
    emails = {r.properties["email"] for r in hs_sandbox.client().crm.contacts.basic_api.get_page().results}
    assert emails == {"b1@example.com", "b2@example.com"}


def test_batch_read_answers_200_or_207_listing_the_missing_ids(hs_sandbox: HsSandbox) -> None:
    made = batch_create(
        hs_sandbox, [{"email": f"r{n}@example.com", "country": "SE"} for n in range(3)]
    ).results
    batch = hs_sandbox.client().crm.contacts.batch_api
    ids = [m.id for m in made]
    read = batch.read(
        BatchReadInputSimplePublicObjectId(
            properties=["country"],
            properties_with_history=[],
            inputs=[SimplePublicObjectId(id=i) for i in ids],
        )
    )
    assert [r.id for r in read.results] == ids and all(r.properties["country"] == "SE" for r in read.results)
    partial = batch.read(
        BatchReadInputSimplePublicObjectId(
            properties=["country"],
            properties_with_history=[],
            inputs=[SimplePublicObjectId(id=ids[0]), SimplePublicObjectId(id="424242")],
        )
    )
    assert partial.num_errors == 1 and partial.errors[0].context == {"ids": ["424242"]}
    by_email = batch.read(
        BatchReadInputSimplePublicObjectId(
            properties=[],
            properties_with_history=[],
            id_property="email",
            inputs=[SimplePublicObjectId(id="R1@example.com")],
        )
    )
    assert [r.id for r in by_email.results] == [ids[1]]


def test_batch_update_with_a_bad_input_is_refused_and_writes_nothing(hs_sandbox: HsSandbox) -> None:
    a, b = batch_create(hs_sandbox, [{"email": "u1@example.com"}, {"email": "u2@example.com"}]).results
    batch = hs_sandbox.client().crm.contacts.batch_api
    with pytest.raises(hs_contacts.ApiException) as caught:
        batch.update(
            BatchInputSimplePublicObjectBatchInput(
                inputs=[
                    SimplePublicObjectBatchInput(id=a.id, properties={"hubspot_owner_id": "102"}),
                    SimplePublicObjectBatchInput(id=b.id, properties={"hubspot_owner_id": "104"}),
                ]
            )
        )
    assert caught.value.status == 400 and error_body(caught.value)["errors"][0]["code"] == "INVALID_OWNER_ID"
    assert hs_sandbox.store.get("contacts", a.id)["properties"].get("hubspot_owner_id") in (None, "")
    with pytest.raises(hs_contacts.ApiException) as missing:
        batch.update(
            BatchInputSimplePublicObjectBatchInput(
                inputs=[
                    SimplePublicObjectBatchInput(id=a.id, properties={"hubspot_owner_id": "102"}),
                    SimplePublicObjectBatchInput(id="77777", properties={"firstname": "x"}),
                ]
            )
        )
    assert missing.value.status == 404 and error_body(missing.value)["category"] == "OBJECT_NOT_FOUND"
    clean = batch.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[SimplePublicObjectBatchInput(id=b.id, properties={"hubspot_owner_id": "103"})]
        )
    )
    assert type(clean).__name__ == "BatchResponseSimplePublicObject"


def test_batch_upsert_by_email_creates_or_updates(hs_sandbox: HsSandbox) -> None:
    existing = create(hs_sandbox, email="up@example.com", firstname="Old")
    batch = hs_sandbox.client().crm.contacts.batch_api
    result = batch.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(
                    id_property="email", id="UP@example.com", properties={"firstname": "New"}
                ),
                SimplePublicObjectBatchInputUpsert(
                    id_property="email", id="fresh@example.com", properties={"firstname": "F"}
                ),
            ]
        )
    )
    assert [(r.id == existing.id, r.new) for r in result.results] == [(True, False), (False, True)]
    assert result.results[1].properties["email"] == "fresh@example.com"
    assert result.results[0].properties["firstname"] == "New"


def test_batch_archive_answers_204(hs_sandbox: HsSandbox) -> None:
    made = batch_create(hs_sandbox, [{"email": f"x{n}@example.com"} for n in range(3)]).results
    batch = hs_sandbox.client().crm.contacts.batch_api
    _, status, _ = batch.archive_with_http_info(
        BatchInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=m.id) for m in made[:2]])
    )
    assert status == 204
    assert [r.id for r in hs_sandbox.client().crm.contacts.basic_api.get_page().results] == [made[2].id]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        pytest.param([{"id": str(n), "properties": {}} for n in range(101)], "limit is 100", id="101-inputs"),
        pytest.param(
            [{"id": "5", "properties": {}}, {"id": "5", "properties": {}}],
            "Duplicate IDs",
            id="duplicate-ids",
        ),
    ],
)
def test_malformed_batches_are_a_400(
    hs_sandbox: HsSandbox, inputs: list[dict[str, Any]], message: str
) -> None:
    batch = hs_sandbox.client().crm.contacts.batch_api
    with pytest.raises(hs_contacts.ApiException) as caught:
        batch.update(
            BatchInputSimplePublicObjectBatchInput(inputs=[SimplePublicObjectBatchInput(**i) for i in inputs])
        )
    assert caught.value.status == 400 and message in error_body(caught.value)["message"]


# ---------------------------------------------------------------------------------------------- search


@pytest.fixture
def people(hs_sandbox: HsSandbox) -> dict[str, str]:
    """Five contacts, name -> id, one request at a time so each has its own lastmodifieddate."""
    rows = [
        (
            "ann",
            {
                "email": "ann@northwind.example",
                "numemployees": "9",
                "country": "DE",
                "lifecyclestage": "lead",
            },
        ),
        ("bob", {"email": "bob@acme.example", "numemployees": "10", "country": "US", "jobtitle": "VP Sales"}),
        ("cid", {"email": "cid@acme.example", "numemployees": "250", "country": "de"}),
        (
            "dee",
            {
                "email": "dee@globex.example",
                "numemployees": "1000",
                "country": "FR",
                "lifecyclestage": "customer",
            },
        ),
        ("eve", {"email": "eve@globex.example", "jobtitle": "Sales Engineer"}),
    ]
    ids = {}
    for name, props in rows:
        ids[name] = create(hs_sandbox, **props).id
        hs_sandbox.clock.advance(1)
    return ids


def names_of(result: Any, people: dict[str, str]) -> list[str]:
    by_id = {v: k for k, v in people.items()}
    return [by_id[r.id] for r in result.results]


@dataclass(frozen=True)
class At:
    """A filter value this many milliseconds after the sandbox clock's start, as epoch ms or ISO."""

    offset_ms: int
    iso: bool = False

    def resolve(self, t0: int) -> str:
        return iso_ms(t0 + self.offset_ms).replace(".000Z", "Z") if self.iso else str(t0 + self.offset_ms)


def resolved(filters: list[dict[str, Any]], t0: int) -> list[dict[str, Any]]:
    return [{k: v.resolve(t0) if isinstance(v, At) else v for k, v in f.items()} for f in filters]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param(
            [{"propertyName": "country", "operator": "EQ", "value": "de"}], ["ann", "cid"], id="EQ-any-case"
        ),
        pytest.param(
            [{"propertyName": "country", "operator": "NEQ", "value": "DE"}], ["bob", "dee", "eve"], id="NEQ"
        ),
        pytest.param(
            [{"propertyName": "numemployees", "operator": "LT", "value": "10"}], ["ann"], id="LT-numeric"
        ),
        pytest.param(
            [{"propertyName": "numemployees", "operator": "LTE", "value": "10"}], ["ann", "bob"], id="LTE"
        ),
        pytest.param([{"propertyName": "numemployees", "operator": "GT", "value": "250"}], ["dee"], id="GT"),
        pytest.param(
            [{"propertyName": "numemployees", "operator": "GTE", "value": "250"}], ["cid", "dee"], id="GTE"
        ),
        pytest.param(
            [{"propertyName": "numemployees", "operator": "BETWEEN", "value": "10", "highValue": "250"}],
            ["bob", "cid"],
            id="BETWEEN",
        ),
        pytest.param(
            [{"propertyName": "country", "operator": "IN", "values": ["fr", "us"]}], ["bob", "dee"], id="IN"
        ),
        pytest.param(
            [{"propertyName": "country", "operator": "NOT_IN", "values": ["DE"]}],
            ["bob", "dee", "eve"],
            id="NOT_IN",
        ),
        pytest.param(
            [{"propertyName": "lifecyclestage", "operator": "HAS_PROPERTY"}],
            ["ann", "dee"],
            id="HAS_PROPERTY",
        ),
        pytest.param(
            [{"propertyName": "numemployees", "operator": "NOT_HAS_PROPERTY"}], ["eve"], id="NOT_HAS_PROPERTY"
        ),
        pytest.param(
            [{"propertyName": "jobtitle", "operator": "CONTAINS_TOKEN", "value": "sales"}],
            ["bob", "eve"],
            id="CONTAINS_TOKEN",
        ),
        pytest.param(
            [{"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*@acme.example"}],
            ["bob", "cid"],
            id="CONTAINS_TOKEN-wildcard",
        ),
        pytest.param(
            [{"propertyName": "jobtitle", "operator": "NOT_CONTAINS_TOKEN", "value": "sales"}],
            ["ann", "cid", "dee"],
            id="NOT_CONTAINS_TOKEN",
        ),
        pytest.param(
            [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": At(2000)}],
            ["cid", "dee", "eve"],
            id="datetime-as-epoch-ms",
        ),
        pytest.param(
            [{"propertyName": "createdate", "operator": "LT", "value": At(1000, iso=True)}],
            ["ann"],
            id="datetime-as-iso",
        ),
        pytest.param(
            [
                {"propertyName": "country", "operator": "EQ", "value": "DE"},
                {"propertyName": "numemployees", "operator": "GT", "value": "100"},
            ],
            ["cid"],
            id="AND-in-group",
        ),
    ],
)
def test_search_operators(
    hs_sandbox: HsSandbox,
    hs_clock: HsClock,
    people: dict[str, str],
    filters: list[dict[str, Any]],
    expected: list[str],
) -> None:
    t0 = int(hs_clock.now * 1000) - 5000  # `people` advanced the clock 1 s per contact
    result = search(hs_sandbox, resolved(filters, t0), limit=200)
    assert names_of(result, people) == expected and result.total == len(expected)


def test_filter_groups_are_ored(hs_sandbox: HsSandbox, people: dict[str, str]) -> None:
    result = search(
        hs_sandbox,
        [{"propertyName": "country", "operator": "EQ", "value": "FR"}],
        [{"propertyName": "numemployees", "operator": "LT", "value": "10"}],
    )
    assert names_of(result, people) == ["ann", "dee"]


@pytest.mark.parametrize(
    ("sorts", "expected"),
    [
        pytest.param(
            [{"propertyName": "numemployees", "direction": "DESCENDING"}],
            ["dee", "cid", "bob", "ann", "eve"],
            id="numeric-descending-blank-last",
        ),
        pytest.param(
            [{"propertyName": "numemployees", "direction": "ASCENDING"}],
            ["ann", "bob", "cid", "dee", "eve"],
            id="numeric-ascending-blank-last",
        ),
        pytest.param(["-lastmodifieddate"], ["eve", "dee", "cid", "bob", "ann"], id="string-form-descending"),
    ],
)
def test_search_sorts(
    hs_sandbox: HsSandbox, people: dict[str, str], sorts: list[Any], expected: list[str]
) -> None:
    assert names_of(search(hs_sandbox, sorts=sorts), people) == expected


def test_search_returns_requested_properties_and_pages_with_after(
    hs_sandbox: HsSandbox, people: dict[str, str]
) -> None:
    first = search(hs_sandbox, properties=["country"], limit=2)
    assert first.total == 5 and first.paging.next.after == "2"
    assert set(first.results[0].properties) == {"country", "createdate", "lastmodifieddate", "hs_object_id"}
    second = search(hs_sandbox, properties=["country"], limit=2, after=first.paging.next.after)
    last = search(hs_sandbox, limit=2, after="4")
    assert (
        names_of(second, people) == ["cid", "dee"]
        and names_of(last, people) == ["eve"]
        and last.paging is None
    )


@pytest.mark.parametrize(
    ("kwargs", "groups", "message"),
    [
        pytest.param({"limit": 201}, [], "limit", id="limit-over-200"),
        pytest.param(
            {},
            [[{"propertyName": "country", "operator": "HAS_PROPERTY"}]] * 6,
            "filterGroups",
            id="six-groups",
        ),
        pytest.param(
            {},
            [[{"propertyName": "country", "operator": "HAS_PROPERTY"}] * 11],
            "filters in a filterGroup",
            id="eleven-filters-in-a-group",
        ),
        pytest.param(
            {},
            [[{"propertyName": "country", "operator": "HAS_PROPERTY"}] * 9] * 3,
            "Too many filters: 27",
            id="27-filters-in-all",
        ),
        pytest.param(
            {},
            [[{"propertyName": "shoe_size", "operator": "EQ", "value": "9"}]],
            "shoe_size",
            id="unknown-property",
        ),
    ],
)
def test_search_limits_are_a_400(
    hs_sandbox: HsSandbox, kwargs: dict[str, Any], groups: list[list[dict[str, Any]]], message: str
) -> None:
    with pytest.raises(hs_contacts.ApiException) as caught:
        search(hs_sandbox, *groups, **kwargs)
    assert caught.value.status == 400 and message in error_body(caught.value)["message"]


def test_search_never_returns_archived_records(hs_sandbox: HsSandbox, people: dict[str, str]) -> None:
    hs_sandbox.client().crm.contacts.basic_api.archive(people["ann"])
    assert "ann" not in names_of(search(hs_sandbox), people)


def test_search_stops_at_10000_results_with_a_400_past_the_cap(hs_start: Start, hs_clock: HsClock) -> None:
    store = Store()
    import_contacts(store, SEARCH_RESULT_CAP + 300, stamp_ms=lambda n: int(hs_clock.now * 1000))
    sandbox = hs_start(store)
    page = search(sandbox, limit=200, after=str(SEARCH_RESULT_CAP - 200))
    assert page.total == SEARCH_RESULT_CAP + 300 and len(page.results) == 200
    assert page.paging.next.after == str(SEARCH_RESULT_CAP)
    with pytest.raises(hs_contacts.ApiException) as caught:
        search(sandbox, limit=200, after=page.paging.next.after)
    assert caught.value.status == 400 and "10000" in error_body(caught.value)["message"]


def windowed_pull(sandbox: HsSandbox, since_ms: int) -> list[str]:
    """Every contact modified at or after since_ms, past the 10,000 cap: windows on lastmodifieddate, and on
    hs_object_id inside one timestamp when a bulk import put more than 10,000 records on it."""
    seen: dict[str, None] = {}

    def drain(filters: list[dict[str, Any]], sort: str) -> tuple[list[Any], int]:
        got, after, total = [], None, 0
        while True:
            page = search(
                sandbox, filters, sorts=[sort], properties=["lastmodifieddate"], limit=200, after=after
            )
            got += page.results
            total = page.total
            if page.paging is None or int(page.paging.next.after) >= SEARCH_RESULT_CAP:
                return got, total
            after = page.paging.next.after

    cursor = since_ms
    while True:
        got, total = drain(
            [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(cursor)}],
            "lastmodifieddate",
        )
        seen.update((r.id, None) for r in got)
        if len(got) == total:
            return list(seen)
        last = parse_ms(got[-1].properties["lastmodifieddate"])
        assert last is not None
        if last > cursor:
            cursor = last  # records at `last` may continue on the next window: re-read, de-duplicate by id
            continue
        last_id = 0  # a whole window on one timestamp: split it by hs_object_id
        while True:
            got, total = drain(
                [
                    {"propertyName": "lastmodifieddate", "operator": "EQ", "value": str(cursor)},
                    {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)},
                ],
                "hs_object_id",
            )
            seen.update((r.id, None) for r in got)
            if len(got) == total:
                break
            last_id = int(got[-1].id)
        cursor += 1


def test_windowing_pulls_past_10000_even_when_a_bulk_import_shares_one_timestamp(
    hs_start: Start, hs_clock: HsClock
) -> None:
    store = Store()
    t0 = int(hs_clock.now * 1000) - 86_400_000
    # 10,300 imported at one instant, then 300 more changes one second apart.
    ids = import_contacts(store, 10_600, stamp_ms=lambda n: t0 if n < 10_300 else t0 + (n - 10_299) * 1000)
    sandbox = hs_start(store)
    pulled = windowed_pull(sandbox, t0)
    assert len(pulled) == len(ids) and set(pulled) == set(ids)


# ------------------------------------------------------------------------------------------ rate limits


def test_every_response_carries_the_rate_limit_headers(hs_start: Start) -> None:
    sandbox = hs_start(rate_limits=True, ten_second_limit=190, daily_limit=625_000)
    basic = sandbox.client().crm.contacts.basic_api
    remaining = []
    for _ in range(3):
        _, status, headers = basic.get_page_with_http_info()
        assert status == 200
        assert headers["X-HubSpot-RateLimit-Max"] == "190"
        assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert headers["X-HubSpot-RateLimit-Daily"] == "625000"
        remaining.append(
            (headers["X-HubSpot-RateLimit-Remaining"], headers["X-HubSpot-RateLimit-Daily-Remaining"])
        )
    assert remaining == [("189", "624999"), ("188", "624998"), ("187", "624997")]


def test_the_ten_second_window_refuses_with_hubspots_429_and_frees_as_it_rolls(hs_start: Start) -> None:
    sandbox = hs_start(rate_limits=True, ten_second_limit=4)
    basic = sandbox.client().crm.contacts.basic_api
    basic.get_page()
    sandbox.clock.advance(3)
    for _ in range(3):
        basic.get_page()
    with pytest.raises(hs_contacts.ApiException) as caught:
        basic.get_page()
    refusal = caught.value
    body = error_body(refusal)
    assert refusal.status == 429
    assert set(body) == {"status", "message", "errorType", "correlationId", "policyName"}
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert (body["status"], body["errorType"], body["policyName"]) == (
        "error",
        "RATE_LIMIT",
        "TEN_SECONDLY_ROLLING",
    )
    assert refusal.headers["Retry-After"] == "7"  # the first request leaves the window 7 s from now
    assert refusal.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert sandbox.client(SAM).crm.contacts.basic_api.get_page() is not None  # limits are per token
    sandbox.clock.advance(7)
    assert basic.get_page() is not None


def test_search_is_limited_per_second(hs_start: Start) -> None:
    sandbox = hs_start(rate_limits=True, search_per_second=2)
    search(sandbox)
    search(sandbox)
    with pytest.raises(hs_contacts.ApiException) as caught:
        search(sandbox)
    assert caught.value.status == 429 and error_body(caught.value)["policyName"] == "SECONDLY"
    assert caught.value.headers["Retry-After"] == "1"
    sandbox.clock.advance(1)
    assert search(sandbox).total == 0


def test_the_daily_allowance_refuses_until_midnight_utc(hs_start: Start) -> None:
    sandbox = hs_start(rate_limits=True, daily_limit=2)
    sandbox.clock.advance(20 * 3600)  # 20:00 UTC
    basic = sandbox.client().crm.contacts.basic_api
    basic.get_page()
    _, _, headers = basic.get_page_with_http_info()
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    with pytest.raises(hs_contacts.ApiException) as caught:
        basic.get_page()
    assert error_body(caught.value)["policyName"] == "DAILY"
    assert caught.value.headers["Retry-After"] == str(4 * 3600)
    sandbox.clock.advance(4 * 3600)
    assert basic.get_page() is not None


def test_with_rate_limits_off_nothing_is_refused_or_counted(hs_start: Start) -> None:
    sandbox = hs_start(rate_limits=False, ten_second_limit=2)
    basic = sandbox.client().crm.contacts.basic_api
    for _ in range(5):
        _, status, headers = basic.get_page_with_http_info()
        assert status == 200 and "X-HubSpot-RateLimit-Remaining" not in headers
    assert sandbox.app.limits_state()["usage"] == {}


def test_limits_are_read_and_changed_through_the_control_endpoint(hs_start: Start) -> None:
    sandbox = hs_start(rate_limits=True, ten_second_limit=2)
    basic = sandbox.client().crm.contacts.basic_api
    basic.get_page()
    basic.get_page()
    state = control(sandbox, "GET", "limits")
    assert state["usage"] == {"integration": {"ten_second": 2, "secondly_search": 0, "daily": 2}}
    assert (state["rate_limits"], state["ten_second_limit"], state["search_per_second"]) == (True, 2, 5)
    control(sandbox, "PUT", "limits", {"ten_second_limit": 3, "usage": {}})
    for _ in range(3):
        basic.get_page()
    with pytest.raises(hs_contacts.ApiException):
        basic.get_page()
    control(sandbox, "PUT", "limits", {"rate_limits": False})
    assert basic.get_page() is not None


def test_an_injected_429_surfaces_at_once_through_the_client_helper(hs_start: Start) -> None:
    # Regression: with urllib3's default Retry(3) the client slept out Retry-After (really) and retried GETs.
    sandbox = hs_start(faults=Faults(status_429=1.0, retry_after=3600))
    with pytest.raises(hs_contacts.ApiException) as caught:
        sandbox.client().crm.contacts.basic_api.get_page(_request_timeout=5)
    assert caught.value.status == 429 and error_body(caught.value)["errorType"] == "RATE_LIMIT"
    assert caught.value.headers["Retry-After"] == "3600"


def test_request_counts_are_kept_by_method_and_endpoint_kind(hs_sandbox: HsSandbox) -> None:
    contact = create(hs_sandbox, email="count@example.com")
    update(hs_sandbox, contact.id, firstname="c")
    search(hs_sandbox)
    counts = control(hs_sandbox, "GET", "counts")
    assert counts["by_kind"] == {"POST create": 1, "PATCH update": 1, "POST search": 1}


# ---------------------------------------------------------------------------------------------- owners


def test_owners_list_active_ones_by_default_and_archived_ones_on_request(hs_sandbox: HsSandbox) -> None:
    owners = hs_sandbox.client().crm.owners.owners_api
    active = owners.get_page()
    assert [o.email.split("@")[0] for o in active.results] == ["sam.patel", "lena.novak", "jack.miller"]
    assert all(
        o.archived is False and o.type == "PERSON" and o.teams[0].name == "Sales" for o in active.results
    )
    archived = owners.get_page(archived=True)
    assert [o.email.split("@")[0] for o in archived.results] == ["grace.kim", "olivia.davis"]


def test_owners_filter_by_email_and_page_with_after(hs_sandbox: HsSandbox) -> None:
    owners = hs_sandbox.client().crm.owners.owners_api
    assert [o.id for o in owners.get_page(email="LENA.NOVAK@northwind.example").results] == ["102"]
    first = owners.get_page(limit=2)
    second = owners.get_page(limit=2, after=first.paging.next.after)
    assert [o.id for o in first.results + second.results] == ["101", "102", "103"] and second.paging is None


def test_owner_by_id_or_user_id_and_404_for_unknown(hs_sandbox: HsSandbox) -> None:
    owners = hs_sandbox.client().crm.owners.owners_api
    assert owners.get_by_id(101).email == SAM
    assert owners.get_by_id(9002, id_property="userId").id == "102"
    assert owners.get_by_id(104, archived=True).archived is True
    with pytest.raises(hs_owners.exceptions.NotFoundException):
        owners.get_by_id(999)


# ---------------------------------------------------------------------------------------- associations


@pytest.fixture
def linked(hs_sandbox: HsSandbox) -> dict[str, str]:
    crm = hs_sandbox.client().crm
    company = crm.companies.basic_api.create(
        hs_companies.SimplePublicObjectInputForCreate(properties={"name": "Acme"})
    )
    other = crm.companies.basic_api.create(
        hs_companies.SimplePublicObjectInputForCreate(properties={"name": "Globex"})
    )
    contact = create(hs_sandbox, email="link@example.com")
    loner = create(hs_sandbox, email="loner@example.com")
    return {"company": company.id, "other": other.id, "contact": contact.id, "loner": loner.id}


def type_ids(page: Any) -> dict[str, set[int]]:
    return {r.to_object_id: {t.type_id for t in r.association_types} for r in page.results}


def test_default_association_reads_from_both_sides(hs_sandbox: HsSandbox, linked: dict[str, str]) -> None:
    v4 = hs_sandbox.client().crm.associations.v4
    made = v4.basic_api.create_default("contacts", linked["contact"], "companies", linked["company"])
    assert {(r.association_spec.association_type_id) for r in made.results} == {279, 280}
    forward = v4.basic_api.get_page("contacts", linked["contact"], "companies")
    backward = v4.basic_api.get_page("companies", linked["company"], "contacts")
    assert type_ids(forward) == {linked["company"]: {279}}
    assert type_ids(backward) == {linked["contact"]: {280}}


def test_a_new_primary_company_demotes_the_old_one(hs_sandbox: HsSandbox, linked: dict[str, str]) -> None:
    v4 = hs_sandbox.client().crm.associations.v4
    primary = [hs_assoc.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)]
    pair = v4.basic_api.create("contacts", linked["contact"], "companies", linked["company"], primary)
    assert pair.labels == ["Primary"]
    v4.basic_api.create("contacts", linked["contact"], "companies", linked["other"], primary)
    page = v4.basic_api.get_page("contacts", linked["contact"], "companies")
    assert type_ids(page) == {linked["company"]: {279}, linked["other"]: {1, 279}}
    assert type_ids(v4.basic_api.get_page("companies", linked["other"], "contacts")) == {
        linked["contact"]: {2, 280}
    }


def test_batch_read_reports_objects_without_associations_in_a_207(
    hs_sandbox: HsSandbox, linked: dict[str, str]
) -> None:
    v4 = hs_sandbox.client().crm.associations.v4
    v4.batch_api.create_default(
        "contacts",
        "companies",
        hs_assoc.BatchInputPublicDefaultAssociationMultiPost(
            inputs=[
                hs_assoc.PublicDefaultAssociationMultiPost(
                    _from=hs_assoc.PublicObjectId(id=linked["contact"]),
                    to=hs_assoc.PublicObjectId(id=linked["company"]),
                )
            ]
        ),
    )
    read = v4.batch_api.get_page(
        "contacts",
        "companies",
        hs_assoc.BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[
                hs_assoc.PublicFetchAssociationsBatchRequest(id=i)
                for i in (linked["contact"], linked["loner"])
            ]
        ),
    )
    assert (
        type(read).__name__ == "BatchResponsePublicAssociationMultiWithLabelWithErrors"
        and read.num_errors == 1
    )
    assert [(r._from.id, [t.to_object_id for t in r.to]) for r in read.results] == [
        (linked["contact"], [linked["company"]])
    ]
    assert read.errors[0].context == {"fromObjectId": [linked["loner"]]}


def test_deals_associate_with_companies_and_batch_create_reports_missing_objects(
    hs_sandbox: HsSandbox, linked: dict[str, str]
) -> None:
    crm = hs_sandbox.client().crm
    deal = crm.deals.basic_api.create(
        hs_companies.SimplePublicObjectInputForCreate(
            properties={"dealname": "Acme renewal", "dealstage": "qualifiedtobuy", "amount": "12000"}
        )
    )
    spec = [hs_assoc.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=5)]
    result = crm.associations.v4.batch_api.create(
        "deals",
        "companies",
        hs_assoc.BatchInputPublicAssociationMultiPost(
            inputs=[
                hs_assoc.PublicAssociationMultiPost(
                    _from=hs_assoc.PublicObjectId(id=deal.id), to=hs_assoc.PublicObjectId(id=to), types=spec
                )
                for to in (linked["company"], "8888888")
            ]
        ),
    )
    assert result.num_errors == 1 and result.errors[0].context["toObjectId"] == ["8888888"]
    assert [(r.to_object_id, r.labels) for r in result.results] == [(linked["company"], ["Primary"])]
    page = crm.associations.v4.basic_api.get_page("companies", linked["company"], "deals")
    assert type_ids(page) == {deal.id: {6, 342}}


def test_association_archive_answers_204_and_removes_both_directions(
    hs_sandbox: HsSandbox, linked: dict[str, str]
) -> None:
    v4 = hs_sandbox.client().crm.associations.v4
    v4.basic_api.create_default("companies", linked["company"], "contacts", linked["contact"])
    _, status, _ = v4.basic_api.archive_with_http_info(
        "companies", linked["company"], "contacts", linked["contact"]
    )
    assert status == 204
    assert v4.basic_api.get_page("contacts", linked["contact"], "companies").results == []


def test_an_object_created_with_associations_is_linked(hs_sandbox: HsSandbox, linked: dict[str, str]) -> None:
    contacts = hs_sandbox.client().crm.contacts
    spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}
    made = contacts.basic_api.create(
        SimplePublicObjectInputForCreate(
            properties={"email": "born@example.com"},
            associations=[{"to": {"id": linked["company"]}, "types": [spec]}],
        )
    )
    page = hs_sandbox.client().crm.associations.v4.basic_api.get_page("contacts", made.id, "companies")
    assert type_ids(page) == {linked["company"]: {1, 279}}


@pytest.mark.parametrize(
    ("from_type", "to_type", "to_key", "status"),
    [
        pytest.param("contacts", "companies", "missing", 404, id="unknown-company"),
        pytest.param("contacts", "deals", "company", 400, id="unsupported-pair"),
    ],
)
def test_bad_associations_are_refused(
    hs_sandbox: HsSandbox, linked: dict[str, str], from_type: str, to_type: str, to_key: str, status: int
) -> None:
    v4 = hs_sandbox.client().crm.associations.v4
    with pytest.raises(hs_assoc.ApiException) as caught:
        v4.basic_api.create_default(from_type, linked["contact"], to_type, linked.get(to_key, "123456789"))
    assert caught.value.status == status


# ------------------------------------------------------------------------------------------ properties


def test_properties_come_from_the_schema_with_custom_ones_flagged(hs_start: Start) -> None:
    schema = OrgSchema().with_custom("hubspot", "contacts", FieldSpec("fit_score", "double"))
    sandbox = hs_start(schema=schema)
    core = sandbox.client().crm.properties.core_api
    by_name = {p.name: p for p in core.get_all("contacts").results}
    assert by_name["email"].has_unique_value is True and by_name["email"].hubspot_defined is True
    assert by_name["hubspotscore"].modification_metadata.read_only_value is True
    assert by_name["syncd_score"].hubspot_defined is False and by_name["syncd_score"].type == "number"
    assert by_name["fit_score"].hubspot_defined is False
    stages = [o.value for o in by_name["lifecyclestage"].options]
    assert stages[:3] == ["subscriber", "lead", "marketingqualifiedlead"]
    assert by_name["lastmodifieddate"].type == "datetime"
    assert create(sandbox, email="fit@example.com", fit_score="12.5").properties["fit_score"] == "12.5"
    assert core.get_by_name("companies", "domain").name == "domain"
    with pytest.raises(PropertiesApiException) as caught:
        core.get_by_name("contacts", "nope")
    assert caught.value.status == 404


# ------------------------------------------------------------------------------------------ durability


def test_a_restarted_server_keeps_its_data_and_its_timestamps_never_go_back(
    hs_start: Start, tmp_path: Any
) -> None:
    path = tmp_path / "hubspot.sqlite"
    first = hs_start(Store(path))
    contact = create(first, email="durable@example.com")
    first.server.stop()
    first.store.close()
    first.clock.advance(-3600)  # the machine's clock stepped back an hour
    second = hs_start(Store(path))
    again = second.client().crm.contacts.basic_api.get_by_id("durable@example.com", id_property="email")
    assert again.id == contact.id
    later = update(second, contact.id, firstname="After")
    assert (
        parse_ms(later.properties["lastmodifieddate"]) == parse_ms(contact.properties["lastmodifieddate"]) + 1
    )  # type: ignore[operator]
    assert int(create(second, email="next@example.com").id) > int(contact.id)


def test_issue_tokens_makes_one_per_owner_and_the_integration(hs_sandbox: HsSandbox) -> None:
    tokens = hs_sandbox.app.issue_tokens()
    reps = ("sam.patel", "lena.novak", "jack.miller", "grace.kim", "olivia.davis")
    assert set(tokens) == {"integration"} | {f"{rep}@northwind.example" for rep in reps}
    assert len(set(tokens.values())) == len(tokens)


def test_time_helpers_round_trip() -> None:
    assert iso_ms(1_704_067_200_123) == "2024-01-01T00:00:00.123Z"
    assert parse_ms("2024-01-01T00:00:00.123Z") == 1_704_067_200_123
    assert parse_ms("2024-01-01T01:00:00+01:00") == 1_704_067_200_000
    assert parse_ms("1704067200000") == 1_704_067_200_000
    assert parse_ms("2024-01-01") == 1_704_067_200_000
    assert parse_ms("soon") is None
