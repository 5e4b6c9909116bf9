"""Conditions over logical fields, as written in the rules files' ``when`` tables, compiled to fast tests.

Syntax (TOML)::

    when = { country = "US" }                          # equals
    when = { country = ["US", "CA"] }                  # one of
    when.employees = { gte = 200, lt = 5000 }           # several operators on one field: all must hold
    when.title = { regex = "(?i)vp|chief" }
    when.account.customer = true                        # account fields of a person's account
    when.any = [ { country = "GB" }, { employees = { gte = 1000 } } ]
    when.not = { industry = "Education" }

Operators: ``eq ne in not_in gt gte lt lte between contains regex exists``; ``all``/``any``/``not`` nest.
Keys side by side must all hold. A missing value never equals, is never in a list and never compares;
``ne``/``not_in`` hold for it. ``contains`` ignores case.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Literal

import iso3166

from syncd.core.rules.problems import STAGES_HINT, Problems, clip, did_you_mean, json_list, show

FieldKind = Literal["text", "number", "boolean", "datetime"]
Test = Callable[[Mapping[str, Any]], bool]

OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "contains", "regex", "exists")
COMBINATORS = ("all", "any", "not")
ORDERED_KINDS = ("number", "datetime")


@dataclass(frozen=True)
class Predicate:
    """One simple test on one field, kept for shadowing analysis (``op`` is one of OPERATORS)."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Condition:
    """A compiled condition: the test, its text for traces, and what shadowing analysis needs."""

    test: Test
    text: str
    fields: tuple[str, ...]
    # The top-level AND of simple predicates; ``complex`` is True when it also holds any/not parts.
    predicates: tuple[Predicate, ...]
    complex: bool

    @property
    def always(self) -> bool:
        return not self.predicates and not self.complex


def _always(_: Mapping[str, Any]) -> bool:
    return True


ALWAYS = Condition(_always, "always", (), (), False)


@dataclass(frozen=True)
class TextForm:
    """How a text field's values look after the mapping read them: its logical type, the case every
    binding's transforms leave it in (None when mixed or untouched) and whether spaces are stripped."""

    type: str
    case: Literal["upper", "lower"] | None
    stripped: bool


@dataclass
class FieldSet:
    """The fields a condition may use, with their kinds; ``stages`` lists valid values of stage fields."""

    kinds: dict[str, FieldKind]
    stages: tuple[str, ...] = ()
    stage_fields: frozenset[str] = frozenset({"stage"})
    # Fields that exist elsewhere but not here, with the reason, e.g. the score inside scoring rules.
    unavailable: dict[str, str] = field(default_factory=dict)
    # What the mapping says about the values of text fields (case, spaces, type), for value checks.
    forms: dict[str, TextForm] = field(default_factory=dict)

    def unknown(self, name: str) -> str:
        """The message for a field these conditions cannot use."""
        if name in self.unavailable:
            return f"unknown field here: {self.unavailable[name]}"
        return "unknown field" + (did_you_mean(name, self.kinds) or " (fields are declared in fields.toml)")


class _Compiler:
    def __init__(self, fields: FieldSet, problems: Problems, file: str, where: str) -> None:
        self.fields = fields
        self.problems = problems
        self.file = file
        self.where = where
        self.errors = 0
        self.used: list[str] = []

    def error(self, key: str, message: str, *, ref: tuple[str, str] | None = None) -> None:
        self.errors += 1
        self.problems.error(self.file, self.where, key, message, ref=ref)

    def warning(self, key: str, message: str) -> None:
        self.problems.warning(self.file, self.where, key, message)

    def text_values(self, field: str, op: str, values: list[str], key: str) -> bool:
        """Checks text operands against what the field's values can be; False after an error.

        Errors: several values written as one text where a list is meant (for typed fields: country, email,
        domain), and values the mapping's transforms make impossible (lower-case letters in a field read
        upper-case, surrounding spaces in a field read stripped). Warnings: the same for plain text fields,
        and a country that is no ISO 3166 two-letter code.
        """
        form = self.fields.forms.get(field)
        if form is None:
            return True
        typed = form.type in ("country", "email", "domain")
        positive = op in ("eq", "in")
        ok = True
        for v in values:
            parts = [p.strip() for p in v.split(",") if p.strip()]
            if len(parts) > 1:
                message = (
                    f"{show(v)} is one text; for any of several values write a list, e.g. {json_list(parts)}"
                )
                if typed:
                    self.error(key, message)
                    ok = False
                else:
                    self.warning(key, message)
                continue
            never = ""
            if form.case == "upper" and v != v.upper():
                fix = v.upper()
                if form.type == "country" and len(v.strip()) != 2:
                    known = iso3166.countries.get(v.strip(), None)
                    fix = known.alpha2 if known is not None else fix
                never = f'{field} is read upper-case (transform "upper" in fields.toml); write {show(fix)}'
            elif form.case == "lower" and v != v.lower():
                never = f"{field} is read lower-case (transform in fields.toml); write {show(v.lower())}"
            elif form.stripped and v != v.strip():
                never = (
                    f'{field} is read without surrounding spaces (transform "strip"); write {show(v.strip())}'
                )
            if never:
                if positive:
                    self.error(key, f"{show(v)} can never match: {never}")
                    ok = False
                else:
                    self.warning(key, f"{show(v)} never occurs, so this always holds: {never}")
                continue
            if form.type == "country" and form.case != "lower":
                code = v.strip().upper()
                if len(code) != 2:
                    known = iso3166.countries.get(v.strip(), None)
                    hint = f' (e.g. "{known.alpha2}")' if known is not None else ""
                    self.warning(key, f"{show(v)} is not an ISO 3166 two-letter country code{hint}")
                elif code not in iso3166.countries_by_alpha2:
                    hint = ' (the United Kingdom is "GB")' if code == "UK" else ""
                    self.warning(key, f"{show(v)} is not an ISO 3166 country code{hint}")
        return ok

    def table(
        self, raw: Any, key: str, prefix: str = ""
    ) -> tuple[list[Test], list[str], list[Predicate], bool]:
        tests: list[Test] = []
        texts: list[str] = []
        preds: list[Predicate] = []
        complex_ = False
        if not isinstance(raw, dict):
            self.error(key, f"expected a table of conditions, got {show(raw)}")
            return tests, texts, preds, complex_
        for name, value in raw.items():
            sub = f"{key}.{name}"
            if name in ("all", "any") and not prefix:
                if not isinstance(value, list) or not value:
                    self.error(sub, "expected a non-empty list of condition tables")
                    continue
                parts = [self.condition(item, f"{sub}[{i}]") for i, item in enumerate(value)]
                good = [p for p in parts if p is not None]
                if len(good) != len(parts):
                    continue
                if name == "all":
                    tests.append(_and([p.test for p in good]))
                    for p in good:
                        preds.extend(p.predicates)
                        complex_ = complex_ or p.complex
                    texts.append("all(" + "; ".join(p.text for p in good) + ")")
                else:
                    tests.append(_or([p.test for p in good]))
                    complex_ = True
                    texts.append("any(" + "; ".join(p.text for p in good) + ")")
            elif name == "not" and not prefix:
                inner = self.condition(value, sub)
                if inner is not None:
                    test = inner.test
                    tests.append(lambda c, t=test: not t(c))  # type: ignore[misc]
                    texts.append(f"not({inner.text})")
                    complex_ = True
            elif (
                name == "account"
                and not prefix
                and isinstance(value, dict)
                and "account" not in self.fields.kinds
            ):
                t2, x2, p2, c2 = self.table(value, sub, prefix="account.")
                tests.extend(t2)
                texts.extend(x2)
                preds.extend(p2)
                complex_ = complex_ or c2
            else:
                field = prefix + name
                kind = self.fields.kinds.get(field)
                if kind is None:
                    self.error(
                        sub,
                        self.fields.unknown(field),
                        ref=None if field in self.fields.unavailable else ("field", field),
                    )
                    continue
                self.used.append(field)
                for test, text, pred in self.field_tests(field, kind, value, sub):
                    tests.append(test)
                    texts.append(text)
                    preds.append(pred)
        return tests, texts, preds, complex_

    def condition(self, raw: Any, key: str) -> Condition | None:
        before = self.errors
        tests, texts, preds, complex_ = self.table(raw, key)
        if self.errors != before:
            return None
        if not tests:
            return Condition(_always, "always", (), (), False)
        return Condition(_and(tests), " and ".join(texts), (), tuple(preds), complex_)

    def field_tests(
        self, field: str, kind: FieldKind, value: Any, key: str
    ) -> list[tuple[Test, str, Predicate]]:
        if isinstance(value, dict):
            if not value:
                self.error(key, "expected at least one operator")
                return []
            out = []
            for op, operand in value.items():
                if op not in OPERATORS:
                    self.error(f"{key}.{op}", "unknown operator" + did_you_mean(op, OPERATORS))
                    continue
                made = self.operator(field, kind, op, operand, f"{key}.{op}")
                if made is not None:
                    out.append(made)
            return out
        op = "in" if isinstance(value, list) else "eq"
        made = self.operator(field, kind, op, value, key)
        return [made] if made is not None else []

    def scalar(self, field: str, kind: FieldKind, value: Any, key: str) -> Any:
        """The operand converted for comparison with the field's values, or _BAD after an error."""
        if isinstance(value, dict | list):
            self.error(key, f"expected a single value, got {show(value)}")
            return _BAD
        if kind == "boolean":
            if not isinstance(value, bool):
                self.error(key, f"{field} is true or false, got {show(value)}", ref=("kind", field))
                return _BAD
            return value
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.error(key, f"{field} is a number, got {show(value)}", ref=("kind", field))
                return _BAD
            return value
        if kind == "datetime":
            if isinstance(value, datetime):
                if value.tzinfo is None:
                    self.error(key, f"{value.isoformat()}: give a UTC offset, e.g. {value.isoformat()}Z")
                    return _BAD
                try:
                    return value.astimezone(UTC)
                except OverflowError:
                    self.error(key, f"{value.isoformat()} is out of range: give a date between 0002 and 9998")
                    return _BAD
            if isinstance(value, date):
                return datetime.combine(value, time(0), tzinfo=UTC)
            self.error(key, f"{field} is a date and time, got {show(value)}", ref=("kind", field))
            return _BAD
        if not isinstance(value, str):
            self.error(key, f"{field} is text, got {show(value)} (quote it)", ref=("kind", field))
            return _BAD
        if field in self.fields.stage_fields and self.fields.stages and value not in self.fields.stages:
            self.error(
                key,
                f'unknown stage "{clip(value)}"' + did_you_mean(value, self.fields.stages) + STAGES_HINT,
                ref=("stage", value),
            )
            return _BAD
        return value

    def operator(
        self, field: str, kind: FieldKind, op: str, operand: Any, key: str
    ) -> tuple[Test, str, Predicate] | None:
        if op in ("eq", "ne"):
            v = self.scalar(field, kind, operand, key)
            if v is _BAD:
                return None
            if kind == "text" and not self.text_values(field, op, [v], key):
                return None
            if op == "eq":
                return (lambda c: c.get(field) == v), f"{field} = {v!r}", Predicate(field, op, v)
            return (lambda c: c.get(field) != v), f"{field} != {v!r}", Predicate(field, op, v)
        if op in ("in", "not_in"):
            if isinstance(operand, str):
                parts = [p.strip() for p in operand.split(",") if p.strip()] or [operand]
                self.error(key, f"expected a list of values, e.g. {json_list(parts)}")
                return None
            if not isinstance(operand, list) or not operand:
                self.error(key, "expected a non-empty list of values")
                return None
            values = []
            for item in operand:
                # One line for the list: the first value that does not fit says what is wrong.
                value = self.scalar(field, kind, item, key)
                if value is _BAD:
                    return None
                values.append(value)
            if kind == "text" and not self.text_values(field, op, values, key):
                return None
            allowed = frozenset(values)
            text = ", ".join(repr(v) for v in values)
            if op == "in":
                return (
                    (lambda c: c.get(field) in allowed),
                    f"{field} in [{text}]",
                    Predicate(field, op, allowed),
                )
            return (
                (lambda c: c.get(field) not in allowed),
                f"{field} not in [{text}]",
                Predicate(field, op, allowed),
            )
        if op in ("gt", "gte", "lt", "lte", "between"):
            if kind not in ORDERED_KINDS:
                self.error(key, f"{op} needs a number or date field; {field} is {kind}", ref=("kind", field))
                return None
            # Exact types: a bool is no number, and the mapping layer makes plain ints, floats and datetimes.
            types: tuple[type, ...] = (int, float) if kind == "number" else (datetime,)
            if op == "between":
                if not isinstance(operand, list) or len(operand) != 2:
                    self.error(key, "expected [low, high]")
                    return None
                lo = self.scalar(field, kind, operand[0], key)
                hi = self.scalar(field, kind, operand[1], key)
                if lo is _BAD or hi is _BAD:
                    return None
                if lo > hi:
                    self.error(key, f"low {show(lo)} is above high {show(hi)}")
                    return None
                return (
                    lambda c: type(x := c.get(field)) in types and lo <= x <= hi,
                    f"{field} between {lo!r} and {hi!r}",
                    Predicate(field, op, (lo, hi)),
                )
            v = self.scalar(field, kind, operand, key)
            if v is _BAD:
                return None
            symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            test: Test
            if op == "gt":
                test = lambda c: type(x := c.get(field)) in types and x > v  # noqa: E731
            elif op == "gte":
                test = lambda c: type(x := c.get(field)) in types and x >= v  # noqa: E731
            elif op == "lt":
                test = lambda c: type(x := c.get(field)) in types and x < v  # noqa: E731
            else:
                test = lambda c: type(x := c.get(field)) in types and x <= v  # noqa: E731
            return test, f"{field} {symbol} {v!r}", Predicate(field, op, v)
        if op == "contains":
            if kind != "text":
                self.error(key, f"contains needs a text field; {field} is {kind}", ref=("kind", field))
                return None
            if not isinstance(operand, str) or not operand:
                self.error(key, "expected non-empty text")
                return None
            needle = operand.casefold()
            return (
                lambda c: isinstance(x := c.get(field), str) and needle in x.casefold(),
                f"{field} contains {operand!r}",
                Predicate(field, op, needle),
            )
        if op == "regex":
            if kind != "text":
                self.error(key, f"regex needs a text field; {field} is {kind}", ref=("kind", field))
                return None
            if not isinstance(operand, str):
                self.error(key, f"expected a regular expression as text, got {show(operand)}")
                return None
            try:
                pattern = re.compile(operand)
            except re.error as exc:
                self.error(key, f"invalid regular expression: {clip(str(exc), 120)}")
                return None
            except (RecursionError, OverflowError):
                self.error(key, "invalid regular expression: nested or repeated too deeply")
                return None
            search = pattern.search
            return (
                lambda c: isinstance(x := c.get(field), str) and search(x) is not None,
                f"{field} matches /{operand}/",
                Predicate(field, op, operand),
            )
        # exists
        if not isinstance(operand, bool):
            self.error(key, f"expected true or false, got {show(operand)}")
            return None
        if operand:
            return (lambda c: c.get(field) not in (None, "")), f"{field} is set", Predicate(field, op, True)
        return (lambda c: c.get(field) in (None, "")), f"{field} is blank", Predicate(field, op, False)


_BAD = object()


def _and(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda c: a(c) and b(c)
    if len(tests) == 3:
        a, b, d = tests
        return lambda c: a(c) and b(c) and d(c)
    frozen = tuple(tests)

    # A plain loop: all() over a generator costs more on this hot path.
    def all_of(c: Mapping[str, Any]) -> bool:
        for t in frozen:  # noqa: SIM110
            if not t(c):
                return False
        return True

    return all_of


def _or(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    frozen = tuple(tests)

    def any_of(c: Mapping[str, Any]) -> bool:
        for t in frozen:  # noqa: SIM110
            if t(c):
                return True
        return False

    return any_of


def compile_condition(
    raw: Any, fields: FieldSet, problems: Problems, file: str, where: str, key: str = "when"
) -> Condition | None:
    """Compiles a ``when`` table; records every problem in it and returns None when there is one."""
    if raw is None:
        return ALWAYS
    compiler = _Compiler(fields, problems, file, where)
    cond = compiler.condition(raw, key)
    if cond is None:
        return None
    used = tuple(dict.fromkeys(compiler.used))
    return Condition(cond.test, cond.text, used, cond.predicates, cond.complex)


# ------------------------------------------------------------------------------------------------- shadowing


def implies(b: Predicate, a: Predicate) -> bool:
    """Whether every value that passes ``b`` also passes ``a`` (both on the same field), conservatively."""
    if b.field != a.field:
        return False
    if b == a:
        return True
    b_values: frozenset[Any] | None = None
    if b.op == "eq":
        b_values = frozenset([b.value])
    elif b.op == "in":
        b_values = b.value
    if a.op == "exists" and a.value is True:
        return b.op in ("eq", "in", "gt", "gte", "lt", "lte", "between", "contains", "regex") and (
            b_values is None or None not in b_values
        )
    if b_values is not None:
        return all(_passes(a, v) for v in b_values)
    lo, lo_open, hi, hi_open = _interval(b)
    if lo is None and hi is None:
        return False
    if a.op in ("gt", "gte"):
        return lo is not None and (lo > a.value or (lo == a.value and (a.op == "gte" or lo_open)))
    if a.op in ("lt", "lte"):
        return hi is not None and (hi < a.value or (hi == a.value and (a.op == "lte" or hi_open)))
    if a.op == "between":
        alo, ahi = a.value
        return lo is not None and hi is not None and lo >= alo and hi <= ahi
    return False


def _interval(p: Predicate) -> tuple[Any, bool, Any, bool]:
    if p.op == "gt":
        return p.value, True, None, False
    if p.op == "gte":
        return p.value, False, None, False
    if p.op == "lt":
        return None, False, p.value, True
    if p.op == "lte":
        return None, False, p.value, False
    if p.op == "between":
        return p.value[0], False, p.value[1], False
    return None, False, None, False


def _passes(a: Predicate, v: Any) -> bool:
    try:
        if a.op == "eq":
            return bool(v == a.value)
        if a.op == "ne":
            return bool(v != a.value)
        if a.op == "in":
            return v in a.value
        if a.op == "not_in":
            return v not in a.value
        if a.op == "gt":
            return bool(v > a.value)
        if a.op == "gte":
            return bool(v >= a.value)
        if a.op == "lt":
            return bool(v < a.value)
        if a.op == "lte":
            return bool(v <= a.value)
        if a.op == "between":
            return bool(a.value[0] <= v <= a.value[1])
        if a.op == "contains":
            return isinstance(v, str) and a.value in v.casefold()
    except TypeError:
        return False
    return False


def shadows(earlier: Condition, later: Condition) -> bool:
    """Whether ``later`` can never be reached because ``earlier`` matches everything ``later`` matches."""
    if earlier.complex:
        return False
    return all(any(implies(b, a) for b in later.predicates) for a in earlier.predicates)
