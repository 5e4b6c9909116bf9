"""Lifecycle rules (``lifecycle.toml``): the ordered stages, their owning teams, entry criteria, backward moves.

A person's stage only moves forward on its own: to the furthest stage whose ``entry`` holds (or that the
score threshold reaches). Moving back happens only through a declared backward move, e.g. recycling a
disqualified lead to marketing's nurture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from syncd.core.rules.conditions import Condition, FieldSet, compile_condition
from syncd.core.rules.limits import MAX_DAYS
from syncd.core.rules.problems import Problems, clip, did_you_mean, named


def _listify_str(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class StageModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    team: str
    description: str = ""
    entry: dict[str, Any] | None = None


class BackwardModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1)
    from_: Annotated[list[str], BeforeValidator(_listify_str)] = Field(alias="from", min_length=1)
    to: str
    when: dict[str, Any]
    hold_days: float = Field(default=0, ge=0, le=MAX_DAYS)


class LifecycleFileModel(BaseModel):
    """The schema of ``lifecycle.toml``."""

    model_config = ConfigDict(extra="forbid")
    stages: list[StageModel] = Field(min_length=1)
    backward: list[BackwardModel] = Field(default_factory=list)


@dataclass(frozen=True)
class Stage:
    """One lifecycle stage: its position, owning team and optional entry condition."""

    name: str
    index: int
    team: str
    entry: Condition | None


@dataclass(frozen=True)
class BackwardMove:
    """A declared move back from any of ``from_stages`` to ``to`` when ``when`` holds."""

    name: str
    from_stages: frozenset[str]
    to: str
    when: Condition
    hold_days: float = 0


@dataclass(frozen=True)
class Lifecycle:
    """The ordered stages and the allowed backward moves."""

    stages: tuple[Stage, ...]
    backward: tuple[BackwardMove, ...]
    _by_name: dict[str, Stage] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.stages})

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> Stage | None:
        return self._by_name.get(name)


def stage_names(model: LifecycleFileModel) -> tuple[str, ...]:
    """The declared stage names in order (duplicates dropped), before the file is fully checked."""
    return tuple(dict.fromkeys(s.name for s in model.stages))


def check_stages(model: LifecycleFileModel, display: str, problems: Problems, teams: set[str] | None) -> bool:
    """Checks what needs no other file but the roster: stage names, teams, backward moves' stages and
    order. Runs before the mapping is read so that a broken lifecycle is reported here, not as the
    value-map errors it would cause in fields.toml. True when the stages and moves are sound."""
    before = problems.error_count
    names = stage_names(model)
    seen: set[str] = set()
    for sm in model.stages:
        where = named("stage", sm.name)
        if sm.name in seen:
            problems.error(display, where, "name", "declared twice")
            continue
        seen.add(sm.name)
        if teams is not None and sm.team not in teams:
            problems.error(
                display,
                where,
                "team",
                f'unknown team "{clip(sm.team)}"'
                + did_you_mean(sm.team, teams)
                + " (teams are declared in roster.toml)",
                ref=("team", sm.team),
            )
    rank = {s: i for i, s in enumerate(names)}
    edges: dict[str, set[str]] = {}
    good: list[BackwardModel] = []
    for bm in model.backward:
        where = named("backward move", bm.name)
        ok = True
        for src in bm.from_:
            if src not in rank:
                problems.error(
                    display, where, "from", f'unknown stage "{clip(src)}"' + did_you_mean(src, names)
                )
                ok = False
        if bm.to not in rank:
            problems.error(
                display, where, "to", f'unknown stage "{clip(bm.to)}"' + did_you_mean(bm.to, names)
            )
            ok = False
        if not ok:
            continue
        for src in bm.from_:
            edges.setdefault(src, set()).add(bm.to)
        good.append(bm)

    cycle = _find_cycle(edges, names)
    in_cycle = set(cycle)
    if cycle:
        culprit = next(
            m
            for m in good
            if m.to in in_cycle and any(rank[m.to] >= rank[f] for f in set(m.from_) & in_cycle)
        )
        problems.error(
            display,
            named("backward move", culprit.name),
            "to",
            "backward moves form a cycle: " + " -> ".join(clip(c, 40) for c in cycle),
        )
    for m in good:
        for src in sorted(set(m.from_)):
            if rank[m.to] >= rank[src] and not (src in in_cycle and m.to in in_cycle):
                problems.error(
                    display,
                    named("backward move", m.name),
                    "to",
                    f'"{clip(m.to)}" does not come before "{clip(src)}": only moves back are declared here',
                )
                break
    return problems.error_count == before


def build_lifecycle(
    model: LifecycleFileModel, display: str, problems: Problems, fields: FieldSet
) -> Lifecycle | None:
    """Compiles the entry and backward conditions of stages that passed :func:`check_stages`."""
    before = problems.error_count
    stages: list[Stage] = []
    seen: set[str] = set()
    for sm in model.stages:
        if sm.name in seen:
            continue
        seen.add(sm.name)
        entry = None
        if sm.entry is not None:
            entry = compile_condition(sm.entry, fields, problems, display, named("stage", sm.name), "entry")
        stages.append(Stage(sm.name, len(stages), sm.team, entry))
    moves: list[BackwardMove] = []
    for bm in model.backward:
        when = compile_condition(bm.when, fields, problems, display, named("backward move", bm.name))
        if when is not None:
            moves.append(BackwardMove(bm.name, frozenset(bm.from_), bm.to, when, bm.hold_days))
    if problems.error_count != before:
        return None
    return Lifecycle(tuple(stages), tuple(moves))


def _find_cycle(edges: dict[str, set[str]], order: tuple[str, ...]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for start in order:
        if state.get(start) is None:
            found = visit(start)
            if found:
                return found
    return []
