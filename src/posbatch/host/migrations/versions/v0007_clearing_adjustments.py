"""Adjustments (差错调整): a clearing run keeps each resolved exception that moved money.

A back-office resolution that moves the merchant's money (credit-merchant,
debit-merchant, refund-cardholder) is an adjustment line of the trading day it was
resolved on. The clearing run keeps it with the day's lines, keyed by the exception:
an exception's adjustment is kept once, on one day, never twice.

Revision ID: clearing_adjustments
Revises: promise_core
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "clearing_adjustments"
down_revision = "promise_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_clearing_adjustments",
        sa.Column(
            "exception_id",
            sa.Integer(),
            sa.ForeignKey("host_exceptions.exception_id"),
            primary_key=True,
        ),
        sa.Column(
            "trading_day",
            sa.Date(),
            sa.ForeignKey("host_cleared_days.trading_day"),
            nullable=False,
        ),
        sa.Column("merchant_id", sa.String(15), nullable=False),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("resolution", sa.String(24), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ix_host_clearing_adjustments_day_merchant",
        "host_clearing_adjustments",
        ["trading_day", "merchant_id"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_host_clearing_adjustments_day_merchant", table_name="host_clearing_adjustments"
    )
    op.drop_table("host_clearing_adjustments")
