"""The running sandbox: the in-process ``Sandbox``, the shared fixtures, and ``syncd sandbox serve`` as a real
process (readiness, the info file, both clients, SIGTERM, a restart that keeps data and tokens, bad options)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hubspot.crm.contacts import PublicObjectSearchRequest, SimplePublicObjectInput
from simple_salesforce import Salesforce

from syncd.cli import main
from syncd.errors import SandboxError
from syncd.sandbox.base import CONTROL_HEADER, Faults
from syncd.sandbox.hubspot import client as hs_client
from syncd.sandbox.runtime import USER_KEYS, Sandbox
from syncd.sandbox.salesforce import client_session
from syncd.sandbox.seed import REPS
from syncd.sandbox.store import Store

SAM = "sam.patel@northwind.example"
READY_WITHIN_SECONDS = 10.0


# ------------------------------------------------------------------------------------------- in-process


def test_info_has_exactly_what_clients_need(sandbox: Sandbox) -> None:
    info = sandbox.info()
    assert set(info) == {"salesforce", "hubspot", "integration_user", "control_token", "pid"}
    assert set(info["salesforce"]) == {
        "instance_url",
        "login_url",
        "api_version",
        "ca_file",
        "tokens",
        "oauth",
        "control",
    }
    assert set(info["hubspot"]) == {"host", "ca_file", "tokens", "control"}
    assert info["salesforce"]["instance_url"].startswith("https://127.0.0.1:")
    assert info["hubspot"]["host"].startswith("https://127.0.0.1:")
    assert info["salesforce"]["api_version"] == "59.0"
    assert info["salesforce"]["ca_file"] == info["hubspot"]["ca_file"]
    assert Path(info["salesforce"]["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert info["integration_user"] == "integration@northwind.example"
    assert info["pid"] == os.getpid()
    for system in ("salesforce", "hubspot"):
        tokens = info[system]["tokens"]
        assert list(tokens) == list(USER_KEYS)
        assert len(USER_KEYS) == 1 + len(REPS)
        assert len(set(tokens.values())) == len(tokens)
    assert not set(info["salesforce"]["tokens"].values()) & set(info["hubspot"]["tokens"].values())


def test_both_clients_read_the_seeded_org(sandbox: Sandbox) -> None:
    sf = sandbox.salesforce_client()
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == sandbox.sf_store.count("Lead")
    users = sf.query("SELECT Email FROM User WHERE IsActive = false ORDER BY Email")["records"]
    assert [u["Email"] for u in users] == [
        "grace.kim@northwind.example",
        "hugo.dubois@northwind.example",
        "olivia.davis@northwind.example",
    ]
    hs = sandbox.hubspot_client()
    archived = hs.crm.owners.owners_api.get_page(archived=True, limit=100).results
    assert sorted(o.email for o in archived) == [
        "grace.kim@northwind.example",
        "hugo.dubois@northwind.example",
        "olivia.davis@northwind.example",
    ]
    customers = sum(
        1 for c in sandbox.hs_store.all("contacts") if c["properties"]["lifecyclestage"] == "customer"
    )
    search = PublicObjectSearchRequest(
        filter_groups=[
            {"filters": [{"propertyName": "lifecyclestage", "operator": "EQ", "value": "customer"}]}
        ],
        limit=1,
    )
    assert hs.crm.contacts.search_api.do_search(public_object_search_request=search).total == customers > 0


def test_a_rep_token_acts_as_that_rep_in_both_systems(sandbox: Sandbox) -> None:
    lead = next(r for r in sandbox.sf_store.all("Lead") if not r["IsConverted"])
    sandbox.salesforce_client(SAM).Lead.update(lead["Id"], {"Title": "Head of Growth"})
    sam_user = sandbox.salesforce_client().query(f"SELECT Id FROM User WHERE Email = '{SAM}'")["records"][0][
        "Id"
    ]
    after = sandbox.salesforce_client().Lead.get(lead["Id"])
    assert (after["Title"], after["LastModifiedById"]) == ("Head of Growth", sam_user)

    contact_id = next(iter(sandbox.hs_store.table("contacts")))
    sandbox.hubspot_client(SAM).crm.contacts.basic_api.update(
        contact_id, SimplePublicObjectInput(properties={"jobtitle": "Head of Growth"})
    )
    got = sandbox.hubspot_client().crm.contacts.basic_api.get_by_id(
        contact_id, properties=["jobtitle", "hs_updated_by_user_id"]
    )
    sam_owner = next(o for o in sandbox.hs_store.all("owners") if o["email"] == SAM)
    assert got.properties["jobtitle"] == "Head of Growth"
    assert got.properties["hs_updated_by_user_id"] == str(sam_owner["userId"])


def test_the_empty_sandbox_holds_only_the_org(empty_sandbox: Sandbox) -> None:
    assert empty_sandbox.counts() == {
        "salesforce": {
            "Account": 0,
            "AccountTeamMember": 0,
            "Contact": 0,
            "Group": 2,
            "Lead": 0,
            "Opportunity": 0,
            "User": 25,
        },
        "hubspot": {"companies": 0, "contacts": 0, "deals": 0, "owners": 24, "associations": 0},
    }
    assert empty_sandbox.salesforce_client().query("SELECT COUNT() FROM Lead")["totalSize"] == 0


def test_writes_are_stamped_after_the_seeded_data_even_when_now_is_ahead(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    box = make_sandbox(persons=50, now=datetime.now(UTC) + timedelta(days=30))
    newest_hs = max(c["updatedAt"] for c in box.hs_store.all("contacts"))
    newest_sf = max(r["SystemModstamp"] for r in box.sf_store.all("Lead"))
    contact_id = next(iter(box.hs_store.table("contacts")))
    box.hubspot_client().crm.contacts.basic_api.update(
        contact_id, SimplePublicObjectInput(properties={"city": "Oslo"})
    )
    lead_id = next(r["Id"] for r in box.sf_store.all("Lead") if not r["IsConverted"])
    box.salesforce_client().Lead.update(lead_id, {"City": "Oslo"})
    assert box.hs_store.get("contacts", contact_id)["updatedAt"] > newest_hs  # type: ignore[index]
    assert box.sf_store.get("Lead", lead_id)["SystemModstamp"] > newest_sf  # type: ignore[index]


def test_each_server_gets_its_own_copy_of_the_faults(make_sandbox: Callable[..., Sandbox]) -> None:
    box = make_sandbox(persons=0, faults=Faults(status_503=0.25, latency_ms=1))
    session = client_session(box.ca_file)
    session.headers[CONTROL_HEADER] = box.control_token
    sf_faults = session.get(box.sf_url + "/__sandbox/faults").json()
    assert (sf_faults["status_503"], sf_faults["latency_ms"]) == (0.25, 1)
    session.put(box.sf_url + "/__sandbox/faults", json={"status_503": 0}).raise_for_status()
    assert session.get(box.hs_url + "/__sandbox/faults").json()["status_503"] == 0.25
    assert session.get(box.sf_url + "/__sandbox/faults").json()["status_503"] == 0


def test_a_restart_on_the_same_data_keeps_records_and_tokens(tmp_path: Path) -> None:
    data = tmp_path / "org"
    with Sandbox(persons=60, rate_limits=False, data_dir=data) as first:
        assert first.seeded
        tokens = first.info()["salesforce"]["tokens"], first.info()["hubspot"]["tokens"]
        lead_id = next(r["Id"] for r in first.sf_store.all("Lead") if not r["IsConverted"])
        first.salesforce_client().Lead.update(lead_id, {"Title": "Kept Across Restarts"})
        counts = first.counts()
    # A different seed and size must not matter: existing data is kept, never re-seeded.
    with Sandbox(seed=99, persons=5, rate_limits=False, data_dir=data) as second:
        assert not second.seeded
        assert (second.info()["salesforce"]["tokens"], second.info()["hubspot"]["tokens"]) == tokens
        assert second.salesforce_client().Lead.get(lead_id)["Title"] == "Kept Across Restarts"
        assert second.counts() == counts
        assert second.seed_summary["seed"] == 1 and second.seed_summary["persons"] == 60


def test_a_data_dir_with_only_one_system_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "salesforce.sqlite")
    store.put_many("Lead", [{"Id": "00Q8d0000000001EAA"}])
    store.close()
    with pytest.raises(SandboxError, match="only one of the two systems"):
        Sandbox(persons=0, data_dir=tmp_path).start()


def test_a_port_in_use_names_the_option(make_sandbox: Callable[..., Sandbox]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SandboxError, match=f"127.0.0.1:{port}.*--hs-port"):
            make_sandbox(persons=0, hs_port=port)


def test_stop_is_idempotent_and_flushes(tmp_path: Path) -> None:
    box = Sandbox(persons=10, data_dir=tmp_path).start()
    box.stop()
    box.stop()
    assert Store(tmp_path / "hubspot.sqlite").count("owners") == 24


# ------------------------------------------------------------------------------------------- the command


def syncd_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from syncd.cli import main; main()", *args]


class Served:
    """A `syncd sandbox serve` process, with its output in files (a full pipe would block the server)."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.info_file = tmp / "info.json"
        self.out = (tmp / "serve.out").open("w+")
        self.began = time.perf_counter()
        self.proc = subprocess.Popen(
            syncd_command("sandbox", "serve", *args, "--info", str(self.info_file)),
            stdout=self.out,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_ready(self) -> float:
        deadline = self.began + READY_WITHIN_SECONDS
        while not self.info_file.exists():
            assert self.proc.poll() is None, f"serve exited early: {self.output()}"
            assert time.perf_counter() < deadline, (
                f"not ready within {READY_WITHIN_SECONDS} s: {self.output()}"
            )
            time.sleep(0.05)
        return time.perf_counter() - self.began

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self.info_file.read_text())
        return info

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)

    def output(self) -> str:
        self.out.flush()
        return Path(self.out.name).read_text()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    procs: list[Served] = []

    def start(*args: str) -> Served:
        p = Served(tmp_path, *args)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()
        p.out.close()


def clients(info: dict[str, Any]) -> tuple[Salesforce, Any]:
    sf_info, hs_info = info["salesforce"], info["hubspot"]
    sf = Salesforce(
        instance_url=sf_info["instance_url"],
        session_id=sf_info["tokens"]["integration"],
        session=client_session(sf_info["ca_file"]),
        version=sf_info["api_version"],
    )
    hs = hs_client(hs_info["host"], hs_info["tokens"]["integration"], hs_info["ca_file"])
    return sf, hs


def test_serve_is_ready_quickly_answers_both_clients_and_a_restart_keeps_data(
    served: Callable[..., Served], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = served("--seed", "1", "--size", "small", "--data", str(data))
    seconds = first.wait_ready()
    print(f"syncd sandbox serve --size small ready in {seconds:.2f} s")
    assert stat.S_IMODE(first.info_file.stat().st_mode) == 0o600
    info = first.info()
    sf, hs = clients(info)
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] > 500
    lead = sf.query("SELECT Id FROM Lead WHERE IsConverted = false ORDER BY Id LIMIT 1")["records"][0]
    sf.Lead.update(lead["Id"], {"Title": "Survives Restarts"})
    contacts = hs.crm.contacts.basic_api.get_page(limit=1).results
    hs.crm.contacts.basic_api.update(
        contacts[0].id, SimplePublicObjectInput(properties={"jobtitle": "Survivor"})
    )
    output = first.output()
    assert "ready" in output and "1,000 persons" in output
    for token in [*info["salesforce"]["tokens"].values(), *info["hubspot"]["tokens"].values()]:
        assert token not in output
    assert first.stop(signal.SIGTERM) == 0
    assert not first.info_file.exists()
    assert "sandbox stopped" in first.output()

    second = served("--seed", "1", "--size", "small", "--data", str(data))
    print(f"restart ready in {second.wait_ready():.2f} s")
    again = second.info()
    assert again["salesforce"]["tokens"] == info["salesforce"]["tokens"]
    assert again["hubspot"]["tokens"] == info["hubspot"]["tokens"]
    sf2, hs2 = clients(again)
    assert sf2.Lead.get(lead["Id"])["Title"] == "Survives Restarts"
    got = hs2.crm.contacts.basic_api.get_by_id(contacts[0].id, properties=["jobtitle"])
    assert got.properties["jobtitle"] == "Survivor"
    assert "kept data seeded with seed 1" in second.output()
    assert second.stop(signal.SIGINT) == 0


def test_serve_without_data_keeps_nothing_and_stops_on_sigint(served: Callable[..., Served]) -> None:
    proc = served("--persons", "20", "--rate-limits", "off", "--faults", "latency_ms=0")
    proc.wait_ready()
    sf, _ = clients(proc.info())
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 25
    ca_file = Path(proc.info()["salesforce"]["ca_file"])
    assert proc.stop(signal.SIGINT) == 0
    assert not ca_file.exists()  # the memory-only sandbox's CA lived in a temporary directory
    assert "memory-only data discarded" in proc.output()


def test_a_bad_option_is_one_line_and_exit_code_2_in_a_real_process() -> None:
    result = subprocess.run(
        syncd_command("sandbox", "serve", "--size", "huge"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: Invalid value for '--size': 'huge' is not one of 'small', 'medium', 'large'."
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--size", "tiny"], "'--size': 'tiny' is not one of", id="unknown-size"),
        pytest.param(["--persons", "-1"], "'--persons': -1 is not in the range x>=0", id="negative-persons"),
        pytest.param(
            ["--size", "small", "--persons", "5"], "either --size or --persons", id="size-and-persons"
        ),
        pytest.param(
            ["--sf-port", "70000"], "'--sf-port': 70000 is not in the range", id="port-out-of-range"
        ),
        pytest.param(["--sf-port", "9000", "--hs-port", "9000"], "must differ", id="same-ports"),
        pytest.param(["--rate-limits", "maybe"], "'--rate-limits': 'maybe' is not one of", id="rate-limits"),
        pytest.param(["--faults", "429=1.5"], "must be a probability from 0 to 1", id="fault-above-one"),
        pytest.param(["--faults", "lag=3"], "expected KEY=VALUE with KEY one of 429", id="unknown-fault"),
        pytest.param(["--faults", "503=often"], "'often' is not a number", id="fault-not-a-number"),
        pytest.param(["--faults", "429=0.6,503=0.6"], "add up to 1.2", id="faults-above-one-together"),
        pytest.param(["--seed", "x"], "'--seed': 'x' is not a valid integer", id="seed-not-a-number"),
    ],
)
def test_bad_options_are_one_line_with_exit_code_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sandbox", "serve", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert message in err[0]


def test_a_taken_port_is_one_line_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["sandbox", "serve", "--persons", "0", "--sf-port", str(port)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use): choose another --sf-port"
    ]


def test_every_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "serve", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--data",
        "--seed",
        "--size",
        "--persons",
        "--sf-port",
        "--hs-port",
        "--rate-limits",
        "--faults",
        "--info",
    ):
        assert option in text
    from syncd.sandbox.cli import serve

    assert all(p.help for p in serve.params)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param("", Faults(), id="none"),
        pytest.param(
            "429=0.05,503=0.01,timeout=0.01,reset=0.01,latency_ms=20",
            Faults(status_429=0.05, status_503=0.01, timeout=0.01, reset=0.01, latency_ms=20),
            id="all",
        ),
        pytest.param(" 503 = 0.5 , ", Faults(status_503=0.5), id="spaces-and-trailing-comma"),
        pytest.param(
            "hang_seconds=0.5,retry_after=2", Faults(hang_seconds=0.5, retry_after=2.0), id="tuning"
        ),
    ],
)
def test_fault_specs(spec: str, expected: Faults) -> None:
    from syncd.sandbox.cli import parse_faults

    assert parse_faults(spec) == expected


def test_info_command_describes_a_data_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Sandbox(persons=40, rate_limits=False, data_dir=tmp_path, seed=5):
        pass
    assert main(["sandbox", "info", "--data", str(tmp_path)]) is None
    out = capsys.readouterr().out
    assert "seeded with seed 5, 40 persons" in out
    assert "User 25" in out and "owners 24" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["sandbox", "info", "--data", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "is not a sandbox data directory" in capsys.readouterr().err


def test_control_endpoint_is_listed_and_answers(sandbox: Sandbox) -> None:
    info = sandbox.info()
    session = client_session(sandbox.ca_file)
    session.headers[CONTROL_HEADER] = info["control_token"]
    sandbox.salesforce_client().query("SELECT Id FROM User LIMIT 1")
    counts = session.get(info["salesforce"]["control"] + "counts").json()
    assert counts["total"] >= 1
    assert session.get(info["hubspot"]["control"] + "tokens").json() == info["hubspot"]["tokens"]
