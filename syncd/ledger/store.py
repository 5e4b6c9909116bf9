"""The base of every store: a view of the one shared connection, its lock, clock and transaction API."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqlite_utils import Database

from syncd.errors import LedgerError
from syncd.ledger.rows import _ts

if TYPE_CHECKING:
    import threading

    from syncd.ledger.connection import Connection

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="Store")


def _guarded(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Serialise access to the connection and translate SQLite errors into ``LedgerError``."""

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    return wrapper


class Store:
    """One concept's tables, read and written over the ledger's one connection and transaction API."""

    def __init__(self, connection: Connection) -> None:
        self._c = connection

    @property
    def path(self) -> Path:
        return self._c.path

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._c.conn

    @property
    def db(self) -> Database:
        return self._c.db

    @property
    def _lock(self) -> threading.RLock:
        return self._c.lock

    def _select(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Rows of a query, each read by column name (``sqlite3.Row``: no dict built per row)."""
        cursor = self._conn.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, params)

    def _clock(self) -> datetime:
        return self._c.clock()

    def _now(self) -> str:
        return _ts(self._c.clock())

    def _error(self, exc: sqlite3.Error) -> LedgerError:
        return self._c.error(exc)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._c.transaction():
            yield
