"""The catalog CSV format (import and export). Pure: text in, products and lots out.

One row per lot; a product without lots has one row with the lot columns
empty (its quantity_on_hand, if given, is its opening stock). Product
columns repeat on each of its lot rows and must agree. ``trace_prefix`` (the
7-digit drug identification code that starts the product's traceability
codes) is optional::

    gtin,name,price_fen,lot_tracked,lot_no,expiry,quantity_on_hand,recalled,trace_prefix
    6901234567892,Milk 1L,1250,yes,L2611A,2026-12-31,40,no,
    6901234567892,Milk 1L,1250,yes,L2612B,2027-01-15,60,no,
    6909876543217,Paper bag,50,no,,,500,,

Every row is checked before anything is written; every problem of every row
is reported, each with its row number (the header is row 1). Files are
UTF-8 (with or without BOM) or GBK/GB18030, what Chinese Excel saves
(:func:`decode_catalog_csv`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable
from typing import TextIO, TypeVar

from posbatch.batch.limits import AMOUNT_FEN_MAX
from posbatch.catalog._gtin import normalize_gtin
from posbatch.catalog._model import GS1_CSET82, LOT_LENGTH_MAX, NAME_LENGTH_MAX, Lot, Product
from posbatch.catalog._trace_code import check_trace_prefix
from posbatch.errors import CatalogError

__all__ = [
    "CSV_COLUMNS",
    "CSV_ENCODINGS",
    "IMPORT_PROBLEMS_SHOWN_MAX",
    "IMPORT_ROWS_MAX",
    "OPTIONAL_COLUMNS",
    "PRICE_FEN_MAX",
    "decode_catalog_csv",
    "export_quantity",
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
OPTIONAL_COLUMNS = ("trace_prefix",)
CSV_ENCODINGS = ("utf-8-sig", "gb18030")
"""Tried in this order: UTF-8 (BOM or not), then GB18030 (a superset of GBK/GB2312)."""
IMPORT_ROWS_MAX = 1_000_000
IMPORT_PROBLEMS_SHOWN_MAX = 50
PRICE_FEN_MAX = AMOUNT_FEN_MAX  # a price must fit one transaction's amount (field 4, n12)
"""Field 4 of the wire profile is n12 fen."""
QUANTITY_MAX = 100_000_000

_T = TypeVar("_T")
_TRUE = frozenset({"yes", "y", "true", "1"})
_FALSE = frozenset({"no", "n", "false", "0"})


class _RowProblem(Exception):  # noqa: N818 - internal signal, never escapes this module
    pass


def decode_catalog_csv(data: bytes, *, encoding: str | None = None) -> tuple[str, str]:
    """The text of a CSV file and the encoding it was read with.

    Without ``encoding``, UTF-8 first, then GB18030 (what Excel on a Chinese
    Windows saves as "CSV"); CatalogError naming the first undecodable byte
    when neither reads it.
    """
    tried = (encoding,) if encoding else CSV_ENCODINGS
    first_error: UnicodeDecodeError | None = None
    for name in tried:
        try:
            return data.decode(name), name
        except LookupError as exc:
            raise CatalogError(f"unknown encoding {name!r}") from exc
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
    assert first_error is not None
    line = data[: first_error.start].count(b"\n") + 1
    raise CatalogError(
        f"row {line}: byte 0x{data[first_error.start]:02x} at offset {first_error.start} is not "
        f"{' or '.join(tried)} text: save the file as CSV UTF-8 (or give --encoding)"
    )


def export_quantity(lot: Lot) -> int:
    """What the quantity column says of a lot: on hand, plus quarantined if it is recalled."""
    return lot.quantity_on_hand + (lot.quarantined if lot.recalled else 0)


def _boolean(column: str, text: str, *, default: bool | None = None) -> bool:
    value = text.strip().lower()
    if not value and default is not None:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _RowProblem(f"{column} {text!r} is not yes/no")


def _integer(column: str, text: str, maximum: int, *, unit: str) -> int:
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        raise _RowProblem(f"{column} {text!r} is not a whole number ({unit}, no decimal point)")
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
    unknown = [column for column in header if column not in (*CSV_COLUMNS, *OPTIONAL_COLUMNS)]
    if missing or unknown:
        raise CatalogError(
            f"row 1: the header must name the columns {', '.join(CSV_COLUMNS)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
    index = {column: header.index(column) for column in header}
    problems: list[str] = []
    bad_rows = 0
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
            found = _read_row(row, index, row_number, products, lots)
            problems.extend(f"row {row_number}: {problem}" for problem in found)
            bad_rows += bool(found)
    except csv.Error as exc:
        problems.append(f"row {row_number}: {exc}")
        bad_rows += 1
    if problems:
        shown = problems[:IMPORT_PROBLEMS_SHOWN_MAX]
        more = len(problems) - len(shown)
        raise CatalogError(
            f"{bad_rows} bad row(s), nothing imported:\n"
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
) -> list[str]:
    """Every problem of one row (empty: the row is good and recorded)."""
    if len(row) != len(index):
        return [f"{len(row)} columns, expected {len(index)}"]
    problems: list[str] = []

    def cell(column: str) -> str:
        return row[index[column]] if column in index else ""

    def read(reader: Callable[[], _T]) -> _T | None:
        try:
            return reader()
        except _RowProblem as exc:
            problems.append(str(exc))
            return None

    def gtin_of() -> str:
        try:
            return normalize_gtin(cell("gtin"))
        except CatalogError as exc:
            raise _RowProblem(str(exc)) from exc

    def name_of() -> str:
        name = cell("name").strip()
        if not name or len(name) > NAME_LENGTH_MAX:
            raise _RowProblem(f"name must be 1 to {NAME_LENGTH_MAX} characters")
        return name

    def prefix_of() -> str | None:
        text = cell("trace_prefix").strip()
        if not text:
            return None
        try:
            return check_trace_prefix(text)
        except ValueError as exc:
            raise _RowProblem(str(exc)) from exc

    gtin = read(gtin_of)
    name = read(name_of)
    price_fen = read(lambda: _integer("price_fen", cell("price_fen"), PRICE_FEN_MAX, unit="fen"))
    lot_tracked = read(lambda: _boolean("lot_tracked", cell("lot_tracked")))
    trace_prefix = read(prefix_of)
    lot_no = read(lambda: _lot_no(cell("lot_no")))
    expiry = read(lambda: _expiry(cell("expiry")))
    quantity_text = cell("quantity_on_hand").strip()
    quantity = (
        read(lambda: _integer("quantity_on_hand", quantity_text, QUANTITY_MAX, unit="units"))
        if quantity_text
        else 0
    )
    recalled = read(lambda: _boolean("recalled", cell("recalled"), default=False))
    if lot_no == "":
        if cell("expiry").strip() or cell("recalled").strip():
            problems.append("expiry or recalled given without a lot_no")
        if lot_tracked and quantity_text:
            problems.append(
                "quantity_on_hand given without a lot_no for a lot-tracked product "
                "(its stock is in its lots)"
            )
    elif lot_no and lot_tracked is False and gtin is not None:
        problems.append(f"GTIN {gtin} is not lot-tracked but the row has lot {lot_no!r}")
    if problems or gtin is None:
        return problems
    assert name is not None and price_fen is not None and lot_tracked is not None
    assert quantity is not None and recalled is not None and lot_no is not None
    product = Product(
        gtin=gtin,
        name=name,
        price_fen=price_fen,
        lot_tracked=lot_tracked,
        quantity_on_hand=0 if lot_tracked or lot_no else quantity,
        trace_prefix=trace_prefix,
    )
    earlier = products.get(gtin)
    if earlier is None:
        products[gtin] = (row_number, product)
    elif _description(earlier[1]) != _description(product):
        first_row, first = earlier
        differs = [
            column
            for column in ("name", "price_fen", "lot_tracked", "trace_prefix")
            if getattr(first, column) != getattr(product, column)
        ]
        return [f"GTIN {gtin}: {', '.join(differs)} differ(s) from row {first_row}"]
    elif not lot_no and not lot_tracked:
        return [f"GTIN {gtin} (no lots) is on row {earlier[0]} already"]
    if not lot_no:
        return []
    if (gtin, lot_no) in lots:
        return [f"lot {lot_no!r} of GTIN {gtin} already on row {lots[gtin, lot_no][0]}"]
    lots[gtin, lot_no] = (
        row_number,
        Lot(gtin=gtin, lot_no=lot_no, expiry=expiry, quantity_on_hand=quantity, recalled=recalled),
    )
    return []


def _description(product: Product) -> tuple[object, ...]:
    return (product.name, product.price_fen, product.lot_tracked, product.trace_prefix)


def write_catalog_csv(products: Iterable[Product], lots: Iterable[Lot], out: TextIO) -> int:
    """Write the catalog in the import format; returns the number of data rows."""
    lots_by_gtin: dict[str, list[Lot]] = {}
    for lot in lots:
        lots_by_gtin.setdefault(lot.gtin, []).append(lot)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((*CSV_COLUMNS, *OPTIONAL_COLUMNS))
    rows = 0
    for product in sorted(products, key=lambda p: p.gtin):
        head = [
            product.gtin,
            product.name,
            str(product.price_fen),
            "yes" if product.lot_tracked else "no",
        ]
        tail = [product.trace_prefix or ""]
        product_lots = sorted(lots_by_gtin.get(product.gtin, []), key=Lot.fefo_key)
        if not product_lots:
            stock = "" if product.lot_tracked else str(product.quantity_on_hand)
            writer.writerow([*head, "", "", stock, "", *tail])
            rows += 1
        for lot in product_lots:
            writer.writerow(
                [
                    *head,
                    lot.lot_no,
                    lot.expiry.isoformat() if lot.expiry else "",
                    str(export_quantity(lot)),
                    "yes" if lot.recalled else "no",
                    *tail,
                ]
            )
            rows += 1
    return rows
