"""The catalog store: back office (products, lots, orders) and a terminal's copy.

Both are the same schema (``catalog/migrations``, version table
``catalog_alembic_version``), so the catalog can share a database with the
host (``POSBATCH_DATABASE_URL``) or live in its own SQLite file.

Versions: every write that changes products or lots (an import, a completed
sale's stock decrement) inserts one row in ``catalog_versions`` and stamps the
rows it changed with that version; "changes since N" is every product and lot
stamped above N. On PostgreSQL such writers take a table lock on
``catalog_versions`` first, so versions become visible in order and a sync
never skips a change committed late under a lower number.

Orders — theory of operation. An order is a tiny state machine (table
:data:`ORDER_TRANSITIONS`, applied by :func:`next_order_status`)::

    pending --paid--> paid        payment approved: STAN, batch_no, stock decremented
    pending --unpaid--> unpaid    declined, or no answer (the terminal reverses)

It is written *pending* before the card is charged; a crash after the charge
leaves it pending (listed by :meth:`CatalogStore.pending_orders`), never lost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from posbatch.catalog import _tables as t
from posbatch.catalog._checkout import Cart, OpenOrder, OrderDraft, Payment
from posbatch.catalog._model import CatalogSnapshot, ChangeSet, Lot, Product
from posbatch.errors import CatalogError, IllegalTransition, StorageError
from posbatch.storage import create_engine, upgrade

__all__ = [
    "MIGRATIONS",
    "ORDER_TRANSITIONS",
    "VERSION_TABLE",
    "CatalogStore",
    "ImportSummary",
    "OrderSummary",
    "ReplicaState",
    "TraceRow",
    "next_order_status",
]

MIGRATIONS = "posbatch.catalog:migrations"
VERSION_TABLE = "catalog_alembic_version"
TRACE_ROWS_MAX = 10_000
PENDING_ROWS_MAX = 1_000
_WRITE_CHUNK_ROWS = 1_000

ORDER_TRANSITIONS: dict[tuple[str, str], str] = {
    ("pending", "paid"): "paid",
    ("pending", "unpaid"): "unpaid",
}


def next_order_status(status: str, event: str) -> str:
    """The status after ``event``; :class:`IllegalTransition` if the table has no such move."""
    try:
        return ORDER_TRANSITIONS[status, event]
    except KeyError:
        raise IllegalTransition("order", status, event) from None


def _utc(value: dt.datetime) -> dt.datetime:
    """A time read back: stored as UTC (SQLite returns it without its zone)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _stored(value: dt.datetime) -> dt.datetime:
    """A time to store: in UTC, so every backend keeps the same instant."""
    if value.tzinfo is None:
        raise CatalogError(f"time {value.isoformat()} has no time zone")
    return value.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class ImportSummary:
    version: int
    products_changed: int
    lots_changed: int


@dataclass(frozen=True, slots=True)
class ReplicaState:
    version: int
    synced_at: dt.datetime
    source: str


@dataclass(frozen=True, slots=True)
class OrderSummary:
    order_id: int
    receipt_no: str
    terminal_id: str
    status: str
    total_fen: int
    opened_at: dt.datetime


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One order line that sold (or is selling) a lot."""

    order_id: int
    receipt_no: str
    terminal_id: str
    status: str
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    batch_no: str | None
    stan: str | None
    rrn: str | None
    gtin: str
    product_name: str
    lot_no: str
    quantity: int

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "receipt_no": self.receipt_no,
            "terminal_id": self.terminal_id,
            "status": self.status,
            "opened_at": self.opened_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "batch_no": self.batch_no,
            "stan": self.stan,
            "rrn": self.rrn,
            "gtin": self.gtin,
            "product_name": self.product_name,
            "lot_no": self.lot_no,
            "quantity": self.quantity,
        }


def _product(row: Any) -> Product:
    return Product(row.gtin, row.name, int(row.price_fen), bool(row.lot_tracked), row.version)


def _lot(row: Any) -> Lot:
    return Lot(
        row.gtin,
        row.lot_no,
        row.expiry,
        int(row.quantity_on_hand),
        bool(row.recalled),
        row.version,
    )


class CatalogStore:
    """Products, lots, versions and orders in one database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> CatalogStore:
        """Open the store at ``url`` and bring its schema to the newest migration."""
        engine = create_engine(url)
        upgrade(engine, MIGRATIONS, version_table=VERSION_TABLE)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"catalog store: {exc}") from exc

    def _new_version(self, connection: Connection, *, at: dt.datetime, reason: str) -> int:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("LOCK TABLE catalog_versions IN EXCLUSIVE MODE"))
        result = connection.execute(
            sa.insert(t.versions).values(created_at=_stored(at), reason=reason[:200])
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    # --- catalog -----------------------------------------------------------

    def version(self) -> int:
        """The newest version (a terminal copy: the version it was synced to)."""
        state = self.replica_state()
        if state is not None:
            return state.version
        with self._begin() as connection:
            value = connection.execute(sa.select(sa.func.max(t.versions.c.version))).scalar()
        return int(value or 0)

    def import_catalog(
        self, products: Iterable[Product], lots: Iterable[Lot], *, at: dt.datetime, reason: str
    ) -> ImportSummary:
        """Insert or update products and lots in one transaction; unchanged rows keep versions."""
        new_products = list(products)
        new_lots = list(lots)
        with self._begin() as connection:
            current_products = {
                row.gtin: _product(row) for row in connection.execute(sa.select(t.products))
            }
            current_lots = {
                (row.gtin, row.lot_no): _lot(row) for row in connection.execute(sa.select(t.lots))
            }
            known_gtins = set(current_products) | {product.gtin for product in new_products}
            for lot in new_lots:
                if lot.gtin not in known_gtins:
                    raise CatalogError(f"lot {lot.lot_no!r} refers to unknown product {lot.gtin}")
            changed_products = [
                product
                for product in new_products
                if _product_key(current_products.get(product.gtin)) != _product_key(product)
            ]
            changed_lots = [
                lot
                for lot in new_lots
                if _lot_key(current_lots.get((lot.gtin, lot.lot_no))) != _lot_key(lot)
            ]
            if not changed_products and not changed_lots:
                version = self._head(connection)
                return ImportSummary(version, 0, 0)
            version = self._new_version(connection, at=at, reason=reason)
            self._upsert_products(
                connection,
                [_with_version(product, version) for product in changed_products],
                existing=set(current_products),
            )
            self._upsert_lots(
                connection,
                [_lot_with_version(lot, version) for lot in changed_lots],
                existing=set(current_lots),
            )
        return ImportSummary(version, len(changed_products), len(changed_lots))

    @staticmethod
    def _head(connection: Connection) -> int:
        value = connection.execute(sa.select(sa.func.max(t.versions.c.version))).scalar()
        return int(value or 0)

    @staticmethod
    def _upsert_products(
        connection: Connection, rows: list[Product], *, existing: set[str]
    ) -> None:
        inserts = [_product_row(p) for p in rows if p.gtin not in existing]
        updates = [
            {key: value for key, value in _product_row(p).items() if key != "gtin"}
            | {"b_gtin": p.gtin}
            for p in rows
            if p.gtin in existing
        ]
        for start in range(0, len(inserts), _WRITE_CHUNK_ROWS):
            connection.execute(sa.insert(t.products), inserts[start : start + _WRITE_CHUNK_ROWS])
        statement = sa.update(t.products).where(t.products.c.gtin == sa.bindparam("b_gtin"))
        for start in range(0, len(updates), _WRITE_CHUNK_ROWS):
            connection.execute(statement, updates[start : start + _WRITE_CHUNK_ROWS])

    @staticmethod
    def _upsert_lots(
        connection: Connection, rows: list[Lot], *, existing: set[tuple[str, str]]
    ) -> None:
        inserts = [_lot_row(lot) for lot in rows if (lot.gtin, lot.lot_no) not in existing]
        updates = [
            {key: value for key, value in _lot_row(lot).items() if key not in ("gtin", "lot_no")}
            | {"b_gtin": lot.gtin, "b_lot_no": lot.lot_no}
            for lot in rows
            if (lot.gtin, lot.lot_no) in existing
        ]
        for start in range(0, len(inserts), _WRITE_CHUNK_ROWS):
            connection.execute(sa.insert(t.lots), inserts[start : start + _WRITE_CHUNK_ROWS])
        statement = sa.update(t.lots).where(
            t.lots.c.gtin == sa.bindparam("b_gtin"), t.lots.c.lot_no == sa.bindparam("b_lot_no")
        )
        for start in range(0, len(updates), _WRITE_CHUNK_ROWS):
            connection.execute(statement, updates[start : start + _WRITE_CHUNK_ROWS])

    def products_and_lots(self) -> tuple[list[Product], list[Lot]]:
        with self._begin() as connection:
            products = [
                _product(row)
                for row in connection.execute(sa.select(t.products).order_by(t.products.c.gtin))
            ]
            lots = [
                _lot(row)
                for row in connection.execute(
                    sa.select(t.lots).order_by(t.lots.c.gtin, t.lots.c.lot_no)
                )
            ]
        return products, lots

    def snapshot(self) -> CatalogSnapshot:
        """The whole catalog in memory, with its version (and, for a copy, when it was synced)."""
        state = self.replica_state()
        products, lots = self.products_and_lots()
        if state is not None:
            return CatalogSnapshot.build(
                products, lots, version=state.version, synced_at=state.synced_at
            )
        with self._begin() as connection:
            version = self._head(connection)
        return CatalogSnapshot.build(products, lots, version=version)

    def changes_since(self, version: int) -> ChangeSet:
        """Every product and lot changed after ``version`` (0: everything)."""
        if version < 0:
            raise CatalogError(f"version {version} is negative")
        with self._begin() as connection:
            head = self._head(connection)
            products = tuple(
                _product(row)
                for row in connection.execute(
                    sa.select(t.products)
                    .where(t.products.c.version > version)
                    .order_by(t.products.c.gtin)
                )
            )
            lots = tuple(
                _lot(row)
                for row in connection.execute(
                    sa.select(t.lots)
                    .where(t.lots.c.version > version)
                    .order_by(t.lots.c.gtin, t.lots.c.lot_no)
                )
            )
        return ChangeSet(version, head, products, lots)

    # --- terminal copy -------------------------------------------------------

    def replica_state(self) -> ReplicaState | None:
        """Version and sync time of a terminal copy; None for the back office."""
        with self._begin() as connection:
            row = connection.execute(sa.select(t.replica_state)).first()
        if row is None:
            return None
        return ReplicaState(row.version, _utc(row.synced_at), row.source)

    def apply_changes(self, changes: ChangeSet, *, synced_at: dt.datetime, source: str) -> int:
        """Bring this terminal copy up to ``changes.head_version``; returns rows applied.

        Refused when the change set starts after this copy's version (a gap)
        or ends before it (the source is older than this copy).
        """
        state = self.replica_state()
        local = state.version if state is not None else 0
        if changes.since_version > local:
            raise CatalogError(
                f"changes from {source} start after version {changes.since_version}, "
                f"but this copy is at version {local}: sync from version {local}"
            )
        if changes.head_version < local:
            raise CatalogError(
                f"{source} is at version {changes.head_version}, older than this copy "
                f"({local}): wrong source, or the back office was restored from a backup"
            )
        products = [p for p in changes.products if p.version > local]
        lots = [lot for lot in changes.lots if lot.version > local]
        with self._begin() as connection:
            existing_products = {
                row.gtin for row in connection.execute(sa.select(t.products.c.gtin))
            }
            existing_lots = {
                (row.gtin, row.lot_no)
                for row in connection.execute(sa.select(t.lots.c.gtin, t.lots.c.lot_no))
            }
            known = existing_products | {p.gtin for p in products}
            for lot in lots:
                if lot.gtin not in known:
                    raise CatalogError(f"changes from {source}: lot of unknown product {lot.gtin}")
            self._upsert_products(connection, products, existing=existing_products)
            self._upsert_lots(connection, lots, existing=existing_lots)
            values = {
                "version": changes.head_version,
                "synced_at": _stored(synced_at),
                "source": source[:500],
            }
            if state is None:
                connection.execute(sa.insert(t.replica_state).values(state_id=1, **values))
            else:
                connection.execute(sa.update(t.replica_state).values(**values))
        return len(products) + len(lots)

    # --- orders ----------------------------------------------------------------

    def open_order(self, cart: Cart, *, terminal_id: str, opened_at: dt.datetime) -> OpenOrder:
        """Write the order and its lines as pending; the receipt number is ``TERMINAL-ORDERID``."""
        return self.open_draft(OrderDraft.of(cart), terminal_id=terminal_id, opened_at=opened_at)

    def open_draft(
        self, draft: OrderDraft, *, terminal_id: str, opened_at: dt.datetime
    ) -> OpenOrder:
        """:meth:`open_order` for an order already reduced to its stored lines."""
        with self._begin() as connection:
            result = connection.execute(
                sa.insert(t.orders).values(
                    terminal_id=terminal_id,
                    status="pending",
                    total_fen=draft.total_fen,
                    catalog_version=draft.catalog_version,
                    opened_at=_stored(opened_at),
                )
            )
            assert result.inserted_primary_key is not None
            order_id = int(result.inserted_primary_key[0])
            receipt_no = f"{terminal_id}-{order_id:08d}"
            connection.execute(
                sa.update(t.orders)
                .where(t.orders.c.order_id == order_id)
                .values(receipt_no=receipt_no)
            )
            rows = [
                {
                    "order_id": order_id,
                    "line_no": line.line_no,
                    "gtin": line.gtin,
                    "product_name": line.product_name,
                    "price_fen": line.price_fen,
                    "lot_no": line.lot_no,
                    "quantity": line.quantity,
                    "lot_source": line.lot_source,
                    "scan_raw": line.scan_raw,
                }
                for line in draft.lines
            ]
            if rows:
                connection.execute(sa.insert(t.order_lines), rows)
        return OpenOrder(order_id, receipt_no)

    def _transition(self, connection: Connection, order_id: int, event: str) -> Any:
        row = connection.execute(
            sa.select(t.orders).where(t.orders.c.order_id == order_id).with_for_update()
        ).first()
        if row is None:
            raise CatalogError(f"no order {order_id}")
        return row, next_order_status(row.status, event)

    def complete_order(self, order_id: int, payment: Payment, *, closed_at: dt.datetime) -> None:
        """Record an approved payment and decrement the stock of the sold lots, atomically."""
        if not payment.approved:
            raise CatalogError(f"order {order_id}: payment {payment.response_code} not approved")
        with self._begin() as connection:
            row, status = self._transition(connection, order_id, "paid")
            connection.execute(
                sa.update(t.orders)
                .where(t.orders.c.order_id == order_id)
                .values(
                    status=status,
                    closed_at=_stored(closed_at),
                    stan=payment.stan,
                    batch_no=payment.batch_no,
                    rrn=payment.rrn,
                    auth_code=payment.auth_code,
                    response_code=payment.response_code,
                )
            )
            sold = connection.execute(
                sa.select(t.order_lines.c.gtin, t.order_lines.c.lot_no, t.order_lines.c.quantity)
                .where(t.order_lines.c.order_id == order_id, t.order_lines.c.lot_no.is_not(None))
                .order_by(t.order_lines.c.order_line_id)
            ).all()
            if not sold:
                return
            version = self._new_version(connection, at=closed_at, reason=f"sale {row.receipt_no}")
            for line in sold:
                connection.execute(
                    sa.update(t.lots)
                    .where(t.lots.c.gtin == line.gtin, t.lots.c.lot_no == line.lot_no)
                    .values(
                        quantity_on_hand=t.lots.c.quantity_on_hand - line.quantity,
                        version=version,
                    )
                )

    def close_unpaid(
        self, order_id: int, *, payment: Payment | None, note: str, closed_at: dt.datetime
    ) -> None:
        """Close an order whose payment was declined or never answered; stock is untouched."""
        with self._begin() as connection:
            _, status = self._transition(connection, order_id, "unpaid")
            values: dict[str, Any] = {
                "status": status,
                "closed_at": _stored(closed_at),
                "note": note[:200],
            }
            if payment is not None:
                values |= {
                    "stan": payment.stan,
                    "batch_no": payment.batch_no,
                    "rrn": payment.rrn,
                    "response_code": payment.response_code,
                }
            connection.execute(
                sa.update(t.orders).where(t.orders.c.order_id == order_id).values(**values)
            )

    def pending_orders(self) -> list[OrderSummary]:
        """Orders written before a payment whose outcome was never recorded."""
        with self._begin() as connection:
            rows = connection.execute(
                sa.select(t.orders)
                .where(t.orders.c.status == "pending")
                .order_by(t.orders.c.order_id)
                .limit(PENDING_ROWS_MAX)
            ).all()
        return [
            OrderSummary(
                row.order_id,
                row.receipt_no,
                row.terminal_id,
                row.status,
                int(row.total_fen),
                _utc(row.opened_at),
            )
            for row in rows
        ]

    def trace_lot(
        self, lot_no: str, *, gtin: str | None = None, include_unpaid: bool = False
    ) -> list[TraceRow]:
        """Every order line that sold ``lot_no`` (of ``gtin`` if given), oldest first.

        Paid and pending orders (a pending one may have been charged); unpaid
        ones (declined, not answered) only with ``include_unpaid``.
        """
        statement = (
            sa.select(
                t.orders.c.order_id,
                t.orders.c.receipt_no,
                t.orders.c.terminal_id,
                t.orders.c.status,
                t.orders.c.opened_at,
                t.orders.c.closed_at,
                t.orders.c.batch_no,
                t.orders.c.stan,
                t.orders.c.rrn,
                t.order_lines.c.gtin,
                t.order_lines.c.product_name,
                t.order_lines.c.lot_no,
                t.order_lines.c.quantity,
            )
            .join(t.orders, t.orders.c.order_id == t.order_lines.c.order_id)
            .where(t.order_lines.c.lot_no == lot_no)
            .order_by(t.orders.c.opened_at, t.orders.c.order_id, t.order_lines.c.order_line_id)
            .limit(TRACE_ROWS_MAX)
        )
        if gtin is not None:
            statement = statement.where(t.order_lines.c.gtin == gtin)
        if not include_unpaid:
            statement = statement.where(t.orders.c.status != "unpaid")
        with self._begin() as connection:
            rows = connection.execute(statement).all()
        return [
            TraceRow(
                order_id=row.order_id,
                receipt_no=row.receipt_no,
                terminal_id=row.terminal_id,
                status=row.status,
                opened_at=_utc(row.opened_at),
                closed_at=_utc(row.closed_at) if row.closed_at else None,
                batch_no=row.batch_no,
                stan=row.stan,
                rrn=row.rrn,
                gtin=row.gtin,
                product_name=row.product_name,
                lot_no=row.lot_no,
                quantity=int(row.quantity),
            )
            for row in rows
        ]


def _product_key(product: Product | None) -> tuple[Any, ...] | None:
    if product is None:
        return None
    return (product.name, product.price_fen, product.lot_tracked)


def _lot_key(lot: Lot | None) -> tuple[Any, ...] | None:
    if lot is None:
        return None
    return (lot.expiry, lot.quantity_on_hand, lot.recalled)


def _with_version(product: Product, version: int) -> Product:
    return Product(product.gtin, product.name, product.price_fen, product.lot_tracked, version)


def _lot_with_version(lot: Lot, version: int) -> Lot:
    return Lot(lot.gtin, lot.lot_no, lot.expiry, lot.quantity_on_hand, lot.recalled, version)


def _product_row(product: Product) -> dict[str, Any]:
    return {
        "gtin": product.gtin,
        "name": product.name,
        "price_fen": product.price_fen,
        "lot_tracked": product.lot_tracked,
        "version": product.version,
    }


def _lot_row(lot: Lot) -> dict[str, Any]:
    return {
        "gtin": lot.gtin,
        "lot_no": lot.lot_no,
        "expiry": lot.expiry,
        "quantity_on_hand": lot.quantity_on_hand,
        "recalled": lot.recalled,
        "version": lot.version,
    }
