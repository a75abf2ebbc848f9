"""A till: the cart being built at one checkout, over one catalog snapshot.

The interactive ``posbatch checkout`` is a prompt loop over this class; all
decisions (reading scans, resolving ambiguous ones, refusing lines, FEFO
splits, noticing catalog changes before paying) are made here or below.
A line is only added when the whole cart, with it, passes :func:`price_cart`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from posbatch.catalog._checkout import (
    DEFAULT_MAX_CATALOG_AGE,
    DEFAULT_NEAR_EXPIRY_DAYS,
    Cart,
    CatalogChange,
    LineRequest,
    OrderBook,
    Payer,
    Receipt,
    catalog_changes,
    fefo_line,
    manual_line,
    pay_cart,
    price_cart,
)
from posbatch.catalog._model import CatalogSnapshot
from posbatch.catalog._scan import DEFAULT_SEPARATORS, ScanReading, parse_scan
from posbatch.errors import CatalogError, CheckoutRefused

__all__ = ["Till"]


class Till:
    """The cart of one checkout. ``today``/``now`` are read from ``clock`` (passed in)."""

    def __init__(
        self,
        snapshot: CatalogSnapshot,
        *,
        clock: Callable[[], dt.datetime],
        separators: Iterable[str] = DEFAULT_SEPARATORS,
        max_catalog_age: dt.timedelta = DEFAULT_MAX_CATALOG_AGE,
        near_expiry_days: int = DEFAULT_NEAR_EXPIRY_DAYS,
    ) -> None:
        self.snapshot = snapshot
        self._clock = clock
        self._separators = tuple(separators)
        self._max_catalog_age = max_catalog_age
        self._near_expiry_days = near_expiry_days
        self.requests: list[LineRequest] = []

    def _today(self) -> dt.date:
        return self._clock().date()

    def read(self, raw: str) -> tuple[ScanReading, str]:
        """What a scan reads as, an ambiguous one resolved by the lots this catalog knows.

        A drug traceability code (药品追溯码) reads as the product whose
        ``trace_prefix`` its first 7 digits are, without a lot (the code
        carries none: the cashier scans or types it, or takes FEFO).
        """
        scan = parse_scan(raw, today=self._today(), separators=self._separators)
        code = scan.trace_code
        if code is None:
            return scan.resolve(self.snapshot.is_known_lot), scan.raw
        product = self.snapshot.product_for_trace_prefix(code.prefix)
        if product is None:
            raise CheckoutRefused(
                f"drug traceability code {code.code}: no product in the catalog has the drug "
                f"identification code {code.prefix} (set its trace_prefix, then sync)",
                reason_zh=f"追溯码 {code.code}：商品目录中没有药品标识码为 {code.prefix} 的商品"
                "（请维护 trace_prefix 并同步）",
            )
        reading = ScanReading(product.gtin, None, None, None, None, (), trace_code=code.code)
        return reading, scan.raw

    def request_for(self, raw: str, *, quantity: int | None = None) -> LineRequest:
        """The line a scan asks for (not yet checked against the catalog)."""
        reading, kept = self.read(raw)
        return LineRequest.from_scan(reading, raw=kept, quantity=quantity)

    def price(self, requests: Iterable[LineRequest]) -> Cart:
        now = self._clock()
        return price_cart(
            self.snapshot,
            list(requests),
            today=now.date(),
            now=now,
            max_catalog_age=self._max_catalog_age,
            near_expiry_days=self._near_expiry_days,
        )

    def cart(self) -> Cart:
        return self.price(self.requests)

    def add(self, request: LineRequest) -> Cart:
        """Add a line if the cart with it can be sold; else CheckoutRefused and no change."""
        cart = self.price([*self.requests, request])
        self.requests.append(request)
        return cart

    def add_scan(self, raw: str, *, quantity: int | None = None) -> Cart:
        return self.add(self.request_for(raw, quantity=quantity))

    def add_manual(
        self,
        gtin: str,
        quantity: int,
        lot_no: str,
        lot_no_again: str,
        *,
        base: LineRequest | None = None,
    ) -> Cart:
        """A line whose lot was typed twice; ``base``: the scanned line it completes."""
        return self.add(manual_line(gtin, quantity, lot_no, lot_no_again, base=base))

    def add_fefo(self, gtin: str, quantity: int, *, base: LineRequest | None = None) -> Cart:
        """A line from the first-expiring lots; ``base``: the scanned line it completes."""
        request = fefo_line(
            self.snapshot, gtin, quantity, today=self._today(), cart=self.requests, base=base
        )
        return self.add(request)

    def remove(self, line_no: int) -> LineRequest:
        """Drop line ``line_no`` (1-based)."""
        if not 1 <= line_no <= len(self.requests):
            raise CatalogError(f"there is no line {line_no} (the cart has {len(self.requests)})")
        return self.requests.pop(line_no - 1)

    def refresh(self, snapshot: CatalogSnapshot) -> list[CatalogChange]:
        """Move to a newer snapshot; returns what changed for this cart (empty: nothing)."""
        changes = catalog_changes(self.cart(), snapshot, today=self._today())
        self.snapshot = snapshot
        return changes

    def pay(
        self,
        *,
        payer: Payer,
        orders: OrderBook,
        terminal_id: str,
        fresh_snapshot: CatalogSnapshot | None = None,
    ) -> Receipt:
        """Pay the cart; on success the till is empty for the next customer."""
        receipt = pay_cart(
            self.cart(),
            payer=payer,
            orders=orders,
            terminal_id=terminal_id,
            clock=self._clock,
            today=self._today(),
            fresh_snapshot=fresh_snapshot,
        )
        self.requests.clear()
        return receipt
