"""``posbatch clearing …`` and the host's clearing settings: thin shells over ClearingStore.

Mounted by :mod:`posbatch.cli`: the operator's settings live under ``posbatch host``
(``set-fees``, ``fees``, ``set-terms``, ``terms``, ``set-card-bin``, ``load-card-bins``,
``card-bins``, ``set-cutoff``, ``cutoffs``); the merchant's money under
``posbatch clearing`` (``arrival``, ``statement``, ``file``, ``run``, ``days``,
``calendar …``). Every value is parsed by the library; a bad one is a one-line error
and exit 2.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Final, TypeVar

import typer

from posbatch import storage
from posbatch.batch.ids import check_merchant_id as check_registered_merchant_id
from posbatch.batch.money import format_fen
from posbatch.clearing import (
    Arrival,
    CardBin,
    CardClass,
    ClearingRules,
    CreditFeeRule,
    FeeSchedule,
    Funding,
    MerchantTerms,
    SettlementCycle,
    arrival_date,
    beijing,
    check_merchant_id,
    cleared_note,
    clearing_file_csv,
    format_rate,
    library_publishes,
    parse_cutoff,
    parse_day,
    parse_fee_schedule,
    parse_moment,
    render_arrival,
    render_clearing_file,
    render_statement,
    statement_csv,
    trading_day,
)
from posbatch.cli_support import MERCHANT_ID, count, error_line, shown_ids
from posbatch.errors import ClearingError, ConfigError, PosbatchError, StoreMissingError
from posbatch.host import ClearingStore
from posbatch.host.cli import DATA_DIR_DEFAULT, open_store

__all__ = ["BIN_FILE_BYTES_MAX", "add_host_commands", "app"]

_T = TypeVar("_T")
# A card BIN file is a few thousand lines; refuse what is clearly not one.
BIN_FILE_BYTES_MAX: Final = 8 * 1024 * 1024
CSV_ENCODING: Final = "utf-8-sig"  # with a BOM: spreadsheets then read the Chinese right

app = typer.Typer(
    help="The merchant's money: arrival dates, statements (对账单), clearing.",
    no_args_is_help=True,
    add_completion=False,
)
calendar_app = typer.Typer(
    help="China's working days: the library's calendar and the overrides that win over it."
    "\n\nExample: posbatch clearing calendar show 2026",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(calendar_app, name="calendar")

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="Where the host's SQLite file and PAN key live.")
]
MerchantOption = Annotated[
    str | None, typer.Option(parser=MERCHANT_ID, help="15 letters or digits.")
]
StandardOption = Annotated[
    bool, typer.Option("--standard", help="The acquirer's standard entry (all merchants).")
]
FromOption = Annotated[
    str, typer.Option("--from", help="First trading day it applies to, YYYY-MM-DD.")
]


def _fail(exc: PosbatchError) -> typer.Exit:
    typer.echo(error_line(str(exc), allowed=shown_ids(exc)), err=True)
    return typer.Exit(2)


@contextmanager
def _clearing(data_dir: Path, *, create: bool = False) -> Iterator[ClearingStore]:
    """The clearing store over the host's store of ``data_dir``; errors become exit 2.

    ``create``: a setting may be written before the first terminal is registered
    (the commands that set rules); reading commands never create a store.
    """
    try:
        with open_store(data_dir, create=create) as store:
            yield ClearingStore(store)
    except PosbatchError as exc:
        raise _fail(exc) from exc


def _rules_or_defaults(data_dir: Path) -> tuple[ClearingRules, str | None]:
    """The host's clearing rules; before any host store exists, the defaults (23:00 cut-off,
    T+1, China's calendar) and a note that says so. Nothing is created."""
    try:
        with open_store(data_dir) as store:
            return ClearingStore(store).rules(), None
    except StoreMissingError:
        return ClearingRules(), "(no host store yet: the default rules)"
    except PosbatchError as exc:
        raise _fail(exc) from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _owner(merchant_id: str | None, standard: bool) -> str | None:
    """Whose rule it is: None (the standard) or a merchant id as the host registers one —
    15 letters or digits, as the back office's fee page requires (clearing's own check lets
    any printable ASCII through, so '=1+2…' or spaces became a merchant with fees)."""
    if standard == (merchant_id is not None):
        raise _fail(ConfigError("give --merchant-id ID or --standard (one of them)"))
    return None if merchant_id is None else _parsed(check_registered_merchant_id, merchant_id)


def _parsed(parse: Callable[[str], _T], text: str) -> _T:
    try:
        return parse(text)
    except PosbatchError as exc:
        raise _fail(exc) from exc


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), replacing it."""
    try:
        storage.write_owner_only(path, text, encoding=CSV_ENCODING, newline="")
    except OSError as exc:
        raise _fail(ConfigError(f"cannot write {path}: {exc.strerror}")) from exc


# --- posbatch host: the operator's settings --------------------------------------------


def set_fees(
    *,
    merchant_id: MerchantOption = None,
    standard: StandardOption = False,
    effective_from: FromOption = "",
    debit: Annotated[str, typer.Option(help="Domestic debit rate, like 0.60%.")] = "",
    credit: Annotated[str, typer.Option(help="Domestic credit rate.")] = "",
    foreign_debit: Annotated[str, typer.Option(help="Foreign debit rate.")] = "",
    foreign_credit: Annotated[str, typer.Option(help="Foreign credit rate.")] = "",
    debit_cap: Annotated[
        str | None, typer.Option(help="Cap per domestic debit sale, yuan.")
    ] = None,
    credit_cap: Annotated[str | None, typer.Option(help="Cap per domestic credit sale.")] = None,
    foreign_debit_cap: Annotated[str | None, typer.Option(help="Cap per foreign debit.")] = None,
    foreign_credit_cap: Annotated[str | None, typer.Option(help="Cap per foreign credit.")] = None,
    instant: Annotated[str, typer.Option(help="Extra rate for T+0/D+0 merchants.")] = "0.00%",
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Set a fee schedule (手续费) from a trading day on; the history is kept.

    Every rate is a percentage with its sign; caps are yuan, 0.01 and more (leave a cap
    out for no cap; a rate of 0% for no fee: a cap of 0 is refused). A schedule takes effect
    from a coming trading day; from the one under way only if it re-prices none of the
    transactions already made that day (a transaction keeps the price it was made at),
    never earlier (cleared days never change).

    Example: posbatch host set-fees --standard --from 2026-10-01 --debit 0.60% --debit-cap 20.00
    --credit 0.60% --foreign-debit 2.50% --foreign-credit 2.50%
    """
    owner = _owner(merchant_id, standard)
    texts = {
        CardClass.DOMESTIC_DEBIT: ("--debit", debit, debit_cap),
        CardClass.DOMESTIC_CREDIT: ("--credit", credit, credit_cap),
        CardClass.FOREIGN_DEBIT: ("--foreign-debit", foreign_debit, foreign_debit_cap),
        CardClass.FOREIGN_CREDIT: ("--foreign-credit", foreign_credit, foreign_credit_cap),
    }
    missing = [option for option, rate, _cap_text in texts.values() if not rate]
    if missing or not effective_from:
        needed = [*missing, *([] if effective_from else ["--from"])]
        raise _fail(ConfigError(f"set-fees needs {', '.join(needed)}"))
    try:
        schedule = parse_fee_schedule(
            owner,
            effective_from,
            {card_class: rate for card_class, (_o, rate, _c) in texts.items()},
            {card_class: cap for card_class, (_o, _r, cap) in texts.items()},
            instant,
        )
    except PosbatchError as exc:
        raise _fail(exc) from exc
    now = _now()
    with _clearing(data_dir, create=True) as clearing:
        saved = clearing.set_fee_schedule(schedule, now=now)
        today = clearing.current_trading_day(now)
    typer.echo(f"fee schedule #{saved.schedule_id} of {_whose(owner)} from {saved.effective_from}:")
    typer.echo(_schedule_text(saved))
    _say_if_today(saved.effective_from, today)


def _say_if_today(effective_from: date, today: date) -> None:
    """A rule from the trading day under way was taken only because it re-prices nothing
    already made: say so (one line)."""
    if effective_from == today:
        typer.echo(
            f"from the trading day under way ({today}): no transaction already made that day "
            "is priced or paid otherwise"
        )


def _whose(merchant_id: str | None) -> str:
    return "the standard (all merchants)" if merchant_id is None else f"merchant {merchant_id}"


def _schedule_text(schedule: FeeSchedule) -> str:
    parts = []
    for card_class in CardClass:
        cap = schedule.cap_fen(card_class)
        text = f"{card_class.value} {format_rate(schedule.rates[card_class])}"
        if cap is not None:
            text += f" cap {format_fen(cap)}"
        parts.append(text)
    parts.append(f"instant +{format_rate(schedule.instant_rate)}")
    return "  " + "; ".join(parts)


def fees(
    merchant_id: MerchantOption = None,
    standard: StandardOption = False,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Show fee schedules with their history (all of them, a merchant's, or the standard).

    Example: posbatch host fees --merchant-id 898110054110001
    """
    with _clearing(data_dir) as clearing:
        if merchant_id is None and not standard:
            schedules = clearing.fee_schedules(every=True)
        else:
            schedules = clearing.fee_schedules(merchant_id)
    if not schedules:
        typer.echo("no fee schedule (posbatch host set-fees)")
    for schedule in schedules:
        typer.echo(
            f"#{schedule.schedule_id} {_whose(schedule.merchant_id)} from "
            f"{schedule.effective_from}:"
        )
        typer.echo(_schedule_text(schedule))


def set_terms(
    *,
    merchant_id: MerchantOption = None,
    standard: StandardOption = False,
    effective_from: FromOption = "",
    cycle: Annotated[
        str | None, typer.Option(help="T+1, T+0, D+0 or D+1 (when the money arrives).")
    ] = None,
    void_fee: Annotated[
        str | None, typer.Option(help="returned or kept: the sale's fee when it is voided.")
    ] = None,
    refund_fee: Annotated[
        str | None, typer.Option(help="returned or kept: the sale's fee when it is refunded.")
    ] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Set a merchant's settlement cycle and void/refund fee rules from a trading day on.

    What is not given stays as in force on that day. Defaults: T+1, void fee returned,
    refund fee kept (docs/clearing.md).

    Example: posbatch host set-terms --merchant-id 898110054110001 --from 2026-10-01 --cycle D+0
    """
    owner = _owner(merchant_id, standard)
    if not effective_from:
        raise _fail(ConfigError("set-terms needs --from"))
    day = _parsed(parse_day, effective_from)
    try:
        new_cycle = None if cycle is None else SettlementCycle(cycle.strip().upper())
        new_void = None if void_fee is None else CreditFeeRule(void_fee.strip().lower())
        new_refund = None if refund_fee is None else CreditFeeRule(refund_fee.strip().lower())
    except ValueError:
        raise _fail(
            ConfigError("--cycle is T+1, T+0, D+0 or D+1; --void-fee/--refund-fee returned or kept")
        ) from None
    with _clearing(data_dir, create=True) as clearing:
        current = clearing.rules().terms_for(owner, day)
        terms = MerchantTerms(
            owner,
            day,
            new_cycle or current.cycle,
            new_void or current.void_fee,
            new_refund or current.refund_fee,
        )
        now = _now()
        saved = clearing.set_merchant_terms(terms, now=now)
        today = clearing.current_trading_day(now)
    typer.echo(f"terms #{saved.terms_id} of {_whose(owner)} from {day}: {_terms_text(saved)}")
    _say_if_today(day, today)


def _terms_text(terms: MerchantTerms) -> str:
    return (
        f"cycle {terms.cycle.value}, void fee {terms.void_fee.value}, "
        f"refund fee {terms.refund_fee.value}"
    )


def terms(
    merchant_id: MerchantOption = None,
    standard: StandardOption = False,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Show settlement cycles and void/refund fee rules with their history.

    Example: posbatch host terms --merchant-id 898110054110001
    """
    with _clearing(data_dir) as clearing:
        if merchant_id is None and not standard:
            found = clearing.merchant_terms(every=True)
        else:
            found = clearing.merchant_terms(merchant_id)
    if not found:
        typer.echo("no terms set: every merchant is on the defaults (" + _terms_text(
            MerchantTerms(None, date.min)) + ")")  # fmt: skip
    for entry in found:
        typer.echo(
            f"#{entry.terms_id} {_whose(entry.merchant_id)} from {entry.effective_from}: "
            f"{_terms_text(entry)}"
        )


def _funding(text: str) -> Funding:
    try:
        return Funding(text.strip().lower())
    except ValueError:
        raise ClearingError(f"funding {text!r} is debit or credit") from None


def set_card_bin(
    prefix: Annotated[
        str, typer.Argument(help="2 to 6 leading digits of the card number, or an 8-digit BIN.")
    ],
    funding: Annotated[str, typer.Argument(help="debit or credit.")],
    effective_from: FromOption = "",
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Say whether cards starting with PREFIX are debit or credit (the longest prefix wins).

    Example: posbatch host set-card-bin 622202 debit --from 2026-10-01
    """
    if not effective_from:
        raise _fail(ConfigError("set-card-bin needs --from"))
    try:
        entry = CardBin(prefix.strip(), _funding(funding), parse_day(effective_from))
    except PosbatchError as exc:
        raise _fail(exc) from exc
    now = _now()
    with _clearing(data_dir, create=True) as clearing:
        clearing.set_card_bins([entry], now=now)
        today = clearing.current_trading_day(now)
    typer.echo(f"cards {entry.prefix}… are {entry.funding.value} from {entry.effective_from}")
    _say_if_today(entry.effective_from, today)


def load_card_bins(
    file: Annotated[Path, typer.Argument(help="CSV: prefix,funding per line (debit/credit).")],
    effective_from: FromOption = "",
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Load a card BIN file (prefix,funding per line; a header line is allowed): all or none.

    A prefix given twice is loaded once; given as debit and as credit, the file is refused.

    Example: posbatch host load-card-bins bins.csv --from 2026-10-01
    """
    if not effective_from:
        raise _fail(ConfigError("load-card-bins needs --from"))
    day = _parsed(parse_day, effective_from)
    try:
        # read at most one byte past the limit: a size from stat() is 0 for a device or a
        # pipe (/dev/zero, /dev/stdin), whose whole read would never end
        with file.open("rb") as stream:
            raw = stream.read(BIN_FILE_BYTES_MAX + 1)
        if len(raw) > BIN_FILE_BYTES_MAX:
            raise ConfigError(f"{file} is over {BIN_FILE_BYTES_MAX} bytes: not a BIN file")
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise _fail(ConfigError(f"cannot read {file}: {exc.strerror}")) from exc
    except UnicodeDecodeError:
        raise _fail(ConfigError(f"{file} is not UTF-8 text")) from None
    except PosbatchError as exc:
        raise _fail(exc) from exc
    entries = []
    # prefix -> (line, entry): one file says once what a prefix is; a prefix given again
    # the same way is one entry, given the other way the file contradicts itself (the later
    # line would win silently, pricing every such card by the wrong rate)
    seen: dict[str, tuple[int, CardBin]] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        if number == 1 and not row[0].strip().isdigit():
            continue  # a header
        if len(row) != 2:
            raise _fail(ConfigError(f"{file} line {number}: expected prefix,funding"))
        try:
            entry = CardBin(row[0].strip(), _funding(row[1]), day)
        except PosbatchError as exc:
            raise _fail(ClearingError(f"{file} line {number}: {exc}")) from exc
        earlier = seen.get(entry.prefix)
        if earlier is not None:
            if earlier[1].funding is not entry.funding:
                raise _fail(
                    ClearingError(
                        f"{file} line {number}: BIN {entry.prefix} is {entry.funding.value} "
                        f"here and {earlier[1].funding.value} on line {earlier[0]}"
                    )
                )
            continue
        seen[entry.prefix] = (number, entry)
        entries.append(entry)
    now = _now()
    with _clearing(data_dir, create=True) as clearing:
        count = clearing.set_card_bins(entries, now=now)
        today = clearing.current_trading_day(now)
    typer.echo(f"loaded {count} BIN entries from {day}")
    _say_if_today(day, today)


def card_bins(data_dir: DataDir = DATA_DIR_DEFAULT) -> None:
    """Show the card BIN entries (unknown cards are priced as credit).

    Example: posbatch host card-bins
    """
    with _clearing(data_dir) as clearing:
        entries = clearing.card_bins()
    if not entries:
        typer.echo("no BIN entries: every card is priced as credit (posbatch host set-card-bin)")
    for entry in entries:
        typer.echo(f"#{entry.bin_id} {entry.prefix:<8} {entry.funding.value:<6} from "
                   f"{entry.effective_from}")  # fmt: skip


def set_cutoff(
    cutoff: Annotated[str, typer.Argument(help="HH:MM Beijing time; 00:00 = the calendar day.")],
    effective_from: FromOption = "",
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Set the cut-off (日切) that ends each trading day, from a coming trading day on.

    Example: posbatch host set-cutoff 22:00 --from 2026-12-01
    """
    if not effective_from:
        raise _fail(ConfigError("set-cutoff needs --from"))
    moment = _parsed(parse_cutoff, cutoff)
    day = _parsed(parse_day, effective_from)
    with _clearing(data_dir, create=True) as clearing:
        clearing.set_cutoff(day, moment, now=_now())
    typer.echo(f"trading days from {day} end at {moment:%H:%M} Beijing time")


def cutoffs(data_dir: DataDir = DATA_DIR_DEFAULT) -> None:
    """Show the cut-off (日切) over time.

    Example: posbatch host cutoffs
    """
    with _clearing(data_dir) as clearing:
        schedule = clearing.cutoffs()
    typer.echo("23:00 Beijing time until the first change (the default)")
    for change in schedule.changes:
        typer.echo(f"{change.cutoff:%H:%M} from trading day {change.effective_from}")


def add_host_commands(host_app: typer.Typer) -> None:
    """Mount the clearing settings on ``posbatch host``."""
    for name, command in (
        ("set-fees", set_fees),
        ("fees", fees),
        ("set-terms", set_terms),
        ("terms", terms),
        ("set-card-bin", set_card_bin),
        ("load-card-bins", load_card_bins),
        ("card-bins", card_bins),
        ("set-cutoff", set_cutoff),
        ("cutoffs", cutoffs),
    ):
        host_app.command(name)(command)


# --- posbatch clearing -------------------------------------------------------------------


@app.command("arrival")
def arrival(
    moment: Annotated[
        str,
        typer.Argument(
            help="When it traded, ISO 8601: YYYY-MM-DDTHH:MM[:SS[.fraction]] Beijing time, "
            "or ending in Z / +HH:MM (2026-09-30T02:00:00.250Z); or a trading day YYYY-MM-DD."
        ),
    ],
    merchant_id: MerchantOption = None,
    cycle: Annotated[str | None, typer.Option(help="T+1, T+0, D+0 or D+1.")] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Print the trading day and the funds-arrival date (到账日) of a transaction.

    Example: posbatch clearing arrival 2026-09-30T10:00
    """
    try:
        chosen = None if cycle is None else SettlementCycle(cycle.strip().upper())
    except ValueError:
        raise _fail(ConfigError("--cycle is T+1, T+0, D+0 or D+1")) from None
    rules, note = _rules_or_defaults(data_dir)
    try:
        cut = rules.cutoffs
        if len(moment.strip()) == len("YYYY-MM-DD"):
            day = parse_day(moment)
            shown = f"trading day {day} (given)"
        else:
            traded = parse_moment(moment)
            day = trading_day(traded, cut)
            # To the second (and its fraction when given): a second before the cut-off is
            # another trading day.
            form = "%Y-%m-%d %H:%M:%S" + (".%f" if traded.microsecond else "")
            shown = (
                f"{beijing(traded).strftime(form)} Beijing "
                f"({traded.astimezone(UTC).strftime(form)} UTC)"
            )
        result: Arrival | None = None
        if chosen is None and merchant_id is not None and note is None:
            # a cleared day: the arrival its clearing run kept (what the merchant was promised)
            with _clearing(data_dir) as clearing:
                result = clearing.arrival(day, merchant_id=merchant_id)
        if result is None:
            if chosen is None:
                chosen = rules.terms_for(check_merchant_id(merchant_id), day).cycle
            result = arrival_date(day, chosen, rules.calendar)
    except PosbatchError as exc:
        raise _fail(exc) from exc
    typer.echo(render_arrival(shown, result, f"{cut.cutoff_on(day):%H:%M}"))
    if note is not None:
        typer.echo(note)


@app.command("statement")
def statement(
    merchant_id: Annotated[str, typer.Option(parser=MERCHANT_ID, help="15 letters or digits.")],
    on: Annotated[str, typer.Option("--date", help="The trading day, YYYY-MM-DD.")],
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Also write it as CSV here (mode 0600).")
    ] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Print a merchant's statement (对账单) of a trading day; --csv also writes it.

    Example: posbatch clearing statement --merchant-id 898110054110001 --date 2026-09-30
    """
    day = _parsed(parse_day, on)
    with _clearing(data_dir) as clearing:
        try:
            found = clearing.statement(merchant_id.strip(), day)
        except PosbatchError as exc:
            raise _fail(exc) from exc
    # The file first: a --csv that cannot be written is the one line printed, not an error
    # under a whole statement that reads as if all went well.
    if csv_file is not None:
        write_private(csv_file, statement_csv(found))
    typer.echo(render_statement(found))
    typer.echo(cleared_note(day, found.cleared))
    if csv_file is not None:
        typer.echo(f"written {csv_file}")


@app.command("file")
def clearing_file(
    on: Annotated[str, typer.Option("--date", help="The trading day, YYYY-MM-DD.")],
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Also write it as CSV here (mode 0600).")
    ] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Print the clearing file (清算文件) of a trading day: one line per merchant.

    Example: posbatch clearing file --date 2026-09-30 --csv 20260930.csv
    """
    day = _parsed(parse_day, on)
    with _clearing(data_dir) as clearing:
        try:
            document = clearing.clearing_file(day)  # cleared or not: asked with its figures
        except PosbatchError as exc:
            raise _fail(exc) from exc
    if csv_file is not None:  # first, as for a statement
        write_private(csv_file, clearing_file_csv(document))
    typer.echo(render_clearing_file(document))
    typer.echo(cleared_note(day, document.cleared))
    if csv_file is not None:
        typer.echo(f"written {csv_file}")


@app.command("run")
def run(
    on: Annotated[str, typer.Option("--date", help="The trading day, YYYY-MM-DD.")],
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Clear an ended trading day (清算): price every line and keep it, once.

    Statements and the clearing file of a cleared day are read from what this keeps.
    Run again for a cleared day, it changes nothing and says so (or refuses, if the
    records now give other figures than those paid).

    Example: posbatch clearing run --date 2026-09-30
    """
    day = _parsed(parse_day, on)
    with _clearing(data_dir) as clearing:
        try:
            earlier = clearing.cleared_day(day)
            done = clearing.clear_day(day, now=_now())
        except PosbatchError as exc:
            raise _fail(exc) from exc
    totals = done.totals
    # a second run changes nothing: say so, or the operator takes it for a new clearing
    what = "was cleared already at" if earlier is not None else "cleared at"
    typer.echo(
        f"trading day {day} {what} {beijing(done.cleared_at):%Y-%m-%d %H:%M} Beijing: "
        f"{totals.count} lines, gross {format_fen(totals.gross_fen)}, fees "
        f"{format_fen(totals.fee_fen)}, "
        + (
            f"adjustments 差错调整 {format_fen(done.adjustment_fen)}, "
            if done.adjustment_fen
            else ""
        )
        + f"net {format_fen(totals.net_fen + done.adjustment_fen)}"
    )
    if earlier is not None:
        typer.echo("the records still give these figures: nothing was changed or paid again")


@app.command("days")
def days(data_dir: DataDir = DATA_DIR_DEFAULT) -> None:
    """List the cleared trading days with their totals.

    Example: posbatch clearing days
    """
    with _clearing(data_dir) as clearing:
        found = clearing.cleared_days()
    if not found:
        typer.echo("no trading day cleared yet (posbatch clearing run --date YYYY-MM-DD)")
    for done in found:
        totals = done.totals
        typer.echo(
            f"{done.trading_day}  {totals.count:>7} lines  gross {format_fen(totals.gross_fen):>14}"
            f"  fees {format_fen(totals.fee_fen):>11}"
            f"  net {format_fen(totals.net_fen + done.adjustment_fen):>14}"
            f"  cleared {beijing(done.cleared_at):%Y-%m-%d %H:%M}"
            + (
                f"  差错调整 adjustments {format_fen(done.adjustment_fen)}"
                if done.adjustment_fen
                else ""
            )
        )


@calendar_app.command("show")
def calendar_show(
    year: Annotated[int, typer.Argument(parser=count(0), help="The year, like 2026.")],
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Show a year's holidays, make-up working days (调休) and overrides; say if provisional.

    Example: posbatch clearing calendar show 2026
    """
    if not 2000 <= year <= 2100:
        raise _fail(ClearingError(f"year {year} is not one this calendar covers (2000..2100)"))
    rules, note = _rules_or_defaults(data_dir)
    calendar = rules.calendar
    if note is not None:
        typer.echo(note)
    status = "published 已发布" if calendar.is_published(year) else (
        "暂定 provisional: no State Council notice for it yet (the library guesses by rule)"
    )  # fmt: skip
    typer.echo(f"{year}: {status}")
    for day, working, why in calendar.days_off(year):
        what = "working day 上班" if working else "day off 休息"
        typer.echo(f"{day} {day:%a}  {what:<16} {why}")


@calendar_app.command("set")
def calendar_set(
    on: Annotated[str, typer.Argument(help="The date, YYYY-MM-DD.")],
    working: Annotated[
        bool, typer.Option("--working/--day-off", help="A working day, or a day off.")
    ],
    note: Annotated[str, typer.Option(help="Why (the notice it comes from).")],
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Override a date: a working day or a day off, whatever the library says.

    Example: posbatch clearing calendar set 2027-02-20 --working --note "国务院办公厅通知"
    """
    day = _parsed(parse_day, on)
    with _clearing(data_dir, create=True) as clearing:
        clearing.set_working_day(day, working, note=note, now=_now())
    typer.echo(f"{day} is {'a working day' if working else 'a day off'} (override)")


@calendar_app.command("unset")
def calendar_unset(
    on: Annotated[str, typer.Argument(help="The date, YYYY-MM-DD.")],
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Remove a date's override: the library's calendar decides again.

    Example: posbatch clearing calendar unset 2027-02-20
    """
    day = _parsed(parse_day, on)
    with _clearing(data_dir) as clearing:
        clearing.set_working_day(day, None, note="", now=_now())
    typer.echo(f"{day}: no override")


@calendar_app.command("publish")
def calendar_publish(
    year: Annotated[
        int, typer.Argument(parser=count(0), help="The year whose notice was entered.")
    ],
    note: Annotated[str, typer.Option(help="The notice (name, number, date).")],
    undo: Annotated[bool, typer.Option(help="Mark it provisional again.")] = False,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Mark a year's State Council holiday notice as entered (its dates stop being provisional).

    Enter the notice's days off and make-up working days with `calendar set` first.

    Example: posbatch clearing calendar publish 2027 --note "国办发明电〔2026〕号"
    """
    with _clearing(data_dir, create=True) as clearing:
        clearing.publish_year(year, note=note, now=_now(), published=not undo)
        calendar = clearing.calendar()
    typer.echo(f"{year}: {'provisional again' if undo else 'published'}")
    made_up = [
        day
        for day, working in calendar.overrides.items()
        if day.year == year and working and day.weekday() >= 5  # Saturday, Sunday
    ]
    if not undo and not made_up and not library_publishes(year):
        # every notice since 2001 moves some weekend day to a working day: none entered, the
        # year's dates are the library's guess by rule, now shown as final
        typer.echo(
            f"注意 note: no make-up working day (调休上班) of {year} is entered, and every State "
            "Council notice since 2001 has some: enter them with `posbatch clearing calendar "
            "set YYYY-MM-DD --working`, or undo with --undo"
        )
