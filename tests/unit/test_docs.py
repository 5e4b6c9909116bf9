"""The docs and the examples stay true: every command is documented, the example config and the shipped
mappings load (after sqlite-utils' test_docs.py)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

from syncd.cli import COMMANDS, cli
from syncd.config import Config, load_config
from syncd.core.rules import check_directory
from syncd.core.rules.ruleset import FILES, OPTIONAL_FILES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = ROOT / "config.example.toml"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"syncd {' '.join((*prefix, name))} cannot be loaded"
        path = (*prefix, name)
        yield " ".join(path), command
        if isinstance(command, click.Group):
            yield from _commands(command, path)


COMMAND_PATHS = dict(_commands(cli))


def test_every_registered_command_loads() -> None:
    assert set(COMMANDS) == {path for path in COMMAND_PATHS if " " not in path}


@pytest.mark.parametrize("path", sorted(COMMAND_PATHS))
def test_command_has_help(path: str) -> None:
    command = COMMAND_PATHS[path]
    assert (command.help or "").strip(), f"syncd {path} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert (param.help or "").strip(), f"syncd {path} {param.opts[0]} has no help text"


@pytest.mark.parametrize("path", sorted(COMMAND_PATHS))
def test_command_is_in_the_readme(path: str) -> None:
    assert re.search(rf"syncd {re.escape(path)}\b", README), f"`syncd {path}` is not in README.md"


def test_readme_opens_with_the_two_commands() -> None:
    lines = README.splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```")]
    assert [line.split("#")[0].strip() for line in block] == ["make demo", "make test"]
    assert lines.index("```sh") < 5


def test_config_example_loads() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    sf = data["salesforce"]
    environ = {sf[k]: "example-value" for k in sf if k.endswith("_env")} | {
        data["hubspot"]["token_env"]: "x" * 8
    }
    config = load_config(EXAMPLE, environ=environ)
    assert config.salesforce.auth == "jwt"
    assert config.daemon_settings().health_port == 9464


def _option_names(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        if name in ("path", "secrets", "sandbox_info"):
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _option_names(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


OPTIONS = set(_option_names(Config))
# Documented by the *_env key next to each and by allow_inline_secrets (writing them in the file is discouraged).
INLINE_SECRETS = {o for o in OPTIONS if f"{o}_env" in OPTIONS}
# The model is shared by both systems; only HubSpot has a search endpoint to pace.
NOT_APPLICABLE = {"budget.salesforce.search_per_second"}


def test_the_option_exceptions_exist() -> None:
    assert {"hubspot.token", "salesforce.password"} <= INLINE_SECRETS
    assert NOT_APPLICABLE <= OPTIONS


@pytest.mark.parametrize("option", sorted(OPTIONS - INLINE_SECRETS - NOT_APPLICABLE))
def test_config_example_documents_every_option(option: str) -> None:
    *sections, key = option.split(".")
    text = EXAMPLE.read_text(encoding="utf-8")
    if sections:
        header = re.search(rf"^\[{re.escape('.'.join(sections))}\]$", text, re.MULTILINE)
        if header is None and sections[0] == "budget":
            header = re.search(rf"^\[budget\.{sections[-1]}\]$", text, re.MULTILINE)
        assert header is not None, f"[{'.'.join(sections)}] is not in config.example.toml"
        text = text[header.end() :]
        nxt = re.search(r"^\[", text, re.MULTILINE)
        text = text[: nxt.start()] if nxt else text
    # Set, or shown commented out with its meaning.
    assert re.search(rf"^#? ?{re.escape(key)} = ", text, re.MULTILINE), f"{option} is not documented"


def test_every_shipped_mapping_file_validates() -> None:
    directory = ROOT / "mappings"
    assert sorted(p.name for p in directory.glob("*.toml")) == sorted([*FILES, *OPTIONAL_FILES])
    rules, problems = check_directory(directory)
    assert [str(p) for p in problems.items] == []
    assert rules is not None
