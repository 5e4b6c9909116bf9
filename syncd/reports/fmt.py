"""One number format and one table style for everything a person reads.

Numbers print with a thousands separator (``20,000``), durations in seconds or minutes, shares as percents;
tables are ``rich.table.Table`` rendered to plain text, so ``click.echo`` prints them and tests read them.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from rich import box
from rich.console import Console
from rich.table import Table

__all__ = ["duration", "num", "percent", "rate", "render", "table"]


def num(value: float | None) -> str:
    """``20000`` -> ``20,000``; a float keeps one decimal when it has one (``2.5``); None -> ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def duration(seconds: float | None) -> str:
    """``0.42`` -> ``0.4 s``, ``75`` -> ``1 min 15 s``, ``7300`` -> ``2 h 1 min``; None -> ``-``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours:,} h {minutes} min"


def percent(part: float, whole: float | None) -> str:
    """``part`` of ``whole`` as ``12%`` (one decimal under 10 %); ``-`` when there is no whole."""
    if not whole:
        return "-"
    share = 100.0 * part / whole
    return f"{share:.1f}%" if share < 10 else f"{share:.0f}%"


def rate(per_second: float) -> str:
    """A throughput: ``1,234/s``, or ``0.5/s`` when slow."""
    return f"{per_second:,.1f}/s" if per_second < 10 else f"{round(per_second):,}/s"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    align: Literal["numbers", "left"] = "numbers",
) -> Table:
    """A table in syncd's style: numbers (``num``) right-aligned after a left-aligned first column, or,
    with ``align="left"``, every column left-aligned (a table of names and times)."""
    t = Table(
        *[],
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
        title_style="bold",
    )
    for i, name in enumerate(header):
        right = i > 0 and align == "numbers"
        t.add_column(name, justify="right" if right else "left", no_wrap=i == 0)
    for row in rows:
        t.add_row(
            *(num(c) if isinstance(c, int | float) and not isinstance(c, bool) else str(c) for c in row)
        )
    return t


def render(renderable: Any, *, width: int = 120) -> str:
    """A rich renderable as plain text (no colour, no control codes), trailing spaces trimmed."""
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, force_terminal=False, highlight=False).print(renderable)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())
