"""The daemon's side of progress: a runner that reports stages is handed the daemon's Progress; the log gets a
line every few seconds of a long cycle; /healthz, /metrics and the status page show the running stage."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from syncd.daemon import Daemon, DaemonSettings
from syncd.metrics import CycleSummary
from syncd.progress import Progress

WAIT = 30.0


class Tick:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class ReportingRunner:
    """A cycle that reports a stage, then waits (so the test can look at it mid-cycle)."""

    def __init__(self, tick: Tick) -> None:
        self.tick = tick
        self.reported = threading.Event()
        self.release = threading.Event()

    def run_cycle(self, rules: Any, *, stop: threading.Event, progress: Progress) -> CycleSummary:
        progress.stage("pull", total=1_000)
        progress.advance(100)
        self.tick.now += 12.0
        progress.advance(100)
        self.reported.set()
        self.release.wait(WAIT)
        return CycleSummary()

    def refresh_roster(self) -> None:
        return None


def test_a_running_cycle_shows_in_the_log_healthz_metrics_and_page(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules = tmp_path / "mappings"
    rules.mkdir()
    tick = Tick()
    runner = ReportingRunner(tick)
    settings = DaemonSettings(
        ledger_path=tmp_path / "ledger.db",
        watch_paths=(rules,),
        interval_seconds=3600,
        roster_interval_seconds=3600,
        health_port=None,
        reload_poll_seconds=0,
        progress_log_seconds=10,
    )
    daemon: Daemon[Any] = Daemon(settings, lambda: runner, lambda: {"rules": 1}, monotonic=tick)
    caplog.set_level(logging.INFO, logger="syncd.daemon")
    daemon.start()
    try:
        assert runner.reported.wait(WAIT)
        progress = daemon.health.report().body["progress"]
        assert progress["running"] and progress["stage"] == "pull"
        assert (progress["done"], progress["total"]) == (200, 1_000)
        registry = daemon.metrics.registry
        assert registry.get_sample_value("syncd_progress_done", {"stage": "pull"}) == 200
        assert registry.get_sample_value("syncd_progress_total", {"stage": "pull"}) == 1_000
        assert "pull: 200 of 1,000 (20%)" in daemon.status_page().html()
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cycle progress")]
        assert lines == ["cycle progress: pull: 200 of 1,000 (20%), 17/s, about 48.0 s left"]
    finally:
        runner.release.set()
        daemon.request_stop()
        daemon.shutdown()
    assert not daemon.health.report().body["progress"]["running"]
