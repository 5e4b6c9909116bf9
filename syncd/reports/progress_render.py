"""Renderers of ``syncd.progress``: a rich progress bar for the CLI, a log line every few seconds for the
daemon, and the running stage as JSON (``/healthz``) and as Prometheus gauges (``/metrics``).

Each renderer only listens (``Progress.subscribe``) or reads (``Progress.snapshot``); the work reports through
``stage``/``advance``/``finish`` and never knows who watches::

    progress = Progress()
    with ProgressBar(progress):             # draws on a terminal, silent otherwise
        cycle.run(rules, progress=progress)
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TextIO, TypeVar

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from syncd.progress import Progress, Snapshot
from syncd.reports.fmt import duration, num, rate

__all__ = [
    "LogRenderer",
    "ProgressBar",
    "ProgressCollector",
    "call_with_progress",
    "describe",
    "on_terminal",
    "snapshot_json",
    "takes_progress",
]

T = TypeVar("T")


def describe(snap: Snapshot) -> str:
    """One line about where the work stands: ``pull: 2,000 of 20,000 (10%), 1,234/s, about 15 s left``."""
    if snap.stage is None:
        return "idle"
    done = num(snap.done) if snap.total is None else f"{num(snap.done)} of {num(snap.total)}"
    parts = [f"{snap.stage}: {done}"]
    if snap.fraction is not None:
        parts[0] += f" ({snap.fraction:.0%})"
    if snap.done:
        parts.append(rate(snap.rate))
    if snap.running and snap.eta:
        parts.append(f"about {duration(snap.eta)} left")
    if not snap.running:
        parts.append("finished")
    return ", ".join(parts)


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    """The running stage for ``/healthz``: stage, done, total (None when unknown), rate and ETA."""
    return {
        "running": snap.running,
        "stage": snap.stage,
        "done": snap.done,
        "total": snap.total,
        "elapsed_seconds": round(snap.elapsed, 3),
        "rate_per_second": round(snap.rate, 3),
        "eta_seconds": None if snap.eta is None else round(snap.eta, 1),
    }


# ------------------------------------------------------------------------------------------------ the CLI's bar


def on_terminal(*streams: TextIO) -> bool:
    """Whether every stream is an interactive terminal (a bar piped into a file or CI log is noise)."""
    for stream in streams or (sys.stdout, sys.stderr):
        isatty = getattr(stream, "isatty", None)
        if not callable(isatty) or not isatty():
            return False
    return True


class _CountColumn(ProgressColumn):
    """``2,000/20,000`` (or ``2,000`` while the total is unknown), in the one number format."""

    def render(self, task: Task) -> Text:
        count = int(task.fields.get("count", task.completed))
        done = num(count)
        if task.total is None or not task.total or task.fields.get("open_ended"):
            return Text(done if count else "", style="progress.download")
        return Text(f"{done}/{num(int(task.total))}", style="progress.download")


class _RateColumn(ProgressColumn):
    """The stage's rate and time left, as ``syncd.progress.Snapshot`` computes them."""

    def render(self, task: Task) -> Text:
        snap: Snapshot | None = task.fields.get("snapshot")
        if snap is None or not snap.done:
            return Text("")
        left = f", {duration(snap.eta)} left" if snap.running and snap.eta else ""
        return Text(f"{rate(snap.rate)}{left}", style="progress.data.speed")


class ProgressBar:
    """A rich progress bar on stderr, one line per stage, drawn only when stdout and stderr are terminals.

    Use as a context manager around the work; ``enabled`` forces it on or off (tests pass a console).
    """

    def __init__(
        self,
        progress: Progress,
        *,
        console: Console | None = None,
        enabled: bool | None = None,
        transient: bool = False,
    ) -> None:
        self.progress = progress
        self.enabled = on_terminal() if enabled is None else enabled
        # soft_wrap: log lines printed above the bar keep their length (a log line is one line).
        self._console = console or Console(stderr=True, soft_wrap=True)
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._stage: str | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._transient = transient
        self._repointed: list[tuple[logging.StreamHandler[Any], Any]] = []

    def __enter__(self) -> ProgressBar:
        if not self.enabled:
            return self
        self._bar = RichProgress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            _CountColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            console=self._console,
            transient=self._transient,
            refresh_per_second=8,
        )
        before = sys.stderr, sys.stdout
        self._bar.start()
        self._repoint_log_handlers(before)
        self._unsubscribe = self.progress.subscribe(self.update)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._bar is not None:
            self._finish_task()
            self._bar.stop()
            for handler, stream in self._repointed:
                handler.setStream(stream)
            self._repointed.clear()

    def _repoint_log_handlers(self, before: tuple[TextIO, TextIO]) -> None:
        # While the bar is live rich routes sys.stderr/stdout through itself so that lines print above the
        # bar; a log handler holds the stream it was given at setup, so it is pointed at the proxy meanwhile.
        proxies = {id(before[0]): sys.stderr, id(before[1]): sys.stdout}
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in proxies:
                proxy = proxies[id(handler.stream)]
                if proxy is not handler.stream:
                    self._repointed.append((handler, handler.setStream(proxy)))

    def update(self, snap: Snapshot) -> None:
        """Listener: a new stage opens a new line; an advance moves the current one."""
        bar = self._bar
        if bar is None or snap.stage is None:
            return
        with self._lock:
            if snap.stage != self._stage or self._task is None:
                self._finish_task()
                self._stage = snap.stage
                self._task = bar.add_task(snap.stage, total=snap.total, snapshot=snap, open_ended=False)
            bar.update(self._task, completed=snap.done, total=snap.total, snapshot=snap)
            if not snap.running:
                self._finish_task()

    def _finish_task(self) -> None:
        if self._bar is None or self._task is None:
            return
        task = self._bar.tasks[self._task] if self._task < len(self._bar.tasks) else None
        if task is not None and task.total is None:
            # An open-ended stage is complete when it ends: show a full bar rather than a pulsing one.
            self._bar.update(
                self._task,
                total=max(task.completed, 1),
                completed=max(task.completed, 1),
                open_ended=True,
                count=int(task.completed),
            )
        elif task is not None:
            self._bar.update(self._task, completed=task.total)
        self._bar.stop_task(self._task)
        self._task = None
        self._stage = None


# ------------------------------------------------------------------------------------------------ the daemon's log


class LogRenderer:
    """Logs where a long cycle stands every ``every`` seconds (the first line after ``every`` seconds, so a
    short cycle logs nothing). ``clock`` is injectable: tests move it by hand."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every = every
        self.clock = clock
        self._next: float | None = None
        self._lock = threading.Lock()

    def __call__(self, snap: Snapshot) -> None:
        now = self.clock()
        with self._lock:
            if not snap.running:
                self._next = None
                return
            if self._next is None:
                self._next = now + self.every
                return
            if now < self._next:
                return
            self._next = now + self.every
        self.logger.info(
            "cycle progress: %s",
            describe(snap),
            extra={"event": "progress", "progress": snapshot_json(snap)},
        )


# ------------------------------------------------------------------------------------------------ /metrics


class ProgressCollector(Collector):
    """``syncd_progress_done`` and ``syncd_progress_total`` (label ``stage``): the running stage, or the last
    one once the cycle is over (stage "none" before any); a total not known yet is NaN. ``snapshot`` is read
    at each scrape (``Progress.snapshot``)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.snapshot()
        stage = [snap.stage or "none"]
        done = GaugeMetricFamily(
            "syncd_progress_done", "Units done by the running (or last) stage of a cycle.", labels=["stage"]
        )
        done.add_metric(stage, float(snap.done))
        total = GaugeMetricFamily(
            "syncd_progress_total",
            "Estimated units of the running (or last) stage of a cycle; NaN while unknown.",
            labels=["stage"],
        )
        total.add_metric(stage, float("nan") if snap.total is None else float(snap.total))
        yield done
        yield total


def takes_progress(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts a ``progress=`` argument."""
    try:
        return "progress" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def call_with_progress(fn: Callable[..., T], *args: Any, progress: Progress, **kwargs: Any) -> T:
    """Call ``fn``, passing ``progress=`` when it takes one.

    The hook between the renderers and the work: ``SyncCycle.run`` and the daemon's runners take
    ``progress=`` once their stages report (a runner written before that is called as it was).
    """
    if takes_progress(fn):
        return fn(*args, progress=progress, **kwargs)
    return fn(*args, **kwargs)
