"""The pure rules of issue 11 in batch/: one "behind" across the wrap, field-48 capacity
(BatchTally), card numbers and currencies that can be settled, the two new codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn as stdnum_luhn

from posbatch.batch.cards import check_currency, check_pan, check_track2, luhn_valid, track2_pan
from posbatch.batch.codes import BATCH_FULL, CODES, CURRENCY_NOT_SUPPORTED
from posbatch.batch.counters import BATCH_NO_MAX, is_behind, next_batch_no
from posbatch.batch.model import CardType, Kind, Reconciliation
from posbatch.batch.terminal_batch import is_behind as terminal_is_behind
from posbatch.batch.totals import (
    TOTAL_AMOUNT_FEN_MAX,
    BatchTally,
    TotalsCounter,
    compute_totals,
    tally,
)
from posbatch.errors import BatchError

D, F = CardType.DOMESTIC, CardType.FOREIGN

# --- one "behind" ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_no", "other", "behind"),
    [
        (5, 6, True),
        (6, 5, False),
        (5, 5, False),
        (999_999, 1, True),  # the wrap: 000001 follows 999999
        (1, 999_999, False),  # … so 000001 is ahead of 999999
        (999_998, 2, True),
        (2, 999_998, False),
        (1, 500_000, True),  # within half a turn
        (1, 500_001, False),  # beyond it the nearer direction wins
    ],
)
def test_behind_is_counted_across_the_wrap(batch_no: int, other: int, behind: bool) -> None:
    """999999 is behind 000001; 000001 is ahead of 999999."""
    assert behind == is_behind(batch_no, other)


def test_the_terminal_uses_the_same_definition() -> None:
    """batch.terminal_batch.is_behind is counters.is_behind itself (one definition)."""
    assert terminal_is_behind is is_behind


@given(st.integers(1, BATCH_NO_MAX))
def test_a_batch_is_behind_the_next_one(batch_no: int) -> None:
    """For every number, it is behind its successor and its successor is not behind it."""
    following = next_batch_no(batch_no)
    assert (True, False) == (is_behind(batch_no, following), is_behind(following, batch_no))


# --- capacity ---------------------------------------------------------------------------


def test_999_debits_fit_and_the_thousandth_is_full() -> None:
    """999 domestic sales fit field 48; one more would overflow DOMESTIC_DEBIT_COUNT."""
    batch = tally([(Kind.SALE, 1, D)] * 999)
    assert (True, TotalsCounter.DOMESTIC_DEBIT_COUNT, None, None) == (
        batch.fits(),
        batch.full_counter(Kind.SALE, 1, D),
        batch.full_counter(Kind.SALE, 1, F),
        batch.full_counter(Kind.REFUND, 1, D),
    )


def test_credits_count_voids_and_refunds() -> None:
    """Voids and refunds share the credit counter."""
    batch = tally([(Kind.VOID, 1, F)] * 500 + [(Kind.REFUND, 1, F)] * 499)
    assert TotalsCounter.FOREIGN_CREDIT_COUNT == batch.full_counter(Kind.VOID, 1, F)


def test_an_amount_sum_past_12_digits_is_full() -> None:
    """Two sales whose sum needs 13 digits: the amount counter, not the count, is full."""
    batch = tally([(Kind.SALE, TOTAL_AMOUNT_FEN_MAX, D)])
    assert TotalsCounter.DOMESTIC_DEBIT_AMOUNT == batch.full_counter(Kind.SALE, 1, D)


def test_a_lower_limit_counts_per_counter() -> None:
    """count_max=3: the fourth domestic sale is full, the first foreign one is not."""
    batch = tally([(Kind.SALE, 1, D)] * 3)
    assert (TotalsCounter.DOMESTIC_DEBIT_COUNT, None) == (
        batch.full_counter(Kind.SALE, 1, D, count_max=3),
        batch.full_counter(Kind.SALE, 1, F, count_max=3),
    )


def test_a_batch_over_capacity_is_capped_and_marked_never_silently() -> None:
    """compute_totals refuses it; capped_totals caps the half and marks it code 3."""
    batch = tally([(Kind.SALE, 7, D)] * 1_001 + [(Kind.SALE, 5, F)])
    capped = batch.capped_totals()
    with pytest.raises(BatchError, match="domestic totals do not fit field 48"):
        compute_totals([(Kind.SALE, 7, D)] * 1_001)
    assert (
        [TotalsCounter.DOMESTIC_DEBIT_COUNT], 999, 7_007, Reconciliation.ERROR,
        Reconciliation.REQUEST, 1,
    ) == (
        batch.overflows(), capped.domestic.debit_count, capped.domestic.debit_amount_fen,
        capped.domestic.reconciliation, capped.foreign.reconciliation, capped.foreign.debit_count,
    )  # fmt: skip


def test_counter_words_are_bilingual() -> None:
    """What doctor prints for a counter, in English and Chinese."""
    assert ("foreign credits (voids and refunds)", "外卡贷记(撤销与退货)") == (
        TotalsCounter.FOREIGN_CREDIT_COUNT.words
    )


def test_an_empty_batch_is_empty() -> None:
    assert BatchTally() == tally([])


# --- card numbers and currencies --------------------------------------------------------

PAN = "6222021234567890128"


@pytest.mark.parametrize(
    ("pan", "refused", "reason"),
    [
        ("622202123452", False, ""),  # 12 digits
        ("6222021234566", False, ""),  # 13
        (PAN, False, ""),  # 19
        ("62220212345", True, "this one has 11"),
        ("62220212345678901283", True, "this one has 20"),
        ("0000000000000000", True, "cannot start with 0"),
        ("6222021234567890123", True, "check digit"),
        ("6222 021234567890128", True, "digits 0-9, nothing else"),
        ("６２２２０２１２３４５２", True, "digits 0-9, nothing else"),
        ("", True, "digits 0-9, nothing else"),
    ],
)
def test_card_numbers_at_the_edges(pan: str, refused: bool, reason: str) -> None:
    """What field 2 and the upload record carry, with the check digit right; else 14."""
    found = check_pan(pan)
    assert (refused, reason in (found.reason_en if found else "")) == (found is not None, True)
    if found is not None:
        assert ("14", True) == (found.response_code, pan[6:-4] not in str(found) or len(pan) < 13)


@pytest.mark.parametrize(
    ("track2", "refused"),
    [
        (None, False),
        (f"{PAN}=3012101", False),
        (f"{PAN}", True),  # no separator
        ("6222020000000000018=3012", True),  # another card
        ("0000000000000000=3012", True),  # a card upload cannot carry
    ],
)
def test_track2_must_be_the_same_card(track2: str | None, refused: bool) -> None:
    """Track 2's PAN obeys the same rules and equals field 2's."""
    assert refused == (check_track2(PAN, track2) is not None)


def test_track2_pan_is_before_the_separator() -> None:
    assert (PAN, None) == (track2_pan(f"{PAN}=3012"), track2_pan(PAN))


@pytest.mark.parametrize(
    ("currency", "expected"),
    [("156", None), ("840", "40"), ("000", "40"), ("AB!", "30"), ("15 ", "30"), ("1560", "30")],
)
def test_only_cny_is_settled(currency: str, expected: str | None) -> None:
    """156 passes; another ISO code is 40; anything not 3 digits is 30."""
    found = check_currency(currency)
    assert expected == (None if found is None else found.response_code)


def test_the_new_codes_are_in_the_one_table() -> None:
    """95 (batch full) and 40 (currency) have their zh/en meaning, cause and steps."""
    full, currency = CODES[BATCH_FULL], CODES[CURRENCY_NOT_SUPPORTED]
    assert ("交易笔数已满，请先结算", True, True) == (
        full.meaning_zh, full.retry, "156" in currency.meaning_en
    )  # fmt: skip
    assert all(row.cause_en and row.step_en and row.step_zh for row in (full, currency))


@given(st.text(alphabet="0123456789", min_size=12, max_size=19))
def test_luhn_accepts_exactly_one_check_digit(body: str) -> None:
    """Of the ten last digits, exactly one makes a Luhn-valid number."""
    valid = [digit for digit in "0123456789" if luhn_valid(body[:-1] + digit)]
    assert 1 == len(valid)


@given(st.text(alphabet="0123456789", max_size=25) | st.text(max_size=8))
def test_luhn_is_python_stdnum_s(text: str) -> None:
    """Our Luhn (written for speed) agrees with python-stdnum's on any digits and non-digits."""
    assert luhn_valid(text) == (text.isascii() and text.isdigit() and stdnum_luhn.is_valid(text))
