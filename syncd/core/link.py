"""Pure helpers for linking records into persons and accounts, and for reading what changed on a record.

The cycle does the I/O (``syncd.cycle``); this module only looks at values:

- which entity an object holds (person, account, deal) and which record of a person or account is its
  *primary* one in each system (:func:`group`), the one whose values the engine reads;
- the identity values a record is linked by: its stored cross-id, its normalised email and domain;
- which fields changed between two versions of a record, whether that change is syncd's own write coming
  back (an *echo*), and whether it is a human's owner change (an *override*).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from syncd.core.systems import (
    ACCOUNT_OBJECTS,
    CHANGED_BY_FIELD,
    OWNER_FIELD,
    PERSON_OBJECTS,
)
from syncd.core.types import LinkRow, RecordRow, content_hash

if TYPE_CHECKING:
    # Imported for types only: importing syncd.core.mapping first would enter the mapping <-> rules import cycle
    # from the wrong side.
    from syncd.core.mapping import Mapping as FieldMapping

Entity = Literal["person", "account", "deal"]

# Bookkeeping the systems change on every write, and values they derive: never content. ``Name`` is the
# Salesforce name computed from FirstName and LastName.
META_FIELDS: dict[str, frozenset[str]] = {
    "salesforce": frozenset({"SystemModstamp", "LastModifiedDate", "LastModifiedById", "Name"}),
    "hubspot": frozenset({"lastmodifieddate", "hs_lastmodifieddate", "hs_updated_by_user_id"}),
}
_ENTITIES: dict[tuple[str, str], Entity] = {
    ("hubspot", "contacts"): "person",
    ("hubspot", "companies"): "account",
    ("hubspot", "deals"): "deal",
    ("salesforce", "Lead"): "person",
    ("salesforce", "Contact"): "person",
    ("salesforce", "Account"): "account",
    ("salesforce", "Opportunity"): "deal",
}
_SF_PREFIX = {"00Q": "Lead", "003": "Contact", "001": "Account", "006": "Opportunity"}


def entity_of(system: str, object: str) -> Entity:
    """Person, account or deal: what one object of a system holds."""
    return _ENTITIES[(system, object)]


def salesforce_object_of(record_id: str) -> str | None:
    """The sObject a Salesforce id belongs to, from its key prefix (None when syncd does not pull it)."""
    return _SF_PREFIX.get(record_id[:3])


def content(system: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A record's fields without the bookkeeping that changes on every write."""
    meta = META_FIELDS[system]
    return {k: v for k, v in data.items() if k not in meta}


def record_hash(system: str, data: Mapping[str, Any]) -> str:
    """The hash the ledger compares to tell a changed record: of its content only (see ``META_FIELDS``)."""
    return content_hash(content(system, data))


def identity(
    mapping: FieldMapping, system: str, object: str, data: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """(normalised email, normalised domain) of a record, read through the mapping's ``email`` and
    ``domain`` fields; a record whose values cannot be read has neither (it then links by cross-id only)."""
    # Only the identity fields are read, so that a bad value elsewhere in the record does not unlink it.
    try:
        values = mapping.to_logical(system, object, data, only=_IDENTITY_FIELDS)  # type: ignore[arg-type]
    except ValueError:
        return None, None
    return _norm(values.get("email")), _norm(values.get("domain"))


_IDENTITY_FIELDS = frozenset({"email", "domain"})


def _norm(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


def cross_id(mapping: FieldMapping, system: str, object: str, data: Mapping[str, Any]) -> str | None:
    """The id of the linked record in the other system, as stored on this record (None when blank)."""
    entity = entity_of(system, object)
    if entity == "deal":
        return None
    ident = mapping.identity[entity]
    name = ident.hubspot_link if system == "hubspot" else ident.salesforce_link
    value = data.get(name)
    if value in (None, ""):
        return None
    return str(value).strip() or None


def cross_id_field(mapping: FieldMapping, system: str, entity: str) -> str:
    """The field that stores the other system's id on this system's records of an entity."""
    ident = mapping.identity[entity]
    return ident.hubspot_link if system == "hubspot" else ident.salesforce_link


def is_converted(record: RecordRow) -> bool:
    """A Salesforce Lead converted to a Contact: read-only from then on, followed to its Contact."""
    return record.object == "Lead" and bool(record.data.get("IsConverted"))


# ------------------------------------------------------------------------------------------- grouping


@dataclass(frozen=True, slots=True)
class Group:
    """The records of one person or account, sorted out: the primary record per system, the others.

    ``hubspot`` and ``salesforce`` are the records whose values the engine reads and whose cross-ids link
    the pair; ``others`` are further live records that syncd also keeps right (a duplicate Lead typed in
    again); ``readonly`` are live records syncd cannot write (converted Leads); ``gone`` are the key's deleted
    (Salesforce) or archived and merged-away (HubSpot) records, which syncd never writes or re-creates on its
    own (see ``syncd.core.plan``); ``deals`` are an account's live HubSpot deals (linked by their company).
    """

    key: str
    kind: str
    hubspot: RecordRow | None = None
    salesforce: RecordRow | None = None
    others: tuple[RecordRow, ...] = ()
    readonly: tuple[RecordRow, ...] = ()
    gone: tuple[RecordRow, ...] = ()
    deals: tuple[RecordRow, ...] = ()

    @property
    def writable(self) -> tuple[RecordRow, ...]:
        """Every live record syncd may write, primaries first."""
        return tuple(r for r in (self.hubspot, self.salesforce) if r is not None) + self.others

    @property
    def empty(self) -> bool:
        return self.hubspot is None and self.salesforce is None


def _created(record: RecordRow) -> str:
    stamp = record.data.get("CreatedDate") or record.data.get("createdate") or ""
    return str(stamp)


def group(key: str, kind: str, records: Iterable[RecordRow]) -> Group:
    """Sort one key's records into primaries and others (deleted records are left out).

    Salesforce: a Contact before a Lead (a Lead converted to that Contact is the same person, read-only);
    among several, the one carrying the HubSpot primary's id, then the oldest. HubSpot: the oldest.
    """
    objects = PERSON_OBJECTS if kind == "person" else ACCOUNT_OBJECTS
    hs: list[RecordRow] = []
    sf: list[RecordRow] = []
    readonly: list[RecordRow] = []
    gone: list[RecordRow] = []
    deals: list[RecordRow] = []
    for r in records:
        if kind == "account" and (r.system, r.object) == ("hubspot", "deals"):
            if not r.deleted:
                deals.append(r)
            continue
        if r.object not in objects.get(r.system, ()):
            continue
        if r.deleted:
            gone.append(r)
            continue
        if is_converted(r):
            readonly.append(r)
        elif r.system == "hubspot":
            hs.append(r)
        else:
            sf.append(r)
    hs.sort(key=lambda r: (_created(r), _int_id(r.id), r.id))
    primary_hs = hs[0] if hs else None
    link_field = "Syncd_HubSpot_Id__c"

    def sf_rank(r: RecordRow) -> tuple[int, int, str, str]:
        carries = primary_hs is not None and str(r.data.get(link_field) or "") == primary_hs.id
        return (0 if r.object in ("Contact", "Account") else 1, 0 if carries else 1, _created(r), r.id)

    sf.sort(key=sf_rank)
    primary_sf = sf[0] if sf else None
    others = tuple(hs[1:]) + tuple(sf[1:])
    return Group(key, kind, primary_hs, primary_sf, others, tuple(readonly), tuple(gone), tuple(deals))


# The field a HubSpot survivor lists the ids merged into it in (";"-separated), and the field a Salesforce
# record deleted by a merge names the record it was merged into (SOAP API Developer Guide, merge()).
HUBSPOT_MERGED_IDS = "hs_merged_object_ids"
SALESFORCE_MASTER = "MasterRecordId"
MERGEABLE: dict[str, tuple[str, ...]] = {
    "hubspot": ("contacts", "companies"),
    "salesforce": ("Lead", "Contact", "Account"),
}


def merges_of(
    system: str, object: str, id: str, data: Mapping[str, Any], deleted: bool
) -> list[tuple[str, str]]:
    """The merges one pulled record reveals, as (merged-away id, survivor id) pairs: a HubSpot survivor's
    ``hs_merged_object_ids``, or a Salesforce Lead/Contact/Account deleted with ``MasterRecordId`` set."""
    if object not in MERGEABLE.get(system, ()):
        return []
    if system == "hubspot":
        raw = data.get(HUBSPOT_MERGED_IDS)
        if raw in (None, ""):
            return []
        return [(m, id) for m in (p.strip() for p in str(raw).split(";")) if m and m != id]
    master = data.get(SALESFORCE_MASTER)
    if deleted and master not in (None, ""):
        return [(id, str(master))]
    return []


def is_merged_away(record: RecordRow) -> bool:
    """A record deleted by a merge (a person chose another record to keep), not deleted by itself."""
    if record.system == "salesforce":
        return record.deleted and record.data.get(SALESFORCE_MASTER) not in (None, "")
    return record.deleted and record.data.get(MERGED_INTO) not in (None, "")


# Set by syncd on the ledger's copy of a HubSpot record merged away (HubSpot stops listing it).
MERGED_INTO = "_syncd_merged_into"


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def deal_counts(deals: Iterable[RecordRow]) -> tuple[int, int]:
    """(open, won) of an account's live HubSpot deals, counted like Salesforce opportunities: open while not
    closed (``hs_is_closed``), won when closed won (``hs_is_closed_won``)."""
    open_ = won = 0
    for d in deals:
        if d.deleted:
            continue
        if not _truthy(d.data.get("hs_is_closed")):
            open_ += 1
        if _truthy(d.data.get("hs_is_closed_won")):
            won += 1
    return open_, won


def _int_id(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return -1


# ------------------------------------------------------------------------------------------- changes


def changed_fields(system: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """Fields whose value differs between two versions of a record (new values; bookkeeping left out).

    With no old version every field with a value counts as changed.
    """
    meta = META_FIELDS[system]
    if old is None:
        return {k: v for k, v in new.items() if k not in meta and v not in (None, "")}
    out: dict[str, Any] = {}
    for name in new.keys() | old.keys():
        if name in meta:
            continue
        if not same_value(old.get(name), new.get(name)):
            out[name] = new.get(name)
    return out


def same_value(a: Any, b: Any) -> bool:
    """Whether two wire values mean the same: blank equals blank, numbers compare as numbers
    (HubSpot sends ``"42"`` for what Salesforce sends as ``42.0``), everything else as text."""
    if a in (None, "") or b in (None, ""):
        return a in (None, "") and b in (None, "")
    if isinstance(a, bool) or isinstance(b, bool):
        return str(a).lower() == str(b).lower()
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def is_echo(
    system: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    written: Mapping[str, Any],
) -> bool:
    """Whether a pulled change is only syncd's own write coming back.

    ``written`` maps field -> the value syncd last wrote there. A known record is an echo when every field
    that changed now holds what syncd wrote; a record seen for the first time is one when syncd created it
    (it wrote its fields) and every field it wrote still holds that value.
    """
    if not written:
        return False
    if old is None:
        return all(same_value(new.get(name), value) for name, value in written.items())
    changes = changed_fields(system, old, new)
    return bool(changes) and all(
        name in written and same_value(value, written[name]) for name, value in changes.items()
    )


@dataclass(frozen=True, slots=True)
class OwnerChange:
    """A human's change of a record's owner field: what it was, what it is, and the rep who made it."""

    previous: str | None
    current: str | None
    changed_by: str


def owner_change(
    system: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    *,
    last_written: Any,
    reps_by_change_id: Mapping[str, str],
) -> OwnerChange | None:
    """The owner change a rep made between two versions of a record, or None.

    It is one when the owner field's value changed, differs from what syncd last wrote there (else it is
    syncd's echo), and the record's last change was made by a rep (``reps_by_change_id`` maps Salesforce
    User ids / HubSpot user ids of reps to rep keys; the integration user is not in it). A record seen for
    the first time has no change to judge: its owner is where syncd starts from.
    """
    if old is None:
        return None
    name = OWNER_FIELD[system]
    before, after = old.get(name), new.get(name)
    if same_value(before, after):
        return None
    if last_written is not None and same_value(after, last_written):
        return None
    by = new.get(CHANGED_BY_FIELD[system])
    rep = reps_by_change_id.get(str(by)) if by not in (None, "") else None
    if rep is None:
        return None
    return OwnerChange(
        None if before in (None, "") else str(before), None if after in (None, "") else str(after), rep
    )


@dataclass
class PageLinks:
    """Keys handed out while linking one page of records, so that records of the same page that share an
    email, a domain or a cross-id land on the same new key."""

    by_email: dict[str, str] = field(default_factory=dict)
    by_domain: dict[str, str] = field(default_factory=dict)
    by_ref: dict[tuple[str, str], str] = field(default_factory=dict)

    def remember(self, key: str, system: str, id: str, email: str | None, domain: str | None) -> None:
        self.by_ref[(system, id)] = key
        if email:
            self.by_email.setdefault(email, key)
        if domain:
            self.by_domain.setdefault(domain, key)


def first(values: Sequence[str] | None) -> str | None:
    """The first of several candidate keys (they come sorted), or None."""
    return values[0] if values else None


# A record's references to other records, strongest first: (system, id, how).
Named = dict[str, list[tuple[str, str, str]]]
# Cross-id -> (its key when linked, its object when staged), per system.
Targets = Mapping[str, Mapping[str, tuple[str | None, str | None]]]


def named_records(mapping: FieldMapping, system: str, object: str, page: Sequence[RecordRow]) -> Named:
    """Per record of a page, the records it names: the Contact a Lead was converted to, then the record its
    stored cross-id names in the other system."""
    other = "hubspot" if system == "salesforce" else "salesforce"
    named: Named = {}
    for r in page:
        refs = []
        if object == "Lead" and r.data.get("IsConverted") and r.data.get("ConvertedContactId"):
            refs.append(("salesforce", str(r.data["ConvertedContactId"]), "converted"))
        target = cross_id(mapping, system, object, r.data)
        if target is not None:
            refs.append((other, target, "stored_id"))
        named[r.id] = refs
    return named


@dataclass(frozen=True)
class PageKeys:
    """The keys chosen for one page of unlinked records; ``seeds`` are the records new keys are minted for."""

    chosen: list[tuple[RecordRow, str, str]]
    seeds: list[str]

    def links(
        self,
        fresh: Sequence[str],
        system: str,
        object: str,
        named: Named,
        targets: Targets,
        run_id: str | None,
    ) -> list[LinkRow]:
        """The links to store once the new keys are minted (``fresh``, one per seed, in order): each record to
        its key, and each named record that is staged but not linked yet to the same key."""
        links = []
        for r, key, how in self.chosen:
            real = fresh[int(key[4:])] if key.startswith("#new") else key
            links.append(LinkRow(real, system, object, r.id, how, run_id=run_id))
            for tsys, tid, thow in named[r.id]:
                linked, target_obj = targets.get(tsys, {}).get(tid, (None, None))
                if linked is None and target_obj is not None:
                    links.append(LinkRow(real, tsys, target_obj, tid, thow, run_id=run_id))
        return links


def assign_keys(
    kind: str,
    system: str,
    object: str,
    page: Sequence[RecordRow],
    named: Named,
    targets: Targets,
    match: Mapping[str, str | None],
) -> PageKeys:
    """Choose a key for each unlinked record of a page: the key of a record it names (``targets``), else the
    key of its email (persons) or domain (accounts) in the ledger (``match``: record id -> key) or earlier
    in the page, else a new key (a placeholder ``#newN`` for the N-th seed)."""
    local = PageLinks()
    chosen: list[tuple[RecordRow, str, str]] = []
    seeds: list[str] = []
    for r in page:
        key: str | None = None
        how = "new"
        for tsys, tid, thow in named[r.id]:
            key = targets.get(tsys, {}).get(tid, (None, None))[0] or local.by_ref.get((tsys, tid))
            if key is not None:
                how = thow
                break
        if key is None:
            value = r.email if kind == "person" else r.domain
            key = match.get(r.id) or (
                (local.by_email if kind == "person" else local.by_domain).get(value) if value else None
            )
            how = "email" if kind == "person" else "domain"
        if key is None:
            key = f"#new{len(seeds)}"
            seeds.append(f"{system}:{object}:{r.id}")
            how = "new"
        local.remember(
            key,
            system,
            r.id,
            r.email if kind == "person" else None,
            r.domain if kind == "account" else None,
        )
        for tsys, tid, _ in named[r.id]:
            local.by_ref.setdefault((tsys, tid), key)
        chosen.append((r, key, how))
    return PageKeys(chosen, seeds)
