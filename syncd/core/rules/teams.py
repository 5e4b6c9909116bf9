"""Account teams (``teams.toml``): tiers, the roles of an account team, and which roles each tier needs.

- ``[[tiers]]``: ordered, first match wins; ``when`` uses the account's logical fields plus ``customer``,
  ``open_opportunities``, ``won_opportunities`` and ``won_amount``. A tier without ``when`` takes the rest.
- ``[[roles]]``: one role of the team (Salesforce ``TeamMemberRole`` = ``label``), how it is filled (``fill``,
  tried in order: ``owner`` — the account's owner when in the role's ``team``; ``pool`` — weighted round robin
  over ``pool``; ``previous_owner`` — the owner before a hand-off, for ``keep_days``), the access it grants
  (``account_access`` Read|Edit, ``opportunity_access``/``case_access`` None|Read|Edit) and the HubSpot owner
  property that shows it (``hubspot_property``; ``on_contacts = true`` puts it on the account's contacts too).
- ``[[requirements]]``: which ``roles`` accounts of these ``tiers`` and ``stages`` (``customer``,
  ``prospect``) need; omitted tiers or stages mean all of them.
- ``[successor]``: when an account's owner leaves, the team member in the first of these roles who is still
  active takes it over (``customer`` and ``prospect`` each name a role or a list of roles).
- ``[[pools]]``: pools for roles, like routing.toml's (which roles may use too).

The file is optional: a rules directory without it manages no account team.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from syncd.core.rules.conditions import Condition, FieldSet, compile_condition, shadows
from syncd.core.rules.limits import MAX_DAYS
from syncd.core.rules.problems import Problems, did_you_mean, named
from syncd.core.rules.roster import Roster
from syncd.core.rules.routing import Pool, PoolModel, Routing
from syncd.core.systems import TEAM_MEMBER_ROLES
from syncd.core.types import rep_key

Fill = Literal["owner", "pool", "previous_owner"]
AccountAccess = Literal["Read", "Edit"]
RelatedAccess = Literal["None", "Read", "Edit"]
Stage = Literal["customer", "prospect"]
STAGES: tuple[Stage, ...] = ("customer", "prospect")
# Computed account values tier conditions may use besides the mapping's fields and ACCOUNT_COMPUTED.
TIER_COMPUTED = {"won_amount": "number"}
_PROPERTY = re.compile(r"^[a-z][a-z0-9_]*$")


class TierModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    label: str = ""
    when: dict[str, Any] | None = None
    description: str = ""


class RoleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    label: str = Field(min_length=1)
    team: str | None = None
    fill: list[Fill] = Field(min_length=1)
    pool: str | None = None
    keep_days: float | None = Field(default=None, gt=0, le=MAX_DAYS)
    account_access: AccountAccess = "Read"
    opportunity_access: RelatedAccess = "None"
    case_access: RelatedAccess = "None"
    hubspot_property: str | None = None
    on_contacts: StrictBool = False
    description: str = ""


class RequirementModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    tiers: list[str] | None = None
    stages: list[Stage] | None = None
    roles: list[str] = Field(min_length=1)


class SuccessorModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer: list[str] | str | None = None
    prospect: list[str] | str | None = None


class TeamsFileModel(BaseModel):
    """The schema of ``teams.toml``."""

    model_config = ConfigDict(extra="forbid")
    pools: list[PoolModel] = Field(default_factory=list)
    tiers: list[TierModel] = Field(default_factory=list)
    roles: list[RoleModel] = Field(min_length=1)
    requirements: list[RequirementModel] = Field(default_factory=list)
    successor: SuccessorModel = Field(default_factory=SuccessorModel)


@dataclass(frozen=True)
class Tier:
    """One declared segment; ``label`` is the value written to both systems."""

    name: str
    label: str
    when: Condition


@dataclass(frozen=True)
class Role:
    """One account-team role: how it is filled and what access its holder gets."""

    name: str
    label: str
    team: str | None
    fill: tuple[Fill, ...]
    pool: str | None
    keep_days: float | None
    account_access: str
    opportunity_access: str
    case_access: str
    hubspot_property: str | None
    on_contacts: bool


@dataclass(frozen=True)
class Requirement:
    name: str
    tiers: frozenset[str] | None
    stages: frozenset[str] | None
    roles: tuple[str, ...]

    def applies(self, tier: str | None, stage: str) -> bool:
        return (self.tiers is None or tier in self.tiers) and (self.stages is None or stage in self.stages)


@dataclass(frozen=True)
class Teams:
    """Compiled teams.toml: tiers in order, roles in declared order, requirements, successors, pools."""

    tiers: tuple[Tier, ...]
    roles: Mapping[str, Role]
    requirements: tuple[Requirement, ...]
    successor: Mapping[str, tuple[str, ...]]
    pools: Mapping[str, Pool]

    def required(self, tier: str | None, stage: str) -> tuple[str, ...]:
        """The roles an account of this tier and stage needs, in the roles' declared order."""
        wanted = {r for req in self.requirements if req.applies(tier, stage) for r in req.roles}
        return tuple(name for name in self.roles if name in wanted)


def tier_fields(account_fields: FieldSet) -> FieldSet:
    """The fields tier conditions may use: the account's, plus ``won_amount``."""
    kinds = dict(account_fields.kinds)
    kinds.update(TIER_COMPUTED)  # type: ignore[arg-type]
    return FieldSet(kinds, account_fields.stages, account_fields.stage_fields)


def build_teams(
    model: TeamsFileModel,
    display: str,
    problems: Problems,
    account_fields: FieldSet,
    roster: Roster | None,
    routing: Routing | None,
) -> Teams | None:
    """Checks teams.toml's meaning against roster and routing; the compiled Teams or None."""
    before = problems.error_count
    teams = roster.teams if roster else ()
    routing_pools: Mapping[str, Pool] = routing.pools if routing else {}

    pools: dict[str, Pool] = {}
    for pm in model.pools:
        where = named("pool", pm.name)
        if pm.name in pools:
            problems.error(display, where, "name", "declared twice")
            continue
        if pm.name in routing_pools:
            problems.error(display, where, "name", "routing.toml declares a pool of this name")
            continue
        if roster is not None and pm.team not in teams:
            problems.error(display, where, "team", f'unknown team "{pm.team}"' + did_you_mean(pm.team, teams))
        members = tuple(dict.fromkeys(rep_key(m) for m in pm.members))
        if roster is not None:
            for m in members:
                rep = roster.reps.get(m)
                if rep is None:
                    problems.error(
                        display,
                        where,
                        "members",
                        f'"{m}" is not on the roster' + did_you_mean(m, roster.reps),
                    )
                elif rep.team != pm.team:
                    problems.error(
                        display, where, "members", f'"{m}" is in team "{rep.team}", not "{pm.team}"'
                    )
            if members and all(m in roster.reps and not roster.reps[m].active for m in members):
                problems.error(
                    display, where, "members", "no active member: every rep in this pool is inactive"
                )
        pools[pm.name] = Pool(pm.name, pm.team, members)
    all_pools = {**routing_pools, **pools}

    fields = tier_fields(account_fields)
    tiers: list[Tier] = []
    for tm in model.tiers:
        where = named("tier", tm.name)
        if any(t.name == tm.name for t in tiers):
            problems.error(display, where, "name", "declared twice")
            continue
        when = compile_condition(tm.when, fields, problems, display, where)
        if when is None:
            continue
        for earlier in tiers:
            if shadows(earlier.when, when):
                problems.error(
                    display, where, "when", f'never used: tier "{earlier.name}" above it matches first'
                )
                break
        tiers.append(Tier(tm.name, tm.label or tm.name, when))

    roles: dict[str, Role] = {}
    labels: dict[str, str] = {}
    properties: dict[str, str] = {}
    for rm in model.roles:
        where = named("role", rm.name)
        if rm.name in roles:
            problems.error(display, where, "name", "declared twice")
            continue
        if rm.label in labels:
            problems.error(display, where, "label", f'role "{labels[rm.label]}" has this label too')
        labels[rm.label] = rm.name
        if rm.label not in TEAM_MEMBER_ROLES:
            problems.warning(
                display,
                where,
                "label",
                f'"{rm.label}" is no Team Role syncd knows: add it in Salesforce Setup, Account Teams, Team Roles',
            )
        if len(set(rm.fill)) != len(rm.fill):
            problems.error(display, where, "fill", "a way of filling is listed twice")
        if rm.team is not None and roster is not None and rm.team not in teams:
            problems.error(display, where, "team", f'unknown team "{rm.team}"' + did_you_mean(rm.team, teams))
        if "pool" in rm.fill:
            if rm.pool is None:
                problems.error(display, where, "pool", 'needed when fill has "pool"')
            elif rm.pool not in all_pools:
                problems.error(
                    display, where, "pool", f'unknown pool "{rm.pool}"' + did_you_mean(rm.pool, all_pools)
                )
            elif rm.team is not None and all_pools[rm.pool].team != rm.team:
                problems.error(
                    display, where, "pool", f'pool "{rm.pool}" belongs to team "{all_pools[rm.pool].team}"'
                )
        elif rm.pool is not None:
            problems.warning(display, where, "pool", 'unused: fill has no "pool"')
        if "previous_owner" in rm.fill and rm.keep_days is None:
            problems.error(display, where, "keep_days", 'needed when fill has "previous_owner"')
        if rm.hubspot_property is not None:
            if not _PROPERTY.match(rm.hubspot_property):
                problems.error(
                    display, where, "hubspot_property", "a HubSpot property name: lower case, digits, _"
                )
            elif rm.hubspot_property in properties:
                problems.error(
                    display,
                    where,
                    "hubspot_property",
                    f'role "{properties[rm.hubspot_property]}" writes this property too',
                )
            properties[rm.hubspot_property] = rm.name
        elif rm.on_contacts:
            problems.error(display, where, "on_contacts", "needs a hubspot_property to write")
        roles[rm.name] = Role(
            rm.name,
            rm.label,
            rm.team,
            tuple(rm.fill),
            rm.pool,
            rm.keep_days,
            rm.account_access,
            rm.opportunity_access,
            rm.case_access,
            rm.hubspot_property,
            rm.on_contacts,
        )

    tier_names = [t.name for t in tiers]
    requirements: list[Requirement] = []
    for req in model.requirements:
        where = named("requirement", req.name)
        for t in req.tiers or ():
            if t not in tier_names:
                problems.error(display, where, "tiers", f'unknown tier "{t}"' + did_you_mean(t, tier_names))
        for r in req.roles:
            if r not in roles:
                problems.error(display, where, "roles", f'unknown role "{r}"' + did_you_mean(r, roles))
        requirements.append(
            Requirement(
                req.name,
                frozenset(req.tiers) if req.tiers is not None else None,
                frozenset(req.stages) if req.stages is not None else None,
                tuple(dict.fromkeys(req.roles)),
            )
        )
    successor: dict[str, tuple[str, ...]] = {}
    for stage in STAGES:
        raw = getattr(model.successor, stage)
        if raw is None:
            continue
        names = (raw,) if isinstance(raw, str) else tuple(raw)
        for role in names:
            if role not in roles:
                problems.error(
                    display, "successor", stage, f'unknown role "{role}"' + did_you_mean(role, roles)
                )
        successor[stage] = names
    if problems.error_count != before:
        return None
    return Teams(tuple(tiers), roles, tuple(requirements), successor, pools)
