"""The status page over HTTP: the daemon's health server serves ``/`` through ``StatusPage.handle``.

Read-only. On a loopback address anyone on the machine may read it (like ``/healthz``); on any other
address it requires the token held by the environment variable ``[daemon] status_token_env`` names, sent as
``Authorization: Bearer TOKEN`` or ``?token=TOKEN``. Without that variable set, a non-loopback page
answers 403 and says which variable to set.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from syncd.progress import Snapshot
from syncd.reports.status import Links, RulesInfo, gather, rules_info
from syncd.reports.status_page import render

__all__ = ["Request", "Response", "StatusPage", "is_loopback", "links_from_config", "links_from_file"]

log = logging.getLogger(__name__)

HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
DEFAULT_TOKEN_ENV = "SYNCD_STATUS_TOKEN"


@dataclass(frozen=True)
class Request:
    """What a route sees of an HTTP request."""

    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]

    @classmethod
    def parse(cls, target: str, headers: Mapping[str, str]) -> Request:
        path, _, query = target.partition("?")
        return cls(path, parse_qs(query), {k.lower(): v for k, v in headers.items()})


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


Route = Callable[[Request], Response]


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def links_from_config(config: Any) -> Links:
    """Record links for a loaded ``Config``: the sandbox's URLs when it runs against the sandbox."""
    info = getattr(config, "sandbox_info", None)
    portal = getattr(config.hubspot, "portal_id", None)
    if info is not None:
        return Links(info.instance_url, info.hubspot_host, portal or "sandbox")
    return Links(config.salesforce.instance_url, "https://app.hubspot.com", portal)


def links_from_file(config_path: Path) -> Links:
    """Record links from a config file without resolving any secret (``syncd status`` needs none)."""
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return Links()
    sf, hs, sb = (_section(data, name) for name in ("salesforce", "hubspot", "sandbox"))
    portal = hs.get("portal_id")
    portal = str(portal) if portal is not None else None
    info_file = sb.get("info_file")
    if isinstance(info_file, str):
        path = Path(info_file).expanduser()
        path = path if path.is_absolute() else config_path.parent / path
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            return Links(info["salesforce"]["instance_url"], info["hubspot"]["host"], portal or "sandbox")
        except (OSError, ValueError, KeyError, TypeError):
            return Links(None, None, None)
    instance = sf.get("instance_url")
    return Links(instance if isinstance(instance, str) else None, "https://app.hubspot.com", portal)


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


@dataclass
class StatusPage:
    """Builds the page on each request from the ledger and what the daemon knows (rules, reloads, progress).

    ``rules`` returns the live rule set; ``rules_state`` when it was loaded and the last refused reload's
    error; ``progress`` the running stage. ``token`` is None on loopback (no token needed), else required.
    """

    ledger_path: Path
    rules_directory: Path
    links: Links
    rules: Callable[[], Any]
    rules_state: Callable[[], tuple[datetime | None, str | None]]
    clock: Callable[[], datetime]
    progress: Callable[[], Snapshot | None] = lambda: None
    require_token: bool = False
    token: str | None = None
    token_env: str = DEFAULT_TOKEN_ENV
    refresh_seconds: int | None = 60
    routes: dict[str, Route] = field(init=False)

    def __post_init__(self) -> None:
        self.routes = {"/": self.handle, "/status": self.handle}

    def html(self) -> str:
        """The page as of now."""
        try:
            rules = self.rules()
        except Exception:
            rules = None
        loaded_at, error = self.rules_state()
        state: RulesInfo = rules_info(rules, self.rules_directory, loaded_at=loaded_at, error=error)
        data = gather(
            self.ledger_path,
            now=self.clock(),
            rules=rules,
            rules_state=state,
            links=self.links,
            progress=self.progress(),
        )
        return render(data, refresh_seconds=self.refresh_seconds)

    def authorised(self, request: Request) -> Response | None:
        """None when the request may see the page, else the refusal."""
        if not self.require_token:
            return None
        if not self.token:
            return Response(
                403,
                TEXT,
                f"the status page on a non-loopback address needs a token: set ${self.token_env}\n".encode(),
            )
        given = None
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        elif request.query.get("token"):
            given = request.query["token"][0]
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            return Response(
                401,
                TEXT,
                b"the status page needs its token: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
                (("WWW-Authenticate", 'Bearer realm="syncd"'),),
            )
        return None

    def handle(self, request: Request) -> Response:
        refused = self.authorised(request)
        if refused is not None:
            return refused
        try:
            body = self.html().encode()
        except Exception as exc:
            log.exception("the status page failed: %s", exc)
            return Response(500, TEXT, f"the status page failed: {type(exc).__name__}\n".encode())
        return Response(200, HTML, body, (("Content-Security-Policy", _CSP),))


# The page is self-contained: nothing from elsewhere, no form, no frame. pygal's inline config script needs
# 'unsafe-inline' for scripts; it loads nothing.
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
