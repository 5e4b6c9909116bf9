"""The `syncd` command line: a thin click layer over the library.

Commands are loaded lazily from the module that owns them, so `syncd --help` stays fast and each area of
the code keeps its own command next to its logic's public API.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from syncd.errors import SyncdError
from syncd.logs import redact

# name -> "module:attribute" of a click command; each module holds only a thin command over its library.
COMMANDS: dict[str, str] = {
    "sandbox": "syncd.sandbox.cli:sandbox",
    "validate": "syncd.validate_cli:validate",
    "once": "syncd.commands:once",
    "plan": "syncd.commands:plan",
    "backtest": "syncd.commands:backtest",
    "explain": "syncd.commands:explain",
    "status": "syncd.commands:status",
    "report": "syncd.commands:report",
    "run": "syncd.service:run",
    "config": "syncd.service:config",
    "demo": "syncd.demo:demo",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        command = getattr(module, attr, None)
        return command if isinstance(command, click.Command) else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="syncd")
def cli() -> None:
    """syncd keeps customer ownership right across HubSpot and Salesforce."""


def main(argv: list[str] | None = None) -> Any:
    """Entry point: runs the CLI; a SyncdError becomes one line on stderr and exit code 2."""
    try:
        rv = cli.main(args=argv, standalone_mode=False)
        if isinstance(rv, int) and rv != 0:
            sys.exit(rv)
        return rv
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SyncdError as exc:
        # The message may quote a request or a response: mask any secret it carries.
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
