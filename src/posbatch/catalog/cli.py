"""``posbatch catalog …`` and ``posbatch checkout``: a thin shell over posbatch.catalog.

Where things live:

- the back office (products, lots, orders): ``POSBATCH_DATABASE_URL`` if set
  (then it shares the host's database, in its own tables), else
  ``--data-dir``/catalog.db (default ./posbatch-data/catalog.db);
- a terminal's copy of the catalog: ``--terminal-dir``/catalog.db (default
  ./posbatch-terminal/catalog.db), always a local SQLite file, and the till's
  credential for ``catalog serve``: ``--terminal-dir``/catalog-till.json.

Who did something (a recall, goods received, an adjustment) is ``--by NAME``,
by default the operating-system login.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from posbatch import storage
from posbatch.batch.cards import mask_card_numbers
from posbatch.batch.model import BEIJING, shown_at
from posbatch.catalog._checkout import (
    CATALOG_AGE_MINUTES_MAX,
    DEFAULT_MAX_CATALOG_AGE,
    DEFAULT_NEAR_EXPIRY_DAYS,
    NEAR_EXPIRY_DAYS_MAX,
    Cart,
    CatalogChanged,
    format_fen,
    plural,
    render_receipt,
)
from posbatch.catalog._csv import decode_catalog_csv, parse_catalog_csv, write_catalog_csv
from posbatch.catalog._gtin import DIGIT_RUN, normalize_gtin, shown_gtins
from posbatch.catalog._orders_http import HttpOrderBook
from posbatch.catalog._orders_store import TraceRow
from posbatch.catalog._returns import (
    ReturnLine,
    parse_receipt_scan,
    readable_receipt_no,
    render_return_receipt,
    return_order,
    summarize_lines,
)
from posbatch.catalog._scan import DEFAULT_SEPARATORS, parse_scan
from posbatch.catalog._stock import StockRow, stock_by_product
from posbatch.catalog._store import CatalogStore
from posbatch.catalog._sync import (
    create_app,
    fetch_head_version,
    sync_replica,
    write_changes_file,
)
from posbatch.catalog._till import Till
from posbatch.catalog._tills import (
    CREDENTIAL_FILE_NAME,
    TillCredential,
    read_credential,
    write_credential,
)
from posbatch.catalog._trace_code import TRACE_CODE_DIGITS, TRACE_CODE_FIRST_DIGIT
from posbatch.catalog._verify import host_verifier_for
from posbatch.catalog.payer import Card, OrderLedger, TerminalPayer, recover_pending_orders
from posbatch.cli_support import (
    TERMINAL_ID,
    count,
    error_line,
    listening_socket,
    log_to_stderr,
    one_line,
    parse_listen,
    print_table,
    read_card_number,
    serve_uvicorn,
)
from posbatch.errors import (
    CatalogError,
    CheckoutRefused,
    ConfigError,
    Declined,
    HostUnreachable,
    PosbatchError,
    ScanError,
)
from posbatch.terminal import Journal, TcpDriver, open_terminal, parse_address

__all__ = ["app", "checkout_app", "open_back_office", "open_terminal_copy"]

DATA_DIR_DEFAULT: Final = Path("posbatch-data")
TERMINAL_DIR_DEFAULT: Final = Path("posbatch-terminal")
DB_FILE_NAME: Final = "catalog.db"
LISTEN_DEFAULT: Final = "127.0.0.1:5801"
SERVE_CONNECTIONS_MAX: Final = 64
"""Most concurrent HTTP connections `catalog serve` accepts (uvicorn answers 503 beyond)."""
CARD_PROMPTS_MAX: Final = 3
"""Most tries at typing a card before a payment is given up."""
CHOICE_PROMPTS_MAX: Final = 3
"""Most answers to a [t]/[f]/[s] prompt before the line is skipped."""
TRACE_RECEIPT_WIDTH_MIN: Final = 20
EXPIRED_NAMED_MAX: Final = 5  # lots an import's "already expired" note names

app = typer.Typer(
    help="Products and lots (商品批次号): import, scan, sync, recall trace.",
    no_args_is_help=True,
    add_completion=False,
)
checkout_app = typer.Typer(add_completion=False)  # its help: checkout()'s docstring


DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        help="Back office data directory (unless POSBATCH_DATABASE_URL).",
    ),
]
TerminalDir = Annotated[
    Path,
    typer.Option(
        "--terminal-dir",
        help="The terminal's data directory (catalog copy).",
    ),
]
# A catalog version is an SQL BIGINT: a larger --since is no version at all.
VERSION_MAX: Final = 2**63 - 1
Separators = Annotated[
    list[str] | None,
    typer.Option("--separator", help="A character the scanner sends for FNC1 besides GS."),
]
By = Annotated[
    str | None,
    typer.Option("--by", help="Who does this (recorded); default: your login name."),
]
Gtin = Annotated[
    str | None, typer.Option("--gtin", help="The product (GTIN), if the lot number is not unique.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
CredentialFile = Annotated[
    Path | None,
    typer.Option(
        "--credential",
        help=f"The till's credential file (default: --terminal-dir/{CREDENTIAL_FILE_NAME}). "
        "It holds a secret: keep it out of command lines and shared folders.",
    ),
]


def open_back_office(data_dir: Path, *, create: bool = False) -> CatalogStore:
    """The back office's catalog; only ``create`` (import, serve) may make a new one.

    Paid orders are checked against the host's store if it is here.
    """
    try:
        url = storage.database_url(data_dir, file_name=DB_FILE_NAME)
        if storage.sqlite_path(url) is not None:
            storage.check_data_dir(data_dir)
        if not create:
            storage.require_database(
                url, what="catalog", hint="`posbatch catalog import` makes one"
            )
        verifier = host_verifier_for(data_dir)
    except OSError as exc:
        raise ConfigError(f"cannot use {data_dir} as the data directory: {exc.strerror}") from exc
    return CatalogStore.open(url, payment_verifier=verifier)


def open_terminal_copy(terminal_dir: Path, *, create: bool = False) -> CatalogStore:
    """The terminal's catalog copy; only ``create`` (sync) may make a new one."""
    url = f"sqlite:///{(terminal_dir / DB_FILE_NAME).absolute()}"
    try:
        storage.check_data_dir(terminal_dir)
        if create:
            storage.make_private_dir(terminal_dir)
        else:
            storage.require_database(
                url, what="catalog copy", hint="`posbatch catalog sync` makes one"
            )
    except OSError as exc:
        raise ConfigError(
            f"cannot use {terminal_dir} as the terminal directory: {exc.strerror}"
        ) from exc
    return CatalogStore.open(url)


def _now() -> dt.datetime:
    """Now, in Beijing time: its date is the shop's today (expiry, recalls, scans)."""
    return dt.datetime.now(BEIJING)


def _typed(text: str) -> str:
    """Free text typed on the command line (a reason, a name), as it is recorded: through the
    card-number net first. Recorded whole, a card number typed into `recall --reason` came
    back whole from recall-report, its --json and the stock history."""
    return mask_card_numbers(text, allowed=_gtins(text))


def _actor(by: str | None) -> str:
    if by is not None:
        return _typed(by)
    try:
        return getpass.getuser()
    except (OSError, KeyError) as exc:
        raise ConfigError("who is doing this? give --by NAME") from exc


def _gtin(gtin: str | None) -> str | None:
    return None if gtin is None else normalize_gtin(gtin)


def _credential(terminal_dir: Path, path: Path | None, *, required: bool) -> TillCredential | None:
    """The till's credential: ``path``, else the terminal directory's (None if absent)."""
    chosen = path if path is not None else terminal_dir / CREDENTIAL_FILE_NAME
    if path is None and not chosen.exists():
        if required:
            raise ConfigError(
                f"this till has no credential ({chosen}): ask the back office for one "
                "(`posbatch catalog add-till TERMINAL_ID --output FILE`) and put it there"
            )
        return None
    return read_credential(chosen)


def _is_http(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _when(text: str | None) -> dt.datetime | None:
    """``YYYY-MM-DD`` (the end of that day) or ``YYYY-MM-DD HH:MM[:SS]``, Beijing time
    unless it names its own offset."""
    if text is None:
        return None
    try:
        if len(text.strip()) == len("YYYY-MM-DD"):
            day = dt.date.fromisoformat(text.strip())
            moment = dt.datetime.combine(day, dt.time.max)
        else:
            moment = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(f"--at {text!r} is not YYYY-MM-DD or YYYY-MM-DD HH:MM") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=BEIJING)


def _gtins(text: str) -> frozenset[str]:
    """What the card-number net shows whole in ``text``: the GTINs of :func:`shown_gtins`
    (the one rule, ``catalog serve``'s too) and drug traceability codes (20 digits starting
    with 8)."""
    return shown_gtins(text) | frozenset(
        run
        for run in DIGIT_RUN.findall(text)
        if len(run) == TRACE_CODE_DIGITS and run.startswith(TRACE_CODE_FIRST_DIGIT)
    )


def _said(text: str) -> str:
    """``text`` for the till's console: through the card-number net (the GTINs it names
    whole, as in the error lines) and safe from rich's markup (a "[" a peer sent prints)."""
    return escape(mask_card_numbers(text, allowed=_gtins(text)))


def _error_line(exc: Exception) -> str:
    """``error: <exc>`` through the card-number net, the GTINs it names left whole."""
    text = str(exc)
    return error_line(text, allowed=_gtins(text))


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except PosbatchError as exc:
        typer.echo(_error_line(exc), err=True)
        raise typer.Exit(2) from exc


@app.command("import")
def import_(
    csv_file: Annotated[Path, typer.Argument(help="CSV with the columns of docs/catalog.md.")],
    data_dir: DataDir = DATA_DIR_DEFAULT,
    encoding: Annotated[
        str | None,
        typer.Option("--encoding", help="The file's encoding (default: UTF-8, else GBK/GB18030)."),
    ] = None,
    by: By = None,
) -> None:
    """Import products and lots from a CSV file (all rows or none); stock is never overwritten.

    A new lot's quantity is its opening stock; for a lot the store knows, a
    different quantity or recall flag is only reported (use receive, adjust,
    recall).

    Example: posbatch catalog import products.csv --data-dir ./posbatch-data
    """
    with _errors():
        actor = _actor(by)
        try:
            data = csv_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {csv_file}: {exc.strerror}") from exc
        text, used = decode_catalog_csv(data, encoding=encoding)
        products, lots = parse_catalog_csv(text)
        store = open_back_office(data_dir, create=True)
        try:
            summary = store.import_catalog(
                products, lots, at=_now(), reason=f"import {csv_file.name}", actor=actor
            )
        finally:
            store.close()
    for note in summary.notes:
        typer.echo(f"note: {note}", err=True)
    today = _now().date()
    expired = [lot for lot in lots if lot.is_expired(today)]
    if expired:
        named = ", ".join(f"{lot.lot_no} ({lot.expiry})" for lot in expired[:EXPIRED_NAMED_MAX])
        more = (
            f" and {len(expired) - EXPIRED_NAMED_MAX} more"
            if len(expired) > EXPIRED_NAMED_MAX
            else ""
        )
        typer.echo(
            f"note: {plural(len(expired), 'lot')} already expired, refused at checkout: "
            f"{named}{more}",
            err=True,
        )
    typer.echo(
        f"catalog version {summary.version}: {plural(summary.products_changed, 'product')} and "
        f"{plural(summary.lots_changed, 'lot')} changed ({plural(len(products), 'product')}, "
        f"{plural(len(lots), 'lot')} read"
        + ("" if used == "utf-8-sig" else f"; the file is {used.upper()} text")
        + ")"
    )


@app.command()
def export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="CSV file to write (default stdout).")
    ] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Export products and lots as CSV, in the import format.

    Example: posbatch catalog export --output products.csv
    """
    with _errors():
        store = open_back_office(data_dir)
        try:
            products, lots = store.products_and_lots()
        finally:
            store.close()
        if output is None:
            write_catalog_csv(products, lots, sys.stdout)
            return
        with output.open("w", encoding="utf-8", newline="") as stream:
            rows = write_catalog_csv(products, lots, stream)
    typer.echo(f"{rows} row(s) written to {output}", err=True)


@app.command()
def scan(
    raw: Annotated[str, typer.Argument(help="The scan string (use $'...\\x1d...' for GS).")],
    separator: Separators = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show what a barcode scan reads as (GTIN, lot, expiry, serial, quantity) or why not.

    Example: posbatch catalog scan "]C10109501101530003|10ABC123|17261231" --separator '|'
    """
    separators = tuple(separator or ()) + DEFAULT_SEPARATORS
    try:
        result = parse_scan(raw, today=_now().date(), separators=separators)
    except (ScanError, ConfigError) as exc:
        if as_json:
            typer.echo(json.dumps({"raw": raw, "error": str(exc)}, ensure_ascii=False))
        else:
            # Not through the card-number net: a scan's error names the barcode's digits (a
            # GTIN is 14 of them, which the net would mask), from what was typed just now.
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
        return
    code = result.trace_code
    if code is not None:
        typer.echo(
            f"drug traceability code 药品追溯码 {code.code}: drug identification code "
            f"药品标识码 {code.prefix}, pack {code.pack_part}"
        )
        return
    table = Table(
        title=f"scan {raw!r}" + ("  AMBIGUOUS: candidate readings" if result.ambiguous else "")
    )
    for column in ("GTIN", "lot", "expiry", "serial", "quantity", "HRI"):
        table.add_column(column)
    for reading in result.readings:
        table.add_row(
            reading.gtin,
            reading.lot or "",
            reading.expiry.isoformat() if reading.expiry else "",
            reading.serial or "",
            str(reading.quantity or ""),
            reading.hri(),
        )
    Console().print(table)


@app.command()
def serve(
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to serve on.")
    ] = LISTEN_DEFAULT,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Serve catalog changes and orders over HTTP to registered tills (see add-till).

    Paid orders are checked against the host's store when it is reachable
    (POSBATCH_DATABASE_URL, or host.db in --data-dir).

    Example: posbatch catalog serve --listen 127.0.0.1:5801
    """
    import uvicorn  # noqa: PLC0415 - only this command needs it

    from posbatch.serving import bounded_protocol  # noqa: PLC0415

    with _errors():
        host, port = parse_listen(listen)
        sock = listening_socket(host, port, backlog=SERVE_CONNECTIONS_MAX)
        try:
            store = open_back_office(data_dir, create=True)
        except BaseException:
            sock.close()
            raise
    typer.echo(json.dumps({"event": "listening", "url": f"http://{host}:{sock.getsockname()[1]}/"}))
    # As `backoffice serve` logs: no access lines (a request's URL is what a till or a
    # stranger typed, a card number maybe, and URL-encoded it passes any net), warnings and
    # errors only, each through the card-number net (uvicorn's access formatter failed with
    # "--- Logging error ---" and a traceback on a line the net had masked).
    # Bounded like the back office's (posbatch.serving): a request must arrive within
    # REQUEST_READ_S, one address holds at most CONNECTIONS_PER_ADDRESS_MAX connections —
    # else silent connections held every till out.
    config = uvicorn.Config(
        create_app(store, clock=_now),
        http=bounded_protocol(),
        log_level="warning",
        access_log=False,
        limit_concurrency=SERVE_CONNECTIONS_MAX,
        server_header=False,
    )
    log_to_stderr(logging.WARNING, loggers=("uvicorn", "uvicorn.error", "uvicorn.access"))
    try:
        serve_uvicorn(config, sock)
    finally:
        sock.close()
        store.close()


@app.command()
def changes(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSON file to write.")],
    since: Annotated[
        int,
        typer.Option("--since", parser=count(0, VERSION_MAX), help="Changes after this version."),
    ] = 0,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Write the catalog changes after a version to a file that terminals can sync from.

    Example: posbatch catalog changes --since 0 --output catalog-changes.json
    """
    with _errors():
        store = open_back_office(data_dir)
        try:
            change_set = store.changes_since(since)
        finally:
            store.close()
        write_changes_file(change_set, output)
    typer.echo(
        f"versions {change_set.since_version}..{change_set.head_version}: "
        f"{len(change_set.products)} product(s), {len(change_set.lots)} lot(s) → {output}"
    )


@app.command()
def sync(
    source: Annotated[
        str, typer.Option("--from", help="http://HOST:PORT of `catalog serve`, or a changes file.")
    ],
    terminal_dir: TerminalDir = TERMINAL_DIR_DEFAULT,
    credential_file: CredentialFile = None,
) -> None:
    """Bring the terminal's catalog copy up to date with the back office.

    Over HTTP the till presents its credential; a copy only takes changes
    from the back office it follows.

    Example: posbatch catalog sync --from http://127.0.0.1:5801 --terminal-dir ./posbatch-terminal
    """
    with _errors():
        credential = _credential(terminal_dir, credential_file, required=_is_http(source))
        copy = open_terminal_copy(terminal_dir, create=True)
        try:
            result = sync_replica(copy, source, now=_now(), credential=credential)
        finally:
            copy.close()
    typer.echo(
        f"catalog copy: version {result.from_version} → {result.to_version} "
        f"({result.rows_applied} row(s) applied)"
    )


@app.command()
def version(
    source: Annotated[
        str | None, typer.Option("--from", help="Also show the version at this source.")
    ] = None,
    terminal_dir: TerminalDir = TERMINAL_DIR_DEFAULT,
    credential_file: CredentialFile = None,
) -> None:
    """Show the terminal copy's version and sync time (and the source's head version).

    Example: posbatch catalog version --from http://127.0.0.1:5801
    """
    with _errors():
        copy = open_terminal_copy(terminal_dir)
        try:
            state = copy.replica_state()
        finally:
            copy.close()
        if state is None:
            typer.echo("this terminal has no catalog copy yet: run `posbatch catalog sync`")
        else:
            typer.echo(
                f"copy at version {state.version}, "
                f"synced {shown_at(state.synced_at, seconds=True)} Beijing time "
                f"from {state.source}"
            )
        if source is not None:
            credential = _credential(terminal_dir, credential_file, required=_is_http(source))
            typer.echo(
                f"{source} is at version {fetch_head_version(source, credential=credential)}"
            )


def _trace_table(title: str, rows: list[TraceRow]) -> Table:
    """Sale lines as a table that never cuts a receipt number (narrow terminals wrap names)."""
    table = Table(title=title)
    table.add_column("receipt", no_wrap=True, min_width=TRACE_RECEIPT_WIDTH_MIN)
    for column in ("terminal", "status", "sold at", "batch_no", "STAN"):
        table.add_column(column, no_wrap=True)
    table.add_column("product", overflow="fold")
    table.add_column("lot / unit", overflow="fold")
    table.add_column("qty", no_wrap=True, justify="right")
    table.add_column("back", no_wrap=True, justify="right")
    for row in rows:
        status = row.line_status + (
            f" ({row.payment_check})" if row.payment_check not in (None, "verified") else ""
        )
        unit = " ".join(
            part
            for part in (
                row.lot_no or "",
                f"SN {row.serial}" if row.serial else "",
                f"追溯码 {row.trace_code}" if row.trace_code else "",
            )
            if part
        )
        table.add_row(
            readable_receipt_no(row.receipt_no),
            row.terminal_id,
            status,
            f"{shown_at(row.opened_at)}",
            row.batch_no or "",
            row.stan or "",
            row.product_name,
            unit,
            str(row.quantity),
            str(row.returned or ""),
        )
    return table


@app.command()
def trace(
    *,
    lot_no: Annotated[str | None, typer.Argument(help="The lot number (批次号) to trace.")] = None,
    gtin: Gtin = None,
    code: Annotated[
        str | None,
        typer.Option("--code", help="Trace one unit: its serial (21) or drug traceability code."),
    ] = None,
    as_json: AsJson = False,
    include_unpaid: Annotated[
        bool, typer.Option("--all", help="Also list declined / unanswered (unpaid) orders.")
    ] = False,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """List every order, receipt, payment batch_no and STAN that sold a lot or a unit.

    An unknown lot is an error that names the lot numbers it resembles.

    Example: posbatch catalog trace L2611A --json
    """
    with _errors():
        if (lot_no is None) == (code is None):
            raise ConfigError("give a LOT or --code CODE (a serial or drug traceability code)")
        store = open_back_office(data_dir)
        try:
            if code is not None:
                rows = store.trace_unit(code, include_unpaid=include_unpaid)
                what = f"unit {code}"
                if not rows:
                    raise CatalogError(
                        f"no sale line carries the serial or traceability code {code}"
                    )
            else:
                assert lot_no is not None
                only = _gtin(gtin)
                rows = store.trace_lot(lot_no, gtin=only, include_unpaid=include_unpaid)
                what = f"lot {lot_no}"
                if not rows and not store.lots_named(lot_no, gtin=only):
                    similar = store.similar_lot_numbers(lot_no, gtin=only)
                    hint = f"; did you mean {', '.join(similar)}?" if similar else ""
                    raise CatalogError(f"no lot {lot_no!r} in the catalog{hint}")
        finally:
            store.close()
    if as_json:
        typer.echo(json.dumps([row.to_json() for row in rows], ensure_ascii=False))
        return
    print_table(Console(), _trace_table(f"{what}: {plural(len(rows), 'sale line')}", rows))


@app.command()
def pending(data_dir: DataDir = DATA_DIR_DEFAULT) -> None:
    """List orders and returns written before a payment whose outcome was never recorded.

    Example: posbatch catalog pending --data-dir ./posbatch-data
    """
    with _errors():
        store = open_back_office(data_dir)
        try:
            orders = store.pending_orders()
            returns = store.pending_returns()
        finally:
            store.close()
    for order in orders:
        typer.echo(
            f"{readable_receipt_no(order.receipt_no)}  terminal {order.terminal_id}  "
            f"{format_fen(order.total_fen)}  "
            f"opened {shown_at(order.opened_at, seconds=True)}"
        )
    for item in returns:
        typer.echo(
            f"{readable_receipt_no(item.return_no)}  {item.kind} of "
            f"{readable_receipt_no(item.receipt_no)}  terminal {item.terminal_id}  "
            f"{format_fen(item.amount_fen)}  opened {shown_at(item.opened_at, seconds=True)}"
        )
    typer.echo(f"{plural(len(orders), 'pending order')}, {plural(len(returns), 'pending return')}")


# --- stock -------------------------------------------------------------------------


def _echo_stock(row: StockRow) -> None:
    where = f"lot {row.lot_no}" if row.lot_no else "no lot"
    typer.echo(
        f"{row.product_name} ({row.gtin}) {where}: {row.on_hand} on hand, "
        f"{row.quarantined} quarantined"
    )


@app.command()
def receive(
    *,
    gtin: Annotated[str, typer.Argument(help="The product's GTIN.")],
    quantity: Annotated[int, typer.Argument(parser=count(1), help="Units received.")],
    lot_no: Annotated[
        str | None, typer.Option("--lot", help="The lot (a new one is created).")
    ] = None,
    expiry: Annotated[
        str | None, typer.Option("--expiry", help="A new lot's expiry, YYYY-MM-DD.")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Delivery note, supplier…")] = (
        "goods received"
    ),
    by: By = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Goods received: add units to a lot (or to a product without lots).

    Example: posbatch catalog receive 6901234567892 24 --lot L2701C --expiry 2027-01-31
    """
    with _errors():
        try:
            expiry_date = None if expiry is None else dt.date.fromisoformat(expiry)
        except ValueError as exc:
            raise ConfigError(f"--expiry {expiry!r} is not YYYY-MM-DD") from exc
        store = open_back_office(data_dir)
        try:
            row = store.receive(
                normalize_gtin(gtin),
                lot_no,
                quantity,
                at=_now(),
                actor=_actor(by),
                reason=_typed(reason),
                expiry=expiry_date,
            )
        finally:
            store.close()
    _echo_stock(row)
    today = _now().date()
    if row.lot_no is not None and row.expiry is None:
        typer.echo(
            f"note: lot {row.lot_no} has no expiry date: checkout never refuses it as expired "
            "(a new lot's expiry is --expiry YYYY-MM-DD)",
            err=True,
        )
    elif row.expiry is not None and row.expiry < today:
        typer.echo(
            f"note: lot {row.lot_no} expired on {row.expiry.isoformat()}: checkout refuses it "
            "(posbatch catalog adjust … --reason expired takes it off the shelf)",
            err=True,
        )


@app.command()
def adjust(
    *,
    gtin: Annotated[str, typer.Argument(help="The product's GTIN.")],
    reason: Annotated[str, typer.Option("--reason", help="Why: stocktake, damaged, expired…")],
    lot_no: Annotated[str | None, typer.Option("--lot", help="The lot.")] = None,
    change: Annotated[
        int | None,
        typer.Option(
            "--change", parser=count(None, signed=True), help="Units to add (negative: remove)."
        ),
    ] = None,
    counted: Annotated[
        int | None, typer.Option("--counted", parser=count(0), help="Units counted (a stocktake).")
    ] = None,
    quarantined: Annotated[
        bool, typer.Option("--quarantined", help="Adjust the quarantined units instead.")
    ] = False,
    by: By = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Correct stock with a reason (recorded as a movement, never overwritten).

    Example: posbatch catalog adjust 6901234567892 --lot L2611A --counted 37 --reason stocktake
    """
    with _errors():
        store = open_back_office(data_dir)
        try:
            row = store.adjust(
                normalize_gtin(gtin),
                lot_no,
                reason=_typed(reason),
                actor=_actor(by),
                at=_now(),
                delta=change,
                counted=counted,
                quarantined=quarantined,
            )
        finally:
            store.close()
    _echo_stock(row)


@app.command()
def stock(
    *,
    gtin: Gtin = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="As of this time (YYYY-MM-DD = end of that day, Beijing time)."),
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="List the movements instead (with --gtin).")
    ] = False,
    lot_no: Annotated[str | None, typer.Option("--lot", help="With --history: one lot.")] = None,
    by_product: Annotated[
        bool, typer.Option("--by-product", help="One line per product (its lots added up).")
    ] = False,
    as_json: AsJson = False,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Stock per product and lot, the sum of its movements (now, or as of --at).

    Example: posbatch catalog stock --at 2026-11-30 --gtin 6901234567892
    """
    with _errors():
        only = _gtin(gtin)
        moment = _when(at)
        if history and only is None:
            raise ConfigError("--history lists one product's movements: give --gtin")
        store = open_back_office(data_dir)
        try:
            if history:
                movements = store.movements(gtin=only, lot_no=lot_no)
            else:
                rows = store.stock_report(at=moment, gtin=only)
                if by_product:
                    rows = stock_by_product(rows)
        finally:
            store.close()
    if history:
        if as_json:
            typer.echo(json.dumps([m.to_json() for m in movements], ensure_ascii=False))
            return
        table = Table(title=f"stock movements of {only}")
        for column in ("at", "lot", "kind", "on hand", "quarantined", "reason", "by"):
            table.add_column(column, overflow="fold")
        for m in movements:
            table.add_row(
                f"{shown_at(m.at)}",
                m.lot_no or "",
                m.kind,
                f"{m.on_hand_delta:+d}",
                f"{m.quarantined_delta:+d}",
                m.reason or "",
                m.actor or "",
            )
        Console().print(table)
        return
    if as_json:
        typer.echo(json.dumps([row.to_json() for row in rows], ensure_ascii=False))
        return
    when = "now" if moment is None else f"as of {moment:%Y-%m-%d %H:%M}"
    table = Table(title=f"stock {when}")
    for column in ("GTIN", "product", "lot", "expiry", "on hand", "quarantined", "recalled"):
        # only a name may wrap: a folded expiry read '2027-12-3' on one line, '1' below
        table.add_column(column, overflow="fold", no_wrap=column != "product")
    for row in rows:
        table.add_row(
            row.gtin,
            row.product_name,
            row.lot_no or ("(all lots)" if by_product else "(no lots)"),
            row.expiry.isoformat() if row.expiry else "",
            str(row.on_hand),
            str(row.quarantined),
            "yes" if row.recalled else "",
        )
    print_table(Console(), table)


# --- recalls ----------------------------------------------------------------------------


@app.command()
def recall(
    *,
    lot_no: Annotated[str, typer.Argument(help="The lot number (批次号) to recall.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (the recall notice).")],
    gtin: Gtin = None,
    lift: Annotated[
        bool, typer.Option("--lift", help="Lift the recall (the lot may be sold again).")
    ] = False,
    by: By = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Recall a lot (or lift its recall): recorded with who and when; every till refuses it
    from its next sync, and the back office refuses orders of it at once.

    Example: posbatch catalog recall L2611A --reason "NMPA notice 2026-118"
    """
    with _errors():
        store = open_back_office(data_dir)
        try:
            action = store.lift_recall if lift else store.recall
            record = action(
                lot_no, gtin=_gtin(gtin), reason=_typed(reason), actor=_actor(by), at=_now()
            )
            stock_row = store.stock_report(gtin=record.gtin)
            sold = store.trace_lot(record.lot_no, gtin=record.gtin)
        finally:
            store.close()
    held = next(row for row in stock_row if row.lot_no == record.lot_no)
    verb = "recall lifted" if lift else "recalled"
    typer.echo(
        f"lot {record.lot_no} of {record.gtin} {verb} by {record.actor} at "
        f"{shown_at(record.at)}: {held.on_hand} on hand, "
        f"{held.quarantined} quarantined; sold on {plural(len(sold), 'sale line')} "
        f"(`posbatch catalog recall-report {record.lot_no}`)"
    )


@app.command("recall-report")
def recall_report(
    lot_no: Annotated[str, typer.Argument(help="The lot number (批次号).")],
    gtin: Gtin = None,
    as_json: AsJson = False,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Everything a recall needs: each sale of the lot (receipt, terminal, batch_no, STAN,
    time, quantity), what is on hand and quarantined, what came back, the recall records.

    Example: posbatch catalog recall-report L2611A --json
    """
    with _errors():
        store = open_back_office(data_dir)
        try:
            report = store.recall_report(lot_no, gtin=_gtin(gtin))
        finally:
            store.close()
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    console = Console()
    lot = report.lot
    state = "RECALLED 已召回" if lot.recalled else "not recalled 未召回"
    console.print(
        f"lot {lot.lot_no} of {report.product_name} ({lot.gtin}), expiry "
        f"{lot.expiry or 'none'}: {state}",
        highlight=False,
    )
    for record in report.recalls:
        console.print(
            f"  {record.action} {shown_at(record.at)} by {record.actor}: {record.reason}",
            highlight=False,
        )
    console.print(
        f"on hand 在库 {report.stock.on_hand}, quarantined 隔离 {report.stock.quarantined}; "
        f"sold 售出 {report.sold_quantity}, came back 退回 {report.returned_quantity}",
        highlight=False,
    )
    print_table(console, _trace_table(f"sales of lot {lot.lot_no}", report.sales))
    if report.returned:
        table = Table(title=f"returns of lot {lot.lot_no}")
        for column in ("return", "receipt", "terminal", "kind", "qty", "at", "to"):
            table.add_column(column, no_wrap=column in ("return", "receipt"))
        for row in report.returned:
            table.add_row(
                readable_receipt_no(row.return_no),
                readable_receipt_no(row.receipt_no),
                row.terminal_id,
                row.kind,
                str(row.quantity),
                f"{shown_at(row.closed_at)}" if row.closed_at else "",
                "quarantine" if row.quarantined else "stock",
            )
        print_table(console, table)


@app.command("verify-payments")
def verify_payments(data_dir: DataDir = DATA_DIR_DEFAULT) -> None:
    """Ask the host's store again about orders and returns recorded as unverified.

    Example: posbatch catalog verify-payments --data-dir ./posbatch-data
    """
    with _errors():
        store = open_back_office(data_dir)
        try:
            if store.payment_verifier is None:
                raise ConfigError(
                    f"no host store to ask: neither POSBATCH_DATABASE_URL nor {data_dir}/host.db"
                )
            results = store.verify_payments()
        finally:
            store.close()
    for number, verdict, reason in results:
        typer.echo(f"{readable_receipt_no(number)}: {verdict} — {reason}")
    typer.echo(f"{plural(len(results), 'payment')} checked")


@app.command()
def reconcile(
    terminal_dir: TerminalDir = TERMINAL_DIR_DEFAULT,
    orders_to: Annotated[
        str | None,
        typer.Option(
            "--orders-to", help="http://HOST:PORT of `catalog serve` (default: --data-dir)."
        ),
    ] = None,
    credential_file: CredentialFile = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Settle this till's orders and returns with its terminal journal: what a crash left
    pending, and voids/refunds made with `posbatch terminal void|refund` (goods back).

    Checkout does this at every start; run it after using the terminal commands.

    Example: posbatch catalog reconcile --terminal-dir ./posbatch-terminal
    """
    with _errors():
        terminal = open_terminal(terminal_dir, clock=_now)
        credential = _credential(terminal_dir, credential_file, required=orders_to is not None)
        orders: OrderLedger = (
            HttpOrderBook(orders_to, credential)
            if orders_to is not None and credential is not None
            else open_back_office(data_dir)
        )
        try:
            done = recover_pending_orders(
                orders,
                terminal.journal,
                terminal_id=terminal.journal.state().terminal_id,
                closed_at=_now(),
            )
        finally:
            if isinstance(orders, CatalogStore):
                orders.close()
            terminal.journal.engine.dispose()
    for number, outcome in done:
        typer.echo(f"{readable_receipt_no(number)}: {outcome}")
    typer.echo(f"{plural(len(done), 'order or return', 'orders or returns')} settled")


# --- tills ------------------------------------------------------------------------------------


@app.command("add-till")
def add_till(
    *,
    terminal_id: Annotated[
        str,
        typer.Argument(parser=TERMINAL_ID, help="The till's terminal ID (8 characters)."),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help=f"Credential file to write (0600); put it in the till's terminal directory "
            f"as {CREDENTIAL_FILE_NAME}.",
        ),
    ],
    reissue: Annotated[
        bool, typer.Option("--reissue", help="Give a registered till a new credential.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file.")] = False,
    by: By = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Register a till with the back office: write the credential it syncs and orders with.

    Example: posbatch catalog add-till 10000001 --output ./posbatch-terminal/catalog-till.json
    """
    with _errors():
        store = open_back_office(data_dir, create=True)
        try:
            if output.exists() and not force:
                raise ConfigError(f"{output} exists: choose another file (or --force)")
            credential = store.add_till(
                terminal_id, issued_by=_actor(by), at=_now(), reissue=reissue
            )
            write_credential(credential, output, overwrite=force)
        finally:
            store.close()
    typer.echo(f"till {terminal_id}: credential written to {output} (keep it secret)")


@app.command("revoke-till")
def revoke_till(
    terminal_id: Annotated[
        str,
        typer.Argument(parser=TERMINAL_ID, help="The till's terminal ID."),
    ],
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Stop a till's credential at once (sync and orders are refused from then on).

    Example: posbatch catalog revoke-till 10000001
    """
    with _errors():
        store = open_back_office(data_dir)
        try:
            store.revoke_till(terminal_id, at=_now())
        finally:
            store.close()
    typer.echo(f"till {terminal_id}: credential revoked")


@app.command()
def tills(data_dir: DataDir = DATA_DIR_DEFAULT) -> None:
    """List the tills registered with the back office.

    Example: posbatch catalog tills
    """
    with _errors():
        store = open_back_office(data_dir)
        try:
            rows = store.tills()
        finally:
            store.close()
    for row in rows:
        state = f"revoked {shown_at(row.revoked_at)}" if row.revoked_at else "active"
        issued = shown_at(row.issued_at)
        typer.echo(f"{row.terminal_id}  {state}  issued {issued} by {row.issued_by}")
    typer.echo(plural(len(rows), "till"))


# --- posbatch checkout -----------------------------------------------------------

_HELP_TEXT = (
    "scan or type a GTIN (prefix N* for a quantity, e.g. 3*6901234567892); "
    "commands: pay, list, del N, return [RECEIPT], quit"
)
_CHOICES = ("t", "f", "s")


def _show_cart(console: Console, cart: Cart) -> None:
    table = Table(title=f"cart (catalog version {cart.catalog_version})")
    for column in ("#", "product", "qty", "lots", "price", "amount"):
        table.add_column(column)
    for number, line in enumerate(cart.lines, start=1):
        lots = ", ".join(f"{take.lot.lot_no} x{take.quantity}" for take in line.takes)
        unit = line.trace_code or line.serial
        table.add_row(
            str(number),
            line.product.name + (f" [{unit}]" if unit else ""),
            str(line.quantity),
            lots,
            format_fen(line.product.price_fen),
            format_fen(line.amount_fen),
        )
    console.print(table)
    console.print(f"total 合计 {format_fen(cart.total_fen)}")
    for warning in cart.warnings:
        said = _said(f"{warning.message_zh} / {warning.message_en}")
        console.print(f"[yellow]warning: {said}[/yellow]")


def _refused(console: Console, exc: CheckoutRefused) -> None:
    console.print(f"[red]拒绝 {_said(exc.reason_zh)}[/red]", highlight=False)
    console.print(f"[red]refused: {_said(exc.reason_en)}[/red]", highlight=False)


def _one_line(console: Console, till: Till, text: str) -> str | None:
    """Add what was scanned or typed; a refused line offers to type the lot or take FEFO.

    Something else typed at that prompt (a scan, a GTIN, a command) is not lost: the
    refused line is skipped and the new input is returned, to be read as the next line.
    """
    quantity: int | None = None
    head, star, rest = text.partition("*")
    if star and head.strip().isdigit():
        quantity, text = int(head), rest.strip()
    try:
        request = till.request_for(text, quantity=quantity)
    except CheckoutRefused as exc:
        _refused(console, exc)
        return None
    except CatalogError as exc:
        console.print(f"[red]scan: {_said(str(exc))}[/red]", highlight=False)
        return None
    try:
        _show_cart(console, till.add(request))
        return None
    except CheckoutRefused as exc:
        _refused(console, exc)
        suggestion = exc.suggestion
    product = till.snapshot.product(request.gtin)
    if product is None or not product.lot_tracked or (request.lots and request.unit_code):
        return None  # nothing the cashier can choose here would make the line sellable
    choice = ""
    for _ in range(CHOICE_PROMPTS_MAX):
        answer = str(
            typer.prompt(
                "[t]ype the lot / [f]EFO lot"
                + (f" ({suggestion})" if suggestion else "")
                + " / [s]kip",
                default="s",
            )
        ).strip()
        if answer.lower() in _CHOICES:
            choice = answer.lower()
            break
        if len(answer) > 1:
            console.print(
                f"[yellow]{answer!r} is not t, f or s: the refused line is skipped and "
                f"{answer!r} is read as the next line / 已跳过被拒商品，按新扫码处理[/yellow]",
                highlight=False,
            )
            return answer
        console.print("answer t, f or s / 请输入 t、f 或 s")
    try:
        if choice == "t":
            first = typer.prompt("lot 批次号")
            second = typer.prompt("lot again 再次输入批次号")
            cart = till.add_manual(request.gtin, request.quantity, first, second, base=request)
            _show_cart(console, cart)
        elif choice == "f":
            _show_cart(console, till.add_fefo(request.gtin, request.quantity, base=request))
    except CheckoutRefused as exc:
        _refused(console, exc)
    return None


def _recover(console: Console, orders: OrderLedger, journal: Journal, terminal_id: str) -> None:
    """Finish what a crash or a lost answer left pending; a failure only warns."""
    try:
        for number, outcome in recover_pending_orders(
            orders, journal, terminal_id=terminal_id, closed_at=_now()
        ):
            console.print(
                f"已恢复 recovered {readable_receipt_no(number)}: {outcome}", highlight=False
            )
    except PosbatchError as exc:
        console.print(
            "[yellow]warning 提示: 未完成订单暂未恢复 pending orders not recovered yet: "
            f"{_said(str(exc))}[/yellow]"
        )


@checkout_app.callback(invoke_without_command=True)
def checkout(
    *,
    data_dir: DataDir = DATA_DIR_DEFAULT,
    terminal_dir: TerminalDir = TERMINAL_DIR_DEFAULT,
    orders_to: Annotated[
        str | None,
        typer.Option(
            "--orders-to",
            help="http://HOST:PORT of `catalog serve` (default: the --data-dir store).",
        ),
    ] = None,
    sync_from: Annotated[
        str | None,
        typer.Option(
            "--sync-from", help="Sync the catalog copy from here at start and before paying."
        ),
    ] = None,
    credential_file: CredentialFile = None,
    max_catalog_age_min: Annotated[
        int,
        typer.Option(
            "--max-catalog-age-min",
            parser=count(1, CATALOG_AGE_MINUTES_MAX),
            help="Warn when the copy is older.",
        ),
    ] = int(DEFAULT_MAX_CATALOG_AGE.total_seconds() // 60),
    near_expiry_days: Annotated[
        int,
        typer.Option(
            "--near-expiry-days",
            parser=count(0, NEAR_EXPIRY_DAYS_MAX),
            help="Warn when a lot sold expires within this many days (0: only today).",
        ),
    ] = DEFAULT_NEAR_EXPIRY_DAYS,
    separator: Separators = None,
) -> None:
    """Interactive cashier checkout: scan lines, check lots, pay by card, print the receipt;
    returns by receipt. Commands at its prompt: pay, list, del N, return [RECEIPT], quit.

    Example: posbatch checkout --sync-from http://127.0.0.1:5801 --orders-to http://127.0.0.1:5801
    """
    console = Console()
    with _errors():
        terminal = open_terminal(terminal_dir, clock=_now)
        needs_credential = orders_to is not None or (sync_from is not None and _is_http(sync_from))
        credential = _credential(terminal_dir, credential_file, required=needs_credential)
        copy = open_terminal_copy(terminal_dir, create=sync_from is not None)  # syncs it first
        if orders_to is not None:
            assert credential is not None
            orders: OrderLedger = HttpOrderBook(orders_to, credential)
        else:
            orders = open_back_office(data_dir)
        terminal_id = terminal.journal.state().terminal_id
        if credential is not None and credential.terminal_id != terminal_id:
            raise ConfigError(
                f"the credential is till {credential.terminal_id}'s, this terminal is {terminal_id}"
            )
        host_address = parse_address(terminal.journal.state().host_address)
        session_sync = _Sync(copy, sync_from, credential, console)
        if sync_from is not None and session_sync():
            console.print(f"catalog synced to version {copy.version()}")
        if copy.replica_state() is None:
            raise ConfigError(
                "this terminal has no catalog copy: run `posbatch catalog sync --from ...`"
            )

    def read_card(amount_fen: int) -> Card:
        console.print(f"amount 金额 {format_fen(amount_fen)}: present card")
        for _ in range(CARD_PROMPTS_MAX):
            pan = read_card_number()  # hidden, or a line of piped input; "6222 0212 …" too
            expiry = typer.prompt(
                "expiry YYMM 有效期 (empty: none)", default="", show_default=False
            )
            card = Card(pan.strip(), expiry.strip() or None)
            problem = card.problem()
            if problem is None:
                return card
            console.print(f"[red]{problem}[/red]")
        raise ConfigError(f"no valid card after {CARD_PROMPTS_MAX} tries: payment not attempted")

    driver = TcpDriver(*host_address)
    payer = TerminalPayer(terminal, read_card=read_card, driver=driver)
    if terminal.journal.outstanding():
        try:
            payer.flush()  # reversals and refunds owed to the host first: then recovery knows
        except PosbatchError as exc:
            console.print(
                f"[yellow]warning 提示: 终端无法连接主机 the terminal could not reach the host: "
                f"{exc}[/yellow]"
            )
    _recover(console, orders, terminal.journal, terminal_id)
    till = Till(
        copy.snapshot(),
        clock=_now,
        separators=tuple(separator or ()) + DEFAULT_SEPARATORS,
        max_catalog_age=dt.timedelta(minutes=max_catalog_age_min),
        near_expiry_days=near_expiry_days,
    )
    console.print(f"terminal {terminal_id} — {_HELP_TEXT}")
    try:
        _Session(
            console, till, payer, orders, copy, terminal_id, session_sync, terminal.journal
        ).loop()
    finally:
        payer.close()
        copy.close()
        if isinstance(orders, CatalogStore):
            orders.close()


@dataclass
class _Sync:
    """Best effort: an unreachable back office leaves the copy as it is (and ages)."""

    copy: CatalogStore
    source: str | None
    credential: TillCredential | None
    console: Console

    def __call__(self) -> bool:
        if self.source is None:
            return False
        try:
            sync_replica(self.copy, self.source, now=_now(), credential=self.credential)
        except CatalogError as exc:
            said = _said(str(exc))
            self.console.print(f"[yellow]warning: catalog not synced: {said}[/yellow]")
            return False
        return True


@dataclass
class _Session:
    """One interactive checkout session: prompts in, library calls, prints out."""

    console: Console
    till: Till
    payer: TerminalPayer
    orders: OrderLedger
    copy: CatalogStore
    terminal_id: str
    sync: _Sync
    journal: Journal

    def loop(self) -> None:
        try:
            self._lines()
        except (typer.Abort, click.exceptions.Abort, EOFError):
            # The input ended (Ctrl-D, or a script's last line) at any prompt: as `quit` —
            # nothing is charged that was not paid (a payment under way is the journal's).
            self.console.print("input ended 输入结束: checkout closed, nothing more was charged")

    def _lines(self) -> None:
        console, till = self.console, self.till
        pending: str | None = None  # what was typed at a refused line's prompt
        while True:
            if pending is None:
                text = str(typer.prompt("scan 扫码", default="", show_default=False)).strip()
            else:
                text, pending = pending.strip(), None
            command, _, argument = text.partition(" ")
            if not text:
                console.print(_HELP_TEXT)
            elif command in ("quit", "q"):
                return
            elif command in ("list", "l"):
                _show_cart(console, till.cart())
            elif command == "del":
                try:
                    till.remove(int(argument) if argument.isdigit() else 0)
                    _show_cart(console, till.cart())
                except PosbatchError as exc:
                    console.print(f"[red]{_said(str(exc))}[/red]")
            elif command in ("pay", "p"):
                self.pay()
            elif command in ("return", "r"):
                self.give_back(argument.strip())
            else:
                pending = _one_line(console, till, text)

    def pay(self) -> None:
        console, till = self.console, self.till
        self.sync()
        try:
            fresh = self.copy.snapshot()
            receipt = till.pay(
                payer=self.payer,
                orders=self.orders,
                terminal_id=self.terminal_id,
                fresh_snapshot=fresh,
            )
        except CatalogChanged as exc:
            _refused(console, exc)
            till.refresh(fresh)
            try:
                _show_cart(console, till.cart())
            except CheckoutRefused as again:
                _refused(console, again)
                console.print("remove or change the refused line (del N), then pay again")
            return
        except PosbatchError as exc:
            self.failed(exc, nothing="not paid 未付款")
            return
        for text_line in render_receipt(receipt):
            console.print(text_line, highlight=False)
        self.sync()  # the sale changed stock: start the next customer on fresh data
        try:
            till.refresh(self.copy.snapshot())
        except PosbatchError as exc:
            console.print(f"[yellow]warning: catalog not refreshed: {_said(str(exc))}[/yellow]")

    def give_back(self, scanned: str) -> None:
        """A return: the receipt (scanned or typed), the lines, then void or refund."""
        console = self.console
        try:
            receipt_no = parse_receipt_scan(
                scanned or str(typer.prompt("receipt 小票 (scan or type)"))
            )
            detail = self.orders.order_detail(receipt_no)
            if detail is None:  # named as typed: a card typed here is masked by the net
                raise CheckoutRefused(
                    f"no receipt {receipt_no} in the back office",
                    reason_zh=f"后台没有小票 {receipt_no}",
                )
            totals = summarize_lines(detail.lines)
            shown = readable_receipt_no(detail.receipt_no)
            table = Table(title=f"receipt {shown} ({detail.status})")
            for column in ("line", "product", "lot", "qty", "back", "price"):
                table.add_column(column)
            for row in detail.lines:
                table.add_row(
                    str(row.line_no),
                    row.product_name,
                    row.lot_no or "",
                    str(row.quantity),
                    str(row.returned or ""),
                    format_fen(row.price_fen),
                )
            console.print(table)
            answer = str(
                typer.prompt("lines back 退货行 (all, or N or NxQ … e.g. 1x2 3)", default="all")
            )
            requests = _return_lines(answer, totals)
            restock = typer.confirm("back on sale? 可再销售？(no: quarantine 隔离)", default=True)
            slip = return_order(
                receipt_no,
                requests,
                book=self.orders,
                refunder=self.payer,
                terminal_id=self.terminal_id,
                clock=_now,
                restock=restock,
            )
        except PosbatchError as exc:
            self.failed(exc, nothing="nothing refunded 未退款")
            return
        for text_line in render_return_receipt(slip):
            console.print(text_line, highlight=False)
        self.sync()

    def failed(self, exc: PosbatchError, *, nothing: str) -> None:
        """Tell the cashier why a payment or a return did not happen (zh + en)."""
        console = self.console
        if isinstance(exc, CheckoutRefused):
            _refused(console, exc)
            return
        text = one_line(exc)  # a peer's or a person's words may be in it: through the net
        text = mask_card_numbers(text, allowed=_gtins(text))
        if isinstance(exc, Declined):
            console.print(f"[red]declined 交易被拒: {text}[/red]", highlight=False)
        elif isinstance(exc, HostUnreachable):
            console.print(
                f"[red]no answer from the host 主机无应答: {text}; {nothing}[/red]", highlight=False
            )
        else:
            console.print(f"[red]error: {text}[/red]", highlight=False)
            # Whatever the failure left pending: settle it from the journal now.
            _recover(console, self.orders, self.journal, self.terminal_id)


def _return_lines(answer: str, totals: dict[int, tuple[int, int]]) -> list[ReturnLine] | None:
    """``all`` → None; ``1x2 3`` → 2 of line 1 and what is left of line 3."""
    text = answer.strip().lower()
    if text in ("", "all", "a"):
        return None
    requests = []
    for part in text.replace(",", " ").split():
        number_text, _, quantity_text = part.partition("x")
        if not number_text.isdigit() or (quantity_text and not quantity_text.isdigit()):
            raise CheckoutRefused(
                f"{part!r} is not N or NxQ (line N, quantity Q)",
                reason_zh=f"{part} 格式应为 行号 或 行号x数量",
            )
        number = int(number_text)
        quantity, returned = totals.get(number, (0, 0))
        requests.append(
            ReturnLine(number, int(quantity_text) if quantity_text else max(quantity - returned, 0))
        )
    return requests
