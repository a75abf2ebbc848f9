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
    "calendar_years",
    "card_bins",
    "cleared_days",
    "clearing_lines",
    "clearing_sums",
    "cutoffs",
    "exceptions",
    "fee_schedules",
    "key_encryption",
    "merchant_terms",
    "metadata",
    "reversals",
    "settlements",
    "terminals",
    "transactions",
    "upload_records",
    "working_days",
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

# --- clearing (posbatch.clearing): effective-dated rules, history kept ----------------------
# merchant_id NULL = the acquirer's standard entry; rates are exact decimal fractions as text
# ("0.006" for 0.60 %), never floats; the later row of two on the same day wins.

fee_schedules = sa.Table(
    "host_fee_schedules",
    metadata,
    sa.Column("schedule_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("merchant_id", sa.String(15), nullable=True),
    sa.Column("effective_from", sa.Date, nullable=False),
    sa.Column("domestic_debit_rate", sa.String(16), nullable=False),
    sa.Column("domestic_debit_cap_fen", sa.BigInteger, nullable=True),
    sa.Column("domestic_credit_rate", sa.String(16), nullable=False),
    sa.Column("domestic_credit_cap_fen", sa.BigInteger, nullable=True),
    sa.Column("foreign_debit_rate", sa.String(16), nullable=False),
    sa.Column("foreign_debit_cap_fen", sa.BigInteger, nullable=True),
    sa.Column("foreign_credit_rate", sa.String(16), nullable=False),
    sa.Column("foreign_credit_cap_fen", sa.BigInteger, nullable=True),
    sa.Column("instant_rate", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_host_fee_schedules_merchant", "merchant_id", "effective_from"),
)

merchant_terms = sa.Table(
    "host_merchant_terms",
    metadata,
    sa.Column("terms_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("merchant_id", sa.String(15), nullable=True),
    sa.Column("effective_from", sa.Date, nullable=False),
    sa.Column("cycle", sa.String(4), nullable=False),
    sa.Column("void_fee", sa.String(8), nullable=False),
    sa.Column("refund_fee", sa.String(8), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_host_merchant_terms_merchant", "merchant_id", "effective_from"),
)

card_bins = sa.Table(
    "host_card_bins",
    metadata,
    sa.Column("bin_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prefix", sa.String(6), nullable=False),
    sa.Column("funding", sa.String(6), nullable=False),
    sa.Column("effective_from", sa.Date, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

working_days = sa.Table(
    "host_working_days",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("working", sa.Boolean, nullable=False),
    sa.Column("note", sa.String(200), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

calendar_years = sa.Table(
    "host_calendar_years",
    metadata,
    sa.Column("year", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("note", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

cutoffs = sa.Table(
    "host_cutoffs",
    metadata,
    sa.Column("cutoff_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("effective_from", sa.Date, nullable=False),
    sa.Column("cutoff", sa.String(5), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# A clearing run (清算) keeps each ended trading day's priced lines: statements and the
# clearing file of a cleared day are read from them (what was paid stays as it was paid).
cleared_days = sa.Table(
    "host_cleared_days",
    metadata,
    sa.Column("trading_day", sa.Date, primary_key=True),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("gross_fen", sa.BigInteger, nullable=False),
    sa.Column("fee_fen", sa.BigInteger, nullable=False),
    sa.Column("net_fen", sa.BigInteger, nullable=False),
    sa.Column("cleared_at", sa.DateTime, nullable=False),
)

clearing_lines = sa.Table(
    "host_clearing_lines",
    metadata,
    sa.Column("line_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "trading_day", sa.Date, sa.ForeignKey("host_cleared_days.trading_day"), nullable=False
    ),
    sa.Column("merchant_id", sa.String(15), nullable=False),
    sa.Column("transaction_id", sa.Integer, nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("terminal_id", sa.String(8), nullable=False),
    sa.Column("batch_id", sa.Integer, nullable=False),
    sa.Column("batch_no", sa.Integer, nullable=False),
    sa.Column("stan", sa.Integer, nullable=False),
    sa.Column("rrn", sa.String(12), nullable=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("reverses", sa.String(8), nullable=True),
    sa.Column("card_class", sa.String(16), nullable=False),
    sa.Column("bin_known", sa.Boolean, nullable=False),
    sa.Column("pan_masked", sa.String(19), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("fee_fen", sa.BigInteger, nullable=False),
    sa.Column("net_fen", sa.BigInteger, nullable=False),
    sa.Column("original_batch_no", sa.Integer, nullable=True),
    sa.Column("original_stan", sa.Integer, nullable=True),
    sa.Column("original_day", sa.Date, nullable=True),
    sa.UniqueConstraint("trading_day", "transaction_id", name="uq_host_clearing_lines_day_txn"),
    sa.Index("ix_host_clearing_lines_day_merchant", "trading_day", "merchant_id"),
)

# ... and each merchant's sums per card class and kind: a statement run reads these.
clearing_sums = sa.Table(
    "host_clearing_sums",
    metadata,
    sa.Column(
        "trading_day",
        sa.Date,
        sa.ForeignKey("host_cleared_days.trading_day"),
        primary_key=True,
    ),
    sa.Column("merchant_id", sa.String(15), primary_key=True),
    sa.Column("card_class", sa.String(16), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("gross_fen", sa.BigInteger, nullable=False),
    sa.Column("fee_fen", sa.BigInteger, nullable=False),
    sa.Column("net_fen", sa.BigInteger, nullable=False),
    sa.Column("unknown_bins", sa.Integer, nullable=False),
)

# Clearing reads a trading day by approval time, reversals by when they were applied, and
# the other credits of a refunded sale.
sa.Index("ix_host_transactions_created_at", transactions.c.created_at)
sa.Index("ix_host_transactions_original", transactions.c.original_transaction_id)
sa.Index("ix_host_reversals_created_at", reversals.c.created_at)
sa.Index("ix_host_reversals_transaction", reversals.c.transaction_id)
# One row: the id of the KEK every key of this store is sealed under.
key_encryption = sa.Table(
    "host_key_encryption",
    metadata,
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kek_id", sa.String(16), nullable=False),
    sa.Column("changed_at", sa.DateTime, nullable=False),
    sa.CheckConstraint("slot = 1", name="ck_host_key_encryption_one_row"),
)
