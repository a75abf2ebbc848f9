"""Trading day (日切), China's working days, provisional years, arrival dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from clearing_world import beijing_time
from hypothesis import given, settings
from hypothesis import strategies as st

from posbatch.clearing import (
    CutoffChange,
    CutoffSchedule,
    SettlementCycle,
    WorkingDayCalendar,
    arrival_date,
    library_publishes,
    parse_cutoff,
    parse_day,
    parse_moment,
    trading_day,
    trading_day_bounds,
)
from posbatch.errors import ClearingError

CALENDAR = WorkingDayCalendar()


# --- the trading day ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("beijing", "expected"),
    [
        ("2026-09-29 23:30", date(2026, 9, 30)),  # the issue's example
        ("2026-09-29 22:59:59.999999", date(2026, 9, 29)),
        ("2026-09-29 23:00", date(2026, 9, 30)),  # the cut-off itself opens the next day
        ("2026-09-30 00:00", date(2026, 9, 30)),
        ("2026-09-30 07:59", date(2026, 9, 30)),  # still 29 Sep in UTC
        ("2026-12-31 23:30", date(2027, 1, 1)),  # across a year
    ],
)
def test_trading_day_at_the_default_cut_off(beijing: str, expected: date) -> None:
    """Days end at 23:00 Beijing time: a sale at 23:30 on 29 Sep trades on 30 Sep."""
    assert expected == trading_day(beijing_time(beijing))


def test_a_naive_time_is_utc() -> None:
    """A naive datetime (how every time column holds it) is read as UTC."""
    assert date(2026, 9, 30) == trading_day(datetime(2026, 9, 29, 15, 30))


def test_a_cut_off_at_midnight_is_the_calendar_day() -> None:
    """With 00:00 the trading day is the Beijing calendar day."""
    cutoffs = CutoffSchedule((CutoffChange(date(2026, 1, 1), time(0, 0)),))
    assert (date(2026, 9, 29), date(2026, 9, 30)) == (
        trading_day(beijing_time("2026-09-29 23:59"), cutoffs),
        trading_day(beijing_time("2026-09-30 00:00"), cutoffs),
    )


def test_a_cut_off_change_keeps_the_days_before_it() -> None:
    """From 30 Sep days end at 22:00; 29 Sep still ends at 23:00."""
    cutoffs = CutoffSchedule((CutoffChange(date(2026, 9, 30), time(22, 0)),))
    assert (date(2026, 9, 29), date(2026, 9, 30), date(2026, 10, 1)) == (
        trading_day(beijing_time("2026-09-29 22:30"), cutoffs),
        trading_day(beijing_time("2026-09-29 23:30"), cutoffs),
        trading_day(beijing_time("2026-09-30 22:30"), cutoffs),
    )


@pytest.mark.parametrize("text", ["02:00", "11:59", "24:00", "23:60", "2300", "23:00:00", ""])
def test_bad_cut_offs_are_refused(text: str) -> None:
    """A cut-off is 00:00 or 12:00–23:59, written HH:MM."""
    with pytest.raises(ClearingError, match="cut-off"):
        parse_cutoff(text)


def test_two_cut_off_changes_on_one_day_are_refused() -> None:
    """A schedule with two changes taking effect the same day is ambiguous: refused."""
    with pytest.raises(ClearingError, match="same day"):
        CutoffSchedule(
            (
                CutoffChange(date(2026, 9, 30), time(22, 0)),
                CutoffChange(date(2026, 9, 30), time(21, 0)),
            )
        )


_CUTOFFS = st.lists(
    st.tuples(
        st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)),
        st.sampled_from([time(0, 0), time(12, 0), time(16, 30), time(22, 0), time(23, 59)]),
    ),
    max_size=4,
    unique_by=lambda change: change[0],
).map(lambda changes: CutoffSchedule(tuple(CutoffChange(*change) for change in changes)))
_MOMENTS = st.datetimes(
    min_value=datetime(2025, 12, 1), max_value=datetime(2027, 1, 31), timezones=st.just(UTC)
)


@given(cutoffs=_CUTOFFS, moment=_MOMENTS)
def test_a_moment_lies_within_the_bounds_of_its_trading_day(
    cutoffs: CutoffSchedule, moment: datetime
) -> None:
    """trading_day(m) == D exactly when start(D) <= m < end(D), whatever the cut-offs."""
    start, end = trading_day_bounds(trading_day(moment, cutoffs), cutoffs)
    assert start <= moment < end


@given(cutoffs=_CUTOFFS, moment=_MOMENTS, later=st.timedeltas(min_value=timedelta(0)))
def test_the_trading_day_never_goes_back(
    cutoffs: CutoffSchedule, moment: datetime, later: timedelta
) -> None:
    """As time goes on, the trading day only moves forward (and never skips: bounds meet)."""
    following = moment + min(later, timedelta(days=400))
    day = trading_day(moment, cutoffs)
    assert trading_day(following, cutoffs) >= day
    assert trading_day_bounds(day, cutoffs)[1] == trading_day_bounds(day + timedelta(1), cutoffs)[0]


# --- working days and arrival (the issue's 2026 examples) --------------------------------


@pytest.mark.parametrize(
    ("beijing", "arrival", "provisional"),
    [
        ("2026-09-30 10:00", date(2026, 10, 8), False),  # National Day: 1–7 Oct off
        ("2026-09-29 23:30", date(2026, 10, 8), False),  # trades on 30 Sep → 8 Oct
        ("2026-02-13 10:00", date(2026, 2, 14), False),  # a make-up Saturday (调休)
        ("2026-12-31 10:00", date(2027, 1, 4), True),  # into 2027: no notice yet
    ],
)
def test_the_issue_arrival_examples(beijing: str, arrival: date, provisional: bool) -> None:
    """T+1 over China's 2026 calendar, make-up days and holidays counted."""
    found = arrival_date(trading_day(beijing_time(beijing)))
    assert (arrival, provisional) == (found.arrival_date, found.provisional)


def test_published_years_are_those_whose_notice_the_library_carries() -> None:
    """2026's notice is in the installed library (its make-up days), 2027's is not yet."""
    assert (True, True, False) == (
        library_publishes(2025),
        library_publishes(2026),
        library_publishes(2027),
    )


def test_an_operator_can_publish_a_year() -> None:
    """After the notice is entered as overrides, a year marked published is not provisional."""
    calendar = WorkingDayCalendar({date(2027, 1, 4): True}, frozenset({2027}))
    found = arrival_date(date(2026, 12, 31), calendar=calendar)
    assert (date(2027, 1, 4), False) == (found.arrival_date, found.provisional)


def test_an_override_wins_over_the_library() -> None:
    """An override making 1 Oct a working day (say, a changed notice) moves T+1 to it."""
    calendar = WorkingDayCalendar({date(2026, 10, 1): True})
    assert date(2026, 10, 1) == arrival_date(date(2026, 9, 30), calendar=calendar).arrival_date


def test_an_override_can_take_a_working_day_away() -> None:
    """8 Oct declared a day off moves the arrival to the next working day, 9 Oct."""
    calendar = WorkingDayCalendar({date(2026, 10, 8): False})
    assert date(2026, 10, 9) == arrival_date(date(2026, 9, 30), calendar=calendar).arrival_date


def test_the_make_up_days_are_working_days_though_weekends() -> None:
    """2026's make-up days (Sat/Sun worked) count as working days; 3 Oct does not."""
    assert (True, True, False, False) == (
        CALENDAR.is_working_day(date(2026, 2, 14)),
        CALENDAR.is_working_day(date(2026, 9, 20)),
        CALENDAR.is_working_day(date(2026, 10, 3)),
        CALENDAR.is_working_day(date(2026, 10, 4)),
    )


@pytest.mark.parametrize(
    ("cycle", "day", "expected"),
    [
        (SettlementCycle.T0, date(2026, 9, 30), date(2026, 9, 30)),  # a working day: same day
        (SettlementCycle.T0, date(2026, 10, 3), date(2026, 10, 8)),  # a holiday: next working
        (SettlementCycle.D0, date(2026, 10, 3), date(2026, 10, 3)),  # D+0: that day, any day
        (SettlementCycle.D1, date(2026, 10, 3), date(2026, 10, 4)),  # D+1: the next calendar day
        (SettlementCycle.T1, date(2026, 10, 3), date(2026, 10, 8)),
    ],
)
def test_each_settlement_cycle(cycle: SettlementCycle, day: date, expected: date) -> None:
    """T+0 waits for a working day, D+0/D+1 do not, T+1 is the next working day."""
    assert expected == arrival_date(day, cycle).arrival_date


@pytest.mark.parametrize(
    ("cycle", "day", "expected"),
    [
        (SettlementCycle.D1, date(2026, 12, 31), (date(2027, 1, 1), False)),
        (SettlementCycle.D0, date(2027, 2, 6), (date(2027, 2, 6), False)),
        (SettlementCycle.T0, date(2027, 2, 6), (date(2027, 2, 11), True)),
        (SettlementCycle.T1, date(2026, 12, 31), (date(2027, 1, 4), True)),
    ],
)
def test_only_a_working_day_cycle_is_provisional(
    cycle: SettlementCycle, day: date, expected: tuple[date, bool]
) -> None:
    """D+0 and D+1 are calendar days: a State Council notice cannot move them, so a date in
    an unpublished year (2027) is not marked provisional; T+0 and T+1 still are."""
    found = arrival_date(day, cycle)
    assert expected == (found.arrival_date, found.provisional)


@pytest.mark.parametrize("day", [date.min, date.max, date(1999, 12, 31), date(2100, 1, 1)])
def test_days_outside_the_covered_range_are_refused(day: date) -> None:
    """A day at the edge of Python's range would overflow its bounds: refused, saying so."""
    with pytest.raises(ClearingError, match="outside the days clearing covers"):
        trading_day_bounds(day)
    with pytest.raises(ClearingError, match="outside the days clearing covers"):
        arrival_date(day)


def test_an_override_table_declaring_everything_off_is_an_error() -> None:
    """Overrides that leave no working day in 60 days stop the search with a reason."""
    calendar = WorkingDayCalendar({date(2026, 10, 1) + timedelta(n): False for n in range(70)})
    with pytest.raises(ClearingError, match="no working day within 60 days"):
        arrival_date(date(2026, 9, 30), calendar=calendar)


_DAYS = st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31))
_T_CYCLES = st.sampled_from([SettlementCycle.T1, SettlementCycle.T0])


@settings(max_examples=300)
@given(day=_DAYS, cycle=_T_CYCLES)
def test_a_t_arrival_is_a_working_day_never_before_the_trading_day(
    day: date, cycle: SettlementCycle
) -> None:
    """T+0 and T+1 land on a working day, on or after the trading day (after, for T+1)."""
    found = arrival_date(day, cycle)
    earliest = day if cycle is SettlementCycle.T0 else day + timedelta(1)
    assert (True, True) == (
        CALENDAR.is_working_day(found.arrival_date),
        found.arrival_date >= earliest,
    )


@settings(max_examples=300)
@given(
    day=_DAYS, gap=st.integers(min_value=0, max_value=40), cycle=st.sampled_from(SettlementCycle)
)
def test_arrival_is_monotonic_in_the_trading_day(
    day: date, gap: int, cycle: SettlementCycle
) -> None:
    """A later trading day never arrives earlier."""
    assert (
        arrival_date(day, cycle).arrival_date
        <= arrival_date(day + timedelta(gap), cycle).arrival_date
    )


@settings(max_examples=200)
@given(day=_DAYS)
def test_provisional_exactly_when_an_unpublished_year_is_touched(day: date) -> None:
    """An arrival is provisional iff the trading day or the arrival date is in an unpublished
    year (2027 here)."""
    found = arrival_date(day)
    touched = {day.year, found.arrival_date.year}
    assert (2027 in touched) == found.provisional


# --- what people type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-09-30T10:00", datetime(2026, 9, 30, 2, 0, tzinfo=UTC)),
        ("2026-09-30 10:00:30", datetime(2026, 9, 30, 2, 0, 30, tzinfo=UTC)),
        ("2026-09-30T02:00Z", datetime(2026, 9, 30, 2, 0, tzinfo=UTC)),
        ("2026-09-30T10:00+08:00", datetime(2026, 9, 30, 2, 0, tzinfo=UTC)),
        # what people paste: fractions of a second and the offsets ISO 8601 allows
        ("2026-09-30T02:00:00.000Z", datetime(2026, 9, 30, 2, 0, tzinfo=UTC)),  # JavaScript
        ("2026-09-30 10:00:00.123456+08:00", datetime(2026, 9, 30, 2, 0, 0, 123456, tzinfo=UTC)),
        ("2026-09-30T10:00:00,123456789+08:00",  # date --iso-8601=ns: cut, not rounded
         datetime(2026, 9, 30, 2, 0, 0, 123456, tzinfo=UTC)),
        ("2026-09-30 10:00:00.5+08", datetime(2026, 9, 30, 2, 0, 0, 500000, tzinfo=UTC)),
        ("2026-09-30T02:00z", datetime(2026, 9, 30, 2, 0, tzinfo=UTC)),
        ("2026-09-30t10:00:00-0100", datetime(2026, 9, 30, 11, 0, tzinfo=UTC)),
        ("2026-09-30T10:00:00.25", datetime(2026, 9, 30, 2, 0, 0, 250000, tzinfo=UTC)),
        ("2026-09-29T22:59:59.9999999", datetime(2026, 9, 29, 14, 59, 59, 999999, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_moments_are_beijing_time_unless_they_say(text: str, expected: datetime) -> None:
    """A typed time is Beijing time; Z or an offset says otherwise."""
    assert expected == parse_moment(text)


@pytest.mark.parametrize(
    "text", ["2026-02-30T10:00", "2026-09-30", "2026-09-30T25:00", "yesterday", "2026-09-30T10:00 "
             "+08:00", "２０２６-09-30T10:00", "2026-09-30T10:00+99:00", "2026-09-30T10:00.5",
             "2026-09-30T10:00:00.", "2026-09-30T10:00:00.1234567890", "2026-09-30T10:00+8"]
)  # fmt: skip
def test_bad_moments_are_refused(text: str) -> None:
    """Anything but a real Beijing (or offset) time is refused with the form to use."""
    with pytest.raises(ClearingError, match=r"must be YYYY-MM-DDTHH:MM\[:SS\[\.fraction\]\]"):
        parse_moment(text)


@pytest.mark.parametrize("text", ["2026-02-30", "2026-9-30", "30/09/2026", "", "2026-09-30T00:00"])
def test_bad_days_are_refused(text: str) -> None:
    """A day is a real date written YYYY-MM-DD."""
    with pytest.raises(ClearingError, match="YYYY-MM-DD"):
        parse_day(text)
