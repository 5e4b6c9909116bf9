"""One sync cycle: pull, stage, link, decide, plan, write intents, push, confirm, record the run.

``SyncCycle`` owns the I/O around the pure core (``syncd.engine``, ``syncd.plan``, ``syncd.link``)::

    cycle = SyncCycle.from_config(config)
    report = cycle.run(load_ruleset(config.rules.directory))     # `syncd once`
    report = cycle.run(rules, dry_run=True)                      # `syncd plan`: writes nothing anywhere

It satisfies the daemon's ``CycleRunner`` (``run_cycle(rules, stop=...)``, ``refresh_roster()``, ``close()``).

The order of a cycle, and why it is crash-safe (``kill -9`` at any instant converges on the next start):

1. **Replay** the outbox: intents a killed run wrote but did not confirm are pushed again. Updates set the
   same values again; creates are upserts on the external-id field keyed by the HubSpot id, so a replayed
   create finds the record the first attempt made.
2. **Pull** each object since its watermark, a page at a time. Each page is staged in one transaction with
   its watermark: new or changed records are stored *dirty*, and stay dirty until their person or account
   is decided, so moving the watermark loses nothing. Staging also recognises syncd's own writes coming back
   (an echo: the record is left clean, so a cycle after a cycle has nothing to do) and a rep's manual owner
   change (recorded as an override the engine honours per the policy).
3. **Link** records to persons and accounts: a converted Lead to its Contact, then unlinked records by the
   stored cross-id, then normalised email (persons) or domain (accounts), else a new key.
4. **Decide** accounts, then persons, in chunks of keys (memory stays bounded): keys with dirty records,
   keys whose decision is *due* (an SLA deadline, an override's end, a recycling hold, the daily re-score as
   engagement points decay), quarantined records due for a retry, and the persons of accounts whose decision
   changed. Each chunk's decisions, sticky owners, round-robin state, day counts and **intents** are stored
   in one transaction that also marks the keys clean.
5. **Push** intents in batches as large as each API takes (one batch never holds one record twice), and
   **confirm** each batch in one transaction: writes are remembered for echo suppression, a created Lead is
   linked and its id queued for the HubSpot contact, a rejected record goes to quarantine with the reason.

A stop request (``stop`` event) is honoured between pages, chunks and batches: what was decided is in the
outbox and goes out on the next start.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from syncd.config import Config
from syncd.connectors import Change, Connector, Page, PushResult, RepRecord, connectors_from_config
from syncd.engine import decide
from syncd.ledger import (
    AssignmentRow,
    Backoff,
    DecisionRow,
    Intent,
    Ledger,
    LinkRow,
    OverrideRow,
    RecordRow,
    WriteRow,
    utc_now,
)
from syncd.link import (
    ACCOUNT_OBJECTS,
    OWNER_FIELD,
    PERSON_OBJECTS,
    PULLED,
    Group,
    PageLinks,
    cross_id,
    cross_id_field,
    entity_of,
    first,
    group,
    identity,
    is_echo,
    owner_change,
    record_hash,
    salesforce_object_of,
)
from syncd.logs import log_decision
from syncd.metrics import CycleSummary
from syncd.model import (
    AccountView,
    Assignment,
    Decision,
    LedgerView,
    Override,
    PersonView,
    Queue,
    Rep,
    RepDirectory,
    RoundRobinState,
)
from syncd.plan import Action, FieldChange, Tally, followup, plan_key
from syncd.rules import RuleSet

if TYPE_CHECKING:
    from syncd.mapping import Mapping as FieldMapping

__all__ = ["CycleReport", "Roster", "SyncCycle", "trace_rows", "trace_step"]

log = logging.getLogger(__name__)

SYSTEMS = ("salesforce", "hubspot")
# Records per push call: the largest batch each API takes (sObject Collections 200, HubSpot batch 100).
BATCH_SIZE = {"salesforce": 200, "hubspot": 100}
# Keys decided per engine call: large enough to amortise the queries, small enough to bound memory.
CHUNK = 2000
# Engagement points decay every day, so every decision is due again a day after it was made.
RESCORE_AFTER = timedelta(days=1)


class _Rollback(Exception):
    """Raised inside a dry run's transaction to undo everything it staged and decided."""


@dataclass(frozen=True)
class Roster:
    """Who can own records as the systems list them, and who made a change (by each system's user id)."""

    directory: RepDirectory
    # Salesforce User id / HubSpot user id -> rep key, for every user with an email (the integration too).
    users: Mapping[tuple[str, str], str]

    @classmethod
    def from_reps(cls, reps: Iterable[RepRecord]) -> Roster:
        by_email: dict[str, dict[str, Any]] = {}
        queues: list[Queue] = []
        users: dict[tuple[str, str], str] = {}
        for r in reps:
            if r.kind == "queue":
                queues.append(Queue(r.name, r.id, r.developer_name or ""))
                continue
            if not r.email:
                continue
            email = r.email.strip().lower()
            entry = by_email.setdefault(email, {"name": r.name, "active": True})
            entry["active"] = entry["active"] and r.active
            if r.system == "salesforce":
                entry["salesforce_id"] = r.id
                users[("salesforce", r.id)] = email
            else:
                entry["hubspot_owner_id"] = r.id
                if r.user_id:
                    users[("hubspot", r.user_id)] = email
        directory = RepDirectory(
            (
                Rep(
                    email,
                    e["name"],
                    salesforce_id=e.get("salesforce_id"),
                    hubspot_owner_id=e.get("hubspot_owner_id"),
                    active=e["active"],
                )
                for email, e in by_email.items()
            ),
            queues,
        )
        return cls(directory, users)

    def owner(self, system: str, owner_id: str | None) -> str | None:
        """A system's owner id as a rep key or queue owner."""
        if system == "salesforce":
            return self.directory.owner_from_salesforce(owner_id)
        return self.directory.owner_from_hubspot(owner_id)


@dataclass
class CycleReport:
    """What one cycle (or, with ``dry_run``, one plan) did, per system where the work is per system.

    ``tally`` counts the records changed per system and kind (owner, stage, score, link, field) and the
    creates: made by a cycle, planned by a dry run. ``quarantined`` is the quarantine's size afterwards,
    ``quarantined_now`` the records put there (again) by this run.
    """

    dry_run: bool = False
    run_id: str | None = None
    pulled: Counter[str] = field(default_factory=Counter)
    echoes: Counter[str] = field(default_factory=Counter)
    decided: Counter[str] = field(default_factory=Counter)
    decided_records: Counter[str] = field(default_factory=Counter)
    tally: Tally = field(default_factory=Tally)
    # Writes that went through (or, in a dry run, would be sent): one per record and intent.
    pushed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    quarantined_now: Counter[str] = field(default_factory=Counter)
    quarantined: int = 0
    reported: int = 0
    replayed: int = 0
    overrides: int = 0
    handoffs: int = 0
    api_calls: dict[str, int] = field(default_factory=dict)
    rate_limited: dict[str, int] = field(default_factory=dict)
    # New assignments (owner changed or first set) per owner, for the daemon's notifications.
    assigned: Counter[str] = field(default_factory=Counter)
    budget: dict[str, dict[str, Any]] = field(default_factory=dict)
    interrupted: bool = False
    # Wall time of each step (pushes of full batches happen during "decide").
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No record failed and the cycle ran to its end."""
        return not self.interrupted and not sum(self.failed.values())

    def summary(self) -> CycleSummary:
        """The daemon's view of this cycle (metrics and the one summary log line)."""
        budget_used = {s: (b["spent"] / b["cap"]) if b.get("cap") else 0.0 for s, b in self.budget.items()}
        return CycleSummary(
            pulled=dict(self.pulled),
            decided=sum(self.decided.values()),
            pushed={s: n for s, n in self.pushed.items() if n},
            created={s: n for s, n in self.tally.created.items() if n},
            failed={s: n for s, n in self.failed.items() if n},
            api_calls=dict(self.api_calls),
            rate_limited={s: n for s, n in self.rate_limited.items() if n},
            assigned=dict(self.assigned),
            budget_used=budget_used,
            quarantined=self.quarantined,
            handoffs=self.handoffs,
            overrides=self.overrides,
            reachable={s: True for s in self.api_calls},
            interrupted=self.interrupted,
        )

    def counters(self) -> dict[str, Any]:
        """The run's counters as the ledger stores them (shown by ``syncd status``)."""
        return {
            "dry_run": self.dry_run,
            "pulled": dict(self.pulled),
            "echoes": dict(self.echoes),
            "decided": dict(self.decided),
            "decided_records": dict(self.decided_records),
            "changes": self.tally.counts(),
            "pushed": dict(self.pushed),
            "failed": dict(self.failed),
            "quarantined_now": dict(self.quarantined_now),
            "quarantined": self.quarantined,
            "replayed": self.replayed,
            "overrides": self.overrides,
            "handoffs": self.handoffs,
            "api_calls": dict(self.api_calls),
            "budget": self.budget,
            "interrupted": self.interrupted,
            "seconds": dict(self.seconds),
        }


# ------------------------------------------------------------------------------------------------ the cycle


class SyncCycle:
    """Runs sync cycles between two connectors through one ledger (see the module docstring).

    ``clock`` is the time every decision, deadline and ledger row is stamped with (tests fix it);
    ``chunk`` the number of keys decided per engine call; ``backoff`` the quarantine's retry policy.
    """

    def __init__(
        self,
        ledger: Ledger,
        salesforce: Connector,
        hubspot: Connector,
        *,
        clock: Callable[[], datetime] = utc_now,
        chunk: int = CHUNK,
        backoff: Backoff | None = None,
    ) -> None:
        self.ledger = ledger
        self.connectors: dict[str, Connector] = {"salesforce": salesforce, "hubspot": hubspot}
        self.clock = clock
        self.chunk = chunk
        self.backoff = backoff or Backoff()
        self.roster: Roster | None = None
        self._limited_reported: dict[str, int] = {}

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        clock: Callable[[], datetime] = utc_now,
        salesforce: Mapping[str, Any] | None = None,
        hubspot: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> SyncCycle:
        """A cycle over the ledger and systems ``config`` names; ``salesforce``/``hubspot`` override
        connector options (e.g. ``lookback_seconds``), ``options`` go to the constructor."""
        ledger = Ledger(config.ledger.path, clock=clock)
        try:
            sf, hs = connectors_from_config(config, now=clock, salesforce=salesforce, hubspot=hubspot)
        except BaseException:
            ledger.close()
            raise
        return cls(ledger, sf, hs, clock=clock, **options)

    def close(self) -> None:
        """Release the connections and the ledger."""
        for connector in self.connectors.values():
            connector.close()
        self.ledger.close()

    def __enter__(self) -> SyncCycle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the daemon's CycleRunner

    def refresh_roster(self) -> None:
        """List the reps, queues and owners of both systems again (the daemon calls this on a schedule)."""
        reps = [*self.connectors["salesforce"].list_reps(), *self.connectors["hubspot"].list_reps()]
        self.roster = Roster.from_reps(reps)

    def run_cycle(self, rules: RuleSet, *, stop: threading.Event) -> CycleSummary:
        return self.run(rules, stop=stop).summary()

    # -- one run

    def run(
        self, rules: RuleSet, *, stop: threading.Event | None = None, dry_run: bool = False
    ) -> CycleReport:
        """One cycle; with ``dry_run`` everything is worked out, nothing is pushed, and the ledger is left
        exactly as it was (only the run itself is recorded): the report then says what a cycle would do."""
        report = CycleReport(dry_run=dry_run)
        calls_before = {s: self._calls(s) for s in SYSTEMS}
        run_id = self.ledger.start_run("plan" if dry_run else "cycle")
        report.run_id = run_id
        try:
            if self.roster is None:
                self.refresh_roster()
            work = _Run(self, rules, report, run_id, stop or threading.Event())
            if dry_run:
                try:
                    with self.ledger.transaction():
                        work.execute()
                        raise _Rollback
                except _Rollback:
                    pass
            else:
                work.execute()
        except BaseException as exc:
            self._finish(report, calls_before)
            self.ledger.finish_run(run_id, "failed", counters=report.counters(), error=_one_line(exc))
            raise
        self._finish(report, calls_before)
        self.ledger.finish_run(run_id, "ok", counters=report.counters())
        return report

    def _calls(self, system: str) -> int:
        return sum(self.connectors[system].call_counts().values())

    def _finish(self, report: CycleReport, calls_before: Mapping[str, int]) -> None:
        report.api_calls = {s: self._calls(s) - calls_before[s] for s in SYSTEMS}
        # Since the last report, so that 429s met by a roster refresh between cycles are counted too.
        limited = {s: self.connectors[s].rate_limited() for s in SYSTEMS}
        report.rate_limited = {s: n - self._limited_reported.get(s, 0) for s, n in limited.items()}
        self._limited_reported = limited
        for system in SYSTEMS:
            state = self.connectors[system].budget_state()
            report.budget[system] = {
                "day": state.day,
                "spent": state.spent,
                "cap": state.cap,
                "org_used": state.org_used,
                "org_limit": state.org_limit,
                "exhausted": state.exhausted,
            }
        summary = self.ledger.quarantine_summary()
        report.quarantined = summary.total
        report.reported = summary.reported


_PLAIN = (str, int, float, bool, type(None))


def trace_rows(trace: Iterable[Any]) -> list[list[Any]]:
    """A decision's trace as the ledger keeps it: one ``[phase, rule, matched, test, [[name, value], ...]]``
    per rule tried (lists, not dicts: tens of thousands are written per cycle)."""
    # A Trace builds its steps once; iterating it as a Sequence would look each one up by index.
    steps = trace.steps() if hasattr(trace, "steps") else trace
    return [
        [step.phase, step.rule, step.matched, step.test, [[k, _plain(v)] for k, v in step.values]]
        for step in steps
    ]


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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ------------------------------------------------------------------------------------------------ the work


class _Run:
    """The state of one run: rules, roster, report, push buffers."""

    def __init__(
        self, cycle: SyncCycle, rules: RuleSet, report: CycleReport, run_id: str, stop: threading.Event
    ) -> None:
        self.cycle = cycle
        self.ledger = cycle.ledger
        self.rules = rules
        self.mapping = rules.mapping
        self.report = report
        self.run_id = run_id
        self.stop = stop
        self.dry = report.dry_run
        if cycle.roster is None:
            raise RuntimeError("refresh_roster() must run before a cycle")
        self.roster = cycle.roster
        self.directory = cycle.roster.directory
        self.now = cycle.clock()
        self.buffers: dict[tuple[str, str, bool], list[Intent]] = {}
        self.actions: dict[str, Action] = {}
        # Reps whose changes count as a human's: the roster's reps, by each system's user id.
        self.rep_ids = {
            (system, uid): key
            for (system, uid), key in cycle.roster.users.items()
            if key in rules.roster.reps
        }
        self.opportunities: dict[str, tuple[int, int]] | None = None
        self.held: set[tuple[str, str, str]] = set()
        # Every record in quarantine when the run started: only these need releasing after a good push.
        self.quarantine_refs = {(q.system, q.object, q.record_id) for q in self.ledger.quarantined()}
        self.due_refs: set[tuple[str, str, str]] = set()

    # -- the steps

    def execute(self) -> None:
        steps: list[tuple[str, Callable[[], bool]]] = [
            ("replay", self.replay),
            ("pull", self.pull),
            ("link", self.link),
            ("decide", self.decide_all),
            ("push", self.flush_all),
        ]
        for name, step in steps:
            began = time.perf_counter()
            done = step()
            self.report.seconds[name] = round(time.perf_counter() - began, 3)
            if not done:
                self.report.interrupted = True
                log.info("cycle stopped on request; the outbox keeps what is decided for the next start")
                return

    def stopped(self) -> bool:
        return self.stop.is_set()

    # -- 1. replay

    def replay(self) -> bool:
        unfinished = self.ledger.unfinished_intents()
        if not unfinished:
            return True
        self.report.replayed = len(unfinished)
        log.info("replaying %d intents a previous run left unconfirmed", len(unfinished))
        for intent in unfinished:
            action = _action_from_intent(intent, self.mapping)
            self.actions[intent.id] = action
            if self.dry:
                self._predict(action)
            else:
                self._enqueue(intent)
        return self.dry or self.flush_all()

    # -- 2. pull and stage

    def pull(self) -> bool:
        for system in SYSTEMS:
            connector = self.cycle.connectors[system]
            for obj in PULLED[system]:
                since = self.ledger.watermark(system, obj)
                for page in connector.pull(obj, since=since):
                    self.stage(system, obj, page)
                    if self.stopped():
                        return False
        return True

    def stage(self, system: str, obj: str, page: Page) -> None:
        rows = []
        for raw in page.records:
            email, domain = identity(self.mapping, system, obj, raw.fields)
            rows.append(
                RecordRow(
                    system=system,
                    object=obj,
                    id=raw.id,
                    data=raw.fields,
                    modified_at=raw.modified_at,
                    deleted=raw.deleted,
                    email=email,
                    domain=domain,
                    hash=record_hash(system, raw.fields),
                )
            )
        self.report.pulled[system] += len(rows)
        ids = [r.id for r in rows]
        with self.ledger.transaction():
            old = self.ledger.records_by_ids(system, obj, ids) if rows else {}
            result = self.ledger.upsert_records(rows, run_id=self.run_id)
            if result.changed:
                changed_ids = [ref[2] for ref in result.changed]
                writes = _writes_by_record(self.ledger.last_writes(system, obj, changed_ids))
                keys = self.ledger.keys_of(system, obj, changed_ids)
                by_id = {r.id: r for r in rows}
                echoes = []
                for id_ in changed_ids:
                    row, before = by_id[id_], old.get(id_)
                    written = writes.get(id_, {})
                    unchanged_flag = before is None or before.deleted == row.deleted
                    data_before = before.data if before is not None else None
                    if unchanged_flag and is_echo(system, data_before, row.data, written):
                        echoes.append((system, obj, id_))
                        continue
                    key = keys.get(id_)
                    if key is not None and entity_of(system, obj) != "deal":
                        self._detect_override(system, obj, id_, key, data_before, row.data, written)
                if echoes:
                    self.ledger.mark_records_clean(echoes)
                    self.report.echoes[system] += len(echoes)
            self.ledger.set_watermark(system, obj, page.watermark, run_id=self.run_id)

    def _detect_override(
        self,
        system: str,
        obj: str,
        record_id: str,
        key: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any],
        written: Mapping[str, Any],
    ) -> None:
        days = self.rules.policy.override_days
        if days <= 0:
            return
        change = owner_change(
            system,
            before,
            after,
            last_written=written.get(OWNER_FIELD[system]),
            reps_by_change_id={uid: rep for (s, uid), rep in self.rep_ids.items() if s == system},
        )
        if change is None:
            return
        rep = self.roster.owner(system, change.current)
        if rep is None:
            return
        self.ledger.record_override(
            OverrideRow(
                key=key,
                system=system,
                object=obj,
                record_id=record_id,
                rep=rep,
                seen_at=self.now,
                honoured_until=self.now + timedelta(days=days),
                field="owner",
                previous=self.roster.owner(system, change.previous),
                changed_by=change.changed_by,
                run_id=self.run_id,
            )
        )
        self.report.overrides += 1
        log.info(
            "%s %s of %s: owner set to %s by %s; honoured for %g days",
            system,
            obj,
            key,
            rep,
            change.changed_by,
            days,
        )

    # -- 3. link

    def link(self) -> bool:
        self._follow_conversions()
        for kind, objects in (("account", ACCOUNT_OBJECTS), ("person", PERSON_OBJECTS)):
            for system in SYSTEMS:
                for obj in objects[system]:
                    while True:
                        page = self.ledger.unlinked_records(system, obj, limit=1000)
                        if not page:
                            break
                        self._link_page(kind, system, obj, page)
                        if self.stopped():
                            return False
        return True

    def _follow_conversions(self) -> None:
        """A linked Lead converted since: its Contact joins the Lead's person (unlinked Leads are linked
        to their Contact's person by ``_link_page``)."""
        pairs = {
            r.id: str(r.data["ConvertedContactId"])
            for r in self.ledger.iter_records("salesforce", "Lead", dirty_only=True)
            if r.data.get("IsConverted") and r.data.get("ConvertedContactId")
        }
        if not pairs:
            return
        leads = self.ledger.keys_of("salesforce", "Lead", pairs)
        contacts = self.ledger.keys_of("salesforce", "Contact", pairs.values())
        todo = [
            (lead, contact)
            for lead, contact in pairs.items()
            if lead in leads and contacts.get(contact) != leads[lead]
        ]
        if todo:
            with self.ledger.transaction():
                for lead, contact in todo:
                    self.ledger.link_converted(lead, contact, run_id=self.run_id)

    def _link_page(self, kind: str, system: str, obj: str, page: Sequence[RecordRow]) -> None:
        """Link one page of unlinked records: to the person of the Contact a Lead was converted to, to
        the key of the record their stored cross-id names, to the key of their email (persons) or domain
        (accounts), else to a new key derived from the record (the same records always get the same keys)."""
        # Per record, the records it names, strongest first: (system, id, how).
        named: dict[str, list[tuple[str, str, str]]] = {}
        other = "hubspot" if system == "salesforce" else "salesforce"
        for r in page:
            refs = []
            if obj == "Lead" and r.data.get("IsConverted") and r.data.get("ConvertedContactId"):
                refs.append(("salesforce", str(r.data["ConvertedContactId"]), "converted"))
            target = cross_id(self.mapping, system, obj, r.data)
            if target is not None:
                refs.append((other, target, "stored_id"))
            named[r.id] = refs
        targets = {
            sys_: self._cross_targets(
                kind, sys_, [t for refs in named.values() for s_, t, _ in refs if s_ == sys_]
            )
            for sys_ in SYSTEMS
        }
        if kind == "person":
            found = self.ledger.keys_by_email([r.email for r in page if r.email], kind="person")
            match = {r.id: first(found.get(r.email)) if r.email else None for r in page}
        else:
            found = self.ledger.keys_by_domain([r.domain for r in page if r.domain], kind="account")
            match = {r.id: first(found.get(r.domain)) if r.domain else None for r in page}
        local = PageLinks()
        chosen: list[tuple[RecordRow, str, str]] = []
        seeds: list[str] = []
        for r in page:
            key: str | None = None
            how = "new"
            for tsys, tid, thow in named[r.id]:
                key = targets[tsys].get(tid, (None, None))[0] or local.by_ref.get((tsys, tid))
                if key is not None:
                    how = thow
                    break
            if key is None:
                value = r.email if kind == "person" else r.domain
                key = match[r.id] or (
                    (local.by_email if kind == "person" else local.by_domain).get(value) if value else None
                )
                how = "email" if kind == "person" else "domain"
            if key is None:
                key = f"#new{len(seeds)}"
                seeds.append(f"{system}:{obj}:{r.id}")
                how = "new"
            local.remember(
                key,
                system,
                r.id,
                r.email if kind == "person" else None,
                r.domain if kind == "account" else None,
            )
            for tsys, tid, _ in named[r.id]:
                local.by_ref.setdefault((tsys, tid), key)
            chosen.append((r, key, how))
        with self.ledger.transaction():
            fresh = self.ledger.new_keys(kind, len(seeds), seeds=seeds) if seeds else []
            links = []
            for r, key, how in chosen:
                real = fresh[int(key[4:])] if key.startswith("#new") else key
                links.append(LinkRow(real, system, obj, r.id, how, run_id=self.run_id))
                for tsys, tid, thow in named[r.id]:
                    linked, target_obj = targets[tsys].get(tid, (None, None))
                    if linked is None and target_obj is not None:
                        # The record named is staged but not linked yet: it joins this key.
                        links.append(LinkRow(real, tsys, target_obj, tid, thow, run_id=self.run_id))
            self.ledger.add_links(links)

    def _cross_targets(
        self, kind: str, system: str, ids: list[str]
    ) -> dict[str, tuple[str | None, str | None]]:
        """Cross-id -> (its key when linked, its object when staged) in ``system``."""
        if not ids:
            return {}
        by_object: dict[str, list[str]] = {}
        for id_ in ids:
            if system == "salesforce":
                obj = salesforce_object_of(id_)
                allowed = PERSON_OBJECTS if kind == "person" else ACCOUNT_OBJECTS
                if obj is None or obj not in allowed["salesforce"]:
                    continue
            else:
                obj = "contacts" if kind == "person" else "companies"
            by_object.setdefault(obj, []).append(id_)
        out: dict[str, tuple[str | None, str | None]] = {}
        for obj, obj_ids in by_object.items():
            keys = self.ledger.keys_of(system, obj, obj_ids)
            staged = self.ledger.records_by_ids(system, obj, [i for i in obj_ids if i not in keys])
            for id_ in obj_ids:
                if id_ in keys:
                    out[id_] = (keys[id_], obj)
                elif id_ in staged:
                    out[id_] = (None, obj)
        return out

    # -- 4. decide, plan, write intents

    def decide_all(self) -> bool:
        self.held = {
            (q.system, q.object, q.record_id)
            for q in self.ledger.quarantined()
            if q.next_attempt_at > self.now
        }
        due_quarantine = [q for q in self.ledger.quarantined(due_only=True)]
        self.due_refs = {(q.system, q.object, q.record_id) for q in due_quarantine}
        retry_keys = {q.key for q in due_quarantine if q.key}
        opportunity_refs = [
            r.ref for r in self.ledger.iter_records("salesforce", "Opportunity", dirty_only=True)
        ]
        account_ids = {
            str(r.data.get("AccountId"))
            for r in self.ledger.records_by_ids(
                "salesforce", "Opportunity", [ref[2] for ref in opportunity_refs]
            ).values()
            if r.data.get("AccountId")
        }
        extra_accounts = set(self.ledger.keys_of("salesforce", "Account", account_ids).values())
        extra_accounts |= {k for k in retry_keys if k.startswith("a:")}
        # Accounts and opportunities stay dirty until the persons they affect are decided too: a stop or a
        # crash in between then decides those persons again on the next run.
        accounts: list[str] = []
        if not self._decide_kind("account", sorted(extra_accounts), accounts, clean=False):
            return False
        extra_persons = {k for k in retry_keys if k.startswith("p:")}
        extra_persons |= self._persons_of_accounts(accounts)
        if not self._decide_kind("person", sorted(extra_persons), [], clean=True):
            return False
        with self.ledger.transaction():
            self.ledger.mark_clean(accounts)
            if opportunity_refs:
                self.ledger.mark_records_clean(opportunity_refs)
        return True

    def _persons_of_accounts(self, accounts: Sequence[str]) -> set[str]:
        if not accounts:
            return set()
        domains: set[str] = set()
        for records in self.ledger.records_of_keys(sorted(accounts)).values():
            domains.update(r.domain for r in records if r.domain)
        found = self.ledger.keys_by_domain(domains, kind="person")
        return {k for keys in found.values() for k in keys}

    def _keys(self, kind: str, extra: list[str]) -> Iterator[str]:
        """Every key of ``kind`` to decide, in key order, each once."""

        def pages(fetch: Callable[[str], list[str]]) -> Iterator[str]:
            after = ""
            while True:
                batch = fetch(after)
                yield from batch
                if len(batch) < self.cycle.chunk:
                    return
                after = batch[-1]

        dirty = pages(lambda after: self.ledger.dirty_keys(kind=kind, after=after, limit=self.cycle.chunk))
        due = pages(
            lambda after: self.ledger.due_keys(self.now, kind=kind, after=after, limit=self.cycle.chunk)
        )
        last = None
        for key in heapq.merge(dirty, due, iter(extra)):
            if key != last:
                last = key
                yield key

    def _decide_kind(self, kind: str, extra: list[str], decided: list[str], *, clean: bool) -> bool:
        chunk: list[str] = []
        for key in self._keys(kind, extra):
            chunk.append(key)
            if len(chunk) >= self.cycle.chunk:
                self._decide_chunk(kind, chunk, clean=clean)
                decided.extend(chunk)
                chunk = []
                if self.stopped() or not self.flush_full():
                    return False
        if chunk:
            self._decide_chunk(kind, chunk, clean=clean)
            decided.extend(chunk)
        return not self.stopped() and self.flush_full()

    def _decide_chunk(self, kind: str, keys: list[str], *, clean: bool) -> None:
        records = self.ledger.records_of_keys(keys)
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
        account_keys: set[str] = set()
        if kind == "person":
            account_of = self._accounts_of(groups)
            account_keys = {a for a in account_of.values() if a}
            for key, g in groups.items():
                persons.append(self._person_view(g, merged[key], account_of.get(key)))
            account_records = self.ledger.records_of_keys(sorted(account_keys)) if account_keys else {}
            for akey in sorted(account_keys):
                ag = group(akey, "account", account_records.get(akey, ()))
                try:
                    accounts.append(self._account_view(ag, self._logical(ag)))
                except _BadRecord:
                    continue
        else:
            for key, g in groups.items():
                accounts.append(self._account_view(g, merged[key]))
        previous = self.ledger.decisions(list(groups) + sorted(account_keys))
        view = self._ledger_view(list(groups), sorted(account_keys), previous)
        result = decide(persons, accounts, self.rules, view, self.now, directory=self.directory)
        decisions = [d for d in result.decisions if d.kind == kind and d.key in groups]
        writes = self._last_writes(groups.values())
        actions: list[Action] = []
        for d in decisions:
            g = groups[d.key]
            planned = plan_key(
                d, g, self.mapping, self.directory, merged=merged[d.key], last_writes=writes, held=self.held
            )
            actions.extend(planned)
            self.report.decided[kind] += 1
            for r in (*g.writable, *g.readonly):
                self.report.decided_records[r.system] += 1
        acted = {(a.system, a.object, a.record_id) for a in actions if a.record_id}
        acted |= {("hubspot", "contacts", a.create_key) for a in actions if a.create_key}
        with self.ledger.transaction():
            changed = set(self.ledger.record_decisions(self._decision_rows(decisions, previous)))
            self.report.handoffs += sum(1 for d in decisions if d.handoff is not None and d.key in changed)
            self.report.assigned.update(
                d.owner for d in decisions if d.key in changed and d.owner and d.assigned_at == self.now
            )
            if not self.dry:
                for d in decisions:
                    if d.key in changed:
                        log_decision(
                            d.key,
                            f"stage {d.stage}, score {d.score}, owner {d.owner} (team {d.team}, by {d.rule})",
                            stage=d.stage,
                            score=d.score,
                            owner=d.owner,
                            team=d.team,
                            rule=d.rule,
                        )
            self.ledger.set_assignments(
                AssignmentRow(d.key, d.owner, d.team, d.assigned_at, d.rule, self.run_id)
                for d in decisions
                if d.owner is not None and d.team is not None and d.assigned_at is not None
            )
            for pool, state in result.round_robin.items():
                self.ledger.set_round_robin_state(
                    pool, {"credits": dict(state.credits), "assigned": dict(state.assigned)}
                )
            for rep, n in result.assigned_today.items():
                self.ledger.add_daily_count(rep, self.now.date(), n)
            for record, key, reason in bad:
                self._quarantine(record.system, record.object, record.id, reason, key)
            mine = {(r.system, r.object, r.id) for g in groups.values() for r in g.writable}
            for ref in self.due_refs & mine - acted:
                # Due for a retry and nothing left to write: whatever held it is resolved.
                self.ledger.release(*ref)
            intents = []
            for action in actions:
                if self.dry:
                    self._predict(action)
                    if action.is_create:
                        self._predict(_predicted_followup(action, self.mapping))
                    continue
                intent = action.intent()
                self.actions[intent.id] = action
                intents.append(intent)
            if intents:
                self.ledger.add_intents(intents, run_id=self.run_id)
            if clean:
                self.ledger.mark_clean(keys)
        for intent in intents:
            self._enqueue(intent)

    def _logical(self, g: Group) -> dict[str, Any]:
        by_system: dict[str, dict[str, Any]] = {}
        sf = g.salesforce or (g.readonly[0] if g.readonly else None)
        for record in (g.hubspot, sf):
            if record is None:
                continue
            try:
                by_system[record.system] = self.mapping.to_logical(
                    record.system,  # type: ignore[arg-type]
                    record.object,
                    record.data,
                    directory=self.directory,
                )
            except ValueError as exc:
                raise _BadRecord(record, str(exc)) from None
        return self.mapping.merge(by_system)

    def _accounts_of(self, groups: Mapping[str, Group]) -> dict[str, str | None]:
        """Person key -> account key: a Contact's Account, else the account of the email's domain."""
        account_ids: dict[str, str] = {}
        domains: dict[str, str] = {}
        for key, g in groups.items():
            sf = g.salesforce
            if sf is not None and sf.object == "Contact" and sf.data.get("AccountId"):
                account_ids[key] = str(sf.data["AccountId"])
                continue
            domain = next((r.domain for r in (g.hubspot, sf) if r is not None and r.domain), None)
            if domain:
                domains[key] = domain
        by_id = self.ledger.keys_of("salesforce", "Account", set(account_ids.values()))
        by_domain = self.ledger.keys_by_domain(set(domains.values()), kind="account")
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
        sf = g.salesforce or (g.readonly[0] if g.readonly else None)
        return PersonView(
            key=g.key,
            fields=fields,
            account_key=account,
            hubspot_id=g.hubspot.id if g.hubspot else None,
            salesforce_id=sf.id if sf else None,
            salesforce_object=sf.object if sf else None,  # type: ignore[arg-type]
        )

    def _account_view(self, g: Group, fields: Mapping[str, Any]) -> AccountView:
        open_, won = (0, 0)
        if g.salesforce is not None:
            open_, won = self._opportunity_counts().get(g.salesforce.id, (0, 0))
        return AccountView(
            key=g.key,
            fields=fields,
            hubspot_id=g.hubspot.id if g.hubspot else None,
            salesforce_id=g.salesforce.id if g.salesforce else None,
            open_opportunities=open_,
            won_opportunities=won,
        )

    def _opportunity_counts(self) -> dict[str, tuple[int, int]]:
        """Salesforce Account id -> (open, won) opportunities, read once per run from the ledger."""
        if self.opportunities is None:
            counts: dict[str, tuple[int, int]] = {}
            for r in self.ledger.iter_records("salesforce", "Opportunity"):
                account = r.data.get("AccountId")
                if r.deleted or not account:
                    continue
                open_, won = counts.get(str(account), (0, 0))
                counts[str(account)] = (
                    open_ + (0 if r.data.get("IsClosed") else 1),
                    won + (1 if r.data.get("IsWon") else 0),
                )
            self.opportunities = counts
        return self.opportunities

    def _ledger_view(
        self, keys: list[str], account_keys: list[str], previous: Mapping[str, DecisionRow]
    ) -> LedgerView:
        everyone = keys + account_keys
        assignments = {}
        for key, a in self.ledger.assignments(everyone).items():
            prev = previous.get(key)
            influencers = tuple(prev.data.get("influencers", ())) if prev is not None else ()
            assignments[key] = Assignment(key, a.rep, a.team, a.reason, a.assigned_at, influencers)
        overrides = {
            key: Override(key, o.rep or "", o.seen_at, o.changed_by or "", o.system)
            for key, o in self.ledger.active_overrides(keys, now=self.now).items()
            if o.rep
        }
        pools = {}
        for name in self.rules.routing.pools:
            state = self.ledger.round_robin_state(name)
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
            daily_counts=self.ledger.daily_counts(self.now.date()),
            holds=holds,
        )

    def _decision_rows(
        self, decisions: Sequence[Decision], previous: Mapping[str, DecisionRow]
    ) -> list[DecisionRow]:
        rows = []
        overrides = self.ledger.active_overrides([d.key for d in decisions], now=self.now)
        for d in decisions:
            prev = previous.get(d.key)
            hold = d.hold_until
            if hold is None and prev is not None and prev.data.get("hold_until"):
                kept = datetime.fromisoformat(prev.data["hold_until"])
                hold = kept if kept > self.now else None
            due = [self.now + RESCORE_AFTER]
            policy = self.rules.policy
            if d.kind == "person" and d.stage in policy.sla_stages and d.assigned_at is not None:
                deadline = d.assigned_at + timedelta(hours=policy.sla_hours)
                if deadline > self.now:
                    due.append(deadline)
            override = overrides.get(d.key)
            if override is not None and override.honoured_until > self.now:
                due.append(override.honoured_until)
            if hold is not None:
                due.append(hold)
            data = {
                "kind": d.kind,
                "rule": d.rule,
                "influencers": list(d.influencers),
                "handoff": list(d.handoff) if d.handoff else None,
                "create_salesforce_lead": d.create_salesforce_lead,
                "hold_until": _iso(hold),
                "due_at": _iso(min(due)),
            }
            rows.append(
                DecisionRow(
                    key=d.key,
                    digest=self.rules.digest,
                    trace=trace_rows(d.trace),
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

    def _last_writes(self, groups: Iterable[Group]) -> dict[tuple[str, str, str, str], WriteRow]:
        ids: dict[tuple[str, str], list[str]] = {}
        for g in groups:
            for r in g.writable:
                ids.setdefault((r.system, r.object), []).append(r.id)
        out: dict[tuple[str, str, str, str], WriteRow] = {}
        for (system, obj), obj_ids in ids.items():
            for (rid, fname), w in self.ledger.last_writes(system, obj, obj_ids).items():
                out[(system, obj, rid, fname)] = w
        return out

    def _quarantine(self, system: str, obj: str, record_id: str, reason: str, key: str | None) -> None:
        self.ledger.quarantine(
            system, obj, record_id, reason, key=key, run_id=self.run_id, backoff=self.cycle.backoff
        )
        self.report.quarantined_now[system] += 1

    # -- 5. push and confirm

    def _predict(self, action: Action) -> None:
        """Count, in a dry run, what pushing this action would change."""
        self.report.tally.add(action)
        self.report.pushed[action.system] += 1

    def _enqueue(self, intent: Intent) -> None:
        self.buffers.setdefault((intent.system, intent.object, intent.create_key is not None), []).append(
            intent
        )

    def flush_full(self) -> bool:
        """Push every buffer that holds a full batch (Salesforce first: its creates queue HubSpot updates)."""
        if self.dry:
            return True
        for system in SYSTEMS:
            for bkey in sorted(k for k in self.buffers if k[0] == system):
                while len(self.buffers[bkey]) >= BATCH_SIZE[system]:
                    if not self._push_batch(bkey) or self.stopped():
                        return False
        return True

    def flush_all(self) -> bool:
        if self.dry:
            return True
        for system in SYSTEMS:
            # Creates before updates: a created record's id may be needed by an update of the same run.
            for bkey in sorted((k for k in self.buffers if k[0] == system), key=lambda k: (not k[2], k[1])):
                while self.buffers.get(bkey):
                    if not self._push_batch(bkey) or self.stopped():
                        return False
        return True

    def _push_batch(self, bkey: tuple[str, str, bool]) -> bool:
        system, obj, _ = bkey
        # One request per record: intents on one record whose fields do not overlap share it (a created
        # Lead's id joins the contact's owner update); an overlapping one waits for the next batch, so a
        # HubSpot stage cleared by one intent is set by the next only after the clear went through.
        entries: list[list[Intent]] = []
        fields: list[dict[str, Any]] = []
        at: dict[str, int] = {}
        rest: list[Intent] = []
        for intent in self.buffers[bkey]:
            slot = at.get(intent.record_id) if intent.record_id is not None else None
            if slot is not None:
                if set(intent.fields).isdisjoint(fields[slot]) and not _is_clear(entries[slot][0]):
                    entries[slot].append(intent)
                    fields[slot].update(intent.fields)
                else:
                    rest.append(intent)
            elif len(entries) < BATCH_SIZE[system]:
                if intent.record_id is not None:
                    at[intent.record_id] = len(entries)
                entries.append([intent])
                fields.append(dict(intent.fields))
            else:
                rest.append(intent)
        self.buffers[bkey] = rest
        self.ledger.mark_sent(i.id for entry in entries for i in entry)
        changes = [
            Change.create(entry[0].create_key, f)
            if entry[0].create_key
            else Change.update(str(entry[0].record_id), f)
            for entry, f in zip(entries, fields, strict=True)
        ]
        results = self.cycle.connectors[system].push(obj, changes)
        self._confirm(
            [i for entry in entries for i in entry],
            [r for entry, r in zip(entries, results, strict=True) for _ in entry],
        )
        return True

    def _confirm(self, batch: Sequence[Intent], results: Sequence[PushResult]) -> None:
        confirmed: dict[str, str | None] = {}
        failed: dict[str, str] = {}
        followups: list[Intent] = []
        with self.ledger.transaction():
            for intent, result in zip(batch, results, strict=True):
                # Popped: the run holds an action only until its push is confirmed (memory stays bounded).
                action = self.actions.pop(intent.id, None) or _action_from_intent(intent, self.mapping)
                if result.ok:
                    confirmed[intent.id] = result.id if intent.create_key else None
                    self.report.tally.add(action)
                    self.report.pushed[intent.system] += 1
                    ref = (
                        ("hubspot", "contacts", intent.create_key)
                        if intent.create_key
                        else (intent.system, intent.object, str(intent.record_id))
                    )
                    if ref in self.quarantine_refs:
                        self.ledger.release(*ref)
                    if intent.create_key and result.id:
                        nxt = followup(intent, result.id, self.mapping)
                        if nxt is not None:
                            follow = nxt.intent()
                            self.actions[follow.id] = nxt
                            followups.append(follow)
                    continue
                reason = f"{result.code}: {result.message}".strip(": ")
                failed[intent.id] = reason
                self.report.failed[intent.system] += 1
                if intent.create_key:
                    self._quarantine(
                        "hubspot",
                        "contacts",
                        intent.create_key,
                        f"Salesforce {intent.object} create refused: {reason}",
                        intent.key,
                    )
                else:
                    self._quarantine(intent.system, intent.object, str(intent.record_id), reason, intent.key)
            if confirmed:
                self.ledger.confirm(confirmed)
            if failed:
                self.ledger.fail(failed)
            if followups:
                self.ledger.add_intents(followups, run_id=self.run_id)
        for intent in followups:
            self._enqueue(intent)


class _BadRecord(Exception):
    """A record whose values cannot be read (held in quarantine while the rest of the cycle goes on)."""

    def __init__(self, record: RecordRow, reason: str) -> None:
        super().__init__(reason)
        self.record = record
        self.reason = reason


def _is_clear(intent: Intent) -> bool:
    return dict(intent.fields) == {"lifecyclestage": ""}


def _writes_by_record(writes: Mapping[tuple[str, str], WriteRow]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (rid, fname), w in writes.items():
        out.setdefault(rid, {})[fname] = w.value
    return out


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def _action_from_intent(intent: Intent, mapping: FieldMapping) -> Action:
    """An intent read back from the outbox as an action, its fields classified by what they are for."""
    changes = tuple(
        FieldChange(
            name,
            "create" if intent.create_key else _kind_of(mapping, intent.system, intent.object, name),
            None,
            value,
        )
        for name, value in intent.fields.items()
    )
    return Action(
        intent.system,
        intent.object,
        intent.key or "",
        changes,
        intent.reason,
        record_id=intent.record_id,
        create_key=intent.create_key,
        prerequisite=_is_clear(intent),
    )


def _kind_of(mapping: FieldMapping, system: str, obj: str, name: str) -> str:
    entity = entity_of(system, obj)
    if entity != "deal" and name == cross_id_field(mapping, system, entity):
        return "link"
    for logical in ("owner", "stage", "score"):
        lf = mapping.fields.get(logical)
        if lf is not None and any(b.field == name for b in lf.bindings.get((system, obj), ())):  # type: ignore[arg-type]
            return logical
    return "field"


def _predicted_followup(action: Action, mapping: FieldMapping) -> Action:
    nxt = followup(action.intent(), "(new)", mapping)
    if nxt is None:
        raise ValueError(f"{action.system} {action.object} is not a create with a follow-up")
    return nxt
