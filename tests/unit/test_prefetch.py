"""``syncd.prefetch.interleaved``: several page iterators fetched by worker threads, handed to one caller."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from syncd.prefetch import interleaved, prefetched


def pages(name: str, count: int, closed: list[str], fail_at: int | None = None) -> Iterator[str]:
    try:
        for n in range(count):
            if n == fail_at:
                raise RuntimeError(f"{name} failed at {n}")
            yield f"{name}{n}"
    finally:
        closed.append(f"{name} in {threading.current_thread().name}")


def workers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("prefetch-")]


def test_every_item_of_every_source_arrives_each_source_in_its_order() -> None:
    closed: list[str] = []
    got: dict[str, list[str]] = {"a": [], "b": []}
    with interleaved({"a": pages("a", 50, closed), "b": pages("b", 30, closed)}, depth=2) as items:
        for name, item in items:
            got[name].append(item)
    assert got == {"a": [f"a{n}" for n in range(50)], "b": [f"b{n}" for n in range(30)]}
    assert sorted(closed) == ["a in prefetch-a", "b in prefetch-b"]
    assert workers() == []


def test_an_error_of_one_source_is_raised_in_the_caller_and_stops_the_other() -> None:
    closed: list[str] = []
    endless = (f"b{n}" for n in iter(int, 1))  # never ends by itself
    with (
        pytest.raises(RuntimeError, match="a failed at 3"),
        interleaved({"a": pages("a", 10, closed, fail_at=3), "b": endless}) as items,
    ):
        for _ in items:
            pass
    assert workers() == []
    assert closed == ["a in prefetch-a"]


def test_leaving_early_stops_the_workers_and_closes_their_iterators_in_their_threads() -> None:
    closed: list[str] = []
    with interleaved({"a": pages("a", 1000, closed), "b": pages("b", 1000, closed)}) as items:
        next(items)
    assert workers() == []
    assert sorted(closed) == ["a in prefetch-a", "b in prefetch-b"]


def test_prefetched_is_one_source_without_names() -> None:
    closed: list[str] = []
    with prefetched(pages("a", 5, closed)) as items:
        assert list(items) == ["a0", "a1", "a2", "a3", "a4"]
