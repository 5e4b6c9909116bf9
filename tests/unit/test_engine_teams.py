"""The engine and account teams: the tier is decided before routing and usable in every condition
(``tier``, and ``account.tier`` in a person's), and an owner who left is succeeded from the account's team
(customer: its account manager; prospect: its account executive) before the roster's successor."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from engine_helpers import NOW, RULES, account, person, rep, run
from test_engine_continuity import with_successor

from syncd.core.rules import RuleSet
from syncd.core.rules.conditions import compile_condition
from syncd.core.rules.problems import Problems
from syncd.core.types import Assignment, LedgerView

LEFT_AM = rep("daniel.cohen")
LEFT_AE = rep("hugo.dubois")  # inactive in the shipped roster


def gone(rules: RuleSet, who: str) -> RuleSet:
    reps = dict(rules.roster.reps)
    reps[who] = dataclasses.replace(reps[who], active=False)
    return dataclasses.replace(rules, roster=dataclasses.replace(rules.roster, reps=reps))


def owned(key: str, owner: str, team: str) -> LedgerView:
    return LedgerView(assignments={key: Assignment(key, owner, team, "x", NOW - timedelta(days=400))})


@pytest.mark.parametrize(
    ("revenue", "tier"),
    [
        pytest.param(2_000_000_000, "strategic", id="strategic"),
        pytest.param(500_000_000, "enterprise", id="enterprise"),
        pytest.param(1_000, "smb", id="smb"),
    ],
)
def test_the_tier_is_decided_first_and_traced(revenue: int, tier: str) -> None:
    decisions = run(
        persons=[person("p1", account="a1", email="x@acme.example")],
        accounts=[account("a1", annual_revenue=revenue, country="US")],
    )
    assert any(step.phase == "tier" and step.rule == tier for step in decisions["a1"].trace)


def test_tier_is_a_known_field_of_account_and_person_conditions() -> None:
    problems = Problems()
    compile_condition({"tier": "strategic"}, RULES.account_fields, problems, "routing.toml", "rules[0].when")
    compile_condition(
        {"account.tier": "strategic"}, RULES.person_fields, problems, "scoring.toml", "fit[0].when"
    )
    assert not problems.errors, problems.errors


def test_a_customer_whose_account_manager_left_goes_to_the_teams_executive_sponsor() -> None:
    rules = with_successor(gone(RULES, LEFT_AM), LEFT_AM, rep("rachel.green"))
    team = (("Account Manager", LEFT_AM), ("Executive Sponsor", rep("hannah.weber")))
    a = dataclasses.replace(
        account("a1", annual_revenue=2_000_000_000, account_type="Customer", country="US"), team=team
    )
    d = run(accounts=[a], ledger=owned("a1", LEFT_AM, "account_management"), rules=rules)["a1"]
    # The team's successor comes before the roster's (rachel.green).
    assert (d.owner, d.rule) == (rep("hannah.weber"), "team successor")


def test_a_prospect_whose_owner_left_goes_to_its_account_executive() -> None:
    team = (("Account Executive", rep("sofia.rossi")),)
    a = dataclasses.replace(account("a1", country="DE"), team=team)
    d = run(accounts=[a], ledger=owned("a1", LEFT_AE, "sales"))["a1"]
    assert (d.owner, d.rule) == (rep("sofia.rossi"), "team successor")


def test_a_team_member_of_another_team_does_not_take_the_account() -> None:
    # A customer success manager is no successor role, and customers belong to account management.
    team = (("Customer Success Manager", rep("ben.carter")),)
    a = dataclasses.replace(account("a1", account_type="Customer", country="US"), team=team)
    d = run(accounts=[a], ledger=owned("a1", LEFT_AM, "account_management"), rules=gone(RULES, LEFT_AM))["a1"]
    assert d.owner != rep("ben.carter") and d.rule != "team successor"
