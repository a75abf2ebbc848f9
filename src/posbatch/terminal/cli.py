"""``posbatch terminal …``: a thin shell over posbatch.terminal (no business logic here).

Every command opens the terminal in ``--data-dir`` (journal + key file), runs
one flow over TCP to the host address given at ``init``, and prints the
result. Amounts are typed in yuan ("12.50") and converted exactly to fen.
Secrets never come on the command line (``ps`` shows it to every user): the
master key from a file or standard input, the card number from a hidden
prompt or standard input (:mod:`posbatch.cli_support`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from posbatch.batch.cards import mask_card_numbers
from posbatch.batch.ids import MERCHANT_ID_CHARS, TERMINAL_ID_CHARS
from posbatch.batch.money import format_fen, parse_yuan
from posbatch.cli_support import (
    BATCH_NO,
    MERCHANT_ID,
    STAN,
    TERMINAL_ID,
    OneLineErrors,
    count,
    error_line,
    one_line,
    print_table,
    read_card_number,
    read_secret_file,
    refuse_secret_option,
    shown_ids,
)
from posbatch.errors import ConfigError, HostUnreachable, PosbatchError
from posbatch.terminal._drivers import TcpDriver, parse_address
from posbatch.terminal._engine import (
    BATCH_LIMIT_MAX,
    SettlementResult,
    Terminal,
    TransactionResult,
)
from posbatch.terminal._files import (
    DEFAULT_DATA_DIR,
    backup_terminal,
    init_terminal,
    open_terminal,
    require_terminal_dir,
    restore_journal,
)
from posbatch.terminal._flows import Flow, Reply
from posbatch.terminal._receipts import render_receipt, render_settlement_report, shown_stored
from posbatch.terminal._secrets import PASSPHRASE_CHARS_MAX
from posbatch.wire import parse_tmk

__all__ = ["app"]

JOURNAL_ROWS_DEFAULT: Final = 50
# --limit's bound: more rows than a batch can hold many times over (and 0 or a negative
# number is not "all": a slice from the end read -1 as "all but the first row").
JOURNAL_ROWS_MAX: Final = 100_000
_UPLOAD_MTI: Final = b"\x03\x20"
_MTI_SLICE: Final = slice(13, 15)  # length 2 + TPDU 5 + header 6

app = typer.Typer(
    help="The POS terminal engine: sign-on, sales, settlement, journal.",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineErrors,
)
console = Console()

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="Where the journal and the key file live.")
]
Width = Annotated[
    int, typer.Option("--width", parser=count(0), help="Receipt width: 32 or 80 columns.")
]

_T = TypeVar("_T")


def _clock() -> datetime:
    return datetime.now(UTC)


def _fail(exc: PosbatchError) -> typer.Exit:
    """One line on standard error (never wrapped to the screen's width), exit status 2."""
    typer.echo(error_line(one_line(exc), allowed=shown_ids(exc)), err=True)
    return typer.Exit(2)


RRN_CHARS: Final = 12  # field 37: a receipt shows it whole (the net masks an approvable 12)


def _open(data_dir: Path) -> Terminal:
    return open_terminal(data_dir, clock=_clock)


def _shown(text: str, *ids: str | None) -> str:
    """``text`` from the journal (an event's message, a receipt, a note) through the
    card-number net: the journal may be garbled or hostile. ``ids`` stay whole when they
    have an id's shape (a merchant id of 15, a terminal id of 8, an RRN of 12 characters)."""
    shapes = (MERCHANT_ID_CHARS, TERMINAL_ID_CHARS, RRN_CHARS)
    allowed = frozenset(i for i in ids if i is not None and len(i) in shapes)
    return mask_card_numbers(text, allowed=allowed)


def _ask(prompt: str) -> str:
    """A typed answer; ConfigError when standard input ends before one is given."""
    try:
        return str(typer.prompt(prompt))
    except typer.Abort:
        raise ConfigError(f"no {prompt} given: standard input ended") from None


def _run(terminal: Terminal, make: Callable[[Terminal], Flow[_T]]) -> _T:
    """Run one flow over TCP to the host named in the journal."""
    host, port = parse_address(terminal.state().host_address)

    driver = TcpDriver(host, port)

    async def go() -> _T:
        try:
            return await driver.run(make(terminal))
        finally:
            await driver.close()

    try:
        return asyncio.run(go())
    except HostUnreachable as exc:  # never connected: say why, not only "not answered"
        if driver.connect_error is not None:
            raise HostUnreachable(f"{exc}: {driver.connect_error}") from exc
        if str(exc).endswith("not answered"):  # a bare "sign-on not answered": what now?
            raise HostUnreachable(
                f"{exc}: {host}:{port} took the connection but sent no answer in time (the "
                "host stopped, restarting or overloaded?); run the command again when it runs"
            ) from exc
        raise


def _with_progress(terminal: Terminal, flow: Flow[_T], progress: Progress) -> Flow[_T]:
    """Pass ``flow`` through, advancing a progress bar on each batch-upload message."""
    task = progress.add_task("批上送 batch upload", total=None, visible=False)
    request = next(flow)
    while True:
        if request.frame[_MTI_SLICE] == _UPLOAD_MTI:
            batch = terminal.current_batch()
            rows = terminal.journal.transactions(batch.batch_id)
            total = sum(1 for row in rows if row.counted)
            done = sum(1 for row in rows if row.uploaded)
            progress.update(task, total=total, completed=done, visible=True)
        reply: Reply = yield request
        try:
            request = flow.send(reply)
        except StopIteration as stop:
            progress.update(task, completed=progress.tasks[task].total or 0)
            result: _T = stop.value
            return result


def _print_transaction(result: TransactionResult) -> None:
    table = Table(show_header=False)
    table.add_row("结果 result", result.message)
    table.add_row("流水号 STAN", f"{result.stan:06d}")
    table.add_row("批次号 batch", f"{result.batch_no:06d}")
    table.add_row("金额 amount", format_fen(result.amount_fen))
    table.add_row("卡号 card", result.pan_masked)
    table.add_row("参考号 RRN", result.rrn or "-")
    table.add_row("授权码 auth", result.auth_code or "-")
    table.add_row("状态 state", result.state)
    for batch_no in result.settled_batch_nos:
        table.add_row(
            "自动结算 auto-settled", f"批次 {batch_no:06d} 已满 / batch {batch_no:06d} was full"
        )
    console.print(table)


def _print_settlement(result: SettlementResult) -> None:
    table = Table(show_header=False)
    verdict = {True: "对账平 balanced", False: "对账不平 not balanced", None: "-"}
    table.add_row("批次号 batch", f"{result.batch_no:06d}")
    table.add_row("结果 result", verdict[result.balanced])
    table.add_row("关闭 closed by", result.close_reason)
    table.add_row("批上送 uploaded", str(result.uploaded_count))
    table.add_row("续自 resumed from", result.resumed_from)
    table.add_row("新批次 next batch", f"{result.next_batch_no:06d}")
    console.print(table)


@app.command()
def init(  # noqa: PLR0917 - typer options, one per flag
    merchant_id: Annotated[
        str, typer.Option("--merchant-id", parser=MERCHANT_ID, help="15-character merchant ID.")
    ],
    terminal_id: Annotated[
        str, typer.Option("--terminal-id", parser=TERMINAL_ID, help="8-character terminal ID.")
    ],
    master_key_file: Annotated[
        str,
        typer.Option(
            "--master-key-file",
            help="File holding the TMK (32 hex digits), or - for standard input. Never on the "
            "command line: `ps` shows a command line to every user of the machine.",
        ),
    ],
    host: Annotated[str, typer.Option("--host", help="Host address HOST:PORT.")],
    reinstall: Annotated[
        bool, typer.Option("--reinstall", help="This terminal traded before (software reinstall).")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    master_key: Annotated[str | None, typer.Option("--master-key", hidden=True)] = None,
) -> None:
    """Create the journal and key file (mode 0600, in a 0700 directory) of a new terminal.

    Example: posbatch terminal init --merchant-id 898110054110001 --terminal-id 10000001
    --master-key-file tmk.hex --host 127.0.0.1:5800
    """
    refuse_secret_option(master_key, option="--master-key", instead="--master-key-file PATH or -")
    try:
        parse_address(host)
        key_hex = read_secret_file(master_key_file, what="master key")
        init_terminal(
            data_dir,
            merchant_id=merchant_id,
            terminal_id=terminal_id,
            master_key=parse_tmk(key_hex),
            host_address=host,
            clock=_clock,
            reinstall=reinstall,
        )
    except PosbatchError as exc:
        raise _fail(exc) from exc
    console.print(f"terminal {terminal_id} initialised in {data_dir}")


@app.command("sign-on")
def sign_on(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Sign on (签到): new working keys, the host's batch number reconciled.

    Example: posbatch terminal sign-on
    """
    try:
        terminal = _open(data_dir)
        resync = terminal.journal.state().resync_pending
        result = _run(terminal, lambda t: t.sign_on_flow())
    except PosbatchError as exc:
        raise _fail(exc) from exc
    line = f"signed on: batch {result.batch_no:06d} (host {result.host_batch_no:06d}); "
    line += result.recovery.reason
    if resync and result.batch_no != result.host_batch_no:
        # The reason speaks of the moment of the sign-on answer; a new or restored journal
        # then settled the host's batch, and both went on to the next ("agree on 000004"
        # beside "batch 000005" read as a contradiction).
        line += (
            f"; then, a new or restored journal, it settled the host's batch "
            f"{result.host_batch_no:06d} first: both go on in batch {result.batch_no:06d}"
        )
    console.print(line)


@app.command()
def sale(
    amount: Annotated[str, typer.Argument(help="Amount in yuan, e.g. 12.50.")],
    expiry: Annotated[str | None, typer.Option("--expiry", help="Card expiry YYMM.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    card: Annotated[str | None, typer.Option("--card", hidden=True)] = None,
) -> None:
    """A sale (消费). The card number is asked at a hidden prompt, or read from standard
    input (one line) when that is not a terminal — never from the command line, which
    `ps` shows to every user of the machine.

    Example: posbatch terminal sale 12.50 --expiry 3012   (then type the card number)
    """
    refuse_secret_option(card, option="--card", instead="the prompt, or a line on standard input")
    try:
        amount_fen = parse_yuan(amount)
        terminal = _open(data_dir)
        pan = read_card_number()
        result = _run(terminal, lambda t: t.sale_flow(amount_fen, pan, expiry=expiry))
    except PosbatchError as exc:
        raise _fail(exc) from exc
    _print_transaction(result)
    if not result.approved:
        raise typer.Exit(1)


@app.command()
def void(
    stan: Annotated[
        int,
        typer.Argument(parser=STAN, help="STAN of the sale to void (current batch)."),
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Void a sale of the current batch (消费撤销), full amount.

    Example: posbatch terminal void 2
    """
    try:
        terminal = _open(data_dir)
        result = _run(terminal, lambda t: t.void_flow(stan))
    except PosbatchError as exc:
        raise _fail(exc) from exc
    _print_transaction(result)
    if not result.approved:
        raise typer.Exit(1)


@app.command()
def refund(
    stan: Annotated[int, typer.Argument(parser=STAN, help="STAN of the original sale.")],
    amount: Annotated[str, typer.Argument(help="Amount to refund in yuan, e.g. 5.00.")],
    batch_no: Annotated[
        int | None,
        typer.Option(
            "--batch",
            parser=BATCH_NO,
            metavar="BATCH_NO",
            help="Batch of the original sale, if not the latest.",
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Refund part or all of a sale (退货).

    Example: posbatch terminal refund 2 5.00
    """
    try:
        amount_fen = parse_yuan(amount)
        terminal = _open(data_dir)
        result = _run(
            terminal, lambda t: t.refund_flow(stan, amount_fen, original_batch_no=batch_no)
        )
    except PosbatchError as exc:
        raise _fail(exc) from exc
    _print_transaction(result)
    if not result.approved:
        raise typer.Exit(1)


@app.command()
def settle(data_dir: DataDir = DEFAULT_DATA_DIR, width: Width = 80) -> None:
    """Settle the current batch (结算), resuming where an interrupted settlement stopped.

    Example: posbatch terminal settle
    """
    try:
        terminal = _open(data_dir)
        with Progress(console=console, transient=True) as progress:
            result = _run(terminal, lambda t: _with_progress(t, t.settle_flow(), progress))
        batch = next(b for b in terminal.journal.batches() if b.batch_no == result.batch_no)
        rows = terminal.journal.transactions(batch.batch_id)
        state = terminal.state()
        report = render_settlement_report(
            batch, rows, state, exceptions=terminal.batch_notes(batch.batch_no), width=width
        )
    except PosbatchError as exc:
        raise _fail(exc) from exc
    _print_settlement(result)
    ids = (state.terminal_id, state.merchant_id, *(row.rrn for row in rows))
    console.print(_shown(report, *ids), markup=False, highlight=False)


@app.command()
def status(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Counters, the current batch and its local totals (结算前查询), recent events.

    Example: posbatch terminal status
    """
    try:
        terminal = _open(data_dir)
        state = terminal.state()
        balance = terminal.balance()
        events = terminal.journal.events()[-5:]
    except PosbatchError as exc:
        raise _fail(exc) from exc
    ids = (state.terminal_id, state.merchant_id)
    table = Table(
        title=_shown(f"terminal {state.terminal_id} / merchant {state.merchant_id}", *ids)
    )
    table.add_column("item")
    table.add_column("value")
    half = balance.totals.domestic
    foreign = balance.totals.foreign
    table.add_row("host", _shown(state.host_address))
    table.add_row("批次号 batch", f"{balance.batch_no:06d} ({balance.step})")
    table.add_row("流水号 last STAN", f"{state.stan:06d}")
    table.add_row("approved", str(balance.approved_count))
    table.add_row("outstanding (reversal/resend)", str(balance.outstanding_count))
    table.add_row(
        "debit 借记",
        f"{half.debit_count + foreign.debit_count} / "
        f"{format_fen(half.debit_amount_fen + foreign.debit_amount_fen)}",
    )
    table.add_row(
        "credit 贷记",
        f"{half.credit_count + foreign.credit_count} / "
        f"{format_fen(half.credit_amount_fen + foreign.credit_amount_fen)}",
    )
    table.add_row(
        "批次上限 batch limit",
        f"{balance.batch_limit} per counter (fullest now {balance.fullest}); settles by itself",
    )
    if not balance.tally.fits():
        table.add_row("over capacity 超出容量", "field 48 cannot count it: settle (batch upload)")
    table.add_row("training 培训模式", "on" if state.training else "off")
    table.add_row("resync pending", "yes" if state.resync_pending else "no")
    console.print(table)
    for event in events:
        at = shown_stored(event.at, seconds=True)
        console.print(_shown(f"  {at} {event.type}: {event.message}", *ids), markup=False)


@app.command()
def journal(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    limit: Annotated[
        int,
        typer.Option("--limit", parser=count(1, JOURNAL_ROWS_MAX), help="Rows to show (latest)."),
    ] = JOURNAL_ROWS_DEFAULT,
    events: Annotated[bool, typer.Option("--events", help="Show the event log instead.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Only verify the hash chain.")] = False,
) -> None:
    """The journal: transactions (masked cards), the event log, or a chain check.

    Example: posbatch terminal journal --limit 20
    """
    try:
        terminal = open_terminal(data_dir, clock=_clock, verify=True)
        if verify:
            console.print(f"journal OK: {terminal.journal.verify()} entries chained")
            return
        if events:
            table = Table("seq", "at", "type", "message")
            for event in terminal.journal.events()[-limit:]:
                at = shown_stored(event.at, seconds=True)
                table.add_row(str(event.seq), at, event.type, event.message)
            print_table(console, table)
            return
        rows = terminal.journal.transactions()[-limit:]
    except PosbatchError as exc:
        raise _fail(exc) from exc
    table = Table(
        "batch", "STAN", "at", "kind", "amount", "card", "state", "code", "RRN", "up"
    )  # fmt: skip
    for row in rows:
        table.add_row(
            f"{row.batch_no:06d}",
            f"{row.stan:06d}",
            shown_stored(row.created_at),
            row.kind + (" (training)" if row.training else ""),
            format_fen(row.amount_fen),
            row.pan_masked,
            row.state,
            row.response_code or "-",
            row.rrn or "-",
            "✓" if row.uploaded else "",
        )
    print_table(console, table)


@app.command()
def receipt(
    stan: Annotated[int, typer.Argument(parser=STAN, help="STAN of the transaction.")],
    batch_no: Annotated[
        int | None,
        typer.Option(
            "--batch", parser=BATCH_NO, metavar="BATCH_NO", help="Batch, if not the latest."
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    width: Width = 32,
) -> None:
    """Print a transaction's receipt (签购单) again.

    Example: posbatch terminal receipt 2 --width 32
    """
    try:
        terminal = _open(data_dir)
        rows = terminal.journal.find(stan, batch_no)
        if not rows:  # not a usage error: the STAN is well formed, the journal lacks it
            where = "" if batch_no is None else f" in batch {batch_no:06d}"
            raise ConfigError(f"no transaction with STAN {stan:06d}{where} in the journal")
        state = terminal.state()
        text = render_receipt(rows[0], state, width=width, notes=terminal.receipt_notes(rows[0]))
    except PosbatchError as exc:
        raise _fail(exc) from exc
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    ids = (state.terminal_id, state.merchant_id, rows[0].rrn)
    console.print(_shown(text, *ids), markup=False, highlight=False)


PassphraseStdin = Annotated[
    bool,
    typer.Option(
        "--passphrase-stdin",
        help="Read the backup passphrase from the first line of standard input (for scripts); "
        "without it a hidden prompt asks. Never on the command line: `ps` shows it to everyone.",
    ),
]


def _passphrase(from_stdin: bool, *, confirm: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        # Piped in (a script): its first line as it is (spaces are part of a passphrase),
        # bounded — never a hidden prompt on a pipe, which warns the input may be echoed.
        line = sys.stdin.readline(PASSPHRASE_CHARS_MAX + 2).rstrip("\r\n")
        if not line:
            raise ConfigError(
                "no backup passphrase given: type it at the prompt, "
                "or pipe it with --passphrase-stdin"
            )
        if len(line) > PASSPHRASE_CHARS_MAX:
            raise ConfigError(f"a backup passphrase is at most {PASSPHRASE_CHARS_MAX} characters")
        return line
    try:
        return str(
            typer.prompt("backup passphrase 备份密码", hide_input=True, confirmation_prompt=confirm)
        )
    except (typer.Abort, click.exceptions.Abort, EOFError) as exc:
        raise ConfigError(
            "no backup passphrase given: type it at the prompt, or pipe it with --passphrase-stdin"
        ) from exc


@app.command()
def backup(
    destination: Annotated[Path, typer.Argument(help="New file for the copy (mode 0600).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    passphrase_stdin: PassphraseStdin = False,
) -> None:
    """A consistent online copy of the journal that carries its card keys, sealed under a
    passphrase you choose now: it restores on this terminal even after a reinstall.

    Example: posbatch terminal backup ./journal-2026-11-25.db
    """
    try:
        require_terminal_dir(data_dir)  # a typo is said before the passphrase is typed twice
        passphrase = _passphrase(passphrase_stdin, confirm=True)
        report = backup_terminal(data_dir, destination, passphrase=passphrase)
    except PosbatchError as exc:
        raise _fail(exc) from exc
    console.print(
        f"backup written: {destination} ({report.entries} journal entries, batch "
        f"{report.batch_no:06d}); keep the passphrase: a restore after a reinstall needs it"
    )


@app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="A backup made by `backup`.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    force: Annotated[
        bool, typer.Option("--force", help="Restore even if its hash chain is broken.")
    ] = False,
    passphrase_stdin: PassphraseStdin = False,
) -> None:
    """Put a backup in place of the journal; says what the backup lacks. On a reinstalled
    terminal (`init --reinstall` first) it asks for the backup's passphrase.

    Example: posbatch terminal restore ./journal-2026-11-25.db
    """
    try:
        report = restore_journal(
            source,
            data_dir,
            force=force,
            clock=_clock,
            passphrase=lambda: _passphrase(passphrase_stdin, confirm=False),
        )
    except PosbatchError as exc:
        raise _fail(exc) from exc
    console.print(f"restored {report.entries} entries from {source}")
    if report.key_restored:
        console.print("the backup's card keys are in the key file (this terminal's kept too)")
    if report.problem:
        problem = escape(_shown(report.problem))
        console.print(f"[yellow]forced past a broken chain:[/yellow] {problem}")
    for note in report.notes:
        console.print(_shown(f"note: {note}"), markup=False)
    if report.missing_stans:
        console.print(
            "STANs not in the backup: " + ", ".join(f"{s:06d}" for s in report.missing_stans)
        )
    console.print("the next sign-on settles the host's open batch before any new sale")


@app.command("batch-no")
def batch_no(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Enter the batch number by hand: typed twice, accepted only if the host agrees.

    Example: posbatch terminal batch-no
    """
    try:
        terminal = _open(data_dir)
        first = _ask("batch number 批次号")
        second = _ask("again 再次输入")
        result = _run(terminal, lambda t: t.set_batch_no_flow(first, second))
    except PosbatchError as exc:
        raise _fail(exc) from exc
    console.print(f"batch number {result.batch_no:06d} confirmed by the host")


@app.command()
def settings(
    batch_limit: Annotated[
        int | None,
        typer.Option(
            "--batch-limit",
            parser=count(1, BATCH_LIMIT_MAX),
            help="Transactions per field-48 counter (1-999, default 500) before the terminal "
            "settles by itself and carries on in the next batch.",
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Show or change the terminal's settings (the batch limit).

    Example: posbatch terminal settings --batch-limit 300
    """
    try:
        terminal = _open(data_dir)
        if batch_limit is not None:
            terminal.set_batch_limit(batch_limit)
        limit = terminal.state().batch_limit
    except PosbatchError as exc:
        raise _fail(exc) from exc
    console.print(f"batch limit 批次上限: {limit} transactions per counter")


@app.command()
def training(
    mode: Annotated[str, typer.Argument(help="on or off.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Training mode (培训模式): sales are journaled as training, never sent or settled.

    Example: posbatch terminal training on
    """
    if mode not in ("on", "off"):
        raise typer.BadParameter("training mode is 'on' or 'off'")
    try:
        _open(data_dir).set_training(mode == "on")
    except PosbatchError as exc:
        raise _fail(exc) from exc
    console.print(f"training mode {mode}")
