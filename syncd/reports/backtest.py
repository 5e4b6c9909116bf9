"""The backtest report: a directory with ``report.json``, charts as PNG (matplotlib) and ``index.html``.

``write_report(directory, live, candidate, ...)`` lays out what :func:`syncd.core.backtest.compare` found:
totals side by side (assignments, hand-offs, SLA breaches, records in queues or unrouted at the end), fairness
per pool (max - min, Gini), new records per owner under each rule set, and each busy owner's load over time.
The page has no script and fetches nothing: it opens from disk.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from syncd.core.backtest import Outcome, compare, owners_over_time

__all__ = ["write_report"]

# Owners drawn in the load chart: the ones whose load differs most between the two rule sets.
CHART_OWNERS = 8


def write_report(
    directory: Path,
    live: Outcome,
    candidate: Outcome,
    *,
    since: datetime,
    until: datetime,
    candidate_dir: str,
    live_dir: str,
    start: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes the report files into ``directory`` (created, mode 0700) and returns the JSON content."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    body = compare(live, candidate)
    body["window"] = {"since": since.isoformat(), "until": until.isoformat(), "days": len(live.days)}
    body["rules"] = {"live": live_dir, "candidate": candidate_dir}
    # How the replay started (what stood before the window and how it was decided).
    body["start"] = dict(start) if start is not None else None
    body["days"] = {
        "live": [d.to_json() for d in live.days],
        "candidate": [d.to_json() for d in candidate.days],
    }
    (directory / "report.json").write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    owners = _busiest_changes(live, candidate)
    _load_chart(directory / "load.png", live, candidate, owners)
    _assigned_chart(directory / "assigned.png", body["owners"])
    (directory / "index.html").write_text(_page(body))
    return body


def _busiest_changes(live: Outcome, candidate: Outcome) -> list[str]:
    """The owners drawn in the load chart: those whose load differs most between the two rule sets at any
    day; when nobody's does, the busiest ones (both lines then lie on each other)."""
    owners = set(live.final_load) | set(candidate.final_load) | set(live.assigned) | set(candidate.assigned)
    a = owners_over_time(live, owners)
    b = owners_over_time(candidate, owners)
    gap = {o: max((abs(x - y) for x, y in zip(a[o], b[o], strict=True)), default=0) for o in owners}
    differing = sorted((o for o in owners if gap[o] > 0), key=lambda o: (-gap[o], o))
    if differing:
        return differing[:CHART_OWNERS]
    busiest = sorted(owners, key=lambda o: (-live.final_load.get(o, 0), o))
    return busiest[:CHART_OWNERS]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: f"{value:,.0f}")


def _load_chart(path: Path, live: Outcome, candidate: Outcome, owners: Sequence[str]) -> None:
    plt = _pyplot()
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=100)
    days = [d.day for d in live.days]
    live_series = owners_over_time(live, owners)
    cand_series = owners_over_time(candidate, owners)
    handles = []
    for i, owner in enumerate(owners):
        color = f"C{i % 10}"
        ax.plot(days, live_series[owner], color=color, linewidth=2, alpha=0.85)
        ax.plot(days, cand_series[owner], color=color, linewidth=2, linestyle=(0, (4, 2)))
        handles.append(Line2D([], [], color=color, linewidth=3, label=owner.split("@")[0]))
    handles += [
        Line2D([], [], color="0.3", linewidth=2, label="live rules"),
        Line2D([], [], color="0.3", linewidth=2, linestyle=(0, (4, 2)), label="candidate"),
    ]
    differs = any(live_series[o] != cand_series[o] for o in owners)
    ax.set_title(
        "Records held per owner, day by day"
        + ("" if differs else " (the same under both rule sets)")
        + (f"\nthe {len(owners)} owners whose load differs most" if differs else "")
    )
    ax.set_ylabel("records held at the day's end")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(_thousands())
    ax.grid(True, alpha=0.3)
    if owners:
        ax.legend(handles=handles, fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _assigned_chart(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    plt = _pyplot()
    shown = sorted(rows, key=lambda r: (-(r["live"] + r["candidate"]), r["owner"]))[:20]
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=100)
    xs = range(len(shown))
    ax.bar([x - 0.2 for x in xs], [r["live"] for r in shown], width=0.4, label="live rules", color="C0")
    ax.bar([x + 0.2 for x in xs], [r["candidate"] for r in shown], width=0.4, label="candidate", color="C1")
    for x, r in zip(xs, shown, strict=True):
        if r["difference"]:
            top = max(r["live"], r["candidate"])
            ax.annotate(
                f"{r['difference']:+,}",
                (x, top),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=9,
                fontweight="bold",
                color="C3",
            )
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r["owner"].split("@")[0] for r in shown], rotation=40, ha="right", fontsize=9)
    more = f" (the {len(shown)} busiest of {len(rows)})" if len(rows) > len(shown) else ""
    ax.set_title(f"New records per owner over the window{more}; red: candidate minus live")
    ax.set_ylabel("new records")
    ax.yaxis.set_major_formatter(_thousands())
    ax.margins(y=0.1)
    ax.legend(frameon=False)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _n(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.4f}"
    if isinstance(value, int | float):
        return f"{int(value):,}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_n(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(body: Mapping[str, Any]) -> str:
    live, cand = body["live"], body["candidate"]
    totals = [
        (label, live[key], cand[key], cand[key] - live[key])
        for label, key in (
            ("new assignments", "assigned"),
            ("hand-offs", "handoffs"),
            ("SLA breaches", "sla_breaches"),
            ("in queues at the end", "in_queues_at_end"),
            ("unrouted at the end", "unrouted_at_end"),
        )
    ]
    pools = sorted(set(live["fairness"]) | set(cand["fairness"]))
    fairness = [
        (
            p,
            live["fairness"].get(p, {}).get("spread", 0),
            cand["fairness"].get(p, {}).get("spread", 0),
            live["fairness"].get(p, {}).get("gini", 0.0),
            cand["fairness"].get(p, {}).get("gini", 0.0),
        )
        for p in pools
    ]
    owners = [(r["owner"], r["live"], r["candidate"], r["difference"]) for r in body["owners"]]
    window = body["window"]
    start = body.get("start") or {}
    start_html = ""
    if start:
        start_html = (
            f"<p>Start state: {_n(start['persons'])} persons and {_n(start['accounts'])} accounts stood before "
            "the window; each rule set decided them once at its start (they do not count as new assignments). "
            f"Then {_n(start['changes'])} changes were replayed day by day, from {_n(start['versions'])} "
            "record versions the ledger keeps.</p>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>syncd backtest</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2933; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; }}
th, td {{ border: 1px solid #d9e2ec; padding: 0.3rem 0.7rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f0f4f8; }}
img {{ max-width: 100%; border: 1px solid #d9e2ec; margin-bottom: 1rem; }}
</style></head><body>
<h1>Backtest: candidate rules against the live ones</h1>
<p>History replayed: {html.escape(window["since"][:10])} to {html.escape(window["until"][:10])}
({_n(window["days"])} days). Live rules: <code>{html.escape(body["rules"]["live"])}</code>
(digest {html.escape(live["digest"][:12])}); candidate: <code>{html.escape(body["rules"]["candidate"])}</code>
(digest {html.escape(cand["digest"][:12])}).</p>
{start_html}
<h2>Totals</h2>
{_table(["", "live", "candidate", "difference"], totals)}
<h2>Fairness per pool</h2>
<p>Spread is the most minus the fewest new records among a pool's available members; Gini is 0 when they
all got the same.</p>
{_table(["pool", "spread (live)", "spread (candidate)", "Gini (live)", "Gini (candidate)"], fairness)}
<h2>Load over time</h2>
<img src="load.png" alt="Records held per owner over time, live and candidate">
<h2>New records per owner</h2>
<img src="assigned.png" alt="New records per owner under each rule set">
{_table(["owner", "live", "candidate", "difference"], owners)}
</body></html>
"""
