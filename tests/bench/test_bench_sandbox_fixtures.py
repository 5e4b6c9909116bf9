"""Benchmark of the sandbox fixtures' start and stop (`make bench`; it prints its figures).

Tests start hundreds of sandboxes, so a start and a stop should each take a fraction of a second; the figure
is printed here rather than asserted in a test, where a loaded machine would make it flake.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from syncd.sandbox.runtime import Sandbox


@pytest.mark.bench
def test_bench_sandbox_fixture_start_and_stop(make_sandbox: Callable[..., Sandbox]) -> None:
    make_sandbox()  # the first one in a process also builds Faker's locales
    starts, stops = [], []
    for options in ({}, {"persons": 0}, {}):
        began = time.perf_counter()
        box = make_sandbox(**options)
        starts.append(time.perf_counter() - began)
        began = time.perf_counter()
        box.stop()
        stops.append(time.perf_counter() - began)
    print(
        "\nsandbox fixture: start "
        + " ".join(f"{t:.3f}" for t in starts)
        + " s; stop "
        + " ".join(f"{t:.3f}" for t in stops)
        + " s"
    )
    assert len(starts) == len(stops) == 3
