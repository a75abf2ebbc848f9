"""The production :class:`Payer` and :class:`Refunder`: the terminal engine (posbatch.terminal).

The order's receipt number goes to the terminal as the sale's ``reference``,
and a return's number as its void's or refund's, so the terminal journal
links each card transaction to its order or return: if the till dies between
the terminal's answer and the back office's record, the pending order or
return and the journal entry carrying the same number tell what happened
(:func:`recover_pending_orders`). A void or refund made outside checkout is
found through its original sale's reference.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from posbatch.batch.cards import expiry_problem
from posbatch.batch.limits import PAN_DIGITS_MAX, PAN_DIGITS_MIN
from posbatch.catalog._checkout import OrderBook, Payment
from posbatch.catalog._orders_store import (
    OrderSummary,
    OutsideReturn,
    PaymentMismatch,
    ReturnSummary,
)
from posbatch.catalog._returns import ReturnBook, ReturnKind, receipt_no_forms
from posbatch.errors import CatalogError, ConfigError, HostUnreachable
from posbatch.terminal import (
    Flow,
    Journal,
    TcpDriver,
    Terminal,
    TransactionResult,
    TxnRow,
    TxnState,
)

__all__ = [
    "RECONCILE_BATCHES_MAX",
    "Card",
    "OrderLedger",
    "TerminalPayer",
    "payment_from_result",
    "recover_pending_orders",
]

RECONCILE_BATCHES_MAX = 10
"""How many of the journal's latest batches are searched for voids/refunds made outside checkout."""


@dataclass(frozen=True, slots=True)
class Card:
    """A card as read (or typed) at the till. Never stored by the catalog."""

    pan: str
    expiry: str | None = None

    def __repr__(self) -> str:
        return f"Card(pan='****{self.pan[-4:]}', expiry={'****' if self.expiry else None})"

    def problem(self) -> str | None:
        """What is wrong with the card as typed (None: it can be sent)."""
        if not (
            PAN_DIGITS_MIN <= len(self.pan) <= PAN_DIGITS_MAX
            and self.pan.isascii()
            and self.pan.isdigit()
        ):
            return f"a card number is {PAN_DIGITS_MIN} to {PAN_DIGITS_MAX} digits"
        if self.expiry is not None:
            return expiry_problem(self.expiry)
        return None


def payment_from_result(result: TransactionResult) -> Payment:
    """A terminal sale result as a checkout payment.

    No trustworthy answer (the terminal reversed or will reverse a sale or a
    void, resends a refund) raises :class:`HostUnreachable`, whatever code an
    unverified answer carried; a training-mode sale is not a payment.
    """
    if result.training:
        return Payment(False, "TR", f"{result.stan:06d}", f"{result.batch_no:06d}")
    if (
        result.response_code is None
        or result.state in TxnState.OUTSTANDING
        or result.state == TxnState.REVERSED
    ):
        raise HostUnreachable(f"{result.kind} STAN {result.stan:06d}: {result.message}")
    return Payment(
        approved=result.approved,
        response_code=result.response_code,
        stan=f"{result.stan:06d}",
        batch_no=f"{result.batch_no:06d}",
        rrn=result.rrn,
        auth_code=result.auth_code,
    )


class TerminalPayer:
    """Charges a card through a :class:`Terminal`, in-process or over TCP.

    ``read_card`` is asked for the card at each payment (the CLI prompts for
    it); with a ``driver`` the sale runs over TCP on this payer's own event loop.
    """

    def __init__(
        self,
        terminal: Terminal,
        *,
        read_card: Callable[[int], Card],
        driver: TcpDriver | None = None,
    ) -> None:
        self.terminal = terminal
        self._read_card = read_card
        self._driver = driver
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self, flow: Flow[TransactionResult]) -> TransactionResult:
        if self._driver is None:
            return self.terminal.run(flow)
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._driver.run(flow))

    def pay(self, amount_fen: int, *, reference: str) -> Payment:
        card = self._read_card(amount_fen)
        problem = card.problem()
        if problem is not None:
            raise ConfigError(problem)
        flow = self.terminal.sale_flow(
            amount_fen, card.pan, expiry=card.expiry, reference=reference
        )
        return payment_from_result(self._run(flow))

    def _sale_of(self, receipt_no: str) -> TxnRow:
        """The journal's sale of ``receipt_no`` (a sale made before receipt numbers had
        their mark carries the old form as its reference: either form finds it)."""
        forms = receipt_no_forms(receipt_no)
        sales = [
            row
            for row in self.terminal.journal.transactions()
            if row.kind == "sale" and row.reference in forms and not row.training
        ]
        if not sales:
            raise CatalogError(f"no card sale for receipt {receipt_no} in this terminal's journal")
        return sales[-1]

    def can_void(self, receipt_no: str) -> bool:
        """The sale is approved, in the terminal's open batch, and nothing was refunded."""
        sale = self._sale_of(receipt_no)
        return (
            sale.state == TxnState.APPROVED
            and not sale.refunded_fen
            and sale.batch_id == self.terminal.journal.current_batch().batch_id
        )

    def give_back(
        self, kind: ReturnKind, *, receipt_no: str, amount_fen: int, reference: str
    ) -> Payment:
        """Void (the whole sale) or refund ``amount_fen`` of the receipt's sale."""
        sale = self._sale_of(receipt_no)
        if kind == ReturnKind.VOID:
            flow = self.terminal.void_flow(sale.stan, reference=reference)
        else:
            flow = self.terminal.refund_flow(
                sale.stan, amount_fen, original_batch_no=sale.batch_no, reference=reference
            )
        return payment_from_result(self._run(flow))

    def flush(self) -> int:
        """Send what the journal still owes the host (reversals, refunds to resend)."""
        if self._driver is None:
            return self.terminal.flush()
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._driver.run(self.terminal.flush_flow()))

    def close(self) -> None:
        if self._loop is not None:
            if self._driver is not None:
                self._loop.run_until_complete(self._driver.close())
            self._loop.close()
            self._loop = None


class OrderLedger(OrderBook, ReturnBook, Protocol):
    """Where a till's orders and returns go (CatalogStore, HttpOrderBook)."""

    def pending_orders(self) -> list[OrderSummary]: ...

    def pending_returns(self) -> list[ReturnSummary]: ...

    def record_outside_returns(
        self, terminal_id: str, found: list[OutsideReturn], *, closed_at: dt.datetime
    ) -> list[tuple[str, str]]: ...


def _payment_of(row: TxnRow) -> Payment:
    return Payment(
        approved=row.state in TxnState.COUNTED and not row.training,
        response_code=row.response_code or "",
        stan=f"{row.stan:06d}",
        batch_no=f"{row.batch_no:06d}",
        rrn=row.rrn,
        auth_code=row.auth_code,
    )


def recover_pending_orders(
    store: OrderLedger, journal: Journal, *, terminal_id: str, closed_at: dt.datetime
) -> list[tuple[str, str]]:
    """Finish this terminal's orders and returns left pending, from the terminal journal.

    Each pending order is matched to the journal's sale whose ``reference`` is
    its receipt number: approved (voided or refunded since, too) → completed
    (STAN, batch_no, stock; the void or refund is then recorded below);
    declined or reversed → closed unpaid; no such sale → closed unpaid (the
    card was never charged); a sale still outstanding → left pending until
    the terminal has flushed it. Each pending return likewise, by its return
    number: approved → done (goods back); declined or reversed → failed;
    never sent → failed; outstanding → left pending. Then voids and refunds
    made outside checkout (no reference, original sale of a receipt) in the
    journal's last :data:`RECONCILE_BATCHES_MAX` batches are recorded. An
    item the back office will not take (the host holds no such approval) is
    left as it is and said so; the others go on. Returns (receipt or return
    number, what was done) per item.
    """
    rows = journal.transactions()
    by_reference = {row.reference: row for row in rows if row.reference is not None}
    done = _recover_orders(store, by_reference, terminal_id=terminal_id, closed_at=closed_at)
    for item in store.pending_returns():
        if item.terminal_id != terminal_id:
            continue
        row = by_reference.get(item.return_no)
        if row is None or row.kind != item.kind:
            store.fail_return(
                item.return_id,
                payment=None,
                note="recovered: never sent to the host, no money moved",
                closed_at=closed_at,
            )
            done.append((item.return_no, "failed: never sent"))
        elif row.state in TxnState.OUTSTANDING:
            done.append((item.return_no, f"still pending: {row.kind} STAN {row.stan:06d}"))
        elif row.state == TxnState.APPROVED:
            payment = _payment_of(row)
            try:
                store.complete_return(item.return_id, payment, closed_at=closed_at)
            except PaymentMismatch as exc:
                done.append((item.return_no, f"left pending: {exc}"))
                continue
            done.append((item.return_no, f"done: STAN {payment.stan} batch {payment.batch_no}"))
        else:
            store.fail_return(
                item.return_id,
                payment=_payment_of(row),
                note=f"recovered: terminal {row.kind} {row.state}",
                closed_at=closed_at,
            )
            done.append((item.return_no, f"failed: {row.kind} {row.state}"))
    outside = _outside_returns(journal, rows)
    if outside:
        done.extend(store.record_outside_returns(terminal_id, outside, closed_at=closed_at))
    return done


def _recover_orders(
    store: OrderLedger,
    by_reference: Mapping[str, TxnRow],
    *,
    terminal_id: str,
    closed_at: dt.datetime,
) -> list[tuple[str, str]]:
    done: list[tuple[str, str]] = []
    for order in store.pending_orders():
        if order.terminal_id != terminal_id:
            continue
        row = by_reference.get(order.receipt_no)
        if row is None or row.kind != "sale":
            store.close_unpaid(
                order.order_id,
                payment=None,
                note="recovered: no sale in the terminal journal, the card was not charged",
                closed_at=closed_at,
            )
            done.append((order.receipt_no, "unpaid: never charged"))
            continue
        payment = _payment_of(row)
        if row.state in TxnState.OUTSTANDING:
            done.append((order.receipt_no, f"still pending: sale STAN {payment.stan} {row.state}"))
        elif payment.approved:
            try:
                store.complete_order(order.order_id, payment, closed_at=closed_at)
            except PaymentMismatch as exc:
                done.append((order.receipt_no, f"left pending: {exc}"))
                continue
            done.append((order.receipt_no, f"paid: STAN {payment.stan} batch {payment.batch_no}"))
        else:
            store.close_unpaid(
                order.order_id,
                payment=payment,
                note=f"recovered: terminal sale {row.state}",
                closed_at=closed_at,
            )
            done.append((order.receipt_no, f"unpaid: sale {row.state}"))
    return done


def _outside_returns(journal: Journal, rows: list[TxnRow]) -> list[OutsideReturn]:
    """Approved voids/refunds without a reference whose original sale paid a receipt."""
    recent = {batch.batch_id for batch in journal.batches()[-RECONCILE_BATCHES_MAX:]}
    sales = {row.txn_id: row for row in rows if row.kind == "sale" and row.reference}
    found = []
    for row in rows:
        if (
            row.kind not in (ReturnKind.VOID, ReturnKind.REFUND)
            or row.reference is not None
            or row.state != TxnState.APPROVED
            or row.training
            or row.batch_id not in recent
        ):
            continue
        sale = sales.get(row.original_txn_id or 0)
        if sale is None or sale.reference is None:
            continue
        found.append(
            OutsideReturn(
                sale.reference,
                row.kind,
                f"{row.stan:06d}",
                f"{row.batch_no:06d}",
                row.amount_fen,
                row.rrn,
                row.auth_code,
            )
        )
    return found
