"""The crash test's machinery: sandboxes in their own processes, `syncd once` in a process that can be killed.

Two sandboxes serve byte-identical copies of one seeded org (seeded once, stopped, the data directory
copied). One gets an uninterrupted `syncd once`; the other gets `syncd once` processes killed with SIGKILL at
random moments, restarted each time, then run until one completes. Every `syncd once` runs at the same fixed
time (injected through click's context object, as every test injects the clock), so decisions may not differ
because the runs happened at different moments.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from e2e_systems import Systems

ROOT = Path(__file__).resolve().parents[2]
SYNCD = [str(Path(sys.executable).with_name("syncd"))]
# `syncd once` with the clock fixed at argv[1]; otherwise exactly what the `syncd` entry point does.
ONCE = """
import sys
from datetime import UTC, datetime
import click
from syncd.cli import cli
from syncd.errors import SyncdError
now = datetime.fromisoformat(sys.argv[1])
try:
    cli.main(args=["once", "--config", sys.argv[2]], obj={"clock": lambda: now}, standalone_mode=False)
except click.exceptions.Exit as exc:
    sys.exit(exc.exit_code)
except SyncdError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def config_text(info: Path, ledger: Path) -> str:
    return f"""
[sandbox]
info_file = "{info}"

[ledger]
path = "{ledger}"

[rules]
directory = "{ROOT / "mappings"}"

# The sandbox runs with its rate limits off: syncd need not pace itself below them.
[budget.salesforce]
requests_per_10s = 100000

[budget.hubspot]
requests_per_10s = 100000
search_per_second = 1000
"""


@dataclass
class Served:
    """One `syncd sandbox serve` process and what a test needs to reach it."""

    process: subprocess.Popen[bytes]
    info: Path
    config: Path
    ledger: Path

    @property
    def systems(self) -> Systems:
        return Systems.from_file(self.info)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serve(data: Path, info: Path, persons: int, *, timeout: float = 300.0) -> subprocess.Popen[bytes]:
    """Start a sandbox serving ``data`` (seeded with ``persons`` if empty); returns once it is ready."""
    info.unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            *SYNCD,
            "sandbox",
            "serve",
            "--seed",
            "1",
            "--persons",
            str(persons),
            "--rate-limits",
            "off",
            "--data",
            str(data),
            "--info",
            str(info),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while not info.exists():
        if process.poll() is not None:
            raise RuntimeError(f"sandbox exited: {process.stderr.read().decode() if process.stderr else ''}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("sandbox did not get ready")
        time.sleep(0.05)
    return process


@contextmanager
def twin_sandboxes(tmp: Path, persons: int) -> Iterator[tuple[Served, Served]]:
    """Two sandboxes holding the same org: seeded once, then the data directory copied."""
    seed_dir = tmp / "seeded"
    first = serve(seed_dir, tmp / "seed-info.json", persons)
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=60)
    served = []
    try:
        for name in ("crashed", "reference"):
            data = tmp / name
            shutil.copytree(seed_dir, data)
            info, config, ledger = tmp / f"{name}-info.json", tmp / f"{name}.toml", tmp / f"{name}.db"
            process = serve(data, info, persons)
            config.write_text(config_text(info, ledger))
            served.append(Served(process, info, config, ledger))
        yield served[0], served[1]
    finally:
        for s in served:
            s.stop()


def start_once(config: Path, now: datetime) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", ONCE, now.isoformat(), str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=config.parent,
    )


def run_once(config: Path, now: datetime, *, timeout: float = 900.0) -> tuple[int, str, float]:
    """One `syncd once` to its end: (exit code, output, seconds)."""
    began = time.monotonic()
    process = start_once(config, now)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out.decode() + err.decode(), time.monotonic() - began


@dataclass
class CrashLog:
    """What the killing loop did: the delays chosen, and how many runs were still working when killed."""

    delays: list[float] = field(default_factory=list)
    killed_running: int = 0
    finished_before_kill: int = 0


def kill_repeatedly(config: Path, now: datetime, kills: int, span: float, rng: random.Random) -> CrashLog:
    """Start `syncd once` ``kills`` times, each SIGKILLed after a random delay of up to ``span`` seconds.

    Once the work is mostly done, cycles get shorter: a run that ends before its kill shrinks the span to
    its own duration, so that later kills still land inside cycles.
    """
    log = CrashLog()
    for _ in range(kills):
        delay = rng.uniform(0.05, span)
        log.delays.append(delay)
        began = time.monotonic()
        process = start_once(config, now)
        try:
            process.wait(timeout=delay)
            log.finished_before_kill += 1
            span = max(0.2, min(span, time.monotonic() - began))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            log.killed_running += 1
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()
    return log


def normalised(snapshot: dict[str, dict[str, dict[str, Any]]], seeded: set[str]) -> dict[str, Any]:
    """A snapshot with the ids of records syncd created replaced by what identifies them (the HubSpot id
    their external-id field carries), so that two orgs can be compared whatever ids the server assigned."""
    created = {
        id_: f"created-for:{fields.get('Syncd_HubSpot_Id__c')}"
        for obj in ("Lead", "Contact", "Account")
        for id_, fields in snapshot[obj].items()
        if id_ not in seeded
    }
    out: dict[str, Any] = {}
    for obj, records in snapshot.items():
        out[obj] = {
            created.get(id_, id_): {
                k: created.get(v, v) if isinstance(v, str) else v for k, v in fields.items()
            }
            for id_, fields in records.items()
        }
    return out


def leads_per_contact(snapshot: dict[str, dict[str, dict[str, Any]]]) -> dict[str, int]:
    """HubSpot id -> number of live Leads carrying it in their external-id field."""
    counts: dict[str, int] = {}
    for fields in snapshot["Lead"].values():
        ext = fields.get("Syncd_HubSpot_Id__c")
        if ext and not fields.get("IsDeleted"):
            counts[ext] = counts.get(ext, 0) + 1
    return counts


def dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


@dataclass
class CrashResult:
    """What the crash scenario found, for the test to assert and the benchmark to print."""

    persons: int
    reference_seconds: float
    crash_seconds: float
    log: CrashLog
    completing_runs: int
    differences: dict[str, list[str]]
    max_leads_per_contact: int
    leads: tuple[int, int]
    integrity: str
    decisions_equal: bool
    settle_writes: dict[str, dict[str, int]]


def crash_scenario(tmp: Path, persons: int, kills: int, rng: random.Random) -> CrashResult:
    """Kill `syncd once` ``kills`` times at random moments on one copy of an org, run it uninterrupted on
    the other, and compare the two orgs and ledgers afterwards."""
    from syncd.ledger import Ledger

    now = datetime.now(UTC).replace(microsecond=0)
    with twin_sandboxes(tmp, persons) as (crashed, reference):
        seeded = {i for obj in ("Lead", "Contact", "Account") for i in crashed.systems.snapshot()[obj]}
        code, out, reference_seconds = run_once(reference.config, now)
        if code != 0:
            raise AssertionError(f"the uninterrupted run failed: {out}")
        began = time.monotonic()
        # Kill anywhere from the process start to a little past the point an uninterrupted run ends.
        log = kill_repeatedly(crashed.config, now, kills, reference_seconds * 0.6, rng)
        completing = 0
        code = -1
        while code != 0:
            completing += 1
            if completing > 5:
                raise AssertionError(f"syncd once never completed after the kills: {out}")
            code, out, _ = run_once(crashed.config, now)
        crash_seconds = time.monotonic() - began
        settle: dict[str, dict[str, int]] = {}
        for name, served in (("crashed", crashed), ("reference", reference)):
            served.systems.reset_counts()
            code, out, _ = run_once(served.config, now)
            if code != 0:
                raise AssertionError(f"a settling run failed: {out}")
            settle[name] = served.systems.write_calls()
        after = crashed.systems.snapshot()
        a = normalised(after, seeded)
        b = normalised(reference.systems.snapshot(), seeded)
        differences = {
            obj: sorted(k for k in set(a[obj]) | set(b[obj]) if a[obj].get(k) != b[obj].get(k))[:5]
            for obj in a
        }
        with Ledger(crashed.ledger, readonly=True) as la, Ledger(reference.ledger, readonly=True) as lb:
            integrity = la.integrity_check()
            decisions_equal = la.views.decision_outcomes() == lb.views.decision_outcomes()
        per_contact = leads_per_contact(after)
    return CrashResult(
        persons=persons,
        reference_seconds=reference_seconds,
        crash_seconds=crash_seconds,
        log=log,
        completing_runs=completing,
        differences={k: v for k, v in differences.items() if v},
        max_leads_per_contact=max(per_contact.values(), default=0),
        leads=(len(after["Lead"]), len(b["Lead"])),
        integrity=integrity,
        decisions_equal=decisions_equal,
        settle_writes=settle,
    )
