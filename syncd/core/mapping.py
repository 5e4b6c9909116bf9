"""Mapping files: logical fields bound to each system's fields, and the pure helpers that use them.

A mapping file (``mappings/fields.toml``) declares *logical fields* (``email``, ``country``, ``stage``,
``owner``, ...). Each binds, per object, to one or more system fields::

    [fields.country]
    type = "country"
    precedence = "salesforce"            # which system's value wins when both have one
    hubspot.contacts = { field = "country", transform = ["strip", "upper"] }
    salesforce.Lead = { field = "Country", transform = ["strip", "upper"], write = "if_blank" }

Objects: HubSpot ``contacts``/``companies``/``deals``, Salesforce ``Lead``/``Contact``/``Account``/
``Opportunity``. ``write`` is ``always`` (keep the system's field equal to the logical value), ``if_blank``
(fill it only when empty) or ``never``. ``values`` names a value map (``[value_maps.NAME]``: ``write`` maps
logical values to the system's, ``read`` adds system values read but never written). Fields with
``source = "engine"`` (``stage``, ``score``, ``owner``) take their value from the engine's decision.

HubSpot has no queues, so an owner field says what a HubSpot record gets when the decided owner is a
Salesforce queue: ``queue_in_hubspot = "clear_inactive"`` (the default) unassigns it when its HubSpot owner
is archived, deactivated or unknown, and keeps an active owner; ``"keep"`` always keeps the HubSpot owner.

The rules speak only in logical fields; :class:`Mapping` turns raw records into logical values
(:meth:`Mapping.to_logical`), merges the two systems' views (:meth:`Mapping.merge`) and turns a logical value
back into the field writes a system needs (:meth:`Mapping.writes`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Container
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from syncd.core.rules.conditions import FieldKind, TextForm
from syncd.core.rules.problems import STAGES_HINT, Problems, clip, did_you_mean, named
from syncd.core.systems import SYSTEMS, FieldSpec, OrgSchema, System
from syncd.core.types import RepDirectory, is_queue

Entity = Literal["person", "account", "deal"]
WritePolicy = Literal["always", "if_blank", "never"]
QueueInHubSpot = Literal["clear_inactive", "keep"]
Transform = Literal["strip", "lower", "upper", "domain_from_email", "domain_from_url"]
LogicalType = Literal[
    "text", "email", "domain", "country", "number", "integer", "boolean", "datetime", "date", "stage", "owner"
]
SYSTEM_LABEL = {"hubspot": "HubSpot", "salesforce": "Salesforce"}

OBJECTS: dict[System, dict[str, Entity]] = {
    "hubspot": {"contacts": "person", "companies": "account", "deals": "deal"},
    "salesforce": {"Lead": "person", "Contact": "person", "Account": "account", "Opportunity": "deal"},
}
# The logical fields whose value the engine decides, and the type each must have.
ENGINE_FIELDS: dict[str, tuple[str, ...]] = {
    "stage": ("stage",),
    "score": ("number", "integer"),
    "owner": ("owner",),
}
# Transforms that lose information: a field read through one can never be written back.
LOSSY_TRANSFORMS = frozenset({"domain_from_email", "domain_from_url"})

KIND_OF_TYPE: dict[str, FieldKind] = {
    "text": "text",
    "email": "text",
    "domain": "text",
    "country": "text",
    "stage": "text",
    "owner": "text",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "datetime": "datetime",
    "date": "datetime",
}


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


def _listify_str(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class BindingModel(BaseModel):
    """One system field a logical field reads from and may write to."""

    model_config = ConfigDict(extra="forbid")
    field: str
    transform: Annotated[list[Transform], BeforeValidator(_listify_str)] = Field(default_factory=list)
    values: str | None = None
    write: WritePolicy | None = None
    read: StrictBool = True
    # What to do with a value the system's field limits refuse (syncd.core.limits); None: the default.
    on_limit: Literal["truncate", "clamp", "drop", "quarantine"] | None = None


Bindings = Annotated[list[BindingModel], BeforeValidator(_listify)]


class LogicalFieldModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: LogicalType
    description: str = ""
    source: Literal["systems", "engine"] = "systems"
    precedence: Literal["salesforce", "hubspot", "furthest"] = "salesforce"
    queue_in_hubspot: QueueInHubSpot | None = None
    hubspot: dict[str, Bindings] = Field(default_factory=dict)
    salesforce: dict[str, Bindings] = Field(default_factory=dict)


class ValueMapModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    write: dict[str, str]
    read: dict[str, str] = Field(default_factory=dict)
    ignore: list[str] = Field(default_factory=list)


class IdentityEntityModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hubspot_link: str
    salesforce_link: str
    match: list[str] = Field(default_factory=list)


class IdentityModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person: IdentityEntityModel
    account: IdentityEntityModel


class CustomFieldModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    system: System
    object: str
    type: Literal["string", "int", "double", "boolean", "date", "datetime", "picklist"] = "string"
    readonly: StrictBool = False


class MappingFileModel(BaseModel):
    """The schema of ``fields.toml``."""

    model_config = ConfigDict(extra="forbid")
    identity: IdentityModel
    fields: dict[str, LogicalFieldModel]
    value_maps: dict[str, ValueMapModel] = Field(default_factory=dict)
    custom_fields: list[CustomFieldModel] = Field(default_factory=list)


# ------------------------------------------------------------------------------------------------- compiled


@dataclass(frozen=True)
class Binding:
    """A compiled binding: read conversion and write policy for one system field."""

    system: System
    object: str
    field: str
    transforms: tuple[str, ...]
    value_map: str | None
    write: WritePolicy
    read: bool
    on_limit: str | None = None


@dataclass(frozen=True)
class ValueMap:
    """Logical value <-> system value, both ways; ``read`` includes the read-only extras."""

    name: str
    write: dict[str, str]
    read: dict[str, str]


@dataclass(frozen=True)
class LogicalField:
    """One logical field: its type, where its value comes from, and its bindings per object."""

    name: str
    type: str
    source: Literal["systems", "engine"]
    precedence: Literal["salesforce", "hubspot", "furthest"]
    bindings: dict[tuple[System, str], tuple[Binding, ...]]
    # Owner fields only: a HubSpot record's owner when the decided owner is a queue (see the module doc).
    queue_in_hubspot: QueueInHubSpot = "clear_inactive"

    @property
    def kind(self) -> FieldKind:
        return KIND_OF_TYPE[self.type]

    def entities(self) -> set[Entity]:
        return {OBJECTS[system][obj] for system, obj in self.bindings}


@dataclass(frozen=True)
class Identity:
    """How records are linked: the stored cross-id fields, then the logical fields to match on."""

    hubspot_link: str
    salesforce_link: str
    match: tuple[str, ...]


class Mapping:
    """A loaded mapping: logical fields, value maps and identity keys, with the pure conversion helpers."""

    def __init__(
        self,
        fields: dict[str, LogicalField],
        value_maps: dict[str, ValueMap],
        identity: dict[str, Identity],
        stage_order: tuple[str, ...] = (),
    ) -> None:
        self.fields = fields
        self.value_maps = value_maps
        self.identity = identity
        self.stage_order = stage_order
        self._rank = {s: i for i, s in enumerate(stage_order)}
        # Per object, the logical fields read there with their readable bindings, each flagged when its text
        # values are read verbatim (a text field with no transform and no value map: nothing to convert).
        self._readers: dict[tuple[str, str], list[tuple[LogicalField, tuple[tuple[Binding, bool], ...]]]] = {}
        for lf in fields.values():
            for (system, obj), bindings in lf.bindings.items():
                readable = tuple(
                    (b, lf.type in _VERBATIM_TYPES and not b.transforms and b.value_map is None)
                    for b in bindings
                    if b.read
                )
                if readable:
                    self._readers.setdefault((system, obj), []).append((lf, readable))
        # Per object, the logical fields syncd may write there (a binding whose policy is not "never").
        self._writable: dict[tuple[str, str], frozenset[str]] = {}
        for lf in fields.values():
            for (system, obj), bindings in lf.bindings.items():
                if any(b.write != "never" for b in bindings):
                    self._writable[(system, obj)] = self._writable.get((system, obj), frozenset()) | {lf.name}

    def writable(self, system: str, obj: str) -> frozenset[str]:
        """The logical fields with a binding syncd may write in one object."""
        return self._writable.get((system, obj), frozenset())

    def text_form(self, name: str) -> TextForm | None:
        """How the values of a text field look once read (for ``validate``'s value checks); None for
        other kinds, for stage and owner fields, and for fields read only through value maps."""
        lf = self.fields.get(name)
        if lf is None or lf.kind != "text" or lf.type in ("stage", "owner"):
            return None
        cases: set[str | None] = set()
        stripped = True
        readable = [b for bindings in lf.bindings.values() for b in bindings if b.read]
        if not readable:
            return None
        for b in readable:
            if b.value_map is not None:
                return None
            case: str | None = None
            for t in b.transforms:
                if t == "upper":
                    case = "upper"
                elif t in ("lower", "domain_from_email", "domain_from_url"):
                    case = "lower"
            cases.add(case)
            stripped = stripped and bool(
                {"strip", "domain_from_email", "domain_from_url"} & set(b.transforms)
            )
        common = cases.pop() if len(cases) == 1 else None
        return TextForm(
            lf.type, "upper" if common == "upper" else "lower" if common == "lower" else None, stripped
        )

    def fields_for(self, entity: Entity) -> dict[str, LogicalField]:
        """The logical fields bound to at least one object of this entity (person, account or deal)."""
        return {n: f for n, f in self.fields.items() if entity in f.entities()}

    # ------------------------------------------------------------------------------------------- reading

    def to_logical(
        self,
        system: System,
        obj: str,
        raw: AbcMapping[str, Any],
        *,
        directory: RepDirectory | None = None,
        only: Container[str] | None = None,
    ) -> dict[str, Any]:
        """The logical values of one raw record (system field names as the connector returns them).

        HubSpot records may be passed whole (``{"id", "properties": {...}}``) or as their properties.
        Blank values become None; stage values pass through the value maps (unmapped ones become None);
        ``owner`` values become rep keys or queue owners through ``directory`` and are left out without one.
        ``only`` limits the logical fields read. Raises ValueError naming the field when a value cannot be
        read as its type.
        """
        props = _props(system, raw)
        out: dict[str, Any] = {}
        read_one = self._read_one
        for lf, bindings in self._readers.get((system, obj), ()):
            if only is not None and lf.name not in only:
                continue
            if lf.type == "owner" and directory is None:
                continue
            values = []
            for b, verbatim in bindings:
                value = props.get(b.field)
                if value is None or value == "":
                    continue
                if verbatim and type(value) is str:
                    values.append(value)  # text as the system holds it: nothing to convert
                    continue
                value = read_one(lf, b, value, directory)
                if value is not None:
                    values.append(value)
            if not values:
                out[lf.name] = None
            elif lf.precedence == "furthest" and len(values) > 1:
                out[lf.name] = max(values, key=lambda v: self._rank.get(v, -1))
            else:
                out[lf.name] = values[0]
        return out

    def _read_one(self, lf: LogicalField, b: Binding, value: Any, directory: RepDirectory | None) -> Any:
        if value is None or value == "":
            return None
        try:
            if lf.type == "owner":
                if directory is None:
                    return None
                if b.system == "hubspot":
                    return directory.owner_from_hubspot(str(value))
                return directory.owner_from_salesforce(str(value))
            if isinstance(value, str):
                for t in b.transforms:
                    value = _TRANSFORMS[t](value)
                    if value is None:
                        return None
            if b.value_map is not None:
                return self.value_maps[b.value_map].read.get(str(value))
            return parse_value(lf.type, value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{b.object}.{b.field}: {value!r} is not a valid {lf.type}: {exc}") from None

    def merge(self, by_system: AbcMapping[str, AbcMapping[str, Any]]) -> dict[str, Any]:
        """One entity's logical values from each system's (``{"hubspot": {...}, "salesforce": {...}}``).

        For each field the winner is the ``precedence`` system's value when it has one, else the other's;
        ``furthest`` takes the later lifecycle stage of the two.
        """
        hs = by_system.get("hubspot") or {}
        sf = by_system.get("salesforce") or {}
        out: dict[str, Any] = {}
        for name in {*hs, *sf}:
            lf = self.fields.get(name)
            a, b = hs.get(name), sf.get(name)
            if lf is None or a is None or b is None:
                out[name] = a if b is None else b
            elif lf.precedence == "furthest":
                out[name] = a if self._rank.get(a, -1) > self._rank.get(b, -1) else b
            else:
                out[name] = a if lf.precedence == "hubspot" else b
        return out

    def winner(self, name: str, by_system: AbcMapping[str, Any]) -> System | None:
        """Which system's value of one logical field wins (None when neither has one)."""
        lf = self.fields[name]
        present = [s for s in SYSTEMS if by_system.get(s) is not None]
        if len(present) < 2:
            return present[0] if present else None
        if lf.precedence == "furthest":
            hs, sf = by_system["hubspot"], by_system["salesforce"]
            return "hubspot" if self._rank.get(hs, -1) > self._rank.get(sf, -1) else "salesforce"
        return lf.precedence

    # ------------------------------------------------------------------------------------------- writing

    def write_policy(self, name: str, system: System, obj: str, system_field: str) -> WritePolicy:
        """The write policy of one binding (``never`` when the field is not bound there)."""
        lf = self.fields.get(name)
        for b in lf.bindings.get((system, obj), ()) if lf else ():
            if b.field == system_field:
                return b.write
        return "never"

    def encode(
        self, name: str, system: System, obj: str, value: Any, *, directory: RepDirectory | None = None
    ) -> dict[str, Any]:
        """The wire values that represent a logical value in one object, per writable system field.

        A binding the value cannot be expressed in (a queue on HubSpot or on a Salesforce Contact, a stage
        missing from a value map, an owner the directory does not know) is left out.
        """
        lf = self.fields[name]
        out: dict[str, Any] = {}
        for b in lf.bindings.get((system, obj), ()):
            if b.write == "never":
                continue
            wire = self._encode_one(lf, b, value, directory)
            if wire is not _SKIP:
                out[b.field] = wire
        return out

    def _encode_one(self, lf: LogicalField, b: Binding, value: Any, directory: RepDirectory | None) -> Any:
        if value is None:
            return None
        if lf.type == "owner":
            if directory is None:
                return _SKIP
            if b.system == "hubspot":
                owner_id = directory.hubspot_owner_id(value)
            elif is_queue(value) and b.object != "Lead":
                return _SKIP
            else:
                owner_id = directory.salesforce_owner_id(value)
            return owner_id if owner_id is not None else _SKIP
        if b.value_map is not None:
            mapped = self.value_maps[b.value_map].write.get(str(value))
            return mapped if mapped is not None else _SKIP
        return encode_wire(b.system, lf.type, value)

    def writes(
        self,
        name: str,
        system: System,
        obj: str,
        value: Any,
        current: AbcMapping[str, Any],
        *,
        directory: RepDirectory | None = None,
    ) -> dict[str, Any]:
        """The field writes one record needs so that its fields show ``value``, honouring write policies.

        ``current`` is the record's raw fields (HubSpot: its properties). A field already showing the value
        (compared as logical values, so ``"42"`` equals ``42.0``) is not written; an ``if_blank`` field is
        written only when blank; ``never`` fields never. A None value means "no opinion": nothing is written.
        An owner decided to be a queue clears a HubSpot owner who is no longer active, per the field's
        ``queue_in_hubspot`` (the empty string unassigns the record).
        """
        if value is None:
            return {}
        lf = self.fields[name]
        props = _props(system, current)
        out: dict[str, Any] = {}
        wanted = self.encode(name, system, obj, value, directory=directory)
        for b in lf.bindings.get((system, obj), ()):
            if b.field not in wanted:
                if self._clears_departed_owner(lf, b, value, props.get(b.field), directory):
                    out[b.field] = ""
                continue
            existing = props.get(b.field)
            blank = existing is None or existing == ""
            if b.write == "if_blank" and not blank:
                continue
            if not blank and self._same(lf, b, existing, value, wanted[b.field], directory):
                continue
            if blank and wanted[b.field] is None:
                continue
            out[b.field] = wanted[b.field]
        return out

    @staticmethod
    def _clears_departed_owner(
        lf: LogicalField, b: Binding, value: Any, existing: Any, directory: RepDirectory | None
    ) -> bool:
        """Whether a HubSpot owner field is cleared because the decided owner is a queue HubSpot cannot
        hold and the record's owner is no longer active (archived, deactivated or unknown)."""
        if (
            lf.type != "owner"
            or lf.queue_in_hubspot != "clear_inactive"
            or b.system != "hubspot"
            or b.write != "always"
            or not is_queue(value)
            or directory is None
            or existing in (None, "")
        ):
            return False
        rep = directory.owner_from_hubspot(str(existing))
        return rep is None or not directory.is_active(rep)

    def _same(
        self,
        lf: LogicalField,
        b: Binding,
        existing: Any,
        value: Any,
        wire: Any,
        directory: RepDirectory | None,
    ) -> bool:
        if lf.type == "owner" or b.value_map is not None:
            return str(existing) == str(wire)
        try:
            current = self._read_one(lf, _as_is(b), existing, directory)
        except ValueError:
            return False
        if isinstance(current, float) and isinstance(value, int | float):
            return math.isclose(current, float(value), rel_tol=0, abs_tol=1e-9)
        return bool(current == value)


_SKIP = object()


@functools.lru_cache(maxsize=256)
def _as_is(b: Binding) -> Binding:
    """The binding without its transforms and value map: a field's value read as it is."""
    return Binding(b.system, b.object, b.field, (), None, b.write, True)


def _props(system: System, raw: AbcMapping[str, Any]) -> AbcMapping[str, Any]:
    inner = raw.get("properties") if system == "hubspot" else None
    return inner if isinstance(inner, AbcMapping) else raw


# ------------------------------------------------------------------------------------------------- values


def _domain_from_email(value: str) -> str | None:
    _, at, domain = value.strip().rpartition("@")
    return domain.lower() if at and domain else None


def _domain_from_url(value: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    host = urlsplit(text if "//" in text else "//" + text).hostname or ""
    host = host.lower()
    if host.startswith("www."):
        host = host[4:]
    return host or None


# Logical types whose text values parse_value returns unchanged.
_VERBATIM_TYPES = frozenset({"text", "email", "domain", "country", "stage"})

_TRANSFORMS: dict[str, Callable[[str], str | None]] = {
    "strip": str.strip,
    "lower": str.lower,
    "upper": str.upper,
    "domain_from_email": _domain_from_email,
    "domain_from_url": _domain_from_url,
}


def parse_value(logical_type: str, value: Any) -> Any:
    """A raw system value (HubSpot strings or Salesforce JSON) as a value of the logical type."""
    if value is None or value == "":
        return None
    if logical_type in ("number", "integer"):
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise ValueError("not a finite number")
        if logical_type == "integer":
            return int(number)
        return int(number) if number.is_integer() else number
    if logical_type == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        raise ValueError("expected true or false")
    if logical_type in ("datetime", "date"):
        return parse_datetime(value)
    return str(value)


def parse_datetime(value: Any) -> datetime:
    """A timezone-aware UTC datetime from ISO text, Salesforce's format, a date, or epoch milliseconds."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time(0), tzinfo=UTC)
    elif isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        parsed = datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    else:
        parsed = datetime.fromisoformat(str(value).strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def encode_wire(system: System, logical_type: str, value: Any) -> Any:
    """A logical value as the system's API takes it: HubSpot wants strings, Salesforce JSON values."""
    if value is None:
        return None
    if logical_type in ("datetime", "date"):
        dt = parse_datetime(value)
        if system == "hubspot":
            return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
        if logical_type == "date":
            return dt.date().isoformat()
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"
    if logical_type in ("number", "integer"):
        number = float(value)
        as_int = int(number) if number.is_integer() else None
        if system == "hubspot":
            return str(as_int) if as_int is not None else repr(number)
        return as_int if as_int is not None else number
    if logical_type == "boolean":
        return ("true" if value else "false") if system == "hubspot" else bool(value)
    return str(value)


# ------------------------------------------------------------------------------------------------- loading


def build_mapping(
    model: MappingFileModel, display: str, problems: Problems, stages: tuple[str, ...]
) -> Mapping | None:
    """Checks a parsed mapping file's meaning against the systems' fields; the compiled Mapping or None."""
    before = problems.error_count
    schema = OrgSchema()
    for custom in model.custom_fields:
        where = named("custom field", custom.name)
        objects = schema.salesforce if custom.system == "salesforce" else schema.hubspot
        if custom.object not in objects:
            problems.error(
                display,
                where,
                "object",
                f'unknown {SYSTEM_LABEL[custom.system]} object "{clip(custom.object)}"'
                + did_you_mean(custom.object, objects),
            )
            continue
        if objects[custom.object].field(custom.name) is not None:
            problems.warning(
                display, where, "name", f"{custom.object} already has this field; no need to declare it"
            )
            continue
        schema = schema.with_custom(
            custom.system, custom.object, FieldSpec(custom.name, custom.type, readonly=custom.readonly)
        )

    value_maps = {
        name: ValueMap(name, dict(vm.write), {**{v: k for k, v in reversed(vm.write.items())}, **vm.read})
        for name, vm in model.value_maps.items()
    }
    used_maps: dict[str, list[tuple[str, Binding, FieldSpec | None]]] = {}
    # (system, object, system field) -> the logical field that writes it: two writers would fight.
    writers: dict[tuple[str, str, str], str] = {}
    fields: dict[str, LogicalField] = {}
    for name, fm in model.fields.items():
        where = named("field", name)
        if fm.precedence == "furthest" and fm.type != "stage":
            problems.error(display, where, "precedence", '"furthest" applies only to fields of type "stage"')
        if fm.queue_in_hubspot is not None and fm.type != "owner":
            problems.error(display, where, "queue_in_hubspot", 'applies only to fields of type "owner"')
        if fm.source == "engine" and name not in ENGINE_FIELDS:
            problems.error(display, where, "source", f"the engine decides only {', '.join(ENGINE_FIELDS)}")
        bindings: dict[tuple[System, str], tuple[Binding, ...]] = {}
        for system in SYSTEMS:
            objects = schema.hubspot if system == "hubspot" else schema.salesforce
            for obj, items in getattr(fm, system).items():
                if obj not in OBJECTS[system]:
                    problems.error(
                        display,
                        where,
                        f"{system}.{obj}",
                        f"unknown {SYSTEM_LABEL[system]} object" + did_you_mean(obj, OBJECTS[system]),
                    )
                    continue
                compiled = []
                for b in items:
                    key = f"{system}.{obj}"
                    found = objects[obj].field(b.field)
                    default_write: WritePolicy = "always" if fm.source == "engine" else "never"
                    write = b.write or default_write
                    if found is None:
                        problems.error(
                            display,
                            where,
                            f"{key}.field",
                            f'"{clip(b.field)}" is not a field of '
                            f"{SYSTEM_LABEL[system]} {obj}"
                            + did_you_mean(b.field, objects[obj].names)
                            + "; declare custom fields in [[custom_fields]]",
                        )
                        continue
                    spec = found
                    if spec.readonly and write != "never":
                        problems.error(
                            display,
                            where,
                            f"{key}.write",
                            f'"{spec.name}" is read-only in {SYSTEM_LABEL[system]}; set write = "never"',
                        )
                    lossy = LOSSY_TRANSFORMS.intersection(b.transform)
                    if lossy and write != "never":
                        problems.error(
                            display,
                            where,
                            f"{key}.write",
                            f'transform {sorted(lossy)[0]} cannot be written back; set write = "never"',
                        )
                    if b.values is not None and b.values not in value_maps:
                        problems.error(
                            display,
                            where,
                            f"{key}.values",
                            f'unknown value map "{clip(b.values)}"' + did_you_mean(b.values, value_maps),
                            ref=("value map", b.values),
                        )
                        continue
                    binding = Binding(
                        system, obj, spec.name, tuple(b.transform), b.values, write, b.read, b.on_limit
                    )
                    if write != "never":
                        target = (system, objects[obj].name, spec.name)
                        other = writers.get(target)
                        if other is not None:
                            also = "this field too" if other == name else f'field "{clip(other)}" too'
                            problems.error(
                                display,
                                where,
                                f"{key}.write",
                                f"{SYSTEM_LABEL[system]} {obj}.{spec.name} is written by {also}; "
                                'one system field has one writer: set write = "never" on one of them',
                            )
                        else:
                            writers[target] = name
                    if b.values is not None:
                        used_maps.setdefault(b.values, []).append((name, binding, spec))
                    elif fm.type == "stage" and spec.picklist:
                        problems.error(
                            display,
                            where,
                            f"{key}.values",
                            f'"{spec.name}" holds {SYSTEM_LABEL[system]}\'s own values; name a value map',
                        )
                    compiled.append(binding)
                if compiled:
                    bindings[(system, objects[obj].name)] = tuple(compiled)
        fields[name] = LogicalField(
            name, fm.type, fm.source, fm.precedence, bindings, fm.queue_in_hubspot or "clear_inactive"
        )

    for name, types in ENGINE_FIELDS.items():
        lf = fields.get(name)
        if lf is None:
            problems.error(display, "", f"fields.{name}", "missing: the engine decides this field")
        elif lf.type not in types:
            problems.error(
                display, named("field", name), "type", f"must be {' or '.join(repr(t) for t in types)}"
            )
        elif lf.source != "engine":
            problems.error(display, named("field", name), "source", 'must be "engine": the engine decides it')

    unmapped_warned: set[tuple[str, tuple[str, ...]]] = set()
    for map_name, vm in value_maps.items():
        where = named("value map", map_name)
        users = used_maps.get(map_name, [])
        if not users:
            problems.warning(display, where, "", "not used by any field")
            continue
        stage_user = any(fields[n].type == "stage" for n, _, _ in users)
        if stage_user and stages:
            for logical in vm.write:
                if logical not in stages:
                    problems.error(
                        display,
                        where,
                        f"write.{logical}",
                        f'unknown stage "{clip(logical)}"' + did_you_mean(logical, stages) + STAGES_HINT,
                        ref=("stage", logical),
                    )
            unmapped = [stage for stage in stages if stage not in vm.write]
            if len(unmapped) == 1:
                problems.error(
                    display,
                    where,
                    "write",
                    f'no value for stage "{clip(unmapped[0])}"',
                    ref=("stage without value", unmapped[0]),
                )
            elif unmapped:
                listed = ", ".join(f'"{clip(stage, 40)}"' for stage in unmapped[:6])
                more = ", …" if len(unmapped) > 6 else ""
                problems.error(display, where, "write", f"no value for stages {listed}{more}")
            for system_value, logical in model.value_maps[map_name].read.items():
                if logical not in stages:
                    problems.error(
                        display,
                        where,
                        f"read.{clip(system_value)}",
                        f'unknown stage "{clip(logical)}"' + did_you_mean(logical, stages) + STAGES_HINT,
                        ref=("stage", logical),
                    )
        for _, binding, used_spec in users:
            if used_spec is None or not used_spec.picklist:
                continue
            for logical, system_value in vm.write.items():
                if system_value not in used_spec.picklist:
                    problems.error(
                        display,
                        where,
                        f"write.{logical}",
                        f'"{clip(system_value)}" is not a value of '
                        f"{binding.object}.{binding.field}" + did_you_mean(system_value, used_spec.picklist),
                        ref=("picklist value", f"{map_name}\0{system_value}"),
                    )
            for system_value in model.value_maps[map_name].read:
                if system_value not in used_spec.picklist:
                    problems.error(
                        display,
                        where,
                        f"read.{system_value}",
                        f'"{clip(system_value)}" is not a value of '
                        f"{binding.object}.{binding.field}" + did_you_mean(system_value, used_spec.picklist),
                        ref=("picklist value", f"{map_name}\0{system_value}"),
                    )
            ignored = set(model.value_maps[map_name].ignore)
            for system_value in sorted(ignored):
                if system_value not in used_spec.picklist:
                    problems.error(
                        display,
                        where,
                        "ignore",
                        f'"{clip(system_value)}" is not a value of '
                        f"{binding.object}.{binding.field}" + did_you_mean(system_value, used_spec.picklist),
                        ref=("picklist value", f"{map_name}\0{system_value}"),
                    )
            missing = [v for v in used_spec.picklist if v not in vm.read and v not in ignored]
            # A map used by several objects with the same picklist (contacts and companies) warns once.
            if missing and (map_name, tuple(missing)) not in unmapped_warned:
                unmapped_warned.add((map_name, tuple(missing)))
                problems.warning(
                    display,
                    where,
                    "read",
                    f"{binding.object}.{binding.field} values not mapped "
                    f"(read as blank; list them in ignore if that is meant): {', '.join(missing)}",
                )

    identity: dict[str, Identity] = {}
    for entity in ("person", "account"):
        im: IdentityEntityModel = getattr(model.identity, entity)
        where = f"identity.{entity}"
        hs_objects = [o for o, e in OBJECTS["hubspot"].items() if e == entity]
        sf_objects = [o for o, e in OBJECTS["salesforce"].items() if e == entity]
        for obj in hs_objects:
            if schema.hubspot[obj].field(im.hubspot_link) is None:
                problems.error(
                    display,
                    where,
                    "hubspot_link",
                    f'"{clip(im.hubspot_link)}" is not a field of HubSpot {obj}'
                    + did_you_mean(im.hubspot_link, schema.hubspot[obj].names),
                )
        for obj in sf_objects:
            if schema.salesforce[obj].field(im.salesforce_link) is None:
                problems.error(
                    display,
                    where,
                    "salesforce_link",
                    f'"{clip(im.salesforce_link)}" is not a field of '
                    f"Salesforce {obj}" + did_you_mean(im.salesforce_link, schema.salesforce[obj].names),
                )
        entity_fields = {n for n, f in fields.items() if entity in f.entities()}
        for m in im.match:
            if m not in entity_fields:
                problems.error(
                    display,
                    where,
                    "match",
                    f'"{clip(m)}" is not a logical field of {entity}s' + did_you_mean(m, entity_fields),
                )
        identity[entity] = Identity(im.hubspot_link, im.salesforce_link, tuple(im.match))

    if problems.error_count != before:
        return None
    return Mapping(fields, value_maps, identity, stages)
