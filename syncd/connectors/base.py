"""The connector interface: syncd's one way into Salesforce and HubSpot.

A connector pulls the records of an object changed since a watermark as a stream of pages, reads records by
id in batches, pushes field updates and creates in batches with one result per record, and lists the reps
who can own records. Records are plain dicts in the system's own field names, wrapped in a small envelope
(:class:`RawRecord`); the mapping layer turns them into logical fields.

Watermarks are opaque strings to callers. Each page carries the watermark reached *after* its records, so a
caller stores it only once it has processed that page, and a later ``pull(object, since=watermark)`` goes on
from there. Pulls are at-least-once: a record can come again (look-back overlap, ties at one timestamp), never
be skipped.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from syncd.errors import FatalConnectorError

__all__ = [
    "ALL_AT_TIMESTAMP",
    "BudgetState",
    "Change",
    "Connector",
    "FieldLimit",
    "Page",
    "PushResult",
    "RawRecord",
    "RepRecord",
    "Watermark",
    "batched",
]

System = Literal["salesforce", "hubspot"]

# The id part of a watermark that says "every record at this timestamp is done" (sorts after any id).
ALL_AT_TIMESTAMP = "~"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as the system sent it: its fields by the system's names, and an envelope."""

    system: System
    object: str
    id: str
    modified_at: datetime
    deleted: bool
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    """Records pulled in one response, and the watermark to store once they are processed."""

    records: list[RawRecord]
    watermark: str


@dataclass(frozen=True, slots=True)
class Change:
    """One record to write: an update of ``id``, or a create (``id`` None) keyed by ``key`` for idempotency.

    A create's ``key`` goes into the object's idempotency field (Salesforce: the external-id field syncd
    upserts on, ``Syncd_HubSpot_Id__c``; HubSpot: ``syncd_salesforce_id``), so a retried create finds the
    record the first attempt made instead of making another.
    """

    fields: Mapping[str, Any]
    id: str | None = None
    key: str | None = None

    @classmethod
    def update(cls, id: str, fields: Mapping[str, Any]) -> Change:
        return cls(fields=fields, id=id)

    @classmethod
    def create(cls, key: str | None, fields: Mapping[str, Any]) -> Change:
        return cls(fields=fields, key=key)

    @property
    def is_create(self) -> bool:
        return self.id is None


@dataclass(frozen=True, slots=True)
class PushResult:
    """What became of one Change, at the same position as the change in the pushed sequence."""

    ok: bool
    id: str | None  # the record's id; for a successful create, the new record's id
    created: bool = False
    code: str = ""  # the system's error code on failure, e.g. INACTIVE_OWNER_OR_USER, INVALID_OWNER_ID
    message: str = ""
    key: str | None = None  # the change's create key, echoed


@dataclass(frozen=True, slots=True)
class RepRecord:
    """A Salesforce User or Queue, or a HubSpot owner, as the system lists it."""

    system: System
    kind: Literal["user", "queue", "owner"]
    id: str
    email: str | None
    name: str
    active: bool  # False for a deactivated User or an archived owner
    user_id: str | None = None  # HubSpot: the owner's userId (who made a change); Salesforce: None
    developer_name: str | None = None  # Salesforce queues


@dataclass(frozen=True, slots=True)
class FieldLimit:
    """What a system accepts in one field, from its metadata (Salesforce: describe), to check before sending.

    ``length`` is a text field's maximum characters; ``digits`` an int's maximum digits; ``precision`` and
    ``scale`` a decimal's digits in all and after the point; 0 means no such limit. ``picklist`` lists the
    allowed values when ``restricted``. A text value must match ``pattern`` (a regular expression) when one
    is set, else the system answers ``pattern_error``.
    """

    name: str
    type: str
    length: int = 0
    digits: int = 0
    precision: int = 0
    scale: int = 0
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    updateable: bool = True
    pattern: str = ""
    pattern_error: str = ""

    @property
    def largest(self) -> float | None:
        """The largest magnitude a number field holds, or None when it has no range."""
        if self.digits:
            return float(10**self.digits - 1)
        if self.precision:
            bound = float(10 ** (self.precision - self.scale))
            # The last step below the bound, or the last float below it where the step is finer than floats.
            return min(bound - 10.0**-self.scale, math.nextafter(bound, 0.0))
        return None

    def violation(self, value: Any) -> str | None:
        """The error code the system would answer for ``value`` in this field, or None when it fits."""
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, str):
            if self.length and len(value) > self.length:
                return "STRING_TOO_LONG"
            if self.restricted and value and value.lower() not in {p.lower() for p in self.picklist}:
                return "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
            if self.pattern and value and re.fullmatch(self.pattern, value) is None:
                return self.pattern_error or "INVALID_VALUE"
            return None
        whole = self.digits or self.precision - self.scale
        if isinstance(value, (int, float)) and (self.digits or self.precision) and abs(value) >= 10**whole:
            return "NUMBER_OUTSIDE_VALID_RANGE"
        return None

    def fit(self, value: Any) -> Any:
        """``value`` made to fit where it can: text cut to ``length``, a number clamped to the field's range.
        A value no cut or clamp can fix (an unknown restricted picklist value, a malformed e-mail) comes
        back unchanged: ``violation`` still names it."""
        if isinstance(value, str) and self.length and len(value) > self.length:
            return value[: self.length]
        largest = self.largest
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and largest is not None and abs(value) > largest:
            bound = int(largest) if isinstance(value, int) else largest
            return bound if value > 0 else -bound
        return value


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A connector's spend of its daily budget, and the org-wide usage the system last reported."""

    system: System
    day: str  # UTC date the counts are for
    spent: int  # syncd's calls today
    cap: int  # syncd's share of the allowance
    allowance: int
    org_used: int | None  # all apps' use, as the system last reported it
    org_limit: int | None
    exhausted: bool
    requests_per_10s: int

    @property
    def remaining(self) -> int:
        return max(0, self.cap - self.spent)


@dataclass(frozen=True, slots=True, order=True)
class Watermark:
    """A pull position: every record ordered at or before (``at``, ``id``) is processed.

    ``id`` "" means none of the records at ``at`` are; ``ALL_AT_TIMESTAMP`` means all are.
    """

    at: datetime
    id: str = ""

    def encode(self) -> str:
        stamp = self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{stamp}.{self.at.microsecond // 1000:03d}Z#{self.id}"

    @classmethod
    def decode(cls, text: str, *, system: str = "") -> Watermark:
        stamp, sep, id_ = text.partition("#")
        try:
            at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            at = None
        if not sep or at is None or at.tzinfo is None:
            raise FatalConnectorError(
                f"unreadable watermark {text!r}: clear it (the next pull starts from the beginning)",
                system=system,
            )
        return cls(at.astimezone(UTC), id_)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of up to ``size`` items, in order, without holding more than one batch."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Connector(ABC):
    """What the sync cycle needs from one system. Implementations: SalesforceConnector, HubSpotConnector."""

    system: ClassVar[System]
    objects: ClassVar[tuple[str, ...]]
    # The most changes one push() call sends in one request (the cycle batches intents to it).
    batch_limit: ClassVar[int]

    @abstractmethod
    def pull(
        self, object: str, since: str | None = None, *, fields: Sequence[str] | None = None
    ) -> Iterator[Page]:
        """Pages of records of ``object`` changed after ``since`` (all records when None), oldest first.

        Deleted (Salesforce) and archived (HubSpot) records come with ``deleted=True``. ``fields`` defaults
        to the connector's configured fields for the object.
        """

    def pull_many(self, since: Mapping[str, str | None]) -> Iterator[tuple[str, Page]]:
        """Pages of several objects, each changed after its watermark (``object -> since``), with its object.

        The default pulls the objects one after another; a connector whose API can ask for several objects'
        changes in one call (Salesforce: ``/composite``) overrides it, as does one that reads some objects
        another way at once (HubSpot's first read: contacts searched while companies and deals are listed).
        Each object's pages come in their own order; pages of different objects may interleave.
        """
        for object, mark in since.items():
            for page in self.pull(object, since=mark):
                yield object, page

    @abstractmethod
    def read(
        self, object: str, ids: Iterable[str], *, fields: Sequence[str] | None = None
    ) -> Iterator[list[RawRecord]]:
        """The records with these ids, in batches as the API returns them; unknown ids are left out."""

    @abstractmethod
    def push_batches(self, object: str, changes: Iterable[Change]) -> Iterator[list[PushResult]]:
        """Send ``changes`` in batches as large as the API allows, yielding each batch's results in order.

        Lazy: nothing is sent until iterated, and each batch is sent only when the previous one's results
        were taken, so a caller can record results batch by batch. A record the system rejects is a failed
        result; the rest of the batch proceeds. Raises BudgetExhausted, RetriableError after retries, or
        FatalConnectorError/AuthError for failures no record can be blamed for.
        """

    def push(self, object: str, changes: Iterable[Change]) -> list[PushResult]:
        """All results of ``push_batches``, one per change, in the changes' order."""
        return [result for batch in self.push_batches(object, changes) for result in batch]

    @abstractmethod
    def list_reps(self, *, full: bool = True) -> list[RepRecord]:
        """Everyone who can own records, inactive and archived ones included (flagged). ``full=False`` is
        the cheap listing a cycle makes every time: only what a connector can list in one call without
        the rest (HubSpot: the active owners; Salesforce: nothing, its Users come with the pull)."""

    @abstractmethod
    def call_counts(self) -> dict[str, int]:
        """API calls sent so far (retries included), by kind, e.g. ``{"query": 3, "composite PATCH": 50}``."""

    @abstractmethod
    def budget_state(self) -> BudgetState:
        """Today's spend against the daily budget."""

    def rate_limited(self) -> int:
        """Responses so far that refused a call for a rate or request limit (429s, retries included)."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook: most connectors hold nothing to release
        """Release connections."""

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
