"""Fixtures of the connector contract: a freshly seeded sandbox and a harness per system for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from connector_harness import PERSONS, SYSTEMS, Harness, Recorder

from syncd.sandbox.runtime import Sandbox, write_info


@pytest.fixture(params=sorted(SYSTEMS))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with Sandbox(seed=1, persons=PERSONS, rate_limits=False) as sandbox:
        info = tmp_path / "info.json"
        write_info(info, sandbox.info())
        yield Harness(str(request.param), sandbox, info, Recorder(), **SYSTEMS[str(request.param)])
