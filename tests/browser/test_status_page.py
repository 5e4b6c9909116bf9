"""The status page in a real headless Chromium, served by a daemon that ran a cycle on the sandbox.

Chromium is Debian's package (`apt-get install chromium`, done by `.ci/run` when missing), driven through
Playwright for Python with ``executable_path``; Playwright never downloads a browser here. A screenshot of
each page is kept under the test's tmp dir, and under ``$SYNCD_ARTIFACTS`` when that is set.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syncd.cli import cli
from syncd.config import load_config
from syncd.daemon import Daemon, DaemonSettings
from syncd.reports.web import links_from_config
from syncd.sandbox.runtime import Sandbox, write_info
from syncd.service import cycle_factory, rules_loader

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REP = "sam.patel@northwind.example"


def _config(info: Path, ledger: Path) -> str:
    return f"""
[sandbox]
info_file = "{info}"

[ledger]
path = "{ledger}"

[rules]
directory = "{ROOT / "mappings"}"

[budget.salesforce]
requests_per_10s = 100000

[budget.hubspot]
requests_per_10s = 100000
search_per_second = 1000
"""


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium profile (Debian's chromium through Playwright)."""
    if not CHROMIUM.exists():
        message = "no /usr/bin/chromium: `apt-get install chromium` (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1360, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def daemon_after_a_cycle(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> Iterator[tuple[Daemon[Any], Path, str]]:
    """A daemon on the sandbox, its first cycle done, one Lead rejected into quarantine (a bad number)."""
    box = make_sandbox()
    lead = next(r for r in box.sf_store.all("Lead") if not r["IsConverted"] and not r["IsDeleted"])
    box.sf_store.put("Lead", {**lead, "NumberOfEmployees": "lots"})
    info = tmp_path / "info.json"
    write_info(info, box.info())
    config_path = tmp_path / "config.toml"
    config_path.write_text(_config(info, tmp_path / "syncd.db"))
    cfg = load_config(config_path)
    settings = DaemonSettings(
        ledger_path=cfg.ledger.path,
        watch_paths=(cfg.rules.directory,),
        interval_seconds=3600,
        roster_interval_seconds=3600,
        health_port=0,
        reload_poll_seconds=0,
    )
    daemon: Daemon[Any] = Daemon(
        settings, cycle_factory(cfg), rules_loader(cfg.rules.directory), status_links=links_from_config(cfg)
    )
    done = threading.Event()
    ended = daemon.health.cycle_ended

    def cycle_ended(**kwargs: Any) -> None:
        ended(**kwargs)
        done.set()

    daemon.health.cycle_ended = cycle_ended  # type: ignore[method-assign]
    daemon.start()
    try:
        assert done.wait(300), "the daemon's first cycle did not end"
        yield daemon, config_path, str(lead["Id"])
    finally:
        daemon.request_stop()
        daemon.shutdown()


def _keep(path: Path) -> None:
    target = os.environ.get("SYNCD_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def _load(context: Any, url: str) -> tuple[Any, list[str], list[str]]:
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: requests.append(request.url))
    response = page.goto(url, wait_until="load")
    assert response is None or response.ok, response.status if response else None
    return page, errors, requests


def _charts_rendered(page: Any) -> int:
    charts = page.locator("figure.chart svg")
    count = charts.count()
    for i in range(count):
        box = charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50, (i, box)
        # pygal drew something: bars, slices or gauge arcs inside the plot.
        assert charts.nth(i).locator("path, rect").count() > 0
    return count


def test_status_page_in_chromium_shows_cycles_load_quarantine_and_charts(
    daemon_after_a_cycle: tuple[Daemon[Any], Path, str], browser_context: Any, tmp_path: Path
) -> None:
    daemon, _, lead_id = daemon_after_a_cycle
    assert daemon.health_server is not None
    base = daemon.health_server.url

    page, errors, requests = _load(browser_context, base + "/")

    assert page.title() == "syncd status"
    cycle_row = page.locator("#cycles tbody tr").first
    assert "cycle" in cycle_row.inner_text() and "ok" in cycle_row.inner_text()
    rep_row = page.locator("#reps tr", has_text=REP)
    assert rep_row.count() == 1
    cells = rep_row.locator("td").all_inner_texts()
    assert cells[0] == REP and cells[1] == "sdr" and cells[4] == "40"  # roster.toml: daily_cap = 40
    quarantined = page.locator("#quarantine tr", has_text=lead_id)
    assert "NumberOfEmployees" in quarantined.inner_text()
    link = quarantined.locator("a").get_attribute("href")
    assert link is not None and link.endswith(f"/lightning/r/Lead/{lead_id}/view")
    assert page.locator("#budget").inner_text().count("Salesforce") >= 1
    assert "single-threaded" in page.locator("#key-account-risk").inner_text()
    assert page.locator("#rules code").first.inner_text() == daemon.rules.digest
    assert _charts_rendered(page) >= 4
    assert errors == []
    assert all(url.startswith(base) or url.startswith("data:") for url in requests), requests

    shot = tmp_path / "status-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    _keep(shot)


def test_status_html_file_is_the_same_page_and_works_offline(
    daemon_after_a_cycle: tuple[Daemon[Any], Path, str], browser_context: Any, tmp_path: Path
) -> None:
    _, config_path, lead_id = daemon_after_a_cycle
    target = tmp_path / "status.html"

    result = CliRunner().invoke(cli, ["status", "--config", str(config_path), "--html", str(target)])

    assert result.exit_code == 0, result.output
    page, errors, requests = _load(browser_context, target.as_uri())
    assert lead_id in page.locator("#quarantine").inner_text()
    assert page.locator("#reps tr", has_text=REP).count() == 1
    assert _charts_rendered(page) >= 4
    assert errors == []
    assert all(url.startswith("file:") or url.startswith("data:") for url in requests), requests
    shot = tmp_path / "status-file.png"
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot)
