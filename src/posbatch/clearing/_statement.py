"""The statement (对账单) and the clearing file: pure functions over the host's records.

Theory of operation
-------------------
The input is what the host holds (read by ``posbatch.host.ClearingStore``):
one :class:`ClearingRecord` per sale, void or refund the host approved, with
the moment it was approved, the moment a reversal took it back (if one did),
and for a void or refund its original sale. Which records count on trading
day D (``[start, end)`` from :func:`~posbatch.clearing.trading_day_bounds`):

- a *line*: approved within D and still standing at D's cut-off (never
  reversed, or reversed only after D ended). A voided sale counts (the void
  is its own line, a credit), exactly as the host's settlement totals count
  it;
- an *adjustment*: approved before D and reversed within D — a reversal the
  host applied after the cut-off (the batch was still open). The original's
  statement stays as it was issued; this day's statement takes the amount
  and the fee back (a ``reversal`` line with both signs flipped).

So a statement of a past day never changes, and over all days every approved
fen is counted exactly once.

Signs: sales are positive, voids and refunds negative; a line's fee has the
sign of what the merchant pays (a returned fee is negative); ``net = amount -
fee`` per line. The statement's gross, fees and net are sums over its lines,
so ``fees + net = gross`` holds for every statement and every line.

Resolved exceptions (差错) that move the merchant's money are *adjustment
lines* of the day they were resolved (:mod:`posbatch.clearing._adjustments`):
no fee, so the statement's net is ``gross - fees + adjustments``; the lines'
own totals (``total``) keep ``fees + net = gross``.

The clearing file of a day is one line per merchant (count, gross, fees,
adjustments, net, arrival date) computed by the same per-line arithmetic as the
statements, so the two always agree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, NamedTuple

from posbatch.clearing._adjustments import AdjustmentLine, AdjustmentRecord, adjustment_lines
from posbatch.clearing._calendar import Arrival, trading_day_bounds
from posbatch.clearing._fees import CardClass, CreditFeeRule, returned_fee_fen
from posbatch.clearing._rules import ClearingRules, FeeSchedule, MerchantTerms
from posbatch.errors import ClearingError

__all__ = [
    "BatchLine",
    "BatchRecord",
    "ClearingFile",
    "ClearingFileLine",
    "ClearingRecord",
    "ExceptionRecord",
    "LineKind",
    "OriginalRef",
    "OriginalSale",
    "Repricing",
    "Statement",
    "StatementLine",
    "StatementSummary",
    "SummaryPart",
    "Totals",
    "assemble_statement",
    "build_statement",
    "clearing_file",
    "clearing_file_of",
    "credit_pieces",
    "price_lines",
    "repricing",
    "summarize",
    "summary_parts",
]

# A card number shorter than this is starred whole (wire.mask_pan's rule).
PAN_SHOWN_MIN: Final = 10
_SALE: Final = "sale"
_VOID: Final = "void"
_REFUND: Final = "refund"
_CREDIT_KINDS: Final = frozenset({_VOID, _REFUND})


class LineKind(enum.StrEnum):
    SALE = "sale"
    VOID = "void"
    REFUND = "refund"
    REVERSAL = "reversal"  # an earlier day's line taken back by a reversal after the cut-off

    @property
    def label(self) -> str:
        return _KIND_LABELS[self]


_KIND_LABELS: Final = {
    LineKind.SALE: "消费 sale",
    LineKind.VOID: "撤销 void",
    LineKind.REFUND: "退货 refund",
    LineKind.REVERSAL: "冲正 reversal",
}


# --- the records (input) -------------------------------------------------------------


class OriginalSale(NamedTuple):
    """The sale a void or refund credits."""

    transaction_id: int
    batch_no: int
    stan: int
    amount_fen: int
    card_type: str  # "00" domestic / "01" foreign (wire.CardType)
    pan_masked: str
    approved_at: datetime
    bin8_key: str | None = None  # as ClearingRecord's


class ClearingRecord(NamedTuple):
    """One sale, void or refund the host approved, as clearing reads it."""

    transaction_id: int
    merchant_id: str
    terminal_id: str
    batch_id: int
    batch_no: int
    stan: int
    rrn: str | None
    kind: str  # sale / void / refund (wire.Kind values)
    amount_fen: int
    card_type: str
    pan_masked: str
    approved_at: datetime  # UTC, aware
    reversed_at: datetime | None  # when a reversal took it back (None: it stands)
    original: OriginalSale | None = None  # a void's or refund's sale
    pieces: tuple[tuple[int, int], ...] = ()  # the stretches of the sale it credits (below)
    # The host's keyed hash of the card's first 8 digits (None: a card under 16 digits, or
    # approved before it was kept): what an 8-digit BIN entry is matched by. Never shown.
    bin8_key: str | None = None


class BatchRecord(NamedTuple):
    batch_id: int
    terminal_id: str
    batch_no: int
    state: str  # OPEN / UPLOADING / CLOSED
    opened_at: datetime
    closed_at: datetime | None
    close_reason: str | None  # balanced / uploaded / advanced
    settle_response_code: str | None


class ExceptionRecord(NamedTuple):
    exception_id: int
    merchant_id: str
    terminal_id: str
    batch_no: int | None
    stan: int | None
    kind: str
    cause: str
    terminal_amount_fen: int | None
    host_amount_fen: int | None
    created_at: datetime
    # Where it was settled, as the store knows it now (the statement of the day it was
    # raised says so: exception_settlement). resolution None: still open.
    resolution: str | None = None
    resolved_at: datetime | None = None  # UTC, aware
    adjustment_fen: int = 0  # signed: what its resolution adds to the merchant's net
    settled_on: date | None = None  # the trading day whose statement carries the adjustment


def credit_pieces(
    credit_id: int,
    sale_amount_fen: int,
    siblings: Iterable[tuple[int, int, datetime, datetime | None]],
) -> tuple[tuple[int, int], ...]:
    """The stretches ``(low, high)`` of its sale that credit ``credit_id`` holds.

    ``siblings``: (transaction_id, amount_fen, approved_at, reversed_at) of every credit
    the host approved for the sale, this one included. Replaying them in time order, each
    credit takes the lowest stretches no standing credit holds; a reversal frees them.
    Standing credits therefore hold disjoint pieces of the sale (the fee rule of
    :func:`~posbatch.clearing.returned_fee_fen` rests on it), and what a credit holds is
    fixed when it is approved: a later event never changes a past statement.
    """
    amount_of: dict[int, int] = {}
    events: list[tuple[datetime, int, int]] = []
    for transaction_id, amount_fen, approved_at, reversed_at in siblings:
        if transaction_id != credit_id and reversed_at is not None and reversed_at <= approved_at:
            continue  # its reversal overtook it: it never stood, it holds nothing
        amount_of[transaction_id] = amount_fen
        events.append((approved_at, 1, transaction_id))
        if reversed_at is not None:
            events.append((reversed_at, 0, transaction_id))  # frees before an approval then
    events.sort()
    held: dict[int, list[tuple[int, int]]] = {}
    for _at, is_approval, transaction_id in events:
        if not is_approval:
            held.pop(transaction_id, None)
            continue
        taken = _free_stretches(held.values(), sale_amount_fen, amount_of[transaction_id])
        if transaction_id == credit_id:
            return tuple(taken)
        held[transaction_id] = taken
    raise ClearingError(f"credit {credit_id} is not among its sale's credits")


def _free_stretches(
    held: Iterable[list[tuple[int, int]]], total_fen: int, wanted_fen: int
) -> list[tuple[int, int]]:
    """The lowest ``wanted_fen`` of ``[0, total_fen)`` that no ``held`` stretch covers."""
    taken: list[tuple[int, int]] = []
    position = 0
    for low, high in sorted(piece for pieces in held for piece in pieces):
        if wanted_fen and position < low:
            size = min(low - position, wanted_fen)
            taken.append((position, position + size))
            wanted_fen -= size
        position = max(position, high)
    if wanted_fen and position < total_fen:
        size = min(total_fen - position, wanted_fen)
        taken.append((position, position + size))
        wanted_fen -= size
    if wanted_fen:
        raise ClearingError(f"credits exceed the sale of {total_fen} fen")
    return taken


# --- the statement (output) ----------------------------------------------------------


class OriginalRef(NamedTuple):
    """Where a credit's sale, or a reversed line, was: for people to find it."""

    batch_no: int
    stan: int
    trading_day: date


class StatementLine(NamedTuple):
    transaction_id: int
    at: datetime  # UTC: approval (a reversal line: when the reversal was applied)
    terminal_id: str
    batch_id: int  # the host's own id of the batch (batch numbers wrap)
    batch_no: int
    stan: int
    rrn: str | None
    kind: LineKind
    reverses: LineKind | None  # a reversal line: the kind it takes back
    card_class: CardClass
    bin_known: bool
    pan_masked: str  # first 6 / last 4 only
    amount_fen: int  # signed: sales +, credits -
    fee_fen: int  # signed: what the merchant pays
    net_fen: int  # amount - fee
    original: OriginalRef | None  # a credit's sale; a reversal line's own original line


@dataclass(frozen=True, slots=True)
class Totals:
    count: int = 0
    gross_fen: int = 0
    fee_fen: int = 0
    net_fen: int = 0


@dataclass(frozen=True, slots=True)
class BatchLine:
    """A batch that holds lines of the statement, and how it settled."""

    terminal_id: str
    batch_no: int
    state: str
    close_reason: str | None
    settle_response_code: str | None
    opened_at: datetime
    closed_at: datetime | None
    count: int  # this statement's lines in the batch
    gross_fen: int

    @property
    def settled(self) -> str:
        """How the batch settled, in Chinese and English."""
        if self.state == "CLOSED":
            return _CLOSED_LABELS.get(self.close_reason or "", f"closed ({self.close_reason})")
        if self.state == "UPLOADING":
            return "批上送中 batch upload under way"
        return "未结算 not settled yet"


_CLOSED_LABELS: Final = {
    "balanced": "已结算 对账平 settled, balanced",
    "uploaded": "已结算 批上送后 settled after batch upload",
    "advanced": "后台结批 closed by the back office",
}


@dataclass(frozen=True, slots=True)
class Statement:
    """对账单: one merchant, one trading day."""

    merchant_id: str
    trading_day: date
    start: datetime  # UTC: the trading day is [start, end)
    end: datetime
    lines: tuple[StatementLine, ...]
    by_class: tuple[tuple[CardClass, Totals], ...]
    by_kind: tuple[tuple[LineKind, Totals], ...]
    total: Totals
    arrival: Arrival
    terms: MerchantTerms
    schedule: FeeSchedule | None  # in force that day (None: none, and no line needed one)
    batches: tuple[BatchLine, ...]
    exceptions: tuple[ExceptionRecord, ...]  # 差错 touching money, raised that day
    unknown_bins: int  # lines priced as credit because no BIN entry matched
    cleared: bool = False  # read from the day's clearing run (else computed from the records)
    adjustments: tuple[AdjustmentLine, ...] = ()  # 差错调整 resolved that day (no fee)

    @property
    def gross_fen(self) -> int:
        return self.total.gross_fen

    @property
    def fee_fen(self) -> int:
        return self.total.fee_fen

    @property
    def adjustment_fen(self) -> int:
        return sum(line.amount_fen for line in self.adjustments)

    @property
    def net_fen(self) -> int:
        """What the merchant is paid: gross - fees + adjustments."""
        return self.total.net_fen + self.adjustment_fen


@dataclass(frozen=True, slots=True)
class ClearingFileLine:
    merchant_id: str
    total: Totals  # the transaction lines (fees + net = gross)
    arrival: Arrival
    unknown_bins: int
    adjustment_fen: int = 0  # 差错调整 resolved that day
    adjustments: int = 0  # how many

    @property
    def net_fen(self) -> int:
        """What the merchant is paid: gross - fees + adjustments."""
        return self.total.net_fen + self.adjustment_fen


@dataclass(frozen=True, slots=True)
class ClearingFile:
    """清算文件: every merchant's net of one trading day."""

    trading_day: date
    start: datetime
    end: datetime
    lines: tuple[ClearingFileLine, ...]
    total: Totals
    adjustment_fen: int = 0
    cleared: bool = False  # the clearing run's kept figures (else the records' as they are now)

    @property
    def net_fen(self) -> int:
        """What all merchants are paid: gross - fees + adjustments."""
        return self.total.net_fen + self.adjustment_fen


# --- the arithmetic --------------------------------------------------------------------


class _Price(NamedTuple):
    """What prices one merchant's lines of one trading day."""

    schedule: FeeSchedule | None  # None: none in force (an error once a sale needs it)
    instant: bool
    void_fee: CreditFeeRule
    refund_fee: CreditFeeRule


class _Pricer:
    """The fee of each record under ``rules``; caches what is the same for many records."""

    def __init__(self, rules: ClearingRules) -> None:
        self.rules = rules
        self._classes: dict[date, dict[tuple[str, str, str | None], tuple[CardClass, bool]]] = {}
        self._days: dict[datetime, date] = {}
        self._prices: dict[date, dict[str, _Price]] = {}

    def trading_day(self, moment: datetime) -> date:
        day = self._days.get(moment)
        if day is None:
            day = self._days[moment] = self.rules.trading_day(moment)
        return day

    def classes_on(self, day: date) -> dict[tuple[str, str, str | None], tuple[CardClass, bool]]:
        """(card_type, BIN, 8-digit key) → (card class, BIN known) on ``day``, as far as
        looked up."""
        return self._classes.setdefault(day, {})

    def prices_on(self, day: date) -> dict[str, _Price]:
        """merchant_id → its price on ``day``, as far as looked up."""
        return self._prices.setdefault(day, {})

    def card_class(
        self, card_type: str, pan_masked: str, day: date, bin8_key: str | None = None
    ) -> tuple[CardClass, bool]:
        classes = self.classes_on(day)
        if bin8_key is not None and not self.rules.bins8_in_force(day):
            bin8_key = None  # one cache entry per 6-digit BIN, as before 8-digit BINs
        key = (card_type, pan_masked[:6], bin8_key)
        found = classes.get(key)
        if found is None:
            found = classes[key] = self.rules.card_class(card_type, pan_masked, day, bin8_key)
        return found

    def price(self, merchant_id: str, day: date) -> _Price:
        prices = self.prices_on(day)
        found = prices.get(merchant_id)
        if found is None:
            terms = self.rules.terms_for(merchant_id, day)
            try:
                schedule: FeeSchedule | None = self.rules.schedule_for(merchant_id, day)
            except ClearingError:
                schedule = None
            instant = self.rules.arrival(merchant_id, day).instant
            found = _Price(schedule, instant, terms.void_fee, terms.refund_fee)
            prices[merchant_id] = found
        return found

    def sale_fee(self, merchant_id: str, day: date, card_class: CardClass, amount_fen: int) -> int:
        price = self.price(merchant_id, day)
        # None: none in force — schedule_for raises the error that says what to set
        schedule = price.schedule or self.rules.schedule_for(merchant_id, day)
        return schedule.sale_fee_fen(amount_fen, card_class, instant=price.instant)

    def money(self, record: ClearingRecord, day: date) -> tuple[int, int, CardClass, bool]:
        """(signed amount, signed fee, card class, BIN known) of ``record`` as a line of
        its own trading day ``day``."""
        card_class, known = self.card_class(
            record.card_type, record.pan_masked, day, record.bin8_key
        )
        kind = record.kind
        if kind == _SALE:
            fee = self.sale_fee(record.merchant_id, day, card_class, record.amount_fen)
            return record.amount_fen, fee, card_class, known
        if kind not in _CREDIT_KINDS:
            raise ClearingError(f"transaction {record.transaction_id}: a {kind} is not cleared")
        original = record.original
        if original is None:
            raise ClearingError(
                f"{kind} {record.transaction_id} of merchant {record.merchant_id} has no "
                "original sale in the host's records"
            )
        price = self.price(record.merchant_id, day)
        rule = price.void_fee if kind == _VOID else price.refund_fee
        if rule is CreditFeeRule.KEPT:
            return -record.amount_fen, 0, card_class, known
        sale_day = self.trading_day(original.approved_at)
        sale_class, _known = self.card_class(
            original.card_type, original.pan_masked, sale_day, original.bin8_key
        )
        sale_fee = self.sale_fee(record.merchant_id, sale_day, sale_class, original.amount_fen)
        returned = returned_fee_fen(sale_fee, original.amount_fen, record.pieces)
        return -record.amount_fen, -returned, card_class, known


def price_lines(
    day: date,
    records: Iterable[ClearingRecord],
    rules: ClearingRules,
    *,
    merchant_ids: Iterable[str] | None = None,
) -> dict[str, list[StatementLine]]:
    """Every line of trading day ``day``, priced, per merchant, in time order.

    The module docstring says which records count; ``merchant_ids`` limits the run to
    those merchants (each gets a list, empty if nothing counts).
    """
    start, end = trading_day_bounds(day, rules.cutoffs)
    pricer = _Pricer(rules)
    merchants: dict[str, list[tuple[datetime, int, StatementLine]]] = {}
    only = None if merchant_ids is None else frozenset(merchant_ids)
    for merchant_id in only or ():
        merchants[merchant_id] = []
    reversal, sale = LineKind.REVERSAL, LineKind.SALE
    make_line = StatementLine._make
    classes = pricer.classes_on(day)
    bins8 = rules.bins8_in_force(day)  # else every card is told by its first 6 digits
    prices = pricer.prices_on(day)
    for record in records:
        approved_at = record.approved_at
        reversed_at = record.reversed_at
        if start <= approved_at < end and (reversed_at is None or reversed_at >= end):
            adjustment, at, own_day = False, approved_at, day
        elif reversed_at is not None and approved_at < start <= reversed_at < end:
            adjustment, at, own_day = True, reversed_at, pricer.trading_day(approved_at)
        else:
            continue
        merchant_id = record.merchant_id
        lines = merchants.get(merchant_id)
        if lines is None:
            if only is not None:
                continue
            lines = merchants[merchant_id] = []
        kind = _KINDS[record.kind]
        if kind is sale and not adjustment:
            # the common case, inline: a sale priced on the day itself
            bin8 = record.bin8_key if bins8 else None
            card_class, known = classes.get(
                (record.card_type, record.pan_masked[:6], bin8)
            ) or pricer.card_class(record.card_type, record.pan_masked, day, bin8)
            price = prices.get(merchant_id) or pricer.price(merchant_id, day)
            schedule = price.schedule or pricer.rules.schedule_for(merchant_id, day)
            amount = record.amount_fen
            fee = schedule.sale_fee_fen(amount, card_class, instant=price.instant)
            reference: OriginalRef | None = None
            line_kind = kind
        else:
            amount, fee, card_class, known = pricer.money(record, own_day)
            original = record.original
            if adjustment:
                amount, fee, line_kind = -amount, -fee, reversal
                reference = OriginalRef(record.batch_no, record.stan, own_day)
            else:
                line_kind = kind
                reference = None
                if original is not None:
                    reference = OriginalRef(
                        original.batch_no, original.stan, pricer.trading_day(original.approved_at)
                    )
        line = make_line((
            record.transaction_id, at, record.terminal_id, record.batch_id, record.batch_no,
            record.stan, record.rrn, line_kind, kind if adjustment else None, card_class, known,
            _masked(record.pan_masked), amount, fee, amount - fee, reference,
        ))  # fmt: skip
        lines.append((at, record.transaction_id, line))
    result = {}
    for merchant_id, placed in merchants.items():
        placed.sort()  # by time, then transaction id (unique: lines are never compared)
        result[merchant_id] = [line for _at, _id, line in placed]
    return result


def _masked(pan_masked: str) -> str:
    """The host keeps cards masked already; mask again whatever a row holds (6 / 4, no more)."""
    if len(pan_masked) < PAN_SHOWN_MIN:
        return "*" * len(pan_masked)
    return pan_masked[:6] + "*" * (len(pan_masked) - 10) + pan_masked[-4:]


class SummaryPart(NamedTuple):
    """The sums of one merchant's lines of one card class and kind (what a cleared day keeps)."""

    card_class: CardClass
    kind: LineKind
    totals: Totals
    unknown_bins: int


def summary_parts(lines: Iterable[StatementLine]) -> list[SummaryPart]:
    """``lines`` summed per (card class, kind)."""
    sums: dict[tuple[CardClass, LineKind], list[int]] = {}
    for line in lines:
        key = (line.card_class, line.kind)
        part = sums.get(key)
        if part is None:
            part = sums[key] = [0, 0, 0, 0, 0]
        part[0] += 1
        part[1] += line.amount_fen
        part[2] += line.fee_fen
        part[3] += line.net_fen
        part[4] += not line.bin_known
    return [
        SummaryPart(card_class, kind, Totals(*part[:4]), part[4])
        for (card_class, kind), part in sums.items()
    ]


@dataclass(frozen=True, slots=True)
class StatementSummary:
    """A statement's figures without its lines: what a statement run gives per merchant."""

    merchant_id: str
    trading_day: date
    by_class: tuple[tuple[CardClass, Totals], ...]
    by_kind: tuple[tuple[LineKind, Totals], ...]
    total: Totals
    arrival: Arrival
    unknown_bins: int
    adjustment_fen: int = 0  # 差错调整 resolved that day

    @property
    def net_fen(self) -> int:
        """What the merchant is paid: gross - fees + adjustments."""
        return self.total.net_fen + self.adjustment_fen


def _sum(totals: Iterable[Totals]) -> Totals:
    count = gross = fee = net = 0
    for part in totals:
        count += part.count
        gross += part.gross_fen
        fee += part.fee_fen
        net += part.net_fen
    return Totals(count, gross, fee, net)


def summarize(
    merchant_id: str,
    day: date,
    parts: Iterable[SummaryPart],
    rules: ClearingRules,
    *,
    adjustment_fen: int = 0,
    arrival: Arrival | None = None,
) -> StatementSummary:
    """The figures of ``merchant_id``'s statement of ``day`` from its per-class-and-kind sums
    and the sum of its adjustments. ``arrival``: the one a clearing run kept (else computed
    from ``rules``)."""
    # [count, gross, fee, net] per card class, per kind, and over all
    by_class = {card_class: [0, 0, 0, 0] for card_class in _CLASSES}
    by_kind = {kind: [0, 0, 0, 0] for kind in _LINE_KINDS}
    total = [0, 0, 0, 0]
    unknown_bins = 0
    for part in parts:
        totals = part.totals
        for sums in (by_class[part.card_class], by_kind[part.kind], total):
            sums[0] += totals.count
            sums[1] += totals.gross_fen
            sums[2] += totals.fee_fen
            sums[3] += totals.net_fen
        unknown_bins += part.unknown_bins
    return StatementSummary(
        merchant_id=merchant_id,
        trading_day=day,
        by_class=tuple((key, Totals(*sums)) for key, sums in by_class.items()),
        by_kind=tuple((key, Totals(*sums)) for key, sums in by_kind.items()),
        total=Totals(*total),
        arrival=rules.arrival(merchant_id, day) if arrival is None else arrival,
        unknown_bins=unknown_bins,
        adjustment_fen=adjustment_fen,
    )


def assemble_statement(
    merchant_id: str,
    day: date,
    lines: Sequence[StatementLine],
    rules: ClearingRules,
    *,
    batches: Iterable[BatchRecord] = (),
    exceptions: Iterable[ExceptionRecord] = (),
    cleared: bool = False,
    adjustments: Iterable[AdjustmentLine] = (),
    arrival: Arrival | None = None,
) -> Statement:
    """The statement of ``merchant_id`` for ``day`` from its priced ``lines`` and its
    ``adjustments`` (computed now by :func:`price_lines` and
    :func:`~posbatch.clearing.adjustment_lines`, or kept by a clearing run — ``cleared`` —
    the same either way). ``arrival``: the one the clearing run kept (a cleared day's
    arrival never moves); else computed from ``rules``."""
    start, end = trading_day_bounds(day, rules.cutoffs)
    summary = summarize(merchant_id, day, summary_parts(lines), rules, arrival=arrival)
    per_batch: dict[int, list[int]] = {}
    for line in lines:
        sums = per_batch.get(line.batch_id)
        if sums is None:
            sums = per_batch[line.batch_id] = [0, 0]
        sums[0] += 1
        sums[1] += line.amount_fen
    batch_lines = [
        BatchLine(
            batch.terminal_id,
            batch.batch_no,
            batch.state,
            batch.close_reason,
            batch.settle_response_code,
            batch.opened_at,
            batch.closed_at,
            per_batch[batch.batch_id][0],
            per_batch[batch.batch_id][1],
        )
        for batch in {batch.batch_id: batch for batch in batches}.values()
        if batch.batch_id in per_batch
    ]
    batch_lines.sort(key=lambda line: (line.terminal_id, line.opened_at, line.batch_no))
    money_exceptions = sorted(
        (
            exception
            for exception in exceptions
            if exception.merchant_id == merchant_id
            and start <= exception.created_at < end
            and (exception.terminal_amount_fen is not None or exception.host_amount_fen is not None)
        ),
        key=lambda exception: exception.exception_id,
    )
    try:
        schedule: FeeSchedule | None = rules.schedule_for(merchant_id, day)
    except ClearingError:
        schedule = None  # fine while no line needed it (a line would have raised)
    return Statement(
        merchant_id=merchant_id,
        trading_day=day,
        start=start,
        end=end,
        lines=tuple(lines),
        by_class=summary.by_class,
        by_kind=summary.by_kind,
        total=summary.total,
        arrival=summary.arrival,
        terms=rules.terms_for(merchant_id, day),
        schedule=schedule,
        batches=tuple(batch_lines),
        exceptions=tuple(money_exceptions),
        unknown_bins=summary.unknown_bins,
        cleared=cleared,
        adjustments=tuple(sorted(adjustments, key=lambda line: (line.at, line.exception_id))),
    )


def build_statement(
    merchant_id: str,
    day: date,
    records: Iterable[ClearingRecord],
    rules: ClearingRules,
    *,
    batches: Iterable[BatchRecord] = (),
    exceptions: Iterable[ExceptionRecord] = (),
    adjustments: Iterable[AdjustmentRecord] = (),
) -> Statement:
    """The statement of ``merchant_id`` for trading day ``day``, computed from ``records``
    and the resolved exceptions ``adjustments``.

    ``records`` and ``adjustments`` may hold more than the day (other days, other
    merchants): only what counts on the day for the merchant is taken (the module
    docstring says what).
    """
    lines = price_lines(day, records, rules, merchant_ids=(merchant_id,))[merchant_id]
    adjusted = adjustment_lines(day, adjustments, rules.cutoffs, merchant_ids=(merchant_id,))
    return assemble_statement(
        merchant_id, day, lines, rules, batches=batches, exceptions=exceptions,
        adjustments=adjusted[merchant_id],
    )  # fmt: skip


_KINDS: Final = {kind.value: kind for kind in LineKind}
# Iterating an Enum class is slow (it rebuilds the member list): once, here.
_CLASSES: Final = tuple(CardClass)
_LINE_KINDS: Final = tuple(LineKind)


def clearing_file_of(
    day: date,
    parts_of: Mapping[str, Iterable[SummaryPart]],
    rules: ClearingRules,
    adjustments_of: Mapping[str, Sequence[AdjustmentLine]] | None = None,
    arrivals_of: Mapping[str, Arrival] | None = None,
    *,
    cleared: bool = False,
) -> ClearingFile:
    """The clearing file of ``day`` from each merchant's summary parts and adjustment lines
    (a merchant with only adjustments has a line too). ``arrivals_of``: the arrivals a
    clearing run kept, per merchant (a merchant without one: computed from ``rules``).
    ``cleared``: the parts are what the clearing run kept."""
    start, end = trading_day_bounds(day, rules.cutoffs)
    adjustments_of = adjustments_of or {}
    arrivals_of = arrivals_of or {}
    lines = []
    for merchant_id in sorted(set(parts_of) | set(adjustments_of)):
        adjusted = adjustments_of.get(merchant_id, ())
        adjustment = sum(line.amount_fen for line in adjusted)
        summary = summarize(
            merchant_id, day, parts_of.get(merchant_id, ()), rules, adjustment_fen=adjustment,
            arrival=arrivals_of.get(merchant_id),
        )  # fmt: skip
        lines.append(
            ClearingFileLine(
                merchant_id, summary.total, summary.arrival, summary.unknown_bins, adjustment,
                len(adjusted),
            )
        )  # fmt: skip
    total = _sum(line.total for line in lines)
    return ClearingFile(
        day, start, end, tuple(lines), total, sum(line.adjustment_fen for line in lines), cleared
    )


def clearing_file(
    day: date,
    records: Iterable[ClearingRecord],
    rules: ClearingRules,
    adjustments: Iterable[AdjustmentRecord] = (),
) -> ClearingFile:
    """The clearing file of trading day ``day``, computed from ``records`` and the resolved
    exceptions ``adjustments``: one line per merchant with anything on it (the same lines
    as the statements)."""
    lines_of = price_lines(day, records, rules)
    return clearing_file_of(
        day,
        {merchant_id: summary_parts(lines) for merchant_id, lines in lines_of.items()},
        rules,
        adjustment_lines(day, adjustments, rules.cutoffs),
    )


@dataclass(frozen=True, slots=True)
class Repricing:
    """What a change of rules would do to the lines of a trading day already made: how many
    would be priced (or paid) differently, their gross, their fees before and after, and
    whose they are."""

    trading_day: date
    count: int
    gross_fen: int
    fee_before_fen: int
    fee_after_fen: int
    merchant_ids: tuple[str, ...]


def _priced(
    day: date, records: Sequence[ClearingRecord], rules: ClearingRules
) -> dict[str, list[StatementLine] | None]:
    """Per merchant, its lines of ``day`` priced under ``rules`` — None for a merchant whose
    lines cannot be priced (no fee schedule in force: nothing was ever priced)."""
    merchant_ids = sorted({record.merchant_id for record in records})
    try:
        return dict(price_lines(day, records, rules, merchant_ids=merchant_ids))
    except ClearingError:
        found: dict[str, list[StatementLine] | None] = {}
        for merchant_id in merchant_ids:
            try:
                own = price_lines(day, records, rules, merchant_ids=(merchant_id,))
                found[merchant_id] = own[merchant_id]
            except ClearingError:
                found[merchant_id] = None
        return found


def repricing(
    day: date, records: Iterable[ClearingRecord], before: ClearingRules, after: ClearingRules
) -> Repricing:
    """The lines of trading day ``day`` (from ``records``) that ``after`` prices or pays
    otherwise than ``before``: a line whose fee or net differs, and every line of a merchant
    whose arrival (cycle) differs. A merchant ``before`` cannot price (no schedule) is not
    re-priced: it was never priced."""
    every = list(records)
    priced_before = _priced(day, every, before)
    priced_after = _priced(day, every, after)
    count = gross = fee_before = fee_after = 0
    merchant_ids: list[str] = []
    for merchant_id, lines in sorted(priced_before.items()):
        changed_lines = priced_after.get(merchant_id)
        if lines is None or changed_lines is None:
            continue
        moved = bool(lines) and before.arrival(merchant_id, day) != after.arrival(merchant_id, day)
        old_of = {line.transaction_id: line for line in lines}
        touched = 0
        for line in changed_lines:
            old = old_of.get(line.transaction_id)
            if moved or old is None or (old.fee_fen, old.net_fen) != (line.fee_fen, line.net_fen):
                touched += 1
                gross += line.amount_fen
                fee_before += 0 if old is None else old.fee_fen
                fee_after += line.fee_fen
        if touched:
            count += touched
            merchant_ids.append(merchant_id)
    return Repricing(day, count, gross, fee_before, fee_after, tuple(merchant_ids))
