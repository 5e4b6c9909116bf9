"""config.toml: the example loads, every problem is one line naming file and key, secrets stay secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
JWT_ENV = {
    "SF_CONSUMER_KEY": "ck-123",
    "SF_PRIVATE_KEY": "-----BEGIN KEY-----",
    "HUBSPOT_ACCESS_TOKEN": "pat-na1-xyz",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_loads_with_every_documented_default() -> None:
    config = load_config(ROOT / "config.example.toml", environ=JWT_ENV)
    assert config.salesforce.auth == "jwt"
    assert config.salesforce.username == "integration@northwind.example"
    assert config.budget.hubspot.requests_per_10s == 100
    assert config.budget.salesforce.requests_per_10s == 200
    assert config.daemon.interval_seconds == 60
    assert config.daemon.roster_interval_seconds == 900
    assert (config.daemon.health_host, config.daemon.health_port) == ("127.0.0.1", 9464)
    assert config.rules.directory == ROOT / "mappings"
    assert config.secret("hubspot.token").get_secret_value() == "pat-na1-xyz"
    assert config.secret("salesforce.consumer_key").get_secret_value() == "ck-123"


def test_example_documents_every_option() -> None:
    """Every key of every section appears in the example, so the example is the reference."""
    from syncd.config import Config

    text = (ROOT / "config.example.toml").read_text()
    inline_secrets = {
        "consumer_key",
        "consumer_secret",
        "private_key",
        "password",
        "security_token",
        "refresh_token",
        "access_token",
        "token",
    }
    for section, field in Config.model_fields.items():
        if section in ("path", "secrets", "sandbox_info", "allow_inline_secrets"):
            continue
        model = field.annotation
        for key in model.model_fields:  # type: ignore[union-attr]
            if key in ("salesforce", "hubspot") and section == "budget":
                continue
            if key in inline_secrets:
                continue
            assert f"{key} =" in text, f"config.example.toml does not document {section}.{key}"
    assert "allow_inline_secrets" in text


def test_secrets_never_appear_in_repr_or_dump() -> None:
    config = load_config(ROOT / "config.example.toml", environ=JWT_ENV)
    for shown in (repr(config), str(config), config.model_dump_json()):
        assert "pat-na1-xyz" not in shown
        assert "ck-123" not in shown


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        pytest.param(
            "[salesforce]\ninstnce_url = 'x'\n",
            JWT_ENV,
            'salesforce.instnce_url: unknown key (did you mean "instance_url"?)',
            id="unknown-key",
        ),
        pytest.param(
            "[salesforce]\nauth = 'oauth'\n",
            JWT_ENV,
            "salesforce.auth: must be one of 'jwt', 'client_credentials', 'password', 'refresh_token', 'session' "
            '(got "oauth")',
            id="bad-auth",
        ),
        pytest.param(
            "[daemon]\ninterval_seconds = 'soon'\n",
            JWT_ENV,
            "daemon.interval_seconds: input should be a valid number",
            id="wrong-type",
        ),
        pytest.param(
            "[daemon]\ninterval_seconds = 0\n[salesforce]\nusername='u'\n",
            JWT_ENV,
            "daemon.interval_seconds: input should be greater than 0 (got 0)",
            id="out-of-range",
        ),
        pytest.param(
            "[salesforce]\nauth = 'session'\n",
            JWT_ENV,
            "salesforce.instance_url: required when salesforce.auth = 'session'",
            id="missing-setting",
        ),
        pytest.param(
            "[salesforce]\nusername = 'u'\n",
            {"SF_PRIVATE_KEY": "k", "HUBSPOT_ACCESS_TOKEN": "t"},
            "salesforce.consumer_key_env: environment variable SF_CONSUMER_KEY is not set",
            id="env-unset",
        ),
        pytest.param(
            "[salesforce]\nusername = 'u'\npassword = 'hunter2'\n",
            JWT_ENV,
            "salesforce.password: secrets may not be written in the config file",
            id="inline-secret",
        ),
        pytest.param(
            "[hubspot]\ntoken = 'pat'\n[salesforce]\nusername = 'u'\n",
            JWT_ENV,
            "hubspot.token: secrets may not be written in the config file; name an environment variable in hubspot.token_env",
            id="inline-token",
        ),
        pytest.param(
            "[sandbox]\ninfo_file = 'nowhere.json'\n",
            {},
            "sandbox.info_file: no such file",
            id="sandbox-info-missing",
        ),
        pytest.param("[salesforce\n", {}, "not valid TOML", id="bad-toml"),
        pytest.param(
            "[salesforce]\nusername = 'u'\nca_file = 'missing.pem'\n",
            JWT_ENV,
            "salesforce.ca_file: no such file",
            id="ca-file-missing",
        ),
    ],
)
def test_problems_are_one_line_naming_file_and_key(
    tmp_path: Path, text: str, environ: dict[str, str], expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message
    assert "hunter2" not in message


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.toml: no such file"):
        load_config(tmp_path / "config.toml")


def test_inline_secrets_allowed_when_the_file_says_so(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "allow_inline_secrets = true\n[salesforce]\nauth = 'password'\nusername = 'u'\npassword = 'pw'\n"
        "consumer_key = 'ck'\nconsumer_secret = 'cs'\n[hubspot]\ntoken = 'pat'\n",
    )
    config = load_config(path, environ={})
    assert config.secret("salesforce.password").get_secret_value() == "pw"
    assert config.secret("salesforce.security_token").get_secret_value() == ""
    assert config.secret("hubspot.token").get_secret_value() == "pat"


def test_sandbox_info_file_supplies_endpoints_and_tokens(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not checked here")
    info = {
        "salesforce": {
            "instance_url": "https://127.0.0.1:5001",
            "api_version": "59.0",
            "ca_file": "ca.pem",
            "tokens": {"integration": "sf-tok", "sam.patel@northwind.example": "other"},
        },
        "hubspot": {
            "host": "https://127.0.0.1:5002",
            "ca_file": "ca.pem",
            "tokens": {"integration": "hs-tok"},
        },
    }
    (tmp_path / "info.json").write_text(json.dumps(info))
    config = load_config(write(tmp_path, "[sandbox]\ninfo_file = 'info.json'\n"), environ={})
    assert config.sandbox_info is not None
    assert config.sandbox_info.instance_url == "https://127.0.0.1:5001"
    assert config.sandbox_info.hubspot_host == "https://127.0.0.1:5002"
    assert config.sandbox_info.ca_file == tmp_path / "ca.pem"
    assert config.secret("salesforce.access_token").get_secret_value() == "sf-tok"
    assert config.secret("hubspot.token").get_secret_value() == "hs-tok"


def test_relative_paths_are_anchored_at_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[salesforce]\nusername = 'u'\n[ledger]\npath = 'data/syncd.db'\n[rules]\ndirectory = 'rules'\n",
    )
    config = load_config(path, environ=JWT_ENV)
    assert config.ledger.path == tmp_path / "data" / "syncd.db"
    assert config.rules.directory == tmp_path / "rules"
    settings = config.daemon_settings()
    assert settings.ledger_path == tmp_path / "data" / "syncd.db"
    assert settings.watch_paths == (tmp_path / "rules",)
    assert settings.health_port == 9464
