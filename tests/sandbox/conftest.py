"""Fixtures for the sandbox servers' own tests: each server runs in-process over HTTPS on a free port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hubspot import HubSpot

from syncd.sandbox.base import ServerThread
from syncd.sandbox.hubspot import HubSpotApp, client
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
