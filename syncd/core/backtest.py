"""Backtest: replay an org's recorded history through a rule set, day by day, and measure what it did. Pure.

The ledger supplies the history as :class:`Day` batches (every person and account whose records changed that
day, as they stood at the day's end, in the order they changed); :func:`simulate` decides them with the
engine exactly as the cycle would, keeping its own sticky assignments, round-robin credits and daily caps as
the ledger would, and records for every day:

- each owner's new records and the records they hold (load);
- hand-offs (changes of owning team);
- SLA breaches: records in an SLA stage whose owner showed no activity within the policy's hours;
- records waiting in a queue, and records no rule could route.

Running the same history through the live rules and a candidate (``syncd backtest --rules DIR``) and setting
the two :class:`Outcome` side by side shows what the candidate would have done differently: per-rep load
over time, fairness per pool (max - min and the Gini coefficient of the assignments among its members), SLA
breaches, hand-offs, records left in queues or unrouted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from syncd.core.engine import decide
from syncd.core.rules.ruleset import RuleSet
from syncd.core.types import (
    AccountView,
    Assignment,
    Decision,
    LedgerView,
    PersonView,
    RepDirectory,
    RoundRobinState,
    is_queue,
)

__all__ = ["Day", "DayStats", "Outcome", "Start", "compare", "gini", "owners_over_time", "settle", "simulate"]


@dataclass(frozen=True, slots=True)
class Day:
    """What changed on one day: the accounts and persons to decide, as they stood at ``end``."""

    day: date
    end: datetime
    accounts: Sequence[AccountView] = ()
    persons: Sequence[PersonView] = ()


@dataclass
class DayStats:
    """One simulated day's figures."""

    day: date
    decided: int = 0
    assigned: Counter[str] = field(default_factory=Counter)  # new records per owner
    load: dict[str, int] = field(default_factory=dict)  # records held per owner at the day's end
    handoffs: int = 0
    sla_breaches: int = 0
    in_queues: int = 0
    unrouted: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "decided": self.decided,
            "assigned": dict(sorted(self.assigned.items())),
            "load": dict(sorted(self.load.items())),
            "handoffs": self.handoffs,
            "sla_breaches": self.sla_breaches,
            "in_queues": self.in_queues,
            "unrouted": self.unrouted,
        }


@dataclass
class Outcome:
    """What one rule set did over the replayed history."""

    digest: str
    days: list[DayStats] = field(default_factory=list)
    pool_assignments: dict[str, Counter[str]] = field(default_factory=dict)
    pool_members: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def assigned(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for d in self.days:
            total.update(d.assigned)
        return total

    @property
    def handoffs(self) -> int:
        return sum(d.handoffs for d in self.days)

    @property
    def sla_breaches(self) -> int:
        return sum(d.sla_breaches for d in self.days)

    @property
    def final_load(self) -> dict[str, int]:
        return dict(self.days[-1].load) if self.days else {}

    @property
    def in_queues(self) -> int:
        return self.days[-1].in_queues if self.days else 0

    @property
    def unrouted(self) -> int:
        return self.days[-1].unrouted if self.days else 0

    def fairness(self) -> dict[str, dict[str, float]]:
        """Per pool: assignments per member over the window, their spread (max - min) and Gini."""
        out: dict[str, dict[str, float]] = {}
        for pool, members in sorted(self.pool_members.items()):
            counts = [self.pool_assignments.get(pool, Counter()).get(m, 0) for m in members]
            if not any(counts):
                continue
            out[pool] = {"spread": float(max(counts) - min(counts)), "gini": round(gini(counts), 4)}
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "assigned": sum(self.assigned.values()),
            "handoffs": self.handoffs,
            "sla_breaches": self.sla_breaches,
            "in_queues_at_end": self.in_queues,
            "unrouted_at_end": self.unrouted,
            "fairness": self.fairness(),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "days": [d.to_json() for d in self.days]}


def gini(values: Sequence[float]) -> float:
    """The Gini coefficient of non-negative values: 0 when all are equal, towards 1 when one has all."""
    xs = sorted(v for v in values if v >= 0)
    n = len(xs)
    total = sum(xs)
    if n == 0 or total == 0:
        return 0.0
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    return (2 * weighted) / (n * total) - (n + 1) / n


@dataclass(frozen=True)
class Start:
    """Where a replay starts: the population that stood before the window, decided once at its start."""

    view: LedgerView
    owners: Mapping[str, str | None]
    decided: int = 0
    assigned: Counter[str] = field(default_factory=Counter)


def settle(
    accounts: Sequence[AccountView],
    persons: Sequence[PersonView],
    rules: RuleSet,
    at: datetime,
    *,
    directory: RepDirectory | None = None,
    chunk: int = 5000,
    advance: Callable[[int], None] | None = None,
) -> Start:
    """Decides the starting population (accounts, then persons, ``chunk`` at a time) once at ``at``, as a
    first sync would: what existed before ``at`` is the backlog, routed whatever the daily caps (unless the
    policy says the backlog counts). The result starts :func:`simulate`."""
    state = _State.from_view(LedgerView(backlog_before=at))
    decided = 0
    assigned: Counter[str] = Counter()
    batches: list[tuple[Sequence[PersonView], Sequence[AccountView]]] = [
        ((), accounts[i : i + chunk]) for i in range(0, len(accounts), chunk)
    ]
    batches += [(persons[i : i + chunk], ()) for i in range(0, len(persons), chunk)]
    for batch_persons, batch_accounts in batches:
        result = decide(
            list(batch_persons), list(batch_accounts), rules, state.view(at.date()), at, directory=directory
        )
        for d in result.decisions:
            decided += 1
            state.apply(d)
            if d.owner is not None and not is_queue(d.owner):
                assigned[d.owner] += 1
        state.round_robin.update(result.round_robin)
        for rep, n in result.assigned_today.items():
            state.counts[rep] = state.counts.get(rep, 0) + n
        if advance is not None:
            advance(len(batch_persons) + len(batch_accounts))
    view = LedgerView(
        assignments=state.assignments,
        round_robin=state.round_robin,
        holds=state.holds,
        backlog_before=at,
    )
    return Start(view, dict(state.owner), decided, assigned)


def simulate(
    history: Iterable[Day],
    rules: RuleSet,
    *,
    start: LedgerView | Start | None = None,
    directory: RepDirectory | None = None,
) -> Outcome:
    """Replays ``history`` (days in order) through ``rules`` from the state ``start`` (see the module
    docstring). Deterministic: the same history and rules give the same outcome."""
    if isinstance(start, Start):
        state = _State.from_view(start.view)
        state.owner.update(start.owners)
    else:
        state = _State.from_view(start or LedgerView())
    outcome = Outcome(rules.digest)
    # Fairness is measured among the members who could take records: active and not out of office.
    reps = rules.roster.reps
    outcome.pool_members = {
        name: tuple(m for m in pool.members if m in reps and reps[m].active and not reps[m].out_of_office)
        for name, pool in rules.routing.pools.items()
    }
    rule_pool = {r.name: r.pool for r in rules.routing.rules if r.pool}
    sla_window = timedelta(hours=rules.policy.sla_hours)
    for day in history:
        stats = DayStats(day.day)
        result = decide(
            list(day.persons), list(day.accounts), rules, state.view(day.day), day.end, directory=directory
        )
        activity = rules.policy.sla_activity_field
        for person in day.persons:
            if activity:
                state.activity[person.key] = person.fields.get(activity)
        for d in result.decisions:
            stats.decided += 1
            if d.handoff is not None:
                stats.handoffs += 1
            before = state.owner.get(d.key)
            state.apply(d)
            if d.owner is not None and d.owner != before and not is_queue(d.owner):
                stats.assigned[d.owner] += 1
                pool = rule_pool.get(d.rule)
                if pool is not None:
                    outcome.pool_assignments.setdefault(pool, Counter())[d.owner] += 1
            if d.kind == "person" and d.stage in rules.policy.sla_stages and d.assigned_at is not None:
                state.sla[d.key] = d.assigned_at + sla_window
            else:
                state.sla.pop(d.key, None)
        state.round_robin.update(result.round_robin)
        for rep, n in result.assigned_today.items():
            state.counts[rep] = state.counts.get(rep, 0) + n
        stats.sla_breaches = state.breaches(day.end)
        stats.load = dict(Counter(o for o in state.owner.values() if o is not None and not is_queue(o)))
        stats.in_queues = sum(1 for o in state.owner.values() if o is not None and is_queue(o))
        stats.unrouted = sum(1 for o in state.owner.values() if o is None)
        outcome.days.append(stats)
    return outcome


@dataclass
class _State:
    """The ledger as the simulation keeps it: sticky assignments, owners, round robin, day counts, SLAs."""

    assignments: dict[str, Assignment]
    owner: dict[str, str | None]
    round_robin: dict[str, RoundRobinState]
    holds: dict[str, datetime]
    counts: dict[str, int] = field(default_factory=dict)
    counts_day: date | None = None
    sla: dict[str, datetime] = field(default_factory=dict)
    activity: dict[str, Any] = field(default_factory=dict)
    breached: set[str] = field(default_factory=set)
    backlog_before: datetime | None = None

    @classmethod
    def from_view(cls, view: LedgerView) -> _State:
        return cls(
            assignments=dict(view.assignments),
            owner={k: a.owner for k, a in view.assignments.items()},
            round_robin=dict(view.round_robin),
            holds=dict(view.holds),
            backlog_before=view.backlog_before,
        )

    def view(self, day: date) -> LedgerView:
        if self.counts_day != day:
            self.counts, self.counts_day = {}, day
        return LedgerView(
            assignments=self.assignments,
            round_robin=self.round_robin,
            daily_counts=dict(self.counts),
            holds=self.holds,
            backlog_before=self.backlog_before,
        )

    def apply(self, d: Decision) -> None:
        if d.owner is not None:
            self.owner[d.key] = d.owner
        else:
            self.owner.setdefault(d.key, None)
        assignment = d.assignment()
        if assignment is not None:
            self.assignments[d.key] = assignment
        if d.hold_until is not None:
            self.holds[d.key] = d.hold_until

    def breaches(self, end: datetime) -> int:
        """New SLA breaches by ``end``: deadlines passed with no activity after the assignment."""
        found = 0
        for key, deadline in list(self.sla.items()):
            if key in self.breached or deadline > end:
                continue
            assignment = self.assignments.get(key)
            touched = self.activity.get(key)
            if (
                assignment is not None
                and isinstance(touched, datetime)
                and assignment.assigned_at < touched <= deadline
            ):
                continue
            self.breached.add(key)
            found += 1
        return found


def compare(live: Outcome, candidate: Outcome) -> dict[str, Any]:
    """The two outcomes side by side: totals, and per owner the new records under each."""
    owners = sorted(set(live.assigned) | set(candidate.assigned))
    return {
        "live": live.summary(),
        "candidate": candidate.summary(),
        "owners": [
            {
                "owner": o,
                "live": live.assigned.get(o, 0),
                "candidate": candidate.assigned.get(o, 0),
                "difference": candidate.assigned.get(o, 0) - live.assigned.get(o, 0),
            }
            for o in owners
        ],
    }


def owners_over_time(outcome: Outcome, owners: Iterable[str]) -> Mapping[str, list[int]]:
    """Each owner's load at the end of every day (for the charts)."""
    return {o: [d.load.get(o, 0) for d in outcome.days] for o in owners}
