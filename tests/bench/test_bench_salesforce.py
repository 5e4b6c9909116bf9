"""Salesforce sandbox throughput: a 100,000-Lead incremental SOQL pull through simple-salesforce over HTTPS.

The sandbox must never be the bottleneck of syncd's own benchmarks: target >= 2,000 records/s.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from simple_salesforce import Salesforce

from syncd.core.systems import SALESFORCE_OBJECTS
from syncd.sandbox.base import ServerThread
from syncd.sandbox.ids import sf_id
from syncd.sandbox.salesforce import SalesforceApp, client_session, stored_record
from syncd.sandbox.soql import format_sf_datetime
from syncd.sandbox.store import Store
from syncd.sandbox.tls import make_tls

N = 100_000
TARGET_PER_SECOND = 2_000
T0 = datetime(2025, 1, 1, tzinfo=UTC)
SOQL = (
    "SELECT Id, FirstName, LastName, Email, Company, Country, Status, OwnerId, Owner.Email, Owner.IsActive, "
    "Syncd_HubSpot_Id__c, Syncd_Score__c, IsConverted, SystemModstamp FROM Lead "
    "WHERE SystemModstamp > 2024-12-31T00:00:00Z ORDER BY SystemModstamp, Id"
)


def load(store: Store) -> None:
    """100,000 Leads owned by a handful of reps; imports give many of them the same SystemModstamp."""
    users = SALESFORCE_OBJECTS["User"]
    owners = [sf_id("005", 100 + n) for n in range(10)]
    store.put_many(
        "User",
        [
            stored_record(
                users,
                owner,
                "2024-06-01T00:00:00.000+0000",
                owner,
                Username=f"rep{n}@northwind.example",
                Email=f"rep{n}@northwind.example",
                LastName=f"Rep {n}",
                IsActive=n != 3,
            )
            for n, owner in enumerate(owners)
        ],
    )
    lead = SALESFORCE_OBJECTS["Lead"]
    rows = []
    for i in range(N):
        stamp = format_sf_datetime(T0 + timedelta(milliseconds=i // 4))
        rows.append(
            stored_record(
                lead,
                sf_id("00Q", 1 + (i * 7919) % N),  # ids not in stamp order: the sort has work to do
                stamp,
                owners[0],
                FirstName="Ana",
                LastName=f"Lindqvist {i}",
                Email=f"person{i}@company{i % 5000}.example",
                Company=f"Company {i % 5000}",
                Country="SE",
                Status="Open - Not Contacted",
                OwnerId=owners[i % len(owners)],
                Syncd_HubSpot_Id__c=str(100_000 + i),
                Syncd_Score__c=float(i % 100),
            )
        )
    store.put_many("Lead", rows)


@pytest.mark.bench
def test_soql_pull_of_100000_leads(tmp_path: Path) -> None:
    store = Store()
    load(store)
    tls = make_tls(tmp_path)
    app = SalesforceApp(store, rate_limits=False)
    server = ServerThread(app, ssl_context=tls.context, poll_interval=0.05).start()
    try:
        sf = Salesforce(
            instance_url=server.url, session_id=app.tokens["integration"], session=client_session(tls.ca_file)
        )
        started = time.perf_counter()
        pulled = 0
        last = ("", "")
        for record in sf.query_all_iter(SOQL):
            key = (record["SystemModstamp"], record["Id"])
            assert key > last, "pages must continue the order without gaps or repeats"
            last = key
            pulled += 1
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
    rate = pulled / elapsed
    pages = app.counters.snapshot()["by_kind"]
    print(
        f"\nsalesforce sandbox: pulled {pulled:,} Leads in {elapsed:.2f} s = {rate:,.0f} records/s "
        f"({pages.get('GET query', 0)} query + {pages.get('GET query_more', 0)} query_more calls, "
        f"target >= {TARGET_PER_SECOND:,}/s)"
    )
    assert pulled == N
    assert rate >= TARGET_PER_SECOND
