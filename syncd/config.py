"""config.toml: where syncd finds Salesforce, HubSpot, its ledger and its rules, and how much API it may use.

``load_config(path)`` reads and validates the file and resolves every secret from the environment variable
the file names (``password_env = "SF_PASSWORD"``). The file itself holds no secret unless it says
``allow_inline_secrets = true``. Secrets are pydantic ``SecretStr`` values: printing a config never shows
them. Relative paths in the file are relative to the file's directory.

When ``[sandbox] info_file`` is set, syncd connects to the local sandbox that file describes (instance URL,
host, CA file and tokens, written by ``syncd sandbox serve --info``) instead of the real services, and no
other secret is needed: that is how the demo and the tests point syncd at the sandbox.

Salesforce logs in at ``[salesforce] login_url`` (default ``https://login.salesforce.com``; a sandbox org uses
``https://test.salesforce.com``, an org with My Domain its ``https://<name>.my.salesforce.com``) with one of the
OAuth 2.0 flows ``auth`` names: ``jwt`` (JWT bearer: consumer key + the connected app's private key),
``client_credentials`` (consumer key + secret; My Domain only), ``password`` (username-password flow: consumer
key + secret, username, password + security token) or ``refresh_token`` (consumer key, optional secret, and a
refresh token from an earlier web-server flow); or ``session`` takes an access token obtained elsewhere and
cannot renew it. See ``syncd.connectors.auth``.

Every problem is one ConfigError line naming the file and the key, e.g.
``config.toml: salesforce.auth: must be one of jwt, client_credentials, password, refresh_token, session (got
"oauth")``.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from syncd.errors import ConfigError
from syncd.notify import NotifyConfig

if TYPE_CHECKING:
    from syncd.daemon import DaemonSettings

__all__ = [
    "BudgetConfig",
    "Config",
    "DaemonConfig",
    "HubSpotConfig",
    "LedgerConfig",
    "RulesConfig",
    "SalesforceConfig",
    "SandboxConfig",
    "SandboxInfo",
    "SystemBudget",
    "load_config",
    "parse_config",
]

SalesforceAuth = Literal["jwt", "client_credentials", "password", "refresh_token", "session"]

# The secrets each Salesforce auth mode needs, by the name of their field (``<name>_env`` names the variable).
SALESFORCE_SECRETS: dict[str, tuple[str, ...]] = {
    "jwt": ("consumer_key",),
    "client_credentials": ("consumer_key", "consumer_secret"),
    "password": ("consumer_key", "consumer_secret", "password", "security_token"),
    "refresh_token": ("consumer_key", "refresh_token"),
    "session": ("access_token",),
}
# Secrets a mode reads when set but can do without: no security token from trusted IP ranges; no consumer
# secret when the connected app does not require one for the refresh token flow.
SALESFORCE_OPTIONAL_SECRETS: dict[str, tuple[str, ...]] = {
    "password": ("security_token",),
    "refresh_token": ("consumer_secret",),
}
# Settings, other than secrets, that each Salesforce auth mode needs.
SALESFORCE_SETTINGS: dict[str, tuple[str, ...]] = {
    "jwt": ("username",),
    "client_credentials": (),
    "password": ("username",),
    "refresh_token": (),
    "session": ("instance_url",),
}
DEFAULT_LOGIN_URL = "https://login.salesforce.com"
# Hosts that serve every org's logins; the client credentials flow needs the org's own (My Domain) host.
SHARED_LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SalesforceConfig(_Section):
    """``[salesforce]``: how to reach and authenticate to the org, and how to pull from it."""

    auth: SalesforceAuth = "jwt"
    instance_url: str | None = None
    # Where OAuth token requests go: https://login.salesforce.com (production), https://test.salesforce.com
    # (sandbox orgs) or the org's My Domain, e.g. https://northwind.my.salesforce.com.
    login_url: str = DEFAULT_LOGIN_URL
    # The older form of login_url: "login", "test" or a My Domain prefix such as "northwind.my".
    domain: str | None = None
    # The JWT's "aud" claim (jwt mode); default: login_url.
    jwt_audience: str | None = None
    api_version: str = "59.0"
    username: str | None = None
    private_key_file: Path | None = None
    consumer_key_env: str = "SF_CONSUMER_KEY"
    consumer_secret_env: str = "SF_CONSUMER_SECRET"
    private_key_env: str = "SF_PRIVATE_KEY"
    password_env: str = "SF_PASSWORD"
    security_token_env: str = "SF_SECURITY_TOKEN"
    refresh_token_env: str = "SF_REFRESH_TOKEN"
    access_token_env: str = "SF_ACCESS_TOKEN"
    # Inline secrets: refused unless the file says allow_inline_secrets = true.
    consumer_key: SecretStr | None = None
    consumer_secret: SecretStr | None = None
    private_key: SecretStr | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    access_token: SecretStr | None = None
    ca_file: Path | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    lookback_seconds: Annotated[float, Field(ge=0)] = 60.0
    page_size: Annotated[int, Field(ge=200, le=2000)] = 2000
    bulk_threshold: Annotated[int, Field(ge=0)] = 50_000

    @model_validator(mode="before")
    @classmethod
    def _login_url_from_domain(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("domain") is not None:
            if "login_url" in data:
                raise ValueError(
                    "salesforce.domain: set salesforce.login_url only (domain is its older form)"
                )
            data = {**data, "login_url": f"https://{data['domain']}.salesforce.com"}
        return data

    @field_validator("login_url", "jwt_audience")
    @classmethod
    def _https_origin(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") or parts.query:
            raise ValueError(
                f"salesforce.{info.field_name}: must be an https:// URL with no path, e.g. "
                f"https://login.salesforce.com (got {json.dumps(value)})"
            )
        return f"https://{parts.netloc}"

    @property
    def login_host(self) -> str:
        return urlsplit(self.login_url).hostname or ""


class HubSpotConfig(_Section):
    """``[hubspot]``: the private app's token and, for the sandbox, another base URL and CA bundle."""

    token_env: str = "HUBSPOT_ACCESS_TOKEN"
    token: SecretStr | None = None
    host: str = "https://api.hubapi.com"
    # The portal (hub) id, only for links to records on the status page.
    portal_id: str | None = None
    ca_file: Path | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    lookback_seconds: Annotated[float, Field(ge=0)] = 60.0
    # Seconds between the cycles' cheap looks at the active owners (0: every cycle); see syncd.cycle.
    owners_every_seconds: Annotated[float, Field(ge=0)] = 0.0
    # Seconds between the cycles' searches of deals (0: every cycle); see syncd.cycle.
    deals_every_seconds: Annotated[float, Field(ge=0)] = 120.0


class SystemBudget(_Section):
    """One system's API budget: a share of its daily allowance, and the pace of requests."""

    daily_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    # Used until the system reports its allowance in a response header.
    daily_allowance: Annotated[int, Field(gt=0)] = 100_000
    # Stop when the whole org (all apps together) has used this share of its allowance.
    org_ceiling: Annotated[float, Field(gt=0, le=1)] = 0.9
    requests_per_10s: Annotated[int, Field(gt=0)] = 100
    search_per_second: Annotated[int, Field(gt=0)] = 4
    max_attempts: Annotated[int, Field(ge=1)] = 6
    max_backoff_seconds: Annotated[float, Field(gt=0)] = 60.0


class BudgetConfig(_Section):
    """``[budget.salesforce]`` and ``[budget.hubspot]``."""

    salesforce: SystemBudget = SystemBudget(requests_per_10s=200)
    hubspot: SystemBudget = SystemBudget(daily_allowance=250_000)


class LedgerConfig(_Section):
    """``[ledger]``: where the SQLite ledger lives, and how long it keeps run history (``keep_days``: runs,
    confirmed intents and decision history older than that are pruned by the daemon; 0 keeps everything)."""

    path: Path = Path("syncd.db")
    keep_days: Annotated[int, Field(ge=0)] = 180


class RulesConfig(_Section):
    """``[rules]``: the directory of mapping and rules-of-engagement files."""

    directory: Path = Path("mappings")


class DaemonConfig(_Section):
    """``[daemon]``: the schedule of ``syncd run`` and its health endpoint."""

    interval_seconds: Annotated[float, Field(gt=0)] = 60.0
    roster_interval_seconds: Annotated[float, Field(gt=0)] = 900.0
    health_host: str = "127.0.0.1"
    # 0 picks a free port; leave it out of the file, or set health_enabled = false, to turn it off.
    health_port: Annotated[int, Field(ge=0, le=65535)] = 9464
    health_enabled: bool = True
    reload_poll_seconds: Annotated[float, Field(ge=0)] = 2.0
    shutdown_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    # The status page at / needs a token off loopback: the variable that holds it.
    status_token_env: str = "SYNCD_STATUS_TOKEN"
    progress_log_seconds: Annotated[float, Field(gt=0)] = 10.0


class SandboxConfig(_Section):
    """``[sandbox]``: connect to the local sandbox described by an info file instead of the real services."""

    info_file: Path | None = None


class SandboxInfo(_Section):
    """What a running sandbox publishes about itself (``syncd sandbox serve --info FILE``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    instance_url: str
    api_version: str = "59.0"
    hubspot_host: str
    ca_file: Path
    salesforce_token: SecretStr
    hubspot_token: SecretStr


class Config(_Section):
    """The whole of config.toml, with secrets resolved."""

    path: Path | None = None
    allow_inline_secrets: bool = False
    salesforce: SalesforceConfig = SalesforceConfig()
    hubspot: HubSpotConfig = HubSpotConfig()
    budget: BudgetConfig = BudgetConfig()
    ledger: LedgerConfig = LedgerConfig()
    rules: RulesConfig = RulesConfig()
    daemon: DaemonConfig = DaemonConfig()
    sandbox: SandboxConfig = SandboxConfig()
    notify: NotifyConfig = NotifyConfig()
    # Filled by load_config from the environment (or the file, when inline secrets are allowed).
    secrets: dict[str, SecretStr] = Field(default_factory=dict, exclude=True)
    sandbox_info: SandboxInfo | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _settings_for_auth(self) -> Config:
        if self.sandbox.info_file is None:
            sf = self.salesforce
            for name in SALESFORCE_SETTINGS[sf.auth]:
                if not getattr(sf, name):
                    raise ValueError(f"salesforce.{name}: required when salesforce.auth = {sf.auth!r}")
            if sf.auth == "client_credentials" and sf.login_host in SHARED_LOGIN_HOSTS:
                # Salesforce Help, "OAuth 2.0 Client Credentials Flow for Server-to-Server Integration": the
                # token request goes to the org's My Domain (simple-salesforce refuses login/test likewise).
                raise ValueError(
                    "salesforce.login_url: the client credentials flow needs your org's My Domain URL, e.g. "
                    f"https://northwind.my.salesforce.com (got {sf.login_url})"
                )
        return self

    def secret(self, name: str) -> SecretStr:
        """A resolved secret by its dotted name, e.g. ``salesforce.password``; ConfigError when unset."""
        try:
            return self.secrets[name]
        except KeyError:
            raise ConfigError(
                f"{self._where()}{name}: no value (set the variable its {name}_env names)"
            ) from None

    def daemon_settings(self) -> DaemonSettings:
        """The daemon's ``DaemonSettings`` built from ``[daemon]``, ``[ledger]`` and ``[rules]``."""
        from syncd.daemon import DaemonSettings

        d = self.daemon
        return DaemonSettings(
            ledger_path=self.ledger.path,
            watch_paths=(self.rules.directory,),
            interval_seconds=d.interval_seconds,
            roster_interval_seconds=d.roster_interval_seconds,
            health_host=d.health_host,
            health_port=d.health_port if d.health_enabled else None,
            reload_poll_seconds=d.reload_poll_seconds,
            shutdown_timeout_seconds=d.shutdown_timeout_seconds,
            status_token_env=d.status_token_env,
            progress_log_seconds=d.progress_log_seconds,
        )

    def _where(self) -> str:
        return f"{self.path}: " if self.path is not None else ""


# ------------------------------------------------------------------------------------------------ loading


def load_config(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and resolve ``path``; every problem is a ConfigError naming the file and the key."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file (copy config.example.toml to start)") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_config(data, path=file, environ=environ)


def parse_config(
    data: Mapping[str, Any], *, path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate already-parsed TOML data (``path`` names the file in messages and anchors relative paths)."""
    where = f"{path}: " if path is not None else ""
    raw = {k: v for k, v in data.items()}
    if "path" in raw or "secrets" in raw or "sandbox_info" in raw:
        bad = next(k for k in ("path", "secrets", "sandbox_info") if k in raw)
        raise ConfigError(f"{where}{bad}: unknown key")
    try:
        config = Config.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise ConfigError(where + _first_problem(exc)) from None
    base = path.parent if path is not None else Path.cwd()
    config = _anchor_paths(config, base)
    env = os.environ if environ is None else environ
    return _resolve(config, env, where)


def _anchor_paths(config: Config, base: Path) -> Config:
    def anchor(p: Path | None) -> Path | None:
        if p is None:
            return None
        p = p.expanduser()
        return p if p.is_absolute() else base / p

    sf = config.salesforce.model_copy(
        update={
            "ca_file": anchor(config.salesforce.ca_file),
            "private_key_file": anchor(config.salesforce.private_key_file),
        }
    )
    hs = config.hubspot.model_copy(update={"ca_file": anchor(config.hubspot.ca_file)})
    return config.model_copy(
        update={
            "salesforce": sf,
            "hubspot": hs,
            "ledger": config.ledger.model_copy(
                update={"path": anchor(config.ledger.path) or config.ledger.path}
            ),
            "rules": RulesConfig(directory=anchor(config.rules.directory) or config.rules.directory),
            "sandbox": SandboxConfig(info_file=anchor(config.sandbox.info_file)),
        }
    )


def _resolve(config: Config, env: Mapping[str, str], where: str) -> Config:
    sf, hs = config.salesforce, config.hubspot
    inline = {
        f"salesforce.{name}": getattr(sf, name)
        for name in (
            "consumer_key",
            "consumer_secret",
            "private_key",
            "password",
            "security_token",
            "refresh_token",
            "access_token",
        )
        if getattr(sf, name) is not None
    }
    if hs.token is not None:
        inline["hubspot.token"] = hs.token
    if inline and not config.allow_inline_secrets:
        name = next(iter(inline))
        var = "hubspot.token_env" if name == "hubspot.token" else f"{name}_env"
        raise ConfigError(
            f"{where}{name}: secrets may not be written in the config file; name an environment variable "
            f"in {var} instead (or set allow_inline_secrets = true)"
        )
    if config.sandbox.info_file is not None:
        info = load_sandbox_info(config.sandbox.info_file, where=where)
        given = {"salesforce.access_token": info.salesforce_token, "hubspot.token": info.hubspot_token}
        return config.model_copy(update={"secrets": given, "sandbox_info": info})

    optional = SALESFORCE_OPTIONAL_SECRETS.get(sf.auth, ())
    needed: dict[str, str] = {
        f"salesforce.{n}": getattr(sf, f"{n}_env") for n in SALESFORCE_SECRETS[sf.auth] if n not in optional
    }
    needed["hubspot.token"] = hs.token_env
    if sf.auth == "jwt" and sf.private_key_file is None:
        needed["salesforce.private_key"] = sf.private_key_env
    secrets: dict[str, SecretStr] = {}
    for name, var in needed.items():
        if name in inline:
            secrets[name] = inline[name]
            continue
        value = env.get(var)
        if not value:
            key = "hubspot.token_env" if name == "hubspot.token" else f"{name}_env"
            raise ConfigError(f"{where}{key}: environment variable {var} is not set")
        secrets[name] = SecretStr(value)
    for name in optional:
        key = f"salesforce.{name}"
        secrets[key] = inline.get(key) or SecretStr(env.get(getattr(sf, f"{name}_env"), ""))
    if sf.auth == "jwt" and sf.private_key_file is not None and not sf.private_key_file.is_file():
        raise ConfigError(f"{where}salesforce.private_key_file: no such file: {sf.private_key_file}")
    for section, ca in (("salesforce", sf.ca_file), ("hubspot", hs.ca_file)):
        if ca is not None and not ca.is_file():
            raise ConfigError(f"{where}{section}.ca_file: no such file: {ca}")
    return config.model_copy(update={"secrets": secrets})


def load_sandbox_info(path: Path, *, where: str = "") -> SandboxInfo:
    """Read a sandbox's info file; a ConfigError names ``sandbox.info_file`` when it is missing or invalid."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{where}sandbox.info_file: no such file: {path} (is `syncd sandbox serve --info {path}` running?)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}sandbox.info_file: cannot read {path}: {exc}") from None
    try:
        info = SandboxInfo.model_validate(_flatten_info(data))
    except ValidationError as exc:
        raise ConfigError(f"{where}sandbox.info_file: {path}: {_first_problem(exc)}") from None
    if not info.ca_file.is_absolute():
        info = info.model_copy(update={"ca_file": path.parent / info.ca_file})
    return info


def _flatten_info(data: Any) -> Any:
    """The fields syncd uses from the info file's ``{"salesforce": {...}, "hubspot": {...}}`` form."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    sf, hs = data.get("salesforce"), data.get("hubspot")
    if isinstance(sf, dict):
        out.setdefault("instance_url", sf.get("instance_url"))
        out.setdefault("api_version", sf.get("api_version"))
        out.setdefault("salesforce_token", _integration_token(sf))
        out.setdefault("ca_file", sf.get("ca_file"))
    if isinstance(hs, dict):
        out.setdefault("hubspot_host", hs.get("host"))
        out.setdefault("hubspot_token", _integration_token(hs))
        out.setdefault("ca_file", hs.get("ca_file"))
    return {k: v for k, v in out.items() if v is not None and k not in ("salesforce", "hubspot")}


def _integration_token(section: dict[str, Any]) -> Any:
    tokens = section.get("tokens")
    if isinstance(tokens, dict) and tokens.get("integration"):
        return tokens["integration"]
    return section.get("token")


# ------------------------------------------------------------------------------------------------ messages


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key{_suggest(loc)}"
    if kind == "missing":
        return f"{key}: required"
    if kind == "literal_error":
        allowed = err.get("ctx", {}).get("expected", "")
        return f"{key}: must be one of {allowed.replace(' or ', ', ')} (got {json.dumps(err['input'])})"
    if kind == "value_error":
        # Our own validators name the key in their message.
        return str(err["msg"]).removeprefix("Value error, ")
    return f"{key}: {_lower_first(err['msg'])} (got {_show(err.get('input'))})"


def _suggest(loc: list[str]) -> str:
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if (
            field is None
            or not isinstance(field.annotation, type)
            or not issubclass(field.annotation, BaseModel)
        ):
            return ""
        model = field.annotation
    names = [n for n in model.model_fields if n not in ("path", "secrets", "sandbox_info")]
    close = difflib.get_close_matches(loc[-1], names, n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return json.dumps(value, default=str)
