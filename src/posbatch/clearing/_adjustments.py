"""Adjustments (差错调整): what a resolved exception does to a merchant's money.

Theory of operation
-------------------
The back office resolves an exception (差错) with a resolution and, when it moves
money, an amount in fen (``posbatch.backoffice``). Clearing turns each resolution
that moves *the merchant's* money into an **adjustment line** of the merchant's
statement and of the clearing file:

- on the trading day of the moment it was **resolved** (``trading_day(resolved_at)``
  with the acquirer's cut-off schedule) — not the day of the exception nor of its
  transaction: a day already cleared never changes, so a resolution made after it
  can only count on the day it was made;
- signed by :data:`ADJUSTMENT_SIGNS`: ``credit-merchant`` pays the merchant
  (+amount), ``debit-merchant`` takes back (−amount), ``refund-cardholder`` returns
  the merchant's money to the cardholder (−amount); ``write-off`` (the acquirer
  bears it) and ``confirm-host`` (nothing moves) do not touch the merchant's money
  and make **no line** (the exception itself is listed on the statement of the day
  it was raised);
- **no fee**: an adjustment corrects money that was (or should have been) priced
  already on its transaction's own day; pricing it again would charge twice.

So a statement's net = gross − fees + adjustments, in integer fen, and each
resolution counts once: a resolution is final (the back office refuses to resolve
an exception twice) and a clearing run keeps each exception's adjustment once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Final, NamedTuple

from posbatch.batch.limits import AMOUNT_FEN_MAX  # what field 4 carries: no resolution moves more
from posbatch.clearing._calendar import CutoffSchedule, trading_day_bounds
from posbatch.errors import ClearingError

__all__ = [
    "ADJUSTMENT_LABELS",
    "ADJUSTMENT_SIGNS",
    "AdjustmentLine",
    "AdjustmentRecord",
    "adjustment_fen",
    "adjustment_lines",
]

# resolution → sign of what it does to the merchant's net (0: not the merchant's money).
# The resolutions are posbatch.backoffice.Resolution's values (clearing imports no back office).
ADJUSTMENT_SIGNS: Final[dict[str, int]] = {
    "credit-merchant": 1,  # 补付商户: paid to the merchant
    "debit-merchant": -1,  # 扣回商户: taken back from the merchant
    "refund-cardholder": -1,  # 退款给持卡人: the merchant's money goes back to the cardholder
    "write-off": 0,  # 核销: the acquirer bears it
    "confirm-host": 0,  # 以主机为准: nothing moves
}
ADJUSTMENT_LABELS: Final[dict[str, str]] = {
    "credit-merchant": "补付商户 credit",
    "debit-merchant": "扣回商户 debit",
    "refund-cardholder": "退款持卡人 refund to cardholder",
    "write-off": "核销 write-off",
    "confirm-host": "以主机为准 confirm host",
}


class AdjustmentRecord(NamedTuple):
    """A resolved exception, as clearing reads it."""

    exception_id: int
    merchant_id: str
    terminal_id: str
    kind: str  # the exception's kind (host-only, amount-differs, ...)
    resolution: str
    amount_fen: int | None  # as resolved: unsigned; None for a resolution that moves nothing
    resolved_at: datetime  # UTC, aware


class AdjustmentLine(NamedTuple):
    """An adjustment on a statement: no fee, so its net is its amount."""

    exception_id: int
    at: datetime  # UTC: when it was resolved
    terminal_id: str
    kind: str  # the exception's kind
    resolution: str
    amount_fen: int  # signed: what it adds to the merchant's net


def adjustment_fen(resolution: str, amount_fen: int | None) -> int:
    """What ``resolution`` of ``amount_fen`` adds to the merchant's net (signed fen)."""
    sign = ADJUSTMENT_SIGNS.get(resolution)
    if sign is None:
        raise ClearingError(f"resolution {resolution!r} is not one clearing knows")
    if sign == 0:
        return 0
    if amount_fen is None or not 0 < amount_fen <= AMOUNT_FEN_MAX:
        raise ClearingError(f"resolution {resolution!r} needs an amount of 0.01 and more")
    return sign * amount_fen


def adjustment_lines(
    day: date,
    records: Iterable[AdjustmentRecord],
    cutoffs: CutoffSchedule,
    *,
    merchant_ids: Iterable[str] | None = None,
) -> dict[str, list[AdjustmentLine]]:
    """The adjustment lines of trading day ``day`` per merchant, in time order.

    ``records`` may hold other days and merchants: only resolutions made within ``day``
    that move the merchant's money count. ``merchant_ids`` limits the result to those
    merchants (each gets a list, empty if nothing counts).
    """
    start, end = trading_day_bounds(day, cutoffs)
    only = None if merchant_ids is None else frozenset(merchant_ids)
    found: dict[str, list[AdjustmentLine]] = {merchant_id: [] for merchant_id in only or ()}
    seen: set[int] = set()
    for record in records:
        if not start <= record.resolved_at < end:
            continue
        if only is not None and record.merchant_id not in only:
            continue
        signed = adjustment_fen(record.resolution, record.amount_fen)
        if signed == 0:
            continue
        if record.exception_id in seen:
            raise ClearingError(f"exception #{record.exception_id} is resolved twice")
        seen.add(record.exception_id)
        found.setdefault(record.merchant_id, []).append(
            AdjustmentLine(
                record.exception_id,
                record.resolved_at,
                record.terminal_id,
                record.kind,
                record.resolution,
                signed,
            )
        )
    for lines in found.values():
        lines.sort(key=lambda line: (line.at, line.exception_id))
    return found
