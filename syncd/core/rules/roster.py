"""The roster (``roster.toml``): teams, queues, and the reps with what the systems do not know about them.

A rep is known by email; the roster adds team, role, territory, round-robin weight, daily cap and
availability (out of office now, away periods, working hours). A rep marked ``active = false`` (or
deactivated in either system) owns nothing; an unavailable rep keeps what they own but gets nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from syncd.core.rules.limits import MAX_COUNT, MAX_WEIGHT
from syncd.core.rules.problems import Problems, clip, did_you_mean, named, show
from syncd.core.types import rep_key

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAYS: tuple[Day, ...] = DAYS[:5]


class TeamModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""


class QueueModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    developer_name: str = ""


class AwayModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: date = Field(alias="from")
    until: date


class WorkingHoursModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timezone: str
    days: list[Day] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                parsed = time.fromisoformat(value)
            except ValueError:
                raise ValueError(f'{show(value)} is not a time of day like "09:00"') from None
            value = parsed
        if not isinstance(value, time) or value.tzinfo is not None:
            # TOML's own local times are fine; a number or a time with an offset is not (the zone is
            # `timezone`).
            raise ValueError(f'{show(value)} is not a time of day like "09:00"')
        return value


class RepModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str
    team: str
    role: str = ""
    territory: str = ""
    weight: int = Field(default=1, ge=1, le=MAX_WEIGHT)
    daily_cap: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    active: StrictBool = True
    out_of_office: StrictBool = False
    away: list[AwayModel] = Field(default_factory=list)
    working_hours: WorkingHoursModel | None = None
    successor: str | None = None


class RosterFileModel(BaseModel):
    """The schema of ``roster.toml``."""

    model_config = ConfigDict(extra="forbid")
    teams: dict[str, TeamModel] = Field(min_length=1)
    queues: list[QueueModel] = Field(default_factory=list)
    reps: list[RepModel] = Field(default_factory=list)


@dataclass(frozen=True)
class WorkingHours:
    zone: ZoneInfo
    days: frozenset[int]
    start: time
    end: time

    def covers(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        return local.weekday() in self.days and self.start <= local.time() < self.end


@dataclass(frozen=True)
class RosterRep:
    """One rep as the roster declares them."""

    key: str
    team: str
    role: str
    territory: str
    weight: int
    daily_cap: int | None
    active: bool
    out_of_office: bool
    away: tuple[tuple[date, date], ...]
    working_hours: WorkingHours | None
    # Who takes over this rep's records when they leave (before routing is asked).
    successor: str | None = None

    def available(self, now: datetime) -> tuple[bool, str]:
        """Whether the rep can take new records at ``now``, and why not."""
        if self.out_of_office:
            return False, "out of office"
        today = now.astimezone(UTC).date()
        for start, until in self.away:
            if start <= today <= until:
                return False, f"away {start.isoformat()}..{until.isoformat()}"
        if self.working_hours is not None and not self.working_hours.covers(now):
            return False, "outside working hours"
        return True, ""


@dataclass(frozen=True)
class Roster:
    """Teams, queues and reps, by name and key."""

    teams: tuple[str, ...]
    queues: tuple[str, ...]
    reps: dict[str, RosterRep]


def email_problem(email: str) -> str:
    """Why ``email`` is not a usable address ("" when it is): a syntax check, no DNS lookup."""
    try:
        # test_environment: also accepts the reserved .test domain a rehearsal org may use.
        validate_email(email.strip(), check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        return str(exc).rstrip(".")[:120]
    return ""


def build_roster(model: RosterFileModel, display: str, problems: Problems) -> Roster | None:
    """Checks the roster's meaning; the compiled Roster or None after recording problems."""
    before = problems.error_count
    teams = tuple(model.teams)
    queues: list[str] = []
    for q in model.queues:
        if q.name in queues:
            problems.error(display, named("queue", q.name), "name", "declared twice")
        queues.append(q.name)
    reps: dict[str, RosterRep] = {}
    for rm in model.reps:
        key = rep_key(rm.email)
        where = named("rep", rm.email)
        reason = email_problem(rm.email)
        if reason:
            problems.error(display, where, "email", f"not an email address: {reason}")
            continue
        if key in reps:
            problems.error(display, where, "email", "declared twice")
            continue
        if rm.team not in model.teams:
            problems.error(
                display,
                where,
                "team",
                f'unknown team "{clip(rm.team)}"' + did_you_mean(rm.team, teams),
                ref=("team", rm.team),
            )
        away = []
        for i, a in enumerate(rm.away):
            if a.until < a.from_:
                problems.error(display, where, f"away[{i}]", f"until {a.until} is before from {a.from_}")
            away.append((a.from_, a.until))
        hours = None
        if rm.working_hours is not None:
            wh = rm.working_hours
            try:
                zone = ZoneInfo(wh.timezone)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                problems.error(
                    display,
                    where,
                    "working_hours.timezone",
                    f'unknown time zone "{clip(wh.timezone)}" (use an IANA name like "Europe/Berlin")',
                )
                zone = None
            if wh.end <= wh.start:
                problems.error(
                    display, where, "working_hours.end", f"{wh.end:%H:%M} is not after start {wh.start:%H:%M}"
                )
            if zone is not None:
                hours = WorkingHours(zone, frozenset(DAYS.index(d) for d in wh.days), wh.start, wh.end)
        if rm.out_of_office and not rm.active:
            problems.warning(display, where, "out_of_office", "an inactive rep gets nothing anyway")
        reps[key] = RosterRep(
            key,
            rm.team,
            rm.role,
            rm.territory,
            rm.weight,
            rm.daily_cap,
            rm.active,
            rm.out_of_office,
            tuple(away),
            hours,
            rep_key(rm.successor) if rm.successor else None,
        )
    for rep in reps.values():
        if rep.successor is None:
            continue
        where = named("rep", rep.key)
        if rep.successor == rep.key:
            problems.error(display, where, "successor", "a rep cannot succeed themselves")
        elif rep.successor not in reps:
            problems.error(
                display,
                where,
                "successor",
                f'"{clip(rep.successor)}" is not on the roster' + did_you_mean(rep.successor, reps),
                ref=("rep", rep.successor),
            )
        elif reps[rep.successor].team != rep.team:
            problems.warning(
                display,
                where,
                "successor",
                f"{clip(rep.successor)} is in {clip(reps[rep.successor].team)}, not {clip(rep.team)}: "
                "they succeed only to records of their own team",
            )
    if problems.error_count != before:
        return None
    return Roster(teams, tuple(queues), reps)
