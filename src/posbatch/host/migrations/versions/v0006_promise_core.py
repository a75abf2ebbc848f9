"""Batch capacity: an upper bound of what each batch holds, kept with the batch.

Field 48 counts at most 999 debits and 999 credits per card class and sums each
amount in 12 digits; the host never approves what would make a batch's totals
unrepresentable (answer 95). To decide that without summing the batch on every
sale, each batch keeps ``approved_count`` and ``approved_amount_fen``: every
approval inserted into it, counted once and never lowered (a reversal does not
take it back). They bound every field-48 counter of the batch from above; only
a batch whose bound is near the limit is summed exactly (posbatch.host.core).

Existing batches are filled with what they hold now (their approved and voided
rows), so a batch already over capacity (from before this rule) is seen as such.

Revision ID: promise_core
Revises: host_backoffice
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "promise_core"
down_revision = "host_backoffice"
branch_labels = None
depends_on = None

_FILL = (
    "UPDATE host_batches SET "
    "approved_count = (SELECT count(*) FROM host_transactions t "
    "WHERE t.batch_id = host_batches.batch_id AND t.status IN ('approved', 'voided')), "
    "approved_amount_fen = (SELECT coalesce(sum(t.amount_fen), 0) FROM host_transactions t "
    "WHERE t.batch_id = host_batches.batch_id AND t.status IN ('approved', 'voided'))"
)


def upgrade() -> None:
    with op.batch_alter_table("host_batches") as batch:
        batch.add_column(
            sa.Column("approved_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("approved_amount_fen", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.execute(_FILL)


def downgrade() -> None:
    # Not batch mode: on SQLite it would copy host_batches and drop the old table, which
    # the foreign keys pointing at it refuse; SQLite (>= 3.35) drops a column in place.
    for column in ("approved_amount_fen", "approved_count"):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE host_batches DROP COLUMN {column}")
        else:
            op.drop_column("host_batches", column)
