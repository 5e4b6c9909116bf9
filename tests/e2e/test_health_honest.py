"""Honest health against the sandbox: /healthz turns 503 at the first cycle that fails for a lasting
reason (a revoked token), the webhook hears of it, and the 429 counters count exactly the 429s the sandbox
sent.

The daemon runs in this process with the real cycle (``SyncCycle``) against the sandbox over HTTPS; its
first cycle is scheduled at start, later ones are run by the test with ``run_cycle_now`` (the interval is an
hour), so the test knows exactly how many cycles ran.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import Org

from syncd.cycle import SyncCycle
from syncd.daemon import Daemon, DaemonSettings
from syncd.notify import Notifier, Webhook, WebhookSender

WAIT = 120.0  # failsafe only: the first cycle of a 300-person org takes seconds


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def sample(daemon: Daemon[Any], name: str, **labels: str) -> float:
    value = daemon.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


@pytest.fixture
def inbox() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1: its URL and the bodies it received."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    server.shutdown()
    server.server_close()


@pytest.fixture
def start_daemon(org: Org) -> Iterator[Callable[..., Daemon[Any]]]:
    started: list[Daemon[Any]] = []

    def start(notifier: Notifier | None = None) -> Daemon[Any]:
        config = org.config
        settings = DaemonSettings(
            ledger_path=config.ledger.path,
            interval_seconds=3600.0,
            health_port=0,
            reload_poll_seconds=0.0,
        )
        daemon: Daemon[Any] = Daemon(
            settings,
            lambda: SyncCycle.from_config(config, clock=org.clock),
            lambda: org.rules,
            notifier=notifier,
            clock=org.clock,
        )
        started.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.request_stop(force=True)
        daemon.shutdown()


def wait_for_first_cycle(daemon: Daemon[Any]) -> None:
    done = threading.Event()

    def check() -> None:
        while not done.is_set():
            if sample(daemon, "syncd_cycles_total", outcome="ok") + sample(
                daemon, "syncd_cycles_total", outcome="failed"
            ):
                # The metrics come just before health and the log line: take the work lock to see all three.
                with daemon._work_lock:
                    done.set()
                return
            done.wait(0.05)

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert done.is_set(), "the first cycle did not finish"


def test_a_revoked_token_turns_healthz_503_within_one_cycle_and_is_notified(
    org: Org, start_daemon: Callable[..., Daemon[Any]], inbox: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = inbox
    sender = WebhookSender(sleep=lambda _: None)
    notifier = Notifier([Webhook(url, "json", frozenset({"auth", "assignments"}))], sender=sender)
    daemon = start_daemon(notifier)
    wait_for_first_cycle(daemon)
    assert daemon.health_server is not None
    health = daemon.health_server.url + "/healthz"
    status, body = get(health)
    assert status == 200, body

    org.sandbox.control("hubspot", "POST", "tokens/revoke", {"user": "integration"})
    org.clock.advance(minutes=5)
    assert daemon.run_cycle_now() is None  # the one cycle after the revocation fails ...

    status, body = get(health)  # ... and health says so at once, not after max_age_seconds
    assert status == 503
    assert body["last_cycle"]["lasting"] == "authentication"
    assert body["problems"][0].startswith(
        "the last cycle failed for a reason that will not pass by itself (authentication): HubSpot rejected"
    )
    # The age is the daemon's injected clock: the good cycle was exactly the 5 minutes advanced above ago.
    assert body["last_good_cycle_age_seconds"] == pytest.approx(300, abs=1)
    assert body["last_good_cycle_age_seconds"] < body["max_age_seconds"]
    token = org.sandbox.info()["hubspot"]["tokens"].get("integration")
    assert token is None  # revoked: nothing left to leak, and the old one is not in the body either
    assert sample(daemon, "syncd_cycles_total", outcome="failed") == 1

    assert sender.flush(30)
    events = [b["event"] for b in bodies]
    assert events == ["assignments", "auth"]  # the first cycle's digest, then the refused credentials
    assert bodies[0]["data"]["total"] > 0
    assert "HubSpot rejected the access token" in bodies[1]["text"]


def test_the_429_counter_matches_the_429s_the_sandbox_sent(
    org: Org, start_daemon: Callable[..., Daemon[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    # HubSpot answers 429 to one request in five (seeded, so the same requests every run); Retry-After 0
    # keeps the retries immediate. (Salesforce sends no 429s: its limits are REQUEST_LIMIT_EXCEEDED.)
    org.sandbox.control("hubspot", "PUT", "faults", {"status_429": 0.2, "retry_after": 0})
    org.sandbox.control("hubspot", "POST", "counts/reset")
    caplog.set_level(logging.INFO, logger="syncd.daemon")
    daemon = start_daemon()
    wait_for_first_cycle(daemon)
    assert sample(daemon, "syncd_cycles_total", outcome="ok") == 1
    sent = org.sandbox.control("hubspot", "GET", "counts")["by_status"].get("429", 0)
    assert sent > 0
    assert sample(daemon, "syncd_api_rate_limited_total", system="hubspot") == sent
    assert sample(daemon, "syncd_api_rate_limited_total", system="salesforce") == 0
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "cycle"]
    assert line.getMessage().endswith(f"(429s {sent})")
    assert line.__dict__["summary"]["rate_limited"] == {"hubspot": sent}
