"""``posbatch catalog …`` and ``posbatch checkout``: a thin shell over posbatch.catalog.

Where things live:

- the back office (products, lots, orders): ``POSBATCH_DATABASE_URL`` if set
  (then it shares the host's database, in its own tables), else
  ``--data-dir``/catalog.db (default ./posbatch-data/catalog.db);
- a terminal's copy of the catalog: ``--terminal-dir``/catalog.db (default
  ./posbatch-terminal/catalog.db), always a local SQLite file.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.table import Table

from posbatch import storage
from posbatch.catalog._checkout import (
    DEFAULT_MAX_CATALOG_AGE,
    Cart,
    CatalogChanged,
    Payer,
    format_fen,
    render_receipt,
)
from posbatch.catalog._csv import parse_catalog_csv, write_catalog_csv
from posbatch.catalog._orders_http import HttpOrderBook
from posbatch.catalog._scan import DEFAULT_SEPARATORS, parse_scan
from posbatch.catalog._store import CatalogStore
from posbatch.catalog._sync import (
    create_app,
    fetch_head_version,
    sync_replica,
    write_changes_file,
)
from posbatch.catalog._till import Till
from posbatch.catalog.payer import Card, OrderLedger, TerminalPayer, recover_pending_orders
from posbatch.cli_support import read_secret_line
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
CARD_PROMPTS_MAX: Final = 3
"""Most concurrent HTTP connections `catalog serve` accepts (uvicorn answers 503 beyond)."""

app = typer.Typer(
    help="Products and lots (商品批次号): import, scan, sync, recall trace.",
    no_args_is_help=True,
    add_completion=False,
)
checkout_app = typer.Typer(
    help="Interactive checkout: scan lines, check lots, pay by card, print the receipt.",
    add_completion=False,
)

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", help="Back office data directory (unless POSBATCH_DATABASE_URL)."),
]
TerminalDir = Annotated[
    Path, typer.Option("--terminal-dir", help="The terminal's data directory (catalog copy).")
]
Separators = Annotated[
    list[str] | None,
    typer.Option("--separator", help="A character the scanner sends for FNC1 besides GS."),
]


def open_back_office(data_dir: Path, *, create: bool = False) -> CatalogStore:
    """The back office's catalog; only ``create`` (import, serve) may make a new one."""
    url = storage.database_url(data_dir, file_name=DB_FILE_NAME)
    if not create:
        storage.require_database(url, what="catalog", hint="`posbatch catalog import` makes one")
    return CatalogStore.open(url)


def open_terminal_copy(terminal_dir: Path, *, create: bool = False) -> CatalogStore:
    """The terminal's catalog copy; only ``create`` (sync) may make a new one."""
    url = f"sqlite:///{(terminal_dir / DB_FILE_NAME).absolute()}"
    if not create:
        storage.require_database(url, what="catalog copy", hint="`posbatch catalog sync` makes one")
    return CatalogStore.open(url)


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone()


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except PosbatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command("import")
def import_(
    csv_file: Annotated[Path, typer.Argument(help="CSV with the columns of docs/catalog.md.")],
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Import products and lots from a CSV file (all rows or none).

    Example: posbatch catalog import products.csv --data-dir ./posbatch-data
    """
    with _errors():
        try:
            text = csv_file.read_text("utf-8-sig")
        except OSError as exc:
            raise ConfigError(f"cannot read {csv_file}: {exc.strerror}") from exc
        products, lots = parse_catalog_csv(text)
        store = open_back_office(data_dir, create=True)
        try:
            summary = store.import_catalog(
                products, lots, at=_now(), reason=f"import {csv_file.name}"
            )
        finally:
            store.close()
    typer.echo(
        f"catalog version {summary.version}: {summary.products_changed} product(s) and "
        f"{summary.lots_changed} lot(s) changed ({len(products)} products, {len(lots)} lots read)"
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
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
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
    """Serve catalog changes over HTTP for terminals to sync (GET /catalog/changes?since=N).

    Example: posbatch catalog serve --listen 127.0.0.1:5801
    """
    import uvicorn  # noqa: PLC0415 - only this command needs it

    with _errors():
        host, port = parse_address(listen)
        store = open_back_office(data_dir, create=True)
    try:
        uvicorn.run(
            create_app(store),
            host=host,
            port=port,
            log_level="info",
            limit_concurrency=SERVE_CONNECTIONS_MAX,
        )
    finally:
        store.close()


@app.command()
def changes(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSON file to write.")],
    since: Annotated[int, typer.Option("--since", min=0, help="Changes after this version.")] = 0,
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
) -> None:
    """Bring the terminal's catalog copy up to date with the back office.

    Example: posbatch catalog sync --from http://127.0.0.1:5801 --terminal-dir ./posbatch-terminal
    """
    with _errors():
        copy = open_terminal_copy(terminal_dir, create=True)
        try:
            result = sync_replica(copy, source, now=_now())
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
                f"synced {state.synced_at.astimezone():%Y-%m-%d %H:%M:%S %Z} "
                f"from {state.source}"
            )
        if source is not None:
            typer.echo(f"{source} is at version {fetch_head_version(source)}")


@app.command()
def trace(
    lot_no: Annotated[str, typer.Argument(help="The lot number (批次号) to trace.")],
    gtin: Annotated[str | None, typer.Option("--gtin", help="Only this product's lot.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    include_unpaid: Annotated[
        bool, typer.Option("--all", help="Also list declined / unanswered (unpaid) orders.")
    ] = False,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """List every order, receipt, payment batch_no and STAN that sold a lot (recall trace).

    Example: posbatch catalog trace L2611A --json
    """
    with _errors():
        store = open_back_office(data_dir)
        try:
            from posbatch.catalog._gtin import normalize_gtin  # noqa: PLC0415

            rows = store.trace_lot(
                lot_no,
                gtin=normalize_gtin(gtin) if gtin else None,
                include_unpaid=include_unpaid,
            )
        finally:
            store.close()
    if as_json:
        typer.echo(json.dumps([row.to_json() for row in rows], ensure_ascii=False))
        return
    table = Table(title=f"lot {lot_no}: {len(rows)} sale line(s)")
    for column in (
        "receipt",
        "terminal",
        "status",
        "sold at",
        "batch_no",
        "STAN",
        "GTIN",
        "product",
        "qty",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.receipt_no,
            row.terminal_id,
            row.status,
            f"{row.opened_at.astimezone():%Y-%m-%d %H:%M}",
            row.batch_no or "",
            row.stan or "",
            row.gtin,
            row.product_name,
            str(row.quantity),
        )
    Console().print(table)


@app.command()
def pending(data_dir: DataDir = DATA_DIR_DEFAULT) -> None:
    """List orders written before a payment whose outcome was never recorded.

    Example: posbatch catalog pending --data-dir ./posbatch-data
    """
    with _errors():
        store = open_back_office(data_dir)
        try:
            orders = store.pending_orders()
        finally:
            store.close()
    for order in orders:
        typer.echo(
            f"{order.receipt_no}  terminal {order.terminal_id}  {format_fen(order.total_fen)}  "
            f"opened {order.opened_at.astimezone():%Y-%m-%d %H:%M:%S}"
        )
    typer.echo(f"{len(orders)} pending order(s)")


# --- posbatch checkout -----------------------------------------------------------

_HELP_TEXT = (
    "scan or type a GTIN (prefix N* for a quantity, e.g. 3*6901234567892); "
    "commands: pay, list, del N, quit"
)


def _show_cart(console: Console, cart: Cart) -> None:
    table = Table(title=f"cart (catalog version {cart.catalog_version})")
    for column in ("#", "product", "qty", "lots", "price", "amount"):
        table.add_column(column)
    for number, line in enumerate(cart.lines, start=1):
        lots = ", ".join(f"{take.lot.lot_no} x{take.quantity}" for take in line.takes)
        table.add_row(
            str(number),
            line.product.name,
            str(line.quantity),
            lots,
            format_fen(line.product.price_fen),
            format_fen(line.amount_fen),
        )
    console.print(table)
    console.print(f"total 合计 {format_fen(cart.total_fen)}")
    for warning in cart.warnings:
        console.print(f"[yellow]warning: {warning.message_zh} / {warning.message_en}[/yellow]")


def _refused(console: Console, exc: CheckoutRefused) -> None:
    console.print(f"[red]拒绝 {exc.reason_zh}[/red]")
    console.print(f"[red]refused: {exc.reason_en}[/red]")


def _add_line(console: Console, till: Till, text: str) -> None:
    quantity: int | None = None
    head, star, rest = text.partition("*")
    if star and head.strip().isdigit():
        quantity, text = int(head), rest.strip()
    try:
        reading, _ = till.read(text)
    except ScanError as exc:
        console.print(f"[red]scan: {exc}[/red]")
        return
    try:
        _show_cart(console, till.add_scan(text, quantity=quantity))
        return
    except CheckoutRefused as exc:
        _refused(console, exc)
        suggestion = exc.suggestion
    count = quantity or reading.quantity or 1
    choice = (
        typer.prompt(
            "[t]ype the lot / [f]EFO lot"
            + (f" ({suggestion})" if suggestion else "")
            + " / [s]kip",
            default="s",
        )
        .strip()
        .lower()
    )
    try:
        if choice == "t":
            first = typer.prompt("lot 批次号")
            second = typer.prompt("lot again 再次输入批次号")
            _show_cart(console, till.add_manual(reading.gtin, count, first, second))
        elif choice == "f":
            _show_cart(console, till.add_fefo(reading.gtin, count))
    except CheckoutRefused as exc:
        _refused(console, exc)


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
    max_catalog_age_min: Annotated[
        int, typer.Option("--max-catalog-age-min", min=1, help="Warn when the copy is older.")
    ] = int(DEFAULT_MAX_CATALOG_AGE.total_seconds() // 60),
    separator: Separators = None,
) -> None:
    """Interactive cashier checkout: scan lines, check lots, pay by card, print the receipt.

    Example: posbatch checkout --terminal-dir ./posbatch-terminal --sync-from http://127.0.0.1:5801
    """
    console = Console()
    with _errors():
        terminal = open_terminal(terminal_dir, clock=_now)
        copy = open_terminal_copy(terminal_dir, create=sync_from is not None)  # syncs it first
        orders: OrderLedger = (
            HttpOrderBook(orders_to) if orders_to is not None else open_back_office(data_dir)
        )
        terminal_id = terminal.journal.state().terminal_id
        host_address = parse_address(terminal.journal.state().host_address)
        if sync_from is not None:
            try:
                result = sync_replica(copy, sync_from, now=_now())
                console.print(f"catalog synced to version {result.to_version}")
            except CatalogError as exc:
                console.print(f"[yellow]warning: catalog not synced: {exc}[/yellow]")
        if copy.replica_state() is None:
            raise ConfigError(
                "this terminal has no catalog copy: run `posbatch catalog sync --from ...`"
            )
        for receipt_no, outcome in recover_pending_orders(
            orders, terminal.journal, terminal_id=terminal_id, closed_at=_now()
        ):
            console.print(f"recovered order {receipt_no}: {outcome}")

    def read_card(amount_fen: int) -> Card:
        console.print(f"amount 金额 {format_fen(amount_fen)}: present card")
        for _ in range(CARD_PROMPTS_MAX):
            pan = read_secret_line("card number 卡号")  # hidden, or a line of piped input
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
    till = Till(
        copy.snapshot(),
        clock=_now,
        separators=tuple(separator or ()) + DEFAULT_SEPARATORS,
        max_catalog_age=dt.timedelta(minutes=max_catalog_age_min),
    )
    console.print(f"terminal {terminal_id} — {_HELP_TEXT}")
    try:
        _Session(
            console, till, payer, orders, copy, terminal_id, sync_from, terminal.journal
        ).loop()
    finally:
        payer.close()
        copy.close()
        if isinstance(orders, CatalogStore):
            orders.close()


@dataclass
class _Session:
    """One interactive checkout session: prompts in, library calls, prints out."""

    console: Console
    till: Till
    payer: Payer
    orders: OrderLedger
    copy: CatalogStore
    terminal_id: str
    sync_from: str | None
    journal: Journal

    def loop(self) -> None:
        console, till = self.console, self.till
        while True:
            text = str(typer.prompt("scan 扫码", default="", show_default=False)).strip()
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
                    console.print(f"[red]{exc}[/red]")
            elif command in ("pay", "p"):
                self.pay()
            else:
                _add_line(console, till, text)

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
        except CheckoutRefused as exc:
            _refused(console, exc)
            return
        except Declined as exc:
            console.print(f"[red]declined 交易被拒: {exc}[/red]")
            return
        except HostUnreachable as exc:
            console.print(f"[red]no answer from the host 主机无应答: {exc}; not paid[/red]")
            return
        except PosbatchError as exc:
            console.print(f"[red]error: {exc}[/red]")
            # An order left pending by the failure: settle it from the journal now.
            for receipt_no, outcome in recover_pending_orders(
                self.orders, self.journal, terminal_id=self.terminal_id, closed_at=_now()
            ):
                console.print(f"order {receipt_no}: {outcome}")
            return
        for text_line in render_receipt(receipt):
            console.print(text_line, highlight=False)
        self.sync()  # the sale changed stock: start the next customer on fresh data
        try:
            till.refresh(self.copy.snapshot())
        except PosbatchError as exc:
            console.print(f"[yellow]warning: catalog not refreshed: {exc}[/yellow]")

    def sync(self) -> None:
        """Best effort: an unreachable back office leaves the copy as it is (and ages)."""
        if self.sync_from is None:
            return
        try:
            sync_replica(self.copy, self.sync_from, now=_now())
        except CatalogError as exc:
            self.console.print(f"[yellow]warning: catalog not synced: {exc}[/yellow]")
