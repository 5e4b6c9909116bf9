"""`syncd backtest` against a sandboxed org: the recorded history replayed through candidate rules and the
live ones, through the real click command, with the report directory it writes."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import ROOT, Org

from syncd.cli import cli, main
from syncd.ledger import SCHEMA_VERSION, Ledger

MAPPINGS = ROOT / "mappings"
PNG = b"\x89PNG\r\n\x1a\n"
NORA, OWEN, GRACE = (f"{n}@northwind.example" for n in ("nora.lindqvist", "owen.price", "grace.kim"))


def invoke(org: Org, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--config", str(org.config_path)], obj={"clock": org.clock})


def candidate(tmp: Path, old: str, new: str) -> Path:
    """The shipped rules with one edit in routing.toml, as an admin's candidate directory."""
    target = tmp / f"candidate-{len(list(tmp.glob('candidate-*')))}"
    shutil.copytree(MAPPINGS, target)
    text = (target / "routing.toml").read_text()
    assert old in text, f"{old!r} not in routing.toml: the test no longer matches the shipped file"
    (target / "routing.toml").write_text(text.replace(old, new))
    return target


MARKETING = f'members = ["{NORA}", "{OWEN}", "{GRACE}"]'


def test_backtest_of_a_narrowed_pool_writes_the_report_and_moves_the_pools_records_to_its_one_member(
    org: Org, tmp_path: Path
) -> None:
    assert invoke(org, "once").exit_code == 0
    narrowed = candidate(tmp_path, MARKETING, f'members = ["{NORA}"]')
    out = tmp_path / "report"

    # The daemon may hold the ledger meanwhile: the backtest only reads it.
    with Ledger(org.config.ledger.path):
        result = invoke(org, "backtest", "--rules", str(narrowed), "--out", str(out))

    assert result.exit_code == 0, result.output
    body = json.loads((out / "report.json").read_text())
    for png in ("load.png", "assigned.png"):
        assert (out / png).read_bytes()[:8] == PNG
    page = (out / "index.html").read_text()
    assert 'src="load.png"' in page and 'src="assigned.png"' in page
    assert body["window"]["days"] == 90
    assert body["start"]["persons"] > 0 and body["start"]["changes"] > 0
    owners = {r["owner"]: r for r in body["owners"]}
    # Owen leaves the marketing pool: the records its round robin gave him go to Nora, the pool's one member;
    # nobody else's new records change (grace.kim is inactive in the roster under both rule sets).
    assert owners[OWEN]["difference"] < 0
    assert owners[NORA]["difference"] == -owners[OWEN]["difference"]
    assert {o for o, r in owners.items() if r["difference"]} == {NORA, OWEN}
    assert body["candidate"]["assigned"] == body["live"]["assigned"]
    assert body["candidate"]["fairness"]["marketing"] == {"spread": 0.0, "gini": 0.0}
    assert "Owners who differ most" in result.output
    row = next(line.split() for line in result.output.splitlines() if line.startswith(OWEN))
    assert row == [
        OWEN,
        str(owners[OWEN]["live"]),
        str(owners[OWEN]["candidate"]),
        str(owners[OWEN]["difference"]),
    ]

    printed = invoke(org, "backtest", "--rules", str(narrowed), "--out", str(tmp_path / "again"), "--json")
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output)["owners"] == body["owners"]


@pytest.mark.parametrize(
    ("edit", "args", "message"),
    [
        pytest.param(
            (MARKETING, 'members = ["nobody@northwind.example"]'),
            (),
            "nobody@northwind.example",
            id="pool-member-not-on-the-roster",
        ),
        pytest.param(('pool = "marketing"', 'pool = "nurture"'), (), "nurture", id="rule-names-no-pool"),
        pytest.param(None, (), "no such directory", id="no-such-directory"),
        pytest.param(
            (MARKETING, MARKETING), ("--since", "ninety"), "expected a number of days", id="since-not-days"
        ),
    ],
)
def test_an_invalid_candidate_is_one_line_with_exit_code_2_and_writes_nothing(
    org: Org,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: tuple[str, str] | None,
    args: tuple[str, ...],
    message: str,
) -> None:
    rules = candidate(tmp_path, *edit) if edit is not None else tmp_path / "missing"
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as exit_:
        main(["backtest", "--rules", str(rules), "--out", str(out), *args, "--config", str(org.config_path)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert not out.exists()


def test_a_ledger_from_before_record_versions_is_replayed_from_an_upgraded_copy_and_left_as_it_was(
    org: Org, tmp_path: Path
) -> None:
    assert invoke(org, "once").exit_code == 0
    same = candidate(tmp_path, MARKETING, MARKETING)
    current = invoke(org, "backtest", "--rules", str(same), "--out", str(tmp_path / "now"), "--json")
    assert current.exit_code == 0, current.output
    # The ledger as syncd left it before it kept record versions (the schema version before them).
    path = org.config.ledger.path
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("DROP TABLE record_versions")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
        db.commit()

    older = invoke(org, "backtest", "--rules", str(same), "--out", str(tmp_path / "old"), "--json")

    assert older.exit_code == 0, older.output
    assert json.loads(older.output)["start"] == json.loads(current.output)["start"]
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION - 1
