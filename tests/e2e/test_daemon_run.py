"""``syncd run`` as ops run it: a real process over the real cycle, against the sandbox, with real signals.

The sandbox serves in this process (the ``make_sandbox`` fixture); the daemon is the ``syncd`` entry point in
a child process whose stderr (JSON lines: it is a pipe) the test reads as it comes. Waits poll a condition
with a deadline; nothing asserts on how long a sleep took.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_crash import leads_per_contact
from e2e_systems import Systems, disagreements
from hubspot.crm.contacts import SimplePublicObjectInputForCreate

from syncd.core.rules import load_ruleset
from syncd.core.types import RunRow
from syncd.ledger import Ledger
from syncd.metrics import METRIC_NAMES
from syncd.sandbox.runtime import Sandbox, write_info

ROOT = Path(__file__).resolve().parents[2]
SYNCD = str(Path(sys.executable).with_name("syncd"))
WAIT = 120.0  # failsafe only: every wait ends as soon as its condition holds
REP = "nora.lindqvist@northwind.example"


def config_text(info: Path, ledger: Path, rules: Path, *, interval: float, poll: float) -> str:
    return f"""
[sandbox]
info_file = "{info}"

[ledger]
path = "{ledger}"

[rules]
directory = "{rules}"

# The sandbox runs with its rate limits off: syncd need not pace itself below them.
[budget.salesforce]
requests_per_10s = 100000

[budget.hubspot]
requests_per_10s = 100000
search_per_second = 1000

[daemon]
interval_seconds = {interval}
roster_interval_seconds = 3600
health_port = 0
reload_poll_seconds = {poll}
shutdown_timeout_seconds = 60
"""


class Daemon:
    """One `syncd run` process and its stderr lines, read as they come."""

    def __init__(self, config: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [SYNCD, "run", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=config.parent,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._lock:
                self._lines.append(line)

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(line) for line in self.output.splitlines() if line.startswith("{")]
        return [r for r in out if event is None or r.get("event") == event]

    def wait_until(self, predicate: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + WAIT
        while True:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                pytest.fail(
                    f"syncd run exited ({self.proc.returncode}) before {what}:\n{self.output[-5000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"gave up waiting for {what}:\n{self.output[-5000:]}")
            time.sleep(0.02)

    def health_url(self) -> str:
        found = self.wait_until(lambda: self.records("health_endpoint"), "the health endpoint")
        return str(found[0]["url"])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.finish()

    def finish(self) -> int:
        code = self.proc.wait(WAIT)
        for reader in self._readers:
            reader.join(WAIT)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Setup:
    """A sandbox, its info file, a copy of the shipped rules, a config and the daemons started on it."""

    def __init__(self, box: Sandbox, base: Path, *, interval: float = 1.0, poll: float = 0.0) -> None:
        self.box = box
        base.mkdir(parents=True)
        self.info = base / "info.json"
        write_info(self.info, box.info())
        self.rules = base / "mappings"
        shutil.copytree(ROOT / "mappings", self.rules)
        self.ledger = base / "syncd.db"
        self.config = base / "config.toml"
        self.config.write_text(config_text(self.info, self.ledger, self.rules, interval=interval, poll=poll))
        self.daemons: list[Daemon] = []

    def start(self, *args: str) -> Daemon:
        daemon = Daemon(self.config, *args)
        self.daemons.append(daemon)
        return daemon

    def runs(self) -> list[RunRow]:
        """The ledger's cycle runs, oldest first (none before the daemon created the ledger)."""
        if not self.ledger.exists():
            return []
        try:
            with Ledger(self.ledger, readonly=True) as ledger:
                rows = ledger.runs.recent(limit=1000)
        except Exception:
            return []  # the daemon is still creating it
        return sorted((r for r in rows if r.kind == "cycle"), key=lambda r: r.started_at)

    def finished(self, status: str = "ok") -> list[RunRow]:
        return [r for r in self.runs() if r.status == status and r.finished_at is not None]

    def tokens(self) -> list[str]:
        info = json.loads(self.info.read_text())
        return [t for system in ("salesforce", "hubspot") for t in info[system]["tokens"].values()]

    def assert_no_secret_in_logs(self) -> None:
        tokens = self.tokens()
        assert len(tokens) >= 50  # the integration user and every rep, in both systems
        for daemon in self.daemons:
            output = daemon.output
            assert output, "no output to check"
            leaked = [t for t in tokens if t in output]
            assert not leaked, f"{len(leaked)} tokens in the logs"


@pytest.fixture
def setup(make_sandbox: Callable[..., Sandbox], tmp_path: Path) -> Iterator[Callable[..., Setup]]:
    made: list[Setup] = []

    def make(persons: int = 300, **options: Any) -> Setup:
        s = Setup(make_sandbox(persons=persons), tmp_path / f"s{len(made)}", **options)
        made.append(s)
        return s

    yield make
    for s in made:
        for d in s.daemons:
            d.kill()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(metrics: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", metrics, re.MULTILINE)
    assert found is not None, f"{name}{{{want}}} not in /metrics"
    return float(found.group(1))


def test_cycles_on_schedule_serves_health_and_metrics_and_stops_on_sigterm(
    setup: Callable[..., Setup],
) -> None:
    s = setup(interval=1.0)
    seeded_leads = s.box.sf_store.count("Lead")
    daemon = s.start("--log-level", "debug")
    url = daemon.health_url()
    daemon.wait_until(lambda: len(s.finished()) >= 4, "four cycles")

    runs = s.finished()
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at is not None
        assert later.started_at >= earlier.finished_at, "cycles overlapped"
    # Ticks are an interval apart; a cycle that overruns one waits for the next, never less.
    starts = [r.started_at for r in runs[1:]]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.5, gaps

    status, body = get(url + "/healthz")
    health = json.loads(body)
    assert status == 200, health
    assert health["status"] == "ok" and health["problems"] == []
    assert health["ledger_writable"] is True
    assert health["systems"] == {"salesforce": {"reachable": True}, "hubspot": {"reachable": True}}
    assert health["last_cycle"]["outcome"] == "ok"

    status, metrics = get(url + "/metrics")
    assert status == 200
    for name in METRIC_NAMES:
        assert f"\n{name}" in metrics, f"{name} missing from /metrics"
    assert sample(metrics, "syncd_cycles_total", outcome="ok") >= 4
    assert sample(metrics, "syncd_cycles_total", outcome="failed") == 0
    assert sample(metrics, "syncd_roster_refreshes_total", outcome="ok") == 1
    for system in ("salesforce", "hubspot"):
        assert sample(metrics, "syncd_records_pulled_total", system=system) > 0
        assert sample(metrics, "syncd_api_calls_total", system=system) > 0
        assert sample(metrics, "syncd_records_pushed_total", system=system) > 0
    # The Leads created at hand-offs, all in the first cycle, as the sandbox holds them.
    created = s.box.sf_store.count("Lead") - seeded_leads
    assert created > 0
    assert sample(metrics, "syncd_records_created_total", system="salesforce") == created
    assert sample(metrics, "syncd_handoffs_total") > 0

    assert daemon.stop(signal.SIGTERM) == 0
    cycles = daemon.records("cycle")
    assert [c["cycle"] for c in cycles] == list(range(1, len(cycles) + 1))
    assert all(c["outcome"] == "ok" for c in cycles)
    assert len(cycles) == len(s.finished())  # one summary line per cycle, one run per cycle
    assert daemon.records("decision"), "--log-level debug logs each decision"
    assert daemon.records("stopped")[-1]["clean"] is True
    s.assert_no_secret_in_logs()


def test_sigterm_mid_cycle_exits_0_and_the_next_start_loses_nothing(setup: Callable[..., Setup]) -> None:
    s = setup(persons=2_000, interval=1.0)
    counters = (s.box.sf_app.counters, s.box.hs_app.counters)

    def writes_seen() -> bool:
        return any(
            not kind.startswith("GET ") and "search" not in kind and "read" not in kind
            for c in counters
            for kind in c.snapshot()["by_kind"]
        )

    first = s.start()
    first.wait_until(writes_seen, "the first cycle's first write")
    assert first.stop(signal.SIGTERM) == 0
    [run] = s.runs()
    assert run.status == "ok" and run.counters["interrupted"] is True, "the stop did not land mid-cycle"
    assert [c["outcome"] for c in first.records("cycle")] == ["interrupted"]

    second = s.start()
    # Converged: a full cycle after the restart that found nothing left to change.
    second.wait_until(
        lambda: any(
            not r.counters["interrupted"] and not any(sum(v.values()) for v in r.counters["changes"].values())
            for r in s.finished()[1:]
        ),
        "a cycle with nothing left to change",
    )
    assert second.stop(signal.SIGTERM) == 0

    systems = Systems.from_file(s.info)
    with Ledger(s.ledger, readonly=True) as ledger:
        assert ledger.integrity_check() == "ok"
        assert ledger.outbox.counts().get("pending", 0) == ledger.outbox.counts().get("sent", 0) == 0
        assert disagreements(systems, ledger, load_ruleset(s.rules)) == []
    assert max(leads_per_contact(systems.snapshot()).values()) == 1, "a Lead was created twice"
    s.assert_no_secret_in_logs()


def test_a_second_instance_on_the_same_ledger_is_refused(setup: Callable[..., Setup]) -> None:
    s = setup(interval=1.0)
    first = s.start()
    first.health_url()
    second = s.start()
    assert second.finish() == 2
    assert second.output == (
        f"error: ledger {s.ledger} is already in use by another syncd (pid {first.proc.pid}); "
        "stop it first, or give this one another ledger path\n"
    )
    assert first.proc.poll() is None
    assert first.stop() == 0
    s.assert_no_secret_in_logs()


def _new_contact(box: Sandbox, email: str) -> None:
    # A VP in the US: the "Decision maker" fit rule matches.
    box.hubspot_client(REP).crm.contacts.basic_api.create(
        SimplePublicObjectInputForCreate(
            properties={
                "email": email,
                "firstname": "Val",
                "lastname": "Ortiz",
                "jobtitle": "VP Sales",
                "country": "US",
            }
        )
    )


def _decision(s: Setup, email: str) -> Any:
    with Ledger(s.ledger, readonly=True) as ledger:
        keys = ledger.views.find_keys(email)
        return ledger.decisions.get(keys[0]) if keys else None


def test_a_broken_rules_edit_is_refused_while_the_old_rules_work_and_a_good_edit_is_picked_up(
    setup: Callable[..., Setup],
) -> None:
    s = setup(interval=1.0, poll=0.1)
    old = load_ruleset(s.rules)
    daemon = s.start()
    url = daemon.health_url()
    daemon.wait_until(lambda: s.finished(), "a first cycle")

    routing = s.rules / "routing.toml"
    good_routing = routing.read_text()
    assert "country = " in good_routing
    routing.write_text(good_routing.replace("country = ", "contry = ", 1))
    refused = daemon.wait_until(lambda: daemon.records("rules_refused"), "the refusal")
    assert any("routing.toml" in p and "contry" in p for p in refused[0]["problems"]), refused
    _, body = get(url + "/healthz")
    assert "contry" in json.loads(body)["rules"]["last_reload_error"]

    # The old rules keep working: a new contact is decided, under the old set.
    _new_contact(s.box, "val.before@acme-rules.example")
    before = daemon.wait_until(
        lambda: _decision(s, "val.before@acme-rules.example"), "a decision (old rules)"
    )
    assert before.digest == old.digest
    assert before.score == 25  # Decision maker 15 + Covered territory 10

    # A good edit: the broken file fixed, and the decision maker rule worth more.
    scoring = s.rules / "scoring.toml"
    scoring.write_text(scoring.read_text().replace("points = 15", "points = 40", 1))
    routing.write_text(good_routing)
    new = load_ruleset(s.rules)
    daemon.wait_until(lambda: daemon.records("rules_reload"), "the reload")
    _new_contact(s.box, "val.after@acme-rules.example")
    after = daemon.wait_until(lambda: _decision(s, "val.after@acme-rules.example"), "a decision (new rules)")
    assert after.digest == new.digest != old.digest
    assert after.score == 50

    _, metrics = get(url + "/metrics")
    assert sample(metrics, "syncd_rules_reloads_total", outcome="refused") == 1
    assert sample(metrics, "syncd_rules_reloads_total", outcome="ok") == 1
    assert sample(metrics, "syncd_cycles_total", outcome="failed") == 0
    assert daemon.stop() == 0
    s.assert_no_secret_in_logs()


# ------------------------------------------------------------------------------------------------ config check

REAL_CONFIG = """
[salesforce]
auth = "jwt"
username = "integration@northwind.example"

[ledger]
path = "{ledger}"

[rules]
directory = "{rules}"
"""


def _check(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SF_", "HUBSPOT_"))} | (env or {})
    return subprocess.run(
        [SYNCD, "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def test_config_check_passes_a_sandbox_config_without_showing_a_token(setup: Callable[..., Setup]) -> None:
    s = setup()
    done = _check(s.config)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"{s.config}: ok"
    files = len(list(Path(s.rules).glob("*.toml")))
    assert f"rules: {s.rules} ({files} files, 0 warnings)" in done.stdout
    assert f"ledger: {s.ledger} (created on the first start)" in done.stdout
    assert not [t for t in s.tokens() if t in done.stdout + done.stderr]


@pytest.mark.parametrize(
    ("env", "edit", "problems"),
    [
        pytest.param(
            {},
            None,
            [
                ("salesforce.consumer_key_env: environment variable SF_CONSUMER_KEY is not set",),
                ("hubspot.token_env: environment variable HUBSPOT_ACCESS_TOKEN is not set",),
                ("salesforce.private_key_env: environment variable SF_PRIVATE_KEY is not set",),
            ],
            id="every-unset-secret",
        ),
        pytest.param(
            {
                "SF_CONSUMER_KEY": "ck-0123456789",
                "SF_PRIVATE_KEY": "pk-0123456789",
                "HUBSPOT_ACCESS_TOKEN": "pat-x",
            },
            ("routing.toml", "country = ", "contry = "),
            [("routing.toml: rule", "contry")],
            id="broken-rules",
        ),
    ],
)
def test_config_check_reports_each_problem_on_one_line(
    tmp_path: Path, env: dict[str, str], edit: tuple[str, str, str] | None, problems: list[tuple[str, ...]]
) -> None:
    rules = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", rules)
    if edit is not None:
        name, old, new = edit
        (rules / name).write_text((rules / name).read_text().replace(old, new, 1))
    config = tmp_path / "config.toml"
    config.write_text(REAL_CONFIG.format(ledger=tmp_path / "syncd.db", rules=rules))
    done = _check(config, env)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(problems), errors
    for parts in problems:
        assert any(all(part in line for part in parts) for line in errors), (parts, errors)
    assert done.stderr.splitlines()[-1].endswith("syncd run would refuse to start")
    assert "Traceback" not in done.stderr
    for value in env.values():
        assert value not in done.stdout + done.stderr


def test_config_check_refuses_a_ledger_path_that_is_a_directory(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(REAL_CONFIG.format(ledger=tmp_path, rules=ROOT / "mappings"))
    done = _check(
        config, {"SF_CONSUMER_KEY": "a" * 8, "SF_PRIVATE_KEY": "b" * 8, "HUBSPOT_ACCESS_TOKEN": "c" * 8}
    )
    assert done.returncode == 2
    assert f"error: {config}: ledger.path: {tmp_path} is a directory" in done.stderr
