"""The production :class:`Payer`: a card sale through the terminal engine (posbatch.terminal).

The order's receipt number goes to the terminal as the sale's ``reference``,
so the terminal journal links each card payment to its order: if the till
dies between the approval and the order's completion, the pending order and
the journal entry carrying the same receipt number tell what happened.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from posbatch.catalog._checkout import OrderBook, Payment
from posbatch.catalog._store import OrderSummary
from posbatch.errors import ConfigError, HostUnreachable
from posbatch.terminal import Journal, TcpDriver, Terminal, TransactionResult, TxnState

__all__ = [
    "Card",
    "OrderLedger",
    "TerminalPayer",
    "payment_from_result",
    "recover_pending_orders",
]

PAN_DIGITS_MIN = 12
PAN_DIGITS_MAX = 19


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
        if self.expiry is not None and not (
            len(self.expiry) == 4 and self.expiry.isascii() and self.expiry.isdigit()
        ):
            return "the expiry is YYMM, 4 digits"
        return None


def payment_from_result(result: TransactionResult) -> Payment:
    """A terminal sale result as a checkout payment.

    No answer (the terminal reversed or will reverse the sale) raises
    :class:`HostUnreachable`; a training-mode sale is not a payment.
    """
    if result.training:
        return Payment(False, "TR", f"{result.stan:06d}", f"{result.batch_no:06d}")
    if result.response_code is None:
        raise HostUnreachable(f"sale STAN {result.stan:06d}: {result.message}")
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

    def pay(self, amount_fen: int, *, reference: str) -> Payment:
        card = self._read_card(amount_fen)
        problem = card.problem()
        if problem is not None:
            raise ConfigError(problem)
        if self._driver is None:
            result = self.terminal.sale(
                amount_fen, card.pan, expiry=card.expiry, reference=reference
            )
        else:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            flow = self.terminal.sale_flow(
                amount_fen, card.pan, expiry=card.expiry, reference=reference
            )
            result = self._loop.run_until_complete(self._driver.run(flow))
        return payment_from_result(result)

    def close(self) -> None:
        if self._loop is not None:
            if self._driver is not None:
                self._loop.run_until_complete(self._driver.close())
            self._loop.close()
            self._loop = None


class OrderLedger(OrderBook, Protocol):
    """An order book that can also list pending orders (CatalogStore, HttpOrderBook)."""

    def pending_orders(self) -> list[OrderSummary]: ...


def recover_pending_orders(
    store: OrderLedger, journal: Journal, *, terminal_id: str, closed_at: dt.datetime
) -> list[tuple[str, str]]:
    """Finish this terminal's orders left pending by a crash, from the terminal journal.

    Each pending order is matched to the journal's sale whose ``reference`` is
    its receipt number: approved → completed (STAN, batch_no, stock); declined,
    reversed or voided → closed unpaid; no such sale → closed unpaid (the card
    was never charged); a sale still outstanding → left pending until the
    terminal has flushed it. Returns (receipt_no, what was done) per order.
    """
    pending = [o for o in store.pending_orders() if o.terminal_id == terminal_id]
    if not pending:
        return []
    sales = {
        row.reference: row
        for row in journal.transactions()
        if row.kind == "sale" and row.reference is not None
    }
    done: list[tuple[str, str]] = []
    for order in pending:
        row = sales.get(order.receipt_no)
        if row is None:
            store.close_unpaid(
                order.order_id,
                payment=None,
                note="recovered: no sale in the terminal journal, the card was not charged",
                closed_at=closed_at,
            )
            done.append((order.receipt_no, "unpaid: never charged"))
            continue
        payment = Payment(
            approved=row.state == TxnState.APPROVED and not row.training,
            response_code=row.response_code or "",
            stan=f"{row.stan:06d}",
            batch_no=f"{row.batch_no:06d}",
            rrn=row.rrn,
            auth_code=row.auth_code,
        )
        if payment.approved:
            store.complete_order(order.order_id, payment, closed_at=closed_at)
            done.append((order.receipt_no, f"paid: STAN {payment.stan} batch {payment.batch_no}"))
        elif row.state in TxnState.OUTSTANDING:
            done.append((order.receipt_no, f"still pending: sale STAN {payment.stan} {row.state}"))
        else:
            store.close_unpaid(
                order.order_id,
                payment=payment,
                note=f"recovered: terminal sale {row.state}",
                closed_at=closed_at,
            )
            done.append((order.receipt_no, f"unpaid: sale {row.state}"))
    return done
