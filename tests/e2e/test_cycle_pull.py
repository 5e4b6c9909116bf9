"""The pull stage of a first cycle: both systems fetched at once (``syncd.prefetch.interleaved``), HubSpot's
companies and deals listed while its contacts are searched, every record staged in the ledger."""

from __future__ import annotations

from conftest import Org

from syncd.connectors.hubspot import FROM_START
from syncd.core.systems import PULLED
from syncd.ledger import Ledger


def test_a_first_cycle_stages_every_live_record_of_both_systems(org: Org) -> None:
    live = {
        "salesforce": {
            obj: {r["Id"] for r in org.sandbox.sf_store.table(obj).values() if not r.get("IsDeleted")}
            for obj in PULLED["salesforce"]
        },
        "hubspot": {
            obj: {
                str(r["id"])
                for r in org.sandbox.hs_store.table(obj).values()
                if not r.get("archived") and not r.get("mergedInto")
            }
            for obj in PULLED["hubspot"]
        },
    }
    org.systems.reset_counts()
    report = org.cycle().run(org.rules)
    assert report.ok

    with Ledger(org.config.ledger.path, readonly=True) as ledger:
        for system, objects in live.items():
            for obj, ids in objects.items():
                assert ids, (system, obj)
                staged = ledger.records.by_ids(system, obj, ids)
                assert set(staged) == ids, (system, obj, sorted(ids - set(staged))[:5])
        marks = {(w.system, w.object): w.value for w in ledger.records.watermarks()}
    for obj in PULLED["hubspot"]:
        assert marks[("hubspot", obj)] != FROM_START, f"the finished read of {obj} moved its watermark"
    assert org.systems.kinds()["hubspot"].get("GET list", 0) >= 2, "companies and deals were listed"
