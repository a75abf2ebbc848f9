"""Bad input: every way a body can be wrong gives a DecodeError naming the field and byte.

Bodies are built from a valid sample through bare pyiso8583 with one field
changed (so only that field is wrong), or by editing one byte.
"""

from __future__ import annotations

import iso8583
import pytest
from wire_samples import SAMPLES

from posbatch.batch.model import CardType, Kind
from posbatch.errors import DecodeError, EncodeError
from posbatch.wire import (
    SPEC,
    Field60,
    OriginalTransaction,
    SaleRequest,
    TransactionResponse,
    UploadRecord,
    decode_message,
    encode_message,
)
from posbatch.wire._fields import encode_detail, encode_track2, encode_upload_records
from testbed import MERCHANT_ID, TERMINAL_ID


def _body(name: str, **changes: str | None) -> bytes:
    """The sample ``name`` with fields replaced (``f4="..."``) or removed (``f22=None``)."""
    fields = SAMPLES[name].to_fields()
    for key, value in changes.items():
        number = key.removeprefix("f")
        if value is None:
            del fields[number]
        else:
            fields[number] = value
    return bytes(iso8583.encode(fields, SPEC)[0])


def _edit(body: bytes, index: int, value: int) -> bytes:
    edited = bytearray(body)
    edited[index] = value
    return bytes(edited)


# The sale sample: MTI 0-1, bitmap 2-9, 2 at 10 (length) / 11 (data), 3 at 21, 4 at 24,
# 11 at 30, 14 at 33, 22 at 35, 25 at 37, 35 at 38/39, 41 at 51, 42 at 59, 49 at 74,
# 60 at 77/79 (60.2 at 80, 60.3 at 83); 85 bytes.
SALE = _body("sale")

BAD_BODIES: dict[str, tuple[bytes, str, int, str]] = {
    "empty": (b"", "t", 0, "body is shorter than an MTI"),
    "MTI only": (SALE[:2], "p", 2, "body is shorter than MTI + bitmap"),
    "MTI not BCD": (bytes.fromhex("02A0") + SALE[2:], "t", 0, "MTI is not packed decimal: 02A0"),
    "MTI not in profile": (
        bytes.fromhex("0100") + SALE[2:],
        "t",
        0,
        "MTI 0100 is not in the wire profile",
    ),
    "secondary bitmap": (
        _edit(SALE, 2, SALE[2] | 0x80),
        "p",
        2,
        "secondary bitmap is not in the wire profile",
    ),
    "field 5 not in profile": (
        _edit(SALE, 2, SALE[2] | 0x08),
        "p",
        2,
        "field 5 is not in the wire profile",
    ),
    "truncated in field 42": (SALE[:60], "42", 59, "Field data is 1 bytes, expecting 15"),
    "truncated in field 4": (SALE[:27], "4", 24, "Field data is 3 bytes, expecting 6"),
    "A nibble in field 4": (
        _body("sale", f4="00000000125A"),
        "4",
        29,  # the byte of the bad nibble: digit 12 of field 4 (which starts at 24)
        "not decimal digits: 'A' at digit 12",
    ),
    "F nibble in field 11": (
        _body("sale", f11="00000F"),
        "11",
        32,
        "not decimal digits: 'F' at digit 6",
    ),
    "bad BCD length of field 2": (
        _edit(SALE, 10, 0x1A),
        "2",
        10,
        "Failed to decode field length, invalid BCD data",
    ),
    "length of field 2 over 19": (
        _edit(SALE, 10, 0x20),
        "2",
        10,
        "Field data is 20 nibbles, larger than maximum 19",
    ),
    "right pad nibble of field 2 not 0": (
        _edit(SALE, 20, (SALE[20] & 0xF0) | 0x05),
        "2",
        11,
        "the pad nibble of 19 digits is not 0",
    ),
    "left pad nibble of field 22 not 0": (
        _edit(SALE, 35, 0x10 | (SALE[35] & 0x0F)),
        "22",
        35,
        "the pad nibble of 3 digits is not 0",
    ),
    "PAN of 11 digits": (_body("sale", f2="6" * 11), "2", 11, "PAN must be 12..19 digits, has 11"),
    "extra byte after the last field": (SALE + b"\x00", "60", 85, "Extra data after last field"),
    "60.3 201 in a sale": (
        _body("sale", f60="22000001201"),
        "60.3",
        83,
        "expected 000 here, got 201",
    ),
    "60.1 unknown": (_body("sale", f60="99000001000"), "60.1", 79, "unknown message type 99"),
    "60.1 refund in a 0200": (
        _body("sale", f60="25000001000"),
        "3",
        21,
        "processing code 000000 does not fit refund",
    ),
    "60.2 batch 000000": (
        _body("sale", f60="22000000000"),
        "60.2",
        80,
        "batch_no 000000 is not a batch",
    ),
    "60 of 10 digits": (
        _body("sale", f60="2200000100"),
        "60",
        79,
        "needs at least 11 digits, has 10",
    ),
    "60.3 003 in an echo": (
        _body("echo", f60="00000001003"),
        "60.3",
        42,
        "0820 with network code 003",
    ),
    "60.3 301 in a sign-on": (
        _body("sign_on", f60="00000001301"),
        "60.3",
        42,
        "expected 003 here, got 301",
    ),
    "60.3 203 in a batch upload": (
        _body("batch_upload", f60="00000001203"),
        "60.3",
        205,
        "0320 with network code 203",
    ),
    "STAN 000000": (_body("sale", f11="000000"), "11", 30, "STAN 000000 is not a STAN"),
    "missing field 22": (_body("sale", f22=None), "22", 83, "field 22 is required here"),
    "missing field 60": (_body("sale", f60=None), "60", 77, "field 60 is required here"),
    "control character in field 41": (
        _body("sale", f41="1000000\x01"),
        "41",
        58,
        "not printable ascii: '\\x01' at character 8",
    ),
    "61 of 14 digits": (
        _body("void", f61="00000100000711"),
        "61",
        90,
        "original transaction is 12 or 16 digits, got 14",
    ),
    "48 totals of 60 digits": (
        _body("settlement", f48="0" * 60),
        "48",
        38,
        "settlement totals are 62 digits, got 60",
    ),
    "48 reconciliation code 4": (
        _body("settlement", f48="0" * 30 + "4" + "0" * 31),
        "48.1",
        53,
        "reconciliation code 4",
    ),
    "48 upload count 9": (
        _body("batch_upload", f48="09" + "0" * 40),
        "48",
        38,
        "record count 9 outside 1..8",
    ),
    "48 upload card type 02": (
        _body("batch_upload", f48="01" + "02" + "000007" + "0" * 8 + "1" * 12 + "0" * 12),
        "48",
        39,
        "card type '02'",
    ),
    "reversal reason 00": (
        _body("reversal_of_sale", f39="00"),
        "39",
        36,
        "reversal reason '00'",
    ),
    "reversal of a refund": (
        _body("reversal_of_sale", f3="200000", f60="25000001000"),
        "60.1",
        66,
        "a refund cannot be reversed",
    ),
    "track 2 with two separators": (
        _body("sale", f35="6222D1234D5"),
        "35",
        39,
        "track 2 has more than one separator",
    ),
    "track 2 with an E nibble": (
        _body("sale", f35="6222E1234"),
        "35",
        41,
        "track 2 has the nibble E",
    ),
    "0230 answering a sale": (
        bytes.fromhex("0230") + _body("sale_response")[2:],
        "60.1",
        86,
        "0230 cannot answer a sale",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_body_is_a_decode_error_naming_field_and_byte(case: str) -> None:
    """Each bad body raises DecodeError with the exact field, byte position and message."""
    body, field, position, reason = BAD_BODIES[case]
    with pytest.raises(DecodeError) as error:
        decode_message(body)
    assert (field, position, f"{reason}: field {field} at byte {position}") == (
        error.value.field,
        error.value.position,
        str(error.value),
    )


def test_decode_error_maps_to_response_code_30() -> None:
    """The host answers a body it cannot read with 30 (format error)."""
    assert "30" == DecodeError.response_code


def _sale(**changes: object) -> SaleRequest:
    values: dict[str, object] = {
        "terminal_id": TERMINAL_ID,
        "merchant_id": MERCHANT_ID,
        "stan": 7,
        "batch_no": 1,
        "amount_fen": 1250,
        "pan": "6222021234567890123",
    }
    values.update(changes)
    return SaleRequest(**values)  # type: ignore[arg-type]


ENCODE_ERRORS = {
    "STAN 0": (_sale(stan=0), "STAN 0 outside 1..999999: field 11"),
    "STAN 1000000": (_sale(stan=1_000_000), "STAN 1000000 outside 1..999999: field 11"),
    "batch 0": (_sale(batch_no=0), "batch_no 0 outside 1..999999: field 60.2"),
    "amount of 13 digits": (
        _sale(amount_fen=10**12),
        "1000000000000 does not fit in 12 digits: field 4",
    ),
    "negative amount": (_sale(amount_fen=-1), "-1 does not fit in 12 digits: field 4"),
    "PAN of 11 digits": (_sale(pan="6" * 11), "PAN must be 12..19 digits: field 2"),
    "expiry with a letter": (_sale(expiry="30A2"), "not decimal digits: 'A' at digit 3: field 14"),
    "terminal id of 7": (
        _sale(terminal_id="1000001"),
        "Field data is 7 bytes, expecting 8: field 41",
    ),
    "terminal id with a control character": (
        _sale(terminal_id="1000000\n"),
        "not printable ascii: '\\n' at character 8: field 41",
    ),
    "track 2 with two separators": (
        _sale(track2="6222=1=2"),
        "track 2 is 1..37 digits with at most one '=': field 35",
    ),
    "answer to a reversal of a refund": (
        TransactionResponse(
            Kind.REVERSAL, TERMINAL_ID, MERCHANT_ID, 7, 1, "00", 1, original_kind=Kind.REFUND
        ),
        "cannot reverse a refund: field 60.1",
    ),
    "original_kind on a sale's answer": (
        TransactionResponse(
            Kind.SALE, TERMINAL_ID, MERCHANT_ID, 7, 1, "00", 1, original_kind=Kind.SALE
        ),
        "original_kind is for a reversal's answer only: field 60.1",
    ),
}


@pytest.mark.parametrize("case", sorted(ENCODE_ERRORS))
def test_message_the_profile_cannot_carry_is_an_encode_error(case: str) -> None:
    """Building a bad message raises EncodeError with the exact reason and field."""
    message, expected = ENCODE_ERRORS[case]
    with pytest.raises(EncodeError) as error:
        encode_message(message)  # type: ignore[arg-type]
    assert expected == str(error.value)


SUB_FIELD_ENCODE_ERRORS = {
    "60.1 of one digit": (
        lambda: Field60("2", 1, "000").encode(),
        "message type is 2 digits, got 1 characters: field 60.1",
    ),
    "60 extra of 7 digits": (
        lambda: Field60("22", 1, "000", "1234567").encode(),
        "extra sub-fields are 1..6 digits, got 7 characters: field 60.4",
    ),
    "61 date of 3 digits": (
        lambda: OriginalTransaction(1, 7, "112").encode(),
        "date is MMDD, 4 digits, got 3 characters: field 61.3",
    ),
    "upload PAN with a leading 0": (
        lambda: encode_upload_records((UploadRecord(CardType.DOMESTIC, 1, "0" + "6" * 15, 1),)),
        "a PAN in an upload record cannot start with 0: field 48",
    ),
    "9 upload records": (
        lambda: encode_upload_records((UploadRecord(CardType.DOMESTIC, 1, "6" * 16, 1),) * 9),
        "9 records: a message carries 1..8: field 48",
    ),
    "63 key with '='": (
        lambda: encode_detail({"A=B": "1"}),
        "detail item 1: a key is non-empty without '=' or ';', a value has no ';': field 63",
    ),
    "63 over 163 bytes": (
        lambda: encode_detail({"A": "x" * 162}),
        "detail of 164 characters is not ≤163 printable ascii bytes: field 63",
    ),
    "track 2 of 38 digits": (
        lambda: encode_track2("6" * 38),
        "track 2 is 1..37 digits with at most one '=': field 35",
    ),
}


@pytest.mark.parametrize("case", sorted(SUB_FIELD_ENCODE_ERRORS))
def test_sub_field_the_profile_cannot_carry_is_an_encode_error(case: str) -> None:
    """Sub-field encoders refuse values that cannot travel, naming the sub-field."""
    build, expected = SUB_FIELD_ENCODE_ERRORS[case]
    with pytest.raises(EncodeError) as error:
        build()
    assert expected == str(error.value)
