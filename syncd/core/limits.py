"""Field limits before sending: what the systems' metadata says a field accepts, applied to planned writes. Pure.

A real org refuses a value its field cannot hold: a text longer than the field's length (``STRING_TOO_LONG``),
a number outside its digits (``NUMBER_OUTSIDE_VALID_RANGE``), an e-mail it does not accept
(``INVALID_EMAIL_ADDRESS``), a value not in a restricted picklist. The cycle reads the limits from the
systems' metadata (Salesforce describe, once per roster refresh) and :func:`apply_limits` goes over the
planner's actions before they become intents: each over-limit value gets its binding's declared treatment
(``on_limit`` in ``fields.toml``):

- ``truncate``: cut a text to the field's length; ``clamp``: bring a number to the field's largest value
  (both fit the value where a cut or clamp can; a value neither can fix is quarantined);
- ``drop``: leave the field out of the write (the rest of the record is written);
- ``quarantine``: write nothing to the record and hold it in quarantine with the reason, e.g.
  ``Lead.LastName: 10,000 characters, the field takes 80``.

Without a declaration: identity fields (the ``email`` and ``domain`` bindings, the stored cross-ids) are
quarantined, since a cut e-mail would link the wrong person; over-long text is truncated; out-of-range
numbers are clamped; anything else (an invalid e-mail, an unknown picklist value) is quarantined.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from syncd.core.link import Group
from syncd.core.plan import Action, FieldChange
from syncd.core.types import RecordRow

if TYPE_CHECKING:
    from syncd.core.mapping import Mapping as FieldMapping

__all__ = [
    "ON_LIMIT",
    "Limit",
    "Limited",
    "Limits",
    "Refused",
    "apply_limits",
    "limit_rules",
    "refused_record",
]

ON_LIMIT = ("truncate", "clamp", "drop", "quarantine")
IDENTITY_FIELDS = ("email", "domain")
_IDENTITY_OBJECTS = {
    "person": (("hubspot", "contacts"), ("salesforce", "Lead"), ("salesforce", "Contact")),
    "account": (("hubspot", "companies"), ("salesforce", "Account")),
}
_NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})


class Limit(Protocol):
    """What one field accepts (``syncd.connectors.base.FieldLimit`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def length(self) -> int: ...
    @property
    def largest(self) -> float | None: ...
    def violation(self, value: Any) -> str | None: ...
    def fit(self, value: Any) -> Any: ...


Limits = Mapping[tuple[str, str], Mapping[str, Limit]]
"""(system, object) -> field name -> its limit."""


@dataclass(frozen=True, slots=True)
class Refused:
    """An action not sent because a value breaks a limit its binding says to quarantine on."""

    action: Action
    reason: str


@dataclass(frozen=True, slots=True)
class Limited:
    """The actions to send (values fitted or dropped where declared), those refused, and how many values
    were fitted or dropped."""

    actions: list[Action]
    refused: list[Refused]
    fitted: int = 0


def limit_rules(mapping: FieldMapping) -> dict[tuple[str, str, str], str]:
    """(system, object, field) -> the declared treatment of an over-limit value; identity fields without a
    declaration are quarantined (the cross-id fields too)."""
    rules: dict[tuple[str, str, str], str] = {}
    for name, lf in mapping.fields.items():
        for (system, obj), bindings in lf.bindings.items():
            for b in bindings:
                declared = getattr(b, "on_limit", None)
                if declared is not None:
                    rules[(system, obj, b.field)] = declared
                elif name in IDENTITY_FIELDS:
                    rules.setdefault((system, obj, b.field), "quarantine")
    for entity in ("person", "account"):
        ident = mapping.identity[entity]
        for sys_, obj in _IDENTITY_OBJECTS[entity]:
            link = ident.hubspot_link if sys_ == "hubspot" else ident.salesforce_link
            rules.setdefault((sys_, obj, link), "quarantine")
    return rules


def apply_limits(
    actions: Iterable[Action], limits: Limits, rules: Mapping[tuple[str, str, str], str]
) -> Limited:
    """Each action with its over-limit values treated per ``rules`` (see the module docstring)."""
    out: list[Action] = []
    refused: list[Refused] = []
    fitted = 0
    for action in actions:
        fields = limits.get((action.system, action.object))
        if not fields:
            out.append(action)
            continue
        changes: list[FieldChange] = []
        reason: str | None = None
        for change in action.changes:
            limit = fields.get(change.field) or _lower(fields).get(change.field.lower())
            value = _typed(change.new, limit)
            code = limit.violation(value) if limit is not None else None
            if limit is None or code is None:
                changes.append(change)
                continue
            how = rules.get((action.system, action.object, change.field)) or _default(code)
            if how == "drop":
                fitted += 1
                continue
            if how in ("truncate", "clamp"):
                fit = limit.fit(value)
                if limit.violation(fit) is None:
                    changes.append(replace(change, new=fit))
                    fitted += 1
                    continue
            reason = describe(action.object, change.field, value, code, limit)
            break
        if reason is not None:
            refused.append(Refused(action, reason))
        elif changes:
            out.append(_same_or_replaced(action, changes))
        # An action left with no change at all (every value dropped) sends nothing.
    return Limited(out, refused, fitted)


def _same_or_replaced(action: Action, changes: list[FieldChange]) -> Action:
    if len(changes) == len(action.changes) and all(
        a is b for a, b in zip(action.changes, changes, strict=True)
    ):
        return action
    return replace(action, changes=tuple(changes))


def _lower(fields: Mapping[str, Limit]) -> dict[str, Limit]:
    return {k.lower(): v for k, v in fields.items()}


def _typed(value: Any, limit: Limit | None) -> Any:
    """A number sent as text (HubSpot's numbers are strings) checked as the number the org reads."""
    if limit is None or limit.type not in _NUMBER_TYPES or not isinstance(value, str) or not value.strip():
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and limit.type == "int" else number


def _default(code: str) -> str:
    if code == "STRING_TOO_LONG":
        return "truncate"
    if code == "NUMBER_OUTSIDE_VALID_RANGE":
        return "clamp"
    return "quarantine"


def describe(object: str, field: str, value: Any, code: str, limit: Limit) -> str:
    """The reason a value cannot be sent, for people: what it is and what the field takes."""
    where = f"{object}.{field}"
    if code == "STRING_TOO_LONG":
        return f"{where}: {len(str(value)):,} characters, the field takes {limit.length:,}"
    if code == "NUMBER_OUTSIDE_VALID_RANGE":
        largest = limit.largest
        most = f", the field takes at most {largest:,.0f}" if largest is not None else ""
        return f"{where}: {value:g} is out of range{most}"
    if code == "INVALID_EMAIL_ADDRESS":
        return f"{where}: {value!r} is not an e-mail address the field accepts (INVALID_EMAIL_ADDRESS)"
    return f"{where}: {value!r} is refused by the field ({code})"


def refused_record(group: Group, action: Action) -> RecordRow | None:
    """The record a refused action was for: the record it updates, or the HubSpot contact a create is for."""
    if action.is_create:
        return group.hubspot
    for r in (*group.writable, *group.deals):
        if r.system == action.system and r.object == action.object and r.id == action.record_id:
            return r
    return None
