"""Records and watermarks: what syncd pulled from each system, its dirty flag, and how far each pull got."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.core.systems import PERSON_OBJECTS
from syncd.core.types import (
    RecordKey,
    RecordRow,
    UpsertResult,
    WatermarkRow,
)
from syncd.ledger.rows import (
    _KEY_PREFIX,
    RECORD_COLUMNS,
    _batched,
    _check_system,
    _dt,
    _dumps,
    _hash_text,
    _norm,
    _record,
    _record_at,
    _ts,
    _ts_opt,
)
from syncd.ledger.store import Store, _guarded

log = logging.getLogger(__name__)

# A new record is inserted dirty; a changed one replaces the stored values and becomes dirty again.
_UPSERT_RECORD = (
    "INSERT INTO records (system, object, id, hash, modified_at, deleted, email, domain, seen_run, "
    "seen_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (system, object, id) DO UPDATE SET "
    "hash = excluded.hash, modified_at = excluded.modified_at, deleted = excluded.deleted, "
    "email = excluded.email, domain = excluded.domain, seen_run = excluded.seen_run, "
    "seen_at = excluded.seen_at, data = excluded.data"
)
_INSERT_VERSION = (
    "INSERT INTO record_versions (system, object, id, modified_at, deleted, email, domain, hash, data, seen_at, "
    "run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _record_values(row: RecordRow, run_id: str | None, now: str) -> tuple[Any, ...]:
    """A record's ``_UPSERT_RECORD`` values (its data serialised, hashed unless the row brings its hash)."""
    _check_system(row.system)
    text = _dumps(row.data)
    return (
        row.system,
        row.object,
        row.id,
        row.hash or _hash_text(text),
        _ts_opt(row.modified_at),
        int(row.deleted),
        _norm(row.email),
        _norm(row.domain),
        run_id,
        now,
        text,
    )


def _version_values(record: tuple[Any, ...]) -> tuple[Any, ...]:
    """The ``_INSERT_VERSION`` values of a record's ``_record_values``: dated by the system's modification
    time, else when it was seen."""
    system, obj, id_, hash_, modified_at, deleted, email, domain, run_id, seen_at, text = record
    return (system, obj, id_, modified_at or seen_at, deleted, email, domain, hash_, text, seen_at, run_id)


# A record row with its dirty flag (kept in the ``dirty`` table, see schema migration 6).
_ROW = "r.*, EXISTS (SELECT 1 FROM dirty d WHERE d.system = r.system AND d.object = r.object AND d.id = r.id) AS dirty"


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One kept version of a record, with the person or account it is linked to (if any)."""

    seq: int
    key: str | None
    kind: str | None
    record: RecordRow


class Records(Store):
    """Records and watermarks: what syncd pulled from each system, its dirty flag, and how far each pull got."""

    # Up to this many dirty records, dirty_keys starts from them; above, from the keys (measured at 100k
    # records: 0.2 s for 5,000 dirty either way, and the dirty-first plan grows quadratically past that).
    DIRTY_FIRST_MAX = 5000

    @_guarded
    def upsert(self, rows: Iterable[RecordRow], *, run_id: str | None = None) -> UpsertResult:
        """Stage pulled records in bulk: new or changed ones are stored and marked dirty, the rest only seen.

        A record whose hash and deleted flag are unchanged keeps its stored data and dirty flag; only its
        ``seen_run``/``seen_at`` move. Accepts any iterable (a stream of pages) and runs in one transaction.
        """
        return self.stage(rows, run_id=run_id)[0]

    @_guarded
    def stage(
        self, rows: Iterable[RecordRow], *, run_id: str | None = None, versions: bool = False
    ) -> tuple[UpsertResult, dict[RecordKey, RecordRow]]:
        """``upsert``, also returning the stored version of each changed record that was already stored
        (what it was before this write), read in the same transaction. With ``versions``, a version of each
        changed record is kept too, as ``keep_versions`` keeps it (its data serialised once for both)."""
        now = self._now()
        inserted = updated = unchanged = 0
        changed: list[RecordKey] = []
        before: dict[RecordKey, RecordRow] = {}
        # Inside a caller's transaction, no savepoint: it would copy every index page a page of records
        # changes (in memory) for a rollback that only the whole transaction does. Alone, it is atomic.
        with self._c.transaction(savepoint=False):
            for chunk in _batched(rows, 2000):
                prepared: dict[RecordKey, tuple[Any, ...]] = {}
                for row in chunk:
                    prepared[row.ref] = _record_values(row, run_id, now)
                existing = self._stored_hashes(prepared)
                to_write: list[tuple[Any, ...]] = []
                seen_only: list[tuple[Any, ...]] = []
                replaced: list[RecordKey] = []
                for ref, values in prepared.items():
                    old = existing.get(ref)
                    if old == (values[3], values[5]):
                        unchanged += 1
                        seen_only.append((run_id, now, *ref))
                        continue
                    if old is None:
                        inserted += 1
                    else:
                        updated += 1
                        replaced.append(ref)
                    changed.append(ref)
                    to_write.append(values)
                if replaced:
                    before.update(self._rows(replaced))
                if to_write:
                    self._conn.executemany(_UPSERT_RECORD, to_write)
                    if versions:
                        self._conn.executemany(_INSERT_VERSION, [_version_values(v) for v in to_write])
                    self._conn.executemany(
                        "INSERT OR IGNORE INTO dirty (system, object, id) VALUES (?, ?, ?)",
                        [v[:3] for v in to_write],
                    )
                if seen_only:
                    self._conn.executemany(
                        "UPDATE records SET seen_run = ?, seen_at = ? WHERE system = ? AND object = ? AND id = ?",
                        seen_only,
                    )
        return UpsertResult(inserted, updated, unchanged, changed), before

    def _rows(self, refs: Iterable[RecordKey]) -> dict[RecordKey, RecordRow]:
        groups: dict[tuple[str, str], list[str]] = {}
        for system, obj, id_ in refs:
            groups.setdefault((system, obj), []).append(id_)
        found: dict[RecordKey, RecordRow] = {}
        for (system, obj), ids in groups.items():
            for id_, row in self.by_ids(system, obj, ids).items():
                found[(system, obj, id_)] = row
        return found

    def _stored_hashes(self, refs: Iterable[RecordKey]) -> dict[RecordKey, tuple[str, int]]:
        groups: dict[tuple[str, str], list[str]] = {}
        for system, obj, id_ in refs:
            groups.setdefault((system, obj), []).append(id_)
        found: dict[RecordKey, tuple[str, int]] = {}
        for (system, obj), ids in groups.items():
            for chunk in _batched(ids):
                marks = ",".join("?" * len(chunk))
                cursor = self._conn.execute(
                    f"SELECT id, hash, deleted FROM records WHERE system = ? AND object = ? AND id IN ({marks})",
                    [system, obj, *chunk],
                )
                for id_, hash_, deleted in cursor:
                    found[(system, obj, id_)] = (hash_, deleted)
        return found

    @_guarded
    def keep_versions(self, rows: Iterable[RecordRow], *, run_id: str | None = None) -> int:
        """Keep a version of each of these records (call it with the rows whose content changed): its data,
        dated by the system's modification time (else now). ``syncd backtest`` replays them."""
        now = self._now()
        values = [_version_values(_record_values(row, run_id, now)) for row in rows]
        if values:
            with self._c.transaction(savepoint=False):  # as in ``stage``
                self._conn.executemany(_INSERT_VERSION, values)
        return len(values)

    def versions(self, *, until: datetime | None = None, page: int = 5000) -> Iterator[VersionRow]:
        """Every kept record version modified up to ``until``, oldest first, with the key the record is
        linked to and that key's kind (None for records linked to no person or account, such as deals).
        Streamed a page at a time."""
        bound = _ts(until) if until is not None else None
        last = ("", 0)
        while True:
            rows = self._versions_page(last, bound, page)
            yield from rows
            if len(rows) < page:
                return
            stamp = rows[-1].record.modified_at
            assert stamp is not None
            last = (_ts(stamp), rows[-1].seq)

    @_guarded
    def prune_versions(self, before: datetime) -> int:
        """Forget the record versions older than ``before`` except each record's latest one before it (the
        record as it stood then, where a replay from ``before`` starts); returns how many went."""
        sql = (
            "DELETE FROM record_versions WHERE seq IN (SELECT seq FROM (SELECT seq, row_number() OVER "
            "(PARTITION BY system, object, id ORDER BY modified_at DESC, seq DESC) AS n FROM record_versions "
            "WHERE modified_at < ?) WHERE n > 1)"
        )
        with self.transaction():
            return int(self._conn.execute(sql, (_ts(before),)).rowcount)

    @_guarded
    def count_versions(self, *, until: datetime | None = None) -> int:
        """How many record versions are kept (modified up to ``until``)."""
        if until is None:
            return int(self._conn.execute("SELECT count(*) FROM record_versions").fetchone()[0])
        sql = "SELECT count(*) FROM record_versions WHERE modified_at <= ?"
        return int(self._conn.execute(sql, (_ts(until),)).fetchone()[0])

    @_guarded
    def _versions_page(self, last: tuple[str, int], until: str | None, page: int) -> list[VersionRow]:
        bound = " AND v.modified_at <= ?" if until is not None else ""
        sql = (
            "SELECT v.*, l.key AS link_key, e.kind AS kind FROM record_versions v "
            "LEFT JOIN links l ON l.system = v.system AND l.object = v.object AND l.id = v.id "
            "LEFT JOIN entities e ON e.key = l.key "
            f"WHERE (v.modified_at, v.seq) > (?, ?){bound} ORDER BY v.modified_at, v.seq LIMIT ?"
        )
        params: list[Any] = [*last, *([until] if until is not None else []), page]
        return [
            VersionRow(
                seq=r["seq"],
                key=r["link_key"],
                kind=r["kind"],
                record=RecordRow(
                    system=r["system"],
                    object=r["object"],
                    id=r["id"],
                    data=json.loads(r["data"]),
                    modified_at=_dt(r["modified_at"]),
                    deleted=bool(r["deleted"]),
                    email=r["email"],
                    domain=r["domain"],
                    hash=r["hash"],
                ),
            )
            for r in self.db.query(sql, params)
        ]

    @_guarded
    def get(self, system: str, object: str, id: str) -> RecordRow | None:
        rows = list(
            self._select(
                f"SELECT {_ROW} FROM records r WHERE system = ? AND object = ? AND id = ?",
                [system, object, id],
            )
        )
        return _record(rows[0]) if rows else None

    @_guarded
    def by_email(self, email: str) -> list[RecordRow]:
        sql = f"SELECT {_ROW} FROM records r WHERE email = ? ORDER BY system, object, id"
        return [_record(r) for r in self._select(sql, [_norm(email)])]

    @_guarded
    def of_key(self, key: str) -> list[RecordRow]:
        """The records linked to a person or account."""
        sql = (
            f"SELECT {_ROW} FROM links l JOIN records r USING (system, object, id) WHERE l.key = ? "
            "ORDER BY r.system, r.object, r.id"
        )
        return [_record(r) for r in self._select(sql, [key])]

    @_guarded
    def by_ids(self, system: str, object: str, ids: Iterable[str]) -> dict[str, RecordRow]:
        """Bulk ``record`` for one object: id -> stored record, for the ids the ledger holds."""
        found: dict[str, RecordRow] = {}
        for chunk in _batched(ids):
            marks = ",".join("?" * len(chunk))
            sql = (
                f"SELECT {RECORD_COLUMNS} FROM records r WHERE system = ? AND object = ? AND id IN ({marks})"
            )
            for r in self._conn.execute(sql, [system, object, *chunk]):
                found[r[2]] = _record_at(r)
        return found

    @_guarded
    def of_keys(self, keys: Iterable[str]) -> dict[str, list[RecordRow]]:
        """Bulk ``records_of``: key -> its linked records (keys without records are absent)."""
        found: dict[str, list[RecordRow]] = {}
        for chunk in _batched(keys):
            marks = ",".join("?" * len(chunk))
            sql = (
                f"SELECT l.key, {RECORD_COLUMNS} FROM links l JOIN records r USING (system, object, id) "
                f"WHERE l.key IN ({marks}) ORDER BY l.key, r.system, r.object, r.id"
            )
            for r in self._conn.execute(sql, chunk):
                found.setdefault(r[0], []).append(_record_at(r, 1))
        return found

    @_guarded
    def every_key_dirty(self, kind: str) -> bool:
        """Whether every key of ``kind`` has a dirty record (a first cycle): all of them are decided anyway.
        Stops at the first clean key, so an incremental cycle answers at once."""
        prefix = _KEY_PREFIX[kind]
        clean = self._conn.execute(
            "SELECT 1 FROM entities e WHERE e.key > ? AND e.key < ? AND NOT EXISTS ("
            "SELECT 1 FROM links l INDEXED BY links_by_key JOIN dirty d "
            "ON d.system = l.system AND d.object = l.object AND d.id = l.id WHERE l.key = e.key) LIMIT 1",
            (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)),
        ).fetchone()
        return clean is None

    @_guarded
    def domains_of_keys(self, keys: Iterable[str]) -> set[str]:
        """The domains of the records linked to these keys (read without the records themselves)."""
        found: set[str] = set()
        for chunk in _batched(keys):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT DISTINCT r.domain FROM links l JOIN records r USING (system, object, id) "
                f"WHERE l.key IN ({marks}) AND r.domain IS NOT NULL"
            )
            found.update(row[0] for row in self._conn.execute(sql, chunk))
        return found

    @_guarded
    def live_contacts_by_domain(
        self, domains: Iterable[str], *, fields: Sequence[str] | None = None
    ) -> dict[str, list[tuple[str, RecordRow]]]:
        """Domain -> (person key, HubSpot contact) for the live HubSpot contacts of every person with a
        record of that domain, by person key then contact id: the people of a company, read in one query
        per person object instead of every record of every such person. With ``fields`` each contact's
        ``data`` holds those fields only (read from the stored record without decoding the rest of it)."""
        wanted = sorted({d for d in domains if d})
        people: dict[str, set[tuple[str, str]]] = {}
        for chunk in _batched(wanted):
            marks = ",".join("?" * len(chunk))
            for system, objects in PERSON_OBJECTS.items():
                for obj in objects:
                    # A key's kind is its prefix (``Identity.new_keys``): no join with the entities.
                    sql = (
                        "SELECT p.domain, l.key, l.id FROM records p JOIN links lp USING (system, object, id) "
                        # By key: a ledger without statistics yet (its first cycle) would otherwise walk
                        # every HubSpot contact's link for each person record.
                        "JOIN links l INDEXED BY links_by_key "
                        "ON l.key = lp.key AND l.system = 'hubspot' AND l.object = 'contacts' "
                        f"WHERE p.system = ? AND p.object = ? AND p.domain IN ({marks}) "
                        "AND substr(lp.key, 1, 2) = ?"
                    )
                    for domain, person, rid in self._conn.execute(
                        sql, [system, obj, *chunk, _KEY_PREFIX["person"]]
                    ):
                        people.setdefault(domain, set()).add((person, rid))
        ids = sorted({rid for pairs in people.values() for _, rid in pairs})
        found = self.by_ids("hubspot", "contacts", ids) if fields is None else self._some_fields(ids, fields)
        contacts = {rid: row for rid, row in found.items() if not row.deleted}
        return {
            domain: [(person, contacts[rid]) for person, rid in sorted(pairs) if rid in contacts]
            for domain, pairs in sorted(people.items())
        }

    def _some_fields(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, RecordRow]:
        """HubSpot contacts by id, each with only ``fields`` in its data (and its id, deletion and when it
        was pulled)."""
        names = list(dict.fromkeys(fields))
        extract = "".join(", json_extract(data, ?)" for _ in names)
        paths = ['$."' + name.replace('"', '""') + '"' for name in names]
        out: dict[str, RecordRow] = {}
        for chunk in _batched(ids):
            marks = ",".join("?" * len(chunk))
            sql = (
                f"SELECT id, deleted, seen_run, seen_at{extract} FROM records "
                f"WHERE system = 'hubspot' AND object = 'contacts' AND id IN ({marks})"
            )
            for rid, deleted, seen_run, seen_at, *values in self._conn.execute(sql, [*paths, *chunk]):
                out[rid] = RecordRow(
                    "hubspot",
                    "contacts",
                    rid,
                    dict(zip(names, values, strict=True)),
                    deleted=bool(deleted),
                    seen_run=seen_run,
                    seen_at=_dt(seen_at),
                )
        return out

    def iterate(
        self, system: str, object: str, *, dirty_only: bool = False, page: int = 1000
    ) -> Iterator[RecordRow]:
        """Stream one object's stored records in id order, a page at a time (never all in memory)."""
        after = ""
        while True:
            rows = self._records_page(system, object, after, dirty_only, page)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1].id

    @_guarded
    def _records_page(
        self, system: str, object: str, after: str, dirty_only: bool, page: int
    ) -> list[RecordRow]:
        if dirty_only:
            sql = (
                "SELECT r.*, 1 AS dirty FROM dirty d JOIN records r USING (system, object, id) "
                "WHERE d.system = ? AND d.object = ? AND d.id > ? ORDER BY d.id LIMIT ?"
            )
        else:
            sql = (
                f"SELECT {_ROW} FROM records r WHERE system = ? AND object = ? AND id > ? ORDER BY id LIMIT ?"
            )
        return [_record(r) for r in self._select(sql, [system, object, after, page])]

    @_guarded
    def unlinked(self, system: str, object: str, *, after: str = "", limit: int = 1000) -> list[RecordRow]:
        """Stored records of one object that belong to no person or account yet (linking's to-do list), in id
        order after ``after``: a caller paging through them passes the last id of its previous page, so no
        page walks again over the records the pages before it linked."""
        # Looked for among the dirty records only: a record is staged dirty and made clean only through the key
        # it is linked to (``mark_clean``), so an unlinked record is always dirty. An idle cycle, nothing dirty,
        # reads nothing (walking every record for its link took 0.2 s per idle cycle at 100,000 persons).
        sql = (
            f"SELECT {_ROW} FROM dirty q CROSS JOIN records r ON r.system = q.system AND r.object = q.object "
            "AND r.id = q.id LEFT JOIN links l ON l.system = q.system AND l.object = q.object AND l.id = q.id "
            "WHERE q.system = ? AND q.object = ? AND q.id > ? AND l.key IS NULL ORDER BY q.id LIMIT ?"
        )
        return [_record(r) for r in self._select(sql, [system, object, after, limit])]

    @_guarded
    def dirty_keys(self, *, kind: str | None = None, after: str = "", limit: int = 1000) -> list[str]:
        """Keys with at least one record changed since last marked clean, in key order after ``after``."""
        # Counted only up to the threshold: the plan depends on which side of it the count falls.
        dirty = int(
            self._conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM dirty LIMIT ?)",
                (self.DIRTY_FIRST_MAX + 1,),
            ).fetchone()[0]
        )
        if dirty == 0:
            return []
        kind_filter = "" if kind is None else " AND e.kind = ?"
        params: list[Any] = [after, *([] if kind is None else [kind]), limit]
        if dirty <= self.DIRTY_FIRST_MAX:
            # Few changes (the usual incremental cycle): start from the dirty records' partial index.
            sql = (
                "SELECT DISTINCT l.key FROM dirty r CROSS JOIN links l "
                "ON l.system = r.system AND l.object = r.object AND l.id = r.id "
                f"CROSS JOIN entities e ON e.key = l.key WHERE l.key > ?{kind_filter} "
                "ORDER BY l.key LIMIT ?"
            )
        else:
            # Many changes (a first cycle): walk the keys in order, so paging through all of them stays linear.
            sql = (
                "SELECT DISTINCT l.key FROM links l INDEXED BY links_by_key CROSS JOIN dirty r "
                "ON r.system = l.system AND r.object = l.object AND r.id = l.id "
                f"CROSS JOIN entities e ON e.key = l.key WHERE l.key > ?{kind_filter} "
                "ORDER BY l.key LIMIT ?"
            )
        return [str(row[0]) for row in self._conn.execute(sql, params)]

    @_guarded
    def mark_clean(self, keys: Iterable[str]) -> int:
        """Clear the dirty flag of every record linked to these keys: their changes are fully processed."""
        count = 0
        if self._conn.execute("SELECT 1 FROM dirty LIMIT 1").fetchone() is None:
            return 0  # nothing is dirty (a re-decision): no walk through the keys' links
        with self.transaction():
            for chunk in _batched(keys):
                marks = ",".join("?" * len(chunk))
                cursor = self._conn.execute(
                    "DELETE FROM dirty WHERE (system, object, id) IN "
                    f"(SELECT system, object, id FROM links WHERE key IN ({marks}))",
                    chunk,
                )
                count += cursor.rowcount
        return count

    @_guarded
    def mark_records_clean(self, refs: Iterable[RecordKey]) -> int:
        """Clear the dirty flag of these records (for records that belong to no key, such as users)."""
        count = 0
        with self.transaction():
            for chunk in _batched(refs):
                cursor = self._conn.executemany(
                    "DELETE FROM dirty WHERE system = ? AND object = ? AND id = ?",
                    chunk,
                )
                count += cursor.rowcount
        return count

    @_guarded
    def watermark(self, system: str, object: str) -> str | None:
        row = self._conn.execute(
            "SELECT value FROM watermarks WHERE system = ? AND object = ?", (system, object)
        ).fetchone()
        return None if row is None else str(row[0])

    @_guarded
    def set_watermark(self, system: str, object: str, value: str, *, run_id: str | None = None) -> None:
        """Advance a watermark; call it only once everything up to ``value`` is fully processed."""
        _check_system(system)
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO watermarks (system, object, value, updated_at, run_id) "
                "VALUES (?, ?, ?, ?, ?)",
                (system, object, value, self._now(), run_id),
            )

    @_guarded
    def clear_watermark(self, system: str, object: str) -> None:
        """Forget a watermark, so the next pull of that object starts from the beginning."""
        with self.transaction():
            self._conn.execute("DELETE FROM watermarks WHERE system = ? AND object = ?", (system, object))

    @_guarded
    def watermarks(self) -> list[WatermarkRow]:
        return [
            WatermarkRow(r["system"], r["object"], r["value"], _dt(r["updated_at"]), r["run_id"])
            for r in self._select("SELECT * FROM watermarks ORDER BY system, object")
        ]

    @_guarded
    def counts(self) -> dict[tuple[str, str], int]:
        sql = "SELECT system, object, count(*) AS n FROM records GROUP BY system, object ORDER BY system, object"
        return {(r["system"], r["object"]): r["n"] for r in self._select(sql)}
