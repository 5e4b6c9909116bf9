"""The Salesforce sandbox's OAuth 2.0 token endpoint and session timeout, through simple-salesforce.

Every grant is requested as a client sends it (form-encoded POST to /services/oauth2/token), the answer is
checked field by field as Salesforce documents it, and the token it gives is used by an unmodified
``simple_salesforce.Salesforce``. Time is the server's injected clock: no test waits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import pytest
import requests
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceExpiredSession
from simple_salesforce.login import token_login

from syncd.sandbox.cli import sandbox as sandbox_cli
from syncd.sandbox.runtime import Sandbox, write_info
from syncd.sandbox.salesforce import INTEGRATION_USERNAME, client_session
from syncd.sandbox.salesforce_oauth import JWT_BEARER, ORG_ID_18, TOKEN_PATH, ConnectedApp, make_signing_key

if TYPE_CHECKING:
    from tests.sandbox.conftest import SfSandbox

SESSION = 600.0
EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


@pytest.fixture
def org(sf_start: Callable[..., SfSandbox], tmp_path: Path) -> tuple[SfSandbox, Path]:
    """A Salesforce sandbox with a 10-minute session timeout and the connected app's certificate installed."""
    box = sf_start(session_seconds=SESSION)
    key_file, certificate = make_signing_key(tmp_path / "app")
    box.app.oauth.install_certificate(certificate)
    return box, key_file


def app_of(box: SfSandbox) -> ConnectedApp:
    return box.app.oauth.app


def post(box: SfSandbox, data: dict[str, str], **kwargs: Any) -> requests.Response:
    return client_session(box.tls.ca_file).post(box.server.url + TOKEN_PATH, data=data, **kwargs)


def assertion(box: SfSandbox, key: bytes, **claims: Any) -> str:
    app = app_of(box)
    body = {"iss": app.consumer_key, "sub": app.username, "aud": box.server.url, "exp": box.clock() + 180}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="RS256")


def forms(box: SfSandbox, key_file: Path) -> dict[str, dict[str, str]]:
    app = app_of(box)
    return {
        "password": {
            "grant_type": "password",
            "client_id": app.consumer_key,
            "client_secret": app.consumer_secret,
            "username": app.username,
            "password": app.password + app.security_token,
        },
        "jwt": {"grant_type": JWT_BEARER, "assertion": assertion(box, key_file.read_bytes())},
        "client_credentials": {
            "grant_type": "client_credentials",
            "client_id": app.consumer_key,
            "client_secret": app.consumer_secret,
        },
        "refresh_token": {
            "grant_type": "refresh_token",
            "client_id": app.consumer_key,
            "client_secret": app.consumer_secret,
            "refresh_token": app.refresh_token,
        },
    }


def client(box: SfSandbox, token: str) -> Salesforce:
    return Salesforce(instance_url=box.server.url, session_id=token, session=client_session(box.tls.ca_file))


def login(box: SfSandbox, key_file: Path, grant: str = "password") -> str:
    response = post(box, forms(box, key_file)[grant])
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


# ------------------------------------------------------------------------------------------- grants


def test_password_grant_answers_every_documented_field(org: tuple[SfSandbox, Path]) -> None:
    box, key_file = org
    response = post(box, forms(box, key_file)["password"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "access_token",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
        "signature",
        "scope",
    }
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == box.server.url
    assert body["id"] == f"{box.server.url}/id/{ORG_ID_18}/{box.app.integration_user_id}"
    assert body["issued_at"] == str(int(box.clock() * 1000))
    # Base64 HMAC-SHA256 of id + issued_at, keyed with the consumer secret (Username-Password Flow).
    digest = hmac.new(
        app_of(box).consumer_secret.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256
    ).digest()
    assert body["signature"] == base64.b64encode(digest).decode()
    assert body["access_token"].startswith(ORG_ID_18[:15] + "!")
    assert "no-store" in response.headers["Cache-Control"]


@pytest.mark.parametrize("grant", ["password", "jwt", "client_credentials", "refresh_token"])
def test_each_grant_logs_in_through_simple_salesforce_and_acts_as_the_integration_user(
    org: tuple[SfSandbox, Path], grant: str
) -> None:
    box, key_file = org
    form = forms(box, key_file)[grant]
    headers = None
    if grant == "client_credentials":
        # simple-salesforce sends the client credentials as HTTP Basic.
        app = app_of(box)
        raw = f"{app.consumer_key}:{app.consumer_secret}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        form = {"grant_type": "client_credentials"}
    session = client_session(box.tls.ca_file)
    token, instance = token_login(
        box.server.url + TOKEN_PATH, form, "login", app_of(box).consumer_key, headers, None, session
    )
    assert instance == box.server.url.removeprefix("https://")
    sf = client(box, token)
    created = sf.Lead.create({"LastName": "Oauth", "Company": "Acme"})
    lead = sf.Lead.get(created["id"])
    assert lead["LastModifiedById"] == box.app.integration_user_id


def test_client_credentials_accept_the_key_and_secret_in_the_body(org: tuple[SfSandbox, Path]) -> None:
    box, key_file = org
    assert post(box, forms(box, key_file)["client_credentials"]).status_code == 200


def _refusals() -> list[Any]:
    """(grant, change to its form, status, error, error_description), each from Salesforce's docs or issues."""
    return [
        pytest.param("password", {"client_secret": "0" * 64}, "invalid_client", "invalid client credentials", id="password-wrong-secret"),
        pytest.param("password", {"client_id": "3MVG9nope"}, "invalid_client_id", "client identifier invalid", id="password-unknown-key"),
        pytest.param("password", {"password": "wrong"}, "invalid_grant", "authentication failure", id="password-wrong-password"),
        pytest.param("password", {"password": None}, "invalid_grant", "authentication failure", id="password-without-token"),
        pytest.param("password", {"username": "sam.patel@northwind.example"}, "invalid_grant", "authentication failure", id="password-other-user"),
        pytest.param("client_credentials", {"client_secret": "0" * 64}, "invalid_client", "invalid client credentials", id="client-credentials-wrong-secret"),
        pytest.param("refresh_token", {"refresh_token": "5Aepnope"}, "invalid_grant", "expired access/refresh token", id="refresh-unknown-token"),
        pytest.param("refresh_token", {"client_secret": "0" * 64}, "invalid_client", "invalid client credentials", id="refresh-wrong-secret"),
        pytest.param("password", {"grant_type": "authorization_code"}, "unsupported_grant_type", "grant type not supported", id="unknown-grant"),
        pytest.param("jwt", {"other_key": True}, "invalid_grant", "invalid assertion", id="jwt-other-key"),
        pytest.param("jwt", {"aud": "https://test.salesforce.com"}, "invalid_grant", "audience is invalid", id="jwt-audience"),
        pytest.param("jwt", {"exp": -1}, "invalid_grant", "expired authorization code", id="jwt-expired"),
        pytest.param("jwt", {"sub": "sam.patel@northwind.example"}, "invalid_grant", "user hasn't approved this consumer", id="jwt-unapproved-user"),
        pytest.param("jwt", {"iss": "3MVG9nope"}, "invalid_client_id", "client identifier invalid", id="jwt-unknown-key"),
        pytest.param("jwt", {"assertion": "not.a.jwt"}, "invalid_grant", "invalid assertion", id="jwt-garbage"),
    ]  # fmt: skip


@pytest.mark.parametrize(("grant", "change", "error", "description"), _refusals())
def test_refusals_are_400_with_the_documented_error_and_description(
    org: tuple[SfSandbox, Path], grant: str, change: dict[str, Any], error: str, description: str
) -> None:
    box, key_file = org
    form = forms(box, key_file)[grant]
    if grant == "jwt" and "assertion" not in change:
        claims = {k: v for k, v in change.items() if k != "other_key"}
        if claims.get("exp") == -1:
            claims["exp"] = box.clock() - 1
        key = key_file.read_bytes()
        if change.get("other_key"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        form["assertion"] = assertion(box, key, **claims)
    else:
        for name, value in change.items():
            if name == "password" and value is None:
                form["password"] = app_of(box).password  # without the security token appended
            else:
                form[name] = value
    response = post(box, form)
    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}
    # simple-salesforce reports the same error code and description (and warns about unapproved users).
    with pytest.raises(SalesforceAuthenticationFailed) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        token_login(
            box.server.url + TOKEN_PATH, form, "login", "key", None, None, client_session(box.tls.ca_file)
        )
    assert (caught.value.code, caught.value.auth_message) == (error, description)


def test_the_token_endpoint_takes_only_post(org: tuple[SfSandbox, Path]) -> None:
    box, _ = org
    response = client_session(box.tls.ca_file).get(box.server.url + TOKEN_PATH)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "error_description": "must use HTTP POST"}


def test_an_inactive_integration_user_cannot_log_in(org: tuple[SfSandbox, Path]) -> None:
    box, key_file = org
    user = box.store.get("User", box.app.integration_user_id)
    assert user is not None
    box.store.put("User", {**user, "IsActive": False})
    response = post(box, forms(box, key_file)["password"])
    assert (response.status_code, response.json()["error_description"]) == (400, "inactive user")


def test_token_requests_are_counted_by_kind(org: tuple[SfSandbox, Path]) -> None:
    box, key_file = org
    login(box, key_file)
    post(box, {"grant_type": "nope"})
    counts = box.control("GET", "counts").json()
    assert counts["by_kind"] == {"POST oauth2 token": 2}
    assert counts["by_status"] == {"200": 1, "400": 1}


# ------------------------------------------------------------------------------------------- sessions


def test_an_oauth_session_times_out_after_the_configured_idle_time(org: tuple[SfSandbox, Path]) -> None:
    box, key_file = org
    sf = client(box, login(box, key_file))
    box.clock.advance(SESSION)
    assert sf.query("SELECT Id FROM User LIMIT 1")["totalSize"] == 1  # exactly at the timeout: still alive
    box.clock.advance(SESSION + 1)
    with pytest.raises(SalesforceExpiredSession) as caught:
        sf.query("SELECT Id FROM User LIMIT 1")
    assert caught.value.status == 401
    assert caught.value.content == EXPIRED


@pytest.mark.parametrize(
    "probes",
    [
        # A call in the first half of the timeout does not move the session's end (still login + timeout).
        pytest.param([(0.4, True), (1.0, False)], id="first-half-call-does-not-extend"),
        # A call in the second half restarts the timeout from that call; a call early in that new timeout does
        # not move it again.
        pytest.param([(0.6, True), (1.0, True), (1.61, False)], id="second-half-call-extends"),
    ],
)
def test_activity_extends_a_session_only_in_the_second_half_of_its_timeout(
    org: tuple[SfSandbox, Path], probes: list[tuple[float, bool]]
) -> None:
    box, key_file = org
    start = box.clock()
    sf = client(box, login(box, key_file))
    for fraction, alive in probes:
        box.clock.now = start + fraction * SESSION + 1
        if alive:
            assert sf.query("SELECT Id FROM User LIMIT 1")["totalSize"] == 1
        else:
            with pytest.raises(SalesforceExpiredSession):
                sf.query("SELECT Id FROM User LIMIT 1")


def test_a_new_login_works_after_the_old_session_expired(org: tuple[SfSandbox, Path]) -> None:
    box, key_file = org
    old = client(box, login(box, key_file, "jwt"))
    box.clock.advance(SESSION * 2)
    with pytest.raises(SalesforceExpiredSession):
        old.query("SELECT Id FROM User LIMIT 1")
    assert client(box, login(box, key_file, "jwt")).query("SELECT Id FROM User LIMIT 1")["totalSize"] == 1


def test_pre_issued_tokens_never_time_out(org: tuple[SfSandbox, Path]) -> None:
    box, _ = org
    sf = box.client()
    box.clock.advance(SESSION * 100)
    assert sf.query("SELECT Id FROM User LIMIT 1")["totalSize"] == 1


def test_session_seconds_must_be_positive(sf_start: Callable[..., SfSandbox]) -> None:
    with pytest.raises(ValueError, match="session_seconds must be more than 0"):
        sf_start(session_seconds=0)


def test_serve_refuses_a_zero_session_timeout_in_one_line() -> None:
    result = CliRunner().invoke(sandbox_cli, ["serve", "--session-seconds", "0"])
    assert result.exit_code == 2
    assert "--session-seconds" in result.output
    assert len(result.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------- info file


def test_info_file_holds_the_login_url_and_the_integration_users_oauth_login(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    box = make_sandbox(persons=0)
    info_file = tmp_path / "info.json"
    write_info(info_file, box.info())
    assert stat.S_IMODE(info_file.stat().st_mode) == 0o600
    sf_info = json.loads(info_file.read_text())["salesforce"]
    assert sf_info["login_url"] == box.sf_url
    oauth = sf_info["oauth"]
    assert set(oauth) == {
        "consumer_key",
        "consumer_secret",
        "username",
        "password",
        "security_token",
        "refresh_token",
        "private_key_file",
    }
    assert oauth["username"] == INTEGRATION_USERNAME
    key_file = Path(oauth["private_key_file"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # The key signs an assertion the server accepts, through simple-salesforce's own token request.
    claims = {"iss": oauth["consumer_key"], "sub": oauth["username"], "aud": sf_info["login_url"]}
    signed = jwt.encode({**claims, "exp": int(box.clock()) + 180}, key_file.read_bytes(), algorithm="RS256")
    session = client_session(box.ca_file)
    token, _ = token_login(
        sf_info["login_url"] + TOKEN_PATH,
        {"grant_type": JWT_BEARER, "assertion": signed},
        "login",
        oauth["consumer_key"],
        None,
        None,
        session,
    )
    assert client_box(box, token).query("SELECT Id FROM User LIMIT 1")["totalSize"] == 1


def client_box(box: Sandbox, token: str) -> Salesforce:
    return Salesforce(instance_url=box.sf_url, session_id=token, session=client_session(box.ca_file))


def test_a_restart_keeps_the_connected_app_and_a_new_key_still_logs_in(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    first = make_sandbox(persons=0, data_dir=tmp_path / "org")
    before = first.info()["salesforce"]["oauth"]
    first.stop()
    second = make_sandbox(persons=0, data_dir=tmp_path / "org")
    after = second.info()["salesforce"]["oauth"]
    assert {k: v for k, v in after.items() if k != "private_key_file"} == {
        k: v for k, v in before.items() if k != "private_key_file"
    }
    form = {
        "grant_type": "password",
        "client_id": after["consumer_key"],
        "client_secret": after["consumer_secret"],
        "username": after["username"],
        "password": after["password"] + after["security_token"],
    }
    response = client_session(second.ca_file).post(second.sf_url + TOKEN_PATH, data=form)
    assert response.status_code == 200


def test_the_sandbox_option_sets_the_session_timeout(make_sandbox: Callable[..., Sandbox]) -> None:
    now = [1_800_000_000.0]
    box = make_sandbox(persons=0, session_seconds=30, clock=lambda: now[0])
    oauth = box.info()["salesforce"]["oauth"]
    form = {
        "grant_type": "client_credentials",
        "client_id": oauth["consumer_key"],
        "client_secret": oauth["consumer_secret"],
    }
    token = client_session(box.ca_file).post(box.sf_url + TOKEN_PATH, data=form).json()["access_token"]
    sf = client_box(box, token)
    now[0] += 31
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM User LIMIT 1")
