"""Stock as movements, and recalls: the back office's record of goods in and out.

Theory of operation
-------------------
Stock is never a number anyone types over. Every change is a row of
``catalog_stock_movements`` — goods received, a sale, a void/refund return,
an adjustment with its reason (a stocktake, damage, a disposal), a recall's
quarantine and its release — and the stock of a lot (or of a product without
lots, ``lot_no`` ``''``) is the sum of its movements: units *on hand* (may be
sold) and units *quarantined* (set aside: a recalled lot, a return put
aside). :func:`record_movements` is the one place that writes movements; in
the same transaction it adds them to the cached totals on ``catalog_lots`` /
``catalog_products`` (what a snapshot and the terminals read) and stamps the
rows with the catalog version, so the totals are always the sum and terminal
copies see every stock change. An import describes products and lots and
never touches counted stock (see ``CatalogStore.import_catalog``).

A recall (:meth:`StockMixin.recall`) is a record — lot, reason, who, when —
that sets the lot's recalled flag (new version: every till learns it at its
next sync) and moves its stock on hand to quarantine; lifting it is another
record that clears the flag and releases what the recall set aside. The back
office refuses an order line of a recalled lot whatever the till's copy said
(``_rules``).
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posbatch.batch.model import shown_at
from posbatch.catalog import _tables as t
from posbatch.catalog._model import GS1_CSET82, LOT_LENGTH_MAX, Lot
from posbatch.catalog._store_base import (
    ACTOR_LENGTH_MAX,
    REASON_LENGTH_MAX,
    StoreBase,
    checked_text,
    lot_of,
    product_of,
    stored,
    utc,
)
from posbatch.errors import CatalogError

__all__ = [
    "CLOSE_MATCHES_MAX",
    "MOVEMENT_ROWS_MAX",
    "STOCK_QUANTITY_MAX",
    "Movement",
    "MovementKind",
    "MovementRow",
    "RecallRow",
    "StockMixin",
    "StockRow",
    "check_lot_no",
    "record_movements",
    "stock_by_product",
]

MOVEMENT_ROWS_MAX = 10_000
"""Most movements one listing returns."""
STOCK_QUANTITY_MAX = 100_000_000
"""Most units one movement may carry (a typo guard; far above any shop's stock)."""
CLOSE_MATCHES_MAX = 5
_CLOSE_MATCH_CUTOFF = 0.6
_CLOSE_MATCH_CANDIDATES_MAX = 100_000


class MovementKind(StrEnum):
    RECEIVED = "received"
    SALE = "sale"
    RETURN = "return"
    ADJUSTMENT = "adjustment"
    QUARANTINE = "quarantine"
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class Movement:
    """One change of stock: units on hand and quarantined, with what caused it."""

    gtin: str
    lot_no: str
    """The lot, or ``''`` (``_tables.NO_LOT``) for a product without lots."""
    kind: MovementKind
    on_hand_delta: int
    quarantined_delta: int = 0
    reason: str | None = None
    actor: str | None = None
    order_id: int | None = None
    return_id: int | None = None
    recall_id: int | None = None


@dataclass(frozen=True, slots=True)
class MovementRow:
    movement_id: int
    at: dt.datetime
    gtin: str
    lot_no: str | None
    kind: str
    on_hand_delta: int
    quarantined_delta: int
    reason: str | None
    actor: str | None
    order_id: int | None
    return_id: int | None
    recall_id: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "movement_id": self.movement_id,
            "at": self.at.isoformat(),
            "gtin": self.gtin,
            "lot_no": self.lot_no,
            "kind": self.kind,
            "on_hand_delta": self.on_hand_delta,
            "quarantined_delta": self.quarantined_delta,
            "reason": self.reason,
            "actor": self.actor,
            "order_id": self.order_id,
            "return_id": self.return_id,
            "recall_id": self.recall_id,
        }


@dataclass(frozen=True, slots=True)
class StockRow:
    """Stock of one lot (or of a product without lots: ``lot_no`` None) at a moment."""

    gtin: str
    product_name: str
    lot_no: str | None
    expiry: dt.date | None
    recalled: bool
    on_hand: int
    quarantined: int

    def to_json(self) -> dict[str, Any]:
        return {
            "gtin": self.gtin,
            "product_name": self.product_name,
            "lot_no": self.lot_no,
            "expiry": self.expiry.isoformat() if self.expiry else None,
            "recalled": self.recalled,
            "on_hand": self.on_hand,
            "quarantined": self.quarantined,
        }


@dataclass(frozen=True, slots=True)
class RecallRow:
    recall_id: int
    gtin: str
    lot_no: str
    action: str
    """``recall`` or ``lift``."""
    reason: str
    actor: str
    at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "recall_id": self.recall_id,
            "gtin": self.gtin,
            "lot_no": self.lot_no,
            "action": self.action,
            "reason": self.reason,
            "actor": self.actor,
            "at": self.at.isoformat(),
        }


def stock_by_product(rows: Iterable[StockRow]) -> list[StockRow]:
    """One row per product (``lot_no`` None): its lots' stock added up."""
    totals: dict[str, StockRow] = {}
    for row in rows:
        total = totals.get(row.gtin)
        totals[row.gtin] = StockRow(
            row.gtin,
            row.product_name,
            None,
            None,
            row.recalled or (total is not None and total.recalled),
            row.on_hand + (total.on_hand if total else 0),
            row.quarantined + (total.quarantined if total else 0),
        )
    return [totals[gtin] for gtin in sorted(totals)]


def check_lot_no(lot_no: str) -> str:
    """A lot number a GS1 barcode (AI 10) can carry, or CatalogError saying why not."""
    if not lot_no:
        raise CatalogError("the lot number is empty")
    if len(lot_no) > LOT_LENGTH_MAX:
        raise CatalogError(
            f"lot {lot_no!r} is {len(lot_no)} characters long; a GS1 lot holds at most "
            f"{LOT_LENGTH_MAX}"
        )
    bad = sorted(set(lot_no) - GS1_CSET82)
    if bad:
        raise CatalogError(
            f"lot {lot_no!r} has characters a GS1 barcode cannot carry: {''.join(bad)!r}"
        )
    return lot_no


def _check_units(what: str, quantity: int) -> int:
    if not 0 < quantity <= STOCK_QUANTITY_MAX:
        raise CatalogError(f"{what} {quantity} is not between 1 and {STOCK_QUANTITY_MAX}")
    return quantity


def record_movements(
    connection: Connection, movements: Iterable[Movement], *, at: dt.datetime, version: int
) -> None:
    """Write ``movements`` and add them to the cached stock totals, stamped ``version``.

    The only writer of stock: callers hold a transaction that also took ``version``.
    """
    moving = [m for m in movements if m.on_hand_delta or m.quarantined_delta]
    if not moving:
        return
    connection.execute(
        sa.insert(t.movements),
        [
            {
                "at": stored(at),
                "gtin": movement.gtin,
                "lot_no": movement.lot_no,
                "kind": str(movement.kind),
                "on_hand_delta": movement.on_hand_delta,
                "quarantined_delta": movement.quarantined_delta,
                "reason": movement.reason[:REASON_LENGTH_MAX] if movement.reason else None,
                "actor": movement.actor[:ACTOR_LENGTH_MAX] if movement.actor else None,
                "order_id": movement.order_id,
                "return_id": movement.return_id,
                "recall_id": movement.recall_id,
                "version": version,
            }
            for movement in moving
        ],
    )
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for movement in moving:
        on_hand, held = totals.get((movement.gtin, movement.lot_no), (0, 0))
        totals[movement.gtin, movement.lot_no] = (
            on_hand + movement.on_hand_delta,
            held + movement.quarantined_delta,
        )
    for (gtin, lot_no), (on_hand, quarantined) in totals.items():
        if lot_no == t.NO_LOT:
            table: sa.Table = t.products
            where = t.products.c.gtin == gtin
        else:
            table = t.lots
            where = sa.and_(t.lots.c.gtin == gtin, t.lots.c.lot_no == lot_no)
        done = connection.execute(
            sa.update(table)
            .where(where)
            .values(
                quantity_on_hand=table.c.quantity_on_hand + on_hand,
                quarantined=table.c.quarantined + quarantined,
                version=version,
            )
        )
        if done.rowcount != 1:
            raise CatalogError(f"stock movement of unknown item {gtin} {lot_no!r}")


def _movement_row(row: Any) -> MovementRow:
    return MovementRow(
        row.movement_id,
        utc(row.at),
        row.gtin,
        row.lot_no or None,
        row.kind,
        int(row.on_hand_delta),
        int(row.quarantined_delta),
        row.reason,
        row.actor,
        row.order_id,
        row.return_id,
        row.recall_id,
    )


def _recall_row(row: Any) -> RecallRow:
    return RecallRow(
        row.recall_id, row.gtin, row.lot_no, row.action, row.reason, row.actor, utc(row.at)
    )


class StockMixin(StoreBase):
    """Goods received, adjustments, the stock report, recalls (see the module docstring)."""

    # --- finding a lot --------------------------------------------------------------

    def lots_named(self, lot_no: str, *, gtin: str | None = None) -> list[Lot]:
        """Every lot numbered ``lot_no`` (of ``gtin`` if given)."""
        statement = sa.select(t.lots).where(t.lots.c.lot_no == lot_no)
        if gtin is not None:
            statement = statement.where(t.lots.c.gtin == gtin)
        with self._begin() as connection:
            return [lot_of(row) for row in connection.execute(statement.order_by(t.lots.c.gtin))]

    def similar_lot_numbers(self, lot_no: str, *, gtin: str | None = None) -> list[str]:
        """Lot numbers the catalog knows that look like ``lot_no`` (a typo, a case slip)."""
        with self._begin() as connection:
            return self._similar_in(connection, lot_no, gtin)

    def _lot_for_update(self, connection: Connection, lot_no: str, gtin: str | None) -> Any:
        statement = sa.select(t.lots).where(t.lots.c.lot_no == lot_no)
        if gtin is not None:
            statement = statement.where(t.lots.c.gtin == gtin)
        rows = connection.execute(statement.with_for_update()).all()
        if not rows:
            where = f" of product {gtin}" if gtin else ""
            similar = self._similar_in(connection, lot_no, gtin)
            hint = f"; did you mean {', '.join(similar)}?" if similar else ""
            raise CatalogError(f"no lot {lot_no!r}{where} in the catalog{hint}")
        if len(rows) > 1:
            gtins = ", ".join(row.gtin for row in rows)
            raise CatalogError(
                f"lot {lot_no!r} exists for several products ({gtins}): give the GTIN"
            )
        return rows[0]

    def _similar_in(self, connection: Connection, lot_no: str, gtin: str | None) -> list[str]:
        statement = sa.select(t.lots.c.lot_no).distinct().limit(_CLOSE_MATCH_CANDIDATES_MAX)
        if gtin is not None:
            statement = statement.where(t.lots.c.gtin == gtin)
        known = list(connection.execute(statement).scalars())
        folded = {name.upper(): name for name in known}
        return [
            folded[match]
            for match in difflib.get_close_matches(
                lot_no.upper(), list(folded), n=CLOSE_MATCHES_MAX, cutoff=_CLOSE_MATCH_CUTOFF
            )
        ]

    @staticmethod
    def _product_for_update(connection: Connection, gtin: str) -> Any:
        row = connection.execute(
            sa.select(t.products).where(t.products.c.gtin == gtin).with_for_update()
        ).first()
        if row is None:
            raise CatalogError(f"unknown product {gtin}: not in the catalog")
        return row

    # --- goods in, adjustments ------------------------------------------------------------

    def receive(
        self,
        gtin: str,
        lot_no: str | None,
        quantity: int,
        *,
        at: dt.datetime,
        actor: str,
        reason: str = "goods received",
        expiry: dt.date | None = None,
    ) -> StockRow:
        """Goods received: ``quantity`` units into a lot (a new lot is created, with ``expiry``).

        A product without lots takes ``lot_no`` None. Units received into a
        recalled lot go to quarantine. Returns the item's stock afterwards.
        """
        _check_units("quantity received", quantity)
        actor = checked_text("who", actor, ACTOR_LENGTH_MAX)
        reason = checked_text("the reason", reason, REASON_LENGTH_MAX)
        with self._write() as connection:
            version = self._new_version(connection, at=at, reason=f"received {gtin} {lot_no}")
            product = self._product_for_update(connection, gtin)
            if lot_no is None:
                if product.lot_tracked:
                    raise CatalogError(f"{product.name} ({gtin}) is lot-tracked: name the lot")
                movement = Movement(
                    gtin, t.NO_LOT, MovementKind.RECEIVED, quantity, 0, reason, actor
                )
            else:
                check_lot_no(lot_no)
                if not product.lot_tracked:
                    raise CatalogError(f"{product.name} ({gtin}) is not lot-tracked: no lot")
                lot = connection.execute(
                    sa.select(t.lots)
                    .where(t.lots.c.gtin == gtin, t.lots.c.lot_no == lot_no)
                    .with_for_update()
                ).first()
                if lot is None:
                    connection.execute(
                        sa.insert(t.lots).values(
                            gtin=gtin,
                            lot_no=lot_no,
                            expiry=expiry,
                            quantity_on_hand=0,
                            quarantined=0,
                            recalled=False,
                            version=version,
                        )
                    )
                elif expiry is not None and lot.expiry != expiry:
                    raise CatalogError(
                        f"lot {lot_no} of {product.name} expires {lot.expiry or 'never'} in the "
                        f"catalog, not {expiry}: check the delivery"
                    )
                recall_id = self.active_recall(connection, gtin, lot_no)
                recalled = recall_id is not None
                movement = Movement(
                    gtin,
                    lot_no,
                    MovementKind.RECEIVED,
                    0 if recalled else quantity,
                    quantity if recalled else 0,
                    reason + (" (recalled lot: quarantined)" if recalled else ""),
                    actor,
                    recall_id=recall_id,
                )
            record_movements(connection, [movement], at=at, version=version)
            return self._stock_row(connection, gtin, lot_no)

    def adjust(
        self,
        gtin: str,
        lot_no: str | None,
        *,
        reason: str,
        actor: str,
        at: dt.datetime,
        delta: int | None = None,
        counted: int | None = None,
        quarantined: bool = False,
    ) -> StockRow:
        """Correct stock with a reason: by ``delta`` units, or to ``counted`` (a stocktake).

        ``quarantined`` adjusts the quarantined units instead (e.g. a recalled
        lot sent back to the supplier). Stock may not go below zero this way.
        """
        if (delta is None) == (counted is None):
            raise CatalogError("give either a change (delta) or the counted quantity, not both")
        reason = checked_text("the reason", reason, REASON_LENGTH_MAX)
        actor = checked_text("who", actor, ACTOR_LENGTH_MAX)
        if counted is not None and not 0 <= counted <= STOCK_QUANTITY_MAX:
            raise CatalogError(
                f"counted quantity {counted} is not between 0 and {STOCK_QUANTITY_MAX}"
            )
        if delta is not None and (delta == 0 or abs(delta) > STOCK_QUANTITY_MAX):
            raise CatalogError(f"change {delta} is not between ±1 and ±{STOCK_QUANTITY_MAX}")
        with self._write() as connection:
            version = self._new_version(connection, at=at, reason=f"adjust {gtin} {lot_no}")
            product = self._product_for_update(connection, gtin)
            if lot_no is None:
                if product.lot_tracked:
                    raise CatalogError(f"{product.name} ({gtin}) is lot-tracked: name the lot")
                current = product
            else:
                current = self._lot_for_update(connection, lot_no, gtin)
            held = int(current.quarantined if quarantined else current.quantity_on_hand)
            change = counted - held if counted is not None else delta
            assert change is not None
            if held + change < 0:
                bin_name = "quarantined" if quarantined else "on hand"
                raise CatalogError(
                    f"{held} {bin_name}: a change of {change} would leave {held + change}"
                )
            movement = Movement(
                gtin,
                lot_no or t.NO_LOT,
                MovementKind.ADJUSTMENT,
                0 if quarantined else change,
                change if quarantined else 0,
                reason,
                actor,
            )
            record_movements(connection, [movement], at=at, version=version)
            return self._stock_row(connection, gtin, lot_no)

    # --- reading stock ------------------------------------------------------------------------

    def _stock_row(self, connection: Connection, gtin: str, lot_no: str | None) -> StockRow:
        rows = self._stock_rows(connection, at=None, gtin=gtin, lot_no=lot_no or t.NO_LOT)
        return rows[0]

    def stock_report(
        self, *, at: dt.datetime | None = None, gtin: str | None = None
    ) -> list[StockRow]:
        """Stock per product and lot as the sum of movements up to ``at`` (None: now).

        Without ``at`` every lot and every product without lots is listed
        (zero when nothing moved); with ``at`` the items that had a movement
        by then. Names, expiry and recall flag are as the catalog has them now.
        """
        with self._begin() as connection:
            return self._stock_rows(connection, at=at, gtin=gtin)

    def _stock_rows(
        self,
        connection: Connection,
        *,
        at: dt.datetime | None,
        gtin: str | None = None,
        lot_no: str | None = None,
    ) -> list[StockRow]:
        statement = sa.select(
            t.movements.c.gtin,
            t.movements.c.lot_no,
            sa.func.sum(t.movements.c.on_hand_delta).label("on_hand"),
            sa.func.sum(t.movements.c.quarantined_delta).label("quarantined"),
        ).group_by(t.movements.c.gtin, t.movements.c.lot_no)
        if at is not None:
            statement = statement.where(t.movements.c.at <= stored(at))
        if gtin is not None:
            statement = statement.where(t.movements.c.gtin == gtin)
        if lot_no is not None:
            statement = statement.where(t.movements.c.lot_no == lot_no)
        sums = {
            (row.gtin, row.lot_no): (int(row.on_hand), int(row.quarantined))
            for row in connection.execute(statement)
        }
        products_query = sa.select(t.products)
        lots_query = sa.select(t.lots)
        if gtin is not None:
            products_query = products_query.where(t.products.c.gtin == gtin)
            lots_query = lots_query.where(t.lots.c.gtin == gtin)
        products = {row.gtin: product_of(row) for row in connection.execute(products_query)}
        items: list[StockRow] = []
        if lot_no is None or lot_no == t.NO_LOT:
            for product in products.values():
                key = (product.gtin, t.NO_LOT)
                if product.lot_tracked and key not in sums:
                    continue
                if at is not None and key not in sums:
                    continue
                on_hand, held = sums.get(key, (0, 0))
                items.append(StockRow(product.gtin, product.name, None, None, False, on_hand, held))
        if lot_no != t.NO_LOT:
            if lot_no is not None:
                lots_query = lots_query.where(t.lots.c.lot_no == lot_no)
            for row in connection.execute(lots_query):
                key = (row.gtin, row.lot_no)
                if at is not None and key not in sums:
                    continue
                on_hand, held = sums.get(key, (0, 0))
                owner = products.get(row.gtin)
                items.append(
                    StockRow(
                        row.gtin,
                        owner.name if owner else "",
                        row.lot_no,
                        row.expiry,
                        bool(row.recalled),
                        on_hand,
                        held,
                    )
                )
        items.sort(key=lambda item: (item.gtin, item.lot_no or ""))
        return items

    def movements(
        self, *, gtin: str | None = None, lot_no: str | None = None, limit: int = MOVEMENT_ROWS_MAX
    ) -> list[MovementRow]:
        """Stock movements, oldest first (of one product, or one lot of it)."""
        statement = sa.select(t.movements).order_by(t.movements.c.movement_id)
        if gtin is not None:
            statement = statement.where(t.movements.c.gtin == gtin)
        if lot_no is not None:
            statement = statement.where(t.movements.c.lot_no == lot_no)
        with self._begin() as connection:
            rows = connection.execute(statement.limit(min(limit, MOVEMENT_ROWS_MAX))).all()
        return [_movement_row(row) for row in rows]

    def stock_discrepancies(self) -> list[tuple[str, str, int, int, int, int]]:
        """Items whose cached totals differ from the sum of their movements (always empty).

        Each: (gtin, lot_no, cached on hand, summed on hand, cached quarantined, summed).
        """
        with self._begin() as connection:
            sums = {
                (row.gtin, row.lot_no): (int(row.on_hand), int(row.quarantined))
                for row in connection.execute(
                    sa.select(
                        t.movements.c.gtin,
                        t.movements.c.lot_no,
                        sa.func.sum(t.movements.c.on_hand_delta).label("on_hand"),
                        sa.func.sum(t.movements.c.quarantined_delta).label("quarantined"),
                    ).group_by(t.movements.c.gtin, t.movements.c.lot_no)
                )
            }
            cached = {
                (row.gtin, row.lot_no): (int(row.quantity_on_hand), int(row.quarantined))
                for row in connection.execute(sa.select(t.lots))
            }
            cached |= {
                (row.gtin, t.NO_LOT): (int(row.quantity_on_hand), int(row.quarantined))
                for row in connection.execute(sa.select(t.products))
            }
        found = []
        for key in sorted(set(sums) | set(cached)):
            have, summed = cached.get(key, (0, 0)), sums.get(key, (0, 0))
            if have != summed:
                found.append((key[0], key[1], have[0], summed[0], have[1], summed[1]))
        return found

    # --- recalls -----------------------------------------------------------------------------

    def recall(
        self, lot_no: str, *, gtin: str | None = None, reason: str, actor: str, at: dt.datetime
    ) -> RecallRow:
        """Recall a lot: record who and why, flag it (tills learn it at their next sync),
        and move its stock on hand to quarantine."""
        reason = checked_text("the reason", reason, REASON_LENGTH_MAX)
        actor = checked_text("who", actor, ACTOR_LENGTH_MAX)
        with self._write() as connection:
            version = self._new_version(connection, at=at, reason=f"recall {lot_no}")
            lot = self._lot_for_update(connection, lot_no, gtin)
            if lot.recalled:
                last = self._last_recall(connection, lot.gtin, lot.lot_no)
                since = f" on {shown_at(last.at)} by {last.actor}" if last else ""  # Beijing
                raise CatalogError(f"lot {lot.lot_no} of {lot.gtin} is already recalled{since}")
            recall_id = self._insert_recall(
                connection, lot, "recall", reason, actor, at=at, version=version
            )
            connection.execute(
                sa.update(t.lots)
                .where(t.lots.c.gtin == lot.gtin, t.lots.c.lot_no == lot.lot_no)
                .values(recalled=True, version=version)
            )
            on_hand = int(lot.quantity_on_hand)
            if on_hand > 0:
                record_movements(
                    connection,
                    [
                        Movement(
                            lot.gtin,
                            lot.lot_no,
                            MovementKind.QUARANTINE,
                            -on_hand,
                            on_hand,
                            f"recall: {reason}",
                            actor,
                            recall_id=recall_id,
                        )
                    ],
                    at=at,
                    version=version,
                )
            return RecallRow(recall_id, lot.gtin, lot.lot_no, "recall", reason, actor, utc(at))

    def lift_recall(
        self, lot_no: str, *, gtin: str | None = None, reason: str, actor: str, at: dt.datetime
    ) -> RecallRow:
        """Lift a recall: record who and why, clear the flag, and release to stock on hand
        what the recall put in quarantine (units returned damaged stay there)."""
        reason = checked_text("the reason", reason, REASON_LENGTH_MAX)
        actor = checked_text("who", actor, ACTOR_LENGTH_MAX)
        with self._write() as connection:
            version = self._new_version(connection, at=at, reason=f"lift recall {lot_no}")
            lot = self._lot_for_update(connection, lot_no, gtin)
            last = self._last_recall(connection, lot.gtin, lot.lot_no)
            if not lot.recalled or last is None or last.action != "recall":
                raise CatalogError(f"lot {lot.lot_no} of {lot.gtin} is not recalled")
            recall_id = self._insert_recall(
                connection, lot, "lift", reason, actor, at=at, version=version
            )
            connection.execute(
                sa.update(t.lots)
                .where(t.lots.c.gtin == lot.gtin, t.lots.c.lot_no == lot.lot_no)
                .values(recalled=False, version=version)
            )
            release = min(self.set_aside_by(connection, last.recall_id), int(lot.quarantined))
            if release > 0:
                record_movements(
                    connection,
                    [
                        Movement(
                            lot.gtin,
                            lot.lot_no,
                            MovementKind.RELEASE,
                            release,
                            -release,
                            f"recall lifted: {reason}",
                            actor,
                            recall_id=recall_id,
                        )
                    ],
                    at=at,
                    version=version,
                )
            return RecallRow(recall_id, lot.gtin, lot.lot_no, "lift", reason, actor, utc(at))

    @staticmethod
    def _insert_recall(
        connection: Connection,
        lot: Any,
        action: str,
        reason: str,
        actor: str,
        *,
        at: dt.datetime,
        version: int,
    ) -> int:
        result = connection.execute(
            sa.insert(t.recalls).values(
                gtin=lot.gtin,
                lot_no=lot.lot_no,
                action=action,
                reason=reason,
                actor=actor,
                at=stored(at),
                version=version,
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    @staticmethod
    def _last_recall(connection: Connection, gtin: str, lot_no: str) -> RecallRow | None:
        row = connection.execute(
            sa.select(t.recalls)
            .where(t.recalls.c.gtin == gtin, t.recalls.c.lot_no == lot_no)
            .order_by(t.recalls.c.recall_id.desc())
            .limit(1)
        ).first()
        return None if row is None else _recall_row(row)

    def recall_history(self, gtin: str, lot_no: str) -> list[RecallRow]:
        """Every recall and lifting of a lot, oldest first."""
        with self._begin() as connection:
            rows = connection.execute(
                sa.select(t.recalls)
                .where(t.recalls.c.gtin == gtin, t.recalls.c.lot_no == lot_no)
                .order_by(t.recalls.c.recall_id)
            ).all()
        return [_recall_row(row) for row in rows]

    @staticmethod
    def set_aside_by(connection: Connection, recall_id: int) -> int:
        """Units in quarantine because of a recall: what it moved there, less what left."""
        value = connection.execute(
            sa.select(sa.func.coalesce(sa.func.sum(t.movements.c.quarantined_delta), 0)).where(
                t.movements.c.recall_id == recall_id
            )
        ).scalar()
        return int(value or 0)

    def active_recall(self, connection: Connection, gtin: str, lot_no: str) -> int | None:
        """The recall_id in force for a lot (None: not recalled)."""
        last = self._last_recall(connection, gtin, lot_no)
        return last.recall_id if last is not None and last.action == "recall" else None
