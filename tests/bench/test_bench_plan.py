"""Benchmark of `syncd plan --rules` (`make bench`; it prints its figures).

A 100,000-person org seeded by `syncd sandbox serve`, one `syncd once`, then `syncd plan --rules <candidate>`
of a territory change (Germany moves from EMEA to North America) with the sandbox still serving, each in its
own process as in production. The issue's target is 30 s with 0 API calls: the test asserts the 0 (the
sandbox's request counts do not move) and prints the seconds and their ratio to the target.
``SYNCD_BENCH_PLAN_PERSONS`` sets another org size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_crash import ONCE, ROOT, SYNCD, config_text, serve
from e2e_systems import Systems

PERSONS = int(os.environ.get("SYNCD_BENCH_PLAN_PERSONS", "100000"))
TARGET_SECONDS = 30.0
EDITS = (
    (
        'when = { country = ["GB", "DE", "FR", "NL", "SE", "ES", "IT", "IE", "CH"] }',
        'when = { country = ["GB", "FR", "NL", "SE", "ES", "IT", "IE", "CH"] }',
    ),
    ('when = { country = ["US", "CA", "MX"] }', 'when = { country = ["US", "CA", "MX", "DE"] }'),
)


@pytest.mark.bench
@pytest.mark.timeout(5400)
def test_bench_plan_of_a_territory_change_from_the_ledger(tmp_path: Path) -> None:
    info = tmp_path / "info.json"
    sandbox = serve(tmp_path / "org", info, PERSONS, timeout=3600)
    try:
        config = tmp_path / "config.toml"
        config.write_text(config_text(info, tmp_path / "syncd.db"))
        now = datetime.now(UTC).replace(microsecond=0)
        once = subprocess.run(
            [sys.executable, "-c", ONCE, now.isoformat(), str(config)],
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            timeout=3600,
        )
        assert once.returncode == 0, once.stderr.decode()[-2000:]

        candidate = tmp_path / "candidate"
        shutil.copytree(ROOT / "mappings", candidate)
        routing = (candidate / "routing.toml").read_text()
        for old, new in EDITS:
            assert old in routing, "the benchmark's edit no longer matches the shipped routing.toml"
            routing = routing.replace(old, new)
        (candidate / "routing.toml").write_text(routing)
        systems = Systems.from_file(info)
        systems.reset_counts()

        began = time.monotonic()
        run = subprocess.run(
            [*SYNCD, "plan", "--rules", str(candidate), "--json"],
            capture_output=True,
            env={**os.environ, "SYNCD_CONFIG": str(config)},
            cwd=tmp_path,
            timeout=3600,
        )
        seconds = time.monotonic() - began
        calls = sum(sum(kinds.values()) for kinds in systems.kinds().values())
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=120)

    assert run.returncode == 3, run.stderr.decode()[-2000:]  # changes pending
    plan = json.loads(run.stdout)
    assert calls == 0 and sum(plan["api_calls"].values()) == 0
    moved = plan["impact"]["owner_changes"]
    assert moved > 0
    decided = sum(plan["decided"].values())
    print(
        f"\nplan --rules (Germany to North America), {PERSONS:,} persons: {seconds:.1f} s wall "
        f"({seconds / TARGET_SECONDS:.2f} of the {TARGET_SECONDS:.0f} s target), {calls} API calls; "
        f"re-decided {decided:,} keys, {moved:,} owner changes, "
        f"{sum(g['count'] for g in plan['groups']):,} records to write: "
        + ", ".join(f"{g['system']} {g['action']} {g['count']:,}" for g in plan["groups"])
    )
