"""The ledger file: opening, the writer's lock, modes, migrations, and the one transaction API.

Every store of the ledger runs its SQL over the ``Connection`` this module opens; ``transaction()`` groups
their changes (nested blocks become savepoints).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from sqlite_utils import Database

from syncd.errors import LedgerError, LockedError
from syncd.ledger.rows import _ts, utc_now
from syncd.ledger.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from syncd.lock import LedgerLock, holder_pid, lock_path_for

log = logging.getLogger(__name__)

# The page cache of a ledger open for writing, in KiB (see ``Connection._configure``).
PAGE_CACHE_KIB = 16 * 1024

# Ledgers open for writing in this process: the file lock cannot tell two of them apart.
_WRITERS: set[Path] = set()
_WRITERS_LOCK = threading.Lock()


class Connection:
    """The one SQLite connection of a ledger, shared by all its stores.

    ``Connection(path)`` opens (creating it if needed) and upgrades the file and takes the writer's lock;
    ``Connection(path, readonly=True)`` only reads, takes no lock and refuses a file that needs an upgrade.
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
        self.path = Path(path).expanduser()
        self.readonly = readonly
        self.clock = clock
        self._busy_timeout = busy_timeout
        self.lock = threading.RLock()
        self._file_lock: LedgerLock | None = None
        self._writer_path: Path | None = None
        self._unsynced = False
        self._dir_synced = False
        try:
            conn = self._connect_readonly() if readonly else self._connect_writable()
        except sqlite3.Error as exc:
            self._release_file_lock()
            raise self.error(exc) from exc
        except BaseException:
            self._release_file_lock()
            raise
        self.conn = conn
        self.db = Database(conn, execute_plugins=False)
        try:
            self._configure()
            self._migrate()
        except sqlite3.Error as exc:
            self.close()
            raise self.error(exc) from exc
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
        conn = self.conn
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        if self.readonly:
            conn.execute("PRAGMA query_only = ON")
            return
        if int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]) == 0:
            # A new file (before anything, WAL included, writes its first page): free pages go back to the
            # file system on ``incremental_vacuum`` (retention). Older ledgers switch after migration 6.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"ledger {self.path}: cannot switch to WAL mode (got {mode})")
        # NORMAL: a commit reaches the WAL (so a killed process loses nothing) but is fsynced only at
        # checkpoints. What must survive a power cut too, an intent before the push it announces, is made
        # durable by ``sync()``, which the pusher calls before it sends (see syncd.cycle's crash-safety rules).
        conn.execute("PRAGMA synchronous = NORMAL")
        # Checkpoint every 256 MB of WAL rather than every 4 MB: a page a cycle writes several times (an index
        # page each transaction of a stage adds to) is copied into the database once; the WAL is cut back to
        # 64 MB after.
        conn.execute("PRAGMA wal_autocheckpoint = 65536")
        conn.execute(f"PRAGMA journal_size_limit = {64 * 1024 * 1024}")
        # Savepoint and statement journals and temporary sort tables in memory: in files they were written to
        # disk too, only to be deleted after (a tenth of the bytes a first cycle wrote at 20,000 persons, a sixth
        # at 100,000). A savepoint's journal holds a copy of each page its block changes, so a block that changes
        # many pages and fails only with its transaction joins it without one (``transaction(savepoint=False)``).
        conn.execute("PRAGMA temp_store = MEMORY")
        # A 16 MB page cache instead of SQLite's 2 MB: a first cycle's inserts land all over the indexes (by
        # email, by key, by record id), and with 2 MB each one read its pages back from the file. 3 % less
        # CPU for a 100,000-person first cycle; the peak RSS grows by the cache (13 MB, measured).
        conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")

    def _migrate(self) -> None:
        conn = self.conn
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
        if not self.readonly and int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) != 2:
            # A ledger created before auto_vacuum was set: the setting takes effect with a VACUUM (once; it
            # rewrites the file, outside any transaction).
            log.info("ledger %s: switching to incremental vacuum (a one-time VACUUM)", self.path)
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")

    def error(self, exc: sqlite3.Error) -> LedgerError:
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
        return _ts(self.clock())

    # -- lifecycle

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Close the database and release the writer's lock; the ledger cannot be used afterwards."""
        with self.lock:
            conn = getattr(self, "conn", None)
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    if not self.readonly:
                        conn.execute("PRAGMA optimize")
                conn.close()
            self._release_file_lock()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self, *, savepoint: bool = True) -> Iterator[None]:
        """Group changes into one transaction: all of them are stored, or none (nested blocks: savepoints).

        ``savepoint=False``: a nested block simply joins the open transaction, for a block whose failure
        fails that whole transaction anyway; SQLite then keeps no copy (in memory) of every page the block
        changes, which a large block's savepoint does."""
        if self.readonly:
            raise LedgerError(f"ledger {self.path} is open read-only")
        with self.lock:
            if self.conn.in_transaction:
                if not savepoint:
                    yield
                    return
                with self.db.atomic():
                    yield
                return
            try:
                # IMMEDIATE takes the write lock up front, so a reader-turned-writer never fails half-way.
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self.error(exc) from exc
            try:
                yield
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise self.error(exc) from exc

    def needs_sync(self) -> None:
        """Note that the last (or the current) transaction holds something ``sync()`` must make durable."""
        self._unsynced = True

    def sync(self) -> bool:
        """Make every committed transaction durable across a power cut (fsync of the WAL), if one marked by
        ``needs_sync`` is not yet; returns whether it synced. Call it outside any transaction."""
        with self.lock:
            if not self._unsynced or self.readonly:
                return False
            if self.conn.in_transaction:
                raise LedgerError("sync() inside a transaction: the transaction is not committed yet")
            for name in (f"{self.path}-wal", str(self.path)):
                try:
                    fd = os.open(name, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if not self._dir_synced:
                # The WAL file's directory entry, once (SQLite does the same for a new journal).
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._dir_synced = True
            self._unsynced = False
            return True

    def integrity_check(self) -> str:
        """SQLite's own verdict on the file: ``"ok"`` or the first problems found."""
        with self.lock:
            try:
                rows = self.conn.execute("PRAGMA integrity_check").fetchall()
            except sqlite3.Error as exc:
                raise self.error(exc) from exc
        return "\n".join(str(r[0]) for r in rows)
