"""How the back office reaches the host store: reads on a plain connection, writes in one
unit of work of the store (SQLite: BEGIN IMMEDIATE, like the host), SQLAlchemy errors
translated to StorageError at this boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posbatch.errors import StorageError
from posbatch.host.store import HostStore, naive_utc

__all__ = [
    "CONNECTIONS_PER_REQUEST",
    "aware",
    "connections_max",
    "naive",
    "read",
    "reading",
    "write",
]

# The most connections one request of the console holds at once: its :func:`reading`
# connection and one more — a :func:`write` unit of work, or a host store call that opens
# its own (``HostStore.terminal``, ``ClearingStore.statement``…) — never a third.
CONNECTIONS_PER_REQUEST: Final = 2

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


def connections_max(store: HostStore) -> int | None:
    """How many connections the store's pool hands out at once (None: no bound — a pool
    that shares one connection or opens one per checkout).

    More requests than ``connections_max // CONNECTIONS_PER_REQUEST`` at once can each hold
    their first connection and wait for their second until the pool's timeout: the console
    lets no more than that many in (see ``posbatch.web``)."""
    pool = store.engine.pool
    if not isinstance(pool, sa.pool.QueuePool):
        return None
    overflow = pool._max_overflow  # QueuePool keeps it only there
    return None if overflow < 0 else pool.size() + overflow


def naive(moment: datetime) -> datetime:
    return naive_utc(moment)


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
