"""The floor a first cycle is measured against, run as its own process (as `syncd once` is).

    python bench_floor.py pull CONFIG             every pulled object read whole, at the largest pages
    python bench_floor.py push CONFIG LEDGER RUN  the confirmed intents of run RUN in LEDGER sent again

Both go through syncd's connectors, which are the two client libraries (simple-salesforce,
hubspot-api-client) plus paging and batching at each API's maximum, and keep nothing: what a first cycle costs
beyond these is syncd's own bookkeeping. The push sends the same write requests in batches as large as each
API takes (Salesforce first, creates before updates, as the push stage does) to a copy of the org the cycle
ran against. Prints one JSON line: seconds, records, calls, and this process's CPU seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from syncd.config import load_config
from syncd.connectors import Change, Connector, connectors_from_config
from syncd.core.systems import PULLED, SYSTEMS
from syncd.core.types import Intent
from syncd.ledger import Ledger


def _connectors(config_path: str) -> dict[str, Connector]:
    sf, hs = connectors_from_config(load_config(config_path))
    return {"salesforce": sf, "hubspot": hs}


def pull(config_path: str) -> dict[str, Any]:
    connectors = _connectors(config_path)
    records = 0
    began = time.perf_counter()
    for system in SYSTEMS:
        connectors[system].list_reps()
        for obj in PULLED[system]:
            for page in connectors[system].pull(obj, since=None):
                records += len(page.records)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "records": records, "calls": _calls(connectors)}


def _groups(intents: list[Intent]) -> Iterator[tuple[str, str, list[Intent]]]:
    """The intents per (system, object, create or update), in the push stage's order."""
    groups: dict[tuple[str, str, bool], list[Intent]] = {}
    for intent in intents:
        groups.setdefault((intent.system, intent.object, intent.create_key is not None), []).append(intent)
    for system in SYSTEMS:
        for key in sorted((k for k in groups if k[0] == system), key=lambda k: (not k[2], k[1])):
            yield system, key[1], groups[key]


def push(config_path: str, ledger_path: str, run_id: str) -> dict[str, Any]:
    with Ledger(ledger_path, readonly=True) as ledger:
        intents = [i for i in reversed(ledger.outbox.intents(run_id=run_id)) if i.state == "confirmed"]
    connectors = _connectors(config_path)
    sent = 0
    began = time.perf_counter()
    for system, obj, group in _groups(intents):
        changes = [
            Change.create(i.create_key, i.fields)
            if i.create_key
            else Change.update(str(i.record_id), i.fields)
            for i in group
        ]
        sent += len(connectors[system].push(obj, changes))
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "records": sent, "calls": _calls(connectors)}


def _calls(connectors: dict[str, Connector]) -> dict[str, int]:
    return {s: sum(c.call_counts().values()) for s, c in connectors.items()}


def main(argv: list[str]) -> None:
    began = os.times()
    result = pull(argv[1]) if argv[0] == "pull" else push(argv[1], argv[2], argv[3])
    end = os.times()
    result["cpu"] = (end.user - began.user) + (end.system - began.system)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main(sys.argv[1:])
