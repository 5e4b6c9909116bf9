"""Merges, deletions, field limits and deals in real orgs, through the sandbox and the unmodified clients.

Each test starts from an org with reps and no persons, makes the records it needs as a person would (a rep's
token), runs a cycle, changes the org between cycles as a person would (a merge, a deletion), and checks the
systems and ``syncd explain`` after the next cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Org

from syncd.cli import cli
from syncd.core.types import Intent
from syncd.cycle import CycleReport
from syncd.ledger import Ledger

SAM = "sam.patel@northwind.example"


@pytest.fixture
def bare(make_org: Callable[..., Org]) -> Org:
    """The Northwind org with its reps and queues, no persons: each test makes its own."""
    return make_org(persons=0)


def contact(org: Org, email: str, **props: Any) -> str:
    """A HubSpot contact a rep typed in; ``salesqualifiedlead`` hands it to sales (a Lead is created)."""
    props = {"email": email, "lastname": email.split("@")[0].title(), **props}
    props.setdefault("lifecyclestage", "salesqualifiedlead")
    api = org.sandbox.hubspot_client(SAM).crm.contacts.basic_api
    return str(api.create(simple_public_object_input_for_create={"properties": props}).id)


def settled(org: Org) -> None:
    """Two cycles: the first creates the Leads, the second pulls them back (syncd has seen each record)."""
    run(org)
    run(org)


def run(org: Org) -> CycleReport:
    report = org.cycle().run(org.rules)
    assert report.ok, report
    org.clock.advance(minutes=5)
    return report


def leads(org: Org) -> dict[str, dict[str, Any]]:
    """Live Leads by id."""
    sf = org.sandbox.salesforce_client()
    rows = sf.query_all("SELECT Id, Syncd_HubSpot_Id__c, LastName, NumberOfEmployees, Email FROM Lead")
    return {r["Id"]: r for r in rows["records"]}


def lead_of(org: Org, hubspot_id: str) -> str:
    found = [lid for lid, r in leads(org).items() if r["Syncd_HubSpot_Id__c"] == hubspot_id]
    assert len(found) == 1, found
    return found[0]


def sf_merge(org: Org, sobject: str, master: str, loser: str) -> None:
    """A person merges two Salesforce records (the UI's merge; the sandbox's control endpoint)."""
    org.sandbox.control(
        "salesforce",
        "POST",
        "merge",
        {"sobject": sobject, "master_id": master, "merge_ids": [loser], "user": SAM},
    )


def intents_since(org: Org, run_id: str | None) -> list[Intent]:
    with Ledger(org.config.ledger.path, readonly=True) as ledger:
        return [i for i in ledger.outbox.intents() if i.run_id == run_id]


def explain(org: Org, query: str) -> str:
    """What `syncd explain QUERY` prints."""
    for c in org.cycles:
        c.close()
    org.cycles.clear()
    result = CliRunner().invoke(cli, ["explain", query, "--config", str(org.config_path)])
    assert result.exit_code == 0, result.output
    return result.output


def keys_of(org: Org, *refs: tuple[str, str, str]) -> set[str | None]:
    with Ledger(org.config.ledger.path, readonly=True) as ledger:
        return {ledger.identity.key_of(*ref) for ref in refs}


# ------------------------------------------------------------------------------------------------- merges


def test_a_hubspot_contact_merge_is_followed_and_nothing_is_written_to_the_merged_id(bare: Org) -> None:
    gone = contact(bare, "ada@merge.example")
    run(bare)
    lead = lead_of(bare, gone)
    # A rep types the person in again, then merges the old contact into the new one.
    keep = contact(bare, "ada.lovelace@merge.example", firstname="Ada")
    bare.sandbox.hubspot_client(SAM).crm.contacts.basic_api.merge(
        public_merge_input={"primaryObjectId": keep, "objectIdToMerge": gone}
    )

    report = run(bare)

    assert report.tally.count("salesforce", "create") == 0, "no second Lead for the merged person"
    assert list(leads(bare)) == [lead]
    assert (
        len(
            keys_of(
                bare,
                ("hubspot", "contacts", gone),
                ("hubspot", "contacts", keep),
                ("salesforce", "Lead", lead),
            )
        )
        == 1
    )
    written = intents_since(bare, report.run_id)
    assert not [i for i in written if i.system == "hubspot" and i.record_id == gone], (
        "no write to the dead id"
    )
    assert leads(bare)[lead]["Syncd_HubSpot_Id__c"] == keep, "the Lead now names the survivor"
    for query in (gone, keep):
        assert f"HubSpot contacts {gone} was merged into {keep}" in explain(bare, query)


def test_a_salesforce_lead_merge_joins_the_two_persons_and_creates_no_lead_again(bare: Org) -> None:
    first = contact(bare, "grace@merge.example")
    second = contact(bare, "grace.hopper@merge.example")
    settled(bare)
    keep, lose = lead_of(bare, first), lead_of(bare, second)
    sf_merge(bare, "Lead", keep, lose)

    report = run(bare)

    assert report.tally.count("salesforce", "create") == 0, "the merged-away Lead's contact gets no new Lead"
    assert list(leads(bare)) == [keep]
    refs = [("hubspot", "contacts", first), ("hubspot", "contacts", second), ("salesforce", "Lead", keep)]
    assert len(keys_of(bare, *refs, ("salesforce", "Lead", lose))) == 1, "one person"
    assert not [i for i in intents_since(bare, report.run_id) if i.record_id == lose]
    for query in (lose, keep):
        assert f"Salesforce Lead {lose} was merged into {keep}" in explain(bare, query)

    again = run(bare)
    assert again.tally.total == 0, "the merge settles: the next cycle writes nothing"


def test_a_salesforce_account_merge_joins_the_two_accounts(bare: Org) -> None:
    sf = bare.sandbox.salesforce_client(SAM)
    keep = sf.Account.create({"Name": "Initech", "Website": "https://initech.example"})["id"]
    lose = sf.Account.create({"Name": "Initech GmbH", "Website": "https://initech.example.de"})["id"]
    run(bare)
    assert len(keys_of(bare, ("salesforce", "Account", keep), ("salesforce", "Account", lose))) == 2
    sf_merge(bare, "Account", keep, lose)

    report = run(bare)

    assert keys_of(bare, ("salesforce", "Account", lose)) == keys_of(bare, ("salesforce", "Account", keep))
    assert not [i for i in intents_since(bare, report.run_id) if i.record_id == lose], (
        "no write to the dead id"
    )
    assert f"Salesforce Account {lose} was merged into {keep}" in explain(bare, lose)


def test_a_hubspot_company_merge_joins_the_two_accounts(bare: Org) -> None:
    api = bare.sandbox.hubspot_client(SAM).crm.companies.basic_api
    keep = api.create(
        simple_public_object_input_for_create={"properties": {"name": "Globex", "domain": "globex.example"}}
    ).id
    lose = api.create(
        simple_public_object_input_for_create={
            "properties": {"name": "Globex Corp", "domain": "globex.example.org"}
        }
    ).id
    run(bare)
    assert len(keys_of(bare, ("hubspot", "companies", keep), ("hubspot", "companies", lose))) == 2
    api.merge(public_merge_input={"primaryObjectId": keep, "objectIdToMerge": lose})

    report = run(bare)

    assert keys_of(bare, ("hubspot", "companies", lose)) == keys_of(bare, ("hubspot", "companies", keep))
    assert not [i for i in intents_since(bare, report.run_id) if i.record_id == lose], (
        "no write to the dead id"
    )
    assert f"HubSpot companies {lose} was merged into {keep}" in explain(bare, lose)


# ------------------------------------------------------------------------------------------------ deletes


def test_a_lead_a_person_deleted_is_not_created_again(bare: Org) -> None:
    hs_id = contact(bare, "linus@delete.example")
    settled(bare)
    lead = lead_of(bare, hs_id)
    bare.sandbox.salesforce_client(SAM).Lead.delete(lead)

    report = run(bare)
    again = run(bare)

    assert report.tally.count("salesforce", "create") == 0
    assert again.tally.count("salesforce", "create") == 0
    assert leads(bare) == {}
    text = explain(bare, hs_id)
    assert f"Salesforce Lead {lead} was deleted by a person" in text
    assert "not re-created (policy [handoffs] recreate_deleted = never)" in text


def test_a_contact_a_person_archived_is_shown_and_never_written(bare: Org) -> None:
    hs_id = contact(bare, "ken@archive.example")
    settled(bare)
    lead = lead_of(bare, hs_id)
    bare.sandbox.hubspot_client(SAM).crm.contacts.basic_api.archive(hs_id)
    # (Each run() makes a new SyncCycle: like a restarted process, its first pull lists archived records.)

    report = run(bare)

    assert report.tally.total == 0 or not [
        i for i in intents_since(bare, report.run_id) if i.record_id == hs_id
    ]
    assert list(leads(bare)) == [lead], "the Lead stays; nothing is created"
    assert f"HubSpot contacts {hs_id} was archived by a person" in explain(bare, lead)


@pytest.mark.parametrize(
    ("policy", "days", "created"),
    [
        pytest.param(("after_days", 7.0), 8, 1, id="after_days-7-passed"),
        pytest.param(("after_days", 7.0), 3, 0, id="after_days-7-not-yet"),
        pytest.param(("never", 0.0), 400, 0, id="never"),
        pytest.param(("on_handoff", 0.0), 1, 0, id="on_handoff-no-handoff-since"),
    ],
)
def test_recreate_deleted_policy_decides_when_a_lead_comes_back(
    bare: Org, policy: tuple[str, float], days: int, created: int
) -> None:
    hs_id = contact(bare, "margaret@delete.example")
    settled(bare)
    bare.sandbox.salesforce_client(SAM).Lead.delete(lead_of(bare, hs_id))
    run(bare)
    rules = dataclasses.replace(
        bare.rules, policy=dataclasses.replace(bare.rules.policy, recreate_deleted=policy)
    )
    bare.clock.advance(days=days)

    report = bare.cycle().run(rules)

    assert report.tally.count("salesforce", "create") == created
    assert len([r for r in leads(bare).values() if r["Syncd_HubSpot_Id__c"] == hs_id]) == created


# ------------------------------------------------------------------------------------------------- limits


def test_values_over_the_fields_limits_are_fitted_or_quarantined_per_the_mapping(bare: Org) -> None:
    long_name = "Wolfeschlegelsteinhausenbergerdorff" * 286  # 10,010 characters
    fits = contact(bare, "hubert@limits.example", lastname=long_name, numemployees="100000000000000000000")
    bad = contact(bare, "bro..ken@limits.example")  # HubSpot takes it; Salesforce does not

    report = run(bare)

    assert sum(report.failed.values()) == 0, "the org refused no write"
    made = leads(bare)[lead_of(bare, fits)]
    assert made["LastName"] == long_name[:80], "Lead.LastName: on_limit = truncate"
    assert made["NumberOfEmployees"] == 99_999_999, "Lead.NumberOfEmployees: on_limit = clamp"
    assert not [r for r in leads(bare).values() if r["Syncd_HubSpot_Id__c"] == bad], "Lead.Email: quarantine"
    with Ledger(bare.config.ledger.path, readonly=True) as ledger:
        held = {q.record_id: q.reason for q in ledger.quarantine.held()}
    assert "Lead.Email" in held[bad] and "INVALID_EMAIL_ADDRESS" in held[bad]


# -------------------------------------------------------------------------------------------------- deals

DEAL_TO_COMPANY = 5  # HubSpot-defined association type "deal to company"


def test_a_hubspot_only_companys_deals_make_its_contacts_opportunities_then_customers(bare: Org) -> None:
    hs = bare.sandbox.hubspot_client(SAM)
    company = hs.crm.companies.basic_api.create(
        simple_public_object_input_for_create={
            "properties": {"name": "Umbrella", "domain": "umbrella.example", "country": "US"}
        }
    ).id
    person = contact(bare, "alice@umbrella.example", lifecyclestage="lead")
    deal = hs.crm.deals.basic_api.create(
        simple_public_object_input_for_create={
            "properties": {
                "dealname": "Umbrella pilot",
                "dealstage": "qualifiedtobuy",
                "pipeline": "default",
            },
            "associations": [
                {
                    "to": {"id": company},
                    "types": [
                        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": DEAL_TO_COMPANY}
                    ],
                }
            ],
        }
    ).id

    report = run(bare)

    props = ["lifecyclestage", "hubspot_owner_id"]
    assert (
        hs.crm.contacts.basic_api.get_by_id(person, properties=props).properties["lifecyclestage"]
        == "opportunity"
    )
    account_owner = hs.crm.companies.basic_api.get_by_id(company, properties=props).properties[
        "hubspot_owner_id"
    ]
    assert account_owner not in (None, "")
    assert (
        hs.crm.deals.basic_api.get_by_id(deal, properties=props).properties["hubspot_owner_id"]
        == account_owner
    )
    deal_writes = [i for i in intents_since(bare, report.run_id) if i.object == "deals"]
    assert [i.record_id for i in deal_writes] == [deal], "the deal's owner follows its account (deal_owner)"
    assert keys_of(bare, ("hubspot", "deals", deal)) == keys_of(bare, ("hubspot", "companies", company))

    hs.crm.deals.basic_api.update(deal, simple_public_object_input={"properties": {"dealstage": "closedwon"}})
    run(bare)

    assert (
        hs.crm.contacts.basic_api.get_by_id(person, properties=props).properties["lifecyclestage"]
        == "customer"
    )


def test_deal_owner_keep_leaves_deal_owners_alone(bare: Org) -> None:
    hs = bare.sandbox.hubspot_client(SAM)
    company = hs.crm.companies.basic_api.create(
        simple_public_object_input_for_create={
            "properties": {"name": "Hooli", "domain": "hooli.example", "country": "US"}
        }
    ).id
    deal = hs.crm.deals.basic_api.create(
        simple_public_object_input_for_create={
            "properties": {"dealname": "Hooli pilot", "dealstage": "qualifiedtobuy", "pipeline": "default"},
            "associations": [
                {
                    "to": {"id": company},
                    "types": [
                        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": DEAL_TO_COMPANY}
                    ],
                }
            ],
        }
    ).id
    rules = dataclasses.replace(bare.rules, policy=dataclasses.replace(bare.rules.policy, deal_owner="keep"))

    report = bare.cycle().run(rules)

    assert not [i for i in intents_since(bare, report.run_id) if i.object == "deals"]
    owner = hs.crm.deals.basic_api.get_by_id(deal, properties=["hubspot_owner_id"]).properties[
        "hubspot_owner_id"
    ]
    assert owner in (None, "")


# ------------------------------------------------------------------------------------------------- pulls


def test_an_incremental_cycle_pulls_every_salesforce_object_in_one_composite_call(org: Org) -> None:
    cycle = org.cycle()
    cycle.run(org.rules)
    org.systems.reset_counts()
    org.clock.advance(minutes=5)

    report = cycle.run(org.rules)

    assert report.ok
    kinds = org.systems.kinds()["salesforce"]
    # Five delta queries (Account, Contact, Lead, Opportunity, the roster's User) fill a /composite request;
    # AccountTeamMember (teams.toml) rides the same request as a Get Updated subrequest: one request.
    assert kinds.get("POST composite") == 1, kinds
    # No query of its own reads Account, Contact, Lead, Opportunity or AccountTeamMember's changes; the
    # members the first cycle wrote are read by id (one query for up to 200 of them).
    assert not [k for k in kinds if "query_all" in k], kinds
    assert kinds.get("GET query", 0) <= 1, kinds
