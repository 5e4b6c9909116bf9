"""Connection failures name the host and port and say what happened: refused, timed out, reset, TLS.

Each failure is real, on 127.0.0.1: a closed port, a listener that never answers, a listener that resets
every connection, and a plain-HTTP server where TLS is expected; each is met through the unmodified client
library (simple-salesforce, hubspot-api-client) and translated by ``syncd.connectors.errors``.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest
import requests
from hubspot import HubSpot
from simple_salesforce import Salesforce

from syncd.connectors.errors import hubspot_error, salesforce_error
from syncd.errors import ConnectorError, FatalConnectorError, RetriableError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _silent() -> Iterator[int]:
    """Accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


@contextlib.contextmanager
def _resetting() -> Iterator[int]:
    """Accepts each connection and closes it at once with a TCP reset."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def _plain_http() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _nothing() -> Iterator[int]:
    yield _closed_port()


def salesforce_call(port: int) -> ConnectorError:
    sf = Salesforce(
        instance_url=f"https://127.0.0.1:{port}", session_id="00Dx!secret", session=requests.Session()
    )
    sf.session.request = _with_timeout(sf.session.request)  # type: ignore[method-assign]
    try:
        sf.query("SELECT Id FROM Lead LIMIT 1")
    except Exception as exc:
        return salesforce_error(exc)
    raise AssertionError("the call succeeded")


def _with_timeout(fn: Callable[..., requests.Response]) -> Callable[..., requests.Response]:
    def call(*args: object, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 0.5)
        return fn(*args, **kwargs)

    return call


def hubspot_call(port: int) -> ConnectorError:
    client = HubSpot(access_token="pat-na1-secret", host=f"https://127.0.0.1:{port}", retry=False)
    try:
        client.crm.contacts.basic_api.get_page(limit=1, _request_timeout=0.5)
    except Exception as exc:
        return hubspot_error(exc)
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("call", [salesforce_call, hubspot_call], ids=["salesforce", "hubspot"])
@pytest.mark.parametrize(
    ("server", "words", "kind"),
    [
        pytest.param(_nothing, "connection refused", RetriableError, id="refused"),
        pytest.param(_silent, "timed out", RetriableError, id="timed-out"),
        pytest.param(_resetting, "connection reset", RetriableError, id="reset"),
        pytest.param(_plain_http, "TLS handshake", FatalConnectorError, id="tls"),
    ],
)
def test_a_connection_failure_names_host_port_and_what_happened(
    call: Callable[[int], ConnectorError],
    server: Callable[[], contextlib.AbstractContextManager[int]],
    words: str,
    kind: type[ConnectorError],
) -> None:
    with server() as port:
        error = call(port)
    assert isinstance(error, kind)
    message = str(error)
    assert f"127.0.0.1:{port}" in message
    assert words in message
    assert "\n" not in message
    assert "secret" not in message
    # No HTTP answer at all: the daemon's health counts the system unreachable.
    assert error.status is None
