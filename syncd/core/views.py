"""How one person's or account's records become what the engine reads. Pure.

The cycle's decide stage and the backtest's history (``syncd.reports.history``) both turn a key's records,
sorted out by :func:`syncd.core.link.group`, into logical fields (each primary record through the mapping, then
merged) and then into a :class:`PersonView` or :class:`AccountView`; this module is that path, so the two
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from syncd.core.link import Group, deal_counts
from syncd.core.types import AccountView, PersonView, RecordRow, RepDirectory

if TYPE_CHECKING:
    from syncd.core.mapping import Mapping as FieldMapping

__all__ = [
    "BadRecord",
    "account_reference",
    "account_view",
    "logical_fields",
    "opportunity_effect",
    "person_view",
]


class BadRecord(Exception):
    """A record whose values cannot be read (the cycle holds it in quarantine while the rest goes on)."""

    def __init__(self, record: RecordRow, reason: str) -> None:
        super().__init__(reason)
        self.record = record
        self.reason = reason


def logical_fields(g: Group, mapping: FieldMapping, directory: RepDirectory | None) -> dict[str, Any]:
    """The key's logical fields: each system's primary record through the mapping, merged.

    Raises :class:`BadRecord` naming the record whose values the mapping cannot read."""
    by_system: dict[str, dict[str, Any]] = {}
    sf = g.salesforce or (g.readonly[0] if g.readonly else None)
    for record in (g.hubspot, sf):
        if record is None:
            continue
        try:
            by_system[record.system] = mapping.to_logical(
                record.system,  # type: ignore[arg-type]
                record.object,
                record.data,
                directory=directory,
            )
        except ValueError as exc:
            raise BadRecord(record, str(exc)) from None
    return mapping.merge(by_system)


def account_reference(g: Group) -> tuple[str, str] | None:
    """Where a person's account is found: ``("id", AccountId)`` for a Contact with an Account, else
    ``("domain", domain)`` from the email's domain, else None."""
    sf = g.salesforce
    if sf is not None and sf.object == "Contact" and sf.data.get("AccountId"):
        return ("id", str(sf.data["AccountId"]))
    domain = next((r.domain for r in (g.hubspot, sf) if r is not None and r.domain), None)
    return ("domain", domain) if domain else None


def person_view(g: Group, fields: Mapping[str, Any], account: str | None) -> PersonView:
    sf = g.salesforce or (g.readonly[0] if g.readonly else None)
    return PersonView(
        key=g.key,
        fields=fields,
        account_key=account,
        hubspot_id=g.hubspot.id if g.hubspot else None,
        salesforce_id=sf.id if sf else None,
        salesforce_object=sf.object if sf else None,  # type: ignore[arg-type]
    )


def account_view(
    g: Group, fields: Mapping[str, Any], opportunities: Mapping[str, tuple[Any, ...]]
) -> AccountView:
    """The account as the engine reads it; ``opportunities`` maps a Salesforce Account id to its (open,
    won) opportunity counts (and anything after them)."""
    open_, won = (0, 0)
    if g.salesforce is not None:
        open_, won = opportunities.get(g.salesforce.id, (0, 0))[:2]
    elif g.deals:
        # A HubSpot-only company: its deals count like Salesforce opportunities.
        open_, won = deal_counts(g.deals)
    return AccountView(
        key=g.key,
        fields=fields,
        hubspot_id=g.hubspot.id if g.hubspot else None,
        salesforce_id=g.salesforce.id if g.salesforce else None,
        open_opportunities=open_,
        won_opportunities=won,
    )


def opportunity_effect(record: RecordRow) -> tuple[str, int, int] | None:
    """What one Salesforce Opportunity adds to its account's counts: (Account id, open, won), or None."""
    account = record.data.get("AccountId")
    if record.deleted or not account:
        return None
    return (str(account), 0 if record.data.get("IsClosed") else 1, 1 if record.data.get("IsWon") else 0)
