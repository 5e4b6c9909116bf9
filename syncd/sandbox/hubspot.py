"""The local HubSpot server: what hubspot-api-client 12.0.0 calls, answered the way HubSpot answers.

Endpoints (object types ``contacts``, ``companies``, ``deals``; also ``0-1``/``0-2``/``0-3``):

    GET    /crm/v3/objects/{type}                 list: limit (capped at 100), after, properties, archived,
                                                  propertiesWithHistory, associations (also on get)
    POST   /crm/v3/objects/{type}                 create -> 201
    GET    /crm/v3/objects/{type}/{id}            get (idProperty=email for contacts), archived
    PATCH  /crm/v3/objects/{type}/{id}            update -> 200
    DELETE /crm/v3/objects/{type}/{id}            archive -> 204
    POST   /crm/v3/objects/{type}/search          filterGroups, sorts, properties, query, limit <= 200, after
    POST   /crm/v3/objects/{type}/batch/{op}      read 200 | create 201 | update 200 | upsert 200 | archive 204;
                                                  read: 207 with numErrors and errors[] for missing ids;
                                                  writes: refused whole (400/409/404) when an input is bad
    POST   /crm/v3/objects/{contacts|companies}/merge   {primaryObjectId, objectIdToMerge} -> 200
    GET    /crm/v3/schemas                        custom object schemas: none (also /crm-object-schemas/v3/)
    GET    /crm/v3/owners/                        email, after, limit, archived
    GET    /crm/v3/owners/{ownerId}               idProperty=id|userId, archived
    GET    /crm/v3/properties/{type}[/{name}]     from the sandbox schema; custom ones hubspotDefined=false
    GET    /crm/v4/objects/{type}/{id}/associations/{toType}
    PUT    /crm/v4/objects/{type}/{id}/associations/default/{toType}/{toId}   -> 200
    PUT    /crm/v4/objects/{type}/{id}/associations/{toType}/{toId}           -> 201 (body: association types)
    DELETE /crm/v4/objects/{type}/{id}/associations/{toType}/{toId}           -> 204
    POST   /crm/v4/associations/{from}/{to}/batch/{read|create|associate/default|archive}

Semantics worth knowing when writing a connector against it:

- Every write request gets one timestamp, strictly later than the previous write request's (1 ms later when
  the clock has not moved), so ``lastmodifieddate > watermark`` never misses a change; the records of one batch
  share it, as the records of a bulk import do. A write that changes no value leaves the record untouched.
- ``hs_updated_by_user_id`` is the calling rep's ``userId``; null for the integration token.
- Property values are validated as HubSpot does: unknown (PROPERTY_DOESNT_EXIST), read-only (READ_ONLY_VALUE),
  not an allowed option (INVALID_OPTION), unknown or archived owner (INVALID_OWNER_ID), bad email, number or
  date (a date property at midnight UTC only), text over 65,536 characters, and a backward
  ``lifecyclestage`` move (allowed only after clearing the value to ""). A write answers 400; a batch write
  with one bad input is refused whole and writes nothing.
- A duplicate contact email (case-insensitive, archived contacts excluded) is a 409 CONFLICT
  "Contact already exists. Existing ID: N"; a batch names only its first conflict and writes nothing.
- Search lags writes by ``search_lag_ms`` (0 unless set; ``syncd sandbox serve`` defaults to 3000): until then
  a search sees the record as it was. List, get and batch read see every write at once. With an injected
  clock, responses carry its time in ``Date`` (after the WSGI server's own).
- Merges keep the primary's id and list merged ids in ``hs_merged_object_ids``; a merged-away id answers
  with the survivor. Writes keep property versions for ``propertiesWithHistory``.
- Search returns at most 10,000 results per query: the page that would start at 10,000 is a 400, so page
  further by windowing on the last-modified property (and on ``hs_object_id`` within one timestamp).
- Rate limits per token when on: ``ten_second_limit`` requests per rolling 10 s, ``search_per_second``
  searches per second, ``daily_limit`` per UTC day; ``X-HubSpot-RateLimit-*`` headers on every response, and a
  429 with HubSpot's RATE_LIMIT body and ``Retry-After`` (whole seconds until a slot frees). With rate limits
  off nothing is counted and no rate-limit header is sent.

Tokens: the user key "integration" is the app's token (no owner); a rep's email acts as the owner with that
email. ``issue_tokens()`` makes one for the integration and for every owner.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import uuid
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache, wraps
from itertools import islice
from typing import Any, TypeVar

from hubspot import HubSpot
from urllib3.util.retry import Retry
from werkzeug.http import http_date
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from syncd.core.systems import (
    HUBSPOT_LAST_MODIFIED,
    HUBSPOT_OBJECTS,
    SYNCD_HS_COMPANY_CUSTOM,
    SYNCD_HS_CONTACT_CUSTOM,
    SYNCD_HS_CUSTOM,
    FieldSpec,
    ObjectSpec,
    OrgSchema,
)
from syncd.sandbox import account_teams
from syncd.sandbox.base import Faults, SandboxApp, json_response
from syncd.sandbox.store import Record, Store

__all__ = ["DEFAULT_SEARCH_LAG_MS", "NO_RETRY", "HubSpotApp", "client"]

OBJECT_TYPES: dict[str, str] = {
    "contacts": "contacts",
    "contact": "contacts",
    "0-1": "contacts",
    "companies": "companies",
    "company": "companies",
    "0-2": "companies",
    "deals": "deals",
    "deal": "deals",
    "0-3": "deals",
}
OBJECT_TYPE_IDS = {"contacts": "0-1", "companies": "0-2", "deals": "0-3"}
SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal"}

# What HubSpot returns when a request names no properties.
DEFAULT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    "deals": (
        "amount",
        "closedate",
        "createdate",
        "dealname",
        "dealstage",
        "hs_lastmodifieddate",
        "hs_object_id",
        "pipeline",
    ),
}
# Properties the free-text ``query`` of a search looks in.
QUERY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("firstname", "lastname", "email", "phone", "company"),
    "companies": ("name", "domain", "website", "phone"),
    "deals": ("dealname",),
}
NUMERIC_TYPES = frozenset({"int", "double", "currency"})
CLOSED_STAGES = frozenset({"closedwon", "closedlost"})
# Objects the merge endpoint takes (POST /crm/v3/objects/{contacts|companies}/merge).
MERGEABLE = frozenset({"contacts", "companies"})
# A text property holds at most 65,536 characters (HubSpot knowledge base, "Property field types in
# HubSpot": single-line and multi-line text).
STRING_MAX = 65_536
DAY_MS = 86_400_000
# Versions kept per property for propertiesWithHistory (the sandbox's bound; HubSpot keeps a longer history).
HISTORY_KEEP = 20
# Who wrote, as propertiesWithHistory reports it: the private app's writes, and a rep's (in the UI).
APP_SOURCE = ("INTEGRATION", "1234567", "syncd sandbox private app")
DATE_TYPES = frozenset({"date", "datetime"})

# HubSpot-defined association type ids: (from, to) -> (unlabeled, primary).
ASSOCIATION_TYPES: dict[tuple[str, str], tuple[int, int]] = {
    ("contacts", "companies"): (279, 1),
    ("companies", "contacts"): (280, 2),
    ("deals", "companies"): (341, 5),
    ("companies", "deals"): (342, 6),
}
INVERSE_TYPE = {279: 280, 280: 279, 1: 2, 2: 1, 341: 342, 342: 341, 5: 6, 6: 5}
PRIMARY_TYPES = frozenset({1, 2, 5, 6})

# `syncd sandbox serve`'s search index lag: writes reach HubSpot search "several seconds" later (see
# HubSpotApp._lag_index). syncd's HubSpot look-back (60 s by default) must be at least this.
DEFAULT_SEARCH_LAG_MS = 3000
LIST_LIMIT = 100
BATCH_LIMIT = 100
# Associations batch read takes up to 1,000 ids (HubSpot developer changelog, "Bug Fix: Batch Read Limit for
# HubSpot Associations API", effective 2025-02-10, v3 and v4).
ASSOC_READ_LIMIT = 1000
SEARCH_LIMIT = 200
SEARCH_RESULT_CAP = 10_000
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25
OWNERS_LIMIT = 500
ASSOCIATIONS_LIMIT = 500
OPERATORS = (
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
)
RATE_LIMIT_MESSAGES = {
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
    "SECONDLY": "You have reached your secondly limit.",
    "DAILY": "You have reached your daily limit.",
}
AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
    "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
# An address HubSpot accepts: printable local part, dotted host of letters, digits and hyphens (no spaces
# or control characters; "Email address … is invalid", the INVALID_EMAIL error).
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_TOKEN_SPLIT = re.compile(r"[^0-9a-z]+")


# urllib3's default, Retry(3), sleeps out a 429's or 503's Retry-After with the real time.sleep and tries
# GETs again, silently: syncd owns its retry policy (tenacity), so its clients retry nothing at this level.
NO_RETRY = Retry(total=0, respect_retry_after_header=False, raise_on_status=False)


def client(host: str, token: str, ca_file: str | os.PathLike[str], *, retry: Retry = NO_RETRY) -> HubSpot:
    """A hubspot-api-client ``HubSpot`` pointed at ``host`` (e.g. a sandbox's URL) that trusts ``ca_file``.

    In 12.0.0 every sub-client builds its own ``Configuration`` from the keywords given to ``HubSpot`` (each one
    is set as an attribute), so ``ssl_ca_cert`` reaches all of them, and urllib3 uses it whatever
    ``REQUESTS_CA_BUNDLE`` says. Each attribute access like ``client.crm.contacts.basic_api`` builds a new
    connection pool: keep the API objects you use. ``retry`` is urllib3's connection-level policy; the default
    retries nothing, so a 429 surfaces at once as an ``ApiException`` (status 429, ``Retry-After`` in its
    headers) and a refused connection as urllib3's ``MaxRetryError``.
    """
    return HubSpot(access_token=token, host=host, ssl_ca_cert=os.fspath(ca_file), retry=retry)


# ----------------------------------------------------------------------------------------------- values


def iso_ms(ms: int) -> str:
    """HubSpot's timestamp format, e.g. ``2024-01-01T00:00:00.000Z``."""
    whole, frac = divmod(ms, 1000)
    return datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:03d}Z"


@lru_cache(maxsize=1 << 18)
def parse_ms(value: str) -> int | None:
    """Epoch milliseconds of an epoch-ms string, an ISO datetime (``Z`` or offset) or a date; None if neither."""
    text = value.strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


def _number(value: str) -> float | None:
    try:
        result = float(value)
    except ValueError:
        return None
    return None if math.isnan(result) or math.isinf(result) else result


def _tokens(value: str) -> set[str]:
    lowered = value.lower()
    return {t for t in _TOKEN_SPLIT.split(lowered) if t} | {lowered}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


@dataclass
class Problem:
    """One invalid property value of one write, as HubSpot reports it."""

    name: str
    code: str
    message: str

    def legacy(self) -> dict[str, Any]:
        """The item HubSpot embeds, JSON-encoded, in "Property values were not valid: [...]"."""
        return {
            "isValid": False,
            "message": self.message,
            "error": self.code,
            "name": self.name,
            "localizedErrorMessage": self.message,
        }

    def detail(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code, "context": {"propertyName": [self.name]}}


@dataclass
class _Planned:
    """One validated input of a batch write, applied only once every input of the batch passed."""

    item: dict[str, Any]
    rec: Record | None  # the record to update; None: create
    values: dict[str, str]
    links: list[tuple[str, str, int]]
    upsert: bool = False


class Rejected(Exception):
    """Raised inside a handler to answer with ``response`` (a request-level error)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class InputFailed(Exception):
    """Raised while handling one input of a batch (or a single-object write): that input's error."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        context: dict[str, list[str]] | None = None,
        sub_category: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.errors = errors or []
        self.context = context or {}
        self.sub_category = sub_category

    @classmethod
    def invalid(cls, problems: list[Problem]) -> InputFailed:
        listing = json.dumps([p.legacy() for p in problems], separators=(",", ":"))
        return cls(
            400,
            "VALIDATION_ERROR",
            f"Property values were not valid: {listing}",
            errors=[p.detail() for p in problems],
            context={"propertyName": [p.name for p in problems]},
        )


Handler = TypeVar("Handler", bound=Callable[..., Response])


def _guarded(handler: Handler) -> Handler:
    """Turns a Rejected raised anywhere in a handler into its response."""

    @wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return handler(*args, **kwargs)
        except Rejected as exc:
            return exc.response

    return wrapper  # type: ignore[return-value]


@dataclass
class Usage:
    """One token's recent requests, for the rolling windows and the daily allowance."""

    recent: deque[float] = field(default_factory=deque)  # times of requests in the last 10 s
    searches: deque[float] = field(default_factory=deque)  # times of searches in the last second
    day: int = -1  # UTC day number of ``daily``
    daily: int = 0

    def evict(self, now: float) -> None:
        while self.recent and self.recent[0] <= now - 10.0:
            self.recent.popleft()
        while self.searches and self.searches[0] <= now - 1.0:
            self.searches.popleft()
        today = int(now // 86400)
        if today != self.day:
            self.day, self.daily = today, 0


# ------------------------------------------------------------------------------------------------ server


class HubSpotApp(SandboxApp):
    """The HubSpot sandbox: CRM v3 objects, search, batch, owners, properties, associations v4."""

    system = "hubspot"

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
        ten_second_limit: int = 100,
        search_per_second: int = 5,
        daily_limit: int = 250_000,
        search_lag_ms: int = 0,
    ) -> None:
        self.ten_second_limit = ten_second_limit
        if search_lag_ms < 0:
            raise ValueError(f"search_lag_ms must be 0 or more, got {search_lag_ms}")
        self.search_lag_ms = search_lag_ms
        # Writes the search index has not caught up with: type -> id -> (epoch ms when searchable, what
        # search still sees: the record before the first unindexed write, None when it was not there).
        self._unindexed: dict[str, dict[str, tuple[int, Record | None]]] = {}
        self.search_per_second = search_per_second
        self.daily_limit = daily_limit
        self._usage: dict[str, Usage] = {}
        self._limits_lock = threading.Lock()
        # Derived indexes, rebuilt when the store's row count says someone wrote around the server.
        self._sorted_ids: dict[str, tuple[int, list[int]]] = {}
        self._uniques: dict[tuple[str, str], list[Any]] = {}
        self._assoc: list[Any] | None = None
        self._versions: dict[str, int] = {}
        self._search_cache: OrderedDict[tuple[Any, ...], list[str]] = OrderedDict()
        super().__init__(
            store, schema=schema, rate_limits=rate_limits, faults=faults, seed=seed, clock=clock, sleep=sleep
        )

    # ------------------------------------------------------------------------------------ public helpers

    def issue_tokens(self) -> dict[str, str]:
        """Make sure the integration and every owner (archived ones too) have a token; user key -> token."""
        self.add_token("integration")
        for owner in self.store.all("owners"):
            if owner.get("email"):
                self.add_token(str(owner["email"]).lower())
        return self.tokens

    def reindex(self) -> None:
        """Forget derived indexes and cached searches (after writing to the store around the server)."""
        with self.store.lock:
            self._sorted_ids.clear()
            self._uniques.clear()
            self._assoc = None
            self._search_cache.clear()
            for otype in self._versions:
                self._versions[otype] += 1

    # ------------------------------------------------------------------------------------------ routing

    def routes(self) -> list[Rule]:
        obj = "/crm/v3/objects/<objtype>"
        v4 = "/crm/v4/objects/<objtype>/<object_id>/associations"
        b4 = "/crm/v4/associations/<objtype>/<totype>/batch"
        return [
            Rule(obj, methods=["GET"], endpoint="list"),
            Rule(obj, methods=["POST"], endpoint="create"),
            Rule(f"{obj}/search", methods=["POST"], endpoint="search"),
            Rule(f"{obj}/merge", methods=["POST"], endpoint="merge"),
            Rule("/crm/v3/schemas", methods=["GET"], endpoint="schemas"),
            # hubspot-api-client's schemas core_api calls the same list under this prefix.
            Rule("/crm-object-schemas/v3/schemas", methods=["GET"], endpoint="schemas"),
            Rule(f"{obj}/batch/read", methods=["POST"], endpoint="batch_read"),
            Rule(f"{obj}/batch/create", methods=["POST"], endpoint="batch_create"),
            Rule(f"{obj}/batch/update", methods=["POST"], endpoint="batch_update"),
            Rule(f"{obj}/batch/upsert", methods=["POST"], endpoint="batch_upsert"),
            Rule(f"{obj}/batch/archive", methods=["POST"], endpoint="batch_archive"),
            Rule(f"{obj}/<object_id>", methods=["GET"], endpoint="get"),
            Rule(f"{obj}/<object_id>", methods=["PATCH"], endpoint="update"),
            Rule(f"{obj}/<object_id>", methods=["DELETE"], endpoint="archive"),
            Rule("/crm/v3/owners/", methods=["GET"], endpoint="owners"),
            Rule("/crm/v3/owners/<owner_id>", methods=["GET"], endpoint="owner"),
            Rule("/crm/v3/properties/<objtype>", methods=["GET"], endpoint="properties"),
            Rule("/crm/v3/properties/<objtype>/<name>", methods=["GET"], endpoint="property"),
            Rule(f"{v4}/<totype>", methods=["GET"], endpoint="assoc_list"),
            Rule(f"{v4}/default/<totype>/<to_id>", methods=["PUT"], endpoint="assoc_create_default"),
            Rule(f"{v4}/<totype>/<to_id>", methods=["PUT"], endpoint="assoc_create"),
            Rule(f"{v4}/<totype>/<to_id>", methods=["DELETE"], endpoint="assoc_archive"),
            Rule(f"{b4}/read", methods=["POST"], endpoint="assoc_batch_read"),
            Rule(f"{b4}/create", methods=["POST"], endpoint="assoc_batch_create"),
            Rule(f"{b4}/associate/default", methods=["POST"], endpoint="assoc_batch_default"),
            Rule(f"{b4}/archive", methods=["POST"], endpoint="assoc_batch_archive"),
        ]

    # ------------------------------------------------------------------------------------------- errors

    def _correlation_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _error_body(
        self,
        message: str,
        category: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        context: dict[str, list[str]] | None = None,
        sub_category: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "message": message,
            "correlationId": self._correlation_id(),
            "category": category,
        }
        if sub_category:
            body["subCategory"] = sub_category
        if errors:
            body["errors"] = errors
        if context:
            body["context"] = context
        return body

    def error(self, status: int, message: str, code: str = "") -> Response:
        if status == 429:
            return self._rate_limited("TEN_SECONDLY_ROLLING", None)
        category = code or {
            400: "VALIDATION_ERROR",
            401: "INVALID_AUTHENTICATION",
            404: "OBJECT_NOT_FOUND",
            409: "CONFLICT",
        }.get(status, "INTERNAL_ERROR")
        return json_response(self._error_body(message, category), status)

    def _fail(self, failure: InputFailed) -> Response:
        return json_response(
            self._error_body(
                failure.message,
                failure.category,
                errors=failure.errors,
                context=failure.context,
                sub_category=failure.sub_category,
            ),
            failure.status,
        )

    def _bad_request(self, message: str) -> Rejected:
        return Rejected(self.error(400, message, "VALIDATION_ERROR"))

    def _not_found(self, otype: str, object_id: str) -> Rejected:
        return Rejected(
            json_response(
                self._error_body(
                    f"Object not found.  objectId are usually numeric. ({SINGULAR.get(otype, otype)} {object_id})",
                    "OBJECT_NOT_FOUND",
                    context={"id": [object_id]},
                ),
                404,
            )
        )

    def auth_failed(self, request: Request) -> Response:
        return json_response(self._error_body(AUTH_MESSAGE, "INVALID_AUTHENTICATION"), 401)

    # -------------------------------------------------------------------------------------- rate limits

    def _rate_limited(self, policy: str, retry_after: float | None) -> Response:
        body = {
            "status": "error",
            "message": RATE_LIMIT_MESSAGES[policy],
            "errorType": "RATE_LIMIT",
            "correlationId": self._correlation_id(),
            "policyName": policy,
        }
        response = json_response(body, 429)
        if retry_after is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after - 1e-9)))
        return response

    def check_limits(self, user: str, token: str, kind: str, request: Request) -> Response | None:
        now = self.clock()
        with self._limits_lock:
            usage = self._usage.setdefault(user, Usage())
            usage.evict(now)
            if usage.daily >= self.daily_limit:
                return self._rate_limited("DAILY", (usage.day + 1) * 86400 - now)
            if kind == "search" and len(usage.searches) >= self.search_per_second:
                return self._rate_limited("SECONDLY", usage.searches[0] + 1.0 - now)
            if len(usage.recent) >= self.ten_second_limit:
                return self._rate_limited("TEN_SECONDLY_ROLLING", usage.recent[0] + 10.0 - now)
            usage.recent.append(now)
            usage.daily += 1
            if kind == "search":
                usage.searches.append(now)
        return None

    def decorate(self, response: Response, user: str, token: str, kind: str) -> None:
        # Every HubSpot response carries the server's time in ``Date`` (RFC 9110 section 6.6.1; seen in
        # HubSpot/hubspot-api-nodejs#545's headers). From the server's clock, so an injected clock shows.
        # The WSGI server adds the real time already; an injected clock's time is added after it (a client
        # reading a repeated header sees both, the server's clock last).
        if self.clock is not time.time:
            response.headers["Date"] = http_date(self.clock())
        if not self.rate_limits:
            return
        now = self.clock()
        with self._limits_lock:
            usage = self._usage.setdefault(user, Usage())
            usage.evict(now)
            headers = {
                "X-HubSpot-RateLimit-Max": self.ten_second_limit,
                "X-HubSpot-RateLimit-Remaining": max(0, self.ten_second_limit - len(usage.recent)),
                "X-HubSpot-RateLimit-Interval-Milliseconds": 10000,
                "X-HubSpot-RateLimit-Daily": self.daily_limit,
                "X-HubSpot-RateLimit-Daily-Remaining": max(0, self.daily_limit - usage.daily),
            }
            if kind == "search":
                headers["X-HubSpot-RateLimit-Secondly"] = self.search_per_second
                headers["X-HubSpot-RateLimit-Secondly-Remaining"] = max(
                    0, self.search_per_second - len(usage.searches)
                )
        for name, value in headers.items():
            response.headers[name] = str(value)

    def limits_state(self) -> dict[str, Any]:
        now = self.clock()
        with self._limits_lock:
            usage = {}
            for user, u in self._usage.items():
                u.evict(now)
                usage[user] = {
                    "ten_second": len(u.recent),
                    "secondly_search": len(u.searches),
                    "daily": u.daily,
                }
        return {
            "rate_limits": self.rate_limits,
            "ten_second_limit": self.ten_second_limit,
            "search_per_second": self.search_per_second,
            "daily_limit": self.daily_limit,
            "search_lag_ms": self.search_lag_ms,
            "usage": usage,
        }

    def set_limits(self, values: dict[str, Any]) -> None:
        """Change limit settings; any ``usage`` value resets every token's counts."""
        known = {
            "rate_limits",
            "ten_second_limit",
            "search_per_second",
            "daily_limit",
            "search_lag_ms",
            "usage",
        }
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown limit setting(s): {', '.join(sorted(unknown))}")
        numbers = {}
        for name in ("ten_second_limit", "search_per_second", "daily_limit"):
            if name in values:
                number = int(values[name])
                if number < 1:
                    raise ValueError(f"{name} must be at least 1, got {number}")
                numbers[name] = number
        lag = int(values.get("search_lag_ms", self.search_lag_ms))
        if lag < 0:
            raise ValueError(f"search_lag_ms must be 0 or more, got {lag}")
        super().set_limits({k: v for k, v in values.items() if k != "search_lag_ms"})
        self.search_lag_ms = lag
        with self._limits_lock:
            for name, number in numbers.items():
                setattr(self, name, number)
            if "usage" in values:
                self._usage.clear()

    # ------------------------------------------------------------------------------------ request parts

    def _otype(self, name: str) -> str:
        otype = OBJECT_TYPES.get(name.lower())
        if otype is None or otype not in self.schema.hubspot:
            raise self._bad_request(f"Unable to infer object type from: {name}")
        return otype

    def _spec(self, otype: str) -> ObjectSpec:
        return self.schema.hubspot[otype]

    def _field(self, otype: str, name: str) -> FieldSpec | None:
        spec = self._spec(otype).field(name)
        # HubSpot property names are exact; the schema's lookup is case-insensitive for Salesforce's sake.
        return spec if spec is not None and spec.name == name else None

    def _json(self, request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise self._bad_request("Invalid input JSON: expected an object")
        return body

    @staticmethod
    def _names(values: Iterable[Any]) -> list[str]:
        out: list[str] = []
        for value in values:
            out.extend(part.strip() for part in str(value).split(",") if part.strip())
        return out

    def _int_arg(self, raw: Any, name: str, default: int) -> int:
        if raw is None or raw == "":
            return default
        try:
            return int(str(raw))
        except ValueError:
            raise self._bad_request(f"Invalid value for {name}: {raw!r} is not an integer") from None

    def _inputs(self, body: dict[str, Any], limit: int = BATCH_LIMIT) -> list[dict[str, Any]]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            raise self._bad_request("inputs: expected a list of objects")
        if len(inputs) > limit:
            raise self._bad_request(f"Batch input has {len(inputs)} inputs; the limit is {limit}")
        return inputs

    # ------------------------------------------------------------------------------- derived structures

    def _bump(self, otype: str) -> None:
        self._versions[otype] = self._versions.get(otype, 0) + 1

    def _ids_sorted(self, otype: str) -> list[int]:
        count = self.store.count(otype)
        cached = self._sorted_ids.get(otype)
        if cached is None or cached[0] != count:
            ids = sorted(int(i) for i in self.store.table(otype))
            cached = self._sorted_ids[otype] = (count, ids)
        return cached[1]

    def _unique_props(self, otype: str) -> list[str]:
        return [f.name for f in self._spec(otype).fields if f.unique]

    def _unique_map(self, otype: str, prop: str) -> dict[str, str]:
        count = self.store.count(otype)
        cached = self._uniques.get((otype, prop))
        if cached is None or cached[0] != count:
            mapping: dict[str, str] = {}
            for rec in self.store.table(otype).values():
                if not _gone(rec):
                    value = rec["properties"].get(prop)
                    if value:
                        mapping.setdefault(str(value).lower(), str(rec["id"]))
            cached = self._uniques[(otype, prop)] = [count, mapping]
        return cached[1]

    def _reindex_record(self, otype: str, old: Record | None, new: Record) -> None:
        """Keep the sorted ids, unique values and search cache right after one write by the server."""
        self._lag_index(otype, old, new)
        count = self.store.count(otype)
        cached_ids = self._sorted_ids.get(otype)
        if cached_ids is not None and old is None:
            ids = cached_ids[1]
            new_id = int(new["id"])
            if ids and new_id < ids[-1]:
                self._sorted_ids.pop(otype)
            else:
                ids.append(new_id)
                self._sorted_ids[otype] = (count, ids)
        for (utype, prop), cached in self._uniques.items():
            if utype != otype:
                continue
            mapping = cached[1]
            if old is not None and not _gone(old):
                before = old["properties"].get(prop)
                if before and mapping.get(str(before).lower()) == new["id"]:
                    del mapping[str(before).lower()]
            after = new["properties"].get(prop)
            if after and not _gone(new):
                mapping.setdefault(str(after).lower(), str(new["id"]))
            cached[0] = count
        self._bump(otype)

    def _lag_index(self, otype: str, old: Record | None, new: Record) -> None:
        """Search sees a write ``search_lag_ms`` after it; list, get and batch read see it at once.

        HubSpot's search index is eventually consistent: "changes made by other API calls will take several
        seconds to propagate to the search indexing" (Locoia's HubSpot connector notes,
        https://locoia.gitbook.io/locoia/connectors/connectors/hubspot); "The Search API is eventually
        consistent" (Sequin, https://blog.sequin.io/building-a-sync-on-hubspots-api/). Until then a search
        answers with the record as it was before its first unindexed write (or without it, if new).
        """
        if self.search_lag_ms <= 0:
            return
        pending = self._unindexed.setdefault(otype, {})
        visible_at = int(self.clock() * 1000) + self.search_lag_ms
        rec_id = str(new["id"])
        before = pending[rec_id][1] if rec_id in pending else old
        pending[rec_id] = (visible_at, before)

    def _search_view(self, otype: str) -> dict[str, Record | None]:
        """Records search does not see as they are yet: id -> what it sees instead (None: nothing)."""
        pending = self._unindexed.get(otype)
        if not pending:
            return {}
        now = int(self.clock() * 1000)
        for rec_id in [i for i, (due, _) in pending.items() if due <= now]:
            del pending[rec_id]
        return {rec_id: before for rec_id, (_, before) in pending.items()}

    # --------------------------------------------------------------------------------- reading records

    def _value(self, otype: str, rec: Record, name: str) -> str | None:
        value = rec["properties"].get(name)
        if otype == "deals" and name in ("hs_is_closed", "hs_is_closed_won"):
            # Calculated by HubSpot from the stage's probability: closed at 0 or 1, won at 1 (the default
            # pipeline's closedwon / closedlost; HubSpot's default deal properties, "hs_is_closed",
            # "hs_is_closed_won", https://knowledge.hubspot.com/properties/hubspots-default-deal-properties).
            stage = rec["properties"].get("dealstage") or ""
            closed = stage in CLOSED_STAGES if name == "hs_is_closed" else stage == "closedwon"
            return "true" if closed else "false"
        if value is None:
            if name == "hs_object_id":
                return str(rec["id"])
            if name == "createdate":
                return rec.get("createdAt")
            if name == HUBSPOT_LAST_MODIFIED.get(otype):
                return rec.get("updatedAt")
            return None
        return value if isinstance(value, str) else _stringify(value)

    def _render(
        self,
        otype: str,
        rec: Record,
        names: Iterable[str] | None,
        *,
        trace: str | None = None,
        new: bool | None = None,
        history: Iterable[str] | None = None,
        associations: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        if names is None:
            wanted: Iterable[str] = DEFAULT_PROPERTIES[otype]
        else:
            wanted = dict.fromkeys([*names, "createdate", HUBSPOT_LAST_MODIFIED[otype], "hs_object_id"])
        spec = self._spec(otype)
        props = {n: self._value(otype, rec, n) for n in wanted if spec.field(n) is not None}
        out: dict[str, Any] = {
            "id": str(rec["id"]),
            "properties": props,
            "createdAt": rec.get("createdAt"),
            "updatedAt": rec.get("updatedAt"),
            "archived": bool(rec.get("archived")),
        }
        if rec.get("archived"):
            out["archivedAt"] = rec.get("archivedAt")
        if history:
            out["propertiesWithHistory"] = {
                n: self._history(otype, rec, n) for n in dict.fromkeys(history) if spec.field(n) is not None
            }
        if associations:
            out["associations"] = self._associations_v3(otype, rec, associations)
        if trace is not None:
            out["objectWriteTraceId"] = trace
        if new is not None:
            out["new"] = new
        return out

    def _history(self, otype: str, rec: Record, name: str) -> list[dict[str, Any]]:
        """A property's versions, newest first, as ``propertiesWithHistory`` reports them.

        Each version is ``{value, timestamp, sourceType, sourceId, sourceLabel, updatedByUserId}`` (CRM objects
        API, "propertiesWithHistory"; hubspot-api-client's ``ValueWithTimestamp``). Writes through this server
        keep their versions; a value that predates them (seeded) is one version at the record's last change.
        """
        kept = [
            {"value": value, "timestamp": iso_ms(ms), **_source(who)}
            for value, ms, who in self._versions_of(rec, name)
        ]
        if kept:
            return kept
        value = self._value(otype, rec, name)
        if value in (None, ""):
            return []
        stamp = rec.get("updatedAt") or rec.get("createdAt")
        return [
            {
                "value": value,
                "timestamp": stamp,
                "sourceType": "IMPORT",
                "sourceId": None,
                "sourceLabel": None,
                "updatedByUserId": None,
            }
        ]

    @staticmethod
    def _versions_of(rec: Record, name: str) -> list[list[Any]]:
        return list((rec.get("history") or {}).get(name) or [])

    def _associations_v3(self, otype: str, rec: Record, types: Iterable[str]) -> dict[str, Any]:
        """The v3 ``associations`` of a record: ``{toType: {results: [{id, type}]}}`` (CRM objects API,
        ``associations`` query parameter; hubspot-api-client's ``CollectionResponseAssociatedId``)."""
        out: dict[str, Any] = {}
        for raw in types:
            to_type = OBJECT_TYPES.get(raw.lower())
            if to_type is None or (otype, to_type) not in ASSOCIATION_TYPES:
                continue
            pair = f"{SINGULAR[otype]}_to_{SINGULAR[to_type]}"
            results = []
            for item in self._associated(otype, str(rec["id"]), to_type):
                for spec in item["associationTypes"]:
                    kind = pair if spec["label"] == "Primary" else f"{pair}_unlabeled"
                    results.append({"id": str(item["toObjectId"]), "type": kind})
            if results:
                out[to_type] = {"results": results}
        return out

    def _find(
        self, otype: str, key: str, id_property: str | None, *, archived: bool = False
    ) -> Record | None:
        if id_property in (None, "", "hs_object_id"):
            rec = self.store.get(otype, str(key))
        else:
            if id_property not in self._unique_props(otype):
                raise self._bad_request(
                    f"{id_property} is not a unique property of {otype}; idProperty must be"
                )
            if archived:
                rec = next(
                    (
                        r
                        for r in self.store.table(otype).values()
                        if r.get("archived")
                        and str(r["properties"].get(id_property) or "").lower() == str(key).lower()
                    ),
                    None,
                )
            else:
                found = self._unique_map(otype, id_property).get(str(key).lower())
                rec = self.store.get(otype, found) if found else None
        if rec is not None and rec.get("mergedInto"):
            # A merged-away id answers with the record it was merged into (see on_merge).
            if archived:
                return None
            seen = {str(rec["id"])}
            while rec is not None and rec.get("mergedInto") and str(rec["mergedInto"]) not in seen:
                seen.add(str(rec["mergedInto"]))
                rec = self.store.get(otype, str(rec["mergedInto"]))
        if rec is None or bool(rec.get("archived")) != archived:
            return None
        return rec

    # ------------------------------------------------------------------------------------------- writes

    def _tick(self) -> int:
        """This write request's timestamp (epoch ms): the clock, or 1 ms after the previous write's."""
        now = max(int(self.clock() * 1000), int(self.store.meta("hs_last_ms", 0)) + 1)
        self.store.set_meta("hs_last_ms", now)
        return now

    def _new_ids(self, count: int) -> Iterator[str]:
        start = self.store.meta("hs_seq")
        if start is None:
            highest = [int(i) for t in self.schema.hubspot for i in self.store.table(t)]
            start = max(highest, default=1000) + 1
        self.store.set_meta("hs_seq", int(start) + count)
        return (str(n) for n in range(int(start), int(start) + count))

    def _owner_ids(self) -> dict[str, bool]:
        """Owner id -> archived."""
        return {str(o["id"]): bool(o.get("archived")) for o in self.store.table("owners").values()}

    def _user_id(self, user: str) -> str | None:
        if user == "integration":
            return None
        wanted = user.lower()
        for owner in self.store.table("owners").values():
            if str(owner.get("email", "")).lower() == wanted and owner.get("userId") is not None:
                return str(owner["userId"])
        return None

    def _normalize(
        self, otype: str, props: Any, current: Record | None, owners: dict[str, bool] | None = None
    ) -> dict[str, str]:
        """Validated property values as stored; raises InputFailed with every problem found."""
        if not isinstance(props, dict):
            raise InputFailed(400, "VALIDATION_ERROR", "properties: expected an object of property values")
        problems: list[Problem] = []
        out: dict[str, str] = {}
        for name, raw in props.items():
            spec = self._field(otype, str(name))
            if spec is None:
                problems.append(
                    Problem(str(name), "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
                )
                continue
            if spec.readonly:
                problems.append(
                    Problem(
                        spec.name,
                        "READ_ONLY_VALUE",
                        f"{spec.name} is a read only property; its value cannot be set.",
                    )
                )
                continue
            value = "" if raw is None else raw if isinstance(raw, str) else _stringify(raw)
            problem, value = self._check_value(otype, spec, value.strip(), current, owners)
            if problem is not None:
                problems.append(problem)
            else:
                out[spec.name] = value
        if problems:
            raise InputFailed.invalid(problems)
        return out

    def _check_value(
        self, otype: str, spec: FieldSpec, value: str, current: Record | None, owners: dict[str, bool] | None
    ) -> tuple[Problem | None, str]:
        name = spec.name
        if value == "":
            return None, ""
        if spec.type == "email":
            if not _EMAIL.match(value):
                return Problem(name, "INVALID_EMAIL", f"Email address {value} is invalid"), value
            return None, value.lower()
        if spec.type in NUMERIC_TYPES:
            number = _number(value)
            if number is None or (spec.type == "int" and not number.is_integer()):
                kind = "an integer" if spec.type == "int" else "a number"
                return Problem(
                    name,
                    "INVALID_INTEGER" if spec.type == "int" else "INVALID_DECIMAL",
                    f"{value} is not {kind}",
                ), value
            return None, value
        if spec.type in DATE_TYPES:
            ms = parse_ms(value)
            if ms is None:
                return Problem(
                    name, "INVALID_DATE", f"{value} is not a valid date or epoch-milliseconds value"
                ), value
            if spec.type == "date" and ms % DAY_MS:
                # Date properties take midnight UTC only (CRM properties API guide, "date" type:
                # "must be set to midnight UTC"; https://developers.hubspot.com/docs/guides/api/crm/properties).
                return Problem(
                    name, "INVALID_DATE", f"{value} is not midnight UTC; a date property takes a day only"
                ), value
            return None, (iso_ms(ms) if spec.type == "datetime" else iso_ms(ms)[:10])
        if spec.type == "boolean":
            if value.lower() not in ("true", "false"):
                return Problem(
                    name, "INVALID_BOOLEAN", f"{value} is not a valid boolean (true or false)"
                ), value
            return None, value.lower()
        if len(value) > STRING_MAX:
            return Problem(
                name,
                "INVALID_STRING_LENGTH",
                f"{name} is {len(value)} characters long; a property value holds at most {STRING_MAX}",
            ), value
        if spec.picklist and value not in spec.picklist:
            return Problem(
                name,
                "INVALID_OPTION",
                f"{value} was not one of the allowed options: [{', '.join(spec.picklist)}]",
            ), value
        if name == "hubspot_owner_id" or account_teams.is_owner_property(spec):
            owners = self._owner_ids() if owners is None else owners
            if owners.get(value, True):
                return Problem(name, "INVALID_OWNER_ID", f"{value} is not a valid owner id"), value
        if name == "lifecyclestage" and current is not None and spec.picklist:
            before = current["properties"].get(name) or ""
            if before in spec.picklist and spec.picklist.index(value) < spec.picklist.index(before):
                return Problem(
                    name,
                    "INVALID_LIFECYCLE_STAGE_TRANSITION",
                    f"lifecyclestage can only move forward: {before} -> {value} is backward; "
                    f'clear it first by setting it to ""',
                ), value
        return None, value

    def _check_unique(self, otype: str, values: dict[str, str], self_id: str | None) -> None:
        for prop in self._unique_props(otype):
            value = values.get(prop)
            if not value:
                continue
            existing = self._unique_map(otype, prop).get(value.lower())
            if existing is not None and existing != self_id:
                noun = SINGULAR[otype].capitalize()
                raise InputFailed(
                    409,
                    "CONFLICT",
                    f"{noun} already exists. Existing ID: {existing}",
                    context={"id": [existing]},
                )

    def _save(
        self, otype: str, rec_id: str, old: Record | None, changes: dict[str, str], now: int, user: str
    ) -> Record:
        stamp = iso_ms(now)
        props = dict(old["properties"]) if old is not None else {}
        props.update(changes)
        props["hs_object_id"] = rec_id
        props[HUBSPOT_LAST_MODIFIED[otype]] = stamp
        user_id = self._user_id(user)
        props["hs_updated_by_user_id"] = user_id
        if old is None:
            props["createdate"] = stamp
        # Versions as [value, epoch ms, who]: who is None (the app), "import" (seeded) or a rep's userId.
        history = dict(old.get("history") or {}) if old is not None else {}
        for name, value in changes.items():
            versions = history.get(name) or []
            if not versions and old is not None and old["properties"].get(name):
                # The value before the sandbox first saw it written (seeded): kept as the oldest version.
                seeded_ms = parse_ms(str(old.get("updatedAt") or "")) or now
                versions = [[_stringify(old["properties"][name]), seeded_ms, "import"]]
            history[name] = [[value, now, user_id], *versions[: HISTORY_KEEP - 1]]
        rec: Record = {
            "id": rec_id,
            "properties": props,
            "createdAt": old["createdAt"] if old is not None else stamp,
            "updatedAt": stamp,
            "archived": False,
            "archivedAt": None,
            "history": history,
        }
        self.store.put(otype, rec)
        self._reindex_record(otype, old, rec)
        return rec

    def _create_one(
        self,
        otype: str,
        item: dict[str, Any],
        new_id: Callable[[], str],
        now: Callable[[], int],
        user: str,
        owners: dict[str, bool],
    ) -> Record:
        values = self._normalize(otype, item.get("properties") or {}, None, owners)
        links = self._parse_create_associations(otype, item.get("associations"))
        self._check_unique(otype, values, None)
        rec = self._save(otype, new_id(), None, values, now(), user)
        for to_type, to_id, type_id in links:
            self._associate(otype, str(rec["id"]), to_type, to_id, type_id)
        return rec

    def _update_one(
        self, otype: str, rec: Record, props: Any, now: Callable[[], int], user: str, owners: dict[str, bool]
    ) -> tuple[Record, dict[str, str]]:
        values = self._normalize(otype, props, rec, owners)
        self._check_unique(otype, values, str(rec["id"]))
        changes = {k: v for k, v in values.items() if (rec["properties"].get(k) or "") != v}
        if not changes:
            return rec, values
        return self._save(otype, str(rec["id"]), rec, changes, now(), user), values

    def _archive_one(self, otype: str, rec: Record, now: int) -> None:
        stamp = iso_ms(now)
        archived = {
            **rec,
            "archived": True,
            "archivedAt": stamp,
            "updatedAt": stamp,
            "properties": {**rec["properties"], HUBSPOT_LAST_MODIFIED[otype]: stamp},
        }
        self.store.put(otype, archived)
        self._reindex_record(otype, rec, archived)

    def _lazy_tick(self) -> Callable[[], int]:
        """One timestamp per request, taken only if the request writes something."""
        taken: list[int] = []

        def now() -> int:
            if not taken:
                taken.append(self._tick())
            return taken[0]

        return now

    def _lazy_ids(self, count: int) -> Callable[[], str]:
        pool: list[Iterator[str]] = []

        def next_id() -> str:
            if not pool:
                pool.append(self._new_ids(count))
            return next(pool[0])

        return next_id

    def _extras(self, request: Request) -> tuple[list[str], list[str]]:
        """``propertiesWithHistory`` and ``associations`` query parameters (repeated or comma-separated)."""
        history = self._names(request.args.getlist("propertiesWithHistory"))
        # "If any of the specified associations do not exist, they will be ignored" (the parameter's
        # description in HubSpot's CRM objects API, as hubspot-api-client 12.0.0 documents it).
        linked = self._names(request.args.getlist("associations"))
        return history, linked

    # ----------------------------------------------------------------------------------- basic objects

    @_guarded
    def on_list(self, request: Request, *, user: str, objtype: str) -> Response:
        otype = self._otype(objtype)
        limit = min(max(self._int_arg(request.args.get("limit"), "limit", 10), 1), LIST_LIMIT)
        after = request.args.get("after")
        archived = _truthy(request.args.get("archived"))
        names = self._names(request.args.getlist("properties")) if "properties" in request.args else None
        ids = self._ids_sorted(otype)
        start = 0
        if after:
            try:
                start = bisect_right(ids, int(after))
            except ValueError:
                raise self._bad_request(f"Invalid after: {after}") from None
        table = self.store.table(otype)
        page: list[Record] = []
        more = False
        for rec_id in islice(ids, start, None):
            rec = table.get(str(rec_id))
            if rec is None or bool(rec.get("archived")) != archived or rec.get("mergedInto"):
                continue
            if len(page) == limit:
                more = True
                break
            page.append(rec)
        history, linked = self._extras(request)
        body: dict[str, Any] = {
            "results": [self._render(otype, r, names, history=history, associations=linked) for r in page]
        }
        if more:
            cursor = str(page[-1]["id"])
            body["paging"] = {
                "next": {"after": cursor, "link": f"{request.host_url}crm/v3/objects/{otype}?after={cursor}"}
            }
        return json_response(body)

    @_guarded
    def on_get(self, request: Request, *, user: str, objtype: str, object_id: str) -> Response:
        otype = self._otype(objtype)
        names = self._names(request.args.getlist("properties")) if "properties" in request.args else None
        rec = self._find(
            otype, object_id, request.args.get("idProperty"), archived=_truthy(request.args.get("archived"))
        )
        if rec is None:
            raise self._not_found(otype, object_id)
        history, linked = self._extras(request)
        return json_response(self._render(otype, rec, names, history=history, associations=linked))

    @_guarded
    def on_create(self, request: Request, *, user: str, objtype: str) -> Response:
        otype = self._otype(objtype)
        body = self._json(request)
        try:
            rec = self._create_one(otype, body, self._lazy_ids(1), self._lazy_tick(), user, self._owner_ids())
        except InputFailed as failure:
            return self._fail(failure)
        written = list((body.get("properties") or {}).keys())
        return json_response(self._render(otype, rec, written), 201)

    @_guarded
    def on_update(self, request: Request, *, user: str, objtype: str, object_id: str) -> Response:
        otype = self._otype(objtype)
        body = self._json(request)
        rec = self._find(otype, object_id, request.args.get("idProperty"))
        if rec is None:
            raise self._not_found(otype, object_id)
        try:
            rec, values = self._update_one(
                otype, rec, body.get("properties", {}), self._lazy_tick(), user, self._owner_ids()
            )
        except InputFailed as failure:
            return self._fail(failure)
        return json_response(self._render(otype, rec, list(values)))

    @_guarded
    def on_archive(self, request: Request, *, user: str, objtype: str, object_id: str) -> Response:
        otype = self._otype(objtype)
        rec = self._find(otype, object_id, None)
        if rec is not None:
            self._archive_one(otype, rec, self._tick())
        # HubSpot answers 204 whether or not the object existed.
        return Response(status=204)

    # ------------------------------------------------------------------------------------------- merge

    @_guarded
    def on_merge(self, request: Request, *, user: str, objtype: str) -> Response:
        """Merge ``objectIdToMerge`` into ``primaryObjectId`` (POST /crm/v3/objects/{contacts|companies}/merge).

        As documented (https://developers.hubspot.com/docs/api-reference/crm-contacts-v3/basic/
        post-crm-v3-objects-contacts-merge): 200 with the merged record, which keeps the primary's id; the
        primary's values win ("the record that the merge will generally set as the current value") and the
        merged record fills the properties the primary leaves blank; ``hs_merged_object_ids`` lists the ids
        merged into it, ";"-separated (hubspot-api-nodejs#6). Associations move to the survivor. The
        merged-away id answers GET, PATCH and batch read with the survivor; it is neither live nor archived
        in listings and search (unconfirmed against a live portal: HubSpot's knowledge base, "Merge records").
        """
        otype = self._otype(objtype)
        if otype not in MERGEABLE:
            raise self._bad_request(
                f"Merging {otype} is not supported by the sandbox (contacts and companies are)"
            )
        body = self._json(request)
        primary_id = str(body.get("primaryObjectId") or "").strip()
        other_id = str(body.get("objectIdToMerge") or "").strip()
        if not primary_id or not other_id:
            raise self._bad_request("primaryObjectId and objectIdToMerge are both required")
        primary = self._find(otype, primary_id, None)
        if primary is None:
            raise self._not_found(otype, primary_id)
        other = self._find(otype, other_id, None)
        if other is None:
            raise self._not_found(otype, other_id)
        if str(other["id"]) == str(primary["id"]):
            raise self._bad_request(
                f"{other_id} and {primary_id} are the same {SINGULAR[otype]}; nothing to merge"
            )
        now = self._tick()
        survivor_id, merged_id = str(primary["id"]), str(other["id"])
        gone: Record = {**other, "mergedInto": survivor_id, "updatedAt": iso_ms(now)}
        self.store.put(otype, gone)
        self._reindex_record(otype, other, gone)
        merged_ids = [
            *_id_list(primary["properties"].get("hs_merged_object_ids")),
            merged_id,
            *_id_list(other["properties"].get("hs_merged_object_ids")),
        ]
        spec = self._spec(otype)
        changes: dict[str, str] = {}
        for name, value in other["properties"].items():
            field_spec = spec.field(name)
            if field_spec is None or field_spec.readonly or name in ("hs_object_id", "createdate"):
                continue
            if value not in (None, "") and primary["properties"].get(name) in (None, ""):
                changes[name] = value if isinstance(value, str) else _stringify(value)
        changes["hs_merged_object_ids"] = ";".join(dict.fromkeys(merged_ids))
        survivor = self._save(otype, survivor_id, primary, changes, now, user)
        for to_type in {b for (a, b) in ASSOCIATION_TYPES if a == otype}:
            for linked_id in list(self._assoc_index().get((otype, merged_id, to_type), {})):
                self._dissociate(otype, merged_id, to_type, linked_id)
                try:
                    self._associate(otype, survivor_id, to_type, linked_id, None)
                except InputFailed:
                    continue  # the other side is archived: nothing to move
        return json_response(self._render(otype, survivor, None))

    @_guarded
    def on_schemas(self, request: Request, *, user: str) -> Response:
        """Custom object schemas (GET /crm/v3/schemas, CRM schemas API): the sandbox portal has none, so an
        empty ``results`` (standard objects are not listed there; their properties are under
        /crm/v3/properties/{objectType})."""
        return json_response({"results": []})

    # ------------------------------------------------------------------------------------------- batch

    def _batch_response(
        self, status: int, results: list[dict[str, Any]], errors: list[dict[str, Any]], started: str
    ) -> Response:
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso_ms(int(self.clock() * 1000)),
        }
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
            status = 207
        return json_response(body, status)

    def _batch_error(self, failure: InputFailed, context: dict[str, list[str]]) -> dict[str, Any]:
        return {
            "status": "error",
            "category": failure.category,
            "message": failure.message,
            "context": {**failure.context, **context},
            "errors": failure.errors,
            "links": {},
            **({"subCategory": failure.sub_category} if failure.sub_category else {}),
        }

    def _no_duplicate_ids(self, inputs: list[dict[str, Any]]) -> None:
        seen: set[str] = set()
        dupes: list[str] = []
        for item in inputs:
            key = str(item.get("id", "")).lower()
            if key in seen:
                dupes.append(str(item.get("id")))
            seen.add(key)
        if dupes:
            raise self._bad_request(
                f"Duplicate IDs found in batch input: [{', '.join(dupes)}]. IDs must be unique"
            )

    @_guarded
    def on_batch_read(self, request: Request, *, user: str, objtype: str) -> Response:
        otype = self._otype(objtype)
        started = iso_ms(int(self.clock() * 1000))
        body = self._json(request)
        inputs = self._inputs(body)
        names = self._names(body["properties"]) if body.get("properties") else None
        history = self._names(body.get("propertiesWithHistory") or [])
        id_property = body.get("idProperty")
        archived = _truthy(request.args.get("archived"))
        results: list[dict[str, Any]] = []
        missing: list[str] = []
        for item in inputs:
            key = str(item.get("id", ""))
            rec = self._find(otype, key, id_property, archived=archived)
            if rec is None:
                missing.append(key)
            else:
                results.append(self._render(otype, rec, names, history=history))
        errors = []
        if missing:
            errors.append(
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": f"Could not get some {SINGULAR[otype].upper()} objects, they may be "
                    "deleted or not exist. Check that ids are valid.",
                    "context": {"ids": missing},
                    "errors": [],
                    "links": {},
                }
            )
        return self._batch_response(200, results, errors, started)

    # A batch write is refused whole when one input is bad, and nothing of it is written: a batch create with
    # an existing email answers 409 CONFLICT "Contact already exists. Existing ID: …" naming only the first
    # conflict (HubSpot/hubspot-api-python#51), and integrators report that HubSpot "doesn't return partial
    # failures, it discards the entire batch" after a 400 for invalid values (rudderlabs/rudder-transformer
    # #3308, #5147). Two inputs of one batch create with the same email conflict too
    # (Joystream/youtube-synch#355); "if there is a single error in the list of contacts none of them will be
    # processed" (hubspot-net/HubSpot.NET#25). An unknown id in a batch update refuses it too, as a 404
    # OBJECT_NOT_FOUND (the status is the sandbox's reading, unconfirmed against a live portal).
    # 207 with numErrors/errors is what batch *read* answers for missing ids.

    def _refusal(self, failures: list[InputFailed]) -> Response:
        """The whole batch's error: every invalid value (400), else the first conflict or missing object."""
        invalid = [f for f in failures if f.status == 400]
        if invalid:
            errors = [e for f in invalid for e in (f.errors or [{"message": f.message, "code": f.category}])]
            return json_response(self._error_body(invalid[0].message, "VALIDATION_ERROR", errors=errors), 400)
        first = failures[0]
        return json_response(self._error_body(first.message, first.category), first.status)

    def _claim(
        self, otype: str, values: dict[str, str], self_id: str | None, claimed: dict[tuple[str, str], int]
    ) -> None:
        """Unique values must be free in the portal and not taken by an earlier input of the same batch."""
        self._check_unique(otype, values, self_id)
        for prop in self._unique_props(otype):
            value = values.get(prop)
            if not value:
                continue
            key = (prop, value.lower())
            if key in claimed:
                noun = SINGULAR[otype].capitalize()
                raise InputFailed(
                    409,
                    "CONFLICT",
                    f"{noun} already exists: {prop} {value} is given by two inputs of this batch "
                    f"(inputs {claimed[key]} and {len(claimed)})",
                )
            claimed[key] = len(claimed)

    def _plan_create(
        self, otype: str, item: dict[str, Any], owners: dict[str, bool], claimed: dict[tuple[str, str], int]
    ) -> _Planned:
        values = self._normalize(otype, item.get("properties") or {}, None, owners)
        links = self._parse_create_associations(otype, item.get("associations"))
        self._claim(otype, values, None, claimed)
        return _Planned(item, None, values, links)

    def _plan_update(
        self,
        otype: str,
        item: dict[str, Any],
        rec: Record | None,
        owners: dict[str, bool],
        claimed: dict[tuple[str, str], int],
    ) -> _Planned:
        key = str(item.get("id", ""))
        if rec is None:
            raise InputFailed(
                404, "OBJECT_NOT_FOUND", f"Object not found. objectId: {key}", context={"id": [key]}
            )
        values = self._normalize(otype, item.get("properties", {}), rec, owners)
        self._claim(otype, values, str(rec["id"]), claimed)
        return _Planned(item, rec, values, [])

    def _apply(
        self, otype: str, plan: _Planned, new_id: Callable[[], str], now: Callable[[], int], user: str
    ) -> Record:
        if plan.rec is None:
            rec = self._save(otype, new_id(), None, plan.values, now(), user)
            for to_type, to_id, type_id in plan.links:
                self._associate(otype, str(rec["id"]), to_type, to_id, type_id)
            return rec
        current = plan.rec
        changes = {k: v for k, v in plan.values.items() if (current["properties"].get(k) or "") != v}
        if not changes:
            return current
        return self._save(otype, str(current["id"]), current, changes, now(), user)

    def _run_batch(
        self,
        otype: str,
        user: str,
        inputs: list[dict[str, Any]],
        plan: Callable[[dict[str, Any], dict[str, bool], dict[tuple[str, str], int]], _Planned],
        status: int,
        started: str,
    ) -> Response:
        owners = self._owner_ids()
        claimed: dict[tuple[str, str], int] = {}
        plans: list[_Planned] = []
        failures: list[InputFailed] = []
        for item in inputs:
            try:
                plans.append(plan(item, owners, claimed))
            except InputFailed as failure:
                failures.append(failure)
        if failures:
            return self._refusal(failures)
        new_id, now = self._lazy_ids(sum(1 for p in plans if p.rec is None)), self._lazy_tick()
        results = []
        for planned in plans:
            created = planned.rec is None
            rec = self._apply(otype, planned, new_id, now, user)
            written = list((planned.item.get("properties") or {}).keys())
            results.append(
                self._render(
                    otype,
                    rec,
                    written,
                    trace=planned.item.get("objectWriteTraceId"),
                    new=created if planned.upsert else None,
                )
            )
        return self._batch_response(status, results, [], started)

    @_guarded
    def on_batch_create(self, request: Request, *, user: str, objtype: str) -> Response:
        otype = self._otype(objtype)
        started = iso_ms(int(self.clock() * 1000))
        inputs = self._inputs(self._json(request))
        return self._run_batch(
            otype,
            user,
            inputs,
            lambda item, owners, claimed: self._plan_create(otype, item, owners, claimed),
            201,
            started,
        )

    @_guarded
    def on_batch_update(self, request: Request, *, user: str, objtype: str) -> Response:
        otype = self._otype(objtype)
        started = iso_ms(int(self.clock() * 1000))
        inputs = self._inputs(self._json(request))
        self._no_duplicate_ids(inputs)

        def plan(
            item: dict[str, Any], owners: dict[str, bool], claimed: dict[tuple[str, str], int]
        ) -> _Planned:
            rec = self._find(otype, str(item.get("id", "")), item.get("idProperty"))
            return self._plan_update(otype, item, rec, owners, claimed)

        return self._run_batch(otype, user, inputs, plan, 200, started)

    @_guarded
    def on_batch_upsert(self, request: Request, *, user: str, objtype: str) -> Response:
        otype = self._otype(objtype)
        started = iso_ms(int(self.clock() * 1000))
        inputs = self._inputs(self._json(request))
        self._no_duplicate_ids(inputs)
        uniques = self._unique_props(otype)
        for item in inputs:
            if item.get("idProperty") not in uniques:
                raise self._bad_request(
                    f"idProperty {item.get('idProperty')!r} is not a unique property of "
                    f"{otype}; upsert needs one of: {', '.join(uniques) or '(none)'}"
                )

        def plan(
            item: dict[str, Any], owners: dict[str, bool], claimed: dict[tuple[str, str], int]
        ) -> _Planned:
            key, id_property = str(item.get("id", "")), str(item["idProperty"])
            rec = self._find(otype, key, id_property)
            if rec is None:
                props = {**(item.get("properties") or {})}
                props.setdefault(id_property, key)
                planned = self._plan_create(otype, {**item, "properties": props}, owners, claimed)
            else:
                planned = self._plan_update(otype, item, rec, owners, claimed)
            planned.upsert = True
            return planned

        return self._run_batch(otype, user, inputs, plan, 200, started)

    @_guarded
    def on_batch_archive(self, request: Request, *, user: str, objtype: str) -> Response:
        otype = self._otype(objtype)
        inputs = self._inputs(self._json(request))
        now = self._lazy_tick()
        for item in inputs:
            rec = self._find(otype, str(item.get("id", "")), None)
            if rec is not None:
                self._archive_one(otype, rec, now())
        return Response(status=204)

    # ------------------------------------------------------------------------------------------ search

    @_guarded
    def on_search(self, request: Request, *, user: str, objtype: str) -> Response:
        otype = self._otype(objtype)
        body = self._json(request)
        limit = self._int_arg(body.get("limit"), "limit", 10)
        if not 0 <= limit <= SEARCH_LIMIT:
            raise self._bad_request(f"limit must be between 0 and {SEARCH_LIMIT}, got {limit}")
        after = self._int_arg(body.get("after"), "after", 0)
        if after >= SEARCH_RESULT_CAP:
            raise self._bad_request(
                f"Search results are limited to {SEARCH_RESULT_CAP} per query and after={after} is past them: "
                "narrow the query (e.g. by lastmodifieddate) to page further"
            )
        names = self._names(body["properties"]) if body.get("properties") else None
        view = self._search_view(otype)
        ids = self._search_ids(otype, body, view)
        end = min(after + limit, SEARCH_RESULT_CAP, len(ids))
        table = self.store.table(otype)
        results = [self._render(otype, view.get(i) or table[i], names) for i in ids[after:end]]
        out: dict[str, Any] = {"total": len(ids), "results": results}
        if end < len(ids) and limit > 0:
            out["paging"] = {"next": {"after": str(end), "link": None}}
        return json_response(out)

    def _search_ids(self, otype: str, body: dict[str, Any], view: dict[str, Record | None]) -> list[str]:
        query = {k: body.get(k) for k in ("filterGroups", "sorts", "query")}
        key = (
            otype,
            self._versions.get(otype, 0),  # bumped by every write, so also when a write starts lagging
            self.store.count(otype),
            len(view),  # smaller once the index caught up with a write
            json.dumps(query, sort_keys=True, default=str),
        )
        cached = self._search_cache.get(key)
        if cached is not None:
            self._search_cache.move_to_end(key)
            return cached
        match = self._compile_groups(otype, body.get("filterGroups") or [])
        text = str(body.get("query") or "").strip().lower()
        table = self.store.table(otype)
        records: Iterable[Record] = table.values()
        if view:
            records = [seen for rec in table.values() if (seen := view.get(str(rec["id"]), rec)) is not None]
        hits = [
            rec for rec in records if not rec.get("archived") and not rec.get("mergedInto") and match(rec)
        ]
        if text:
            fields = QUERY_PROPERTIES[otype]
            hits = [r for r in hits if any(text in (self._value(otype, r, f) or "").lower() for f in fields)]
        hits.sort(key=lambda r: int(r["id"]))
        for prop, descending in reversed(self._parse_sorts(otype, body.get("sorts") or [])):
            sort_key = self._sort_key(otype, prop, descending)
            hits.sort(key=sort_key, reverse=descending)
        ids = [str(r["id"]) for r in hits]
        self._search_cache[key] = ids
        while len(self._search_cache) > 16:
            self._search_cache.popitem(last=False)
        return ids

    def _parse_sorts(self, otype: str, sorts: Any) -> list[tuple[str, bool]]:
        if not isinstance(sorts, list):
            raise self._bad_request("sorts: expected a list")
        out = []
        for item in sorts:
            if isinstance(item, str):
                prop, descending = item.lstrip("-"), item.startswith("-")
            elif isinstance(item, dict):
                prop = str(item.get("propertyName", ""))
                direction = str(item.get("direction", "ASCENDING")).upper()
                if direction not in ("ASCENDING", "DESCENDING"):
                    raise self._bad_request(
                        f"sorts: direction must be ASCENDING or DESCENDING, got {direction}"
                    )
                descending = direction == "DESCENDING"
            else:
                raise self._bad_request("sorts: each sort is a property name or {propertyName, direction}")
            if self._field(otype, prop) is None:
                raise self._bad_request(f"sorts: property {prop!r} does not exist on {otype}")
            out.append((prop, descending))
        return out

    def _comparable(self, otype: str, prop: str) -> Callable[[str], Any]:
        """How values of ``prop`` compare: numbers, epoch ms, or case-insensitive text."""
        spec = self._field(otype, prop)
        if prop == "hs_object_id" or (spec is not None and spec.type in NUMERIC_TYPES):
            return _number
        if spec is not None and spec.type in DATE_TYPES:
            return parse_ms
        return str.lower

    def _sort_key(self, otype: str, prop: str, descending: bool) -> Callable[[Record], Any]:
        convert = self._comparable(otype, prop)

        def key(rec: Record) -> Any:
            raw = self._value(otype, rec, prop)
            value = convert(raw) if raw else None
            # Blank values sort last in either direction.
            if value is None:
                return (0, 0) if descending else (1, 0)
            return (1, value) if descending else (0, value)

        return key

    def _compile_groups(self, otype: str, groups: Any) -> Callable[[Record], bool]:
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise self._bad_request("filterGroups: expected a list of {filters: [...]}")
        if len(groups) > MAX_FILTER_GROUPS:
            raise self._bad_request(
                f"Too many filterGroups: {len(groups)}; at most {MAX_FILTER_GROUPS} allowed"
            )
        total = 0
        compiled: list[list[Callable[[Record], bool]]] = []
        for group in groups:
            filters = group.get("filters") or []
            if not isinstance(filters, list):
                raise self._bad_request("filterGroups[].filters: expected a list")
            if len(filters) > MAX_FILTERS_PER_GROUP:
                raise self._bad_request(
                    f"Too many filters in a filterGroup: {len(filters)}; at most "
                    f"{MAX_FILTERS_PER_GROUP} allowed"
                )
            total += len(filters)
            compiled.append([self._compile_filter(otype, f) for f in filters])
        if total > MAX_FILTERS:
            raise self._bad_request(
                f"Too many filters: {total}; at most {MAX_FILTERS} allowed in all filterGroups"
            )
        if not compiled:
            return lambda rec: True
        return lambda rec: any(all(test(rec) for test in group) for group in compiled)

    def _compile_filter(self, otype: str, spec: Any) -> Callable[[Record], bool]:
        if not isinstance(spec, dict):
            raise self._bad_request("filters: each filter is an object")
        prop, op = str(spec.get("propertyName", "")), str(spec.get("operator", "EQ")).upper()
        if op not in OPERATORS:
            raise self._bad_request(f"Unknown filter operator {op}; expected one of {', '.join(OPERATORS)}")
        if self._field(otype, prop) is None:
            raise self._bad_request(f"filters: property {prop!r} does not exist on {otype}")
        convert = self._comparable(otype, prop)
        value_of = self._value

        def operand(raw: Any, what: str = "value") -> Any:
            if raw is None:
                raise self._bad_request(f"filter on {prop} with {op} needs a {what}")
            converted = convert(_stringify(raw) if not isinstance(raw, str) else raw)
            if converted is None:
                raise self._bad_request(f"filter on {prop}: {raw!r} is not a valid {what} for this property")
            return converted

        def current(rec: Record) -> Any:
            raw = value_of(otype, rec, prop)
            return convert(raw) if raw else None

        if op == "HAS_PROPERTY":
            return lambda rec: bool(value_of(otype, rec, prop))
        if op == "NOT_HAS_PROPERTY":
            return lambda rec: not value_of(otype, rec, prop)
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(spec.get("value") or "").lower()
            if not token:
                raise self._bad_request(f"filter on {prop} with {op} needs a value")
            pattern = (
                re.compile("^" + ".*".join(map(re.escape, token.split("*"))) + "$") if "*" in token else None
            )

            def contains(rec: Record) -> bool:
                raw = value_of(otype, rec, prop)
                if not raw:
                    return False
                tokens = _tokens(raw)
                return any(pattern.match(t) for t in tokens) if pattern else token in tokens

            if op == "CONTAINS_TOKEN":
                return contains
            return lambda rec: not contains(rec)
        if op in ("IN", "NOT_IN"):
            raw_values = spec.get("values")
            if not isinstance(raw_values, list) or not raw_values:
                raise self._bad_request(f"filter on {prop} with {op} needs values")
            members = {operand(v) for v in raw_values}
            if op == "IN":
                return lambda rec: current(rec) in members
            return lambda rec: current(rec) not in members
        if op == "BETWEEN":
            low, high = operand(spec.get("value")), operand(spec.get("highValue"), "highValue")

            def between(rec: Record) -> bool:
                value = current(rec)
                return value is not None and low <= value <= high

            return between
        target = operand(spec.get("value"))
        if op == "EQ":
            return lambda rec: current(rec) == target
        if op == "NEQ":
            return lambda rec: current(rec) != target
        compare: dict[str, Callable[[Any, Any], bool]] = {
            "LT": lambda a, b: a < b,
            "LTE": lambda a, b: a <= b,
            "GT": lambda a, b: a > b,
            "GTE": lambda a, b: a >= b,
        }
        test = compare[op]

        def ordered(rec: Record) -> bool:
            value = current(rec)
            return value is not None and test(value, target)

        return ordered

    # ------------------------------------------------------------------------------------------ owners

    @staticmethod
    def _owner_json(owner: Record) -> dict[str, Any]:
        teams = []
        for index, team in enumerate(owner.get("teams") or []):
            if isinstance(team, dict):
                teams.append(
                    {
                        "id": str(team.get("id", team.get("name", index))),
                        "name": str(team.get("name", "")),
                        "primary": bool(team.get("primary", index == 0)),
                    }
                )
            else:
                teams.append({"id": str(team), "name": str(team), "primary": index == 0})
        return {
            "id": str(owner["id"]),
            "email": owner.get("email"),
            "firstName": owner.get("firstName"),
            "lastName": owner.get("lastName"),
            "userId": owner.get("userId"),
            "userIdIncludingInactive": owner.get("userId"),
            "type": owner.get("type", "PERSON"),
            "createdAt": owner.get("createdAt"),
            "updatedAt": owner.get("updatedAt"),
            "archived": bool(owner.get("archived")),
            "teams": teams,
        }

    @_guarded
    def on_owners(self, request: Request, *, user: str) -> Response:
        limit = min(max(self._int_arg(request.args.get("limit"), "limit", 100), 1), OWNERS_LIMIT)
        after = self._int_arg(request.args.get("after"), "after", -1)
        archived = _truthy(request.args.get("archived"))
        email = (request.args.get("email") or "").strip().lower()
        owners = sorted(self.store.table("owners").values(), key=lambda o: int(o["id"]))
        matching = [
            o
            for o in owners
            if int(o["id"]) > after
            and bool(o.get("archived")) == archived
            and (not email or str(o.get("email", "")).lower() == email)
        ]
        page = matching[:limit]
        body: dict[str, Any] = {"results": [self._owner_json(o) for o in page]}
        if len(matching) > limit:
            cursor = str(page[-1]["id"])
            body["paging"] = {
                "next": {"after": cursor, "link": f"{request.host_url}crm/v3/owners/?after={cursor}"}
            }
        return json_response(body)

    @_guarded
    def on_owner(self, request: Request, *, user: str, owner_id: str) -> Response:
        by_user_id = (request.args.get("idProperty") or "id").lower() == "userid"
        archived = _truthy(request.args.get("archived"))
        for owner in self.store.table("owners").values():
            key = str(owner.get("userId")) if by_user_id else str(owner["id"])
            if key == owner_id and bool(owner.get("archived")) == archived:
                return json_response(self._owner_json(owner))
        raise Rejected(
            json_response(
                self._error_body(
                    f"Owner {owner_id} not found", "OBJECT_NOT_FOUND", context={"id": [owner_id]}
                ),
                404,
            )
        )

    # -------------------------------------------------------------------------------------- properties

    def _custom_names(self, otype: str) -> set[str]:
        syncd = (*SYNCD_HS_CUSTOM, *SYNCD_HS_COMPANY_CUSTOM, *SYNCD_HS_CONTACT_CUSTOM)
        standard = {f.name for f in HUBSPOT_OBJECTS[otype].fields} - {f.name for f in syncd}
        return {f.name for f in self._spec(otype).fields if f.name not in standard}

    def _property_json(self, otype: str, spec: FieldSpec, custom: bool) -> dict[str, Any]:
        kinds = {
            "int": ("number", "number"),
            "double": ("number", "number"),
            "currency": ("number", "number"),
            "boolean": ("bool", "booleancheckbox"),
            "date": ("date", "date"),
            "datetime": ("datetime", "date"),
            "textarea": ("string", "textarea"),
            "phone": ("string", "phonenumber"),
            "picklist": ("enumeration", "select"),
        }
        type_, field_type = kinds.get(spec.type, ("string", "text"))
        options = [
            {
                "label": v.replace("qualifiedlead", " qualified lead").replace("_", " ").capitalize(),
                "value": v,
                "displayOrder": i,
                "hidden": False,
            }
            for i, v in enumerate(spec.picklist)
        ]
        body = {
            "name": spec.name,
            "label": spec.name.replace("_", " ").capitalize(),
            "type": type_,
            "fieldType": field_type,
            "description": "",
            "groupName": f"{SINGULAR[otype]}information",
            "options": options,
            "displayOrder": -1,
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": spec.unique,
            "hidden": False,
            "hubspotDefined": not custom,
            "formField": not spec.readonly,
            "modificationMetadata": {
                "archivable": custom,
                "readOnlyDefinition": not custom,
                "readOnlyValue": spec.readonly,
            },
            "createdAt": "2020-01-01T00:00:00.000Z",
            "updatedAt": "2020-01-01T00:00:00.000Z",
            "archived": False,
        }
        return account_teams.owner_property_json(spec, body)

    @_guarded
    def on_properties(self, request: Request, *, user: str, objtype: str) -> Response:
        otype = self._otype(objtype)
        custom = self._custom_names(otype)
        return json_response(
            {"results": [self._property_json(otype, f, f.name in custom) for f in self._spec(otype).fields]}
        )

    @_guarded
    def on_property(self, request: Request, *, user: str, objtype: str, name: str) -> Response:
        otype = self._otype(objtype)
        spec = self._field(otype, name)
        if spec is None:
            raise Rejected(
                json_response(
                    self._error_body(f"Unable to find property {name} for {otype}", "OBJECT_NOT_FOUND"), 404
                )
            )
        return json_response(self._property_json(otype, spec, name in self._custom_names(otype)))

    # ------------------------------------------------------------------------------------ associations

    def _pair(self, a_type: str, b_type: str) -> bool:
        """True when (a_type, b_type) is stored as from=a; raises for unsupported pairs."""
        if (a_type, b_type) not in ASSOCIATION_TYPES:
            raise self._bad_request(
                f"Associations between {a_type} and {b_type} are not supported by the sandbox "
                "(contacts<->companies and deals<->companies are)"
            )
        return b_type == "companies"

    def _assoc_index(self) -> dict[tuple[str, str, str], dict[str, str]]:
        """(type, id, other type) -> {other id: stored association id}."""
        count = self.store.count("associations")
        if self._assoc is None or self._assoc[0] != count:
            index: dict[tuple[str, str, str], dict[str, str]] = {}
            for rec in self.store.table("associations").values():
                ft, fi, tt, ti = rec["from_type"], str(rec["from_id"]), rec["to_type"], str(rec["to_id"])
                index.setdefault((ft, fi, tt), {})[ti] = rec["id"]
                index.setdefault((tt, ti, ft), {})[fi] = rec["id"]
            self._assoc = [count, index]
        return self._assoc[1]

    def _assoc_types(self, stored_type: int, forward: bool) -> list[dict[str, Any]]:
        type_id = stored_type if forward else INVERSE_TYPE.get(stored_type, stored_type)
        out = []
        if type_id in PRIMARY_TYPES:
            out.append({"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": "Primary"})
            # A primary association is also an unlabeled one: HubSpot lists both.
            unlabeled = {1: 279, 2: 280, 5: 341, 6: 342}[type_id]
            out.append({"category": "HUBSPOT_DEFINED", "typeId": unlabeled, "label": None})
        else:
            out.append({"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None})
        return out

    def _associated(self, otype: str, object_id: str, to_type: str) -> list[dict[str, Any]]:
        forward = self._pair(otype, to_type)
        links = self._assoc_index().get((otype, object_id, to_type), {})
        table = self.store.table("associations")
        out = []
        for other_id in sorted(links, key=int):
            rec = table.get(links[other_id])
            if rec is not None:
                out.append(
                    {
                        "toObjectId": int(other_id),
                        "associationTypes": self._assoc_types(int(rec["type_id"]), forward),
                    }
                )
        return out

    def _stored_type(self, a_type: str, b_type: str, type_id: int | None) -> int:
        """The type id to store (from the contacts/deals side) for a requested type id from a's side."""
        unlabeled, primary = ASSOCIATION_TYPES[(a_type, b_type)]
        if type_id is None:
            type_id = unlabeled
        if type_id not in (unlabeled, primary):
            raise InputFailed(
                400,
                "VALIDATION_ERROR",
                f"association type {type_id} is not valid from {a_type} to {b_type} "
                f"(use {unlabeled} or {primary})",
            )
        return type_id if b_type == "companies" else INVERSE_TYPE[type_id]

    def _require(self, otype: str, object_id: str) -> None:
        rec = self.store.get(otype, object_id)
        if rec is None or rec.get("archived"):
            raise InputFailed(
                404,
                "OBJECT_NOT_FOUND",
                f"No {SINGULAR[otype]} with ID {object_id} exists",
                context={"id": [object_id]},
            )

    def _associate(self, a_type: str, a_id: str, b_type: str, b_id: str, type_id: int | None) -> int:
        """Create (or upgrade to primary) the association; returns the stored type id. Raises InputFailed."""
        forward = self._pair(a_type, b_type)
        stored = self._stored_type(a_type, b_type, type_id)
        self._require(a_type, a_id)
        self._require(b_type, b_id)
        from_type, from_id, to_type, to_id = (
            (a_type, a_id, b_type, b_id) if forward else (b_type, b_id, a_type, a_id)
        )
        assoc_id = f"{from_type}:{from_id}:{to_type}:{to_id}"
        existing = self.store.get("associations", assoc_id)
        if existing is not None and (
            int(existing["type_id"]) in PRIMARY_TYPES or stored not in PRIMARY_TYPES
        ):
            return int(existing["type_id"])
        index = self._assoc_index()
        if stored in PRIMARY_TYPES:
            # One primary company per contact or deal: a new primary demotes the old one.
            for other_id, other_assoc in index.get((from_type, from_id, to_type), {}).items():
                other = self.store.get("associations", other_assoc)
                if other_id != to_id and other is not None and int(other["type_id"]) in PRIMARY_TYPES:
                    demoted = ASSOCIATION_TYPES[(from_type, to_type)][0]
                    self.store.put("associations", {**other, "type_id": demoted})
        rec = {
            "id": assoc_id,
            "from_type": from_type,
            "from_id": from_id,
            "to_type": to_type,
            "to_id": to_id,
            "type_id": stored,
        }
        self.store.put("associations", rec)
        index.setdefault((from_type, from_id, to_type), {})[to_id] = assoc_id
        index.setdefault((to_type, to_id, from_type), {})[from_id] = assoc_id
        if self._assoc is not None:
            self._assoc[0] = self.store.count("associations")
        return stored

    def _dissociate(self, a_type: str, a_id: str, b_type: str, b_id: str) -> None:
        forward = self._pair(a_type, b_type)
        from_type, from_id, to_type, to_id = (
            (a_type, a_id, b_type, b_id) if forward else (b_type, b_id, a_type, a_id)
        )
        assoc_id = f"{from_type}:{from_id}:{to_type}:{to_id}"
        if self.store.get("associations", assoc_id) is None:
            return
        self.store.remove("associations", assoc_id)
        index = self._assoc_index() if self._assoc is None else self._assoc[1]
        index.get((from_type, from_id, to_type), {}).pop(to_id, None)
        index.get((to_type, to_id, from_type), {}).pop(from_id, None)
        if self._assoc is not None:
            self._assoc[0] = self.store.count("associations")

    def _parse_create_associations(self, otype: str, raw: Any) -> list[tuple[str, str, int]]:
        """The ``associations`` of an object create: [(to type, to id, type id from this side)]."""
        if not raw:
            return []
        if not isinstance(raw, list):
            raise InputFailed(400, "VALIDATION_ERROR", "associations: expected a list")
        out = []
        for item in raw:
            to_id = str(((item or {}).get("to") or {}).get("id", ""))
            for spec in (item or {}).get("types") or []:
                type_id = int(spec.get("associationTypeId", 0))
                to_type = next(
                    (b for (a, b), ids in ASSOCIATION_TYPES.items() if a == otype and type_id in ids), None
                )
                if to_type is None:
                    raise InputFailed(
                        400, "VALIDATION_ERROR", f"association type {type_id} is not valid from {otype}"
                    )
                self._require(to_type, to_id)
                out.append((to_type, to_id, type_id))
        return out

    def _labels_pair(self, a_type: str, a_id: str, b_type: str, b_id: str, stored: int) -> dict[str, Any]:
        forward = b_type == "companies"
        labels = [t["label"] for t in self._assoc_types(stored, forward) if t["label"]]
        return {
            "fromObjectTypeId": OBJECT_TYPE_IDS[a_type],
            "fromObjectId": int(a_id),
            "toObjectTypeId": OBJECT_TYPE_IDS[b_type],
            "toObjectId": int(b_id),
            "labels": labels,
        }

    def _default_pair(self, a_type: str, a_id: str, b_type: str, b_id: str) -> list[dict[str, Any]]:
        return [
            {
                "from": {"id": a_id},
                "to": {"id": b_id},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": ASSOCIATION_TYPES[(a_type, b_type)][0],
                },
            },
            {
                "from": {"id": b_id},
                "to": {"id": a_id},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": ASSOCIATION_TYPES[(b_type, a_type)][0],
                },
            },
        ]

    @_guarded
    def on_assoc_list(
        self, request: Request, *, user: str, objtype: str, object_id: str, totype: str
    ) -> Response:
        otype, to_type = self._otype(objtype), self._otype(totype)
        limit = min(
            max(self._int_arg(request.args.get("limit"), "limit", ASSOCIATIONS_LIMIT), 1), ASSOCIATIONS_LIMIT
        )
        after = self._int_arg(request.args.get("after"), "after", 0)
        found = self._associated(otype, object_id, to_type)
        body: dict[str, Any] = {"results": found[after : after + limit]}
        if after + limit < len(found):
            body["paging"] = {"next": {"after": str(after + limit), "link": None}}
        return json_response(body)

    @_guarded
    def on_assoc_create_default(
        self, request: Request, *, user: str, objtype: str, object_id: str, totype: str, to_id: str
    ) -> Response:
        otype, to_type = self._otype(objtype), self._otype(totype)
        started = iso_ms(int(self.clock() * 1000))
        try:
            self._associate(otype, object_id, to_type, to_id, None)
        except InputFailed as failure:
            return self._fail(failure)
        return self._batch_response(200, self._default_pair(otype, object_id, to_type, to_id), [], started)

    @_guarded
    def on_assoc_create(
        self, request: Request, *, user: str, objtype: str, object_id: str, totype: str, to_id: str
    ) -> Response:
        otype, to_type = self._otype(objtype), self._otype(totype)
        specs = request.get_json(silent=True)
        if not isinstance(specs, list) or not specs:
            raise self._bad_request("Expected a list of {associationCategory, associationTypeId}")
        try:
            stored = 0
            for spec in specs:
                stored = self._associate(
                    otype, object_id, to_type, to_id, int(spec.get("associationTypeId", 0))
                )
        except InputFailed as failure:
            return self._fail(failure)
        return json_response(self._labels_pair(otype, object_id, to_type, to_id, stored), 201)

    @_guarded
    def on_assoc_archive(
        self, request: Request, *, user: str, objtype: str, object_id: str, totype: str, to_id: str
    ) -> Response:
        self._dissociate(self._otype(objtype), object_id, self._otype(totype), to_id)
        return Response(status=204)

    @_guarded
    def on_assoc_batch_read(self, request: Request, *, user: str, objtype: str, totype: str) -> Response:
        otype, to_type = self._otype(objtype), self._otype(totype)
        started = iso_ms(int(self.clock() * 1000))
        inputs = self._inputs(self._json(request), ASSOC_READ_LIMIT)
        results, errors = [], []
        for item in inputs:
            object_id = str(item.get("id", ""))
            found = self._associated(otype, object_id, to_type)
            if found:
                results.append({"from": {"id": object_id}, "to": found})
            else:
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                        "message": f"No {SINGULAR[to_type]} is associated with {SINGULAR[otype]} {object_id}.",
                        "context": {"fromObjectId": [object_id]},
                        "errors": [],
                        "links": {},
                    }
                )
        return self._batch_response(200, results, errors, started)

    def _assoc_batch_inputs(self, request: Request) -> list[tuple[dict[str, Any], str, str]]:
        out = []
        for item in self._inputs(self._json(request)):
            from_id = str((item.get("from") or {}).get("id", ""))
            to_id = str((item.get("to") or {}).get("id", ""))
            out.append((item, from_id, to_id))
        return out

    @_guarded
    def on_assoc_batch_create(self, request: Request, *, user: str, objtype: str, totype: str) -> Response:
        otype, to_type = self._otype(objtype), self._otype(totype)
        self._pair(otype, to_type)
        started = iso_ms(int(self.clock() * 1000))
        results, errors = [], []
        for index, (item, from_id, to_id) in enumerate(self._assoc_batch_inputs(request)):
            try:
                types = item.get("types") or [{}]
                stored = 0
                for spec in types:
                    raw = spec.get("associationTypeId")
                    stored = self._associate(
                        otype, from_id, to_type, to_id, None if raw is None else int(raw)
                    )
            except InputFailed as failure:
                errors.append(
                    self._batch_error(
                        failure, {"index": [str(index)], "fromObjectId": [from_id], "toObjectId": [to_id]}
                    )
                )
                continue
            results.append(self._labels_pair(otype, from_id, to_type, to_id, stored))
        return self._batch_response(201, results, errors, started)

    @_guarded
    def on_assoc_batch_default(self, request: Request, *, user: str, objtype: str, totype: str) -> Response:
        otype, to_type = self._otype(objtype), self._otype(totype)
        self._pair(otype, to_type)
        started = iso_ms(int(self.clock() * 1000))
        results, errors = [], []
        for index, (_item, from_id, to_id) in enumerate(self._assoc_batch_inputs(request)):
            try:
                self._associate(otype, from_id, to_type, to_id, None)
            except InputFailed as failure:
                errors.append(
                    self._batch_error(
                        failure, {"index": [str(index)], "fromObjectId": [from_id], "toObjectId": [to_id]}
                    )
                )
                continue
            results.extend(self._default_pair(otype, from_id, to_type, to_id))
        # The client reads this endpoint's 200 only; errors travel in its body.
        response = self._batch_response(200, results, errors, started)
        response.status_code = 200
        return response

    @_guarded
    def on_assoc_batch_archive(self, request: Request, *, user: str, objtype: str, totype: str) -> Response:
        otype, to_type = self._otype(objtype), self._otype(totype)
        for item in self._inputs(self._json(request)):
            from_id = str((item.get("from") or {}).get("id", ""))
            for target in item.get("to") or []:
                self._dissociate(otype, from_id, to_type, str((target or {}).get("id", "")))
        return Response(status=204)


# ------------------------------------------------------------------------------------------------ helpers


def _source(who: str | None) -> dict[str, Any]:
    """sourceType, sourceId, sourceLabel and updatedByUserId of a kept version's writer."""
    if who is None:
        source_type, source_id, label = APP_SOURCE
        return {
            "sourceType": source_type,
            "sourceId": source_id,
            "sourceLabel": label,
            "updatedByUserId": None,
        }
    if who == "import":
        return {"sourceType": "IMPORT", "sourceId": None, "sourceLabel": None, "updatedByUserId": None}
    return {
        "sourceType": "CRM_UI",
        "sourceId": f"userId:{who}",
        "sourceLabel": None,
        "updatedByUserId": int(who) if who.isdigit() else None,
    }


def _id_list(value: Any) -> list[str]:
    return [part for part in str(value or "").split(";") if part]


def _gone(rec: Record) -> bool:
    """Archived, or merged into another record: no longer holds its unique values."""
    return bool(rec.get("archived") or rec.get("mergedInto"))


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
