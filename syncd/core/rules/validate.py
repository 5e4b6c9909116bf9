"""``syncd validate``'s library half: check a rules directory and summarise the outcome in lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syncd.core.rules.problems import PART_CHARS, clip
from syncd.core.rules.ruleset import RuleSet, check_directory


@dataclass(frozen=True)
class Report:
    """The outcome of validating one directory: error and warning lines, and the rule set when valid."""

    directory: Path
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    ruleset: RuleSet | None

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """One closing line: what was loaded, or how many problems were found."""
        warned = (
            f", {len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}" if self.warnings else ""
        )
        if self.ruleset is None:
            n = len(self.errors)
            return f"{clip(str(self.directory), PART_CHARS)}: {n} error{'s' if n != 1 else ''}{warned}"
        rs = self.ruleset
        return (
            f"{rs.directory}: valid ({len(rs.mapping.fields)} fields, {len(rs.lifecycle.stages)} stages, "
            f"{len(rs.scoring.fit) + len(rs.scoring.engagement)} scoring rules, {len(rs.roster.reps)} reps, "
            f"{len(rs.routing.pools)} pools, {len(rs.routing.rules)} routing rules"
            + (f", {len(rs.teams.tiers)} tiers, {len(rs.teams.roles)} team roles" if rs.teams else "")
            + f"; digest {rs.digest[:12]})"
            f"{warned}"
        )


def validate(directory: Path) -> Report:
    """Checks every file of ``directory``; never raises for a problem in the files."""
    ruleset, problems = check_directory(Path(directory))
    return Report(
        Path(directory),
        tuple(str(p) for p in problems.errors),
        tuple(str(p) for p in problems.warnings),
        ruleset,
    )
