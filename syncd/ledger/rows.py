"""The ledger's edge between values and rows: time and JSON encodings, batching, and row -> value conversions."""

from __future__ import annotations

import functools
import hashlib
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

import orjson

from syncd.core.types import (
    DecisionChange,
    DecisionRow,
    Intent,
    LinkRow,
    OverrideRow,
    QuarantineRow,
    RecordRow,
    RunRow,
)
from syncd.ledger.schema import SYSTEMS

T = TypeVar("T")

_RECORD_PK = ("system", "object", "id")
# Rows per statement batch: well under SQLite's 32,766 bound variables for the widest table.
_BATCH = 500
_KEY_PREFIX = {"person": "p:", "account": "a:"}


def utc_now() -> datetime:
    """The current time, aware UTC: the ledger's default clock."""
    return datetime.now(UTC)


def _ts(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} given to the ledger; use an aware UTC datetime")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _ts_opt(value: datetime | None) -> str | None:
    return None if value is None else _ts(value)


@functools.lru_cache(maxsize=1024)
def _dt(text: str) -> datetime:
    """A stored time, parsed. Cached: a run stamps the rows it writes with few distinct times (its clock
    reading, each batch's confirmation), read back hundreds of thousands of times when re-deciding."""
    return datetime.fromisoformat(text)


def _dt_opt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _loads(text: str | bytes) -> Any:
    """JSON the ledger stored, decoded (orjson; ``json`` for the NaN and Infinity tokens it accepts)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, compact, UTF-8) by orjson; by ``json`` for what orjson refuses (integers
    beyond 64 bits, keys that are not strings), in the same canonical form."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# A decision's trace is stored compressed (zlib over its canonical JSON): it is most of a decision's bytes.
# Rows written before are JSON text; both read back alike.
_NO_TRACE = "[]"


def _pack_trace(trace: Any) -> bytes:
    """A trace's rows, compressed. Values beyond JSON's (datetimes, enums...) are stored as text, a
    datetime as its UTC ISO form (the engine's values come straight from its context, unconverted)."""
    try:
        text = orjson.dumps(trace, default=_as_text, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:  # an integer beyond 64 bits
        text = json.dumps(trace, default=_as_text, separators=(",", ":"), ensure_ascii=False).encode()
    return zlib.compress(text, 1)


def _as_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def _unpack_trace(stored: str | bytes) -> Any:
    return _loads(zlib.decompress(stored) if isinstance(stored, bytes) else stored)


def _hash_text(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _norm(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    return value or None


def _batched(items: Iterable[T], size: int = _BATCH) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _check_system(system: str) -> None:
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; expected one of {', '.join(SYSTEMS)}")


def _record(r: Mapping[str, Any]) -> RecordRow:
    return RecordRow(
        system=r["system"],
        object=r["object"],
        id=r["id"],
        data=_loads(r["data"]),
        modified_at=_dt_opt(r["modified_at"]),
        deleted=bool(r["deleted"]),
        email=r["email"],
        domain=r["domain"],
        hash=r["hash"],
        dirty=bool(r["dirty"]),
        seen_run=r["seen_run"],
        seen_at=_dt(r["seen_at"]),
    )


# The columns ``_record_at`` reads, in its order (a bulk read selects them by position: no name lookups).
RECORD_COLUMNS = (
    "r.system, r.object, r.id, r.data, r.modified_at, r.deleted, r.email, r.domain, r.hash, "
    "EXISTS (SELECT 1 FROM dirty d WHERE d.system = r.system AND d.object = r.object AND d.id = r.id), "
    "r.seen_run, r.seen_at"
)


def _record_at(r: tuple[Any, ...], at: int = 0) -> RecordRow:
    """A record from ``RECORD_COLUMNS`` starting at column ``at`` of a plain row."""
    system, object_, id_, data, modified_at, deleted, email, domain, hash_, dirty, seen_run, seen_at = r[
        at : at + 12
    ]
    return RecordRow(
        system,
        object_,
        id_,
        _loads(data),
        _dt_opt(modified_at),
        bool(deleted),
        email,
        domain,
        hash_,
        bool(dirty),
        seen_run,
        _dt(seen_at),
    )


def _link(r: Mapping[str, Any]) -> LinkRow:
    return LinkRow(r["key"], r["system"], r["object"], r["id"], r["how"], _dt(r["linked_at"]), r["run_id"])


def _run(r: Mapping[str, Any]) -> RunRow:
    return RunRow(
        id=r["id"],
        kind=r["kind"],
        started_at=_dt(r["started_at"]),
        finished_at=_dt_opt(r["finished_at"]),
        status=r["status"],
        counters=json.loads(r["counters"]),
        error=r["error"],
        pid=r["pid"],
    )


def _decision(r: Mapping[str, Any], trace: bool = True) -> DecisionRow:
    """A stored decision; without ``trace`` its trace is left compressed and unread (an empty list)."""
    return DecisionRow(
        key=r["key"],
        digest=r["digest"],
        trace=_unpack_trace(r["trace"]) if trace else [],
        decided_at=_dt(r["decided_at"]),
        stage=r["stage"],
        score=r["score"],
        owner=r["owner"],
        team=r["team"],
        data=_loads(r["data"]),
        run_id=r["run_id"],
    )


def _change(r: Mapping[str, Any]) -> DecisionChange:
    return DecisionChange(
        seq=r["seq"],
        key=r["key"],
        at=_dt(r["at"]),
        run_id=r["run_id"],
        stage=r["stage"],
        score=r["score"],
        owner=r["owner"],
        team=r["team"],
        prev_stage=r["prev_stage"],
        prev_score=r["prev_score"],
        prev_owner=r["prev_owner"],
        prev_team=r["prev_team"],
        digest=r["digest"],
        trace=_unpack_trace(r["trace"]),
    )


def _intent(r: Mapping[str, Any]) -> Intent:
    return Intent(
        system=r["system"],
        object=r["object"],
        fields=_loads(r["fields"]),
        reason=r["reason"],
        record_id=r["record_id"],
        create_key=r["create_key"],
        key=r["key"],
        id=r["id"],
        run_id=r["run_id"],
        state=r["state"],
        attempts=r["attempts"],
        error=r["error"],
        result_id=r["result_id"],
        created_at=_dt(r["created_at"]),
        updated_at=_dt(r["updated_at"]),
    )


def _override(r: Mapping[str, Any]) -> OverrideRow:
    return OverrideRow(
        key=r["key"],
        system=r["system"],
        object=r["object"],
        record_id=r["record_id"],
        rep=r["rep"],
        seen_at=_dt(r["seen_at"]),
        honoured_until=_dt(r["honoured_until"]),
        field=r["field"],
        previous=r["previous"],
        changed_by=r["changed_by"],
        run_id=r["run_id"],
        seq=r["seq"],
    )


def _quarantine(r: Mapping[str, Any]) -> QuarantineRow:
    return QuarantineRow(
        system=r["system"],
        object=r["object"],
        record_id=r["record_id"],
        reason=r["reason"],
        attempts=r["attempts"],
        first_seen_at=_dt(r["first_seen_at"]),
        last_attempt_at=_dt(r["last_attempt_at"]),
        next_attempt_at=_dt(r["next_attempt_at"]),
        reported=bool(r["reported"]),
        key=r["key"],
        run_id=r["run_id"],
    )
