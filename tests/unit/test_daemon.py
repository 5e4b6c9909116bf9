"""The daemon's scheduling, stopping and reloading, driven in-process with a small runner of our own cycle.

The runner here stands in for ``syncd.cycle`` (not for Salesforce or HubSpot): it records what the daemon
asks of it, can be made to take as long as a test wants (a gate), and honours the stop event between
"batches" as the real cycle must. Waits are on conditions with generous failsafe timeouts; nothing asserts
on how long anything took.
"""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent

from syncd.daemon import EXIT_OK, EXIT_STOP_TIMEOUT, Daemon, DaemonSettings, rules_fingerprint
from syncd.errors import ConfigError, MappingError, RetriableError
from syncd.metrics import CycleSummary

WAIT = 10.0  # failsafe only: a healthy run satisfies every wait in milliseconds


def load_toy_rules(directory: Path) -> dict[str, Any]:
    """A tiny rules loader with the real one's contract: a value per file, or MappingError with problems."""
    problems: list[str] = []
    rules: dict[str, Any] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        if not isinstance(data.get("version"), int):
            problems.append(f"{path.name}: version: must be an integer")
        rules[path.stem] = data
    if problems:
        raise MappingError(f"{len(problems)} problem(s) in {directory}", problems)
    return rules


class Loader:
    """Counts its calls, so a test can tell a reload attempt from none."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return load_toy_rules(self.directory)


class FakeRunner:
    """Records cycles and roster refreshes; a cycle waits on ``gate`` (when given) in stop-aware batches."""

    def __init__(self, *, gate: threading.Event | None = None, stop_aware: bool = True) -> None:
        self._cond = threading.Condition()
        self.gate = gate
        self.stop_aware = stop_aware
        self.events: list[str] = []
        self.rules_seen: list[Any] = []
        self.roster_refreshes = 0
        self.active = 0
        self.max_active = 0
        self.interrupted = 0
        self.closed = False
        self.fail_with: BaseException | None = None

    def _begin(self, what: str) -> None:
        with self._cond:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.events.append(what)
            self._cond.notify_all()

    def _end(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def run_cycle(self, rules: Any, *, stop: threading.Event) -> CycleSummary:
        self._begin("cycle")
        try:
            with self._cond:
                self.rules_seen.append(rules)
                self._cond.notify_all()
            if self.gate is not None:
                while not self.gate.wait(0.005):
                    if self.stop_aware and stop.is_set():
                        with self._cond:
                            self.interrupted += 1
                        return CycleSummary(interrupted=True)
            if self.fail_with is not None:
                raise self.fail_with
            return CycleSummary(
                pulled={"salesforce": 2, "hubspot": 3},
                decided=4,
                pushed={"salesforce": 1, "hubspot": 2},
                created={"salesforce": 1},
                api_calls={"salesforce": 5, "hubspot": 7},
                rate_limited={"hubspot": 1},
                budget_used={"salesforce": 0.25, "hubspot": 0.5},
                quarantined=2,
                handoffs=1,
                overrides=1,
                reachable={"salesforce": True, "hubspot": True},
            )
        finally:
            self._end()

    def refresh_roster(self) -> None:
        self._begin("roster")
        with self._cond:
            self.roster_refreshes += 1
        self._end()

    def close(self) -> None:
        self.closed = True

    def wait_for(self, predicate: Callable[[], bool]) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, WAIT)


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "mappings"
    directory.mkdir()
    (directory / "rules.toml").write_text("version = 1\n")
    return directory


@pytest.fixture
def make_daemon(tmp_path: Path, rules_dir: Path) -> Iterator[Callable[..., tuple[Daemon[Any], FakeRunner]]]:
    made: list[tuple[Daemon[Any], FakeRunner]] = []

    def make(runner: FakeRunner | None = None, **overrides: Any) -> tuple[Daemon[Any], FakeRunner]:
        options: dict[str, Any] = {
            "ledger_path": tmp_path / "ledger.sqlite",
            "watch_paths": (rules_dir,),
            "interval_seconds": 3600.0,
            "roster_interval_seconds": 3600.0,
            "health_port": None,
            "reload_poll_seconds": 0.0,
            "shutdown_timeout_seconds": WAIT,
        }
        options.update(overrides)
        runner = runner if runner is not None else FakeRunner()
        daemon: Daemon[Any] = Daemon(DaemonSettings(**options), lambda: runner, Loader(rules_dir))
        made.append((daemon, runner))
        return daemon, runner

    yield make
    for daemon, runner in made:
        daemon.request_stop(force=True)
        if runner.gate is not None:
            runner.gate.set()
        daemon.shutdown()


def serve_in_thread(daemon: Daemon[Any]) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon.serve(install_signals=False)), daemon=True)
    thread.start()
    return thread, result


def sample(daemon: Daemon[Any], name: str, **labels: str) -> float:
    value = daemon.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


# ---- scheduling ----------------------------------------------------------------------------------


def test_cycles_run_on_the_interval_after_a_first_roster_refresh(make_daemon: Callable[..., Any]) -> None:
    daemon, runner = make_daemon(interval_seconds=0.02)
    daemon.start()
    assert runner.wait_for(lambda: runner.events.count("cycle") >= 3)
    assert runner.events[0] == "roster"
    assert runner.rules_seen[0] == {"rules": {"version": 1}}
    assert sample(daemon, "syncd_cycles_total", outcome="ok") >= 3
    assert sample(daemon, "syncd_roster_refreshes_total", outcome="ok") >= 1


def test_cycles_never_overlap_when_a_cycle_outlasts_the_interval(make_daemon: Callable[..., Any]) -> None:
    gate = threading.Event()
    daemon, runner = make_daemon(FakeRunner(gate=gate), interval_seconds=0.01)
    skipped = threading.Semaphore(0)

    def on_skip(event: JobEvent) -> None:
        if event.job_id == "cycle":
            skipped.release()

    daemon.start()
    assert daemon.scheduler is not None
    daemon.scheduler.add_listener(on_skip, EVENT_JOB_MAX_INSTANCES)
    assert runner.wait_for(lambda: runner.events.count("cycle") == 1)
    # Ticks came due while the first cycle was still running, and each was refused, not run beside it.
    for _ in range(3):
        assert skipped.acquire(timeout=WAIT)
    assert runner.events.count("cycle") == 1
    gate.set()
    assert runner.wait_for(lambda: runner.events.count("cycle") >= 4)
    assert runner.max_active == 1


def test_roster_refresh_runs_on_its_own_interval_never_beside_a_cycle(
    make_daemon: Callable[..., Any],
) -> None:
    gate = threading.Event()
    daemon, runner = make_daemon(FakeRunner(gate=gate), roster_interval_seconds=0.01)
    daemon.start()
    assert runner.wait_for(lambda: runner.events.count("cycle") == 1)
    roster_before = runner.roster_refreshes
    gate.set()
    assert runner.wait_for(lambda: runner.roster_refreshes >= roster_before + 3)
    assert runner.events.count("cycle") == 1  # the cycle interval is an hour: the roster kept its own pace
    assert runner.max_active == 1


def test_a_failed_cycle_is_recorded_and_the_next_one_still_runs(make_daemon: Callable[..., Any]) -> None:
    runner = FakeRunner()
    runner.fail_with = RetriableError("connection refused", system="hubspot")
    daemon, _ = make_daemon(runner, interval_seconds=0.02)
    daemon.start()
    assert runner.wait_for(lambda: runner.events.count("cycle") >= 1)
    assert runner.wait_for(lambda: sample(daemon, "syncd_cycles_total", outcome="failed") >= 1)
    report = daemon.health.report()
    assert report.status == 503
    assert report.body["systems"]["hubspot"]["reachable"] is False
    assert report.body["last_cycle"]["error"] == "connection refused"
    runner.fail_with = None
    assert runner.wait_for(lambda: sample(daemon, "syncd_cycles_total", outcome="ok") >= 1)
    assert daemon.health.report().status == 200


def test_a_cycle_summary_reaches_the_metrics(make_daemon: Callable[..., Any]) -> None:
    daemon, runner = make_daemon()
    daemon.start()
    assert runner.wait_for(lambda: sample(daemon, "syncd_cycles_total", outcome="ok") == 1)
    assert sample(daemon, "syncd_records_pulled_total", system="hubspot") == 3
    assert sample(daemon, "syncd_records_pushed_total", system="hubspot") == 2
    assert sample(daemon, "syncd_records_created_total", system="salesforce") == 1
    assert sample(daemon, "syncd_records_decided_total") == 4
    assert sample(daemon, "syncd_api_calls_total", system="salesforce") == 5
    assert sample(daemon, "syncd_api_rate_limited_total", system="hubspot") == 1
    assert sample(daemon, "syncd_api_budget_used_ratio", system="hubspot") == 0.5
    assert sample(daemon, "syncd_quarantine_records") == 2
    assert sample(daemon, "syncd_handoffs_total") == 1
    assert sample(daemon, "syncd_overrides_total") == 1
    assert sample(daemon, "syncd_cycle_duration_seconds_count") == 1


def test_each_cycle_logs_one_summary_line(
    make_daemon: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd")
    daemon, runner = make_daemon()
    daemon.start()
    assert runner.wait_for(lambda: sample(daemon, "syncd_cycles_total", outcome="ok") == 1)
    # The metrics are counted just before the line is logged, in the scheduler's thread: wait for it.
    deadline = time.monotonic() + WAIT
    while (
        not any(getattr(r, "event", None) == "cycle" for r in caplog.records) and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    cycle_lines = [r for r in caplog.records if getattr(r, "event", None) == "cycle"]
    assert len(cycle_lines) == 1
    line = cycle_lines[0]
    assert line.getMessage().startswith("cycle 1 ok in ")
    assert "pulled hs=3 sf=2" in line.getMessage()
    assert line.__dict__["summary"]["pushed"] == {"salesforce": 1, "hubspot": 2}


# ---- stopping ------------------------------------------------------------------------------------


def test_stop_lets_the_running_cycle_finish_its_batch_and_exits_0(make_daemon: Callable[..., Any]) -> None:
    gate = threading.Event()
    daemon, runner = make_daemon(FakeRunner(gate=gate), interval_seconds=0.01)
    daemon.start()
    thread, result = serve_in_thread(daemon)
    assert runner.wait_for(lambda: runner.events.count("cycle") == 1)
    daemon.request_stop()
    thread.join(WAIT)
    assert result == [EXIT_OK]
    assert runner.interrupted == 1
    assert runner.closed
    assert runner.events.count("cycle") == 1
    assert sample(daemon, "syncd_cycles_total", outcome="interrupted") == 1
    assert daemon.scheduler is None


def test_no_job_starts_once_stop_is_set(make_daemon: Callable[..., Any]) -> None:
    daemon, runner = make_daemon(interval_seconds=0.01, roster_interval_seconds=0.01)
    daemon.start()
    assert runner.wait_for(lambda: runner.events.count("cycle") >= 2)
    daemon.request_stop()
    assert daemon.shutdown() == EXIT_OK
    seen = list(runner.events)
    # Scheduler threads that were already past their tick must still see the stop and do nothing.
    daemon._cycle_job()
    daemon._roster_job()
    assert runner.events == seen


def test_stop_is_bounded_when_a_cycle_ignores_it(make_daemon: Callable[..., Any]) -> None:
    gate = threading.Event()
    daemon, runner = make_daemon(FakeRunner(gate=gate, stop_aware=False), shutdown_timeout_seconds=0.05)
    daemon.start()
    assert runner.wait_for(lambda: runner.events.count("cycle") == 1)
    daemon.request_stop()
    assert daemon.shutdown() == EXIT_STOP_TIMEOUT
    assert daemon.stuck
    assert not runner.closed  # never close the ledger under a cycle that is still writing
    gate.set()


def test_a_second_stop_request_stops_waiting_at_once(make_daemon: Callable[..., Any]) -> None:
    gate = threading.Event()
    daemon, runner = make_daemon(FakeRunner(gate=gate, stop_aware=False), shutdown_timeout_seconds=3600.0)
    daemon.start()
    thread, result = serve_in_thread(daemon)
    assert runner.wait_for(lambda: runner.events.count("cycle") == 1)
    daemon.request_stop()
    daemon.request_stop(force=True)
    thread.join(WAIT)
    assert result == [EXIT_STOP_TIMEOUT]
    gate.set()


# ---- reloading -----------------------------------------------------------------------------------


def test_a_broken_edit_is_refused_and_the_running_set_stays_live(
    make_daemon: Callable[..., Any], rules_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd")
    daemon, runner = make_daemon()
    daemon.start()
    live = daemon.rules
    (rules_dir / "rules.toml").write_text('version = "two"\n')
    assert daemon.check_rules_files() is False  # first sighting: wait for the files to settle
    assert daemon.check_rules_files() is False  # settled, loaded, refused
    assert daemon.rules is live
    assert "rules.toml: version: must be an integer" in caplog.text
    assert "the running rules stay live" in caplog.text
    assert sample(daemon, "syncd_rules_reloads_total", outcome="refused") == 1
    assert daemon.health.report().body["rules"]["last_reload_error"] == f"1 problem(s) in {rules_dir}"
    assert daemon.run_cycle_now() is not None
    assert runner.rules_seen[-1] == {"rules": {"version": 1}}


def test_a_good_edit_after_a_broken_one_is_picked_up(
    make_daemon: Callable[..., Any], rules_dir: Path
) -> None:
    daemon, runner = make_daemon()
    daemon.start()
    (rules_dir / "rules.toml").write_text("version = [\n")
    daemon.check_rules_files()
    assert daemon.check_rules_files() is False
    (rules_dir / "rules.toml").write_text("version = 2\n")
    daemon.check_rules_files()
    assert daemon.check_rules_files() is True
    assert daemon.rules == {"rules": {"version": 2}}
    assert sample(daemon, "syncd_rules_reloads_total", outcome="ok") == 1  # the load at start is no reload
    assert sample(daemon, "syncd_rules_reloads_total", outcome="refused") == 1
    assert daemon.health.report().body["rules"]["last_reload_error"] is None
    daemon.run_cycle_now()
    assert runner.rules_seen[-1] == {"rules": {"version": 2}}


def test_a_refused_set_is_not_reloaded_again_until_it_changes(
    make_daemon: Callable[..., Any], rules_dir: Path
) -> None:
    daemon, _ = make_daemon()
    daemon.start()
    loader = daemon._loader
    assert isinstance(loader, Loader)
    (rules_dir / "rules.toml").write_text("version = 'x'\n")
    daemon.check_rules_files()
    daemon.check_rules_files()
    calls = loader.calls
    for _ in range(5):
        assert daemon.check_rules_files() is False
    assert loader.calls == calls


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(".rules.toml.swp", id="vim-swap"),
        pytest.param("rules.toml~", id="backup"),
        pytest.param("#rules.toml#", id="emacs-autosave"),
    ],
)
def test_editor_files_do_not_trigger_a_reload(rules_dir: Path, name: str) -> None:
    before = rules_fingerprint([rules_dir])
    (rules_dir / name).write_text("half typed")
    assert rules_fingerprint([rules_dir]) == before
    (rules_dir / "routing.toml").write_text("version = 1\n")
    assert rules_fingerprint([rules_dir]) != before


def test_the_main_loop_polls_the_files_and_reloads(make_daemon: Callable[..., Any], rules_dir: Path) -> None:
    daemon, runner = make_daemon(interval_seconds=0.01, reload_poll_seconds=0.01)
    daemon.start()
    serve_in_thread(daemon)
    assert runner.wait_for(lambda: len(runner.rules_seen) >= 1)
    (rules_dir / "rules.toml").write_text("version = 7\n")
    assert runner.wait_for(lambda: runner.rules_seen[-1] == {"rules": {"version": 7}})


def test_a_reload_request_reloads_even_with_polling_off(
    make_daemon: Callable[..., Any], rules_dir: Path
) -> None:
    daemon, runner = make_daemon(interval_seconds=0.01, reload_poll_seconds=0.0)
    daemon.start()
    serve_in_thread(daemon)
    (rules_dir / "rules.toml").write_text("version = 3\n")
    daemon.request_reload()
    assert runner.wait_for(
        lambda: bool(runner.rules_seen) and runner.rules_seen[-1] == {"rules": {"version": 3}}
    )


def test_an_invalid_set_at_start_is_refused_with_its_problems(
    make_daemon: Callable[..., Any], rules_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (rules_dir / "routing.toml").write_text("rules = []\n")
    daemon, runner = make_daemon()
    with pytest.raises(MappingError) as raised:
        daemon.start()
    assert raised.value.problems == ["routing.toml: version: must be an integer"]
    assert "routing.toml: version: must be an integer" in caplog.text
    assert daemon.scheduler is None
    assert runner.events == []


# ---- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"interval_seconds": 0}, "daemon.interval_seconds must be greater than 0", id="interval"
        ),
        pytest.param({"roster_interval_seconds": -1}, "daemon.roster_interval_seconds", id="roster"),
        pytest.param({"reload_poll_seconds": -1}, "daemon.reload_poll_seconds", id="poll"),
        pytest.param({"health_port": 70000}, "daemon.health_port must be between", id="port"),
        pytest.param({"shutdown_timeout_seconds": 0}, "daemon.shutdown_timeout_seconds", id="timeout"),
        pytest.param({"health_max_age_seconds": 0}, "daemon.health_max_age_seconds", id="max-age"),
    ],
)
def test_settings_refuse_values_that_cannot_work(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DaemonSettings(ledger_path=tmp_path / "l.sqlite", **overrides)


def test_health_max_age_defaults_to_three_intervals_and_a_minute(tmp_path: Path) -> None:
    assert DaemonSettings(ledger_path=tmp_path / "l", interval_seconds=60).max_cycle_age == 240.0
    assert DaemonSettings(ledger_path=tmp_path / "l", health_max_age_seconds=5).max_cycle_age == 5.0
