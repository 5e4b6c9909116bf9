"""Account teams in the sandbox: Salesforce ``AccountTeamMember`` and HubSpot owner-type properties.

The servers call these hooks; everything account-team specific lives here so the servers stay generic.

Salesforce (Object Reference, "AccountTeamMember", API 67.0):

- ``AccountId`` and ``UserId`` are Create/Filter only: an update naming them is refused
  (INVALID_FIELD_FOR_INSERT_UPDATE, as for any field the API cannot update). ``Title`` is read only: the
  member's User's title.
- A deleted member "is not moved to the Recycle Bin"; ``queryAll`` (ALL ROWS) and ``getDeleted()`` do not
  show it: the sandbox erases it (a hard delete).
- A create for a user already on the account's team updates that member and returns its id. The
  AccountTeamMember page does not say; its sibling team objects do (Object Reference, OpportunityTeamMember
  and UserTeamMember, "Usage": "If you attempt to create a record that matches an existing record, the
  create request updates any modified fields and returns the existing record"), and the UI keeps one row per
  user and account. Unconfirmed for AccountTeamMember itself.
- An Account owner change through the API deletes the account's team. SOAP API Developer Guide,
  "OwnerChangeOptions": ``KeepAccountTeam`` — "If false, the account team is deleted. Default is false";
  knowledge article 000390190: since Winter '21 "when changing an account's owner via API or Apex, both the
  account team members and their account sharing records are deleted by default". REST has no
  OwnerChangeOptions: its headers (REST API Developer Guide, "Headers": Assignment Rule, Call Options,
  Compression, Conditional Request, Duplicate Rule, Limit Info, MRU, Package Version, Query Options, Warning)
  carry no owner-change option, and Data Loader refuses "keep account team" with the Bulk API
  (forcedotcom/dataloader#967). So every REST, collection and Bulk owner change here deletes the team.
  Contacts, opportunities, notes and activities are not transferred: OwnerChangeOptions names those
  transfers as options of the SOAP header, and Salesforce Help, "Considerations for Changing a Record's
  Owner", describes them for the Change Owner page ("Workflow rules that update owners don't also transfer
  associated items"). Account sharing rows are deleted too; the sandbox has no AccountShare object.

HubSpot has no account team on companies: a record has one owner (``hubspot_owner_id``) and one "HubSpot
team" (``hubspot_team_id``, the owner's team, for permissions). More people per record are custom owner
properties (CRM properties API, "Create a property": ``type``/``fieldType``, ``externalOptions``,
``referencedObjectType``): ``type: "enumeration"``, ``fieldType: "select"``, ``referencedObjectType: "OWNER"``,
options from the portal's owners. Their values are owner ids, and a value that is no owner's id is refused
like ``hubspot_owner_id``'s (400 INVALID_OWNER_ID).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from syncd.core.systems import HS_OWNER_REFERENCE, FieldSpec, ObjectSpec
from syncd.sandbox.soql import canonical_sf_id

if TYPE_CHECKING:
    from syncd.sandbox.salesforce import SalesforceApp
    from syncd.sandbox.store import Record

OBJECT = "AccountTeamMember"


@dataclass
class _Index:
    """Member ids by account id. Kept up to date on creates and on the deletes this module makes; any other
    change to the table (an API delete, an allOrNone rollback) shows as a size mismatch and rebuilds it."""

    by_account: dict[str, set[str]] = field(default_factory=dict)
    size: int = -1


_INDEXES: weakref.WeakKeyDictionary[SalesforceApp, _Index] = weakref.WeakKeyDictionary()


def _index(app: SalesforceApp) -> _Index:
    index = _INDEXES.get(app)
    table = app.store.table(OBJECT)
    if index is None or index.size != len(table):
        index = _Index(size=len(table))
        for record in table.values():
            index.by_account.setdefault(str(record.get("AccountId")), set()).add(str(record["Id"]))
        _INDEXES[app] = index
    return index


def _value(values: dict[str, Any], name: str) -> Any:
    return next((v for k, v in values.items() if k.lower() == name.lower()), None)


# ------------------------------------------------------------------------------------------------ Salesforce


def before_save(
    app: SalesforceApp, spec: ObjectSpec, values: dict[str, Any], record_id: str | None
) -> tuple[str | None, dict[str, Any]]:
    """The record to save and the values to save on it: an AccountTeamMember create for a user already on
    the team becomes an update of that member; an update may not name a create-only field."""
    from syncd.sandbox.salesforce import SfError

    if spec.name != OBJECT:
        return record_id, values
    if record_id is not None:
        blocked = [f.name for k in values if (f := spec.field(k)) is not None and f.createonly]
        if blocked:
            raise SfError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(blocked)}. Please check the security settings "
                "of this field and verify that it is read/write for your profile or permission set.",
                blocked,
            )
        return record_id, values
    account = canonical_sf_id(str(_value(values, "AccountId") or ""))
    user = canonical_sf_id(str(_value(values, "UserId") or ""))
    if account is None or user is None:
        return None, values
    existing = member_of(app, account, user)
    if existing is None:
        return None, values
    rest = {k: v for k, v in values.items() if k.lower() not in ("accountid", "userid")}
    return str(existing["Id"]), rest


def derive(app: SalesforceApp, spec: ObjectSpec, record: Record) -> None:
    """Fields Salesforce fills on an AccountTeamMember: Title, the member's User's title."""
    if spec.name != OBJECT:
        return
    user = app.store.get("User", str(record.get("UserId") or ""))
    record["Title"] = user.get("Title") if user else None
    index = _index(app)
    if record["Id"] not in app.store.table(OBJECT):
        # A new member: the caller puts it next, so count it now.
        index.by_account.setdefault(str(record.get("AccountId")), set()).add(str(record["Id"]))
        index.size += 1


def after_save(app: SalesforceApp, spec: ObjectSpec, before: Record | None, after: Record, user: str) -> None:
    """The side effects of a save: an Account whose owner changed loses its team (KeepAccountTeam false)."""
    if spec.name != "Account" or before is None or before.get("OwnerId") == after.get("OwnerId"):
        return
    index = _index(app)
    for member in team_of(app, str(after["Id"])):
        app.remove(OBJECT, str(member["Id"]), user=user, hard=True)
        index.by_account.get(str(after["Id"]), set()).discard(str(member["Id"]))
        index.size -= 1


def hard_delete(spec: ObjectSpec) -> bool:
    """Whether a delete of this object erases the record (AccountTeamMember: no Recycle Bin)."""
    return spec.name == OBJECT


def team_of(app: SalesforceApp, account_id: str) -> list[Record]:
    """The live members of one account's team, in creation order."""
    table = app.store.table(OBJECT)
    ids = sorted(_index(app).by_account.get(account_id, ()), key=lambda i: (len(i), i))
    return [
        r
        for i in ids
        if (r := table.get(i)) is not None and r.get("AccountId") == account_id and not r.get("IsDeleted")
    ]


def member_of(app: SalesforceApp, account_id: str, user_id: str) -> Record | None:
    """The live member for this user on this account's team, if any."""
    return next((r for r in team_of(app, account_id) if r.get("UserId") == user_id), None)


# ------------------------------------------------------------------------------------------------ HubSpot


def is_owner_property(spec: FieldSpec) -> bool:
    """Whether a HubSpot property holds owner ids (``referencedObjectType: "OWNER"``)."""
    return HS_OWNER_REFERENCE in spec.references


def owner_property_json(spec: FieldSpec, body: dict[str, Any]) -> dict[str, Any]:
    """A property's JSON as HubSpot describes an owner property (type enumeration, fieldType select,
    referencedObjectType OWNER); other properties unchanged."""
    if not is_owner_property(spec):
        return body
    return {
        **body,
        "type": "enumeration",
        "fieldType": "select",
        "externalOptions": True,
        "referencedObjectType": "OWNER",
    }
