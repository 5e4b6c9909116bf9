"""Which decisions a change of rules concerns (syncd.core.rules.change), from their stored traces."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncd.core.rules import RuleSet, load_ruleset
from syncd.core.rules.change import rules_change
from syncd.core.rules.ruleset import ruleset_from_sources, sources_digest
from syncd.core.types import DecisionRow
from syncd.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
NA = 'when = { country = ["US", "CA", "MX"] }'
EMEA = 'when = { country = ["GB", "DE", "FR", "NL", "SE", "ES", "IT", "IE", "CH"] }'


def edited(tmp: Path, *edits: tuple[str, str, str]) -> RuleSet:
    target = tmp / f"rules-{len(list(tmp.glob('rules-*')))}"
    shutil.copytree(ROOT / "mappings", target)
    for file, old, new in edits:
        text = (target / file).read_text()
        assert old in text, f"{old!r} not in {file}: the test no longer matches the shipped file"
        (target / file).write_text(text.replace(old, new, 1))
    return load_ruleset(target)


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    return load_ruleset(ROOT / "mappings")


@pytest.fixture
def germany_to_na(tmp_path: Path) -> RuleSet:
    return edited(
        tmp_path,
        ("routing.toml", NA, 'when = { country = ["US", "CA", "MX", "DE"] }'),
        ("routing.toml", EMEA, EMEA.replace('"DE", ', "")),
    )


def route(rule: str, matched: bool, **values: Any) -> list[Any]:
    return ["route", rule, matched, "a test", [[k, v] for k, v in values.items()]]


STAGE = ["stage", "decided", True, "lead", []]


@pytest.mark.parametrize(
    ("trace", "affected"),
    [
        pytest.param(
            [STAGE, route("Marketing nurture", True, stage="lead")], False, id="routed-before-the-change"
        ),
        pytest.param(
            [STAGE, route("AE North America", False, country="FR"), route("AE EMEA", True, country="FR")],
            False,
            id="same-answer-under-both",
        ),
        pytest.param([STAGE, route("AE North America", False, country="DE")], True, id="germany-moves"),
        pytest.param(
            [STAGE, route("AE North America", False, country="GB"), route("AE EMEA", True, country="DE")],
            True,
            id="emea-no-longer-takes-germany",
        ),
        pytest.param([STAGE, route("AE North America", False)], True, id="value-not-recorded"),
        pytest.param(
            [STAGE, route("AE North America", True, country="GB")], True, id="trace-disagrees-with-old-rule"
        ),
        pytest.param(
            [STAGE, route("AE North America", False, country=["DE"])], True, id="value-of-another-form"
        ),
        pytest.param([], True, id="no-trace"),
        pytest.param(
            [
                {
                    "phase": "route",
                    "rule": "AE North America",
                    "matched": False,
                    "test": "",
                    "values": [["country", "FR"]],
                }
            ],
            False,
            id="trace-stored-as-dicts",
        ),
    ],
)
def test_a_territory_change_concerns_exactly_the_decisions_whose_tried_rules_answer_differently(
    shipped: RuleSet, germany_to_na: RuleSet, trace: list[Any], affected: bool
) -> None:
    change = rules_change(shipped, germany_to_na)
    assert change is not None
    assert set(change.conditions) == {"AE North America", "AE EMEA"}
    assert change.affects(trace) is affected


def test_a_comment_changes_no_decision(shipped: RuleSet, tmp_path: Path) -> None:
    commented = edited(tmp_path, ("routing.toml", "[[rules]]", "# first rule\n[[rules]]"))
    assert commented.digest != shipped.digest
    change = rules_change(shipped, commented)
    assert change is not None and not change.conditions
    assert not change.affects([STAGE, route("AE North America", False, country="DE")])


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(("scoring.toml", "threshold = 60", "threshold = 50"), id="another-file"),
        pytest.param(("routing.toml", 'pool = "ae_na"', 'pool = "ae_emea"'), id="a-rule-sent-elsewhere"),
        pytest.param(("routing.toml", 'name = "AE APAC"', 'name = "AE Asia Pacific"'), id="a-rule-renamed"),
        pytest.param(
            (
                "routing.toml",
                "[[rules]]",
                '[[rules]]\nname = "New first"\nwhen = { country = "DE" }\npool = "ae_na"\n\n[[rules]]',
            ),
            id="a-rule-added",
        ),
    ],
)
def test_any_other_change_may_change_any_decision(
    shipped: RuleSet, tmp_path: Path, edit: tuple[str, str, str]
) -> None:
    assert rules_change(shipped, edited(tmp_path, edit)) is None


def test_a_rule_set_whose_text_is_not_what_its_digest_says_tells_nothing(
    shipped: RuleSet, germany_to_na: RuleSet
) -> None:
    # A rule set built in code (tests do it) carries other rules than its text: every decision is due.
    assert rules_change(shipped, dataclasses.replace(germany_to_na, sources=())) is None
    assert rules_change(dataclasses.replace(shipped, digest=shipped.digest + "-left"), germany_to_na) is None


def test_a_rule_set_kept_as_text_compiles_to_the_same_rules(shipped: RuleSet) -> None:
    assert sources_digest(shipped.sources) == shipped.digest
    again = ruleset_from_sources(shipped.sources, "kept")
    assert again is not None and again.digest == shipped.digest
    assert [(r.name, r.when.text, r.pool) for r in again.routing.rules] == [
        (r.name, r.when.text, r.pool) for r in shipped.routing.rules
    ]
    assert ruleset_from_sources([("routing.toml", "not = [toml")], "kept") is None
    assert ruleset_from_sources([("../escape.toml", "")], "kept") is None


def test_the_ledger_keeps_rule_sets_and_lets_unconcerned_decisions_stand(
    tmp_path: Path, shipped: RuleSet
) -> None:

    now = datetime(2026, 11, 28, tzinfo=UTC)
    with Ledger(tmp_path / "l.db", clock=lambda: now) as ledger:
        assert ledger.rulesets.sources("nope") is None
        assert ledger.rulesets.save(shipped.digest, shipped.sources, now)
        assert not ledger.rulesets.save(shipped.digest, shipped.sources, now), "kept once"
        assert ledger.rulesets.sources(shipped.digest) == list(shipped.sources)

        keys = sorted(ledger.identity.new_keys("person", 5))
        rows = [
            DecisionRow(
                key=k,
                digest="old" if i < 4 else "older",
                trace=[route("AE North America", False, country="DE" if i % 2 else "FR")],
                decided_at=now,
                stage="lead",
                score=1.0,
                owner="a@x",
                team="sales",
                data={},
                run_id="r",
            )
            for i, k in enumerate(keys)
        ]
        ledger.decisions.record(rows)
        assert ledger.decisions.other_digests("new") == ["old", "older"]
        assert ledger.decisions.other_digests("old") == ["older"]
        affected = ledger.decisions.affected("old", lambda trace: trace[0][4][0][1] == "DE")
        assert affected == [keys[1], keys[3]]
        assert ledger.decisions.adopt("old", "new", keep=affected) == 2
        assert ledger.decisions.stale_keys("new") == [keys[1], keys[3], keys[4]]
        assert ledger.decisions.get(keys[0]).digest == "new"  # type: ignore[union-attr]
