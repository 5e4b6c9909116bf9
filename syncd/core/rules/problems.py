"""Collecting validation problems as one-line messages that name the file, the rule and the key.

Every message reads ``<file>: <rule or section>: <key>: <what is wrong>``, for example
``mappings/routing.toml: rule "EMEA enterprise": when.contry: unknown field (did you mean "country"?)``.
Loading goes on after a problem so that one run reports every problem it can.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

Severity = Literal["error", "warning"]

# List sections whose items are named, and the word a message uses for one item.
ITEM_LABELS: dict[str, tuple[str, str]] = {
    "rules": ("rule", "name"),
    "fit": ("rule", "name"),
    "engagement": ("rule", "name"),
    "stages": ("stage", "name"),
    "backward": ("backward move", "name"),
    "pools": ("pool", "name"),
    "reps": ("rep", "email"),
    "queues": ("queue", "name"),
    "custom_fields": ("custom field", "name"),
    "tiers": ("tier", "name"),
    "roles": ("role", "name"),
    "requirements": ("requirement", "name"),
}
# Table sections whose keys are names, and the word a message uses for one entry.
TABLE_LABELS: dict[str, str] = {"fields": "field", "value_maps": "value map", "teams": "team"}


@dataclass(frozen=True)
class Problem:
    """One validation finding."""

    severity: Severity
    file: str
    where: str
    key: str
    message: str

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.where, self.key) if p]
        return ": ".join([*parts, self.message])


@dataclass
class Problems:
    """An ordered collection of problems found while loading one rules directory."""

    items: list[Problem] = field(default_factory=list)

    def error(self, file: str, where: str, key: str, message: str) -> None:
        self.items.append(Problem("error", file, where, key, message))

    def warning(self, file: str, where: str, key: str, message: str) -> None:
        self.items.append(Problem("warning", file, where, key, message))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.items if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.items if p.severity == "warning"]


def named(label: str, name: str) -> str:
    """``rule "EMEA enterprise"``: how a message names one item."""
    return f'{label} "{name}"'


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean "x"?)`` when a close choice exists, else an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def read_toml(path: Path, display: str, problems: Problems) -> dict[str, Any] | None:
    """The parsed TOML file, or None after recording why it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        problems.error(display, "", "", f"invalid TOML: {exc}")
    except UnicodeDecodeError:
        problems.error(display, "", "", "not UTF-8 text")
    except OSError as exc:
        problems.error(display, "", "", f"cannot read: {exc.strerror or exc}")
    return None


def parse_model(model: type[M], data: dict[str, Any], display: str, problems: Problems) -> M | None:
    """``model`` validated from ``data``, or None after recording each pydantic error as one line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            where, key = locate(data, err["loc"])
            problems.error(display, where, key, describe(err, model_fields_at(model, err["loc"])))
        return None


def locate(data: Any, loc: Sequence[int | str]) -> tuple[str, str]:
    """Splits a pydantic error location into the named item it falls in and the key inside it."""
    where = ""
    path: list[str] = []
    node = data
    parent_key: str | None = None
    for part in loc:
        # Named items are top-level lists; a list inside an item (a requirement's stages) is only a key.
        if isinstance(part, int) and parent_key in ITEM_LABELS and isinstance(node, list) and not where:
            label, id_key = ITEM_LABELS[parent_key]
            item = node[part] if part < len(node) else None
            ident = item.get(id_key) if isinstance(item, dict) else None
            where = named(label, str(ident)) if isinstance(ident, str) and ident else f"{label} #{part + 1}"
            path = []
            node = item
            parent_key = None
            continue
        if (
            isinstance(part, str)
            and parent_key in TABLE_LABELS
            and isinstance(node, dict)
            and not path_has_item(path)
        ):
            where = named(TABLE_LABELS[parent_key], part)
            path = []
            node = node.get(part)
            parent_key = None
            continue
        if isinstance(part, int) and isinstance(node, dict):
            # A single table where a list of tables is allowed: the model wrapped it; the file has no index.
            parent_key = None
            continue
        path.append(f"[{part}]" if isinstance(part, int) else str(part))
        if isinstance(node, dict):
            node = node.get(part) if isinstance(part, str) else None
        elif isinstance(node, list) and isinstance(part, int):
            node = node[part] if part < len(node) else None
        else:
            node = None
        parent_key = part if isinstance(part, str) else None
    key = ".".join(path).replace(".[", "[")
    return where, key


def path_has_item(path: list[str]) -> bool:
    # A table label only names the entry directly below its section, not deeper keys of the same name.
    return len(path) > 1


def model_fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names allowed where an unknown key was found, for a did-you-mean hint."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = _inner_model(info.annotation)
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def describe(err: Any, allowed: list[str]) -> str:
    """One short sentence for a pydantic error, in the admin's words."""
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        return "unknown key" + did_you_mean(name, allowed)
    if kind == "missing":
        return "missing (required)"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {value!r}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {value!r}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {value!r}"
    if kind in ("string_type",):
        return f"expected text, got {value!r}"
    if kind in ("list_type",):
        return f"expected a list, got {value!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a table, got {value!r}"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{value!r} is not one of {expected}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return f"{value!r} is out of range ({err['msg'].lower()})"
    if kind == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    return str(err["msg"]).lower()
