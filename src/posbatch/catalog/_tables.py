"""Tables of the catalog store (SQLAlchemy Core). Migrations: ``catalog/migrations``.

The back office and a terminal's copy use the same schema: the copy simply
leaves ``catalog_orders`` (and the stock, recall, return and till tables)
empty and fills ``catalog_replica_state``.

Stock is the sum of ``catalog_stock_movements`` per (gtin, lot_no), lot_no
``''`` for a product without lots. ``catalog_lots.quantity_on_hand`` /
``quarantined`` and ``catalog_products.quantity_on_hand`` (products without
lots) are that sum, kept in the same transaction as every movement so a
snapshot is one read; the movements are the record.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "NO_LOT",
    "lots",
    "metadata",
    "movements",
    "order_lines",
    "orders",
    "payments_used",
    "recalls",
    "replica_state",
    "return_lines",
    "returns",
    "store_identity",
    "tills",
    "units_out",
    "versions",
]

NO_LOT = ""
"""``lot_no`` of a stock movement of a product without lots."""

metadata = sa.MetaData()

versions = sa.Table(
    "catalog_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
)

products = sa.Table(
    "catalog_products",
    metadata,
    sa.Column("gtin", sa.String(14), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("price_fen", sa.BigInteger, nullable=False),
    sa.Column("lot_tracked", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, index=True),
    sa.Column("quantity_on_hand", sa.Integer, nullable=False, server_default="0"),
    sa.Column("quarantined", sa.Integer, nullable=False, server_default="0"),
    sa.Column("trace_prefix", sa.String(7), nullable=True, index=True),
)

lots = sa.Table(
    "catalog_lots",
    metadata,
    sa.Column("gtin", sa.String(14), sa.ForeignKey("catalog_products.gtin"), primary_key=True),
    sa.Column("lot_no", sa.String(20), primary_key=True),
    sa.Column("expiry", sa.Date, nullable=True),
    sa.Column("quantity_on_hand", sa.Integer, nullable=False),
    sa.Column("recalled", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, index=True),
    sa.Column("quarantined", sa.Integer, nullable=False, server_default="0"),
)

orders = sa.Table(
    "catalog_orders",
    metadata,
    sa.Column("order_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("receipt_no", sa.String(40), nullable=True, unique=True),
    sa.Column("terminal_id", sa.String(8), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("total_fen", sa.BigInteger, nullable=False),
    sa.Column("catalog_version", sa.Integer, nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("stan", sa.String(6), nullable=True),
    sa.Column("batch_no", sa.String(6), nullable=True),
    sa.Column("rrn", sa.String(12), nullable=True),
    sa.Column("auth_code", sa.String(6), nullable=True),
    sa.Column("response_code", sa.String(2), nullable=True),
    sa.Column("note", sa.String(200), nullable=True),
    sa.Column("payment_check", sa.String(12), nullable=True),
)

order_lines = sa.Table(
    "catalog_order_lines",
    metadata,
    sa.Column("order_line_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("catalog_orders.order_id"), nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("gtin", sa.String(14), nullable=False),
    sa.Column("product_name", sa.String(200), nullable=False),
    sa.Column("lot_no", sa.String(20), nullable=True, index=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price_fen", sa.BigInteger, nullable=False),
    sa.Column("lot_source", sa.String(10), nullable=False),
    sa.Column("scan_raw", sa.String(512), nullable=True),
    sa.Column("serial", sa.String(20), nullable=True, index=True),
    sa.Column("trace_code", sa.String(20), nullable=True, index=True),
    sa.Column("expiry_scanned", sa.Date, nullable=True),
)

replica_state = sa.Table(
    "catalog_replica_state",
    metadata,
    sa.Column("state_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("source_store_id", sa.String(36), nullable=True),
)

store_identity = sa.Table(
    "catalog_store_identity",
    metadata,
    sa.Column("state_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("store_id", sa.String(36), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
"""One row: the identity a changes document carries (a till refuses another store's)."""

movements = sa.Table(
    "catalog_stock_movements",
    metadata,
    sa.Column("movement_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("gtin", sa.String(14), nullable=False),
    sa.Column("lot_no", sa.String(20), nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("on_hand_delta", sa.Integer, nullable=False),
    sa.Column("quarantined_delta", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(200), nullable=True),
    sa.Column("actor", sa.String(64), nullable=True),
    sa.Column("order_id", sa.Integer, nullable=True),
    sa.Column("return_id", sa.Integer, nullable=True),
    sa.Column("recall_id", sa.Integer, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_catalog_stock_movements_item", "gtin", "lot_no", "at"),
)

recalls = sa.Table(
    "catalog_recalls",
    metadata,
    sa.Column("recall_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("gtin", sa.String(14), nullable=False),
    sa.Column("lot_no", sa.String(20), nullable=False),
    sa.Column("action", sa.String(6), nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_catalog_recalls_lot", "gtin", "lot_no"),
)

returns = sa.Table(
    "catalog_returns",
    metadata,
    sa.Column("return_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("catalog_orders.order_id"), nullable=False),
    sa.Column("return_no", sa.String(48), nullable=True, unique=True),
    sa.Column("terminal_id", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(6), nullable=False),
    sa.Column("status", sa.String(10), nullable=False, index=True),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("restock", sa.Boolean, nullable=False),
    sa.Column("source", sa.String(10), nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("stan", sa.String(6), nullable=True),
    sa.Column("batch_no", sa.String(6), nullable=True),
    sa.Column("rrn", sa.String(12), nullable=True),
    sa.Column("auth_code", sa.String(6), nullable=True),
    sa.Column("response_code", sa.String(2), nullable=True),
    sa.Column("note", sa.String(200), nullable=True),
    sa.Column("payment_check", sa.String(12), nullable=True),
    sa.Index("ix_catalog_returns_order", "order_id"),
)

return_lines = sa.Table(
    "catalog_return_lines",
    metadata,
    sa.Column("return_line_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("return_id", sa.Integer, sa.ForeignKey("catalog_returns.return_id"), nullable=False),
    sa.Column(
        "order_line_id",
        sa.Integer,
        sa.ForeignKey("catalog_order_lines.order_line_id"),
        nullable=False,
    ),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Index("ix_catalog_return_lines_return", "return_id"),
)

payments_used = sa.Table(
    "catalog_payments_used",
    metadata,
    sa.Column("terminal_id", sa.String(8), primary_key=True),
    sa.Column("batch_no", sa.String(6), primary_key=True),
    sa.Column("stan", sa.String(6), primary_key=True),
    sa.Column("order_id", sa.Integer, nullable=False),
    sa.Column("return_id", sa.Integer, nullable=True),
)
"""Each card transaction (terminal, batch_no, STAN) completes one order or one return, once."""

units_out = sa.Table(
    "catalog_units_out",
    metadata,
    sa.Column("kind", sa.String(6), primary_key=True),
    sa.Column("gtin", sa.String(14), primary_key=True),
    sa.Column("code", sa.String(20), primary_key=True),
    sa.Column(
        "order_line_id",
        sa.Integer,
        sa.ForeignKey("catalog_order_lines.order_line_id"),
        nullable=False,
    ),
)
"""Units (a GS1 serial, a drug traceability code) on a pending or paid order line, not returned.

The primary key is what refuses the same unit twice, even from two tills at once.
"""

tills = sa.Table(
    "catalog_tills",
    metadata,
    sa.Column("terminal_id", sa.String(8), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("issued_by", sa.String(64), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)
"""Tills allowed to sync and write orders over HTTP; only a hash of each credential."""
