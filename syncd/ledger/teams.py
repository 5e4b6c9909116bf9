"""Account teams: the members of each account's Salesforce team as last read, with syncd's managed flag, and
each account's last team decision (tier, owner, seats) for ``explain`` and ``syncd report accounts``.

The flag is the ledger's: a member syncd added (or put back after an owner change erased the team) stays
``managed`` even though Salesforce shows it as created afresh; a member first seen without syncd having
added it is a human's unless an integration (no rep on the roster) created it with one of the rules' roles.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.ledger.rows import _dt_opt, _dumps, _ts, _ts_opt
from syncd.ledger.store import Store, _guarded

_COLUMNS = (
    "account_id",
    "user_id",
    "member_id",
    "role",
    "account_access",
    "opportunity_access",
    "case_access",
    "managed",
)


@dataclass(frozen=True, slots=True)
class TeamRow:
    """One AccountTeamMember as the ledger keeps it."""

    account_id: str
    user_id: str
    member_id: str | None
    role: str | None
    account_access: str | None
    opportunity_access: str | None
    case_access: str | None
    managed: bool

    def same(self, other: TeamRow) -> bool:
        """Whether both rows show the same member (id, role, access); the flag is not compared."""
        return (
            self.member_id,
            self.role,
            self.account_access,
            self.opportunity_access,
            self.case_access,
        ) == (other.member_id, other.role, other.account_access, other.opportunity_access, other.case_access)


@dataclass(frozen=True, slots=True)
class TeamDecisionRow:
    """An account's last team decision."""

    key: str
    account_id: str | None
    tier: str | None
    owner: str | None
    previous_owner: str | None
    owner_since: datetime | None
    decided_at: datetime
    data: Mapping[str, Any]


class Teams(Store):
    """Team members per account and the last team decision per account (see the module docstring)."""

    @_guarded
    def members(self, account_ids: Iterable[str]) -> dict[str, list[TeamRow]]:
        """Salesforce Account id -> its members as last read (accounts without members are left out)."""
        ids = sorted(set(account_ids))
        out: dict[str, list[TeamRow]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM team_members WHERE account_id IN ({marks}) "
                "ORDER BY account_id, user_id",
                chunk,
            ):
                out.setdefault(row[0], []).append(_row(row))
        return out

    @_guarded
    def all_members(self) -> list[TeamRow]:
        rows = self._conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM team_members ORDER BY account_id, user_id"
        )
        return [_row(r) for r in rows]

    @_guarded
    def save(self, rows: Iterable[TeamRow], *, run_id: str | None = None) -> None:
        """Insert or replace members (by account and user)."""
        now = self._now()
        with self.transaction():
            self._conn.executemany(
                f"INSERT OR REPLACE INTO team_members ({', '.join(_COLUMNS)}, seen_at, run_id) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))}, ?, ?)",
                [(*_values(r), now, run_id) for r in rows],
            )

    @_guarded
    def replace_teams(self, teams: Mapping[str, Iterable[TeamRow]], *, run_id: str | None = None) -> None:
        """Replace the whole stored team of each account given (a fresh read: members gone are dropped)."""
        with self.transaction():
            for account_id, rows in teams.items():
                self._conn.execute("DELETE FROM team_members WHERE account_id = ?", (account_id,))
                self.save(rows, run_id=run_id)

    @_guarded
    def remove_member(self, member_id: str) -> None:
        with self.transaction():
            self._conn.execute("DELETE FROM team_members WHERE member_id = ?", (member_id,))

    @_guarded
    def by_member(self, member_id: str) -> TeamRow | None:
        row = self._conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM team_members WHERE member_id = ?", (member_id,)
        ).fetchone()
        return _row(row) if row else None

    @_guarded
    def make_due(self, keys: Iterable[str], at: datetime) -> int:
        """Make the decisions of these account keys due at ``at`` (a human changed their team)."""
        wanted = sorted(set(keys))
        total = 0
        with self.transaction():
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                total += self._conn.execute(
                    f"UPDATE decisions SET data = json_set(data, '$.due_at', ?) WHERE key IN ({marks})",
                    [_ts(at), *chunk],
                ).rowcount
        return total

    # -------------------------------------------------------------------------------------- decisions

    @_guarded
    def record_decisions(self, rows: Iterable[TeamDecisionRow], *, run_id: str | None = None) -> None:
        with self.transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO team_decisions (key, account_id, tier, owner, previous_owner, "
                "owner_since, decided_at, data, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.key,
                        r.account_id,
                        r.tier,
                        r.owner,
                        r.previous_owner,
                        _ts_opt(r.owner_since),
                        _ts(r.decided_at),
                        _dumps(dict(r.data)),
                        run_id,
                    )
                    for r in rows
                ],
            )

    @_guarded
    def decisions(self, keys: Iterable[str] | None = None) -> dict[str, TeamDecisionRow]:
        sql = "SELECT key, account_id, tier, owner, previous_owner, owner_since, decided_at, data FROM team_decisions"
        params: list[str] = []
        if keys is not None:
            params = sorted(set(keys))
            if not params:
                return {}
            sql += f" WHERE key IN ({','.join('?' * len(params))})"
        out = {}
        for r in self._conn.execute(sql, params):
            out[r[0]] = TeamDecisionRow(
                r[0], r[1], r[2], r[3], r[4], _dt_opt(r[5]), _dt_opt(r[6]) or datetime.min, json.loads(r[7])
            )
        return out


def _row(r: Any) -> TeamRow:
    return TeamRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]))


def _values(r: TeamRow) -> tuple[Any, ...]:
    return (
        r.account_id,
        r.user_id,
        r.member_id,
        r.role,
        r.account_access,
        r.opportunity_access,
        r.case_access,
        1 if r.managed else 0,
    )
