"""The planner: decisions + the records as they are now -> the writes that make the systems agree. Pure.

For each record of a decided person or account, the planner asks the mapping which field writes would make
the record show the decision (owner, stage, score), fill the blanks the mapping says to fill, and store the
other system's id (so the link survives an email change). It skips what is already right:

- a field that already shows the value (compared as logical values: HubSpot's ``evangelist`` already *is*
  the ``customer`` stage, so it is never "corrected" backwards);
- a field syncd itself wrote with this value after the record was last pulled (*echo suppression*: the
  ledger's copy is older than syncd's own write, so the difference is not real);
- records that cannot take writes: deleted ones, converted Leads, records held in quarantine;
- owners a system cannot express (a queue on HubSpot or on a Salesforce Contact): that system keeps its owner,
  except that a HubSpot owner who is archived, deactivated or unknown is cleared (the owner field's
  ``queue_in_hubspot = "clear_inactive"``, the default): a record waiting in a Salesforce queue is better
  unassigned in HubSpot than left with a rep who left.

A human's manual owner change needs nothing here: the engine keeps the overriding owner in the decision,
so the planner finds the record where the human put it already right and only the other system to update.

A HubSpot-only person the engine hands to sales gets a Salesforce Lead *create*, keyed by the HubSpot id (the
connector upserts on the external-id field, so a replayed create updates instead of duplicating); once the
Lead exists, :func:`followup` stores its id on the HubSpot contact. A person whose Salesforce Lead or Contact
a person deleted gets no Lead again unless the policy's ``[handoffs] recreate_deleted`` allows it
(:func:`deleted_by_person`, :func:`recreate_allowed`); a record merged away is not a deletion (its person
lives on in the survivor).

An account's HubSpot deals get its decided owner when the policy says so (``[accounts] deal_owner =
"account"``, the default): a deal's owner follows its company, written in batches like every other write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from syncd.core.link import Group, cross_id_field, entity_of, is_merged_away, same_value
from syncd.core.systems import OWNER_FIELD
from syncd.core.types import Decision, Intent, RecordRow, RepDirectory, WriteRow

if TYPE_CHECKING:
    from syncd.core.mapping import Mapping as FieldMapping
    from syncd.core.rules.policy import Policy

__all__ = [
    "ENGINE_FIELDS",
    "HUBSPOT_LIFECYCLE_ORDER",
    "KINDS",
    "Action",
    "FieldChange",
    "Tally",
    "followup",
    "plan_key",
]

# What a field write is for: the three decided values, the stored cross-id, a blank filled per the mapping.
KINDS = ("owner", "stage", "score", "link", "field")
ENGINE_FIELDS = ("owner", "stage", "score")
# HubSpot's own order of lifecycle stages: a write that moves a record back must clear the value first.
HUBSPOT_LIFECYCLE_ORDER = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
_LIFECYCLE_RANK = {v: i for i, v in enumerate(HUBSPOT_LIFECYCLE_ORDER)}
# A Salesforce Lead cannot be created without these; a HubSpot contact may lack both.
_LEAD_REQUIRED_DEFAULTS = {"Company": "[not provided]", "LastName": "[not provided]"}

WriteKey = tuple[str, str, str, str]
"""(system, object, record id, field) of one field syncd wrote."""


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field write: the system field, what it is for (one of ``KINDS``), its value now and after."""

    field: str
    kind: str
    old: Any
    new: Any
    # How people read the values, when not as they are on the wire (an owner id shown as the rep's email).
    old_label: str | None = None
    new_label: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """The writes one record needs: an update of ``record_id``, or the create of a record under
    ``create_key``. ``owner`` is the decided owner (plans are grouped by it); ``label`` names the record
    for people (an email, an account name). A ``prerequisite`` clears a value so that the next action on
    the same record may set it (HubSpot's backward lifecycle move); it is not counted as a change."""

    system: str
    object: str
    key: str
    changes: tuple[FieldChange, ...]
    reason: str
    owner: str | None = None
    record_id: str | None = None
    create_key: str | None = None
    label: str = ""
    prerequisite: bool = False

    @property
    def is_create(self) -> bool:
        return self.create_key is not None

    @property
    def fields(self) -> dict[str, Any]:
        return {c.field: c.new for c in self.changes}

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of change this action makes, each once (``create`` for a create)."""
        if self.is_create:
            return ("create",)
        return tuple(dict.fromkeys(c.kind for c in self.changes))

    def intent(self, intent_id: str | None = None) -> Intent:
        """The outbox intent that carries this action (``intent_id`` fixes its id, for tests)."""
        intent = Intent(
            system=self.system,
            object=self.object,
            fields=self.fields,
            reason=self.reason,
            record_id=self.record_id,
            create_key=self.create_key,
            key=self.key,
        )
        return intent if intent_id is None else replace(intent, id=intent_id)


# ------------------------------------------------------------------------------------------- planning


def plan_key(
    decision: Decision,
    group: Group,
    mapping: FieldMapping,
    directory: RepDirectory,
    *,
    merged: Mapping[str, Any],
    last_writes: Mapping[WriteKey, WriteRow] | None = None,
    held: Container[tuple[str, str, str]] = (),
    policy: Policy | None = None,
    now: datetime | None = None,
) -> list[Action]:
    """The actions that make one person's or account's records show its decision.

    ``merged`` holds the key's logical values (after the mapping's precedence): the source of the blanks to
    fill and of a created Lead's fields. ``last_writes`` are syncd's latest writes to these records;
    ``held`` the (system, object, id) of records in quarantine and not yet due for a retry. ``policy`` (with
    ``now``) says whether a Lead a person deleted may be created again and whether deals follow their
    account's owner; without it deleted Leads are never re-created and deals are left alone.
    """
    writes = last_writes if last_writes is not None else {}
    wanted: dict[str, Any] = {"owner": decision.owner, "stage": decision.stage, "score": decision.score}
    actions: list[Action] = []
    for record in group.writable:
        if (record.system, record.object, record.id) in held:
            continue
        changes: list[FieldChange] = []
        writable = mapping.writable(record.system, record.object)
        for name in ENGINE_FIELDS:
            value = wanted[name]
            # None: the engine leaves the field as it is (no owner could be decided, a prospect's stage).
            if value is None or name not in writable:
                continue
            changes.extend(_changes(mapping, directory, record, name, value, name, writes))
        for name, lf in mapping.fields.items():
            if lf.source == "engine" or name not in writable:
                continue
            value = merged.get(name)
            if value is None:
                continue
            changes.extend(_changes(mapping, directory, record, name, value, "field", writes))
        link = _link_change(mapping, group, record, writes)
        if link is not None:
            changes.append(link)
        if not changes:
            continue
        changes = _dedupe(changes)
        clear = _backward_clear(record, changes)
        label = _label(record)
        if clear is not None:
            actions.append(
                Action(
                    record.system,
                    record.object,
                    group.key,
                    (clear,),
                    "clear lifecyclestage: HubSpot moves a stage back only from blank",
                    decision.owner,
                    record_id=record.id,
                    label=label,
                    prerequisite=True,
                )
            )
        actions.append(
            Action(
                record.system,
                record.object,
                group.key,
                tuple(changes),
                _reason(decision, changes),
                decision.owner,
                record_id=record.id,
                label=label,
            )
        )
    create = _create_lead(decision, group, mapping, directory, merged, held, policy, now)
    if create is not None:
        actions.append(create)
    if policy is not None and policy.deal_owner == "account":
        actions.extend(_deal_owners(decision, group, mapping, directory, held))
    return actions


def deleted_by_person(group: Group) -> tuple[RecordRow, ...]:
    """The key's Salesforce Leads and Contacts that were deleted, not merged away (a merge keeps the person
    in the survivor; a deletion is a person's decision that this record should not exist)."""
    return tuple(
        r
        for r in group.gone
        if r.system == "salesforce" and r.object in ("Lead", "Contact") and not is_merged_away(r)
    )


def recreate_allowed(
    decision: Decision, deleted: Iterable[RecordRow], policy: Policy | None, now: datetime | None
) -> bool:
    """Whether a Lead may be created for a person whose Salesforce record a person deleted, per the policy's
    ``[handoffs] recreate_deleted``: "never" (the default), "after_days N" since the last deletion,
    "on_handoff" (a hand-off decided after the deletion)."""
    deleted = tuple(deleted)
    if not deleted:
        return True
    mode, days = policy.recreate_deleted if policy is not None else ("never", 0.0)
    if mode == "on_handoff":
        return decision.handoff is not None
    if mode == "after_days" and now is not None:
        last = max((r.modified_at for r in deleted if r.modified_at is not None), default=None)
        return last is not None and now - last >= timedelta(days=days)
    return False


def _deal_owners(
    decision: Decision,
    group: Group,
    mapping: FieldMapping,
    directory: RepDirectory,
    held: Container[tuple[str, str, str]],
) -> list[Action]:
    """An account's HubSpot deals get the account's decided owner (the owner HubSpot companies take)."""
    if group.kind != "account" or not group.deals or decision.owner is None or "owner" not in mapping.fields:
        return []
    name = OWNER_FIELD["hubspot"]
    wire = mapping.writes("owner", "hubspot", "companies", decision.owner, {}, directory=directory)
    owner_id = wire.get(name)
    if owner_id in (None, ""):
        # The owner is not a HubSpot owner (a Salesforce queue): deals keep theirs.
        return []
    out = []
    for deal in group.deals:
        current = deal.data.get(name)
        if (deal.system, deal.object, deal.id) in held or same_value(current, owner_id):
            continue
        change = FieldChange(
            name, "owner", current, owner_id, _owner_label(directory, "hubspot", current), decision.owner
        )
        out.append(
            Action(
                "hubspot",
                "deals",
                group.key,
                (change,),
                f"deal owner follows its account: {decision.owner} ({decision.rule})",
                decision.owner,
                record_id=deal.id,
                label=str(deal.data.get("dealname") or deal.id),
            )
        )
    return out


def _changes(
    mapping: FieldMapping,
    directory: RepDirectory,
    record: RecordRow,
    name: str,
    value: Any,
    kind: str,
    writes: Mapping[WriteKey, WriteRow],
) -> list[FieldChange]:
    system, obj = record.system, record.object
    lf = mapping.fields[name]
    bindings = lf.bindings.get((system, obj), ())  # type: ignore[arg-type]
    if not any(b.write != "never" for b in bindings):
        return []
    wire = mapping.writes(name, system, obj, value, record.data, directory=directory)  # type: ignore[arg-type]
    out = []
    for binding in bindings:
        if binding.field not in wire:
            continue
        new = wire[binding.field]
        current = record.data.get(binding.field)
        # The record's value may already mean the wanted stage (HubSpot "evangelist" is a customer).
        if (
            binding.value_map is not None
            and current not in (None, "")
            and mapping.value_maps[binding.value_map].read.get(str(current)) == value
        ):
            continue
        written = writes.get((system, obj, record.id, binding.field))
        if written is not None and _after_pull(written.at, record) and same_value(written.value, new):
            continue
        if name == "owner":
            before = _owner_label(directory, system, current)
            # A cleared owner shows as blank, not as the queue the record cannot hold.
            after = None if new == "" else str(value)
            out.append(FieldChange(binding.field, kind, current, new, before, after))
        else:
            out.append(FieldChange(binding.field, kind, current, new))
    return out


def _owner_label(directory: RepDirectory, system: str, owner_id: Any) -> str | None:
    if owner_id in (None, ""):
        return None
    if system == "salesforce":
        return directory.owner_from_salesforce(str(owner_id)) or str(owner_id)
    return directory.owner_from_hubspot(str(owner_id)) or str(owner_id)


def _after_pull(written_at: datetime, record: RecordRow) -> bool:
    return record.seen_at is None or written_at >= record.seen_at


def _link_change(
    mapping: FieldMapping, group: Group, record: RecordRow, writes: Mapping[WriteKey, WriteRow]
) -> FieldChange | None:
    """The other system's id on a primary record, when it does not carry it yet."""
    if record is group.hubspot:
        other = group.salesforce
    elif record is group.salesforce:
        other = group.hubspot
    else:
        return None
    if other is None:
        return None
    name = cross_id_field(mapping, record.system, group.kind)
    current = record.data.get(name)
    if same_value(current, other.id):
        return None
    written = writes.get((record.system, record.object, record.id, name))
    if written is not None and _after_pull(written.at, record) and same_value(written.value, other.id):
        return None
    return FieldChange(name, "link", current, other.id)


def _dedupe(changes: list[FieldChange]) -> list[FieldChange]:
    # A field bound by two logical fields (Lead.Email for email and domain) is written once: the first wins.
    seen: set[str] = set()
    out = []
    for change in changes:
        if change.field not in seen:
            seen.add(change.field)
            out.append(change)
    return out


def _backward_clear(record: RecordRow, changes: list[FieldChange]) -> FieldChange | None:
    if record.system != "hubspot":
        return None
    for change in changes:
        if change.field != "lifecyclestage" or change.old in (None, "") or change.new in (None, ""):
            continue
        before = _LIFECYCLE_RANK.get(str(change.old))
        after = _LIFECYCLE_RANK.get(str(change.new))
        if before is not None and after is not None and after < before:
            return FieldChange("lifecyclestage", "stage", change.old, "")
    return None


def _create_lead(
    decision: Decision,
    group: Group,
    mapping: FieldMapping,
    directory: RepDirectory,
    merged: Mapping[str, Any],
    held: Container[tuple[str, str, str]],
    policy: Policy | None = None,
    now: datetime | None = None,
) -> Action | None:
    contact = group.hubspot
    if (
        not decision.create_salesforce_lead
        or group.kind != "person"
        or group.salesforce is not None
        or group.readonly
        or contact is None
        or (contact.system, contact.object, contact.id) in held
        or not recreate_allowed(decision, deleted_by_person(group), policy, now)
    ):
        return None
    values = dict(merged)
    values.update({"owner": decision.owner, "stage": decision.stage, "score": decision.score})
    fields: dict[str, Any] = {}
    for name in mapping.fields:
        value = values.get(name)
        if value is None:
            continue
        for wire_field, wire in mapping.writes(
            name, "salesforce", "Lead", value, {}, directory=directory
        ).items():
            fields.setdefault(wire_field, wire)
    for name, default in _LEAD_REQUIRED_DEFAULTS.items():
        if fields.get(name) in (None, ""):
            fields[name] = default
    fields[cross_id_field(mapping, "salesforce", "person")] = contact.id
    changes = tuple(FieldChange(k, "create", None, v) for k, v in fields.items())
    team = decision.handoff.to_team if decision.handoff else decision.team
    return Action(
        "salesforce",
        "Lead",
        group.key,
        changes,
        f"create Salesforce Lead: HubSpot-only person now owned by {team}",
        decision.owner,
        create_key=contact.id,
        label=_label(contact),
    )


def followup(intent: Intent, new_id: str, mapping: FieldMapping) -> Action | None:
    """After a create: the update that stores the new record's id on the record it was created for.

    A Salesforce Lead created for HubSpot contact N (its create key) gets its id written to N's
    ``syncd_salesforce_id``, so both systems hold the other's id.
    """
    if intent.create_key is None or intent.system != "salesforce" or intent.key is None:
        return None
    entity, hs_object = (
        ("person", "contacts") if intent.object in ("Lead", "Contact") else ("account", "companies")
    )
    name = cross_id_field(mapping, "hubspot", entity)
    return Action(
        "hubspot",
        hs_object,
        intent.key,
        (FieldChange(name, "link", None, new_id),),
        f"store the id of the Salesforce {intent.object} created for it",
        record_id=intent.create_key,
    )


def _label(record: RecordRow) -> str:
    data = record.data
    for name in ("email", "Email", "name", "Name"):
        value = data.get(name)
        if value not in (None, ""):
            return str(value).strip()
    return record.id


def _reason(decision: Decision, changes: Iterable[FieldChange]) -> str:
    changes = tuple(changes)
    kinds = dict.fromkeys(c.kind for c in changes)
    parts = []
    cleared = next((c for c in changes if c.kind == "owner" and c.new == ""), None)
    if cleared is not None:
        parts.append(
            f"clear owner {cleared.old_label or cleared.old} (archived or unknown): "
            f"{decision.owner} ({decision.rule}) is a Salesforce queue, which this system cannot hold"
        )
    elif "owner" in kinds:
        parts.append(f"owner {decision.owner} ({decision.rule})")
    if "stage" in kinds:
        parts.append(f"stage {decision.stage}")
    if "score" in kinds:
        parts.append(f"score {decision.score}")
    if "link" in kinds:
        parts.append("store the linked record's id")
    if "field" in kinds:
        parts.append("fill blank fields")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------- counting


@dataclass
class Tally:
    """Counts of planned or made changes: records per system and kind, per rep, with a few samples.

    ``changed[system][kind]`` counts records (a record whose owner and stage change counts once under
    each); ``created[system]`` counts creates. Prerequisite actions are not counted.
    """

    samples_per_group: int = 3
    changed: dict[str, Counter[str]] = field(default_factory=dict)
    created: Counter[str] = field(default_factory=Counter)
    by_rep: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    samples: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, action: Action) -> None:
        if action.prerequisite:
            return
        counts = self.changed.setdefault(action.system, Counter())
        if action.is_create:
            self.created[action.system] += 1
        for kind in action.kinds:
            counts[kind] += 1
            group = (action.system, kind)
            self.by_rep.setdefault(group, Counter())[action.owner or "(unchanged)"] += 1
            samples = self.samples.setdefault(group, [])
            if len(samples) < self.samples_per_group:
                samples.append(_sample(action, kind))

    def merge(self, other: Tally) -> None:
        for system, counts in other.changed.items():
            self.changed.setdefault(system, Counter()).update(counts)
        self.created.update(other.created)
        for group, reps in other.by_rep.items():
            self.by_rep.setdefault(group, Counter()).update(reps)
        for group, samples in other.samples.items():
            mine = self.samples.setdefault(group, [])
            mine.extend(samples[: max(0, self.samples_per_group - len(mine))])

    def count(self, system: str, kind: str) -> int:
        if kind == "create":
            return self.created.get(system, 0)
        return self.changed.get(system, Counter()).get(kind, 0)

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.changed.values())

    def counts(self) -> dict[str, dict[str, int]]:
        """system -> kind -> records, every kind listed (zeros included)."""
        return {
            system: {kind: self.count(system, kind) for kind in (*KINDS, "create")}
            for system in ("salesforce", "hubspot")
        }

    def to_json(self) -> dict[str, Any]:
        groups = []
        for (system, kind), reps in sorted(self.by_rep.items()):
            groups.append(
                {
                    "system": system,
                    "action": kind,
                    "count": sum(reps.values()),
                    "by_rep": dict(sorted(reps.items(), key=lambda kv: (-kv[1], kv[0]))),
                    "samples": list(self.samples.get((system, kind), [])),
                }
            )
        return {"counts": self.counts(), "groups": groups}


def _sample(action: Action, kind: str) -> str:
    where = f"{action.object} {action.record_id or 'new'}"
    if action.label and action.label != action.record_id:
        where += f" ({action.label})"
    if kind == "create":
        return f"{where}: {action.reason}"
    shown = [c for c in action.changes if c.kind == kind][:2]
    text = ", ".join(
        f"{c.field} {_show(c.old_label or c.old)} -> {_show(c.new_label or c.new)}" for c in shown
    )
    return f"{where}: {text}"


def _show(value: Any) -> str:
    if value in (None, ""):
        return "(blank)"
    return str(value)


def is_clear(intent: Intent) -> bool:
    """An intent that only clears the HubSpot lifecycle stage (the prerequisite of setting it backwards)."""
    return dict(intent.fields) == {"lifecyclestage": ""}


def action_from_intent(intent: Intent, mapping: FieldMapping) -> Action:
    """An intent read back from the outbox as an action, its fields classified by what they are for."""
    changes = tuple(
        FieldChange(
            name,
            "create" if intent.create_key else _kind_of(mapping, intent.system, intent.object, name),
            None,
            value,
        )
        for name, value in intent.fields.items()
    )
    return Action(
        intent.system,
        intent.object,
        intent.key or "",
        changes,
        intent.reason,
        record_id=intent.record_id,
        create_key=intent.create_key,
        prerequisite=is_clear(intent),
    )


def _kind_of(mapping: FieldMapping, system: str, obj: str, name: str) -> str:
    entity = entity_of(system, obj)
    if entity != "deal" and name == cross_id_field(mapping, system, entity):
        return "link"
    for logical in ("owner", "stage", "score"):
        lf = mapping.fields.get(logical)
        if lf is not None and any(b.field == name for b in lf.bindings.get((system, obj), ())):  # type: ignore[arg-type]
            return logical
    return "field"


def predicted_followup(action: Action, mapping: FieldMapping) -> Action:
    """The follow-up a create would queue once it succeeds, as a dry run predicts it."""
    nxt = followup(action.intent(), "(new)", mapping)
    if nxt is None:
        raise ValueError(f"{action.system} {action.object} is not a create with a follow-up")
    return nxt
