"""The catalog store on SQLite and PostgreSQL: import/export, versions, orders, recall trace."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections.abc import Iterator

import pytest
from catalog_samples import (
    BAG,
    MILK,
    NOW,
    PILLS,
    TODAY,
    ScriptedPayer,
    approved,
    catalog_lots,
    catalog_products,
)

from posbatch.catalog import (
    CatalogChanged,
    CatalogStore,
    LineRequest,
    LotSource,
    LotTake,
    Payment,
    parse_catalog_csv,
    pay_cart,
    price_cart,
    write_catalog_csv,
)
from posbatch.errors import CatalogError, Declined, HostUnreachable, IllegalTransition
from posbatch.host import HostStore
from testbed import MERCHANT_ID, TERMINAL_ID

CSV = (
    "gtin,name,price_fen,lot_tracked,lot_no,expiry,quantity_on_hand,recalled,trace_prefix\n"
    "6901234567892,Milk 1L,1250,yes,M-DEC01,2026-12-01,3,no,\n"
    "6901234567892,Milk 1L,1250,yes,M-DEC15,2026-12-15,10,no,\n"
    "6909876543212,Paper bag,50,no,,,200,,\n"
)


@pytest.fixture
def store(db_url: str) -> Iterator[CatalogStore]:
    """A migrated, empty catalog store (SQLite file, then PostgreSQL schema)."""
    opened = CatalogStore.open(db_url)
    yield opened
    opened.close()


@pytest.fixture
def stocked(store: CatalogStore) -> CatalogStore:
    """The store with the sample catalog imported."""
    store.import_catalog(catalog_products(), catalog_lots(), at=NOW, reason="sample")
    return store


def milk_line(quantity: int, lot_no: str = "M-DEC15") -> LineRequest:
    return LineRequest(MILK, quantity, (LotTake(lot_no, quantity),), LotSource.SCAN)


def test_csv_import_then_export_round_trips(store: CatalogStore) -> None:
    """Exporting an imported CSV gives the same rows (GTINs in 14-digit form)."""
    store.import_catalog(*parse_catalog_csv(CSV), at=NOW, reason="csv")
    out = io.StringIO()
    write_catalog_csv(*store.products_and_lots(), out)
    expected = CSV.replace("6901234567892", "06901234567892").replace(
        "6909876543212", "06909876543212"
    )
    assert expected == out.getvalue()


def test_bad_csv_rows_are_all_reported_and_nothing_imported(store: CatalogStore) -> None:
    """Every bad row is named with its row number; the store stays empty."""
    bad = (
        "gtin,name,price_fen,lot_tracked,lot_no,expiry,quantity_on_hand,recalled\n"
        "6901234567892,Milk 1L,1250,yes,M1,2026-12-01,3,no\n"
        "6901234567891,Bad GTIN,10,no,,,,\n"
        "6901234567892,Milk 1L,12.50,yes,M2,2026-12-01,3,no\n"
        "6901234567892,Milk 1L,1250,yes,M3,2026-13-01,3,no\n"
    )
    with pytest.raises(CatalogError) as caught:
        store.import_catalog(*parse_catalog_csv(bad), at=NOW, reason="csv")
    expected = (
        "3 bad row(s), nothing imported:\n"
        "row 3: GTIN 6901234567891 has a bad check digit: expected 2, got 1\n"
        "row 4: price_fen '12.50' is not a whole number (fen, no decimal point)\n"
        "row 5: expiry '2026-13-01' is not a date YYYY-MM-DD",
        ([], []),
    )
    assert expected == (str(caught.value), store.products_and_lots())


def test_import_bumps_version_only_for_changed_rows(stocked: CatalogStore) -> None:
    """A second import changing one price stamps only that product with a new version."""
    products = [
        dataclasses.replace(p, price_fen=1300) if p.gtin == MILK else p for p in catalog_products()
    ]
    summary = stocked.import_catalog(products, catalog_lots(), at=NOW, reason="price")
    changes = stocked.changes_since(1)
    expected = (2, 1, 0, [MILK], [])
    assert expected == (
        summary.version,
        summary.products_changed,
        summary.lots_changed,
        [p.gtin for p in changes.products],
        list(changes.lots),
    )


def test_unchanged_import_creates_no_version(stocked: CatalogStore) -> None:
    """Importing the same catalog again changes nothing and keeps the version."""
    summary = stocked.import_catalog(catalog_products(), catalog_lots(), at=NOW, reason="same")
    expected = (1, 0, 0)
    assert expected == (summary.version, summary.products_changed, summary.lots_changed)


def test_snapshot_holds_catalog_and_version(stocked: CatalogStore) -> None:
    """The snapshot of the back office has every product and lot at the head version."""
    snapshot = stocked.snapshot()
    expected = (1, 3, 6, None)
    assert expected == (
        snapshot.version,
        len(snapshot.products),
        sum(len(lots) for lots in snapshot.lots.values()),
        snapshot.synced_at,
    )


def test_approved_payment_completes_order_and_decrements_stock(stocked: CatalogStore) -> None:
    """An approved sale stores STAN and batch_no on the order and takes the lot's stock."""
    cart = price_cart(stocked.snapshot(), [milk_line(4)], today=TODAY, now=NOW)
    payer = ScriptedPayer(approved("000123", "000007"))
    receipt = pay_cart(
        cart, payer=payer, orders=stocked, terminal_id=TERMINAL_ID, clock=lambda: NOW, today=TODAY
    )
    trace = stocked.trace_lot("M-DEC15")
    expected = (
        [5000],
        "10000001-N00000001",
        [("paid", "000007", "000123", 4)],
        6,
    )
    assert expected == (
        payer.amounts,
        receipt.receipt_no,
        [(row.status, row.batch_no, row.stan, row.quantity) for row in trace],
        stocked.snapshot().lot(MILK, "M-DEC15").quantity_on_hand,  # type: ignore[union-attr]
    )


def test_declined_payment_closes_order_unpaid_and_keeps_stock(stocked: CatalogStore) -> None:
    """A declined card leaves stock alone and closes the order unpaid with the response code."""
    cart = price_cart(stocked.snapshot(), [milk_line(1)], today=TODAY, now=NOW)
    payer = ScriptedPayer(Payment(False, "51", "000124", "000007"))
    with pytest.raises(Declined) as caught:
        pay_cart(
            cart,
            payer=payer,
            orders=stocked,
            terminal_id=TERMINAL_ID,
            clock=lambda: NOW,
            today=TODAY,
        )
    lot = stocked.snapshot().lot(MILK, "M-DEC15")
    expected = ("51", [("unpaid", "000124")], 10)
    assert expected == (
        caught.value.response_code,
        [(row.status, row.stan) for row in stocked.trace_lot("M-DEC15", include_unpaid=True)],
        lot.quantity_on_hand if lot else None,
    )


def test_no_answer_closes_order_unpaid(stocked: CatalogStore) -> None:
    """HostUnreachable from the payer closes the order unpaid and propagates."""
    cart = price_cart(stocked.snapshot(), [milk_line(1)], today=TODAY, now=NOW)
    payer = ScriptedPayer(HostUnreachable("no answer in 30000 ms"))
    with pytest.raises(HostUnreachable):
        pay_cart(
            cart,
            payer=payer,
            orders=stocked,
            terminal_id=TERMINAL_ID,
            clock=lambda: NOW,
            today=TODAY,
        )
    expected = (["unpaid"], [])
    assert expected == (
        [row.status for row in stocked.trace_lot("M-DEC15", include_unpaid=True)],
        stocked.pending_orders(),
    )


def test_crash_during_payment_leaves_order_pending(stocked: CatalogStore) -> None:
    """If the payer fails unexpectedly the order stays pending, listed for follow-up."""
    cart = price_cart(stocked.snapshot(), [milk_line(1)], today=TODAY, now=NOW)
    payer = ScriptedPayer(RuntimeError("power cut"))
    with pytest.raises(RuntimeError):
        pay_cart(
            cart,
            payer=payer,
            orders=stocked,
            terminal_id=TERMINAL_ID,
            clock=lambda: NOW,
            today=TODAY,
        )
    expected = [("10000001-N00000001", "pending", 1250)]
    assert expected == [
        (order.receipt_no, order.status, order.total_fen) for order in stocked.pending_orders()
    ]


def test_paid_order_cannot_be_paid_again(stocked: CatalogStore) -> None:
    """The order state machine refuses paid → paid."""
    cart = price_cart(stocked.snapshot(), [milk_line(1)], today=TODAY, now=NOW)
    order = stocked.open_order(cart, terminal_id=TERMINAL_ID, opened_at=NOW)
    stocked.complete_order(order.order_id, approved("000001"), closed_at=NOW)
    with pytest.raises(IllegalTransition):
        stocked.complete_order(order.order_id, approved("000001"), closed_at=NOW)


def test_price_change_before_payment_charges_nothing(stocked: CatalogStore) -> None:
    """A price change between scan and payment refuses before the card is charged."""
    cart = price_cart(stocked.snapshot(), [milk_line(1)], today=TODAY, now=NOW)
    products = [
        dataclasses.replace(p, price_fen=1300) if p.gtin == MILK else p for p in catalog_products()
    ]
    stocked.import_catalog(products, catalog_lots(), at=NOW, reason="price")
    payer = ScriptedPayer(approved("000001"))
    with pytest.raises(CatalogChanged) as caught:
        pay_cart(
            cart,
            payer=payer,
            orders=stocked,
            terminal_id=TERMINAL_ID,
            clock=lambda: NOW,
            today=TODAY,
            fresh_snapshot=stocked.snapshot(),
        )
    expected = (
        "the catalog changed since the scan: price of Milk 1L is now 13.00 (was 12.50)"
        " — check the cart and confirm again",
        [],
    )
    assert expected == (caught.value.reason_en, payer.amounts)


def test_multi_lot_line_stores_one_row_per_lot(stocked: CatalogStore) -> None:
    """A line split over two lots is traced under each lot with its own quantity."""
    request = LineRequest(MILK, 5, (LotTake("M-DEC01", 3), LotTake("M-DEC15", 2)), LotSource.FEFO)
    cart = price_cart(stocked.snapshot(), [request], today=TODAY, now=NOW)
    pay_cart(
        cart,
        payer=ScriptedPayer(approved("000009")),
        orders=stocked,
        terminal_id=TERMINAL_ID,
        clock=lambda: NOW,
        today=TODAY,
    )
    expected = ([3], [2])
    assert expected == (
        [row.quantity for row in stocked.trace_lot("M-DEC01")],
        [row.quantity for row in stocked.trace_lot("M-DEC15", include_unpaid=True)],
    )


def test_recall_trace_across_two_terminals_and_two_days(stocked: CatalogStore) -> None:
    """Trace lists every sale of a lot across terminals and days with batch_no and STAN."""
    day_one = NOW
    day_two = NOW + dt.timedelta(days=1, hours=2)
    sales = [
        (TERMINAL_ID, day_one, "000001", "000011", "P1"),
        ("10000002", day_one + dt.timedelta(minutes=5), "000003", "000021", "P1"),
        (TERMINAL_ID, day_two, "000002", "000012", "P1"),
        ("10000002", day_two + dt.timedelta(minutes=1), "000004", "000022", None),
    ]
    for terminal_id, at, batch_no, stan, lot_no in sales:
        request = (
            LineRequest(PILLS, 1, (LotTake(lot_no, 1),), LotSource.SCAN)
            if lot_no
            else LineRequest(BAG, 1)
        )
        cart = price_cart(stocked.snapshot(), [request], today=at.date(), now=at)
        pay_cart(
            cart,
            payer=ScriptedPayer(approved(stan, batch_no)),
            orders=stocked,
            terminal_id=terminal_id,
            clock=lambda at=at: at,  # type: ignore[misc]
            today=at.date(),
        )
    trace = stocked.trace_lot("P1")
    expected = [
        ("10000001-N00000001", TERMINAL_ID, "000001", "000011", day_one),
        ("10000002-N00000002", "10000002", "000003", "000021", day_one + dt.timedelta(minutes=5)),
        ("10000001-N00000003", TERMINAL_ID, "000002", "000012", day_two),
    ]
    assert expected == [
        (r.receipt_no, r.terminal_id, r.batch_no, r.stan, r.opened_at) for r in trace
    ]


def test_trace_of_unsold_lot_is_empty(stocked: CatalogStore) -> None:
    """A lot nobody sold has an empty trace."""
    expected = []
    assert expected == stocked.trace_lot("M-DEC01")


def test_trace_leaves_out_unpaid_orders_by_default(stocked: CatalogStore) -> None:
    """A declined sale did not sell the lot: the recall trace omits it unless asked."""
    cart = price_cart(stocked.snapshot(), [milk_line(1)], today=TODAY, now=NOW)
    with pytest.raises(Declined):
        pay_cart(
            cart,
            payer=ScriptedPayer(Payment(False, "51", "000124", "000007")),
            orders=stocked,
            terminal_id=TERMINAL_ID,
            clock=lambda: NOW,
            today=TODAY,
        )
    expected = (0, 1)
    assert expected == (
        len(stocked.trace_lot("M-DEC15")),
        len(stocked.trace_lot("M-DEC15", include_unpaid=True)),
    )


def test_times_keep_their_instant_whatever_the_zone(stocked: CatalogStore) -> None:
    """An order opened at 18:30 Beijing time reads back as the same instant (10:30 UTC)."""
    beijing = dt.timezone(dt.timedelta(hours=8))
    cart = price_cart(stocked.snapshot(), [milk_line(1)], today=TODAY, now=NOW)
    stocked.open_order(cart, terminal_id=TERMINAL_ID, opened_at=NOW.astimezone(beijing))
    expected = NOW
    assert expected == stocked.trace_lot("M-DEC15")[0].opened_at


def test_catalog_shares_a_database_with_the_host(db_url: str) -> None:
    """Host and catalog migrate the same database side by side (own tables, own versions)."""
    host = HostStore.open(db_url, pan_key=b"k" * 32)
    catalog = CatalogStore.open(db_url)
    summary = catalog.import_catalog(catalog_products(), catalog_lots(), at=NOW, reason="x")
    host.add_terminal(MERCHANT_ID, TERMINAL_ID, b"m" * 16, now=NOW)
    catalog.close()
    host.close()
    reopened = CatalogStore.open(db_url)
    expected = (1, 1)
    assert expected == (summary.version, reopened.version())
    reopened.close()


def test_payer_raising_declined_closes_order_unpaid(stocked: CatalogStore) -> None:
    """A payer that raises Declined (instead of returning it) still closes the order unpaid."""
    cart = price_cart(stocked.snapshot(), [milk_line(1)], today=TODAY, now=NOW)
    with pytest.raises(Declined):
        pay_cart(
            cart,
            payer=ScriptedPayer(Declined("no", response_code="05")),
            orders=stocked,
            terminal_id=TERMINAL_ID,
            clock=lambda: NOW,
            today=TODAY,
        )
    expected = ([], ["unpaid"])
    assert expected == (
        stocked.pending_orders(),
        [row.status for row in stocked.trace_lot("M-DEC15", include_unpaid=True)],
    )
