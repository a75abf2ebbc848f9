"""Property: stock is the sum of its movements, and money and stock agree, whatever the mix.

Sales, returns (void or refund, whole or part, put back or aside), goods
received, adjustments, recalls and their lifting, in any order, with the till
dying between the terminal's approval and the back office's record (of a sale
or of a return), recovered afterwards from the terminal journal. After each
mix: every lot's cached stock equals the sum of its movements and equals an
independent model of what should be there; the money the orders say was taken
and given back equals what the terminal journal approved.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from catalog_samples import MILK, PILLS, TODAY
from catalog_shop import TERMINAL_ID, Shop, open_shop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posbatch.catalog import (
    LineRequest,
    LotSource,
    LotTake,
    ReturnKind,
    ReturnLine,
    price_cart,
)
from posbatch.catalog.payer import recover_pending_orders
from posbatch.errors import CheckoutRefused
from posbatch.terminal import TxnState

LOTS = [(MILK, "M-DEC01"), (MILK, "M-DEC15"), (PILLS, "P1")]
EXAMPLES_ENV = "CATALOG_MIX_EXAMPLES"
"""More mixes, drawn afresh each run: CATALOG_MIX_EXAMPLES=300 (default 25, the same each run)."""


@dataclass
class Model:
    """What stock should be, computed without the store."""

    on_hand: dict[tuple[str, str], int]
    quarantined: dict[tuple[str, str], int]
    recalled: dict[tuple[str, str], bool]
    set_aside: dict[tuple[str, str], int] = field(default_factory=dict)
    """Units a recall in force put (or sent) to quarantine: released when it is lifted."""
    pending: list[tuple[str, list[tuple[tuple[str, str], int]], bool]] = field(default_factory=list)
    """Returns approved by the terminal but not yet booked: (kind, units, restock)."""
    pending_sales: list[tuple[tuple[str, str], int]] = field(default_factory=list)
    """Sales approved by the terminal but not yet booked."""

    def sold(self, lot: tuple[str, str], quantity: int) -> None:
        """A sale booked: from stock on hand, or (recalled meanwhile) from its quarantine."""
        from_quarantine = 0
        if self.recalled[lot]:
            from_quarantine = max(
                0, min(quantity, self.quarantined[lot], self.set_aside.get(lot, 0))
            )
            self.set_aside[lot] = self.set_aside.get(lot, 0) - from_quarantine
        self.quarantined[lot] -= from_quarantine
        self.on_hand[lot] -= quantity - from_quarantine

    def back(self, units: list[tuple[tuple[str, str], int]], restock: bool) -> None:
        for lot, quantity in units:
            if self.recalled[lot]:
                self.quarantined[lot] += quantity
                self.set_aside[lot] = self.set_aside.get(lot, 0) + quantity
            elif restock:
                self.on_hand[lot] += quantity
            else:
                self.quarantined[lot] += quantity

    def recall(self, lot: tuple[str, str]) -> None:
        self.recalled[lot] = True
        moved = max(self.on_hand[lot], 0)
        self.on_hand[lot] -= moved
        self.quarantined[lot] += moved
        self.set_aside[lot] = moved

    def lift(self, lot: tuple[str, str]) -> None:
        self.recalled[lot] = False
        release = min(self.set_aside.pop(lot, 0), self.quarantined[lot])
        self.on_hand[lot] += release
        self.quarantined[lot] -= release


@dataclass(frozen=True)
class Sale:
    lot: int
    quantity: int
    crash: bool


@dataclass(frozen=True)
class GiveBack:
    pick: int
    everything: bool
    quantity: int
    restock: bool
    crash: bool


@dataclass(frozen=True)
class Receive:
    lot: int
    quantity: int


@dataclass(frozen=True)
class Adjust:
    lot: int
    delta: int


@dataclass(frozen=True)
class Recall:
    lot: int


@dataclass(frozen=True)
class Recover:
    pass


Operation = Sale | GiveBack | Receive | Adjust | Recall | Recover
LOT = st.integers(0, len(LOTS) - 1)
OPERATION: st.SearchStrategy[Operation] = st.one_of(
    st.builds(Sale, LOT, st.integers(1, 3), st.booleans()),
    st.builds(
        GiveBack, st.integers(0, 50), st.booleans(), st.integers(1, 3), st.booleans(), st.booleans()
    ),
    st.builds(Receive, LOT, st.integers(1, 6)),
    st.builds(Adjust, LOT, st.integers(-3, 4).filter(bool)),
    st.builds(Recall, LOT),
    st.just(Recover()),
)


@pytest.fixture
def shop(tmp_path: Path, db_url: str) -> Iterator[Shop]:
    opened = open_shop(tmp_path, db_url)
    yield opened
    opened.close()


def read_model(shop: Shop) -> Model:
    snapshot = shop.store.snapshot()
    lots = {key: snapshot.lot(*key) for key in LOTS}
    model = Model(
        {key: lot.quantity_on_hand for key, lot in lots.items() if lot},
        {key: lot.quarantined for key, lot in lots.items() if lot},
        {key: lot.recalled for key, lot in lots.items() if lot},
    )
    for key in LOTS:
        if model.recalled[key]:
            history = shop.store.movements(gtin=key[0], lot_no=key[1])
            recall_id = shop.store.recall_history(*key)[-1].recall_id
            model.set_aside[key] = sum(
                m.quarantined_delta for m in history if m.recall_id == recall_id
            )
    return model


def sale(shop: Shop, model: Model, operation: Sale) -> None:
    gtin, lot_no = LOTS[operation.lot]
    quantity = operation.quantity
    request = LineRequest(gtin, quantity, (LotTake(lot_no, quantity),), LotSource.SCAN)
    try:
        cart = price_cart(shop.store.snapshot(), [request], today=TODAY, now=shop.clock.now)
    except CheckoutRefused:
        return  # recalled, or not enough on hand: nothing is sold
    if not operation.crash:
        shop.pay([request])
        model.sold((gtin, lot_no), quantity)
        return
    # the till dies after the approval, before the order is completed
    order = shop.store.open_order(cart, terminal_id=TERMINAL_ID, opened_at=shop.clock())
    payment = shop.payer().pay(cart.total_fen, reference=order.receipt_no)
    assert payment.approved
    model.pending_sales.append(((gtin, lot_no), quantity))


def give_back(shop: Shop, model: Model, operation: GiveBack) -> None:
    orders = [
        order
        for order in (
            shop.store.order_detail(f"{TERMINAL_ID}-{number:08d}") for number in range(1, 200)
        )
        if order is not None
        and order.status in ("paid", "part_refunded")
        and all(item.status != "pending" for item in order.returns)
    ]
    if not orders:
        return
    order = orders[operation.pick % len(orders)]
    line = order.lines[0]
    if line.remaining == 0:
        return
    requests = (
        None
        if operation.everything
        else [ReturnLine(line.line_no, min(operation.quantity, line.remaining))]
    )
    payer = shop.payer()
    opened = shop.store.open_return(
        order.receipt_no,
        requests,
        void_allowed=payer.can_void(order.receipt_no),
        restock=operation.restock,
        terminal_id=TERMINAL_ID,
        opened_at=shop.clock(),
    )
    payment = payer.give_back(
        opened.kind,
        receipt_no=order.receipt_no,
        amount_fen=opened.amount_fen,
        reference=opened.return_no,
    )
    assert payment.approved
    rows = {row.order_line_id: row for row in order.lines}
    units = [
        ((rows[row_id].gtin, rows[row_id].lot_no or ""), count) for row_id, count in opened.takes
    ]
    if operation.crash:  # the till dies after the approval, before the return is booked
        model.pending.append((str(opened.kind), units, operation.restock))
        return
    shop.store.complete_return(opened.return_id, payment, closed_at=shop.clock())
    model.back(units, operation.restock)


def recover(shop: Shop, model: Model) -> None:
    recover_pending_orders(
        shop.store, shop.terminal.journal, terminal_id=TERMINAL_ID, closed_at=shop.clock()
    )
    for lot, quantity in model.pending_sales:
        model.sold(lot, quantity)
    model.pending_sales.clear()
    for _, units, restock in model.pending:
        model.back(units, restock)
    model.pending.clear()


def apply(shop: Shop, model: Model, operation: Operation) -> None:
    if isinstance(operation, Sale):
        sale(shop, model, operation)
    elif isinstance(operation, GiveBack):
        give_back(shop, model, operation)
    elif isinstance(operation, Receive):
        key = LOTS[operation.lot]
        shop.store.receive(*key, operation.quantity, at=shop.clock(), actor="goods in")
        if model.recalled[key]:
            model.quarantined[key] += operation.quantity
            model.set_aside[key] = model.set_aside.get(key, 0) + operation.quantity
        else:
            model.on_hand[key] += operation.quantity
    elif isinstance(operation, Adjust):
        key = LOTS[operation.lot]
        if model.on_hand[key] + operation.delta < 0:
            return
        shop.store.adjust(
            *key, delta=operation.delta, reason="count", actor="clerk", at=shop.clock()
        )
        model.on_hand[key] += operation.delta
    elif isinstance(operation, Recall):
        gtin, lot_no = key = LOTS[operation.lot]
        if model.recalled[key]:
            shop.store.lift_recall(lot_no, gtin=gtin, reason="cleared", actor="qa", at=shop.clock())
            model.lift(key)
        else:
            shop.store.recall(lot_no, gtin=gtin, reason="notice", actor="qa", at=shop.clock())
            model.recall(key)
    else:
        recover(shop, model)


def money(shop: Shop) -> tuple[int, int]:
    """(net fen by the back office's orders and returns, net fen approved in the journal)."""
    booked = 0
    for number in range(1, 500):
        order = shop.store.order_detail(f"{TERMINAL_ID}-{number:08d}")
        if order is None:
            break
        if order.status in ("paid", "voided", "refunded", "part_refunded"):
            booked += order.total_fen - order.refunded_fen
    journal = 0
    for row in shop.terminal.journal.transactions():
        if row.kind == "sale" and row.state in TxnState.COUNTED:
            journal += row.amount_fen
        elif row.kind in (ReturnKind.VOID, ReturnKind.REFUND) and row.state == TxnState.APPROVED:
            journal -= row.amount_fen
    return booked, journal


@pytest.mark.slow
def test_stock_is_the_sum_of_movements_and_agrees_with_money(shop: Shop) -> None:
    """Any mix of sales, returns, receipts, adjustments and recalls, crashes included."""

    @settings(
        max_examples=int(os.environ.get(EXAMPLES_ENV, "25")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=EXAMPLES_ENV not in os.environ,
    )
    @given(st.lists(OPERATION, min_size=1, max_size=8))
    def mix(operations: list[Operation]) -> None:
        model = read_model(shop)
        for operation in operations:
            apply(shop, model, operation)
        recover(shop, model)
        snapshot = shop.store.snapshot()
        actual = {
            key: (lot.quantity_on_hand, lot.quarantined)
            for key in LOTS
            if (lot := snapshot.lot(*key)) is not None
        }
        summed = {
            row.lot_no: (row.on_hand, row.quarantined)
            for row in shop.store.stock_report()
            if row.lot_no is not None
        }
        expected_stock = {key: (model.on_hand[key], model.quarantined[key]) for key in LOTS}
        assert ([], expected_stock) == (shop.store.stock_discrepancies(), actual)
        assert {lot_no: actual[gtin, lot_no] for gtin, lot_no in LOTS} == {
            lot_no: summed[lot_no] for _, lot_no in LOTS
        }
        booked, journal = money(shop)
        assert journal == booked
        assert ([], []) == (shop.store.pending_orders(), shop.store.pending_returns())

    mix()
