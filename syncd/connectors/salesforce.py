"""The Salesforce connector, on simple-salesforce.

- Pulls: SOQL ``WHERE SystemModstamp >= <watermark - look-back> ORDER BY SystemModstamp, Id`` through
  ``queryAll`` (so deleted rows come too), paged by ``nextRecordsUrl``: one page in memory at a time. A first
  sync of an object larger than ``bulk_threshold`` runs as one Bulk API 2.0 query, read in pages.
  ``pull_many`` sends the delta queries of up to five objects in one ``/composite`` request (one API call)
  and follows each one's ``nextRecordsUrl``; AccountTeamMember, a sixth, rides the same request as an
  sObject Get Updated subrequest (ids changed in a window of whole minutes), read by id only when some
  changed. A delta query's last page carries a watermark no older than the org's time of the query (its
  ``Date`` header), so an idle org's next query re-reads nothing.
- Field limits: ``field_limits`` reads describe (one call per object) into ``FieldLimit`` values that say
  what the org would refuse (STRING_TOO_LONG, NUMBER_OUTSIDE_VALID_RANGE, ...) and how to fit a value.
- Pushes: sObject Collections, at most 200 records a call, ``allOrNone`` false: updates by id
  (``PATCH composite/sobjects``), creates as upserts on the external-id field (``PATCH
  composite/sobjects/{Type}/{Field}``), so a retried create updates what the first attempt made.
- Logins go through ``client_factory`` (``syncd.connectors.auth``): on first use, and again once when a call
  answers 401 INVALID_SESSION_ID and the auth mode can renew (every mode but a bare session); the call is
  then made again.
- Every HTTP request goes through one ``requests.Session`` whose hook counts it by kind, spends the daily
  budget, and reads ``Sforce-Limit-Info``; certificate trust is pinned to ``ca_file`` when one is set.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlencode, urlsplit

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceGeneralError

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
from syncd.connectors.errors import salesforce_error
from syncd.connectors.policy import CallPolicy, Clock, DailyBudget, Now, Sleep
from syncd.core.systems import SALESFORCE_EMAIL, SALESFORCE_OBJECTS, WRITE_BATCH_LIMIT
from syncd.errors import ConnectorError, FatalConnectorError, RetriableError

__all__ = ["COLLECTION_LIMIT", "TEAM_OBJECT", "SalesforceConnector", "SalesforceSession", "TeamWrite"]

log = logging.getLogger(__name__)
T = TypeVar("T")

COLLECTION_LIMIT = WRITE_BATCH_LIMIT["salesforce"]
COMPOSITE_QUERIES = 5  # query subrequests in one /composite request
READ_BATCH = 200
SYNC_OBJECTS: tuple[str, ...] = ("Lead", "Contact", "Account", "Opportunity")
DEFAULT_EXTERNAL_ID = "Syncd_HubSpot_Id__c"
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
_VERSION_PATH = re.compile(r"^/services/data/v[\d.]+/")
_LOCATOR = re.compile(r"/[0-9A-Za-z]{15,18}(-\d+)?$")
TEAM_OBJECT = "AccountTeamMember"
# Objects whose changes sObject Get Updated reports in full, so their delta may ride a /composite request as
# one (not a query: it does not count against COMPOSITE_QUERIES). AccountTeamMember: a removed member is
# erased (no query shows it either), and the object supports getUpdated() (Object Reference,
# "AccountTeamMember", Supported Calls). Objects with soft deletes need queryAll, so they stay queries.
GET_UPDATED_OBJECTS = frozenset({TEAM_OBJECT})
GET_UPDATED_DAYS = 30  # Get Updated answers for no more than 30 days before the day of the call
# A delete of a member that is already gone (an Account owner change erased the team, a human removed it)
# reached the wanted end state.
_GONE = frozenset({"NOT_FOUND", "ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})


@dataclass(frozen=True, slots=True)
class TeamWrite:
    """One write to an account team: ``add`` (fields: AccountId, UserId, TeamMemberRole, access levels),
    ``change`` of member ``id`` (role, access levels), or ``remove`` of member ``id``."""

    op: Literal["add", "change", "remove"]
    fields: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


def default_fields(object: str) -> list[str]:
    """The fields syncd reads when the caller names none: the standard subset plus syncd's custom fields."""
    spec = SALESFORCE_OBJECTS.get(object)
    if spec is None:
        raise FatalConnectorError(f"Salesforce: unknown object {object!r}", system="salesforce")
    return spec.names


class SalesforceSession(requests.Session):
    """A requests session with a default timeout and, when ``ca_file`` is set, trust pinned to it.

    requests lets ``REQUESTS_CA_BUNDLE`` replace a session's ``verify`` on every request that does not pass
    its own, and simple-salesforce never passes one: pinning keeps the configured CA without dropping proxy
    settings from the environment.
    """

    def __init__(self, *, ca_file: str | Path | None = None, timeout: float = 30.0) -> None:
        super().__init__()
        self.timeout = timeout
        self.pinned = ca_file is not None
        if ca_file is not None:
            self.verify = str(ca_file)

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.pinned and (verify is None or verify is True):
            settings["verify"] = self.verify
        return settings

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def parse_sf_datetime(value: str) -> datetime:
    """``2024-01-01T00:00:00.000+0000`` (REST) or ``...Z`` (Bulk CSV) as an aware UTC datetime."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text).astimezone(UTC)


def format_sf_datetime(value: datetime) -> str:
    """As Salesforce writes datetimes in REST responses."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}+0000"


def _soql_literal(value: datetime) -> str:
    # SOQL datetime literals carry no fraction: compare from the start of the second.
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _replication_literal(value: datetime) -> str:
    # Get Updated's start and end: ISO 8601 with an offset (REST API Developer Guide, "sObject Get Updated").
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _request_kind(method: str, url: str) -> str:
    path = urlsplit(url).path
    path = _VERSION_PATH.sub("", path).strip("/")
    if path.startswith(("query/", "queryAll/")) and _LOCATOR.search("/" + path.split("/", 1)[1]):
        return f"{method} {path.split('/', 1)[0]} more"
    if path.startswith("jobs/"):
        parts = path.split("/")
        path = "/".join(
            parts[:2] + (["results"] if parts[-1] == "results" else [] if len(parts) == 2 else ["job"])
        )
    elif path.startswith("composite/sobjects/"):
        path = "composite/sobjects/" + ("upsert" if path.count("/") >= 3 else "retrieve")
    elif path.startswith("sobjects/"):
        parts = path.split("/")
        path = "/".join(parts[:2] + (["..."] if len(parts) > 2 else []))
    return f"{method} {path}"


class SalesforceConnector(Connector):
    """Salesforce through simple-salesforce: streaming pulls, collection pushes, reps, budget."""

    system: ClassVar[Any] = "salesforce"
    objects: ClassVar[tuple[str, ...]] = SYNC_OBJECTS
    batch_limit: ClassVar[int] = COLLECTION_LIMIT

    def __init__(
        self,
        client_factory: Callable[[requests.Session], Salesforce],
        *,
        ca_file: str | Path | None = None,
        timeout: float = 30.0,
        requests_per_10s: int = 200,
        daily_share: float = 0.5,
        daily_allowance: int = 100_000,
        org_ceiling: float = 0.9,
        max_attempts: int = 6,
        max_backoff: float = 60.0,
        lookback_seconds: float = 60.0,
        page_size: int = 2000,
        bulk_threshold: int = 50_000,
        bulk_poll_seconds: float = 2.0,
        fields: Mapping[str, Sequence[str]] | None = None,
        external_id_fields: Mapping[str, str] | None = None,
        refreshable: bool = False,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        now: Now = lambda: datetime.now(UTC),
    ) -> None:
        self._now = now
        self.budget = DailyBudget(
            "salesforce", share=daily_share, allowance=daily_allowance, org_ceiling=org_ceiling, now=now
        )
        self.policy = CallPolicy(
            "salesforce",
            requests_per_10s=requests_per_10s,
            search_per_second=1000,
            budget=self.budget,
            max_attempts=max_attempts,
            max_backoff=max_backoff,
            clock=clock,
            sleep=sleep,
        )
        self.lookback = timedelta(seconds=lookback_seconds)
        self.page_size = page_size
        self.bulk_threshold = bulk_threshold
        self.bulk_poll_seconds = bulk_poll_seconds
        self.fields = {k: list(v) for k, v in (fields or {}).items()}
        self.external_id_fields = dict(external_id_fields or {})
        self.refreshable = refreshable
        self.session = SalesforceSession(ca_file=ca_file, timeout=timeout)
        self.session.hooks["response"].append(self._on_response)
        self._last: requests.Response | None = None
        self._factory = client_factory
        self._sf: Salesforce | None = None
        self.renewals = 0  # logins after an expired session
        self._describes: dict[str, dict[str, str]] = {}

    # ------------------------------------------------------------------------------------------ plumbing

    @property
    def sf(self) -> Salesforce:
        """The simple-salesforce client; login modes log in on first use."""
        if self._sf is None:
            self._sf = self._call("login", lambda: self._factory(self.session))
        return self._sf

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last = response
        self.policy.counts[_request_kind(str(response.request.method), str(response.request.url))] += 1
        self.policy.statuses[str(response.status_code)] += 1
        self.budget.spend()
        match = _USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self.budget.observe(int(match.group(1)), int(match.group(2)))

    def _call(self, kind: str, fn: Callable[[], T]) -> T:
        def attempt() -> T:
            self._last = None
            try:
                return self._renewing(fn)
            except ConnectorError:
                raise
            except Exception as exc:
                headers = self._last.headers if self._last is not None else None
                raise salesforce_error(exc, headers=headers, refreshable=self.refreshable) from exc

        # The session hook counts requests and spends the budget; the policy paces, checks and retries.
        return self.policy.call(kind, attempt, count=False)

    def _renewing(self, fn: Callable[[], T]) -> T:
        """Call ``fn``; when the session expired and the auth mode can log in again, do so once and call again.

        A request refused with 401 INVALID_SESSION_ID was not carried out, so calling it again loses and
        doubles nothing. A second expiry in a row, or a bare session token, is an AuthError.
        """
        try:
            return fn()
        except SalesforceExpiredSession:
            if not self.refreshable or self._sf is None:
                raise
            log.info("Salesforce: the session expired; logging in again")
            self._sf = None
            self.renewals += 1
            return fn()

    def _once(self, fn: Callable[[], T]) -> T:
        """One call without retries: for a generator, which a failure closes for good."""
        self.budget.check()
        try:
            return fn()
        except ConnectorError:
            raise
        except SalesforceExpiredSession as exc:
            if not self.refreshable:
                raise salesforce_error(exc, refreshable=False) from exc
            # The generator is closed: log in again for the next call and let the caller resume the pull.
            self._sf = None
            self.renewals += 1
            raise RetriableError(
                "Salesforce: the session expired during a Bulk API query; the pull resumes from its last page",
                system="salesforce",
                status=401,
                code="INVALID_SESSION_ID",
            ) from exc
        except Exception as exc:
            headers = self._last.headers if self._last is not None else None
            raise salesforce_error(exc, headers=headers, refreshable=self.refreshable) from exc

    def call_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.policy.counts.items() if v > 0}

    def budget_state(self) -> BudgetState:
        return self.budget.state(self.policy.limiter.limit)

    def rate_limited(self) -> int:
        return self.policy.rate_limited

    def close(self) -> None:
        self.session.close()

    def _fields(self, object: str, fields: Sequence[str] | None) -> list[str]:
        names = list(fields) if fields is not None else self.fields.get(object) or default_fields(object)
        need = ["Id", "SystemModstamp", "IsDeleted"]
        lower = {n.lower() for n in names}
        return [*[n for n in need if n.lower() not in lower], *names]

    def _record(self, object: str, row: Mapping[str, Any]) -> RawRecord:
        data = {k: v for k, v in row.items() if k != "attributes"}
        stamp = data.get("SystemModstamp") or data.get("LastModifiedDate")
        return RawRecord(
            system="salesforce",
            object=object,
            id=str(data["Id"]),
            modified_at=parse_sf_datetime(str(stamp)) if stamp else datetime.fromtimestamp(0, UTC),
            deleted=bool(data.get("IsDeleted")),
            fields=data,
        )

    # ------------------------------------------------------------------------------------------- pulls

    def pull(
        self, object: str, since: str | None = None, *, fields: Sequence[str] | None = None
    ) -> Iterator[Page]:
        names = self._fields(object, fields)
        start = Watermark.decode(since, system="salesforce") if since else None
        if start is None and self.bulk_threshold and self._count(object) > self.bulk_threshold:
            yield from self._pull_bulk(object, names)
            return
        soql = self._pull_soql(object, names, start)
        include_deleted = start is not None
        headers = self._query_headers()
        result = self._call(
            "query", lambda: self.sf.query(soql, include_deleted=include_deleted, headers=headers)
        )
        anchor = self._anchor() if start is not None else None
        yield from self._query_pages(object, result, start, anchor)

    def pull_many(self, since: Mapping[str, str | None]) -> Iterator[tuple[str, Page]]:
        """The changes of several objects, their first (delta) queries sent together in one ``/composite``.

        Up to five queries go in one request (REST API Developer Guide, "Composite": up to 25 subrequests, of
        which up to 5 query or sObject Collections operations; the whole request counts as one API call).
        Each query's later pages follow its ``nextRecordsUrl`` with ordinary query-more calls. An object
        without a watermark is pulled on its own (a first sync may go through the Bulk API). A query the org
        refuses fails the pull once the other objects of its request are yielded.

        Objects past the fifth that Get Updated reports in full (``GET_UPDATED_OBJECTS``: AccountTeamMember,
        whose removals no query shows either) ride the first request as an sObject Get Updated subrequest
        instead of taking a second request: Composite accepts "all sObject resources" as subrequests and only
        query and sObject Collections ones count against the five (REST API Developer Guide, "Composite").
        Get Updated answers the ids changed in a window (``_updated_pages``); an idle org's answer is empty,
        so an idle cycle stays one API call, and changed ids cost one query per 200 of them.
        """
        items = list(since.items())
        delta = [(obj, Watermark.decode(mark, system="salesforce")) for obj, mark in items if mark]
        queries = delta[:COMPOSITE_QUERIES]
        riders: list[tuple[str, Watermark]] = []
        for obj, start in delta[COMPOSITE_QUERIES:]:
            (riders if self._can_ride(obj, start) else queries).append((obj, start))
        groups = list(batched(queries, COMPOSITE_QUERIES)) or ([[]] if riders else [])
        for n, group in enumerate(groups):
            yield from self._pull_composite(group, riders if n == 0 else [])
        for obj, mark in items:
            if not mark:
                for page in self.pull(obj):
                    yield obj, page

    def _can_ride(self, object: str, start: Watermark) -> bool:
        """Whether ``object``'s delta may go as a Get Updated subrequest: an object Get Updated reports in
        full, with a window start inside the days the org answers for (a day to spare: the limit counts from
        the start of the day, in the org's time)."""
        return object in GET_UPDATED_OBJECTS and start.at - self.lookback > self._now() - timedelta(
            days=GET_UPDATED_DAYS - 1
        )

    def _updated_window(self, start: Watermark) -> tuple[datetime, datetime]:
        """The Get Updated window for a watermark: from the watermark minus the look-back to now, in whole
        minutes (the API ignores the seconds of both ends), and more than a minute wide (else
        INVALID_REPLICATION_DATE; REST API Developer Guide, "sObject Get Updated", Parameters; SOAP API
        Developer Guide, getUpdated(), "Rules and Guidelines")."""
        end = self._now().astimezone(UTC).replace(second=0, microsecond=0)
        begin = (start.at - self.lookback).astimezone(UTC).replace(second=0, microsecond=0)
        return min(begin, end - timedelta(minutes=2)), end

    def _pull_composite(
        self, group: list[tuple[str, Watermark]], riders: Sequence[tuple[str, Watermark]] = ()
    ) -> Iterator[tuple[str, Page]]:
        version = str(getattr(self.sf, "sf_version", "") or "59.0")
        subrequests = []
        for i, (obj, start) in enumerate(group):
            soql = self._pull_soql(obj, self._fields(obj, None), start)
            subrequests.append(
                {
                    "method": "GET",
                    "url": f"/services/data/v{version}/queryAll/?{urlencode({'q': soql})}",
                    "referenceId": f"pull_{i}_{obj}",
                    "httpHeaders": self._query_headers(),
                }
            )
        for i, (obj, start) in enumerate(riders):
            begin, end = self._updated_window(start)
            window = urlencode({"start": _replication_literal(begin), "end": _replication_literal(end)})
            subrequests.append(
                {
                    "method": "GET",
                    "url": f"/services/data/v{version}/sobjects/{obj}/updated/?{window}",
                    "referenceId": f"updated_{i}_{obj}",
                }
            )
        body = {"allOrNone": False, "collateSubrequests": False, "compositeRequest": subrequests}
        result = self._call("composite", lambda: self.sf.restful("composite", method="POST", json=body))
        anchor = self._anchor()
        answers = {
            str(r.get("referenceId")): r
            for r in (result.get("compositeResponse") or [] if isinstance(result, dict) else [])
        }
        failure: ConnectorError | None = None
        for (obj, start), sub in zip([*group, *riders], subrequests, strict=True):
            answer = answers.get(str(sub["referenceId"]))
            status = int(answer.get("httpStatusCode", 0)) if answer else 0
            if answer is None or status != 200 or not isinstance(answer.get("body"), dict):
                content = answer.get("body") if answer else result
                failure = failure or salesforce_error(
                    # content as the client's exceptions carry it: the parsed body
                    SalesforceGeneralError(str(sub["url"]), status or 500, obj, content),  # type: ignore[arg-type]
                    refreshable=self.refreshable,
                )
                continue
            if str(sub["referenceId"]).startswith("updated_"):
                pages = self._updated_pages(obj, answer["body"], start, anchor)
            else:
                pages = self._query_pages(obj, answer["body"], start, anchor)
            for page in pages:
                yield obj, page
        if failure is not None:
            raise failure

    def _updated_pages(
        self, object: str, answer: Mapping[str, Any], start: Watermark, anchor: Watermark | None
    ) -> Iterator[Page]:
        """The records a Get Updated answer names, read 200 ids a query, in pages; only the last page moves
        the watermark, to the end of the window the org covered (``latestDateCovered``: "use this value for
        the startDate of your next call", SOAP API Developer Guide, GetUpdatedResult), never past the org's
        time of the request (``Date``), never back."""
        covered_text = answer.get("latestDateCovered")
        covered = parse_sf_datetime(str(covered_text)) if covered_text else start.at
        if anchor is not None:
            covered = min(covered, anchor.at)
        mark = max(start, Watermark(covered, ""))
        ids = [str(i) for i in answer.get("ids") or []]
        batches = list(batched(ids, READ_BATCH))
        for n, records in enumerate(self.read(object, ids)):
            last = n == len(batches) - 1
            yield Page(records, (mark if last else start).encode())
        if not ids and mark != start:
            yield Page([], mark.encode())

    def _pull_soql(self, object: str, names: list[str], start: Watermark | None) -> str:
        soql = f"SELECT {', '.join(names)} FROM {object}"
        if start is not None:
            soql += f" WHERE SystemModstamp >= {_soql_literal(start.at - self.lookback)}"
        return soql + " ORDER BY SystemModstamp, Id"

    def _query_headers(self) -> dict[str, str]:
        return {"Sforce-Query-Options": f"batchSize={self.page_size}"}

    def _anchor(self) -> Watermark | None:
        """The org's clock when the last response was sent, as a watermark: every change the query could
        see is in its result, so the next delta query may start from here (minus the look-back).

        Salesforce sends the standard ``Date`` header (RFC 9110 section 6.6.1: an origin server with a clock
        must) on every REST response; it has whole seconds, cut down, so it never runs ahead of the query.
        Reading it instead of syncd's clock keeps a skewed local clock out of the watermark.
        """
        raw = self._last.headers.get("Date") if self._last is not None else None
        if not raw:
            return None
        try:
            at = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return Watermark(at.astimezone(UTC), "")

    def _query_pages(
        self, object: str, result: Mapping[str, Any], start: Watermark | None, anchor: Watermark | None
    ) -> Iterator[Page]:
        headers = self._query_headers()
        while True:
            next_url = result.get("nextRecordsUrl")
            last = bool(result.get("done", True)) or not next_url
            page = self._page(object, result.get("records") or [], start, anchor if last else None)
            if page is not None:
                yield page
            if last:
                return
            result = self._call(
                "query more",
                lambda url=next_url: self.sf.query_more(url, identifier_is_url=True, headers=headers),  # type: ignore[misc]
            )

    def _page(
        self,
        object: str,
        rows: list[dict[str, Any]],
        start: Watermark | None,
        anchor: Watermark | None = None,
    ) -> Page | None:
        """One page and the watermark after it. On a delta query's last page the watermark moves up to the
        org's time of the query (``anchor``) even when nothing newer came: an idle org's next query starts at
        that time minus the look-back instead of re-reading the last burst of changes every cycle."""
        records = [self._record(object, row) for row in rows]
        if start is not None and not self.lookback:
            # The query starts at the watermark's second: drop what the watermark says is done. Ids at the
            # watermark's own millisecond may come again (the server's Id order is not Python's).
            records = [
                r
                for r in records
                if r.modified_at > start.at
                or (r.modified_at == start.at and start.id != ALL_AT_TIMESTAMP and r.id != start.id)
            ]
        marks = [m for m in (start, anchor) if m is not None]
        if rows:
            last = self._record(object, rows[-1])
            marks.append(Watermark(last.modified_at, last.id))
        if not marks:
            return None
        mark = max(marks)
        if not rows and mark == start:
            return None
        return Page(records, mark.encode())

    def _count(self, object: str) -> int:
        result = self._call("query", lambda: self.sf.query(f"SELECT COUNT() FROM {object}"))
        return int(result.get("totalSize", 0))

    def _describe(self, object: str) -> dict[str, str]:
        if object not in self._describes:
            self._describe_fields(object)
        return self._describes[object]

    def _describe_fields(self, object: str) -> list[dict[str, Any]]:
        """The object's fields as describe lists them (one call), refreshing the cached field types."""
        info = self._call("describe", lambda: getattr(self.sf, object).describe())
        found = [f for f in (info.get("fields") or []) if isinstance(f, dict) and f.get("name")]
        self._describes[object] = {str(f["name"]): str(f.get("type", "string")) for f in found}
        return found

    def field_limits(self, objects: Iterable[str] | None = None) -> dict[str, dict[str, FieldLimit]]:
        """What each field of ``objects`` (default: the synced objects) accepts, read from describe: one call
        per object, every time (call it when the roster is refreshed, and check values before sending).

        describe gives ``length`` of text fields, ``digits`` of ints, ``precision`` and ``scale`` of doubles
        and currencies, and ``restrictedPicklist`` with ``picklistValues`` (REST API Developer Guide, "sObject
        Describe"; SOAP API Developer Guide, "DescribeSObjectResult", Field). A field describe marks
        read-only (``updateable`` false) is listed too, flagged.
        """
        out: dict[str, dict[str, FieldLimit]] = {}
        for object in objects if objects is not None else self.objects:
            limits: dict[str, FieldLimit] = {}
            for f in self._describe_fields(object):
                kind = str(f.get("type") or "string")
                text = kind in _TEXT_KINDS
                limits[str(f["name"])] = FieldLimit(
                    name=str(f["name"]),
                    type=kind,
                    length=int(f.get("length") or 0) if text else 0,
                    digits=int(f.get("digits") or 0) if kind == "int" else 0,
                    precision=int(f.get("precision") or 0) if kind in _NUMBER else 0,
                    scale=int(f.get("scale") or 0) if kind in _NUMBER else 0,
                    picklist=tuple(
                        str(p["value"])
                        for p in f.get("picklistValues") or []
                        if isinstance(p, dict) and p.get("active", True) and p.get("value") is not None
                    ),
                    restricted=bool(f.get("restrictedPicklist")),
                    updateable=bool(f.get("updateable", True)),
                    pattern=SALESFORCE_EMAIL.pattern if kind == "email" else "",
                    pattern_error="INVALID_EMAIL_ADDRESS" if kind == "email" else "",
                )
            out[object] = limits
        return out

    def _pull_bulk(self, object: str, names: list[str]) -> Iterator[Page]:
        """A first sync through one Bulk API 2.0 query job, converted to the REST shapes page by page."""
        types = self._describe(object)
        soql = f"SELECT {', '.join(names)} FROM {object} ORDER BY SystemModstamp, Id"
        bulk = getattr(self.sf.bulk2, object)
        # A failure ends the pull: the caller resumes from the last page's watermark, incrementally.
        chunks = iter(bulk.query(soql, max_records=self.page_size, wait=self.bulk_poll_seconds))
        while True:
            chunk = self._once(lambda: next(chunks, None))
            if chunk is None:
                return
            rows = [_typed(row, types) for row in csv.DictReader(io.StringIO(str(chunk)))]
            page = self._page(object, rows, None)
            if page is not None:
                yield page

    def read(
        self, object: str, ids: Iterable[str], *, fields: Sequence[str] | None = None
    ) -> Iterator[list[RawRecord]]:
        names = self._fields(object, fields)
        for batch in batched(ids, READ_BATCH):
            soql = (
                f"SELECT {', '.join(names)} FROM {object} WHERE Id IN ({', '.join(_quote(i) for i in batch)})"
            )
            result = self._call("query", lambda soql=soql: self.sf.query_all(soql))  # type: ignore[misc]
            yield [self._record(object, row) for row in result.get("records") or []]

    # ------------------------------------------------------------------------------------------- pushes

    def external_id_field(self, object: str) -> str:
        return self.external_id_fields.get(object, DEFAULT_EXTERNAL_ID)

    def push_batches(self, object: str, changes: Iterable[Change]) -> Iterator[list[PushResult]]:
        ext = self.external_id_field(object)
        for batch in batched(changes, COLLECTION_LIMIT):
            results: list[PushResult | None] = [None] * len(batch)
            updates = [(i, c) for i, c in enumerate(batch) if not c.is_create]
            creates = [(i, c) for i, c in enumerate(batch) if c.is_create]
            if updates:
                records = [{"attributes": {"type": object}, **dict(c.fields), "Id": c.id} for _, c in updates]
                for (i, change), saved in zip(
                    updates, self._collection("composite/sobjects", records), strict=True
                ):
                    results[i] = _save_result(saved, change, created=False)
            if creates:
                records = []
                for _, c in creates:
                    if not c.key and not c.fields.get(ext):
                        raise FatalConnectorError(
                            f"Salesforce: a create on {object} needs a key for {ext} (idempotent upsert)",
                            system="salesforce",
                        )
                    records.append(
                        {"attributes": {"type": object}, **dict(c.fields), ext: c.key or c.fields[ext]}
                    )
                path = f"composite/sobjects/{object}/{ext}"
                for (i, change), saved in zip(creates, self._collection(path, records), strict=True):
                    results[i] = _save_result(saved, change, created=bool(saved.get("created", True)))
            yield [r for r in results if r is not None]

    def _collection(self, path: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = {"allOrNone": False, "records": records}
        kind = "composite/sobjects upsert" if path.count("/") >= 3 else "composite/sobjects"
        try:
            result = self._call(kind, lambda: self.sf.restful(path, method="PATCH", json=body))
        except FatalConnectorError as exc:
            if exc.status != 400:
                raise
            # A request Salesforce refused as a whole: every record in it failed for that reason.
            return [
                {"success": False, "errors": [{"statusCode": exc.code, "message": str(exc)}]} for _ in records
            ]
        if not isinstance(result, list) or len(result) != len(records):
            raise FatalConnectorError(
                f"Salesforce: {path} answered {len(result) if isinstance(result, list) else 'no'} results "
                f"for {len(records)} records",
                system="salesforce",
            )
        return result

    # ------------------------------------------------------------------------------------ account teams
    # AccountTeamMember (Object Reference): a removed member is erased, not soft-deleted, so neither queryAll
    # nor getDeleted shows it, and an Account owner change through the API erases the whole team
    # (KeepAccountTeam defaults to false; REST cannot set it). The incremental pull therefore sees additions
    # and changes only; read_account_teams gives the whole current team of the accounts that need it.

    def pull_account_team_members(self, since: str | None = None) -> Iterator[Page]:
        """AccountTeamMember rows created or changed since the watermark, like ``pull``; never removals."""
        return self.pull(TEAM_OBJECT, since)

    def read_account_teams(self, account_ids: Iterable[str]) -> Iterator[list[RawRecord]]:
        """The current members of the given accounts' teams, one list per batch of accounts."""
        names = self._fields(TEAM_OBJECT, None)
        for batch in batched(account_ids, READ_BATCH):
            soql = (
                f"SELECT {', '.join(names)} FROM {TEAM_OBJECT} "
                f"WHERE AccountId IN ({', '.join(_quote(i) for i in batch)}) ORDER BY AccountId, Id"
            )
            yield [self._record(TEAM_OBJECT, row) for row in self._query_rows(soql)]

    def push_account_team(self, writes: Iterable[TeamWrite]) -> Iterator[list[PushResult]]:
        """Team writes through sObject Collections, at most 200 records a call, results in input order.

        Adds are creates: a create for a user already on the team updates that member, so a replayed add makes
        no second member. A remove of a member already gone counts as done.
        """
        for batch in batched(writes, COLLECTION_LIMIT):
            results: list[PushResult | None] = [None] * len(batch)
            removes = [(i, w) for i, w in enumerate(batch) if w.op == "remove"]
            changes = [(i, w) for i, w in enumerate(batch) if w.op == "change"]
            adds = [(i, w) for i, w in enumerate(batch) if w.op == "add"]
            if removes:
                ids = [str(w.id) for _, w in removes]
                for (i, w), saved in zip(removes, self._collection_delete(ids), strict=True):
                    result = _save_result(saved, Change.update(str(w.id), {}), created=False)
                    results[i] = PushResult(ok=True, id=w.id) if result.code in _GONE else result
            if changes:
                records = [
                    {"attributes": {"type": TEAM_OBJECT}, **dict(w.fields), "Id": w.id} for _, w in changes
                ]
                for (i, w), saved in zip(
                    changes, self._collection("composite/sobjects", records), strict=True
                ):
                    results[i] = _save_result(saved, Change.update(str(w.id), w.fields), created=False)
            if adds:
                records = [{"attributes": {"type": TEAM_OBJECT}, **dict(w.fields)} for _, w in adds]
                for (i, w), saved in zip(adds, self._collection_post(records), strict=True):
                    results[i] = _save_result(saved, Change.create(None, w.fields), created=True)
            yield [r for r in results if r is not None]

    def _collection_post(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = {"allOrNone": False, "records": records}
        result = self._call(
            "composite/sobjects", lambda: self.sf.restful("composite/sobjects", method="POST", json=body)
        )
        return self._results(result, len(records), "POST composite/sobjects")

    def _collection_delete(self, ids: list[str]) -> list[dict[str, Any]]:
        params = {"ids": ",".join(ids), "allOrNone": "false"}
        result = self._call(
            "composite/sobjects",
            lambda: self.sf.restful("composite/sobjects", method="DELETE", params=params),
        )
        return self._results(result, len(ids), "DELETE composite/sobjects")

    @staticmethod
    def _results(result: Any, count: int, what: str) -> list[dict[str, Any]]:
        if not isinstance(result, list) or len(result) != count:
            raise FatalConnectorError(
                f"Salesforce: {what} answered {len(result) if isinstance(result, list) else 'no'} results "
                f"for {count} records",
                system="salesforce",
            )
        return result

    # --------------------------------------------------------------------------------------------- reps

    def list_reps(self, *, full: bool = True) -> list[RepRecord]:
        if not full:
            # A cycle's cheap look at the roster: the Users changed since the last one come with the pull,
            # as one more delta query in the same /composite request (see syncd.cycle.pull).
            return []
        reps: list[RepRecord] = []
        users = "SELECT Id, Email, Name, IsActive FROM User ORDER BY Id"
        for row in self._query_rows(users):
            reps.append(
                RepRecord(
                    system="salesforce",
                    kind="user",
                    id=str(row["Id"]),
                    email=(str(row["Email"]).lower() if row.get("Email") else None),
                    name=str(row.get("Name") or ""),
                    active=bool(row.get("IsActive")),
                )
            )
        queues = "SELECT Id, Name, DeveloperName, Email FROM Group WHERE Type = 'Queue' ORDER BY Id"
        for row in self._query_rows(queues):
            reps.append(
                RepRecord(
                    system="salesforce",
                    kind="queue",
                    id=str(row["Id"]),
                    email=(str(row["Email"]).lower() if row.get("Email") else None),
                    name=str(row.get("Name") or ""),
                    active=True,
                    developer_name=row.get("DeveloperName"),
                )
            )
        return reps

    def _query_rows(self, soql: str) -> Iterator[dict[str, Any]]:
        result = self._call("query", lambda: self.sf.query(soql))
        while True:
            yield from result.get("records") or []
            next_url = result.get("nextRecordsUrl")
            if result.get("done", True) or not next_url:
                return
            result = self._call(
                "query more",
                lambda url=next_url: self.sf.query_more(url, identifier_is_url=True),  # type: ignore[misc]
            )


def _save_result(saved: Mapping[str, Any], change: Change, *, created: bool) -> PushResult:
    if saved.get("success"):
        return PushResult(
            ok=True, id=str(saved.get("id") or change.id or ""), created=created, key=change.key
        )
    errors = saved.get("errors") or [{}]
    first = errors[0] if isinstance(errors[0], dict) else {}
    code = str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN")
    message = str(first.get("message") or "")
    fields = first.get("fields") or []
    if fields:
        message = f"{message} (fields: {', '.join(map(str, fields))})"
    return PushResult(ok=False, id=change.id, created=False, code=code, message=message, key=change.key)


_BOOLEAN = frozenset({"boolean"})
_INTEGER = frozenset({"int"})
_NUMBER = frozenset({"double", "currency", "percent"})
_TEXT_KINDS = frozenset(
    {"string", "email", "url", "phone", "picklist", "multipicklist", "textarea", "combobox"}
)


def _typed(row: Mapping[str, str], types: Mapping[str, str]) -> dict[str, Any]:
    """A Bulk CSV row with REST's value types: nulls, booleans, numbers and datetimes."""
    out: dict[str, Any] = {}
    for name, raw in row.items():
        kind = types.get(name, "string")
        if raw == "" or raw is None:
            out[name] = False if kind in _BOOLEAN else None
        elif kind in _BOOLEAN:
            out[name] = raw.lower() == "true"
        elif kind in _INTEGER:
            out[name] = int(float(raw))
        elif kind in _NUMBER:
            out[name] = float(raw)
        elif kind == "datetime":
            out[name] = format_sf_datetime(parse_sf_datetime(raw))
        else:
            out[name] = raw
    return out
