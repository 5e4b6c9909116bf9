"""The local SQLite ledger: what syncd saw, linked, decided, intended and wrote, per portal/org pair.

One ``Ledger(path)`` per process that writes: it takes ``syncd.lock.LedgerLock`` (unless this process, the
daemon, already holds it), so a second writer gets ``LockedError``; readers such as ``syncd status`` open it
with ``readonly=True`` at any time. The file is created with mode 0600 and tightened to 0600 when found
looser, runs in WAL mode with ``synchronous=FULL`` and foreign keys on, and is upgraded in place by the
forward migrations of ``syncd.ledger.schema`` (a file newer than this code is refused).

The ledger is a package of stores, one per concept, over one connection (``syncd.ledger.connection``):

    ledger.runs        runs and their counters                                  (runs.py)
    ledger.records     pulled records, their dirty flags, and watermarks        (records.py)
    ledger.identity    keys, links, merges and conversions                      (identity.py)
    ledger.decisions   decisions and history, assignments, round robin, caps    (decisions.py)
    ledger.outbox      intents before and after each push, and writes (echoes)  (outbox.py)
    ledger.overrides   manual owner changes honoured for a while                (overrides.py)
    ledger.quarantine  records that failed, held with backoff                   (quarantine.py)
    ledger.retention   forgetting history older than [ledger] keep_days         (retention.py)
    ledger.roster      the systems' reps and queues as last listed              (roster.py)
    ledger.teams       account team members (managed flag), team decisions      (teams.py)
    ledger.rulesets    the text of each rule set decisions were made under      (rulesets.py)
    ledger.views       read views across stores: status, explain, plan, demo    (views.py)

Every multi-row change runs in one transaction; callers group several changes, across stores, with
``ledger.transaction()`` (nested blocks become savepoints). Crash safety rests on three habits the cycle
follows:

- records are staged with a *dirty* flag that stays set until the cycle calls ``records.mark_clean`` for the
  keys it fully processed, so a crash between staging and deciding loses nothing;
- every push is written to the *outbox* as an intent before it is sent, and confirmed after; at start
  ``outbox.unfinished()`` lists what a killed run may or may not have sent, to be replayed (creates carry
  an idempotency key used as the Salesforce external id, so a replay is an upsert);
- *watermarks* move only when the cycle says so, after everything below them was processed.

Datetimes at this API are timezone-aware UTC (naive ones are refused); they are stored as ISO-8601 text with
``+00:00``. Ids and keys are strings. JSON values are stored as canonical JSON text. No SQL runs on the
ledger's tables outside this package.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.ledger import _without_numpy  # noqa: F401  (first: sqlite-utils is imported without numpy)
from syncd.ledger.connection import Connection
from syncd.ledger.decisions import Decisions
from syncd.ledger.identity import Identity
from syncd.ledger.outbox import Outbox
from syncd.ledger.overrides import Overrides
from syncd.ledger.quarantine import Quarantine
from syncd.ledger.records import Records
from syncd.ledger.retention import Retention
from syncd.ledger.roster import Roster
from syncd.ledger.rows import utc_now
from syncd.ledger.rulesets import RuleSets
from syncd.ledger.runs import Runs
from syncd.ledger.schema import SCHEMA_VERSION
from syncd.ledger.teams import Teams
from syncd.ledger.views import Views

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["SCHEMA_VERSION", "Ledger", "utc_now"]


class Ledger:
    """The SQLite ledger of one HubSpot portal / Salesforce org pair, as one store per concept.

    ``Ledger(path)`` opens (creating it if needed) and upgrades the file, takes the writer's lock and marks
    runs left ``running`` by a killed process as ``interrupted`` (their ids in ``interrupted_runs``).
    ``Ledger(path, readonly=True)`` only reads, takes no lock and refuses a file that needs an upgrade.
    ``clock`` gives the time stamped on rows; tests inject a fixed one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        clock: Callable[[], datetime] = utc_now,
        busy_timeout: float = 5.0,
    ) -> None:
        self._connection = connection = Connection(
            path, readonly=readonly, clock=clock, busy_timeout=busy_timeout
        )
        self.runs = Runs(connection)
        self.records = Records(connection)
        self.identity = Identity(connection)
        self.decisions = Decisions(connection)
        self.outbox = Outbox(connection, identity=self.identity)
        self.overrides = Overrides(connection)
        self.quarantine = Quarantine(connection)
        self.retention = Retention(connection, records=self.records)
        self.roster = Roster(connection)
        self.teams = Teams(connection)
        self.rulesets = RuleSets(connection)
        self.views = Views(
            connection,
            runs=self.runs,
            records=self.records,
            identity=self.identity,
            decisions=self.decisions,
            outbox=self.outbox,
            overrides=self.overrides,
            quarantine=self.quarantine,
        )
        self.interrupted_runs: list[str] = []
        if not readonly:
            try:
                self.interrupted_runs = self.runs.mark_interrupted()
            except BaseException:
                connection.close()
                raise

    @property
    def path(self) -> Path:
        return self._connection.path

    @property
    def readonly(self) -> bool:
        return self._connection.readonly

    @property
    def lock_path(self) -> Path:
        return self._connection.lock_path

    @property
    def db(self) -> Database:
        """The sqlite-utils database under the stores (for tests and pragmas, not for the ledger's tables)."""
        return self._connection.db

    @property
    def schema_version(self) -> int:
        return self._connection.schema_version

    def integrity_check(self) -> str:
        """SQLite's own verdict on the file: ``"ok"`` or the first problems found."""
        return self._connection.integrity_check()

    @contextlib.contextmanager
    def transaction(self, *, savepoint: bool = True) -> Iterator[Ledger]:
        """Group changes of any stores into one transaction: all of them are stored, or none (nested blocks:
        savepoints; with ``savepoint=False`` they join the open transaction, see ``Connection.transaction``)."""
        with self._connection.transaction(savepoint=savepoint):
            yield self

    def sync(self) -> bool:
        """Make committed intents durable across a power cut before their push (an fsync of the WAL, only
        when a transaction since the last one wrote intents); returns whether it synced."""
        return self._connection.sync()

    def close(self) -> None:
        """Close the database and release the writer's lock; the ledger cannot be used afterwards."""
        self._connection.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
