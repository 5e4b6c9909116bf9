"""Value objects shared by the mapping layer, the engine, the planner and the ledger.

Everything here is frozen and typed. Datetimes are timezone-aware UTC; ids are strings. Owners are *rep keys*
(a rep's normalised email, e.g. ``jack.miller@northwind.example``) or *queue owners* (``queue:<Queue Name>``,
see :func:`queue_owner`): the engine never sees a raw Salesforce or HubSpot id, the :class:`RepDirectory`
translates at the edges. The ledger maps these values to rows at its own edge.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, overload

import orjson

Kind = Literal["person", "account"]
QUEUE_PREFIX = "queue:"


_last_intent_ns = 0


def intent_id() -> str:
    """A new intent id: 32 hex digits, the creation time in nanoseconds (strictly increasing within a
    process) then 64 random bits. Ids sort by creation time, so the outbox's index on them grows at its end
    instead of being rewritten all over by each batch of intents (a random id touched one index page per
    intent)."""
    global _last_intent_ns
    _last_intent_ns = max(time.time_ns(), _last_intent_ns + 1)
    return f"{_last_intent_ns:016x}{secrets.token_hex(8)}"


def queue_owner(name: str) -> str:
    """The owner value that stands for a Salesforce queue, e.g. ``queue:Unassigned Leads``."""
    return QUEUE_PREFIX + name


def is_queue(owner: str | None) -> bool:
    """Whether an owner value names a queue rather than a rep."""
    return owner is not None and owner.startswith(QUEUE_PREFIX)


def queue_name(owner: str) -> str:
    """The queue's name in an owner value made by :func:`queue_owner`."""
    return owner[len(QUEUE_PREFIX) :]


def rep_key(email: str) -> str:
    """A rep's key: the email, trimmed and lower-cased (both systems compare emails case-insensitively)."""
    return email.strip().lower()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _dt(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: syncd stores UTC with an offset")
    return parsed.astimezone(UTC)


def _required_dt(row: Mapping[str, Any], name: str) -> datetime:
    value = _dt(row.get(name))
    if value is None:
        raise ValueError(f"row has no {name}")
    return value


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# ------------------------------------------------------------------------------------------------- reps


@dataclass(frozen=True, slots=True)
class Rep:
    """One person who can own records, as the systems list them, linked across systems by email."""

    key: str
    name: str = ""
    salesforce_id: str | None = None
    hubspot_owner_id: str | None = None
    # False when the Salesforce User is deactivated or the HubSpot owner archived: such a rep owns nothing.
    active: bool = True


@dataclass(frozen=True, slots=True)
class Queue:
    """A Salesforce queue (Group of Type 'Queue'): a place a Lead can wait for a rep."""

    name: str
    salesforce_id: str | None = None
    developer_name: str = ""


class RepDirectory:
    """Translates between rep keys / queue owners and each system's owner ids.

    Built by the cycle from the connectors' rep listings; the mapping layer uses it to read and write the
    ``owner`` logical field, the engine to know who is active in the systems.
    """

    __slots__ = ("_by_hs", "_by_sf", "_queue_by_sf", "queues", "reps")

    def __init__(self, reps: Iterable[Rep] = (), queues: Iterable[Queue] = ()) -> None:
        self.reps: dict[str, Rep] = {r.key: r for r in reps}
        self.queues: dict[str, Queue] = {q.name: q for q in queues}
        self._by_sf = {r.salesforce_id: r.key for r in self.reps.values() if r.salesforce_id}
        self._by_hs = {r.hubspot_owner_id: r.key for r in self.reps.values() if r.hubspot_owner_id}
        self._queue_by_sf = {q.salesforce_id: q.name for q in self.queues.values() if q.salesforce_id}

    def owner_from_salesforce(self, owner_id: str | None) -> str | None:
        """The rep key or queue owner for a Salesforce OwnerId; None when unknown or blank."""
        if not owner_id:
            return None
        key = self._by_sf.get(owner_id)
        if key is not None:
            return key
        name = self._queue_by_sf.get(owner_id)
        return queue_owner(name) if name is not None else None

    def owner_from_hubspot(self, owner_id: str | None) -> str | None:
        """The rep key for a HubSpot owner id (``hubspot_owner_id``); None when unknown or blank."""
        if not owner_id:
            return None
        return self._by_hs.get(str(owner_id))

    def salesforce_owner_id(self, owner: str | None) -> str | None:
        """The Salesforce User or Queue id for a rep key or queue owner; None when the org has none."""
        if owner is None:
            return None
        if is_queue(owner):
            queue = self.queues.get(queue_name(owner))
            return queue.salesforce_id if queue else None
        rep = self.reps.get(owner)
        return rep.salesforce_id if rep else None

    def hubspot_owner_id(self, owner: str | None) -> str | None:
        """The HubSpot owner id for a rep key; None for queues (HubSpot has none) and unknown reps."""
        if owner is None or is_queue(owner):
            return None
        rep = self.reps.get(owner)
        return rep.hubspot_owner_id if rep else None

    def is_active(self, key: str) -> bool:
        """Whether the rep exists in at least one system and is active everywhere it exists."""
        rep = self.reps.get(key)
        return rep is not None and rep.active


# ------------------------------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class PersonView:
    """One linked person as the engine sees it: merged logical field values plus links.

    ``fields`` holds logical values after the mapping's precedence (``Mapping.merge``), e.g. ``email``,
    ``country``, ``stage`` (a lifecycle stage name), ``owner`` (rep key or queue owner), engagement counts.
    """

    key: str
    fields: Mapping[str, Any]
    account_key: str | None = None
    hubspot_id: str | None = None
    salesforce_id: str | None = None
    salesforce_object: Literal["Lead", "Contact"] | None = None


@dataclass(frozen=True, slots=True)
class AccountView:
    """One linked account (HubSpot company and/or Salesforce Account) as the engine sees it.

    The opportunity counts are aggregates the cycle computes from deals/opportunities of the account.
    """

    key: str
    fields: Mapping[str, Any]
    hubspot_id: str | None = None
    salesforce_id: str | None = None
    open_opportunities: int = 0
    won_opportunities: int = 0
    # The sum of its won opportunities' amounts, and its account team as (role label, rep) pairs: tiers are
    # decided from the first, an owner who left is succeeded from the second (teams.toml).
    won_amount: float = 0.0
    team: tuple[tuple[str, str], ...] = ()


# ------------------------------------------------------------------------------------------------- ledger


@dataclass(frozen=True, slots=True)
class Assignment:
    """The sticky owner of one person or account, as the ledger remembers it."""

    key: str
    owner: str
    team: str
    rule: str
    assigned_at: datetime
    influencers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Override:
    """A manual owner change a human made in one of the systems, seen by syncd at ``seen_at``."""

    key: str
    owner: str
    seen_at: datetime
    by: str = ""
    system: str = ""


@dataclass(frozen=True, slots=True)
class RoundRobinState:
    """A pool's smooth weighted round-robin state: each member's current credit and lifetime count."""

    pool: str
    credits: Mapping[str, int] = field(default_factory=dict)
    assigned: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LedgerView:
    """What the engine needs from the ledger: sticky assignments, overrides, round-robin state, day counts.

    ``daily_counts`` holds, per rep key, how many records were assigned to the rep on the current day (the
    ledger decides which day that is); the engine adds its own assignments to them to respect daily caps.
    """

    assignments: Mapping[str, Assignment] = field(default_factory=dict)
    overrides: Mapping[str, Override] = field(default_factory=dict)
    round_robin: Mapping[str, RoundRobinState] = field(default_factory=dict)
    daily_counts: Mapping[str, int] = field(default_factory=dict)
    # Per person key, until when automatic forward stage moves are held after a backward move (recycling).
    holds: Mapping[str, datetime] = field(default_factory=dict)
    # When syncd's first sync started: records created before it are the backlog (policy ``[caps]``).
    backlog_before: datetime | None = None


# ------------------------------------------------------------------------------------------------- decisions


class TraceStep(NamedTuple):
    """One rule the engine tried: its phase, name, whether it matched, the test and the values it saw."""

    phase: str
    rule: str
    matched: bool
    test: str = ""
    values: tuple[tuple[str, Any], ...] = ()

    def __str__(self) -> str:
        text = f"{self.phase}: {self.rule}: {'yes' if self.matched else 'no'}"
        if self.test:
            text += f" ({self.test})"
        if self.values:
            text += " [" + ", ".join(f"{k}={v!r}" for k, v in self.values) + "]"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "rule": self.rule,
            "matched": self.matched,
            "test": self.test,
            "values": [[k, _jsonable(v)] for k, v in self.values],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TraceStep:
        return cls(
            data["phase"],
            data["rule"],
            bool(data["matched"]),
            data.get("test", ""),
            tuple((k, v) for k, v in data.get("values", ())),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


# One raw trace entry as the engine records it: phase, rule, matched, test, fields to show, fixed values.
TraceEntry = tuple[str, str, bool, str, tuple[str, ...], tuple[tuple[str, Any], ...]]
# Several rules tried in one go: phase, per rule (name, test, fields to show), and per rule the outcome:
# True/False, or the points it gave (None: it did not apply).
TraceGroup = tuple[str, tuple[tuple[str, str, tuple[str, ...]], ...], list[bool] | list[float | None]]


class Trace(Sequence[TraceStep]):
    """A decision's trace, built into TraceSteps only when read (the engine records cheap raw entries).

    Entries name the fields whose values to show; those are read from the decision's context, with
    ``early`` overriding it for the phases evaluated before the stage was decided ("score", "stage").
    """

    __slots__ = ("_ctx", "_early", "_raw", "_steps")

    def __init__(
        self,
        raw: list[TraceEntry | TraceGroup],
        ctx: Mapping[str, Any],
        early: Mapping[str, Any] | None = None,
    ) -> None:
        self._raw = raw
        self._ctx = ctx
        self._early = early or {}
        self._steps: tuple[TraceStep, ...] | None = None

    def steps(self) -> tuple[TraceStep, ...]:
        if self._steps is None:
            ctx, early = self._ctx, self._early
            out: list[TraceStep] = []
            for entry in self._raw:
                phase = entry[0]
                if phase in ("score", "stage"):
                    look = lambda f: early[f] if f in early else ctx.get(f)  # noqa: E731
                else:
                    look = ctx.get
                if len(entry) == 3:
                    _, metas, results = entry
                    for (rule, test, fields), outcome in zip(metas, results, strict=True):
                        shown = tuple((f, look(f)) for f in fields)
                        if outcome is None or isinstance(outcome, bool):
                            out.append(TraceStep(phase, rule, bool(outcome), test, shown))
                        else:
                            out.append(
                                TraceStep(phase, rule, True, test, (*shown, ("points", round(outcome, 2))))
                            )
                    continue
                _, rule, matched, test, fields, values = entry
                if fields:
                    values = tuple((f, look(f)) for f in fields) + values
                out.append(TraceStep(phase, rule, matched, test, values))
            self._steps = tuple(out)
        return self._steps

    def rows(self, plain: Callable[[Any], Any]) -> list[list[Any]]:
        """The steps as the ledger stores them, ``[phase, rule, matched, test, [[name, plain(value)], ...]]``
        each, built straight from the raw entries (tens of thousands of traces are stored per cycle)."""
        if self._steps is not None:
            return [
                [st.phase, st.rule, st.matched, st.test, [[k, plain(v)] for k, v in st.values]]
                for st in self._steps
            ]
        ctx, early = self._ctx, self._early
        merged: Mapping[str, Any] = {**ctx, **early} if early else ctx
        out: list[list[Any]] = []
        for entry in self._raw:
            phase = entry[0]
            source = merged if phase in ("score", "stage") else ctx
            if len(entry) == 3:
                _, metas, results = entry
                for (rule, test, fields), outcome in zip(metas, results, strict=True):
                    shown = [[f, plain(source.get(f))] for f in fields]
                    if outcome is None or isinstance(outcome, bool):
                        out.append([phase, rule, bool(outcome), test, shown])
                    else:
                        shown.append(["points", plain(round(outcome, 2))])
                        out.append([phase, rule, True, test, shown])
                continue
            _, rule, matched, test, fields, values = entry
            shown = [[f, plain(source.get(f))] for f in fields]
            shown.extend([k, plain(v)] for k, v in values)
            out.append([phase, rule, matched, test, shown])
        return out

    @overload
    def __getitem__(self, index: int) -> TraceStep: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[TraceStep]: ...
    def __getitem__(self, index: int | slice) -> TraceStep | Sequence[TraceStep]:
        return self.steps()[index]

    def __len__(self) -> int:
        return len(self.steps())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Trace | tuple):
            return self.steps() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.steps())

    def __repr__(self) -> str:
        return f"Trace({list(self.steps())!r})"


class Handoff(NamedTuple):
    """A change of owning team, e.g. marketing -> sales."""

    from_team: str
    to_team: str


class Decision(NamedTuple):
    """The engine's verdict for one person or account, with the trace of every rule it tried.

    A NamedTuple rather than a frozen dataclass: the engine makes tens of thousands a second and a frozen
    dataclass costs several times more to build.

    ``owner`` is a rep key or queue owner, or None when no owner could be decided (leave it as it is).
    ``owner_changed`` says the owner differs from the sticky one (or the systems' current one);
    ``assigned_at`` is when the current owner was assigned (``now`` when it changed). ``rule`` names
    what chose the owner (a routing rule's name, ``account``, ``override``, ``sticky``, ``fallback``).
    ``create_salesforce_lead`` asks the cycle to create the Salesforce Lead of a HubSpot-only person who
    became sales-owned.
    """

    key: str
    kind: Kind
    stage: str | None
    team: str | None
    owner: str | None
    rule: str
    trace: Sequence[TraceStep]
    score: int | None = None
    influencers: tuple[str, ...] = ()
    owner_changed: bool = False
    assigned_at: datetime | None = None
    handoff: Handoff | None = None
    create_salesforce_lead: bool = False
    # Set when a backward move happened now: the ledger keeps it as the person's hold (LedgerView.holds).
    hold_until: datetime | None = None

    def assignment(self) -> Assignment | None:
        """The sticky assignment the ledger should keep for this decision (None without an owner)."""
        if self.owner is None or self.team is None or self.assigned_at is None:
            return None
        return Assignment(self.key, self.owner, self.team, self.rule, self.assigned_at, self.influencers)

    def explain(self) -> str:
        """The decision and its trace as readable lines, for ``syncd explain`` and logs."""
        head = f"{self.kind} {self.key}: stage={self.stage} team={self.team} owner={self.owner} ({self.rule})"
        if self.score is not None:
            head += f" score={self.score}"
        if self.influencers:
            head += " influencers=" + ",".join(self.influencers)
        if self.handoff:
            head += f" handoff={self.handoff.from_team}->{self.handoff.to_team}"
        if self.create_salesforce_lead:
            head += " create-salesforce-lead"
        return "\n".join([head, *("  " + str(step) for step in self.trace)])


@dataclass(frozen=True, slots=True)
class AccountFacts:
    """What a person's decision takes from their account's: the account fields person conditions read
    (``account.<field>``, with the account's decided tier and customer flag), and the account's owner and
    team. A later ``engine.decide`` of the account's persons is given these instead of deciding the account
    again (the cycle decides every account before its persons)."""

    fields: Mapping[str, Any]
    owner: str | None
    team: str | None


@dataclass(frozen=True, slots=True)
class EngineResult:
    """The output of one ``engine.decide`` call: decisions, and the state changes for the ledger to store.

    ``round_robin`` holds the new state of every pool that assigned something; ``assigned_today`` the
    number of new assignments per rep key made by this call (to add to the ledger's daily counts).
    """

    decisions: tuple[Decision, ...]
    round_robin: Mapping[str, RoundRobinState]
    assigned_today: Mapping[str, int]
    # What the persons of each account decided in this call take from it (see ``AccountFacts``).
    accounts: Mapping[str, AccountFacts] = field(default_factory=dict)

    def by_key(self) -> dict[str, Decision]:
        return {d.key: d for d in self.decisions}


# -- rows: what the ledger stores, as the cycle and the planner see it ------------------------------------

RecordKey = tuple[str, str, str]
"""(system, object, id) of one record."""


def content_hash(data: Any) -> str:
    """Hash of a JSON value's canonical form (sorted keys, compact, UTF-8): equal content gives an equal hash
    whatever the key order. orjson writes the form (every pulled record is hashed: 0.26 s against ``json``'s
    2.02 s for a 100,000-person org's 232,925 records, the same text for each of them); ``json`` writes what orjson
    refuses (integers beyond 64 bits, keys that are not strings), in the same form. The two spell a float's
    exponent differently (``1e16`` against ``1e+16``): such a record hashed by an older version reads as
    changed once, and is decided again."""
    try:
        raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class RecordRow:
    """One record as pulled from a system; ``hash`` defaults to the hash of ``data``.

    The caller may pass its own ``hash`` (say, of the mapped fields only) so that changes to volatile
    fields such as ``SystemModstamp`` do not count as content changes. ``dirty``, ``seen_run`` and
    ``seen_at`` are filled when a row is read back.
    """

    system: str
    object: str
    id: str
    data: Mapping[str, Any]
    modified_at: datetime | None = None
    deleted: bool = False
    email: str | None = None
    domain: str | None = None
    hash: str = ""
    dirty: bool = False
    seen_run: str | None = None
    seen_at: datetime | None = None

    @property
    def ref(self) -> RecordKey:
        return (self.system, self.object, self.id)


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What a bulk upsert found: counts, and the records that are new or whose content changed."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    changed: list[RecordKey] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LinkRow:
    """A record's membership in one person or account; ``how`` is one of ``LINK_METHODS``."""

    key: str
    system: str
    object: str
    id: str
    how: str
    linked_at: datetime | None = None
    run_id: str | None = None

    @property
    def ref(self) -> RecordKey:
        return (self.system, self.object, self.id)


@dataclass(frozen=True, slots=True)
class WatermarkRow:
    """How far the pulls of one system's object have been fully processed (an opaque connector cursor)."""

    system: str
    object: str
    value: str
    updated_at: datetime
    run_id: str | None


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run of syncd (a cycle, a plan): status is running, ok, failed or interrupted."""

    id: str
    kind: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    counters: dict[str, Any]
    error: str | None
    pid: int | None


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """The latest decision for one key, with the trace that explains it and the digest of the rules."""

    key: str
    digest: str
    trace: Any
    decided_at: datetime
    stage: str | None = None
    score: float | None = None
    owner: str | None = None
    team: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None

    def outcome(self) -> tuple[str | None, float | None, str | None, str | None]:
        return (self.stage, self.score, self.owner, self.team)


@dataclass(frozen=True, slots=True)
class DecisionChange:
    """One change of a key's decided stage, score, owner or team, with what it was before."""

    seq: int
    key: str
    at: datetime
    run_id: str | None
    stage: str | None
    score: float | None
    owner: str | None
    team: str | None
    prev_stage: str | None
    prev_score: float | None
    prev_owner: str | None
    prev_team: str | None
    digest: str
    trace: Any


@dataclass(frozen=True, slots=True)
class AssignmentRow:
    """A sticky owner: the rep (by email) a key stays with until a stickiness rule lets it move."""

    key: str
    rep: str
    team: str
    assigned_at: datetime
    reason: str
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Intent:
    """One write syncd means to make: set ``fields`` on ``record_id``, or create a record under ``create_key``.

    Exactly one of ``record_id`` and ``create_key`` is set. ``create_key`` is the idempotency key the
    connector sends as the external id, so replaying a create is an upsert. ``key`` is the person or account
    the write is for (used by ``explain``, and to link a created record).
    """

    system: str
    object: str
    fields: Mapping[str, Any]
    reason: str
    record_id: str | None = None
    create_key: str | None = None
    key: str | None = None
    id: str = field(default_factory=intent_id)
    run_id: str | None = None
    state: str = "pending"
    attempts: int = 0
    error: str | None = None
    result_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WriteRow:
    """The latest value syncd itself wrote to one field of one record."""

    system: str
    object: str
    record_id: str
    field: str
    value: Any
    at: datetime
    run_id: str | None = None
    intent_id: str | None = None


@dataclass(frozen=True, slots=True)
class OverrideRow:
    """A manual change of a field (the owner, usually) seen on a record, honoured until ``honoured_until``."""

    key: str
    system: str
    object: str
    record_id: str
    rep: str | None
    seen_at: datetime
    honoured_until: datetime
    field: str = "owner"
    previous: str | None = None
    changed_by: str | None = None
    run_id: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    """A record that could not be processed: why, how often it was tried, and when to try again."""

    system: str
    object: str
    record_id: str
    reason: str
    attempts: int
    first_seen_at: datetime
    last_attempt_at: datetime
    next_attempt_at: datetime
    reported: bool
    key: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class QuarantineSummary:
    """Quarantine at a glance: totals, how many are due for a retry, and counts per (system, object)."""

    total: int
    reported: int
    due: int
    by_object: dict[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class StatusView:
    """What ``syncd status`` shows from the ledger."""

    path: str
    schema_version: int
    runs: list[RunRow]
    watermarks: list[WatermarkRow]
    quarantine: QuarantineSummary
    outbox: dict[str, int]
    records: dict[tuple[str, str], int]
    keys: dict[str, int]


@dataclass(frozen=True, slots=True)
class KeyHistory:
    """Everything the ledger knows about one person or account, for ``syncd explain``."""

    key: str
    kind: str
    links: list[LinkRow]
    records: list[RecordRow]
    decision: DecisionRow | None
    history: list[DecisionChange]
    assignment: AssignmentRow | None
    overrides: list[OverrideRow]
    intents: list[Intent]
    quarantine: list[QuarantineRow]
