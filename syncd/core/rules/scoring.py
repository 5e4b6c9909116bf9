"""Scoring rules (``scoring.toml``): fit (who they are) plus engagement (what they did), with caps and decay.

Fit rules add ``points`` when ``when`` holds. Engagement rules add ``points`` per unit of a count ``field``
(or once, when only ``when`` is given), up to ``cap``, halved every ``half_life_days`` since ``date_field``.
The sum of each group is capped (``fit_cap``, ``engagement_cap``), the total clamped to 0..``max`` and rounded.
A score at or above ``threshold`` moves the person to the ``qualifies`` stage (marketing qualified).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncd.core.rules.conditions import Condition, FieldSet, compile_condition
from syncd.core.rules.limits import MAX_COUNT, MAX_DAYS, MAX_POINTS, MIN_HALF_LIFE_DAYS
from syncd.core.rules.problems import STAGES_HINT, Problems, clip, did_you_mean, named


class FitModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    when: dict[str, Any]
    points: int = Field(ge=-MAX_POINTS, le=MAX_POINTS)


class EngagementModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    points: float = Field(ge=-MAX_POINTS, le=MAX_POINTS)
    field: str | None = None
    when: dict[str, Any] | None = None
    cap: float | None = Field(default=None, gt=0, le=MAX_POINTS)
    half_life_days: float | None = Field(default=None, ge=MIN_HALF_LIFE_DAYS, le=MAX_DAYS)
    date_field: str | None = None


class ScoringFileModel(BaseModel):
    """The schema of ``scoring.toml``."""

    model_config = ConfigDict(extra="forbid")
    threshold: int = Field(ge=0, le=MAX_COUNT)
    qualifies: str
    max: int = Field(default=100, gt=0, le=MAX_COUNT)
    fit_cap: int | None = Field(default=None, gt=0, le=MAX_COUNT)
    engagement_cap: int | None = Field(default=None, gt=0, le=MAX_COUNT)
    fit: list[FitModel] = Field(default_factory=list)
    engagement: list[EngagementModel] = Field(default_factory=list)


@dataclass(frozen=True)
class FitRule:
    name: str
    when: Condition
    points: int


@dataclass(frozen=True)
class EngagementRule:
    name: str
    points: float
    field: str | None
    when: Condition | None
    cap: float | None
    half_life_days: float | None
    date_field: str | None


@dataclass(frozen=True)
class Scoring:
    """Compiled scoring rules."""

    threshold: int
    qualifies: str
    max: int
    fit_cap: int | None
    engagement_cap: int | None
    fit: tuple[FitRule, ...]
    engagement: tuple[EngagementRule, ...]


def build_scoring(
    model: ScoringFileModel, display: str, problems: Problems, fields: FieldSet, stages: tuple[str, ...]
) -> Scoring | None:
    """Checks the scoring rules' meaning; the compiled Scoring or None after recording problems."""
    before = problems.error_count
    if stages and model.qualifies not in stages:
        problems.error(
            display,
            "",
            "qualifies",
            f'unknown stage "{clip(model.qualifies)}"' + did_you_mean(model.qualifies, stages) + STAGES_HINT,
            ref=("stage", model.qualifies),
        )
    if model.threshold > model.max:
        problems.error(
            display, "", "threshold", f"{model.threshold} is above max ({model.max}): no one qualifies"
        )
    names: set[str] = set()
    fit: list[FitRule] = []
    best_fit = 0.0
    for fm in model.fit:
        where = named("rule", fm.name)
        if fm.name in names:
            problems.error(display, where, "name", "declared twice")
        names.add(fm.name)
        if fm.points == 0:
            problems.warning(display, where, "points", "0 points: this rule changes nothing")
        cond = compile_condition(fm.when, fields, problems, display, where)
        if cond is not None:
            fit.append(FitRule(fm.name, cond, fm.points))
        best_fit += max(fm.points, 0)
    engagement: list[EngagementRule] = []
    best_engagement = 0.0
    for em in model.engagement:
        where = named("rule", em.name)
        if em.name in names:
            problems.error(display, where, "name", "declared twice")
        names.add(em.name)
        ok = True
        if em.field is None and em.when is None:
            problems.error(display, where, "field", "give a count field, a when condition, or both")
            ok = False
        for key, name, kind in (("field", em.field, "number"), ("date_field", em.date_field, "datetime")):
            if name is None:
                continue
            actual = fields.kinds.get(name)
            if actual is None:
                problems.error(
                    display,
                    where,
                    key,
                    f'unknown field "{clip(name)}"'
                    + (did_you_mean(name, fields.kinds) or " (fields are declared in fields.toml)"),
                    ref=("field", name),
                )
                ok = False
            elif actual != kind:
                problems.error(
                    display, where, key, f'"{clip(name)}" is a {actual} field; expected a {kind} field'
                )
                ok = False
        if em.half_life_days is not None and em.date_field is None:
            problems.error(display, where, "half_life_days", "decay needs a date_field to measure age from")
            ok = False
        if em.field is not None and em.cap is None:
            problems.warning(display, where, "cap", "no cap: a count field can add unlimited points")
        when = compile_condition(em.when, fields, problems, display, where) if em.when is not None else None
        if em.when is not None and when is None:
            ok = False
        if ok:
            engagement.append(
                EngagementRule(em.name, em.points, em.field, when, em.cap, em.half_life_days, em.date_field)
            )
        best_engagement += em.cap if em.cap is not None else (1e9 if em.field else max(em.points, 0))
    if model.fit_cap is not None:
        best_fit = min(best_fit, model.fit_cap)
    if model.engagement_cap is not None:
        best_engagement = min(best_engagement, model.engagement_cap)
    reachable = min(best_fit + best_engagement, model.max)
    if reachable < model.threshold <= model.max:
        problems.warning(
            display, "", "threshold", f"{model.threshold} can never be reached (at most {reachable:g} points)"
        )
    if problems.error_count != before:
        return None
    return Scoring(
        model.threshold,
        model.qualifies,
        model.max,
        model.fit_cap,
        model.engagement_cap,
        tuple(fit),
        tuple(engagement),
    )
