"""A free reference per transaction (checkout order / lot); the resync-pending flag.

A terminal whose journal is new or restored from a backup cannot know what
the host's open batch holds; ``resync_pending`` makes its first sign-on
settle that batch before any new transaction (see the engine).

Revision ID: t0002
Revises: t0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0002"
down_revision = "t0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("reference", sa.String(64), nullable=True))
    with op.batch_alter_table("terminal_state") as batch:
        batch.add_column(
            sa.Column("resync_pending", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_index("ix_journal_entries_kind", "journal_entries", ["kind", "key"])
