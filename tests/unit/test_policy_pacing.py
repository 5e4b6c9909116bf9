"""Pacing in ``CallPolicy`` (syncd/connectors/policy.py) on an injected clock: nothing sleeps for real."""

from __future__ import annotations

import threading

import pytest

from syncd.connectors.policy import CallPolicy, DailyBudget, RateLimiter


def test_a_search_waiting_for_its_own_window_keeps_no_slot_of_the_10_s_window_from_other_calls() -> None:
    """HubSpot holds searches to 5 a second on top of the 100 calls per 10 s. A search that waits for the
    search window must not sit on a slot of the 10 s window meanwhile: another thread's call (a list page,
    a batch update) may use it."""
    now = [0.0]
    waits: list[tuple[str, float]] = []
    who = ["search"]

    def sleep(seconds: float) -> None:
        waits.append((who[0], seconds))
        if len(waits) == 1:  # the second search waits for the search window: another call comes meanwhile
            who[0] = "update"
            policy.call("batch/update", lambda: None)
            who[0] = "search"
        now[0] += seconds

    policy = CallPolicy(
        "hubspot",
        requests_per_10s=2,
        search_per_second=1,
        budget=DailyBudget("hubspot", share=1.0, allowance=1000),
        clock=lambda: now[0],
        sleep=sleep,
    )
    policy.call("search", lambda: None, search=True)
    policy.call("search", lambda: None, search=True)
    assert waits[0] == ("search", pytest.approx(1.0))
    assert [w for w in waits if w[0] == "update"] == []
    # The 10 s window then holds the first search and the update: the second search waits for it to pass.
    assert waits[1:] == [("search", pytest.approx(9.0))]
    assert policy.counts == {"search": 2, "batch/update": 1}


def test_calls_of_a_lane_leave_the_rest_of_the_10_s_window_to_searches() -> None:
    """A HubSpot first read lists companies and deals while it searches contacts: the lists share a lane of
    the 10 s window, so however fast they come, the searches keep their room in it."""
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    policy = CallPolicy(
        "hubspot",
        requests_per_10s=10,
        search_per_second=1,
        budget=DailyBudget("hubspot", share=1.0, allowance=1000),
        clock=lambda: now[0],
        sleep=sleep,
    )
    lane = RateLimiter(4, 10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        policy.call("list", lambda: None, lane=lane)
    assert sleeps == []
    # The lane is full: the next list waits for it, though the connector's window has room.
    policy.call("list", lambda: None, lane=lane)
    assert sleeps == [pytest.approx(10.0)]
    # Searches were never short of the window's other 6 slots.
    sleeps.clear()
    for _ in range(6):
        policy.call("search", lambda: None, search=True)
    assert sleeps == [pytest.approx(1.0)] * 5  # only the search window's own pace
    assert policy.counts == {"list": 5, "search": 6}


def test_counts_from_many_threads_add_up() -> None:
    policy = CallPolicy(
        "hubspot",
        requests_per_10s=1_000_000,
        search_per_second=1_000_000,
        budget=DailyBudget("hubspot", share=1.0, allowance=10_000_000),
    )

    def work() -> None:
        for _ in range(2_000):
            policy.call("list", lambda: None)
            policy.saw(200)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert policy.counts == {"list": 8_000}
    assert policy.statuses == {"200": 8_000}
