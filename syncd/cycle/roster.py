"""The roster of one cycle: who can own records as the systems list them, built from the connectors' reps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from syncd.connectors import RepRecord
from syncd.core.types import Queue, Rep, RepDirectory


@dataclass(frozen=True)
class Roster:
    """Who can own records as the systems list them, and who made a change (by each system's user id)."""

    directory: RepDirectory
    # Salesforce User id / HubSpot user id -> rep key, for every user with an email (the integration too).
    users: Mapping[tuple[str, str], str]

    @classmethod
    def from_reps(cls, reps: Iterable[RepRecord]) -> Roster:
        by_email: dict[str, dict[str, Any]] = {}
        queues: list[Queue] = []
        users: dict[tuple[str, str], str] = {}
        for r in reps:
            if r.kind == "queue":
                queues.append(Queue(r.name, r.id, r.developer_name or ""))
                continue
            if not r.email:
                continue
            email = r.email.strip().lower()
            entry = by_email.setdefault(email, {"name": r.name, "active": True})
            entry["active"] = entry["active"] and r.active
            if r.system == "salesforce":
                entry["salesforce_id"] = r.id
                users[("salesforce", r.id)] = email
            else:
                entry["hubspot_owner_id"] = r.id
                if r.user_id:
                    users[("hubspot", r.user_id)] = email
        directory = RepDirectory(
            (
                Rep(
                    email,
                    e["name"],
                    salesforce_id=e.get("salesforce_id"),
                    hubspot_owner_id=e.get("hubspot_owner_id"),
                    active=e["active"],
                )
                for email, e in by_email.items()
            ),
            queues,
        )
        return cls(directory, users)

    def owner(self, system: str, owner_id: str | None) -> str | None:
        """A system's owner id as a rep key or queue owner."""
        if system == "salesforce":
            return self.directory.owner_from_salesforce(owner_id)
        return self.directory.owner_from_hubspot(owner_id)


def rows_of(reps: Iterable[RepRecord]) -> list[dict[str, Any]]:
    """The reps as the ledger's roster store keeps them."""
    return [
        {
            "system": r.system,
            "kind": r.kind,
            "id": r.id,
            "email": r.email,
            "name": r.name,
            "active": r.active,
            "user_id": r.user_id,
            "developer_name": r.developer_name,
        }
        for r in reps
    ]


def reps_of(rows: Iterable[Mapping[str, Any]]) -> list[RepRecord]:
    """The ledger's roster rows back as the connectors list reps."""
    return [
        RepRecord(
            system=row["system"],
            kind=row["kind"],
            id=row["id"],
            email=row["email"],
            name=row["name"],
            active=bool(row["active"]),
            user_id=row["user_id"],
            developer_name=row["developer_name"],
        )
        for row in rows
    ]
