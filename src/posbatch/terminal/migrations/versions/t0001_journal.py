"""The terminal journal: hash-chained entries plus the tables they describe.

Revision ID: t0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journal_entries",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "terminal_state",
        sa.Column("state_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("merchant_id", sa.String(15), nullable=False),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("host_address", sa.String(255), nullable=False),
        sa.Column("stan", sa.Integer, nullable=False),
        sa.Column("batch_id", sa.Integer, nullable=False),
        sa.Column("training", sa.Boolean, nullable=False),
        sa.Column("training_seq", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("batch_no", sa.Integer, nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.String(32), nullable=False),
        sa.Column("closed_at", sa.String(32), nullable=True),
        sa.Column("terminal_totals", sa.String(62), nullable=True),
        sa.Column("host_totals", sa.String(62), nullable=True),
        sa.Column("settle_response_code", sa.String(2), nullable=True),
        sa.Column("balanced", sa.Boolean, nullable=True),
        sa.Column("close_reason", sa.String(32), nullable=True),
        sa.Column("uploaded_count", sa.Integer, nullable=False),
        sa.Column("upload_messages", sa.Integer, nullable=False),
    )
    op.create_table(
        "transactions",
        sa.Column("txn_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("batch_id", sa.Integer, nullable=False),
        sa.Column("batch_no", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("stan", sa.Integer, nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("pan_sealed", sa.Text, nullable=False),
        sa.Column("pan_masked", sa.String(19), nullable=False),
        sa.Column("expiry", sa.String(4), nullable=True),
        sa.Column("card_type", sa.String(2), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("response_code", sa.String(2), nullable=True),
        sa.Column("rrn", sa.String(12), nullable=True),
        sa.Column("auth_code", sa.String(6), nullable=True),
        sa.Column("host_time", sa.String(6), nullable=True),
        sa.Column("host_date", sa.String(4), nullable=True),
        sa.Column("original_txn_id", sa.Integer, nullable=True),
        sa.Column("original_batch_no", sa.Integer, nullable=True),
        sa.Column("original_stan", sa.Integer, nullable=True),
        sa.Column("original_date", sa.String(4), nullable=True),
        sa.Column("reversal_reason", sa.String(2), nullable=True),
        sa.Column("send_attempts", sa.Integer, nullable=False),
        sa.Column("uploaded", sa.Boolean, nullable=False),
        sa.Column("training", sa.Boolean, nullable=False),
        sa.Column("refunded_fen", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_transactions_batch", "transactions", ["batch_id", "stan"])
