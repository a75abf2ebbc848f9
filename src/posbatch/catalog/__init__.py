"""Products and lots (商品批次号): GS1 scanning, checkout checks, catalog sync, recall trace.

Public surface (everything else is private)::

    parse_scan(raw, today=..., separators=("|",)) -> Scan        # pure
    price_cart(snapshot, [LineRequest, ...], today=..., now=...) -> Cart   # pure
    pay_cart(cart, payer=..., orders=store, terminal_id=..., clock=..., today=...) -> Receipt
    CatalogStore.open(url)      # back office or a terminal's copy (same schema)
    sync_replica(copy, "http://127.0.0.1:5801" or "changes.json", now=...)

See docs/catalog.md.
"""

from __future__ import annotations

from posbatch.catalog._checkout import (
    CART_LINES_MAX,
    DEFAULT_MAX_CATALOG_AGE,
    LINE_QUANTITY_MAX,
    Cart,
    CartLine,
    CatalogChange,
    CatalogChanged,
    CheckoutWarning,
    LineRequest,
    LineTake,
    LotSource,
    LotTake,
    OpenOrder,
    OrderBook,
    OrderDraft,
    OrderLine,
    Payer,
    Payment,
    Receipt,
    catalog_changes,
    fefo_line,
    format_fen,
    manual_line,
    pay_cart,
    price_cart,
    render_receipt,
)
from posbatch.catalog._csv import CSV_COLUMNS, parse_catalog_csv, write_catalog_csv
from posbatch.catalog._gtin import gtin_check_digit, normalize_gtin, with_check_digit
from posbatch.catalog._model import CatalogSnapshot, ChangeSet, Lot, Product
from posbatch.catalog._orders_http import HttpOrderBook
from posbatch.catalog._scan import (
    DEFAULT_SEPARATORS,
    ElementString,
    Scan,
    ScanReading,
    gs1_year,
    parse_scan,
)
from posbatch.catalog._store import (
    CatalogStore,
    ImportSummary,
    OrderSummary,
    ReplicaState,
    TraceRow,
    next_order_status,
)
from posbatch.catalog._sync import (
    CHANGES_FORMAT,
    SyncResult,
    changes_from_json,
    changes_to_json,
    create_app,
    fetch_changes,
    fetch_head_version,
    sync_replica,
    write_changes_file,
)

__all__ = [
    "CART_LINES_MAX",
    "CHANGES_FORMAT",
    "CSV_COLUMNS",
    "DEFAULT_MAX_CATALOG_AGE",
    "DEFAULT_SEPARATORS",
    "LINE_QUANTITY_MAX",
    "Cart",
    "CartLine",
    "CatalogChange",
    "CatalogChanged",
    "CatalogSnapshot",
    "CatalogStore",
    "ChangeSet",
    "CheckoutWarning",
    "ElementString",
    "HttpOrderBook",
    "ImportSummary",
    "LineRequest",
    "LineTake",
    "Lot",
    "LotSource",
    "LotTake",
    "OpenOrder",
    "OrderBook",
    "OrderDraft",
    "OrderLine",
    "OrderSummary",
    "Payer",
    "Payment",
    "Product",
    "Receipt",
    "ReplicaState",
    "Scan",
    "ScanReading",
    "SyncResult",
    "TraceRow",
    "catalog_changes",
    "changes_from_json",
    "changes_to_json",
    "create_app",
    "fefo_line",
    "fetch_changes",
    "fetch_head_version",
    "format_fen",
    "gs1_year",
    "gtin_check_digit",
    "manual_line",
    "next_order_status",
    "normalize_gtin",
    "parse_catalog_csv",
    "parse_scan",
    "pay_cart",
    "price_cart",
    "render_receipt",
    "sync_replica",
    "with_check_digit",
    "write_catalog_csv",
    "write_changes_file",
]
