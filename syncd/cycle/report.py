"""What one cycle (or plan) did: the counters the daemon, ``syncd status`` and the CLI show."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from syncd.core.impact import Impact
from syncd.core.plan import Tally
from syncd.metrics import CycleSummary


@dataclass
class CycleReport:
    """What one cycle (or, with ``dry_run``, one plan) did, per system where the work is per system.

    ``tally`` counts the records changed per system and kind (owner, stage, score, link, field) and the
    creates: made by a cycle, planned by a dry run. ``quarantined`` is the quarantine's size afterwards,
    ``quarantined_now`` the records put there (again) by this run.
    """

    dry_run: bool = False
    run_id: str | None = None
    pulled: Counter[str] = field(default_factory=Counter)
    echoes: Counter[str] = field(default_factory=Counter)
    decided: Counter[str] = field(default_factory=Counter)
    decided_records: Counter[str] = field(default_factory=Counter)
    tally: Tally = field(default_factory=Tally)
    # Ownership moves of the decisions made: per owner gained and lost, per rule and team (syncd plan).
    impact: Impact = field(default_factory=Impact)
    # Writes that went through (or, in a dry run, would be sent): one per record and intent.
    pushed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    quarantined_now: Counter[str] = field(default_factory=Counter)
    quarantined: int = 0
    reported: int = 0
    replayed: int = 0
    overrides: int = 0
    handoffs: int = 0
    # Decisions made under earlier rules that the change of rules does not concern: they stand unchanged.
    rules_adopted: int = 0
    api_calls: dict[str, int] = field(default_factory=dict)
    # Responses that refused a call for a rate limit (429s, retried ones included), since the last report.
    rate_limited: dict[str, int] = field(default_factory=dict)
    budget: dict[str, dict[str, Any]] = field(default_factory=dict)
    interrupted: bool = False
    # Account teams: members added/changed/removed/put back after an owner change, tiers written.
    teams: Counter[str] = field(default_factory=Counter)
    # Wall time of each step (pushes of full batches happen during "decide").
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No record failed and the cycle ran to its end."""
        return not self.interrupted and not sum(self.failed.values())

    def summary(self) -> CycleSummary:
        """The daemon's view of this cycle (metrics and the one summary log line)."""
        budget_used = {s: (b["spent"] / b["cap"]) if b.get("cap") else 0.0 for s, b in self.budget.items()}
        return CycleSummary(
            pulled=dict(self.pulled),
            decided=sum(self.decided.values()),
            pushed={s: n for s, n in self.pushed.items() if n},
            created={s: n for s, n in self.tally.created.items() if n},
            failed={s: n for s, n in self.failed.items() if n},
            api_calls=dict(self.api_calls),
            rate_limited={s: n for s, n in self.rate_limited.items() if n},
            assigned=dict(self.impact.gained),
            budget_used=budget_used,
            quarantined=self.quarantined,
            handoffs=self.handoffs,
            overrides=self.overrides,
            reachable={s: True for s in self.api_calls},
            interrupted=self.interrupted,
        )

    def counters(self) -> dict[str, Any]:
        """The run's counters as the ledger stores them (shown by ``syncd status``)."""
        return {
            "dry_run": self.dry_run,
            "pulled": dict(self.pulled),
            "echoes": dict(self.echoes),
            "decided": dict(self.decided),
            "decided_records": dict(self.decided_records),
            "changes": self.tally.counts(),
            "pushed": dict(self.pushed),
            "failed": dict(self.failed),
            "quarantined_now": dict(self.quarantined_now),
            "quarantined": self.quarantined,
            "replayed": self.replayed,
            "overrides": self.overrides,
            "handoffs": self.handoffs,
            "rules_adopted": self.rules_adopted,
            "owner_changes": self.impact.owner_changes,
            "gained": dict(self.impact.gained),
            "api_calls": dict(self.api_calls),
            "budget": self.budget,
            "interrupted": self.interrupted,
            "seconds": dict(self.seconds),
            "teams": dict(self.teams),
        }
