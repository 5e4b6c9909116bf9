"""syncd's Salesforce logins against the sandbox's OAuth 2.0 endpoint, through simple-salesforce.

Each auth mode is configured as a customer would write config.toml (login_url, username, the *_env
variables), pointed at the sandbox's login URL and CA; the connector then pulls, pushes and lists reps with
the session it got. Sessions time out on the sandbox's injected clock, so a session that expires between two
pages or two batches is renewed without waiting and without losing or repeating anything.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.cli import main as syncd_main
from syncd.config import Config, parse_config
from syncd.connectors import Change, SalesforceConnector, connectors_from_config
from syncd.connectors.auth import SalesforceLogin, SessionLogin, login_from_config
from syncd.errors import AuthError, ConfigError, FatalConnectorError, RetriableError
from syncd.sandbox.runtime import Sandbox

ROOT = Path(__file__).resolve().parents[2]
SESSION = 60.0
MODES = ["password", "jwt", "client_credentials", "refresh_token"]
# Fast: no client-side pacing worth the name, no look-back, no real waiting between retries.
FAST: dict[str, Any] = {
    "requests_per_10s": 100_000,
    "lookback_seconds": 0,
    "max_backoff": 5.0,
    "page_size": 200,
}


class Clock:
    """The sandbox's clock: real time when the test starts, then moved only by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def org(make_sandbox: Callable[..., Sandbox], clock: Clock) -> Sandbox:
    """The Northwind org (300 persons: 210 Leads) with a 60-second session timeout on an injected clock."""
    return make_sandbox(session_seconds=SESSION, clock=clock)


def environ(box: Sandbox, **overrides: str) -> dict[str, str]:
    oauth = box.info()["salesforce"]["oauth"]
    env = {
        "SF_CONSUMER_KEY": oauth["consumer_key"],
        "SF_CONSUMER_SECRET": oauth["consumer_secret"],
        "SF_PASSWORD": oauth["password"],
        "SF_SECURITY_TOKEN": oauth["security_token"],
        "SF_REFRESH_TOKEN": oauth["refresh_token"],
        "HUBSPOT_ACCESS_TOKEN": box.hs_app.tokens["integration"],
    }
    env.update(overrides)
    return env


def settings(box: Sandbox, auth: str, **overrides: Any) -> dict[str, Any]:
    oauth = box.info()["salesforce"]["oauth"]
    sf: dict[str, Any] = {"auth": auth, "login_url": box.sf_url, "ca_file": str(box.ca_file)}
    if auth in ("jwt", "password"):
        sf["username"] = oauth["username"]
    if auth == "jwt":
        sf["private_key_file"] = oauth["private_key_file"]
    if auth == "session":
        sf["instance_url"] = box.sf_url
    sf.update(overrides)
    return {
        "salesforce": sf,
        "hubspot": {"host": box.hs_url, "ca_file": str(box.ca_file)},
        "rules": {"directory": str(ROOT / "mappings")},
    }


def config(
    box: Sandbox, auth: str, tmp_path: Path, *, env: dict[str, str] | None = None, **sf: Any
) -> Config:
    return parse_config(settings(box, auth, **sf), path=tmp_path / "config.toml", environ=env or environ(box))


def connector(cfg: Config, clock: Clock, **options: Any) -> SalesforceConnector:
    sf, hs = connectors_from_config(
        cfg,
        sleep=lambda s: None,
        now=lambda: datetime.fromtimestamp(clock(), UTC),
        salesforce={**FAST, **options},
    )
    hs.close()
    return sf


@pytest.fixture
def close() -> Iterator[list[SalesforceConnector]]:
    opened: list[SalesforceConnector] = []
    yield opened
    for c in opened:
        c.close()


def token_requests(box: Sandbox) -> int:
    return int(box.sf_app.counters.snapshot()["by_kind"].get("POST oauth2 token", 0))


def live_leads(box: Sandbox) -> set[str]:
    return {r["Id"] for r in box.sf_store.table("Lead").values() if not r.get("IsDeleted")}


def pulled_ids(
    conn: SalesforceConnector, object: str = "Lead", *, between: Callable[[], None] | None = None
) -> list[str]:
    ids: list[str] = []
    for page in conn.pull(object):
        ids.extend(r.id for r in page.records)
        if between is not None:
            between()
    return ids


# ------------------------------------------------------------------------------------- every mode


@pytest.mark.parametrize("auth", MODES)
def test_each_auth_mode_logs_in_once_then_pulls_pushes_and_lists_reps(
    org: Sandbox, clock: Clock, tmp_path: Path, close: list[SalesforceConnector], auth: str
) -> None:
    conn = connector(config(org, auth, tmp_path), clock)
    close.append(conn)
    assert sorted(pulled_ids(conn)) == sorted(live_leads(org))
    reps = conn.list_reps()
    assert any(r.email == "sam.patel@northwind.example" for r in reps)
    [results] = list(
        conn.push_batches("Lead", [Change.create(f"auth-{auth}", {"LastName": "Auth", "Company": "Acme"})])
    )
    assert results[0].ok and results[0].created
    created = org.sf_store.get("Lead", str(results[0].id))
    assert created is not None
    # The writes are the integration user's: the token is the integration user's session.
    assert created["LastModifiedById"] == org.sf_app.integration_user_id
    assert token_requests(org) == 1
    assert conn.renewals == 0


def test_a_bare_session_token_works_without_any_login(
    org: Sandbox, clock: Clock, tmp_path: Path, close: list[SalesforceConnector]
) -> None:
    token = org.sf_app.oauth.issue("integration")
    conn = connector(config(org, "session", tmp_path, env=environ(org, SF_ACCESS_TOKEN=token)), clock)
    close.append(conn)
    assert sorted(pulled_ids(conn)) == sorted(live_leads(org))
    assert token_requests(org) == 0


def test_the_factory_for_each_mode(org: Sandbox, tmp_path: Path) -> None:
    for auth in MODES:
        made = login_from_config(config(org, auth, tmp_path))
        assert isinstance(made, SalesforceLogin) and made.renewable and made.grant.mode == auth
    token = org.sf_app.oauth.issue("integration")
    bare = login_from_config(config(org, "session", tmp_path, env=environ(org, SF_ACCESS_TOKEN=token)))
    assert isinstance(bare, SessionLogin) and not bare.renewable


# ------------------------------------------------------------------------------------- refusals


def _other_key(tmp_path: Path) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "other.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(path)


WRONG = "WrongSecret0123456789"


@pytest.mark.parametrize(
    ("auth", "env", "sf", "said"),
    [
        pytest.param("password", {"SF_CONSUMER_SECRET": WRONG}, {}, "(invalid_client: invalid client credentials): check the consumer secret", id="password-wrong-consumer-secret"),
        pytest.param("password", {"SF_PASSWORD": WRONG}, {}, "(invalid_grant: authentication failure): check salesforce.username", id="password-wrong-password"),
        pytest.param("password", {"SF_CONSUMER_KEY": "3MVG9" + WRONG}, {}, "(invalid_client_id: client identifier invalid): check the consumer key", id="password-wrong-consumer-key"),
        pytest.param("client_credentials", {"SF_CONSUMER_SECRET": WRONG}, {}, "(invalid_client: invalid client credentials)", id="client-credentials-wrong-secret"),
        pytest.param("refresh_token", {"SF_REFRESH_TOKEN": "5Aep" + WRONG}, {}, "(invalid_grant: expired access/refresh token): the refresh token expired or was revoked", id="refresh-token-revoked"),
        pytest.param("jwt", {}, {"private_key_file": "OTHER"}, "(invalid_grant: invalid assertion): check salesforce.username, the private key", id="jwt-wrong-key"),
        pytest.param("jwt", {}, {"username": "sam.patel@northwind.example"}, "(invalid_grant: user hasn't approved this consumer)", id="jwt-unapproved-user"),
    ],
)  # fmt: skip
def test_a_refused_login_is_one_auth_error_line_without_any_secret(
    org: Sandbox,
    clock: Clock,
    tmp_path: Path,
    close: list[SalesforceConnector],
    auth: str,
    env: dict[str, str],
    sf: dict[str, Any],
    said: str,
) -> None:
    if sf.get("private_key_file") == "OTHER":
        sf = {**sf, "private_key_file": _other_key(tmp_path)}
    given = environ(org, **env)
    conn = connector(config(org, auth, tmp_path, env=given, **sf), clock)
    close.append(conn)
    with pytest.raises(AuthError) as caught:
        conn.list_reps()
    message = str(caught.value)
    assert message.startswith(f"Salesforce refused the {auth} login at {org.sf_url} ")
    assert said in message
    assert "\n" not in message
    for name, value in given.items():
        if name.startswith("SF_"):
            assert value not in message, f"{name} leaked"
    assert caught.value.system == "salesforce"
    assert token_requests(org) == 1  # refused logins are not retried


def test_syncd_once_reports_a_wrong_secret_in_one_line_without_it(
    org: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = settings(org, "password")
    lines = [
        "[salesforce]",
        *(f"{k} = {v!r}" for k, v in data["salesforce"].items()),
        "[hubspot]",
        *(f"{k} = {v!r}" for k, v in data["hubspot"].items()),
        "[rules]",
        f"directory = {str(ROOT / 'mappings')!r}",
        "[ledger]",
        f"path = {str(tmp_path / 'syncd.db')!r}",
        "[daemon]",
        "health_enabled = false",
    ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    env = environ(org, SF_CONSUMER_SECRET=WRONG)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        syncd_main(["once", "--config", str(path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.search(
        r"Salesforce refused the password login at \S+ \(invalid_client: invalid client credentials\)", err
    )
    for name, value in env.items():
        if name.startswith("SF_"):
            assert value not in err, f"{name} leaked"


# ------------------------------------------------------------------------------------- expiring sessions


@pytest.mark.parametrize("auth", MODES)
def test_a_session_that_expires_mid_pull_is_renewed_and_the_pull_loses_nothing(
    org: Sandbox, clock: Clock, tmp_path: Path, close: list[SalesforceConnector], auth: str
) -> None:
    conn = connector(config(org, auth, tmp_path), clock)
    close.append(conn)
    pages: list[int] = []

    def idle() -> None:
        pages.append(1)
        clock.advance(SESSION + 1)  # the next page's request finds the session timed out

    ids = pulled_ids(conn, between=idle)
    assert len(pages) == 2  # 210 Leads in pages of 200: the second page came after a renewal
    assert sorted(ids) == sorted(live_leads(org))
    assert len(ids) == len(set(ids))
    assert conn.renewals == 1
    assert token_requests(org) == 2
    statuses = org.sf_app.counters.snapshot()["by_status"]
    assert statuses.get("401") == 1


def test_a_session_that_expires_mid_push_is_renewed_and_every_change_is_written_once(
    org: Sandbox, clock: Clock, tmp_path: Path, close: list[SalesforceConnector]
) -> None:
    conn = connector(config(org, "jwt", tmp_path), clock)
    close.append(conn)
    changes = [Change.create(f"push-{n:03d}", {"LastName": f"P{n}", "Company": "Acme"}) for n in range(250)]
    results: list[Any] = []
    for batch in conn.push_batches("Lead", changes):
        results.extend(batch)
        clock.advance(SESSION + 1)  # the next batch finds the session timed out
    assert len(results) == 250 and all(r.ok for r in results)
    written = [
        r
        for r in org.sf_store.table("Lead").values()
        if str(r.get("Syncd_HubSpot_Id__c") or "").startswith("push-")
    ]
    assert sorted(r["Syncd_HubSpot_Id__c"] for r in written) == [c.key for c in changes]
    assert conn.renewals == 1
    assert token_requests(org) == 2


def test_a_bare_session_cannot_be_renewed_and_stops_with_a_clear_auth_error(
    org: Sandbox, clock: Clock, tmp_path: Path, close: list[SalesforceConnector]
) -> None:
    token = org.sf_app.oauth.issue("integration")
    conn = connector(config(org, "session", tmp_path, env=environ(org, SF_ACCESS_TOKEN=token)), clock)
    close.append(conn)
    with pytest.raises(AuthError) as caught:
        pulled_ids(conn, between=lambda: clock.advance(SESSION + 1))
    message = str(caught.value)
    assert message == (
        "Salesforce rejected the session (INVALID_SESSION_ID): set a fresh token in the variable "
        "salesforce.access_token_env names"
    )
    assert token not in message
    assert token_requests(org) == 0


def test_a_renewal_the_org_refuses_stops_with_the_login_error(
    org: Sandbox, clock: Clock, tmp_path: Path, close: list[SalesforceConnector]
) -> None:
    conn = connector(config(org, "password", tmp_path), clock)
    close.append(conn)

    def deactivate() -> None:
        user = org.sf_store.get("User", org.sf_app.integration_user_id)
        assert user is not None
        org.sf_store.put("User", {**user, "IsActive": False})
        clock.advance(SESSION + 1)

    with pytest.raises(AuthError, match=r"\(invalid_grant: inactive user\)"):
        pulled_ids(conn, between=deactivate)
    assert token_requests(org) == 2


# ------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("salesforce", "expected"),
    [
        pytest.param({"auth": "client_credentials"}, "salesforce.login_url: the client credentials flow needs your org's My Domain URL", id="client-credentials-on-login-host"),
        pytest.param({"auth": "client_credentials", "login_url": "https://test.salesforce.com"}, "needs your org's My Domain URL", id="client-credentials-on-test-host"),
        pytest.param({"username": "u", "login_url": "http://login.salesforce.com"}, "salesforce.login_url: must be an https:// URL with no path", id="login-url-not-https"),
        pytest.param({"username": "u", "login_url": "https://login.salesforce.com/services/oauth2/token"}, "salesforce.login_url: must be an https:// URL with no path", id="login-url-with-path"),
        pytest.param({"username": "u", "domain": "test", "login_url": "https://test.salesforce.com"}, "salesforce.domain: set salesforce.login_url only", id="domain-and-login-url"),
        pytest.param({"auth": "refresh_token"}, "salesforce.refresh_token_env: environment variable SF_REFRESH_TOKEN is not set", id="refresh-token-unset"),
        pytest.param({"auth": "password", "username": "u"}, "salesforce.consumer_secret_env: environment variable SF_CONSUMER_SECRET is not set", id="password-needs-the-connected-app"),
    ],
)  # fmt: skip
def test_auth_settings_are_checked_in_one_line(
    tmp_path: Path, salesforce: dict[str, Any], expected: str
) -> None:
    env = {"SF_CONSUMER_KEY": "ck", "SF_PRIVATE_KEY": "k", "SF_PASSWORD": "pw", "HUBSPOT_ACCESS_TOKEN": "t"}
    with pytest.raises(ConfigError) as caught:
        parse_config({"salesforce": salesforce}, path=tmp_path / "config.toml", environ=env)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("salesforce", "login_url"),
    [
        pytest.param({}, "https://login.salesforce.com", id="default-production"),
        pytest.param({"domain": "test"}, "https://test.salesforce.com", id="domain-test"),
        pytest.param({"domain": "northwind.my"}, "https://northwind.my.salesforce.com", id="domain-my-domain"),
        pytest.param({"login_url": "https://northwind.my.salesforce.com/"}, "https://northwind.my.salesforce.com", id="trailing-slash"),
    ],
)  # fmt: skip
def test_login_url_defaults_to_production_and_reads_the_older_domain_form(
    tmp_path: Path, salesforce: dict[str, Any], login_url: str
) -> None:
    env = {"SF_CONSUMER_KEY": "ck", "SF_PRIVATE_KEY": "k", "HUBSPOT_ACCESS_TOKEN": "t"}
    cfg = parse_config({"salesforce": {"username": "u", **salesforce}}, path=tmp_path / "c.toml", environ=env)
    assert cfg.salesforce.login_url == login_url


def test_a_session_that_expires_during_a_bulk_pull_ends_it_retriably_and_the_resumed_pull_loses_nothing(
    org: Sandbox, clock: Clock, tmp_path: Path, close: list[SalesforceConnector]
) -> None:
    conn = connector(config(org, "jwt", tmp_path), clock, bulk_threshold=1, bulk_poll_seconds=0)
    close.append(conn)
    ids: list[str] = []
    mark = None
    with pytest.raises(RetriableError) as caught:
        for page in conn.pull("Lead"):  # a first sync larger than bulk_threshold: one Bulk API 2.0 query
            ids.extend(r.id for r in page.records)
            mark = page.watermark
            clock.advance(SESSION + 1)
    assert caught.value.code == "INVALID_SESSION_ID"
    assert mark is not None and len(ids) == 200
    # What the cycle does next: resume incrementally from the last page's watermark, with a new session.
    for page in conn.pull("Lead", mark):
        ids.extend(r.id for r in page.records)
    assert set(ids) == live_leads(org)
    assert conn.renewals == 1
    assert token_requests(org) == 2


def test_a_login_host_under_load_is_retried_like_any_call(
    org: Sandbox, clock: Clock, tmp_path: Path, close: list[SalesforceConnector]
) -> None:
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        org.sf_app.faults.update({"status_503": 0})  # the login host recovers while syncd backs off

    org.sf_app.faults.update({"status_503": 1})
    conn, hs = connectors_from_config(
        config(org, "client_credentials", tmp_path),
        sleep=sleep,
        now=lambda: datetime.fromtimestamp(clock(), UTC),
        salesforce=FAST,
    )
    hs.close()
    close.append(conn)
    assert conn.list_reps()
    assert len(delays) == 1
    assert org.sf_app.counters.snapshot()["by_kind"]["POST oauth2 token"] == 2


@pytest.mark.parametrize(
    ("where", "error", "said"),
    [
        pytest.param("hubspot", FatalConnectorError, "without an OAuth response: check salesforce.login_url", id="not-a-login-host"),
        pytest.param("closed", RetriableError, "cannot reach 127.0.0.1:", id="nothing-listening"),
    ],
)  # fmt: skip
def test_a_wrong_login_url_is_named_in_one_line(
    org: Sandbox,
    clock: Clock,
    tmp_path: Path,
    close: list[SalesforceConnector],
    where: str,
    error: type[Exception],
    said: str,
) -> None:
    if where == "hubspot":
        url = org.hs_url
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            url = f"https://127.0.0.1:{probe.getsockname()[1]}"
    conn = connector(config(org, "password", tmp_path, login_url=url), clock, max_attempts=1)
    close.append(conn)
    with pytest.raises(error) as caught:
        conn.list_reps()
    assert said in str(caught.value)
    assert not isinstance(caught.value, AuthError)
