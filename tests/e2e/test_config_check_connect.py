"""``syncd config check --connect`` against the sandbox: logs in to both systems, reads each mapped object,
and reports each mapped field that is missing or not writable there on one line, exit 2."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Org

from syncd.cli import cli
from syncd.core.systems import FieldSpec, ObjectSpec, OrgSchema
from syncd.service import check_config


def run_check(config: Path) -> tuple[int, list[str], list[str]]:
    result = CliRunner().invoke(cli, ["config", "check", "--connect", "--config", str(config)])
    return result.exit_code, result.stdout.splitlines(), result.stderr.splitlines()


def with_fields(spec: ObjectSpec, change: dict[str, FieldSpec | None]) -> ObjectSpec:
    fields = tuple(
        change[f.name] for f in spec.fields if f.name in change and change[f.name] is not None
    ) + tuple(f for f in spec.fields if f.name not in change)
    return dataclasses.replace(spec, fields=fields)  # type: ignore[arg-type]


def test_a_sandbox_org_that_fits_the_mapping_passes(org: Org) -> None:
    code, out, err = run_check(org.config_path)
    assert code == 0, err
    assert out[0] == f"{org.config_path}: ok"
    assert f"  salesforce: logged in to 127.0.0.1:{org.sandbox.sf_server.port}" in out
    assert "  hubspot: the private app's token is accepted" in out
    for obj in ("Lead", "Contact", "Account"):
        assert any(line.startswith(f"  salesforce {obj}: readable (a record read)") for line in out), out
    for obj in ("contacts", "companies"):
        assert any(line.startswith(f"  hubspot {obj}: readable (a record read)") for line in out), out
    tokens = [
        *org.sandbox.info()["salesforce"]["tokens"].values(),
        *org.sandbox.info()["hubspot"]["tokens"].values(),
    ]
    assert not [t for t in tokens if any(t in line for line in out + err)]


def test_each_missing_or_read_only_field_is_one_line_and_exit_2(make_org: Callable[..., Org]) -> None:
    base = OrgSchema()
    sf, hs = dict(base.salesforce), dict(base.hubspot)
    score = sf["Lead"].field("Syncd_Score__c")
    assert score is not None
    sf["Lead"] = with_fields(sf["Lead"], {"Syncd_Score__c": dataclasses.replace(score, readonly=True)})
    sf["Account"] = with_fields(sf["Account"], {"Syncd_Stage__c": None})
    hs_score = hs["contacts"].field("syncd_score")
    assert hs_score is not None
    hs["contacts"] = with_fields(
        hs["contacts"], {"syncd_score": dataclasses.replace(hs_score, readonly=True)}
    )
    org = make_org(schema=OrgSchema(salesforce=sf, hubspot=hs))
    code, _, err = run_check(org.config_path)
    assert code == 2
    errors = [line for line in err if line.startswith("error: ")]
    assert errors == [
        "error: salesforce Account.Syncd_Stage__c (fields.stage): no such field, or the integration user cannot "
        "see it (check field-level security)",
        "error: salesforce Lead.Syncd_Score__c (fields.score): not updateable: syncd writes it; give the "
        "integration user edit access to it",
        "error: salesforce Lead.Syncd_Score__c (fields.score): not createable: syncd sets it when it creates a "
        "Lead; give the integration user edit access to it",
        "error: hubspot contacts.syncd_score (fields.score): read-only in HubSpot: syncd writes it; map another "
        "property",
    ]
    assert err[-1].endswith("syncd run would refuse to start")


def test_a_revoked_token_is_one_line_naming_the_system(org: Org) -> None:
    org.sandbox.control("hubspot", "POST", "tokens/revoke", {"user": "integration"})
    code, _, err = run_check(org.config_path)
    assert code == 2
    assert [line for line in err if line.startswith("error: ")] == [
        "error: hubspot: cannot log in: HubSpot rejected the access token: set a valid private-app token in the "
        "variable hubspot.token_env names"
    ]


def test_an_unreachable_system_names_host_and_port(org: Org) -> None:
    port = org.sandbox.sf_server.port
    org.sandbox.sf_server.stop()
    report = check_config(org.config_path, connect=True)
    assert report.errors == [
        f"salesforce: cannot log in: Salesforce: cannot reach 127.0.0.1:{port}: connection refused"
    ]


@pytest.mark.parametrize("connect", [False, True])
def test_without_connect_no_call_is_made(org: Org, connect: bool) -> None:
    org.sandbox.control("hubspot", "POST", "counts/reset")
    check_config(org.config_path, connect=connect)
    calls = org.sandbox.control("hubspot", "GET", "counts")["total"]
    assert (calls > 0) is connect
