"""Read views that join several stores: ``syncd status``, ``syncd explain``, plans and the demo."""

from __future__ import annotations

import logging
from typing import Any

from syncd.core.types import (
    KeyHistory,
    StatusView,
)
from syncd.errors import LedgerError
from syncd.ledger.connection import Connection
from syncd.ledger.decisions import Decisions
from syncd.ledger.identity import Identity
from syncd.ledger.outbox import Outbox
from syncd.ledger.overrides import Overrides
from syncd.ledger.quarantine import Quarantine
from syncd.ledger.records import Records
from syncd.ledger.rows import (
    _norm,
    _quarantine,
)
from syncd.ledger.runs import Runs
from syncd.ledger.schema import KEY_KINDS
from syncd.ledger.store import Store, _guarded

log = logging.getLogger(__name__)


class Views(Store):
    """Read views that join several stores: ``syncd status``, ``syncd explain``, plans and the demo."""

    def __init__(
        self,
        connection: Connection,
        *,
        runs: Runs,
        records: Records,
        identity: Identity,
        decisions: Decisions,
        outbox: Outbox,
        overrides: Overrides,
        quarantine: Quarantine,
    ) -> None:
        super().__init__(connection)
        self._runs = runs
        self._records = records
        self._identity = identity
        self._decisions = decisions
        self._outbox = outbox
        self._overrides = overrides
        self._quarantine = quarantine

    @property
    def schema_version(self) -> int:
        return self._c.schema_version

    @_guarded
    def status(self, *, runs: int = 10) -> StatusView:
        """Recent runs, watermarks, quarantine, outbox and counts: the ledger's half of ``syncd status``."""
        keys = dict.fromkeys(KEY_KINDS, 0)
        for r in self.db.query("SELECT kind, count(*) AS n FROM entities GROUP BY kind"):
            keys[r["kind"]] = r["n"]
        return StatusView(
            path=str(self.path),
            schema_version=self.schema_version,
            runs=self._runs.recent(runs),
            watermarks=self._records.watermarks(),
            quarantine=self._quarantine.summary(),
            outbox=self._outbox.counts(),
            records=self._records.counts(),
            keys=keys,
        )

    @_guarded
    def find_keys(self, query: str) -> list[str]:
        """Keys matching what a user types to ``syncd explain``: a key, an email, or a record id."""
        query = query.strip()
        if self._identity.key_kind(query) is not None:
            return [query]
        if "@" in query:
            sql = (
                "SELECT DISTINCT l.key FROM records r JOIN links l USING (system, object, id) "
                "WHERE r.email = ? ORDER BY l.key"
            )
            return [r["key"] for r in self.db.query(sql, [_norm(query)])]
        sql = "SELECT DISTINCT key FROM links WHERE id = ? ORDER BY key"
        return [r["key"] for r in self.db.query(sql, [query])]

    @_guarded
    def key_history(self, key: str, *, limit: int = 50) -> KeyHistory:
        """Everything known about one key: linked records, decision and its history, overrides, intents."""
        kind = self._identity.key_kind(key)
        if kind is None:
            raise LedgerError(f"no person or account {key} in the ledger")
        quarantine = [
            _quarantine(r)
            for r in self.db.query("SELECT * FROM quarantine WHERE key = ? ORDER BY system", [key])
        ]
        return KeyHistory(
            key=key,
            kind=kind,
            links=self._identity.links_of(key),
            records=self._records.of_key(key),
            decision=self._decisions.get(key),
            history=self._decisions.history(key, limit=limit),
            assignment=self._decisions.assignment(key),
            overrides=self._overrides.of_key(key),
            intents=self._outbox.intents(key=key, limit=limit),
            quarantine=quarantine,
        )

    @_guarded
    def example_email(self) -> str | None:
        """A person worth explaining: one whose created record was confirmed, else any confirmed change."""
        queries = (
            "SELECT r.email FROM outbox o JOIN links l ON l.key = o.key "
            "JOIN records r ON r.system = l.system AND r.object = l.object AND r.id = l.id "
            "WHERE o.create_key IS NOT NULL AND o.state = 'confirmed' AND r.email IS NOT NULL "
            "ORDER BY o.rowid LIMIT 1",
            "SELECT r.email FROM outbox o JOIN links l ON l.key = o.key "
            "JOIN records r ON r.system = l.system AND r.object = l.object AND r.id = l.id "
            "WHERE o.state = 'confirmed' AND r.email IS NOT NULL ORDER BY o.rowid LIMIT 1",
        )
        for sql in queries:
            row = self._conn.execute(sql).fetchone()
            if row is not None:
                return str(row[0])
        return None

    @_guarded
    def owners_by_kind(self) -> dict[tuple[str, str | None], int]:
        """(kind, decided owner) -> keys, for the status page: owners ``queue:NAME`` wait in a queue, and
        owner None means no rule routed the key."""
        sql = (
            "SELECT e.kind, d.owner, count(*) FROM decisions d JOIN entities e ON e.key = d.key "
            "GROUP BY e.kind, d.owner"
        )
        return {(str(kind), owner): int(n) for kind, owner, n in self._conn.execute(sql)}

    @_guarded
    def all_keys(self) -> list[str]:
        """Every person and account key, in key order (the crash tests compare two ledgers by them)."""
        return [str(r[0]) for r in self._conn.execute("SELECT key FROM entities ORDER BY key")]

    @_guarded
    def decision_outcomes(self) -> list[tuple[Any, ...]]:
        """Every key's decided (key, stage, score, owner, team), in key order: two ledgers that decided alike
        agree."""
        sql = "SELECT key, stage, score, owner, team FROM decisions ORDER BY key"
        return [tuple(row) for row in self._conn.execute(sql)]
