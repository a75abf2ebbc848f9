"""Returns of a checkout order: void or refund through the terminal, goods back to stock.

Theory of operation
-------------------
A customer brings goods back with the receipt: the cashier scans the
receipt's barcode (or types its number), picks the lines and quantities, and
the money goes back to the card through the terminal engine — a void
(消费撤销) when the whole order comes back while its sale is still in the
terminal's open batch and nothing was refunded yet, a refund (退货) of the
returned lines' amount otherwise. The order of writes is the one checkout
uses for sales, so money and stock agree whatever dies when:

1. the back office writes the return *pending* with its lines, quantities
   and amount (:func:`plan_return` decides what may come back), and gives
   it a return number ``RECEIPT-Rn`` (its receipt's number with the mark
   :data:`RECEIPT_MARK`, even for a receipt printed without it);
2. the terminal journals the void/refund with that return number as its
   reference, then sends it;
3. approved → the back office completes the return in one transaction:
   stock movements back (to quarantine when the lot is recalled or the
   cashier puts the goods aside), serials and traceability codes free again,
   order lines marked, the order voided / part-refunded / refunded; declined
   → the return fails and nothing moves. A void the host did not answer is
   reversed by the terminal (the return fails); a refund it did not answer is
   resent as is by the terminal, so the return stays pending.

A return left pending by a crash is finished by
``posbatch.catalog.payer.recover_pending_orders`` from the journal row that
carries its return number. A void or refund made outside checkout
(``posbatch terminal void|refund`` of a sale that paid an order) is found in
the journal by its original sale and recorded the same way (a partial
refund of unknown lines is recorded as money only, and said so).

Return states (table :data:`RETURN_TRANSITIONS`)::

    pending --approved--> done
    pending --failed--> failed
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from posbatch.batch.money import format_fen
from posbatch.catalog._checkout import LINE_QUANTITY_MAX, Payment
from posbatch.errors import CheckoutRefused, Declined, HostUnreachable, IllegalTransition

__all__ = [
    "RECEIPT_MARK",
    "RECEIPT_SCAN_LENGTH_MAX",
    "RETURNABLE_STATUSES",
    "RETURN_TRANSITIONS",
    "OpenReturn",
    "OrderDetail",
    "OrderLineView",
    "Refunder",
    "ReturnBook",
    "ReturnKind",
    "ReturnLine",
    "ReturnPending",
    "ReturnPlan",
    "ReturnReceipt",
    "ReturnView",
    "next_return_status",
    "parse_receipt_scan",
    "plan_return",
    "readable_receipt_no",
    "receipt_no_forms",
    "receipt_number",
    "render_return_receipt",
    "return_number",
    "return_order",
    "summarize_lines",
]

RETURN_TRANSITIONS: dict[tuple[str, str], str] = {
    ("pending", "approved"): "done",
    ("pending", "failed"): "failed",
}
RETURNABLE_STATUSES = frozenset({"paid", "part_refunded"})
RECEIPT_SCAN_LENGTH_MAX = 64
RECEIPT_MARK = "N"
"""The letter between a receipt number's terminal ID and its order number
(``10000001-N00000042``). Without it the 8 + 8 digits of ``10000001-00000042`` (the form
printed until 2026-12) are what a card typed in two groups looks like, and the card-number
net (:func:`posbatch.batch.cards.mask_card_numbers`) masks them on every page, error and
log line. N is no digit's look-alike (an S is read as 5, an O as 0, a B as 8 off paper)."""
# A receipt number: a terminal ID (8 characters), '-', the order number with the mark (the
# form printed now) or without it (the old form, still on paper and in stored orders); a
# return number is its receipt's number and ``-Rn``.
_RECEIPT_NO = re.compile(r"(?P<terminal>[ -~]{8})-(?P<mark>[Nn]?)(?P<order>\d{8,})")
_RETURN_SUFFIX = re.compile(r"-R\d+")
_RECEIPT_SYMBOLOGIES = ("]C0", "]Q1", "]d1", "]A0")
"""What a receipt's barcode may arrive as: Code 128, QR, DataMatrix, Code 39."""


def next_return_status(status: str, event: str) -> str:
    """The return's status after ``event``; :class:`IllegalTransition` if the table forbids it."""
    try:
        return RETURN_TRANSITIONS[status, event]
    except KeyError:
        raise IllegalTransition("return", status, event) from None


class ReturnKind(StrEnum):
    VOID = "void"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class ReturnLine:
    """What comes back: ``quantity`` units of receipt line ``line_no`` (of lot ``lot_no``)."""

    line_no: int
    quantity: int
    lot_no: str | None = None


@dataclass(frozen=True, slots=True)
class OrderLineView:
    """One stored row of an order (a receipt line split per lot) and how much came back."""

    order_line_id: int
    line_no: int
    gtin: str
    product_name: str
    price_fen: int
    lot_no: str | None
    quantity: int
    returned: int
    serial: str | None = None
    trace_code: str | None = None
    expiry_scanned: dt.date | None = None

    @property
    def remaining(self) -> int:
        return self.quantity - self.returned

    def to_json(self) -> dict[str, Any]:
        return {
            "order_line_id": self.order_line_id,
            "line_no": self.line_no,
            "gtin": self.gtin,
            "product_name": self.product_name,
            "price_fen": self.price_fen,
            "lot_no": self.lot_no,
            "quantity": self.quantity,
            "returned": self.returned,
            "serial": self.serial,
            "trace_code": self.trace_code,
            "expiry_scanned": self.expiry_scanned.isoformat() if self.expiry_scanned else None,
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> OrderLineView:
        expiry = item.get("expiry_scanned")
        return cls(
            int(item["order_line_id"]),
            int(item["line_no"]),
            str(item["gtin"]),
            str(item["product_name"]),
            int(item["price_fen"]),
            None if item["lot_no"] is None else str(item["lot_no"]),
            int(item["quantity"]),
            int(item["returned"]),
            item.get("serial"),
            item.get("trace_code"),
            None if expiry is None else dt.date.fromisoformat(expiry),
        )


@dataclass(frozen=True, slots=True)
class ReturnView:
    return_id: int
    return_no: str
    kind: str
    status: str
    amount_fen: int
    source: str
    """``till`` (checkout's return flow) or ``journal`` (found in the terminal journal)."""
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    stan: str | None
    batch_no: str | None
    note: str | None
    payment_check: str | None
    lines: tuple[tuple[int, int], ...]
    """(order_line_id, quantity) of each returned row; empty: lines not stated."""

    def to_json(self) -> dict[str, Any]:
        return {
            "return_id": self.return_id,
            "return_no": self.return_no,
            "kind": self.kind,
            "status": self.status,
            "amount_fen": self.amount_fen,
            "source": self.source,
            "opened_at": self.opened_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "stan": self.stan,
            "batch_no": self.batch_no,
            "note": self.note,
            "payment_check": self.payment_check,
            "lines": [list(line) for line in self.lines],
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> ReturnView:
        closed = item.get("closed_at")
        return cls(
            int(item["return_id"]),
            str(item["return_no"]),
            str(item["kind"]),
            str(item["status"]),
            int(item["amount_fen"]),
            str(item["source"]),
            dt.datetime.fromisoformat(item["opened_at"]),
            None if closed is None else dt.datetime.fromisoformat(closed),
            item.get("stan"),
            item.get("batch_no"),
            item.get("note"),
            item.get("payment_check"),
            tuple((int(a), int(b)) for a, b in item["lines"]),
        )


@dataclass(frozen=True, slots=True)
class OrderDetail:
    """An order as the return flow and the trace see it."""

    order_id: int
    receipt_no: str
    terminal_id: str
    status: str
    total_fen: int
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    stan: str | None
    batch_no: str | None
    payment_check: str | None
    lines: tuple[OrderLineView, ...]
    returns: tuple[ReturnView, ...]

    @property
    def refunded_fen(self) -> int:
        return sum(r.amount_fen for r in self.returns if r.status == "done")

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "receipt_no": self.receipt_no,
            "terminal_id": self.terminal_id,
            "status": self.status,
            "total_fen": self.total_fen,
            "opened_at": self.opened_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "stan": self.stan,
            "batch_no": self.batch_no,
            "payment_check": self.payment_check,
            "lines": [line.to_json() for line in self.lines],
            "returns": [item.to_json() for item in self.returns],
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> OrderDetail:
        closed = item.get("closed_at")
        return cls(
            int(item["order_id"]),
            str(item["receipt_no"]),
            str(item["terminal_id"]),
            str(item["status"]),
            int(item["total_fen"]),
            dt.datetime.fromisoformat(item["opened_at"]),
            None if closed is None else dt.datetime.fromisoformat(closed),
            item.get("stan"),
            item.get("batch_no"),
            item.get("payment_check"),
            tuple(OrderLineView.from_json(line) for line in item["lines"]),
            tuple(ReturnView.from_json(r) for r in item["returns"]),
        )


@dataclass(frozen=True, slots=True)
class ReturnPlan:
    """What a return takes back: rows and quantities, the amount, void or refund."""

    kind: ReturnKind
    amount_fen: int
    takes: tuple[tuple[int, int], ...]
    """(order_line_id, quantity)."""


def _refuse(en: str, zh: str) -> CheckoutRefused:
    return CheckoutRefused(en, reason_zh=zh)


def plan_return(
    detail: OrderDetail, requests: Sequence[ReturnLine] | None, *, void_allowed: bool
) -> ReturnPlan:
    """What may come back of ``detail`` (``requests`` None: all that has not come back yet).

    Refused (CheckoutRefused, zh + en): an order not paid, one with a return
    still pending, a line that is not on the receipt, a quantity over what
    is left of the line. A void needs the whole order back, nothing refunded
    before, and ``void_allowed`` (the sale still in the terminal's open batch).
    """
    receipt = readable_receipt_no(detail.receipt_no)
    if detail.status not in RETURNABLE_STATUSES:
        raise _refuse(
            f"receipt {receipt} is {detail.status}: only a paid order can be returned",
            f"小票 {receipt} 状态为 {detail.status}：只有已付款的订单可以退货",
        )
    pending = [r for r in detail.returns if r.status == "pending"]
    if pending:
        raise _refuse(
            f"return {pending[0].return_no} of receipt {receipt} is still pending: "
            "it completes when the terminal's answer is known",
            f"小票 {receipt} 的退货 {pending[0].return_no} 尚未完成：待终端结果确定后再办理",
        )
    rows_by_line: dict[int, list[OrderLineView]] = {}
    for row in detail.lines:
        rows_by_line.setdefault(row.line_no, []).append(row)
    takes: dict[int, int] = {}
    if requests is None:
        takes = {row.order_line_id: row.remaining for row in detail.lines if row.remaining > 0}
    for request in requests or ():
        rows = rows_by_line.get(request.line_no)
        if rows is None:
            raise _refuse(
                f"receipt {receipt} has no line {request.line_no}",
                f"小票 {receipt} 没有第 {request.line_no} 行",
            )
        if request.lot_no is not None:
            rows = [row for row in rows if row.lot_no == request.lot_no]
            if not rows:
                raise _refuse(
                    f"line {request.line_no} of receipt {receipt} sold no lot {request.lot_no}",
                    f"小票 {receipt} 第 {request.line_no} 行没有批次 {request.lot_no}",
                )
        left = sum(row.remaining - takes.get(row.order_line_id, 0) for row in rows)
        if not 1 <= request.quantity <= min(left, LINE_QUANTITY_MAX):
            raise _refuse(
                f"line {request.line_no} of receipt {receipt}: {left} can come back, "
                f"not {request.quantity}",
                f"小票 {receipt} 第 {request.line_no} 行可退 {left}，不能退 {request.quantity}",
            )
        wanted = request.quantity
        for row in rows:
            room = row.remaining - takes.get(row.order_line_id, 0)
            take = min(room, wanted)
            if take > 0:
                takes[row.order_line_id] = takes.get(row.order_line_id, 0) + take
                wanted -= take
    if not takes:
        raise _refuse(
            f"everything on receipt {receipt} has come back already",
            f"小票 {receipt} 的商品已全部退回",
        )
    price = {row.order_line_id: row.price_fen for row in detail.lines}
    amount_fen = sum(price[row_id] * quantity for row_id, quantity in takes.items())
    everything = all(takes.get(row.order_line_id, 0) == row.quantity for row in detail.lines)
    kind = (
        ReturnKind.VOID
        if void_allowed and everything and not detail.refunded_fen
        else ReturnKind.REFUND
    )
    return ReturnPlan(kind, amount_fen, tuple(sorted(takes.items())))


def receipt_number(terminal_id: str, order_id: int) -> str:
    """The number printed on a new order's receipt: ``TERMINAL-N00000042``."""
    return f"{terminal_id}-{RECEIPT_MARK}{order_id:08d}"


def return_number(receipt_no: str, nth: int) -> str:
    """The number of the ``nth`` return of ``receipt_no``: ``TERMINAL-N00000042-R1`` (an
    old-form receipt's returns get the new form, which the net leaves readable)."""
    return f"{readable_receipt_no(receipt_no)}-R{nth}"


def readable_receipt_no(number: str) -> str:
    """A stored receipt (or return) number in the form printed now, with
    :data:`RECEIPT_MARK`: ``10000001-00000042`` (old form) → ``10000001-N00000042``.
    Anything else as it is.

    Only for a number the back office gave out, never for what a person typed: a card
    typed ``62220212-34567890`` would come out ``62220212-N34567890``, which the card-number
    net no longer sees as a card. Text that was typed is shown as typed."""
    match = _RECEIPT_NO.match(number)
    if match is None or not (
        match.end() == len(number) or _RETURN_SUFFIX.fullmatch(number, match.end())
    ):
        return number
    return f"{match['terminal']}-{RECEIPT_MARK}{match['order']}{number[match.end() :]}"


def receipt_no_forms(receipt_no: str) -> tuple[str, ...]:
    """The numbers under which ``receipt_no`` may be stored: itself and, for a receipt
    number, its other form (old ↔ new). Orders written before the mark keep their old
    number in the database and in the terminal journal; one order id has one order, so at
    most one of the forms is found."""
    match = _RECEIPT_NO.fullmatch(receipt_no)
    if match is None:
        return (receipt_no,)
    other = (
        f"{match['terminal']}-{match['order']}"
        if match["mark"]
        else f"{match['terminal']}-{RECEIPT_MARK}{match['order']}"
    )
    return (receipt_no, other)


def parse_receipt_scan(text: str) -> str:
    """The receipt number in a scanned or typed receipt barcode: ``TERMINAL-N00000042`` as
    printed now (a lowercase ``n`` made capital), or the old ``TERMINAL-00000042`` of a
    receipt printed before, kept as it is — every lookup takes either form
    (:func:`receipt_no_forms`), and a back office not yet upgraded finds the old one."""
    value = text.strip()
    if len(value) > RECEIPT_SCAN_LENGTH_MAX:
        raise _refuse(
            f"a receipt number is at most {RECEIPT_SCAN_LENGTH_MAX} characters",
            f"小票号最长 {RECEIPT_SCAN_LENGTH_MAX} 个字符",
        )
    for identifier in _RECEIPT_SYMBOLOGIES:
        if value.startswith(identifier):
            value = value[len(identifier) :]
            break
    match = _RECEIPT_NO.fullmatch(value)
    if match is None:
        raise _refuse(
            f"{value!r} is not a receipt number (terminal ID, '-', {RECEIPT_MARK}, order number)",
            f"{value} 不是小票号（终端号-{RECEIPT_MARK}订单号）",
        )
    return f"{match['terminal']}-{match['mark'].upper()}{match['order']}"


# --- the flow ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenReturn:
    return_id: int
    return_no: str
    kind: ReturnKind
    amount_fen: int
    takes: tuple[tuple[int, int], ...]
    """(order_line_id, quantity) coming back."""


class ReturnPending(CheckoutRefused):
    """The refund was sent and not answered yet: the terminal resends it as is."""


class ReturnBook(Protocol):
    """Where returns are written (``CatalogStore``, or ``HttpOrderBook`` through serve)."""

    def order_detail(self, receipt_no: str) -> OrderDetail | None: ...

    def open_return(
        self,
        receipt_no: str,
        requests: Sequence[ReturnLine] | None,
        *,
        void_allowed: bool,
        restock: bool,
        terminal_id: str,
        opened_at: dt.datetime,
    ) -> OpenReturn: ...

    def complete_return(
        self, return_id: int, payment: Payment, *, closed_at: dt.datetime
    ) -> None: ...

    def fail_return(
        self, return_id: int, *, payment: Payment | None, note: str, closed_at: dt.datetime
    ) -> None: ...


class Refunder(Protocol):
    """Gives money back on the card of a receipt's sale (the terminal engine)."""

    def can_void(self, receipt_no: str) -> bool:
        """Whether the receipt's sale may still be voided (open batch, nothing refunded)."""
        ...

    def give_back(
        self, kind: ReturnKind, *, receipt_no: str, amount_fen: int, reference: str
    ) -> Payment:
        """Void or refund; a decline is ``approved=False``; no answer raises HostUnreachable."""
        ...


@dataclass(frozen=True, slots=True)
class ReturnReceipt:
    return_no: str
    receipt_no: str
    kind: ReturnKind
    amount_fen: int
    lines: tuple[tuple[OrderLineView, int], ...]
    payment: Payment
    returned_at: dt.datetime
    restock: bool


def return_order(
    receipt_no: str,
    requests: Sequence[ReturnLine] | None,
    *,
    book: ReturnBook,
    refunder: Refunder,
    terminal_id: str,
    clock: Callable[[], dt.datetime],
    restock: bool = True,
) -> ReturnReceipt:
    """Give back the money of the returned lines and put the goods back (see the module doc).

    Raises CheckoutRefused before anything is sent when the return is not
    possible; :class:`Declined` when the host declines (the return fails);
    :class:`ReturnPending` when a refund is not answered yet.
    """
    detail = book.order_detail(receipt_no)
    if detail is None:  # named as typed: a card number typed instead is masked by the net
        raise _refuse(f"no receipt {receipt_no} in the back office", f"后台没有小票 {receipt_no}")
    shown = readable_receipt_no(detail.receipt_no)
    if detail.terminal_id != terminal_id:
        raise _refuse(
            f"receipt {shown} was paid on terminal {detail.terminal_id}: return it there "
            "(its card payment is in that terminal's journal)",
            f"小票 {shown} 在终端 {detail.terminal_id} 付款：请在该终端办理退货",
        )
    receipt_no = detail.receipt_no  # as stored (an old receipt keeps its old number)
    opened = book.open_return(
        receipt_no,
        requests,
        void_allowed=refunder.can_void(receipt_no),
        restock=restock,
        terminal_id=terminal_id,
        opened_at=clock(),
    )
    try:
        payment = refunder.give_back(
            opened.kind,
            receipt_no=receipt_no,
            amount_fen=opened.amount_fen,
            reference=opened.return_no,
        )
    except HostUnreachable as exc:
        if opened.kind == ReturnKind.REFUND:
            raise ReturnPending(
                f"refund {opened.return_no} of {format_fen(opened.amount_fen)} sent, no answer "
                "yet: the terminal resends it; the goods go back when it is answered",
                reason_zh=f"退货 {opened.return_no} 已发送但未收到应答：终端将重发，应答后入库",
            ) from exc
        book.fail_return(
            opened.return_id,
            payment=None,
            note="no answer from the host; the terminal reverses the void",
            closed_at=clock(),
        )
        raise
    if not payment.approved:
        book.fail_return(
            opened.return_id,
            payment=payment,
            note=f"declined with response code {payment.response_code}",
            closed_at=clock(),
        )
        raise Declined(
            f"{opened.kind} of {format_fen(opened.amount_fen)} declined (response code "
            f"{payment.response_code}); return {opened.return_no} not made",
            response_code=payment.response_code,
        )
    returned_at = clock()
    book.complete_return(opened.return_id, payment, closed_at=returned_at)
    takes = dict(opened.takes)
    rows = tuple(
        (row, takes[row.order_line_id]) for row in detail.lines if row.order_line_id in takes
    )
    return ReturnReceipt(
        opened.return_no,
        shown,
        opened.kind,
        opened.amount_fen,
        rows,
        payment,
        returned_at,
        restock,
    )


def render_return_receipt(receipt: ReturnReceipt) -> list[str]:
    """The return slip as printed: lines back, amount, void or refund, STAN and batch_no."""
    kind_zh = "消费撤销" if receipt.kind == ReturnKind.VOID else "退货"
    out = [
        f"{kind_zh} {receipt.kind.upper()} {receipt.return_no}",
        f"原小票 receipt {receipt.receipt_no}   {receipt.returned_at:%Y-%m-%d %H:%M:%S}",
        "-" * 40,
    ]
    for row, quantity in receipt.lines:
        lot = f"  批次 lot {row.lot_no}" if row.lot_no else ""
        out.append(f"{row.product_name}  x{quantity}{lot}")
        if row.serial:
            out.append(f"  序列号 serial {row.serial}")
        if row.trace_code:
            out.append(f"  追溯码 trace code {row.trace_code}")
    payment = receipt.payment
    out += [
        "-" * 40,
        f"退款 REFUNDED  {format_fen(receipt.amount_fen)}",
        f"批次号 batch_no {payment.batch_no}   流水号 stan {payment.stan}",
    ]
    if not receipt.restock:
        out.append("商品已隔离 goods put aside (quarantine)")
    return out


def summarize_lines(lines: Iterable[OrderLineView]) -> dict[int, tuple[int, int]]:
    """(quantity, returned) per receipt line number (a line split over lots added up)."""
    totals: dict[int, tuple[int, int]] = {}
    for row in lines:
        quantity, returned = totals.get(row.line_no, (0, 0))
        totals[row.line_no] = (quantity + row.quantity, returned + row.returned)
    return totals
