"""Value objects: ledger rows round-trip, owner helpers, the rep directory."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, timedelta

from engine_helpers import NOW, RULES, person

from syncd.core.engine import decide
from syncd.core.types import (
    Assignment,
    Decision,
    Handoff,
    Intent,
    LedgerView,
    Queue,
    Rep,
    RepDirectory,
    TraceStep,
    is_queue,
    queue_name,
    queue_owner,
    rep_key,
)


def test_decision_assignment_and_handoff() -> None:
    d = Decision(
        "p1",
        "person",
        "customer",
        "account_management",
        "a@x.example",
        "account",
        (),
        assigned_at=NOW,
        handoff=Handoff("sales", "account_management"),
        influencers=("b@x.example",),
    )
    assert d.assignment() == Assignment(
        "p1", "a@x.example", "account_management", "account", NOW, ("b@x.example",)
    )
    assert d.handoff == Handoff("sales", "account_management")
    assert Decision("p2", "person", "lead", "marketing", None, "unrouted", ()).assignment() is None


def test_trace_step_text() -> None:
    step = TraceStep("route", "AE EMEA", False, "country in ['GB']", (("country", "US"),))
    assert str(step) == "route: AE EMEA: no (country in ['GB']) [country='US']"


def test_owner_helpers() -> None:
    q = queue_owner("EMEA Lead Queue")
    assert is_queue(q) and not is_queue("a@x.example") and not is_queue(None)
    assert queue_name(q) == "EMEA Lead Queue"
    assert rep_key("  Jack.Miller@Northwind.Example ") == "jack.miller@northwind.example"


def test_rep_directory_translates_both_ways() -> None:
    directory = RepDirectory(
        [Rep("a@x.example", salesforce_id="005A", hubspot_owner_id="11"), Rep("b@x.example", active=False)],
        [Queue("Unassigned Leads", salesforce_id="00GQ")],
    )
    assert directory.owner_from_salesforce("005A") == "a@x.example"
    assert directory.owner_from_salesforce("00GQ") == queue_owner("Unassigned Leads")
    assert directory.owner_from_salesforce("005Z") is None
    assert directory.owner_from_hubspot("11") == "a@x.example"
    assert directory.salesforce_owner_id(queue_owner("Unassigned Leads")) == "00GQ"
    assert directory.hubspot_owner_id(queue_owner("Unassigned Leads")) is None
    assert directory.is_active("a@x.example")
    assert not directory.is_active("b@x.example")
    assert not directory.is_active("nobody@x.example")


def test_decisions_are_timezone_aware() -> None:
    decision = decide([person()], [], RULES, LedgerView(), NOW).decisions[0]
    assert decision.assigned_at is not None
    assert decision.assigned_at.tzinfo is not None
    assert decision.assigned_at.utcoffset() == timedelta(0)
    assert NOW.tzinfo is UTC


def test_intent_ids_are_unique_and_begin_with_their_creation_time() -> None:
    # The outbox's index on ids grows at its end only if ids sort by the time they were made.
    before = time.time_ns()
    ids = [Intent("hubspot", "contacts", {}, "test", record_id="1").id for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    stamps = [int(i[:16], 16) for i in ids]
    assert before <= stamps[0]
    assert all(a < b for a, b in itertools.pairwise(stamps))
