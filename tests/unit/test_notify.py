"""Webhook notifications, delivered over real HTTP to a receiver on 127.0.0.1 run by the test.

The receiver answers with statuses the test scripts (a 503 then a 200 shows a retry); backoff sleeps go to
a recorder, so no test waits for a backoff.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from syncd.config import parse_config
from syncd.daemon import Daemon, DaemonSettings
from syncd.errors import AuthError, BudgetExhausted, ConfigError, MappingError, RetriableError
from syncd.metrics import CycleSummary
from syncd.notify import Alerts, Notification, Notifier, Webhook, WebhookSender, body

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WAIT = 10.0  # failsafe only


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """A webhook receiver: records each request and answers the next scripted status (then 200)."""

    statuses: list[int] = field(default_factory=list)
    retry_after: str | None = None
    gate: threading.Event | None = None
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= n, WAIT)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            data = json.loads(self.rfile.read(length))
            if state.gate is not None:
                state.gate.wait(WAIT)
            with state._cond:
                state.received.append(Received(self.path, dict(self.headers.items()), data))
                status = state.statuses.pop(0) if state.statuses else 200
                state._cond.notify_all()
            self.send_response(status)
            if state.retry_after is not None and status != 200:
                self.send_header("Retry-After", state.retry_after)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/s3cr3t-path"
    yield state
    if state.gate is not None:
        state.gate.set()
    server.shutdown()
    server.server_close()


NOTE = Notification(
    "assignments",
    "3 new assignments to 2 owners",
    "Cycle 7 assigned:\n• ana@northwind.example: 2\n• bo@northwind.example: 1",
    {"cycle": 7, "total": 3, "by_owner": {"ana@northwind.example": 2, "bo@northwind.example": 1}},
    T0,
)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def sender(sleeps: list[float]) -> Iterator[WebhookSender]:
    s = WebhookSender(max_attempts=4, initial_backoff=1.0, max_backoff=30.0, sleep=sleeps.append).start()
    yield s
    s.close()


def hook(receiver: Receiver, fmt: str = "json", **options: Any) -> Webhook:
    return Webhook(receiver.url, fmt, frozenset({"assignments"}), **options)  # type: ignore[arg-type]


# ---- bodies --------------------------------------------------------------------------------------


def test_the_json_body_carries_the_event_text_and_data(receiver: Receiver, sender: WebhookSender) -> None:
    sender.send(hook(receiver, "json"), NOTE)
    assert sender.flush(WAIT)
    (got,) = receiver.received
    assert got.path == "/hooks/T000/B000/s3cr3t-path"
    assert got.headers["Content-Type"].startswith("application/json")
    assert got.body == {
        "source": "syncd",
        "event": "assignments",
        "title": "3 new assignments to 2 owners",
        "text": NOTE.text,
        "at": "2024-05-01T12:00:00Z",
        "data": {"cycle": 7, "total": 3, "by_owner": {"ana@northwind.example": 2, "bo@northwind.example": 1}},
    }


def test_the_slack_body_is_one_mrkdwn_text(receiver: Receiver, sender: WebhookSender) -> None:
    sender.send(hook(receiver, "slack"), NOTE)
    assert sender.flush(WAIT)
    (got,) = receiver.received
    assert got.body == {"text": "*syncd: 3 new assignments to 2 owners*\n" + NOTE.text}
    assert body(NOTE, "slack") == got.body


def test_the_secret_header_is_sent(receiver: Receiver, sender: WebhookSender) -> None:
    sender.send(hook(receiver, headers={"X-Webhook-Token": "tok-123456"}), NOTE)
    assert sender.flush(WAIT)
    assert receiver.received[0].headers["X-Webhook-Token"] == "tok-123456"


# ---- delivery ------------------------------------------------------------------------------------


def test_a_failed_delivery_is_retried_with_exponential_backoff(
    receiver: Receiver, sender: WebhookSender, sleeps: list[float]
) -> None:
    receiver.statuses = [503, 500]
    sender.send(hook(receiver), NOTE)
    assert sender.flush(WAIT)
    assert len(receiver.received) == 3
    assert receiver.received[0].body == receiver.received[2].body
    assert sleeps == [1.0, 2.0]
    assert (sender.delivered, sender.failed) == (1, 0)


def test_retry_after_is_honoured_up_to_the_backoff_cap(
    receiver: Receiver, sender: WebhookSender, sleeps: list[float]
) -> None:
    receiver.statuses = [429, 429]
    receiver.retry_after = "7"
    sender.send(hook(receiver), NOTE)
    assert sender.flush(WAIT)
    assert sleeps == [7.0, 7.0]
    receiver.statuses = [429]
    receiver.retry_after = "3600"
    sender.send(hook(receiver), NOTE)
    assert sender.flush(WAIT)
    assert sleeps[2:] == [30.0]


def test_a_refusal_is_not_retried_and_a_receiver_down_is_given_up_after_the_attempts(
    receiver: Receiver, sender: WebhookSender, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [404]
    with caplog.at_level(logging.INFO, logger="syncd.notify"):
        sender.send(hook(receiver), NOTE)
        assert sender.flush(WAIT)
        assert len(receiver.received) == 1 and sleeps == []
        closed = Webhook("http://127.0.0.1:9/hooks/s3cr3t-path", "json", frozenset({"assignments"}))
        sender.send(closed, NOTE)
        assert sender.flush(WAIT)
    assert sleeps == [1.0, 2.0, 4.0]
    assert sender.failed == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"notification assignments to {hook(receiver).origin} not delivered (tried once): answered 404",
        "notification assignments to http://127.0.0.1:9 not delivered (tried 4 times): connection refused",
    ]
    assert not any("s3cr3t" in r.getMessage() for r in caplog.records)


def test_sending_never_waits_for_the_receiver(receiver: Receiver, sender: WebhookSender) -> None:
    receiver.gate = threading.Event()
    sender.send(hook(receiver), NOTE)  # the receiver holds this request until the gate opens
    sender.send(hook(receiver), NOTE)
    assert receiver.received == []  # both calls returned while the first request was still held
    receiver.gate.set()
    assert sender.flush(WAIT)
    assert len(receiver.received) == 2


def test_a_full_queue_drops_the_newest_notification(receiver: Receiver) -> None:
    receiver.gate = threading.Event()
    s = WebhookSender(queue_size=1, sleep=lambda _: None).start()
    try:
        for _ in range(6):
            s.send(hook(receiver), NOTE)
        # One delivery held by the receiver (or still queued), one queued: the rest were dropped.
        assert s.dropped in (4, 5)
        receiver.gate.set()
        assert s.flush(WAIT)
    finally:
        s.close()


# ---- what is worth telling -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_the_assignment_digest_ranks_owners_and_sums_the_rest() -> None:
    alerts = Alerts(digest_reps=2, clock=Clock())
    (note,) = alerts.after_cycle(
        3, CycleSummary(assigned={"c@x.example": 1, "a@x.example": 5, "b@x.example": 5})
    )
    assert note.event == "assignments"
    assert note.title == "11 new assignments to 3 owners"
    assert note.text == "Cycle 3 assigned:\n• a@x.example: 5\n• b@x.example: 5\n• and 1 more owners: 1"
    assert note.data["by_owner"] == {"a@x.example": 5, "b@x.example": 5, "c@x.example": 1}
    assert alerts.after_cycle(4, CycleSummary()) == []


def test_quarantine_growth_is_told_against_the_previous_cycle() -> None:
    alerts = Alerts(clock=Clock())
    assert alerts.after_cycle(1, CycleSummary(quarantined=5)) == []  # the baseline
    assert alerts.after_cycle(2, CycleSummary(quarantined=5)) == []
    (note,) = alerts.after_cycle(3, CycleSummary(quarantined=8))
    assert (note.event, note.title) == ("quarantine", "quarantine grew by 3 to 8 records")
    assert note.data == {"cycle": 3, "before": 5, "after": 8, "added": 3}
    assert alerts.after_cycle(4, CycleSummary(quarantined=2)) == []


def test_an_auth_failure_is_told_once_until_a_cycle_succeeds() -> None:
    alerts = Alerts(clock=Clock())
    error = AuthError("HubSpot rejected the access token: set a valid private-app token", system="hubspot")
    (note,) = alerts.after_failure(1, error)
    assert (note.event, note.title) == ("auth", "HubSpot refused syncd's credentials")
    assert alerts.after_failure(2, error) == []
    alerts.after_cycle(3, CycleSummary())
    assert [n.event for n in alerts.after_failure(4, error)] == ["auth"]


def test_a_passing_failure_is_not_told() -> None:
    alerts = Alerts(clock=Clock())
    assert alerts.after_failure(1, RetriableError("HubSpot answered 503", system="hubspot")) == []


def test_the_budget_is_told_once_per_system_and_day() -> None:
    clock = Clock()
    alerts = Alerts(clock=clock)
    spent = BudgetExhausted("HubSpot: budget reached: 125000 of 125000 calls today", system="hubspot")
    assert [n.title for n in alerts.after_failure(1, spent)] == ["HubSpot budget reached"]
    assert alerts.after_failure(2, spent) == []
    assert alerts.after_cycle(3, CycleSummary(budget_used={"hubspot": 1.0})) == []
    (sf,) = alerts.after_cycle(4, CycleSummary(budget_used={"salesforce": 1.0, "hubspot": 0.2}))
    assert sf.title == "Salesforce budget reached"
    clock.now += timedelta(days=1)
    assert [n.event for n in alerts.after_failure(5, spent)] == ["budget"]


def test_a_refused_reload_lists_its_problems_with_secrets_masked() -> None:
    alerts = Alerts(clock=Clock())
    (note,) = alerts.after_refusal(
        "SIGHUP requested",
        "2 problems in mappings",
        ['routing.toml: rule "EMEA": when.contry: unknown field', "fields.toml: token=abc123def: bad"],
    )
    assert note.event == "rules_refused"
    assert 'rule "EMEA": when.contry: unknown field' in note.text
    assert "abc123def" not in note.text


# ---- config --------------------------------------------------------------------------------------


def test_webhooks_are_read_from_config_with_secrets_from_the_environment(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "salesforce": {"auth": "session", "instance_url": "https://x.my.salesforce.com"},
            "notify": {
                "max_attempts": 3,
                "webhook": [
                    {"url_env": "SLACK_URL", "format": "slack", "events": ["auth", "budget"]},
                    {
                        "url": "https://hooks.example.com/syncd",
                        "secret_header": "Authorization",
                        "secret_env": "HOOK_TOKEN",
                    },
                ],
            },
        },
        path=tmp_path / "config.toml",
        environ={"SF_ACCESS_TOKEN": "00Dxx!yyyy", "HUBSPOT_ACCESS_TOKEN": "pat-na1-0000-1111"},
    )
    env = {"SLACK_URL": "https://hooks.slack.com/services/T1/B2/xyz", "HOOK_TOKEN": "Bearer abcdef"}
    notifier = Notifier.from_config(cfg.notify, environ=env)
    slack, generic = notifier.webhooks
    assert (slack.format, slack.events, slack.origin) == (
        "slack",
        {"auth", "budget"},
        "https://hooks.slack.com",
    )
    assert generic.format == "json" and generic.events == {
        "assignments",
        "quarantine",
        "rules_refused",
        "budget",
        "auth",
    }
    assert generic.headers == {"Authorization": "Bearer abcdef"}
    assert notifier.sender.max_attempts == 3
    with pytest.raises(ConfigError, match=r"notify.webhook\[1\].secret_env: environment variable HOOK_TOKEN"):
        Notifier.from_config(cfg.notify, environ={"SLACK_URL": env["SLACK_URL"]})


@pytest.mark.parametrize(
    ("webhook", "message"),
    [
        pytest.param({"url": "https://a.example/x", "format": "xml"}, "format: must be one of", id="format"),
        pytest.param({"url": "https://a.example/x", "url_env": "U"}, "exactly one of url", id="two-urls"),
        pytest.param({"url": "ftp://a.example/x"}, "http:// or https://", id="scheme"),
        pytest.param({"url": "https://a.example/x", "events": ["deploys"]}, "events.0", id="event"),
        pytest.param({"url": "https://a.example/x", "secret_env": "T"}, "go together", id="half-secret"),
    ],
)
def test_a_bad_webhook_is_one_config_error(webhook: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"sandbox": {"info_file": "/nonexistent"}, "notify": {"webhook": [webhook]}})


# ---- the daemon ----------------------------------------------------------------------------------


class Runner:
    def __init__(self) -> None:
        self.fail_with: BaseException | None = None
        self.cycles = 0
        self.cond = threading.Condition()

    def run_cycle(self, rules: Any, *, stop: threading.Event) -> CycleSummary:
        with self.cond:
            self.cycles += 1
            self.cond.notify_all()
        if self.fail_with is not None:
            raise self.fail_with
        return CycleSummary(assigned={"ana@northwind.example": 2}, quarantined=1)

    def refresh_roster(self) -> None:
        return None


def test_the_daemon_notifies_assignments_auth_failures_and_refused_reloads(
    receiver: Receiver, tmp_path: Path, sleeps: list[float]
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("ok")

    def load() -> str:
        text = rules.read_text()
        if text != "ok":
            raise MappingError("1 problem in rules.toml", ["rules.toml: broken"])
        return text

    runner = Runner()
    sender = WebhookSender(sleep=sleeps.append)
    hooks = [Webhook(receiver.url, "json", frozenset({"assignments", "auth", "rules_refused", "quarantine"}))]
    settings = DaemonSettings(
        ledger_path=tmp_path / "syncd.db", watch_paths=(rules,), health_port=None, reload_poll_seconds=0
    )
    daemon: Daemon[str] = Daemon(settings, lambda: runner, load, notifier=Notifier(hooks, sender=sender))
    daemon.start()
    try:
        with runner.cond:
            assert runner.cond.wait_for(lambda: runner.cycles >= 1, WAIT)
        assert receiver.wait_for(1)
        runner.fail_with = AuthError(
            "Salesforce rejected the session (INVALID_SESSION_ID)", system="salesforce"
        )
        daemon.run_cycle_now()
        daemon.run_cycle_now()  # told once only
        rules.write_text("broken")
        daemon.reload_rules("SIGHUP requested")
        assert sender.flush(WAIT)
    finally:
        daemon.request_stop()
        daemon.shutdown()
    events = [r.body["event"] for r in receiver.received]
    assert events == ["assignments", "auth", "rules_refused"]
    assert receiver.received[0].body["data"]["by_owner"] == {"ana@northwind.example": 2}
    assert "INVALID_SESSION_ID" in receiver.received[1].body["text"]
    assert receiver.received[2].body["data"]["problems"] == ["rules.toml: broken"]
