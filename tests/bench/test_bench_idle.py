"""Benchmark: an idle org (issue 9's idle targets).

Seeds a sandbox org (20,000 persons; ``SYNCD_BENCH_IDLE_PERSONS`` for another size), runs a first cycle and
the cycle that reads its writes back, then lets the org stand idle for longer than the look-back and runs a
simulated daemon over it: a cycle every 60 s and a roster refresh every ``roster_interval_seconds`` (900 s),
as ``syncd run`` schedules them, for ``SYNCD_BENCH_IDLE_HOURS`` hours (default 2). Calls per day are the
window's calls scaled to 24 h: every periodic task runs in the window at its real frequency (the roster
refresh every 15 minutes, HubSpot's owners every 2, its archived listing every 15, the field limits hourly;
each period divides 2 h), so nothing is estimated from one cycle. ``SYNCD_BENCH_IDLE_HOURS=24`` simulates the
whole day, the daily re-score included (its writes and their echoes are then counted too).

No wall-clock sleeping: the sandbox and syncd share one injected clock, the wall clock plus an offset that the
benchmark moves 60 s before each simulated cycle (the sandbox stamps records and answers ``Date`` from it,
syncd stamps its runs and anchors watermarks to it).

API calls are counted twice: by the connectors' per-request counters and by the sandbox's own request counts
(``/__sandbox/counts``); the two must agree. It prints a table per system and asserts the idle targets.

    .venv/bin/python -m pytest -m bench -s -p no:xdist tests/bench/test_bench_idle.py
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_crash import config_text

from syncd.config import load_config
from syncd.core.rules import load_ruleset
from syncd.core.systems import PULLED, SYSTEMS
from syncd.cycle import SyncCycle
from syncd.sandbox.runtime import Sandbox, write_info

ROOT = Path(__file__).resolve().parents[2]
PERSONS = int(os.environ.get("SYNCD_BENCH_IDLE_PERSONS", "20000"))
# Simulated hours: 2 by default (every periodic task's period divides 2 h, so the window holds each at its
# real frequency; the day is the window's calls times 12); 24 runs the whole day, daily re-score included.
HOURS = float(os.environ.get("SYNCD_BENCH_IDLE_HOURS", "2"))
INTERVAL = 60.0  # the daemon's default interval_seconds
DAY = 86_400.0
# Issue 9's targets.
SF_PER_DAY, HS_PER_DAY = 2_000, 6_000
IDLE_SECONDS_100K = 1.0


class ShiftedClock:
    """The wall clock plus an offset the benchmark moves: the sandbox's ``clock`` (epoch seconds) and syncd's
    (an aware datetime) read the same time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Tally:
    """What a stretch of simulated time cost, per system."""

    cycles: int = 0
    idle_cycles: int = 0
    # Records read by cycles with no write of syncd's in the look-back before them (re-reads), and by the
    # others (the echoes of the day's writes, e.g. after the daily re-score).
    reread: Counter[str] = field(default_factory=Counter)
    pulled: Counter[str] = field(default_factory=Counter)
    composites: list[int] = field(default_factory=list)
    searches: list[int] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    kinds: dict[str, Counter[str]] = field(default_factory=lambda: {s: Counter() for s in SYSTEMS})
    pushed: Counter[str] = field(default_factory=Counter)
    decided: int = 0
    seconds: list[float] = field(default_factory=list)
    per_cycle: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in SYSTEMS})
    stages: dict[str, list[float]] = field(default_factory=dict)
    refreshes: int = 0
    refresh_calls: Counter[str] = field(default_factory=Counter)


def _counts(cycle: SyncCycle) -> dict[str, Counter[str]]:
    return {s: Counter(cycle.connectors[s].call_counts()) for s in SYSTEMS}


def _spent(before: dict[str, Counter[str]], after: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
    return {s: after[s] - before[s] for s in SYSTEMS}


def _sandbox_total(box: Sandbox, system: str) -> int:
    return int(box.control(system, "GET", "counts")["total"])


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory of this test's own: pytest's tmp_path keeps the last three runs of every session on the
    machine, so another session's tests may delete it under a long benchmark."""
    with tempfile.TemporaryDirectory(prefix="syncd-bench-idle-") as name:
        yield Path(name)


@pytest.mark.bench
@pytest.mark.timeout(7200)
def test_bench_idle_daemon_day(make_sandbox: Callable[..., Sandbox], workdir: Path) -> None:
    tmp_path = workdir
    clock = ShiftedClock()
    began = time.perf_counter()
    box = make_sandbox(persons=PERSONS, rate_limits=False, clock=clock.time)
    print(f"\nsandbox with {PERSONS:,} persons seeded in {time.perf_counter() - began:.1f} s")
    info = tmp_path / "info.json"
    write_info(info, box.info())
    config_path = tmp_path / "config.toml"
    config_path.write_text(config_text(info, tmp_path / "syncd.db"))
    config = load_config(config_path)
    rules = load_ruleset(ROOT / "mappings")
    roster_every = config.daemon.roster_interval_seconds
    lookback = max(config.salesforce.lookback_seconds, config.hubspot.lookback_seconds)

    with SyncCycle.from_config(config, clock=clock.now) as cycle:
        began = time.perf_counter()
        cycle.refresh_roster()
        first = cycle.run(rules)
        print(
            f"first cycle: {time.perf_counter() - began:.1f} s, pulled {dict(first.pulled)}, "
            f"pushed {dict(first.pushed)}, calls {first.api_calls}"
        )
        clock.advance(INTERVAL)
        second = cycle.run(rules)  # the first cycle's writes coming back
        print(f"second cycle (echoes): pulled {dict(second.pulled)}, pushed {dict(second.pushed)}")
        # Idle from here on: nothing changes in either system for longer than the look-back.
        clock.advance(lookback + INTERVAL)
        settle = cycle.run(rules)
        print(f"settling cycle: pulled {dict(settle.pulled)}, pushed {dict(settle.pushed)}")

        sandbox_before = {s: _sandbox_total(box, s) for s in SYSTEMS}
        tally = Tally()
        simulated = 0.0
        next_roster = roster_every
        last_write: float | None = None
        steps = math.floor(HOURS * 3600 / INTERVAL)
        for _ in range(steps):
            clock.advance(INTERVAL)
            simulated += INTERVAL
            if simulated >= next_roster:
                # The daemon's roster job (syncd.daemon: every roster_interval_seconds, never beside a cycle).
                next_roster += roster_every
                before = _counts(cycle)
                cycle.refresh_roster()
                spent = _spent(before, _counts(cycle))
                tally.refreshes += 1
                for s in SYSTEMS:
                    tally.refresh_calls[s] += sum(spent[s].values())
                    tally.calls[s] += sum(spent[s].values())
                    tally.kinds[s].update({f"(roster) {k}": v for k, v in spent[s].items()})
            before = _counts(cycle)
            t0 = time.perf_counter()
            report = cycle.run(rules, stop=threading.Event())
            tally.seconds.append(time.perf_counter() - t0)
            for stage, took in report.seconds.items():
                tally.stages.setdefault(stage, []).append(took)
            spent = _spent(before, _counts(cycle))
            tally.cycles += 1
            tally.decided += sum(report.decided.values())
            quiet = last_write is None or simulated - last_write > lookback + INTERVAL
            if quiet:
                tally.idle_cycles += 1
                tally.composites.append(spent["salesforce"]["POST composite"])
                tally.searches.append(spent["hubspot"]["search"])
            for s in SYSTEMS:
                n = sum(spent[s].values())
                tally.calls[s] += n
                tally.per_cycle[s].append(n)
                tally.kinds[s].update(spent[s])
                tally.pulled[s] += report.pulled[s]
                tally.pushed[s] += report.pushed[s]
                if quiet:
                    tally.reread[s] += report.pulled[s]
            if sum(report.pushed.values()):
                last_write = simulated
        sandbox_calls = {s: _sandbox_total(box, s) - sandbox_before[s] for s in SYSTEMS}

    scale = DAY / (tally.cycles * INTERVAL)
    per_day = {s: tally.calls[s] * scale for s in SYSTEMS}
    idle = sorted(tally.seconds)
    print(
        f"\nidle daemon simulated for {tally.cycles} cycles of {INTERVAL:.0f} s ({HOURS:g} h), "
        f"{PERSONS:,} persons; roster refresh every {roster_every:.0f} s ({tally.refreshes} in the window)"
    )
    header = (
        f"{'system':<11}{'pulled objs':>12}{'re-read':>9}{'read':>7}{'pushed':>8}"
        f"{'calls/cycle min/median/mean/max':>33}{'roster calls':>14}{'calls':>8}{'sandbox saw':>13}"
        f"{'calls/day':>11}{'target':>8}"
    )
    print(header)
    print("-" * len(header))
    for s, target in (("salesforce", SF_PER_DAY), ("hubspot", HS_PER_DAY)):
        pc = tally.per_cycle[s]
        spread = f"{min(pc)} / {statistics.median(pc):g} / {statistics.mean(pc):.2f} / {max(pc)}"
        print(
            f"{s:<11}{len(PULLED[s]):>12}{tally.reread[s]:>9}{tally.pulled[s]:>7}{tally.pushed[s]:>8}"
            f"{spread:>33}{tally.refresh_calls[s]:>14}{tally.calls[s]:>8}{sandbox_calls[s]:>13}"
            f"{per_day[s]:>11.0f}{target:>8}"
        )
    print(
        f"{tally.idle_cycles} of {tally.cycles} cycles had no write of syncd's in the look-back before them "
        f"(re-read counts their reads); {tally.decided} decisions made in the window "
        f"(the daily re-score falls in a 24 h window)"
    )
    print(
        f"cycle wall time: median {statistics.median(idle) * 1000:.0f} ms, "
        f"p95 {idle[int(0.95 * (len(idle) - 1))] * 1000:.0f} ms, max {idle[-1] * 1000:.0f} ms; "
        "median per stage: "
        + ", ".join(f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in tally.stages.items())
    )
    for s in SYSTEMS:
        print(f"{s} calls by kind in the window:")
        for kind, n in sorted(tally.kinds[s].items(), key=lambda kv: -kv[1]):
            print(f"    {n:>6}  {kind}  (~{n * scale:.0f}/day)")

    # Both counts of the same requests agree (the connectors count every HTTP request they make).
    assert tally.calls == Counter(sandbox_calls)
    # A cycle with no change in the look-back before it reads nothing.
    assert tally.idle_cycles > 0
    assert sum(tally.reread.values()) == 0, tally.reread
    # Salesforce: every idle cycle's pull is one /composite request, nothing more (the median cycle makes
    # one call: the others also read the field limits hourly); HubSpot: one search per pulled object.
    assert set(tally.composites) == {1}, Counter(tally.composites)
    assert statistics.median(tally.per_cycle["salesforce"]) == 1
    assert max(tally.searches) <= len(PULLED["hubspot"]), Counter(tally.searches)
    # The day, every periodic task included.
    assert per_day["salesforce"] <= SF_PER_DAY
    assert per_day["hubspot"] <= HS_PER_DAY
    if PERSONS >= 100_000:
        assert statistics.median(idle) < IDLE_SECONDS_100K
