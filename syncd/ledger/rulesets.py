"""The rule sets decisions were made under, kept as their files' text by digest (``syncd.core.rules.change``
compares a new rule set with the one a decision was made under)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import datetime

from syncd.ledger.rows import _dumps, _loads, _ts
from syncd.ledger.store import Store, _guarded


class RuleSets(Store):
    """Rule sets by digest: ``(file name, text)`` pairs, compressed."""

    @_guarded
    def save(self, digest: str, sources: Iterable[tuple[str, str]], at: datetime) -> bool:
        """Keep a rule set's text unless it is kept already; whether it was new."""
        files = [[name, text] for name, text in sources]
        if not files:
            return False
        with self.transaction():
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO rulesets (digest, sources, saved_at) VALUES (?, ?, ?)",
                (digest, zlib.compress(_dumps(files).encode()), _ts(at)),
            )
        return cursor.rowcount > 0

    @_guarded
    def sources(self, digest: str) -> list[tuple[str, str]] | None:
        """The files of the rule set with this digest, or None when it was never kept."""
        row = self._conn.execute("SELECT sources FROM rulesets WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            return None
        try:
            return [(str(name), str(text)) for name, text in _loads(zlib.decompress(row[0]))]
        except (zlib.error, ValueError, TypeError):
            return None  # unreadable: treated as never kept (every decision made under it is due)
