"""The status page as one self-contained HTML document: inline CSS, charts drawn here as SVG by pygal.

``render(data)`` is pure: a ``StatusData`` in, HTML text out. Nothing is fetched from elsewhere (no CDN,
no web font, no script file), so the page works offline and from a file (``syncd status --html FILE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from itertools import groupby

import pygal
from pygal.style import Style

from syncd.reports.fmt import duration, num, percent
from syncd.reports.progress_render import describe
from syncd.reports.status import NOT_IN_ROSTER, StatusData

__all__ = ["render"]

_LABEL = {"salesforce": "Salesforce", "hubspot": "HubSpot"}
_STATUS_CLASS = {"ok": "ok", "failed": "bad", "interrupted": "warn", "running": "info"}

_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif"
_COLORS = ("#2f6fdf", "#e0533d", "#2a9d6f", "#e9a23b", "#7b5cd6", "#3aa7c4", "#c2417e", "#7f8c8d")


def _style(colors: tuple[str, ...] = _COLORS) -> Style:
    return Style(
        background="transparent",
        plot_background="transparent",
        foreground="#3b4252",
        foreground_strong="#1f2430",
        foreground_subtle="#dde3ec",
        guide_stroke_color="#e3e7ee",
        major_guide_stroke_color="#cfd6e3",
        guide_stroke_dasharray="3,3",
        major_guide_stroke_dasharray="3,3",
        font_family=_FONT,
        label_font_size=12,
        major_label_font_size=12,
        legend_font_size=13,
        title_font_size=15,
        value_font_size=12,
        value_label_font_size=12,
        no_data_font_size=16,
        opacity=".9",
        opacity_hover="1",
        colors=colors,
    )


_CSS = """
:root { --ink:#1f2430; --muted:#5e6779; --line:#e3e7ee; --bg:#f5f7fa; --card:#fff; --ok:#2a9d6f;
        --bad:#d64531; --warn:#d98b19; --info:#2f6fdf; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 __FONT__; color:var(--ink); background:var(--bg); }
header { background:#1f2430; color:#fff; padding:18px 28px; display:flex; gap:24px; align-items:baseline;
         flex-wrap:wrap; }
header h1 { margin:0; font-size:20px; font-weight:600; letter-spacing:.2px; }
header .meta { color:#c9d1e0; font-size:13px; }
header code { background:#323a4d; color:#e5e9f0; }
main { padding:20px 28px 40px; display:grid; gap:18px; grid-template-columns: repeat(12, 1fr); }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:16px 18px;
          grid-column: span 12; min-width:0; }
section.half { grid-column: span 6; }
@media (max-width: 1100px) { section.half { grid-column: span 12; } }
h2 { margin:0 0 10px; font-size:16px; font-weight:600; }
h3 { margin:14px 0 6px; font-size:13px; color:var(--muted); text-transform:uppercase; letter-spacing:.6px; }
.tiles { display:grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap:12px; }
.tile { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.tile .v { font-size:24px; font-weight:600; }
.tile .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.5px; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { padding:5px 8px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:12px; white-space:nowrap; }
td.n, th.n { text-align:right; font-variant-numeric: tabular-nums; white-space:nowrap; }
tr:last-child td { border-bottom:none; }
.scroll { max-height:420px; overflow:auto; }
table.reps { table-layout:fixed; }
table.reps th:nth-child(1) { width:30%; } table.reps th:nth-child(2) { width:10%; }
table.reps th:nth-child(7) { width:16%; }
.pill { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600;
        color:#fff; background:var(--muted); }
.pill.ok { background:var(--ok); } .pill.bad { background:var(--bad); } .pill.warn { background:var(--warn); }
.pill.info { background:var(--info); }
.over { color:var(--bad); font-weight:600; }
.muted { color:var(--muted); }
.err { color:var(--bad); }
.reason { max-width:520px; }
code { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size:12px; background:#eef1f6;
       padding:1px 5px; border-radius:4px; }
figure.chart { margin:0; }
figure.chart svg { display:block; width:100%; height:auto; }
.slot { border:2px dashed var(--line); background:#fafbfd; }
.bar { height:8px; background:var(--line); border-radius:4px; overflow:hidden; margin-top:6px; }
.bar > div { height:100%; background:var(--info); }
a { color:#2459c2; text-decoration:none; } a:hover { text-decoration:underline; }
""".replace("__FONT__", _FONT)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%H:%M")


def _table(
    header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Iterable[int] = (), cls: str = ""
) -> str:
    nums = set(numeric)
    head = "".join(f'<th class="n">{h}</th>' if i in nums else f"<th>{h}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{c}</td>' if i in nums else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _chart(chart: pygal.graph.graph.Graph) -> str:
    svg = chart.render(is_unicode=True)
    return f'<figure class="chart">{svg}</figure>'


def _config(**options: object) -> dict[str, object]:
    base: dict[str, object] = {
        "style": _style(),
        "js": [],  # pygal's tooltips script lives on a CDN: the page must work offline
        "disable_xml_declaration": True,
        # Drawn at about the size it is shown, so that its text matches the page's.
        "width": 1280,
        "height": 260,
        "legend_at_bottom": True,
        "legend_box_size": 10,
        "margin": 8,
        "show_y_guides": True,
        "print_values": False,
        "truncate_label": -1,
        "truncate_legend": -1,
    }
    base.update(options)
    return base


# ------------------------------------------------------------------------------------------------ sections


def _header(data: StatusData) -> str:
    persons, accounts = data.keys.get("person", 0), data.keys.get("account", 0)
    return (
        "<header><h1>syncd status</h1>"
        f'<span class="meta">{num(persons)} persons, {num(accounts)} accounts</span>'
        f'<span class="meta">ledger <code>{_e(data.ledger_path)}</code></span>'
        f'<span class="meta">as of {_e(_when(data.generated_at))} (read-only)</span></header>'
    )


def _tiles(data: StatusData) -> str:
    cycles = [r for r in data.runs if r.kind == "cycle"]
    last = cycles[0] if cycles else None
    last_text = "none yet"
    if last is not None:
        cls = _STATUS_CLASS.get(last.status, "")
        last_text = f'<span class="pill {cls}">{_e(last.status)}</span> {duration(last.seconds)}'
    waiting = sum(w.count for w in data.waiting)
    tiles = [
        ("last cycle", last_text),
        ("in quarantine", f"{num(data.quarantine_total)}"),
        ("waiting or unrouted", num(waiting)),
        ("assigned, last 24 h", num(data.assigned_last_day)),
        ("writes waiting", num(data.outbox.get("pending", 0) + data.outbox.get("sent", 0))),
    ]
    html = "".join(
        f'<div class="tile"><div class="k">{k}</div><div class="v">{v}</div></div>' for k, v in tiles
    )
    progress = ""
    if data.progress is not None and data.progress.running:
        snap = data.progress
        width = 0 if snap.fraction is None else round(100 * snap.fraction)
        progress = (
            f'<div class="tile" id="progress"><div class="k">running now</div><div>{_e(describe(snap))}</div>'
            f'<div class="bar"><div style="width:{width}%"></div></div></div>'
        )
    return f'<section id="overview"><div class="tiles">{html}{progress}</div></section>'


def _cycles(data: StatusData) -> str:
    runs = list(reversed(data.runs))
    chart = pygal.Bar(
        **_config(title="Duration of recent runs (seconds)", height=220, legend_at_bottom=False, spacing=8)
    )
    chart.x_labels = [_short(r.started_at) for r in runs]
    chart.add("ok", [r.seconds if r.status == "ok" else None for r in runs])
    chart.add("failed", [r.seconds if r.status == "failed" else None for r in runs])
    chart.add("stopped early", [r.seconds if r.status == "interrupted" else None for r in runs])
    rows = []
    for r in data.runs:
        cls = _STATUS_CLASS.get(r.status, "")
        status = f'<span class="pill {cls}">{_e(r.status)}</span>' + (
            " stopped early" if r.interrupted else ""
        )
        calls = " / ".join(num(r.api_calls.get(s, 0)) for s in ("salesforce", "hubspot"))
        error = f'<span class="err">{_e(r.error)}</span>' if r.error else ""
        rows.append(
            [
                _e(_when(r.started_at)),
                _e(r.kind),
                status,
                duration(r.seconds) if r.seconds is not None else "running",
                num(r.pulled),
                num(r.decided),
                num(r.writes),
                num(r.created),
                num(r.rejected),
                calls,
                error,
            ]
        )
    table = (
        _table(
            [
                "started",
                "kind",
                "status",
                "took",
                "pulled",
                "decided",
                "writes",
                "created",
                "rejected",
                "API calls SF / HS",
                "error",
            ],
            rows,
            numeric=range(3, 10),
        )
        if rows
        else '<p class="muted">No run yet: the first cycle fills this.</p>'
    )
    return f'<section id="cycles"><h2>Recent cycles</h2>{_chart(chart)}<div class="scroll">{table}</div></section>'


def _budget(data: StatusData) -> str:
    if not data.budgets:
        return '<section id="budget" class="half"><h2>API use against budget</h2><p class="muted">No run has reported its API use yet.</p></section>'
    chart = pygal.HorizontalBar(
        **_config(
            title="Share of syncd's daily API budget used (%)",
            width=620,
            height=180,
            range=(0, 100),
            show_legend=False,
            value_formatter=lambda v: f"{v:g}%",
        )
    )
    chart.x_labels = [_LABEL[b.system] for b in data.budgets]
    chart.add("used", [round(100.0 * b.spent / b.cap, 1) if b.cap else 0.0 for b in data.budgets])
    rows = []
    for b in data.budgets:
        org = f"{num(b.org_used)} of {num(b.org_limit)}" if b.org_limit else "-"
        state = (
            '<span class="pill bad">budget reached</span>'
            if b.exhausted
            else '<span class="pill ok">ok</span>'
        )
        rows.append(
            [_LABEL[b.system], num(b.spent), num(b.cap), percent(b.spent, b.cap), org, _e(b.day), state]
        )
    table = _table(
        ["system", "calls", "syncd's cap", "used", "whole org", "day (UTC)", ""], rows, numeric=(1, 2, 3)
    )
    return (
        f'<section id="budget" class="half"><h2>API use against budget</h2>{_chart(chart)}{table}</section>'
    )


def _waiting(data: StatusData) -> str:
    if not data.waiting:
        body = '<p class="muted">Nothing waits in a queue, and every decided person and account has an owner.</p>'
    else:
        body = _table(
            ["kind", "where", "count"],
            ([_e(w.kind), _e(w.where), num(w.count)] for w in data.waiting),
            numeric=(2,),
        )
    return f'<section id="waiting" class="half"><h2>Waiting in queues or unrouted</h2>{body}</section>'


def _reps(data: StatusData) -> str:
    capped = [r for r in data.reps if r.daily_cap is not None and r.team != NOT_IN_ROSTER]
    chart = pygal.Bar(
        **_config(
            title="Assigned today against each rep's daily cap",
            x_label_rotation=30,
            height=300,
            legend_at_bottom=False,
            style=_style(("#2f6fdf", "#cfd6e3")),
        )
    )
    chart.x_labels = [r.rep.split("@")[0] for r in capped]
    chart.add("assigned today", [r.today for r in capped])
    chart.add("daily cap", [r.daily_cap for r in capped])
    parts = [f'<section id="reps"><h2>Per-rep load by team</h2>{_chart(chart) if capped else ""}']
    for team, members in groupby(data.reps, key=lambda r: r.team):
        reps = list(members)
        rows = []
        for r in reps:
            over = r.daily_cap is not None and r.today >= r.daily_cap
            today = f'<span class="over">{num(r.today)}</span>' if over else num(r.today)
            if not r.active:
                state = '<span class="pill">inactive</span>'
            elif r.available:
                state = '<span class="pill ok">available</span>'
            else:
                state = f'<span class="pill warn">{_e(r.why_not)}</span>'
            rows.append(
                [
                    _e(r.rep),
                    _e(r.role or "-"),
                    num(r.owned),
                    today,
                    num(r.daily_cap),
                    percent(r.today, r.daily_cap),
                    state,
                ]
            )
        owned = sum(r.owned for r in reps)
        parts.append(f"<h3>{_e(team.replace('_', ' '))} · {num(len(reps))} reps · {num(owned)} owned</h3>")
        parts.append(
            _table(
                ["rep", "role", "owned", "assigned today", "daily cap", "of cap", ""],
                rows,
                numeric=(2, 3, 4, 5),
                cls="reps",
            )
        )
    parts.append("</section>")
    return "".join(parts)


def _quarantine(data: StatusData) -> str:
    head = (
        f'<h2>Quarantine <span class="muted">{num(data.quarantine_total)} held, '
        f"{num(data.quarantine_due)} due for a retry</span></h2>"
    )
    if not data.quarantine:
        return f'<section id="quarantine">{head}<p class="muted">Nothing is held.</p></section>'
    rows = []
    for q in data.quarantine:
        rid = _e(q.record_id)
        record = f'<a href="{_e(q.url)}" target="_blank" rel="noopener">{rid}</a>' if q.url else rid
        rows.append(
            [
                _LABEL.get(q.system, _e(q.system)),
                _e(q.object),
                record,
                f'<span class="reason">{_e(q.reason)}</span>',
                num(q.attempts),
                _e(_when(q.next_attempt_at)),
                '<span class="pill bad">reported</span>' if q.reported else "",
            ]
        )
    more = ""
    if data.quarantine_total > len(data.quarantine):
        more = f'<p class="muted">{num(data.quarantine_total - len(data.quarantine))} more: <code>syncd status --json</code> lists them all.</p>'
    table = _table(["system", "object", "record", "reason", "tries", "next try", ""], rows, numeric=(4,))
    return f'<section id="quarantine">{head}<div class="scroll">{table}</div>{more}</section>'


def _assignments(data: StatusData) -> str:
    chart = pygal.Bar(
        **_config(
            title="Assignments per hour, last 24 hours (UTC)",
            show_legend=False,
            width=860,
            height=260,
            x_label_rotation=0,
            show_minor_x_labels=False,
            x_labels_major_every=3,
        )
    )
    chart.x_labels = [_short(hour) for hour, _ in data.assignments_by_hour]
    chart.add("assignments", [n for _, n in data.assignments_by_hour])
    by_team = pygal.Pie(
        **_config(title="By team", inner_radius=0.5, width=420, height=260, legend_at_bottom=False)
    )
    for team, n in data.assignments_by_team.items():
        by_team.add(team.replace("_", " "), n)
    rows = [
        [_e(_when(a.at)), _e(a.rep), _e(a.team.replace("_", " ")), _e(a.reason), f"<code>{_e(a.key)}</code>"]
        for a in data.assignments[:50]
    ]
    table = (
        _table(["when", "rep", "team", "by rule", "person or account"], rows)
        if rows
        else '<p class="muted">No owner assigned in the last 24 hours.</p>'
    )
    note = ""
    if data.assigned_last_day > len(rows):
        note = f"The latest {num(len(rows))} of {num(data.assigned_last_day)}. "
    if rows:
        note = f'<p class="muted">{note}<code>syncd explain KEY</code> tells why a person or account has its owner.</p>'
    charts = (
        f'<div style="display:grid;grid-template-columns:2fr 1fr;gap:12px">{_chart(chart)}'
        f"{_chart(by_team) if data.assignments_by_team else ''}</div>"
    )
    return (
        f'<section id="assignments"><h2>Assignments of the last day <span class="muted">'
        f'{num(data.assigned_last_day)}</span></h2>{charts}<div class="scroll">{table}</div>{note}</section>'
    )


def _rules(data: StatusData) -> str:
    r = data.rules
    error = (
        f'<p class="err"><strong>Last reload refused</strong> (the rules above stay live): {_e(r.error)}</p>'
        if r.error
        else '<p class="muted">No refused reload.</p>'
    )
    files = ", ".join(f"<code>{_e(f)}</code>" for f in r.files) or '<span class="muted">none</span>'
    rows = [
        ["digest", f"<code>{_e(r.digest or '-')}</code>"],
        ["directory", f"<code>{_e(r.directory)}</code>"],
        ["files", files],
        ["loaded", _e(_when(r.loaded_at))],
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<section id="rules" class="half"><h2>Rules in force</h2><table>{body}</table>{error}</section>'


def _key_account_risk(data: StatusData) -> str:
    """The top customer accounts by value and how many reps each hangs on (``syncd report accounts``)."""
    head = '<section id="key-account-risk" class="half"><h2>Key-account risk</h2>'
    if data.key_account_risk is None:
        return head + '<p class="muted">No account teams (teams.toml) or no account synced yet.</p></section>'
    summary, accounts = data.key_account_risk
    line = (
        f"<p>Top {_e(summary['top'])} of {_e(summary['customers'])} customer accounts by value: "
        f"<strong>{_e(summary['single_threaded'])}</strong> single-threaded "
        f"({_e(summary['single_threaded_top_tier'])} in the top tier, "
        f"{_e(summary['long_term_single_threaded'])} for more than two years).</p>"
    )
    rows = "".join(
        f"<tr><td>{_e(a.name)}</td><td>{_e(a.tier or a.rules_tier or '-')}</td><td>{_e(a.owner or '-')}</td>"
        f"<td>{len(a.reps)}</td><td>{'long-term single-threaded' if a.long_term_single_threaded else 'single-threaded' if a.single_threaded else ''}</td></tr>"
        for a in accounts[:20]
    )
    table = (
        f"<table><tr><th>account</th><th>tier</th><th>owner</th><th>reps</th><th>risk</th></tr>{rows}</table>"
    )
    return head + line + table + "</section>"


def render(data: StatusData, *, refresh_seconds: int | None = None) -> str:
    """The whole page; ``refresh_seconds`` makes the browser reload it that often (the daemon's page)."""
    notes = "".join(f'<section class="notes"><p class="muted">{_e(n)}</p></section>' for n in data.notes)
    body = "".join(
        [
            _tiles(data),
            notes,
            _cycles(data),
            _budget(data),
            _waiting(data),
            _reps(data),
            _quarantine(data),
            _assignments(data),
            _rules(data),
            _key_account_risk(data),
        ]
    )
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8">{refresh}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>syncd status</title><style>{_CSS}</style></head>"
        f"<body>{_header(data)}<main>{body}</main></body></html>\n"
    )
