"""Receipt numbers the card-number net leaves whole, and receipts printed before still found.

Until 2026-12 a receipt number was ``TERMINAL-ORDERID`` (``10000001-00000042``): with a
numeric terminal ID, 8 digits, a dash, 8 digits — what the net (``mask_card_numbers``)
rightly takes for a card typed in two groups. Now it is ``10000001-N00000042``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posbatch.batch.cards import mask_card_numbers
from posbatch.catalog import parse_receipt_scan, readable_receipt_no, receipt_no_forms
from posbatch.catalog._returns import RECEIPT_MARK, receipt_number, return_number
from posbatch.errors import CheckoutRefused

ORDER_ID_MAX = 10**11 - 1  # the order number stays under 12 digits until order 10^11


@given(
    terminal_id=st.from_regex(r"[0-9]{8}", fullmatch=True),
    order_id=st.integers(1, ORDER_ID_MAX),
    nth=st.integers(1, 9999),
)
def test_no_receipt_or_return_number_is_masked(terminal_id: str, order_id: int, nth: int) -> None:
    """Whatever the numeric terminal ID and order number, a receipt number and its return
    numbers pass the net whole. (Like any digit field, one printed one or two spaces from
    another run of digits joins it: "…-N00000001 10000001" is 16 digits to the net.)"""
    receipt = receipt_number(terminal_id, order_id)
    returned = return_number(receipt, nth)
    text = f"no receipt {receipt} in the back office; return {returned} of {receipt}"
    assert mask_card_numbers(text) == text


def test_the_old_form_is_a_card_to_the_net_and_the_new_one_is_not() -> None:
    """The defect: the old number of order 42 of terminal 12345678 showed as a card."""
    old, new = "12345678-00000042", receipt_number("12345678", 42)
    expected = ("no receipt 123456******0042", f"no receipt 12345678-{RECEIPT_MARK}00000042")
    assert expected == (
        mask_card_numbers(f"no receipt {old}"),
        mask_card_numbers(f"no receipt {new}"),
    )


@pytest.mark.parametrize(
    ("typed", "parsed"),
    [
        ("10000001-N00000042", "10000001-N00000042"),
        ("]C010000001-n00000042", "10000001-N00000042"),  # a lowercase mark made capital
        ("]C010000001-00000042", "10000001-00000042"),  # an old receipt's Code 128: as it is
        ("  10000001-00000042 ", "10000001-00000042"),
    ],
)
def test_either_form_is_taken_at_the_receipt_prompt(typed: str, parsed: str) -> None:
    assert parse_receipt_scan(typed) == parsed


@pytest.mark.parametrize("typed", ["10000001-S00000042", "10000001-NN00000042", "10000001-N42"])
def test_another_letter_is_not_a_receipt_number(typed: str) -> None:
    with pytest.raises(CheckoutRefused, match="is not a receipt number"):
        parse_receipt_scan(typed)


def test_a_receipt_number_is_looked_up_under_both_forms() -> None:
    expected = (
        ("10000001-00000042", "10000001-N00000042"),
        ("10000001-N00000042", "10000001-00000042"),
        ("10000001-N00000042-R1",),  # a return number is not a receipt number
    )
    assert expected == (
        receipt_no_forms("10000001-00000042"),
        receipt_no_forms("10000001-N00000042"),
        receipt_no_forms("10000001-N00000042-R1"),
    )


def test_a_stored_old_number_is_shown_with_the_mark() -> None:
    expected = ("10000001-N00000042", "10000001-N00000042-R2", "10000001-N00000042-R1", "x-1")
    assert expected == (
        readable_receipt_no("10000001-00000042"),
        readable_receipt_no("10000001-00000042-R2"),
        return_number("10000001-00000042", 1),  # a new return of an old receipt
        readable_receipt_no("x-1"),
    )
