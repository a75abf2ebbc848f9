"""Catalog: products, lots, versions, orders with their lines, terminal copy state.

Revision ID: c0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
    )
    op.create_table(
        "catalog_products",
        sa.Column("gtin", sa.String(14), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price_fen", sa.BigInteger, nullable=False),
        sa.Column("lot_tracked", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_catalog_products_version", "catalog_products", ["version"])
    op.create_table(
        "catalog_lots",
        sa.Column("gtin", sa.String(14), sa.ForeignKey("catalog_products.gtin"), primary_key=True),
        sa.Column("lot_no", sa.String(20), primary_key=True),
        sa.Column("expiry", sa.Date, nullable=True),
        sa.Column("quantity_on_hand", sa.Integer, nullable=False),
        sa.Column("recalled", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_catalog_lots_version", "catalog_lots", ["version"])
    op.create_table(
        "catalog_orders",
        sa.Column("order_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("receipt_no", sa.String(40), nullable=True, unique=True),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
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
    op.create_index("ix_catalog_orders_status", "catalog_orders", ["status"])
    op.create_table(
        "catalog_order_lines",
        sa.Column("order_line_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("catalog_orders.order_id"), nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("gtin", sa.String(14), nullable=False),
        sa.Column("product_name", sa.String(200), nullable=False),
        sa.Column("lot_no", sa.String(20), nullable=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("price_fen", sa.BigInteger, nullable=False),
        sa.Column("lot_source", sa.String(10), nullable=False),
        sa.Column("scan_raw", sa.String(512), nullable=True),
    )
    op.create_index("ix_catalog_order_lines_lot_no", "catalog_order_lines", ["lot_no"])
    op.create_table(
        "catalog_replica_state",
        sa.Column("state_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "catalog_replica_state",
        "catalog_order_lines",
        "catalog_orders",
        "catalog_lots",
        "catalog_products",
        "catalog_versions",
    ):
        op.drop_table(table)
