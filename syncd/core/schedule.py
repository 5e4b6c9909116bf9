"""When things are due again: a decision's next look (SLA deadlines, overrides, holds, the daily re-score) and
the quarantine's retry backoff. Pure functions of values and ``now``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Engagement points decay every day, so every decision is due again a day after it was made.
RESCORE_AFTER = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Quarantine retry policy: delays grow ``base * factor**(attempts-1)`` up to ``maximum``; reported after N."""

    base: timedelta = timedelta(minutes=15)
    factor: float = 2.0
    maximum: timedelta = timedelta(hours=24)
    report_after: int = 5

    def delay(self, attempts: int) -> timedelta:
        seconds = self.base.total_seconds() * self.factor ** max(attempts - 1, 0)
        return min(timedelta(seconds=seconds), self.maximum)


def kept_hold(hold: datetime | None, previous: Mapping[str, Any] | None, now: datetime) -> datetime | None:
    """A decision's recycling hold: its own, else the previous decision's while it has not ended."""
    if hold is not None or previous is None or not previous.get("hold_until"):
        return hold
    kept = datetime.fromisoformat(previous["hold_until"])
    return kept if kept > now else None


def due_at(
    now: datetime,
    *,
    sla_deadline: datetime | None = None,
    override_until: datetime | None = None,
    hold: datetime | None = None,
) -> datetime:
    """When a decision made at ``now`` must be made again: the earliest of the daily re-score, an SLA
    deadline still ahead, the end of an honoured override, and the end of a hold."""
    due = [now + RESCORE_AFTER]
    if sla_deadline is not None and sla_deadline > now:
        due.append(sla_deadline)
    if override_until is not None and override_until > now:
        due.append(override_until)
    if hold is not None:
        due.append(hold)
    return min(due)


def iso(value: datetime | None) -> str | None:
    """A time as the ledger's decision data keeps it (ISO-8601 UTC with microseconds)."""
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")
