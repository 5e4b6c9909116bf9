"""Account teams in the sandbox, through the unmodified clients: Salesforce AccountTeamMember (SOQL, sObject
REST, sObject Collections, describe, the side effects of an Account owner change) and HubSpot owner-type
properties."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from hubspot.crm import companies as hs_companies
from hubspot.crm.companies import SimplePublicObjectInputForCreate
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from syncd.sandbox.runtime import Sandbox

if TYPE_CHECKING:
    from tests.sandbox.conftest import HsSandbox, SfSandbox

TEAM_FIELDS = (
    "Id, AccountId, UserId, TeamMemberRole, AccountAccessLevel, OpportunityAccessLevel, CaseAccessLevel"
)


def collection(sf: Salesforce, method: str, body: Any = None, **params: Any) -> Any:
    return sf.restful("composite/sobjects", method=method, json=body, params=params or None)


def member(account_id: str, user_id: str, role: str = "Account Manager", **extra: Any) -> dict[str, Any]:
    return {
        "attributes": {"type": "AccountTeamMember"},
        "AccountId": account_id,
        "UserId": user_id,
        "TeamMemberRole": role,
        "AccountAccessLevel": "Edit",
        "OpportunityAccessLevel": "Read",
        "CaseAccessLevel": "None",
        **extra,
    }


def team(sf: Salesforce, account_id: str, *, all_rows: bool = False) -> list[dict[str, Any]]:
    soql = f"SELECT {TEAM_FIELDS} FROM AccountTeamMember WHERE AccountId = '{account_id}' ORDER BY UserId"
    return list(sf.query_all(soql, include_deleted=all_rows)["records"])


@pytest.fixture
def account(sf_sandbox: SfSandbox) -> str:
    """An account owned by jack.miller, with one team member syncd added and one a human added."""
    sf = sf_sandbox.client()
    account_id = str(sf.Account.create({"Name": "Acme", "OwnerId": sf_sandbox.user_id("jack.miller")})["id"])
    sf.AccountTeamMember.create(member(account_id, sf_sandbox.user_id("sam.patel"), "Sales Development Rep"))
    human = sf_sandbox.client("jack.miller@northwind.example")
    human.AccountTeamMember.create(
        member(account_id, sf_sandbox.user_id("lukas.schmidt"), "Executive Sponsor")
    )
    return account_id


def test_describe_has_the_object_its_prefix_and_create_only_fields(sf_sandbox: SfSandbox) -> None:
    info = sf_sandbox.client().AccountTeamMember.describe()
    fields = {f["name"]: f for f in info["fields"]}
    assert info["keyPrefix"] == "01M"
    assert fields["AccountId"]["createable"] and not fields["AccountId"]["updateable"]
    assert fields["UserId"]["referenceTo"] == ["User"] and not fields["UserId"]["updateable"]
    assert not fields["Title"]["createable"]
    levels = [v["value"] for v in fields["OpportunityAccessLevel"]["picklistValues"]]
    assert levels == ["None", "Read", "Edit"]
    assert "Customer Success Manager" in [v["value"] for v in fields["TeamMemberRole"]["picklistValues"]]


def test_members_are_created_queried_and_carry_who_created_them(sf_sandbox: SfSandbox, account: str) -> None:
    sf = sf_sandbox.client()
    rows = sf.query_all(
        f"SELECT Id, UserId, TeamMemberRole, CreatedById, Title FROM AccountTeamMember WHERE AccountId = '{account}'"
    )["records"]
    by_user = {r["UserId"]: r for r in rows}
    assert set(by_user) == {sf_sandbox.user_id("sam.patel"), sf_sandbox.user_id("lukas.schmidt")}
    assert all(r["Id"].startswith("01M") for r in rows)
    assert by_user[sf_sandbox.user_id("sam.patel")]["CreatedById"] == sf_sandbox.app.integration_user_id
    assert by_user[sf_sandbox.user_id("lukas.schmidt")]["CreatedById"] == sf_sandbox.user_id("jack.miller")


def test_a_create_for_a_user_already_on_the_team_updates_that_member(
    sf_sandbox: SfSandbox, account: str
) -> None:
    sf = sf_sandbox.client()
    before = {r["UserId"]: r["Id"] for r in team(sf, account)}
    sam = sf_sandbox.user_id("sam.patel")
    again = sf.AccountTeamMember.create(member(account, sam, "Account Executive", AccountAccessLevel="Read"))
    rows = {r["UserId"]: r for r in team(sf, account)}
    assert again["id"] == before[sam] and len(rows) == 2
    assert rows[sam]["TeamMemberRole"] == "Account Executive" and rows[sam]["AccountAccessLevel"] == "Read"


@pytest.mark.parametrize("field", ["AccountId", "UserId"])
def test_an_update_cannot_move_a_member_to_another_account_or_user(
    sf_sandbox: SfSandbox, account: str, field: str
) -> None:
    sf = sf_sandbox.client()
    first = team(sf, account)[0]
    other = str(sf.Account.create({"Name": "Other"})["id"])
    value = other if field == "AccountId" else sf_sandbox.user_id("jack.miller")
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.AccountTeamMember.update(first["Id"], {field: value})
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert caught.value.content[0]["fields"] == [field]


def test_an_access_level_outside_the_picklist_is_refused(sf_sandbox: SfSandbox, account: str) -> None:
    sf = sf_sandbox.client()
    results = collection(
        sf,
        "POST",
        {"records": [member(account, sf_sandbox.user_id("jack.miller"), OpportunityAccessLevel="All")]},
    )
    assert results[0]["success"] is False
    assert results[0]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_a_deleted_member_is_gone_even_for_query_all(sf_sandbox: SfSandbox, account: str) -> None:
    sf = sf_sandbox.client()
    first = team(sf, account)[0]
    results = collection(sf, "DELETE", ids=first["Id"])
    assert results == [{"id": first["Id"], "success": True, "errors": []}]
    assert [r["Id"] for r in team(sf, account, all_rows=True)] == [team(sf, account)[0]["Id"]]


@pytest.mark.parametrize("path", ["sobject", "collection"])
def test_an_account_owner_change_through_the_api_deletes_the_whole_team(
    sf_sandbox: SfSandbox, account: str, path: str
) -> None:
    sf = sf_sandbox.client()
    new_owner = sf_sandbox.user_id("sam.patel")
    if path == "sobject":
        sf.Account.update(account, {"OwnerId": new_owner})
    else:
        saved = collection(
            sf,
            "PATCH",
            {"records": [{"attributes": {"type": "Account"}, "Id": account, "OwnerId": new_owner}]},
        )
        assert saved[0]["success"] is True
    # KeepAccountTeam defaults to false and REST cannot set it: the human's member goes too.
    assert team(sf, account, all_rows=True) == []


def test_an_owner_change_through_bulk_api_deletes_the_team_too(sf_sandbox: SfSandbox, account: str) -> None:
    # Data Loader cannot keep account teams with the Bulk API (forcedotcom/dataloader#967).
    sf = sf_sandbox.client()
    (result,) = sf.bulk2.Account.update(
        records=[{"Id": account, "OwnerId": sf_sandbox.user_id("sam.patel")}], wait=0
    )
    assert result["numberRecordsProcessed"] == 1 and result["numberRecordsFailed"] == 0
    assert team(sf, account, all_rows=True) == []


def test_rolled_back_and_deleted_members_leave_the_team_exact(sf_sandbox: SfSandbox, account: str) -> None:
    sf = sf_sandbox.client()
    jack, sam = sf_sandbox.user_id("jack.miller"), sf_sandbox.user_id("sam.patel")
    failed = collection(
        sf,
        "POST",
        {"allOrNone": True, "records": [member(account, jack), member(account, jack, CaseAccessLevel="All")]},
    )
    assert [r["success"] for r in failed] == [False, False]
    assert len(team(sf, account)) == 2
    sam_member = next(r for r in team(sf, account) if r["UserId"] == sam)
    collection(sf, "DELETE", ids=sam_member["Id"])
    again = sf.AccountTeamMember.create(member(account, sam))
    assert again["id"] != sam_member["Id"] and len(team(sf, account)) == 2
    sf.Account.update(account, {"OwnerId": sam})
    assert team(sf, account, all_rows=True) == []


def test_a_write_that_keeps_the_owner_keeps_the_team(sf_sandbox: SfSandbox, account: str) -> None:
    sf = sf_sandbox.client()
    sf.Account.update(account, {"Name": "Acme Corp", "OwnerId": sf_sandbox.user_id("jack.miller")})
    assert len(team(sf, account)) == 2


def test_an_owner_change_moves_no_contact_or_opportunity(sf_sandbox: SfSandbox, account: str) -> None:
    sf = sf_sandbox.client()
    jack = sf_sandbox.user_id("jack.miller")
    contact = sf.Contact.create({"AccountId": account, "LastName": "Ng", "OwnerId": jack})["id"]
    opportunity = sf.Opportunity.create(
        {
            "AccountId": account,
            "Name": "Renewal",
            "StageName": "Prospecting",
            "CloseDate": "2026-06-30",
            "OwnerId": jack,
        }
    )["id"]
    sf.Account.update(account, {"OwnerId": sf_sandbox.user_id("sam.patel")})
    assert sf.Contact.get(contact)["OwnerId"] == jack
    assert sf.Opportunity.get(opportunity)["OwnerId"] == jack


def test_the_team_can_be_put_back_after_an_owner_change(sf_sandbox: SfSandbox, account: str) -> None:
    sf = sf_sandbox.client()
    kept = team(sf, account)
    sf.Account.update(account, {"OwnerId": sf_sandbox.user_id("sam.patel")})
    records = [
        {
            "attributes": {"type": "AccountTeamMember"},
            **{k: v for k, v in r.items() if k not in ("Id", "attributes")},
        }
        for r in kept
    ]
    assert all(r["success"] for r in collection(sf, "POST", {"records": records}))
    assert [(r["UserId"], r["TeamMemberRole"]) for r in team(sf, account)] == [
        (r["UserId"], r["TeamMemberRole"]) for r in kept
    ]


# --------------------------------------------------------------------------------------------- HubSpot


def create_company(hs_sandbox: HsSandbox, **props: str) -> Any:
    api = hs_sandbox.client().crm.companies.basic_api
    return api.create(SimplePublicObjectInputForCreate(properties={"name": "Acme", **props}))


def test_role_properties_are_owner_properties(hs_sandbox: HsSandbox) -> None:
    core = hs_sandbox.client().crm.properties.core_api
    prop = core.get_by_name("companies", "syncd_account_manager")
    assert (prop.type, prop.field_type, prop.referenced_object_type) == ("enumeration", "select", "OWNER")
    assert prop.hubspot_defined is False
    assert core.get_by_name("contacts", "syncd_csm").referenced_object_type == "OWNER"
    assert core.get_by_name("companies", "syncd_tier").type == "string"


@pytest.mark.parametrize(
    ("owner", "ok"),
    [
        pytest.param("101", True, id="an-owner"),
        pytest.param("999", False, id="unknown-owner"),
        pytest.param("104", False, id="archived-owner"),
        pytest.param("9001", False, id="a-user-id-is-no-owner-id"),
    ],
)
def test_a_role_property_takes_only_an_owner_id(hs_sandbox: HsSandbox, owner: str, ok: bool) -> None:
    if ok:
        assert create_company(hs_sandbox, syncd_csm=owner).properties["syncd_csm"] == owner
        return
    with pytest.raises(hs_companies.ApiException) as caught:
        create_company(hs_sandbox, syncd_csm=owner)
    body = json.loads(caught.value.body)
    assert caught.value.status == 400 and body["errors"][0]["code"] == "INVALID_OWNER_ID"
    assert body["errors"][0]["context"] == {"propertyName": ["syncd_csm"]}


# --------------------------------------------------------------------------------------------- the seeded org


@pytest.fixture(scope="module")
def seeded() -> Iterator[Sandbox]:
    with Sandbox(seed=3, persons=600, rate_limits=False) as running:
        yield running


def test_the_seeded_org_has_teams_some_added_by_humans_and_some_with_reps_who_left(seeded: Sandbox) -> None:
    sf = seeded.salesforce_client()
    users = {u["Id"]: u for u in sf.query_all("SELECT Id, Email, IsActive FROM User")["records"]}
    integration = next(i for i, u in users.items() if u["Email"] == "integration@northwind.example")
    members = sf.query_all("SELECT AccountId, UserId, CreatedById, TeamMemberRole FROM AccountTeamMember")[
        "records"
    ]
    assert len(members) > 20
    by_human = [m for m in members if m["CreatedById"] != integration]
    assert 0 < len(by_human) < len(members)
    assert any(not users[m["UserId"]]["IsActive"] for m in members)
    assert len({(m["AccountId"], m["UserId"]) for m in members}) == len(
        members
    )  # one row per user and account


def test_the_largest_customers_are_single_threaded(seeded: Sandbox) -> None:
    sf = seeded.salesforce_client()
    customers = sf.query_all(
        "SELECT Id, OwnerId FROM Account WHERE Type = 'Customer' ORDER BY AnnualRevenue DESC LIMIT 5"
    )["records"]
    for account in customers:
        reps = {account["OwnerId"]}
        for obj in ("Contact", "Opportunity", "AccountTeamMember"):
            field = "UserId" if obj == "AccountTeamMember" else "OwnerId"
            rows = sf.query_all(f"SELECT {field} FROM {obj} WHERE AccountId = '{account['Id']}'")["records"]
            reps |= {r[field] for r in rows}
        assert reps == {account["OwnerId"]}, account["Id"]


def test_some_tiers_were_set_by_hand_in_both_systems(seeded: Sandbox) -> None:
    sf = seeded.salesforce_client()
    tiers = sf.query_all("SELECT Syncd_Tier__c FROM Account WHERE Syncd_Tier__c != null")["records"]
    assert {r["Syncd_Tier__c"] for r in tiers} <= {"Strategic", "Enterprise", "Mid-Market", "SMB"}
    assert len(tiers) > 5
    companies = seeded.hubspot_client().crm.companies.get_all(properties=["syncd_tier"])
    assert any(c.properties.get("syncd_tier") for c in companies)
