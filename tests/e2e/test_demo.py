"""``syncd demo`` on a small org: its report's claims checked against what the sandbox holds afterwards.

The demo keeps the seeded org (``seed/``) and the org as syncd left it (``sandbox/``): the test compares the
two record by record, so every figure it checks is counted independently of the demo's own counting.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syncd.cli import cli
from syncd.core.rules import load_ruleset
from syncd.demo import MARKER, DemoResult, format_report, run_demo
from syncd.errors import ConfigError
from syncd.ledger import Ledger
from syncd.sandbox.runtime import HS_FILE, SF_FILE
from syncd.sandbox.store import Store

ROOT = Path(__file__).resolve().parents[2]
PERSONS = 300


def stores(directory: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(Salesforce, HubSpot) records of a sandbox data directory: object -> id -> record."""
    sf, hs = Store(directory / SF_FILE), Store(directory / HS_FILE)
    try:
        return (
            {
                obj: {r["Id"]: r for r in sf.all(obj)}
                for obj in ("Lead", "Contact", "Account", "Opportunity", "User")
            },
            {obj: {r["id"]: r for r in hs.all(obj)} for obj in ("contacts", "companies", "deals", "owners")},
        )
    finally:
        sf.close()
        hs.close()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoResult, Path]]:
    work = tmp_path_factory.mktemp("demo")
    yield run_demo(work, rules_dir=ROOT / "mappings", persons=PERSONS), work


def test_the_demo_runs_two_daemon_cycles(demo_run: tuple[DemoResult, Path]) -> None:
    result, work = demo_run
    assert result.exit_code == 0
    assert len(result.cycles) == 2 and result.daemon_ok_cycles == 2
    assert result.seeded_now
    with Ledger(work / "syncd.db", readonly=True) as ledger:
        runs = [r for r in ledger.runs.recent() if r.kind == "cycle"]
    assert [r.status for r in runs] == ["ok", "ok"]


def test_the_second_cycle_wrote_nothing(demo_run: tuple[DemoResult, Path]) -> None:
    result, work = demo_run
    second = result.cycles[1]
    assert second.writes == {"salesforce": 0, "hubspot": 0}
    assert second.requests["salesforce"] > 0 and second.requests["hubspot"] > 0
    assert second.report.tally.total == 0
    # Independently: no record in either system changed after the second cycle began.
    with Ledger(work / "syncd.db", readonly=True) as ledger:
        # The newest cycle (the demo's what-if plan ran after it, as a "plan" run that writes nothing).
        started = max(r.started_at for r in ledger.runs.recent(limit=5) if r.kind == "cycle")
    sf, hs = stores(work / "sandbox")
    stamp = started.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    for obj in ("Lead", "Contact", "Account", "Opportunity"):
        assert all(r["SystemModstamp"][:23] < stamp for r in sf[obj].values()), obj
    for obj in ("contacts", "companies", "deals"):
        assert all(r["updatedAt"][:23] < stamp for r in hs[obj].values()), obj
    assert "The sandbox received 0 write requests" in format_report(result)


def test_owners_corrected_per_team_match_the_sandbox(demo_run: tuple[DemoResult, Path]) -> None:
    result, work = demo_run
    (sf0, hs0), (sf1, hs1) = stores(work / "seed"), stores(work / "sandbox")
    rules = load_ruleset(ROOT / "mappings")
    team_of_user = {
        u["Id"]: rules.roster.reps[u["Email"]].team
        for u in sf1["User"].values()
        if u["Email"] in rules.roster.reps
    }
    team_of_owner = {o["id"]: rules.roster.reps[o["email"]].team for o in hs1["owners"].values()}
    counted: dict[str, Counter[str]] = {}
    for obj in ("Lead", "Contact", "Account", "Opportunity"):
        for id_, before in sf0[obj].items():
            owner = sf1[obj][id_]["OwnerId"]
            if owner != before["OwnerId"]:
                counted.setdefault(team_of_user.get(owner, "queue"), Counter())["salesforce"] += 1
    for obj in ("contacts", "companies", "deals"):
        for id_, before in hs0[obj].items():
            owner = hs1[obj][id_]["properties"].get("hubspot_owner_id")
            if owner != before["properties"].get("hubspot_owner_id"):
                counted.setdefault(team_of_owner[owner], Counter())["hubspot"] += 1
    assert counted == result.owners_by_team
    counts = result.cycles[0].report.tally.counts()
    for system in ("salesforce", "hubspot"):
        assert counts[system]["owner"] == sum(c[system] for c in counted.values())


def test_created_leads_and_departed_owners_match_the_sandbox(demo_run: tuple[DemoResult, Path]) -> None:
    result, work = demo_run
    (sf0, _), (sf1, hs1) = stores(work / "seed"), stores(work / "sandbox")
    created = {id_: r for id_, r in sf1["Lead"].items() if id_ not in sf0["Lead"]}
    assert len(created) == result.cycles[0].report.tally.counts()["salesforce"]["create"] > 0
    # Each for a HubSpot contact, which now points back at it.
    for id_, lead in created.items():
        assert hs1["contacts"][lead["Syncd_HubSpot_Id__c"]]["properties"]["syncd_salesforce_id"] == id_
    assert result.leads_after - result.leads_before == len(created)
    inactive = {u["Id"] for u in sf1["User"].values() if not u["IsActive"]}
    left = sum(
        1
        for obj in ("Lead", "Contact", "Account")
        for r in sf1[obj].values()
        if r["OwnerId"] in inactive and not r.get("IsConverted") and not r["IsDeleted"]
    )
    assert result.departed_before["salesforce"] > left == result.departed_after["salesforce"]
    assert sum(n for (system, _, _), n in result.departed_kept.items() if system == "salesforce") == left


def test_the_report_points_at_commands_that_work(demo_run: tuple[DemoResult, Path]) -> None:
    result, work = demo_run
    text = format_report(result)
    assert result.example_email is not None
    config = work / "config.toml"
    assert f"syncd explain {result.example_email} --config {config}" in text
    assert f"syncd sandbox serve --data {work}/sandbox --info {work}/info.json" in text
    assert f"syncd plan --config {config}" in text
    explained = CliRunner().invoke(cli, ["explain", result.example_email, "--config", str(config)])
    assert explained.exit_code == 0, explained.output
    assert result.example_email in explained.output
    assert "Salesforce Lead new record" in explained.output  # the example is a hand-off that created a Lead
    status = CliRunner().invoke(cli, ["status", "--config", str(config)])
    assert status.exit_code == 0, status.output


def test_a_second_demo_reuses_the_seeded_org_and_tells_the_same_story(
    demo_run: tuple[DemoResult, Path], tmp_path: Path
) -> None:
    result, work = demo_run
    # The other tests keep reading `work`: this one runs on a copy of its seeded org.
    shutil.copytree(work / "seed", tmp_path / "seed")
    shutil.copy(work / MARKER, tmp_path / MARKER)
    again = run_demo(tmp_path, rules_dir=ROOT / "mappings", persons=PERSONS)
    assert not again.seeded_now
    assert again.exit_code == 0
    for first, second in zip(result.cycles, again.cycles, strict=True):
        assert first.report.tally.counts() == second.report.tally.counts()
        assert first.writes == second.writes
    assert again.owners_by_team == result.owners_by_team


def test_the_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[ledger]\npath = 'mine.db'\n")
    with pytest.raises(ConfigError, match="holds files syncd demo did not write"):
        run_demo(tmp_path, rules_dir=ROOT / "mappings", persons=PERSONS, fresh=True)
    assert (tmp_path / "config.toml").read_text() == "[ledger]\npath = 'mine.db'\n"


def test_the_what_if_is_planned_from_the_ledger_with_no_api_call(demo_run: tuple[DemoResult, Path]) -> None:
    result, _ = demo_run
    w = result.what_if
    assert w is not None
    assert w.api_calls == 0
    assert w.owner_changes > 0 and w.writes > 0
    assert sum(g for _, g, _ in w.reps) == w.owner_changes
    text = format_report(result)
    assert "What if: Germany moves" in text and "with 0 API calls" in text
