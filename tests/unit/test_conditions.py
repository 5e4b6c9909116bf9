"""Conditions of the rules files: every operator, nesting, missing values, and shadowing analysis."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from syncd.core.rules.conditions import FieldSet, compile_condition, shadows
from syncd.core.rules.problems import Problems

FIELDS = FieldSet(
    {
        "country": "text",
        "title": "text",
        "employees": "number",
        "active": "boolean",
        "seen": "datetime",
        "stage": "text",
        "account.customer": "boolean",
    },
    stages=("lead", "customer"),
)


def compile_ok(raw: Any) -> Any:
    problems = Problems()
    cond = compile_condition(raw, FIELDS, problems, "f.toml", 'rule "r"')
    assert cond is not None, [str(p) for p in problems.items]
    return cond


CASES = [
    pytest.param({"country": "US"}, {"country": "US"}, True, id="eq"),
    pytest.param({"country": "US"}, {"country": "CA"}, False, id="eq-other"),
    pytest.param({"country": "US"}, {}, False, id="eq-missing"),
    pytest.param({"country": {"ne": "US"}}, {}, True, id="ne-missing"),
    pytest.param({"country": ["US", "CA"]}, {"country": "CA"}, True, id="list-is-in"),
    pytest.param({"country": {"in": ["US"]}}, {"country": None}, False, id="in-missing"),
    pytest.param({"country": {"not_in": ["US"]}}, {"country": "DE"}, True, id="not-in"),
    pytest.param({"employees": {"gt": 10}}, {"employees": 11}, True, id="gt"),
    pytest.param({"employees": {"gt": 10}}, {"employees": 10}, False, id="gt-equal"),
    pytest.param({"employees": {"gte": 10}}, {"employees": 10}, True, id="gte"),
    pytest.param({"employees": {"lt": 10}}, {"employees": 9.5}, True, id="lt-float"),
    pytest.param({"employees": {"lte": 10}}, {"employees": None}, False, id="lte-missing"),
    pytest.param({"employees": {"gte": 10, "lt": 20}}, {"employees": 15}, True, id="two-operators"),
    pytest.param({"employees": {"between": [10, 20]}}, {"employees": 20}, True, id="between-inclusive"),
    pytest.param({"employees": {"gte": 1}}, {"employees": True}, False, id="boolean-is-no-number"),
    pytest.param({"title": {"contains": "VP"}}, {"title": "svp of sales"}, True, id="contains-ignores-case"),
    pytest.param({"title": {"regex": "^Head"}}, {"title": "Head of IT"}, True, id="regex"),
    pytest.param({"title": {"regex": "^Head"}}, {"title": 3}, False, id="regex-non-text"),
    pytest.param({"title": {"exists": True}}, {"title": ""}, False, id="exists-blank"),
    pytest.param({"title": {"exists": False}}, {}, True, id="not-exists"),
    pytest.param({"active": True}, {"active": True}, True, id="boolean"),
    pytest.param(
        {"seen": {"gte": datetime(2024, 1, 1, tzinfo=UTC)}},
        {"seen": datetime(2024, 6, 1, tzinfo=UTC)},
        True,
        id="datetime",
    ),
    pytest.param(
        {"seen": {"lt": date(2024, 1, 1)}}, {"seen": datetime(2023, 12, 31, tzinfo=UTC)}, True, id="date"
    ),
    pytest.param(
        {"any": [{"country": "US"}, {"employees": {"gt": 100}}]}, {"employees": 500}, True, id="any"
    ),
    pytest.param(
        {"all": [{"country": "US"}, {"employees": {"gt": 100}}]}, {"country": "US"}, False, id="all"
    ),
    pytest.param({"not": {"country": "US"}}, {"country": "DE"}, True, id="not"),
    pytest.param({"account": {"customer": True}}, {"account.customer": True}, True, id="account-prefix"),
    pytest.param(
        {"stage": "customer", "country": "US"},
        {"stage": "customer", "country": "US"},
        True,
        id="implicit-and",
    ),
    pytest.param({}, {}, True, id="empty-is-always"),
]


@pytest.mark.parametrize(("raw", "values", "expected"), CASES)
def test_condition(raw: dict[str, Any], values: dict[str, Any], expected: bool) -> None:
    cond = compile_ok(raw)
    assert cond.test(values) is expected
    assert cond.text


@pytest.mark.parametrize(
    ("earlier", "later", "expected"),
    [
        pytest.param({}, {"country": "US"}, True, id="always-shadows-all"),
        pytest.param({"country": ["US", "CA"]}, {"country": "US"}, True, id="subset-of-list"),
        pytest.param({"country": "US"}, {"country": ["US", "CA"]}, False, id="superset-not-shadowed"),
        pytest.param({"employees": {"gte": 100}}, {"employees": {"gte": 500}}, True, id="narrower-range"),
        pytest.param(
            {"employees": {"gt": 100}}, {"employees": {"between": [100, 200]}}, False, id="open-bound"
        ),
        pytest.param(
            {"country": "US"}, {"country": "US", "employees": {"gt": 5}}, True, id="extra-condition"
        ),
        pytest.param(
            {"country": "US", "employees": {"gt": 5}}, {"country": "US"}, False, id="fewer-conditions"
        ),
        pytest.param({"any": [{"country": "US"}]}, {"country": "US"}, False, id="complex-never-claimed"),
        pytest.param({"title": {"exists": True}}, {"title": {"contains": "vp"}}, True, id="exists-implied"),
    ],
)
def test_shadowing(earlier: dict[str, Any], later: dict[str, Any], expected: bool) -> None:
    assert shadows(compile_ok(earlier), compile_ok(later)) is expected


def test_every_problem_of_a_condition_is_reported() -> None:
    problems = Problems()
    cond = compile_condition(
        {"contry": "US", "employees": {"gte": "x"}, "stage": "leed"}, FIELDS, problems, "f.toml", 'rule "r"'
    )
    assert cond is None
    assert [str(p) for p in problems.errors] == [
        'f.toml: rule "r": when.contry: unknown field (did you mean "country"?)',
        'f.toml: rule "r": when.employees.gte: employees is a number, got "x"',
        'f.toml: rule "r": when.stage: unknown stage "leed" (did you mean "lead"?)'
        " (stages are declared in lifecycle.toml)",
    ]
