"""Receipts (签购单) and the settlement report, as text for 80 or 32 columns.

Labels are Chinese and English; widths count a Chinese character as two
columns, as thermal printers do. Amounts are yuan with two decimals from fen.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from posbatch.batch.codes import describe
from posbatch.batch.model import SettlementTotals, shown_at
from posbatch.batch.money import format_fen
from posbatch.terminal._journal import BatchRow, StateRow, TxnRow, TxnState
from posbatch.wire import decode_totals

__all__ = ["RECEIPT_WIDTHS", "render_receipt", "render_settlement_report", "shown_stored"]

RECEIPT_WIDTHS: Final = (32, 80)
_KIND_LABELS: Final = {"sale": "消费 SALE", "void": "消费撤销 VOID", "refund": "退货 REFUND"}


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pair(label: str, value: str, width: int) -> str:
    gap = width - _columns(label) - _columns(value)
    if gap >= 1:
        return label + " " * gap + value
    return label + "\n" + " " * max(0, width - _columns(value)) + value


def _center(text: str, width: int) -> str:
    pad = max(0, width - _columns(text))
    return " " * (pad // 2) + text


def shown_stored(stored: str, *, seconds: bool = False) -> str:
    """A journal time (ISO, as stored: UTC) as people read it — Beijing time, to the
    minute or the second (:func:`~posbatch.batch.model.shown_at`)."""
    return shown_at(datetime.fromisoformat(stored), seconds=seconds)


def _check_width(width: int) -> None:
    if width not in RECEIPT_WIDTHS:
        raise ValueError(f"receipt width is one of {RECEIPT_WIDTHS}, not {width}")


def render_receipt(
    row: TxnRow, state: StateRow, *, width: int = 32, notes: Sequence[str] = ()
) -> str:
    """One transaction's receipt (merchant copy); ``notes`` are printed under the result
    (e.g. ``Terminal.receipt_notes``: a full batch settled by itself before it)."""
    _check_width(width)
    rule = "-" * width
    amount = format_fen(-row.amount_fen if row.kind != "sale" else row.amount_fen)
    when = shown_stored(row.created_at, seconds=True)
    if row.host_date and row.host_time:
        when = f"{row.host_date[:2]}-{row.host_date[2:]} {row.host_time[:2]}:{row.host_time[2:4]}"
        when += f":{row.host_time[4:]}"
    lines = [
        _center("签购单 POS SALES SLIP", width),
        rule,
        _pair("商户号 MERCHANT", state.merchant_id, width),
        _pair("终端号 TERMINAL", state.terminal_id, width),
        _pair("批次号 BATCH", f"{row.batch_no:06d}", width),
        _pair("流水号 STAN", f"{row.stan:06d}", width),
        _pair("卡号 CARD", row.pan_masked, width),
        _pair("交易类型 TYPE", _KIND_LABELS.get(row.kind, row.kind), width),
        _pair("金额 AMOUNT RMB", amount, width),
        _pair("参考号 REF NO", row.rrn or "-", width),
        _pair("授权码 AUTH", row.auth_code or "-", width),
        _pair("日期时间 DATE", when, width),
    ]
    if row.original_stan is not None:
        lines.append(
            _pair(
                "原交易 ORIGINAL",
                f"{row.original_batch_no or 0:06d}/{row.original_stan:06d}",
                width,
            )
        )
    if row.training:
        lines.append(_center("*** 培训模式 TRAINING — 非真实交易 ***", width))
    elif row.state in TxnState.COUNTED:
        lines.append(_pair("结果 RESULT", "00 交易成功 APPROVED", width))
    else:
        result = describe(row.response_code) if row.response_code else row.state
        lines.append("结果 RESULT: " + result + f" ({row.state})")
    lines.extend(notes)
    lines += [rule, "持卡人签名 CARDHOLDER SIGNATURE", "", rule]
    return "\n".join(lines) + "\n"


def _totals_lines(label: str, totals: SettlementTotals | None, width: int) -> list[str]:
    if totals is None:
        return [_pair(label, "-", width)]
    lines = [label]
    for name, half in (("内卡 DOM", totals.domestic), ("外卡 FGN", totals.foreign)):
        debit = f"{half.debit_count} / {format_fen(half.debit_amount_fen)}"
        credit = f"{half.credit_count} / {format_fen(half.credit_amount_fen)}"
        lines.append(_pair(f" {name} 借记 DR", debit, width))
        lines.append(_pair(f" {name} 贷记 CR", credit, width))
    return lines


def render_settlement_report(
    batch: BatchRow,
    rows: list[TxnRow],
    state: StateRow,
    *,
    exceptions: list[str] | None = None,
    width: int = 32,
) -> str:
    """结算单: the batch's totals, balanced or not, uploads, and what went wrong."""
    _check_width(width)
    rule = "-" * width
    terminal = decode_totals(batch.terminal_totals) if batch.terminal_totals else None
    host = decode_totals(batch.host_totals) if batch.host_totals else None
    if batch.balanced is None:
        verdict = "未结算 NOT SETTLED" if batch.close_reason is None else "未对账 NOT COMPARED"
    else:
        verdict = "对账平 BALANCED" if batch.balanced else "对账不平 NOT BALANCED"
    counted = [row for row in rows if row.counted]
    lines = [
        _center("结算单 SETTLEMENT REPORT", width),
        rule,
        _pair("商户号 MERCHANT", state.merchant_id, width),
        _pair("终端号 TERMINAL", state.terminal_id, width),
        _pair("批次号 BATCH", f"{batch.batch_no:06d}", width),
        _pair("开始 OPENED", shown_stored(batch.opened_at), width),
        _pair(
            "关闭 CLOSED", "-" if batch.closed_at is None else shown_stored(batch.closed_at), width
        ),
        _pair("状态 STEP", batch.step, width),
        _pair("结果 RESULT", verdict, width),
        _pair("关闭原因 CLOSED BY", batch.close_reason or "-", width),
        _pair("笔数 APPROVED", str(len(counted)), width),
        _pair("批上送 UPLOADED", f"{batch.uploaded_count} ({batch.upload_messages} msg)", width),
        *_totals_lines("终端 TERMINAL TOTALS", terminal, width),
        *_totals_lines("主机 HOST TOTALS", host, width),
    ]
    if exceptions:
        lines.append("差错 EXCEPTIONS")
        lines.extend(" " + item for item in exceptions)
    lines.append(rule)
    return "\n".join(lines) + "\n"
