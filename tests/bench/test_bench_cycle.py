"""Benchmarks of the sync cycle (`make bench`; they print their figures).

- A first `syncd once` on a 100,000-person org with rate limits off: wall time, API calls against the
  fewest the batch sizes allow, peak RSS of the syncd process; then the wall time of a cycle with nothing to do.
- The crash scenario of tests/e2e/test_crash.py on a 20,000-person org: 30 SIGKILLs at random moments.

The sandbox runs in its own process (`syncd sandbox serve`), and so does `syncd once`, as in production.
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_crash import ONCE, ROOT, config_text, crash_scenario, serve, twin_sandboxes

from syncd.ledger import Ledger

PERSONS = 100_000
# Records per API call when syncd pulls and pushes (the APIs' maxima).
SF_PAGE, HS_PAGE = 2_000, 200
SF_BATCH, HS_BATCH = 200, 100


# The child reports its own VmHWM (ru_maxrss from wait4 would include the pytest process's resident set,
# which Linux carries across fork and exec into the child's high-water mark), its CPU seconds and the bytes it
# had written to storage (/proc/self/io write_bytes) as it exits. argv: the fixed time, the config, the command.
MEASURED = (
    "import atexit, os, sys\n"
    "def _report():\n"
    "    t = os.times()\n"
    "    sys.stderr.write('\\nCPU_S=%f\\n' % (t.user + t.system))\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('VmHWM_KB=' + line.split()[1] + '\\n')\n"
    "    for line in open('/proc/self/io'):\n"
    "        if line.startswith('write_bytes:'):\n"
    "            sys.stderr.write('WRITE_BYTES=' + line.split()[1] + '\\n')\n"
    "atexit.register(_report)\n"
    + ONCE.replace('args=["once", "--config", sys.argv[2]]', 'args=[sys.argv[3], "--config", sys.argv[2]]')
)
assert MEASURED.count("sys.argv[3]") == 1


@dataclass
class Measured:
    """One `syncd` command in its own process, measured from outside (wall) and from inside (the rest)."""

    code: int
    text: str
    seconds: float
    rss_mb: float
    cpu: float
    write_bytes: int


def once(config: Path, now: datetime, command: str = "once") -> Measured:
    """`syncd once` (or ``command``) in its own process, to its end."""
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", MEASURED, now.isoformat(), str(config), command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=config.parent,
    )
    out, err = process.communicate(timeout=1800)
    seconds = time.monotonic() - began
    text = out.decode() + err.decode()
    marks = dict(line.split("=", 1) for line in text.splitlines() if line.startswith(_MARKS))
    assert len(marks) == len(_MARKS), f"the syncd process did not report its figures: {text[-500:]}"
    return Measured(
        process.returncode,
        text,
        seconds,
        int(marks["VmHWM_KB"]) / 1024,
        float(marks["CPU_S"]),
        int(marks["WRITE_BYTES"]),
    )


_MARKS = ("VmHWM_KB=", "CPU_S=", "WRITE_BYTES=")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ledger_bytes(path: Path) -> int:
    """The ledger's size on disk: the database file and its WAL."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def ledger_used(path: Path) -> int:
    """Bytes of the ledger in use (pages minus free pages, the WAL's latest commits included)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        pages, free, size = (
            int(conn.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_count", "freelist_count", "page_size")
        )
    finally:
        conn.close()
    return (pages - free) * size


def floor(*args: str) -> dict[str, Any]:
    """One half of the floor (tests/bench/bench_floor.py) in its own process."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("bench_floor.py")), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def minimum_calls(ledger: Ledger, run_id: str) -> dict[str, int]:
    """The fewest calls a first cycle could make: pages of records pulled, batches of records written,
    and the roster (Salesforce users and queues; HubSpot owners, active and archived)."""
    counts = ledger.records.counts()
    pulls = {
        "salesforce": sum(math.ceil(n / SF_PAGE) for (s, _), n in counts.items() if s == "salesforce"),
        "hubspot": sum(math.ceil(n / HS_PAGE) for (s, _), n in counts.items() if s == "hubspot"),
    }
    written: Counter[tuple[str, str, bool]] = Counter()
    seen: set[tuple[str, str, str]] = set()
    for intent in ledger.outbox.intents(run_id=run_id):
        if intent.state != "confirmed":
            continue
        target = (intent.system, intent.object, intent.record_id or f"new:{intent.create_key}")
        if target not in seen:
            seen.add(target)
            written[(intent.system, intent.object, intent.create_key is not None)] += 1
    pushes = Counter[str]()
    for (system, _, _), n in written.items():
        pushes[system] += math.ceil(n / (SF_BATCH if system == "salesforce" else HS_BATCH))
    return {s: pulls[s] + pushes[s] + 2 for s in ("salesforce", "hubspot")}


@pytest.mark.bench
def test_bench_first_cycle_on_100k_persons_and_an_idle_cycle(tmp_path: Path) -> None:
    began = time.monotonic()
    sandbox = serve(tmp_path / "org", tmp_path / "info.json", PERSONS, timeout=1800)
    try:
        print(f"\nsandbox with {PERSONS:,} persons seeded and serving in {time.monotonic() - began:.1f} s")
        config = tmp_path / "config.toml"
        config.write_text(config_text(tmp_path / "info.json", tmp_path / "syncd.db"))
        now = datetime.now(UTC).replace(microsecond=0)

        first = once(config, now)
        assert first.code == 0, first.text
        seconds, rss = first.seconds, first.rss_mb
        with Ledger(tmp_path / "syncd.db", readonly=True) as ledger:
            run = ledger.runs.recent(1)[0]
            floor = minimum_calls(ledger, run.id)
        c = run.counters
        calls = c["api_calls"]
        print(f"first cycle: {seconds:.1f} s wall, peak RSS {rss:.0f} MB")
        print(f"  steps: {c['seconds']}")
        print(f"  pulled {c['pulled']}, decided {c['decided']}, pushed {c['pushed']}")
        for system in ("salesforce", "hubspot"):
            print(
                f"  {system}: {calls[system]} API calls; the batch sizes allow {floor[system]} at the fewest"
            )
        print(f"  changes {c['changes']}")

        second = once(config, now)
        assert second.code == 0, second.text
        idle, idle_rss = second.seconds, second.rss_mb
        third = once(config, now)
        assert third.code == 0, third.text
        idle2 = third.seconds
        with Ledger(tmp_path / "syncd.db", readonly=True) as ledger:
            last = ledger.runs.recent(1)[0].counters
        print(f"second cycle (the first one's writes coming back): {idle:.1f} s, peak RSS {idle_rss:.0f} MB")
        print(
            f"cycle with nothing to do: {idle2:.1f} s wall, steps {last['seconds']}, API calls {last['api_calls']}"
        )
        assert sum(sum(v.values()) for v in last["changes"].values()) == 0
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=120)


def first_cycle_against_the_floor(tmp_path: Path, persons: int) -> dict[str, float]:
    """A first `syncd once` on one copy of an org and the floor on an identical copy, side by side, then an
    idle cycle and a full re-decision; prints every figure and returns the ratios."""
    now = datetime.now(UTC).replace(microsecond=0)
    with twin_sandboxes(tmp_path, persons) as (synced, copy):
        print(f"\n{persons:,} persons; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        pulled = floor("pull", str(copy.config))
        sandbox_before = process_cpu(synced.process.pid)
        first = once(synced.config, now)
        sandbox_cpu = process_cpu(synced.process.pid) - sandbox_before
        assert first.code == 0, first.text
        size = ledger_bytes(synced.ledger)
        with Ledger(synced.ledger, readonly=True) as ledger:
            run = ledger.runs.recent(1)[0]
        pushed = floor("push", str(copy.config), str(synced.ledger), run.id)
        floor_seconds = pulled["seconds"] + pushed["seconds"]
        c = run.counters
        ratios = {
            "time": first.seconds / floor_seconds,
            "cpu": first.cpu / sandbox_cpu,
            "bytes": first.write_bytes / size,
        }
        print(
            f"first cycle {first.seconds:.1f} s / floor {floor_seconds:.1f} s (raw pull {pulled['seconds']:.1f} s "
            f"of {pulled['records']:,} records + raw push {pushed['seconds']:.1f} s of {pushed['records']:,} "
            f"writes) = {ratios['time']:.2f}x"
        )
        print(f"  stages: {c['seconds']}")
        print(
            f"  API calls: syncd {c['api_calls']}, floor pull {pulled['calls']}, floor push {pushed['calls']}"
        )
        print(
            f"  CPU: syncd process {first.cpu:.1f} s / sandbox serving it {sandbox_cpu:.1f} s = {ratios['cpu']:.2f}x"
            f" (the floor's client used {pulled['cpu'] + pushed['cpu']:.1f} s)"
        )
        print(
            f"  bytes written by syncd {first.write_bytes / 1e6:.1f} MB / final ledger {size / 1e6:.1f} MB "
            f"= {ratios['bytes']:.2f}x; peak RSS {first.rss_mb:.0f} MB"
        )
        assert c["pushed"]["salesforce"] + c["pushed"]["hubspot"] == pushed["records"]

        echo = once(synced.config, now)
        assert echo.code == 0, echo.text
        before_idle = ledger_used(synced.ledger)
        idle = once(synced.config, now)
        assert idle.code == 0, idle.text
        with Ledger(synced.ledger, readonly=True) as ledger:
            runs = ledger.runs.recent(2)
            grown = ledger_used(synced.ledger) - before_idle
            run_row = ledger.db.execute("SELECT avg(length(counters)) FROM runs").fetchone()[0]
        echo_c, idle_c = runs[1].counters, runs[0].counters
        print(
            f"second cycle (the first one's writes coming back): {echo.seconds:.1f} s, pulled "
            f"{echo_c['pulled']}, calls {echo_c['api_calls']}"
        )
        print(
            # At the same fixed time as the cycles before, so within their look-back: it reads their records
            # again and changes nothing (an idle cycle past the look-back reads nothing: test_bench_idle.py).
            f"third cycle, nothing changed, within the look-back: {idle.seconds:.1f} s wall, stages "
            f"{idle_c['seconds']}, calls {idle_c['api_calls']}, "
            f"records re-read {idle_c['pulled']}, peak RSS {idle.rss_mb:.0f} MB; the ledger grew {grown / 1e3:.1f} kB "
            f"(a run row's counters: {run_row:.0f} bytes)"
        )
        assert sum(sum(v.values()) for v in idle_c["changes"].values()) == 0

        # A day later every decision is due (the daily re-score): a dry run re-decides every key.
        later = once(synced.config, now + timedelta(days=1, minutes=1), "plan")
        assert later.code == 0, later.text
        with Ledger(synced.ledger, readonly=True) as ledger:
            plan = ledger.runs.recent(1)[0].counters
            decisions = len(ledger.views.decision_outcomes())
        print(
            f"full re-decision (dry run a day later): {later.seconds:.1f} s wall, decided {plan['decided']}, "
            f"stages {plan['seconds']}, peak RSS {later.rss_mb:.0f} MB"
        )
        assert plan["decided"].get("person", 0) + plan["decided"].get("account", 0) == decisions
    return ratios


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_bench_first_cycle_against_the_floor_on_20k_persons(tmp_path: Path) -> None:
    ratios = first_cycle_against_the_floor(tmp_path, 20_000)
    # Issue 9 targets 3x: 2.37x measured (3.96x before journals went to memory, intent ids sorted by time and
    # transactions grew; 9.0x before the ledger's write path was reworked). The time and CPU ratios are
    # printed, not asserted (they depend on the machine).
    assert ratios["bytes"] <= 3.0


@pytest.mark.bench
@pytest.mark.timeout(7200)
def test_bench_first_cycle_against_the_floor_on_100k_persons(tmp_path: Path) -> None:
    """The same at 100,000 persons (long: not for a shared machine)."""
    ratios = first_cycle_against_the_floor(tmp_path, 100_000)
    # 2.92x measured (6.61x before): the bound catches a regression with some room.
    assert ratios["bytes"] <= 3.5


@pytest.mark.bench
@pytest.mark.timeout(3600)  # 9:50 on the shared 2-core machine: the default 600 s is too close
def test_bench_crash_on_20k_persons(tmp_path: Path) -> None:
    result = crash_scenario(tmp_path, 20_000, 30, random.Random(20250303))
    print(
        f"\ncrash test, {result.persons:,} persons: uninterrupted cycle {result.reference_seconds:.1f} s; "
        f"30 SIGKILLs ({result.log.killed_running} mid-cycle) then {result.completing_runs} run(s) to "
        f"complete: {result.crash_seconds:.1f} s; differences {result.differences or 'none'}; "
        f"ledger decisions equal: {result.decisions_equal}; integrity {result.integrity}"
    )
    assert result.differences == {}
    assert result.decisions_equal
    assert result.max_leads_per_contact == 1
    assert result.integrity == "ok"
    assert result.settle_writes == {"crashed": {}, "reference": {}}
