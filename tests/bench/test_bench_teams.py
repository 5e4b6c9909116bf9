"""Benchmark: account teams decided over the seeded demo org (20,000 persons) with the shipped rules.

Prints the tiers, the member changes of a first pass, and checks what must hold at scale: no member a
human added is touched, and deciding again after applying the changes changes nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.core.rules import load_ruleset
from syncd.core.teams import AccountTeamInput, TeamDecision, decide_teams, member_from_row
from syncd.core.types import Rep, RepDirectory
from syncd.sandbox.seed import generate
from syncd.sandbox.store import Store

PERSONS = 20_000
NOW = datetime(2026, 11, 28, tzinfo=UTC)
SHIPPED = Path(__file__).resolve().parents[2] / "mappings"


def _applied(account: AccountTeamInput, decision: TeamDecision) -> AccountTeamInput:
    from syncd.core.teams import Member

    members = {m.id: m for m in account.members}
    for n, c in enumerate(decision.changes):
        if c.op == "remove":
            members.pop(c.member_id)
        elif c.op == "change" and c.member_id is not None and c.access is not None:
            members[c.member_id] = replace(members[c.member_id], role=c.label, access=c.access)
        elif c.access is not None:
            members[f"new{n}"] = Member(c.rep, c.label, True, f"new{n}", c.access)
    return replace(
        account, members=tuple(members.values()), owner=decision.owner, current_tier=decision.tier_label
    )


@pytest.mark.bench
def test_bench_teams_on_the_demo_org() -> None:
    sf, hs = Store(), Store()
    generate(sf, hs, seed=1, persons=PERSONS, now=NOW)
    rules = load_ruleset(SHIPPED)
    users = {u["Id"]: u for u in sf.all("User")}
    integration = next(i for i, u in users.items() if str(u["Username"]).startswith("integration@"))
    directory = RepDirectory(
        Rep(str(u["Email"]).lower(), salesforce_id=i, active=bool(u["IsActive"]))
        for i, u in users.items()
        if i != integration
    )
    won: Counter[str] = Counter()
    won_count: Counter[str] = Counter()
    for o in sf.all("Opportunity"):
        if o["IsWon"]:
            won[o["AccountId"]] += o["Amount"] or 0
            won_count[o["AccountId"]] += 1
    teams: dict[str, list] = {}
    for row in sf.all("AccountTeamMember"):
        member = member_from_row(row, directory, managed=row["CreatedById"] == integration)
        teams.setdefault(row["AccountId"], []).append(member)
    accounts = [
        AccountTeamInput(
            a["Id"],
            {"annual_revenue": a["AnnualRevenue"], "employees": a["NumberOfEmployees"]},
            directory.owner_from_salesforce(a["OwnerId"]),
            a["Type"] == "Customer" or won_count[a["Id"]] > 0,
            won_opportunities=won_count[a["Id"]],
            won_amount=won[a["Id"]],
            members=tuple(teams.get(a["Id"], ())),
            current_tier=a["Syncd_Tier__c"],
        )
        for a in sf.all("Account")
    ]
    began = time.perf_counter()
    first = decide_teams(accounts, rules, {}, NOW, directory=directory)
    seconds = time.perf_counter() - began
    human = {m.id for a in accounts for m in a.members if not m.managed}
    touched = sum(1 for d in first.decisions for c in d.changes if c.member_id in human)
    second = decide_teams(
        [_applied(a, d) for a, d in zip(accounts, first.decisions, strict=True)],
        rules,
        first.round_robin,
        NOW,
        directory=directory,
    )
    print(
        f"\nteams over {len(accounts):,} accounts ({PERSONS:,} persons): {seconds:.2f} s, "
        f"{len(accounts) / seconds:,.0f} accounts/s\n"
        f"  tiers {dict(Counter(d.tier for d in first.decisions))}\n"
        f"  changes {dict(Counter(c.op for d in first.decisions for c in d.changes))}, "
        f"{len(human):,} human members, {touched} touched; "
        f"{sum(1 for d in first.decisions if d.successor)} owners who left succeeded from the team; "
        f"{sum(1 for d in first.decisions for s in d.seats if s.rep is None)} seats unfilled\n"
        f"  second pass: {sum(len(d.changes) for d in second.decisions)} changes"
    )
    assert touched == 0
    assert all(d.changes == () for d in second.decisions)
