"""The effect of a rules or roster change on ownership: who gains and loses which records, by which rule.

Pure: the decide stage hands each re-decided key's previous outcome and new outcome to :meth:`Impact.add`;
``syncd plan`` renders the result (per rep: gained, lost, net and the resulting load against the daily cap;
per rule; per team; sample records by name) and ``--json`` prints :meth:`Impact.to_json`. The same numbers
are what the next ``syncd once`` does, because they come from the same decisions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Impact", "Move", "RepLoad"]


@dataclass(frozen=True, slots=True)
class Move:
    """One record whose owner, team or stage a decision changes."""

    key: str
    kind: str  # "person" | "account"
    name: str
    owner_before: str | None
    owner_after: str | None
    team_before: str | None
    team_after: str | None
    stage_before: str | None
    stage_after: str | None
    rule: str

    @property
    def owner_changed(self) -> bool:
        return self.owner_before != self.owner_after

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "name": self.name,
            "owner": [self.owner_before, self.owner_after],
            "team": [self.team_before, self.team_after],
            "stage": [self.stage_before, self.stage_after],
            "rule": self.rule,
        }


@dataclass(frozen=True, slots=True)
class RepLoad:
    """One owner's gains and losses, and what they own before and after."""

    owner: str
    gained: int
    lost: int
    before: int
    daily_cap: int | None

    @property
    def net(self) -> int:
        return self.gained - self.lost

    @property
    def after(self) -> int:
        return self.before + self.net

    @property
    def over_cap(self) -> bool:
        """More new records in one go than the rep's daily cap allows in a day."""
        return self.daily_cap is not None and self.gained > self.daily_cap

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "gained": self.gained,
            "lost": self.lost,
            "net": self.net,
            "load_before": self.before,
            "load_after": self.after,
            "daily_cap": self.daily_cap,
            "over_cap": self.over_cap,
        }


@dataclass
class Impact:
    """Ownership moves collected over one plan or cycle (see the module docstring)."""

    samples_per_rule: int = 3
    gained: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)
    team_in: Counter[str] = field(default_factory=Counter)
    team_out: Counter[str] = field(default_factory=Counter)
    stages: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[Move]] = field(default_factory=dict)

    def add(self, move: Move) -> None:
        """Count one re-decided key; a key whose owner, team and stage stay is not a move."""
        changed = False
        if move.owner_changed:
            changed = True
            if move.owner_before is not None:
                self.lost[move.owner_before] += 1
            if move.owner_after is not None:
                self.gained[move.owner_after] += 1
            self.by_rule[move.rule] += 1
            samples = self.samples.setdefault(move.rule, [])
            if len(samples) < self.samples_per_rule:
                samples.append(move)
        if move.team_before != move.team_after:
            changed = True
            if move.team_before is not None:
                self.team_out[move.team_before] += 1
            if move.team_after is not None:
                self.team_in[move.team_after] += 1
        if move.stage_before != move.stage_after and move.stage_after is not None:
            changed = True
            self.stages[(move.stage_before or "-", move.stage_after)] += 1
        if changed:
            self.by_kind[move.kind] += 1

    @property
    def owner_changes(self) -> int:
        return sum(self.by_rule.values())

    @property
    def empty(self) -> bool:
        return not self.by_kind

    def reps(self, loads: Mapping[str, int], caps: Mapping[str, int | None]) -> list[RepLoad]:
        """Every owner who gains or loses, busiest change first; ``loads`` are owned records before."""
        owners = set(self.gained) | set(self.lost)
        rows = [
            RepLoad(o, self.gained.get(o, 0), self.lost.get(o, 0), loads.get(o, 0), caps.get(o))
            for o in owners
        ]
        return sorted(rows, key=lambda r: (-abs(r.net), -r.gained, r.owner))

    def teams(self) -> list[tuple[str, int, int]]:
        """(team, records moving in, records moving out), by team name."""
        names = sorted(set(self.team_in) | set(self.team_out))
        return [(t, self.team_in.get(t, 0), self.team_out.get(t, 0)) for t in names]

    def to_json(
        self, loads: Mapping[str, int] | None = None, caps: Mapping[str, int | None] | None = None
    ) -> dict[str, Any]:
        return {
            "owner_changes": self.owner_changes,
            "changed": dict(self.by_kind),
            "reps": [r.to_json() for r in self.reps(loads or {}, caps or {})],
            "rules": dict(sorted(self.by_rule.items(), key=lambda kv: (-kv[1], kv[0]))),
            "teams": [{"team": t, "in": i, "out": o} for t, i, o in self.teams()],
            "stages": [{"from": a, "to": b, "count": n} for (a, b), n in sorted(self.stages.items())],
            "samples": {rule: [m.to_json() for m in moves] for rule, moves in sorted(self.samples.items())},
        }
