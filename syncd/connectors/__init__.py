"""syncd's reach into Salesforce and HubSpot: one interface (``base``), two implementations, one policy.

``connectors_from_config(config)`` builds both from a loaded ``config.toml``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from syncd.config import Config
from syncd.connectors.auth import login_from_config
from syncd.connectors.base import (
    BudgetState,
    Change,
    Connector,
    Page,
    PushResult,
    RawRecord,
    RepRecord,
    Watermark,
)
from syncd.connectors.hubspot import HubSpotConnector
from syncd.connectors.salesforce import SalesforceConnector

__all__ = [
    "BudgetState",
    "Change",
    "Connector",
    "HubSpotConnector",
    "Page",
    "PushResult",
    "RawRecord",
    "RepRecord",
    "SalesforceConnector",
    "Watermark",
    "connectors_from_config",
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def connectors_from_config(
    config: Config,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = _utcnow,
    salesforce: Mapping[str, Any] | None = None,
    hubspot: Mapping[str, Any] | None = None,
) -> tuple[SalesforceConnector, HubSpotConnector]:
    """Both connectors as ``config`` describes them; the real services, or the sandbox of ``[sandbox]``.

    ``salesforce`` and ``hubspot`` override constructor options of one connector (e.g. ``lookback_seconds``).
    """
    sf, hs, budget = config.salesforce, config.hubspot, config.budget
    info = config.sandbox_info
    ca_sf = info.ca_file if info is not None else sf.ca_file
    ca_hs = info.ca_file if info is not None else hs.ca_file
    # The Salesforce client factory: a token request to login_url, or a bare session (syncd.connectors.auth).
    factory = login_from_config(config, now=now)

    def secret(name: str) -> str:
        return config.secret(name).get_secret_value()

    timing: dict[str, Any] = {"clock": clock, "sleep": sleep, "now": now}
    sf_options: dict[str, Any] = dict(
        ca_file=ca_sf,
        timeout=sf.timeout_seconds,
        requests_per_10s=budget.salesforce.requests_per_10s,
        daily_share=budget.salesforce.daily_share,
        daily_allowance=budget.salesforce.daily_allowance,
        org_ceiling=budget.salesforce.org_ceiling,
        max_attempts=budget.salesforce.max_attempts,
        max_backoff=budget.salesforce.max_backoff_seconds,
        lookback_seconds=sf.lookback_seconds,
        page_size=sf.page_size,
        bulk_threshold=sf.bulk_threshold,
        refreshable=factory.renewable,
        **timing,
    )
    hs_options: dict[str, Any] = dict(
        host=info.hubspot_host if info is not None else hs.host,
        ca_file=ca_hs,
        timeout=hs.timeout_seconds,
        requests_per_10s=budget.hubspot.requests_per_10s,
        search_per_second=budget.hubspot.search_per_second,
        daily_share=budget.hubspot.daily_share,
        daily_allowance=budget.hubspot.daily_allowance,
        org_ceiling=budget.hubspot.org_ceiling,
        max_attempts=budget.hubspot.max_attempts,
        max_backoff=budget.hubspot.max_backoff_seconds,
        lookback_seconds=hs.lookback_seconds,
        **timing,
    )
    sf_connector = SalesforceConnector(factory, **{**sf_options, **(salesforce or {})})
    hs_connector = HubSpotConnector.connect(secret("hubspot.token"), **{**hs_options, **(hubspot or {})})
    return sf_connector, hs_connector
