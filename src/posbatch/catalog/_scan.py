"""Barcode scans → GTIN, lot, expiry, serial, quantity. Pure: no database, no clock.

Theory of operation
-------------------
A scanner sends a string: optionally a symbology identifier (``]C1`` GS1-128,
``]d2`` GS1 DataMatrix, ``]Q3`` GS1 QR, ``]e0`` GS1 DataBar, ``]J1`` GS1
DotCode, ``]E0`` EAN/UPC, ``]E4`` EAN-8, ``]I1`` ITF-14), then either a bare
GTIN (EAN-8, UPC-A, EAN-13, GTIN-14; UPC-E after ``]E0``), a GS1 message —
element strings, each an application identifier (AI) and its value — or
China's 20-digit drug traceability code (药品追溯码, ``_trace_code``; plain
Code 128 ``]C0``, QR ``]Q1``, DataMatrix ``]d1`` or no identifier).
Variable-length values (lot (10), serial (21), count (30)…) end at FNC1,
which scanners send as GS (``\\x1d``) or as a configured character such as ``|``.

Symbology identifiers, the AI table (formats, fixed or variable length) and
UPC-E expansion come from ``biip``; GTIN check digits from python-stdnum.
Reading the element strings is done here, because of one case that a greedy
parser (biip's included) cannot get right: a scanner configured not to send
FNC1. Then ``10ABC17261231`` is lot ``ABC17261231`` *or* lot ``ABC`` followed
by expiry (17) 2026-12-31, and nothing in the string says which. So:

- if a separator was seen anywhere in the scan, the scanner sends FNC1, and
  each variable-length value runs to the next separator (or its maximum
  length): one reading, exactly what ``biip.parse`` reads;
- if no separator was seen, every way of cutting a variable-length value
  where one of :data:`SPLIT_AIS` could start is tried as well; each cut whose
  remainder reads as valid element strings (check digits, real dates, no AI
  twice) is a candidate reading. More than one candidate → the scan is
  *ambiguous*: it keeps every candidate and the caller resolves it with a lot
  the catalog knows (:meth:`Scan.resolve`). It never guesses.

Dates are YYMMDD; day ``00`` means the last day of the month (GS1 General
Specifications 7.12), and the century is chosen by the GS1 sliding window
relative to ``today``, which the caller passes in.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from biip import ParseError
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.symbology import SymbologyIdentifier
from biip.upc import Upc

from posbatch.catalog._gtin import normalize_gtin
from posbatch.catalog._model import GS1_CSET82
from posbatch.catalog._trace_code import DrugTraceCode, looks_like_trace_code, parse_trace_code
from posbatch.errors import CatalogError, ConfigError, ScanError

__all__ = [
    "DEFAULT_SEPARATORS",
    "SCAN_LENGTH_MAX",
    "SCAN_READINGS_MAX",
    "SPLIT_AIS",
    "ElementString",
    "Scan",
    "ScanReading",
    "gs1_year",
    "parse_scan",
]

GROUP_SEPARATOR = "\x1d"
DEFAULT_SEPARATORS: tuple[str, ...] = (GROUP_SEPARATOR,)
SCAN_LENGTH_MAX = 512
"""Longest scan string read at all (retail GS1 scans are well under 100 characters)."""
SCAN_READINGS_MAX = 16
"""Most candidate readings an ambiguous scan may have before it is refused as unreadable."""
_PARTIAL_READINGS_MAX = 256
"""Most partial readings explored per scan (bounds the work on hostile input)."""

SPLIT_AIS = frozenset({"01", "02", "10", "11", "13", "15", "16", "17", "21", "30", "37"})
"""AIs that, when no separator was seen, may start inside a variable-length value."""

_GTIN_SYMBOLOGIES = frozenset({"E0", "E3", "E4", "I1"})
_GS1_SYMBOLOGIES = frozenset({"C1", "e0", "d2", "Q3", "J1"})
_PLAIN_SYMBOLOGIES = frozenset({"C0", "Q1", "d1"})
"""Symbologies without FNC1 in first position: a drug traceability code may come in them."""
_DOTCODE = "]J1"
"""GS1 DotCode (ISO/IEC 15424 identifier ]J1): biip's table does not have it."""
_DATE_AIS = frozenset({"11", "13", "15", "16", "17"})
_COUNT_AIS = frozenset({"30", "37"})
_TITLES = {
    "01": "GTIN",
    "10": "lot",
    "11": "production date",
    "13": "packaging date",
    "15": "best-before date",
    "02": "GTIN of contained items",
    "16": "sell-by date",
    "17": "expiry",
    "21": "serial",
    "30": "count",
    "37": "count",
}
_SIX_DIGITS = re.compile(r"\d{6}")


@dataclass(frozen=True, slots=True)
class ElementString:
    """One GS1 element string: application identifier and value, as scanned."""

    ai: str
    value: str


@dataclass(frozen=True, slots=True)
class ScanReading:
    """One complete, valid reading of a scan."""

    gtin: str
    """GTIN-14 (check digit verified): (01), or (02) for a logistic unit's contents."""
    lot: str | None
    expiry: dt.date | None
    """The expiry (17); without it the best-before date (15)."""
    serial: str | None
    quantity: int | None
    element_strings: tuple[ElementString, ...]
    trace_code: str | None = None
    """A drug traceability code scanned for this pack (set when the till maps one)."""

    def hri(self) -> str:
        """Human-readable form, as printed under a barcode: ``(01)…(10)…``."""
        return "".join(f"({element.ai}){element.value}" for element in self.element_strings)

    def to_json(self) -> dict[str, Any]:
        return {
            "gtin": self.gtin,
            "lot": self.lot,
            "expiry": self.expiry.isoformat() if self.expiry else None,
            "serial": self.serial,
            "quantity": self.quantity,
            "hri": self.hri(),
        }


@dataclass(frozen=True, slots=True)
class Scan:
    """What a scan string read as. ``raw`` is kept verbatim for the audit trail."""

    raw: str
    symbology_identifier: str | None
    separator_seen: bool
    readings: tuple[ScanReading, ...]
    """One reading, or several when the scan is ambiguous; none for a traceability code."""
    trace_code: DrugTraceCode | None = None
    """A drug traceability code (药品追溯码): the product is found by its prefix."""

    @property
    def ambiguous(self) -> bool:
        return len(self.readings) > 1

    def reading(self) -> ScanReading:
        """The only reading; :class:`ScanError` when the scan is ambiguous."""
        if self.trace_code is not None:
            raise ScanError(
                f"drug traceability code {self.trace_code.code}: the catalog maps its prefix "
                f"{self.trace_code.prefix} to a product"
            )
        if self.ambiguous:
            raise ScanError(
                f"ambiguous scan without separators: {len(self.readings)} readings "
                f"({' | '.join(reading.hri() for reading in self.readings)})"
            )
        return self.readings[0]

    def resolve(self, is_known_lot: Callable[[str, str], bool]) -> ScanReading:
        """The one reading whose (gtin, lot) ``is_known_lot`` accepts, for an ambiguous scan.

        An unambiguous scan returns its reading unchanged. :class:`ScanError`
        when no candidate, or more than one, names a known lot.
        """
        if not self.ambiguous:
            return self.reading()
        known = [
            reading
            for reading in self.readings
            if reading.lot is not None and is_known_lot(reading.gtin, reading.lot)
        ]
        if len(known) == 1:
            return known[0]
        candidates = ", ".join(repr(reading.lot) for reading in self.readings)
        if not known:
            raise ScanError(
                f"ambiguous scan: none of the candidate lots {candidates} is known; "
                "scan again with FNC1 separators or type the lot"
            )
        raise ScanError(
            f"ambiguous scan: several candidate lots are known ({candidates}); type the lot"
        )

    def to_json(self) -> dict[str, Any]:
        code = self.trace_code
        return {
            "raw": self.raw,
            "symbology_identifier": self.symbology_identifier,
            "separator_seen": self.separator_seen,
            "ambiguous": self.ambiguous,
            "readings": [reading.to_json() for reading in self.readings],
            "trace_code": None
            if code is None
            else {"code": code.code, "prefix": code.prefix, "pack_part": code.pack_part},
        }


def parse_scan(raw: str, *, today: dt.date, separators: Iterable[str] = DEFAULT_SEPARATORS) -> Scan:
    """Read one scan string; :class:`ScanError` says exactly what is wrong when it cannot.

    ``separators`` are the characters that stand for FNC1 besides GS; ``today``
    picks the century of two-digit years.
    """
    separator_set = _separator_set(separators)
    if len(raw) > SCAN_LENGTH_MAX:
        raise ScanError(f"scan is {len(raw)} characters long; at most {SCAN_LENGTH_MAX} are read")
    text = raw.strip().strip("".join(separator_set))
    if not text:
        raise ScanError("scan is empty")
    symbology: str | None = None
    if text.startswith(_DOTCODE):
        symbology = _DOTCODE
        text = text[len(_DOTCODE) :].strip("".join(separator_set))
    elif text.startswith("]"):
        identifier = _symbology_identifier(text)
        symbology = identifier.value
        text = text[len(identifier) :].strip("".join(separator_set))
        code = symbology[1:]
        if code in _GTIN_SYMBOLOGIES:
            return Scan(raw, symbology, False, (_plain_reading(text, code),))
        if code in _PLAIN_SYMBOLOGIES and looks_like_trace_code(text):
            return Scan(raw, symbology, False, (), parse_trace_code(text))
        if code not in _GS1_SYMBOLOGIES:
            raise ScanError(
                f"symbology {symbology} ({identifier.iso_symbology.name}) carries neither "
                "a GTIN, GS1 element strings nor a drug traceability code"
            )
    elif text.isascii() and text.isdigit() and len(text) in (8, 12, 13, 14):
        return Scan(raw, None, False, (_plain_reading(text, None),))
    elif looks_like_trace_code(text):
        return Scan(raw, None, False, (), parse_trace_code(text))
    if not text:
        raise ScanError(f"scan holds only the symbology identifier {symbology}")
    separator_seen = any(character in separator_set for character in text)
    readings = _read_message(text, separator_set, separator_seen, today)
    return Scan(raw, symbology, separator_seen, readings)


def _separator_set(separators: Iterable[str]) -> frozenset[str]:
    result = {GROUP_SEPARATOR}
    for separator in separators:
        if len(separator) != 1:
            raise ConfigError(f"a separator is one character, got {separator!r}")
        if separator in GS1_CSET82:
            raise ConfigError(
                f"separator {separator!r} can appear inside a GS1 value; choose e.g. '|' or '~'"
            )
        result.add(separator)
    return frozenset(result)


def _symbology_identifier(text: str) -> SymbologyIdentifier:
    try:
        return SymbologyIdentifier.extract(text)
    except (ParseError, IndexError, ValueError) as exc:
        raise ScanError(f"unknown symbology identifier {text[:3]!r}") from exc


def _plain_reading(digits: str, symbology_code: str | None) -> ScanReading:
    """A bare GTIN: EAN-8, UPC-A, EAN-13, GTIN-14 (UPC-E after ``]E0``; add-on after ``]E3``)."""
    if not digits.isascii() or not digits.isdigit():
        raise ScanError(f"expected a GTIN (digits only), got {digits!r}")
    if symbology_code == "E3" and len(digits) in (15, 18):
        digits = digits[:13]  # EAN-13 followed by its 2- or 5-digit add-on
    if symbology_code == "E0" and len(digits) == 8:
        try:
            digits = Upc.parse(digits).as_upc_a()
        except ParseError as exc:
            raise ScanError(f"UPC-E {digits}: {exc}") from exc
    try:
        gtin = normalize_gtin(digits)
    except CatalogError as exc:
        raise ScanError(str(exc)) from exc
    return ScanReading(gtin, None, None, None, None, (ElementString("01", gtin),))


# --- GS1 messages --------------------------------------------------------------

_Structure = tuple[ElementString, ...]


@functools.lru_cache(maxsize=4096)
def _ai_for(prefix: str) -> GS1ApplicationIdentifier | None:
    """The AI that ``prefix`` (the next four characters) starts with, or None."""
    try:
        return GS1ApplicationIdentifier.extract(prefix)
    except ParseError:
        return None


@functools.lru_cache(maxsize=1024)
def _value_pattern(ai: GS1ApplicationIdentifier) -> re.Pattern[str]:
    """The regex for the value of ``ai`` (biip's pattern without ``^AI`` and ``$``)."""
    if ai.ai in _DATE_AIS:
        return _SIX_DIGITS  # checked as a date below, for a precise message
    pattern = ai.pattern
    assert pattern.startswith("^" + ai.ai) and pattern.endswith("$"), pattern
    return re.compile(pattern[1 + len(ai.ai) : -1])


def _title(ai: str, fallback: str) -> str:
    return _TITLES.get(ai, fallback)


def _read_ai(
    segment: str, position: int, offset: int, *, after: ElementString | None = None
) -> GS1ApplicationIdentifier:
    ai = _ai_for(segment[position : position + 4])
    if ai is not None:
        return ai
    previous = _ai_for(after.ai) if after is not None else None
    if after is not None and previous is not None and previous.separator_required:
        # The value before ran to its format's limit: the rest was meant as part of it.
        problem = _variable_problem(previous, after.value + segment[position:])
        if problem is not None:
            raise problem
    raise ScanError(
        f"unknown application identifier at position {offset + position}: "
        f"{segment[position : position + 4]!r}"
    )


_VARIABLE_FORMAT = re.compile(r"\+([NX])\.\.(\d+)$")


@functools.lru_cache(maxsize=256)
def _variable_spec(ai: GS1ApplicationIdentifier) -> tuple[str, int] | None:
    """("digits" or "GS1 character set 82", maximum length) of a variable-length AI."""
    match = _VARIABLE_FORMAT.search(ai.format)
    if match is None or not ai.separator_required:
        return None
    return ("digits" if match.group(1) == "N" else "GS1 character set 82", int(match.group(2)))


def _outside(value: str, kind: str) -> list[str]:
    if kind == "digits":
        return sorted({character for character in value if not character.isdigit()})
    return sorted(set(value) - GS1_CSET82)


def _variable_problem(ai: GS1ApplicationIdentifier, value: str) -> ScanError | None:
    """Why ``value`` (all of it, up to FNC1) cannot be the value of variable-length ``ai``."""
    spec = _variable_spec(ai)
    if spec is None:
        return None
    kind, maximum = spec
    title = _title(ai.ai, ai.data_title)
    if not value:
        return ScanError(f"({ai.ai}) {title} is empty")
    bad = _outside(value, kind)
    if bad:
        shown = ", ".join(repr(character) for character in bad)
        return ScanError(
            f"({ai.ai}) {title} {value!r} has {shown}, outside {kind}: no GS1 barcode can carry it"
        )
    if len(value) > maximum:
        return ScanError(
            f"({ai.ai}) {title} {value!r} is {len(value)} characters long: at most {maximum}"
        )
    return None


def _greedy(segment: str, offset: int = 0, *, to_separator: bool = False) -> _Structure:
    """The reading a greedy parser gives: each value as long as its format allows.

    ``to_separator``: the scanner sends FNC1, so a variable-length value runs
    to the end of ``segment``; one that cannot is reported precisely (empty,
    too long, a character a barcode cannot carry).
    """
    elements: list[ElementString] = []
    position = 0
    while position < len(segment):
        ai = _read_ai(segment, position, offset, after=elements[-1] if elements else None)
        start = position + len(ai.ai)
        pattern = _value_pattern(ai)
        if to_separator and ai.separator_required:
            match = pattern.fullmatch(segment, start)
            if match is None:
                problem = _variable_problem(ai, segment[start:])
                if problem is not None:
                    raise problem
        else:
            match = pattern.match(segment, start)
        if match is None:
            problem = _variable_problem(ai, segment[start:]) if not segment[start:] else None
            if problem is not None:
                raise problem
            shown = segment[start:] or "nothing"
            raise ScanError(
                f"({ai.ai}) {_title(ai.ai, ai.data_title)} {shown!r} does not match "
                f"the format {ai.format}"
            )
        elements.append(ElementString(ai.ai, segment[start : match.end()]))
        position = match.end()
    return tuple(elements)


def _all_cuts(segment: str) -> list[_Structure]:
    """Every structural reading of ``segment`` when FNC1 may have been left out."""
    memo: dict[int, list[_Structure]] = {}
    explored = 0

    def from_position(position: int) -> list[_Structure]:
        nonlocal explored
        if position == len(segment):
            return [()]
        if position in memo:
            return memo[position]
        result: list[_Structure] = []
        ai = _ai_for(segment[position : position + 4])
        if ai is not None:
            start = position + len(ai.ai)
            pattern = _value_pattern(ai)
            match = pattern.match(segment, start)
            if match is not None:
                ends = [match.end()]
                if ai.separator_required:
                    ends.extend(
                        end
                        for end in range(match.end() - 1, start - 1, -1)
                        if segment[end : end + 2] in SPLIT_AIS
                        and pattern.fullmatch(segment, start, end)
                    )
                for end in ends:
                    element = ElementString(ai.ai, segment[start:end])
                    for tail in from_position(end):
                        result.append((element, *tail))
                        explored += 1
                        if explored > _PARTIAL_READINGS_MAX:
                            raise ScanError(
                                "scan without separators has too many possible readings"
                            )
        memo[position] = result
        return result

    return from_position(0)


def _read_message(
    text: str, separator_set: frozenset[str], separator_seen: bool, today: dt.date
) -> tuple[ScanReading, ...]:
    if separator_seen:
        structure = tuple(
            element
            for segment in _segment_pattern(separator_set).finditer(text)
            for element in _greedy(segment.group(), segment.start(), to_separator=True)
        )
        return (_validate(structure, today),)
    try:
        first: _Structure | None = _greedy(text)
        greedy_error: ScanError | None = None
    except ScanError as exc:
        first, greedy_error = None, exc
    structures = [first] if first is not None else []
    structures.extend(cut for cut in _all_cuts(text) if cut != first)
    readings: list[ScanReading] = []
    first_error: ScanError | None = greedy_error
    for structure in structures:
        try:
            reading = _validate(structure, today)
        except ScanError as exc:
            if first_error is None:
                first_error = exc
            continue
        if reading not in readings:
            readings.append(reading)
    if not readings:
        assert first_error is not None
        raise first_error
    if len(readings) > SCAN_READINGS_MAX:
        raise ScanError(
            f"scan without separators has {len(readings)} possible readings; "
            f"at most {SCAN_READINGS_MAX} are considered"
        )
    return tuple(readings)


@functools.lru_cache(maxsize=64)
def _segment_pattern(separator_set: frozenset[str]) -> re.Pattern[str]:
    """Runs of characters between separators."""
    return re.compile("[^" + "".join(re.escape(c) for c in sorted(separator_set)) + "]+")


def _validate(structure: _Structure, today: dt.date) -> ScanReading:
    """Check digits, dates, counts, repeats and AI pairings of one structural reading.

    Pairings (GS1 General Specifications, mandatory associations and invalid
    pairs): (37) counts the trade items *inside a logistic unit* and goes with
    (02), the GTIN of those items, never with (01); (02) needs (37); (01) and
    (02) never come together. The expiry is (17), else the best-before date (15).
    """
    values: dict[str, str] = {}
    dates: dict[str, dt.date] = {}
    gtin: str | None = None
    for element in structure:
        ai, value = element.ai, element.value
        if ai in values:
            if values[ai] != value:
                raise ScanError(
                    f"({ai}) appears twice with different values: {values[ai]!r} and {value!r}"
                )
            continue
        values[ai] = value
        if ai in ("01", "02"):
            try:
                gtin = normalize_gtin(value)
            except CatalogError as exc:
                raise ScanError(f"({ai}) {exc}") from exc
        elif ai in _DATE_AIS:
            dates[ai] = _gs1_date(ai, value, today)
        elif ai in _COUNT_AIS and (not value or int(value) == 0):
            raise ScanError(f"({ai}) count {value!r} must be at least 1")
    if "01" in values and "02" in values:
        raise ScanError(
            "(01) and (02) in one scan: (02) names the items inside a logistic unit, "
            "which then has no (01)"
        )
    if "37" in values and "02" not in values:
        raise ScanError(
            "(37) counts the trade items inside a logistic unit: it goes with (02), "
            "the GTIN of those items, not with (01)"
        )
    if "02" in values and "37" not in values:
        raise ScanError("(02) names the items inside a logistic unit: (37) must count them")
    if gtin is None:
        raise ScanError("no GTIN (01) in the scan")
    count = values.get("37") or values.get("30")
    return ScanReading(
        gtin=gtin,
        lot=values.get("10"),
        expiry=dates.get("17") or dates.get("15"),
        serial=values.get("21"),
        quantity=int(count) if count else None,
        element_strings=structure,
    )


def _gs1_date(ai: str, value: str, today: dt.date) -> dt.date:
    """YYMMDD → date; day 00 is the month's last day; century by the GS1 sliding window."""
    title = _TITLES[ai]
    two_digit_year, month, day = int(value[0:2]), int(value[2:4]), int(value[4:6])
    year = gs1_year(two_digit_year, today=today)
    if not 1 <= month <= 12:
        raise ScanError(f"({ai}) {title} {value!r} is not a date: month {month:02d}")
    last_day = calendar.monthrange(year, month)[1]
    if day == 0:
        day = last_day
    elif day > last_day:
        raise ScanError(
            f"({ai}) {title} {value!r} is not a date: {year}-{month:02d} has {last_day} days"
        )
    return dt.date(year, month, day)


def gs1_year(two_digit_year: int, *, today: dt.date) -> int:
    """The four-digit year for YY: within 49 years back and 50 ahead of ``today`` (GS1 7.12)."""
    century = today.year - today.year % 100
    difference = two_digit_year - today.year % 100
    if 51 <= difference <= 99:
        return century - 100 + two_digit_year
    if -99 <= difference <= -50:
        return century + 100 + two_digit_year
    return century + two_digit_year
