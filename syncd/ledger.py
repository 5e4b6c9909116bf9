"""The local SQLite ledger: what syncd saw, linked, decided, intended and wrote, per portal/org pair.

One ``Ledger(path)`` per process that writes: it takes ``syncd.lock.LedgerLock`` (unless this process, the
daemon, already holds it), so a second writer gets ``LockedError``; readers such as ``syncd status`` open it
with ``readonly=True`` at any time. The file is created with mode 0600 and tightened to 0600 when found
looser, runs in WAL mode with ``synchronous=FULL`` and foreign keys on, and is upgraded in place by the
forward migrations of ``syncd.ledger_schema`` (a file newer than this code is refused).

Every multi-row change runs in one transaction; callers group several changes with ``ledger.transaction()``
(nested blocks become savepoints). Crash safety rests on three habits the cycle follows:

- records are staged with a *dirty* flag that stays set until the cycle calls ``mark_clean`` for the keys it
  fully processed, so a crash between staging and deciding loses nothing;
- every push is written to the *outbox* as an intent before it is sent, and confirmed after; at start
  ``unfinished_intents()`` lists what a killed run may or may not have sent, to be replayed (creates carry
  an idempotency key used as the Salesforce external id, so a replay is an upsert);
- *watermarks* move only when the cycle says so, after everything below them was processed.

Datetimes at this API are timezone-aware UTC (naive ones are refused); they are stored as ISO-8601 text with
``+00:00``. Ids and keys are strings. JSON values are stored as canonical JSON text.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlite_utils import Database

from syncd.core.types import (
    AssignmentRow,
    Backoff,
    DecisionChange,
    DecisionRow,
    Intent,
    KeyHistory,
    LinkRow,
    OverrideRow,
    QuarantineRow,
    QuarantineSummary,
    RecordKey,
    RecordRow,
    RunRow,
    StatusView,
    UpsertResult,
    WatermarkRow,
    WriteRow,
    content_hash,
)
from syncd.errors import LedgerError, LockedError
from syncd.ledger_schema import (
    APPLICATION_ID,
    INTENT_STATES,
    KEY_KINDS,
    LINK_METHODS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SYSTEMS,
)
from syncd.lock import LedgerLock, holder_pid, lock_path_for

__all__ = [
    "INTENT_STATES",
    "KEY_KINDS",
    "LINK_METHODS",
    "SCHEMA_VERSION",
    "SYSTEMS",
    "AssignmentRow",
    "Backoff",
    "DecisionChange",
    "DecisionRow",
    "Intent",
    "KeyHistory",
    "Ledger",
    "LinkRow",
    "OverrideRow",
    "QuarantineRow",
    "QuarantineSummary",
    "RecordKey",
    "RecordRow",
    "RunRow",
    "StatusView",
    "UpsertResult",
    "WatermarkRow",
    "WriteRow",
    "content_hash",
    "utc_now",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_RECORD_PK = ("system", "object", "id")
# Rows per statement batch: well under SQLite's 32,766 bound variables for the widest table.
_BATCH = 500
_KEY_PREFIX = {"person": "p:", "account": "a:"}
# Ledgers open for writing in this process: the file lock cannot tell two of them apart.
_WRITERS: set[Path] = set()
_WRITERS_LOCK = threading.Lock()


# -- values -----------------------------------------------------------------------------------------------


def utc_now() -> datetime:
    """The current time, aware UTC: the ledger's default clock."""
    return datetime.now(UTC)


def _ts(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} given to the ledger; use an aware UTC datetime")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _ts_opt(value: datetime | None) -> str | None:
    return None if value is None else _ts(value)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _dt_opt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _hash_text(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _norm(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    return value or None


def _batched(items: Iterable[T], size: int = _BATCH) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _check_system(system: str) -> None:
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; expected one of {', '.join(SYSTEMS)}")


# -- the ledger -------------------------------------------------------------------------------------------


def _guarded(method: Callable[Concatenate[Ledger, P], R]) -> Callable[Concatenate[Ledger, P], R]:
    """Serialise access to the connection and translate SQLite errors into ``LedgerError``."""

    @functools.wraps(method)
    def wrapper(self: Ledger, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    return wrapper


class Ledger:
    """The SQLite ledger of one HubSpot portal / Salesforce org pair.

    ``Ledger(path)`` opens (creating it if needed) and upgrades the file, takes the writer's lock and marks
    runs left ``running`` by a killed process as ``interrupted`` (their ids in ``interrupted_runs``).
    ``Ledger(path, readonly=True)`` only reads, takes no lock and refuses a file that needs an upgrade.
    ``clock`` gives the time stamped on rows; tests inject a fixed one.
    """

    # Up to this many dirty records, dirty_keys starts from them; above, from the keys (measured at 100k
    # records: 0.2 s for 5,000 dirty either way, and the dirty-first plan grows quadratically past that).
    DIRTY_FIRST_MAX = 5000

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        clock: Callable[[], datetime] = utc_now,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = Path(path).expanduser()
        self.readonly = readonly
        self.interrupted_runs: list[str] = []
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._file_lock: LedgerLock | None = None
        self._writer_path: Path | None = None
        try:
            conn = self._connect_readonly() if readonly else self._connect_writable()
        except sqlite3.Error as exc:
            self._release_file_lock()
            raise self._error(exc) from exc
        except BaseException:
            self._release_file_lock()
            raise
        self._conn = conn
        self.db = Database(conn, execute_plugins=False)
        try:
            self._configure()
            self._migrate()
            if not readonly:
                self.interrupted_runs = self._mark_interrupted_runs()
        except sqlite3.Error as exc:
            self.close()
            raise self._error(exc) from exc
        except BaseException:
            self.close()
            raise

    # -- opening

    @property
    def lock_path(self) -> Path:
        return lock_path_for(self.path)

    def _connect_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise LedgerError(f"no ledger at {self.path}: run `syncd once` to create it, or fix ledger.path")
        uri = "file:" + str(self.path.resolve()).replace("?", "%3F").replace("#", "%23") + "?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=self._busy_timeout, check_same_thread=False)

    def _connect_writable(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise LedgerError(
                f"cannot create the ledger's folder {self.path.parent}: {exc.strerror}"
            ) from exc
        self._acquire_file_lock()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise LedgerError(f"cannot create the ledger {self.path}: {exc.strerror}") from exc
        else:
            os.close(fd)
        self._tighten_modes()
        return sqlite3.connect(self.path, timeout=self._busy_timeout, check_same_thread=False)

    def _tighten_modes(self) -> None:
        # SQLite gives the -wal and -shm files the database file's mode, so all three must be private: they
        # hold customer names and emails.
        for candidate in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:
                mode = candidate.stat().st_mode & 0o777
            except FileNotFoundError:
                continue
            if mode & 0o077:
                try:
                    os.chmod(candidate, 0o600)
                except OSError as exc:
                    raise LedgerError(
                        f"ledger file {candidate} is readable by others (mode {mode:o}) and cannot be "
                        f"made private: {exc.strerror}"
                    ) from exc
                log.warning("ledger file %s had mode %o; tightened to 600", candidate, mode)

    def _acquire_file_lock(self) -> None:
        resolved = self.path.resolve()
        with _WRITERS_LOCK:
            if resolved in _WRITERS:
                raise LockedError(f"ledger {self.path} is already open for writing in this process")
            _WRITERS.add(resolved)
        self._writer_path = resolved
        # The daemon takes the same lock before it opens the ledger; a second flock from this process would
        # refuse it, and it is already the one writer.
        if holder_pid(self.path) != os.getpid():
            self._file_lock = LedgerLock(self.path).acquire()

    def _release_file_lock(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
        if self._writer_path is not None:
            with _WRITERS_LOCK:
                _WRITERS.discard(self._writer_path)
            self._writer_path = None

    def _configure(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        if self.readonly:
            conn.execute("PRAGMA query_only = ON")
            return
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"ledger {self.path}: cannot switch to WAL mode (got {mode})")
        # FULL rather than NORMAL: an intent must be on disk before the push it announces, even across a
        # power cut, not only across a killed process.
        conn.execute("PRAGMA synchronous = FULL")

    def _migrate(self) -> None:
        conn = self._conn
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            tables = int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path} is not a syncd ledger ({exc})") from exc
        if (version or tables) and app_id != APPLICATION_ID:
            raise LedgerError(f"{self.path} is an SQLite file but not a syncd ledger; fix ledger.path")
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {self.path} has schema version {version}, newer than this syncd understands "
                f"({SCHEMA_VERSION}); upgrade syncd, or point ledger.path at another file"
            )
        if version < SCHEMA_VERSION and self.readonly:
            raise LedgerError(
                f"ledger {self.path} has schema version {version} and needs an upgrade to {SCHEMA_VERSION}; "
                "run a command that writes to it (`syncd once`) first"
            )
        for step in range(version, SCHEMA_VERSION):
            with self.transaction():
                MIGRATIONS[step](self.db)
                conn.execute(f"PRAGMA user_version = {step + 1}")
            log.info("ledger %s upgraded to schema version %d", self.path, step + 1)

    def _mark_interrupted_runs(self) -> list[str]:
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

    def _error(self, exc: sqlite3.Error) -> LedgerError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return LedgerError(
                f"ledger {self.path} is busy: another process kept it locked for more than "
                f"{self._busy_timeout:g} s"
            )
        if "not a database" in text:
            return LedgerError(f"{self.path} is not a syncd ledger (not an SQLite database); fix ledger.path")
        if "readonly" in text or "read-only" in text:
            return LedgerError(f"ledger {self.path} cannot be written: {text}")
        return LedgerError(f"ledger {self.path}: {text}")

    def _now(self) -> str:
        return _ts(self._clock())

    # -- lifecycle

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Close the database and release the writer's lock; the ledger cannot be used afterwards."""
        with self._lock:
            conn = getattr(self, "_conn", None)
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    if not self.readonly:
                        conn.execute("PRAGMA optimize")
                conn.close()
            self._release_file_lock()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Ledger]:
        """Group changes into one transaction: all of them are stored, or none (nested blocks: savepoints)."""
        if self.readonly:
            raise LedgerError(f"ledger {self.path} is open read-only")
        with self._lock:
            if self._conn.in_transaction:
                with self.db.atomic():
                    yield self
                return
            try:
                # IMMEDIATE takes the write lock up front, so a reader-turned-writer never fails half-way.
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            try:
                yield self
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise self._error(exc) from exc

    @_guarded
    def integrity_check(self) -> str:
        """SQLite's own verdict on the file: ``"ok"`` or the first problems found."""
        rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)

    # -- runs

    @_guarded
    def start_run(self, kind: str = "cycle") -> str:
        """Record the start of a run and return its id (sortable by start time)."""
        now = self._clock()
        run_id = f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        with self.transaction():
            self.db.table("runs").insert(
                {"id": run_id, "kind": kind, "started_at": _ts(now), "status": "running", "pid": os.getpid()}
            )
        return run_id

    @_guarded
    def update_run(self, run_id: str, counters: Mapping[str, Any]) -> None:
        """Store a running run's counters so far (shown by ``status`` while it runs)."""
        with self.transaction():
            cursor = self._conn.execute(
                "UPDATE runs SET counters = ? WHERE id = ? AND status = 'running'", (_dumps(counters), run_id)
            )
            if cursor.rowcount != 1:
                raise LedgerError(f"run {run_id} is not running")

    @_guarded
    def finish_run(
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
    def run(self, run_id: str) -> RunRow | None:
        rows = list(self.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
        return _run(rows[0]) if rows else None

    @_guarded
    def recent_runs(self, limit: int = 10) -> list[RunRow]:
        """The latest runs, newest first."""
        sql = "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?"
        return [_run(r) for r in self.db.query(sql, [limit])]

    # -- records

    @_guarded
    def upsert_records(self, rows: Iterable[RecordRow], *, run_id: str | None = None) -> UpsertResult:
        """Stage pulled records in bulk: new or changed ones are stored and marked dirty, the rest only seen.

        A record whose hash and deleted flag are unchanged keeps its stored data and dirty flag; only its
        ``seen_run``/``seen_at`` move. Accepts any iterable (a stream of pages) and runs in one transaction.
        """
        now = self._now()
        inserted = updated = unchanged = 0
        changed: list[RecordKey] = []
        table = self.db.table("records")
        with self.transaction():
            for chunk in _batched(rows, 2000):
                prepared: dict[RecordKey, dict[str, Any]] = {}
                for row in chunk:
                    _check_system(row.system)
                    text = _dumps(row.data)
                    prepared[row.ref] = {
                        "system": row.system,
                        "object": row.object,
                        "id": row.id,
                        "hash": row.hash or _hash_text(text),
                        "modified_at": _ts_opt(row.modified_at),
                        "deleted": int(row.deleted),
                        "dirty": 1,
                        "email": _norm(row.email),
                        "domain": _norm(row.domain),
                        "seen_run": run_id,
                        "seen_at": now,
                        "data": text,
                    }
                existing = self._stored_hashes(prepared)
                to_write: list[dict[str, Any]] = []
                seen_only: list[tuple[Any, ...]] = []
                for ref, values in prepared.items():
                    old = existing.get(ref)
                    if old == (values["hash"], values["deleted"]):
                        unchanged += 1
                        seen_only.append((run_id, now, *ref))
                        continue
                    if old is None:
                        inserted += 1
                    else:
                        updated += 1
                    changed.append(ref)
                    to_write.append(values)
                if to_write:
                    table.upsert_all(to_write, pk=_RECORD_PK, batch_size=_BATCH)
                if seen_only:
                    self._conn.executemany(
                        "UPDATE records SET seen_run = ?, seen_at = ? WHERE system = ? AND object = ? AND id = ?",
                        seen_only,
                    )
        return UpsertResult(inserted, updated, unchanged, changed)

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
    def record(self, system: str, object: str, id: str) -> RecordRow | None:
        rows = list(
            self.db.query(
                "SELECT * FROM records WHERE system = ? AND object = ? AND id = ?", [system, object, id]
            )
        )
        return _record(rows[0]) if rows else None

    @_guarded
    def records_by_email(self, email: str) -> list[RecordRow]:
        sql = "SELECT * FROM records WHERE email = ? ORDER BY system, object, id"
        return [_record(r) for r in self.db.query(sql, [_norm(email)])]

    @_guarded
    def records_of(self, key: str) -> list[RecordRow]:
        """The records linked to a person or account."""
        sql = (
            "SELECT r.* FROM links l JOIN records r USING (system, object, id) WHERE l.key = ? "
            "ORDER BY r.system, r.object, r.id"
        )
        return [_record(r) for r in self.db.query(sql, [key])]

    @_guarded
    def records_by_ids(self, system: str, object: str, ids: Iterable[str]) -> dict[str, RecordRow]:
        """Bulk ``record`` for one object: id -> stored record, for the ids the ledger holds."""
        found: dict[str, RecordRow] = {}
        for chunk in _batched(ids):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT * FROM records WHERE system = ? AND object = ? AND id IN ({marks})"
            for r in self.db.query(sql, [system, object, *chunk]):
                found[r["id"]] = _record(r)
        return found

    @_guarded
    def records_of_keys(self, keys: Iterable[str]) -> dict[str, list[RecordRow]]:
        """Bulk ``records_of``: key -> its linked records (keys without records are absent)."""
        found: dict[str, list[RecordRow]] = {}
        for chunk in _batched(keys):
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT l.key AS link_key, r.* FROM links l JOIN records r USING (system, object, id) "
                f"WHERE l.key IN ({marks}) ORDER BY l.key, r.system, r.object, r.id"
            )
            for r in self.db.query(sql, chunk):
                found.setdefault(r["link_key"], []).append(_record(r))
        return found

    def iter_records(
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
        dirty = " AND dirty = 1" if dirty_only else ""
        sql = f"SELECT * FROM records WHERE system = ? AND object = ? AND id > ?{dirty} ORDER BY id LIMIT ?"
        return [_record(r) for r in self.db.query(sql, [system, object, after, page])]

    @_guarded
    def unlinked_records(self, system: str, object: str, *, limit: int = 1000) -> list[RecordRow]:
        """Stored records of one object that belong to no person or account yet (linking's to-do list)."""
        sql = (
            "SELECT r.* FROM records r LEFT JOIN links l USING (system, object, id) "
            "WHERE r.system = ? AND r.object = ? AND l.key IS NULL ORDER BY r.id LIMIT ?"
        )
        return [_record(r) for r in self.db.query(sql, [system, object, limit])]

    @_guarded
    def dirty_keys(self, *, kind: str | None = None, after: str = "", limit: int = 1000) -> list[str]:
        """Keys with at least one record changed since last marked clean, in key order after ``after``."""
        dirty = int(self._conn.execute("SELECT count(*) FROM records WHERE dirty = 1").fetchone()[0])
        if dirty == 0:
            return []
        kind_filter = "" if kind is None else " AND e.kind = ?"
        params: list[Any] = [after, *([] if kind is None else [kind]), limit]
        if dirty <= self.DIRTY_FIRST_MAX:
            # Few changes (the usual incremental cycle): start from the dirty records' partial index.
            sql = (
                "SELECT DISTINCT l.key FROM records r INDEXED BY records_dirty CROSS JOIN links l "
                "ON l.system = r.system AND l.object = r.object AND l.id = r.id "
                f"CROSS JOIN entities e ON e.key = l.key WHERE r.dirty = 1 AND l.key > ?{kind_filter} "
                "ORDER BY l.key LIMIT ?"
            )
        else:
            # Many changes (a first cycle): walk the keys in order, so paging through all of them stays linear.
            sql = (
                "SELECT DISTINCT l.key FROM links l INDEXED BY links_by_key CROSS JOIN records r "
                "ON r.system = l.system AND r.object = l.object AND r.id = l.id "
                f"CROSS JOIN entities e ON e.key = l.key WHERE r.dirty = 1 AND l.key > ?{kind_filter} "
                "ORDER BY l.key LIMIT ?"
            )
        return [str(row[0]) for row in self._conn.execute(sql, params)]

    @_guarded
    def mark_clean(self, keys: Iterable[str]) -> int:
        """Clear the dirty flag of every record linked to these keys: their changes are fully processed."""
        count = 0
        with self.transaction():
            for chunk in _batched(keys):
                marks = ",".join("?" * len(chunk))
                cursor = self._conn.execute(
                    "UPDATE records SET dirty = 0 WHERE dirty = 1 AND (system, object, id) IN "
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
                    "UPDATE records SET dirty = 0 WHERE system = ? AND object = ? AND id = ? AND dirty = 1",
                    chunk,
                )
                count += cursor.rowcount
        return count

    # -- keys and links

    @_guarded
    def new_keys(self, kind: str, count: int = 1, *, seeds: Sequence[str] | None = None) -> list[str]:
        """Mint stable keys for new persons (``p:…``) or accounts (``a:…``).

        With ``seeds`` (one per key, e.g. the id of the record a key is minted for) the keys are derived
        from them, so the same records always get the same keys, and work done in key order (round robin)
        comes out the same in a dry run and in the real run that follows it.
        """
        if kind not in KEY_KINDS:
            raise ValueError(f"unknown key kind {kind!r}; expected one of {', '.join(KEY_KINDS)}")
        now = self._now()
        if seeds is not None:
            keys = [_KEY_PREFIX[kind] + _hash_text(f"{kind}\0{seed}") for seed in seeds]
        else:
            keys = [_KEY_PREFIX[kind] + uuid.uuid4().hex for _ in range(count)]
        with self.transaction():
            self.db.table("entities").insert_all(
                ({"key": k, "kind": kind, "created_at": now} for k in keys), batch_size=_BATCH
            )
        return keys

    def new_key(self, kind: str) -> str:
        return self.new_keys(kind, 1)[0]

    @_guarded
    def key_kind(self, key: str) -> str | None:
        row = self._conn.execute("SELECT kind FROM entities WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @_guarded
    def add_links(self, links: Iterable[LinkRow]) -> dict[RecordKey, str]:
        """Link records to keys in bulk. A record keeps its first key: for each record already linked to a
        different key, nothing changes and the returned dict maps it to that key (use ``merge_keys`` to join
        the two); an empty dict means every link is in place."""
        now = self._now()
        conflicts: dict[RecordKey, str] = {}
        with self.transaction():
            for chunk in _batched(links):
                wanted = {link.ref: link for link in chunk}
                existing = self._keys_of_refs(wanted)
                rows = []
                for ref, link in wanted.items():
                    _check_system(link.system)
                    if link.how not in LINK_METHODS:
                        raise ValueError(f"unknown link method {link.how!r}")
                    current = existing.get(ref)
                    if current is None:
                        rows.append(
                            {
                                "system": link.system,
                                "object": link.object,
                                "id": link.id,
                                "key": link.key,
                                "how": link.how,
                                "linked_at": _ts(link.linked_at) if link.linked_at else now,
                                "run_id": link.run_id,
                            }
                        )
                    elif current != link.key:
                        conflicts[ref] = current
                if rows:
                    self.db.table("links").insert_all(rows, batch_size=_BATCH)
        return conflicts

    def link(
        self, key: str, system: str, object: str, id: str, how: str, *, run_id: str | None = None
    ) -> str:
        """Link one record to a key; returns the key the record belongs to (its earlier key, if any)."""
        conflicts = self.add_links([LinkRow(key, system, object, id, how, run_id=run_id)])
        return conflicts.get((system, object, id), key)

    def _keys_of_refs(self, refs: Iterable[RecordKey]) -> dict[RecordKey, str]:
        groups: dict[tuple[str, str], list[str]] = {}
        for system, obj, id_ in refs:
            groups.setdefault((system, obj), []).append(id_)
        found: dict[RecordKey, str] = {}
        for (system, obj), ids in groups.items():
            for chunk in _batched(ids):
                marks = ",".join("?" * len(chunk))
                cursor = self._conn.execute(
                    f"SELECT id, key FROM links WHERE system = ? AND object = ? AND id IN ({marks})",
                    [system, obj, *chunk],
                )
                for id_, key in cursor:
                    found[(system, obj, id_)] = key
        return found

    @_guarded
    def key_of(self, system: str, object: str, id: str) -> str | None:
        row = self._conn.execute(
            "SELECT key FROM links WHERE system = ? AND object = ? AND id = ?", (system, object, id)
        ).fetchone()
        return None if row is None else str(row[0])

    @_guarded
    def keys_of(self, system: str, object: str, ids: Iterable[str]) -> dict[str, str]:
        """Bulk ``key_of`` for one object: id -> key, for the ids that are linked."""
        found = self._keys_of_refs((system, object, i) for i in ids)
        return {id_: key for (_, _, id_), key in found.items()}

    @_guarded
    def links_by_id(self, system: str, id: str) -> list[LinkRow]:
        """Links of a record found by system and id alone (Salesforce ids are unique across objects)."""
        sql = "SELECT * FROM links WHERE system = ? AND id = ? ORDER BY object"
        return [_link(r) for r in self.db.query(sql, [system, id])]

    @_guarded
    def links_of(self, key: str) -> list[LinkRow]:
        sql = "SELECT * FROM links WHERE key = ? ORDER BY linked_at, system, object, id"
        return [_link(r) for r in self.db.query(sql, [key])]

    @_guarded
    def keys_by_email(self, emails: Iterable[str], *, kind: str = "person") -> dict[str, list[str]]:
        """Normalised email -> keys (of ``kind``) whose linked records carry it; unknown emails are absent."""
        return self._keys_by("email", emails, kind)

    @_guarded
    def keys_by_domain(self, domains: Iterable[str], *, kind: str = "account") -> dict[str, list[str]]:
        """Normalised domain -> keys (of ``kind``) whose linked records carry it."""
        return self._keys_by("domain", domains, kind)

    def _keys_by(self, column: str, values: Iterable[str], kind: str) -> dict[str, list[str]]:
        wanted = sorted({v for v in (_norm(x) for x in values) if v})
        found: dict[str, list[str]] = {}
        for chunk in _batched(wanted):
            marks = ",".join("?" * len(chunk))
            cursor = self._conn.execute(
                f"SELECT DISTINCT r.{column}, l.key FROM records r JOIN links l USING (system, object, id) "
                f"JOIN entities e ON e.key = l.key WHERE r.{column} IN ({marks}) AND e.kind = ? "
                f"ORDER BY r.{column}, l.key",
                [*chunk, kind],
            )
            for value, key in cursor:
                found.setdefault(value, []).append(key)
        return found

    @_guarded
    def link_converted(
        self,
        lead_id: str,
        contact_id: str,
        *,
        run_id: str | None = None,
        system: str = "salesforce",
        lead_object: str = "Lead",
        contact_object: str = "Contact",
    ) -> str:
        """Follow a converted Lead to its Contact so both stay one person; returns that person's key.

        The Lead's key wins (it is the older identity); a Contact already known under another key has that
        key merged into the Lead's.
        """
        with self.transaction():
            lead_key = self.key_of(system, lead_object, lead_id)
            contact_key = self.key_of(system, contact_object, contact_id)
            if lead_key is None:
                key = contact_key or self.new_key("person")
                self.add_links([LinkRow(key, system, lead_object, lead_id, "new", run_id=run_id)])
                if contact_key is None:
                    self.add_links(
                        [LinkRow(key, system, contact_object, contact_id, "converted", run_id=run_id)]
                    )
                return key
            if contact_key is None:
                self.add_links(
                    [LinkRow(lead_key, system, contact_object, contact_id, "converted", run_id=run_id)]
                )
            elif contact_key != lead_key:
                self.merge_keys(lead_key, contact_key)
            return lead_key

    @_guarded
    def merge_keys(self, into: str, other: str) -> None:
        """Make ``other`` part of ``into``: links, history, overrides and intents move; ``into``'s current
        decision and assignment win when both have one; ``other`` then no longer exists."""
        if into == other:
            return
        if self.key_kind(into) is None or self.key_kind(other) is None:
            raise LedgerError(f"cannot merge {other} into {into}: unknown key")
        with self.transaction():
            for table in ("links", "decision_history", "overrides"):
                self._conn.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (into, other))
            for table in ("outbox", "quarantine"):
                self._conn.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (into, other))
            for table in ("decisions", "assignments"):
                has_own = self._conn.execute(f"SELECT 1 FROM {table} WHERE key = ?", (into,)).fetchone()
                if has_own:
                    self._conn.execute(f"DELETE FROM {table} WHERE key = ?", (other,))
                else:
                    self._conn.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (into, other))
            self._conn.execute("DELETE FROM entities WHERE key = ?", (other,))

    # -- watermarks

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
            self.db.table("watermarks").upsert(
                {
                    "system": system,
                    "object": object,
                    "value": value,
                    "updated_at": self._now(),
                    "run_id": run_id,
                },
                pk=("system", "object"),
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
            for r in self.db.query("SELECT * FROM watermarks ORDER BY system, object")
        ]

    # -- decisions

    @_guarded
    def record_decisions(self, rows: Iterable[DecisionRow]) -> list[str]:
        """Store the latest decision per key; a change of stage, score, owner or team is added to the history.

        Returns the keys whose outcome changed (new keys included). A decision equal in outcome to the
        stored one refreshes its trace and digest without adding history, so re-running a cycle is quiet.
        """
        changed: list[str] = []
        with self.transaction():
            for chunk in _batched(rows):
                by_key = {row.key: row for row in chunk}
                current = self._decisions(by_key)
                history = []
                for key, row in by_key.items():
                    before = current.get(key)
                    if before is not None and before.outcome() == row.outcome():
                        continue
                    changed.append(key)
                    prev = before.outcome() if before else (None, None, None, None)
                    history.append(
                        {
                            "key": key,
                            "at": _ts(row.decided_at),
                            "run_id": row.run_id,
                            "stage": row.stage,
                            "score": row.score,
                            "owner": row.owner,
                            "team": row.team,
                            "prev_stage": prev[0],
                            "prev_score": prev[1],
                            "prev_owner": prev[2],
                            "prev_team": prev[3],
                            "digest": row.digest,
                            "trace": _dumps(row.trace),
                        }
                    )
                self.db.table("decisions").upsert_all(
                    (
                        {
                            "key": row.key,
                            "stage": row.stage,
                            "score": row.score,
                            "owner": row.owner,
                            "team": row.team,
                            "digest": row.digest,
                            "trace": _dumps(row.trace),
                            "data": _dumps(dict(row.data)),
                            "decided_at": _ts(row.decided_at),
                            "run_id": row.run_id,
                        }
                        for row in by_key.values()
                    ),
                    pk="key",
                    batch_size=_BATCH,
                )
                if history:
                    self.db.table("decision_history").insert_all(history, batch_size=_BATCH)
        return changed

    def _decisions(self, keys: Iterable[str]) -> dict[str, DecisionRow]:
        found: dict[str, DecisionRow] = {}
        for chunk in _batched(keys):
            marks = ",".join("?" * len(chunk))
            for r in self.db.query(f"SELECT * FROM decisions WHERE key IN ({marks})", chunk):
                found[r["key"]] = _decision(r)
        return found

    @_guarded
    def decisions(self, keys: Iterable[str]) -> dict[str, DecisionRow]:
        """Bulk read of current decisions: key -> decision, for the keys that have one."""
        return self._decisions(keys)

    @_guarded
    def due_keys(
        self, at: datetime, *, kind: str | None = None, after: str = "", limit: int = 1000
    ) -> list[str]:
        """Keys whose decision says it is due again by ``at`` (``data["due_at"]``, an ISO time the cycle
        stores: an SLA deadline, an override's end, a score to decay), in key order after ``after``."""
        kind_filter = "" if kind is None else " AND e.kind = ?"
        sql = (
            "SELECT d.key FROM decisions d JOIN entities e ON e.key = d.key "
            "WHERE d.key > ? AND json_extract(d.data, '$.due_at') <= ?"
            f"{kind_filter} ORDER BY d.key LIMIT ?"
        )
        params: list[Any] = [after, _ts(at), *([] if kind is None else [kind]), limit]
        return [str(row[0]) for row in self._conn.execute(sql, params)]

    def decision(self, key: str) -> DecisionRow | None:
        return self.decisions([key]).get(key)

    @_guarded
    def decision_history(self, key: str, *, limit: int | None = None) -> list[DecisionChange]:
        """The changes of one key's decision, oldest first (the latest ``limit`` of them when given)."""
        sql = "SELECT * FROM decision_history WHERE key = ? ORDER BY seq DESC"
        params: list[Any] = [key]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = [_change(r) for r in self.db.query(sql, params)]
        rows.reverse()
        return rows

    # -- assignments, round robin, daily caps

    @_guarded
    def set_assignments(self, rows: Iterable[AssignmentRow]) -> None:
        """Store sticky owners (replacing a key's previous one)."""
        with self.transaction():
            self.db.table("assignments").upsert_all(
                (
                    {
                        "key": r.key,
                        "rep": r.rep,
                        "team": r.team,
                        "assigned_at": _ts(r.assigned_at),
                        "reason": r.reason,
                        "run_id": r.run_id,
                    }
                    for r in rows
                ),
                pk="key",
                batch_size=_BATCH,
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
            for r in self.db.query(f"SELECT * FROM assignments WHERE key IN ({marks})", chunk):
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
            r["rep"]: r["n"] for r in self.db.query("SELECT rep, count(*) AS n FROM assignments GROUP BY rep")
        }

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
        return {r["rep"]: r["count"] for r in self.db.query(sql, [day.isoformat()])}

    # -- outbox and writes

    @_guarded
    def add_intents(self, intents: Iterable[Intent], *, run_id: str) -> list[Intent]:
        """Write intents (state pending) before pushing them; returns them as stored."""
        now = self._now()
        stored: list[Intent] = []
        with self.transaction():
            for chunk in _batched(intents):
                rows = []
                for intent in chunk:
                    _check_system(intent.system)
                    if (intent.record_id is None) == (intent.create_key is None):
                        raise ValueError(f"intent {intent.id}: give exactly one of record_id and create_key")
                    at = _dt(now)
                    stored.append(
                        replace(
                            intent,
                            run_id=run_id,
                            state="pending",
                            attempts=0,
                            error=None,
                            result_id=None,
                            created_at=at,
                            updated_at=at,
                        )
                    )
                    rows.append(
                        {
                            "id": intent.id,
                            "run_id": run_id,
                            "key": intent.key,
                            "system": intent.system,
                            "object": intent.object,
                            "record_id": intent.record_id,
                            "create_key": intent.create_key,
                            "fields": _dumps(dict(intent.fields)),
                            "reason": intent.reason,
                            "state": "pending",
                            "attempts": 0,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                self.db.table("outbox").insert_all(rows, batch_size=_BATCH)
        return stored

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
                open_rows = {
                    r["id"]: r
                    for r in self.db.query(
                        f"SELECT * FROM outbox WHERE id IN ({marks}) AND state IN ('pending', 'sent')", ids
                    )
                }
                writes = []
                links = []
                for intent_id, result_id in chunk:
                    row = open_rows.get(intent_id)
                    if row is None:
                        continue
                    record_id = result_id or row["record_id"]
                    if record_id is None:
                        raise LedgerError(f"intent {intent_id} creates a record: confirm it with the new id")
                    self._conn.execute(
                        "UPDATE outbox SET state = 'confirmed', result_id = ?, error = NULL, updated_at = ? "
                        "WHERE id = ?",
                        (record_id, now, intent_id),
                    )
                    count += 1
                    for name, value in json.loads(row["fields"]).items():
                        writes.append(
                            {
                                "system": row["system"],
                                "object": row["object"],
                                "record_id": record_id,
                                "field": name,
                                "value": _dumps(value),
                                "at": now,
                                "run_id": row["run_id"],
                                "intent_id": intent_id,
                            }
                        )
                    if row["create_key"] is not None and row["key"] is not None:
                        links.append(
                            LinkRow(
                                row["key"],
                                row["system"],
                                row["object"],
                                record_id,
                                "created",
                                run_id=row["run_id"],
                            )
                        )
                if writes:
                    self.db.table("writes").upsert_all(
                        writes, pk=("system", "object", "record_id", "field"), batch_size=_BATCH
                    )
                if links:
                    self.add_links(links)
        return count

    @_guarded
    def fail(self, errors: Mapping[str, str]) -> int:
        """Mark intents as rejected for good: intent id -> the error; returns how many changed state."""
        now = self._now()
        with self.transaction():
            cursor = self._conn.executemany(
                "UPDATE outbox SET state = 'failed', error = ?, updated_at = ? "
                "WHERE id = ? AND state IN ('pending', 'sent')",
                [(error, now, intent_id) for intent_id, error in errors.items()],
            )
        return cursor.rowcount

    @_guarded
    def unfinished_intents(self, *, system: str | None = None) -> list[Intent]:
        """Intents pending or sent but not confirmed (a killed run's), in the order they were written."""
        sql = "SELECT * FROM outbox WHERE state IN ('pending', 'sent')"
        params: list[Any] = []
        if system is not None:
            sql += " AND system = ?"
            params.append(system)
        return [_intent(r) for r in self.db.query(sql + " ORDER BY rowid", params)]

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
        return [_intent(r) for r in self.db.query(sql, params)]

    @_guarded
    def outbox_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(INTENT_STATES, 0)
        for r in self.db.query("SELECT state, count(*) AS n FROM outbox GROUP BY state"):
            counts[r["state"]] = r["n"]
        return counts

    @_guarded
    def record_writes(self, rows: Iterable[WriteRow]) -> None:
        """Remember values syncd wrote outside the outbox (``confirm`` records its own)."""
        with self.transaction():
            self.db.table("writes").upsert_all(
                (
                    {
                        "system": w.system,
                        "object": w.object,
                        "record_id": w.record_id,
                        "field": w.field,
                        "value": _dumps(w.value),
                        "at": _ts(w.at),
                        "run_id": w.run_id,
                        "intent_id": w.intent_id,
                    }
                    for w in rows
                ),
                pk=("system", "object", "record_id", "field"),
                batch_size=_BATCH,
            )

    @_guarded
    def last_writes(
        self, system: str, object: str, record_ids: Iterable[str]
    ) -> dict[tuple[str, str], WriteRow]:
        """(record id, field) -> what syncd last wrote there, for the given records."""
        found: dict[tuple[str, str], WriteRow] = {}
        for chunk in _batched(record_ids):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT * FROM writes WHERE system = ? AND object = ? AND record_id IN ({marks})"
            for r in self.db.query(sql, [system, object, *chunk]):
                found[(r["record_id"], r["field"])] = WriteRow(
                    r["system"],
                    r["object"],
                    r["record_id"],
                    r["field"],
                    json.loads(r["value"]),
                    _dt(r["at"]),
                    r["run_id"],
                    r["intent_id"],
                )
        return found

    def last_write(self, system: str, object: str, record_id: str, field: str) -> WriteRow | None:
        return self.last_writes(system, object, [record_id]).get((record_id, field))

    # -- manual overrides

    @_guarded
    def record_override(self, row: OverrideRow) -> OverrideRow:
        """Remember a manual change; the same change (same field and rep) still honoured is not added twice.
        Returns the stored override (the earlier one when it was already known)."""
        _check_system(row.system)
        with self.transaction():
            existing = list(
                self.db.query(
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
    def active_overrides(
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
            for r in self.db.query(sql, [*chunk, field, at]):
                found[r["key"]] = _override(r)
        return found

    def active_override(
        self, key: str, *, field: str = "owner", now: datetime | None = None
    ) -> OverrideRow | None:
        return self.active_overrides([key], field=field, now=now).get(key)

    @_guarded
    def overrides_of(self, key: str) -> list[OverrideRow]:
        return [
            _override(r) for r in self.db.query("SELECT * FROM overrides WHERE key = ? ORDER BY seq", [key])
        ]

    # -- quarantine

    @_guarded
    def quarantine(
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
    def quarantined(self, *, system: str | None = None, due_only: bool = False) -> list[QuarantineRow]:
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
    def quarantine_entry(self, system: str, object: str, record_id: str) -> QuarantineRow | None:
        sql = "SELECT * FROM quarantine WHERE system = ? AND object = ? AND record_id = ?"
        rows = list(self.db.query(sql, [system, object, record_id]))
        return _quarantine(rows[0]) if rows else None

    @_guarded
    def quarantine_summary(self) -> QuarantineSummary:
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

    # -- read views for status and explain

    @_guarded
    def record_counts(self) -> dict[tuple[str, str], int]:
        sql = "SELECT system, object, count(*) AS n FROM records GROUP BY system, object ORDER BY system, object"
        return {(r["system"], r["object"]): r["n"] for r in self.db.query(sql)}

    @_guarded
    def owner_counts(self) -> dict[tuple[str, str | None], int]:
        """(kind, decided owner) -> keys, for the status page: owners ``queue:NAME`` wait in a queue, and
        owner None means no rule routed the key."""
        sql = (
            "SELECT e.kind, d.owner, count(*) AS n FROM decisions d JOIN entities e ON e.key = d.key "
            "GROUP BY e.kind, d.owner"
        )
        return {(r["kind"], r["owner"]): r["n"] for r in self.db.query(sql)}

    @_guarded
    def assignments_since(self, since: datetime, *, limit: int = 100) -> tuple[int, list[AssignmentRow]]:
        """How many sticky owners were assigned at or after ``since``, and the latest ``limit`` of them."""
        where = "FROM assignments WHERE assigned_at >= ?"
        total = self._conn.execute(f"SELECT count(*) {where}", (_ts(since),)).fetchone()[0]
        rows = self.db.query(f"SELECT * {where} ORDER BY assigned_at DESC, key LIMIT ?", [_ts(since), limit])
        return int(total), [
            AssignmentRow(r["key"], r["rep"], r["team"], _dt(r["assigned_at"]), r["reason"], r["run_id"])
            for r in rows
        ]

    @_guarded
    def status(self, *, runs: int = 10) -> StatusView:
        """Recent runs, watermarks, quarantine, outbox and counts: the ledger's half of ``syncd status``."""
        keys = dict.fromkeys(KEY_KINDS, 0)
        for r in self.db.query("SELECT kind, count(*) AS n FROM entities GROUP BY kind"):
            keys[r["kind"]] = r["n"]
        return StatusView(
            path=str(self.path),
            schema_version=self.schema_version,
            runs=self.recent_runs(runs),
            watermarks=self.watermarks(),
            quarantine=self.quarantine_summary(),
            outbox=self.outbox_counts(),
            records=self.record_counts(),
            keys=keys,
        )

    @_guarded
    def find_keys(self, query: str) -> list[str]:
        """Keys matching what a user types to ``syncd explain``: a key, an email, or a record id."""
        query = query.strip()
        if self.key_kind(query) is not None:
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
    def history(self, key: str, *, limit: int = 50) -> KeyHistory:
        """Everything known about one key: linked records, decision and its history, overrides, intents."""
        kind = self.key_kind(key)
        if kind is None:
            raise LedgerError(f"no person or account {key} in the ledger")
        quarantine = [
            _quarantine(r)
            for r in self.db.query("SELECT * FROM quarantine WHERE key = ? ORDER BY system", [key])
        ]
        return KeyHistory(
            key=key,
            kind=kind,
            links=self.links_of(key),
            records=self.records_of(key),
            decision=self.decision(key),
            history=self.decision_history(key, limit=limit),
            assignment=self.assignment(key),
            overrides=self.overrides_of(key),
            intents=self.intents(key=key, limit=limit),
            quarantine=quarantine,
        )


# -- row conversions --------------------------------------------------------------------------------------


def _record(r: Mapping[str, Any]) -> RecordRow:
    return RecordRow(
        system=r["system"],
        object=r["object"],
        id=r["id"],
        data=json.loads(r["data"]),
        modified_at=_dt_opt(r["modified_at"]),
        deleted=bool(r["deleted"]),
        email=r["email"],
        domain=r["domain"],
        hash=r["hash"],
        dirty=bool(r["dirty"]),
        seen_run=r["seen_run"],
        seen_at=_dt(r["seen_at"]),
    )


def _link(r: Mapping[str, Any]) -> LinkRow:
    return LinkRow(r["key"], r["system"], r["object"], r["id"], r["how"], _dt(r["linked_at"]), r["run_id"])


def _run(r: Mapping[str, Any]) -> RunRow:
    return RunRow(
        id=r["id"],
        kind=r["kind"],
        started_at=_dt(r["started_at"]),
        finished_at=_dt_opt(r["finished_at"]),
        status=r["status"],
        counters=json.loads(r["counters"]),
        error=r["error"],
        pid=r["pid"],
    )


def _decision(r: Mapping[str, Any]) -> DecisionRow:
    return DecisionRow(
        key=r["key"],
        digest=r["digest"],
        trace=json.loads(r["trace"]),
        decided_at=_dt(r["decided_at"]),
        stage=r["stage"],
        score=r["score"],
        owner=r["owner"],
        team=r["team"],
        data=json.loads(r["data"]),
        run_id=r["run_id"],
    )


def _change(r: Mapping[str, Any]) -> DecisionChange:
    return DecisionChange(
        seq=r["seq"],
        key=r["key"],
        at=_dt(r["at"]),
        run_id=r["run_id"],
        stage=r["stage"],
        score=r["score"],
        owner=r["owner"],
        team=r["team"],
        prev_stage=r["prev_stage"],
        prev_score=r["prev_score"],
        prev_owner=r["prev_owner"],
        prev_team=r["prev_team"],
        digest=r["digest"],
        trace=json.loads(r["trace"]),
    )


def _intent(r: Mapping[str, Any]) -> Intent:
    return Intent(
        system=r["system"],
        object=r["object"],
        fields=json.loads(r["fields"]),
        reason=r["reason"],
        record_id=r["record_id"],
        create_key=r["create_key"],
        key=r["key"],
        id=r["id"],
        run_id=r["run_id"],
        state=r["state"],
        attempts=r["attempts"],
        error=r["error"],
        result_id=r["result_id"],
        created_at=_dt(r["created_at"]),
        updated_at=_dt(r["updated_at"]),
    )


def _override(r: Mapping[str, Any]) -> OverrideRow:
    return OverrideRow(
        key=r["key"],
        system=r["system"],
        object=r["object"],
        record_id=r["record_id"],
        rep=r["rep"],
        seen_at=_dt(r["seen_at"]),
        honoured_until=_dt(r["honoured_until"]),
        field=r["field"],
        previous=r["previous"],
        changed_by=r["changed_by"],
        run_id=r["run_id"],
        seq=r["seq"],
    )


def _quarantine(r: Mapping[str, Any]) -> QuarantineRow:
    return QuarantineRow(
        system=r["system"],
        object=r["object"],
        record_id=r["record_id"],
        reason=r["reason"],
        attempts=r["attempts"],
        first_seen_at=_dt(r["first_seen_at"]),
        last_attempt_at=_dt(r["last_attempt_at"]),
        next_attempt_at=_dt(r["next_attempt_at"]),
        reported=bool(r["reported"]),
        key=r["key"],
        run_id=r["run_id"],
    )
