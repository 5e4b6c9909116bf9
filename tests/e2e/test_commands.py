"""`syncd once`, `plan`, `explain` and `status` against a sandboxed org, through the real click commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import Org

from syncd.cli import cli, main
from syncd.errors import LedgerError


def invoke(org: Org, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--config", str(org.config_path)], obj={"clock": org.clock})


def table_row(output: str, label: str) -> list[int]:
    line = next(line for line in output.splitlines() if line.startswith(label))
    # Numbers print in the one format, with a thousands separator ("20,000").
    return [int(n.replace(",", "")) for n in line[len(label) :].split()]


def test_once_prints_what_it_did_per_system_and_a_second_once_does_nothing(org: Org) -> None:
    first = invoke(org, "once")
    assert first.exit_code == 0, first.output
    assert "Salesforce" in first.output and "HubSpot" in first.output
    # Salesforce: 383 records and the 32 seeded AccountTeamMember rows; HubSpot: 304 contacts and companies,
    # 20 deals.
    assert table_row(first.output, "pulled") == [415, 324]
    assert table_row(first.output, "created")[0] > 0
    assert sum(table_row(first.output, "changed: owner")) > 0
    assert all(n > 0 for n in table_row(first.output, "API calls"))

    org.clock.advance(minutes=1)
    org.systems.reset_counts()
    second = invoke(org, "once")
    assert second.exit_code == 0, second.output
    for kind in ("owner", "stage", "score", "link", "field"):
        assert table_row(second.output, f"changed: {kind}") == [0, 0]
    assert table_row(second.output, "created") == [0, 0]
    assert org.systems.write_calls() == {}


def test_plan_json_predicts_exactly_what_the_next_once_changes(org: Org) -> None:
    planned = invoke(org, "plan", "--json")
    assert planned.exit_code == 3, planned.output  # changes pending: CI can gate on it
    plan = json.loads(planned.output[planned.output.index("{") :])
    assert org.systems.write_calls() == {}
    assert plan["pending"] is True

    assert invoke(org, "once").exit_code == 0
    status = json.loads(invoke(org, "status", "--json").output)
    cycle = next(r for r in status["runs"] if r["kind"] == "cycle")
    assert cycle["counters"]["changes"] == plan["counts"]
    assert plan["decided"] == {"account": 40, "person": 300}
    group = next(g for g in plan["groups"] if g["system"] == "salesforce" and g["action"] == "owner")
    assert sum(group["by_rep"].values()) == group["count"] == plan["counts"]["salesforce"]["owner"]
    assert 0 < len(group["samples"]) <= 3
    reps = plan["impact"]["reps"]
    assert sum(r["gained"] for r in reps) == plan["impact"]["owner_changes"] > 0
    assert all(r["load_after"] == r["load_before"] + r["net"] for r in reps)


def test_plan_after_a_sync_makes_no_api_call_and_exits_0_when_nothing_would_change(org: Org) -> None:
    assert invoke(org, "once").exit_code == 0
    org.clock.advance(minutes=5)
    assert invoke(org, "once").exit_code == 0  # the echoes of the first cycle's writes
    org.systems.reset_counts()

    planned = invoke(org, "plan", "--json")

    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.output)["pending"] is False
    assert sum(sum(kinds.values()) for kinds in org.systems.kinds().values()) == 0
    assert "Nothing to change" in invoke(org, "plan").output


def test_plan_of_a_candidate_lists_moves_per_owner_and_rule(
    org: Org, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke(org, "once").exit_code == 0
    candidate = tmp_path / "candidate"
    shutil.copytree(Path(__file__).resolve().parents[2] / "mappings", candidate)
    routing = candidate / "routing.toml"
    routing.write_text(
        routing.read_text().replace(
            'when = { country = ["US", "CA", "MX"] }', 'when = { country = ["US", "CA", "MX", "DE", "GB"] }'
        )
    )
    result = invoke(org, "plan", "--rules", str(candidate), "--reps", "2")
    assert result.exit_code == 3, result.output
    out = result.output
    assert "Nothing was written to either system." in out
    assert "Owners: records gained and lost" in out
    assert "AE North America" in out
    assert "more owners" in out
    bad = tmp_path / "bad"
    shutil.copytree(candidate, bad)
    (bad / "scoring.toml").write_text('threshold = "high"\n')
    with pytest.raises(SystemExit) as refused:
        main(["plan", "--rules", str(bad), "--config", str(org.config_path)])
    assert refused.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "scoring.toml" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_explain_shows_records_decision_trace_and_changes(org: Org) -> None:
    assert invoke(org, "once").exit_code == 0
    intents = json.loads(invoke(org, "status", "--json").output)
    assert intents["keys"]["person"] == 300
    lead = next(r for r in org.sandbox.sf_store.all("Lead") if r["Email"] and not r["IsConverted"])
    by_email = invoke(org, "explain", lead["Email"].strip().upper())
    assert by_email.exit_code == 0, by_email.output
    for part in (
        "linked records:",
        f"Salesforce Lead {lead['Id']}",
        "decision (",
        "why:",
        "changes syncd made",
    ):
        assert part in by_email.output
    assert "stage: decided: yes" in by_email.output
    by_id = invoke(org, "explain", lead["Id"], "--json")
    (found,) = json.loads(by_id.output)
    assert found["decision"]["owner"] and any(r["id"] == lead["Id"] for r in found["records"])


def test_status_shows_runs_watermarks_quarantine_and_api_usage(org: Org) -> None:
    assert invoke(org, "once").exit_code == 0
    out = invoke(org, "status").output
    assert "recent runs:" in out and " cycle " in out
    marks = out[out.index("watermarks (pulled up to):") : out.index("quarantine:")].splitlines()
    assert any(line.split()[:2] == ["Salesforce", "Lead"] for line in marks if line.strip())
    assert any(line.split()[:2] == ["HubSpot", "contacts"] for line in marks if line.strip())
    assert "quarantine: 0 records" in out
    assert "of syncd's" in out and "calls on" in out
    data = json.loads(invoke(org, "status", "--json").output)
    assert {w["object"] for w in data["watermarks"]} == {
        "Account",
        "AccountTeamMember",  # account teams (teams.toml), pulled after the records
        "Contact",
        "Lead",
        "Opportunity",
        "User",  # the roster's Users, pulled with the records in the same /composite request
        "companies",
        "contacts",
        "deals",
    }
    assert data["runs"][0]["counters"]["api_calls"]["salesforce"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["once", "--config", "nowhere.toml"], "nowhere.toml: no such file", id="once-no-config"),
        pytest.param(
            ["status", "--config", "nowhere.toml"], "nowhere.toml: no such file", id="status-no-config"
        ),
        pytest.param(
            ["explain", "x@y.z", "--config", "{config}"], "no ledger at", id="explain-before-any-cycle"
        ),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    org: Org,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(org.config_path.parent)
    with pytest.raises(SystemExit) as exit_:
        main([a.format(config=org.config_path) for a in args])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_explain_of_an_unknown_person_is_one_line(org: Org, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(org, "once").exit_code == 0
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "nobody@nowhere.example", "--config", str(org.config_path)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.count("\n") == 0 and "no person or account" in err


def test_config_comes_from_the_environment(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_CONFIG", str(org.config_path))
    before = CliRunner().invoke(cli, ["status"], obj={"clock": org.clock})
    assert isinstance(before.exception, LedgerError) and str(org.config.ledger.path) in str(before.exception)
    assert CliRunner().invoke(cli, ["once"], obj={"clock": org.clock}).exit_code == 0
    assert "recent runs:" in CliRunner().invoke(cli, ["status"]).output


@pytest.mark.parametrize("command", ["once", "plan", "explain", "status"])
def test_every_command_has_help_and_is_in_the_readme(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "--config" in result.output
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"syncd {command}" in readme


def test_plan_beside_a_running_syncd_works_on_a_copy_of_the_ledger(org: Org) -> None:
    cycle = org.cycle()  # holds the ledger, as the daemon would
    cycle.run(org.rules)
    lead = next(r for r in org.sandbox.sf_store.all("Lead") if not r["IsConverted"] and r["Email"])
    org.systems.salesforce().Lead.update(lead["Id"], {"Syncd_Score__c": 1})
    org.clock.advance(minutes=10)

    planned = invoke(org, "plan", "--pull", "--json")

    assert planned.exit_code == 3, planned.output
    plan = json.loads(planned.output)
    assert plan["on_ledger_copy"] is True
    assert plan["counts"]["salesforce"]["score"] == 1
    assert cycle.run(org.rules).tally.counts() == plan["counts"]
