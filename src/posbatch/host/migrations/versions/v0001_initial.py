"""The host store: terminals, batches, transactions, reversals, uploads, exceptions, settlements.

Revision ID: host0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "host0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_exceptions",
        sa.Column("exception_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("batch_no", sa.Integer(), nullable=True),
        sa.Column("stan", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("terminal_amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("host_amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("exception_id"),
    )
    op.create_index("ix_host_exceptions_terminal", "host_exceptions", ["terminal_id"], unique=False)
    op.create_table(
        "host_reversals",
        sa.Column("reversal_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("batch_no", sa.Integer(), nullable=False),
        sa.Column("stan", sa.Integer(), nullable=False),
        sa.Column("original_kind", sa.String(length=12), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("reason_code", sa.String(length=2), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=True),
        sa.Column("response_code", sa.String(length=2), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("reversal_id"),
    )
    op.create_index(
        "ix_host_reversals_lookup",
        "host_reversals",
        ["terminal_id", "batch_no", "stan"],
        unique=False,
    )
    op.create_table(
        "host_settlements",
        sa.Column("settlement_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("batch_no", sa.Integer(), nullable=False),
        sa.Column("stan", sa.Integer(), nullable=False),
        sa.Column("terminal_totals", sa.String(length=62), nullable=False),
        sa.Column("host_totals", sa.String(length=62), nullable=True),
        sa.Column("response_code", sa.String(length=2), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("settlement_id"),
    )
    op.create_index(
        "ix_host_settlements_terminal", "host_settlements", ["terminal_id"], unique=False
    )
    op.create_table(
        "host_terminals",
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("master_key", sa.LargeBinary(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("signed_on", sa.Boolean(), nullable=False),
        sa.Column("mak", sa.LargeBinary(length=8), nullable=True),
        sa.Column("pik", sa.LargeBinary(length=16), nullable=True),
        sa.Column("current_batch_id", sa.Integer(), nullable=True),
        sa.Column("last_stan", sa.Integer(), nullable=True),
        sa.Column("signed_on_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("terminal_id"),
    )
    op.create_table(
        "host_batches",
        sa.Column("batch_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("batch_no", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("close_reason", sa.String(length=16), nullable=True),
        sa.Column("terminal_totals", sa.String(length=62), nullable=True),
        sa.Column("host_totals", sa.String(length=62), nullable=True),
        sa.Column("settle_response_code", sa.String(length=2), nullable=True),
        sa.Column("upload_end_records", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["terminal_id"],
            ["host_terminals.terminal_id"],
        ),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    op.create_index(
        "ix_host_batches_terminal_batch_no",
        "host_batches",
        ["terminal_id", "batch_no"],
        unique=False,
    )
    op.create_table(
        "host_transactions",
        sa.Column("transaction_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("stan", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("card_type", sa.String(length=2), nullable=False),
        sa.Column("pan_hmac", sa.String(length=64), nullable=False),
        sa.Column("pan_masked", sa.String(length=19), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("response_code", sa.String(length=2), nullable=False),
        sa.Column("rrn", sa.String(length=12), nullable=True),
        sa.Column("auth_code", sa.String(length=6), nullable=True),
        sa.Column("local_time", sa.String(length=6), nullable=True),
        sa.Column("local_date", sa.String(length=4), nullable=True),
        sa.Column("original_transaction_id", sa.Integer(), nullable=True),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["host_batches.batch_id"],
        ),
        sa.PrimaryKeyConstraint("transaction_id"),
        sa.UniqueConstraint("batch_id", "stan", name="uq_host_transactions_batch_stan"),
    )
    op.create_table(
        "host_upload_records",
        sa.Column("upload_record_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("stan", sa.Integer(), nullable=False),
        sa.Column("card_type", sa.String(length=2), nullable=False),
        sa.Column("pan_hmac", sa.String(length=64), nullable=False),
        sa.Column("pan_masked", sa.String(length=19), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["host_batches.batch_id"],
        ),
        sa.PrimaryKeyConstraint("upload_record_id"),
        sa.UniqueConstraint("batch_id", "stan", name="uq_host_upload_records_batch_stan"),
    )


def downgrade() -> None:
    op.drop_table("host_upload_records")
    op.drop_table("host_transactions")
    op.drop_index("ix_host_batches_terminal_batch_no", table_name="host_batches")
    op.drop_table("host_batches")
    op.drop_table("host_terminals")
    op.drop_index("ix_host_settlements_terminal", table_name="host_settlements")
    op.drop_table("host_settlements")
    op.drop_index("ix_host_reversals_lookup", table_name="host_reversals")
    op.drop_table("host_reversals")
    op.drop_index("ix_host_exceptions_terminal", table_name="host_exceptions")
    op.drop_table("host_exceptions")
