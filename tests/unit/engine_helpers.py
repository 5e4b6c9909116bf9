"""Shared builders for the engine's tests: the shipped rules, a fixed `now`, persons and accounts as data."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd.core.engine import decide
from syncd.core.rules import RuleSet, load_ruleset
from syncd.core.rules.roster import Roster, RosterRep
from syncd.core.rules.routing import Pool
from syncd.core.types import AccountView, Decision, LedgerView, PersonView, RepDirectory

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"
RULES = load_ruleset(SHIPPED)
NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)  # a Monday afternoon

NW = "@northwind.example"
SDRS = {f"{n}{NW}" for n in ("sam.patel", "lena.novak", "diego.ramos", "ivy.chen")}
AE_NA = {f"{n}{NW}" for n in ("jack.miller", "emma.johnson", "noah.brown", "olivia.davis")}
AE_EMEA = {f"{n}{NW}" for n in ("lukas.schmidt", "chloe.martin", "sofia.rossi", "hugo.dubois")}
AE_APAC = {f"{n}{NW}" for n in ("kenji.tanaka", "priya.sharma", "mia.wong")}
AMS = {f"{n}{NW}" for n in ("rachel.green", "daniel.cohen", "hannah.weber")}
MARKETING = {f"{n}{NW}" for n in ("nora.lindqvist", "owen.price", "grace.kim")}
INACTIVE = {f"{n}{NW}" for n in ("grace.kim", "olivia.davis", "hugo.dubois")}
OUT_OF_OFFICE = {f"ivy.chen{NW}"}


def rep(name: str) -> str:
    return name + NW


def person(
    key: str = "p1",
    *,
    account: str | None = None,
    sf: str | None = None,
    obj: str | None = None,
    **fields: Any,
) -> PersonView:
    """A person; ``sf`` is the Salesforce id (None: HubSpot-only), ``obj`` its object (Lead/Contact)."""
    if sf is not None and obj is None:
        obj = "Lead"
    return PersonView(
        key, fields, account_key=account, hubspot_id="1", salesforce_id=sf, salesforce_object=obj
    )  # type: ignore[arg-type]


def account(key: str = "a1", *, open_opps: int = 0, won_opps: int = 0, **fields: Any) -> AccountView:
    return AccountView(key, fields, open_opportunities=open_opps, won_opportunities=won_opps)


def run(
    persons: Iterable[PersonView] = (),
    accounts: Iterable[AccountView] = (),
    *,
    ledger: LedgerView | None = None,
    rules: RuleSet = RULES,
    now: datetime = NOW,
    directory: RepDirectory | None = None,
) -> dict[str, Decision]:
    result = decide(list(persons), list(accounts), rules, ledger or LedgerView(), now, directory=directory)
    return result.by_key()


def with_pool(
    rules: RuleSet, pool: str, weights: dict[str, int], caps: dict[str, int] | None = None
) -> RuleSet:
    """The rules with one pool's members replaced by fresh reps of the pool's team with these weights."""
    team = rules.routing.pools[pool].team
    reps = dict(rules.roster.reps)
    for key, weight in weights.items():
        reps[key] = RosterRep(key, team, "", "", weight, (caps or {}).get(key), True, False, (), None)
    roster = Roster(rules.roster.teams, rules.roster.queues, reps)
    pools = dict(rules.routing.pools)
    pools[pool] = Pool(pool, team, tuple(weights))
    routing = dataclasses.replace(rules.routing, pools=pools)
    return dataclasses.replace(rules, roster=roster, routing=routing)
