"""The contract harness: one per system, so that one test file runs the same scenarios against both connectors.

Each test gets a freshly seeded sandbox (both servers in-process over HTTPS on free ports) and a harness that
knows, for its system, which object to use, how a human changes records through the unmodified client, how
to write around the server into its store, and how to read the final state back from the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd.config import parse_config
from syncd.connectors import Connector, connectors_from_config
from syncd.sandbox.ids import sf_id
from syncd.sandbox.runtime import Sandbox
from syncd.sandbox.salesforce import stored_record

REP = "sam.patel@northwind.example"
PERSONS = 300
# Fast by default: no client-side pacing worth the name and no real waiting between retries.
FAST = {"requests_per_10s": 100_000, "lookback_seconds": 0, "max_backoff": 5.0}


@dataclass
class Recorder:
    """An injected ``sleep``: records each requested delay and returns at once."""

    delays: list[float] = field(default_factory=list)
    hooks: list[Callable[[float], None]] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        for hook in list(self.hooks):
            hook(seconds)


@dataclass
class Harness:
    """The contract scenarios' view of one system and its sandbox server."""

    system: str
    sandbox: Sandbox
    info_file: Path
    sleep: Recorder
    object: str
    text_field: str
    owner_field: str

    # -- connectors

    def connector(self, **options: Any) -> Connector:
        config = parse_config(
            {"sandbox": {"info_file": str(self.info_file)}}, path=self.info_file.parent / "c.toml"
        )
        # HubSpot: the archived listing on every pull here (its interval has its own tests).
        hubspot = {"search_per_second": 1000, "archived_every_seconds": 0}
        extra = {**FAST, **(hubspot if self.system == "hubspot" else {}), **options}
        timing = {"sleep": options.pop("sleep", self.sleep)}
        extra.pop("sleep", None)
        sf, hs = connectors_from_config(config, **timing, **{self.system: extra})
        chosen, other = (sf, hs) if self.system == "salesforce" else (hs, sf)
        other.close()
        return chosen

    # -- the server

    @property
    def url(self) -> str:
        return self.sandbox.sf_url if self.system == "salesforce" else self.sandbox.hs_url

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.sandbox.control(self.system, method, path, body)

    def faults(self, **values: Any) -> None:
        self.control("PUT", "faults", values)

    def statuses(self) -> dict[str, int]:
        return dict(self.control("GET", "counts")["by_status"])

    def kinds(self) -> dict[str, int]:
        return dict(self.control("GET", "counts")["by_kind"])

    def reset_counts(self) -> None:
        self.control("POST", "counts/reset")

    # -- the store (final state)

    @property
    def store(self) -> Any:
        return self.sandbox.sf_store if self.system == "salesforce" else self.sandbox.hs_store

    def live_ids(self) -> set[str]:
        table = self.store.table(self.object).values()
        if self.system == "salesforce":
            return {r["Id"] for r in table if not r.get("IsDeleted")}
        return {r["id"] for r in table if not r.get("archived")}

    def editable_ids(self) -> list[str]:
        """Live records a write may change (converted Leads are read-only in Salesforce), sorted."""
        table = self.store.table(self.object).values()
        if self.system == "salesforce":
            return sorted(r["Id"] for r in table if not r.get("IsDeleted") and not r.get("IsConverted"))
        return sorted(r["id"] for r in table if not r.get("archived"))

    def value(self, id_: str, name: str) -> Any:
        record = self.store.get(self.object, id_)
        assert record is not None, f"{id_} is not in the store"
        return record[name] if self.system == "salesforce" else record["properties"].get(name)

    def records_with(self, name: str, value: str) -> list[str]:
        table = self.store.table(self.object).values()
        if self.system == "salesforce":
            return [r["Id"] for r in table if r.get(name) == value and not r.get("IsDeleted")]
        return [r["id"] for r in table if r["properties"].get(name) == value and not r.get("archived")]

    # -- a human at work, through the unmodified client

    def human_update(self, id_: str, value: str) -> None:
        if self.system == "salesforce":
            getattr(self.sandbox.salesforce_client(REP), self.object).update(id_, {self.text_field: value})
        else:
            api = self.sandbox.hubspot_client(REP).crm.contacts.basic_api
            api.update(id_, simple_public_object_input={"properties": {self.text_field: value}})

    def human_create(self, n: int) -> str:
        if self.system == "salesforce":
            result = self.sandbox.salesforce_client(REP).Lead.create(
                {"LastName": f"New{n}", "Company": "Acme"}
            )
            return str(result["id"])
        api = self.sandbox.hubspot_client(REP).crm.contacts.basic_api
        created = api.create(
            simple_public_object_input_for_create={"properties": {"email": f"new{n}@acme.example"}}
        )
        return str(created.id)

    def human_delete(self, id_: str) -> None:
        if self.system == "salesforce":
            self.sandbox.salesforce_client(REP).Lead.delete(id_)
        else:
            self.sandbox.hubspot_client(REP).crm.contacts.basic_api.archive(id_)

    # -- owners: a valid one, and one the system refuses (inactive user / archived owner)

    def owners(self) -> tuple[str, str, str]:
        """(an active owner id, an inactive owner id, the error code for the inactive one)."""
        if self.system == "salesforce":
            users = list(self.sandbox.sf_store.table("User").values())
            active = next(u["Id"] for u in users if u["IsActive"] and u["Email"].startswith("jack.miller"))
            inactive = next(u["Id"] for u in users if not u["IsActive"])
            return active, inactive, "INACTIVE_OWNER_OR_USER"
        owners = list(self.sandbox.hs_store.table("owners").values())
        active = next(o["id"] for o in owners if not o["archived"] and o["email"].startswith("jack.miller"))
        inactive = next(o["id"] for o in owners if o["archived"])
        return active, inactive, "INVALID_OWNER_ID"

    # -- writing around the server

    def insert_storm(self, count: int, at: datetime) -> list[str]:
        """``count`` new records that share one last-modified timestamp, as a bulk import leaves them."""
        ids: list[str] = []
        with self.store.lock:
            if self.system == "salesforce":
                spec = self.sandbox.sf_app.objects["Lead"]
                stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
                user = self.sandbox.sf_app.integration_user_id
                for n in range(count):
                    id_ = sf_id("00Q", 500_000 + n)
                    self.store.put(
                        "Lead", stored_record(spec, id_, stamp, user, LastName=f"Storm{n}", Company="Bulk")
                    )
                    ids.append(id_)
            else:
                first = int(self.store.meta("hs_seq", 1_000_000))
                stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
                for n in range(count):
                    id_ = str(first + n)
                    props = {
                        "hs_object_id": id_,
                        "email": f"storm{n}@bulk.example",
                        "createdate": stamp,
                        "lastmodifieddate": stamp,
                        "lastname": f"Storm{n}",
                    }
                    self.store.put(
                        "contacts",
                        {
                            "id": id_,
                            "properties": props,
                            "createdAt": stamp,
                            "updatedAt": stamp,
                            "archived": False,
                            "archivedAt": None,
                        },
                    )
                    ids.append(id_)
                self.store.set_meta("hs_seq", first + count)
            self.store.flush()
        if self.system == "hubspot":
            self.sandbox.hs_app.reindex()
        return ids


SYSTEMS = {
    "salesforce": {"object": "Lead", "text_field": "Title", "owner_field": "OwnerId"},
    "hubspot": {"object": "contacts", "text_field": "jobtitle", "owner_field": "hubspot_owner_id"},
}


def wait_a_tick() -> None:
    """Let the wall clock pass one millisecond, so server timestamps after this differ from those before."""
    start = datetime.now(UTC)
    while datetime.now(UTC) <= start:
        time.sleep(0.001)
