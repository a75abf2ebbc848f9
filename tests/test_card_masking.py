"""One safety net for card numbers in free text (batch.cards.mask_card_numbers): logs, pages,
exports and bundles all mask with it, at every length the profile accepts (12–19)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posbatch.backoffice import clean_text
from posbatch.batch import cards
from posbatch.batch.cards import check_pan, luhn_valid, mask_card_numbers
from posbatch.clearing import mask_card_numbers as clearing_mask
from posbatch.doctor._report import scrub
from testbed import MERCHANT_ID

PAN_12 = "622202123452"  # 12 digits, Luhn-valid: this profile approves it


def _with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"card {PAN_12} refunded", "card 622202**3452 refunded"),
        ("card 6222021234567890128 x", "card 622202*********0128 x"),
        ("6222 0212 3456 7890 128", "622202*********0128"),
        ("6222-0212-3456-7890-128", "622202*********0128"),
        ("4000000000001", "400000***0001"),  # 13 digits: always masked
        ("rrn 123456789012 ok", "rrn 123456789012 ok"),  # 12, not a card (check digit)
        ("amount 000000001250", "amount 000000001250"),  # 12, leading 0: never a card
        ("totals " + "0" * 62, "totals " + "0" * 62),  # field 48 text is no card number
        ("12345678901", "12345678901"),  # 11 digits: too short to be a card
        (f"merchant {MERCHANT_ID}", f"merchant {MERCHANT_ID}"),  # allowed below
    ],
)
def test_what_is_masked_and_what_is_left(text: str, expected: str) -> None:
    """Every length a card may have is masked; ids, RRNs and amounts stay readable."""
    assert check_pan(PAN_12) is None
    assert expected == mask_card_numbers(text, allowed=frozenset({MERCHANT_ID}))


def test_every_door_uses_the_same_net() -> None:
    """doctor's bundles, clearing's exports and the back office's free text agree."""
    text = f"typed {PAN_12} and 6222021234567890128"
    once = mask_card_numbers(text)
    assert [once] * 3 == [scrub(text), clearing_mask(text), clean_text(text, 200)]


@given(
    body=st.text(alphabet="0123456789", min_size=11, max_size=18).filter(lambda s: s[0] != "0"),
    before=st.text(alphabet="abc :=,", max_size=5),
    after=st.text(alphabet="abc :=,", max_size=5),
)
def test_no_approvable_card_number_survives(body: str, before: str, after: str) -> None:
    """Any number the host would approve, in any text, comes out with at most 6 + 4 digits."""
    pan = _with_check_digit(body)
    masked = mask_card_numbers(before + pan + after)
    assert check_pan(pan) is None
    assert pan not in masked
    assert masked.count("*") == len(pan) - 10


# The quick look's definition: 12 characters of [0-9 -] in a row.
_SPAN_OF_12 = re.compile(r"[0-9 -]{12}")
# Digits, separators, ascii, a digit of another script (not [0-9]), a CJK character, a
# lone surrogate (a log line may hold undecodable bytes as such) and an astral character.
_TEXT = st.text(alphabet='0123456789 -ab\n"٣中\udc80😀', max_size=60)


@given(_TEXT)
def test_the_quick_look_never_misses_a_card_number(text: str) -> None:
    """mask_card_numbers returns a text as it is when the quick look finds no span of 12
    digits, spaces and dashes: then the full net finds nothing in it either."""
    if not cards.may_hold_card_number(text):
        assert cards._CARD_NUMBER_LIKE.search(text) is None
        assert mask_card_numbers(text) == text


@given(_TEXT)
def test_the_quick_look_is_the_span_of_12(text: str) -> None:
    """The byte-table look finds exactly what the regular expression of its definition finds."""
    assert cards.may_hold_card_number(text) == (_SPAN_OF_12.search(text) is not None)


@pytest.mark.parametrize(
    "text",
    ["6222 0212 3456", "12-34-56-78-90", "٣" * 12 + "1", "a\udc80" + "1" * 12, "中" + "0" * 12],
)
def test_the_quick_look_at_its_edges(text: str) -> None:
    assert cards.may_hold_card_number(text) == (_SPAN_OF_12.search(text) is not None)
