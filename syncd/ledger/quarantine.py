"""Quarantine: records that failed, held with a growing retry delay, never dropped."""

from __future__ import annotations

import logging

from syncd.core.schedule import Backoff
from syncd.core.types import (
    QuarantineRow,
    QuarantineSummary,
)
from syncd.ledger.rows import (
    _check_system,
    _dt,
    _quarantine,
    _ts,
)
from syncd.ledger.store import Store, _guarded

log = logging.getLogger(__name__)


class Quarantine(Store):
    """Quarantine: records that failed, held with a growing retry delay, never dropped."""

    @_guarded
    def hold(
        self,
        system: str,
        object: str,
        record_id: str,
        reason: str,
        *,
        key: str | None = None,
        run_id: str | None = None,
        backoff: Backoff | None = None,
    ) -> QuarantineRow:
        """Hold a record that failed (again): one more attempt, the next retry pushed out exponentially,
        and ``reported`` set once attempts reach ``backoff.report_after``. Never drops the record."""
        _check_system(system)
        policy = backoff or Backoff()
        now = self._clock()
        with self.transaction():
            row = self._conn.execute(
                "SELECT attempts, first_seen_at, key FROM quarantine WHERE system = ? AND object = ? AND record_id = ?",
                (system, object, record_id),
            ).fetchone()
            attempts = 1 if row is None else int(row[0]) + 1
            first = now if row is None else _dt(row[1])
            entry = QuarantineRow(
                system=system,
                object=object,
                record_id=record_id,
                reason=reason,
                attempts=attempts,
                first_seen_at=first,
                last_attempt_at=now,
                next_attempt_at=now + policy.delay(attempts),
                reported=attempts >= policy.report_after,
                key=key if key is not None else (None if row is None else row[2]),
                run_id=run_id,
            )
            self.db.table("quarantine").upsert(
                {
                    "system": system,
                    "object": object,
                    "record_id": record_id,
                    "key": entry.key,
                    "reason": reason,
                    "attempts": attempts,
                    "first_seen_at": _ts(first),
                    "last_attempt_at": _ts(now),
                    "next_attempt_at": _ts(entry.next_attempt_at),
                    "reported": int(entry.reported),
                    "run_id": run_id,
                },
                pk=("system", "object", "record_id"),
            )
        if entry.reported:
            log.warning(
                "%s %s %s failed %d times and stays quarantined: %s",
                system,
                object,
                record_id,
                attempts,
                reason,
            )
        return entry

    @_guarded
    def release(self, system: str, object: str, record_id: str) -> bool:
        """Take a record out of quarantine once it was processed; False when it was not held."""
        with self.transaction():
            cursor = self._conn.execute(
                "DELETE FROM quarantine WHERE system = ? AND object = ? AND record_id = ?",
                (system, object, record_id),
            )
        return cursor.rowcount == 1

    @_guarded
    def held(self, *, system: str | None = None, due_only: bool = False) -> list[QuarantineRow]:
        """Held records, earliest retry first; with ``due_only``, only those whose retry time has come."""
        clauses, params = [], []
        if system is not None:
            clauses.append("system = ?")
            params.append(system)
        if due_only:
            clauses.append("next_attempt_at <= ?")
            params.append(self._now())
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM quarantine{where} ORDER BY next_attempt_at, system, object, record_id"
        return [_quarantine(r) for r in self.db.query(sql, params)]

    @_guarded
    def entry(self, system: str, object: str, record_id: str) -> QuarantineRow | None:
        sql = "SELECT * FROM quarantine WHERE system = ? AND object = ? AND record_id = ?"
        rows = list(self.db.query(sql, [system, object, record_id]))
        return _quarantine(rows[0]) if rows else None

    @_guarded
    def summary(self) -> QuarantineSummary:
        now = self._now()
        total = reported = due = 0
        by_object: dict[tuple[str, str], int] = {}
        sql = (
            "SELECT system, object, count(*) AS n, sum(reported) AS reported, "
            "sum(next_attempt_at <= ?) AS due FROM quarantine GROUP BY system, object ORDER BY system, object"
        )
        for r in self.db.query(sql, [now]):
            by_object[(r["system"], r["object"])] = r["n"]
            total += r["n"]
            reported += r["reported"]
            due += r["due"]
        return QuarantineSummary(total, reported, due, by_object)
