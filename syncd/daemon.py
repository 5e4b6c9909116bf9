"""The daemon: sync cycles on a schedule, reloads of the rules, and a clean stop.

``run_daemon`` is the entry point ``syncd run`` calls. It takes the ledger lock, loads the mapping and rules
files, and hands a ``Daemon`` the work:

- an APScheduler ``BackgroundScheduler`` runs the cycle every ``interval_seconds`` (first one at once) and the
  roster refresh every ``roster_interval_seconds``; each job has ``max_instances=1`` and ``coalesce``, and
  the two share a lock, so cycles never overlap and never run beside a roster refresh;
- SIGTERM or SIGINT sets the stop event: the running cycle finishes its current batch and returns, the
  daemon closes the runner (flushing the ledger) and exits 0 within ``shutdown_timeout_seconds``, else 1;
  a second signal stops waiting at once;
- SIGHUP, or a change in the watched mapping/rules files (polled every ``reload_poll_seconds``, acted on
  once two polls agree so that a half-copied directory is not loaded), reloads the rule set; an invalid
  set is refused with its errors logged and the running set stays live;
- ``/healthz`` and ``/metrics`` are served on 127.0.0.1 unless configured otherwise, and the status page at
  ``/`` (``syncd.reports.web``; a token is required off loopback);
- a long cycle's progress (``syncd.progress``) is logged every ``progress_log_seconds`` and shown by
  ``/healthz``, ``/metrics`` and the status page.
- a warning is logged when the health address is not loopback (/healthz and /metrics are unauthenticated);
- with a ``Notifier`` (``syncd.notify``), webhooks hear of new assignments, quarantine growth, refused
  reloads, a spent budget and refused credentials; delivery happens in its own thread.

The cycle itself is anything that satisfies ``CycleRunner``; the rule set is whatever the loader returns.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final, Generic, Protocol, TypeVar

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncd.errors import ConfigError, ConnectorError, MappingError, SyncdError
from syncd.health import HealthServer, HealthState, lasting_failure, ledger_writable, utcnow
from syncd.lock import LedgerLock
from syncd.logs import redact
from syncd.metrics import CycleSummary, Metrics
from syncd.notify import Notifier
from syncd.progress import Progress
from syncd.reports.progress_render import LogRenderer, call_with_progress
from syncd.reports.status import Links
from syncd.reports.web import DEFAULT_TOKEN_ENV, StatusPage, is_loopback

__all__ = [
    "EXIT_OK",
    "EXIT_STOP_TIMEOUT",
    "CycleRunner",
    "CycleSummary",
    "Daemon",
    "DaemonSettings",
    "rules_fingerprint",
    "run_daemon",
]

log = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_STOP_TIMEOUT: Final = 1

RulesT = TypeVar("RulesT")
RulesT_contra = TypeVar("RulesT_contra", contravariant=True)


class CycleRunner(Protocol[RulesT_contra]):
    """What the daemon drives: one sync cycle at a time, and a refresh of the reps' roster.

    ``run_cycle`` must check ``stop`` between batches and, once it is set, commit what it has done and
    return a summary with ``interrupted=True``. It raises SyncdError subclasses for failures it understands.
    If the runner has a ``close()`` method, the daemon calls it once on a clean stop.
    """

    def run_cycle(self, rules: RulesT_contra, *, stop: threading.Event) -> CycleSummary: ...

    def refresh_roster(self) -> None: ...


@dataclass(frozen=True)
class DaemonSettings:
    """How the daemon runs; ``syncd run`` builds it from config.toml's ``[daemon]``, ``[ledger]``, ``[rules]``.

    ``health_port=None`` turns the health endpoint off and 0 picks a free port; ``reload_poll_seconds=0``
    turns file watching off (SIGHUP still reloads). ``health_max_age_seconds`` defaults to three intervals
    plus a minute.
    """

    ledger_path: Path
    watch_paths: tuple[Path, ...] = ()
    interval_seconds: float = 60.0
    roster_interval_seconds: float = 900.0
    health_host: str = "127.0.0.1"
    health_port: int | None = 9464
    reload_poll_seconds: float = 2.0
    shutdown_timeout_seconds: float = 30.0
    health_max_age_seconds: float | None = None
    # The status page at / beside /healthz: the variable holding its token (needed off loopback).
    status_token_env: str = DEFAULT_TOKEN_ENV
    progress_log_seconds: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "interval_seconds",
            "roster_interval_seconds",
            "shutdown_timeout_seconds",
            "progress_log_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"daemon.{name} must be greater than 0, got {getattr(self, name)}")
        if self.reload_poll_seconds < 0:
            raise ConfigError(
                f"daemon.reload_poll_seconds must be 0 (off) or more, got {self.reload_poll_seconds}"
            )
        if self.health_port is not None and not 0 <= self.health_port <= 65535:
            raise ConfigError(f"daemon.health_port must be between 0 and 65535, got {self.health_port}")
        if self.health_max_age_seconds is not None and self.health_max_age_seconds <= 0:
            raise ConfigError(
                f"daemon.health_max_age_seconds must be greater than 0, got {self.health_max_age_seconds}"
            )

    @property
    def max_cycle_age(self) -> float:
        """Seconds without a good cycle after which /healthz answers 503."""
        if self.health_max_age_seconds is not None:
            return self.health_max_age_seconds
        return 3 * self.interval_seconds + 60.0


def _ignored(path: Path) -> bool:
    # Editor swap and backup files come and go while an admin types; they are never rules.
    name = path.name
    return name.startswith((".", "#")) or name.endswith(("~", ".swp", ".tmp"))


def _watched_files(paths: Sequence[Path]) -> Iterator[tuple[str, Path | None]]:
    for root in paths:
        if root.is_file():
            yield str(root), root
        elif root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and not any(_ignored(Path(part)) for part in path.relative_to(root).parts):
                    yield str(path), path
        else:
            yield str(root), None


def rules_fingerprint(paths: Sequence[Path]) -> str:
    """A digest of the names and contents of the watched files (directories are walked recursively)."""
    digest = hashlib.sha256()
    for name, path in _watched_files(paths):
        digest.update(name.encode() + b"\0")
        if path is None:
            digest.update(b"<missing>\0")
            continue
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"<unreadable>\0")
    return digest.hexdigest()


class Daemon(Generic[RulesT]):
    """Runs the cycle and the roster refresh on a schedule, reloads rules, and stops cleanly.

    Use ``start()`` then ``serve()`` (blocks until stopped; returns the exit code), or, from another
    thread, ``start()``, then ``request_stop()`` and ``shutdown()``. Everything but ``serve``'s signal
    handling is thread-safe. ``clock`` and ``monotonic`` are injectable for tests.
    """

    def __init__(
        self,
        settings: DaemonSettings,
        runner_factory: Callable[[], CycleRunner[RulesT]],
        rules_loader: Callable[[], RulesT],
        *,
        metrics: Metrics | None = None,
        stop_event: threading.Event | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        notifier: Notifier | None = None,
        status_links: Links | None = None,
    ) -> None:
        self.settings = settings
        self.notifier = notifier
        self.metrics = metrics if metrics is not None else Metrics()
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        # The running cycle reports here; the log, /healthz, /metrics and the status page read it.
        self.progress = Progress(clock=monotonic)
        self.progress.subscribe(LogRenderer(log, every=settings.progress_log_seconds, clock=monotonic))
        self.metrics.progress = self.progress
        self.health = HealthState(
            max_age_seconds=settings.max_cycle_age,
            ledger_check=ledger_writable(settings.ledger_path),
            clock=clock,
            progress=self.progress,
        )
        self.status_links = status_links or Links()
        self._runner_factory = runner_factory
        self._loader = rules_loader
        self._clock = clock
        self._monotonic = monotonic
        self.runner: CycleRunner[RulesT] | None = None
        self.health_server: HealthServer | None = None
        self._scheduler: BackgroundScheduler | None = None

        self._rules: RulesT | None = None
        self._rules_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._rules_digest: str | None = None
        self._pending_digest: str | None = None

        # Signal handlers only set these; the main loop acts on them (no locks are taken in a handler).
        self._wake = threading.Event()
        self._reload_requested = threading.Event()
        self._force = threading.Event()
        self._reload_signal: str | None = None
        self._stop_signal: str | None = None

        self._work_lock = threading.Lock()
        self._active_lock = threading.Lock()
        self._active = 0
        self._idle = threading.Event()
        self._idle.set()
        self._cycle_number = 0
        self._roster_refreshed = False
        self.stuck = False

    @property
    def scheduler(self) -> BackgroundScheduler | None:
        """The running APScheduler scheduler (None before start() and after shutdown())."""
        return self._scheduler

    # ---- rules -------------------------------------------------------------------------------------

    @property
    def rules(self) -> RulesT:
        """The live rule set."""
        with self._rules_lock:
            if self._rules is None:
                raise RuntimeError("the daemon has not loaded its rules yet: call start() first")
            return self._rules

    def load_rules(self) -> RulesT:
        """Load the rule set for the first time; an invalid set is logged and raised (MappingError)."""
        digest = rules_fingerprint(self.settings.watch_paths)
        try:
            rules = self._loader()
        except MappingError as exc:
            self._log_refusal("cannot start: the mapping and rules files are invalid", exc)
            raise
        self._install_rules(rules, digest, reload=False)
        log.info("rules loaded from %s", ", ".join(map(str, self.settings.watch_paths)) or "the loader")
        return rules

    def reload_rules(self, reason: str, *, digest: str | None = None) -> bool:
        """Load the rule set again; an invalid one is refused (logged) and the live set stays. True if loaded."""
        with self._reload_lock:
            if digest is None:
                digest = rules_fingerprint(self.settings.watch_paths)
            try:
                rules = self._loader()
            except MappingError as exc:
                # Remembered, so the same broken files are not reloaded (and logged) on every poll.
                self._rules_digest = digest
                self._log_refusal(f"rules reload ({reason}) refused, the running rules stay live", exc)
                self.metrics.observe_reload(ok=False)
                self.health.rules_loaded(error=redact(str(exc)))
                if self.notifier is not None:
                    self.notifier.rules_refused(reason, str(exc), list(exc.problems))
                return False
            except Exception as exc:
                self._rules_digest = digest
                log.exception("rules reload (%s) failed, the running rules stay live: %s", reason, exc)
                self.metrics.observe_reload(ok=False)
                self.health.rules_loaded(error=redact(f"{type(exc).__name__}: {exc}"))
                if self.notifier is not None:
                    self.notifier.rules_refused(reason, f"{type(exc).__name__}: {exc}", [])
                return False
            self._install_rules(rules, digest, reload=True)
            log.info("rules reloaded (%s); the next cycle uses them", reason, extra={"event": "rules_reload"})
            return True

    def check_rules_files(self) -> bool:
        """Reload if the watched files changed and stayed the same for one poll. True if a set was loaded."""
        digest = rules_fingerprint(self.settings.watch_paths)
        if digest == self._rules_digest:
            self._pending_digest = None
            return False
        if digest != self._pending_digest:
            self._pending_digest = digest
            return False
        self._pending_digest = None
        return self.reload_rules("the rules files changed", digest=digest)

    def _install_rules(self, rules: RulesT, digest: str, *, reload: bool) -> None:
        with self._rules_lock:
            self._rules = rules
        self._rules_digest = digest
        self._pending_digest = None
        loaded_at = self._clock().timestamp()
        if reload:
            self.metrics.observe_reload(ok=True, loaded_at=loaded_at)
        else:
            self.metrics.rules_loaded.set(loaded_at)
        self.health.rules_loaded()

    @staticmethod
    def _log_refusal(headline: str, exc: MappingError) -> None:
        log.error("%s: %s", headline, exc, extra={"event": "rules_refused", "problems": list(exc.problems)})
        for problem in exc.problems:
            if problem != str(exc):
                log.error("  %s", problem)

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the rules, create the runner, open the health endpoint and start the schedule."""
        if self._rules is None:
            self.load_rules()
        if self.runner is None:
            self.runner = self._runner_factory()
        if self.notifier is not None:
            self.notifier.start()
        s = self.settings
        if s.health_port is not None and self.health_server is None:
            page = self.status_page()
            try:
                self.health_server = HealthServer(
                    self.health, self.metrics, host=s.health_host, port=s.health_port, routes=page.routes
                ).start()
            except OSError as exc:
                raise ConfigError(
                    f"cannot serve health and metrics on {s.health_host}:{s.health_port}: "
                    f"{exc.strerror or exc}; set daemon.health_host / daemon.health_port"
                ) from None
            log.info(
                "health and metrics on %s/healthz and %s/metrics",
                self.health_server.url,
                self.health_server.url,
                extra={"event": "health_endpoint", "url": self.health_server.url},
            )
            if not is_loopback(s.health_host):
                log.warning(
                    "the health endpoint listens on %s, which is not loopback: /healthz and /metrics are "
                    "unauthenticated, so anyone who can reach that address can read them; keep it behind a "
                    'firewall or set daemon.health_host = "127.0.0.1"',
                    s.health_host,
                    extra={"event": "health_not_loopback", "host": s.health_host},
                )
            if page.require_token and not page.token:
                log.warning(
                    "the status page at %s/ answers 403 until $%s holds its token (%s is not loopback)",
                    self.health_server.url,
                    s.status_token_env,
                    s.health_host,
                    extra={"event": "status_page_token_missing"},
                )
        scheduler = BackgroundScheduler(
            timezone=UTC,
            # One worker per job: with the shared work lock, a roster refresh waits for the cycle, not a slot.
            executors={"default": ThreadPoolExecutor(max_workers=2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        scheduler.add_job(
            self._cycle_job,
            IntervalTrigger(seconds=s.interval_seconds, timezone=UTC),
            id="cycle",
            name="sync cycle",
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            self._roster_job,
            IntervalTrigger(seconds=s.roster_interval_seconds, timezone=UTC),
            id="roster",
            name="roster refresh",
        )
        scheduler.start()
        self._scheduler = scheduler
        log.info(
            "syncd started (pid %d): a cycle every %gs, roster refresh every %gs",
            os.getpid(),
            s.interval_seconds,
            s.roster_interval_seconds,
            extra={
                "event": "started",
                "interval_seconds": s.interval_seconds,
                "roster_interval_seconds": s.roster_interval_seconds,
            },
        )

    def status_page(self) -> StatusPage:
        """The status page served at / beside /healthz (read-only; a token off loopback)."""
        s = self.settings
        return StatusPage(
            ledger_path=s.ledger_path,
            rules_directory=s.watch_paths[0] if s.watch_paths else Path("."),
            links=self.status_links,
            rules=lambda: self.rules,
            rules_state=self.health.rules_state,
            clock=self._clock,
            progress=self.progress.snapshot,
            require_token=not is_loopback(s.health_host),
            token=os.environ.get(s.status_token_env) or None,
            token_env=s.status_token_env,
        )

    def request_stop(self, *, force: bool = False) -> None:
        """Ask the daemon to stop after the current batch (safe from any thread)."""
        if force:
            self._force.set()
        self.stop_event.set()
        self._wake.set()

    def request_reload(self) -> None:
        """Ask the main loop to reload the rules now (safe from any thread)."""
        self._reload_requested.set()
        self._wake.set()

    def serve(self, *, install_signals: bool = True) -> int:
        """Run until stopped, reloading rules as asked; then shut down. Returns the exit code."""
        previous: dict[int, Any] = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            poll = self.settings.reload_poll_seconds
            # The loop also wakes now and then so a stop_event set directly by a caller is noticed.
            tick = min(poll, 1.0) if poll > 0 else 1.0
            next_poll = self._monotonic() + poll
            while not self.stop_event.is_set():
                self._wake.wait(tick)
                self._wake.clear()
                if self.stop_event.is_set():
                    break
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    self.reload_rules(f"{self._reload_signal or 'reload'} requested")
                elif poll > 0 and self._monotonic() >= next_poll:
                    next_poll = self._monotonic() + poll
                    self.check_rules_files()
            if self._stop_signal:
                log.info(
                    "%s received: finishing the current batch, then stopping",
                    self._stop_signal,
                    extra={"event": "stopping", "signal": self._stop_signal},
                )
            return self.shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            self._reload_signal = name
            self.request_reload()
        else:
            self._stop_signal = name
            self.request_stop(force=self.stop_event.is_set())

    def shutdown(self) -> int:
        """Stop scheduling, wait (bounded) for the running job, close the runner. Returns the exit code."""
        self.stop_event.set()
        if self._scheduler is not None and self._scheduler.running:
            # wait=False: the bounded wait below is ours; APScheduler's would wait forever.
            self._scheduler.shutdown(wait=False)
        timeout = self.settings.shutdown_timeout_seconds
        deadline = self._monotonic() + timeout
        while not self._idle.is_set() and not self._force.is_set():
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                break
            self._idle.wait(min(remaining, 0.25))
        if self.health_server is not None:
            self.health_server.stop()
            self.health_server = None
        if self.notifier is not None:
            # Queued notifications get a short, bounded chance; backoff waits are cut short.
            self.notifier.close(timeout=min(5.0, timeout))
        started, self._scheduler = self._scheduler is not None, None
        if not self._idle.is_set():
            self.stuck = True
            why = "a second signal" if self._force.is_set() else f"{timeout:g}s"
            log.error(
                "the running cycle did not finish before %s; exiting anyway (the next start resumes from "
                "the ledger)",
                why,
                extra={"event": "stopped", "clean": False},
            )
            return EXIT_STOP_TIMEOUT
        close = getattr(self.runner, "close", None)
        self.runner = None
        if callable(close):
            try:
                close()
            except Exception as exc:
                log.exception("closing the cycle runner failed: %s", exc)
        if started:
            log.info("syncd stopped", extra={"event": "stopped", "clean": True})
        return EXIT_OK

    # ---- jobs --------------------------------------------------------------------------------------

    def _enter(self) -> bool:
        with self._active_lock:
            if self.stop_event.is_set():
                return False
            self._active += 1
            self._idle.clear()
            return True

    def _leave(self) -> None:
        with self._active_lock:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    def _cycle_job(self) -> None:
        if not self._enter():
            return
        try:
            with self._work_lock:
                if not self._roster_refreshed:
                    # The first cycle routes with a fresh roster rather than waiting a roster interval.
                    self._refresh_roster()
                if not self.stop_event.is_set():
                    self.run_cycle_now()
        finally:
            self._leave()

    def _roster_job(self) -> None:
        if not self._enter():
            return
        try:
            with self._work_lock:
                if not self.stop_event.is_set():
                    self._refresh_roster()
        finally:
            self._leave()

    def _started_runner(self) -> CycleRunner[RulesT]:
        if self.runner is None:
            raise RuntimeError("the daemon has no runner yet: call start() first")
        return self.runner

    def _refresh_roster(self) -> None:
        runner = self._started_runner()
        try:
            runner.refresh_roster()
        except SyncdError as exc:
            log.warning(
                "roster refresh failed, the last known roster stays: %s",
                exc,
                extra={"event": "roster", "ok": False},
            )
            self.metrics.observe_roster_refresh(ok=False)
            return
        except Exception as exc:
            log.exception("roster refresh failed, the last known roster stays: %s", exc)
            self.metrics.observe_roster_refresh(ok=False)
            return
        self._roster_refreshed = True
        self.metrics.observe_roster_refresh(ok=True)
        log.debug("roster refreshed", extra={"event": "roster", "ok": True})

    def run_cycle_now(self) -> CycleSummary | None:
        """Run one cycle with the live rules and record it (metrics, health, the summary log line).

        The scheduler calls this under the work lock; returns the summary, or None if the cycle failed.
        """
        runner = self._started_runner()
        rules = self.rules
        self._cycle_number += 1
        number = self._cycle_number
        self.health.cycle_started()
        started = self._monotonic()
        try:
            summary = call_with_progress(
                runner.run_cycle, rules, stop=self.stop_event, progress=self.progress
            )
        except Exception as exc:
            self.progress.finish()
            self._cycle_failed(number, self._monotonic() - started, exc)
            return None
        self.progress.finish()
        duration = self._monotonic() - started
        outcome = "interrupted" if summary.interrupted else "ok"
        self.metrics.observe_cycle(
            summary, outcome=outcome, duration=duration, ended_at=self._clock().timestamp()
        )
        self.health.cycle_ended(outcome=outcome, reachable=summary.reachable)
        overran = duration > self.settings.interval_seconds
        log.info(
            "cycle %d %s in %.1fs: %s%s",
            number,
            outcome,
            duration,
            summary.describe(),
            f" (longer than the {self.settings.interval_seconds:g}s interval: the ticks it spanned were skipped)"
            if overran
            else "",
            extra={
                "event": "cycle",
                "cycle": number,
                "outcome": outcome,
                "duration_seconds": round(duration, 3),
                "overran": overran,
                "summary": summary.log_fields(),
            },
        )
        if self.notifier is not None:
            self.notifier.cycle_succeeded(number, summary)
        return summary

    def _cycle_failed(self, number: int, duration: float, exc: Exception) -> None:
        reachable: dict[str, bool] = {}
        if isinstance(exc, ConnectorError) and exc.system and exc.status is None:
            # No HTTP answer at all (refused, reset, timed out): the system is unreachable from here.
            reachable[exc.system] = False
        message = str(exc) if isinstance(exc, SyncdError) else f"{type(exc).__name__}: {exc}"
        lasting = lasting_failure(exc)
        fields = {
            "event": "cycle",
            "cycle": number,
            "outcome": "failed",
            "duration_seconds": round(duration, 3),
            "error_type": type(exc).__name__,
            "lasting": lasting,
        }
        if isinstance(exc, SyncdError):
            log.error("cycle %d failed after %.1fs: %s", number, duration, message, extra=fields)
        else:
            # Not one of ours: a bug, so keep the traceback.
            log.error(
                "cycle %d failed after %.1fs: %s", number, duration, message, exc_info=exc, extra=fields
            )
        self.metrics.observe_cycle(
            None, outcome="failed", duration=duration, ended_at=self._clock().timestamp()
        )
        self.health.cycle_ended(outcome="failed", reachable=reachable, error=redact(message), lasting=lasting)
        if self.notifier is not None:
            self.notifier.cycle_failed(number, exc)


def run_daemon(
    settings: DaemonSettings,
    runner_factory: Callable[[], CycleRunner[RulesT]],
    rules_loader: Callable[[], RulesT],
    *,
    stop_event: threading.Event | None = None,
    install_signals: bool = True,
    metrics: Metrics | None = None,
    notifier: Notifier | None = None,
    status_links: Links | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or ``stop_event``); return the process exit code.

    Refusals to start raise: LockedError (another syncd holds the ledger), MappingError (invalid rules,
    each problem logged first), ConfigError (health port unavailable). A runner that does not finish its
    batch within the shutdown timeout makes the process exit at once with code 1 (its threads cannot be
    joined; the ledger's crash safety covers the rest).
    """
    lock = LedgerLock(settings.ledger_path).acquire()
    daemon: Daemon[RulesT] = Daemon(
        settings,
        runner_factory,
        rules_loader,
        metrics=metrics,
        stop_event=stop_event,
        status_links=status_links,
    )
    try:
        try:
            daemon.start()
        except BaseException:
            daemon.shutdown()
            raise
        code = daemon.serve(install_signals=install_signals)
    finally:
        if not daemon.stuck:
            lock.release()
    if daemon.stuck:
        logging.shutdown()
        os._exit(code)
    return code
