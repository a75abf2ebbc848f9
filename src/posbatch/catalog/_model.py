"""Products, lots and the in-memory catalog snapshot checkout works on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

__all__ = [
    "GS1_CSET82",
    "LOT_LENGTH_MAX",
    "NAME_LENGTH_MAX",
    "CatalogSnapshot",
    "ChangeSet",
    "Lot",
    "Product",
]

LOT_LENGTH_MAX = 20
"""GS1 AI (10) holds at most 20 characters."""
NAME_LENGTH_MAX = 200
GS1_CSET82 = frozenset(
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
"""GS1 character set 82: what a lot (10) or serial (21) may contain."""


@dataclass(frozen=True, slots=True)
class Product:
    """A product: GTIN-14, name, unit price in fen, whether each sale needs a lot."""

    gtin: str
    name: str
    price_fen: int
    lot_tracked: bool
    version: int = 0
    """Catalog version of the last change to this product."""
    quantity_on_hand: int = 0
    """Stock of a product without lots (a lot-tracked product's stock is in its lots).

    In an import: the opening stock of a product new to the store (ignored otherwise)."""
    trace_prefix: str | None = None
    """The 7-digit 药品标识码 that starts each drug traceability code of this product."""
    quarantined: int = 0
    """Units of a product without lots set aside (returned damaged): never sold."""


@dataclass(frozen=True, slots=True)
class Lot:
    """A lot (商品批次) of a product: expiry (None: does not expire), stock, recall flag."""

    gtin: str
    lot_no: str
    expiry: dt.date | None
    quantity_on_hand: int
    recalled: bool
    version: int = 0
    """Catalog version of the last change to this lot (stock changes count)."""
    quarantined: int = 0
    """Units set aside (a recalled lot's stock, returns of it): never sold."""

    def is_expired(self, today: dt.date) -> bool:
        """A lot may be sold up to and including its expiry date."""
        return self.expiry is not None and self.expiry < today

    def is_sellable(self, today: dt.date) -> bool:
        return not self.recalled and not self.is_expired(today) and self.quantity_on_hand > 0

    def fefo_key(self) -> tuple[dt.date, str]:
        """First-expiry-first-out order; lots that do not expire come last."""
        return (self.expiry or dt.date.max, self.lot_no)


@dataclass(frozen=True)
class CatalogSnapshot:
    """An immutable copy of the catalog at ``version``, as checkout sees it.

    ``synced_at`` is when a terminal's copy was last brought up to date with
    the back office (None for the back office's own store, which is never stale).
    """

    products: Mapping[str, Product]
    lots: Mapping[str, Mapping[str, Lot]]
    version: int
    synced_at: dt.datetime | None = None
    _fefo: dict[str, tuple[Lot, ...]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        products: Iterable[Product],
        lots: Iterable[Lot],
        *,
        version: int,
        synced_at: dt.datetime | None = None,
    ) -> CatalogSnapshot:
        by_gtin: dict[str, dict[str, Lot]] = {}
        for lot in lots:
            by_gtin.setdefault(lot.gtin, {})[lot.lot_no] = lot
        return cls(
            products={product.gtin: product for product in products},
            lots=by_gtin,
            version=version,
            synced_at=synced_at,
        )

    def product(self, gtin: str) -> Product | None:
        return self.products.get(gtin)

    def lot(self, gtin: str, lot_no: str) -> Lot | None:
        lots = self.lots.get(gtin)
        return None if lots is None else lots.get(lot_no)

    @cached_property
    def _trace_prefixes(self) -> dict[str, Product]:
        return {
            product.trace_prefix: product
            for product in self.products.values()
            if product.trace_prefix
        }

    def product_for_trace_prefix(self, prefix: str) -> Product | None:
        """The product whose drug traceability codes start with ``prefix`` (7 digits)."""
        return self._trace_prefixes.get(prefix)

    def is_known_lot(self, gtin: str, lot_no: str) -> bool:
        """For :meth:`Scan.resolve`: does this product have this lot?"""
        return self.lot(gtin, lot_no) is not None

    def lots_fefo(self, gtin: str) -> tuple[Lot, ...]:
        """Every lot of ``gtin``, first expiry first."""
        cached = self._fefo.get(gtin)
        if cached is None:
            cached = tuple(sorted(self.lots.get(gtin, {}).values(), key=Lot.fefo_key))
            self._fefo[gtin] = cached
        return cached


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Products and lots changed after ``since_version``, up to ``head_version``."""

    since_version: int
    head_version: int
    products: tuple[Product, ...]
    lots: tuple[Lot, ...]
    store_id: str | None = None
    """The back office the changes come from: a till refuses another's."""
