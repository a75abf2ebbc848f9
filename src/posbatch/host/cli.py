"""``posbatch host …``: a thin shell over posbatch.host (no business logic here)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

import typer

from posbatch import storage
from posbatch.errors import ConfigError, PosbatchError
from posbatch.host.core import HostCore
from posbatch.host.faults import load_fault_script
from posbatch.host.server import (
    CONNECTIONS_MAX,
    CONNECTIONS_PER_ADDRESS_MAX,
    FIRST_FRAME_TIMEOUT_MS,
    FRAME_DEADLINE_MS,
    IDLE_TIMEOUT_MS,
    UNSENT_BYTES_MAX,
    ServerLimits,
    serve,
)
from posbatch.host.store import PAN_KEY_BYTES, HostStore
from posbatch.host.supervisor import Supervisor, reserve_port, stop_with_parent

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


def open_store(data_dir: Path, *, migrate: bool = True) -> HostStore:
    """The store of ``data_dir`` (or of POSBATCH_DATABASE_URL)."""
    url = storage.database_url(data_dir, file_name=DB_FILE_NAME)
    return HostStore.open(url, pan_key=pan_key(data_dir), migrate=migrate)


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
        int, typer.Option(help="Most connections at once (per worker).")
    ] = CONNECTIONS_MAX,
    idle_timeout_ms: Annotated[
        int, typer.Option(help="Close a connection this long after its last whole frame.")
    ] = IDLE_TIMEOUT_MS,
    connections_per_address_max: Annotated[
        int | None,
        typer.Option(
            help="Most connections from one peer address (IPv6: one /64); default "
            f"{CONNECTIONS_PER_ADDRESS_MAX}, at most half of --connections-max.",
            show_default=False,
        ),
    ] = None,
    frame_deadline_ms: Annotated[
        int, typer.Option(help="A frame must be whole this long after its first byte.")
    ] = FRAME_DEADLINE_MS,
    first_frame_timeout_ms: Annotated[
        int, typer.Option(help="Close a connection with no whole frame this long after it opened.")
    ] = FIRST_FRAME_TIMEOUT_MS,
    unsent_bytes_max: Annotated[
        int,
        typer.Option(help="Stop reading a connection whose unread answers pass this many bytes."),
    ] = UNSENT_BYTES_MAX,
    workers: Annotated[
        int,
        typer.Option(
            help="Host processes sharing the port (SO_REUSEPORT) and the store, "
            "under a supervisor that restarts them."
        ),
    ] = 1,
    worker: Annotated[bool, typer.Option(hidden=True)] = False,
    supervisor_pid: Annotated[int, typer.Option(hidden=True)] = 0,
) -> None:
    """Run the host: terminals connect over TCP and speak the wire profile.

    SIGTERM or SIGINT stops it gracefully: no new connections, answers to what
    was read go out after their commit, then exit 0.

    Example: posbatch host serve --listen 127.0.0.1:5800 --data-dir ./posbatch-data --workers 2
    """
    early_stop: list[int] = []  # a signal that comes while the store opens stops at once
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: early_stop.append(received))
    if worker and supervisor_pid and not stop_with_parent(supervisor_pid):
        early_stop.append(signal.SIGTERM)
    logging.basicConfig(stream=sys.stderr, format="%(message)s", level=log_level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if not 1 <= workers <= WORKERS_MAX:
        raise _fail(ConfigError(f"--workers must be 1..{WORKERS_MAX}"))
    host, _, port_text = listen.rpartition(":")
    host = host or "127.0.0.1"
    try:
        limits = ServerLimits(
            connections_max=connections_max,
            connections_per_address_max=connections_per_address_max or 0,
            idle_timeout_ms=idle_timeout_ms,
            frame_deadline_ms=frame_deadline_ms,
            first_frame_timeout_ms=first_frame_timeout_ms,
            unsent_bytes_max=unsent_bytes_max,
        )
    except ConfigError as exc:  # say it with the options' names
        text = str(exc)
        for name in ServerLimits.__dataclass_fields__:
            text = text.replace(name, "--" + name.replace("_", "-"))
        raise _fail(ConfigError(text)) from exc
    try:
        port = int(port_text)
        script = load_fault_script(faults) if faults is not None else None
        # The supervisor (or the one process) migrates; a worker only checks.
        store = open_store(data_dir, migrate=not worker)
    except ValueError:
        raise _fail(ConfigError(f"--listen must be HOST:PORT, not {listen!r}")) from None
    except PosbatchError as exc:
        raise _fail(exc) from exc
    if workers > 1:
        store.close()
        if early_stop:
            raise typer.Exit(0)
        options = ["--data-dir", str(data_dir), "--log-level", log_level,
                   "--connections-max", str(connections_max),
                   "--connections-per-address-max", str(limits.connections_per_address_max),
                   "--idle-timeout-ms", str(idle_timeout_ms),
                   "--frame-deadline-ms", str(frame_deadline_ms),
                   "--first-frame-timeout-ms", str(first_frame_timeout_ms),
                   "--unsent-bytes-max", str(unsent_bytes_max)]  # fmt: skip
        if faults is not None:
            options += ["--faults", str(faults)]
        raise typer.Exit(_supervise(host, port, workers, options))
    core = HostCore(store, clock=lambda: datetime.now(UTC), faults=script)
    try:
        asyncio.run(
            _serve_until_signalled(core, host, port, limits, reuse_port=worker, early=early_stop)
        )
    finally:
        store.close()


async def _serve_until_signalled(
    core: HostCore,
    host: str,
    port: int,
    limits: ServerLimits,
    *,
    reuse_port: bool,
    early: list[int],
) -> None:
    """Serve; SIGTERM or SIGINT (now, or ``early`` before the loop ran) stops gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if early:
        stop.set()
    await serve(core, host, port, limits=limits, reuse_port=reuse_port, stop=stop)


def _supervise(host: str, port: int, workers: int, options: list[str]) -> int:
    """Run ``workers`` processes of this command (``--worker`` + ``options``) supervised."""
    try:
        reserved = reserve_port(host, port)
    except OSError as exc:
        raise _fail(ConfigError(f"cannot listen on {host}:{port}: {exc}")) from exc
    with reserved:
        port = reserved.getsockname()[1]
        command = [sys.executable, "-m", "posbatch", "host", "serve", "--worker",
                   "--supervisor-pid", str(os.getpid()),
                   "--listen", f"{host}:{port}", *options]  # fmt: skip
        logging.getLogger("posbatch.host").warning(
            json.dumps({"event": "supervising", "host": host, "port": port, "workers": workers})
        )
        return Supervisor(command, workers).run()


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
