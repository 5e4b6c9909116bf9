"""The core's batching of intents and its due times (pure: values in, values out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.core.batch import take_batch
from syncd.core.link import assign_keys
from syncd.core.schedule import RESCORE_AFTER, Backoff, due_at, kept_hold
from syncd.core.types import Intent, RecordRow

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def update(record_id: str, **fields: Any) -> Intent:
    return Intent("hubspot", "contacts", fields, "test", record_id=record_id)


@pytest.mark.parametrize(
    ("queued", "limit", "requests", "left"),
    [
        pytest.param(
            [update("1", a=1), update("2", a=2)],
            10,
            [("1", {"a": 1}), ("2", {"a": 2})],
            0,
            id="one-per-record",
        ),
        pytest.param(
            [update("1", a=1), update("1", b=2)], 10, [("1", {"a": 1, "b": 2})], 0, id="disjoint-merge"
        ),
        pytest.param([update("1", a=1), update("1", a=2)], 10, [("1", {"a": 1})], 1, id="overlap-waits"),
        pytest.param(
            [update("1", lifecyclestage=""), update("1", hubspot_owner_id="7")],
            10,
            [("1", {"lifecyclestage": ""})],
            1,
            id="a-clear-goes-alone",
        ),
        pytest.param(
            [update("1", a=1), update("2", a=1), update("3", a=1)],
            2,
            [("1", {"a": 1}), ("2", {"a": 1})],
            1,
            id="limit",
        ),
        pytest.param(
            [update("1", a=1), update("2", a=1), update("1", b=1)],
            1,
            [("1", {"a": 1, "b": 1})],
            1,
            id="full-batch-still-merges-its-records",
        ),
    ],
)
def test_take_batch(
    queued: list[Intent], limit: int, requests: list[tuple[str, dict[str, Any]]], left: int
) -> None:
    batch, rest = take_batch(queued, limit)
    assert [(r.record_id, r.fields) for r in batch] == requests
    assert len(rest) == left
    # Nothing is lost or sent twice.
    sent = [i.id for r in batch for i in r.intents]
    assert sorted(sent + [i.id for i in rest]) == sorted(i.id for i in queued)


@pytest.mark.parametrize(
    ("kwargs", "due"),
    [
        pytest.param({}, T0 + RESCORE_AFTER, id="daily-rescore"),
        pytest.param({"sla_deadline": T0 + timedelta(hours=4)}, T0 + timedelta(hours=4), id="sla-ahead"),
        pytest.param({"sla_deadline": T0 - timedelta(hours=1)}, T0 + RESCORE_AFTER, id="sla-passed"),
        pytest.param(
            {"override_until": T0 + timedelta(hours=2)}, T0 + timedelta(hours=2), id="override-ends"
        ),
        pytest.param({"override_until": T0}, T0 + RESCORE_AFTER, id="override-over"),
        pytest.param({"hold": T0 + timedelta(hours=1)}, T0 + timedelta(hours=1), id="hold-ends"),
    ],
)
def test_due_at(kwargs: dict[str, Any], due: datetime) -> None:
    assert due_at(T0, **kwargs) == due


@pytest.mark.parametrize(
    ("own", "previous", "kept"),
    [
        pytest.param(T0 + timedelta(days=3), None, T0 + timedelta(days=3), id="own-hold"),
        pytest.param(
            None, {"hold_until": (T0 + timedelta(days=1)).isoformat()}, T0 + timedelta(days=1), id="kept"
        ),
        pytest.param(None, {"hold_until": (T0 - timedelta(days=1)).isoformat()}, None, id="ended"),
        pytest.param(None, {"hold_until": None}, None, id="none"),
    ],
)
def test_kept_hold(own: datetime | None, previous: dict[str, Any] | None, kept: datetime | None) -> None:
    assert kept_hold(own, previous, T0) == kept


def test_backoff_grows_to_its_maximum() -> None:
    policy = Backoff(base=timedelta(minutes=1), factor=2, maximum=timedelta(minutes=5))
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (1, 2, 4, 5)]


def person(id_: str, email: str | None) -> RecordRow:
    return RecordRow("hubspot", "contacts", id_, {}, email=email)


def test_assign_keys_shares_new_keys_within_a_page_and_reuses_known_ones() -> None:
    page = [
        person("1", "ana@acme.com"),
        person("2", "ana@acme.com"),
        person("3", "bo@acme.com"),
        person("4", None),
    ]
    named: dict[str, list[tuple[str, str, str]]] = {r.id: [] for r in page}
    keys = assign_keys("person", "hubspot", "contacts", page, named, {}, {"3": "p:bo"})
    assert [(r.id, key, how) for r, key, how in keys.chosen] == [
        ("1", "#new0", "new"),
        ("2", "#new0", "email"),
        ("3", "p:bo", "email"),
        ("4", "#new1", "new"),
    ]
    assert keys.seeds == ["hubspot:contacts:1", "hubspot:contacts:4"]
    links = keys.links(["p:a", "p:d"], "hubspot", "contacts", named, {}, run_id="r")
    assert [(link.id, link.key) for link in links] == [
        ("1", "p:a"),
        ("2", "p:a"),
        ("3", "p:bo"),
        ("4", "p:d"),
    ]


def test_assign_keys_follows_a_stored_cross_id_and_links_the_staged_target() -> None:
    page = [person("1", "ana@acme.com")]
    named = {"1": [("salesforce", "00Q1", "stored_id")]}
    targets = {"salesforce": {"00Q1": (None, "Lead")}}
    keys = assign_keys("person", "hubspot", "contacts", page, named, targets, {})
    links = keys.links(["p:new"], "hubspot", "contacts", named, targets, run_id=None)
    assert [(link.system, link.id, link.key, link.how) for link in links] == [
        ("hubspot", "1", "p:new", "new"),
        ("salesforce", "00Q1", "p:new", "stored_id"),
    ]
