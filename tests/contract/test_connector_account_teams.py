"""The Salesforce connector's account-team support against a seeded sandbox: incremental pulls of
AccountTeamMember, whole teams read by account, writes through sObject Collections at 200 per call, and the
restore path after an Account owner change (which erases the team: KeepAccountTeam defaults to false and
REST cannot set it). Re-creating the team within the same cycle, crash-safely through the outbox, is the
cycle's work; this shows the side effect and that the connector can put every member back, a human's too."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from connector_harness import FAST

from syncd.config import parse_config
from syncd.connectors import connectors_from_config
from syncd.connectors.base import Change
from syncd.connectors.salesforce import SalesforceConnector, TeamWrite
from syncd.core.rules import load_ruleset
from syncd.core.teams import (
    AccountTeamInput,
    Member,
    TeamsResult,
    decide_teams,
    member_fields,
    member_from_row,
)
from syncd.core.types import Rep, RepDirectory, RoundRobinState
from syncd.sandbox.runtime import Sandbox, write_info

HUMAN = "jack.miller@northwind.example"
SHIPPED = Path(__file__).resolve().parents[2] / "mappings"
NOW = datetime(2026, 11, 28, tzinfo=UTC)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(seed=1, persons=300, rate_limits=False) as running:
        yield running


@pytest.fixture
def connector(sandbox: Sandbox, tmp_path: Path) -> Iterator[SalesforceConnector]:
    info = tmp_path / "info.json"
    write_info(info, sandbox.info())
    config = parse_config({"sandbox": {"info_file": str(info)}}, path=tmp_path / "c.toml")
    sf, hs = connectors_from_config(config, sleep=lambda _: None, salesforce=dict(FAST))
    hs.close()
    assert isinstance(sf, SalesforceConnector)
    yield sf
    sf.close()


def user_ids(sandbox: Sandbox) -> dict[str, str]:
    rows = sandbox.salesforce_client().query_all("SELECT Id, Email, IsActive FROM User")["records"]
    return {str(r["Email"]).lower(): str(r["Id"]) for r in rows if r["IsActive"]}


def accounts(sandbox: Sandbox, n: int) -> list[dict[str, Any]]:
    """n accounts without a team yet (the seeded org has teams on some)."""
    sf = sandbox.salesforce_client()
    teamed = {r["AccountId"] for r in sf.query_all("SELECT AccountId FROM AccountTeamMember")["records"]}
    rows = sf.query_all("SELECT Id, OwnerId FROM Account ORDER BY Id")["records"]
    return [r for r in rows if r["Id"] not in teamed][:n]


def add(account_id: str, user_id: str, role: str) -> TeamWrite:
    return TeamWrite(
        "add",
        {
            "AccountId": account_id,
            "UserId": user_id,
            "TeamMemberRole": role,
            "AccountAccessLevel": "Edit",
            "OpportunityAccessLevel": "Read",
            "CaseAccessLevel": "None",
        },
    )


def team(connector: SalesforceConnector, account_id: str) -> list[tuple[str, str, str]]:
    rows = [r for batch in connector.read_account_teams([account_id]) for r in batch]
    return sorted((r.fields["UserId"], r.fields["TeamMemberRole"], r.fields["CreatedById"]) for r in rows)


def test_a_human_member_survives_an_owner_change_once_the_connector_restores_the_team(
    sandbox: Sandbox, connector: SalesforceConnector
) -> None:
    users = user_ids(sandbox)
    account = accounts(sandbox, 1)[0]
    account_id = account["Id"]
    managed = [
        add(account_id, users["ben.carter@northwind.example"], "Customer Success Manager"),
        add(account_id, users["rachel.green@northwind.example"], "Account Manager"),
    ]
    assert all(r.ok and r.created for batch in connector.push_account_team(managed) for r in batch)
    sandbox.salesforce_client(HUMAN).AccountTeamMember.create(
        {
            "AccountId": account_id,
            "UserId": users["hannah.weber@northwind.example"],
            "TeamMemberRole": "Executive Sponsor",
        }
    )
    before = team(connector, account_id)
    assert len(before) == 3 and sum(1 for _, _, by in before if by == users[HUMAN]) == 1
    pulled = [r for page in connector.pull_account_team_members() for r in page.records]
    assert sum(1 for r in pulled if r.fields["AccountId"] == account_id) == 3
    mark = None
    for page in connector.pull_account_team_members():
        mark = page.watermark

    # syncd changes the owner through collections, the only way it writes: Salesforce erases the team.
    new_owner = next(u for e, u in users.items() if e == "emma.johnson@northwind.example")
    assert new_owner != account["OwnerId"]
    saved = [
        r
        for b in connector.push_batches("Account", [Change.update(account_id, {"OwnerId": new_owner})])
        for r in b
    ]
    assert saved[0].ok
    assert team(connector, account_id) == []
    # The erasure is invisible to the incremental pull (no soft delete, nothing in queryAll).
    assert [r for page in connector.pull_account_team_members(mark) for r in page.records] == []

    # The restore: every member as it was, the human's too, in one collection call.
    restore = [add(account_id, user, role) for user, role, _ in before]
    connector.policy.counts.clear()
    results = [r for batch in connector.push_account_team(restore) for r in batch]
    assert all(r.ok for r in results) and connector.call_counts() == {"POST composite/sobjects": 1}
    assert [(u, role) for u, role, _ in team(connector, account_id)] == [(u, role) for u, role, _ in before]


def test_team_writes_go_200_to_a_call_and_a_replayed_add_makes_no_second_member(
    sandbox: Sandbox, connector: SalesforceConnector
) -> None:
    users = user_ids(sandbox)
    reps = [u for e, u in sorted(users.items()) if e != "integration@northwind.example"]
    targets = accounts(sandbox, 20)
    writes = [add(a["Id"], u, "Sales Rep") for a in targets for u in reps[:12]]  # 240 members
    connector.policy.counts.clear()
    first = [r for batch in connector.push_account_team(writes) for r in batch]
    assert len(first) == 240 and all(r.ok for r in first)
    assert connector.call_counts() == {"POST composite/sobjects": 2}
    replay = [r for batch in connector.push_account_team(writes[:5]) for r in batch]
    assert [r.id for r in replay] == [r.id for r in first[:5]]
    members = [r for batch in connector.read_account_teams([a["Id"] for a in targets]) for r in batch]
    assert len(members) == 240 and {r.id for r in members} == {r.id for r in first}

    changed = [TeamWrite("change", {"TeamMemberRole": "Account Executive"}, id=r.id) for r in first[:3]]
    removed = [TeamWrite("remove", id=r.id) for r in first[3:6]]
    results = [r for batch in connector.push_account_team([*changed, *removed]) for r in batch]
    assert all(r.ok for r in results)
    # A remove of a member already gone is done, not a failure.
    again = [r for batch in connector.push_account_team(removed) for r in batch]
    assert all(r.ok for r in again)
    roles = {
        r.id: r.fields["TeamMemberRole"] for b in connector.read_account_teams([targets[0]["Id"]]) for r in b
    }
    assert [roles[str(r.id)] for r in first[:3]] == ["Account Executive"] * 3
    assert all(str(r.id) not in roles for r in first[3:6])


def test_a_failed_member_write_is_that_members_failure(
    sandbox: Sandbox, connector: SalesforceConnector
) -> None:
    account_id = accounts(sandbox, 1)[0]["Id"]
    users = user_ids(sandbox)
    bad = add(account_id, users["zoe.evans@northwind.example"], "Customer Success Manager")
    bad = TeamWrite("add", {**bad.fields, "OpportunityAccessLevel": "All"})
    good = add(account_id, users["ben.carter@northwind.example"], "Customer Success Manager")
    results = [r for batch in connector.push_account_team([bad, good]) for r in batch]
    assert [r.ok for r in results] == [False, True]
    assert results[0].code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


# --------------------------------------------------------------------------------------------- HubSpot


def test_role_properties_are_written_to_companies_in_batches_and_a_bad_owner_fails_alone(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    info = tmp_path / "info.json"
    write_info(info, sandbox.info())
    config = parse_config({"sandbox": {"info_file": str(info)}}, path=tmp_path / "c.toml")
    sf, hs = connectors_from_config(config, sleep=lambda _: None, hubspot={**FAST, "search_per_second": 1000})
    sf.close()
    owners = {r.email: r.id for r in hs.list_reps() if r.active}
    companies = [r.id for page in hs.pull("companies") for r in page.records][:150]
    csm, am = owners["ben.carter@northwind.example"], owners["rachel.green@northwind.example"]
    changes = [
        Change.update(c, {"syncd_csm": csm, "syncd_account_manager": am, "syncd_tier": "Strategic"})
        for c in companies
    ]
    changes[7] = Change.update(companies[7], {"syncd_csm": "999999"})  # nobody's owner id
    results = [r for batch in hs.push_batches("companies", changes) for r in batch]
    assert [r.ok for r in results].count(False) == 1 and results[7].code == "INVALID_OWNER_ID"
    back = {r.id: r.fields for batch in hs.read("companies", companies[:10]) for r in batch}
    assert back[companies[0]]["syncd_csm"] == csm and back[companies[0]]["syncd_tier"] == "Strategic"
    hs.close()


# --------------------------------------------------------------------------------------------- core + connector


def test_teams_decided_by_the_rules_and_pushed_leave_nothing_to_do(
    sandbox: Sandbox, connector: SalesforceConnector
) -> None:
    """The pieces compose: the shipped rules decide every account's team from what the connector reads, the
    connector writes the changes, and the next decision over what it reads back changes nothing. Every
    strategic account then has the roles the rules require, in Salesforce."""
    rules = load_ruleset(SHIPPED)
    assert rules.teams is not None
    reps = [r for r in connector.list_reps() if r.kind == "user" and r.email]
    integration = next(r.id for r in reps if r.email == "integration@northwind.example")
    directory = RepDirectory(
        Rep(str(r.email), salesforce_id=r.id, active=r.active) for r in reps if r.id != integration
    )
    sf = sandbox.salesforce_client()
    rows = sf.query_all(
        "SELECT Id, OwnerId, AnnualRevenue, NumberOfEmployees, Type, Syncd_Tier__c FROM Account"
    )["records"]
    won: Counter[str] = Counter()
    for o in sf.query_all("SELECT AccountId, Amount FROM Opportunity WHERE IsWon = true")["records"]:
        won[o["AccountId"]] += o["Amount"] or 0

    def decide(state: Mapping[str, RoundRobinState]) -> TeamsResult:
        teams: dict[str, list[Member]] = {}
        for batch in connector.read_account_teams([a["Id"] for a in rows]):
            for r in batch:
                member = member_from_row(r.fields, directory, managed=r.fields["CreatedById"] == integration)
                teams.setdefault(r.fields["AccountId"], []).append(member)
        inputs = [
            AccountTeamInput(
                a["Id"],
                {"annual_revenue": a["AnnualRevenue"], "employees": a["NumberOfEmployees"]},
                directory.owner_from_salesforce(a["OwnerId"]),
                a["Type"] == "Customer" or won[a["Id"]] > 0,
                won_amount=won[a["Id"]],
                members=tuple(teams.get(a["Id"], ())),
            )
            for a in rows
        ]
        return decide_teams(inputs, rules, state, NOW, directory=directory)

    first = decide({})
    writes = []
    for d in first.decisions:
        for c in d.changes:
            fields = member_fields(c, d.key, directory)
            if c.op == "remove":
                writes.append(TeamWrite("remove", id=c.member_id))
            elif fields is not None:
                writes.append(TeamWrite(c.op, fields, id=c.member_id))
    assert len(writes) > 50
    results = [r for batch in connector.push_account_team(writes) for r in batch]
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    second = decide(first.round_robin)
    assert [c for d in second.decisions for c in d.changes] == []

    labels: dict[str, set[str]] = {}
    for m in sf.query_all("SELECT AccountId, TeamMemberRole FROM AccountTeamMember")["records"]:
        labels.setdefault(m["AccountId"], set()).add(m["TeamMemberRole"])
    strategic = [d for d in second.decisions if d.tier == "strategic"]
    assert strategic
    for d in strategic:
        required = {rules.teams.roles[r].label for r in rules.teams.required(d.tier, d.stage)}
        filled = {s.label for s in d.seats if s.rep is not None and not s.human}
        assert filled <= labels.get(d.key, set()), d.key
        assert len({s.label for s in d.seats if s.rep is not None}) == len(required), d.explain()
