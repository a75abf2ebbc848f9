"""The catalog CSV format (import and export). Pure: text in, products and lots out.

One row per lot; a product without lots has one row with the lot columns
empty. Product columns repeat on each of its lot rows and must agree::

    gtin,name,price_fen,lot_tracked,lot_no,expiry,quantity_on_hand,recalled
    6901234567892,Milk 1L,1250,yes,L2611A,2026-12-31,40,no
    6901234567892,Milk 1L,1250,yes,L2612B,2027-01-15,60,no
    6909876543217,Paper bag,50,no,,,,

Every row is checked before anything is written; all problems are reported
together, each with its row number (the header is row 1).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from typing import TextIO

from posbatch.catalog._gtin import normalize_gtin
from posbatch.catalog._model import GS1_CSET82, LOT_LENGTH_MAX, NAME_LENGTH_MAX, Lot, Product
from posbatch.errors import CatalogError

__all__ = [
    "CSV_COLUMNS",
    "IMPORT_PROBLEMS_SHOWN_MAX",
    "IMPORT_ROWS_MAX",
    "PRICE_FEN_MAX",
    "parse_catalog_csv",
    "write_catalog_csv",
]

CSV_COLUMNS = (
    "gtin",
    "name",
    "price_fen",
    "lot_tracked",
    "lot_no",
    "expiry",
    "quantity_on_hand",
    "recalled",
)
IMPORT_ROWS_MAX = 1_000_000
IMPORT_PROBLEMS_SHOWN_MAX = 50
PRICE_FEN_MAX = 999_999_999_999
"""Field 4 of the wire profile is n12 fen."""
QUANTITY_MAX = 100_000_000

_TRUE = frozenset({"yes", "y", "true", "1"})
_FALSE = frozenset({"no", "n", "false", "0"})


class _RowProblem(Exception):  # noqa: N818 - internal signal, never escapes this module
    pass


def _boolean(column: str, text: str, *, default: bool | None = None) -> bool:
    value = text.strip().lower()
    if not value and default is not None:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _RowProblem(f"{column} {text!r} is not yes/no")


def _integer(column: str, text: str, maximum: int) -> int:
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        raise _RowProblem(f"{column} {text!r} is not a whole number (fen, no decimal point)")
    number = int(value)
    if number > maximum:
        raise _RowProblem(f"{column} {number} is above {maximum}")
    return number


def _lot_no(text: str) -> str:
    value = text.strip()
    if len(value) > LOT_LENGTH_MAX:
        raise _RowProblem(f"lot_no {value!r} is longer than {LOT_LENGTH_MAX} characters")
    bad = sorted({character for character in value if character not in GS1_CSET82})
    if bad:
        raise _RowProblem(f"lot_no {value!r} has characters a GS1 barcode cannot carry: {bad}")
    return value


def _expiry(text: str) -> dt.date | None:
    value = text.strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise _RowProblem(f"expiry {text!r} is not a date YYYY-MM-DD") from exc


def parse_catalog_csv(source: TextIO | str) -> tuple[list[Product], list[Lot]]:
    """Products and lots of a catalog CSV, or :class:`CatalogError` listing every bad row."""
    stream = io.StringIO(source) if isinstance(source, str) else source
    reader = csv.reader(stream)
    try:
        header = [column.strip().lstrip("\ufeff") for column in next(reader)]
    except StopIteration:
        raise CatalogError("the CSV file is empty (expected a header row)") from None
    except csv.Error as exc:
        raise CatalogError(f"row 1: {exc}") from exc
    missing = [column for column in CSV_COLUMNS if column not in header]
    unknown = [column for column in header if column not in CSV_COLUMNS]
    if missing or unknown:
        raise CatalogError(
            f"row 1: the header must name the columns {', '.join(CSV_COLUMNS)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
    index = {column: header.index(column) for column in CSV_COLUMNS}
    problems: list[str] = []
    products: dict[str, tuple[int, Product]] = {}
    lots: dict[tuple[str, str], tuple[int, Lot]] = {}
    row_number = 1
    try:
        for row in reader:
            row_number += 1
            if row_number > IMPORT_ROWS_MAX + 1:
                raise CatalogError(f"more than {IMPORT_ROWS_MAX} rows; split the file")
            if not any(cell.strip() for cell in row):
                continue
            try:
                _read_row(row, index, row_number, products, lots)
            except _RowProblem as exc:
                problems.append(f"row {row_number}: {exc}")
    except csv.Error as exc:
        problems.append(f"row {row_number}: {exc}")
    if problems:
        shown = problems[:IMPORT_PROBLEMS_SHOWN_MAX]
        more = len(problems) - len(shown)
        raise CatalogError(
            f"{len(problems)} bad row(s), nothing imported:\n"
            + "\n".join(shown)
            + (f"\n… and {more} more" if more else "")
        )
    return [product for _, product in products.values()], [lot for _, lot in lots.values()]


def _read_row(
    row: list[str],
    index: dict[str, int],
    row_number: int,
    products: dict[str, tuple[int, Product]],
    lots: dict[tuple[str, str], tuple[int, Lot]],
) -> None:
    if len(row) != len(index):
        raise _RowProblem(f"{len(row)} columns, expected {len(CSV_COLUMNS)}")

    def cell(column: str) -> str:
        return row[index[column]]

    try:
        gtin = normalize_gtin(cell("gtin"))
    except CatalogError as exc:
        raise _RowProblem(str(exc)) from exc
    name = cell("name").strip()
    if not name or len(name) > NAME_LENGTH_MAX:
        raise _RowProblem(f"name must be 1 to {NAME_LENGTH_MAX} characters")
    product = Product(
        gtin=gtin,
        name=name,
        price_fen=_integer("price_fen", cell("price_fen"), PRICE_FEN_MAX),
        lot_tracked=_boolean("lot_tracked", cell("lot_tracked")),
    )
    earlier = products.get(gtin)
    if earlier is None:
        products[gtin] = (row_number, product)
    elif earlier[1] != product:
        first_row, first = earlier
        differs = [
            column
            for column in ("name", "price_fen", "lot_tracked")
            if getattr(first, column) != getattr(product, column)
        ]
        raise _RowProblem(f"GTIN {gtin}: {', '.join(differs)} differ(s) from row {first_row}")
    lot_no = _lot_no(cell("lot_no"))
    lot_cells = (cell("expiry"), cell("quantity_on_hand"), cell("recalled"))
    if not lot_no:
        if any(text.strip() for text in lot_cells):
            raise _RowProblem("expiry, quantity_on_hand or recalled given without a lot_no")
        return
    if not product.lot_tracked:
        raise _RowProblem(f"GTIN {gtin} is not lot-tracked but the row has lot {lot_no!r}")
    if (gtin, lot_no) in lots:
        raise _RowProblem(f"lot {lot_no!r} of GTIN {gtin} already on row {lots[gtin, lot_no][0]}")
    lots[gtin, lot_no] = (
        row_number,
        Lot(
            gtin=gtin,
            lot_no=lot_no,
            expiry=_expiry(cell("expiry")),
            quantity_on_hand=_integer("quantity_on_hand", cell("quantity_on_hand"), QUANTITY_MAX),
            recalled=_boolean("recalled", cell("recalled"), default=False),
        ),
    )


def write_catalog_csv(products: Iterable[Product], lots: Iterable[Lot], out: TextIO) -> int:
    """Write the catalog in the import format; returns the number of data rows."""
    lots_by_gtin: dict[str, list[Lot]] = {}
    for lot in lots:
        lots_by_gtin.setdefault(lot.gtin, []).append(lot)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    rows = 0
    for product in sorted(products, key=lambda p: p.gtin):
        head = [
            product.gtin,
            product.name,
            str(product.price_fen),
            "yes" if product.lot_tracked else "no",
        ]
        product_lots = sorted(lots_by_gtin.get(product.gtin, []), key=Lot.fefo_key)
        if not product_lots:
            writer.writerow([*head, "", "", "", ""])
            rows += 1
        for lot in product_lots:
            writer.writerow(
                [
                    *head,
                    lot.lot_no,
                    lot.expiry.isoformat() if lot.expiry else "",
                    str(lot.quantity_on_hand),
                    "yes" if lot.recalled else "no",
                ]
            )
            rows += 1
    return rows
