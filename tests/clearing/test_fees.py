"""Fee arithmetic: the issue's examples, exact rates, half up, caps, returned fees."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posbatch.clearing import (
    CardClass,
    FeeSchedule,
    fee_fen,
    format_rate,
    parse_rate,
    returned_fee_fen,
)
from posbatch.errors import ClearingError

RATE_060 = Decimal("0.006")


@pytest.mark.parametrize(
    ("amount_fen", "rate", "cap_fen", "expected_fen"),
    [
        (10_000, "0.60%", 2_000, 60),  # 100.00 debit at 0.60 %, cap 20.00 → 0.60
        (1_000_000, "0.60%", 2_000, 2_000),  # 10,000.00 debit → 20.00
        (1_000_000, "0.60%", None, 6_000),  # 10,000.00 credit at 0.60 % → 60.00
        (55, "0.60%", None, 0),  # 0.55 at 0.60 % → 0.00
        (1_000_000, "0.35%", 1_300, 1_300),  # the issuer's debit fee: 0.35 % capped at 13.00
        (1_000_000, "0.45%", None, 4_500),  # the issuer's credit fee: 0.45 %
        (1_000_000, "0.065%", None, 650),  # the network fee: 0.065 %
    ],
)
def test_the_issue_examples(
    amount_fen: int, rate: str, cap_fen: int | None, expected_fen: int
) -> None:
    """The issue's figures (PBoC/NDRC 2016 regime) come out to the fen."""
    assert expected_fen == fee_fen(amount_fen, parse_rate(rate), cap_fen)


@pytest.mark.parametrize(
    ("amount_fen", "expected_fen"),
    [(250, 2), (249, 1), (83, 0), (84, 1), (417, 3), (416, 2)],
)
def test_half_up_to_the_fen(amount_fen: int, expected_fen: int) -> None:
    """0.60 % of 2.50 is 1.5 fen → 2; of 2.49 is 1.494 → 1; exactly half rounds up."""
    assert expected_fen == fee_fen(amount_fen, RATE_060)


def test_a_cap_of_zero_caps_at_zero_but_no_schedule_has_one() -> None:
    """The arithmetic caps at 0.00 as at any figure; a schedule refuses a cap of 0.00 by
    name (it said "a fee cap is 0.00..100000.00" while the parser said "must be more than
    0.00"): 0 reads as "no cap" in many fee tables, so it would silently charge nothing. A
    free card class is a rate of 0%."""
    assert 0 == fee_fen(5_000_000, RATE_060, 0)
    rates = dict.fromkeys(CardClass, RATE_060)
    with pytest.raises(ClearingError, match=r"^a fee cap of 0\.00 is refused .* 0% for no fee$"):
        FeeSchedule(None, date(2026, 1, 1), rates, {CardClass.DOMESTIC_DEBIT: 0})
    with pytest.raises(ClearingError, match=r"^a fee cap is 0\.01\.\.100000\.00 yuan, not"):
        FeeSchedule(None, date(2026, 1, 1), rates, {CardClass.DOMESTIC_DEBIT: -1})
    free = FeeSchedule(None, date(2026, 1, 1), {**rates, CardClass.DOMESTIC_DEBIT: Decimal(0)})
    assert 0 == free.sale_fee_fen(5_000_000, CardClass.DOMESTIC_DEBIT, instant=False)
    assert 1 == FeeSchedule(
        None, date(2026, 1, 1), rates, {CardClass.DOMESTIC_DEBIT: 1}
    ).sale_fee_fen(5_000_000, CardClass.DOMESTIC_DEBIT, instant=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.60%", Decimal("0.006")),
        ("0.6%", Decimal("0.006")),
        ("0.065%", Decimal("0.00065")),
        (" 1.25% ", Decimal("0.0125")),
        ("0%", Decimal(0)),
        ("10%", Decimal("0.1")),
    ],
)
def test_rates_are_read_exactly(text: str, expected: Decimal) -> None:
    """A typed percentage becomes the exact decimal fraction."""
    assert expected == parse_rate(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.60", "must be a percentage with its sign"),
        ("60", "must be a percentage with its sign"),
        ("-0.6%", "must be a percentage with its sign"),
        ("6e-1%", "must be a percentage with its sign"),
        ("0,60%", "must be a percentage with its sign"),
        ("０.６%", "must be a percentage with its sign"),
        ("nan%", "must be a percentage with its sign"),
        ("", "must be a percentage with its sign"),
        ("11%", "is over 10.00%: a typo?"),
        ("100%", "rate '100%' is over 10.00%: a typo?"),
        ("100.00%", "rate '100.00%' is over 10.00%: a typo?"),
        ("0.00001%", "more than 4 decimals of a percent"),
    ],
)
def test_bad_rates_are_refused_with_the_reason(text: str, message: str) -> None:
    """Anything but a plain percentage is refused, saying why."""
    with pytest.raises(ClearingError, match=message):
        parse_rate(text)


@pytest.mark.parametrize(
    ("rate", "text"), [("0.006", "0.60%"), ("0.00065", "0.065%"), ("0.1", "10.00%"), ("0", "0.00%")]
)
def test_rates_are_shown_as_typed(rate: str, text: str) -> None:
    """A rate prints as a percentage with at least two decimals."""
    assert text == format_rate(Decimal(rate))


def test_a_float_rate_never_enters_a_schedule() -> None:
    """A schedule refuses a float (its binary value is not the rate anyone typed)."""
    with pytest.raises(ClearingError, match="never a float"):
        FeeSchedule(None, date(2026, 1, 1), dict.fromkeys(CardClass, 0.006))  # type: ignore[arg-type]


def test_a_schedule_needs_every_card_class() -> None:
    """A schedule without a rate for some card class is refused, naming it."""
    with pytest.raises(ClearingError, match="foreign-credit"):
        FeeSchedule(
            None, date(2026, 1, 1), {c: RATE_060 for c in CardClass if c.value != "foreign-credit"}
        )


def test_instant_rate_is_added_per_sale_not_capped() -> None:
    """A T+0/D+0 merchant pays the instant rate on top of the capped fee."""
    schedule = FeeSchedule(
        None,
        date(2026, 1, 1),
        dict.fromkeys(CardClass, RATE_060),
        {CardClass.DOMESTIC_DEBIT: 2_000},
        instant_rate=Decimal("0.0005"),
    )
    assert (2_000 + 500, 2_000) == (
        schedule.sale_fee_fen(1_000_000, CardClass.DOMESTIC_DEBIT, instant=True),
        schedule.sale_fee_fen(1_000_000, CardClass.DOMESTIC_DEBIT, instant=False),
    )


def test_partial_refunds_never_return_more_than_the_fee() -> None:
    """Two half refunds of a 1-fen fee return 1 fen together, not 2 (rounded over pieces)."""
    first = returned_fee_fen(1, 100, [(0, 50)])
    second = returned_fee_fen(1, 100, [(50, 100)])
    assert (1, 1) == (first + second, max(first, second))


@pytest.mark.parametrize("piece", [(0, 101), (-1, 5), (5, 5), (7, 3)])
def test_pieces_beyond_the_sale_are_an_error(piece: tuple[int, int]) -> None:
    """A piece outside the sale (or empty) is refused rather than priced."""
    with pytest.raises(ClearingError, match="beyond the sale"):
        returned_fee_fen(60, 100, [piece])


@given(
    amount_fen=st.integers(min_value=1, max_value=5_000_000),
    rate_steps=st.integers(min_value=0, max_value=100_000),
    cap_fen=st.none() | st.integers(min_value=0, max_value=100_000),
    cuts=st.lists(st.integers(min_value=1, max_value=5_000_000), max_size=8),
)
def test_refunds_in_any_pieces_return_exactly_the_fee(
    amount_fen: int, rate_steps: int, cap_fen: int | None, cuts: list[int]
) -> None:
    """However a sale is cut into pieces, the pieces return its whole fee together, never
    more, and each piece's share is non-negative."""
    rate = Decimal(rate_steps) / 1_000_000
    fee = fee_fen(amount_fen, rate, cap_fen)
    edges = sorted({0, amount_fen, *(cut for cut in cuts if cut < amount_fen)})
    returned = [
        returned_fee_fen(fee, amount_fen, [(low, high)]) for low, high in itertools.pairwise(edges)
    ]
    assert (fee, True) == (sum(returned), all(part >= 0 for part in returned))


@given(
    amount_fen=st.integers(min_value=0, max_value=10**12),
    rate_steps=st.integers(min_value=0, max_value=100_000),
)
def test_the_fee_is_the_exact_product_rounded_half_up(amount_fen: int, rate_steps: int) -> None:
    """The integer arithmetic equals Decimal's ROUND_HALF_UP of the exact product."""
    rate = Decimal(rate_steps) / 1_000_000
    exact = (Decimal(amount_fen) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert int(exact) == fee_fen(amount_fen, rate)
