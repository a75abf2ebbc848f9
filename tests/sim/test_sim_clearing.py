"""Invariant 8 bites: statements that do not reconcile with the host are reported."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time

import pytest

from posbatch.batch.model import Kind
from posbatch.clearing import SettlementCycle, Totals, trading_day
from posbatch.host import ClearingStore, TransactionStatus
from posbatch.host import _schema as t
from posbatch.sim import _clearing
from posbatch.sim._clearing import ClearingSnapshot, DayFigures, host_sums
from posbatch.sim._faults import PROFILES
from posbatch.sim._world import SimConfig, World

MERCHANT = "898110054100000"
DAY = date(2026, 11, 23)


def figures(**changes: object) -> DayFigures:
    base = DayFigures(
        MERCHANT, DAY, Totals(1, 10_000, 60, 9_940), SettlementCycle.T1, date(2026, 11, 24),
        True, True, None,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def snapshot(*rows: DayFigures, host: tuple[int, int] = (1, 10_000)) -> ClearingSnapshot:
    return ClearingSnapshot(rows, ((MERCHANT, DAY, *host),), ((MERCHANT, "10000001"),))


def test_statements_that_reconcile_break_nothing() -> None:
    """Gross = the host's, fees + net = gross, arrival a working day after: no violation."""
    assert [] == _clearing.violations(snapshot(figures()))


@pytest.mark.parametrize(
    ("row", "host", "message"),
    [
        (figures(), (1, 9_999), "statement has 1 lines, gross 10000 fen; the host's approved"),
        (figures(), (2, 10_000), "the host's approved transactions 2"),
        (None, (1, 10_000), "statement has 0 lines"),
        (figures(total=Totals(1, 10_000, 60, 9_939)), (1, 10_000), "fees 60 + net 9939"),
        (figures(recomputed=Totals(1, 10_000, 61, 9_939)), (1, 10_000), "computed again"),
        (figures(arrival=DAY), (1, 10_000), "is not a working day after it"),
        (figures(arrival_working=False), (1, 10_000), "is not a working day after it"),
    ],
)
def test_each_break_is_reported(
    row: DayFigures | None, host: tuple[int, int], message: str
) -> None:
    """A gross or count the host does not hold, fees + net != gross, a cleared day that
    changed, a T+1 arrival on the trading day or on a day off: each is invariant 8."""
    found = _clearing.violations(snapshot(*(() if row is None else (row,)), host=host))
    assert [("10000001", True)] == [(where, message in what) for where, what in found]


def test_host_sums_place_a_late_reversal_on_its_own_day() -> None:
    """Approved on 23 Nov, reversed (batch still open) on 24 Nov: +1 on the 23rd, the
    amount taken back on the 24th; reversed the same day or overtaken: nowhere."""
    noon = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    next_noon = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
    rows = [
        (MERCHANT, 1, Kind.SALE, 1_000, TransactionStatus.REVERSED, noon),
        (MERCHANT, 2, Kind.SALE, 500, TransactionStatus.REVERSED, noon),
        (MERCHANT, 3, Kind.SALE, 700, TransactionStatus.REVERSED, noon),
        (MERCHANT, 4, Kind.REFUND, 200, TransactionStatus.APPROVED, next_noon),
    ]
    reversed_at = {1: next_noon, 2: noon}
    sums = host_sums(rows, reversed_at, trading_day)
    assert {(MERCHANT, DAY): [1, 1_000], (MERCHANT, date(2026, 11, 24)): [2, -1_200]} == sums


def _world(seed: int = 3) -> World:
    return World(seed, SimConfig(terminals=2, days=3, transactions=12, faults=PROFILES["none"]))


def test_a_tampered_clearing_run_is_caught_the_next_night() -> None:
    """After day 0 is cleared, its kept sums are changed by a fen: invariant 8 says so."""
    world = _world()
    try:
        world.run_day()
        world.run_day()  # the night of day 1 clears trading day 0
        cleared = [d for d in ClearingStore(world.store).cleared_days() if d.totals.count]
        assert cleared, "day 0 was not cleared"
        with world.store.transaction() as tx:
            tx.connection.execute(
                t.clearing_sums.update()
                .where(t.clearing_sums.c.trading_day == cleared[0].trading_day)
                .values(gross_fen=t.clearing_sums.c.gross_fen + 1)
            )
        world.run_day()
        assert 8 in {violation.invariant for violation in world.result.violations}
    finally:
        world.close()


def test_a_seed_with_a_cut_off_inside_trading_hours_reconciles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With days ending at 12:30, a shop's day spans two trading days; every statement still
    reconciles, and no other invariant suffers."""
    monkeypatch.setattr(_clearing, "CUTOFF_CHOICES", ((time(12, 30), 1),))
    world = World(5, SimConfig(terminals=2, days=2, transactions=25, faults=PROFILES["default"]))
    try:
        result = world.run()
        cutoffs = ClearingStore(world.store).cutoffs().changes
        assert ([time(12, 30)], []) == (
            [change.cutoff for change in cutoffs],
            [violation.render() for violation in result.violations],
        )
    finally:
        world.close()


def test_adjustments_the_back_office_resolved_reconcile() -> None:
    """A statement whose adjustments are what the back office resolved that day: fine."""
    row = figures(adjustment_fen=-500)
    found = _clearing.violations(replace(snapshot(row), adjustments=((MERCHANT, DAY, -500),)))
    assert [] == found


@pytest.mark.parametrize(
    ("row", "resolved_fen", "message"),
    [
        (figures(adjustment_fen=100), 0, "statement has adjustments of 100 fen; the back office"),
        (figures(), 300, "resolved 300 fen that day"),
        (None, 300, "statement has adjustments of 0 fen"),
        (figures(adjustment_fen=300, recomputed_adjustment_fen=0), 300, "computed again: 0"),
    ],
)
def test_each_adjustment_break_is_reported(
    row: DayFigures | None, resolved_fen: int, message: str
) -> None:
    """Adjustments missing, invented, or changed on a cleared day: each is invariant 8."""
    base = snapshot(*(() if row is None else (row,)), host=(0, 0) if row is None else (1, 10_000))
    found = _clearing.violations(replace(base, adjustments=((MERCHANT, DAY, resolved_fen),)))
    assert message in " | ".join(what for _where, what in found)


def test_desk_sums_date_each_resolution_by_its_trading_day() -> None:
    """credit +, debit and refund −, write-off and confirm nothing; 23:30 Beijing is the
    next trading day (cut-off 23:00)."""
    late = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 23:30 Beijing: trading day 24 Nov
    noon = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    rows = [
        (MERCHANT, "credit-merchant", 1_000, noon),
        (MERCHANT, "debit-merchant", 300, noon),
        (MERCHANT, "refund-cardholder", 200, late),
        (MERCHANT, "write-off", 900, noon),
        (MERCHANT, "confirm-host", None, noon),
    ]
    assert {(MERCHANT, DAY): 700, (MERCHANT, date(2026, 11, 24)): -200} == _clearing.desk_sums(
        rows, trading_day
    )


def test_a_seed_whose_back_office_resolves_exceptions_reconciles() -> None:
    """Seed 2 (3 terminals × 3 days): the back office resolves some exceptions with money;
    the clearing runs keep them as adjustments and invariant 8 holds."""
    world = World(2, SimConfig(terminals=3, days=3, transactions=20))
    try:
        result = world.run()
        with world.store.engine.connect() as connection:
            kept = connection.execute(t.clearing_adjustments.select()).all()
        assert (True, []) == (bool(kept), [violation.render() for violation in result.violations])
    finally:
        world.close()


def test_a_tampered_adjustment_is_caught_the_next_night() -> None:
    """A kept adjustment changed by a fen after its day was cleared: invariant 8 says so."""
    world = World(2, SimConfig(terminals=3, days=4, transactions=20))
    try:
        kept: list[object] = []
        while not kept and world.day < 3:
            world.run_day()
            with world.store.engine.connect() as connection:
                kept = list(connection.execute(t.clearing_adjustments.select()).all())
        assert kept, "no adjustment was kept"
        with world.store.transaction() as tx:
            tx.connection.execute(
                t.clearing_adjustments.update().values(
                    amount_fen=t.clearing_adjustments.c.amount_fen - 1
                )
            )
        world.run_day()
        assert 8 in {violation.invariant for violation in world.result.violations}
    finally:
        world.close()
