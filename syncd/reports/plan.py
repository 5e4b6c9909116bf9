"""The plan report: what the next cycle would change, per system and action, per rep, per rule and team.

Built from the dry run's :class:`~syncd.core.plan.Tally` (writes per system and action) and its
:class:`~syncd.core.impact.Impact` (ownership moves), with each rep's current load and daily cap. The same
content renders as rich tables (``render``) and as JSON (``to_json``), so a CI job can gate a rules change on
it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from syncd.core.impact import Impact
from syncd.core.plan import KINDS, Tally
from syncd.core.systems import SYSTEMS

__all__ = ["PlanReport"]

LABEL = {"salesforce": "Salesforce", "hubspot": "HubSpot"}
ACTIONS = (*KINDS, "create")


@dataclass
class PlanReport:
    """Everything ``syncd plan`` shows (see the module docstring)."""

    tally: Tally
    impact: Impact
    loads: Mapping[str, int] = field(default_factory=dict)
    caps: Mapping[str, int | None] = field(default_factory=dict)
    teams: Mapping[str, str] = field(default_factory=dict)
    rules_dir: str = ""
    digest: str = ""
    live_digest: str = ""
    decided: Mapping[str, int] = field(default_factory=dict)
    pulled: Mapping[str, int] = field(default_factory=dict)
    api_calls: Mapping[str, int] = field(default_factory=dict)
    replayed: int = 0
    # Decisions made under the earlier rules that the change does not concern: they stand, not re-decided.
    adopted: int = 0
    on_copy: bool = False
    run_id: str = ""

    @property
    def pending(self) -> bool:
        """Whether the next cycle would write anything."""
        return bool(self.tally.total or sum(self.tally.created.values()) or self.replayed)

    def to_json(self) -> dict[str, Any]:
        body = self.tally.to_json()
        body.update(
            {
                "pending": self.pending,
                "run_id": self.run_id,
                "rules": {
                    "directory": self.rules_dir,
                    "digest": self.digest,
                    "live_digest": self.live_digest,
                },
                "decided": dict(self.decided),
                "pulled": dict(self.pulled),
                "api_calls": dict(self.api_calls),
                "replayed": self.replayed,
                "unconcerned": self.adopted,
                "impact": self.impact.to_json(self.loads, self.caps),
                "on_ledger_copy": self.on_copy,
            }
        )
        return body

    def render(self, console: Console, *, reps: int = 15, samples: int = 3) -> None:
        calls = sum(self.api_calls.values())
        source = f"rules in {self.rules_dir}" if self.rules_dir else "the rules"
        if self.digest and self.live_digest and self.digest != self.live_digest:
            source += f" (digest {self.digest[:12]}; the last cycle ran under {self.live_digest[:12]})"
        console.print(
            f"Plan: what the next cycle would change under {source}. Nothing was written to either system.",
            soft_wrap=True,
        )
        decided = ", ".join(f"{n:,} {kind}s" for kind, n in sorted(self.decided.items()) if n) or "nothing"
        pulled = sum(self.pulled.values())
        where = f"from {pulled:,} records pulled" if pulled else "from the ledger's last synced state"
        console.print(f"Re-decided {decided} {where}; {calls:,} API calls.", soft_wrap=True)
        if self.adopted:
            console.print(
                f"{self.adopted:,} decisions stand: the change of rules does not concern them "
                "(their traces show the same answer from every changed rule).",
                soft_wrap=True,
            )
        if self.replayed:
            console.print(
                f"Includes {self.replayed:,} writes an earlier run left unconfirmed.", soft_wrap=True
            )
        if not self.pending and self.impact.empty:
            console.print("\nNothing to change: both systems already agree with the rules.", soft_wrap=True)
            return
        console.print(self._writes_table())
        rep_rows = self.impact.reps(self.loads, self.caps)
        if rep_rows:
            table = Table(title="Owners: records gained and lost", title_justify="left")
            for name, justify in (
                ("owner", "left"),
                ("team", "left"),
                ("gained", "right"),
                ("lost", "right"),
                ("net", "right"),
                ("load", "right"),
                ("daily cap", "right"),
            ):
                table.add_column(name, justify=justify)  # type: ignore[arg-type]
            for r in rep_rows[:reps]:
                cap = "-" if r.daily_cap is None else f"{r.daily_cap:,}"
                if r.over_cap:
                    cap += " (over)"
                table.add_row(
                    r.owner,
                    self.teams.get(r.owner, ""),
                    f"{r.gained:,}",
                    f"{r.lost:,}",
                    f"{r.net:+,}",
                    f"{r.before:,} -> {r.after:,}",
                    cap,
                )
            if len(rep_rows) > reps:
                table.caption = f"{len(rep_rows) - reps:,} more owners (--reps N, or --json)"
            console.print(table)
        if self.impact.by_rule:
            table = Table(title="Owner changes by the rule that made them", title_justify="left")
            table.add_column("rule")
            table.add_column("records", justify="right")
            table.add_column("e.g.")
            for rule, n in sorted(self.impact.by_rule.items(), key=lambda kv: (-kv[1], kv[0])):
                shown = self.impact.samples.get(rule, [])[:samples]
                eg = "\n".join(f"{m.name}: {m.owner_before or '-'} -> {m.owner_after or '-'}" for m in shown)
                table.add_row(rule, f"{n:,}", eg)
            console.print(table)
        teams = self.impact.teams()
        if teams:
            table = Table(title="Teams: records moving in and out", title_justify="left")
            table.add_column("team")
            table.add_column("in", justify="right")
            table.add_column("out", justify="right")
            for team, n_in, n_out in teams:
                table.add_row(team, f"{n_in:,}", f"{n_out:,}")
            console.print(table)
        if self.on_copy:
            console.print(
                "(Another syncd process holds the ledger: this plan was worked out on a copy of it.)"
            )

    def _writes_table(self) -> Table:
        table = Table(title="Writes per system and action", title_justify="left")
        table.add_column("action")
        for system in SYSTEMS:
            table.add_column(LABEL[system], justify="right")
        counts = self.tally.counts()
        for action in ACTIONS:
            row = [counts[s][action] for s in SYSTEMS]
            if any(row):
                table.add_row(action, *(f"{n:,}" for n in row))
        return table
