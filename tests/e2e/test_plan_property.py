"""Property: for random rule edits on a generated org, `plan` (from the ledger, no API call) predicts the
next `once` exactly: the writes per system and action, and the owners' gains and losses."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from conftest import ROOT, Org
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.core.rules import load_ruleset

TERRITORIES = ("US", "CA", "MX", "GB", "DE", "FR", "NL", "SE", "ES", "IT", "IE", "CH", "JP", "AU", "IN", "SG")
RULE_LINES = {
    "AE North America": 'when = { country = ["US", "CA", "MX"] }',
    "AE EMEA": 'when = { country = ["GB", "DE", "FR", "NL", "SE", "ES", "IT", "IE", "CH"] }',
    "AE APAC": 'when = { country = ["JP", "AU", "IN", "SG"] }',
}
SDRS = ("sam.patel", "lena.novak", "diego.ramos")

Edit = Callable[[dict[str, str]], None]


def move_country(country: str, to: str) -> Edit:
    def apply(files: dict[str, str]) -> None:
        text = files["routing.toml"]
        for name, line in RULE_LINES.items():
            countries = re.findall(r'"([A-Z]{2})"', line)
            kept = [c for c in countries if c != country] or countries
            if name == to and country not in kept:
                kept.append(country)
            new = "when = { country = [" + ", ".join(f'"{c}"' for c in kept) + "] }"
            text = text.replace(line, new)
        files["routing.toml"] = text

    apply.__name__ = f"move {country} to {to}"
    return apply


def threshold(value: int) -> Edit:
    def apply(files: dict[str, str]) -> None:
        files["scoring.toml"] = files["scoring.toml"].replace("threshold = 60", f"threshold = {value}")

    apply.__name__ = f"threshold {value}"
    return apply


def out_of_office(name: str) -> Edit:
    def apply(files: dict[str, str]) -> None:
        old = f'{{ email = "{name}@northwind.example", team = "sales", role = "sdr", daily_cap = 40 }}'
        new = old[:-2] + ", out_of_office = true }"
        if old not in files["roster.toml"]:
            return  # already changed by an earlier edit (left, or out of office)
        files["roster.toml"] = files["roster.toml"].replace(old, new)

    apply.__name__ = f"{name} out of office"
    return apply


def deactivate(name: str) -> Edit:
    def apply(files: dict[str, str]) -> None:
        text = files["roster.toml"]
        start = text.index(f'{{ email = "{name}@northwind.example"')
        end = text.index("}", start)
        if "active = false" not in text[start:end]:
            files["roster.toml"] = text[:start] + text[start:end] + ", active = false " + text[end:]

    apply.__name__ = f"{name} leaves"
    return apply


EDITS = st.one_of(
    st.builds(move_country, st.sampled_from(TERRITORIES), st.sampled_from(sorted(RULE_LINES))),
    st.builds(threshold, st.integers(min_value=30, max_value=90)),
    st.builds(out_of_office, st.sampled_from(SDRS)),
    st.builds(deactivate, st.sampled_from(("jack.miller", "lukas.schmidt", "kenji.tanaka", *SDRS))),
)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(EDITS, min_size=1, max_size=3))
def test_plan_predicts_the_next_cycle_for_random_rule_edits(
    make_org: Callable[..., Org], tmp_path_factory: object, edits: list[Edit]
) -> None:
    org = make_org(persons=80)
    cycle = org.cycle()
    cycle.run(org.rules)
    org.clock.advance(minutes=5)
    cycle.run(org.rules)

    target = Path(str(tmp_path_factory.mktemp("rules")))  # type: ignore[attr-defined]
    shutil.copytree(ROOT / "mappings", target, dirs_exist_ok=True)
    files = {p.name: p.read_text() for p in target.glob("*.toml")}
    for edit in edits:
        edit(files)
    for name, text in files.items():
        (target / name).write_text(text)
    candidate = load_ruleset(target)

    plan = cycle.run(candidate, dry_run=True, pull=False)
    once = cycle.run(candidate)

    assert once.tally.counts() == plan.tally.counts(), [e.__name__ for e in edits]
    assert {r.owner: (r.gained, r.lost) for r in once.impact.reps({}, {})} == {
        r.owner: (r.gained, r.lost) for r in plan.impact.reps({}, {})
    }
