"""Lots after the sale: stock movements, recalls, returns, units sold, tills, store identity.

Existing data is carried over so that stock stays what it was:

- each lot's ``quantity_on_hand`` becomes an opening movement (kind
  ``received``, reason "opening stock"); a recalled lot's stock is then moved
  to quarantine (kind ``quarantine``) and a recall record written with actor
  ``migration``;
- a product marked not lot-tracked that still has lots (an import once
  changed it while its lots stayed; its export could not be imported back)
  is lot-tracked again, under a new catalog version so terminal copies learn it;
- the store gets its identity (a random UUID) that changes documents carry.

Revision ID: c0002_lots_after_sale
Revises: c0001
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from alembic import op

revision = "c0002_lots_after_sale"
down_revision = "c0001"
branch_labels = None
depends_on = None

_MIGRATION_ACTOR = "migration"


def upgrade() -> None:
    with op.batch_alter_table("catalog_products") as batch:
        batch.add_column(
            sa.Column("quantity_on_hand", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("quarantined", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("trace_prefix", sa.String(7), nullable=True))
        batch.create_index("ix_catalog_products_trace_prefix", ["trace_prefix"])
    with op.batch_alter_table("catalog_lots") as batch:
        batch.add_column(sa.Column("quarantined", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("catalog_orders") as batch:
        batch.add_column(sa.Column("payment_check", sa.String(12), nullable=True))
        batch.alter_column(  # "part_refunded" is 13 characters
            "status", type_=sa.String(16), existing_type=sa.String(10), existing_nullable=False
        )
    with op.batch_alter_table("catalog_order_lines") as batch:
        batch.add_column(sa.Column("serial", sa.String(20), nullable=True))
        batch.add_column(sa.Column("trace_code", sa.String(20), nullable=True))
        batch.add_column(sa.Column("expiry_scanned", sa.Date, nullable=True))
        batch.create_index("ix_catalog_order_lines_serial", ["serial"])
        batch.create_index("ix_catalog_order_lines_trace_code", ["trace_code"])
    with op.batch_alter_table("catalog_replica_state") as batch:
        batch.add_column(sa.Column("source_store_id", sa.String(36), nullable=True))

    identity = op.create_table(
        "catalog_store_identity",
        sa.Column("state_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("store_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    movements = op.create_table(
        "catalog_stock_movements",
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
    )
    op.create_index(
        "ix_catalog_stock_movements_item", "catalog_stock_movements", ["gtin", "lot_no", "at"]
    )
    recalls = op.create_table(
        "catalog_recalls",
        sa.Column("recall_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("gtin", sa.String(14), nullable=False),
        sa.Column("lot_no", sa.String(20), nullable=False),
        sa.Column("action", sa.String(6), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_catalog_recalls_lot", "catalog_recalls", ["gtin", "lot_no"])
    op.create_table(
        "catalog_returns",
        sa.Column("return_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("catalog_orders.order_id"), nullable=False),
        sa.Column("return_no", sa.String(48), nullable=True, unique=True),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(6), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
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
    )
    op.create_index("ix_catalog_returns_status", "catalog_returns", ["status"])
    op.create_index("ix_catalog_returns_order", "catalog_returns", ["order_id"])
    op.create_table(
        "catalog_return_lines",
        sa.Column("return_line_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "return_id", sa.Integer, sa.ForeignKey("catalog_returns.return_id"), nullable=False
        ),
        sa.Column(
            "order_line_id",
            sa.Integer,
            sa.ForeignKey("catalog_order_lines.order_line_id"),
            nullable=False,
        ),
        sa.Column("quantity", sa.Integer, nullable=False),
    )
    op.create_index("ix_catalog_return_lines_return", "catalog_return_lines", ["return_id"])
    op.create_table(
        "catalog_payments_used",
        sa.Column("terminal_id", sa.String(8), primary_key=True),
        sa.Column("batch_no", sa.String(6), primary_key=True),
        sa.Column("stan", sa.String(6), primary_key=True),
        sa.Column("order_id", sa.Integer, nullable=False),
        sa.Column("return_id", sa.Integer, nullable=True),
    )
    op.create_table(
        "catalog_units_out",
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
    op.create_table(
        "catalog_tills",
        sa.Column("terminal_id", sa.String(8), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    _carry_over(identity, movements, recalls)


def _carry_over(identity: sa.Table, movements: sa.Table, recalls: sa.Table) -> None:
    connection = op.get_bind()
    now = dt.datetime.now(dt.UTC)
    connection.execute(
        identity.insert().values(state_id=1, store_id=str(uuid.uuid4()), created_at=now)
    )
    meta = sa.MetaData()
    lots = sa.Table("catalog_lots", meta, autoload_with=connection)
    products = sa.Table("catalog_products", meta, autoload_with=connection)
    versions = sa.Table("catalog_versions", meta, autoload_with=connection)
    replica = connection.execute(sa.text("SELECT count(*) FROM catalog_replica_state")).scalar()
    if replica:
        return  # a terminal's copy: the back office owns stock and recalls
    untracked_with_lots = (
        connection.execute(
            sa.select(products.c.gtin)
            .where(products.c.lot_tracked.is_(False))
            .where(products.c.gtin.in_(sa.select(lots.c.gtin)))
        )
        .scalars()
        .all()
    )
    all_lots = connection.execute(sa.select(lots)).all()
    quarantine = [lot for lot in all_lots if lot.recalled and lot.quantity_on_hand > 0]
    version = None
    if untracked_with_lots or quarantine:
        inserted = connection.execute(
            versions.insert().values(
                created_at=now, reason="c0002: stock as movements, recalled stock quarantined"
            )
        ).inserted_primary_key
        assert inserted is not None
        version = inserted[0]
    if untracked_with_lots:
        connection.execute(
            products.update()
            .where(products.c.gtin.in_(untracked_with_lots))
            .values(lot_tracked=True, version=version)
        )
    for lot in all_lots:
        if lot.quantity_on_hand:
            connection.execute(
                movements.insert().values(
                    at=now,
                    gtin=lot.gtin,
                    lot_no=lot.lot_no,
                    kind="received",
                    on_hand_delta=lot.quantity_on_hand,
                    quarantined_delta=0,
                    reason="opening stock (migration c0002)",
                    actor=_MIGRATION_ACTOR,
                    version=lot.version,
                )
            )
        if not lot.recalled:
            continue
        inserted = connection.execute(
            recalls.insert().values(
                gtin=lot.gtin,
                lot_no=lot.lot_no,
                action="recall",
                reason="recalled before recall records were kept",
                actor=_MIGRATION_ACTOR,
                at=now,
                version=lot.version,
            )
        ).inserted_primary_key
        assert inserted is not None
        recall_id = inserted[0]
        if lot.quantity_on_hand > 0:
            connection.execute(
                movements.insert().values(
                    at=now,
                    gtin=lot.gtin,
                    lot_no=lot.lot_no,
                    kind="quarantine",
                    on_hand_delta=-lot.quantity_on_hand,
                    quarantined_delta=lot.quantity_on_hand,
                    reason="recalled lot",
                    actor=_MIGRATION_ACTOR,
                    recall_id=recall_id,
                    version=version,
                )
            )
            connection.execute(
                lots.update()
                .where(lots.c.gtin == lot.gtin, lots.c.lot_no == lot.lot_no)
                .values(quantity_on_hand=0, quarantined=lot.quantity_on_hand, version=version)
            )


def downgrade() -> None:
    for table in (
        "catalog_tills",
        "catalog_units_out",
        "catalog_payments_used",
        "catalog_return_lines",
        "catalog_returns",
        "catalog_recalls",
        "catalog_stock_movements",
        "catalog_store_identity",
    ):
        op.drop_table(table)
    with op.batch_alter_table("catalog_replica_state") as batch:
        batch.drop_column("source_store_id")
    with op.batch_alter_table("catalog_order_lines") as batch:
        batch.drop_index("ix_catalog_order_lines_trace_code")
        batch.drop_index("ix_catalog_order_lines_serial")
        batch.drop_column("expiry_scanned")
        batch.drop_column("trace_code")
        batch.drop_column("serial")
    with op.batch_alter_table("catalog_orders") as batch:
        batch.drop_column("payment_check")
        batch.alter_column(
            "status", type_=sa.String(10), existing_type=sa.String(16), existing_nullable=False
        )
    with op.batch_alter_table("catalog_lots") as batch:
        batch.drop_column("quarantined")
    with op.batch_alter_table("catalog_products") as batch:
        batch.drop_index("ix_catalog_products_trace_prefix")
        batch.drop_column("trace_prefix")
        batch.drop_column("quarantined")
        batch.drop_column("quantity_on_hand")
