"""What the end-to-end tests read from the two systems: their records, their request counts, and whether
the records show what the ledger says the engine decided.

Everything goes through the unmodified clients (simple-salesforce, hubspot-api-client) and the sandbox's
``/__sandbox/`` control endpoint, so the same helpers serve an in-process sandbox and one served by
``syncd sandbox serve`` in its own process (both describe themselves with the same info dict).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubspot import HubSpot
from simple_salesforce import Salesforce

from syncd.core.link import META_FIELDS, group
from syncd.core.rules import RuleSet
from syncd.ledger import Ledger
from syncd.sandbox import hubspot as hs_module
from syncd.sandbox import salesforce as sf_module
from syncd.sandbox.runtime import control_request

SF_OBJECTS = {
    "Lead": "Id, Email, OwnerId, Status, IsConverted, IsDeleted, Syncd_HubSpot_Id__c, Syncd_Stage__c, "
    "Syncd_Score__c, Company, LastName, FirstName, Country, NumberOfEmployees, Title",
    "Contact": "Id, Email, OwnerId, AccountId, IsDeleted, Syncd_HubSpot_Id__c, Syncd_Stage__c, "
    "Syncd_Score__c, MailingCountry",
    "Account": "Id, Website, OwnerId, IsDeleted, Syncd_HubSpot_Id__c, Syncd_Stage__c, BillingCountry, "
    "NumberOfEmployees",
}
HS_OBJECTS = {
    "contacts": [
        "email",
        "hubspot_owner_id",
        "lifecyclestage",
        "syncd_score",
        "syncd_salesforce_id",
    ],
    "companies": ["domain", "hubspot_owner_id", "lifecyclestage", "syncd_salesforce_id"],
}
# Request kinds (the sandbox counts "METHOD endpoint") that change data, and those that only read.
WRITE_ENDPOINTS = frozenset(
    {
        "create",
        "update",
        "upsert",
        "delete",
        "delete_by_external_id",
        "collection_create",
        "collection_update",
        "collection_upsert",
        "collection_delete",
        "bulk_ingest_create",
        "bulk_ingest_upload",
        "bulk_ingest_state",
        "archive",
        "batch_create",
        "batch_update",
        "batch_upsert",
        "batch_archive",
        "assoc_create",
        "assoc_create_default",
        "assoc_archive",
        "assoc_batch_create",
        "assoc_batch_default",
        "assoc_batch_archive",
    }
)
READ_ENDPOINTS = frozenset(
    {
        "query",
        "query_all",
        "query_more",
        "query_all_more",
        # syncd sends only queries in /composite (its pulls' delta queries, one call for all objects); its
        # writes go through sObject Collections (collection_*), counted as writes above.
        "composite",
        "retrieve",
        "retrieve_by_external_id",
        "describe",
        "sobject_info",
        "sobjects",
        "limits",
        "versions",
        "resources",
        "get_deleted",
        "get_updated",
        "collection_retrieve",
        "bulk_query_create",
        "bulk_query_list",
        "bulk_query_info",
        "bulk_query_results",
        "list",
        "get",
        "search",
        "batch_read",
        "owners",
        "owner",
        "properties",
        "property",
        "assoc_list",
        "assoc_batch_read",
    }
)


@dataclass
class Systems:
    """Both sandbox servers as a client sees them, from a sandbox's info dict."""

    info: Mapping[str, Any]
    _sf: Salesforce | None = field(default=None, repr=False)
    _hs: HubSpot | None = field(default=None, repr=False)

    @classmethod
    def from_file(cls, path: Path) -> Systems:
        return cls(json.loads(path.read_text()))

    @property
    def ca(self) -> str:
        return str(self.info["salesforce"]["ca_file"])

    def salesforce(self, user: str = "integration") -> Salesforce:
        sf = self.info["salesforce"]
        client = Salesforce(
            instance_url=sf["instance_url"],
            session_id=sf["tokens"][user],
            session=sf_module.client_session(self.ca),
            version=sf["api_version"],
        )
        if user == "integration":
            self._sf = client
        return client

    def hubspot(self, user: str = "integration") -> HubSpot:
        hs = self.info["hubspot"]
        return hs_module.client(hs["host"], hs["tokens"][user], self.ca)

    # -- request counts

    def _control(self, system: str, method: str, path: str) -> Any:
        return control_request(self.info, system, method, path)

    def kinds(self) -> dict[str, dict[str, int]]:
        """Requests served so far, per system and "METHOD endpoint"."""
        return {s: dict(self._control(s, "GET", "counts")["by_kind"]) for s in ("salesforce", "hubspot")}

    def reset_counts(self) -> None:
        for system in ("salesforce", "hubspot"):
            self._control(system, "POST", "counts/reset")

    def write_calls(self) -> dict[str, int]:
        """Requests that change data, per "system METHOD endpoint"; an endpoint of unknown nature fails."""
        out: dict[str, int] = {}
        for system, kinds in self.kinds().items():
            for kind, n in kinds.items():
                endpoint = kind.split(" ", 1)[1]
                assert endpoint in WRITE_ENDPOINTS | READ_ENDPOINTS, f"unclassified request kind {kind!r}"
                if endpoint in WRITE_ENDPOINTS:
                    out[f"{system} {kind}"] = n
        return out

    # -- records

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every live and deleted record syncd works on: object -> id -> fields."""
        sf = self._sf or self.salesforce()
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for obj, fields in SF_OBJECTS.items():
            rows = sf.query_all(f"SELECT {fields} FROM {obj}")["records"]
            out[obj] = {r["Id"]: {k: v for k, v in r.items() if k != "attributes"} for r in rows}
        hs = self.hubspot()
        for obj, props in HS_OBJECTS.items():
            api = getattr(hs.crm, obj)
            # Bookkeeping (last modified, by whom) differs between any two runs: left out.
            out[obj] = {
                o.id: {k: v for k, v in o.properties.items() if k not in META_FIELDS["hubspot"]}
                for o in api.get_all(properties=props)
            }
        return out

    def users(self) -> dict[str, str]:
        """Rep email -> Salesforce User id, and queue name -> Group id (as "queue:<name>")."""
        sf = self._sf or self.salesforce()
        out = {
            str(u["Email"]).lower(): u["Id"] for u in sf.query_all("SELECT Id, Email FROM User")["records"]
        }
        for q in sf.query_all("SELECT Id, Name FROM Group WHERE Type = 'Queue'")["records"]:
            out[f"queue:{q['Name']}"] = q["Id"]
        return out

    def owners(self) -> dict[str, str]:
        """Rep email -> HubSpot owner id (archived owners too)."""
        api = self.hubspot().crm.owners.owners_api
        out = {}
        for archived in (False, True):
            for o in api.get_page(limit=500, archived=archived).results:
                out[o.email.lower()] = o.id
        return out


def disagreements(systems: Systems, ledger: Ledger, rules: RuleSet) -> list[str]:
    """Every record field that does not show the ledger's decision for its person or account.

    Checked on live records syncd may write (converted Leads are read-only; records in quarantine are
    held): the owner (except where a system cannot express it: a queue on HubSpot, on a Contact, on an
    Account), the stage, and for persons the score.
    """
    snap = systems.snapshot()
    users, owners = systems.users(), systems.owners()
    held = {(q.system, q.object, q.record_id) for q in ledger.quarantine.held()}
    hs_stage = rules.mapping.value_maps["hubspot_lifecycle"].read
    problems: list[str] = []
    decisions = {}
    for kind in ("person", "account"):
        keys = [k for k in _keys(ledger) if ledger.identity.key_kind(k) == kind]
        decisions.update(ledger.decisions.get_many(keys))
        for key, records in ledger.records.of_keys(keys).items():
            d = decisions.get(key)
            if d is None:
                problems.append(f"{key}: no decision")
                continue
            for r in group(key, kind, records).writable:
                if (r.system, r.object, r.id) in held:
                    continue
                now = snap[r.object].get(r.id)
                if now is None:
                    problems.append(f"{r.system} {r.object} {r.id}: gone")
                    continue
                where = f"{key} {r.object} {r.id}"
                if r.system == "salesforce":
                    queue = d.owner is not None and d.owner.startswith("queue:")
                    expressible = d.owner is not None and not (queue and r.object != "Lead")
                    if expressible and now["OwnerId"] != users.get(d.owner or ""):
                        problems.append(f"{where}: OwnerId {now['OwnerId']} is not {d.owner}")
                    if d.stage is not None and now["Syncd_Stage__c"] != d.stage:
                        problems.append(f"{where}: stage {now['Syncd_Stage__c']} is not {d.stage}")
                    if kind == "person" and not _same_number(now["Syncd_Score__c"], d.score):
                        problems.append(f"{where}: score {now['Syncd_Score__c']} is not {d.score}")
                else:
                    rep = d.owner is not None and not d.owner.startswith("queue:")
                    if rep and now.get("hubspot_owner_id") != owners.get(d.owner or ""):
                        problems.append(f"{where}: owner {now.get('hubspot_owner_id')} is not {d.owner}")
                    if d.stage is not None and hs_stage.get(now.get("lifecyclestage") or "") != d.stage:
                        problems.append(
                            f"{where}: lifecyclestage {now.get('lifecyclestage')} is not {d.stage}"
                        )
                    if kind == "person" and not _same_number(now.get("syncd_score"), d.score):
                        problems.append(f"{where}: score {now.get('syncd_score')} is not {d.score}")
    return problems


def _keys(ledger: Ledger) -> list[str]:
    return ledger.views.all_keys()


def _same_number(a: Any, b: Any) -> bool:
    if a in (None, "") or b is None:
        return a in (None, "") and b is None
    return float(a) == float(b)
