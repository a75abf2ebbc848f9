"""Login throttling: failed logins counted per (name, address), per address, per account.

Locking the account after a few failures let anyone lock any user out
(posbatch.backoffice._throttle). ``host_users.failed_logins`` / ``locked_until`` stay: they
now hold the account's own ceiling and its bounded lock.

Revision ID: login_throttle
Revises: clearing_adjustments
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "login_throttle"
down_revision = "clearing_adjustments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_login_failures",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", "address"),
    )
    op.create_index("ix_host_login_failures_expires", "host_login_failures", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_host_login_failures_expires", table_name="host_login_failures")
    op.drop_table("host_login_failures")
