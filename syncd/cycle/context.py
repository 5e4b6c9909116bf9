"""The state the stages of one run share: the ledger, the connectors, the rules, the roster, the report,
the pusher, and the run's clock reading."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from syncd.connectors import Connector
from syncd.core.rules import RuleSet
from syncd.core.schedule import Backoff
from syncd.core.types import WriteRow
from syncd.cycle.report import CycleReport
from syncd.cycle.roster import Roster
from syncd.ledger import Ledger
from syncd.progress import Progress

if TYPE_CHECKING:
    from syncd.core.mapping import Mapping as FieldMapping
    from syncd.core.types import QuarantineRow, RepDirectory
    from syncd.cycle.push import Pusher

RecordRef = tuple[str, str, str]


@dataclass
class RunContext:
    """One run's shared state. ``log_decision`` logs a changed decision (a dry run's is quiet)."""

    ledger: Ledger
    connectors: Mapping[str, Connector]
    rules: RuleSet
    roster: Roster
    report: CycleReport
    run_id: str
    stop: threading.Event
    now: datetime
    chunk: int
    backoff: Backoff
    progress: Progress
    log_decision: Callable[..., None]
    pusher: Pusher = field(init=False)
    # A plan from the ledger (no pull): the records are taken as syncd's confirmed writes left them, since
    # the systems' echoes of those writes have not been pulled yet.
    assume_writes: bool = False
    # A dry run's decisions are rolled back with it: their traces are never read, so never built.
    keep_traces: bool = True
    # Nor are its decisions stored: nothing reads one after it is made (each key is decided once per run,
    # and persons take their account's facts from the run, not the ledger). It counts which changed.
    store_decisions: bool = True
    # Pulled objects (system, object) this run does not pull (searched less often; see syncd.cycle).
    skipped: frozenset[tuple[str, str]] = frozenset()
    # Every record in quarantine when the run started: only these need releasing after a good push.
    quarantine_refs: set[RecordRef] = field(default_factory=set)
    _held: list[QuarantineRow] | None = field(default=None, init=False, repr=False)

    def held_quarantine(self) -> list[QuarantineRow]:
        """The quarantine as the run found it, read once per run."""
        if self._held is None:
            self._held = self.ledger.quarantine.held()
        return self._held

    @property
    def mapping(self) -> FieldMapping:
        return self.rules.mapping

    @property
    def directory(self) -> RepDirectory:
        return self.roster.directory

    def stopped(self) -> bool:
        return self.stop.is_set()

    def quarantine(self, system: str, obj: str, record_id: str, reason: str, key: str | None) -> None:
        """Hold a record that failed (again), counted in the report."""
        self.ledger.quarantine.hold(
            system, obj, record_id, reason, key=key, run_id=self.run_id, backoff=self.backoff
        )
        self.report.quarantined_now[system] += 1


# The cyclic garbage collector's thresholds during a run (``fewer_collections``): a run allocates millions of
# short-lived rows, views and decisions, almost none in reference cycles, and with the defaults (700, 10, 10)
# the collector walked the surviving ones over and over: 11 % of a full re-decision of 100,000 persons
# (45.0 s against 40.2 s with it off, `plan` a day after the first cycle). With these, as fast as off.
RUN_GC_THRESHOLDS = (50_000, 20, 100)


@contextlib.contextmanager
def fewer_collections(thresholds: tuple[int, int, int] = RUN_GC_THRESHOLDS) -> Iterator[None]:
    """Collect cyclic garbage less often while a run lasts; the thresholds before are restored after."""
    before = gc.get_threshold()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def quiet(*args: Any, **kwargs: Any) -> None:
    """A dry run's decision log: nothing was decided for real."""


class WriteCache:
    """syncd's latest writes to the records of one chunk of keys, each record's read from the outbox once
    (decide, its plan from the ledger and the teams of the chunk's accounts share them)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.asked: set[RecordRef] = set()
        self.found: dict[RecordRef, dict[str, WriteRow]] = {}

    def of(self, refs: Iterable[RecordRef]) -> Mapping[RecordRef, Mapping[str, WriteRow]]:
        """ref -> field -> the last write (records never written to are absent)."""
        missing: dict[tuple[str, str], list[str]] = {}
        for ref in refs:
            if ref not in self.asked:
                self.asked.add(ref)
                missing.setdefault((ref[0], ref[1]), []).append(ref[2])
        for (system, obj), ids in missing.items():
            for rid, fields in self.ledger.outbox.writes_by_record(system, obj, ids).items():
                self.found[(system, obj, rid)] = fields
        return self.found

    def by_field(self) -> ByField:
        """The writes read so far, looked up by (system, object, record id, field), as the planner does."""
        return ByField(self.found)


class ByField(Mapping[tuple[str, str, str, str], WriteRow]):
    """A view of ``WriteCache.found`` by (system, object, record id, field), without copying it."""

    def __init__(self, found: Mapping[RecordRef, Mapping[str, WriteRow]]) -> None:
        self.found = found

    def get(self, key: tuple[str, str, str, str], default: Any = None) -> Any:
        fields = self.found.get(key[:3])
        return default if fields is None else fields.get(key[3], default)

    def __getitem__(self, key: tuple[str, str, str, str]) -> WriteRow:
        return self.found[key[:3]][key[3]]

    def __iter__(self) -> Iterator[tuple[str, str, str, str]]:
        return ((*ref, name) for ref, fields in self.found.items() for name in fields)

    def __len__(self) -> int:
        return sum(len(fields) for fields in self.found.values())
