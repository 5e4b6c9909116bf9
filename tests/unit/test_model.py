"""Value objects: ledger rows round-trip, owner helpers, the rep directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from engine_helpers import NOW, RULES, person

from syncd.engine import decide
from syncd.model import (
    Assignment,
    Decision,
    Handoff,
    LedgerView,
    Override,
    Queue,
    Rep,
    RepDirectory,
    RoundRobinState,
    TraceStep,
    is_queue,
    queue_name,
    queue_owner,
    rep_key,
)


def test_assignment_row_round_trip_in_utc() -> None:
    berlin = timezone(timedelta(hours=1))
    a = Assignment(
        "p1", "a@x.example", "sales", "AE EMEA", datetime(2025, 1, 1, 13, tzinfo=berlin), ("b@x.example",)
    )
    row = a.to_row()
    assert row["assigned_at"] == "2025-01-01T12:00:00+00:00"
    assert json.loads(row["influencers"]) == ["b@x.example"]
    assert Assignment.from_row(row) == a


def test_override_and_round_robin_rows_round_trip() -> None:
    o = Override("p1", queue_owner("Unassigned Leads"), NOW, by="005X", system="salesforce")
    assert Override.from_row(o.to_row()) == o
    rr = RoundRobinState("sdr", {"a": -2, "b": 1}, {"a": 3})
    assert RoundRobinState.from_row(rr.to_row()) == rr


def test_naive_datetimes_are_refused_from_rows() -> None:
    with pytest.raises(ValueError, match="naive"):
        Assignment.from_row(
            {"key": "p", "owner": "o", "team": "t", "rule": "r", "assigned_at": "2025-01-01T00:00:00"}
        )


def test_engine_decision_round_trips_through_a_row_with_its_trace() -> None:
    p = person(title="VP Sales", employees=6000, conversions=2, last_activity=NOW)
    decision = decide([p], [], RULES, LedgerView(), NOW).decisions[0]
    row = decision.to_row()
    json.dumps(row)  # every value is JSON-native
    back = Decision.from_row(row)
    assert back.to_row() == row
    assert [s[:4] for s in back.trace] == [s[:4] for s in decision.trace]
    assert back._replace(trace=()) == decision._replace(trace=())


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
    assert Decision.from_row(d.to_row()).handoff == Handoff("sales", "account_management")
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
