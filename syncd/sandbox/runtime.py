"""A running sandbox: both servers in this process over HTTPS, with one CA, seeded stores and tokens.

``syncd sandbox serve`` wraps it in a process; tests start it directly (see ``tests/conftest.py``)::

    with Sandbox(seed=1, persons=300, rate_limits=False) as sandbox:
        sf = sandbox.salesforce_client()          # simple_salesforce.Salesforce as the integration user
        hs = sandbox.hubspot_client("sam.patel@northwind.example")

With ``data_dir`` the stores live in ``data_dir/salesforce.sqlite`` and ``data_dir/hubspot.sqlite``: a restart
keeps every record and token and does not seed again. Without it everything lives in memory. The files hold
every token: they are written mode 0600, and a directory the sandbox creates for them is mode 0700.

The ``/__sandbox/`` control endpoint of both servers takes one control token, new at every start, published
as ``control_token`` in ``info()`` (and so in the info file); ``control_request`` sends it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hubspot import HubSpot
from simple_salesforce import Salesforce

from syncd.core.systems import OrgSchema
from syncd.errors import SandboxError
from syncd.progress import NULL, Progress
from syncd.sandbox import hubspot as hs_module
from syncd.sandbox import salesforce as sf_module
from syncd.sandbox.base import CONTROL_HEADER, CONTROL_PREFIX, Faults, ServerThread, new_control_token
from syncd.sandbox.salesforce_oauth import DEFAULT_SESSION_SECONDS, make_signing_key
from syncd.sandbox.seed import INTEGRATION_EMAIL, REPS, generate
from syncd.sandbox.store import Store
from syncd.sandbox.tls import SandboxTLS, make_tls

INTEGRATION = "integration"
# Token user keys, the same in both systems: the integration, then every rep (inactive ones too, so a test can
# show what a departed rep's stale session is refused).
USER_KEYS: tuple[str, ...] = (INTEGRATION, *(rep.email for rep in REPS))
SF_FILE = "salesforce.sqlite"
HS_FILE = "hubspot.sqlite"
# Salesforce store meta key: how the data was seeded (seed, persons, now, counts), shown after a restart.
SEED_META = "syncd_seed"
# Short enough that stopping a fixture's servers is quick, long enough to cost nothing while serving.
_POLL_INTERVAL = 0.05


class Sandbox:
    """Both sandbox servers, started in this process; a context manager (``stop()`` flushes the stores)."""

    def __init__(
        self,
        *,
        seed: int = 1,
        persons: int = 1_000,
        rate_limits: bool = True,
        faults: Faults | None = None,
        sf_port: int = 0,
        hs_port: int = 0,
        data_dir: Path | str | None = None,
        now: datetime | None = None,
        schema: OrgSchema | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        salesforce_options: Mapping[str, Any] | None = None,
        hubspot_options: Mapping[str, Any] | None = None,
        search_lag_ms: int = 0,
        session_seconds: float = DEFAULT_SESSION_SECONDS,
    ) -> None:
        if persons < 0:
            raise SandboxError(f"persons must be 0 or more, not {persons}")
        if session_seconds <= 0:
            raise SandboxError(f"session_seconds must be more than 0, not {session_seconds:g}")
        if now is not None and now.tzinfo is None:
            raise SandboxError("now must be a timezone-aware datetime")
        self.seed = seed
        self.persons = persons
        self.rate_limits = rate_limits
        self.faults = faults or Faults()
        self.sf_port = sf_port
        self.hs_port = hs_port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.now = now
        self.schema = schema
        self.clock = clock
        self.sleep = sleep
        self.salesforce_options = dict(salesforce_options or {})
        self.hubspot_options = dict(hubspot_options or {})
        # HubSpot's search index lag (0 here, so in-process fixtures see writes at once unless a test asks;
        # `syncd sandbox serve` defaults to a realistic few seconds).
        if search_lag_ms < 0:
            raise SandboxError(f"search_lag_ms must be 0 or more, not {search_lag_ms}")
        self.hubspot_options.setdefault("search_lag_ms", search_lag_ms)
        # Idle seconds after which a Salesforce OAuth access token times out (pre-issued tokens never do).
        self.session_seconds = session_seconds
        # Filled by start():
        self.sf_store: Store
        self.hs_store: Store
        self.sf_app: sf_module.SalesforceApp
        self.hs_app: hs_module.HubSpotApp
        self.sf_server: ServerThread
        self.hs_server: ServerThread
        self.tls: SandboxTLS
        self.private_key_file: Path  # the connected app's key, for the JWT bearer flow
        self.seeded = False  # True when this start seeded the stores, False when it kept earlier data
        self.seed_summary: dict[str, Any] = {}
        self.startup_seconds = 0.0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._started = False
        self._stopped = False
        self._clients: dict[tuple[str, str], Any] = {}
        self.control_token = new_control_token()

    # -- lifecycle

    def start(self, *, progress: Progress = NULL) -> Sandbox:
        """Open (and seed, when empty) the stores, then serve both systems; returns self.

        ``progress`` hears how the seeding of an empty org goes (``syncd.sandbox.seed.generate``)."""
        if self._started:
            raise SandboxError("this sandbox is already started")
        began = time.perf_counter()
        self._started = True
        try:
            self._open_stores(progress)
            self._start_servers()
        except BaseException:
            self._teardown()
            raise
        self.startup_seconds = time.perf_counter() - began
        return self

    def _open_stores(self, progress: Progress = NULL) -> None:
        if self.data_dir is not None:
            try:
                private_directory(self.data_dir)
                self.sf_store = Store(self.data_dir / SF_FILE)
                self.hs_store = Store(self.data_dir / HS_FILE)
            except (OSError, ValueError) as exc:
                raise SandboxError(f"cannot use data directory {self.data_dir}: {exc}") from exc
            except Exception as exc:  # sqlite3.DatabaseError: not a database, or locked
                raise SandboxError(f"cannot open the sandbox data in {self.data_dir}: {exc}") from exc
        else:
            self.sf_store, self.hs_store = Store(), Store()
        sf_empty, hs_empty = self.sf_store.is_empty(), self.hs_store.is_empty()
        if sf_empty != hs_empty:
            raise SandboxError(
                f"{self.data_dir} holds data for only one of the two systems: remove the directory "
                "or choose another --data"
            )
        if sf_empty:
            now = self.now or datetime.fromtimestamp(self.clock(), UTC)
            summary = generate(
                self.sf_store, self.hs_store, seed=self.seed, persons=self.persons, now=now, progress=progress
            )
            self.seed_summary = {
                "seed": self.seed,
                "persons": self.persons,
                "now": now.isoformat(),
                "generated": summary,
            }
            self.sf_store.set_meta(SEED_META, self.seed_summary)
            # The HubSpot server stamps writes strictly after its last stamp: start it after the seeded data.
            seeded_ms = int(now.timestamp() * 1000)
            if int(self.hs_store.meta("hs_last_ms", 0)) < seeded_ms:
                self.hs_store.set_meta("hs_last_ms", seeded_ms)
            self.seeded = True
        else:
            self.seed_summary = dict(self.sf_store.meta(SEED_META, {}))

    def _start_servers(self) -> None:
        common: dict[str, Any] = {
            "schema": self.schema,
            "rate_limits": self.rate_limits,
            "seed": self.seed,
            "clock": self.clock,
            "sleep": self.sleep,
        }
        # Each server gets its own copy of the faults, so that changing one at runtime leaves the other alone.
        sf_options = {"session_seconds": self.session_seconds, **self.salesforce_options}
        self.sf_app = sf_module.SalesforceApp(
            self.sf_store, faults=dataclasses.replace(self.faults), **common, **sf_options
        )
        self.hs_app = hs_module.HubSpotApp(
            self.hs_store, faults=dataclasses.replace(self.faults), **common, **self.hubspot_options
        )
        # One control token for both servers: the info file names it once.
        self.sf_app.control_token = self.hs_app.control_token = self.control_token
        for key in USER_KEYS:
            self.sf_app.add_token(key)
            self.hs_app.add_token(key)
        self.sf_store.flush()
        self.hs_store.flush()
        if self.data_dir is not None:
            tls_dir = self.data_dir / "tls"
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="syncd-sandbox-")
            tls_dir = Path(self._tmp.name)
        self.tls = make_tls(tls_dir)
        # Like the CA, the connected app's certificate is made anew at each start (and uploaded to the app).
        self.private_key_file, certificate = make_signing_key(tls_dir)
        self.sf_app.oauth.install_certificate(certificate)
        self.sf_store.flush()
        self.sf_server = self._serve(self.sf_app, self.sf_port, "--sf-port")
        self.hs_server = self._serve(self.hs_app, self.hs_port, "--hs-port")

    def _serve(self, app: Any, port: int, option: str) -> ServerThread:
        if port:
            # werkzeug reports a taken port on stderr and exits the process: find out first, and say it in one line.
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError as exc:
                    raise SandboxError(
                        f"cannot listen on 127.0.0.1:{port} ({exc.strerror}): choose another {option}"
                    ) from exc
        try:
            server = ServerThread(app, port=port, ssl_context=self.tls.context, poll_interval=_POLL_INTERVAL)
        except (OSError, SystemExit) as exc:
            raise SandboxError(f"cannot listen on 127.0.0.1:{port}: choose another {option}") from exc
        return server.start()

    def stop(self) -> None:
        """Stop both servers and flush the stores to disk; safe to call twice."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        self._teardown()

    def _teardown(self) -> None:
        for name in ("sf_server", "hs_server"):
            server = getattr(self, name, None)
            if server is not None:
                server.stop()
        for name in ("sf_store", "hs_store"):
            store = getattr(self, name, None)
            if store is not None:
                store.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Sandbox:
        return self.start() if not self._started else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what clients need

    @property
    def sf_url(self) -> str:
        return self.sf_server.url

    @property
    def hs_url(self) -> str:
        return self.hs_server.url

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_file

    @property
    def api_version(self) -> str:
        return self.sf_app.api_version

    def info(self) -> dict[str, Any]:
        """What a client needs to connect, as written to ``--info FILE`` (it holds tokens: keep it private).

        ``salesforce.oauth`` holds the integration user's connected app (consumer key and secret), password,
        security token, refresh token and the path of the private key for the JWT bearer flow, to log in at
        ``salesforce.login_url`` with any OAuth grant.
        """
        return {
            "salesforce": {
                "instance_url": self.sf_url,
                # The same server answers /services/oauth2/token, as a My Domain login host would.
                "login_url": self.sf_url,
                "api_version": self.api_version,
                "ca_file": str(self.ca_file.resolve()),
                "tokens": self.sf_app.tokens,
                "oauth": self.sf_app.oauth.credentials(self.private_key_file),
                "control": self.sf_url + CONTROL_PREFIX,
            },
            "hubspot": {
                "host": self.hs_url,
                "ca_file": str(self.ca_file.resolve()),
                "tokens": self.hs_app.tokens,
                "control": self.hs_url + CONTROL_PREFIX,
            },
            "integration_user": INTEGRATION_EMAIL,
            # Sent as the X-Sandbox-Control-Token header to the "control" URLs above (control_request()).
            "control_token": self.control_token,
            "pid": os.getpid(),
        }

    def control(self, system: str, method: str, path: str, body: Any = None) -> Any:
        """A request to one server's ``/__sandbox/`` endpoint with the control token; the JSON answer."""
        return control_request(self.info(), system, method, path, body)

    def salesforce_client(self, user: str = INTEGRATION) -> Salesforce:
        """A simple-salesforce client acting as ``user`` ("integration" or a rep's email); cached per user."""
        key = ("salesforce", user)
        if key not in self._clients:
            token = self.sf_app.tokens.get(user)
            if token is None:
                raise SandboxError(f"no Salesforce token for user {user!r}")
            self._clients[key] = Salesforce(
                instance_url=self.sf_url,
                session_id=token,
                session=sf_module.client_session(self.ca_file),
                version=self.api_version,
            )
        client: Salesforce = self._clients[key]
        return client

    def hubspot_client(self, user: str = INTEGRATION) -> HubSpot:
        """A hubspot-api-client acting as ``user`` ("integration" or a rep's email); cached per user."""
        key = ("hubspot", user)
        if key not in self._clients:
            token = self.hs_app.tokens.get(user)
            if token is None:
                raise SandboxError(f"no HubSpot token for user {user!r}")
            self._clients[key] = hs_module.client(self.hs_url, token, self.ca_file)
        client: HubSpot = self._clients[key]
        return client

    def counts(self) -> dict[str, dict[str, int]]:
        """Records per object type in each store, as they are now."""
        return store_counts(self.sf_store, self.hs_store, self.sf_app.schema)


def store_counts(
    sf_store: Store, hs_store: Store, schema: OrgSchema | None = None
) -> dict[str, dict[str, int]]:
    """Records per object type in a Salesforce and a HubSpot store."""
    schema = schema or OrgSchema()
    hs_types = [*sorted(schema.hubspot), "owners", "associations"]
    return {
        "salesforce": {name: sf_store.count(name) for name in sorted(schema.salesforce)},
        "hubspot": {name: hs_store.count(name) for name in hs_types},
    }


def private_directory(path: Path) -> None:
    """Create ``path`` (and missing parents) mode 0700; an existing directory is left as it is."""
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for created in missing:
        # mkdir's mode is filtered by the umask, and parents= ignores it for the parents: set it exactly.
        os.chmod(created, 0o700)


def control_request(
    info: Mapping[str, Any], system: str, method: str, path: str, body: Any = None, *, timeout: float = 30
) -> Any:
    """A request to ``/__sandbox/<path>`` of one system ("salesforce" or "hubspot") of the sandbox an info
    dict describes, with its control token; the JSON answer. Raises requests.HTTPError on a refusal."""
    import requests

    section = info[system]
    response = requests.request(
        method,
        str(section["control"]).rstrip("/") + "/" + path.lstrip("/"),
        json=body,
        headers={CONTROL_HEADER: str(info.get("control_token", ""))},
        verify=str(section["ca_file"]),
        timeout=timeout,
    )
    response.raise_for_status()
    return response.json() if response.content else None


def write_info(path: Path, info: Mapping[str, Any]) -> None:
    """Write the info file atomically with mode 0600 (it holds tokens): readers never see half a file."""
    private_directory(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
