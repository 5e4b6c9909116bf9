"""Collecting validation problems as one-line messages that name the file, the rule and the key.

Every message reads ``<file>: <rule or section>: <key>: <what is wrong>``, for example
``mappings/routing.toml: rule "EMEA enterprise": when.contry: unknown field (did you mean "country"?)``.
Loading goes on after a problem so that one run reports every problem it can.
"""

from __future__ import annotations

import difflib
import math
import re
import stat
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, time
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
# Said after an unknown stage outside lifecycle.toml: a renamed stage is often the mistake.
STAGES_HINT = " (stages are declared in lifecycle.toml)"
# Table sections whose keys are names, and the word a message uses for one entry.
TABLE_LABELS: dict[str, str] = {"fields": "field", "value_maps": "value map", "teams": "team"}


# Bounds on what a rules file may hold: beyond them a file is refused before its content is looked at.
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 32  # tables and lists inside one another; the shipped files nest at most 6 deep
MAX_TEXT = 10_000  # characters in one text value or key
# How much of the input one message may quote, and how long one component of a line may grow.
ECHO_CHARS = 80
PART_CHARS = 200
NAME_CHARS = 100
MAX_SCHEMA_LINES = 3

# Control characters (and the bidirectional overrides) would break a line or hide text: shown escaped.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` on one line (control characters escaped), cut to ``limit`` characters with an ellipsis."""
    text = _UNPRINTABLE.sub(_escape, text[: limit * 4 + 1])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show(value: Any, limit: int = ECHO_CHARS) -> str:
    """A value from a file as a message quotes it, the way TOML writes it, on one line and clipped."""
    if isinstance(value, str):
        return '"' + clip(value, limit) + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return number(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, list | dict | tuple):
        return clip(repr(_shallow(value)), limit)
    return clip(repr(value), limit)


def number(value: float | int) -> str:
    """``3650`` rather than ``3650.0``; floats otherwise as Python writes them (``1e+300``, ``inf``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)


def _shallow(value: Any, depth: int = 0) -> Any:
    # repr() of a huge or deeply nested value costs its whole size: keep a few items, a few levels.
    if depth > 2:
        return ...
    if isinstance(value, dict):
        return {k[:ECHO_CHARS]: _shallow(v, depth + 1) for k, v in list(value.items())[:5]}
    if isinstance(value, list | tuple):
        return [_shallow(v, depth + 1) for v in value[:5]]
    if isinstance(value, str):
        return value[: ECHO_CHARS + 1]
    return value


@dataclass(frozen=True)
class Problem:
    """One validation finding."""

    severity: Severity
    file: str
    where: str
    key: str
    message: str

    def __str__(self) -> str:
        # The file is the caller's path; the item and key come from the file and are kept short.
        parts = [clip(self.file, PART_CHARS), *(clip(p, NAME_CHARS) for p in (self.where, self.key) if p)]
        return ": ".join([*[p for p in parts if p], clip(self.message, PART_CHARS)])


@dataclass
class Problems:
    """An ordered collection of problems found while loading one rules directory.

    An error about an unknown name (``ref``, e.g. ``("team", "sales")``) is reported once, at its first use;
    later uses of the same name only add to a count shown on that line, so one mistake stays one line.
    """

    _items: list[Problem] = field(default_factory=list)
    _more: dict[Problem, int] = field(default_factory=dict)
    _refs: dict[tuple[str, str], Problem] = field(default_factory=dict)
    error_count: int = 0

    def error(
        self,
        file: str,
        where: str,
        key: str,
        message: str,
        *,
        ref: tuple[str, str] | None = None,
        first: bool = False,
    ) -> None:
        """Records an error; ``first`` puts it before the others (the likely cause of what follows)."""
        self.error_count += 1
        if ref is not None and ref in self._refs:
            shown = self._refs[ref]
            self._more[shown] = self._more.get(shown, 0) + 1
            return
        problem = Problem("error", file, where, key, message)
        if ref is not None:
            self._refs[ref] = problem
        self._add(problem, first)

    def warning(self, file: str, where: str, key: str, message: str) -> None:
        self._add(Problem("warning", file, where, key, message))

    def _add(self, problem: Problem, first: bool = False) -> None:
        # A condition checked twice (a rule for persons and accounts) would say the same thing twice.
        if problem in self._more:
            self._more.setdefault(problem, 0)
            return
        self._more[problem] = 0
        if first:
            self._items.insert(0, problem)
        else:
            self._items.append(problem)

    def refs(self, kind: str) -> dict[str, int]:
        """The names of one kind (``"stage"``, ``"field"`` ...) reported unknown so far, and how many
        times each was used."""
        return {name: 1 + self._more.get(p, 0) for (k, name), p in self._refs.items() if k == kind}

    @property
    def items(self) -> list[Problem]:
        out = []
        for p in self._items:
            more = self._more.get(p, 0)
            if more:
                places = "place" if more == 1 else "places"
                p = Problem(p.severity, p.file, p.where, p.key, f"{p.message} (and {more} more {places})")
            out.append(p)
        return out

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.items if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.items if p.severity == "warning"]


def named(label: str, name: str) -> str:
    """``rule "EMEA enterprise"``: how a message names one item."""
    return f'{label} "{clip(name)}"'


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean "x"?)`` when a close choice exists, else an empty string."""
    if len(word) > ECHO_CHARS:
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{clip(close[0])}"?)' if close else ""


def read_toml(path: Path, display: str, problems: Problems) -> tuple[dict[str, Any] | None, bytes]:
    """The parsed TOML file and its bytes; None (and the bytes read) after recording why it is refused.

    Refuses, with one line each: a directory or special file, a file over MAX_FILE_BYTES, an unreadable
    file, binary data, text that is not UTF-8, invalid TOML, nesting deeper than MAX_DEPTH, a number that
    is not finite (inf, nan) and a text value longer than MAX_TEXT.
    """
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            problems.error(display, "", "", "is a directory; expected a TOML file")
            return None, b""
        if not stat.S_ISREG(info.st_mode):
            problems.error(display, "", "", "not a regular file; expected a TOML file")
            return None, b""
        if info.st_size > MAX_FILE_BYTES:
            problems.error(
                display, "", "", f"{_size(info.st_size)}: too large (a rules file is at most 2 MB)"
            )
            return None, b""
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        problems.error(display, "", "", f"cannot read: {exc.strerror or type(exc).__name__}")
        return None, b""
    if len(raw) > MAX_FILE_BYTES:
        problems.error(display, "", "", "too large (a rules file is at most 2 MB)")
        return None, raw
    if b"\0" in raw:
        problems.error(display, "", "", "binary data, not a TOML text file")
        return None, raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.error(display, "", "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})")
        return None, raw
    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        problems.error(display, "", "", f"invalid TOML: {clip(str(exc), PART_CHARS)}")
        return None, raw
    except RecursionError:
        problems.error(display, "", "", f"nested too deeply (at most {MAX_DEPTH} levels of tables and lists)")
        return None, raw
    except (ValueError, OverflowError) as exc:
        # tomllib lets Python's own limits through, e.g. an integer of more than 4,300 digits.
        problems.error(display, "", "", f"invalid TOML: {clip(str(exc), 120)}")
        return None, raw
    bad = _first_unusable(data)
    if bad is not None:
        loc, message = bad
        where, key = locate(data, loc)
        problems.error(display, where, key, message)
        return None, raw
    return data, raw


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n:,} bytes"


def _first_unusable(data: dict[str, Any]) -> tuple[tuple[int | str, ...], str] | None:
    """The location of the first value syncd refuses whatever the file (too deep, not finite, too long)."""
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), data)]
    while stack:
        loc, node = stack.pop()
        if len(loc) > MAX_DEPTH:
            return loc[:2], f"nested too deeply (at most {MAX_DEPTH} levels of tables and lists)"
        if isinstance(node, dict):
            for k in node:
                if len(k) > MAX_TEXT:
                    return loc, f"a key of {len(k):,} characters (at most {MAX_TEXT:,})"
            stack.extend(((*loc, k), v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend(((*loc, i), v) for i, v in reversed(list(enumerate(node))))
        elif isinstance(node, float) and not math.isfinite(node):
            return loc, f"{node} is not a usable number: give a finite number"
        elif isinstance(node, str) and len(node) > MAX_TEXT:
            return loc, f"text of {len(node):,} characters is too long (at most {MAX_TEXT:,})"
    return None


def parse_model(model: type[M], data: dict[str, Any], display: str, problems: Problems) -> M | None:
    """``model`` validated from ``data``, or None after recording each pydantic error as one line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # At most MAX_SCHEMA_LINES lines per file: one misplaced [[header]] breaks two items at once, with
        # every key of both wrong, and is still one mistake. The rest is counted on the last line.
        found = []
        for err in exc.errors():
            where, key = locate(data, err["loc"])
            found.append((where, key, describe(err, model_fields_at(model, err["loc"]))))
        shown = found if len(found) <= MAX_SCHEMA_LINES else found[: MAX_SCHEMA_LINES - 1]
        for where, key, message in shown:
            problems.error(display, where, key, message)
        if len(shown) < len(found):
            rest = len(found) - len(shown)
            missing = sum(1 for _, _, m in found if m == "is required")
            hint = ": is a [[table]] header misplaced?" if missing >= 2 else ""
            problems.error(display, "", "", f"and {rest} more problems in this file{hint}")
        return None


def locate(data: Any, loc: Sequence[int | str]) -> tuple[str, str]:
    """Splits a pydantic error location into the named item it falls in and the key inside it."""
    where = ""
    path: list[str] = []
    node = data
    parent_key: str | None = None
    for part in loc:
        item = node[part] if isinstance(part, int) and isinstance(node, list) and part < len(node) else None
        # A named item (a rule, a stage, a rep) is a table in a top-level list; a list of plain values, or a
        # list inside an item (a requirement's stages), is only a key.
        if isinstance(part, int) and parent_key in ITEM_LABELS and isinstance(item, dict) and not where:
            label, id_key = ITEM_LABELS[parent_key]
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


# Bounds pydantic reports, in the admin's words.
_BOUND_WORDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("above", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("below", "lt"),
}


def describe(err: Any, allowed: list[str]) -> str:
    """One short sentence for a pydantic error, in the admin's words (never the library's wording)."""
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    got = f", got {show(value)}"
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        return "unknown key" + did_you_mean(name, allowed)
    if kind == "missing":
        return "is required"
    if kind in ("int_type", "int_parsing", "int_from_float", "int_parsing_size"):
        return "must be a whole number" + got
    if kind in ("float_type", "float_parsing"):
        return "must be a number" + got
    if kind == "finite_number":
        return "must be a finite number" + got
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false" + got
    if kind in ("string_type", "string_unicode"):
        return "must be text" + got + (" (quote it)" if isinstance(value, int | float) else "")
    if kind in ("list_type", "tuple_type", "set_type", "iterable_type"):
        if isinstance(value, str) and value.strip():
            parts = [p.strip() for p in value.split(",") if p.strip()]
            return f"must be a list of values, e.g. {json_list(parts)}"
        return "must be a list" + got
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a table, e.g. { key = value }" + got
    if kind in ("too_short",):
        return "must not be empty"
    if kind in ("too_long",):
        return f"too long (at most {ctx.get('max_length', '?')})"
    if kind in ("string_too_short",):
        return "must not be empty"
    if kind in ("string_too_long",):
        return f"too long (at most {ctx.get('max_length', '?')} characters)"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        return f"{show(value)} is not one of {str(expected).replace(chr(39), chr(34))}"
    if kind in _BOUND_WORDS:
        words, name = _BOUND_WORDS[kind]
        bound = ctx.get(name)
        shown = number(bound) if isinstance(bound, int | float) else "?"
        return f"{show(value)} is out of range: must be {words} {shown}"
    if kind.startswith("date") or kind.startswith("datetime"):
        return "must be a date like 2025-08-01" + got
    if kind.startswith("time"):
        return 'must be a time of day like "09:00"' + got
    if kind == "value_error":
        return clip(str(ctx.get("error", "is not valid")), PART_CHARS)
    if kind == "union_tag_invalid" or kind.startswith("union"):
        return "is not valid here" + got
    message = str(err.get("msg", "is not valid")).replace("Input should be", "must be")
    return clip(message[:1].lower() + message[1:], PART_CHARS)


def json_list(values: Sequence[str]) -> str:
    """``["DE", "FR"]``: a list of texts as the admin would write it in TOML, clipped when long."""
    shown = [f'"{clip(v, 20)}"' for v in values[:8]]
    more = ", …" if len(values) > 8 else ""
    return "[" + ", ".join(shown) + more + "]"
