"""Salesforce's OAuth 2.0 token endpoint and session timeout, for the Salesforce sandbox.

``POST /services/oauth2/token`` (no bearer token; form-encoded) answers four grants for the integration user
through one connected app, whose consumer key and secret, the user's password and security token, and a
refresh token are made once per store and kept in it:

    grant_type=password               client_id, client_secret, username, password + security token
    grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
                                      assertion: an RS256 JWT {iss: consumer key, sub: username, aud, exp}
                                      signed with the key of the connected app's certificate
    grant_type=client_credentials     consumer key and secret as HTTP Basic or client_id/client_secret;
                                      the connected app's run-as user is the integration user
    grant_type=refresh_token          refresh_token, client_id, client_secret (optional)

Success is 200 ``{access_token, instance_url, id, token_type, issued_at, signature, scope}``; refusals are
400 ``{error, error_description}`` with Salesforce's own codes and descriptions. Sources, by flow (Salesforce
Help, "Identify Your Users and Manage Access"): "OAuth 2.0 Username-Password Flow for Special Scenarios",
"OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration", "OAuth 2.0 Client Credentials Flow for
Server-to-Server Integration", "OAuth 2.0 Refresh Token Flow for Renewed Sessions", "OAuth 2.0 Authorization
Errors"; REST API Developer Guide (v44.0 and later), "Understanding the Username-Password OAuth Authentication
Flow" for the response fields.

Access tokens issued here time out like Salesforce sessions: after ``session_seconds`` without activity
(Salesforce's default session timeout is 2 hours), and activity only extends a session in the second half of
its timeout (Salesforce Help, "Session Security Settings": "The last active session time value isn't updated
until halfway through the timeout period"). A timed-out token is refused like any unknown one: 401
``[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]``. The sandbox's
pre-issued tokens (``/__sandbox/tokens``, the info file's ``tokens``) are not OAuth sessions and do not
time out.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from werkzeug.wrappers import Request, Response

from syncd.sandbox.base import json_response
from syncd.sandbox.ids import sf_id
from syncd.sandbox.store import Store

TOKEN_PATH = "/services/oauth2/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Salesforce's default session timeout (Setup > Session Settings > Timeout Value).
DEFAULT_SESSION_SECONDS = 2 * 60 * 60
# The production login host: a JWT for a production org may name it as its audience (JWT Bearer Flow,
# "aud"); the sandbox also accepts its own URL, as a My Domain login URL.
PRODUCTION_LOGIN_URL = "https://login.salesforce.com"
META_KEY = "sf_oauth"
ORG_ID_18 = sf_id("00D", 1)
ORG_ID = ORG_ID_18[:15]  # session ids carry the 15-character org id: 00Dxx0000000001!AQ...
KEY_FILE = "connected_app_key.pem"
CERT_FILE = "connected_app_cert.pem"

_ALNUM = string.ascii_letters + string.digits
_TOKEN_CHARS = _ALNUM + "._"


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class ConnectedApp:
    """The integration user's connected app and login secrets, as an admin would hand them to syncd."""

    consumer_key: str
    consumer_secret: str
    username: str
    password: str
    security_token: str
    refresh_token: str
    certificate_pem: str = ""

    @classmethod
    def new(cls, username: str) -> ConnectedApp:
        """Fresh random credentials in Salesforce's shapes (consumer keys start 3MVG9, refresh tokens 5Aep)."""
        return cls(
            consumer_key="3MVG9" + _random(_TOKEN_CHARS, 80),
            consumer_secret=secrets.token_hex(32).upper(),
            username=username,
            password=_random(_ALNUM, 20),
            security_token=_random(_ALNUM, 24),
            refresh_token="5Aep" + _random(_TOKEN_CHARS, 83),
        )


# ------------------------------------------------------------------------------------------ signing key


@functools.cache
def _process_key() -> rsa.RSAPrivateKey:
    # One RSA key per process: generating one costs ~60 ms, and test fixtures start hundreds of sandboxes.
    # Each sandbox still gets its own certificate and key file.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_signing_key(directory: Path, *, now: datetime | None = None) -> tuple[Path, str]:
    """Write the connected app's private key (mode 0600) and certificate to ``directory``.

    Returns the key file's path and the certificate (PEM) to install in the app: the JWT Bearer Flow verifies
    assertions against the certificate uploaded to the connected app ("Use digital signatures").
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = _process_key()
    start = (now or datetime.now(UTC)) - timedelta(days=1)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncd sandbox connected app")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_file = directory / KEY_FILE
    write_private(key_file, key_pem)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    (directory / CERT_FILE).write_text(cert_pem, encoding="ascii")
    return key_file, cert_pem


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (mode 0600 from the start, not chmod-ed after)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


# ------------------------------------------------------------------------------------------ sessions


@dataclass
class _Session:
    user: str
    last_active: float


class OAuthError(Exception):
    """A refusal of the token endpoint: ``{error, error_description}`` with an HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class SalesforceOAuth:
    """The token endpoint and the table of OAuth sessions of one Salesforce sandbox server."""

    def __init__(
        self,
        store: Store,
        *,
        integration_user_id: str,
        session_seconds: float = DEFAULT_SESSION_SECONDS,
        clock: Callable[[], float],
    ) -> None:
        if session_seconds <= 0:
            raise ValueError(f"session_seconds must be more than 0, not {session_seconds:g}")
        self.store = store
        self.integration_user_id = integration_user_id
        self.session_seconds = float(session_seconds)
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        with store.lock:
            saved = store.meta(META_KEY, None)
            if saved:
                self.app = ConnectedApp(**saved)
            else:
                user = store.get("User", integration_user_id) or {}
                self.app = ConnectedApp.new(str(user.get("Username") or ""))
                store.set_meta(META_KEY, asdict(self.app))

    def install_certificate(self, certificate_pem: str) -> None:
        """Upload a certificate to the connected app (it replaces the previous one)."""
        self.app = replace(self.app, certificate_pem=certificate_pem)
        with self.store.lock:
            self.store.set_meta(META_KEY, asdict(self.app))

    # -- sessions

    def issue(self, user: str) -> str:
        """A new access token for ``user`` (a token user key), shaped like a Salesforce session id."""
        token = f"{ORG_ID}!AQ{_random(_TOKEN_CHARS, 94)}"
        with self._lock:
            self._sessions[token] = _Session(user, self.clock())
        return token

    def user_for_token(self, token: str) -> str | None:
        """The user of a live OAuth session; None when unknown or timed out (timing out removes it)."""
        now = self.clock()
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            idle = now - session.last_active
            if idle > self.session_seconds:
                del self._sessions[token]
                return None
            # Activity counts only in the second half of the timeout (Salesforce Help, Session Security
            # Settings): a call early in a session does not push its end further away.
            if idle >= self.session_seconds / 2:
                session.last_active = now
            return session.user

    def expire_all(self) -> None:
        """End every OAuth session, as an admin's "Revoke" in Session Management does."""
        with self._lock:
            self._sessions.clear()

    # -- the endpoint

    def token(self, request: Request, login_url: str) -> Response:
        """``/services/oauth2/token``: a token response, or a documented refusal."""
        try:
            if request.method != "POST":
                # OAuth 2.0 Authorization Errors: invalid_request, "must use HTTP POST".
                raise OAuthError("invalid_request", "must use HTTP POST")
            form = request.form
            grant = form.get("grant_type", "")
            if grant == "password":
                user = self._password(form)
            elif grant == JWT_BEARER:
                user = self._jwt_bearer(form, login_url)
            elif grant == "client_credentials":
                user = self._client_credentials(request)
            elif grant == "refresh_token":
                user = self._refresh(form)
            else:
                raise OAuthError("unsupported_grant_type", "grant type not supported")
        except OAuthError as exc:
            return json_response(
                {"error": exc.error, "error_description": exc.description},
                status=exc.status,
                headers={"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"},
            )
        return json_response(
            self._grant(user, login_url, scope="api" if grant != JWT_BEARER else "api refresh_token"),
            headers={"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"},
        )

    def _grant(self, user: str, login_url: str, *, scope: str) -> dict[str, Any]:
        issued_at = str(int(self.clock() * 1000))
        identity = f"{login_url}/id/{ORG_ID_18}/{self.integration_user_id}"
        # "signature: Base64-encoded HMAC-SHA256 signature signed with the client_secret (private key)
        # containing the concatenated ID and issued_at value" (the Username-Password Flow's response).
        digest = hmac.new(
            self.app.consumer_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        ).digest()
        return {
            "access_token": self.issue(user),
            "instance_url": login_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(digest).decode("ascii"),
            "scope": scope,
        }

    def _client(self, client_id: str | None, client_secret: str | None, *, secret_required: bool) -> None:
        # Client checks come before the user's (a wrong key fails the same way whatever the password).
        if not client_id or not hmac.compare_digest(client_id, self.app.consumer_key):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if client_secret is None and not secret_required:
            return
        if not client_secret or not hmac.compare_digest(client_secret, self.app.consumer_secret):
            raise OAuthError("invalid_client", "invalid client credentials")

    def _integration_user(self) -> str:
        user = self.store.get("User", self.integration_user_id) or {}
        if not user.get("IsActive"):
            # restforce#303: {"error": "invalid_grant", "error_description": "inactive user"}.
            raise OAuthError("invalid_grant", "inactive user")
        return "integration"

    def _password(self, form: Any) -> str:
        self._client(form.get("client_id"), form.get("client_secret"), secret_required=True)
        username = str(form.get("username") or "")
        password = str(form.get("password") or "")
        # The password is the user's password with the security token appended (Username-Password Flow).
        expected = self.app.password + self.app.security_token
        if username.lower() != self.app.username.lower() or not hmac.compare_digest(password, expected):
            # jsforce#482, nforce#194: {"error": "invalid_grant", "error_description": "authentication failure"}.
            raise OAuthError("invalid_grant", "authentication failure")
        return self._integration_user()

    def _client_credentials(self, request: Request) -> str:
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            client_id, client_secret = auth.username, auth.password
        else:
            client_id, client_secret = request.form.get("client_id"), request.form.get("client_secret")
        self._client(client_id, client_secret, secret_required=True)
        # The connected app's "Run As" user is the integration user.
        return self._integration_user()

    def _refresh(self, form: Any) -> str:
        self._client(form.get("client_id"), form.get("client_secret"), secret_required=False)
        token = str(form.get("refresh_token") or "")
        if not hmac.compare_digest(token, self.app.refresh_token):
            # OAuth 2.0 Authorization Errors, refresh token flow example.
            raise OAuthError("invalid_grant", "expired access/refresh token")
        return self._integration_user()

    def _jwt_bearer(self, form: Any, login_url: str) -> str:
        assertion = str(form.get("assertion") or "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if header.get("alg") != "RS256":
            # JWT Bearer Flow: the header must be {"alg": "RS256"}.
            raise OAuthError("invalid_grant", "invalid assertion")
        if not hmac.compare_digest(str(claims.get("iss") or ""), self.app.consumer_key):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not self.app.certificate_pem:
            raise OAuthError("invalid_grant", "invalid assertion")
        certificate = x509.load_pem_x509_certificate(self.app.certificate_pem.encode("ascii"))
        try:
            jwt.decode(
                assertion,
                certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_iss": False},
            )
        except (jwt.PyJWTError, binascii.Error, ValueError):
            # frankkessler/salesforce-laravel-oauth2-rest#68: a bad signature is "invalid assertion".
            raise OAuthError("invalid_grant", "invalid assertion") from None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(str(a).rstrip("/") in (login_url, PRODUCTION_LOGIN_URL) for a in audiences):
            # salesforce.stackexchange.com/questions/184363: {"error": "invalid_grant", "error_description":
            # "audience is invalid"}.
            raise OAuthError("invalid_grant", "audience is invalid")
        try:
            expires = float(claims.get("exp"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if expires < self.clock():
            # simple-salesforce#371, #491: an assertion past its exp is "expired authorization code".
            raise OAuthError("invalid_grant", "expired authorization code")
        # "sub", or "prn" for backward compatibility; "If both are specified, prn is used" (JWT Bearer Flow).
        subject = str(claims.get("prn") or claims.get("sub") or "")
        if subject.lower() != self.app.username.lower():
            # Only the integration user is pre-authorized for the connected app; anyone else would first have
            # to approve it (simple-salesforce's login.py warns on exactly this description).
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        return self._integration_user()

    # -- what clients need

    def credentials(self, private_key_file: Path | None) -> dict[str, Any]:
        """The info file's ``salesforce.oauth`` (secrets: the file is written with mode 0600)."""
        return {
            "consumer_key": self.app.consumer_key,
            "consumer_secret": self.app.consumer_secret,
            "username": self.app.username,
            "password": self.app.password,
            "security_token": self.app.security_token,
            "refresh_token": self.app.refresh_token,
            "private_key_file": str(private_key_file.resolve()) if private_key_file is not None else None,
        }
