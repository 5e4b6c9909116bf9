"""Rules of engagement: lifecycle, scoring, roster, routing and policy files, loaded as one RuleSet.

Public API: :func:`load_ruleset` (for the daemon and the cycle) and :func:`check_directory` (for
``syncd validate``), both over a directory such as ``mappings/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.core.rules.ruleset import RuleSet, check_directory, load_ruleset

__all__ = ["RuleSet", "check_directory", "load_ruleset"]


def __getattr__(name: str) -> Any:
    # Imported on first use: syncd.core.mapping needs syncd.core.rules.conditions, and syncd.core.rules.ruleset needs
    # syncd.core.mapping, so an eager import here made `import syncd.core.mapping` fail in a fresh process.
    if name in __all__:
        from syncd.core.rules import ruleset

        return getattr(ruleset, name)
    raise AttributeError(f"module 'syncd.core.rules' has no attribute {name!r}")
