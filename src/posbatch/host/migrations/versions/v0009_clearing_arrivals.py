"""Arrival dates (到账日) as the clearing run computed them.

A cleared day's arrival date was computed from the calendar each time it was shown: an
override entered later, or a release of the holidays package with a new year's make-up
days, moved the date of funds already promised or paid. The clearing run now keeps, per
(trading day, merchant), the cycle it applied, the arrival date it computed and whether
that date was provisional; statements and clearing files of a cleared day read them.

Days cleared before this migration have no row: they are shown as computed (as before)
until ``posbatch clearing run --date D`` is made again for them, which keeps the arrival
it computes then (nothing else of the day changes).

Revision ID: clearing_arrivals
Revises: login_throttle
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "clearing_arrivals"
down_revision = "login_throttle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_clearing_arrivals",
        sa.Column(
            "trading_day",
            sa.Date(),
            sa.ForeignKey("host_cleared_days.trading_day"),
            primary_key=True,
        ),
        sa.Column("merchant_id", sa.String(15), primary_key=True),
        sa.Column("cycle", sa.String(4), nullable=False),
        sa.Column("arrival_date", sa.Date(), nullable=False),
        sa.Column("provisional", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("host_clearing_arrivals")
