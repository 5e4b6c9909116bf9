"""Before deciding: the decisions a change of rules does not concern stand under the new rules.

Every decision records the digest of the rules it was made under, and the ledger keeps those rules' text
(``ledger.rulesets``). When the rules in force differ from a decision's, ``syncd.core.rules.change`` compares
the two rule sets: where only routing conditions changed, each decision's trace tells whether the change
concerns it; the others take the new digest here, and the decide stage makes again exactly the decisions
still made under other rules. Where anything else changed, or the earlier rules were never kept (a ledger
from before schema 9), every decision made under them is decided again, as the daily re-score would.

A dry run does the same inside its transaction (rolled back with it), so a plan predicts the next cycle.
"""

from __future__ import annotations

import logging

from syncd.core.rules.change import rules_change
from syncd.core.rules.ruleset import ruleset_from_sources, sources_digest
from syncd.cycle.context import RunContext

log = logging.getLogger(__name__)


def adopt_unaffected(run: RunContext) -> int:
    """Let the decisions the change of rules does not concern stand; returns how many now do."""
    ledger, rules = run.ledger, run.rules
    if rules.sources and sources_digest(rules.sources) == rules.digest:
        ledger.rulesets.save(rules.digest, rules.sources, run.now)
    total = 0
    for old in ledger.decisions.other_digests(rules.digest):
        sources = ledger.rulesets.sources(old)
        if sources is None:
            continue
        previous = ruleset_from_sources(sources, f"the rules {old[:12]} kept in the ledger")
        change = rules_change(previous, rules) if previous is not None else None
        if change is None:
            continue
        affected = ledger.decisions.affected(old, change.affects)
        adopted = ledger.decisions.adopt(old, rules.digest, keep=affected)
        total += adopted
        (log.debug if run.report.dry_run else log.info)(
            "rules %s -> %s: %s decisions concerned by the change (%s), %s stand",
            old[:12],
            rules.digest[:12],
            f"{len(affected):,}",
            ", ".join(sorted(change.conditions)) or "nothing a rule says",
            f"{adopted:,}",
        )
    run.report.rules_adopted += total
    return total
