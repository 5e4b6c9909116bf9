"""/healthz and /metrics over real HTTP on 127.0.0.1, with the clock as a parameter."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.health import CONTENT_TYPE_METRICS, HealthServer, HealthState, ledger_writable
from syncd.metrics import METRIC_NAMES, CycleSummary, Metrics
from syncd.progress import Progress

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger_ok() -> list[bool]:
    return [True]


@pytest.fixture
def state(clock: Clock, ledger_ok: list[bool]) -> HealthState:
    return HealthState(max_age_seconds=240, ledger_check=lambda: ledger_ok[0], clock=clock)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def server(state: HealthState, metrics: Metrics) -> Iterator[HealthServer]:
    srv = HealthServer(state, metrics, host="127.0.0.1", port=0).start()
    yield srv
    srv.stop()


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def healthz(server: HealthServer) -> tuple[int, dict[str, Any]]:
    status, content_type, body = get(server.url + "/healthz")
    assert content_type == "application/json"
    return status, json.loads(body)


def test_healthy_after_a_good_cycle(server: HealthServer, state: HealthState, clock: Clock) -> None:
    state.cycle_started()
    clock.advance(3)
    state.cycle_ended(outcome="ok", reachable={"salesforce": True, "hubspot": True})
    clock.advance(10)
    status, body = healthz(server)
    assert status == 200
    assert body["status"] == "ok"
    assert body["problems"] == []
    assert body["last_good_cycle_age_seconds"] == 10.0
    assert body["last_good_cycle_at"] == "2024-05-01T12:00:03Z"
    assert body["ledger_writable"] is True
    assert body["systems"] == {"salesforce": {"reachable": True}, "hubspot": {"reachable": True}}
    assert body["cycle_running_seconds"] is None


def test_starting_up_is_healthy_until_the_age_limit_passes(server: HealthServer, clock: Clock) -> None:
    status, body = healthz(server)
    assert status == 200
    assert body["last_good_cycle_age_seconds"] is None
    clock.advance(241)
    status, body = healthz(server)
    assert status == 503
    assert body["problems"] == ["no good cycle since start 241s ago (limit 240s)"]


Scenario = Callable[[HealthState, Clock, list[bool]], None]


def _stale(state: HealthState, clock: Clock, ledger_ok: list[bool]) -> None:
    state.cycle_ended(outcome="ok")
    clock.advance(241)


def _ledger_read_only(state: HealthState, clock: Clock, ledger_ok: list[bool]) -> None:
    state.cycle_ended(outcome="ok")
    ledger_ok[0] = False


def _hubspot_down(state: HealthState, clock: Clock, ledger_ok: list[bool]) -> None:
    state.cycle_ended(outcome="ok")
    state.cycle_ended(outcome="failed", reachable={"hubspot": False}, error="connection refused")


def _failing_since_long(state: HealthState, clock: Clock, ledger_ok: list[bool]) -> None:
    state.cycle_ended(outcome="ok")
    for _ in range(5):
        clock.advance(60)
        state.cycle_ended(outcome="failed", error="INVALID_SESSION_ID")


@pytest.mark.parametrize(
    ("scenario", "problem"),
    [
        pytest.param(_stale, "no good cycle for 241s (limit 240s)", id="stale"),
        pytest.param(_ledger_read_only, "ledger is not writable", id="ledger-read-only"),
        pytest.param(_hubspot_down, "hubspot unreachable", id="hubspot-unreachable"),
        pytest.param(_failing_since_long, "no good cycle for 300s (limit 240s)", id="failing-cycles"),
    ],
)
def test_unhealthy_answers_503_naming_the_problem(
    server: HealthServer,
    state: HealthState,
    clock: Clock,
    ledger_ok: list[bool],
    scenario: Scenario,
    problem: str,
) -> None:
    scenario(state, clock, ledger_ok)
    status, body = healthz(server)
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["problems"] == [problem]


def test_a_system_found_reachable_again_clears_the_problem(server: HealthServer, state: HealthState) -> None:
    state.cycle_ended(outcome="failed", reachable={"salesforce": False})
    assert healthz(server)[0] == 503
    state.cycle_ended(outcome="ok", reachable={"salesforce": True})
    assert healthz(server)[0] == 200


def test_a_running_cycle_is_shown(server: HealthServer, state: HealthState, clock: Clock) -> None:
    state.cycle_started()
    clock.advance(42)
    assert healthz(server)[1]["cycle_running_seconds"] == 42.0


def test_metrics_expose_every_documented_name(server: HealthServer, metrics: Metrics) -> None:
    summary = CycleSummary(
        pulled={"salesforce": 10, "hubspot": 20},
        decided=25,
        pushed={"salesforce": 3},
        created={"salesforce": 2},
        failed={"hubspot": 1},
        api_calls={"salesforce": 4, "hubspot": 6},
        rate_limited={"hubspot": 2},
        budget_used={"salesforce": 0.01, "hubspot": 0.02},
        quarantined=7,
        handoffs=2,
        overrides=1,
    )
    metrics.observe_cycle(summary, outcome="ok", duration=1.5, ended_at=T0.timestamp())
    metrics.observe_roster_refresh(ok=True)
    metrics.observe_reload(ok=True, loaded_at=T0.timestamp())
    running = Progress()
    running.stage("pull", total=10)
    running.advance(3)
    metrics.progress = running
    status, content_type, body = get(server.url + "/metrics")
    assert status == 200
    assert content_type == CONTENT_TYPE_METRICS
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    names = {name for name, _ in samples}
    missing = [n for n in METRIC_NAMES if n not in names and f"{n}_count" not in names]
    assert missing == []
    assert samples[("syncd_records_pulled_total", (("system", "hubspot"),))] == 20
    assert samples[("syncd_progress_done", (("stage", "pull"),))] == 3
    assert samples[("syncd_progress_total", (("stage", "pull"),))] == 10
    assert samples[("syncd_records_created_total", (("system", "salesforce"),))] == 2
    assert samples[("syncd_records_created_total", (("system", "hubspot"),))] == 0
    assert samples[("syncd_api_rate_limited_total", (("system", "hubspot"),))] == 2
    assert samples[("syncd_api_budget_used_ratio", (("system", "hubspot"),))] == 0.02
    assert samples[("syncd_quarantine_records", ())] == 7
    assert samples[("syncd_cycles_total", (("outcome", "ok"),))] == 1
    assert samples[("syncd_cycle_duration_seconds_sum", ())] == 1.5
    assert samples[("syncd_last_good_cycle_timestamp_seconds", ())] == T0.timestamp()


def test_metrics_before_any_cycle_show_zeros_not_gaps(server: HealthServer) -> None:
    body = get(server.url + "/metrics")[2].decode()
    assert 'syncd_cycles_total{outcome="failed"} 0.0' in body
    assert 'syncd_api_calls_total{system="salesforce"} 0.0' in body


def test_an_unknown_path_is_404(server: HealthServer) -> None:
    assert get(server.url + "/")[0] == 404


def test_two_metric_sets_in_one_process_do_not_share_counters() -> None:
    a, b = Metrics(), Metrics()
    a.observe_cycle(None, outcome="failed", duration=1, ended_at=0)
    assert a.registry.get_sample_value("syncd_cycles_total", {"outcome": "failed"}) == 1
    assert b.registry.get_sample_value("syncd_cycles_total", {"outcome": "failed"}) == 0


@pytest.mark.parametrize(
    ("make_path", "expected"),
    [
        pytest.param(lambda tmp: tmp / "ledger.sqlite", True, id="new-ledger-in-writable-dir"),
        pytest.param(lambda tmp: _existing(tmp / "ledger.sqlite"), True, id="existing-ledger"),
        pytest.param(lambda tmp: tmp / "missing-dir" / "ledger.sqlite", False, id="directory-missing"),
        pytest.param(lambda tmp: _existing(tmp / "file") / "ledger.sqlite", False, id="parent-is-a-file"),
    ],
)
def test_ledger_writable_check(tmp_path: Path, make_path: Callable[[Path], Path], expected: bool) -> None:
    assert ledger_writable(make_path(tmp_path))() is expected


def _existing(path: Path) -> Path:
    path.write_bytes(b"")
    return path
