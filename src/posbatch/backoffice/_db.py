"""How the back office reaches the host store: reads on a plain connection, writes in one
unit of work of the store (SQLite: BEGIN IMMEDIATE, like the host), SQLAlchemy errors
translated to StorageError at this boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posbatch.errors import StorageError
from posbatch.host.store import HostStore, naive_utc

__all__ = ["aware", "naive", "read", "write"]


@contextmanager
def read(store: HostStore) -> Iterator[Connection]:
    """A connection for reads (SQLite WAL: never waits for the host's writes)."""
    try:
        with store.engine.connect() as connection:
            yield connection
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"host store: {str(exc).splitlines()[0]}") from exc


@contextmanager
def write(store: HostStore) -> Iterator[Connection]:
    """One unit of work, committed when the block ends (rolled back on any exception)."""
    with store.transaction() as tx:
        yield tx.connection


def naive(moment: datetime) -> datetime:
    return naive_utc(moment)


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
