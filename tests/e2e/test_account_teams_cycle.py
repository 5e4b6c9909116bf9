"""Account teams through the sandbox: tiers, team members and role properties written by the cycle, kept
across the owner changes syncd makes (Salesforce erases the team on an API owner change), continuity when
a rep leaves, and ``syncd report accounts``.

Each test seeds the Northwind org (300 persons; its key customers single-threaded, some teams with members
humans added), runs cycles with a clock moved by hand, and reads both systems through their clients.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import defaultdict
from typing import Any

from click.testing import CliRunner
from conftest import Org

from syncd.cli import cli
from syncd.core.rules import RuleSet
from syncd.core.teams import team_heirs
from syncd.ledger import Ledger
from syncd.reports.accounts import from_systems


def _teams(org: Org) -> dict[str, dict[str, str]]:
    """Salesforce Account id -> {UserId: TeamMemberRole}, as the API lists AccountTeamMember."""
    sf = org.systems.salesforce()
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for r in sf.query_all("SELECT AccountId, UserId, TeamMemberRole FROM AccountTeamMember")["records"]:
        out[r["AccountId"]][r["UserId"]] = r["TeamMemberRole"]
    return out


def _accounts(org: Org) -> dict[str, dict[str, Any]]:
    sf = org.systems.salesforce()
    rows = sf.query_all("SELECT Id, Name, OwnerId, Syncd_Tier__c, Syncd_HubSpot_Id__c FROM Account")[
        "records"
    ]
    return {r["Id"]: r for r in rows}


def _required(rules: RuleSet, tier: str, stage: str) -> set[str]:
    assert rules.teams is not None
    return {rules.teams.roles[name].label for name in rules.teams.required(tier, stage)}


def _top_tier(rules: RuleSet) -> tuple[str, str]:
    assert rules.teams is not None
    tier = rules.teams.tiers[0]
    return tier.name, tier.label


def test_one_cycle_gives_every_top_tier_account_its_required_roles_in_both_systems(org: Org) -> None:
    report = org.cycle().run(org.rules)
    assert report.ok, report.failed

    name, label = _top_tier(org.rules)
    accounts = _accounts(org)
    teams = _teams(org)
    with Ledger(org.config.ledger.path, readonly=True) as ledger:
        decisions = ledger.teams.decisions()
    top = {d.account_id: d for d in decisions.values() if d.tier == label and d.account_id}
    assert top, "the seeded org has top-tier accounts"
    hs = org.systems.hubspot()
    owners = {v: k for k, v in org.systems.owners().items()}
    users = {v: k for k, v in org.systems.users().items()}
    assert org.rules.teams is not None
    prop_of = {r.label: r.hubspot_property for r in org.rules.teams.roles.values()}
    for account_id, d in top.items():
        assert accounts[account_id]["Syncd_Tier__c"] == label
        wanted = _required(org.rules, name, d.data["stage"])
        assert wanted <= set(teams[account_id].values()), (accounts[account_id]["Name"], teams[account_id])
        company_id = accounts[account_id]["Syncd_HubSpot_Id__c"]
        if not company_id:
            continue
        props = [p for p in (prop_of[w] for w in wanted) if p] + ["syncd_tier"]
        company = hs.crm.companies.basic_api.get_by_id(company_id, properties=props)
        assert company.properties["syncd_tier"] == label
        for role in wanted:
            user = next(u for u, r in teams[account_id].items() if r == role)
            assert owners[company.properties[prop_of[role]]] == users[user], role


def test_a_second_cycle_writes_nothing(org: Org) -> None:
    cycle = org.cycle()
    first = cycle.run(org.rules)
    assert first.teams["add"] > 0 and first.teams["tier"] > 0
    org.systems.reset_counts()
    org.clock.advance(minutes=5)

    again = cycle.run(org.rules)

    assert org.systems.write_calls() == {}
    assert again.teams == {}


def _ledger_teams(org: Org) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    with Ledger(org.config.ledger.path, readonly=True) as ledger:
        members: dict[str, list[Any]] = defaultdict(list)
        for m in ledger.teams.all_members():
            members[m.account_id].append(m)
        return ledger.teams.decisions(), members


def _account_with_a_humans_member(org: Org) -> tuple[str, str]:
    """A team account whose owner is on the roster and whose team has an active member a human added, who
    is not the owner. Returns (account id, the member's user id)."""
    decisions, members = _ledger_teams(org)
    by_user = {v: k for k, v in org.systems.users().items()}
    reps = org.rules.roster.reps
    for d in sorted(decisions.values(), key=lambda d: d.key):
        if d.account_id is None or d.owner not in reps:
            continue
        for m in members[d.account_id]:
            rep = by_user.get(m.user_id)
            if not m.managed and rep != d.owner and rep in reps and reps[rep].active:
                return d.account_id, m.user_id
    raise AssertionError("the seeded org has an account with a member a human added")


def _owner_leaves(org: Org, account_id: str) -> tuple[RuleSet, str]:
    """The rules with the account's owner gone from the roster (inactive), and the owner's email."""
    owner = _accounts(org)[account_id]["OwnerId"]
    email = {v: k for k, v in org.systems.users().items()}[owner]
    rules = org.rules
    reps = dict(rules.roster.reps)
    reps[email] = dataclasses.replace(reps[email], active=False)
    # A changed roster file is a change of rules: every decision made under the old one is due again.
    rules = dataclasses.replace(
        rules, roster=dataclasses.replace(rules.roster, reps=reps), digest=rules.digest + "-left"
    )
    return rules, email


def test_a_member_a_human_added_survives_an_owner_change_syncd_makes(org: Org) -> None:
    cycle = org.cycle()
    cycle.run(org.rules)
    account_id, human_user = _account_with_a_humans_member(org)
    rules, gone = _owner_leaves(org, account_id)
    org.clock.advance(minutes=5)

    report = cycle.run(rules)

    assert report.ok
    assert report.teams["restore"] > 0
    owner = _accounts(org)[account_id]["OwnerId"]
    assert owner != org.systems.users()[gone], "syncd changed the owner"
    assert human_user in _teams(org)[account_id], "the human's member is back after the owner change"
    org.systems.reset_counts()
    org.clock.advance(minutes=5)
    cycle.run(rules)
    assert org.systems.write_calls() == {}, "the restored team is what the rules want: nothing more to write"


def test_a_departed_account_managers_accounts_go_to_their_teams_successor(org: Org) -> None:
    cycle = org.cycle()
    cycle.run(org.rules)
    decisions, members = _ledger_teams(org)
    assert org.rules.teams is not None
    manager = org.rules.teams.roles["account_manager"].label
    by_user = {v: k for k, v in org.systems.users().items()}
    found = []
    for d in decisions.values():
        if d.account_id is None or d.data["stage"] != "customer":
            continue
        team = [(m.role or "", by_user.get(m.user_id, "")) for m in members[d.account_id]]
        heirs = [h for h in team_heirs(org.rules.teams, "customer", team) if h != d.owner]
        if (manager, d.owner) in team and heirs:
            found.append((d.account_id, heirs[0]))
    assert found, "the seeded org has a customer whose account manager owns it and has a team successor"
    account_id, heir = sorted(found)[0]
    rules, gone = _owner_leaves(org, account_id)
    org.clock.advance(minutes=5)

    report = cycle.run(rules)

    assert report.ok
    users = org.systems.users()
    for other, successor in found:
        if by_user.get(_accounts(org)[other]["OwnerId"]) == heir or other == account_id:
            assert _accounts(org)[other]["OwnerId"] == users[successor]
    hs = org.systems.hubspot()
    company = _accounts(org)[account_id]["Syncd_HubSpot_Id__c"]
    if company:
        got = hs.crm.companies.basic_api.get_by_id(company, properties=["hubspot_owner_id"])
        assert got.properties["hubspot_owner_id"] == org.systems.owners()[heir]
    with Ledger(org.config.ledger.path, readonly=True) as ledger:
        key = ledger.identity.keys_of("salesforce", "Account", [account_id])[account_id]
        decision = ledger.decisions.get(key)
        assert decision is not None and decision.owner == heir
        assert any(step[1] == "team successor" for step in decision.trace), decision.trace
    assert gone != heir


def test_a_crash_between_the_owner_change_and_the_restore_is_repaired_on_the_next_start(org: Org) -> None:
    cycle = org.cycle()
    cycle.run(org.rules)
    account_id, human_user = _account_with_a_humans_member(org)
    rules, gone = _owner_leaves(org, account_id)
    org.clock.advance(minutes=5)
    stop = threading.Event()
    connector = cycle.connectors["salesforce"]
    push = connector.push

    def push_then_stop(obj: str, changes: Any) -> Any:
        results = push(obj, changes)
        if obj == "Account":
            stop.set()  # the run stops right after the owner-change batch: the team writes never went out
        return results

    connector.push = push_then_stop  # type: ignore[method-assign]
    stopped = cycle.run(rules, stop=stop)
    assert stopped.interrupted
    assert _accounts(org)[account_id]["OwnerId"] != org.systems.users()[gone]
    assert human_user not in _teams(org).get(account_id, {}), "Salesforce erased the team"

    org.clock.advance(minutes=1)
    again = org.cycle().run(rules)

    assert again.ok
    assert human_user in _teams(org)[account_id]
    with Ledger(org.config.ledger.path, readonly=True) as ledger:
        row = next(
            m for m in ledger.teams.all_members() if m.user_id == human_user and m.account_id == account_id
        )
        assert not row.managed, "the restored member stays the human's"


def test_report_lists_the_single_threaded_key_accounts_and_the_cycle_reduces_them(org: Org) -> None:
    before = from_systems(org.config, org.rules, now=org.clock())
    # The seeded key accounts: the largest customers, each hanging on one rep.
    assert before.accounts and all(a.single_threaded for a in before.accounts), before.summary
    assert before.summary["single_threaded_top_tier"] > 0
    assert all(len(a.reps) == 1 and a.contacts for a in before.accounts)

    org.cycle().run(org.rules)
    after = from_systems(org.config, org.rules, now=org.clock())

    assert [a.account_id for a in after.accounts] == [a.account_id for a in before.accounts]
    assert after.summary["single_threaded_top_tier"] == 0
    assert after.summary["single_threaded"] <= after.summary["single_threaded_allowed"]


def _report(org: Org, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli, ["report", "accounts", *args, "--config", str(org.config_path)], obj={"clock": org.clock}
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_report_accounts_json_through_the_cli_before_and_after_a_cycle(org: Org, tmp_path: Any) -> None:
    before = _report(org, "--json", "--source", "live")
    seeded = before["summary"]["single_threaded_top_tier"]
    assert seeded > 0
    assert all(a["single_threaded"] for a in before["accounts"])
    assert all(
        {"tier", "owner", "team", "reps", "contacts", "relationship_since"} <= set(a)
        for a in before["accounts"]
    )

    org.cycle().run(org.rules)
    chart = tmp_path / "risk.svg"
    after = _report(org, "--json", "--chart", str(chart))

    assert after["source"] == "ledger"
    assert after["summary"]["single_threaded_top_tier"] == 0
    assert {a["account_id"] for a in after["accounts"]} == {a["account_id"] for a in before["accounts"]}
    assert chart.read_text().startswith("<?xml") or "<svg" in chart.read_text()


def test_explain_shows_the_team_each_seat_and_how_it_was_filled(org: Org) -> None:
    org.cycle().run(org.rules)
    decisions, _ = _ledger_teams(org)
    _, label = _top_tier(org.rules)
    top = next(d for d in sorted(decisions.values(), key=lambda d: d.key) if d.tier == label and d.account_id)
    result = CliRunner().invoke(
        cli, ["explain", str(top.account_id), "--config", str(org.config_path)], obj={"clock": org.clock}
    )

    assert result.exit_code == 0, result.output
    assert f"tier {label}" in result.output
    for seat in top.data["seats"]:
        assert f"seat {seat['label']}: {seat['rep']} ({seat['how']})" in result.output


def test_contacts_carry_the_roles_the_rules_put_on_contacts(org: Org) -> None:
    org.cycle().run(org.rules)
    hs = org.systems.hubspot()
    companies = {
        c.id: c.properties
        for c in hs.crm.companies.get_all(properties=["syncd_account_manager", "domain"])
        if c.properties.get("syncd_account_manager")
    }
    assert companies, "customers' companies show their account manager"
    contacts = hs.crm.contacts.get_all(properties=["syncd_account_manager", "email"])
    by_domain = {p["domain"]: p["syncd_account_manager"] for p in companies.values() if p.get("domain")}
    matched = [c for c in contacts if (c.properties.get("email") or "").rpartition("@")[2] in by_domain]
    assert matched
    for c in matched:
        domain = c.properties["email"].rpartition("@")[2]
        assert c.properties.get("syncd_account_manager") == by_domain[domain], c.properties
