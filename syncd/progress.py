"""Progress of long work through one interface: the cycle's stages report, renderers listen.

A stage reports what it has done against an estimated total (``None`` when unknown)::

    progress.stage("pull", total=20_000)     # a new stage starts
    progress.advance(2_000)                  # 2,000 more done
    progress.finish()                        # the work is over

Renderers subscribe (``progress.subscribe(listener)``) and receive a :class:`Snapshot` on every change: the
CLI draws a rich progress bar, the daemon logs a line every few seconds, ``/healthz`` and ``/metrics`` read
:meth:`Progress.snapshot`. Listeners must be quick; they are called on the reporting thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["NULL", "Progress", "Snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Where the work stands: the running stage, its done/total, its rate (units per second)."""

    stage: str | None
    done: int
    total: int | None
    elapsed: float
    running: bool

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, when the total is known."""
        if self.total is None or self.done <= 0 or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


Listener = Callable[[Snapshot], None]


class Progress:
    """Thread-safe holder of the current stage's progress, with listeners (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._stage: str | None = None
        self._done = 0
        self._total: int | None = None
        self._started = clock()
        self._running = False

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on every change; returns a function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def stage(self, name: str, total: int | None = None) -> None:
        """A new stage starts (its done count starts at 0)."""
        with self._lock:
            self._stage, self._done, self._total = name, 0, total
            self._started = self._clock()
            self._running = True
        self._emit()

    def set_total(self, total: int | None) -> None:
        """A better estimate of the running stage's total."""
        with self._lock:
            self._total = total
        self._emit()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self._done += n
        self._emit()

    def finish(self) -> None:
        with self._lock:
            self._running = False
        self._emit()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                self._stage, self._done, self._total, self._clock() - self._started, self._running
            )

    def _emit(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        if not listeners:
            return
        snap = self.snapshot()
        for listener in listeners:
            listener(snap)


class _NullProgress(Progress):
    """Progress that nobody watches (the default of library callers)."""

    def _emit(self) -> None:
        return None


NULL: Progress = _NullProgress()
