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


# The quick look's definition, on the text's UTF-8 bytes: 12 bytes in a row, each an ASCII
# digit, an ASCII separator or a byte of a character beyond ASCII.
_SPAN_OF_12 = re.compile(rb"[0-9 \t._/\-\x80-\xff]{12}")
# Digits, separators, ascii, a digit of another script (not [0-9]), a CJK character, a
# lone surrogate (a log line may hold undecodable bytes as such) and an astral character.
_TEXT = st.text(alphabet='0123456789 -./_\tab\n"٣中\udc80😀', max_size=60)


def _span_of_12(text: str) -> bool:
    return _SPAN_OF_12.search(text.encode("utf-8", "surrogatepass")) is not None


@given(_TEXT)
def test_the_quick_look_never_misses_a_card_number(text: str) -> None:
    """mask_card_numbers returns a text as it is when the quick look finds no span of 12
    digits and separators: then the full net finds nothing in it either."""
    if not cards.may_hold_card_number(text):
        assert cards._CARD_NUMBER_LIKE.search(text) is None
        assert mask_card_numbers(text) == text


@given(_TEXT)
def test_the_quick_look_is_the_span_of_12(text: str) -> None:
    """The byte-table look finds exactly what the regular expression of its definition finds."""
    assert cards.may_hold_card_number(text) == _span_of_12(text)


@pytest.mark.parametrize(
    "text",
    ["6222 0212 3456", "12-34-56-78-90", "٣" * 12 + "1", "a\udc80" + "1" * 12, "中" + "0" * 12,
     "1.2/3_4\t5", "12.50 13.00 1"],
)  # fmt: skip
def test_the_quick_look_at_its_edges(text: str) -> None:
    assert cards.may_hold_card_number(text) == _span_of_12(text)


# Digits of four scripts a person or a peer may write: ASCII, full-width (a Chinese input
# method), Arabic-Indic, Devanagari.
_SCRIPTS = ("0123456789", "０１２３４５６７８９", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९")
# What may stand between the digits of a written card number.
_SEPARATORS = (" ", "-", ".", "/", "_", "\t", "\u00a0", "\u3000", "\u200b", "－")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a card number glued to a date, an amount, or zero-filled (batch upload's n20)
        ("622202123456789012820261207", "622202*****************1207"),
        ("pan 06222021234567890128 ok", "pan 062220**********0128 ok"),
        ("6222021234567890128=3012101", "622202*********0128=3012101"),  # `=` splits: a word
        ("62220212345678901283012101", "622202****************2101"),  # track 2, no `=`
        # digits of other scripts, written by a person or a peer
        ("卡号６２２２０２１２３４５６７８９０１２８", "卡号622202*********0128"),
        ("٦٢٢٢٠٢١٢٣٤٥٦٧٨٩٠١٢٨", "622202*********0128"),
        # separators other than one space or hyphen
        ("6222.0212.3456.7890.128", "622202*********0128"),
        ("6222/0212/3456/7890/128", "622202*********0128"),
        ("6222_0212_3456_7890_128", "622202*********0128"),
        ("6222  0212  3456  7890  128", "622202*********0128"),
        ("6222\t0212\t3456\t7890\t128", "622202*********0128"),
        ("6222\u00a00212\u00a03456\u00a07890\u00a0128", "622202*********0128"),
        ("6222\u200b0212\u200b3456\u200b7890\u200b128", "622202*********0128"),
        # what stays readable
        ("fill " + "0" * 30 + "1250", "fill " + "0" * 30 + "1250"),  # no card can start in it
        # …but a long run where one could start is masked, a card or not (field 48's totals)
        ("totals 000000001250001000000000000", "totals 000000*****************0000"),
        ("at 2026-12-07 10:30:00 amount 1,234.56", "at 2026-12-07 10:30:00 amount 1,234.56"),
        ("batch 000001 stan 000007 rrn 123456789012", "batch 000001 stan 000007 rrn 123456789012"),
        ("6222 - 0212 - 3456", "6222 - 0212 - 3456"),  # three characters apart: no run
        (f"{MERCHANT_ID} 10000001", f"{MERCHANT_ID} 10000001"),  # allowed id beside an id
        (f"{MERCHANT_ID} 6222021234567890128", f"{MERCHANT_ID} 622202*********0128"),
    ],
)
def test_the_edges_of_the_net(text: str, expected: str) -> None:
    """Long runs, digits of other scripts and other separators are masked; the rest is not."""
    assert expected == mask_card_numbers(text, allowed=frozenset({MERCHANT_ID}))


def _other_middle(pan: str) -> str | None:
    """A Luhn-valid card number with ``pan``'s first 6 and last 4 and a middle that differs
    from ``pan``'s in every digit; None if no simple one is found."""
    middle = range(6, len(pan) - 4)
    for shift in range(1, 10):
        for adjust in middle:
            digits = [
                d if i not in middle else str((int(d) + shift) % 10) for i, d in enumerate(pan)
            ]
            for value in "0123456789":
                digits[adjust] = value
                other = "".join(digits)
                if luhn_valid(other) and all(other[i] != pan[i] for i in middle):
                    return other
    return None


def _written(pan: str, scripts: list[int], separators: list[str]) -> str:
    """``pan`` written digit by digit in the scripts given, the separators between them."""
    out = []
    for index, digit in enumerate(pan):
        out.append(_SCRIPTS[scripts[index % len(scripts)]][int(digit)])
        if index < len(pan) - 1:
            out.append(separators[index % len(separators)])
    return "".join(out)


_AROUND = st.text(alphabet="0123456789 -./_\t:=,ab中٣５\u00a0\u200b", max_size=12)


@given(
    body=st.text(alphabet="0123456789", min_size=11, max_size=18).filter(lambda s: s[0] != "0"),
    scripts=st.lists(st.integers(0, len(_SCRIPTS) - 1), min_size=1, max_size=3),
    separators=st.lists(
        st.text(alphabet="".join(_SEPARATORS), max_size=cards.SEPARATOR_CHARS_MAX),
        min_size=1,
        max_size=3,
    ),
    before=_AROUND,
    after=_AROUND,
)
def test_no_card_number_survives_in_any_surroundings(
    body: str, scripts: list[int], separators: list[str], before: str, after: str
) -> None:
    """A Luhn-valid card number, in any script and grouping, glued to any digits, separators
    or words, never comes out whole; and nothing of its middle digits (7th to the 5th from the
    end) comes out at all: another card number with the same first 6 and last 4 and another
    middle gives the very same text."""
    pan = _with_check_digit(body)
    other = _other_middle(pan)
    if other is None:
        return
    masked = mask_card_numbers(before + _written(pan, scripts, separators) + after)
    assert pan not in masked
    assert pan not in cards._ascii_digits(masked)
    assert masked == mask_card_numbers(before + _written(other, scripts, separators) + after)
