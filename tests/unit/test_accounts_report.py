"""``syncd report accounts`` from plain Salesforce rows: the top 20 % of customers by value, distinct reps
across owner, team, contacts and opportunities, the flags, the key contact map, and the status page slot."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from engine_helpers import RULES, rep
from test_status_report import data

from syncd.core.types import Rep, RepDirectory
from syncd.reports.accounts import build_report, seniority
from syncd.reports.status_page import render

NOW = datetime(2026, 11, 28, tzinfo=UTC)
AM, AE, CSM = rep("rachel.green"), rep("jack.miller"), rep("ben.carter")
DIRECTORY = RepDirectory([Rep(r, r, salesforce_id=f"005{i}") for i, r in enumerate((AM, AE, CSM))])
USER = {r: f"005{i}" for i, r in enumerate((AM, AE, CSM))}


def customer(i: int, revenue: int, created: str = "2020-01-01T00:00:00.000+0000") -> dict[str, Any]:
    return {
        "Id": f"001{i}",
        "Name": f"Customer {i}",
        "Type": "Customer",
        "AnnualRevenue": revenue,
        "OwnerId": USER[AM],
        "CreatedDate": created,
    }


def report(team: list[dict[str, Any]], contacts: list[dict[str, Any]]) -> Any:
    accounts = [customer(i, 2_000_000_000 - i) for i in range(5)]
    return build_report(
        RULES,
        DIRECTORY,
        accounts=accounts,
        contacts=contacts,
        opportunities=[{"AccountId": "0010", "OwnerId": USER[AM], "IsWon": True, "Amount": 10}],
        team=team,
        now=NOW,
        source="test",
    )


def test_the_top_fifth_by_revenue_and_one_rep_is_long_term_single_threaded() -> None:
    r = report([], [{"Id": "003a", "AccountId": "0010", "OwnerId": USER[AM], "Title": "CFO"}])
    assert [a.account_id for a in r.accounts] == ["0010"]  # 20 % of 5 customers
    top = r.accounts[0]
    assert top.reps == [AM] and top.single_threaded and top.long_term_single_threaded
    assert r.summary["single_threaded_top_tier"] == 1


def test_team_members_and_contact_owners_count_as_distinct_reps() -> None:
    team = [{"AccountId": "0010", "UserId": USER[CSM], "TeamMemberRole": "Customer Success Manager"}]
    contacts = [
        {"Id": "003a", "AccountId": "0010", "OwnerId": USER[AE], "Title": "Engineer"},
        {"Id": "003b", "AccountId": "0010", "OwnerId": USER[AM], "Title": "VP Sales"},
    ]
    top = report(team, contacts).accounts[0]
    assert top.reps == sorted([AM, AE, CSM]) and not top.single_threaded
    assert top.team == {"Customer Success Manager": [CSM]}
    assert [c.level for c in top.contacts] == ["vice president", "staff"]


@pytest.mark.parametrize(
    ("title", "level"),
    [
        ("Chief Executive Officer", "executive"),
        ("SVP Operations", "vice president"),
        ("Head of IT", "director"),
        ("Office Manager", "manager"),
        ("Analyst", "staff"),
        (None, "staff"),
    ],
)
def test_seniority_from_a_title(title: str | None, level: str) -> None:
    assert seniority(title)[1] == level


def test_the_status_page_fills_the_key_account_slot() -> None:
    r = report([], [])
    page = render(data(key_account_risk=(r.summary, tuple(r.accounts))))
    assert 'id="key-account-risk"' in page and "single-threaded" in page and "Customer 0" in page


def test_csv_has_one_row_per_key_account_and_the_chart_is_svg() -> None:
    r = report([], [{"Id": "003a", "AccountId": "0010", "OwnerId": USER[AM], "Title": "CFO"}])
    lines = r.to_csv().splitlines()
    assert lines[0].startswith("account_id,name,value") and len(lines) == 2
    assert lines[1].startswith("0010,Customer 0,") and ",yes,yes," in lines[1]
    assert "<svg" in r.chart_svg()
