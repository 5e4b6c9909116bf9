"""The health and metrics endpoint: ``/healthz`` (JSON, 200 or 503) and ``/metrics`` (Prometheus text).

``HealthState`` is what the daemon tells it (cycles, reachability); ``HealthServer`` serves it over plain
HTTP, bound to 127.0.0.1 unless configured otherwise. A health check never calls Salesforce or HubSpot: a
probe every few seconds would spend API budget, so reachability is what the last cycle saw.

A cycle that fails for a reason that will not pass by itself (``lasting_failure``: credentials refused,
permissions missing, TLS or configuration wrong, the daily API budget spent) makes /healthz answer 503 at
once, until a cycle succeeds again; a passing failure (429, 5xx, a timeout) only counts against the age of
the last good cycle.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from syncd.errors import AuthError, BudgetExhausted, ConfigError, FatalConnectorError, RetriableError
from syncd.metrics import SYSTEMS, Metrics
from syncd.progress import Progress
from syncd.reports.progress_render import snapshot_json
from syncd.reports.web import Request, Route

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def ledger_writable(ledger_path: Path) -> Callable[[], bool]:
    """A check that the ledger file (or, before its first cycle, its directory) can be written.

    It only asks the file system: opening a write transaction would queue behind a running cycle's.
    """

    def check() -> bool:
        directory = ledger_path.parent
        # SQLite writes its journal next to the database, so the directory must be writable too.
        if not directory.is_dir() or not os.access(directory, os.W_OK):
            return False
        if ledger_path.exists() and not (ledger_path.is_file() and os.access(ledger_path, os.W_OK)):
            return False
        target = ledger_path if ledger_path.exists() else directory
        try:
            return not (os.statvfs(target).f_flag & os.ST_RDONLY)
        except OSError:
            return False

    return check


def lasting_failure(exc: BaseException) -> str | None:
    """Why a cycle's failure will not pass by itself ("authentication", "permissions", "budget", ...), or None.

    Classified by syncd's exception tree: a FatalConnectorError (an AuthError, a 403, a TLS failure, a bad
    request) needs someone to act, and so does a spent budget (it returns only at 00:00 UTC) or a config
    error. A RetriableError (429, 5xx, timeout, reset) is expected to pass on its own.
    """
    if isinstance(exc, BudgetExhausted) or (
        isinstance(exc, RetriableError) and exc.code == "REQUEST_LIMIT_EXCEEDED"
    ):
        # syncd's daily share, or the whole org's 24-hour allowance: back only when the day turns.
        return "budget"
    if isinstance(exc, FatalConnectorError):
        if isinstance(exc, AuthError) or exc.status == 401:
            return "authentication"
        if exc.code == "TLS":
            return "tls"
        if exc.status == 403:
            return "permissions"
        return "refused request"
    if isinstance(exc, ConfigError):
        return "configuration"
    return None


@dataclass(frozen=True)
class HealthReport:
    """The answer of /healthz: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]


class HealthState:
    """What the daemon knows about its own health; thread-safe, read by the HTTP server.

    Healthy means: a cycle succeeded within ``max_age_seconds`` (counted from start until the first one
    does), the ledger is writable, no system was found unreachable by the last cycle that tried it, and the
    last cycle did not fail for a lasting reason (see ``lasting_failure``).
    """

    def __init__(
        self,
        *,
        max_age_seconds: float,
        ledger_check: Callable[[], bool],
        clock: Callable[[], datetime] = utcnow,
        progress: Progress | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.progress = progress
        self.max_age_seconds = max_age_seconds
        self._ledger_check = ledger_check
        self._started_at = clock()
        self._last_good_at: datetime | None = None
        self._last_cycle_at: datetime | None = None
        self._last_outcome: str | None = None
        self._last_error: str | None = None
        self._lasting: str | None = None
        self._cycle_started_at: datetime | None = None
        self._reachable: dict[str, bool | None] = dict.fromkeys(SYSTEMS)
        self._rules_loaded_at: datetime | None = None
        self._rules_error: str | None = None

    def cycle_started(self) -> None:
        """Note that a cycle is running (shown in the report, so a long first sync is visible)."""
        with self._lock:
            self._cycle_started_at = self._clock()

    def cycle_ended(
        self,
        *,
        outcome: str,
        reachable: dict[str, bool] | None = None,
        error: str | None = None,
        lasting: str | None = None,
    ) -> None:
        """Record how a cycle ended; "ok" makes it the last good cycle.

        ``lasting`` names why a failure will not pass by itself (``lasting_failure``): unhealthy at once.
        """
        with self._lock:
            now = self._clock()
            self._cycle_started_at = None
            self._last_cycle_at = now
            self._last_outcome = outcome
            self._last_error = error
            if outcome == "failed":
                self._lasting = lasting
            else:
                self._lasting = None
            if outcome == "ok":
                self._last_good_at = now
            for system, ok in (reachable or {}).items():
                self._reachable[system] = ok

    def rules_loaded(self, *, error: str | None = None) -> None:
        """Record a reload: a refused set keeps the live one but shows its error until a good set loads."""
        with self._lock:
            if error is None:
                self._rules_loaded_at = self._clock()
            self._rules_error = error

    def rules_state(self) -> tuple[datetime | None, str | None]:
        """When the live rules were loaded, and the error of the last refused reload (None once one loads)."""
        with self._lock:
            return self._rules_loaded_at, self._rules_error

    def report(self) -> HealthReport:
        """Evaluate health now."""
        ledger_ok = self._safe_ledger_check()
        with self._lock:
            now = self._clock()
            reference = self._last_good_at or self._started_at
            age = max((now - reference).total_seconds(), 0.0)
            fresh = age <= self.max_age_seconds
            reachable_ok = all(v is not False for v in self._reachable.values())
            healthy = fresh and ledger_ok and reachable_ok and self._lasting is None
            problems = []
            if self._lasting is not None:
                problems.append(
                    f"the last cycle failed for a reason that will not pass by itself ({self._lasting}): "
                    f"{self._last_error}"
                )
            if not fresh:
                problems.append(
                    f"no good cycle for {age:.0f}s (limit {self.max_age_seconds:.0f}s)"
                    if self._last_good_at
                    else f"no good cycle since start {age:.0f}s ago (limit {self.max_age_seconds:.0f}s)"
                )
            if not ledger_ok:
                problems.append("ledger is not writable")
            problems.extend(
                f"{system} unreachable" for system, ok in sorted(self._reachable.items()) if ok is False
            )
            body: dict[str, Any] = {
                "status": "ok" if healthy else "unhealthy",
                "problems": problems,
                "last_good_cycle_age_seconds": (
                    round((now - self._last_good_at).total_seconds(), 3) if self._last_good_at else None
                ),
                "last_good_cycle_at": _iso(self._last_good_at),
                "max_age_seconds": self.max_age_seconds,
                "last_cycle": {
                    "at": _iso(self._last_cycle_at),
                    "outcome": self._last_outcome,
                    "error": self._last_error,
                    "lasting": self._lasting,
                },
                "cycle_running_seconds": (
                    round((now - self._cycle_started_at).total_seconds(), 3)
                    if self._cycle_started_at
                    else None
                ),
                "ledger_writable": ledger_ok,
                "systems": {system: {"reachable": ok} for system, ok in self._reachable.items()},
                "rules": {"loaded_at": _iso(self._rules_loaded_at), "last_reload_error": self._rules_error},
                "started_at": _iso(self._started_at),
            }
        if self.progress is not None:
            body["progress"] = snapshot_json(self.progress.snapshot())
        return HealthReport(200 if healthy else 503, body)

    def _safe_ledger_check(self) -> bool:
        try:
            return bool(self._ledger_check())
        except Exception:
            return False


def _iso(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None


class HealthServer:
    """Serves /healthz and /metrics over HTTP in a background thread (port 0 picks a free port)."""

    def __init__(
        self,
        state: HealthState,
        metrics: Metrics,
        *,
        host: str = "127.0.0.1",
        port: int = 9464,
        routes: dict[str, Route] | None = None,
    ) -> None:
        handler = _handler_class(state, metrics, routes or {})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        # A short poll interval bounds how long stop() waits; an idle server costs next to nothing more.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name=f"health:{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler_class(
    state: HealthState, metrics: Metrics, routes: dict[str, Route]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "syncd"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                report = state.report()
                self._send(
                    report.status, "application/json", json.dumps(report.body, indent=2).encode() + b"\n"
                )
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_METRICS, metrics.exposition())
            elif path in routes:
                # Other pages (the status page at /): each route answers for itself, its access rules included.
                answer = routes[path](Request.parse(self.path, dict(self.headers.items())))
                self._send(answer.status, answer.content_type, answer.body, answer.headers)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

        def _send(
            self, status: int, content_type: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Scrapes every few seconds would drown the daemon's own log lines.
            return

    return Handler
