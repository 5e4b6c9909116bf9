"""Push: intents out to the systems in batches, confirmed in the outbox (live), or counted (dry run).

A dry run is another pusher, not a branch: ``LivePusher`` writes intents to the outbox, sends them in
batches as large as each connector declares (``syncd.core.batch``) and confirms each batch in one
transaction; ``DryPusher`` counts what would be sent and runs the whole cycle inside a transaction it rolls
back, so the ledger is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from queue import Empty, Queue
from typing import Protocol

from syncd.connectors import Change, PushResult
from syncd.core.batch import take_batch
from syncd.core.plan import Action, action_from_intent, followup, predicted_followup
from syncd.core.systems import SYSTEMS
from syncd.core.types import Intent
from syncd.cycle.context import RunContext
from syncd.progress import Progress


class Pusher(Protocol):
    """Where the decide and replay stages hand their actions."""

    def session(self) -> contextlib.AbstractContextManager[None]:
        """The context the whole run executes in."""
        ...

    def replay(self, intents: Sequence[Intent]) -> bool:
        """Take intents a killed run left unconfirmed; False when the run was stopped."""
        ...

    def accept(self, actions: Sequence[Action]) -> None:
        """Take one chunk's actions, inside the transaction that stores its decisions."""
        ...

    def flush_full(self) -> bool:
        """Send every full batch; False when the run was stopped."""
        ...

    def flush_all(self, progress: Progress | None = None) -> bool:
        """Send everything left; False when the run was stopped."""
        ...

    def pending(self) -> int:
        """Intents waiting to be sent."""
        ...


class _Rollback(Exception):
    """Raised inside a dry run's transaction to undo everything it staged and decided."""


class DryPusher:
    """Counts what pushing each action would change; sends nothing and leaves the ledger as it was."""

    def __init__(self, run: RunContext) -> None:
        self.run = run

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        try:
            with self.run.ledger.transaction():
                yield
                raise _Rollback
        except _Rollback:
            pass

    def _predict(self, action: Action) -> None:
        self.run.report.tally.add(action)
        self.run.report.pushed[action.system] += 1

    def replay(self, intents: Sequence[Intent]) -> bool:
        for intent in intents:
            self._predict(action_from_intent(intent, self.run.mapping))
        return True

    def accept(self, actions: Sequence[Action]) -> None:
        for action in actions:
            self._predict(action)
            if action.is_create:
                self._predict(predicted_followup(action, self.run.mapping))

    def flush_full(self) -> bool:
        return True

    def flush_all(self, progress: Progress | None = None) -> bool:
        return True

    def pending(self) -> int:
        return 0


# Intents confirmed per transaction at least in the push stage, unless it waits for everything in flight.
CONFIRM_GROUP = 1000
# While deciding, what came back is confirmed in a chunk's transaction once this many intents are back: a
# confirmation writes each written field into the writes index, by record id, so all over it; confirming
# every chunk rewrote most of that index every chunk (at 100,000 persons, 540 MB of WAL for a 45 MB index).
DECIDE_CONFIRM_GROUP = 20_000


@dataclass
class _Job:
    """One batch handed to the sender: the intents, the requests they merged into, and what came back."""

    obj: str
    system: str
    intents: list[Intent]
    changes: list[Change]
    per_intent: list[int]
    results: list[PushResult] | None = None
    error: BaseException | None = None

    def results_per_intent(self) -> list[PushResult]:
        """Each intent's result: the result of the request its change merged into."""
        assert self.results is not None
        return [self.results[n] for n in self.per_intent]


class _Sender:
    """The threads that send batches, one per system (the two APIs are independent), each sending its
    system's batches one at a time in the order given, while the run's thread decides the next chunk. They
    only talk HTTP: the run's thread makes each batch's intents durable before handing it over, and confirms
    it in the ledger once it comes back. A stop request, or an error, leaves the batches not yet sent unsent
    (their intents stay in the outbox for the next start)."""

    def __init__(self, run: RunContext, depth: int) -> None:
        self.run = run
        self.todo: dict[str, Queue[_Job | None]] = {s: Queue(maxsize=depth) for s in SYSTEMS}
        self.done: Queue[_Job] = Queue()
        self.waiting: dict[str, int] = dict.fromkeys(SYSTEMS, 0)
        self.in_flight_intents = 0
        self.halt = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(s,), name=f"push-{s}", daemon=True) for s in SYSTEMS
        ]
        for thread in self.threads:
            thread.start()

    @property
    def in_flight(self) -> int:
        return sum(self.waiting.values())

    def _loop(self, system: str) -> None:
        todo = self.todo[system]
        while (job := todo.get()) is not None:
            if not (self.run.stopped() or self.halt.is_set()):
                try:
                    job.results = self.run.connectors[system].push(job.obj, job.changes)
                except BaseException as exc:  # raised again by the run's thread when it collects the job
                    job.error = exc
                    self.halt.set()
                # Sent: the requests are not needed again (a batch may wait a while to be confirmed).
                job.changes = []
            self.done.put(job)

    def submit(self, job: _Job) -> None:
        self.waiting[job.system] += 1
        self.in_flight_intents += len(job.intents)
        self.todo[job.system].put(job)

    def collect(self, *, wait: bool, limit: int | None = None) -> list[_Job]:
        """Batches that came back (each system's in the order sent): those already back, or (``wait``)
        every batch in flight, or ``limit`` of them."""
        jobs: list[_Job] = []
        while self.in_flight and (limit is None or len(jobs) < limit):
            try:
                job = self.done.get(block=wait)
            except Empty:
                break
            self.waiting[job.system] -= 1
            self.in_flight_intents -= len(job.intents)
            jobs.append(job)
        return jobs

    def close(self, *, abort: bool) -> None:
        """Stop the threads once the batches in flight are sent (``abort``: once those being sent are)."""
        if abort:
            self.halt.set()
        for todo in self.todo.values():
            todo.put(None)
        for thread in self.threads:
            thread.join()


class LivePusher:
    """Writes intents to the outbox, pushes them in batches and confirms each batch (see the module doc).

    Batches are sent by a thread per system (``_Sender``) while the run's thread goes on deciding; at most
    ``depth`` batches per system wait to be sent. Everything that touches the ledger stays on the run's
    thread.
    """

    def __init__(self, run: RunContext, *, depth: int = 4) -> None:
        self.run = run
        self.ledger = run.ledger
        self.depth = depth
        # (system, object, is a create) -> intents waiting, in the order they were written.
        self.buffers: dict[tuple[str, str, bool], list[Intent]] = {}
        # Intent id -> the action it came from, until its push is confirmed (memory stays bounded).
        self.actions: dict[str, Action] = {}
        self.sender: _Sender | None = None
        # Batches back from the sender, not yet confirmed.
        self.returned: list[_Job] = []
        # The push stage's progress while flush_all runs (every batch confirmed advances it).
        self.progress: Progress | None = None

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        self.sender = sender = _Sender(self.run, self.depth)
        try:
            yield
        except BaseException:
            # What was sent and not confirmed is replayed on the next start (rule 1).
            self.sender = None
            sender.close(abort=True)
            raise
        self.sender = None
        sender.close(abort=False)
        # A stopped run: the batches that were on the wire when it stopped are confirmed.
        self.returned.extend(sender.collect(wait=False))
        self._finish_all()

    def _enqueue(self, intent: Intent) -> None:
        self.buffers.setdefault((intent.system, intent.object, intent.create_key is not None), []).append(
            intent
        )

    def replay(self, intents: Sequence[Intent]) -> bool:
        for intent in intents:
            self.actions[intent.id] = action_from_intent(intent, self.run.mapping)
            self._enqueue(intent)
        return self.flush_all()

    def accept(self, actions: Sequence[Action]) -> None:
        intents = []
        for action in actions:
            intent = action.intent()
            self.actions[intent.id] = action
            intents.append(intent)
        # Batches that came back are confirmed in the chunk's transaction (one commit for both), once
        # DECIDE_CONFIRM_GROUP intents are back. (Until confirmed, a batch is replayed after a crash.)
        if sum(len(job.intents) for job in self.returned) >= DECIDE_CONFIRM_GROUP:
            self._finish_all()
        if intents:
            # Written before any of them is sent: the outbox is what a crash replays.
            self.ledger.outbox.add_intents(intents, run_id=self.run.run_id)
        for intent in intents:
            self._enqueue(intent)

    def pending(self) -> int:
        """Intents buffered or on their way (handed to the sender, not yet confirmed)."""
        return sum(len(b) for b in self.buffers.values()) + self.in_flight

    @property
    def in_flight(self) -> int:
        return self.sender.in_flight_intents if self.sender is not None else 0

    def _buffered(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def flush_full(self) -> bool:
        """Hand every full batch to the sender and confirm those that came back; does not wait for the rest."""
        # Salesforce first: its creates queue HubSpot updates.
        for system in SYSTEMS:
            for bkey in sorted(k for k in self.buffers if k[0] == system):
                while len(self.buffers[bkey]) >= self.run.connectors[system].batch_limit:
                    if self.run.stopped():
                        return False
                    self._send(bkey)
        if self.sender is not None:
            # Confirmed with the next chunk (``accept``), or by the push stage.
            self.returned.extend(self.sender.collect(wait=False))
        return not self.run.stopped()

    def flush_all(self, progress: Progress | None = None) -> bool:
        """Send everything left and wait for it (confirmations may queue more: HubSpot follow-ups)."""
        self.progress = progress
        try:
            return self._flush_all(progress)
        finally:
            self.progress = None

    def _flush_all(self, progress: Progress | None) -> bool:
        while True:
            for system in SYSTEMS:
                # Creates before updates: a created record's id may be needed by an update of the same run.
                for bkey in sorted(
                    (k for k in self.buffers if k[0] == system), key=lambda k: (not k[2], k[1])
                ):
                    while self.buffers.get(bkey):
                        if self.run.stopped():
                            self._collect(wait=True, progress=progress)
                            return False
                        self._send(bkey)
                        self._collect(wait=False, progress=progress)
            self._collect(wait=True, progress=progress)
            if self.run.stopped():
                return False
            if not self._buffered():
                return True

    def _send(self, bkey: tuple[str, str, bool]) -> None:
        """Take the next batch of one buffer, mark it sent, make the outbox durable, hand it to the sender."""
        system, obj, _ = bkey
        connector = self.run.connectors[system]
        requests, self.buffers[bkey] = take_batch(self.buffers[bkey], connector.batch_limit)
        batch = [i for request in requests for i in request.intents]
        # Rule 5: an intent is durable (fsynced, not only committed) before the call that applies it. (It
        # is not marked sent first: that would be one more transaction per batch, and a replay treats
        # pending and sent alike; confirm and fail count the attempt.)
        self.ledger.sync()
        changes = [
            Change.create(r.create_key, r.fields)
            if r.create_key
            else Change.update(str(r.record_id), r.fields)
            for r in requests
        ]
        per_intent = [n for n, r in enumerate(requests) for _ in r.intents]
        job = _Job(obj, system, batch, changes, per_intent)
        sender = self.sender
        if sender is None:  # outside a session (tests drive the pusher directly): send in this thread
            job.results = connector.push(obj, changes)
            self._finish(job)
            return
        while sender.waiting[system] >= self.depth:
            # Wait for a slot; what came back is confirmed with the rest, at the end of the chunk.
            self.returned.extend(sender.collect(wait=True, limit=1))
        sender.submit(job)

    def _collect(self, *, wait: bool, progress: Progress | None = None) -> None:
        """Confirm every batch that came back (all those in flight when ``wait``)."""
        if self.sender is not None:
            self.returned.extend(self.sender.collect(wait=wait))
        if wait or sum(len(job.intents) for job in self.returned) >= CONFIRM_GROUP:
            self._finish_all(progress)

    def _finish_all(self, progress: Progress | None = None) -> None:
        """Confirm the batches that came back, in one transaction (fewer commits, fewer page writes)."""
        progress = progress or self.progress
        jobs, self.returned = self.returned, []
        if not jobs:
            return
        error = None
        # Inside a chunk's transaction, no savepoint of its own: a failure here fails the chunk anyway, and a
        # savepoint over thousands of confirmations kept a copy of every page they changed in memory.
        with self.ledger.transaction(savepoint=False):
            for job in jobs:
                if job.error is not None:
                    error = error or job.error
                    continue
                self._finish(job)
                if progress is not None:
                    progress.advance(len(job.intents))
        if error is not None:
            raise error

    def _finish(self, job: _Job) -> None:
        if job.results is None:
            return  # not sent: the run stopped first; the intents stay in the outbox as sent
        self._confirm(job.intents, job.results_per_intent())

    def _confirm(self, batch: Sequence[Intent], results: Sequence[PushResult]) -> None:
        run, report = self.run, self.run.report
        confirmed: dict[str, str | None] = {}
        failed: dict[str, str] = {}
        followups: list[Intent] = []
        # No savepoint of its own: a failure fails the transaction it runs in (see _finish_all).
        with self.ledger.transaction(savepoint=False):
            for intent, result in zip(batch, results, strict=True):
                action = self.actions.pop(intent.id, None) or action_from_intent(intent, run.mapping)
                if result.ok:
                    confirmed[intent.id] = result.id if intent.create_key else None
                    report.tally.add(action)
                    report.pushed[intent.system] += 1
                    ref = (
                        ("hubspot", "contacts", intent.create_key)
                        if intent.create_key
                        else (intent.system, intent.object, str(intent.record_id))
                    )
                    if ref in run.quarantine_refs:
                        self.ledger.quarantine.release(*ref)
                    if intent.create_key and result.id:
                        nxt = followup(intent, result.id, run.mapping)
                        if nxt is not None:
                            follow = nxt.intent()
                            self.actions[follow.id] = nxt
                            followups.append(follow)
                    continue
                reason = f"{result.code}: {result.message}".strip(": ")
                failed[intent.id] = reason
                report.failed[intent.system] += 1
                if intent.create_key:
                    run.quarantine(
                        "hubspot",
                        "contacts",
                        intent.create_key,
                        f"Salesforce {intent.object} create refused: {reason}",
                        intent.key,
                    )
                else:
                    run.quarantine(intent.system, intent.object, str(intent.record_id), reason, intent.key)
            if confirmed:
                self.ledger.outbox.confirm(confirmed)
            if failed:
                self.ledger.outbox.fail(failed)
            if followups:
                self.ledger.outbox.add_intents(followups, run_id=run.run_id)
        for intent in followups:
            self._enqueue(intent)
