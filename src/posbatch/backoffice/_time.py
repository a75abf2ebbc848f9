"""Beijing time and the trading day (日切 cut-off): the ONE place the back office decides them.

Times are stored as UTC; people read them in Beijing time (UTC+8 all year: China has had
no daylight saving time since 1991, so a fixed offset is exact for every date the store
can hold). A trading day ends at the acquirer's cut-off, 23:00 Beijing time unless set
otherwise: a sale at 23:30 on 5 December belongs to the trading day of 6 December.

A cut-off of 00:00 means the trading day is the calendar day (it ends at 24:00). Every
other cut-off C makes trading day D run from C on D-1 to C on D, Beijing time.

When the clearing branch's ``posbatch.clearing`` trading-day function lands, this module
should call it instead of deciding on its own (see docs/backoffice.md).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Final

from posbatch.errors import ConfigError

__all__ = [
    "BEIJING",
    "CUTOFF_DEFAULT",
    "beijing",
    "parse_beijing",
    "parse_cutoff",
    "trading_day",
    "trading_day_bounds",
]

BEIJING: Final = timezone(timedelta(hours=8), "CST")
CUTOFF_DEFAULT: Final = time(23, 0)
_DAY: Final = timedelta(days=1)
_LOCAL_FORMATS: Final = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M",
                         "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")  # fmt: skip
_CUTOFF: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def _aware_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (naive values are UTC, as the store keeps them)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def beijing(moment: datetime) -> datetime:
    """``moment`` (aware, or naive UTC) in Beijing time."""
    return _aware_utc(moment).astimezone(BEIJING)


def _end_of_day(cutoff: time) -> timedelta:
    """How long after local midnight the trading day of that date ends (00:00 → 24 h)."""
    offset = timedelta(hours=cutoff.hour, minutes=cutoff.minute)
    return offset if offset else _DAY


def trading_day(moment: datetime, *, cutoff: time = CUTOFF_DEFAULT) -> date:
    """The trading day ``moment`` belongs to: the date whose cut-off it comes before."""
    local = beijing(moment).replace(tzinfo=None)
    return (local + (_DAY - _end_of_day(cutoff))).date()


def trading_day_bounds(day: date, *, cutoff: time = CUTOFF_DEFAULT) -> tuple[datetime, datetime]:
    """[start, end) of trading day ``day`` as aware UTC datetimes."""
    end_local = datetime.combine(day, time(0), tzinfo=BEIJING) + _end_of_day(cutoff)
    return (end_local - _DAY).astimezone(UTC), end_local.astimezone(UTC)


def parse_cutoff(text: str) -> time:
    """``"23:00"`` → 23:00. ConfigError for anything but HH:MM (00:00–23:59)."""
    match = _CUTOFF.fullmatch(text.strip())
    if match is None:
        raise ConfigError("the cut-off must be HH:MM, like 23:00")
    return time(int(match[1]), int(match[2]))


def parse_beijing(text: str) -> datetime:
    """A Beijing wall-clock time typed by a person (``2026-12-05T23:30``, or a date) → UTC.

    ConfigError (one line, never echoing what was typed) for anything else.
    """
    stripped = text.strip()
    if stripped.isascii() and len(stripped) <= 19:
        for layout in _LOCAL_FORMATS:
            try:
                local = datetime.strptime(stripped, layout)
            except ValueError:
                continue
            return local.replace(tzinfo=BEIJING).astimezone(UTC)
    raise ConfigError("a time must be Beijing time like 2026-12-05 23:30")
