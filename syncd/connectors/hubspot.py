"""The HubSpot connector, on hubspot-api-client.

- Pulls: CRM search on the last-modified property (``lastmodifieddate`` on contacts, ``hs_lastmodifieddate``
  on companies and deals), ascending, 200 a page. A search stops at 10,000 results, and bulk imports give
  thousands of records one timestamp, so the pull walks a cursor (timestamp, id): it pages a range of later
  timestamps, and when a query would pass 10,000 results, or a page holds a single timestamp of a bigger
  set, it walks that timestamp alone by ``hs_object_id`` before moving on. When a query's ``total`` changes
  between its pages (a record changed mid-pull moves to the end and shifts the offsets), the walk restarts
  from the last timestamp it saw instead of trusting the next offset.
- A first read (an object with no watermark yet) searches contacts as above while it lists companies and
  deals with the list endpoint (``GET /crm/v3/objects/{type}``, 100 a page, its ``after`` cursor;
  developers.hubspot.com, CRM API | Objects, "Retrieve records"), each object in a thread of its own, all at
  once (``pull_many``). Every request counts against the 100 per 10 s, and searches also against 5 per
  second (developers.hubspot.com, "API usage guidelines and limits"): searching everything is held to 5
  calls (1,000 records) a second while half the 10 s window stands idle. The lists take that half (a lane
  of the 10 s window less what searches may use, so they never crowd the searches out). Contacts are the
  object searched, fixed rather than picked by size: in a B2B portal they outnumber companies several times
  over and deals too (the sandbox's org at 20,000 persons: about 18,600 contacts, 2,300 companies, 1,200
  deals), a search reads 200 records a call against the list's 100, so the largest object belongs on
  search; sizing the objects first would cost a search each, and a wrong guess costs only time, never a
  record. A list is a complete enumeration by itself; syncd assumes nothing about its order. So its pages
  before the last carry ``FROM_START``, a watermark meaning "nothing done yet" (a run killed during a
  listing lists again from the start); the last page carries HubSpot's time when the listing began: the
  ``Date`` of its first response (whole seconds, rounded down) less that request's duration. A record
  changed after that time was read with its change or changed after the list read it; either way the next
  pull, which searches from that time (less the look-back, as every pull), finds it. Deals get their
  companies per 1,000 listed deals (one associations batch read).
- Search lag and the look-back: HubSpot's search index is eventually consistent (a write is searchable
  seconds later; list and get see it at once). Every pull starts ``lookback_seconds`` before its watermark,
  so a record written before the last pull but indexed after it is still found: the look-back must be at
  least the index's lag (default 60 s; the sandbox's ``--search-lag-ms`` defaults to a few seconds).
- Watermarks are anchored to HubSpot's clock: when a pull's last search is exhausted, the watermark becomes
  the later of the last record's timestamp and the server time of that request (its ``Date`` header). The
  next pull then reads from that time minus the look-back, so once a burst of writes is older than the
  look-back an idle pull makes one search per object and reads nothing (before, the watermark stayed on the
  burst's last record and every later cycle re-read the burst).
- Archived records: the API offers no way to ask for records archived since a time (search never returns
  archived records; ``GET /crm/v3/objects/{type}?archived=true`` has no filter or sort by ``archivedAt``,
  only ``after`` by id), so re-listing them is a full read of the recycle bin. The connector therefore lists
  archived records at most every ``archived_every_seconds`` (default 900 s) per object, in HubSpot's time,
  and delivers those archived since the previous listing (minus the look-back); the first listing in a
  process goes back ``archived_every_seconds`` + look-back before the watermark, which covers a previous
  process that pulled without listing. The interval grows with the recycle bin: after a listing of n pages
  the next one waits n intervals, so listings cost at most one call per object per interval on average
  (96 a day per object at 900 s) however large the bin (HubSpot keeps archived records 90 days; a list page
  holds at most 100). An archive is therefore seen within one interval while the bin fits one page, within
  n intervals when it takes n; a push to a record archived meanwhile is refused (404) and isolated like any
  bad input.
- Merges: ``hs_merged_object_ids`` (contacts, companies) is requested on every pull, so a survivor carries
  the ids merged into it (";"-separated) and the cycle can follow them.
- Deals: pulled like contacts and companies; each page's deals get their company (the primary one, else the
  lowest id) in the field ``associatedcompanyid``, from one v4 associations batch read per page (a first
  read by list: per 1,000 deals).
- Pushes: batch update and create, at most 100 inputs a call. HubSpot refuses a batch whole when one input
  is bad (400 invalid values, 409 a duplicate email naming only the first conflict, 404 an unknown id):
  the batch is split in halves until each bad input stands alone, which writes every good input and costs at
  most 2·⌈log2 100⌉ = 14 extra calls per bad input; each bad input comes back as a failed PushResult with
  HubSpot's code and message. Creates carry their key in ``syncd_salesforce_id``; after a failure that may
  have written (timeout, reset, 5xx), the retry first looks the keys up, so a retried create never makes a
  duplicate; since that lookup is a search, it first waits ``search_lag_seconds`` (default 5 s) from the
  failed attempt for the index to catch up with what it may have written.
- API objects are built once (each attribute access in the client builds a connection pool) and called with
  ``_preload_content=False``: the raw JSON keeps records as plain dicts and gives every status and header.
  Calls may come from several threads (a first read): each call's status travels with its response, the
  policy counts under a lock, and its limiters are thread-safe.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hubspot import HubSpot

from syncd.connectors.base import (
    ALL_AT_TIMESTAMP,
    BudgetState,
    Change,
    Connector,
    FieldLimit,
    Page,
    PushResult,
    RawRecord,
    RepRecord,
    Watermark,
    batched,
)
from syncd.connectors.errors import hubspot_error, hubspot_error_code
from syncd.connectors.policy import CallPolicy, Clock, DailyBudget, Now, RateLimiter, Sleep
from syncd.core.systems import HUBSPOT_OBJECTS, WRITE_BATCH_LIMIT
from syncd.errors import AuthError, ConnectorError, FatalConnectorError
from syncd.prefetch import interleaved

__all__ = ["BATCH_LIMIT", "SEARCH_CAP", "HubSpotConnector"]

T = TypeVar("T")

BATCH_LIMIT = WRITE_BATCH_LIMIT["hubspot"]
# A property value holds at most this many characters (knowledge base, "Property field types").
HUBSPOT_TEXT_MAX = 65_536
# An address HubSpot accepts for a contact's email: printable local part, dotted host (no spaces or control
# characters); anything else is refused with INVALID_EMAIL ("Email address … is invalid").
HUBSPOT_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
ASSOCIATIONS_READ_LIMIT = 1000  # ids per associations batch read (HubSpot changelog, effective 2025-02-10)
SEARCH_PAGE = 200
SEARCH_CAP = 10_000
OWNERS_PAGE = 500
LIST_PAGE = 100
SYNC_OBJECTS: tuple[str, ...] = ("contacts", "companies", "deals")
LAST_MODIFIED = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}
DEFAULT_KEY_PROPERTY = "syncd_salesforce_id"
# The field a pulled deal carries its company id in (from the v4 associations, not a deal property).
DEAL_COMPANY_FIELD = "associatedcompanyid"
MERGED_IDS = "hs_merged_object_ids"
# Statuses of a batch HubSpot refuses whole because of its inputs: split it to find them.
REFUSED_BATCH = frozenset({400, 404, 409, 422})
_HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
_EPOCH = datetime.fromtimestamp(0, UTC)
# The object a first read searches; the others are listed meanwhile (see the module docstring for why).
SEARCHED_FIRST = "contacts"
# The watermark of a first read's list pages before the last: nothing is done yet (a pull from it reads the
# object from the start).
FROM_START = Watermark(_EPOCH, "").encode()


def _from_start(mark: str | None) -> bool:
    """Whether a pull from ``mark`` reads the object from the beginning."""
    return mark is None or mark == FROM_START


def default_properties(object: str) -> list[str]:
    """The properties syncd reads when the caller names none: the standard subset plus syncd's own."""
    spec = HUBSPOT_OBJECTS.get(object)
    if spec is None:
        raise FatalConnectorError(f"HubSpot: unknown object {object!r}", system="hubspot")
    return spec.names


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int_id(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return -1


def server_time(headers: Any) -> datetime | None:
    """The server's time from a response's ``Date`` header (the last one when a proxy repeated it)."""
    if headers is None:
        return None
    value = headers.get("Date") or headers.get("date")
    if not value:
        return None
    stamps = _HTTP_DATE.findall(str(value))
    if not stamps:
        return None
    try:
        return parsedate_to_datetime(stamps[-1]).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def _header(headers: Any, name: str) -> int | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


class _Response:
    """What syncd keeps of one HTTP response: status, headers and the decoded JSON body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, raw: Any) -> None:
        self.status: int = int(getattr(raw, "status", 0))
        self.headers: Any = getattr(raw, "headers", {})
        data = getattr(raw, "data", b"")
        self.body: Any = json.loads(data) if data else {}


class HubSpotConnector(Connector):
    """HubSpot through hubspot-api-client: windowed search pulls, batch pushes, owners, budget."""

    system: ClassVar[Any] = "hubspot"
    objects: ClassVar[tuple[str, ...]] = SYNC_OBJECTS
    batch_limit: ClassVar[int] = BATCH_LIMIT

    def __init__(
        self,
        client: HubSpot,
        *,
        timeout: float = 30.0,
        requests_per_10s: int = 100,
        search_per_second: int = 4,
        daily_share: float = 0.5,
        daily_allowance: int = 250_000,
        org_ceiling: float = 0.9,
        max_attempts: int = 6,
        max_backoff: float = 60.0,
        lookback_seconds: float = 60.0,
        archived_every_seconds: float = 900.0,
        search_lag_seconds: float = 5.0,
        fields: Mapping[str, Sequence[str]] | None = None,
        key_properties: Mapping[str, str] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        now: Now = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.budget = DailyBudget(
            "hubspot", share=daily_share, allowance=daily_allowance, org_ceiling=org_ceiling, now=now
        )
        self.policy = CallPolicy(
            "hubspot",
            requests_per_10s=requests_per_10s,
            search_per_second=search_per_second,
            budget=self.budget,
            max_attempts=max_attempts,
            max_backoff=max_backoff,
            clock=clock,
            sleep=sleep,
        )
        self.lookback = timedelta(seconds=lookback_seconds)
        self.archived_every = timedelta(seconds=archived_every_seconds)
        # How long HubSpot's search may take to index a write ("several seconds"): a create retried after
        # a failure that may have written waits this long before looking its keys up by search.
        self.search_lag_seconds = search_lag_seconds
        self._sleep = sleep
        self._clock = clock
        self._now = now
        # Per object: HubSpot's time when this process last listed archived records.
        self._archived_listed: dict[str, datetime] = {}
        # Per object: the pages the last listing took (the next one waits that many intervals).
        self._archived_pages: dict[str, int] = {}
        self.fields = {k: list(v) for k, v in (fields or {}).items()}
        self.key_properties = dict(key_properties or {})
        self._apis: dict[tuple[str, str], Any] = {}
        self._apis_lock = threading.Lock()
        self._properties_api: Any = None

    @classmethod
    def connect(
        cls, token: str, *, host: str | None = None, ca_file: str | Path | None = None, **options: Any
    ) -> HubSpotConnector:
        """A connector for a private app's token; ``host`` and ``ca_file`` point it elsewhere (the sandbox).

        urllib3's own retries are off: syncd's policy retries, counts and paces every request itself.
        """
        settings: dict[str, Any] = {"access_token": token, "retry": False}
        if host is not None:
            settings["host"] = host.rstrip("/")
        if ca_file is not None:
            settings["ssl_ca_cert"] = str(ca_file)
        return cls(HubSpot(**settings), **options)

    # ------------------------------------------------------------------------------------------ plumbing

    def _api(self, object: str, name: str) -> Any:
        key = (object, name)
        with self._apis_lock:
            if key not in self._apis:
                crm = self.client.crm
                if object == "owners":
                    self._apis[key] = crm.owners.owners_api
                elif object == "associations":
                    self._apis[key] = crm.associations.v4.batch_api
                else:
                    self._apis[key] = getattr(getattr(crm, object), name)
            return self._apis[key]

    def _observe(self, headers: Any, status: int) -> None:
        interval = _header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
        self.policy.limiter.observe(
            _header(headers, "X-HubSpot-RateLimit-Max"),
            _header(headers, "X-HubSpot-RateLimit-Remaining"),
            interval / 1000 if interval else None,
        )
        secondly = _header(headers, "X-HubSpot-RateLimit-Secondly")
        if secondly is not None:
            self.policy.search_limiter.observe(
                secondly, _header(headers, "X-HubSpot-RateLimit-Secondly-Remaining")
            )
        daily = _header(headers, "X-HubSpot-RateLimit-Daily")
        daily_left = _header(headers, "X-HubSpot-RateLimit-Daily-Remaining")
        if daily is not None and daily_left is not None:
            self.budget.observe(daily - daily_left, daily)
        self.policy.saw(status)

    def _call(
        self, kind: str, fn: Callable[[], Any], *, search: bool = False, lane: RateLimiter | None = None
    ) -> _Response:
        def attempt() -> _Response:
            try:
                raw = fn()
            except ConnectorError:
                raise
            except Exception as exc:
                self._observe(getattr(exc, "headers", None), int(getattr(exc, "status", 0) or 0))
                raise hubspot_error(exc) from exc
            response = _Response(raw)
            self._observe(response.headers, response.status)
            return response

        return self.policy.call(kind, attempt, search=search, lane=lane)

    def _opts(self) -> dict[str, Any]:
        return {"_preload_content": False, "_request_timeout": self.timeout}

    def field_limits(self, objects: Iterable[str] | None = None) -> dict[str, dict[str, FieldLimit]]:
        """What each property of ``objects`` (default: the synced objects) accepts, from the properties API:
        one call per object (``GET /crm/v3/properties/{objectType}``). A text value holds at most 65,536
        characters (knowledge base, "Property field types"); an ``enumeration`` takes only its options
        (INVALID_OPTION otherwise); numbers must be numbers; contacts' ``email`` must be an address HubSpot
        accepts (INVALID_EMAIL). Read-only properties (``modificationMetadata.readOnlyValue``) are flagged."""
        if self._properties_api is None:
            self._properties_api = self.client.crm.properties.core_api
        api = self._properties_api
        out: dict[str, dict[str, FieldLimit]] = {}
        for object in objects if objects is not None else self.objects:
            response = self._call(
                "properties",
                lambda object=object: api.get_all(object_type=object, **self._opts()),  # type: ignore[misc]
            )
            limits: dict[str, FieldLimit] = {}
            for prop in response.body.get("results") or []:
                name = str(prop.get("name") or "")
                kind = str(prop.get("type") or "string")
                options = tuple(
                    str(o["value"]) for o in prop.get("options") or [] if o.get("value") is not None
                )
                email = object == "contacts" and name == "email"
                limits[name] = FieldLimit(
                    name=name,
                    type="email" if email else kind,
                    length=HUBSPOT_TEXT_MAX if kind == "string" else 0,
                    picklist=options,
                    # Owner properties list owners, which the roster checks: not a fixed set of options.
                    restricted=kind == "enumeration"
                    and bool(options)
                    and name != "hubspot_owner_id"
                    and prop.get("referencedObjectType") != "OWNER",
                    updateable=not (prop.get("modificationMetadata") or {}).get("readOnlyValue", False),
                    pattern=HUBSPOT_EMAIL.pattern if email else "",
                    pattern_error="INVALID_EMAIL" if email else "",
                )
            out[object] = limits
        return out

    def call_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.policy.counts.items() if v > 0}

    def budget_state(self) -> BudgetState:
        return self.budget.state(self.policy.limiter.limit)

    def rate_limited(self) -> int:
        return self.policy.rate_limited

    def _properties(self, object: str, fields: Sequence[str] | None) -> list[str]:
        names = list(fields) if fields is not None else self.fields.get(object) or default_properties(object)
        spec = HUBSPOT_OBJECTS.get(object)
        extra = [LAST_MODIFIED[object]]
        if spec is not None and spec.field(MERGED_IDS) is not None:
            extra.append(MERGED_IDS)
        return [*names, *(n for n in extra if n not in names)]

    def _record(self, object: str, item: Mapping[str, Any]) -> RawRecord:
        props = dict(item.get("properties") or {})
        archived = bool(item.get("archived"))
        stamp = (
            _parse_time(item.get("archivedAt"))
            if archived
            else _parse_time(props.get(LAST_MODIFIED[object])) or _parse_time(item.get("updatedAt"))
        )
        return RawRecord(
            system="hubspot",
            object=object,
            id=str(item["id"]),
            modified_at=stamp or _EPOCH,
            deleted=archived,
            fields=props,
        )

    # ------------------------------------------------------------------------------------------- pulls

    _server_now: datetime | None = None  # HubSpot's time at the latest search response

    def _search(self, object: str, body: dict[str, Any]) -> _Response:
        api = self._api(object, "search_api")
        response = self._call(
            "search", lambda: api.do_search(public_object_search_request=body, **self._opts()), search=True
        )
        self._server_now = server_time(response.headers) or self._server_now
        return response

    def pull(
        self, object: str, since: str | None = None, *, fields: Sequence[str] | None = None
    ) -> Iterator[Page]:
        if object not in LAST_MODIFIED:
            raise FatalConnectorError(f"HubSpot: unknown object {object!r}", system="hubspot")
        names = self._properties(object, fields)
        floor = None if _from_start(since) else Watermark.decode(str(since), system="hubspot")
        # The look-back's start as "everything before it done": one range search (GT start - 1 ms, i.e. GTE
        # start), not a walk of that one millisecond by id first.
        cursor = (
            Watermark(floor.at - self.lookback - timedelta(milliseconds=1), ALL_AT_TIMESTAMP)
            if floor is not None and self.lookback
            else floor
        )
        last = floor
        self._server_now = None
        started: datetime | None = None
        for records, mark in self._walk(object, names, cursor):
            started = started or self._server_now
            if floor is not None and mark < floor:
                mark = floor
            last = mark
            if object == "deals":
                self._add_companies(records)
            yield Page(records, mark.encode())
        started = started or self._server_now
        # Anchor to HubSpot's clock: the last search found nothing after it, so every record indexed by then
        # is read; what the index still lacks is newer than (that time - look-back), where the next pull starts.
        anchor = self._server_now
        if anchor is not None and (last is None or anchor > last.at):
            last = Watermark(anchor, ALL_AT_TIMESTAMP)
            yield Page([], last.encode())
        if floor is None:
            # A full pull reads live records only: what was archived before it started does not matter.
            self._archived_listed[object] = started or self._now()
        else:
            yield from self._archived(object, names, floor, last or floor)

    def pull_many(self, since: Mapping[str, str | None]) -> Iterator[tuple[str, Page]]:
        """The changes of several objects. When some are read for the first time (no watermark, or the one a
        killed first read left), those other than ``SEARCHED_FIRST`` are listed, each by a thread of its own,
        while the rest are searched one after another by another thread (see the module docstring); else the
        objects are searched one after another. Each object's pages come in their own order."""
        listed = [
            o for o, mark in since.items() if o != SEARCHED_FIRST and o in LAST_MODIFIED and _from_start(mark)
        ]
        if not listed:
            yield from super().pull_many(since)
            return
        searched = {o: mark for o, mark in since.items() if o not in listed}
        lane = self._list_lane()
        sources: dict[str, Iterator[tuple[str, Page]]] = {
            "search": super().pull_many(searched),
            **{o: self._listed(o, lane) for o in listed},
        }
        with interleaved(sources) as pages:
            for _, item in pages:
                yield item

    def _list_lane(self) -> RateLimiter:
        """The share of the 10 s window a first read's lists take: what searches cannot use (100 - 5 x 10 =
        50 calls per 10 s at HubSpot's Starter limits), at least half the window."""
        limiter, searches = self.policy.limiter, self.policy.search_limiter
        room = limiter.limit - math.ceil(searches.limit * limiter.interval / searches.interval)
        return RateLimiter(
            max(room, limiter.limit // 2, 1), limiter.interval, clock=self._clock, sleep=self._sleep
        )

    def _listed(self, object: str, lane: RateLimiter) -> Iterator[tuple[str, Page]]:
        for page in self._list_all(object, lane):
            yield object, page

    def _list_all(self, object: str, lane: RateLimiter) -> Iterator[Page]:
        """Every live record of ``object`` by the list endpoint (a first read): the pages before the last carry
        ``FROM_START``, the last the time the listing began (see the module docstring)."""
        names = self._properties(object, None)
        began: datetime | None = None
        held: list[RawRecord] = []  # deals waiting for their companies (one associations read per 1,000)
        for response, took, after in self._list_pages(object, names, archived=False, lane=lane):
            if began is None:
                # No record was read before the request arrived: HubSpot's time at its response, less the time
                # the call took (retries and waits included), is no later than that.
                began = (server_time(response.headers) or self._now()) - took
            held.extend(self._record(object, item) for item in response.body.get("results") or [])
            if object == "deals" and after and len(held) < ASSOCIATIONS_READ_LIMIT:
                continue
            if object == "deals" and held:
                self._add_companies(held, lane=lane)
            if not after:
                break
            yield Page(held, FROM_START)
            held = []
        assert began is not None  # the list answers at least one page
        # A first read reads live records only: what was archived before it began does not matter.
        self._archived_listed[object] = began
        # Everything up to 1 ms before that is done: a watermark keeps whole milliseconds (rounded down), and a
        # change in the millisecond ``began`` falls in may be later than it.
        yield Page(held, Watermark(began - timedelta(milliseconds=1), ALL_AT_TIMESTAMP).encode())

    def _list_pages(
        self, object: str, names: list[str], *, archived: bool, lane: RateLimiter | None = None
    ) -> Iterator[tuple[_Response, timedelta, str | None]]:
        """The list endpoint's pages of ``object`` (live or archived), following its ``after`` cursor: each
        response, how long its call took (retries and waits included) and the cursor to the next (None after
        the last)."""
        api = self._api(object, "basic_api")
        kind = "list archived" if archived else "list"
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "limit": LIST_PAGE,
                "properties": names,
                "archived": archived,
                **self._opts(),
            }
            if after:
                kwargs["after"] = after
            sent = self._clock()
            response = self._call(kind, lambda kwargs=kwargs: api.get_page(**kwargs), lane=lane)  # type: ignore[misc]
            took = timedelta(seconds=max(0.0, self._clock() - sent))
            after = ((response.body.get("paging") or {}).get("next") or {}).get("after")
            yield response, took, after
            if not after:
                return

    def _walk(
        self, object: str, names: list[str], cursor: Watermark | None
    ) -> Iterator[tuple[list[RawRecord], Watermark]]:
        """Pages of live records after ``cursor``, each with the cursor reached after it."""
        prop = LAST_MODIFIED[object]
        while True:
            if cursor is not None and cursor.id != ALL_AT_TIMESTAMP:
                # Everything at the cursor's timestamp not yet done, by id: no 10,000 cap can cut this short.
                yield from self._walk_timestamp(object, names, cursor)
                cursor = Watermark(cursor.at, ALL_AT_TIMESTAMP)
            filters = (
                [{"propertyName": prop, "operator": "GT", "value": str(_ms(cursor.at))}] if cursor else []
            )
            prev_last: datetime | None = None
            after = 0
            restart: Watermark | None = None
            first_total: int | None = None
            while True:
                body = {
                    "filterGroups": [{"filters": filters}] if filters else [],
                    "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                    "properties": names,
                    "limit": SEARCH_PAGE,
                    "after": str(after) if after else None,
                }
                response = self._search(object, {k: v for k, v in body.items() if v is not None})
                results = response.body.get("results") or []
                if not results:
                    return
                records = [self._record(object, item) for item in results]
                first, last = records[0].modified_at, records[-1].modified_at
                total = int(response.body.get("total") or 0)
                if first_total is None:
                    first_total = total
                elif total != first_total:
                    # The result set changed under the offsets (a record written mid-pull moved to the end, or
                    # the index caught up): this page may have skipped some. Resume from the last timestamp
                    # fully seen before it instead, by id within that timestamp.
                    restart = Watermark(prev_last, "") if prev_last is not None else cursor
                    break
                prev_last = last
                if first == last and total > SEARCH_CAP:
                    # One timestamp fills this page of a set too big for one query: walk it by id instead.
                    restart = Watermark(first, "")
                    break
                nxt = ((response.body.get("paging") or {}).get("next") or {}).get("after")
                if not nxt:
                    # The query is exhausted: every record up to the last timestamp has been seen.
                    yield records, Watermark(last, ALL_AT_TIMESTAMP)
                    return
                yield records, Watermark(last, "")
                after = int(nxt)
                if after + SEARCH_PAGE > SEARCH_CAP:
                    restart = Watermark(last, "")
                    break
            cursor = restart

    def _walk_timestamp(
        self, object: str, names: list[str], cursor: Watermark
    ) -> Iterator[tuple[list[RawRecord], Watermark]]:
        prop = LAST_MODIFIED[object]
        stamp = str(_ms(cursor.at))
        last_id = _int_id(cursor.id) if cursor.id else -1
        while True:
            after = 0
            while True:
                filters = [
                    {"propertyName": prop, "operator": "GTE", "value": stamp},
                    {"propertyName": prop, "operator": "LTE", "value": stamp},
                ]
                if last_id >= 0:
                    filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)})
                body: dict[str, Any] = {
                    "filterGroups": [{"filters": filters}],
                    "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                    "properties": names,
                    "limit": SEARCH_PAGE,
                }
                if after:
                    body["after"] = str(after)
                response = self._search(object, body)
                results = response.body.get("results") or []
                if not results:
                    return
                records = [self._record(object, item) for item in results]
                page_last = max(_int_id(r.id) for r in records)
                nxt = ((response.body.get("paging") or {}).get("next") or {}).get("after")
                if not nxt:
                    # The last page of this timestamp: all of it is done.
                    yield records, Watermark(cursor.at, ALL_AT_TIMESTAMP)
                    return
                yield records, Watermark(cursor.at, str(page_last))
                after = int(nxt)
                if after + SEARCH_PAGE > SEARCH_CAP:
                    last_id = page_last
                    break

    def _archived(self, object: str, names: list[str], floor: Watermark, mark: Watermark) -> Iterator[Page]:
        """Records archived since the previous listing, as deletions, at most every ``archived_every``.

        Their pages carry the live pull's last watermark. See the module docstring for why the listing is
        read on an interval rather than every pull.
        """
        now = self._server_now or self._now()
        listed = self._archived_listed.get(object)
        if listed is not None and now - listed < self.archived_every * self._archived_pages.get(object, 1):
            return
        since = (listed if listed is not None else floor.at - self.archived_every) - self.lookback
        began: datetime | None = None
        pages = 0
        for response, *_ in self._list_pages(object, names, archived=True):
            pages += 1
            began = began or server_time(response.headers) or now
            records = [self._record(object, item) for item in response.body.get("results") or []]
            fresh = [r for r in records if r.modified_at > since]
            if fresh:
                yield Page(fresh, mark.encode())
        self._archived_listed[object] = began or now
        self._archived_pages[object] = pages

    def _add_companies(self, records: list[RawRecord], *, lane: RateLimiter | None = None) -> None:
        """Each deal's company id in ``associatedcompanyid``: one associations batch read per 1,000 deals."""
        live = [r.id for r in records if not r.deleted]
        found = self.primary_associations("deals", "companies", live, lane=lane) if live else {}
        for record in records:
            record.fields[DEAL_COMPANY_FIELD] = found.get(record.id)

    def _association_items(
        self, from_object: str, to_object: str, ids: Iterable[str], *, lane: RateLimiter | None = None
    ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """(source id, its associations) from the v4 associations batch read, ASSOCIATIONS_READ_LIMIT ids a call."""
        api = self._api("associations", "batch_api")
        for batch in batched(ids, ASSOCIATIONS_READ_LIMIT):
            body = {"inputs": [{"id": str(i)} for i in batch]}
            response = self._call(
                "associations/batch/read",
                lambda body=body: api.get_page(  # type: ignore[misc]
                    from_object,
                    to_object,
                    batch_input_public_fetch_associations_batch_request=body,
                    **self._opts(),
                ),
                lane=lane,
            )
            for item in response.body.get("results") or []:
                yield str((item.get("from") or {}).get("id", "")), list(item.get("to") or [])

    def primary_associations(
        self, from_object: str, to_object: str, ids: Iterable[str], *, lane: RateLimiter | None = None
    ) -> dict[str, str]:
        """For each id, its primary associated record (e.g. a deal's company), else the lowest associated id."""
        out: dict[str, str] = {}
        for source, targets in self._association_items(from_object, to_object, ids, lane=lane):
            primary = [
                t
                for t in targets
                if any((k or {}).get("label") == "Primary" for k in t.get("associationTypes") or [])
            ]
            chosen = primary or sorted(targets, key=lambda t: _int_id(str(t.get("toObjectId"))))
            if chosen:
                out[source] = str(chosen[0].get("toObjectId"))
        return out

    def read(
        self, object: str, ids: Iterable[str], *, fields: Sequence[str] | None = None
    ) -> Iterator[list[RawRecord]]:
        api = self._api(object, "batch_api")
        names = self._properties(object, fields)
        for batch in batched(ids, BATCH_LIMIT):
            body = {
                "inputs": [{"id": str(i)} for i in batch],
                "properties": names,
                "propertiesWithHistory": [],
            }
            response = self._call(
                "batch/read",
                lambda body=body: api.read(
                    batch_read_input_simple_public_object_id=body, archived=False, **self._opts()
                ),  # type: ignore[misc]
            )
            records = [self._record(object, item) for item in response.body.get("results") or []]
            if object == "deals" and records:
                self._add_companies(records)
            yield records

    def read_associations(self, from_object: str, to_object: str, ids: Iterable[str]) -> dict[str, list[str]]:
        """Associated record ids (e.g. contacts -> companies), in batches of ASSOCIATIONS_READ_LIMIT ids."""
        out: dict[str, list[str]] = {}
        for source, targets in self._association_items(from_object, to_object, ids):
            out.setdefault(source, []).extend(str(t.get("toObjectId")) for t in targets)
        return out

    # ------------------------------------------------------------------------------------------- pushes

    def key_property(self, object: str) -> str:
        return self.key_properties.get(object, DEFAULT_KEY_PROPERTY)

    def push_batches(self, object: str, changes: Iterable[Change]) -> Iterator[list[PushResult]]:
        if object not in LAST_MODIFIED:
            raise FatalConnectorError(f"HubSpot: unknown object {object!r}", system="hubspot")
        for batch in batched(changes, BATCH_LIMIT):
            results: list[PushResult | None] = [None] * len(batch)
            updates = [(i, c) for i, c in enumerate(batch) if not c.is_create]
            creates = [(i, c) for i, c in enumerate(batch) if c.is_create]
            if updates:
                for (i, _), result in zip(
                    updates, self._send(object, [c for _, c in updates], create=False), strict=True
                ):
                    results[i] = result
            if creates:
                for (i, _), result in zip(
                    creates, self._send(object, [c for _, c in creates], create=True), strict=True
                ):
                    results[i] = result
            yield [r for r in results if r is not None]

    def _inputs(self, object: str, changes: Sequence[Change], *, create: bool) -> list[dict[str, Any]]:
        key_prop = self.key_property(object)
        inputs = []
        for n, change in enumerate(changes):
            props = {
                k: ("" if v is None else str(v) if not isinstance(v, str) else v)
                for k, v in change.fields.items()
            }
            if create:
                if change.key and key_prop not in props:
                    props[key_prop] = change.key
                inputs.append({"properties": props, "associations": [], "objectWriteTraceId": str(n)})
            else:
                inputs.append({"id": str(change.id), "properties": props, "objectWriteTraceId": str(n)})
        return inputs

    def _send(self, object: str, changes: Sequence[Change], *, create: bool) -> list[PushResult]:
        """One batch call; a batch refused as a whole is split until the inputs at fault are found."""
        try:
            return self._create_once(object, changes) if create else self._update_once(object, changes)
        except AuthError:
            raise
        except FatalConnectorError as exc:
            if exc.status not in REFUSED_BATCH:
                raise
            if len(changes) == 1:
                change = changes[0]
                return [
                    PushResult(
                        ok=False,
                        id=change.id,
                        code=exc.code or str(exc.status),
                        message=str(exc),
                        key=change.key,
                    )
                ]
            half = len(changes) // 2
            return [
                *self._send(object, changes[:half], create=create),
                *self._send(object, changes[half:], create=create),
            ]

    def _update_once(self, object: str, changes: Sequence[Change]) -> list[PushResult]:
        api = self._api(object, "batch_api")
        body = {"inputs": self._inputs(object, changes, create=False)}
        response = self._call(
            "batch/update",
            lambda: api.update(batch_input_simple_public_object_batch_input=body, **self._opts()),
        )
        return self._results(changes, response.body, create=False)

    def _create_once(self, object: str, changes: Sequence[Change]) -> list[PushResult]:
        """Batch create; after a failure that may have written, the retry first finds what it wrote by key."""
        api = self._api(object, "batch_api")
        done: dict[int, PushResult] = {}
        pending = list(range(len(changes)))
        sent: list[int] = []
        ambiguous = False
        failed_at = 0.0

        def attempt() -> Any:
            nonlocal pending, sent, ambiguous, failed_at
            if ambiguous:
                # The keys are looked up with search, which sees a write only once indexed: give the index
                # the time a write the lost attempt made needs to become searchable.
                waited = self._clock() - failed_at
                if waited < self.search_lag_seconds:
                    self._sleep(self.search_lag_seconds - waited)
                found = self._find_keys(object, [k for n in pending if (k := changes[n].key)])
                for n in pending:
                    key = changes[n].key
                    if key and key in found:
                        done[n] = PushResult(ok=True, id=found[key], created=True, key=key)
                pending = [n for n in pending if n not in done]
                ambiguous = False
            sent = list(pending)
            if not sent:
                return None
            body = {"inputs": self._inputs(object, [changes[n] for n in sent], create=True)}
            try:
                return api.create(
                    batch_input_simple_public_object_batch_input_for_create=body, **self._opts()
                )
            except Exception as exc:
                status = getattr(exc, "status", None)
                ambiguous = not isinstance(status, int) or status >= 500
                failed_at = self._clock()
                raise

        response = self._call("batch/create", attempt)
        if sent:
            for n, result in zip(
                sent, self._results([changes[n] for n in sent], response.body, create=True), strict=True
            ):
                done[n] = result
        return [done[n] for n in range(len(changes))]

    def _results(
        self, changes: Sequence[Change], body: Mapping[str, Any], *, create: bool
    ) -> list[PushResult]:
        by_trace: dict[int, PushResult] = {}
        by_id = {str(c.id): n for n, c in enumerate(changes) if c.id is not None}
        for item in body.get("results") or []:
            n = self._position(
                item.get("objectWriteTraceId"), str(item.get("id")) if not create else None, by_id
            )
            if n is not None:
                by_trace[n] = PushResult(ok=True, id=str(item.get("id")), created=create, key=changes[n].key)
        for error in body.get("errors") or []:
            context = error.get("context") or {}
            traces = context.get("objectWriteTraceId") or context.get("index") or []
            positions = [self._position(t, None, by_id) for t in traces]
            if not traces:
                positions = [by_id.get(str(i)) for i in context.get("ids") or []]
            for n in positions:
                if n is not None and n not in by_trace:
                    by_trace[n] = PushResult(
                        ok=False,
                        id=changes[n].id,
                        code=hubspot_error_code(error) or "UNKNOWN",
                        message=str(error.get("message", "")),
                        key=changes[n].key,
                    )
        return [
            by_trace.get(n)
            or PushResult(
                ok=False,
                id=c.id,
                code="NO_RESULT",
                message="HubSpot returned no result for this input",
                key=c.key,
            )
            for n, c in enumerate(changes)
        ]

    @staticmethod
    def _position(trace: Any, id_: str | None, by_id: Mapping[str, int]) -> int | None:
        if trace is not None and str(trace).isdigit():
            return int(str(trace))
        if id_ is not None:
            return by_id.get(id_)
        return None

    def _find_keys(self, object: str, keys: list[str]) -> dict[str, str]:
        """Records that already carry these create keys: key -> id."""
        if not keys:
            return {}
        prop = self.key_property(object)
        body = {
            "filterGroups": [{"filters": [{"propertyName": prop, "operator": "IN", "values": keys}]}],
            "properties": [prop],
            "limit": SEARCH_PAGE,
        }
        response = self._search(object, body)
        out: dict[str, str] = {}
        for item in response.body.get("results") or []:
            key = (item.get("properties") or {}).get(prop)
            if key:
                out[str(key)] = str(item["id"])
        return out

    # --------------------------------------------------------------------------------------------- reps

    def list_reps(self, *, full: bool = True) -> list[RepRecord]:
        api = self._api("owners", "owners_api")
        reps: list[RepRecord] = []
        for archived in (False, True) if full else (False,):
            after: str | None = None
            while True:
                kwargs: dict[str, Any] = {"limit": OWNERS_PAGE, "archived": archived, **self._opts()}
                if after:
                    kwargs["after"] = after
                response = self._call("owners", lambda kwargs=kwargs: api.get_page(**kwargs))  # type: ignore[misc]
                for item in response.body.get("results") or []:
                    name = " ".join(p for p in (item.get("firstName"), item.get("lastName")) if p)
                    reps.append(
                        RepRecord(
                            system="hubspot",
                            kind="owner",
                            id=str(item["id"]),
                            email=str(item["email"]).lower() if item.get("email") else None,
                            name=name,
                            active=not (archived or item.get("archived")),
                            user_id=str(item["userId"]) if item.get("userId") is not None else None,
                        )
                    )
                after = ((response.body.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
        return reps
