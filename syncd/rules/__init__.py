"""Rules of engagement: lifecycle, scoring, roster, routing and policy files, loaded as one RuleSet.

Public API: :func:`load_ruleset` (for the daemon and the cycle) and :func:`check_directory` (for
``syncd validate``), both over a directory such as ``mappings/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.rules.ruleset import RuleSet, check_directory, load_ruleset

__all__ = ["RuleSet", "check_directory", "load_ruleset"]


def __getattr__(name: str) -> Any:
    # Imported on first use: syncd.mapping needs syncd.rules.conditions, and syncd.rules.ruleset needs
    # syncd.mapping, so an eager import here made `import syncd.mapping` fail in a fresh process.
    if name in __all__:
        from syncd.rules import ruleset

        return getattr(ruleset, name)
    raise AttributeError(f"module 'syncd.rules' has no attribute {name!r}")
