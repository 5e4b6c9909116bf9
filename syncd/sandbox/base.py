"""What both sandbox servers share: WSGI plumbing, bearer tokens, request counts, injected faults, the
``/__sandbox/`` control endpoint, and a server thread that serves HTTPS on 127.0.0.1 with persistent
HTTP/1.1 connections (every response has a Content-Length and a ``Date`` from the server's clock).

A server subclasses ``SandboxApp``: it lists its routes (each endpoint named ``kind`` for counting), says
how it rejects a bad token, enforces its own rate limits and decorates responses with its usage headers.

Control endpoint (never counted, loopback only). It hands out every token and can break the servers, so
each request must carry the control token (a random one per start, in the info file as ``control_token``)
in the ``X-Sandbox-Control-Token`` header: without it the answer is 401, with a wrong one 403.

    GET  /__sandbox/counts          {"total", "by_kind": {"GET query": n}, "by_status": {"200": n}}
    POST /__sandbox/counts/reset
    GET  /__sandbox/faults          PUT it with any subset of Faults' fields
    GET  /__sandbox/limits          PUT it with the server's limit settings (see limits_state())
    GET  /__sandbox/tokens          {"<user key>": "<token>"}
    POST /__sandbox/tokens/revoke   {"user": "<user key>"}: the token stops working at once
"""

from __future__ import annotations

import abc
import contextlib
import hmac
import io
import json
import logging
import random
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, NotFound
from werkzeug.http import http_date
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from syncd.core.systems import OrgSchema
from syncd.sandbox.store import Store

log = logging.getLogger(__name__)
CONTROL_PREFIX = "/__sandbox/"
CONTROL_HEADER = "X-Sandbox-Control-Token"


def new_control_token() -> str:
    """A fresh random control token (256 bits)."""
    return secrets.token_urlsafe(32)


@dataclass
class Faults:
    """Probabilities (0..1) of injected failures per request, and added latency."""

    status_429: float = 0.0  # HubSpot: a 429 TEN_SECONDLY_ROLLING; Salesforce sends no 429, so a 503 there
    status_503: float = 0.0
    timeout: float = 0.0  # hold the request for hang_seconds, then drop the connection
    reset: float = 0.0  # drop the connection without a response
    latency_ms: float = 0.0
    hang_seconds: float = 2.0
    retry_after: float | None = None  # seconds, sent as Retry-After with injected 429/503 when set

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        for key, value in values.items():
            setattr(self, key, None if value is None else float(value))


class Counters:
    """Thread-safe request counts by "METHOD kind" and by status code."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_kind: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()

    def hit(self, method: str, kind: str, status: int) -> None:
        with self._lock:
            self.by_kind[f"{method} {kind}"] += 1
            self.by_status[str(status)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self.by_kind.values()),
                "by_kind": dict(self.by_kind),
                "by_status": dict(self.by_status),
            }

    def reset(self) -> None:
        with self._lock:
            self.by_kind.clear()
            self.by_status.clear()


class DropConnection(Exception):
    """Raised inside a handler to close the connection without a response (reset and timeout faults)."""

    def __init__(self, fault: str = "reset") -> None:
        super().__init__(fault)
        self.fault = fault


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        headers=headers,
        content_type="application/json;charset=UTF-8",
    )


class SandboxApp(abc.ABC):
    """Base WSGI application of one sandbox server."""

    system: ClassVar[str] = ""

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
        control_token: str | None = None,
    ) -> None:
        self.store = store
        self.control_token = control_token or new_control_token()
        self.schema = schema or OrgSchema()
        self.rate_limits = rate_limits
        self.faults = faults or Faults()
        self.counters = Counters()
        self.clock = clock
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.url_map = Map(self.routes(), strict_slashes=False, merge_slashes=False)

    # -- what a server supplies

    @abc.abstractmethod
    def routes(self) -> list[Rule]:
        """werkzeug rules; each rule's endpoint is a kind name with a method ``on_<kind>`` to handle it."""

    @abc.abstractmethod
    def auth_failed(self, request: Request) -> Response:
        """The response to a missing or unknown bearer token."""

    @abc.abstractmethod
    def error(self, status: int, message: str, code: str = "") -> Response:
        """A response in this system's error format."""

    def before_auth(self, request: Request, kind: str, values: Mapping[str, Any]) -> Response | None:
        """A response given before the bearer token is checked (public resources, unknown API versions)."""
        return None

    def check_limits(self, user: str, token: str, kind: str, request: Request) -> Response | None:
        """Enforce rate limits and allowances; a response refuses the request. Called before handling."""
        return None

    def decorate(self, response: Response, user: str, token: str, kind: str) -> None:
        """Add usage headers (Sforce-Limit-Info, X-HubSpot-RateLimit-*) to every authenticated response."""
        return None

    def limits_state(self) -> dict[str, Any]:
        return {"rate_limits": self.rate_limits}

    def set_limits(self, values: dict[str, Any]) -> None:
        if "rate_limits" in values:
            self.rate_limits = bool(values["rate_limits"])

    # -- tokens: one per user key ("integration" or a user's email), kept in the store across restarts

    @property
    def tokens(self) -> dict[str, str]:
        """user key -> token."""
        return dict(self.store.meta("tokens", {}))

    def add_token(self, user: str, token: str | None = None) -> str:
        tokens = self.tokens
        if user not in tokens:
            tokens[user] = token or f"{self.system[:2]}-{user.split('@')[0]}-{self.rng.getrandbits(64):016x}"
            self.store.set_meta("tokens", tokens)
            self._by_token = {t: u for u, t in tokens.items()}
        return tokens[user]

    def user_for_token(self, token: str) -> str | None:
        by_token = getattr(self, "_by_token", None)
        if by_token is None:
            by_token = self._by_token = {t: u for u, t in self.tokens.items()}
        return by_token.get(token)

    # -- WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            response = self.handle(request)
            # The server's clock, as every HTTP origin server with a clock sends it (RFC 9110 section 6.6.1,
            # "Date"): the injected clock, so clients that anchor watermarks to it see the sandbox's time.
            response.headers["Date"] = http_date(self.clock())
        except DropConnection as drop:
            # One line, no traceback; logged before the drop, so a client that sees it finds it logged.
            log.info(
                "%s: injected fault %s: dropped %s %s without a response",
                self.system,
                drop.fault,
                request.method,
                request.path,
            )
            sock = environ.get("werkzeug.socket")
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return []  # nothing started: the handler closes the connection without a response
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            refused = self.control_refused(request)
            return refused if refused is not None else self.control(request)
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            kind, values = adapter.match()
        except (NotFound, MethodNotAllowed) as exc:
            return self.error(
                exc.code or 404, f"The requested resource does not exist: {request.path}", "NOT_FOUND"
            )
        except HTTPException as exc:
            return self.error(exc.code or 400, exc.description or "bad request", "BAD_REQUEST")
        early = self.before_auth(request, str(kind), values)
        if early is not None:
            self.counters.hit(request.method, str(kind), early.status_code)
            return early
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        user = self.user_for_token(token) if token else None
        if user is None:
            response = self.auth_failed(request)
            self.counters.hit(request.method, str(kind), response.status_code)
            return response
        fault = self.inject_fault()
        if fault is not None:
            self.counters.hit(request.method, str(kind), fault.status_code)
            return fault
        refused = self.check_limits(user, token, str(kind), request) if self.rate_limits else None
        if refused is not None:
            response = refused
        else:
            with self.store.lock:
                try:
                    response = getattr(self, f"on_{kind}")(request, user=user, **values)
                finally:
                    self.store.flush()
        self.decorate(response, user, token, str(kind))
        self.counters.hit(request.method, str(kind), response.status_code)
        return response

    def inject_fault(self) -> Response | None:
        f = self.faults
        if f.latency_ms:
            self.sleep(f.latency_ms / 1000.0)
        roll = self.rng.random()
        for name in ("reset", "timeout", "status_429", "status_503"):
            p = getattr(f, name)
            if roll < p:
                return self.fault_response(name)
            roll -= p
        return None

    def fault_response(self, name: str) -> Response:
        if name == "reset":
            raise DropConnection("reset")
        if name == "timeout":
            self.sleep(self.faults.hang_seconds)
            raise DropConnection("timeout")
        status = 429 if name == "status_429" else 503
        response = self.error(status, "Injected fault: try again later", "SERVER_UNAVAILABLE")
        if self.faults.retry_after is not None:
            response.headers["Retry-After"] = f"{self.faults.retry_after:g}"
        return response

    def control_refused(self, request: Request) -> Response | None:
        """401 without the control token, 403 with a wrong one; None when the request may proceed."""
        given = request.headers.get(CONTROL_HEADER, "")
        if not given:
            return json_response(
                {
                    "error": f"the control endpoint needs the {CONTROL_HEADER} header (control_token in the info file)"
                },
                status=401,
            )
        if not hmac.compare_digest(given.encode(), self.control_token.encode()):
            return json_response({"error": "wrong control token"}, status=403)
        return None

    def revoke_token(self, user: str) -> None:
        """Revoke a user's token: every later request with it is refused as a real revoked token is."""
        tokens = self.tokens
        if user not in tokens:
            raise ValueError(f"no token for user {user!r}")
        del tokens[user]
        self.store.set_meta("tokens", tokens)
        self._by_token = {t: u for u, t in tokens.items()}

    def control(self, request: Request) -> Response:
        path = request.path[len(CONTROL_PREFIX) :].strip("/")
        try:
            body = request.get_json(silent=True) or {}
            if path == "counts" and request.method == "GET":
                return json_response(self.counters.snapshot())
            if path == "counts/reset" and request.method == "POST":
                self.counters.reset()
                return json_response(self.counters.snapshot())
            if path == "faults":
                if request.method in ("PUT", "POST", "PATCH"):
                    self.faults.update(body)
                return json_response(asdict(self.faults))
            if path == "limits":
                if request.method in ("PUT", "POST", "PATCH"):
                    self.set_limits(body)
                return json_response(self.limits_state())
            if path == "tokens" and request.method == "GET":
                return json_response(self.tokens)
            if path == "tokens/revoke" and request.method == "POST":
                # Salesforce: an admin revokes a session (Setup > Session Management, or POST
                # /services/oauth2/revoke, "Revoke OAuth Tokens" in the Salesforce Help); HubSpot: a private
                # app's token is rotated or the app deleted ("Private apps", Rotate access token). Either
                # way every later call with the old token is refused with a 401.
                self.revoke_token(str(body.get("user", "")))
                return json_response({"revoked": body.get("user")})
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response(
            {"error": f"unknown control endpoint {request.method} {request.path}"}, status=404
        )


class KeepAliveHandler(WSGIRequestHandler):
    """HTTP/1.1 with persistent connections, as both real services keep them (each call through one client
    session reuses its TLS connection instead of paying a new handshake).

    werkzeug's own handler always sends ``Connection: close`` because it cannot drain an unread request body
    before the next request line. This one reads the whole body (by Content-Length) before the app runs, sends
    every response with a Content-Length, and so can serve the next request on the same connection. A request
    it cannot frame (a chunked upload), a dropped connection or ``Connection: close`` from the client ends it.
    """

    protocol_version = "HTTP/1.1"
    timeout = 120  # seconds an idle connection is kept open

    def setup(self) -> None:
        super().setup()
        tracker = getattr(self.server, "connections", None)
        if isinstance(tracker, ConnectionTracker):
            tracker.opened(self.connection)

    def finish(self) -> None:
        tracker = getattr(self.server, "connections", None)
        if isinstance(tracker, ConnectionTracker):
            tracker.closed(self.connection)
        super().finish()

    def make_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().make_environ()
        if environ.get("wsgi.input_terminated"):  # chunked request body: read as it comes, then close
            self.close_connection = True
            return environ
        length = int(self.headers.get("Content-Length") or 0)
        environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
        return environ

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.make_environ()
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return lambda data: None

        try:
            chunks = self.server.app(environ, start_response)
            try:
                body = b"".join(chunks)
            finally:
                if hasattr(chunks, "close"):
                    chunks.close()
        except (ConnectionError, TimeoutError, OSError) as exc:
            self.close_connection = True
            self.connection_dropped(exc, environ)
            return
        except Exception:
            # A bug in a handler: answer 500 as werkzeug's own handler does, and start afresh.
            log.exception("sandbox: error on %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            self.close_connection = True
            body = b"".join(InternalServerError()(environ, start_response))
        if not started:  # the app dropped the connection on purpose (an injected fault)
            self.close_connection = True
            return
        status, headers = started
        code_text, _, reason = str(status).partition(" ")
        code = int(code_text)
        self.log_request(code)
        self.send_response_only(code, reason)
        self.send_header("Server", self.version_string())
        if not any(key.lower() == "date" for key, _ in headers):
            self.send_header("Date", self.date_time_string())
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        if code >= 200 and code not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and environ["REQUEST_METHOD"] != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()


class ConnectionTracker:
    """Open client connections of one server: counted (tests assert reuse) and closed when it stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.accepted = 0

    def opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)
            self.accepted += 1

    def closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def close_all(self) -> None:
        with self._lock:
            socks = list(self._open)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class ServerThread:
    """Serves a WSGI app over HTTPS on 127.0.0.1 in a background thread (port 0 picks a free port)."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: Any = None,
        poll_interval: float = 0.5,
    ) -> None:
        # poll_interval bounds how long stop() waits for the serving loop to notice; tests use a short one.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=KeepAliveHandler, ssl_context=ssl_context
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]  # ThreadingMixIn's, when threaded
        self.connections = ConnectionTracker()
        self._server.connections = self.connections  # type: ignore[attr-defined]  # read by the handler
        # Accepted sockets inherit it: without it Nagle holds back the small TLS records (tickets, then the
        # response) behind the client's delayed ACK, ~12 ms a call instead of ~3 ms.
        self._server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = host
        self.port = int(self._server.server_port)
        self.scheme = "https" if ssl_context is not None else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name=f"sandbox:{self.port}",
            kwargs={"poll_interval": poll_interval},
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        # Kept-alive connections would otherwise go on being served by the stopped app.
        self.connections.close_all()
        self._thread.join(timeout=5)
