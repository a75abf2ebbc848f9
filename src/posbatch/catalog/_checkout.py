"""Checkout: cart lines checked against a catalog snapshot, then paid. No I/O of its own.

Theory of operation
-------------------
A cashier builds a cart of :class:`LineRequest` s: a product (GTIN), a quantity
and — for a lot-tracked product — the lot(s) it is taken from. A lot comes
from a scan, from manual entry (typed twice: :func:`manual_line`), or from a
first-expiry-first-out suggestion (:func:`fefo_line`), which may spread one
line over several lots.

:func:`price_cart` checks every line against a :class:`CatalogSnapshot` and
``today`` (both passed in) and refuses with :class:`CheckoutRefused` — reason
in Chinese and English, plus the lot to use instead — when a product is
unknown, a lot-tracked product has no lot, a lot is unknown for that product,
expired (a lot is sellable up to and including its expiry date; the expiry
printed in a scanned barcode is checked as well as the catalog's), recalled,
or has less stock than the cart takes from it (summed over all lines); when a
unit scanned by its serial (21) or its drug traceability code is already in
the cart, or such a line is for more than one unit. A cart carries warnings
(zh + en) when priced on a terminal copy older than ``max_catalog_age``, when
a lot expires within ``near_expiry_days``, when a barcode's printed expiry
differs from the catalog's for that lot, and when a product without lots has
less stock than the cart takes (it is sold: the count is what is wrong).

:func:`pay_cart` turns the cart total into a sale through a :class:`Payer`
and records the order in an :class:`OrderBook`, in this order:

1. if a fresh snapshot is at hand, compare every product and lot of the cart
   by version; a price or lot change since the scan refuses the payment
   (:class:`CatalogChanged`) so the cashier sees it and prices again;
2. the order is written *pending* (durable) with its lines and lots;
3. the payer charges the total (the receipt number goes along as the
   terminal journal's reference); the order records STAN and batch_no;
4. approved → the order is completed and its sale movements written, in one
   transaction; declined or no answer → the order is closed unpaid.

If the process dies between 3 and 4 the order stays *pending*: it still shows
in a recall trace, ``posbatch catalog pending`` lists it, and the terminal
journal (which wrote the sale before sending it, with the receipt number as
its reference) tells ``recover_pending_orders`` how to finish it. Nothing is
decremented for money not taken. Returns follow the same order of writes
(``_returns``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from posbatch.batch.model import beijing
from posbatch.batch.money import format_fen
from posbatch.catalog._model import CatalogSnapshot, Lot, Product
from posbatch.catalog._scan import ScanReading
from posbatch.catalog._trace_code import TRACE_PREFIX_DIGITS
from posbatch.errors import CatalogChanged, CheckoutRefused, ConfigError, Declined, HostUnreachable

__all__ = [
    "CART_LINES_MAX",
    "CATALOG_AGE_MINUTES_MAX",
    "DEFAULT_MAX_CATALOG_AGE",
    "DEFAULT_NEAR_EXPIRY_DAYS",
    "LINE_QUANTITY_MAX",
    "NEAR_EXPIRY_DAYS_MAX",
    "SCAN_RAW_STORED_MAX",
    "Cart",
    "CartLine",
    "CatalogChange",
    "CatalogChanged",
    "CheckoutWarning",
    "LineRequest",
    "LineTake",
    "LotSource",
    "LotTake",
    "OpenOrder",
    "OrderBook",
    "OrderDraft",
    "OrderLine",
    "Payer",
    "Payment",
    "Receipt",
    "catalog_changes",
    "fefo_line",
    "format_fen",
    "manual_line",
    "pay_cart",
    "plural",
    "price_cart",
    "render_receipt",
]

LINE_QUANTITY_MAX = 9_999
CART_LINES_MAX = 200
DEFAULT_MAX_CATALOG_AGE = dt.timedelta(hours=24)
CATALOG_AGE_MINUTES_MAX = 527_040
"""The longest ``--max-catalog-age-min`` (a leap year): older than that a copy is stale."""
DEFAULT_NEAR_EXPIRY_DAYS = 30
"""A lot expiring within this many days is sold with a warning (``--near-expiry-days``)."""
NEAR_EXPIRY_DAYS_MAX = 3_660
SCAN_RAW_STORED_MAX = 512
"""An order line keeps at most this much of the raw scan (the parser reads no more)."""


class LotSource(StrEnum):
    """Where a line's lot came from (kept on the order for the audit)."""

    SCAN = "scan"
    MANUAL = "manual"
    FEFO = "fefo"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class LotTake:
    """``quantity`` units taken from lot ``lot_no``."""

    lot_no: str
    quantity: int


@dataclass(frozen=True, slots=True)
class LineRequest:
    """What the cashier asked for: a product, a quantity, and the lot(s) it comes from."""

    gtin: str
    quantity: int
    lots: tuple[LotTake, ...] = ()
    source: LotSource = LotSource.NONE
    scan_raw: str | None = None
    expiry_scanned: dt.date | None = None
    """The expiry (17, else 15) printed in the scanned barcode, if any: checked too."""
    serial: str | None = None
    """The unit's GS1 serial (21): the line is that one unit."""
    trace_code: str | None = None
    """The pack's drug traceability code (药品追溯码): the line is that one pack."""

    @classmethod
    def from_scan(
        cls, reading: ScanReading, *, raw: str, quantity: int | None = None
    ) -> LineRequest:
        """A line for a scanned item: quantity from the scan's count (30/37), else 1."""
        count = quantity if quantity is not None else (reading.quantity or 1)
        takes = () if reading.lot is None else (LotTake(reading.lot, count),)
        return cls(
            reading.gtin,
            count,
            takes,
            LotSource.NONE if reading.lot is None else LotSource.SCAN,
            raw,
            reading.expiry,
            reading.serial,
            reading.trace_code,
        )

    def with_lots(self, lots: tuple[LotTake, ...], source: LotSource) -> LineRequest:
        """This line (its scan, serial, traceability code) taking its units from ``lots``."""
        return replace(self, lots=lots, source=source)

    @property
    def unit_code(self) -> tuple[str, str] | None:
        """("serial" or "trace", code) when the line is one identified unit."""
        if self.trace_code is not None:
            return ("trace", self.trace_code)
        if self.serial is not None:
            return ("serial", self.serial)
        return None


@dataclass(frozen=True, slots=True)
class LineTake:
    lot: Lot
    quantity: int


@dataclass(frozen=True, slots=True)
class CartLine:
    """A checked line: the product and lots as the snapshot had them, and the amount."""

    product: Product
    quantity: int
    takes: tuple[LineTake, ...]
    source: LotSource
    scan_raw: str | None
    serial: str | None = None
    trace_code: str | None = None
    expiry_scanned: dt.date | None = None

    @property
    def amount_fen(self) -> int:
        return self.product.price_fen * self.quantity


@dataclass(frozen=True, slots=True)
class CheckoutWarning:
    code: str
    message_en: str
    message_zh: str


@dataclass(frozen=True, slots=True)
class Cart:
    lines: tuple[CartLine, ...]
    catalog_version: int
    warnings: tuple[CheckoutWarning, ...] = ()

    @property
    def total_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines)


# --- refusals ------------------------------------------------------------------


def _refuse(en: str, zh: str, suggestion: _Suggestion | None = None) -> CheckoutRefused:
    if suggestion is None:
        return CheckoutRefused(en, reason_zh=zh)
    return CheckoutRefused(
        f"{en}; {suggestion.en}", reason_zh=f"{zh}；{suggestion.zh}", suggestion=suggestion.lots
    )


@dataclass(frozen=True, slots=True)
class _Suggestion:
    en: str
    zh: str
    lots: str | None


def _expiry_text(lot: Lot) -> str:
    return lot.expiry.isoformat() if lot.expiry else "no expiry"


def _fefo_allocation(
    snapshot: CatalogSnapshot,
    gtin: str,
    quantity: int,
    today: dt.date,
    *,
    used: Mapping[tuple[str, str], int],
    exclude: str | None = None,
) -> tuple[list[tuple[Lot, int]], int]:
    """Lots to take ``quantity`` from, first expiry first; and how many could not be found."""
    allocation: list[tuple[Lot, int]] = []
    missing = quantity
    for lot in snapshot.lots_fefo(gtin):
        if missing == 0:
            break
        if lot.lot_no == exclude or not lot.is_sellable(today):
            continue
        available = lot.quantity_on_hand - used.get((gtin, lot.lot_no), 0)
        if available <= 0:
            continue
        take = min(available, missing)
        allocation.append((lot, take))
        missing -= take
    return allocation, missing


def _suggest(
    snapshot: CatalogSnapshot,
    product: Product,
    quantity: int,
    today: dt.date,
    *,
    used: Mapping[tuple[str, str], int],
    exclude: str | None = None,
) -> _Suggestion:
    allocation, missing = _fefo_allocation(
        snapshot, product.gtin, quantity, today, used=used, exclude=exclude
    )
    if not allocation:
        return _Suggestion(
            f"no lot of {product.name} can be sold "
            "(none in stock that is unexpired and not recalled)",
            f"{product.name} 没有可销售的批次（无未过期、未召回且有库存的批次）",
            None,
        )
    if len(allocation) == 1 and missing == 0:
        lot, _ = allocation[0]
        return _Suggestion(
            f"use lot {lot.lot_no} (expires {_expiry_text(lot)}, {lot.quantity_on_hand} in stock)",
            f"请使用批次 {lot.lot_no}（有效期至 {_expiry_text(lot)}，库存 {lot.quantity_on_hand}）",
            lot.lot_no,
        )
    parts_en = " + ".join(f"lot {lot.lot_no} x{take}" for lot, take in allocation)
    parts_zh = " + ".join(f"批次 {lot.lot_no} ×{take}" for lot, take in allocation)
    lots = ", ".join(f"{lot.lot_no} x{take}" for lot, take in allocation)
    if missing:
        return _Suggestion(
            f"only {quantity - missing} can be sold: {parts_en}",
            f"最多可售 {quantity - missing}：{parts_zh}",
            lots,
        )
    return _Suggestion(f"split the line: {parts_en}", f"请拆分为：{parts_zh}", lots)


# --- building lines ------------------------------------------------------------


def manual_line(
    gtin: str, quantity: int, lot_no: str, lot_no_again: str, *, base: LineRequest | None = None
) -> LineRequest:
    """A line whose lot was typed by hand, twice; refused when the two entries differ.

    ``base``: the scanned line this lot completes (its serial, traceability code, scan).
    """
    first, second = lot_no.strip(), lot_no_again.strip()
    if first != second:
        raise _refuse(
            f"the lot was typed differently twice: {first!r} then {second!r}; type it again",
            f"两次输入的批次号不一致：{first} / {second}，请重新输入",
        )
    if not first:
        raise _refuse("no lot was typed", "未输入批次号")
    takes = (LotTake(first, quantity),)
    if base is not None:
        return replace(base, quantity=quantity).with_lots(takes, LotSource.MANUAL)
    return LineRequest(gtin, quantity, takes, LotSource.MANUAL)


def fefo_line(
    snapshot: CatalogSnapshot,
    gtin: str,
    quantity: int,
    *,
    today: dt.date,
    cart: Iterable[LineRequest] = (),
    base: LineRequest | None = None,
) -> LineRequest:
    """A line taking ``quantity`` from the first-expiring sellable lots (several if needed).

    Stock already taken by ``cart`` is not offered again. Refused when the
    sellable stock is short. ``base``: the scanned line it completes.
    """
    product = _product_or_refuse(snapshot, gtin)
    _check_quantity(quantity)
    used = _used_by(cart)
    allocation, missing = _fefo_allocation(snapshot, gtin, quantity, today, used=used)
    if missing:
        suggestion = _suggest(snapshot, product, quantity, today, used=used)
        raise _refuse(
            f"not enough sellable stock of {product.name}: {quantity} asked",
            f"{product.name} 可售库存不足：需要 {quantity}",
            suggestion,
        )
    takes = tuple(LotTake(lot.lot_no, take) for lot, take in allocation)
    if base is not None:
        return replace(base, quantity=quantity).with_lots(takes, LotSource.FEFO)
    return LineRequest(gtin, quantity, takes, LotSource.FEFO)


def _used_by(requests: Iterable[LineRequest]) -> dict[tuple[str, str], int]:
    used: dict[tuple[str, str], int] = {}
    for request in requests:
        for take in request.lots:
            key = (request.gtin, take.lot_no)
            used[key] = used.get(key, 0) + take.quantity
    return used


def _product_or_refuse(snapshot: CatalogSnapshot, gtin: str) -> Product:
    product = snapshot.product(gtin)
    if product is None:
        raise _refuse(
            f"unknown product {gtin}: not in the catalog (sync the catalog?)",
            f"商品 {gtin} 不在商品目录中（请同步商品目录）",
        )
    return product


def _check_quantity(quantity: int) -> None:
    if not 1 <= quantity <= LINE_QUANTITY_MAX:
        raise _refuse(
            f"quantity {quantity} is not between 1 and {LINE_QUANTITY_MAX}",
            f"数量 {quantity} 不在 1 到 {LINE_QUANTITY_MAX} 之间",
        )


# --- pricing -------------------------------------------------------------------


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 minute``, ``2 minutes``: a count with its noun in the right number (English)."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def price_cart(
    snapshot: CatalogSnapshot,
    requests: Iterable[LineRequest],
    *,
    today: dt.date,
    now: dt.datetime,
    max_catalog_age: dt.timedelta = DEFAULT_MAX_CATALOG_AGE,
    near_expiry_days: int = DEFAULT_NEAR_EXPIRY_DAYS,
) -> Cart:
    """Check every line and price the cart, or refuse the first line that must not be sold."""
    if not 0 <= near_expiry_days <= NEAR_EXPIRY_DAYS_MAX:
        raise ConfigError(f"near-expiry days {near_expiry_days} is not 0..{NEAR_EXPIRY_DAYS_MAX}")
    lines: list[CartLine] = []
    used: dict[tuple[str, str], int] = {}
    units: set[tuple[str, str, str]] = set()
    for request in requests:
        if len(lines) >= CART_LINES_MAX:
            raise _refuse(
                f"a cart holds at most {CART_LINES_MAX} lines",
                f"一单最多 {CART_LINES_MAX} 行",
            )
        line = _check_line(snapshot, request, today, used)
        _check_unit(line, units)
        lines.append(line)
    warnings: list[CheckoutWarning] = []
    if snapshot.synced_at is not None and now - snapshot.synced_at > max_catalog_age:
        age_min = int((now - snapshot.synced_at).total_seconds() // 60)
        limit_min = int(max_catalog_age.total_seconds() // 60)
        warnings.append(
            CheckoutWarning(
                "stale_catalog",
                f"the catalog on this terminal was last synced {plural(age_min, 'minute')} ago "
                f"(limit {plural(limit_min, 'minute')}): prices and lots may be out of date",
                f"本机商品目录已 {age_min} 分钟未同步（上限 {limit_min} 分钟），"
                "价格和批次可能已过时",
            )
        )
    warnings.extend(_line_warnings(snapshot, lines, today, near_expiry_days))
    return Cart(tuple(lines), snapshot.version, tuple(warnings))


def _check_unit(line: CartLine, units: set[tuple[str, str, str]]) -> None:
    """A serial or a traceability code names one unit: once per cart, quantity 1."""
    code = (
        ("trace", "", line.trace_code)
        if line.trace_code is not None
        else ("serial", line.product.gtin, line.serial)
        if line.serial is not None
        else None
    )
    if code is None:
        return
    kind, _, value = code
    product = line.product
    what_en = "drug traceability code" if kind == "trace" else "serial"
    what_zh = "药品追溯码" if kind == "trace" else "序列号"
    if line.quantity != 1:
        raise _refuse(
            f"{what_en} {value} names one pack of {product.name}: the line is for 1, not "
            f"{line.quantity}; scan each pack",
            f"{what_zh} {value} 只对应一件 {product.name}，数量应为 1（现为 {line.quantity}）："
            "请逐件扫码",
        )
    if code in units:
        raise _refuse(
            f"{what_en} {value} of {product.name} is already in the cart: each pack is "
            "scanned once",
            f"{product.name} 的{what_zh} {value} 已在购物车中：每件只扫一次",
        )
    units.add(code)


def _line_warnings(
    snapshot: CatalogSnapshot, lines: list[CartLine], today: dt.date, near_expiry_days: int
) -> list[CheckoutWarning]:
    """Near expiry, a barcode's expiry unlike the catalog's, a product without lots short."""
    warnings: list[CheckoutWarning] = []
    seen: set[tuple[str, str]] = set()
    taken: dict[str, int] = {}
    for line in lines:
        product = line.product
        if not line.takes:
            taken[product.gtin] = taken.get(product.gtin, 0) + line.quantity
        for take in line.takes:
            lot = take.lot
            if (
                line.expiry_scanned is not None
                and lot.expiry is not None
                and line.expiry_scanned != lot.expiry
            ):
                printed, listed = line.expiry_scanned.isoformat(), lot.expiry.isoformat()
                warnings.append(
                    CheckoutWarning(
                        "expiry_mismatch",
                        f"the barcode of {product.name} lot {lot.lot_no} says it expires "
                        f"{printed}, the catalog says {listed}: check the pack",
                        f"{product.name} 批次 {lot.lot_no} 条码有效期 {printed} 与商品目录 "
                        f"{listed} 不符：请核对包装",
                    )
                )
            key = (product.gtin, lot.lot_no)
            if key in seen or lot.expiry is None:
                continue
            seen.add(key)
            days = (lot.expiry - today).days
            if 0 <= days <= near_expiry_days:
                when_en = "today" if days == 0 else f"in {plural(days, 'day')}"
                when_zh = "今天到期" if days == 0 else f"还有 {days} 天到期"
                warnings.append(
                    CheckoutWarning(
                        "near_expiry",
                        f"lot {lot.lot_no} of {product.name} expires on "
                        f"{lot.expiry.isoformat()}, {when_en}",
                        f"{product.name} 批次 {lot.lot_no} 有效期至 {lot.expiry.isoformat()}，"
                        f"{when_zh}",
                    )
                )
    for gtin, quantity in taken.items():
        product = snapshot.products[gtin]
        if product.lot_tracked or quantity <= product.quantity_on_hand:
            continue
        warnings.append(
            CheckoutWarning(
                "stock_short",
                f"the catalog shows {product.quantity_on_hand} of {product.name} in stock, "
                f"the cart takes {quantity}: it is sold, count the stock",
                f"{product.name} 账面库存 {product.quantity_on_hand}，本单 {quantity}："
                "照常销售，请盘点库存",
            )
        )
    return warnings


def _check_line(
    snapshot: CatalogSnapshot,
    request: LineRequest,
    today: dt.date,
    used: dict[tuple[str, str], int],
) -> CartLine:
    product = _product_or_refuse(snapshot, request.gtin)
    _check_quantity(request.quantity)
    name = f"{product.name} ({product.gtin})"
    if request.expiry_scanned is not None and request.expiry_scanned < today:
        printed = request.expiry_scanned.isoformat()
        scanned_lot = request.lots[0].lot_no if request.lots else None
        raise _refuse(
            f"the barcode of {name} says it expired on {printed}",
            f"{product.name}（{product.gtin}）条码显示已于 {printed} 过期",
            _suggest(snapshot, product, request.quantity, today, used=used, exclude=scanned_lot)
            if product.lot_tracked
            else None,
        )
    if request.trace_code is not None:
        _check_trace_code(product, request.trace_code)
    if not product.lot_tracked:
        return _cart_line(product, request, ())  # a lot printed on its barcode is not stock
    if not request.lots:
        raise _refuse(
            f"{name} is lot-tracked: scan or type its lot",
            f"{product.name}（{product.gtin}）需要批次号：请扫描或输入批次号",
            _suggest(snapshot, product, request.quantity, today, used=used),
        )
    if sum(take.quantity for take in request.lots) != request.quantity:
        raise _refuse(
            f"the lots of {name} add up to {sum(t.quantity for t in request.lots)}, "
            f"not {request.quantity}",
            f"{product.name} 各批次数量之和与行数量 {request.quantity} 不符",
        )
    takes: list[LineTake] = []
    for take in request.lots:
        lot = snapshot.lot(product.gtin, take.lot_no)
        if lot is None:
            raise _refuse(
                f"lot {take.lot_no!r} is not a lot of {name}",
                f"批次号 {take.lot_no} 不属于商品 {product.name}（{product.gtin}）",
                _suggest(snapshot, product, take.quantity, today, used=used),
            )
        if lot.recalled:
            raise _refuse(
                f"lot {lot.lot_no} of {name} is recalled: do not sell it",
                f"{product.name} 的批次 {lot.lot_no} 已召回，禁止销售",
                _suggest(snapshot, product, take.quantity, today, used=used, exclude=lot.lot_no),
            )
        if lot.is_expired(today):
            raise _refuse(
                f"lot {lot.lot_no} of {name} expired on {_expiry_text(lot)}",
                f"{product.name} 的批次 {lot.lot_no} 已于 {_expiry_text(lot)} 过期",
                _suggest(snapshot, product, take.quantity, today, used=used, exclude=lot.lot_no),
            )
        key = (product.gtin, lot.lot_no)
        available = lot.quantity_on_hand - used.get(key, 0)
        if take.quantity > available:
            raise _refuse(
                f"only {max(available, 0)} of {name} lot {lot.lot_no} in stock, "
                f"{take.quantity} asked",
                f"{product.name} 批次 {lot.lot_no} 库存仅 {max(available, 0)}，"
                f"需要 {take.quantity}",
                _suggest(snapshot, product, take.quantity, today, used=used),
            )
        used[key] = used.get(key, 0) + take.quantity
        takes.append(LineTake(lot, take.quantity))
    return _cart_line(product, request, tuple(takes))


def _cart_line(product: Product, request: LineRequest, takes: tuple[LineTake, ...]) -> CartLine:
    return CartLine(
        product,
        request.quantity,
        takes,
        request.source,
        request.scan_raw,
        request.serial,
        request.trace_code,
        request.expiry_scanned,
    )


def _check_trace_code(product: Product, code: str) -> None:
    """The code's 7-digit drug identification code must be this product's."""
    prefix = code[:TRACE_PREFIX_DIGITS]
    if product.trace_prefix is None:
        raise _refuse(
            f"drug traceability code {code} cannot be checked: the catalog has no drug "
            f"identification code (trace_prefix) for {product.name} ({product.gtin})",
            f"商品目录中 {product.name}（{product.gtin}）没有药品标识码（追溯码前 7 位），"
            f"无法核对追溯码 {code}",
        )
    if product.trace_prefix != prefix:
        raise _refuse(
            f"drug traceability code {code} is of another medicine (identification code "
            f"{prefix}), not of {product.name} ({product.trace_prefix})",
            f"追溯码 {code} 的药品标识码 {prefix} 不是 {product.name} 的（{product.trace_prefix}）",
        )


# --- changes between scan and payment ------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogChange:
    gtin: str
    lot_no: str | None
    message_en: str
    message_zh: str


def catalog_changes(cart: Cart, fresh: CatalogSnapshot, *, today: dt.date) -> list[CatalogChange]:
    """What changed for this cart's products and lots between its snapshot and ``fresh``.

    Versions are compared first; only a changed item is looked at. A change
    that does not matter to the sale (stock still enough) is not reported.
    """
    changes: list[CatalogChange] = []
    needed: dict[tuple[str, str], int] = {}
    for line in cart.lines:
        for take in line.takes:
            key = (line.product.gtin, take.lot.lot_no)
            needed[key] = needed.get(key, 0) + take.quantity
    seen: set[tuple[str, str | None]] = set()
    for line in cart.lines:
        old = line.product
        new = fresh.product(old.gtin)
        if (old.gtin, None) not in seen:
            seen.add((old.gtin, None))
            if new is None:
                changes.append(
                    CatalogChange(
                        old.gtin,
                        None,
                        f"{old.name} was removed from the catalog",
                        f"{old.name} 已从商品目录删除",
                    )
                )
                continue
            if new.version != old.version and new.price_fen != old.price_fen:
                changes.append(
                    CatalogChange(
                        old.gtin,
                        None,
                        f"price of {old.name} is now {format_fen(new.price_fen)} "
                        f"(was {format_fen(old.price_fen)})",
                        f"{old.name} 价格已改为 {format_fen(new.price_fen)}"
                        f"（原 {format_fen(old.price_fen)}）",
                    )
                )
        for take in line.takes:
            key = (old.gtin, take.lot.lot_no)
            if key in seen:
                continue
            seen.add(key)
            lot = fresh.lot(*key)
            if lot is not None and lot.version == take.lot.version:
                continue
            change = _lot_change(old, take.lot, lot, needed[key], today)
            if change is not None:
                changes.append(change)
    return changes


def _lot_change(
    product: Product, old: Lot, new: Lot | None, needed: int, today: dt.date
) -> CatalogChange | None:
    lot_no = old.lot_no
    if new is None:
        return CatalogChange(
            product.gtin,
            lot_no,
            f"lot {lot_no} of {product.name} is gone",
            f"{product.name} 的批次 {lot_no} 已不存在",
        )
    if new.recalled and not old.recalled:
        return CatalogChange(
            product.gtin,
            lot_no,
            f"lot {lot_no} of {product.name} was recalled",
            f"{product.name} 的批次 {lot_no} 已被召回",
        )
    if new.is_expired(today):
        return CatalogChange(
            product.gtin,
            lot_no,
            f"lot {lot_no} of {product.name} now expires {_expiry_text(new)}",
            f"{product.name} 的批次 {lot_no} 有效期已改为 {_expiry_text(new)}",
        )
    if new.quantity_on_hand < needed:
        return CatalogChange(
            product.gtin,
            lot_no,
            f"only {new.quantity_on_hand} of {product.name} lot {lot_no} left in stock",
            f"{product.name} 批次 {lot_no} 库存仅剩 {new.quantity_on_hand}",
        )
    return None


# --- paying ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Payment:
    """What the card payment came to (from the terminal engine)."""

    approved: bool
    response_code: str
    stan: str | None
    batch_no: str | None
    rrn: str | None = None
    auth_code: str | None = None


class Payer(Protocol):
    """Charges an amount: the terminal engine in production (see ``TerminalPayer``)."""

    def pay(self, amount_fen: int, *, reference: str) -> Payment:
        """Charge ``amount_fen`` for order ``reference`` (its receipt number).

        A decline is ``approved=False``; no answer raises HostUnreachable.
        """
        ...


@dataclass(frozen=True, slots=True)
class OpenOrder:
    order_id: int
    receipt_no: str


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One stored order line: a line of the cart and one of its lots (None: no lot)."""

    line_no: int
    gtin: str
    product_name: str
    price_fen: int
    lot_no: str | None
    quantity: int
    lot_source: str
    scan_raw: str | None
    serial: str | None = None
    trace_code: str | None = None
    expiry_scanned: dt.date | None = None


@dataclass(frozen=True, slots=True)
class OrderDraft:
    """What an order stores of a cart: lines split per lot, total, catalog version."""

    catalog_version: int
    lines: tuple[OrderLine, ...]

    @property
    def total_fen(self) -> int:
        return sum(line.price_fen * line.quantity for line in self.lines)

    @classmethod
    def of(cls, cart: Cart) -> OrderDraft:
        lines: list[OrderLine] = []
        for line_no, line in enumerate(cart.lines, start=1):
            product = line.product
            takes: list[tuple[str | None, int]] = [
                (take.lot.lot_no, take.quantity) for take in line.takes
            ] or [(None, line.quantity)]
            lines.extend(
                OrderLine(
                    line_no,
                    product.gtin,
                    product.name,
                    product.price_fen,
                    lot_no,
                    quantity,
                    str(line.source),
                    line.scan_raw[:SCAN_RAW_STORED_MAX] if line.scan_raw else None,
                    line.serial,
                    line.trace_code,
                    line.expiry_scanned,
                )
                for lot_no, quantity in takes
            )
        return cls(cart.catalog_version, tuple(lines))


class OrderBook(Protocol):
    """Where orders are written (``CatalogStore`` in the back office)."""

    def open_order(self, cart: Cart, *, terminal_id: str, opened_at: dt.datetime) -> OpenOrder:
        """Write the order as pending, durably, and give it a receipt number."""
        ...

    def complete_order(self, order_id: int, payment: Payment, *, closed_at: dt.datetime) -> None:
        """Record the approved payment and decrement stock, in one transaction."""
        ...

    def close_unpaid(
        self, order_id: int, *, payment: Payment | None, note: str, closed_at: dt.datetime
    ) -> None:
        """Close an order whose payment was declined or not answered."""
        ...


@dataclass(frozen=True, slots=True)
class Receipt:
    receipt_no: str
    order_id: int
    terminal_id: str
    cart: Cart
    payment: Payment
    paid_at: dt.datetime


def pay_cart(
    cart: Cart,
    *,
    payer: Payer,
    orders: OrderBook,
    terminal_id: str,
    clock: Callable[[], dt.datetime],
    today: dt.date,
    fresh_snapshot: CatalogSnapshot | None = None,
) -> Receipt:
    """Charge the cart total and record the order (see the theory of operation above).

    Raises :class:`CatalogChanged` before charging anything if ``fresh_snapshot``
    shows a price or lot change; :class:`Declined` when the card is declined and
    :class:`HostUnreachable` when the host did not answer (the order is closed
    unpaid). Any other error leaves the order pending: the payer may or may not
    have charged the card, so only the terminal journal can tell
    (:func:`posbatch.catalog.payer.recover_pending_orders`).
    """
    if not cart.lines:
        raise _refuse("the cart is empty", "购物车为空")
    if fresh_snapshot is not None:
        changes = catalog_changes(cart, fresh_snapshot, today=today)
        if changes:
            raise CatalogChanged(changes)
    order = orders.open_order(cart, terminal_id=terminal_id, opened_at=clock())
    try:
        payment = payer.pay(cart.total_fen, reference=order.receipt_no)
    except HostUnreachable:
        orders.close_unpaid(
            order.order_id,
            payment=None,
            note="no answer from the host; the terminal reverses the sale",
            closed_at=clock(),
        )
        raise
    except Declined as exc:
        orders.close_unpaid(
            order.order_id,
            payment=None,
            note=f"declined with response code {exc.response_code}",
            closed_at=clock(),
        )
        raise
    if not payment.approved:
        orders.close_unpaid(
            order.order_id,
            payment=payment,
            note=f"declined with response code {payment.response_code}",
            closed_at=clock(),
        )
        raise Declined(
            f"payment of {format_fen(cart.total_fen)} declined (response code "
            f"{payment.response_code}); receipt {order.receipt_no} not paid",
            response_code=payment.response_code,
        )
    paid_at = clock()
    orders.complete_order(order.order_id, payment, closed_at=paid_at)
    return Receipt(order.receipt_no, order.order_id, terminal_id, cart, payment, paid_at)


def render_receipt(receipt: Receipt) -> list[str]:
    """The receipt as printed: lines with their lots, total, STAN and batch_no."""
    paid_at = beijing(receipt.paid_at)  # DESIGN.md: shown in Beijing time
    out = [
        f"收据 RECEIPT {receipt.receipt_no}",
        f"终端 terminal {receipt.terminal_id}   {paid_at:%Y-%m-%d %H:%M:%S}",
        "-" * 40,
    ]
    for line in receipt.cart.lines:
        product = line.product
        out.append(f"{product.name}")
        out.append(
            f"  {line.quantity} x {format_fen(product.price_fen)} = {format_fen(line.amount_fen)}"
        )
        for take in line.takes:
            out.append(
                f"  批次 lot {take.lot.lot_no} x{take.quantity}"
                f"  有效期 exp {_expiry_text(take.lot)}"
            )
        if line.serial is not None:
            out.append(f"  序列号 serial {line.serial}")
        if line.trace_code is not None:
            out.append(f"  追溯码 trace code {line.trace_code}")
    payment = receipt.payment
    out += [
        "-" * 40,
        f"合计 TOTAL  {format_fen(receipt.cart.total_fen)}",
        f"批次号 batch_no {payment.batch_no}   流水号 stan {payment.stan}",
        f"参考号 rrn {payment.rrn or '-'}   授权码 auth {payment.auth_code or '-'}",
        f"退货凭条码 returns: scan [{receipt.receipt_no}] (Code 128)",
    ]
    return out
