"""Checkout over a catalog snapshot: every refusal, FEFO suggestions, multi-lot lines."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from catalog_samples import BAG, MILK, NOW, PILLS, TODAY, catalog_lots, catalog_products

from posbatch.catalog import (
    CatalogSnapshot,
    LineRequest,
    Lot,
    LotSource,
    LotTake,
    Product,
    catalog_changes,
    fefo_line,
    manual_line,
    parse_scan,
    price_cart,
)
from posbatch.errors import CheckoutRefused


def line(gtin: str, quantity: int, *lots: tuple[str, int]) -> LineRequest:
    takes = tuple(LotTake(lot_no, q) for lot_no, q in lots)
    return LineRequest(gtin, quantity, takes, LotSource.SCAN if takes else LotSource.NONE)


def refusal(snapshot: CatalogSnapshot, *requests: LineRequest) -> CheckoutRefused:
    with pytest.raises(CheckoutRefused) as caught:
        price_cart(snapshot, requests, today=TODAY, now=NOW)
    return caught.value


def test_cart_total_is_integer_fen(snapshot: CatalogSnapshot) -> None:
    """Total = price × quantity summed over lines, in fen."""
    cart = price_cart(snapshot, [line(MILK, 2, ("M-DEC01", 2)), line(BAG, 3)], today=TODAY, now=NOW)
    expected = 2 * 1250 + 3 * 50
    assert expected == cart.total_fen


def test_unknown_product_is_refused(snapshot: CatalogSnapshot) -> None:
    """A GTIN not in the catalog is refused in both languages."""
    error = refusal(snapshot, line("05901234123457", 1))
    expected = (
        "unknown product 05901234123457: not in the catalog (sync the catalog?)",
        "商品 05901234123457 不在商品目录中（请同步商品目录）",
    )
    assert expected == (error.reason_en, error.reason_zh)


def test_lot_tracked_product_without_lot_is_refused_with_fefo_lot(
    snapshot: CatalogSnapshot,
) -> None:
    """No lot on a lot-tracked line → refused, suggesting the first-expiring sellable lot."""
    error = refusal(snapshot, line(MILK, 1))
    expected = (
        "Milk 1L (06901234567892) is lot-tracked: scan or type its lot; "
        "use lot M-DEC01 (expires 2026-12-01, 3 in stock)",
        "Milk 1L（06901234567892）需要批次号：请扫描或输入批次号；"
        "请使用批次 M-DEC01（有效期至 2026-12-01，库存 3）",
        "M-DEC01",
    )
    assert expected == (error.reason_en, error.reason_zh, error.suggestion)


def test_unknown_lot_is_refused(snapshot: CatalogSnapshot) -> None:
    """A lot that the product does not have is refused, with the FEFO lot suggested."""
    error = refusal(snapshot, line(MILK, 1, ("P1", 1)))
    expected = (
        "lot 'P1' is not a lot of Milk 1L (06901234567892); "
        "use lot M-DEC01 (expires 2026-12-01, 3 in stock)",
        "M-DEC01",
    )
    assert expected == (error.reason_en, error.suggestion)


def test_expired_lot_is_refused(snapshot: CatalogSnapshot) -> None:
    """A lot whose expiry is before today is refused, naming the date."""
    error = refusal(snapshot, line(MILK, 1, ("M-OLD", 1)))
    expected = (
        "lot M-OLD of Milk 1L (06901234567892) expired on 2026-11-24; "
        "use lot M-DEC01 (expires 2026-12-01, 3 in stock)",
        "Milk 1L 的批次 M-OLD 已于 2026-11-24 过期；"
        "请使用批次 M-DEC01（有效期至 2026-12-01，库存 3）",
    )
    assert expected == (error.reason_en, error.reason_zh)


def test_lot_expiring_today_is_sellable() -> None:
    """Expiry is the last day of sale: a lot expiring today is sold."""
    lots = [Lot(MILK, "TODAY", TODAY, 4, False, 1)]
    snapshot = CatalogSnapshot.build(catalog_products(), lots, version=1)
    cart = price_cart(snapshot, [line(MILK, 1, ("TODAY", 1))], today=TODAY, now=NOW)
    expected = 1250
    assert expected == cart.total_fen


def test_recalled_lot_is_refused(snapshot: CatalogSnapshot) -> None:
    """A recalled lot is refused even with stock, and another lot is suggested."""
    error = refusal(snapshot, line(MILK, 2, ("M-RECALL", 2)))
    expected = (
        "lot M-RECALL of Milk 1L (06901234567892) is recalled: do not sell it; "
        "use lot M-DEC01 (expires 2026-12-01, 3 in stock)",
        "Milk 1L 的批次 M-RECALL 已召回，禁止销售；"
        "请使用批次 M-DEC01（有效期至 2026-12-01，库存 3）",
    )
    assert expected == (error.reason_en, error.reason_zh)


def test_quantity_beyond_stock_suggests_a_split(snapshot: CatalogSnapshot) -> None:
    """More than the lot holds → refused with a FEFO split over sellable lots."""
    error = refusal(snapshot, line(MILK, 5, ("M-DEC01", 5)))
    expected = (
        "only 3 of Milk 1L (06901234567892) lot M-DEC01 in stock, 5 asked; "
        "split the line: lot M-DEC01 x3 + lot M-DEC15 x2",
        "M-DEC01 x3, M-DEC15 x2",
    )
    assert expected == (error.reason_en, error.suggestion)


def test_stock_is_counted_across_lines(snapshot: CatalogSnapshot) -> None:
    """Two lines taking from one lot together may not exceed its stock."""
    error = refusal(snapshot, line(MILK, 2, ("M-DEC01", 2)), line(MILK, 2, ("M-DEC01", 2)))
    expected = "only 1 of Milk 1L (06901234567892) lot M-DEC01 in stock, 2 asked"
    assert expected == error.reason_en.split(";")[0]


def test_no_sellable_lot_says_so() -> None:
    """When every lot is expired, recalled or empty the suggestion says none can be sold."""
    lots = [lot for lot in catalog_lots() if lot.lot_no in ("M-OLD", "M-RECALL", "M-TODAY")]
    snapshot = CatalogSnapshot.build(catalog_products(), lots, version=1)
    error = refusal(snapshot, line(MILK, 1))
    expected = (
        "Milk 1L (06901234567892) is lot-tracked: scan or type its lot; "
        "no lot of Milk 1L can be sold (none in stock that is unexpired and not recalled)",
        None,
    )
    assert expected == (error.reason_en, error.suggestion)


def test_manual_lot_typed_differently_is_refused() -> None:
    """Manual lot entry is typed twice; two different entries are refused."""
    with pytest.raises(CheckoutRefused) as caught:
        manual_line(MILK, 1, "M-DEC15", "M-DEC51")
    expected = (
        "the lot was typed differently twice: 'M-DEC15' then 'M-DEC51'; type it again",
        "两次输入的批次号不一致：M-DEC15 / M-DEC51，请重新输入",
    )
    assert expected == (caught.value.reason_en, caught.value.reason_zh)


def test_manual_lot_typed_twice_the_same_is_sold(snapshot: CatalogSnapshot) -> None:
    """Matching double entry gives a line recorded as manual."""
    request = manual_line(MILK, 2, "M-DEC15", " M-DEC15 ")
    cart = price_cart(snapshot, [request], today=TODAY, now=NOW)
    expected = (LotSource.MANUAL, "M-DEC15", 2500)
    assert expected == (
        cart.lines[0].source,
        cart.lines[0].takes[0].lot.lot_no,
        cart.total_fen,
    )


def test_fefo_line_spans_several_lots(snapshot: CatalogSnapshot) -> None:
    """A FEFO line for more than the first lot holds spreads over lots, first expiry first."""
    request = fefo_line(snapshot, MILK, 5, today=TODAY)
    cart = price_cart(snapshot, [request], today=TODAY, now=NOW)
    expected = [("M-DEC01", 3), ("M-DEC15", 2)]
    assert expected == [(take.lot.lot_no, take.quantity) for take in cart.lines[0].takes]


def test_fefo_line_skips_stock_already_in_cart(snapshot: CatalogSnapshot) -> None:
    """FEFO does not offer units an earlier cart line already takes."""
    first = line(MILK, 3, ("M-DEC01", 3))
    second = fefo_line(snapshot, MILK, 2, today=TODAY, cart=[first])
    expected = (LotTake("M-DEC15", 2),)
    assert expected == second.lots


def test_fefo_line_refuses_when_stock_is_short(snapshot: CatalogSnapshot) -> None:
    """Asking FEFO for more than all sellable lots hold is refused with what can be sold."""
    with pytest.raises(CheckoutRefused) as caught:
        fefo_line(snapshot, MILK, 20, today=TODAY)
    expected = (
        "not enough sellable stock of Milk 1L: 20 asked; "
        "only 13 can be sold: lot M-DEC01 x3 + lot M-DEC15 x10"
    )
    assert expected == caught.value.reason_en


def test_quantity_zero_is_refused(snapshot: CatalogSnapshot) -> None:
    """A line of quantity 0 is refused."""
    expected = "quantity 0 is not between 1 and 9999"
    assert expected == refusal(snapshot, line(BAG, 0)).reason_en


def test_lot_quantities_must_add_up(snapshot: CatalogSnapshot) -> None:
    """A multi-lot line whose lot quantities do not sum to the line quantity is refused."""
    error = refusal(snapshot, line(MILK, 4, ("M-DEC01", 1), ("M-DEC15", 2)))
    expected = "the lots of Milk 1L (06901234567892) add up to 3, not 4"
    assert expected == error.reason_en


def test_product_not_lot_tracked_needs_no_lot(snapshot: CatalogSnapshot) -> None:
    """A product that is not lot-tracked is sold without a lot."""
    cart = price_cart(snapshot, [line(BAG, 2)], today=TODAY, now=NOW)
    expected = ((), 100)
    assert expected == (cart.lines[0].takes, cart.total_fen)


def test_ambiguous_scan_resolved_by_catalog_then_sold(snapshot: CatalogSnapshot) -> None:
    """A lot-swallowing scan is resolved by the lot the catalog knows, then priced."""
    scan = parse_scan(f"01{PILLS}10P117270630", today=TODAY)
    reading = scan.resolve(snapshot.is_known_lot)
    cart = price_cart(
        snapshot, [LineRequest.from_scan(reading, raw=scan.raw)], today=TODAY, now=NOW
    )
    expected = (True, "P1", 3890)
    assert expected == (scan.ambiguous, cart.lines[0].takes[0].lot.lot_no, cart.total_fen)


def test_stale_terminal_catalog_warns() -> None:
    """A terminal copy synced longer ago than the limit yields a stale-catalog warning."""
    snapshot = CatalogSnapshot.build(
        catalog_products(), catalog_lots(), version=1, synced_at=NOW - dt.timedelta(hours=25)
    )
    cart = price_cart(snapshot, [line(BAG, 1)], today=TODAY, now=NOW)
    expected = [
        (
            "stale_catalog",
            "the catalog on this terminal was last synced 1500 minutes ago (limit 1440 minutes): "
            "prices and lots may be out of date",
        )
    ]
    assert expected == [(warning.code, warning.message_en) for warning in cart.warnings]


def test_fresh_terminal_catalog_does_not_warn() -> None:
    """A copy synced within the limit gives no warning."""
    snapshot = CatalogSnapshot.build(
        catalog_products(), catalog_lots(), version=1, synced_at=NOW - dt.timedelta(hours=1)
    )
    expected = ()
    assert expected == price_cart(snapshot, [line(BAG, 1)], today=TODAY, now=NOW).warnings


def changed_snapshot(
    products: list[Product] | None = None, lots: list[Lot] | None = None
) -> CatalogSnapshot:
    return CatalogSnapshot.build(products or catalog_products(), lots or catalog_lots(), version=2)


def test_price_change_after_scan_is_detected(snapshot: CatalogSnapshot) -> None:
    """A price changed between scan and payment is reported in both languages."""
    cart = price_cart(snapshot, [line(MILK, 1, ("M-DEC15", 1))], today=TODAY, now=NOW)
    products = [
        dataclasses.replace(p, price_fen=1300, version=2) if p.gtin == MILK else p
        for p in catalog_products()
    ]
    changes = catalog_changes(cart, changed_snapshot(products=products), today=TODAY)
    expected = [
        ("price of Milk 1L is now 13.00 (was 12.50)", "Milk 1L 价格已改为 13.00（原 12.50）")
    ]
    assert expected == [(change.message_en, change.message_zh) for change in changes]


def test_recall_after_scan_is_detected(snapshot: CatalogSnapshot) -> None:
    """A lot recalled between scan and payment is reported."""
    cart = price_cart(snapshot, [line(MILK, 1, ("M-DEC15", 1))], today=TODAY, now=NOW)
    lots = [
        dataclasses.replace(lot, recalled=True, version=2) if lot.lot_no == "M-DEC15" else lot
        for lot in catalog_lots()
    ]
    changes = catalog_changes(cart, changed_snapshot(lots=lots), today=TODAY)
    expected = ["lot M-DEC15 of Milk 1L was recalled"]
    assert expected == [c.message_en for c in changes]


def test_stock_change_that_still_fits_is_not_reported(snapshot: CatalogSnapshot) -> None:
    """Another terminal selling from the lot is no change while enough stock is left."""
    cart = price_cart(snapshot, [line(MILK, 2, ("M-DEC15", 2))], today=TODAY, now=NOW)
    lots = [
        dataclasses.replace(lot, quantity_on_hand=2, version=2) if lot.lot_no == "M-DEC15" else lot
        for lot in catalog_lots()
    ]
    expected = []
    assert expected == catalog_changes(cart, changed_snapshot(lots=lots), today=TODAY)


def test_stock_drop_below_cart_is_reported(snapshot: CatalogSnapshot) -> None:
    """Stock falling below what the cart takes is reported."""
    cart = price_cart(snapshot, [line(MILK, 2, ("M-DEC15", 2))], today=TODAY, now=NOW)
    lots = [
        dataclasses.replace(lot, quantity_on_hand=1, version=2) if lot.lot_no == "M-DEC15" else lot
        for lot in catalog_lots()
    ]
    changes = catalog_changes(cart, changed_snapshot(lots=lots), today=TODAY)
    expected = ["only 1 of Milk 1L lot M-DEC15 left in stock"]
    assert expected == [c.message_en for c in changes]


def test_expired_pack_is_refused_even_if_catalog_lot_is_not(snapshot: CatalogSnapshot) -> None:
    """An expiry (17) in the barcode that is already past refuses the line."""
    scan = parse_scan(f"]C101{PILLS}10P1\x1d17261031", today=TODAY)
    request = LineRequest.from_scan(scan.reading(), raw=scan.raw)
    error = refusal(snapshot, request)
    expected = (
        "the barcode of Vitamin C (09501101530003) says it expired on 2026-10-31; "
        "no lot of Vitamin C can be sold (none in stock that is unexpired and not recalled)"
    )
    assert expected == error.reason_en
