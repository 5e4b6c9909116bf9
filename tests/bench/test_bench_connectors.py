"""Connector benchmarks (``make bench``): batch economy, pacing under HubSpot's limit, flat memory on big pulls.

Figures are printed; the assertions are the issue's targets.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.config import parse_config
from syncd.connectors import Change, connectors_from_config
from syncd.sandbox.base import CONTROL_HEADER
from syncd.sandbox.ids import sf_id
from syncd.sandbox.runtime import Sandbox, write_info
from syncd.sandbox.salesforce import stored_record

pytestmark = pytest.mark.bench

FAST_SF = {"requests_per_10s": 100_000, "lookback_seconds": 0}
FAST_HS = {"requests_per_10s": 100_000, "search_per_second": 1000, "lookback_seconds": 0}


def fill(sandbox: Sandbox, *, leads: int = 0, contacts: int = 0) -> tuple[list[str], list[str]]:
    """Write records straight into the stores (each with its own timestamp, 1 ms apart)."""
    base = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    lead_ids: list[str] = []
    spec = sandbox.sf_app.objects["Lead"]
    user = sandbox.sf_app.integration_user_id
    with sandbox.sf_store.lock:
        for n in range(leads):
            at = datetime.fromtimestamp((base + n) / 1000, UTC)
            stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
            id_ = sf_id("00Q", 1_000_000 + n)
            sandbox.sf_store.put(
                "Lead", stored_record(spec, id_, stamp, user, LastName=f"L{n}", Company="Bench")
            )
            lead_ids.append(id_)
        sandbox.sf_store.flush()
    contact_ids: list[str] = []
    with sandbox.hs_store.lock:
        first = int(sandbox.hs_store.meta("hs_seq", 1_000_000))
        for n in range(contacts):
            at = datetime.fromtimestamp((base + n) / 1000, UTC)
            stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
            id_ = str(first + n)
            props = {
                "hs_object_id": id_,
                "email": f"c{n}@bench.example",
                "createdate": stamp,
                "lastmodifieddate": stamp,
            }
            sandbox.hs_store.put(
                "contacts",
                {
                    "id": id_,
                    "properties": props,
                    "createdAt": stamp,
                    "updatedAt": stamp,
                    "archived": False,
                    "archivedAt": None,
                },
            )
            contact_ids.append(id_)
        sandbox.hs_store.set_meta("hs_seq", first + contacts)
        sandbox.hs_store.flush()
    sandbox.hs_app.reindex()
    return lead_ids, contact_ids


def connectors(sandbox: Sandbox, tmp_path: Path, *, sf: dict[str, Any], hs: dict[str, Any]) -> Any:
    info = tmp_path / "info.json"
    write_info(info, sandbox.info())
    config = parse_config({"sandbox": {"info_file": str(info)}}, path=tmp_path / "config.toml")
    return connectors_from_config(config, salesforce=sf, hubspot=hs)


def control(url: str, ca: Path, path: str, method: str = "GET", body: Any = None, *, token: str) -> Any:
    response = requests.request(
        method,
        f"{url}/__sandbox/{path}",
        json=body,
        headers={CONTROL_HEADER: token},
        verify=str(ca),
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def test_bench_10k_changes_use_100_hubspot_and_50_salesforce_calls(tmp_path: Path) -> None:
    with Sandbox(seed=1, persons=0, rate_limits=False) as sandbox:
        leads, contacts = fill(sandbox, leads=10_000, contacts=10_000)
        sf, hs = connectors(sandbox, tmp_path, sf=FAST_SF, hs=FAST_HS)
        for url in (sandbox.sf_url, sandbox.hs_url):
            control(url, sandbox.ca_file, "counts/reset", "POST", token=sandbox.control_token)
        began = time.perf_counter()
        sf_results = sf.push("Lead", [Change.update(i, {"Title": "VP Sales"}) for i in leads])
        sf_seconds = time.perf_counter() - began
        began = time.perf_counter()
        hs_results = hs.push("contacts", [Change.update(i, {"jobtitle": "VP Sales"}) for i in contacts])
        hs_seconds = time.perf_counter() - began
        sf_counts = control(sandbox.sf_url, sandbox.ca_file, "counts", token=sandbox.control_token)
        hs_counts = control(sandbox.hs_url, sandbox.ca_file, "counts", token=sandbox.control_token)
        print(
            f"\n10,000 changes each: Salesforce {sf_counts['total']} calls {sf_counts['by_kind']} in {sf_seconds:.2f} s; "
            f"HubSpot {hs_counts['total']} calls {hs_counts['by_kind']} in {hs_seconds:.2f} s"
        )
        assert all(r.ok for r in sf_results) and all(r.ok for r in hs_results)
        assert sf_counts["by_kind"] == {"PATCH collection_update": 50}
        assert hs_counts["by_kind"] == {"POST batch_update": 100}
        assert all(sandbox.sf_store.get("Lead", i)["Title"] == "VP Sales" for i in leads)  # type: ignore[index]
        assert all(
            sandbox.hs_store.get("contacts", i)["properties"]["jobtitle"] == "VP Sales" for i in contacts
        )  # type: ignore[index]


def test_bench_hubspot_push_under_100_per_10s_has_no_429(tmp_path: Path) -> None:
    """20,000 records = 200 batch calls against a portal that allows 100 requests per rolling 10 s.

    The least time the limit allows a one-at-a-time client: the first 100 calls go at once (taking 100
    service times), each later call waits for the call 100 before it to leave the window, so 200 calls end
    no sooner than 10 s + 100 service times. The service time is measured first, unthrottled.
    """
    with Sandbox(seed=1, persons=0, rate_limits=True, hubspot_options={"ten_second_limit": 100}) as sandbox:
        _, contacts = fill(sandbox, contacts=22_000)
        warmup, contacts = contacts[:2_000], contacts[2_000:]
        control(
            sandbox.hs_url,
            sandbox.ca_file,
            "limits",
            "PUT",
            {"rate_limits": False},
            token=sandbox.control_token,
        )
        (tmp_path / "fast").mkdir()
        _, fast = connectors(
            sandbox, tmp_path / "fast", sf=FAST_SF, hs={"requests_per_10s": 100_000, "lookback_seconds": 0}
        )
        began = time.perf_counter()
        fast.push("contacts", [Change.update(i, {"jobtitle": "Manager"}) for i in warmup])
        service = (time.perf_counter() - began) / 20
        control(
            sandbox.hs_url,
            sandbox.ca_file,
            "limits",
            "PUT",
            {"rate_limits": True, "usage": 0},
            token=sandbox.control_token,
        )
        _, hs = connectors(sandbox, tmp_path, sf=FAST_SF, hs={"requests_per_10s": 100, "lookback_seconds": 0})
        control(sandbox.hs_url, sandbox.ca_file, "counts/reset", "POST", token=sandbox.control_token)
        began = time.perf_counter()
        results = hs.push("contacts", [Change.update(i, {"jobtitle": "Director"}) for i in contacts])
        elapsed = time.perf_counter() - began
        counts = control(sandbox.hs_url, sandbox.ca_file, "counts", token=sandbox.control_token)
        calls = counts["total"]
        window_floor = (math.ceil(calls / 100) - 1) * 10.0
        least = window_floor + 100 * service
        print(
            f"\nHubSpot 20,000-record push at 100 requests/10 s: {calls} calls, statuses {counts['by_status']}, "
            f"{elapsed:.2f} s = {elapsed / least:.2f}x the {least:.2f} s the limit allows a serial client "
            f"({window_floor:.0f} s of windows + 100 calls x {service * 1000:.0f} ms measured unthrottled); "
            f"{elapsed / window_floor:.2f}x the bare {window_floor:.0f} s (client waited {hs.policy.limiter.waited:.2f} s)"
        )
        assert all(r.ok for r in results)
        assert calls == 200
        assert counts["by_status"] == {"200": 200}
        assert elapsed <= 1.15 * least


CLIENT = r"""
import json, sys, time
from pathlib import Path
from syncd.config import parse_config
from syncd.connectors import connectors_from_config

info, system, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = parse_config({"sandbox": {"info_file": info}}, path=Path(info).parent / "config.toml")
sf, hs = connectors_from_config(
    config,
    salesforce={"requests_per_10s": 100000, "bulk_threshold": 0, "lookback_seconds": 0},
    hubspot={"requests_per_10s": 100000, "search_per_second": 1000, "lookback_seconds": 0},
)
connector, obj = (sf, "Lead") if system == "salesforce" else (hs, "contacts")
began = time.perf_counter()
count = 0
for page in connector.pull(obj):
    count += len(page.records)
    if count >= limit:
        break
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"count": count, "peak_kb": peak_kb,
                  "seconds": time.perf_counter() - began, "calls": connector.call_counts()}))
"""


def test_bench_pulling_200k_records_keeps_memory_flat(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Sandbox(seed=1, persons=0, rate_limits=False, data_dir=data) as sandbox:
        began = time.perf_counter()
        fill(sandbox, leads=200_000, contacts=200_000)
        print(f"\nwrote 200,000 Leads and 200,000 contacts in {time.perf_counter() - began:.1f} s")
    info = tmp_path / "info.json"
    syncd = Path(sys.executable).parent / "syncd"
    server = subprocess.Popen(
        [str(syncd), "sandbox", "serve", "--data", str(data), "--rate-limits", "off", "--info", str(info)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not info.exists():
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else "server exited"
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.2)
        figures: dict[tuple[str, int], dict[str, Any]] = {}
        for system in ("salesforce", "hubspot"):
            for limit in (20_000, 200_000):
                out = subprocess.run(
                    [sys.executable, "-c", CLIENT, str(info), system, str(limit)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
                figures[(system, limit)] = json.loads(out.stdout.strip().splitlines()[-1])
                f = figures[(system, limit)]
                print(
                    f"{system} pull of {f['count']:,} records: peak RSS {f['peak_kb'] / 1024:.1f} MiB, "
                    f"{f['seconds']:.1f} s, calls {f['calls']}"
                )
    finally:
        server.terminate()
        server.wait(timeout=30)
    for system in ("salesforce", "hubspot"):
        small, big = figures[(system, 20_000)], figures[(system, 200_000)]
        assert small["count"] >= 20_000 and big["count"] >= 200_000
        # Ten times the records, (nearly) the same memory: pages are streamed, never accumulated.
        assert big["peak_kb"] <= small["peak_kb"] * 1.15 + 8 * 1024
