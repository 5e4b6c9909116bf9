"""Benchmarks of the sync cycle (`make bench`; they print their figures).

- A first `syncd once` on a 100,000-person org with rate limits off: wall time, API calls against the
  fewest the batch sizes allow, peak RSS of the syncd process; then the wall time of a cycle with nothing to do.
- The crash scenario of tests/e2e/test_crash.py on a 20,000-person org: 30 SIGKILLs at random moments.

The sandbox runs in its own process (`syncd sandbox serve`), and so does `syncd once`, as in production.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_crash import ONCE, ROOT, config_text, crash_scenario, serve

from syncd.ledger import Ledger

PERSONS = 100_000
# Records per API call when syncd pulls and pushes (the APIs' maxima).
SF_PAGE, HS_PAGE = 2_000, 200
SF_BATCH, HS_BATCH = 200, 100


# The child reports its own VmHWM: ru_maxrss from wait4 would include the pytest process's resident set,
# which Linux carries across fork and exec into the child's high-water mark.
ONCE_MEASURED = (
    "import atexit, sys\n"
    "def _hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('\\nVmHWM_KB=' + line.split()[1] + '\\n')\n"
    "atexit.register(_hwm)\n" + ONCE
)


def once(config: Path, now: datetime) -> tuple[int, str, float, float]:
    """`syncd once` in its own process: (exit code, output, seconds, peak RSS of that process in MB)."""
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", ONCE_MEASURED, now.isoformat(), str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=config.parent,
    )
    out, err = process.communicate(timeout=1800)
    seconds = time.monotonic() - began
    text = out.decode() + err.decode()
    marks = [line for line in text.splitlines() if line.startswith("VmHWM_KB=")]
    assert marks, f"the syncd process did not report its peak memory: {text[-500:]}"
    return process.returncode, text, seconds, int(marks[-1].split("=")[1]) / 1024


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

        code, out, seconds, rss = once(config, now)
        assert code == 0, out
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

        code, out, idle, idle_rss = once(config, now)
        assert code == 0, out
        code, out, idle2, _ = once(config, now)
        assert code == 0, out
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


@pytest.mark.bench
def test_bench_crash_on_20k_persons(tmp_path: Path) -> None:
    result = crash_scenario(tmp_path, 20_000, 30, random.Random(20250303))
    print(
        f"\ncrash test, {result.persons:,} persons: uninterrupted cycle {result.reference_seconds:.1f} s; "
        f"30 SIGKILLs ({result.log.killed_running} mid-cycle) then {result.completing_runs} run(s) to "
        f"complete: {result.crash_seconds:.1f} s; differences {result.differences or 'none'}; "
        f"integrity {result.integrity}"
    )
    assert result.differences == {}
    assert result.decisions_equal
    assert result.max_leads_per_contact == 1
    assert result.integrity == "ok"
    assert result.settle_writes == {"crashed": {}, "reference": {}}
