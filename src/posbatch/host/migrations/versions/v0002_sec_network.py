"""host_terminals.pending_keys: the keys of a sign-on not used yet (spoofed sign-on defence).

Revision ID: sec_network
Revises: host0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "sec_network"
down_revision = "host0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("host_terminals") as batch:
        batch.add_column(sa.Column("pending_keys", sa.LargeBinary(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("host_terminals") as batch:
        batch.drop_column("pending_keys")
