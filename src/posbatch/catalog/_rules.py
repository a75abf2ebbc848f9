"""What the back office refuses when an order is written. Pure: rows in, problems out.

A till checks its cart against its own copy of the catalog, which may be
stale (not synced since a recall) or not a till at all (anyone on the LAN
posting JSON). So the back office checks every line again, against the
catalog as it is when the order is written and the back office's own date,
and writes nothing if any line fails: a refused order was never charged
(orders are written before the card is).

Refused, each problem reported with its line (zh + en): an unknown product;
a price other than the catalog's; a lot-tracked product without a lot; a lot
that is not a lot of that product (a lot of another product is named); a
recalled lot; an expired lot; a lot with less stock on hand than the order
takes from it; a quantity outside 1..``LINE_QUANTITY_MAX``; a serial (21) or
a drug traceability code on a line of more than one unit, twice in the
order, or already sold and not returned (the receipt is named); a
traceability code of another medicine; a catalog version from the future.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from posbatch.catalog._checkout import LINE_QUANTITY_MAX, OrderDraft, OrderLine
from posbatch.catalog._model import Lot, Product
from posbatch.catalog._returns import readable_receipt_no
from posbatch.catalog._trace_code import TRACE_PREFIX_DIGITS, parse_trace_code
from posbatch.errors import CheckoutRefused, ScanError

__all__ = [
    "OrderProblem",
    "OrderRefused",
    "UnitKey",
    "line_units",
    "order_problems",
    "unit_keys",
]

UnitKey = tuple[str, str, str]
"""(kind "serial" or "trace", gtin ("" for a traceability code), code): one unit sold."""


@dataclass(frozen=True, slots=True)
class OrderProblem:
    line_no: int
    message_en: str
    message_zh: str


class OrderRefused(CheckoutRefused):
    """The back office refused to write an order; ``problems`` says which lines and why."""

    def __init__(self, problems: list[OrderProblem]) -> None:
        super().__init__(
            "the back office refused the order: "
            + "; ".join(f"line {p.line_no}: {p.message_en}" for p in problems),
            reason_zh="后台拒绝了此订单："
            + "；".join(f"第 {p.line_no} 行：{p.message_zh}" for p in problems),
        )
        self.problems = problems


def line_units(line: OrderLine) -> list[UnitKey]:
    """The units a stored line names: its traceability code, its serial."""
    keys: list[UnitKey] = []
    if line.trace_code is not None:
        keys.append(("trace", "", line.trace_code))
    if line.serial is not None:
        keys.append(("serial", line.gtin, line.serial))
    return keys


def unit_keys(draft: OrderDraft) -> list[tuple[int, UnitKey]]:
    """(line_no, unit) of every line of ``draft`` that names one unit."""
    return [(line.line_no, unit) for line in draft.lines for unit in line_units(line)]


def order_problems(
    draft: OrderDraft,
    *,
    products: Mapping[str, Product],
    lots: Mapping[tuple[str, str], Lot],
    lots_elsewhere: Mapping[str, list[str]],
    units_sold: Mapping[UnitKey, str],
    today: dt.date,
    head_version: int,
) -> list[OrderProblem]:
    """Every reason the back office has to refuse ``draft`` (empty: write it).

    ``lots``: the catalog's lots of the draft's products; ``lots_elsewhere``:
    lot_no → GTINs of other products having a lot so numbered; ``units_sold``:
    units of the draft already on another order → its receipt number.
    """
    problems: list[OrderProblem] = []

    def refuse(line_no: int, en: str, zh: str) -> None:
        problems.append(OrderProblem(line_no, en, zh))

    if draft.catalog_version > head_version:
        refuse(
            0,
            f"catalog version {draft.catalog_version} is newer than this back office's "
            f"({head_version}): the till follows another back office",
            f"商品目录版本 {draft.catalog_version} 高于后台（{head_version}）："
            "该收银台连接的不是本后台",
        )
    taken: dict[tuple[str, str], int] = {}
    for line in draft.lines:
        product = products.get(line.gtin)
        number = line.line_no
        if product is None:
            refuse(number, f"unknown product {line.gtin}", f"商品 {line.gtin} 不在商品目录中")
            continue
        name = f"{product.name} ({product.gtin})"
        if not 1 <= line.quantity <= LINE_QUANTITY_MAX:
            refuse(
                number,
                f"quantity {line.quantity} of {name} is not 1..{LINE_QUANTITY_MAX}",
                f"{product.name} 数量 {line.quantity} 不在 1 到 {LINE_QUANTITY_MAX} 之间",
            )
        if line.price_fen != product.price_fen:
            refuse(
                number,
                f"price {line.price_fen} fen of {name} is not the catalog's {product.price_fen}",
                f"{product.name} 单价 {line.price_fen} 分与商品目录 {product.price_fen} 分不符",
            )
        if (line.serial is not None or line.trace_code is not None) and line.quantity != 1:
            refuse(
                number,
                f"a serial or traceability code names one unit of {name}, not {line.quantity}",
                f"序列号或追溯码只对应一件 {product.name}，数量不能是 {line.quantity}",
            )
        if line.trace_code is not None:
            _check_trace(refuse, number, product, line.trace_code)
        if not product.lot_tracked:
            if line.lot_no is not None:
                refuse(
                    number,
                    f"{name} has no lots, but the line names lot {line.lot_no!r}",
                    f"{product.name} 不按批次管理，但该行有批次 {line.lot_no}",
                )
            continue
        if line.lot_no is None:
            refuse(
                number, f"{name} is lot-tracked: the line has no lot", f"{product.name} 缺少批次号"
            )
            continue
        lot = lots.get((product.gtin, line.lot_no))
        if lot is None:
            others = [gtin for gtin in lots_elsewhere.get(line.lot_no, []) if gtin != product.gtin]
            if others:
                refuse(
                    number,
                    f"lot {line.lot_no!r} is a lot of {', '.join(others)}, not of {name}",
                    f"批次 {line.lot_no} 属于 {'、'.join(others)}，不属于 {product.name}",
                )
            else:
                refuse(
                    number,
                    f"lot {line.lot_no!r} of {name} is unknown",
                    f"{product.name} 没有批次 {line.lot_no}",
                )
            continue
        if lot.recalled:
            refuse(
                number,
                f"lot {lot.lot_no} of {name} is recalled: do not sell it",
                f"{product.name} 批次 {lot.lot_no} 已召回，禁止销售",
            )
        if lot.is_expired(today):
            refuse(
                number,
                f"lot {lot.lot_no} of {name} expired on {lot.expiry}",
                f"{product.name} 批次 {lot.lot_no} 已于 {lot.expiry} 过期",
            )
        key = (product.gtin, lot.lot_no)
        taken[key] = taken.get(key, 0) + max(line.quantity, 0)
    for (gtin, lot_no), quantity in taken.items():
        lot = lots[gtin, lot_no]
        if quantity > lot.quantity_on_hand and not lot.recalled:
            number = next(
                line.line_no for line in draft.lines if (line.gtin, line.lot_no) == (gtin, lot_no)
            )
            name = products[gtin].name
            refuse(
                number,
                f"only {max(lot.quantity_on_hand, 0)} of {name} lot {lot_no} on hand, "
                f"the order takes {quantity}",
                f"{name} 批次 {lot_no} 库存仅 {max(lot.quantity_on_hand, 0)}，本单需要 {quantity}",
            )
    seen: dict[UnitKey, int] = {}
    for number, unit in unit_keys(draft):
        kind_en = "drug traceability code" if unit[0] == "trace" else "serial"
        kind_zh = "追溯码" if unit[0] == "trace" else "序列号"
        if unit in seen:
            refuse(
                number,
                f"{kind_en} {unit[2]} is also on line {seen[unit]}",
                f"{kind_zh} {unit[2]} 与第 {seen[unit]} 行重复",
            )
            continue
        seen[unit] = number
        sold = units_sold.get(unit)
        if sold is not None:
            receipt = readable_receipt_no(sold)
            refuse(
                number,
                f"{kind_en} {unit[2]} was sold already (receipt {receipt}) and not returned: "
                "a second sale of one pack means a counterfeit or resold pack",
                f"{kind_zh} {unit[2]} 已售出（小票 {receipt}）且未退货：同一件商品重复销售，"
                "可能为假药或回流药",
            )
    return problems


def _check_trace(
    refuse: Callable[[int, str, str], None], number: int, product: Product, code: str
) -> None:
    try:
        parsed = parse_trace_code(code)
    except ScanError as exc:
        refuse(number, str(exc), f"追溯码格式错误：{exc}")
        return
    if product.trace_prefix != parsed.prefix:
        refuse(
            number,
            f"drug traceability code {code} (identification code {parsed.prefix}) is not of "
            f"{product.name}",
            f"追溯码 {code} 的药品标识码 {code[:TRACE_PREFIX_DIGITS]} 不是 {product.name} 的",
        )
