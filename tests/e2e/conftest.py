"""Fixtures of the end-to-end tests: a seeded sandbox, a config pointing at it, a real ledger in tmp_path,
the shipped rules, and a clock the test moves by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2e_crash import config_text
from e2e_systems import Systems

from syncd.config import Config, load_config
from syncd.core.rules import RuleSet, load_ruleset
from syncd.cycle import SyncCycle
from syncd.sandbox.runtime import Sandbox, write_info

ROOT = Path(__file__).resolve().parents[2]
RULES = load_ruleset(ROOT / "mappings")


@dataclass
class Clock:
    """A clock that stands still until a test moves it."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Org:
    """One sandboxed org and syncd set up against it."""

    sandbox: Sandbox
    config_path: Path
    clock: Clock
    rules: RuleSet = RULES
    cycles: list[SyncCycle] = field(default_factory=list)

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    @property
    def systems(self) -> Systems:
        return Systems.from_file(self.config.sandbox.info_file)  # type: ignore[arg-type]

    def cycle(self, **options: Any) -> SyncCycle:
        """A SyncCycle on this org (closed after the test); one at a time may hold the ledger."""
        for old in self.cycles:
            old.close()
        self.cycles.clear()
        c = SyncCycle.from_config(self.config, clock=self.clock, **options)
        self.cycles.append(c)
        return c


@pytest.fixture
def make_org(make_sandbox: Callable[..., Sandbox], tmp_path: Path) -> Iterator[Callable[..., Org]]:
    made: list[Org] = []

    def make(**sandbox_options: Any) -> Org:
        box = make_sandbox(**sandbox_options)
        base = tmp_path / f"org{len(made)}"
        base.mkdir()
        info = base / "info.json"
        write_info(info, box.info())
        config = base / "config.toml"
        config.write_text(config_text(info, base / "syncd.db"))
        org = Org(box, config, Clock())
        made.append(org)
        return org

    yield make
    for org in made:
        for c in org.cycles:
            c.close()


@pytest.fixture
def org(make_org: Callable[..., Org]) -> Org:
    """The Northwind org with 300 persons, syncd configured against it, nothing synced yet."""
    return make_org()
