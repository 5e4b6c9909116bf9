"""One exception tree for syncd.

    SyncdError                      root: every error syncd raises on purpose
    ├── ConfigError                 config.toml is missing, unreadable or invalid, or a secret is unset
    ├── MappingError                a mapping or rules file is invalid (names file, rule and key)
    ├── ConnectorError              a call to Salesforce or HubSpot failed
    │   ├── RetriableError          worth another try later: 429, 5xx, timeouts, resets, API limit hit
    │   │   └── BudgetExhausted     syncd's own daily share of the API allowance is spent; resume later
    │   └── FatalConnectorError     retrying will not help: auth refused, malformed request, bad config
    │       └── AuthError           credentials rejected or session expired and cannot be renewed
    ├── LedgerError                 the SQLite ledger cannot be opened, migrated or written
    │   └── LockedError             another syncd process holds the ledger
    └── SandboxError                the local sandbox servers cannot start or were given bad options

Third-party exceptions (simple-salesforce, hubspot-api-client, requests, urllib3) are translated into this
tree in one place: ``syncd.connectors.errors``.
"""

from __future__ import annotations


class SyncdError(Exception):
    """Root of every error syncd raises on purpose; its message is fit to show a user as one line."""


class ConfigError(SyncdError):
    """Raised when config.toml is missing, unreadable or invalid, or a secret it names is unset."""


class MappingError(SyncdError):
    """Raised when a mapping or rules file is invalid; the message names the file, the rule and the key."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]


class ConnectorError(SyncdError):
    """Raised when a call to Salesforce or HubSpot fails."""

    def __init__(self, message: str, *, system: str = "", status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.system = system
        self.status = status
        self.code = code


class RetriableError(ConnectorError):
    """Raised for failures worth another try later: 429, 5xx, timeouts, resets, the org's API limit."""

    def __init__(
        self,
        message: str,
        *,
        system: str = "",
        status: int | None = None,
        code: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, system=system, status=status, code=code)
        self.retry_after = retry_after


class BudgetExhausted(RetriableError):
    """Raised when syncd's configured daily share of a system's API allowance is spent."""


class FatalConnectorError(ConnectorError):
    """Raised for failures that retrying will not fix: malformed requests, refused access, bad config."""


class AuthError(FatalConnectorError):
    """Raised when credentials are rejected, or a session expired and the auth mode cannot renew it."""


class LedgerError(SyncdError):
    """Raised when the SQLite ledger cannot be opened, migrated or written."""


class LockedError(LedgerError):
    """Raised when another syncd process already holds the ledger's lock."""


class SandboxError(SyncdError):
    """Raised when the local sandbox servers cannot start or are given bad options."""
