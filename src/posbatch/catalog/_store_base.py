"""What every part of the catalog store shares: the engine, transactions, versions, times.

:class:`posbatch.catalog.CatalogStore` is assembled from parts (catalog and
sync in ``_store``, stock and recalls in ``_stock``, orders and returns in
``_orders_store``, tills in ``_tills``), each a mixin over :class:`StoreBase`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from posbatch.catalog import _tables as t
from posbatch.catalog._model import Lot, Product
from posbatch.errors import CatalogError, StorageError

__all__ = [
    "ACTOR_LENGTH_MAX",
    "REASON_LENGTH_MAX",
    "StoreBase",
    "begin_immediate",
    "checked_text",
    "lot_of",
    "product_of",
    "stored",
    "utc",
]

REASON_LENGTH_MAX = 200
ACTOR_LENGTH_MAX = 64
_WRITE_OPTION = "posbatch_catalog_write"


def begin_immediate(engine: Engine) -> None:
    """SQLite: a write unit of work takes the write lock when it begins.

    Otherwise the driver begins at the first write, after the reads it depends
    on (the stock counted, the order's status), and two tills' writes could
    interleave between them. PostgreSQL locks the rows and the version table.
    """
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def utc(value: dt.datetime) -> dt.datetime:
    """A time read back: stored as UTC (SQLite returns it without its zone)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def stored(value: dt.datetime) -> dt.datetime:
    """A time to store: in UTC, so every backend keeps the same instant."""
    if value.tzinfo is None:
        raise CatalogError(f"time {value.isoformat()} has no time zone")
    return value.astimezone(dt.UTC)


def product_of(row: Any) -> Product:
    return Product(
        row.gtin,
        row.name,
        int(row.price_fen),
        bool(row.lot_tracked),
        row.version,
        int(row.quantity_on_hand),
        row.trace_prefix,
        int(row.quarantined),
    )


def lot_of(row: Any) -> Lot:
    return Lot(
        row.gtin,
        row.lot_no,
        row.expiry,
        int(row.quantity_on_hand),
        bool(row.recalled),
        row.version,
        int(row.quarantined),
    )


def checked_text(what: str, value: str, maximum: int) -> str:
    """A reason or a name a person typed: not empty, at most ``maximum`` characters."""
    text = value.strip()
    if not text:
        raise CatalogError(f"{what} must not be empty")
    if len(text) > maximum:
        raise CatalogError(f"{what} is {len(text)} characters long; at most {maximum}")
    if not text.isprintable():
        raise CatalogError(f"{what} has control characters")
    return text


class StoreBase:
    """The engine, one transaction per call, catalog versions."""

    engine: Engine

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A unit of work that reads (or writes without depending on what it read)."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"catalog store: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A unit of work whose writes depend on its reads: serial with every other writer."""
        try:
            with (
                self.engine.connect().execution_options(**{_WRITE_OPTION: True}) as connection,
                connection.begin(),
            ):
                yield connection
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"catalog store: {exc}") from exc

    def _new_version(self, connection: Connection, *, at: dt.datetime, reason: str) -> int:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("LOCK TABLE catalog_versions IN EXCLUSIVE MODE"))
        result = connection.execute(
            sa.insert(t.versions).values(created_at=stored(at), reason=reason[:REASON_LENGTH_MAX])
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def store_id(self) -> str:
        """This store's identity (a UUID made at its creation): changes documents carry it."""
        with self._begin() as connection:
            value = connection.execute(sa.select(t.store_identity.c.store_id)).scalar()
        if value is None:
            raise StorageError("catalog store has no identity row: migration c0002 incomplete")
        return str(value)

    @staticmethod
    def _head(connection: Connection) -> int:
        value = connection.execute(sa.select(sa.func.max(t.versions.c.version))).scalar()
        return int(value or 0)
