"""The ``syncd validate`` command: a thin click layer over :mod:`syncd.core.rules.validate`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import click

from syncd.core.rules.problems import clip
from syncd.core.rules.validate import validate as validate_directory
from syncd.errors import ConfigError


def rules_directory_of(config_path: Path) -> Path:
    """The rules directory a config file names (``[rules] directory``, relative to the file; default
    ``mappings``), read without resolving any secret: validating rules needs no credentials."""
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{config_path}: no such file (copy config.example.toml to start)") from None
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{config_path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {clip(str(exc), 200)}") from None
    except RecursionError:
        raise ConfigError(f"{config_path}: nested too deeply") from None
    rules = data.get("rules", {})
    if not isinstance(rules, dict):
        raise ConfigError(f"{config_path}: rules: expected a table")
    directory = rules.get("directory", "mappings")
    if not isinstance(directory, str) or not directory:
        raise ConfigError(f"{config_path}: rules.directory: expected a directory path")
    path = Path(directory).expanduser()
    return path if path.is_absolute() else config_path.parent / path


@click.command("validate")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    envvar="SYNCD_CONFIG",
    help="Validate the rules directory this configuration file names ([rules] directory).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and warnings, not the summary line.")
@click.pass_context
def validate(ctx: click.Context, directory: Path | None, config_path: Path | None, quiet: bool) -> None:
    """Check the mapping and rules-of-engagement files in DIRECTORY (default: the directory --config
    names, else mappings/).

    Prints one line per problem (file, rule, key, what is wrong). Exits 2 when there is an error;
    warnings (legal but suspicious) leave the exit code 0.
    """
    if directory is None:
        directory = rules_directory_of(config_path) if config_path is not None else Path("mappings")
    try:
        report = validate_directory(directory)
    except Exception as exc:  # pragma: no cover - a bug in syncd: still one line, never a traceback
        name = clip(str(directory), 200)
        click.echo(
            f"error: {name}: could not be checked ({type(exc).__name__}: {clip(str(exc), 120)}); "
            "this is a bug in syncd, please report it",
            err=True,
        )
        ctx.exit(2)
        return
    for line in report.errors:
        click.echo(f"error: {line}", err=True)
    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)
    if not quiet:
        click.echo(report.summary(), err=not report.ok)
    if not report.ok:
        ctx.exit(2)
