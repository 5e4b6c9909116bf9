"""teams.toml is validated like every other rules file: one clear line per mistake, naming file, item, key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from engine_helpers import SHIPPED

from syncd.core.rules.ruleset import check_directory


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(SHIPPED, target)
    return target


def edit(directory: Path, old: str, new: str) -> None:
    path = directory / "teams.toml"
    text = path.read_text()
    if old not in text:
        raise AssertionError(f"{old!r} not in teams.toml: the test no longer matches the shipped file")
    path.write_text(text.replace(old, new, 1))


MALFORMED = [
    pytest.param(
        'pool = "customer_success"\naccount',
        'pool = "customer_sucess"\naccount',
        'role "customer_success": pool: unknown pool "customer_sucess" (did you mean "customer_success"?)',
        id="unknown-pool",
    ),
    pytest.param(
        'team = "customer_success"\nfill',
        'team = "sales"\nfill',
        'role "customer_success": pool: pool "customer_success" belongs to team "customer_success"',
        id="pool-of-another-team",
    ),
    pytest.param(
        "keep_days = 180\n",
        "",
        'role "account_executive": keep_days: needed when fill has "previous_owner"',
        id="previous-owner-without-keep-days",
    ),
    pytest.param(
        'fill = ["pool"]\npool = "sdr"',
        'fill = ["round_robin"]\npool = "sdr"',
        'role "sales_development": fill[0]:',
        id="unknown-fill",
    ),
    pytest.param(
        'account_access = "Edit"\nopportunity_access = "Edit"\ncase_access = "Read"',
        'account_access = "All"\nopportunity_access = "Edit"\ncase_access = "Read"',
        'role "account_executive": account_access: "All" is not one of',
        id="owner-only-access",
    ),
    pytest.param(
        'roles = ["customer_success"]',
        'roles = ["csm"]',
        'requirement "Key customers have customer success": roles: unknown role "csm"',
        id="unknown-role",
    ),
    pytest.param(
        'tiers = ["strategic"]\nstages = ["customer"]',
        'tiers = ["strategc"]\nstages = ["customer"]',
        'unknown tier "strategc" (did you mean "strategic"?)',
        id="unknown-tier",
    ),
    pytest.param(
        'stages = ["prospect"]\nroles = ["account_executive"]',
        'stages = ["lead"]\nroles = ["account_executive"]',
        'requirement "Every prospect has an account executive": stages[0]:',
        id="unknown-stage",
    ),
    pytest.param(
        'prospect = ["account_executive"]',
        'prospect = ["ae"]',
        'successor: prospect: unknown role "ae"',
        id="unknown-successor",
    ),
    pytest.param(
        'label = "Mid-Market"\nwhen = { employees = { gte = 200 } }',
        'label = "Mid-Market"\nwhen = { employes = { gte = 200 } }',
        'tier "mid_market": when.employes: unknown field (did you mean "employees"?)',
        id="tier-unknown-field",
    ),
    pytest.param(
        'name = "smb"\nlabel = "SMB"',
        'name = "smb"\nlabel = "SMB"\nwhen = { employees = { gte = 300 } }',
        'tier "smb": when: never used: tier "mid_market" above it matches first',
        id="shadowed-tier",
    ),
    pytest.param(
        'label = "Sales Development Rep"',
        'label = "Account Manager"',
        'role "sales_development": label: role "account_manager" has this label too',
        id="duplicate-label",
    ),
    pytest.param(
        'hubspot_property = "syncd_sdr"',
        'hubspot_property = "Syncd SDR"',
        'role "sales_development": hubspot_property: a HubSpot property name',
        id="bad-property-name",
    ),
    pytest.param(
        '"isaac.moreau@northwind.example"]',
        '"isaac.moreau@northwind.example", "jack.miller@northwind.example"]',
        'pool "customer_success": members: "jack.miller@northwind.example" is in team "sales"',
        id="pool-member-of-another-team",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), MALFORMED)
def test_a_mistake_in_teams_toml_is_one_clear_line(
    rules_dir: Path, old: str, new: str, expected: str
) -> None:
    edit(rules_dir, old, new)
    rules, problems = check_directory(rules_dir)
    errors = [str(p) for p in problems.errors]
    assert rules is None and len(errors) == 1, errors
    assert errors[0].startswith(f"{rules_dir}/teams.toml: ") and expected in errors[0], errors[0]


def test_without_teams_toml_the_rules_load_and_manage_no_team(rules_dir: Path) -> None:
    (rules_dir / "teams.toml").unlink()
    rules, problems = check_directory(rules_dir)
    assert rules is not None and rules.teams is None and problems.items == []


def test_teams_toml_is_part_of_the_rules_digest(rules_dir: Path) -> None:
    before, _ = check_directory(rules_dir)
    edit(rules_dir, "keep_days = 180", "keep_days = 90")
    after, _ = check_directory(rules_dir)
    assert before is not None and after is not None and before.digest != after.digest


def test_a_label_salesforce_may_not_have_is_a_warning(rules_dir: Path) -> None:
    edit(rules_dir, 'label = "Sales Development Rep"', 'label = "Business Development Rep"')
    rules, problems = check_directory(rules_dir)
    assert rules is not None and [str(p) for p in problems.warnings] == [
        f'{rules_dir}/teams.toml: role "sales_development": label: "Business Development Rep" is no Team Role '
        "syncd knows: add it in Salesforce Setup, Account Teams, Team Roles"
    ]
