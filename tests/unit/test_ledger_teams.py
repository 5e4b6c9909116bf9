"""The ledger's account teams: members keep syncd's managed flag across reads, a whole-team read drops the
members gone, and team decisions round-trip."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from syncd.ledger import Ledger
from syncd.ledger.teams import TeamDecisionRow, TeamRow

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def row(user: str, *, managed: bool, member: str | None = None, account: str = "001A") -> TeamRow:
    return TeamRow(account, user, member or f"01M{user}", "Account Manager", "Edit", "Edit", "Edit", managed)


def test_members_round_trip_with_their_flag_and_a_whole_team_read_drops_the_gone(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db", clock=lambda: NOW) as ledger:
        ledger.teams.save([row("005a", managed=True), row("005b", managed=False)])
        assert {(m.user_id, m.managed) for m in ledger.teams.members(["001A"])["001A"]} == {
            ("005a", True),
            ("005b", False),
        }
        ledger.teams.replace_teams({"001A": [row("005b", managed=False)]})
        assert [m.user_id for m in ledger.teams.all_members()] == ["005b"]
        ledger.teams.remove_member("01M005b")
        assert ledger.teams.members(["001A"]) == {}


def test_a_team_decision_round_trips(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db", clock=lambda: NOW) as ledger:
        data = {
            "stage": "customer",
            "seats": [{"label": "Account Manager", "rep": "a@x", "how": "the owner"}],
        }
        ledger.teams.record_decisions(
            [TeamDecisionRow("a:1", "001A", "Strategic", "a@x", "b@x", NOW, NOW, data)], run_id="r1"
        )
        got = ledger.teams.decisions(["a:1"])["a:1"]
        assert (got.tier, got.owner, got.previous_owner, got.owner_since, got.data) == (
            "Strategic",
            "a@x",
            "b@x",
            NOW,
            data,
        )
