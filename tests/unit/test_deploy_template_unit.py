"""deploy/syncd@.service: one instance per portal/org pair, each with its own config, secrets and ledger, and
the same hardening as deploy/syncd.service; systemd accepts it and rates its exposure as the single unit's."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# The directives that name the instance's own files; every other one is the single unit's, unchanged.
PER_INSTANCE = {
    "Unit.Description": "syncd (%i): keeps customer ownership right across HubSpot and Salesforce",
    "Service.ExecStart": "/opt/syncd/bin/syncd run --config /etc/syncd/%i/config.toml",
    "Service.EnvironmentFile": "/etc/syncd/%i/syncd.env",
    "Service.StateDirectory": "syncd/%i",
    "Service.ConfigurationDirectory": "syncd/%i",
    "Service.WorkingDirectory": "/var/lib/syncd/%i",
}
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)


def directives(name: str) -> dict[str, list[str]]:
    """``Section.Key`` -> values, in order (systemd allows a key more than once)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in (DEPLOY / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def test_each_instance_has_its_own_config_secrets_and_ledger_directory() -> None:
    template = directives("syncd@.service")
    for key, value in PER_INSTANCE.items():
        assert template[key] == [value], key


def test_the_template_keeps_every_other_directive_of_the_single_unit() -> None:
    single, template = directives("syncd.service"), directives("syncd@.service")
    assert set(single) == set(template)
    assert {k: v for k, v in template.items() if k not in PER_INSTANCE} == {
        k: v for k, v in single.items() if k not in PER_INSTANCE
    }


def instance_copy(tmp_path: Path, instance: str) -> Path:
    """The template installed as an instance, with ExecStart and the env file pointed at this machine."""
    unit = (DEPLOY / "syncd@.service").read_text()
    unit = unit.replace("/opt/syncd/bin/syncd", shutil.which("true") or "/bin/true")
    unit = unit.replace("EnvironmentFile=/etc/", "EnvironmentFile=-/etc/")
    copy = tmp_path / f"syncd@{instance}.service"
    copy.write_text(unit)
    return copy


@needs_systemd_analyze
def test_systemd_accepts_an_instance(tmp_path: Path) -> None:
    unit = instance_copy(tmp_path, "northwind")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def exposure(unit: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:]
    return float(match.group(1))


@needs_systemd_analyze
def test_an_instance_is_hardened_as_the_single_unit(tmp_path: Path) -> None:
    single = (
        (DEPLOY / "syncd.service").read_text().replace("/opt/syncd/bin/syncd", shutil.which("true") or "")
    )
    (tmp_path / "syncd.service").write_text(single.replace("EnvironmentFile=/etc/", "EnvironmentFile=-/etc/"))
    level = exposure(instance_copy(tmp_path, "northwind"))
    assert level == exposure(tmp_path / "syncd.service")
    assert level <= 2.0  # systemd's "OK" band
