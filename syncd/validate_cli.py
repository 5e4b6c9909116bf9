"""The ``syncd validate`` command: a thin click layer over :mod:`syncd.core.rules.validate`."""

from __future__ import annotations

from pathlib import Path

import click

from syncd.core.rules.validate import validate as validate_directory


@click.command("validate")
@click.argument("directory", default="mappings", type=click.Path(path_type=Path, file_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and warnings, not the summary line.")
@click.pass_context
def validate(ctx: click.Context, directory: Path, quiet: bool) -> None:
    """Check the mapping and rules-of-engagement files in DIRECTORY (default: mappings/).

    Prints one line per problem (file, rule, key, what is wrong). Exits 2 when there is an error;
    warnings (legal but suspicious) leave the exit code 0.
    """
    report = validate_directory(directory)
    for line in report.errors:
        click.echo(f"error: {line}", err=True)
    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)
    if not quiet:
        click.echo(report.summary(), err=not report.ok)
    if not report.ok:
        ctx.exit(2)
