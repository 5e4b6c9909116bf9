"""The plan report: per-rep gains and losses with loads and caps, per rule and team, as text and JSON."""

from __future__ import annotations

import io

from rich.console import Console

from syncd.core.impact import Impact, Move
from syncd.core.plan import Tally
from syncd.reports.plan import PlanReport

A, B = "ann@x.example", "bob@x.example"


def move(key: str, before: str | None, after: str | None, rule: str = "AE APAC") -> Move:
    return Move(key, "person", f"Person {key}", before, after, "sales", "sales", "lead", "lead", rule)


def report(*moves: Move) -> PlanReport:
    impact = Impact()
    for m in moves:
        impact.add(m)
    return PlanReport(Tally(), impact, loads={A: 10, B: 3}, caps={A: 1, B: None}, teams={A: "sales"})


def text(r: PlanReport) -> str:
    out = io.StringIO()
    r.render(Console(file=out, width=160, color_system=None))
    return out.getvalue()


def test_per_rep_gained_lost_net_and_load_against_cap() -> None:
    r = report(move("p1", A, B), move("p2", A, B), move("p3", B, A))
    reps = {row["owner"]: row for row in r.to_json()["impact"]["reps"]}
    assert reps[A] == {
        "owner": A,
        "gained": 1,
        "lost": 2,
        "net": -1,
        "load_before": 10,
        "load_after": 9,
        "daily_cap": 1,
        "over_cap": False,
    }
    assert reps[B]["gained"] == 2 and reps[B]["load_after"] == 4
    shown = text(r)
    assert "10 -> 9" in shown and "3 -> 4" in shown
    assert "Person p1: ann@x.example -> bob@x.example" in shown


def test_a_rep_gaining_more_than_their_daily_cap_is_flagged() -> None:
    r = report(move("p1", B, A), move("p2", B, A))
    assert {row["owner"]: row["over_cap"] for row in r.to_json()["impact"]["reps"]}[A] is True
    assert "(over)" in text(r)


def test_moves_are_counted_per_rule_and_unchanged_keys_are_not_moves() -> None:
    r = report(move("p1", A, B, "AE APAC"), move("p2", A, B, "AE EMEA"), move("p3", A, A, "sticky"))
    assert r.to_json()["impact"]["rules"] == {"AE APAC": 1, "AE EMEA": 1}
    assert r.impact.owner_changes == 2


def test_nothing_to_change() -> None:
    r = report()
    assert not r.pending and r.impact.empty
    assert "Nothing to change" in text(r)
