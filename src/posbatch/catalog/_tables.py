"""Tables of the catalog store (SQLAlchemy Core). Migrations: ``catalog/migrations``.

The back office and a terminal's copy use the same schema: the copy simply
leaves ``catalog_orders`` empty and fills ``catalog_replica_state``.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "lots",
    "metadata",
    "order_lines",
    "orders",
    "products",
    "replica_state",
    "versions",
]

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
)

orders = sa.Table(
    "catalog_orders",
    metadata,
    sa.Column("order_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("receipt_no", sa.String(40), nullable=True, unique=True),
    sa.Column("terminal_id", sa.String(8), nullable=False),
    sa.Column("status", sa.String(10), nullable=False, index=True),
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
)

replica_state = sa.Table(
    "catalog_replica_state",
    metadata,
    sa.Column("state_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(500), nullable=False),
)
