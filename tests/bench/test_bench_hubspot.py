"""HubSpot sandbox throughput: a 100,000-contact batch update (1,000 calls of 100) through hubspot-api-client.

The sandbox must never be the bottleneck of syncd's own benchmarks: target >= 2,000 records/s, rate limits off,
with the store written through to a SQLite file as ``syncd sandbox serve`` does.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInput, SimplePublicObjectBatchInput

from syncd.sandbox.base import ServerThread
from syncd.sandbox.hubspot import HubSpotApp, client, iso_ms
from syncd.sandbox.store import Store
from syncd.sandbox.tls import make_tls

N = 100_000
BATCH = 100
TARGET_PER_SECOND = 2_000
T0_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
OWNERS = ("101", "102", "103")


def seed(store: Store) -> list[str]:
    store.put_many(
        "owners",
        [
            {
                "id": oid,
                "email": f"rep{oid}@northwind.example",
                "firstName": "Rep",
                "lastName": oid,
                "userId": 9000 + int(oid),
                "type": "PERSON",
                "createdAt": iso_ms(T0_MS),
                "updatedAt": iso_ms(T0_MS),
                "archived": False,
                "teams": [],
            }
            for oid in OWNERS
        ],
    )
    ids = []
    for n in range(N):
        rid, stamp = str(10_001 + n), iso_ms(T0_MS + n)
        props = {
            "email": f"person{n}@company{n % 5000}.example",
            "firstname": "Ana",
            "lastname": f"L{n}",
            "country": "DE",
            "lifecyclestage": "lead",
            "hubspot_owner_id": OWNERS[0],
            "hs_object_id": rid,
            "createdate": stamp,
            "lastmodifieddate": stamp,
        }
        store.put(
            "contacts",
            {
                "id": rid,
                "properties": props,
                "createdAt": stamp,
                "updatedAt": stamp,
                "archived": False,
                "archivedAt": None,
            },
        )
        ids.append(rid)
    store.flush()
    store.set_meta("hs_seq", 10_001 + N)
    return ids


@pytest.mark.bench
def test_bench_hubspot_batch_update_100k(tmp_path: Path) -> None:
    store = Store(tmp_path / "hubspot.sqlite")
    ids = seed(store)
    tls = make_tls(tmp_path / "tls")
    app = HubSpotApp(store, rate_limits=False)
    server = ServerThread(app, ssl_context=tls.context, poll_interval=0.05).start()
    try:
        batch = client(server.url, app.add_token("integration"), tls.ca_file).crm.contacts.batch_api
        updated = 0
        began = time.perf_counter()
        for start in range(0, N, BATCH):
            inputs = [
                SimplePublicObjectBatchInput(
                    id=rid, properties={"hubspot_owner_id": OWNERS[1 + n % 2], "lifecyclestage": "customer"}
                )
                for n, rid in enumerate(ids[start : start + BATCH], start)
            ]
            result = batch.update(BatchInputSimplePublicObjectBatchInput(inputs=inputs))
            assert type(result).__name__ == "BatchResponseSimplePublicObject", "a partial failure (207)"
            updated += len(result.results)
        seconds = time.perf_counter() - began
    finally:
        server.stop()
        store.close()
    rate = updated / seconds
    print(
        f"\nHubSpot sandbox batch update: {updated:,} contacts in {N // BATCH:,} calls, {seconds:.1f} s, "
        f"{rate:,.0f} records/s ({N // BATCH / seconds:,.0f} calls/s)"
    )
    assert updated == N
    assert rate >= TARGET_PER_SECOND
    check = Store(tmp_path / "hubspot.sqlite")
    assert check.get("contacts", ids[-1])["properties"]["lifecyclestage"] == "customer"  # type: ignore[index]
    check.close()
