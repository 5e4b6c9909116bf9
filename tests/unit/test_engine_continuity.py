"""Continuity when a rep leaves (successor, persons following their account) and the backlog cap policy."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from engine_helpers import AE_EMEA, NOW, RULES, account, person, rep, run, with_pool

from syncd.core.rules import RuleSet
from syncd.core.rules.roster import Roster
from syncd.core.types import Assignment, LedgerView, queue_owner

LEFT = rep("hugo.dubois")  # an EMEA account executive marked active = false in the shipped roster


def with_successor(rules: RuleSet, who: str, successor: str | None) -> RuleSet:
    reps = dict(rules.roster.reps)
    reps[who] = dataclasses.replace(reps[who], successor=successor)
    roster = Roster(rules.roster.teams, rules.roster.queues, reps)
    return dataclasses.replace(rules, roster=roster)


def owned_by(key: str, owner: str, team: str = "sales") -> LedgerView:
    return LedgerView(assignments={key: Assignment(key, owner, team, "AE EMEA", NOW - timedelta(days=90))})


def test_an_account_whose_owner_left_goes_to_the_declared_successor() -> None:
    rules = with_successor(RULES, LEFT, rep("sofia.rossi"))
    d = run(accounts=[account("a1", country="DE")], ledger=owned_by("a1", LEFT), rules=rules)["a1"]
    assert (d.owner, d.rule) == (rep("sofia.rossi"), "successor")
    assert "succeeds them" in d.explain()


def test_the_successor_chain_skips_a_successor_who_left_too() -> None:
    rules = with_successor(
        with_successor(RULES, LEFT, rep("olivia.davis")), rep("olivia.davis"), rep("emma.johnson")
    )
    # olivia.davis left as well (inactive in the shipped roster): emma.johnson, next in the chain, takes it.
    d = run(accounts=[account("a1", country="DE")], ledger=owned_by("a1", LEFT), rules=rules)["a1"]
    assert d.owner == rep("emma.johnson")


def test_without_a_successor_the_account_is_routed() -> None:
    d = run(accounts=[account("a1", country="DE")], ledger=owned_by("a1", LEFT))["a1"]
    assert d.owner in AE_EMEA - {LEFT}
    assert d.rule == "AE EMEA"


def test_a_successor_in_another_team_does_not_take_the_record() -> None:
    rules = with_successor(RULES, LEFT, rep("rachel.green"))  # account management, not sales
    d = run(accounts=[account("a1", country="DE")], ledger=owned_by("a1", LEFT), rules=rules)["a1"]
    assert d.owner != rep("rachel.green")


def test_a_person_whose_owner_left_follows_their_account_owner() -> None:
    ledger = LedgerView(
        assignments={
            "a1": Assignment("a1", rep("sofia.rossi"), "sales", "AE EMEA", NOW - timedelta(days=90)),
            "p1": Assignment("p1", LEFT, "sales", "AE EMEA", NOW - timedelta(days=90)),
        }
    )
    decisions = run(
        [person("p1", account="a1", sf="00Q1", country="DE", stage="marketing_qualified")],
        [account("a1", country="DE")],
        ledger=ledger,
    )
    assert decisions["p1"].owner == rep("sofia.rossi")
    assert "follows account" in decisions["p1"].explain()


def test_a_person_waiting_in_a_queue_is_decided_the_same_again_not_handed_to_the_account_owner() -> None:
    # Regression (the 20k crash benchmark): a person the SDR pool could not take went to the fallback queue;
    # deciding them again with that queue as their owner (a crash re-decides the persons of an account, so
    # does the daily re-score) gave them to the account's owner, as if the queue were a rep who had left.
    rules = with_pool(RULES, "sdr", {rep("a.sdr"): 1}, caps={rep("a.sdr"): 1})
    ledger = LedgerView(
        assignments={
            "a1": Assignment("a1", rep("sofia.rossi"), "sales", "AE EMEA", NOW - timedelta(days=90))
        },
        daily_counts={rep("a.sdr"): 1},
    )
    hot = {"conversions": 2, "email_clicks": 5, "page_views": 15, "last_engagement": NOW, "country": "DE"}
    accounts = [account("a1", country="DE")]
    first = run(
        [person("p1", account="a1", owner=rep("nora.lindqvist"), **hot)], accounts, ledger=ledger, rules=rules
    )["p1"]
    assert first.owner == queue_owner("Unassigned Leads"), first.explain()
    # Its Salesforce Lead now exists, owned by the queue the first decision chose.
    again = run(
        [person("p1", account="a1", sf="00Q1", owner=first.owner, stage=first.stage, **hot)],
        accounts,
        ledger=ledger,
        rules=rules,
    )["p1"]
    assert (again.owner, again.stage, again.team) == (first.owner, first.stage, first.team), again.explain()
    assert "follows account" not in again.explain()


@pytest.mark.parametrize(
    ("backlog", "created", "over_cap"),
    [
        pytest.param("exempt", NOW - timedelta(days=30), True, id="backlog-exempt"),
        pytest.param("exempt", NOW, False, id="new-record-capped"),
        pytest.param("counts", NOW - timedelta(days=30), False, id="policy-counts-backlog"),
    ],
)
def test_the_first_syncs_backlog_does_not_use_up_daily_caps(
    backlog: str, created: object, over_cap: bool
) -> None:
    rules = with_pool(RULES, "sdr", {rep("a.sdr"): 1}, caps={rep("a.sdr"): 2})
    rules = dataclasses.replace(
        rules, policy=dataclasses.replace(rules.policy, backlog_exempt=backlog == "exempt")
    )
    persons = [
        person(
            f"p{i}",
            conversions=2,
            email_clicks=5,
            page_views=15,
            last_engagement=NOW,
            stage="marketing_qualified",
            created_at=created,
        )
        for i in range(5)
    ]
    result = run(persons, ledger=LedgerView(backlog_before=NOW - timedelta(days=1)), rules=rules)
    owners = [result[f"p{i}"].owner for i in range(5)]
    taken = sum(1 for o in owners if o == rep("a.sdr"))
    assert (taken > 2) is over_cap


def test_an_enormous_count_with_no_cap_scores_at_most_the_maximum() -> None:
    # Regression: a count near 1e308 times the points overflowed to inf, and decay to 0 made it NaN.
    engagement = dataclasses.replace(RULES.scoring.engagement[0], cap=None)
    scoring = dataclasses.replace(RULES.scoring, engagement=(engagement, *RULES.scoring.engagement[1:]))
    rules = dataclasses.replace(RULES, scoring=scoring)
    for when in (NOW, NOW - timedelta(days=700_000)):
        d = run([person("p1", conversions=1e308, last_engagement=when)], rules=rules)["p1"]
        assert d.score is not None and 0 <= d.score <= RULES.scoring.max
