"""The id of the key a store's card numbers are hashed under (``host-pan.key``).

A store restored with another data directory's ``host-pan.key`` hashed every card again
under the wrong key: no void or refund of an earlier sale found its sale (14), no
duplicate was found. The store now records the key's id at its first use
(``host_key_encryption.pan_key_id``) and refuses another key, as it refuses another KEK.
A store made before this migration records the key it is next opened with.

Revision ID: pan_key_id
Revises: clearing_arrivals
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pan_key_id"
down_revision = "clearing_arrivals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("host_key_encryption", sa.Column("pan_key_id", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("host_key_encryption") as batch:
        batch.drop_column("pan_key_id")
