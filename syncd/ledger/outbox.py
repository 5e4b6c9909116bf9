"""The outbox: intents written before each push and confirmed after, and the writes syncd made (echoes)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from syncd.core.types import (
    Intent,
    LinkRow,
    WriteRow,
)
from syncd.errors import LedgerError
from syncd.ledger.connection import Connection
from syncd.ledger.identity import Identity
from syncd.ledger.rows import (
    _batched,
    _check_system,
    _dt,
    _dumps,
    _intent,
    _loads,
    _ts,
)
from syncd.ledger.schema import INTENT_STATES
from syncd.ledger.store import Store, _guarded

log = logging.getLogger(__name__)


class Outbox(Store):
    """The outbox: intents written before each push and confirmed after, and the writes syncd made (echoes)."""

    def __init__(self, connection: Connection, *, identity: Identity) -> None:
        super().__init__(connection)
        # Confirming a create links the new record to its key, in the same transaction.
        self._identity = identity

    @_guarded
    def add_intents(self, intents: Iterable[Intent], *, run_id: str) -> None:
        """Write intents (state pending, of run ``run_id``) before pushing them; ``intents(run_id=...)`` reads
        them back as stored."""
        now = self._now()
        with self.transaction():
            for chunk in _batched(intents):
                rows = []
                for intent in chunk:
                    _check_system(intent.system)
                    if (intent.record_id is None) == (intent.create_key is None):
                        raise ValueError(f"intent {intent.id}: give exactly one of record_id and create_key")
                    rows.append(
                        (
                            intent.id,
                            run_id,
                            intent.key,
                            intent.system,
                            intent.object,
                            intent.record_id,
                            intent.create_key,
                            _dumps(dict(intent.fields)),
                            intent.reason,
                            now,
                            now,
                        )
                    )
                self._conn.executemany(
                    "INSERT INTO outbox (id, run_id, key, system, object, record_id, create_key, fields, reason, "
                    "state, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                    rows,
                )
            # Durable before any of them is pushed: the pusher syncs the ledger before it sends.
            self._c.needs_sync()

    @_guarded
    def mark_sent(self, ids: Iterable[str]) -> int:
        """Mark intents as being pushed now (one more attempt each); returns how many were open."""
        now = self._now()
        count = 0
        with self.transaction():
            for chunk in _batched(ids):
                cursor = self._conn.executemany(
                    "UPDATE outbox SET state = 'sent', attempts = attempts + 1, updated_at = ? "
                    "WHERE id = ? AND state IN ('pending', 'sent')",
                    [(now, i) for i in chunk],
                )
                count += cursor.rowcount
        return count

    @_guarded
    def confirm(self, results: Mapping[str, str | None]) -> int:
        """Mark intents as applied: intent id -> id of the record written (``None``: the intent's own id).

        In the same transaction, records each written field in ``writes`` (for echo suppression) and links
        a created record to the intent's key. Confirming twice is harmless; returns how many changed state.
        """
        now = self._now()
        count = 0
        with self.transaction():
            for chunk in _batched(results.items()):
                ids = [i for i, _ in chunk]
                marks = ",".join("?" * len(ids))
                # By id (the unary ``+`` keeps ``state`` off the index): without statistics, in a ledger's
                # first cycle, the planner took a list of ids for more work than the open intents' partial
                # index and walked every open intent per batch confirmed.
                open_rows = {
                    row[0]: row
                    for row in self._conn.execute(
                        "SELECT id, run_id, key, system, object, record_id, create_key, fields FROM outbox "
                        f"WHERE id IN ({marks}) AND +state IN ('pending', 'sent')",
                        ids,
                    )
                }
                updates: list[tuple[Any, ...]] = []
                writes: list[tuple[Any, ...]] = []
                links = []
                for intent_id, result_id in chunk:
                    row = open_rows.get(intent_id)
                    if row is None:
                        continue
                    _, run_id, key, system, obj, stored_id, create_key, fields = row
                    record_id = result_id or stored_id
                    if record_id is None:
                        raise LedgerError(f"intent {intent_id} creates a record: confirm it with the new id")
                    updates.append((record_id, now, intent_id))
                    for name, value in _loads(fields).items():
                        writes.append((system, obj, record_id, name, _dumps(value), now, run_id, intent_id))
                    if create_key is not None and key is not None:
                        links.append(LinkRow(key, system, obj, record_id, "created", run_id=run_id))
                if updates:
                    self._conn.executemany(
                        "UPDATE outbox SET state = 'confirmed', result_id = ?, error = NULL, updated_at = ?, "
                        "attempts = attempts + (state = 'pending') WHERE id = ?",
                        updates,
                    )
                    count += len(updates)
                if writes:
                    self._write_rows(writes)
                if links:
                    self._identity.add_links(links)
        return count

    @_guarded
    def fail(self, errors: Mapping[str, str]) -> int:
        """Mark intents as rejected for good: intent id -> the error; returns how many changed state."""
        now = self._now()
        with self.transaction():
            cursor = self._conn.executemany(
                "UPDATE outbox SET state = 'failed', error = ?, updated_at = ?, attempts = attempts + (state = 'pending') "
                "WHERE id = ? AND state IN ('pending', 'sent')",
                [(error, now, intent_id) for intent_id, error in errors.items()],
            )
        return cursor.rowcount

    @_guarded
    def unfinished(self, *, system: str | None = None) -> list[Intent]:
        """Intents pending or sent but not confirmed (a killed run's), in the order they were written."""
        sql = "SELECT * FROM outbox WHERE state IN ('pending', 'sent')"
        params: list[Any] = []
        if system is not None:
            sql += " AND system = ?"
            params.append(system)
        return [_intent(r) for r in self._select(sql + " ORDER BY rowid", params)]

    @_guarded
    def intents(
        self, *, key: str | None = None, run_id: str | None = None, limit: int | None = None
    ) -> list[Intent]:
        """Intents of one key and/or one run, newest first."""
        clauses, params = [], []
        if key is not None:
            clauses.append("key = ?")
            params.append(key)
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM outbox{where} ORDER BY rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_intent(r) for r in self._select(sql, params)]

    @_guarded
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(INTENT_STATES, 0)
        for r in self._select("SELECT state, count(*) AS n FROM outbox GROUP BY state"):
            counts[r["state"]] = r["n"]
        return counts

    @_guarded
    def record_writes(self, rows: Iterable[WriteRow]) -> None:
        """Remember values syncd wrote outside the outbox (``confirm`` records its own)."""
        with self.transaction():
            self._write_rows(
                (w.system, w.object, w.record_id, w.field, _dumps(w.value), _ts(w.at), w.run_id, w.intent_id)
                for w in rows
            )

    def _write_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self._conn.executemany(
            "INSERT OR REPLACE INTO writes (system, object, record_id, field, value, at, run_id, intent_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    @_guarded
    def last_writes(
        self, system: str, object: str, record_ids: Iterable[str], *, fields: Iterable[str] | None = None
    ) -> dict[tuple[str, str], WriteRow]:
        """(record id, field) -> what syncd last wrote there, for the given records (only to ``fields``,
        when given)."""
        grouped = self.writes_by_record(system, object, record_ids, fields=fields)
        return {(rid, name): w for rid, written in grouped.items() for name, w in written.items()}

    @_guarded
    def writes_by_record(
        self, system: str, object: str, record_ids: Iterable[str], *, fields: Iterable[str] | None = None
    ) -> dict[str, dict[str, WriteRow]]:
        """Record id -> field -> what syncd last wrote there (``last_writes`` grouped by record, as a chunk of
        decisions reads them: hundreds of thousands in a full re-decision)."""
        found: dict[str, dict[str, WriteRow]] = {}
        names = sorted(set(fields)) if fields is not None else None
        if names == []:
            return found
        only = f" AND field IN ({','.join('?' * len(names))})" if names else ""
        for chunk in _batched(record_ids):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT record_id, field, value, at, run_id, intent_id FROM writes "
                f"WHERE system = ? AND object = ? AND record_id IN ({marks}){only}"
            )
            params = [system, object, *chunk, *(names or ())]
            for rid, name, value, at, run_id, intent_id in self._conn.execute(sql, params):
                written = found.get(rid)
                if written is None:
                    written = found[rid] = {}
                written[name] = WriteRow(system, object, rid, name, _loads(value), _dt(at), run_id, intent_id)
        return found

    def last_write(self, system: str, object: str, record_id: str, field: str) -> WriteRow | None:
        return self.last_writes(system, object, [record_id]).get((record_id, field))
