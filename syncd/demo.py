"""``syncd demo``: the daemon against a seeded sandbox org, two cycles, and a short report of what changed.

``run_demo`` does the work; the command prints as it goes and then the report::

    .demo/seed/        the seeded org, kept so that later runs skip seeding (``--fresh`` makes a new one)
    .demo/sandbox/     the org this run worked on: a copy of seed/, as syncd left it
    .demo/config.toml  a config pointing at the sandbox (``[sandbox] info_file``), the shipped mappings/
    .demo/syncd.db     the ledger of this run (`syncd explain` and `syncd status` read it)
    .demo/info.json    the sandbox's connection details while it runs

Every run starts from the seeded org and a new ledger, so it tells the same story each time. The cycles
run through ``run_daemon``, the code path of ``syncd run``, with the real ``SyncCycle``; the sandbox runs
in this process with its rate limits off, and the config lifts syncd's client-side pacing to match.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from syncd.core.systems import SYSTEMS
from syncd.errors import ConfigError, SandboxError
from syncd.progress import NULL, Progress
from syncd.reports.fmt import num, render, table
from syncd.reports.progress_render import ProgressBar
from syncd.sandbox.runtime import HS_FILE, SF_FILE, Sandbox, write_info
from syncd.sandbox.seed import SIZES

__all__ = ["CycleOutcome", "DemoResult", "demo", "format_report", "run_demo", "write_requests"]

_LABEL = {"salesforce": "Salesforce", "hubspot": "HubSpot"}
TEAM_ORDER = ("marketing", "sales", "account_management", "customer_success")
# Requests that change nothing although they are not GETs: searches, batch reads, query jobs.
_READ_KINDS = frozenset(
    {
        # syncd's /composite requests hold only its pulls' delta queries (its writes use sObject Collections).
        "composite",
        "search",
        "batch_read",
        "assoc_batch_read",
        "collection_retrieve",
        "bulk_query_create",
        "bulk_query_state",
        "bulk_query_delete",
    }
)
# The demo's sandbox runs without rate limits: syncd need not pace itself as it must on a real portal.
_DEMO_CONFIG = """\
# Written by `syncd demo`: syncd against the local sandbox in {sandbox}.
[sandbox]
info_file = "info.json"

[ledger]
path = "syncd.db"

[rules]
directory = "{rules}"

# The sandbox runs with its rate limits off, so the client-side pace is lifted too; keep the defaults
# (config.example.toml) for real systems.
[budget.salesforce]
requests_per_10s = 10000

[budget.hubspot]
requests_per_10s = 10000
search_per_second = 1000

[daemon]
interval_seconds = 1
health_enabled = false
reload_poll_seconds = 0
"""


@dataclass
class CycleOutcome:
    """One cycle of the demo: the cycle's own report and what the sandbox saw meanwhile."""

    report: Any  # syncd.cycle.CycleReport
    seconds: float
    requests: dict[str, int]  # per system, every request the sandbox answered during the cycle
    writes: dict[str, int]  # per system, the requests among them that change records


@dataclass
class DemoResult:
    """What ``run_demo`` did and found; ``format_report`` turns it into the text the command prints."""

    work_dir: Path
    config_path: Path
    sandbox_dir: Path
    info_file: Path
    seed: int
    persons: int
    seeded_now: bool
    setup_seconds: float
    mess: dict[str, int]
    cycles: list[CycleOutcome] = field(default_factory=list)
    exit_code: int = 0
    daemon_ok_cycles: int = 0
    owners_by_team: dict[str, Counter[str]] = field(default_factory=dict)
    departed_before: dict[str, int] = field(default_factory=dict)
    departed_after: dict[str, int] = field(default_factory=dict)
    departed_kept: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    leads_before: int = 0
    leads_after: int = 0
    example_email: str | None = None
    what_if: WhatIf | None = None
    # Key-account risk (``syncd report accounts``) before and after the cycles, and the account teams.
    risk_before: dict[str, Any] = field(default_factory=dict)
    risk_after: dict[str, Any] = field(default_factory=dict)
    teams_written: Counter[str] = field(default_factory=Counter)
    human_members_after: int = 0


@dataclass
class WhatIf:
    """A rules change planned from the ledger after the cycles: the admin's loop, shown once."""

    change: str
    rules_dir: Path
    owner_changes: int
    writes: int
    api_calls: int
    reps: list[tuple[str, int, int]]  # owner, gained, lost


# ------------------------------------------------------------------------------------------------ sandbox facts


def write_requests(by_kind: Mapping[str, int]) -> int:
    """How many of a sandbox's counted requests ("METHOD kind" -> n) changed records."""
    total = 0
    for name, n in by_kind.items():
        method, _, kind = name.partition(" ")
        if method != "GET" and kind not in _READ_KINDS:
            total += n
    return total


def _snapshot(box: Sandbox) -> dict[str, dict[str, int]]:
    return {
        "salesforce": dict(box.sf_app.counters.snapshot()["by_kind"]),
        "hubspot": dict(box.hs_app.counters.snapshot()["by_kind"]),
    }


def departed_owned(box: Sandbox) -> list[tuple[str, str, str]]:
    """Records of persons and accounts owned by a rep who left, as the sandbox holds them now.

    Salesforce: open Leads, Contacts and Accounts whose OwnerId is an inactive User; HubSpot: contacts and
    companies whose hubspot_owner_id is an archived owner. Each as (system, object, id).
    """
    inactive = {u["Id"] for u in box.sf_store.all("User") if not u.get("IsActive")}
    out = [
        ("salesforce", obj, str(r["Id"]))
        for obj in ("Lead", "Contact", "Account")
        for r in box.sf_store.all(obj)
        if r.get("OwnerId") in inactive and not r.get("IsDeleted") and not r.get("IsConverted")
    ]
    archived = {o["id"] for o in box.hs_store.all("owners") if o.get("archived")}
    out += [
        ("hubspot", obj, str(r["id"]))
        for obj in ("contacts", "companies")
        for r in box.hs_store.all(obj)
        if not r.get("archived") and (r.get("properties") or {}).get("hubspot_owner_id") in archived
    ]
    return out


def per_system(refs: list[tuple[str, str, str]]) -> dict[str, int]:
    counts = Counter(system for system, _, _ in refs)
    return {s: counts.get(s, 0) for s in SYSTEMS}


def why_kept(ledger_path: Path, refs: list[tuple[str, str, str]]) -> Counter[tuple[str, str, str]]:
    """Why records still owned by a rep who left kept that owner, from their decisions in the ledger:
    (system, object, reason) -> records."""
    from syncd.ledger import Ledger

    out: Counter[tuple[str, str, str]] = Counter()
    with Ledger(ledger_path, readonly=True) as ledger:
        for system, obj, id_ in refs:
            key = ledger.identity.key_of(system, obj, id_)
            decision = ledger.decisions.get(key) if key else None
            if ledger.quarantine.entry(system, obj, id_) is not None:
                reason = "rejected by the system, held in quarantine"
            elif decision is None:
                reason = "not decided"
            elif decision.owner is None:
                reason = "no rule gives it an owner"
            elif decision.owner.startswith("queue:"):
                queue = decision.owner.removeprefix("queue:")
                reason = (
                    f'routed to the queue "{queue}", which {_LABEL[system]} cannot hold as the owner here'
                )
            else:
                reason = f"decided owner {decision.owner}"
            out[(system, obj, reason)] += 1
    return out


def _example_email(ledger_path: Path) -> str | None:
    """A person to explain: one handed to sales whose Salesforce Lead this run created, else any changed."""
    from syncd.ledger import Ledger

    with Ledger(ledger_path, readonly=True) as ledger:
        return ledger.views.example_email()


# ------------------------------------------------------------------------------------------------ the run


class _DemoRunner:
    """The real cycle, watched: each cycle's report and the sandbox's request counts; stops after ``limit``."""

    def __init__(
        self,
        cycle: Any,
        box: Sandbox,
        stop: threading.Event,
        limit: int,
        echo: Callable[[str], None],
        progress: Progress = NULL,
    ):
        self.cycle = cycle
        self.box = box
        self.stop = stop
        self.limit = limit
        self.echo = echo
        self.progress = progress
        self.outcomes: list[CycleOutcome] = []

    def refresh_roster(self) -> None:
        self.cycle.refresh_roster()

    def run_cycle(self, rules: Any, *, stop: threading.Event) -> Any:
        number = len(self.outcomes) + 1
        self.echo(
            f"cycle {number}: " + ("the first full sync of both orgs..." if number == 1 else "again...")
        )
        before = _snapshot(self.box)
        began = time.perf_counter()
        report = self.cycle.run(rules, stop=stop, progress=self.progress)
        self.progress.finish()
        seconds = time.perf_counter() - began
        after = _snapshot(self.box)
        delta = {s: Counter(after[s]) - Counter(before[s]) for s in SYSTEMS}
        self.outcomes.append(
            CycleOutcome(
                report,
                seconds,
                requests={s: sum(delta[s].values()) for s in SYSTEMS},
                writes={s: write_requests(delta[s]) for s in SYSTEMS},
            )
        )
        if len(self.outcomes) >= self.limit:
            self.stop.set()
        return report.summary()

    def close(self) -> None:
        self.cycle.close()


MARKER = ".syncd-demo"


def _claim(work_dir: Path) -> None:
    """Make ``work_dir`` the demo's, refusing a directory that holds anything the demo did not write there
    (the demo overwrites its config and deletes its org and ledger on every run)."""
    if work_dir.exists() and not _is_demo_dir(work_dir) and any(work_dir.iterdir()):
        raise ConfigError(f"{work_dir} holds files syncd demo did not write: choose another --dir")
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / MARKER).write_text(
        "This directory belongs to `syncd demo`; it deletes and rewrites what is here.\n"
    )


def _is_demo_dir(work_dir: Path) -> bool:
    if (work_dir / MARKER).exists():
        return True
    try:
        return (work_dir / "config.toml").read_text(encoding="utf-8").startswith("# Written by `syncd demo`")
    except OSError:
        return False


def _prepare(
    work_dir: Path, seed: int, persons: int, fresh: bool, progress: Progress = NULL
) -> tuple[bool, dict[str, Any]]:
    """Make ``seed/`` hold the requested org (seeding it only when needed) and copy it to ``sandbox/``."""
    from syncd.lock import holder_pid
    from syncd.sandbox.runtime import SEED_META
    from syncd.sandbox.store import Store

    info_file = work_dir / "info.json"
    pid = _serving_pid(info_file)
    if pid is not None:
        raise SandboxError(
            f"a sandbox (pid {pid}) is serving {work_dir / 'sandbox'}: stop it first (Ctrl+C where it runs)"
        )
    holder = holder_pid(work_dir / "syncd.db")
    if holder is not None:
        raise SandboxError(f"syncd (pid {holder}) is using {work_dir / 'syncd.db'}: stop it first")
    if fresh:
        for child in work_dir.iterdir():
            if child.name != MARKER:
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    seed_dir = work_dir / "seed"
    summary: dict[str, Any] = {}
    if (seed_dir / SF_FILE).is_file() and (seed_dir / HS_FILE).is_file():
        store = Store(seed_dir / SF_FILE)
        try:
            summary = dict(store.meta(SEED_META, {}))
        finally:
            store.close()
    seeded_now = summary.get("seed") != seed or summary.get("persons") != persons
    if seeded_now:
        shutil.rmtree(seed_dir, ignore_errors=True)
        box = Sandbox(seed=seed, persons=persons, rate_limits=False, data_dir=seed_dir)
        box.start(progress=progress)
        summary = dict(box.seed_summary)
        box.stop()
    sandbox_dir = work_dir / "sandbox"
    shutil.rmtree(sandbox_dir, ignore_errors=True)
    shutil.copytree(seed_dir, sandbox_dir, ignore=shutil.ignore_patterns("tls"))
    for stale in work_dir.glob("syncd.db*"):
        if not stale.name.endswith(".lock"):
            stale.unlink()
    return seeded_now, summary


def _serving_pid(info_file: Path) -> int | None:
    import json

    try:
        pid = json.loads(info_file.read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(pid, int) or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def run_demo(
    work_dir: Path,
    *,
    rules_dir: Path,
    seed: int = 1,
    persons: int = SIZES["medium"],
    fresh: bool = False,
    cycles: int = 2,
    install_signals: bool = False,
    echo: Callable[[str], None] = lambda line: None,
    progress: Progress = NULL,
) -> DemoResult:
    """Seed (or reuse) the org, start the sandbox, run the daemon for ``cycles`` cycles, and gather the facts.

    ``progress`` hears of the seeding and of each cycle's stages (the command draws it as a bar)."""
    from syncd.config import load_config
    from syncd.core.rules import load_ruleset
    from syncd.cycle import SyncCycle
    from syncd.daemon import run_daemon
    from syncd.logs import register_secret
    from syncd.metrics import Metrics
    from syncd.service import rules_loader, secret_values

    rules_dir = rules_dir.resolve()
    if not rules_dir.is_dir():
        raise ConfigError(
            f"no rules directory at {rules_dir}: run the demo from a checkout, or pass --rules DIR"
        )
    work_dir = work_dir.resolve()
    began = time.perf_counter()
    _claim(work_dir)
    echo(f"preparing the Northwind org ({num(persons)} persons, seed {seed}) in {work_dir}...")
    seeded_now, summary = _prepare(work_dir, seed, persons, fresh, progress)
    sandbox_dir = work_dir / "sandbox"
    info_file = work_dir / "info.json"
    config_path = work_dir / "config.toml"
    config_path.write_text(
        _DEMO_CONFIG.format(sandbox=sandbox_dir, rules=str(rules_dir).replace("\\", "/")), encoding="utf-8"
    )
    box = Sandbox(seed=seed, persons=persons, rate_limits=False, data_dir=sandbox_dir)
    box.start()
    try:
        write_info(info_file, box.info())
        cfg = load_config(config_path)
        for secret in secret_values(cfg):
            register_secret(secret)
        load_ruleset(cfg.rules.directory)  # refuse an invalid set before touching anything
        result = DemoResult(
            work_dir=work_dir,
            config_path=config_path,
            sandbox_dir=sandbox_dir,
            info_file=info_file,
            seed=seed,
            persons=persons,
            seeded_now=seeded_now,
            setup_seconds=time.perf_counter() - began,
            mess=dict(summary.get("generated", {}).get("mess", {})),
            departed_before=per_system(departed_owned(box)),
            leads_before=box.sf_store.count("Lead"),
        )
        rules_now = load_ruleset(cfg.rules.directory)
        if rules_now.teams is not None:
            result.risk_before = _risk(cfg, rules_now)
        stop = threading.Event()
        runners: list[_DemoRunner] = []

        def factory() -> _DemoRunner:
            runner = _DemoRunner(SyncCycle.from_config(cfg), box, stop, cycles, echo, progress)
            runners.append(runner)
            return runner

        metrics = Metrics()
        result.exit_code = run_daemon(
            cfg.daemon_settings(),
            factory,
            rules_loader(cfg.rules.directory),
            stop_event=stop,
            install_signals=install_signals,
            metrics=metrics,
        )
        result.cycles = [o for r in runners for o in r.outcomes]
        ok = metrics.registry.get_sample_value("syncd_cycles_total", {"outcome": "ok"})
        result.daemon_ok_cycles = int(ok or 0)
        kept = departed_owned(box)
        result.departed_after = per_system(kept)
        result.leads_after = box.sf_store.count("Lead")
        for outcome in result.cycles:
            result.teams_written.update(outcome.report.teams)
        if rules_now.teams is not None and result.cycles:
            result.risk_after = _risk(cfg, rules_now)
            result.human_members_after = _human_members(cfg.ledger.path)
        rules = load_ruleset(cfg.rules.directory)
        result.owners_by_team = _owners_by_team(result.cycles, rules)
        if result.cycles:
            result.what_if = _what_if(cfg, rules_dir, work_dir)
    finally:
        box.stop()
        info_file.unlink(missing_ok=True)
    if result.cycles:
        result.example_email = _example_email(cfg.ledger.path)
        result.departed_kept = why_kept(cfg.ledger.path, kept)
    return result


def _risk(cfg: Any, rules: Any) -> dict[str, Any]:
    """The key-account risk summary as ``syncd report accounts --source live`` shows it now."""
    from datetime import UTC, datetime

    from syncd.reports.accounts import from_systems

    return dict(from_systems(cfg, rules, now=datetime.now(UTC)).summary)


def _human_members(ledger_path: Path) -> int:
    """Account team members a human added that the ledger holds after the cycles (still on their teams)."""
    from syncd.ledger import Ledger

    with Ledger(ledger_path, readonly=True) as ledger:
        return sum(1 for m in ledger.teams.all_members() if not m.managed)


# The rules change the demo plans: Germany moves from the EMEA territory to North America.
_WHAT_IF = (
    'when = { country = ["GB", "DE", "FR", "NL", "SE", "ES", "IT", "IE", "CH"] }',
    'when = { country = ["GB", "FR", "NL", "SE", "ES", "IT", "IE", "CH"] }',
    'when = { country = ["US", "CA", "MX"] }',
    'when = { country = ["US", "CA", "MX", "DE"] }',
)


def _what_if(cfg: Any, rules_dir: Path, work_dir: Path) -> WhatIf | None:
    """Plan a territory change from the ledger, as an admin would with `syncd plan --rules DIR`: the
    candidate goes in ``work_dir/candidate-rules``; None when the rules are not the shipped ones."""
    from syncd.core.rules import load_ruleset
    from syncd.cycle import SyncCycle

    target = work_dir / "candidate-rules"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(rules_dir, target)
    routing = target / "routing.toml"
    text = routing.read_text(encoding="utf-8")
    emea_old, emea_new, na_old, na_new = _WHAT_IF
    if emea_old not in text or na_old not in text:
        return None
    routing.write_text(text.replace(emea_old, emea_new).replace(na_old, na_new), encoding="utf-8")
    candidate = load_ruleset(target)
    with SyncCycle.from_config(cfg) as cycle:
        report = cycle.run(candidate, dry_run=True, pull=False)
    reps = [(r.owner, r.gained, r.lost) for r in report.impact.reps({}, {})]
    return WhatIf(
        change="Germany moves from the EMEA territory to North America (routing.toml)",
        rules_dir=target,
        owner_changes=report.impact.owner_changes,
        writes=sum(report.pushed.values()),
        api_calls=sum(report.api_calls.values()),
        reps=reps,
    )


def _owners_by_team(outcomes: list[CycleOutcome], rules: Any) -> dict[str, Counter[str]]:
    """Owner changes per system, by the team of the new owner (a queue counts as "queue")."""
    reps = rules.roster.reps
    out: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        for (system, kind), owners in outcome.report.tally.by_rep.items():
            if kind != "owner":
                continue
            for owner, n in owners.items():
                rep = reps.get(owner)
                team = rep.team if rep is not None else "queue"
                out.setdefault(team, Counter())[system] += n
    return out


# ------------------------------------------------------------------------------------------------ the report


def _rows(rows: list[tuple[str, int, int]]) -> list[str]:
    text = render(table(["", "Salesforce", "HubSpot"], rows))
    return ["  " + line for line in text.splitlines()]


def format_report(result: DemoResult, *, syncd: str = "syncd") -> str:
    """The demo's report: the org, what each cycle changed, and the commands to try next."""
    lines: list[str] = []
    origin = "seeded now" if result.seeded_now else f"the seeded org kept in {result.work_dir / 'seed'}"
    lines.append(
        f"Northwind Software sandbox: {num(result.persons)} persons, seed {result.seed} ({origin}); "
        f"set up in {result.setup_seconds:.1f} s."
    )
    mess = result.mess
    if mess:
        parts = [
            f"{num(mess[k])} {label}"
            for k, label in (
                ("owner_disagrees", "owners that disagree between the systems"),
                ("lead_owned_by_inactive_rep", "leads owned by reps who left"),
                ("hubspot_owner_archived", "HubSpot records owned by archived owners"),
                ("customer_contact_random_owner", "customer contacts owned by random reps"),
                ("lead_in_unassigned_queue", "leads parked in a queue"),
                ("duplicate_lead_email", "duplicate lead emails"),
            )
            if mess.get(k)
        ]
        lines.append("The mess it was seeded with: " + ", ".join(parts) + ".")
    lines.append("")
    lines.append(
        f"The daemon (the code path of `syncd run`) ran {len(result.cycles)} cycles "
        f"({result.daemon_ok_cycles} ok by its own metrics) and stopped with exit code {result.exit_code}."
    )
    for number, outcome in enumerate(result.cycles, start=1):
        lines.append("")
        lines += _cycle_lines(number, outcome, result)
    if result.risk_before:
        lines.append("")
        lines += _risk_lines(result, syncd)
    if result.what_if is not None:
        lines.append("")
        lines += _what_if_lines(result.what_if, syncd, result.config_path)
    lines.append("")
    lines += _try_lines(result, syncd)
    return "\n".join(lines)


def _cycle_lines(number: int, outcome: CycleOutcome, result: DemoResult) -> list[str]:
    r = outcome.report
    counts = r.tally.counts()
    writes = sum(outcome.writes.values())
    if number > 1 and writes == 0:
        return [
            f"Cycle {number} ({outcome.seconds:.1f} s): nothing left to do. It pulled "
            f"{num(r.pulled.get('salesforce', 0))} Salesforce and {num(r.pulled.get('hubspot', 0))} HubSpot "
            f"records (syncd's own writes coming back: {num(sum(r.echoes.values()))}), decided "
            f"{num(sum(r.decided.values()))} and changed nothing.",
            f"  The sandbox received 0 write requests ({num(outcome.requests['salesforce'])} Salesforce and "
            f"{num(outcome.requests['hubspot'])} HubSpot reads).",
        ]
    head = f"Cycle {number} ({outcome.seconds:.1f} s)" + (": the first full sync" if number == 1 else "")
    rows: list[tuple[str, int, int]] = [
        ("records pulled", r.pulled.get("salesforce", 0), r.pulled.get("hubspot", 0)),
        ("owners corrected", counts["salesforce"]["owner"], counts["hubspot"]["owner"]),
    ]
    if number == 1 or len(result.cycles) == 1:
        teams = result.owners_by_team
        for team in (*TEAM_ORDER, *sorted(set(teams) - set(TEAM_ORDER))):
            if team in teams:
                label = "to a queue" if team == "queue" else f"to {team.replace('_', ' ')}"
                rows.append((f"  {label}", teams[team]["salesforce"], teams[team]["hubspot"]))
    rows += [
        ("lifecycle stages set", counts["salesforce"]["stage"], counts["hubspot"]["stage"]),
        ("scores set", counts["salesforce"]["score"], counts["hubspot"]["score"]),
        ("cross-system ids linked", counts["salesforce"]["link"], counts["hubspot"]["link"]),
        ("other fields filled", counts["salesforce"]["field"], counts["hubspot"]["field"]),
        ("records created", counts["salesforce"]["create"], counts["hubspot"]["create"]),
        (
            "rejected (quarantined)",
            r.quarantined_now.get("salesforce", 0),
            r.quarantined_now.get("hubspot", 0),
        ),
        ("API calls", r.api_calls.get("salesforce", 0), r.api_calls.get("hubspot", 0)),
        ("  of which writes", outcome.writes["salesforce"], outcome.writes["hubspot"]),
    ]
    lines = [head, *_rows(rows)]
    lines.append(
        f"  hand-offs between teams: {num(r.handoffs)}; manual owner changes honoured: {num(r.overrides)}; "
        f"quarantine holds {num(r.quarantined)} records"
    )
    mql = r.impact.stages.get(("lead", "marketing_qualified"), 0)
    if mql:
        lines.append(
            f"  leads whose score reached the threshold, handed from marketing to sales as MQLs: {num(mql)}"
        )
    if number == 1:
        before, after = result.departed_before, result.departed_after
        lines.append(
            "  records owned by reps who left (counted in the sandbox): "
            f"Salesforce {num(before.get('salesforce', 0))} -> {num(after.get('salesforce', 0))}, "
            f"HubSpot {num(before.get('hubspot', 0))} -> {num(after.get('hubspot', 0))}"
        )
        for (system, obj, reason), n in sorted(result.departed_kept.items()):
            lines.append(f"    kept: {num(n)} {_LABEL[system]} {obj}: {reason}")
        if counts["salesforce"]["create"]:
            lines.append(
                f"  Salesforce Leads created for HubSpot contacts handed to sales: "
                f"{num(counts['salesforce']['create'])} (Leads in the sandbox: {num(result.leads_before)} -> "
                f"{num(result.leads_after)})"
            )
    return lines


def _risk_lines(result: DemoResult, syncd: str) -> list[str]:
    before, after = result.risk_before, result.risk_after or result.risk_before
    written = result.teams_written
    seeded_humans = result.mess.get("account_team_member_added_by_human", 0)
    return [
        f"Key-account risk (the top {num(before.get('top', 0))} of {num(before.get('customers', 0))} customer "
        f"accounts by value, `{syncd} report accounts --config {_shown(result.config_path)}`):",
        f"  single-threaded top-tier accounts: seeded {num(before.get('single_threaded_top_tier', 0))} -> "
        f"after {num(after.get('single_threaded_top_tier', 0))}; single-threaded key accounts "
        f"{num(before.get('single_threaded', 0))} -> {num(after.get('single_threaded', 0))} "
        f"(the rules allow {num(after.get('single_threaded_allowed', 0))}); long-term "
        f"{num(before.get('long_term_single_threaded', 0))} -> {num(after.get('long_term_single_threaded', 0))}",
        f"  account teams written: {num(written.get('add', 0))} members added, {num(written.get('change', 0))} "
        f"changed, {num(written.get('remove', 0))} removed, {num(written.get('restore', 0))} put back after "
        f"an owner change; tiers written: {num(written.get('tier', 0))}",
        f"  members a human added, kept: {num(result.human_members_after)} on the teams after the cycles "
        f"(seeded {num(seeded_humans)}, some for reps who have since left)",
    ]


def _what_if_lines(w: WhatIf, syncd: str, config: Path) -> list[str]:
    lines = [
        f"What if: {w.change}? Planned from the ledger with {num(w.api_calls)} API calls "
        f"(`{syncd} plan --config {_shown(config)} --rules {_shown(w.rules_dir)}`):",
        f"  {num(w.owner_changes)} records would change owner ({num(w.writes)} writes); per rep:",
    ]
    shown = w.reps[:6]
    lines += [
        f"    {owner:<38} gains {num(gained):>5}, loses {num(lost):>5}" for owner, gained, lost in shown
    ]
    if len(w.reps) > len(shown):
        lines.append(f"    and {num(len(w.reps) - len(shown))} more reps")
    return lines


def _try_lines(result: DemoResult, syncd: str) -> list[str]:
    work = _shown(result.work_dir)
    config = f"--config {work}/config.toml"
    lines = [
        f"Try it (everything is in {work}/; the next `syncd demo` starts again from the seeded org):",
        f"  {syncd} status {config}                # the runs, watermarks and API usage",
    ]
    if result.example_email:
        lines.append(f"  {syncd} explain {result.example_email} {config}")
        lines.append("      # why this person has their owner, stage and score, and what syncd changed")
    lines += [
        "  # plan and once read the sandbox's info file; keep it serving in its own terminal (Ctrl+C stops it):",
        f"  {syncd} sandbox serve --data {work}/sandbox --info {work}/info.json --rate-limits off",
        f"  {syncd} plan {config}                  # what a cycle would change now: nothing (0 API calls)",
        f"  {syncd} plan {config} --rules {work}/candidate-rules   # the what-if above, per rep and rule",
    ]
    return lines


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (shorter commands), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _syncd_command() -> str:
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is None or argv0.name != "syncd" or not argv0.exists():
        return "syncd"
    on_path = shutil.which("syncd")
    if on_path is not None and Path(on_path).resolve() == argv0.resolve():
        return "syncd"
    return _shown(argv0)


@click.command()
@click.option(
    "--dir",
    "work_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".demo"),
    show_default=True,
    help="Work directory: the seeded org, the sandbox data, the config and the ledger.",
)
@click.option("--fresh", is_flag=True, help="Delete the work directory first and seed a new org.")
@click.option(
    "--size",
    type=click.Choice(sorted(SIZES, key=SIZES.__getitem__)),
    default="medium",
    show_default=True,
    help="Org size: small (~1,000 persons), medium (~20,000) or large (~200,000).",
)
@click.option("--persons", type=click.IntRange(min=0), help="Exact number of persons (instead of --size).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the generated org.")
@click.option(
    "--rules",
    "rules_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("mappings"),
    show_default=True,
    help="The mapping and rules-of-engagement files to run with.",
)
def demo(work_dir: Path, fresh: bool, size: str, persons: int | None, seed: int, rules_dir: Path) -> None:
    """Run the daemon for two cycles against a seeded sandbox org and show what it changed.

    Starts the local Salesforce and HubSpot sandbox with the Northwind org, runs two sync cycles, prints
    what the first corrected (owners per team, hand-offs, stages, scores, records created) and that the
    second wrote nothing, then the commands to explore the result (status, explain, plan).
    """
    from syncd.logs import setup_logging
    from syncd.memory import return_large_buffers

    return_large_buffers()
    setup_logging("INFO", fmt="text")
    # The ledger's own housekeeping lines would drown the story.
    logging.getLogger("syncd.ledger").setLevel(logging.WARNING)
    count = persons if persons is not None else SIZES[size]
    progress = Progress()
    with ProgressBar(progress):
        result = run_demo(
            work_dir,
            rules_dir=rules_dir,
            seed=seed,
            persons=count,
            fresh=fresh,
            install_signals=True,
            echo=lambda line: click.echo(line, err=True),
            progress=progress,
        )
    click.echo("")
    click.echo(format_report(result, syncd=_syncd_command()))
    if result.exit_code != 0 or len(result.cycles) < 2:
        click.echo("The demo stopped before its second cycle.", err=True)
        raise click.exceptions.Exit(result.exit_code or 1)
