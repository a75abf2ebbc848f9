"""Trading day (日切), China's working days, and the funds-arrival date (到账日).

Theory of operation
-------------------
*Trading day.* A transaction belongs to the trading day in which the host
approved it. Days end at the acquirer's cut-off (日切), a setting with a
default of 23:00 Beijing time: a sale approved at 23:30 on 29 September trades
on 30 September. :func:`trading_day` is the one function that decides it;
statements, exports, the CLI and the back office all call it. Times are
stored in UTC and shown in Beijing time (UTC+8: China has had no daylight
saving since 1991, so a fixed offset is exact and needs no tz database).

The cut-off may change over time (:class:`CutoffSchedule`): a change effective
from date D makes trading day D end at the new cut-off, so the days before D
keep the bounds they were cleared with. A cut-off is 00:00 (the trading day is
the calendar day) or between 12:00 and 23:59 (trading day D runs from the
cut-off on D-1 to the cut-off on D). Trading days never overlap, never skip,
and :func:`trading_day` never goes back as time goes on;
:func:`trading_day_bounds` gives the UTC interval of a day.

*Working days.* :class:`WorkingDayCalendar` answers "is this a working day in
China": an operator's override wins (a date is, or is not, a working day);
otherwise the ``holidays`` package's China calendar through
``is_working_day()``, which knows the statutory holidays *and* the make-up
working days (调休: a Saturday or Sunday worked to bridge a holiday), which
are not entries of its dictionary.

*Provisional years.* For a year without a State Council notice yet, the
library silently returns rule-based holidays and no make-up days. A year is
*published* when the installed library carries that year's notice — known by
the make-up working days it holds for the year (every notice since 2001 has
had them) — or when an operator has marked it published after entering the
notice's days as overrides. Any date computed from an unpublished year is
*provisional* and is shown so wherever it appears.

*Arrival.* :func:`arrival_date` applies the merchant's settlement cycle:
T+1 (the next working day after the trading day, holidays postponing it:
节假日顺延), T+0 (the trading day if it is a working day, else the next one),
D+0 (the trading day itself, any day) and D+1 (the next calendar day).
Only the T cycles read the working-day calendar, so only their dates can be
provisional: a D+0 or D+1 date is the same whatever a notice will say.

Pure: no clock, no I/O. Dates in, dates out.
"""

from __future__ import annotations

import bisect
import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

import holidays

from posbatch.batch.cards import quoted_as_typed
from posbatch.batch.model import BEIJING, beijing
from posbatch.errors import ClearingError

__all__ = [
    "BEIJING",
    "CUTOFF_DEFAULT",
    "CUTOFF_EARLIEST",
    "DAY_EARLIEST",
    "DAY_LATEST",
    "WORKING_DAY_SEARCH_DAYS_MAX",
    "Arrival",
    "CutoffChange",
    "CutoffSchedule",
    "SettlementCycle",
    "WorkingDayCalendar",
    "arrival_date",
    "beijing",
    "check_cutoff",
    "check_day",
    "library_publishes",
    "parse_cutoff",
    "parse_day",
    "parse_moment",
    "trading_day",
    "trading_day_bounds",
]

CUTOFF_DEFAULT: Final = time(23, 0)
# A cut-off is midnight or in the afternoon/evening: trading day D is named after the
# calendar day on which it ends (a cut-off at 02:00 would name it after the next day).
CUTOFF_EARLIEST: Final = time(12, 0)
MIDNIGHT: Final = time(0, 0)
# No stretch of non-working days in China comes near this; a longer search means the
# overrides declare a whole season off — refuse rather than loop.
WORKING_DAY_SEARCH_DAYS_MAX: Final = 60
# The first year of State Council holiday notices the library carries.
NOTICES_FIRST_YEAR: Final = 2001
# The days clearing works with: card payments under this profile, and a calendar to compute
# over (a date at the edge of Python's range would overflow a day's bounds).
DAY_EARLIEST: Final = date(2000, 1, 1)
DAY_LATEST: Final = date(2099, 12, 31)


class SettlementCycle(enum.StrEnum):
    """When a trading day's money reaches the merchant."""

    T1 = "T+1"  # the next working day after the trading day (the default)
    T0 = "T+0"  # the trading day if a working day, else the next working day
    D0 = "D+0"  # the trading day itself, working day or not
    D1 = "D+1"  # the next calendar day

    @property
    def instant(self) -> bool:
        """An instant cycle: paid out on the trading day, faster than T+1 — on the days it
        is (:attr:`Arrival.instant`), the schedule's extra (instant) rate applies."""
        return self in (SettlementCycle.T0, SettlementCycle.D0)


# --- trading day ------------------------------------------------------------------------


def check_cutoff(cutoff: time) -> time:
    """``cutoff`` if it is a valid cut-off (00:00, or 12:00–23:59 on the minute)."""
    if cutoff.second or cutoff.microsecond or cutoff.tzinfo is not None:
        raise ClearingError(f"a cut-off is a whole minute of Beijing time, not {cutoff}")
    if cutoff != MIDNIGHT and cutoff < CUTOFF_EARLIEST:
        raise ClearingError(
            f"cut-off {cutoff:%H:%M} is before {CUTOFF_EARLIEST:%H:%M}: use 00:00 (the "
            f"calendar day) or a time from {CUTOFF_EARLIEST:%H:%M} to 23:59"
        )
    return cutoff


@dataclass(frozen=True, slots=True)
class CutoffChange:
    """From trading day ``effective_from`` on, days end at ``cutoff`` (Beijing time)."""

    effective_from: date
    cutoff: time

    def __post_init__(self) -> None:
        check_cutoff(self.cutoff)


@dataclass(frozen=True, slots=True)
class CutoffSchedule:
    """The cut-off over time: :data:`CUTOFF_DEFAULT` until the first change."""

    changes: tuple[CutoffChange, ...] = ()
    _days: tuple[date, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.changes, key=lambda change: change.effective_from))
        days = tuple(change.effective_from for change in ordered)
        if len(set(days)) != len(days):
            raise ClearingError("two cut-off changes take effect on the same day")
        object.__setattr__(self, "changes", ordered)
        object.__setattr__(self, "_days", days)

    def cutoff_on(self, day: date) -> time:
        """The cut-off that ends trading day ``day``."""
        index = bisect.bisect_right(self._days, day)
        return CUTOFF_DEFAULT if index == 0 else self.changes[index - 1].cutoff


DEFAULT_CUTOFFS: Final = CutoffSchedule()


def trading_day(moment: datetime, cutoffs: CutoffSchedule = DEFAULT_CUTOFFS) -> date:
    """The trading day of a transaction approved at ``moment`` (naive = UTC).

    >>> trading_day(datetime(2026, 9, 29, 15, 30, tzinfo=UTC))  # 23:30 Beijing
    datetime.date(2026, 9, 30)
    """
    local = beijing(moment)
    day = local.date()
    cutoff = cutoffs.cutoff_on(day)
    if cutoff != MIDNIGHT and local.time() >= cutoff:
        return day + timedelta(days=1)
    return day


def _day_end(day: date, cutoffs: CutoffSchedule) -> datetime:
    cutoff = cutoffs.cutoff_on(day)
    if cutoff == MIDNIGHT:
        local = datetime.combine(day + timedelta(days=1), MIDNIGHT, BEIJING)
    else:
        local = datetime.combine(day, cutoff, BEIJING)
    return local.astimezone(UTC)


def check_day(day: date) -> date:
    """``day`` if clearing covers it (:data:`DAY_EARLIEST`..:data:`DAY_LATEST`)."""
    if not DAY_EARLIEST <= day <= DAY_LATEST:
        raise ClearingError(
            # "from … to …", never "2000-01-01..2099-12-31": the card-number net of an error
            # line reads two dates joined by separators as one 16-digit number and masks it
            f"{day} is outside the days clearing covers (from {DAY_EARLIEST} to {DAY_LATEST})"
        )
    return day


def trading_day_bounds(
    day: date, cutoffs: CutoffSchedule = DEFAULT_CUTOFFS
) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC: exactly the moments whose :func:`trading_day` is ``day``."""
    check_day(day)
    return _day_end(day - timedelta(days=1), cutoffs), _day_end(day, cutoffs)


# --- working days -----------------------------------------------------------------------


@functools.cache
def _china(year: int) -> holidays.HolidayBase:
    calendar: holidays.HolidayBase = holidays.country_holidays("CN", years=year)
    return calendar


@functools.cache
def _china_names(year: int, language: str) -> dict[date, str]:
    names = holidays.country_holidays("CN", years=year, language=language)
    return {day: str(name) for day, name in names.items()}


@functools.cache
def library_publishes(year: int) -> bool:
    """Whether the installed ``holidays`` carries the State Council notice for ``year``.

    A notice always moves some days: the library then holds that year's make-up
    working days (weekend days worked). Without a notice it holds none — the
    rule-based holidays it still returns are a guess.
    """
    if year < NOTICES_FIRST_YEAR:
        return False
    return any(day.year == year for day in _china(year).weekend_workdays)


@dataclass(frozen=True, slots=True)
class WorkingDayCalendar:
    """China's working days: ``overrides`` (date → working?) win over the library.

    ``published_years``: years an operator marked published (their notice's
    days entered as overrides before the library carried them).
    """

    overrides: Mapping[date, bool] = field(default_factory=dict)
    published_years: frozenset[int] = frozenset()

    def is_working_day(self, day: date) -> bool:
        override = self.overrides.get(day)
        if override is not None:
            return override
        return bool(_china(day.year).is_working_day(day))

    def is_published(self, year: int) -> bool:
        return year in self.published_years or library_publishes(year)

    def is_provisional(self, day: date) -> bool:
        """``day``'s status is a guess: its year has no notice yet."""
        return not self.is_published(day.year)

    def working_day_on_or_after(self, day: date) -> tuple[date, bool]:
        """The first working day from ``day`` on, and whether any day looked at was provisional."""
        provisional = False
        for offset in range(WORKING_DAY_SEARCH_DAYS_MAX + 1):
            candidate = day + timedelta(days=offset)
            provisional = provisional or self.is_provisional(candidate)
            if self.is_working_day(candidate):
                return candidate, provisional
        raise ClearingError(
            f"no working day within {WORKING_DAY_SEARCH_DAYS_MAX} days from {day}: "
            "check the working-day overrides"
        )

    def days_off(self, year: int) -> list[tuple[date, bool, str]]:
        """Every date of ``year`` whose status differs from Mon–Fri: (date, working?, why).

        Weekdays off (holidays) and weekend days worked (make-up days), from the
        library, then the overrides over them.
        """
        found: dict[date, tuple[bool, str]] = {}
        english = _china_names(year, "en_US")
        for day, name in sorted(_china_names(year, "zh_CN").items()):
            if day.year == year and day.weekday() < 5:
                found[day] = (False, f"{name} {english.get(day, '')}".strip())
        for day in sorted(_china(year).weekend_workdays):
            if day.year == year:
                found[day] = (True, "make-up working day 调休上班")
        for day, working in self.overrides.items():
            if day.year == year:
                found[day] = (working, "override")
        return [(day, working, why) for day, (working, why) in sorted(found.items())]


@dataclass(frozen=True, slots=True)
class Arrival:
    """When a trading day's net reaches the merchant."""

    trading_day: date
    cycle: SettlementCycle
    arrival_date: date
    provisional: bool  # computed through a year without a published notice

    @property
    def instant(self) -> bool:
        """Whether this day's sales pay the schedule's instant rate: the cycle is an
        instant one and the money arrives on the trading day itself. T+0 on a non-working
        day arrives on the next working day, as T+1 would: nothing paid faster, so
        nothing extra charged. (T+1 always arrives after the trading day.)"""
        return self.cycle.instant and self.arrival_date == self.trading_day


def arrival_date(
    day: date,
    cycle: SettlementCycle = SettlementCycle.T1,
    calendar: WorkingDayCalendar | None = None,
) -> Arrival:
    """The arrival date of trading day ``day`` under ``cycle`` (see the module docstring)."""
    check_day(day)
    calendar = calendar if calendar is not None else WorkingDayCalendar()
    if cycle is SettlementCycle.D0:
        # calendar days: no notice can move them, so they are never provisional
        arrival, provisional = day, False
    elif cycle is SettlementCycle.D1:
        arrival, provisional = day + timedelta(days=1), False
    elif cycle is SettlementCycle.T0:
        arrival, provisional = calendar.working_day_on_or_after(day)
    else:
        arrival, provisional = calendar.working_day_on_or_after(day + timedelta(days=1))
        provisional = provisional or calendar.is_provisional(day)
    return Arrival(day, cycle, arrival, provisional)


def overrides_from(rows: Iterable[tuple[date, bool]]) -> dict[date, bool]:
    """An override mapping from (date, working) rows; a date given twice is an error."""
    found: dict[date, bool] = {}
    for day, working in rows:
        if day in found:
            raise ClearingError(f"working-day override for {day} given twice")
        found[day] = working
    return found


# --- what people type -------------------------------------------------------------------

_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# ISO 8601 as people paste it: `date -Is`, `date --iso-8601=ns` (a comma and nine digits),
# JavaScript's toISOString (.000Z), Python's isoformat (a space), PostgreSQL's (+08).
_MOMENT: Final = re.compile(
    r"(?P<day>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]"
    r"(?P<clock>[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,](?P<fraction>[0-9]{1,9}))?)?)"
    r"(?P<zone>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
MOMENT_FORM: Final = (
    "YYYY-MM-DDTHH:MM[:SS[.fraction]] (Beijing time), or ending in Z or ±HH[:MM] "
    "(ISO 8601), like 2026-09-30T10:00:00.250+08:00"
)
_CUTOFF: Final = re.compile(r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})")


def parse_day(text: str) -> date:
    """``"2026-09-30"`` → a date; anything else is a ClearingError that says the form."""
    stripped = text.strip()
    try:
        if _DAY.fullmatch(stripped):
            return check_day(date.fromisoformat(stripped))
    except ValueError:
        pass
    raise ClearingError(f"date{quoted_as_typed(text)} must be a real date written YYYY-MM-DD")


def parse_moment(text: str) -> datetime:
    """``"2026-09-30T10:00"`` (Beijing time unless it ends in Z or ±HH[:MM]) → aware UTC.

    Seconds may carry a fraction (``.`` or ``,``, up to nine digits: beyond the
    microsecond it is cut, never rounded — a moment is never moved past a cut-off)."""
    stripped = text.strip()
    match = _MOMENT.fullmatch(stripped) if stripped.isascii() else None
    if match is not None:
        clock = match["clock"]
        fraction = match["fraction"]
        if fraction is not None:
            clock = clock[: clock.index(":") + 6] + "." + fraction[:6].ljust(6, "0")
        try:
            local = datetime.fromisoformat(f"{match['day']}T{clock}")
            zone = match["zone"]
            if zone is None:
                moment = local.replace(tzinfo=BEIJING)
            elif zone in "Zz":
                moment = local.replace(tzinfo=UTC)
            else:
                digits = zone[1:].replace(":", "").ljust(4, "0")
                moment = datetime.fromisoformat(
                    f"{match['day']}T{clock}{zone[0]}{digits[:2]}:{digits[2:]}"
                )
            check_day(moment.astimezone(BEIJING).date())
            return moment.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise ClearingError(f"time {text!r} must be {MOMENT_FORM}")


def parse_cutoff(text: str) -> time:
    """``"23:00"`` → a valid cut-off (00:00, or 12:00–23:59)."""
    match = _CUTOFF.fullmatch(text.strip())
    if match is None or int(match["hour"]) > 23 or int(match["minute"]) > 59:
        raise ClearingError(f"cut-off {text!r} must be HH:MM Beijing time, like 23:00")
    return check_cutoff(time(int(match["hour"]), int(match["minute"])))
