"""A shop in one process for the catalog tests: host core, terminal engine, back office.

The terminal pays and gives money back through the real engine over an
in-process link to a real host core; the back office checks payments
against that host's store (as it does when they share a database).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from catalog_samples import TODAY, catalog_lots, catalog_products

from posbatch.catalog import (
    CatalogStore,
    HostStoreVerifier,
    LineRequest,
    Receipt,
    ReturnLine,
    ReturnReceipt,
    pay_cart,
    price_cart,
    return_order,
)
from posbatch.catalog.payer import Card, TerminalPayer
from posbatch.host import HostCore, HostStore
from posbatch.host.issuer import TEST_PAN_APPROVED
from posbatch.terminal import InProcessLink, Journal, Terminal, TerminalSecrets
from testbed import MASTER_KEY, MERCHANT_ID, START, TERMINAL_ID, StepClock


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

    def pay(self, requests: Sequence[LineRequest], pan: str = TEST_PAN_APPROVED) -> Receipt:
        cart = price_cart(self.store.snapshot(), list(requests), today=TODAY, now=self.clock.now)
        return pay_cart(
            cart,
            payer=self.payer(pan),
            orders=self.store,
            terminal_id=TERMINAL_ID,
            clock=self.clock,
            today=TODAY,
        )

    def give_back(
        self, receipt_no: str, lines: Sequence[ReturnLine] | None = None, *, restock: bool = True
    ) -> ReturnReceipt:
        return return_order(
            receipt_no,
            lines,
            book=self.store,
            refunder=self.payer(),
            terminal_id=TERMINAL_ID,
            clock=self.clock,
            restock=restock,
        )

    def close(self) -> None:
        self.store.close()
        self.terminal.journal.engine.dispose()
        self.host.close()


def open_shop(tmp_path: Path, db_url: str, *, host_url: str = "sqlite://") -> Shop:
    """The sample catalog in a back office, a terminal and a host it pays through."""
    clock = StepClock()
    host = HostStore.open(host_url, pan_key=b"k" * 32)
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
    store = CatalogStore.open(db_url, payment_verifier=HostStoreVerifier.over(host))
    store.import_catalog(catalog_products(), catalog_lots(), at=START, reason="sample")
    return Shop(clock, host, link, terminal, store)
