"""Identity: the keys of persons and accounts, the links of records to them, merges and conversions."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.core.systems import ACCOUNT_OBJECTS, PERSON_OBJECTS
from syncd.core.types import (
    LinkRow,
    RecordKey,
)
from syncd.errors import LedgerError
from syncd.ledger.rows import (
    _KEY_PREFIX,
    _batched,
    _check_system,
    _dt,
    _hash_text,
    _link,
    _norm,
    _ts,
)
from syncd.ledger.schema import KEY_KINDS, LINK_METHODS
from syncd.ledger.store import Store, _guarded

log = logging.getLogger(__name__)

_OBJECTS = {"person": PERSON_OBJECTS, "account": ACCOUNT_OBJECTS}


class Identity(Store):
    """Identity: the keys of persons and accounts, the links of records to them, merges and conversions."""

    @_guarded
    def new_keys(self, kind: str, count: int = 1, *, seeds: Sequence[str] | None = None) -> list[str]:
        """Mint stable keys for new persons (``p:…``) or accounts (``a:…``).

        With ``seeds`` (one per key, e.g. the id of the record a key is minted for) the keys are derived
        from them, so the same records always get the same keys, and work done in key order (round robin)
        comes out the same in a dry run and in the real run that follows it.
        """
        if kind not in KEY_KINDS:
            raise ValueError(f"unknown key kind {kind!r}; expected one of {', '.join(KEY_KINDS)}")
        now = self._now()
        if seeds is not None:
            keys = [_KEY_PREFIX[kind] + _hash_text(f"{kind}\0{seed}") for seed in seeds]
        else:
            keys = [_KEY_PREFIX[kind] + uuid.uuid4().hex for _ in range(count)]
        with self.transaction():
            self._conn.executemany(
                "INSERT INTO entities (key, kind, created_at) VALUES (?, ?, ?)",
                [(k, kind, now) for k in keys],
            )
        return keys

    def new_key(self, kind: str) -> str:
        return self.new_keys(kind, 1)[0]

    @_guarded
    def key_kind(self, key: str) -> str | None:
        row = self._conn.execute("SELECT kind FROM entities WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @_guarded
    def add_links(self, links: Iterable[LinkRow]) -> dict[RecordKey, str]:
        """Link records to keys in bulk. A record keeps its first key: for each record already linked to a
        different key, nothing changes and the returned dict maps it to that key (use ``merge_keys`` to join
        the two); an empty dict means every link is in place."""
        now = self._now()
        conflicts: dict[RecordKey, str] = {}
        with self.transaction():
            for chunk in _batched(links):
                wanted = {link.ref: link for link in chunk}
                existing = self._keys_of_refs(wanted)
                rows = []
                for ref, link in wanted.items():
                    _check_system(link.system)
                    if link.how not in LINK_METHODS:
                        raise ValueError(f"unknown link method {link.how!r}")
                    current = existing.get(ref)
                    if current is None:
                        rows.append(
                            (
                                link.system,
                                link.object,
                                link.id,
                                link.key,
                                link.how,
                                _ts(link.linked_at) if link.linked_at else now,
                                link.run_id,
                            )
                        )
                    elif current != link.key:
                        conflicts[ref] = current
                if rows:
                    self._conn.executemany(
                        "INSERT INTO links (system, object, id, key, how, linked_at, run_id) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
        return conflicts

    def link(
        self, key: str, system: str, object: str, id: str, how: str, *, run_id: str | None = None
    ) -> str:
        """Link one record to a key; returns the key the record belongs to (its earlier key, if any)."""
        conflicts = self.add_links([LinkRow(key, system, object, id, how, run_id=run_id)])
        return conflicts.get((system, object, id), key)

    def _keys_of_refs(self, refs: Iterable[RecordKey]) -> dict[RecordKey, str]:
        groups: dict[tuple[str, str], list[str]] = {}
        for system, obj, id_ in refs:
            groups.setdefault((system, obj), []).append(id_)
        found: dict[RecordKey, str] = {}
        for (system, obj), ids in groups.items():
            for chunk in _batched(ids):
                marks = ",".join("?" * len(chunk))
                cursor = self._conn.execute(
                    f"SELECT id, key FROM links WHERE system = ? AND object = ? AND id IN ({marks})",
                    [system, obj, *chunk],
                )
                for id_, key in cursor:
                    found[(system, obj, id_)] = key
        return found

    @_guarded
    def key_of(self, system: str, object: str, id: str) -> str | None:
        row = self._conn.execute(
            "SELECT key FROM links WHERE system = ? AND object = ? AND id = ?", (system, object, id)
        ).fetchone()
        return None if row is None else str(row[0])

    @_guarded
    def keys_of(self, system: str, object: str, ids: Iterable[str]) -> dict[str, str]:
        """Bulk ``key_of`` for one object: id -> key, for the ids that are linked."""
        found = self._keys_of_refs((system, object, i) for i in ids)
        return {id_: key for (_, _, id_), key in found.items()}

    @_guarded
    def links_by_id(self, system: str, id: str) -> list[LinkRow]:
        """Links of a record found by system and id alone (Salesforce ids are unique across objects)."""
        sql = "SELECT * FROM links WHERE system = ? AND id = ? ORDER BY object"
        return [_link(r) for r in self._select(sql, [system, id])]

    @_guarded
    def links_of(self, key: str) -> list[LinkRow]:
        sql = "SELECT * FROM links WHERE key = ? ORDER BY linked_at, system, object, id"
        return [_link(r) for r in self._select(sql, [key])]

    @_guarded
    def created_links(self, keys: Iterable[str]) -> dict[str, list[LinkRow]]:
        """Bulk: key -> its links made by syncd creating the record (``how == "created"``)."""
        found: dict[str, list[LinkRow]] = {}
        for chunk in _batched(keys):
            marks = ",".join("?" * len(chunk))
            sql = (
                f"SELECT * FROM links WHERE how = 'created' AND key IN ({marks}) "
                "ORDER BY key, linked_at, system, object, id"
            )
            for r in self._select(sql, chunk):
                found.setdefault(r["key"], []).append(_link(r))
        return found

    @_guarded
    def keys_by_email(self, emails: Iterable[str], *, kind: str = "person") -> dict[str, list[str]]:
        """Normalised email -> keys (of ``kind``) whose linked records carry it; unknown emails are absent."""
        return self._keys_by("email", emails, kind)

    @_guarded
    def keys_by_domain(self, domains: Iterable[str], *, kind: str = "account") -> dict[str, list[str]]:
        """Normalised domain -> keys (of ``kind``) whose linked records carry it."""
        return self._keys_by("domain", domains, kind)

    @_guarded
    def keys_with_domains(self, domains: Iterable[str], *, kind: str) -> set[str]:
        """The keys (of ``kind``) with a linked record of any of these domains: ``keys_by_domain`` without
        grouping them by domain (the persons of every account of an org are most of its keys)."""
        return {key for _, key in self._pairs("domain", domains, kind)}

    def _keys_by(self, column: str, values: Iterable[str], kind: str) -> dict[str, list[str]]:
        found: dict[str, set[str]] = {}
        for value, key in self._pairs(column, values, kind):
            found.setdefault(value, set()).add(key)
        return {value: sorted(keys) for value, keys in sorted(found.items())}

    def _pairs(self, column: str, values: Iterable[str], kind: str) -> Iterator[tuple[str, str]]:
        """(value, key) for each linked record of ``kind`` whose ``column`` is one of ``values``."""
        wanted = sorted({v for v in (_norm(x) for x in values) if v})
        # Only the objects that hold this kind: a domain is shared by every person of a company, and an
        # account lookup must not walk them all (that made it grow faster than the org).
        # (Emails are rarely shared: those are looked up whatever the object, by their own index.)
        objects: list[tuple[str, str] | None] = (
            [(s, o) for s, objs in _OBJECTS[kind].items() for o in objs] if column == "domain" else [None]
        )
        for chunk in _batched(wanted):
            marks = ",".join("?" * len(chunk))
            for where in objects:
                scope = "" if where is None else "r.system = ? AND r.object = ? AND "
                # A key's kind is its prefix (``new_keys``): no join with the entities.
                cursor = self._conn.execute(
                    f"SELECT r.{column}, l.key FROM records r JOIN links l USING (system, object, id) "
                    f"WHERE {scope}r.{column} IN ({marks}) AND substr(l.key, 1, 2) = ?",
                    [*(where or ()), *chunk, _KEY_PREFIX[kind]],
                )
                yield from cursor

    @_guarded
    def link_converted(
        self,
        lead_id: str,
        contact_id: str,
        *,
        run_id: str | None = None,
        system: str = "salesforce",
        lead_object: str = "Lead",
        contact_object: str = "Contact",
    ) -> str:
        """Follow a converted Lead to its Contact so both stay one person; returns that person's key.

        The Lead's key wins (it is the older identity); a Contact already known under another key has that
        key merged into the Lead's.
        """
        with self.transaction():
            lead_key = self.key_of(system, lead_object, lead_id)
            contact_key = self.key_of(system, contact_object, contact_id)
            if lead_key is None:
                key = contact_key or self.new_key("person")
                self.add_links([LinkRow(key, system, lead_object, lead_id, "new", run_id=run_id)])
                if contact_key is None:
                    self.add_links(
                        [LinkRow(key, system, contact_object, contact_id, "converted", run_id=run_id)]
                    )
                return key
            if contact_key is None:
                self.add_links(
                    [LinkRow(lead_key, system, contact_object, contact_id, "converted", run_id=run_id)]
                )
            elif contact_key != lead_key:
                self.merge_keys(lead_key, contact_key)
            return lead_key

    @_guarded
    def merge_keys(self, into: str, other: str) -> None:
        """Make ``other`` part of ``into``: links, history, overrides and intents move; ``into``'s current
        decision and assignment win when both have one; ``other`` then no longer exists."""
        if into == other:
            return
        if self.key_kind(into) is None or self.key_kind(other) is None:
            raise LedgerError(f"cannot merge {other} into {into}: unknown key")
        with self.transaction():
            for table in ("links", "decision_history", "overrides"):
                self._conn.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (into, other))
            for table in ("outbox", "quarantine"):
                self._conn.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (into, other))
            for table in ("decisions", "assignments"):
                has_own = self._conn.execute(f"SELECT 1 FROM {table} WHERE key = ?", (into,)).fetchone()
                if has_own:
                    self._conn.execute(f"DELETE FROM {table} WHERE key = ?", (other,))
                else:
                    self._conn.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (into, other))
            self._conn.execute("DELETE FROM entities WHERE key = ?", (other,))

    # ------------------------------------------------------------------------------------------- aliases

    @_guarded
    def add_aliases(self, aliases: Iterable[tuple[str, str, str, str]], *, run_id: str | None = None) -> int:
        """Remember merged-away records: (system, object, id, survivor id) each. An alias already known keeps
        its first survivor (a merge is final); returns how many are new."""
        now = self._now()
        rows = [
            (system, obj, id_, survivor, now, run_id)
            for system, obj, id_, survivor in aliases
            if id_ and survivor and id_ != survivor
        ]
        if not rows:
            return 0
        with self.transaction():
            cursor = self._conn.executemany(
                "INSERT OR IGNORE INTO aliases (system, object, id, survivor, merged_at, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        return max(cursor.rowcount, 0)

    @_guarded
    def pending_aliases(self) -> list[Alias]:
        """Merges whose links have not moved to the survivor yet, oldest first."""
        sql = "SELECT * FROM aliases WHERE applied = 0 ORDER BY merged_at, system, object, id"
        return [_alias(r) for r in self.db.query(sql)]

    @_guarded
    def mark_aliases_applied(self, refs: Iterable[RecordKey]) -> None:
        with self.transaction():
            self._conn.executemany(
                "UPDATE aliases SET applied = 1 WHERE system = ? AND object = ? AND id = ?", list(refs)
            )

    @_guarded
    def aliases_of(self, system: str, ids: Iterable[str]) -> dict[str, Alias]:
        """Id -> its alias row, for the ids of ``system`` that were merged away."""
        out: dict[str, Alias] = {}
        for chunk in _batched(list(ids)):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT * FROM aliases WHERE system = ? AND id IN ({marks})"
            for r in self.db.query(sql, [system, *chunk]):
                out[str(r["id"])] = _alias(r)
        return out

    @_guarded
    def merged_into(self, system: str, survivor: str) -> list[Alias]:
        """The records merged into ``survivor``."""
        sql = "SELECT * FROM aliases WHERE system = ? AND survivor = ? ORDER BY merged_at, id"
        return [_alias(r) for r in self.db.query(sql, [system, survivor])]

    @_guarded
    def survivor_of(self, id: str) -> Alias | None:
        """The alias row of a merged-away id in either system (the merge chain followed to its end)."""
        rows = list(self.db.query("SELECT * FROM aliases WHERE id = ? ORDER BY system LIMIT 1", [id]))
        if not rows:
            return None
        alias = _alias(rows[0])
        seen = {alias.id}
        while alias.survivor not in seen:
            nxt = self.aliases_of(alias.system, [alias.survivor]).get(alias.survivor)
            if nxt is None:
                break
            seen.add(alias.survivor)
            alias = Alias(alias.system, alias.object, alias.id, nxt.survivor, alias.merged_at, alias.applied)
        return alias

    @_guarded
    def relink(self, links: Iterable[LinkRow]) -> None:
        """Point each record's link at its row's key (deals whose company changed), in one transaction; a
        record without a link is linked. An unknown link method fails the whole call (``add_links`` checks)."""
        links = list(links)
        with self.transaction():
            self._conn.executemany(
                "DELETE FROM links WHERE system = ? AND object = ? AND id = ?", [link.ref for link in links]
            )
            self.add_links(links)


@dataclass(frozen=True, slots=True)
class Alias:
    """A record merged away in its system: its id, the id of the record it was merged into, and when syncd
    saw the merge."""

    system: str
    object: str
    id: str
    survivor: str
    merged_at: datetime
    applied: bool


def _alias(row: Mapping[str, Any]) -> Alias:
    return Alias(
        str(row["system"]),
        str(row["object"]),
        str(row["id"]),
        str(row["survivor"]),
        _dt(str(row["merged_at"])),
        bool(row["applied"]),
    )
