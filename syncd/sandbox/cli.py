"""`syncd sandbox`: run the local Salesforce and HubSpot servers, or say what a sandbox data directory holds."""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import click

from syncd.errors import SandboxError
from syncd.progress import Progress
from syncd.reports.fmt import num
from syncd.reports.progress_render import ProgressBar
from syncd.sandbox.base import Faults
from syncd.sandbox.hubspot import DEFAULT_SEARCH_LAG_MS
from syncd.sandbox.runtime import HS_FILE, SEED_META, SF_FILE, USER_KEYS, Sandbox, store_counts, write_info
from syncd.sandbox.salesforce_oauth import DEFAULT_SESSION_SECONDS
from syncd.sandbox.seed import SIZES
from syncd.sandbox.store import Store

# --faults keys -> Faults fields.
_FAULT_KEYS = {
    "429": "status_429",
    "503": "status_503",
    "timeout": "timeout",
    "reset": "reset",
    "latency_ms": "latency_ms",
    "hang_seconds": "hang_seconds",
    "retry_after": "retry_after",
}
_PROBABILITIES = frozenset({"status_429", "status_503", "timeout", "reset"})
_MESS_LABELS = {
    "owner_disagrees": "owners that disagree between the systems",
    "lead_owned_by_inactive_rep": "leads owned by inactive reps",
    "duplicate_lead_email": "duplicate lead emails",
    "customer_contact_random_owner": "customer contacts owned by random reps",
    "lead_in_unassigned_queue": 'leads in the "Unassigned Leads" queue',
}


class OneLineErrors(click.Command):
    """A command whose bad options are reported on one line (no usage block), with exit code 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.ctx = None
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.ctx = None
            raise


def parse_faults(text: str) -> Faults:
    """``429=0.05,503=0.01,timeout=0.01,reset=0.01,latency_ms=20`` -> Faults; ValueError names the bad part."""
    faults = Faults()
    total = 0.0
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        name = _FAULT_KEYS.get(key.strip().lower())
        if not sep or name is None:
            raise ValueError(f"{part!r}: expected KEY=VALUE with KEY one of {', '.join(_FAULT_KEYS)}")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{part!r}: {raw.strip()!r} is not a number") from None
        if value < 0 or (name in _PROBABILITIES and value > 1):
            bound = "a probability from 0 to 1" if name in _PROBABILITIES else "0 or more"
            raise ValueError(f"{part!r}: must be {bound}")
        if name in _PROBABILITIES:
            total += value
        setattr(faults, name, value)
    if total > 1:
        raise ValueError(f"the fault probabilities add up to {total:g}, more than 1")
    return faults


def _faults_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Faults:
    try:
        return parse_faults(value or "")
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _describe_faults(faults: Faults) -> str:
    parts = [
        f"{key}={getattr(faults, name):g}"
        for key, name in _FAULT_KEYS.items()
        if name in _PROBABILITIES | {"latency_ms"} and getattr(faults, name)
    ]
    return "faults " + ",".join(parts) if parts else "no faults"


@click.group()
def sandbox() -> None:
    """Local, wire-faithful Salesforce and HubSpot servers with a realistic seeded org."""


@sandbox.command(cls=OneLineErrors)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the two orgs' SQLite files; a restart keeps the data. Default: memory only.",
)
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Seed of the generated org: the same seed gives the same records.",
)
@click.option(
    "--size",
    type=click.Choice(sorted(SIZES, key=SIZES.__getitem__)),
    help="Org size: small (~1,000 persons), medium (~20,000) or large (~200,000). Default: small.",
)
@click.option(
    "--persons", type=click.IntRange(min=0), help="Exact number of persons to generate (instead of --size)."
)
@click.option(
    "--sf-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port of the Salesforce server on 127.0.0.1 (0 picks a free one).",
)
@click.option(
    "--hs-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port of the HubSpot server on 127.0.0.1 (0 picks a free one).",
)
@click.option(
    "--rate-limits",
    type=click.Choice(["on", "off"]),
    default="on",
    show_default=True,
    help="Enforce the real rate limits and daily allowances (HubSpot 100 requests/10 s per token, "
    "search 5/s; Salesforce 15,000 calls/day).",
)
@click.option(
    "--faults",
    "faults",
    metavar="SPEC",
    callback=_faults_option,
    help="Injected failures: comma-separated KEY=VALUE with 429, 503, timeout and reset as "
    "probabilities per request, latency_ms as added latency, "
    "e.g. 429=0.05,503=0.01,timeout=0.01,reset=0.01,latency_ms=20.",
)
@click.option(
    "--search-lag-ms",
    type=click.IntRange(min=0),
    default=DEFAULT_SEARCH_LAG_MS,
    show_default=True,
    help="How long a HubSpot write takes to reach search (list and get see it at once), as in a real "
    "portal; 0 makes search immediate.",
)
@click.option(
    "--session-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_SESSION_SECONDS,
    show_default=True,
    help="Salesforce session timeout: an OAuth access token unused this long answers 401 INVALID_SESSION_ID "
    "(activity extends it in the second half of the timeout, as in Salesforce).",
)
@click.option(
    "--info",
    "info_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the connection details (URLs, CA file, tokens, the Salesforce OAuth login) to this JSON "
    "file when ready (mode 0600; removed on exit).",
)
def serve(
    data_dir: Path | None,
    seed: int,
    size: str | None,
    persons: int | None,
    sf_port: int,
    hs_port: int,
    rate_limits: str,
    faults: Faults,
    search_lag_ms: int,
    session_seconds: float,
    info_file: Path | None,
) -> None:
    """Serve a local Salesforce and a local HubSpot over HTTPS until SIGTERM or Ctrl+C."""
    if size is not None and persons is not None:
        raise click.UsageError("use either --size or --persons, not both")
    count = persons if persons is not None else SIZES[size or "small"]
    if sf_port and sf_port == hs_port:
        raise click.UsageError("--sf-port and --hs-port must differ")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    box = Sandbox(
        seed=seed,
        persons=count,
        rate_limits=rate_limits == "on",
        faults=faults,
        sf_port=sf_port,
        hs_port=hs_port,
        data_dir=data_dir,
        search_lag_ms=search_lag_ms,
        session_seconds=session_seconds,
    )
    try:
        progress = Progress()
        with ProgressBar(progress, transient=True):
            box.start(progress=progress)
        if info_file is not None:
            try:
                write_info(info_file, box.info())
            except OSError as exc:
                raise SandboxError(f"cannot write --info {info_file}: {exc.strerror or exc}") from exc
        click.echo(_summary(box, info_file, rate_limits, faults), nl=True)
        while not stop.wait(0.5):
            pass
    finally:
        box.stop()
        if info_file is not None:
            info_file.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    where = f"data kept in {data_dir}" if data_dir else "memory-only data discarded"
    click.echo(f"sandbox stopped ({where})")


def _summary(box: Sandbox, info_file: Path | None, rate_limits: str, faults: Faults) -> str:
    counts = box.counts()
    seeded = box.seed_summary
    if box.seeded:
        origin = f"seeded with seed {seeded['seed']}, {num(seeded['persons'])} persons"
    elif seeded:
        origin = f"kept data seeded with seed {seeded.get('seed')}, {num(seeded.get('persons', 0))} persons"
    else:
        origin = "kept data"
    lines = [
        f"syncd sandbox ready in {box.startup_seconds:.1f} s ({origin}; rate limits {rate_limits}; "
        f"{_describe_faults(faults)})",
        f"  Salesforce  {box.sf_url}  (API v{box.api_version})  {_counts(counts['salesforce'])}",
        f"  HubSpot     {box.hs_url}  {_counts(counts['hubspot'])}",
    ]
    mess = seeded.get("generated", {}).get("mess", {})
    if mess:
        lines.append(
            "  mess to fix: "
            + ", ".join(f"{num(mess[k])} {label}" for k, label in _MESS_LABELS.items() if mess.get(k))
        )
    lines.append(f"  CA file: {box.ca_file}")
    if info_file is not None:
        lines.append(
            f"  connection details, {len(USER_KEYS)} tokens per system and the Salesforce OAuth login: {info_file}"
        )
    lines.append(
        f"  data: {box.data_dir}" if box.data_dir else "  data: in memory (use --data DIR to keep it)"
    )
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {num(n)}" for name, n in counts.items())


@sandbox.command(cls=OneLineErrors)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The sandbox data directory given to `syncd sandbox serve --data`.",
)
def info(data_dir: Path) -> None:
    """Say what a sandbox data directory holds: how it was seeded and the records per object."""
    files = [data_dir / SF_FILE, data_dir / HS_FILE]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SandboxError(f"{data_dir} is not a sandbox data directory (missing {', '.join(missing)})")
    try:
        stores = [Store(f) for f in files]
    except Exception as exc:  # sqlite3.DatabaseError for a file that is not a sandbox store
        raise SandboxError(f"cannot read the sandbox data in {data_dir}: {exc}") from exc
    try:
        seeded: dict[str, Any] = dict(stores[0].meta(SEED_META, {}))
        click.echo(f"sandbox data in {data_dir}")
        if seeded:
            click.echo(
                f"  seeded with seed {seeded.get('seed')}, {num(seeded.get('persons', 0))} persons "
                f"(as of {seeded.get('now')})"
            )
        counts = store_counts(stores[0], stores[1])
        click.echo(f"  Salesforce: {_counts(counts['salesforce'])}")
        click.echo(f"  HubSpot: {_counts(counts['hubspot'])}")
    finally:
        for store in stores:
            store.close()
