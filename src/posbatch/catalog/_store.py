"""The catalog store: back office (products, lots, stock, recalls, orders, returns, tills)
and a terminal's copy.

Both are the same schema (``catalog/migrations``, version table
``catalog_alembic_version``), so the catalog can share a database with the
host (``POSBATCH_DATABASE_URL``) or live in its own SQLite file. The class is
assembled from parts: stock and recalls (``_stock``), orders and returns
(``_orders_store``), tills (``_tills``); this module adds the catalog
itself — imports, snapshots, changes since a version — and a copy's sync.

Versions: every write that changes products or lots (an import, a stock
movement, a recall) inserts one row in ``catalog_versions`` and stamps the
rows it changed with that version; "changes since N" is every product and
lot stamped above N. On PostgreSQL such writers take a table lock on
``catalog_versions`` first, so versions become visible in order and a sync
never skips a change committed late under a lower number.

Imports describe products and lots; they never change counted stock or a
recall. A new lot's (or new product without lots') quantity in the file is
its opening stock (a ``received`` movement, by ``actor``); a new lot marked
recalled is recalled by the import. For items the store knows, a quantity or
recall flag that differs from the store's is left as it is and reported in
:attr:`ImportSummary.notes` — so exporting, selling, editing and importing
never puts sold stock back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from posbatch.catalog import _tables as t
from posbatch.catalog._csv import export_quantity
from posbatch.catalog._model import CatalogSnapshot, ChangeSet, Lot, Product
from posbatch.catalog._orders_store import (
    ORDER_TRANSITIONS,
    OrdersMixin,
    OrderSummary,
    TraceRow,
    next_order_status,
)
from posbatch.catalog._stock import Movement, MovementKind, record_movements
from posbatch.catalog._store_base import (
    ACTOR_LENGTH_MAX,
    begin_immediate,
    checked_text,
    lot_of,
    product_of,
    stored,
    utc,
)
from posbatch.catalog._tills import TillsMixin
from posbatch.catalog._verify import PaymentVerifier
from posbatch.errors import CatalogError
from posbatch.storage import create_engine, upgrade

__all__ = [
    "IMPORT_NOTES_SHOWN_MAX",
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
IMPORT_NOTES_SHOWN_MAX = 20
_WRITE_CHUNK_ROWS = 1_000


@dataclass(frozen=True, slots=True)
class ImportSummary:
    version: int
    products_changed: int
    lots_changed: int
    notes: tuple[str, ...] = ()
    """What the file says that an import does not do (stock, recalls of known lots)."""


@dataclass(frozen=True, slots=True)
class ReplicaState:
    version: int
    synced_at: dt.datetime
    source: str
    source_store_id: str | None = None


class CatalogStore(OrdersMixin, TillsMixin):
    """Products, lots, stock, recalls, orders, returns and tills in one database."""

    def __init__(self, engine: Engine, *, payment_verifier: PaymentVerifier | None = None) -> None:
        self.engine = engine
        self.payment_verifier = payment_verifier

    @classmethod
    def open(cls, url: str, *, payment_verifier: PaymentVerifier | None = None) -> CatalogStore:
        """Open the store at ``url`` and bring its schema to the newest migration."""
        engine = create_engine(url)
        begin_immediate(engine)
        upgrade(engine, MIGRATIONS, version_table=VERSION_TABLE)
        return cls(engine, payment_verifier=payment_verifier)

    def close(self) -> None:
        self.engine.dispose()
        closer = getattr(self.payment_verifier, "close", None)
        if callable(closer):
            closer()

    # --- catalog -----------------------------------------------------------

    def version(self) -> int:
        """The newest version (a terminal copy: the version it was synced to)."""
        state = self.replica_state()
        if state is not None:
            return state.version
        with self._begin() as connection:
            return self._head(connection)

    def import_catalog(
        self,
        products: Iterable[Product],
        lots: Iterable[Lot],
        *,
        at: dt.datetime,
        reason: str,
        actor: str = "import",
    ) -> ImportSummary:
        """Insert or update products and lots in one transaction (see the module docstring)."""
        actor = checked_text("who", actor, ACTOR_LENGTH_MAX)
        new_products = {product.gtin: product for product in products}
        new_lots = list(lots)
        with self._write() as connection:
            current = {
                row.gtin: product_of(row) for row in connection.execute(sa.select(t.products))
            }
            current_lots = {
                (row.gtin, row.lot_no): lot_of(row) for row in connection.execute(sa.select(t.lots))
            }
            _check_import(current, current_lots, new_products, new_lots)
            changed_products = [
                product
                for product in new_products.values()
                if _product_key(current.get(product.gtin)) != _product_key(product)
            ]
            added_lots = [lot for lot in new_lots if (lot.gtin, lot.lot_no) not in current_lots]
            changed_lots = [
                lot
                for lot in new_lots
                if (lot.gtin, lot.lot_no) in current_lots
                and current_lots[lot.gtin, lot.lot_no].expiry != lot.expiry
            ]
            notes = _import_notes(current, current_lots, new_products.values(), new_lots)
            if not changed_products and not added_lots and not changed_lots:
                return ImportSummary(self._head(connection), 0, 0, notes)
            version = self._new_version(connection, at=at, reason=reason)
            self._upsert_products(connection, changed_products, current, version=version)
            for lot in changed_lots:
                connection.execute(
                    sa.update(t.lots)
                    .where(t.lots.c.gtin == lot.gtin, t.lots.c.lot_no == lot.lot_no)
                    .values(expiry=lot.expiry, version=version)
                )
            self._insert_lots(connection, added_lots, version=version)
            self._opening_stock(
                connection,
                [p for p in changed_products if p.gtin not in current],
                added_lots,
                at=at,
                actor=actor,
                reason=reason,
                version=version,
            )
        return ImportSummary(
            version, len(changed_products), len(added_lots) + len(changed_lots), notes
        )

    @staticmethod
    def _upsert_products(
        connection: Connection,
        rows: list[Product],
        existing: dict[str, Product],
        *,
        version: int,
    ) -> None:
        def described(product: Product) -> dict[str, Any]:
            return {
                "name": product.name,
                "price_fen": product.price_fen,
                "lot_tracked": product.lot_tracked,
                "trace_prefix": product.trace_prefix,
                "version": version,
            }

        inserts = [
            described(p) | {"gtin": p.gtin, "quantity_on_hand": 0, "quarantined": 0}
            for p in rows
            if p.gtin not in existing
        ]
        updates = [described(p) | {"b_gtin": p.gtin} for p in rows if p.gtin in existing]
        for start in range(0, len(inserts), _WRITE_CHUNK_ROWS):
            connection.execute(sa.insert(t.products), inserts[start : start + _WRITE_CHUNK_ROWS])
        statement = sa.update(t.products).where(t.products.c.gtin == sa.bindparam("b_gtin"))
        for start in range(0, len(updates), _WRITE_CHUNK_ROWS):
            connection.execute(statement, updates[start : start + _WRITE_CHUNK_ROWS])

    @staticmethod
    def _insert_lots(connection: Connection, rows: list[Lot], *, version: int) -> None:
        inserts = [
            {
                "gtin": lot.gtin,
                "lot_no": lot.lot_no,
                "expiry": lot.expiry,
                "quantity_on_hand": 0,
                "quarantined": 0,
                "recalled": False,
                "version": version,
            }
            for lot in rows
        ]
        for start in range(0, len(inserts), _WRITE_CHUNK_ROWS):
            connection.execute(sa.insert(t.lots), inserts[start : start + _WRITE_CHUNK_ROWS])

    def _opening_stock(
        self,
        connection: Connection,
        products: list[Product],
        lots: list[Lot],
        *,
        at: dt.datetime,
        actor: str,
        reason: str,
        version: int,
    ) -> None:
        """Opening stock of new items as ``received`` movements; new recalled lots recalled."""
        movements = [
            Movement(p.gtin, t.NO_LOT, MovementKind.RECEIVED, p.quantity_on_hand, 0, reason, actor)
            for p in products
            if not p.lot_tracked and p.quantity_on_hand
        ]
        recalled: list[tuple[Lot, int]] = []
        for lot in lots:
            if lot.recalled:
                result = connection.execute(
                    sa.insert(t.recalls).values(
                        gtin=lot.gtin,
                        lot_no=lot.lot_no,
                        action="recall",
                        reason=f"recalled in the file of {reason}"[:200],
                        actor=actor,
                        at=stored(at),
                        version=version,
                    )
                )
                assert result.inserted_primary_key is not None
                recalled.append((lot, int(result.inserted_primary_key[0])))
            else:
                movements.append(
                    Movement(
                        lot.gtin,
                        lot.lot_no,
                        MovementKind.RECEIVED,
                        lot.quantity_on_hand,
                        0,
                        reason,
                        actor,
                    )
                )
        for lot, recall_id in recalled:
            movements.append(
                Movement(
                    lot.gtin,
                    lot.lot_no,
                    MovementKind.RECEIVED,
                    0,
                    lot.quantity_on_hand,
                    f"{reason} (recalled lot: quarantined)",
                    actor,
                    recall_id=recall_id,
                )
            )
        if recalled:
            connection.execute(
                sa.update(t.lots)
                .where(
                    sa.tuple_(t.lots.c.gtin, t.lots.c.lot_no).in_(
                        [(lot.gtin, lot.lot_no) for lot, _ in recalled]
                    )
                )
                .values(recalled=True)
            )
        for start in range(0, len(movements), _WRITE_CHUNK_ROWS):
            record_movements(
                connection, movements[start : start + _WRITE_CHUNK_ROWS], at=at, version=version
            )

    def products_and_lots(self) -> tuple[list[Product], list[Lot]]:
        with self._begin() as connection:
            products = [
                product_of(row)
                for row in connection.execute(sa.select(t.products).order_by(t.products.c.gtin))
            ]
            lots = [
                lot_of(row)
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
            store_id = connection.execute(sa.select(t.store_identity.c.store_id)).scalar()
            products = tuple(
                product_of(row)
                for row in connection.execute(
                    sa.select(t.products)
                    .where(t.products.c.version > version)
                    .order_by(t.products.c.gtin)
                )
            )
            lots = tuple(
                lot_of(row)
                for row in connection.execute(
                    sa.select(t.lots)
                    .where(t.lots.c.version > version)
                    .order_by(t.lots.c.gtin, t.lots.c.lot_no)
                )
            )
        return ChangeSet(version, head, products, lots, store_id=store_id)

    # --- terminal copy -------------------------------------------------------

    def replica_state(self) -> ReplicaState | None:
        """Version and sync time of a terminal copy; None for the back office."""
        with self._begin() as connection:
            row = connection.execute(sa.select(t.replica_state)).first()
        if row is None:
            return None
        return ReplicaState(row.version, utc(row.synced_at), row.source, row.source_store_id)

    def apply_changes(
        self,
        changes: ChangeSet,
        *,
        synced_at: dt.datetime,
        source: str,
        expected_store_id: str | None = None,
    ) -> int:
        """Bring this terminal copy up to ``changes.head_version``; returns rows applied.

        Refused when the changes come from another back office than the one
        this copy follows (or than ``expected_store_id``, the till's
        credential's), start after this copy's version (a gap) or end before
        it (the source is older than this copy).
        """
        state = self.replica_state()
        local = state.version if state is not None else 0
        followed = state.source_store_id if state is not None else None
        for wanted, why in (
            (expected_store_id, "this till's credential names back office"),
            (followed, "this copy follows back office"),
        ):
            if wanted is not None and changes.store_id != wanted:
                raise CatalogError(
                    f"changes from {source} come from back office {changes.store_id}, but "
                    f"{why} {wanted}: refused"
                )
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
        with self._write() as connection:
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
            _copy_rows(
                connection,
                t.products,
                [_product_row(p) for p in products],
                existing_products,
                ("gtin",),
            )
            _copy_rows(
                connection,
                t.lots,
                [_lot_row(lot) for lot in lots],
                existing_lots,
                ("gtin", "lot_no"),
            )
            values = {
                "version": changes.head_version,
                "synced_at": stored(synced_at),
                "source": source[:500],
                "source_store_id": changes.store_id,
            }
            if state is None:
                connection.execute(sa.insert(t.replica_state).values(state_id=1, **values))
            else:
                connection.execute(sa.update(t.replica_state).values(**values))
        return len(products) + len(lots)


def _copy_rows(
    connection: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    existing: set[Any],
    keys: tuple[str, ...],
) -> None:
    """Insert or update a copy's rows exactly as the back office sent them."""

    def key_of(row: dict[str, Any]) -> Any:
        return row[keys[0]] if len(keys) == 1 else tuple(row[k] for k in keys)

    inserts = [row for row in rows if key_of(row) not in existing]
    updates = [
        {k: v for k, v in row.items() if k not in keys} | {f"b_{k}": row[k] for k in keys}
        for row in rows
        if key_of(row) in existing
    ]
    for start in range(0, len(inserts), _WRITE_CHUNK_ROWS):
        connection.execute(sa.insert(table), inserts[start : start + _WRITE_CHUNK_ROWS])
    statement = sa.update(table).where(*(table.c[k] == sa.bindparam(f"b_{k}") for k in keys))
    for start in range(0, len(updates), _WRITE_CHUNK_ROWS):
        connection.execute(statement, updates[start : start + _WRITE_CHUNK_ROWS])


def _check_import(
    current: dict[str, Product],
    current_lots: dict[tuple[str, str], Lot],
    products: dict[str, Product],
    lots: list[Lot],
) -> None:
    """Refuse an import that would orphan stock or lots, or map one drug code to two products."""
    problems: list[str] = []
    known = set(current) | set(products)
    lot_counts: dict[str, int] = {}
    for gtin, _ in current_lots:
        lot_counts[gtin] = lot_counts.get(gtin, 0) + 1
    for lot in lots:
        if lot.gtin not in known:
            problems.append(f"lot {lot.lot_no!r} refers to unknown product {lot.gtin}")
        lot_counts.setdefault(lot.gtin, 0)
        if (lot.gtin, lot.lot_no) not in current_lots:
            lot_counts[lot.gtin] += 1
    for product in products.values():
        before = current.get(product.gtin)
        if before is None or before.lot_tracked == product.lot_tracked:
            continue
        if not product.lot_tracked and lot_counts.get(product.gtin):
            problems.append(
                f"GTIN {product.gtin} has {lot_counts[product.gtin]} lot(s): it stays lot-tracked"
            )
        if product.lot_tracked and (before.quantity_on_hand or before.quarantined):
            problems.append(
                f"GTIN {product.gtin} has {before.quantity_on_hand} unit(s) counted without a "
                "lot: adjust them to 0 (`posbatch catalog adjust`) before it becomes lot-tracked"
            )
    prefixes: dict[str, str] = {
        p.trace_prefix: gtin
        for gtin, p in current.items()
        if p.trace_prefix and gtin not in products
    }
    for product in products.values():
        if product.trace_prefix is None:
            continue
        other = prefixes.setdefault(product.trace_prefix, product.gtin)
        if other != product.gtin:
            problems.append(
                f"trace_prefix {product.trace_prefix} of GTIN {product.gtin} is already "
                f"GTIN {other}'s: one drug identification code names one product"
            )
    if problems:
        raise CatalogError(f"{len(problems)} problem(s), nothing imported:\n" + "\n".join(problems))


def _import_notes(
    current: dict[str, Product],
    current_lots: dict[tuple[str, str], Lot],
    products: Iterable[Product],
    lots: Iterable[Lot],
) -> tuple[str, ...]:
    notes: list[str] = []
    for lot in lots:
        known = current_lots.get((lot.gtin, lot.lot_no))
        if known is None:
            continue
        if export_quantity(known) != lot.quantity_on_hand:
            notes.append(
                f"lot {lot.lot_no} of {lot.gtin}: the file says {lot.quantity_on_hand}, "
                f"{export_quantity(known)} counted — stock unchanged (use `catalog receive` "
                "or `catalog adjust`)"
            )
        if known.recalled != lot.recalled:
            notes.append(
                f"lot {lot.lot_no} of {lot.gtin}: the file says recalled={lot.recalled}, "
                f"the store {known.recalled} — unchanged (use `catalog recall`)"
            )
    for product in products:
        known_product = current.get(product.gtin)
        if (
            known_product is not None
            and not product.lot_tracked
            and product.quantity_on_hand
            and known_product.quantity_on_hand != product.quantity_on_hand
        ):
            notes.append(
                f"{product.gtin}: the file says {product.quantity_on_hand}, "
                f"{known_product.quantity_on_hand} counted — stock unchanged"
            )
    if len(notes) > IMPORT_NOTES_SHOWN_MAX:
        more = len(notes) - IMPORT_NOTES_SHOWN_MAX
        notes = [*notes[:IMPORT_NOTES_SHOWN_MAX], f"… and {more} more"]
    return tuple(notes)


def _product_key(product: Product | None) -> tuple[Any, ...] | None:
    if product is None:
        return None
    return (product.name, product.price_fen, product.lot_tracked, product.trace_prefix)


def _product_row(product: Product) -> dict[str, Any]:
    return {
        "gtin": product.gtin,
        "name": product.name,
        "price_fen": product.price_fen,
        "lot_tracked": product.lot_tracked,
        "version": product.version,
        "quantity_on_hand": product.quantity_on_hand,
        "quarantined": product.quarantined,
        "trace_prefix": product.trace_prefix,
    }


def _lot_row(lot: Lot) -> dict[str, Any]:
    return {
        "gtin": lot.gtin,
        "lot_no": lot.lot_no,
        "expiry": lot.expiry,
        "quantity_on_hand": lot.quantity_on_hand,
        "quarantined": lot.quarantined,
        "recalled": lot.recalled,
        "version": lot.version,
    }
