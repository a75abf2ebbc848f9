"""Orders written to the back office over HTTP (`catalog serve`), as a remote till does."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from catalog_samples import MILK, NOW, TODAY, ScriptedPayer, approved

from posbatch.catalog import (
    Cart,
    CatalogStore,
    LineRequest,
    LotSource,
    LotTake,
    Receipt,
    TillCredential,
    pay_cart,
    price_cart,
)
from posbatch.catalog import _tables as tables
from posbatch.catalog._orders_http import HttpOrderBook
from posbatch.errors import CatalogError


def milk_cart(back_office: CatalogStore, quantity: int = 2) -> Cart:
    request = LineRequest(MILK, quantity, (LotTake("M-DEC15", quantity),), LotSource.SCAN)
    return price_cart(back_office.snapshot(), [request], today=TODAY, now=NOW)


def _paid_over_http(back_office: CatalogStore, served: str, till: TillCredential) -> Receipt:
    """Two of milk paid (STAN 000042, batch 000003) by till 10000009, its order over HTTP."""
    return pay_cart(
        milk_cart(back_office),
        payer=ScriptedPayer(approved("000042", "000003")),
        orders=HttpOrderBook(served, till),
        terminal_id="10000009",
        clock=lambda: NOW,
        today=TODAY,
    )


def test_paid_order_over_http_is_traced_with_stan(
    back_office: CatalogStore, served: str, till: TillCredential
) -> None:
    """A cart paid with orders over HTTP lands in the back office as paid, stock decremented."""
    receipt = _paid_over_http(back_office, served, till)
    lot = back_office.snapshot().lot(MILK, "M-DEC15")
    expected = ([("10000009", "paid", "000003", "000042", 2)], 8)
    assert expected == (
        [
            (row.terminal_id, row.status, row.batch_no, row.stan, row.quantity)
            for row in back_office.trace_lot("M-DEC15")
            if row.receipt_no == receipt.receipt_no
        ],
        lot.quantity_on_hand if lot else None,
    )


def test_interrupted_payment_is_listed_pending_over_http(
    back_office: CatalogStore, served: str, till: TillCredential
) -> None:
    """An order left pending by a failed payer is listed by the pending endpoint."""
    orders = HttpOrderBook(served, till)
    with pytest.raises(RuntimeError):
        pay_cart(
            milk_cart(back_office),
            payer=ScriptedPayer(RuntimeError("power cut")),
            orders=orders,
            terminal_id="10000009",
            clock=lambda: NOW,
            today=TODAY,
        )
    expected = [("10000009-N00000001", "pending", 2500, NOW)]
    assert expected == [
        (o.receipt_no, o.status, o.total_fen, o.opened_at) for o in orders.pending_orders()
    ]


def test_paying_a_paid_order_again_is_a_conflict(
    back_office: CatalogStore, served: str, till: TillCredential
) -> None:
    """A second 'paid' for the same order is answered 409, nothing changes."""
    orders = HttpOrderBook(served, till)
    order = orders.open_order(milk_cart(back_office), terminal_id="10000009", opened_at=NOW)
    orders.complete_order(order.order_id, approved("000001"), closed_at=NOW)
    with pytest.raises(CatalogError, match="HTTP 409"):
        orders.complete_order(order.order_id, approved("000001"), closed_at=NOW)


def test_unknown_order_is_not_found(served: str, till: TillCredential) -> None:
    """Closing an order the back office does not have is answered 404."""
    with pytest.raises(CatalogError, match="HTTP 404"):
        HttpOrderBook(served, till).close_unpaid(999, payment=None, note="x", closed_at=NOW)


def test_malformed_order_is_refused(served: str, till: TillCredential) -> None:
    """An order with a bad GTIN is answered 422 naming the line, not written."""
    orders = HttpOrderBook(served, till)
    with pytest.raises(CatalogError) as caught:
        orders._call(
            "POST",
            "/catalog/orders",
            {
                "terminal_id": "10000009",
                "opened_at": NOW.isoformat(),
                "catalog_version": 1,
                "lines": [
                    {
                        "line_no": 1,
                        "gtin": "6901234567891",
                        "product_name": "Milk",
                        "price_fen": 1,
                        "quantity": 1,
                        "lot_source": "none",
                    }
                ],
            },
        )
    expected = (
        f"back office {served}: POST /catalog/orders → HTTP 422: "
        "line 1: GTIN 6901234567891 has a bad check digit: expected 2, got 1"
    )
    assert (expected, []) == (str(caught.value), orders.pending_orders())


def test_an_order_stored_with_the_old_receipt_number_is_found_by_either_form(
    back_office: CatalogStore, served: str, till: TillCredential
) -> None:
    """``by-receipt`` of an order whose stored number is the old ``10000009-00000001``
    (written before receipt numbers had their N, never rewritten): found by the number on
    its paper receipt and by the N form; a number of neither form is still 404."""
    receipt = _paid_over_http(back_office, served, till)
    with back_office.engine.begin() as connection:  # as a database from before holds it
        connection.execute(
            sa.update(tables.orders)
            .where(tables.orders.c.receipt_no == receipt.receipt_no)
            .values(receipt_no="10000009-00000001")
        )
    orders = HttpOrderBook(served, till)
    found = [orders.order_detail(number) for number in ("10000009-00000001", "10000009-N00000001")]
    expected = ("10000009-N00000001", ["10000009-00000001", "10000009-00000001"], None)
    assert expected == (
        receipt.receipt_no,
        [detail.receipt_no if detail else None for detail in found],
        orders.order_detail("10000009-N00000002"),
    )
