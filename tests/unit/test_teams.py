"""Account teams (syncd.core.teams) over the shipped rules: tiers, seats, member changes, continuity, and
properties over generated teams (a human's member is never touched; a seat with a pool that has someone free
is filled; deciding is deterministic; applying the changes and deciding again changes nothing)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from engine_helpers import INACTIVE, NOW, OUT_OF_OFFICE, RULES, rep
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.teams import AccountTeamInput, Member, TeamDecision, TeamsResult, decide_teams
from syncd.core.types import Rep, RepDirectory, RoundRobinState

TEAMS = RULES.teams
assert TEAMS is not None
LABEL = {name: role.label for name, role in TEAMS.roles.items()}
RACHEL, HANNAH, DANIEL = rep("rachel.green"), rep("hannah.weber"), rep("daniel.cohen")
JACK, LUKAS, OLIVIA, HUGO = rep("jack.miller"), rep("lukas.schmidt"), rep("olivia.davis"), rep("hugo.dubois")
BEN, ZOE = rep("ben.carter"), rep("zoe.evans")


def acct(
    owner: str | None = RACHEL,
    *,
    customer: bool = True,
    members: tuple[Member, ...] = (),
    won_amount: float = 0.0,
    key: str = "a1",
    **fields: Any,
) -> AccountTeamInput:
    return AccountTeamInput(
        key,
        fields,
        owner,
        customer,
        won_amount=won_amount,
        members=members,
        current_tier=fields.pop("tier", None),
    )


def one(account: AccountTeamInput, **options: Any) -> TeamDecision:
    return decide_teams([account], RULES, options.pop("round_robin", {}), NOW, **options).decisions[0]


def seats(decision: TeamDecision) -> dict[str, str | None]:
    return {s.role: s.rep for s in decision.seats}


def ops(decision: TeamDecision) -> list[tuple[str, str | None, str | None]]:
    return [(c.op, c.rep, c.label) for c in decision.changes]


STRATEGIC = {"annual_revenue": 2_000_000_000.0}


# ------------------------------------------------------------------------------------------------ tiers


@pytest.mark.parametrize(
    ("fields", "won", "tier"),
    [
        pytest.param({"annual_revenue": 2e9}, 0.0, "strategic", id="revenue-a-billion"),
        pytest.param({"employees": 50}, 1_500_000.0, "strategic", id="won-a-million"),
        pytest.param({"annual_revenue": 1.5e8}, 0.0, "enterprise", id="revenue-100m"),
        pytest.param({"employees": 1500}, 0.0, "enterprise", id="employees-1000"),
        pytest.param({"employees": 300}, 0.0, "mid_market", id="employees-200"),
        pytest.param({"employees": 20}, 0.0, "smb", id="small"),
        pytest.param({}, 0.0, "smb", id="nothing-known"),
    ],
)
def test_the_first_tier_that_matches_is_the_accounts(fields: dict[str, Any], won: float, tier: str) -> None:
    assert one(acct(won_amount=won, **fields)).tier == tier


def test_a_tier_the_systems_hold_already_is_no_change() -> None:
    assert one(acct(tier="Strategic", **STRATEGIC)).tier_changed is False
    assert one(acct(tier="SMB", **STRATEGIC)).tier_changed is True


# ------------------------------------------------------------------------------------------------ seats


def test_a_strategic_customer_gets_every_required_seat_each_from_a_different_rep() -> None:
    decision = one(acct(RACHEL, **STRATEGIC))
    got = seats(decision)
    assert list(got) == ["account_executive", "account_manager", "customer_success", "executive_sponsor"]
    assert got["account_manager"] == RACHEL
    assert got["executive_sponsor"] == HANNAH  # rachel holds the account manager's seat
    assert got["account_executive"] in {rep(n) for n in ("jack.miller", "emma.johnson", "noah.brown")}
    assert len(set(got.values())) == 4
    assert [op for op, _, _ in ops(decision)] == ["add"] * 4


def test_a_large_prospect_gets_its_owner_as_executive_and_an_available_sdr() -> None:
    got = seats(one(acct(JACK, customer=False, employees=2000)))
    assert got["account_executive"] == JACK
    assert got["sales_development"] not in OUT_OF_OFFICE | INACTIVE
    assert set(got) == {"account_executive", "sales_development"}


@pytest.mark.parametrize(
    ("days_ago", "kept"),
    [pytest.param(10, True, id="within-keep-days"), pytest.param(200, False, id="after-keep-days")],
)
def test_the_seller_stays_on_a_strategic_customer_for_keep_days(days_ago: int, kept: bool) -> None:
    account = replace(
        acct(RACHEL, **STRATEGIC), previous_owner=JACK, owner_since=NOW - timedelta(days=days_ago)
    )
    seat = next(s for s in one(account).seats if s.role == "account_executive")
    assert seat.how.startswith("the previous owner") is kept
    assert seat.rep is not None


def test_a_member_a_human_added_fills_the_seat_and_is_left_alone() -> None:
    human = Member(ZOE, LABEL["customer_success"], managed=False, id="h1")
    decision = one(acct(RACHEL, members=(human,), **STRATEGIC))
    assert seats(decision)["customer_success"] == ZOE
    assert all(c.member_id != "h1" and c.rep != ZOE for c in decision.changes)


def test_a_human_added_member_who_left_stays_and_the_seat_is_filled_again() -> None:
    human = Member(OLIVIA, LABEL["account_executive"], managed=False, id="h1")
    decision = one(acct(JACK, customer=False, members=(human,), employees=5))
    assert seats(decision)["account_executive"] == JACK
    assert all(c.member_id != "h1" for c in decision.changes)


def test_a_managed_member_who_left_is_removed_and_replaced() -> None:
    gone = Member(OLIVIA, LABEL["account_executive"], managed=True, id="m1")
    decision = one(acct(RACHEL, members=(gone,), **STRATEGIC))
    assert ("remove", OLIVIA, LABEL["account_executive"]) in ops(decision)
    assert seats(decision)["account_executive"] not in (None, OLIVIA)


def test_a_pool_seat_stays_with_its_holder() -> None:
    held = Member(BEN, LABEL["customer_success"], managed=True, id="m1", access=_access("customer_success"))
    decision = one(acct(RACHEL, members=(held,), **STRATEGIC), round_robin={})
    assert seats(decision)["customer_success"] == BEN
    assert all(c.rep != BEN for c in decision.changes)


def test_a_managed_member_no_role_needs_is_removed_and_a_human_one_is_not() -> None:
    managed = Member(BEN, LABEL["customer_success"], managed=True, id="m1")
    human = Member(ZOE, LABEL["customer_success"], managed=False, id="h1")
    decision = one(acct(RACHEL, members=(managed,), employees=10))  # an SMB customer needs no CSM
    assert ops(decision) == [
        ("remove", BEN, LABEL["customer_success"]),
        ("add", RACHEL, LABEL["account_manager"]),
    ]
    assert (
        one(acct(RACHEL, members=(human,), employees=10)).changes == one(acct(RACHEL, employees=10)).changes
    )


def test_a_managed_member_with_other_access_is_changed_in_place() -> None:
    stale = Member(RACHEL, LABEL["account_manager"], managed=True, id="m1")
    decision = one(acct(RACHEL, members=(stale,), employees=10))
    assert [(c.op, c.member_id, c.access) for c in decision.changes] == [
        ("change", "m1", _access("account_manager"))
    ]


# ------------------------------------------------------------------------------------------------ continuity


def test_a_prospect_whose_owner_left_goes_to_the_teams_account_executive() -> None:
    human = Member(LUKAS, LABEL["account_executive"], managed=False, id="h1")
    decision = one(acct(HUGO, customer=False, members=(human,), employees=10))
    assert (decision.owner, decision.successor) == (LUKAS, LUKAS)
    assert seats(decision)["account_executive"] == LUKAS


def test_a_customer_whose_account_manager_left_goes_to_the_executive_sponsor() -> None:
    directory = RepDirectory(
        [Rep(r, active=r != DANIEL) for r in RULES.roster.reps if RULES.roster.reps[r].active]
    )
    members = (
        Member(DANIEL, LABEL["account_manager"], managed=True, id="m1"),
        Member(HANNAH, LABEL["executive_sponsor"], managed=True, id="m2"),
    )
    decision = one(acct(DANIEL, members=members, **STRATEGIC), directory=directory)
    assert decision.successor == HANNAH
    got = seats(decision)
    assert got["account_manager"] == HANNAH and got["executive_sponsor"] == RACHEL
    assert ("remove", DANIEL, LABEL["account_manager"]) in ops(decision)


def test_an_owner_who_left_with_nobody_to_succeed_them_leaves_the_owner_to_routing() -> None:
    decision = one(acct(HUGO, customer=False, employees=10))
    assert decision.successor is None and decision.owner is None
    assert any(step.rule == "successor" and not step.matched for step in decision.trace)


def test_without_teams_toml_deciding_a_team_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"no teams\.toml"):
        decide_teams([], replace(RULES, teams=None), {}, NOW)


def test_explain_names_tier_seats_and_changes() -> None:
    text = one(acct(RACHEL, **STRATEGIC)).explain()
    assert text.startswith("account a1: tier=strategic stage=customer owner=" + RACHEL)
    assert f"seat Account Manager: {RACHEL} (the owner)" in text and "tier: strategic: yes" in text


# ------------------------------------------------------------------------------------------------ properties

REPS = sorted(RULES.roster.reps)
LABELS = [*LABEL.values(), "Sales Rep", None]
member_st = st.builds(
    Member,
    rep=st.sampled_from([*REPS, None]),
    role=st.sampled_from(LABELS),
    managed=st.booleans(),
)
account_st = st.builds(
    lambda owner, customer, members, revenue, employees, won: AccountTeamInput(
        "a",
        {"annual_revenue": revenue, "employees": employees},
        owner,
        customer,
        won_amount=won,
        members=tuple(replace(m, id=f"m{i}") for i, m in enumerate(_one_per_rep(members))),
    ),
    owner=st.sampled_from([*REPS, None]),
    customer=st.booleans(),
    members=st.lists(member_st, max_size=6),
    revenue=st.sampled_from([None, 5e6, 2e8, 3e9]),
    employees=st.sampled_from([None, 10, 500, 5000]),
    won=st.sampled_from([0.0, 2e6]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(account_st, min_size=1, max_size=4))
def test_properties_over_generated_teams(accounts: list[AccountTeamInput]) -> None:
    accounts = [replace(a, key=f"a{i}") for i, a in enumerate(accounts)]
    first = decide_teams(accounts, RULES, {}, NOW)
    assert first == decide_teams(accounts, RULES, {}, NOW)  # deterministic
    for account, decision in zip(accounts, first.decisions, strict=True):
        human = {m.id for m in account.members if not m.managed}
        # a human's member is never changed or removed
        assert not any(c.member_id in human for c in decision.changes)
        # a seat left empty had nobody free in its pool
        held = {s.rep for s in decision.seats} | {m.rep for m in account.members if not m.managed}
        for seat in decision.seats:
            role = TEAMS.roles[seat.role]
            if seat.rep is None and role.pool is not None:
                pool = {**RULES.routing.pools, **TEAMS.pools}[role.pool]
                free = [m for m in pool.members if m not in INACTIVE | OUT_OF_OFFICE | held]
                assert free == [], f"{seat.role} unfilled while {free} were free"
    # applying the changes and deciding again writes nothing
    again = [_applied(a, d) for a, d in zip(accounts, first.decisions, strict=True)]
    second = decide_teams(again, RULES, _state(first), NOW)
    assert [d.changes for d in second.decisions] == [()] * len(again)


# ------------------------------------------------------------------------------------------------ helpers


def _access(role: str) -> Any:
    from syncd.core.teams import Access

    r = TEAMS.roles[role]
    return Access(r.account_access, r.opportunity_access, r.case_access)


def _one_per_rep(members: list[Member]) -> list[Member]:
    """Salesforce keeps one member per user and account."""
    seen: set[str | None] = set()
    out = []
    for m in members:
        if m.rep is not None and m.rep in seen:
            continue
        seen.add(m.rep)
        out.append(m)
    return out


def _applied(account: AccountTeamInput, decision: TeamDecision) -> AccountTeamInput:
    members = {m.id: m for m in account.members}
    for n, c in enumerate(decision.changes):
        if c.op == "remove":
            members.pop(c.member_id)
        elif c.op == "change":
            assert c.member_id is not None and c.access is not None
            members[c.member_id] = replace(members[c.member_id], role=c.label, access=c.access)
        else:
            assert c.access is not None
            members[f"new{n}"] = Member(c.rep, c.label, managed=True, id=f"new{n}", access=c.access)
    return replace(
        account, members=tuple(members.values()), owner=decision.owner, current_tier=decision.tier_label
    )


def _state(result: TeamsResult) -> dict[str, RoundRobinState]:
    return dict(result.round_robin)


# ------------------------------------------------------------------------------------------------ edges


def test_rows_and_changes_translate_through_the_directory() -> None:
    from syncd.core.teams import member_fields, member_from_row

    directory = RepDirectory([Rep(BEN, salesforce_id="005B"), Rep(RACHEL, salesforce_id="005R")])
    row = {
        "Id": "01M1",
        "UserId": "005B",
        "TeamMemberRole": "Customer Success Manager",
        "CaseAccessLevel": "Edit",
    }
    member = member_from_row(row, directory, managed=False)
    assert (member.rep, member.role, member.managed, member.id, member.access.case) == (
        BEN,
        "Customer Success Manager",
        False,
        "01M1",
        "Edit",
    )
    decision = one(acct(RACHEL, members=(member,), **STRATEGIC))
    adds = [c for c in decision.changes if c.op == "add" and c.rep == RACHEL]
    assert member_fields(adds[0], "001A", directory) == {
        "AccountId": "001A",
        "UserId": "005R",
        "TeamMemberRole": "Account Manager",
        "AccountAccessLevel": "Edit",
        "OpportunityAccessLevel": "Edit",
        "CaseAccessLevel": "Edit",
    }
    unknown = next(c for c in decision.changes if c.op == "add" and c.rep not in (RACHEL, BEN))
    assert member_fields(unknown, "001A", directory) is None  # no Salesforce user to write


def test_the_restore_after_an_owner_change_puts_back_humans_and_seats_and_then_nothing_is_due() -> None:
    from syncd.core.teams import restore_changes

    directory = RepDirectory([Rep(r, active=RULES.roster.reps[r].active) for r in RULES.roster.reps], [])
    human = Member(LUKAS, "Sales Rep", managed=False, id="h1")
    human_who_left = Member(OLIVIA, "Sales Rep", managed=False, id="h2")
    account = acct(RACHEL, members=(human, human_who_left), **STRATEGIC)
    decision = one(account, directory=directory)
    restore = restore_changes(decision, account.members, directory)
    assert [(c.rep, c.label, c.human) for c in restore][:1] == [(LUKAS, "Sales Rep", True)]
    assert {c.rep for c in restore if not c.human} == {s.rep for s in decision.seats}
    assert OLIVIA not in {c.rep for c in restore}
    # The team as restored (the humans' members still theirs) needs nothing more.
    restored = tuple(
        Member(c.rep, c.label, managed=not c.human, id=f"r{n}", access=c.access or _access("account_manager"))
        for n, c in enumerate(restore)
    )
    again = one(replace(account, members=restored), directory=directory)
    assert again.changes == ()
