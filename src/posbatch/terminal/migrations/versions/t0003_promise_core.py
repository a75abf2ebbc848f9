"""The batch limit: how many transactions one field-48 counter takes before the terminal
settles by itself (交易笔数已满，请先结算 without the cashier's help).

Field 48 counts at most 999 debits and 999 credits per card class; the terminal
settles its batch before one of those counters reaches ``batch_limit`` (default
500, at most 999) and carries on with the cashier's transaction in the next
batch. A journal from before this revision takes the default.

Revision ID: t0003_promise_core
Revises: t0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0003_promise_core"
down_revision = "t0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("terminal_state") as batch:
        batch.add_column(
            sa.Column("batch_limit", sa.Integer(), nullable=False, server_default="500")
        )
