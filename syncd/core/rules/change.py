"""What a change of rules can change: which decisions made under the old rules the new rules would make
differently, found from each decision's trace without deciding it again.

Routing is first-match, and a routing rule's condition (its ``when``) is read nowhere else: a decision whose
trace shows that every changed rule it tried gives the same answer under its new condition, on the values
the trace recorded, routes the same way under the new rules. So when two rule sets differ only in the
conditions of routing rules (a country moved from one territory to another), :meth:`RulesChange.affects`
picks exactly the decisions to make again, and every other decision stands under the new rules.

Any other difference (another file, a routing rule added, removed, renamed, reordered or sent to another
pool, a pool, the fallback) may change any decision: :func:`rules_change` returns None and every decision
made under the old rules is due again. A change that alters nothing the rules say (a comment, the layout)
affects no decision.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.core.rules.conditions import Condition
from syncd.core.rules.ruleset import RuleSet, sources_digest

__all__ = ["RulesChange", "rules_change"]

ROUTING = "routing.toml"


@dataclass(frozen=True)
class RulesChange:
    """The routing rules whose condition changed between two rule sets: name -> (old, new) condition."""

    old_digest: str
    new_digest: str
    conditions: Mapping[str, tuple[Condition, Condition]]

    def affects(self, trace: Sequence[Any]) -> bool:
        """Whether a decision with this stored trace could be decided differently under the new rules.

        True when a changed rule it tried answers differently under its new condition, when the trace
        lacks a value the old or new condition reads, or when the old condition does not give back what
        the trace says on the values it recorded (a value the ledger keeps in another form than the engine
        saw, such as a time kept as text). An empty trace tells nothing: affected.
        """
        if not self.conditions:
            return False
        if not trace:
            return True
        for row in trace:
            if isinstance(row, Mapping):
                phase, rule, matched, values = (
                    row.get("phase"),
                    row.get("rule"),
                    row.get("matched"),
                    row.get("values"),
                )
            else:
                phase, rule, matched, _, values = row
            if phase != "route":
                continue
            pair = self.conditions.get(str(rule))
            if pair is None:
                continue
            old, new = pair
            try:
                seen = {str(name): value for name, value in values or ()}
                if not seen.keys() >= {*old.fields, *new.fields}:
                    return True
                if bool(old.test(seen)) is not bool(matched) or bool(new.test(seen)) is not bool(matched):
                    return True
            except Exception:  # a recorded value the condition cannot take (a list for a text field...)
                return True
        return False


def rules_change(old: RuleSet, new: RuleSet) -> RulesChange | None:
    """How ``new`` differs from ``old`` when only routing rules' conditions differ (see the module);
    None when anything else differs, or when either rule set carries no source text or other text than
    its digest says (a rule set built in code)."""
    if sources_digest(old.sources) != old.digest or sources_digest(new.sources) != new.digest:
        return None
    before, after = _parsed(old.sources), _parsed(new.sources)
    if before is None or after is None or before.keys() != after.keys():
        return None
    if any(before[name] != after[name] for name in before if name != ROUTING):
        return None
    routing_before, routing_after = before.get(ROUTING, {}), after.get(ROUTING, {})
    if _without(routing_before, "rules") != _without(routing_after, "rules"):
        return None
    rules_before, rules_after = routing_before.get("rules", []), routing_after.get("rules", [])
    if not isinstance(rules_before, list) or not isinstance(rules_after, list):
        return None
    if len(rules_before) != len(rules_after):
        return None
    changed: list[str] = []
    for a, b in zip(rules_before, rules_after, strict=True):
        if not isinstance(a, dict) or not isinstance(b, dict) or _without(a, "when") != _without(b, "when"):
            return None
        if a.get("when") != b.get("when"):
            changed.append(str(a.get("name")))
    compiled_old = _by_name(old.routing.rules)
    compiled_new = _by_name(new.routing.rules)
    if compiled_old is None or compiled_new is None:
        return None  # two rules of one name: a trace could not tell them apart
    conditions: dict[str, tuple[Condition, Condition]] = {}
    for name in changed:
        if name not in compiled_old or name not in compiled_new:
            return None
        conditions[name] = (compiled_old[name].when, compiled_new[name].when)
    return RulesChange(old.digest, new.digest, conditions)


def _parsed(sources: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]] | None:
    out: dict[str, dict[str, Any]] = {}
    for name, text in sources:
        try:
            out[name] = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return None
    return out or None


def _without(table: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k != key}


def _by_name(rules: Iterable[Any]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for rule in rules:
        if rule.name in out:
            return None
        out[rule.name] = rule
    return out
