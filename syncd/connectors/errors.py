"""Third-party exceptions translated into syncd's tree, in one place.

simple-salesforce raises by status code, hubspot-api-client raises per sub-package ApiException classes,
requests and urllib3 raise their own transport errors. Here each becomes a RetriableError (429, 5xx,
timeouts, resets, Salesforce's REQUEST_LIMIT_EXCEEDED), an AuthError (credentials or session refused) or a
FatalConnectorError (anything retrying will not fix), with a one-line message that names what the user
controls and never a secret.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from simple_salesforce import exceptions as sf_exc

from syncd.errors import AuthError, ConnectorError, FatalConnectorError, RetriableError

__all__ = [
    "hubspot_error",
    "hubspot_error_code",
    "parse_retry_after",
    "salesforce_error",
    "transport_error",
]

_MAX_DETAIL = 300


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or bad."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it, outermost first (requests wraps urllib3 wraps socket errors)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen) or len(seen) > 20:
            continue
        seen.append(item)
        linked = [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
        todo.extend(e for e in linked if isinstance(e, BaseException))
    return seen


_DEFAULT_PORTS = {"https": 443, "http": 80}


def _endpoint(chain: list[BaseException]) -> str | None:
    """``host:port`` of the connection that failed, from whichever layer of the chain knows it."""
    for item in chain:
        request = getattr(item, "request", None)
        url = getattr(request, "url", None)
        if isinstance(url, str) and url:
            parts = urlsplit(url)
            if parts.hostname:
                return f"{parts.hostname}:{parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)}"
        # urllib3: NewConnectionError carries the connection, the pool errors (timeouts, retries) the pool.
        for holder in (item.__dict__.get("conn"), item.__dict__.get("pool")):
            host, port = getattr(holder, "host", None), getattr(holder, "port", None)
            if host:
                return f"{host}:{port}" if port else str(host)
    # A client that drops urllib3's wrapper (hubspot-api-client on a TLS failure) leaves only the frames
    # of the connection that failed.
    for item in chain:
        tb = item.__traceback__
        while tb is not None:
            holder = tb.tb_frame.f_locals.get("self")
            if isinstance(
                holder, urllib3.connection.HTTPConnection | urllib3.connectionpool.HTTPConnectionPool
            ):
                return f"{holder.host}:{holder.port}"
            tb = tb.tb_next
    return None


def _what_failed(chain: list[BaseException]) -> str | None:
    """In words: refused, reset, or the name not found; None when nothing says which."""
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, urllib3.exceptions.NameResolutionError | socket.gaierror):
            return "host name not found"
        if isinstance(item, ConnectionResetError | ConnectionAbortedError | http.client.RemoteDisconnected):
            return "connection reset"
    text = " ".join(str(item) for item in chain).lower()
    if "refused" in text:
        return "connection refused"
    if "reset" in text or "aborted" in text or "disconnected" in text:
        return "connection reset"
    return None


def transport_error(exc: BaseException, system: str, *, ca_file: object = None) -> ConnectorError | None:
    """A refused, reset or timed-out connection, or a TLS failure, from requests or urllib3 (possibly
    wrapped by a client library); None for anything else. The message names the host and port."""
    status = getattr(exc, "status", None)
    if isinstance(exc, sf_exc.SalesforceError) or (isinstance(status, int) and status > 0):
        return None  # an HTTP answer: whatever it was raised beside is not what failed
    label = _label(system)
    chain = _chain(exc)
    where = _endpoint(chain)
    at = f" {where}" if where else ""
    if any(
        isinstance(e, requests.exceptions.SSLError | urllib3.exceptions.SSLError | ssl.SSLError)
        for e in chain
    ):
        hint = (
            f"check {system}.ca_file ({ca_file})"
            if ca_file
            else f"set {system}.ca_file if it uses a private CA"
        )
        return FatalConnectorError(
            f"{label}: TLS handshake with{at or ' the server'} failed (certificate not trusted, or not a TLS "
            f"server): {hint}",
            system=system,
            code="TLS",
        )
    what = _what_failed(chain)
    # urllib3's NewConnectionError is a kind of ConnectTimeoutError: a refused connection is no timeout.
    if what is None and any(
        isinstance(e, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError)
        for e in chain
    ):
        return RetriableError(
            f"{label}: request to{at or ' the server'} timed out", system=system, code="TIMEOUT"
        )
    transport = (
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.NewConnectionError,
        urllib3.exceptions.MaxRetryError,
        http.client.RemoteDisconnected,
        ConnectionError,
        socket.gaierror,
    )
    if any(isinstance(e, transport) for e in chain):
        return RetriableError(
            f"{label}: cannot reach{at or ' the server'}: {what or 'connection failed'}",
            system=system,
            code="CONNECTION",
        )
    return None


def _label(system: str) -> str:
    return {"salesforce": "Salesforce", "hubspot": "HubSpot"}.get(system, system)


# ---------------------------------------------------------------------------------------------- Salesforce


def _sf_errors(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return [e for e in content if isinstance(e, dict)]
    if isinstance(content, dict):
        return [content]
    return []


def salesforce_error(
    exc: BaseException, *, headers: Mapping[str, str] | None = None, refreshable: bool = False
) -> ConnectorError:
    """Translate an exception from a simple-salesforce call (or its transport) into syncd's tree."""
    system = "salesforce"
    transport = transport_error(exc, system)
    if transport is not None:
        return transport
    if isinstance(exc, sf_exc.SalesforceAuthenticationFailed):
        return AuthError(
            f"Salesforce refused the login ({exc.code}): check salesforce.username and the credentials in the "
            "variables salesforce.*_env name",
            system=system,
            code=str(exc.code),
        )
    if not isinstance(exc, sf_exc.SalesforceError):
        return FatalConnectorError(f"Salesforce: unexpected error: {type(exc).__name__}", system=system)
    errors = _sf_errors(exc.content)
    code = str(errors[0].get("errorCode", "")) if errors else ""
    message = _short(str(errors[0].get("message", ""))) if errors else _short(str(exc.content))
    status = exc.status
    retry_after = parse_retry_after((headers or {}).get("Retry-After"))
    if isinstance(exc, sf_exc.SalesforceExpiredSession) or status == 401:
        hint = (
            "the session could not be renewed"
            if refreshable
            else "set a fresh token in the variable salesforce.access_token_env names"
        )
        return AuthError(
            f"Salesforce rejected the session ({code or status}): {hint}",
            system=system,
            status=status,
            code=code,
        )
    if code == "REQUEST_LIMIT_EXCEEDED":
        return RetriableError(
            f"Salesforce: the org's API request limit is exceeded: {message}",
            system=system,
            status=status,
            code=code,
            retry_after=retry_after,
        )
    if status in (408, 429) or status >= 500:
        return RetriableError(
            f"Salesforce answered {status} {code}: {message}".rstrip(": "),
            system=system,
            status=status,
            code=code or "SERVER_ERROR",
            retry_after=retry_after,
        )
    if status == 403:
        return FatalConnectorError(
            f"Salesforce refused the request ({code}): {message}: check the integration user's permissions",
            system=system,
            status=status,
            code=code,
        )
    return FatalConnectorError(
        f"Salesforce: {code or status}: {message}", system=system, status=status, code=code
    )


# ------------------------------------------------------------------------------------------------- HubSpot


def _hs_body(exc: Any) -> dict[str, Any]:
    raw = getattr(exc, "body", None)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, str) and raw:
        try:
            data = json.loads(raw)
        except ValueError:
            return {"message": raw}
        return data if isinstance(data, dict) else {}
    return {}


def hubspot_error_code(item: Mapping[str, Any]) -> str:
    """The most specific code of a HubSpot error body or batch error: a detail's code, else the category."""
    for detail in item.get("errors") or ():
        if isinstance(detail, dict) and detail.get("code"):
            return str(detail["code"])
    return str(item.get("subCategory") or item.get("category") or item.get("errorType") or "")


def hubspot_error(exc: BaseException) -> ConnectorError:
    """Translate an exception from a hubspot-api-client call (or its transport) into syncd's tree."""
    system = "hubspot"
    transport = transport_error(exc, system)
    if transport is not None:
        return transport
    status = getattr(exc, "status", None)
    if not isinstance(status, int):
        return FatalConnectorError(f"HubSpot: unexpected error: {type(exc).__name__}", system=system)
    body = _hs_body(exc)
    headers = getattr(exc, "headers", None) or {}
    code = hubspot_error_code(body)
    message = _short(str(body.get("message", getattr(exc, "reason", "") or "")))
    if status == 0:
        # The client reports TLS failures as status 0.
        return FatalConnectorError(
            f"HubSpot: TLS or connection setup failed: check hubspot.host and hubspot.ca_file ({message})",
            system=system,
            code="TLS",
        )
    if status == 401:
        return AuthError(
            "HubSpot rejected the access token: set a valid private-app token in the variable hubspot.token_env names",
            system=system,
            status=status,
            code=code,
        )
    if status == 403:
        return FatalConnectorError(
            f"HubSpot refused the request ({code}): {message}: check the private app's scopes",
            system=system,
            status=status,
            code=code,
        )
    if status == 429 or status >= 500:
        return RetriableError(
            f"HubSpot answered {status} {code}: {message}".rstrip(": "),
            system=system,
            status=status,
            code=code or ("RATE_LIMIT" if status == 429 else "SERVER_ERROR"),
            retry_after=parse_retry_after(_header(headers, "Retry-After")),
        )
    return FatalConnectorError(
        f"HubSpot: {code or status}: {message}", system=system, status=status, code=code
    )


def _header(headers: Any, name: str) -> str | None:
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    if value is None and hasattr(headers, "items"):
        lower = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == lower), None)
    return None if value is None else str(value)
