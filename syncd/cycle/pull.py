"""Pull and stage: each object's changes since its watermark, a page at a time, staged with the watermark.

Staging recognises syncd's own writes coming back (an echo: the record is left clean) and a rep's manual
owner change (recorded as an override the engine honours per the policy).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from datetime import timedelta
from queue import Empty, Full, Queue
from typing import Any, TypeVar

from syncd.connectors import Page
from syncd.core.link import entity_of, identity, is_echo, owner_change, record_hash
from syncd.core.systems import OWNER_FIELD, PULLED, SYSTEMS
from syncd.core.types import OverrideRow, RecordRow, WriteRow
from syncd.cycle.context import RunContext

log = logging.getLogger(__name__)


def pull(run: RunContext) -> bool:
    """Pull and stage every pulled object; False when the run was stopped."""
    run.progress.stage("pull")
    # Reps whose changes count as a human's: the roster's reps, by each system's user id.
    rep_ids = {
        (system, uid): key for (system, uid), key in run.roster.users.items() if key in run.rules.roster.reps
    }
    for system in SYSTEMS:
        connector = run.connectors[system]
        for obj in PULLED[system]:
            since = run.ledger.records.watermark(system, obj)
            with prefetched(connector.pull(obj, since=since)) as pages:
                more = True
                while more:
                    # Several pages per transaction (each with its own watermark, so rule 2 holds): every
                    # commit rewrites the index pages it touched, and records arrive in no index's order.
                    with run.ledger.transaction():
                        staged, more = 0, False
                        for page in pages:
                            stage(run, system, obj, page, rep_ids)
                            run.progress.advance(len(page.records))
                            if run.stopped():
                                return False
                            staged += len(page.records)
                            if staged >= GROUP:
                                more = True
                                break
    return True


# Records staged per transaction (whole pages).
GROUP = 10_000


T = TypeVar("T")
_DONE = object()


@contextlib.contextmanager
def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[Iterator[T]]:
    """``items`` fetched by a worker thread, ``depth`` ahead of the consumer: the connectors' page iterators
    block on HTTP, so the next page arrives while the last one is staged. An error of the iterator is
    raised in the consumer; leaving the block early stops the worker after the page it is fetching (a page
    fetched but never staged moves no watermark, so it is read again next time)."""
    queue: Queue[Any] = Queue(maxsize=depth)
    halt = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not halt.is_set():
                    try:
                        queue.put((item, None), timeout=0.1)
                        break
                    except Full:
                        continue
                if halt.is_set():
                    return
            queue.put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            queue.put((_DONE, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="pull-prefetch", daemon=True)
    worker.start()

    def consume() -> Iterator[T]:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item

    try:
        yield consume()
    finally:
        halt.set()
        while worker.is_alive():
            # Unblock a worker waiting to hand over a page, then let it finish the call it is in.
            with contextlib.suppress(Empty):
                queue.get_nowait()
            worker.join(timeout=0.1)


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
    with ledger.transaction():
        result, stored = ledger.records.stage(rows, run_id=run.run_id)
        old = {ref[2]: row for ref, row in stored.items()}
        if result.changed:
            changed_ids = [ref[2] for ref in result.changed]
            writes = _writes_by_record(ledger.outbox.last_writes(system, obj, changed_ids))
            keys = ledger.identity.keys_of(system, obj, changed_ids)
            by_id = {r.id: r for r in rows}
            echoes = []
            for id_ in changed_ids:
                row, before = by_id[id_], old.get(id_)
                written = writes.get(id_, {})
                unchanged_flag = before is None or before.deleted == row.deleted
                data_before = before.data if before is not None else None
                if unchanged_flag and is_echo(system, data_before, row.data, written):
                    echoes.append((system, obj, id_))
                    continue
                key = keys.get(id_)
                if key is not None and entity_of(system, obj) != "deal":
                    _detect_override(run, rep_ids, system, obj, id_, key, data_before, row.data, written)
            if echoes:
                ledger.records.mark_records_clean(echoes)
                run.report.echoes[system] += len(echoes)
        ledger.records.set_watermark(system, obj, page.watermark, run_id=run.run_id)


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


def _writes_by_record(writes: Mapping[tuple[str, str], WriteRow]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (rid, fname), w in writes.items():
        out.setdefault(rid, {})[fname] = w.value
    return out
