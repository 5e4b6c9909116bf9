"""Opening the ledger: private file modes, pragmas, forward migrations, refusals, the writer's lock, readers."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlite_utils import Database

from syncd.core.types import DecisionRow, RecordRow
from syncd.errors import LedgerError, LockedError
from syncd.ledger import SCHEMA_VERSION, Ledger
from syncd.ledger.schema import MIGRATIONS
from syncd.lock import LedgerLock, holder_pid

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask there is, so a private mode can only come from the ledger itself."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_a_new_ledger_and_its_side_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.db"
    with Ledger(path) as ledger:
        ledger.records.upsert([RecordRow("hubspot", "contacts", "1", {"email": "a@x.com"})])
        assert {p.name: mode_of(p) for p in path.parent.iterdir()} == {
            "ledger.db": 0o600,
            "ledger.db-wal": 0o600,
            "ledger.db-shm": 0o600,
            "ledger.db.lock": 0o600,
        }
    assert mode_of(path.parent) == 0o700


@pytest.mark.usefixtures("open_umask")
def test_a_ledger_found_readable_by_others_is_tightened_on_open(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    os.chmod(path, 0o644)
    Path(f"{path}-wal").write_bytes(b"")
    os.chmod(f"{path}-wal", 0o666)
    with Ledger(path):
        assert mode_of(path) == 0o600
        assert mode_of(Path(f"{path}-wal")) == 0o600


def test_pragmas_wal_normal_sync_incremental_vacuum_foreign_keys_busy_timeout_and_checkpoints(
    tmp_path: Path,
) -> None:
    with Ledger(tmp_path / "ledger.db", busy_timeout=2.5) as ledger:
        pragma = {
            name: ledger.db.execute(f"PRAGMA {name}").fetchone()[0]
            for name in (
                "journal_mode",
                "synchronous",
                "auto_vacuum",
                "foreign_keys",
                "busy_timeout",
                "user_version",
                "temp_store",
                "wal_autocheckpoint",
                "cache_size",
            )
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,
        "auto_vacuum": 2,
        "foreign_keys": 1,
        "busy_timeout": 2500,
        "user_version": SCHEMA_VERSION,
        # Journals and sorts in memory, not in temporary files written to disk.
        "temp_store": 2,
        "wal_autocheckpoint": 65536,
        # A 16 MB page cache (negative: in KiB), not SQLite's 2 MB.
        "cache_size": -16384,
    }


# -- migrations -------------------------------------------------------------------------------------------


def build_ledger_at(path: Path, version: int) -> None:
    """A ledger file as an older syncd left it: the first ``version`` migrations applied."""
    db = Database(path)
    db.execute("PRAGMA journal_mode = WAL")
    for step in MIGRATIONS[:version]:
        step(db)
    db.execute(f"PRAGMA user_version = {version}")
    if version >= 1:
        db.execute(
            "INSERT INTO runs (id, kind, started_at, status) VALUES ('r1', 'cycle', ?, 'ok')",
            [T0.isoformat(timespec="microseconds")],
        )
        db.execute(
            "INSERT INTO entities (key, kind, created_at) VALUES ('p:old', 'person', ?)",
            [T0.isoformat(timespec="microseconds")],
        )
        db.execute(
            "INSERT INTO records (system, object, id, hash, seen_at, seen_run, data, email) "
            "VALUES ('hubspot', 'contacts', '7', 'h', ?, 'r1', '{\"id\": \"7\"}', 'ana@x.com')",
            [T0.isoformat(timespec="microseconds")],
        )
        db.execute(
            "INSERT INTO links (system, object, id, key, how, linked_at) "
            "VALUES ('hubspot', 'contacts', '7', 'p:old', 'new', ?)",
            [T0.isoformat(timespec="microseconds")],
        )
        db.execute(
            "INSERT INTO watermarks (system, object, value, updated_at) VALUES ('hubspot', 'contacts', 'w', ?)",
            [T0.isoformat(timespec="microseconds")],
        )
    db.close()


@pytest.mark.parametrize("version", range(SCHEMA_VERSION), ids=lambda v: f"from-v{v}")
def test_an_older_ledger_is_upgraded_in_place_and_keeps_its_data(tmp_path: Path, version: int) -> None:
    path = tmp_path / "ledger.db"
    build_ledger_at(path, version)
    with Ledger(path) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION
        assert ledger.integrity_check() == "ok"
        if version >= 1:
            assert ledger.identity.key_of("hubspot", "contacts", "7") == "p:old"
            assert ledger.records.watermark("hubspot", "contacts") == "w"
            assert ledger.views.find_keys("ana@x.com") == ["p:old"]
            key = "p:old"
        else:
            key = ledger.identity.new_key("person")
        # Tables of later versions work on the upgraded file.
        ledger.decisions.record([DecisionRow(key, "rules-1", [], T0, owner="sam.patel@northwind.example")])
        assert [c.owner for c in ledger.decisions.history(key)] == ["sam.patel@northwind.example"]


def test_a_failing_migration_leaves_the_file_at_the_last_whole_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.db"
    build_ledger_at(path, 1)

    def broken(db: Database) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr("syncd.ledger.connection.MIGRATIONS", [MIGRATIONS[0], broken])
    with pytest.raises(LedgerError, match="disk I/O error"):
        Ledger(path)
    db = Database(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "half_done" not in db.table_names()
    db.close()
    monkeypatch.undo()
    with Ledger(path) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION


def test_a_ledger_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this syncd"):
        Ledger(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    conn.close()
    # The refusal released the lock: a fixed syncd could open it now.
    assert holder_pid(path) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"not a database at all" * 100, "not a syncd ledger", id="garbage"),
        pytest.param(None, "an SQLite file but not a syncd ledger", id="someone-elses-sqlite"),
    ],
)
def test_a_file_that_is_not_a_ledger_is_refused(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "ledger.db"
    if content is None:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.close()
    else:
        path.write_bytes(content)
    with pytest.raises(LedgerError, match=message):
        Ledger(path)


# -- the writer's lock and readers ------------------------------------------------------------------------

HOLDER = """
import sys
from syncd.ledger import Ledger
ledger = Ledger(sys.argv[1])
run = ledger.runs.start()
print(run, flush=True)
sys.stdin.readline()
ledger.runs.finish(run, "ok")
ledger.close()
"""


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str], str]]:
    """Another process with the ledger open for writing and a run in progress."""
    path = tmp_path / "ledger.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    run = proc.stdout.readline().strip()
    assert run, "the writer process did not start"
    try:
        yield path, proc, run
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_second_writer_is_refused_naming_the_holder(
    writer: tuple[Path, subprocess.Popen[str], str],
) -> None:
    path, proc, _ = writer
    with pytest.raises(LockedError, match=f"pid {proc.pid}"):
        Ledger(path)


def test_a_reader_sees_a_live_writer_without_touching_its_run(
    writer: tuple[Path, subprocess.Popen[str], str],
) -> None:
    path, _, run = writer
    with Ledger(path, readonly=True) as reader:
        (seen,) = reader.runs.recent()
        assert (seen.id, seen.status) == (run, "running")
        assert reader.interrupted_runs == []
        with pytest.raises(LedgerError, match="read-only"):
            reader.records.set_watermark("hubspot", "contacts", "x")


def test_a_run_left_running_by_a_dead_process_is_marked_interrupted(
    writer: tuple[Path, subprocess.Popen[str], str],
) -> None:
    path, proc, run = writer
    proc.kill()
    proc.wait(timeout=30)
    with Ledger(path) as ledger:
        assert ledger.interrupted_runs == [run]
        current = ledger.runs.get(run)
        assert current is not None and current.status == "interrupted" and current.finished_at is not None


def test_the_daemon_holding_the_lock_may_open_its_ledger_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with LedgerLock(path):
        with Ledger(path) as ledger:
            with pytest.raises(LockedError, match="already open for writing in this process"):
                Ledger(path)
            run = ledger.runs.start()
        # Closing the ledger leaves the daemon's lock alone.
        assert holder_pid(path) == os.getpid()
        with Ledger(path) as again:
            assert again.interrupted_runs == [run]


def test_a_writer_is_told_when_the_ledger_stays_busy(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path, busy_timeout=0.05) as ledger:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(LedgerError, match="is busy"):
                ledger.records.set_watermark("hubspot", "contacts", "x")
        finally:
            other.execute("ROLLBACK")
            other.close()
        ledger.records.set_watermark("hubspot", "contacts", "x")
        assert ledger.records.watermark("hubspot", "contacts") == "x"


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        pytest.param(lambda path: None, "no ledger at", id="missing"),
        pytest.param(lambda path: build_ledger_at(path, 1), "needs an upgrade", id="outdated"),
    ],
)
def test_a_reader_refuses_what_only_a_writer_could_fix(
    tmp_path: Path, prepare: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "ledger.db"
    prepare(path)
    with pytest.raises(LedgerError, match=message):
        Ledger(path, readonly=True)


def test_a_version_2_ledger_keeps_its_dirty_records_and_gets_incremental_vacuum(tmp_path: Path) -> None:
    import sqlite3

    from sqlite_utils import Database

    from syncd.ledger.schema import MIGRATIONS

    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    db = Database(conn)
    for step in MIGRATIONS[:2]:
        step(db)
    conn.execute("PRAGMA user_version = 2")
    for id_, dirty in (("00Q1", 1), ("00Q2", 0)):
        conn.execute(
            "INSERT INTO records (system, object, id, hash, dirty, seen_at, data, domain) "
            "VALUES ('salesforce', 'Lead', ?, 'h', ?, '2024-01-01T00:00:00.000000+00:00', '{}', 'x.example')",
            (id_, dirty),
        )
    conn.commit()
    conn.close()
    with Ledger(path) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION
        assert ledger.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        dirty = [r.id for r in ledger.records.iterate("salesforce", "Lead", dirty_only=True)]
        assert dirty == ["00Q1"]
        assert ledger.records.get("salesforce", "Lead", "00Q2").dirty is False  # type: ignore[union-attr]
        assert ledger.integrity_check() == "ok"
