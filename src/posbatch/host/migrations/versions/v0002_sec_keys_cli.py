"""Terminal keys sealed at rest: TMK, MAK and PIK sealed under the key-encryption key.

Creates ``host_key_encryption`` (the id of the KEK the store is sealed under)
and seals every clear key of ``host_terminals`` in place, in the migration's
transaction: the store is either all clear (before) or all sealed (after).
The KEK comes from the caller (:meth:`posbatch.host.store.HostStore.open`
passes it as the ``host_kek`` attribute); a store holding keys cannot be
migrated without it. The columns stay BLOB/bytea (no length on either
database); the live schema says the sealed size.

Revision ID: host_sec_keys_cli
Revises: host0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from posbatch.errors import ConfigError
from posbatch.host.sealing import KeyEncryptionKey, KeyKind

revision = "host_sec_keys_cli"
down_revision = "host0001"
branch_labels = None
depends_on = None

KEK_ATTRIBUTE = "host_kek"
_KEY_COLUMNS = (("master_key", KeyKind.TMK), ("mak", KeyKind.MAK), ("pik", KeyKind.PIK))
_terminals = sa.table(
    "host_terminals",
    sa.column("terminal_id", sa.String),
    *(sa.column(name, sa.LargeBinary) for name, _kind in _KEY_COLUMNS),
)


def _kek() -> KeyEncryptionKey | None:
    kek = context.config.attributes.get(KEK_ATTRIBUTE)
    if kek is not None and not isinstance(kek, KeyEncryptionKey):
        raise ConfigError(f"{KEK_ATTRIBUTE} must be a KeyEncryptionKey")
    return kek


def _rekey(transform: Any, action: str) -> None:
    """Apply ``transform(value, kind, terminal_id)`` to every key of every terminal."""
    bind = op.get_bind()
    rows = bind.execute(sa.select(_terminals)).all()
    if not rows:
        return
    kek = _kek()
    if kek is None:
        raise ConfigError(
            f"{action} the keys of this host store needs its KEK: open the store with posbatch"
        )
    for row in rows:
        values = {
            name: transform(kek, bytes(value), kind, row.terminal_id)
            for (name, kind), value in zip(_KEY_COLUMNS, row[1:], strict=True)
            if value is not None
        }
        bind.execute(
            _terminals.update().where(_terminals.c.terminal_id == row.terminal_id).values(values)
        )


def upgrade() -> None:
    op.create_table(
        "host_key_encryption",
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kek_id", sa.String(length=16), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("slot = 1", name="ck_host_key_encryption_one_row"),
        sa.PrimaryKeyConstraint("slot"),
    )
    _rekey(
        lambda kek, clear, kind, terminal_id: kek.seal(clear, kind=kind, terminal_id=terminal_id),
        "sealing",
    )
    kek = _kek()
    if kek is not None:  # else the first HostStore.open with a KEK records it
        op.get_bind().execute(
            sa.table("host_key_encryption", sa.column("slot"), sa.column("kek_id"),
                     sa.column("changed_at"))
            .insert()
            .values(slot=1, kek_id=kek.kek_id,
                    changed_at=datetime.now(UTC).replace(tzinfo=None))
        )  # fmt: skip


def downgrade() -> None:
    _rekey(
        lambda kek, sealed, kind, terminal_id: kek.open(sealed, kind=kind, terminal_id=terminal_id),
        "opening",
    )
    op.drop_table("host_key_encryption")
