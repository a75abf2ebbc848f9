"""Beijing time and the trading day (日切 cut-off): the ONE place the back office decides them.

Times are stored as UTC; people read them in Beijing time (UTC+8 all year: China has had
no daylight saving time since 1991, so a fixed offset is exact for every date the store
can hold). A trading day ends at the acquirer's cut-off, 23:00 Beijing time unless set
otherwise: a sale at 23:30 on 5 December belongs to the trading day of 6 December.

A cut-off of 00:00 means the trading day is the calendar day (it ends at 24:00). Every
other cut-off C makes trading day D run from C on D-1 to C on D, Beijing time.

The day itself is clearing's (:func:`posbatch.clearing.trading_day`), so a transaction
shown on trading day D in the console is on the statement of day D. The console follows
the acquirer's cut-off schedule (``posbatch host set-cutoff``) unless ``--cutoff`` fixes one.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Final, TypeAlias

from posbatch import clearing
from posbatch.errors import ClearingError, ConfigError

__all__ = [
    "BEIJING",
    "CUTOFF_DEFAULT",
    "Cutoff",
    "beijing",
    "check_day",
    "cutoff_on",
    "parse_beijing",
    "parse_cutoff",
    "schedule",
    "trading_day",
    "trading_day_bounds",
]

CUTOFF_DEFAULT: Final = clearing.CUTOFF_DEFAULT
BEIJING: Final = clearing.BEIJING
# What decides the trading days the console shows: one cut-off (``backoffice serve
# --cutoff``) or the acquirer's schedule (``posbatch host set-cutoff``), as clearing uses.
Cutoff: TypeAlias = time | clearing.CutoffSchedule
_LOCAL_FORMATS: Final = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M",
                         "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")  # fmt: skip
_CUTOFF: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def schedule(cutoff: Cutoff) -> clearing.CutoffSchedule:
    """``cutoff`` as a schedule: one cut-off holds for every day clearing covers."""
    if isinstance(cutoff, clearing.CutoffSchedule):
        return cutoff
    return clearing.CutoffSchedule((clearing.CutoffChange(clearing.DAY_EARLIEST, cutoff),))


def check_day(day: date) -> date:
    """``day`` if clearing covers it; ConfigError (400) otherwise — also where nothing is
    computed for the day yet (a page that links to day ± 1 must not reach year 0 or 10000)."""
    try:
        return clearing.check_day(day)
    except ClearingError as exc:
        raise ConfigError(f"date: {exc}") from None


def beijing(moment: datetime) -> datetime:
    """``moment`` (aware, or naive UTC) in Beijing time."""
    return clearing.beijing(moment)


def trading_day(moment: datetime, *, cutoff: Cutoff = CUTOFF_DEFAULT) -> date:
    """The trading day ``moment`` belongs to: clearing's, so the console and the statements
    always name the same day (:func:`posbatch.clearing.trading_day`)."""
    return clearing.trading_day(moment, schedule(cutoff))


def trading_day_bounds(day: date, *, cutoff: Cutoff = CUTOFF_DEFAULT) -> tuple[datetime, datetime]:
    """[start, end) of trading day ``day`` as aware UTC datetimes; a day outside what
    clearing covers is a one-line ConfigError."""
    try:
        return clearing.trading_day_bounds(day, schedule(cutoff))
    except ClearingError as exc:
        raise ConfigError(str(exc)) from exc


def cutoff_on(day: date, *, cutoff: Cutoff = CUTOFF_DEFAULT) -> time:
    """The cut-off that ends trading day ``day`` (what the console's footer shows)."""
    return schedule(cutoff).cutoff_on(day)


def parse_cutoff(text: str) -> time:
    """``"23:00"`` → 23:00. ConfigError for anything but HH:MM that clearing takes as a
    cut-off (00:00, or 12:00–23:59: ``posbatch host set-cutoff`` takes the same)."""
    match = _CUTOFF.fullmatch(text.strip())
    if match is None:
        raise ConfigError("the cut-off must be HH:MM, like 23:00")
    try:
        return clearing.check_cutoff(time(int(match[1]), int(match[2])))
    except ClearingError as exc:
        raise ConfigError(str(exc)) from exc


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
            try:
                return local.replace(tzinfo=BEIJING).astimezone(UTC)
            except OverflowError:  # 0001-01-01 07:59 Beijing is before UTC's year 1
                break
    raise ConfigError("a time must be Beijing time like 2026-12-05 23:30")
