"""``posbatch host …``: a thin shell over posbatch.host (no business logic here)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

import typer

from posbatch import storage
from posbatch.errors import ConfigError, PosbatchError
from posbatch.host.core import HostCore
from posbatch.host.faults import load_fault_script
from posbatch.host.server import CONNECTIONS_MAX, IDLE_TIMEOUT_MS, ServerLimits, serve
from posbatch.host.store import PAN_KEY_BYTES, HostStore

__all__ = ["app", "open_store", "pan_key"]

DATA_DIR_DEFAULT: Final = Path("posbatch-data")
DB_FILE_NAME: Final = "host.db"
PAN_KEY_FILE_NAME: Final = "host-pan.key"
LISTEN_DEFAULT: Final = "127.0.0.1:5800"
WORKERS_MAX: Final = 16

app = typer.Typer(help="The acquirer host (POSP).", no_args_is_help=True, add_completion=False)

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="Where the SQLite file and the PAN key live.")
]


def pan_key(data_dir: Path) -> bytes:
    """The PAN-hash key of this data directory (created on first use, mode 0600)."""
    path = data_dir / PAN_KEY_FILE_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(PAN_KEY_BYTES))
    try:
        return bytes.fromhex(path.read_text().strip())
    except ValueError as exc:
        raise ConfigError(f"{path} does not hold a hex key") from exc


def open_store(data_dir: Path) -> HostStore:
    """The store of ``data_dir`` (or of POSBATCH_DATABASE_URL)."""
    url = storage.database_url(data_dir, file_name=DB_FILE_NAME)
    return HostStore.open(url, pan_key=pan_key(data_dir))


def _without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` less ``name VALUE`` / ``name=VALUE``."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            kept.append(arg)
    return kept


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _fail(exc: PosbatchError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


@app.command("serve")
def serve_command(
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = LISTEN_DEFAULT,
    data_dir: DataDir = DATA_DIR_DEFAULT,
    faults: Annotated[
        Path | None, typer.Option(help="Fault script (JSON or TOML), see docs/host.md.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="info: one JSON line per request.")] = "info",
    *,
    connections_max: Annotated[
        int, typer.Option(help="Most connections at once.")
    ] = CONNECTIONS_MAX,
    idle_timeout_ms: Annotated[
        int, typer.Option(help="Close a connection idle this long.")
    ] = IDLE_TIMEOUT_MS,
    workers: Annotated[
        int, typer.Option(help="Host processes sharing the port (SO_REUSEPORT) and the store.")
    ] = 1,
    reuse_port: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Run the host: terminals connect over TCP and speak the wire profile.

    Example: posbatch host serve --listen 127.0.0.1:5800 --data-dir ./posbatch-data
    """
    signal.signal(signal.SIGTERM, _interrupt)  # stop cleanly (and stop the other workers)
    if not 1 <= workers <= WORKERS_MAX:
        raise _fail(ConfigError(f"--workers must be 1..{WORKERS_MAX}"))
    children = []
    if workers > 1:
        argv = _without_option(sys.argv[1:], "--workers")
        for _ in range(workers - 1):
            children.append(
                subprocess.Popen(  # noqa: S603 - this very command, one more process
                    [sys.executable, "-m", "posbatch", *argv, "--reuse-port"]
                )
            )
        reuse_port = True
    logging.basicConfig(stream=sys.stderr, format="%(message)s", level=log_level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    host, _, port = listen.rpartition(":")
    try:
        script = load_fault_script(faults) if faults is not None else None
        store = open_store(data_dir)
    except PosbatchError as exc:
        raise _fail(exc) from exc
    core = HostCore(store, clock=lambda: datetime.now(UTC), faults=script)
    limits = ServerLimits(connections_max=connections_max, idle_timeout_ms=idle_timeout_ms)
    try:
        asyncio.run(
            serve(core, host or "127.0.0.1", int(port), limits=limits, reuse_port=reuse_port)
        )
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
        for child in children:
            child.terminate()
            child.wait()


@app.command("add-terminal")
def add_terminal(
    merchant_id: Annotated[str, typer.Option(help="15 characters.")],
    terminal_id: Annotated[str, typer.Option(help="8 characters.")],
    master_key: Annotated[
        str | None, typer.Option(help="32 hex digits; generated and printed when absent.")
    ] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Register a terminal with its master key (TMK).

    Example: posbatch host add-terminal --merchant-id 898110054110001 --terminal-id 10000001
    """
    generated = master_key is None
    key_hex = secrets.token_hex(16).upper() if master_key is None else master_key
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise _fail(ConfigError("--master-key must be 32 hex digits")) from None
    try:
        with open_store(data_dir) as store:
            store.add_terminal(merchant_id, terminal_id, key, now=datetime.now(UTC))
    except PosbatchError as exc:
        raise _fail(exc) from exc
    typer.echo(f"registered terminal {terminal_id} of merchant {merchant_id}")
    if generated:
        typer.echo(f"master key: {key_hex}")


@app.command("list-terminals")
def list_terminals(data_dir: DataDir = DATA_DIR_DEFAULT) -> None:
    """List registered terminals with their batch state.

    Example: posbatch host list-terminals --data-dir ./posbatch-data
    """
    typer.echo("terminal_id  merchant_id      status     signed_on  batch_no  state      last_stan")
    with open_store(data_dir) as store:
        terminals = store.list_terminals()
    for info in terminals:
        batch = "-" if info.batch_no is None else f"{info.batch_no:06d}"
        state = "-" if info.batch_state is None else info.batch_state.value
        stan = "-" if info.last_stan is None else f"{info.last_stan:06d}"
        typer.echo(
            f"{info.terminal_id:<12} {info.merchant_id:<16} {info.status:<10} "
            f"{'yes' if info.signed_on else 'no':<10} {batch:<9} {state:<10} {stan}"
        )


@app.command("suspend")
def suspend(
    terminal_id: str,
    data_dir: DataDir = DATA_DIR_DEFAULT,
    resume: Annotated[bool, typer.Option(help="Make the terminal active again.")] = False,
) -> None:
    """Suspend a terminal (its requests get 58), or --resume it.

    Example: posbatch host suspend 10000001
    """
    try:
        with open_store(data_dir) as store:
            store.set_status(terminal_id, suspended=not resume)
    except PosbatchError as exc:
        raise _fail(exc) from exc
    typer.echo(f"terminal {terminal_id} {'active' if resume else 'suspended'}")


@app.command("batches")
def batches(terminal_id: str, data_dir: DataDir = DATA_DIR_DEFAULT) -> None:
    """Show a terminal's batches: state, times, how each closed, settlement answer.

    Example: posbatch host batches 10000001
    """
    typer.echo(
        "batch_no  state      opened_at            closed_at            closed_by  host_totals"
    )
    with open_store(data_dir) as store:
        rows = store.batches(terminal_id)
    for batch in rows:
        closed = "-" if batch.closed_at is None else f"{batch.closed_at:%Y-%m-%d %H:%M:%S}"
        totals = "-" if batch.host_totals is None else batch.host_totals.encode()
        marker = " *" if batch.current else ""
        typer.echo(
            f"{batch.batch_no:06d}    {batch.state.value:<10} {batch.opened_at:%Y-%m-%d %H:%M:%S}  "
            f"{closed:<20} {batch.close_reason or '-':<10} {totals}{marker}"
        )


@app.command("transactions")
def transactions(
    terminal_id: str,
    batch_no: Annotated[int | None, typer.Option(help="Only this batch.")] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Show a terminal's transactions (masked card numbers only).

    Example: posbatch host transactions 10000001 --batch-no 1
    """
    typer.echo("batch_no  stan    kind      amount_fen  card                 status    code")
    with open_store(data_dir) as store:
        found = store.transactions(terminal_id, batch_no)
    for row in found:
        typer.echo(
            f"{row.batch_no:06d}    {row.stan:06d}  {row.kind.value:<9} {row.amount_fen:>10}  "
            f"{row.pan_masked:<20} {row.status:<9} {row.response_code}"
        )


@app.command("exceptions")
def exceptions(
    terminal_id: Annotated[str | None, typer.Argument(help="Only this terminal.")] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Show exception (差错) records with their causes.

    Example: posbatch host exceptions 10000001
    """
    with open_store(data_dir) as store:
        records = store.exceptions(terminal_id)
    for row in records:
        batch = "-" if row.batch_no is None else f"{row.batch_no:06d}"
        stan = "-" if row.stan is None else f"{row.stan:06d}"
        typer.echo(
            f"#{row.exception_id} {row.terminal_id} batch {batch} stan {stan} {row.kind}: "
            f"{row.cause} (terminal {row.terminal_amount_fen}, host {row.host_amount_fen})"
        )


@app.command("advance-batch")
def advance_batch(
    terminal_id: str,
    reason: Annotated[str, typer.Option(help="Why, for the exception record.")],
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Back office: close a terminal's open batch now and open the next (its terminal gets 77).

    Example: posbatch host advance-batch 10000001 --reason "cut-over fix"
    """
    try:
        with open_store(data_dir) as store:
            batch_no = store.advance_batch(terminal_id, reason, now=datetime.now(UTC))
    except PosbatchError as exc:
        raise _fail(exc) from exc
    typer.echo(f"terminal {terminal_id} now on batch {batch_no:06d}")


@app.command("doctor")
def doctor(
    terminal_id: str,
    data_dir: DataDir = DATA_DIR_DEFAULT,
    bundle: Annotated[
        Path | None, typer.Option(help="Also write a support bundle to this file.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Diagnose a terminal's batch trouble from the host's records alone (posbatch.doctor).

    Example: posbatch host doctor 10000001 --bundle 10000001.json
    """
    from posbatch.doctor.cli import host_doctor_command  # noqa: PLC0415 - doctor is optional

    try:
        with open_store(data_dir) as store:
            code = host_doctor_command(store, terminal_id, bundle=bundle, json_out=json_out)
    except PosbatchError as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code)
