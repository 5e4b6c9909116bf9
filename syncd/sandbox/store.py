"""Durable record storage for one sandbox server: an in-memory table per object, written through to SQLite.

Records live in memory (dicts keyed by id, in insertion order) so queries run at memory speed, and every
change is written to a SQLite file so that a restarted sandbox keeps its data. Without a path the store is
memory-only, which is what fast tests use. Callers serialise access with ``store.lock``.

The file holds every token of its server: it is created mode 0600 (SQLite gives its -wal and -shm files the
database's mode), and an existing file is narrowed to 0600 when opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def _private_file(path: Path) -> None:
    """Create ``path`` mode 0600 if missing, else narrow it (and its WAL files) to 0600."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if name.exists() and name.stat().st_mode & 0o077:
                os.chmod(name, 0o600)
    else:
        os.close(fd)


class Store:
    """Records of one system, by object type and id, with a small key/value area for server metadata."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._tables: dict[str, dict[str, Record]] = {}
        self._meta: dict[str, Any] = {}
        if path is not None:
            _private_file(path)
        self._db = sqlite3.connect(
            str(path) if path else ":memory:", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (type TEXT, id TEXT, data TEXT, PRIMARY KEY (type, id))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._pending: dict[tuple[str, str], Record | None] = {}
        self._load()

    def _load(self) -> None:
        for type_, id_, data in self._db.execute("SELECT type, id, data FROM records ORDER BY rowid"):
            self._tables.setdefault(type_, {})[id_] = json.loads(data)
        for key, value in self._db.execute("SELECT key, value FROM meta"):
            self._meta[key] = json.loads(value)

    # -- records

    def table(self, type_: str) -> dict[str, Record]:
        """The live table of one object type (id -> record); mutate only through put/delete."""
        return self._tables.setdefault(type_, {})

    def get(self, type_: str, id_: str) -> Record | None:
        return self._tables.get(type_, {}).get(id_)

    def all(self, type_: str) -> Iterator[Record]:
        return iter(list(self._tables.get(type_, {}).values()))

    def count(self, type_: str) -> int:
        return len(self._tables.get(type_, {}))

    def put(self, type_: str, record: Record) -> None:
        """Insert or replace a record (by its "id" or "Id" key); durable at the next flush()."""
        id_ = str(record.get("Id") or record.get("id"))
        self.table(type_)[id_] = record
        self._pending[(type_, id_)] = record

    def put_many(self, type_: str, records: Iterable[Record]) -> None:
        for record in records:
            self.put(type_, record)
        self.flush()

    def remove(self, type_: str, id_: str) -> None:
        """Erase a record for good (a hard delete; soft deletes are a field the server sets)."""
        self._tables.get(type_, {}).pop(id_, None)
        self._pending[(type_, id_)] = None

    def flush(self) -> None:
        """Write pending changes to SQLite in one transaction (call at the end of each write request)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        upserts = [
            (t, i, json.dumps(r, separators=(",", ":"))) for (t, i), r in pending.items() if r is not None
        ]
        deletes = [(t, i) for (t, i), r in pending.items() if r is None]
        self._db.execute("BEGIN")
        try:
            if upserts:
                self._db.executemany(
                    "INSERT OR REPLACE INTO records (type, id, data) VALUES (?, ?, ?)", upserts
                )
            if deletes:
                self._db.executemany("DELETE FROM records WHERE type = ? AND id = ?", deletes)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # -- metadata (tokens, counters that must survive a restart, id sequences)

    def meta(self, key: str, default: Any = None) -> Any:
        return self._meta.get(key, default)

    def set_meta(self, key: str, value: Any) -> None:
        self._meta[key] = value
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def is_empty(self) -> bool:
        return not any(self._tables.values())

    def close(self) -> None:
        with self.lock:
            self.flush()
            self._db.close()
