"""The roster as the systems last listed it: Salesforce Users and Queues, HubSpot owners.

Kept so that ``syncd plan`` can decide from the ledger alone (no API call), and so that a change in the
systems' roster (a User deactivated, an owner archived, a rep added) is seen as a change: :meth:`save`
returns the rep keys (emails) whose facts differ from what was stored, and the cycle makes exactly their
decisions due.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from syncd.ledger.store import Store, _guarded

# The facts of one listed rep or queue that matter to decisions.
COLUMNS = ("system", "kind", "id", "email", "name", "active", "user_id", "developer_name")


class Roster(Store):
    """The systems' reps and queues (see the module docstring)."""

    @_guarded
    def save(self, reps: Iterable[Mapping[str, Any]]) -> set[str]:
        """Replace the stored roster with ``reps`` (dicts with ``COLUMNS``); the emails whose facts changed
        (added, removed, (de)activated, renamed) — on either system."""
        new = {(str(r["system"]), str(r["id"])): _row(r) for r in reps}
        old = {
            (row[0], row[2]): tuple(row)
            for row in self._conn.execute(f"SELECT {', '.join(COLUMNS)} FROM reps")
        }
        changed: set[str] = set()
        for ref in set(new) | set(old):
            if new.get(ref) != old.get(ref):
                for row in (new.get(ref), old.get(ref)):
                    if row is not None and row[3]:
                        changed.add(str(row[3]))
        if new == old:
            return changed
        with self.transaction():
            self._conn.execute("DELETE FROM reps")
            self._conn.executemany(
                f"INSERT INTO reps ({', '.join(COLUMNS)}, seen_at) VALUES ({', '.join('?' * len(COLUMNS))}, ?)",
                [(*row, self._now()) for row in new.values()],
            )
        return changed

    @_guarded
    def update(self, reps: Iterable[Mapping[str, Any]], *, listed: tuple[str, str] | None = None) -> set[str]:
        """Store ``reps`` (a partial listing: the users changed since the last look, or one system's active
        owners) over what is kept; with ``listed = (system, kind)`` the listing is that kind's complete
        *active* set, and a kept active row missing from it is now inactive (an owner archived since).
        Returns the emails whose facts changed."""
        new = {(str(r["system"]), str(r["id"])): _row(r) for r in reps}
        cols = ", ".join(COLUMNS)
        old = {(row[0], row[2]): tuple(row) for row in self._conn.execute(f"SELECT {cols} FROM reps")}
        if listed is not None:
            system, kind = listed
            for ref, row in old.items():
                if row[0] == system and row[1] == kind and row[5] and ref not in new:
                    new[ref] = (*row[:5], 0, *row[6:])
        changes = {ref: row for ref, row in new.items() if old.get(ref) != row}
        if not changes:
            return set()
        with self.transaction():
            self._conn.executemany(
                f"INSERT OR REPLACE INTO reps ({cols}, seen_at) VALUES ({', '.join('?' * len(COLUMNS))}, ?)",
                [(*row, self._now()) for row in changes.values()],
            )
        emails: set[str] = set()
        for ref, row in changes.items():
            for facts in (row, old.get(ref)):
                if facts is not None and facts[3]:
                    emails.add(str(facts[3]))
        return emails

    @_guarded
    def load(self) -> list[dict[str, Any]]:
        """The stored roster, one dict per rep or queue (``COLUMNS``), in a stable order."""
        rows = self._conn.execute(f"SELECT {', '.join(COLUMNS)} FROM reps ORDER BY system, kind, id")
        return [{**dict(zip(COLUMNS, row, strict=True)), "active": bool(row[5])} for row in rows]

    @_guarded
    def empty(self) -> bool:
        return self._conn.execute("SELECT 1 FROM reps LIMIT 1").fetchone() is None


def _row(r: Mapping[str, Any]) -> tuple[Any, ...]:
    email = r.get("email")
    return (
        str(r["system"]),
        str(r["kind"]),
        str(r["id"]),
        email.strip().lower() if isinstance(email, str) and email.strip() else None,
        str(r.get("name") or ""),
        1 if r.get("active") else 0,
        r.get("user_id"),
        r.get("developer_name"),
    )
