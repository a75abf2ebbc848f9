"""Sub-field codecs: 60, 61, 48 (settlement totals and batch-upload records), 63, track 2.

Each codec turns a typed value into the digit (or ascii) string pyiso8583
packs, and back. Decoding takes the field's text and raises
:class:`~posbatch.errors.DecodeError` naming the sub-field ("60.2") and the
offset inside the field in digits (the message decoder adds where the field
starts in the body).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from posbatch.batch.cards import mask_pan
from posbatch.batch.limits import (
    BATCH_NO_MAX,
    PAN_DIGITS_MAX,
    PAN_DIGITS_MIN,
    UPLOAD_RECORDS_MAX,
)
from posbatch.batch.model import (
    BatchReason,
    BatchState,
    BatchStateDetail,
    CardTotals,
    CardType,
    Reconciliation,
    SettlementTotals,
)
from posbatch.errors import DecodeError, EncodeError

__all__ = [
    "DETAIL_LAST_STAN",
    "SETTLEMENT_TOTALS_DIGITS",
    "Field60",
    "OriginalTransaction",
    "UploadRecord",
    "decode_batch_detail",
    "decode_detail",
    "decode_totals",
    "decode_track2",
    "decode_upload_end",
    "decode_upload_records",
    "encode_batch_detail",
    "encode_detail",
    "encode_totals",
    "encode_track2",
    "encode_upload_end",
    "encode_upload_records",
]

SETTLEMENT_TOTALS_DIGITS: Final = 62
FIELD63_BYTES_MAX: Final = 163
# Field 63 of an echo answer: the STAN of the last transaction in the host's current batch.
DETAIL_LAST_STAN: Final = "T"
TRACK2_DIGITS_MAX: Final = 37
# 60 is n..17: 11 digits of 60.1-60.3, then up to 6 one-digit sub-fields.
FIELD60_EXTRA_DIGITS_MAX: Final = 6


def first_non_digit(text: str) -> int:
    """Index of the first character of ``text`` that is not a decimal digit (-1: none)."""
    for index, char in enumerate(text):
        if not ("0" <= char <= "9"):
            return index
    return -1


def non_digit_reason(text: str) -> tuple[str, int]:
    """Why ``text`` is not decimal digits, and the index of the first bad character.

    The reason names that one character and where it is, never the text around
    it: a field that should be digits may hold a card number (2, 35, 48), and a
    peer that changes one nibble of it must not get the rest of the number
    into our logs (DESIGN.md: no more than the first 6 and last 4 digits, even
    when the field is malformed).
    """
    index = first_non_digit(text)
    return f"not decimal digits: {text[index]!r} at digit {index + 1}", index


def _digits(value: int, width: int, field: str) -> str:
    if not 0 <= value < 10**width:
        raise EncodeError(f"{value} does not fit in {width} digits", field=field)
    return f"{value:0{width}d}"


def _number(text: str, start: int, width: int, field: str) -> int:
    piece = text[start : start + width]
    if len(piece) != width:
        raise DecodeError(f"needs {width} digits, has {len(piece)}", field=field, position=start)
    if not (piece.isdigit() and piece.isascii()):
        reason, index = non_digit_reason(piece)
        raise DecodeError(reason, field=field, position=start + index)
    return int(piece)


# --- field 60 -----------------------------------------------------------------


def field60_text(message_type: str, batch_no: int, network_code: str, extra: str = "") -> str:
    """Field 60 as digits: 60.1 n2 + 60.2 batch_no n6 + 60.3 n3 + the extra one-digit sub-fields."""
    if not (len(message_type) == 2 and message_type.isdigit()):
        raise EncodeError(
            f"message type is 2 digits, got {len(message_type)} characters", field="60.1"
        )
    if not 1 <= batch_no <= BATCH_NO_MAX:
        raise EncodeError(f"batch_no {batch_no} outside 1..{BATCH_NO_MAX}", field="60.2")
    if not (len(network_code) == 3 and network_code.isdigit()):
        raise EncodeError(
            f"network code is 3 digits, got {len(network_code)} characters", field="60.3"
        )
    if extra and (len(extra) > FIELD60_EXTRA_DIGITS_MAX or not extra.isdigit()):
        raise EncodeError(
            f"extra sub-fields are 1..{FIELD60_EXTRA_DIGITS_MAX} digits, got {len(extra)} "
            "characters",
            field="60.4",
        )
    return f"{message_type}{batch_no:06d}{network_code}{extra}"


def parse_field60(text: str, *, no_batch_ok: bool = False) -> tuple[str, int, str, str]:
    """(60.1, 60.2 batch_no, 60.3, extra digits) of field 60's digits.

    60.2 ``000000`` names no batch: refused, but where ``no_batch_ok`` (a sign-on, whose
    terminal may hold no batch yet — a new one's first sign-on; the answer names the
    batch)."""
    if len(text) < 11:
        raise DecodeError(f"needs at least 11 digits, has {len(text)}", field="60", position=0)
    if not (text.isdigit() and text.isascii()):
        reason, index = non_digit_reason(text)
        raise DecodeError(reason, field="60", position=index)
    batch_no = int(text[2:8])
    if batch_no == 0 and not no_batch_ok:
        raise DecodeError("batch_no 000000 is not a batch", field="60.2", position=2)
    return text[:2], batch_no, text[8:11], text[11:]


@dataclass(frozen=True, slots=True)
class Field60:
    """60.1 message type code n2, 60.2 batch_no n6, 60.3 network management code n3, extras."""

    message_type: str
    batch_no: int
    network_code: str
    extra: str = ""  # the optional one-digit sub-fields 60.4 …, kept as sent

    def encode(self) -> str:
        return field60_text(self.message_type, self.batch_no, self.network_code, self.extra)

    @classmethod
    def decode(cls, text: str) -> Field60:
        return cls(*parse_field60(text))


# --- field 61 -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OriginalTransaction:
    """Field 61: the transaction a void, refund or void-reversal refers to."""

    batch_no: int
    stan: int
    date_mmdd: str | None = None

    def encode(self) -> str:
        text = _digits(self.batch_no, 6, "61.1") + _digits(self.stan, 6, "61.2")
        if self.date_mmdd is not None:
            if not (len(self.date_mmdd) == 4 and self.date_mmdd.isdigit()):
                raise EncodeError(
                    f"date is MMDD, 4 digits, got {len(self.date_mmdd)} characters", field="61.3"
                )
            text += self.date_mmdd
        return text

    @classmethod
    def decode(cls, text: str) -> OriginalTransaction:
        if len(text) not in (12, 16):
            raise DecodeError(
                f"original transaction is 12 or 16 digits, got {len(text)}", field="61", position=0
            )
        batch_no = _number(text, 0, 6, "61.1")
        stan = _number(text, 6, 6, "61.2")
        if len(text) == 12:
            return cls(batch_no, stan)
        _number(text, 12, 4, "61.3")
        return cls(batch_no, stan, text[12:16])


# --- field 48: settlement -----------------------------------------------------


def _encode_card_totals(totals: CardTotals, field: str) -> str:
    return (
        _digits(totals.debit_amount_fen, 12, field)
        + _digits(totals.debit_count, 3, field)
        + _digits(totals.credit_amount_fen, 12, field)
        + _digits(totals.credit_count, 3, field)
        + _digits(int(totals.reconciliation), 1, field)
    )


def _decode_card_totals(text: str, start: int, field: str) -> CardTotals:
    code = _number(text, start + 30, 1, field)
    if code > 3:
        raise DecodeError(f"reconciliation code {code}", field=field, position=start + 30)
    return CardTotals(
        _number(text, start, 12, field),
        _number(text, start + 12, 3, field),
        _number(text, start + 15, 12, field),
        _number(text, start + 27, 3, field),
        Reconciliation(code),
    )


def encode_totals(totals: SettlementTotals) -> str:
    """Field 48 of 0500/0510: domestic cards then foreign cards, 31 digits each."""
    return _encode_card_totals(totals.domestic, "48.1") + _encode_card_totals(
        totals.foreign, "48.2"
    )


def decode_totals(text: str) -> SettlementTotals:
    if len(text) != SETTLEMENT_TOTALS_DIGITS:
        raise DecodeError(
            f"settlement totals are {SETTLEMENT_TOTALS_DIGITS} digits, got {len(text)}",
            field="48",
            position=0,
        )
    return SettlementTotals(
        _decode_card_totals(text, 0, "48.1"), _decode_card_totals(text, 31, "48.2")
    )


# --- field 48: batch upload ---------------------------------------------------


_CARD_TYPES: Final = {member.value: member for member in CardType}
_RECORD_DIGITS: Final = 2 + 6 + 20 + 12


@dataclass(frozen=True, slots=True, repr=False)
class UploadRecord:
    """One batch-upload record: card type n2, STAN n6, PAN n20 (zero-filled), amount n12."""

    card_type: CardType
    stan: int
    pan: str
    amount_fen: int

    def __repr__(self) -> str:  # never print a full PAN
        return (
            f"UploadRecord(card_type={self.card_type.value}, stan={self.stan:06d}, "
            f"pan={mask_pan(self.pan)}, amount_fen={self.amount_fen})"
        )

    def encode(self) -> str:
        if not (PAN_DIGITS_MIN <= len(self.pan) <= PAN_DIGITS_MAX and self.pan.isdigit()):
            raise EncodeError(f"PAN must be {PAN_DIGITS_MIN}..{PAN_DIGITS_MAX} digits", field="48")
        if self.pan[0] == "0":
            # n20 is zero-filled on the left: a leading 0 could not be told from the fill.
            raise EncodeError("a PAN in an upload record cannot start with 0", field="48")
        return (
            self.card_type.value
            + _digits(self.stan, 6, "48")
            + self.pan.rjust(20, "0")
            + _digits(self.amount_fen, 12, "48")
        )


def encode_upload_records(records: tuple[UploadRecord, ...]) -> str:
    if not 1 <= len(records) <= UPLOAD_RECORDS_MAX:
        raise EncodeError(
            f"{len(records)} records: a message carries 1..{UPLOAD_RECORDS_MAX}", field="48"
        )
    return f"{len(records):02d}" + "".join(record.encode() for record in records)


def decode_upload_records(text: str) -> tuple[UploadRecord, ...]:
    count = _number(text, 0, 2, "48")
    if not 1 <= count <= UPLOAD_RECORDS_MAX:
        raise DecodeError(
            f"record count {count} outside 1..{UPLOAD_RECORDS_MAX}", field="48", position=0
        )
    if len(text) != 2 + count * _RECORD_DIGITS:
        raise DecodeError(
            f"{count} records need {2 + count * _RECORD_DIGITS} digits, got {len(text)}",
            field="48",
            position=0,
        )
    records = []
    for index in range(count):
        start = 2 + index * _RECORD_DIGITS
        card_type = _CARD_TYPES.get(text[start : start + 2])
        if card_type is None:
            raise DecodeError(f"card type {text[start : start + 2]!r}", field="48", position=start)
        stan = _number(text, start + 2, 6, "48")
        _number(text, start + 8, 20, "48")
        pan = text[start + 8 : start + 28].lstrip("0")
        if not PAN_DIGITS_MIN <= len(pan) <= PAN_DIGITS_MAX:
            raise DecodeError(
                f"PAN must be {PAN_DIGITS_MIN}..{PAN_DIGITS_MAX} digits",
                field="48",
                position=start + 8,
            )
        amount = _number(text, start + 28, 12, "48")
        records.append(UploadRecord(card_type, stan, pan, amount))
    return tuple(records)


def encode_upload_end(total_records: int) -> str:
    return _digits(total_records, 4, "48")


def decode_upload_end(text: str) -> int:
    if len(text) != 4:
        raise DecodeError(f"upload end count is 4 digits, got {len(text)}", field="48", position=0)
    return _number(text, 0, 4, "48")


# --- field 63 -----------------------------------------------------------------


def encode_detail(items: Mapping[str, str]) -> str:
    """Field 63 as ``KEY=value;KEY=value`` (printable ascii, ≤ 163 bytes)."""
    text = ";".join(f"{key}={value}" for key, value in items.items())
    if len(text) > FIELD63_BYTES_MAX or not (text.isascii() and text.isprintable()):
        raise EncodeError(
            f"detail of {len(text)} characters is not ≤163 printable ascii bytes", field="63"
        )
    for position, (key, value) in enumerate(items.items(), start=1):
        if not key or "=" in key or ";" in key or ";" in value:
            raise EncodeError(
                f"detail item {position}: a key is non-empty without '=' or ';', "
                "a value has no ';'",
                field="63",
            )
    return text


def decode_detail(text: str) -> dict[str, str]:
    """The ``KEY=value`` items of field 63; text that is not in that form is kept under ``""``."""
    items: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            items[key] = value
        elif part:
            items[""] = (items.get("", "") + " " + part).strip()
    return items


def encode_batch_detail(detail: BatchStateDetail) -> str:
    """Field 63 of a 77 (and of a sign-on response): ``R=… B=… S=… L=…``."""
    for batch_no in (detail.host_batch_no, detail.last_closed_batch_no):
        if batch_no is not None and not 1 <= batch_no <= BATCH_NO_MAX:
            raise EncodeError(f"batch_no {batch_no} outside 1..{BATCH_NO_MAX}", field="63")
    items = {}
    if detail.reason is not None:
        items["R"] = detail.reason.value
    items["B"] = f"{detail.host_batch_no:06d}"
    items["S"] = detail.host_batch_state.value
    if detail.last_closed_batch_no is not None:
        items["L"] = f"{detail.last_closed_batch_no:06d}"
    return encode_detail(items)


def decode_batch_detail(text: str) -> BatchStateDetail | None:
    """The batch detail in field 63 ``text``, or None when 63 does not carry one."""
    items = decode_detail(text)
    batch_no = items.get("B", "")
    last = items.get("L")
    if not _is_batch_no(batch_no) or (last is not None and not _is_batch_no(last)):
        return None
    try:
        reason = BatchReason(items["R"]) if "R" in items else None
        state = BatchState(items["S"])
    except (KeyError, ValueError):
        return None
    return BatchStateDetail(reason, int(batch_no), state, int(last) if last is not None else None)


def _is_batch_no(text: str) -> bool:
    return len(text) == 6 and text.isdigit() and text.isascii() and text != "000000"


# --- PAN and track 2 ------------------------------------------------------------


def encode_track2(track2: str) -> str:
    """Track 2 ``PAN=YYMM…`` as packed nibbles (``=`` is the nibble D)."""
    packed = track2.replace("=", "D")
    if (
        not packed
        or len(packed) > TRACK2_DIGITS_MAX
        or packed.count("D") > 1
        or not packed.replace("D", "").isdigit()
    ):
        raise EncodeError("track 2 is 1..37 digits with at most one '='", field="35")
    return packed


def decode_track2(text: str) -> str:
    """Track 2 from its nibbles; the offset of a bad nibble is in digits."""
    if not text:
        raise DecodeError("track 2 is empty", field="35", position=0)
    for offset, nibble in enumerate(text):
        if nibble not in "0123456789D":
            raise DecodeError(f"track 2 has the nibble {nibble}", field="35", position=offset)
    if text.count("D") > 1:
        raise DecodeError("track 2 has more than one separator", field="35", position=0)
    return text.replace("D", "=")
