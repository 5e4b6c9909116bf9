"""`syncd validate` and the rules loader: the shipped set is valid; each broken file gives its one clear error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.core.rules import check_directory, load_ruleset
from syncd.core.rules.ruleset import FILES, OPTIONAL_FILES
from syncd.errors import MappingError
from syncd.validate_cli import validate as validate_command

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "mappings"


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped rules directory, free to break."""
    target = tmp_path / "mappings"
    shutil.copytree(SHIPPED, target)
    return target


def edit(directory: Path, name: str, old: str, new: str) -> None:
    path = directory / name
    text = path.read_text()
    if old not in text:
        raise AssertionError(f"{old!r} not in {name}: the test no longer matches the shipped file")
    path.write_text(text.replace(old, new, 1))


def errors_of(directory: Path) -> list[str]:
    _, problems = check_directory(directory)
    return [str(p) for p in problems.errors]


# ------------------------------------------------------------------------------------------------- shipped set


def test_every_shipped_file_loads_and_the_set_is_valid() -> None:
    ruleset, problems = check_directory(SHIPPED)
    assert [str(p) for p in problems.items] == []
    assert ruleset is not None
    assert sorted(p.name for p in SHIPPED.glob("*.toml")) == sorted([*FILES, *OPTIONAL_FILES])
    assert [s.name for s in ruleset.lifecycle.stages] == [
        "lead",
        "marketing_qualified",
        "sales_qualified",
        "opportunity",
        "customer",
    ]
    assert len(ruleset.roster.reps) == 24
    assert set(ruleset.roster.queues) == {"Unassigned Leads", "EMEA Lead Queue"}


def test_shipped_roster_matches_the_sandbox_org() -> None:
    roster = load_ruleset(SHIPPED).roster.reps
    inactive = {k for k, r in roster.items() if not r.active}
    assert inactive == {
        "grace.kim@northwind.example",
        "olivia.davis@northwind.example",
        "hugo.dubois@northwind.example",
    }
    assert [k for k, r in roster.items() if r.out_of_office] == ["ivy.chen@northwind.example"]
    assert all(k.endswith("@northwind.example") for k in roster)
    assert "integration@northwind.example" not in roster


def test_digest_changes_with_content_only(rules_dir: Path) -> None:
    first = load_ruleset(rules_dir).digest
    assert load_ruleset(rules_dir).digest == first
    edit(rules_dir, "policy.toml", "respect_days = 30", "respect_days = 31")
    assert load_ruleset(rules_dir).digest != first


def test_cli_validate_passes_on_shipped_set() -> None:
    result = CliRunner().invoke(validate_command, [str(SHIPPED)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert "error" not in result.output


def test_cli_validate_as_a_subprocess_defaults_to_mappings() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
    script = Path(sys.executable).with_name("syncd")
    proc = subprocess.run(
        [str(script), "validate"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("mappings: valid")


def test_cli_validate_reports_errors_with_exit_code_2_and_no_traceback(rules_dir: Path) -> None:
    edit(
        rules_dir,
        "routing.toml",
        'when = { country = ["US", "CA", "MX"] }',
        'when = { contry = ["US", "CA", "MX"] }',
    )
    edit(rules_dir, "roster.toml", "weight = 2", "weight = 0")
    result = CliRunner().invoke(validate_command, [str(rules_dir)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len([line for line in lines if line.startswith("error: ")]) == 2
    assert "Traceback" not in result.output
    assert lines[-1].endswith("2 errors")


def test_cli_validate_warnings_keep_exit_code_0(rules_dir: Path) -> None:
    (rules_dir / "routng.toml").write_text("x = 1\n")
    result = CliRunner().invoke(validate_command, [str(rules_dir)])
    assert result.exit_code == 0
    assert "warning: " in result.output
    assert 'not a syncd rules file; ignored (did you mean "routing.toml"?)' in result.output


def test_load_ruleset_raises_mapping_error_listing_every_problem(rules_dir: Path) -> None:
    edit(rules_dir, "lifecycle.toml", 'team = "marketing"', 'team = "marketeers"')
    edit(rules_dir, "scoring.toml", "threshold = 60", "threshold = 600")
    with pytest.raises(MappingError) as info:
        load_ruleset(rules_dir)
    assert len(info.value.problems) == 2
    assert str(info.value).startswith(f"2 problems in {rules_dir}; first: ")


def test_the_example_error_of_the_design_reads_exactly_so(rules_dir: Path) -> None:
    edit(
        rules_dir,
        "routing.toml",
        'name = "AE EMEA"\napplies_to = ["persons", "accounts"]\nwhen = { country',
        'name = "AE EMEA"\napplies_to = ["persons", "accounts"]\nwhen = { contry',
    )
    assert errors_of(rules_dir) == [
        f'{rules_dir}/routing.toml: rule "AE EMEA": when.contry: unknown field (did you mean "country"?)'
    ]


# ------------------------------------------------------------------------------------------------- malformed files

# (file, text in the shipped file, replacement, the one error expected: a substring of its line)
MALFORMED = [
    # fields.toml
    pytest.param(
        "fields.toml", "[identity.person]", "[identity.person\n", "invalid TOML", id="fields-toml-syntax"
    ),
    pytest.param(
        "fields.toml",
        "[identity.person]",
        "colour = 1\n[identity.person]",
        ": colour: unknown key",
        id="fields-unknown-top-level-key",
    ),
    pytest.param(
        "fields.toml",
        'type = "country"',
        'type = "nation"',
        'field "country": type: "nation" is not one of',
        id="fields-unknown-type",
    ),
    pytest.param(
        "fields.toml",
        'hubspot.contacts = { field = "country"',
        'hubspot.contacts = { field = "contry"',
        'field "country": hubspot.contacts.field: "contry" is not a field of HubSpot contacts (did you mean "country"?)',
        id="fields-unknown-system-field",
    ),
    pytest.param(
        "fields.toml",
        'hubspot.contacts = { field = "jobtitle"',
        'hubspot.contact = { field = "jobtitle"',
        'field "title": hubspot.contact: unknown HubSpot object (did you mean "contacts"?)',
        id="fields-unknown-object",
    ),
    pytest.param(
        "fields.toml",
        '{ field = "hubspotscore", write = "never" }',
        '{ field = "hubspotscore", write = "always" }',
        '"hubspotscore" is read-only in HubSpot',
        id="fields-write-read-only-property",
    ),
    pytest.param(
        "fields.toml",
        'hubspot.contacts = { field = "company", transform = "strip" }',
        'hubspot.contacts = { field = "company", transform = "trim" }',
        'hubspot.contacts.transform[0]: "trim" is not one of',
        id="fields-unknown-transform",
    ),
    pytest.param(
        "fields.toml",
        'hubspot.contacts = { field = "email", transform = "domain_from_email" }',
        'hubspot.contacts = { field = "email", transform = "domain_from_email", write = "if_blank" }',
        "transform domain_from_email cannot be written back",
        id="fields-lossy-transform-written",
    ),
    pytest.param(
        "fields.toml",
        'values = "lead_status"',
        'values = "lead_statuses"',
        'unknown value map "lead_statuses" (did you mean "lead_status"?)',
        id="fields-unknown-value-map",
    ),
    pytest.param(
        "fields.toml",
        ', customer = "customer" }\nread = { subscriber',
        " }\nread = { subscriber",
        'value map "hubspot_lifecycle": write: no value for stage "customer"',
        id="fields-value-map-misses-stage",
    ),
    pytest.param(
        "fields.toml",
        'marketing_qualified = "Open - Not Contacted"',
        'marketing_qualified = "Open"',
        '"Open" is not a value of Lead.Status',
        id="fields-value-map-not-a-picklist-value",
    ),
    pytest.param(
        "fields.toml",
        'read = { subscriber = "lead"',
        'read = { subscriber = "leed"',
        'read.subscriber: unknown stage "leed" (did you mean "lead"?)',
        id="fields-value-map-reads-unknown-stage",
    ),
    pytest.param(
        "fields.toml",
        '[fields.score]\ntype = "integer"\nsource = "engine"',
        '[fields.score]\ntype = "integer"',
        'field "score": source: must be "engine"',
        id="fields-engine-field-not-engine",
    ),
    pytest.param(
        "fields.toml",
        '[fields.email]\ntype = "email"\nprecedence = "salesforce"',
        '[fields.email]\ntype = "email"\nprecedence = "furthest"',
        '"furthest" applies only to fields of type "stage"',
        id="fields-furthest-on-non-stage",
    ),
    pytest.param(
        "fields.toml",
        'hubspot_link = "syncd_salesforce_id"     # on a HubSpot contact',
        'hubspot_link = "syncd_sf_id"     # on a HubSpot contact',
        'identity.person: hubspot_link: "syncd_sf_id" is not a field of HubSpot contacts',
        id="fields-identity-link-unknown",
    ),
    pytest.param(
        "fields.toml",
        'match = ["email"]',
        'match = ["e_mail"]',
        'identity.person: match: "e_mail" is not a logical field of persons (did you mean "email"?)',
        id="fields-identity-match-unknown",
    ),
    pytest.param(
        "fields.toml",
        '{ field = "Status", values = "lead_status" }',
        '{ field = "Status" }',
        '"Status" holds Salesforce\'s own values; name a value map',
        id="fields-stage-picklist-without-map",
    ),
    pytest.param(
        "fields.toml",
        "# [[custom_fields]]",
        '[[custom_fields]]\nname = "Region__c"\nsystem = "salesforce"\nobject = "Leed"\n',
        'custom field "Region__c": object: unknown Salesforce object "Leed" (did you mean "Lead"?)',
        id="fields-custom-field-unknown-object",
    ),
    # lifecycle.toml
    pytest.param(
        "lifecycle.toml",
        'team = "account_management"',
        'team = "account_mgmt"',
        'stage "customer": team: unknown team "account_mgmt" (did you mean "account_management"?)',
        id="lifecycle-unknown-team",
    ),
    pytest.param(
        "lifecycle.toml",
        "# Recycling:",
        '[[stages]]\nname = "lead"\nteam = "marketing"\n\n# Recycling:',
        'stage "lead": name: declared twice',
        id="lifecycle-duplicate-stage",
    ),
    pytest.param(
        "lifecycle.toml",
        "entry = { account.customer = true }",
        "entry = { account.custmer = true }",
        'stage "customer": entry.account.custmer: unknown field (did you mean "account.customer"?)',
        id="lifecycle-entry-unknown-field",
    ),
    pytest.param(
        "lifecycle.toml",
        'to = "lead"',
        'to = "leads"',
        'backward move "Recycle disqualified leads": to: unknown stage "leads" (did you mean "lead"?)',
        id="lifecycle-backward-unknown-stage",
    ),
    pytest.param(
        "lifecycle.toml",
        'from = ["marketing_qualified", "sales_qualified"]\nto = "lead"',
        'from = ["lead"]\nto = "sales_qualified"',
        '"sales_qualified" does not come before "lead"',
        id="lifecycle-backward-goes-forward",
    ),
    pytest.param(
        "lifecycle.toml",
        "hold_days = 30",
        'hold_days = 30\n\n[[backward]]\nname = "Loop"\nfrom = "lead"\nto = "sales_qualified"\nwhen = { score = { gt = 1 } }',
        'backward move "Loop": to: backward moves form a cycle: lead -> sales_qualified -> lead',
        id="lifecycle-backward-cycle",
    ),
    pytest.param(
        "lifecycle.toml",
        "hold_days = 30",
        "hold_days = -1",
        "hold_days: -1 is out of range",
        id="lifecycle-negative-hold",
    ),
    pytest.param(
        "lifecycle.toml",
        'when = { lead_status = "Closed - Not Converted" }',
        'when = { lead_status = { equals = "Closed - Not Converted" } }',
        "when.lead_status.equals: unknown operator",
        id="lifecycle-unknown-operator",
    ),
    # scoring.toml
    pytest.param(
        "scoring.toml",
        'qualifies = "marketing_qualified"',
        'qualifies = "mql"',
        'qualifies: unknown stage "mql"',
        id="scoring-unknown-stage",
    ),
    pytest.param(
        "scoring.toml",
        "threshold = 60",
        "threshold = 160",
        "threshold: 160 is above max (100)",
        id="scoring-threshold-above-max",
    ),
    pytest.param(
        "scoring.toml",
        'field = "conversions"',
        'field = "country"',
        'rule "Form conversions": field: "country" is a text field; expected a number field',
        id="scoring-count-field-not-a-number",
    ),
    pytest.param(
        "scoring.toml",
        'date_field = "last_engagement"',
        'date_field = "last_engagment"',
        'date_field: unknown field "last_engagment" (did you mean "last_engagement"?)',
        id="scoring-unknown-date-field",
    ),
    pytest.param(
        "scoring.toml",
        "points = -20",
        'points = "lots"',
        'rule "Student": points: must be a whole number, got "lots"',
        id="scoring-points-not-a-number",
    ),
    pytest.param(
        "scoring.toml",
        'when = { title = { contains = "student" } }',
        'when = { title = { regex = "(student" } }',
        'rule "Student": when.title.regex: invalid regular expression',
        id="scoring-bad-regex",
    ),
    pytest.param(
        "scoring.toml",
        "between = [200, 4999]",
        "between = [4999, 200]",
        "low 4999 is above high 200",
        id="scoring-between-reversed",
    ),
    pytest.param(
        "scoring.toml",
        'when = { country = ["US"',
        'when = { country = { gte = 5 }, industry = ["US"',
        "when.country.gte: gte needs a number or date field; country is text",
        id="scoring-gte-on-text",
    ),
    pytest.param(
        "scoring.toml",
        "when = { employees = { gte = 5000 } }",
        "when = { score = { gte = 50 } }",
        'rule "Enterprise company": when.score: unknown field here: scoring computes it',
        id="scoring-uses-score-itself",
    ),
    pytest.param(
        "scoring.toml",
        "when = { employees = { gte = 5000 } }",
        'when = { employees = { gte = "5000" } }',
        'employees is a number, got "5000"',
        id="scoring-string-for-number",
    ),
    # roster.toml
    pytest.param(
        "roster.toml",
        'team = "marketing", role = "marketing" }',
        'team = "marketting", role = "marketing" }',
        'rep "nora.lindqvist@northwind.example": team: unknown team "marketting" (did you mean "marketing"?)',
        id="roster-unknown-team",
    ),
    pytest.param(
        "roster.toml",
        "    # customer success\n",
        '    # customer success\n    { email = "Rachel.Green@northwind.example", team = "account_management" },\n',
        'rep "Rachel.Green@northwind.example": email: declared twice',
        id="roster-duplicate-rep",
    ),
    pytest.param(
        "roster.toml",
        '{ email = "owen.price@northwind.example"',
        '{ email = "owen.price"',
        'rep "owen.price": email: not an email address',
        id="roster-bad-email",
    ),
    pytest.param(
        "roster.toml", "weight = 2", "weight = 0", "weight: 0 is out of range", id="roster-zero-weight"
    ),
    pytest.param(
        "roster.toml",
        'team = "marketing", role = "marketing" }',
        'team = "marketing", role = "marketing", working_hours = { timezone = "Mars/Base", start = "09:00", end = "17:00" } }',
        'working_hours.timezone: unknown time zone "Mars/Base"',
        id="roster-unknown-timezone",
    ),
    pytest.param(
        "roster.toml",
        'team = "marketing", role = "marketing" }',
        'team = "marketing", role = "marketing", working_hours = { timezone = "UTC", start = "9am", end = "17:00" } }',
        '"9am" is not a time of day like "09:00"',
        id="roster-bad-time",
    ),
    pytest.param(
        "roster.toml",
        'team = "marketing", role = "marketing" }',
        'team = "marketing", role = "marketing", working_hours = { timezone = "UTC", start = "18:00", end = "09:00" } }',
        "working_hours.end: 09:00 is not after start 18:00",
        id="roster-hours-end-before-start",
    ),
    pytest.param(
        "roster.toml",
        'team = "marketing", role = "marketing" }',
        'team = "marketing", role = "marketing", away = [{ from = 2025-08-15, until = 2025-08-01 }] }',
        "away[0]: until 2025-08-01 is before from 2025-08-15",
        id="roster-away-reversed",
    ),
    # routing.toml
    pytest.param(
        "routing.toml",
        'members = ["jack.miller@northwind.example"',
        'members = ["jack.millr@northwind.example"',
        'pool "ae_na": members: "jack.millr@northwind.example" is not on the roster (did you mean "jack.miller@northwind.example"?)',
        id="routing-member-not-on-roster",
    ),
    pytest.param(
        "routing.toml",
        '"ivy.chen@northwind.example"]',
        '"ivy.chen@northwind.example", "rachel.green@northwind.example"]',
        '"rachel.green@northwind.example" is in team "account_management", not "sales"',
        id="routing-member-wrong-team",
    ),
    pytest.param(
        "routing.toml",
        'members = ["nora.lindqvist@northwind.example", "owen.price@northwind.example", ',
        "members = [",
        'pool "marketing": members: no active member',
        id="routing-pool-without-active-member",
    ),
    pytest.param(
        "routing.toml",
        'pool = "sdr"',
        'pool = "sdrs"',
        'rule "SDR qualification": pool: unknown pool "sdrs" (did you mean "sdr"?)',
        id="routing-unknown-pool",
    ),
    pytest.param(
        "routing.toml",
        'pool = "sdr"',
        'pool = "sdr"\nqueue = "Unassigned Leads"',
        "give exactly one of pool or queue",
        id="routing-pool-and-queue",
    ),
    pytest.param(
        "routing.toml",
        "[fallback]",
        '[[rules]]\nname = "AE USA"\nwhen = { country = "US" }\npool = "ae_na"\n\n[fallback]',
        'rule "AE USA": when: never used: rule "AE North America" above it matches everything this one does',
        id="routing-shadowed-rule",
    ),
    pytest.param(
        "routing.toml",
        'queue = "Unassigned Leads"',
        'queue = "Unassigned Lead"',
        'fallback: queue: unknown queue "Unassigned Lead" (did you mean "Unassigned Leads"?)',
        id="routing-unknown-queue",
    ),
    pytest.param(
        "routing.toml",
        'stages = ["sales_qualified"',
        'stages = ["sales_qualifed"',
        'account_match: stages: unknown stage "sales_qualifed"',
        id="routing-account-match-unknown-stage",
    ),
    pytest.param(
        "routing.toml",
        'when = { stage = "lead" }',
        'when = { stage = "leads" }',
        'rule "Marketing nurture": when.stage: unknown stage "leads" (did you mean "lead"?)',
        id="routing-condition-unknown-stage-value",
    ),
    pytest.param(
        "routing.toml",
        'pool = "ae_apac"',
        'team = "sales"\nqueue = "Unassigned Leads"',
        'rule "AE APAC": queue: accounts cannot wait in a queue',
        id="routing-account-rule-to-queue",
    ),
    pytest.param(
        "routing.toml",
        'pool = "ae_na"\nreassign = true',
        'pool = "ae_na"\nre_assign = true',
        'rule "AE North America": re_assign: unknown key (did you mean "reassign"?)',
        id="routing-unknown-rule-key",
    ),
    pytest.param(
        "routing.toml",
        'when = { stage = "marketing_qualified" }',
        'when = { stage = "marketing_qualified", any = [] }',
        "when.any: expected a non-empty list of condition tables",
        id="routing-empty-any",
    ),
    # policy.toml
    pytest.param(
        "policy.toml",
        "respect_days = 30",
        "respect_days = -3",
        "manual_override.respect_days: -3 is out of range",
        id="policy-negative-override-days",
    ),
    pytest.param(
        "policy.toml",
        'activity_field = "last_activity"',
        'activity_field = "country"',
        'sla: activity_field: "country" is a text field; expected a datetime field',
        id="policy-sla-field-not-a-date",
    ),
    pytest.param(
        "policy.toml",
        'create_salesforce_lead_for = ["sales"]',
        'create_salesforce_lead_for = ["sale"]',
        'handoffs: create_salesforce_lead_for: unknown team "sale" (did you mean "sales"?)',
        id="policy-unknown-team",
    ),
    pytest.param(
        "policy.toml",
        'customer_stage = "customer"',
        'customer_stage = "customers"',
        'accounts: customer_stage: unknown stage "customers" (did you mean "customer"?)',
        id="policy-unknown-stage",
    ),
    pytest.param(
        "policy.toml",
        "{ won_opportunities = { gt = 0 } }",
        "{ won_deals = { gt = 0 } }",
        "accounts: customer_when.any[1].won_deals: unknown field",
        id="policy-customer-when-unknown-field",
    ),
    pytest.param(
        "policy.toml",
        "[sla]",
        "[slas]",
        'slas: unknown key (did you mean "sla"?)',
        id="policy-unknown-section",
    ),
    # queue_in_hubspot and the fallback account pool: what keeps records away from reps who left
    pytest.param(
        "fields.toml",
        'queue_in_hubspot = "clear_inactive"',
        'queue_in_hubspot = "clear"',
        'field "owner": queue_in_hubspot: "clear" is not one of "clear_inactive" or "keep"',
        id="fields-queue-in-hubspot-unknown-value",
    ),
    pytest.param(
        "fields.toml",
        'type = "country"',
        'type = "country"\nqueue_in_hubspot = "keep"',
        'field "country": queue_in_hubspot: applies only to fields of type "owner"',
        id="fields-queue-in-hubspot-on-a-non-owner-field",
    ),
    pytest.param(
        "routing.toml",
        'account_pool = "account_executives"',
        'account_pool = "account_executive"',
        'fallback: account_pool: unknown pool "account_executive" (did you mean "account_executives"?)',
        id="routing-fallback-account-pool-unknown",
    ),
    pytest.param(
        "routing.toml",
        'account_pool = "account_executives"',
        'account_pools = "account_executives"',
        'fallback.account_pools: unknown key (did you mean "account_pool"?)',
        id="routing-fallback-account-pool-misspelt-key",
    ),
    pytest.param(
        "routing.toml",
        'members = ["jack.miller@northwind.example", "emma.johnson@northwind.example", '
        '"noah.brown@northwind.example", "lukas',
        'members = ["olivia.davis@northwind.example", "hugo.dubois@northwind.example"]\n# "lukas',
        'pool "account_executives": members: no active member',
        id="routing-fallback-account-pool-without-active-member",
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "expected"), MALFORMED)
def test_malformed_file_gives_one_clear_error(
    rules_dir: Path, name: str, old: str, new: str, expected: str
) -> None:
    edit(rules_dir, name, old, new)
    errors = errors_of(rules_dir)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{rules_dir}/{name}: "), errors[0]
    assert expected in errors[0], errors[0]
    assert "\n" not in errors[0]


def test_at_least_forty_malformed_cases() -> None:
    assert len(MALFORMED) >= 40


def test_missing_file_is_named(rules_dir: Path) -> None:
    (rules_dir / "policy.toml").unlink()
    errors = errors_of(rules_dir)
    assert len(errors) == 1
    assert errors[0].startswith(f"{rules_dir}/policy.toml: missing")


def test_not_a_directory(tmp_path: Path) -> None:
    assert errors_of(tmp_path / "nope") == [f"{tmp_path / 'nope'}: no such directory"]
    (tmp_path / "file").write_text("")
    assert errors_of(tmp_path / "file") == [f"{tmp_path / 'file'}: not a directory"]


# ------------------------------------------------------------------------------------------------- warnings

WARNINGS = [
    pytest.param(
        "routing.toml",
        '[fallback]\nqueue = "Unassigned Leads"',
        "[fallback]",
        "no fallback queue",
        id="no-fallback-queue",
    ),
    pytest.param(
        "roster.toml",
        'role = "sdr", daily_cap = 40 },',
        'role = "sdr", daily_cap = 40, out_of_office = true },',
        "every active member is out of office",
        id="pool-all-out-of-office",
    ),
    pytest.param(
        "scoring.toml",
        "engagement_cap = 60",
        "engagement_cap = 5",
        "60 can never be reached (at most 55 points)",
        id="unreachable-threshold",
    ),
    pytest.param(
        "fields.toml",
        'ignore = ["other"]',
        "",
        "values not mapped (read as blank",
        id="value-map-misses-read-value",
    ),
    pytest.param(
        "scoring.toml", "points = -20", "points = 0", "0 points: this rule changes nothing", id="zero-points"
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "expected"), WARNINGS)
def test_suspicious_but_legal_gives_a_warning_only(
    rules_dir: Path, name: str, old: str, new: str, expected: str
) -> None:
    if "out_of_office" in new:
        text = (rules_dir / name).read_text().replace(old, new)
        (rules_dir / name).write_text(text)
    else:
        edit(rules_dir, name, old, new)
    ruleset, problems = check_directory(rules_dir)
    assert problems.errors == []
    assert ruleset is not None
    assert any(expected in str(w) for w in problems.warnings), [str(w) for w in problems.warnings]
