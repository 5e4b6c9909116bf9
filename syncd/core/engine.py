"""The decision engine: linked people and accounts + rules + ledger view + now -> decisions. Pure.

No I/O, no clock, no client: everything comes in as values and goes out as values, so the same input always
gives the same decisions (records are decided in the order given: round robin depends on it).

For each account (first, since people follow their accounts): customer or not (policy ``[accounts]``),
owning team, owner. For each person: score (scoring.toml), stage (lifecycle.toml), owning team, owner
(policy + routing.toml), influencers, hand-off. Every rule tried lands in the decision's trace.

Owner, in order of precedence:

1. a human's manual change (``LedgerView.overrides``) within the policy's period, unless the rep is
   inactive or a hand-off moved the record to another team since;
2. account match (routing ``account_match`` stages): the account's owner when in the owning team;
3. the sticky owner (``LedgerView.assignments``, else the systems' current owner), unless the rep is
   inactive or not on the roster, is in another team (hand-off), is outside the pool of a matching
   ``reassign`` rule, or the SLA expired without activity; when the owner *left*, their heir first: a
   person follows their account's owner, else the roster's ``successor`` (both when in the owning team);
4. the owning team's routing rules, first match wins: a queue, or a pool's weighted round robin over
   active, available reps under their daily cap (an overflow queue when none can take it); records
   created before the first sync (the backlog) are routed whatever the caps and not counted against
   them, unless policy ``[caps] backlog = "counts"``;
5. the fallback queue; for an account (which cannot wait in a queue) whose owner left, the fallback
   account pool, over its active, available members whatever their daily caps; any other account keeps
   its owner.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from itertools import compress
from typing import Any

from syncd.core.rules.conditions import Condition
from syncd.core.rules.routing import Pool, RoutingRule
from syncd.core.rules.ruleset import RuleSet
from syncd.core.teams import team_heirs, tier_of
from syncd.core.types import (
    AccountFacts,
    AccountView,
    Assignment,
    Decision,
    EngineResult,
    Handoff,
    LedgerView,
    PersonView,
    RepDirectory,
    RoundRobinState,
    Trace,
    TraceEntry,
    TraceGroup,
    is_queue,
    queue_owner,
)

_DAY_SECONDS = 86400.0
_LN2 = math.log(2)
_NUMBER = (int, float)


def decide(
    persons: Iterable[PersonView],
    accounts: Iterable[AccountView],
    rules: RuleSet,
    ledger_view: LedgerView,
    now: datetime,
    *,
    directory: RepDirectory | None = None,
    account_facts: Mapping[str, AccountFacts] | None = None,
) -> EngineResult:
    """Decides stage, score, team, owner and influencers for every account and person given.

    ``now`` must be timezone-aware. ``directory`` (the reps as the systems list them) makes reps that are
    deactivated or archived in either system, or unknown to both, count as inactive; without it the roster
    alone says who is active. Accounts are decided first; a person's account fields (``account.<field>``)
    and account owner come from ``accounts`` (or, for the owner, the ledger's assignment of the account).
    ``account_facts`` are those of accounts decided by an earlier call with the same rules (its result's
    ``accounts``): their persons follow them without deciding them again.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # The engine makes many small containers and no reference cycles, so the cyclic collector has nothing
    # to find here; pausing it for the call spares it rescanning the caller's (often large) heap again and
    # again, which otherwise costs about half the engine's time. Reference counting frees memory as usual.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        run = _Run(rules, ledger_view, now, directory)
        for key, facts in (account_facts or {}).items():
            run.account_ctx[key] = facts.fields
            run.account_owner[key] = (facts.owner, facts.team)
        decisions: list[Decision] = [run.decide_account(a) for a in accounts]
        decided = {d.key: AccountFacts(run.account_ctx[d.key], *run.account_owner[d.key]) for d in decisions}
        decisions.extend(run.decide_person(p) for p in persons)
        return EngineResult(tuple(decisions), run.round_robin_changes(), dict(run.assigned_today), decided)
    finally:
        if paused:
            gc.enable()


def _person_conditions(rules: RuleSet) -> Iterator[Condition]:
    for stage in rules.lifecycle.stages:
        if stage.entry is not None:
            yield stage.entry
    for move in rules.lifecycle.backward:
        yield move.when
    for fit in rules.scoring.fit:
        yield fit.when
    for engagement in rules.scoring.engagement:
        if engagement.when is not None:
            yield engagement.when
    for rule in rules.routing.rules:
        if rule.persons:
            yield rule.when


class _Run:
    """The state of one ``decide`` call: rule lookups, availability, round-robin credits, day counts."""

    def __init__(
        self, rules: RuleSet, ledger: LedgerView, now: datetime, directory: RepDirectory | None
    ) -> None:
        self.rules = rules
        self.ledger = ledger
        self.now = now
        self.lifecycle = rules.lifecycle
        self.scoring = rules.scoring
        self.routing = rules.routing
        self.policy = rules.policy
        self.roster = rules.roster.reps
        self.stage_by_name = {s.name: s for s in rules.lifecycle.stages}
        self.first_stage = rules.lifecycle.stages[0]
        self.qualifies = self.stage_by_name.get(rules.scoring.qualifies)
        self.entry_stages = tuple(s for s in rules.lifecycle.stages if s.entry is not None)
        # Only the account fields some person condition reads are copied into each person's context.
        used: set[str] = set()
        for cond in _person_conditions(rules):
            used.update(cond.fields)
        self.account_fields = tuple(
            (f.removeprefix("account."), f) for f in sorted(used) if f.startswith("account.")
        )
        self.fit_tests = tuple(r.when.test for r in rules.scoring.fit)
        self.fit_points = tuple(r.points for r in rules.scoring.fit)
        self.fit_meta = tuple(
            (r.name, f"{r.points:+d} if {r.when.text}", r.when.fields) for r in rules.scoring.fit
        )
        # Decay factors are exp(rate * age in days), rate = -ln 2 / half-life.
        self.engagement_rules = tuple(
            (
                r.when,
                r.field,
                r.points,
                r.cap,
                -_LN2 / r.half_life_days if r.half_life_days is not None and r.date_field else None,
                r.date_field,
            )
            for r in rules.scoring.engagement
        )
        self.engagement_meta = tuple(
            (
                r.name,
                (f"{r.points:g} per {r.field}" if r.field else f"{r.points:+g}")
                + (f" if {r.when.text}" if r.when is not None else "")
                + (f", cap {r.cap:g}" if r.cap is not None else "")
                + (f", half-life {r.half_life_days:g} days since {r.date_field}" if r.half_life_days else ""),
                tuple(
                    dict.fromkeys(
                        (
                            *((r.field,) if r.field else ()),
                            *(r.when.fields if r.when else ()),
                            *((r.date_field,) if r.date_field else ()),
                        )
                    )
                ),
            )
            for r in rules.scoring.engagement
        )
        self.decided_entry: dict[str, TraceEntry] = {
            s.name: ("stage", "decided", True, f"{s.name} (owned by {s.team})", (), ())
            for s in rules.lifecycle.stages
        }
        self.threshold_label = f"threshold: {self.qualifies.name}" if self.qualifies else ""
        self.threshold_text = f"score >= {rules.scoring.threshold}"
        self.override_window = timedelta(days=rules.policy.override_days)
        self.sla_window = timedelta(hours=rules.policy.sla_hours)
        # Why a rep cannot take new records right now ("" when they can); constant during one call.
        self.inactive: dict[str, str] = {}
        self.unavailable: dict[str, str] = {}
        for key, rep in self.roster.items():
            if not rep.active:
                self.inactive[key] = "inactive (roster)"
            elif directory is not None and key not in directory.reps:
                self.inactive[key] = "unknown to both systems"
            elif directory is not None and not directory.is_active(key):
                self.inactive[key] = "deactivated in a system"
            else:
                ok, why = rep.available(now)
                if not ok:
                    self.unavailable[key] = why
        self.assignments = ledger.assignments
        self.overrides = ledger.overrides
        self.holds = ledger.holds
        self.backlog_before = ledger.backlog_before if rules.policy.backlog_exempt else None
        self.counts: dict[str, int] = dict(ledger.daily_counts)
        self.assigned_today: dict[str, int] = {}
        self.credits: dict[str, dict[str, int]] = {}
        self.assigned: dict[str, dict[str, int]] = {}
        self.touched_pools: set[str] = set()
        self.static_skip_text: dict[str, str] = {}
        self.pool_cache: dict[str, tuple[tuple[tuple[str, int, int | None], ...], tuple[str, ...]]] = {}
        self.account_ctx: dict[str, Mapping[str, Any]] = {}
        self.account_owner: dict[str, tuple[str | None, str | None]] = {}

    # ----------------------------------------------------------------------------------- reps

    def why_not_owner(self, owner: str) -> str:
        """Why a sticky owner cannot keep a record ("" when they can)."""
        if is_queue(owner):
            return "a queue is no owner to keep"
        if owner not in self.roster:
            return "not on the roster"
        return self.inactive.get(owner, "")

    def pool_members(self, pool: Pool) -> tuple[tuple[tuple[str, int, int | None], ...], tuple[str, ...]]:
        """The pool's members who may take records during this call (key, weight, cap), and who may not."""
        found = self.pool_cache.get(pool.name)
        if found is None:
            members = []
            skipped = []
            for member in pool.members:
                why = self.inactive.get(member) or self.unavailable.get(member)
                if why:
                    skipped.append(f"{member}: {why}")
                else:
                    rep = self.roster[member]
                    members.append((member, rep.weight, rep.daily_cap))
            found = (tuple(members), tuple(skipped))
            self.pool_cache[pool.name] = found
            self.static_skip_text[pool.name] = "; ".join(skipped)
        return found

    def pick(
        self,
        pool: Pool,
        exclude: str | None,
        trace: list[TraceEntry | TraceGroup],
        capped: bool = True,
        counted: bool = True,
    ) -> str | None:
        """Smooth weighted round robin over the pool's members who can take a record now.

        Each eligible member earns its weight in credit; the richest (first in pool order on a tie) gets
        the record and pays the total weight of the eligible members. Members who cannot take records earn
        nothing meanwhile, so a rep back from leave does not receive a burst of catch-up assignments.
        ``capped=False`` lets members over their daily cap take it (the record is still counted);
        ``counted=False`` (the first sync's backlog, policy ``[caps]``) also leaves the day's counts alone.
        """
        credits = self.credits.get(pool.name)
        if credits is None:
            state = self.ledger.round_robin.get(pool.name)
            credits = dict(state.credits) if state else {}
            self.credits[pool.name] = credits
            self.assigned[pool.name] = dict(state.assigned) if state else {}
        members, static_skips = self.pool_members(pool)
        counts = self.counts
        skipped: list[str] | None = None
        total = 0
        best = ""
        best_credit = 0
        eligible = []
        for member, weight, cap in members:
            if member == exclude or (capped and cap is not None and counts.get(member, 0) >= cap):
                if skipped is None:
                    skipped = []
                skipped.append(
                    f"{member}: SLA expired with them"
                    if member == exclude
                    else f"{member}: daily cap {cap} reached"
                )
                continue
            eligible.append((member, weight))
            total += weight
        for member, weight in eligible:
            credit = credits.get(member, 0) + weight
            credits[member] = credit
            if not best or credit > best_credit:
                best, best_credit = member, credit
        why_skipped = "; ".join((*static_skips, *skipped)) if skipped else self.static_skip_text[pool.name]
        if not best:
            trace.append(
                ("route", "pool " + pool.name, False, "nobody can take it", (), (("skipped", why_skipped),))
            )
            return None
        credits[best] -= total
        assigned = self.assigned[pool.name]
        assigned[best] = assigned.get(best, 0) + 1
        if counted:
            counts[best] = counts.get(best, 0) + 1
            self.assigned_today[best] = self.assigned_today.get(best, 0) + 1
        self.touched_pools.add(pool.name)
        values = (("chose", best), ("skipped", why_skipped)) if why_skipped else (("chose", best),)
        trace.append(("route", "pool " + pool.name, True, "weighted round robin", (), values))
        return best

    def round_robin_changes(self) -> dict[str, RoundRobinState]:
        return {
            name: RoundRobinState(name, dict(self.credits[name]), dict(self.assigned[name]))
            for name in sorted(self.touched_pools)
        }

    # ----------------------------------------------------------------------------------- routing

    def matching_rule(
        self, rules: tuple[RoutingRule, ...], ctx: Mapping[str, Any], trace: list[TraceEntry | TraceGroup]
    ) -> RoutingRule | None:
        for rule in rules:
            matched = rule.when.test(ctx)
            trace.append(("route", rule.name, matched, rule.when.text, rule.when.fields, ()))
            if matched:
                return rule
        return None

    def route(
        self,
        rule: RoutingRule | None,
        exclude: str | None,
        for_accounts: bool,
        trace: list[TraceEntry | TraceGroup],
        owner_left: str = "",
        backlog: bool = False,
    ) -> tuple[str | None, str]:
        """The owner the routing gives (rule already chosen), and the name of what chose it.

        ``owner_left`` says why the record's owner cannot keep it because they left (inactive, unknown):
        only such an account goes to the fallback account pool.
        """
        if rule is not None:
            if rule.queue is not None:
                return queue_owner(rule.queue), rule.name
            pool = self.routing.pools[rule.pool or ""]
            if backlog:
                trace.append(
                    ("route", "backlog", True, "created before the first sync: daily caps aside", (), ())
                )
            rep = self.pick(pool, exclude, trace, capped=not backlog, counted=not backlog)
            if rep is not None:
                return rep, rule.name
            if rule.overflow_queue is not None and not for_accounts:
                trace.append(("route", "overflow", True, f"queue {rule.overflow_queue}", (), ()))
                return queue_owner(rule.overflow_queue), rule.name
        if for_accounts:
            return self.route_account_fallback(owner_left, trace)
        fallback = self.routing.fallback_queue
        if fallback is None:
            trace.append(("route", "fallback", False, "no fallback queue: owner unchanged", (), ()))
            return None, "unrouted"
        trace.append(("route", "fallback", True, f"queue {fallback}", (), ()))
        return queue_owner(fallback), "fallback"

    def route_account_fallback(
        self, owner_left: str, trace: list[TraceEntry | TraceGroup]
    ) -> tuple[str | None, str]:
        """An account no rule routes: the fallback account pool when its owner left, else no change."""
        name = self.routing.fallback_account_pool
        if not owner_left or name is None:
            why = "no fallback account pool" if owner_left else "its owner has not left"
            trace.append(
                (
                    "route",
                    "fallback",
                    False,
                    f"accounts cannot wait in a queue, {why}: owner unchanged",
                    (),
                    (),
                )
            )
            return None, "unrouted"
        trace.append(
            (
                "route",
                "fallback",
                True,
                f"account pool {name}, daily caps aside: its owner cannot keep it ({owner_left})",
                (),
                (),
            )
        )
        rep = self.pick(self.routing.pools[name], None, trace, capped=False)
        return (rep, "fallback") if rep is not None else (None, "unrouted")

    def choose_owner(
        self,
        key: str,
        team: str,
        stage: str | None,
        ctx: Mapping[str, Any],
        current_owner: str | None,
        matched_owner: str | None,
        handoff: Handoff | None,
        for_accounts: bool,
        trace: list[TraceEntry | TraceGroup],
        account_owner: str | None = None,
        team_heirs: tuple[str, ...] = (),
    ) -> tuple[str | None, str, datetime | None, Assignment | None, str | None]:
        """(owner, rule, assigned_at, previous assignment, previous owner) for one record.

        ``account_owner`` is the owner of a person's account, which the person follows when their own
        owner left; ``team_heirs`` the members of an account's team who succeed its owner first.
        """
        now = self.now
        prev = self.assignments.get(key)
        base_owner = prev.owner if prev is not None else current_owner
        base_rule = prev.rule if prev is not None else "current owner"

        override = self.overrides.get(key)
        if override is not None and self.policy.override_days > 0:
            until = override.seen_at + self.override_window
            why = ""
            if now >= until:
                why = f"expired {until.isoformat()}"
            elif not is_queue(override.owner) and self.why_not_owner(override.owner):
                why = f"{override.owner} {self.why_not_owner(override.owner)}"
            elif handoff is not None and prev is not None and prev.assigned_at > override.seen_at:
                why = "a hand-off came after it"
            elif (
                handoff is not None
                and not is_queue(override.owner)
                and self.roster[override.owner].team != team
            ):
                why = f"hand-off to {team}"
            if not why:
                trace.append(
                    (
                        "owner",
                        "manual override",
                        True,
                        f"set by {override.by or 'a user'}, kept until {until.isoformat()}",
                        (),
                        (),
                    )
                )
                assigned_at = (
                    prev.assigned_at
                    if prev is not None and prev.owner == override.owner
                    else override.seen_at
                )
                return override.owner, "override", assigned_at, prev, base_owner
            trace.append(("owner", "manual override", False, why, (), ()))

        if matched_owner is not None:
            assigned_at = prev.assigned_at if prev is not None and prev.owner == matched_owner else now
            return matched_owner, "account", assigned_at, prev, base_owner

        rules = self.routing.rules_for(team, "accounts" if for_accounts else "persons")
        rule: RoutingRule | None = None
        rule_done = False
        exclude: str | None = None
        owner_left = self.why_not_owner(base_owner) if base_owner is not None else ""
        if self.policy.sticky and base_owner is not None:
            why = owner_left
            # A queue did not leave: a record waiting in one is routed again, never handed to an heir (else
            # deciding it again, after a crash or on the daily re-score, would not repeat the decision that
            # put it there).
            if why and not is_queue(base_owner):
                heirs = team_heirs
                if heirs:
                    # A team member takes over only where the routing rule that re-assigns would keep them.
                    rule = self.matching_rule(rules, ctx, trace)
                    rule_done = True
                    if rule is not None and rule.reassign and rule.pool:
                        pool = self.routing.pools[rule.pool].members
                        heirs = tuple(h for h in heirs if h in pool)
                heir, how = self.heir(base_owner, why, team, account_owner, trace, heirs)
                if heir is not None:
                    return heir, how, now, prev, base_owner
            if not why:
                rep_team = self.roster[base_owner].team
                if rep_team != team:
                    why = f"hand-off: {base_owner} is in {rep_team}, the record now belongs to {team}"
            if (
                not why
                and prev is not None
                and stage in self.policy.sla_stages
                and self.policy.sla_activity_field
            ):
                deadline = prev.assigned_at + self.sla_window
                activity = ctx.get(self.policy.sla_activity_field)
                touched = isinstance(activity, datetime) and activity > prev.assigned_at
                if now >= deadline and not touched:
                    why = f"SLA {self.policy.sla_hours:g}h expired {deadline.isoformat()} without activity"
                    exclude = base_owner
            if not why:
                rule = self.matching_rule(rules, ctx, trace)
                rule_done = True
                if rule is not None and rule.reassign:
                    members = self.routing.pools[rule.pool].members if rule.pool else ()
                    if base_owner not in members:
                        why = f're-assigning rule "{rule.name}" matches and {base_owner} is not in its pool'
            if not why:
                trace.append(("owner", "sticky", True, f"{base_owner} keeps it ({base_rule})", (), ()))
                assigned_at = prev.assigned_at if prev is not None else now
                return base_owner, prev.rule if prev is not None else "sticky", assigned_at, prev, base_owner
            trace.append(("owner", "sticky", False, f"{base_owner}: {why}", (), ()))
        if not rule_done:
            rule = self.matching_rule(rules, ctx, trace)
        owner, chosen_by = self.route(
            rule, exclude, for_accounts, trace, owner_left, backlog=self.is_backlog(ctx)
        )
        if owner is None and for_accounts and prev is not None and not owner_left:
            # An account cannot wait in a queue: the owner syncd assigned it keeps it, and the decision says
            # so (rather than "no owner"), so deciding it again, e.g. after a crash or on the daily re-score,
            # repeats the same decision.
            return prev.owner, chosen_by, prev.assigned_at, prev, base_owner
        if owner is None:
            return None, chosen_by, None, prev, base_owner
        assigned_at = prev.assigned_at if prev is not None and prev.owner == owner else now
        return owner, chosen_by, assigned_at, prev, base_owner

    def is_backlog(self, ctx: Mapping[str, Any]) -> bool:
        """Whether the record was created before syncd's first sync (and the policy exempts the backlog)."""
        created = ctx.get("created_at")
        return (
            self.backlog_before is not None
            and isinstance(created, datetime)
            and created < self.backlog_before
        )

    def heir(
        self,
        left: str,
        why: str,
        team: str,
        account_owner: str | None,
        trace: list[TraceEntry | TraceGroup],
        team_heirs: tuple[str, ...] = (),
    ) -> tuple[str | None, str]:
        """Who takes over from an owner who left, before routing is asked: an account's team member in the
        ``[successor]`` roles of teams.toml (customer: account manager; prospect: account executive); a
        person follows their account's owner; else the roster's ``successor`` (followed down the chain
        while each one left too), when they are in the owning team. (None, "") when nobody does."""
        for heir in team_heirs:
            rep = self.roster.get(heir)
            if heir != left and rep is not None and rep.team == team and not self.why_not_owner(heir):
                trace.append(
                    ("owner", "team successor", True, f"{left} {why}: {heir} of the account's team", (), ())
                )
                return heir, "team successor"
        if account_owner is not None and not self.why_not_owner(account_owner):
            rep = self.roster.get(account_owner)
            if rep is not None and rep.team == team:
                trace.append(
                    (
                        "owner",
                        "follows account",
                        True,
                        f"{left} {why}: the account's owner {account_owner}",
                        (),
                        (),
                    )
                )
                return account_owner, "account"
        seen = {left}
        current = self.roster.get(left)
        while current is not None and current.successor is not None and current.successor not in seen:
            successor = current.successor
            seen.add(successor)
            candidate = self.roster.get(successor)
            if candidate is None:
                break
            if not self.why_not_owner(successor) and candidate.team == team:
                trace.append(
                    ("owner", "successor", True, f"{left} {why}: {successor} succeeds them (roster)", (), ())
                )
                return successor, "successor"
            current = candidate
        return None, ""

    def influencers(
        self, prev: Assignment | None, base_owner: str | None, owner: str | None, team: str
    ) -> tuple[str, ...]:
        if (prev is None or not prev.influencers) and (base_owner is None or base_owner == owner):
            return ()
        found = list(prev.influencers) if prev is not None else []
        if (
            base_owner is not None
            and base_owner != owner
            and team in self.policy.keep_previous_owner_for
            and not is_queue(base_owner)
            and base_owner in self.roster
            and self.roster[base_owner].team != team
        ):
            found.append(base_owner)
        return tuple(
            dict.fromkeys(i for i in found if i != owner and i in self.roster and i not in self.inactive)
        )

    # ----------------------------------------------------------------------------------- accounts

    def decide_account(self, account: AccountView) -> Decision:
        trace: list[TraceEntry | TraceGroup] = []
        ctx: dict[str, Any] = dict(account.fields)
        ctx["open_opportunities"] = account.open_opportunities
        ctx["won_opportunities"] = account.won_opportunities
        policy = self.policy
        customer = False
        if policy.customer_stage is not None:
            customer = policy.customer_when.test(ctx)
            trace.append(
                ("stage", "customer", customer, policy.customer_when.text, policy.customer_when.fields, ())
            )
        ctx["customer"] = customer
        heirs: tuple[str, ...] = ()
        teams = self.rules.teams
        if teams is not None:
            # The tier first, so that every condition after it (routing, and the persons' lifecycle and
            # scoring through account.tier) can use it.
            ctx["won_amount"] = account.won_amount
            tier = tier_of(teams, ctx)
            ctx["tier"] = tier.name if tier is not None else None
            trace.append(
                (
                    "tier",
                    tier.name if tier else "none",
                    tier is not None,
                    tier.when.text if tier else "no tier matched",
                    tier.when.fields if tier else (),
                    (),
                )
            )
            heirs = team_heirs(teams, "customer" if customer else "prospect", account.team)
        self.account_ctx[account.key] = {prefixed: ctx.get(name) for name, prefixed in self.account_fields}
        stage = policy.customer_stage if customer else None
        team = self.stage_by_name[stage].team if customer and stage is not None else policy.prospect_team
        current = account.fields.get("owner")
        if team is None:
            trace.append(("owner", "team", False, "no prospect_team in policy: owner unchanged", (), ()))
            self.account_owner[account.key] = (None, None)
            return Decision(account.key, "account", stage, None, None, "unrouted", Trace(trace, ctx))
        prev = self.assignments.get(account.key)
        prev_team = prev.team if prev is not None else None
        if prev_team is None and isinstance(current, str) and current in self.roster:
            prev_team = self.roster[current].team
        handoff = Handoff(prev_team, team) if prev_team is not None and prev_team != team else None
        owner, rule, assigned_at, prev, base_owner = self.choose_owner(
            account.key, team, stage, ctx, current, None, handoff, True, trace, team_heirs=heirs
        )
        self.account_owner[account.key] = (owner, team)
        return Decision(
            account.key,
            "account",
            stage,
            team,
            owner,
            rule,
            Trace(trace, ctx),
            None,
            self.influencers(prev, base_owner, owner, team),
            owner is not None and owner != base_owner,
            assigned_at,
            handoff,
        )

    # ----------------------------------------------------------------------------------- persons

    def score(self, ctx: Mapping[str, Any], trace: list[TraceEntry | TraceGroup]) -> tuple[int, float, float]:
        scoring = self.scoring
        results = [test(ctx) for test in self.fit_tests]
        trace.append(("score", self.fit_meta, results))
        fit: float = sum(compress(self.fit_points, results))
        if scoring.fit_cap is not None and fit > scoring.fit_cap:
            fit = scoring.fit_cap
        engagement = 0.0
        earned: list[float | None] = []
        age: float | None = None
        age_field: str | None = None
        for when, field, per, cap, decay_rate, date_field in self.engagement_rules:
            if when is not None and not when.test(ctx):
                earned.append(None)
                continue
            if field is not None:
                count: Any = ctx.get(field)
                if type(count) not in _NUMBER or count <= 0:
                    earned.append(None)
                    continue
                points = count * per
            else:
                points = per
            if cap is not None and points > cap:
                points = cap
            if not math.isfinite(points):
                # A count too large for a float (a CRM can send one) with no cap: as much as a score holds.
                points = 0.0 if math.isnan(points) else math.copysign(float(self.scoring.max), points)
            if decay_rate is not None:
                if date_field != age_field:
                    # Rules usually share one date field: its age is computed once per person.
                    at = ctx.get(date_field or "")
                    age = (
                        max((self.now - at).total_seconds() / _DAY_SECONDS, 0.0)
                        if isinstance(at, datetime)
                        else None
                    )
                    age_field = date_field
                points = points * math.exp(decay_rate * age) if age is not None else 0.0
            engagement += points
            earned.append(points)
        trace.append(("score", self.engagement_meta, earned))
        if scoring.engagement_cap is not None and engagement > scoring.engagement_cap:
            engagement = scoring.engagement_cap
        total = fit + engagement
        score = math.floor(min(max(total, 0.0), scoring.max) + 0.5)
        return score, fit, engagement

    def stage(
        self, person: PersonView, ctx: Mapping[str, Any], score: int, trace: list[TraceEntry | TraceGroup]
    ) -> tuple[str, datetime | None]:
        """The person's stage, and until when forward moves are held when a backward move happened now."""
        reading = ctx.get("stage")
        current = self.stage_by_name.get(reading) if isinstance(reading, str) else None
        if reading is not None and current is None:
            trace.append(("stage", "current", False, f"unknown stage {reading!r} ignored", (), ()))
        if current is not None:
            for move in self.lifecycle.backward:
                if current.name not in move.from_stages:
                    continue
                matched = move.when.test(ctx)
                trace.append(("stage", "back: " + move.name, matched, move.when.text, move.when.fields, ()))
                if matched:
                    hold = self.now + timedelta(days=move.hold_days) if move.hold_days else None
                    return move.to, hold
        best = current if current is not None else self.first_stage
        hold_until = self.holds.get(person.key)
        if hold_until is not None and self.now < hold_until:
            trace.append(
                ("stage", "hold", True, f"recycled: stays {best.name} until {hold_until.isoformat()}", (), ())
            )
            return best.name, None
        for stage in self.entry_stages:
            if stage.index <= best.index:
                continue
            entry = stage.entry
            if entry is None:
                continue
            matched = entry.test(ctx)
            trace.append(("stage", "entry: " + stage.name, matched, entry.text, entry.fields, ()))
            if matched:
                best = stage
        q = self.qualifies
        if q is not None and q.index > best.index:
            matched = score >= self.scoring.threshold
            trace.append(
                ("stage", self.threshold_label, matched, self.threshold_text, (), (("score", score),))
            )
            if matched:
                best = q
        return best.name, None

    def decide_person(self, person: PersonView) -> Decision:
        trace: list[TraceEntry | TraceGroup] = []
        ctx: dict[str, Any] = dict(person.fields)
        ctx["salesforce_object"] = person.salesforce_object
        ctx["hubspot_only"] = person.salesforce_id is None
        account_key = person.account_key
        ctx["has_account"] = account_key is not None
        if account_key is not None:
            actx = self.account_ctx.get(account_key)
            if actx is not None:
                ctx.update(actx)
        reading = ctx.get("stage")
        score, fit, engagement = self.score(ctx, trace)
        ctx["score"] = score
        ctx["fit_score"] = fit
        ctx["engagement_score"] = engagement
        stage_name, hold = self.stage(person, ctx, score, trace)
        ctx["stage"] = stage_name
        stage = self.stage_by_name[stage_name]
        team = stage.team
        trace.append(self.decided_entry[stage_name])

        prev = self.assignments.get(person.key)
        if prev is not None:
            prev_team: str | None = prev.team
        else:
            # Without a ledger entry the team is the current stage's, else the current owner's.
            current_stage = self.stage_by_name.get(reading) if isinstance(reading, str) else None
            if current_stage is not None:
                prev_team = current_stage.team
            else:
                current_rep = self.roster.get(person.fields.get("owner") or "")
                prev_team = current_rep.team if current_rep is not None else None
        handoff = Handoff(prev_team, team) if prev_team is not None and prev_team != team else None

        matched_owner = None
        if stage_name in self.routing.account_match and account_key is not None:
            owner, owner_team = self.account_owner.get(account_key, (None, None))
            if owner is None:
                assignment = self.assignments.get(account_key)
                if assignment is not None:
                    owner, owner_team = assignment.owner, assignment.team
            ok = owner is not None and owner_team == team and not self.why_not_owner(owner)
            trace.append(("owner", "account match", ok, f"account owner {owner} ({owner_team})", (), ()))
            if ok:
                matched_owner = owner

        current = person.fields.get("owner")
        account_owner = None
        if account_key is not None:
            account_owner = self.account_owner.get(account_key, (None, None))[0]
            if account_owner is None:
                assignment = self.assignments.get(account_key)
                account_owner = assignment.owner if assignment is not None else None
        owner, rule, assigned_at, prev, base_owner = self.choose_owner(
            person.key, team, stage_name, ctx, current, matched_owner, handoff, False, trace, account_owner
        )
        create_lead = person.salesforce_id is None and team in self.policy.create_lead_for
        if create_lead:
            trace.append(
                ("handoff", "create Salesforce Lead", True, "HubSpot-only and owned by " + team, (), ())
            )
        # Positional: keyword arguments cost a NamedTuple three times as much, on the engine's hottest path.
        return Decision(
            person.key,
            "person",
            stage_name,
            team,
            owner,
            rule,
            Trace(trace, ctx, {"stage": reading}),
            score,
            self.influencers(prev, base_owner, owner, team),
            owner is not None and owner != base_owner,
            assigned_at,
            handoff,
            create_lead,
            hold,
        )
