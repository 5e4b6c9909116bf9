"""Retention: what the ledger forgets once it is older than ``[ledger] keep_days``.

Finished runs, confirmed intents, decision history, record versions, rule sets no decision uses (each record keeps its version at
the cut, see ``Records.prune_versions``) older than the cut-off are deleted, a bounded number
of rows per call (the daemon calls ``prune`` after each cycle, so a ledger that kept years catches up over a
few cycles instead of stalling one), and the freed pages go back to the file system by incremental vacuum.
Everything a cycle needs stays: records, links, current decisions, assignments, open or failed intents, the
writes remembered for echo suppression, overrides and quarantine; a run is kept while an intent it wrote is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from syncd.ledger.connection import Connection
from syncd.ledger.records import Records
from syncd.ledger.rows import _ts
from syncd.ledger.store import Store, _guarded

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pruned:
    """Rows deleted by one ``prune`` call, and the pages given back to the file system."""

    runs: int = 0
    intents: int = 0
    history: int = 0
    versions: int = 0
    pages: int = 0

    @property
    def rows(self) -> int:
        return self.runs + self.intents + self.history + self.versions


class Retention(Store):
    """Deletes what is older than the retention period (see the module docstring)."""

    def __init__(self, connection: Connection, *, records: Records) -> None:
        super().__init__(connection)
        # Record versions (what backtest replays) are kept by the records store, which knows how to cut them.
        self._records = records

    @_guarded
    def prune(self, before: datetime, *, limit: int = 5000, vacuum_pages: int = 2048) -> Pruned:
        """Delete up to ``limit`` rows of each kind older than ``before`` and give back up to
        ``vacuum_pages`` free pages; cheap when there is nothing to delete (index range scans)."""
        cutoff = _ts(before)
        with self.transaction():
            # Intents and history rows are appended in time order: the oldest come first by rowid.
            intents = self._conn.execute(
                "DELETE FROM outbox WHERE rowid IN (SELECT rowid FROM outbox WHERE state = 'confirmed' "
                "AND updated_at < ? ORDER BY rowid LIMIT ?)",
                (cutoff, limit),
            ).rowcount
            history = self._conn.execute(
                "DELETE FROM decision_history WHERE seq IN (SELECT seq FROM decision_history WHERE at < ? "
                "ORDER BY seq LIMIT ?)",
                (cutoff, limit),
            ).rowcount
            old = [
                str(row[0])
                for row in self._conn.execute(
                    "SELECT id FROM runs r WHERE started_at < ? AND status != 'running' "
                    "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.run_id = r.id) ORDER BY started_at LIMIT ?",
                    (cutoff, limit),
                )
            ]
            runs = 0
            if old:
                marks = ",".join("?" * len(old))
                # A record last seen by an old run keeps its data; it only forgets which run that was.
                self._conn.execute(f"UPDATE records SET seen_run = NULL WHERE seen_run IN ({marks})", old)
                runs = self._conn.execute(f"DELETE FROM runs WHERE id IN ({marks})", old).rowcount
            versions = self._records.prune_versions(before)
            # A rule set no decision was made under any more (a few kilobytes each) is not compared again.
            self._conn.execute(
                "DELETE FROM rulesets WHERE saved_at < ? AND NOT EXISTS "
                "(SELECT 1 FROM decisions d WHERE d.digest = rulesets.digest)",
                (cutoff,),
            )
        pages = 0
        if vacuum_pages > 0:
            free = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
            if free:
                # executescript steps the pragma to its end (one execute() frees a single page).
                self._conn.executescript(f"PRAGMA incremental_vacuum({int(vacuum_pages)});")
                pages = free - int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
        pruned = Pruned(runs, intents, history, versions, pages)
        if pruned.rows or pages:
            log.info(
                "ledger retention: deleted %d runs, %d confirmed intents, %d decision changes, %d record "
                "versions older than %s; %d free pages given back",
                runs,
                intents,
                history,
                versions,
                cutoff,
                pages,
                extra={"event": "retention", "runs": runs, "intents": intents, "history": history},
            )
        return pruned
