"""Clearing: fee schedules, merchant terms, card BINs, working-day overrides, published
years, cut-offs; cleared days and their lines; indexes for reading a trading day.

Revision ID: clearing
Revises: host0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "clearing"
down_revision = "host0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    rates: list[sa.Column[Any]] = []
    for name in ("domestic_debit", "domestic_credit", "foreign_debit", "foreign_credit"):
        rates.append(sa.Column(f"{name}_rate", sa.String(length=16), nullable=False))
        rates.append(sa.Column(f"{name}_cap_fen", sa.BigInteger(), nullable=True))
    op.create_table(
        "host_fee_schedules",
        sa.Column("schedule_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=True),
        sa.Column("effective_from", sa.Date(), nullable=False),
        *rates,
        sa.Column("instant_rate", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id"),
    )
    op.create_index(
        "ix_host_fee_schedules_merchant",
        "host_fee_schedules",
        ["merchant_id", "effective_from"],
        unique=False,
    )
    op.create_table(
        "host_merchant_terms",
        sa.Column("terms_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=True),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("cycle", sa.String(length=4), nullable=False),
        sa.Column("void_fee", sa.String(length=8), nullable=False),
        sa.Column("refund_fee", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("terms_id"),
    )
    op.create_index(
        "ix_host_merchant_terms_merchant",
        "host_merchant_terms",
        ["merchant_id", "effective_from"],
        unique=False,
    )
    op.create_table(
        "host_card_bins",
        sa.Column("bin_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("prefix", sa.String(length=6), nullable=False),
        sa.Column("funding", sa.String(length=6), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("bin_id"),
    )
    op.create_table(
        "host_working_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("working", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_table(
        "host_calendar_years",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("year"),
    )
    op.create_table(
        "host_cutoffs",
        sa.Column("cutoff_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("cutoff", sa.String(length=5), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("cutoff_id"),
    )
    op.create_table(
        "host_cleared_days",
        sa.Column("trading_day", sa.Date(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("gross_fen", sa.BigInteger(), nullable=False),
        sa.Column("fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("net_fen", sa.BigInteger(), nullable=False),
        sa.Column("cleared_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("trading_day"),
    )
    op.create_table(
        "host_clearing_lines",
        sa.Column("line_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("trading_day", sa.Date(), nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("batch_no", sa.Integer(), nullable=False),
        sa.Column("stan", sa.Integer(), nullable=False),
        sa.Column("rrn", sa.String(length=12), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("reverses", sa.String(length=8), nullable=True),
        sa.Column("card_class", sa.String(length=16), nullable=False),
        sa.Column("bin_known", sa.Boolean(), nullable=False),
        sa.Column("pan_masked", sa.String(length=19), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("net_fen", sa.BigInteger(), nullable=False),
        sa.Column("original_batch_no", sa.Integer(), nullable=True),
        sa.Column("original_stan", sa.Integer(), nullable=True),
        sa.Column("original_day", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["trading_day"], ["host_cleared_days.trading_day"]),
        sa.PrimaryKeyConstraint("line_id"),
        sa.UniqueConstraint("trading_day", "transaction_id", name="uq_host_clearing_lines_day_txn"),
    )
    op.create_index(
        "ix_host_clearing_lines_day_merchant",
        "host_clearing_lines",
        ["trading_day", "merchant_id"],
        unique=False,
    )
    op.create_table(
        "host_clearing_sums",
        sa.Column("trading_day", sa.Date(), nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("card_class", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("gross_fen", sa.BigInteger(), nullable=False),
        sa.Column("fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("net_fen", sa.BigInteger(), nullable=False),
        sa.Column("unknown_bins", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["trading_day"], ["host_cleared_days.trading_day"]),
        sa.PrimaryKeyConstraint("trading_day", "merchant_id", "card_class", "kind"),
    )
    op.create_index(
        "ix_host_transactions_created_at", "host_transactions", ["created_at"], unique=False
    )
    op.create_index(
        "ix_host_transactions_original",
        "host_transactions",
        ["original_transaction_id"],
        unique=False,
    )
    op.create_index("ix_host_reversals_created_at", "host_reversals", ["created_at"], unique=False)
    op.create_index(
        "ix_host_reversals_transaction", "host_reversals", ["transaction_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_host_reversals_transaction", table_name="host_reversals")
    op.drop_index("ix_host_reversals_created_at", table_name="host_reversals")
    op.drop_index("ix_host_transactions_original", table_name="host_transactions")
    op.drop_index("ix_host_transactions_created_at", table_name="host_transactions")
    op.drop_table("host_clearing_sums")
    op.drop_index("ix_host_clearing_lines_day_merchant", table_name="host_clearing_lines")
    op.drop_table("host_clearing_lines")
    op.drop_table("host_cleared_days")
    op.drop_table("host_cutoffs")
    op.drop_table("host_calendar_years")
    op.drop_table("host_working_days")
    op.drop_table("host_card_bins")
    op.drop_index("ix_host_merchant_terms_merchant", table_name="host_merchant_terms")
    op.drop_table("host_merchant_terms")
    op.drop_index("ix_host_fee_schedules_merchant", table_name="host_fee_schedules")
    op.drop_table("host_fee_schedules")
