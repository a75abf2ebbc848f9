"""The host store: terminals, batches, transactions, reversals, uploads, exceptions, settlements.

Revision ID: host0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from posbatch.host import _schema

revision = "host0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = (
    _schema.terminals,
    _schema.batches,
    _schema.transactions,
    _schema.reversals,
    _schema.upload_records,
    _schema.exceptions,
    _schema.settlements,
)


def upgrade() -> None:
    bind = op.get_bind()
    for table in _TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(_TABLES):
        table.drop(bind)
