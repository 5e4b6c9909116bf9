"""One sync cycle: replay, pull, link, decide, push — each stage a small module over the ledger's stores
and one function of the pure core (``syncd.core``).

    cycle = SyncCycle.from_config(config)
    report = cycle.run(load_ruleset(config.rules.directory))     # `syncd once`
    report = cycle.run(rules, dry_run=True)                      # `syncd plan --pull`: writes nothing anywhere
    report = cycle.run(rules, dry_run=True, pull=False)          # `syncd plan`: from the ledger, 0 API calls

``SyncCycle`` satisfies the daemon's ``CycleRunner`` (``run_cycle(rules, stop=...)``, ``refresh_roster()``,
``close()``). The stages, in order:

    (roster)    the systems' reps, a cheap look each cycle, whole hourly       ledger.roster, .decisions
    replay.py   intents a killed run left unconfirmed go out again            ledger.outbox
    pull.py     changes since each watermark, staged a page at a time         ledger.records, .overrides
    link.py     records to persons and accounts (core.link.assign_keys)       ledger.identity
    decide.py   decisions and actions per chunk of keys (core.engine, .plan)  ledger.decisions
    push.py     actions out in batches (core.batch), confirmed; or counted    ledger.outbox, .quarantine

A dry run (``plan``) runs the same stages with ``push.DryPusher``: it counts instead of sending and runs the
whole cycle in a transaction it rolls back.

## Crash safety (``kill -9`` at any instant converges on the next start)

These rules hold in every stage; a change to the cycle must keep them true.

1. **Replay first.** Intents a killed run wrote but did not confirm are pushed again before anything else.
   Updates set the same values again; creates are upserts on the external-id field keyed by the HubSpot id,
   so a replayed create finds the record the first attempt made.
2. **A page and its watermark move together.** Each pulled page is staged in one transaction with its
   watermark: new or changed records are stored *dirty*, and stay dirty until their person or account is
   decided, so moving the watermark loses nothing. Staging also recognises syncd's own writes coming back
   (an echo: the record is left clean, so a cycle after a cycle has nothing to do — but only if it was clean
   before: a record still carrying an undecided change stays dirty) and a rep's manual owner
   change (recorded as an override the engine honours per the policy).
3. **Links are stored before decisions read them**: a converted Lead to its Contact, then unlinked records by
   the stored cross-id, then normalised email (persons) or domain (accounts), else a new key derived from the
   record (the same records always get the same keys).
4. **Decisions, intents and the clean mark commit together.** Accounts, then persons, are decided in chunks
   of keys: keys with dirty records, keys whose decision is *due* (an SLA deadline, an override's end, a
   recycling hold, the daily re-score as engagement points decay, a change in the roster facts of a rep who
   owns, holds or influences them), keys decided under other rules than those in force and concerned by the
   change (``cycle.rules_change`` lets the others stand; only what differs is written), quarantined records
   due for a retry, and
   the persons of accounts whose decision changed. Each chunk's decisions, sticky owners, round-robin state,
   day counts and **intents** are stored in one transaction that also marks the keys clean. Accounts and
   opportunities stay dirty until the persons they affect are decided too.
5. **An intent is durable before its push, and confirmed after.** Intents go out in batches as large as
   each API takes (one batch never holds one record twice). Before a batch is sent, ``ledger.sync()``
   fsyncs the WAL if any transaction since the last sync wrote intents: the ledger otherwise runs with
   WAL and ``synchronous=NORMAL`` (a commit survives a killed process at once, a power cut from the next
   checkpoint or sync), so only the one write that must precede an API call pays for an fsync. Batches
   that came back are confirmed together in one transaction (while deciding, once ``push.DECIDE_CONFIRM_GROUP``
   intents are back: a crash before then replays up to that many sent intents, each a same-value update or
   an upsert): writes are remembered for echo suppression,
   a created Lead is linked and its id queued for the HubSpot contact, a rejected record goes to
   quarantine with the reason. A crash before the confirmation replays the batch (rule 1).

## Overlap (what runs at the same time, and why it is safe)

- **Both systems pulled at once** (``syncd.prefetch.interleaved`` in ``pull.py``): one worker thread per
  system iterates that connector's pages, one page ahead of staging. The workers only talk HTTP (on a first
  read the HubSpot connector itself lists companies and deals while it searches contacts, each object in
  one thread of its own); the run's thread stages each page with its watermark (rule 2), each system's and
  each object's pages in their own order, several pages per transaction (up to ``pull.GROUP`` records: a
  run killed mid-pull pulls those again). A page fetched but not staged when the run stops moves no
  watermark. An error of either worker is raised in the run's thread; leaving the pull early (a stop, an
  error) stops both workers after the request each is in. The pages of a HubSpot first read by list carry,
  all but the last, a watermark meaning "nothing done yet" (``hubspot.FROM_START``; the list's order is
  undocumented, so no page says how far it got): a run killed during it lists again from the start.
- **Push overlaps decide** (``push.LivePusher`` and its ``_Sender``): after each decided chunk commits,
  its full batches go to a sender thread that sends them one at a time, in order, while the run's thread
  decides the next chunk; at most a few batches wait. Only the run's thread touches the ledger: it makes
  the intents durable before handing a batch over (rule 5) and confirms the batches that came back. A
  stop request is seen by the sender between batches; what it did not send stays in the outbox.

A stop request (``stop`` event) is honoured between pages, chunks and batches: what was decided is in the
outbox and goes out on the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from syncd.config import Config
from syncd.connectors import Connector, connectors_from_config
from syncd.core.rules import RuleSet
from syncd.core.schedule import Backoff
from syncd.core.systems import SYSTEMS
from syncd.cycle.context import RunContext, fewer_collections, quiet
from syncd.cycle.decide import decide_all, trace_rows, trace_step
from syncd.cycle.link import link
from syncd.cycle.pull import pull
from syncd.cycle.push import DryPusher, LivePusher
from syncd.cycle.replay import replay
from syncd.cycle.report import CycleReport
from syncd.cycle.roster import Roster, reps_of, rows_of
from syncd.cycle.teams import push_teams
from syncd.ledger import Ledger, utc_now
from syncd.logs import log_decision
from syncd.metrics import CycleSummary
from syncd.progress import NULL, Progress

__all__ = ["SYSTEMS", "CycleReport", "Roster", "SyncCycle", "trace_rows", "trace_step"]

log = logging.getLogger(__name__)

# Keys decided per engine call: large enough to amortise the queries, small enough to bound memory. (A first
# cycle's peak RSS at 20,000 persons, side by side: 186 MB with 2,000, 162 MB with 1,000, for the same time; a
# full re-decision of 100,000 persons takes about 0.2 s more CPU.)
CHUNK = 1000
# Every cycle looks at the roster cheaply (Salesforce's changed Users ride in the pull's /composite request);
# the whole roster (queues, archived owners) is listed again this often.
FULL_ROSTER_EVERY = timedelta(hours=1)
# HubSpot's active owners (one call, no delta form: "Retrieve all owners", GET /crm/v3/owners, takes only
# email, after, limit and archived; developers.hubspot.com, CRM API | Owners, no modified-since filter) are
# looked at every cycle, so that an owner archived in HubSpot reaches both systems within one cycle, like a
# User deactivated in Salesforce (``[hubspot] owners_every_seconds`` spaces the looks out). To keep an idle
# day under 6,000 HubSpot calls at the default 60 s interval (1,440 looks, 4,320 searches with one per pulled
# object, the roster refreshes and the archived listings), the deals are searched every other cycle
# (``[hubspot] deals_every_seconds``): a deal's change is seen within two minutes; contacts and companies,
# whose changes route people, every cycle. A look or search is due a tenth of the period early, so that cycles
# that start a little less than a period apart do not skip one more.
OWNERS_EVERY = timedelta(0)
DEALS_EVERY = timedelta(seconds=120)


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
        keep_days: int = 0,
        owners_every: timedelta = OWNERS_EVERY,
        deals_every: timedelta = DEALS_EVERY,
    ) -> None:
        self.ledger = ledger
        self.owners_every = owners_every
        self._owners_at: datetime | None = None
        self.deals_every = deals_every
        self._deals_at: datetime | None = None
        self.keep_days = keep_days
        self._pruned_at: float | None = None
        self.connectors: dict[str, Connector] = {"salesforce": salesforce, "hubspot": hubspot}
        self.clock = clock
        self.chunk = chunk
        self.backoff = backoff or Backoff()
        self.roster: Roster | None = None
        self._limited_reported: dict[str, int] = {}
        self._listed: list[dict[str, Any]] | None = None
        self._full_roster_at: datetime | None = None

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
        options.setdefault("keep_days", config.ledger.keep_days)
        options.setdefault("owners_every", timedelta(seconds=config.hubspot.owners_every_seconds))
        options.setdefault("deals_every", timedelta(seconds=config.hubspot.deals_every_seconds))
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
        """List the reps, queues and owners of both systems again (every cycle does, and the daemon on a
        schedule); the ledger keeps the list, and the decisions of reps whose facts changed become due."""
        reps = [*self.connectors["salesforce"].list_reps(), *self.connectors["hubspot"].list_reps()]
        self.roster = Roster.from_reps(reps)
        self._listed = rows_of(reps)
        self._full_roster_at = self._owners_at = self.clock()

    def _owners_due(self) -> bool:
        """Whether this cycle looks at HubSpot's active owners (see ``OWNERS_EVERY``)."""
        last = self._owners_at
        return last is None or self.clock() - last >= self.owners_every * 0.9

    def _skipped(self) -> frozenset[tuple[str, str]]:
        """The pulled objects this cycle leaves for a later one (see ``DEALS_EVERY``); their watermarks stay,
        so the next pull reads every change since."""
        last = self._deals_at
        if last is None or self.clock() - last >= self.deals_every * 0.9:
            self._deals_at = self.clock()
            return frozenset()
        return frozenset({("hubspot", "deals")})

    def _roster_from_ledger(self) -> Roster:
        """The roster as the last cycle listed it (a plan from the ledger makes no API call)."""
        rows = self.ledger.roster.load()
        if not rows:
            self.refresh_roster()
            assert self.roster is not None
            return self.roster
        return Roster.from_reps(reps_of(rows))

    def run_cycle(self, rules: RuleSet, *, stop: threading.Event, progress: Progress = NULL) -> CycleSummary:
        summary = self.run(rules, stop=stop, progress=progress).summary()
        self.prune()
        return summary

    def prune(self, *, every: float = 3600.0) -> None:
        """Retention (``[ledger] keep_days``): forget old history, at most once per ``every`` seconds."""
        if self.keep_days <= 0:
            return
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < every:
            return
        self._pruned_at = now
        self.ledger.retention.prune(self.clock() - timedelta(days=self.keep_days))

    # -- one run

    def run(
        self,
        rules: RuleSet,
        *,
        stop: threading.Event | None = None,
        dry_run: bool = False,
        pull: bool = True,
        progress: Progress = NULL,
    ) -> CycleReport:
        """One cycle; with ``dry_run`` everything is worked out, nothing is pushed, and the ledger is left
        exactly as it was (only the run itself is recorded): the report then says what a cycle would do.
        ``pull=False`` (a plan from the ledger) reads neither system: no roster refresh, no pull — the rules
        are applied to the last synced state and the roster the last cycle saw, with 0 API calls.
        ``progress`` hears each stage start and advance."""
        report = CycleReport(dry_run=dry_run)
        calls_before: dict[str, int] = {s: self._calls(s) for s in SYSTEMS}
        run_id = self.ledger.runs.start("plan" if dry_run else "cycle")
        report.run_id = run_id
        try:
            light: list[dict[str, Any]] | None = None
            if pull:
                last = self._full_roster_at
                if self._listed is None and (last is None or self.clock() - last >= FULL_ROSTER_EVERY):
                    self.refresh_roster()
                    roster = self.roster
                elif self._listed is None:
                    # The cheap look: HubSpot's active owners when due (OWNERS_EVERY), Salesforce's changed
                    # Users every cycle with the pull (one more delta query in the same /composite request).
                    if self._owners_due():
                        light = rows_of(self.connectors["hubspot"].list_reps(full=False))
                        self._owners_at = self.clock()
                    roster = self._roster_from_ledger()
                else:
                    roster = self.roster
            else:
                roster = self._roster_from_ledger()
            if roster is None:
                raise RuntimeError("refresh_roster() must run before a cycle")
            run = RunContext(
                ledger=self.ledger,
                connectors=self.connectors,
                rules=rules,
                roster=roster,
                report=report,
                run_id=run_id,
                stop=stop or threading.Event(),
                now=self.clock(),
                chunk=self.chunk,
                backoff=self.backoff,
                progress=progress,
                log_decision=quiet if dry_run else log_decision,
                quarantine_refs={(q.system, q.object, q.record_id) for q in self.ledger.quarantine.held()},
                assume_writes=not pull,
                keep_traces=not dry_run,
                store_decisions=not dry_run,
                # A dry run pulls everything and leaves the schedule alone: its pull is rolled back with it.
                skipped=self._skipped() if pull and not dry_run else frozenset(),
            )
            run.pusher = DryPusher(run) if dry_run else LivePusher(run)
            with fewer_collections(), run.pusher.session():
                if pull and self._listed is not None:
                    _save_roster(run, self._listed)
                    self._listed = None
                elif light is not None:
                    changed = run.ledger.roster.update(light, listed=("hubspot", "owner"))
                    if changed:
                        _make_due(run, changed)
                        run.roster = self.roster = self._roster_from_ledger()
                _execute(run, pull=pull)
        except BaseException as exc:
            self._finish(report, calls_before)
            self.ledger.runs.finish(run_id, "failed", counters=report.counters(), error=_one_line(exc))
            raise
        finally:
            progress.finish()
        self._finish(report, calls_before)
        self.ledger.runs.finish(run_id, "ok", counters=report.counters())
        return report

    def _calls(self, system: str) -> int:
        return sum(self.connectors[system].call_counts().values())

    def _finish(self, report: CycleReport, calls_before: Mapping[str, int]) -> None:
        report.api_calls = {s: self._calls(s) - calls_before[s] for s in SYSTEMS}
        # Since the last report, so that 429s met by a roster refresh between cycles are counted too.
        limited: dict[str, int] = {s: self.connectors[s].rate_limited() for s in SYSTEMS}
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
        summary = self.ledger.quarantine.summary()
        report.quarantined = summary.total
        report.reported = summary.reported


def _push(run: RunContext) -> bool:
    run.progress.stage("push", total=run.pusher.pending())
    # Account team writes after every other batch: an Account owner change erases its team.
    return run.pusher.flush_all(run.progress) and push_teams(run)


_STAGES: tuple[tuple[str, Callable[[RunContext], bool]], ...] = (
    ("replay", replay),
    ("pull", pull),
    ("link", link),
    ("decide", decide_all),
    ("push", _push),
)


def _save_roster(run: RunContext, listed: list[dict[str, Any]]) -> None:
    """Keep the roster the systems listed; the decisions of reps whose facts changed are due now."""
    changed = run.ledger.roster.save(listed)
    if changed:
        _make_due(run, changed)


def _make_due(run: RunContext, changed: set[str]) -> None:
    due = run.ledger.decisions.make_due(changed, run.now)
    if due:
        log.info("roster: %d reps changed in the systems; %d decisions due again", len(changed), due)


def _execute(run: RunContext, *, pull: bool = True) -> None:
    """Run the stages in order; a stage returns False when the run was asked to stop. Without ``pull``
    (a plan from the ledger) the pull stage is left out: nothing is read from either system."""
    for name, stage in _STAGES:
        if name == "pull" and not pull:
            continue
        began = time.perf_counter()
        done = stage(run)
        run.report.seconds[name] = round(time.perf_counter() - began, 3)
        if not done:
            run.report.interrupted = True
            log.info("cycle stopped on request; the outbox keeps what is decided for the next start")
            return


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
