"""Benchmark: a first cycle under HubSpot's rate limits (issue 9: ≤ 1.2× max(unthrottled cycle, HubSpot
calls ÷ 10 per s) at 20,000 persons).

Two sandboxes serve identical copies of one seeded org (``twin_sandboxes``). One enforces the limits as the
real systems do (``/__sandbox/limits``: HubSpot 100 requests per rolling 10 s per token and 5 searches per
second; Salesforce only its daily allowance, it has no short-window limit) and syncd's config declares the
same budget (``[budget.hubspot] requests_per_10s = 100``, ``search_per_second = 5``); on the other the limits
are off and syncd's budget is lifted. The first `syncd once` runs on each in its own process at the same
fixed time, one after the other (never both at once: they would share the cores). Printed: the unthrottled
wall time, the throttled run's HubSpot calls (the sandbox's request counts), the pacing minimum (those calls
÷ 10 per s), the throttled wall time, the ratio to the larger of the two, and the 429s the throttled run met.

    .venv/bin/python -m pytest -m bench -s -p no:xdist tests/bench/test_bench_ratelimit.py
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_crash import Served, config_text, normalised, run_once, twin_sandboxes

from syncd.ledger import Ledger
from syncd.sandbox.runtime import control_request

PERSONS = int(os.environ.get("SYNCD_BENCH_RATELIMIT_PERSONS", "20000"))
# HubSpot's limits for a Free/Starter portal (developers.hubspot.com, "API usage guidelines and limits":
# 100 requests per 10 seconds per private app, CRM search 5 requests per second), as the sandbox enforces them.
HS_PER_10S, HS_SEARCH_PER_S = 100, 5
# Issue 9's target, and the bound this benchmark asserts (a regression, not the target: times depend on the
# machine). Measured on the shared 2-core machine with both systems pulled at once and HubSpot's companies
# and deals listed while its contacts are searched: 1.26-1.30x in five runs at load 1.0-2.5 (throttled
# 52.0-53.5 s, its pull 19.6-20.5 s: 96 contact searches at 5 a second; pacing minimum 41.3 s); 1.44-1.47x
# before (pull 25.7-25.8 s: every object searched, one system after the other). What remains is the 10 s
# window standing half idle while contacts are searched and idle during the link stage, before pushes start.
TARGET, BOUND = 1.2, 1.6

LIMITED_BUDGET = f"""
[budget.salesforce]
# Salesforce has no short-window limit (only the daily allowance, which the sandbox enforces).
requests_per_10s = 100000

[budget.hubspot]
requests_per_10s = {HS_PER_10S}
search_per_second = {HS_SEARCH_PER_S}
"""


def limited_config(served: Served) -> None:
    """Turn the sandbox's limits on and give syncd the same budget."""
    for system in ("salesforce", "hubspot"):
        control_request(served.systems.info, system, "PUT", "limits", {"rate_limits": True, "usage": 0})
    hs = control_request(served.systems.info, "hubspot", "GET", "limits")
    assert (hs["ten_second_limit"], hs["search_per_second"]) == (HS_PER_10S, HS_SEARCH_PER_S), hs
    text = config_text(served.info, served.ledger)
    head = text.split("# The sandbox runs with its rate limits off")[0]
    served.config.write_text(head + LIMITED_BUDGET)


def counts(served: Served) -> dict[str, Any]:
    """The HubSpot sandbox's request counts since the last reset: all, by status."""
    return dict(control_request(served.systems.info, "hubspot", "GET", "counts"))


def owners(served: Served, seeded: set[str]) -> dict[str, Any]:
    """Every record's owner (and the rest of what syncd writes), with the ids of created records normalised."""
    # Read with the limits off: the snapshot is the benchmark's, not syncd's.
    for system in ("salesforce", "hubspot"):
        control_request(served.systems.info, system, "PUT", "limits", {"rate_limits": False})
    return normalised(served.systems.snapshot(), seeded)


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_bench_rate_limited_first_cycle(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with twin_sandboxes(tmp_path, PERSONS) as (limited, free):
        seeded = {i for obj in ("Lead", "Contact", "Account") for i in free.systems.snapshot()[obj]}
        print(f"\n{PERSONS:,} persons; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

        free.systems.reset_counts()
        code, out, unthrottled = run_once(free.config, now, timeout=1800)
        assert code == 0, out
        free_calls = counts(free)

        limited_config(limited)
        limited.systems.reset_counts()
        code, out, throttled = run_once(limited.config, now, timeout=1800)
        assert code == 0, out
        hs = counts(limited)

        refused = int(hs["by_status"].get("429", 0))
        calls = int(hs["total"]) - refused
        pacing = calls / (HS_PER_10S / 10)
        ratio = throttled / max(unthrottled, pacing)
        with Ledger(free.ledger, readonly=True) as lf, Ledger(limited.ledger, readonly=True) as ll:
            free_run, limited_run = lf.runs.recent(1)[0].counters, ll.runs.recent(1)[0].counters
            decisions_equal = lf.views.decision_outcomes() == ll.views.decision_outcomes()
        print(
            f"unthrottled first cycle: {unthrottled:.1f} s, stages {free_run['seconds']}, "
            f"HubSpot calls {free_calls['total']}"
        )
        print(
            f"throttled first cycle: {throttled:.1f} s, stages {limited_run['seconds']}, "
            f"HubSpot calls {calls} (syncd counted {limited_run['api_calls']['hubspot']}), 429s {refused}"
        )
        print(f"  throttled run's HubSpot requests by kind: {dict(sorted(hs['by_kind'].items()))}")
        print(f"pacing minimum: {calls} HubSpot calls / {HS_PER_10S / 10:g} per s = {pacing:.1f} s")
        print(
            f"throttled {throttled:.1f} s / max(unthrottled {unthrottled:.1f} s, pacing {pacing:.1f} s) = "
            f"{ratio:.2f}x (target {TARGET}x)"
        )

        a, b = owners(limited, seeded), owners(free, seeded)
        differences = {
            obj: sorted(k for k in set(a[obj]) | set(b[obj]) if a[obj].get(k) != b[obj].get(k))[:5]
            for obj in a
        }
        differences = {k: v for k, v in differences.items() if v}
        print(
            f"orgs equal after both runs: {not differences} {differences or ''}; ledger decisions equal: "
            f"{decisions_equal}"
        )

    assert not differences
    assert decisions_equal
    assert ratio <= BOUND
