"""Properties of the decision engine, checked on generated people, ledgers and rosters (hypothesis)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine_helpers import INACTIVE, NOW, OUT_OF_OFFICE, RULES, account, person, with_pool
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.engine import decide
from syncd.core.types import Assignment, Decision, LedgerView, Override, PersonView, Rep, RepDirectory

REPS = sorted(RULES.roster.reps)
STAGES = [None, *RULES.lifecycle.order, "evangelist"]
COUNTRIES = ["US", "CA", "MX", "GB", "DE", "FR", "JP", "AU", "IN", "SG", "BR", None]

fields_strategy = st.fixed_dictionaries(
    {},
    optional={
        "stage": st.sampled_from(STAGES),
        "country": st.sampled_from(COUNTRIES),
        "title": st.sampled_from(["VP Sales", "Engineer", "Student", "Head of IT", ""]),
        "employees": st.integers(min_value=0, max_value=20000),
        "industry": st.sampled_from(["Software", "Retail", "Banking"]),
        "conversions": st.integers(min_value=0, max_value=6),
        "email_clicks": st.integers(min_value=0, max_value=10),
        "page_views": st.integers(min_value=0, max_value=40),
        "last_activity": st.integers(min_value=0, max_value=400).map(lambda d: NOW - timedelta(days=d)),
        "last_engagement": st.integers(min_value=0, max_value=400).map(lambda d: NOW - timedelta(days=d)),
        "lead_status": st.sampled_from(["Nurturing", "Closed - Not Converted", "Working - Contacted"]),
        "owner": st.sampled_from([*REPS, "queue:Unassigned Leads", "gone@northwind.example"]),
    },
)


@st.composite
def people(draw: st.DrawFn) -> list[PersonView]:
    n = draw(st.integers(min_value=1, max_value=12))
    out = []
    for i in range(n):
        fields = draw(fields_strategy)
        linked = draw(st.booleans())
        out.append(
            person(
                f"p{i}",
                account=draw(st.sampled_from([None, "a1", "a2"])),
                sf=f"00Q{i}" if linked else None,
                obj=draw(st.sampled_from(["Lead", "Contact"])) if linked else None,
                **fields,
            )
        )
    return out


@st.composite
def ledgers(draw: st.DrawFn) -> LedgerView:
    assignments = {}
    overrides = {}
    for i in range(draw(st.integers(min_value=0, max_value=6))):
        key = f"p{i}"
        owner = draw(st.sampled_from(REPS))
        team = RULES.roster.reps[owner].team
        days = draw(st.integers(min_value=0, max_value=60))
        assignments[key] = Assignment(key, owner, team, "x", NOW - timedelta(days=days))
        if draw(st.booleans()):
            overrides[key] = Override(key, draw(st.sampled_from(REPS)), NOW - timedelta(days=days))
    counts = draw(st.dictionaries(st.sampled_from(REPS), st.integers(min_value=0, max_value=45), max_size=6))
    return LedgerView(assignments=assignments, overrides=overrides, daily_counts=counts)


ACCOUNTS = [
    account("a1", account_type="Customer", country="US", owner="rachel.green@northwind.example"),
    account("a2", country="DE", open_opps=1),
]


def rows(decisions: tuple[Decision, ...]) -> list[dict[str, Any]]:
    # Everything but the trace object itself, whose steps are compared as plain tuples.
    return [{**d._asdict(), "trace": [tuple(s) for s in d.trace]} for d in decisions]


@settings(max_examples=60, deadline=None)
@given(people(), ledgers())
def test_same_input_gives_the_same_decisions(persons: list[PersonView], ledger: LedgerView) -> None:
    first = decide(persons, ACCOUNTS, RULES, ledger, NOW)
    second = decide(persons, ACCOUNTS, RULES, ledger, NOW)
    assert rows(first.decisions) == rows(second.decisions)
    assert first.round_robin == second.round_robin
    assert first.assigned_today == second.assigned_today


@settings(max_examples=60, deadline=None)
@given(people(), ledgers(), st.sets(st.sampled_from(REPS), max_size=8))
def test_inactive_or_unavailable_rep_is_never_chosen(
    persons: list[PersonView], ledger: LedgerView, deactivated: set[str]
) -> None:
    directory = RepDirectory(
        [Rep(k, salesforce_id=f"005{i}", active=k not in deactivated) for i, k in enumerate(REPS)]
    )
    result = decide(persons, ACCOUNTS, RULES, ledger, NOW, directory=directory)
    inactive = INACTIVE | deactivated
    for d in result.decisions:
        assert d.owner not in inactive, d.explain()
        assert not set(d.influencers) & inactive
        if d.owner_changed and d.rule not in ("override", "account"):
            # Newly routed: never to someone out of office either.
            assert d.owner not in OUT_OF_OFFICE, d.explain()


@settings(max_examples=60, deadline=None)
@given(people(), ledgers())
def test_no_decision_without_a_trace(persons: list[PersonView], ledger: LedgerView) -> None:
    result = decide(persons, ACCOUNTS, RULES, ledger, NOW)
    assert len(result.decisions) == len(persons) + len(ACCOUNTS)
    for d in result.decisions:
        assert len(d.trace) > 0
        assert d.explain().count("\n") == len(d.trace)


def mqls(n: int) -> list[PersonView]:
    hot = {
        "title": "VP Sales",
        "employees": 6000,
        "conversions": 2,
        "last_engagement": NOW,
        "last_activity": NOW,
    }
    return [person(f"p{i}", **hot) for i in range(n)]


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=9), st.integers(min_value=0, max_value=120), st.integers(1, 4))
def test_equal_weights_share_leads_evenly(k: int, n: int, batches: int) -> None:
    reps = {f"rep{i}@northwind.example": 1 for i in range(k)}
    rules = with_pool(RULES, "sdr", reps)
    counts = dict.fromkeys(reps, 0)
    ledger = LedgerView()
    persons = mqls(n)
    size = max(1, -(-n // batches))
    for start in range(0, n, size):
        result = decide(persons[start : start + size], [], rules, ledger, NOW)
        for d in result.decisions:
            counts[d.owner] += 1  # type: ignore[index]
        ledger = LedgerView(round_robin={**ledger.round_robin, **result.round_robin})
    assert sum(counts.values()) == n
    assert max(counts.values()) - min(counts.values()) <= 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=6),
    st.integers(min_value=0, max_value=150),
)
def test_weights_are_honoured_within_one(weights: list[int], n: int) -> None:
    reps = {f"rep{i}@northwind.example": w for i, w in enumerate(weights)}
    rules = with_pool(RULES, "sdr", reps)
    result = decide(mqls(n), [], rules, LedgerView(), NOW)
    counts = dict.fromkeys(reps, 0)
    for d in result.decisions:
        counts[d.owner] += 1  # type: ignore[index]
    total = sum(weights)
    for key, weight in reps.items():
        assert abs(counts[key] - n * weight / total) <= 1, (counts, weights)
