"""The decision engine, rule kind by rule kind, with the shipped rules of engagement as data in, data out."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from engine_helpers import (
    AE_APAC,
    AE_EMEA,
    AE_NA,
    AMS,
    MARKETING,
    NOW,
    RULES,
    SDRS,
    account,
    person,
    rep,
    run,
)

from syncd.core.engine import decide
from syncd.core.rules.roster import RosterRep, WorkingHours
from syncd.core.types import (
    Assignment,
    Decision,
    Handoff,
    LedgerView,
    Override,
    Rep,
    RepDirectory,
    RoundRobinState,
    queue_owner,
)

DAY = timedelta(days=1)


def one(*args: Any, **kwargs: Any) -> Decision:
    decisions = run(*args, **kwargs)
    return decisions["p1"]


# ------------------------------------------------------------------------------------------------- scoring

SCORING = [
    pytest.param({}, 0, id="nothing-known"),
    pytest.param({"title": "VP of Sales"}, 15, id="decision-maker-title"),
    pytest.param({"title": "Engineer"}, 0, id="other-title"),
    pytest.param({"employees": 500}, 15, id="mid-market"),
    pytest.param({"employees": 6000}, 20, id="enterprise"),
    pytest.param({"employees": 100}, 0, id="small-company"),
    pytest.param({"industry": "Banking", "country": "DE"}, 20, id="industry-and-territory"),
    pytest.param(
        {"title": "CTO", "employees": 9000, "industry": "Software", "country": "US"},
        50,
        id="fit-capped-at-50",
    ),
    pytest.param({"title": "Student", "domain": "gmail.com"}, 0, id="negative-fit-clamped-to-0"),
    pytest.param({"conversions": 1, "last_engagement": NOW}, 15, id="one-conversion-today"),
    pytest.param({"conversions": 5, "last_engagement": NOW}, 30, id="conversions-capped-per-rule"),
    pytest.param({"conversions": 2, "last_engagement": NOW - 90 * DAY}, 15, id="one-half-life-halves"),
    pytest.param({"conversions": 2, "last_engagement": NOW - 180 * DAY}, 8, id="two-half-lives-quarter"),
    pytest.param({"conversions": 2}, 0, id="no-activity-date-no-engagement"),
    pytest.param({"email_clicks": 2, "page_views": 4, "last_engagement": NOW}, 18, id="clicks-and-views"),
    pytest.param({"lead_source": "ORGANIC_SEARCH"}, 5, id="when-only-rule"),
    pytest.param({"lead_source": "PAID_SEARCH"}, 0, id="when-only-rule-no-match"),
    pytest.param(
        {
            "conversions": 9,
            "email_clicks": 9,
            "page_views": 90,
            "last_engagement": NOW,
            "lead_source": "REFERRALS",
        },
        60,
        id="engagement-capped-at-60",
    ),
    pytest.param(
        {
            "title": "CEO",
            "employees": 9000,
            "industry": "Software",
            "country": "US",
            "conversions": 9,
            "email_clicks": 9,
            "page_views": 90,
            "last_engagement": NOW,
        },
        100,
        id="total-at-most-max",
    ),
    pytest.param({"conversions": "3", "last_engagement": NOW}, 0, id="non-number-count-ignored"),
]


@pytest.mark.parametrize(("fields", "expected"), SCORING)
def test_scoring(fields: dict[str, Any], expected: int) -> None:
    decision = one([person(**fields)])
    assert decision.score == expected
    assert any(step.phase == "score" for step in decision.trace)


# ------------------------------------------------------------------------------------------------- lifecycle

HOT = {
    "title": "VP Sales",
    "employees": 6000,
    "conversions": 2,
    "last_engagement": NOW,
    "last_activity": NOW,
}  # score 65

LIFECYCLE = [
    pytest.param(person(), [], "lead", id="new-person-starts-as-lead"),
    pytest.param(person(**HOT), [], "marketing_qualified", id="threshold-qualifies"),
    pytest.param(person(stage="sales_qualified"), [], "sales_qualified", id="never-moves-back-on-its-own"),
    pytest.param(person(stage="opportunity", **HOT), [], "opportunity", id="score-never-lowers-a-stage"),
    pytest.param(
        person(account="a1", sf="003A", obj="Contact"),
        [account(open_opps=1)],
        "opportunity",
        id="contact-with-open-opportunity",
    ),
    pytest.param(
        person(account="a1", sf="00QA", obj="Lead"),
        [account(open_opps=1)],
        "lead",
        id="lead-with-open-opportunity-is-not-an-opportunity",
    ),
    pytest.param(person(account="a1"), [account(account_type="Customer")], "customer", id="customer-account"),
    pytest.param(person(account="a1"), [account(won_opps=1)], "customer", id="won-deal-makes-a-customer"),
    pytest.param(
        person(stage="marketing_qualified", lead_status="Closed - Not Converted", **HOT),
        [],
        "lead",
        id="recycle-disqualified",
    ),
    pytest.param(
        person(stage="lead", lead_status="Closed - Not Converted"),
        [],
        "lead",
        id="backward-only-from-listed-stages",
    ),
    pytest.param(person(stage="evangelist"), [], "lead", id="unknown-stage-reading-ignored"),
]


@pytest.mark.parametrize(("p", "accounts", "expected"), LIFECYCLE)
def test_lifecycle(p: Any, accounts: list[Any], expected: str) -> None:
    decision = run([p], accounts)["p1"]
    assert decision.stage == expected
    assert decision.team == RULES.lifecycle.stage(expected).team  # type: ignore[union-attr]


def test_recycling_holds_forward_moves_then_releases_them() -> None:
    recycled = one([person(stage="sales_qualified", lead_status="Closed - Not Converted", **HOT)])
    assert recycled.stage == "lead"
    assert recycled.hold_until == NOW + 30 * DAY
    assert recycled.handoff == Handoff("sales", "marketing")
    held = LedgerView(holds={"p1": recycled.hold_until})
    assert one([person(stage="lead", **HOT)], ledger=held).stage == "lead"
    later = NOW + 31 * DAY
    hot_again = {**HOT, "last_engagement": later, "last_activity": later}
    assert one([person(stage="lead", **hot_again)], ledger=held, now=later).stage == "marketing_qualified"
    # A rep moving the person forward by hand is kept even while held.
    assert one([person(stage="sales_qualified", **HOT)], ledger=held).stage == "sales_qualified"


# ------------------------------------------------------------------------------------------------- routing

ROUTING = [
    pytest.param(person(), MARKETING, "Marketing nurture", id="lead-to-marketing"),
    pytest.param(person(**HOT), SDRS, "SDR qualification", id="mql-to-sdr"),
    pytest.param(person(stage="sales_qualified", country="CA"), AE_NA, "AE North America", id="sql-na"),
    pytest.param(person(stage="sales_qualified", country="FR"), AE_EMEA, "AE EMEA", id="sql-emea"),
    pytest.param(person(stage="opportunity", country="SG"), AE_APAC, "AE APAC", id="opportunity-apac"),
    pytest.param(
        person(stage="sales_qualified", country="BR"),
        {queue_owner("Unassigned Leads")},
        "fallback",
        id="no-territory-to-fallback-queue",
    ),
    pytest.param(
        person(stage="sales_qualified"),
        {queue_owner("Unassigned Leads")},
        "fallback",
        id="no-country-to-fallback-queue",
    ),
    pytest.param(person(stage="customer"), AMS, "Account managers", id="customer-without-account-to-am-pool"),
]


@pytest.mark.parametrize(("p", "allowed", "rule"), ROUTING)
def test_routing(p: Any, allowed: set[str], rule: str) -> None:
    decision = run([p])["p1"]
    assert decision.owner in allowed
    assert decision.rule == rule
    assert decision.owner_changed
    assert decision.assigned_at == NOW


def test_first_matching_rule_wins_and_every_rule_tried_is_traced() -> None:
    decision = one([person(stage="sales_qualified", country="DE")])
    routes = [
        (s.rule, s.matched) for s in decision.trace if s.phase == "route" and not s.rule.startswith("pool")
    ]
    assert routes == [("SDR qualification", False), ("AE North America", False), ("AE EMEA", True)]


def test_round_robin_skips_inactive_and_out_of_office() -> None:
    persons = [person(f"p{i}", **HOT) for i in range(30)]
    owners = {d.owner for d in run(persons).values()}
    assert owners == SDRS - {rep("ivy.chen")}
    leads = [person(f"p{i}") for i in range(30)]
    assert {d.owner for d in run(leads).values()} == {rep("nora.lindqvist"), rep("owen.price")}


def test_round_robin_respects_weights_and_daily_caps() -> None:
    persons = [person(f"p{i}", stage="sales_qualified", country="US") for i in range(40)]
    counts: dict[str, int] = {}
    result = decide(persons, [], RULES, LedgerView(daily_counts={rep("noah.brown"): 20}), NOW)
    for d in result.decisions:
        counts[d.owner] = counts.get(d.owner, 0) + 1  # type: ignore[index]
    # noah.brown is at his cap of 20; jack.miller has weight 2 and a cap of 30, emma.johnson 20.
    assert counts == {rep("jack.miller"): 27, rep("emma.johnson"): 13}
    assert result.assigned_today == counts
    assert result.round_robin["ae_na"].assigned == counts


def test_full_pool_overflows_to_its_queue() -> None:
    full = LedgerView(
        daily_counts={rep("lukas.schmidt"): 20, rep("chloe.martin"): 20, rep("sofia.rossi"): 20}
    )
    decision = one([person(stage="sales_qualified", country="GB")], ledger=full)
    assert decision.owner == queue_owner("EMEA Lead Queue")
    assert decision.rule == "AE EMEA"
    assert any("daily cap 20 reached" in str(s) for s in decision.trace)


def test_round_robin_state_continues_from_the_ledger() -> None:
    first = decide([person("p1", **HOT)], [], RULES, LedgerView(), NOW)
    second = decide([person("p2", **HOT)], [], RULES, LedgerView(round_robin=first.round_robin), NOW)
    both = decide([person("p1", **HOT), person("p2", **HOT)], [], RULES, LedgerView(), NOW)
    assert [first.decisions[0].owner, second.decisions[0].owner] == [d.owner for d in both.decisions]
    assert second.round_robin["sdr"] == both.round_robin["sdr"]


def test_directory_deactivation_overrides_the_roster() -> None:
    reps = [
        Rep(k, salesforce_id=f"005{i}", hubspot_owner_id=str(i), active=k != rep("sam.patel"))
        for i, k in enumerate(sorted(RULES.roster.reps))
    ]
    directory = RepDirectory(reps)
    owners = {d.owner for d in run([person(f"p{i}", **HOT) for i in range(20)], directory=directory).values()}
    assert owners == {rep("lena.novak"), rep("diego.ramos")}


def test_rep_unknown_to_both_systems_gets_nothing() -> None:
    directory = RepDirectory([Rep(rep("lena.novak"), salesforce_id="005B")])
    decisions = run([person(f"p{i}", **HOT) for i in range(5)], directory=directory)
    assert {d.owner for d in decisions.values()} == {rep("lena.novak")}


def test_working_hours_make_a_rep_unavailable() -> None:
    hours = WorkingHours(ZoneInfo("Asia/Tokyo"), frozenset(range(5)), time(9), time(18))
    reps = dict(RULES.roster.reps)
    for name in ("sam.patel", "lena.novak"):
        reps[rep(name)] = dataclasses.replace(reps[rep(name)], working_hours=hours)
    rules = dataclasses.replace(RULES, roster=dataclasses.replace(RULES.roster, reps=reps))
    # 15:00 UTC on a Monday is midnight in Tokyo.
    owners = {d.owner for d in run([person(f"p{i}", **HOT) for i in range(6)], rules=rules).values()}
    assert owners == {rep("diego.ramos")}
    tokyo_morning = NOW.replace(hour=1)  # 10:00 in Tokyo
    owners = {
        d.owner
        for d in run([person(f"p{i}", **HOT) for i in range(6)], rules=rules, now=tokyo_morning).values()
    }
    assert owners == {rep("sam.patel"), rep("lena.novak"), rep("diego.ramos")}


@pytest.mark.parametrize(
    ("away", "available"),
    [
        pytest.param(((NOW.date() - DAY, NOW.date() + DAY),), False, id="away-today"),
        pytest.param(((NOW.date() - 9 * DAY, NOW.date() - DAY),), True, id="back-from-leave"),
    ],
)
def test_away_periods(away: tuple[Any, ...], available: bool) -> None:
    rr = RosterRep(rep("x"), "sales", "", "", 1, None, True, False, away, None)
    assert rr.available(NOW)[0] is available


# ------------------------------------------------------------------------------------------------- stickiness


def assigned(
    owner: str,
    team: str = "sales",
    rule: str = "AE North America",
    days_ago: float = 10,
    influencers: tuple[str, ...] = (),
) -> LedgerView:
    return LedgerView(
        assignments={"p1": Assignment("p1", owner, team, rule, NOW - days_ago * DAY, influencers)}
    )


def test_sticky_owner_stays() -> None:
    decision = one([person(stage="sales_qualified", country="US")], ledger=assigned(rep("noah.brown")))
    assert decision.owner == rep("noah.brown")
    assert not decision.owner_changed
    assert decision.assigned_at == NOW - 10 * DAY
    assert decision.rule == "AE North America"


def test_current_system_owner_is_adopted_without_a_ledger() -> None:
    decision = one([person(stage="sales_qualified", country="US", owner=rep("emma.johnson"))])
    assert decision.owner == rep("emma.johnson")
    assert not decision.owner_changed
    assert decision.rule == "sticky"


STICKY_EXCEPTIONS = [
    pytest.param(
        person(stage="sales_qualified", country="US"),
        assigned(rep("olivia.davis")),
        AE_NA - {rep("olivia.davis")},
        "inactive",
        id="inactive-rep-loses-it",
    ),
    pytest.param(
        person(stage="sales_qualified", country="US"),
        assigned("someone.else@northwind.example"),
        AE_NA,
        "not on the roster",
        id="rep-who-left-loses-it",
    ),
    pytest.param(
        person(stage="sales_qualified", country="GB"),
        assigned(rep("jack.miller")),
        AE_EMEA,
        're-assigning rule "AE EMEA" matches',
        id="territory-change-reassigns",
    ),
    pytest.param(
        person(stage="sales_qualified", country="US"),
        assigned(rep("sam.patel"), rule="SDR qualification"),
        AE_NA,
        "not in its pool",
        id="sdr-accepted-lead-goes-to-an-ae",
    ),
    pytest.param(
        person(**HOT),
        assigned(rep("nora.lindqvist"), team="marketing", rule="Marketing nurture"),
        SDRS,
        "hand-off",
        id="marketing-to-sales-hand-off",
    ),
    pytest.param(
        person(stage="sales_qualified", country="US", owner=queue_owner("Unassigned Leads")),
        None,
        AE_NA,
        "a queue is no owner to keep",
        id="queue-is-not-sticky",
    ),
]


@pytest.mark.parametrize(("p", "ledger", "allowed", "why"), STICKY_EXCEPTIONS)
def test_stickiness_exceptions(p: Any, ledger: LedgerView | None, allowed: set[str], why: str) -> None:
    decision = one([p], ledger=ledger)
    assert decision.owner in allowed
    assert decision.owner_changed
    assert any(s.rule == "sticky" and not s.matched and why in s.test for s in decision.trace), (
        decision.explain()
    )


def test_hand_off_from_the_current_owners_team_without_a_stage_reading() -> None:
    decision = one([person(owner=rep("owen.price"), **HOT)])
    assert decision.handoff == Handoff("marketing", "sales")
    assert decision.owner in SDRS


def test_hand_off_is_flagged_with_teams() -> None:
    decision = one(
        [person(**HOT)], ledger=assigned(rep("nora.lindqvist"), team="marketing", rule="Marketing nurture")
    )
    assert decision.handoff == Handoff("marketing", "sales")
    stays = one([person(stage="sales_qualified", country="US")], ledger=assigned(rep("jack.miller")))
    assert stays.handoff is None


# ------------------------------------------------------------------------------------------------- SLA


def test_sla_expired_without_activity_goes_to_another_sdr() -> None:
    ledger = assigned(rep("sam.patel"), rule="SDR qualification", days_ago=4)
    decision = one([person(stage="marketing_qualified", last_activity=NOW - 5 * DAY)], ledger=ledger)
    assert decision.owner in SDRS - {rep("sam.patel"), rep("ivy.chen")}
    assert any("SLA 72h expired" in s.test for s in decision.trace)


@pytest.mark.parametrize(
    ("days_ago", "activity_days_ago"),
    [pytest.param(2, None, id="within-sla"), pytest.param(4, 1, id="worked-after-assignment")],
)
def test_sla_not_expired_keeps_owner(days_ago: float, activity_days_ago: float | None) -> None:
    ledger = assigned(rep("sam.patel"), rule="SDR qualification", days_ago=days_ago)
    fields: dict[str, Any] = {"stage": "marketing_qualified"}
    if activity_days_ago is not None:
        fields["last_activity"] = NOW - activity_days_ago * DAY
    assert one([person(**fields)], ledger=ledger).owner == rep("sam.patel")


# ------------------------------------------------------------------------------------------------- overrides


def override(owner: str, days_ago: float, by: str = "rachel.green") -> dict[str, Override]:
    return {"p1": Override("p1", owner, NOW - days_ago * DAY, by=by, system="salesforce")}


OVERRIDES = [
    pytest.param(override(rep("emma.johnson"), 3), rep("emma.johnson"), True, id="honoured-within-period"),
    pytest.param(
        override(queue_owner("Unassigned Leads"), 3),
        queue_owner("Unassigned Leads"),
        True,
        id="honoured-queue",
    ),
    pytest.param(override(rep("emma.johnson"), 31), rep("jack.miller"), False, id="expired-after-30-days"),
    pytest.param(override(rep("olivia.davis"), 3), rep("jack.miller"), False, id="inactive-rep-not-honoured"),
]


@pytest.mark.parametrize(("overrides", "owner", "honoured"), OVERRIDES)
def test_manual_override(overrides: dict[str, Override], owner: str, honoured: bool) -> None:
    ledger = LedgerView(assignments=assigned(rep("jack.miller")).assignments, overrides=overrides)
    decision = one([person(stage="sales_qualified", country="US")], ledger=ledger)
    assert decision.owner == owner
    assert (decision.rule == "override") is honoured


def test_override_gives_way_to_a_later_hand_off() -> None:
    ledger = LedgerView(
        assignments=assigned(rep("jack.miller"), days_ago=1).assignments,
        overrides=override(rep("jack.miller"), 5),
    )
    decision = one(
        [person("p1", account="a1", stage="sales_qualified", country="US")],
        [account(account_type="Customer", owner=rep("rachel.green"))],
        ledger=ledger,
    )
    assert decision.owner == rep("rachel.green")
    assert decision.handoff == Handoff("sales", "account_management")


# ------------------------------------------------------------------------------------------------- accounts


def test_account_based_ownership_for_customers() -> None:
    accounts = [account("a1", account_type="Customer", country="US", owner=rep("daniel.cohen"))]
    persons = [
        person("p1", account="a1", sf="003A", obj="Contact", stage="opportunity", owner=rep("jack.miller")),
        person("p2", account="a1", sf="003B", obj="Contact", owner=rep("emma.johnson")),
        person("p3", account="a1", stage="lead"),
    ]
    decisions = run(persons, accounts)
    for key in ("p1", "p2", "p3"):
        assert decisions[key].stage == "customer"
        assert decisions[key].owner == rep("daniel.cohen")
        assert decisions[key].rule == "account"
    # The seller stays on the account team as an influencer.
    assert decisions["p1"].influencers == (rep("jack.miller"),)
    assert decisions["p2"].influencers == (rep("emma.johnson"),)
    assert decisions["p3"].influencers == ()
    assert decisions["a1"].owner == rep("daniel.cohen")


def test_prospect_account_owner_takes_its_sales_qualified_contacts_but_not_mqls() -> None:
    accounts = [account("a1", account_type="Prospect", country="US", owner=rep("noah.brown"))]
    decisions = run(
        [
            person("p1", account="a1", stage="sales_qualified", country="GB"),
            person("p2", account="a1", **HOT),
        ],
        accounts,
    )
    assert decisions["p1"].owner == rep("noah.brown")
    assert decisions["p1"].rule == "account"
    assert decisions["p2"].owner in SDRS


def test_account_owner_from_the_ledger_when_the_account_is_not_in_the_batch() -> None:
    ledger = LedgerView(assignments={"a9": Assignment("a9", rep("mia.wong"), "sales", "AE APAC", NOW - DAY)})
    assert one([person(account="a9", stage="sales_qualified")], ledger=ledger).owner == rep("mia.wong")


ACCOUNTS = [
    pytest.param(
        account(country="US"), AE_NA - {rep("olivia.davis")}, "sales", None, id="prospect-by-territory"
    ),
    pytest.param(
        account(country="US", account_type="Customer", owner=rep("jack.miller")),
        AMS,
        "account_management",
        Handoff("sales", "account_management"),
        id="new-customer-to-account-management",
    ),
    pytest.param(
        account(country="US", owner=rep("emma.johnson")),
        {rep("emma.johnson")},
        "sales",
        None,
        id="sticky-account-owner",
    ),
    pytest.param(account(country="BR"), {None}, "sales", None, id="no-territory-keeps-owner"),
]


@pytest.mark.parametrize(("a", "allowed", "team", "handoff"), ACCOUNTS)
def test_account_decisions(a: Any, allowed: set[str | None], team: str, handoff: Handoff | None) -> None:
    decision = run([], [a])["a1"]
    assert decision.kind == "account"
    assert decision.owner in allowed
    assert decision.team == team
    assert decision.handoff == handoff
    assert len(decision.trace) > 0


def test_new_customer_keeps_the_seller_as_influencer() -> None:
    decision = run([], [account(country="US", account_type="Customer", owner=rep("jack.miller"))])["a1"]
    assert decision.influencers == (rep("jack.miller"),)


def test_influencers_carry_over_and_drop_inactive_reps() -> None:
    ledger = assigned(
        rep("rachel.green"),
        team="account_management",
        rule="account",
        influencers=(rep("jack.miller"), rep("olivia.davis")),
    )
    decision = one(
        [person(account="a1")], [account(account_type="Customer", owner=rep("rachel.green"))], ledger=ledger
    )
    assert decision.influencers == (rep("jack.miller"),)


# ------------------------------------------------------------------------------------------------- hand-off actions

CREATE_LEAD = [
    pytest.param(person(**HOT), True, id="hubspot-only-mql"),
    pytest.param(person(), False, id="hubspot-only-lead-stays-in-marketing"),
    pytest.param(person(sf="00QX", **HOT), False, id="already-in-salesforce"),
    pytest.param(person(account="a1"), False, id="customer-contact-not-sales"),
]


@pytest.mark.parametrize(("p", "expected"), CREATE_LEAD)
def test_create_salesforce_lead_flag(p: Any, expected: bool) -> None:
    decision = run([p], [account(account_type="Customer", owner=rep("hannah.weber"))])["p1"]
    assert decision.create_salesforce_lead is expected


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide([], [], RULES, LedgerView(), NOW.replace(tzinfo=None))


def test_explain_names_every_phase() -> None:
    text = one([person(**HOT)]).explain()
    assert text.startswith("person p1: stage=marketing_qualified team=sales owner=")
    for phase in ("score:", "stage:", "route:"):
        assert phase in text


def test_round_robin_state_is_data() -> None:
    result = decide([person("p1", **HOT)], [], RULES, LedgerView(), NOW)
    state = result.round_robin["sdr"]
    assert isinstance(state, RoundRobinState)
    assert sum(state.assigned.values()) == 1


# ------------------------------------------------------------------------------------------------- account fallback

AES = (AE_NA | AE_EMEA | AE_APAC) - {rep("olivia.davis"), rep("hugo.dubois")}
EMEA_FULL = {rep("lukas.schmidt"): 20, rep("chloe.martin"): 20, rep("sofia.rossi"): 20}
EVERY_AE_FULL = {ae: 30 for ae in AES}
NO_ACCOUNT_POOL = dataclasses.replace(
    RULES, routing=dataclasses.replace(RULES.routing, fallback_account_pool=None)
)

# (account, daily counts, rules, owners allowed, the rule that chose, the fallback's trace line)
ACCOUNT_FALLBACK = [
    pytest.param(
        account(country="BR", owner=rep("hugo.dubois")),
        {},
        RULES,
        AES,
        "fallback",
        "account pool account_executives, daily caps aside: its owner cannot keep it (inactive (roster))",
        id="owner-left-no-territory-to-account-pool",
    ),
    pytest.param(
        account(country="FR", owner=rep("hugo.dubois")),
        EMEA_FULL,
        RULES,
        AES,
        "fallback",
        "account pool account_executives",
        id="owner-left-territory-full-to-account-pool",
    ),
    pytest.param(
        account(country="FR", owner=rep("hugo.dubois")),
        EVERY_AE_FULL,
        RULES,
        AES,
        "fallback",
        "daily caps aside",
        id="account-pool-ignores-daily-caps",
    ),
    pytest.param(
        account(country="BR", owner="stranger@northwind.example"),
        {},
        RULES,
        AES,
        "fallback",
        "(not on the roster)",
        id="owner-not-on-roster-to-account-pool",
    ),
    pytest.param(
        account(country="FR", owner=rep("hugo.dubois")),
        {},
        RULES,
        AE_EMEA - {rep("hugo.dubois")},
        "AE EMEA",
        None,
        id="territory-rule-first",
    ),
    pytest.param(
        account(country="BR", owner=rep("emma.johnson")),
        {},
        RULES,
        {rep("emma.johnson")},
        "sticky",
        None,
        id="active-owner-stays-sticky",
    ),
    pytest.param(
        account(country="FR", owner=rep("jack.miller")),
        EMEA_FULL,
        RULES,
        {None},
        "unrouted",
        "accounts cannot wait in a queue, its owner has not left: owner unchanged",
        id="active-owner-moved-by-territory-waits-for-room",
    ),
    pytest.param(
        account(country="BR"),
        {},
        RULES,
        {None},
        "unrouted",
        "its owner has not left",
        id="no-owner-no-rule-stays-unowned",
    ),
    pytest.param(
        account(country="BR", owner=rep("hugo.dubois")),
        {},
        NO_ACCOUNT_POOL,
        {None},
        "unrouted",
        "no fallback account pool: owner unchanged",
        id="no-account-pool-declared",
    ),
]


@pytest.mark.parametrize(("a", "counts", "rules", "allowed", "rule", "fallback"), ACCOUNT_FALLBACK)
def test_account_fallback_pool(
    a: Any, counts: dict[str, int], rules: Any, allowed: set[str | None], rule: str, fallback: str | None
) -> None:
    """Regression: the demo left 21 prospect Accounts with inactive owners when no rule could route them."""
    decision = run([], [a], ledger=LedgerView(daily_counts=counts), rules=rules)["a1"]
    assert decision.owner in allowed
    assert decision.rule == rule
    lines = [s.test for s in decision.trace if s.phase == "route" and s.rule == "fallback"]
    if fallback is None:
        assert lines == []
    else:
        assert len(lines) == 1 and fallback in lines[0], lines


def test_an_account_from_the_fallback_pool_is_decided_the_same_again() -> None:
    """Regression (20k crash benchmark): an account the fallback pool gave to an AE outside its territory was
    decided "no owner" when decided again while the territory stayed full."""
    a = account(country="FR", owner=rep("hugo.dubois"))
    first = run([], [a], ledger=LedgerView(daily_counts=EMEA_FULL))["a1"]
    assert first.rule == "fallback" and first.owner in AES - AE_EMEA
    assert first.owner is not None and first.team is not None and first.assigned_at is not None
    kept = Assignment("a1", first.owner, first.team, first.rule, first.assigned_at)
    again = run(
        [],
        [a],
        ledger=LedgerView(assignments={"a1": kept}, daily_counts=EMEA_FULL),
        now=NOW + timedelta(hours=1),
    )["a1"]
    assert (again.stage, again.score, again.owner, again.team) == (
        first.stage,
        first.score,
        first.owner,
        first.team,
    )
    assert again.assigned_at == first.assigned_at


def test_account_pool_shares_accounts_by_round_robin() -> None:
    accounts = [account(f"a{i}", country="BR", owner=rep("hugo.dubois")) for i in range(18)]
    result = decide([], accounts, RULES, LedgerView(), NOW)
    owners = Counter(d.owner for d in result.decisions)
    assert set(owners) == AES
    assert result.round_robin["account_executives"].assigned == dict(owners)


def test_a_traces_stored_rows_are_its_steps() -> None:
    """Trace.rows (what the ledger stores, built from the raw entries) says what Trace.steps says."""
    from syncd.cycle.decide import _plain

    persons = [person("p1", **HOT), person("p2"), person("p3", account="a1")]
    result = decide(persons, [account(country="FR", owner=rep("hugo.dubois"))], RULES, LedgerView(), NOW)
    assert len(result.decisions) == 4
    for d in result.decisions:
        rows = d.trace.rows(_plain)
        assert rows == [
            [s.phase, s.rule, s.matched, s.test, [[k, _plain(v)] for k, v in s.values]]
            for s in d.trace.steps()
        ]
        assert d.trace.rows(_plain) == rows  # also once the steps are built


def test_persons_decided_with_their_accounts_facts_as_with_their_accounts() -> None:
    """The cycle decides accounts first and hands their facts to the later calls deciding their persons: the
    persons come out as they do when decided in one call with their accounts."""
    accounts = [
        account("a1", account_type="Customer", country="US", owner=rep("daniel.cohen")),
        account("a2", account_type="Prospect", country="US", owner=rep("noah.brown"), open_opps=1),
        account("a3", country="BR"),
    ]
    persons = [
        person("p1", account="a1", sf="003A", obj="Contact", stage="opportunity", owner=rep("jack.miller")),
        person("p2", account="a2", sf="003B", obj="Contact", stage="sales_qualified", country="GB"),
        person("p3", account="a2", **HOT),
        person("p4", account="a3", stage="lead"),
        person("p5", stage="lead"),
    ]
    together = decide(persons, accounts, RULES, LedgerView(), NOW)
    first = decide([], accounts, RULES, LedgerView(), NOW)
    assert set(first.accounts) == {"a1", "a2", "a3"}
    assert first.accounts["a1"].owner == rep("daniel.cohen")
    assert first.accounts["a1"].fields["account.customer"] is True
    assert first.accounts["a2"].fields["account.open_opportunities"] == 1
    later = decide(persons, [], RULES, LedgerView(), NOW, account_facts=first.accounts)
    assert later.accounts == {}
    persons_only = {k: d for k, d in together.by_key().items() if d.kind == "person"}
    assert later.by_key() == persons_only
    # Without the facts the persons decide as if they had no account: the facts are what carries it.
    alone = decide(persons, [], RULES, LedgerView(), NOW).by_key()
    assert alone["p1"].owner != persons_only["p1"].owner
