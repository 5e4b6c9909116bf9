"""Crash safety with a real process killed by SIGKILL: the reopened ledger passes ``PRAGMA integrity_check``
and holds only whole transactions (records, intents, watermark and run counters of a batch, or none of them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.ledger import Ledger

BATCH = 200

# Each transaction stages one batch of records, writes one intent for it, advances the watermark to it and
# records it in the run's counters: four tables that must move together.
CHILD = """
import os, sys
from syncd.core.types import Intent, RecordRow
from syncd.ledger import Ledger

path, pause_at, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ledger = Ledger(path)
run = ledger.runs.start()
print("run", run, flush=True)
wal = path + "-wal"
k = 0
while True:
    size = int(sys.argv[4]) if k == pause_at else batch
    with ledger.transaction():
        if k == pause_at:
            # A tiny page cache forces SQLite to spill uncommitted pages into the WAL before COMMIT.
            ledger.db.execute("PRAGMA cache_size = 8")
            before = os.path.getsize(wal)
        ledger.records.upsert(
            (RecordRow("hubspot", "contacts", f"{k}-{i}", {"batch": k, "i": i, "pad": "x" * 300})
             for i in range(size)),
            run_id=run,
        )
        ledger.outbox.add_intents(
            [Intent("hubspot", "contacts", {"batch": k}, "crash test", record_id=f"{k}-0")], run_id=run
        )
        ledger.records.set_watermark("hubspot", "contacts", str(k), run_id=run)
        ledger.runs.update(run, {"batch": k})
        if k == pause_at:
            print("inside", before, os.path.getsize(wal), flush=True)
            sys.stdin.readline()
    print("committed", k, flush=True)
    k += 1
"""


def start_child(path: Path, pause_at: int = -1, paused_size: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(pause_at), str(BATCH), str(paused_size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        stderr = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"the child ended early (exit {proc.returncode}): {stderr}")
    return line.split()


def kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def assert_whole_transactions(path: Path, run: str, at_least: int) -> int:
    """Reopen after the kill; check integrity and that batches 0..last are all complete and nothing more."""
    with Ledger(path) as ledger:
        assert ledger.integrity_check() == "ok"
        sizes = {
            row["batch"]: row["n"]
            for row in ledger.db.query(
                "SELECT json_extract(data, '$.batch') AS batch, count(*) AS n FROM records GROUP BY batch"
            )
        }
        last = max(sizes)
        assert last >= at_least
        assert sizes == dict.fromkeys(range(last + 1), BATCH)
        intents = sorted(intent.fields["batch"] for intent in ledger.outbox.unfinished())
        assert intents == list(range(last + 1))
        assert ledger.records.watermark("hubspot", "contacts") == str(last)
        assert ledger.interrupted_runs == [run]
        killed = ledger.runs.get(run)
        assert killed is not None and killed.status == "interrupted" and killed.counters == {"batch": last}
        return last


@pytest.mark.parametrize("committed", [0, 3, 11], ids=lambda n: f"after-commit-{n}")
def test_sigkill_while_looping_leaves_only_whole_transactions(tmp_path: Path, committed: int) -> None:
    path = tmp_path / "ledger.db"
    proc = start_child(path)
    _, run = read_line(proc)
    while read_line(proc) != ["committed", str(committed)]:
        pass
    # The child goes straight into its next transaction: the kill lands at an arbitrary point of it.
    kill(proc)
    assert_whole_transactions(path, run, at_least=committed)


def test_sigkill_inside_a_transaction_whose_pages_reached_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    proc = start_child(path, pause_at=3, paused_size=5000)
    _, run = read_line(proc)
    for k in range(3):
        assert read_line(proc) == ["committed", str(k)]
    word, before, during = read_line(proc)
    assert word == "inside"
    # The open transaction wrote far more than the earlier ones into the WAL: uncommitted frames on disk.
    assert int(during) > int(before) + 500_000
    kill(proc)
    assert assert_whole_transactions(path, run, at_least=2) == 2
