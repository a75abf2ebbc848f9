"""Scan throughput: scans parsed and validated per second, against bare ``biip.parse``.

A catalog of ``--products`` products (default 10,000) and ``--lots`` lots
(default 100,000; some expired, some recalled, some out of stock) is built in
memory as the :class:`CatalogSnapshot` checkout works on. ``--scans`` scan
strings are generated from it, in the mix a till sees:

- 40 % GS1-128 ``]C1`` with a GS separator: (01)(10)GS(17)
- 15 % GS1 DataMatrix ``]d2`` with ``|`` as the separator: (01)(10)(17)(21)
- 20 % no separators, lot last: (01)(17)(10)
- 15 % no separators, lot first and a date after it: (01)(10)(17) — ambiguous,
  resolved by the lots the catalog knows
- 10 % plain EAN-13 (refused: the products are lot-tracked)

Ours, per scan: ``parse_scan`` (symbology, element strings, check digit, dates,
ambiguity), ``Scan.resolve`` against the catalog, and ``price_cart`` of a
one-line cart (product, lot, expiry, recall, stock → a priced line or a
refusal with a FEFO suggestion). Baseline, in the same run over the same
scans: bare ``biip.parse`` with the same separator characters (parsing only).

Printed: scans per second for both (and for ``parse_scan`` alone), and
ours / baseline. Target: ≥ 0.5.

Usage: ``PYTHONPATH=src python bench/scan.py [--rounds 5] [--scans 20000]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time
from collections.abc import Callable

import biip

from posbatch.catalog import (
    CatalogSnapshot,
    LineRequest,
    Lot,
    Product,
    parse_scan,
    price_cart,
    with_check_digit,
)
from posbatch.errors import CheckoutRefused, ScanError

TARGET_RATIO = 0.5
TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
SEPARATORS = ("|",)
GS = "\x1d"
LOT_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def build_catalog(products: int, lots: int, rng: random.Random) -> CatalogSnapshot:
    catalog_products = [
        Product(
            with_check_digit(f"0690{index:09d}"),
            f"product {index}",
            rng.randrange(100, 100_000),
            True,
            1,
        )
        for index in range(products)
    ]
    catalog_lots = []
    for index in range(lots):
        product = catalog_products[index % products]
        lot_no = f"{rng.choice(LOT_ALPHABET)}{rng.choice(LOT_ALPHABET)}{index:07d}"
        expiry = TODAY + dt.timedelta(days=rng.randrange(-30, 700))
        catalog_lots.append(
            Lot(product.gtin, lot_no, expiry, rng.randrange(0, 200), rng.random() < 0.02, 1)
        )
    return CatalogSnapshot.build(catalog_products, catalog_lots, version=1)


def build_scans(snapshot: CatalogSnapshot, count: int, rng: random.Random) -> list[str]:
    all_lots = [lot for lots in snapshot.lots.values() for lot in lots.values()]
    scans = []
    for index in range(count):
        lot = rng.choice(all_lots)
        expiry = (lot.expiry or TODAY).strftime("%y%m%d")
        kind = index % 20
        if kind < 8:
            scans.append(f"]C101{lot.gtin}10{lot.lot_no}{GS}17{expiry}")
        elif kind < 11:
            scans.append(f"]d201{lot.gtin}10{lot.lot_no}|17{expiry}21S{index}")
        elif kind < 15:
            scans.append(f"01{lot.gtin}17{expiry}10{lot.lot_no}")
        elif kind < 18:
            scans.append(f"01{lot.gtin}10{lot.lot_no}17{expiry}")
        else:
            scans.append(lot.gtin[1:])
    return scans


def ours(snapshot: CatalogSnapshot) -> Callable[[str], object]:
    def run(raw: str) -> object:
        try:
            scan = parse_scan(raw, today=TODAY, separators=SEPARATORS)
            reading = scan.resolve(snapshot.is_known_lot)
            return price_cart(
                snapshot, [LineRequest.from_scan(reading, raw=raw)], today=TODAY, now=NOW
            )
        except (ScanError, CheckoutRefused) as refused:
            return refused

    return run


def parse_only(raw: str) -> object:
    try:
        return parse_scan(raw, today=TODAY, separators=SEPARATORS)
    except ScanError as unreadable:
        return unreadable


BIIP_CONFIG = biip.ParseConfig(separator_chars=(GS, *SEPARATORS))


def baseline(raw: str) -> object:
    return biip.parse(raw, config=BIIP_CONFIG)


def rate(function: Callable[[str], object], scans: list[str]) -> float:
    start = time.perf_counter()
    for raw in scans:
        function(raw)
    return len(scans) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scans", type=int, default=20_000)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--lots", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    arguments = parser.parse_args()
    rng = random.Random(arguments.seed)
    started = time.perf_counter()
    snapshot = build_catalog(arguments.products, arguments.lots, rng)
    scans = build_scans(snapshot, arguments.scans, rng)
    print(
        f"catalog: {len(snapshot.products)} products, "
        f"{sum(len(lots) for lots in snapshot.lots.values())} lots "
        f"(built in {time.perf_counter() - started:.1f} s); {len(scans)} scans per round"
    )
    ours_run = ours(snapshot)
    outcomes = [ours_run(raw) for raw in scans]
    refused = sum(isinstance(outcome, CheckoutRefused) for outcome in outcomes)
    unreadable = sum(isinstance(outcome, ScanError) for outcome in outcomes)
    print(
        f"outcomes: {len(scans) - refused - unreadable} sold, {refused} refused "
        f"(no lot / expired / recalled / stock), {unreadable} unreadable"
    )
    ours_rates, parse_rates, baseline_rates = [], [], []
    for _ in range(arguments.rounds):
        ours_rates.append(rate(ours_run, scans))
        parse_rates.append(rate(parse_only, scans))
        baseline_rates.append(rate(baseline, scans))
    ours_rate = statistics.median(ours_rates)
    baseline_rate = statistics.median(baseline_rates)
    ratio = ours_rate / baseline_rate
    print(f"posbatch parse_scan + resolve + price_cart: {ours_rate:,.0f} scans/s")
    print(
        f"  of which parse_scan alone:                {statistics.median(parse_rates):,.0f} scans/s"
    )
    print(f"bare biip.parse (baseline):                 {baseline_rate:,.0f} scans/s")
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"ratio ours / baseline: {ratio:.2f} ({verdict} the target ≥ {TARGET_RATIO})")


if __name__ == "__main__":
    main()
