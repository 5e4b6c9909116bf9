"""Overrides: manual changes of an owner that syncd honours for a while."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from syncd.core.types import (
    OverrideRow,
)
from syncd.ledger.rows import (
    _batched,
    _check_system,
    _override,
    _ts,
)
from syncd.ledger.store import Store, _guarded

log = logging.getLogger(__name__)


class Overrides(Store):
    """Overrides: manual changes of an owner that syncd honours for a while."""

    @_guarded
    def record(self, row: OverrideRow) -> OverrideRow:
        """Remember a manual change; the same change (same field and rep) still honoured is not added twice.
        Returns the stored override (the earlier one when it was already known)."""
        _check_system(row.system)
        with self.transaction():
            existing = list(
                self._select(
                    "SELECT * FROM overrides WHERE key = ? AND system = ? AND object = ? AND record_id = ? "
                    "AND field = ? AND rep IS ? AND honoured_until > ? ORDER BY seq DESC LIMIT 1",
                    [row.key, row.system, row.object, row.record_id, row.field, row.rep, _ts(row.seen_at)],
                )
            )
            if existing:
                return _override(existing[0])
            cursor = self._conn.execute(
                "INSERT INTO overrides (key, system, object, record_id, field, rep, previous, changed_by, "
                "seen_at, honoured_until, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.key,
                    row.system,
                    row.object,
                    row.record_id,
                    row.field,
                    row.rep,
                    row.previous,
                    row.changed_by,
                    _ts(row.seen_at),
                    _ts(row.honoured_until),
                    row.run_id,
                ),
            )
        return replace(row, seq=cursor.lastrowid)

    @_guarded
    def active(
        self, keys: Iterable[str], *, field: str = "owner", now: datetime | None = None
    ) -> dict[str, OverrideRow]:
        """Key -> its latest override of ``field`` still honoured at ``now``."""
        at = _ts(now or self._clock())
        found: dict[str, OverrideRow] = {}
        for chunk in _batched(keys):
            marks = ",".join("?" * len(chunk))
            sql = (
                f"SELECT * FROM overrides WHERE key IN ({marks}) AND field = ? AND honoured_until > ? "
                "ORDER BY seq"
            )
            for r in self._select(sql, [*chunk, field, at]):
                found[r["key"]] = _override(r)
        return found

    def active_one(
        self, key: str, *, field: str = "owner", now: datetime | None = None
    ) -> OverrideRow | None:
        return self.active([key], field=field, now=now).get(key)

    @_guarded
    def of_key(self, key: str) -> list[OverrideRow]:
        return [
            _override(r) for r in self._select("SELECT * FROM overrides WHERE key = ? ORDER BY seq", [key])
        ]
