"""The status page without a browser: rendering (escaping, no outside resources), record links, the
token off loopback, and the route through the health server over real HTTP on 127.0.0.1.
(tests/browser/test_status_page.py loads it in Chromium against a daemon on the sandbox.)"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.health import HealthServer, HealthState
from syncd.metrics import Metrics
from syncd.progress import Progress, Snapshot
from syncd.reports.status import (
    UNROUTED,
    Links,
    QuarantineInfo,
    RulesInfo,
    RunInfo,
    StatusData,
    WaitingInfo,
    gather,
)
from syncd.reports.status_page import render
from syncd.reports.web import Request, StatusPage, is_loopback

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
RULES = RulesInfo("mappings", "abc123", ("routing.toml",), NOW, 'routing.toml: rule "x": bad')


def data(**changes: object) -> StatusData:
    base = StatusData(
        generated_at=NOW,
        ledger_path="/var/lib/syncd/syncd.db",
        keys={"person": 20_000, "account": 1_200},
        runs=(
            RunInfo(
                "r1",
                "cycle",
                "failed",
                NOW,
                12.5,
                20_000,
                19_000,
                300,
                4,
                1,
                {"salesforce": 41, "hubspot": 60},
                "HubSpot: 401 <Unauthorized>",
                False,
            ),
        ),
        budgets=(),
        reps=(),
        quarantine_total=1,
        quarantine_due=0,
        quarantine=(
            QuarantineInfo(
                "hubspot",
                "contacts",
                "901",
                "INVALID_OWNER_ID <script>alert(1)</script>",
                2,
                NOW,
                False,
                "https://app.hubspot.com/contacts/42/record/0-1/901",
            ),
        ),
        waiting=(WaitingInfo("account", UNROUTED, 58), WaitingInfo("person", "queue Unassigned Leads", 7)),
        assigned_last_day=0,
        assignments=(),
        assignments_by_team={},
        assignments_by_hour=((NOW, 0),),
        outbox={},
        rules=RULES,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_page_escapes_what_systems_and_admins_wrote_and_loads_nothing_from_elsewhere() -> None:
    page = render(data())
    assert "<script>alert(1)</script>" not in page
    assert "INVALID_OWNER_ID &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "HubSpot: 401 &lt;Unauthorized&gt;" in page
    # No script file, stylesheet, image or font from anywhere: the only URLs are links to records.
    assert not re.search(r"""\b(src|srcset)\s*=""", page)
    assert "@import" not in page and '<link rel="stylesheet"' not in page
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs == ["data:,", "https://app.hubspot.com/contacts/42/record/0-1/901"]


def test_the_page_shows_numbers_in_the_one_format_and_the_marked_key_account_slot() -> None:
    page = render(data())
    assert "20,000 persons" in page and "1,200 accounts" in page
    assert re.search(r"<td>account</td><td>\(no rule routes it\)</td><td class=\"n\">58</td>", page)
    assert 'id="key-account-risk"' in page and "No account teams" in page
    assert "Last reload refused" in page and "abc123" in page


def test_a_running_stage_shows_on_the_page() -> None:
    page = render(data(progress=Snapshot("pull", 5_000, 20_000, 5.0, True)))
    assert 'id="progress"' in page and "pull: 5,000 of 20,000 (25%)" in page and "width:25%" in page


@pytest.mark.parametrize(
    ("system", "obj", "links", "url"),
    [
        pytest.param(
            "salesforce",
            "Lead",
            Links("https://acme.my.salesforce.com", None, None),
            "https://acme.my.salesforce.com/lightning/r/Lead/00Q1/view",
            id="salesforce",
        ),
        pytest.param(
            "hubspot",
            "companies",
            Links(None, "https://app.hubspot.com", "42"),
            "https://app.hubspot.com/contacts/42/record/0-2/00Q1",
            id="hubspot-company",
        ),
        pytest.param(
            "hubspot",
            "contacts",
            Links(None, "https://127.0.0.1:5001", "sandbox"),
            "https://127.0.0.1:5001/contacts/sandbox/record/0-1/00Q1",
            id="hubspot-sandbox",
        ),
        pytest.param(
            "hubspot", "contacts", Links(None, "https://app.hubspot.com", None), None, id="no-portal"
        ),
        pytest.param("salesforce", "Lead", Links(None, None, None), None, id="no-instance-url"),
    ],
)
def test_record_links(system: str, obj: str, links: Links, url: str | None) -> None:
    assert links.url(system, obj, "00Q1") == url


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("syncd.internal", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def page(tmp_path: Path, *, require_token: bool, token: str | None) -> StatusPage:
    return StatusPage(
        ledger_path=tmp_path / "syncd.db",
        rules_directory=tmp_path,
        links=Links(),
        rules=lambda: None,
        rules_state=lambda: (None, None),
        clock=lambda: NOW,
        require_token=require_token,
        token=token,
    )


@pytest.mark.parametrize(
    ("require", "token", "headers", "query", "status"),
    [
        pytest.param(False, None, {}, "", 200, id="loopback-needs-no-token"),
        pytest.param(True, None, {}, "", 403, id="off-loopback-without-a-configured-token"),
        pytest.param(True, "s3cret", {}, "", 401, id="no-token-sent"),
        pytest.param(True, "s3cret", {"Authorization": "Bearer wrong"}, "", 401, id="wrong-token"),
        pytest.param(True, "s3cret", {"Authorization": "Bearer s3cret"}, "", 200, id="bearer"),
        pytest.param(True, "s3cret", {}, "token=s3cret", 200, id="query"),
    ],
)
def test_off_loopback_the_page_needs_its_token(
    tmp_path: Path, require: bool, token: str | None, headers: dict[str, str], query: str, status: int
) -> None:
    answer = page(tmp_path, require_token=require, token=token).handle(Request.parse(f"/?{query}", headers))
    assert answer.status == status
    if status != 200:
        assert b"s3cret" not in answer.body and b"<html" not in answer.body
    if status == 403:
        assert b"SYNCD_STATUS_TOKEN" in answer.body


def test_gather_before_the_first_cycle_gives_an_empty_page(tmp_path: Path) -> None:
    found = gather(tmp_path / "none.db", now=NOW, rules=None, rules_state=RULES, links=Links())
    assert found.runs == () and "No ledger yet" in found.notes[0]
    assert "No ledger yet" in render(found)


def test_the_health_server_serves_the_page_at_root_and_healthz_shows_progress(tmp_path: Path) -> None:
    progress = Progress()
    state = HealthState(max_age_seconds=60, ledger_check=lambda: True, progress=progress)
    server = HealthServer(
        state,
        Metrics(),
        host="127.0.0.1",
        port=0,
        routes=page(tmp_path, require_token=False, token=None).routes,
    ).start()
    try:
        with urllib.request.urlopen(server.url + "/", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
            assert b"<title>syncd status</title>" in response.read()
        progress.stage("pull", total=100)
        progress.advance(40)
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as response:
            body = response.read().decode()  # 200: the grace period after start
        assert '"stage": "pull"' in body and '"done": 40' in body and '"total": 100' in body
    finally:
        server.stop()


def test_the_daemons_page_reloads_itself_and_the_written_file_does_not() -> None:
    assert '<meta http-equiv="refresh" content="60">' in render(data(), refresh_seconds=60)
    assert 'http-equiv="refresh"' not in render(data())


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param(lambda d: None, "no such file", id="no-config"),
        pytest.param(
            lambda d: (d / "config.toml").write_text('[ledger]\npath = "x.db"\n'),
            "no ledger at",
            id="no-ledger",
        ),
    ],
)
def test_status_html_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, setup: Callable[[Path], object], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from syncd.cli import main

    setup(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["status", "--config", str(tmp_path / "config.toml"), "--html", str(tmp_path / "page.html")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "page.html").exists()
