"""Units identified one by one: GS1 serials (21) and China's drug traceability code (药品追溯码)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from catalog_samples import NOW, TODAY, ScriptedPayer, approved
from catalog_shop import TERMINAL_ID, Shop, open_shop
from typer.testing import CliRunner

from posbatch.catalog import (
    CatalogSnapshot,
    CatalogStore,
    LineRequest,
    Lot,
    LotSource,
    LotTake,
    OrderRefused,
    Product,
    ReturnLine,
    parse_scan,
    parse_trace_code,
    pay_cart,
    price_cart,
    with_check_digit,
)
from posbatch.catalog._till import Till
from posbatch.catalog.cli import app, open_back_office
from posbatch.errors import CheckoutRefused, ScanError

AMOX = with_check_digit("0697000000001")  # a medicine with traceability codes
AMOX_PREFIX = "8612345"
CODE_1 = AMOX_PREFIX + "0000000000011"
CODE_2 = AMOX_PREFIX + "0000000000029"
OTHER_MEDICINE = "8699999" + "0000000000011"
WITH_LETTER = CODE_1[:10] + "A" + CODE_1[11:]
PUMP = with_check_digit("0697000000002")  # a device sold by its GS1 serial
GS = "\x1d"


def products() -> list[Product]:
    return [
        Product(AMOX, "Amoxicillin 0.25g x24", 1590, True, trace_prefix=AMOX_PREFIX),
        Product(PUMP, "Insulin pump", 99000, True),
    ]


def lots() -> list[Lot]:
    return [
        Lot(AMOX, "A2611", dt.date(2027, 6, 30), 20, False),
        Lot(PUMP, "PMP1", dt.date(2030, 1, 1), 5, False),
    ]


@pytest.fixture
def units_shop(tmp_path: Path, db_url: str) -> Iterator[Shop]:
    opened = open_shop(tmp_path, db_url)
    opened.store.import_catalog(products(), lots(), at=NOW, reason="units")
    yield opened
    opened.close()


def till(snapshot: CatalogSnapshot) -> Till:
    return Till(snapshot, clock=lambda: NOW)


def pump(serial: str, quantity: int = 1) -> LineRequest:
    return LineRequest(PUMP, quantity, (LotTake("PMP1", quantity),), LotSource.SCAN, serial=serial)


def amox(code: str) -> LineRequest:
    return LineRequest(AMOX, 1, (LotTake("A2611", 1),), LotSource.FEFO, trace_code=code)


# --- the code itself -----------------------------------------------------------------------

TRACE_CODES = [
    pytest.param(CODE_1, None, id="twenty-digits-starting-with-8"),
    pytest.param(
        CODE_1[:-1],
        f"a drug traceability code (药品追溯码) has 20 digits, {CODE_1[:-1]!r} has 19: "
        "scan it again",
        id="nineteen-digits",
    ),
    pytest.param(
        "7" + CODE_1[1:],
        f"a drug traceability code (药品追溯码) starts with 8, {'7' + CODE_1[1:]!r} does not",
        id="not-starting-with-8",
    ),
    pytest.param(
        WITH_LETTER,
        f"a drug traceability code (药品追溯码) is digits only, got {WITH_LETTER!r}",
        id="a-letter",
    ),
]


@pytest.mark.parametrize(("text", "error"), TRACE_CODES)
def test_traceability_code_form(text: str, error: str | None) -> None:
    """20 digits, first an 8; its first 7 digits are the drug identification code."""
    if error is None:
        code = parse_trace_code(text)
        assert (AMOX_PREFIX, CODE_1[7:]) == (code.prefix, code.pack_part)
        return
    with pytest.raises(ScanError) as caught:
        parse_trace_code(text)
    assert error == str(caught.value)


@pytest.mark.parametrize("raw", [CODE_1, f"]C0{CODE_1}", f"]Q1{CODE_1}", f"{CODE_1}\r\n"])
def test_a_scanned_traceability_code_is_read_as_one(raw: str) -> None:
    """Bare, as plain Code 128, as plain QR: a traceability code, not GS1 element strings."""
    scan = parse_scan(raw, today=TODAY)
    assert (CODE_1, ()) == (scan.trace_code.code if scan.trace_code else None, scan.readings)


def test_the_till_maps_a_code_to_its_medicine() -> None:
    """The till finds the product by the code's prefix; the line is one pack with the code."""
    snapshot = CatalogSnapshot.build(products(), lots(), version=1)
    shop_till = till(snapshot)
    request = shop_till.request_for(CODE_1)
    expected = (AMOX, 1, CODE_1, ())
    assert expected == (request.gtin, request.quantity, request.trace_code, request.lots)


def test_a_code_of_no_known_medicine_is_refused() -> None:
    snapshot = CatalogSnapshot.build(products(), lots(), version=1)
    with pytest.raises(
        CheckoutRefused, match="no product in the catalog has the drug identification code 8699999"
    ):
        till(snapshot).request_for(OTHER_MEDICINE)


def test_a_pack_is_scanned_once_per_cart() -> None:
    """The same traceability code twice in a cart is refused (two scans are not two packs)."""
    snapshot = CatalogSnapshot.build(products(), lots(), version=1)
    shop_till = till(snapshot)
    shop_till.add(amox(CODE_1))
    with pytest.raises(CheckoutRefused, match="is already in the cart: each pack is scanned once"):
        shop_till.add(amox(CODE_1))


def test_a_code_of_another_medicine_on_the_line_is_refused() -> None:
    snapshot = CatalogSnapshot.build(products(), lots(), version=1)
    with pytest.raises(CheckoutRefused, match="is of another medicine"):
        till(snapshot).add(amox(OTHER_MEDICINE))


def test_two_scans_of_one_serial_are_not_two_units() -> None:
    """Today's defect: two scans of serial SN1 gave 2 units. Now the second is refused."""
    snapshot = CatalogSnapshot.build(products(), lots(), version=1)
    shop_till = till(snapshot)
    raw = f"]C101{PUMP}10PMP1{GS}21SN1"
    shop_till.add_scan(raw)
    with pytest.raises(CheckoutRefused, match="serial SN1 of Insulin pump is already in the cart"):
        shop_till.add_scan(raw)
    assert [1] == [line.quantity for line in shop_till.cart().lines]


def test_a_serial_names_one_unit() -> None:
    """3* in front of a serialised scan is refused: each unit has its own serial."""
    snapshot = CatalogSnapshot.build(products(), lots(), version=1)
    with pytest.raises(CheckoutRefused, match="the line is for 1, not 3"):
        till(snapshot).add_scan(f"]C101{PUMP}10PMP1{GS}21SN1", quantity=3)


# --- the back office ---------------------------------------------------------------------


def sell(
    store: CatalogStore, request: LineRequest, stan: str, terminal_id: str = TERMINAL_ID
) -> str:
    cart = price_cart(store.snapshot(), [request], today=TODAY, now=NOW)
    return pay_cart(
        cart,
        payer=ScriptedPayer(approved(stan)),
        orders=store,
        terminal_id=terminal_id,
        clock=lambda: NOW,
        today=TODAY,
    ).receipt_no


def test_a_code_sold_already_is_refused_by_the_back_office(back_office: CatalogStore) -> None:
    """A second sale of one pack (another till, another day) is refused, naming the receipt."""
    back_office.import_catalog(products(), lots(), at=NOW, reason="units")
    first = sell(back_office, amox(CODE_1), "000001")
    with pytest.raises(OrderRefused) as caught:
        sell(back_office, amox(CODE_1), "000002", terminal_id="10000002")
    expected = (
        f"line 1: drug traceability code {CODE_1} was sold already (receipt {first}) and not "
        "returned: a second sale of one pack means a counterfeit or resold pack"
    )
    assert expected == caught.value.reason_en.removeprefix("the back office refused the order: ")


def test_a_serial_sold_already_is_refused_by_the_back_office(back_office: CatalogStore) -> None:
    back_office.import_catalog(products(), lots(), at=NOW, reason="units")
    sell(back_office, pump("SN7"), "000001")
    with pytest.raises(OrderRefused, match="serial SN7 was sold already"):
        sell(back_office, pump("SN7"), "000002")


def test_a_pack_on_a_pending_order_is_not_sold_twice(back_office: CatalogStore) -> None:
    """Two tills at the same moment: the pack is out from the moment its order is written."""
    back_office.import_catalog(products(), lots(), at=NOW, reason="units")
    cart = price_cart(back_office.snapshot(), [amox(CODE_2)], today=TODAY, now=NOW)
    back_office.open_order(cart, terminal_id=TERMINAL_ID, opened_at=NOW)
    with pytest.raises(OrderRefused, match=f"drug traceability code {CODE_2} was sold already"):
        back_office.open_order(cart, terminal_id="10000002", opened_at=NOW)


def test_a_declined_payment_frees_the_unit(back_office: CatalogStore) -> None:
    """A pack whose order was not paid was never sold: it can be sold again."""
    back_office.import_catalog(products(), lots(), at=NOW, reason="units")
    order = back_office.open_order(
        price_cart(back_office.snapshot(), [amox(CODE_2)], today=TODAY, now=NOW),
        terminal_id=TERMINAL_ID,
        opened_at=NOW,
    )
    back_office.close_unpaid(order.order_id, payment=None, note="declined", closed_at=NOW)
    assert sell(back_office, amox(CODE_2), "000003").endswith("00000002")


def test_a_returned_pack_can_be_sold_again_and_traces_both_sales(units_shop: Shop) -> None:
    """The return frees the code; the trace by code shows the sale, the return and the resale."""
    first = units_shop.pay([amox(CODE_1)])
    units_shop.give_back(first.receipt_no, [ReturnLine(1, 1)])
    second = units_shop.pay([amox(CODE_1)])
    rows = units_shop.store.trace_unit(CODE_1)
    expected = [(first.receipt_no, "voided", 1), (second.receipt_no, "paid", 0)]
    assert expected == [(row.receipt_no, row.status, row.returned) for row in rows]


def test_the_sale_line_records_the_code_and_its_lot(units_shop: Shop) -> None:
    """The order line keeps the pack's traceability code beside its lot (trace by either)."""
    receipt = units_shop.pay([amox(CODE_1)])
    rows = units_shop.store.trace_unit(CODE_1)
    expected = [(receipt.receipt_no, TERMINAL_ID, CODE_1, "A2611")]
    assert expected == [(r.receipt_no, r.terminal_id, r.trace_code, r.lot_no) for r in rows]


def test_scan_command_shows_a_traceability_code() -> None:
    result = CliRunner().invoke(app, ["scan", CODE_1])
    expected = (
        0,
        f"drug traceability code 药品追溯码 {CODE_1}: drug identification code 药品标识码 "
        f"{AMOX_PREFIX}, pack {CODE_1[7:]}\n",
    )
    assert expected == (result.exit_code, result.stdout)


def test_trace_code_command_of_an_unsold_code_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POSBATCH_DATABASE_URL", raising=False)
    open_back_office(tmp_path, create=True).close()
    result = CliRunner().invoke(app, ["trace", "--code", CODE_1, "--data-dir", str(tmp_path)])
    expected = (2, f"error: no sale line carries the serial or traceability code {CODE_1}\n")
    assert expected == (result.exit_code, result.stderr)
