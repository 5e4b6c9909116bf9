"""deploy/: the systemd unit, the Containerfile and their README agree with the daemon they run."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.daemon import DaemonSettings
from syncd.health import HealthServer, HealthState
from syncd.metrics import METRIC_NAMES, Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DEFAULTS = DaemonSettings(ledger_path=Path("syncd.db"))


def unit_directives() -> dict[str, list[str]]:
    """``Section.Key`` -> values, in order (systemd allows a key more than once)."""
    directives: dict[str, list[str]] = {}
    section = ""
    for raw in (DEPLOY / "syncd.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        directives.setdefault(f"{section}.{key}", []).append(value)
    return directives


def containerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0], line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_the_readme_documents_exactly_the_exported_metrics() -> None:
    readme = (DEPLOY / "README.md").read_text()
    documented = set(re.findall(r"`(syncd_[a-z_]+)`", readme))
    assert documented == set(METRIC_NAMES)


@pytest.mark.parametrize(
    ("directive", "expected"),
    [
        pytest.param(
            "Service.ExecStart", "/opt/syncd/bin/syncd run --config /etc/syncd/config.toml", id="start"
        ),
        pytest.param("Service.ExecReload", "/bin/kill -HUP $MAINPID", id="reload-is-sighup"),
        pytest.param("Service.KillSignal", "SIGTERM", id="stop-is-sigterm"),
        pytest.param("Service.Restart", "on-failure", id="restart"),
        pytest.param("Service.EnvironmentFile", "/etc/syncd/syncd.env", id="secrets-env-file"),
        pytest.param("Service.StateDirectory", "syncd", id="ledger-directory"),
        pytest.param("Service.NoNewPrivileges", "yes", id="no-new-privileges"),
        pytest.param("Service.ProtectSystem", "strict", id="read-only-system"),
        pytest.param("Service.DynamicUser", "yes", id="unprivileged"),
        pytest.param("Service.CapabilityBoundingSet", "", id="no-capabilities"),
    ],
)
def test_the_unit_sets(directive: str, expected: str) -> None:
    assert unit_directives()[directive] == [expected]


def test_the_unit_waits_longer_than_the_daemon_takes_to_stop() -> None:
    timeout = unit_directives()["Service.TimeoutStopSec"][0]
    assert timeout.endswith("s")
    assert float(timeout[:-1]) > DEFAULTS.shutdown_timeout_seconds


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart exists and that the env file is readable: point both at this machine.
    unit = (DEPLOY / "syncd.service").read_text()
    unit = unit.replace("/opt/syncd/bin/syncd", shutil.which("true") or "/bin/true")
    unit = unit.replace("EnvironmentFile=/etc/syncd/syncd.env", "EnvironmentFile=-/etc/syncd/syncd.env")
    copy = tmp_path / "syncd.service"
    copy.write_text(unit)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_the_containerfile_builds_a_non_root_image_with_a_ledger_volume() -> None:
    instructions = containerfile_instructions()
    defaults = dict(arg.split("=", 1) for op, arg in instructions if op == "ARG" and "=" in arg)
    froms = [
        re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], arg)
        for op, arg in instructions
        if op == "FROM"
    ]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    # syncd is built from the sources the build copies (so a layer cache sees every change to them).
    assert ("COPY", "syncd /usr/src/syncd/syncd") in instructions
    assert "pip install --quiet /usr/src/syncd" in runs
    assert ("COPY", "mappings /etc/syncd/mappings") in instructions
    assert ("USER", "syncd") in instructions
    assert ("VOLUME", '["/var/lib/syncd"]') in instructions
    assert ("EXPOSE", str(DEFAULTS.health_port)) in instructions
    assert ("ENTRYPOINT", '["syncd"]') in instructions
    assert ("CMD", '["run", "--config", "/etc/syncd/config.toml"]') in instructions
    env = " ".join(arg for op, arg in instructions if op == "ENV")
    assert f"SYNCD_HEALTH_URL=http://127.0.0.1:{DEFAULTS.health_port}/healthz" in env


def excluded_from_build_context(path: str) -> bool:
    """Docker's .dockerignore: the last pattern matching the path, or a directory above it, decides."""
    excluded = False
    for raw in (DEPLOY.parent / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            len(prefix.split("/")) == len(pattern.split("/")) and fnmatch.fnmatchcase(prefix, pattern)
            for prefix in prefixes
        ) or (pattern.startswith("**/") and any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        pytest.param("build/wheelhouse/syncd_dep-1.0-py3-none-any.whl", False, id="make-image-wheelhouse"),
        pytest.param("syncd/cli.py", False, id="sources"),
        pytest.param("mappings/routing.toml", False, id="mappings"),
        pytest.param("build/lib/syncd/cli.py", True, id="other-build-output"),
        pytest.param(".venv/bin/python", True, id="venv"),
        pytest.param("syncd/__pycache__/cli.cpython-311.pyc", True, id="bytecode"),
    ],
)
def test_the_build_context_holds_what_the_containerfile_reads(path: str, excluded: bool) -> None:
    makefile = (DEPLOY.parent / "Makefile").read_text()
    assert re.search(r"^WHEELHOUSE := build/wheelhouse$", makefile, re.MULTILINE)
    assert excluded_from_build_context(path) is excluded


def healthcheck_command() -> list[str]:
    arg = next(arg for op, arg in containerfile_instructions() if op == "HEALTHCHECK")
    command: list[str] = json.loads(arg.split(" CMD ", 1)[1])
    return command


@pytest.fixture
def health_server() -> Iterator[tuple[HealthServer, list[bool]]]:
    ledger_ok = [True]
    server = HealthServer(
        HealthState(max_age_seconds=60, ledger_check=lambda: ledger_ok[0]), Metrics(), port=0
    )
    server.start()
    yield server, ledger_ok
    server.stop()


@pytest.mark.parametrize(
    ("healthy", "passes"), [pytest.param(True, True, id="200"), pytest.param(False, False, id="503")]
)
def test_the_image_healthcheck_follows_healthz(
    health_server: tuple[HealthServer, list[bool]], healthy: bool, passes: bool
) -> None:
    server, ledger_ok = health_server
    ledger_ok[0] = healthy
    command = healthcheck_command()
    assert command[0] == "python"
    env = {**os.environ, "SYNCD_HEALTH_URL": server.url + "/healthz"}
    result = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=60)
    assert (result.returncode == 0) is passes
