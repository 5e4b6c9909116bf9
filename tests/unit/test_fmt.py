"""One number format for everything a person reads, and tables by rich."""

from __future__ import annotations

import pytest

from syncd.reports.fmt import duration, num, percent, rate, render, table


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(20_000, "20,000", id="thousands"),
        pytest.param(0, "0", id="zero"),
        pytest.param(1_234_567, "1,234,567", id="millions"),
        pytest.param(2.5, "2.5", id="fraction"),
        pytest.param(3.0, "3", id="whole-float"),
        pytest.param(None, "-", id="none"),
    ],
)
def test_num(value: float | None, text: str) -> None:
    assert num(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4 s"), (59.94, "59.9 s"), (75, "1 min 15 s"), (7_300, "2 h 1 min"), (None, "-")],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_percent_and_rate() -> None:
    assert percent(3, 40) == "7.5%" and percent(30, 40) == "75%" and percent(1, 0) == "-"
    assert rate(2.25) == "2.2/s" and rate(12_345.6) == "12,346/s"


def test_a_table_prints_numbers_with_separators_under_right_aligned_headers() -> None:
    text = render(table(["", "Salesforce", "HubSpot"], [["pulled", 20_000, 383], ["created", 0, 7]]))
    lines = text.splitlines()
    pulled = next(line for line in lines if line.startswith("pulled"))
    assert pulled.split() == ["pulled", "20,000", "383"]
    header = lines[0]
    assert header.index("Salesforce") + len("Salesforce") == pulled.index("20,000") + len("20,000")
    assert "\x1b" not in text  # plain text: no colour codes in files, pipes and tests
