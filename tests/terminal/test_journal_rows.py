"""The journal's typed rows: built from a database record or a snapshot, and back to values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posbatch.terminal._journal_schema import batches_table, state_table, transactions_table
from posbatch.terminal._rows import (
    KIND_OF,
    ROW_TABLES,
    BatchRow,
    StateRow,
    TxnRow,
    field_names,
    row_from_mapping,
    row_from_record,
    row_values,
)

STATE = StateRow("898411341310001", "00000001", "h:1", 12, 3, False, 0, "2026-11-25T09:30:00")
BATCH = BatchRow(3, 41, "open", "2026-11-25T09:30:00", balanced=True, uploaded_count=2)
TXN = TxnRow(
    7, 3, 41, "sale", 12, 1250, "sealed", "6222****0001", None, "00", "approved",
    "2026-11-25T09:30:00", "2026-11-25T09:30:01", response_code="00", uploaded=True,
)  # fmt: skip


@pytest.mark.parametrize("row", [STATE, BATCH, TXN], ids=["state", "batch", "txn"])
def test_a_record_in_field_order_builds_the_row(row: StateRow | BatchRow | TxnRow) -> None:
    """A database record holding the fields in order is the row again."""
    record = tuple(row_values(row).values())
    assert row == row_from_record(type(row), record)


@pytest.mark.parametrize(
    ("cls", "position", "stored", "expected"),
    [
        (StateRow, "training", 1, True),
        (StateRow, "resync_pending", 0, False),
        (BatchRow, "balanced", None, None),
        (BatchRow, "balanced", 1, True),
        (TxnRow, "uploaded", 0, False),
        (TxnRow, "training", 1, True),
    ],
)
def test_sqlite_booleans_come_back_as_bool(
    cls: type[StateRow] | type[BatchRow] | type[TxnRow],
    position: str,
    stored: int | None,
    expected: bool | None,
) -> None:
    """SQLite stores a boolean as 0/1: the row holds ``bool`` (NULL stays None)."""
    base = {StateRow: STATE, BatchRow: BATCH, TxnRow: TXN}[cls]
    record = [stored if name == position else value for name, value in row_values(base).items()]
    built = row_from_record(cls, record)
    assert (expected, type(expected)) == (
        getattr(built, position),
        type(getattr(built, position)),
    )


def test_a_snapshot_without_a_later_column_takes_its_default() -> None:
    """An entry written before a migration added a column reads as that column's default."""
    snapshot = row_values(STATE)
    del snapshot["batch_limit"], snapshot["resync_pending"]
    assert row_from_mapping(StateRow, snapshot) == STATE


@pytest.mark.parametrize(
    ("cls", "table"),
    [(StateRow, state_table), (BatchRow, batches_table), (TxnRow, transactions_table)],
)
def test_every_field_is_a_column_of_its_table(
    cls: type[StateRow] | type[BatchRow] | type[TxnRow], table: object
) -> None:
    """The reads select each field by name: every field has its column."""
    kind = KIND_OF[cls]
    assert ROW_TABLES[kind][0] is table
    assert set(field_names(cls)) <= {column.name for column in ROW_TABLES[kind][0].columns}


@given(
    stan=st.integers(min_value=0, max_value=999_999),
    amount_fen=st.integers(min_value=1, max_value=10**12),
    uploaded=st.booleans(),
    response_code=st.none() | st.text(alphabet="0123456789AZ", min_size=2, max_size=2),
)
def test_txn_row_round_trips_through_a_record_and_a_snapshot(
    stan: int, amount_fen: int, uploaded: bool, response_code: str | None
) -> None:
    """values -> record -> row and values -> snapshot -> row are the row, whatever it holds."""
    row = TxnRow(
        7, 3, 41, "sale", stan, amount_fen, "sealed", "6222****0001", None, "00", "approved",
        "2026-11-25T09:30:00", "2026-11-25T09:30:01", response_code=response_code,
        uploaded=uploaded,
    )  # fmt: skip
    values = row_values(row)
    as_sqlite = [int(value) if isinstance(value, bool) else value for value in values.values()]
    assert row == row_from_record(TxnRow, as_sqlite) == row_from_mapping(TxnRow, values)
