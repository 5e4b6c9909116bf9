"""What one sync cycle counted, and the Prometheus metrics the daemon exports from it.

The cycle fills a ``CycleSummary``; the daemon hands it to ``Metrics.observe_cycle`` and logs it as the one
summary line of the cycle. Metrics live in their own ``CollectorRegistry`` (not prometheus-client's global
one) so that two daemons in one process, as in tests, never share counters.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from syncd.core.systems import SYSTEMS
from syncd.progress import NULL, Progress
from syncd.reports.progress_render import ProgressCollector

CYCLE_OUTCOMES: Final = ("ok", "interrupted", "failed")
RELOAD_OUTCOMES: Final = ("ok", "refused")

# Every name /metrics exposes (counters with their `_total` suffix), in the order deploy/README.md lists them.
METRIC_NAMES: Final = (
    "syncd_cycles_total",
    "syncd_cycle_duration_seconds",
    "syncd_last_good_cycle_timestamp_seconds",
    "syncd_records_pulled_total",
    "syncd_records_decided_total",
    "syncd_records_pushed_total",
    "syncd_records_created_total",
    "syncd_records_failed_total",
    "syncd_api_calls_total",
    "syncd_api_rate_limited_total",
    "syncd_api_budget_used_ratio",
    "syncd_quarantine_records",
    "syncd_handoffs_total",
    "syncd_overrides_total",
    "syncd_roster_refreshes_total",
    "syncd_rules_reloads_total",
    "syncd_rules_loaded_timestamp_seconds",
    "syncd_progress_done",
    "syncd_progress_total",
)

# Cycles last from under a second (nothing changed) to many minutes (a first full sync of a large org).
_DURATION_BUCKETS: Final = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass
class CycleSummary:
    """Counters of one sync cycle, per system where the work is per system ("salesforce", "hubspot").

    The cycle fills it as it goes; the daemon reads it once the cycle returns. ``interrupted`` says the
    cycle stopped early because the daemon was asked to stop (the work done so far is committed).
    ``reachable`` holds, per system, whether its API answered at all during the cycle (absent: not tried).
    ``quarantined`` is the size of the quarantine after the cycle, not the number added by it.
    ``rate_limited`` counts responses that refused a call for a rate limit (429s, retried ones included);
    ``assigned`` the new assignments (owner changed or first set) per owner, for notifications.
    """

    pulled: dict[str, int] = field(default_factory=dict)
    decided: int = 0
    pushed: dict[str, int] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)
    rate_limited: dict[str, int] = field(default_factory=dict)
    budget_used: dict[str, float] = field(default_factory=dict)
    quarantined: int = 0
    handoffs: int = 0
    overrides: int = 0
    reachable: dict[str, bool] = field(default_factory=dict)
    assigned: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False

    def log_fields(self) -> dict[str, object]:
        """The summary as plain values for a structured log line."""
        return {
            "pulled": dict(self.pulled),
            "decided": self.decided,
            "pushed": dict(self.pushed),
            "created": dict(self.created),
            "failed": dict(self.failed),
            "api_calls": dict(self.api_calls),
            "rate_limited": dict(self.rate_limited),
            "budget_used": {k: round(v, 4) for k, v in self.budget_used.items()},
            "quarantined": self.quarantined,
            "handoffs": self.handoffs,
            "overrides": self.overrides,
            "interrupted": self.interrupted,
        }

    def describe(self) -> str:
        """One readable line: what moved, per system, in the order a cycle does it."""

        def per_system(counts: Mapping[str, int]) -> str:
            return " ".join(f"{_SHORT.get(k, k)}={v}" for k, v in sorted(counts.items())) or "0"

        return (
            f"pulled {per_system(self.pulled)}, decided {self.decided}, pushed {per_system(self.pushed)}, "
            f"created {per_system(self.created)}, failed {per_system(self.failed)}, "
            f"hand-offs {self.handoffs}, overrides {self.overrides}, quarantined {self.quarantined}, "
            f"api calls {per_system(self.api_calls)} (429s {sum(self.rate_limited.values())})"
        )


_SHORT: Final = {"salesforce": "sf", "hubspot": "hs"}


class Metrics:
    """The daemon's Prometheus metrics, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        r = self.registry
        # The running stage of a cycle (the daemon sets its Progress here); read at each scrape.
        self.progress: Progress = NULL
        r.register(ProgressCollector(lambda: self.progress.snapshot()))
        self.cycles = Counter("syncd_cycles", "Sync cycles run, by outcome.", ["outcome"], registry=r)
        self.cycle_duration = Histogram(
            "syncd_cycle_duration_seconds", "Wall time of sync cycles.", buckets=_DURATION_BUCKETS, registry=r
        )
        self.last_good_cycle = Gauge(
            "syncd_last_good_cycle_timestamp_seconds",
            "Unix time at which the last successful cycle ended.",
            registry=r,
        )
        self.pulled = Counter("syncd_records_pulled", "Records pulled, per system.", ["system"], registry=r)
        self.decided = Counter("syncd_records_decided", "People and accounts decided.", registry=r)
        self.pushed = Counter("syncd_records_pushed", "Records updated, per system.", ["system"], registry=r)
        self.created = Counter(
            "syncd_records_created", "Records created, per system.", ["system"], registry=r
        )
        self.failed = Counter(
            "syncd_records_failed", "Record writes the system rejected, per system.", ["system"], registry=r
        )
        self.api_calls = Counter("syncd_api_calls", "API calls made, per system.", ["system"], registry=r)
        self.rate_limited = Counter(
            "syncd_api_rate_limited",
            "API calls answered with 429 (or Salesforce's REQUEST_LIMIT_EXCEEDED), per system.",
            ["system"],
            registry=r,
        )
        self.budget_used = Gauge(
            "syncd_api_budget_used_ratio",
            "Share of syncd's daily API budget already used, per system (0..1).",
            ["system"],
            registry=r,
        )
        self.quarantine = Gauge("syncd_quarantine_records", "Records held in quarantine.", registry=r)
        self.handoffs = Counter("syncd_handoffs", "Hand-offs between owning teams.", registry=r)
        self.overrides = Counter("syncd_overrides", "Manual owner changes detected and honoured.", registry=r)
        self.roster_refreshes = Counter(
            "syncd_roster_refreshes", "Roster refreshes, by outcome.", ["outcome"], registry=r
        )
        self.rules_reloads = Counter(
            "syncd_rules_reloads",
            "Attempts to reload the mapping and rules files, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.rules_loaded = Gauge(
            "syncd_rules_loaded_timestamp_seconds",
            "Unix time at which the live rule set was loaded.",
            registry=r,
        )
        # Pre-create the labelled series so that a scrape before the first cycle shows zeros, not gaps.
        for outcome in CYCLE_OUTCOMES:
            self.cycles.labels(outcome=outcome)
        for outcome in ("ok", "failed"):
            self.roster_refreshes.labels(outcome=outcome)
        for outcome in RELOAD_OUTCOMES:
            self.rules_reloads.labels(outcome=outcome)
        for system in SYSTEMS:
            for per_system in (
                self.pulled,
                self.pushed,
                self.created,
                self.failed,
                self.api_calls,
                self.rate_limited,
            ):
                per_system.labels(system=system)
            self.budget_used.labels(system=system)

    def observe_cycle(
        self, summary: CycleSummary | None, *, outcome: str, duration: float, ended_at: float
    ) -> None:
        """Record one cycle: its outcome, its duration and (when it returned one) its summary's counts.

        ``ended_at`` is a Unix time; it becomes the last-good-cycle timestamp when the outcome is "ok".
        """
        if outcome not in CYCLE_OUTCOMES:
            raise ValueError(f"unknown cycle outcome {outcome!r}")
        with self._lock:
            self.cycles.labels(outcome=outcome).inc()
            self.cycle_duration.observe(max(duration, 0.0))
            if outcome == "ok":
                self.last_good_cycle.set(ended_at)
            if summary is None:
                return
            for counter, counts in (
                (self.pulled, summary.pulled),
                (self.pushed, summary.pushed),
                (self.created, summary.created),
                (self.failed, summary.failed),
                (self.api_calls, summary.api_calls),
                (self.rate_limited, summary.rate_limited),
            ):
                for system, n in counts.items():
                    if n > 0:
                        counter.labels(system=system).inc(n)
            for system, ratio in summary.budget_used.items():
                self.budget_used.labels(system=system).set(ratio)
            if summary.decided > 0:
                self.decided.inc(summary.decided)
            if summary.handoffs > 0:
                self.handoffs.inc(summary.handoffs)
            if summary.overrides > 0:
                self.overrides.inc(summary.overrides)
            self.quarantine.set(summary.quarantined)

    def observe_roster_refresh(self, *, ok: bool) -> None:
        """Count one roster refresh."""
        self.roster_refreshes.labels(outcome="ok" if ok else "failed").inc()

    def observe_reload(self, *, ok: bool, loaded_at: float | None = None) -> None:
        """Count one reload attempt; a successful one also stamps the live rule set's load time."""
        self.rules_reloads.labels(outcome="ok" if ok else "refused").inc()
        if ok and loaded_at is not None:
            self.rules_loaded.set(loaded_at)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format, as /metrics serves it."""
        return generate_latest(self.registry)
