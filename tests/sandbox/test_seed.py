"""The seeded Northwind org: deterministic, shaped like the sandbox org of the rules, referentially sound, and
holding every kind of mess syncd exists to fix."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from syncd.core.systems import (
    DEAL_STAGES,
    HUBSPOT_OBJECTS,
    LEAD_STATUSES,
    LIFECYCLE_STAGES,
    OPPORTUNITY_STAGES,
    SALESFORCE_OBJECTS,
)
from syncd.sandbox.ids import is_valid_sf_id
from syncd.sandbox.seed import INTEGRATION_EMAIL, REPS, SIZES, TERRITORIES, generate, persons_for_size
from syncd.sandbox.store import Record, Store

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW_SF = "2025-03-01T12:00:00.000+0000"
NOW_HS = "2025-03-01T12:00:00.000Z"
INACTIVE = {"grace.kim", "olivia.davis", "hugo.dubois"}
ALL_TERRITORY_COUNTRIES = {c for codes in TERRITORIES.values() for c in codes}


@dataclass
class Org:
    sf: Store
    hs: Store
    summary: dict[str, Any]

    def sf_all(self, type_: str) -> list[Record]:
        return list(self.sf.all(type_))

    def hs_all(self, type_: str) -> list[Record]:
        return list(self.hs.all(type_))

    @property
    def users_by_id(self) -> dict[str, Record]:
        return {u["Id"]: u for u in self.sf.all("User")}

    @property
    def owners_by_id(self) -> dict[str, Record]:
        return {o["id"]: o for o in self.hs.all("owners")}

    def queue_id(self, developer_name: str) -> str:
        return next(g["Id"] for g in self.sf.all("Group") if g["DeveloperName"] == developer_name)


def make_org(seed: int, persons: int, now: datetime = NOW) -> Org:
    sf, hs = Store(), Store()
    summary = generate(sf, hs, seed=seed, persons=persons, now=now)
    return Org(sf, hs, summary)


@pytest.fixture(scope="module")
def org() -> Iterator[Org]:
    """One read-only org of 1,500 persons shared by this module's tests (generation takes ~0.5 s)."""
    yield make_org(seed=7, persons=1_500)


def dump(store: Store, types: list[str]) -> dict[str, list[Record]]:
    return {t: sorted(store.all(t), key=lambda r: str(r.get("Id") or r.get("id"))) for t in types}


SF_TYPES = list(SALESFORCE_OBJECTS)
HS_TYPES = [*HUBSPOT_OBJECTS, "owners", "associations"]


def norm(email: str | None) -> str:
    return (email or "").strip().lower()


# ------------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_data() -> None:
    a, b = make_org(3, 400), make_org(3, 400)
    assert dump(a.sf, SF_TYPES) == dump(b.sf, SF_TYPES)
    assert dump(a.hs, HS_TYPES) == dump(b.hs, HS_TYPES)
    assert a.sf.meta("sf_seq") == b.sf.meta("sf_seq")
    assert a.hs.meta("hs_seq") == b.hs.meta("hs_seq")
    assert a.summary == b.summary


def test_different_seed_gives_different_data() -> None:
    a, b = make_org(3, 400), make_org(4, 400)
    emails_a = {c["properties"]["email"] for c in a.hs.all("contacts")}
    emails_b = {c["properties"]["email"] for c in b.hs.all("contacts")}
    assert len(emails_a & emails_b) < len(emails_a) // 10
    assert dump(a.sf, ["Account"]) != dump(b.sf, ["Account"])


def test_the_moment_shifts_timestamps_but_not_who_owns_what() -> None:
    a, b = make_org(3, 300, NOW), make_org(3, 300, datetime(2026, 7, 15, 9, 30, tzinfo=UTC))

    def people(o: Org) -> list[tuple[Any, ...]]:
        leads = [(r["Id"], r["Email"], r["OwnerId"], r["Status"]) for r in o.sf.all("Lead")]
        contacts = [
            (
                c["id"],
                c["properties"]["email"],
                c["properties"]["hubspot_owner_id"],
                c["properties"]["lifecyclestage"],
            )
            for c in o.hs.all("contacts")
        ]
        return leads + contacts

    assert people(a) == people(b)
    assert [r["CreatedDate"] for r in a.sf.all("Lead")] != [r["CreatedDate"] for r in b.sf.all("Lead")]


def test_sizes() -> None:
    assert [persons_for_size(s) for s in ("small", "medium", "large")] == [1_000, 20_000, 200_000]
    assert set(SIZES) == {"small", "medium", "large"}


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate(Store(), Store(), seed=1, persons=10, now=datetime(2025, 1, 1))


# ------------------------------------------------------------------------------------------- the org


def test_users_are_the_24_reps_and_the_integration_user(org: Org) -> None:
    users = {u["Email"]: u for u in org.sf.all("User")}
    assert len(REPS) == 24
    assert set(users) == {r.email for r in REPS} | {INTEGRATION_EMAIL}
    for email, user in users.items():
        local = email.split("@")[0]
        assert user["IsActive"] is (local not in INACTIVE), email
        assert user["Username"] == email
        if email != INTEGRATION_EMAIL:
            assert user["Name"] == f"{user['FirstName']} {user['LastName']}"
            assert local == f"{user['FirstName']}.{user['LastName']}".lower()


def test_hubspot_owners_are_the_reps_with_inactive_ones_archived(org: Org) -> None:
    owners = {o["email"]: o for o in org.hs.all("owners")}
    assert set(owners) == {r.email for r in REPS}  # the integration user is not an owner
    for email, owner in owners.items():
        assert owner["archived"] is (email.split("@")[0] in INACTIVE), email
        assert isinstance(owner["userId"], int)
        assert owner["type"] == "PERSON"
        assert owner["teams"] and owner["teams"][0]["name"]
    assert len({o["id"] for o in owners.values()}) == 24
    assert len({o["userId"] for o in owners.values()}) == 24


@pytest.mark.parametrize(
    ("local", "team", "role", "territory"),
    [
        pytest.param("nora.lindqvist", "marketing", "marketing", None, id="marketing"),
        pytest.param("ivy.chen", "sales", "sdr", None, id="sdr-out-of-office"),
        pytest.param("noah.brown", "sales", "ae", "NA", id="ae-na"),
        pytest.param("hugo.dubois", "sales", "ae", "EMEA", id="ae-emea-inactive"),
        pytest.param("mia.wong", "sales", "ae", "APAC", id="ae-apac"),
        pytest.param("daniel.cohen", "account_management", "account_manager", None, id="account-management"),
        pytest.param("isaac.moreau", "customer_success", "csm", None, id="customer-success"),
    ],
)
def test_roster_facts(local: str, team: str, role: str, territory: str | None) -> None:
    rep = next(r for r in REPS if r.email == f"{local}@northwind.example")
    assert (rep.team, rep.role, rep.territory) == (team, role, territory)
    assert rep.out_of_office is (local == "ivy.chen")


def test_the_two_lead_queues(org: Org) -> None:
    queues = {(g["Name"], g["DeveloperName"], g["Type"]) for g in org.sf.all("Group")}
    assert queues == {
        ("Unassigned Leads", "Unassigned_Leads", "Queue"),
        ("EMEA Lead Queue", "EMEA_Lead_Queue", "Queue"),
    }


def test_an_empty_org_has_only_reps_and_queues() -> None:
    empty = make_org(1, 0)
    assert {t: empty.sf.count(t) for t in SF_TYPES} == {
        "User": 25,
        "Group": 2,
        "Account": 0,
        "Lead": 0,
        "Contact": 0,
        "Opportunity": 0,
        "AccountTeamMember": 0,
    }
    assert {t: empty.hs.count(t) for t in HS_TYPES} == {
        "contacts": 0,
        "companies": 0,
        "deals": 0,
        "owners": 24,
        "associations": 0,
    }


# ------------------------------------------------------------------------------------------- shape


def test_sizes_of_objects_follow_persons(org: Org) -> None:
    persons = sum(org.summary["persons"].values())
    assert persons == 1_500
    assert org.sf.count("Account") == 1_500 // 8
    assert 0.8 * org.sf.count("Account") <= org.hs.count("companies") <= 1.1 * org.sf.count("Account")
    assert org.hs.count("contacts") >= 0.75 * persons
    assert org.sf.count("Lead") + org.sf.count("Contact") >= 0.5 * persons
    assert org.summary["salesforce"] == {t: org.sf.count(t) for t in sorted(SF_TYPES)}
    assert org.summary["hubspot"] == {t: org.hs.count(t) for t in sorted(HS_TYPES)}


def test_accounts_look_like_companies(org: Org) -> None:
    accounts = org.sf_all("Account")
    domains = [a["Website"].removeprefix("https://www.") for a in accounts]
    assert len(set(domains)) == len(domains)
    assert {a["Type"] for a in accounts} == {"Customer", "Prospect"}
    assert len({a["Industry"] for a in accounts}) >= 8
    sizes = [a["NumberOfEmployees"] for a in accounts]
    assert min(sizes) < 50 and max(sizes) > 5_000
    countries = Counter(a["BillingCountry"] for a in accounts)
    for territory, codes in TERRITORIES.items():
        assert any(countries[c] for c in codes), territory
    outside = sum(n for c, n in countries.items() if c not in ALL_TERRITORY_COUNTRIES)
    assert 0 < outside < 0.15 * len(accounts)
    assert all(a["AnnualRevenue"] > 0 for a in accounts)
    companies = org.hs_all("companies")
    assert all(c["properties"]["domain"] for c in companies)
    assert {c["properties"]["domain"] for c in companies} <= set(domains) | {
        c["properties"]["domain"] for c in companies if not c["properties"]["syncd_salesforce_id"]
    }


def test_contacts_carry_engagement_signals_and_stages(org: Org) -> None:
    contacts = [c["properties"] for c in org.hs.all("contacts")]
    stages = Counter(p["lifecyclestage"] for p in contacts)
    assert set(stages) == {
        "subscriber",
        "lead",
        "marketingqualifiedlead",
        "salesqualifiedlead",
        "opportunity",
        "customer",
    }
    assert all(n >= 20 for n in stages.values()), stages
    for signal in ("num_conversion_events", "hs_email_click", "hs_analytics_num_page_views"):
        values = [int(p[signal]) for p in contacts]
        assert min(values) == 0 and max(values) >= 5, signal
    assert sum(1 for p in contacts if p["notes_last_updated"]) > len(contacts) // 5
    assert len({p["hs_analytics_source"] for p in contacts}) >= 6

    # More engaged stages show more conversions on average.
    def mean_conversions(stage: str) -> float:
        values = [int(p["num_conversion_events"]) for p in contacts if p["lifecyclestage"] == stage]
        return sum(values) / len(values)

    assert mean_conversions("subscriber") < mean_conversions("salesqualifiedlead")


def test_persons_exist_in_every_linking_situation(org: Org) -> None:
    kinds = org.summary["persons"]
    for kind in (
        "linked_lead",
        "email_only_lead",
        "hubspot_only",
        "linked_contact",
        "email_only_contact",
        "salesforce_only_contact",
        "salesforce_only_lead",
    ):
        assert kinds[kind] > 0, kind
    hs_emails = {norm(c["properties"]["email"]) for c in org.hs.all("contacts")}
    leads = [r for r in org.sf.all("Lead") if not r["IsConverted"]]
    sf_only = [r for r in leads if norm(r["Email"]) not in hs_emails]
    assert sf_only, "some Leads exist only in Salesforce"
    sf_emails = {norm(r["Email"]) for r in org.sf.all("Lead")} | {
        norm(r["Email"]) for r in org.sf.all("Contact")
    }
    assert any(e not in sf_emails for e in hs_emails), "some contacts exist only in HubSpot"


def test_converted_leads_point_at_their_contact_and_account(org: Org) -> None:
    contacts = {c["Id"]: c for c in org.sf.all("Contact")}
    converted = [r for r in org.sf.all("Lead") if r["IsConverted"]]
    assert converted
    for lead in converted:
        contact = contacts[lead["ConvertedContactId"]]
        assert lead["Status"] == "Closed - Converted"
        assert contact["AccountId"] == lead["ConvertedAccountId"]
        assert norm(contact["Email"]) == norm(lead["Email"])
        assert lead["ConvertedDate"] == contact["CreatedDate"][:10]
    open_leads = [r for r in org.sf.all("Lead") if not r["IsConverted"]]
    assert all(r["ConvertedContactId"] is None and r["Status"] != "Closed - Converted" for r in open_leads)


def test_opportunities_open_and_won_with_some_hubspot_deals(org: Org) -> None:
    opps = org.sf_all("Opportunity")
    stages = Counter(o["StageName"] for o in opps)
    assert stages["Closed Won"] > 0 and stages["Closed Lost"] > 0
    assert sum(n for s, n in stages.items() if not s.startswith("Closed")) > 0
    for o in opps:
        assert o["IsClosed"] is o["StageName"].startswith("Closed")
        assert o["IsWon"] is (o["StageName"] == "Closed Won")
        closes_after_now = o["CloseDate"] > NOW_SF[:10]
        assert closes_after_now is not o["IsClosed"], o
    won_accounts = {o["AccountId"] for o in opps if o["IsWon"]}
    customers = {a["Id"] for a in org.sf.all("Account") if a["Type"] == "Customer"}
    assert customers == won_accounts
    deals = org.hs_all("deals")
    assert 0 < len(deals) < len(opps)
    assert {d["properties"]["dealstage"] for d in deals} <= set(DEAL_STAGES)


# ------------------------------------------------------------------------------------------- integrity


def test_every_salesforce_reference_points_at_an_existing_record(org: Org) -> None:
    ids = {t: {r["Id"] for r in org.sf.all(t)} for t in SF_TYPES}
    problems = []
    for type_, spec in SALESFORCE_OBJECTS.items():
        for record in org.sf.all(type_):
            for f in spec.fields:
                value = record.get(f.name)
                if f.type != "reference" or value is None:
                    continue
                if not any(value in ids[target] for target in f.references):
                    problems.append(f"{type_} {record['Id']}.{f.name} = {value}")
    assert problems == []


def test_every_hubspot_reference_points_at_an_existing_record(org: Org) -> None:
    owners = org.owners_by_id
    ids = {t: {r["id"] for r in org.hs.all(t)} for t in HUBSPOT_OBJECTS}
    problems = []
    for type_ in HUBSPOT_OBJECTS:
        for record in org.hs.all(type_):
            owner = record["properties"].get("hubspot_owner_id")
            if owner is not None and owner not in owners:
                problems.append(f"{type_} {record['id']} owner {owner}")
    for assoc in org.hs.all("associations"):
        assert assoc["id"] == f"{assoc['from_type']}:{assoc['from_id']}:{assoc['to_type']}:{assoc['to_id']}"
        assert assoc["from_type"] in ("contacts", "deals") and assoc["to_type"] == "companies"
        assert assoc["type_id"] == {"contacts": 1, "deals": 5}[assoc["from_type"]]
        if assoc["from_id"] not in ids[assoc["from_type"]] or assoc["to_id"] not in ids["companies"]:
            problems.append(f"association {assoc['id']}")
    assert problems == []
    associated = {a["from_id"] for a in org.hs.all("associations") if a["from_type"] == "contacts"}
    with_company = [c for c in org.hs.all("contacts") if c["properties"]["company"]]
    assert len(associated) >= 0.8 * len(with_company)


def test_stored_links_are_mutual_and_typed(org: Org) -> None:
    sf_by_id = {r["Id"]: (t, r) for t in SF_TYPES for r in org.sf.all(t)}
    hs_by_id = {r["id"]: (t, r) for t in HUBSPOT_OBJECTS for r in org.hs.all(t)}
    expected = {"contacts": ("Lead", "Contact"), "companies": ("Account",), "deals": ("Opportunity",)}
    linked = 0
    for hs_id, (hs_type, record) in hs_by_id.items():
        sf_ref = record["properties"].get("syncd_salesforce_id")
        if sf_ref is None:
            continue
        linked += 1
        sf_type, sf_record = sf_by_id[sf_ref]
        assert sf_type in expected[hs_type]
        assert sf_record["Syncd_HubSpot_Id__c"] == hs_id
    assert linked > 100
    for sf_id, (sf_type, sf_record) in sf_by_id.items():
        hs_ref = sf_record.get("Syncd_HubSpot_Id__c")
        if hs_ref is None:
            continue
        hs_type, hs_record = hs_by_id[hs_ref]
        if sf_type == "Lead" and sf_record["IsConverted"]:
            # The converted Lead keeps the id; the HubSpot side points at the Contact it became.
            assert sf_by_id[hs_record["properties"]["syncd_salesforce_id"]][0] == "Contact"
        else:
            assert hs_record["properties"]["syncd_salesforce_id"] == sf_id


def test_external_ids_and_hubspot_emails_are_unique(org: Org) -> None:
    for type_ in ("Lead", "Contact", "Account", "Opportunity"):
        values = [r["Syncd_HubSpot_Id__c"] for r in org.sf.all(type_) if r["Syncd_HubSpot_Id__c"]]
        assert len(values) == len(set(values)), type_
    emails = [norm(c["properties"]["email"]) for c in org.hs.all("contacts")]
    assert len(emails) == len(set(emails))


def test_system_fields_and_formats(org: Org) -> None:
    prefixes = {t: spec.key_prefix for t, spec in SALESFORCE_OBJECTS.items()}
    for type_, spec in SALESFORCE_OBJECTS.items():
        for r in org.sf.all(type_):
            assert set(r) == set(spec.names), type_
            assert is_valid_sf_id(r["Id"]) and len(r["Id"]) == 18 and r["Id"].startswith(prefixes[type_])
            assert r["IsDeleted"] is False
            stamps = [r["CreatedDate"], r["LastModifiedDate"], r["SystemModstamp"]]
            assert all(len(s) == 28 and s.endswith("+0000") for s in stamps), stamps
            assert stamps == sorted(stamps) and stamps[2] < NOW_SF, (type_, stamps)
    for type_ in HUBSPOT_OBJECTS:
        modified_key = "lastmodifieddate" if type_ == "contacts" else "hs_lastmodifieddate"
        for r in org.hs.all(type_):
            p = r["properties"]
            assert p["hs_object_id"] == r["id"] and r["id"].isdigit()
            assert p["createdate"] == r["createdAt"] and p[modified_key] == r["updatedAt"]
            assert r["createdAt"] <= r["updatedAt"] < NOW_HS
            assert r["archived"] is False
            assert all(v is None or isinstance(v, str) for v in p.values())
            assert set(p) <= set(HUBSPOT_OBJECTS[type_].names)


def test_sequences_continue_after_the_seeded_ids(org: Org) -> None:
    seq = org.sf.meta("sf_seq")
    for type_, spec in SALESFORCE_OBJECTS.items():
        assert seq[spec.key_prefix] == org.sf.count(type_) + 1, type_
    highest = max(int(r["id"]) for t in HUBSPOT_OBJECTS for r in org.hs.all(t))
    assert org.hs.meta("hs_seq") == highest + 1


def test_picklist_values_are_allowed(org: Org) -> None:
    assert {r["Status"] for r in org.sf.all("Lead")} <= set(LEAD_STATUSES)
    assert {r["StageName"] for r in org.sf.all("Opportunity")} <= set(OPPORTUNITY_STAGES)
    for type_ in ("contacts", "companies"):
        assert {c["properties"]["lifecyclestage"] for c in org.hs.all(type_)} <= set(LIFECYCLE_STAGES)


# ------------------------------------------------------------------------------------------- the mess


def _owner_email_sf(org: Org, owner_id: str) -> str | None:
    user = org.users_by_id.get(owner_id)
    return user["Email"] if user else None


def mess_owner_disagrees(org: Org) -> int:
    users, owners = org.users_by_id, org.owners_by_id
    sf = {r["Id"]: r for t in ("Lead", "Contact") for r in org.sf.all(t)}
    n = 0
    for c in org.hs.all("contacts"):
        p = c["properties"]
        linked = sf.get(p["syncd_salesforce_id"] or "")
        if linked and p["hubspot_owner_id"] and linked["OwnerId"] in users:
            n += owners[p["hubspot_owner_id"]]["email"] != users[linked["OwnerId"]]["Email"]
    return n


def mess_leads_owned_by_inactive_reps(org: Org) -> int:
    users = org.users_by_id
    return sum(1 for r in org.sf.all("Lead") if r["OwnerId"] in users and not users[r["OwnerId"]]["IsActive"])


def mess_duplicate_lead_emails(org: Org) -> int:
    counts = Counter(norm(r["Email"]) for r in org.sf.all("Lead") if not r["IsConverted"])
    return sum(n - 1 for n in counts.values() if n > 1)


def mess_customer_contacts_with_random_owners(org: Org) -> int:
    accounts = {a["Id"]: a for a in org.sf.all("Account")}
    users = org.users_by_id
    return sum(
        1
        for c in org.sf.all("Contact")
        if accounts[c["AccountId"]]["Type"] == "Customer"
        and users[c["OwnerId"]]["Email"] != users[accounts[c["AccountId"]]["OwnerId"]]["Email"]
    )


def mess_leads_in_unassigned_queue(org: Org) -> int:
    queue = org.queue_id("Unassigned_Leads")
    return sum(1 for r in org.sf.all("Lead") if r["OwnerId"] == queue)


def mess_email_only_with_different_case_or_spaces(org: Org) -> int:
    hs_emails = {c["properties"]["email"] for c in org.hs.all("contacts")}
    hs_norm = {norm(e) for e in hs_emails}
    return sum(
        1
        for t in ("Lead", "Contact")
        for r in org.sf.all(t)
        if not r["Syncd_HubSpot_Id__c"] and r["Email"] not in hs_emails and norm(r["Email"]) in hs_norm
    )


def mess_archived_hubspot_owners(org: Org) -> int:
    owners = org.owners_by_id
    return sum(
        1
        for c in org.hs.all("contacts")
        if c["properties"]["hubspot_owner_id"] and owners[c["properties"]["hubspot_owner_id"]]["archived"]
    )


def mess_same_timestamp_imports(org: Org) -> int:
    counts = Counter(c["properties"]["lastmodifieddate"] for c in org.hs.all("contacts"))
    return max(counts.values())


@pytest.mark.parametrize(
    ("count", "summary_key"),
    [
        pytest.param(mess_owner_disagrees, None, id="owners-disagree-between-systems"),
        pytest.param(
            mess_leads_owned_by_inactive_reps, "lead_owned_by_inactive_rep", id="leads-of-inactive-reps"
        ),
        pytest.param(mess_duplicate_lead_emails, "duplicate_lead_email", id="duplicate-lead-emails"),
        pytest.param(
            mess_customer_contacts_with_random_owners,
            "customer_contact_random_owner",
            id="customer-contacts-random-owners",
        ),
        pytest.param(
            mess_leads_in_unassigned_queue, "lead_in_unassigned_queue", id="leads-in-unassigned-queue"
        ),
        pytest.param(mess_email_only_with_different_case_or_spaces, None, id="email-only-case-or-whitespace"),
        pytest.param(mess_archived_hubspot_owners, "hubspot_owner_archived", id="archived-hubspot-owners"),
        pytest.param(mess_same_timestamp_imports, None, id="same-timestamp-import"),
    ],
)
def test_each_kind_of_mess_is_present(org: Org, count: Callable[[Org], int], summary_key: str | None) -> None:
    found = count(org)
    assert found >= 5
    if summary_key is not None:
        assert org.summary["mess"][summary_key] == found


def test_duplicate_emails_are_two_leads_with_different_owners(org: Org) -> None:
    by_email: dict[str, list[Record]] = {}
    for r in org.sf.all("Lead"):
        if not r["IsConverted"]:
            by_email.setdefault(norm(r["Email"]), []).append(r)
    dups = [rs for rs in by_email.values() if len(rs) > 1]
    assert dups
    assert all(len({r["OwnerId"] for r in rs}) > 1 for rs in dups)


def test_leads_of_inactive_reps_and_emea_queue_are_in_salesforce_only_as_owners(org: Org) -> None:
    emea = org.queue_id("EMEA_Lead_Queue")
    emea_leads = [r for r in org.sf.all("Lead") if r["OwnerId"] == emea]
    assert emea_leads and all(r["Country"] in TERRITORIES["EMEA"] for r in emea_leads)
    users = org.users_by_id
    inactive_owned = {
        users[r["OwnerId"]]["Email"].split("@")[0]
        for r in org.sf.all("Lead")
        if r["OwnerId"] in users and not users[r["OwnerId"]]["IsActive"]
    }
    assert inactive_owned <= INACTIVE and inactive_owned
