"""The hash chain of journal entries: how an entry is hashed, and how a chain is verified.

Every entry holds ``hash = sha256(prev_hash | seq | at | kind | key | payload)``
(the payload is canonical JSON), so a changed, removed or inserted entry
breaks the chain at the first bad ``seq``. Two verifications:

- :func:`verify_engine` (``Journal.verify``, doctor, restore) walks the whole
  chain from the genesis hash, then checks that every table row is the last
  snapshot its entries hold (a row edited behind the journal's back is named
  by its table and key);
- :func:`verify_since` (a terminal reopened after a crash) starts from a
  :class:`Checkpoint` — an entry this terminal verified or wrote itself — and
  walks only what follows: the checkpoint entry must still hold its hash (and
  its content still hash to it), the entries after it must chain from it, and
  every row they snapshot must still be that snapshot. A file whose checkpoint
  entry is gone or changed is not the file that was verified: it is verified
  whole.

Both read the file as it was at one moment (:func:`_one_moment`): another process may
be writing it — the till trading while `backup` or doctor verifies — and a row read after
the entries must be the row those entries describe.

Either failure is a :class:`~posbatch.errors.JournalIntegrityError` naming the
first bad entry. The chain is not a signature: whoever can rewrite the whole
file can rebuild it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from posbatch.errors import JournalIntegrityError, StorageError
from posbatch.terminal._journal_schema import entries_table
from posbatch.terminal._rows import ROW_TABLES, row_from_mapping

__all__ = [
    "GENESIS",
    "GENESIS_HASH",
    "Checkpoint",
    "canonical",
    "entry_hash",
    "verify_engine",
    "verify_since",
]

GENESIS_HASH: Final = "0" * 64


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Entry ``seq`` of a chain and its ``hash``: everything up to it was verified (or
    written on a verified chain) by whoever holds it. ``seq`` 0 is the empty chain."""

    seq: int
    hash: str


GENESIS: Final = Checkpoint(0, GENESIS_HASH)


# ``json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, the
# stored form, without building an encoder per entry (dumps makes one for every call when
# given options; the encoder keeps no state between calls): a fifth of its cost, the same
# text (tests/terminal/test_journal_chain.py holds the two equal).
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(payload: Mapping[str, object]) -> str:
    """The payload of an entry as it is stored and hashed."""
    return _CANONICAL.encode(payload)


def entry_hash(prev_hash: str, seq: int, *, at: str, kind: str, key: str, payload: str) -> str:
    text = f"{prev_hash}|{seq}|{at}|{kind}|{key}|{payload}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _walk(
    entries: Iterable[sa.RowMapping], start: Checkpoint
) -> tuple[int, dict[tuple[str, str], tuple[int, dict[str, Any]]]]:
    """Check that ``entries`` (ordered by seq, all after ``start``) chain from ``start``;
    (the last seq, the last snapshot of each (kind, key) they hold)."""
    last: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
    prev_hash = start.hash
    expected_seq = start.seq + 1
    for row in entries:
        seq = int(row["seq"])
        if seq != expected_seq:
            raise JournalIntegrityError(
                f"journal entry {expected_seq} is missing (next is {seq})",
                first_bad_row=expected_seq,
            )
        if row["prev_hash"] != prev_hash:
            raise JournalIntegrityError(
                f"journal entry {seq} does not follow entry {seq - 1}",
                first_bad_row=seq,
            )
        digest = entry_hash(
            prev_hash,
            seq,
            at=row["at"],
            kind=row["kind"],
            key=row["key"],
            payload=row["payload"],
        )
        if digest != row["hash"]:
            raise JournalIntegrityError(
                f"journal entry {seq} was changed after it was written",
                first_bad_row=seq,
            )
        if row["kind"] in ROW_TABLES:
            last[(row["kind"], row["key"])] = (seq, json.loads(row["payload"]))
        prev_hash = digest
        expected_seq += 1
    return expected_seq - 1, last


@contextmanager
def _one_moment(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see the journal at one moment (the first read's).

    Otherwise each read sees its own: SQLite's driver begins no transaction for a read,
    PostgreSQL's read committed takes a snapshot per statement, and a sale committed by
    the till's process between the entries and the rows made a row "differ from journal
    entry" — a false alarm of tampering (`posbatch terminal backup` of a trading till
    failed with it)."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            raw = connection.connection.driver_connection
            if isinstance(raw, sqlite3.Connection) and not raw.in_transaction:
                connection.exec_driver_sql("BEGIN")  # a read transaction: one WAL snapshot
        else:
            connection.execution_options(isolation_level="REPEATABLE READ")
        yield connection


def verify_engine(engine: Engine) -> int:
    """:meth:`Journal.verify` for any engine holding a journal (used by restore and doctor):
    the whole chain and every table row; the entries checked."""
    try:
        with _one_moment(engine) as connection:
            entries = connection.execute(
                sa.select(entries_table).order_by(entries_table.c.seq)
            ).mappings()
            checked, last = _walk(entries, GENESIS)
            for kind, (table, cls, key_name) in ROW_TABLES.items():
                rows = connection.execute(sa.select(table)).mappings()
                for table_row in rows:
                    key = str(table_row[key_name])
                    found = last.pop((kind, key), None)
                    if found is None:
                        raise JournalIntegrityError(
                            f"{table.name} row {key} has no journal entry",
                            first_bad_row=None,
                        )
                    seq, snapshot = found
                    if row_from_mapping(cls, table_row) != row_from_mapping(cls, snapshot):
                        raise JournalIntegrityError(
                            f"{table.name} row {key} differs from journal entry {seq}",
                            first_bad_row=seq,
                        )
            if last:
                (kind, key), (seq, _snapshot) = min(last.items(), key=lambda item: item[1][0])
                raise JournalIntegrityError(
                    f"{ROW_TABLES[kind][0].name} row {key} of journal entry {seq} is missing",
                    first_bad_row=seq,
                )
            return checked
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot read the journal: {exc}") from exc


def verify_since(engine: Engine, checkpoint: Checkpoint) -> int:
    """Verify what follows ``checkpoint`` (see the module's docstring); the entries checked.

    Falls back to :func:`verify_engine` when the checkpoint entry is not there with
    its hash any more (another process replaced or rewrote the file).
    """
    if checkpoint.seq == 0:
        return verify_engine(engine)
    try:
        with _one_moment(engine) as connection:
            held = (
                connection.execute(
                    sa.select(entries_table).where(entries_table.c.seq == checkpoint.seq)
                )
                .mappings()
                .first()
            )
            if held is None or not _holds(held, checkpoint):
                return verify_engine(engine)
            entries = connection.execute(
                sa.select(entries_table)
                .where(entries_table.c.seq > checkpoint.seq)
                .order_by(entries_table.c.seq)
            ).mappings()
            checked, last = _walk(entries, checkpoint)
            _check_rows(connection, last)
            return checked - checkpoint.seq
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot read the journal: {exc}") from exc


def _holds(entry: sa.RowMapping, checkpoint: Checkpoint) -> bool:
    """Whether ``entry`` is still the checkpoint's: that hash, and content hashing to it."""
    digest = entry_hash(
        entry["prev_hash"],
        checkpoint.seq,
        at=entry["at"],
        kind=entry["kind"],
        key=entry["key"],
        payload=entry["payload"],
    )
    return bool(entry["hash"] == checkpoint.hash == digest)


def _check_rows(
    connection: Connection, last: Mapping[tuple[str, str], tuple[int, dict[str, Any]]]
) -> None:
    """Every row snapshot in ``last`` is its table row as it is now."""
    for (kind, key), (seq, snapshot) in sorted(last.items(), key=lambda item: item[1][0]):
        table, cls, key_name = ROW_TABLES[kind]
        found = (
            connection.execute(sa.select(table).where(table.c[key_name] == int(key)))
            .mappings()
            .first()
        )
        if found is None:
            raise JournalIntegrityError(
                f"{table.name} row {key} of journal entry {seq} is missing", first_bad_row=seq
            )
        if row_from_mapping(cls, found) != row_from_mapping(cls, snapshot):
            raise JournalIntegrityError(
                f"{table.name} row {key} differs from journal entry {seq}", first_bad_row=seq
            )
