"""The Salesforce sandbox: a local server that speaks the REST API as simple-salesforce 1.12.10 calls it.

Objects (Lead, Contact, Account, Opportunity, User, Group) and their fields come from the sandbox schema.
Served over HTTPS by ``ServerThread``, it answers the unmodified client exactly as a real org would:

    /services/data/                           the versions served (31.0 up to the org's), no token needed
    /services/data/v59.0/query/?q=            SOQL (syncd.sandbox.soql), 2,000 per page, nextRecordsUrl
    /services/data/v59.0/queryAll/?q=         the same, with deleted rows
    /services/data/v59.0/sobjects/...         describe (with field limits), get, create, update, delete,
                                              upsert by external id (update: 200 created:false from 46.0;
                                              several matches: 300), Get Deleted (15 days) / Get Updated (30)
    /services/data/v59.0/composite/           up to 25 subrequests, at most 5 of them queries or sObject
                                              Collections, references, allOrNone; one API call
    /services/data/v59.0/composite/sobjects   sObject Collections, up to 200 records, allOrNone
    /services/data/v59.0/jobs/query|ingest    Bulk API 2.0 (CSV)
    /services/data/v59.0/limits/              every documented org limit, {Max, Remaining}
    /services/oauth2/token                    OAuth 2.0 grants and session timeout (syncd.sandbox.salesforce_oauth)

Every write maintains the system fields (18-character ids, CreatedDate, LastModifiedDate, a SystemModstamp
that strictly increases so ``>`` pulls never skip a row, LastModifiedById of the calling token's User) and
is refused with Salesforce's own error bodies where a real org refuses it, field limits from describe
included (STRING_TOO_LONG, NUMBER_OUTSIDE_VALID_RANGE, INVALID_EMAIL_ADDRESS, restricted picklists).
``Sforce-Limit-Info`` reports the org's rolling 24-hour API usage on every response; past ``daily_limit``
(with rate limits on) calls get 403 REQUEST_LIMIT_EXCEEDED. Salesforce never answers 429: an injected 429
fault is sent as a 503. An API version the org does not serve is 404 NOT_FOUND; a retired one (< 31.0) 410.

Sandbox-only control routes, besides those of ``syncd.sandbox.base`` (what a person does in the UI):

    POST /__sandbox/convert-lead   {"lead_id", "account_id"?, "user"?}  converts a Lead as Salesforce does
    POST /__sandbox/merge          {"sobject", "master_id", "merge_ids": [1 or 2 ids], "fields"?, "user"?}
                                   merges Leads, Contacts or Accounts as SOAP merge() / the UI does
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, TypeVar

import requests
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from syncd.core.systems import SALESFORCE_EMAIL, FieldSpec, ObjectSpec, OrgSchema
from syncd.sandbox import account_teams
from syncd.sandbox.base import CONTROL_PREFIX, Faults, SandboxApp, json_response
from syncd.sandbox.ids import sf_id
from syncd.sandbox.salesforce_oauth import DEFAULT_SESSION_SECONDS, TOKEN_PATH, SalesforceOAuth
from syncd.sandbox.soql import (
    CompiledQuery,
    SoqlError,
    canonical_sf_id,
    compile_soql,
    format_sf_datetime,
    parse_sf_datetime,
    relationship_name,
)
from syncd.sandbox.store import Record, Store

INTEGRATION_USERNAME = "integration@northwind.example"
DEFAULT_BATCH_SIZE = 2000
MIN_BATCH_SIZE = 200
MAX_COLLECTION_RECORDS = 200
MAX_COMPOSITE_SUBREQUESTS = 25
MAX_COMPOSITE_QUERIES = 5  # query, queryAll and sObject Collections subrequests in one /composite
GET_UPDATED_DAYS = 30
GET_DELETED_DAYS = 15
FIRST_API_VERSION = 31.0  # 21.0-30.0 retired in Summer '25, 7.0-20.0 in Summer '22
MAX_OPEN_CURSORS = 200
QUERY_LOCATOR_IDLE_SECONDS = 15 * 60
USAGE_WINDOW_MINUTES = 24 * 60
CONVERTED_STATUS = "Closed - Converted"
QUERY_LOCATOR_PREFIX = "01g"
JOB_PREFIX = "750"

_TEXT_TYPES = frozenset({"string", "email", "url", "phone", "picklist", "textarea"})
_EMAIL_RE = SALESFORCE_EMAIL
_BATCH_SIZE_RE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
_COMPOSITE_QUERY_URL = re.compile(r"^/services/data/v[^/]+/(query|queryAll|composite/sobjects)(/|\?|$)")
_REFERENCE_RE = re.compile(r"@\{([A-Za-z0-9_]+)\.([^}]+)\}")
_NAMED_OBJECTS = ("Lead", "Contact", "User")
_MERGEABLE = ("Lead", "Contact", "Account")


def client_session(ca_file: str | Path) -> requests.Session:
    """A requests session that trusts the sandbox's CA, for ``Salesforce(session=...)`` and connectors.

    Why not just ``session.verify = ca_file``: requests merges environment settings into every request, and
    when a request does not pass ``verify`` itself, ``REQUESTS_CA_BUNDLE`` (then ``CURL_CA_BUNDLE``) replaces
    the session's value -- so on a machine that sets it globally, the sandbox's certificate is rejected.
    simple-salesforce never passes ``verify`` per request. ``trust_env = False`` would fix it too, but also
    drops ``HTTPS_PROXY``/``NO_PROXY`` and ``.netrc``, which real deployments may need. This session keeps the
    environment for everything except certificate trust: the CA file set here always wins (a ``verify``
    passed explicitly to one request still wins over it).
    """
    session = _PinnedTrustSession()
    session.verify = str(ca_file)
    return session


class _PinnedTrustSession(requests.Session):
    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None or verify is True:
            settings["verify"] = self.verify
        return settings


# --------------------------------------------------------------------------------------------- errors


class SfError(Exception):
    """A refusal in Salesforce's words: HTTP status, errorCode, message and (for DML) the fields at fault."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def rest_body(self) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            body["fields"] = self.fields
        return [body]

    def save_error(self) -> dict[str, Any]:
        """The error inside a SaveResult (collections, composite) uses statusCode, not errorCode."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}


def _field_label(name: str) -> str:
    """``OwnerId`` -> ``Owner ID``, ``LastName`` -> ``Last Name``, as Salesforce labels standard fields."""
    base = name[:-3] if name.endswith("__c") else name
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base).replace("_", " ").split()
    return " ".join("ID" if w == "Id" else w for w in words)


def _java_double(value: float) -> str:
    """A double as Java prints it (the org's messages do): ``12.5``, ``1.0E20``, ``1.23456789E8``."""
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(value)
    for digits in range(17):
        text = f"{value:.{digits}E}"
        if float(text) == value:
            break
    mantissa, _, exponent = text.partition("E")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}E{int(exponent)}"


# The org limits /limits/ lists (REST API Developer Guide, "List Organization Limits"), with an Enterprise
# Edition org's allocations.
_ORG_LIMITS: tuple[tuple[str, int], ...] = (
    ("ActiveScratchOrgs", 3),
    ("AnalyticsExternalDataSizeMB", 40960),
    ("ConcurrentAsyncGetReportInstances", 200),
    ("ConcurrentEinsteinDataInsightsStoryCreation", 5),
    ("ConcurrentEinsteinDiscoveryStoryCreation", 2),
    ("ConcurrentSyncReportRuns", 20),
    ("DailyAnalyticsDataflowJobExecutions", 60),
    ("DailyAnalyticsUploadedFilesSizeMB", 51200),
    ("DailyApiRequests", 15000),
    ("DailyAsyncApexExecutions", 250000),
    ("DailyAsyncApexTests", 500),
    ("DailyBulkApiBatches", 15000),
    ("DailyBulkV2QueryFileStorageMB", 976562),
    ("DailyBulkV2QueryJobs", 10000),
    ("DailyDeliveredPlatformEvents", 50000),
    ("DailyDurableGenericStreamingApiEvents", 10000),
    ("DailyDurableStreamingApiEvents", 1000000),
    ("DailyEinsteinDataInsightsStoryCreation", 1000),
    ("DailyEinsteinDiscoveryPredictAPICalls", 50000),
    ("DailyEinsteinDiscoveryPredictionsByCDC", 5000000),
    ("DailyEinsteinDiscoveryStoryCreation", 100),
    ("DailyFunctionsApiCallLimit", 235000),
    ("DailyGenericStreamingApiEvents", 10000),
    ("DailyScratchOrgs", 6),
    ("DailyStandardVolumePlatformEvents", 10000),
    ("DailyStreamingApiEvents", 1000000),
    ("DailyWorkflowEmails", 100000),
    ("DataStorageMB", 10240),
    ("DurableStreamingApiConcurrentClients", 1000),
    ("FileStorageMB", 10240),
    ("HourlyAsyncReportRuns", 1200),
    ("HourlyDashboardRefreshes", 200),
    ("HourlyDashboardResults", 5000),
    ("HourlyDashboardStatuses", 999999999),
    ("HourlyLongTermIdMapping", 100000),
    ("HourlyManagedContentPublicRequests", 50000),
    ("HourlyODataCallout", 10000),
    ("HourlyPublishedPlatformEvents", 250000),
    ("HourlyPublishedStandardVolumePlatformEvents", 100000),
    ("HourlyShortTermIdMapping", 100000),
    ("HourlySyncReportRuns", 500),
    ("HourlyTimeBasedWorkflow", 1000),
    ("MassEmail", 5000),
    ("MonthlyEinsteinDiscoveryStoryCreation", 500),
    ("MonthlyPlatformEventsUsageEntitlement", 300000),
    ("Package2VersionCreates", 6),
    ("Package2VersionCreatesWithoutValidation", 500),
    ("PermissionSetsAssigned", 1500),
    ("PrivateConnectOutboundCalloutHourlyLimitMB", 0),
    ("PublishCallbackUsageInApex", 5000),
    ("SingleEmail", 5000),
    ("StreamingApiConcurrentClients", 1000),
)


def _version_number(version: str) -> float:
    try:
        return float(version)
    except ValueError:
        return 0.0


def _not_found() -> SfError:
    return SfError(404, "NOT_FOUND", "The requested resource does not exist")


F = TypeVar("F", bound=Callable[..., Response])


def _rest(handler: F) -> F:
    """Turn SfError/SoqlError raised by a handler into Salesforce's error response."""

    @functools.wraps(handler)
    def wrapper(self: SalesforceApp, request: Request, **values: Any) -> Response:
        try:
            return handler(self, request, **values)
        except SfError as exc:
            return self.sf_error(exc)
        except SoqlError as exc:
            return self.sf_error(SfError(400, exc.code, exc.message))
        finally:
            self._persist_sequences()

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- state


@dataclass
class _Cursor:
    """A query's result, evaluated once: later pages only serialize rows from it."""

    compiled: CompiledQuery
    rows: list[Record]
    batch: int
    all_rows: bool
    locator: str = ""
    last_used: float = 0.0


@dataclass
class _Job:
    """A Bulk API 2.0 job: its public info and what it holds."""

    info: dict[str, Any]
    user: str = "integration"
    polls: int = 0
    compiled: CompiledQuery | None = None
    rows: list[Record] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    successful: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)


@dataclass
class _CsvOut:
    buffer: io.StringIO
    writer: Any


def _csv_writer(info: dict[str, Any]) -> _CsvOut:
    buffer = io.StringIO()
    writer = csv.writer(
        buffer,
        delimiter=_DELIMITERS[info["columnDelimiter"]],
        lineterminator=_LINE_ENDINGS[info["lineEnding"]],
        quoting=csv.QUOTE_ALL,
    )
    return _CsvOut(buffer, writer)


_DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
_LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}


class SalesforceApp(SandboxApp):
    """The Salesforce sandbox server (a WSGI app; serve it with ``ServerThread``)."""

    system = "salesforce"

    def __init__(
        self,
        store: Store,
        *,
        schema: OrgSchema | None = None,
        rate_limits: bool = True,
        faults: Faults | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        daily_limit: int = 15000,
        api_version: str = "59.0",
        session_seconds: float = DEFAULT_SESSION_SECONDS,
    ) -> None:
        self.api_version = api_version
        self.daily_limit = daily_limit
        super().__init__(
            store, schema=schema, rate_limits=rate_limits, faults=faults, seed=seed, clock=clock, sleep=sleep
        )
        self.objects: dict[str, ObjectSpec] = self.schema.salesforce
        self._by_lower = {name.lower(): spec for name, spec in self.objects.items()}
        self._by_prefix = {spec.key_prefix: name for name, spec in self.objects.items() if spec.key_prefix}
        self._usage_lock = threading.Lock()
        self._usage: dict[int, int] = {int(k): int(v) for k, v in store.meta("sf_api_usage", {}).items()}
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._jobs: dict[str, _Job] = {}
        self._seq: dict[str, int] = dict(store.meta("sf_seq", {}))
        self._seq_dirty = False
        self._last_stamp_ms: int | None = None
        self._undo: list[dict[tuple[str, str], Record | None]] = []
        self._ext_index: dict[tuple[str, str], dict[str, set[str]]] = {}
        self._ext_counts: dict[str, int] = {}
        self._users_cache: tuple[int, dict[str, str]] = (-1, {})
        with store.lock:
            self.integration_user_id = self._ensure_integration_user()
            self._persist_sequences()
            store.flush()
        self.add_token("integration")
        self.oauth = SalesforceOAuth(
            store, integration_user_id=self.integration_user_id, session_seconds=session_seconds, clock=clock
        )
        store.flush()

    @property
    def base_path(self) -> str:
        return f"/services/data/v{self.api_version}"

    # ----------------------------------------------------------------------------------- routes

    def routes(self) -> list[Rule]:
        v = "/services/data/v<version>"
        spec: list[tuple[str, str, str]] = [
            ("/services/data/", "GET", "versions"),
            (f"{v}/", "GET", "resources"),
            (f"{v}/query/", "GET", "query"),
            (f"{v}/queryAll/", "GET", "query_all"),
            (f"{v}/query/<locator>", "GET", "query_more"),
            (f"{v}/queryAll/<locator>", "GET", "query_more"),
            (f"{v}/limits/", "GET", "limits"),
            (f"{v}/sobjects/", "GET", "describe_global"),
            (f"{v}/sobjects/<sobject>/", "GET", "sobject_info"),
            (f"{v}/sobjects/<sobject>/", "POST", "create"),
            (f"{v}/sobjects/<sobject>/describe/", "GET", "describe"),
            (f"{v}/sobjects/<sobject>/deleted/", "GET", "get_deleted"),
            (f"{v}/sobjects/<sobject>/updated/", "GET", "get_updated"),
            (f"{v}/sobjects/<sobject>/<record_id>", "GET", "retrieve"),
            (f"{v}/sobjects/<sobject>/<record_id>", "PATCH", "update"),
            (f"{v}/sobjects/<sobject>/<record_id>", "DELETE", "delete"),
            (f"{v}/sobjects/<sobject>/<ext_field>/<path:ext_value>", "GET", "retrieve_by_external_id"),
            (f"{v}/sobjects/<sobject>/<ext_field>/<path:ext_value>", "PATCH", "upsert"),
            (f"{v}/sobjects/<sobject>/<ext_field>/<path:ext_value>", "DELETE", "delete_by_external_id"),
            (f"{v}/composite/", "POST", "composite"),
            (f"{v}/composite/sobjects/", "POST", "collection_create"),
            (f"{v}/composite/sobjects/", "PATCH", "collection_update"),
            (f"{v}/composite/sobjects/", "DELETE", "collection_delete"),
            (f"{v}/composite/sobjects/<sobject>", "GET", "collection_retrieve"),
            (f"{v}/composite/sobjects/<sobject>", "POST", "collection_retrieve"),
            (f"{v}/composite/sobjects/<sobject>/<ext_field>", "PATCH", "collection_upsert"),
            (f"{v}/jobs/query", "POST", "bulk_query_create"),
            (f"{v}/jobs/query", "GET", "bulk_query_list"),
            (f"{v}/jobs/query/<job_id>", "GET", "bulk_query_info"),
            (f"{v}/jobs/query/<job_id>", "PATCH", "bulk_query_state"),
            (f"{v}/jobs/query/<job_id>", "DELETE", "bulk_query_delete"),
            (f"{v}/jobs/query/<job_id>/results", "GET", "bulk_query_results"),
            (f"{v}/jobs/ingest", "POST", "bulk_ingest_create"),
            (f"{v}/jobs/ingest", "GET", "bulk_ingest_list"),
            (f"{v}/jobs/ingest/<job_id>", "GET", "bulk_ingest_info"),
            (f"{v}/jobs/ingest/<job_id>", "PATCH", "bulk_ingest_state"),
            (f"{v}/jobs/ingest/<job_id>", "DELETE", "bulk_ingest_delete"),
            (f"{v}/jobs/ingest/<job_id>/batches", "PUT", "bulk_ingest_upload"),
            (f"{v}/jobs/ingest/<job_id>/<results_type>", "GET", "bulk_ingest_results"),
        ]
        return [Rule(path, methods=[method], endpoint=kind) for path, method, kind in spec]

    # ----------------------------------------------------------------------------------- base hooks

    def handle(self, request: Request) -> Response:
        # The token endpoint is the one route that takes no bearer token: the login host answers it.
        if request.path.rstrip("/") != TOKEN_PATH:
            return super().handle(request)
        response = self.inject_fault() or self.oauth.token(request, request.host_url.rstrip("/"))
        self.counters.hit(request.method, "oauth2 token", response.status_code)
        return response

    def user_for_token(self, token: str) -> str | None:
        return super().user_for_token(token) or self.oauth.user_for_token(token)

    def auth_failed(self, request: Request) -> Response:
        response = self.error(401, "Session expired or invalid", "INVALID_SESSION_ID")
        response.headers["WWW-Authenticate"] = "Token"
        return response

    def error(self, status: int, message: str, code: str = "") -> Response:
        if status == 405:
            code = "METHOD_NOT_ALLOWED"
        return self.sf_error(SfError(status, code or "UNKNOWN_EXCEPTION", message))

    def sf_error(self, exc: SfError) -> Response:
        response = json_response(exc.rest_body(), status=exc.status)
        response.headers["Sforce-Limit-Info"] = self._limit_info()
        return response

    def fault_response(self, name: str) -> Response:
        # Salesforce has no 429; a server under load answers 503.
        return super().fault_response("status_503" if name == "status_429" else name)

    def check_limits(self, user: str, token: str, kind: str, request: Request) -> Response | None:
        if self.usage() >= self.daily_limit:
            return self.sf_error(SfError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
        return None

    def decorate(self, response: Response, user: str, token: str, kind: str) -> None:
        if response.status_code != 403:
            self._count_call()
        response.headers["Sforce-Limit-Info"] = self._limit_info()

    def limits_state(self) -> dict[str, Any]:
        return {"rate_limits": self.rate_limits, "daily_limit": self.daily_limit, "usage": self.usage()}

    def set_limits(self, values: dict[str, Any]) -> None:
        unknown = set(values) - {"rate_limits", "daily_limit", "usage"}
        if unknown:
            raise ValueError(f"unknown limit setting(s): {', '.join(sorted(unknown))}")
        super().set_limits(values)
        if "daily_limit" in values:
            self.daily_limit = int(values["daily_limit"])
        if "usage" in values:
            with self._usage_lock:
                self._usage = {self._minute(): int(values["usage"])}
            self._save_usage()

    def control(self, request: Request) -> Response:
        path = request.path[len(CONTROL_PREFIX) :].strip("/")
        if path == "convert-lead" and request.method == "POST":
            body = request.get_json(silent=True) or {}
            with self.store.lock:
                try:
                    result = self.convert_lead(
                        str(body.get("lead_id", "")),
                        account_id=body.get("account_id"),
                        user=str(body.get("user", "integration")),
                    )
                except SfError as exc:
                    return json_response({"error": exc.message, "errorCode": exc.code}, status=exc.status)
                finally:
                    self._persist_sequences()
                    self.store.flush()
            return json_response(result)
        if path == "merge" and request.method == "POST":
            return self._control_merge(request)
        return super().control(request)

    def _control_merge(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        merge_ids = body.get("merge_ids")
        if isinstance(merge_ids, str):
            merge_ids = [merge_ids]
        with self.store.lock:
            try:
                result = self.merge(
                    str(body.get("sobject", "")),
                    str(body.get("master_id", "")),
                    [str(i) for i in merge_ids] if isinstance(merge_ids, list) else [],
                    fields=body.get("fields") if isinstance(body.get("fields"), dict) else None,
                    user=str(body.get("user", "integration")),
                )
            except SfError as exc:
                return json_response({"error": exc.message, "errorCode": exc.code}, status=exc.status)
            finally:
                self._persist_sequences()
                self.store.flush()
        return json_response(result)

    # ----------------------------------------------------------------------------------- API usage

    def _minute(self) -> int:
        return int(self.clock() // 60)

    def usage(self) -> int:
        """API calls in the rolling 24 hours, for the whole org."""
        now = self._minute()
        with self._usage_lock:
            return sum(n for minute, n in self._usage.items() if minute > now - USAGE_WINDOW_MINUTES)

    def _count_call(self) -> None:
        now = self._minute()
        with self._usage_lock:
            self._usage[now] = self._usage.get(now, 0) + 1
            for minute in [m for m in self._usage if m <= now - USAGE_WINDOW_MINUTES]:
                del self._usage[minute]
        self._save_usage()

    def _save_usage(self) -> None:
        with self._usage_lock:
            snapshot = {str(k): v for k, v in self._usage.items()}
        with self.store.lock:
            self.store.set_meta("sf_api_usage", snapshot)

    def _limit_info(self) -> str:
        return f"api-usage={self.usage()}/{self.daily_limit}"

    # ----------------------------------------------------------------------------------- records

    def _spec(self, sobject: str) -> ObjectSpec:
        spec = self._by_lower.get(sobject.lower())
        if spec is None:
            raise SfError(
                404,
                "NOT_FOUND",
                f"The requested resource does not exist: sObject type '{sobject}' is not supported.",
            )
        return spec

    def lookup(self, record_id: str) -> tuple[str, Record] | None:
        """Any record by id (deleted ones too), with its sObject type."""
        obj = self._by_prefix.get(record_id[:3])
        if obj is None:
            return None
        record = self.store.get(obj, record_id)
        return None if record is None else (obj, record)

    def _url(self, sobject: str, record_id: str, version: str | None = None) -> str:
        return f"/services/data/v{version or self.api_version}/sobjects/{sobject}/{record_id}"

    def _present(
        self,
        spec: ObjectSpec,
        record: Record,
        fields: list[FieldSpec] | None = None,
        version: str | None = None,
    ) -> Record:
        out: Record = {"attributes": {"type": spec.name, "url": self._url(spec.name, record["Id"], version)}}
        for f in fields or spec.fields:
            out[f.name] = record.get(f.name)
        return out

    def _fields_param(self, spec: ObjectSpec, raw: str | Iterable[str] | None) -> list[FieldSpec] | None:
        if raw is None:
            return None
        names = [n.strip() for n in (raw.split(",") if isinstance(raw, str) else raw) if n.strip()]
        out = []
        for name in names:
            f = spec.field(name)
            if f is None:
                raise SfError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name}' on entity '{spec.name}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after the custom "
                    "field name. Please reference your WSDL or the describe call for the appropriate "
                    "names.",
                )
            out.append(f)
        return out or None

    def _record_for(self, spec: ObjectSpec, record_id: str) -> Record:
        """The live record with this id; 400 MALFORMED_ID, 404 NOT_FOUND or ENTITY_IS_DELETED otherwise."""
        canonical = canonical_sf_id(record_id)
        if canonical is None or canonical[:3] != spec.key_prefix:
            raise SfError(
                400, "MALFORMED_ID", f"{spec.name} ID: id value of incorrect type: {record_id}", ["Id"]
            )
        record = self.store.get(spec.name, canonical)
        if record is None:
            raise _not_found()
        if record.get("IsDeleted"):
            raise SfError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return record

    # -- system fields

    def _stamp(self) -> str:
        """Now, in Salesforce's format, strictly after every stamp given before (bumped by 1 ms if needed)."""
        if self._last_stamp_ms is None:
            latest = ""
            for name in self.objects:
                for record in self.store.table(name).values():
                    stamp = record.get("SystemModstamp") or ""
                    if stamp > latest:
                        latest = stamp
            self._last_stamp_ms = int(parse_sf_datetime(latest).timestamp() * 1000) if latest else 0
        now_ms = int(self.clock() * 1000)
        self._last_stamp_ms = max(now_ms, self._last_stamp_ms + 1)
        return format_sf_datetime(datetime.fromtimestamp(self._last_stamp_ms / 1000, tz=UTC))

    def _new_id(self, spec: ObjectSpec) -> str:
        table = self.store.table(spec.name)
        n = self._seq.get(spec.key_prefix, 1)
        while (candidate := sf_id(spec.key_prefix, n)) in table:
            n += 1
        self._seq[spec.key_prefix] = n + 1
        self._seq_dirty = True
        return candidate

    def _persist_sequences(self) -> None:
        if self._seq_dirty:
            with self.store.lock:
                self.store.set_meta("sf_seq", dict(self._seq))
                self._seq_dirty = False

    def user_id_for(self, user_key: str) -> str:
        """The User behind a token's user key: "integration", or a rep's email (unknown keys: integration)."""
        if user_key == "integration":
            return self.integration_user_id
        users = self.store.table("User")
        count, by_email = self._users_cache
        if count != len(users) or user_key.lower() not in by_email:
            by_email = {}
            for record in users.values():
                for key in ("Email", "Username"):
                    if record.get(key):
                        by_email.setdefault(str(record[key]).lower(), record["Id"])
            self._users_cache = (len(users), by_email)
        return by_email.get(user_key.lower(), self.integration_user_id)

    def _ensure_integration_user(self) -> str:
        for existing in self.store.table("User").values():
            if str(existing.get("Username") or "").lower() == INTEGRATION_USERNAME:
                return str(existing["Id"])
        spec = self.objects["User"]
        user_id = self._new_id(spec)
        stamp = self._stamp()
        record: Record = {f.name: None for f in spec.fields}
        record.update(
            {
                "Id": user_id,
                "IsDeleted": False,
                "CreatedDate": stamp,
                "CreatedById": user_id,
                "LastModifiedDate": stamp,
                "LastModifiedById": user_id,
                "SystemModstamp": stamp,
                "Username": INTEGRATION_USERNAME,
                "Email": INTEGRATION_USERNAME,
                "FirstName": "Integration",
                "LastName": "User",
                "Name": "Integration User",
                "IsActive": True,
                "Title": "API integration",
                "UserType": "Standard",
            }
        )
        self._put("User", record)
        return user_id

    # -- transactions (allOrNone): an undo log of records as they were before the first change

    def _begin(self) -> int:
        self._undo.append({})
        return len(self._undo)

    def _commit(self, depth: int) -> None:
        log = self._undo.pop()
        assert len(self._undo) == depth - 1
        if self._undo:
            for key, before in log.items():
                self._undo[-1].setdefault(key, before)

    def _rollback(self, depth: int) -> None:
        log = self._undo.pop()
        assert len(self._undo) == depth - 1
        for (obj, record_id), before in log.items():
            if before is None:
                self.store.remove(obj, record_id)
            else:
                self.store.put(obj, before)
            if self._undo:
                self._undo[-1].setdefault((obj, record_id), before)
        self._ext_index.clear()
        self._ext_counts.clear()

    def _put(self, obj: str, record: Record) -> None:
        table = self.store.table(obj)
        record_id = record["Id"]
        before = table.get(record_id)
        for log in self._undo:
            log.setdefault((obj, record_id), before)
        in_sync = self._ext_counts.get(obj) == len(table)
        self.store.put(obj, record)
        for (index_obj, fname), index in self._ext_index.items():
            if index_obj != obj:
                continue
            if before is not None and before.get(fname):
                index.get(str(before[fname]).lower(), set()).discard(record_id)
            if record.get(fname) and not record.get("IsDeleted"):
                index.setdefault(str(record[fname]).lower(), set()).add(record_id)
        if in_sync:
            self._ext_counts[obj] = len(table)

    # -- external ids

    def _ext_matches(self, spec: ObjectSpec, fname: str, value: str) -> list[str]:
        """Ids of live records whose external id field equals value (case-insensitively)."""
        table = self.store.table(spec.name)
        key = (spec.name, fname)
        if key not in self._ext_index or self._ext_counts.get(spec.name) != len(table):
            for f in spec.fields:
                if f.external_id:
                    self._ext_index[(spec.name, f.name)] = {}
            for record in table.values():
                if record.get("IsDeleted"):
                    continue
                for (obj, name), index in self._ext_index.items():
                    if obj == spec.name and record.get(name):
                        index.setdefault(str(record[name]).lower(), set()).add(record["Id"])
            self._ext_counts[spec.name] = len(table)
        wanted = value.lower()
        return sorted(
            rid
            for rid in self._ext_index[key].get(wanted, set())
            if (r := table.get(rid)) is not None
            and not r.get("IsDeleted")
            and str(r.get(fname) or "").lower() == wanted
        )

    # -- validation and coercion

    def _coerce(self, spec: ObjectSpec, f: FieldSpec, value: Any) -> Any:
        def bad() -> SfError:
            kind = type(value).__name__
            return SfError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of {f.type} from {kind} value "
                f"{value} or request may be missing a required field",
                [],
            )

        if value is None:
            return False if f.type == "boolean" else None
        t = f.type
        if t in _TEXT_TYPES or t in ("id", "reference"):
            if isinstance(value, (dict, list)):
                raise bad()
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if text == "":
                return None
            if t == "email" and not _EMAIL_RE.match(text):
                raise SfError(
                    400,
                    "INVALID_EMAIL_ADDRESS",
                    f"{_field_label(f.name)}: invalid email address: {text}",
                    [f.name],
                )
            if t == "picklist" and f.picklist:
                match = next((p for p in f.picklist if p.lower() == text.lower()), None)
                if match is None:
                    raise SfError(
                        400,
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{_field_label(f.name)}: bad value for restricted picklist field: {text}",
                        [f.name],
                    )
                return match
            return text
        if t == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise bad()
        if t in ("int", "double", "currency"):
            if isinstance(value, bool):
                raise bad()
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise bad() from None
            if t == "int":
                if number != int(number):
                    raise bad()
                return int(number)
            return number
        if t == "date":
            if isinstance(value, str):
                try:
                    return date.fromisoformat(value[:10]).isoformat()
                except ValueError:
                    pass
            raise bad()
        if t == "datetime":
            if isinstance(value, str):
                try:
                    return format_sf_datetime(parse_sf_datetime(value))
                except ValueError:
                    pass
            raise bad()
        return value

    def _check_fields(self, spec: ObjectSpec, values: dict[str, Any]) -> dict[str, Any]:
        """Known, writable fields with coerced values; INVALID_FIELD / INVALID_FIELD_FOR_INSERT_UPDATE."""
        out: dict[str, Any] = {}
        readonly: list[str] = []
        for name, value in values.items():
            f = spec.field(name)
            if f is None:
                raise SfError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {spec.name}", []
                )
            if f.readonly:
                readonly.append(f.name)
                continue
            out[f.name] = value
        if readonly:
            raise SfError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: "
                f"{', '.join(readonly)}. Please check the security settings of this field and verify "
                "that it is read/write for your profile or permission set.",
                readonly,
            )
        return {
            name: self._within_limits(
                spec.field(name),  # type: ignore[arg-type]
                self._coerce(spec, spec.field(name), value),  # type: ignore[arg-type]
            )
            for name, value in out.items()
        }

    @staticmethod
    def _within_limits(f: FieldSpec, value: Any) -> Any:
        """A coerced value within the field's describe limits, or the DML error a real org answers.

        Messages as the API writes them (SOAP API Developer Guide, "Core Data Types", StatusCode
        STRING_TOO_LONG and NUMBER_OUTSIDE_VALID_RANGE; the text is the org's, e.g.
        ``Last Name: data value too large: ... (max length=80)``). A double or currency keeps ``scale``
        decimals, rounded half up as the org stores it ("Field Types": double, currency).
        """
        if value is None:
            return value
        label = _field_label(f.name)
        limit = f.length or (255 if f.type in _TEXT_TYPES else 0)
        if isinstance(value, str) and limit and len(value) > limit:
            raise SfError(
                400,
                "STRING_TOO_LONG",
                f"{label}: data value too large: {value[:80]}{'...' if len(value) > 80 else ''} "
                f"(max length={limit})",
                [f.name],
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            whole_digits = f.digits if f.type == "int" else f.precision - f.scale
            if (f.digits or f.precision) and abs(value) >= 10**whole_digits:
                shown = _java_double(float(value))
                raise SfError(
                    400,
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"{label}: value outside of valid range on numeric field: {shown}",
                    [f.name],
                )
            if f.type != "int" and f.precision:
                exact = Decimal(repr(float(value)))
                return float(exact.quantize(Decimal(1).scaleb(-f.scale), rounding=ROUND_HALF_UP))
        return value

    def _check_reference(self, spec: ObjectSpec, f: FieldSpec, value: str, changed: bool) -> str:
        canonical = canonical_sf_id(value)
        label = _field_label(f.name)
        if canonical is None:
            raise SfError(400, "MALFORMED_ID", f"{label}: id value of incorrect type: {value}", [f.name])
        target = self._by_prefix.get(canonical[:3])
        if target not in f.references:
            raise SfError(
                400, "FIELD_INTEGRITY_EXCEPTION", f"{label}: id value of incorrect type: {value}", [f.name]
            )
        record = self.store.get(target, canonical)
        if record is None or record.get("IsDeleted"):
            raise SfError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
        if f.name == "OwnerId" and changed:
            if target == "User" and not record.get("IsActive"):
                raise SfError(
                    400,
                    "INACTIVE_OWNER_OR_USER",
                    f"operation performed with inactive user [{canonical}] as owner of {spec.name.lower()}",
                    [],
                )
            if target == "Group" and record.get("Type") != "Queue":
                raise SfError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"{label}: id value of incorrect type: {value}",
                    [f.name],
                )
        return canonical

    def save(self, sobject: str, values: dict[str, Any], *, user: str, record_id: str | None = None) -> str:
        """Create (record_id None) or update one record as the API does; returns its id, raises SfError."""
        spec = self._spec(sobject)
        values = {k: v for k, v in values.items() if k != "attributes"}
        record_id, values = account_teams.before_save(self, spec, values, record_id)
        existing: Record | None = None
        if record_id is not None:
            existing = self._record_for(spec, record_id)
            if spec.name == "Lead" and existing.get("IsConverted"):
                raise SfError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
            for key in [k for k in values if k.lower() == "id"]:
                if canonical_sf_id(values[key]) != existing["Id"]:
                    raise SfError(
                        400,
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        "Unable to create/update fields: Id. "
                        "Please check the security settings of this field and verify that it is "
                        "read/write for your profile or permission set.",
                        ["Id"],
                    )
                del values[key]
        fields = self._check_fields(spec, values)
        user_id = self.user_id_for(user)
        if existing is None:
            defaults: dict[str, Any] = {}
            if spec.field("OwnerId") is not None:
                defaults["OwnerId"] = user_id
            if spec.name == "Lead":
                defaults["Status"] = "Open - Not Contacted"
            if spec.name == "User":
                defaults["IsActive"] = True
            fields = {**defaults, **{k: v for k, v in fields.items() if not (k in defaults and v is None)}}
        merged = {**(existing or {}), **fields}
        missing = [
            f.name
            for f in spec.fields
            if f.required
            and not f.readonly
            and merged.get(f.name) in (None, "")
            and (existing is None or f.name in fields)
        ]
        if missing:
            raise SfError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        for name, value in list(fields.items()):
            f = spec.field(name)
            assert f is not None
            if f.type == "reference" and value is not None:
                changed = existing is None or existing.get(name) != canonical_sf_id(value)
                fields[name] = self._check_reference(spec, f, value, changed)
        for name, value in fields.items():
            f = spec.field(name)
            if f is not None and f.external_id and value is not None:
                others = [
                    i
                    for i in self._ext_matches(spec, f.name, str(value))
                    if existing is None or i != existing["Id"]
                ]
                if others:
                    raise SfError(
                        400,
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {f.name} duplicates value on record with id: {others[0]}",
                        [],
                    )
        stamp = self._stamp()
        if existing is None:
            record: Record = {f.name: (False if f.type == "boolean" else None) for f in spec.fields}
            record.update(fields)
            record.update(
                {"Id": self._new_id(spec), "IsDeleted": False, "CreatedDate": stamp, "CreatedById": user_id}
            )
            if spec.name == "User":
                record["UserType"] = "Standard"
        else:
            record = dict(existing)
            record.update(fields)
        record.update({"LastModifiedDate": stamp, "LastModifiedById": user_id, "SystemModstamp": stamp})
        self._derive(spec, record)
        account_teams.derive(self, spec, record)
        self._put(spec.name, record)
        account_teams.after_save(self, spec, existing, record, user)
        return str(record["Id"])

    @staticmethod
    def _derive(spec: ObjectSpec, record: Record) -> None:
        """Fields Salesforce computes: Name of people, IsClosed/IsWon from the opportunity stage."""
        if spec.name in _NAMED_OBJECTS:
            record["Name"] = (
                " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p) or None
            )
        if spec.name == "Opportunity":
            stage = record.get("StageName")
            record["IsClosed"] = stage in ("Closed Won", "Closed Lost")
            record["IsWon"] = stage == "Closed Won"

    def remove(self, sobject: str, record_id: str, *, user: str, hard: bool = False) -> str:
        """Delete one record: soft (IsDeleted, still visible to queryAll) or, for Bulk hardDelete, for good."""
        spec = self._spec(sobject)
        record = self._record_for(spec, record_id)
        if hard or account_teams.hard_delete(spec):
            for log in self._undo:
                log.setdefault((spec.name, record["Id"]), record)
            self.store.remove(spec.name, record["Id"])
            self._ext_index.clear()
            self._ext_counts.clear()
            return str(record["Id"])
        self._put(
            spec.name,
            {
                **record,
                "IsDeleted": True,
                "SystemModstamp": self._stamp(),
                "LastModifiedById": self.user_id_for(user),
            },
        )
        return str(record["Id"])

    def upsert(
        self, sobject: str, ext_field: str, ext_value: str, values: dict[str, Any], *, user: str
    ) -> tuple[str, bool]:
        """Create or update by external id; returns (id, created). 300 on several matches."""
        spec = self._spec(sobject)
        f = spec.field(ext_field)
        if f is None:
            raise SfError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {ext_field}",
            )
        values = {k: v for k, v in values.items() if k != "attributes"}
        if f.name == "Id":
            if not ext_value:
                return self.save(spec.name, values, user=user), True
            return self.save(spec.name, values, user=user, record_id=ext_value), False
        if not f.external_id:
            raise SfError(400, "INVALID_FIELD", f"Field {f.name} is not an external id field", [f.name])
        body_value = next((v for k, v in values.items() if k.lower() == f.name.lower()), None)
        if body_value is not None and str(body_value).lower() != ext_value.lower():
            raise SfError(
                400,
                "INVALID_FIELD",
                f"The value of the external ID field ({body_value}) does not "
                f"match the value in the URL ({ext_value})",
                [f.name],
            )
        values = {k: v for k, v in values.items() if k.lower() != f.name.lower()}
        matches = self._ext_matches(spec, f.name, ext_value)
        if len(matches) > 1:
            raise _MultipleMatches([self._url(spec.name, m) for m in matches])
        if matches:
            return self.save(spec.name, values, user=user, record_id=matches[0]), False
        return self.save(spec.name, {**values, f.name: ext_value}, user=user), True

    # ----------------------------------------------------------------------------------- lead conversion

    def convert_lead(
        self, lead_id: str, *, account_id: str | None = None, user: str = "integration"
    ) -> Record:
        """Convert a Lead as Salesforce's convertLead does: an Account (new, or the given one), a Contact from
        the Lead's fields, then the Lead marked converted. Syncd's custom fields carry over to the Contact, as
        an admin maps them in "Map Lead Fields". Call with the store lock held."""
        lead = self._record_for(self.objects["Lead"], lead_id)
        if lead.get("IsConverted"):
            raise SfError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        user_id = self.user_id_for(user)
        owner = lead.get("OwnerId")
        if not owner or not str(owner).startswith(self.objects["User"].key_prefix):
            owner = user_id
        depth = self._begin()
        try:
            if account_id:
                account_id = self._record_for(self.objects["Account"], account_id)["Id"]
            else:
                account_id = self.save(
                    "Account",
                    {
                        "Name": lead.get("Company"),
                        "Website": lead.get("Website"),
                        "Industry": lead.get("Industry"),
                        "NumberOfEmployees": lead.get("NumberOfEmployees"),
                        "AnnualRevenue": lead.get("AnnualRevenue"),
                        "BillingCountry": lead.get("Country"),
                        "BillingState": lead.get("State"),
                        "BillingCity": lead.get("City"),
                        "OwnerId": owner,
                    },
                    user=user,
                )
            contact_id = self.save(
                "Contact",
                {
                    "AccountId": account_id,
                    "FirstName": lead.get("FirstName"),
                    "LastName": lead.get("LastName"),
                    "Email": lead.get("Email"),
                    "Title": lead.get("Title"),
                    "Phone": lead.get("Phone"),
                    "MailingCountry": lead.get("Country"),
                    "MailingState": lead.get("State"),
                    "MailingCity": lead.get("City"),
                    "LeadSource": lead.get("LeadSource"),
                    "OwnerId": owner,
                    "Syncd_HubSpot_Id__c": lead.get("Syncd_HubSpot_Id__c"),
                    "Syncd_Score__c": lead.get("Syncd_Score__c"),
                    "Syncd_Stage__c": lead.get("Syncd_Stage__c"),
                },
                user=user,
            )
            stamp = self._stamp()
            self._put(
                "Lead",
                {
                    **lead,
                    "IsConverted": True,
                    "ConvertedDate": stamp[:10],
                    "ConvertedContactId": contact_id,
                    "ConvertedAccountId": account_id,
                    "Status": CONVERTED_STATUS,
                    "LastModifiedDate": stamp,
                    "LastModifiedById": user_id,
                    "SystemModstamp": stamp,
                },
            )
        except SfError:
            self._rollback(depth)
            raise
        self._commit(depth)
        return {"lead_id": lead["Id"], "account_id": account_id, "contact_id": contact_id}

    # ----------------------------------------------------------------------------------- merges

    def merge(
        self,
        sobject: str,
        master_id: str,
        merge_ids: list[str],
        *,
        fields: dict[str, Any] | None = None,
        user: str = "integration",
    ) -> Record:
        """Merge up to two records into a master, as a person does in the UI (or Apex ``Database.merge``, SOAP
        ``merge()``; the REST API has no merge resource). Call with the store lock held.

        SOAP API Developer Guide, merge(): only Lead, Contact and Account; "Up to three records can be merged
        in a single request, including the master record"; the merged records are deleted and "you can use
        queryAll() to view records that have been deleted during a merge" with their MasterRecordId set to
        the master; "If a victim record has related records, merge() makes the master record the new parent
        of the related records"; field values chosen from the victims are written to the master like an
        update (``fields``). Each merge is one transaction. The master's SystemModstamp moves, as every
        reparented child's does (reparenting updates the child's lookup).
        """
        if sobject not in _MERGEABLE:
            raise SfError(
                400, "INVALID_TYPE", f"merge is only supported for {', '.join(_MERGEABLE)}, not {sobject!r}"
            )
        spec = self.objects[sobject]
        if not 1 <= len(merge_ids) <= 2:
            raise SfError(
                400, "INVALID_ARGUMENT", "A merge request takes the master and one or two records to merge"
            )
        master = self._record_for(spec, master_id)
        victims = [self._record_for(spec, i) for i in merge_ids]
        if any(v["Id"] == master["Id"] for v in victims) or len({v["Id"] for v in victims}) != len(victims):
            raise SfError(400, "INVALID_ARGUMENT", "The master record can't be merged into itself")
        if sobject == "Lead" and any(r.get("IsConverted") for r in (master, *victims)):
            raise SfError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        user_id = self.user_id_for(user)
        victim_ids = {v["Id"] for v in victims}
        depth = self._begin()
        try:
            self.save(sobject, dict(fields or {}), user=user, record_id=master["Id"])
            for victim in victims:
                self._put(
                    sobject,
                    {
                        **victim,
                        "IsDeleted": True,
                        "MasterRecordId": master["Id"],
                        "LastModifiedDate": (stamp := self._stamp()),
                        "LastModifiedById": user_id,
                        "SystemModstamp": stamp,
                    },
                )
            reparented = self._reparent(sobject, victim_ids, master["Id"], user_id)
        except SfError:
            self._rollback(depth)
            raise
        self._commit(depth)
        return {"id": master["Id"], "mergedRecordIds": sorted(victim_ids), "updatedRelatedIds": reparented}

    def _reparent(self, sobject: str, old_ids: set[str], new_id: str, user_id: str) -> list[str]:
        """Point every writable lookup to ``sobject`` that holds one of ``old_ids`` at ``new_id``."""
        moved: list[str] = []
        for other in self.objects.values():
            lookups = [
                f.name
                for f in other.fields
                if f.type == "reference" and not f.readonly and sobject in f.references
            ]
            if not lookups:
                continue
            for record in list(self.store.table(other.name).values()):
                if record.get("IsDeleted"):
                    continue
                changed = {name: new_id for name in lookups if record.get(name) in old_ids}
                if changed:
                    stamp = self._stamp()
                    self._put(
                        other.name,
                        {
                            **record,
                            **changed,
                            "LastModifiedDate": stamp,
                            "LastModifiedById": user_id,
                            "SystemModstamp": stamp,
                        },
                    )
                    moved.append(str(record["Id"]))
        return moved

    # ----------------------------------------------------------------------------------- request helpers

    @staticmethod
    def _json(request: Request) -> Any:
        raw = request.get_data(as_text=True)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise SfError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None

    def _json_object(self, request: Request) -> dict[str, Any]:
        body = self._json(request)
        if not isinstance(body, dict):
            raise SfError(
                400,
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of SObject from a non-object JSON value",
            )
        return body

    @staticmethod
    def _batch_size(request: Request) -> int:
        m = _BATCH_SIZE_RE.search(request.headers.get("Sforce-Query-Options", ""))
        if not m:
            return DEFAULT_BATCH_SIZE
        return max(MIN_BATCH_SIZE, min(DEFAULT_BATCH_SIZE, int(m.group(1))))

    def _compile(self, soql: str, version: str) -> CompiledQuery:
        return compile_soql(soql, self.objects, self.lookup, f"/services/data/v{version}")

    # ----------------------------------------------------------------------------------- discovery

    def before_auth(self, request: Request, kind: str, values: Mapping[str, Any]) -> Response | None:
        if kind == "versions":
            return self.on_versions(request, user="")
        if "version" in values:
            refusal = self._version_refusal(str(values["version"]))
            if refusal is not None:
                return self.sf_error(refusal)
        return None

    def _version_refusal(self, version: str) -> SfError | None:
        """Unknown API versions are refused as the org refuses them: a version the org does not serve yet
        (or no version at all) is 404 NOT_FOUND like any unknown resource; a retired one (below 31.0) is
        410 GONE ("API End-of-Life": "If you request any resource or use an operation from a retired API
        version, REST API returns the error code 410:GONE"; knowledge article 000354473)."""
        number = _version_number(version) if re.fullmatch(r"\d+\.\d", version) else 0.0
        if 0 < number < FIRST_API_VERSION:
            return SfError(410, "GONE", f"API version {version} is retired and no longer available")
        if number < FIRST_API_VERSION or number > _version_number(self.api_version):
            return SfError(404, "NOT_FOUND", "The requested resource does not exist")
        return None

    def on_versions(self, request: Request, *, user: str) -> Response:
        """Every version the org serves, oldest first, with its release label; public, no token needed
        (REST API Developer Guide, "Versions": "Lists summary information about each REST API version
        currently available"; v20.0 was Winter '11, three releases a year)."""
        out = []
        for number in range(int(FIRST_API_VERSION), int(_version_number(self.api_version)) + 1):
            steps = number - 20
            season = ("Winter", "Spring", "Summer")[steps % 3]
            year = 11 + steps // 3
            version = f"{number}.0"
            out.append(
                {"label": f"{season} '{year:02d}", "url": f"/services/data/v{version}", "version": version}
            )
        return json_response(out)

    def on_resources(self, request: Request, *, user: str, version: str) -> Response:
        base = f"/services/data/v{version}"
        return json_response(
            {
                name: f"{base}/{name}"
                for name in ("sobjects", "query", "queryAll", "composite", "limits", "jobs")
            }
        )

    @_rest
    def on_limits(self, request: Request, *, user: str, version: str) -> Response:
        """Every documented org limit as ``{Max, Remaining}`` (REST API Developer Guide, "Limits" / "List
        Organization Limits", response body with the keys below; Max values are an Enterprise Edition org's
        defaults from "Salesforce Developer Limits and Allocations Quick Reference"). DailyApiRequests,
        DailyBulkV2QueryJobs, DataStorageMB (2 KB a record, "Data and File Storage Allocations") follow the
        sandbox's state; the rest are full."""
        used = self.usage() + 1  # this call counts too
        query_jobs = sum(1 for j in self._jobs.values() if j.compiled is not None)
        ingest_jobs = sum(1 for j in self._jobs.values() if j.compiled is None)
        records = sum(self.store.count(name) for name in self.objects)
        data_mb = max(1, -(-records * 2 // 1024)) if records else 0
        out: dict[str, Any] = {name: {"Max": limit, "Remaining": limit} for name, limit in _ORG_LIMITS}
        out["DailyApiRequests"] = {"Max": self.daily_limit, "Remaining": max(0, self.daily_limit - used)}
        out["DailyBulkV2QueryJobs"] = {"Max": 10000, "Remaining": max(0, 10000 - query_jobs)}
        out["DailyBulkApiBatches"] = {"Max": 15000, "Remaining": max(0, 15000 - ingest_jobs)}
        out["DataStorageMB"] = {"Max": 10240, "Remaining": max(0, 10240 - data_mb)}
        return json_response(dict(sorted(out.items())))

    def _describe_field(self, spec: ObjectSpec, f: FieldSpec) -> dict[str, Any]:
        writable = not f.readonly
        return {
            "name": f.name,
            "label": _field_label(f.name),
            "type": f.type,
            "custom": f.name.endswith("__c"),
            "nillable": not f.required and f.type != "boolean",
            "createable": writable,
            "updateable": writable and not f.createonly,
            "externalId": f.external_id,
            "unique": f.external_id,
            "idLookup": f.name == "Id" or f.external_id,
            "referenceTo": list(f.references),
            "relationshipName": relationship_name(f),
            "polymorphicForeignKey": len(f.references) > 1,
            "namePointing": len(f.references) > 1,
            **self._describe_limits(f),
            "defaultedOnCreate": f.name
            in (
                "Id",
                "OwnerId",
                "IsDeleted",
                "CreatedDate",
                "CreatedById",
                "LastModifiedDate",
                "LastModifiedById",
                "SystemModstamp",
            ),
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "value": v, "validFor": None}
                for v in f.picklist
            ],
            "restrictedPicklist": bool(f.picklist),
            "filterable": True,
            "sortable": True,
        }

    @staticmethod
    def _describe_limits(f: FieldSpec) -> dict[str, Any]:
        """A field's size in describe (REST API Developer Guide, "sObject Describe"; SOAP API Developer Guide,
        "describeSObjectResult", Field: ``length`` and ``byteLength`` for text, ``digits`` for int,
        ``precision``/``scale`` for double and currency; 0 where a property does not apply)."""
        if f.type in ("id", "reference"):
            length = 18
        elif f.type in _TEXT_TYPES:
            length = f.length or 255
        else:
            length = 0
        return {
            "length": length,
            "byteLength": length * 3,
            "digits": f.digits if f.type == "int" else 0,
            "precision": f.precision if f.type in ("double", "currency", "percent") else 0,
            "scale": f.scale if f.type in ("double", "currency", "percent") else 0,
        }

    def _object_summary(self, spec: ObjectSpec, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{spec.name}"
        return {
            "name": spec.name,
            "label": spec.name,
            "labelPlural": spec.name + "s",
            "keyPrefix": spec.key_prefix,
            "custom": False,
            "queryable": True,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "retrieveable": True,
            "searchable": True,
            "layoutable": True,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        }

    @_rest
    def on_describe_global(self, request: Request, *, user: str, version: str) -> Response:
        return json_response(
            {
                "encoding": "UTF-8",
                "maxBatchSize": MAX_COLLECTION_RECORDS,
                "sobjects": [self._object_summary(s, version) for s in self.objects.values()],
            }
        )

    @_rest
    def on_sobject_info(self, request: Request, *, user: str, version: str, sobject: str) -> Response:
        spec = self._spec(sobject)
        return json_response({"objectDescribe": self._object_summary(spec, version), "recentItems": []})

    @_rest
    def on_describe(self, request: Request, *, user: str, version: str, sobject: str) -> Response:
        spec = self._spec(sobject)
        children = [
            {"childSObject": other.name, "field": f.name, "relationshipName": None, "cascadeDelete": False}
            for other in self.objects.values()
            for f in other.fields
            if spec.name in f.references
        ]
        return json_response(
            {
                **self._object_summary(spec, version),
                "fields": [self._describe_field(spec, f) for f in spec.fields],
                "childRelationships": children,
            }
        )

    # ----------------------------------------------------------------------------------- query

    @_rest
    def on_query(self, request: Request, *, user: str, version: str) -> Response:
        return self._run_query(request, version, all_rows=False)

    @_rest
    def on_query_all(self, request: Request, *, user: str, version: str) -> Response:
        return self._run_query(request, version, all_rows=True)

    def _run_query(self, request: Request, version: str, *, all_rows: bool) -> Response:
        soql = request.args.get("q")
        if not soql:
            raise SfError(400, "MALFORMED_QUERY", "A query string has to be specified")
        compiled = self._compile(soql, version)
        table = self.store.table(compiled.sobject).values()
        source = table if all_rows else (r for r in table if not r.get("IsDeleted"))
        rows = compiled.run(source)
        if compiled.count_only:
            return json_response({"totalSize": len(rows), "done": True, "records": []})
        if compiled.aggregate is not None and compiled.aggregate_getter is not None:
            getter = compiled.aggregate_getter
            total = sum(1 for r in rows if getter(r) is not None)
            name = compiled.aggregate.alias or "expr0"
            return json_response(
                {
                    "totalSize": 1,
                    "done": True,
                    "records": [{"attributes": {"type": "AggregateResult"}, name: total}],
                }
            )
        cursor = _Cursor(compiled, rows, self._batch_size(request), all_rows)
        return self._page(cursor, 0, version)

    def _page(self, cursor: _Cursor, offset: int, version: str) -> Response:
        page = cursor.rows[offset : offset + cursor.batch]
        end = offset + len(page)
        body: dict[str, Any] = {
            "totalSize": len(cursor.rows),
            "done": end >= len(cursor.rows),
            "records": [cursor.compiled.project(r) for r in page],
        }
        if not body["done"]:
            locator = self._remember(cursor)
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        return json_response(body)

    def _remember(self, cursor: _Cursor) -> str:
        """Keep an unfinished query for its next pages; like Salesforce, locators expire when idle."""
        now = self.clock()
        cursor.last_used = now
        for stale in [k for k, c in self._cursors.items() if now - c.last_used > QUERY_LOCATOR_IDLE_SECONDS]:
            del self._cursors[stale]
        if cursor.locator:
            self._cursors.move_to_end(cursor.locator)
            return cursor.locator
        n = self._seq.get(QUERY_LOCATOR_PREFIX, 1)
        self._seq[QUERY_LOCATOR_PREFIX] = n + 1
        self._seq_dirty = True
        cursor.locator = sf_id(QUERY_LOCATOR_PREFIX, n)[:15]
        self._cursors[cursor.locator] = cursor
        while len(self._cursors) > MAX_OPEN_CURSORS:
            self._cursors.popitem(last=False)
        return cursor.locator

    @_rest
    def on_query_more(self, request: Request, *, user: str, version: str, locator: str) -> Response:
        cursor_id, _, offset_text = locator.rpartition("-")
        cursor = self._cursors.get(cursor_id)
        if cursor is not None and self.clock() - cursor.last_used > QUERY_LOCATOR_IDLE_SECONDS:
            del self._cursors[cursor_id]
            cursor = None
        if cursor is None or not offset_text.isdigit() or int(offset_text) > len(cursor.rows):
            raise SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        cursor.last_used = self.clock()
        return self._page(cursor, int(offset_text), version)

    # ----------------------------------------------------------------------------------- sObject rows

    @_rest
    def on_retrieve(
        self, request: Request, *, user: str, version: str, sobject: str, record_id: str
    ) -> Response:
        spec = self._spec(sobject)
        record = self._record_for(spec, record_id)
        return json_response(
            self._present(spec, record, self._fields_param(spec, request.args.get("fields")), version)
        )

    @_rest
    def on_create(self, request: Request, *, user: str, version: str, sobject: str) -> Response:
        spec = self._spec(sobject)
        record_id = self.save(spec.name, self._json_object(request), user=user)
        return json_response(
            {"id": record_id, "success": True, "errors": []},
            status=201,
            headers={"Location": self._url(spec.name, record_id, version)},
        )

    @_rest
    def on_update(
        self, request: Request, *, user: str, version: str, sobject: str, record_id: str
    ) -> Response:
        self.save(sobject, self._json_object(request), user=user, record_id=record_id)
        return Response(status=204)

    @_rest
    def on_delete(
        self, request: Request, *, user: str, version: str, sobject: str, record_id: str
    ) -> Response:
        self.remove(sobject, record_id, user=user)
        return Response(status=204)

    def _by_external_id(self, spec: ObjectSpec, ext_field: str, ext_value: str) -> Record:
        f = spec.field(ext_field)
        if f is None or not (f.external_id or f.name == "Id"):
            raise SfError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {ext_field}",
            )
        if f.name == "Id":
            return self._record_for(spec, ext_value)
        matches = self._ext_matches(spec, f.name, ext_value)
        if len(matches) > 1:
            raise _MultipleMatches([self._url(spec.name, m) for m in matches])
        if not matches:
            raise _not_found()
        return self.store.table(spec.name)[matches[0]]

    @_rest
    def on_retrieve_by_external_id(
        self, request: Request, *, user: str, version: str, sobject: str, ext_field: str, ext_value: str
    ) -> Response:
        spec = self._spec(sobject)
        try:
            record = self._by_external_id(spec, ext_field, ext_value)
        except _MultipleMatches as exc:
            return json_response(exc.urls, status=300)
        return json_response(
            self._present(spec, record, self._fields_param(spec, request.args.get("fields")), version)
        )

    @_rest
    def on_upsert(
        self, request: Request, *, user: str, version: str, sobject: str, ext_field: str, ext_value: str
    ) -> Response:
        try:
            record_id, created = self.upsert(
                sobject, ext_field, ext_value, self._json_object(request), user=user
            )
        except _MultipleMatches as exc:
            return json_response(exc.urls, status=300)
        return self._upsert_response(sobject, record_id, created, version)

    def _upsert_response(self, sobject: str, record_id: str, created: bool, version: str) -> Response:
        """201 with the new id on create; on update 200 with ``created: false`` from API 46.0, 204 before
        (REST API Developer Guide, "Insert or Update (Upsert) a Record Using an External ID": "The created
        parameter is present in the response in API version 46.0 and later"; status codes: "200 ... some
        PATCH requests", "204 ... some PATCH requests")."""
        versioned = _version_number(version) >= 46.0
        body: dict[str, Any] = {"id": record_id, "success": True, "errors": []}
        if versioned:
            body["created"] = created
        if created:
            return json_response(
                body,
                status=201,
                headers={"Location": self._url(self._spec(sobject).name, record_id, version)},
            )
        return json_response(body) if versioned else Response(status=204)

    @_rest
    def on_delete_by_external_id(
        self, request: Request, *, user: str, version: str, sobject: str, ext_field: str, ext_value: str
    ) -> Response:
        spec = self._spec(sobject)
        try:
            record = self._by_external_id(spec, ext_field, ext_value)
        except _MultipleMatches as exc:
            return json_response(exc.urls, status=300)
        self.remove(spec.name, record["Id"], user=user)
        return Response(status=204)

    def _window(self, request: Request, max_days: int) -> tuple[str, str]:
        """The replication window of Get Updated (``max_days`` 30) or Get Deleted (15), checked as the org does.

        SOAP API Developer Guide, getUpdated() and getDeleted(), "Rules and Guidelines": startDate must precede
        endDate by more than one minute, else INVALID_REPLICATION_DATE; "Results are returned for no more than
        30 days [getDeleted: 15 days] previous to the day the call is executed"; REST API Developer Guide,
        "sObject Get Updated" / "sObject Get Deleted" point there for the rules. A start before that day is
        refused with INVALID_REPLICATION_DATE (the code the data replication docs name for a date "out of the
        allowed range"); the message text is the sandbox's.
        """
        try:
            start_at = parse_sf_datetime(request.args["start"])
            end_at = parse_sf_datetime(request.args["end"])
        except (KeyError, ValueError):
            raise SfError(400, "INVALID_REPLICATION_DATE", "start and end must be valid datetimes") from None
        # "The API ignores the seconds portion of the specified dateTime value (for example, 12:30:15 is
        # interpreted as 12:30:00 UTC)", of start and of end (REST API Developer Guide, "sObject Get Updated",
        # Parameters); Get Deleted likewise (its latestDateCovered comes in whole minutes, as in the
        # restforce-db client's documented example, and salesforcer's sf_get_deleted notes the same). The
        # one-minute rule is checked on what is left.
        start_at = start_at.replace(second=0, microsecond=0)
        end_at = end_at.replace(second=0, microsecond=0)
        if (end_at - start_at).total_seconds() <= 60:
            raise SfError(
                400,
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        today = datetime.fromtimestamp(self.clock(), tz=UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        earliest = today - timedelta(days=max_days)
        if start_at < earliest:
            raise SfError(
                400,
                "INVALID_REPLICATION_DATE",
                f"startDate cannot be more than {max_days} days before the current date: "
                f"{format_sf_datetime(start_at)} is before {format_sf_datetime(earliest)}",
            )
        return format_sf_datetime(start_at), format_sf_datetime(end_at)

    @_rest
    def on_get_deleted(self, request: Request, *, user: str, version: str, sobject: str) -> Response:
        spec = self._spec(sobject)
        start, end = self._window(request, GET_DELETED_DAYS)
        rows = [
            r
            for r in self.store.table(spec.name).values()
            if r.get("IsDeleted") and start <= (r.get("SystemModstamp") or "") <= end
        ]
        today = datetime.fromtimestamp(self.clock(), tz=UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        return json_response(
            {
                "deletedRecords": [{"id": r["Id"], "deletedDate": r["SystemModstamp"]} for r in rows],
                "earliestDateAvailable": format_sf_datetime(today - timedelta(days=GET_DELETED_DAYS)),
                "latestDateCovered": end,
            }
        )

    @_rest
    def on_get_updated(self, request: Request, *, user: str, version: str, sobject: str) -> Response:
        spec = self._spec(sobject)
        start, end = self._window(request, GET_UPDATED_DAYS)
        ids = [
            r["Id"]
            for r in self.store.table(spec.name).values()
            if not r.get("IsDeleted") and start <= (r.get("SystemModstamp") or "") <= end
        ]
        return json_response({"ids": ids, "latestDateCovered": end})

    # ----------------------------------------------------------------------------------- collections

    def _collection_records(self, request: Request) -> tuple[list[dict[str, Any]], bool]:
        body = self._json_object(request)
        records = body.get("records")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise SfError(400, "JSON_PARSER_ERROR", "records must be a list of sObjects")
        if len(records) > MAX_COLLECTION_RECORDS:
            raise SfError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than "
                f"{MAX_COLLECTION_RECORDS} records into this call",
            )
        return records, bool(body.get("allOrNone", False))

    @staticmethod
    def _record_type(record: dict[str, Any]) -> str:
        attributes = record.get("attributes")
        sobject = attributes.get("type") if isinstance(attributes, dict) else None
        if not sobject:
            raise SfError(400, "INVALID_TYPE", "Must send a concrete entity type.", [])
        return str(sobject)

    def _run_each(
        self,
        items: list[Any],
        one: Callable[[Any], dict[str, Any]],
        all_or_none: bool,
        keep_id_on_rollback: bool,
    ) -> list[dict[str, Any]]:
        """One SaveResult per item, in order; with all_or_none, any failure rolls every change back."""
        depth = self._begin()
        results: list[dict[str, Any]] = []
        for item in items:
            try:
                results.append(one(item))
            except SfError as exc:
                results.append(self._failure(item, exc, keep_id_on_rollback))
            except _MultipleMatches:
                several = SfError(
                    300, "DUPLICATE_EXTERNAL_ID", "more than one record found for external id", []
                )
                results.append(self._failure(item, several, keep_id_on_rollback))
        if all_or_none and not all(r["success"] for r in results):
            self._rollback(depth)
            rolled_back = {
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": "Record rolled back "
                "because not all records were valid and the request was using AllOrNone header",
                "fields": [],
            }
            return [
                r
                if not r["success"]
                else {
                    **({"id": r["id"]} if keep_id_on_rollback else {}),
                    "success": False,
                    "errors": [rolled_back],
                }
                for r in results
            ]
        self._commit(depth)
        return results

    @staticmethod
    def _failure(item: Any, exc: SfError, keep_id: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"success": False, "errors": [exc.save_error()]}
        if keep_id and isinstance(item, dict) and item.get("id"):
            out = {"id": item["id"], **out}
        elif keep_id and isinstance(item, str):
            out = {"id": item, **out}
        return out

    @_rest
    def on_collection_create(self, request: Request, *, user: str, version: str) -> Response:
        records, all_or_none = self._collection_records(request)
        for r in records:
            self._record_type(r)

        def create(record: dict[str, Any]) -> dict[str, Any]:
            if any(k.lower() == "id" for k in record):
                raise SfError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            return {
                "id": self.save(self._record_type(record), record, user=user),
                "success": True,
                "errors": [],
            }

        return json_response(self._run_each(records, create, all_or_none, keep_id_on_rollback=False))

    @_rest
    def on_collection_update(self, request: Request, *, user: str, version: str) -> Response:
        records, all_or_none = self._collection_records(request)
        for r in records:
            self._record_type(r)

        def update(record: dict[str, Any]) -> dict[str, Any]:
            record_id = next((v for k, v in record.items() if k.lower() == "id"), None)
            if not record_id:
                raise SfError(400, "MISSING_ARGUMENT", "Id not specified in an update call", [])
            values = {k: v for k, v in record.items() if k.lower() != "id"}
            saved = self.save(self._record_type(record), values, user=user, record_id=str(record_id))
            return {"id": saved, "success": True, "errors": []}

        return json_response(self._run_each(records, update, all_or_none, keep_id_on_rollback=True))

    @_rest
    def on_collection_upsert(
        self, request: Request, *, user: str, version: str, sobject: str, ext_field: str
    ) -> Response:
        records, all_or_none = self._collection_records(request)
        spec = self._spec(sobject)
        f = spec.field(ext_field)
        if f is None or not (f.external_id or f.name == "Id"):
            raise SfError(400, "INVALID_FIELD", f"Field {ext_field} is not an external id field", [ext_field])
        for r in records:
            if self._record_type(r).lower() != spec.name.lower():
                raise SfError(400, "INVALID_TYPE", "all records must be of the type in the URL", [])

        def upsert(record: dict[str, Any]) -> dict[str, Any]:
            value = next((v for k, v in record.items() if k.lower() == ext_field.lower()), None)
            if value in (None, "") and f.name != "Id":
                raise SfError(400, "MISSING_ARGUMENT", f"{f.name} not specified", [])
            values = {k: v for k, v in record.items() if k.lower() != ext_field.lower()}
            if f.name != "Id":
                values[f.name] = value
            record_id, created = self.upsert(spec.name, f.name, str(value or ""), values, user=user)
            return {"id": record_id, "success": True, "errors": [], "created": created}

        return json_response(self._run_each(records, upsert, all_or_none, keep_id_on_rollback=False))

    @_rest
    def on_collection_delete(self, request: Request, *, user: str, version: str) -> Response:
        ids = [i for i in request.args.get("ids", "").split(",") if i]
        if not ids:
            raise SfError(400, "MISSING_ARGUMENT", "ids must be specified")
        if len(ids) > MAX_COLLECTION_RECORDS:
            raise SfError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than "
                f"{MAX_COLLECTION_RECORDS} records into this call",
            )
        all_or_none = request.args.get("allOrNone", "false").lower() == "true"

        def delete(record_id: str) -> dict[str, Any]:
            canonical = canonical_sf_id(record_id)
            sobject = self._by_prefix.get(canonical[:3]) if canonical else None
            if sobject is None:
                raise SfError(400, "MALFORMED_ID", f"malformed id {record_id}", [])
            return {"id": self.remove(sobject, record_id, user=user), "success": True, "errors": []}

        return json_response(self._run_each(ids, delete, all_or_none, keep_id_on_rollback=True))

    @_rest
    def on_collection_retrieve(self, request: Request, *, user: str, version: str, sobject: str) -> Response:
        spec = self._spec(sobject)
        if request.method == "POST":
            body = self._json_object(request)
            ids, names = body.get("ids") or [], body.get("fields") or []
        else:
            ids = [i for i in request.args.get("ids", "").split(",") if i]
            names = [n for n in request.args.get("fields", "").split(",") if n]
        if not ids or not names:
            raise SfError(400, "MISSING_ARGUMENT", "ids and fields must be specified")
        if len(ids) > 2000:
            raise SfError(400, "EXCEEDED_ID_LIMIT", "cannot retrieve more than 2000 records")
        fields = self._fields_param(spec, names)
        out: list[Record | None] = []
        for record_id in ids:
            canonical = canonical_sf_id(record_id)
            record = self.store.get(spec.name, canonical) if canonical else None
            out.append(
                None
                if record is None or record.get("IsDeleted")
                else self._present(spec, record, fields, version)
            )
        return json_response(out)

    # ----------------------------------------------------------------------------------- composite

    @_rest
    def on_composite(self, request: Request, *, user: str, version: str) -> Response:
        body = self._json_object(request)
        subs = body.get("compositeRequest")
        if not isinstance(subs, list) or not subs or not all(isinstance(s, dict) for s in subs):
            raise SfError(
                400, "JSON_PARSER_ERROR", "compositeRequest must be a non-empty list of subrequests"
            )
        over = self._composite_over_limits(subs)
        if over is not None:
            return over
        refs = [s.get("referenceId") for s in subs]
        if any(not isinstance(r, str) or not r for r in refs) or len(set(refs)) != len(refs):
            raise SfError(400, "INVALID_INPUT", "every subrequest needs a unique referenceId")
        all_or_none = bool(body.get("allOrNone", False))
        # collateSubrequests (default true from API 49.0) lets the org run unrelated subrequests in any order
        # ("Composite Request Body"); running them in the order given is one such order.
        if not isinstance(body.get("collateSubrequests", True), bool):
            raise SfError(400, "JSON_PARSER_ERROR", "collateSubrequests must be a boolean")
        depth = self._begin()
        results: list[dict[str, Any]] = []
        bodies: dict[str, Any] = {}
        failed = False
        for sub in subs:
            ref = sub["referenceId"]
            if failed and all_or_none:
                results.append(self._halted(ref))
                continue
            try:
                url = self._substitute(str(sub.get("url", "")), bodies)
                payload = self._substitute(sub.get("body"), bodies)
            except KeyError as exc:
                results.append(
                    self._halted(
                        ref,
                        f"Invalid reference specified. No value for {exc.args[0]} "
                        "found in the previous subrequests.",
                    )
                )
                failed = True
                continue
            status, result_body, headers = self._dispatch(
                str(sub.get("method", "GET")).upper(), url, payload, sub.get("httpHeaders") or {}, user
            )
            results.append(
                {"body": result_body, "httpHeaders": headers, "httpStatusCode": status, "referenceId": ref}
            )
            if status >= 400:
                failed = True
            else:
                bodies[ref] = result_body
        if failed and all_or_none:
            self._rollback(depth)
            results = [r if r["httpStatusCode"] >= 400 else self._halted(r["referenceId"]) for r in results]
        else:
            self._commit(depth)
        return json_response({"compositeResponse": results})

    @staticmethod
    def _composite_over_limits(subs: list[dict[str, Any]]) -> Response | None:
        """The documented limits of one /composite request, refused as the org refuses them.

        REST API Developer Guide, "Composite" / "Composite Request Body": up to 25 subrequests, of which up to
        5 may be query (Query, QueryAll) or sObject Collections operations; Accept, Authorization and
        Content-Type in a subrequest's httpHeaders fail the whole request with 400. The over-limit answer is
        200 with one error in ``compositeResponse`` and a null referenceId, as an org answered 26 operations
        (guardian/support-service-lambdas#766: ``LIMIT_EXCEEDED``, "The request can't contain more than 25
        operations."); the 5-query message follows that shape.
        """
        for sub in subs:
            headers = sub.get("httpHeaders") or {}
            if not isinstance(headers, dict):
                raise SfError(400, "JSON_PARSER_ERROR", "httpHeaders must be an object")
            inherited = [h for h in headers if str(h).lower() in ("accept", "authorization", "content-type")]
            if inherited:
                raise SfError(400, "INVALID_INPUT", f"A subrequest can't set the {inherited[0]} header", [])

        def refused(message: str) -> Response:
            return json_response(
                {
                    "compositeResponse": [
                        {
                            "body": [{"errorCode": "LIMIT_EXCEEDED", "message": message}],
                            "httpHeaders": {},
                            "httpStatusCode": 400,
                            "referenceId": None,
                        }
                    ]
                }
            )

        if len(subs) > MAX_COMPOSITE_SUBREQUESTS:
            return refused(f"The request can’t contain more than {MAX_COMPOSITE_SUBREQUESTS} operations.")
        heavy = sum(1 for sub in subs if _COMPOSITE_QUERY_URL.match(str(sub.get("url") or "")))
        if heavy > MAX_COMPOSITE_QUERIES:
            return refused(
                f"The request can’t contain more than {MAX_COMPOSITE_QUERIES} query or sObject "
                "Collections operations."
            )
        return None

    @staticmethod
    def _halted(
        ref: str,
        message: str = "The transaction was rolled back since another operation in the "
        "same transaction failed.",
    ) -> dict[str, Any]:
        return {
            "body": [{"errorCode": "PROCESSING_HALTED", "message": message}],
            "httpHeaders": {},
            "httpStatusCode": 400,
            "referenceId": ref,
        }

    def _substitute(self, value: Any, bodies: dict[str, Any]) -> Any:
        """Replace ``@{ref.path}`` with values from earlier subrequests' bodies; KeyError names a bad one."""
        if isinstance(value, dict):
            return {k: self._substitute(v, bodies) for k, v in value.items()}
        if isinstance(value, list):
            return [self._substitute(v, bodies) for v in value]
        if not isinstance(value, str) or "@{" not in value:
            return value

        def resolve(m: re.Match[str]) -> str:
            ref, path = m.group(1), m.group(2)
            if ref not in bodies:
                raise KeyError(f"{ref}.{path}")
            cur: Any = bodies[ref]
            for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
                try:
                    cur = cur[int(part[1:-1])] if part.startswith("[") else cur[part]
                except (KeyError, IndexError, TypeError):
                    raise KeyError(f"{ref}.{path}") from None
            return str(cur)

        return _REFERENCE_RE.sub(resolve, value)

    def _dispatch(
        self, method: str, url: str, payload: Any, headers: dict[str, str], user: str
    ) -> tuple[int, Any, dict[str, str]]:
        path, _, query = url.partition("?")
        adapter = self.url_map.bind("localhost")
        try:
            kind, values = adapter.match(path, method=method)
        except HTTPException:
            return (
                404,
                [{"errorCode": "NOT_FOUND", "message": f"The requested resource does not exist: {path}"}],
                {},
            )
        refusal = self._version_refusal(str(values.get("version", "")))
        if refusal is not None:
            return refusal.status, refusal.rest_body(), {}
        if kind in ("composite", "versions") or str(kind).startswith("bulk_"):
            return (
                400,
                [
                    {
                        "errorCode": "INVALID_API_INPUT",
                        "message": f"{path} is not supported in a composite request",
                    }
                ],
                {},
            )
        builder = EnvironBuilder(
            path=path,
            method=method,
            query_string=query,
            headers=list(headers.items()),
            data=None if payload is None else json.dumps(payload),
            content_type="application/json",
        )
        sub_request = Request(builder.get_environ())
        response: Response = getattr(self, f"on_{kind}")(sub_request, user=user, **values)
        raw = response.get_data(as_text=True)
        body = json.loads(raw) if raw else None
        out_headers = {"Location": response.headers["Location"]} if "Location" in response.headers else {}
        return response.status_code, body, out_headers

    # ----------------------------------------------------------------------------------- Bulk API 2.0

    def _new_job(self, user: str, operation: str, sobject: str, extra: dict[str, Any]) -> _Job:
        n = self._seq.get(JOB_PREFIX, 1)
        self._seq[JOB_PREFIX] = n + 1
        self._seq_dirty = True
        stamp = self._stamp()
        info = {
            "id": sf_id(JOB_PREFIX, n),
            "operation": operation,
            "object": sobject,
            "createdById": self.user_id_for(user),
            "createdDate": stamp,
            "systemModstamp": stamp,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
            **extra,
        }
        job = _Job(info, user=user)
        self._jobs[info["id"]] = job
        return job

    def _job(self, job_id: str, query: bool) -> _Job:
        job = self._jobs.get(job_id)
        if job is None or (job.compiled is not None) != query:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def _poll(self, job: _Job) -> dict[str, Any]:
        """Jobs move on as they are polled (UploadComplete -> InProgress -> JobComplete), like a real queue."""
        state = job.info["state"]
        if state in ("UploadComplete", "InProgress"):
            job.polls += 1
            job.info["state"] = "InProgress" if job.polls == 1 else "JobComplete"
            job.info["systemModstamp"] = self._stamp()
        return job.info

    @staticmethod
    def _csv_options(body: dict[str, Any]) -> dict[str, str]:
        delimiter = str(body.get("columnDelimiter") or "COMMA").upper()
        ending = str(body.get("lineEnding") or "LF").upper()
        if delimiter not in _DELIMITERS or ending not in _LINE_ENDINGS:
            raise SfError(400, "INVALIDJOB", "columnDelimiter or lineEnding is not valid")
        return {"columnDelimiter": delimiter, "lineEnding": ending}

    @_rest
    def on_bulk_query_create(self, request: Request, *, user: str, version: str) -> Response:
        body = self._json_object(request)
        operation = body.get("operation", "query")
        if operation not in ("query", "queryAll"):
            raise SfError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        compiled = self._compile(str(body.get("query") or ""), version)
        if compiled.count_only or compiled.aggregate is not None:
            raise SfError(400, "INVALIDJOB", "Aggregate queries are not supported by Bulk API 2.0")
        table = self.store.table(compiled.sobject).values()
        rows = compiled.run(
            table if operation == "queryAll" else (r for r in table if not r.get("IsDeleted"))
        )
        job = self._new_job(
            user, operation, compiled.sobject, {"state": "UploadComplete", **self._csv_options(body)}
        )
        job.compiled, job.rows = compiled, rows
        return json_response(job.info)

    @_rest
    def on_bulk_query_info(self, request: Request, *, user: str, version: str, job_id: str) -> Response:
        job = self._job(job_id, query=True)
        info = dict(self._poll(job))
        if info["state"] == "JobComplete":
            info["numberRecordsProcessed"] = len(job.rows)
        return json_response(info)

    @_rest
    def on_bulk_query_list(self, request: Request, *, user: str, version: str) -> Response:
        return json_response(
            {
                "done": True,
                "records": [j.info for j in self._jobs.values() if j.compiled],
                "nextRecordsUrl": None,
            }
        )

    @_rest
    def on_bulk_query_state(self, request: Request, *, user: str, version: str, job_id: str) -> Response:
        job = self._job(job_id, query=True)
        self._set_state(job, self._json_object(request))
        return json_response(job.info)

    @_rest
    def on_bulk_query_delete(self, request: Request, *, user: str, version: str, job_id: str) -> Response:
        self._jobs.pop(self._job(job_id, query=True).info["id"])
        return Response(status=204)

    @_rest
    def on_bulk_query_results(self, request: Request, *, user: str, version: str, job_id: str) -> Response:
        job = self._job(job_id, query=True)
        if job.info["state"] != "JobComplete":
            raise SfError(400, "INVALIDJOBSTATE", f"Job is not complete: {job.info['state']}")
        assert job.compiled is not None
        try:
            raw_locator = request.args.get("locator") or ""
            start = (
                int(base64.b64decode(raw_locator + "=" * (-len(raw_locator) % 4)).decode())
                if raw_locator
                else 0
            )
            size = int(request.args.get("maxRecords") or len(job.rows) or 1)
        except ValueError:
            raise SfError(400, "INVALID_LOCATOR", "invalid locator or maxRecords") from None
        if size <= 0:
            raise SfError(400, "INVALIDJOB", "maxRecords must be positive")
        page = job.rows[start : start + size]
        end = start + len(page)
        out = _csv_writer(job.info)
        out.writer.writerow(job.compiled.columns)
        for record in page:
            out.writer.writerow([_csv_value(v) for v in job.compiled.row(record)])
        locator = base64.b64encode(str(end).encode()).decode().rstrip("=") if end < len(job.rows) else "null"
        return Response(
            out.buffer.getvalue(),
            status=200,
            content_type="text/csv",
            headers={"Sforce-NumberOfRecords": str(len(page)), "Sforce-Locator": locator},
        )

    def _set_state(self, job: _Job, body: dict[str, Any]) -> None:
        wanted = body.get("state")
        state = job.info["state"]
        if wanted == "Aborted" and state not in ("JobComplete", "Failed", "Aborted"):
            job.info["state"] = "Aborted"
        elif wanted == "UploadComplete" and state == "Open" and job.compiled is None:
            self._process_ingest(job)
        else:
            raise SfError(400, "INVALIDJOBSTATE", f"Cannot change the job state from {state} to {wanted}")
        job.info["systemModstamp"] = self._stamp()

    @_rest
    def on_bulk_ingest_create(self, request: Request, *, user: str, version: str) -> Response:
        body = self._json_object(request)
        spec = self._spec(str(body.get("object") or ""))
        operation = body.get("operation")
        if operation not in ("insert", "update", "upsert", "delete", "hardDelete"):
            raise SfError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        extra: dict[str, Any] = {"state": "Open", **self._csv_options(body)}
        if operation == "upsert":
            ext = spec.field(str(body.get("externalIdFieldName") or ""))
            if ext is None or not (ext.external_id or ext.name == "Id"):
                raise SfError(
                    400, "INVALIDJOB", "InvalidJob : externalIdFieldName must name an external id field"
                )
            extra["externalIdFieldName"] = ext.name
        job = self._new_job(user, str(operation), spec.name, extra)
        job.info.update({"numberRecordsProcessed": 0, "numberRecordsFailed": 0})
        return json_response(job.info)

    @_rest
    def on_bulk_ingest_upload(self, request: Request, *, user: str, version: str, job_id: str) -> Response:
        job = self._job(job_id, query=False)
        if job.info["state"] != "Open":
            raise SfError(409, "INVALIDJOBSTATE", f"Job is not open for uploads: {job.info['state']}")
        job.data.append(request.get_data(as_text=True))
        return Response(status=201)

    @_rest
    def on_bulk_ingest_state(self, request: Request, *, user: str, version: str, job_id: str) -> Response:
        job = self._job(job_id, query=False)
        self._set_state(job, self._json_object(request))
        return json_response(job.info)

    @_rest
    def on_bulk_ingest_info(self, request: Request, *, user: str, version: str, job_id: str) -> Response:
        job = self._job(job_id, query=False)
        return json_response(self._poll(job))

    @_rest
    def on_bulk_ingest_list(self, request: Request, *, user: str, version: str) -> Response:
        return json_response(
            {
                "done": True,
                "nextRecordsUrl": None,
                "records": [j.info for j in self._jobs.values() if j.compiled is None],
            }
        )

    @_rest
    def on_bulk_ingest_delete(self, request: Request, *, user: str, version: str, job_id: str) -> Response:
        self._jobs.pop(self._job(job_id, query=False).info["id"])
        return Response(status=204)

    @_rest
    def on_bulk_ingest_results(
        self, request: Request, *, user: str, version: str, job_id: str, results_type: str
    ) -> Response:
        job = self._job(job_id, query=False)
        kind = results_type.lower()
        if kind not in ("successfulresults", "failedresults", "unprocessedrecords"):
            raise _not_found()
        out = _csv_writer(job.info)
        if kind == "successfulresults":
            out.writer.writerow(["sf__Id", "sf__Created", *job.header])
            out.writer.writerows(job.successful)
        elif kind == "failedresults":
            out.writer.writerow(["sf__Id", "sf__Error", *job.header])
            out.writer.writerows(job.failed)
        else:
            out.writer.writerow(job.header)
            out.writer.writerows(job.unprocessed)
        return Response(out.buffer.getvalue(), status=200, content_type="text/csv")

    def _process_ingest(self, job: _Job) -> None:
        """Apply every uploaded row, each on its own (a bad row fails alone), and keep per-row results."""
        delimiter = _DELIMITERS[job.info["columnDelimiter"]]
        rows: list[list[str]] = []
        for chunk in job.data:
            reader = csv.reader(io.StringIO(chunk, newline=""), delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                continue
            if job.header and header != job.header:
                job.info["state"] = "Failed"
                job.info["errorMessage"] = "InvalidBatch : every upload must have the same columns"
                return
            job.header = header
            rows.extend(r for r in reader if r)
        operation = job.info["operation"]
        sobject = job.info["object"]
        user = job.user
        for row in rows:
            values = dict(zip(job.header, row, strict=False))
            record_id = next((v for k, v in values.items() if k.lower() == "id"), "") or ""
            try:
                created = False
                if operation in ("delete", "hardDelete"):
                    record_id = self.remove(sobject, record_id, user=user, hard=operation == "hardDelete")
                else:
                    fields = {k: (None if v == "#N/A" else v) for k, v in values.items() if v != ""}
                    if operation == "insert":
                        record_id, created = self.save(sobject, fields, user=user), True
                    elif operation == "update":
                        fields = {k: v for k, v in fields.items() if k.lower() != "id"}
                        record_id = self.save(sobject, fields, user=user, record_id=record_id)
                    else:
                        ext = job.info["externalIdFieldName"]
                        ext_value = next((v for k, v in values.items() if k.lower() == ext.lower()), "")
                        fields = {k: v for k, v in fields.items() if k.lower() != ext.lower()}
                        if ext != "Id":
                            fields[ext] = ext_value
                        record_id, created = self.upsert(sobject, ext, ext_value, fields, user=user)
                job.successful.append([record_id, "true" if created else "false", *row])
            except SfError as exc:
                job.failed.append(
                    [
                        record_id if canonical_sf_id(record_id) else "",
                        f"{exc.code}:{exc.message}:{','.join(exc.fields or [])} --",
                        *row,
                    ]
                )
            except _MultipleMatches:
                job.failed.append(
                    ["", "DUPLICATE_EXTERNAL_ID:more than one record found for external id: --", *row]
                )
        job.info.update(
            {
                "state": "UploadComplete",
                "numberRecordsProcessed": len(rows),
                "numberRecordsFailed": len(job.failed),
            }
        )


def stored_record(spec: ObjectSpec, record_id: str, stamp: str, user_id: str, **values: Any) -> Record:
    """A record in the store's format, every field present, system and derived fields set, for loading a
    store directly (tests, benchmarks) without going through the API."""
    record: Record = {f.name: (False if f.type == "boolean" else None) for f in spec.fields}
    record.update(values)
    record.update(
        {
            "Id": record_id,
            "IsDeleted": bool(values.get("IsDeleted", False)),
            "CreatedDate": values.get("CreatedDate", stamp),
            "CreatedById": values.get("CreatedById", user_id),
            "LastModifiedDate": stamp,
            "LastModifiedById": user_id,
            "SystemModstamp": stamp,
        }
    )
    SalesforceApp._derive(spec, record)
    return record


class _MultipleMatches(Exception):
    """An external id value found on several records (the API answers 300 with their URLs)."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(f"{len(urls)} records match")
        self.urls = urls


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
