"""Checkout paid through the real terminal engine, joined in-process to a real host core."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from catalog_samples import MILK, TODAY
from catalog_shop import START, TERMINAL_ID, Shop, open_shop

from posbatch.catalog import (
    Cart,
    LineRequest,
    LotSource,
    LotTake,
    Receipt,
    ReturnKind,
    pay_cart,
    price_cart,
)
from posbatch.catalog.payer import Card, TerminalPayer, recover_pending_orders
from posbatch.errors import ConfigError, Declined, HostUnreachable
from posbatch.host.issuer import TEST_PAN_APPROVED, TEST_PAN_INSUFFICIENT_FUNDS


@pytest.fixture
def shop(tmp_path: Path, db_url: str) -> Iterator[Shop]:
    """A host core, a terminal over a journal file, and the back-office catalog store."""
    opened = open_shop(tmp_path, db_url)
    yield opened
    opened.close()


def cart_of_milk(shop: Shop, quantity: int = 2) -> Cart:
    request = LineRequest(MILK, quantity, (LotTake("M-DEC15", quantity),), LotSource.SCAN)
    return price_cart(shop.store.snapshot(), [request], today=TODAY, now=START)


def pay(shop: Shop, payer: TerminalPayer) -> Receipt:
    return pay_cart(
        cart_of_milk(shop),
        payer=payer,
        orders=shop.store,
        terminal_id=TERMINAL_ID,
        clock=shop.clock,
        today=TODAY,
    )


def test_approved_card_sale_stores_terminal_stan_and_batch(shop: Shop) -> None:
    """The order carries the terminal sale's STAN and batch_no; the sale refers to the receipt."""
    receipt = pay(shop, shop.payer())
    sale = shop.terminal.journal.transactions()[-1]
    row = shop.store.trace_lot("M-DEC15")[0]
    expected = (
        ("paid", f"{sale.stan:06d}", f"{sale.batch_no:06d}"),
        receipt.receipt_no,
        2500,
    )
    assert expected == ((row.status, row.stan, row.batch_no), sale.reference, sale.amount_fen)


def test_declined_card_closes_order_unpaid(shop: Shop) -> None:
    """A card the issuer declines (51) raises Declined and leaves stock untouched."""
    with pytest.raises(Declined) as caught:
        pay(shop, shop.payer(TEST_PAN_INSUFFICIENT_FUNDS))
    lot = shop.store.snapshot().lot(MILK, "M-DEC15")
    expected = ("51", ["unpaid"], 10)
    assert expected == (
        caught.value.response_code,
        [row.status for row in shop.store.trace_lot("M-DEC15", include_unpaid=True)],
        lot.quantity_on_hand if lot else None,
    )


def test_dead_network_closes_order_unpaid(shop: Shop) -> None:
    """No answer from the host: HostUnreachable, the order is closed unpaid, stock kept."""
    shop.terminal.sign_on()
    shop.link.down = True
    with pytest.raises(HostUnreachable):
        pay(shop, shop.payer())
    expected = ["unpaid"]
    assert expected == [row.status for row in shop.store.trace_lot("M-DEC15", include_unpaid=True)]


def test_crash_after_approval_is_recovered_from_the_journal(shop: Shop) -> None:
    """A pending order whose receipt the journal shows approved is completed on restart."""
    order = shop.store.open_order(
        cart_of_milk(shop),
        terminal_id=TERMINAL_ID,
        opened_at=START,
    )
    result = shop.terminal.sale(2500, TEST_PAN_APPROVED, reference=order.receipt_no)
    done = recover_pending_orders(
        shop.store, shop.terminal.journal, terminal_id=TERMINAL_ID, closed_at=shop.clock()
    )
    stan, batch_no = f"{result.stan:06d}", f"{result.batch_no:06d}"
    expected = (
        [(order.receipt_no, f"paid: STAN {stan} batch {batch_no}")],
        [("paid", stan)],
        [],
    )
    assert expected == (
        done,
        [(row.status, row.stan) for row in shop.store.trace_lot("M-DEC15", include_unpaid=True)],
        shop.store.pending_orders(),
    )


def test_crash_before_charging_is_closed_unpaid(shop: Shop) -> None:
    """A pending order with no sale in the journal was never charged: closed unpaid."""
    order = shop.store.open_order(
        cart_of_milk(shop),
        terminal_id=TERMINAL_ID,
        opened_at=START,
    )
    done = recover_pending_orders(
        shop.store, shop.terminal.journal, terminal_id=TERMINAL_ID, closed_at=shop.clock()
    )
    expected = [(order.receipt_no, "unpaid: never charged")]
    assert expected == done


def test_mistyped_card_is_not_sent(shop: Shop) -> None:
    """A card number of the wrong length is refused before the terminal sends anything."""
    with pytest.raises(ConfigError, match="a card number is 12 to 19 digits"):
        pay(shop, shop.payer("1234"))
    expected: list[object] = []
    assert expected == shop.terminal.journal.transactions()


@pytest.mark.parametrize("expiry", ["9913", "3000", "３０１２"])
def test_an_expiry_that_is_not_a_month_is_not_sent(shop: Shop, expiry: str) -> None:
    """An expiry typed at the till that no card carries (month 13, month 00, other digits)
    is refused before the terminal sends anything, as a card number of the wrong length is."""
    payer = TerminalPayer(
        shop.terminal, read_card=lambda amount_fen: Card(TEST_PAN_APPROVED, expiry)
    )
    with pytest.raises(ConfigError, match="YYMM"):
        pay(shop, payer)
    expected: list[object] = []
    assert expected == shop.terminal.journal.transactions()


def test_a_sale_journaled_with_the_old_receipt_number_is_found_by_either_form(
    shop: Shop,
) -> None:
    """A sale made before receipt numbers had their N carries the old form as its journal
    reference: the payer finds it by the old form and by the N form, and voids it."""
    sale = shop.terminal.sale(2500, TEST_PAN_APPROVED, reference=f"{TERMINAL_ID}-00000007")
    payer = shop.payer()
    expected = (True, True, True)
    assert expected == (
        payer.can_void(f"{TERMINAL_ID}-00000007"),
        payer.can_void(f"{TERMINAL_ID}-N00000007"),
        payer.give_back(
            ReturnKind.VOID,
            receipt_no=f"{TERMINAL_ID}-N00000007",
            amount_fen=sale.amount_fen,
            reference=f"{TERMINAL_ID}-N00000007-R1",
        ).approved,
    )
