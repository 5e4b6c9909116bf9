"""Fixtures shared by every test directory: a running sandbox (both servers, in this process, over HTTPS).

Every fixture is function-scoped, so a test may change records, faults or limits freely; a small sandbox
starts in about 0.1 s (printed by ``tests/bench/test_bench_sandbox_fixtures.py``).

    def test_something(sandbox):                     # Northwind org with ~300 persons, rate limits off
        sf = sandbox.salesforce_client()             # simple_salesforce.Salesforce as the integration user
        hs = sandbox.hubspot_client("sam.patel@northwind.example")
        sandbox.info()                               # what `syncd sandbox serve --info` writes

    def test_other(make_sandbox, tmp_path):
        box = make_sandbox(persons=2_000, rate_limits=True, data_dir=tmp_path / "org")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from syncd.sandbox.runtime import Sandbox

SMALL_ORG_PERSONS = 300


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """A factory: ``make_sandbox(**options)`` starts a Sandbox (options as ``Sandbox``); all stop after the test.

    Defaults: seed 1, 300 persons, rate limits off, memory-only stores, free ports.
    """
    started: list[Sandbox] = []

    def make(**options: Any) -> Sandbox:
        options.setdefault("seed", 1)
        options.setdefault("persons", SMALL_ORG_PERSONS)
        options.setdefault("rate_limits", False)
        box = Sandbox(**options)
        started.append(box)
        return box.start()

    yield make
    for box in reversed(started):
        box.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """A started sandbox holding the Northwind org with ~300 persons (seed 1), rate limits off."""
    return make_sandbox()


@pytest.fixture
def empty_sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """A started sandbox with the org only: the 24 reps, the integration user and the two queues; no persons."""
    return make_sandbox(persons=0)
