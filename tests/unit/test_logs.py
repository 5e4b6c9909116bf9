"""Logging: JSON lines off a terminal, readable lines on one, and no secret ever written, in either format."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from syncd.logs import (
    REDACTED,
    ConsoleFormatter,
    JsonFormatter,
    RedactingFilter,
    Redactor,
    log_decision,
    register_secret,
    setup_logging,
)

SF_SESSION = "00D5g000004AbCdEFG!AQ4AQLmNoPqRsTuVwXyZ0123456789abcdef"
HS_TOKEN = "pat-na1-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
CLIENT_SECRET = "Zq8/wX+y=secret!42"  # URL-significant characters on purpose
DB_PASSWORD = 'hunter2 "quoted" \\ pass'  # JSON-significant characters on purpose
SECRETS = (SF_SESSION, HS_TOKEN, CLIENT_SECRET, DB_PASSWORD)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {
        name: logging.getLogger(name).level for name in ("syncd", "apscheduler", "urllib3", "py.warnings")
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)
    logging.captureWarnings(False)


def _raise_with_secret() -> None:
    try:
        raise ConnectionError(f"POST https://example.my.salesforce.com/x?access_token={CLIENT_SECRET} reset")
    except ConnectionError as inner:
        raise RuntimeError(f"session {SF_SESSION} rejected") from inner


def emit_everything(log: logging.Logger) -> None:
    """Every way a secret could reach a log line."""
    log.info("connected with token %s", HS_TOKEN)
    log.info(f"inline session id {SF_SESSION}")
    log.info("request headers %s", {"Authorization": f"Bearer {HS_TOKEN}", "Accept": "application/json"})
    log.info("GET /services/data?access_token=%s&limit=5", "abc.DEF-123")
    log.info(
        "url-encoded secret in a query: client_id=x&cs=%s",
        CLIENT_SECRET.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D").replace("!", "%21"),
    )
    log.info("login", extra={"session_id": SF_SESSION, "auth": {"password": DB_PASSWORD, "user": "ops"}})
    log.info("kwargs repr: password=%r", DB_PASSWORD)
    log.info("dsn postgres://ops:%s@db.example/syncd", "pa55word")
    try:
        _raise_with_secret()
    except RuntimeError:
        log.exception("cycle failed")
    logging.getLogger("urllib3.connectionpool").warning("retrying %s", f"Bearer {SF_SESSION}")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"deprecated call with {HS_TOKEN}", UserWarning, stacklevel=1)


@pytest.mark.parametrize(
    ("stream_factory", "is_json"),
    [
        pytest.param(io.StringIO, True, id="json-off-a-terminal"),
        pytest.param(Terminal, False, id="tty-readable"),
    ],
)
def test_no_secret_is_ever_written(stream_factory: Callable[[], io.StringIO], is_json: bool) -> None:
    stream = stream_factory()
    setup_logging("DEBUG", stream=stream, secrets=[CLIENT_SECRET, DB_PASSWORD])
    emit_everything(logging.getLogger("syncd.test"))
    output = stream.getvalue()
    for secret in (*SECRETS, "abc.DEF-123", "pa55word", json.dumps(DB_PASSWORD)[1:-1]):
        assert secret not in output, f"{secret!r} leaked"
    assert "%2F" not in output  # the URL-encoded client secret, too
    assert output.count(REDACTED) >= 12
    # What is not secret survives, so the lines stay useful.
    for kept in ("limit=5", "Accept", "ops", "cycle failed", "Traceback", "RuntimeError", "ConnectionError"):
        assert kept in output
    lines = output.splitlines()
    if is_json:
        records = [json.loads(line) for line in lines]
        assert {"time", "level", "logger", "message"} <= set(records[0])
        assert records[0]["time"].endswith("Z")
        login = next(r for r in records if r["message"] == "login")
        assert login["session_id"] == REDACTED
        assert login["auth"] == {"password": REDACTED, "user": "ops"}
        failed = next(r for r in records if r["message"] == "cycle failed")
        assert "access_token=***" in failed["exc"]
    else:
        assert not lines[0].startswith("{")
        assert " INFO    syncd.test: connected with token ***" in lines[0]


def test_auto_format_follows_the_stream() -> None:
    plain, tty = io.StringIO(), Terminal()
    assert isinstance(setup_logging(stream=plain).formatter, JsonFormatter)
    assert isinstance(setup_logging(stream=tty).formatter, ConsoleFormatter)
    assert isinstance(setup_logging(stream=tty, fmt="json").formatter, JsonFormatter)


def test_setup_replaces_its_own_handler_and_keeps_others() -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    first = setup_logging(stream=io.StringIO())
    second = setup_logging(stream=io.StringIO())
    handlers = logging.getLogger().handlers
    assert second in handlers and first not in handlers and other in handlers


def test_decisions_are_logged_at_debug_only() -> None:
    stream = io.StringIO()
    setup_logging("INFO", stream=stream, fmt="json")
    log_decision("hubspot contact 101", "owner jack.miller (rule NA enterprise)", owner="005A")
    assert stream.getvalue() == ""
    setup_logging("DEBUG", stream=stream, fmt="json")
    log_decision("hubspot contact 101", "owner jack.miller (rule NA enterprise)", owner="005A")
    record = json.loads(stream.getvalue())
    assert record["level"] == "debug"
    assert record["logger"] == "syncd.decisions"
    assert record["message"] == "hubspot contact 101: owner jack.miller (rule NA enterprise)"
    assert record["decision"] == {"owner": "005A"}


def test_a_secret_registered_after_setup_is_masked_too() -> None:
    stream = io.StringIO()
    setup_logging(stream=stream, fmt="json")
    register_secret("late-registered-secret-value")
    logging.getLogger("syncd.test").warning("got late-registered-secret-value back")
    assert "late-registered-secret-value" not in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Authorization: Bearer abc.def", "Authorization: Bearer ***", id="auth-header"),
        pytest.param("authorization=Basic dXNlcjpwYXNz", "authorization=Basic ***", id="basic-auth"),
        pytest.param("bearer xyz", "bearer ***", id="lower-case-bearer"),
        pytest.param("/q?access_token=a1&limit=5", "/q?access_token=***&limit=5", id="query-string"),
        pytest.param("session_id=abc123", "session_id=***", id="session-id"),
        pytest.param("{'sessionId': 'abc'}", "{'sessionId': '***'}", id="session-id-dict"),
        pytest.param('{"password": "a b c"}', '{"password": "***"}', id="json-password"),
        pytest.param("client_secret = 'x y'", "client_secret = '***'", id="quoted-with-space"),
        pytest.param("refresh_token=r; path=/", "refresh_token=***; path=/", id="cookie"),
        pytest.param(f"id {SF_SESSION} end", "id *** end", id="salesforce-session-shape"),
        pytest.param(f"token {HS_TOKEN}.", "token ***.", id="hubspot-private-app-token"),
        pytest.param("assertion eyJhbGciOi.eyJzdWIiOi.c2ln", "assertion ***", id="jwt"),
        pytest.param("https://u:p4ss@h/x", "https://u:***@h/x", id="url-password"),
        pytest.param(
            "token: HUBSPOT_TOKEN is not set", "token: HUBSPOT_TOKEN is not set", id="prose-survives"
        ),
        pytest.param(
            "tokens_used=5 password_env=SF_PASSWORD",
            "tokens_used=5 password_env=SF_PASSWORD",
            id="non-secret-keys-survive",
        ),
        pytest.param("pulled 120 records", "pulled 120 records", id="plain-text"),
    ],
)
def test_redaction_patterns(text: str, expected: str) -> None:
    assert Redactor().redact(text) == expected


@pytest.mark.parametrize(
    ("secret", "registered"),
    [
        pytest.param("abc", False, id="too-short"),
        pytest.param("", False, id="empty"),
        pytest.param("abcd", True, id="long-enough"),
    ],
)
def test_very_short_values_are_not_registered(secret: str, registered: bool) -> None:
    redactor = Redactor([secret])
    assert (redactor.redact(f"x {secret} y") != f"x {secret} y") is registered


def test_redact_value_masks_nested_structures() -> None:
    redactor = Redactor(["s3cr3t-value"])
    value: Any = {"a": ["s3cr3t-value", 1, None], "api_key": "k", "n": {"Password": "p"}}
    assert redactor.redact_value(value) == {
        "a": [REDACTED, 1, None],
        "api_key": REDACTED,
        "n": {"Password": REDACTED},
    }


def test_the_filter_alone_protects_a_handler_with_any_formatter() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(session_id)s"))
    handler.addFilter(RedactingFilter(Redactor([CLIENT_SECRET])))
    log = logging.getLogger("syncd.test.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise ValueError(f"bad secret {CLIENT_SECRET}")
        except ValueError:
            log.error("failed with %s", CLIENT_SECRET, exc_info=True, extra={"session_id": SF_SESSION})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    output = stream.getvalue()
    assert CLIENT_SECRET not in output and SF_SESSION not in output
    assert output.startswith("failed with *** ***\nTraceback")
    assert "ValueError: bad secret ***" in output
