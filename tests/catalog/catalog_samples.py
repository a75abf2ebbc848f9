"""Shared data for the catalog tests: a small catalog with lots around 2026-11-25."""

from __future__ import annotations

import datetime as dt

from posbatch.catalog import CatalogSnapshot, Lot, Payment, Product

TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 10, 30, tzinfo=dt.UTC)

MILK = "06901234567892"
BAG = "06909876543212"
PILLS = "09501101530003"


def catalog_products() -> list[Product]:
    return [
        Product(MILK, "Milk 1L", 1250, True, 1),
        Product(BAG, "Paper bag", 50, False, 1, quantity_on_hand=500),
        Product(PILLS, "Vitamin C", 3890, True, 1),
    ]


def catalog_lots() -> list[Lot]:
    return [
        Lot(MILK, "M-OLD", dt.date(2026, 11, 24), 5, False, 1),  # expired yesterday
        Lot(MILK, "M-DEC01", dt.date(2026, 12, 1), 3, False, 1),  # first to expire
        Lot(MILK, "M-DEC15", dt.date(2026, 12, 15), 10, False, 1),
        Lot(MILK, "M-RECALL", dt.date(2027, 1, 31), 50, True, 1),
        Lot(MILK, "M-TODAY", TODAY, 0, False, 1),  # sellable today, but none in stock
        Lot(PILLS, "P1", dt.date(2027, 6, 30), 20, False, 1),
    ]


def sample_snapshot() -> CatalogSnapshot:
    return CatalogSnapshot.build(catalog_products(), catalog_lots(), version=1)


class ScriptedPayer:
    """Answers each pay() with the next scripted payment (or raises it)."""

    def __init__(self, *outcomes: Payment | Exception) -> None:
        self.outcomes = list(outcomes)
        self.amounts: list[int] = []
        self.references: list[str] = []

    def pay(self, amount_fen: int, *, reference: str) -> Payment:
        self.amounts.append(amount_fen)
        self.references.append(reference)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def approved(stan: str, batch_no: str = "000001") -> Payment:
    return Payment(True, "00", stan, batch_no, rrn="000000000001", auth_code="A1B2C3")
