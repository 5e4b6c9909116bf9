"""The renderers of syncd.progress: the CLI's rich bar, the daemon's log line, /healthz and /metrics, and the
seeding loop's reports. Clocks are parameters; nothing waits."""

from __future__ import annotations

import io
import logging
import math
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from syncd.progress import Progress, Snapshot
from syncd.reports.progress_render import (
    LogRenderer,
    ProgressBar,
    ProgressCollector,
    call_with_progress,
    describe,
    on_terminal,
    snapshot_json,
)
from syncd.sandbox.seed import generate
from syncd.sandbox.store import Store


class Tick:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("snap", "text"),
    [
        pytest.param(Snapshot(None, 0, None, 0.0, False), "idle", id="idle"),
        pytest.param(
            Snapshot("pull", 2_000, 20_000, 2.0, True),
            "pull: 2,000 of 20,000 (10%), 1,000/s, about 18.0 s left",
            id="known-total",
        ),
        pytest.param(Snapshot("link", 1_500, None, 3.0, True), "link: 1,500, 500/s", id="unknown-total"),
        pytest.param(Snapshot("push", 0, 400, 0.5, True), "push: 0 of 400 (0%)", id="nothing-done-yet"),
        pytest.param(
            Snapshot("decide", 90_000, 90_000, 60.0, False),
            "decide: 90,000 of 90,000 (100%), 1,500/s, finished",
            id="finished",
        ),
    ],
)
def test_describe_says_where_the_work_stands_in_the_one_number_format(snap: Snapshot, text: str) -> None:
    assert describe(snap) == text


def test_snapshot_json_is_what_healthz_shows() -> None:
    body = snapshot_json(Snapshot("pull", 500, 2_000, 5.0, True))
    assert body == {
        "running": True,
        "stage": "pull",
        "done": 500,
        "total": 2_000,
        "elapsed_seconds": 5.0,
        "rate_per_second": 100.0,
        "eta_seconds": 15.0,
    }


def test_the_daemon_logs_a_long_cycle_every_few_seconds_and_a_short_one_not_at_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tick = Tick()
    progress = Progress(clock=tick)
    progress.subscribe(LogRenderer(logging.getLogger("test.progress"), every=5.0, clock=tick))
    caplog.set_level(logging.INFO, logger="test.progress")

    progress.stage("pull", total=100)  # a short cycle: done within 5 s
    tick.now += 4.0
    progress.advance(100)
    progress.finish()
    assert caplog.messages == []

    progress.stage("pull", total=1_000)  # a long one: a line per 5 s, whatever the number of advances
    for _ in range(12):
        tick.now += 1.0
        progress.advance(50)
    assert caplog.messages == [
        "cycle progress: pull: 250 of 1,000 (25%), 50/s, about 15.0 s left",
        "cycle progress: pull: 500 of 1,000 (50%), 50/s, about 10.0 s left",
    ]
    assert caplog.records[0].progress["stage"] == "pull"  # type: ignore[attr-defined]


def test_the_cli_bar_draws_each_stage_with_counts_rate_and_eta() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    tick = Tick()
    progress = Progress(clock=tick)
    with ProgressBar(progress, console=console, enabled=True):
        progress.stage("pull", total=20_000)
        tick.now += 2.0
        progress.advance(20_000)
        progress.stage("decide")
        progress.advance(12)
        progress.stage("write")  # open-ended and nothing counted: no count is shown, done or not
        progress.finish()
    text = out.getvalue()
    assert "pull" in text and "20,000/20,000" in text and "10,000/s" in text
    assert "decide" in text and "write" in text
    assert "12/12" not in text and "1/1 " not in text


def test_the_bar_is_quiet_when_not_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert not on_terminal(io.StringIO())
    progress = Progress()
    bar = ProgressBar(progress)
    assert not bar.enabled  # pytest captures stdout: not a terminal
    with bar:
        progress.stage("seed", total=10)
        progress.advance(10)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_metrics_show_the_running_or_last_stage_and_nan_for_an_unknown_total() -> None:
    progress = Progress()
    registry = CollectorRegistry()
    registry.register(ProgressCollector(progress.snapshot))

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, {"stage": progress.snapshot().stage or "none"})

    assert value("syncd_progress_done") == 0 and math.isnan(value("syncd_progress_total") or 0)
    progress.stage("link")
    progress.advance(7)
    assert value("syncd_progress_done") == 7 and math.isnan(value("syncd_progress_total") or 0)
    progress.set_total(70)
    assert value("syncd_progress_total") == 70
    progress.finish()
    assert value("syncd_progress_done") == 7  # the last stage stays readable after the cycle
    assert 'stage="link"' in generate_latest(registry).decode()


def test_progress_is_passed_to_work_that_takes_it_and_not_to_work_that_does_not() -> None:
    progress = Progress()
    seen: list[Progress] = []

    def new_style(x: int, *, progress: Progress) -> int:
        seen.append(progress)
        return x + 1

    def old_style(x: int) -> int:
        return x * 2

    assert call_with_progress(new_style, 1, progress=progress) == 2 and seen == [progress]
    assert call_with_progress(old_style, 3, progress=progress) == 6


def test_seeding_reports_every_person_then_the_write() -> None:
    snaps: list[Snapshot] = []
    progress = Progress()
    progress.subscribe(snaps.append)
    sf, hs = Store(), Store()
    try:
        generate(sf, hs, seed=1, persons=600, now=datetime(2026, 1, 5, tzinfo=UTC), progress=progress)
    finally:
        sf.close()
        hs.close()
    seed = [s for s in snaps if s.stage == "seed"]
    assert seed[0].total == 600 and seed[-1].done == 600
    assert [s.done for s in seed] == sorted(s.done for s in seed)
    assert snaps[-1].stage == "write" and not snaps[-1].running
