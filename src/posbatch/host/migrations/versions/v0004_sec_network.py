"""host_terminals.pending_keys: the keys of a sign-on not used yet (spoofed sign-on defence).

Sealed under the KEK like every key (PIK ‖ MAK, :data:`posbatch.host.store.SEALED_COLUMNS`);
a new column, empty in an older store: nothing to seal here.

Revision ID: sec_network
Revises: host_sec_keys_cli
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "sec_network"
down_revision = "host_sec_keys_cli"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("host_terminals") as batch:
        batch.add_column(sa.Column("pending_keys", sa.LargeBinary(length=64), nullable=True))


def downgrade() -> None:
    # Not batch mode: on SQLite it would copy host_terminals and drop the old table, which
    # the foreign keys of host_batches refuse; SQLite (>= 3.35) drops a column in place.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE host_terminals DROP COLUMN pending_keys")
    else:
        op.drop_column("host_terminals", "pending_keys")
