"""Account teams in the cycle: pull ``AccountTeamMember``, decide each account's tier and team next to its
owner, write tiers, members and role properties through the outbox, and keep the team across owner changes.

- **pull** (:func:`stage_team_page`, in the pull stage's ``/composite`` request): members created or changed since the
  watermark, staged with it; a member syncd does not know yet is a human's unless an integration (nobody on
  the roster) created it with a role of ``teams.toml``; a member a human added or changed makes its account's
  decision due. Removals are invisible to the pull (AccountTeamMember rows are erased, not soft-deleted), so
  an account decided live gets its whole team read first (:meth:`TeamStage.prepare`).
- **decide** (:class:`TeamStage`, one call per chunk of accounts before the engine, one after): the team of
  each account goes to the engine (its tier for every condition, its successor for an owner who left), then
  ``syncd.core.teams.decide_teams`` decides tier and seats; the chunk gets field actions (``Syncd_Tier__c``,
  ``syncd_tier``, the role properties on companies and their contacts) and team intents, stored in the
  chunk's transaction.
- **owner changes keep the team**: Salesforce erases an Account's team when the API changes its owner, and
  REST cannot ask to keep it. When a chunk changes an Account's owner, the team as it was read before the
  change (the humans' members and the seats the rules want) is written as *add* intents in the same
  transaction as the owner change; the Account batches go out first (push stage), the team writes after
  them (:func:`push_teams`), and an add for a user already on the team updates that member, so a replay
  after a crash between the two puts the team back and never duplicates it. An account whose team writes
  are still unconfirmed is not decided again until they went out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from syncd.connectors.base import Page, batched
from syncd.core.link import Group
from syncd.core.plan import Action, FieldChange
from syncd.core.teams import (
    Access,
    AccountTeamInput,
    Member,
    MemberChange,
    TeamDecision,
    decide_teams,
    member_fields,
    restore_changes,
)
from syncd.core.types import AccountView, Decision, Intent, RoundRobinState
from syncd.cycle.context import RunContext, WriteCache
from syncd.ledger.teams import TeamDecisionRow, TeamRow

log = logging.getLogger(__name__)

TEAM_OBJECT = "AccountTeamMember"
SF_TIER = "Syncd_Tier__c"
HS_TIER = "syncd_tier"
# Intent fields that say what a team write is; never sent.
OP = "_op"
MANAGED = "_managed"
TEAM_BATCH = 200  # sObject Collections: at most 200 records a call
TEAM_TURN = "team:"  # the round-robin state of a pool's seats is kept under this prefix


# ------------------------------------------------------------------------------------------------ pull


def stage_team_page(run: RunContext, page: Page) -> None:
    """Stage one page of AccountTeamMember rows changed since the watermark, with the watermark (the pull
    stage asks for them in its ``/composite`` request; see the module docstring)."""
    assert run.rules.teams is not None
    ledger = run.ledger
    labels = {r.label for r in run.rules.teams.roles.values()}
    rep_users = {
        uid
        for (system, uid), key in run.roster.users.items()
        if system == "salesforce" and key in run.rules.roster.reps
    }
    fresh = [r.fields for r in page.records if not r.deleted]
    stored = ledger.teams.members({str(f.get("AccountId")) for f in fresh})
    known = {(row.account_id, row.user_id): row for rows in stored.values() for row in rows}
    rows: list[TeamRow] = []
    changed: set[str] = set()
    for f in fresh:
        before = known.get((str(f.get("AccountId")), str(f.get("UserId"))))
        row = _row(f, before.managed if before else _first_sight(f, labels, rep_users))
        if before is None or not before.same(row):
            rows.append(row)
            if not row.managed or (before is not None and not before.managed):
                changed.add(row.account_id)
    run.report.pulled["salesforce"] += len(page.records)
    with ledger.transaction():
        if rows:
            ledger.teams.save(rows, run_id=run.run_id)
        if changed:
            # A human added or changed a member: the account's team is decided again.
            keys = ledger.identity.keys_of("salesforce", "Account", changed)
            ledger.teams.make_due(keys.values(), run.now)
        ledger.records.set_watermark("salesforce", TEAM_OBJECT, page.watermark, run_id=run.run_id)


def _first_sight(fields: Mapping[str, Any], labels: set[str], rep_users: set[str]) -> bool:
    """Whether a member syncd never saw is one it may manage: an integration created it (no rep on the
    roster) with one of the rules' roles. Anything a rep added is a human's."""
    return fields.get("TeamMemberRole") in labels and str(fields.get("CreatedById") or "") not in rep_users


def _row(fields: Mapping[str, Any], managed: bool) -> TeamRow:
    return TeamRow(
        str(fields.get("AccountId")),
        str(fields.get("UserId")),
        str(fields["Id"]) if fields.get("Id") else None,
        fields.get("TeamMemberRole"),
        str(fields.get("AccountAccessLevel") or "Read"),
        str(fields.get("OpportunityAccessLevel") or "None"),
        str(fields.get("CaseAccessLevel") or "None"),
        managed,
    )


# ---------------------------------------------------------------------------------------------- decide


@dataclass
class TeamChunk:
    """One chunk's team work: field actions for the pusher, and what :meth:`commit` stores with them."""

    stage: TeamStage
    actions: list[Action] = field(default_factory=list)
    intents: list[Intent] = field(default_factory=list)
    decisions: list[TeamDecisionRow] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)
    round_robin: Mapping[str, RoundRobinState] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def commit(self) -> None:
        """Store the chunk's team intents and decisions (inside the chunk's transaction)."""
        run = self.stage.run
        ledger = run.ledger
        if self.erased:
            # The owner change erases these teams: the restore intents hold them until they are confirmed.
            ledger.teams.replace_teams({a: [] for a in self.erased}, run_id=run.run_id)
        if self.intents:
            ledger.outbox.add_intents(self.intents, run_id=run.run_id)
        if self.decisions:
            ledger.teams.record_decisions(self.decisions, run_id=run.run_id)
        for pool, state in self.round_robin.items():
            ledger.decisions.set_round_robin_state(
                TEAM_TURN + pool, {"credits": dict(state.credits), "assigned": dict(state.assigned)}
            )
        run.report.teams.update(self.counts)


class TeamStage:
    """The team half of the decide stage of one run (see the module docstring)."""

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.ledger = run.ledger
        self.rules = run.rules
        self.teams = run.rules.teams
        self.live = not run.report.dry_run
        self.members: dict[str, list[TeamRow]] = {}
        self._opps: dict[str, tuple[int, int, float]] | None = None
        # Accounts whose team writes a previous run left unconfirmed: they go out first (push stage).
        self._writes: dict[tuple[str, str, str, str], Any] = {}
        self.pending = {
            i.key
            for i in self.ledger.outbox.unfinished(system="salesforce")
            if i.object == TEAM_OBJECT and i.key
        }

    @property
    def enabled(self) -> bool:
        return self.teams is not None

    def opportunities(self) -> dict[str, tuple[int, int, float]]:
        """Salesforce Account id -> (open, won, won amount), read once per run from the ledger."""
        if self._opps is None:
            out: dict[str, tuple[int, int, float]] = {}
            for r in self.ledger.records.iterate("salesforce", "Opportunity"):
                account = r.data.get("AccountId")
                if r.deleted or not account:
                    continue
                open_, won, amount = out.get(str(account), (0, 0, 0.0))
                is_won = bool(r.data.get("IsWon"))
                out[str(account)] = (
                    open_ + (0 if r.data.get("IsClosed") else 1),
                    won + (1 if is_won else 0),
                    amount + (float(r.data.get("Amount") or 0) if is_won else 0.0),
                )
            self._opps = out
        return self._opps

    def prepare(self, kind: str, accounts: Sequence[AccountView]) -> list[AccountView]:
        """The accounts with their won amount and team, for the engine. Deciding accounts live, the teams
        are read whole first (the pull cannot see a removed member), before any owner change of this chunk."""
        if not self.enabled or not accounts:
            return list(accounts)
        ids = [a.salesforce_id for a in accounts if a.salesforce_id]
        # The members of this chunk's accounts only: memory stays bounded by the chunk, not the org.
        self.members = {}
        if kind == "account" and self.live and ids:
            self._read([a.salesforce_id for a in accounts if a.salesforce_id and a.key not in self.pending])
        missing = [i for i in ids if i not in self.members]
        if missing:
            stored = self.ledger.teams.members(missing)
            for i in missing:
                self.members[i] = stored.get(i, [])
        directory = self.run.directory
        out = []
        for a in accounts:
            rows = self.members.get(a.salesforce_id or "", [])
            team = tuple(
                (row.role or "", rep)
                for row in rows
                if (rep := directory.owner_from_salesforce(row.user_id)) is not None
            )
            amount = self.opportunities().get(a.salesforce_id or "", (0, 0, 0.0))[2]
            out.append(replace(a, won_amount=amount, team=team))
        return out

    def _read(self, account_ids: list[str]) -> None:
        connector = self.run.connectors["salesforce"]
        read = getattr(connector, "read_account_teams", None)
        if read is None or not account_ids:
            return
        assert self.teams is not None
        labels = {r.label for r in self.teams.roles.values()}
        rep_users = {
            uid
            for (system, uid), key in self.run.roster.users.items()
            if system == "salesforce" and key in self.rules.roster.reps
        }
        stored = self.ledger.teams.members(account_ids)
        known = {(r.account_id, r.user_id): r for rows in stored.values() for r in rows}
        teams: dict[str, list[TeamRow]] = {i: [] for i in account_ids}
        for batch in read(account_ids):
            for raw in batch:
                f = raw.fields
                before = known.get((str(f.get("AccountId")), str(f.get("UserId"))))
                teams.setdefault(str(f.get("AccountId")), []).append(
                    _row(f, before.managed if before else _first_sight(f, labels, rep_users))
                )
        self.ledger.teams.replace_teams(teams, run_id=self.run.run_id)
        self.members.update(teams)

    def chunk(
        self,
        decisions: Sequence[Decision],
        groups: Mapping[str, Group],
        merged: Mapping[str, Mapping[str, Any]],
        actions: Sequence[Action],
        writes: WriteCache | None = None,
    ) -> TeamChunk:
        """Decide the teams of one chunk's accounts: the field actions to add to the chunk's, and the
        intents and decisions to store with them (:meth:`TeamChunk.commit`)."""
        out = TeamChunk(self)
        if not self.enabled:
            return out
        run = self.run
        directory = run.directory
        policy = self.rules.policy
        wanted = [
            d for d in decisions if d.kind == "account" and d.key in groups and d.key not in self.pending
        ]
        if not wanted:
            return out
        previous = self.ledger.teams.decisions([d.key for d in wanted])
        inputs: list[AccountTeamInput] = []
        for d in wanted:
            g = groups[d.key]
            fields = merged[d.key]
            sf = g.salesforce
            current = fields.get("owner")
            owner = d.owner if d.owner is not None else (current if isinstance(current, str) else None)
            prev = previous.get(d.key)
            previous_owner, since = (prev.previous_owner, prev.owner_since) if prev else (None, None)
            if prev is not None and prev.owner is not None and prev.owner != owner:
                previous_owner, since = prev.owner, run.now
            open_, won, amount = self.opportunities().get(sf.id if sf else "", (0, 0, 0.0))
            rows = self.members.get(sf.id, []) if sf else []
            current_tier = (
                sf.data.get(SF_TIER)
                if sf is not None
                else (g.hubspot.data.get(HS_TIER) if g.hubspot else None)
            )
            inputs.append(
                AccountTeamInput(
                    key=d.key,
                    fields=fields,
                    owner=owner,
                    customer=policy.customer_stage is not None and d.stage == policy.customer_stage,
                    open_opportunities=open_,
                    won_opportunities=won,
                    won_amount=amount,
                    members=tuple(_member(r, directory) for r in rows),
                    previous_owner=previous_owner,
                    owner_since=since,
                    current_tier=current_tier if isinstance(current_tier, str) else None,
                )
            )
        pools = {**self.rules.routing.pools, **(self.teams.pools if self.teams else {})}
        state = {}
        for name in pools:
            # The seats' own round robin (a pool routing uses too keeps a separate turn for seats), so that
            # who gets a seat never changes who the pool's next lead goes to.
            saved = self.ledger.decisions.round_robin_state(TEAM_TURN + name)
            if saved is not None:
                state[name] = RoundRobinState(
                    name, dict(saved.get("credits", {})), dict(saved.get("assigned", {}))
                )
        result = decide_teams(inputs, self.rules, state, run.now, directory=directory)
        out.round_robin = result.round_robin
        owner_changes = {
            a.record_id
            for a in actions
            if a.system == "salesforce"
            and a.object == "Account"
            and a.record_id
            and any(c.kind == "owner" for c in a.changes)
        }
        contacts = self._contacts(groups, wanted)
        self._writes = self._last_writes(groups, wanted, contacts, writes or WriteCache(self.ledger))
        counts: dict[str, int] = {}
        for td, given in zip(result.decisions, inputs, strict=True):
            g = groups[td.key]
            sf = g.salesforce
            changes: tuple[MemberChange, ...] = td.changes
            restored = False
            if sf is not None and sf.id in owner_changes:
                # The owner change erases the team: put back the humans' members and the wanted seats.
                changes = restore_changes(td, given.members, directory)
                out.erased.append(sf.id)
                restored = True
            if sf is not None:
                for change in changes:
                    intent = _intent(change, td.key, sf.id, directory)
                    if intent is not None:
                        out.intents.append(intent)
                        op = "restore" if restored else change.op
                        counts[op] = counts.get(op, 0) + 1
            tier_actions = self._field_actions(td, g, contacts.get(td.key, ()), directory)
            counts["tier"] = counts.get("tier", 0) + sum(
                1 for a in tier_actions for c in a.changes if c.field in (SF_TIER, HS_TIER)
            )
            out.actions.extend(tier_actions)
            out.decisions.append(
                TeamDecisionRow(
                    key=td.key,
                    account_id=sf.id if sf else None,
                    tier=td.tier_label,
                    owner=td.owner,
                    previous_owner=given.previous_owner,
                    owner_since=given.owner_since,
                    decided_at=run.now,
                    data=_decision_data(td),
                )
            )
        out.counts = {k: v for k, v in counts.items() if v}
        self._writes = {}  # the chunk's; kept, they would hold its writes until the end of the run
        return out

    def _last_writes(
        self,
        groups: Mapping[str, Group],
        decisions: Sequence[Decision],
        contacts: Mapping[str, list[Any]],
        cache: WriteCache,
    ) -> dict[tuple[str, str, str, str], Any]:
        """syncd's latest writes to the records the chunk's tiers and roles go to: a value syncd wrote after
        the record was last pulled is the record's value (its echo is not pulled yet)."""
        refs: list[tuple[str, str, str]] = []
        contact_ids: list[str] = []
        for d in decisions:
            g = groups[d.key]
            refs.extend(r.ref for r in (g.salesforce, g.hubspot) if r is not None)
            contact_ids.extend(c.id for c in contacts.get(d.key, ()))
        found = cache.of(refs)
        out = {(*ref, name): w for ref in refs for name, w in found.get(ref, {}).items()}
        if contact_ids:
            # Of the contacts (not decided in this chunk), only the role properties are read: every one of
            # an org's contacts is some account's, with several of syncd's writes each.
            assert self.teams is not None
            props = {
                r.hubspot_property for r in self.teams.roles.values() if r.on_contacts and r.hubspot_property
            }
            written = self.ledger.outbox.last_writes("hubspot", "contacts", contact_ids, fields=props)
            out.update({("hubspot", "contacts", rid, name): w for (rid, name), w in written.items()})
        return out

    def _current(self, record: Any, name: str) -> Any:
        """A field's value as the record shows it, or as syncd wrote it after the record was last pulled."""
        w = self._writes.get((record.system, record.object, record.id, name))
        if w is not None and (record.seen_at is None or w.at >= record.seen_at):
            return w.value
        return record.data.get(name)

    def _contacts(self, groups: Mapping[str, Group], decisions: Sequence[Decision]) -> dict[str, list[Any]]:
        """Account key -> the live HubSpot contacts of its domain (their role properties follow the team)."""
        assert self.teams is not None
        if not any(r.on_contacts and r.hubspot_property for r in self.teams.roles.values()):
            return {}
        domains: dict[str, str] = {}
        for d in decisions:
            g = groups[d.key]
            domain = next((r.domain for r in (g.hubspot, g.salesforce) if r is not None and r.domain), None)
            if domain:
                domains[d.key] = domain
        if not domains:
            return {}
        # Of each contact, only what the team's writes to it read: the role properties, and its email (label).
        props = sorted(
            {r.hubspot_property for r in self.teams.roles.values() if r.on_contacts and r.hubspot_property}
        )
        people = self.ledger.records.live_contacts_by_domain(set(domains.values()), fields=[*props, "email"])
        out: dict[str, list[Any]] = {}
        for account, domain in domains.items():
            contacts = [record for _, record in people.get(domain, ())]
            if contacts:
                out[account] = contacts
        return out

    def _field_actions(
        self, td: TeamDecision, g: Group, contacts: Iterable[Any], directory: Any
    ) -> list[Action]:
        """The tier on both systems' account, the role properties on the company and its contacts."""
        actions: list[Action] = []
        label = (
            g.hubspot.data.get("name")
            if g.hubspot
            else (g.salesforce.data.get("Name") if g.salesforce else "")
        )
        if td.tier_label is not None and g.salesforce is not None:
            old = self._current(g.salesforce, SF_TIER)
            if old != td.tier_label:
                actions.append(
                    Action(
                        "salesforce",
                        "Account",
                        td.key,
                        (FieldChange(SF_TIER, "field", old, td.tier_label),),
                        f"tier {td.tier}",
                        td.owner,
                        record_id=g.salesforce.id,
                        label=str(label or ""),
                    )
                )
        wanted: dict[str, str | None] = {}
        on_contacts: dict[str, str | None] = {}
        for prop, rep, contacts_too in td.hubspot:
            value = directory.hubspot_owner_id(rep) if rep is not None else None
            wanted[prop] = value
            if contacts_too:
                on_contacts[prop] = value
        if g.hubspot is not None:
            props = dict(wanted)
            if td.tier_label is not None:
                props[HS_TIER] = td.tier_label
            changes = _differences(g.hubspot, props, self._current)
            if changes:
                actions.append(
                    Action(
                        "hubspot",
                        "companies",
                        td.key,
                        changes,
                        f"account team ({td.tier or 'no tier'})",
                        td.owner,
                        record_id=g.hubspot.id,
                        label=str(label or ""),
                    )
                )
        for contact in contacts:
            changes = _differences(contact, on_contacts, self._current)
            if changes:
                actions.append(
                    Action(
                        "hubspot",
                        "contacts",
                        td.key,
                        changes,
                        "the account team on its contacts",
                        td.owner,
                        record_id=contact.id,
                        label=str(contact.data.get("email") or ""),
                    )
                )
        return actions


def _differences(
    record: Any, wanted: Mapping[str, str | None], current: Callable[[Any, str], Any]
) -> tuple[FieldChange, ...]:
    """Field changes for the values that differ (a blank and an absent value are the same)."""
    out = []
    for name, value in wanted.items():
        old = current(record, name)
        if (old or None) != (value or None):
            out.append(FieldChange(name, "field", old, value if value is not None else ""))
    return tuple(out)


def _member(row: TeamRow, directory: Any) -> Member:
    return Member(
        directory.owner_from_salesforce(row.user_id),
        row.role,
        row.managed,
        row.member_id,
        Access(row.account_access or "Read", row.opportunity_access or "None", row.case_access or "None"),
    )


def _intent(change: MemberChange, key: str, account_id: str, directory: Any) -> Intent | None:
    """The outbox intent of one team write. An add is keyed by account and user (its member id is only
    known once created); a change or a remove by the member's id."""
    if change.op == "remove":
        if change.member_id is None:
            return None
        return Intent(
            "salesforce", TEAM_OBJECT, {OP: "remove"}, change.reason, record_id=change.member_id, key=key
        )
    fields = member_fields(change, account_id, directory)
    if fields is None:
        return None
    if change.op == "change":
        return Intent(
            "salesforce",
            TEAM_OBJECT,
            {**fields, OP: "change"},
            change.reason,
            record_id=change.member_id,
            key=key,
        )
    return Intent(
        "salesforce",
        TEAM_OBJECT,
        {**fields, OP: "add", MANAGED: not change.human},
        change.reason,
        record_id=f"+{account_id}/{fields['UserId']}",
        key=key,
    )


def _decision_data(td: TeamDecision) -> dict[str, Any]:
    from syncd.cycle.decide import trace_rows  # decide imports this module

    return {
        "tier": td.tier,
        "tier_label": td.tier_label,
        "stage": td.stage,
        "successor": td.successor,
        "seats": [
            {"role": s.role, "label": s.label, "rep": s.rep, "how": s.how, "human": s.human} for s in td.seats
        ],
        "changes": [{"op": c.op, "rep": c.rep, "label": c.label, "reason": c.reason} for c in td.changes],
        "trace": trace_rows(td.trace),
    }


# ------------------------------------------------------------------------------------------------ push


def push_teams(run: RunContext) -> bool:
    """Send the outbox's team writes (after the Account batches, so an owner change never erases a team
    written after it), 200 a call, each batch confirmed with the ledger's members in one transaction. A dry
    run counts them. False when the run was stopped."""
    intents = [i for i in run.ledger.outbox.unfinished(system="salesforce") if i.object == TEAM_OBJECT]
    if not intents:
        return True
    if run.report.dry_run:
        run.report.pushed["salesforce"] += len(intents)
        return True
    connector = run.connectors["salesforce"]
    push = getattr(connector, "push_account_team", None)
    if push is None:
        return True
    from syncd.connectors.salesforce import TeamWrite

    for batch in batched(intents, TEAM_BATCH):
        writes = [
            TeamWrite(
                i.fields[OP],
                {k: v for k, v in i.fields.items() if not k.startswith("_")},
                None if i.fields[OP] == "add" else i.record_id,
            )
            for i in batch
        ]
        run.ledger.outbox.mark_sent(i.id for i in batch)
        results = [r for rs in push(writes) for r in rs]
        _confirm(run, batch, results)
        if run.stopped():
            return False
    return True


def _confirm(run: RunContext, batch: Sequence[Intent], results: Sequence[Any]) -> None:
    ledger = run.ledger
    confirmed: dict[str, str | None] = {}
    failed: dict[str, str] = {}
    saved: list[TeamRow] = []
    with ledger.transaction():
        for intent, result in zip(batch, results, strict=True):
            op = intent.fields[OP]
            if not result.ok:
                failed[intent.id] = f"{result.code}: {result.message}".strip(": ")
                run.report.failed["salesforce"] += 1
                continue
            run.report.pushed["salesforce"] += 1
            f = intent.fields
            if op == "add":
                confirmed[intent.id] = str(result.id)
                saved.append(
                    TeamRow(
                        str(f["AccountId"]),
                        str(f["UserId"]),
                        str(result.id),
                        f.get("TeamMemberRole"),
                        f.get("AccountAccessLevel"),
                        f.get("OpportunityAccessLevel"),
                        f.get("CaseAccessLevel"),
                        bool(f.get(MANAGED, True)),
                    )
                )
            elif op == "change":
                confirmed[intent.id] = None
                row = ledger.teams.by_member(str(intent.record_id))
                if row is not None:
                    saved.append(
                        replace(
                            row,
                            role=f.get("TeamMemberRole"),
                            account_access=f.get("AccountAccessLevel"),
                            opportunity_access=f.get("OpportunityAccessLevel"),
                            case_access=f.get("CaseAccessLevel"),
                        )
                    )
            else:
                confirmed[intent.id] = None
                ledger.teams.remove_member(str(intent.record_id))
        if saved:
            ledger.teams.save(saved, run_id=run.run_id)
        if confirmed:
            ledger.outbox.confirm(confirmed)
        if failed:
            ledger.outbox.fail(failed)
            for intent_id, reason in failed.items():
                log.warning("account team write %s refused: %s", intent_id, reason)


def pending_team_intents(intents: Iterable[Intent]) -> tuple[list[Intent], list[Intent]]:
    """(the other intents, the team writes): replay hands the first to the pusher; the push stage sends the
    second after the Account batches."""
    others: list[Intent] = []
    team: list[Intent] = []
    for i in intents:
        (team if i.system == "salesforce" and i.object == TEAM_OBJECT else others).append(i)
    return others, team
