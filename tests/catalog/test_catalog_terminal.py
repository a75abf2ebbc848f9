"""Checkout paid through the real terminal engine, joined in-process to a real host core."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from catalog_samples import MILK, TODAY, catalog_lots, catalog_products

from posbatch.catalog import (
    Cart,
    CatalogStore,
    LineRequest,
    LotSource,
    LotTake,
    Receipt,
    pay_cart,
    price_cart,
)
from posbatch.catalog.payer import Card, TerminalPayer, recover_pending_orders
from posbatch.errors import ConfigError, Declined, HostUnreachable
from posbatch.host import HostCore, HostStore
from posbatch.host.issuer import TEST_PAN_APPROVED, TEST_PAN_INSUFFICIENT_FUNDS
from posbatch.terminal import InProcessLink, Journal, Terminal, TerminalSecrets

MERCHANT_ID = "898110054110001"
TERMINAL_ID = "10000001"
MASTER_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
START = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


class StepClock:
    """Moves one second per reading (host, terminal and checkout share it)."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class Link:
    """In-process link to the host core that can go dead (every answer lost)."""

    def __init__(self, core: HostCore) -> None:
        self.inner = InProcessLink(core)
        self.down = False

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        return None if self.down else self.inner(frame, timeout_ms)


@dataclass
class Shop:
    clock: StepClock
    host: HostStore
    link: Link
    terminal: Terminal
    store: CatalogStore

    def payer(self, pan: str = TEST_PAN_APPROVED) -> TerminalPayer:
        return TerminalPayer(self.terminal, read_card=lambda amount_fen: Card(pan, "3012"))

    def cart_of_milk(self, quantity: int = 2) -> Cart:
        request = LineRequest(MILK, quantity, (LotTake("M-DEC15", quantity),), LotSource.SCAN)
        return price_cart(self.store.snapshot(), [request], today=TODAY, now=START)


@pytest.fixture
def shop(tmp_path: Path, db_url: str) -> Iterator[Shop]:
    """A host core, a terminal over a journal file, and the back-office catalog store."""
    clock = StepClock()
    host = HostStore.open("sqlite://", pan_key=b"k" * 32)
    host.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
    link = Link(HostCore(host, clock=clock))
    journal = Journal.open(f"sqlite:///{tmp_path / 'journal.db'}")
    Terminal.initialize(
        journal,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        host_address="in-process",
        clock=clock,
    )
    terminal = Terminal(journal, TerminalSecrets(MASTER_KEY, b"p" * 32), clock=clock, exchange=link)
    store = CatalogStore.open(db_url)
    store.import_catalog(catalog_products(), catalog_lots(), at=START, reason="sample")
    yield Shop(clock, host, link, terminal, store)
    store.close()
    journal.engine.dispose()
    host.close()


def pay(shop: Shop, payer: TerminalPayer) -> Receipt:
    return pay_cart(
        shop.cart_of_milk(),
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
        shop.cart_of_milk(),
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
        shop.cart_of_milk(),
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
