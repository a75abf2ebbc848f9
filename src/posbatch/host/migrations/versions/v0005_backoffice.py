"""The back office: search indexes, 77s by cause, exception work and history, users,
sessions, and the append-only audit log.

Revision ID: host_backoffice
Revises: sec_network
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "host_backoffice"
down_revision = "sec_network"
branch_labels = None
depends_on = None

# The same expression as posbatch.host._schema.LAST4_EXPRESSION (the query must match it).
_LAST4 = "substr(pan_masked, length(pan_masked) - 3)"


def upgrade() -> None:
    op.create_index(
        "ix_host_transactions_created", "host_transactions", ["created_at", "transaction_id"]
    )
    # It serves clearing's reads by time as well: clearing's own index on created_at alone
    # would only slow every insert.
    op.drop_index("ix_host_transactions_created_at", table_name="host_transactions")
    op.create_index(
        "ix_host_transactions_terminal_created",
        "host_transactions",
        ["terminal_id", "created_at", "transaction_id"],
    )
    op.create_index("ix_host_transactions_rrn", "host_transactions", ["rrn"])
    # "the sale of 128.00 this afternoon": an amount within a time range, any merchant.
    op.create_index(
        "ix_host_transactions_amount",
        "host_transactions",
        ["amount_fen", "created_at", "transaction_id"],
    )
    op.create_index(
        "ix_host_transactions_last4",
        "host_transactions",
        [sa.text(_LAST4), "created_at", "transaction_id"],
    )
    op.create_index("ix_host_terminals_merchant", "host_terminals", ["merchant_id", "terminal_id"])
    op.create_index("ix_host_batches_state", "host_batches", ["state", "batch_id"])
    op.create_index("ix_host_batches_closed", "host_batches", ["closed_at"])
    op.create_index("ix_host_settlements_batch", "host_settlements", ["batch_id"])
    op.create_index("ix_host_exceptions_created", "host_exceptions", ["created_at"])
    op.create_table(
        "host_batch_errors",
        sa.Column("batch_error_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("stan", sa.Integer(), nullable=True),
        sa.Column("batch_no", sa.Integer(), nullable=True),
        sa.Column("host_batch_no", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("batch_error_id"),
    )
    op.create_index("ix_host_batch_errors_created", "host_batch_errors", ["created_at"])
    op.create_index(
        "ix_host_batch_errors_terminal", "host_batch_errors", ["terminal_id", "created_at"]
    )
    op.create_table(
        "host_exception_work",
        sa.Column("exception_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("resolution", sa.String(length=24), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["exception_id"], ["host_exceptions.exception_id"]),
        sa.PrimaryKeyConstraint("exception_id"),
    )
    op.create_index("ix_host_exception_work_status", "host_exception_work", ["status"])
    op.create_table(
        "host_exception_history",
        sa.Column("history_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("exception_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=12), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("resolution", sa.String(length=24), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("remark", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["exception_id"], ["host_exceptions.exception_id"]),
        sa.PrimaryKeyConstraint("history_id"),
    )
    op.create_index(
        "ix_host_exception_history_exception",
        "host_exception_history",
        ["exception_id", "history_id"],
    )
    op.create_table(
        "host_users",
        sa.Column("user_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=12), nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "host_sessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["host_users.user_id"]),
        sa.PrimaryKeyConstraint("token_sha256"),
    )
    op.create_index("ix_host_sessions_user", "host_sessions", ["user_id"])
    op.create_table(
        "host_audit",
        sa.Column("audit_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=12), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("audit_id"),
    )
    op.create_index("ix_host_audit_created", "host_audit", ["created_at", "audit_id"])
    op.create_index("ix_host_audit_actor", "host_audit", ["actor", "audit_id"])
    op.create_index("ix_host_audit_target", "host_audit", ["target", "audit_id"])
    # The audit log is append-only in the database itself, whoever writes to it.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION host_audit_append_only() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'host_audit is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER host_audit_append_only BEFORE UPDATE OR DELETE ON host_audit "
            "FOR EACH ROW EXECUTE FUNCTION host_audit_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER host_audit_no_{event.lower()} BEFORE {event} ON host_audit "
                "BEGIN SELECT RAISE(ABORT, 'host_audit is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS host_audit_append_only ON host_audit")
        op.execute("DROP FUNCTION IF EXISTS host_audit_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS host_audit_no_update")
        op.execute("DROP TRIGGER IF EXISTS host_audit_no_delete")
    for table in (
        "host_audit",
        "host_sessions",
        "host_users",
        "host_exception_history",
        "host_exception_work",
        "host_batch_errors",
    ):
        op.drop_table(table)
    for name, table in (
        ("ix_host_exceptions_created", "host_exceptions"),
        ("ix_host_settlements_batch", "host_settlements"),
        ("ix_host_batches_closed", "host_batches"),
        ("ix_host_batches_state", "host_batches"),
        ("ix_host_terminals_merchant", "host_terminals"),
        ("ix_host_transactions_last4", "host_transactions"),
        ("ix_host_transactions_amount", "host_transactions"),
        ("ix_host_transactions_rrn", "host_transactions"),
        ("ix_host_transactions_terminal_created", "host_transactions"),
        ("ix_host_transactions_created", "host_transactions"),
    ):
        op.drop_index(name, table_name=table)
    op.create_index("ix_host_transactions_created_at", "host_transactions", ["created_at"])
