"""The trading day (日切 cut-off, default 23:00 Beijing) at its boundaries."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from posbatch.backoffice import (
    beijing,
    parse_beijing,
    parse_cutoff,
    trading_day,
    trading_day_bounds,
)
from posbatch.errors import ConfigError


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment_utc", "expected"),
    [
        ("2026-12-05T14:59:59", date(2026, 12, 5)),  # 22:59:59 Beijing: before the cut-off
        ("2026-12-05T15:00:00", date(2026, 12, 6)),  # 23:00:00 Beijing: the next day begins
        ("2026-12-05T15:30:00", date(2026, 12, 6)),  # 23:30 Beijing: next trading day
        ("2026-12-05T16:00:00", date(2026, 12, 6)),  # midnight Beijing
        ("2026-12-05T23:59:59", date(2026, 12, 6)),  # 07:59 Beijing
        ("2026-12-06T00:00:00", date(2026, 12, 6)),  # midnight UTC = 08:00 Beijing
        ("2026-12-06T02:00:00", date(2026, 12, 6)),  # the first hours of a day in UTC
        ("2026-12-31T15:00:00", date(2027, 1, 1)),  # 23:00 on New Year's Eve
    ],
)
def test_trading_day_at_the_default_cutoff(moment_utc: str, expected: date) -> None:
    """A sale at or after 23:00 Beijing belongs to the next trading day."""
    assert expected == trading_day(utc(moment_utc))


def test_a_naive_time_is_utc() -> None:
    """The store's naive times are UTC."""
    assert date(2026, 12, 6) == trading_day(datetime(2026, 12, 5, 15, 30))


@pytest.mark.parametrize(
    ("cutoff", "moment_utc", "expected"),
    [
        (time(0, 0), "2026-12-05T15:59:59", date(2026, 12, 5)),  # 23:59:59: calendar day
        (time(0, 0), "2026-12-05T16:00:00", date(2026, 12, 6)),
        (time(21, 0), "2026-12-05T12:59:00", date(2026, 12, 5)),  # 20:59 on the 5th: day 5
        (time(21, 0), "2026-12-05T13:00:00", date(2026, 12, 6)),  # 21:00: day 6 begins
    ],
)
def test_other_cutoffs(cutoff: time, moment_utc: str, expected: date) -> None:
    """00:00 means the calendar day; an earlier evening cut-off starts the next day sooner
    (a cut-off before 12:00 is refused, as clearing refuses it)."""
    assert expected == trading_day(utc(moment_utc), cutoff=cutoff)


def test_bounds_are_the_cutoffs_in_utc() -> None:
    """Trading day 6 December runs from 5 Dec 23:00 to 6 Dec 23:00 Beijing (15:00 UTC)."""
    assert (utc("2026-12-05T15:00:00"), utc("2026-12-06T15:00:00")) == trading_day_bounds(
        date(2026, 12, 6)
    )


def test_every_moment_is_inside_the_bounds_of_its_day() -> None:
    """trading_day and trading_day_bounds agree, minute by minute over two days."""
    moment = utc("2026-12-05T00:00:00")
    for minute in range(0, 2 * 24 * 60, 7):
        at = datetime.fromtimestamp(moment.timestamp() + minute * 60, UTC)
        start, end = trading_day_bounds(trading_day(at))
        assert start <= at < end


def test_beijing_is_utc_plus_8() -> None:
    assert "2026-12-05 23:30" == f"{beijing(utc('2026-12-05T15:30:00')):%Y-%m-%d %H:%M}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-05 23:30", utc("2026-12-05T15:30:00")),
        ("2026-12-05T23:30", utc("2026-12-05T15:30:00")),
        ("2026-12-06", utc("2026-12-05T16:00:00")),
    ],
)
def test_times_typed_are_beijing_time(text: str, expected: datetime) -> None:
    assert expected == parse_beijing(text)


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "2026-12-05 25:00", "9" * 400])
def test_bad_times_are_one_line_errors(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_beijing(text)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 120


@pytest.mark.parametrize("text", ["24:00", "23:60", "2300", "", "7:00"])
def test_bad_cutoffs(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_cutoff(text)
