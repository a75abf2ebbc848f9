"""Statements, clearing files and arrival dates as people read them: text and CSV.

Pure: objects in, strings out (writing the file is the caller's). Every text
a merchant or the support desk reads is in Chinese and English, amounts in
yuan with two decimals, times in Beijing time.

CSV safety: a spreadsheet runs a cell that begins with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return as a formula, so such a cell is written
with a leading apostrophe — unless it is exactly a decimal number (``-12.50``
stays a number). Card numbers appear only masked (first 6 / last 4), and
free text (an exception's cause) has any run of 13–19 digits masked the same
way, whatever put it there.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Final, NamedTuple
from unicodedata import east_asian_width

from posbatch.batch.cards import mask_card_numbers, mask_pan
from posbatch.batch.money import format_fen
from posbatch.clearing._adjustments import ADJUSTMENT_LABELS, AdjustmentLine
from posbatch.clearing._calendar import Arrival, beijing
from posbatch.clearing._fees import CardClass, format_rate
from posbatch.clearing._statement import (
    ClearingFile,
    ExceptionRecord,
    Statement,
    StatementLine,
    Totals,
)

__all__ = [
    "FORMULA_PREFIXES",
    "cleared_note",
    "clearing_file_csv",
    "exception_settlement",
    "mask_card_numbers",
    "render_arrival",
    "render_clearing_file",
    "render_statement",
    "safe_cell",
    "statement_csv",
]

FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
_NUMBER: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_TIME: Final = "%Y-%m-%d %H:%M:%S"


def safe_cell(value: object) -> str:
    """``value`` as a CSV cell a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_PREFIXES) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def _csv(rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()


def _yuan(amount_fen: int) -> str:
    return format_fen(amount_fen)


def _arrival_text(arrival: Arrival) -> str:
    text = f"{arrival.arrival_date.isoformat()} ({arrival.cycle.value})"
    if arrival.provisional:
        text += " 暂定 provisional: no State Council holiday notice for that year yet"
    return text


def _window(start: datetime, end: datetime) -> str:
    """A trading day's bounds in Beijing time."""
    return f"{beijing(start):%Y-%m-%d %H:%M} – {beijing(end):%Y-%m-%d %H:%M}"


def render_arrival(moment_text: str, arrival: Arrival, cutoff_text: str) -> str:
    """What ``posbatch clearing arrival`` prints."""
    lines = [
        f"traded 交易时间      {moment_text}",
        f"trading day 交易日   {arrival.trading_day.isoformat()} "
        f"(cut-off 日切 {cutoff_text} Beijing)",
        f"arrival 到账日       {_arrival_text(arrival)}",
    ]
    return "\n".join(lines)


# --- the statement ---------------------------------------------------------------------


def _cells(text: str) -> int:
    """How many columns ``text`` takes on a terminal: a wide (CJK) character takes two."""
    return sum(2 if east_asian_width(char) in "WF" else 1 for char in text)


def _left(text: str, width: int) -> str:
    return text + " " * max(0, width - _cells(text))


def _widest(values: Iterable[str], least: int) -> int:
    """The width of a column of ``values``: at least ``least``, else its widest value (the
    amounts a line or a day's sum may reach push the column, never out of line)."""
    return max([least, *(len(value) for value in values)])


class _Widths(NamedTuple):
    """The widths of a statement's amount, fee and net columns."""

    amount: int
    fee: int
    net: int

    @classmethod
    def of(cls, lines: Sequence[StatementLine]) -> _Widths:
        return cls(
            _widest((_yuan(line.amount_fen) for line in lines), 12),
            _widest((_yuan(line.fee_fen) for line in lines), 9),
            _widest((_yuan(line.net_fen) for line in lines), 12),
        )


_LINES_HEAD: Final = (
    "time (Beijing)       terminal  batch   stan    rrn           kind               "
    "card                     "
)


def _lines_head(widths: _Widths) -> str:
    return (
        f"{_LINES_HEAD}{'class':<16} {'amount':>{widths.amount}} {'fee':>{widths.fee}} "
        f"{'net':>{widths.net}}"
    )


def _line_text(line: StatementLine, widths: _Widths) -> str:
    what = line.kind.label
    if line.reverses is not None:
        what += f" of {line.reverses.value}"
    card = line.pan_masked + ("" if line.bin_known else " BIN?")
    original = ""
    if line.original is not None:
        original = (
            f" ← batch {line.original.batch_no:06d} stan {line.original.stan:06d} "
            f"{line.original.trading_day.isoformat()}"
        )
    return (
        f"{beijing(line.at).strftime(_TIME)}  {line.terminal_id:<8}  {line.batch_no:06d}  "
        f"{line.stan:06d}  {line.rrn or '-':<12}  {_left(what, 18)} {card:<24} "
        f"{line.card_class.value:<16} {_yuan(line.amount_fen):>{widths.amount}} "
        f"{_yuan(line.fee_fen):>{widths.fee}} {_yuan(line.net_fen):>{widths.net}}{original}"
    )


def _adjustment_text(line: AdjustmentLine, amount_width: int) -> str:
    what = ADJUSTMENT_LABELS.get(line.resolution, line.resolution)
    return (
        f"{beijing(line.at).strftime(_TIME)}  {line.terminal_id:<8}  差错 #{line.exception_id} "
        f"{line.kind:<22} {_left(what, 28)} {_yuan(line.amount_fen):>{amount_width}}  fee 0.00"
    )


def _sums_text(rows: Sequence[tuple[str, Totals]]) -> list[str]:
    """The by-card-type or by-kind block: one column width for all of its rows and the
    other block's (the caller passes both)."""
    count_w = _widest((str(totals.count) for _label, totals in rows), 6)
    gross_w = _widest((_yuan(totals.gross_fen) for _label, totals in rows), 12)
    fee_w = _widest((_yuan(totals.fee_fen) for _label, totals in rows), 9)
    net_w = _widest((_yuan(totals.net_fen) for _label, totals in rows), 12)
    return [
        f"  {_left(label, 28)} {totals.count:>{count_w}}  gross "
        f"{_yuan(totals.gross_fen):>{gross_w}}  fees {_yuan(totals.fee_fen):>{fee_w}}  "
        f"net {_yuan(totals.net_fen):>{net_w}}"
        for label, totals in rows
    ]


def _schedule_text(statement: Statement) -> list[str]:
    schedule = statement.schedule
    if schedule is None:
        return ["费率 fees: no schedule in force 未设置费率"]
    owner = "standard 标准" if schedule.merchant_id is None else "merchant's own 商户专属"
    parts = []
    for card_class in CardClass:
        cap = schedule.cap_fen(card_class)
        text = f"{card_class.value} {format_rate(schedule.rates[card_class])}"
        if cap is not None:
            text += f" cap 封顶 {_yuan(cap)}"
        parts.append(text)
    lines = [
        f"费率 fees ({owner}, from {schedule.effective_from.isoformat()}): " + "; ".join(parts)
    ]
    if statement.arrival.instant:
        lines.append(f"  instant 即时到账 extra {format_rate(schedule.instant_rate)}")
    elif statement.terms.cycle.instant:
        lines.append(
            f"  instant 即时到账 extra {format_rate(schedule.instant_rate)}: not charged "
            "this day, paid on the next working day as T+1 pays 非工作日不收即时费"
        )
    return lines


def cleared_note(day: date, cleared: bool) -> str:
    """The line under a printed statement or clearing file that says whether its figures
    are the clearing run's (final) or computed from the records as they are now (a day
    under way still trades: they change). The back office's text export ends with it
    too: a statement downloaded during the day read as final without it."""
    if cleared:
        return f"已清算 cleared: these are the figures kept by the clearing run of {day}"
    return (
        "未清算 not cleared yet: computed from the records as they are now "
        f"(posbatch clearing run --date {day} once the day has ended)"
    )


def render_statement(statement: Statement) -> str:
    """The statement as ``posbatch clearing statement`` prints it."""
    terms = statement.terms
    out = [
        f"对账单 Statement — merchant 商户 {statement.merchant_id}, trading day 交易日 "
        f"{statement.trading_day.isoformat()} "
        f"({_window(statement.start, statement.end)} Beijing)",
        f"结算周期 cycle {terms.cycle.value}; 撤销手续费 void fee {terms.void_fee.value}; "
        f"退货手续费 refund fee {terms.refund_fee.value}",
        *_schedule_text(statement),
        "",
        "交易明细 Transactions",
    ]
    if statement.lines:
        widths = _Widths.of(statement.lines)
        out.append(_lines_head(widths))
        out.extend(_line_text(line, widths) for line in statement.lines)
    else:
        out.append("  (none 无交易)")
    by_class = [(c.label, totals) for c, totals in statement.by_class if totals.count]
    by_kind = [(kind.label, totals) for kind, totals in statement.by_kind if totals.count]
    sums = _sums_text([*by_class, *by_kind])
    out += ["", "按卡类 By card type", *sums[: len(by_class)]]
    out += ["按交易类型 By kind", *sums[len(by_class) :]]
    out += ["", "批次 Batches"]
    for batch in statement.batches:
        closed = "-" if batch.closed_at is None else beijing(batch.closed_at).strftime(_TIME)
        out.append(
            f"  {batch.terminal_id} batch {batch.batch_no:06d}: {batch.count} lines, "
            f"{_yuan(batch.gross_fen)}; {batch.settled}"
            + ("" if batch.closed_at is None else f" at {closed}")
        )
    if not statement.batches:
        out.append("  (none 无)")
    out += ["", "差错调整 Adjustments (exceptions resolved this trading day; no fee)"]
    adjustment_width = _widest((_yuan(line.amount_fen) for line in statement.adjustments), 12)
    out.extend("  " + _adjustment_text(line, adjustment_width) for line in statement.adjustments)
    if not statement.adjustments:
        out.append("  (none 无)")
    out += [
        "",
        "差错 Exceptions touching the money, raised this day (a resolution that moves the "
        "merchant's money is an adjustment of the day it is resolved)",
    ]
    for record in statement.exceptions:
        amounts = (
            f"terminal {_fen_or_dash(record.terminal_amount_fen)}, "
            f"host {_fen_or_dash(record.host_amount_fen)}"
        )
        out.append(
            f"  #{record.exception_id} {record.terminal_id} {record.kind}: "
            f"{mask_card_numbers(record.cause)} ({amounts})"
        )
        out.append(f"      -> {exception_settlement(record)}")
    if not statement.exceptions:
        out.append("  (none 无)")
    total = statement.total
    out += [
        "",
        f"合计 Total: {total.count} lines, gross 交易金额 {_yuan(total.gross_fen)}, "
        f"fees 手续费 {_yuan(total.fee_fen)}, "
        + (
            f"adjustments 差错调整 {_yuan(statement.adjustment_fen)} "
            f"({len(statement.adjustments)}), "
            if statement.adjustments
            else ""
        )
        + f"net 净额 {_yuan(statement.net_fen)}",
        _net_sentence(statement.net_fen, statement.arrival),
    ]
    if statement.unknown_bins:
        out.append(
            f"注意 note: {statement.unknown_bins} card(s) with no BIN entry were priced as credit "
            "cards (posbatch host set-card-bin)"
        )
    return "\n".join(out)


def exception_settlement(record: ExceptionRecord) -> str:
    """Where an exception of the statement was settled, in one line: the trading day whose
    statement carries its adjustment, a resolution that moves no money, or still open."""
    if record.resolution is None or record.resolved_at is None:
        return (
            "open 未处理: not settled yet; its money moves as an adjustment (差错调整) on the "
            "statement of the trading day it is resolved"
        )
    resolved = (
        f"resolved 已处理 {beijing(record.resolved_at).strftime(_TIME)} "
        f"{ADJUSTMENT_LABELS.get(record.resolution, record.resolution)}"
    )
    if record.settled_on is None:
        return f"{resolved}: no adjustment, the merchant's money does not move"
    return (
        f"{resolved}: adjustment 差错调整 {_yuan(record.adjustment_fen)} on the statement of "
        f"trading day {record.settled_on.isoformat()}"
    )


def _fen_or_dash(amount_fen: int | None) -> str:
    return "-" if amount_fen is None else _yuan(amount_fen)


def _net_sentence(net_fen: int, arrival: Arrival) -> str:
    if net_fen >= 0:
        return (
            f"应付商户 to be paid to the merchant: {_yuan(net_fen)} on 到账日 "
            f"{_arrival_text(arrival)}"
        )
    return (
        f"应收商户 to be recovered from the merchant: {_yuan(-net_fen)} on {_arrival_text(arrival)}"
    )


STATEMENT_COLUMNS: Final = (
    "交易时间 time (Beijing)",
    "终端 terminal_id",
    "批次号 batch_no",
    "流水号 stan",
    "参考号 rrn",
    "类型 kind",
    "冲正原交易 reverses",
    "卡号 card",
    "卡类 card_class",
    "金额 amount",
    "手续费 fee",
    "净额 net",
    "原批次 original batch_no",
    "原流水 original stan",
    "原交易日 original trading_day",
    "BIN known",
)


ADJUSTMENT_COLUMNS: Final = (
    "差错调整 resolved (Beijing)",
    "差错 exception_id",
    "终端 terminal_id",
    "差错类型 kind",
    "处理 resolution",
    "调整金额 amount",
    "手续费 fee",
)


def statement_csv(statement: Statement) -> str:
    """The statement as CSV: a summary block (its last row says whether the day is
    cleared: ``yes``, the clearing run's figures; ``no``, computed from the records as they
    are now, and they may still change), a blank row, then one row per line."""
    total = statement.total
    arrival = statement.arrival
    rows: list[Sequence[object]] = [
        ("对账单 statement", statement.merchant_id),
        ("交易日 trading_day", statement.trading_day.isoformat()),
        ("结算周期 cycle", statement.terms.cycle.value),
        ("笔数 count", total.count),
        ("交易金额 gross", _yuan(total.gross_fen)),
        ("手续费 fees", _yuan(total.fee_fen)),
        ("差错调整 adjustments", _yuan(statement.adjustment_fen)),
        ("净额 net", _yuan(statement.net_fen)),
        ("到账日 arrival_date", arrival.arrival_date.isoformat()),
        ("暂定 provisional", "yes" if arrival.provisional else "no"),
        ("差错 exceptions", len(statement.exceptions)),
        # Last of the block (a reader of the rows above by place keeps them): whether these
        # are the clearing run's figures or the records' as they are now — the line the
        # text export ends with, a cell here so a program can read it too.
        ("已清算 cleared", "yes" if statement.cleared else "no"),
        (),
        STATEMENT_COLUMNS,
    ]
    for line in statement.lines:
        original = line.original
        rows.append(
            (
                beijing(line.at).strftime(_TIME),
                line.terminal_id,
                f"{line.batch_no:06d}",
                f"{line.stan:06d}",
                line.rrn or "",
                line.kind.value,
                "" if line.reverses is None else line.reverses.value,
                mask_pan(line.pan_masked),
                line.card_class.value,
                _yuan(line.amount_fen),
                _yuan(line.fee_fen),
                _yuan(line.net_fen),
                "" if original is None else f"{original.batch_no:06d}",
                "" if original is None else f"{original.stan:06d}",
                "" if original is None else original.trading_day.isoformat(),
                "yes" if line.bin_known else "no",
            )
        )
    if statement.adjustments:
        rows += [(), ADJUSTMENT_COLUMNS]
        for adjustment in statement.adjustments:
            rows.append(
                (
                    beijing(adjustment.at).strftime(_TIME),
                    adjustment.exception_id,
                    adjustment.terminal_id,
                    adjustment.kind,
                    adjustment.resolution,
                    _yuan(adjustment.amount_fen),
                    _yuan(0),
                )
            )
    if statement.exceptions:
        rows += [(), ("差错 exception_id", "terminal_id", "batch_no", "stan", "kind", "cause",
                      "terminal amount", "host amount", "处理 resolution", "调整 adjustment",
                      "调整日 settled on trading day")]  # fmt: skip
        for record in statement.exceptions:
            rows.append(
                (
                    record.exception_id,
                    record.terminal_id,
                    "" if record.batch_no is None else f"{record.batch_no:06d}",
                    "" if record.stan is None else f"{record.stan:06d}",
                    record.kind,
                    mask_card_numbers(record.cause),
                    "" if record.terminal_amount_fen is None else _yuan(record.terminal_amount_fen),
                    "" if record.host_amount_fen is None else _yuan(record.host_amount_fen),
                    record.resolution or "open",
                    "" if record.settled_on is None else _yuan(record.adjustment_fen),
                    "" if record.settled_on is None else record.settled_on.isoformat(),
                )
            )
    return _csv(rows)


# --- the clearing file -----------------------------------------------------------------

CLEARING_FILE_COLUMNS: Final = (
    "商户 merchant_id",
    "笔数 count",
    "交易金额 gross",
    "手续费 fees",
    "净额 net",  # gross - fees + adjustments: what is paid
    "结算周期 cycle",
    "到账日 arrival_date",
    "暂定 provisional",
    "差错调整 adjustments",  # added after the first: the columns before it kept their places
    # lines priced as credit for want of a BIN entry (the page's "BIN?"): last, likewise
    "BIN未知 unknown_bins",
    # yes: the clearing run's kept figures; no: the records' as they are now (they change
    # while the day trades or until the run) — the line the text ends with; last, likewise
    "已清算 cleared",
)


def _file_row(
    merchant_id: str,
    line_total: Totals,
    adjustment_fen: int,
    arrival: Arrival | None,
    unknown_bins: int,
    *,
    cleared: bool,
) -> list[object]:
    return [
        merchant_id,
        line_total.count,
        _yuan(line_total.gross_fen),
        _yuan(line_total.fee_fen),
        _yuan(line_total.net_fen + adjustment_fen),
        "" if arrival is None else arrival.cycle.value,
        "" if arrival is None else arrival.arrival_date.isoformat(),
        "" if arrival is None else ("yes" if arrival.provisional else "no"),
        _yuan(adjustment_fen),
        unknown_bins,
        "yes" if cleared else "no",
    ]


def clearing_file_csv(document: ClearingFile) -> str:
    """The clearing file as CSV: one row per merchant, then the total."""
    rows: list[Sequence[object]] = [CLEARING_FILE_COLUMNS]
    rows.extend(
        _file_row(
            line.merchant_id, line.total, line.adjustment_fen, line.arrival, line.unknown_bins,
            cleared=document.cleared,
        )
        for line in document.lines
    )  # fmt: skip
    unknown_bins = sum(line.unknown_bins for line in document.lines)
    rows.append(
        _file_row(
            "合计 total", document.total, document.adjustment_fen, None, unknown_bins,
            cleared=document.cleared,
        )
    )  # fmt: skip
    return _csv(rows)


def render_clearing_file(document: ClearingFile) -> str:
    """The clearing file as ``posbatch clearing file`` prints it."""
    total = document.total
    rows = [(line.merchant_id, line.total, line.net_fen) for line in document.lines] + [
        ("total 合计", total, document.net_fen)
    ]
    count_w = _widest((str(row[1].count) for row in rows), 6)
    gross_w = _widest((_yuan(row[1].gross_fen) for row in rows), 13)
    fee_w = _widest((_yuan(row[1].fee_fen) for row in rows), 11)
    net_w = _widest((_yuan(row[2]) for row in rows), 13)

    def figures(name: str, totals: Totals, net_fen: int) -> str:
        return (
            f"{_left(name, 16)} {totals.count:>{count_w}} {_yuan(totals.gross_fen):>{gross_w}} "
            f"{_yuan(totals.fee_fen):>{fee_w}} {_yuan(net_fen):>{net_w}}"
        )

    out = [
        f"清算文件 Clearing file — trading day 交易日 {document.trading_day.isoformat()} "
        f"({_window(document.start, document.end)} Beijing)",
        f"{'merchant_id':<16} {'count':>{count_w}} {'gross':>{gross_w}} {'fees':>{fee_w}} "
        f"{'net':>{net_w}}  cycle  arrival",
    ]
    for line in document.lines:
        flag = " BIN?" if line.unknown_bins else ""
        out.append(
            figures(line.merchant_id, line.total, line.net_fen)
            + f"  {line.arrival.cycle.value:<5}  {line.arrival.arrival_date.isoformat()}"
            + (" 暂定 provisional" if line.arrival.provisional else "")
            + flag
            + (
                f"  差错调整 adjustments {_yuan(line.adjustment_fen)} ({line.adjustments})"
                if line.adjustments
                else ""
            )
        )
    out.append(
        figures("total 合计", total, document.net_fen)
        + (
            f"  差错调整 adjustments {_yuan(document.adjustment_fen)}"
            if document.adjustment_fen
            else ""
        )
    )
    if not document.lines:
        out.append("(no transactions or adjustments that day 当日无交易)")
    return "\n".join(out)
