"""Crash safety: `syncd once` killed with SIGKILL at 30 random moments converges on an uninterrupted run.

Runs on a 1,000-person org here (about half a minute); `make bench` runs the same scenario on 20,000 persons
(tests/bench/test_bench_cycle.py).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from e2e_crash import crash_scenario

PERSONS = 1_000
KILLS = 30


@pytest.mark.slow
def test_killed_cycles_converge_on_the_uninterrupted_result(tmp_path: Path) -> None:
    result = crash_scenario(tmp_path, PERSONS, KILLS, random.Random(20250303))
    print(
        f"\n{KILLS} kills, {result.log.killed_running} inside a running cycle; uninterrupted cycle "
        f"{result.reference_seconds:.1f} s, crashed runs {result.crash_seconds:.1f} s"
    )

    assert result.log.killed_running + result.log.finished_before_kill == KILLS
    assert result.log.killed_running >= KILLS * 2 // 3, "most kills hit a running cycle"
    assert result.differences == {}, "both orgs end in the same state"
    assert result.decisions_equal, "both ledgers hold the same decisions"
    assert result.max_leads_per_contact == 1, "no Lead was created twice"
    assert result.leads[0] == result.leads[1]
    assert result.integrity == "ok"
    assert result.settle_writes == {"crashed": {}, "reference": {}}, "a further cycle has nothing to write"
