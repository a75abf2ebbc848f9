"""The till behind `posbatch checkout`: lines are only added when the cart can be sold."""

from __future__ import annotations

import dataclasses

import pytest
from catalog_samples import MILK, NOW, PILLS, catalog_lots, catalog_products

from posbatch.catalog import CatalogSnapshot
from posbatch.catalog._till import Till
from posbatch.errors import CatalogError, CheckoutRefused


def till(snapshot: CatalogSnapshot) -> Till:
    return Till(snapshot, clock=lambda: NOW, separators=("|",))


def test_scan_with_lot_adds_a_line(snapshot: CatalogSnapshot) -> None:
    """A GS1 scan with a known lot becomes a priced line."""
    cart = till(snapshot).add_scan(f"]C101{PILLS}|10P1|17270630", quantity=2)
    expected = (7780, "P1")
    assert expected == (cart.total_fen, cart.lines[0].takes[0].lot.lot_no)


def test_refused_scan_leaves_the_cart_unchanged(snapshot: CatalogSnapshot) -> None:
    """A plain EAN-13 of a lot-tracked product is refused and not added."""
    current = till(snapshot)
    with pytest.raises(CheckoutRefused):
        current.add_scan("6901234567892")
    expected: list[object] = []
    assert expected == current.requests


def test_fefo_after_refusal_adds_split_line(snapshot: CatalogSnapshot) -> None:
    """After a no-lot refusal the cashier can take the FEFO lots instead."""
    cart = till(snapshot).add_fefo(MILK, 4)
    expected = [("M-DEC01", 3), ("M-DEC15", 1)]
    assert expected == [(t.lot.lot_no, t.quantity) for t in cart.lines[0].takes]


def test_remove_unknown_line_is_an_error(snapshot: CatalogSnapshot) -> None:
    """Removing a line that does not exist names the cart size."""
    with pytest.raises(CatalogError) as caught:
        till(snapshot).remove(3)
    expected = "there is no line 3 (the cart has 0)"
    assert expected == str(caught.value)


def test_refresh_reports_price_change(snapshot: CatalogSnapshot) -> None:
    """Moving to a newer snapshot reports the price changes of cart lines."""
    current = till(snapshot)
    current.add_manual(MILK, 1, "M-DEC15", "M-DEC15")
    products = [
        dataclasses.replace(p, price_fen=990, version=2) if p.gtin == MILK else p
        for p in catalog_products()
    ]
    newer = CatalogSnapshot.build(products, catalog_lots(), version=2)
    expected = (["price of Milk 1L is now 9.90 (was 12.50)"], 990)
    assert expected == (
        [change.message_en for change in current.refresh(newer)],
        current.cart().total_fen,
    )
