"""Returns of checkout orders through the real terminal engine: stock, lines, trace, crashes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from catalog_samples import MILK, PILLS
from catalog_shop import TERMINAL_ID, Shop, open_shop

from posbatch.catalog import (
    LineRequest,
    LotSource,
    LotTake,
    Payment,
    ReturnKind,
    ReturnLine,
    ReturnPending,
    return_order,
)
from posbatch.catalog.payer import recover_pending_orders
from posbatch.errors import CheckoutRefused, Declined, HostUnreachable


@pytest.fixture
def shop(tmp_path: Path, db_url: str) -> Iterator[Shop]:
    opened = open_shop(tmp_path, db_url)
    yield opened
    opened.close()


def milk(quantity: int, lot_no: str = "M-DEC15") -> LineRequest:
    return LineRequest(MILK, quantity, (LotTake(lot_no, quantity),), LotSource.SCAN)


def pills(quantity: int) -> LineRequest:
    return LineRequest(PILLS, quantity, (LotTake("P1", quantity),), LotSource.SCAN)


def stock(shop: Shop, gtin: str, lot_no: str) -> tuple[int, int]:
    lot = shop.store.snapshot().lot(gtin, lot_no)
    assert lot is not None
    return lot.quantity_on_hand, lot.quarantined


def recover(shop: Shop) -> list[tuple[str, str]]:
    return recover_pending_orders(
        shop.store, shop.terminal.journal, terminal_id=TERMINAL_ID, closed_at=shop.clock()
    )


def test_void_of_a_whole_order_puts_its_lots_back(shop: Shop) -> None:
    """The whole order back while its sale is in the open batch: a void, stock restored."""
    receipt = shop.pay([milk(2)])
    slip = shop.give_back(receipt.receipt_no)
    void = shop.terminal.journal.transactions()[-1]
    row = shop.store.trace_lot("M-DEC15")[0]
    expected = (ReturnKind.VOID, 2500, (10, 0), ("voided", 2, "verified"), ("void", slip.return_no))
    assert expected == (
        slip.kind,
        slip.amount_fen,
        stock(shop, MILK, "M-DEC15"),
        (row.status, row.returned, row.payment_check),
        (void.kind, void.reference),
    )


def test_partial_refund_by_line_and_quantity(shop: Shop) -> None:
    """One unit of line 1 back: a refund of its price; the rest later refunds the order fully."""
    receipt = shop.pay([milk(3), pills(2)])
    first = shop.give_back(receipt.receipt_no, [ReturnLine(1, 1)])
    middle = shop.store.order_detail(receipt.receipt_no)
    second = shop.give_back(receipt.receipt_no)
    final = shop.store.order_detail(receipt.receipt_no)
    assert middle is not None and final is not None
    expected = (
        (ReturnKind.REFUND, 1250),
        ("part_refunded", [1, 0]),
        (ReturnKind.REFUND, 2 * 1250 + 2 * 3890),
        ("refunded", [3, 2]),
        ((10, 0), (20, 0)),
    )
    assert expected == (
        (first.kind, first.amount_fen),
        (middle.status, [line.returned for line in middle.lines]),
        (second.kind, second.amount_fen),
        (final.status, [line.returned for line in final.lines]),
        (stock(shop, MILK, "M-DEC15"), stock(shop, PILLS, "P1")),
    )


def test_whole_order_after_settlement_is_refunded_not_voided(shop: Shop) -> None:
    """A sale whose batch settled cannot be voided: the whole order comes back as a refund."""
    receipt = shop.pay([milk(2)])
    shop.terminal.settle()
    slip = shop.give_back(receipt.receipt_no)
    detail = shop.store.order_detail(receipt.receipt_no)
    assert detail is not None
    expected = (ReturnKind.REFUND, "refunded", (10, 0))
    assert expected == (slip.kind, detail.status, stock(shop, MILK, "M-DEC15"))


def test_return_of_a_recalled_lot_goes_to_quarantine(shop: Shop) -> None:
    """Units of a lot recalled after the sale come back to quarantine, never to the shelf."""
    receipt = shop.pay([milk(2)])
    shop.store.recall("M-DEC15", gtin=MILK, reason="notice 1", actor="qa", at=shop.clock())
    shop.give_back(receipt.receipt_no)
    expected = (0, 10)
    assert expected == stock(shop, MILK, "M-DEC15")


def test_goods_put_aside_by_the_cashier_are_quarantined(shop: Shop) -> None:
    """A damaged pack brought back goes to quarantine when the cashier says so."""
    receipt = shop.pay([milk(2)])
    shop.give_back(receipt.receipt_no, [ReturnLine(1, 1)], restock=False)
    expected = (8, 1)
    assert expected == stock(shop, MILK, "M-DEC15")


def test_crash_after_the_refund_was_approved_is_recovered(shop: Shop) -> None:
    """The till dies between the terminal's approval and the back office: recovery books it."""
    receipt = shop.pay([milk(2)])
    opened = shop.store.open_return(
        receipt.receipt_no,
        [ReturnLine(1, 1)],
        void_allowed=False,
        restock=True,
        terminal_id=TERMINAL_ID,
        opened_at=shop.clock(),
    )
    sale = shop.terminal.journal.transactions()[-1]
    shop.terminal.refund(sale.stan, opened.amount_fen, reference=opened.return_no)
    before = stock(shop, MILK, "M-DEC15")
    done = recover(shop)
    expected = ((8, 0), (9, 0), "done", [opened.return_no])
    detail = shop.store.order_detail(receipt.receipt_no)
    assert detail is not None
    assert expected == (
        before,
        stock(shop, MILK, "M-DEC15"),
        detail.returns[0].status,
        [number for number, _ in done],
    )


def test_crash_before_anything_was_sent_fails_the_return(shop: Shop) -> None:
    """A return written but never sent moved no money: recovery fails it, a new one may follow."""
    receipt = shop.pay([milk(2)])
    shop.store.open_return(
        receipt.receipt_no,
        None,
        void_allowed=True,
        restock=True,
        terminal_id=TERMINAL_ID,
        opened_at=shop.clock(),
    )
    done = recover(shop)
    again = shop.give_back(receipt.receipt_no)
    expected = ([(f"{receipt.receipt_no}-R1", "failed: never sent")], f"{receipt.receipt_no}-R2")
    assert expected == (done, again.return_no)


def test_unanswered_refund_stays_pending_until_its_answer(shop: Shop) -> None:
    """A refund the host did not answer is resent by the terminal; the goods go back then."""
    receipt = shop.pay([milk(2)])
    shop.terminal.settle()
    shop.link.down = True
    with pytest.raises(ReturnPending):
        shop.give_back(receipt.receipt_no)
    pending = [item.return_no for item in shop.store.pending_returns()]
    before = stock(shop, MILK, "M-DEC15")
    recover(shop)  # the refund is still to be resent: the return stays pending
    still = [item.return_no for item in shop.store.pending_returns()]
    shop.link.down = False
    shop.terminal.flush()
    recover(shop)
    expected = ([f"{receipt.receipt_no}-R1"], (8, 0), pending, [], (10, 0))
    assert expected == (
        pending,
        before,
        still,
        shop.store.pending_returns(),
        stock(shop, MILK, "M-DEC15"),
    )


def test_unanswered_void_is_reversed_and_the_return_fails(shop: Shop) -> None:
    """No answer to a void: the terminal reverses it; nothing comes back, the order stays paid."""
    receipt = shop.pay([milk(2)])
    shop.link.down = True
    with pytest.raises(HostUnreachable):
        shop.give_back(receipt.receipt_no)
    detail = shop.store.order_detail(receipt.receipt_no)
    assert detail is not None
    expected = ("paid", "failed", (8, 0))
    assert expected == (detail.status, detail.returns[0].status, stock(shop, MILK, "M-DEC15"))


def test_void_made_with_the_terminal_command_is_recorded(shop: Shop) -> None:
    """`posbatch terminal void` of a sale that paid an order: its lots go back at recovery."""
    receipt = shop.pay([milk(2)])
    sale = shop.terminal.journal.transactions()[-1]
    shop.terminal.void(sale.stan)
    done = recover(shop)
    recover(shop)  # a second pass records nothing twice
    detail = shop.store.order_detail(receipt.receipt_no)
    assert detail is not None
    void_stan = shop.terminal.journal.transactions()[-1].stan
    expected = (
        [(receipt.receipt_no, f"void STAN {void_stan:06d}: all lines back")],
        "voided",
        ["journal"],
        (10, 0),
    )
    assert expected == (
        done,
        detail.status,
        [item.source for item in detail.returns],
        stock(shop, MILK, "M-DEC15"),
    )


def test_partial_refund_with_the_terminal_command_is_money_only(shop: Shop) -> None:
    """`terminal refund` of part of a sale: recorded, lines unknown, stock left for a count."""
    receipt = shop.pay([milk(2)])
    sale = shop.terminal.journal.transactions()[-1]
    shop.terminal.refund(sale.stan, 100)
    recover(shop)
    detail = shop.store.order_detail(receipt.receipt_no)
    assert detail is not None
    note = detail.returns[0].note or ""
    expected = ("part_refunded", 100, (), True, (8, 0))
    assert expected == (
        detail.status,
        detail.refunded_fen,
        detail.returns[0].lines,
        "lines not stated" in note,
        stock(shop, MILK, "M-DEC15"),
    )


def test_return_on_another_terminal_is_refused(shop: Shop) -> None:
    """A receipt is returned on the terminal whose journal holds its card sale."""
    receipt = shop.pay([milk(2)])
    with pytest.raises(CheckoutRefused, match="was paid on terminal 10000001: return it there"):
        return_order(
            receipt.receipt_no,
            None,
            book=shop.store,
            refunder=shop.payer(),
            terminal_id="10000002",
            clock=shop.clock,
        )


def test_more_than_was_sold_is_refused_before_anything_is_sent(shop: Shop) -> None:
    """Five back of a line that sold two: refused, no transaction journaled, no return written."""
    receipt = shop.pay([milk(2)])
    count = len(shop.terminal.journal.transactions())
    with pytest.raises(CheckoutRefused) as caught:
        shop.give_back(receipt.receipt_no, [ReturnLine(1, 5)])
    detail = shop.store.order_detail(receipt.receipt_no)
    assert detail is not None
    expected = (
        f"line 1 of receipt {receipt.receipt_no}: 2 can come back, not 5",
        count,
        (),
    )
    assert expected == (
        str(caught.value),
        len(shop.terminal.journal.transactions()),
        detail.returns,
    )


def test_a_second_return_waits_for_the_pending_one(shop: Shop) -> None:
    """While a return is pending, another of the same receipt is refused (no double refund)."""
    receipt = shop.pay([milk(2)])
    shop.terminal.settle()
    shop.link.down = True
    with pytest.raises(ReturnPending):
        shop.give_back(receipt.receipt_no, [ReturnLine(1, 1)])
    shop.link.down = False
    with pytest.raises(CheckoutRefused, match="is still pending"):
        shop.give_back(receipt.receipt_no, [ReturnLine(1, 1)])


class DecliningRefunder:
    def can_void(self, receipt_no: str) -> bool:
        return False

    def give_back(
        self, kind: ReturnKind, *, receipt_no: str, amount_fen: int, reference: str
    ) -> Payment:
        return Payment(False, "51", "000099", "000001")


def test_declined_refund_moves_nothing(shop: Shop) -> None:
    """A declined refund fails the return: no stock back, the order still paid."""
    receipt = shop.pay([milk(2)])
    with pytest.raises(Declined):
        return_order(
            receipt.receipt_no,
            None,
            book=shop.store,
            refunder=DecliningRefunder(),
            terminal_id=TERMINAL_ID,
            clock=shop.clock,
        )
    detail = shop.store.order_detail(receipt.receipt_no)
    assert detail is not None
    expected = ("paid", "failed", (8, 0))
    assert expected == (detail.status, detail.returns[0].status, stock(shop, MILK, "M-DEC15"))


def test_the_trace_shows_what_came_back(shop: Shop) -> None:
    """The trace marks each line: the one all back is refunded, the other still sold."""
    receipt = shop.pay([milk(3), pills(1)])
    shop.give_back(receipt.receipt_no, [ReturnLine(1, 3)])
    rows = shop.store.trace_lot("M-DEC15") + shop.store.trace_lot("P1")
    expected = [("part_refunded", "refunded", 3, 3), ("part_refunded", "paid", 1, 0)]
    assert expected == [(r.status, r.line_status, r.quantity, r.returned) for r in rows]
