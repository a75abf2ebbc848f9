"""CSV and text exports: spreadsheet-safe cells, card numbers masked 6/4 everywhere."""

from __future__ import annotations

import csv
import io
import unicodedata
from datetime import date

import pytest
from clearing_world import DEBIT_PAN, RULES_FROM, beijing_time, standard_rates

from posbatch.batch.limits import AMOUNT_FEN_MAX
from posbatch.batch.money import format_fen
from posbatch.clearing import (
    CardBin,
    CardClass,
    ClearingRecord,
    ClearingRules,
    ExceptionRecord,
    FeeSchedule,
    Funding,
    build_statement,
    clearing_file,
    clearing_file_csv,
    mask_card_numbers,
    render_clearing_file,
    render_statement,
    safe_cell,
    statement_csv,
)
from testbed import MERCHANT_ID, TERMINAL_ID

DAY = date(2026, 9, 30)
RULES = ClearingRules(
    fee_schedules=(FeeSchedule(None, RULES_FROM, standard_rates()),),
    card_bins=(CardBin("622202", Funding.DEBIT, RULES_FROM),),
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+2", "'=1+2"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-12.50", "-12.50"),  # a number stays a number
        ("-0", "-0"),
        ("12.50", "12.50"),
        ("10000001", "10000001"),
        ("", ""),
        (None, ""),
        ("a=1", "a=1"),
    ],
)
def test_safe_cells(value: object, expected: str) -> None:
    """A cell a spreadsheet would run as a formula gets a leading apostrophe; numbers stay."""
    assert expected == safe_cell(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 6222021234567890128 declined", "card 622202*********0128 declined"),
        ("4111111111111", "411111***1111"),  # 13 digits
        ("rrn 123456789012 stan 000001", "rrn 123456789012 stan 000001"),  # 12: not a card
        ("merchant 898110054110001x", "merchant 898110*****0001x"),  # 15 digits look like one
        # 20 digits: a card number glued to others (it was left whole, card and all)
        ("62220212345678901234", "622202**********1234"),
    ],
)
def test_card_numbers_in_free_text_are_masked(text: str, expected: str) -> None:
    """Any run of 13–19 digits in free text, or a longer one that may hold a card number,
    shows first 6 / last 4 only."""
    assert expected == mask_card_numbers(text)


def _statement_with_a_leaky_exception():  # type: ignore[no-untyped-def]
    record = ClearingRecord(
        1, MERCHANT_ID, TERMINAL_ID, 1, 1, 1, "000000000001", "sale", 10_000, "00",
        "622202*********0128", beijing_time("2026-09-30 10:00"), None,
    )  # fmt: skip
    leak = ExceptionRecord(
        7, MERCHANT_ID, TERMINAL_ID, 1, 1, "late-reversal",
        f"=cause quoting the card {DEBIT_PAN}", 10_000, 10_000,
        beijing_time("2026-09-30 11:00"),
    )  # fmt: skip
    return build_statement(MERCHANT_ID, DAY, [record], RULES, exceptions=[leak])


def test_no_export_shows_a_whole_card_number() -> None:
    """Even an exception cause holding a whole card number is masked in text and CSV."""
    statement = _statement_with_a_leaky_exception()
    text = render_statement(statement)
    exported = statement_csv(statement)
    assert (DEBIT_PAN in text, DEBIT_PAN in exported, "622202*********0128" in exported) == (
        False,
        False,
        True,
    )


def test_statement_csv_has_a_summary_then_the_lines() -> None:
    """Summary rows first (merchant, day, totals, arrival), then one row per line."""
    rows = list(csv.reader(io.StringIO(statement_csv(_statement_with_a_leaky_exception()))))
    summary = {row[0]: row[1] for row in rows[:10]}
    assert (MERCHANT_ID, "2026-09-30", "100.00", "0.60", "99.40", "2026-10-08") == (
        summary["对账单 statement"],
        summary["交易日 trading_day"],
        summary["交易金额 gross"],
        summary["手续费 fees"],
        summary["净额 net"],
        summary["到账日 arrival_date"],
    )
    exception_row = next(row for row in rows if row and row[0] == "7")
    assert "'=cause quoting the card 622202*********0128" == exception_row[5]


def test_clearing_file_csv_and_text() -> None:
    """One row per merchant then the total; the text shows the same figures."""
    record = ClearingRecord(
        1, MERCHANT_ID, TERMINAL_ID, 1, 1, 1, None, "sale", 123_456, "00",
        "622202*********0128", beijing_time("2026-09-30 10:00"), None,
    )  # fmt: skip
    document = clearing_file(DAY, [record], RULES)
    rows = list(csv.reader(io.StringIO(clearing_file_csv(document))))
    assert [
        MERCHANT_ID, "1", "1234.56", "7.41", "1227.15", "T+1", "2026-10-08", "no", "0.00", "0",
        "no",
    ] == rows[1]  # fmt: skip
    assert ["合计 total", "1", "1234.56", "7.41", "1227.15", "", "", "", "0.00", "0", "no"] == rows[
        2
    ]
    assert f"{MERCHANT_ID}       1       1234.56        7.41       1227.15" in render_clearing_file(
        document
    )


def test_a_statement_names_classes_in_both_languages() -> None:
    """The by-card-type block reads 境内借记卡 domestic debit."""
    assert "境内借记卡 domestic debit" in render_statement(_statement_with_a_leaky_exception())
    assert "境内借记卡 domestic debit" == CardClass.DOMESTIC_DEBIT.label


def test_the_clearing_file_csv_counts_unknown_bins_as_the_page_flags_them() -> None:
    """A line priced as credit for want of a BIN entry: the printed file flags the merchant
    BIN?, and the CSV says how many (last column, the others keep their places) — the CSV
    had no trace of it, so an operator working from the file never added the entry."""
    known, unknown = (
        ClearingRecord(
            number, MERCHANT_ID, TERMINAL_ID, 1, 1, number, None, "sale", 10_000, "00", pan,
            beijing_time("2026-09-30 10:00"), None,
        )
        for number, pan in ((1, "622202*********0128"), (2, "999999*********0128"))
    )  # fmt: skip
    document = clearing_file(DAY, [known, unknown], RULES)
    rows = list(csv.reader(io.StringIO(clearing_file_csv(document))))
    assert (["BIN未知 unknown_bins", "1", "1"], True) == (
        [row[-2] for row in rows],
        " BIN?" in render_clearing_file(document),
    )


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _max_day() -> list[ClearingRecord]:
    """Two merchants, each with two sales of the wire's largest amount (9,999,999,999.99,
    n12 fen) and a small one: a day's gross of 20 billion yuan per merchant, 40 in all."""
    return [
        ClearingRecord(
            number, merchant_id, TERMINAL_ID if merchant_id == MERCHANT_ID else "10000002", 1,
            1, number, None, "sale", amount_fen, "00", "622588*********0128",
            beijing_time(f"2026-09-30 10:{number:02d}"), None,
        )
        for number, (merchant_id, amount_fen) in enumerate(
            [(merchant_id, amount_fen) for merchant_id in (MERCHANT_ID, "898110054110002")
             for amount_fen in (AMOUNT_FEN_MAX, 10_000, AMOUNT_FEN_MAX)],
            start=1,
        )
    ]  # fmt: skip


def test_the_printed_statement_keeps_its_columns_at_the_largest_amounts() -> None:
    """Lines of 9,999,999,999.99 (the n12 maximum) beside one of 100.00, and a day's sums of
    20 billion yuan: every row of the line table ends where its header does, and the
    by-card-type and by-kind rows put each figure in the same column (they slipped once an
    amount passed 12 characters)."""
    statement = build_statement(MERCHANT_ID, DAY, _max_day(), RULES)
    text = render_statement(statement).splitlines()
    head = text.index(next(row for row in text if row.startswith("time (Beijing)")))
    table = text[head : head + 1 + len(statement.lines)]
    assert "20000000099.98" == format_fen(statement.gross_fen)
    assert "9999999999.99" in table[1]
    assert {_display_width(text[head])} == {_display_width(row) for row in table}
    sums = [row for row in text if row.startswith("  ") and " gross " in row]
    assert len(sums) == 2  # domestic credit; sale
    for word in (" gross ", " fees ", " net "):
        assert len({_display_width(row[: row.index(word)]) for row in sums}) == 1
    assert len({_display_width(row) for row in sums}) == 1


def test_the_printed_clearing_file_keeps_its_columns_at_the_largest_amounts() -> None:
    """Merchants of 20 billion yuan each and a total of 40: the header, each merchant's row
    and the total row end their figures in the same column (the total row also slipped by
    the two wide characters of 合计)."""
    document = clearing_file(DAY, _max_day(), RULES)
    text = render_clearing_file(document).splitlines()
    rows = text[1:5]
    assert rows[0].startswith("merchant_id") and rows[3].startswith("total 合计")
    assert "40000000199.96" in rows[3]
    ends = {_display_width(rows[0][: rows[0].index("  cycle")])}
    ends |= {_display_width(row[: row.index("  T+1")]) for row in rows[1:3]}
    ends |= {_display_width(rows[3].rstrip())}
    assert len(ends) == 1
