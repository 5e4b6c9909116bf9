"""Link: records to persons and accounts. A converted Lead to its Contact, then unlinked records by the
stored cross-id, then normalised email (persons) or domain (accounts), else a new key
(``syncd.core.link.assign_keys`` chooses; this stage reads and writes ``ledger.identity``).

Then merges are followed: a record merged away in its system (an alias the pull kept) has its key merged into
the survivor's key, so the loser's links, decisions and history move to the survivor's person or account.
Last, each HubSpot deal is linked to its company's account (``associatedcompanyid``): a changed deal makes
its account due, and the account counts its open and won deals."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from syncd.core.link import assign_keys, first, named_records, salesforce_object_of
from syncd.core.systems import ACCOUNT_OBJECTS, PERSON_OBJECTS, SYSTEMS
from syncd.core.types import LinkRow, RecordRow
from syncd.cycle.context import RunContext

log = logging.getLogger(__name__)

PAGE = 1000
# The field a pulled HubSpot deal carries its company's id in (set by the connector from the associations).
DEAL_COMPANY = "associatedcompanyid"


def link(run: RunContext) -> bool:
    """Link every unlinked record; False when the run was stopped."""
    run.progress.stage("link")
    _follow_conversions(run)
    for kind, objects in (("account", ACCOUNT_OBJECTS), ("person", PERSON_OBJECTS)):
        for system in SYSTEMS:
            for obj in objects[system]:
                done, after = False, ""
                while not done:
                    # Several pages per transaction: fewer commits rewriting the same index pages.
                    with run.ledger.transaction():
                        for _ in range(PAGES_PER_TRANSACTION):
                            page = run.ledger.records.unlinked(system, obj, after=after, limit=PAGE)
                            if not page:
                                done = True
                                break
                            _link_page(run, kind, system, obj, page)
                            after = page[-1].id
                            run.progress.advance(len(page))
                            if run.stopped():
                                return False
    _follow_merges(run)
    _link_deals(run)
    return True


PAGES_PER_TRANSACTION = 50


def _follow_merges(run: RunContext) -> None:
    """Move each merged-away record's key into its survivor's key (the survivor's person or account wins)."""
    identity = run.ledger.identity
    pending = identity.pending_aliases()
    if not pending:
        return
    done = []
    with run.ledger.transaction():
        for alias in pending:
            loser = identity.key_of(alias.system, alias.object, alias.id)
            survivor = identity.key_of(alias.system, alias.object, alias.survivor)
            if survivor is None and loser is not None:
                # The survivor is not staged yet (it comes with a later page): try again next cycle.
                continue
            if loser is not None and survivor is not None and loser != survivor:
                identity.merge_keys(survivor, loser)
                log.info(
                    "%s %s %s was merged into %s: %s joins %s",
                    alias.system,
                    alias.object,
                    alias.id,
                    alias.survivor,
                    loser,
                    survivor,
                )
            done.append((alias.system, alias.object, alias.id))
        identity.mark_aliases_applied(done)


def _link_deals(run: RunContext) -> None:
    """Link each changed HubSpot deal to its company's account key (a deal moved to another company moves)."""
    ledger = run.ledger
    deals = [r for r in ledger.records.iterate("hubspot", "deals", dirty_only=True) if not r.deleted]
    if not deals:
        return
    company_of = {r.id: str(r.data.get(DEAL_COMPANY)) for r in deals if r.data.get(DEAL_COMPANY)}
    accounts = ledger.identity.keys_of("hubspot", "companies", set(company_of.values()))
    linked = ledger.identity.keys_of("hubspot", "deals", company_of)
    ledger.identity.relink(
        LinkRow(key, "hubspot", "deals", deal_id, "stored_id", run_id=run.run_id)
        for deal_id, company in company_of.items()
        if (key := accounts.get(company)) is not None and linked.get(deal_id) != key
    )


def _follow_conversions(run: RunContext) -> None:
    """A linked Lead converted since: its Contact joins the Lead's person (unlinked Leads are linked to their
    Contact's person by ``_link_page``)."""
    ledger = run.ledger
    pairs = {
        r.id: str(r.data["ConvertedContactId"])
        for r in ledger.records.iterate("salesforce", "Lead", dirty_only=True)
        if r.data.get("IsConverted") and r.data.get("ConvertedContactId")
    }
    if not pairs:
        return
    leads = ledger.identity.keys_of("salesforce", "Lead", pairs)
    contacts = ledger.identity.keys_of("salesforce", "Contact", pairs.values())
    todo = [
        (lead, contact)
        for lead, contact in pairs.items()
        if lead in leads and contacts.get(contact) != leads[lead]
    ]
    if todo:
        with ledger.transaction():
            for lead, contact in todo:
                ledger.identity.link_converted(lead, contact, run_id=run.run_id)


def _link_page(run: RunContext, kind: str, system: str, obj: str, page: Sequence[RecordRow]) -> None:
    """Link one page of unlinked records (the same records always get the same keys)."""
    identity = run.ledger.identity
    named = named_records(run.mapping, system, obj, page)
    targets: dict[str, dict[str, tuple[str | None, str | None]]] = {
        sys_: _cross_targets(
            run, kind, sys_, [t for refs in named.values() for s_, t, _ in refs if s_ == sys_]
        )
        for sys_ in SYSTEMS
    }
    if kind == "person":
        found = identity.keys_by_email([r.email for r in page if r.email], kind="person")
        match = {r.id: first(found.get(r.email)) if r.email else None for r in page}
    else:
        found = identity.keys_by_domain([r.domain for r in page if r.domain], kind="account")
        match = {r.id: first(found.get(r.domain)) if r.domain else None for r in page}
    keys = assign_keys(kind, system, obj, page, named, targets, match)
    with run.ledger.transaction():
        fresh = identity.new_keys(kind, len(keys.seeds), seeds=keys.seeds) if keys.seeds else []
        identity.add_links(keys.links(fresh, system, obj, named, targets, run.run_id))


def _cross_targets(
    run: RunContext, kind: str, system: str, ids: list[str]
) -> dict[str, tuple[str | None, str | None]]:
    """Cross-id -> (its key when linked, its object when staged) in ``system``."""
    if not ids:
        return {}
    by_object: dict[str, list[str]] = {}
    for id_ in ids:
        if system == "salesforce":
            obj = salesforce_object_of(id_)
            allowed = PERSON_OBJECTS if kind == "person" else ACCOUNT_OBJECTS
            if obj is None or obj not in allowed["salesforce"]:
                continue
        else:
            obj = "contacts" if kind == "person" else "companies"
        by_object.setdefault(obj, []).append(id_)
    out: dict[str, tuple[str | None, str | None]] = {}
    for obj, obj_ids in by_object.items():
        keys = run.ledger.identity.keys_of(system, obj, obj_ids)
        staged = run.ledger.records.by_ids(system, obj, [i for i in obj_ids if i not in keys])
        for id_ in obj_ids:
            if id_ in keys:
                out[id_] = (keys[id_], obj)
            elif id_ in staged:
                out[id_] = (None, obj)
    return out
