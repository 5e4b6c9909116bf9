"""Honest health: a failure that will not pass by itself turns /healthz 503 at once; a passing one does not;
a health address off loopback is warned about."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncd.daemon import Daemon, DaemonSettings
from syncd.errors import (
    AuthError,
    BudgetExhausted,
    ConfigError,
    FatalConnectorError,
    RetriableError,
    SyncdError,
)
from syncd.health import HealthState, lasting_failure
from syncd.metrics import CycleSummary

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("error", "lasting"),
    [
        pytest.param(AuthError("refused", system="hubspot", status=401), "authentication", id="auth"),
        pytest.param(FatalConnectorError("no scope", system="hubspot", status=403), "permissions", id="403"),
        pytest.param(
            FatalConnectorError("TLS handshake failed", system="salesforce", code="TLS"), "tls", id="tls"
        ),
        pytest.param(
            BudgetExhausted("budget reached", system="hubspot", code="BUDGET"), "budget", id="budget"
        ),
        pytest.param(
            RetriableError("limit", system="salesforce", status=403, code="REQUEST_LIMIT_EXCEEDED"),
            "budget",
            id="org-allowance",
        ),
        pytest.param(
            FatalConnectorError("bad request", system="hubspot", status=400), "refused request", id="400"
        ),
        pytest.param(ConfigError("config.toml: bad"), "configuration", id="config"),
        pytest.param(RetriableError("429", system="hubspot", status=429), None, id="429"),
        pytest.param(RetriableError("timed out", system="hubspot", code="TIMEOUT"), None, id="timeout"),
        pytest.param(SyncdError("ledger busy"), None, id="other"),
        pytest.param(ValueError("a bug"), None, id="bug"),
    ],
)
def test_failures_are_classified_by_the_exception_tree(error: Exception, lasting: str | None) -> None:
    assert lasting_failure(error) == lasting


def state() -> HealthState:
    return HealthState(max_age_seconds=240, ledger_check=lambda: True, clock=lambda: T0)


def test_a_lasting_failure_is_unhealthy_at_once_and_a_good_cycle_clears_it() -> None:
    health = state()
    health.cycle_ended(outcome="ok")
    health.cycle_ended(outcome="failed", error="HubSpot rejected the access token", lasting="authentication")
    report = health.report()
    assert report.status == 503
    assert report.body["problems"] == [
        "the last cycle failed for a reason that will not pass by itself (authentication): "
        "HubSpot rejected the access token"
    ]
    assert report.body["last_cycle"]["lasting"] == "authentication"
    health.cycle_ended(outcome="ok")
    assert health.report().status == 200


def test_a_passing_failure_counts_only_against_the_age_of_the_last_good_cycle() -> None:
    health = state()
    health.cycle_ended(outcome="ok")
    health.cycle_ended(outcome="failed", error="HubSpot answered 503")
    report = health.report()
    assert report.status == 200
    assert report.body["last_cycle"] == {
        "at": "2024-05-01T12:00:00Z",
        "outcome": "failed",
        "error": "HubSpot answered 503",
        "lasting": None,
    }


class Runner:
    def run_cycle(self, rules: Any, *, stop: threading.Event) -> CycleSummary:
        return CycleSummary()

    def refresh_roster(self) -> None:
        return None


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("0.0.0.0", True), ("localhost", False)])
def test_a_health_address_off_loopback_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, host: str, warned: bool
) -> None:
    settings = DaemonSettings(
        ledger_path=tmp_path / "syncd.db", health_host=host, health_port=0, interval_seconds=3600.0
    )
    daemon: Daemon[str] = Daemon(settings, Runner, lambda: "rules")
    with caplog.at_level(logging.WARNING, logger="syncd.daemon"):
        try:
            daemon.start()
        finally:
            daemon.request_stop()
            daemon.shutdown()
    lines = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "health_not_loopback"]
    assert bool(lines) is warned
    if warned:
        assert lines[0].startswith(f"the health endpoint listens on {host}, which is not loopback")
