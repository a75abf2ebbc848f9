"""Resolved exceptions reach the merchant's money through the host's store (SQLite and
PostgreSQL): adjustment lines (差错调整) on statements, in clearing files and clearing runs."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import date

import pytest
from clearing_world import MERCHANT_ID, TERMINAL_ID, World, beijing_time

from posbatch.backoffice import Actor, ExceptionWork
from posbatch.batch.host_effects import AddException
from posbatch.clearing import render_statement, statement_csv
from posbatch.errors import BackOfficeError
from posbatch.host import _schema as t

SEP_30 = date(2026, 9, 30)
OCT_1 = date(2026, 10, 1)
OLGA = Actor("olga", "ops", "127.0.0.1")
# a kind the back office's table does not know: every resolution is allowed on it
ANY_KIND = "test-any"


def raise_exception(world: World, *, host_amount_fen: int = 5_000) -> int:
    """An exception (差错) of the merchant's terminal, raised at the world's clock; its id."""
    with world.store.transaction() as tx:
        tx.apply([AddException(
            terminal_id=TERMINAL_ID, merchant_id=MERCHANT_ID, batch_id=None, batch_no=1, stan=1,
            kind=ANY_KIND, cause="a difference to settle", terminal_amount_fen=None,
            host_amount_fen=host_amount_fen, at=world.clock(),
        )])  # fmt: skip
    return max(item.exception_id for item in world.store.exceptions())


def resolve(
    world: World, exception_id: int, resolution: str, at: str, amount_fen: int | None = None
) -> None:
    ExceptionWork(world.store).resolve(
        OLGA, [exception_id], resolution, "settled by the desk", amount_fen=amount_fen,
        now=beijing_time(at),
    )  # fmt: skip


def kept_adjustments(world: World) -> list[tuple[int, date, int]]:
    with world.store.engine.connect() as connection:
        rows = connection.execute(
            t.clearing_adjustments.select().order_by(t.clearing_adjustments.c.exception_id)
        ).all()
    return [(row.exception_id, row.trading_day, row.amount_fen) for row in rows]


@pytest.mark.parametrize(
    ("resolution", "amount_fen", "expected_fen"),
    [
        ("credit-merchant", 1_200, 1_200),
        ("debit-merchant", 1_200, -1_200),
        ("refund-cardholder", 1_200, -1_200),
        ("write-off", 1_200, 0),
        ("confirm-host", None, 0),
    ],
)
def test_each_resolution_on_the_statement(
    world: World, resolution: str, amount_fen: int | None, expected_fen: int
) -> None:
    """A sale of 100.00 (fee 0.60) and one resolution on the same day: the net moves by
    the resolution's signed amount, with no fee."""
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(10_000)
    exception_id = raise_exception(world)
    resolve(world, exception_id, resolution, "2026-09-30 15:00", amount_fen)
    statement = world.clearing.statement(MERCHANT_ID, SEP_30)
    assert (10_000, 60, expected_fen, 10_000 - 60 + expected_fen) == (
        statement.gross_fen, statement.fee_fen, statement.adjustment_fen, statement.net_fen,
    )  # fmt: skip
    assert ([exception_id] if expected_fen else []) == [
        line.exception_id for line in statement.adjustments
    ]


def test_a_statement_with_an_adjustment_before_and_after_the_clearing_run(world: World) -> None:
    """The statement, the clearing file and the summaries show the adjustment; the run
    keeps it; the cleared day reads the same figures and a second run changes nothing."""
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(10_000)
    exception_id = raise_exception(world)
    resolve(world, exception_id, "credit-merchant", "2026-09-30 16:00", 2_500)
    before = world.clearing.statement(MERCHANT_ID, SEP_30)
    file_before = world.clearing.clearing_file(SEP_30)
    done = world.clearing.clear_day(SEP_30, now=beijing_time("2026-10-01 09:00"))
    after = world.clearing.statement(MERCHANT_ID, SEP_30)
    again = world.clearing.clear_day(SEP_30, now=beijing_time("2026-10-02 09:00"))
    file_after = world.clearing.clearing_file(SEP_30)
    summary = world.clearing.summaries(SEP_30)[0]
    assert (False, True) == (before.cleared, after.cleared)
    assert before.adjustments == after.adjustments
    assert (12_440, 12_440, 12_440) == (before.net_fen, after.net_fen, summary.net_fen)
    assert [(MERCHANT_ID, 2_500, 12_440)] * 2 == [
        (line.merchant_id, line.adjustment_fen, line.net_fen)
        for document in (file_before, file_after)
        for line in document.lines
    ]
    assert (2_500, done) == (done.adjustment_fen, again)
    assert [(exception_id, SEP_30, 2_500)] == kept_adjustments(world)
    rows = list(csv.reader(io.StringIO(statement_csv(after))))
    assert ["差错调整 adjustments", "25.00"] in rows


def test_a_resolution_after_the_day_was_cleared_lands_on_its_own_day(world: World) -> None:
    """The exception is raised on 30 Sep, the day is cleared, then it is resolved on 1 Oct:
    the adjustment is on 1 Oct; 30 Sep stays as the run kept it (also computed again)."""
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(10_000)
    exception_id = raise_exception(world)
    world.clearing.clear_day(SEP_30, now=beijing_time("2026-10-01 09:00"))
    kept = world.clearing.statement(MERCHANT_ID, SEP_30)
    resolve(world, exception_id, "debit-merchant", "2026-10-01 10:00", 1_000)
    # its figures stay; only the exception now says where it was settled (below)
    assert replace(kept, exceptions=()) == replace(
        world.clearing.statement(MERCHANT_ID, SEP_30), exceptions=()
    )
    world.clearing.clear_day(SEP_30, now=beijing_time("2026-10-02 09:00"))  # same: no error
    oct_1 = world.clearing.statement(MERCHANT_ID, OCT_1)
    assert (0, -1_000, -1_000) == (oct_1.gross_fen, oct_1.adjustment_fen, oct_1.net_fen)
    world.clearing.clear_day(OCT_1, now=beijing_time("2026-10-02 09:00"))
    assert [(exception_id, OCT_1, -1_000)] == kept_adjustments(world)
    assert -1_000 == world.clearing.statement(MERCHANT_ID, OCT_1).net_fen


def test_a_resolution_dated_within_a_cleared_day_is_refused(world: World) -> None:
    """A clock gone back would put money on a day already paid: the back office refuses it
    and the exception stays open."""
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(10_000)
    exception_id = raise_exception(world)
    world.clearing.clear_day(SEP_30, now=beijing_time("2026-10-01 09:00"))
    with pytest.raises(BackOfficeError, match="trading day 2026-09-30 is cleared already"):
        resolve(world, exception_id, "credit-merchant", "2026-09-30 20:00", 1_000)
    resolve(world, exception_id, "confirm-host", "2026-09-30 20:00")  # moves nothing: fine
    assert [] == kept_adjustments(world)


def test_an_adjustment_is_never_counted_twice(world: World) -> None:
    """Resolving again is refused; clearing runs again keep the one adjustment once."""
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(10_000)
    exception_id = raise_exception(world)
    resolve(world, exception_id, "credit-merchant", "2026-09-30 11:00", 500)
    with pytest.raises(BackOfficeError, match="is resolved"):
        resolve(world, exception_id, "credit-merchant", "2026-09-30 12:00", 500)
    for night in ("2026-10-01 09:00", "2026-10-01 10:00", "2026-10-03 09:00"):
        world.clearing.clear_day(SEP_30, now=beijing_time(night))
    assert [(exception_id, SEP_30, 500)] == kept_adjustments(world)
    assert 500 == world.clearing.statement(MERCHANT_ID, SEP_30).adjustment_fen


def test_a_cleared_days_exception_says_where_it_was_settled(world: World) -> None:
    """Raised on 30 Sep, the day cleared while it is open: 30 Sep's statement says it is
    open; resolved on 1 Oct, the same statement (its figures unchanged) points to 1 Oct's,
    where the adjustment is — before and after 1 Oct is cleared, in the text and the CSV."""
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(10_000)
    exception_id = raise_exception(world)
    world.clearing.clear_day(SEP_30, now=beijing_time("2026-10-01 09:00"))
    (record,) = world.clearing.statement(MERCHANT_ID, SEP_30).exceptions
    assert (record.resolution, record.settled_on) == (None, None)
    assert "-> open 未处理: not settled yet" in render_statement(
        world.clearing.statement(MERCHANT_ID, SEP_30)
    )
    resolve(world, exception_id, "credit-merchant", "2026-10-01 10:00", 1_000)
    for _cleared in range(2):
        statement = world.clearing.statement(MERCHANT_ID, SEP_30)
        (record,) = statement.exceptions
        assert (record.resolution, record.adjustment_fen, record.settled_on) == (
            "credit-merchant", 1_000, OCT_1,
        )  # fmt: skip
        assert (
            "-> resolved 已处理 2026-10-01 10:00:00 补付商户 credit: adjustment 差错调整 10.00 "
            "on the statement of trading day 2026-10-01"
        ) in render_statement(statement)
        rows = list(csv.reader(io.StringIO(statement_csv(statement))))
        row = next(row for row in rows if row and row[0] == str(exception_id))
        assert ["credit-merchant", "10.00", "2026-10-01"] == row[-3:]
        assert [exception_id] == [
            line.exception_id for line in world.clearing.statement(MERCHANT_ID, OCT_1).adjustments
        ]
        world.clearing.clear_day(OCT_1, now=beijing_time("2026-10-02 09:00"))


def test_an_exception_resolved_without_money_says_so(world: World) -> None:
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(10_000)
    exception_id = raise_exception(world)
    resolve(world, exception_id, "write-off", "2026-09-30 11:00", 1_000)
    statement = world.clearing.statement(MERCHANT_ID, SEP_30)
    (record,) = statement.exceptions
    assert (record.resolution, record.settled_on) == ("write-off", None)
    assert "核销 write-off: no adjustment, the merchant's money does not move" in (
        render_statement(statement)
    )
