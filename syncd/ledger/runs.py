"""Runs: one row per cycle, plan or command, with its status and counters."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from syncd.core.types import (
    RunRow,
)
from syncd.errors import LedgerError
from syncd.ledger.rows import (
    _dumps,
    _run,
    _ts,
)
from syncd.ledger.store import Store, _guarded

log = logging.getLogger(__name__)


class Runs(Store):
    """Runs: one row per cycle, plan or command, with its status and counters."""

    @_guarded
    def start(self, kind: str = "cycle") -> str:
        """Record the start of a run and return its id (sortable by start time)."""
        now = self._clock()
        run_id = f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        with self.transaction():
            self.db.table("runs").insert(
                {"id": run_id, "kind": kind, "started_at": _ts(now), "status": "running", "pid": os.getpid()}
            )
        return run_id

    @_guarded
    def update(self, run_id: str, counters: Mapping[str, Any]) -> None:
        """Store a running run's counters so far (shown by ``status`` while it runs)."""
        with self.transaction():
            cursor = self._conn.execute(
                "UPDATE runs SET counters = ? WHERE id = ? AND status = 'running'", (_dumps(counters), run_id)
            )
            if cursor.rowcount != 1:
                raise LedgerError(f"run {run_id} is not running")

    @_guarded
    def finish(
        self,
        run_id: str,
        status: str,
        *,
        counters: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Close a running run as ``ok`` or ``failed``, with its final counters and error message."""
        if status not in ("ok", "failed"):
            raise ValueError(f"a run finishes as 'ok' or 'failed', not {status!r}")
        with self.transaction():
            sets = "status = ?, finished_at = ?, error = ?"
            params: list[Any] = [status, self._now(), error]
            if counters is not None:
                sets += ", counters = ?"
                params.append(_dumps(counters))
            cursor = self._conn.execute(
                f"UPDATE runs SET {sets} WHERE id = ? AND status = 'running'", [*params, run_id]
            )
            if cursor.rowcount != 1:
                raise LedgerError(f"run {run_id} is not running")

    @_guarded
    def get(self, run_id: str) -> RunRow | None:
        rows = list(self.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
        return _run(rows[0]) if rows else None

    @_guarded
    def recent(self, limit: int = 10) -> list[RunRow]:
        """The latest runs, newest first."""
        sql = "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?"
        return [_run(r) for r in self.db.query(sql, [limit])]

    @_guarded
    def mark_interrupted(self) -> list[str]:
        """Mark runs left ``running`` by a killed process as ``interrupted``; returns their ids."""
        # We hold the writer's lock, so a run still marked running belongs to a process that died.
        with self.transaction():
            ids = [
                r["id"] for r in self.db.query("SELECT id FROM runs WHERE status = 'running' ORDER BY rowid")
            ]
            if ids:
                self._conn.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = ?, error = ? WHERE status = 'running'",
                    (self._now(), "the process ended before the run finished"),
                )
        for run_id in ids:
            log.warning("run %s was interrupted (the process ended before it finished)", run_id)
        return ids
