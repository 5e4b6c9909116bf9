"""The status page's data: everything it shows, read from the ledger in one function, ``gather``.

``gather`` is the only place the page touches the ledger (through its public read methods), so re-pointing
the page at another store means changing one function. The result, ``StatusData``, is frozen plain values:
``syncd.reports.status_page`` renders it without any I/O.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from syncd.progress import Snapshot

__all__ = [
    "AssignmentInfo",
    "BudgetInfo",
    "Links",
    "QuarantineInfo",
    "RepLoad",
    "RulesInfo",
    "RunInfo",
    "StatusData",
    "WaitingInfo",
    "gather",
    "rules_info",
]

SYSTEMS = ("salesforce", "hubspot")
UNROUTED = "(no rule routes it)"
NOT_IN_ROSTER = "(not in the roster)"
# HubSpot's object type ids in record URLs: https://developers.hubspot.com/docs/api/crm/understanding-the-crm
_HUBSPOT_TYPE_IDS = {"contacts": "0-1", "companies": "0-2", "deals": "0-3"}


@dataclass(frozen=True, slots=True)
class Links:
    """Where a record opens in its system's UI.

    Salesforce: ``{instance_url}/lightning/r/{Object}/{id}/view``; HubSpot:
    ``{hubspot_app}/contacts/{portal}/record/{type id}/{id}``. Without an instance URL or a portal id a
    record is shown by id only.
    """

    salesforce_instance_url: str | None = None
    hubspot_app_url: str | None = "https://app.hubspot.com"
    hubspot_portal_id: str | None = None

    def url(self, system: str, obj: str, record_id: str) -> str | None:
        rid = quote(record_id, safe="")
        if system == "salesforce" and self.salesforce_instance_url:
            return f"{self.salesforce_instance_url.rstrip('/')}/lightning/r/{quote(obj, safe='')}/{rid}/view"
        if system == "hubspot" and self.hubspot_app_url and self.hubspot_portal_id:
            type_id = _HUBSPOT_TYPE_IDS.get(obj)
            if type_id is None:
                return None
            portal = quote(self.hubspot_portal_id, safe="")
            return f"{self.hubspot_app_url.rstrip('/')}/contacts/{portal}/record/{type_id}/{rid}"
        return None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One recent run: how long it took, what it pulled and wrote, what failed and why."""

    id: str
    kind: str
    status: str
    started_at: datetime
    seconds: float | None
    pulled: int
    decided: int
    writes: int
    created: int
    rejected: int
    api_calls: Mapping[str, int]
    error: str | None
    interrupted: bool


@dataclass(frozen=True, slots=True)
class BudgetInfo:
    """One system's API use against syncd's daily budget (as of the latest run that reported it)."""

    system: str
    day: str
    spent: int
    cap: int
    org_used: int | None
    org_limit: int | None
    exhausted: bool


@dataclass(frozen=True, slots=True)
class RepLoad:
    """One rep's load: keys they own, assignments today against their daily cap."""

    rep: str
    team: str
    role: str
    owned: int
    today: int
    daily_cap: int | None
    active: bool
    available: bool
    why_not: str


@dataclass(frozen=True, slots=True)
class QuarantineInfo:
    """A held record: why, how often tried, when next, and where it opens."""

    system: str
    object: str
    record_id: str
    reason: str
    attempts: int
    next_attempt_at: datetime
    reported: bool
    url: str | None


@dataclass(frozen=True, slots=True)
class WaitingInfo:
    """Persons or accounts decided into a queue, or that no rule routes."""

    kind: str
    where: str
    count: int


@dataclass(frozen=True, slots=True)
class AssignmentInfo:
    key: str
    rep: str
    team: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RulesInfo:
    """The rules in force: their digest, their files, when they were loaded and the last refused reload."""

    directory: str
    digest: str | None
    files: tuple[str, ...]
    loaded_at: datetime | None
    error: str | None


@dataclass(frozen=True, slots=True)
class StatusData:
    """Everything the status page shows, as of ``generated_at``."""

    generated_at: datetime
    ledger_path: str
    keys: Mapping[str, int]
    runs: tuple[RunInfo, ...]
    budgets: tuple[BudgetInfo, ...]
    reps: tuple[RepLoad, ...]
    quarantine_total: int
    quarantine_due: int
    quarantine: tuple[QuarantineInfo, ...]
    waiting: tuple[WaitingInfo, ...]
    assigned_last_day: int
    assignments: tuple[AssignmentInfo, ...]
    assignments_by_team: Mapping[str, int]
    assignments_by_hour: tuple[tuple[datetime, int], ...]
    outbox: Mapping[str, int]
    rules: RulesInfo
    progress: Snapshot | None = None
    # Key accounts at risk (``syncd report accounts``): (summary dict, AccountRisk rows), or None.
    key_account_risk: tuple[Any, ...] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def rules_info(
    rules: Any | None,
    directory: Path,
    *,
    loaded_at: datetime | None,
    error: str | None,
) -> RulesInfo:
    """The rules in force from a loaded ``RuleSet`` (None when none loads) and what the daemon knows."""
    files: list[str] = []
    if directory.is_dir():
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.name.startswith((".", "#")) and not path.name.endswith("~"):
                files.append(os.path.relpath(path, directory))
    return RulesInfo(
        directory=str(directory),
        digest=getattr(rules, "digest", None),
        files=tuple(files),
        loaded_at=loaded_at,
        error=error,
    )


def _run(run: Any) -> RunInfo:
    c: Mapping[str, Any] = run.counters or {}
    changes = c.get("changes") or {}
    writes = sum(n for per_kind in changes.values() if isinstance(per_kind, dict) for n in per_kind.values())
    created = sum(int((per_kind or {}).get("create", 0)) for per_kind in changes.values())
    seconds = None if run.finished_at is None else (run.finished_at - run.started_at).total_seconds()
    return RunInfo(
        id=run.id,
        kind=run.kind,
        status=run.status,
        started_at=run.started_at,
        seconds=seconds,
        pulled=sum((c.get("pulled") or {}).values()),
        decided=sum((c.get("decided") or {}).values()),
        writes=int(writes),
        created=created,
        rejected=sum((c.get("failed") or {}).values()),
        api_calls=dict(c.get("api_calls") or {}),
        error=run.error,
        interrupted=bool(c.get("interrupted")),
    )


def _budgets(runs: list[Any]) -> tuple[BudgetInfo, ...]:
    latest = next((r.counters.get("budget") for r in runs if (r.counters or {}).get("budget")), None)
    if not latest:
        return ()
    out = []
    for system in SYSTEMS:
        b = latest.get(system) or {}
        out.append(
            BudgetInfo(
                system=system,
                day=str(b.get("day") or "-"),
                spent=int(b.get("spent") or 0),
                cap=int(b.get("cap") or 0),
                org_used=b.get("org_used"),
                org_limit=b.get("org_limit"),
                exhausted=bool(b.get("exhausted")),
            )
        )
    return tuple(out)


def _reps(
    rules: Any | None, owned: Mapping[str, int], today: Mapping[str, int], now: datetime
) -> tuple[RepLoad, ...]:
    roster = getattr(rules, "roster", None)
    declared = dict(getattr(roster, "reps", {}) or {})
    out = []
    for key, rep in declared.items():
        available, why = rep.available(now) if rep.active else (False, "inactive")
        out.append(
            RepLoad(
                rep=key,
                team=rep.team,
                role=rep.role,
                owned=owned.get(key, 0),
                today=today.get(key, 0),
                daily_cap=rep.daily_cap,
                active=rep.active,
                available=available,
                why_not=why,
            )
        )
    for key in sorted(set(owned) - set(declared)):
        out.append(RepLoad(key, NOT_IN_ROSTER, "", owned[key], today.get(key, 0), None, False, False, ""))
    teams = tuple(getattr(roster, "teams", ()) or ())

    def order(r: RepLoad) -> tuple[int, str, str]:
        return (teams.index(r.team) if r.team in teams else len(teams), r.team, r.rep)

    return tuple(sorted(out, key=order))


def _waiting(owners: Mapping[tuple[str, str | None], int]) -> tuple[WaitingInfo, ...]:
    out = []
    for (kind, owner), n in owners.items():
        if owner is None:
            out.append(WaitingInfo(kind, UNROUTED, n))
        elif owner.startswith("queue:"):
            out.append(WaitingInfo(kind, f"queue {owner.removeprefix('queue:')}", n))
    return tuple(sorted(out, key=lambda w: (w.kind, w.where != UNROUTED, w.where)))


def _by_hour(rows: list[Any], now: datetime) -> tuple[tuple[datetime, int], ...]:
    start = (now - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
    counts = Counter(
        row.assigned_at.replace(minute=0, second=0, microsecond=0) for row in rows if row.assigned_at >= start
    )
    return tuple((start + timedelta(hours=h), counts.get(start + timedelta(hours=h), 0)) for h in range(24))


def gather(
    ledger_path: Path,
    *,
    now: datetime,
    rules: Any | None,
    rules_state: RulesInfo,
    links: Links,
    progress: Snapshot | None = None,
    runs: int = 20,
    quarantine_rows: int = 200,
    assignment_rows: int = 5_000,
) -> StatusData:
    """Read what the page shows from the ledger (read-only; safe beside a running daemon).

    The one function of the page that reads the ledger. A ledger that does not exist yet gives an empty
    page rather than an error: a daemon's page is up before its first cycle has written anything.
    """
    from syncd.ledger import Ledger

    if not Path(ledger_path).is_file():
        return StatusData(
            generated_at=now,
            ledger_path=str(ledger_path),
            keys={},
            runs=(),
            budgets=(),
            reps=_reps(rules, {}, {}, now),
            quarantine_total=0,
            quarantine_due=0,
            quarantine=(),
            waiting=(),
            assigned_last_day=0,
            assignments=(),
            assignments_by_team={},
            assignments_by_hour=_by_hour([], now),
            outbox={},
            rules=rules_state,
            progress=progress,
            notes=("No ledger yet: the first cycle creates it.",),
        )
    with Ledger(ledger_path, readonly=True) as ledger:
        view = ledger.views.status(runs=runs)
        owned = ledger.decisions.assignment_counts()
        today: dict[str, int] = ledger.decisions.daily_counts(_day(now))
        held = ledger.quarantine.held()
        owners = ledger.views.owners_by_kind()
        assigned, recent = ledger.decisions.assignments_since(now - timedelta(days=1), limit=assignment_rows)
        risk = _key_account_risk(ledger, rules, now)
    by_team = Counter(row.team for row in recent)
    return StatusData(
        generated_at=now,
        ledger_path=view.path,
        keys=dict(view.keys),
        runs=tuple(_run(r) for r in view.runs),
        budgets=_budgets(view.runs),
        reps=_reps(rules, owned, today, now),
        quarantine_total=view.quarantine.total,
        quarantine_due=view.quarantine.due,
        quarantine=tuple(
            QuarantineInfo(
                q.system,
                q.object,
                q.record_id,
                q.reason,
                q.attempts,
                q.next_attempt_at,
                q.reported,
                links.url(q.system, q.object, q.record_id),
            )
            for q in sorted(held, key=lambda q: (not q.reported, -q.attempts, q.system, q.object))[
                :quarantine_rows
            ]
        ),
        waiting=_waiting(owners),
        assigned_last_day=assigned,
        assignments=tuple(AssignmentInfo(a.key, a.rep, a.team, a.reason, a.assigned_at) for a in recent),
        assignments_by_team=dict(by_team.most_common()),
        assignments_by_hour=_by_hour(recent, now),
        outbox=dict(view.outbox),
        rules=rules_state,
        progress=progress,
        key_account_risk=risk,
    )


def _key_account_risk(ledger: Any, rules: Any | None, now: datetime) -> tuple[Any, ...] | None:
    """(summary, accounts) of ``syncd report accounts`` from the ledger; None without teams.toml or
    before the first cycle pulled any account."""
    if rules is None or getattr(rules, "teams", None) is None:
        return None
    if not ledger.records.counts().get(("salesforce", "Account")):
        return None
    from syncd.reports.accounts import from_ledger

    report = from_ledger(ledger, rules, now=now)
    return (report.summary, tuple(report.accounts))


def _day(now: datetime) -> date:
    from datetime import UTC

    return now.astimezone(UTC).date()
