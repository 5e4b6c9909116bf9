"""``syncd config check --connect``: log in to both systems and check that what the mapping names is there.

For each system: log in, read one record of each object the mapping binds, then check every bound field or
property, and the identity link fields syncd stores, exists and, where syncd writes it, is writable:

- Salesforce: the object's describe (``GET /sobjects/<Object>/describe``) says per field ``updateable``, and
  ``createable`` for the Lead fields syncd sets when it creates a Lead at a hand-off;
- HubSpot: the properties API (``GET /crm/v3/properties/<object>``) says per property
  ``modificationMetadata.readOnlyValue``.

Every call goes through the unmodified client libraries, and every failure becomes one line naming the
system, object and field, and the mapping key that binds it. The checks spend a handful of API calls: two
per object and system, plus the login.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from syncd.connectors.errors import hubspot_error, salesforce_error
from syncd.errors import ConnectorError

if TYPE_CHECKING:
    from syncd.config import Config
    from syncd.connectors.hubspot import HubSpotConnector
    from syncd.connectors.salesforce import SalesforceConnector
    from syncd.core.mapping import Mapping

__all__ = ["ConnectReport", "Needed", "check_connections", "needed_fields"]

T = TypeVar("T")
_LABEL = {"salesforce": "Salesforce", "hubspot": "HubSpot"}
# What a Salesforce Lead syncd creates is given besides the mapped fields (see syncd.plan).
_LEAD_CREATE_REQUIRED = ("LastName", "Company")


@dataclass(frozen=True)
class Needed:
    """One system field the mapping uses: where it is bound, and whether syncd writes or creates with it."""

    system: str
    object: str
    field: str
    where: str  # the mapping key that names it, e.g. "fields.score" or "identity.person.salesforce_link"
    write: bool
    create: bool = False


@dataclass
class ConnectReport:
    """What ``--connect`` found: one line per problem, and notes on what worked."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def needed_fields(mapping: Mapping) -> list[Needed]:
    """Every system field the mapping binds or syncd stores links in, once per object (written wins)."""
    from syncd.core.mapping import OBJECTS

    found: dict[tuple[str, str, str], Needed] = {}

    def add(need: Needed) -> None:
        key = (need.system, need.object, need.field.lower())
        old = found.get(key)
        if old is None or (need.write and not old.write) or (need.create and not old.create):
            found[key] = Needed(
                need.system,
                need.object,
                need.field,
                need.where if old is None or need.write else old.where,
                need.write or (old.write if old else False),
                need.create or (old.create if old else False),
            )

    for name, logical in mapping.fields.items():
        for (system, obj), bindings in logical.bindings.items():
            for b in bindings:
                writes = b.write != "never"
                add(
                    Needed(
                        system,
                        obj,
                        b.field,
                        f"fields.{name}",
                        writes,
                        writes and (system, obj) == ("salesforce", "Lead"),
                    )
                )
    for entity, identity in mapping.identity.items():
        for system, objects in OBJECTS.items():
            link = identity.salesforce_link if system == "salesforce" else identity.hubspot_link
            for obj, obj_entity in objects.items():
                if obj_entity == entity and any(s == system and o == obj for s, o in _bound_objects(mapping)):
                    where = f"identity.{entity}.{system}_link"
                    add(Needed(system, obj, link, where, True, (system, obj) == ("salesforce", "Lead")))
    return sorted(found.values(), key=lambda n: (n.system, n.object, n.field.lower()))


def _bound_objects(mapping: Mapping) -> set[tuple[str, str]]:
    return {key for logical in mapping.fields.values() for key in logical.bindings}


def check_connections(
    config: Config,
    mapping: Mapping,
    *,
    connectors: tuple[SalesforceConnector, HubSpotConnector] | None = None,
) -> ConnectReport:
    """Log in to both systems and check the mapping's objects and fields there; never raises SyncdError."""
    from syncd.connectors import connectors_from_config

    report = ConnectReport()
    try:
        sf, hs = connectors if connectors is not None else connectors_from_config(config)
    except ConnectorError as exc:
        report.problems.append(f"cannot set up the connections: {exc}")
        return report
    needed = needed_fields(mapping)
    try:
        _check_salesforce(sf, [n for n in needed if n.system == "salesforce"], report)
        _check_hubspot(hs, [n for n in needed if n.system == "hubspot"], report)
    finally:
        sf.close()
        hs.close()
    return report


def _by_object(needed: Iterable[Needed]) -> dict[str, list[Needed]]:
    out: dict[str, list[Needed]] = {}
    for need in needed:
        out.setdefault(need.object, []).append(need)
    return out


def _translated(fn: Callable[[], T], translate: Callable[[BaseException], ConnectorError]) -> T:
    try:
        return fn()
    except ConnectorError:
        raise
    except Exception as exc:
        raise translate(exc) from exc


def _check_salesforce(connector: SalesforceConnector, needed: list[Needed], report: ConnectReport) -> None:
    def call(fn: Callable[[], T]) -> T:
        return _translated(fn, lambda exc: salesforce_error(exc, refreshable=connector.refreshable))

    try:
        sf = connector.sf  # logs in (JWT, client credentials, password) or takes the session as given
        call(lambda: sf.query("SELECT Id FROM User LIMIT 1"))
    except ConnectorError as exc:
        report.problems.append(f"salesforce: cannot log in: {exc}")
        return
    report.notes.append(f"salesforce: logged in to {sf.sf_instance}")
    for obj, fields in _by_object(needed).items():
        try:
            rows = call(lambda obj=obj: sf.query(f"SELECT Id FROM {obj} LIMIT 1"))  # type: ignore[misc]
            describe = call(lambda obj=obj: getattr(sf, obj).describe())  # type: ignore[misc]
        except ConnectorError as exc:
            report.problems.append(f"salesforce {obj}: cannot read it: {exc}")
            continue
        described = {str(f["name"]).lower(): f for f in describe.get("fields", [])}
        records = int(rows.get("totalSize", 0))
        report.notes.append(
            f"salesforce {obj}: readable ({'a record read' if records else 'no records yet'}), {len(fields)} mapped fields"
        )
        wanted = list(fields)
        if obj == "Lead" and any(n.create for n in fields):
            wanted += [
                Needed("salesforce", "Lead", f, "creating Leads", True, True)
                for f in _LEAD_CREATE_REQUIRED
                if f.lower() not in {n.field.lower() for n in fields}
            ]
        for need in wanted:
            spec = described.get(need.field.lower())
            at = f"salesforce {obj}.{need.field} ({need.where})"
            if spec is None:
                report.problems.append(
                    f"{at}: no such field, or the integration user cannot see it (check field-level security)"
                )
                continue
            if need.write and not spec.get("updateable"):
                report.problems.append(
                    f"{at}: not updateable: syncd writes it; give the integration user edit access to it"
                )
            if need.create and not spec.get("createable"):
                report.problems.append(
                    f"{at}: not createable: syncd sets it when it creates a Lead; give the integration user "
                    "edit access to it"
                )


def _check_hubspot(connector: HubSpotConnector, needed: list[Needed], report: ConnectReport) -> None:
    crm = connector.client.crm

    def call(fn: Callable[[], T]) -> T:
        return _translated(fn, hubspot_error)

    try:
        call(lambda: crm.owners.owners_api.get_page(limit=1))
    except ConnectorError as exc:
        report.problems.append(f"hubspot: cannot log in: {exc}")
        return
    report.notes.append("hubspot: the private app's token is accepted")
    for obj, fields in _by_object(needed).items():
        try:
            page = call(lambda obj=obj: crm.objects.basic_api.get_page(object_type=obj, limit=1))  # type: ignore[misc]
            properties = call(lambda obj=obj: crm.properties.core_api.get_all(object_type=obj))  # type: ignore[misc]
        except ConnectorError as exc:
            report.problems.append(f"hubspot {obj}: cannot read it: {exc}")
            continue
        by_name: dict[str, Any] = {str(p.name): p for p in properties.results or []}
        read = "a record read" if page.results else "no records yet"
        report.notes.append(f"hubspot {obj}: readable ({read}), {len(fields)} mapped properties")
        for need in fields:
            prop = by_name.get(need.field)
            at = f"hubspot {obj}.{need.field} ({need.where})"
            if prop is None:
                report.problems.append(
                    f"{at}: no such property: create it in HubSpot (Settings > Properties)"
                )
                continue
            meta = prop.modification_metadata
            if need.write and meta is not None and meta.read_only_value:
                report.problems.append(f"{at}: read-only in HubSpot: syncd writes it; map another property")
