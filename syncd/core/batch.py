"""Intents merged into one write request per record, up to a connector's declared batch limit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from syncd.core.plan import is_clear
from syncd.core.types import Intent


@dataclass(frozen=True, slots=True)
class Request:
    """One record's write in a batch: the intents it carries and their fields merged."""

    intents: tuple[Intent, ...]
    fields: dict[str, Any]

    @property
    def create_key(self) -> str | None:
        return self.intents[0].create_key

    @property
    def record_id(self) -> str | None:
        return self.intents[0].record_id


def take_batch(queued: Iterable[Intent], limit: int) -> tuple[list[Request], list[Intent]]:
    """The next batch of at most ``limit`` requests from ``queued`` (in order), and the intents left over.

    One request per record: intents on one record whose fields do not overlap share it (a created Lead's id
    joins the contact's owner update); an overlapping one waits for the next batch, so a HubSpot stage cleared
    by one intent is set by the next only after the clear went through.
    """
    entries: list[list[Intent]] = []
    fields: list[dict[str, Any]] = []
    at: dict[str, int] = {}
    rest: list[Intent] = []
    for intent in queued:
        slot = at.get(intent.record_id) if intent.record_id is not None else None
        if slot is not None:
            if set(intent.fields).isdisjoint(fields[slot]) and not is_clear(entries[slot][0]):
                entries[slot].append(intent)
                fields[slot].update(intent.fields)
            else:
                rest.append(intent)
        elif len(entries) < limit:
            if intent.record_id is not None:
                at[intent.record_id] = len(entries)
            entries.append([intent])
            fields.append(dict(intent.fields))
        else:
            rest.append(intent)
    return [Request(tuple(e), f) for e, f in zip(entries, fields, strict=True)], rest
