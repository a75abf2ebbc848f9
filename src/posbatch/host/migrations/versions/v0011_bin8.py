"""8-digit BINs (ISO/IEC 7812-1:2017): a BIN entry of 8 digits, and what matches a card to it.

The host kept only the first 6 and last 4 digits of a card in clear, so clearing could
not tell which 8-digit BIN a card falls under. A sale, void or refund approved from now on
keeps ``host_transactions.bin8_hmac``: the PAN key's HMAC of the card's first 8 digits
(tagged, so no card number hashes the same; only for cards of 16 digits or more) — never
the digits themselves. Clearing hashes each 8-digit entry of ``host_card_bins`` the same
way and matches. ``host_card_bins.prefix`` widens to 8 characters. A transaction approved
before this migration has no hash: it is matched on its first 6 digits, as it was priced.

Revision ID: bin8
Revises: pan_key_id
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "bin8"
down_revision = "pan_key_id"
branch_labels = None
depends_on = None


def _prefix_length(before: int, after: int) -> None:
    # batch mode: SQLite copies the table (host_card_bins has no index of its own), the
    # others alter the column in place
    with op.batch_alter_table("host_card_bins") as batch:
        batch.alter_column(
            "prefix",
            existing_type=sa.String(before),
            type_=sa.String(after),
            existing_nullable=False,
        )


def upgrade() -> None:
    op.add_column("host_transactions", sa.Column("bin8_hmac", sa.String(64), nullable=True))
    _prefix_length(6, 8)


def downgrade() -> None:
    op.execute("DELETE FROM host_card_bins WHERE length(prefix) > 6")
    _prefix_length(8, 6)
    if op.get_bind().dialect.name == "sqlite":
        # Not batch mode: it would copy host_transactions and lose its expression index;
        # SQLite (>= 3.35) drops a column in place.
        op.execute("ALTER TABLE host_transactions DROP COLUMN bin8_hmac")
    else:
        op.drop_column("host_transactions", "bin8_hmac")
