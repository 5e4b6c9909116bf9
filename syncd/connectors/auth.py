"""Salesforce login: OAuth 2.0 token requests to ``[salesforce] login_url``, handing the session to
simple-salesforce.

Why syncd posts the token request itself: simple-salesforce's login helpers (``SalesforceLogin`` in
simple_salesforce/login.py, 1.12.10) build ``https://{domain}.salesforce.com/services/oauth2/token`` from a
domain prefix, so they reach neither an arbitrary login host (a loopback sandbox, a proxy, a login URL outside
``*.salesforce.com``) nor set the JWT audience separately; its lower-level ``token_login`` takes a full URL
but returns only the token and host, dropping ``id``, ``issued_at``, ``signature`` and ``refresh_token``. So
``request_token`` posts one form-encoded request with requests (through the connector's session: pinned CA,
timeout, request counting), checks the answer, and ``SalesforceLogin`` hands ``instance_url`` and
``access_token`` to ``simple_salesforce.Salesforce(instance_url=..., session_id=...)``, which makes every API
call. The JWT assertion is signed with PyJWT, the library simple-salesforce itself uses.

The grants, as Salesforce documents them (Salesforce Help, "Identify Your Users and Manage Access"):

- ``jwt``: "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration" -- an RS256 JWT ``{iss: consumer key,
  sub: username, aud: login URL, exp: now + 3 min}``; no secret travels.
- ``client_credentials``: "OAuth 2.0 Client Credentials Flow for Server-to-Server Integration" -- consumer key
  and secret as HTTP Basic; the connected app's run-as user; the org's My Domain login URL only.
- ``password``: "OAuth 2.0 Username-Password Flow for Special Scenarios" -- consumer key and secret, username,
  password with the security token appended. Salesforce is retiring this flow; prefer jwt.
- ``refresh_token``: "OAuth 2.0 Refresh Token Flow for Renewed Sessions" -- a refresh token from an earlier
  web-server flow; when the connected app rotates refresh tokens, the new one is kept for the next renewal
  (in memory only: prefer no rotation, or jwt, for a daemon).

Every answer but 200 becomes one syncd error line without a secret: ``{error, error_description}`` refusals
are AuthError naming what to check; 5xx, 429 and transport failures are RetriableError. A 200 whose
``signature`` does not match ``id + issued_at`` under the consumer secret (when syncd has it) is refused too:
it did not come from the org that holds the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import jwt
import requests
from simple_salesforce import Salesforce

from syncd.config import Config
from syncd.connectors.errors import transport_error
from syncd.errors import AuthError, ConfigError, FatalConnectorError, RetriableError

__all__ = [
    "TOKEN_PATH",
    "ClientCredentialsGrant",
    "Grant",
    "JwtBearerGrant",
    "OAuthToken",
    "PasswordGrant",
    "RefreshTokenGrant",
    "SalesforceLogin",
    "SessionLogin",
    "login_from_config",
    "request_token",
]

log = logging.getLogger(__name__)

TOKEN_PATH = "/services/oauth2/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The JWT Bearer Flow: "exp ... within 3 minutes".
JWT_LIFETIME = timedelta(minutes=3)
_MAX_DESCRIPTION = 200


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class OAuthToken:
    """A token response: the session to hand to simple-salesforce, and what identifies it."""

    access_token: str = field(repr=False)
    instance_url: str
    id: str = ""
    issued_at: str = ""
    refresh_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Grant(ABC):
    """One OAuth grant: the form (and headers) of its token request, and the hint when it is refused."""

    consumer_key: str = field(repr=False)

    mode: ClassVar[str] = ""
    hint: ClassVar[str] = "check the credentials in the variables salesforce.*_env name"

    @abstractmethod
    def form(self, now: datetime) -> dict[str, str]:
        """The token request's form fields for this grant at ``now``."""

    def headers(self) -> dict[str, str]:
        return {}

    @property
    def consumer_secret_value(self) -> str | None:
        """The consumer secret, when this grant has one: it signs the response's ``signature``."""
        return None

    def secrets(self) -> Iterable[str]:
        """Every secret value in this grant, to scrub from anything shown."""
        return [self.consumer_key]


@dataclass(frozen=True)
class PasswordGrant(Grant):
    """The username-password flow: the connected app's key and secret, and the user's password + token."""

    consumer_secret: str = field(default="", repr=False)
    username: str = ""
    password: str = field(default="", repr=False)
    security_token: str = field(default="", repr=False)

    mode: ClassVar[str] = "password"
    hint: ClassVar[str] = (
        "check salesforce.username and the password and security token (and that the connected app's "
        "consumer key and secret are current)"
    )

    def form(self, now: datetime) -> dict[str, str]:
        return {
            "grant_type": "password",
            "client_id": self.consumer_key,
            "client_secret": self.consumer_secret,
            "username": self.username,
            # "You must append the user's security token to their password" (Username-Password Flow).
            "password": self.password + self.security_token,
        }

    @property
    def consumer_secret_value(self) -> str | None:
        return self.consumer_secret or None

    def secrets(self) -> Iterable[str]:
        return [self.consumer_key, self.consumer_secret, self.password, self.security_token]


@dataclass(frozen=True)
class JwtBearerGrant(Grant):
    """The JWT bearer flow: an assertion signed with the key of the certificate the connected app holds."""

    username: str = ""
    private_key: bytes = field(default=b"", repr=False)
    audience: str = ""

    mode: ClassVar[str] = "jwt"
    hint: ClassVar[str] = (
        "check salesforce.username, the private key, and that the connected app holds its certificate and "
        "pre-authorizes the user"
    )

    def form(self, now: datetime) -> dict[str, str]:
        claims = {
            "iss": self.consumer_key,
            "sub": self.username,
            "aud": self.audience,
            "exp": int((now + JWT_LIFETIME).timestamp()),
        }
        try:
            assertion = jwt.encode(claims, self.private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            # The key's text is never shown: only that it is not a usable RSA private key.
            raise ConfigError(
                f"salesforce.private_key: not a PEM RSA private key ({type(exc).__name__})"
            ) from None
        return {"grant_type": JWT_BEARER, "assertion": assertion}

    def secrets(self) -> Iterable[str]:
        return [self.consumer_key]


@dataclass(frozen=True)
class ClientCredentialsGrant(Grant):
    """The client credentials flow: the connected app's key and secret; it runs as the app's run-as user."""

    consumer_secret: str = field(default="", repr=False)

    mode: ClassVar[str] = "client_credentials"
    hint: ClassVar[str] = (
        "check the consumer key and secret, that the connected app enables the client credentials flow with "
        "a run-as user, and that salesforce.login_url is the org's My Domain"
    )

    def form(self, now: datetime) -> dict[str, str]:
        return {"grant_type": "client_credentials"}

    def headers(self) -> dict[str, str]:
        # The client credentials flow accepts the key and secret as HTTP Basic (as simple-salesforce sends them).
        raw = f"{self.consumer_key}:{self.consumer_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}

    @property
    def consumer_secret_value(self) -> str | None:
        return self.consumer_secret or None

    def secrets(self) -> Iterable[str]:
        return [self.consumer_key, self.consumer_secret]


@dataclass(frozen=True)
class RefreshTokenGrant(Grant):
    """The refresh token flow: a refresh token issued earlier to the connected app (secret if required)."""

    refresh_token: str = field(default="", repr=False)
    consumer_secret: str = field(default="", repr=False)

    mode: ClassVar[str] = "refresh_token"
    hint: ClassVar[str] = (
        "the refresh token expired or was revoked: obtain a new one and set it in the variable "
        "salesforce.refresh_token_env names"
    )

    def form(self, now: datetime) -> dict[str, str]:
        form = {
            "grant_type": "refresh_token",
            "client_id": self.consumer_key,
            "refresh_token": self.refresh_token,
        }
        if self.consumer_secret:
            form["client_secret"] = self.consumer_secret
        return form

    @property
    def consumer_secret_value(self) -> str | None:
        return self.consumer_secret or None

    def secrets(self) -> Iterable[str]:
        return [self.consumer_key, self.consumer_secret, self.refresh_token]


# ---------------------------------------------------------------------------------------------- requests

_CLIENT_HINTS = {
    "invalid_client_id": "check the consumer key in the variable salesforce.consumer_key_env names",
    "invalid_client": "check the consumer secret in the variable salesforce.consumer_secret_env names",
    "invalid_client_credentials": "check the consumer secret in the variable salesforce.consumer_secret_env names",
    "unsupported_grant_type": "this login URL or connected app does not offer the flow salesforce.auth names",
    "inactive_user": "the integration user is inactive",
    "inactive_org": "the org is inactive or locked",
}


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DESCRIPTION else text[: _MAX_DESCRIPTION - 1] + "…"


def request_token(
    session: requests.Session,
    login_url: str,
    grant: Grant,
    *,
    now: Callable[[], datetime] = _utcnow,
) -> OAuthToken:
    """POST ``grant`` to ``login_url``'s token endpoint; the token, or a syncd error (never a secret)."""
    url = login_url.rstrip("/") + TOKEN_PATH
    headers = {"Accept": "application/json", **grant.headers()}
    try:
        response = session.post(url, data=grant.form(now()), headers=headers)
    except requests.RequestException as exc:
        translated = transport_error(exc, "salesforce")
        if translated is not None:
            raise translated from None
        raise FatalConnectorError(
            f"Salesforce login at {login_url} failed: {type(exc).__name__}", system="salesforce"
        ) from None
    status = response.status_code
    if status == 429 or status >= 500:
        raise RetriableError(
            f"Salesforce login at {login_url} answered {status}: try again later",
            system="salesforce",
            status=status,
            code="LOGIN_UNAVAILABLE",
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or (status != 200 and "error" not in body):
        raise FatalConnectorError(
            f"Salesforce login at {login_url} answered {status} without an OAuth response: "
            "check salesforce.login_url",
            system="salesforce",
            status=status,
        )
    if status != 200 or "error" in body:
        error = _scrub(str(body.get("error") or status), grant.secrets())
        description = _scrub(str(body.get("error_description") or ""), grant.secrets())
        hint = _CLIENT_HINTS.get(error, grant.hint)
        said = f"{error}: {description}" if description else error
        raise AuthError(
            f"Salesforce refused the {grant.mode} login at {login_url} ({said}): {hint}",
            system="salesforce",
            status=status,
            code=error,
        )
    access_token, instance_url = body.get("access_token"), body.get("instance_url")
    if not isinstance(access_token, str) or not access_token or not isinstance(instance_url, str):
        raise FatalConnectorError(
            f"Salesforce login at {login_url} answered without access_token and instance_url: "
            "check salesforce.login_url",
            system="salesforce",
        )
    identity, issued_at = str(body.get("id") or ""), str(body.get("issued_at") or "")
    secret = grant.consumer_secret_value
    signature = body.get("signature")
    if secret and isinstance(signature, str):
        expected = hmac.new(secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        try:
            given = base64.b64decode(signature, validate=True)
        except ValueError:
            given = b""
        if not hmac.compare_digest(expected, given):
            raise AuthError(
                f"Salesforce login at {login_url}: the response's signature does not match the consumer "
                "secret: check salesforce.login_url points at your org",
                system="salesforce",
                code="BAD_SIGNATURE",
            )
    refresh = body.get("refresh_token")
    return OAuthToken(
        access_token=access_token,
        instance_url=instance_url,
        id=identity,
        issued_at=issued_at,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
    )


class SalesforceLogin:
    """A client factory for the connector: logs in with ``grant`` at ``login_url`` each time it is called.

    The connector calls it on first use and again when a session expires; simple-salesforce then makes every
    API call with the token, in direct mode (``instance_url`` + ``session_id``).
    """

    renewable = True

    def __init__(
        self,
        login_url: str,
        grant: Grant,
        *,
        version: str,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.login_url = login_url
        self.grant = grant
        self.version = version
        self.now = now
        self.logins = 0
        self.last: OAuthToken | None = None

    def __call__(self, session: requests.Session) -> Salesforce:
        token = request_token(session, self.login_url, self.grant, now=self.now)
        self.logins += 1
        self.last = token
        if isinstance(self.grant, RefreshTokenGrant) and token.refresh_token:
            # Refresh token rotation: the old token is now invalid; the next renewal needs the new one.
            self.grant = RefreshTokenGrant(
                self.grant.consumer_key,
                refresh_token=token.refresh_token,
                consumer_secret=self.grant.consumer_secret,
            )
        log.info("Salesforce: logged in with the %s flow at %s", self.grant.mode, self.login_url)
        return Salesforce(
            instance_url=token.instance_url,
            session_id=token.access_token,
            session=session,
            version=self.version,
        )


class SessionLogin:
    """A client factory for a bare access token (``auth = "session"``): it cannot renew the session."""

    renewable = False

    def __init__(self, instance_url: str, access_token: str, *, version: str) -> None:
        self.instance_url = instance_url
        self._access_token = access_token
        self.version = version

    def __call__(self, session: requests.Session) -> Salesforce:
        return Salesforce(
            instance_url=self.instance_url,
            session_id=self._access_token,
            session=session,
            version=self.version,
        )


def login_from_config(
    config: Config, *, now: Callable[[], datetime] = _utcnow
) -> SalesforceLogin | SessionLogin:
    """The client factory ``config`` describes: the sandbox's pre-issued token, a bare session, or a grant."""
    sf, info = config.salesforce, config.sandbox_info

    def secret(name: str) -> str:
        return config.secret(f"salesforce.{name}").get_secret_value()

    if info is not None:
        return SessionLogin(info.instance_url, secret("access_token"), version=info.api_version)
    if sf.auth == "session":
        return SessionLogin(str(sf.instance_url), secret("access_token"), version=sf.api_version)
    grant: Grant
    if sf.auth == "jwt":
        key = (
            read_private_key(sf.private_key_file)
            if sf.private_key_file is not None
            else secret("private_key").encode()
        )
        grant = JwtBearerGrant(
            secret("consumer_key"),
            username=str(sf.username),
            private_key=key,
            audience=sf.jwt_audience or sf.login_url,
        )
    elif sf.auth == "client_credentials":
        grant = ClientCredentialsGrant(secret("consumer_key"), consumer_secret=secret("consumer_secret"))
    elif sf.auth == "password":
        grant = PasswordGrant(
            secret("consumer_key"),
            consumer_secret=secret("consumer_secret"),
            username=str(sf.username),
            password=secret("password"),
            security_token=secret("security_token"),
        )
    else:
        grant = RefreshTokenGrant(
            secret("consumer_key"),
            refresh_token=secret("refresh_token"),
            consumer_secret=secret("consumer_secret"),
        )
    return SalesforceLogin(sf.login_url, grant, version=sf.api_version, now=now)


def read_private_key(path: Path) -> bytes:
    """The JWT signing key from ``salesforce.private_key_file``; a ConfigError names the key when unreadable."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"salesforce.private_key_file: cannot read {path}: {exc.strerror or exc}") from None
