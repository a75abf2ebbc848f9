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
    "audit",
    "batch_errors",
    "batches",
    "calendar_years",
    "card_bins",
    "cleared_days",
    "clearing_adjustments",
    "clearing_arrivals",
    "clearing_lines",
    "clearing_sums",
    "cutoffs",
    "exception_history",
    "exception_work",
    "exceptions",
    "fee_schedules",
    "key_encryption",
    "login_failures",
    "merchant_terms",
    "metadata",
    "reversals",
    "sessions",
    "settlements",
    "terminals",
    "transactions",
    "upload_records",
    "users",
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
    # Every approval inserted into the batch, never lowered: an upper bound of each
    # field-48 counter (migration promise_core; posbatch.host.core, batch capacity).
    sa.Column("approved_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("approved_amount_fen", sa.BigInteger, nullable=False, server_default="0"),
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
    # the PAN key's hash of the card's first 8 digits (clearing's 8-digit BINs; migration
    # bin8): never the digits themselves
    sa.Column("bin8_hmac", sa.String(64), nullable=True),
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
    sa.Column("prefix", sa.String(8), nullable=False),
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

# ... and each resolved exception (差错) that moved the merchant's money: an adjustment line of
# the trading day it was resolved on, kept once (the exception is the key: never twice).
clearing_adjustments = sa.Table(
    "host_clearing_adjustments",
    metadata,
    sa.Column(
        "exception_id",
        sa.Integer,
        sa.ForeignKey("host_exceptions.exception_id"),
        primary_key=True,
    ),
    sa.Column(
        "trading_day", sa.Date, sa.ForeignKey("host_cleared_days.trading_day"), nullable=False
    ),
    sa.Column("merchant_id", sa.String(15), nullable=False),
    sa.Column("terminal_id", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("resolution", sa.String(24), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),  # signed: added to the net
    sa.Column("at", sa.DateTime, nullable=False),  # resolved_at
    sa.Index("ix_host_clearing_adjustments_day_merchant", "trading_day", "merchant_id"),
)

# ... and, per merchant, the arrival date (到账日) the run computed and the cycle it applied:
# what was promised stays what was promised, whatever the calendar says later (an override,
# a new release of the holidays package).
clearing_arrivals = sa.Table(
    "host_clearing_arrivals",
    metadata,
    sa.Column(
        "trading_day",
        sa.Date,
        sa.ForeignKey("host_cleared_days.trading_day"),
        primary_key=True,
    ),
    sa.Column("merchant_id", sa.String(15), primary_key=True),
    sa.Column("cycle", sa.String(4), nullable=False),
    sa.Column("arrival_date", sa.Date, nullable=False),
    sa.Column("provisional", sa.Boolean, nullable=False),  # computed through an unpublished year
    sa.Column("recorded_at", sa.DateTime, nullable=False),
)

# Clearing reads a trading day by approval time (ix_host_transactions_created, below: the back
# office's search index, which replaced clearing's own), reversals by when they were applied,
# and the other credits of a refunded sale.
sa.Index("ix_host_transactions_original", transactions.c.original_transaction_id)
sa.Index("ix_host_reversals_created_at", reversals.c.created_at)
sa.Index("ix_host_reversals_transaction", reversals.c.transaction_id)
# One row: the id of the KEK every key of this store is sealed under, and the id of the key
# its card numbers are hashed under (host-pan.key; recorded at its first use, migration
# pan_key_id).
key_encryption = sa.Table(
    "host_key_encryption",
    metadata,
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kek_id", sa.String(16), nullable=False),
    sa.Column("changed_at", sa.DateTime, nullable=False),
    sa.Column("pan_key_id", sa.String(16), nullable=True),
    sa.CheckConstraint("slot = 1", name="ck_host_key_encryption_one_row"),
)

# --- the back office (posbatch.backoffice, migration host_backoffice) --------------------------

# Search indexes. A transaction search pages by (created_at, transaction_id) — alone, within one
# terminal, or by the last 4 digits of the card (an expression index: the same expression is
# used by the query, posbatch.backoffice._queries.last4_of).
LAST4_EXPRESSION = sa.func.substr(
    transactions.c.pan_masked, sa.func.length(transactions.c.pan_masked) - sa.literal_column("3")
)
sa.Index("ix_host_transactions_created", transactions.c.created_at, transactions.c.transaction_id)
sa.Index(
    "ix_host_transactions_terminal_created",
    transactions.c.terminal_id,
    transactions.c.created_at,
    transactions.c.transaction_id,
)
sa.Index("ix_host_transactions_rrn", transactions.c.rrn)
sa.Index(
    "ix_host_transactions_amount",
    transactions.c.amount_fen,
    transactions.c.created_at,
    transactions.c.transaction_id,
)
sa.Index(
    "ix_host_transactions_last4",
    LAST4_EXPRESSION,
    transactions.c.created_at,
    transactions.c.transaction_id,
)
sa.Index("ix_host_terminals_merchant", terminals.c.merchant_id, terminals.c.terminal_id)
sa.Index("ix_host_batches_state", batches.c.state, batches.c.batch_id)
sa.Index("ix_host_batches_closed", batches.c.closed_at)
sa.Index("ix_host_settlements_batch", settlements.c.batch_id)
sa.Index("ix_host_exceptions_created", exceptions.c.created_at)

# Every 77 the host answered, with the reason field 63 carried (R=…), for the back office's
# chart of batch-number errors by cause.
batch_errors = sa.Table(
    "host_batch_errors",
    metadata,
    sa.Column("batch_error_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("terminal_id", sa.String(8), nullable=False),
    sa.Column("merchant_id", sa.String(15), nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("stan", sa.Integer, nullable=True),
    sa.Column("batch_no", sa.Integer, nullable=True),  # the batch the request named
    sa.Column("host_batch_no", sa.Integer, nullable=True),
    sa.Column("reason", sa.String(16), nullable=False),  # BEHIND / AHEAD / NOT_SIGNED_ON / …
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_host_batch_errors_created", "created_at"),
    sa.Index("ix_host_batch_errors_terminal", "terminal_id", "created_at"),
)

# The work on an exception (差错): its status now (one row per exception that was touched;
# none = open, unassigned) and every step of its history. The exception row itself never
# changes.
exception_work = sa.Table(
    "host_exception_work",
    metadata,
    sa.Column(
        "exception_id",
        sa.Integer,
        sa.ForeignKey("host_exceptions.exception_id"),
        primary_key=True,
    ),
    sa.Column("status", sa.String(12), nullable=False),  # open / resolved
    sa.Column("assignee", sa.String(64), nullable=True),
    sa.Column("resolution", sa.String(24), nullable=True),
    sa.Column("amount_fen", sa.BigInteger, nullable=True),
    sa.Column("resolved_by", sa.String(64), nullable=True),
    sa.Column("resolved_at", sa.DateTime, nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Index("ix_host_exception_work_status", "status"),
)

exception_history = sa.Table(
    "host_exception_history",
    metadata,
    sa.Column("history_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "exception_id", sa.Integer, sa.ForeignKey("host_exceptions.exception_id"), nullable=False
    ),
    sa.Column("step", sa.String(12), nullable=False),  # assign / note / resolve
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("assignee", sa.String(64), nullable=True),
    sa.Column("resolution", sa.String(24), nullable=True),
    sa.Column("amount_fen", sa.BigInteger, nullable=True),
    sa.Column("remark", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_host_exception_history_exception", "exception_id", "history_id"),
)

users = sa.Table(
    "host_users",
    metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(12), nullable=False),  # ops / support / merchant
    sa.Column("merchant_id", sa.String(15), nullable=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("failed_logins", sa.Integer, nullable=False),
    sa.Column("locked_until", sa.DateTime, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("password_changed_at", sa.DateTime, nullable=False),
)

# A session is known by the SHA-256 of its cookie; the cookie itself is never stored.
sessions = sa.Table(
    "host_sessions",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("host_users.user_id"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_seen_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Index("ix_host_sessions_user", "user_id"),
)

# Failed logins counted per key (posbatch.backoffice._throttle): kind pair (name, address),
# address (name ''), account (address ''). Bounded: expired rows are deleted, pair and
# address rows are held to a maximum.
login_failures = sa.Table(
    "host_login_failures",
    metadata,
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("address", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_start", sa.DateTime, nullable=False),
    sa.Column("locked_until", sa.DateTime, nullable=True),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Index("ix_host_login_failures_expires", "expires_at"),
)

# Append-only: triggers (migration host_backoffice) refuse UPDATE and DELETE.
audit = sa.Table(
    "host_audit",
    metadata,
    sa.Column("audit_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("role", sa.String(12), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # done / refused / requested
    sa.Column("before", sa.Text, nullable=True),  # JSON
    sa.Column("after", sa.Text, nullable=True),  # JSON
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_host_audit_created", "created_at", "audit_id"),
    sa.Index("ix_host_audit_actor", "actor", "audit_id"),
    sa.Index("ix_host_audit_target", "target", "audit_id"),
)
