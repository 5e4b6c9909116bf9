"""The cycle's commands: ``syncd once``, ``syncd plan``, ``syncd backtest``, ``syncd explain`` and ``syncd status``.

A thin click layer over ``syncd.cycle`` and ``syncd.ledger``: each command loads ``--config`` (default
``config.toml``, or ``$SYNCD_CONFIG``), does one thing, and prints a table (or JSON with ``--json``).
``explain`` and ``status`` only read the ledger: they need no API secret and can run beside the daemon.

Errors are one line and exit with code 2 (``syncd.cli.main`` prints a SyncdError that way); ``once`` exits 1
when some records were rejected by a system (they are in quarantine, and ``status`` lists them).

Tests inject the clock through click's context object: ``CliRunner().invoke(cli, [...], obj={"clock": f})``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from syncd.config import Config, LedgerConfig, load_config
from syncd.core.plan import KINDS
from syncd.core.rules import RuleSet, load_ruleset
from syncd.core.types import KeyHistory, RunRow, StatusView
from syncd.cycle import SYSTEMS, CycleReport, SyncCycle, trace_step
from syncd.errors import ConfigError, LedgerError, LockedError, MappingError
from syncd.ledger import Ledger, utc_now
from syncd.memory import return_large_buffers
from syncd.progress import Progress
from syncd.reports.fmt import duration, num, render, table
from syncd.reports.plan import PlanReport
from syncd.reports.progress_render import ProgressBar

__all__ = ["backtest", "explain", "once", "plan", "report", "status"]

_LABEL = {"salesforce": "Salesforce", "hubspot": "HubSpot"}
_CHANGE_ROWS = (*KINDS, "create")


class CommandError(click.ClickException):
    """A one-line error about what the user asked for, with exit code 2 like every other syncd error."""

    exit_code = 2


def config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path("config.toml"),
        envvar="SYNCD_CONFIG",
        show_default=True,
        help="The configuration file (also $SYNCD_CONFIG).",
    )(fn)


def _clock(ctx: click.Context) -> Callable[[], datetime]:
    obj = ctx.find_root().obj
    clock = obj.get("clock") if isinstance(obj, Mapping) else None
    return clock if callable(clock) else utc_now


def _setup(config_path: Path) -> tuple[Config, RuleSet]:
    return_large_buffers()
    config = load_config(config_path)
    return config, load_ruleset(config.rules.directory)


def _ledger_path(config_path: Path) -> Path:
    """The ledger's path from the config file, without resolving any secret (readers need none)."""
    return _config_file_path(config_path, "ledger", "path", "syncd.db")


def _config_file_path(config_path: Path, section: str, key: str, default: str) -> Path:
    """A path setting of the config file, read without resolving any secret, relative to the file."""
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{config_path}: no such file (copy config.example.toml to start)") from None
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    part = data.get(section, {})
    raw = part.get(key, default) if isinstance(part, dict) else None
    if not isinstance(raw, str):
        raise ConfigError(f"{config_path}: {section}.{key}: expected a path")
    path = Path(raw).expanduser()
    return path if path.is_absolute() else config_path.parent / path


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    return render(table(header, rows))


# ------------------------------------------------------------------------------------------------ once


def report_table(report: CycleReport) -> str:
    """A cycle's summary, one column per system."""
    counts = report.tally.counts()
    rows: list[list[Any]] = [
        ["pulled", *(report.pulled.get(s, 0) for s in SYSTEMS)],
        ["  of which syncd's own writes", *(report.echoes.get(s, 0) for s in SYSTEMS)],
        ["decided (records)", *(report.decided_records.get(s, 0) for s in SYSTEMS)],
    ]
    for kind in KINDS:
        rows.append([f"changed: {kind}", *(counts[s][kind] for s in SYSTEMS)])
    rows += [
        ["created", *(counts[s]["create"] for s in SYSTEMS)],
        ["rejected (quarantined)", *(report.quarantined_now.get(s, 0) for s in SYSTEMS)],
        ["API calls", *(report.api_calls.get(s, 0) for s in SYSTEMS)],
    ]
    head = (
        f"{'Plan' if report.dry_run else 'Cycle'} {report.run_id}: decided "
        f"{num(report.decided.get('person', 0))} persons and {num(report.decided.get('account', 0))} accounts"
    )
    tail = []
    if report.replayed:
        tail.append(f"replayed {num(report.replayed)} intents an earlier run left unconfirmed")
    if report.overrides:
        tail.append(f"{num(report.overrides)} manual owner changes seen and honoured")
    if report.handoffs:
        tail.append(f"{num(report.handoffs)} hand-offs")
    tail.append(
        f"quarantine holds {num(report.quarantined)} records ({num(report.reported)} reported after "
        "repeated tries)"
    )
    if report.interrupted:
        tail.append("stopped early on request: the rest goes out with the next cycle")
    return "\n".join([head, "", _table(rows, ["", *(_LABEL[s] for s in SYSTEMS)]), "", *tail])


@click.command()
@config_option
@click.pass_context
def once(ctx: click.Context, config_path: Path) -> None:
    """Run one sync cycle now and print what it did, per system.

    Exit code 0 when every record went through, 1 when some were rejected (they wait in quarantine and
    are retried with backoff), 2 on an error.
    """
    config, rules = _setup(config_path)
    with SyncCycle.from_config(config, clock=_clock(ctx)) as cycle, _progress_bar() as progress:
        report = cycle.run(rules, progress=progress)
    click.echo(report_table(report))
    ctx.exit(0 if report.ok else 1)


# ------------------------------------------------------------------------------------------------ plan


def plan_report(
    report: CycleReport,
    rules: RuleSet,
    live: RuleSet,
    loads: Mapping[str, int],
    *,
    rules_dir: str,
    on_copy: bool,
) -> PlanReport:
    """The plan's content: the dry run's writes and ownership moves, with each owner's load and cap."""
    reps = rules.roster.reps
    return PlanReport(
        tally=report.tally,
        impact=report.impact,
        loads=loads,
        caps={key: rep.daily_cap for key, rep in reps.items()},
        teams={key: rep.team for key, rep in reps.items()},
        rules_dir=rules_dir,
        digest=rules.digest,
        live_digest=live.digest,
        decided=dict(report.decided),
        pulled=dict(report.pulled),
        api_calls=dict(report.api_calls),
        replayed=report.replayed,
        adopted=report.rules_adopted,
        on_copy=on_copy,
        run_id=report.run_id or "",
    )


@click.command()
@config_option
@click.option(
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Plan the rules in this directory (a candidate) instead of the config's; validated first.",
)
@click.option(
    "--pull",
    is_flag=True,
    help="Pull both systems first, as `syncd once` would. Without it the plan uses the last synced state "
    "in the ledger and makes no API call.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (for tools and CI).")
@click.option("--reps", default=15, show_default=True, help="Owners to list in the table.")
@click.pass_context
def plan(
    ctx: click.Context, config_path: Path, rules_dir: Path | None, pull: bool, as_json: bool, reps: int
) -> None:
    """Show what the next cycle would change under the rules on disk (or a candidate, --rules DIR).

    Decides from the ledger's last synced state, with no API call (--pull refreshes first), then undoes
    everything in the ledger (only the run is recorded) and pushes nothing: per system and action, per owner
    (gained, lost, net, resulting load against the daily cap), per rule and team, with sample records.
    Exits 3 when the next cycle would write something, 0 when nothing would change: CI can gate a rules
    change on it.
    """
    config, live = _setup(config_path)
    rules = live
    if rules_dir is not None:
        if not rules_dir.is_dir():
            raise CommandError(f"--rules {rules_dir}: no such directory")
        rules = load_ruleset(rules_dir)
    with tempfile.TemporaryDirectory(prefix="syncd-plan-") as tmp:
        try:
            cycle = SyncCycle.from_config(config, clock=_clock(ctx))
            on_copy = False
        except LockedError:
            # The daemon holds the ledger: plan on a snapshot of it instead (the result is the same).
            copy = Path(tmp) / "ledger.db"
            snapshot_ledger(config.ledger.path, copy)
            cycle = SyncCycle.from_config(
                config.model_copy(update={"ledger": LedgerConfig(path=copy)}), clock=_clock(ctx)
            )
            on_copy = True
        with cycle, _progress_bar() as progress:
            synced = bool(cycle.ledger.records.counts())
            if not pull and not synced:
                click.echo("The ledger holds no synced state yet: pulling both systems first.", err=True)
            loads = cycle.ledger.decisions.owner_counts()
            report = cycle.run(rules, dry_run=True, pull=pull or not synced, progress=progress)
    body = plan_report(
        report, rules, live, loads, rules_dir=str(rules_dir or config.rules.directory), on_copy=on_copy
    )
    if as_json:
        click.echo(json.dumps(body.to_json(), indent=2, sort_keys=True))
    else:
        body.render(Console(highlight=False, soft_wrap=False), reps=reps)
    ctx.exit(3 if body.pending else 0)


def snapshot_ledger(source: Path, target: Path) -> None:
    """Copy a ledger another process is writing, consistently (SQLite's online backup), mode 0600."""
    if not source.is_file():
        raise LedgerError(f"no ledger at {source}: run `syncd once` to create it, or fix ledger.path")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    uri = "file:" + str(source.resolve()).replace("?", "%3F").replace("#", "%23") + "?mode=ro"
    try:
        with (
            contextlib.closing(sqlite3.connect(uri, uri=True)) as src,
            contextlib.closing(sqlite3.connect(target)) as dst,
        ):
            src.backup(dst)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot copy the ledger {source} to plan on: {exc}") from exc


# ------------------------------------------------------------------------------------------------ explain


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def explain_text(found: KeyHistory, notes: Sequence[str] = ()) -> str:
    """One key's explanation; ``notes`` (merges and deletions, see :func:`record_notes`) follow its records."""
    lines = [f"{found.kind} {found.key}"]
    lines.append("linked records:")
    how = {(link.system, link.object, link.id): link for link in found.links}
    for r in found.records:
        link = how.get((r.system, r.object, r.id))
        label = r.email or r.domain or ""
        state = " (deleted)" if r.deleted else ""
        linked = f"linked by {link.how} {_when(link.linked_at)}" if link else ""
        lines.append(f"  {_LABEL[r.system]} {r.object} {r.id} {label}{state}  {linked}".rstrip())
    lines.extend(f"  {note}" for note in notes)
    d = found.decision
    if d is None:
        lines.append("decision: none yet (it is decided in the next cycle)")
    else:
        data = dict(d.data)
        score = "" if d.score is None else f", score {d.score:g}"
        lines.append(
            f"decision ({_when(d.decided_at)}, rules {d.digest[:12]}): stage {d.stage or '-'}{score}, "
            f"owner {d.owner or '(unchanged)'} (team {d.team or '-'}, by {data.get('rule', '-')})"
        )
        change = data.get("rules_change")
        if change:
            owners = change.get("owner") or [None, None]
            stages = change.get("stage") or [None, None]
            lines.append(
                f"  moved by a change of rules ({str(change.get('from', ''))[:12]} -> "
                f"{str(change.get('to', ''))[:12]}): rule {change.get('rule', '-')!r} decided it; "
                f"owner {owners[0] or '-'} -> {owners[1] or '-'}, stage {stages[0] or '-'} -> {stages[1] or '-'}"
            )
        if data.get("owner_facts"):
            lines.append(f"  owner's roster facts then: {data['owner_facts']}")
        if data.get("influencers"):
            lines.append(f"  influencers: {', '.join(data['influencers'])}")
        if found.assignment is not None:
            a = found.assignment
            lines.append(f"  owner since {_when(a.assigned_at)} ({a.reason})")
        lines.append("  why:")
        for row in d.trace:
            lines.append("    " + _step(trace_step(row)))
    if found.history:
        lines.append("decision history:")
        for h in found.history:
            lines.append(
                f"  {_when(h.at)}  stage {h.prev_stage or '-'} -> {h.stage or '-'}, "
                f"owner {h.prev_owner or '-'} -> {h.owner or '-'}, score {_num(h.prev_score)} -> {_num(h.score)}"
                f"  (rules {h.digest[:12]})"
            )
    lines.append("changes syncd made:" if found.intents else "changes syncd made: none")
    for i in found.intents:
        target = i.record_id or f"new record for {i.create_key}"
        fields = ", ".join(f"{k}={v}" for k, v in sorted(i.fields.items()))
        lines.append(
            f"  {_when(i.updated_at)}  {_LABEL[i.system]} {i.object} {target}: {fields}  [{i.state}]"
        )
        lines.append(f"      because: {i.reason}")
    lines.append("manual changes seen:" if found.overrides else "manual changes seen: none")
    for o in found.overrides:
        lines.append(
            f"  {_when(o.seen_at)}  {_LABEL[o.system]} {o.object} {o.record_id}: owner {o.previous or '-'} -> "
            f"{o.rep} by {o.changed_by or 'a user'}; honoured until {_when(o.honoured_until)}"
        )
    for q in found.quarantine:
        lines.append(
            f"quarantined: {_LABEL[q.system]} {q.object} {q.record_id}: {q.reason} "
            f"({q.attempts} tries, next {_when(q.next_attempt_at)})"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _step(step: Mapping[str, Any]) -> str:
    text = f"{step.get('phase')}: {step.get('rule')}: {'yes' if step.get('matched') else 'no'}"
    if step.get("test"):
        text += f" ({step['test']})"
    values = step.get("values") or []
    if values:
        text += " [" + ", ".join(f"{k}={v!r}" for k, v in values) + "]"
    return text


def _history_json(found: KeyHistory) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    d = found.decision
    return {
        "key": found.key,
        "kind": found.kind,
        "records": [
            {"system": r.system, "object": r.object, "id": r.id, "email": r.email, "deleted": r.deleted}
            for r in found.records
        ],
        "links": [{"system": x.system, "object": x.object, "id": x.id, "how": x.how} for x in found.links],
        "decision": None
        if d is None
        else {
            "stage": d.stage,
            "score": d.score,
            "owner": d.owner,
            "team": d.team,
            "digest": d.digest,
            "decided_at": iso(d.decided_at),
            "data": dict(d.data),
            "trace": [trace_step(row) for row in d.trace],
        },
        "history": [
            {
                "at": iso(h.at),
                "stage": h.stage,
                "owner": h.owner,
                "score": h.score,
                "prev_owner": h.prev_owner,
            }
            for h in found.history
        ],
        "changes": [
            {
                "at": iso(i.updated_at),
                "system": i.system,
                "object": i.object,
                "record_id": i.record_id,
                "create_key": i.create_key,
                "fields": dict(i.fields),
                "reason": i.reason,
                "state": i.state,
            }
            for i in found.intents
        ],
        "overrides": [
            {
                "system": o.system,
                "object": o.object,
                "record_id": o.record_id,
                "owner": o.rep,
                "previous": o.previous,
                "changed_by": o.changed_by,
                "seen_at": iso(o.seen_at),
                "honoured_until": iso(o.honoured_until),
            }
            for o in found.overrides
        ],
        "quarantine": [
            {"system": q.system, "object": q.object, "record_id": q.record_id, "reason": q.reason}
            for q in found.quarantine
        ],
    }


@click.command()
@config_option
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
def explain(config_path: Path, query: str, as_json: bool) -> None:
    """Explain one person or account: its linked records, the current decision and why, what syncd
    changed, and the manual changes it saw. QUERY is an email, a Salesforce or HubSpot id, or a key."""
    with Ledger(_ledger_path(config_path), readonly=True) as ledger:
        keys = ledger.views.find_keys(query)
        if not keys:
            alias = ledger.identity.survivor_of(query.strip())
            keys = ledger.views.find_keys(alias.survivor) if alias is not None else []
        if not keys:
            raise CommandError(f"no person or account in the ledger matches {query!r}")
        found = [ledger.views.key_history(key) for key in keys]
        recreate = _recreate_policy(config_path)
        notes = [record_notes(ledger, f, recreate) + team_notes(ledger, f.key) for f in found]
    if as_json:
        click.echo(
            json.dumps(
                [{**_history_json(f), "notes": n} for f, n in zip(found, notes, strict=True)],
                indent=2,
                default=str,
            )
        )
        return
    click.echo("\n\n".join(explain_text(f, n) for f, n in zip(found, notes, strict=True)))


def team_notes(ledger: Ledger, key: str) -> list[str]:
    """An account's team as syncd last decided it: tier, each seat and how it was filled, a succession, and
    the members a human added (teams.toml)."""
    decision = ledger.teams.decisions([key]).get(key)
    if decision is None:
        return []
    data = decision.data
    lines = [
        f"team ({_when(decision.decided_at)}): tier {decision.tier or '-'}, stage {data.get('stage', '-')}, "
        f"owner {decision.owner or '-'}"
    ]
    if data.get("successor"):
        lines.append(f"  succession: the owner left; {data['successor']} of the team took the account over")
    if decision.previous_owner:
        lines.append(f"  previous owner {decision.previous_owner} since {_when(decision.owner_since)}")
    for seat in data.get("seats", []):
        lines.append(f"  seat {seat['label']}: {seat['rep'] or '-'} ({seat['how']})")
    if decision.account_id:
        for m in ledger.teams.members([decision.account_id]).get(decision.account_id, []):
            if not m.managed:
                lines.append(
                    f"  member {m.user_id} as {m.role or '-'}: added by a human, never changed by syncd"
                )
    for change in data.get("changes", []):
        lines.append(
            f"  {change['op']} {change['rep'] or '-'} as {change['label'] or '-'}: {change['reason']}"
        )
    return lines


def _recreate_policy(config_path: Path) -> str:
    """The rules' ``[handoffs] recreate_deleted``, as written (the default when the rules cannot be read)."""
    try:
        policy = load_ruleset(load_config(config_path).rules.directory).policy
    except (ConfigError, MappingError, OSError):
        return "recreate_deleted = never (the default; the rules could not be read)"
    mode, days = policy.recreate_deleted
    return f"recreate_deleted = {mode}" + (f" {days:g}" if mode == "after_days" else "")


def record_notes(ledger: Ledger, found: KeyHistory, recreate: str) -> list[str]:
    """What happened to a key's records in their systems: merges (either side) and deletions by people."""
    notes: list[str] = []
    for r in found.records:
        where = f"{_LABEL[r.system]} {r.object} {r.id}"
        alias = ledger.identity.aliases_of(r.system, [r.id]).get(r.id)
        if alias is not None:
            notes.append(f"{where} was merged into {alias.survivor} (seen {_when(alias.merged_at)})")
        for m in ledger.identity.merged_into(r.system, r.id):
            notes.append(f"{where}: {m.object} {m.id} was merged into it (seen {_when(m.merged_at)})")
        if not r.deleted or alias is not None:
            continue
        if r.system == "salesforce" and r.object in ("Lead", "Contact"):
            by = r.data.get("LastModifiedById")
            never = recreate.startswith("recreate_deleted = never")
            then = "not re-created" if never else "re-created only as the policy allows"
            notes.append(
                f"{where} was deleted by a person{f' ({by})' if by else ''} on {_when(r.modified_at)}; "
                f"{then} (policy [handoffs] {recreate})"
            )
        elif r.system == "hubspot":
            notes.append(
                f"{where} was archived by a person on {_when(r.modified_at)}; syncd never re-creates it"
            )
    return notes


# ------------------------------------------------------------------------------------------------ status


def _duration(run: RunRow) -> str:
    if run.finished_at is None:
        return "running"
    return duration((run.finished_at - run.started_at).total_seconds())


def _changes(run: RunRow) -> int:
    changes = run.counters.get("changes") or {}
    return sum(sum(v.values()) for v in changes.values() if isinstance(v, dict))


def status_text(view: StatusView, detail: Iterable[str]) -> str:
    lines = [
        f"ledger {view.path} (schema {view.schema_version}): "
        f"{num(view.keys.get('person', 0))} persons, {num(view.keys.get('account', 0))} accounts"
    ]
    rows = []
    for run in view.runs:
        c = run.counters
        calls = c.get("api_calls") or {}
        rows.append(
            [
                run.id,
                run.kind,
                run.status + (" (stopped early)" if c.get("interrupted") else ""),
                _duration(run),
                sum((c.get("pulled") or {}).values()),
                _changes(run),
                sum((c.get("failed") or {}).values()),
                "/".join(num(calls.get(s, 0)) for s in SYSTEMS),
            ]
        )
    lines += ["", "recent runs:"]
    if rows:
        lines.append(
            _table(rows, ["run", "kind", "status", "took", "pulled", "changed", "rejected", "calls sf/hs"])
        )
    else:
        lines.append("  none yet: run `syncd once`")
    failed = next((r for r in view.runs if r.status == "failed" and r.error), None)
    if failed is not None:
        lines.append(f"last failure ({failed.id}): {failed.error}")
    lines += ["", "watermarks (pulled up to):"]
    if view.watermarks:
        marks = [[_LABEL[w.system], w.object, w.value, _when(w.updated_at)] for w in view.watermarks]
        lines.append(render(table(["system", "object", "pulled up to", "moved"], marks, align="left")))
    else:
        lines.append("  none yet")
    q = view.quarantine
    lines += [
        "",
        f"quarantine: {num(q.total)} records ({num(q.due)} due for a retry, {num(q.reported)} reported)",
    ]
    for (system, obj), n in sorted(q.by_object.items()):
        lines.append(f"  {_LABEL[system]} {obj}: {num(n)}")
    lines.extend(f"  {line}" for line in detail)
    open_ = view.outbox.get("pending", 0) + view.outbox.get("sent", 0)
    lines.append(
        f"outbox: {num(open_)} writes waiting to be confirmed, {num(view.outbox.get('failed', 0))} refused"
    )
    budget = next((r.counters.get("budget") for r in view.runs if r.counters.get("budget")), None)
    lines += ["", "API usage (as of the latest run):"]
    if budget:
        for system in SYSTEMS:
            b = budget.get(system) or {}
            org = ""
            if b.get("org_limit"):
                org = f"; the whole org: {num(b.get('org_used'))}/{num(b.get('org_limit'))}"
            lines.append(
                f"  {_LABEL[system]:<10} {num(b.get('spent', 0))} of syncd's {num(b.get('cap', 0))} calls on "
                f"{b.get('day', '-')}{org}{' (budget reached)' if b.get('exhausted') else ''}"
            )
    else:
        lines.append("  no run recorded yet")
    return "\n".join(lines)


def _status_json(view: StatusView, reported: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "ledger": view.path,
        "schema_version": view.schema_version,
        "keys": view.keys,
        "runs": [
            {
                "id": r.id,
                "kind": r.kind,
                "status": r.status,
                "started_at": r.started_at.isoformat(),
                "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                "counters": r.counters,
                "error": r.error,
            }
            for r in view.runs
        ],
        "watermarks": [
            {"system": w.system, "object": w.object, "value": w.value, "updated_at": w.updated_at.isoformat()}
            for w in view.watermarks
        ],
        "quarantine": {
            "total": view.quarantine.total,
            "due": view.quarantine.due,
            "reported": view.quarantine.reported,
            "by_object": {f"{s}.{o}": n for (s, o), n in view.quarantine.by_object.items()},
            "reported_records": reported,
        },
        "outbox": view.outbox,
        "records": {f"{s}.{o}": n for (s, o), n in view.records.items()},
    }


@click.command()
@config_option
@click.option("--runs", default=10, show_default=True, help="Recent runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the status page (the daemon's / page) to this file once, instead of printing.",
)
@click.pass_context
def status(ctx: click.Context, config_path: Path, runs: int, as_json: bool, html_file: Path | None) -> None:
    """Show recent runs, watermarks, quarantine and API usage against the budget (reads the ledger only).

    With --html FILE, write the status page the daemon serves at / (charts included, no network needed).
    """
    if html_file is not None:
        _write_status_page(config_path, html_file, _clock(ctx))
        click.echo(f"status page written to {html_file}")
        return
    with Ledger(_ledger_path(config_path), readonly=True) as ledger:
        view = ledger.views.status(runs=runs)
        reported = [q for q in ledger.quarantine.held() if q.reported]
    if as_json:
        rows = [
            {
                "system": q.system,
                "object": q.object,
                "record_id": q.record_id,
                "reason": q.reason,
                "attempts": q.attempts,
            }
            for q in reported
        ]
        click.echo(json.dumps(_status_json(view, rows), indent=2, default=str))
        return
    detail = [
        f"reported: {_LABEL[q.system]} {q.object} {q.record_id} failed {q.attempts} times: {q.reason}"
        for q in reported[:20]
    ]
    click.echo(status_text(view, detail))


def _write_status_page(config_path: Path, target: Path, clock: Callable[[], datetime]) -> None:
    from syncd.reports.status import gather, rules_info
    from syncd.reports.status_page import render as render_page
    from syncd.reports.web import links_from_file

    ledger = _ledger_path(config_path)
    if not ledger.is_file():
        raise LedgerError(f"no ledger at {ledger}: run `syncd once` to create it, or fix ledger.path")
    directory = _config_file_path(config_path, "rules", "directory", "mappings")
    now = clock()
    rules: RuleSet | None = None
    error = None
    try:
        rules = load_ruleset(directory)
    except MappingError as exc:
        error = str(exc)
    state = rules_info(rules, directory, loaded_at=now if rules is not None else None, error=error)
    page = render_page(
        gather(ledger, now=now, rules=rules, rules_state=state, links=links_from_file(config_path))
    )
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {target}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _progress_bar() -> Iterator[Progress]:
    """A Progress drawn as a bar on stderr while both stdout and stderr are terminals (else silent)."""
    progress = Progress()
    with ProgressBar(progress):
        try:
            yield progress
        finally:
            progress.finish()


# ------------------------------------------------------------------------------------------------ backtest


def _days(text: str) -> int:
    value = text.strip().lower()
    digits = value[:-1] if value.endswith("d") else value
    if not digits.isdigit() or not 1 <= int(digits) <= 3660:
        raise CommandError(f"--since {text}: expected a number of days such as 90d")
    return int(digits)


@contextlib.contextmanager
def _read_ledger(path: Path) -> Iterator[Ledger]:
    """The ledger opened read-only (beside a running daemon); a ledger that needs an upgrade first is read
    from an upgraded copy, leaving the file itself to the process that owns it."""
    try:
        ledger = Ledger(path, readonly=True)
    except LedgerError as exc:
        if "needs an upgrade" not in str(exc):
            raise
        with tempfile.TemporaryDirectory(prefix="syncd-backtest-") as tmp:
            copy = Path(tmp) / "ledger.db"
            snapshot_ledger(path, copy)
            with Ledger(copy) as upgraded:
                yield upgraded
        return
    with ledger:
        yield ledger


def backtest_text(body: Mapping[str, Any], *, owners: int = 10) -> str:
    """The comparison as tables: totals side by side, fairness per pool, the owners who differ most."""
    live, cand = body["live"], body["candidate"]
    window, start = body["window"], body["start"]
    lines = [
        f"Backtest over {num(window['days'])} days ({window['since'][:10]} to {window['until'][:10]}): "
        f"{num(start['versions'])} record versions; {num(start['persons'])} persons and "
        f"{num(start['accounts'])} accounts stood before the window (decided once at its start), "
        f"{num(start['changes'])} changes replayed day by day.",
        "",
    ]
    totals = [
        [label, live[key], cand[key], _signed(cand[key] - live[key])]
        for label, key in (
            ("new assignments", "assigned"),
            ("hand-offs", "handoffs"),
            ("SLA breaches", "sla_breaches"),
            ("in queues at the end", "in_queues_at_end"),
            ("unrouted at the end", "unrouted_at_end"),
        )
    ]
    lines.append(render(table(["", "live", "candidate", "difference"], totals, title="Totals")))
    pools = sorted(set(live["fairness"]) | set(cand["fairness"]))
    if pools:
        rows = []
        for p in pools:
            a, b = live["fairness"].get(p, {}), cand["fairness"].get(p, {})
            rows.append(
                [
                    p,
                    a.get("spread", 0),
                    b.get("spread", 0),
                    f"{a.get('gini', 0.0):.3f}",
                    f"{b.get('gini', 0.0):.3f}",
                ]
            )
        header = ["pool", "spread live", "spread candidate", "Gini live", "Gini candidate"]
        lines += ["", render(table(header, rows, title="Fairness per pool (new records among members)"))]
    moved = sorted(
        (r for r in body["owners"] if r["difference"]), key=lambda r: (-abs(r["difference"]), r["owner"])
    )
    if moved:
        rows = [[r["owner"], r["live"], r["candidate"], _signed(r["difference"])] for r in moved[:owners]]
        lines += [
            "",
            render(table(["owner", "live", "candidate", "difference"], rows, title="Owners who differ most")),
        ]
        if len(moved) > owners:
            lines.append(f"  and {num(len(moved) - owners)} more owners (see report.json)")
    else:
        lines += ["", "Every owner gets the same number of new records under both rule sets."]
    return "\n".join(lines)


@click.command()
@config_option
@click.option(
    "--rules",
    "rules_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="The candidate rules directory (a copy of the rules with your edits).",
)
@click.option("--since", default="90d", show_default=True, help="How much history to replay, in days.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="The report directory [default: backtest-<date>].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_context
def backtest(
    ctx: click.Context, config_path: Path, rules_dir: Path, since: str, out: Path | None, as_json: bool
) -> None:
    """Replay the org's recorded history through candidate rules and the live ones, and compare them.

    Reads the ledger only (it can run beside the daemon) and makes no API call. Writes a report directory
    (report.json, load.png, assigned.png, index.html) and prints the totals side by side, fairness per pool
    and the owners whose new records differ most.
    """
    from syncd.core.backtest import settle, simulate
    from syncd.cycle.roster import Roster, reps_of
    from syncd.reports.backtest import write_report
    from syncd.reports.history import build_history

    if not rules_dir.is_dir():
        raise CommandError(f"--rules {rules_dir}: no such directory")
    candidate = load_ruleset(rules_dir)
    days = _days(since)
    live_dir = _config_file_path(config_path, "rules", "directory", "mappings")
    live = load_ruleset(live_dir)
    now = _clock(ctx)()
    target = out if out is not None else Path(f"backtest-{now.date().isoformat()}")
    with _progress_bar() as progress:
        with _read_ledger(_ledger_path(config_path)) as ledger:
            rows = ledger.roster.load()
            directory = Roster.from_reps(reps_of(rows)).directory if rows else None
            mappings = [live]
            if (live_dir / "fields.toml").read_bytes() != (rules_dir / "fields.toml").read_bytes():
                mappings.append(candidate)  # another mapping reads the records differently
            histories = []
            for rules in mappings:
                progress.stage("history", total=ledger.records.count_versions(until=now))
                histories.append(
                    build_history(
                        ledger, rules.mapping, directory, until=now, days=days, advance=progress.advance
                    )
                )
        outcomes = []
        for rules, label in ((live, "live"), (candidate, "candidate")):
            history = histories[-1] if rules is candidate else histories[0]
            progress.stage(f"start ({label})", total=len(history.start_accounts) + len(history.start_persons))
            start = settle(
                history.start_accounts,
                history.start_persons,
                rules,
                history.since,
                directory=directory,
                advance=progress.advance,
            )
            progress.stage(f"replay ({label})", total=len(history.days))
            outcomes.append(
                simulate(_advancing(history.days, progress), rules, start=start, directory=directory)
            )
    history = histories[0]
    start_info = {
        "how": "start state: the persons and accounts that stood before the window were decided once at its "
        "start (not counted as new assignments); each day then replays what changed that day",
        "persons": len(history.start_persons),
        "accounts": len(history.start_accounts),
        "versions": history.versions,
        "changes": history.changes,
        "unreadable": history.unreadable,
    }
    try:
        body = write_report(
            target,
            outcomes[0],
            outcomes[1],
            since=history.since,
            until=history.until,
            candidate_dir=str(rules_dir),
            live_dir=str(live_dir),
            start=start_info,
        )
    except OSError as exc:
        raise CommandError(f"cannot write the report to {target}: {exc.strerror or exc}") from None
    if as_json:
        click.echo(json.dumps({k: v for k, v in body.items() if k != "days"}, indent=2, sort_keys=True))
        return
    click.echo(backtest_text(body))
    click.echo(f"\nReport: {target / 'index.html'} (charts load.png, assigned.png; data report.json)")


def _signed(value: int) -> str:
    """``4`` -> ``+4``, ``-1200`` -> ``-1,200``, ``0`` -> ``0``."""
    return f"{value:+,}" if value else "0"


def _advancing(days: Sequence[Any], progress: Progress) -> Iterator[Any]:
    for day in days:
        yield day
        progress.advance(1)


@click.group()
def report() -> None:
    """Reports on the synced org."""


@report.command("accounts")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print one CSV row per key account.")
@click.option(
    "--source",
    type=click.Choice(["ledger", "live"]),
    default="ledger",
    show_default=True,
    help="ledger: what the last cycle pulled (no API call); live: read Salesforce and HubSpot now (read only).",
)
@click.option(
    "--chart",
    "chart_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a chart of the key accounts by distinct reps to this SVG file.",
)
@click.pass_context
def accounts(
    ctx: click.Context, config_path: Path, as_json: bool, as_csv: bool, source: str, chart_file: Path | None
) -> None:
    """The key-account risk: the top 20 % of customer accounts by revenue (or won amount), their tier, owner,
    team, distinct reps, relationship age and key contacts; single-threaded and long-term single-threaded
    accounts flagged."""
    from syncd.reports.accounts import from_ledger, from_systems

    if as_json and as_csv:
        raise CommandError("give one of --json and --csv")
    now = _clock(ctx)()
    if source == "live":
        config, rules = _setup(config_path)
        path = Path(config.ledger.path)
        if Path(path).is_file():
            with Ledger(path, readonly=True) as ledger:
                result = from_systems(config, rules, now=now, ledger=ledger)
        else:
            result = from_systems(config, rules, now=now)
    else:
        # The ledger alone: no secret and no system is needed.
        path = _ledger_path(config_path)
        rules = load_ruleset(_config_file_path(config_path, "rules", "directory", "mappings"))
        if not path.is_file():
            raise CommandError(f"no ledger at {path}: run `syncd once` first, or use --source live")
        with Ledger(path, readonly=True) as ledger:
            if not ledger.records.counts().get(("salesforce", "Account")):
                raise CommandError(
                    "the ledger holds no Salesforce accounts yet: run `syncd once`, or use --source live"
                )
            result = from_ledger(ledger, rules, now=now)
    if chart_file is not None:
        chart_file.write_text(result.chart_svg(), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, default=str))
    elif as_csv:
        click.echo(result.to_csv(), nl=False)
    else:
        click.echo(result.text())
