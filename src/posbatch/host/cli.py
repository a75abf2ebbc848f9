"""``posbatch host …``: a thin shell over posbatch.host (no business logic here).

The store of a command is opened by :func:`open_store`: its keys sealed under
the KEK resolved from the data directory or the environment
(:mod:`posbatch.host.sealing`), its files private. Only ``serve`` and
``add-terminal`` may create a store; every other command refuses one that does
not exist. A PosbatchError escaping a command is one line, exit 2
(:class:`posbatch.cli_support.OneLineErrors`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

import typer

from posbatch import storage
from posbatch.batch.cards import mask_card_numbers
from posbatch.batch.ids import check_merchant_id, check_terminal_id, not_registered
from posbatch.batch.model import shown_at
from posbatch.batch.money import format_fen
from posbatch.cli_support import (
    BATCH_NO,
    MERCHANT_ID,
    TERMINAL_ID,
    OneLineErrors,
    count,
    error_line,
    log_foreign_lines_as_json,
    log_to_stderr,
    parse_listen,
    read_secret_file,
    refuse_secret_option,
    settle_the_heap,
    shown_ids,
)
from posbatch.errors import ConfigError, HostError, KekMismatch, PosbatchError
from posbatch.host.core import HostCore
from posbatch.host.faults import load_fault_script
from posbatch.host.sealing import (
    KEK_ENV,
    KEK_FILE_ENV,
    KEK_FILE_NAME,
    KeyEncryptionKey,
    commit_rotation,
    finish_rotation,
    read_kek_file,
    resolve_kek,
    stage_rotation,
)
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
from posbatch.host.store import (
    PAN_HMAC_KEY_BYTES,
    SERVE_LOCK_TIMEOUT_MS,
    HostStore,
    host_store_exists,
)
from posbatch.host.supervisor import Supervisor, reserve_port, say_listening, stop_with_parent
from posbatch.wire import encode_totals, parse_tmk

__all__ = ["app", "kek", "open_store", "pan_key"]

DATA_DIR_DEFAULT: Final = Path("posbatch-data")
DB_FILE_NAME: Final = "host.db"
PAN_KEY_FILE_NAME: Final = "host-pan.key"
LISTEN_DEFAULT: Final = "127.0.0.1:5800"
WORKERS_MAX: Final = 16
CONNECTIONS_LIMIT: Final = 1_000_000  # the most --connections-max may say
IDLE_TIMEOUT_LIMIT_MS: Final = 86_400_000  # the most --idle-timeout-ms may say: a day
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
ROWS_DEFAULT: Final = 1000  # rows a listing shows unless --limit says otherwise
ROWS_MAX: Final = 100_000

app = typer.Typer(
    help="The acquirer host (POSP).", no_args_is_help=True, add_completion=False, cls=OneLineErrors
)

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", help="Where the SQLite file, the PAN key and the KEK live."),
]
# Every command that names a registered terminal: one rule, one message (posbatch.batch.ids).
TerminalIdArgument = Annotated[str, typer.Argument(parser=TERMINAL_ID)]
Limit = Annotated[
    int, typer.Option("--limit", parser=count(1, ROWS_MAX), help="Rows to show at most.")
]


def pan_key(
    data_dir: Path, *, create: bool = True, store_exists: Callable[[], bool] | None = None
) -> bytes | None:
    """The PAN-hash key of this data directory (created with a new store, mode 0600).

    Without ``create`` a missing key is None: a command that never hashes a PAN.
    ``store_exists`` tells whether the store is there already: its card numbers are
    hashed under a key of their own, and a new key would match none of them (every
    void and refund of an earlier sale declined 14, no duplicate found), so a missing
    key of an existing store is refused, never made anew.
    """
    path = data_dir / PAN_KEY_FILE_NAME
    if not path.exists():
        if not create:
            return None
        if store_exists is not None and store_exists():
            raise ConfigError(
                f"no PAN key at {path}, and this host store hashes its card numbers under "
                f"its own: put back the {PAN_KEY_FILE_NAME} of this store (from the backup "
                "of its data directory, or from another host process on the same database); "
                "a new key would match none of its cards (see docs/host.md, Backups)"
            )
        storage.write_private_file(path, secrets.token_hex(PAN_HMAC_KEY_BYTES), exclusive=True)
    text = storage.read_private_file(path, missing=f"no PAN key at {path}")
    try:
        return bytes.fromhex(text.strip())
    except ValueError as exc:
        raise ConfigError(f"{path} does not hold a hex key") from exc


def kek(data_dir: Path, *, create: bool = True) -> KeyEncryptionKey:
    """The KEK of the store of ``data_dir`` (see :func:`posbatch.host.sealing.resolve_kek`)."""
    return resolve_kek(data_dir, create=create)


def open_store(
    data_dir: Path,
    *,
    migrate: bool = True,
    create: bool = False,
    lock_timeout_ms: int | None = None,
) -> HostStore:
    """The store of ``data_dir`` (or of POSBATCH_DATABASE_URL), keys sealed under its KEK.

    ``create``: a new store may be made (``serve``, ``add-terminal``); otherwise a
    missing store is a ConfigError and nothing is created. The data directory and
    its files must be private (mode 0700 / 0600): a looser one is refused, with the
    chmod that fixes it. A rotation that committed but did not yet put its new KEK
    file in place (a crash between the two) is finished here. ``lock_timeout_ms``: see
    :meth:`HostStore.open` (``serve`` bounds its lock waits).
    """
    url = storage.database_url(data_dir, file_name=DB_FILE_NAME)
    database = storage.sqlite_path(url)
    if database is not None:
        storage.check_data_dir(data_dir)
    if create:
        storage.make_private_dir(data_dir)
    else:
        storage.require_database(
            url, what="host store", hint="`posbatch host add-terminal` or `serve` makes one"
        )
    if data_dir.exists():
        if not data_dir.is_dir():
            raise ConfigError(f"--data-dir {data_dir} is not a directory")
        storage.check_private(data_dir)
    if database is not None:
        storage.check_private_database(database)
    default_kek = data_dir / KEK_FILE_NAME
    had_kek = default_kek.exists()
    found: list[KeyEncryptionKey] = []

    def store_kek() -> KeyEncryptionKey:  # once the database answers: its errors come first
        # A SQLite store without a KEK file predates sealing: its migration seals it.
        found.append(resolve_kek(data_dir, create=create or database is not None))
        return found[0]

    try:
        return HostStore.open(
            url,
            pan_key=pan_key(data_dir, create=create, store_exists=lambda: host_store_exists(url)),
            kek=store_kek,
            migrate=migrate,
            create=create,
            lock_timeout_ms=lock_timeout_ms,
        )
    except KekMismatch as exc:
        if not had_kek and found[0].path == default_kek:  # made just now, not this store's
            default_kek.unlink(missing_ok=True)  # leave no stray key behind
            raise KekMismatch(
                f"no KEK at {default_kek}, and this store is sealed under KEK "
                f"{exc.store_kek_id}: give that KEK ({KEK_FILE_ENV}=PATH or {KEK_ENV}), "
                "see docs/host.md",
                store_kek_id=exc.store_kek_id,
            ) from exc
        if finish_rotation(found[0], exc.store_kek_id):
            return open_store(
                data_dir, migrate=migrate, create=create, lock_timeout_ms=lock_timeout_ms
            )
        raise


def _registered(store: HostStore, terminal_id: str) -> None:
    if store.terminal(terminal_id) is None:
        raise HostError(not_registered(terminal_id))


def _fail(exc: PosbatchError) -> typer.Exit:
    typer.echo(error_line(str(exc), allowed=shown_ids(exc)), err=True)
    return typer.Exit(2)


@app.command("serve")
def serve_command(
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = LISTEN_DEFAULT,
    data_dir: DataDir = DATA_DIR_DEFAULT,
    faults: Annotated[
        Path | None, typer.Option(help="Fault script (JSON or TOML), see docs/host.md.")
    ] = None,
    log_level: Annotated[
        str, typer.Option(help=f"info: one JSON line per request ({', '.join(LOG_LEVELS)}).")
    ] = "info",
    *,
    connections_max: Annotated[
        int,
        typer.Option(
            parser=count(1, CONNECTIONS_LIMIT), help="Most connections at once (per worker)."
        ),
    ] = CONNECTIONS_MAX,
    idle_timeout_ms: Annotated[
        int,
        typer.Option(
            parser=count(1, IDLE_TIMEOUT_LIMIT_MS),
            help="Close a connection this long after its last whole frame.",
        ),
    ] = IDLE_TIMEOUT_MS,
    connections_per_address_max: Annotated[
        int | None,
        typer.Option(
            parser=count(0),
            help="Most connections from one peer address (IPv6: one /64); default "
            f"{CONNECTIONS_PER_ADDRESS_MAX}, at most half of --connections-max.",
            show_default=False,
        ),
    ] = None,
    frame_deadline_ms: Annotated[
        int,
        typer.Option(parser=count(0), help="A frame must be whole this long after its first byte."),
    ] = FRAME_DEADLINE_MS,
    first_frame_timeout_ms: Annotated[
        int,
        typer.Option(
            parser=count(0),
            help="Close a connection with no whole frame this long after it opened.",
        ),
    ] = FIRST_FRAME_TIMEOUT_MS,
    unsent_bytes_max: Annotated[
        int,
        typer.Option(
            parser=count(0),
            help="Stop reading a connection whose unread answers pass this many bytes.",
        ),
    ] = UNSENT_BYTES_MAX,
    workers: Annotated[
        int,
        typer.Option(
            parser=count(0),
            help="Host processes sharing the port (SO_REUSEPORT) and the store, "
            "under a supervisor that restarts them.",
        ),
    ] = 1,
    worker: Annotated[bool, typer.Option(hidden=True)] = False,
    supervisor_pid: Annotated[int, typer.Option(hidden=True)] = 0,
    ready_fd: Annotated[int, typer.Option(hidden=True)] = -1,
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
    if log_level.lower() not in LOG_LEVELS:
        raise _fail(ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}"))
    log_to_stderr(log_level.upper())
    log_foreign_lines_as_json()  # a driver's warning too is one JSON line
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if not 1 <= workers <= WORKERS_MAX:
        raise _fail(ConfigError(f"--workers must be 1..{WORKERS_MAX}"))
    host, port = parse_listen(listen)
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
    try:  # before the store is made: a typo in --listen leaves nothing behind
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise _fail(ConfigError(f"cannot listen on {listen}: {exc.strerror or exc}")) from exc
    script = load_fault_script(faults) if faults is not None else None
    # The supervisor (or the one process) migrates; a worker only checks.
    store = open_store(
        data_dir, migrate=not worker, create=not worker, lock_timeout_ms=SERVE_LOCK_TIMEOUT_MS
    )
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
    settle_the_heap()
    try:
        asyncio.run(
            _serve_until_signalled(
                core, host, port, limits, reuse_port=worker, early=early_stop, ready_fd=ready_fd
            )
        )
    except OSError as exc:  # the address: in use, not on this machine, not resolved
        raise _fail(ConfigError(f"cannot listen on {listen}: {exc.strerror or exc}")) from exc
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
    ready_fd: int = -1,
) -> None:
    """Serve; SIGTERM or SIGINT (now, or ``early`` before the loop ran) stops gracefully.

    ``ready_fd`` (a worker): the supervisor's pipe, told once the worker listens.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if early:
        stop.set()
    ready = asyncio.Event()
    serving = asyncio.create_task(
        serve(core, host, port, limits=limits, reuse_port=reuse_port, stop=stop, ready=ready)
    )
    if ready_fd >= 0:
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if ready.is_set():
            say_listening(ready_fd)
    await serving


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
    merchant_id: Annotated[str, typer.Option(parser=MERCHANT_ID, help="15 letters or digits.")],
    terminal_id: Annotated[str, typer.Option(parser=TERMINAL_ID, help="8 letters or digits.")],
    master_key_file: Annotated[
        str | None,
        typer.Option(
            help="File holding the TMK (32 hex digits), or - to read it from standard input; "
            "generated and printed when absent. Never on the command line: `ps` shows a "
            "command line to every user of the machine."
        ),
    ] = None,
    master_key: Annotated[str | None, typer.Option(hidden=True)] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Register a terminal with its master key (TMK), sealed under the store's KEK.

    Example: posbatch host add-terminal --merchant-id 898110054110001 --terminal-id 10000001
    --master-key-file tmk.hex
    """
    refuse_secret_option(master_key, option="--master-key", instead="--master-key-file PATH or -")
    check_terminal_id(terminal_id)  # before the store is made: a typo leaves nothing behind
    check_merchant_id(merchant_id)
    generated = master_key_file is None
    if master_key_file is None:
        key_hex = secrets.token_hex(16).upper()
    else:
        key_hex = read_secret_file(master_key_file, what="master key")
    key = parse_tmk(key_hex)
    with open_store(data_dir, create=True) as store:
        store.add_terminal(merchant_id, terminal_id, key, now=datetime.now(UTC))
    typer.echo(f"registered terminal {terminal_id} of merchant {merchant_id}")
    if generated:
        typer.echo(f"master key: {key_hex}")


@app.command("list-terminals")
def list_terminals(data_dir: DataDir = DATA_DIR_DEFAULT) -> None:
    """List registered terminals with their batch state.

    Example: posbatch host list-terminals --data-dir ./posbatch-data
    """
    with open_store(data_dir) as store:
        terminals = store.list_terminals()
    typer.echo("terminal_id  merchant_id      status     signed_on  batch_no  state      last_stan")
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
    terminal_id: TerminalIdArgument,
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
def batches(
    terminal_id: TerminalIdArgument,
    data_dir: DataDir = DATA_DIR_DEFAULT,
    limit: Limit = ROWS_DEFAULT,
) -> None:
    """Show a terminal's batches: state, times, how each closed, settlement answer.

    Example: posbatch host batches 10000001
    """
    with open_store(data_dir) as store:
        _registered(store, terminal_id)
        rows = store.batches(terminal_id, limit=limit + 1)
    typer.echo(
        "batch_no  state      opened_at            closed_at            closed_by  host_totals"
        "   (Beijing time)"
    )
    if len(rows) > limit:
        typer.echo(f"… older batches not shown: only the latest {limit} (--limit)")
        rows = rows[1:]
    for batch in rows:
        opened = shown_at(batch.opened_at, seconds=True)
        closed = "-" if batch.closed_at is None else shown_at(batch.closed_at, seconds=True)
        totals = "-" if batch.host_totals is None else encode_totals(batch.host_totals)
        marker = " *" if batch.current else ""
        typer.echo(
            f"{batch.batch_no:06d}    {batch.state.value:<10} {opened}  "
            f"{closed:<20} {batch.close_reason or '-':<10} {totals}{marker}"
        )


@app.command("transactions")
def transactions(
    terminal_id: TerminalIdArgument,
    batch_no: Annotated[
        int | None, typer.Option(parser=BATCH_NO, metavar="BATCH_NO", help="Only this batch.")
    ] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
    limit: Limit = ROWS_DEFAULT,
    page: Annotated[
        int,
        typer.Option(
            parser=count(1, ROWS_MAX), help="Which page of --limit rows (1 = the oldest)."
        ),
    ] = 1,
) -> None:
    """Show a terminal's transactions (masked card numbers only), a page at a time.

    Example: posbatch host transactions 10000001 --batch-no 1 --limit 100 --page 2
    """
    with open_store(data_dir) as store:
        _registered(store, terminal_id)
        total = store.count_transactions(terminal_id, batch_no)
        if page > 1 and (page - 1) * limit >= total:
            raise ConfigError(
                f"--page {page} is past the end: {total} transactions, "
                f"{-(-total // limit)} page(s) of {limit}"
            )
        found = store.transactions(terminal_id, batch_no, limit=limit, offset=(page - 1) * limit)
    typer.echo("batch_no  stan    kind      amount_fen  card                 status    code")
    for row in found:
        typer.echo(
            f"{row.batch_no:06d}    {row.stan:06d}  {row.kind.value:<9} {row.amount_fen:>10}  "
            f"{row.pan_masked:<20} {row.status:<9} {row.response_code}"
        )
    first = (page - 1) * limit
    last = first + len(found)
    if first > 0 or last < total:
        more = f"; next: --page {page + 1}" if last < total else ""
        typer.echo(f"… rows {first + 1}-{last} of {total} shown{more}")


@app.command("exceptions")
def exceptions(
    terminal_id: Annotated[
        str | None,
        typer.Argument(parser=TERMINAL_ID, help="Only this terminal."),
    ] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
    limit: Limit = ROWS_DEFAULT,
) -> None:
    """Show exception (差错) records with their causes.

    Example: posbatch host exceptions 10000001
    """
    with open_store(data_dir) as store:
        if terminal_id is not None:
            _registered(store, terminal_id)
        records = store.exceptions(terminal_id, limit=limit + 1)
    if len(records) > limit:
        records = records[:limit]
        typer.echo(f"… only the oldest {limit} exception records are shown (--limit)")
    for row in records:
        batch = "-" if row.batch_no is None else f"{row.batch_no:06d}"
        stan = "-" if row.stan is None else f"{row.stan:06d}"
        sides = (("terminal", row.terminal_amount_fen), ("host", row.host_amount_fen))
        # yuan, and only the sides that have an amount (it printed "terminal None", in fen)
        amounts = ", ".join(f"{s} {format_fen(a)}" for s, a in sides if a is not None)
        # The cause is free text (an advance's reason as the back office typed it): masked.
        cause = mask_card_numbers(row.cause, allowed=frozenset({row.terminal_id}))
        typer.echo(
            f"#{row.exception_id} {row.terminal_id} batch {batch} stan {stan} {row.kind}: "
            f"{cause}" + (f" ({amounts})" if amounts else "")
        )


@app.command("advance-batch")
def advance_batch(
    terminal_id: TerminalIdArgument,
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


@app.command("rotate-kek")
def rotate_kek(
    data_dir: DataDir = DATA_DIR_DEFAULT,
    new_kek_file: Annotated[
        Path | None,
        typer.Option(
            help="A file holding the new KEK (64 hex digits, mode 0600); generated when absent."
        ),
    ] = None,
) -> None:
    """Re-seal every terminal key under a new key-encryption key, in one transaction.

    A host serving the store follows the rotation from its KEK file, without a restart
    (one given the KEK in POSBATCH_HOST_KEK is refused until restarted with the new one);
    while the keys are re-sealed its requests wait. A crash before the commit leaves the
    old KEK in force; after it,
    the next command finishes the change. The KEK file (the data directory's, or
    POSBATCH_HOST_KEK_FILE) then holds the new KEK; a KEK given in POSBATCH_HOST_KEK
    needs --new-kek-file, whose content you then put in its place.

    Example: posbatch host rotate-kek --data-dir ./posbatch-data
    """
    with open_store(data_dir) as store:
        current = store.kek
        if new_kek_file is not None:
            if not new_kek_file.exists():
                new = KeyEncryptionKey.generate(str(new_kek_file))
                storage.write_private_file(new_kek_file, new.hex() + "\n", exclusive=True)
            new = read_kek_file(new_kek_file)
        elif current.path is None:
            raise ConfigError(f"the KEK comes from {KEK_ENV}: give the new one in --new-kek-file")
        else:
            new = KeyEncryptionKey.generate()
        stage_rotation(current, new)
        count = store.rotate_kek(new)
        commit_rotation(current)
    where = current.path or new_kek_file
    typer.echo(
        f"re-sealed the keys of {count} terminal(s) under KEK {new.kek_id} (was {current.kek_id})"
    )
    if current.path is None:
        typer.echo(f"the KEK is in {where}; restart every host process on this store with it")
        typer.echo(f"put the KEK of {new_kek_file} in {KEK_ENV} (or {KEK_FILE_ENV}={new_kek_file})")
    else:
        typer.echo(f"the KEK is in {where}; host processes reading it there follow the change")
