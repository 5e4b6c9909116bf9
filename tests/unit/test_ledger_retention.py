"""Retention: runs, confirmed intents and decision history older than keep_days are pruned; nothing a cycle
needs is, and the space goes back to the file system."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_ledger import Clock, decision, lead, owner_intent

from syncd.config import load_config
from syncd.errors import ConfigError
from syncd.ledger import Ledger


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.db", clock=clock) as opened:
        yield opened


def a_cycle(ledger: Ledger, clock: Clock, key: str, owner: str, record: str) -> tuple[str, str, str]:
    """One finished run that staged a record, decided a key and confirmed one intent and left another open."""
    run = ledger.runs.start()
    row = lead(record, Email=f"{record}@example.com")
    ledger.records.upsert([row], run_id=run)
    ledger.records.keep_versions([row, row], run_id=run)  # two versions, both modified at T0
    ledger.decisions.record([decision(key, owner=owner, decided_at=clock.now, run_id=run)])
    done, open_ = owner_intent(record), owner_intent(record + "b")
    ledger.outbox.add_intents([done, open_], run_id=run)
    ledger.outbox.confirm({done.id: None})
    ledger.runs.finish(run, "ok")
    return run, done.id, open_.id


def test_prune_forgets_old_runs_confirmed_intents_and_history_and_keeps_what_cycles_need(
    ledger: Ledger, clock: Clock
) -> None:
    key = ledger.identity.new_key("person")
    old_run, _, old_open = a_cycle(ledger, clock, key, "ana", "00Q1")
    clock.advance(days=200)
    new_run, new_done, new_open = a_cycle(ledger, clock, key, "ben", "00Q2")

    pruned = ledger.retention.prune(clock.now - timedelta(days=180))

    assert (pruned.intents, pruned.history) == (1, 1)
    # Each record keeps its version at the cut (where a backtest from then starts); the older one goes.
    assert (pruned.versions, ledger.records.count_versions()) == (2, 2)
    # The old run wrote an intent still open: the run stays while the intent does.
    assert pruned.runs == 0
    assert {i.id for i in ledger.outbox.intents()} == {old_open, new_done, new_open}
    assert [h.owner for h in ledger.decisions.history(key)] == ["ben"]
    assert ledger.decisions.get(key) is not None
    assert ledger.records.get("salesforce", "Lead", "00Q1") is not None
    assert ledger.outbox.last_write("salesforce", "Lead", "00Q1", "OwnerId") is not None
    assert {r.id for r in ledger.runs.recent(10)} == {old_run, new_run}

    ledger.outbox.fail({old_open: "410: gone"})
    with ledger.transaction():
        ledger.db.execute("DELETE FROM outbox WHERE id = ?", [old_open])
    assert ledger.retention.prune(clock.now - timedelta(days=180)).runs == 1
    assert [r.id for r in ledger.runs.recent(10)] == [new_run]
    # The record the old run last saw is kept; it only forgets which run saw it.
    assert ledger.records.get("salesforce", "Lead", "00Q1").seen_run is None  # type: ignore[union-attr]
    assert ledger.integrity_check() == "ok"
    assert ledger.retention.prune(clock.now - timedelta(days=180)).rows == 0


def test_prune_is_bounded_per_call_and_catches_up_over_calls(ledger: Ledger, clock: Clock) -> None:
    run = ledger.runs.start()
    stored = [owner_intent(f"00Q{i}") for i in range(7)]
    ledger.outbox.add_intents(stored, run_id=run)
    ledger.outbox.confirm({i.id: None for i in stored})
    clock.advance(days=365)
    cutoff = clock.now - timedelta(days=180)
    assert [ledger.retention.prune(cutoff, limit=3).intents for _ in range(4)] == [3, 3, 1, 0]


def test_pruned_space_goes_back_to_the_file_system(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path, clock=clock) as ledger:
        assert ledger.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        run = ledger.runs.start()
        big = {"OwnerId": "005JACK", "Description": "x" * 2000}
        intents = [owner_intent(f"00Q{i}") for i in range(2000)]
        stored = [replace(i, fields=big) for i in intents]
        ledger.outbox.add_intents(stored, run_id=run)
        ledger.outbox.confirm({i.id: None for i in stored})
        with ledger.transaction():
            ledger.db.execute("DELETE FROM writes")
        ledger.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = path.stat().st_size
        clock.advance(days=365)
        pruned = ledger.retention.prune(clock.now - timedelta(days=180), vacuum_pages=100_000)
        ledger.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert pruned.intents == 2000 and pruned.pages > 0
        assert path.stat().st_size < before / 2


EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
ENV = {"SF_CONSUMER_KEY": "ck", "SF_PRIVATE_KEY": "-----BEGIN KEY-----", "HUBSPOT_ACCESS_TOKEN": "pat"}


@pytest.mark.parametrize(
    ("line", "keep"), [("", 180), ("keep_days = 30", 30), ("keep_days = 0", 0)], ids=["default", "30", "off"]
)
def test_keep_days_is_read_from_the_ledger_section(tmp_path: Path, line: str, keep: int) -> None:
    path = tmp_path / "config.toml"
    path.write_text(EXAMPLE.read_text().replace("keep_days = 180", line))
    assert load_config(path, environ=ENV).ledger.keep_days == keep


def test_a_negative_keep_days_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(EXAMPLE.read_text().replace("keep_days = 180", "keep_days = -1"))
    with pytest.raises(ConfigError, match="keep_days"):
        load_config(path, environ=ENV)
