"""Decide: accounts, then persons, in chunks of keys (memory stays bounded), with the engine
(``syncd.core.engine.decide``) and the planner (``syncd.core.plan.plan_key``).

The keys decided: keys with dirty records, keys whose decision is *due* (``syncd.core.schedule``), quarantined
records due for a retry, and the persons of accounts whose decision changed. Each chunk's decisions, sticky
owners, round-robin state, day counts and actions (handed to the pusher, which writes them to the outbox as
intents) are stored in one transaction that also marks the keys clean.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.core.engine import decide
from syncd.core.impact import Move
from syncd.core.limits import apply_limits, limit_rules, refused_record
from syncd.core.link import Group, first, group
from syncd.core.plan import Action, plan_key
from syncd.core.schedule import due_at, iso, kept_hold
from syncd.core.types import (
    AccountFacts,
    AccountView,
    Assignment,
    AssignmentRow,
    Decision,
    DecisionRow,
    LedgerView,
    Override,
    OverrideRow,
    PersonView,
    RecordRow,
    RoundRobinState,
    WriteRow,
)
from syncd.core.views import (
    BadRecord,
    account_reference,
    account_view,
    logical_fields,
    person_view,
)
from syncd.cycle import limits
from syncd.cycle.context import RecordRef, RunContext, WriteCache
from syncd.cycle.rules_change import adopt_unaffected
from syncd.cycle.teams import TeamStage

_PLAIN = (str, int, float, bool, type(None))
ACCOUNT_CHUNK_DIVISOR = 4


def decide_all(run: RunContext) -> bool:
    """Decide every key that needs it; False when the run was stopped."""
    run.progress.stage("decide")
    adopt_unaffected(run)
    return _Decide(run).decide()


class _Decide:
    """The decide stage of one run: its quarantine view and the opportunity counts it reads once."""

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.ledger = run.ledger
        self.rules = run.rules
        self.mapping = run.mapping
        self.directory = run.directory
        self.report = run.report
        self.run_id = run.run_id
        self.now = run.now
        self.held: set[RecordRef] = set()
        self.due_refs: set[RecordRef] = set()
        self.facts: dict[str, str] = {}
        self.limits = limits.current(run)
        self.limit_rules = limit_rules(run.mapping)
        self.teams = TeamStage(run)
        self.writes = WriteCache(self.ledger)
        # What the persons of each account decided in this run take from it (None: the account's records are
        # in quarantine). The accounts phase leaves those of every account it decided; a chunk of persons
        # decides the others it needs, once per run: nothing an account's decision is made of changes after
        # the accounts are decided, and a chunk of persons shares most of its accounts with the chunks before.
        self.account_facts: dict[str, AccountFacts | None] = {}
        self.facts_pool: dict[tuple[Any, ...], AccountFacts] = {}

    def decide(self) -> bool:
        held = self.run.held_quarantine()
        self.held = {(q.system, q.object, q.record_id) for q in held if q.next_attempt_at > self.now}
        due_quarantine = [q for q in held if q.next_attempt_at <= self.now]
        self.due_refs = {(q.system, q.object, q.record_id) for q in due_quarantine}
        retry_keys = {q.key for q in due_quarantine if q.key}
        # The ids only (a first cycle: every opportunity of the org), kept until they are marked clean.
        opportunity_ids = [
            r.id for r in self.ledger.records.iterate("salesforce", "Opportunity", dirty_only=True)
        ]
        account_ids = {
            str(r.data.get("AccountId"))
            for r in self.ledger.records.by_ids("salesforce", "Opportunity", opportunity_ids).values()
            if r.data.get("AccountId")
        }
        extra_accounts = set(self.ledger.identity.keys_of("salesforce", "Account", account_ids).values())
        extra_accounts |= {k for k in retry_keys if k.startswith("a:")}
        # Accounts and opportunities stay dirty until the persons they affect are decided too: a stop or a
        # crash in between then decides those persons again on the next run.
        accounts: list[str] = []
        if not self._decide_kind("account", sorted(extra_accounts), accounts, clean=False):
            return False
        extra_persons = {k for k in retry_keys if k.startswith("p:")}
        if (
            accounts
            and not self.ledger.decisions.all_due_or_stale(self.now, self.rules.digest, kind="person")
            and not self.ledger.records.every_key_dirty("person")
        ):
            # The persons of the accounts just decided follow them (unless every person is decided anyway:
            # a daily re-score, a change of rules, a first cycle).
            extra_persons |= self._persons_of_accounts(accounts)
        extra = sorted(extra_persons)
        # Only the sorted list is kept while deciding: in a first cycle these are nearly every person's key.
        del extra_persons
        if not self._decide_kind("person", extra, None, clean=True):
            return False
        with self.ledger.transaction():
            self.ledger.records.mark_clean(accounts)
            if opportunity_ids:
                self.ledger.records.mark_records_clean(
                    ("salesforce", "Opportunity", id_) for id_ in opportunity_ids
                )
        return True

    def _persons_of_accounts(self, accounts: Sequence[str]) -> set[str]:
        if not accounts:
            return set()
        # Their domains and then the persons' keys only: no record of either is read whole.
        domains = self.ledger.records.domains_of_keys(sorted(accounts))
        return self.ledger.identity.keys_with_domains(domains, kind="person")

    def _keys(self, kind: str, extra: list[str]) -> Iterator[str]:
        """Every key of ``kind`` to decide, in key order, each once."""

        def pages(fetch: Callable[[str], list[str]]) -> Iterator[str]:
            after = ""
            while True:
                batch = fetch(after)
                yield from batch
                if len(batch) < self.run.chunk:
                    return
                after = batch[-1]

        dirty = pages(
            lambda after: self.ledger.records.dirty_keys(kind=kind, after=after, limit=self.run.chunk)
        )
        due = pages(
            lambda after: self.ledger.decisions.due_keys(
                self.now, kind=kind, after=after, limit=self.run.chunk
            )
        )
        # Decisions made under other rules: a change of rules (a file edit, a reload) makes them due.
        stale = pages(
            lambda after: self.ledger.decisions.stale_keys(
                self.rules.digest, kind=kind, after=after, limit=self.run.chunk
            )
        )
        last = None
        for key in heapq.merge(dirty, due, stale, iter(extra)):
            if key != last:
                last = key
                yield key

    def _decide_kind(self, kind: str, extra: list[str], decided: list[str] | None, *, clean: bool) -> bool:
        """Decide every key of ``kind`` in chunks; ``decided`` collects the keys (the accounts': their
        persons follow them), None when nothing needs them (100,000 persons' keys are 9 MB)."""
        chunk: list[str] = []
        # An account's chunk carries the HubSpot contacts of its domain too (their role properties follow its
        # team), several per account: a quarter of the persons' chunk keeps the peak of memory alike.
        size = self.run.chunk if kind == "person" else max(1, self.run.chunk // ACCOUNT_CHUNK_DIVISOR)
        for key in self._keys(kind, extra):
            chunk.append(key)
            if len(chunk) >= size:
                self._decide_chunk(kind, chunk, clean=clean)
                if decided is not None:
                    decided.extend(chunk)
                self.run.progress.advance(len(chunk))
                chunk = []
                if self.run.stopped() or not self.run.pusher.flush_full():
                    return False
        if chunk:
            self._decide_chunk(kind, chunk, clean=clean)
            if decided is not None:
                decided.extend(chunk)
            self.run.progress.advance(len(chunk))
        return not self.run.stopped() and self.run.pusher.flush_full()

    def _decide_chunk(self, kind: str, keys: list[str], *, clean: bool) -> None:
        self.writes = WriteCache(self.ledger)
        records = self._records_of(keys)
        groups: dict[str, Group] = {}
        merged: dict[str, dict[str, Any]] = {}
        bad: list[tuple[RecordRow, str, str]] = []
        for key in keys:
            g = group(key, kind, records.get(key, ()))
            if g.empty and not g.readonly:
                continue
            try:
                merged[key] = self._logical(g)
            except _BadRecord as exc:
                bad.append((exc.record, key, exc.reason))
                continue
            groups[key] = g
        persons: list[PersonView] = []
        accounts: list[AccountView] = []
        account_keys: list[str] = []
        # Deciding persons: the facts of their accounts decided earlier in the run, and the accounts to decide.
        facts: dict[str, AccountFacts] = {}
        deciding: list[str] = []
        if kind == "person":
            account_of = self._accounts_of(groups)
            account_keys = sorted({a for a in account_of.values() if a})
            for key, g in groups.items():
                persons.append(self._person_view(g, merged[key], account_of.get(key)))
            for akey in account_keys:
                if akey not in self.account_facts:
                    deciding.append(akey)
                elif (known := self.account_facts[akey]) is not None:
                    facts[akey] = known
            accounts = self._accounts(deciding)
        else:
            accounts = [self._account_view(g, merged[key]) for key, g in groups.items()]
        previous = self.ledger.decisions.get_many(list(groups), traces=False)
        overrides = self.ledger.overrides.active(list(groups), now=self.now)
        # Of the accounts with facts, the ledger's owner is read only where their decision named none.
        unowned = [a for a in account_keys if (f := facts.get(a)) is None or f.owner is None]
        view = self._ledger_view(list(groups), unowned, deciding, previous, overrides)
        accounts = self.teams.prepare(kind, accounts)
        result = decide(
            persons, accounts, self.rules, view, self.now, directory=self.directory, account_facts=facts
        )
        for akey, found in result.accounts.items():
            self.account_facts[akey] = self._shared(found)
        decisions = [d for d in result.decisions if d.kind == kind and d.key in groups]
        writes = self._last_writes(groups.values())
        actions: list[Action] = []
        for d in decisions:
            self._count_move(d, previous.get(d.key), merged[d.key])
            g = groups[d.key]
            planned = plan_key(
                d,
                g,
                self.mapping,
                self.directory,
                merged=merged[d.key],
                last_writes=writes,
                held=self.held,
                policy=self.rules.policy,
                now=self.now,
            )
            limited = apply_limits(planned, self.limits, self.limit_rules)
            actions.extend(limited.actions)
            for refused in limited.refused:
                record = refused_record(g, refused.action)
                if record is not None:
                    bad.append((record, d.key, refused.reason))
            self.report.decided[kind] += 1
            for r in (*g.writable, *g.readonly):
                self.report.decided_records[r.system] += 1
        teams = (
            self.teams.chunk(decisions, groups, merged, actions, self.writes) if kind == "account" else None
        )
        if teams is not None:
            actions.extend(teams.actions)
        acted = {(a.system, a.object, a.record_id) for a in actions if a.record_id}
        acted |= {r.ref for r, _, _ in bad}
        acted |= {("hubspot", "contacts", a.create_key) for a in actions if a.create_key}
        store = self.run.store_decisions
        with self.ledger.transaction():
            if store:
                changed = set(
                    self.ledger.decisions.record(self._decision_rows(decisions, previous, overrides))
                )
            else:
                # A dry run stores no rows: only which outcomes changed is needed.
                changed = set(_changed(decisions, previous))
            self.report.handoffs += sum(1 for d in decisions if d.handoff is not None and d.key in changed)
            for d in decisions:
                if d.key in changed:
                    self.run.log_decision(
                        d.key,
                        f"stage {d.stage}, score {d.score}, owner {d.owner} (team {d.team}, by {d.rule})",
                        stage=d.stage,
                        score=d.score,
                        owner=d.owner,
                        team=d.team,
                        rule=d.rule,
                    )
            if store:
                self.ledger.decisions.set_assignments(
                    AssignmentRow(d.key, d.owner, d.team, d.assigned_at, d.rule, self.run_id)
                    for d in decisions
                    if d.owner is not None and d.team is not None and d.assigned_at is not None
                )
            for pool, state in result.round_robin.items():
                self.ledger.decisions.set_round_robin_state(
                    pool, {"credits": dict(state.credits), "assigned": dict(state.assigned)}
                )
            for rep, n in result.assigned_today.items():
                self.ledger.decisions.add_daily_count(rep, self.now.date(), n)
            for record, key, reason in bad:
                self.run.quarantine(record.system, record.object, record.id, reason, key)
            mine = {(r.system, r.object, r.id) for g in groups.values() for r in g.writable}
            for ref in self.due_refs & mine - acted:
                # Due for a retry and nothing left to write: whatever held it is resolved.
                self.ledger.quarantine.release(*ref)
            self.run.pusher.accept(actions)
            if teams is not None:
                # The restore of a team after an owner change commits with the owner change's intent.
                teams.commit()
            if clean:
                self.ledger.records.mark_clean(keys)

    def _records_of(self, keys: Sequence[str]) -> dict[str, list[RecordRow]]:
        """The keys' records as staged; in a plan from the ledger, as syncd's confirmed writes left them."""
        records = self.ledger.records.of_keys(keys)
        if not self.run.assume_writes:
            return records
        return _as_written(self.ledger, keys, records, self.writes)

    def _shared(self, facts: AccountFacts) -> AccountFacts:
        """Equal facts as one object: most accounts share them (a few fields, a few owners), and a run keeps
        every account's until its persons are decided (13,500 at 100,000 persons)."""
        try:
            return self.facts_pool.setdefault((tuple(facts.fields.items()), facts.owner, facts.team), facts)
        except TypeError:  # a field value that cannot be hashed (a list): kept as it is
            return facts

    def _accounts(self, keys: Sequence[str]) -> list[AccountView]:
        """The views of accounts a chunk of persons decides (an account whose records are in quarantine has
        none: its persons decide without it)."""
        records = self._records_of(keys) if keys else {}
        views = []
        for akey in keys:
            ag = group(akey, "account", records.get(akey, ()))
            try:
                views.append(self._account_view(ag, self._logical(ag)))
            except _BadRecord:
                self.account_facts[akey] = None
        return views

    def _count_move(self, d: Decision, prev: DecisionRow | None, fields: Mapping[str, Any]) -> None:
        """Count the decision's ownership move, from the previous decision (else the systems' current
        owner) to the new one, in the report's impact."""
        if prev is not None:
            before = (prev.owner, prev.team, prev.stage)
        else:
            current = fields.get("owner")
            before = (current if isinstance(current, str) else None, None, fields.get("stage"))
        owner = d.owner if d.owner is not None else before[0]
        if (owner, d.team, d.stage) == before:
            return  # not a move (``Impact.add`` would count nothing)
        self.report.impact.add(
            Move(
                d.key,
                d.kind,
                _name(d.kind, fields),
                before[0],
                owner,
                before[1],
                d.team,
                before[2],
                d.stage,
                d.rule,
            )
        )

    def _logical(self, g: Group) -> dict[str, Any]:
        return logical_fields(g, self.mapping, self.directory)

    def _accounts_of(self, groups: Mapping[str, Group]) -> dict[str, str | None]:
        """Person key -> account key: a Contact's Account, else the account of the email's domain."""
        account_ids: dict[str, str] = {}
        domains: dict[str, str] = {}
        for key, g in groups.items():
            ref = account_reference(g)
            if ref is not None:
                (account_ids if ref[0] == "id" else domains)[key] = ref[1]
        by_id = self.ledger.identity.keys_of("salesforce", "Account", set(account_ids.values()))
        by_domain = self.ledger.identity.keys_by_domain(set(domains.values()), kind="account")
        out: dict[str, str | None] = {}
        for key in groups:
            if key in account_ids:
                out[key] = by_id.get(account_ids[key])
            elif key in domains:
                out[key] = first(by_domain.get(domains[key]))
            else:
                out[key] = None
        return out

    def _person_view(self, g: Group, fields: Mapping[str, Any], account: str | None) -> PersonView:
        return person_view(g, fields, account)

    def _account_view(self, g: Group, fields: Mapping[str, Any]) -> AccountView:
        # The counts the teams read too (open, won, won amount), read once per run.
        return account_view(g, fields, self.teams.opportunities())

    def _ledger_view(
        self,
        keys: list[str],
        account_keys: list[str],
        deciding: list[str],
        previous: Mapping[str, DecisionRow],
        active: Mapping[str, OverrideRow],
    ) -> LedgerView:
        everyone = keys + account_keys
        # Of the accounts a chunk of persons decides, only the influencers their decisions name.
        influencers = self.ledger.decisions.influencers(deciding) if deciding else {}
        for key, row in previous.items():
            influencers[key] = tuple(row.data.get("influencers", ()))
        assignments = {}
        for key, a in self.ledger.decisions.assignments(everyone).items():
            assignments[key] = Assignment(
                key, a.rep, a.team, a.reason, a.assigned_at, influencers.get(key, ())
            )
        overrides = {
            key: Override(key, o.rep or "", o.seen_at, o.changed_by or "", o.system)
            for key, o in active.items()
            if o.rep
        }
        pools = {}
        for name in self.rules.routing.pools:
            state = self.ledger.decisions.round_robin_state(name)
            if state is not None:
                pools[name] = RoundRobinState(
                    name, dict(state.get("credits", {})), dict(state.get("assigned", {}))
                )
        holds = {}
        for key in keys:
            prev = previous.get(key)
            until = prev.data.get("hold_until") if prev is not None else None
            if until:
                holds[key] = datetime.fromisoformat(until)
        return LedgerView(
            assignments=assignments,
            overrides=overrides,
            round_robin=pools,
            daily_counts=self.ledger.decisions.daily_counts(self.now.date()),
            holds=holds,
        )

    def _decision_rows(
        self,
        decisions: Sequence[Decision],
        previous: Mapping[str, DecisionRow],
        overrides: Mapping[str, OverrideRow],
    ) -> list[DecisionRow]:
        rows = []
        for d in decisions:
            prev = previous.get(d.key)
            hold = kept_hold(d.hold_until, prev.data if prev is not None else None, self.now)
            policy = self.rules.policy
            sla = None
            if d.kind == "person" and d.stage in policy.sla_stages and d.assigned_at is not None:
                sla = d.assigned_at + timedelta(hours=policy.sla_hours)
            override = overrides.get(d.key)
            due = due_at(
                self.now,
                sla_deadline=sla,
                override_until=override.honoured_until if override is not None else None,
                hold=hold,
            )
            data = {
                "kind": d.kind,
                "rule": d.rule,
                # Which rules moved this record when a change of rules did (explain shows it).
                "rules_change": _rules_change(d, prev, self.rules.digest),
                "influencers": list(d.influencers),
                "handoff": list(d.handoff) if d.handoff else None,
                "create_salesforce_lead": d.create_salesforce_lead,
                "hold_until": iso(hold),
                # The roster facts the owner was decided with (the systems' and the files').
                "owner_facts": self._owner_facts(d.owner),
                "due_at": iso(due),
            }
            rows.append(
                DecisionRow(
                    key=d.key,
                    digest=self.rules.digest,
                    trace=trace_rows(d.trace, raw=True) if self.run.keep_traces else [],
                    decided_at=self.now,
                    stage=d.stage,
                    score=float(d.score) if d.score is not None else None,
                    owner=d.owner,
                    team=d.team,
                    data=data,
                    run_id=self.run_id,
                )
            )
        return rows

    def _owner_facts(self, owner: str | None) -> str | None:
        """What the roster said of a rep owner when deciding: active in the systems and the files,
        available, pools, daily cap (None for a queue or no owner)."""
        if owner is None or owner.startswith("queue:"):
            return None
        found = self.facts.get(owner)
        if found is None:
            rep = self.rules.roster.reps.get(owner)
            parts = ["active" if self.directory.is_active(owner) else "inactive in a system"]
            if rep is None:
                parts.append("not on the roster")
            else:
                if not rep.active:
                    parts.append("inactive (roster)")
                ok, why = rep.available(self.now)
                parts.append("available" if ok else why)
                pools = [p.name for p in self.rules.routing.pools.values() if owner in p.members]
                parts.append("pools " + "+".join(pools) if pools else "no pool")
                if rep.daily_cap is not None:
                    parts.append(f"cap {rep.daily_cap}/day")
            found = ", ".join(parts)
            self.facts[owner] = found
        return found

    def _last_writes(self, groups: Iterable[Group]) -> Mapping[tuple[str, str, str, str], WriteRow]:
        self.writes.of(r.ref for g in groups for r in g.writable)
        return self.writes.by_field()


def _as_written(
    ledger: Any, keys: Sequence[str], records: dict[str, list[RecordRow]], writes: WriteCache
) -> dict[str, list[RecordRow]]:
    """The records as the systems hold them once syncd's confirmed writes landed: each field syncd wrote
    after the record was staged takes the written value, and a record syncd created but has not pulled yet
    is there with what syncd wrote into it. (A live cycle pulls first, and the echoes say the same.)"""
    out = {key: list(rows) for key, rows in records.items()}
    for key, links in ledger.identity.created_links(keys).items():
        staged = {r.ref for r in out.get(key, ())}
        for link in links:
            if (link.system, link.object, link.id) not in staged:
                out.setdefault(key, []).append(
                    RecordRow(link.system, link.object, link.id, data={"Id": link.id}, seen_at=link.linked_at)
                )
    written = writes.of(r.ref for rows in out.values() for r in rows)
    for rows in out.values():
        for i, r in enumerate(rows):
            found = written.get(r.ref)
            if not found:
                continue
            data = r.data
            newer = {
                name: w.value
                for name, w in found.items()
                if (r.seen_at is None or w.at >= r.seen_at) and not _holds(data, name, w.value)
            }
            if newer:
                rows[i] = dataclasses.replace(r, data={**data, **newer})
    return out


def _holds(data: Mapping[str, Any], name: str, value: Any) -> bool:
    """Whether a record's field already holds this very value (the same type too: 78.0 is not 78 in a plan)."""
    current = data.get(name, _MISSING)
    return type(current) is type(value) and current == value


_MISSING = object()


def _changed(decisions: Sequence[Decision], previous: Mapping[str, DecisionRow]) -> list[str]:
    """The keys whose stage, score, owner or team differs from their stored decision (read before deciding;
    new keys included): what ``Decisions.record`` would say changed, for a dry run that stores nothing."""
    out = []
    for d in decisions:
        before = previous.get(d.key)
        score = float(d.score) if d.score is not None else None
        if before is None or (before.stage, before.score, before.owner, before.team) != (
            d.stage,
            score,
            d.owner,
            d.team,
        ):
            out.append(d.key)
    return out


def _name(kind: str, fields: Mapping[str, Any]) -> str:
    """How a person or account is called in a plan: a name, else an email or domain."""
    if kind == "person":
        name = " ".join(str(fields[f]) for f in ("first_name", "last_name") if fields.get(f))
        return name or str(fields.get("email") or "")
    return str(fields.get("name") or fields.get("domain") or "")


def _rules_change(d: Decision, prev: DecisionRow | None, digest: str) -> dict[str, Any] | None:
    """The last change of rules that moved this record: the digests, the rule that decided, the owner and
    stage before and after. Kept from the previous decision until another change of rules moves it again."""
    if prev is None:
        return None
    kept = prev.data.get("rules_change") or None
    if prev.digest == digest:
        return kept
    owner = d.owner if d.owner is not None else prev.owner
    if (prev.stage, prev.owner, prev.team) == (d.stage, owner, d.team):
        return kept
    return {
        "from": prev.digest,
        "to": digest,
        "rule": d.rule,
        "owner": [prev.owner, owner],
        "stage": [prev.stage, d.stage],
    }


_BadRecord = BadRecord


def trace_rows(trace: Iterable[Any], *, raw: bool = False) -> list[list[Any]]:
    """A decision's trace as the ledger keeps it: one ``[phase, rule, matched, test, [[name, value], ...]]``
    per rule tried (lists, not dicts: tens of thousands are written per cycle)."""
    if hasattr(trace, "rows"):  # a Trace builds its stored form straight from its raw entries
        # ``raw``: values are left as the engine saw them (the ledger's trace store turns what JSON cannot
        # hold into text); otherwise plain JSON values.
        return trace.rows(_same if raw else _plain)
    # A Trace builds its steps once; iterating it as a Sequence would look each one up by index.
    steps = trace.steps() if hasattr(trace, "steps") else trace
    return [
        [step.phase, step.rule, step.matched, step.test, [[k, _plain(v)] for k, v in step.values]]
        for step in steps
    ]


def _same(value: Any) -> Any:
    return value


def _plain(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return str(value)


def trace_step(row: Any) -> dict[str, Any]:
    """One stored trace row as a dict (rows stored as dicts by earlier versions pass through)."""
    if isinstance(row, Mapping):
        return dict(row)
    phase, rule, matched, test, values = row
    return {"phase": phase, "rule": rule, "matched": matched, "test": test, "values": values}
