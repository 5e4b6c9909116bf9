"""No rule set `syncd validate` accepts can crash a cycle (hypothesis).

Extreme numbers (0, negative, huge, 1e308, subnormal, inf, nan) and strings (empty, 10 KB, control characters,
any unicode) go into the numeric and text fields of the shipped rules. Whatever `validate` refuses must be
refused as one-line errors; whatever it accepts must go through the engine (`decide`) on generated persons,
accounts and ledgers, and through the due-time arithmetic of the cycle (`_decision_rows`, and the honoured
window of a detected override) without raising.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import NOW, RULES, account, person
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from syncd.core.engine import decide
from syncd.core.rules import check_directory
from syncd.core.schedule import due_at
from syncd.core.types import Assignment, LedgerView, Override, PersonView

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"

# (file, text in the shipped file, the same text with "@" where the generated value goes)
NUMERIC_SLOTS = [
    ("policy.toml", "respect_days = 30", "respect_days = @"),
    ("policy.toml", "hours = 72", "hours = @"),
    ("lifecycle.toml", "hold_days = 30", "hold_days = @"),
    ("lifecycle.toml", "account.open_opportunities = { gt = 0 }", "account.open_opportunities = { gt = @ }"),
    ("scoring.toml", "threshold = 60", "threshold = @"),
    ("scoring.toml", "max = 100", "max = @"),
    ("scoring.toml", "fit_cap = 50", "fit_cap = @"),
    ("scoring.toml", "engagement_cap = 60", "engagement_cap = @"),
    ("scoring.toml", "points = 15\n\n[[fit]]", "points = @\n\n[[fit]]"),
    ("scoring.toml", "points = 15            # per conversion", "points = @"),
    ("scoring.toml", "cap = 30", "cap = @"),
    ("scoring.toml", "half_life_days = 90", "half_life_days = @"),
    ("scoring.toml", "between = [200, 4999]", "between = [@, 4999]"),
    ("scoring.toml", "employees = { gte = 5000 }", "employees = { gte = @ }"),
    ("roster.toml", "weight = 2", "weight = @"),
    ("roster.toml", "daily_cap = 30", "daily_cap = @"),
    ("policy.toml", 'recreate_deleted = "never"', 'recreate_deleted = "after_days @"'),
]
TEXT_SLOTS = [
    ("routing.toml", 'name = "Marketing nurture"', "name = @"),
    ("routing.toml", '"JP", "AU"', '@, "AU"'),
    ("scoring.toml", 'contains = "student"', "contains = @"),
    ("scoring.toml", 'name = "Student"', "name = @"),
    (
        "lifecycle.toml",
        'description = "Known, not yet ready for sales: marketing nurtures."',
        "description = @",
    ),
    ("lifecycle.toml", 'lead_status = "Closed - Not Converted"', "lead_status = @"),
    ("roster.toml", 'role = "sdr"', "role = @"),
    ("roster.toml", 'territory = "NA"', "territory = @"),
    ("roster.toml", '"owen.price@northwind.example", team', "@, team"),
    ("policy.toml", 'account_type = "Customer"', "account_type = @"),
]

EXTREMES = [
    0,
    -1,
    1,
    2,
    0.5,
    -0.0,
    1e308,
    -1e308,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    2**63 - 1,
    -(2**63),
]
EXTREMES += [3650, 3651, 87600, 87601, 1_000_000, 1_000_001, 0.001, 0.000999, 1e-7, 1e10, 10**30]
extreme_numbers = st.one_of(
    st.sampled_from(EXTREMES),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    # Inside the bounds too, so that many generated sets are accepted and go on to the engine.
    st.integers(min_value=0, max_value=1_000_000),
    st.floats(min_value=0, max_value=3650),
    st.floats(min_value=0, max_value=1e-300),
)
extreme_texts = st.one_of(
    st.sampled_from(["", " ", "x" * 10_240, "\n", "\x00", "\x1b[31m", "\u202e", "JP, AU", "jp", "DE ", "🙈"]),
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=10),
)


def toml_number(value: int | float) -> str:
    if isinstance(value, float):
        return repr(value)  # inf, -inf, nan, 1e+308, 5e-324 are all TOML
    return str(value)


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


@contextmanager
def edited_rules(edits: list[tuple[str, str, str, str]]) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "m"
        shutil.copytree(SHIPPED, directory)
        for name, old, template, value in edits:
            path = directory / name
            text = path.read_text(encoding="utf-8")
            assert old in text, f"{old!r} not in {name}: the slot no longer matches the shipped file"
            path.write_text(text.replace(old, template.replace("@", value), 1), encoding="utf-8")
        yield directory


REPS = sorted(RULES.roster.reps)
moments = st.one_of(
    st.integers(min_value=-3650, max_value=36_500).map(lambda d: NOW - timedelta(days=d)),
    st.sampled_from([NOW.replace(year=1, month=1, day=2), NOW.replace(year=9999, month=12, day=30)]),
)
person_fields = st.fixed_dictionaries(
    {},
    optional={
        "stage": st.sampled_from([None, *RULES.lifecycle.order]),
        "country": st.sampled_from(["US", "DE", "JP", "AU", "", None]),
        "title": st.sampled_from(["VP Sales", "Student", "", "x" * 5000]),
        "employees": st.one_of(st.integers(min_value=-10, max_value=10**9), st.just(0)),
        "industry": st.sampled_from(["Software", "Retail"]),
        "conversions": st.integers(min_value=0, max_value=10**6),
        "email_clicks": st.integers(min_value=0, max_value=10**6),
        "page_views": st.integers(min_value=0, max_value=10**6),
        "last_activity": moments,
        "last_engagement": moments,
        "lead_source": st.sampled_from(["ORGANIC_SEARCH", "PAID_SEARCH"]),
        "lead_status": st.sampled_from(["Nurturing", "Closed - Not Converted"]),
        "domain": st.sampled_from(["gmail.com", "acme.example"]),
        "owner": st.sampled_from([*REPS, "queue:Unassigned Leads"]),
    },
)


@st.composite
def people(draw: st.DrawFn) -> list[PersonView]:
    out = []
    for i in range(draw(st.integers(min_value=1, max_value=8))):
        linked = draw(st.booleans())
        out.append(
            person(
                f"p{i}",
                account=draw(st.sampled_from([None, "a1", "a2"])),
                sf=f"00Q{i}" if linked else None,
                obj=draw(st.sampled_from(["Lead", "Contact"])) if linked else None,
                **draw(person_fields),
            )
        )
    return out


@st.composite
def ledgers(draw: st.DrawFn) -> LedgerView:
    assignments, overrides = {}, {}
    for i in range(draw(st.integers(min_value=0, max_value=6))):
        key = f"p{i}"
        owner = draw(st.sampled_from(REPS))
        at = NOW - timedelta(days=draw(st.integers(min_value=0, max_value=3650)))
        assignments[key] = Assignment(key, owner, RULES.roster.reps[owner].team, "x", at)
        if draw(st.booleans()):
            overrides[key] = Override(key, draw(st.sampled_from(REPS)), at)
    holds = {
        f"p{i}": NOW + timedelta(days=d)
        for i, d in enumerate(draw(st.lists(st.integers(-30, 30), max_size=3)))
    }
    counts = draw(
        st.dictionaries(st.sampled_from(REPS), st.integers(min_value=0, max_value=10**6), max_size=4)
    )
    return LedgerView(assignments=assignments, overrides=overrides, daily_counts=counts, holds=holds)


ACCOUNTS = [
    account("a1", account_type="Customer", country="US", owner="rachel.green@northwind.example"),
    account("a2", country="DE", open_opps=1, owner="gone@northwind.example"),
]


def cycle_due_times(ruleset: Any, decisions: Any, overrides: set[str]) -> None:
    """The cycle's arithmetic on the rules' durations, as syncd.cycle does it: a detected override's
    honoured window (``now + respect_days``, cycle.pull), each decision's due time from its SLA deadline
    (``assigned_at + hours``), override and hold (cycle.decide, through core.schedule.due_at), and the
    window after which a deleted Lead may be created again (core.plan, ``after_days N``)."""
    policy = ruleset.policy
    honoured_until = NOW + timedelta(days=policy.override_days)
    for d in decisions:
        sla = None
        if d.kind == "person" and d.stage in policy.sla_stages and d.assigned_at is not None:
            sla = d.assigned_at + timedelta(hours=policy.sla_hours)
        override = honoured_until if d.key in overrides else None
        due = due_at(NOW, sla_deadline=sla, override_until=override, hold=d.hold_until)
        assert due.tzinfo is not None
    mode, days = policy.recreate_deleted
    if mode == "after_days":
        assert NOW - (NOW - timedelta(days=days)) >= timedelta(days=days)


def check_accepted_set_runs(
    edits: list[tuple[str, str, str, str]], persons: list[PersonView], ledger: LedgerView
) -> bool:
    """Validates the edited set; when accepted, runs the engine and the cycle's arithmetic on it. True
    when the set was accepted."""
    with edited_rules(edits) as directory:
        ruleset, problems = check_directory(directory)
    if ruleset is None:
        # Refused: as one-line errors, each naming a file of the directory, no echo of a 10 KB value.
        assert problems.errors
        for line in (str(p) for p in problems.errors):
            assert "\n" not in line and len(line) <= 400, line[:500]
            assert line.startswith(str(directory)), line
        return False
    result = decide(persons, ACCOUNTS, ruleset, ledger, NOW)
    assert len(result.decisions) == len(persons) + len(ACCOUNTS)
    for d in result.decisions:
        assert d.score is None or 0 <= d.score <= ruleset.scoring.max
    cycle_due_times(ruleset, result.decisions, set(ledger.overrides))
    return True


SAMPLE_PERSONS = [
    person(
        "p0",
        stage="marketing_qualified",
        conversions=10**6,
        email_clicks=3,
        last_engagement=NOW,
        employees=5000,
    ),
    person(
        "p1", account="a1", sf="003A", obj="Contact", lead_status="Closed - Not Converted", title="Student"
    ),
    person("p2", stage="lead", country="JP", page_views=7, last_engagement=NOW - timedelta(days=36_500)),
]
SAMPLE_LEDGER = LedgerView(
    assignments={
        "p0": Assignment("p0", "sam.patel@northwind.example", "sales", "x", NOW - timedelta(days=3650)),
        "p2": Assignment("p2", "nora.lindqvist@northwind.example", "marketing", "x", NOW),
    },
    overrides={"p2": Override("p2", "owen.price@northwind.example", NOW - timedelta(hours=1))},
)


@pytest.mark.parametrize("slot", NUMERIC_SLOTS, ids=[f"{s[0]}:{s[1].split()[0]}" for s in NUMERIC_SLOTS])
def test_every_extreme_number_in_every_numeric_field(slot: tuple[str, str, str]) -> None:
    accepted = 0
    for value in [*EXTREMES, float("inf"), float("-inf"), float("nan")]:
        accepted += check_accepted_set_runs([(*slot, toml_number(value))], SAMPLE_PERSONS, SAMPLE_LEDGER)
    assert 0 < accepted < len(EXTREMES) + 3  # some values are in range, some are not


@pytest.mark.parametrize("slot", NUMERIC_SLOTS, ids=[f"{s[0]}:{s[1].split()[0]}" for s in NUMERIC_SLOTS])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    number=extreme_numbers,
    text=st.one_of(st.none(), st.tuples(st.sampled_from(TEXT_SLOTS), extreme_texts)),
    persons=people(),
    ledger=ledgers(),
)
def test_an_accepted_rule_set_never_crashes_the_engine_or_the_cycle_arithmetic(
    slot: tuple[str, str, str],
    number: float,
    text: tuple[tuple[str, str, str], str] | None,
    persons: list[PersonView],
    ledger: LedgerView,
) -> None:
    edits = [(*slot, toml_number(number))]
    if text is not None:
        edits.append((*text[0], toml_string(text[1])))
    accepted = check_accepted_set_runs(edits, persons, ledger)
    event("accepted" if accepted else "refused")
