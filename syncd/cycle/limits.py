"""The systems' field limits, read from their metadata once per roster refresh and kept per process.

The pull stage calls :func:`refresh` (a cycle that reads the systems; a plan from the ledger makes no call):
each connector's ``field_limits`` (Salesforce: one describe per written object; HubSpot: one properties
listing per written object) when the process has none yet or they are older than ``REFRESH``. The decide
stage reads :func:`current` and hands it to ``syncd.core.limits.apply_limits``. A metadata read that fails
keeps the limits read before (logged), so the cycle goes on.
"""

from __future__ import annotations

import logging
import weakref
from datetime import datetime, timedelta

from syncd.core.limits import Limit, Limits
from syncd.core.mapping import Mapping as FieldMapping
from syncd.cycle.context import RunContext
from syncd.errors import ConnectorError

log = logging.getLogger(__name__)

# How long read limits are trusted: an admin widening a field is seen within this time.
REFRESH = timedelta(hours=1)

_CACHE: weakref.WeakKeyDictionary[object, tuple[datetime, dict[tuple[str, str], dict[str, Limit]]]] = (
    weakref.WeakKeyDictionary()
)


def written_objects(mapping: FieldMapping, system: str) -> list[str]:
    """The objects of ``system`` the mapping writes to (Lead always: syncd creates Leads)."""
    found = {
        obj
        for lf in mapping.fields.values()
        for (sys_, obj), bindings in lf.bindings.items()
        if sys_ == system and any(b.write != "never" for b in bindings)
    }
    if system == "salesforce":
        found.add("Lead")
    return sorted(found)


def refresh(run: RunContext) -> None:
    """Read the limits of each system whose cache is missing or older than ``REFRESH``."""
    for system, connector in run.connectors.items():
        read = getattr(connector, "field_limits", None)
        if read is None:
            continue
        cached = _CACHE.get(connector)
        if cached is not None and run.now - cached[0] < REFRESH:
            continue
        objects = [o for o in written_objects(run.mapping, system) if o in connector.objects]
        try:
            found = read(objects)
        except ConnectorError as exc:
            log.warning("%s: field limits not read (%s); the limits read before stay in use", system, exc)
            continue
        _CACHE[connector] = (run.now, {(system, obj): dict(fields) for obj, fields in found.items()})


def current(run: RunContext) -> Limits:
    """The limits read last in this process, per (system, object); empty before the first read."""
    out: dict[tuple[str, str], dict[str, Limit]] = {}
    for connector in run.connectors.values():
        cached = _CACHE.get(connector)
        if cached is not None:
            out.update(cached[1])
    return out
