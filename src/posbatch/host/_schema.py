"""The host's tables (SQLAlchemy Core). Changes go through an Alembic migration too.

All times are naive UTC. Money is integer fen. A PAN is only ever stored as
its keyed hash (``pan_hmac``) and its masked form (``pan_masked``). Terminal
keys (``master_key``, ``mak``, ``pik``, ``pending_keys``) are only ever stored sealed under the
key-encryption key (:mod:`posbatch.host.sealing`); ``host_key_encryption``
names that KEK (its id, never the key).
"""

from __future__ import annotations

import sqlalchemy as sa

from posbatch.host.sealing import SEALED_KEY_BYTES_MAX

__all__ = [
    "batches",
    "exceptions",
    "key_encryption",
    "metadata",
    "reversals",
    "settlements",
    "terminals",
    "transactions",
    "upload_records",
]

metadata = sa.MetaData()

terminals = sa.Table(
    "host_terminals",
    metadata,
    sa.Column("terminal_id", sa.String(8), primary_key=True),
    sa.Column("merchant_id", sa.String(15), nullable=False),
    sa.Column("master_key", sa.LargeBinary(SEALED_KEY_BYTES_MAX), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("signed_on", sa.Boolean, nullable=False),
    sa.Column("mak", sa.LargeBinary(SEALED_KEY_BYTES_MAX), nullable=True),
    sa.Column("pik", sa.LargeBinary(SEALED_KEY_BYTES_MAX), nullable=True),
    sa.Column("current_batch_id", sa.Integer, nullable=True),
    sa.Column("last_stan", sa.Integer, nullable=True),
    sa.Column("signed_on_at", sa.DateTime, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # PIK ‖ MAK of the last sign-on while no request has used them yet, sealed like every
    # key: mak/pik stay the keys in force until a request MACed under these arrives
    # (docs/host.md, "Sign-on and sign-off from someone else").
    sa.Column("pending_keys", sa.LargeBinary(SEALED_KEY_BYTES_MAX), nullable=True),
)

batches = sa.Table(
    "host_batches",
    metadata,
    sa.Column("batch_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "terminal_id", sa.String(8), sa.ForeignKey("host_terminals.terminal_id"), nullable=False
    ),
    sa.Column("batch_no", sa.Integer, nullable=False),
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("opened_at", sa.DateTime, nullable=False),
    sa.Column("closed_at", sa.DateTime, nullable=True),
    sa.Column("close_reason", sa.String(16), nullable=True),
    sa.Column("terminal_totals", sa.String(62), nullable=True),
    sa.Column("host_totals", sa.String(62), nullable=True),
    sa.Column("settle_response_code", sa.String(2), nullable=True),
    sa.Column("upload_end_records", sa.Integer, nullable=True),
    sa.Index("ix_host_batches_terminal_batch_no", "terminal_id", "batch_no"),
)

transactions = sa.Table(
    "host_transactions",
    metadata,
    sa.Column("transaction_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("host_batches.batch_id"), nullable=False),
    sa.Column("terminal_id", sa.String(8), nullable=False),
    sa.Column("stan", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("card_type", sa.String(2), nullable=False),
    sa.Column("pan_hmac", sa.String(64), nullable=False),
    sa.Column("pan_masked", sa.String(19), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("response_code", sa.String(2), nullable=False),
    sa.Column("rrn", sa.String(12), nullable=True),
    sa.Column("auth_code", sa.String(6), nullable=True),
    sa.Column("local_time", sa.String(6), nullable=True),
    sa.Column("local_date", sa.String(4), nullable=True),
    sa.Column("original_transaction_id", sa.Integer, nullable=True),
    sa.Column("refunded_fen", sa.BigInteger, nullable=False),
    sa.Column("request_digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("batch_id", "stan", name="uq_host_transactions_batch_stan"),
)

reversals = sa.Table(
    "host_reversals",
    metadata,
    sa.Column("reversal_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("terminal_id", sa.String(8), nullable=False),
    sa.Column("batch_id", sa.Integer, nullable=True),
    sa.Column("batch_no", sa.Integer, nullable=False),
    sa.Column("stan", sa.Integer, nullable=False),
    sa.Column("original_kind", sa.String(12), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("reason_code", sa.String(2), nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("transaction_id", sa.Integer, nullable=True),
    sa.Column("response_code", sa.String(2), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_host_reversals_lookup", "terminal_id", "batch_no", "stan"),
)

upload_records = sa.Table(
    "host_upload_records",
    metadata,
    sa.Column("upload_record_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("host_batches.batch_id"), nullable=False),
    sa.Column("stan", sa.Integer, nullable=False),
    sa.Column("card_type", sa.String(2), nullable=False),
    sa.Column("pan_hmac", sa.String(64), nullable=False),
    sa.Column("pan_masked", sa.String(19), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("batch_id", "stan", name="uq_host_upload_records_batch_stan"),
)

exceptions = sa.Table(
    "host_exceptions",
    metadata,
    sa.Column("exception_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("terminal_id", sa.String(8), nullable=False),
    sa.Column("merchant_id", sa.String(15), nullable=False),
    sa.Column("batch_id", sa.Integer, nullable=True),
    sa.Column("batch_no", sa.Integer, nullable=True),
    sa.Column("stan", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("cause", sa.Text, nullable=False),
    sa.Column("terminal_amount_fen", sa.BigInteger, nullable=True),
    sa.Column("host_amount_fen", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_host_exceptions_terminal", "terminal_id"),
)

settlements = sa.Table(
    "host_settlements",
    metadata,
    sa.Column("settlement_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.Integer, nullable=True),
    sa.Column("terminal_id", sa.String(8), nullable=False),
    sa.Column("batch_no", sa.Integer, nullable=False),
    sa.Column("stan", sa.Integer, nullable=False),
    sa.Column("terminal_totals", sa.String(62), nullable=False),
    sa.Column("host_totals", sa.String(62), nullable=True),
    sa.Column("response_code", sa.String(2), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_host_settlements_terminal", "terminal_id"),
)

# One row: the id of the KEK every key of this store is sealed under.
key_encryption = sa.Table(
    "host_key_encryption",
    metadata,
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kek_id", sa.String(16), nullable=False),
    sa.Column("changed_at", sa.DateTime, nullable=False),
    sa.CheckConstraint("slot = 1", name="ck_host_key_encryption_one_row"),
)
