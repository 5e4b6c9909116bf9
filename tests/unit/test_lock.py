"""The ledger lock, held by a real second process: refused with the holder's pid, freed when it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.daemon import DaemonSettings, run_daemon
from syncd.errors import LockedError
from syncd.lock import LedgerLock, holder_pid, lock_path_for
from syncd.metrics import CycleSummary

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from syncd.lock import LedgerLock

    lock = LedgerLock(Path(sys.argv[1])).acquire()
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes our stdin (or kills us)
    lock.release()
    """
)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite"


@pytest.fixture
def holder(ledger: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the ledger's lock."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ledger)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_a_second_holder_is_refused_with_the_first_ones_pid(
    ledger: Path, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockedError) as refused:
        LedgerLock(ledger).acquire()
    message = str(refused.value)
    assert f"pid {holder.pid}" in message
    assert str(ledger) in message
    assert "\n" not in message
    assert holder_pid(ledger) == holder.pid


def test_the_lock_is_free_again_once_the_holder_releases_it(
    ledger: Path, holder: subprocess.Popen[str]
) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(10) == 0
    assert holder_pid(ledger) is None
    with LedgerLock(ledger) as lock:
        assert lock.held
        assert holder_pid(ledger) == os.getpid()


def test_a_killed_holder_leaves_no_stale_lock(ledger: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    assert lock_path_for(ledger).read_text().strip() == str(holder.pid)  # its pid is still written ...
    assert holder_pid(ledger) is None  # ... but nobody holds the lock
    with LedgerLock(ledger) as lock:
        assert lock.held


def test_a_holder_in_this_process_refuses_a_child(ledger: Path) -> None:
    with LedgerLock(ledger):
        child = subprocess.run(
            [sys.executable, "-c", HOLDER, str(ledger)], input="", capture_output=True, text=True, timeout=30
        )
    assert child.returncode != 0
    assert f"(pid {os.getpid()})" in child.stderr
    assert "LockedError" in child.stderr


def test_release_is_idempotent_and_the_lock_can_be_taken_again(ledger: Path) -> None:
    lock = LedgerLock(ledger).acquire()
    lock.release()
    lock.release()
    assert not lock.held
    assert lock.acquire() is lock
    lock.release()


class NeverRunner:
    def run_cycle(self, rules: object, *, stop: object) -> CycleSummary:
        raise AssertionError("a refused daemon must not run a cycle")

    def refresh_roster(self) -> None:
        raise AssertionError("a refused daemon must not refresh the roster")


def test_run_daemon_refuses_to_start_on_a_ledger_another_process_holds(
    ledger: Path, holder: subprocess.Popen[str]
) -> None:
    loaded: list[bool] = []
    settings = DaemonSettings(ledger_path=ledger, health_port=None)
    with pytest.raises(LockedError, match=f"pid {holder.pid}"):
        run_daemon(settings, NeverRunner, lambda: loaded.append(True), install_signals=False)
    assert loaded == []
