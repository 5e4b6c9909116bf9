"""Fixtures for the sandbox servers' own tests: each server runs in-process over HTTPS on a free port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from hubspot import HubSpot
from simple_salesforce import Salesforce

from syncd.core.systems import SALESFORCE_OBJECTS
from syncd.sandbox.base import CONTROL_HEADER, ServerThread
from syncd.sandbox.hubspot import HubSpotApp, client
from syncd.sandbox.ids import sf_id
from syncd.sandbox.salesforce import SalesforceApp, stored_record
from syncd.sandbox.salesforce import client_session as sf_client_session
from syncd.sandbox.store import Store
from syncd.sandbox.tls import SandboxTLS, make_tls

# ------------------------------------------------------------------------------------------- HubSpot (hs_*)

HS_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z
# A few of the Northwind reps as HubSpot owners: (owner id, email local part, userId, archived).
HS_OWNERS = [
    ("101", "sam.patel", 9001, False),
    ("102", "lena.novak", 9002, False),
    ("103", "jack.miller", 9003, False),
    ("104", "grace.kim", 9004, True),
    ("105", "olivia.davis", 9005, True),
]


@dataclass
class HsClock:
    """A clock that moves only when told; injected as the server's ``clock``."""

    now: float = HS_EPOCH

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class HsSandbox:
    """One running HubSpot sandbox and the way to reach it through hubspot-api-client."""

    app: HubSpotApp
    server: ServerThread
    tls: SandboxTLS
    clock: HsClock
    _clients: dict[str, HubSpot] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.app.store

    def client(self, user: str = "integration") -> HubSpot:
        if user not in self._clients:
            self._clients[user] = client(self.server.url, self.app.add_token(user), self.tls.ca_file)
        return self._clients[user]


def hs_owner_rows() -> list[dict[str, Any]]:
    return [
        {
            "id": oid,
            "email": f"{local}@northwind.example",
            "firstName": local.split(".")[0].title(),
            "lastName": local.split(".")[1].title(),
            "userId": uid,
            "type": "PERSON",
            "createdAt": "2024-01-01T00:00:00.000Z",
            "updatedAt": "2024-01-01T00:00:00.000Z",
            "archived": archived,
            "teams": [{"id": "5200001", "name": "Sales", "primary": True}],
        }
        for oid, local, uid, archived in HS_OWNERS
    ]


@pytest.fixture(scope="session")
def hs_tls(tmp_path_factory: pytest.TempPathFactory) -> SandboxTLS:
    return make_tls(tmp_path_factory.mktemp("hs-tls"))


@pytest.fixture
def hs_clock() -> HsClock:
    return HsClock()


@pytest.fixture
def hs_start(hs_tls: SandboxTLS, hs_clock: HsClock) -> Iterator[Callable[..., HsSandbox]]:
    """Starts HubSpot sandboxes (owners seeded, fake clock, rate limits off unless asked); stops them after."""
    running: list[ServerThread] = []

    def start(store: Store | None = None, **options: Any) -> HsSandbox:
        store = store if store is not None else Store()
        if store.count("owners") == 0:
            store.put_many("owners", hs_owner_rows())
        options.setdefault("rate_limits", False)
        app = HubSpotApp(store, clock=hs_clock, **options)
        server = ServerThread(app, ssl_context=hs_tls.context, poll_interval=0.02).start()
        running.append(server)
        return HsSandbox(app, server, hs_tls, hs_clock)

    yield start
    for server in running:
        server.stop()


@pytest.fixture
def hs_sandbox(hs_start: Callable[..., HsSandbox]) -> HsSandbox:
    return hs_start()


# ------------------------------------------------------------------------------------------- Salesforce (sf_*)

SF_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z
# A few of the Northwind reps as Salesforce Users: (email local part, active).
SF_REPS = [
    ("sam.patel", True),
    ("jack.miller", True),
    ("lukas.schmidt", True),
    ("olivia.davis", False),
    ("grace.kim", False),
]
SF_QUEUES = [("Unassigned Leads", "Unassigned_Leads"), ("EMEA Lead Queue", "EMEA_Lead_Queue")]
SF_SEED_STAMP = "2025-06-01T00:00:00.000+0000"


@dataclass
class SfClock:
    """A clock that moves only when told; injected as the Salesforce server's ``clock``."""

    now: float = SF_EPOCH

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SfSandbox:
    """One running Salesforce sandbox, reached through simple-salesforce like a real org."""

    app: SalesforceApp
    server: ServerThread
    tls: SandboxTLS
    clock: SfClock
    _clients: dict[str, Salesforce] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.app.store

    def client(self, user: str = "integration") -> Salesforce:
        """A client acting as ``user`` ("integration" or a rep's email), with its own token."""
        if user not in self._clients:
            self._clients[user] = Salesforce(
                instance_url=self.server.url,
                session_id=self.app.add_token(user),
                session=sf_client_session(self.tls.ca_file),
            )
        return self._clients[user]

    def control(self, method: str, path: str, body: Any = None) -> requests.Response:
        """The sandbox-only /__sandbox/ endpoint (the client has no helper for it)."""
        return sf_client_session(self.tls.ca_file).request(
            method,
            f"{self.server.url}/__sandbox/{path}",
            json=body,
            headers={CONTROL_HEADER: self.app.control_token},
        )

    def user_id(self, local: str) -> str:
        """The User id of a seeded rep, by email local part."""
        return self.app.user_id_for(f"{local}@northwind.example")

    def queue_id(self, developer_name: str) -> str:
        return next(
            g["Id"] for g in self.store.table("Group").values() if g["DeveloperName"] == developer_name
        )


def sf_seed_org(store: Store) -> None:
    """The reps and queues the Salesforce tests rely on, written straight to the store."""
    users = SALESFORCE_OBJECTS["User"]
    groups = SALESFORCE_OBJECTS["Group"]
    rows = []
    for n, (local, active) in enumerate(SF_REPS, start=101):
        first, last = (p.title() for p in local.split("."))
        email = f"{local}@northwind.example"
        rows.append(
            stored_record(
                users,
                sf_id("005", n),
                SF_SEED_STAMP,
                sf_id("005", n),
                Username=email,
                Email=email,
                FirstName=first,
                LastName=last,
                IsActive=active,
                UserType="Standard",
            )
        )
    store.put_many("User", rows)
    store.put_many(
        "Group",
        [
            stored_record(
                groups,
                sf_id("00G", n),
                SF_SEED_STAMP,
                sf_id("005", 101),
                Name=name,
                DeveloperName=dev,
                Type="Queue",
            )
            for n, (name, dev) in enumerate(SF_QUEUES, start=1)
        ],
    )


@pytest.fixture(scope="session")
def sf_tls(tmp_path_factory: pytest.TempPathFactory) -> SandboxTLS:
    return make_tls(tmp_path_factory.mktemp("sf-tls"))


@pytest.fixture
def sf_clock() -> SfClock:
    return SfClock()


@pytest.fixture
def sf_start(sf_tls: SandboxTLS, sf_clock: SfClock) -> Iterator[Callable[..., SfSandbox]]:
    """Starts Salesforce sandboxes (reps and queues seeded, fake clock); stops them after the test."""
    running: list[ServerThread] = []

    def start(store: Store | None = None, **options: Any) -> SfSandbox:
        store = store if store is not None else Store()
        if store.count("User") == 0:
            sf_seed_org(store)
        app = SalesforceApp(store, clock=sf_clock, **options)
        server = ServerThread(app, ssl_context=sf_tls.context, poll_interval=0.02).start()
        running.append(server)
        return SfSandbox(app, server, sf_tls, sf_clock)

    yield start
    for server in running:
        server.stop()


@pytest.fixture
def sf_sandbox(sf_start: Callable[..., SfSandbox]) -> SfSandbox:
    return sf_start()
