"""A corpus of malformed rule sets, each the shipped `mappings/` with one mutation, run through `syncd validate`.

For every case: exit code 2, no traceback, the first error names the file that holds the mistake, at most 3
lines of errors and warnings, no line longer than 300 characters. Then unusual but valid sets that must still
be accepted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli import cli
from syncd.core.rules import check_directory
from syncd.core.rules.problems import MAX_FILE_BYTES

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "mappings"
MAX_LINES = 3
MAX_LINE_CHARS = 300

Mutation = Callable[[Path], None]


def replace(name: str, old: str, new: str, count: int = 1) -> Mutation:
    """Replace ``old`` (which must occur in the shipped file) with ``new``."""

    def mutate(d: Path) -> None:
        path = d / name
        text = path.read_text(encoding="utf-8")
        if old not in text:
            raise AssertionError(f"{old!r} not in {name}: the case no longer matches the shipped file")
        path.write_text(text.replace(old, new, count), encoding="utf-8")

    return mutate


def append(name: str, text: str) -> Mutation:
    def mutate(d: Path) -> None:
        with (d / name).open("a", encoding="utf-8") as handle:
            handle.write("\n" + text + "\n")

    return mutate


def write(name: str, data: bytes | str) -> Mutation:
    def mutate(d: Path) -> None:
        path = d / name
        path.unlink()
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)

    return mutate


def prepend(name: str, data: bytes) -> Mutation:
    def mutate(d: Path) -> None:
        path = d / name
        path.write_bytes(data + path.read_bytes())

    return mutate


def make_directory(name: str) -> Mutation:
    def mutate(d: Path) -> None:
        (d / name).unlink()
        (d / name).mkdir()
        (d / name / "inside.toml").write_text("x = 1\n")

    return mutate


def symlink(name: str, target: str) -> Mutation:
    def mutate(d: Path) -> None:
        (d / name).unlink()
        (d / name).symlink_to(target)

    return mutate


def fifo(name: str) -> Mutation:
    def mutate(d: Path) -> None:
        (d / name).unlink()
        os.mkfifo(d / name)

    return mutate


def nested_arrays(depth: int) -> str:
    return "deep = " + "[" * depth + "1" + "]" * depth + "\n"


def nested_tables(depth: int) -> str:
    return "deep = " + "{ a = " * depth + "1" + " }" * depth + "\n"


def nested_nots(depth: int) -> str:
    return "{ " + "not = { " * depth + 'country = "US"' + " }" * depth + " }"


@dataclass(frozen=True)
class Case:
    id: str
    file: str  # the file the first error must name
    mutate: Mutation


ROUTING_RULE = '[[rules]]\nname = "Extra"\nwhen = {when}\npool = "ae_na"\n'
REP_NORA = '{ email = "nora.lindqvist@northwind.example", team = "marketing", role = "marketing" }'
NEW_FIELD = '[fields.region]\ntype = "text"\n{binding}\n'

CASES: list[Case] = [
    # ----------------------------------------------------------------------------- unreadable and not text
    Case("directory-instead-of-policy", "policy.toml", make_directory("policy.toml")),
    Case("directory-instead-of-fields", "fields.toml", make_directory("fields.toml")),
    Case("symlink-loop", "routing.toml", symlink("routing.toml", "routing.toml")),
    Case("dangling-symlink", "scoring.toml", symlink("scoring.toml", "/nonexistent/scoring.toml")),
    Case("fifo-instead-of-file", "lifecycle.toml", fifo("lifecycle.toml")),
    Case("unreadable-proc-file", "roster.toml", symlink("roster.toml", "/proc/self/mem")),
    Case(
        "latin-1-text",
        "roster.toml",
        lambda d: (d / "roster.toml").write_bytes(
            (d / "roster.toml").read_bytes().replace(b"Northwind", "Nörthwind".encode("latin-1"))
        ),
    ),
    Case(
        "utf-16-file",
        "policy.toml",
        lambda d: (d / "policy.toml").write_bytes((d / "policy.toml").read_text().encode("utf-16")),
    ),
    Case(
        "binary-png",
        "routing.toml",
        write("routing.toml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
    ),
    Case(
        "nul-byte-in-string",
        "scoring.toml",
        replace("scoring.toml", 'qualifies = "marketing_qualified"', 'qualifies = "marketing\x00qualified"'),
    ),
    Case(
        "invalid-utf8-byte",
        "fields.toml",
        lambda d: (d / "fields.toml").write_bytes((d / "fields.toml").read_bytes() + b"\n# \xff\xfe\n"),
    ),
    Case("empty-lifecycle", "lifecycle.toml", write("lifecycle.toml", "")),
    Case("empty-roster", "roster.toml", write("roster.toml", "")),
    Case("whitespace-only-fields", "fields.toml", write("fields.toml", "   \n\n\t\n")),
    # ----------------------------------------------------------------------------- huge and deep
    Case("file-over-size-limit", "roster.toml", append("roster.toml", "#" + "x" * (MAX_FILE_BYTES + 10))),
    Case("eight-megabyte-value", "policy.toml", append("policy.toml", 'note = "' + "x" * 8_000_000 + '"')),
    Case(
        "long-value-below-file-limit",
        "routing.toml",
        replace("routing.toml", 'name = "Marketing nurture"', 'name = "' + "n" * 20_000 + '"'),
    ),
    Case("long-key", "policy.toml", append("policy.toml", "k" * 12_000 + " = 1")),
    Case(
        "long-unknown-team-is-clipped",
        "lifecycle.toml",
        replace("lifecycle.toml", 'team = "account_management"', 'team = "' + "t" * 5_000 + '"'),
    ),
    Case(
        "long-unknown-pool-is-clipped",
        "routing.toml",
        replace("routing.toml", 'pool = "sdr"', 'pool = "' + "p" * 9_000 + '"'),
    ),
    Case(
        "long-email-is-clipped",
        "roster.toml",
        replace("roster.toml", '"owen.price@northwind.example"', '"' + "o" * 9_000 + '@northwind.example"'),
    ),
    Case("integer-of-5000-digits", "policy.toml", append("policy.toml", "[x]\nbig = " + "9" * 5000)),
    Case("float-overflowing-to-inf", "policy.toml", replace("policy.toml", "hours = 72", "hours = 1e999")),
    Case(
        "time-zone-name-too-long",
        "roster.toml",
        replace(
            "roster.toml",
            REP_NORA,
            REP_NORA[:-2]
            + ', working_hours = { timezone = "'
            + "A" * 9000
            + '", start = "09:00", end = "17:00" } }',
        ),
    ),
    Case(
        "time-zone-path",
        "roster.toml",
        replace(
            "roster.toml",
            REP_NORA,
            REP_NORA[:-2]
            + ', working_hours = { timezone = "../../etc/passwd", start = "09:00", end = "17:00" } }',
        ),
    ),
    # ----------------------------------------------------------------------------- found by fuzzing the shipped set
    Case(
        "pool-team-unknown",
        "routing.toml",
        replace("routing.toml", 'name = "sdr"\nteam = "sales"', 'name = "sdr"\nteam = "customer"'),
    ),
    Case(
        "value-map-of-two-objects-wrong-value",
        "fields.toml",
        replace(
            "fields.toml", 'marketing_qualified = "marketingqualifiedlead"', 'marketing_qualified = "mql"'
        ),
    ),
    Case(
        "stages-header-inside-backward-move",
        "lifecycle.toml",
        replace(
            "lifecycle.toml",
            'name = "Recycle disqualified leads"\n',
            'name = "Recycle disqualified leads"\n[[stages]]\n',
        ),
    ),
    Case(
        "backward-header-inside-stage",
        "lifecycle.toml",
        replace("lifecycle.toml", 'name = "opportunity"\n', 'name = "opportunity"\n[[backward]]\n'),
    ),
    Case(
        "pools-header-inside-rule",
        "routing.toml",
        replace("routing.toml", 'name = "AE North America"\n', 'name = "AE North America"\n[[pools]]\n'),
    ),
    Case(
        "value-map-write-emptied",
        "fields.toml",
        replace(
            "fields.toml",
            'write = { lead = "Nurturing", marketing_qualified = "Open - Not Contacted", sales_qualified = "Working - Contacted", opportunity = "Working - Contacted", customer = "Working - Contacted" }',
            "write = {}",
        ),
    ),
    Case("deep-arrays-3000", "policy.toml", append("policy.toml", nested_arrays(3000))),
    Case(
        "deep-inline-tables-3000",
        "routing.toml",
        lambda d: (d / "routing.toml").write_text(nested_tables(3000) + (d / "routing.toml").read_text()),
    ),
    Case(
        "deep-arrays-100",
        "scoring.toml",
        lambda d: (d / "scoring.toml").write_text(nested_arrays(100) + (d / "scoring.toml").read_text()),
    ),
    Case(
        "deep-condition-40-nots",
        "routing.toml",
        replace("routing.toml", 'when = { stage = "lead" }', "when = " + nested_nots(40)),
    ),
    Case("deep-dotted-keys", "policy.toml", append("policy.toml", "[x]\n" + ".".join(["k"] * 60) + " = 1")),
    # ----------------------------------------------------------------------------- not finite, overflowing
    Case(
        "respect-days-1e10", "policy.toml", replace("policy.toml", "respect_days = 30", "respect_days = 1e10")
    ),
    Case(
        "respect-days-inf", "policy.toml", replace("policy.toml", "respect_days = 30", "respect_days = inf")
    ),
    Case(
        "respect-days-nan", "policy.toml", replace("policy.toml", "respect_days = 30", "respect_days = nan")
    ),
    Case(
        "respect-days-3651", "policy.toml", replace("policy.toml", "respect_days = 30", "respect_days = 3651")
    ),
    Case(
        "recreate-after-1e10-days",
        "policy.toml",
        replace("policy.toml", 'recreate_deleted = "never"', 'recreate_deleted = "after_days 1e10"'),
    ),
    Case(
        "recreate-after-inf-days",
        "policy.toml",
        replace("policy.toml", 'recreate_deleted = "never"', 'recreate_deleted = "after_days inf"'),
    ),
    Case("team-keep-days-1e10", "teams.toml", replace("teams.toml", "keep_days = 180", "keep_days = 1e10")),
    Case("sla-hours-inf", "policy.toml", replace("policy.toml", "hours = 72", "hours = inf")),
    Case("sla-hours-1e308", "policy.toml", replace("policy.toml", "hours = 72", "hours = 1e308")),
    Case("sla-hours-87601", "policy.toml", replace("policy.toml", "hours = 72", "hours = 87601")),
    Case("sla-hours-negative", "policy.toml", replace("policy.toml", "hours = 72", "hours = -1")),
    Case("sla-hours-zero", "policy.toml", replace("policy.toml", "hours = 72", "hours = 0")),
    Case("hold-days-1e10", "lifecycle.toml", replace("lifecycle.toml", "hold_days = 30", "hold_days = 1e10")),
    Case(
        "hold-days-minus-inf",
        "lifecycle.toml",
        replace("lifecycle.toml", "hold_days = 30", "hold_days = -inf"),
    ),
    Case(
        "half-life-1e308",
        "scoring.toml",
        replace("scoring.toml", "half_life_days = 90", "half_life_days = 1e308"),
    ),
    Case(
        "half-life-subnormal",
        "scoring.toml",
        replace("scoring.toml", "half_life_days = 90", "half_life_days = 5e-324"),
    ),
    Case(
        "half-life-zero", "scoring.toml", replace("scoring.toml", "half_life_days = 90", "half_life_days = 0")
    ),
    Case("threshold-nan", "scoring.toml", replace("scoring.toml", "threshold = 60", "threshold = nan")),
    Case(
        "threshold-int64-max",
        "scoring.toml",
        replace("scoring.toml", "threshold = 60", "threshold = 9223372036854775807"),
    ),
    Case("max-huge", "scoring.toml", replace("scoring.toml", "max = 100", "max = 1_000_000_000")),
    Case("fit-cap-huge", "scoring.toml", replace("scoring.toml", "fit_cap = 50", "fit_cap = 10_000_000")),
    Case(
        "engagement-cap-negative",
        "scoring.toml",
        replace("scoring.toml", "engagement_cap = 60", "engagement_cap = -60"),
    ),
    Case(
        "fit-points-huge",
        "scoring.toml",
        replace("scoring.toml", "points = 15\n\n[[fit]]", "points = 1_000_000_000_000\n\n[[fit]]"),
    ),
    Case(
        "engagement-points-1e300",
        "scoring.toml",
        replace("scoring.toml", "points = 5\ncap = 20", "points = 1e300\ncap = 20"),
    ),
    Case(
        "engagement-points-minus-inf",
        "scoring.toml",
        replace("scoring.toml", "points = 5\ncap = 20", "points = -inf\ncap = 20"),
    ),
    Case("engagement-cap-1e300", "scoring.toml", replace("scoring.toml", "cap = 15\n", "cap = 1e300\n")),
    Case(
        "condition-gte-inf",
        "scoring.toml",
        replace("scoring.toml", "employees = { gte = 5000 }", "employees = { gte = inf }"),
    ),
    Case(
        "condition-between-nan",
        "scoring.toml",
        replace("scoring.toml", "between = [200, 4999]", "between = [nan, 4999]"),
    ),
    Case(
        "condition-date-out-of-range",
        "routing.toml",
        replace(
            "routing.toml",
            'when = { stage = "lead" }',
            'when = { stage = "lead", last_activity = { gte = 0001-01-01T00:00:00+05:00 } }',
        ),
    ),
    Case(
        "daily-cap-huge",
        "roster.toml",
        replace("roster.toml", "daily_cap = 30", "daily_cap = 10_000_000_000"),
    ),
    Case("daily-cap-zero", "roster.toml", replace("roster.toml", "daily_cap = 30", "daily_cap = 0")),
    Case("weight-huge", "roster.toml", replace("roster.toml", "weight = 2", "weight = 1_000_000")),
    Case("weight-float", "roster.toml", replace("roster.toml", "weight = 2", "weight = 1.5")),
    # ----------------------------------------------------------------------------- rep e-mails
    Case(
        "email-without-at",
        "roster.toml",
        replace(
            "roster.toml", '"owen.price@northwind.example", team', '"owen.price.northwind.example", team'
        ),
    ),
    Case(
        "email-two-ats",
        "roster.toml",
        replace(
            "roster.toml", '"owen.price@northwind.example", team', '"owen@price@northwind.example", team'
        ),
    ),
    Case(
        "email-with-space",
        "roster.toml",
        replace(
            "roster.toml", '"owen.price@northwind.example", team', '"owen price@northwind.example", team'
        ),
    ),
    Case(
        "email-domain-without-dot",
        "roster.toml",
        replace("roster.toml", '"owen.price@northwind.example", team', '"owen.price@northwind", team'),
    ),
    Case(
        "email-leading-dot",
        "roster.toml",
        replace(
            "roster.toml", '"owen.price@northwind.example", team', '".owen.price@northwind.example", team'
        ),
    ),
    Case(
        "email-double-dot",
        "roster.toml",
        replace(
            "roster.toml", '"owen.price@northwind.example", team', '"owen..price@northwind.example", team'
        ),
    ),
    Case(
        "email-empty",
        "roster.toml",
        replace("roster.toml", '"owen.price@northwind.example", team', '"", team'),
    ),
    Case(
        "email-newline",
        "roster.toml",
        replace(
            "roster.toml", '"owen.price@northwind.example", team', '"owen.price@north\\nwind.example", team'
        ),
    ),
    Case(
        "email-not-text",
        "roster.toml",
        replace("roster.toml", '"owen.price@northwind.example", team', "42, team"),
    ),
    Case(
        "email-missing",
        "roster.toml",
        replace("roster.toml", 'email = "owen.price@northwind.example", team', "team"),
    ),
    # ----------------------------------------------------------------------------- one system field, two writers
    Case(
        "two-fields-write-lead-title",
        "fields.toml",
        replace(
            "fields.toml",
            'salesforce.Lead = { field = "Company", transform = "strip", write = "if_blank" }',
            'salesforce.Lead = { field = "Title", write = "always" }',
        ),
    ),
    Case(
        "new-field-writes-lead-country",
        "fields.toml",
        replace(
            "fields.toml",
            "# ---------------------------------------------------------------------------------- value maps",
            NEW_FIELD.format(binding='salesforce.Lead = { field = "Country", write = "always" }'),
        ),
    ),
    Case(
        "one-field-binds-a-system-field-twice",
        "fields.toml",
        replace(
            "fields.toml",
            'salesforce.Contact = { field = "Syncd_Stage__c" }',
            'salesforce.Contact = [{ field = "Syncd_Stage__c" }, { field = "Syncd_Stage__c" }]',
        ),
    ),
    # ----------------------------------------------------------------------------- the file that holds the mistake
    Case(
        "stage-renamed-to-a-duplicate",
        "lifecycle.toml",
        replace("lifecycle.toml", 'name = "opportunity"', 'name = "sales_qualified"'),
    ),
    Case(
        "stage-appended-twice",
        "lifecycle.toml",
        append("lifecycle.toml", '[[stages]]\nname = "lead"\nteam = "marketing"'),
    ),
    Case(
        "stage-duplicate-with-other-team",
        "lifecycle.toml",
        append("lifecycle.toml", '[[stages]]\nname = "customer"\nteam = "sales"'),
    ),
    Case("team-renamed-in-roster", "roster.toml", replace("roster.toml", "[teams.sales]", "[teams.sellers]")),
    Case(
        "bad-rep-in-pools",
        "roster.toml",
        replace("roster.toml", '"jack.miller@northwind.example", team', '"jack.miller@", team'),
    ),
    Case(
        "pool-renamed", "routing.toml", replace("routing.toml", 'name = "account_executives"', 'name = "aes"')
    ),
    Case(
        "queue-renamed-in-roster",
        "routing.toml",
        replace("roster.toml", 'name = "Unassigned Leads"', 'name = "Unassigned"'),
    ),
    Case(
        "value-map-renamed",
        "fields.toml",
        replace("fields.toml", "[value_maps.lead_status]", "[value_maps.lead_statuses]"),
    ),
    Case(
        "field-renamed-in-fields",
        "fields.toml",
        replace("fields.toml", "[fields.last_engagement]", "[fields.last_engaged]"),
    ),
    Case(
        "stage-renamed-in-lifecycle",
        "lifecycle.toml",
        replace("lifecycle.toml", 'name = "customer"', 'name = "customers"'),
    ),
    # ----------------------------------------------------------------------------- the admin's words
    Case("stages-empty", "lifecycle.toml", lambda d: (d / "lifecycle.toml").write_text("stages = []\n")),
    Case(
        "pool-members-empty",
        "routing.toml",
        replace(
            "routing.toml",
            'members = ["kenji.tanaka@northwind.example", "priya.sharma@northwind.example", "mia.wong@northwind.example"]',
            "members = []",
        ),
    ),
    Case(
        "rule-name-empty", "routing.toml", replace("routing.toml", 'name = "Marketing nurture"', 'name = ""')
    ),
    Case(
        "stage-team-not-text",
        "lifecycle.toml",
        replace("lifecycle.toml", 'team = "account_management"', "team = 5"),
    ),
    Case(
        "stage-team-missing",
        "lifecycle.toml",
        replace("lifecycle.toml", 'name = "customer"\nteam = "account_management"', 'name = "customer"'),
    ),
    Case(
        "applies-to-as-text",
        "routing.toml",
        replace("routing.toml", 'applies_to = ["persons", "accounts"]', 'applies_to = "persons, accounts"'),
    ),
    Case(
        "country-list-as-one-text",
        "routing.toml",
        replace(
            "routing.toml",
            'when = { country = ["JP", "AU", "IN", "SG"] }',
            'when = { country = "JP, AU, IN, SG" }',
        ),
    ),
    Case(
        "in-operator-with-text",
        "routing.toml",
        replace(
            "routing.toml",
            'when = { country = ["JP", "AU", "IN", "SG"] }',
            'when = { country = { in = "JP, AU" } }',
        ),
    ),
    Case(
        "handoff-teams-as-text",
        "policy.toml",
        replace(
            "policy.toml", 'create_salesforce_lead_for = ["sales"]', 'create_salesforce_lead_for = "sales"'
        ),
    ),
    Case(
        "sla-stages-as-text",
        "policy.toml",
        replace("policy.toml", 'stages = ["marketing_qualified"]', 'stages = "marketing_qualified"'),
    ),
    Case(
        "reps-as-text",
        "roster.toml",
        lambda d: (d / "roster.toml").write_text('reps = "nobody"\n[teams.sales]\n'),
    ),
    Case("teams-as-list", "roster.toml", write("roster.toml", 'teams = ["sales"]\n')),
    Case(
        "working-day-misspelt",
        "roster.toml",
        replace(
            "roster.toml",
            REP_NORA,
            REP_NORA[:-2]
            + ', working_hours = { timezone = "UTC", days = ["monday"], start = "09:00", end = "17:00" } }',
        ),
    ),
    Case(
        "away-date-as-text",
        "roster.toml",
        replace(
            "roster.toml", REP_NORA, REP_NORA[:-2] + ', away = [{ from = "tomorrow", until = 2025-08-01 }] }'
        ),
    ),
    Case(
        "working-hours-start-number",
        "roster.toml",
        replace(
            "roster.toml",
            REP_NORA,
            REP_NORA[:-2] + ', working_hours = { timezone = "UTC", start = 9, end = "17:00" } }',
        ),
    ),
    Case(
        "active-yes",
        "roster.toml",
        replace("roster.toml", 'role = "marketing", active = false', 'role = "marketing", active = "no"'),
    ),
    Case(
        "hold-days-text",
        "lifecycle.toml",
        replace("lifecycle.toml", "hold_days = 30", 'hold_days = "30 days"'),
    ),
    Case("stickiness-not-bool", "policy.toml", replace("policy.toml", "enabled = true", "enabled = 1")),
    # ----------------------------------------------------------------------------- values that can never match
    Case(
        "country-lower-case",
        "routing.toml",
        replace("routing.toml", '["JP", "AU", "IN", "SG"]', '["jp", "AU", "IN", "SG"]'),
    ),
    Case("country-by-name", "routing.toml", replace("routing.toml", '["JP", "AU", "IN", "SG"]', '["Japan"]')),
    Case(
        "country-with-space", "scoring.toml", replace("scoring.toml", '"IE", "CH", "JP"', '"IE", "CH ", "JP"')
    ),
    Case(
        "email-condition-upper-case",
        "routing.toml",
        replace(
            "routing.toml",
            'when = { stage = "lead" }',
            'when = { stage = "lead", email = "Boss@northwind.example" }',
        ),
    ),
    Case(
        "domain-condition-upper-case", "scoring.toml", replace("scoring.toml", '"gmail.com"', '"Gmail.com"')
    ),
    Case(
        "account-country-lower-case",
        "lifecycle.toml",
        replace(
            "lifecycle.toml",
            "entry = { account.customer = true }",
            'entry = { account.customer = true, account.country = "de" }',
        ),
    ),
    Case(
        "country-renamed-in-fields",
        "fields.toml",
        replace("fields.toml", "[fields.country]", "[fields.contry]"),
    ),
    Case(
        "condition-typo-not-taken-for-a-rename",
        "routing.toml",
        replace("routing.toml", 'when = { stage = "lead" }', 'when = { stage = "lead", contry = "DE" }'),
    ),
    Case(
        "single-use-field-typo-stays-where-used",
        "scoring.toml",
        replace("scoring.toml", "when = { lead_source = [", "when = { lead_sorce = ["),
    ),
    Case(
        "country-type-changed-to-number",
        "scoring.toml",
        replace("fields.toml", 'type = "country"', 'type = "number"'),
    ),
    Case(
        "employees-type-changed-to-text",
        "scoring.toml",
        replace("fields.toml", '[fields.employees]\ntype = "integer"', '[fields.employees]\ntype = "text"'),
    ),
    Case(
        "rep-removed-but-in-two-pools",
        "routing.toml",
        replace(
            "roster.toml",
            '    { email = "jack.miller@northwind.example", team = "sales", role = "ae", territory = "NA", weight = 2, daily_cap = 30 },\n',
            "",
        ),
    ),
    Case(
        "team-removed-from-roster",
        "roster.toml",
        replace(
            "roster.toml",
            '[teams.account_management]\ndescription = "Owns customer accounts and every contact in them."',
            "",
        ),
    ),
    # ----------------------------------------------------------------------------- control characters and unicode
    Case(
        "newline-in-rule-name",
        "routing.toml",
        replace(
            "routing.toml",
            'name = "SDR qualification"\nwhen = { stage = "marketing_qualified" }\npool = "sdr"',
            'name = "SDR\\nqualification"\nwhen = { stage = "marketing_qualified" }\npool = "sdrx"',
        ),
    ),
    Case(
        "bidi-override-in-team",
        "lifecycle.toml",
        replace("lifecycle.toml", 'team = "account_management"', 'team = "account\u202e_management"'),
    ),
    Case(
        "escape-sequence-in-pool",
        "routing.toml",
        replace("routing.toml", 'pool = "sdr"', 'pool = "\\u001b[31msdr"'),
    ),
    Case(
        "emoji-unknown-queue",
        "routing.toml",
        replace("routing.toml", 'queue = "Unassigned Leads"', 'queue = "Unassigned 🙈"'),
    ),
    # ----------------------------------------------------------------------------- syntax
    Case(
        "unterminated-string",
        "policy.toml",
        replace("policy.toml", 'customer_stage = "customer"', 'customer_stage = "customer'),
    ),
    Case(
        "duplicate-key",
        "policy.toml",
        replace("policy.toml", "respect_days = 30", "respect_days = 30\nrespect_days = 31"),
    ),
    Case("duplicate-table", "policy.toml", append("policy.toml", "[sla]\nhours = 1")),
    Case("missing-bracket", "fields.toml", replace("fields.toml", "[fields.email]", "[fields.email")),
    Case("missing-file", "policy.toml", lambda d: (d / "policy.toml").unlink()),
    Case("unknown-top-level-key", "roster.toml", append("roster.toml", "[holidays]\nchristmas = 2025-12-25")),
    # ----------------------------------------------------------------------------- meaning
    Case(
        "backward-from-unknown-stage",
        "lifecycle.toml",
        replace("lifecycle.toml", 'from = ["marketing_qualified", "sales_qualified"]', 'from = ["mql"]'),
    ),
    Case(
        "routing-pool-and-queue",
        "routing.toml",
        replace("routing.toml", 'pool = "sdr"', 'pool = "sdr"\nqueue = "Unassigned Leads"'),
    ),
    Case(
        "engagement-without-field-or-when",
        "scoring.toml",
        replace(
            "scoring.toml", 'when = { lead_source = ["ORGANIC_SEARCH", "DIRECT_TRAFFIC", "REFERRALS"] }\n', ""
        ),
    ),
    Case(
        "half-life-without-date-field",
        "scoring.toml",
        replace("scoring.toml", 'half_life_days = 90\ndate_field = "last_engagement"', "half_life_days = 90"),
    ),
    Case("threshold-above-max", "scoring.toml", replace("scoring.toml", "threshold = 60", "threshold = 101")),
    Case(
        "invalid-regex", "scoring.toml", replace("scoring.toml", 'contains = "student"', 'regex = "(student"')
    ),
    Case(
        "regex-nested-too-deeply",
        "scoring.toml",
        replace("scoring.toml", 'contains = "student"', 'regex = "' + "(" * 3000 + ")" * 3000 + '"'),
    ),
    Case(
        "regex-repeat-too-large",
        "scoring.toml",
        replace("scoring.toml", 'contains = "student"', 'regex = "a{99999999999}"'),
    ),
    Case(
        "datetime-without-offset",
        "routing.toml",
        replace(
            "routing.toml",
            'when = { stage = "lead" }',
            'when = { stage = "lead", last_activity = { gte = 2025-01-01T00:00:00 } }',
        ),
    ),
    Case(
        "unknown-time-zone",
        "roster.toml",
        replace(
            "roster.toml",
            REP_NORA,
            REP_NORA[:-2]
            + ', working_hours = { timezone = "Mars/Olympus", start = "09:00", end = "17:00" } }',
        ),
    ),
    Case(
        "away-reversed",
        "roster.toml",
        replace(
            "roster.toml", REP_NORA, REP_NORA[:-2] + ", away = [{ from = 2025-08-15, until = 2025-08-01 }] }"
        ),
    ),
    Case(
        "custom-field-unknown-object",
        "fields.toml",
        replace(
            "fields.toml",
            "# [[custom_fields]]",
            '[[custom_fields]]\nname = "Region__c"\nsystem = "salesforce"\nobject = "Leed"\n',
        ),
    ),
    Case(
        "identity-link-unknown",
        "fields.toml",
        replace(
            "fields.toml",
            'salesforce_link = "Syncd_HubSpot_Id__c"  # on a Salesforce Lead',
            'salesforce_link = "HubSpot_Id__c"  # on a Salesforce Lead',
        ),
    ),
    Case(
        "sla-without-activity-field",
        "policy.toml",
        replace("policy.toml", 'activity_field = "last_activity"', ""),
    ),
    Case(
        "customer-stage-without-condition",
        "policy.toml",
        replace(
            "policy.toml",
            'customer_when.any = [{ account_type = "Customer" }, { won_opportunities = { gt = 0 } }]',
            "",
        ),
    ),
    Case(
        "handoff-unknown-team",
        "policy.toml",
        replace(
            "policy.toml",
            'keep_previous_owner_for = ["account_management"]',
            'keep_previous_owner_for = ["account_managers"]',
        ),
    ),
    Case(
        "queue-declared-twice", "roster.toml", append("roster.toml", '[[queues]]\nname = "EMEA Lead Queue"')
    ),
    Case(
        "rep-declared-twice-other-case",
        "roster.toml",
        replace(
            "roster.toml",
            "    # customer success\n",
            '    # customer success\n    { email = "Zoe.Evans@Northwind.example", team = "customer_success" },\n',
        ),
    ),
    Case(
        "pool-declared-twice", "routing.toml", replace("routing.toml", 'name = "ae_apac"', 'name = "ae_emea"')
    ),
    Case(
        "routing-rule-declared-twice",
        "routing.toml",
        replace("routing.toml", 'name = "AE APAC"', 'name = "AE EMEA"'),
    ),
    Case(
        "fit-rule-declared-twice",
        "scoring.toml",
        replace("scoring.toml", 'name = "Student"', 'name = "Decision maker"'),
    ),
    Case(
        "account-rule-to-queue",
        "routing.toml",
        replace("routing.toml", 'pool = "ae_apac"', 'team = "sales"\nqueue = "Unassigned Leads"'),
    ),
    Case(
        "overflow-without-pool",
        "routing.toml",
        replace(
            "routing.toml",
            'when = { stage = "lead" }\npool = "marketing"',
            'when = { stage = "lead" }\nteam = "marketing"\nqueue = "Unassigned Leads"\noverflow_queue = "EMEA Lead Queue"',
        ),
    ),
    Case(
        "account-rule-uses-person-field",
        "routing.toml",
        replace(
            "routing.toml",
            'when = { country = ["JP", "AU", "IN", "SG"] }',
            'when = { country = ["JP", "AU", "IN", "SG"], title = "CEO" }',
        ),
    ),
    Case(
        "value-map-not-a-picklist-value",
        "fields.toml",
        replace(
            "fields.toml", 'marketing_qualified = "Open - Not Contacted"', 'marketing_qualified = "Open"'
        ),
    ),
    Case(
        "engine-field-not-engine",
        "fields.toml",
        replace(
            "fields.toml",
            '[fields.owner]\ntype = "owner"\nsource = "engine"',
            '[fields.owner]\ntype = "owner"',
        ),
    ),
    Case(
        "scoring-uses-score",
        "scoring.toml",
        replace("scoring.toml", "employees = { gte = 5000 }", "score = { gte = 50 }"),
    ),
    Case(
        "shadowed-rule",
        "routing.toml",
        replace(
            "routing.toml", "[fallback]", ROUTING_RULE.format(when='{ country = "US" }') + "\n[fallback]"
        ),
    ),
]


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    target = tmp_path / "m"
    shutil.copytree(SHIPPED, target)
    return target


def run_validate(directory: Path) -> tuple[int, list[str], BaseException | None]:
    result = CliRunner().invoke(cli, ["validate", str(directory)])
    exc = result.exception
    unexpected = exc if exc is not None and not isinstance(exc, SystemExit) else None
    return result.exit_code, result.output.splitlines(), unexpected


def test_the_corpus_has_at_least_a_hundred_cases_with_unique_ids() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 100
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_set_is_refused_cleanly(rules_dir: Path, case: Case) -> None:
    case.mutate(rules_dir)
    code, lines, unexpected = run_validate(rules_dir)
    assert unexpected is None, f"{type(unexpected).__name__}: {unexpected}"
    assert code == 2, lines
    assert not any("Traceback" in line for line in lines)
    problems = [line for line in lines if line.startswith(("error: ", "warning: "))]
    errors = [line for line in problems if line.startswith("error: ")]
    assert errors, lines
    assert errors[0].startswith(f"error: {rules_dir / case.file}"), errors[0][:300]
    assert len(problems) <= MAX_LINES, problems
    assert all(len(line) <= MAX_LINE_CHARS for line in lines), [len(line) for line in lines]
    # Every line is one line: nothing the input held broke it.
    assert all("\x1b" not in line and "\u202e" not in line for line in lines)


# ------------------------------------------------------------------------------------------------ in a process


@pytest.mark.parametrize(
    "case",
    [
        c
        for c in CASES
        if c.id
        in ("deep-arrays-3000", "eight-megabyte-value", "respect-days-1e10", "directory-instead-of-policy")
    ],
    ids=lambda c: c.id,
)
def test_a_real_process_prints_one_line_and_no_traceback(rules_dir: Path, case: Case) -> None:
    case.mutate(rules_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV") and k != "SYNCD_CONFIG"}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("syncd")), "validate", str(rules_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {rules_dir / case.file}: "), proc.stderr[:2000]
    assert len(proc.stderr) < 1000


def test_permission_denied_is_one_line(rules_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads any file, so the refusal the kernel gives other users is raised here for the one file.
    target = rules_dir / "policy.toml"
    real_open = Path.open

    def guarded(self: Path, *args: object, **kwargs: object) -> object:
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", guarded)
    code, lines, unexpected = run_validate(rules_dir)
    assert unexpected is None
    assert code == 2
    assert lines[0] == f"error: {target}: cannot read: Permission denied"


# ------------------------------------------------------------------------------------------------ value checks


def test_a_text_where_a_list_is_meant_suggests_the_list(rules_dir: Path) -> None:
    replace("routing.toml", '["JP", "AU", "IN", "SG"]', '"JP, AU, IN, SG"')(rules_dir)
    _, lines, _ = run_validate(rules_dir)
    assert lines[0] == (
        f'error: {rules_dir}/routing.toml: rule "AE APAC": when.country: "JP, AU, IN, SG" is one text; '
        'for any of several values write a list, e.g. ["JP", "AU", "IN", "SG"]'
    )


def test_a_lower_case_country_can_never_match(rules_dir: Path) -> None:
    replace("routing.toml", '["JP", "AU", "IN", "SG"]', '["jp", "AU"]')(rules_dir)
    _, lines, _ = run_validate(rules_dir)
    assert lines[0] == (
        f'error: {rules_dir}/routing.toml: rule "AE APAC": when.country: "jp" can never match: '
        'country is read upper-case (transform "upper" in fields.toml); write "JP"'
    )


def test_two_writers_of_one_system_field_are_both_named(rules_dir: Path) -> None:
    replace(
        "fields.toml",
        'salesforce.Lead = { field = "Company", transform = "strip", write = "if_blank" }',
        'salesforce.Lead = { field = "Title", write = "always" }',
    )(rules_dir)
    _, lines, _ = run_validate(rules_dir)
    assert lines[0] == (
        f'error: {rules_dir}/fields.toml: field "title": salesforce.Lead.write: Salesforce Lead.Title is '
        'written by field "company" too; one system field has one writer: set write = "never" on one of them'
    )


def test_a_renamed_team_is_one_line_counting_its_uses(rules_dir: Path) -> None:
    replace("roster.toml", "[teams.sales]", "[teams.sellers]")(rules_dir)
    _, lines, _ = run_validate(rules_dir)
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith(f'error: {rules_dir}/roster.toml: rep "sam.patel@northwind.example": team: ')
    assert errors[0].endswith('unknown team "sales" (did you mean "sellers"?) (and 14 more places)')


# ------------------------------------------------------------------------------------------------ still valid

VALID: list[Case] = [
    Case("byte-order-mark", "", prepend("policy.toml", "\ufeff".encode())),
    Case(
        "crlf-line-endings",
        "",
        lambda d: (d / "routing.toml").write_bytes((d / "routing.toml").read_bytes().replace(b"\n", b"\r\n")),
    ),
    Case("empty-policy-means-defaults", "", write("policy.toml", "")),
    Case(
        "unicode-names",
        "",
        replace("routing.toml", 'name = "Marketing nurture"', 'name = "Pflege 🌱 マーケティング"'),
    ),
    Case(
        "long-description",
        "",
        replace(
            "lifecycle.toml",
            'description = "Known, not yet ready for sales: marketing nurtures."',
            'description = "' + "d" * 9_000 + '"',
        ),
    ),
    Case("overrides-off", "", replace("policy.toml", "respect_days = 30", "respect_days = 0")),
    Case(
        "largest-durations",
        "",
        lambda d: (
            replace("policy.toml", "respect_days = 30", "respect_days = 3650")(d),
            replace("policy.toml", "hours = 72", "hours = 87600")(d),
            replace("lifecycle.toml", "hold_days = 30", "hold_days = 3650")(d),
        ),
    ),
    Case("tiny-sla-hours", "", replace("policy.toml", "hours = 72", "hours = 5e-324")),
    Case("shortest-half-life", "", replace("scoring.toml", "half_life_days = 90", "half_life_days = 0.001")),
    Case("negative-fit-points-at-bound", "", replace("scoring.toml", "points = -20", "points = -1_000_000")),
    Case(
        "test-domain-rep",
        "",
        replace(
            "roster.toml",
            "    # customer success\n",
            '    # customer success\n    { email = "trainee@northwind.test", team = "customer_success" },\n',
        ),
    ),
    Case(
        "ten-nested-nots",
        "",
        replace(
            "routing.toml",
            'when = { stage = "lead" }',
            'when = { stage = "lead", not = { not = { not = { not = { country = "US" } } } } }',
        ),
    ),
    Case(
        "same-country-in-two-territories-warns",
        "",
        replace("routing.toml", '["JP", "AU", "IN", "SG"]', '["JP", "AU", "IN", "SG", "DE"]'),
    ),
    Case(
        "unknown-iso-code-warns",
        "",
        replace("routing.toml", '["JP", "AU", "IN", "SG"]', '["JP", "AU", "IN", "SG", "UK"]'),
    ),
    Case(
        "lower-case-in-not-in-warns",
        "",
        replace(
            "routing.toml",
            'when = { stage = "lead" }',
            'when = { stage = "lead", country = { not_in = ["us"] } }',
        ),
    ),
]


@pytest.mark.parametrize("case", VALID, ids=[c.id for c in VALID])
def test_unusual_valid_set_is_accepted(rules_dir: Path, case: Case) -> None:
    case.mutate(rules_dir)
    code, lines, unexpected = run_validate(rules_dir)
    assert unexpected is None
    assert code == 0, lines
    assert not any(line.startswith("error: ") for line in lines)
    warned = any(line.startswith("warning: ") for line in lines)
    assert warned == case.id.endswith("-warns"), lines
    ruleset, _ = check_directory(rules_dir)
    assert ruleset is not None


def test_warnings_of_value_checks_name_both_rules(rules_dir: Path) -> None:
    replace("routing.toml", '["JP", "AU", "IN", "SG"]', '["JP", "AU", "IN", "SG", "DE"]')(rules_dir)
    _, lines, _ = run_validate(rules_dir)
    assert lines[0] == (
        f'warning: {rules_dir}/routing.toml: rule "AE APAC": when.country: "DE" also routed by rule "AE EMEA" '
        'of team "sales" above it, which wins'
    )


# ------------------------------------------------------------------------------------------------ --config


def test_validate_takes_config_and_checks_the_directory_it_names(tmp_path: Path, rules_dir: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[rules]\ndirectory = "m"\n')
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)], env={"SYNCD_CONFIG": None})
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{rules_dir}: valid")
    replace("policy.toml", "hours = 72", "hours = inf")(rules_dir)
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {rules_dir}/policy.toml: sla.hours: inf is not a usable number")


def test_validate_config_that_is_missing_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV") and k != "SYNCD_CONFIG"}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("syncd")), "validate", "--config", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: {tmp_path / 'nope.toml'}: no such file (copy config.example.toml to start)"
    )


def test_a_rule_for_persons_and_accounts_warns_once(rules_dir: Path) -> None:
    replace("routing.toml", '["JP", "AU", "IN", "SG"]', '["JP", "AU", "IN", "SG", "UK"]')(rules_dir)
    code, lines, _ = run_validate(rules_dir)
    assert code == 0
    assert [line for line in lines if line.startswith("warning: ")] == [
        f'warning: {rules_dir}/routing.toml: rule "AE APAC": when.country: "UK" is not an ISO 3166 country code'
        ' (the United Kingdom is "GB")'
    ]


def test_a_line_stays_short_when_every_part_of_it_is_long(rules_dir: Path) -> None:
    long_name = "n" * 5000
    replace("routing.toml", 'name = "Marketing nurture"', f'name = "{long_name}"')(rules_dir)
    replace("routing.toml", 'when = { stage = "lead" }', f'when = {{ {"f" * 5000} = "{"v" * 5000}" }}')(
        rules_dir
    )
    _, lines, _ = run_validate(rules_dir)
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1
    assert len(errors[0]) - len(str(rules_dir)) <= 300, errors[0]


@pytest.mark.parametrize(
    ("directory", "message"),
    [
        pytest.param("nope", "no such directory", id="missing"),
        pytest.param("config.toml", "not a directory", id="a-file"),
        pytest.param("d" * 5000, "no such directory", id="name-too-long"),
    ],
)
def test_validate_config_naming_a_bad_directory_is_one_line(
    tmp_path: Path, directory: str, message: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[rules]\ndirectory = "{directory}"\n')
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0].startswith("error: ") and lines[0].endswith(f": {message}")
    assert all(len(line) <= MAX_LINE_CHARS for line in lines)
