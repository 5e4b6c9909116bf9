"""Routing rules (``routing.toml``): who, inside the owning team, gets a person or an account.

In order: (1) for the stages in ``account_match``, the owner of the person's account when that owner is in
the owning team; (2) the ordered ``rules`` of the owning team, first match wins, each sending to a ``pool``
(weighted round robin over its active, available reps under their daily cap) or straight to a ``queue``;
(3) the ``fallback`` queue. A rule with ``reassign = true`` moves records it newly matches away from a
sticky owner that another rule had chosen (e.g. a territory change).

Accounts cannot wait in a queue (a Salesforce Account's owner is a user), so an account no rule routes keeps
its owner, unless that owner left (inactive, deactivated, unknown): then the ``fallback`` ``account_pool``
takes it, by round robin over its active, available members, their daily caps aside (the account cannot
wait for tomorrow's capacity). A sticky, active owner is never moved by the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from syncd.core.rules.conditions import Condition, FieldSet, Predicate, compile_condition, shadows
from syncd.core.rules.problems import STAGES_HINT, Problems, clip, did_you_mean, named, show
from syncd.core.rules.roster import Roster
from syncd.core.types import rep_key

Target = Literal["persons", "accounts"]
PERSONS_ONLY: tuple[Target, ...] = ("persons",)


class PoolModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    team: str
    members: list[str] = Field(min_length=1)
    description: str = ""


class RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    applies_to: list[Target] = Field(default_factory=lambda: list(PERSONS_ONLY), min_length=1)
    team: str | None = None
    when: dict[str, Any] | None = None
    pool: str | None = None
    queue: str | None = None
    overflow_queue: str | None = None
    reassign: StrictBool = False
    description: str = ""


class AccountMatchModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stages: list[str] = Field(default_factory=list)


class FallbackModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queue: str | None = None
    account_pool: str | None = None


class RoutingFileModel(BaseModel):
    """The schema of ``routing.toml``."""

    model_config = ConfigDict(extra="forbid")
    account_match: AccountMatchModel = Field(default_factory=AccountMatchModel)
    pools: list[PoolModel] = Field(default_factory=list)
    rules: list[RuleModel] = Field(default_factory=list)
    fallback: FallbackModel = Field(default_factory=FallbackModel)


@dataclass(frozen=True)
class Pool:
    """Reps of one team that share records by weighted round robin, in declared order."""

    name: str
    team: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class RoutingRule:
    """One ordered routing rule of one team."""

    name: str
    team: str
    persons: bool
    accounts: bool
    when: Condition
    pool: str | None
    queue: str | None
    overflow_queue: str | None
    reassign: bool


@dataclass(frozen=True)
class Routing:
    """Compiled routing: account matching stages, pools, rules by team, the fallback queue and the pool
    that takes accounts whose owner left when no rule routes them."""

    account_match: frozenset[str]
    pools: dict[str, Pool]
    rules: tuple[RoutingRule, ...]
    fallback_queue: str | None
    fallback_account_pool: str | None = None

    _by_team: dict[tuple[str, str], tuple[RoutingRule, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for rule in self.rules:
            for target, applies in (("persons", rule.persons), ("accounts", rule.accounts)):
                if applies:
                    key = (rule.team, target)
                    self._by_team[key] = (*self._by_team.get(key, ()), rule)

    def rules_for(self, team: str, target: Target) -> tuple[RoutingRule, ...]:
        """The ordered rules of one team for persons or accounts."""
        return self._by_team.get((team, target), ())


def routed_twice(earlier: Condition, later: Condition) -> tuple[str, str] | None:
    """``(field, values)`` when two rules list the same value of one field and otherwise ask the same.

    E.g. country "DE" in two territory rules of one team: the first rule always wins, so the second's
    "DE" is dead and is most likely a copy-and-paste slip. Only plain conditions (ANDs of equals and
    one-of tests) are compared.
    """
    if earlier.complex or later.complex or earlier.always or later.always:
        return None
    listed = ("eq", "in")

    def values(p: Predicate) -> frozenset[Any]:
        return frozenset([p.value]) if p.op == "eq" else frozenset(p.value)

    for a in earlier.predicates:
        if a.op not in listed:
            continue
        for b in later.predicates:
            if b.field != a.field or b.op not in listed:
                continue
            common = values(a) & values(b)
            if not common:
                continue
            rest_a = {p for p in earlier.predicates if p is not a}
            rest_b = {p for p in later.predicates if p is not b}
            if rest_a == rest_b:
                shown = ", ".join(show(v, 20) for v in sorted(common, key=str)[:5])
                more = ", …" if len(common) > 5 else ""
                return a.field, shown + more
    return None


def build_routing(
    model: RoutingFileModel,
    display: str,
    problems: Problems,
    person_fields: FieldSet,
    account_fields: FieldSet,
    roster: Roster | None,
    stages: tuple[str, ...],
) -> Routing | None:
    """Checks the routing's meaning against roster and stages; the compiled Routing or None."""
    before = problems.error_count
    for s in model.account_match.stages:
        if stages and s not in stages:
            problems.error(
                display,
                "account_match",
                "stages",
                f'unknown stage "{clip(s)}"' + did_you_mean(s, stages) + STAGES_HINT,
                ref=("stage", s),
            )
    queues = roster.queues if roster else ()
    teams = roster.teams if roster else ()

    def check_queue(where: str, key: str, name: str | None) -> None:
        if name is not None and roster is not None and name not in queues:
            problems.error(
                display,
                where,
                key,
                f'unknown queue "{clip(name)}"'
                + did_you_mean(name, queues)
                + " (queues are declared in roster.toml)",
                ref=("queue", name),
            )

    pools: dict[str, Pool] = {}
    for pm in model.pools:
        where = named("pool", pm.name)
        if pm.name in pools:
            problems.error(display, where, "name", "declared twice")
            continue
        team_known = roster is None or pm.team in teams
        if not team_known:
            problems.error(
                display,
                where,
                "team",
                f'unknown team "{clip(pm.team)}"' + did_you_mean(pm.team, teams),
                ref=("team", pm.team),
            )
        members = tuple(dict.fromkeys(rep_key(m) for m in pm.members))
        if len(members) != len(pm.members):
            problems.warning(display, where, "members", "a rep is listed twice")
        if roster is not None:
            for m in members:
                rep = roster.reps.get(m)
                if rep is None:
                    problems.error(
                        display,
                        where,
                        "members",
                        f'"{clip(m)}" is not on the roster' + did_you_mean(m, roster.reps),
                        ref=("rep", m),
                    )
                elif rep.team != pm.team and team_known:
                    problems.error(
                        display,
                        where,
                        "members",
                        f'"{clip(m)}" is in team "{clip(rep.team)}", not "{clip(pm.team)}"',
                        ref=("rep in another team", f"{m}\0{pm.team}"),
                    )
            known = [roster.reps[m] for m in members if m in roster.reps]
            if known and not any(r.active for r in known):
                problems.error(
                    display, where, "members", "no active member: every rep in this pool is inactive"
                )
            elif known and not any(r.active and not r.out_of_office for r in known):
                problems.warning(display, where, "members", "every active member is out of office")
        pools[pm.name] = Pool(pm.name, pm.team, members)

    rules: list[RoutingRule] = []
    names: set[str] = set()
    for rm in model.rules:
        where = named("rule", rm.name)
        if rm.name in names:
            problems.error(display, where, "name", "declared twice")
        names.add(rm.name)
        if (rm.pool is None) == (rm.queue is None):
            problems.error(display, where, "pool", "give exactly one of pool or queue")
            continue
        team = rm.team
        if rm.pool is not None:
            pool = pools.get(rm.pool)
            if pool is None:
                problems.error(
                    display,
                    where,
                    "pool",
                    f'unknown pool "{clip(rm.pool)}"' + did_you_mean(rm.pool, pools),
                    ref=("pool", rm.pool),
                )
                continue
            if team is not None and team != pool.team:
                problems.error(
                    display, where, "team", f'pool "{clip(pool.name)}" belongs to team "{clip(pool.team)}"'
                )
                continue
            team = pool.team
        elif team is None:
            problems.error(display, where, "team", "a rule that sends to a queue must name its team")
            continue
        elif roster is not None and team not in teams:
            problems.error(
                display,
                where,
                "team",
                f'unknown team "{clip(team)}"' + did_you_mean(team, teams),
                ref=("team", team),
            )
            continue
        if "accounts" in rm.applies_to and rm.queue is not None:
            problems.error(
                display,
                where,
                "queue",
                "accounts cannot wait in a queue (Salesforce Account owners are users)",
            )
            continue
        check_queue(where, "queue", rm.queue)
        check_queue(where, "overflow_queue", rm.overflow_queue)
        if rm.overflow_queue is not None and rm.pool is None:
            problems.error(display, where, "overflow_queue", "only a rule with a pool can overflow")
        fields = account_fields if rm.applies_to == ["accounts"] else person_fields
        when = compile_condition(rm.when, fields, problems, display, where)
        if rm.applies_to != ["accounts"] and rm.applies_to != ["persons"] and when is not None and rm.when:
            # A rule for both must only use fields both kinds of records have.
            compile_condition(rm.when, account_fields, problems, display, where)
        if when is None:
            continue
        rule = RoutingRule(
            rm.name,
            team,
            "persons" in rm.applies_to,
            "accounts" in rm.applies_to,
            when,
            rm.pool,
            rm.queue,
            rm.overflow_queue,
            rm.reassign,
        )
        for earlier in rules:
            same_target = (earlier.persons and rule.persons) or (earlier.accounts and rule.accounts)
            covers = (earlier.persons or not rule.persons) and (earlier.accounts or not rule.accounts)
            if earlier.team == rule.team and same_target and covers and shadows(earlier.when, rule.when):
                problems.error(
                    display,
                    where,
                    "when",
                    f'never used: rule "{clip(earlier.name)}" above it matches everything this one does',
                )
                break
            if earlier.team == rule.team and same_target:
                overlap = routed_twice(earlier.when, rule.when)
                if overlap is not None:
                    field, values = overlap
                    problems.warning(
                        display,
                        where,
                        f"when.{field}",
                        f'{values} also routed by rule "{clip(earlier.name)}" of team "{clip(rule.team)}" '
                        "above it, which wins",
                    )
        rules.append(rule)
    check_queue("fallback", "queue", model.fallback.queue)
    if model.fallback.queue is None:
        problems.warning(
            display, "fallback", "queue", "no fallback queue: unroutable records keep their owner"
        )
    account_pool = model.fallback.account_pool
    if account_pool is not None and account_pool not in pools:
        problems.error(
            display,
            "fallback",
            "account_pool",
            f'unknown pool "{clip(account_pool)}"' + did_you_mean(account_pool, pools),
            ref=("pool", account_pool),
        )
    if problems.error_count != before:
        return None
    return Routing(
        frozenset(model.account_match.stages), pools, tuple(rules), model.fallback.queue, account_pool
    )
