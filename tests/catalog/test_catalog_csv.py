"""The catalog CSV format: round trip and bad rows."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posbatch.catalog import Lot, Product, parse_catalog_csv, with_check_digit, write_catalog_csv
from posbatch.errors import CatalogError

HEADER = "gtin,name,price_fen,lot_tracked,lot_no,expiry,quantity_on_hand,recalled\n"

products_strategy = st.lists(
    st.builds(
        lambda payload, name, price, tracked: Product(
            with_check_digit(payload), name, price, tracked
        ),
        st.text(alphabet="0123456789", min_size=13, max_size=13),
        st.text(alphabet="abc XYZ,\"'奶粉", min_size=1, max_size=20).map(str.strip).filter(bool),
        st.integers(min_value=0, max_value=999_999_999_999),
        st.booleans(),
    ),
    max_size=5,
    unique_by=lambda product: product.gtin,
)


@given(products_strategy, st.data())
def test_write_then_parse_round_trips(products: list[Product], data: st.DataObject) -> None:
    """Any catalog written as CSV reads back to the same products and lots."""
    lots = [
        Lot(
            product.gtin,
            lot_no,
            data.draw(st.none() | st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31))),
            data.draw(st.integers(min_value=0, max_value=100_000)),
            data.draw(st.booleans()),
        )
        for product in products
        if product.lot_tracked
        for lot_no in data.draw(
            st.lists(st.text(alphabet="AB12-./", min_size=1, max_size=20), max_size=3, unique=True)
        )
    ]
    out = io.StringIO()
    write_catalog_csv(products, lots, out)
    read_products, read_lots = parse_catalog_csv(out.getvalue())
    expected = (sorted(products, key=str), sorted(lots, key=str))
    assert expected == (sorted(read_products, key=str), sorted(read_lots, key=str))


BAD_ROWS = [
    pytest.param(
        "6901234567892,Milk,1250,yes,,2026-01-01,,\n",
        "row 2: expiry or recalled given without a lot_no",
        id="lot-fields-without-lot",
    ),
    pytest.param(
        "6909876543212,Bag,50,no,L1,2026-01-01,3,no\n",
        "row 2: GTIN 06909876543212 is not lot-tracked but the row has lot 'L1'",
        id="lot-on-untracked-product",
    ),
    pytest.param(
        "6901234567892,Milk,1250,yes,L 1,2026-01-01,3,no\n",
        "row 2: lot_no 'L 1' has characters a GS1 barcode cannot carry: [' ']",
        id="space-in-lot",
    ),
    pytest.param(
        "6901234567892,Milk,1250,maybe,,,,\n",
        "row 2: lot_tracked 'maybe' is not yes/no",
        id="bad-boolean",
    ),
    pytest.param(
        "6901234567892,Milk,1250,yes,,,,\n6901234567892,Milk,1300,yes,,,,\n",
        "row 3: GTIN 06901234567892: price_fen differ(s) from row 2",
        id="product-rows-disagree",
    ),
    pytest.param(
        "6901234567892,Milk,1250,yes,L1,,1,no\n6901234567892,Milk,1250,yes,L1,,2,no\n",
        "row 3: lot 'L1' of GTIN 06901234567892 already on row 2",
        id="duplicate-lot",
    ),
]


@pytest.mark.parametrize(("rows", "problem"), BAD_ROWS)
def test_bad_row_is_named(rows: str, problem: str) -> None:
    """Each kind of bad row is reported with its row number and what is wrong."""
    with pytest.raises(CatalogError) as caught:
        parse_catalog_csv(HEADER + rows)
    expected = f"1 bad row(s), nothing imported:\n{problem}"
    assert expected == str(caught.value)


def test_header_must_name_the_columns() -> None:
    """A file without the expected header is refused on row 1, naming what is missing."""
    with pytest.raises(CatalogError) as caught:
        parse_catalog_csv("gtin,name\n6901234567892,Milk\n")
    expected = (
        "row 1: the header must name the columns gtin, name, price_fen, lot_tracked, lot_no, "
        "expiry, quantity_on_hand, recalled; missing price_fen, lot_tracked, lot_no, expiry, "
        "quantity_on_hand, recalled"
    )
    assert expected == str(caught.value)
