"""syncd as a service: ``syncd run`` (the daemon) and ``syncd config check`` (is this config ready to run?).

A thin click layer: ``run`` loads the config, sets up logging with every secret it resolved, and hands
``syncd.daemon.run_daemon`` the real cycle (``SyncCycle.from_config``) and rules loader (``load_ruleset``).
``config check`` runs the checks a start would, without starting: the config and its secrets, the
mapping and rules files, and the ledger's place on disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from syncd.config import Config, load_config
from syncd.errors import ConfigError
from syncd.logs import LogFormat, setup_logging

__all__ = ["CheckReport", "check_config", "config", "rules_loader", "run", "secret_values"]

log = logging.getLogger(__name__)

_LEVELS = ("debug", "info", "warning", "error")
# load_config names the first unset variable; `config check` wants them all (see check_config).
_UNSET_VARIABLE = re.compile(r"environment variable (\S+) is not set$")
_PLACEHOLDER = "unset-placeholder-for-config-check"


def config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path("config.toml"),
        envvar="SYNCD_CONFIG",
        show_default=True,
        help="The configuration file (also $SYNCD_CONFIG).",
    )(fn)


# ------------------------------------------------------------------------------------------------ secrets


def sandbox_tokens(info_file: Path) -> Iterator[str]:
    """Every token a sandbox info file holds (the integration user's and each rep's, in both systems)."""
    try:
        data = json.loads(info_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(data, dict):
        return
    for system in ("salesforce", "hubspot"):
        section = data.get(system)
        tokens = section.get("tokens") if isinstance(section, dict) else None
        if isinstance(tokens, dict):
            yield from (t for t in tokens.values() if isinstance(t, str))


def secret_values(config: Config) -> list[str]:
    """Every secret value ``config`` gives syncd access to, for the log redactor.

    The resolved secrets, a JWT private key file's content, and, with ``[sandbox]``, every token of the
    sandbox (the config uses only the integration user's, but all of them sit in the same file).
    """
    values = [s.get_secret_value() for s in config.secrets.values()]
    key_file = config.salesforce.private_key_file
    if key_file is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            values.append(key_file.read_text(encoding="utf-8").strip())
    if config.sandbox.info_file is not None:
        values.extend(sandbox_tokens(config.sandbox.info_file))
    return [v for v in values if v]


# ------------------------------------------------------------------------------------------------ run


def rules_loader(directory: Path) -> Callable[[], Any]:
    """The daemon's loader: the rule set of ``directory`` (MappingError when invalid), warnings logged."""

    def load() -> Any:
        from syncd.core.rules import load_ruleset

        rules = load_ruleset(directory)
        for warning in rules.warnings:
            log.warning("rules: %s", warning, extra={"event": "rules_warning"})
        return rules

    return load


def cycle_factory(config: Config) -> Callable[[], Any]:
    """The daemon's runner factory: the real sync cycle over the config's ledger and systems."""

    def make() -> Any:
        from syncd.cycle import SyncCycle

        return SyncCycle.from_config(config)

    return make


@click.command()
@config_option
@click.option(
    "--log-level",
    type=click.Choice(_LEVELS, case_sensitive=False),
    default="info",
    envvar="SYNCD_LOG_LEVEL",
    show_default=True,
    help="syncd's log level; debug adds one line per decision (also $SYNCD_LOG_LEVEL).",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "text"]),
    default="auto",
    show_default=True,
    help="auto writes JSON lines unless stderr is a terminal.",
)
@click.pass_context
def run(ctx: click.Context, config_path: Path, log_level: str, log_format: LogFormat) -> None:
    """Run the daemon: a sync cycle every [daemon] interval_seconds until SIGTERM or SIGINT.

    SIGHUP, or an edit of the rules files, reloads them (an invalid set is refused and the running one
    stays live). Serves /healthz, /metrics and the status page (/) on [daemon] health_host:health_port.
    Exit code 0 on a clean stop, 1 when a cycle did not finish within the shutdown timeout, 2 when it
    refuses to start.
    """
    from syncd.daemon import run_daemon
    from syncd.memory import return_large_buffers
    from syncd.notify import Notifier
    from syncd.reports.web import links_from_config

    return_large_buffers()
    cfg = load_config(config_path)
    setup_logging(log_level.upper(), fmt=log_format, secrets=secret_values(cfg))
    settings = cfg.daemon_settings()
    # After setup_logging: resolving the webhooks registers their URLs and secrets with the redactor.
    notifier = Notifier.from_config(cfg.notify) if cfg.notify.webhook else None
    ctx.exit(
        run_daemon(
            settings,
            cycle_factory(cfg),
            rules_loader(cfg.rules.directory),
            status_links=links_from_config(cfg),
            notifier=notifier,
        )
    )


# ------------------------------------------------------------------------------------------------ config check


@dataclass
class CheckReport:
    """What ``config check`` found: problems (each one line), warnings, and what is fine, in words."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _load_collecting_unset(path: Path, environ: Mapping[str, str], report: CheckReport) -> Config | None:
    """Load the config, reporting every unset secret variable (load_config stops at the first)."""
    env = dict(environ)
    for _ in range(32):
        try:
            return load_config(path, environ=env)
        except ConfigError as exc:
            match = _UNSET_VARIABLE.search(str(exc))
            if match is None or match.group(1) in env:
                report.errors.append(str(exc))
                return None
            report.errors.append(str(exc))
            env[match.group(1)] = _PLACEHOLDER
    return None


def _check_ledger(path: Path, report: CheckReport, where: str) -> None:
    from syncd.health import ledger_writable
    from syncd.ledger import SCHEMA_VERSION
    from syncd.ledger.schema import APPLICATION_ID
    from syncd.lock import holder_pid

    if path.is_dir():
        report.errors.append(
            f"{where}ledger.path: {path} is a directory; name a file in it, e.g. {path / 'syncd.db'}"
        )
        return
    directory = path.parent
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not directory.exists():
        if existing.is_dir() and os.access(existing, os.W_OK):
            report.notes.append(f"ledger: {path} (created on the first start, with its directory)")
        else:
            report.errors.append(f"{where}ledger.path: cannot create {directory}: {existing} is not writable")
        return
    if not ledger_writable(path)():
        what = path if path.exists() else directory
        report.errors.append(f"{where}ledger.path: {what} is not writable by this user")
        return
    if not path.exists():
        report.notes.append(f"ledger: {path} (created on the first start)")
        return
    try:
        uri = "file:" + str(path.resolve()).replace("?", "%3F").replace("#", "%23") + "?mode=ro"
        with sqlite3.connect(uri, uri=True, timeout=5) as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        conn.close()
    except sqlite3.Error as exc:
        report.errors.append(f"{where}ledger.path: {path} is not a syncd ledger ({exc})")
        return
    if version and app_id != APPLICATION_ID:
        report.errors.append(f"{where}ledger.path: {path} is an SQLite file but not a syncd ledger")
        return
    if version > SCHEMA_VERSION:
        report.errors.append(
            f"{where}ledger.path: {path} has schema version {version}, newer than this syncd understands "
            f"({SCHEMA_VERSION}); upgrade syncd"
        )
        return
    upgrade = f"; upgraded to {SCHEMA_VERSION} on the next start" if version < SCHEMA_VERSION else ""
    holder = holder_pid(path)
    in_use = f"; in use by syncd pid {holder}" if holder is not None else ""
    report.notes.append(f"ledger: {path} (writable, schema version {version}{upgrade}{in_use})")


def _describe_systems(cfg: Config, report: CheckReport) -> None:
    if cfg.sandbox_info is not None:
        report.notes.append(
            f"systems: the sandbox of {cfg.sandbox.info_file} (Salesforce {cfg.sandbox_info.instance_url}, "
            f"HubSpot {cfg.sandbox_info.hubspot_host})"
        )
        return
    sf, hs = cfg.salesforce, cfg.hubspot
    names = sorted(n for n in cfg.secrets if n.startswith("salesforce."))
    variables = [getattr(sf, f"{n.removeprefix('salesforce.')}_env") for n in names]
    where = sf.instance_url or sf.login_url
    who = f" as {sf.username}" if sf.username else ""
    report.notes.append(f"salesforce: {sf.auth} auth on {where}{who}; secrets from {', '.join(variables)}")
    report.notes.append(f"hubspot: {hs.host}; token from {hs.token_env}")


def check_config(
    path: Path, *, environ: Mapping[str, str] | None = None, connect: bool = False
) -> CheckReport:
    """Check a config file and what it names, as ``syncd run`` would need them; never raises SyncdError.

    ``connect`` also logs in to both systems and checks the mapped objects and fields there (``check_connect``).
    """
    from syncd.core.rules import check_directory

    report = CheckReport()
    rules = None
    cfg = _load_collecting_unset(path, os.environ if environ is None else environ, report)
    if cfg is None:
        return report
    _describe_systems(cfg, report)
    directory = cfg.rules.directory
    if not directory.is_dir():
        report.errors.append(f"{path}: rules.directory: no such directory: {directory}")
    else:
        rules, problems = check_directory(directory)
        report.errors.extend(str(p) for p in problems.errors)
        report.warnings.extend(str(p) for p in problems.warnings)
        if rules is not None:
            files = len(list(directory.glob("*.toml")))
            report.notes.append(f"rules: {directory} ({files} files, {len(problems.warnings)} warnings)")
    _check_ledger(cfg.ledger.path, report, f"{path}: ")
    try:
        settings = cfg.daemon_settings()
    except ConfigError as exc:
        report.errors.append(f"{path}: {exc}")
    else:
        health = (
            f"/healthz and /metrics on {settings.health_host}:{settings.health_port}"
            if settings.health_port is not None
            else "no health endpoint"
        )
        report.notes.append(
            f"daemon: a cycle every {settings.interval_seconds:g}s, roster every "
            f"{settings.roster_interval_seconds:g}s, {health}"
        )
    _check_notify(cfg, report, environ)
    if connect:
        check_connect(cfg, rules, report)
    return report


def _check_notify(cfg: Config, report: CheckReport, environ: Mapping[str, str] | None) -> None:
    from syncd.notify import resolve_webhooks

    if not cfg.notify.webhook:
        return
    try:
        hooks = resolve_webhooks(cfg.notify, environ)
    except ConfigError as exc:
        report.errors.append(f"{cfg.path}: {exc}")
        return
    for hook in hooks:
        report.notes.append(
            f"notify: {hook.format} webhook to {hook.origin} for {', '.join(sorted(hook.events))}"
        )


def check_connect(cfg: Config, rules: Any, report: CheckReport) -> None:
    """``--connect``: log in to both systems, read a record of each mapped object, and check every mapped
    field exists and, where syncd writes it, is writable (``syncd.preflight``). Skipped while the rules are
    invalid: their fields are what it checks."""
    from syncd.preflight import check_connections

    if rules is None:
        report.warnings.append("--connect skipped: fix the rules first (their fields are what it checks)")
        return
    found = check_connections(cfg, rules.mapping)
    report.errors.extend(found.problems)
    report.notes.extend(found.notes)


@click.group("config")
def config() -> None:
    """Check a configuration file before running syncd with it."""


@config.command("check")
@config_option
@click.option(
    "--connect",
    is_flag=True,
    help="Also log in to Salesforce and HubSpot, read a record of each mapped object and check that every "
    "mapped field exists and, where syncd writes it, is writable.",
)
@click.pass_context
def check(ctx: click.Context, config_path: Path, connect: bool) -> None:
    """Check the config, its secrets (set, never shown), its rules files and its ledger's place on disk.

    Prints one line per problem and exits 2 if there is any error; warnings leave the exit code 0.
    Run it before starting or upgrading the daemon.
    """
    report = check_config(config_path, connect=connect)
    for line in report.errors:
        click.echo(f"error: {line}", err=True)
    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)
    if not report.ok:
        n = len(report.errors)
        click.echo(
            f"{config_path}: {n} problem{'s' if n != 1 else ''}; syncd run would refuse to start", err=True
        )
        ctx.exit(2)
    click.echo(f"{config_path}: ok")
    for note in report.notes:
        click.echo(f"  {note}")
