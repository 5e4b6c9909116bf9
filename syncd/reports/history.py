"""The history ``syncd backtest`` replays, built from the ledger's record versions and links.

The ledger keeps a version of a record each time a pull finds its content changed (``records.keep_versions``),
dated by the system's modification time; a ledger's first sync (or its upgrade to record versions) keeps one
version per record, dated by the record's own ``modified_at``, so even a freshly synced org has a history
that reaches back as far as its records' modification times do.

:func:`build_history` walks the versions once, oldest first, keeping every record's latest version:

- what stands at the window's start (every person and account with a record modified before it) is the
  *starting population*, decided once at the window's start (``syncd.core.backtest.settle``);
- each day of the window then brings every person and account any of whose records has a version modified
  that day, as they stood at the day's end (each linked record's latest version up to then), in the order
  they were last modified; a person's account comes along as it stood then, as the cycle decides them;
- opportunity counts are those of the opportunities as they stood at the day's end, and an opportunity's
  change brings its account into that day (as the cycle decides the accounts of changed opportunities).

Records and views are built exactly as the cycle's decide stage builds them (``syncd.core.views``). A record
whose first kept version is later than a day is not part of that day's picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from syncd.core.backtest import Day
from syncd.core.link import group
from syncd.core.types import AccountView, PersonView, RecordKey, RecordRow, RepDirectory
from syncd.core.views import (
    BadRecord,
    account_reference,
    account_view,
    logical_fields,
    opportunity_effect,
    person_view,
)
from syncd.ledger import Ledger
from syncd.ledger.records import VersionRow

if TYPE_CHECKING:
    from syncd.core.mapping import Mapping as FieldMapping

__all__ = ["History", "build_history", "window"]


@dataclass
class History:
    """The starting population and the days after it, ready for ``syncd.core.backtest``."""

    since: datetime
    until: datetime
    start_accounts: list[AccountView] = field(default_factory=list)
    start_persons: list[PersonView] = field(default_factory=list)
    days: list[Day] = field(default_factory=list)
    versions: int = 0
    # Keys left out because a record's values could not be read through the mapping (the cycle quarantines
    # them too).
    unreadable: int = 0

    @property
    def changes(self) -> int:
        """Persons and accounts decided over the window's days (a key changed on two days counts twice)."""
        return sum(len(d.persons) + len(d.accounts) for d in self.days)


def window(until: datetime, days: int) -> tuple[datetime, list[date]]:
    """The window of ``days`` UTC days ending with ``until``'s day: its start (midnight) and its days."""
    last = until.astimezone(UTC).date()
    first = last - timedelta(days=days - 1)
    return datetime.combine(first, time.min, UTC), [first + timedelta(days=i) for i in range(days)]


def build_history(
    ledger: Ledger,
    mapping: FieldMapping,
    directory: RepDirectory | None,
    *,
    until: datetime,
    days: int,
    advance: Callable[[int], None] | None = None,
) -> History:
    """The history of the ``days`` days up to ``until`` (see the module docstring); ``advance`` is called
    with the number of versions read as the walk goes."""
    since, dates = window(until, days)
    history = History(since, until)
    walk = _Walk(mapping, directory)
    versions = ledger.records.versions(until=until)
    pending: list[VersionRow] = []  # the first version past the last day read

    def read_until(end: datetime) -> dict[str, datetime]:
        """Apply every version up to ``end``; the keys they touched, in the order last touched."""
        touched: dict[str, datetime] = {}
        count = 0
        while True:
            v = pending.pop() if pending else next(versions, None)
            if v is None:
                break
            stamp = v.record.modified_at
            assert stamp is not None
            if stamp > end:
                pending.append(v)
                break
            key = walk.apply(v)
            count += 1
            if key is not None:
                touched.pop(key, None)
                touched[key] = stamp
            if advance is not None and count % 5000 == 0:
                advance(5000)
        if advance is not None:
            advance(count % 5000)
        history.versions += count
        return touched

    touched = read_until(since)
    history.start_accounts, history.start_persons = walk.views(list(touched))
    for d in dates:
        end = min(datetime.combine(d + timedelta(days=1), time.min, UTC), until)
        touched = read_until(end)
        accounts, persons = walk.views(list(touched))
        history.days.append(Day(d, end, accounts=accounts, persons=persons))
    history.unreadable = walk.unreadable
    return history


class _Walk:
    """Every record's latest version so far, who it belongs to, and what the engine needs to look up."""

    def __init__(self, mapping: FieldMapping, directory: RepDirectory | None) -> None:
        self.mapping = mapping
        self.directory = directory
        self.current: dict[RecordKey, RecordRow] = {}
        self.refs: dict[str, dict[RecordKey, None]] = {}
        self.kind: dict[str, str] = {}
        self.account_by_sf_id: dict[str, str] = {}
        self.account_domain: dict[RecordKey, str] = {}
        self.accounts_by_domain: dict[str, set[str]] = {}
        self.opportunity: dict[str, tuple[str, int, int] | None] = {}
        self.opportunities: dict[str, tuple[int, int]] = {}
        self.unreadable = 0
        self._unreadable: set[str] = set()

    def apply(self, v: VersionRow) -> str | None:
        """Take one version in; the key it changes (an opportunity changes its account), if any."""
        r = v.record
        if r.system == "salesforce" and r.object == "Opportunity":
            before = self.opportunity.get(r.id)
            self._count_opportunity(r)
            after = self.opportunity.get(r.id)
            account = (after or before or ("",))[0]
            return self.account_by_sf_id.get(account)
        if v.key is None or v.kind is None:
            return None
        self.current[r.ref] = r
        self.refs.setdefault(v.key, {})[r.ref] = None
        self.kind[v.key] = v.kind
        if v.kind == "account":
            if r.system == "salesforce":
                self.account_by_sf_id[r.id] = v.key
            old = self.account_domain.pop(r.ref, None)
            if old is not None:
                self.accounts_by_domain.get(old, set()).discard(v.key)
            if r.domain and not r.deleted:
                self.account_domain[r.ref] = r.domain
                self.accounts_by_domain.setdefault(r.domain, set()).add(v.key)
        return v.key

    def _count_opportunity(self, r: RecordRow) -> None:
        for effect, sign in ((self.opportunity.get(r.id), -1), (opportunity_effect(r), 1)):
            if effect is None:
                continue
            account, o, w = effect
            open_, won = self.opportunities.get(account, (0, 0))
            self.opportunities[account] = (open_ + sign * o, won + sign * w)
        self.opportunity[r.id] = opportunity_effect(r)

    def _account_of(self, ref: tuple[str, str] | None) -> str | None:
        if ref is None:
            return None
        how, value = ref
        if how == "id":
            return self.account_by_sf_id.get(value)
        keys = self.accounts_by_domain.get(value.strip().lower())
        return min(keys) if keys else None

    def views(self, keys: list[str]) -> tuple[list[AccountView], list[PersonView]]:
        """The views of these keys as they stand now, and of the accounts of the persons among them."""
        persons: list[PersonView] = []
        account_keys = [k for k in keys if self.kind.get(k) == "account"]
        wanted = dict.fromkeys(account_keys)
        for key in keys:
            if self.kind.get(key) != "person":
                continue
            g = group(key, "person", (self.current[ref] for ref in self.refs[key]))
            if g.empty and not g.readonly:
                continue
            try:
                fields = logical_fields(g, self.mapping, self.directory)
            except BadRecord:
                self._bad(key)
                continue
            account = self._account_of(account_reference(g))
            if account is not None:
                wanted[account] = None
            persons.append(person_view(g, fields, account))
        accounts: list[AccountView] = []
        for key in wanted:
            g = group(key, "account", (self.current[ref] for ref in self.refs.get(key, {})))
            if g.empty and not g.readonly:
                continue
            try:
                fields = logical_fields(g, self.mapping, self.directory)
            except BadRecord:
                self._bad(key)
                continue
            accounts.append(account_view(g, fields, self.opportunities))
        return accounts, persons

    def _bad(self, key: str) -> None:
        if key not in self._unreadable:
            self._unreadable.add(key)
            self.unreadable += 1
