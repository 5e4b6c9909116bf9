"""Logging for syncd: JSON lines for machines, readable lines for people, and secrets masked everywhere.

``setup_logging()`` installs one handler on the root logger: JSON lines when stderr is not a terminal
(journald, containers, files), a readable format when it is. Whatever the format, a ``RedactingFilter``
masks secrets in the message, its arguments, structured extras and exception text before any formatter
sees them, and the formatters mask their finished line once more. What counts as a secret:

- every value passed to ``register_secret()`` or ``setup_logging(secrets=...)`` (``syncd run`` passes every
  secret its config resolved), also in its URL-encoded and JSON-escaped forms;
- ``Bearer <token>`` and ``Authorization: <scheme> <credentials>``;
- ``key=value`` (and quoted ``"key": value``) where the key names a token, secret, password, session id,
  api key or assertion (``access_token=``, ``session_id=``, ``"password": ...``);
- shapes that are secrets wherever they appear: Salesforce session ids (``00D…!…``), HubSpot private-app
  tokens (``pat-na1-…``), JWTs, and the password in ``scheme://user:password@host``.

Conventions for callers: the cycle logs one INFO line per cycle (the daemon does it); decisions go to the
``syncd.decisions`` logger at DEBUG; machine-readable fields go in ``extra={...}`` (JSON output only).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal, TextIO
from urllib.parse import quote, quote_plus

REDACTED: Final = "***"
DECISIONS_LOGGER: Final = "syncd.decisions"
HANDLER_NAME: Final = "syncd"

# Masking a one- or two-character "secret" everywhere would shred every log line; real secrets are longer.
MIN_SECRET_LENGTH: Final = 4

_SECRET_KEY = (
    r"(?<![A-Za-z0-9])[A-Za-z0-9_.\-]*?"
    r"(?:token|secret|passw(?:or)?d|pwd|session_?id|sid|api_?key|assertion|credentials?)s?"
)
_VALUE = r"""(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s&,;"'}\])]+)"""


def _mask_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[0] + REDACTED + value[0]
    return REDACTED


def _authorization(match: re.Match[str]) -> str:
    scheme = match.group(2)
    return match.group(1) + (f"{scheme} " if scheme else "") + REDACTED


def _kv(match: re.Match[str]) -> str:
    return match.group(1) + match.group(2) + _mask_value(match.group(3))


def _quoted_kv(match: re.Match[str]) -> str:
    quote_char, key, sep, value = match.group(1), match.group(2), match.group(3), match.group(4)
    return f"{quote_char}{key}{quote_char}{sep}{_mask_value(value)}"


Replacement = str | Callable[[re.Match[str]], str]

_PATTERNS: Final[tuple[tuple[re.Pattern[str], Replacement], ...]] = (
    # Authorization headers, whatever the scheme, before the generic "Bearer" rule below.
    (
        re.compile(
            r"""(?i)(authorization["']?\s*[:=]\s*["']?)(?:(bearer|basic|token|oauth|digest)\s+)?[^\s"',;}]+"""
        ),
        _authorization,
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/!]+=*"), r"\1" + REDACTED),
    # key=value anywhere (query strings, repr of kwargs), quoted or not.
    (re.compile(r"(?i)(" + _SECRET_KEY + r")(\s*=\s*)(" + _VALUE + r")"), _kv),
    # "key": value — only with the key quoted, so that prose like "token: HUBSPOT_TOKEN is not set" survives.
    (re.compile(r"""(?i)(["'])(""" + _SECRET_KEY + r""")\1(\s*:\s*)(""" + _VALUE + r")"), _quoted_kv),
    (re.compile(r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{16,}"), REDACTED),
    (re.compile(r"\bpat-[a-z]{2,4}\d?-[0-9a-fA-F]{4,}(?:-[0-9a-fA-F]{2,})+"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"), REDACTED),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^/\s@]+(@)"), r"\1" + REDACTED + r"\2"),
)


class Redactor:
    """Masks secrets in text: registered values plus the patterns listed in this module's docstring."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._registered: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Register a secret value (ignored when empty or shorter than MIN_SECRET_LENGTH)."""
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        variants = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
        with self._lock:
            if variants <= self._values:
                return
            self._values |= variants
            alternatives = sorted(self._values, key=len, reverse=True)
            self._registered = re.compile("|".join(re.escape(v) for v in alternatives))

    def redact(self, text: str) -> str:
        """The text with every secret replaced by ``***``."""
        registered = self._registered
        if registered is not None:
            text = registered.sub(REDACTED, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def redact_value(self, value: Any) -> Any:
        """A structured value (str, mapping, sequence) with its strings redacted and secret-named keys masked."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {
                k: (REDACTED if isinstance(k, str) and _SECRET_KEY_RE.fullmatch(k) else self.redact_value(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_value(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.redact(str(value))


_SECRET_KEY_RE: Final = re.compile(_SECRET_KEY, re.IGNORECASE)

_default_redactor = Redactor()


def register_secret(secret: str | None) -> None:
    """Mask this value in every log line from now on (and in anything passed through ``redact``)."""
    _default_redactor.add(secret)


def redact(text: str) -> str:
    """Mask every known secret in ``text`` (use it for errors shown outside logging, e.g. on the CLI)."""
    return _default_redactor.redact(text)


def default_redactor() -> Redactor:
    """The process-wide redactor that ``register_secret`` feeds."""
    return _default_redactor


_STANDARD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}
_PLAIN_FORMATTER = logging.Formatter()


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra={...}`` fields a record carries."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, arguments, extras, exception and stack text, in place.

    Attach it to handlers: a logger's filters do not see records propagated from its children.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor if redactor is not None else _default_redactor

    def filter(self, record: logging.LogRecord) -> bool:
        r = self.redactor
        try:
            message = record.getMessage()
        except Exception:
            message = f"{record.msg!s} {record.args!r}"
        record.msg = r.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            # Formatted once here, then the raw exception is dropped so that no formatter renders it unmasked.
            record.exc_text = r.redact(_PLAIN_FORMATTER.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = r.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = r.redact(record.stack_info)
        for key, value in extra_fields(record).items():
            record.__dict__[key] = REDACTED if _SECRET_KEY_RE.fullmatch(key) else r.redact_value(value)
        return True


def _utc_iso(created: float) -> str:
    seconds = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, the record's extras, exception text."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor if redactor is not None else _default_redactor

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _utc_iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            out.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return self.redactor.redact(json.dumps(out, default=str, ensure_ascii=False))


class ConsoleFormatter(logging.Formatter):
    """Readable lines for a terminal: ``2024-05-01 12:00:00Z INFO    syncd.daemon: message``."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%SZ")
        self.converter = time.gmtime
        self.redactor = redactor if redactor is not None else _default_redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.redact(super().format(record))


LogFormat = Literal["auto", "json", "text"]

# Libraries that are chatty at INFO/DEBUG; their warnings still come through.
_QUIET_LOGGERS: Final = ("urllib3", "requests", "werkzeug", "hubspot", "simple_salesforce")


def setup_logging(
    level: int | str = "INFO",
    *,
    stream: TextIO | None = None,
    fmt: LogFormat = "auto",
    secrets: Iterable[str] = (),
) -> logging.Handler:
    """Install syncd's log handler on the root logger (replacing a previous one) and return it.

    ``fmt="auto"`` writes JSON lines unless ``stream`` (default stderr) is a terminal. ``level`` applies to
    syncd's own loggers; other libraries log warnings and above.
    """
    target = stream if stream is not None else sys.stderr
    for secret in secrets:
        register_secret(secret)
    json_lines = fmt == "json" or (fmt == "auto" and not _isatty(target))
    handler = logging.StreamHandler(target)
    handler.set_name(HANDLER_NAME)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json_lines else ConsoleFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("syncd").setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # APScheduler warns on every tick a long cycle spans ("maximum number of running instances reached"):
    # that is the non-overlap guarantee working, and the daemon logs overruns itself.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.captureWarnings(True)
    return handler


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def log_decision(subject: str, description: str, **fields: Any) -> None:
    """Log one decision at DEBUG on ``syncd.decisions``: a readable line plus its fields for JSON output."""
    logger = logging.getLogger(DECISIONS_LOGGER)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s: %s",
            subject,
            description,
            extra={"event": "decision", "subject": subject, "decision": fields},
        )
