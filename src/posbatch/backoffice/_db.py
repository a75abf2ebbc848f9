"""How the back office reaches the host store: reads on a plain connection, writes in one
unit of work of the store (SQLite: BEGIN IMMEDIATE, like the host), SQLAlchemy errors
translated to StorageError at this boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posbatch.errors import StorageError
from posbatch.host.store import HostStore, naive_utc

__all__ = ["aware", "naive", "read", "reading", "write"]

# The connection of a :func:`reading` block in progress (one per request of the console).
_READING: ContextVar[tuple[HostStore, Connection] | None] = ContextVar("reading", default=None)


@contextmanager
def reading(store: HostStore) -> Iterator[None]:
    """Every :func:`read` of ``store`` inside the block shares one connection: a page is one
    checkout (PostgreSQL: one pre-ping, one transaction, one rollback) instead of one per
    query group."""
    if _READING.get() is not None:
        yield
        return
    try:
        with store.engine.connect() as connection:
            token = _READING.set((store, connection))
            try:
                yield
            finally:
                _READING.reset(token)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"host store: {str(exc).splitlines()[0]}") from exc


@contextmanager
def read(store: HostStore) -> Iterator[Connection]:
    """A connection for reads (SQLite WAL: never waits for the host's writes)."""
    shared = _READING.get()
    if shared is not None and shared[0] is store:
        yield shared[1]
        return
    try:
        with store.engine.connect() as connection:
            yield connection
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"host store: {str(exc).splitlines()[0]}") from exc


@contextmanager
def write(store: HostStore) -> Iterator[Connection]:
    """One unit of work, committed when the block ends (rolled back on any exception).

    A :func:`reading` block's transaction ends first, so the reads after the write see it
    (SQLite keeps a read transaction's snapshot until it ends).
    """
    shared = _READING.get()
    if shared is not None and shared[0] is store:
        _end(shared[1])
    with store.transaction() as tx:
        yield tx.connection


def _end(connection: Connection) -> None:
    try:
        connection.rollback()  # reads only: nothing to lose
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"host store: {str(exc).splitlines()[0]}") from exc


def naive(moment: datetime) -> datetime:
    return naive_utc(moment)


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
