"""Card-number and currency rules: never approve what cannot be settled.

The host and the terminal apply the same rules, the host at approval and the
terminal before it spends a STAN or writes anything to its journal. A card
number (PAN) is refused (response code 14) when a message that must carry it
later could not:

- field 2 is LLVAR n..19, and this profile takes 12..19 digits;
- the batch-upload record carries the PAN as n20, right-aligned and zero-filled,
  so a PAN that starts with 0 could not be told from the fill: uploading the
  batch would fail, and the batch would never close;
- the last digit is the Luhn check digit (ISO/IEC 7812): a number that fails it
  was mistyped or misread, and an issuer would refuse it anyway.

When track 2 is present (a swiped card, entry mode 02x), its PAN — the digits
before the separator ``=`` — obeys the same rules and must be field 2's PAN: a
request whose two card numbers differ names two cards, and the host could not
tell which one it approved (14). Its expiry — the four digits YYMM after the
separator — is the card's own: a swiped sale is judged on it whether or not field
14 is sent (:func:`card_expiry`).

Field 49 (currency): only 156 (CNY) is settled. A value that is not three
decimal digits is a format error (30); a well-formed other ISO 4217 code is
refused with 40 (``CURRENCY_NOT_SUPPORTED``, see :mod:`posbatch.batch.codes`).

Pure: strings in, a refusal (or None) out. A refusal never quotes the PAN.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from posbatch.batch.codes import CURRENCY_NOT_SUPPORTED
from posbatch.batch.limits import MONTHS_IN_YEAR, PAN_DIGITS_MAX, PAN_DIGITS_MIN

__all__ = [
    "CURRENCY_CNY",
    "ENTRY_MODE_MANUAL",
    "ENTRY_MODE_SWIPED",
    "INVALID_CARD",
    "PAN_DIGITS_MAX",
    "PAN_DIGITS_MIN",
    "CardRefusal",
    "bin8_text",
    "card_bin8",
    "card_expiry",
    "check_currency",
    "check_pan",
    "check_track2",
    "expiry_problem",
    "grouped_pieces",
    "is_yymm",
    "luhn_valid",
    "mask_card_numbers",
    "mask_pan",
    "quoted_as_typed",
    "track2_expiry",
    "track2_pan",
    "ungrouped",
]

INVALID_CARD: Final = "14"
FORMAT_ERROR: Final = "30"
CURRENCY_CNY: Final = "156"
CURRENCY_DIGITS: Final = 3
# Field 22, POS entry mode: 01x key-entered, 02x magnetic stripe (track 2 read).
ENTRY_MODE_MANUAL: Final = "012"
ENTRY_MODE_SWIPED: Final = "021"
TRACK2_SEPARATOR: Final = "="

# Byte tables: an ascii digit's byte to its value, and to its doubled value (2d, less 9
# when over 9).
_VALUE: Final = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED_VALUE: Final = bytes.maketrans(b"0123456789", bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))
PAN_SHOWN_DIGITS: Final = 6 + 4  # what may be shown of a card number: first 6, last 4
# What may stand between two digits of one card number written in free text: a space of
# any kind (a tab, a no-break or an ideographic space), a hyphen or dash of any kind, a dot,
# a slash, an underscore, their full-width forms, and the invisible joiners a paste may
# carry (zero-width space, BOM) — one or two of them ("6222  0212", "6222 - 0212" is three
# and splits). More would join the columns of a table.
_SEPARATOR: Final = (
    "[ \t._/\\-\u00a0\u1680\u2000-\u200d\u2010-\u2015\u202f\u205f\u2060\u2212"
    "\u3000\ufeff\uff0d\uff0e\uff0f\uff3f]"
)
SEPARATOR_CHARS_MAX: Final = 2
_SEPARATORS: Final = re.compile(f"({_SEPARATOR}+)")
# A card number in free text: a run of at least 12 digits of any script (``\d`` is every
# Unicode decimal digit: ASCII, full-width ６, Arabic-Indic ٣ …), written whole or in groups
# ("6222 0212 3456 7890 123"), as long as it goes on — a card number glued to a date, an
# amount or a zero fill is inside a longer run, so the whole run is what is judged.
_CARD_NUMBER_LIKE: Final = re.compile(
    rf"(?<!\d)\d(?:{_SEPARATOR}{{0,{SEPARATOR_CHARS_MAX}}}\d){{{PAN_DIGITS_MIN - 1},}}"
)
# A card number as a person types it: groups of digits split by single spaces or hyphens.
_DIGIT_GROUPS: Final = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
# What every match of _CARD_NUMBER_LIKE holds: 12 characters in a row, each an ASCII digit,
# an ASCII separator or a character beyond ASCII (a digit or separator of another script).
# A text without them has no card number. Found on the text's UTF-8 bytes translated byte by
# byte (those ASCII characters and every byte of a character beyond ASCII to "1", anything
# else to "0"), 14 times faster than a regular expression (a server's every log line).
_SPAN_CHARACTERS: Final = frozenset(b"0123456789 \t._/-") | frozenset(range(0x80, 0x100))
_SPAN_BYTES: Final = bytes(0x31 if byte in _SPAN_CHARACTERS else 0x30 for byte in range(256))
_SPAN: Final = b"1" * PAN_DIGITS_MIN


@dataclass(frozen=True, slots=True)
class CardRefusal:
    """Why a request is refused before anyone approves it, with its response code."""

    response_code: str
    reason_en: str
    reason_zh: str

    def __str__(self) -> str:
        return f"{self.reason_zh} / {self.reason_en}"


def luhn_valid(pan: str) -> bool:
    """Whether the last digit of ``pan`` is its Luhn check digit (digits only).

    From the right, every second digit is doubled (a doubled digit over 9 loses 9 —
    the table ``_DOUBLED_VALUE``); the sum must end in 0. Run for every sale (terminal, host
    rule, issuer), so written with C-level string operations.
    """
    if not (pan.isascii() and pan.isdigit()):
        return False
    backwards = pan[::-1].encode("ascii")
    # Each digit's byte becomes its value (doubled ones their doubled value): sum() then
    # adds small ints in C.
    return (
        sum(backwards[::2].translate(_VALUE)) + sum(backwards[1::2].translate(_DOUBLED_VALUE))
    ) % 10 == 0


def mask_pan(pan: str) -> str:
    """``622588******1234``: first 6 and last 4 digits, the rest starred."""
    if len(pan) < PAN_SHOWN_DIGITS:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - PAN_SHOWN_DIGITS) + pan[-4:]


# An 8-digit BIN (ISO/IEC 7812-1:2017) is matched on cards of at least 16 digits: PCI SSC's
# truncation rule for 8-digit BINs (first 8, last 4) is for those lengths; a shorter card
# is matched on its first 6.
BIN8_PAN_DIGITS_MIN: Final = 16


def card_bin8(pan: str) -> str | None:
    """What the host hashes (under its PAN key) to match ``pan`` against 8-digit BIN entries:
    its first 8 digits, tagged so that no card number hashes the same; None for a card
    under :data:`BIN8_PAN_DIGITS_MIN` digits. The clear digits are never stored."""
    if len(pan) < BIN8_PAN_DIGITS_MIN:
        return None
    return bin8_text(pan[:8])


def bin8_text(prefix: str) -> str:
    """The text hashed for the 8-digit BIN ``prefix`` (a card number is digits only)."""
    return "bin8:" + prefix


def mask_card_numbers(text: str, *, allowed: frozenset[str] = frozenset()) -> str:
    """``text`` with every card number in it masked to its first 6 and last 4 digits.

    The one safety net of every log line, page, export and bundle that may carry text a
    peer or a person typed. It looks at runs of digits of any script (full-width ６２２２,
    Arabic-Indic …), whole or grouped by one or two separators (spaces of any kind,
    hyphens, dots, slashes, underscores). A run of 13–19 digits is a card number; a run of
    12 is one when this profile would take it as one (no leading 0, Luhn check digit
    valid): a 12-digit RRN or a zero-filled amount is left readable unless it could be a
    card. A run longer than 19 (a card number glued to a date or an amount, the zero-filled
    n20 of a batch-upload record) may hold a card number anywhere: it is masked whole to
    its first 6 and last 4, unless no 12 of its digits can start a card number (all zeros
    but for its last 11: a zero-filled total). ``allowed`` are ids shown whole (a 15-digit
    merchant id). A masked run is written in ASCII digits, without its separators.
    """

    def mask(match: re.Match[str]) -> str:
        grouped = match.group(0)
        if not allowed or _ascii_digits(grouped) in allowed:
            return _mask_run(grouped, allowed)
        # An allowed id is a group of its own ("898110054110001 10000001": a merchant id
        # and a terminal id side by side): shown whole, and what is on each side of it is
        # judged as a run of its own.
        pieces = _SEPARATORS.split(grouped)  # groups, with the separators between them
        masked: list[str] = []
        run: list[str] = []
        for index, piece in enumerate(pieces):
            if index % 2 == 0 and _ascii_digits(piece) in allowed:
                if run:
                    masked.append(_mask_run("".join(run[:-1]), allowed) + run[-1])
                    run = []
                masked.append(piece)
            elif index % 2 == 1 and not run:
                masked.append(piece)
            else:
                run.append(piece)
        if run:
            masked.append(_mask_run("".join(run), allowed))
        return "".join(masked)

    if not may_hold_card_number(text):
        return text
    return _CARD_NUMBER_LIKE.sub(mask, text)


def _mask_run(grouped: str, allowed: frozenset[str]) -> str:
    """``grouped`` (digits and separators) masked when it may be or hold a card number."""
    digits = _ascii_digits(grouped)
    if len(digits) < PAN_DIGITS_MIN or digits in allowed:
        return grouped
    if len(digits) == PAN_DIGITS_MIN and check_pan(digits) is not None:
        return grouped
    if len(digits) > PAN_DIGITS_MAX and not _may_start_a_card_number(digits):
        return grouped
    return mask_pan(digits)


def _ascii_digits(grouped: str) -> str:
    """The digits of ``grouped`` (digits of any script and separators) as ASCII digits."""
    if grouped.isascii():
        return "".join(char for char in grouped if char.isdigit())
    return "".join(str(unicodedata.decimal(char)) for char in grouped if char.isdecimal())


def _may_start_a_card_number(digits: str) -> bool:
    """Whether a digit other than 0 has at least 11 digits after it: a card number (12 to
    19 digits, never a leading 0) could start there."""
    return bool(digits[: len(digits) - PAN_DIGITS_MIN + 1].strip("0"))


def ungrouped(typed: str) -> str:
    """``typed`` without the spaces or hyphens between its groups of digits, when it is such
    groups ("6222 0212 3456 7890 128", as printed on a card); anything else as it is, for
    :func:`check_pan` to refuse."""
    if _DIGIT_GROUPS.fullmatch(typed):
        return typed.replace(" ", "").replace("-", "")
    return typed


def grouped_pieces(text: str) -> frozenset[str]:
    """The digit groups of ``text`` that the card-number net reads as part of a longer run
    ("62220212" and "34567890" in "62220212-34567890"): an ``allowed`` id must not be one
    of them unless the caller knows the run is not a card number, since ``allowed`` shows a
    group whole and judges what is beside it alone (a card split in two shows whole)."""
    pieces: set[str] = set()
    for match in _CARD_NUMBER_LIKE.finditer(text):
        groups = _SEPARATORS.split(match.group(0))[0::2]
        if len(groups) > 1:
            pieces.update(_ascii_digits(group) for group in groups)
    return frozenset(pieces)


def may_hold_card_number(text: str) -> bool:
    """Whether ``text`` holds 12 characters in a row that digits and separators could make
    (any character beyond ASCII counts as one): without them it holds no card number
    (:func:`mask_card_numbers` leaves it)."""
    return _SPAN in text.encode("utf-8", "surrogatepass").translate(_SPAN_BYTES)


QUOTED_CHARS_MAX: Final = 16  # an error quotes at most this much of what was typed


def quoted_as_typed(text: str) -> str:
    """`` '12.505'`` — what was typed, for a one-line error to quote — or ``""`` when it is
    long, not plain ASCII or could hold a card number: a card number typed into an amount,
    a rate, a date or an id went back whole onto the page or the terminal that refused it
    ("amount '6222021234567890128' is too large")."""
    if (
        len(text) > QUOTED_CHARS_MAX
        or not (text.isascii() and text.isprintable())
        or (may_hold_card_number(text) and any(char.isdigit() for char in text))
    ):
        return ""
    return f" {text!r}"


def check_pan(pan: str, *, check_luhn: bool = True) -> CardRefusal | None:
    """None when ``pan`` may be approved; else why not (code 14)."""
    if not (pan.isascii() and pan.isdigit()):
        return CardRefusal(
            INVALID_CARD,
            "a card number is 12 to 19 digits 0-9, nothing else",
            "卡号只能是 12 至 19 位数字",
        )
    if not PAN_DIGITS_MIN <= len(pan) <= PAN_DIGITS_MAX:
        return CardRefusal(
            INVALID_CARD,
            f"a card number is 12 to 19 digits, this one has {len(pan)}",
            f"卡号应为 12 至 19 位，此卡号为 {len(pan)} 位",
        )
    if pan[0] == "0":
        return CardRefusal(
            INVALID_CARD,
            "a card number cannot start with 0 (batch upload could not carry it)",
            "卡号不能以 0 开头(批上送无法传送)",
        )
    if check_luhn and not luhn_valid(pan):
        return CardRefusal(
            INVALID_CARD,
            "the card number's check digit is wrong (mistyped or misread)",
            "卡号校验位错误(输入或读卡有误)",
        )
    return None


def track2_pan(track2: str) -> str | None:
    """The PAN of track 2 (the digits before ``=``); None when there is no separator."""
    pan, separator, _rest = track2.partition(TRACK2_SEPARATOR)
    return pan if separator else None


def track2_expiry(track2: str | None) -> str | None:
    """Track 2's expiry: the (up to) four characters after ``=``; None without a track or a
    separator. Fewer than four, or not a month, is for the issuer to refuse, as field 14's."""
    if track2 is None:
        return None
    _pan, separator, rest = track2.partition(TRACK2_SEPARATOR)
    return rest[:4] if separator else None


def is_yymm(expiry: str) -> bool:
    """Whether ``expiry`` is a card expiry YYMM: four digits 0-9, the month 01 to 12."""
    return expiry_problem(expiry) is None


def expiry_problem(expiry: str) -> str | None:
    """What is wrong with an expiry keyed in (None: it is YYMM with a month 01..12).

    A month 13 or 00 is a typing slip, not an expired card: the terminal and the till refuse
    it before anything is sent (the host would answer 54, and the cashier would tell the
    customer the card is expired). A track's expiry is the card's and goes to the host as read.
    """
    if not (len(expiry) == 4 and expiry.isascii() and expiry.isdigit()):
        return "the expiry is YYMM, 4 digits 0-9 (e.g. 3012)"
    if not 1 <= int(expiry[2:]) <= MONTHS_IN_YEAR:
        return f"expiry {expiry}: month {expiry[2:]} is not 01..12 (YYMM): check it on the card"
    return None


def card_expiry(expiry: str | None, track2: str | None) -> str | None:
    """The expiry a sale is judged on: field 14 and track 2's, whichever is worse — one that
    is not a month, else the earlier. A swiped card's expiry is on its track (field 14 is
    often absent), and a field 14 the terminal filled in cannot make an expired card good."""
    candidates = [e for e in (expiry, track2_expiry(track2)) if e is not None]
    if not candidates:
        return None
    malformed = [e for e in candidates if not is_yymm(e)]
    return malformed[0] if malformed else min(candidates)


def check_track2(pan: str, track2: str | None, *, check_luhn: bool = True) -> CardRefusal | None:
    """:func:`check_pan` of field 2, then of track 2's PAN, which must be the same number."""
    refused = check_pan(pan, check_luhn=check_luhn)
    if refused is not None or track2 is None:
        return refused
    on_track = track2_pan(track2)
    if on_track is None:
        return CardRefusal(
            INVALID_CARD,
            "track 2 has no separator '=': no card number can be read from it",
            "二磁道数据缺少分隔符，无法读出卡号",
        )
    refused = check_pan(on_track, check_luhn=check_luhn)
    if refused is not None:
        return CardRefusal(
            INVALID_CARD, "track 2: " + refused.reason_en, "二磁道:" + refused.reason_zh
        )
    if on_track != pan:
        return CardRefusal(
            INVALID_CARD,
            "the card number in track 2 differs from the one in field 2",
            "二磁道中的卡号与主账号不一致",
        )
    return None


def check_currency(currency: str) -> CardRefusal | None:
    """None for 156 (CNY); 30 for a value that is not 3 digits; 40 for another currency."""
    if currency == CURRENCY_CNY:
        return None
    if not (len(currency) == CURRENCY_DIGITS and currency.isascii() and currency.isdigit()):
        return CardRefusal(
            FORMAT_ERROR,
            "field 49 (currency) must be 3 digits (ISO 4217 numeric)",
            "币种代码(49 域)须为 3 位数字",
        )
    return CardRefusal(
        CURRENCY_NOT_SUPPORTED,
        f"currency {currency} is not accepted: only 156 (CNY) is settled",
        f"不受理币种 {currency}:仅受理人民币(156)",
    )
