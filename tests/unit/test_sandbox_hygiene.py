"""The sandbox keeps its tokens private: data files 0600 in a 0700 directory, a control endpoint that needs
the control token, and one log line (no traceback) for an injected fault."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from hubspot.crm.contacts import ApiException
from simple_salesforce.exceptions import SalesforceExpiredSession

from syncd.sandbox.base import CONTROL_HEADER, Faults
from syncd.sandbox.runtime import HS_FILE, SF_FILE, Sandbox, write_info
from syncd.sandbox.store import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_files_are_0600_in_a_directory_made_0700(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    data = tmp_path / "new" / "org"
    box = make_sandbox(persons=5, data_dir=data)
    box.salesforce_client().query("SELECT Id FROM Lead LIMIT 1")  # the stores have written since the seed
    files = [data / SF_FILE, data / HS_FILE]
    files += [f for f in data.iterdir() if f.name.endswith(("-wal", "-shm"))]
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert mode(data) == 0o700
    assert mode(data.parent) == 0o700
    info = tmp_path / "run" / "info.json"
    write_info(info, box.info())
    assert (mode(info), mode(info.parent)) == (0o600, 0o700)


def test_a_store_left_world_readable_is_narrowed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    Store(path).close()
    os.chmod(path, 0o644)
    Store(path).close()
    assert mode(path) == 0o600


def control(box: Sandbox, url: str, path: str, token: str | None, method: str = "GET") -> requests.Response:
    headers = {CONTROL_HEADER: token} if token is not None else {}
    return requests.request(
        method, f"{url}/__sandbox/{path}", headers=headers, json={}, verify=str(box.ca_file), timeout=10
    )


@pytest.mark.parametrize("system", ["salesforce", "hubspot"])
@pytest.mark.parametrize(
    ("path", "method"),
    [
        pytest.param("tokens", "GET", id="tokens"),
        pytest.param("faults", "PUT", id="faults"),
        pytest.param("convert-lead", "POST", id="convert-lead"),
    ],
)
def test_the_control_endpoint_refuses_requests_without_the_control_token(
    sandbox: Sandbox, system: str, path: str, method: str
) -> None:
    url = sandbox.sf_url if system == "salesforce" else sandbox.hs_url
    missing = control(sandbox, url, path, None, method)
    assert missing.status_code == 401
    assert CONTROL_HEADER in missing.json()["error"]
    wrong = control(sandbox, url, path, sandbox.control_token[:-2] + "xx", method)
    assert wrong.status_code == 403
    assert wrong.json() == {"error": "wrong control token"}
    for refused in (missing, wrong):
        assert sandbox.control_token not in refused.text
        assert "integration" not in refused.text


def test_the_control_token_is_in_the_info_and_opens_the_endpoint(sandbox: Sandbox) -> None:
    info = sandbox.info()
    assert info["control_token"] == sandbox.control_token
    answer = control(sandbox, sandbox.hs_url, "tokens", info["control_token"])
    assert answer.status_code == 200
    assert answer.json() == info["hubspot"]["tokens"]


def test_a_revoked_token_is_refused_by_both_systems(sandbox: Sandbox) -> None:
    sf, hs = sandbox.salesforce_client(), sandbox.hubspot_client()
    sf.query("SELECT Id FROM Lead LIMIT 1")
    hs.crm.contacts.basic_api.get_page(limit=1)
    for system in ("salesforce", "hubspot"):
        sandbox.control(system, "POST", "tokens/revoke", {"user": "integration"})
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Lead LIMIT 1")
    with pytest.raises(ApiException) as refused:
        hs.crm.contacts.basic_api.get_page(limit=1)
    assert refused.value.status == 401


@pytest.mark.parametrize("fault", ["reset", "timeout"])
def test_an_injected_fault_logs_one_line_and_no_traceback(
    make_sandbox: Callable[..., Sandbox], caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    box = make_sandbox(persons=0, faults=Faults(**{fault: 1.0}), sleep=lambda seconds: None)
    token = box.hs_app.tokens["integration"]
    with caplog.at_level(logging.DEBUG), pytest.raises(requests.ConnectionError):
        requests.get(
            f"{box.hs_url}/crm/v3/objects/contacts",
            headers={"Authorization": f"Bearer {token}"},
            verify=str(box.ca_file),
            timeout=10,
        )
    box.stop()  # joins the server thread: whatever it logs for the request is logged by now
    sandbox_lines = [r for r in caplog.records if r.name.startswith("syncd.sandbox")]
    assert [r.getMessage() for r in sandbox_lines] == [
        f"hubspot: injected fault {fault}: dropped GET /crm/v3/objects/contacts without a response"
    ]
    assert not any(r.exc_info or "Traceback" in r.getMessage() for r in caplog.records)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
