"""Outgoing webhooks: the daemon tells people when something needs them, in Slack's format or plain JSON.

Configured in config.toml, one ``[[notify.webhook]]`` table per receiver::

    [[notify.webhook]]
    url_env = "SYNCD_SLACK_WEBHOOK"      # or url = "https://..." (a Slack webhook URL is itself a secret)
    format = "slack"                     # "slack": {"text": ...}; "json": {"event", "title", "text", "data", ...}
    events = ["assignments", "quarantine", "rules_refused", "budget", "auth"]
    secret_header = "Authorization"      # optional: a header whose value comes from secret_env
    secret_env = "SYNCD_WEBHOOK_TOKEN"

Events (``EVENTS``):

- ``assignments``: after each cycle that made new assignments, one digest: who got how many records;
- ``quarantine``: the quarantine grew since the previous cycle (the first cycle after a start sets the baseline);
- ``rules_refused``: a reload of the rules files was refused (the running rules stay live);
- ``budget``: syncd's daily API budget, or the org's allowance, is reached (once per system and UTC day);
- ``auth``: a cycle failed because a system refused syncd's credentials (once, until a cycle succeeds again).

``Alerts`` turns what the daemon saw into ``Notification`` values (no I/O); ``WebhookSender`` delivers them
from a worker thread, retrying connection failures, timeouts, 429 and 5xx answers with exponential backoff
(tenacity; ``sleep`` is injectable) and giving up on other answers. A cycle never waits for a webhook and a
failing webhook never fails a cycle: the queue is bounded and a full one drops the newest notification with a
warning. URLs and secret header values are registered with the log redactor; logs name only the receiver's
scheme, host and port.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from syncd.errors import AuthError, BudgetExhausted, ConfigError, RetriableError
from syncd.logs import redact, register_secret

if TYPE_CHECKING:
    import requests

    from syncd.metrics import CycleSummary

__all__ = [
    "EVENTS",
    "Alerts",
    "Notification",
    "Notifier",
    "NotifyConfig",
    "Webhook",
    "WebhookConfig",
    "WebhookSender",
    "body",
    "resolve_webhooks",
]

log = logging.getLogger(__name__)

Event = Literal["assignments", "quarantine", "rules_refused", "budget", "auth"]
EVENTS: Final[tuple[str, ...]] = ("assignments", "quarantine", "rules_refused", "budget", "auth")
_LABEL: Final = {"salesforce": "Salesforce", "hubspot": "HubSpot"}


# ------------------------------------------------------------------------------------------------ config


class WebhookConfig(BaseModel):
    """``[[notify.webhook]]``: one receiver, the body format it takes and the events it wants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    url_env: str | None = None
    format: Literal["slack", "json"] = "json"
    events: Annotated[list[Event], Field(min_length=1)] = [
        "assignments",
        "quarantine",
        "rules_refused",
        "budget",
        "auth",
    ]
    secret_header: str | None = None
    secret_env: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0

    @model_validator(mode="after")
    def _one_url(self) -> WebhookConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("notify.webhook: give exactly one of url and url_env")
        if self.url is not None:
            _check_url(self.url, "notify.webhook.url")
        if (self.secret_header is None) != (self.secret_env is None):
            raise ValueError("notify.webhook: secret_header and secret_env go together")
        return self


class NotifyConfig(BaseModel):
    """``[notify]``: the webhooks, and how hard to try each delivery."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: list[WebhookConfig] = Field(default_factory=list)
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    initial_backoff_seconds: Annotated[float, Field(gt=0, le=600)] = 1.0
    max_backoff_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    queue_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    # Reps named in an assignments digest; the rest are summed up in one "and N more" line.
    digest_reps: Annotated[int, Field(ge=1, le=500)] = 25


def _check_url(url: str, key: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key}: must be an http:// or https:// URL")


@dataclass(frozen=True)
class Webhook:
    """A receiver with its secrets resolved; ``origin`` (scheme, host, port) is all that logs show of it."""

    url: str = field(repr=False)
    format: Literal["slack", "json"]
    events: frozenset[str]
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 10.0

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"


def resolve_webhooks(config: NotifyConfig, environ: Mapping[str, str] | None = None) -> list[Webhook]:
    """The configured webhooks with URLs and secrets read from the environment; ConfigError when one is
    unset. Every URL and secret value is registered with the log redactor."""
    env = os.environ if environ is None else environ
    hooks = []
    for i, hook in enumerate(config.webhook):
        where = f"notify.webhook[{i}]"
        url = hook.url
        if hook.url_env is not None:
            url = env.get(hook.url_env)
            if not url:
                raise ConfigError(f"{where}.url_env: environment variable {hook.url_env} is not set")
            try:
                _check_url(url, f"{where}.url_env ({hook.url_env})")
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if url is None:  # the model requires url or url_env; this keeps the type checker informed
            raise ConfigError(f"{where}: give url or url_env")
        headers: dict[str, str] = {}
        if hook.secret_header is not None and hook.secret_env is not None:
            secret = env.get(hook.secret_env)
            if not secret:
                raise ConfigError(f"{where}.secret_env: environment variable {hook.secret_env} is not set")
            register_secret(secret)
            headers[hook.secret_header] = secret
        register_secret(url)
        hooks.append(Webhook(url, hook.format, frozenset(hook.events), headers, hook.timeout_seconds))
    return hooks


# ------------------------------------------------------------------------------------------------ what to say


@dataclass(frozen=True)
class Notification:
    """One message: its event, a title and text for people, and the same facts as data for machines."""

    event: str
    title: str
    text: str
    data: Mapping[str, Any]
    at: datetime


def body(notification: Notification, format: str) -> dict[str, Any]:
    """The JSON body a receiver of ``format`` ("slack" or "json") gets."""
    if format == "slack":
        # Slack incoming webhooks take {"text": ...} with mrkdwn (api.slack.com/messaging/webhooks).
        return {"text": f"*syncd: {notification.title}*\n{notification.text}"}
    return {
        "source": "syncd",
        "event": notification.event,
        "title": notification.title,
        "text": notification.text,
        "at": notification.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": dict(notification.data),
    }


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Alerts:
    """Decides what deserves a notification after each cycle, failure and refused reload (no I/O).

    It remembers just enough not to repeat itself: the quarantine's last size, whether an authentication
    failure was already told, and the UTC day a system's budget was last reported reached.
    """

    def __init__(self, *, digest_reps: int = 25, clock: Callable[[], datetime] = _utcnow) -> None:
        self.digest_reps = digest_reps
        self._clock = clock
        self._quarantined: int | None = None
        self._auth_told = False
        self._budget_told: dict[str, date] = {}

    def after_cycle(self, number: int, summary: CycleSummary) -> list[Notification]:
        """A cycle returned (completed or interrupted)."""
        now = self._clock()
        out: list[Notification] = []
        self._auth_told = False
        if summary.assigned:
            out.append(self._digest(number, summary.assigned, now))
        previous, self._quarantined = self._quarantined, summary.quarantined
        if previous is not None and summary.quarantined > previous:
            grew = summary.quarantined - previous
            out.append(
                Notification(
                    "quarantine",
                    f"quarantine grew by {grew:,} to {summary.quarantined:,} records",
                    f"Cycle {number} put {grew:,} more records in quarantine ({previous:,} before). "
                    "`syncd status` lists them with their reasons; `syncd explain <id>` shows one.",
                    {"cycle": number, "before": previous, "after": summary.quarantined, "added": grew},
                    now,
                )
            )
        for system, ratio in sorted(summary.budget_used.items()):
            if ratio >= 1.0:
                out.extend(
                    self._budget(
                        system, f"{_LABEL.get(system, system)}: syncd's daily API budget is used up", now
                    )
                )
        return out

    def after_failure(self, number: int, exc: BaseException) -> list[Notification]:
        """A cycle raised ``exc``."""
        now = self._clock()
        message = redact(str(exc))
        system = str(getattr(exc, "system", "") or "")
        if isinstance(exc, AuthError):
            if self._auth_told:
                return []
            self._auth_told = True
            label = _LABEL.get(system, system or "a system")
            return [
                Notification(
                    "auth",
                    f"{label} refused syncd's credentials",
                    f"Cycle {number} failed: {message}. Every cycle fails until the credentials are fixed; "
                    "/healthz answers 503 meanwhile.",
                    {"cycle": number, "system": system, "error": message},
                    now,
                )
            ]
        if isinstance(exc, BudgetExhausted) or (
            isinstance(exc, RetriableError) and exc.code == "REQUEST_LIMIT_EXCEEDED"
        ):
            return self._budget(system, message, now, cycle=number)
        return []

    def after_refusal(self, reason: str, message: str, problems: Sequence[str]) -> list[Notification]:
        """A reload of the rules was refused; the running rules stay live."""
        shown = [redact(p) for p in problems[:10]]
        more = f"\n… and {len(problems) - 10} more" if len(problems) > 10 else ""
        return [
            Notification(
                "rules_refused",
                "a rules reload was refused; the running rules stay live",
                f"Reload ({reason}) refused: {redact(message)}"
                + "".join(f"\n• {p}" for p in shown if p != message)
                + more,
                {"reason": reason, "error": redact(message), "problems": shown},
                self._clock(),
            )
        ]

    def _digest(self, number: int, assigned: Mapping[str, int], now: datetime) -> Notification:
        ranked = sorted(assigned.items(), key=lambda item: (-item[1], item[0]))
        total = sum(assigned.values())
        shown = ranked[: self.digest_reps]
        rest = ranked[self.digest_reps :]
        lines = [f"• {rep}: {n:,}" for rep, n in shown]
        if rest:
            lines.append(f"• and {len(rest):,} more owners: {sum(n for _, n in rest):,}")
        owners = len(ranked)
        return Notification(
            "assignments",
            f"{total:,} new assignment{'s' if total != 1 else ''} to {owners:,} owner{'s' if owners != 1 else ''}",
            f"Cycle {number} assigned:\n" + "\n".join(lines),
            {"cycle": number, "total": total, "by_owner": dict(ranked)},
            now,
        )

    def _budget(
        self, system: str, message: str, now: datetime, *, cycle: int | None = None
    ) -> list[Notification]:
        today = now.astimezone(UTC).date()
        if self._budget_told.get(system) == today:
            return []
        self._budget_told[system] = today
        label = _LABEL.get(system, system or "API")
        return [
            Notification(
                "budget",
                f"{label} budget reached",
                f"{message}. syncd resumes when the budget allows (after 00:00 UTC for a daily budget).",
                {"cycle": cycle, "system": system, "error": message},
                now,
            )
        ]


# ------------------------------------------------------------------------------------------------ delivery


class _Transient(Exception):
    """A delivery attempt worth repeating: no answer, or 429 / 5xx."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Refused(Exception):
    """An answer that another attempt will not change (4xx other than 408 and 429)."""


@dataclass
class _Job:
    webhook: Webhook
    notification: Notification


_STOP: Final = object()


class WebhookSender:
    """Delivers notifications from one worker thread; ``send`` never blocks and never raises.

    ``sleep`` is what backoff waits with (tests pass a recorder); by default it returns early once
    ``close()`` is called, so a stopping daemon is never held up by a receiver that is down.
    """

    def __init__(
        self,
        *,
        max_attempts: int = 5,
        initial_backoff: float = 1.0,
        max_backoff: float = 60.0,
        queue_size: int = 100,
        sleep: Callable[[float], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._closing = threading.Event()
        self._sleep: Callable[[float], None] = sleep if sleep is not None else self._wait_unless_closing
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._session = session
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def _wait_unless_closing(self, seconds: float) -> None:
        self._closing.wait(seconds)

    def start(self) -> WebhookSender:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="syncd-notify", daemon=True)
                self._thread.start()
        return self

    def send(self, webhook: Webhook, notification: Notification) -> None:
        """Queue one delivery; when the queue is full the notification is dropped with a warning."""
        if self._thread is None:
            self.start()
        try:
            self._queue.put_nowait(_Job(webhook, notification))
        except queue.Full:
            self.dropped += 1
            log.warning(
                "notification %s to %s dropped: %d deliveries are already waiting",
                notification.event,
                webhook.origin,
                self._queue.qsize(),
                extra={"event": "notify_dropped", "notify_event": notification.event},
            )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delivery is done (delivered or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the deliveries already queued, waiting at most ``timeout`` seconds (backoff cut short)."""
        self._closing.set()
        thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)

    def _work(self) -> None:
        import requests

        session = self._session or requests.Session()
        while True:
            job = self._queue.get()
            try:
                if job is _STOP:
                    return
                self._deliver(session, job)
            except Exception as exc:  # a bug here must not kill the worker: later notifications still go out
                log.error("notification delivery failed: %s", redact(f"{type(exc).__name__}: {exc}"))
            finally:
                self._queue.task_done()

    def _deliver(self, session: requests.Session, job: _Job) -> None:
        hook, note = job.webhook, job.notification
        payload = json.dumps(body(note, hook.format), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "syncd", **hook.headers}

        def attempt() -> None:
            import requests

            try:
                response = session.post(
                    hook.url, data=payload, headers=headers, timeout=hook.timeout, allow_redirects=False
                )
            except requests.RequestException as exc:
                raise _Transient(_transport_reason(exc)) from None
            status = response.status_code
            if 200 <= status < 300:
                return
            if status in (408, 429) or status >= 500:
                raise _Transient(f"answered {status}", _retry_after(response.headers.get("Retry-After")))
            raise _Refused(f"answered {status}")

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=lambda state: log.info(
                "notification %s to %s: %s; retry %d of %d",
                note.event,
                hook.origin,
                _outcome(state),
                state.attempt_number,
                self.max_attempts - 1,
            ),
            reraise=True,
        )
        try:
            retrying(attempt)
        except (_Transient, _Refused) as exc:
            self.failed += 1
            tries = "once" if isinstance(exc, _Refused) else f"{self.max_attempts} times"
            log.warning(
                "notification %s to %s not delivered (tried %s): %s",
                note.event,
                hook.origin,
                tries,
                redact(str(exc)),
                extra={"event": "notify_failed", "notify_event": note.event},
            )
            return
        self.delivered += 1
        log.debug("notification %s delivered to %s", note.event, hook.origin)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(min(retry_after, self.max_backoff))
        return float(wait_exponential(multiplier=self.initial_backoff, max=self.max_backoff)(state))


def _outcome(state: RetryCallState) -> str:
    exc = state.outcome.exception() if state.outcome is not None else None
    return redact(str(exc)) if exc is not None else "failed"


def _retry_after(value: str | None) -> float | None:
    from syncd.connectors.errors import parse_retry_after

    return parse_retry_after(value)


def _transport_reason(exc: BaseException) -> str:
    import requests

    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc).lower()
        return "connection refused" if "refused" in text else "connection failed"
    return type(exc).__name__


# ------------------------------------------------------------------------------------------------ together


class Notifier:
    """What the daemon holds: ``Alerts`` decide, the ``WebhookSender`` delivers to each subscribed webhook.

    Every method returns at once and never raises: notifications are a side channel of the cycle.
    """

    def __init__(
        self,
        webhooks: Iterable[Webhook],
        *,
        alerts: Alerts | None = None,
        sender: WebhookSender | None = None,
    ) -> None:
        self.webhooks = list(webhooks)
        self.alerts = alerts or Alerts()
        self.sender = sender or WebhookSender()

    @classmethod
    def from_config(
        cls,
        config: NotifyConfig,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> Notifier:
        """A notifier for ``[notify]``; ConfigError when a webhook's URL or secret variable is unset."""
        return cls(
            resolve_webhooks(config, environ),
            alerts=Alerts(digest_reps=config.digest_reps, clock=clock),
            sender=WebhookSender(
                max_attempts=config.max_attempts,
                initial_backoff=config.initial_backoff_seconds,
                max_backoff=config.max_backoff_seconds,
                queue_size=config.queue_size,
                sleep=sleep,
            ),
        )

    def start(self) -> Notifier:
        if self.webhooks:
            self.sender.start()
        return self

    def cycle_succeeded(self, number: int, summary: CycleSummary) -> None:
        self._send(lambda: self.alerts.after_cycle(number, summary))

    def cycle_failed(self, number: int, exc: BaseException) -> None:
        self._send(lambda: self.alerts.after_failure(number, exc))

    def rules_refused(self, reason: str, message: str, problems: Sequence[str]) -> None:
        self._send(lambda: self.alerts.after_refusal(reason, message, problems))

    def flush(self, timeout: float = 10.0) -> bool:
        return self.sender.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self.sender.close(timeout)

    def _send(self, decide: Callable[[], list[Notification]]) -> None:
        try:
            for note in decide():
                for hook in self.webhooks:
                    if note.event in hook.events:
                        self.sender.send(hook, note)
        except Exception as exc:
            log.error("notifications skipped: %s", redact(f"{type(exc).__name__}: {exc}"))
