"""The daemon as a real process: signals, a second instance, reloads, health and metrics, and its logs.

The child runs ``run_daemon`` with a small runner of our own cycle that writes what it does to an events
file; the test sends real SIGHUP and SIGTERM and reads the child's real stderr (JSON lines: it is a pipe).
``syncd run`` over the real cycle gets the same treatment in the end-to-end tests once the cycle exists.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.lock import LedgerLock
from syncd.metrics import METRIC_NAMES

WAIT = 30.0  # failsafe only

CHILD = textwrap.dedent(
    """
    import sys
    import time
    import tomllib
    from pathlib import Path

    from syncd.daemon import DaemonSettings, run_daemon
    from syncd.errors import MappingError, RetriableError, SyncdError
    from syncd.logs import setup_logging
    from syncd.metrics import CycleSummary

    SECRET = "sk-live-0123456789abcdef"
    rules_dir, ledger, events = (Path(arg) for arg in sys.argv[1:4])


    def emit(text):
        with events.open("a") as f:
            f.write(text + "\\n")


    def load():
        try:
            data = tomllib.loads((rules_dir / "rules.toml").read_text())
        except tomllib.TOMLDecodeError as exc:
            raise MappingError("1 problem in rules", [f"rules.toml: {exc}"]) from None
        if not isinstance(data.get("version"), int):
            raise MappingError("1 problem in rules", ["rules.toml: version: must be an integer"])
        return data["version"]


    class Runner:
        def __init__(self):
            self.cycles = 0

        def refresh_roster(self):
            emit("roster")

        def run_cycle(self, rules, *, stop):
            self.cycles += 1
            emit(f"cycle {self.cycles} rules {rules}")
            if self.cycles == 1:
                raise RetriableError(
                    f"POST https://x.example/q?access_token={SECRET} failed (Authorization: Bearer {SECRET})",
                    system="salesforce", status=503,
                )
            # Version 2 rules make a long cycle, so that SIGTERM surely lands in the middle of one.
            batches = 3 if rules == 1 else 100_000
            for batch in range(batches):
                if stop.is_set():
                    emit(f"interrupted after {batch}")
                    return CycleSummary(interrupted=True)
                emit(f"batch-start {batch}")
                time.sleep(0.02)  # one API call's worth of work, deaf to the stop event
                emit(f"batch-done {batch}")
            return CycleSummary(decided=batches, reachable={"salesforce": True, "hubspot": True})

        def close(self):
            emit("closed")


    setup_logging("INFO", secrets=[SECRET])
    settings = DaemonSettings(
        ledger_path=ledger, watch_paths=(rules_dir,), interval_seconds=0.05, roster_interval_seconds=3600,
        health_port=0, reload_poll_seconds=0, shutdown_timeout_seconds=20,
    )
    try:
        sys.exit(run_daemon(settings, Runner, load))
    except SyncdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    """
)


class Child:
    """A daemon process, its events file and its stderr lines (read as they come)."""

    def __init__(self, tmp_path: Path, rules_dir: Path, ledger: Path, name: str) -> None:
        self.events = tmp_path / f"{name}.events"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(rules_dir), str(ledger), str(self.events)],
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self._lines.append(line)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]

    def event_lines(self) -> list[str]:
        return self.events.read_text().splitlines() if self.events.exists() else []

    def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not predicate():
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited ({self.proc.returncode}) before {what}:\n{self.stderr}")
            if time.monotonic() > deadline:
                pytest.fail(f"gave up waiting for {what}:\n{self.stderr}")
            time.sleep(0.01)

    def finish(self) -> int:
        code = self.proc.wait(WAIT)
        self._reader.join(WAIT)
        return code


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "mappings"
    directory.mkdir()
    (directory / "rules.toml").write_text("version = 1\n")
    return directory


@pytest.fixture
def spawn(tmp_path: Path, rules_dir: Path) -> Iterator[Callable[[str], Child]]:
    children: list[Child] = []

    def make(name: str) -> Child:
        child = Child(tmp_path, rules_dir, tmp_path / "ledger.sqlite", name)
        children.append(child)
        return child

    yield make
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(WAIT)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_daemon_process_end_to_end(
    spawn: Callable[[str], Child], rules_dir: Path, tmp_path: Path
) -> None:
    daemon = spawn("first")
    daemon.wait_until(lambda: "cycle 3 rules 1" in daemon.event_lines(), "three cycles")
    events = daemon.event_lines()
    assert events[0] == "roster"
    assert events.count("roster") == 1  # the roster interval is an hour

    # A second daemon on the same ledger is refused, naming the first one's pid.
    second = spawn("second")
    assert second.finish() == 2
    assert f"is already in use by another syncd (pid {daemon.proc.pid})" in second.stderr
    assert not second.events.exists()

    # Health and metrics on the port the daemon logged.
    url = next(r["url"] for r in daemon.log_records() if r.get("event") == "health_endpoint")
    status, body = get(url + "/healthz")
    assert status == 200, body
    assert json.loads(body)["ledger_writable"] is True
    status, body = get(url + "/metrics")
    text = body.decode()
    assert status == 200
    assert [name for name in METRIC_NAMES if name not in text] == []

    # SIGHUP with a broken edit: refused, and the next cycles keep the running rules.
    (rules_dir / "rules.toml").write_text('version = "two"\n')
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_until(lambda: any(r.get("event") == "rules_refused" for r in daemon.log_records()), "refusal")
    refused_at = len(daemon.event_lines())
    daemon.wait_until(
        lambda: any(e.startswith("cycle ") for e in daemon.event_lines()[refused_at:]), "a cycle after it"
    )
    assert all(e.endswith("rules 1") for e in daemon.event_lines()[refused_at:] if e.startswith("cycle "))
    assert "rules.toml: version: must be an integer" in daemon.stderr

    # SIGHUP with a good edit: picked up by the next cycle, which (with version 2) runs until stopped.
    (rules_dir / "rules.toml").write_text("version = 2\n")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_until(lambda: any(e.endswith("rules 2") for e in daemon.event_lines()), "the new rules")
    mark = len(daemon.event_lines())
    daemon.wait_until(
        lambda: any(e.startswith("batch-start") for e in daemon.event_lines()[mark:]), "a batch"
    )

    # SIGTERM mid-cycle: the batch in flight finishes, the runner is closed, exit 0.
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.finish() == 0, daemon.stderr
    events = daemon.event_lines()
    assert events[-1] == "closed"
    assert events[-2].startswith("interrupted after ")
    assert len([e for e in events if e.startswith("batch-start")]) == len(
        [e for e in events if e.startswith("batch-done")]
    )
    records = daemon.log_records()
    assert any(r.get("event") == "stopping" and r.get("signal") == "SIGTERM" for r in records)
    assert records[-1]["message"] == "syncd stopped"

    # The first cycle failed with the secret in its error: the log shows the failure, never the secret.
    assert "sk-live-0123456789abcdef" not in daemon.stderr
    failure = next(r for r in records if r.get("outcome") == "failed")
    assert failure["message"].startswith("cycle 1 failed after ")
    assert "access_token=***" in failure["message"]

    # The ledger is free again.
    with LedgerLock(tmp_path / "ledger.sqlite") as lock:
        assert lock.held


def test_an_invalid_rule_set_at_start_is_refused(spawn: Callable[[str], Child], rules_dir: Path) -> None:
    (rules_dir / "rules.toml").write_text("version = [\n")
    daemon = spawn("broken")
    assert daemon.finish() == 2
    assert "cannot start: the mapping and rules files are invalid" in daemon.stderr
    assert not daemon.events.exists()
