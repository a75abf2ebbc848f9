"""Adjustments (差错调整) as pure functions: what each resolution does, on which day."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import pytest
from clearing_world import DEBIT_PAN, RULES_FROM, beijing_time, standard_rates
from hypothesis import given, settings
from hypothesis import strategies as st

from posbatch.backoffice import Resolution
from posbatch.clearing import (
    ADJUSTMENT_SIGNS,
    AdjustmentRecord,
    CardBin,
    CardClass,
    ClearingRecord,
    ClearingRules,
    CutoffChange,
    CutoffSchedule,
    FeeSchedule,
    Funding,
    adjustment_fen,
    adjustment_lines,
    build_statement,
    clearing_file,
    clearing_file_csv,
    render_clearing_file,
    render_statement,
    statement_csv,
    trading_day,
)
from posbatch.errors import ClearingError
from posbatch.wire import mask_pan
from testbed import MERCHANT_ID, TERMINAL_ID

DAY = date(2026, 9, 30)
OTHER = "898110054110002"


def rules() -> ClearingRules:
    return ClearingRules(
        fee_schedules=(
            FeeSchedule(None, RULES_FROM, standard_rates(), {CardClass.DOMESTIC_DEBIT: 2_000}),
        ),
        card_bins=(CardBin("622202", Funding.DEBIT, RULES_FROM),),
    )


def resolved(
    at: str, resolution: str, amount_fen: int | None, *, exception_id: int = 1,
    merchant_id: str = MERCHANT_ID,
) -> AdjustmentRecord:  # fmt: skip
    return AdjustmentRecord(
        exception_id, merchant_id, TERMINAL_ID, "amount-differs", resolution, amount_fen,
        beijing_time(at),
    )  # fmt: skip


def sale(at: str, amount_fen: int) -> ClearingRecord:
    return ClearingRecord(
        1, MERCHANT_ID, TERMINAL_ID, 1, 1, 1, "000000000001", "sale", amount_fen, "00",
        mask_pan(DEBIT_PAN), beijing_time(at), None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("resolution", "amount_fen", "expected_fen"),
    [
        ("credit-merchant", 1_250, 1_250),
        ("debit-merchant", 1_250, -1_250),
        ("refund-cardholder", 1_250, -1_250),
        ("write-off", 1_250, 0),
        ("confirm-host", None, 0),
    ],
)
def test_each_resolution_s_effect_on_the_merchant_s_net(
    resolution: str, amount_fen: int | None, expected_fen: int
) -> None:
    """credit +amount, debit and refund to the cardholder −amount, write-off and confirm 0."""
    assert expected_fen == adjustment_fen(resolution, amount_fen)


def test_every_back_office_resolution_has_a_sign() -> None:
    """Clearing knows every resolution the back office offers, and no other."""
    assert {resolution.value for resolution in Resolution} == set(ADJUSTMENT_SIGNS)


def test_a_resolution_that_moves_money_moves_it_exactly_when_the_back_office_says_so() -> None:
    """Resolution.moves_money (an amount is asked) covers every resolution with a sign."""
    assert all(Resolution(name).moves_money for name, sign in ADJUSTMENT_SIGNS.items() if sign)


@pytest.mark.parametrize(
    ("resolution", "amount_fen", "message"),
    [
        ("pay-twice", 100, "resolution 'pay-twice' is not one clearing knows"),
        ("credit-merchant", None, "resolution 'credit-merchant' needs an amount of 0.01 and more"),
        ("debit-merchant", 0, "resolution 'debit-merchant' needs an amount of 0.01 and more"),
        ("credit-merchant", -5, "resolution 'credit-merchant' needs an amount of 0.01 and more"),
    ],
)
def test_bad_resolutions_are_refused(resolution: str, amount_fen: int | None, message: str) -> None:
    """An unknown resolution or a missing/non-positive amount is an error, never a 0."""
    with pytest.raises(ClearingError) as caught:
        adjustment_fen(resolution, amount_fen)
    assert message == str(caught.value)


def test_an_adjustment_is_on_the_trading_day_it_was_resolved() -> None:
    """23:30 on 29 Sep is trading day 30 Sep (cut-off 23:00); 23:00 on 30 Sep is 1 Oct."""
    records = [
        resolved("2026-09-29 23:30", "credit-merchant", 100, exception_id=1),
        resolved("2026-09-30 22:59", "debit-merchant", 30, exception_id=2),
        resolved("2026-09-30 23:00", "credit-merchant", 7, exception_id=3),
    ]
    lines = adjustment_lines(DAY, records, CutoffSchedule())[MERCHANT_ID]
    assert [(1, 100), (2, -30)] == [(line.exception_id, line.amount_fen) for line in lines]
    assert [3] == [
        line.exception_id
        for line in adjustment_lines(DAY + timedelta(days=1), records, CutoffSchedule())[
            MERCHANT_ID
        ]
    ]


def test_the_cut_off_schedule_dates_the_adjustment() -> None:
    """With a 16:00 cut-off from 30 Sep, a resolution at 17:00 on 30 Sep is on 1 Oct."""
    cutoffs = CutoffSchedule((CutoffChange(DAY, datetime(2000, 1, 1, 16).time()),))
    record = resolved("2026-09-30 17:00", "credit-merchant", 100)
    assert date(2026, 10, 1) == trading_day(record.resolved_at, cutoffs)
    assert {} == adjustment_lines(DAY, [record], cutoffs)
    assert [100] == [
        line.amount_fen
        for line in adjustment_lines(date(2026, 10, 1), [record], cutoffs)[MERCHANT_ID]
    ]


def test_write_off_and_confirm_make_no_line() -> None:
    """The acquirer's write-off and a confirmation do not touch the merchant's money."""
    records = [
        resolved("2026-09-30 10:00", "write-off", 500, exception_id=1),
        resolved("2026-09-30 10:00", "confirm-host", None, exception_id=2),
    ]
    assert {MERCHANT_ID: []} == adjustment_lines(
        DAY, records, CutoffSchedule(), merchant_ids=(MERCHANT_ID,)
    )


def test_an_exception_counted_twice_is_an_error() -> None:
    """Two resolutions of one exception on one day: refused, never summed."""
    records = [resolved("2026-09-30 10:00", "credit-merchant", 100)] * 2
    with pytest.raises(ClearingError, match="resolved twice"):
        adjustment_lines(DAY, records, CutoffSchedule())


def test_a_statement_with_adjustments_shows_them_and_pays_them() -> None:
    """net = gross − fees + adjustments; the text, the CSV and the clearing file say so."""
    day_rules = rules()
    records = [sale("2026-09-30 10:00", 100_000)]
    adjustments = [
        resolved("2026-09-30 11:00", "credit-merchant", 2_500, exception_id=7),
        resolved("2026-09-30 12:00", "refund-cardholder", 1_000, exception_id=8),
        resolved("2026-09-30 12:30", "write-off", 900, exception_id=9),
    ]
    statement = build_statement(MERCHANT_ID, DAY, records, day_rules, adjustments=adjustments)
    assert (100_000, 600, 1_500, 100_900) == (
        statement.gross_fen, statement.fee_fen, statement.adjustment_fen, statement.net_fen,
    )  # fmt: skip
    assert [(7, 2_500), (8, -1_000)] == [
        (line.exception_id, line.amount_fen) for line in statement.adjustments
    ]
    text = render_statement(statement)
    assert "差错 #7" in text and "差错 #8" in text and "#9" not in text
    assert "adjustments 差错调整 15.00 (2), net 净额 1009.00" in text
    rows = list(csv.reader(io.StringIO(statement_csv(statement).lstrip("\ufeff"))))
    assert ["差错调整 adjustments", "15.00"] in rows
    assert ["净额 net", "1009.00"] in rows
    assert ["8", TERMINAL_ID, "amount-differs", "refund-cardholder", "-10.00", "0.00"] in [
        row[1:] for row in rows
    ]
    document = clearing_file(DAY, records, day_rules, adjustments)
    assert [(MERCHANT_ID, 1_500, 100_900)] == [
        (line.merchant_id, line.adjustment_fen, line.net_fen) for line in document.lines
    ]
    assert (1_500, 100_900) == (document.adjustment_fen, document.net_fen)
    file_rows = list(csv.reader(io.StringIO(clearing_file_csv(document))))
    assert [
        MERCHANT_ID, "1", "1000.00", "6.00", "1009.00", "T+1", "2026-10-08", "no", "15.00", "0",
        "no",
    ] == file_rows[1]  # fmt: skip
    assert "差错调整 adjustments 15.00 (2)" in render_clearing_file(document)


def test_a_merchant_with_only_an_adjustment_is_in_the_clearing_file() -> None:
    """No transaction that day, a credit-merchant resolution: the file pays it."""
    document = clearing_file(
        DAY, [], rules(), [resolved("2026-09-30 09:00", "credit-merchant", 300, merchant_id=OTHER)]
    )
    assert [(OTHER, 0, 300, 300)] == [
        (line.merchant_id, line.total.count, line.adjustment_fen, line.net_fen)
        for line in document.lines
    ]


_RESOLUTIONS = st.sampled_from(sorted(ADJUSTMENT_SIGNS))


@settings(max_examples=150, deadline=None)
@given(
    sales=st.lists(st.tuples(st.integers(0, 72 * 60 - 1), st.integers(1, 5_000_000)), max_size=8),
    resolutions=st.lists(
        st.tuples(st.integers(0, 72 * 60 - 1), _RESOLUTIONS, st.integers(1, 5_000_000)),
        max_size=8,
    ),
)
def test_no_fen_is_created_or_lost_by_adjustments(
    sales: list[tuple[int, int]], resolutions: list[tuple[int, str, int]]
) -> None:
    """Over three days: each statement's net = gross − fees + its adjustments, and the
    adjustments of all days sum to the signed resolutions, each counted once."""
    start = beijing_time("2026-09-29 23:00")
    day_rules = rules()
    records = [
        ClearingRecord(
            number, MERCHANT_ID, TERMINAL_ID, 1, 1, number, None, "sale", amount, "00",
            mask_pan(DEBIT_PAN), start + timedelta(minutes=minute), None,
        )
        for number, (minute, amount) in enumerate(sales, start=1)
    ]  # fmt: skip
    adjustments = [
        AdjustmentRecord(
            number, MERCHANT_ID, TERMINAL_ID, "amount-differs", resolution,
            None if resolution == "confirm-host" else amount,
            start + timedelta(minutes=minute),
        )
        for number, (minute, resolution, amount) in enumerate(resolutions, start=1)
    ]  # fmt: skip
    total_adjusted = 0
    counted: list[int] = []
    for offset in range(3):
        day = DAY + timedelta(days=offset)
        statement = build_statement(MERCHANT_ID, day, records, day_rules, adjustments=adjustments)
        assert statement.net_fen == (
            statement.gross_fen - statement.fee_fen + statement.adjustment_fen
        )
        total_adjusted += statement.adjustment_fen
        counted += [line.exception_id for line in statement.adjustments]
    expected = sum(adjustment_fen(r.resolution, r.amount_fen) for r in adjustments)
    assert expected == total_adjusted
    assert sorted(counted) == sorted(set(counted))
