"""Scan strings → GTIN, lot, expiry, serial, quantity — or the exact error."""

from __future__ import annotations

import datetime as dt

import biip
import pytest
from catalog_samples import MILK, PILLS, TODAY
from hypothesis import given
from hypothesis import strategies as st

from posbatch.catalog import ScanReading, parse_scan, with_check_digit
from posbatch.errors import ConfigError, ScanError

GS = "\x1d"


def reading_fields(reading: ScanReading) -> tuple[object, ...]:
    return (reading.gtin, reading.lot, reading.expiry, reading.serial, reading.quantity)


GOOD_SCANS = [
    # (scan string, separators, (gtin, lot, expiry, serial, quantity))
    pytest.param(
        f"]C101{PILLS}10ABC123{GS}17261231",
        (),
        (PILLS, "ABC123", dt.date(2026, 12, 31), None, None),
        id="gs1-128-with-gs",
    ),
    pytest.param(
        f"]d201{PILLS}17270600|10LOT7|21SER9|3012",
        ("|",),
        (PILLS, "LOT7", dt.date(2027, 6, 30), "SER9", 12),
        id="datamatrix-pipe-separator-day-00",
    ),
    pytest.param(
        f"]Q301{PILLS}1728020010X{GS}3005",
        (),
        (PILLS, "X", dt.date(2028, 2, 29), None, 5),
        id="qr-day-00-leap-february",
    ),
    pytest.param(
        f"]C102{PILLS}3712{GS}10L1",
        (),
        (PILLS, "L1", None, None, 12),
        id="logistic-unit-02-with-37",
    ),
    pytest.param(
        f"]J101{PILLS}10DOT{GS}17261231",
        (),
        (PILLS, "DOT", dt.date(2026, 12, 31), None, None),
        id="gs1-dotcode",
    ),
    pytest.param(
        f"01{PILLS}15261200{GS}10BB",
        (),
        (PILLS, "BB", dt.date(2026, 12, 31), None, None),
        id="best-before-15-without-17",
    ),
    pytest.param(
        f"01{PILLS}15270101{GS}17261231{GS}10E",
        (),
        (PILLS, "E", dt.date(2026, 12, 31), None, None),
        id="expiry-17-wins-over-15",
    ),
    pytest.param(
        f"{GS}01{PILLS}17261231{GS}10ABC",
        (),
        (PILLS, "ABC", dt.date(2026, 12, 31), None, None),
        id="leading-fnc1-no-symbology",
    ),
    pytest.param(
        f"01{PILLS}1726123110ABC",
        (),
        (PILLS, "ABC", dt.date(2026, 12, 31), None, None),
        id="no-separator-lot-last",
    ),
    pytest.param("6901234567892", (), (MILK, None, None, None, None), id="ean-13"),
    pytest.param("]E06901234567892", (), (MILK, None, None, None, None), id="ean-13-symbology"),
    pytest.param("036000291452", (), ("00036000291452", None, None, None, None), id="upc-a"),
    pytest.param("]E004252614", (), ("00042100005264", None, None, None, None), id="upc-e"),
    pytest.param("96385074", (), ("00000096385074", None, None, None, None), id="ean-8"),
    pytest.param("]E3690123456789212", (), (MILK, None, None, None, None), id="ean-13-with-add-on"),
    pytest.param(f"01{PILLS}\r\n", (), (PILLS, None, None, None, None), id="trailing-crlf"),
    pytest.param(
        f"01{PILLS}1799123110OLD",
        (),
        (PILLS, "OLD", dt.date(1999, 12, 31), None, None),
        id="century-window-past",
    ),
]


@pytest.mark.parametrize(("raw", "separators", "expected"), GOOD_SCANS)
def test_good_scan_reads_exactly(
    raw: str, separators: tuple[str, ...], expected: tuple[object, ...]
) -> None:
    """A valid scan gives exactly the expected GTIN, lot, expiry, serial and quantity."""
    scan = parse_scan(raw, today=TODAY, separators=separators)
    expected = (False, expected)
    assert expected == (scan.ambiguous, reading_fields(scan.reading()))


BAD_SCANS = [
    pytest.param(
        "6901234567891",
        "GTIN 6901234567891 has a bad check digit: expected 2, got 1",
        id="ean-13-check-digit",
    ),
    pytest.param(
        "0109501101530004",
        "(01) GTIN 09501101530004 has a bad check digit: expected 3, got 4",
        id="gs1-gtin-check-digit",
    ),
    pytest.param(
        f"01{PILLS}1726133110A",
        "(17) expiry '261331' is not a date: month 13",
        id="month-13",
    ),
    pytest.param(
        f"01{PILLS}1727023010A",
        "(17) expiry '270230' is not a date: 2027-02 has 28 days",
        id="february-30",
    ),
    pytest.param(
        f"01{PILLS}172612",
        "(17) expiry '2612' does not match the format N2+N6",
        id="short-date",
    ),
    pytest.param(
        f"01{PILLS}{GS}9Z12",
        "unknown application identifier at position 17: '9Z12'",
        id="unknown-ai",
    ),
    pytest.param("10ABC", "no GTIN (01) in the scan", id="no-gtin"),
    pytest.param(f"01{PILLS}{GS}300{GS}10A", "(30) count '0' must be at least 1", id="zero-count"),
    pytest.param(
        f"01{PILLS}10A{GS}10B",
        "(10) appears twice with different values: 'A' and 'B'",
        id="lot-twice",
    ),
    pytest.param("]C1", "scan holds only the symbology identifier ]C1", id="only-symbology"),
    pytest.param(
        "]A0ABC",
        "symbology ]A0 (CODE_39) carries neither a GTIN, GS1 element strings nor a drug "
        "traceability code",
        id="code-39",
    ),
    pytest.param(
        f"01{PILLS}{GS}3712",
        "(37) counts the trade items inside a logistic unit: it goes with (02), "
        "the GTIN of those items, not with (01)",
        id="count-37-with-01",
    ),
    pytest.param(
        f"02{PILLS}{GS}10A",
        "(02) names the items inside a logistic unit: (37) must count them",
        id="contents-02-without-37",
    ),
    pytest.param(
        f"01{PILLS}02{PILLS}3712",
        "(01) and (02) in one scan: (02) names the items inside a logistic unit, "
        "which then has no (01)",
        id="01-and-02",
    ),
    pytest.param(
        f"01{PILLS}10{'A' * 25}{GS}17261231",
        f"(10) lot '{'A' * 25}' is 25 characters long: at most 20",
        id="lot-over-20-with-fnc1",
    ),
    pytest.param(
        f"01{PILLS}10{'A' * 25}",
        f"(10) lot '{'A' * 25}' is 25 characters long: at most 20",
        id="lot-over-20-without-fnc1",
    ),
    pytest.param(
        f"01{PILLS}10AB\u00c9{GS}17261231",
        "(10) lot 'AB\u00c9' has '\u00c9', outside GS1 character set 82: "
        "no GS1 barcode can carry it",
        id="lot-character-outside-cset82",
    ),
    pytest.param(
        f"01{PILLS}10AB CD",
        "(10) lot 'AB CD' has ' ', outside GS1 character set 82: no GS1 barcode can carry it",
        id="lot-with-space-no-fnc1",
    ),
    pytest.param(f"01{PILLS}10{GS}17261231", "(10) lot is empty", id="empty-lot"),
    pytest.param(f"01{PILLS}{GS}10", "(10) lot is empty", id="empty-lot-at-end"),
    pytest.param(f"01{PILLS}21{GS}10A", "(21) serial is empty", id="empty-serial"),
    pytest.param(
        "8123456789012345678",
        "a drug traceability code (药品追溯码) has 20 digits, '8123456789012345678' has 19: "
        "scan it again",
        id="trace-code-19-digits",
    ),
    pytest.param("]!0123", "unknown symbology identifier ']!0'", id="bad-symbology"),
    pytest.param("", "scan is empty", id="empty"),
    pytest.param("x" * 513, "scan is 513 characters long; at most 512 are read", id="too-long"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_SCANS)
def test_bad_scan_names_the_problem(raw: str, message: str) -> None:
    """A bad scan raises ScanError with a message naming exactly what is wrong."""
    with pytest.raises(ScanError) as caught:
        parse_scan(raw, today=TODAY)
    assert message == str(caught.value)


def test_lot_swallowing_a_date_is_ambiguous() -> None:
    """Without separators, a lot ending in 17+YYMMDD yields both readings, in greedy order."""
    scan = parse_scan(f"01{PILLS}10ABC17261231", today=TODAY)
    expected = (
        True,
        [
            (PILLS, "ABC17261231", None, None, None),
            (PILLS, "ABC", dt.date(2026, 12, 31), None, None),
        ],
    )
    assert expected == (scan.ambiguous, [reading_fields(r) for r in scan.readings])


def test_lot_swallowing_a_serial_is_ambiguous() -> None:
    """Without separators, '21' inside a lot may start a serial: both readings are kept."""
    scan = parse_scan(f"01{PILLS}10LOT2112", today=TODAY)
    expected = ["(01)09501101530003(10)LOT2112", "(01)09501101530003(10)LOT(21)12"]
    assert expected == [reading.hri() for reading in scan.readings]


def test_separator_seen_means_no_ambiguity() -> None:
    """With FNC1 transmitted, the lot runs to the separator: one reading, as biip reads it."""
    scan = parse_scan(f"]C101{PILLS}10ABC17261231{GS}21S1", today=TODAY)
    expected = (False, "ABC17261231", "S1")
    assert expected == (
        scan.ambiguous,
        scan.reading().lot,
        scan.reading().serial,
    )


def test_invalid_swallowed_date_is_not_a_candidate() -> None:
    """A cut whose tail is not a real date (17 + 261399) does not make the scan ambiguous."""
    scan = parse_scan(f"01{PILLS}10ABC17261399", today=TODAY)
    expected = (False, "ABC17261399")
    assert expected == (scan.ambiguous, scan.reading().lot)


def test_ambiguous_scan_resolved_by_known_lot() -> None:
    """The catalog's lots pick the one reading whose lot exists."""
    scan = parse_scan(f"01{PILLS}10ABC17261231", today=TODAY)
    reading = scan.resolve(lambda gtin, lot: (gtin, lot) == (PILLS, "ABC"))
    expected = ("ABC", dt.date(2026, 12, 31))
    assert expected == (reading.lot, reading.expiry)


def test_ambiguous_scan_with_no_known_lot_is_refused() -> None:
    """When no candidate lot is known, resolve refuses and names the candidates."""
    scan = parse_scan(f"01{PILLS}10ABC17261231", today=TODAY)
    with pytest.raises(ScanError) as caught:
        scan.resolve(lambda gtin, lot: False)
    expected = (
        "ambiguous scan: none of the candidate lots 'ABC17261231', 'ABC' is known; "
        "scan again with FNC1 separators or type the lot"
    )
    assert expected == str(caught.value)


def test_reading_of_ambiguous_scan_refuses() -> None:
    """Asking an ambiguous scan for its single reading is an error, not a guess."""
    scan = parse_scan(f"01{PILLS}10ABC17261231", today=TODAY)
    with pytest.raises(ScanError, match="ambiguous scan without separators: 2 readings"):
        scan.reading()


def test_raw_scan_is_kept_verbatim() -> None:
    """The raw scan string (symbology and separators included) is kept for the audit."""
    raw = f"]C101{PILLS}10A{GS}17261231\r"
    assert raw == parse_scan(raw, today=TODAY).raw


def test_separator_inside_gs1_charset_is_refused() -> None:
    """A configured separator that can occur inside a lot is a configuration error."""
    with pytest.raises(ConfigError, match="separator '-' can appear inside a GS1 value"):
        parse_scan("6901234567892", today=TODAY, separators=("-",))


def test_json_form_of_scan() -> None:
    """to_json carries the raw scan, the flags and each reading with its HRI."""
    document = parse_scan(f"]C101{PILLS}10A{GS}17261200", today=TODAY).to_json()
    expected = {
        "raw": f"]C101{PILLS}10A{GS}17261200",
        "symbology_identifier": "]C1",
        "separator_seen": True,
        "ambiguous": False,
        "readings": [
            {
                "gtin": PILLS,
                "lot": "A",
                "expiry": "2026-12-31",
                "serial": None,
                "quantity": None,
                "hri": "(01)09501101530003(10)A(17)261200",
            }
        ],
        "trace_code": None,
    }
    assert expected == document


# --- properties ------------------------------------------------------------------

digits = st.text(alphabet="0123456789", min_size=12, max_size=12)
lots = st.text(
    alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabc-./", min_size=1, max_size=20
)  # no digits: no AI can hide inside
dates = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2049, 12, 31))


@given(digits)
def test_gtin_check_digit_round_trip(payload: str) -> None:
    """A payload with its computed check digit always reads back as that GTIN-14."""
    gtin = with_check_digit(payload)
    expected = gtin.zfill(14)
    assert expected == parse_scan(gtin, today=TODAY).reading().gtin


@given(digits, lots, dates, st.integers(min_value=1, max_value=99_999_999))
def test_generated_element_strings_read_back(
    payload: str, lot: str, expiry: dt.date, count: int
) -> None:
    """Generated GS1 messages with separators read back to the values they were built from."""
    gtin = with_check_digit("0" + payload[:12])
    raw = f"]C101{gtin}17{expiry:%y%m%d}10{lot}{GS}30{count}"
    reading = parse_scan(raw, today=TODAY).reading()
    expected = (gtin, lot, expiry, count)
    assert expected == (
        reading.gtin,
        reading.lot,
        reading.expiry,
        reading.quantity,
    )


@given(digits, st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-", min_size=1, max_size=20))
def test_same_element_strings_as_biip_when_separated(payload: str, lot: str) -> None:
    """With separators, the element strings read are exactly those bare biip.parse reads."""
    gtin = with_check_digit("0" + payload[:12])
    raw = f"]C101{gtin}10{lot}{GS}17261231"
    ours = [(e.ai, e.value) for e in parse_scan(raw, today=TODAY).reading().element_strings]
    message = biip.parse(raw).gs1_message
    assert message is not None
    expected = [(e.ai.ai, e.value) for e in message.element_strings]
    assert expected == ours


@given(
    digits, st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=1, max_size=12), dates
)
def test_unseparated_scan_always_offers_the_true_reading(
    payload: str, lot: str, expiry: dt.date
) -> None:
    """Without separators the lot-then-date reading is always a candidate; its lot resolves it."""
    gtin = with_check_digit("0" + payload[:12])
    scan = parse_scan(f"01{gtin}10{lot}17{expiry:%y%m%d}", today=TODAY)
    reading = scan.resolve(lambda known_gtin, known_lot: known_lot == lot)
    assert (gtin, lot, expiry) == (reading.gtin, reading.lot, reading.expiry)
