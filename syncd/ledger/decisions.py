"""Decisions: the latest decision per key and its history, sticky assignments, round robin and daily caps."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

from syncd.core.types import (
    AssignmentRow,
    DecisionChange,
    DecisionRow,
)
from syncd.ledger.rows import (
    _KEY_PREFIX,
    _NO_TRACE,
    _batched,
    _change,
    _decision,
    _dt,
    _dumps,
    _loads,
    _pack_trace,
    _ts,
    _unpack_trace,
)
from syncd.ledger.store import Store, _guarded

log = logging.getLogger(__name__)


class Decisions(Store):
    """Decisions: the latest decision per key and its history, sticky assignments, round robin and daily caps."""

    @_guarded
    def record(self, rows: Iterable[DecisionRow]) -> list[str]:
        """Store the latest decision per key; a change of stage, score, owner or team is added to the history.

        Returns the keys whose outcome changed (new keys included). A decision equal in outcome to the
        stored one refreshes its trace and digest without adding history, so re-running a cycle is quiet.
        """
        changed: list[str] = []
        with self.transaction():
            for chunk in _batched(rows):
                by_key = {row.key: row for row in chunk}
                current = self._outcomes(by_key)
                history: list[tuple[Any, ...]] = []
                upserts: list[tuple[Any, ...]] = []
                for key, row in by_key.items():
                    trace, data = _pack_trace(row.trace), _dumps(dict(row.data))
                    values = (row.stage, row.score, row.owner, row.team, row.digest, trace, data)
                    before = current.get(key)
                    if before == values:
                        continue  # nothing about it changed: no write at all
                    upserts.append((key, *values, _ts(row.decided_at), row.run_id))
                    if before is not None and before[:4] == values[:4]:
                        continue
                    changed.append(key)
                    prev = before[:4] if before is not None else (None, None, None, None)
                    # The trace is kept once, with the current decision; history keeps the outcomes.
                    history.append(
                        (key, _ts(row.decided_at), row.run_id, *values[:4], *prev, row.digest, _NO_TRACE)
                    )
                if upserts:
                    self._conn.executemany(
                        "INSERT OR REPLACE INTO decisions (key, stage, score, owner, team, digest, trace, data, "
                        "decided_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        upserts,
                    )
                if history:
                    self._conn.executemany(
                        "INSERT INTO decision_history (key, at, run_id, stage, score, owner, team, prev_stage, "
                        "prev_score, prev_owner, prev_team, digest, trace) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        history,
                    )
        return changed

    def _outcomes(self, keys: Iterable[str]) -> dict[str, tuple[Any, ...]]:
        """key -> the stored (stage, score, owner, team, digest, trace, data), as stored (not decoded)."""
        found: dict[str, tuple[Any, ...]] = {}
        for chunk in _batched(keys):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, stage, score, owner, team, digest, trace, data FROM decisions WHERE key IN ({marks})"
            for row in self._conn.execute(sql, chunk):
                found[row[0]] = tuple(row[1:])
        return found

    def _decisions(self, keys: Iterable[str], traces: bool = True) -> dict[str, DecisionRow]:
        found: dict[str, DecisionRow] = {}
        columns = "*" if traces else "key, digest, decided_at, stage, score, owner, team, data, run_id"
        for chunk in _batched(keys):
            marks = ",".join("?" * len(chunk))
            for r in self._select(f"SELECT {columns} FROM decisions WHERE key IN ({marks})", chunk):
                found[r["key"]] = _decision(r, traces)
        return found

    @_guarded
    def get_many(self, keys: Iterable[str], *, traces: bool = True) -> dict[str, DecisionRow]:
        """Bulk read of current decisions: key -> decision, for the keys that have one. Without ``traces``
        each trace stays unread (``trace == []``): deciding needs the outcomes, only ``explain`` the trace."""
        return self._decisions(keys, traces)

    @_guarded
    def influencers(self, keys: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """key -> the influencers its current decision names (keys with a decision only): what deciding a
        person needs of its account's decision, without reading the rest of it."""
        found: dict[str, tuple[str, ...]] = {}
        for chunk in _batched(keys):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, json_extract(data, '$.influencers') FROM decisions WHERE key IN ({marks})"
            for key, text in self._conn.execute(sql, chunk):
                found[key] = tuple(_loads(text)) if text else ()
        return found

    # Up to this many matches, due and stale keys are found through their index and sorted; beyond, the
    # decisions are walked in key order (a sort per page of a long list would make paging quadratic).
    FEW = 5000

    @_guarded
    def due_keys(
        self, at: datetime, *, kind: str | None = None, after: str = "", limit: int = 1000
    ) -> list[str]:
        """Keys whose decision says it is due again by ``at`` (``data["due_at"]``, an ISO time the cycle
        stores: an SLA deadline, an override's end, a score to decay), in key order after ``after``."""
        due = "json_extract(d.data, '$.due_at') <= ?"
        return self._keys_where(due, [_ts(at)], "decisions_by_due", kind, after, limit)

    @_guarded
    def stale_keys(
        self, digest: str, *, kind: str | None = None, after: str = "", limit: int = 1000
    ) -> list[str]:
        """Keys whose decision was made under other rules than ``digest`` (the rules in force), in key
        order after ``after``: a change of rules makes every such decision due."""
        other = "(d.digest < ? OR d.digest > ?)"
        return self._keys_where(other, [digest, digest], "decisions_by_digest", kind, after, limit)

    @_guarded
    def all_due_or_stale(self, at: datetime, digest: str, *, kind: str) -> bool:
        """Whether every key of ``kind`` has a decision due by ``at`` or made under other rules than ``digest``
        (a daily re-score, a change of rules): then every one is decided in this run anyway."""
        total = int(self._conn.execute("SELECT count(*) FROM entities WHERE kind = ?", (kind,)).fetchone()[0])
        for test, params in (
            ("json_extract(d.data, '$.due_at') <= ?", [_ts(at)]),
            ("(d.digest < ? OR d.digest > ?)", [digest, digest]),
        ):
            sql = (
                "SELECT count(*) FROM decisions d CROSS JOIN entities e ON e.key = d.key "
                f"WHERE {test} AND e.kind = ?"
            )
            if int(self._conn.execute(sql, [*params, kind]).fetchone()[0]) >= total:
                return True
        return False

    def _keys_where(
        self, test: str, params: list[Any], index: str, kind: str | None, after: str, limit: int
    ) -> list[str]:
        """Keys of decisions passing ``test`` (over ``d``), of ``kind``, in key order after ``after``. An idle
        cycle asks with nothing matching: counted from ``index`` first, that costs no walk at all."""
        sql = f"SELECT count(*) FROM (SELECT 1 FROM decisions d WHERE {test} LIMIT ?)"
        found = int(self._conn.execute(sql, [*params, self.FEW + 1]).fetchone()[0])
        if found == 0:
            return []
        # A key's kind is its prefix (``Identity.new_keys``): the kind is a range of keys, no join.
        upper: list[str] = []
        if kind is not None:
            prefix = _KEY_PREFIX[kind]
            after = max(after, prefix)
            upper = [prefix[:-1] + chr(ord(prefix[-1]) + 1)]
        # Few: from the index, sorted. Many: the decisions walked in key order (their primary key's index,
        # named so that no statistics can pick another and sort), so that paging through every key stays linear.
        index = index if found <= self.FEW else "sqlite_autoindex_decisions_1"
        sql = (
            f"SELECT d.key FROM decisions d INDEXED BY {index} "
            f"WHERE d.key > ?{' AND d.key < ?' if upper else ''} AND {test} ORDER BY d.key LIMIT ?"
        )
        rows = self._conn.execute(sql, [after, *upper, *params, limit])
        return [str(row[0]) for row in rows]

    @_guarded
    def other_digests(self, digest: str) -> list[str]:
        """The digests of the rule sets decisions were made under, other than ``digest``: one index seek
        each (a change of rules is rare; an idle cycle finds none)."""
        found: list[str] = []
        last = ""
        while True:
            row = self._conn.execute(
                "SELECT digest FROM decisions INDEXED BY decisions_by_digest WHERE digest > ? "
                "ORDER BY digest LIMIT 1",
                (last,),
            ).fetchone()
            if row is None:
                return found
            last = str(row[0])
            if last != digest:
                found.append(last)

    @_guarded
    def affected(self, digest: str, affects: Callable[[Any], bool]) -> list[str]:
        """The keys of decisions made under ``digest`` whose stored trace ``affects`` says a change of rules
        concerns, in key order."""
        keys: list[str] = []
        cursor = self._conn.execute("SELECT key, trace FROM decisions WHERE digest = ?", (digest,))
        while rows := cursor.fetchmany(2000):
            for key, stored in rows:
                try:
                    trace = _unpack_trace(stored)
                except (ValueError, zlib.error):
                    trace = []  # unreadable: tells nothing, so affected
                if affects(trace):
                    keys.append(str(key))
        keys.sort()
        return keys

    @_guarded
    def adopt(self, old: str, new: str, *, keep: Iterable[str]) -> int:
        """Decisions made under rules ``old`` that a change to rules ``new`` does not concern stand under
        ``new`` (their digest becomes it), except ``keep``: those stay due. Returns the number adopted."""
        with self.transaction():
            self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS kept_stale (key TEXT PRIMARY KEY)")
            self._conn.execute("DELETE FROM temp.kept_stale")
            self._conn.executemany(
                "INSERT OR IGNORE INTO temp.kept_stale (key) VALUES (?)", ((k,) for k in keep)
            )
            adopted = self._conn.execute(
                "UPDATE decisions SET digest = ? WHERE digest = ? AND key NOT IN (SELECT key FROM temp.kept_stale)",
                (new, old),
            ).rowcount
            self._conn.execute("DELETE FROM temp.kept_stale")
        return int(adopted)

    @_guarded
    def make_due(self, reps: Iterable[str], at: datetime) -> int:
        """Make due at ``at`` every decision ``reps`` (emails) own, are sticky owners of, or influence: what a
        change of those reps' roster facts affects. Returns the number of decisions made due."""
        wanted = sorted(set(reps))
        if not wanted:
            return 0
        when = _ts(at)
        total = 0
        with self.transaction():
            for chunk in _batched(wanted):
                marks = ",".join("?" * len(chunk))
                sql = (
                    "UPDATE decisions SET data = json_set(data, '$.due_at', ?) "
                    f"WHERE (owner IN ({marks}) "
                    f"OR key IN (SELECT key FROM assignments WHERE rep IN ({marks})) "
                    f"OR EXISTS (SELECT 1 FROM json_each(decisions.data, '$.influencers') WHERE value IN ({marks}))) "
                    "AND (json_extract(data, '$.due_at') IS NULL OR json_extract(data, '$.due_at') > ?)"
                )
                total += self._conn.execute(sql, [when, *chunk, *chunk, *chunk, when]).rowcount
        return total

    def get(self, key: str) -> DecisionRow | None:
        return self.get_many([key]).get(key)

    @_guarded
    def history(self, key: str, *, limit: int | None = None) -> list[DecisionChange]:
        """The changes of one key's decision, oldest first (the latest ``limit`` of them when given)."""
        sql = "SELECT * FROM decision_history WHERE key = ? ORDER BY seq DESC"
        params: list[Any] = [key]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = [_change(r) for r in self._select(sql, params)]
        rows.reverse()
        return rows

    @_guarded
    def set_assignments(self, rows: Iterable[AssignmentRow]) -> None:
        """Store sticky owners (replacing a key's previous one)."""
        with self.transaction():
            self._conn.executemany(
                # An unchanged assignment is not rewritten (it keeps the run that made it).
                "INSERT INTO assignments (key, rep, team, assigned_at, reason, run_id) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET rep = excluded.rep, team = excluded.team, "
                "assigned_at = excluded.assigned_at, reason = excluded.reason, run_id = excluded.run_id "
                "WHERE (rep, team, assigned_at, reason) IS NOT "
                "(excluded.rep, excluded.team, excluded.assigned_at, excluded.reason)",
                ((r.key, r.rep, r.team, _ts(r.assigned_at), r.reason, r.run_id) for r in rows),
            )

    @_guarded
    def clear_assignment(self, key: str) -> None:
        with self.transaction():
            self._conn.execute("DELETE FROM assignments WHERE key = ?", (key,))

    @_guarded
    def assignments(self, keys: Iterable[str]) -> dict[str, AssignmentRow]:
        found: dict[str, AssignmentRow] = {}
        for chunk in _batched(keys):
            marks = ",".join("?" * len(chunk))
            for r in self._select(f"SELECT * FROM assignments WHERE key IN ({marks})", chunk):
                found[r["key"]] = AssignmentRow(
                    r["key"], r["rep"], r["team"], _dt(r["assigned_at"]), r["reason"], r["run_id"]
                )
        return found

    def assignment(self, key: str) -> AssignmentRow | None:
        return self.assignments([key]).get(key)

    @_guarded
    def assignment_counts(self) -> dict[str, int]:
        """Rep -> number of keys assigned to them (for capacity rules)."""
        return {
            r["rep"]: r["n"] for r in self._select("SELECT rep, count(*) AS n FROM assignments GROUP BY rep")
        }

    @_guarded
    def assignments_since(self, since: datetime, *, limit: int = 100) -> tuple[int, list[AssignmentRow]]:
        """How many sticky owners were assigned at or after ``since``, and the latest ``limit`` of them
        (the status page's assignments of the last day)."""
        where = "FROM assignments WHERE assigned_at >= ?"
        total = self._conn.execute(f"SELECT count(*) {where}", (_ts(since),)).fetchone()[0]
        rows = self.db.query(f"SELECT * {where} ORDER BY assigned_at DESC, key LIMIT ?", [_ts(since), limit])
        return int(total), [
            AssignmentRow(r["key"], r["rep"], r["team"], _dt(r["assigned_at"]), r["reason"], r["run_id"])
            for r in rows
        ]

    @_guarded
    def owner_counts(self) -> dict[str, int]:
        """Decided owner (rep or queue) -> number of persons and accounts whose current decision names them."""
        sql = "SELECT owner, count(*) FROM decisions WHERE owner IS NOT NULL GROUP BY owner"
        return {str(owner): int(n) for owner, n in self._conn.execute(sql)}

    @_guarded
    def round_robin_state(self, pool: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT state FROM round_robin WHERE pool = ?", (pool,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    @_guarded
    def set_round_robin_state(self, pool: str, state: Mapping[str, Any]) -> None:
        with self.transaction():
            self.db.table("round_robin").upsert(
                {"pool": pool, "state": _dumps(dict(state)), "updated_at": self._now()}, pk="pool"
            )

    @_guarded
    def add_daily_count(self, rep: str, day: date, n: int = 1) -> int:
        """Count ``n`` more assignments for a rep on a (UTC) day; returns the day's new total."""
        with self.transaction():
            self._conn.execute(
                "INSERT INTO rep_daily (rep, day, count) VALUES (?, ?, ?) "
                "ON CONFLICT (rep, day) DO UPDATE SET count = count + excluded.count",
                (rep, day.isoformat(), n),
            )
            row = self._conn.execute(
                "SELECT count FROM rep_daily WHERE rep = ? AND day = ?", (rep, day.isoformat())
            ).fetchone()
        return int(row[0])

    @_guarded
    def daily_counts(self, day: date) -> dict[str, int]:
        """Rep -> assignments counted on that day."""
        sql = "SELECT rep, count FROM rep_daily WHERE day = ?"
        return {r["rep"]: r["count"] for r in self._select(sql, [day.isoformat()])}
