"""Push: intents out to the systems in batches, confirmed in the outbox (live), or counted (dry run).

A dry run is another pusher, not a branch: ``LivePusher`` writes intents to the outbox, sends them in
batches as large as each connector declares (``syncd.core.batch``) and confirms each batch in one
transaction; ``DryPusher`` counts what would be sent and runs the whole cycle inside a transaction it rolls
back, so the ledger is left exactly as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
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


class LivePusher:
    """Writes intents to the outbox, pushes them in batches and confirms each batch (see the module doc)."""

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.ledger = run.ledger
        # (system, object, is a create) -> intents waiting, in the order they were written.
        self.buffers: dict[tuple[str, str, bool], list[Intent]] = {}
        # Intent id -> the action it came from, until its push is confirmed (memory stays bounded).
        self.actions: dict[str, Action] = {}

    def session(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

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
        if intents:
            # Written before any of them is sent: the outbox is what a crash replays.
            self.ledger.outbox.add_intents(intents, run_id=self.run.run_id)
        for intent in intents:
            self._enqueue(intent)

    def pending(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def flush_full(self) -> bool:
        # Salesforce first: its creates queue HubSpot updates.
        for system in SYSTEMS:
            for bkey in sorted(k for k in self.buffers if k[0] == system):
                while len(self.buffers[bkey]) >= self.run.connectors[system].batch_limit:
                    if not self._push_batch(bkey) or self.run.stopped():
                        return False
        return True

    def flush_all(self, progress: Progress | None = None) -> bool:
        for system in SYSTEMS:
            # Creates before updates: a created record's id may be needed by an update of the same run.
            for bkey in sorted((k for k in self.buffers if k[0] == system), key=lambda k: (not k[2], k[1])):
                while self.buffers.get(bkey):
                    sent = self._push_batch(bkey)
                    if progress is not None:
                        progress.advance(sent)
                    if self.run.stopped():
                        return False
        return True

    def _push_batch(self, bkey: tuple[str, str, bool]) -> int:
        """Send the next batch of one buffer and confirm it; returns the number of intents it carried."""
        system, obj, _ = bkey
        connector = self.run.connectors[system]
        requests, self.buffers[bkey] = take_batch(self.buffers[bkey], connector.batch_limit)
        batch = [i for request in requests for i in request.intents]
        self.ledger.outbox.mark_sent(i.id for i in batch)
        changes = [
            Change.create(r.create_key, r.fields)
            if r.create_key
            else Change.update(str(r.record_id), r.fields)
            for r in requests
        ]
        results = connector.push(obj, changes)
        self._confirm(batch, [res for r, res in zip(requests, results, strict=True) for _ in r.intents])
        return len(batch)

    def _confirm(self, batch: Sequence[Intent], results: Sequence[PushResult]) -> None:
        run, report = self.run, self.run.report
        confirmed: dict[str, str | None] = {}
        failed: dict[str, str] = {}
        followups: list[Intent] = []
        with self.ledger.transaction():
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
