"""Account teams: an account's tier and the team its rules want, and the member changes that get there. Pure.

``decide_teams`` takes accounts (logical fields, customer or not, decided owner, opportunity figures, the
members its team has now, each marked managed by syncd or added by a human), the rules (``teams.toml`` with
the roster and routing pools), the pools' round-robin state and ``now``; it returns per account:

- the **tier**: the first declared tier whose condition holds;
- the **seats**: each role the tier and stage require, with the rep who fills it and how (a human-added
  member in that role; the owner; the previous owner within ``keep_days``; a pool member who already holds
  the seat; else weighted round robin over the pool's active, available reps). A rep holds one seat;
- the **member changes**: add, change (role or access) and remove, only ever on members syncd manages. A
  member a human added is never changed or removed, even when they left the company;
- **continuity**: an owner who left is succeeded by the first active member in the ``[successor]`` roles of
  the account's stage, so the account keeps someone who knows it; a member who left loses their seat and the
  seat is filled again;
- a **trace** for ``syncd explain``.

No clock, no I/O: the same input gives the same decisions (accounts are decided in the order given, since
round robin depends on it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from syncd.core.rules.routing import Pool
from syncd.core.rules.ruleset import RuleSet
from syncd.core.rules.teams import Role, Teams, Tier
from syncd.core.types import RepDirectory, RoundRobinState, TraceStep

ChangeOp = Literal["add", "change", "remove"]


@dataclass(frozen=True, slots=True)
class Access:
    """A team member's access: to the account (Read, Edit, All), its opportunities and cases (None ...)."""

    account: str = "Read"
    opportunity: str = "None"
    case: str = "None"


@dataclass(frozen=True, slots=True)
class Member:
    """One member of an account's team as a system holds it now.

    ``rep`` is the rep key (None when the user is nobody the roster or the systems' rep lists know);
    ``role`` the stored role label (Salesforce TeamMemberRole); ``managed`` says syncd added it (so syncd may
    change or remove it) rather than a human.
    """

    rep: str | None
    role: str | None
    managed: bool
    id: str | None = None
    access: Access = field(default_factory=Access)


@dataclass(frozen=True, slots=True)
class AccountTeamInput:
    """What the team of one account is decided from.

    ``owner`` is the account's decided owner (rep key); ``previous_owner`` the owner before the last change
    and ``owner_since`` when that change happened (the previous owner is kept ``keep_days`` from then);
    ``current_tier`` the tier label the systems hold now.
    """

    key: str
    fields: Mapping[str, Any]
    owner: str | None
    customer: bool
    open_opportunities: int = 0
    won_opportunities: int = 0
    won_amount: float = 0.0
    members: tuple[Member, ...] = ()
    previous_owner: str | None = None
    owner_since: datetime | None = None
    current_tier: str | None = None


@dataclass(frozen=True, slots=True)
class Seat:
    """One required role and who fills it (``rep`` None: nobody could), with how they were chosen."""

    role: str
    label: str
    rep: str | None
    how: str
    access: Access
    human: bool = False


@dataclass(frozen=True, slots=True)
class MemberChange:
    """One write to an account's team: add a member, change a managed member's role or access, remove one."""

    op: ChangeOp
    rep: str | None
    label: str | None
    access: Access | None
    member_id: str | None
    reason: str
    human: bool = False  # a restore of a member a human added: it stays theirs


@dataclass(frozen=True, slots=True)
class TeamDecision:
    """The team syncd wants for one account, the changes to get there and why."""

    key: str
    tier: str | None
    tier_label: str | None
    tier_changed: bool
    stage: str
    owner: str | None
    successor: str | None
    seats: tuple[Seat, ...]
    changes: tuple[MemberChange, ...]
    # (HubSpot property, rep key or None to clear, whether it goes on the account's contacts too)
    hubspot: tuple[tuple[str, str | None, bool], ...]
    trace: tuple[TraceStep, ...]

    def explain(self) -> str:
        """The decision and its trace as readable lines, for ``syncd explain``."""
        head = f"account {self.key}: tier={self.tier} stage={self.stage} owner={self.owner}"
        if self.successor:
            head += f" successor={self.successor}"
        lines = [head]
        lines += [f"  seat {s.label}: {s.rep or '-'} ({s.how})" for s in self.seats]
        lines += [f"  {c.op} {c.rep or c.member_id} as {c.label or '-'}: {c.reason}" for c in self.changes]
        lines += ["  " + str(step) for step in self.trace]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class TeamsResult:
    """The decisions of one ``decide_teams`` call and the new state of every pool that gave a seat."""

    decisions: tuple[TeamDecision, ...]
    round_robin: Mapping[str, RoundRobinState]


def decide_teams(
    accounts: Iterable[AccountTeamInput],
    rules: RuleSet,
    round_robin: Mapping[str, RoundRobinState],
    now: datetime,
    *,
    directory: RepDirectory | None = None,
) -> TeamsResult:
    """Decides tier, seats and member changes for every account given (see the module's docstring).

    ``directory`` (the reps as the systems list them) makes reps deactivated in either system, or unknown to
    both, count as gone; without it the roster alone says who is active.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if rules.teams is None:
        raise ValueError(f"{rules.directory}: no teams.toml, so no account team to decide")
    run = _Run(rules, rules.teams, round_robin, now, directory)
    decisions = tuple(run.decide(a) for a in accounts)
    return TeamsResult(decisions, run.changed_state())


def tier_of(teams: Teams, ctx: Mapping[str, Any]) -> Tier | None:
    """The first declared tier whose condition holds for an account's context (logical fields, customer,
    open/won opportunities, won_amount); None when no tier matches."""
    for candidate in teams.tiers:
        if candidate.when.test(ctx):
            return candidate
    return None


def team_heirs(teams: Teams, stage: str, team: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The members who may succeed an account's owner, in the order of the stage's ``[successor]`` roles
    (``team`` holds (role label, rep) pairs)."""
    members = tuple(team)
    out: list[str] = []
    for role_name in teams.successor.get(stage, ()):
        label = teams.roles[role_name].label
        out += [rep for role, rep in members if role == label and rep not in out]
    return tuple(out)


class _Run:
    def __init__(
        self,
        rules: RuleSet,
        teams: Teams,
        round_robin: Mapping[str, RoundRobinState],
        now: datetime,
        directory: RepDirectory | None,
    ) -> None:
        self.teams = teams
        self.roster = rules.roster.reps
        self.pools: dict[str, Pool] = {**rules.routing.pools, **teams.pools}
        self.now = now
        self.directory = directory
        self.state = round_robin
        self.credits: dict[str, dict[str, int]] = {}
        self.assigned: dict[str, dict[str, int]] = {}

    # ------------------------------------------------------------------------------------------ reps

    def gone(self, rep: str) -> str:
        """Why a rep can hold no seat ("" when they can): left (roster), deactivated or unknown."""
        roster = self.roster.get(rep)
        if roster is not None and not roster.active:
            return "inactive (roster)"
        if self.directory is not None:
            if rep not in self.directory.reps:
                return "unknown to both systems"
            if not self.directory.is_active(rep):
                return "deactivated in a system"
        elif roster is None:
            return "not on the roster"
        return ""

    def fits(self, rep: str, role: Role) -> bool:
        """Whether a rep may fill this role: on the roster, in the role's team when it names one."""
        roster = self.roster.get(rep)
        return roster is not None and (role.team is None or roster.team == role.team)

    # ------------------------------------------------------------------------------------------ round robin

    def pick(self, pool: Pool, taken: set[str]) -> tuple[str | None, str]:
        """Smooth weighted round robin over the pool's members who are active, available and not on the
        team yet (the engine's algorithm; daily caps aside: an account cannot wait for tomorrow)."""
        credits = self.credits.get(pool.name)
        if credits is None:
            state = self.state.get(pool.name)
            credits = dict(state.credits) if state else {}
            self.credits[pool.name] = credits
            self.assigned[pool.name] = dict(state.assigned) if state else {}
        eligible: list[tuple[str, int]] = []
        skipped: list[str] = []
        for member in pool.members:
            why = self.gone(member) or ("on the team already" if member in taken else "")
            if not why:
                ok, why = self.roster[member].available(self.now)
                why = "" if ok else why
            if why:
                skipped.append(f"{member}: {why}")
            else:
                eligible.append((member, self.roster[member].weight))
        if not eligible:
            return None, "; ".join(skipped) or "empty pool"
        total = sum(w for _, w in eligible)
        best, best_credit = "", 0
        for member, weight in eligible:
            credit = credits.get(member, 0) + weight
            credits[member] = credit
            if not best or credit > best_credit:
                best, best_credit = member, credit
        credits[best] -= total
        assigned = self.assigned[pool.name]
        assigned[best] = assigned.get(best, 0) + 1
        return best, "; ".join(skipped)

    def changed_state(self) -> dict[str, RoundRobinState]:
        return {
            name: RoundRobinState(name, dict(self.credits[name]), dict(self.assigned[name]))
            for name in sorted(self.assigned)
            if self.assigned[name] != (dict(self.state[name].assigned) if name in self.state else {})
        }

    # ------------------------------------------------------------------------------------------ decide

    def decide(self, account: AccountTeamInput) -> TeamDecision:
        trace: list[TraceStep] = []
        ctx: dict[str, Any] = dict(account.fields)
        ctx.update(
            customer=account.customer,
            open_opportunities=account.open_opportunities,
            won_opportunities=account.won_opportunities,
            won_amount=account.won_amount,
        )
        tier = None
        for candidate in self.teams.tiers:
            matched = candidate.when.test(ctx)
            shown = tuple((f, ctx.get(f)) for f in candidate.when.fields)
            trace.append(TraceStep("tier", candidate.name, matched, candidate.when.text, shown))
            if matched:
                tier = candidate
                break
        stage = "customer" if account.customer else "prospect"
        members = account.members

        owner = account.owner
        successor = None
        owner_gone = self.gone(owner) if owner is not None else ""
        if owner is not None and owner_gone:
            successor = self.successor(stage, owner, members, trace)
            trace.append(
                TraceStep(
                    "owner",
                    "successor",
                    successor is not None,
                    f"{owner} {owner_gone}",
                    (("successor", successor),) if successor else (),
                )
            )
            owner = successor

        # A rep holds one seat per account, and a human's member row is theirs: its rep takes no other seat.
        taken: set[str] = {m.rep for m in members if not m.managed and m.rep is not None}
        seats: list[Seat] = []
        for name in self.teams.required(tier.name if tier else None, stage):
            seat = self.fill(self.teams.roles[name], account, owner, members, taken, trace)
            seats.append(seat)
            if seat.rep is not None:
                taken.add(seat.rep)

        changes = self.changes(seats, members)
        seated = {s.role: s.rep for s in seats}
        hubspot = tuple(
            (role.hubspot_property, seated.get(role.name), role.on_contacts)
            for role in self.teams.roles.values()
            if role.hubspot_property is not None
        )
        label = tier.label if tier else None
        return TeamDecision(
            account.key,
            tier.name if tier else None,
            label,
            label != account.current_tier,
            stage,
            owner,
            successor,
            tuple(seats),
            changes,
            hubspot,
            tuple(trace),
        )

    def successor(
        self, stage: str, owner: str, members: tuple[Member, ...], trace: list[TraceStep]
    ) -> str | None:
        """The first active member, in the order of the stage's successor roles, who is not the owner."""
        for role_name in self.teams.successor.get(stage, ()):
            label = self.teams.roles[role_name].label
            for m in members:
                if m.role == label and m.rep is not None and m.rep != owner and not self.gone(m.rep):
                    trace.append(
                        TraceStep("owner", f"successor role {role_name}", True, label, (("rep", m.rep),))
                    )
                    return m.rep
            trace.append(TraceStep("owner", f"successor role {role_name}", False, f"no active {label}"))
        return None

    def fill(
        self,
        role: Role,
        account: AccountTeamInput,
        owner: str | None,
        members: tuple[Member, ...],
        taken: set[str],
        trace: list[TraceStep],
    ) -> Seat:
        access = Access(role.account_access, role.opportunity_access, role.case_access)
        phase = "seat " + role.name
        for m in members:
            if m.managed or m.role != role.label or m.rep is None:
                continue
            why = self.gone(m.rep)
            if not why:
                trace.append(TraceStep(phase, "human", True, f"{m.rep} added by a human"))
                return Seat(role.name, role.label, m.rep, "added by a human", m.access, human=True)
            trace.append(TraceStep(phase, "human", False, f"{m.rep} {why}: kept as added, seat filled anew"))
        for how in role.fill:
            if how == "owner":
                ok = (
                    owner is not None
                    and owner not in taken
                    and self.fits(owner, role)
                    and not self.gone(owner)
                )
                trace.append(TraceStep(phase, "owner", ok, f"owner {owner} in team {role.team}"))
                if ok:
                    return Seat(role.name, role.label, owner, "the owner", access)
            elif how == "previous_owner":
                prev = account.previous_owner
                until = (
                    account.owner_since + timedelta(days=role.keep_days or 0)
                    if account.owner_since is not None
                    else None
                )
                ok = (
                    prev is not None
                    and until is not None
                    and self.now < until
                    and prev not in taken
                    and self.fits(prev, role)
                    and not self.gone(prev)
                )
                text = f"previous owner {prev}" + (f" until {until.isoformat()}" if until else "")
                trace.append(TraceStep(phase, "previous owner", ok, text))
                if ok and until is not None:
                    return Seat(
                        role.name, role.label, prev, f"the previous owner, until {until:%Y-%m-%d}", access
                    )
            else:
                pool = self.pools[role.pool or ""]
                holder = next(
                    (
                        m.rep
                        for m in members
                        if m.managed
                        and m.role == role.label
                        and m.rep is not None
                        and m.rep not in taken
                        and m.rep in pool.members
                        and not self.gone(m.rep)
                    ),
                    None,
                )
                if holder is not None:
                    trace.append(TraceStep(phase, "pool " + pool.name, True, f"{holder} keeps the seat"))
                    return Seat(role.name, role.label, holder, f"kept from pool {pool.name}", access)
                rep, skipped = self.pick(pool, taken)
                values = (("skipped", skipped),) if skipped else ()
                trace.append(
                    TraceStep(phase, "pool " + pool.name, rep is not None, "weighted round robin", values)
                )
                if rep is not None:
                    return Seat(role.name, role.label, rep, f"round robin over pool {pool.name}", access)
        return Seat(role.name, role.label, None, "unfilled: nobody can take it", access)

    def changes(self, seats: list[Seat], members: tuple[Member, ...]) -> tuple[MemberChange, ...]:
        wanted = {s.rep: s for s in seats if s.rep is not None and not s.human}
        out: list[MemberChange] = []
        kept: set[str] = set()
        for m in members:
            if not m.managed:
                continue
            seat = wanted.get(m.rep) if m.rep is not None else None
            if seat is None or m.rep in kept:
                reason = (
                    "user unknown to the roster and the systems"
                    if m.rep is None
                    else f"{m.rep} {why}"
                    if (why := self.gone(m.rep))
                    else f"no longer needed as {m.role}"
                )
                out.append(MemberChange("remove", m.rep, m.role, None, m.id, reason))
                continue
            kept.add(seat.rep or "")
            if m.role != seat.label or m.access != seat.access:
                out.append(MemberChange("change", seat.rep, seat.label, seat.access, m.id, seat.how))
        for rep, seat in wanted.items():
            if rep not in kept:
                out.append(MemberChange("add", rep, seat.label, seat.access, None, seat.how))
        return tuple(out)


# ------------------------------------------------------------------------------------------------ edges
# Salesforce AccountTeamMember rows <-> values, for the cycle (the directory translates user ids and keys).


def member_from_row(row: Mapping[str, Any], directory: RepDirectory, *, managed: bool) -> Member:
    """A pulled AccountTeamMember row as a Member. Whether syncd manages it is the caller's knowledge: a
    row syncd created (or re-created after an owner change erased it) keeps the flag it had before."""
    return Member(
        directory.owner_from_salesforce(str(row.get("UserId") or "")),
        row.get("TeamMemberRole"),
        managed,
        str(row["Id"]) if row.get("Id") else None,
        Access(
            str(row.get("AccountAccessLevel") or "Read"),
            str(row.get("OpportunityAccessLevel") or "None"),
            str(row.get("CaseAccessLevel") or "None"),
        ),
    )


def member_fields(change: MemberChange, account_id: str, directory: RepDirectory) -> dict[str, Any] | None:
    """The AccountTeamMember fields one add or change writes; None for a remove, or for an add whose rep
    has no Salesforce user (nothing can be written)."""
    if change.op == "remove" or change.access is None:
        return None
    fields: dict[str, Any] = {
        "TeamMemberRole": change.label,
        "AccountAccessLevel": change.access.account,
        "OpportunityAccessLevel": change.access.opportunity,
        "CaseAccessLevel": change.access.case,
    }
    if change.op == "change":
        return fields
    user = directory.salesforce_owner_id(change.rep)
    if user is None:
        return None
    return {"AccountId": account_id, "UserId": user, **fields}


def restore_changes(
    decision: TeamDecision, members: tuple[Member, ...], directory: RepDirectory
) -> tuple[MemberChange, ...]:
    """The adds that put an account's team back after an owner change erased it (Salesforce deletes the team
    of an Account whose owner the API changes): the members humans added, as they were, and the seats the
    decision wants. A human's member for a rep who left is not put back (Salesforce takes no inactive user
    as a new member); the cycle keeps the restored humans' members marked as theirs (``human``)."""
    out: list[MemberChange] = []
    seen: set[str] = set()
    for m in members:
        if m.managed or m.rep is None or m.rep in seen or not directory.is_active(m.rep):
            continue
        seen.add(m.rep)
        out.append(
            MemberChange("add", m.rep, m.role, m.access, None, "put back: added by a human", human=True)
        )
    for seat in decision.seats:
        if seat.rep is None or seat.human or seat.rep in seen:
            continue
        seen.add(seat.rep)
        out.append(MemberChange("add", seat.rep, seat.label, seat.access, None, f"put back: {seat.how}"))
    return tuple(out)
