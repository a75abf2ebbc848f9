"""The journal's schema: its tables as SQLAlchemy knows them, and what revision a file is at.

The tables are created and changed only by the migrations
(``posbatch.terminal:migrations``, version table ``journal_alembic_version``);
these definitions are what the journal's statements are built from. Every
column is text, an integer or a boolean, which every driver takes as it is
(the journal writes through the driver: see :mod:`posbatch.terminal._journal`).
"""

from __future__ import annotations

import functools
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from posbatch.errors import StorageError

__all__ = [
    "JOURNAL_FILE_NAME",
    "MIGRATIONS",
    "VERSION_TABLE",
    "batches_table",
    "entries_table",
    "metadata",
    "revision_and_counters",
    "schema_head",
    "schema_revision_of",
    "state_table",
    "transactions_table",
]

JOURNAL_FILE_NAME: Final = "journal.db"
VERSION_TABLE: Final = "journal_alembic_version"
MIGRATIONS: Final = "posbatch.terminal:migrations"

metadata = sa.MetaData()

entries_table = sa.Table(
    "journal_entries",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
state_table = sa.Table(
    "terminal_state",
    metadata,
    sa.Column("state_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("merchant_id", sa.String(15)),
    sa.Column("terminal_id", sa.String(8)),
    sa.Column("host_address", sa.String(255)),
    sa.Column("stan", sa.Integer),
    sa.Column("batch_id", sa.Integer),
    sa.Column("training", sa.Boolean),
    sa.Column("training_seq", sa.Integer),
    sa.Column("created_at", sa.String(32)),
    sa.Column("resync_pending", sa.Boolean),
    sa.Column("batch_limit", sa.Integer),
)
batches_table = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("batch_no", sa.Integer),
    sa.Column("step", sa.String(16)),
    sa.Column("opened_at", sa.String(32)),
    sa.Column("closed_at", sa.String(32)),
    sa.Column("terminal_totals", sa.String(62)),
    sa.Column("host_totals", sa.String(62)),
    sa.Column("settle_response_code", sa.String(2)),
    sa.Column("balanced", sa.Boolean),
    sa.Column("close_reason", sa.String(32)),
    sa.Column("uploaded_count", sa.Integer),
    sa.Column("upload_messages", sa.Integer),
)
transactions_table = sa.Table(
    "transactions",
    metadata,
    sa.Column("txn_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("batch_id", sa.Integer),
    sa.Column("batch_no", sa.Integer),
    sa.Column("kind", sa.String(16)),
    sa.Column("stan", sa.Integer),
    sa.Column("amount_fen", sa.BigInteger),
    sa.Column("pan_sealed", sa.Text),
    sa.Column("pan_masked", sa.String(19)),
    sa.Column("expiry", sa.String(4)),
    sa.Column("card_type", sa.String(2)),
    sa.Column("state", sa.String(24)),
    sa.Column("response_code", sa.String(2)),
    sa.Column("rrn", sa.String(12)),
    sa.Column("auth_code", sa.String(6)),
    sa.Column("host_time", sa.String(6)),
    sa.Column("host_date", sa.String(4)),
    sa.Column("original_txn_id", sa.Integer),
    sa.Column("original_batch_no", sa.Integer),
    sa.Column("original_stan", sa.Integer),
    sa.Column("original_date", sa.String(4)),
    sa.Column("reversal_reason", sa.String(2)),
    sa.Column("send_attempts", sa.Integer),
    sa.Column("uploaded", sa.Boolean),
    sa.Column("training", sa.Boolean),
    sa.Column("refunded_fen", sa.BigInteger),
    sa.Column("created_at", sa.String(32)),
    sa.Column("updated_at", sa.String(32)),
    sa.Column("reference", sa.String(64)),
)


@functools.cache
def schema_head() -> str:
    """The journal schema revision this software ships (the head of its migrations).

    Read once per process: the migrations ship with the software and change only with it
    (Alembic reads every migration file to find the head; doctor asks at every run)."""
    from alembic.config import Config  # noqa: PLC0415 - read only on restore and by doctor
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return ScriptDirectory.from_config(config).get_current_head() or "?"


def schema_revision_of(engine: Engine) -> str | None:
    """The schema revision of the journal behind ``engine``; None when it has none."""
    return revision_and_counters(engine)[0]


def revision_and_counters(engine: Engine) -> tuple[str | None, int | None, int | None]:
    """(schema revision, STAN, current batch_no) of a journal, Nones where absent."""
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            if VERSION_TABLE not in tables:
                return None, None, None
            revision = connection.execute(
                sa.text(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 - constant
            ).scalar()
            if "terminal_state" not in tables:
                return revision, None, None
            row = connection.execute(
                sa.text(
                    "SELECT s.stan, b.batch_no FROM terminal_state s "
                    "JOIN batches b ON b.batch_id = s.batch_id"
                )
            ).first()
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot read the journal: {exc}") from exc
    if row is None:
        return revision, None, None
    return revision, int(row[0]), int(row[1])
