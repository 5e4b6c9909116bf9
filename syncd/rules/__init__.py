"""Rules of engagement: lifecycle, scoring, roster, routing and policy files, loaded as one RuleSet.

Public API: :func:`load_ruleset` (for the daemon and the cycle) and :func:`check_directory` (for
``syncd validate``), both over a directory such as ``mappings/``.
"""

from syncd.rules.ruleset import RuleSet, check_directory, load_ruleset

__all__ = ["RuleSet", "check_directory", "load_ruleset"]
