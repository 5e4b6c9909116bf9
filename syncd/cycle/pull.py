"""Pull and stage: each object's changes since its watermark, a page at a time, staged with the watermark.

Each system's objects are pulled together (``Connector.pull_many``: Salesforce sends the delta queries of all
its objects in one ``/composite`` call; HubSpot lists companies and deals while it searches contacts on a first
read), and both systems at once: each system's pages are fetched by its own worker thread
(``syncd.prefetch.interleaved``) while the run's thread stages the pages that arrived, in each system's order.

Staging recognises syncd's own writes coming back (an echo: the record is left clean), a rep's manual owner
change (recorded as an override the engine honours per the policy), and merges: a HubSpot survivor's
``hs_merged_object_ids`` or a Salesforce record deleted with ``MasterRecordId`` is kept as an alias in the
ledger (the link stage moves the loser's links to the survivor's key), and a merged-away HubSpot record,
which HubSpot stops listing, is marked deleted.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from syncd.connectors import Page
from syncd.core.link import MERGED_INTO, entity_of, identity, is_echo, merges_of, owner_change, record_hash
from syncd.core.systems import OWNER_FIELD, PULLED, SYSTEMS
from syncd.core.types import OverrideRow, RecordRow
from syncd.cycle import limits
from syncd.cycle.context import RunContext
from syncd.cycle.roster import Roster, reps_of
from syncd.cycle.teams import TEAM_OBJECT, stage_team_page
from syncd.prefetch import interleaved

# The Salesforce object whose changes are the roster's (pulled with the records, kept in the roster store).
ROSTER_OBJECT = "User"

log = logging.getLogger(__name__)


def pull(run: RunContext) -> bool:
    """Pull and stage every pulled object; False when the run was stopped."""
    run.progress.stage("pull")
    limits.refresh(run)
    # Reps whose changes count as a human's: the roster's reps, by each system's user id.
    rep_ids = {
        (system, uid): key for (system, uid), key in run.roster.users.items() if key in run.rules.roster.reps
    }
    # Both systems are fetched at once, each by its own worker thread (``interleaved``); every page is staged
    # here, in the run's thread, with its watermark. Each system's pages come in its own order.
    sources = {system: run.connectors[system].pull_many(_since(run, system)) for system in SYSTEMS}
    with interleaved(sources) as pages:
        more = True
        while more:
            # Several pages per transaction (each with its own watermark, so rule 2 holds): every commit
            # rewrites the index pages it touched, and records arrive in no index's order.
            with run.ledger.transaction():
                staged, more = 0, False
                for system, (obj, page) in pages:
                    if system == "salesforce" and obj == ROSTER_OBJECT:
                        stage_users(run, page)
                        continue
                    if system == "salesforce" and obj == TEAM_OBJECT:
                        stage_team_page(run, page)
                        run.progress.advance(len(page.records))
                        if run.stopped():
                            return False
                        continue
                    stage(run, system, obj, page, rep_ids)
                    run.progress.advance(len(page.records))
                    if run.stopped():
                        return False
                    staged += len(page.records)
                    if staged >= GROUP:
                        more = True
                        break
    return True


def _since(run: RunContext, system: str) -> dict[str, str | None]:
    """The watermark of each object ``system`` pulls this run (read in the run's thread, before fetching)."""
    since = {
        obj: run.ledger.records.watermark(system, obj)
        for obj in PULLED[system]
        if (system, obj) not in run.skipped
    }
    if system == "salesforce":
        # The roster's cheap look: Users changed since the last cycle, one more delta query in the same
        # /composite request (a departure reaches both systems within the cycle).
        since[ROSTER_OBJECT] = run.ledger.records.watermark(system, ROSTER_OBJECT)
        if run.rules.teams is not None:
            # Account teams (teams.toml): added and changed members. The four objects and User fill the
            # request's five queries; this one rides the same request as a Get Updated subrequest (see
            # SalesforceConnector.pull_many), so an idle cycle is one Salesforce call. Its watermark
            # moves only to what the org covered, so a change is never skipped, only seen up to a
            # minute later (Get Updated works in whole minutes).
            since[TEAM_OBJECT] = run.ledger.records.watermark(system, TEAM_OBJECT)
    return since


# Records staged per transaction (whole pages). Each transaction rewrites the pages of every index it adds
# to (records by email, domain, id; versions by record; the dirty flags), which records reach in no order: at
# 100,000 persons 10,000 records a transaction wrote those indexes 24 times over, 50,000 about 5 times. A
# killed run pulls at most this many records again.
GROUP = 50_000


def stage_users(run: RunContext, page: Page) -> set[str]:
    """Keep the Salesforce Users of one page in the ledger's roster, with the page's watermark; the emails
    whose facts changed (their decisions are due now, and the run's roster is read again)."""
    rows = [
        {
            "system": "salesforce",
            "kind": "user",
            "id": raw.id,
            "email": raw.fields.get("Email"),
            "name": raw.fields.get("Name") or "",
            "active": bool(raw.fields.get("IsActive")) and not raw.deleted,
            "user_id": None,
            "developer_name": None,
        }
        for raw in page.records
    ]
    with run.ledger.transaction():
        changed = run.ledger.roster.update(rows) if rows else set()
        if changed:
            run.ledger.decisions.make_due(changed, run.now)
        run.ledger.records.set_watermark("salesforce", ROSTER_OBJECT, page.watermark, run_id=run.run_id)
    if changed:
        log.info("roster: %d Salesforce users changed; their decisions are due", len(changed))
        run.roster = Roster.from_reps(reps_of(run.ledger.roster.load()))
    return changed


def stage(run: RunContext, system: str, obj: str, page: Page, rep_ids: Mapping[tuple[str, str], str]) -> None:
    """Stage one page and its watermark in one transaction."""
    ledger = run.ledger
    rows = []
    for raw in page.records:
        email, domain = identity(run.mapping, system, obj, raw.fields)
        rows.append(
            RecordRow(
                system=system,
                object=obj,
                id=raw.id,
                data=raw.fields,
                modified_at=raw.modified_at,
                deleted=raw.deleted,
                email=email,
                domain=domain,
                hash=record_hash(system, raw.fields),
            )
        )
    run.report.pulled[system] += len(rows)
    # Within the pull's transaction no savepoint of its own: a failure fails the whole group of pages.
    with ledger.transaction(savepoint=False):
        # Each changed record's version is kept as it is staged (``syncd backtest`` replays them).
        result, stored = ledger.records.stage(rows, run_id=run.run_id, versions=True)
        old = {ref[2]: row for ref, row in stored.items()}
        if result.changed:
            changed_ids = [ref[2] for ref in result.changed]
            writes = ledger.outbox.writes_by_record(system, obj, changed_ids)
            keys = ledger.identity.keys_of(system, obj, changed_ids)
            by_id = {r.id: r for r in rows}
            clean: list[tuple[str, str, str]] = []
            echoes = 0
            for id_ in changed_ids:
                row, before = by_id[id_], old.get(id_)
                written = {name: w.value for name, w in writes.get(id_, {}).items()}
                unchanged_flag = before is None or before.deleted == row.deleted
                data_before = before.data if before is not None else None
                if unchanged_flag and is_echo(system, data_before, row.data, written):
                    # The echo itself makes nothing dirty, but a record still dirty from an earlier change
                    # (staged, not yet decided: a run stopped or killed between deciding an account, whose
                    # team properties were written to its contacts, and deciding them) stays dirty.
                    if before is None or not before.dirty:
                        clean.append((system, obj, id_))
                    echoes += 1
                    continue
                key = keys.get(id_)
                if key is not None and entity_of(system, obj) != "deal":
                    _detect_override(run, rep_ids, system, obj, id_, key, data_before, row.data, written)
            if clean:
                ledger.records.mark_records_clean(clean)
            if echoes:
                run.report.echoes[system] += echoes
        _stage_merges(run, system, obj, rows)
        ledger.records.set_watermark(system, obj, page.watermark, run_id=run.run_id)


def _stage_merges(run: RunContext, system: str, obj: str, rows: list[RecordRow]) -> None:
    """Keep the merges a page reveals as aliases; mark merged-away HubSpot records deleted (in the page's
    transaction). A merged-away HubSpot id answers reads and writes with its survivor, so syncd must stop
    writing to it: only the survivor's ``hs_merged_object_ids`` says it is gone."""
    pairs = [m for r in rows for m in merges_of(system, obj, r.id, r.data, r.deleted)]
    if not pairs:
        return
    fresh = run.ledger.identity.add_aliases(
        [(system, obj, loser, survivor) for loser, survivor in pairs], run_id=run.run_id
    )
    if fresh:
        log.info("%s %s: %d merged-away records followed to their survivors", system, obj, fresh)
    if system != "hubspot":
        return
    survivors = dict(pairs)
    gone = []
    for old in run.ledger.records.by_ids(system, obj, list(survivors)).values():
        if old.deleted:
            continue
        data = {**old.data, MERGED_INTO: survivors[old.id]}
        gone.append(
            dataclasses.replace(old, data=data, deleted=True, hash=record_hash(system, data), seen_at=None)
        )
    if gone:
        run.ledger.records.upsert(gone, run_id=run.run_id)


def _detect_override(
    run: RunContext,
    rep_ids: Mapping[tuple[str, str], str],
    system: str,
    obj: str,
    record_id: str,
    key: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
    written: Mapping[str, Any],
) -> None:
    days = run.rules.policy.override_days
    if days <= 0:
        return
    change = owner_change(
        system,
        before,
        after,
        last_written=written.get(OWNER_FIELD[system]),
        reps_by_change_id={uid: rep for (s, uid), rep in rep_ids.items() if s == system},
    )
    if change is None:
        return
    rep = run.roster.owner(system, change.current)
    if rep is None:
        return
    run.ledger.overrides.record(
        OverrideRow(
            key=key,
            system=system,
            object=obj,
            record_id=record_id,
            rep=rep,
            seen_at=run.now,
            honoured_until=run.now + timedelta(days=days),
            field="owner",
            previous=run.roster.owner(system, change.previous),
            changed_by=change.changed_by,
            run_id=run.run_id,
        )
    )
    run.report.overrides += 1
    log.info(
        "%s %s of %s: owner set to %s by %s; honoured for %g days",
        system,
        obj,
        key,
        rep,
        change.changed_by,
        days,
    )
